"""System names to places: a resource's :class:`~rhfs.catalog.Address` as a :class:`~rhfs.tree.Location`.

An address is what the catalog records for a table, blob or folder: the
``system`` (``file`` for the local filesystem of the process, a store name such
as ``s3``, or a cluster name such as ``cluster-a``) and the ``path`` inside it:

- ``file``: an absolute local path (``here`` is accepted as a synonym);
- a store: ``bucket/key`` (a leading ``/`` is dropped);
- a cluster: relative to the cluster's root (an absolute path under that root is accepted).

:class:`Systems` turns addresses and URLs into locations over the tree's own
(guarded) backends, so traffic is counted and time-limited exactly as through the
mount, and a place the tree shows is spoken of by its tree path (``/s3/bucket/key``,
``/clusters/cluster-a/x``; a local path that ``here/`` serves is under ``/here``).
Places the tree does not show (other local paths, a store no configured one
serves) are locations outside the tree. It never imports fsspec and never makes a
backend: stores for unconfigured URLs come from the factory the wiring gives it.

URLs (``[catalog] url``, ``[tables] default_url``) are a local path, ``file://``,
``<protocol>://bucket/key`` for a configured store, or ``<cluster>:path``.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from rhfs.backends.base import join
from rhfs.backends.guard import Guarded
from rhfs.catalog import Address
from rhfs.config import Config, expand
from rhfs.errors import ConfigError, InvalidArgument, NotFound, RhfsError
from rhfs.tree import Location
from rhfs.urls import store_for

LOCAL = "file"
LOCAL_ALIASES = frozenset({"file", "here", "local"})
HERE_MOUNT = "here"  # the mount key of the local directory the tree shows

DefaultStore = Callable[[str, str], Guarded]  # (system name, protocol) -> a store with default credentials


class Systems:
    """System names -> locations, for the views, the catalog, ``rhfs cp`` and the Python API."""

    def __init__(
        self,
        config: Config,
        mounts: dict[str, Guarded],
        local: Guarded,
        hidden: tuple[str, ...] = (),
        *,
        default_store: DefaultStore | None = None,
    ) -> None:
        """``mounts``: mount key -> the tree's backend (``here``, ``s3``, ``clusters/cluster-a``...);
        ``local``: a backend rooted at ``/`` that serves the ``file`` system;
        ``hidden``: local directories never entered (the mount point: entering it would
        make the daemon call into itself); ``default_store``: makes the store for a URL
        no configured store serves (None: such URLs are refused)."""
        self.config = config
        self.mounts = dict(mounts)
        self.local = local
        self.hidden = tuple(os.path.realpath(h) for h in hidden)
        self.default_store = default_store
        self._extra: dict[str, Guarded] = {}

    # -- names ----------------------------------------------------------------------
    def canonical(self, system: str) -> str:
        if system in LOCAL_ALIASES:
            return LOCAL
        if system in self.config.stores or system in self.config.clusters or system in self._extra:
            return system
        known = ", ".join(["file", *self.config.stores, *self.config.clusters])
        raise NotFound(f"no system named {system!r} (known: {known})")

    def is_cluster(self, system: str) -> bool:
        """Is ``system`` a configured cluster (paths relative to its root, commands run there)?"""
        return self.canonical(system) in self.config.clusters

    def is_store(self, system: str) -> bool:
        """Is ``system`` an object store (paths start with a bucket)?"""
        system = self.canonical(system)
        return system in self.config.stores or system in self._extra

    def mount_key(self, system: str) -> str | None:
        """The tree's top-level key for a system, or None for ``file`` and unconfigured stores."""
        system = self.canonical(system)
        if system in self.config.clusters:
            return f"clusters/{system}"
        if system in self.config.stores:
            return system
        return None

    def backend(self, system: str) -> Guarded:
        system = self.canonical(system)
        if system == LOCAL:
            return self.local
        key = self.mount_key(system)
        found = self.mounts.get(key or "") or self._extra.get(system)
        if found is None:
            raise NotFound(f"system {system!r} is configured but not mounted")
        return found

    # -- addresses and locations ----------------------------------------------------
    def address(self, system: str, path: str) -> Address:
        """Normalise a user's (system, path) into an :class:`Address`."""
        system = self.canonical(system)
        if system == LOCAL:
            return Address(LOCAL, os.path.abspath(expand(path)))
        if system in self.config.clusters and path.startswith("/"):
            root = self.cluster_root(system)
            if path != root and not path.startswith(root + "/"):
                raise InvalidArgument(f"{system}:{path} is outside the cluster's root {root}")
            path = path[len(root) :]
        return Address(system, path.strip("/"))

    def locate(self, address: Address) -> Location:
        """Where ``address`` is: its tree path and the backend serving it, or a place outside the tree."""
        backend = self.backend(address.system)
        if address.system == LOCAL:
            for hidden in self.hidden:
                if address.path == hidden or address.path.startswith(hidden + "/"):
                    raise InvalidArgument(f"{address.path} is inside the mount itself")
            return self._on_here(address.path) or self.outside_tree(address.path)
        key = self.mount_key(address.system)
        if key is None:
            return Location(path=self.url(address), backend=backend, rel=address.path)
        return Location(path="/" + join(key, address.path), backend=backend, rel=address.path, mount=key)

    def outside_tree(self, local_path: str) -> Location:
        """A local path as a place outside the tree, on the ``file`` system."""
        return Location(path=local_path, backend=self.local, rel=local_path.lstrip("/"))

    def _on_here(self, local_path: str) -> Location | None:
        """The place of ``here/`` that is ``local_path``, if ``here/`` serves it (under its root,
        with no symbolic link on the way leading out of it)."""
        here = self.mounts.get(HERE_MOUNT)
        on_disk = here.abilities.local_path if here is not None else None
        if here is None or on_disk is None:
            return None
        root = on_disk("")
        if local_path != root and not local_path.startswith(root.rstrip("/") + "/"):
            return None
        rel = local_path[len(root) :].strip("/")
        try:
            on_disk(rel)  # refuses a path that here/ does not serve
        except RhfsError:
            return None
        return Location(path="/" + join(HERE_MOUNT, rel), backend=here, rel=rel, mount=HERE_MOUNT)

    def cluster_root(self, system: str) -> str:
        remote_path = self.backend(system).abilities.remote_path
        if remote_path is None:
            raise InvalidArgument(f"{system} has no root directory")
        return remote_path("")

    def url(self, address: Address) -> str:
        if address.system == LOCAL:
            return "file://" + address.path
        if address.system in self.config.stores:
            return f"{self.config.stores[address.system].protocol}://{address.path}"
        if address.system in self._extra:
            return f"{address.system.removesuffix('-default')}://{address.path}"
        return f"{address.system}:{address.path}"

    def parse_url(self, url: str) -> Address:
        """A config URL as an address (see the module docstring for the forms)."""
        if url.startswith("file://"):
            return Address(LOCAL, os.path.abspath(expand(url[len("file://") :])))
        if "://" in url:
            protocol, _, rest = url.partition("://")
            return Address(self._store_for(protocol, rest.split("/", 1)[0]), rest.strip("/"))
        head, sep, rest = url.partition(":")
        if sep and head in self.config.clusters:
            return self.address(head, rest)
        return Address(LOCAL, os.path.abspath(expand(url)))

    def _store_for(self, protocol: str, bucket: str) -> str:
        store = store_for(self.config, protocol, bucket)
        if store is not None:
            return store.name
        if self.default_store is None:
            raise NotFound(f"{protocol}://{bucket}: no configured store speaks {protocol}://")
        # No configured store: use the provider's standard credential chain.
        name = f"{protocol}-default"
        if name not in self._extra:
            self._extra[name] = self.default_store(name, protocol)
        return name

    def first_bucket(self, system: str) -> str:
        store = self.config.stores.get(self.canonical(system))
        if store is not None and store.buckets:
            return store.buckets[0]
        buckets = [e.name for e in self.backend(system).list("")]
        if not buckets:
            raise ConfigError(f"store {system!r} has no bucket to put data in; set buckets = [...]")
        return buckets[0]
