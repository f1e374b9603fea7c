"""Helpers for the service tests: private configs, the real installed binaries, daemons and mounts.

Every helper runs the installed ``rhfs`` / ``mount.rhfs`` (never an in-process call),
so the tests see what a user or systemd sees: exit codes, stdout and stderr.
Each mount gets its own config copy with its own ``cache_dir``, so its
``rhfs.log`` holds only its own daemon's lines.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sysconfig
import time
from collections.abc import Iterator
from pathlib import Path

from testbed import Testbed, pid_alive

SCRIPTS = Path(sysconfig.get_path("scripts"))  # the installed console scripts, not a shell shim
RHFS = str(SCRIPTS / "rhfs") if (SCRIPTS / "rhfs").exists() else shutil.which("rhfs") or "rhfs"
MOUNT_RHFS = str(SCRIPTS / "mount.rhfs") if (SCRIPTS / "mount.rhfs").exists() else "mount.rhfs"


def run(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120, binary: str = RHFS
) -> subprocess.CompletedProcess[str]:
    """Run the installed binary; ``env`` entries are added to (or, when None, removed from) ours."""
    full_env = dict(os.environ)
    for key, value in (env or {}).items():
        if value is None:
            full_env.pop(key, None)
        else:
            full_env[key] = value
    return subprocess.run(
        [binary, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
        stdin=subprocess.DEVNULL,
    )


def write_config(
    tb: Testbed, directory: Path, *, mount: str = "", extra: str = "", name: str = "rhfs.toml"
) -> Path:
    """The testbed's config with its own cache_dir (and ``mount`` lines added to [mount]), mode 600."""
    directory.mkdir(parents=True, exist_ok=True)
    text = tb.config_path.read_text()
    cache = directory / "cache"
    text = re.sub(r"(?m)^cache_dir = .*$", f"cache_dir = {json.dumps(str(cache))}", text)
    if mount:
        text = text.replace("[mount]\n", f"[mount]\n{mount.strip()}\n", 1)
    path = directory / name
    path.write_text(text + "\n" + extra)
    path.chmod(0o600)
    return path


def log_of(config: Path) -> Path:
    return config.parent / "cache" / "rhfs.log"


def status(mountpoint: Path) -> dict:
    return json.loads((mountpoint / ".rhfs" / "status.json").read_text())


def daemon_pid(mountpoint: Path) -> int:
    return int(status(mountpoint)["daemon"]["pid"])


def mount_type(path: Path) -> str | None:
    found = None
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            if left.split()[4] == str(path):
                found = right.split()[0]
    return found


def wait_for(predicate, timeout: float = 30.0, interval: float = 0.05) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


def force_unmount(mountpoint: Path) -> None:
    """Best-effort cleanup for a test's own mount point."""
    if mount_type(mountpoint) is not None:
        subprocess.run(["fusermount3", "-uz", str(mountpoint)], capture_output=True)


def stop_daemon(pid: int) -> None:
    """SIGKILL a daemon this test started, if it still runs."""
    if pid_alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def mounted(config: Path, mountpoint: Path, *extra: str) -> Iterator[Path]:
    """``rhfs mount`` with the real binary; always unmounted (and its daemon gone) afterwards."""
    if not os.path.exists("/dev/fuse"):
        raise AssertionError("/dev/fuse is missing: the mount tests need a FUSE-capable machine")
    mountpoint.mkdir(parents=True, exist_ok=True)
    result = run("mount", str(mountpoint), "--config", str(config), *extra)
    assert result.returncode == 0, (
        f"rhfs mount failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
    )
    pid = daemon_pid(mountpoint)
    try:
        yield mountpoint
    finally:
        run("unmount", str(mountpoint), timeout=120)
        force_unmount(mountpoint)
        stop_daemon(pid)
