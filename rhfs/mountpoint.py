"""Mount-point chores: what is mounted where, is it stale or hung, unmount it, find its daemon.

Every probe of a mount point that might be served by a stuck daemon runs in a
daemon thread with a time limit, so that no rhfs command ever hangs on a mount
point it is only looking at.

A running daemon records itself in a pid file under :func:`runtime_dir`, keyed by
its mount point, so that ``rhfs unmount`` and ``rhfs mount`` can find it without
asking the mount (which might not answer).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

RHFS_FSTYPE = "fuse.rhfs"
PROBE_TIMEOUT = 5.0


def _unescape(field: str) -> str:
    return field.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")


@dataclass(frozen=True)
class MountEntry:
    target: str
    fstype: str
    source: str
    options: str


def mount_entry(path: str) -> MountEntry | None:
    """The topmost mount exactly at ``path``, from /proc/self/mountinfo, or None."""
    target = os.path.abspath(path)
    found = None
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fields, rest = left.split(), right.split()
            if len(fields) >= 6 and len(rest) >= 2 and _unescape(fields[4]) == target:
                found = MountEntry(target, rest[0], _unescape(rest[1]), fields[5])
    return found


def mount_type(path: str) -> str | None:
    """The filesystem type mounted exactly at ``path`` (e.g. 'fuse.rhfs'), or None."""
    entry = mount_entry(path)
    return None if entry is None else entry.fstype


def rhfs_mounts() -> list[str]:
    """Every rhfs mount point visible to this process."""
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            if right.split()[:1] == [RHFS_FSTYPE]:
                out.append(_unescape(left.split()[4]))
    return out


def _timed(fn: Callable[[], object], timeout: float) -> tuple[bool, object]:
    """(finished, result or exception) of ``fn`` run on a daemon thread for at most ``timeout``."""
    box: list[object] = []

    def target() -> None:
        try:
            box.append(fn())
        except BaseException as e:
            box.append(e)

    thread = threading.Thread(target=target, name="rhfs-probe", daemon=True)
    thread.start()
    thread.join(timeout)
    return (True, box[0]) if box else (False, None)


def probe(path: str, timeout: float = PROBE_TIMEOUT) -> str:
    """'unmounted', 'ok' (mounted and answering), 'stale' (daemon gone) or 'hung' (no answer)."""
    if mount_entry(path) is None:
        return "unmounted"
    # statfs, unlike stat, is never answered from the kernel's attribute cache: it asks the daemon
    finished, result = _timed(lambda: os.statvfs(path), timeout)
    if not finished:
        return "hung"
    if isinstance(result, OSError):
        return "stale" if result.errno in (errno.ENOTCONN, errno.ECONNABORTED) else "ok"
    return "ok"


def is_stale(path: str) -> bool:
    """A FUSE mount whose daemon is gone: 'Transport endpoint is not connected'."""
    return probe(path) == "stale"


def answers(path: str) -> bool:
    """An rhfs mount is at ``path`` and its daemon answers (its ``.rhfs`` directory can be read)."""
    entry = mount_entry(path)
    if entry is None or entry.fstype != RHFS_FSTYPE:
        return False
    finished, result = _timed(lambda: os.stat(os.path.join(path, ".rhfs", "version")), PROBE_TIMEOUT)
    return finished and not isinstance(result, BaseException)


def unmount(path: str, *, lazy: bool = False) -> None:
    fusermount = shutil.which("fusermount3") or shutil.which("fusermount")
    if fusermount:
        cmd = [fusermount, "-u"] + (["-z"] if lazy else []) + [path]
    else:
        cmd = ["umount"] + (["-l"] if lazy else []) + [path]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    if result.returncode != 0 and mount_entry(path) is not None:
        message = result.stderr.strip() or f"{cmd[0]} exited with {result.returncode}"
        raise OSError(errno.EBUSY, f"cannot unmount {path}: {message}")


def busy_pids(path: str) -> list[int]:
    """Processes whose working directory, root or open files lie under ``path`` (as fuser -m)."""
    prefix = os.path.abspath(path).rstrip("/") + "/"
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        links = [f"/proc/{name}/cwd", f"/proc/{name}/root"]
        try:
            links += [f"/proc/{name}/fd/{fd}" for fd in os.listdir(f"/proc/{name}/fd")]
        except OSError:
            pass
        for link in links:
            try:
                target = os.readlink(link)
            except OSError:
                continue
            if (target + "/").startswith(prefix):
                found.append(int(name))
                break
    return found


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


# -- the daemon's pid file ------------------------------------------------------------
def runtime_dir() -> str:
    """/run/rhfs for root, else $XDG_RUNTIME_DIR/rhfs, else a private directory under /tmp."""
    if os.geteuid() == 0 and os.access("/run", os.W_OK):
        base = "/run/rhfs"
    elif os.environ.get("XDG_RUNTIME_DIR"):
        base = os.path.join(os.environ["XDG_RUNTIME_DIR"], "rhfs")
    else:
        base = os.path.join(tempfile.gettempdir(), f"rhfs-{os.geteuid()}")
    os.makedirs(base, mode=0o700, exist_ok=True)
    return base


def pidfile_path(mountpoint: str) -> str:
    key = hashlib.sha256(os.path.abspath(mountpoint).encode()).hexdigest()[:16]
    return os.path.join(runtime_dir(), f"mount-{key}.json")


def process_starttime(pid: int) -> int | None:
    """Start time (clock ticks since boot) of a live, non-zombie process; None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read().decode("ascii", "replace")
    except OSError:
        return None
    fields = data[data.rfind(")") + 2 :].split()
    if not fields or fields[0] in ("Z", "X", "x"):
        return None
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


def pid_alive(pid: int, starttime: int | None = None) -> bool:
    """The process runs (zombies count as gone) and, when given, is the one that started then."""
    current = process_starttime(pid)
    return current is not None and (starttime is None or current == starttime)


def write_pidfile(mountpoint: str) -> None:
    record = {
        "pid": os.getpid(),
        "starttime": process_starttime(os.getpid()),
        "mountpoint": os.path.abspath(mountpoint),
    }
    path = pidfile_path(mountpoint)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        json.dump(record, f)
    os.replace(tmp, path)


def remove_pidfile(mountpoint: str) -> None:
    path = pidfile_path(mountpoint)
    try:
        with open(path) as f:
            if json.load(f).get("pid") != os.getpid():
                return  # a newer daemon owns it
        os.unlink(path)
    except (OSError, ValueError):
        pass


def daemon_pid(mountpoint: str) -> int | None:
    """The pid of the live daemon serving ``mountpoint``, from its pid file, or None."""
    try:
        with open(pidfile_path(mountpoint)) as f:
            record = json.load(f)
        pid = int(record["pid"])
        starttime = record.get("starttime")
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return pid if pid_alive(pid, starttime) else None
