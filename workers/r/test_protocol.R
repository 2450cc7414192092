# The R worker against the golden frames of workers/protocol/, which the Rust host's and the
# Python worker's tests read too: the worker's codec reads every frame as frames.json describes
# it, and what it writes reads back the same; the R template understands every fork request of
# template.json. Run with `Rscript workers/r/test_protocol.R`; it
# prints one line per case and exits non-zero when one fails.

suppressPackageStartupMessages(library(jsonlite))

args <- commandArgs(trailingOnly = FALSE)
here <- dirname(normalizePath(sub("^--file=", "", args[grep("^--file=", args)])))
golden <- file.path(here, "..", "protocol")

Sys.setenv(O16N_WORKER_TEST = "1")
source(file.path(here, "o16n_worker.R"))
codec <- get("o16n_worker_codec", envir = globalenv())

hex_to_raw <- function(hex) {
  if (!nzchar(hex)) return(raw(0))
  as.raw(strtoi(substring(hex, seq(1, nchar(hex), 2), seq(2, nchar(hex), 2)), 16L))
}

# JSON values compared as JSON: R's lists and the parsed expectation normalised the same way.
same_json <- function(a, b) {
  normalise <- function(x) toJSON(x, auto_unbox = TRUE, null = "null", digits = NA)
  identical(
    normalise(fromJSON(normalise(a), simplifyVector = FALSE)),
    normalise(fromJSON(normalise(b), simplifyVector = FALSE))
  )
}

cases <- fromJSON(file.path(golden, "frames.json"), simplifyVector = FALSE)
failures <- 0
for (case in cases) {
  bytes <- readBin(file.path(golden, paste0(case$name, ".frame")), "raw", 1e6)
  blob <- hex_to_raw(case$blob_hex)
  connection <- rawConnection(bytes, "rb")
  frame <- codec$read_frame(connection)
  close(connection)
  read_ok <- !is.null(frame) && same_json(frame$header, case$header) && identical(frame$blob, blob)

  written <- codec$encode_frame(case$header, blob)
  connection <- rawConnection(written, "rb")
  again <- codec$read_frame(connection)
  close(connection)
  write_ok <- !is.null(again) && same_json(again$header, case$header) && identical(again$blob, blob)

  if (read_ok && write_ok) {
    cat("ok    ", case$name, "\n")
  } else {
    failures <- failures + 1
    cat("FAILED", case$name, if (!read_ok) "(reading)" else "(writing)", "\n")
  }
}
cat(sprintf("%d of %d golden frames pass\n", length(cases) - failures, length(cases)))

# The template's fork requests (workers/protocol/template.json): each is understood with its
# descriptors (4, and the network namespace when the network is on), and refused with others.
fork_arguments <- get("o16n_fork_arguments", envir = globalenv())
template <- fromJSON(file.path(golden, "template.json"), simplifyVector = FALSE)
for (case in template$fork_requests) {
  request <- fromJSON(toJSON(case$request, auto_unbox = TRUE, digits = NA))
  count <- 4L + isTRUE(request$network)
  understood <- fork_arguments(request, count)
  ok <- !is.null(understood) && is.null(fork_arguments(request, count + 1L)) &&
    identical(unname(understood$limits), as.double(unlist(case$request$limits[c("as", "nproc", "fsize", "nofile")]))) &&
    identical(unname(understood$paths)[3], case$request$home)
  if (ok) {
    cat("ok    ", "fork request", case$name, "\n")
  } else {
    failures <- failures + 1
    cat("FAILED", "fork request", case$name, "\n")
  }
}
quit(status = if (failures == 0) 0 else 1)
