"""``tables/``: each catalogued table as a virtual directory of parquet files.

``tables/<name>/...`` maps onto the table's own directory on its system (the
catalog's ``system`` and ``path``). Inside it (see :mod:`rhfs.views.parts`):

- parquet parts keep their names, and partition subdirectories are kept;
- CSV, JSON Lines and Arrow IPC parts show as ``<stem>.parquet``, converted on
  first use (a listing or a lookup, which must report the true size) and cached;
  a native ``<stem>.parquet`` beside them wins;
- reads of parquet parts are ranged reads on the table's backend, so reading a
  footer or one column fetches only those bytes.

Writes: a new or replaced part is a parquet, CSV, JSON Lines or Arrow IPC file, named
as such, that pyarrow reads; it is stored as it is (and shown as ``<stem>.parquet``).
Anything else is refused at upload (close) with EINVAL and one log line saying what was
wrong, and the table is left as it was. ``mkdir tables/<name>`` creates an empty table
at ``[tables] default_url``; ``rmdir`` of an emptied table deletes what is left of its
data and its catalog entry; ``rm`` of a part deletes its source file.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass

from rhfs.backends.base import Abilities, Entry, Reader, Traits, basename, join, parent
from rhfs.backends.local import LocalReader
from rhfs.catalog import Catalog, Resource
from rhfs.errors import (
    AlreadyExists,
    CantCopy,
    CrossDevice,
    DirectoryNotEmpty,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)
from rhfs.location_io import NOT_FOUND, fetch, makedirs, remove_tree
from rhfs.tree import Location
from rhfs.views.parts import (
    PARQUET_SUFFIX,
    PART_NAMES,
    Converter,
    check_part,
    is_hidden,
    shown_name,
    source_format,
)
from rhfs.views.systems import Systems

log = logging.getLogger(__name__)

ReaderWrapper = Callable[[Reader, int], Reader]


@dataclass(frozen=True)
class Part:
    """What a path inside a table resolves to."""

    entry: Entry  # as shown in the view
    source: Location  # the source file (or directory) on the table's system
    fmt: str  # "dir", "parquet", "csv", "json", "ipc"
    converted: str | None = None  # local path of the converted parquet


class TablesView:
    traits = Traits(family="view", holds_bytes=False)
    system = "tables"

    def __init__(
        self,
        catalog: Catalog,
        systems: Systems,
        converter: Converter,
        *,
        default_url: str,
        wrap_reader: ReaderWrapper | None = None,
    ) -> None:
        self.catalog = catalog
        self.systems = systems
        self.converter = converter
        self.default_url = default_url
        self.wrap_reader = wrap_reader
        self.abilities = Abilities(underlying=self.underlying)

    # -- resolution -----------------------------------------------------------------
    def table(self, name: str) -> tuple[Resource, Location]:
        """A table's catalog document and its directory on its system."""
        resource = self.catalog.get("table", name)
        return resource, self.systems.locate(resource.address)

    def _part(self, base: Location, sub: str, entry: Entry) -> Part | None:
        """The shown form of one source entry, or None if the view hides it.

        Shown entries carry the source's size, time and version, never its mode or a link target.
        """
        source = base.child(sub)
        if entry.is_dir:
            shown_dir = Entry(name=entry.name, is_dir=True, mtime=entry.mtime)
            return None if is_hidden(entry.name) else Part(shown_dir, source, "dir")
        fmt = source_format(entry.name)
        shown = shown_name(entry.name)
        if fmt is None or shown is None:
            return None
        if fmt == "parquet":
            native = Entry(name=shown, is_dir=False, size=entry.size, mtime=entry.mtime, etag=entry.etag)
            return Part(native, source, fmt)
        version = (entry.etag, entry.size, entry.mtime)
        source_id = source.backend.url(source.rel)
        local = self.converter.converted(
            source_id, version, fmt, lambda local_path: fetch(source, entry, local_path)
        )
        shown_entry = Entry(
            name=shown,
            is_dir=False,
            size=os.path.getsize(local),
            mtime=entry.mtime,
            etag=f"{entry.etag}-parquet" if entry.etag else None,
        )
        return Part(shown_entry, source, fmt, converted=local)

    def _parts(self, base: Location, sub: str) -> dict[str, Part]:
        """Shown name -> part, for one directory of a table."""
        directory = base.child(sub)
        try:
            entries = directory.backend.list(directory.rel)
        except NOT_FOUND:
            if sub:
                raise
            return {}  # a table whose directory does not exist yet is empty
        shown: dict[str, Part] = {}
        for entry in sorted(entries, key=lambda e: source_format(e.name) != "parquet"):
            name = entry.name if entry.is_dir else shown_name(entry.name)
            if name is None or name in shown:
                continue  # hidden, or a native parquet part already shows under this name
            try:
                part = self._part(base, join(sub, entry.name), entry)
            except InvalidArgument as e:
                log.warning(
                    "tables: %s is not shown: %s", directory.backend.url(join(directory.rel, entry.name)), e
                )
                continue
            if part is not None:
                shown[name] = part
        return shown

    def resolve(self, path: str) -> Part:
        """The part behind ``<table>/<sub>``; NotFound if not shown."""
        name, _, sub = path.partition("/")
        _, base = self.table(name)
        if not sub:
            return Part(Entry(name=name, is_dir=True), base, "dir")
        if source_format(basename(sub)) == "parquet":
            source = base.child(sub)
            try:
                direct = self._part(base, sub, source.backend.stat(source.rel))
            except NOT_FOUND:
                direct = None
            if direct is not None:
                return direct
        part = self._parts(base, parent(sub)).get(basename(sub))
        if part is None:
            raise NotFound(f"tables/{path}")
        return part

    # -- the Backend protocol -------------------------------------------------------
    def stat(self, path: str) -> Entry:
        if not path:
            return Entry(name="", is_dir=True)
        if "/" not in path:
            resource = self.catalog.get("table", path)
            return Entry(name=path, is_dir=True, mtime=resource.updated_at)
        return self.resolve(path).entry

    def list(self, path: str) -> list[Entry]:
        if not path:
            return [Entry(name=n, is_dir=True) for n in self.catalog.names("table")]
        name, _, sub = path.partition("/")
        _, base = self.table(name)
        if sub and any(is_hidden(p) for p in sub.split("/")):
            raise NotFound(f"tables/{path}")
        return [part.entry for _, part in sorted(self._parts(base, sub).items())]

    def open_reader(self, path: str, entry: Entry) -> Reader:
        part = self.resolve(path)
        if part.converted is not None:
            return LocalReader(part.converted)
        reader = part.source.backend.open_reader(part.source.rel, part.entry)
        return self.wrap_reader(reader, part.entry.size) if self.wrap_reader else reader

    def upload(self, local_path: str, path: str) -> None:
        """Store a part as it is, once pyarrow reads it as its name says; it replaces the part
        shown under the same name (``x.csv`` replaces a shown ``x.parquet``, and the reverse)."""
        name, _, sub = path.partition("/")
        if not sub:
            raise InvalidArgument(f"tables/{path}: tables/ holds only table directories")
        fmt = source_format(basename(sub))
        if fmt is None:
            log.warning("tables/%s refused: %s", path, PART_NAMES)
            raise InvalidArgument(f"tables/{path}: {PART_NAMES}")
        try:
            check_part(local_path, fmt)
        except InvalidArgument as e:
            log.warning("tables/%s refused: %s", path, e)
            raise
        _, base = self.table(name)
        shown = join(parent(sub), shown_name(basename(sub)) or basename(sub))
        try:
            replaced = self.resolve(f"{name}/{shown}")
        except NOT_FOUND:
            replaced = None
        target = base.child(sub)
        target.backend.upload(local_path, target.rel)
        if replaced is not None and replaced.source.rel != target.rel:
            source = replaced.source  # another file showed under this name: the new part replaces it
            source.backend.remove(source.rel)

    def remove(self, path: str) -> None:
        if "/" not in path:
            raise NotFound(f"tables/{path} is a table directory; use rm -r")
        source = self.resolve(path).source
        source.backend.remove(source.rel)

    def mkdir(self, path: str) -> None:
        name, _, sub = path.partition("/")
        if sub:
            directory = self.table(name)[1].child(sub)
            directory.backend.mkdir(directory.rel)
            return
        if self.catalog.find("table", name) is not None:
            raise AlreadyExists(f"tables/{name}")
        address = self.systems.parse_url(self.default_url).child(name)
        makedirs(self.systems.locate(address))
        url = self.systems.url(address)
        self.catalog.put(Resource(kind="table", name=name, system=address.system, path=address.path, url=url))
        log.info("created table %s at %s", name, url)

    def rmdir(self, path: str) -> None:
        if not path:
            raise PermissionDenied("tables/ itself cannot be removed")
        if self.list(path):
            raise DirectoryNotEmpty(f"tables/{path}")
        name, _, sub = path.partition("/")
        resource, base = self.table(name)
        try:
            remove_tree(base.child(sub))
        except PermissionDenied:
            if sub:
                raise  # a table at a bucket's root keeps its (now empty) bucket
        if not sub:
            self.catalog.delete("table", name)
            log.info("removed table %s and its data at %s", name, resource.url)

    def rename(self, src: str, dst: str) -> None:
        src_name, _, src_sub = src.partition("/")
        dst_name, _, dst_sub = dst.partition("/")
        if not src_sub and not dst_sub:
            self.catalog.rename("table", src_name, dst_name)
            return
        if src_name != dst_name or not src_sub or not dst_sub:
            raise CrossDevice(f"tables/{src} -> tables/{dst} crosses tables")
        _, base = self.table(src_name)
        part = self.resolve(src)
        if part.fmt not in ("parquet", "dir") or (part.fmt == "parquet" and not dst.endswith(PARQUET_SUFFIX)):
            raise CrossDevice(f"tables/{src}: only parquet parts and directories are renamed in place")
        part.source.backend.rename(part.source.rel, base.child(dst_sub).rel)

    def url(self, path: str) -> str:
        if not path:
            return self.catalog.url + "/tables"
        name, _, sub = path.partition("/")
        resource = self.catalog.get("table", name)
        if not sub:
            return resource.url or self.systems.url(resource.address)
        source = self.resolve(path).source
        return source.backend.url(source.rel)

    # -- for the copy planner -------------------------------------------------------
    def underlying(self, path: str, for_write: bool = False) -> Location:
        """Where a part's bytes are; CantCopy where bytes differ or checks apply."""
        if for_write:
            raise CantCopy("a copy into a table must be checked as parquet; it goes through the view")
        part = self.resolve(path)
        if part.converted is not None:
            raise CantCopy(f"tables/{path} is converted from {part.fmt}")
        return part.source
