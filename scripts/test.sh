#!/usr/bin/env bash
# Installs what is missing and runs every check: formatting, clippy with warnings as errors,
# and all tests (unit, store suite on SQLite and PostgreSQL, black-box HTTP and CLI tests).
source "$(dirname "$0")/common.sh"
cd "$(dirname "$0")/.."

o16n_require_rust
# Every test runs here, those that need the dependencies installed below included; without
# this, `cargo test` reports them as ignored (crates/server/build.rs).
export O16N_FULL_SUITE=1
o16n_apt_install gcc pkg-config postgresql python3 python3-venv bubblewrap procps r-base-core r-cran-jsonlite \
    r-cran-httr r-cran-testthat r-cran-withr
# Workers with the network on get outbound-only access through slirp4netns, filtered by nftables.
o16n_apt_install slirp4netns nftables
# Directory sign-in is tested against a real OpenLDAP server.
o16n_install_slapd
# The capacity report is checked by drawing it in a real browser.
o16n_apt_install --no-install-recommends chromium

# The store suite needs PostgreSQL on 127.0.0.1:5432 with trust authentication for `postgres`.
o16n_start_postgres
export O16N_TEST_POSTGRES_URL="${O16N_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
if ! psql "$O16N_TEST_POSTGRES_URL" -Atqc 'SELECT 1' >/dev/null 2>&1; then
    echo "cannot connect to $O16N_TEST_POSTGRES_URL: the store suite needs a PostgreSQL user" \
         "that may create databases (set O16N_TEST_POSTGRES_URL, or allow trust auth on 127.0.0.1)" >&2
    exit 1
fi

# One build of everything the tests need, the `o16n` binary included: built apart, the binary
# would get other dependency features than the tests and most dependencies would compile twice.
o16n_log "building o16n and its tests"
cargo test --workspace --locked --no-run

# The tests run real Python workers. The runtime they use is made by o16n itself, with the
# same command an operator runs, kept between runs (it is rebuilt only when the pins change).
o16n_log "setting up the test Python runtime"
O16N_TEST_PYTHON="$("$CARGO_TARGET_DIR/debug/o16n" runtime setup python --data-dir "$HOME/.cache/o16n/test-runtime")"
export O16N_TEST_PYTHON
# The environment tests serve a package index of their own, as an organisation's mirror; it
# holds one real package from PyPI, fetched here once (the tests themselves stay on loopback).
O16N_TEST_WHEELS="$HOME/.cache/o16n/wheels"
if ! ls "$O16N_TEST_WHEELS"/tabulate-0.9.0-*.whl >/dev/null 2>&1; then
    o16n_log "fetching the wheel the environment tests mirror"
    "$O16N_TEST_PYTHON" -m pip download --disable-pip-version-check -q --no-deps \
        -d "$O16N_TEST_WHEELS" tabulate==0.9.0
fi
export O16N_TEST_WHEELS

o16n_log "cargo fmt --check"
cargo fmt --all --check
o16n_log "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings
o16n_log "cargo test"
cargo test --workspace --locked

# The official Python client of the reference server (and a Swagger 2.0 client generator),
# in a virtual environment of their own, against the real binary.
client_venv="$HOME/.cache/o16n/client-venv"
if ! cmp -s tests/client/requirements.txt "$client_venv/o16n-requirements.txt"; then
    o16n_log "creating the client test environment"
    rm -rf "$client_venv"
    python3 -m venv "$client_venv"
    "$client_venv/bin/pip" install --disable-pip-version-check -q -r tests/client/requirements.txt
    cp tests/client/requirements.txt "$client_venv/o16n-requirements.txt"
fi
o16n_log "worker protocol tests (Python and R workers against the golden frames)"
"$client_venv/bin/python" -m pytest -q -p no:cacheprovider workers/python
Rscript workers/r/test_protocol.R
o16n_log "client tests (official azureml-model-management-sdk, generated Swagger client)"
O16N_BINARY="$CARGO_TARGET_DIR/debug/o16n" "$client_venv/bin/python" -m pytest -q -p no:cacheprovider tests/client

# The R client package, installed as a user installs it, against the real binary.
o16n_log "R client tests (clients/r, testthat)"
r_library="$(mktemp -d)"
R CMD INSTALL --no-test-load --library="$r_library" clients/r >/dev/null
(cd clients/r && O16N_BINARY="$CARGO_TARGET_DIR/debug/o16n" R_LIBS="$r_library" Rscript -e \
    'testthat::test_dir("tests/testthat", package = "o16n", load_package = "installed", stop_on_failure = TRUE)')
rm -rf "$r_library"
