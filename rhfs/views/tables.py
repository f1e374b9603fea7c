"""``tables/``: each catalogued table as a virtual directory of parquet files.

``tables/<name>/...`` maps onto the table's own directory on its system (the
catalog's ``system`` and ``path``). Inside it (see :mod:`rhfs.views.parts`):

- parquet parts keep their names, and partition subdirectories are kept;
- CSV, JSON Lines and Arrow IPC parts show as ``<stem>.parquet``, converted on
  first use (a listing or a lookup, which must report the true size) and cached;
  a native ``<stem>.parquet`` beside them wins;
- reads of parquet parts are ranged reads on the table's backend, so reading a
  footer or one column fetches only those bytes.

Writes: a new or replaced part must be a valid parquet file named ``*.parquet``;
anything else is refused at upload (close) with EINVAL and the table is left as it
was. ``mkdir tables/<name>`` creates an empty table at ``[tables] default_url``;
``rmdir`` of an emptied table deletes what is left of its data and its catalog
entry; ``rm`` of a part deletes its source file.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass

from rhfs.backends.base import Abilities, Backend, Entry, Reader, Traits, basename, join, parent
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
from rhfs.views.parts import PARQUET_SUFFIX, Converter, check_parquet, is_hidden, shown_name, source_format
from rhfs.views.systems import MISSING, Systems, download, makedirs, remove_tree

log = logging.getLogger(__name__)

ReaderWrapper = Callable[[Reader, int], Reader]


@dataclass(frozen=True)
class Part:
    """What a path inside a table resolves to."""

    entry: Entry  # as shown in the view
    source: str  # path of the source in the table's backend
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
    def table(self, name: str) -> tuple[Resource, Backend, str]:
        """A table's catalog document, its backend and its directory in that backend."""
        resource = self.catalog.get("table", name)
        backend, rel = self.systems.locate(resource.place)
        return resource, backend, rel

    def _part(self, backend: Backend, base: str, sub: str, entry: Entry) -> Part | None:
        """The shown form of one source entry, or None if the view hides it.

        Shown entries carry the source's size, time and version, never its mode or a link target.
        """
        source = join(base, sub)
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
        source_id = backend.url(source)

        def fetch(local_path: str) -> None:
            download(backend, source, entry, local_path)

        local = self.converter.converted(source_id, version, fmt, fetch)
        shown_entry = Entry(
            name=shown,
            is_dir=False,
            size=os.path.getsize(local),
            mtime=entry.mtime,
            etag=f"{entry.etag}-parquet" if entry.etag else None,
        )
        return Part(shown_entry, source, fmt, converted=local)

    def _parts(self, backend: Backend, base: str, sub: str) -> dict[str, Part]:
        """Shown name -> part, for one directory of a table."""
        try:
            entries = backend.list(join(base, sub))
        except MISSING:
            if sub:
                raise
            return {}  # a table whose directory does not exist yet is empty
        shown: dict[str, Part] = {}
        for entry in sorted(entries, key=lambda e: source_format(e.name) != "parquet"):
            name = entry.name if entry.is_dir else shown_name(entry.name)
            if name is None or name in shown:
                continue  # hidden, or a native parquet part already shows under this name
            try:
                part = self._part(backend, base, join(sub, entry.name), entry)
            except InvalidArgument as e:
                log.warning("tables: %s is not shown: %s", backend.url(join(base, sub, entry.name)), e)
                continue
            if part is not None:
                shown[name] = part
        return shown

    def resolve(self, path: str) -> tuple[Backend, Part]:
        """The table's backend and the part behind ``<table>/<sub>``; NotFound if not shown."""
        name, _, sub = path.partition("/")
        _, backend, base = self.table(name)
        if not sub:
            return backend, Part(Entry(name=name, is_dir=True), base, "dir")
        if source_format(basename(sub)) == "parquet":
            try:
                direct = self._part(backend, base, sub, backend.stat(join(base, sub)))
            except MISSING:
                direct = None
            if direct is not None:
                return backend, direct
        part = self._parts(backend, base, parent(sub)).get(basename(sub))
        if part is None:
            raise NotFound(f"tables/{path}")
        return backend, part

    # -- the Backend protocol -------------------------------------------------------
    def stat(self, path: str) -> Entry:
        if not path:
            return Entry(name="", is_dir=True)
        if "/" not in path:
            resource = self.catalog.get("table", path)
            return Entry(name=path, is_dir=True, mtime=resource.updated_at)
        return self.resolve(path)[1].entry

    def list(self, path: str) -> list[Entry]:
        if not path:
            return [Entry(name=n, is_dir=True) for n in self.catalog.names("table")]
        name, _, sub = path.partition("/")
        _, backend, base = self.table(name)
        if sub and any(is_hidden(p) for p in sub.split("/")):
            raise NotFound(f"tables/{path}")
        return [part.entry for _, part in sorted(self._parts(backend, base, sub).items())]

    def open_reader(self, path: str, entry: Entry) -> Reader:
        backend, part = self.resolve(path)
        if part.converted is not None:
            return LocalReader(part.converted)
        reader = backend.open_reader(part.source, part.entry)
        return self.wrap_reader(reader, part.entry.size) if self.wrap_reader else reader

    def upload(self, local_path: str, path: str) -> None:
        name, _, sub = path.partition("/")
        if not sub:
            raise InvalidArgument(f"tables/{path}: tables/ holds only table directories")
        if not sub.endswith(PARQUET_SUFFIX) or is_hidden(basename(sub)):
            log.warning("tables/%s refused: a table part must be named *.parquet", path)
            raise InvalidArgument(f"tables/{path}: a table part must be named *.parquet")
        try:
            check_parquet(local_path)
        except InvalidArgument as e:
            log.warning("tables/%s refused: %s", path, e)
            raise
        _, backend, base = self.table(name)
        try:
            replaced = self.resolve(path)[1]
        except MISSING:
            replaced = None
        backend.upload(local_path, join(base, sub))
        if replaced is not None and replaced.converted is not None:
            backend.remove(replaced.source)  # a converted part is now replaced by a native one

    def remove(self, path: str) -> None:
        if "/" not in path:
            raise NotFound(f"tables/{path} is a table directory; use rm -r")
        backend, part = self.resolve(path)
        backend.remove(part.source)

    def mkdir(self, path: str) -> None:
        name, _, sub = path.partition("/")
        if sub:
            _, backend, base = self.table(name)
            backend.mkdir(join(base, sub))
            return
        if self.catalog.find("table", name) is not None:
            raise AlreadyExists(f"tables/{name}")
        place = self.systems.parse_url(self.default_url).child(name)
        backend, rel = self.systems.locate(place)
        makedirs(backend, rel)
        url = self.systems.url(place)
        self.catalog.put(Resource(kind="table", name=name, system=place.system, path=place.path, url=url))
        log.info("created table %s at %s", name, url)

    def rmdir(self, path: str) -> None:
        if not path:
            raise PermissionDenied("tables/ itself cannot be removed")
        if self.list(path):
            raise DirectoryNotEmpty(f"tables/{path}")
        name, _, sub = path.partition("/")
        resource, backend, base = self.table(name)
        try:
            remove_tree(backend, join(base, sub))
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
        _, _, base = self.table(src_name)
        backend, part = self.resolve(src)
        if part.fmt not in ("parquet", "dir") or (part.fmt == "parquet" and not dst.endswith(PARQUET_SUFFIX)):
            raise CrossDevice(f"tables/{src}: only parquet parts and directories are renamed in place")
        backend.rename(part.source, join(base, dst_sub))

    def url(self, path: str) -> str:
        if not path:
            return self.catalog.url + "/tables"
        name, _, sub = path.partition("/")
        resource = self.catalog.get("table", name)
        if not sub:
            return resource.url or self.systems.url(resource.place)
        backend, part = self.resolve(path)
        return backend.url(part.source)

    # -- for the copy planner -------------------------------------------------------
    def underlying(self, path: str, for_write: bool = False) -> tuple[Backend, str]:
        """The backend and path holding a part's bytes; CantCopy where bytes differ or checks apply."""
        if for_write:
            raise CantCopy("a copy into a table must be checked as parquet; it goes through the view")
        backend, part = self.resolve(path)
        if part.converted is not None:
            raise CantCopy(f"tables/{path} is converted from {part.fmt}")
        return backend, part.source
