"""Routes whose bytes pass through the daemon: all of them are counted in stats.

- ``here-upload``: a file of the daemon host to any system, with the system's own
  parallel upload (S3 and Azure multipart, SFTP with many requests in flight);
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

from rhfs.backends.base import upload_tmp_name
from rhfs.errors import CantCopy
from rhfs.location_io import fetch
from rhfs.transfer.planner import Job, Route, holds_bytes
from rhfs.tree import Location


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

    def run(self, job: Job) -> None:
        job.dst.backend.upload(local_path(job.src), job.dst.rel)  # atomic, counted as written
        self.ctx.stats.add_read(job.src.backend.system, job.size)


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
