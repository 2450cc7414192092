# Remote execution, objects, files and snapshots, as an R user of the reference works.

test_that("bad credentials are a clear error", {
  expect_error(
    remoteLogin(server$url, username = "admin", password = "wrong", session = FALSE),
    "invalid credentials"
  )
  expect_error(
    remoteLogin("http://127.0.0.1:1", username = "admin", password = "x", session = FALSE),
    "cannot reach http://127.0.0.1:1/login"
  )
})

test_that("code runs remotely with inputs, outputs and console output", {
  remoteLogin(server$url, username = "admin", password = admin_password, diff = FALSE,
              commandline = FALSE)
  on.exit(remoteLogout())
  output <- capture.output(result <- remoteExecute(
    "z <- x * y\nprint(paste('product', z))",
    inputs = '[{"name":"x","value":6}, {"name":"y","value":7}]',
    outputs = c("z")
  ))
  expect_true(result$success)
  expect_equal(result$outputParameters$z, 42)
  expect_match(paste(output, collapse = "\n"), "product 42")
  expect_match(result$consoleOutput, "product 42")

  failed <- suppressMessages(remoteExecute("stop('deliberate')"))
  expect_false(failed$success)
  expect_match(failed$errorMessage, "deliberate")

  report <- capture.output(diffLocalRemote())
  expect_match(report[1], "Diff report between local and remote R sessions")
})

test_that("objects and files go both ways byte for byte", {
  remoteLogin(server$url, username = "admin", password = admin_password, diff = FALSE,
              commandline = FALSE)
  on.exit(remoteLogout())
  weights <- c(1.5, 2.5, NA, -4)
  frame <- data.frame(a = 1:3, b = c("x", "y", "z"), stringsAsFactors = FALSE)
  putLocalObject(c("weights", "frame"))
  result <- remoteExecute("total <- sum(weights, na.rm = TRUE) + nrow(frame)", outputs = "total")
  expect_equal(result$outputParameters$total, 3)
  back <- getRemoteObject(c("weights", "frame"), name = "fromRemote")
  expect_identical(back$weights, weights)
  expect_identical(fromRemote$frame, frame)

  local <- tempfile(fileext = ".bin")
  bytes <- as.raw(c(0:255, 255:0))
  writeBin(bytes, local)
  expect_true(putLocalFile(local))
  expect_true(basename(local) %in% listRemoteFiles())
  expect_identical(getRemoteFile(basename(local), as = "raw"), bytes)
  expect_true(deleteRemoteFile(basename(local)))
  expect_false(basename(local) %in% listRemoteFiles())

  remoteExecute("writeLines('hello from remote', 'note.txt')")
  expect_equal(getRemoteFile("note.txt"), "hello from remote\n")
})

test_that("a snapshot is created, listed, downloaded, loaded into a new session and deleted", {
  remoteLogin(server$url, username = "admin", password = admin_password, diff = FALSE,
              commandline = FALSE)
  remoteExecute("kept <- 'from the snapshot'\nwriteLines('saved', 'saved.txt')")
  id <- createSnapshot("my modeling environment")
  expect_true(any(vapply(listSnapshots(), function(s) identical(s$id, id), TRUE)))
  archive <- downloadSnapshot(id)
  expect_identical(archive[1:2], charToRaw("PK"))
  remoteLogout()

  remoteLogin(server$url, username = "admin", password = admin_password, diff = FALSE,
              commandline = FALSE)
  on.exit(remoteLogout())
  expect_true(loadSnapshot(id))
  result <- remoteExecute("files <- readLines('saved.txt')", outputs = c("kept", "files"))
  expect_equal(result$outputParameters$kept, "from the snapshot")
  expect_equal(result$outputParameters$files, "saved")
  expect_true(deleteSnapshot(id))
  expect_false(any(vapply(listSnapshots(), function(s) identical(s$id, id), TRUE)))
})

test_that("plots are written locally and a token from elsewhere logs in", {
  remoteLogin(server$url, username = "admin", password = admin_password, diff = FALSE,
              commandline = FALSE)
  workdir <- tempfile("plots-")
  dir.create(workdir)
  old <- setwd(workdir)
  on.exit(setwd(old))
  result <- remoteExecute("png('scatter.png'); plot(1:10); invisible(dev.off())", writePlots = TRUE)
  expect_equal(result$changedFiles, "scatter.png")
  expect_identical(readBin(file.path(workdir, "scatter.png"), "raw", 4)[2:4], charToRaw("PNG"))
  remoteLogout()

  answer <- httr::content(httr::POST(paste0(server$url, "/login"), encode = "json",
                                     body = list(username = "admin", password = admin_password)))
  remoteLoginToken(server$url, answer$access_token, session = FALSE)
  expect_type(listSnapshots(), "list")
  remoteLogout()
  expect_error(remoteLoginToken(server$url, "not-a-token", session = FALSE), "HTTP 401")
  expect_error(listSnapshots(), "not logged in")
})

test_that("remoteLoginAAD asks the authority for a token with the reference's arguments", {
  answer <- httr::content(httr::POST(paste0(server$url, "/login"), encode = "json",
                                     body = list(username = "admin", password = admin_password)))
  port_file <- tempfile()
  system2("python3", c(test_path("aad-token-endpoint.py"), port_file, answer$access_token),
          wait = FALSE, stdout = FALSE, stderr = FALSE)
  deadline <- Sys.time() + 10
  while (!file.exists(port_file) || length(readLines(port_file, warn = FALSE)) == 0) {
    if (Sys.time() > deadline) stop("the token endpoint did not start")
    Sys.sleep(0.05)
  }
  authuri <- sprintf("http://127.0.0.1:%s", readLines(port_file, warn = FALSE))
  on.exit(try(httr::GET(paste0(authuri, "/stop")), silent = TRUE))
  remoteLoginAAD(server$url, authuri = authuri, tenantid = "contoso.example",
                 clientid = "native-app", resource = "web-app", session = FALSE,
                 username = "admin", password = admin_password)
  expect_type(listSnapshots(), "list")
  remoteLogout()
  expect_error(
    remoteLoginAAD(server$url, authuri = authuri, tenantid = "contoso.example",
                   clientid = "native-app", resource = "web-app", session = FALSE,
                   username = "admin", password = "wrong"),
    "Azure Active Directory refused the login"
  )
})

test_that("whole workspaces go both ways and local scripts run remotely", {
  remoteLogin(server$url, username = "admin", password = admin_password, diff = FALSE,
              commandline = FALSE)
  on.exit(remoteLogout())
  remoteExecute("alpha <- 1:3\nbeta <- list(k = 'v')")
  rm(list = intersect(c("alpha", "beta"), ls(globalenv())), envir = globalenv())
  getRemoteWorkspace()
  expect_identical(get("alpha", envir = globalenv()), 1:3)
  expect_identical(get("beta", envir = globalenv()), list(k = "v"))
  rm(list = c("alpha", "beta"), envir = globalenv())

  assign("gamma", c(a = 1, b = 2), envir = globalenv())
  on.exit(rm(list = "gamma", envir = globalenv()), add = TRUE)
  putLocalWorkspace()
  script <- tempfile(fileext = ".R")
  writeLines(c("delta <- sum(gamma) * 10", "cat('delta is', delta, '\\n')"), script)
  output <- capture.output(result <- remoteScript(script, outputs = "delta", displayPlots = FALSE, writePlots = FALSE))
  expect_equal(result$outputParameters$delta, 30)
  expect_match(paste(output, collapse = "\n"), "delta is 30")
})
