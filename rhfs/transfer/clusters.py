"""``cluster-push``: cluster A sends a file straight to cluster B over ssh.

Where A has a kept session (:mod:`rhfs.backends.cluster_session`) and B has python3, the
push is a job of A's session: its helper sends the file over the one ssh connection it keeps
to B (opened at its first push there, authenticated by the agent the session forwards, B's
host key checked as below), to the same helper running on B. Otherwise, one command a file:
the daemon opens a connection to A that forwards a private agent holding B's
identity (:mod:`rhfs.backends.agent`), and runs on A::

    ssh -o HostKeyAlias=rhfs-destination -o UserKnownHostsFile=$kh ... B 'cat > TMP && ...' < SRC

- B is reached at its ``internal_host`` when one is set (its ``host`` otherwise);
- B's host key comes from the daemon's own ``known_hosts``, over stdin, into a 0600
  temporary file on A that the command removes when it exits (a trap);
- on B the bytes go to a hidden temporary sibling, renamed over the target only
  when it holds exactly the file's size; otherwise it is removed.

No key is ever copied to A, and the command leaves nothing behind there.
"""

from __future__ import annotations

import contextlib
import getpass
import logging
import os
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial

from rhfs.backends import agent
from rhfs.backends.base import ClusterSessions, FileCopy, Progress, SshEndpoint, SshHop, tmp_sibling
from rhfs.errors import CantCopy, NoSession
from rhfs.transfer.batches import one_by_one, retry_per_file
from rhfs.transfer.planner import Job, Route, runs_commands
from rhfs.transfer.shell import NO_AGENT, raise_for_exit, remote_path, require

log = logging.getLogger(__name__)


def receive_command(dst: str, size: int) -> str:
    """The command B runs: write stdin to a temporary sibling, keep it only if it is whole."""
    tmp, q = tmp_sibling(dst), shlex.quote
    return (
        f'tmp={q(tmp)}; cat > "$tmp" && [ "$(wc -c < "$tmp")" -eq {size} ]'
        f' && mv -f -- "$tmp" {q(dst)} || {{ rm -f -- "$tmp"; exit 1; }}'
    )


def push_command(src: str, host: str, port: int, user: str, remote: str, *, check_host: bool) -> str:
    """The command A runs; its stdin is B's known_hosts lines."""
    q = shlex.quote
    if check_host:
        host_opts = (
            '-o StrictHostKeyChecking=yes -o UserKnownHostsFile="$kh" -o GlobalKnownHostsFile=/dev/null'
            f" -o HostKeyAlias={agent.HOST_KEY_ALIAS}"
        )
    else:
        host_opts = (
            "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o GlobalKnownHostsFile=/dev/null"
        )
    return "; ".join(
        [
            require("ssh"),
            f'[ -n "$SSH_AUTH_SOCK" ] || exit {NO_AGENT}',
            "umask 077",
            'kh=$(mktemp "${TMPDIR:-/tmp}/rhfs-kh.XXXXXXXXXX") || exit 1',
            "trap 'rm -f -- \"$kh\"' EXIT HUP INT TERM",
            'cat > "$kh" || exit 1',
            f"ssh -T -o BatchMode=yes {host_opts} -o ForwardAgent=no -o ClearAllForwardings=yes"
            f" -o ConnectTimeout=10 -o ServerAliveInterval=15 -p {port} -l {q(user)} {q(host)}"
            f" {q(remote)} < {q(src)}",
        ]
    )


@dataclass(frozen=True)
class _Destination:
    """Where a push from A to B goes, as seen from A."""

    hop: SshHop
    host_lines: list[str]  # B's known_hosts lines (none: B's host key is not checked)
    has_python: bool  # B may run the session's helper (not known to lack python3)


