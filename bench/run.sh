#!/usr/bin/env bash
# Runs a benchmark with one command: `bash bench/run.sh NAME` (NAME: sessions, services, r, batch,
# realtime, sandbox, cluster, auth, environments, console, workers or hostile).
# Builds the release binary, prepares the Python runtime with o16n itself, and runs the driver.
source "$(dirname "$0")/../scripts/common.sh"
cd "$(dirname "$0")/.."

name="${1:-sessions}"
o16n_require_rust
o16n_apt_install gcc pkg-config postgresql python3 python3-venv wrk bubblewrap slirp4netns nftables procps r-base-core r-cran-jsonlite r-cran-plumber
o16n_log "building o16n (release)"
cargo build --release --locked --bin o16n
o16n_log "preparing the Python runtime"
O16N_BENCH_PYTHON="$("$CARGO_TARGET_DIR/release/o16n" runtime setup python --data-dir "$HOME/.cache/o16n/bench-runtime")"
export O16N_BENCH_PYTHON

case "$name" in
    sessions) exec python3 bench/sessions.py ;;
    services | realtime)
        # The peer, MLflow, in a virtual environment of its own (rebuilt when its pins change);
        # it also has skl2onnx and ONNX Runtime for the realtime benchmark.
        mlflow_venv="$HOME/.cache/o16n/bench-mlflow"
        if ! cmp -s bench/requirements-mlflow.txt "$mlflow_venv/o16n-requirements.txt"; then
            o16n_log "creating the MLflow benchmark environment"
            rm -rf "$mlflow_venv"
            python3 -m venv "$mlflow_venv"
            "$mlflow_venv/bin/pip" install --disable-pip-version-check -q -r bench/requirements-mlflow.txt
            cp bench/requirements-mlflow.txt "$mlflow_venv/o16n-requirements.txt"
        fi
        O16N_BENCH_MLFLOW_PYTHON="$mlflow_venv/bin/python" exec python3 "bench/$name.py"
        ;;
    r) exec python3 bench/r_services.py ;;
    batch) exec python3 bench/batch.py ;;
    sandbox) exec python3 bench/sandbox.py ;;
    cluster) o16n_start_postgres; exec python3 bench/cluster.py ;;
    auth) o16n_install_slapd; exec python3 bench/auth.py ;;
    environments) exec python3 bench/environments.py ;;
    console) exec python3 bench/console.py ;;
    workers) exec python3 bench/workers.py ;;
    hostile) exec python3 bench/hostile.py ;;
    *) echo "unknown benchmark $name (expected: sessions, services, r, batch, realtime, sandbox, cluster, auth, environments, console, workers or hostile)" >&2; exit 2 ;;
esac
