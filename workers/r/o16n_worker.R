# o16n R worker: runs user code for one o16n compute node.
#
# The server starts this script through a shell that hands it the protocol as file descriptors
# 3 (requests) and 4 (answers) and points standard output and error at one pipe, which the
# server reads as console output: they are left entirely to user code. After answering each
# request the worker prints an end marker line on standard error, after flushing standard
# output, so the server knows the console of that request is complete.
#
# Frames are [u32 total][u32 header_len][header JSON][blob], big-endian; `total` counts
# everything after itself (protocol version 2). Every request gets exactly one answer of the
# type that request expects (`executed` for `execute`, ...) or `failed`. The frames in
# workers/protocol/ are the golden examples; with O16N_WORKER_TEST set, sourcing this script
# only defines the codec (in `o16n_worker_codec`) for the tests, and serves nothing.

suppressPackageStartupMessages(library(jsonlite))

# Everything of the worker lives in an environment of its own; the global environment is the
# session's workspace and holds only what user code puts there.
local({

  PROTOCOL_VERSION <- 2L
  END_MARKER <- "\036o16n-end"

  # --- The protocol channel ---------------------------------------------------------------

  u32 <- function(n) {
    n <- as.numeric(n)
    as.raw(c(n %/% 16777216, (n %/% 65536) %% 256, (n %/% 256) %% 256, n %% 256))
  }

  read_u32 <- function(bytes) sum(as.numeric(as.integer(bytes)) * c(16777216, 65536, 256, 1))

  read_exactly <- function(connection, count) {
    data <- raw(0)
    while (length(data) < count) {
      chunk <- readBin(connection, "raw", count - length(data))
      if (length(chunk) == 0) return(NULL)
      data <- c(data, chunk)
    }
    data
  }

  # One frame from a connection, or NULL at its end.
  read_frame <- function(connection) {
    prefix <- read_exactly(connection, 4)
    if (is.null(prefix)) return(NULL)
    body <- read_exactly(connection, read_u32(prefix))
    if (is.null(body)) return(NULL)
    header_len <- read_u32(body[1:4])
    header <- fromJSON(rawToChar(body[5:(4 + header_len)]), simplifyVector = FALSE)
    blob <- if (length(body) > 4 + header_len) body[(5 + header_len):length(body)] else raw(0)
    list(header = header, blob = blob)
  }

  # A frame's bytes.
  encode_frame <- function(header, blob = raw(0)) {
    encoded <- charToRaw(enc2utf8(as.character(toJSON(header, auto_unbox = TRUE, null = "null", na = "null", digits = NA))))
    c(u32(4 + length(encoded) + length(blob)), u32(length(encoded)), encoded, blob)
  }

  # What o16n_template_fork takes of a fork request (workers/protocol/template.json) brought
  # with `count` descriptors: its limits and paths, or NULL when the request is not understood.
  # A request whose network is on brings its network namespace as a fifth descriptor.
  fork_arguments <- function(request, count) {
    if (!is.list(request)) return(NULL)
    limits <- suppressWarnings(as.double(unlist(request$limits[c("as", "nproc", "fsize", "nofile")])))
    paths <- unlist(request[c("workdir", "work_view", "home", "hostname", "tmp_options",
                              "shm_options")])
    if (!is.numeric(request$id) || !is.numeric(request$uid) || length(limits) != 4 ||
        anyNA(limits) || !is.character(paths) || length(paths) != 6 ||
        count != 4L + isTRUE(request$network)) {
      return(NULL)
    }
    list(limits = limits, paths = paths)
  }

  if (nzchar(Sys.getenv("O16N_WORKER_TEST"))) {
    assign("o16n_worker_codec", list(read_frame = read_frame, encode_frame = encode_frame), envir = globalenv())
    assign("o16n_fork_arguments", fork_arguments, envir = globalenv())
    return(invisible(NULL))
  }

  # A worker template (started with --template) forks workers here, through the system calls
  # of o16n_fork.c beside this script, on its control socket (descriptor 3) for as long as the
  # server lives; it returns only in a worker, sandboxed, with the descriptors a spawned worker
  # has.
  serve_template <- function() {
    script <- sub("^--file=", "", grep("^--file=", commandArgs(), value = TRUE)[1])
    dyn.load(file.path(dirname(script), "o16n_fork.so"))
    control <- 3L
    invisible(.C("o16n_template_ready", control))
    repeat {
      got <- .C("o16n_template_receive", control, message = raw(65536), capacity = 65536L,
                length = integer(1), descriptors = integer(5), count = integer(1))
      if (got$length == 0L) quit(save = "no", status = 0)
      if (got$length < 0L) {
        .C("o16n_template_refuse", control, -1, "a request needs 4 or 5 descriptors")
        next
      }
      request <- tryCatch(fromJSON(rawToChar(got$message[seq_len(got$length)])),
                          error = function(e) NULL)
      arguments <- fork_arguments(request, got$count)
      if (is.null(arguments)) {
        .C("o16n_template_discard", got$descriptors, got$count)
        .C("o16n_template_refuse", control, -1, "a request is not understood")
        next
      }
      forked <- .C("o16n_template_fork", control, as.double(request$id), got$descriptors,
                   as.double(request$uid), as.integer(isTRUE(request$network)),
                   arguments$limits, arguments$paths, pid = integer(1))
      if (forked$pid < 0L) {
        # A worker of a named environment: its library first, as in a spawned worker of it
        # (the template loads nothing of an environment, whose packages come from users).
        library <- request$environment$packages
        if (is.character(library) && length(library) == 1) {
          .libPaths(c(library, .libPaths()))
          Sys.setenv(R_LIBS = library)
        }
        break
      }
    }
    # The template's temporary directory is not in the worker's fresh /tmp.
    invisible(tempdir(check = TRUE))
  }
  if (identical(commandArgs(trailingOnly = TRUE), "--template")) serve_template()

  # The server's system-call filters (crates/runtime/src/seccomp.rs), installed through
  # o16n_fork.c before any user code runs; the helper ends the worker if it cannot.
  filters <- Sys.getenv("O16N_SYSCALL_FILTERS")
  if (nzchar(filters)) {
    Sys.unsetenv("O16N_SYSCALL_FILTERS")
    if (!is.loaded("o16n_install_filters")) {
      script <- sub("^--file=", "", grep("^--file=", commandArgs(), value = TRUE)[1])
      dyn.load(file.path(dirname(script), "o16n_fork.so"))
    }
    programs <- strsplit(filters, ",", fixed = TRUE)[[1]]
    invisible(.C("o16n_install_filters", programs, length(programs)))
  }

  requests <- file("/dev/fd/3", open = "rb", raw = TRUE)
  answers <- file("/dev/fd/4", open = "wb", raw = TRUE)

  receive <- function() read_frame(requests)

  send <- function(header, blob = raw(0)) {
    writeBin(encode_frame(header, blob), answers)
    flush(answers)
  }

  # The answer of type `type` to the current request.
  answer <- function(type, payload = list(), blob = raw(0)) send(c(list(type = type), payload), blob)

  # A failure of the current request itself.
  fail <- function(message, kind = "bad_request") {
    send(list(type = "failed", kind = kind, error = message))
  }

  end_of_request <- function() {
    flush(stdout())
    cat(END_MARKER, "\n", sep = "", file = stderr())
    flush(stderr())
  }

  # --- Values between JSON and R ----------------------------------------------------------

  # A JSON value as R sees it: scalars and arrays become vectors, arrays of arrays matrices,
  # objects named lists (a column map reads as a data frame where that is what it is).
  from_json_value <- function(value) {
    if (is.null(value)) return(NULL)
    fromJSON(toJSON(value, auto_unbox = TRUE, null = "null", digits = NA), simplifyVector = TRUE)
  }

  from_declared <- function(type, value) {
    if (is.null(value)) return(NULL)
    switch(type,
      integer = as.integer(value),
      numeric = as.numeric(value),
      logical = as.logical(value),
      character = as.character(value),
      vector = unlist(from_json_value(value)),
      matrix = {
        rows <- lapply(value, function(row) unlist(row))
        if (length(rows) == 0) matrix(numeric(0), 0, 0) else do.call(rbind, rows)
      },
      data.frame = {
        frame <- from_json_value(value)
        as.data.frame(frame, stringsAsFactors = FALSE, check.names = FALSE)
      },
      from_json_value(value)
    )
  }

  no_json_form <- function(name, value) {
    stop(sprintf("`%s` is a %s, which has no JSON form", name, paste(class(value), collapse = "/")), call. = FALSE)
  }

  # Converts an R value to something toJSON writes faithfully, or stops naming it.
  to_json_value <- function(value, name) {
    if (is.null(value)) return(NULL)
    if (is.data.frame(value)) return(lapply(as.list(value), function(column) if (is.factor(column)) as.character(column) else column))
    if (is.matrix(value)) {
      if (!(is.numeric(value) || is.logical(value) || is.character(value))) no_json_form(name, value)
      return(lapply(seq_len(nrow(value)), function(i) as.vector(value[i, ])))
    }
    if (is.factor(value)) return(as.character(value))
    if (is.atomic(value)) {
      if (is.complex(value) || is.raw(value)) no_json_form(name, value)
      return(if (length(value) == 1 && is.null(names(value))) value else as.vector(value))
    }
    if (is.list(value)) return(lapply(value, to_json_value, name = name))
    no_json_form(name, value)
  }

  to_declared <- function(type, value, name) {
    if (is.null(value)) return(NULL)
    converted <- tryCatch(
      switch(type,
        integer = as.integer(value)[1],
        numeric = as.numeric(value)[1],
        logical = as.logical(value)[1],
        character = as.character(value)[1],
        vector = I(as.vector(to_json_value(value, name))),
        matrix = to_json_value(as.matrix(value), name),
        data.frame = to_json_value(as.data.frame(value, stringsAsFactors = FALSE), name),
        to_json_value(value, name)
      ),
      warning = function(w) stop(sprintf("`%s` should be %s: %s", name, type, conditionMessage(w)), call. = FALSE)
    )
    converted
  }

  # --- Running code -------------------------------------------------------------------------

  executing <- FALSE

  # Runs code in an environment; returns list(success, error).
  run_code <- function(code, envir) {
    executing <<- TRUE
    on.exit(executing <<- FALSE)
    result <- tryCatch(
      {
        expressions <- parse(text = code, keep.source = FALSE)
        for (expression in expressions) {
          # Warnings are shown when they happen: R would defer them to the end of a top-level
          # call, which the worker's loop never reaches.
          visible <- withCallingHandlers(
            withVisible(eval(expression, envir = envir)),
            warning = function(w) {
              message("Warning message:\n", conditionMessage(w))
              invokeRestart("muffleWarning")
            }
          )
          if (visible$visible) print(visible$value)
        }
        list(success = TRUE, error = "")
      },
      interrupt = function(i) list(success = FALSE, error = "the execution was cancelled"),
      error = function(e) {
        call <- conditionCall(e)
        # Errors raised by the code at top level read as R prints them, not as our eval() or
        # parse() calls.
        internal <- is.null(call) || (is.call(call) && as.character(call[[1]])[1] %in% c("eval", "parse"))
        prefix <- if (internal) "Error: " else paste0("Error in ", paste(deparse(call, nlines = 1), collapse = ""), ": ")
        list(success = FALSE, error = paste0(prefix, conditionMessage(e)))
      }
    )
    flush(stdout())
    flush(stderr())
    result
  }

  user_names <- function(envir) ls(envir = envir, all.names = FALSE)

  session_env <- globalenv()

  do_execute <- function(request, blob) {
    for (parameter in request$inputs) {
      assign(parameter$name, from_json_value(parameter$value), envir = session_env)
    }
    outcome <- run_code(if (is.null(request$code)) "" else request$code, session_env)
    outputs <- list()
    if (outcome$success) {
      for (name in unlist(request$outputs)) {
        value <- if (exists(name, envir = session_env, inherits = FALSE)) get(name, envir = session_env) else NULL
        converted <- tryCatch(list(value = to_json_value(value, name)), error = function(e) e)
        if (inherits(converted, "error")) {
          outcome <- list(success = FALSE, error = conditionMessage(converted))
          outputs <- list()
          break
        }
        outputs[[length(outputs) + 1]] <- list(name = name, value = converted$value)
      }
    }
    answer("executed", list(success = outcome$success, error = outcome$error, outputs = outputs))
  }

  do_list_objects <- function(request, blob) answer("object_names", list(names = I(user_names(session_env))))

  do_get_object <- function(request, blob) {
    name <- request$name
    if (!exists(name, envir = session_env, inherits = FALSE)) return(fail(sprintf("object `%s` not found", name), "not_found"))
    # The reference hands R objects out as an .RData stream: what save() writes and load() reads.
    connection <- rawConnection(raw(0), "wb")
    save(list = name, envir = session_env, file = connection)
    data <- rawConnectionValue(connection)
    close(connection)
    answer("object", list(), data)
  }

  # Reads what serialize() or saveRDS() wrote (saveRDS compresses with gzip by default).
  read_serialized <- function(blob) {
    if (length(blob) >= 2 && blob[1] == as.raw(0x1f) && blob[2] == as.raw(0x8b)) {
      connection <- gzcon(rawConnection(blob))
      on.exit(close(connection))
      return(unserialize(connection))
    }
    unserialize(blob)
  }

  do_put_object <- function(request, blob) {
    value <- tryCatch(list(value = read_serialized(blob)), error = function(e) e)
    if (inherits(value, "error")) {
      return(fail(paste0("the object cannot be read as R serialize()/saveRDS() bytes: ", conditionMessage(value))))
    }
    assign(request$name, value$value, envir = session_env)
    answer("done")
  }

  do_delete_object <- function(request, blob) {
    name <- request$name
    if (!exists(name, envir = session_env, inherits = FALSE)) return(fail(sprintf("object `%s` not found", name), "not_found"))
    rm(list = name, envir = session_env)
    answer("done")
  }

  do_save_workspace <- function(request, blob) {
    answer("workspace", list(), serialize(mget(user_names(session_env), envir = session_env), NULL))
  }

  do_load_workspace <- function(request, blob) {
    objects <- tryCatch(list(value = unserialize(blob)), error = function(e) e)
    if (inherits(objects, "error") || !is.list(objects$value)) return(fail("the workspace cannot be read"))
    list2env(objects$value, envir = session_env)
    answer("workspace_loaded", list(names = I(names(objects$value))))
  }

  # --- Services -----------------------------------------------------------------------------

  services <- new.env()

  do_load_service <- function(request, blob) {
    service <- new.env(parent = globalenv())
    # The directory is relative to the working directory, where the worker stands between
    # requests.
    directory <- normalizePath(request$directory)
    previous <- setwd(directory)
    on.exit(setwd(previous))
    if (length(blob) > 0) {
      objects <- tryCatch(unserialize(blob), error = function(e) NULL)
      if (is.list(objects)) list2env(objects, envir = service)
    }
    outcome <- if (is.null(request$init_code)) list(success = TRUE) else run_code(request$init_code, service)
    if (!isTRUE(outcome$success)) return(fail(paste0("initCode failed: ", outcome$error), "load_failed"))
    assign(request$key, list(env = service, directory = directory), envir = services)
    answer("service_loaded")
  }

  do_unload_service <- function(request, blob) {
    if (exists(request$key, envir = services, inherits = FALSE)) rm(list = request$key, envir = services)
    answer("done")
  }

  file_stamps <- function() {
    files <- list.files(".", all.files = TRUE, no.. = TRUE)
    files <- files[!dir.exists(files)]
    stats::setNames(as.numeric(file.mtime(files)), files)
  }

  do_consume <- function(request, blob) {
    if (!exists(request$key, envir = services, inherits = FALSE)) return(fail("service not loaded", "not_loaded"))
    service <- get(request$key, envir = services)
    envir <- service$env
    saved <- mget(ls(envir, all.names = TRUE), envir = envir)
    previous <- setwd(service$directory)
    before <- file_stamps()
    outputs <- list()
    output_files <- list()
    file_bytes <- raw(0)
    changed <- character(0)
    tryCatch({
      for (parameter in request$inputs) {
        assign(parameter$name, from_declared(parameter$type, parameter$value), envir = envir)
      }
      outcome <- run_code(request$code, envir)
      if (outcome$success) {
        for (parameter in request$outputs) {
          name <- parameter$name
          value <- if (exists(name, envir = envir, inherits = FALSE)) get(name, envir = envir) else NULL
          converted <- tryCatch(list(value = to_declared(parameter$type, value, name)), error = function(e) e)
          if (inherits(converted, "error")) {
            outcome <- list(success = FALSE, error = conditionMessage(converted))
            outputs <- list()
            break
          }
          outputs[name] <- list(converted$value)
        }
      }
      after <- file_stamps()
      changed <- sort(names(after)[is.na(before[names(after)]) | before[names(after)] != after])
      # Declared output files travel as raw bytes, one after the other in the blob.
      for (name in unlist(request$output_files)) {
        if (name %in% names(after)) {
          content <- readBin(name, "raw", file.size(name))
          output_files[[length(output_files) + 1]] <- list(name = name, size = length(content))
          file_bytes <- c(file_bytes, content)
        } else {
          output_files[[length(output_files) + 1]] <- list(name = name, size = NULL)
        }
      }
      created <- setdiff(names(after), names(before))
      if (length(created) > 0) file.remove(created)
    }, finally = {
      setwd(previous)
      # Bindings go back to what they were before the request: requests do not leak globals.
      rm(list = setdiff(ls(envir, all.names = TRUE), names(saved)), envir = envir)
      list2env(saved, envir = envir)
    })
    answer("consumed", list(
      success = outcome$success, error = outcome$error,
      outputs = if (length(outputs) == 0) structure(list(), names = character(0)) else outputs,
      output_files = I(output_files),
      changed_files = I(changed)
    ), file_bytes)
  }

  # --- The loop -----------------------------------------------------------------------------

  handlers <- list(
    execute = do_execute, list_objects = do_list_objects, get_object = do_get_object,
    put_object = do_put_object, delete_object = do_delete_object, save_workspace = do_save_workspace,
    load_workspace = do_load_workspace, load_service = do_load_service,
    unload_service = do_unload_service, consume = do_consume
  )

  send(list(
    type = "hello", protocol = PROTOCOL_VERSION, language = "r",
    runtime_version = paste(R.version$major, R.version$minor, sep = ".")
  ))

  repeat {
    # An interrupt that arrives while no code runs must not end the worker.
    message <- tryCatch(receive(), interrupt = function(i) "interrupted")
    if (identical(message, "interrupted")) next
    if (is.null(message)) break
    kind <- message$header$type
    if (identical(kind, "shutdown")) {
      answer("done")
      break
    }
    handler <- handlers[[kind]]
    outcome <- tryCatch(
      {
        if (is.null(handler)) fail(sprintf("unknown request type %s", kind)) else handler(message$header, message$blob)
        TRUE
      },
      interrupt = function(i) FALSE,
      error = function(e) {
        fail(paste0("worker error: ", conditionMessage(e)))
        TRUE
      }
    )
    # An interrupt that escaped the handler ends the request as cancelled, in the kind of
    # answer the request expects.
    if (!isTRUE(outcome)) {
      cancelled <- "the execution was cancelled"
      if (identical(kind, "execute")) {
        answer("executed", list(success = FALSE, error = cancelled, outputs = list()))
      } else if (identical(kind, "consume")) {
        answer("consumed", list(
          success = FALSE, error = cancelled, outputs = structure(list(), names = character(0)),
          output_files = I(list()), changed_files = I(character(0))
        ))
      } else {
        fail(cancelled)
      }
    }
    end_of_request()
  }
})
