"""The Runhouse-style Python API: ``rh.folder``, ``rh.table``, ``rh.blob`` and ``rh.cluster``.

A resource is a place (a system and a path, see :mod:`rhfs.views.systems`) and,
once saved, a name in the catalog. Systems are named as in the mount:
``"file"``/``"here"`` (this machine, paths relative to the working directory),
a store name (``"s3"``), a cluster name or :class:`Cluster`, or a path inside an
rhfs mount (``rh.folder("/rh/s3/bucket/x")`` is the folder ``bucket/x`` on ``s3``).

Everything runs over one in-process tree built from the config found the usual
way (``RHFS_CONFIG``, ...; :func:`configure` picks another): the same backends,
views, catalog and copy planner as the mount, with no mount needed. ``.to()``
copies file by file with the tree's copy planner, so each file takes the route a
``cp`` in the mount would (server-side where one exists).

Errors are :mod:`rhfs.errors` exceptions; a name missing from the catalog is
:class:`rhfs.catalog.NotInCatalog`, whose message names the catalog.
"""

from __future__ import annotations

import logging
import os
import pickle
import posixpath
import shlex
import tempfile
import threading
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any, cast

from rhfs.backends.base import Entry
from rhfs.backends.guard import Guarded
from rhfs.catalog import Catalog, Resource
from rhfs.config import Config
from rhfs.errors import CantCopy, InvalidArgument, NotFound, NotSupported
from rhfs.tree import Location, TreeDir
from rhfs.vfs.core import Vfs
from rhfs.views import tabledata
from rhfs.views.systems import (
    LOCAL,
    LOCAL_ALIASES,
    MISSING,
    Place,
    Systems,
    download,
    makedirs,
    read_bytes,
    remove_tree,
)

log = logging.getLogger(__name__)

__all__ = ["Blob", "Cluster", "Folder", "Table", "blob", "cluster", "configure", "folder", "table"]


# -- the session: one tree per process ---------------------------------------------------
@dataclass
class Session:
    config: Config
    vfs: Vfs
    systems: Systems
    catalog: Catalog
    fs: Any  # the rhfs:// filesystem over ``vfs``


_session: Session | None = None
_session_lock = threading.Lock()


def configure(config: str | None = None) -> Session:
    """Build this process's tree from a config file (default: the usual search order)."""
    global _session
    from rhfs.catalog import open_catalog
    from rhfs.fsspec_face import RhfsFileSystem, shared_vfs
    from rhfs.views import view_of

    vfs = shared_vfs(config)
    tables = view_of(vfs.table.mounts["tables"])
    systems: Systems = tables.systems
    catalog = open_catalog(systems, systems.config.catalog.url)  # uncached: the API reads fresh
    fs = RhfsFileSystem(vfs=vfs, skip_instance_cache=True)
    with _session_lock:
        _session = Session(systems.config, vfs, systems, catalog, fs)
        return _session


def session() -> Session:
    return _session or configure()


# -- places ------------------------------------------------------------------------------
def _mount_of(path: str) -> str | None:
    """The rhfs mount point that ``path`` lies in, if any."""
    from rhfs.mountpoint import mount_type

    candidate = path
    while True:
        if mount_type(candidate) == "fuse.rhfs":
            return candidate
        up = os.path.dirname(candidate)
        if up == candidate:
            return None
        candidate = up


def _tree_place(s: Session, tree_path: str) -> Place:
    """The place behind a path of the tree (``/s3/bucket/x``, ``/tables/t``...)."""
    loc = s.vfs.resolve(tree_path)
    if isinstance(loc, TreeDir):
        raise InvalidArgument(f"{tree_path} is a directory of the tree itself, not a place on a system")
    if loc.mount in ("tables", "blobs"):
        name, _, sub = loc.rel.partition("/")
        resource = s.catalog.get(loc.mount[:-1], name)
        return resource.place.child(sub) if sub else resource.place
    if loc.mount == "here":
        return Place(LOCAL, os.path.join(s.config.here.root, loc.rel))
    return Place(s.systems.canonical(loc.backend.system), loc.rel)


def _system_name(system: Any) -> str | None:
    if system is None or isinstance(system, str):
        return system
    if isinstance(system, Cluster):
        return system.name
    raise TypeError(f"system must be a name or a Cluster, not {type(system).__name__}")


