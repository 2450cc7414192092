# A glm model published, listed, fetched, consumed, updated, batched and deleted, and the
# reference's own end-to-end script.

carsModel <- glm(formula = am ~ hp + wt, data = mtcars, family = binomial)

manualTransmission <- function(hp, wt) {
  newdata <- data.frame(hp = hp, wt = wt)
  predict(carsModel, newdata, type = "response")
}

test_that("a glm model is published, consumed, updated, batched and deleted", {
  remoteLogin(server$url, username = "admin", password = admin_password, session = FALSE)
  on.exit(remoteLogout())
  api <- publishService("mtService", code = manualTransmission, model = carsModel,
                        inputs = list(hp = "numeric", wt = "numeric"),
                        outputs = list(answer = "numeric"), v = "v1.0.0",
                        descr = "manual transmission")
  expect_s3_class(api, "o16nService")
  listed <- listServices("mtService")
  expect_length(listed, 1)
  expect_equal(listed[[1]]$version, "v1.0.0")
  expect_equal(listed[[1]]$description, "manual transmission")

  service <- getService("mtService", "v1.0.0")
  result <- service$manualTransmission(120, 2.8)
  expect_true(result$success)
  expect_equal(result$output("answer"), unname(manualTransmission(120, 2.8)), tolerance = 1e-9)
  expect_equal(service$consume(wt = 3.2, hp = 200)$output("answer"),
               unname(manualTransmission(200, 3.2)), tolerance = 1e-9)
  capabilities <- service$capabilities()
  expect_equal(capabilities$name, "mtService")
  expect_equal(capabilities$inputs, list(hp = "numeric", wt = "numeric"))
  swagger <- jsonlite::fromJSON(service$swagger())
  expect_equal(swagger$swagger, "2.0")
  expect_true("/api/mtService/v1.0.0" %in% names(swagger$paths))

  doubled <- function(hp, wt) 2 * predict(carsModel, data.frame(hp = hp, wt = wt), type = "response")
  updated <- updateService("mtService", "v1.0.0", code = doubled, descr = "doubled",
                           alias = "manualTransmission")
  expect_equal(updated$manualTransmission(120, 2.8)$output("answer"),
               2 * unname(manualTransmission(120, 2.8)), tolerance = 1e-9)

  records <- mtcars[rep(seq_len(nrow(mtcars)), length.out = 100), c("hp", "wt")]
  batch <- updated$batch(records, parallelCount = 4)$start()
  expect_true(nzchar(batch$id()))
  expect_true(batch$id() %in% updated$getBatchExecutions())
  repeat {
    results <- batch$results(showPartialResults = TRUE)
    if (results$state %in% c(batch$STATE$complete, batch$STATE$failed)) break
    Sys.sleep(0.2)
  }
  expect_equal(results$state, batch$STATE$complete)
  expect_equal(results$totalItemCount, 100)
  answers <- vapply(seq_len(100), function(i) results$execution(i)$outputParameters$answer, 0)
  expected <- 2 * unname(predict(carsModel, records, type = "response"))
  expect_equal(answers, expected, tolerance = 1e-9)

  expect_equal(deleteService("mtService", "v1.0.0"), "Service mtService version v1.0.0 deleted.")
  expect_length(listServices("mtService"), 0)
})

test_that("unknown services and refused calls are clear errors", {
  remoteLogin(server$url, username = "admin", password = admin_password, session = FALSE)
  on.exit(remoteLogout())
  expect_error(getService("noSuchService", "v1"), 'No service found for "noSuchService" version "v1"')
  expect_error(deleteService("noSuchService", "v1"), "HTTP 404")
  expect_error(publishService("rt", model = "model.pkl", serviceType = "Realtime", v = "v1"),
               "ONNX")
  api <- publishService("adder", code = "z <- x + y", inputs = list(x = "numeric", y = "numeric"),
                        outputs = list(z = "numeric"), v = "v1")
  expect_error(api$consume(x = 1, q = 2), "takes x, y")
  status <- getPoolStatus("adder", "v1")
  expect_equal(status[[1]]$status, "NotFound")
  deleteService("adder", "v1")
})

