# Web services: publish, update, get, list and delete, the service object that consumes them,
# and the reference's service options and types.

.service_options <- new.env(parent = emptyenv())
.service_options$values <- list(`data-dir` = NULL)

#' The service options
#'
#' \code{serviceOption()$set("data-dir", path)} sets the base directory of the \code{code}
#' and \code{model} files given to \code{publishService}; \code{NULL} (the default) means the
#' working directory and \code{""} requires full paths.
#'
#' @return An object with \code{get(name)}, \code{get()} and \code{set(name, value)}.
#' @export
serviceOption <- function() {
  list(
    get = function(name = NULL) {
      if (is.null(name)) .service_options$values else .service_options$values[[name]]
    },
    set = function(name, value) {
      values <- .service_options$values
      values[name] <- list(value)
      .service_options$values <- values
      invisible(values)
    }
  )
}

#' The supported service types
#'
#' @return \code{c("Script", "Realtime")}.
#' @export
serviceTypes <- function() c("Script", "Realtime")

#' Checks a service type
#'
#' @param type A service type.
#' @return The type, when it is one of \code{serviceTypes()}; an error otherwise.
#' @export
getValidatedServiceType <- function(type) {
  if (length(type) != 1 || !(type %in% serviceTypes())) {
    stop(sprintf("unsupported service type %s: use one of %s", paste(type, collapse = ", "),
                 paste(serviceTypes(), collapse = ", ")), call. = FALSE)
  }
  type
}

# A local file named for publishing, relative to the "data-dir" option.
local_file <- function(path) {
  base <- .service_options$values[["data-dir"]]
  if (is.null(base) || identical(base, "") || grepl("^(/|[A-Za-z]:)", path)) path else file.path(base, path)
}

is_file_name <- function(value, pattern) {
  is.character(value) && length(value) == 1 && grepl(pattern, value, ignore.case = TRUE) &&
    file.exists(local_file(value))
}

# The code string of a service: a function becomes its definition and a call that assigns the
# first output; an .R file is read; a string is sent as it is.
service_code <- function(code, alias, inputs, outputs) {
  if (is.function(code)) {
    call <- sprintf("%s(%s)", alias, paste(names(inputs), collapse = ", "))
    first <- names(outputs)[1]
    paste0(alias, " <- ", paste(deparse(code), collapse = "\n"), "\n",
           if (!is.null(first)) paste0(first, " <- ") else "", call)
  } else if (is_file_name(code, "\\.r$")) {
    paste(readLines(local_file(code), warn = FALSE), collapse = "\n")
  } else {
    code
  }
}

definitions <- function(parameters) {
  lapply(names(parameters), function(name) list(name = name, type = parameters[[name]]))
}

# The objects of a model argument: the object itself under the name it was passed as, or the
# objects an .RData file holds or an .R file defines.
model_objects <- function(model, model_name) {
  if (is_file_name(model, "\\.rdata$|\\.rda$")) {
    holder <- new.env()
    load(local_file(model), envir = holder)
    return(mget(ls(holder), envir = holder))
  }
  if (is_file_name(model, "\\.r$")) {
    holder <- new.env()
    sys.source(local_file(model), envir = holder)
    return(mget(ls(holder), envir = holder))
  }
  stats::setNames(list(model), model_name)
}

# A snapshot of a temporary session holding the model's objects (merged with `snapshot`), in
# the environment the service will run in.
model_snapshot <- function(objects, snapshot, environment = NULL) {
  session <- request("POST", "/sessions", json = list(runtimeType = "R", environment = environment))$sessionId
  on.exit(try(request("DELETE", paste0("/sessions/", segment(session))), silent = TRUE))
  path <- function(...) paste0("/sessions/", segment(session), ...)
  if (!is.null(snapshot)) request("POST", path("/loadsnapshot/", segment(snapshot)))
  for (name in names(objects)) {
    request("POST", path("/workspace/", segment(name)), raw = serialize(objects[[name]], NULL))
  }
  request("POST", path("/snapshot"), json = list(name = "model"))$snapshotId
}

service_path <- function(base, name, v) {
  if (length(v) == 0 || !nzchar(v)) paste0(base, segment(name)) else paste0(base, segment(name), "/", segment(v))
}

