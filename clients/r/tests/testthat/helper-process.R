# Starting the test's background processes: a command run by a shell that prints its pid
# first and then `exec`s the program (which keeps that pid, so that it can be stopped), and
# waiting until the program prints the line that says it is ready.

# Starts `command` and returns its pid and the first line matching `ready` (within `timeout`
# seconds); `what` names it in the error when it does not start.
start_background <- function(command, ready, what, timeout = 60, env = character()) {
  out <- tempfile("o16n-out-")
  system2("sh", c("-c", shQuote(paste("echo $$; exec", command))), stdout = out, stderr = FALSE,
          wait = FALSE, env = env)
  deadline <- Sys.time() + timeout
  repeat {
    lines <- if (file.exists(out)) readLines(out, warn = FALSE) else character(0)
    found <- grep(ready, lines[-1], value = TRUE)
    if (length(found) > 0) return(list(pid = as.integer(lines[1]), line = found[1]))
    if (Sys.time() > deadline) stop(sprintf("%s did not start", what))
    Sys.sleep(0.05)
  }
}
