"""Routes inside one system: the bytes never leave it.

- ``store-copy``: two objects of one store account: S3 CopyObject (parallel
  UploadPartCopy for big objects), GCS rewrite, Azure Copy Blob from URL, waited for;
- ``cluster-cp``: two files of one cluster: a job of the cluster's kept session (or, where
  it has none, ``cp`` run there), into a hidden temporary sibling renamed over the target.
"""

from __future__ import annotations

from rhfs.backends.base import ClusterSessions, FileCopy, Progress, copy_then_rename
from rhfs.transfer.batches import one_by_one, retry_per_file
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

    def batches(self, job: Job) -> bool:
        return True

    def prepare(self, job: Job) -> None:
        session = self.ctx.session(job.src.backend)
        if session is not None:
            session.warm()

    def run(self, job: Job) -> None:
        src, dst, limit = remote_path(job.src), remote_path(job.dst), self.ctx.time_limit(job.size)

        def in_session(session: ClusterSessions) -> None:
            session.copy(src, dst, job.size, timeout=limit, progress=job.progress)

        self.in_session_or(job.src.backend, limit, in_session, lambda: self._per_file(job))

    def run_many(self, jobs: list[Job], progress: Progress | None) -> list[BaseException | None]:
        files = [FileCopy(remote_path(job.src), remote_path(job.dst), job.size) for job in jobs]
        limit = self.ctx.batch_time_limit(jobs)

        def in_session(session: ClusterSessions) -> list[BaseException | None]:
            return list(session.copy_many(files, timeout=limit, progress=progress))

        outcomes = self.in_session_or(
            jobs[0].src.backend, limit, in_session, lambda: one_by_one(self._per_file, jobs)
        )
        return retry_per_file(jobs, outcomes, self._per_file)

    def _per_file(self, job: Job) -> None:
        """``cp`` run on the cluster, into a temporary sibling renamed over the target."""
        cluster, limit = job.src.backend, self.ctx.time_limit(job.size)
        command = copy_then_rename(remote_path(job.src), remote_path(job.dst))
        code, _, err = run_on(cluster, command, stdin=None, timeout=limit)
        raise_for_exit(code, err, cluster.system)
