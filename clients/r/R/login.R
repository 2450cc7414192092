# Logging in and out: with a user name and password (local or directory accounts), through
# Azure Active Directory, or with a bearer token obtained elsewhere.

ask <- function(prompt, value) {
  if (!is.null(value)) return(value)
  if (!interactive()) stop(sprintf("%s is required when R is not interactive", prompt), call. = FALSE)
  readline(paste0(prompt, ": "))
}

# What every login does once it has a token: the optional remote session, diff report and
# remote command line.
start_remote <- function(session, diff, commandline, prompt, environment = NULL) {
  .o16n$prompt <- prompt
  if (isTRUE(session)) {
    created <- request("POST", "/sessions", json = list(runtimeType = "R", environment = environment))
    .o16n$session <- created$sessionId
    if (isTRUE(diff)) diffLocalRemote()
    if (isTRUE(commandline) && interactive()) remoteCommandLine(prompt = prompt)
  }
  invisible(NULL)
}

#' Logs in to an o16n server
#'
#' Logs in with a user name and password (a local account, or a directory user when the
#' server signs in with LDAP or Active Directory), then optionally starts a remote R session.
#'
#' @param deployr_endpoint The server, with its port: \code{"http://host:12800"}.
#' @param session Whether to create a remote R session.
#' @param diff Whether to print the report of differences between the local and the remote R
#'   (only with \code{session = TRUE}).
#' @param commandline Whether to enter the \code{REMOTE>} prompt (only with
#'   \code{session = TRUE}, in an interactive R).
#' @param prompt The remote prompt.
#' @param username,password The credentials; asked for when \code{NULL} in an interactive R.
#' @param environment An o16n addition: the named environment the remote session runs in
#'   (see \code{createEnvironment}); the R default when \code{NULL}.
#' @return \code{NULL}, invisibly. A failed login is an error with the server's message.
#' @export
remoteLogin <- function(deployr_endpoint, session = TRUE, diff = TRUE, commandline = TRUE,
                        prompt = "REMOTE> ", username = NULL, password = NULL,
                        environment = NULL) {
  username <- ask("username", username)
  password <- ask("password", password)
  answer <- request("POST", "/login", json = list(username = username, password = password),
                    auth = FALSE, endpoint = deployr_endpoint)
  .o16n$endpoint <- deployr_endpoint
  .o16n$token <- answer$access_token
  .o16n$refresh <- answer$refresh_token
  start_remote(session, diff, commandline, prompt, environment)
}

#' Logs in to an o16n server through Azure Active Directory
#'
#' Asks Azure Active Directory (\code{authuri}/\code{tenantid}) for a token with the user's
#' name and password (the resource owner password grant of the reference's native
#' application), then uses it as the bearer token, as the reference did. The server must
#' accept the tenant's tokens (\code{auth.oidc}).
#'
#' @inheritParams remoteLogin
#' @param authuri The authority, e.g. \code{"https://login.windows.net"}.
#' @param tenantid The tenant (the AAD domain), e.g. \code{"contoso.com"}.
#' @param clientid The application id of the native application.
#' @param resource The application id of the web application (the server's audience).
#' @return \code{NULL}, invisibly.
#' @export
remoteLoginAAD <- function(deployr_endpoint, authuri = NULL, tenantid = NULL, clientid = NULL,
                           resource = NULL, session = TRUE, diff = TRUE, commandline = TRUE,
                           prompt = "REMOTE> ", username = NULL, password = NULL,
                           environment = NULL) {
  for (argument in c("authuri", "tenantid", "clientid", "resource")) {
    if (is.null(get(argument))) stop(sprintf("remoteLoginAAD needs %s", argument), call. = FALSE)
  }
  username <- ask("username", username)
  password <- ask("password", password)
  token_url <- sprintf("%s/%s/oauth2/token", sub("/+$", "", authuri), tenantid)
  response <- tryCatch(
    httr::POST(token_url, encode = "form", body = list(
      grant_type = "password", client_id = clientid, resource = resource,
      username = username, password = password
    )),
    error = function(e) stop(sprintf("cannot reach %s: %s", token_url, conditionMessage(e)), call. = FALSE)
  )
  answer <- tryCatch(jsonlite::fromJSON(httr::content(response, as = "text", encoding = "UTF-8")),
                     error = function(e) list())
  if (httr::status_code(response) >= 400 || is.null(answer$access_token)) {
    reason <- if (!is.null(answer$error_description)) answer$error_description else httr::http_status(response)$message
    stop(sprintf("Azure Active Directory refused the login at %s: %s", token_url, reason), call. = FALSE)
  }
  remoteLoginToken(deployr_endpoint, answer$access_token, session = session, diff = diff,
                   commandline = commandline, prompt = prompt, environment = environment)
}

#' Logs in to an o16n server with a bearer token obtained elsewhere
#'
#' An o16n addition: the token of the organisation's OpenID Connect provider (or an o16n
#' access token) is used as it is. The server is asked once who the token names, so a token
#' it refuses is an error here rather than at the first call.
#'
#' @inheritParams remoteLogin
#' @param token The bearer token.
#' @return \code{NULL}, invisibly.
#' @export
remoteLoginToken <- function(deployr_endpoint, token, session = TRUE, diff = TRUE,
                             commandline = TRUE, prompt = "REMOTE> ", environment = NULL) {
  .o16n$endpoint <- deployr_endpoint
  .o16n$token <- token
  checked <- tryCatch(request("GET", "/snapshots"), error = function(e) e)
  if (inherits(checked, "error")) {
    connection_reset()
    stop(conditionMessage(checked), call. = FALSE)
  }
  start_remote(session, diff, commandline, prompt, environment)
}

#' Logs out
#'
#' Closes the remote session, if any, ends the login on the server (its refresh token is
#' revoked) and forgets the token.
#'
#' @return \code{NULL}, invisibly.
#' @export
remoteLogout <- function() {
  if (!is.null(.o16n$session)) {
    try(request("DELETE", paste0("/sessions/", segment(.o16n$session))), silent = TRUE)
  }
  if (!is.null(.o16n$refresh)) {
    try(request("DELETE", "/login/refreshToken", query = list(refreshToken = .o16n$refresh),
                auth = FALSE), silent = TRUE)
  }
  connection_reset()
  .o16n$refresh <- NULL
  invisible(NULL)
}
