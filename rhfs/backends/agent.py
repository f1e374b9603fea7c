"""Commands on one cluster that log in to another, authorised by a forwarded ssh agent.

A cluster-to-cluster copy runs ``ssh`` on cluster A to reach cluster B. A holds no
key for B: the daemon starts a private ``ssh-agent`` holding B's identity
(:func:`private_agent`), opens its own connection to A with agent forwarding to
that agent (:func:`run_forwarding_agent`), and stops the agent afterwards. The
key never leaves the daemon host; A can only ask the agent for signatures while
the command runs.

B's host key is checked on the A→B hop too: :func:`host_key_lines` gives B's
entries from the daemon's own ``known_hosts``, under a fixed alias that the
command on A writes to a temporary file and uses with ``HostKeyAlias``.

A cluster's kept session (:mod:`rhfs.backends.cluster_session`) forwards one
:class:`PrivateAgent` for as long as it is open, and adds B's key to it for a short time
before each push, while the helper on A may need to log in to B.

Invariants:
- the agent's socket lives in a fresh 0700 directory, removed with the agent;
- the agent gives its keys a lifetime, so a daemon killed mid-copy leaves no usable key,
  and its watcher stops it, and removes its directory, as soon as the daemon is gone;
- the agent process is always stopped (killed), whatever happened to the command.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from typing import Any

from rhfs.backends.base import SshEndpoint
from rhfs.backends.cluster import CONNECT_TIMEOUT
from rhfs.errors import CantCopy, Unavailable

HOST_KEY_ALIAS = "rhfs-destination"
# The agent's parent: tells its pid, then waits for the daemon's pipe to end (the daemon
# closed it, or died) to kill the agent and remove its directory ($1).
WATCHER = 'echo "$SSH_AGENT_PID"; cat >/dev/null; kill -9 "$SSH_AGENT_PID" 2>/dev/null; rm -rf -- "$1"'
AGENT_START_SECONDS = 5.0


def host_key_lines(known_hosts: str, host: str, port: int) -> list[str]:
    """``known_hosts`` lines trusting ``host``:``port``'s keys, rewritten for :data:`HOST_KEY_ALIAS`."""
    import asyncssh

    try:
        trusted = asyncssh.match_known_hosts(asyncssh.read_known_hosts(known_hosts), host, host, port)
    except (OSError, ValueError) as e:
        raise CantCopy(f"cannot read {known_hosts}: {e}") from None
    host_keys, ca_keys = trusted[0], trusted[1]
    lines: list[str] = []
    for prefix, keys in (("", host_keys), ("@cert-authority ", ca_keys)):
        for key in keys:
            line = f"{prefix}{HOST_KEY_ALIAS} {key.export_public_key('openssh').decode().strip()}"
            if line not in lines:
                lines.append(line)
    return lines


