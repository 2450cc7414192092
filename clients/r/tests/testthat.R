# Runs the package's tests against a real o16n server that the tests start (O16N_BINARY names
# the server binary; scripts/test.sh sets it).
library(testthat)
library(o16n)
test_check("o16n")
