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

from rhfs.backends.base import Abilities, Entry, Reader, Traits
from rhfs.catalog import Address, Catalog, Resource
from rhfs.errors import CantCopy, CrossDevice, NotADirectory, NotSupported, RhfsError
from rhfs.location_io import NOT_FOUND, makedirs
from rhfs.tree import Location
from rhfs.views.systems import Systems
from rhfs.views.tables import ReaderWrapper

log = logging.getLogger(__name__)


def default_blob_address(systems: Systems, default_url: str, name: str) -> Address:
    """Where a blob made without a path goes: beside the tables, under ``blobs/``."""
    tables = systems.parse_url(default_url)
    parent = posixpath.dirname(tables.path.rstrip("/"))
    return Address(tables.system, parent).child("blobs").child(name)


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

    def blob(self, name: str) -> tuple[Resource, Location]:
        """A blob's catalog document and where its bytes are."""
        if "/" in name:
            raise NotADirectory(f"blobs/{name.partition('/')[0]} is a file")
        resource = self.catalog.get("blob", name)
        return resource, self.systems.locate(resource.address)

    def _entry(self, name: str) -> Entry:
        stored_at = self.blob(name)[1]
        stored = stored_at.backend.stat(stored_at.rel)
        if stored.is_dir:
            raise NotSupported(
                f"blobs/{name} is stored as a directory at {stored_at.backend.url(stored_at.rel)}"
            )
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
            except NOT_FOUND:
                log.debug("blobs/%s: catalogued but its bytes are missing", name)
            except RhfsError as e:
                log.warning("blobs/%s is not listed: %s", name, e)
        return entries

    def open_reader(self, path: str, entry: Entry) -> Reader:
        stored_at = self.blob(path)[1]
        reader = stored_at.backend.open_reader(
            stored_at.rel, entry
        )  # the shown entry: stored size and version
        return self.wrap_reader(reader, entry.size) if self.wrap_reader else reader

    def upload(self, local_path: str, path: str) -> None:
        resource = self.catalog.find("blob", path)
        if resource is None:
            address = default_blob_address(self.systems, self.default_url, path)
            stored_at = self.systems.locate(address)
            makedirs(stored_at.parent)
            stored_at.backend.upload(local_path, stored_at.rel)
            url = self.systems.url(address)
            self.catalog.put(
                Resource(
                    kind="blob",
                    name=path,
                    system=address.system,
                    path=address.path,
                    url=url,
                    serializer="raw",
                )
            )
            log.info("created blob %s at %s", path, url)
            return
        stored_at = self.systems.locate(resource.address)
        stored_at.backend.upload(local_path, stored_at.rel)

    def remove(self, path: str) -> None:
        stored_at = self.blob(path)[1]
        try:
            stored_at.backend.remove(stored_at.rel)
        except NOT_FOUND:
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
        resource, stored_at = self.blob(path)
        return resource.url or stored_at.backend.url(stored_at.rel)

    def underlying(self, path: str, for_write: bool = False) -> Location:
        """Where a blob's bytes are (for the copy planner)."""
        if for_write and self.catalog.find("blob", path) is None:
            raise CantCopy(f"blobs/{path} is new: it is created through the view")
        return self.blob(path)[1]
