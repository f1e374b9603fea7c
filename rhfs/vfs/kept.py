"""Uploads kept under ``cache_dir/failed/``: their names, their records, listing and pruning.

Bytes that could not reach their target are kept as one file each under
``cache_dir/failed/``: a failed upload (:mod:`rhfs.vfs.open_files`) and an unfinished write
of a daemon that died (:mod:`rhfs.vfs.recovery`). Beside the directory, in
``cache_dir/failed-records/<name>.json``, each has a record of where its bytes were going and
why they did not get there:

- ``target``: the tree path (``/s3/bucket/key``, ``/tables/t/x.parquet``);
- ``reason``: ``failed`` (the system refused or could not be reached), ``unfinished`` (its
  daemon stopped before ``close()`` succeeded) or ``refused`` (the content itself was refused,
  such as a table part that is not parquet: uploading it again would be refused again);
- ``error`` (with every secret of the config shown as ``***``, as in the log) and
  ``kept_at`` (seconds since the epoch).

``failed/`` holds nothing but kept bytes, so that a person may look through it. A kept file
without a record (kept by an older rhfs) is listed with an unknown target and never retried;
a record without its file (the file was removed by hand) is dropped when pruning.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
import uuid
from dataclasses import dataclass

from rhfs.log import redact

log = logging.getLogger(__name__)

FAILED_DIR = "failed"
RECORDS_DIR = "failed-records"
KEPT_PATH_BYTES = 180  # the end of a tree path a kept name holds: with its stamp, far below NAME_MAX
REASONS = ("failed", "unfinished", "refused")
DAY = 86400.0


@dataclass(frozen=True)
class Kept:
    """One kept file and what its record says."""

    path: str  # the kept file, under cache_dir/failed/
    size: int
    kept_at: float
    target: str | None  # the tree path its bytes were going to; None without a record
    reason: str  # one of REASONS, or "unknown" without a record
    error: str

    @property
    def name(self) -> str:
        return os.path.basename(self.path)

    @property
    def retryable(self) -> bool:
        """A retry may upload it: its target is known and its content was not what was refused."""
        return self.target is not None and self.reason != "refused"


def failed_dir(cache_dir: str) -> str:
    """Where kept uploads lie, for a (expanded) ``cache_dir``."""
    return os.path.join(cache_dir, FAILED_DIR)


def kept_name(tree_path: str) -> str:
    """The name, under ``cache_dir/failed``, of bytes that were going to ``tree_path``.

    A time stamp, a random part, then the path with ``/`` as ``__``. A path too long for one
    name keeps its end, the file's own name; a name that is not UTF-8 loses only the bytes
    that are not.
    """
    safe = tree_path.strip("/").replace("/", "__").encode("utf-8", "surrogateescape")[-KEPT_PATH_BYTES:]
    return f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}-{safe.decode('utf-8', 'ignore')}"


def _record_path(kept_path: str) -> str:
    failed_dir, name = os.path.split(kept_path)
    return os.path.join(os.path.dirname(failed_dir), RECORDS_DIR, name + ".json")


def write_record(kept_path: str, target: str, reason: str, error: str) -> None:
    """Record where ``kept_path``'s bytes were going and why they are kept (atomically)."""
    path = _record_path(kept_path)
    doc = {"target": target, "reason": reason, "error": redact(error), "kept_at": time.time()}
    try:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        tmp = f"{path}.{uuid.uuid4().hex[:8]}.tmp"
        with open(tmp, "w") as f:
            json.dump(doc, f)
        os.replace(tmp, path)
    except OSError as e:  # the bytes are kept all the same; only a retry cannot find their target
        log.warning("cannot record the target of %s: %s", kept_path, e)


def _read_record(kept_path: str) -> dict[str, object]:
    try:
        with open(_record_path(kept_path)) as f:
            doc = json.load(f)
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def remove(kept_path: str) -> None:
    """Remove a kept file and its record."""
    for path in (kept_path, _record_path(kept_path)):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def listing(failed_dir: str) -> list[Kept]:
    """Every kept file, oldest first."""
    try:
        entries = [e for e in os.scandir(failed_dir) if e.is_file(follow_symlinks=False)]
    except FileNotFoundError:
        return []
    found = []
    for entry in entries:
        try:
            st = entry.stat()
        except FileNotFoundError:
            continue  # removed meanwhile
        doc = _read_record(entry.path)
        target, stamp = doc.get("target"), doc.get("kept_at")
        found.append(
            Kept(
                path=entry.path,
                size=st.st_size,
                kept_at=float(stamp) if isinstance(stamp, int | float) else st.st_mtime,
                target=target if isinstance(target, str) else None,
                reason=str(doc.get("reason") or "unknown"),
                error=str(doc.get("error") or ""),
            )
        )
    return sorted(found, key=lambda k: (k.kept_at, k.name))


def summary(failed_dir: str) -> dict[str, object]:
    """What status.json says of the kept files: how many, how many a retry may upload, their bytes."""
    kept = listing(failed_dir)
    return {
        "count": len(kept),
        "retryable": sum(k.retryable for k in kept),
        "refused": sum(not k.retryable for k in kept),
        "bytes": sum(k.size for k in kept),
        "dir": failed_dir,
    }


def prune(failed_dir: str, max_age_days: float, now: float | None = None) -> list[Kept]:
    """Remove kept files older than ``max_age_days`` (0: none), and records without a file."""
    removed = []
    if max_age_days > 0:
        cutoff = (time.time() if now is None else now) - max_age_days * DAY
        for kept in listing(failed_dir):
            if kept.kept_at < cutoff:
                remove(kept.path)
                removed.append(kept)
    records = os.path.join(os.path.dirname(failed_dir), RECORDS_DIR)
    with contextlib.suppress(FileNotFoundError):
        for name in os.listdir(records):
            if name.endswith(".json") and not os.path.exists(os.path.join(failed_dir, name[: -len(".json")])):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(records, name))
    if removed:
        log.warning(
            "removed %d kept upload(s) older than %g days from %s: %s",
            len(removed),
            max_age_days,
            failed_dir,
            ", ".join(k.target or k.name for k in removed),
        )
    return removed
