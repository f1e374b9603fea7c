"""The Runhouse-style Python API: ``rh.folder``, ``rh.table``, ``rh.blob`` and ``rh.cluster``.

A resource is an address (a system and a path, :class:`rhfs.catalog.Address`) and,
once saved, a name in the catalog. Systems are named as in the mount:
``"file"``/``"here"`` (this machine, paths relative to the working directory),
a store name (``"s3"``), a cluster name or :class:`Cluster`, or a path inside an
rhfs mount (``rh.folder("/rh/s3/bucket/x")`` is the folder ``bucket/x`` on ``s3``).

This module is a face of the core (:class:`rhfs.wiring.Core`, the one ``rhfs://``
shares), built from the config found the usual way (``RHFS_CONFIG``, ...;
:func:`configure` picks another): the same backends, views, catalog and copy planner
as the mount, with no mount needed. Every read, write, copy and removal goes through
the :class:`~rhfs.tree.Location` of the resource's address, on the tree's own guarded
backends; the VFS then forgets exactly what changed (the place's tree path, and the
``tables/``/``blobs/`` entry of the resource's name). ``.to()`` is one tree job
(:class:`~rhfs.transfer.trees.TreeCopy`) over the tree's copy planner: each file takes the
route a ``cp`` in the mount would (server-side where one exists), and onto an existing
copy only what changed moves. Catalog look-ups read fresh, whatever a mount caches.

Errors are :mod:`rhfs.errors` exceptions; a name missing from the catalog is
:class:`rhfs.catalog.NotInCatalog`, whose message names the catalog.
"""

from __future__ import annotations

import os
import pickle
import posixpath
import shlex
import tempfile
import threading
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

from rhfs.catalog import Address, Catalog, Resource
from rhfs.config import Config
from rhfs.errors import InvalidArgument, NotFound, NotSupported
from rhfs.location_io import NOT_FOUND, makedirs, read_bytes, remove_tree, write_bytes
from rhfs.transfer.trees import SomeFilesFailed, TreeCopy, TreeResult
from rhfs.tree import Location, TreeDir
from rhfs.vfs.core import Vfs
from rhfs.views import tabledata
from rhfs.views.systems import LOCAL, LOCAL_ALIASES, Systems
from rhfs.wiring import Core

VIEW_KINDS = {"tables": "table", "blobs": "blob"}  # the views' mount keys, and the kind each shows

__all__ = ["Blob", "Cluster", "Folder", "Table", "blob", "cluster", "configure", "folder", "table"]


# -- the session: one tree per process ---------------------------------------------------
@dataclass(frozen=True)
class Session:
    """This process's core (shared with ``rhfs://``) and its ``rhfs://`` filesystem."""

    core: Core
    fs: Any  # the rhfs:// filesystem over ``core.vfs``

    @property
    def config(self) -> Config:
        return self.core.config

    @property
    def vfs(self) -> Vfs:
        return self.core.vfs

    @property
    def systems(self) -> Systems:
        return self.core.systems

    @property
    def catalog(self) -> Catalog:
        return self.core.catalog


_session: Session | None = None
_session_lock = threading.Lock()


def configure(config: str | None = None) -> Session:
    """Build this process's tree from a config file (default: the usual search order)."""
    global _session
    from rhfs.fsspec_face import RhfsFileSystem, shared_core

    core = shared_core(config)
    fs = RhfsFileSystem(vfs=core.vfs, skip_instance_cache=True)
    with _session_lock:
        _session = Session(core, fs)
        return _session


def session() -> Session:
    return _session or configure()


# -- addresses ---------------------------------------------------------------------------
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


def _tree_address(s: Session, tree_path: str) -> Address:
    """The address behind a path of the tree (``/s3/bucket/x``, ``/tables/t``...)."""
    loc = s.vfs.resolve(tree_path)
    if isinstance(loc, TreeDir):
        raise InvalidArgument(f"{tree_path} is a directory of the tree itself, not a place on a system")
    if loc.mount in VIEW_KINDS:
        name, _, sub = loc.rel.partition("/")
        address = s.catalog.get(VIEW_KINDS[loc.mount], name, fresh=True).address
        return address.child(sub) if sub else address
    on_disk = loc.backend.abilities.local_path
    if on_disk is not None:
        return Address(LOCAL, on_disk(loc.rel))
    return Address(s.systems.canonical(loc.backend.system), loc.rel)


def _system_name(system: Any) -> str | None:
    if system is None or isinstance(system, str):
        return system
    if isinstance(system, Cluster):
        return system.name
    raise TypeError(f"system must be a name or a Cluster, not {type(system).__name__}")


