"""Can every configured system, and every configured bucket, be reached? (``rhfs config check``,
and the mount's own check at start.)

A system is tried by listing its root; a store with configured buckets by looking up each
bucket (one LIST of at most one key). All systems are tried at once, each through its
guard, so one hung system costs its own time limit and no more. Each result is one
:class:`Reach` with a state in the user's terms: ``ok``, ``missing`` (no such bucket),
``denied`` (the credentials may not list it), ``unreachable`` (no answer, or a connection
failure) or ``failed`` (any other error).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from rhfs.config import Config
from rhfs.errors import NotFound, PermissionDenied, TimedOut, Unavailable, first_line

log = logging.getLogger(__name__)
OK, MISSING, DENIED, UNREACHABLE, FAILED = "ok", "missing", "denied", "unreachable", "failed"
SAYS = {
    MISSING: "does not exist",
    DENIED: "access denied",
    UNREACHABLE: "unreachable",
    FAILED: "failed",
}


@dataclass(frozen=True)
class Reach:
    name: str  # the mount key: s3, clusters/cluster-a ...
    family: str  # as the backend declares it: "store", "cluster", ...
    state: str  # ok, missing, denied, unreachable, failed
    detail: str  # the time it took, or why it failed (not yet redacted)
    bucket: str | None = None  # the configured bucket this is about; None: the system itself

    @property
    def ok(self) -> bool:
        return self.state == OK

    @property
    def where(self) -> str:
        return f"{self.name}/{self.bucket}" if self.bucket else self.name

    def line(self) -> str:
        """One line for the user: ``s3/nope: bucket does not exist (no bucket nope)``."""
        what = "bucket " if self.bucket else ""
        return f"{self.where}: {what}{SAYS.get(self.state, self.state)} ({self.detail})"


def state_of(exc: BaseException) -> str:
    """A failure, as the guard raised it, in the user's terms."""
    if isinstance(exc, NotFound):
        return MISSING
    if isinstance(exc, PermissionDenied | PermissionError):
        return DENIED
    if isinstance(exc, Unavailable | TimedOut):
        return UNREACHABLE
    return FAILED


def probe_all(config: Config, timeout: float) -> list[Reach]:
    """Every configured system, each through a fresh guard with ``timeout`` per call."""
    from rhfs.stats import Stats
    from rhfs.wiring import guarded_systems

    systems = guarded_systems(config, Stats(), op_timeout=timeout, retry_interval=0)
    return check(systems, config)


def check(
    systems: Mapping[str, Any], config: Config, on_result: Callable[[Reach], None] | None = None
) -> list[Reach]:
    """Try each of ``systems`` (mount key -> guarded backend) at once; ``on_result`` hears each
    result as it comes."""
    items = [
        (key, backend, bucket)
        for key, backend in systems.items()
        for bucket in _buckets(config, key) or (None,)
    ]

    def one(item: tuple[str, Any, str | None]) -> Reach:
        reach = _probe(*item)
        if on_result is not None:
            on_result(reach)
        return reach

    with ThreadPoolExecutor(max_workers=max(1, len(items))) as pool:
        return list(pool.map(one, items))


def _buckets(config: Config, key: str) -> tuple[str, ...]:
    store = config.stores.get(key)
    return tuple(store.buckets or ()) if store else ()


def _probe(name: str, backend: Any, bucket: str | None) -> Reach:
    family = backend.traits.family
    started = time.monotonic()
    try:
        if bucket is None:
            backend.list("")
        else:
            backend.stat(bucket)
    except Exception as e:
        detail = f"no bucket {bucket}" if bucket and isinstance(e, NotFound) else first_line(e)
        return Reach(name, family, state_of(e), detail, bucket)
    ms = (time.monotonic() - started) * 1000
    return Reach(name, family, OK, f"in {ms:.0f} ms", bucket)


class MountCheck:
    """The mount's own check at start: every configured system and bucket, tried once in the
    background through the tree's guards, so that the mount answers meanwhile.

    Its :meth:`status` is part of ``.rhfs/status.json`` (``startup_check``): whether it is
    done, what is still being tried, and one line per problem, which ``rhfs mount`` prints
    and the daemon logs. Each bucket found not ``ok`` is recorded as such in ``stats`` (the
    store itself records what each later look-up finds)."""

    def __init__(self, systems: Mapping[str, Any], config: Config, stats: Any) -> None:
        self.systems, self.config, self.stats = dict(systems), config, stats
        self.done = threading.Event()
        self._lock = threading.Lock()
        self._pending = {
            Reach(k, "", OK, "", b).where for k in self.systems for b in _buckets(config, k) or (None,)
        }
        self._problems: list[str] = []

    def start(self) -> None:
        threading.Thread(target=self._run, name="rhfs-mount-check", daemon=True).start()

    def _run(self) -> None:
        try:
            check(self.systems, self.config, self._heard)
        finally:
            self.done.set()

    def _heard(self, reach: Reach) -> None:
        if reach.bucket and not reach.ok:
            self.stats.record_bucket(self.systems[reach.name].system, reach.bucket, reach.state, reach.detail)
        if not reach.ok:
            log.warning("%s", reach.line())
        with self._lock:
            self._pending.discard(reach.where)
            if not reach.ok:
                self._problems.append(reach.line())

    def status(self) -> dict[str, Any]:
        with self._lock:
            return {
                "startup_check": {
                    "done": self.done.is_set(),
                    "pending": sorted(self._pending),
                    "problems": sorted(self._problems),
                }
            }
