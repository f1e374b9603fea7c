"""What every API resource (folder, table, blob) has: an address, a name, the catalog, removal.

A resource is an :class:`~rhfs.catalog.Address` and, once saved, a name in the catalog.
Every read, write and removal goes through the :class:`~rhfs.tree.Location` of the address,
on the tree's own guarded backends; afterwards the VFS forgets exactly what changed.
"""

from __future__ import annotations

from typing import Any

from rhfs.api.places import address_of, changed, copy_tree, session, view_changed
from rhfs.backends.base import Entry
from rhfs.catalog import Address, Resource
from rhfs.errors import InvalidArgument
from rhfs.location_io import NOT_FOUND, remove_tree
from rhfs.tree import Location


def entry_at(loc: Location) -> Entry | None:
    """What the system knows of ``loc``, or None where nothing is there."""
    try:
        return loc.backend.stat(loc.rel)
    except NOT_FOUND:
        return None


class BaseResource:
    kind = "folder"

    def __init__(self, address: Address, name: str | None = None) -> None:
        self.address = address
        self.name = name

    @property
    def system(self) -> str:
        return self.address.system

    @property
    def path(self) -> str:
        return self.address.path

    @property
    def url(self) -> str:
        return session().systems.url(self.address)

    def __repr__(self) -> str:
        label = f"{self.name!r}, " if self.name else ""
        return f"{type(self).__name__}({label}{self.url})"

    def _location(self) -> Location:
        return session().systems.locate(self.address)

    def _changed(self, loc: Location, *, subtree: bool = True) -> None:
        """The tree forgets ``loc``, and what a view shows of this resource's name."""
        s = session()
        changed(s, loc, subtree=subtree)
        if self.name:
            view_changed(s, self.kind, self.name)

    def _catalog_changed(self, name: str) -> None:
        """The tree forgets the catalog document of ``name``, and what a view shows of it."""
        s = session()
        changed(s, s.catalog.document(self.kind, name))
        view_changed(s, self.kind, name)

    def _resource(self, name: str) -> Resource:
        return Resource(kind=self.kind, name=name, system=self.system, path=self.path, url=self.url)

    def save(self, name: str | None = None) -> Any:
        """Record this resource in the catalog under ``name`` (default: its own name)."""
        self.name = name or self.name
        if not self.name:
            raise InvalidArgument(f"a {self.kind} needs a name to be saved")
        session().catalog.put(self._resource(self.name))
        self._catalog_changed(self.name)
        return self

    def _entry(self) -> Entry | None:
        """What the system knows of the resource's place, or None where nothing is there."""
        return entry_at(self._location())

    def exists_in_system(self) -> bool:
        """Whether the data is there: a directory for a folder, a file for a blob."""
        entry = self._entry()
        return entry is not None and entry.is_dir == (self.kind != "blob")

    def ls(self, full_paths: bool = False, sort: bool = False) -> list[str]:
        """The names at the top level, by name (``sort``: newest first, by modification time)."""
        loc = self._location()
        entries = sorted(loc.backend.list(loc.rel), key=lambda e: e.name)
        if sort:
            entries.sort(key=lambda e: e.mtime, reverse=True)
        names = [e.name for e in entries]
        return [self.address.child(n).path for n in names] if full_paths else names

    def rm(self) -> None:
        """Delete the data, and the catalog entry if that entry names this place."""
        loc = self._location()
        remove_tree(loc)
        self._changed(loc)
        self._forget_catalog_entry()

    def _forget_catalog_entry(self) -> None:
        """Delete the catalog entry of this resource's name if it names this place."""
        s = session()
        if self.name:
            found = s.catalog.find(self.kind, self.name, fresh=True)
            if found is not None and found.address == self.address:
                s.catalog.delete(self.kind, self.name)
                self._catalog_changed(self.name)

    def _copied_to(self, system: Any, path: str | None, *, progress: bool = False) -> Address:
        return self._copy_to(address_of(system, path, self.kind, self.name), progress=progress)

    def _copy_to(self, dst: Address, *, progress: bool = False) -> Address:
        """Make ``dst`` a copy of this resource (one tree job); the tree forgets what it knew of it."""
        s = session()
        target = s.systems.locate(dst)
        copy_tree(s, self._location(), target, progress=progress)
        self._changed(target)
        return dst