def _address(system: Any, path: str | None, kind: str, name: str | None = None) -> Address:
    s = session()
    system_name = _system_name(system)
    if path and (system_name is None or system_name in LOCAL_ALIASES):
        absolute = os.path.abspath(os.path.expanduser(path))
        mountpoint = _mount_of(absolute)
        if mountpoint is not None:
            return _tree_address(s, absolute[len(mountpoint) :] or "/")
    system_name = s.systems.canonical(system_name or LOCAL)
    if path:
        return s.systems.address(system_name, path)
    return _default_address(s, system_name, kind, name)


def _default_address(s: Session, system: str, kind: str, name: str | None) -> Address:
    """Where a resource goes when no path is given (see docs/SEMANTICS.md)."""
    label = uuid.uuid4().hex
    if s.systems.is_store(system):
        return Address(system, f"{s.systems.first_bucket(system)}/{label}")
    if s.systems.is_cluster(system):
        return Address(system, f"rhfs-{kind}s/{label}")
    tables = s.systems.parse_url(s.config.tables.default_url)
    base = tables.path if tables.system == LOCAL else os.path.expanduser("~/.local/share/rhfs/tables")
    directory = base if kind == "table" else os.path.join(os.path.dirname(base), kind + "s")
    return Address(LOCAL, os.path.join(directory, name or label))


# -- changes -----------------------------------------------------------------------------
def _changed(s: Session, loc: Location, *, subtree: bool = False) -> None:
    """The tree forgets what it knew of ``loc``, which the API changed on its system."""
    if loc.in_tree:
        s.vfs.changed_elsewhere(loc.path, subtree=subtree)


def _view_changed(s: Session, kind: str, name: str) -> None:
    """The tree forgets what ``tables/``/``blobs/`` showed of a catalogued name."""
    for mount, shown in VIEW_KINDS.items():
        if shown == kind:
            s.vfs.changed_elsewhere(f"/{mount}/{name}", subtree=True)


def _copy_tree(s: Session, src: Location, dst: Location, *, progress: bool = False) -> TreeResult:
    """Make ``dst`` a copy of the file or tree at ``src``: one tree job, which skips what
    already matches; :class:`SomeFilesFailed` names the files that could not be copied."""
    makedirs(dst.parent)
    from tqdm import tqdm

    with tqdm(total=None, unit="B", unit_scale=True, disable=not progress, leave=False) as bar:
        result = TreeCopy(s.core.planner, progress=bar).run(src, dst)
    if result.failed:
        raise SomeFilesFailed(result)
    return result


# -- resources ---------------------------------------------------------------------------
class _Resource:
    kind = "folder"

    def __init__(self, address: Address, name: str | None = None) -> None:
        self.address = address
        self.name = name

    @property
    def system(self) -> str:
        return self.address.system

    @property
    def path(self) -> str:
        return self.address.path

    @property
    def url(self) -> str:
        return session().systems.url(self.address)

    def __repr__(self) -> str:
        label = f"{self.name!r}, " if self.name else ""
        return f"{type(self).__name__}({label}{self.url})"

    def _location(self) -> Location:
        return session().systems.locate(self.address)

    def _changed(self, loc: Location, *, subtree: bool = True) -> None:
        """The tree forgets ``loc``, and what a view shows of this resource's name."""
        s = session()
        _changed(s, loc, subtree=subtree)
        if self.name:
            _view_changed(s, self.kind, self.name)

    def _catalog_changed(self, name: str) -> None:
        """The tree forgets the catalog document of ``name``, and what a view shows of it."""
        s = session()
        _changed(s, s.catalog.document(self.kind, name))
        _view_changed(s, self.kind, name)

    def _resource(self, name: str) -> Resource:
        return Resource(kind=self.kind, name=name, system=self.system, path=self.path, url=self.url)

    def save(self, name: str | None = None) -> Any:
        """Record this resource in the catalog under ``name`` (default: its own name)."""
        self.name = name or self.name
        if not self.name:
            raise InvalidArgument(f"a {self.kind} needs a name to be saved")
        session().catalog.put(self._resource(self.name))
        self._catalog_changed(self.name)
        return self

    def exists_in_system(self) -> bool:
        loc = self._location()
        try:
            loc.backend.stat(loc.rel)
        except NOT_FOUND:
            return False
        return True

    def ls(self, full_paths: bool = False) -> list[str]:
        loc = self._location()
        names = sorted(e.name for e in loc.backend.list(loc.rel))
        return [self.address.child(n).path for n in names] if full_paths else names

    def rm(self) -> None:
        """Delete the data, and the catalog entry if that entry names this place."""
        s = session()
        loc = self._location()
        remove_tree(loc)
        self._changed(loc)
        if self.name:
            found = s.catalog.find(self.kind, self.name, fresh=True)
            if found is not None and found.address == self.address:
                s.catalog.delete(self.kind, self.name)
                self._catalog_changed(self.name)

    def _copied_to(self, system: Any, path: str | None, *, progress: bool = False) -> Address:
        s = session()
        dst = _address(system, path, self.kind, self.name)
        target = s.systems.locate(dst)
        _copy_tree(s, self._location(), target, progress=progress)
        self._changed(target)
        return dst


