"""Mount-point chores: is it mounted, is it stale, unmount it, wait for it to answer."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import time
from collections.abc import Callable


def _unescape(field: str) -> str:
    return field.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")


def mount_type(path: str) -> str | None:
    """The filesystem type mounted exactly at ``path`` (e.g. 'fuse.rhfs'), or None."""
    target = os.path.abspath(path)
    found = None
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fields = left.split()
            if len(fields) >= 5 and _unescape(fields[4]) == target:
                found = right.split()[0]
    return found


def is_stale(path: str) -> bool:
    """A FUSE mount whose daemon is gone: 'Transport endpoint is not connected'."""
    try:
        os.stat(path)
    except OSError as e:
        return e.errno in (errno.ENOTCONN, errno.ECONNABORTED)
    return False


def answers(path: str) -> bool:
    try:
        os.stat(path)
        return mount_type(path) is not None
    except OSError:
        return False


def unmount(path: str, *, lazy: bool = False) -> None:
    fusermount = shutil.which("fusermount3") or shutil.which("fusermount")
    if fusermount:
        cmd = [fusermount, "-u"] + (["-z"] if lazy else []) + [path]
    else:
        cmd = ["umount"] + (["-l"] if lazy else []) + [path]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0 and mount_type(path) is not None:
        raise OSError(errno.EBUSY, f"cannot unmount {path}: {result.stderr.strip()}")


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()
