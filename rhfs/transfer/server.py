"""Routes inside one system: the bytes never leave it.

- ``store-copy``: two objects of one store account: S3 CopyObject (parallel
  UploadPartCopy for big objects), GCS rewrite, Azure Copy Blob from URL, waited for;
- ``cluster-cp``: two files of one cluster: a job of the cluster's kept session (or, where
  it has none, ``cp`` run there), into a hidden temporary sibling renamed over the target.
"""

from __future__ import annotations

from rhfs.backends.base import copy_then_rename
from rhfs.transfer.planner import Job, Route, runs_commands, signs_requests
from rhfs.transfer.shell import raise_for_exit, remote_path, run_on


class StoreCopy(Route):
    name = "store-copy"

    def applies(self, job: Job) -> bool:
        if not signs_requests(job.src) or not signs_requests(job.dst):
            return False
        src, dst = job.src.backend.abilities.provider, job.dst.backend.abilities.provider
        return src is not None and dst is not None and src.same_account(dst)

    def run(self, job: Job) -> None:
        dst, limit = job.dst.backend, self.ctx.time_limit(job.size)
        provider = dst.abilities.provider
        assert provider is not None  # applies() said so
        dst.call_within(limit, "copy", provider.server_copy, job.src.rel, job.dst.rel, job.size)


class ClusterCp(Route):
    name = "cluster-cp"

    def applies(self, job: Job) -> bool:
        return runs_commands(job.src) and job.src.backend is job.dst.backend

    def run(self, job: Job) -> None:
        src, dst, cluster = remote_path(job.src), remote_path(job.dst), job.src.backend
        limit = self.ctx.time_limit(job.size)

        def per_file() -> None:
            code, _, err = run_on(cluster, copy_then_rename(src, dst), stdin=None, timeout=limit)
            raise_for_exit(code, err, cluster.system)

        self.in_session_or(cluster, limit, lambda s: s.copy(src, dst, job.size, timeout=limit), per_file)