class Folder(_Resource):
    kind = "folder"

    def to(self, system: Any, path: str | None = None, *, progress: bool = False) -> Folder:
        """A copy of this folder on ``system`` (at ``path``, or a fresh default path)."""
        name = _system_name(system)
        if path is None and name is not None and session().systems.is_cluster(name):
            path = posixpath.basename(self.path.rstrip("/"))  # as Runhouse: the folder's own name
        return Folder(self._copied_to(system, path, progress=progress), self.name)

    def mkdir(self) -> Folder:
        loc = self._location()
        makedirs(loc)
        self._changed(loc, subtree=False)
        return self


class Table(Folder):
    kind = "table"

    def __init__(
        self,
        address: Address,
        name: str | None = None,
        data: Any = None,
        data_type: str | None = None,
        partition_cols: Sequence[str] | None = None,
    ) -> None:
        super().__init__(address, name)
        self.data = data
        self.data_type = data_type or (tabledata.data_type_of(data) if data is not None else None)
        self.partition_cols = partition_cols

    def _resource(self, name: str) -> Resource:
        return replace(super()._resource(name), data_type=self.data_type)

    def write(self) -> Table:
        """Write the data as parquet parts at the table's place."""
        if self.data is None:
            raise InvalidArgument("this table has no data to write")
        s = session()
        loc = self._location()
        with tempfile.TemporaryDirectory(prefix="rhfs-table-") as tmp:
            tabledata.write_parts(self.data, tmp, self.partition_cols)
            _copy_tree(s, s.systems.outside_tree(tmp), loc)
        self._changed(loc)
        return self

    def _source(self) -> tuple[str, Any]:
        """The path to read the table's parts from, and the filesystem to read it with."""
        s = session()
        if self.name:
            found = s.catalog.find("table", self.name, fresh=True)
            if found is not None and found.address == self.address:
                return f"tables/{self.name}", s.fs
        loc = self._location()
        if not loc.in_tree:
            return loc.path, None
        return loc.path.lstrip("/"), s.fs

    def fetch(self, columns: Sequence[str] | None = None) -> Any:
        """All rows (pandas for pandas and dask tables, pyarrow otherwise)."""
        path, fs = self._source()
        return tabledata.from_arrow(tabledata.read(path, fs, columns), self.data_type)

    def stream(self, batch_size: int, columns: Sequence[str] | None = None) -> Iterator[Any]:
        path, fs = self._source()
        for batch in tabledata.stream(path, batch_size, fs, columns):
            yield tabledata.from_arrow(batch, self.data_type)

    def to(self, system: Any, path: str | None = None, *, progress: bool = False) -> Table:
        """A copy of this table on ``system``; onto an existing copy, only what changed moves."""
        return Table(self._copied_to(system, path, progress=progress), self.name, data_type=self.data_type)


class Blob(_Resource):
    kind = "blob"

    def __init__(
        self, address: Address, name: str | None = None, data: Any = None, serializer: str | None = None
    ) -> None:
        super().__init__(address, name)
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
        loc = self._location()
        makedirs(loc.parent)
        write_bytes(loc, raw)
        self._changed(loc, subtree=False)
        return self

    def fetch_bytes(self) -> bytes:
        """The stored bytes, as they are (still pickled for a pickled blob)."""
        return read_bytes(self._location())

    def fetch(self) -> Any:
        raw = self.fetch_bytes()
        if self.serializer == "pickle":
            return pickle.loads(raw)
        return raw

    def to(self, system: Any, path: str | None = None, *, progress: bool = False) -> Blob:
        return Blob(self._copied_to(system, path, progress=progress), self.name, serializer=self.serializer)


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
        return Folder(session().catalog.get("folder", name, fresh=True).address, name)
    return Folder(_address(system, path, "folder", name), name)


def table(
    data: Any = None,
    name: str | None = None,
    path: str | None = None,
    system: Any = None,
    partition_cols: Sequence[str] | None = None,
) -> Table:
    if data is None and name and path is None and system is None:
        resource = session().catalog.get("table", name, fresh=True)
        return Table(resource.address, name, data_type=resource.data_type)
    return Table(_address(system, path, "table", name), name, data, partition_cols=partition_cols)


def blob(data: Any = None, name: str | None = None, path: str | None = None, system: Any = None) -> Blob:
    if data is None and name and path is None and system is None:
        resource = session().catalog.get("blob", name, fresh=True)
        return Blob(resource.address, name, serializer=resource.serializer)
    return Blob(_address(system, path, "blob", name), name, data)


def cluster(name: str) -> Cluster:
    return Cluster(name)
