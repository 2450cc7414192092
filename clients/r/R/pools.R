# Dedicated pools of warm workers for a service version (ML Server 9.3).

#' Creates or resizes a service's dedicated pool
#'
#' @param name The service name.
#' @param version The version.
#' @param initialPoolSize Workers started at once, on every compute node.
#' @param maxPoolSize The most workers; 0 for the node's limit.
#' @return The server's answer.
#' @export
configureServicePool <- function(name, version, initialPoolSize = 0, maxPoolSize = 0) {
  request("POST", paste0(service_path("/services/", name, version), "/pool"),
          json = list(InitialPoolSize = initialPoolSize, MaxPoolSize = maxPoolSize))
}

#' The state of a service's dedicated pool on every compute node
#'
#' @inheritParams configureServicePool
#' @return A list of \code{computeNodeEndpoint} and \code{status} (\code{Pending},
#'   \code{Success} or \code{NotFound}), one per compute node.
#' @export
getPoolStatus <- function(name, version) {
  nodes <- request("GET", paste0(service_path("/services/", name, version), "/pool"))
  # The swagger spells the keys in PascalCase and the reference's documentation in camelCase.
  lapply(nodes, function(node) {
    names(node) <- paste0(tolower(substr(names(node), 1, 1)), substring(names(node), 2))
    node
  })
}

#' Deletes a service's dedicated pool
#'
#' @inheritParams configureServicePool
#' @return The server's answer.
#' @export
deleteServicePool <- function(name, version) {
  request("DELETE", paste0(service_path("/services/", name, version), "/pool"))
}
