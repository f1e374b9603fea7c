"""Start-up recovery: what a dead daemon left behind is kept, named, and cleaned up.

Each mount daemon spools its writes in a directory of its own,
``cache_dir/spool/<pid>-<random>/``, and holds an exclusive ``flock`` on its
``.lock`` file for as long as it lives. Next to each spool file lies
``<spool>.target``, a small JSON document naming where those bytes were going.

At start, the daemon claims its spool directory (:func:`claim_spool`) and builds its
VFS over it; :func:`start` then, in the background so that a store that is down
cannot delay the mount, recovers every spool directory whose lock is free (its
daemon was killed, crashed, or lost power):

- each spool file with content is moved to ``cache_dir/failed/`` and named in one
  log line ("unfinished write of PATH ...: data kept at KEPT"). It is never
  uploaded on its own: its writer's ``close()`` never succeeded, so the write was
  never claimed, and only its owner can say whether it is still wanted;
- for a target on an S3 store, the unfinished multipart uploads of exactly that
  key are aborted (a killed upload leaves one, and S3 bills its parts forever);
- the directory is removed once all of that is done; if an abort fails, the
  directory stays and the next start tries again.

Finally it reports, in one line, how many failed uploads are kept under
``cache_dir/failed``, after removing those older than ``[mount] failed_max_age_days``
(and again every :data:`PRUNE_INTERVAL` seconds while the daemon runs). Every file kept
there, by this module or by a failed upload (:mod:`rhfs.vfs.open_files`), is named and
recorded by :mod:`rhfs.vfs.kept`.

Invariants: a live daemon's spool is never touched (its lock is held); files
directly under ``cache_dir/spool`` (spooled by in-process faces) are left alone.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import threading
import time
import uuid
from typing import IO, TYPE_CHECKING

from rhfs.tree import Location
from rhfs.vfs import kept as kept_files

if TYPE_CHECKING:
    from rhfs.vfs.core import Vfs

log = logging.getLogger(__name__)

LOCK_NAME = ".lock"
TARGET_SUFFIX = ".target"
PRUNE_INTERVAL = 6 * 3600.0  # seconds between removals of kept uploads past their age
_held: list[IO[bytes]] = []  # the locks of this process's spool directories, held until exit


def claim_spool(cache_dir: str) -> str:
    """A spool directory for this process, locked for its whole life."""
    spool_root = os.path.join(cache_dir, "spool")
    os.makedirs(spool_root, mode=0o700, exist_ok=True)
    path = os.path.join(spool_root, f"{os.getpid()}-{uuid.uuid4().hex[:8]}")
    os.makedirs(path, mode=0o700)
    lock = open(os.path.join(path, LOCK_NAME), "wb")  # noqa: SIM115 - held open until exit
    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    _held.append(lock)
    return path


def note_target(spool_path: str, location: Location) -> None:
    """Record where a spool file's bytes are going, for recovery after a crash."""
    doc = {"path": location.path, "mount": location.mount, "rel": location.rel, "pid": os.getpid()}
    with contextlib.suppress(OSError), open(spool_path + TARGET_SUFFIX, "w") as f:
        json.dump(doc, f)


def retarget(spool_path: str, location: Location) -> None:
    """After a rename of an open file: its record names the new place, if it still has one.

    A record already forgotten (the bytes were uploaded) stays forgotten.
    """
    if os.path.exists(spool_path + TARGET_SUFFIX):
        note_target(spool_path, location)