class PrivateAgent:
    """An ``ssh-agent`` of our own, whose keys are held for a limited time.

    Its socket path is chosen at once (an unguessable name), so that a connection forwarding it
    can be opened before any key is needed; its 0700 directory is made, and the agent started,
    at the first :meth:`add`. The agent runs under a watcher, a shell reading a pipe from the
    daemon: should the daemon die, the pipe ends, and the watcher kills the agent and removes
    its directory.
    """

    def __init__(self) -> None:
        self.directory = os.path.join(tempfile.gettempdir(), f"rhfs-agent-{secrets.token_hex(8)}")
        self.socket_path = os.path.join(self.directory, "agent.sock")
        self._lock = threading.Lock()  # guards the attributes below; a leaf
        self._watch: subprocess.Popen[bytes] | None = None
        self._pid: int | None = None
        self._held_until: dict[str, float] = {}

    def add(self, identity_file: str, lifetime: int) -> None:
        """Hold ``identity_file`` for the next ``lifetime`` seconds (no ssh-add while over half remain)."""
        with self._lock:
            now = time.monotonic()
            if self._held_until.get(identity_file, 0.0) - now > lifetime / 2:
                return
            if self._watch is None:
                self._start()
            added = subprocess.run(
                ["ssh-add", "-q", "-t", str(lifetime), identity_file],
                env={**os.environ, "SSH_AUTH_SOCK": self.socket_path, "SSH_ASKPASS": "", "DISPLAY": ""},
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=AGENT_START_SECONDS,
            )
            if added.returncode != 0:
                raise CantCopy(f"ssh-add {identity_file} failed: {added.stderr.strip()[:200]}")
            self._held_until[identity_file] = now + lifetime

    def _start(self) -> None:
        for tool in ("ssh-agent", "ssh-add"):
            if shutil.which(tool) is None:
                raise CantCopy(f"{tool} is not installed on the daemon host")
        try:
            os.mkdir(self.directory, 0o700)
        except FileExistsError:
            raise CantCopy(f"{self.directory} exists already: not ours") from None
        watch = subprocess.Popen(
            ["ssh-agent", "-a", self.socket_path, "sh", "-c", WATCHER, "sh", self.directory],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        self._watch = watch
        assert watch.stdout is not None
        said = watch.stdout.readline().strip()
        self._pid = int(said) if said.isdigit() else None
        deadline = time.monotonic() + AGENT_START_SECONDS
        while not _listening(self.socket_path):
            if self._pid is None or watch.poll() is not None or time.monotonic() > deadline:
                self._stop()
                raise CantCopy("ssh-agent did not start")
            time.sleep(0.01)

    def _stop(self) -> None:
        watch, pid = self._watch, self._pid
        self._watch = self._pid = None
        self._held_until.clear()
        # SIGKILL, not SIGTERM: a child of a libfuse worker thread inherits its mask, which
        # blocks every signal that can be blocked.
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if watch is not None:
            assert watch.stdin is not None
            with contextlib.suppress(OSError):
                watch.stdin.close()
            try:
                watch.wait(AGENT_START_SECONDS)
            except subprocess.TimeoutExpired:
                watch.kill()
                watch.wait()

    def close(self) -> None:
        """Stop the agent (its keys live only in its memory) and remove its directory."""
        with self._lock:
            self._stop()
        shutil.rmtree(self.directory, ignore_errors=True)


@contextlib.contextmanager
def private_agent(identity_file: str, lifetime: int) -> Iterator[str]:
    """A :class:`PrivateAgent` holding ``identity_file`` while the block runs; yields its socket path."""
    agent = PrivateAgent()
    try:
        agent.add(identity_file, max(lifetime, 60))
        yield agent.socket_path
    finally:
        agent.close()


def _listening(socket_path: str) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(socket_path)
        except OSError:
            return False
    return True


def run_forwarding_agent(
    cluster: SshEndpoint, command: str, *, agent_path: str, stdin: bytes, timeout: float
) -> tuple[int, str, str]:
    """Run ``command`` on ``cluster`` over a fresh connection that forwards the agent at ``agent_path``."""
    return asyncio.run(_run(cluster, command, agent_path, stdin, timeout))


async def _run(
    cluster: SshEndpoint, command: str, agent_path: str, stdin: bytes, timeout: float
) -> tuple[int, str, str]:
    import asyncssh

    options: dict[str, Any] = {
        "port": cluster.port,
        "known_hosts": cluster.known_hosts or None,
        "connect_timeout": CONNECT_TIMEOUT,
        "agent_forwarding": True,
        "agent_path": agent_path,
    }
    if cluster.user:
        options["username"] = cluster.user
    if cluster.identity_file:
        options["client_keys"] = [cluster.identity_file]
    try:
        async with asyncssh.connect(cluster.host, **options) as conn:
            result = await asyncio.wait_for(
                conn.run(command, input=stdin, encoding=None, check=False), timeout=timeout
            )
    except (OSError, asyncssh.Error) as e:
        raise Unavailable(f"{cluster.system}: cannot run a command there: {e}") from e
    out, err = (_text(result.stdout), _text(result.stderr))
    return (result.exit_status if result.exit_status is not None else 255), out, err


def _text(data: bytes | str | None) -> str:
    if isinstance(data, bytes):
        return data.decode("utf-8", "replace")
    return data or ""
