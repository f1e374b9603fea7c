"""The mount daemon's life: prepare the mount point, serve, tell systemd, stop cleanly.

``rhfs mount --foreground`` runs :func:`run` in the calling process. Plain
``rhfs mount`` starts that same command as a child with a fresh session and
returns once the mount answers, so the daemon never forks after fsspec
backends (and their event-loop threads) exist.

systemd: READY=1 is sent over ``$NOTIFY_SOCKET`` only once the mount answers;
on SIGTERM libfuse leaves its loop, the kernel mount is removed, and
``destroy`` uploads pending writes and sends STOPPING=1.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import threading
import time

from rhfs import mountpoint as mp
from rhfs.config import Config, expand
from rhfs.errors import RhfsError

log = logging.getLogger(__name__)


def sd_notify(message: str) -> bool:
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.connect(address)
        sock.sendall(message.encode())
    return True


def prepare_mountpoint(path: str) -> None:
    """Clean a stale mount left by a killed daemon; refuse a live one."""
    if mp.is_stale(path):
        log.warning("%s: stale mount (Transport endpoint is not connected); cleaning it up", path)
        mp.unmount(path, lazy=True)
    elif mp.mount_type(path) is not None:
        raise RhfsError(f"{path} is already mounted ({mp.mount_type(path)}); run: rhfs unmount {path}")
    if not os.path.isdir(path):
        raise RhfsError(f"{path}: mount point does not exist or is not a directory")


def run(config: Config, mountpoint: str, *, read_only: bool = False, allow_other: bool = False) -> None:
    """Serve the tree at ``mountpoint`` until unmounted or signalled."""
    from rhfs.fuse_adapter import Operations, serve
    from rhfs.wiring import build_vfs

    mountpoint = os.path.abspath(expand(mountpoint))
    prepare_mountpoint(mountpoint)
    vfs = build_vfs(config, mountpoint=mountpoint)
    vfs.read_only = vfs.read_only or read_only
    operations = Operations(vfs)

    def announce_when_ready() -> None:
        if mp.wait_until(lambda: mp.answers(mountpoint), timeout=60):
            log.info("mounted %s (config: %s)", mountpoint, config.source or "embedded default")
            sd_notify("READY=1\nSTATUS=serving " + mountpoint)
        else:
            log.error("%s did not answer within 60 s", mountpoint)

    def on_destroy() -> None:
        sd_notify("STOPPING=1")
        log.info("unmounted %s; pending writes uploaded", mountpoint)

    operations.on_destroy = on_destroy
    threading.Thread(target=announce_when_ready, name="rhfs-ready", daemon=True).start()
    serve(
        operations,
        mountpoint,
        allow_other=allow_other or config.mount.allow_other,
        read_only=read_only or config.mount.read_only,
    )


def spawn(argv: list[str], mountpoint: str, log_path: str, timeout: float = 60.0) -> int:
    """Start ``rhfs mount --foreground`` as a detached child; return once the mount answers."""
    mountpoint = os.path.abspath(expand(mountpoint))
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    with open(log_path, "ab") as log_file:
        child = subprocess.Popen(
            [sys.executable, "-m", "rhfs", *argv, "--foreground"],
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=log_file,
            start_new_session=True,
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if mp.answers(mountpoint):
            return 0
        if child.poll() is not None:
            break
        time.sleep(0.05)
    else:
        child.terminate()
    with open(log_path, "rb") as f:
        tail = f.read()[-2000:].decode("utf-8", "replace")
    sys.stderr.write(f"rhfs: the mount did not come up; the daemon said:\n{tail}")
    return 1