def forget_target(spool_path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(spool_path + TARGET_SUFFIX)


def start(vfs: Vfs, cache_dir: str, max_age_days: float = 0.0) -> threading.Thread:
    """Recover the spool directories of dead daemons in the background; ``vfs`` spools in the
    directory this daemon claimed (:func:`claim_spool`, given to the VFS when it was built).
    Then, and every :data:`PRUNE_INTERVAL`, remove kept uploads older than ``max_age_days``."""

    def run() -> None:
        recover(vfs, cache_dir, max_age_days)
        while max_age_days > 0:
            time.sleep(PRUNE_INTERVAL)
            try:
                kept_files.prune(vfs.failed_dir, max_age_days)
            except OSError as e:
                log.error("removing old kept uploads from %s failed: %s", vfs.failed_dir, e)

    thread = threading.Thread(target=run, name="rhfs-recovery", daemon=True)
    thread.start()
    return thread


def recover(vfs: Vfs, cache_dir: str, max_age_days: float = 0.0) -> None:
    spool_root = os.path.join(cache_dir, "spool")
    try:
        names = sorted(os.listdir(spool_root))
    except FileNotFoundError:
        names = []
    for name in names:
        path = os.path.join(spool_root, name)
        if path == vfs.spool_dir or not os.path.isfile(os.path.join(path, LOCK_NAME)):
            continue
        try:
            _recover_dir(vfs, path)
        except Exception as e:  # recovery must never take the daemon down
            log.error("recovering %s failed: %s", path, e)
    try:
        kept_files.prune(vfs.failed_dir, max_age_days)
    except OSError as e:
        log.error("removing old kept uploads from %s failed: %s", vfs.failed_dir, e)
    _report_kept(vfs.failed_dir)


def _recover_dir(vfs: Vfs, path: str) -> None:
    with open(os.path.join(path, LOCK_NAME), "rb") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return  # its daemon is alive, or another daemon is recovering it
        stems = sorted({n.removesuffix(TARGET_SUFFIX) for n in os.listdir(path) if n != LOCK_NAME})
        done = all([_recover_spool(vfs, os.path.join(path, stem)) for stem in stems])
        if done:
            shutil.rmtree(path, ignore_errors=True)


def _read_target(spool_path: str) -> dict[str, str] | None:
    try:
        with open(spool_path + TARGET_SUFFIX) as f:
            doc = json.load(f)
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def _recover_spool(vfs: Vfs, spool_path: str) -> bool:
    """Keep one dead spool file's bytes and abort its orphaned upload; False to retry later."""
    target = _read_target(spool_path)
    tree_path = target["path"] if target else "(unknown path)"
    if os.path.exists(spool_path):
        if os.path.getsize(spool_path) > 0:
            kept = _keep(vfs.failed_dir, spool_path, tree_path)
            pid = target.get("pid", "?") if target else "?"
            if target:
                why = f"its daemon, pid {pid}, stopped before close() succeeded"
                kept_files.write_record(kept, tree_path, "unfinished", why)
            log.error(
                "unfinished write of %s (its daemon, pid %s, stopped before close() succeeded): "
                "data kept at %s",
                tree_path,
                pid,
                kept,
            )
        else:
            os.unlink(spool_path)
    if target is None:
        return True
    if not _abort_orphans(vfs, target):
        return False
    forget_target(spool_path)
    return True


def _abort_orphans(vfs: Vfs, target: dict[str, str]) -> bool:
    backend = vfs.table.mounts.get(target.get("mount", ""))
    if backend is None:
        return True  # that system is no longer configured: nothing to reach
    abilities, rel = backend.abilities, target["rel"]
    try:
        # temporary siblings (here, clusters) or unfinished multipart uploads (stores)
        leftovers = abilities.remove_upload_leftovers
        aborted = 0 if leftovers is None else leftovers(rel)
    except Exception as e:
        log.warning(
            "could not abort unfinished uploads of %s (next start tries again): %s", target["path"], e
        )
        return False
    if aborted:
        log.warning("cleaned up %d unfinished upload(s) of %s", aborted, target["path"])
    return True


def _keep(failed_dir: str, spool_path: str, tree_path: str) -> str:
    os.makedirs(failed_dir, mode=0o700, exist_ok=True)
    kept = os.path.join(failed_dir, kept_files.kept_name(tree_path))
    os.replace(spool_path, kept)
    return kept


def _report_kept(failed_dir: str) -> None:
    kept = kept_files.listing(failed_dir)
    if kept:
        log.warning(
            "%d failed upload(s), %d bytes, are kept under %s; see: rhfs failed list",
            len(kept),
            sum(k.size for k in kept),
            failed_dir,
        )
