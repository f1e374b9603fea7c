"""What every VFS operation starts from: the VFS's state, paths and entries.

- Paths resolve through the :class:`~rhfs.tree.MountTable`; a path about to be
  created is checked first (EROFS in the tree's own directories, names the system
  cannot hold).
- An entry comes from the :class:`~rhfs.vfs.cache.MetadataCache` when it can: a cached
  entry, a name missing from a current listing (absent, no request), or a small expired
  listing listed again; otherwise from one ``stat`` on the system.
- The mount's own changes invalidate what they touch (``_changed``); after an upload to
  a store the cache keeps what the mount knows of the new object (``_uploaded``).

:class:`Lookups` is the base of the VFS's operation classes (:mod:`rhfs.vfs.file_ops`,
:mod:`rhfs.vfs.namespace`, :class:`rhfs.vfs.core.Vfs`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import posixpath
import stat
from collections.abc import Callable, Iterator
from typing import Protocol

from rhfs.backends.base import Entry, Owner, basename, check_name, check_name_length
from rhfs.errors import IsADirectory, NotFound, ReadOnly, RhfsError, UploadFailed
from rhfs.stats import Stats
from rhfs.tree import Location, MountTable, TreeDir, normalize
from rhfs.vfs import kept
from rhfs.vfs.attrs import Attr, attr_of
from rhfs.vfs.cache import MetadataCache
from rhfs.vfs.handles import HandleTable
from rhfs.vfs.links import LinkedNames
from rhfs.vfs.open_files import OpenFile

log = logging.getLogger(__name__)


class Copier(Protocol):
    """What copies a whole file for ``copy_file_range``: the tree's copy planner
    (:class:`rhfs.transfer.planner.Planner`), given by whoever builds the VFS."""

    def copy(self, src: Location, dst: Location, entry: Entry) -> str:
        """Copy a whole file; return the route's name, or raise CantCopy (the kernel then
        copies by reads and writes)."""
        ...


class Lookups:
    def __init__(
        self,
        table: MountTable,
        *,
        cache_dir: str,
        attr_ttl: float = 5.0,
        read_only: bool = False,
        stats: Stats | None = None,
        copier: Copier | None = None,
        spool_dir: str | None = None,
    ) -> None:
        """``spool_dir``: where open files spool their writes (default ``cache_dir/spool``; the
        daemon claims a directory of its own there, see :mod:`rhfs.vfs.recovery`)."""
        self.table = table
        self.read_only = read_only
        self.stats = stats or Stats()
        self.cache = MetadataCache(attr_ttl)
        self.copier = copier  # None: no copy is routed; the kernel copies by reads and writes
        self.spool_dir = spool_dir or os.path.join(cache_dir, "spool")
        self.failed_dir = kept.failed_dir(cache_dir)
        os.makedirs(self.spool_dir, mode=0o700, exist_ok=True)
        self.handles = HandleTable()
        self.links = LinkedNames()
        # set by a face that caches attributes itself (the kernel): forget those of a tree path
        self.forget_attrs: Callable[[str], None] | None = None
        self._versions: dict[str, tuple[object, ...]] = {}  # path -> the version last opened for reading

    def resolve(self, path: str) -> Location | TreeDir:
        check_name_length(path)
        return self.table.resolve(path)

    def locate(self, path: str) -> Location:
        """The place of ``path`` on its system; EISDIR for a directory of the tree itself."""
        found = self.resolve(path)
        if isinstance(found, TreeDir):
            raise IsADirectory(f"{path} is a directory of the tree itself")
        return found

    def entry(self, loc: Location | TreeDir, *, fresh: bool = False) -> Entry:
        """The backend's entry for a location, from the cache unless ``fresh``."""
        if isinstance(loc, TreeDir) or loc.is_system_root:
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
        self.links.note(loc.backend.system, loc.path, entry)
        return entry

    def _relisted(self, path: str) -> bool:
        """List ``path`` again if its expired listing was small (see MetadataCache.worth_relisting)."""
        if not self.cache.worth_relisting(path):
            return False
        loc = self.resolve(path)
        if isinstance(loc, TreeDir):
            return False
        try:
            self.cache.put_listing(path, self._list(loc))
        except RhfsError as e:
            log.debug("relisting %s: %s", path, e)
            return False
        return True

    def _list(self, loc: Location) -> list[Entry]:
        """The backend's listing of a directory, uncached (counted in stats)."""
        self.stats.add_metadata_call(loc.backend.system, "list")
        entries = loc.backend.list(loc.rel)
        for entry in entries:
            self.links.note(loc.backend.system, posixpath.join(loc.path, entry.name), entry)
        return entries

    def _resolve_new(self, path: str) -> Location | TreeDir:
        """Resolve a path about to be created: EROFS inside the tree's own directories.

        A name the system cannot hold is refused here, before any lookup: a lookup may be
        answered "absent" from a cached listing, and the name would then fail only at close.
        """
        try:
            loc = self.resolve(path)
        except NotFound:
            if isinstance(self.resolve(posixpath.dirname(normalize(path))), TreeDir):
                raise ReadOnly(f"{path}: the tree's own directories are read-only") from None
            raise
        if isinstance(loc, TreeDir):
            return loc
        if loc.rel:
            check_name(loc.rel)
            check_path = loc.backend.abilities.check_path
            if check_path is not None:
                check_path(loc.rel)
        return loc

    def owner_of_new(self, loc: Location, owner: Owner | None) -> tuple[int, int | None] | None:
        """The (uid, gid) a name made at ``loc`` for ``owner`` is given after it is made: None
        where the system keeps no owners or the daemon's own are right; the gid None in a
        set-group-ID directory, whose group the system gives by itself."""
        if owner is None or loc.backend.abilities.set_owner is None:
            return None
        parent = loc.parent
        try:
            mode = loc.backend.stat("").mode if parent.is_system_root else self.entry(parent).mode
        except RhfsError:
            mode = None
        gid = None if mode is not None and mode & stat.S_ISGID else owner.gid
        if owner.uid == os.geteuid() and gid in (None, os.getegid()):
            return None
        return owner.uid, gid

    def _exists(self, loc: Location, *, fresh: bool = False) -> Entry | None:
        try:
            return self.entry(loc, fresh=fresh)
        except NotFound:
            return None

    def _writable(self, loc: Location | TreeDir) -> Location:
        """``loc`` itself, if the tree may change it; EROFS otherwise."""
        if self.read_only or isinstance(loc, TreeDir) or not loc.backend.traits.writable:
            raise ReadOnly(loc.path)
        return loc

    def _changed(self, path: str) -> None:
        self.cache.invalidate(path)
        self._versions.pop(path, None)
        self._changed_linked(path)

    def _changed_linked(self, path: str) -> None:
        """``path`` changed: so did the file's other names, if it has any (:mod:`rhfs.vfs.links`)."""
        for other in self.links.others(path):
            self.cache.invalidate(other)
            self._versions.pop(other, None)
            if self.forget_attrs is not None:
                self.forget_attrs(other)

    def changed_elsewhere(self, path: str, *, subtree: bool = False) -> None:
        """A face changed ``path`` (with ``subtree``, also what is below it) on its system, not
        through these operations: forget what the caches hold of it, as after a change of our own."""
        path = normalize(path)
        if not subtree:
            self._changed(path)
            return
        self.cache.invalidate_tree(path)
        for p in [p for p in list(self._versions) if p == path or p.startswith(path + "/")]:
            self._versions.pop(p, None)

    def _uploaded(self, open_file: OpenFile) -> None:
        """After an upload: on a store, the new object's size and time are known here, so a
        ``stat`` within ``attr_ttl`` needs no HEAD (its version is asked for only by a reader)."""
        self._changed(open_file.path)
        loc = open_file.location
        if not loc.backend.traits.versioned_objects or open_file.unlinked:
            return
        entry = Entry(name=basename(loc.path), is_dir=False, size=open_file.size, mtime=open_file.shown_mtime)
        self.cache.put_uploaded(loc.path, entry)

    @contextlib.contextmanager
    def _holding(self, path: str) -> Iterator[OpenFile | None]:
        """The open file of ``path``, if one is open, held by a reference for the block."""
        open_file = self.handles.join(path)
        try:
            yield open_file
        finally:
            if open_file is not None:
                self._let_go(open_file)

    def _let_go(self, open_file: OpenFile) -> None:
        """Drop one reference to ``open_file``; the last one uploads pending writes, then discards it.

        Under the file's lock, so that a concurrent last release cannot skip the upload, and
        the file leaves the table only once its bytes are where they belong: whoever opens the
        path after that finds them there. A failed upload is logged; its data stays kept.
        """
        with open_file.lock:
            try:
                if open_file.refs == 1 and open_file.upload(self.failed_dir):
                    self._uploaded(open_file)
            except UploadFailed as e:
                log.error("%s", e)
            finally:
                if self.handles.drop_ref(open_file):
                    open_file.discard()

    def _open_file_attr(self, open_file: OpenFile) -> Attr:
        atime_ns, mtime_ns = open_file.shown_times_ns
        uid, gid = open_file.owner
        held = open_file.entry
        entry = Entry(
            name="",
            is_dir=False,
            size=open_file.size,
            mtime=mtime_ns / 1e9,
            mode=open_file.mode,
            mtime_ns=mtime_ns,
            atime_ns=atime_ns,
            uid=uid,
            gid=gid,
            nlink=held.nlink if held is not None and open_file.remote_exists else None,
            ino=held.ino if held is not None and open_file.remote_exists else None,
        )
        attr = attr_of(entry, self.read_only)
        return dataclasses.replace(attr, nlink=0) if open_file.unlinked else attr
