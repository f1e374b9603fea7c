"""Attribute and listing caches with a time-to-live.

Entries live for ``ttl`` seconds (``attr_ttl`` of the config). The mount's own
changes invalidate what they touch, so changes made through the mount are seen
at once; changes made elsewhere are seen within ``ttl``.

Invariant: a listing implies the attributes of its children; a cached listing
is dropped whenever one of its children changes. A change in a directory changes
the directory itself (mtime, ctime), so its attributes are dropped with it.

A listing also records the names in its directory, so that a lookup of any other
name is answered "absent" without asking the system (cp -r into a directory makes
one request per file, its upload). The names are kept current with the mount's own
changes: every invalidated path is added back to its directory's names, so a name
is only ever answered absent when no listing within ``ttl`` had it and the mount
has not touched it since.

After an upload the mount keeps what it knows of the new object (``put_uploaded``): a
``stat`` within ``ttl`` then costs no request. Such an entry has no version from the
system; whoever needs one (a reader pinning the version it opened) asks the system.
"""

from __future__ import annotations

import posixpath
import threading
import time

from rhfs.backends.base import Entry

RELIST_NAMES = 1000  # one LIST page on S3
NAMED_DIRS = 4096  # directories whose names are kept (the oldest are forgotten first)


class MetadataCache:
    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._entries: dict[str, tuple[Entry, float]] = {}
        self._listings: dict[str, tuple[list[Entry], float]] = {}
        self._names: dict[str, tuple[set[str], float]] = {}  # directory -> names that may exist
        self._touched: dict[str, dict[str, float]] = {}  # directory -> name -> when the mount touched it
        self._local: dict[str, Entry] = {}  # path -> the entry the mount made itself after an upload
        self._lock = threading.Lock()

    def get_entry(self, path: str) -> Entry | None:
        with self._lock:
            hit = self._entries.get(path)
            if hit is None:
                return None
            if hit[1] < time.monotonic():
                del self._entries[path]
                self._local.pop(path, None)
                return None
            return hit[0]

    def put_entry(self, path: str, entry: Entry) -> None:
        if self.ttl <= 0:
            return
        with self._lock:
            self._entries[path] = (entry, time.monotonic() + self.ttl)
            self._local.pop(path, None)

    def put_uploaded(self, path: str, entry: Entry) -> None:
        """The mount has just uploaded ``path``: ``entry`` is what it knows of the new object
        without asking (size, time of the last write), and has no version from the system."""
        self.invalidate(path)
        if self.ttl <= 0:
            return
        with self._lock:
            self._entries[path] = (entry, time.monotonic() + self.ttl)
            self._local[path] = entry

    def is_uploaded(self, path: str, entry: Entry) -> bool:
        """Is ``entry`` the mount's own idea of ``path`` after an upload (see put_uploaded)?"""
        with self._lock:
            return self._local.get(path) is entry

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
            self._names.pop(path, None)
            self._names[path] = ({entry.name for entry in entries} | self._recent(path), expires)
            self._forget_oldest_names()
            for entry in entries:
                self._entries[prefix + entry.name] = (entry, expires)
                if self._local:
                    self._local.pop(prefix + entry.name, None)

    def known_absent(self, path: str) -> bool:
        """Is ``path`` absent from its directory's last listing (and untouched by the mount since)?"""
        with self._lock:
            hit = self._names.get(posixpath.dirname(path))
            if hit is None or hit[1] < time.monotonic():
                return False
            return posixpath.basename(path) not in hit[0]

    def worth_relisting(self, path: str) -> bool:
        """Did ``path`` have a listing of at most RELIST_NAMES names, now expired? One LIST then
        answers every lookup in it, where each lookup of a new name would cost a request."""
        with self._lock:
            hit = self._names.get(path)
            return hit is not None and hit[1] < time.monotonic() and len(hit[0]) <= RELIST_NAMES

    def knows_dir(self, path: str) -> bool:
        """Was ``path`` listed (or made empty by the mount) within ``ttl``: a directory that exists?"""
        with self._lock:
            hit = self._names.get(path)
            return hit is not None and hit[1] >= time.monotonic()

    def new_empty_dir(self, path: str) -> None:
        """The mount has just made ``path`` as an empty directory."""
        if self.ttl > 0:
            with self._lock:
                self._names[path] = (set(), time.monotonic() + self.ttl)
                self._forget_oldest_names()

    def _forget_oldest_names(self) -> None:
        """Keep the names of at most NAMED_DIRS directories (lock held)."""
        while len(self._names) > NAMED_DIRS:
            self._touched.pop(next(iter(self._names)), None)
            del self._names[next(iter(self._names))]

    def _touch(self, path: str) -> None:
        """``path`` may now exist: never answer it absent from an older listing, nor from a
        listing that was under way when the mount touched it (lock held)."""
        parent, name = posixpath.split(path)
        hit = self._names.get(parent)
        if hit is not None:
            hit[0].add(name)
        now = time.monotonic()
        touched = self._touched.setdefault(parent, {})
        touched[name] = now
        if len(touched) > 64:
            for old in [n for n, t in touched.items() if now - t > self.ttl]:
                del touched[old]
        if len(self._touched) > NAMED_DIRS:  # touches older than ttl matter to no listing
            for old_dir in [d for d, names in self._touched.items() if now - max(names.values()) > self.ttl]:
                del self._touched[old_dir]
            while len(self._touched) > NAMED_DIRS:
                del self._touched[next(iter(self._touched))]

    def _recent(self, path: str) -> set[str]:
        """Names in ``path`` the mount touched within ``ttl`` (lock held)."""
        now = time.monotonic()
        return {n for n, t in self._touched.get(path, {}).items() if now - t <= self.ttl}

    def invalidate(self, path: str) -> None:
        """Forget ``path``, its listing, and its parent's listing and attributes."""
        with self._lock:
            self._entries.pop(path, None)
            self._local.pop(path, None)
            self._listings.pop(path, None)
            self._forget_parent(path)
            self._touch(path)

    def _forget_parent(self, path: str) -> None:
        """A change at ``path`` changes its parent too (its mtime and ctime): forget the parent's
        listing, its attributes, and the listing above that holds them (lock held)."""
        parent = posixpath.dirname(path)
        self._listings.pop(parent, None)
        self._entries.pop(parent, None)
        self._listings.pop(posixpath.dirname(parent), None)

    def invalidate_tree(self, path: str) -> None:
        """Forget ``path`` and everything below it (after a directory rename or removal)."""
        prefix = path.rstrip("/") + "/"
        with self._lock:
            for table in (self._entries, self._local, self._listings, self._names, self._touched):
                for key in [k for k in table if k == path or k.startswith(prefix)]:
                    del table[key]
            self._forget_parent(path)
            self._touch(path)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._local.clear()
            self._listings.clear()
            self._names.clear()
            self._touched.clear()
