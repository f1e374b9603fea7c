"""Attribute and listing caches with a time-to-live.

Entries live for ``ttl`` seconds (``attr_ttl`` of the config). The mount's own
changes invalidate what they touch, so changes made through the mount are seen
at once; changes made elsewhere are seen within ``ttl``.

Invariant: a listing implies the attributes of its children; a cached listing
is dropped whenever one of its children changes.
"""

from __future__ import annotations

import posixpath
import threading
import time

from rhfs.backends.base import Entry


class MetadataCache:
    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._entries: dict[str, tuple[Entry, float]] = {}
        self._listings: dict[str, tuple[list[Entry], float]] = {}
        self._lock = threading.Lock()

    def get_entry(self, path: str) -> Entry | None:
        with self._lock:
            hit = self._entries.get(path)
            if hit is None:
                return None
            if hit[1] < time.monotonic():
                del self._entries[path]
                return None
            return hit[0]

    def put_entry(self, path: str, entry: Entry) -> None:
        if self.ttl <= 0:
            return
        with self._lock:
            self._entries[path] = (entry, time.monotonic() + self.ttl)

    def get_listing(self, path: str) -> list[Entry] | None:
        with self._lock:
            hit = self._listings.get(path)
            if hit is None:
                return None
            if hit[1] < time.monotonic():
                del self._listings[path]
                return None
            return hit[0]

    def put_listing(self, path: str, entries: list[Entry]) -> None:
        if self.ttl <= 0:
            return
        expires = time.monotonic() + self.ttl
        prefix = path.rstrip("/") + "/"
        with self._lock:
            self._listings[path] = (entries, expires)
            for entry in entries:
                self._entries[prefix + entry.name] = (entry, expires)

    def invalidate(self, path: str) -> None:
        """Forget ``path``, its listing, and its parent's listing."""
        with self._lock:
            self._entries.pop(path, None)
            self._listings.pop(path, None)
            self._listings.pop(posixpath.dirname(path), None)

    def invalidate_tree(self, path: str) -> None:
        """Forget ``path`` and everything below it (after a directory rename or removal)."""
        prefix = path.rstrip("/") + "/"
        with self._lock:
            for table in (self._entries, self._listings):
                for key in [k for k in table if k == path or k.startswith(prefix)]:
                    del table[key]
            self._listings.pop(posixpath.dirname(path), None)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._listings.clear()
