# Shared by scripts/serve.sh and scripts/test.sh: installs what a fresh Debian 12 machine lacks
# and sets up the build environment. Sourced, not run.

set -euo pipefail

# One target directory outside the clone, so that a fresh clone (CI's, for one) reuses earlier
# builds instead of compiling every dependency again on two cores.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/o16n/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

o16n_log() { printf '==> %s\n' "$*" >&2; }

# Installs Debian packages that are missing (as root, or through sudo).
o16n_apt_install() {
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
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
}

o16n_require_rust() {
    if ! command -v cargo >/dev/null; then
        echo "cargo is missing: install the Rust toolchain (rustup) first" >&2
        exit 1
    fi
}
