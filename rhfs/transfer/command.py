"""``rhfs cp SRC DST [-r]``: the mount's copy planner, run in the calling process.

SRC and DST are URLs (``s3://bucket/key``, ``CLUSTER:path``, ``rhfs://<tree
path>``), paths inside a live rhfs mount (copied by this process, not through
the mount), or any other local path (the ``here`` routes). As with ``cp``:
a DST that is an existing directory receives SRC under its own name, and a
directory SRC needs ``-r``.

Each file goes to :meth:`Planner.copy`; a file no route can take (a write into a
table, which the view must check) is streamed through the tree instead, as the
kernel would. Files of a tree are copied a few at a time, with a byte progress bar
on a terminal. One failed file does not stop the others; the result says which failed.
"""

from __future__ import annotations

import os
import posixpath
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from rhfs import mountpoint as mp
from rhfs.backends.base import Entry
from rhfs.backends.guard import Guarded
from rhfs.backends.local import LocalBackend
from rhfs.config import Config
from rhfs.errors import AlreadyExists, CantCopy, IsADirectory, NotFound, RhfsError
from rhfs.transfer.planner import Planner
from rhfs.vfs.core import Vfs
from rhfs.vfs.tree import Location

FILES_IN_FLIGHT = 4
STREAM_CHUNK = 8 << 20


@dataclass(frozen=True)
class Endpoint:
    """One side of a copy: a place in the tree, or a local path outside it."""

    loc: Location
    tree: str | None  # the tree path, for the streamed fallback; None for a local path

    def child(self, vfs: Vfs, name: str) -> Endpoint:
        if self.tree is not None:
            tree = posixpath.join(self.tree, name)
            return Endpoint(vfs.resolve(tree), tree)
        path = posixpath.join(self.loc.path, name)
        return Endpoint(Location(path=path, backend=self.loc.backend, rel=path.lstrip("/")), None)

    def stat(self) -> Entry | None:
        assert self.loc.backend is not None
        try:
            return self.loc.backend.stat(self.loc.rel) if self.loc.rel else Entry(name="", is_dir=True)
        except NotFound:
            return None


@dataclass
class Result:
    files: int = 0
    bytes: int = 0
    routes: dict[str, int] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)


def endpoint(vfs: Vfs, arg: str, config: Config, tree_path: Callable[[str, Config], str]) -> Endpoint:
    """Where ``arg`` points: a URL or ``CLUSTER:path``, a path in a live mount, or a local path."""
    head = arg.partition(":")[0]
    if "://" in arg or (":" in arg and head in config.clusters):
        tree = tree_path(arg, config)
        return Endpoint(vfs.resolve(tree), tree)
    local = os.path.abspath(os.path.expanduser(arg))
    for mount in mp.rhfs_mounts():
        if local == mount or local.startswith(mount.rstrip("/") + "/"):
            rel = os.path.relpath(local, mount)
            tree = "/" if rel == "." else "/" + rel
            return Endpoint(vfs.resolve(tree), tree)
    here = Guarded(LocalBackend("/", system="here"), vfs.stats, op_timeout=config.mount.op_timeout)
    return Endpoint(Location(path=local, backend=here, rel=local.lstrip("/")), None)


