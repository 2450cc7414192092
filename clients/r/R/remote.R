# Remote execution in the session opened at login: code and scripts, objects and files both
# ways, snapshots, and the interactive REMOTE> prompt.

session_path <- function(...) paste0("/sessions/", segment(require_session()), ...)

# The reference's inputs: a JSON string of [{name, value}], or an R list of name = value.
as_input_parameters <- function(inputs) {
  if (is.null(inputs)) return(list())
  if (is.character(inputs)) return(jsonlite::fromJSON(inputs, simplifyVector = FALSE))
  lapply(names(inputs), function(name) list(name = name, value = inputs[[name]]))
}

# Fetches the PNG files an execution changed: written to the working directory or shown.
handle_plots <- function(files, displayPlots, writePlots) {
  plots <- Filter(function(file) grepl("\\.png$", file, ignore.case = TRUE), unlist(files))
  for (plot in plots) {
    bytes <- getRemoteFile(plot, as = "raw")
    if (isTRUE(writePlots)) writeBin(bytes, plot)
    if (isTRUE(displayPlots) && interactive() && requireNamespace("png", quietly = TRUE)) {
      image <- png::readPNG(bytes)
      graphics::plot.new()
      graphics::rasterImage(image, 0, 0, 1, 1)
    }
  }
}

#' Executes R code in the remote session
#'
#' @param rcode The code, or the path of a local script when \code{script = TRUE}.
#' @param script Whether \code{rcode} is a script path.
#' @param inputs Objects created in the remote workspace first: a JSON string of
#'   \code{[{"name": ..., "value": ...}]} (as the reference took them) or a named list.
#' @param outputs Names of remote objects to return.
#' @param displayPlots Whether to show the plots the code made (needs the \code{png} package).
#' @param writePlots Whether to write them to the local working directory.
#' @param recPlots Accepted for compatibility; plots are files here.
#' @return A list: \code{success}, \code{errorMessage}, \code{consoleOutput},
#'   \code{outputParameters} (a named list) and \code{changedFiles}. The console output is
#'   printed as the reference printed it.
#' @export
remoteExecute <- function(rcode, script = FALSE, inputs = NULL, outputs = NULL,
                          displayPlots = FALSE, writePlots = FALSE, recPlots = FALSE) {
  code <- if (isTRUE(script)) paste(readLines(rcode, warn = FALSE), collapse = "\n") else rcode
  answer <- request("POST", session_path("/execute"), json = list(
    code = code,
    inputParameters = as_input_parameters(inputs),
    outputParameters = I(as.character(outputs))
  ))
  if (!is.null(answer$consoleOutput) && nzchar(answer$consoleOutput)) cat(answer$consoleOutput)
  if (!isTRUE(answer$success) && !is.null(answer$errorMessage)) message(answer$errorMessage)
  outputs_list <- list()
  for (parameter in answer$outputParameters) outputs_list[[parameter$name]] <- simplify(parameter$value)
  handle_plots(answer$changedFiles, displayPlots, writePlots)
  invisible(list(
    success = isTRUE(answer$success),
    errorMessage = answer$errorMessage,
    consoleOutput = answer$consoleOutput,
    outputParameters = outputs_list,
    changedFiles = unlist(answer$changedFiles)
  ))
}

#' Runs a local R script in the remote session
#'
#' @param name The path of the local script.
#' @inheritParams remoteExecute
#' @param async,closeOnComplete Accepted for compatibility; the script runs in this R.
#' @return As \code{remoteExecute}.
#' @export
remoteScript <- function(name, inputs = NULL, outputs = NULL, displayPlots = TRUE,
                         writePlots = TRUE, recPlots = TRUE, async = FALSE,
                         closeOnComplete = FALSE) {
  remoteExecute(name, script = TRUE, inputs = inputs, outputs = outputs,
                displayPlots = displayPlots, writePlots = writePlots, recPlots = recPlots)
}

