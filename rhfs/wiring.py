"""The one place that turns a :class:`Config` into backends, and backends into the core of rhfs.

:func:`build_core` makes every backend (the configured systems, the ``file`` system of
this host, a store for a URL no configured one serves, the views and ``.rhfs``), wraps
each in its guard, and assembles them into one :class:`Core`: the mount table's VFS, the
systems by name, the catalog and the copy planner. Every face takes a core: the mount
daemon, the ``rhfs://`` fsspec face, ``rhfs cp`` and the Python API, so every face sees
the same systems under the same names and changes them through the same objects.
Nothing outside this module and :mod:`rhfs.backends` constructs a backend.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from rhfs import log as rhfs_log
from rhfs.backends.base import Backend
from rhfs.backends.cluster import ClusterBackend
from rhfs.backends.guard import Guarded
from rhfs.backends.local import LocalBackend
from rhfs.backends.object_api import option_problems
from rhfs.backends.store import StoreBackend
from rhfs.catalog import Catalog, open_catalog
from rhfs.config import Config, ConfigProblems, expand
from rhfs.stats import Stats
from rhfs.transfer import Planner, build_planner
from rhfs.tree import MountTable
from rhfs.vfs.control import CONTROL_MOUNT, ControlView
from rhfs.vfs.core import Vfs
from rhfs.vfs.readahead import ReadAhead
from rhfs.views import ViewGuard
from rhfs.views.systems import LOCAL, Systems

CATALOG_TTL_SHARE = 0.5  # a mount caches catalog documents for this share of attr_ttl


@dataclass(frozen=True)
class Core:
    """The tree and what acts on it, built once per process and config."""

    config: Config
    stats: Stats
    vfs: Vfs  # the tree's operations, over the mount table
    systems: Systems  # system names and catalog addresses -> locations
    catalog: Catalog
    planner: Planner  # whole-file copies between any two locations
    control: ControlView  # .rhfs/: status.json and stats.json, also served as metrics


def make_store(config: Config, name: str, stats: Stats | None = None) -> StoreBackend:
    store = config.stores[name]
    on_bucket = partial(stats.record_bucket, name) if stats is not None else None
    return StoreBackend(name, store.protocol, store.options, store.buckets, on_bucket=on_bucket)


def construction_problems(config: Config) -> list[str]:
    """What stops a configured store from being made, one line each, naming the file, the
    table and the key: a protocol fsspec does not know, or an option its filesystem does not
    take (which its client would refuse only at the first request)."""
    source = config.source or "embedded default"
    return [
        f"{source}: [stores.{name}] {key}: {problem}"
        for name, store in config.stores.items()
        for key, problem in option_problems(store.protocol, store.options)
    ]


def check_constructible(config: Config) -> None:
    """Raise :class:`ConfigProblems` with every line of :func:`construction_problems`."""
    problems = construction_problems(config)
    if problems:
        raise ConfigProblems(problems)


def make_cluster(config: Config, name: str, stats: Stats | None = None) -> ClusterBackend:
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
        session_idle=c.session_idle,
        stats=stats,
    )


def raw_backends(
    config: Config, mountpoint: str | None = None, stats: Stats | None = None
) -> dict[str, Backend]:
    """Mount key -> unguarded backend, for every system in the config (sessions and bucket
    states counted in ``stats``); :class:`ConfigProblems` if one cannot be made."""
    check_constructible(config)
    hidden = (os.path.abspath(mountpoint),) if mountpoint else ()
    backends: dict[str, Backend] = {"here": LocalBackend(expand(config.here.root), hidden=hidden)}
    for name in config.clusters:
        backends[f"clusters/{name}"] = make_cluster(config, name, stats)
    for name in config.stores:
        backends[name] = make_store(config, name, stats)
    return backends


def system_keys(config: Config) -> list[str]:
    """The mount key of every system in the config, as :func:`raw_backends` makes them."""
    return ["here", *(f"clusters/{name}" for name in config.clusters), *config.stores]


def guarded_systems(
    config: Config, stats: Stats, *, op_timeout: float, retry_interval: float = 2.0
) -> dict[str, Guarded]:
    """Mount key -> guarded backend, for every system in the config, outside any tree
    (``rhfs config check`` probes each one with its own time limit)."""
    return {
        key: Guarded(backend, stats, op_timeout=op_timeout, retry_interval=retry_interval)
        for key, backend in raw_backends(config).items()
    }


def build_core(
    config: Config,
    *,
    mountpoint: str | None = None,
    read_only: bool = False,
    spool_dir: str | None = None,
    stats: Stats | None = None,
    extra_status: Callable[[], dict[str, Any]] | None = None,
) -> Core:
    """The core over ``config``.

    The daemon gives ``mountpoint`` (hidden from ``here/`` and the ``file`` system, and
    shown in ``.rhfs/status.json``, with what ``extra_status`` adds), ``read_only``
    (``rhfs mount --read-only``, beside the config's own) and the ``spool_dir`` it claimed;
    in-process faces give none of them.
    """
    from rhfs.views.blobs import BlobsView
    from rhfs.views.parts import Converter
    from rhfs.views.tables import TablesView

    for secret in config.secrets():
        rhfs_log.register_secret(secret)
    stats = stats or Stats()
    read_only = read_only or config.mount.read_only
    timeout = config.mount.op_timeout

    def guard(backend: Backend) -> Guarded:
        return Guarded(backend, stats, op_timeout=timeout)

    def default_store(name: str, protocol: str) -> Guarded:
        return guard(StoreBackend(name, protocol, {}))  # the provider's standard credential chain

    mounts = {key: guard(backend) for key, backend in raw_backends(config, mountpoint, stats).items()}
    hidden = (mountpoint,) if mountpoint else ()
    local = guard(LocalBackend("/", system=LOCAL, hidden=hidden))
    systems = Systems(config, mounts, local, hidden, default_store=default_store)
    catalog = open_catalog(systems, config.catalog.url, ttl=config.mount.attr_ttl * CATALOG_TTL_SHARE)
    cache_dir = expand(config.mount.cache_dir)
    default_url = config.tables.default_url
    tables = TablesView(
        catalog, systems, Converter(cache_dir), default_url=default_url, wrap_reader=ReadAhead
    )
    blobs = BlobsView(catalog, systems, default_url=default_url, wrap_reader=ReadAhead)
    daemon = None
    if mountpoint:
        source = config.source or "embedded default"
        daemon = {
            "mountpoint": mountpoint,
            "config": source,
            "read_only": read_only,
            "started_at": stats.started_at,
        }
    shown = [backend.system for backend in mounts.values()]  # status.json's systems: the tree's
    control = ControlView(stats, config, extra_status, daemon=daemon, systems=shown)
    table = MountTable(
        {
            **mounts,
            CONTROL_MOUNT: guard(control),
            "tables": ViewGuard(tables, stats, workers=1),
            "blobs": ViewGuard(blobs, stats, workers=1),
        }
    )
    planner = build_planner(config, table, stats, os.path.join(cache_dir, "relay"))
    vfs = Vfs(
        table,
        cache_dir=cache_dir,
        attr_ttl=config.mount.attr_ttl,
        read_only=read_only,
        stats=stats,
        copier=planner,
        spool_dir=spool_dir,
    )
    return Core(
        config=config,
        stats=stats,
        vfs=vfs,
        systems=systems,
        catalog=catalog,
        planner=planner,
        control=control,
    )
