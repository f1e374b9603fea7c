"""Routes whose bytes pass through the daemon: all of them are counted in stats.

- ``here-upload``: a file of the daemon host to any system, with the system's own
  parallel upload (S3 and Azure multipart, SFTP with many requests in flight); a tree job's
  files of up to 16 MiB to a cluster with a session go framed on the session's one
  connection, whose helper writes each whole, with no request to wait for between two files;
- ``here-download``: any system to the daemon host, with parallel ranged reads
  (:func:`rhfs.location_io.fetch`) into a hidden temporary sibling renamed over the target;
- ``relay``: anything else (another provider's store, or a cluster that cannot
  run the copy itself): parallel ranged reads into a spool file under
  ``cache_dir/relay``, then the destination's parallel upload. Counted as relayed.
  The faces that copy whole files themselves also relay what no route may take (a
  file of a view), between the view's own locations (:meth:`Planner.copy_or_relay`).

Invariants: a destination is written atomically by the backend's ``upload`` (or by
our rename), so a failure leaves none; spool and temporary files are removed on
every path; a source that shrinks mid-copy is a failure, never a short file.
"""

from __future__ import annotations

import os
import uuid

from rhfs.backends.base import ClusterSessions, FileCopy, Progress, upload_tmp_name
from rhfs.errors import CantCopy
from rhfs.location_io import fetch
from rhfs.transfer.batches import one_by_one, retry_per_file
from rhfs.transfer.planner import Job, Route, holds_bytes, runs_commands
from rhfs.transfer.shell import remote_path
from rhfs.tree import Location

BATCHED_FILE_BYTES = 16 << 20  # files up to this size go to a cluster framed on its session


def local_path(loc: Location) -> str:
    """The path of ``loc`` on the daemon host's own disk; CantCopy if it has none."""
    local = loc.backend.abilities.local_path
    if local is None:
        raise CantCopy(f"{loc.path}: no local path")
    return local(loc.rel)


def on_this_host(loc: Location) -> bool:
    return loc.backend.abilities.local_path is not None


class HereUpload(Route):
    name = "here-upload"

    def applies(self, job: Job) -> bool:
        return on_this_host(job.src) and holds_bytes(job.dst)

    def batches(self, job: Job) -> bool:
        """Small files to a cluster with a session; a big one takes SFTP's parallel writes on the
        other connection, beside the batches."""
        return (
            job.size <= BATCHED_FILE_BYTES
            and runs_commands(job.dst)
            and self.ctx.session(job.dst.backend) is not None
        )

    def prepare(self, job: Job) -> None:
        if self.batches(job):
            session = self.ctx.session(job.dst.backend)
            assert session is not None  # batches() said so
            session.warm()

    def run(self, job: Job) -> None:
        job.dst.backend.upload(local_path(job.src), job.dst.rel)  # atomic, counted as written
        self.ctx.stats.add_read(job.src.backend.system, job.size)

    def run_many(self, jobs: list[Job], progress: Progress | None) -> list[BaseException | None]:
        """The files framed on the cluster's session, whose helper writes each whole."""
        files = [FileCopy(local_path(job.src), remote_path(job.dst), job.size) for job in jobs]
        cluster, limit = jobs[0].dst.backend, self.ctx.batch_time_limit(jobs)

        def in_session(session: ClusterSessions) -> list[BaseException | None]:
            outcomes = session.receive_many(files, timeout=limit, progress=progress)
            for job, outcome in zip(jobs, outcomes, strict=True):
                if outcome is None:
                    self.ctx.stats.add_read(job.src.backend.system, job.size)
                    self.ctx.stats.add_written(cluster.system, job.size)
            return list(outcomes)

        outcomes = self.in_session_or(cluster, limit, in_session, lambda: one_by_one(self.run, jobs))
        return retry_per_file(jobs, outcomes, self.run)


class HereDownload(Route):
    name = "here-download"

    def applies(self, job: Job) -> bool:
        return on_this_host(job.dst) and holds_bytes(job.src)

    def run(self, job: Job) -> None:
        target = local_path(job.dst)
        tmp = os.path.join(os.path.dirname(target), upload_tmp_name(os.path.basename(target)))
        try:
            fetch(job.src, job.entry, tmp, mode=0o666)
            os.replace(tmp, target)
        except BaseException:
            _remove(tmp)
            raise
        self.ctx.stats.add_written(job.dst.backend.system, job.size)


class Relay(Route):
    name = "relay"

    def applies(self, job: Job) -> bool:
        return holds_bytes(job.src) and holds_bytes(job.dst)

    def run(self, job: Job) -> None:
        os.makedirs(self.ctx.spool_dir, mode=0o700, exist_ok=True)
        spool = os.path.join(self.ctx.spool_dir, f"{os.getpid()}-{uuid.uuid4().hex}")
        try:
            fetch(job.src, job.entry, spool)
            job.dst.backend.upload(spool, job.dst.rel)
        finally:
            _remove(spool)
        self.ctx.stats.add_relayed(job.src.backend.system, job.size)


def sweep(spool_dir: str) -> None:
    """Remove the relay spools of daemons that are gone (``<pid>-<uuid>``; the source still has the bytes)."""
    try:
        names = os.listdir(spool_dir)
    except FileNotFoundError:
        return
    for name in names:
        pid = name.partition("-")[0]
        if pid.isdigit() and int(pid) != os.getpid() and not os.path.exists(f"/proc/{pid}"):
            _remove(os.path.join(spool_dir, name))


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