def _place(system: Any, path: str | None, kind: str, name: str | None = None) -> Place:
    s = session()
    system_name = _system_name(system)
    if path and (system_name is None or system_name in LOCAL_ALIASES):
        absolute = os.path.abspath(os.path.expanduser(path))
        mountpoint = _mount_of(absolute)
        if mountpoint is not None:
            return _tree_place(s, absolute[len(mountpoint) :] or "/")
    system_name = s.systems.canonical(system_name or LOCAL)
    if path:
        return s.systems.place(system_name, path)
    return _default_place(s, system_name, kind, name)


def _default_place(s: Session, system: str, kind: str, name: str | None) -> Place:
    """Where a resource goes when no path is given (see docs/SEMANTICS.md)."""
    label = uuid.uuid4().hex
    if s.systems.kind(system) == "store":
        return Place(system, f"{s.systems.first_bucket(system)}/{label}")
    if s.systems.kind(system) == "cluster":
        return Place(system, f"rhfs-{kind}s/{label}")
    tables = s.systems.parse_url(s.config.tables.default_url)
    base = tables.path if tables.system == LOCAL else os.path.expanduser("~/.local/share/rhfs/tables")
    directory = base if kind == "table" else os.path.join(os.path.dirname(base), kind + "s")
    return Place(LOCAL, os.path.join(directory, name or label))


def _tree_path(s: Session, place: Place) -> str | None:
    """The path of a place in the tree, or None for a local path outside ``here``."""
    if place.system == LOCAL:
        root = os.path.realpath(os.path.expanduser(s.config.here.root))
        if place.path == root or place.path.startswith(root + "/"):
            return "/here" + place.path[len(root) :]
        return None
    return "/" + posixpath.join(s.systems.mount_key(place.system) or "", place.path)


# -- copies ------------------------------------------------------------------------------
def _location(s: Session, place: Place) -> Location:
    """A place as the copy planner sees it: a guarded backend and a path in it."""
    backend, rel = s.systems.locate(place)
    label = _tree_path(s, place) or s.systems.url(place)
    return Location(
        path=label, backend=cast(Guarded, backend), rel=rel, mount=s.systems.mount_key(place.system) or ""
    )


def _copy_file(s: Session, src: Place, dst: Place, entry: Entry) -> str:
    """Copy one file by the tree's copier (the mount's routes); return the route's name.

    Where the copier has no route, the bytes go through this process.
    """
    try:
        if s.vfs.copier is None:
            raise CantCopy("no copy planner")
        return s.vfs.copier.copy(_location(s, src), _location(s, dst), entry)
    except CantCopy as e:
        log.debug("copy %s -> %s: %s; relaying", src, dst, e)
    src_backend, src_rel = s.systems.locate(src)
    dst_backend, dst_rel = s.systems.locate(dst)
    fd, spooled = tempfile.mkstemp(prefix="rhfs-relay-", dir=s.vfs.spool_dir)
    os.close(fd)
    try:
        download(src_backend, src_rel, entry, spooled)
        dst_backend.upload(spooled, dst_rel)
    finally:
        os.unlink(spooled)
    s.vfs.stats.add_relayed(src_backend.system, entry.size)  # as the mount counts relays
    return "relay"


def _copy_tree(src: Place, dst: Place) -> int:
    """Copy a file or a directory tree; return the number of files copied."""
    from concurrent.futures import ThreadPoolExecutor

    from rhfs.views.systems import walk_files

    s = session()
    src_backend, src_rel = s.systems.locate(src)
    dst_backend, dst_rel = s.systems.locate(dst)
    top = src_backend.stat(src_rel)
    if not top.is_dir:
        makedirs(dst_backend, posixpath.dirname(dst_rel))
        _copy_file(s, src, dst, top)
        return 1
    files = walk_files(src_backend, src_rel)
    makedirs(dst_backend, dst_rel)
    for directory in sorted({posixpath.dirname(rel) for rel, _ in files} - {""}):
        makedirs(dst_backend, posixpath.join(dst_rel, directory))
    with ThreadPoolExecutor(max_workers=8, thread_name_prefix="rhfs-api-copy") as pool:
        futures = [pool.submit(_copy_file, s, src.child(rel), dst.child(rel), entry) for rel, entry in files]
        for future in futures:
            future.result()
    s.vfs.cache.clear()
    return len(files)


