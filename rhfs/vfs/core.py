"""The VFS core: FUSE-shaped operations over the mount table, in rhfs's own types.

This is the whole filesystem, testable without the kernel: the FUSE adapter and
the ``rhfs://`` fsspec face are thin shells over it. It never imports mfusepy.

Responsibilities:
- path resolution through the :class:`MountTable`, with synthetic directories;
- attribute and listing caches (:class:`MetadataCache`), invalidated by our own changes;
- file handles: read-ahead for remote reads, shared write spools uploaded at
  flush/fsync (close-to-open), failed uploads kept under ``cache_dir/failed``;
- POSIX answers (EEXIST, ENOTEMPTY, EISDIR, ENOTDIR, EXDEV) where backends differ;
- ``copy_file_range``: whole-file copies go to the copier (the route planner).

Lock order: ``Vfs._lock`` (the handle and open-file tables) is never held during
a backend call; ``OpenFile.lock`` may be held during one.
"""

from __future__ import annotations

import errno
import itertools
import logging
import os
import posixpath
import stat
import threading
from dataclasses import dataclass
from typing import Protocol

from rhfs.backends.base import Entry, Reader, basename, check_name
from rhfs.errors import (
    AlreadyExists,
    CantCopy,
    CrossDevice,
    DirectoryNotEmpty,
    InvalidArgument,
    IsADirectory,
    NoAttribute,
    NotADirectory,
    NotFound,
    NotSupported,
    ReadOnly,
    RhfsError,
    UploadFailed,
)
from rhfs.stats import Stats
from rhfs.vfs.attrs import Attr, attr_of, dir_attr
from rhfs.vfs.cache import MetadataCache
from rhfs.vfs.files import OpenFile
from rhfs.vfs.readahead import ReadAhead
from rhfs.vfs.tree import Location, MountTable, normalize

log = logging.getLogger(__name__)

XATTR_URL = "user.rhfs.url"
XATTR_ETAG = "user.rhfs.etag"
REMOTE_KINDS = ("store", "cluster")
LISTINGS_KEPT = 256  # directories whose last readdir is remembered (kernel cache, memo)
WRITABLE_KINDS = ("here", "cluster", "store", "view")
DEFAULT_FILE_MODE = 0o644  # what a new file gets on every system without a chmod
DEFAULT_DIR_MODE = 0o755


class Copier(Protocol):
    def copy(self, src: Location, dst: Location, entry: Entry) -> str:
        """Copy a whole file; return the route's name, or raise CantCopy."""
        ...


class SameSystemCopier:
    """The simplest planner: a server-side copy when both ends are on one system."""

    def __init__(self, stats: Stats) -> None:
        self.stats = stats

    def copy(self, src: Location, dst: Location, entry: Entry) -> str:
        if src.backend is None or src.backend is not dst.backend or not src.backend.has("copy_within"):
            raise CantCopy("no server-side route between these systems")
        src.backend.ability("copy_within", src.rel, dst.rel)
        route = f"{src.backend.kind}-copy"
        self.stats.add_copy(route, entry.size)
        return route


@dataclass
class Opened:
    fh: int
    keep_cache: bool = False
    direct_io: bool = False


@dataclass
class Handle:
    location: Location
    flags: int
    entry: Entry | None
    open_file: OpenFile | None = None
    reader: Reader | None = None
    served: bool = False  # a read has returned bytes of ``entry``'s version


