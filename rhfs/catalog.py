"""The catalog: one small JSON document per named table, blob or folder.

Layout under ``[catalog] url`` (a local directory, a store prefix, or a cluster path)::

    tables/<name>.json    blobs/<name>.json    folders/<name>.json

A document records where the resource lives, its :class:`Address` (``system`` and
``path``, see :mod:`rhfs.views.systems`, and a human-readable ``url``), and for blobs
the ``serializer`` (``raw`` or ``pickle``).

Invariants:
- one document per name, so two processes writing different names never touch
  the same object and never lose each other's entry (there is no index file);
- a write is atomic: it is uploaded through the backend, which writes a
  temporary sibling and renames it (local, cluster) or does one PUT (stores);
  on a store the document is then read back, and a different content means a
  concurrent writer of the same name won (:class:`CatalogConflict`);
- reads may be served from a short-lived cache (``ttl``), unless asked ``fresh``;
  this process's own writes and deletes update that cache at once.

The catalog lives at a :class:`~rhfs.tree.Location`, and its I/O goes through that
location's (guarded) backend, never fsspec directly.
"""

from __future__ import annotations

import json
import posixpath
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from rhfs import __version__
from rhfs.backends.base import check_name
from rhfs.errors import AlreadyExists, InvalidArgument, NotFound, RhfsError
from rhfs.location_io import NOT_FOUND, makedirs, read_bytes, write_bytes
from rhfs.tree import Location

KINDS = ("table", "blob", "folder")
MAX_DOC_BYTES = 1 << 20


class NotInCatalog(NotFound):
    """A name that the catalog does not hold; the message says which catalog was asked."""


class CatalogConflict(RhfsError):
    """Another process wrote the same name at the same moment, and its write won."""


@dataclass(frozen=True, slots=True)
class Address:
    """Where a resource lives, as its catalog document records it: a system name and a path there.

    :meth:`rhfs.views.systems.Systems.locate` turns it into the :class:`~rhfs.tree.Location`
    that every read and write goes through."""

    system: str
    path: str

    def child(self, name: str) -> Address:
        return Address(self.system, posixpath.join(self.path, name))


@dataclass(frozen=True)
class Resource:
    """One catalog document."""

    kind: str  # "table" | "blob" | "folder"
    name: str
    system: str
    path: str
    url: str = ""
    serializer: str | None = None  # blobs: "raw" or "pickle"
    data_type: str | None = None  # tables: "pandas", "pyarrow", ...
    created_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)

    @property
    def address(self) -> Address:
        return Address(self.system, self.path)

    def to_json(self) -> bytes:
        doc = {"rhfs_version": __version__, **asdict(self)}
        return (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()

    @classmethod
    def from_json(cls, data: bytes, where: str) -> Resource:
        try:
            doc = json.loads(data)
            fields = {k: doc[k] for k in cls.__dataclass_fields__ if k in doc}
            return cls(**fields)
        except (ValueError, TypeError, KeyError) as e:
            raise RhfsError(f"catalog document {where} is not valid: {e}") from None


def check_resource_name(name: str) -> None:
    if not name or "/" in name:
        raise InvalidArgument(f"invalid resource name {name!r}: one path component, not empty")
    check_name(name)


class Catalog:
    def __init__(self, where: Location, *, url: str = "", ttl: float = 0.0) -> None:
        self.where = where
        self.url = url or where.path
        self.ttl = ttl
        self._cache: dict[tuple[str, str], tuple[Resource | None, float]] = {}
        self._lock = threading.Lock()
        self._dirs_made: set[str] = set()

    def _dir(self, kind: str) -> Location:
        if kind not in KINDS:
            raise ValueError(f"unknown resource kind {kind!r}")
        return self.where.child(kind + "s")

    def document(self, kind: str, name: str) -> Location:
        """Where the document for ``name`` is kept."""
        check_resource_name(name)
        return self._dir(kind).child(name + ".json")

    # -- reads ----------------------------------------------------------------------
    def names(self, kind: str) -> list[str]:
        directory = self._dir(kind)
        try:
            entries = directory.backend.list(directory.rel)
        except NOT_FOUND:
            return []
        return sorted(e.name[:-5] for e in entries if not e.is_dir and e.name.endswith(".json"))

    def find(self, kind: str, name: str, *, fresh: bool = False) -> Resource | None:
        """The document for ``name``, or None; ``fresh`` reads it from its system whatever the cache holds."""
        key = (kind, name)
        if self.ttl > 0 and not fresh:
            with self._lock:
                hit = self._cache.get(key)
            if hit is not None and hit[1] > time.monotonic():
                return hit[0]
        doc = self.document(kind, name)
        try:
            resource: Resource | None = Resource.from_json(self._read(doc), f"{self.url}/{kind}s/{name}.json")
        except NOT_FOUND:
            resource = None
        self._remember(key, resource)
        return resource

    def get(self, kind: str, name: str, *, fresh: bool = False) -> Resource:
        resource = self.find(kind, name, fresh=fresh)
        if resource is None:
            raise NotInCatalog(f"no {kind} named {name!r} in the catalog at {self.url}")
        return resource

    def _read(self, doc: Location) -> bytes:
        return read_bytes(doc, limit=MAX_DOC_BYTES)

    def _remember(self, key: tuple[str, str], resource: Resource | None) -> None:
        if self.ttl > 0:
            with self._lock:
                self._cache[key] = (resource, time.monotonic() + self.ttl)

    # -- writes ---------------------------------------------------------------------
    def put(self, resource: Resource) -> Resource:
        """Create or replace the document for ``resource.name``; return what was stored."""
        if resource.kind not in KINDS:
            raise ValueError(f"unknown resource kind {resource.kind!r}")
        previous = self.find(resource.kind, resource.name)
        now = time.time()
        created = previous.created_at if previous else resource.created_at
        stored = replace(resource, created_at=created, updated_at=now)
        doc = self.document(stored.kind, stored.name)
        self._ensure_dir(stored.kind)
        data = stored.to_json()
        write_bytes(doc, data)
        if doc.backend.traits.versioned_objects and self._read(doc) != data:
            self._forget((stored.kind, stored.name))
            raise CatalogConflict(f"{stored.kind} {stored.name!r} was written by another process at once")
        self._remember((stored.kind, stored.name), stored)
        return stored

    def delete(self, kind: str, name: str) -> None:
        doc = self.document(kind, name)
        try:
            doc.backend.remove(doc.rel)
        except NOT_FOUND:
            raise NotInCatalog(f"no {kind} named {name!r} in the catalog at {self.url}") from None
        finally:
            self._forget((kind, name))
        self._remember((kind, name), None)

    def rename(self, kind: str, old: str, new: str) -> Resource:
        resource = self.get(kind, old)
        if self.find(kind, new) is not None:
            raise AlreadyExists(f"a {kind} named {new!r} already exists")
        stored = self.put(replace(resource, name=new))
        self.delete(kind, old)
        return stored

    def _forget(self, key: tuple[str, str]) -> None:
        with self._lock:
            self._cache.pop(key, None)

    def _ensure_dir(self, kind: str) -> None:
        directory = self._dir(kind)
        if directory.rel in self._dirs_made or directory.backend.traits.implicit_directories:
            return  # store prefixes need no directory
        makedirs(directory)
        self._dirs_made.add(directory.rel)


def open_catalog(systems: Any, url: str, *, ttl: float = 0.0) -> Catalog:
    """The catalog at a config URL, located by ``systems`` (:class:`~rhfs.views.systems.Systems`)."""
    address = systems.parse_url(url)
    return Catalog(systems.locate(address), url=systems.url(address), ttl=ttl)