# -- resources ---------------------------------------------------------------------------
class _Resource:
    kind = "folder"

    def __init__(self, place: Place, name: str | None = None) -> None:
        self.place = place
        self.name = name

    @property
    def system(self) -> str:
        return self.place.system

    @property
    def path(self) -> str:
        return self.place.path

    @property
    def url(self) -> str:
        return session().systems.url(self.place)

    def __repr__(self) -> str:
        label = f"{self.name!r}, " if self.name else ""
        return f"{type(self).__name__}({label}{self.url})"

    def _resource(self, name: str) -> Resource:
        return Resource(kind=self.kind, name=name, system=self.system, path=self.path, url=self.url)

    def save(self, name: str | None = None) -> Any:
        """Record this resource in the catalog under ``name`` (default: its own name)."""
        self.name = name or self.name
        if not self.name:
            raise InvalidArgument(f"a {self.kind} needs a name to be saved")
        session().catalog.put(self._resource(self.name))
        return self

    def exists_in_system(self) -> bool:
        backend, rel = session().systems.locate(self.place)
        try:
            backend.stat(rel)
        except MISSING:
            return False
        return True

    def ls(self, full_paths: bool = False) -> list[str]:
        backend, rel = session().systems.locate(self.place)
        names = sorted(e.name for e in backend.list(rel))
        return [self.place.child(n).path for n in names] if full_paths else names

    def rm(self) -> None:
        """Delete the data, and the catalog entry if that entry names this place."""
        s = session()
        backend, rel = s.systems.locate(self.place)
        remove_tree(backend, rel)
        if self.name:
            found = s.catalog.find(self.kind, self.name)
            if found is not None and found.place == self.place:
                s.catalog.delete(self.kind, self.name)
        s.vfs.cache.clear()

    def _copied_to(self, system: Any, path: str | None) -> Place:
        dst = _place(system, path, self.kind, self.name)
        _copy_tree(self.place, dst)
        return dst


class Folder(_Resource):
    kind = "folder"

    def to(self, system: Any, path: str | None = None) -> Folder:
        """A copy of this folder on ``system`` (at ``path``, or a fresh default path)."""
        name = _system_name(system)
        if path is None and name is not None and session().systems.kind(name) == "cluster":
            path = posixpath.basename(self.path.rstrip("/"))  # as Runhouse: the folder's own name
        return Folder(self._copied_to(system, path), self.name)

    def mkdir(self) -> Folder:
        backend, rel = session().systems.locate(self.place)
        makedirs(backend, rel)
        return self


class Table(Folder):
    kind = "table"

    def __init__(
        self,
        place: Place,
        name: str | None = None,
        data: Any = None,
        data_type: str | None = None,
        partition_cols: Sequence[str] | None = None,
    ) -> None:
        super().__init__(place, name)
        self.data = data
        self.data_type = data_type or (tabledata.data_type_of(data) if data is not None else None)
        self.partition_cols = partition_cols

    def _resource(self, name: str) -> Resource:
        return replace(super()._resource(name), data_type=self.data_type)

    def write(self) -> Table:
        """Write the data as parquet parts at the table's place."""
        if self.data is None:
            raise InvalidArgument("this table has no data to write")
        with tempfile.TemporaryDirectory(prefix="rhfs-table-") as tmp:
            tabledata.write_parts(self.data, tmp, self.partition_cols)
            _copy_tree(Place(LOCAL, tmp), self.place)
        return self

    def _source(self) -> tuple[str, Any]:
        s = session()
        if self.name:
            found = s.catalog.find("table", self.name)
            if found is not None and found.place == self.place:
                return f"tables/{self.name}", s.fs
        tree = _tree_path(s, self.place)
        if tree is None:
            return self.place.path, None
        return tree.lstrip("/"), s.fs

    def fetch(self, columns: Sequence[str] | None = None) -> Any:
        """All rows (pandas for pandas and dask tables, pyarrow otherwise)."""
        path, fs = self._source()
        return tabledata.from_arrow(tabledata.read(path, fs, columns), self.data_type)

    def stream(self, batch_size: int, columns: Sequence[str] | None = None) -> Iterator[Any]:
        path, fs = self._source()
        for batch in tabledata.stream(path, batch_size, fs, columns):
            yield tabledata.from_arrow(batch, self.data_type)

    def to(self, system: Any, path: str | None = None) -> Table:
        return Table(self._copied_to(system, path), self.name, data_type=self.data_type)


