"""Routes inside one system: the bytes never leave it.

- ``store-copy``: two objects of one store account: S3 CopyObject (parallel
  UploadPartCopy for big objects), GCS rewrite, Azure Copy Blob from URL, waited for;
- ``cluster-cp``: two files of one cluster: ``cp`` run there, into a hidden
  temporary sibling renamed over the target.
"""

from __future__ import annotations

from rhfs.backends import transfers
from rhfs.backends.store import StoreBackend
from rhfs.transfer.planner import Job, Route, kind
from rhfs.transfer.shell import backend, check, copy_then_rename, remote_path, run_on


class StoreCopy(Route):
    name = "store-copy"

    def applies(self, job: Job) -> bool:
        if kind(job.src) != "store" or kind(job.dst) != "store":
            return False
        src, dst = backend(job.src).inner, backend(job.dst).inner
        return (
            isinstance(src, StoreBackend)
            and isinstance(dst, StoreBackend)
            and transfers.same_account(src, dst)
        )

    def run(self, job: Job) -> None:
        dst = backend(job.dst)
        limit = self.ctx.time_limit(job.size)
        dst.call_within(limit, "copy", transfers.server_copy, dst.inner, job.src.rel, job.dst.rel, job.size)


class ClusterCp(Route):
    name = "cluster-cp"

    def applies(self, job: Job) -> bool:
        return kind(job.src) == "cluster" and job.src.backend is job.dst.backend

    def run(self, job: Job) -> None:
        command = copy_then_rename(remote_path(job.src), remote_path(job.dst))
        limit = self.ctx.time_limit(job.size)
        code, _, err = run_on(backend(job.src), command, stdin=None, timeout=limit)
        check(code, err, backend(job.src).system)
