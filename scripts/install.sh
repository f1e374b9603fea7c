#!/usr/bin/env bash
# Install rhfs from this clone for the user who runs it, on Debian or Ubuntu: the README's
# first set-up command calls it.
#
#   bash scripts/install.sh [api] [attr]
#
# - Debian packages: fuse3 (libfuse3 and fusermount3) and python3-venv (ensurepip, which a
#   stock Debian or Ubuntu lacks), installed only if missing, as root or through sudo;
# - rhfs in its own virtual environment, $RHFS_VENV (default ~/.local/share/rhfs/venv), made
#   by the first python3 on PATH (or $RHFS_PYTHON): the system Python stays untouched, so
#   PEP 668's "externally-managed-environment" never applies;
# - `rhfs` and `mount.rhfs` linked into $RHFS_BIN (default ~/.local/bin).
#
# Optional extras: `api` adds pandas (the Python API's tables as DataFrames), `attr` adds the
# Debian package attr (getfattr, setfattr). Running it again upgrades the install in place.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${RHFS_PYTHON:-python3}"
VENV="${RHFS_VENV:-$HOME/.local/share/rhfs/venv}"
BIN="${RHFS_BIN:-$HOME/.local/bin}"
export DEBIAN_FRONTEND=noninteractive

log() { printf '[install] %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

apt_packages=(fuse3 python3-venv)
pip_extras=()
for extra in "$@"; do
    case "$extra" in
        api) pip_extras+=(api) ;;
        attr) apt_packages+=(attr) ;;
        *) die "unknown extra '$extra' (known: api, attr)" ;;
    esac
done

[ -f "$REPO/pyproject.toml" ] && [ -d "$REPO/rhfs" ] || die "$REPO is not a clone of rhfs"
command -v "$PYTHON" >/dev/null 2>&1 || die "$PYTHON not found; install it with: apt-get install python3"
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || die "rhfs needs Python 3.11 or later; $PYTHON is $("$PYTHON" -V 2>&1)"

# --- Debian packages ------------------------------------------------------------------
missing=()
for pkg in "${apt_packages[@]}"; do
    if [ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)" != "install ok installed" ]; then
        missing+=("$pkg")
    fi
done
if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" -eq 0 ]; then
        as_root=()
    elif command -v sudo >/dev/null 2>&1; then
        as_root=(sudo)
    else
        die "needs ${missing[*]}, and this is neither root nor a user with sudo: run it as root (su -)"
    fi
    log "installing ${missing[*]}"
    "${as_root[@]}" apt-get update -q
    "${as_root[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# --- rhfs in its own virtual environment ----------------------------------------------
if [ ! -x "$VENV/bin/python" ]; then
    log "making a virtual environment in $VENV ($("$PYTHON" -V 2>&1))"
    mkdir -p "$(dirname "$VENV")"
    "$PYTHON" -m venv "$VENV"
fi
target="$REPO"
if [ "${#pip_extras[@]}" -gt 0 ]; then
    target="$REPO[$(IFS=,; echo "${pip_extras[*]}")]"
fi
log "installing rhfs from $REPO"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "$target"

mkdir -p "$BIN"
for command in rhfs mount.rhfs; do
    ln -sf "$VENV/bin/$command" "$BIN/$command"
done
log "installed $BIN/rhfs ($("$BIN/rhfs" --version))"
case ":$PATH:" in
    *":$BIN:"*) ;;
    *) log "$BIN is not on PATH: call $BIN/rhfs, or add $BIN to PATH (a user's ~/.profile on Debian and Ubuntu does so at the next login)" ;;
esac
