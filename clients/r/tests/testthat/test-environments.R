# Named environments from R: an environment with a package from the configured repository,
# a remote session and a service in it, the default environment without it.

login_admin <- function(environment = NULL) {
  remoteLogin(server$url, session = TRUE, diff = FALSE, commandline = FALSE,
              username = "admin", password = admin_password, environment = environment)
}

test_that("an R environment is created, used by a session and a service, and deleted", {
  login_admin(environment = NULL)
  on.exit(remoteLogout())
  environment <- createEnvironment("hello-r", packages = "o16nhello")
  expect_equal(environment$state, "Ready")
  expect_equal(environment$resolvedPackages[[1]]$name, "o16nhello")
  expect_true("hello-r" %in% vapply(listEnvironments(), `[[`, "", "name"))
  expect_false(remoteExecute("found <- requireNamespace('o16nhello', quietly = TRUE)",
                             outputs = "found")$outputParameters$found)
  remoteLogout()

  login_admin(environment = "hello-r")
  result <- remoteExecute("library(o16nhello); greeting <- hello('alice')", outputs = "greeting")
  expect_equal(result$outputParameters$greeting, "hello alice from o16nhello")

  greet <- function(who) {
    library(o16nhello)
    hello(who)
  }
  service <- publishService("greeter", code = greet, inputs = list(who = "character"),
                            outputs = list(answer = "character"), v = "1.0",
                            environment = "hello-r")
  expect_equal(service$greet("bob")$output("answer"), "hello bob from o16nhello")
  expect_error(deleteEnvironment("hello-r"), "greeter/1.0")
  deleteService("greeter", "1.0")
  expect_true(deleteEnvironment("hello-r"))
  expect_error(getEnvironment("hello-r"), "no environment")
  expect_error(createEnvironment("elsewhere", packages = "x", repositories = "https://elsewhere.example"),
               "not one this server takes")
})
