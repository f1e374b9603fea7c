#!/usr/bin/env bash
# Install rhfs as a system service and as an fstab filesystem type.
#
#   sudo scripts/install-service.sh [--root DIR] [--mountpoint /rh] [--config FILE] [--no-enable]
#
# It writes, under DIR (default /):
#   etc/systemd/system/rhfs.service  systemd/rhfs.service, pointing at the installed rhfs
#   sbin/mount.fuse.rhfs             a link to mount.rhfs: mount(8) runs it for type fuse.rhfs,
#                                    so an fstab line works:
#                                    rhfs  /rh  fuse.rhfs  config=/etc/rhfs/config.toml,allow_other,_netdev  0 0
#   etc/rhfs/config.toml             a commented example (mode 600), only if none exists
# then checks the unit with systemd-analyze verify and, when DIR is / and systemd runs,
# reloads systemd and enables the unit (start it with: systemctl start rhfs).
#
# rhfs must be installed first (scripts/install.sh); the Python that has it is $PYTHON (default: the
# virtual environment scripts/install.sh made, ~/.local/share/rhfs/venv, if there is one, else python3).
# Idempotent: running it again rewrites the unit and the link, and keeps the config.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ROOT=/
MOUNTPOINT=/rh
CONFIG=/etc/rhfs/config.toml
ENABLE=1
DEFAULT_VENV_PYTHON="${RHFS_VENV:-$HOME/.local/share/rhfs/venv}/bin/python"
if [ -z "${PYTHON:-}" ]; then
    if [ -x "$DEFAULT_VENV_PYTHON" ]; then PYTHON="$DEFAULT_VENV_PYTHON"; else PYTHON=python3; fi
fi

log() { printf '[install-service] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

while [ $# -gt 0 ]; do
    case "$1" in
        --root) ROOT="$2"; shift 2 ;;
        --mountpoint) MOUNTPOINT="$2"; shift 2 ;;
        --config) CONFIG="$2"; shift 2 ;;
        --no-enable) ENABLE=0; shift ;;
        -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
        *) die "unknown argument: $1 (see --help)" ;;
    esac
done
case "$MOUNTPOINT$CONFIG" in *[[:space:]]*) die "paths with spaces are not supported in the unit" ;; esac
ROOT="${ROOT%/}"

# The installed console scripts, not a shell shim (pyenv) that systemd and mount(8) may not resolve.
BIN_DIR="$("$PYTHON" -c 'import rhfs.cli, sysconfig; print(sysconfig.get_path("scripts"))' 2>/dev/null)" \
    || die "rhfs is not installed for $PYTHON; run: $PYTHON -m pip install $REPO"
RHFS_BIN="$BIN_DIR/rhfs"
HELPER_BIN="$BIN_DIR/mount.rhfs"
[ -x "$RHFS_BIN" ] || die "$RHFS_BIN not found; run: $PYTHON -m pip install $REPO"
[ -x "$HELPER_BIN" ] || die "$HELPER_BIN not found; run: $PYTHON -m pip install $REPO"

UNIT_DIR="$ROOT/etc/systemd/system"
UNIT="$UNIT_DIR/rhfs.service"
mkdir -p "$UNIT_DIR" "$ROOT/sbin" "$ROOT$(dirname "$CONFIG")"
sed -e "s#/usr/local/bin/rhfs#$RHFS_BIN#g" \
    -e "s# /rh # $MOUNTPOINT #g" -e "s# /rh\$# $MOUNTPOINT#" \
    -e "s#/etc/rhfs/config.toml#$CONFIG#g" \
    -e "s#tree at /rh\$#tree at $MOUNTPOINT#" \
    "$REPO/systemd/rhfs.service" > "$UNIT.tmp"
chmod 0644 "$UNIT.tmp"
mv "$UNIT.tmp" "$UNIT"
log "wrote $UNIT (rhfs: $RHFS_BIN, mount point: $MOUNTPOINT, config: $CONFIG)"

ln -sfn "$HELPER_BIN" "$ROOT/sbin/mount.fuse.rhfs"
log "linked $ROOT/sbin/mount.fuse.rhfs -> $HELPER_BIN"

chmod 0700 "$ROOT$(dirname "$CONFIG")"
if [ ! -e "$ROOT$CONFIG" ]; then
    (umask 077 && cat > "$ROOT$CONFIG" <<'TOML'
# rhfs configuration (see docs/SEMANTICS.md). Every key is optional; defaults are shown.
# Keep this file mode 600 if it holds a secret: rhfs refuses to start otherwise.

# [mount]
# attr_ttl = 5.0                 # seconds attributes and listings are cached
# cache_dir = "~/.cache/rhfs"    # write spools, failed uploads, rhfs.log of background mounts
# log_level = "INFO"

# [stores.s3]                    # credentials come from the provider's standard chain
# protocol = "s3"
# buckets = ["my-bucket"]

# [clusters.cpu-cluster]
# host = "10.0.0.5"
# user = "ubuntu"
# identity_file = "~/.ssh/id_ed25519"
TOML
    )
    log "wrote an example $ROOT$CONFIG (edit it, then start the service)"
else
    log "kept the existing $ROOT$CONFIG"
fi

if command -v systemd-analyze >/dev/null 2>&1; then
    systemd-analyze verify "$UNIT" || die "systemd-analyze verify $UNIT failed"
    log "systemd-analyze verify: ok"
else
    log "systemd-analyze not found: unit not verified (apt-get install systemd)"
fi

if [ "$ROOT" = "" ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    systemctl daemon-reload
    if [ "$ENABLE" -eq 1 ]; then
        systemctl enable rhfs.service
        log "enabled rhfs.service; start it now with: systemctl start rhfs"
    fi
else
    log "systemd is not running here (or --root was given): not enabled"
fi
