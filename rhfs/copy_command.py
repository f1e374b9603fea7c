"""``rhfs cp SRC DST [-r]``: a face of the core, as the mount is: the same VFS and the
same copy planner (:class:`~rhfs.wiring.Core`), run in the calling process.

SRC and DST are URLs (``s3://bucket/key``, ``CLUSTER:path``, ``rhfs://<tree
path>``), paths inside a live rhfs mount (copied by this process, not through
the mount), or any other local path (the ``here`` routes; a :class:`~rhfs.tree.Location`
outside the tree, on the ``file`` system). As with ``cp``:
a DST that is an existing directory receives SRC under its own name, and a
directory SRC needs ``-r``.

Each file goes to :meth:`Planner.copy_or_relay`; a file no route can take (a write
into a table, which the view must check) is relayed between the view's own locations.
An empty file is made directly. Files of a tree are copied a few at a time, with a byte
progress bar on a terminal. One failed file does not stop the others; the result says
which failed.
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
from rhfs.config import Config
from rhfs.errors import AlreadyExists, IsADirectory, NotFound, RhfsError
from rhfs.tree import Location
from rhfs.wiring import Core, build_core

FILES_IN_FLIGHT = 4


def stat_or_none(loc: Location) -> Entry | None:
    try:
        return loc.backend.stat(loc.rel) if loc.rel else Entry(name="", is_dir=True)
    except NotFound:
        return None


@dataclass
class Result:
    files: int = 0
    bytes: int = 0
    routes: dict[str, int] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)


def endpoint(core: Core, arg: str, tree_path: Callable[[str, Config], str]) -> Location:
    """Where ``arg`` points: a URL or ``CLUSTER:path``, a path in a live mount, or a local path."""
    head = arg.partition(":")[0]
    if "://" in arg or (":" in arg and head in core.config.clusters):
        return core.vfs.locate(tree_path(arg, core.config))
    local = os.path.abspath(os.path.expanduser(arg))
    for mount in mp.rhfs_mounts():
        if local == mount or local.startswith(mount.rstrip("/") + "/"):
            rel = os.path.relpath(local, mount)
            return core.vfs.locate("/" if rel == "." else "/" + rel)
    return core.systems.outside_tree(local)


class CopyCommand:
    def __init__(self, core: Core, *, progress: Any = None) -> None:
        self.vfs = core.vfs
        self.planner = core.planner
        self.progress = progress
        self.result = Result()
        self._lock = threading.Lock()

    def run(self, src: Location, dst: Location, *, recursive: bool) -> Result:
        entry = stat_or_none(src)
        if entry is None:
            raise NotFound(src.path)
        target = stat_or_none(dst)
        if target is not None and target.is_dir:
            dst = dst.child(posixpath.basename(src.path.rstrip("/")))
        if not entry.is_dir:
            if self.progress is not None:
                self.progress.total = entry.size
            self._one(src, dst, entry)
            return self.result
        if not recursive:
            raise IsADirectory(f"{src.path} is a directory (use -r)")
        files: list[tuple[Location, Location, Entry]] = []
        self._mkdirs(dst)
        self._walk(src, dst, files)
        if self.progress is not None:
            self.progress.total = sum(e.size for _, _, e in files)
        with ThreadPoolExecutor(FILES_IN_FLIGHT, thread_name_prefix="rhfs-cp") as pool:
            list(pool.map(lambda job: self._one(*job), files))
        return self.result

    def _walk(self, src: Location, dst: Location, files: list[tuple[Location, Location, Entry]]) -> None:
        self._mkdir(dst)
        for entry in src.backend.list(src.rel):
            s, d = src.child(entry.name), dst.child(entry.name)
            if entry.is_dir:
                self._walk(s, d, files)
            elif entry.link_target is None:
                files.append((s, d, entry))

    def _mkdirs(self, dst: Location) -> None:
        """The target's missing parents, as ``mkdir -p`` (a prefix, on a store, needs no parent)."""
        if not dst.in_tree:
            os.makedirs(os.path.dirname(dst.path), exist_ok=True)
            return
        parents: list[str] = []
        parent = posixpath.dirname(dst.path)
        while parent not in ("/", "") and self._missing(parent):
            parents.append(parent)
            parent = posixpath.dirname(parent)
        for path in reversed(parents):
            self._mkdir(self.vfs.locate(path))

    def _missing(self, tree: str) -> bool:
        try:
            self.vfs.getattr(tree)
        except NotFound:
            return True
        return False

    def _mkdir(self, dst: Location) -> None:
        try:
            if dst.in_tree:
                self.vfs.mkdir(dst.path)
            else:
                os.makedirs(dst.path, exist_ok=True)
        except AlreadyExists:
            pass

    def _one(self, src: Location, dst: Location, entry: Entry) -> None:
        try:
            route = self._copy(src, dst, entry)
        except (RhfsError, OSError) as e:
            with self._lock:
                self.result.failed.append(f"{src.path} -> {dst.path}: {e}")
            return
        with self._lock:
            self.result.files += 1
            self.result.bytes += entry.size
            self.result.routes[route] = self.result.routes.get(route, 0) + 1
        if self.progress is not None:
            self.progress.update(entry.size)

    def _copy(self, src: Location, dst: Location, entry: Entry) -> str:
        if entry.size > 0:
            return self.planner.copy_or_relay(src, dst, entry)
        self._make_empty(dst)
        self.vfs.stats.add_copy("empty", 0)
        return "empty"

    def _make_empty(self, dst: Location) -> None:
        if not dst.in_tree:
            with open(dst.path, "wb"):
                return
        opened = self.vfs.create(dst.path, 0o644, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        try:
            self.vfs.flush(opened.fh)
        finally:
            self.vfs.release(opened.fh)


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

    core = build_core(config)
    source, target = endpoint(core, src, tree_path), endpoint(core, dst, tree_path)
    with tqdm(total=None, unit="B", unit_scale=True, disable=None if progress else True, leave=False) as bar:
        return CopyCommand(core, progress=bar).run(source, target, recursive=recursive)