class CopyCommand:
    def __init__(self, vfs: Vfs, *, progress: Any = None) -> None:
        self.vfs = vfs
        self.planner = vfs.copier
        self.progress = progress
        self.result = Result()
        self._lock = threading.Lock()

    def run(self, src: Endpoint, dst: Endpoint, *, recursive: bool) -> Result:
        entry = src.stat()
        if entry is None:
            raise NotFound(src.loc.path)
        target = dst.stat()
        if target is not None and target.is_dir:
            dst = dst.child(self.vfs, posixpath.basename(src.loc.path.rstrip("/")))
        if not entry.is_dir:
            if self.progress is not None:
                self.progress.total = entry.size
            self._one(src, dst, entry)
            return self.result
        if not recursive:
            raise IsADirectory(f"{src.loc.path} is a directory (use -r)")
        files: list[tuple[Endpoint, Endpoint, Entry]] = []
        self._mkdirs(dst)
        self._walk(src, dst, files)
        if self.progress is not None:
            self.progress.total = sum(e.size for _, _, e in files)
        with ThreadPoolExecutor(FILES_IN_FLIGHT, thread_name_prefix="rhfs-cp") as pool:
            list(pool.map(lambda job: self._one(*job), files))
        return self.result

    def _walk(self, src: Endpoint, dst: Endpoint, files: list[tuple[Endpoint, Endpoint, Entry]]) -> None:
        self._mkdir(dst)
        assert src.loc.backend is not None
        for entry in src.loc.backend.list(src.loc.rel):
            s, d = src.child(self.vfs, entry.name), dst.child(self.vfs, entry.name)
            if entry.is_dir:
                self._walk(s, d, files)
            elif entry.link_target is None:
                files.append((s, d, entry))

    def _mkdirs(self, dst: Endpoint) -> None:
        """The target's missing parents, as ``mkdir -p`` (a prefix, on a store, needs no parent)."""
        if dst.tree is None:
            os.makedirs(os.path.dirname(dst.loc.path), exist_ok=True)
            return
        parents: list[str] = []
        parent = posixpath.dirname(dst.tree)
        while parent not in ("/", "") and self._missing(parent):
            parents.append(parent)
            parent = posixpath.dirname(parent)
        for path in reversed(parents):
            self._mkdir(Endpoint(self.vfs.resolve(path), path))

    def _missing(self, tree: str) -> bool:
        try:
            self.vfs.getattr(tree)
        except NotFound:
            return True
        return False

    def _mkdir(self, dst: Endpoint) -> None:
        try:
            if dst.tree is not None:
                self.vfs.mkdir(dst.tree)
            else:
                os.makedirs(dst.loc.path, exist_ok=True)
        except AlreadyExists:
            pass

    def _one(self, src: Endpoint, dst: Endpoint, entry: Entry) -> None:
        try:
            route = self._copy(src, dst, entry)
        except (RhfsError, OSError) as e:
            with self._lock:
                self.result.failed.append(f"{src.loc.path} -> {dst.loc.path}: {e}")
            return
        with self._lock:
            self.result.files += 1
            self.result.bytes += entry.size
            self.result.routes[route] = self.result.routes.get(route, 0) + 1
        if self.progress is not None:
            self.progress.update(entry.size)

    def _copy(self, src: Endpoint, dst: Endpoint, entry: Entry) -> str:
        if entry.size > 0 and isinstance(self.planner, Planner):
            try:
                return self.planner.copy(src.loc, dst.loc, entry)
            except CantCopy:
                pass  # no route can take it: stream it through the tree, as the kernel would
        self._stream(src, dst, entry)
        route = "stream" if entry.size else "empty"
        self.vfs.stats.add_copy(route, entry.size)
        return route

    def _stream(self, src: Endpoint, dst: Endpoint, entry: Entry) -> None:
        assert src.loc.backend is not None
        reader = src.loc.backend.open_reader(src.loc.rel, entry)
        try:
            if dst.tree is None:
                with open(dst.loc.path, "wb") as out:
                    for offset in range(0, entry.size, STREAM_CHUNK):
                        out.write(reader.read(offset, STREAM_CHUNK))
                return
            opened = self.vfs.create(dst.tree, 0o644, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            try:
                for offset in range(0, entry.size, STREAM_CHUNK):
                    self.vfs.write(opened.fh, reader.read(offset, STREAM_CHUNK), offset)
                self.vfs.flush(opened.fh)
            finally:
                self.vfs.release(opened.fh)
        finally:
            reader.close()


def run_cp(
    config: Config,
    src: str,
    dst: str,
    *,
    recursive: bool,
    tree_path: Callable[[str, Config], str],
    progress: bool = True,
) -> Result:
    """Copy ``src`` to ``dst`` as ``rhfs cp`` does; the result lists routes and failures."""
    from tqdm import tqdm

    from rhfs.wiring import build_vfs

    vfs = build_vfs(config)
    source, target = endpoint(vfs, src, config, tree_path), endpoint(vfs, dst, config, tree_path)
    with tqdm(total=None, unit="B", unit_scale=True, disable=None if progress else True, leave=False) as bar:
        return CopyCommand(vfs, progress=bar).run(source, target, recursive=recursive)
