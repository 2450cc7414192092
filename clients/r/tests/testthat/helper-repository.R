# A CRAN-like repository on a loopback port with one small package the tests build
# (o16nhello), which the test server takes R environments' packages from, as an
# organisation's mirror. Started before the server (helper-server.R), which is configured with it.

start_repository <- function() {
  root <- tempfile("o16n-repository-")
  contrib <- file.path(root, "src", "contrib")
  dir.create(contrib, recursive = TRUE)
  package <- file.path(tempfile("o16n-package-"), "o16nhello")
  dir.create(file.path(package, "R"), recursive = TRUE)
  writeLines(c("Package: o16nhello", "Version: 1.0", "Title: An o16n Test Package",
               "Description: Says hello.", "License: MIT", "Author: o16n",
               "Maintainer: o16n <o16n@example.org>"), file.path(package, "DESCRIPTION"))
  writeLines("export(hello)", file.path(package, "NAMESPACE"))
  writeLines("hello <- function(who) paste('hello', who, 'from o16nhello')",
             file.path(package, "R", "hello.R"))
  built <- withr::with_dir(contrib, system2(file.path(R.home("bin"), "R"),
    c("CMD", "build", "--no-build-vignettes", "--no-manual", shQuote(package)),
    stdout = FALSE, stderr = FALSE))
  if (built != 0) stop("cannot build the test package")
  tools::write_PACKAGES(contrib, type = "source")
  started <- start_background(
    sprintf("python3 -u -m http.server 0 --bind 127.0.0.1 --directory %s", shQuote(root)),
    "port [0-9]+", "the test repository", timeout = 30)
  port <- sub(".*port ([0-9]+).*", "\\1", started$line)
  list(pid = started$pid, url = sprintf("http://127.0.0.1:%s", port))
}

repository <- start_repository()
withr::defer(tools::pskill(repository$pid), testthat::teardown_env())
