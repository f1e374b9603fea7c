"""``rh.folder``: a directory on any system, copied, moved, mounted, and read or written file by file.

- ``to`` is one tree job over the tree's copy planner (each file takes the route a ``cp``
  in the mount would), and onto an existing copy only what changed moves.
- ``mv`` is a rename where the system has one for both places (one system, in the tree),
  and otherwise that same copy followed by the removal of the source.
- ``open``, ``get`` and ``put`` read and write the files inside through the same VFS core
  as the mount (``rhfs://``), so the tree sees each write at once.
- ``mount`` gives a local path showing the folder, in a running rhfs mount or a new one
  (:mod:`rhfs.api.mounts`).
"""

from __future__ import annotations

import errno
import io
import pickle
import posixpath
from collections.abc import Mapping
from typing import IO, Any

from rhfs.api.places import address_of, session, system_name
from rhfs.api.resource import BaseResource, entry_at
from rhfs.catalog import Address
from rhfs.errors import AlreadyExists, InvalidArgument, IsADirectory, to_errno
from rhfs.location_io import makedirs, read_bytes, remove_tree, write_bytes
from rhfs.tree import Location

READ_MODES = ("r", "rb")
WRITE_MODES = ("w", "wb")


class _Written:
    """A file open for writing that tells its folder, once closed, what it changed."""

    def __init__(self, file: IO[Any], on_close: Any) -> None:
        self._file, self._on_close = file, on_close

    def __getattr__(self, name: str) -> Any:
        return getattr(self._file, name)

    def __enter__(self) -> _Written:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        try:
            self._file.close()
        finally:
            self._on_close()


def _encoded(name: str, data: Any, mode: str) -> bytes:
    """A ``put`` value as stored: bytes as they are, text as UTF-8 (mode ``"w"``), else pickled."""
    if isinstance(data, bytes | bytearray | memoryview):
        return bytes(data)
    if mode == "w":
        if not isinstance(data, str):
            raise InvalidArgument(f"put in mode 'w' takes text, and {name!r} is {type(data).__name__}")
        return data.encode()
    return pickle.dumps(data, protocol=5)


