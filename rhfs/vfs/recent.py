"""A small map that keeps its latest entries, safe to share between FUSE threads.

Used for what readdir returned last (the VFS's listing memo, the adapter's packed
listings): each ``put`` makes its key the newest, and the oldest keys go once there are
more than ``limit``. Every access takes the map's own lock, which is a leaf: nothing
else is locked, and no backend is called, while it is held.
"""

from __future__ import annotations

import threading
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class RecentMap(Generic[K, V]):
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._items: dict[K, V] = {}
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        with self._lock:
            return self._items.get(key)

    def __contains__(self, key: K) -> bool:
        with self._lock:
            return key in self._items

    def put(self, key: K, value: V) -> None:
        with self._lock:
            self._items.pop(key, None)
            self._items[key] = value
            while len(self._items) > self.limit:
                del self._items[next(iter(self._items))]

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)
