"""Helpers shared by the fault, bad-input, security and concurrency tests.

- :func:`write_config` derives an rhfs config from the testbed's, with its own
  ``cache_dir`` (so its log and kept uploads are its own) and any overrides:
  a short ``op_timeout``, a store or a cluster reached through a
  :class:`faultproxy.FaultProxy`, a wrong host key.
- :func:`daemon_pid`, :func:`status`, :func:`log_text` look at a running mount.
- :func:`errno_of` runs a file operation and returns the errno it failed with.
"""

from __future__ import annotations

import contextlib
import copy
import errno
import json
import os
import signal
import socket
import subprocess
import time
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import tomli_w
from testbed import Testbed, pid_alive

FAST_TIMEOUT = 2.0  # op_timeout of the fault configs, in seconds
# A system that is down answers within op_timeout; the margin covers the kernel and
# the fail-fast window, never a hang (a hang is minutes).
DEADLINE = 4 * FAST_TIMEOUT + 5


def base_config(tb: Testbed) -> dict[str, Any]:
    return tomllib.loads(tb.config_path.read_text())


def known_hosts_line(tb: Testbed, cluster: str, port: int) -> str:
    """A known_hosts line for ``cluster``'s real host key, as served on ``port`` (e.g. a proxy)."""
    key = tb.state["clusters"][cluster]["host_key"].split()
    return f"[127.0.0.1]:{port} {key[0]} {key[1]}\n"


def write_config(
    tb: Testbed,
    directory: Path,
    *,
    op_timeout: float = FAST_TIMEOUT,
    s3_port: int | None = None,
    gs_port: int | None = None,
    cluster_ports: dict[str, int] | None = None,
    edit: Callable[[dict[str, Any]], None] | None = None,
    mode: int = 0o600,
) -> Path:
    """A config in ``directory``/rhfs.toml: the testbed's, rerouted and edited as asked."""
    directory.mkdir(parents=True, exist_ok=True)
    cfg = copy.deepcopy(base_config(tb))
    cfg["mount"]["cache_dir"] = str(directory / "cache")
    cfg["mount"]["op_timeout"] = op_timeout
    if s3_port is not None:
        cfg["stores"]["s3"]["options"]["endpoint_url"] = f"http://127.0.0.1:{s3_port}"
    if gs_port is not None:
        cfg["stores"]["gs"]["options"]["endpoint_url"] = f"http://127.0.0.1:{gs_port}"
    if cluster_ports:
        known = directory / "known_hosts"
        lines = tb.known_hosts.read_text()
        for name, port in cluster_ports.items():
            cfg["clusters"][name]["port"] = port
            lines += known_hosts_line(tb, name, port)
        known.write_text(lines)
        for name in cluster_ports:
            cfg["clusters"][name]["known_hosts"] = str(known)
    if edit is not None:
        edit(cfg)
    path = directory / "rhfs.toml"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        tomli_w.dump(cfg, f)
    os.chmod(path, mode)
    return path


def cache_dir(config: Path) -> Path:
    return Path(tomllib.loads(config.read_text())["mount"]["cache_dir"])


def log_text(config: Path) -> str:
    try:
        return (cache_dir(config) / "rhfs.log").read_text(errors="replace")
    except FileNotFoundError:
        return ""


def status(mountpoint: Path) -> dict[str, Any]:
    with open(mountpoint / ".rhfs" / "status.json") as f:
        systems: dict[str, Any] = json.load(f)["systems"]
    return systems


def health(mountpoint: Path, system: str) -> str:
    return str(status(mountpoint)[system]["health"])


def wait_for(predicate: Callable[[], bool], timeout: float = 30.0, interval: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def daemon_pid(mountpoint: Path) -> int:
    """The pid of the ``rhfs mount --foreground`` process serving ``mountpoint``."""
    target = str(mountpoint)
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        args = [a.decode(errors="replace") for a in argv if a]
        if "--foreground" in args and "mount" in args and target in args:
            return int(entry)
    raise LookupError(f"no rhfs daemon serves {mountpoint}")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def errno_of(fn: Callable[[], object]) -> int:
    """The errno ``fn`` failed with; 0 if it succeeded."""
    try:
        fn()
    except OSError as e:
        assert e.errno is not None, e
        return e.errno
    return 0


def timed_errno(fn: Callable[[], object]) -> tuple[int, float]:
    started = time.monotonic()
    code = errno_of(fn)
    return code, time.monotonic() - started


OUTAGE_ERRNOS = (errno.EIO, errno.ETIMEDOUT)


def sh(*argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout)


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat[stat.rfind(")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


HELPER_MARK = "PROGRAM=sys.stdin"  # in the argv of every session helper (and of the ssh that starts a peer)


def argv(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def helpers_under(pid: int) -> set[int]:
    """Live processes of session helpers under ``pid`` (a cluster's sshd): helpers, and their ssh."""
    return {p for p in descendants(pid) if HELPER_MARK in argv(p) and pid_alive(p)}


def _port_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            return s.recv(4).startswith(b"SSH")
    except OSError:
        return False


class OwnSshd:
    """A second sshd serving a testbed cluster's root with its host key, which a test may kill.

    ``stop()`` is a crash: SIGKILL to the listener and to every session it forked.
    ``start()`` brings it back on the same port.
    """

    def __init__(self, tb: Testbed, cluster: str, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        info = tb.state["clusters"][cluster]
        self.binary = tb.state["servers"][cluster]["cmd"][0]
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        lines = []
        for line in Path(info["sshd_config"]).read_text().splitlines():
            if line.startswith("Port "):
                line = f"Port {self.port}"
            elif line.startswith("PidFile "):
                line = f"PidFile {directory / 'sshd.pid'}"
            lines.append(line)
        self.conf = directory / "sshd.conf"
        self.conf.write_text("\n".join(lines) + "\n")
        self.log = directory / "sshd.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [self.binary, "-f", str(self.conf), "-D", "-e"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        if not wait_for(lambda: _port_answers(self.port), timeout=15, interval=0.05):
            raise RuntimeError(f"own sshd did not answer on {self.port}: {self.log.read_text()[-1000:]}")

    def stop(self) -> None:
        if self.proc is None:
            return
        for pid in [*descendants(self.proc.pid), self.proc.pid]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        self.proc = None
