"""Routes where a cluster talks to a store over HTTP, authorised by requests the daemon signs.

- ``cluster-curl``: cluster ↔ store, one request per object, so an object that needs a
  multipart upload goes to the next route;
- ``cluster-python``: the same, and multipart uploads, parts in parallel;
- ``transfer-cluster``: store → store of another account, streamed through the
  source or destination store's configured ``transfer_cluster``.

Each is a job of the cluster's kept session (:mod:`rhfs.backends.cluster_session`) where it
has one, whose helper makes the requests. Otherwise, one command a file: ``curl -K -`` (the
signed URL and any header are curl's config, read from stdin) for ``cluster-curl``, and
:mod:`rhfs.transfer.remote_runner` under ``python3 -`` for the others.

The daemon makes the requests (the store's :class:`~rhfs.backends.providers.Provider`): S3 presigned
URLs, a GCS resumable-upload session (uploads) or media URL with a short-lived
token (downloads), Azure SAS URLs. For a multipart plan the daemon completes
the upload after the parts, or aborts it, so nothing partial becomes visible.
"""

from __future__ import annotations

import shlex
from typing import Any

from rhfs.backends.base import ClusterSessions, tmp_sibling
from rhfs.backends.guard import Guarded
from rhfs.backends.providers import Provider
from rhfs.backends.signed import HttpRequest, WritePlan
from rhfs.errors import CantCopy
from rhfs.transfer.planner import Job, Route, runs_commands, signs_requests
from rhfs.transfer.shell import (
    curl_config,
    parse_etags,
    python_stdin,
    raise_for_exit,
    remote_path,
    require,
    run_on,
)


def provider_of(guard: Guarded) -> Provider:
    """The provider adapter of the store behind ``guard``; CantCopy for any other system."""
    provider = guard.abilities.provider
    if provider is None:
        raise CantCopy(f"{guard.system} is not an object store")
    return provider


def write_plan(dst: Guarded, rel: str, size: int, lifetime: int, *, single: bool) -> WritePlan:
    provider = provider_of(dst)
    if single and size > (provider.single_put_limit or size):
        raise CantCopy(f"{dst.system}: {size} bytes need a multipart upload")
    plan: WritePlan = dst.call("sign", provider.write_plan, rel, size, lifetime)
    return plan


def upload_with_plan(dst: Guarded, plan: WritePlan, send: Any) -> None:
    """Run ``send()`` (returns the parts' ETags), then complete the upload, or abort it on failure."""
    try:
        etags = send()
        if not plan.single:
            dst.call("complete", plan.finish, etags)
    except BaseException:
        if not plan.single:
            try:
                dst.call("abort", plan.abort)
            except Exception:  # the failure being reported matters more than the clean-up's
                pass
        raise


class ClusterCurl(Route):
    """Where the cluster has a kept session, its helper makes the request; else ``curl``."""

    name = "cluster-curl"
    tool = "curl"
    single = True  # one request per object

    def applies(self, job: Job) -> bool:
        return (runs_commands(job.src) and signs_requests(job.dst)) or (
            signs_requests(job.src) and runs_commands(job.dst)
        )

    def prepare(self, job: Job) -> None:
        session = self.ctx.session((job.src if runs_commands(job.src) else job.dst).backend)
        if session is not None:
            session.warm()

    def run(self, job: Job) -> None:
        uploading = runs_commands(job.src)
        cluster = (job.src if uploading else job.dst).backend
        if self.ctx.session(cluster) is None:
            self.require_tool(cluster)  # before anything is signed
        if uploading:
            self.upload(job, cluster)
        else:
            self.download(job, cluster)

    def require_tool(self, cluster: Guarded) -> None:
        if not self.ctx.tools.has(cluster, self.tool):
            raise CantCopy(f"{cluster.system} has no {self.tool}")

    def upload(self, job: Job, cluster: Guarded) -> None:
        src, dst, limit = remote_path(job.src), job.dst.backend, self.ctx.time_limit(job.size)
        plan = write_plan(dst, job.dst.rel, job.size, self.ctx.url_lifetime(job.size), single=self.single)

        def per_file() -> list[str]:
            self.require_tool(cluster)
            return self.upload_command(cluster, src, job.size, plan, limit)

        def in_session(session: ClusterSessions) -> list[str]:
            return session.upload(src, job.size, plan.parts, timeout=limit, progress=job.progress)

        upload_with_plan(dst, plan, lambda: self.in_session_or(cluster, limit, in_session, per_file))

    def download(self, job: Job, cluster: Guarded) -> None:
        src, dst, limit = job.src.backend, remote_path(job.dst), self.ctx.time_limit(job.size)
        request = src.call(
            "sign", provider_of(src).read_request, job.src.rel, self.ctx.url_lifetime(job.size)
        )

        def per_file() -> None:
            self.require_tool(cluster)
            self.download_command(cluster, request, dst, job.size, limit)

        def in_session(session: ClusterSessions) -> None:
            session.download(request, dst, job.size, timeout=limit, progress=job.progress)

        self.in_session_or(cluster, limit, in_session, per_file)

    def upload_command(
        self, cluster: Guarded, src: str, size: int, plan: WritePlan, limit: float
    ) -> list[str]:
        command = f"{require('curl')}; exec curl -fsS -K - -T {shlex.quote(src)} -o /dev/null"
        code, _, err = run_on(cluster, command, stdin=curl_config(plan.parts[0][2]), timeout=limit)
        raise_for_exit(code, err, cluster.system)
        return []

    def download_command(
        self, cluster: Guarded, request: HttpRequest, dst: str, size: int, limit: float
    ) -> None:
        q = shlex.quote
        command = (
            f"{require('curl')}; tmp={q(tmp_sibling(dst))}; "
            f'curl -fsS -K - -o "$tmp" && [ "$(wc -c < "$tmp")" -eq {size} ] && mv -f -- "$tmp" {q(dst)}'
            ' || { rm -f -- "$tmp"; exit 1; }'
        )
        code, _, err = run_on(cluster, command, stdin=curl_config(request), timeout=limit)
        raise_for_exit(code, err, cluster.system)


