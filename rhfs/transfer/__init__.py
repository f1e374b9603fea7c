"""Copies between any two places of the tree, by the best route (docs/SEMANTICS.md "Copies").

:func:`build_planner` gives the :class:`~rhfs.transfer.planner.Planner` the mount
uses for ``copy_file_range`` and ``rhfs cp`` uses outside a mount. Routes, in the
order they are tried:

=================  ==========================================  =====================
route              from → to                                   bytes through daemon
=================  ==========================================  =====================
store-copy         same store account                          none
cluster-cp         same cluster                                none
cluster-push       cluster A → cluster B (forwarded agent)     none
cluster-curl       cluster ↔ store (curl, signed requests)     none
cluster-python     cluster ↔ store (python3, signed requests)  none
transfer-cluster   store → store of another account            none
here-upload        here → anything                             all
here-download      anything → here                             all
relay              anything else                               all, counted relayed
=================  ==========================================  =====================

The routes that run on a cluster send their work as a job of that cluster's kept
session (its ``session`` ability, :mod:`rhfs.backends.cluster_session`), and run one
command for the file only where the session cannot.

Faces that copy whole files themselves (``rhfs cp``, the Python API) call
:meth:`Planner.copy_or_relay`: a file no route may take (a table's converted part, a
write into a table, which the view checks) is relayed between the view's own locations.
"""

from __future__ import annotations

from rhfs.config import Config
from rhfs.stats import Stats
from rhfs.transfer.clusters import ClusterPush
from rhfs.transfer.direct import HereDownload, HereUpload, Relay, sweep
from rhfs.transfer.http_routes import ClusterCurl, ClusterPython, TransferCluster
from rhfs.transfer.planner import Context, CopyFailed, Planner, Route
from rhfs.transfer.server import ClusterCp, StoreCopy
from rhfs.transfer.tools import ToolCache
from rhfs.tree import MountTable

ROUTES: tuple[type[Route], ...] = (
    StoreCopy,
    ClusterCp,
    ClusterPush,
    ClusterCurl,
    ClusterPython,
    TransferCluster,
    HereUpload,
    HereDownload,
    Relay,
)


def build_planner(
    config: Config, table: MountTable, stats: Stats, spool_dir: str, *, tools: ToolCache | None = None
) -> Planner:
    """The planner over ``table``; relayed files are spooled in ``spool_dir`` (stale ones removed now)."""
    sweep(spool_dir)
    ctx = Context(
        stats=stats,
        config=config,
        table=table,
        spool_dir=spool_dir,
        tools=tools or ToolCache(),
        op_timeout=config.mount.op_timeout,
    )
    routes = [route(ctx) for route in ROUTES]
    return Planner(ctx, routes, relay=next(route for route in routes if isinstance(route, Relay)))


__all__ = ["ROUTES", "Context", "CopyFailed", "Planner", "build_planner"]
