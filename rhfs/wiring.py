"""The one place that turns a :class:`Config` into concrete backends and a mount table.

The CLI (for the FUSE mount), the ``rhfs://`` fsspec face and the Python API all
build their tree here, so every face sees the same systems under the same names.
"""

from __future__ import annotations

import os

from rhfs import log as rhfs_log
from rhfs.backends.base import Backend
from rhfs.backends.cluster import ClusterBackend
from rhfs.backends.guard import Guarded
from rhfs.backends.local import LocalBackend
from rhfs.backends.store import StoreBackend
from rhfs.config import Config, expand
from rhfs.stats import Stats
from rhfs.transfer import build_planner
from rhfs.tree import MountTable
from rhfs.vfs.control import ControlView
from rhfs.vfs.core import Vfs
from rhfs.vfs.readahead import ReadAhead
from rhfs.views import build_views


def make_store(config: Config, name: str) -> StoreBackend:
    store = config.stores[name]
    return StoreBackend(name, store.protocol, store.options, store.buckets)


def make_cluster(config: Config, name: str) -> ClusterBackend:
    c = config.clusters[name]
    return ClusterBackend(
        name,
        c.host,
        port=c.port,
        user=c.user,
        identity_file=c.identity_file,
        known_hosts=c.known_hosts,
        root=c.root,
        op_timeout=config.mount.op_timeout,
    )


def raw_backends(config: Config, mountpoint: str | None = None) -> dict[str, Backend]:
    """Mount key -> unguarded backend, for every system in the config."""
    hidden = (os.path.abspath(mountpoint),) if mountpoint else ()
    backends: dict[str, Backend] = {"here": LocalBackend(expand(config.here.root), hidden=hidden)}
    for name in config.clusters:
        backends[f"clusters/{name}"] = make_cluster(config, name)
    for name in config.stores:
        backends[name] = make_store(config, name)
    return backends


def build_vfs(
    config: Config,
    *,
    mountpoint: str | None = None,
    read_only: bool = False,
    spool_dir: str | None = None,
    stats: Stats | None = None,
) -> Vfs:
    """The tree's VFS over ``config``.

    The daemon gives ``mountpoint`` (hidden from ``here/`` and the ``file`` system, and
    shown in ``.rhfs/status.json``), ``read_only`` (``rhfs mount --read-only``, beside the
    config's own) and the ``spool_dir`` it claimed; in-process faces give none of them.
    """
    for secret in config.secrets():
        rhfs_log.register_secret(secret)
    stats = stats or Stats()
    read_only = read_only or config.mount.read_only
    timeout = config.mount.op_timeout
    mounts: dict[str, Guarded] = {
        key: Guarded(backend, stats, op_timeout=timeout)
        for key, backend in raw_backends(config, mountpoint).items()
    }
    daemon = None
    if mountpoint:
        source = config.source or "embedded default"
        daemon = {
            "mountpoint": mountpoint,
            "config": source,
            "read_only": read_only,
            "started_at": stats.started_at,
        }
    mounts[".rhfs"] = Guarded(ControlView(stats, config, daemon=daemon), stats, op_timeout=timeout)
    mounts.update(build_views(config, mounts, stats, mountpoint=mountpoint, wrap_reader=ReadAhead))
    table = MountTable(mounts)
    cache_dir = expand(config.mount.cache_dir)
    return Vfs(
        table,
        cache_dir=cache_dir,
        attr_ttl=config.mount.attr_ttl,
        read_only=read_only,
        stats=stats,
        copier=build_planner(config, table, stats, os.path.join(cache_dir, "relay")),
        spool_dir=spool_dir,
    )
