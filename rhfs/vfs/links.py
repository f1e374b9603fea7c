"""The other names of hard-linked files, so that a change through one name reaches them all.

A file with several names (a link count over 1) is one file on its system, but the kernel and
the metadata cache hold one set of attributes per name: after a ``chmod``, ``link`` or
``unlink`` through one name, the others would show the old mode or link count until their
attributes expire. :class:`LinkedNames` remembers, for every file seen with more than one
link whose system gives its identity (:attr:`~rhfs.backends.base.Entry.ino`), the names it
was seen under; the VFS forgets what it holds of those names whenever one of them changes,
and asks the face to make the kernel forget them too.

Its lock is a leaf (the thread model is in :mod:`rhfs.vfs.core`).
"""

from __future__ import annotations

import threading

from rhfs.backends.base import Entry

KEPT_NAMES = 16384  # names remembered at most; past that, the oldest files are forgotten first

Key = tuple[str, int]  # (the system, the file's identity there)


class LinkedNames:
    def __init__(self) -> None:
        self._names: dict[Key, set[str]] = {}  # insertion order: the oldest first
        self._key_of: dict[str, Key] = {}
        self._lock = threading.Lock()

    def note(self, system: str, path: str, entry: Entry) -> None:
        """``path`` names ``entry``: remember it if the file has other names."""
        if entry.ino is None or entry.nlink is None or (entry.nlink < 2 and path not in self._key_of):
            return
        key = (system, entry.ino)
        with self._lock:
            old = self._key_of.get(path)
            if old == key:
                return
            if old is not None:
                self._drop(path, old)
            self._names.setdefault(key, set()).add(path)
            self._key_of[path] = key
            while len(self._key_of) > KEPT_NAMES:
                oldest = next(iter(self._names))
                for name in self._names.pop(oldest):
                    self._key_of.pop(name, None)

    def others(self, path: str) -> list[str]:
        """The other names seen of the file at ``path`` (none if it was never seen linked)."""
        with self._lock:
            key = self._key_of.get(path)
            return [] if key is None else sorted(self._names[key] - {path})

    def moved(self, old: str, new: str) -> None:
        """``old`` and everything under it now lives at ``new``; what was at ``new`` is gone."""
        with self._lock:
            for path in [p for p in self._key_of if p == new or p.startswith(new + "/")]:
                self._drop(path, self._key_of[path])
            for path in [p for p in self._key_of if p == old or p.startswith(old + "/")]:
                key = self._key_of[path]
                self._drop(path, key)
                moved_to = new + path[len(old) :]
                self._names.setdefault(key, set()).add(moved_to)
                self._key_of[moved_to] = key

    def forget(self, path: str) -> None:
        """``path`` no longer names the file (it was unlinked)."""
        with self._lock:
            key = self._key_of.get(path)
            if key is not None:
                self._drop(path, key)

    def _drop(self, path: str, key: Key) -> None:
        """(lock held)"""
        del self._key_of[path]
        names = self._names.get(key)
        if names is not None:
            names.discard(path)
            if not names:
                del self._names[key]
