#!/usr/bin/env bash
# Starts a local cluster for trying scale-out: 2 web nodes and 2 compute nodes on loopback
# addresses standing for separate machines, sharing one PostgreSQL database.
#
#   web nodes:      http://127.0.0.1:12800 and http://127.0.0.1:12801 (any of them, or both
#                   behind a load balancer: no session stickiness is needed)
#   compute nodes:  http://127.0.0.2:12805 and http://127.0.0.3:12805, registered on the web
#                   nodes as the one range entry http://127.0.0.2-3:12805
#   database:       the PostgreSQL database o16n_cluster on 127.0.0.1:5432 (created if missing)
#
# State (data directories, logs, the generated cluster secret and admin password) lives in
# ./o16n-cluster. Ctrl-C stops every node. Build output is shared with the other scripts.
source "$(dirname "$0")/common.sh"
cd "$(dirname "$0")/.."

o16n_require_rust
o16n_apt_install gcc pkg-config postgresql python3 python3-venv bubblewrap slirp4netns nftables procps r-base-core r-cran-jsonlite
o16n_start_postgres
admin_url="${O16N_CLUSTER_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
if ! psql "$admin_url" -Atqc "SELECT 1 FROM pg_database WHERE datname = 'o16n_cluster'" | grep -q 1; then
    psql "$admin_url" -qc 'CREATE DATABASE o16n_cluster'
fi

o16n_log "building o16n (release)"
cargo build --release --locked --bin o16n
binary="$CARGO_TARGET_DIR/release/o16n"
python="$("$binary" runtime setup python --data-dir "$HOME/.cache/o16n/cluster-runtime")"

state="$PWD/o16n-cluster"
mkdir -p "$state"
# The secret and the password are given to the nodes through their environment, never on a
# command line (where any local user could read them).
[ -f "$state/cluster-secret" ] || (umask 077 && head -c 32 /dev/urandom | base64 > "$state/cluster-secret")
[ -f "$state/admin-password" ] || (umask 077 && echo "Local-Cluster-1" > "$state/admin-password")
export O16N_CLUSTER__SECRET="$(cat "$state/cluster-secret")"
export O16N_ADMIN_PASSWORD="$(cat "$state/admin-password")"
export O16N_DATABASE__URL="${admin_url%/*}/o16n_cluster"
export O16N_CLUSTER__COMPUTE_NODES='["http://127.0.0.2-3:12805"]'
export O16N_RUNTIME__PYTHON__EXECUTABLE="$python"

pids=()
stop() {
    kill "${pids[@]}" 2>/dev/null || true
    wait 2>/dev/null || true
}
trap stop EXIT INT TERM

start() {
    local name="$1"; shift
    "$binary" serve "$@" --data-dir "$state/$name" > "$state/$name.out" 2> "$state/$name.log" &
    pids+=("$!")
    for _ in $(seq 1 120); do
        grep -q '^listening on' "$state/$name.out" 2>/dev/null && break
        sleep 0.5
    done
    o16n_log "$name: $(head -1 "$state/$name.out") (log: $state/$name.log)"
}

start compute-a --role compute --bind 127.0.0.2 --port 12805
start compute-b --role compute --bind 127.0.0.3 --port 12805
start web-a --role web --bind 127.0.0.1 --port 12800
start web-b --role web --bind 127.0.0.1 --port 12801

cat >&2 <<EOF

The cluster is up. Log in as admin with the password in $state/admin-password:

  curl -s localhost:12800/login -H 'Content-Type: application/json' \\
       -d "{\"username\":\"admin\",\"password\":\"\$(cat $state/admin-password)\"}"

GET /status on either web node lists both compute nodes. Kill a node (kill -9 the pid in
\`pgrep -f 'o16n serve'\`) to watch failover; Ctrl-C here stops them all.
EOF
wait
