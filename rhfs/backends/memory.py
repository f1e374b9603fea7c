"""An in-memory backend with object-store or POSIX behaviour, for fast unit tests.

It never replaces the real servers in the test suite: it exists so that the VFS
core can be tested without FUSE, sockets or disks.
"""

from __future__ import annotations

import posixpath
import threading
import time

from rhfs.backends.base import Entry, check_name
from rhfs.errors import AlreadyExists, DirectoryNotEmpty, IsADirectory, NotADirectory, NotFound


class MemoryReader:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def read(self, offset: int, size: int) -> bytes:
        return self.data[offset : offset + size]

    def close(self) -> None:
        pass


class MemoryBackend:
    def __init__(self, system: str = "mem", kind: str = "here") -> None:
        self.system, self.kind = system, kind
        self.files: dict[str, bytes] = {}
        self.dirs: set[str] = {""}
        self.mtimes: dict[str, float] = {}
        self.calls: list[str] = []
        self._lock = threading.Lock()
        self._version = 0

    def _need_dir(self, path: str) -> None:
        if path in self.files:
            raise NotADirectory(path)
        if path not in self.dirs:
            raise NotFound(path)

    def stat(self, path: str) -> Entry:
        self.calls.append(f"stat {path}")
        if path:
            check_name(path)
        with self._lock:
            if path in self.dirs:
                return Entry(name=posixpath.basename(path), is_dir=True, mtime=self.mtimes.get(path, 0.0))
            if path in self.files:
                data = self.files[path]
                return Entry(
                    name=posixpath.basename(path),
                    is_dir=False,
                    size=len(data),
                    mtime=self.mtimes[path],
                    etag=f"{hash(data) & 0xFFFFFFFF:x}-{self.mtimes[path]}",
                )
        raise NotFound(path)

    def list(self, path: str) -> list[Entry]:
        self.calls.append(f"list {path}")
        with self._lock:
            self._need_dir(path)
            names = {p for p in list(self.files) + list(self.dirs) if p and posixpath.dirname(p) == path}
        return [self.stat(n) for n in sorted(names)]

    def open_reader(self, path: str, entry: Entry) -> MemoryReader:
        with self._lock:
            if path not in self.files:
                raise NotFound(path)
            return MemoryReader(self.files[path])

    def upload(self, local_path: str, path: str) -> None:
        self.calls.append(f"upload {path}")
        check_name(path)
        with open(local_path, "rb") as f:
            data = f.read()
        with self._lock:
            self._need_dir(posixpath.dirname(path))
            if path in self.dirs:
                raise IsADirectory(path)
            self.files[path] = data
            self._version += 1
            self.mtimes[path] = time.time() + self._version * 1e-6

    def remove(self, path: str) -> None:
        with self._lock:
            if path in self.dirs:
                raise IsADirectory(path)
            if path not in self.files:
                raise NotFound(path)
            del self.files[path]

    def mkdir(self, path: str) -> None:
        check_name(path)
        with self._lock:
            if path in self.files or path in self.dirs:
                raise AlreadyExists(path)
            self._need_dir(posixpath.dirname(path))
            self.dirs.add(path)
            self.mtimes[path] = time.time()

    def rmdir(self, path: str) -> None:
        with self._lock:
            self._need_dir(path)
            if any(posixpath.dirname(p) == path for p in list(self.files) + list(self.dirs) if p):
                raise DirectoryNotEmpty(path)
            self.dirs.discard(path)

    def rename(self, src: str, dst: str) -> None:
        with self._lock:
            if src in self.files:
                if dst in self.dirs:
                    raise IsADirectory(dst)
                self.files[dst] = self.files.pop(src)
                self.mtimes[dst] = self.mtimes.get(src, 0.0)
                return
            if src not in self.dirs:
                raise NotFound(src)
            if dst in self.files:
                raise NotADirectory(dst)
            if dst in self.dirs and any(
                posixpath.dirname(p) == dst for p in list(self.files) + list(self.dirs)
            ):
                raise DirectoryNotEmpty(dst)
            prefix = src + "/"
            for p in [p for p in self.files if p.startswith(prefix)]:
                self.files[dst + p[len(src) :]] = self.files.pop(p)
                self.mtimes[dst + p[len(src) :]] = self.mtimes.pop(p, 0.0)
            for d in [d for d in self.dirs if d == src or d.startswith(prefix)]:
                self.dirs.discard(d)
                self.dirs.add(dst + d[len(src) :])

    def url(self, path: str) -> str:
        return f"memory://{self.system}/{path}"

    def copy_within(self, src: str, dst: str) -> None:
        self.calls.append(f"copy {src} {dst}")
        with self._lock:
            if src not in self.files:
                raise NotFound(src)
            self.files[dst] = self.files[src]
            self.mtimes[dst] = time.time()
