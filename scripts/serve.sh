#!/usr/bin/env bash
# Installs what is missing, builds o16n in release mode and starts the one-box server.
# Extra arguments go to `o16n serve` (e.g. --port 0, --data-dir DIR, --config FILE).
source "$(dirname "$0")/common.sh"
cd "$(dirname "$0")/.."

o16n_require_rust
o16n_apt_install gcc pkg-config python3 python3-venv bubblewrap slirp4netns nftables procps r-base-core r-cran-jsonlite
o16n_log "building o16n (release)"
cargo build --release --locked --bin o16n
exec "$CARGO_TARGET_DIR/release/o16n" serve "$@"
