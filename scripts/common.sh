# Shared by the scripts under scripts/ and bench/: installs what a fresh Debian 12 machine lacks
# and sets up the build environment. Sourced, not run.

set -euo pipefail

# One target directory outside the clone, so that a fresh clone (CI's, for one) reuses earlier
# builds instead of compiling every dependency again on two cores.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/o16n/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

o16n_log() { printf '==> %s\n' "$*" >&2; }

# Installs Debian packages that are missing (as root, or through sudo). With
# `--no-install-recommends` first, without the packages they merely recommend (chromium's would
# add hundreds of megabytes nothing here uses).
o16n_apt_install() {
    local options=()
    if [ "${1:-}" = "--no-install-recommends" ]; then
        options+=("$1")
        shift
    fi
    local missing=()
    for package in "$@"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" \
            || missing+=("$package")
    done
    [ "${#missing[@]}" -eq 0 ] && return 0
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    o16n_log "installing Debian packages: ${missing[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${options[@]}" "${missing[@]}" >/dev/null
}

# Installs OpenLDAP's slapd and its command-line tools for the directory tests, without the
# package's own system-wide directory (the tests configure theirs in a temporary directory).
o16n_install_slapd() {
    if ! dpkg-query -W -f='${Status}' slapd 2>/dev/null | grep -q "install ok installed"; then
        local sudo=""
        [ "$(id -u)" -ne 0 ] && sudo="sudo"
        echo "slapd slapd/no_configuration boolean true" | $sudo debconf-set-selections
    fi
    o16n_apt_install slapd ldap-utils
}

o16n_require_rust() {
    if ! command -v cargo >/dev/null; then
        echo "cargo is missing: install the Rust toolchain (rustup) first" >&2
        exit 1
    fi
}

# Starts the local PostgreSQL cluster on 127.0.0.1:5432 when it is not answering (Debian's
# packaging; no systemd needed).
o16n_start_postgres() {
    pg_isready -q -h 127.0.0.1 -p 5432 && return 0
    o16n_log "starting PostgreSQL"
    local cluster_version
    cluster_version="$(ls /etc/postgresql | sort -V | tail -1)"
    pg_ctlcluster --skip-systemctl-redirect "$cluster_version" main start
    for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && return 0; sleep 1; done
    echo "PostgreSQL did not start on 127.0.0.1:5432" >&2
    return 1
}