class ClusterPush(Route):
    name = "cluster-push"

    def applies(self, job: Job) -> bool:
        return runs_commands(job.src) and runs_commands(job.dst) and job.src.backend is not job.dst.backend

    def batches(self, job: Job) -> bool:
        return True

    def prepare(self, job: Job) -> None:
        session = self.ctx.session(job.src.backend)
        if session is None:
            return
        try:
            to = self._destination(job)
        except CantCopy:
            return
        session.warm(to.hop if to.has_python and to.hop.identity_file else None)

    def run(self, job: Job) -> None:
        to, limit = self._destination(job), self.ctx.time_limit(job.size)
        src, dst = remote_path(job.src), remote_path(job.dst)

        def in_session(session: ClusterSessions) -> None:
            self._require_helper(job, to)
            try:
                session.push(src, to.hop, dst, job.size, timeout=limit, progress=job.progress)
            except NoSession as e:
                self._say_per_file(job, e)
                raise

        self.in_session_or(job.src.backend, limit, in_session, lambda: self._per_file(job, to))

    def run_many(self, jobs: list[Job], progress: Progress | None) -> list[BaseException | None]:
        to, limit = self._destination(jobs[0]), self.ctx.batch_time_limit(jobs)
        files = [FileCopy(remote_path(job.src), remote_path(job.dst), job.size) for job in jobs]

        def in_session(session: ClusterSessions) -> list[BaseException | None]:
            self._require_helper(jobs[0], to)
            outcomes = session.push_many(files, to.hop, timeout=limit, progress=progress)
            for outcome in outcomes:
                if isinstance(outcome, NoSession):
                    self._say_per_file(jobs[0], outcome)
            return list(outcomes)

        per_file = partial(one_by_one, partial(self._per_file, to=to))
        outcomes = self.in_session_or(jobs[0].src.backend, limit, in_session, lambda: per_file(jobs))
        return retry_per_file(jobs, outcomes, partial(self._per_file, to=to))

    def _destination(self, job: Job) -> _Destination:
        a, b = job.src.backend, job.dst.backend
        b_inner = b.abilities.ssh
        if a.abilities.ssh is None or b_inner is None:
            raise CantCopy("not two SSH clusters")
        b_config = self.ctx.cluster_config(b.system)
        host = (b_config.internal_host if b_config else None) or b_inner.host
        lines: list[str] = []
        if b_inner.known_hosts:
            lines = agent.host_key_lines(b_inner.known_hosts, b_inner.host, b_inner.port)
            if not lines:
                raise CantCopy(f"{b.system}'s host key is not in {b_inner.known_hosts}")
        else:
            log.warning(
                'copy %s: %s has known_hosts = "": its host key is not checked from %s',
                job,
                b.system,
                a.system,
            )
        user = b_inner.user or getpass.getuser()
        hop = SshHop(host, b_inner.port, user, tuple(lines), b_inner.identity_file)
        return _Destination(hop, lines, not self.ctx.tools.lacks(b, "python3"))

    def _require_helper(self, job: Job, to: _Destination) -> None:
        """NoSession where B cannot take a push from A's helper (the per-file command may)."""
        b = job.dst.backend.system
        why = "" if to.has_python else "has no python3"
        why = why or ("" if to.hop.identity_file else "has no identity_file")
        if why:
            self.ctx.say_once(f"{b}/push", f"{b} {why}: pushes to it run one ssh per file")
            raise NoSession(f"{b} {why}")

    def _say_per_file(self, job: Job, why: NoSession) -> None:
        b = job.dst.backend.system
        self.ctx.say_once(f"{b}/push", f"{why}: pushes to {b} run one ssh per file")

    def _per_file(self, job: Job, to: _Destination) -> None:
        """One ssh command on A for the file, with B's identity in a private forwarded agent."""
        a, b_inner = job.src.backend, job.dst.backend.abilities.ssh
        a_inner = a.abilities.ssh
        assert a_inner is not None and b_inner is not None  # _destination said so
        if not self.ctx.tools.has(a, "ssh"):
            raise CantCopy(f"{a.system} has no ssh client")
        limit, hop = self.ctx.time_limit(job.size), to.hop
        receive = receive_command(remote_path(job.dst), job.size)
        command = push_command(
            remote_path(job.src), hop.host, hop.port, hop.user, receive, check_host=bool(to.host_lines)
        )
        with self._agent_for(b_inner, int(limit)) as agent_path:
            run = partial(
                agent.run_forwarding_agent,
                a_inner,
                command,
                agent_path=agent_path,
                stdin=("\n".join(to.host_lines) + "\n").encode(),
                timeout=limit,
            )
            code, _, err = a.call_within(limit + 15, "push", run)
        raise_for_exit(code, err, a.system)

    @staticmethod
    @contextlib.contextmanager
    def _agent_for(cluster: SshEndpoint, lifetime: int) -> Iterator[str]:
        if cluster.identity_file:
            with agent.private_agent(cluster.identity_file, lifetime) as path:
                yield path
            return
        own = os.environ.get("SSH_AUTH_SOCK")
        if not own:
            raise CantCopy(f"no identity_file for {cluster.system} and no ssh agent to forward")
        yield own
