//! Turns on the `full_suite` cfg when `O16N_FULL_SUITE` is set (as `scripts/test.sh` sets it):
//! the tests that need real Python and R workers, PostgreSQL, slapd or Chromium run then, and
//! are reported as ignored, with the reason, otherwise.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(full_suite)");
    println!("cargo::rerun-if-env-changed=O16N_FULL_SUITE");
    if std::env::var_os("O16N_FULL_SUITE").is_some_and(|value| !value.is_empty() && value != "0") {
        println!("cargo::rustc-cfg=full_suite");
    }
}
