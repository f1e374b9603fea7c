"""Traffic and health counters, shown in ``.rhfs/stats.json`` and ``.rhfs/status.json``.

Counters are per system (``s3``, ``cluster-a``, ``here``...): bytes read from it,
bytes written to it, bytes relayed through the daemon, and the metadata calls
(``list``, ``stat``) the VFS made to it; plus ops, errors by errno, copies by
route, and clusters' kept ssh sessions (opened, reused by a job, open now). All
methods are thread-safe and cheap.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from rhfs.errors import errno_name


@dataclass
class SystemHealth:
    family: str  # the system's family, as its backend declares it ("store", "cluster", ...)
    healthy: bool = True
    last_error: str | None = None
    last_error_at: float | None = None
    last_ok_at: float | None = None
    latency_ms: float | None = None  # exponential moving average of call latency
    down_since: float | None = None
    # each configured bucket's state (ok, missing, denied, unreachable, failed) and last error
    buckets: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class Stats:
    started_at: float = field(default_factory=time.time)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    bytes_read: Counter[str] = field(default_factory=Counter)
    bytes_written: Counter[str] = field(default_factory=Counter)
    bytes_relayed: Counter[str] = field(default_factory=Counter)
    requests: Counter[str] = field(default_factory=Counter)
    metadata_calls: Counter[tuple[str, str]] = field(default_factory=Counter)  # (system, "list"/"stat")
    ops: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    copies: Counter[str] = field(default_factory=Counter)
    sessions: Counter[tuple[str, str]] = field(default_factory=Counter)  # (system, "opened"/"reused"/"open")
    health: dict[str, SystemHealth] = field(default_factory=dict)
    _route_bytes: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))
    trees: Counter[str] = field(default_factory=Counter)  # tree jobs: "jobs", "files", "bytes", "skipped"
    tree_routes: Counter[str] = field(default_factory=Counter)  # files of tree jobs, by route

    def add_read(self, system: str, n: int) -> None:
        with self._lock:
            self.bytes_read[system] += n
            self.requests[system] += 1

    def add_written(self, system: str, n: int) -> None:
        with self._lock:
            self.bytes_written[system] += n
            self.requests[system] += 1

    def add_metadata_call(self, system: str, what: str) -> None:
        with self._lock:
            self.metadata_calls[(system, what)] += 1

    def add_relayed(self, system: str, n: int) -> None:
        with self._lock:
            self.bytes_relayed[system] += n

    def add_op(self, op: str) -> None:
        with self._lock:
            self.ops[op] += 1

    def add_error(self, code: int) -> None:
        name = errno_name(code)
        with self._lock:
            self.errors[name] += 1

    def add_copy(self, route: str, nbytes: int = 0) -> None:
        with self._lock:
            self.copies[route] += 1
            self._route_bytes[route] += nbytes

    def add_tree(self, routes: dict[str, int], nbytes: int, skipped: int) -> None:
        """One tree job: its files by route, the bytes of the files copied, the files skipped."""
        with self._lock:
            self.trees.update(jobs=1, files=sum(routes.values()), bytes=nbytes, skipped=skipped)
            self.tree_routes.update(routes)

    def add_session(self, system: str, *, opened: bool) -> None:
        """A job ran on ``system``'s kept session: one it opened for it, or one already open."""
        with self._lock:
            self.sessions[(system, "opened" if opened else "reused")] += 1
            if opened:
                self.sessions[(system, "open")] += 1

    def end_session(self, system: str) -> None:
        with self._lock:
            self.sessions[(system, "open")] -= 1

    def register_system(self, system: str, family: str) -> None:
        with self._lock:
            self.health.setdefault(system, SystemHealth(family=family))

    def record_ok(self, system: str, seconds: float) -> None:
        now = time.time()
        with self._lock:
            h = self.health.setdefault(system, SystemHealth(family="?"))
            ms = seconds * 1000
            h.latency_ms = ms if h.latency_ms is None else 0.8 * h.latency_ms + 0.2 * ms
            h.last_ok_at = now
            h.healthy = True
            h.down_since = None

    def record_failure(self, system: str, message: str) -> None:
        now = time.time()
        with self._lock:
            h = self.health.setdefault(system, SystemHealth(family="?"))
            h.last_error = message
            h.last_error_at = now
            if h.healthy:
                h.down_since = now
            h.healthy = False

    def record_bucket(self, system: str, bucket: str, state: str, error: str | None = None) -> None:
        """What a look-up of one of ``system``'s configured buckets found; an error is kept
        until the bucket is found ``ok`` again, as the system's ``last_error`` is."""
        now = time.time()
        with self._lock:
            h = self.health.setdefault(system, SystemHealth(family="?"))
            previous = h.buckets.get(bucket, {})
            record = {"state": state, "checked_at": now}
            if error is None:
                record |= {k: previous[k] for k in ("last_error", "last_error_at") if k in previous}
            else:
                record |= {"last_error": error, "last_error_at": now}
            h.buckets[bucket] = record

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            systems = sorted(set(self.bytes_read) | set(self.bytes_written) | set(self.health))
            return {
                "uptime_s": round(time.time() - self.started_at, 3),
                "ops": dict(self.ops),
                "errors": dict(self.errors),
                "copies": {
                    route: {"count": n, "bytes": self._route_bytes[route]} for route, n in self.copies.items()
                },
                "trees": {**{k: self.trees[k] for k in ("jobs", "files", "bytes", "skipped")}}
                | {"routes": dict(self.tree_routes)},
                "sessions": self._sessions(),
                "systems": {
                    s: {
                        "bytes_read": self.bytes_read[s],
                        "bytes_written": self.bytes_written[s],
                        "bytes_relayed": self.bytes_relayed[s],
                        "requests": self.requests[s],
                        "metadata_calls": {
                            what: n
                            for (system, what), n in sorted(self.metadata_calls.items())
                            if system == s
                        },
                    }
                    for s in systems
                },
            }

    def _sessions(self) -> dict[str, Any]:
        """Totals over every cluster, and each cluster's own under ``systems``."""
        counts = ("opened", "reused", "open")
        systems = sorted({system for system, _ in self.sessions})
        out: dict[str, Any] = {w: sum(n for (_, k), n in self.sessions.items() if k == w) for w in counts}
        out["systems"] = {s: {what: self.sessions[(s, what)] for what in counts} for s in systems}
        return out

    def status(self) -> dict[str, Any]:
        with self._lock:
            return {
                name: {
                    "kind": h.family,
                    "health": "ok" if h.healthy else "down",
                    "last_error": h.last_error,
                    "last_error_at": h.last_error_at,
                    "last_ok_at": h.last_ok_at,
                    "latency_ms": None if h.latency_ms is None else round(h.latency_ms, 2),
                    "down_since": h.down_since,
                    **({"buckets": {b: dict(r) for b, r in sorted(h.buckets.items())}} if h.buckets else {}),
                }
                for name, h in sorted(self.health.items())
            }
