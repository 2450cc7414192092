# Builds an o16n R environment: a private library of packages from CRAN-like repositories.
#
#   Rscript o16n_build_env.R resolve SPEC LOCK LIBRARY   (SPEC: {"packages", "repositories"})
#   Rscript o16n_build_env.R install SPEC LOCK LIBRARY   (SPEC unused)
#
# `resolve` finds the packages asked for and the dependencies the system library does not
# have and writes the lock (name, version, repository and MD5 of each source tarball, in
# install order). `install` reproduces a lock exactly: the same tarball of each
# version (from the repository's Archive once it has moved on), its MD5 checked, installed in
# the lock's order. The compute node runs this in the sandbox, as the builder.

suppressPackageStartupMessages(library(jsonlite))
options(warn = 1, timeout = 120)

fail <- function(...) {
    message("error: ", ...)
    quit(save = "no", status = 1)
}

args <- commandArgs(trailingOnly = TRUE)
if (length(args) != 4 || !args[[1]] %in% c("resolve", "install")) {
    fail("usage: o16n_build_env.R resolve|install SPEC LOCK LIBRARY")
}
mode <- args[[1]]
lock_file <- args[[3]]
library_dir <- normalizePath(args[[4]], mustWork = TRUE)
.libPaths(c(library_dir, .libPaths()))
system_packages <- rownames(installed.packages(lib.loc = c(.Library.site, .Library)))
dependency_fields <- c("Depends", "Imports", "LinkingTo")

# Downloads one package version's tarball, from the repository or its Archive.
fetch <- function(entry, dir) {
    file <- file.path(dir, sprintf("%s_%s.tar.gz", entry$name, entry$version))
    urls <- c(
        sprintf("%s/%s_%s.tar.gz", entry$repository, entry$name, entry$version),
        sprintf("%s/Archive/%s/%s_%s.tar.gz", entry$repository, entry$name, entry$name, entry$version)
    )
    for (url in urls) {
        ok <- tryCatch(
            suppressWarnings(download.file(url, file, quiet = TRUE, mode = "wb")) == 0,
            error = function(e) FALSE
        )
        if (ok) return(file)
    }
    fail(sprintf("cannot download %s %s from %s", entry$name, entry$version, entry$repository))
}

# Installs the lock's packages in order, each tarball checked against the lock's MD5.
install_lock <- function(lock) {
    dir <- tempfile("o16n-packages")
    dir.create(dir)
    for (entry in lock) {
        file <- fetch(entry, dir)
        md5 <- unname(tools::md5sum(file))
        if (!is.null(entry$md5) && nzchar(entry$md5) && md5 != entry$md5) {
            fail(sprintf("%s %s does not match the lock (MD5 %s, locked %s)",
                         entry$name, entry$version, md5, entry$md5))
        }
        entry$md5 <- md5
        message(sprintf("installing %s %s", entry$name, entry$version))
        install.packages(file, lib = library_dir, repos = NULL, type = "source", quiet = TRUE)
        installed <- tryCatch(
            as.character(packageVersion(entry$name, lib.loc = library_dir)),
            error = function(e) NA
        )
        if (is.na(installed) || installed != entry$version) {
            fail(sprintf("%s %s did not install (see the messages above)", entry$name, entry$version))
        }
    }
    invisible(TRUE)
}

if (mode == "resolve") {
    spec <- fromJSON(args[[2]], simplifyVector = TRUE)
    repositories <- spec$repositories
    problems <- character()
    db <- withCallingHandlers(
        available.packages(repos = repositories, type = "source"),
        warning = function(w) {
            problems <<- c(problems, conditionMessage(w))
            invokeRestart("muffleWarning")
        }
    )
    if (length(problems)) message(paste(problems, collapse = "\n"))
    missing <- setdiff(spec$packages, rownames(db))
    if (length(missing)) {
        fail(sprintf("not found in %s: %s", paste(repositories, collapse = ", "),
                     paste(missing, collapse = ", ")))
    }
    direct <- function(name) {
        deps <- tools::package_dependencies(name, db = db, which = dependency_fields)[[1]]
        setdiff(deps, c("R", system_packages))
    }
    needed <- character()
    queue <- spec$packages
    while (length(queue)) {
        name <- queue[[1]]
        queue <- queue[-1]
        if (name %in% needed) next
        if (!name %in% rownames(db)) {
            fail(sprintf("dependency %s is neither installed nor in the repositories", name))
        }
        needed <- c(needed, name)
        queue <- c(queue, direct(name))
    }
    # Dependencies first: a package goes once everything it needs is before it.
    ordered <- character()
    while (length(needed)) {
        ready <- needed[vapply(needed, function(name) all(direct(name) %in% ordered), logical(1))]
        if (!length(ready)) ready <- needed
        ordered <- c(ordered, ready)
        needed <- setdiff(needed, ready)
    }
    lock <- lapply(ordered, function(name) {
        list(name = name, version = unname(db[name, "Version"]),
             repository = unname(db[name, "Repository"]), md5 = "")
    })
    # The MD5s are those of the tarballs this build installs.
    dir <- tempfile("o16n-packages")
    dir.create(dir)
    for (i in seq_along(lock)) {
        lock[[i]]$md5 <- unname(tools::md5sum(fetch(lock[[i]], dir)))
    }
    writeLines(toJSON(lock, auto_unbox = TRUE, pretty = TRUE), lock_file)
} else {
    lock <- fromJSON(lock_file, simplifyVector = FALSE)
    install_lock(lock)
}
for (entry in lock) message(sprintf("locked %s %s", entry$name, entry$version))
