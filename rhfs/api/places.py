"""The API's place in the tree: this process's session, the addresses of resources, and changes.

- :func:`session` is this process's tree (:class:`rhfs.wiring.Core`, the one ``rhfs://``
  shares), built on first use from the config found the usual way; :func:`configure` picks
  another. A process forked from one that had a session starts without one, and builds its
  own on first use: no connection, event loop or lock is shared across a fork (the parent's
  core is kept, unused, so that nothing of it is closed from the child).
- :func:`address_of` turns a ``system``/``path`` pair (or a path inside an rhfs mount) into
  an :class:`~rhfs.catalog.Address`; :func:`default_address` is where a resource given no
  path goes.
- :func:`changed` and :func:`view_changed` make the VFS forget exactly what the API changed.
"""

from __future__ import annotations

import os
import threading
import uuid
from dataclasses import dataclass
from typing import Any

from rhfs.catalog import Address, Catalog
from rhfs.config import Config
from rhfs.errors import InvalidArgument
from rhfs.location_io import makedirs
from rhfs.transfer.trees import SomeFilesFailed, TreeCopy, TreeResult
from rhfs.tree import Location, TreeDir
from rhfs.vfs.core import Vfs
from rhfs.views.systems import LOCAL, LOCAL_ALIASES, Systems
from rhfs.wiring import Core

VIEW_KINDS = {"tables": "table", "blobs": "blob"}  # the views' mount keys, and the kind each shows


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
_left_by_parent: list[Session] = []  # a forked child keeps its parent's session, never using it


def configure(config: str | None = None) -> Session:
    """Build this process's tree from a config file (default: the usual search order)."""
    global _session
    from rhfs.fsspec_face import RhfsFileSystem, shared_core

    core = shared_core(config)
    fs = RhfsFileSystem(config, vfs=core.vfs, skip_instance_cache=True)
    with _session_lock:
        _session = Session(core, fs)
        return _session


def session() -> Session:
    return _session or configure()


def session_for(config_source: str | None) -> Session:
    """This process's session, built from ``config_source`` if it has none yet (a worker
    process started by spawn, or forked, reads with the config its parent used)."""
    current = _session
    if current is not None:
        return current
    return configure(config_source)


def _forget_after_fork() -> None:
    global _session, _session_lock
    if _session is not None:
        _left_by_parent.append(_session)
    _session, _session_lock = None, threading.Lock()


os.register_at_fork(after_in_child=_forget_after_fork)


# -- addresses ---------------------------------------------------------------------------
def mount_of(path: str) -> str | None:
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


def tree_address(s: Session, tree_path: str) -> Address:
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


def system_name(system: Any) -> str | None:
    if system is None or isinstance(system, str):
        return system
    from rhfs.api.cluster import Cluster

    if isinstance(system, Cluster):
        return system.name
    raise TypeError(f"system must be a name or a Cluster, not {type(system).__name__}")


def address_of(system: Any, path: str | None, kind: str, name: str | None = None) -> Address:
    s = session()
    named = system_name(system)
    if path and (named is None or named in LOCAL_ALIASES):
        absolute = os.path.abspath(os.path.expanduser(path))
        mountpoint = mount_of(absolute)
        if mountpoint is not None:
            return tree_address(s, absolute[len(mountpoint) :] or "/")
    canonical = s.systems.canonical(named or LOCAL)
    if path:
        return s.systems.address(canonical, path)
    return default_address(s, canonical, kind, name)


def default_address(s: Session, system: str, kind: str, name: str | None) -> Address:
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
def changed(s: Session, loc: Location, *, subtree: bool = False) -> None:
    """The tree forgets what it knew of ``loc``, which the API changed on its system."""
    if loc.in_tree:
        s.vfs.changed_elsewhere(loc.path, subtree=subtree)


def view_changed(s: Session, kind: str, name: str) -> None:
    """The tree forgets what ``tables/``/``blobs/`` showed of a catalogued name."""
    for mount, shown in VIEW_KINDS.items():
        if shown == kind:
            s.vfs.changed_elsewhere(f"/{mount}/{name}", subtree=True)


def copy_tree(s: Session, src: Location, dst: Location, *, progress: bool = False) -> TreeResult:
    """Make ``dst`` a copy of the file or tree at ``src``: one tree job, which skips what
    already matches; :class:`SomeFilesFailed` names the files that could not be copied."""
    makedirs(dst.parent)
    from tqdm import tqdm

    with tqdm(total=None, unit="B", unit_scale=True, disable=not progress, leave=False) as bar:
        result = TreeCopy(s.core.planner, progress=bar).run(src, dst)
    if result.failed:
        raise SomeFilesFailed(result)
    return result
