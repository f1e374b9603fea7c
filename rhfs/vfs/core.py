"""The VFS core: FUSE-shaped operations over the mount table, in rhfs's own types.

This is the whole filesystem, testable without the kernel: the FUSE adapter and
the ``rhfs://`` fsspec face are thin shells over it. It never imports mfusepy.

:class:`Vfs` is assembled from one module per kind of operation:
- :mod:`rhfs.vfs.lookups`: the state, path resolution, entries from the metadata cache;
- :mod:`rhfs.vfs.file_ops`: open, create, read, write, flush, release, copies;
- :mod:`rhfs.vfs.namespace`: mkdir, rmdir, unlink, rename, links, modes and times;
- this module: attributes, listings (with the kernel's directory cache), links, xattrs.
The tables of open handles and files are :mod:`rhfs.vfs.handles`.

Lock order: the handle table's lock (:class:`~rhfs.vfs.handles.OpenTable`) is never
held during a backend call; ``OpenFile.lock`` may be held during one.
"""

from __future__ import annotations

import dataclasses

from rhfs.backends.base import Entry
from rhfs.errors import BadHandle, InvalidArgument, NoAttribute, NotFound
from rhfs.vfs.attrs import Attr, attr_of, dir_attr
from rhfs.vfs.copies import Copier, SameSystemCopier
from rhfs.vfs.file_ops import FileOps
from rhfs.vfs.handles import Handle, Opened
from rhfs.vfs.namespace import NamespaceOps
from rhfs.vfs.tree import Location, normalize

__all__ = ["Copier", "Handle", "Opened", "SameSystemCopier", "Vfs"]

XATTR_URL = "user.rhfs.url"
XATTR_ETAG = "user.rhfs.etag"


class Vfs(FileOps, NamespaceOps):
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
        loc = self.resolve(path)
        if loc.synthetic or loc.is_system_root:
            return dir_attr(mode=0o555 if loc.synthetic else self._root_mode(loc))
        read_only = self.read_only or loc.backend.kind == "control"  # type: ignore[union-attr]
        try:
            return attr_of(self.entry(loc), read_only)
        except NotFound:
            if handle is None or handle.entry is None or handle.location.path != path:
                raise
            return dataclasses.replace(attr_of(handle.entry, read_only), nlink=0)  # outlived its name

    def _root_mode(self, loc: Location) -> int:
        """here/ shows its root's own mode: with allow_other, a private home stays private."""
        if loc.backend is not None and loc.backend.kind == "here":
            mode = loc.backend.stat("").mode
            if mode is not None:
                return mode
        return 0o755

    def readdir(self, path: str) -> list[tuple[str, Attr]]:
        path = normalize(path)
        loc = self.resolve(path)
        here = dir_attr()
        if loc.backend is None:
            self._listed.put(path, (None, ()))
            return [(".", here), ("..", here)] + [(name, dir_attr()) for name in loc.children]
        entries = self.cache.get_listing(path)
        if entries is None:
            entries = self._list(loc)
            self.cache.put_listing(path, entries)
        last = self._readdir_out.get(path)
        if last is not None and last[0] is entries and not self.handles.pending_names(path):
            return last[1]  # the same list again: the adapter converts it once
        read_only = self.read_only or loc.backend.kind == "control"
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
        if loc.backend is None:
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
