"""The Runhouse-style Python API: ``rh.folder``, ``rh.table``, ``rh.blob`` and ``rh.cluster``.

A resource is an address (a system and a path, :class:`rhfs.catalog.Address`) and,
once saved, a name in the catalog. Systems are named as in the mount:
``"file"``/``"here"`` (this machine, paths relative to the working directory),
a store name (``"s3"``), a cluster name or :class:`Cluster`, or a path inside an
rhfs mount (``rh.folder("/rh/s3/bucket/x")`` is the folder ``bucket/x`` on ``s3``).

This package is a face of the core (:class:`rhfs.wiring.Core`, the one ``rhfs://``
shares), built from the config found the usual way (``RHFS_CONFIG``, ...;
:func:`configure` picks another): the same backends, views, catalog and copy planner
as the mount, with no mount needed. Its modules:

- :mod:`~rhfs.api.places`: the process's session, addresses, and what the VFS forgets;
- :mod:`~rhfs.api.resource`: what every resource has (save, ls, rm, exists_in_system);
- :mod:`~rhfs.api.folder`, :mod:`~rhfs.api.table`, :mod:`~rhfs.api.blob`: the three kinds;
- :mod:`~rhfs.api.mounts`: ``Folder.mount``;
- :mod:`~rhfs.api.cluster`: ``rh.cluster(name).run``.

``.to()`` is one tree job (:class:`~rhfs.transfer.trees.TreeCopy`) over the tree's copy
planner: each file takes the route a ``cp`` in the mount would (server-side where one
exists), and onto an existing copy only what changed moves. Catalog look-ups read fresh,
whatever a mount caches.

Errors are :mod:`rhfs.errors` exceptions; a name missing from the catalog is
:class:`rhfs.catalog.NotInCatalog`, whose message names the catalog.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rhfs.api.blob import Blob
from rhfs.api.cluster import Cluster
from rhfs.api.folder import Folder
from rhfs.api.places import Session, address_of, configure, session, session_for
from rhfs.api.table import Table

__all__ = [
    "Blob",
    "Cluster",
    "Folder",
    "Session",
    "Table",
    "blob",
    "cluster",
    "configure",
    "folder",
    "session",
    "session_for",
    "table",
]


def folder(name: str | None = None, path: str | None = None, system: Any = None) -> Folder:
    if name and path is None and system is None:
        return Folder(session().catalog.get("folder", name, fresh=True).address, name)
    return Folder(address_of(system, path, "folder", name), name)


def table(
    data: Any = None,
    name: str | None = None,
    path: str | None = None,
    system: Any = None,
    partition_cols: Sequence[str] | None = None,
    stream_format: str | None = None,
) -> Table:
    """A table: loaded from the catalog by ``name`` alone, else at ``path`` on ``system``.
    ``stream_format`` (``"pyarrow"``, ``"pandas"``, ``"torch"``) is what ``stream`` yields."""
    if data is None and name and path is None and system is None:
        resource = session().catalog.get("table", name, fresh=True)
        return Table(resource.address, name, data_type=resource.data_type, stream_format=stream_format)
    address = address_of(system, path, "table", name)
    return Table(address, name, data, partition_cols=partition_cols, stream_format=stream_format)


def blob(data: Any = None, name: str | None = None, path: str | None = None, system: Any = None) -> Blob:
    if data is None and name and path is None and system is None:
        resource = session().catalog.get("blob", name, fresh=True)
        return Blob(resource.address, name, serializer=resource.serializer)
    return Blob(address_of(system, path, "blob", name), name, data)


def cluster(name: str) -> Cluster:
    return Cluster(name)
