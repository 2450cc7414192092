# Starts a real o16n server for the tests: the binary O16N_BINARY on a free port with a fresh
# data directory, R workers warm, and the test Python runtime (O16N_TEST_PYTHON) for what
# needs Python. Stopped when the test run ends.

admin_password <- "Admin-Pass-1"

start_o16n <- function() {
  binary <- Sys.getenv("O16N_BINARY")
  if (!nzchar(binary)) stop("O16N_BINARY must name the o16n binary (scripts/test.sh sets it)")
  data_dir <- tempfile("o16n-data-")
  dir.create(data_dir)
  out <- tempfile("o16n-out-")
  env <- c(
    sprintf("O16N_ADMIN_PASSWORD=%s", admin_password),
    sprintf("O16N_RUNTIME__PYTHON__EXECUTABLE=%s", Sys.getenv("O16N_TEST_PYTHON")),
    "O16N_RUNTIME__PYTHON__INITIAL_SIZE=0",
    "O16N_RUNTIME__R__INITIAL_SIZE=1",
    sprintf("O16N_ENVIRONMENTS__R_REPOSITORIES=[\"%s\"]", repository$url),
    "RUST_LOG=warn"
  )
  # `exec` keeps the shell's pid, printed first, for the server, so that it can be stopped.
  command <- sprintf("echo $$; exec %s serve --port 0 --data-dir %s", shQuote(binary), shQuote(data_dir))
  system2("sh", c("-c", shQuote(command)), stdout = out, stderr = FALSE, wait = FALSE, env = env)
  deadline <- Sys.time() + 60
  repeat {
    lines <- if (file.exists(out)) readLines(out, warn = FALSE) else character(0)
    listening <- grep("^listening on ", lines, value = TRUE)
    if (length(listening) > 0) break
    if (Sys.time() > deadline) stop("the o16n server did not start")
    Sys.sleep(0.05)
  }
  list(pid = as.integer(lines[1]), url = sub("^listening on ", "", listening[1]), data_dir = data_dir)
}

server <- start_o16n()
withr::defer(tools::pskill(server$pid), testthat::teardown_env())