class ClusterPython(ClusterCurl):
    """``cluster-curl`` for what needs more than one request: a multipart upload, parts in parallel."""

    name = "cluster-python"
    tool = "python3"
    single = False
    COMMAND = f"{require('python3')}; exec python3 -"

    def upload_command(
        self, cluster: Guarded, src: str, size: int, plan: WritePlan, limit: float
    ) -> list[str]:
        parts = [[offset, length, request.as_json()] for offset, length, request in plan.parts]
        stdin = python_stdin({"op": "upload", "file": src, "size": size, "parts": parts})
        code, out, err = run_on(cluster, self.COMMAND, stdin=stdin, timeout=limit)
        raise_for_exit(code, err, cluster.system)
        return parse_etags(out)

    def download_command(
        self, cluster: Guarded, request: HttpRequest, dst: str, size: int, limit: float
    ) -> None:
        stdin = python_stdin({"op": "download", "file": dst, "size": size, "read": request.as_json()})
        code, _, err = run_on(cluster, self.COMMAND, stdin=stdin, timeout=limit)
        raise_for_exit(code, err, cluster.system)


class TransferCluster(Route):
    name = "transfer-cluster"

    def applies(self, job: Job) -> bool:
        if not signs_requests(job.src) or not signs_requests(job.dst):
            return False
        return self._cluster(job) is not None

    def _cluster(self, job: Job) -> Guarded | None:
        return self.ctx.transfer_cluster(job.src.backend.system) or self.ctx.transfer_cluster(
            job.dst.backend.system
        )

    def run(self, job: Job) -> None:
        cluster = self._cluster(job)
        assert cluster is not None
        if not self.ctx.tools.has(cluster, "python3"):
            raise CantCopy(f"transfer cluster {cluster.system} has no python3")
        src, dst = job.src.backend, job.dst.backend
        lifetime, limit = self.ctx.url_lifetime(job.size), self.ctx.time_limit(job.size)
        request = src.call("sign", provider_of(src).read_request, job.src.rel, lifetime)
        plan = write_plan(dst, job.dst.rel, job.size, lifetime, single=False)

        def per_file() -> list[str]:
            parts = [[offset, length, r.as_json()] for offset, length, r in plan.parts]
            job_line = {"op": "relay", "read": request.as_json(), "size": job.size, "parts": parts}
            code, out, err = run_on(
                cluster, ClusterPython.COMMAND, stdin=python_stdin(job_line), timeout=limit
            )
            raise_for_exit(code, err, cluster.system)
            return parse_etags(out)

        def in_session(session: ClusterSessions) -> list[str]:
            return session.relay(request, job.size, plan.parts, timeout=limit, progress=job.progress)

        upload_with_plan(dst, plan, lambda: self.in_session_or(cluster, limit, in_session, per_file))
