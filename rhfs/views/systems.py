"""Where a named resource lives: a system name and a path, and the backend that serves it.

A :class:`Place` is what the catalog records for a table, blob or folder: the
``system`` (``file`` for the local filesystem of the process, a store name such
as ``s3``, or a cluster name such as ``cluster-a``) and the ``path`` inside it:

- ``file``: an absolute local path (``here`` is accepted as a synonym);
- a store: ``bucket/key`` (a leading ``/`` is dropped);
- a cluster: relative to the cluster's root (an absolute path under that root is accepted).

:class:`Systems` turns places and URLs into ``(backend, rel)`` pairs over the
tree's own (guarded) backends, so traffic is counted and time-limited exactly as
through the mount. It never imports fsspec: stores and clusters are reached only
through their backends.

URLs (``[catalog] url``, ``[tables] default_url``) are a local path, ``file://``,
``<protocol>://bucket/key`` for a configured store, or ``<cluster>:path``.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rhfs.backends.base import Backend, Entry, join
from rhfs.backends.store import StoreBackend
from rhfs.config import Config, expand
from rhfs.errors import AlreadyExists, ConfigError, InvalidArgument, NotFound, RhfsError
from rhfs.urls import store_for

LOCAL = "file"
MISSING = (NotFound, FileNotFoundError)  # what a backend may raise for a missing path
LOCAL_ALIASES = frozenset({"file", "here", "local"})


@dataclass(frozen=True, slots=True)
class Place:
    system: str
    path: str

    def child(self, name: str) -> Place:
        if self.system == LOCAL:
            return Place(self.system, posixpath.join(self.path, name))
        return Place(self.system, join(self.path, name))


class Systems:
    """System names -> backends, for the views, the catalog and the Python API."""

    def __init__(
        self,
        config: Config,
        backends: dict[str, Any],
        local: Any,
        hidden: tuple[str, ...] = (),
        wrap: Callable[[Backend], Any] | None = None,
    ) -> None:
        """``backends``: mount key -> backend (``here``, ``s3``, ``clusters/cluster-a``...);
        ``local``: a backend rooted at ``/`` that serves the ``file`` system;
        ``hidden``: local directories never entered (the mount point: entering it would
        make the daemon call into itself); ``wrap``: applied to a store made here for a
        URL no configured store serves (the daemon guards it like the others)."""
        self.config = config
        self.mounts = dict(backends)
        self.local = local
        self.hidden = tuple(os.path.realpath(h) for h in hidden)
        self.wrap = wrap or (lambda backend: backend)
        self._extra: dict[str, Any] = {}

    # -- names ----------------------------------------------------------------------
    def canonical(self, system: str) -> str:
        if system in LOCAL_ALIASES:
            return LOCAL
        if system in self.config.stores or system in self.config.clusters or system in self._extra:
            return system
        known = ", ".join(["file", *self.config.stores, *self.config.clusters])
        raise NotFound(f"no system named {system!r} (known: {known})")

    def mount_key(self, system: str) -> str | None:
        """The tree's top-level key for a system, or None for ``file``."""
        system = self.canonical(system)
        if system in self.config.clusters:
            return f"clusters/{system}"
        if system in self.config.stores:
            return system
        return None

    def kind(self, system: str) -> str:
        system = self.canonical(system)
        if system in self.config.clusters:
            return "cluster"
        return "here" if system == LOCAL else "store"

    def backend(self, system: str) -> Backend:
        system = self.canonical(system)
        if system == LOCAL:
            return self.local
        key = self.mount_key(system)
        found = self.mounts.get(key or "") or self._extra.get(system)
        if found is None:
            raise NotFound(f"system {system!r} is configured but not mounted")
        return found

    # -- places ---------------------------------------------------------------------
    def place(self, system: str, path: str) -> Place:
        """Normalise a user's (system, path) into a :class:`Place`."""
        system = self.canonical(system)
        if system == LOCAL:
            return Place(LOCAL, os.path.abspath(expand(path)))
        if system in self.config.clusters and path.startswith("/"):
            root = self.cluster_root(system)
            if path != root and not path.startswith(root + "/"):
                raise InvalidArgument(f"{system}:{path} is outside the cluster's root {root}")
            path = path[len(root) :]
        return Place(system, path.strip("/"))

    def locate(self, place: Place) -> tuple[Backend, str]:
        """The backend serving ``place`` and the path inside that backend."""
        backend = self.backend(place.system)
        if place.system == LOCAL:
            for hidden in self.hidden:
                if place.path == hidden or place.path.startswith(hidden + "/"):
                    raise InvalidArgument(f"{place.path} is inside the mount itself")
            return backend, place.path.lstrip("/")
        return backend, place.path

    def cluster_root(self, system: str) -> str:
        remote_path = self.backend(system).abilities.remote_path
        if remote_path is None:
            raise InvalidArgument(f"{system} has no root directory")
        return remote_path("")

    def url(self, place: Place) -> str:
        if place.system == LOCAL:
            return "file://" + place.path
        if place.system in self.config.stores:
            return f"{self.config.stores[place.system].protocol}://{place.path}"
        if place.system in self._extra:
            return f"{place.system.removesuffix('-default')}://{place.path}"
        return f"{place.system}:{place.path}"

    def parse_url(self, url: str) -> Place:
        """A config URL as a place (see the module docstring for the forms)."""
        if url.startswith("file://"):
            return Place(LOCAL, os.path.abspath(expand(url[len("file://") :])))
        if "://" in url:
            protocol, _, rest = url.partition("://")
            return Place(self._store_for(protocol, rest.split("/", 1)[0]), rest.strip("/"))
        head, sep, rest = url.partition(":")
        if sep and head in self.config.clusters:
            return self.place(head, rest)
        return Place(LOCAL, os.path.abspath(expand(url)))

    def _store_for(self, protocol: str, bucket: str) -> str:
        store = store_for(self.config, protocol, bucket)
        if store is not None:
            return store.name
        # No configured store: use the provider's standard credential chain.
        name = f"{protocol}-default"
        if name not in self._extra:
            self._extra[name] = self.wrap(StoreBackend(name, protocol, {}))
        return name

    def first_bucket(self, system: str) -> str:
        store = self.config.stores[self.canonical(system)]
        if store.buckets:
            return store.buckets[0]
        backend = self.backend(system)
        buckets = [e.name for e in backend.list("")]
        if not buckets:
            raise ConfigError(f"store {system!r} has no bucket to put data in; set buckets = [...]")
        return buckets[0]