class Folder(BaseResource):
    kind = "folder"

    def to(self, system: Any, path: str | None = None, *, progress: bool = False) -> Folder:
        """A copy of this folder on ``system`` (at ``path``, or a fresh default path)."""
        return Folder(self._copied_to(system, self._path_on(system, path), progress=progress), self.name)

    def _path_on(self, system: Any, path: str | None) -> str | None:
        name = system_name(system)
        if path is None and name is not None and session().systems.is_cluster(name):
            return posixpath.basename(self.path.rstrip("/"))  # as Runhouse: the folder's own name
        return path

    def mkdir(self) -> Folder:
        loc = self._location()
        makedirs(loc)
        self._changed(loc, subtree=False)
        return self

    def rm(self, contents: list[str] | None = None, recursive: bool = True) -> None:
        """Delete the folder (and its catalog entry, if it names this place), or only the
        ``contents`` named inside it. ``recursive=False`` deletes the files inside and keeps
        the folder (as Runhouse): a directory in the way is ``IsADirectory``, found before
        anything is deleted."""
        loc = self._location()
        if contents is None and recursive:
            super().rm()
            return
        names = contents if contents is not None else [e.name for e in loc.backend.list(loc.rel)]
        found = {name: entry for name in names if (entry := entry_at(loc.child(name))) is not None}
        if not recursive:
            directories = sorted(name for name, entry in found.items() if entry.is_dir)
            if directories:
                raise IsADirectory(
                    f"{', '.join(directories)} in {self.url}: directories, and recursive is False"
                )
        for name in found:
            remove_tree(loc.child(name))
        self._changed(loc)

    # -- moving ---------------------------------------------------------------------------
    def mv(self, system: Any, path: str | None = None, overwrite: bool = True) -> None:
        """Move the folder to ``path`` on ``system``; this object then names the new place,
        and so does its catalog entry if that named the old one."""
        s = session()
        dst = address_of(system, self._path_on(system, path), self.kind, self.name)
        if dst == self.address:
            return
        src_loc, dst_loc = self._location(), s.systems.locate(dst)
        there = entry_at(dst_loc) is not None
        if there and not overwrite:
            raise AlreadyExists(f"{s.systems.url(dst)} already exists, and overwrite is False")
        if there or not self._renamed(src_loc, dst_loc):
            self._copy_to(dst)
            remove_tree(src_loc)
        self._changed(src_loc)
        self._changed(dst_loc)
        self._moved_to(dst)

    @staticmethod
    def _renamed(src: Location, dst: Location) -> bool:
        """Rename ``src`` to ``dst`` where one system holds both; False where it cannot."""
        if not (src.in_tree and dst.in_tree and src.mount == dst.mount):
            return False
        vfs = session().vfs
        makedirs(dst.parent)
        try:
            vfs.rename(src.path, dst.path)
        except Exception as e:
            if to_errno(e) in (errno.EXDEV, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS):
                return False
            raise
        return True

    def _moved_to(self, dst: Address) -> None:
        s = session()
        old = self.address
        self.address = dst
        if self.name:
            found = s.catalog.find(self.kind, self.name, fresh=True)
            if found is not None and found.address == old:
                self.save()

    # -- the files inside -----------------------------------------------------------------
    def open(self, name: str, mode: str = "rb", encoding: str | None = None) -> Any:
        """The file ``name`` inside the folder, open for reading or writing (a file object,
        and a context manager); a write is uploaded when the file is closed."""
        if mode not in READ_MODES + WRITE_MODES:
            raise InvalidArgument(f"open takes mode {', '.join(READ_MODES + WRITE_MODES)}, not {mode!r}")
        loc = self._location().child(name)
        if mode in WRITE_MODES:
            makedirs(loc.parent)
        if loc.in_tree:
            file = session().fs.open(loc.path.lstrip("/"), mode, encoding=encoding)
        else:
            file = open(loc.path, mode, encoding=encoding)  # noqa: SIM115  (the caller closes it)
        if mode in READ_MODES:
            return file
        return _Written(file, lambda: self._changed(loc, subtree=False))

    def get(self, name: str, mode: str = "rb", encoding: str | None = None) -> Any:
        """The content of the file ``name`` inside the folder: bytes, or text in mode ``"r"``."""
        if mode not in READ_MODES:
            raise InvalidArgument(f"get takes mode 'r' or 'rb', not {mode!r}")
        data = read_bytes(self._location().child(name))
        return data if mode == "rb" else io.TextIOWrapper(io.BytesIO(data), encoding=encoding).read()

    def put(self, contents: Mapping[str, Any], overwrite: bool = False, mode: str = "wb") -> None:
        """Write each ``{name: data}`` as a file inside the folder (made if missing): bytes as
        they are, text as UTF-8 in mode ``"w"``, anything else pickled. Without ``overwrite``,
        nothing is written if any of the names is already there."""
        if not isinstance(contents, Mapping):
            raise TypeError("put takes a dict mapping file names to their contents")
        if mode not in WRITE_MODES:
            raise InvalidArgument(f"put takes mode 'w' or 'wb', not {mode!r}")
        loc = self._location()
        encoded = {name: _encoded(name, data, mode) for name, data in contents.items()}
        if not overwrite:
            there = sorted(name for name in encoded if entry_at(loc.child(name)) is not None)
            if there:
                raise AlreadyExists(f"{', '.join(there)} already in {self.url}, and overwrite is False")
        makedirs(loc)
        for name, data in encoded.items():
            target = loc.child(name)
            makedirs(target.parent)
            write_bytes(target, data)
        self._changed(loc)

    def mount(self, path: str | None = None) -> str:
        """A local path showing this folder: in a running rhfs mount of this config, or in one
        started at ``path`` (default: a mount point of its own under the runtime directory)."""
        from rhfs.api.mounts import local_path_of

        return local_path_of(self._location(), path)
