"""Fixtures for the backend contract suite: every backend, each test in a fresh directory.

- ``raw_backend(name, tmp_path, request)`` builds an unguarded backend: ``memory``
  and ``here`` need nothing; ``s3``, ``gs``, ``azure`` and ``cluster-a`` are built
  from the session ``testbed``'s config with :mod:`rhfs.wiring`, as the mount does.
- ``Place`` is one test's fresh directory on one backend, with small helpers that
  speak the Backend protocol only (no fsspec, no mount).
"""

from __future__ import annotations

import errno
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from rhfs.backends.base import Backend, Entry
from rhfs.backends.guard import Guarded
from rhfs.backends.local import LocalBackend
from rhfs.backends.memory import MemoryBackend
from rhfs.backends.store import StoreBackend
from rhfs.config import load_file
from rhfs.errors import to_errno
from rhfs.stats import Stats
from rhfs.wiring import make_cluster, make_store

BACKENDS = ("memory", "here", "fsspec-memory", "s3", "gs", "azure", "cluster-a")
STORES = ("s3", "gs", "azure")
REMOTE = ("s3", "gs", "azure", "cluster-a")
BUCKET = "rhfs-test"

_remote_cache: dict[tuple[str, str], Backend] = {}


def remote_backend(testbed: Any, name: str) -> Backend:
    """One backend per testbed and system, shared by the session (connections are kept)."""
    key = (str(testbed.config_path), name)
    if key not in _remote_cache:
        config = load_file(str(testbed.config_path))
        _remote_cache[key] = make_store(config, name) if name in STORES else make_cluster(config, name)
    return _remote_cache[key]


def raw_backend(name: str, tmp_path: Path, request: pytest.FixtureRequest) -> tuple[Backend, str]:
    """(backend, base) where ``base`` is the directory tests may create things in."""
    if name == "memory":
        return MemoryBackend(system="memory"), ""
    if name == "here":
        root = tmp_path / "here-root"
        root.mkdir()
        return LocalBackend(str(root)), ""
    if name == "fsspec-memory":  # a store over fsspec's in-process memory filesystem (generic adapter)
        bucket = f"mem-{uuid.uuid4().hex[:8]}"
        store = StoreBackend("fsspec-memory", "memory", {}, (bucket,))
        store.api.fs.mkdir(bucket)  # type: ignore[attr-defined]
        return store, bucket
    testbed = request.getfixturevalue("testbed")
    backend = remote_backend(testbed, name)
    return backend, (f"{BUCKET}" if name in STORES else "")


@dataclass
class Place:
    """A fresh directory ``root`` on ``backend`` for one test."""

    name: str
    backend: Backend
    root: str
    tmp: Path

    def p(self, *parts: str) -> str:
        return "/".join([self.root, *parts]) if self.root else "/".join(parts)

    def put(self, rel: str, data: bytes) -> str:
        local = self.tmp / f"upload-{uuid.uuid4().hex}"
        local.write_bytes(data)
        path = self.p(rel)
        self.backend.upload(str(local), path)
        local.unlink()
        return path

    def read(self, rel: str, offset: int = 0, size: int | None = None) -> bytes:
        path = self.p(rel)
        entry = self.backend.stat(path)
        reader = self.backend.open_reader(path, entry)
        try:
            return reader.read(offset, entry.size + 1 if size is None else size)
        finally:
            reader.close()

    def stat(self, rel: str) -> Entry:
        return self.backend.stat(self.p(rel))

    def names(self, rel: str = "") -> list[str]:
        return sorted(e.name for e in self.backend.list(self.p(rel) if rel else self.root))

    def entries(self, rel: str = "") -> dict[str, Entry]:
        return {e.name: e for e in self.backend.list(self.p(rel) if rel else self.root)}

    def mkdir(self, rel: str) -> str:
        path = self.p(rel)
        self.backend.mkdir(path)
        return path


def errno_of(fn: Callable[..., Any], *args: Any) -> int:
    """The errno ``fn(*args)`` fails with (via the one table, :func:`rhfs.errors.to_errno`)."""
    try:
        fn(*args)
    except Exception as e:
        return to_errno(e)
    raise AssertionError(f"{getattr(fn, '__name__', fn)}{args} did not fail")


def remove_tree(backend: Backend, path: str) -> None:
    """Best-effort cleanup through the protocol itself."""
    try:
        entries = backend.list(path)
    except Exception:
        return
    for e in entries:
        child = f"{path}/{e.name}"
        if e.is_dir:
            remove_tree(backend, child)
        else:
            try:
                backend.remove(child)
            except Exception:
                pass
    try:
        backend.rmdir(path)
    except Exception:
        pass


def make_place(name: str, guarded: bool, tmp_path: Path, request: pytest.FixtureRequest) -> Place:
    raw, base = raw_backend(name, tmp_path, request)
    backend: Backend = Guarded(raw, Stats(), op_timeout=120.0) if guarded else raw
    root = "/".join(p for p in (base, f"c-{uuid.uuid4().hex[:10]}") if p)
    backend.mkdir(root)
    request.addfinalizer(lambda: remove_tree(raw, root))
    if isinstance(backend, Guarded):
        request.addfinalizer(backend.close)
    return Place(name, backend, root, tmp_path)


ENOENT, EEXIST, ENOTDIR, EISDIR = errno.ENOENT, errno.EEXIST, errno.ENOTDIR, errno.EISDIR
ENOTEMPTY, EINVAL, ENAMETOOLONG = errno.ENOTEMPTY, errno.EINVAL, errno.ENAMETOOLONG
PATTERN = bytes(range(256)) * 4  # 1024 bytes, every offset distinguishable in four places


def payload(size: int) -> bytes:
    return (os.urandom(64) * (size // 64 + 1))[:size]