#' Reports how the local and the remote R differ
#'
#' @return A list with the two R versions and the packages installed locally but not
#'   remotely, printed as the reference printed it.
#' @export
diffLocalRemote <- function() {
  remote <- suppressMessages(utils::capture.output(result <- remoteExecute(
    "o16n_version <- R.version.string\no16n_packages <- unname(rownames(installed.packages()))",
    outputs = c("o16n_version", "o16n_packages")
  )))
  local_version <- R.version.string
  remote_version <- result$outputParameters$o16n_version
  missing <- setdiff(rownames(utils::installed.packages()), unlist(result$outputParameters$o16n_packages))
  cat("Diff report between local and remote R sessions...\n\n")
  if (identical(local_version, remote_version)) {
    cat(sprintf("Local and Remote R versions are the same: %s\n\n", local_version))
  } else {
    cat(sprintf("Local R version: %s\nRemote R version: %s\n\n", local_version, remote_version))
  }
  if (length(missing) > 0) {
    cat("These R packages installed on the local machine are not on the remote R instance:\n\n")
    print(data.frame(`Missing Packages` = missing, check.names = FALSE))
  }
  invisible(list(local = local_version, remote = remote_version, missing = missing))
}

#' Works at the remote prompt
#'
#' Every line typed at the \code{REMOTE>} prompt runs in the remote session. \code{pause()}
#' returns to the local prompt, \code{resume()} comes back, and \code{exit} closes the remote
#' session and logs out. Only in an interactive R.
#'
#' @param prompt The remote prompt.
#' @param displayPlots,writePlots,recPlots As in \code{remoteExecute}.
#' @return \code{NULL}, invisibly.
#' @export
remoteCommandLine <- function(prompt = "REMOTE> ", displayPlots = TRUE, writePlots = FALSE,
                              recPlots = TRUE) {
  require_session()
  if (!interactive()) stop("the remote prompt needs an interactive R", call. = FALSE)
  .o16n$prompt <- prompt
  repeat {
    line <- readline(prompt)
    if (identical(trimws(line), "exit")) {
      remoteLogout()
      break
    }
    if (identical(gsub("\\s", "", line), "pause()")) break
    if (!nzchar(trimws(line))) next
    tryCatch(remoteExecute(line, displayPlots = displayPlots, writePlots = writePlots),
             error = function(e) message(conditionMessage(e)))
  }
  invisible(NULL)
}

#' Leaves the remote prompt for the local one
#'
#' @return \code{NULL}, invisibly.
#' @export
pause <- function() invisible(NULL)

#' Returns to the remote prompt
#'
#' @return \code{NULL}, invisibly.
#' @export
resume <- function() remoteCommandLine(prompt = .o16n$prompt)

#' Copies remote objects into the local R
#'
#' @param obj Names of objects in the remote workspace.
#' @param name When given, the objects go into a local list of this name instead of the
#'   global environment.
#' @return The objects, as a named list, invisibly.
#' @export
getRemoteObject <- function(obj, name = NULL) {
  objects <- list()
  for (object in obj) {
    bytes <- request("GET", session_path("/workspace/", segment(object)), as = "raw")
    holder <- new.env()
    # load() reads .RData (gzip-compressed or not) from a file reliably; from a raw
    # connection it would need the compression handled by hand.
    file <- tempfile(fileext = ".RData")
    writeBin(bytes, file)
    load(file, envir = holder)
    unlink(file)
    for (loaded in ls(holder, all.names = TRUE)) objects[[loaded]] <- get(loaded, envir = holder)
  }
  if (is.null(name)) {
    for (object in names(objects)) assign(object, objects[[object]], envir = globalenv())
  } else {
    existing <- if (exists(name, envir = globalenv())) get(name, envir = globalenv()) else list()
    assign(name, utils::modifyList(existing, objects), envir = globalenv())
  }
  invisible(objects)
}

#' Copies local objects into the remote session
#'
#' @param obj Names of local objects (looked up from the caller).
#' @param name When given, the objects go into a remote list of this name.
#' @return The objects, as a named list, invisibly.
#' @export
putLocalObject <- function(obj, name = NULL) {
  objects <- mget(obj, envir = parent.frame(), inherits = TRUE)
  if (is.null(name)) {
    for (object in names(objects)) {
      request("POST", session_path("/workspace/", segment(object)),
              raw = serialize(objects[[object]], NULL))
    }
  } else {
    request("POST", session_path("/workspace/", segment(name)), raw = serialize(objects, NULL))
  }
  invisible(objects)
}

