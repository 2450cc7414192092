# Starts a real o16n server for the tests: the binary O16N_BINARY on a free port with a fresh
# data directory, R workers warm, and the test Python runtime (O16N_TEST_PYTHON) for what
# needs Python. Stopped when the test run ends.

admin_password <- "Admin-Pass-1"

start_o16n <- function() {
  binary <- Sys.getenv("O16N_BINARY")
  if (!nzchar(binary)) stop("O16N_BINARY must name the o16n binary (scripts/test.sh sets it)")
  data_dir <- tempfile("o16n-data-")
  dir.create(data_dir)
  env <- c(
    sprintf("O16N_ADMIN_PASSWORD=%s", admin_password),
    sprintf("O16N_RUNTIME__PYTHON__EXECUTABLE=%s", Sys.getenv("O16N_TEST_PYTHON")),
    "O16N_RUNTIME__PYTHON__INITIAL_SIZE=0",
    "O16N_RUNTIME__R__INITIAL_SIZE=1",
    sprintf("O16N_ENVIRONMENTS__R_REPOSITORIES=[\"%s\"]", repository$url),
    # R packages build from source, which a server allows only when told.
    "O16N_ENVIRONMENTS__ALLOW_SOURCE_BUILDS=true",
    "RUST_LOG=warn"
  )
  started <- start_background(
    sprintf("%s serve --port 0 --data-dir %s", shQuote(binary), shQuote(data_dir)),
    "^listening on ", "the o16n server", env = env)
  list(pid = started$pid, url = sub("^listening on ", "", started$line), data_dir = data_dir)
}

server <- start_o16n()
withr::defer(tools::pskill(server$pid), testthat::teardown_env())
