"""An in-memory backend with POSIX answers, for fast unit tests.

It never replaces the real servers in the test suite: it exists so that the VFS
core can be tested without FUSE, sockets or disks. It passes the same contract
suite as the real backends (``tests/test_backend_contract.py``).

State: ``files`` (path -> bytes), ``dirs`` (paths, ``""`` is the root), ``mtimes``,
and ``calls``, a log of the stat/list/upload/copy requests tests may count.
Every write gets a new etag. One lock guards all state.
"""

from __future__ import annotations

import itertools
import posixpath
import threading
import time

from rhfs.backends.base import Abilities, BytesReader, Entry, Traits, check_name
from rhfs.errors import (
    AlreadyExists,
    DirectoryNotEmpty,
    InvalidArgument,
    IsADirectory,
    NotADirectory,
    NotFound,
)

IMITATED = {  # the traits a memory backend takes on to stand in for a real system in tests
    "here": Traits(family="here", open_survives_unlink=True),
    "store": Traits(family="store", remote=True, versioned_objects=True, implicit_directories=True),
}


class MemoryBackend:
    def __init__(self, system: str = "mem", imitates: str = "here") -> None:
        self.system = system
        self.traits = IMITATED[imitates]
        self.abilities = Abilities(copy_within=self.copy_within)
        self.files: dict[str, bytes] = {}
        self.dirs: set[str] = {""}
        self.mtimes: dict[str, float] = {}
        self.etags: dict[str, str] = {}
        self.calls: list[str] = []
        self._lock = threading.RLock()
        self._versions = itertools.count(1)

    # -- helpers (called with the lock held) ---------------------------------------------
    @staticmethod
    def _check(path: str) -> str:
        if path:
            check_name(path)
        return path

    def _need_dir(self, path: str) -> None:
        if path in self.files:
            raise NotADirectory(path)
        if path not in self.dirs:
            raise NotFound(path)

    def _children(self, path: str) -> list[str]:
        return sorted(p for p in [*self.files, *self.dirs] if p and posixpath.dirname(p) == path)

    def _touch(self, path: str) -> None:
        self.mtimes[path] = time.time()
        self.etags[path] = f"v{next(self._versions)}"

    def _entry(self, path: str) -> Entry:
        name = posixpath.basename(path)
        if path in self.dirs:
            return Entry(name=name, is_dir=True, mtime=self.mtimes.get(path, 0.0))
        if path in self.files:
            data = self.files[path]
            return Entry(
                name=name,
                is_dir=False,
                size=len(data),
                mtime=self.mtimes.get(path, 0.0),
                etag=self.etags.get(path) or f"{hash(data) & 0xFFFFFFFF:x}",
            )
        raise NotFound(path)

    # -- the Backend protocol -------------------------------------------------------------
    def stat(self, path: str) -> Entry:
        self.calls.append(f"stat {path}")
        with self._lock:
            return self._entry(self._check(path))

    def list(self, path: str) -> list[Entry]:
        self.calls.append(f"list {path}")
        with self._lock:
            self._need_dir(self._check(path))
            return [self._entry(p) for p in self._children(path)]

    def open_reader(self, path: str, entry: Entry) -> BytesReader:
        with self._lock:
            if self._check(path) in self.dirs:
                raise IsADirectory(path)
            if path not in self.files:
                raise NotFound(path)
            return BytesReader(self.files[path])

    def upload(self, local_path: str, path: str) -> None:
        self.calls.append(f"upload {path}")
        self._check(path)
        with open(local_path, "rb") as f:
            data = f.read()
        with self._lock:
            self._need_dir(posixpath.dirname(path))
            if path in self.dirs:
                raise IsADirectory(path)
            self.files[path] = data
            self._touch(path)

    def remove(self, path: str) -> None:
        with self._lock:
            if self._check(path) in self.dirs:
                raise IsADirectory(path)
            if path not in self.files:
                raise NotFound(path)
            del self.files[path]
            self.mtimes.pop(path, None)
            self.etags.pop(path, None)

    def mkdir(self, path: str) -> None:
        with self._lock:
            if self._check(path) in self.files or path in self.dirs:
                raise AlreadyExists(path)
            self._need_dir(posixpath.dirname(path))
            self.dirs.add(path)
            self.mtimes[path] = time.time()

    def rmdir(self, path: str) -> None:
        with self._lock:
            self._need_dir(self._check(path))
            if not path:
                raise InvalidArgument("the root cannot be removed")
            if self._children(path):
                raise DirectoryNotEmpty(path)
            self.dirs.discard(path)

    def rename(self, src: str, dst: str) -> None:
        with self._lock:
            self._check(src)
            self._check(dst)
            if src not in self.files and src not in self.dirs:
                raise NotFound(src)
            if src == dst:
                return
            if src in self.dirs and (dst + "/").startswith(src + "/"):
                raise InvalidArgument(f"cannot move {src} into itself")
            self._need_dir(posixpath.dirname(dst))
            if src in self.files:
                if dst in self.dirs:
                    raise IsADirectory(dst)
                self.files[dst] = self.files.pop(src)
                self.mtimes[dst] = self.mtimes.pop(src, 0.0)
                self.etags[dst] = self.etags.pop(src, "")
                return
            if dst in self.files:
                raise NotADirectory(dst)
            if dst in self.dirs:
                if self._children(dst):
                    raise DirectoryNotEmpty(dst)
                self.dirs.discard(dst)
            prefix = src + "/"
            for p in [p for p in self.files if p.startswith(prefix)]:
                moved = dst + p[len(src) :]
                self.files[moved] = self.files.pop(p)
                self.mtimes[moved] = self.mtimes.pop(p, 0.0)
                self.etags[moved] = self.etags.pop(p, "")
            for d in [d for d in self.dirs if d == src or d.startswith(prefix)]:
                self.dirs.discard(d)
                self.dirs.add(dst + d[len(src) :])

    def url(self, path: str) -> str:
        return f"memory://{self.system}/{path}"

    def copy_within(self, src: str, dst: str) -> None:
        self.calls.append(f"copy {src} {dst}")
        with self._lock:
            self._check(src)
            self._check(dst)
            if src in self.dirs or dst in self.dirs:
                raise IsADirectory(src if src in self.dirs else dst)
            if src not in self.files:
                raise NotFound(src)
            self._need_dir(posixpath.dirname(dst))
            self.files[dst] = self.files[src]
            self._touch(dst)
