"""The Prometheus endpoint: ``.rhfs/stats.json`` and ``.rhfs/status.json`` as metrics.

A face over the core's counters, opt in with ``[mount] metrics_address = "HOST:PORT"``. The
daemon serves ``http://HOST:PORT/metrics`` (any path answers the same) from a thread of
``prometheus_client``'s own HTTP server. Nothing is counted twice: each scrape reads the
same :class:`~rhfs.stats.Stats` snapshot and status document that the control files are made
of, so a scrape and a read of ``.rhfs/stats.json`` agree.

Names follow Prometheus's conventions: counters end in ``_total``, sizes are in bytes and
times in seconds, and labels name the ``system`` (a store, a cluster, ``here``, ``tables``,
``blobs``), the copy ``route``, the FUSE ``op`` and the ``errno``. The metrics and their
labels are listed in docs/SEMANTICS.md ("Metrics").
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from rhfs import __version__
from rhfs.config import metrics_endpoint
from rhfs.errors import RhfsError
from rhfs.stats import Stats

log = logging.getLogger(__name__)

HEALTH_STATES = ("ok", "down", "unknown")
# stats.json's per-system byte counters -> the metric each becomes
SYSTEM_BYTES = {
    "bytes_read": ("rhfs_read_bytes", "Bytes read from the system by the daemon."),
    "bytes_written": ("rhfs_written_bytes", "Bytes written to the system by the daemon."),
    "bytes_relayed": ("rhfs_relayed_bytes", "Bytes of copies relayed through the daemon from the system."),
}
SESSION_COUNTS = {
    "opened": ("rhfs_sessions_opened", "Kept ssh sessions opened on the cluster for copies."),
    "reused": ("rhfs_session_jobs_reused", "Copy jobs sent to a session that was already open."),
}


class RhfsCollector(Collector):
    """Turns one stats snapshot and one status document into metric families, at each scrape."""

    def __init__(self, stats: Stats, status: Callable[[], dict[str, Any]]) -> None:
        self.stats = stats
        self.status = status

    def collect(self) -> Iterator[Metric]:
        snapshot = self.stats.snapshot()
        status = self.status()
        yield from _daemon(snapshot, status)
        yield from _systems(snapshot, status.get("systems", {}))
        yield from _copies(snapshot)
        yield from _sessions(snapshot.get("sessions", {}))


Rows = dict[tuple[str, ...], float]  # label values -> sample value


def _family(
    cls: type[CounterMetricFamily] | type[GaugeMetricFamily],
    name: str,
    documentation: str,
    labels: list[str],
    rows: Rows,
) -> Metric:
    family = cls(name, documentation, labels=labels)
    for values, n in sorted(rows.items()):
        family.add_metric(list(values), n)
    return family


def _counter(name: str, documentation: str, labels: list[str], rows: Rows) -> Metric:
    return _family(CounterMetricFamily, name, documentation, labels, rows)


def _gauge(name: str, documentation: str, labels: list[str], rows: Rows) -> Metric:
    return _family(GaugeMetricFamily, name, documentation, labels, rows)


def _daemon(snapshot: dict[str, Any], status: dict[str, Any]) -> Iterator[Metric]:
    yield _gauge("rhfs_build_info", "Always 1; the version of the daemon.", ["version"], {(__version__,): 1})
    yield _gauge("rhfs_uptime_seconds", "Seconds since the daemon started.", [], {(): snapshot["uptime_s"]})
    yield _counter(
        "rhfs_ops",
        "FUSE operations served, by operation.",
        ["op"],
        {(k,): v for k, v in snapshot["ops"].items()},
    )
    yield _counter(
        "rhfs_errors",
        "Operations that failed, by the errno they answered.",
        ["errno"],
        {(k,): v for k, v in snapshot["errors"].items()},
    )
    kept = status.get("failed_uploads")
    if isinstance(kept, dict):
        yield _gauge(
            "rhfs_failed_uploads",
            "Uploads kept under cache_dir/failed/, by whether a retry may upload them.",
            ["retryable"],
            {("true",): kept.get("retryable", 0), ("false",): kept.get("refused", 0)},
        )
        yield _gauge(
            "rhfs_failed_upload_bytes", "Bytes kept under cache_dir/failed/.", [], {(): kept.get("bytes", 0)}
        )


def _systems(snapshot: dict[str, Any], health: dict[str, Any]) -> Iterator[Metric]:
    traffic: dict[str, Any] = snapshot["systems"]
    for key, (name, documentation) in SYSTEM_BYTES.items():
        yield _counter(name, documentation, ["system"], {(s,): t[key] for s, t in traffic.items()})
    yield _counter(
        "rhfs_requests",
        "Reads and writes the daemon sent to the system.",
        ["system"],
        {(s,): t["requests"] for s, t in traffic.items()},
    )
    calls: Rows = {(s, what): n for s, t in traffic.items() for what, n in t["metadata_calls"].items()}
    yield _counter(
        "rhfs_metadata_calls", "Listings and stats asked of the system.", ["system", "call"], calls
    )
    states: Rows = {
        (name, h.get("kind", "?"), state): float(h.get("health") == state)
        for name, h in health.items()
        for state in HEALTH_STATES
    }
    yield _gauge(
        "rhfs_system_health",
        "1 for the system's health now (ok, down, or unknown before its first call), 0 for the others.",
        ["system", "kind", "state"],
        states,
    )
    yield _gauge(
        "rhfs_system_up",
        "1 while the system answers, 0 while it is down or not yet called.",
        ["system", "kind"],
        {(name, h.get("kind", "?")): float(h.get("health") == "ok") for name, h in health.items()},
    )
    latency: Rows = {
        (name,): h["latency_ms"] / 1000 for name, h in health.items() if h.get("latency_ms") is not None
    }
    yield _gauge(
        "rhfs_system_latency_seconds",
        "Moving average of the latency of calls to the system.",
        ["system"],
        latency,
    )


def _copies(snapshot: dict[str, Any]) -> Iterator[Metric]:
    copies: dict[str, Any] = snapshot["copies"]
    yield _counter(
        "rhfs_copies",
        "Whole-file copies, by route.",
        ["route"],
        {(r,): c["count"] for r, c in copies.items()},
    )
    yield _counter(
        "rhfs_copy_bytes",
        "Bytes of whole-file copies, by route.",
        ["route"],
        {(r,): c["bytes"] for r, c in copies.items()},
    )
    trees = snapshot["trees"]
    yield _counter("rhfs_tree_jobs", "Tree jobs (rhfs cp -r, .to()).", [], {(): trees["jobs"]})
    yield _counter(
        "rhfs_tree_files",
        "Files copied by tree jobs, by route.",
        ["route"],
        {(r,): n for r, n in trees["routes"].items()},
    )
    yield _counter("rhfs_tree_bytes", "Bytes copied by tree jobs.", [], {(): trees["bytes"]})
    yield _counter(
        "rhfs_tree_skipped_files", "Files tree jobs skipped as unchanged.", [], {(): trees["skipped"]}
    )


def _sessions(sessions: dict[str, Any]) -> Iterator[Metric]:
    per_system: dict[str, Any] = sessions.get("systems", {})
    for key, (name, documentation) in SESSION_COUNTS.items():
        yield _counter(name, documentation, ["system"], {(s,): c[key] for s, c in per_system.items()})
    yield _gauge(
        "rhfs_sessions_open",
        "Kept ssh sessions open on the cluster now.",
        ["system"],
        {(s,): c["open"] for s, c in per_system.items()},
    )


def serve(address: str, stats: Stats, status: Callable[[], dict[str, Any]]) -> None:
    """Serve the metrics at ``address`` (``HOST:PORT``) from a daemon thread; RhfsError if it cannot."""
    host, port = metrics_endpoint(address)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RhfsCollector(stats, status))
    try:
        start_http_server(port, addr=host, registry=registry)
    except OSError as e:
        raise RhfsError(f"cannot serve metrics at {address}: {e.strerror or e}") from None
    log.info("serving Prometheus metrics at http://%s/metrics", address)