# The multipart form of a realtime service: the ONNX file (optional when updating) and the
# description and alias when given.
realtime_form <- function(model, descr, alias) {
  form <- list()
  if (!is.null(model)) {
    if (!is_file_name(model, "\\.onnx$")) {
      stop("realtime services take an ONNX model file (.onnx); models serialized with rxSerializeModel, the reference's format, are not supported by o16n",
           call. = FALSE)
    }
    form$model <- httr::upload_file(local_file(model))
  }
  if (!is.null(descr)) form$description <- descr
  if (!is.null(alias)) form$operationId <- alias
  form
}

# The snapshot a Script service starts from: one made with the model's objects (merged with
# `snapshot`), the given snapshot, or none.
service_snapshot <- function(model, model_name, snapshot, environment = NULL) {
  if (!is.null(model)) model_snapshot(model_objects(model, model_name), snapshot, environment) else snapshot
}

# The declared parameters of a service record as a named list of R types.
parameter_types <- function(definitions) {
  stats::setNames(lapply(definitions, `[[`, "type"), vapply(definitions, `[[`, "", "name"))
}

#' Publishes R code or a model as a web service
#'
#' @param name The service name.
#' @param code A function, a code string, or the path of a local .R file (Script services).
#' @param model A model object, or the path of an .RData or .R file whose objects the code
#'   uses; for a Realtime service, the path of an ONNX model file.
#' @param snapshot A snapshot id whose workspace and files the service starts from.
#' @param inputs,outputs Named lists of R types: \code{numeric}, \code{integer},
#'   \code{logical}, \code{character}, \code{vector}, \code{matrix}, \code{data.frame}.
#' @param artifacts Names of files the code writes, returned with each result.
#' @param v The version; when empty the server assigns one.
#' @param alias The name of the consume method; a function's own name by default.
#' @param destination Accepted for compatibility.
#' @param descr The description.
#' @param serviceType \code{"Script"} or \code{"Realtime"}.
#' @param environment An o16n addition: the named environment a Script service runs in (see
#'   \code{createEnvironment}); the R default when \code{NULL}.
#' @return The service object (see \code{getService}).
#' @export
publishService <- function(name, code, model = NULL, snapshot = NULL, inputs = list(),
                           outputs = list(), artifacts = c(), v = character(0), alias = NULL,
                           destination = NULL, descr = NULL, serviceType = c("Script", "Realtime"),
                           environment = NULL) {
  serviceType <- getValidatedServiceType(match.arg(serviceType))
  require_login()
  if (identical(serviceType, "Realtime")) {
    if (is.null(model)) stop("a realtime service needs its ONNX model file", call. = FALSE)
    answer <- request("POST", service_path("/realtime-services/", name, v),
                      form = realtime_form(model, descr, alias))
  } else {
    if (is.null(alias) && is.function(code)) alias <- deparse(substitute(code))
    if (is.function(code) && is.null(alias)) alias <- "consume"
    body <- list(
      code = service_code(code, alias, inputs, outputs),
      runtimeType = "R",
      inputParameterDefinitions = definitions(inputs),
      outputParameterDefinitions = definitions(outputs),
      outputFileNames = I(as.character(artifacts))
    )
    body$description <- descr
    body$operationId <- alias
    body$environment <- environment
    body$snapshotId <- service_snapshot(model, deparse(substitute(model)), snapshot, environment)
    answer <- request("POST", service_path("/services/", name, v), json = body)
  }
  if (length(v) == 0 || !nzchar(v)) v <- utils::tail(strsplit(as.character(answer), "/")[[1]], 1)
  getService(name, v)
}

