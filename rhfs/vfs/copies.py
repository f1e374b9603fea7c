"""Whole-file copies inside the tree: who may do one, and the simplest one.

:class:`Copier` is what the VFS asks for a ``copy_file_range`` of a whole file; the
tree's copy planner (:mod:`rhfs.transfer.planner`) is the real one. A copier either
copies and names its route, or raises :class:`~rhfs.errors.CantCopy` so that the
kernel falls back to reads and writes.
"""

from __future__ import annotations

from typing import Protocol

from rhfs.backends.base import Entry
from rhfs.errors import CantCopy
from rhfs.stats import Stats
from rhfs.vfs.tree import Location


class Copier(Protocol):
    def copy(self, src: Location, dst: Location, entry: Entry) -> str:
        """Copy a whole file; return the route's name, or raise CantCopy."""
        ...


class SameSystemCopier:
    """The simplest planner: a server-side copy when both ends are on one system."""

    def __init__(self, stats: Stats) -> None:
        self.stats = stats

    def copy(self, src: Location, dst: Location, entry: Entry) -> str:
        if src.backend is None or src.backend is not dst.backend or not src.backend.has("copy_within"):
            raise CantCopy("no server-side route between these systems")
        src.backend.ability("copy_within", src.rel, dst.rel)
        route = f"{src.backend.kind}-copy"
        self.stats.add_copy(route, entry.size)
        return route