class Vfs:
    def __init__(
        self,
        table: MountTable,
        *,
        cache_dir: str,
        attr_ttl: float = 5.0,
        read_only: bool = False,
        stats: Stats | None = None,
        copier: Copier | None = None,
    ) -> None:
        self.table = table
        self.read_only = read_only
        self.stats = stats or Stats()
        self.cache = MetadataCache(attr_ttl)
        self.copier: Copier = copier or SameSystemCopier(self.stats)
        self.spool_dir = os.path.join(cache_dir, "spool")
        self.failed_dir = os.path.join(cache_dir, "failed")
        os.makedirs(self.spool_dir, mode=0o700, exist_ok=True)
        self._lock = threading.Lock()
        self._handles: dict[int, Handle] = {}
        self._open_files: dict[str, OpenFile] = {}
        self._versions: dict[str, tuple[object, ...]] = {}
        # path -> (listing, files pending upload) that readdir last returned; holding the listing
        # keeps its identity unique
        self._listed: dict[str, tuple[list[Entry] | None, tuple[str, ...]]] = {}
        self._readdir_out: dict[str, tuple[list[Entry], list[tuple[str, Attr]]]] = {}
        self._fh_counter = itertools.count(1)

    # -- helpers ----------------------------------------------------------------------
    def resolve(self, path: str) -> Location:
        return self.table.resolve(path)

    def entry(self, loc: Location, *, fresh: bool = False) -> Entry:
        """The backend's entry for a location, from the cache unless ``fresh``."""
        if loc.backend is None or loc.is_system_root:
            return Entry(name=basename(loc.path), is_dir=True)
        if not fresh:
            cached = self.cache.get_entry(loc.path)
            if cached is not None:
                return cached
            if self.cache.known_absent(loc.path):
                raise NotFound(loc.path)
            if self._relisted(posixpath.dirname(loc.path)):
                cached = self.cache.get_entry(loc.path)
                if cached is not None:
                    return cached
                if self.cache.known_absent(loc.path):
                    raise NotFound(loc.path)
        self.stats.add_metadata_call(loc.backend.system, "stat")
        entry = loc.backend.stat(loc.rel)
        self.cache.put_entry(loc.path, entry)
        return entry

    def _relisted(self, path: str) -> bool:
        """List ``path`` again if its expired listing was small (see MetadataCache.worth_relisting)."""
        if not self.cache.worth_relisting(path):
            return False
        loc = self.resolve(path)
        if loc.backend is None:
            return False
        try:
            self.cache.put_listing(path, self._list(loc))
        except RhfsError as e:
            log.debug("relisting %s: %s", path, e)
            return False
        return True

    def _list(self, loc: Location) -> list[Entry]:
        """The backend's listing of a directory, uncached (counted in stats)."""
        assert loc.backend is not None
        self.stats.add_metadata_call(loc.backend.system, "list")
        return loc.backend.list(loc.rel)

    def _resolve_new(self, path: str) -> Location:
        """Resolve a path about to be created: EROFS inside the tree's own directories.

        A name the system cannot hold is refused here, before any lookup: a lookup may be
        answered "absent" from a cached listing, and the name would then fail only at close.
        """
        try:
            loc = self.resolve(path)
        except NotFound:
            if self.resolve(posixpath.dirname(normalize(path))).synthetic:
                raise ReadOnly(f"{path}: the tree's own directories are read-only") from None
            raise
        if loc.backend is not None and loc.rel:
            check_name(loc.rel)
            if loc.backend.has("check_path"):
                loc.backend.inner.check_path(loc.rel)  # type: ignore[attr-defined]
        return loc

    def _exists(self, loc: Location) -> Entry | None:
        try:
            return self.entry(loc)
        except NotFound:
            return None

    def _writable(self, loc: Location) -> None:
        if self.read_only or loc.backend is None or loc.backend.kind not in WRITABLE_KINDS:
            raise ReadOnly(loc.path)

    def _handle(self, fh: int) -> Handle:
        handle = self._handles.get(fh)
        if handle is None:
            raise RhfsError(f"bad file handle {fh}", errno_=errno.EBADF)
        return handle

    def _changed(self, path: str) -> None:
        self.cache.invalidate(path)
        self._versions.pop(path, None)

    def _uploaded(self, open_file: OpenFile) -> None:
        """After an upload: on a store, the new object's size and time are known here, so a
        ``stat`` within ``attr_ttl`` needs no HEAD (its version is asked for only by a reader)."""
        self._changed(open_file.path)
        loc = open_file.location
        if loc.backend is None or loc.backend.kind != "store" or open_file.unlinked:
            return
        entry = Entry(name=basename(loc.path), is_dir=False, size=open_file.size, mtime=open_file.shown_mtime)
        self.cache.put_uploaded(loc.path, entry)

    # -- metadata -----------------------------------------------------------------------
    def getattr(self, path: str | None, fh: int | None = None) -> Attr:
        """Attributes by path, or by handle alone (``path`` None: the file may be unlinked)."""
        handle = self._handles.get(fh) if fh is not None else None
        if path is None:
            if handle is None:
                raise RhfsError("a handle that is not open", errno_=errno.EBADF)
            if handle.open_file is not None:
                return self._open_file_attr(handle.open_file)
            path = handle.location.path
        path = normalize(path)
        open_file = (handle.open_file if handle else None) or self._open_files.get(path)
        if open_file is not None and not open_file.unlinked:
            return self._open_file_attr(open_file)
        loc = self.resolve(path)
        if loc.synthetic or loc.is_system_root:
            return dir_attr(mode=0o555 if loc.synthetic else self._root_mode(loc))
        return attr_of(self.entry(loc), self.read_only or loc.backend.kind == "control")  # type: ignore[union-attr]

    def _root_mode(self, loc: Location) -> int:
        """here/ shows its root's own mode: with allow_other, a private home stays private."""
        if loc.backend is not None and loc.backend.kind == "here":
            mode = loc.backend.stat("").mode
            if mode is not None:
                return mode
        return 0o755

    def _open_file_attr(self, open_file: OpenFile) -> Attr:
        entry = Entry(
            name="", is_dir=False, size=open_file.size, mtime=open_file.shown_mtime, mode=open_file.mode
        )
        return attr_of(entry, self.read_only)

    def readdir(self, path: str) -> list[tuple[str, Attr]]:
        path = normalize(path)
        loc = self.resolve(path)
        here = dir_attr()
        if loc.backend is None:
            self._listed[path] = (None, ())
            return [(".", here), ("..", here)] + [(name, dir_attr()) for name in loc.children]
        entries = self.cache.get_listing(path)
        if entries is None:
            entries = self._list(loc)
            self.cache.put_listing(path, entries)
        last = self._readdir_out.get(path)
        if last is not None and last[0] is entries and not self._pending_names(path):
            return last[1]  # the same list again: the adapter converts it once
        read_only = self.read_only or loc.backend.kind == "control"
        out = [(".", here), ("..", here)] + [(e.name, attr_of(e, read_only)) for e in entries]
        names = {e.name for e in entries}
        prefix = path.rstrip("/") + "/"
        with self._lock:
            pending = {
                p[len(prefix) :]: of
                for p, of in self._open_files.items()
                if posixpath.dirname(p) == path and not of.unlinked
            }
        if pending:  # files being written show what they hold now, listed or not yet uploaded
            out = [(name, self._open_file_attr(pending[name]) if name in pending else a) for name, a in out]
            out += [(name, self._open_file_attr(of)) for name, of in pending.items() if name not in names]
        self._remember_listing(path, entries, out)
        return out

    def _remember_listing(self, path: str, entries: list[Entry], out: list[tuple[str, Attr]]) -> None:
        """What readdir returned, for opendir and the next readdir (the latest LISTINGS_KEPT)."""
        for memo in (self._listed, self._readdir_out):
            memo.pop(path, None)
            while len(memo) >= LISTINGS_KEPT:
                del memo[next(iter(memo))]
        self._listed[path] = (entries, self._pending_names(path))
        self._readdir_out[path] = (entries, out)

    def opendir(self, path: str) -> bool:
        """May the kernel keep the entries of ``path`` it read last? Only while they are current:
        the same cached listing and the same files pending upload (so within ``attr_ttl``)."""
        path = normalize(path)
        loc = self.resolve(path)
        if loc.backend is None:
            return path in self._listed
        entries = self.cache.get_listing(path)
        listed, pending = self._listed.get(path, (None, ()))
        return entries is not None and entries is listed and pending == self._pending_names(path)

    def _pending_names(self, path: str) -> tuple[str, ...]:
        with self._lock:
            return tuple(sorted(p for p, of in self._open_files.items() if posixpath.dirname(p) == path))

    def readlink(self, path: str) -> str:
        entry = self.entry(self.resolve(path))
        if entry.link_target is None:
            raise InvalidArgument(f"{path} is not a symbolic link")
        return entry.link_target

    def statfs(self, path: str) -> dict[str, int]:
        big = 1 << 40
        return {
            "f_bsize": 1 << 20,
            "f_frsize": 4096,
            "f_blocks": big,
            "f_bfree": big,
            "f_bavail": big,
            "f_files": big,
            "f_ffree": big,
            "f_favail": big,
            "f_namemax": 255,
        }

    def getxattr(self, path: str, name: str) -> bytes:
        loc = self.resolve(path)
        if loc.backend is None:
            raise NoAttribute(name)
        if name == XATTR_URL:
            return loc.backend.url(loc.rel).encode()
        if name == XATTR_ETAG:
            etag = self.entry(loc, fresh=True).etag
            if etag is None:
                raise NoAttribute(name)
            return etag.encode()
        raise NoAttribute(name)

    def listxattr(self, path: str) -> list[str]:
        loc = self.resolve(path)
        return [] if loc.backend is None else [XATTR_URL, XATTR_ETAG]

    # -- files --------------------------------------------------------------------------
    def open(self, path: str, flags: int) -> Opened:
        path = normalize(path)
        loc = self.resolve(path)
        writing = (flags & os.O_ACCMODE) != os.O_RDONLY or bool(flags & os.O_TRUNC)
        if writing:
            self._writable(loc)
        with self._lock:
            open_file = self._open_files.get(path)
        entry = None if open_file is not None else self.entry(loc, fresh=writing)
        if entry is not None and self.cache.is_uploaded(path, entry):
            entry = self.entry(loc, fresh=True)  # a reader pins the version the system holds
        if entry is not None and entry.is_dir:
            raise IsADirectory(path)
        if writing or open_file is not None:
            open_file = self._open_file(loc, entry)
            if flags & os.O_TRUNC:
                open_file.truncate(0)
            return self._new_handle(Handle(loc, flags, entry, open_file=open_file))
        assert entry is not None
        keep = self._versions.get(path) == entry.version
        self._versions[path] = entry.version
        opened = self._new_handle(Handle(loc, flags, entry))
        opened.keep_cache = keep and not entry.direct_io
        opened.direct_io = entry.direct_io
        return opened

    def create(self, path: str, mode: int, flags: int) -> Opened:
        path = normalize(path)
        loc = self._resolve_new(path)
        self._writable(loc)
        if loc.synthetic or loc.is_system_root:
            raise AlreadyExists(path)
        parent = self.resolve(posixpath.dirname(path))
        if not parent.synthetic and not self.cache.knows_dir(parent.path) and not self.entry(parent).is_dir:
            raise NotADirectory(path)
        existing = self._exists(loc)
        if existing is not None:
            if flags & os.O_EXCL:
                raise AlreadyExists(path)
            if existing.is_dir:
                raise IsADirectory(path)
        open_file = self._open_file(loc, existing)
        if existing is not None:
            open_file.truncate(0)
        elif stat.S_IMODE(mode) != DEFAULT_FILE_MODE:
            open_file.pending_metadata["set_mode"] = (stat.S_IMODE(mode),)
        self.cache.invalidate(posixpath.dirname(path))
        self._versions.pop(path, None)
        return self._new_handle(Handle(loc, flags, existing, open_file=open_file))

    def _open_file(self, loc: Location, entry: Entry | None) -> OpenFile:
        with self._lock:
            open_file = self._open_files.get(loc.path)
            if open_file is None:
                open_file = OpenFile(loc, self.spool_dir, exists=entry is not None, entry=entry)
                self._open_files[loc.path] = open_file
            open_file.refs += 1
            return open_file

    def _new_handle(self, handle: Handle) -> Opened:
        with self._lock:
            fh = next(self._fh_counter)
            self._handles[fh] = handle
        return Opened(fh)

    def read(self, fh: int, size: int, offset: int) -> bytes:
        handle = self._handle(fh)
        if handle.open_file is not None:
            return handle.open_file.read(offset, size)
        try:
            data = self._reader(handle).read(offset, size)
        except RhfsError as e:
            if e.errno != errno.ESTALE or handle.served:
                raise
            data = self._reopen_at_current_version(handle).read(offset, size)
        handle.served = True
        return data

    def _reopen_at_current_version(self, handle: Handle) -> Reader:
        """The version opened (from a cached entry) was already replaced and nothing of it was
        served: read the current version instead of failing, if the kernel's idea of the size
        (the old entry's) is still right. Otherwise ESTALE stands: never a mix of two versions."""
        entry = self.entry(handle.location, fresh=True)
        old_entry = handle.entry
        if entry.is_dir or old_entry is None or entry.size != old_entry.size:
            raise RhfsError(f"{handle.location.path} changed while open", errno_=errno.ESTALE)
        with self._lock:
            old, handle.reader, handle.entry = handle.reader, None, entry
        if old is not None:
            old.close()
        self._versions[handle.location.path] = entry.version
        return self._reader(handle)

    def _reader(self, handle: Handle, *, pin: bool = False) -> Reader:
        """The handle's reader, made on first use; ``pin`` opens the file on the system now."""
        if handle.reader is None:
            backend, entry = handle.location.backend, handle.entry
            assert backend is not None and entry is not None
            reader = backend.open_reader(handle.location.rel, entry)
            if pin:
                reader.read(0, 0)  # a cluster's reader opens its remote file on first read
            if backend.kind in REMOTE_KINDS:
                reader = ReadAhead(reader, entry.size)
            with self._lock:
                if handle.reader is None:
                    handle.reader = reader
                else:
                    reader.close()
        assert handle.reader is not None
        return handle.reader

    def _pin_readers(self, path: str) -> None:
        """Before ``path`` is removed or replaced, open its readers' files on the system.

        On ``here`` and clusters an open file outlives its name, so readers that opened
        the file before keep reading its bytes, as on a local filesystem. (Stores answer
        ESTALE instead: their readers are tied to the version they opened.)
        """
        with self._lock:
            waiting = [
                h
                for h in self._handles.values()
                if h.location.path == path
                and h.reader is None
                and h.open_file is None
                and h.location.backend is not None
                and h.location.backend.kind in ("here", "cluster")
            ]
        for handle in waiting:
            try:
                self._reader(handle, pin=True)
            except RhfsError as e:
                log.debug("%s: could not keep a reader open: %s", path, e)

    def write(self, fh: int, data: bytes, offset: int) -> int:
        handle = self._handle(fh)
        if handle.open_file is None:
            raise RhfsError("file not open for writing", errno_=errno.EBADF)
        return handle.open_file.write(data, offset)

    def truncate(self, path: str | None, size: int, fh: int | None = None) -> None:
        """Truncate by path, or by handle alone (``path`` None: the file may be unlinked)."""
        handle = self._handles.get(fh) if fh is not None else None
        open_file = handle.open_file if handle else None
        if open_file is None and path is not None:
            open_file = self._open_files.get(normalize(path))
        if open_file is not None:
            open_file.truncate(size)
            return
        if path is None:
            if handle is None:
                raise RhfsError("a handle that is not open", errno_=errno.EBADF)
            path = handle.location.path
        path = normalize(path)
        loc = self.resolve(path)
        self._writable(loc)
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

    def flush(self, fh: int) -> None:
        handle = self._handle(fh)
        if handle.open_file is not None and handle.open_file.upload(self.failed_dir):
            self._uploaded(handle.open_file)

    fsync = flush

    def release(self, fh: int) -> None:
        with self._lock:
            handle = self._handles.pop(fh, None)
        if handle is None:
            return
        if handle.reader is not None:
            handle.reader.close()
        open_file = handle.open_file
        if open_file is None:
            return
        try:
            if open_file.refs == 1 and open_file.upload(self.failed_dir):
                self._uploaded(open_file)
        except UploadFailed as e:
            log.error("%s", e)
        finally:
            with self._lock:
                open_file.refs -= 1
                last = open_file.refs == 0
                if last and self._open_files.get(open_file.path) is open_file:
                    del self._open_files[open_file.path]
            if last:
                open_file.discard()

    def shutdown(self) -> None:
        """Upload every pending write (on unmount or SIGTERM)."""
        with self._lock:
            pending = list(self._open_files.values())
        for open_file in pending:
            try:
                open_file.upload(self.failed_dir)
            except UploadFailed as e:
                log.error("%s", e)

    # -- namespace ----------------------------------------------------------------------
    def mkdir(self, path: str, mode: int = 0o755) -> None:
        loc = self._resolve_new(path)
        if loc.synthetic or loc.is_system_root:
            raise AlreadyExists(path)
        self._writable(loc)
        assert loc.backend is not None
        loc.backend.mkdir(loc.rel)
        self._changed(loc.path)
        self.cache.new_empty_dir(loc.path)
        if stat.S_IMODE(mode) != DEFAULT_DIR_MODE and loc.backend.has("set_mode"):
            loc.backend.ability("set_mode", loc.rel, stat.S_IMODE(mode))

    def rmdir(self, path: str) -> None:
        loc = self.resolve(path)
        if loc.synthetic or loc.is_system_root:
            raise RhfsError(f"{path} is a system root", errno_=errno.EBUSY)
        self._writable(loc)
        assert loc.backend is not None
        if self._pending_under(loc.path):
            raise DirectoryNotEmpty(path)
        loc.backend.rmdir(loc.rel)
        self.cache.invalidate_tree(loc.path)

    def _pending_under(self, path: str) -> bool:
        """Is a file below ``path`` open for writing (and so shown, perhaps not yet uploaded)?"""
        prefix = path.rstrip("/") + "/"
        with self._lock:
            return any(p.startswith(prefix) and not of.unlinked for p, of in self._open_files.items())

    def unlink(self, path: str) -> None:
        path = normalize(path)
        loc = self.resolve(path)
        if loc.synthetic or loc.is_system_root:
            raise IsADirectory(path)
        self._writable(loc)
        assert loc.backend is not None
        with self._lock:
            open_file = self._open_files.get(path)
        if open_file is not None and not open_file.remote_exists:
            self._detach(open_file)
            self._changed(path)
            return  # never uploaded: nothing remote to remove
        self._keep_readable(path)
        try:
            loc.backend.remove(loc.rel)
        except NotFound:
            if open_file is None:
                raise
        if open_file is not None:
            self._detach(open_file)
        self._changed(path)

    def _keep_readable(self, path: str) -> None:
        """Before ``path`` is removed or replaced: what is open on it keeps its bytes."""
        with self._lock:
            open_file = self._open_files.get(path)
        if open_file is not None:
            try:
                with open_file.lock:
                    open_file.fill()  # handles open for writing read their spool from now on
            except RhfsError as e:
                log.warning("%s: could not fetch the content of a file being removed: %s", path, e)
        self._pin_readers(path)

    def _detach(self, open_file: OpenFile) -> None:
        """The file's name is gone: its handles write to nothing visible from now on."""
        with self._lock:
            if self._open_files.get(open_file.path) is open_file:
                del self._open_files[open_file.path]
        open_file.unlinked = True

    def rename(self, old: str, new: str) -> None:
        src = self.resolve(old)
        if src.synthetic or src.is_system_root:
            raise RhfsError(f"{src.path} is a system root", errno_=errno.EBUSY)
        dst = self._resolve_new(new)
        if dst.synthetic or dst.is_system_root:
            raise RhfsError(f"{dst.path} is a system root", errno_=errno.EBUSY)
        self._writable(src)
        self._writable(dst)
        if src.backend is not dst.backend:
            raise CrossDevice(f"{old} -> {new} crosses systems")
        assert src.backend is not None
        self._upload_open_files_under(src.path)  # the rename moves what the system holds
        src_entry = self.entry(src, fresh=True)
        dst_entry = self._exists(dst)
        if src_entry.is_dir and (dst.path + "/").startswith(src.path + "/"):
            raise InvalidArgument(f"cannot move {old} into itself")
        if dst_entry is not None:
            if dst_entry.is_dir and not src_entry.is_dir:
                raise IsADirectory(new)
            if src_entry.is_dir and not dst_entry.is_dir:
                raise NotADirectory(new)
            if dst_entry.is_dir:
                if self._pending_under(dst.path) or self._list(dst):
                    raise DirectoryNotEmpty(new)
                if src.backend.kind == "store":
                    src.backend.rmdir(dst.rel)
        if dst_entry is not None and not dst_entry.is_dir:
            self._keep_readable(dst.path)
        src.backend.rename(src.rel, dst.rel)
        self._moved(src.path, dst.path)

    def _upload_open_files_under(self, path: str) -> None:
        """Upload pending writes at ``path`` or below it (before a rename moves them)."""
        prefix = path + "/"
        with self._lock:
            pending = [of for p, of in self._open_files.items() if p == path or p.startswith(prefix)]
        for open_file in pending:
            with open_file.lock:
                if open_file.upload(self.failed_dir):
                    self._uploaded(open_file)

    def _moved(self, old: str, new: str) -> None:
        """After a rename: re-key open files and handles, drop what was replaced, forget caches."""
        old_prefix, new_prefix = old + "/", new + "/"

        def moved_path(p: str) -> str | None:
            if p == old:
                return new
            return new + p[len(old) :] if p.startswith(old_prefix) else None

        with self._lock:
            replaced = [p for p in self._open_files if p == new or p.startswith(new_prefix)]
            for p in replaced:
                self._open_files.pop(p).unlinked = True  # its writers now write to nothing visible
            moved_files = []
            for p in [p for p in self._open_files if moved_path(p) is not None]:
                open_file = self._open_files.pop(p)
                open_file.location = self.resolve(moved_path(p) or p)
                self._open_files[open_file.path] = open_file
                moved_files.append(open_file)
            moved_handles = []
            for handle in self._handles.values():
                target = moved_path(handle.location.path)
                if target is not None:
                    handle.location = self.resolve(target)
                    moved_handles.append(handle)
            for p in [p for p in self._versions if moved_path(p) is not None or p == new]:
                del self._versions[p]
        self.cache.invalidate_tree(old)
        self.cache.invalidate_tree(new)
        self._follow_move(moved_files, moved_handles)

    def _follow_move(self, moved_files: list[OpenFile], moved_handles: list[Handle]) -> None:
        """Moved objects on a store are new objects (copies): take their versions, so that
        content fetched later is not refused as stale. Readers tied to the old object reopen.
        On ``here`` and clusters an open file follows its rename by itself."""
        for open_file in moved_files:
            if open_file.needs_fill and open_file.location.backend is not None:
                try:
                    open_file.entry = self.entry(open_file.location, fresh=True)
                except RhfsError as e:
                    log.warning("%s: cannot follow the rename of an open file: %s", open_file.path, e)
        for handle in moved_handles:
            if handle.open_file is not None or handle.location.backend is None:
                continue
            if handle.location.backend.kind != "store":
                continue
            reader, handle.reader = handle.reader, None
            if reader is not None:
                reader.close()
            try:
                handle.entry = self.entry(handle.location, fresh=True)
            except RhfsError as e:
                log.warning("%s: cannot follow the rename of an open file: %s", handle.location.path, e)

    def symlink(self, target: str, path: str) -> None:
        loc = self._resolve_new(path)
        self._writable(loc)
        assert loc.backend is not None
        if not loc.backend.has("symlink"):
            raise NotSupported(f"{loc.backend.system} has no symbolic links")
        loc.backend.ability("symlink", target, loc.rel)
        self._changed(loc.path)

    def link(self, target: str, path: str) -> None:
        raise NotSupported("hard links are not supported")

    def chmod(self, path: str, mode: int) -> None:
        self._set_metadata(path, "set_mode", mode)

    def chown(self, path: str, uid: int, gid: int) -> None:
        self._set_metadata(path, None)

    def utimens(self, path: str, atime: float, mtime: float) -> None:
        self._set_metadata(path, "set_times", atime, mtime)

    def _set_metadata(self, path: str, ability: str | None, *args: float) -> None:
        """Accepted everywhere so that cp -a and rsync -a work; applied where the system has it."""
        path = normalize(path)
        loc = self.resolve(path)
        if loc.synthetic or loc.is_system_root:
            return
        self._writable(loc)
        with self._lock:
            open_file = self._open_files.get(path)
        if open_file is not None:
            with open_file.lock:
                if open_file.dirty or not open_file.remote_exists:
                    # the upload at close would undo it: apply it after that upload
                    if ability is not None:
                        open_file.pending_metadata[ability] = args
                    return
        self.entry(loc)  # ENOENT for a missing file
        assert loc.backend is not None
        if ability is not None and loc.backend.has(ability):
            loc.backend.ability(ability, loc.rel, *args)
            self._changed(path)

    # -- copies -------------------------------------------------------------------------
    def copy_file_range(self, fh_in: int, off_in: int, fh_out: int, off_out: int, length: int) -> int:
        src_handle, dst_handle = self._handle(fh_in), self._handle(fh_out)
        dst_file = dst_handle.open_file
        if dst_file is None:
            raise RhfsError("destination not open for writing", errno_=errno.EBADF)
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
