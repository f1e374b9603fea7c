"""The VFS core: FUSE-shaped operations over the mount table, in rhfs's own types.

This is the whole filesystem, testable without the kernel: the FUSE adapter and
the ``rhfs://`` fsspec face are thin shells over it. It never imports mfusepy.

:class:`Vfs` is assembled from one module per kind of operation:
- :mod:`rhfs.vfs.lookups`: the state, path resolution, entries from the metadata cache;
- :mod:`rhfs.vfs.file_ops`: open, create, read, write, flush, release, copies;
- :mod:`rhfs.vfs.namespace`: mkdir, rmdir, unlink, rename, links, modes and times;
- this module: attributes, listings (with the kernel's directory cache), links, xattrs.
The tables of open handles and files are :mod:`rhfs.vfs.handles`.

The thread model of the daemon
------------------------------
Threads:
- libfuse's worker threads call every :class:`Vfs` method, many at once; so do the
  ``rhfs://`` face, ``rhfs cp``, the Python API and the start-up recovery
  (``rhfs-recovery``), which are clients of the VFS like any FUSE thread.
- Each system's pool (``rhfs-<system>``, :class:`~rhfs.backends.guard.Guarded`) runs
  every call to that system, bounded in time; the calling thread waits for it.
- The clients' event loops (fsspec's loop thread, the presigned S3 session's loop) run
  a backend's requests; they never call back into the VFS.
- Clusters' kept sessions (:mod:`rhfs.backends.cluster_session`) run their connections on
  one event loop (``rhfs-sessions``), which also calls a job's progress callback (it must
  only count); the caller, a system's pool thread, waits for the job's answer. Each
  session's idle timer (``rhfs-<system>-idle``) and ``rhfs-session-close`` close them.
- Read-ahead producers (``rhfs-readahead``, one shared pool) fill readers' runs.
- Copies fan out on ``rhfs-fetch`` (ranged reads of one file), ``rhfs-cp`` and
  ``rhfs-api-copy`` (several files); the daemon has its own signal, stop, ready and
  warm-up threads, which only start and stop things.

State and the lock that guards it:
- :attr:`HandleTable.lock <rhfs.vfs.handles.HandleTable>`: the handle and open-file tables,
  every ``refs`` count, the per-path generations, each handle's reader slot.
- ``OpenFile.lock`` (:mod:`rhfs.vfs.open_files`): one path's spool: its descriptor, size,
  dirty flag, pending modes and times, kept copy.
- :class:`~rhfs.vfs.cache.MetadataCache`, :class:`~rhfs.vfs.recent.RecentMap` (readdir's
  memos, the adapter's packed listings), :class:`~rhfs.stats.Stats`, the catalog's
  document cache, the tool cache, each reader's buffer pool, each cluster session (its
  state, its open session's jobs, its private agent), the copy context's logged-once
  notes, the other names of hard-linked files (:mod:`rhfs.vfs.links`), the files libfuse
  hid after an unlink while open (``Vfs._hidden``): each its own lock.
- ``forget_attrs`` (the adapter's call into libfuse, which tells the kernel to drop a path's
  attributes and cached pages) waits at most for the kernel to unlock pages of that other name
  being read, which other worker threads serve; it takes no lock of the VFS, so it may be
  called under ``OpenFile.lock``.
- ``ReadAhead._cond``: the runs of one reader; ``ClusterReader._lock``: its remote file.
- The VFS's ``_versions`` (the version last opened per path) is a plain dict: single
  reads and writes are atomic, and every walk over it iterates a snapshot (``list()``).
- :class:`~rhfs.backends.guard.Guarded` keeps its health in single assignments; two
  calls failing at once only race over which message is kept.
- The table converter (:mod:`rhfs.views.parts`) holds one lock per source version for
  the whole conversion, so each version is converted once.

Lock order, and what may wait under a lock:
1. ``OpenFile.lock``, then ``HandleTable.lock``, never the other way round. A last release
   holds the file's lock from counting its references to discarding it.
2. ``OpenFile.lock`` and a converter's version lock may be held during a backend call
   (an upload, a fill, a conversion); no other lock ever is.
3. Every other lock is a leaf: nothing else is taken under it, and no system is called.
   (``ReadAhead._cond`` takes the buffer pool's leaf lock under it.)
"""