def makedirs(backend: Backend, path: str) -> None:
    """Create ``path`` and any missing parents (a store's bucket level must exist)."""
    parts = [p for p in path.split("/") if p]
    for i in range(1, len(parts) + 1):
        sub = "/".join(parts[:i])
        try:
            if backend.stat(sub).is_dir:
                continue
        except MISSING:
            pass
        try:
            backend.mkdir(sub)
        except AlreadyExists:
            pass


def remove_tree(backend: Backend, path: str) -> None:
    """Remove ``path`` and everything under it; a missing path is already removed."""
    try:
        entry = backend.stat(path)
    except MISSING:
        return
    if not entry.is_dir:
        backend.remove(path)
        return
    for child in backend.list(path):
        sub = join(path, child.name)
        if child.is_dir:
            remove_tree(backend, sub)
        else:
            try:
                backend.remove(sub)
            except MISSING:
                pass
    try:
        backend.rmdir(path)
    except MISSING:
        pass


def walk_files(backend: Backend, path: str, prefix: str = "") -> list[tuple[str, Entry]]:
    """Every file under ``path`` as (path relative to ``path``, entry), depth first."""
    out: list[tuple[str, Entry]] = []
    for child in sorted(backend.list(path), key=lambda e: e.name):
        rel = join(prefix, child.name)
        if child.is_dir:
            out.extend(walk_files(backend, join(path, child.name), rel))
        else:
            out.append((rel, child))
    return out


def download(backend: Backend, path: str, entry: Entry, local_path: str, chunk: int = 8 << 20) -> None:
    """Write the bytes of one file of ``backend`` to ``local_path``, in ranged reads."""
    reader = backend.open_reader(path, entry)
    try:
        with open(local_path, "wb") as f:
            offset = 0
            while offset < entry.size:
                data = reader.read(offset, min(chunk, entry.size - offset))
                if not data:
                    raise NotFound(f"{backend.url(path)} ended early at byte {offset} of {entry.size}")
                f.write(data)
                offset += len(data)
    finally:
        reader.close()


def read_bytes(backend: Backend, path: str, *, limit: int | None = None) -> bytes:
    """The whole content of a (small) file; RhfsError if it is larger than ``limit``."""
    entry = backend.stat(path)
    if limit is not None and entry.size > limit:
        raise RhfsError(f"{backend.url(path)} is too large ({entry.size} bytes, at most {limit})")
    reader = backend.open_reader(path, entry)
    try:
        data = reader.read(0, entry.size)
    finally:
        reader.close()
    if len(data) != entry.size:
        raise RhfsError(f"{backend.url(path)} changed while it was read")
    return data