test_that("the reference's end-to-end batch script runs with only the library, URL and credentials changed", {
  script <- readLines(test_path("reference-batch-example.R"))
  script <- gsub("http://localhost:12800", server$url, script, fixed = TRUE)
  script <- gsub("{{YOUR_PASSWORD}}", admin_password, script, fixed = TRUE)
  workdir <- tempfile("batch-example-")
  dir.create(workdir)
  old <- setwd(workdir)
  on.exit({
    setwd(old)
    remoteLogout()
  })
  environment <- new.env(parent = globalenv())
  output <- capture.output(eval(parse(text = script), envir = environment))
  expect_true(file.exists(file.path(workdir, "Histogram.png")))
  # The script ends with the first record's answer (mtcars' first row) and starts by printing
  # the local answer for hp = 120, wt = 2.8.
  first <- unname(predict(carsModel, mtcars[1, c("hp", "wt")], type = "response"))
  expect_equal(environment$answer, first, tolerance = 1e-9)
  expect_match(paste(output, collapse = "\n"), "0.6418125")
  deleteService(environment$serviceName, "v1.0.0")
})

test_that("output files travel as canonical base64 and dedicated pools are managed", {
  remoteLogin(server$url, username = "admin", password = admin_password, session = FALSE)
  on.exit(remoteLogout())
  api <- publishService("plotter", code = "png('plot.png'); plot(1:n); invisible(dev.off())",
                        inputs = list(n = "integer"), artifacts = c("plot.png"), v = "v1")
  result <- api$consume(5L)
  encoded <- result$artifact("plot.png", decode = FALSE)
  expect_false(grepl("[\r\n]", encoded))
  expect_identical(result$artifact("plot.png")[2:4], charToRaw("PNG"))

  configureServicePool("plotter", "v1", initialPoolSize = 1, maxPoolSize = 2)
  deadline <- Sys.time() + 60
  repeat {
    status <- getPoolStatus("plotter", "v1")
    if (identical(status[[1]]$status, "Success") || Sys.time() > deadline) break
    Sys.sleep(0.2)
  }
  expect_equal(status[[1]]$status, "Success")
  expect_true(nzchar(status[[1]]$computeNodeEndpoint))
  deleteServicePool("plotter", "v1")
  expect_equal(getPoolStatus("plotter", "v1")[[1]]$status, "NotFound")
  deleteService("plotter", "v1")
})

test_that("an ONNX model is published as a realtime service and a batch can be cancelled", {
  remoteLogin(server$url, username = "admin", password = admin_password, session = FALSE)
  on.exit(remoteLogout())
  api <- publishService("linear", model = test_path("linear.onnx"), v = "v1",
                        alias = "predictLinear", serviceType = "Realtime", descr = "y = 1 + 2 a + 3 b")
  result <- api$predictLinear(data.frame(a = c(1, 2), b = c(0, 1)))
  expect_true(result$success)
  predicted <- result$outputParameters$outputData[[1]]
  expect_equal(predicted, c(3, 8), tolerance = 1e-5)
  updated <- updateService("linear", "v1", descr = "updated", serviceType = "Realtime")
  expect_equal(updated$capabilities()$description, "updated")
  deleteService("linear", "v1")

  slow <- publishService("slow", code = "Sys.sleep(0.5)\ny <- x", inputs = list(x = "numeric"),
                         outputs = list(y = "numeric"), v = "v1")
  batch <- slow$batch(data.frame(x = 1:50), parallelCount = 1)$start()
  id <- batch$id()
  batch$cancel()
  expect_false(id %in% slow$getBatchExecutions())
  deleteService("slow", "v1")
})