from __future__ import annotations

import dataclasses
import posixpath
import re
import threading
from functools import cached_property

from rhfs.backends.base import Entry
from rhfs.errors import BadHandle, InvalidArgument, NoAttribute, NotFound
from rhfs.tree import Location, TreeDir, normalize
from rhfs.vfs.attrs import Attr, attr_of, dir_attr
from rhfs.vfs.file_ops import FileOps
from rhfs.vfs.handles import Handle, OpenReply
from rhfs.vfs.lookups import Copier
from rhfs.vfs.namespace import NamespaceOps
from rhfs.vfs.open_files import MetadataChange, OpenFile
from rhfs.vfs.recent import RecentMap

__all__ = ["Copier", "Handle", "OpenReply", "Vfs"]

LISTINGS_KEPT = 256  # directories whose last readdir is remembered (kernel cache, memo)
XATTR_URL = "user.rhfs.url"
XATTR_ETAG = "user.rhfs.etag"
HIDDEN_NAME = re.compile(r"\.fuse_hidden[0-9a-f]{16}")  # libfuse's name for a file unlinked while open


class Vfs(FileOps, NamespaceOps):
    # -- files unlinked while open ------------------------------------------------------
    # libfuse renames a file that is open to a hidden name instead of unlinking it, and
    # unlinks that name after the last release; meanwhile fstat reaches the hidden name. The
    # rename never reaches a system: the file's name is removed there (as by unlink), and the
    # hidden name answers getattr with what the handles still hold, with a link count of 0.
    @cached_property
    def _hidden(self) -> dict[str, tuple[OpenFile | None, Attr]]:
        return {}

    @cached_property
    def _hidden_lock(self) -> threading.Lock:
        return threading.Lock()

    def is_hiding(self, old: str, new: str) -> bool:
        """Is ``rename(old, new)`` libfuse hiding an open file, rather than a user's rename?"""
        old, new = normalize(old), normalize(new)
        hidden_name = HIDDEN_NAME.fullmatch(posixpath.basename(new)) is not None
        return hidden_name and posixpath.dirname(new) == posixpath.dirname(old) and self.handles.is_open(old)

    def rename(self, old: str, new: str) -> None:
        if not self.is_hiding(old, new):
            super().rename(old, new)
            return
        old = normalize(old)
        attr = dataclasses.replace(self.getattr(old), nlink=0)
        open_file = self.handles.open_file(old)
        super().unlink(old)
        with self._hidden_lock:
            self._hidden[normalize(new)] = (open_file, attr)

    def unlink(self, path: str) -> None:
        with self._hidden_lock:
            hidden = self._hidden.pop(normalize(path), None)
        if hidden is None:
            super().unlink(path)

    def _hidden_attr(self, path: str) -> Attr | None:
        with self._hidden_lock:
            hidden = self._hidden.get(path)
        if hidden is None:
            return None
        open_file, attr = hidden
        return attr if open_file is None else self._open_file_attr(open_file)

    def _set_metadata(self, path: str, change: MetadataChange, *args: int | None) -> None:
        if self._hidden_attr(normalize(path)) is None:  # a hidden file keeps what it has
            super()._set_metadata(path, change, *args)

    # -- metadata -----------------------------------------------------------------------
    def getattr(self, path: str | None, fh: int | None = None) -> Attr:
        """Attributes by path, or by handle alone (``path`` None: the file may be unlinked).

        A file open but unlinked still answers ``fstat``, with a link count of 0."""
        handle = self.handles.find(fh)
        if (
            handle is not None
            and handle.open_file is not None
            and (path is None or handle.open_file.unlinked)
        ):
            return self._open_file_attr(handle.open_file)
        if path is None:
            if handle is None:
                raise BadHandle("a handle that is not open")
            path = handle.location.path
        path = normalize(path)
        open_file = self.handles.open_file(path)
        if open_file is not None:
            return self._open_file_attr(open_file)
        hidden = self._hidden_attr(path)
        if hidden is not None:
            return hidden
        loc = self.resolve(path)
        if isinstance(loc, TreeDir):
            return dir_attr(self.stats.started_at, mode=0o555)  # the tree's own: dated when it began
        if loc.is_system_root:
            return dir_attr(self.stats.started_at, mode=self._root_mode(loc))
        read_only = self.read_only or not loc.backend.traits.writable
        try:
            return attr_of(self.entry(loc), read_only)
        except NotFound:
            if handle is None or handle.entry is None or handle.location.path != path:
                raise
            return dataclasses.replace(attr_of(handle.entry, read_only), nlink=0)  # outlived its name

    def _root_mode(self, loc: Location) -> int:
        """A root on the daemon's own disk (here/) shows its own mode: with allow_other, a
        private home stays private."""
        if loc.backend.abilities.local_path is not None:
            mode = loc.backend.stat("").mode
            if mode is not None:
                return mode
        return 0o755

    # -- listings, with the kernel's directory cache ------------------------------------
    # readdir's memos, made on first use (two first uses at once may each make one: a memo
    # lost that way only costs the next readdir its shortcut):
    # path -> (listing, files pending upload) that readdir last returned, for opendir; and
    # what it returned, for the next readdir. Holding the listing keeps its identity unique.
    @cached_property
    def _listed(self) -> RecentMap[str, tuple[list[Entry] | None, tuple[str, ...]]]:
        return RecentMap(LISTINGS_KEPT)

    @cached_property
    def _readdir_out(self) -> RecentMap[str, tuple[list[Entry], list[tuple[str, Attr]]]]:
        return RecentMap(LISTINGS_KEPT)

    def readdir(self, path: str) -> list[tuple[str, Attr]]:
        path = normalize(path)
        loc = self.resolve(path)
        here = dir_attr(self.stats.started_at)
        if isinstance(loc, TreeDir):
            self._listed.put(path, (None, ()))
            return [(".", here), ("..", here)] + [(name, here) for name in loc.children]
        entries = self.cache.get_listing(path)
        if entries is None:
            entries = self._list(loc)
            self.cache.put_listing(path, entries)
        last = self._readdir_out.get(path)
        if last is not None and last[0] is entries and not self.handles.pending_names(path):
            return last[1]  # the same list again: the adapter converts it once
        read_only = self.read_only or not loc.backend.traits.writable
        out = [(".", here), ("..", here)] + [(e.name, attr_of(e, read_only)) for e in entries]
        names = {e.name for e in entries}
        pending = self.handles.in_directory(path)
        if pending:  # files being written show what they hold now, listed or not yet uploaded
            out = [(name, self._open_file_attr(pending[name]) if name in pending else a) for name, a in out]
            out += [(name, self._open_file_attr(of)) for name, of in pending.items() if name not in names]
        self._remember_listing(path, entries, out)
        return out

    def _remember_listing(self, path: str, entries: list[Entry], out: list[tuple[str, Attr]]) -> None:
        """What readdir returned, for opendir and the next readdir (the latest LISTINGS_KEPT)."""
        self._listed.put(path, (entries, self.handles.pending_names(path)))
        self._readdir_out.put(path, (entries, out))

    def opendir(self, path: str) -> bool:
        """May the kernel keep the entries of ``path`` it read last? Only while they are current:
        the same cached listing and the same files pending upload (so within ``attr_ttl``)."""
        path = normalize(path)
        loc = self.resolve(path)
        if isinstance(loc, TreeDir):
            return path in self._listed
        entries = self.cache.get_listing(path)
        listed, pending = self._listed.get(path) or (None, ())
        return entries is not None and entries is listed and pending == self.handles.pending_names(path)

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
        if isinstance(loc, TreeDir):
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
        return [] if isinstance(loc, TreeDir) else [XATTR_URL, XATTR_ETAG]
