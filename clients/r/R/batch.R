# Asynchronous batches of a service: the batch object the service's $batch() makes, and its
# results.

new_batch <- function(base, records, parallelCount, output_types, id = NULL) {
  batch <- new.env()
  batch$STATE <- list(pending = "Pending", inProgress = "InProgress", ready = "Ready",
                      complete = "Complete", failed = "Failed")
  path <- function(...) paste0(base, "/batch/", segment(id), ...)
  batch$start <- function() {
    if (is.null(records)) stop("this batch was not made from inputs; it has started already", call. = FALSE)
    answer <- request("POST", paste0(base, "/batch"), json = records,
                      query = list(parallelCount = parallelCount))
    id <<- if (!is.null(answer$batchExecutionId)) answer$batchExecutionId else answer$BatchExecutionId
    batch
  }
  batch$id <- function() id
  batch$cancel <- function() {
    request("DELETE", path())
    batch
  }
  batch$results <- function(showPartialResults = TRUE) {
    answer <- request("GET", path(), query = list(showPartialResults = tolower(showPartialResults)))
    executions <- lapply(answer$batchExecutionResults, service_result, output_types = output_types)
    structure(list(
      state = answer$state,
      totalItemCount = answer$totalItemCount,
      completedItemCount = answer$completedItemCount,
      batchExecutionResults = executions,
      execution = function(index) executions[[index]]
    ), class = "batchResult")
  }
  # Records are numbered from 1 here, as R users count; the server numbers them from 0.
  batch$listArtifacts <- function(index) {
    as.character(unlist(request("GET", path("/", index - 1, "/files"))))
  }
  batch$artifact <- function(index, fileName) {
    tryCatch(request("GET", path("/", index - 1, "/files/", segment(fileName)), as = "raw"),
             error = function(e) NULL)
  }
  batch$download <- function(index, fileName = NULL, dest = getwd()) {
    if (!dir.exists(dest)) stop(sprintf("the directory %s does not exist", dest), call. = FALSE)
    names <- if (is.null(fileName)) batch$listArtifacts(index) else fileName
    paths <- character(0)
    for (name in names) {
      target <- file.path(dest, name)
      writeBin(request("GET", path("/", index - 1, "/files/", segment(name)), as = "raw"), target)
      paths <- c(paths, target)
    }
    paths
  }
  class(batch) <- "o16nBatch"
  batch
}

#' @export
print.o16nBatch <- function(x, ...) {
  cat(sprintf("Batch %s\n", if (is.null(x$id())) "(not started)" else x$id()))
  invisible(x)
}

#' @export
print.batchResult <- function(x, ...) {
  cat(sprintf("state: %s, %s of %s records done\n", x$state, x$completedItemCount, x$totalItemCount))
  invisible(x)
}
