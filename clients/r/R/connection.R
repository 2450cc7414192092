# The one connection of the package: the server, the bearer token and the remote session, kept
# as the reference's mrsdeploy kept them, and the request helper every function goes through.

.o16n <- new.env(parent = emptyenv())

connection_reset <- function() {
  .o16n$endpoint <- NULL
  .o16n$token <- NULL
  .o16n$session <- NULL
  .o16n$prompt <- "REMOTE> "
  .o16n$remote <- FALSE
}
connection_reset()

require_login <- function() {
  if (is.null(.o16n$token)) {
    stop("not logged in: call remoteLogin() first", call. = FALSE)
  }
}

require_session <- function() {
  require_login()
  if (is.null(.o16n$session)) {
    stop("no remote session: call remoteLogin() with session = TRUE first", call. = FALSE)
  }
  .o16n$session
}

# Escapes one path segment (service names, versions, file names, ids).
segment <- function(value) utils::URLencode(as.character(value), reserved = TRUE)

#' Sends an HTTP request to the server
#'
#' The helper every function of the package uses: it adds the bearer token, sends JSON, raw
#' bytes or a multipart form, and turns a failure into an R error whose message is the
#' server's message (or, when the server cannot be reached, names the URL that failed).
#'
#' @param method The HTTP method.
#' @param path The path below the endpoint given at login, e.g. \code{"/services"}.
#' @param json A value sent as a JSON body.
#' @param raw Raw bytes sent as \code{application/octet-stream}.
#' @param form A list sent as a multipart form (use \code{httr::upload_file} for files).
#' @param query A named list of query parameters.
#' @param as \code{"json"} (the parsed body), \code{"raw"} (bytes) or \code{"text"}.
#' @param auth Whether to send the bearer token.
#' @param endpoint The server; the one given at login by default.
#' @return The parsed answer.
#' @export
request <- function(method, path, json = NULL, raw = NULL, form = NULL, query = NULL,
                    as = "json", auth = TRUE, endpoint = .o16n$endpoint) {
  if (is.null(endpoint)) stop("not logged in: call remoteLogin() first", call. = FALSE)
  url <- paste0(sub("/+$", "", endpoint), path)
  headers <- c()
  if (auth) {
    require_login()
    headers <- c(Authorization = paste("Bearer", .o16n$token))
  }
  body <- NULL
  encode <- "raw"
  if (!is.null(json)) {
    body <- jsonlite::toJSON(json, auto_unbox = TRUE, null = "null", na = "null", digits = NA)
    headers <- c(headers, `Content-Type` = "application/json")
  } else if (!is.null(raw)) {
    body <- raw
    headers <- c(headers, `Content-Type` = "application/octet-stream")
  } else if (!is.null(form)) {
    body <- form
    encode <- "multipart"
  }
  response <- tryCatch(
    httr::VERB(method, url, httr::add_headers(.headers = headers), body = body,
               encode = encode, query = query),
    error = function(e) {
      stop(sprintf("cannot reach %s: %s", url, conditionMessage(e)), call. = FALSE)
    }
  )
  status <- httr::status_code(response)
  if (status >= 400) {
    text <- httr::content(response, as = "text", encoding = "UTF-8")
    message <- tryCatch(jsonlite::fromJSON(text)$message, error = function(e) NULL)
    if (is.null(message) || !nzchar(message)) message <- text
    stop(sprintf("%s %s failed (HTTP %d): %s", method, path, status, message), call. = FALSE)
  }
  switch(as,
    raw = httr::content(response, as = "raw"),
    text = httr::content(response, as = "text", encoding = "UTF-8"),
    json = {
      text <- httr::content(response, as = "text", encoding = "UTF-8")
      if (is.na(text) || !nzchar(text)) NULL else jsonlite::fromJSON(text, simplifyVector = FALSE)
    }
  )
}