#' Updates a published service version
#'
#' Only the arguments given change; the rest stays as published.
#'
#' @inheritParams publishService
#' @return The service object.
#' @export
updateService <- function(name, v, code = NULL, model = NULL, snapshot = NULL, inputs = NULL,
                          outputs = NULL, artifacts = c(), alias = NULL, destination = NULL,
                          descr = NULL, serviceType = c("Script", "Realtime"),
                          environment = NULL) {
  serviceType <- getValidatedServiceType(match.arg(serviceType))
  require_login()
  if (identical(serviceType, "Realtime")) {
    request("PATCH", service_path("/realtime-services/", name, v),
            form = realtime_form(model, descr, alias))
    return(getService(name, v))
  }
  current <- NULL
  body <- list()
  if (!is.null(code)) {
    if (is.null(alias) && is.function(code)) alias <- deparse(substitute(code))
    if (is.null(inputs) || is.null(outputs)) current <- service_record(name, v)
    declared <- function(given, key) if (!is.null(given)) given else parameter_types(current[[key]])
    body$code <- service_code(code, if (is.null(alias)) "consume" else alias,
                              declared(inputs, "inputParameterDefinitions"),
                              declared(outputs, "outputParameterDefinitions"))
  }
  if (!is.null(inputs)) body$inputParameterDefinitions <- definitions(inputs)
  if (!is.null(outputs)) body$outputParameterDefinitions <- definitions(outputs)
  if (length(artifacts) > 0) body$outputFileNames <- I(as.character(artifacts))
  body$description <- descr
  body$operationId <- alias
  body$environment <- environment
  if (!is.null(model) && is.null(environment)) environment <- service_record(name, v)$environment
  body$snapshotId <- service_snapshot(model, deparse(substitute(model)), snapshot, environment)
  request("PATCH", service_path("/services/", name, v), json = body)
  getService(name, v)
}

# The stored record of a service version (the last version when `v` is empty).
service_record <- function(name, v = character(0)) {
  found <- tryCatch(request("GET", service_path("/services/", name, v)), error = function(e) {
    if (grepl("HTTP 404", conditionMessage(e))) list() else stop(e)
  })
  if (!is.null(found$name)) return(found)
  if (length(found) == 0) {
    stop(sprintf('No service found for "%s" version "%s"', name, paste(v, collapse = "")), call. = FALSE)
  }
  found[[length(found)]]
}

#' Gets a service to consume
#'
#' @param name The service name.
#' @param v The version; the latest when empty.
#' @param destination Accepted for compatibility.
#' @return The service object: \code{$<alias>(...)} and \code{$consume(...)} call it with
#'   the inputs by position or name; \code{$swagger(json = TRUE)}, \code{$capabilities()},
#'   \code{$batch(inputs, parallelCount = 10)}, \code{$getBatch(id)} and
#'   \code{$getBatchExecutions()}.
#' @export
getService <- function(name, v = character(0), destination = NULL) {
  require_login()
  new_service(service_record(name, v))
}

#' Lists services
#'
#' @param name A service name: all its versions.
#' @param v A version of \code{name}.
#' @return A list of \code{serviceDetails}.
#' @export
listServices <- function(name = character(0), v = character(0)) {
  path <- if (length(name) == 0) "/services" else service_path("/services/", name, v)
  found <- request("GET", path)
  if (!is.null(found$name)) found <- list(found)
  lapply(found, function(service) structure(service, class = "serviceDetails"))
}

#' @export
print.serviceDetails <- function(x, description = TRUE, code = TRUE, ...) {
  shown <- unclass(x)
  if (!description) shown$description <- NULL
  if (!code) {
    shown$code <- NULL
    shown$initCode <- NULL
  }
  print(shown)
  invisible(x)
}

#' @export
summary.serviceDetails <- function(object, ...) {
  cat(sprintf("%s %s (%s), published by %s on %s\n", object$name, object$version,
              object$runtimeType, object$versionPublishedBy, object$creationTime))
  invisible(object)
}

#' Deletes a service version
#'
#' @param name The service name.
#' @param v The version.
#' @return A message saying it was deleted; an error otherwise.
#' @export
deleteService <- function(name, v) {
  request("DELETE", service_path("/services/", name, v))
  sprintf("Service %s version %s deleted.", name, v)
}

# JSON for one input value of a declared type: vectors stay arrays even of length one, a
# matrix is its rows, a data.frame a map of columns.
encode_input <- function(value, type) {
  switch(type,
    vector = I(unname(as.vector(value))),
    matrix = lapply(seq_len(nrow(value)), function(row) I(unname(value[row, ]))),
    data.frame = lapply(as.list(value), function(column) I(if (is.factor(column)) as.character(column) else column)),
    value
  )
}

# An output value as the R type it was declared with.
decode_output <- function(value, type) {
  if (is.null(value)) return(NULL)
  switch(if (is.null(type)) "" else type,
    matrix = do.call(rbind, lapply(value, function(row) unlist(row))),
    data.frame = as.data.frame(lapply(value, function(column) unlist(column)), stringsAsFactors = FALSE),
    vector = unlist(value),
    simplify(value)
  )
}