#' Copies every remote object into the local R
#'
#' @return The objects, as a named list, invisibly.
#' @export
getRemoteWorkspace <- function() {
  names <- unlist(request("GET", session_path("/workspace")))
  if (length(names) == 0) return(invisible(list()))
  getRemoteObject(names)
}

#' Copies every local object into the remote session
#'
#' @return The objects, as a named list, invisibly.
#' @export
putLocalWorkspace <- function() {
  names <- ls(globalenv())
  objects <- mget(names, envir = globalenv())
  for (object in names) {
    request("POST", session_path("/workspace/", segment(object)), raw = serialize(objects[[object]], NULL))
  }
  invisible(objects)
}

#' Lists the files of the remote working directory
#'
#' @return A character vector of file names.
#' @export
listRemoteFiles <- function() {
  as.character(unlist(request("GET", session_path("/files"))))
}

#' Uploads a local file into the remote working directory
#'
#' @param filename The local file; it keeps its base name remotely.
#' @return \code{TRUE}.
#' @export
putLocalFile <- function(filename) {
  if (!file.exists(filename)) stop(sprintf("no local file %s", filename), call. = FALSE)
  request("POST", session_path("/files"), form = list(file = httr::upload_file(filename)))
  TRUE
}

#' Downloads a file of the remote working directory
#'
#' @param filename The remote file name.
#' @param as \code{"text"} or \code{"raw"} (for binary files).
#' @return The file's text or bytes.
#' @export
getRemoteFile <- function(filename, as = "text") {
  bytes <- request("GET", session_path("/files/", segment(basename(filename))), as = "raw")
  if (identical(as, "raw")) bytes else rawToChar(bytes)
}

#' Deletes a file of the remote working directory
#'
#' @param filename The remote file name (a path is reduced to its base name).
#' @return \code{TRUE}.
#' @export
deleteRemoteFile <- function(filename) {
  request("DELETE", session_path("/files/", segment(basename(filename))))
  TRUE
}

#' Saves the remote session as a snapshot
#'
#' @param name The snapshot's name.
#' @return The snapshot id.
#' @export
createSnapshot <- function(name = "") {
  answer <- request("POST", session_path("/snapshot"), json = list(name = name))
  answer$snapshotId
}

#' Loads a snapshot into the remote session
#'
#' @param snapshot_id The snapshot id.
#' @return \code{TRUE}.
#' @export
loadSnapshot <- function(snapshot_id) {
  request("POST", session_path("/loadsnapshot/", segment(snapshot_id)))
  TRUE
}

#' Lists the caller's snapshots
#'
#' @return A list of \code{snapshotDetails} (id, name, owner, creation time, size).
#' @export
listSnapshots <- function() {
  lapply(request("GET", "/snapshots"), function(snapshot) structure(snapshot, class = "snapshotDetails"))
}

#' @export
print.snapshotDetails <- function(x, ...) {
  cat(sprintf("Snapshot %s  %s  (%s bytes, %s)\n", x$id, x$name, x$contentSize, x$creationTime))
  invisible(x)
}

#' @export
summary.snapshotDetails <- function(object, ...) {
  print(object)
}

#' Downloads a snapshot as a zip archive
#'
#' @param snapshot_id The snapshot id.
#' @param file Where to write it; \code{NULL} returns the bytes.
#' @return The bytes, or \code{TRUE} when written to \code{file}.
#' @export
downloadSnapshot <- function(snapshot_id, file = NULL) {
  bytes <- request("GET", paste0("/snapshots/", segment(snapshot_id)), as = "raw")
  if (is.null(file)) return(bytes)
  writeBin(bytes, file)
  TRUE
}

#' Deletes a snapshot
#'
#' @param snapshot_id The snapshot id.
#' @return \code{TRUE}.
#' @export
deleteSnapshot <- function(snapshot_id) {
  request("DELETE", paste0("/snapshots/", segment(snapshot_id)))
  TRUE
}
