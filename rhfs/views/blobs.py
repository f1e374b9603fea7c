"""``blobs/``: each catalogued blob as one file holding its stored bytes.

``blobs/<name>`` is the blob's object on its own system (the catalog's
``system`` and ``path``): reads are ranged reads there, and a write replaces it
there (atomically, as every backend's upload is). A file created under
``blobs/`` that is not yet catalogued becomes a new blob with the ``raw``
serializer, stored at ``<parent of [tables] default_url>/blobs/<name>``.
``rm blobs/<name>`` deletes the stored bytes and the catalog entry; ``mv``
renames the catalog entry only. ``blobs/`` holds no directories.
"""

from __future__ import annotations

import logging
import posixpath

from rhfs.backends.base import Abilities, Backend, Entry, Reader, Traits
from rhfs.catalog import Catalog, Resource
from rhfs.errors import CantCopy, CrossDevice, NotADirectory, NotSupported, RhfsError
from rhfs.views.systems import MISSING, Place, Systems, makedirs
from rhfs.views.tables import ReaderWrapper

log = logging.getLogger(__name__)


def default_blob_place(systems: Systems, default_url: str, name: str) -> Place:
    """Where a blob made without a path goes: beside the tables, under ``blobs/``."""
    tables = systems.parse_url(default_url)
    parent = posixpath.dirname(tables.path.rstrip("/"))
    return Place(tables.system, parent).child("blobs").child(name)


class BlobsView:
    traits = Traits(family="view", holds_bytes=False)
    system = "blobs"

    def __init__(
        self,
        catalog: Catalog,
        systems: Systems,
        *,
        default_url: str,
        wrap_reader: ReaderWrapper | None = None,
    ) -> None:
        self.catalog = catalog
        self.systems = systems
        self.default_url = default_url
        self.wrap_reader = wrap_reader
        self.abilities = Abilities(underlying=self.underlying)

    def blob(self, name: str) -> tuple[Resource, Backend, str]:
        if "/" in name:
            raise NotADirectory(f"blobs/{name.partition('/')[0]} is a file")
        resource = self.catalog.get("blob", name)
        backend, rel = self.systems.locate(resource.place)
        return resource, backend, rel

    def _entry(self, name: str) -> Entry:
        _, backend, rel = self.blob(name)
        stored = backend.stat(rel)
        if stored.is_dir:
            raise NotSupported(f"blobs/{name} is stored as a directory at {backend.url(rel)}")
        return Entry(name=name, is_dir=False, size=stored.size, mtime=stored.mtime, etag=stored.etag)

    def stat(self, path: str) -> Entry:
        if not path:
            return Entry(name="", is_dir=True)
        return self._entry(path)

    def list(self, path: str) -> list[Entry]:
        if path:
            raise NotADirectory(f"blobs/{path}")
        entries = []
        for name in self.catalog.names("blob"):
            try:
                entries.append(self._entry(name))
            except MISSING:
                log.debug("blobs/%s: catalogued but its bytes are missing", name)
            except RhfsError as e:
                log.warning("blobs/%s is not listed: %s", name, e)
        return entries

    def open_reader(self, path: str, entry: Entry) -> Reader:
        _, backend, rel = self.blob(path)
        reader = backend.open_reader(rel, entry)  # the shown entry carries the stored size and version
        return self.wrap_reader(reader, entry.size) if self.wrap_reader else reader

    def upload(self, local_path: str, path: str) -> None:
        resource = self.catalog.find("blob", path)
        if resource is None:
            place = default_blob_place(self.systems, self.default_url, path)
            backend, rel = self.systems.locate(place)
            makedirs(backend, posixpath.dirname(rel))
            backend.upload(local_path, rel)
            url = self.systems.url(place)
            self.catalog.put(
                Resource(
                    kind="blob", name=path, system=place.system, path=place.path, url=url, serializer="raw"
                )
            )
            log.info("created blob %s at %s", path, url)
            return
        backend, rel = self.systems.locate(resource.place)
        backend.upload(local_path, rel)

    def remove(self, path: str) -> None:
        _, backend, rel = self.blob(path)
        try:
            backend.remove(rel)
        except MISSING:
            pass
        self.catalog.delete("blob", path)

    def mkdir(self, path: str) -> None:
        raise NotSupported("blobs/ holds files only")

    def rmdir(self, path: str) -> None:
        raise NotADirectory(f"blobs/{path}") if path else NotSupported("blobs/ cannot be removed")

    def rename(self, src: str, dst: str) -> None:
        if "/" in src or "/" in dst:
            raise CrossDevice("blobs/ holds files only")
        self.catalog.rename("blob", src, dst)

    def url(self, path: str) -> str:
        if not path:
            return self.catalog.url + "/blobs"
        resource, backend, rel = self.blob(path)
        return resource.url or backend.url(rel)

    def underlying(self, path: str, for_write: bool = False) -> tuple[Backend, str]:
        """The backend and path holding a blob's bytes (for the copy planner)."""
        if for_write and self.catalog.find("blob", path) is None:
            raise CantCopy(f"blobs/{path} is new: it is created through the view")
        _, backend, rel = self.blob(path)
        return backend, rel