class Blob(_Resource):
    kind = "blob"

    def __init__(
        self, place: Place, name: str | None = None, data: Any = None, serializer: str | None = None
    ) -> None:
        super().__init__(place, name)
        self._data = data
        self.serializer = serializer or (None if data is None else _serializer_of(data))

    def _resource(self, name: str) -> Resource:
        return replace(super()._resource(name), serializer=self.serializer)

    @property
    def data(self) -> Any:
        if self._data is None:
            self._data = self.fetch()
        return self._data

    def write(self) -> Blob:
        """Store the data: bytes as they are, anything else pickled."""
        if self._data is None:
            raise InvalidArgument("this blob has no data to write")
        self.serializer = _serializer_of(self._data)
        raw = bytes(self._data) if self.serializer == "raw" else pickle.dumps(self._data, protocol=5)
        backend, rel = session().systems.locate(self.place)
        makedirs(backend, posixpath.dirname(rel))
        with tempfile.NamedTemporaryFile(prefix="rhfs-blob-") as tmp:
            tmp.write(raw)
            tmp.flush()
            backend.upload(tmp.name, rel)
        session().vfs.cache.clear()
        return self

    def fetch_bytes(self) -> bytes:
        """The stored bytes, as they are (still pickled for a pickled blob)."""
        return read_bytes(*session().systems.locate(self.place))

    def fetch(self) -> Any:
        raw = self.fetch_bytes()
        if self.serializer == "pickle":
            return pickle.loads(raw)
        return raw

    def to(self, system: Any, path: str | None = None) -> Blob:
        return Blob(self._copied_to(system, path), self.name, serializer=self.serializer)


def _serializer_of(data: Any) -> str:
    return "raw" if isinstance(data, bytes | bytearray | memoryview) else "pickle"


class Cluster:
    def __init__(self, name: str) -> None:
        s = session()
        if name not in s.config.clusters:
            known = ", ".join(s.config.clusters) or "none"
            raise NotFound(
                f"no cluster named {name!r} in {s.config.source or 'the default config'} (known: {known})"
            )
        self.name = name

    def __repr__(self) -> str:
        return f"Cluster({self.name!r})"

    def run(self, commands: str | Sequence[str]) -> list[tuple[int, str, str]]:
        """Run each shell command in the cluster's root; return (exit status, stdout, stderr) each."""
        s = session()
        run = s.systems.backend(self.name).abilities.run
        if run is None:
            raise NotSupported(f"{self.name} cannot run commands")
        root = shlex.quote(s.systems.cluster_root(self.name))
        commands = [commands] if isinstance(commands, str) else commands
        return [run(f"cd {root} && {command}") for command in commands]


# -- the factories -----------------------------------------------------------------------
def folder(name: str | None = None, path: str | None = None, system: Any = None) -> Folder:
    if name and path is None and system is None:
        return Folder(session().catalog.get("folder", name).place, name)
    return Folder(_place(system, path, "folder", name), name)


def table(
    data: Any = None,
    name: str | None = None,
    path: str | None = None,
    system: Any = None,
    partition_cols: Sequence[str] | None = None,
) -> Table:
    if data is None and name and path is None and system is None:
        resource = session().catalog.get("table", name)
        return Table(resource.place, name, data_type=resource.data_type)
    return Table(_place(system, path, "table", name), name, data, partition_cols=partition_cols)


def blob(data: Any = None, name: str | None = None, path: str | None = None, system: Any = None) -> Blob:
    if data is None and name and path is None and system is None:
        resource = session().catalog.get("blob", name)
        return Blob(resource.place, name, serializer=resource.serializer)
    return Blob(_place(system, path, "blob", name), name, data)


def cluster(name: str) -> Cluster:
    return Cluster(name)
