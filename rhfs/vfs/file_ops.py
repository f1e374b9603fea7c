"""File operations of the VFS: open, create, read, write, truncate, flush, release, copies.

- Reads of a file not open for writing go through the handle's reader (made on first
  read; read-ahead on remote systems). A handle reads the version it opened; a first
  read that meets a newer version of the same size reads that version instead of ESTALE.
- Writes go to the path's shared spool (:class:`~rhfs.vfs.open_files.OpenFile`), uploaded
  whole at ``flush``/``fsync`` (every ``close()``) and by the last ``release``; a failed
  upload fails the call and keeps the data under ``cache_dir/failed``.
- ``copy_file_range`` of a whole file into a fresh destination goes to the copier (a
  server-side route where one exists); anything else is EXDEV, and the kernel copies
  by reads and writes.
- A file's pages stay in the kernel's cache across opens while its version is unchanged.
"""

from __future__ import annotations

import logging
import os
import posixpath
import stat
from collections.abc import Callable

from rhfs.backends.base import Entry, Owner, Reader
from rhfs.errors import (
    AlreadyExists,
    BadHandle,
    CantCopy,
    CrossDevice,
    IsADirectory,
    NotADirectory,
    NotSupported,
    RhfsError,
    Stale,
    UploadFailed,
)
from rhfs.tree import Location, TreeDir, normalize
from rhfs.vfs.handles import Handle, OpenReply
from rhfs.vfs.lookups import Lookups
from rhfs.vfs.open_files import OpenFile

log = logging.getLogger(__name__)

FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, FALLOC_FL_ZERO_RANGE = 0x01, 0x02, 0x10  # linux/falloc.h
DEFAULT_FILE_MODE = 0o644  # what a new file gets on every system without a chmod