simplify <- function(value) {
  if (is.null(value)) return(NULL)
  jsonlite::fromJSON(jsonlite::toJSON(value, auto_unbox = TRUE, null = "null", digits = NA))
}

# A consume answer as the reference's response object.
service_result <- function(answer, output_types) {
  outputs <- list()
  for (name in names(answer$outputParameters)) {
    outputs[[name]] <- decode_output(answer$outputParameters[[name]], output_types[[name]])
  }
  files <- answer$outputFiles
  structure(list(
    success = isTRUE(answer$success),
    errorMessage = answer$errorMessage,
    consoleOutput = answer$consoleOutput,
    changedFiles = unlist(answer$changedFiles),
    outputParameters = outputs,
    outputFiles = files,
    output = function(name) outputs[[name]],
    artifact = function(name, decode = TRUE) {
      content <- files[[name]]
      if (is.null(content) || !decode) content else jsonlite::base64_dec(content)
    }
  ), class = "serviceResult")
}

#' @export
print.serviceResult <- function(x, ...) {
  cat(sprintf("success: %s\n", x$success))
  if (!is.null(x$errorMessage) && nzchar(x$errorMessage)) cat(sprintf("error: %s\n", x$errorMessage))
  utils::str(x$outputParameters)
  invisible(x)
}

new_service <- function(record) {
  api <- new.env()
  name <- record$name
  version <- record$version
  base <- paste0("/api/", segment(name), "/", segment(version))
  input_types <- parameter_types(record$inputParameterDefinitions)
  output_types <- parameter_types(record$outputParameterDefinitions)

  # The body of one call: named arguments by name, the others in declared order.
  inputs_of <- function(args) {
    given <- if (is.null(names(args))) rep("", length(args)) else names(args)
    unnamed <- setdiff(names(input_types), given[nzchar(given)])
    given[!nzchar(given)] <- unnamed[seq_len(sum(!nzchar(given)))]
    unknown <- setdiff(given, names(input_types))
    if (length(unknown) > 0 || any(is.na(given))) {
      stop(sprintf("service %s %s takes %s", name, version, paste(names(input_types), collapse = ", ")), call. = FALSE)
    }
    body <- list()
    for (i in seq_along(args)) body[[given[i]]] <- encode_input(args[[i]], input_types[[given[i]]])
    body
  }

  api$name <- name
  api$version <- version
  api$consume <- function(...) {
    args <- list(...)
    answer <- request("POST", base, json = if (length(args) == 0) structure(list(), names = character(0)) else inputs_of(args))
    service_result(answer, output_types)
  }
  alias <- record$operationId
  if (!is.null(alias) && nzchar(alias) && make.names(alias) == alias) api[[alias]] <- api$consume
  api$swagger <- function(json = TRUE) {
    text <- request("GET", paste0(base, "/swagger.json"), as = "text")
    if (json) text else jsonlite::fromJSON(text, simplifyVector = FALSE)
  }
  api$capabilities <- function() {
    list(
      name = name, version = version, description = record$description,
      creationTime = record$creationTime, snapshotId = record$snapshotId,
      operationId = alias, runtimeType = record$runtimeType,
      inputs = input_types, outputs = output_types, artifacts = unlist(record$outputFileNames),
      swagger = paste0(.o16n$endpoint, base, "/swagger.json"),
      `public-functions` = setdiff(ls(api), c("name", "version"))
    )
  }
  api$batch <- function(inputs, parallelCount = 10) {
    records <- lapply(seq_len(nrow(inputs)), function(row) inputs_of(as.list(inputs[row, , drop = FALSE])))
    new_batch(base, records, parallelCount, output_types)
  }
  api$getBatch <- function(id) new_batch(base, NULL, NULL, output_types, id)
  api$getBatchExecutions <- function() as.character(unlist(request("GET", paste0(base, "/batch"))))
  class(api) <- "o16nService"
  api
}

#' @export
print.o16nService <- function(x, ...) {
  cat(sprintf("Service %s version %s\n", x$name, x$version))
  cat("Members:\n")
  for (member in sort(setdiff(ls(x), c("name", "version")))) cat(sprintf("  $%s()\n", member))
  invisible(x)
}
