# Named environments (an o16n addition): the R or Python packages a session or service needs
# beyond the server's defaults, built once on the server and the same on every compute node.

#' Creates or rebuilds a named environment
#'
#' The server resolves the packages once (recording the exact versions, its lock) and every
#' compute node builds the environment from that lock. Sessions (\code{remoteLogin(...,
#' environment = )}) and services (\code{publishService(..., environment = )}) then run in it.
#' Sending an existing environment's name again rebuilds it with the new packages; what runs
#' on the previous build keeps running if the new one fails.
#'
#' @param name The environment's name.
#' @param packages R package names, from the server's configured repositories.
#' @param repositories Some of the server's configured repositories to take them from; all of
#'   them when \code{NULL}.
#' @param requirements For a Python environment: the requirements text (one requirement per
#'   line, as pip's requirements files).
#' @param runtime \code{"R"} or \code{"Python"}.
#' @param wait Whether to wait until the build ends (then a failed build is an error with its
#'   log).
#' @param timeout The longest to wait, in seconds.
#' @return The environment (see \code{getEnvironment}).
#' @export
createEnvironment <- function(name, packages = NULL, repositories = NULL, requirements = NULL,
                              runtime = c("R", "Python"), wait = TRUE, timeout = 900) {
  runtime <- match.arg(runtime)
  require_login()
  body <- if (identical(runtime, "R")) {
    if (length(packages) == 0) stop("an R environment needs packages", call. = FALSE)
    list(runtimeType = "R", packages = I(as.character(packages)),
         repositories = if (!is.null(repositories)) I(as.character(repositories)))
  } else {
    if (is.null(requirements)) stop("a Python environment needs requirements", call. = FALSE)
    list(runtimeType = "Python", requirements = paste(requirements, collapse = "\n"))
  }
  environment <- request("POST", paste0("/environments/", segment(name)), json = body)
  if (!isTRUE(wait)) return(structure(environment, class = "environmentDetails"))
  deadline <- Sys.time() + timeout
  repeat {
    environment <- getEnvironment(name)
    if (environment$state %in% c("Ready", "Failed")) break
    if (Sys.time() > deadline) {
      stop(sprintf("environment %s was still %s after %d s", name, environment$state, timeout),
           call. = FALSE)
    }
    Sys.sleep(0.5)
  }
  if (identical(environment$state, "Failed")) {
    stop(sprintf("environment %s failed to build:\n%s", name, environment$log), call. = FALSE)
  }
  environment
}

#' Gets a named environment
#'
#' @param name The environment's name (\code{"r-default"} and \code{"python-default"} are the
#'   server's defaults).
#' @return A list: \code{name}, \code{runtimeType}, \code{state} (\code{Pending},
#'   \code{Building}, \code{Ready} or \code{Failed}), \code{resolvedPackages} (names and
#'   versions), \code{lock} and the build's \code{log}.
#' @export
getEnvironment <- function(name) {
  require_login()
  structure(request("GET", paste0("/environments/", segment(name))), class = "environmentDetails")
}

#' Lists the named environments
#'
#' @return A list of environments, the runtimes' defaults first.
#' @export
listEnvironments <- function() {
  require_login()
  lapply(request("GET", "/environments"), structure, class = "environmentDetails")
}

#' Deletes a named environment
#'
#' Refused while a service runs in it.
#'
#' @param name The environment's name.
#' @return \code{TRUE}, invisibly.
#' @export
deleteEnvironment <- function(name) {
  require_login()
  request("DELETE", paste0("/environments/", segment(name)))
  invisible(TRUE)
}

#' @export
print.environmentDetails <- function(x, ...) {
  cat(sprintf("Environment %s (%s): %s\n", x$name, x$runtimeType, x$state))
  for (package in x$resolvedPackages) cat(sprintf("  %s %s\n", package$name, package$version))
  invisible(x)
}
