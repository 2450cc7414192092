#!/usr/bin/env bash
# Runs a benchmark with one command: `bash bench/run.sh NAME` (NAME: sessions).
# Builds the release binary, prepares the Python runtime with o16n itself, and runs the driver.
source "$(dirname "$0")/../scripts/common.sh"
cd "$(dirname "$0")/.."

name="${1:-sessions}"
o16n_require_rust
o16n_apt_install gcc pkg-config python3 python3-venv
o16n_log "building o16n (release)"
cargo build --release --locked --bin o16n
o16n_log "preparing the Python runtime"
O16N_BENCH_PYTHON="$("$CARGO_TARGET_DIR/release/o16n" runtime setup python --data-dir "$HOME/.cache/o16n/bench-runtime")"
export O16N_BENCH_PYTHON

case "$name" in
    sessions) exec python3 bench/sessions.py ;;
    *) echo "unknown benchmark $name (expected: sessions)" >&2; exit 2 ;;
esac
