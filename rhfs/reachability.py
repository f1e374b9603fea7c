"""``rhfs config check``'s probe: can every configured system be reached?

Each system is listed (a store: its root and each configured bucket) through a
fresh guarded backend with the caller's time limit, all systems at once, so one
hung system costs its own time limit and no more.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from rhfs.config import Config


@dataclass(frozen=True)
class Reach:
    name: str  # the mount key: s3, clusters/cluster-a ...
    family: str  # as the backend declares it: "store", "cluster", ...
    ok: bool
    detail: str  # the time it took, or why it failed (not yet redacted)


def probe_all(config: Config, timeout: float) -> list[Reach]:
    checks = _checks(config, timeout)
    with ThreadPoolExecutor(max_workers=max(1, len(checks))) as pool:
        return list(pool.map(lambda item: _probe(*item), checks.items()))


def _checks(config: Config, timeout: float) -> dict[str, tuple[Any, list[str]]]:
    """Mount key -> (guarded backend, paths to list): a store's buckets, or the system's root."""
    from rhfs.stats import Stats
    from rhfs.wiring import guarded_systems

    checks: dict[str, tuple[Any, list[str]]] = {}
    for key, guarded in guarded_systems(config, Stats(), op_timeout=timeout, retry_interval=0).items():
        store = config.stores.get(key)
        checks[key] = (guarded, ["", *(store.buckets or ())] if store else [""])
    return checks


def _probe(name: str, item: tuple[Any, list[str]]) -> Reach:
    backend, paths = item
    started = time.monotonic()
    try:
        for path in paths:
            backend.list(path)
    except Exception as e:
        where = f"{path}: " if path else ""
        return Reach(name, backend.traits.family, False, f"{where}{e}")
    ms = (time.monotonic() - started) * 1000
    listed = f"listed {', '.join(p for p in paths if p)} " if len(paths) > 1 else ""
    return Reach(name, backend.traits.family, True, f"{listed}in {ms:.0f} ms")
