#!/usr/bin/env bash
# Install the system packages and npm servers that rhfs's test rig needs.
#
# Idempotent: packages already present are not reinstalled, `apt-get update`
# runs at most once and only when something is missing, and the npm servers
# are installed into <repo>/.testbed-node only if the pinned versions are not
# already there.  Meant to run as root, non-interactively.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
NODE_DIR="$REPO/.testbed-node"
export DEBIAN_FRONTEND=noninteractive

APT_PACKAGES=(
    fuse3 libfuse3-3
    openssh-server openssh-client
    rsync curl attr
    rclone s3fs
    fio stress-ng  # the mount tests' verified I/O and filesystem stress runs
    psmisc procps
    systemd  # systemd-analyze, to verify systemd/rhfs.service
)
NPM_PACKAGES=(azurite@3.35.0 s3rver@3.7.1)

log() { printf '[install-system-deps] %s\n' "$*" >&2; }

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo"
    else
        log "not root and no sudo: cannot install system packages"
        exit 1
    fi
fi

# --- Debian packages --------------------------------------------------------
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    status="$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)"
    if [ "$status" != "install ok installed" ]; then
        missing+=("$pkg")
    fi
done

if [ "${#missing[@]}" -gt 0 ]; then
    log "installing: ${missing[*]}"
    $SUDO apt-get update -q
    $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
else
    log "Debian packages already installed"
fi

# --- /etc/fuse.conf: user_allow_other ----------------------------------------
if [ ! -f /etc/fuse.conf ] || ! grep -Eq '^[[:space:]]*user_allow_other[[:space:]]*$' /etc/fuse.conf; then
    log "enabling user_allow_other in /etc/fuse.conf"
    if [ -s /etc/fuse.conf ] && [ -n "$(tail -c1 /etc/fuse.conf)" ]; then
        echo | $SUDO tee -a /etc/fuse.conf >/dev/null   # file lacks a final newline
    fi
    echo "user_allow_other" | $SUDO tee -a /etc/fuse.conf >/dev/null
fi

# sshd refuses to start without its privilege-separation directory.
$SUDO mkdir -p /run/sshd
$SUDO chmod 0755 /run/sshd

# --- npm servers (Azurite, s3rver) -------------------------------------------
if ! command -v npm >/dev/null 2>&1; then
    log "npm not found: install Node.js 18+ first"
    exit 1
fi

npm_installed_version() {  # $1 = package name; prints the version or nothing
    local pj="$NODE_DIR/node_modules/$1/package.json"
    [ -f "$pj" ] || return 0
    node -e 'process.stdout.write(require(process.argv[1]).version)' "$pj" 2>/dev/null || true
}

need_npm=0
for spec in "${NPM_PACKAGES[@]}"; do
    name="${spec%@*}"
    want="${spec##*@}"
    have="$(npm_installed_version "$name")"
    if [ "$have" != "$want" ]; then
        need_npm=1
    fi
done
if [ ! -x "$NODE_DIR/node_modules/.bin/azurite-blob" ] || [ ! -x "$NODE_DIR/node_modules/.bin/s3rver" ]; then
    need_npm=1
fi

if [ "$need_npm" -eq 1 ]; then
    log "installing ${NPM_PACKAGES[*]} into $NODE_DIR"
    mkdir -p "$NODE_DIR"
    npm install --prefix "$NODE_DIR" --no-audit --no-fund --loglevel=error "${NPM_PACKAGES[@]}"
else
    log "npm servers already installed in $NODE_DIR"
fi

log "done"