class FileOps(Lookups):
    def open(self, path: str, flags: int) -> OpenReply:
        path = normalize(path)
        found = self.resolve(path)
        writing = (flags & os.O_ACCMODE) != os.O_RDONLY or bool(flags & os.O_TRUNC)
        if writing:
            self._writable(found)
        if isinstance(found, TreeDir):
            raise IsADirectory(path)
        loc = found
        open_file = self.handles.join(path)  # a reader too reads what writers hold, unflushed
        if open_file is None and writing:
            open_file, _ = self._share(loc, lambda fresh: self._file_entry(loc, fresh=True))
        if open_file is not None:
            try:
                if flags & os.O_TRUNC:
                    open_file.truncate(0)
            except BaseException:
                self._let_go(open_file)
                raise
            return self.handles.add(Handle(loc, flags, open_file.entry, open_file=open_file))
        entry = self.entry(loc)
        if self.cache.is_uploaded(path, entry):
            entry = self.entry(loc, fresh=True)  # a reader pins the version the system holds
        if entry.is_dir:
            raise IsADirectory(path)
        keep = self._versions.get(path) == entry.version
        self._versions[path] = entry.version
        opened = self.handles.add(Handle(loc, flags, entry))
        opened.keep_cache = keep and not entry.direct_io
        opened.direct_io = entry.direct_io
        return opened

    def create(self, path: str, mode: int, flags: int, owner: Owner | None = None) -> OpenReply:
        """Open ``path``, made if missing; a new file gets ``mode`` and ``owner`` at its upload."""
        path = normalize(path)
        loc = self._writable(self._resolve_new(path))
        if loc.is_system_root:
            raise AlreadyExists(path)
        parent = self.resolve(posixpath.dirname(path))
        if (
            not isinstance(parent, TreeDir)
            and not self.cache.knows_dir(parent.path)
            and not self.entry(parent).is_dir
        ):
            raise NotADirectory(path)
        open_file, made = self._share(loc, lambda fresh: self._file_entry(loc, fresh=fresh, missing_ok=True))
        try:
            existed = not made or open_file.remote_exists
            if existed and flags & os.O_EXCL:
                raise AlreadyExists(path)
            if existed and flags & os.O_TRUNC:
                open_file.truncate(0)
            elif made and not existed:
                self._new_file_metadata(open_file, mode, owner)
        except BaseException:
            self._let_go(open_file)
            raise
        self.cache.invalidate(posixpath.dirname(path))
        self._versions.pop(path, None)
        return self.handles.add(Handle(loc, flags, open_file.entry, open_file=open_file))

    def _new_file_metadata(self, open_file: OpenFile, mode: int, owner: Owner | None) -> None:
        """What a new file is given after its first upload: its owner, then its mode."""
        ids = self.owner_of_new(open_file.location, owner)
        if ids is not None:
            open_file.pending_metadata["set_owner"] = ids
        if stat.S_IMODE(mode) != DEFAULT_FILE_MODE:
            open_file.pending_metadata["set_mode"] = (stat.S_IMODE(mode),)

    def _file_entry(self, loc: Location, *, fresh: bool, missing_ok: bool = False) -> Entry | None:
        """The entry of the file at ``loc``; EISDIR for a directory; None if missing and ``missing_ok``."""
        entry = self._exists(loc, fresh=fresh) if missing_ok else self.entry(loc, fresh=fresh)
        if entry is not None and entry.is_dir:
            raise IsADirectory(loc.path)
        return entry

    def _share(self, loc: Location, lookup: Callable[[bool], Entry | None]) -> tuple[OpenFile, bool]:
        """The open file of ``loc`` with one more reference, and whether it was made now.

        ``lookup(fresh)`` says what the system holds at ``loc`` (None: nothing). If an open
        file of the path is released between that look-up and the making of a new one, its
        upload may have changed the answer: the look-up is made again, fresh from the system.
        A new open file made from a stale answer would hold the wrong bytes and upload them.
        """
        fresh = False
        while True:
            seen = self.handles.generation(loc.path)
            shared = self.handles.share(loc, lookup(fresh), self.spool_dir, seen)
            if shared is not None:
                return shared
            fresh = True

    def read(self, fh: int, size: int, offset: int) -> bytes:
        handle = self.handles.handle(fh)
        if handle.open_file is not None:
            return handle.open_file.read(offset, size)
        try:
            data = self.handles.reader(handle).read(offset, size)
        except RhfsError as e:
            if e.errno != Stale.errno or handle.has_read:
                raise
            data = self._reopen_at_current_version(handle).read(offset, size)
        handle.has_read = True
        return data

    def _reopen_at_current_version(self, handle: Handle) -> Reader:
        """The version opened (from a cached entry) was already replaced and nothing of it was
        served: read the current version instead of failing, if the kernel's idea of the size
        (the old entry's) is still right. Otherwise ESTALE stands: never a mix of two versions."""
        entry = self.entry(handle.location, fresh=True)
        old_entry = handle.entry
        if entry.is_dir or old_entry is None or entry.size != old_entry.size:
            raise Stale(f"{handle.location.path} changed while open")
        with self.handles.lock:
            old, handle.reader, handle.entry = handle.reader, None, entry
        if old is not None:
            old.close()
        self._versions[handle.location.path] = entry.version
        return self.handles.reader(handle)

    def write(self, fh: int, data: bytes, offset: int) -> int:
        handle = self.handles.handle(fh)
        if handle.open_file is None:
            raise BadHandle("file not open for writing")
        return handle.open_file.write(data, offset)

    def truncate(self, path: str | None, size: int, fh: int | None = None) -> None:
        """Truncate by path, or by handle alone (``path`` None: the file may be unlinked)."""
        handle = self.handles.find(fh)
        open_file = handle.open_file if handle else None
        if open_file is None and path is not None:
            open_file = self.handles.open_files.get(normalize(path))
        if open_file is not None:
            open_file.truncate(size)
            return
        if path is None:
            if handle is None:
                raise BadHandle("a handle that is not open")
            path = handle.location.path
        path = normalize(path)
        loc = self._writable(self.resolve(path))
        entry = self.entry(loc, fresh=True)
        if entry.is_dir:
            raise IsADirectory(path)
        temporary = OpenFile(loc, self.spool_dir, exists=True, entry=entry)
        try:
            temporary.truncate(size)
            temporary.upload(self.failed_dir)
        finally:
            temporary.discard()
        self._changed(path)

    def fallocate(self, fh: int, mode: int, offset: int, length: int) -> None:
        """fallocate(2) on a file open for writing: plain (the file grows to ``offset + length``,
        read back as zeros), ``KEEP_SIZE`` (nothing to do: a spool takes space as written),
        ``PUNCH_HOLE`` and ``ZERO_RANGE`` (the range reads back as zeros). Other modes: EOPNOTSUPP."""
        keep_size = bool(mode & FALLOC_FL_KEEP_SIZE)
        if mode & ~(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE) or (
            mode & FALLOC_FL_PUNCH_HOLE and not keep_size
        ):
            raise NotSupported(f"fallocate mode {mode:#x}")
        handle = self.handles.handle(fh)
        if handle.open_file is None:
            raise BadHandle("file not open for writing")
        if mode & (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE):
            handle.open_file.write_zeros(offset, length, keep_size=keep_size)
        elif not keep_size:
            handle.open_file.grow(offset + length)

    def flush(self, fh: int) -> None:
        handle = self.handles.handle(fh)
        if handle.open_file is not None and handle.open_file.upload(self.failed_dir):
            self._uploaded(handle.open_file)

    fsync = flush

    def release(self, fh: int) -> None:
        handle = self.handles.pop(fh)
        if handle is None:
            return
        if handle.reader is not None:
            handle.reader.close()
        if handle.open_file is not None:
            self._let_go(handle.open_file)

    def shutdown(self) -> None:
        """Upload every pending write (on unmount or SIGTERM)."""
        for open_file in self.handles.all_open_files():
            try:
                open_file.upload(self.failed_dir)
            except UploadFailed as e:
                log.error("%s", e)

    def copy_file_range(self, fh_in: int, off_in: int, fh_out: int, off_out: int, length: int) -> int:
        src_handle, dst_handle = self.handles.handle(fh_in), self.handles.handle(fh_out)
        dst_file = dst_handle.open_file
        if dst_file is None:
            raise BadHandle("destination not open for writing")
        src_file = src_handle.open_file
        if src_file is not None:
            with src_file.lock:
                src_file.upload(self.failed_dir)  # the route reads the source where it lives
            src_entry = self.entry(src_handle.location, fresh=True)
        else:
            assert src_handle.entry is not None
            src_entry = src_handle.entry
        if off_in >= src_entry.size:
            return 0
        whole = off_in == 0 and off_out == 0 and length >= src_entry.size
        fresh = dst_file.size == 0 and not dst_file.needs_fill
        if not (whole and fresh):
            raise CrossDevice("only whole-file copies are routed; the kernel falls back to read/write")
        if self.copier is None:
            raise CantCopy("no copy planner: the kernel copies by reads and writes")
        try:
            route = self.copier.copy(src_handle.location, dst_handle.location, src_entry)
        except CantCopy as e:
            log.debug("copy %s -> %s: %s", src_handle.location.path, dst_handle.location.path, e)
            raise
        except Exception:
            with dst_file.lock:
                dst_file.dirty = False  # a failed route leaves no destination: close uploads nothing
            raise
        new_entry = self.entry(dst_handle.location, fresh=True)
        dst_file.adopt_remote(new_entry)
        self._changed(dst_handle.location.path)
        log.info("copied %s -> %s by %s", src_handle.location.path, dst_handle.location.path, route)
        return src_entry.size
