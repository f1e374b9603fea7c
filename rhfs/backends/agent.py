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

Invariants:
- the agent's socket lives in a fresh 0700 directory, removed with the agent;
- the agent gives its keys a lifetime, so a daemon killed mid-copy leaves no usable key;
- the agent process is always stopped (killed), whatever happened to the command.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from typing import Any

from rhfs.backends.base import SshEndpoint
from rhfs.backends.cluster import CONNECT_TIMEOUT
from rhfs.errors import CantCopy, Unavailable

HOST_KEY_ALIAS = "rhfs-destination"
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


@contextlib.contextmanager
def private_agent(identity_file: str, lifetime: int) -> Iterator[str]:
    """An ``ssh-agent`` of our own holding ``identity_file``; yields its socket path."""
    for tool in ("ssh-agent", "ssh-add"):
        if shutil.which(tool) is None:
            raise CantCopy(f"{tool} is not installed on the daemon host")
    directory = tempfile.mkdtemp(prefix="rhfs-agent-")
    socket_path = os.path.join(directory, "agent.sock")
    agent = subprocess.Popen(
        ["ssh-agent", "-D", "-a", socket_path],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + AGENT_START_SECONDS
        while not _listening(socket_path):  # the socket exists a moment before the agent listens
            if agent.poll() is not None or time.monotonic() > deadline:
                raise CantCopy("ssh-agent did not start")
            time.sleep(0.01)
        added = subprocess.run(
            ["ssh-add", "-q", "-t", str(max(lifetime, 60)), identity_file],
            env={**os.environ, "SSH_AUTH_SOCK": socket_path, "SSH_ASKPASS": "", "DISPLAY": ""},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=AGENT_START_SECONDS,
        )
        if added.returncode != 0:
            raise CantCopy(f"ssh-add {identity_file} failed: {added.stderr.strip()[:200]}")
        yield socket_path
    finally:
        # SIGKILL, not SIGTERM: a child of a libfuse worker thread inherits its mask, which
        # blocks every signal that can be blocked. The agent's keys live only in its memory.
        agent.kill()
        agent.wait()
        shutil.rmtree(directory, ignore_errors=True)


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
