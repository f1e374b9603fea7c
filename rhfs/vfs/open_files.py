"""Open files: write spools.

An :class:`OpenFile` is shared by every handle open for writing on one path, as
in rclone's VFS. Its bytes live in a spool file under ``cache_dir/spool``; they
are uploaded whole at ``flush``/``fsync`` (close-to-open). If the file existed
and was not truncated, its old content is fetched into the spool on the first
access that needs it (:func:`rhfs.location_io.fetch_into`; a file that changed
size since it was opened fails that access, rather than leave a short spool).

Reads of remote files that are not open for writing are served by
:mod:`rhfs.vfs.readahead`.

``OpenFile.lock`` is taken before any backend call on that file and never while the
VFS's table lock is held (the thread model is in :mod:`rhfs.vfs.core`).
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from typing import Literal

from rhfs.backends.base import Abilities, Entry
from rhfs.errors import InvalidArgument, UploadFailed, is_not_permitted
from rhfs.local_writes import pwrite_all
from rhfs.location_io import fetch_into
from rhfs.tree import Location
from rhfs.vfs import kept as kept_files
from rhfs.vfs import recovery

log = logging.getLogger(__name__)

# the abilities that chown, chmod and utimens use, in the order they are applied after an
# upload (a change of owner clears the set-user-ID bit that a mode asked for must keep)
MetadataChange = Literal["set_owner", "set_mode", "set_times"]
ZEROS_CHUNK = 1 << 20  # zeros written at a time by fallocate's hole punching
CHANGE_ORDER: tuple[MetadataChange, ...] = ("set_owner", "set_mode", "set_times")


def metadata_setter(abilities: Abilities, change: MetadataChange) -> Callable[..., None] | None:
    """The ability that applies ``change``, or None where the system does not keep it."""
    setter: Callable[..., None] | None = getattr(abilities, change)
    return setter


class OpenFile:
    def __init__(self, location: Location, spool_dir: str, *, exists: bool, entry: Entry | None) -> None:
        self.location = location
        self.spool_dir = spool_dir
        self.spool_path = os.path.join(spool_dir, uuid.uuid4().hex)
        self.fd = os.open(self.spool_path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        recovery.note_target(self.spool_path, location)
        self.lock = threading.RLock()
        self.refs = 0
        self.size = entry.size if (exists and entry) else 0
        self.needs_fill = exists and self.size > 0
        self.dirty = not exists  # a new file is created at flush even if nothing is written
        self.remote_exists = exists  # the system holds some version of this file
        # chmod/utimens asked for while the spool holds newer bytes: applied after the upload
        self.pending_metadata: dict[MetadataChange, tuple[int | None, ...]] = {}
        self._mode = entry.mode if entry else None  # the mode the system holds, where known
        self._owner = (entry.uid, entry.gid) if entry else (None, None)  # as the system holds it
        self.unlinked = False
        self.entry = entry
        # the times as the system holds them (an existing file), or as the spool's last write set them
        self.atime_ns, self.mtime_ns, _ = entry.times_ns if (exists and entry) else (time.time_ns(),) * 3
        self.kept: str | None = None  # this file's one copy under failed_dir, after a failed upload

    @property
    def path(self) -> str:
        return self.location.path

    @property
    def mode(self) -> int | None:
        """Permission bits as they will be after the upload."""
        pending = self.pending_metadata.get("set_mode", (None,))[0]
        return self._mode if pending is None else pending

    @property
    def owner(self) -> tuple[int | None, int | None]:
        """(uid, gid) as they will be after the upload; None where the system keeps none."""
        uid, gid = self.pending_metadata.get("set_owner", (None, None))
        return (self._owner[0] if uid is None else uid, self._owner[1] if gid is None else gid)

    @property
    def shown_times_ns(self) -> tuple[int, int]:
        """(atime, mtime) in nanoseconds, as they will be after the upload."""
        atime_ns, mtime_ns = self.pending_metadata.get("set_times", (None, None))
        return (
            self.atime_ns if atime_ns is None else atime_ns,
            self.mtime_ns if mtime_ns is None else mtime_ns,
        )

    @property
    def shown_mtime(self) -> float:
        """The modification time as it will be after the upload, in seconds."""
        return self.shown_times_ns[1] / 1e9

    def set_later(self, change: MetadataChange, args: tuple[int | None, ...]) -> None:
        """Apply ``change`` after the upload (which would undo it now). A time left out (None)
        keeps one asked for earlier."""
        earlier = self.pending_metadata.get(change)
        if earlier is not None:
            args = tuple(new if new is not None else old for new, old in zip(args, earlier, strict=True))
        self.pending_metadata[change] = args

    def note_applied(self, change: MetadataChange, args: tuple[int | None, ...]) -> None:
        """The system now holds what ``change`` set: show it from here on."""
        if change == "set_mode" and args[0] is not None:
            self._mode = int(args[0])
        elif change == "set_owner":
            uid, gid = args
            self._owner = (self._owner[0] if uid is None else uid, self._owner[1] if gid is None else gid)
        elif change == "set_times":
            atime_ns, mtime_ns = args
            self.atime_ns = self.atime_ns if atime_ns is None else atime_ns
            self.mtime_ns = self.mtime_ns if mtime_ns is None else mtime_ns

    def _written(self) -> None:
        """The spool's content changed: a new modification time, and a time asked for earlier is
        undone (as a write after utimensat moves the mtime on a local filesystem)."""
        self.dirty = True
        self.mtime_ns = time.time_ns()
        pending = self.pending_metadata.pop("set_times", None)
        if pending is not None and pending[0] is not None:
            self.pending_metadata["set_times"] = (pending[0], None)  # the access time stays asked for

    def fill(self) -> None:
        """Fetch the current remote content into the spool, once."""
        if not self.needs_fill:
            return
        assert self.entry is not None
        fetch_into(self.fd, self.location, self.entry)
        self.needs_fill = False

    def read(self, offset: int, size: int) -> bytes:
        with self.lock:
            self.fill()
            return os.pread(self.fd, min(size, max(0, self.size - offset)), offset)

    def write(self, data: bytes, offset: int) -> int:
        with self.lock:
            self.fill()
            written = pwrite_all(self.fd, data, offset)  # never a short count: it fails the write
            self.size = max(self.size, offset + written)
            self._written()
            return written

    def truncate(self, size: int) -> None:
        with self.lock:
            if size == 0:
                self.needs_fill = False
            else:
                self.fill()
            os.ftruncate(self.fd, size)
            self.size = size
            self._written()

    def grow(self, size: int) -> None:
        """Make the file at least ``size`` bytes long (the new bytes read as zeros)."""
        with self.lock:
            if size > self.size:
                self.truncate(size)

    def write_zeros(self, offset: int, length: int, *, keep_size: bool) -> None:
        """Zeros over ``length`` bytes at ``offset``; with ``keep_size``, never past the end."""
        with self.lock:
            end = min(offset + length, self.size) if keep_size else offset + length
            for start in range(offset, end, ZEROS_CHUNK):
                self.write(bytes(min(ZEROS_CHUNK, end - start)), start)

    def adopt_remote(self, entry: Entry) -> None:
        """The remote object now holds this file's content (a server-side copy wrote it)."""
        with self.lock:
            os.ftruncate(self.fd, 0)
            self.entry = entry
            self.size = entry.size
            self.needs_fill = entry.size > 0
            self.dirty = False
            self.remote_exists = True

    def upload(self, failed_dir: str) -> bool:
        """Upload if dirty. On failure keep a copy under ``failed_dir`` and raise UploadFailed.

        A retry (``release`` after a failed ``flush``) reuses the same kept copy; once an
        upload succeeds, the kept copy is removed, since the data is where it belongs.
        """
        with self.lock:
            if not self.dirty or self.unlinked or self.fd < 0:
                return False  # nothing new, nowhere to go, or discarded (its last release is done)
            self.fill()
            backend = self.location.backend
            try:
                backend.upload(self.spool_path, self.location.rel)
            except Exception as e:
                refused = isinstance(e, InvalidArgument)  # the content itself (a non-parquet table part)
                kept = self._keep(failed_dir)
                kept_files.write_record(kept, self.path, "refused" if refused else "failed", str(e))
                failure = UploadFailed(f"upload of {self.path} failed: {e}; data kept at {kept}", kept)
                if isinstance(e, InvalidArgument):
                    failure.errno = e.errno
                raise failure from e
            self.dirty = False
            self.remote_exists = True
            self._forget_kept()
            self._apply_pending_metadata()
            return True

    def _apply_pending_metadata(self) -> None:
        for change in CHANGE_ORDER:
            args = self.pending_metadata.get(change)
            if args is None:
                continue
            setter = metadata_setter(self.location.backend.abilities, change)
            if setter is None:
                continue
            try:
                setter(self.location.rel, *args)
            except Exception as e:  # the bytes are safe; a lost mode, owner or time is only logged
                level = logging.DEBUG if change == "set_owner" and is_not_permitted(e) else logging.WARNING
                log.log(level, "%s: %s after upload failed: %s", self.path, change, e)
            else:
                self.note_applied(change, args)
        self.pending_metadata.clear()

    def _keep(self, failed_dir: str) -> str:
        """Keep the spool's bytes under ``failed_dir``: a hard link when possible, else a copy.

        Idempotent: one kept file per open file. A hard link follows the spool's later
        writes by itself; a copy is refreshed.
        """
        if self.kept is not None and os.path.exists(self.kept):
            if not os.path.samefile(self.kept, self.spool_path):
                shutil.copyfile(self.spool_path, self.kept)
            return self.kept
        os.makedirs(failed_dir, exist_ok=True)
        kept = os.path.join(failed_dir, kept_files.kept_name(self.path))
        try:
            os.link(self.spool_path, kept)
        except OSError:
            shutil.copyfile(self.spool_path, kept)
        self.kept = kept
        return kept

    def _forget_kept(self) -> None:
        if self.kept is None:
            return
        log.info("%s: uploaded on retry; removing its kept copy %s", self.path, self.kept)
        kept_files.remove(self.kept)
        self.kept = None

    def discard(self) -> None:
        with self.lock:
            if self.fd >= 0:
                os.close(self.fd)
                self.fd = -1
            try:
                os.unlink(self.spool_path)
            except FileNotFoundError:
                pass
            recovery.forget_target(self.spool_path)
