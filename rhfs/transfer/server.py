"""Routes inside one system: the bytes never leave it.

- ``store-copy``: two objects of one store account: S3 CopyObject (parallel
  UploadPartCopy for big objects), GCS rewrite, Azure Copy Blob from URL, waited for;
- ``cluster-cp``: two files of one cluster: ``cp`` run there, into a hidden
  temporary sibling renamed over the target.
"""

from __future__ import annotations

import shlex
from typing import cast

from rhfs.backends.store import StoreBackend
from rhfs.transfer.planner import Job, Route, kind
from rhfs.transfer.shell import backend, check, remote_path, run_on, tmp_sibling


class StoreCopy(Route):
    name = "store-copy"

    def applies(self, job: Job) -> bool:
        if kind(job.src) != "store" or kind(job.dst) != "store":
            return False
        src, dst = backend(job.src).inner, backend(job.dst).inner
        return (
            isinstance(src, StoreBackend)
            and isinstance(dst, StoreBackend)
            and src.provider.same_account(dst.provider)
        )

    def run(self, job: Job) -> None:
        dst = backend(job.dst)
        store = cast(StoreBackend, dst.inner)  # applies() said so
        limit = self.ctx.time_limit(job.size)
        dst.call_within(limit, "copy", store.provider.server_copy, job.src.rel, job.dst.rel, job.size)


class ClusterCp(Route):
    name = "cluster-cp"

    def applies(self, job: Job) -> bool:
        return kind(job.src) == "cluster" and job.src.backend is job.dst.backend

    def run(self, job: Job) -> None:
        src, dst = remote_path(job.src), remote_path(job.dst)
        tmp, q = tmp_sibling(dst), shlex.quote
        command = f"cp -- {q(src)} {q(tmp)} && mv -f -- {q(tmp)} {q(dst)} || {{ rm -f -- {q(tmp)}; exit 1; }}"
        limit = self.ctx.time_limit(job.size)
        code, _, err = run_on(backend(job.src), command, stdin=None, timeout=limit)
        check(code, err, backend(job.src).system)
