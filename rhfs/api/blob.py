"""``rh.blob``: one file on any system, holding bytes as they are or a pickled object.

``bytes`` (and ``bytearray``, ``memoryview``) are stored raw, anything else with ``pickle``;
the catalog records which, and ``fetch`` undoes it. ``to`` copies the stored bytes (one tree
job, by the tree's routes), ``rm`` deletes the file and the catalog entry naming it, and
``exists_in_system`` tells whether a file is there.
"""

from __future__ import annotations

import pickle
from dataclasses import replace
from typing import Any

from rhfs.api.resource import BaseResource
from rhfs.catalog import Address, Resource
from rhfs.errors import InvalidArgument
from rhfs.location_io import makedirs, read_bytes, write_bytes


class Blob(BaseResource):
    kind = "blob"

    def __init__(
        self, address: Address, name: str | None = None, data: Any = None, serializer: str | None = None
    ) -> None:
        super().__init__(address, name)
        self._data = data
        self.serializer = serializer or (None if data is None else _serializer_of(data))

    def _resource(self, name: str) -> Resource:
        return replace(super()._resource(name), serializer=self.serializer)

    @property
    def data(self) -> Any:
        if self._data is None:
            self._data = self.fetch()
        return self._data

    def write(self) -> Blob:
        """Store the data: bytes as they are, anything else pickled."""
        if self._data is None:
            raise InvalidArgument("this blob has no data to write")
        self.serializer = _serializer_of(self._data)
        raw = bytes(self._data) if self.serializer == "raw" else pickle.dumps(self._data, protocol=5)
        loc = self._location()
        makedirs(loc.parent)
        write_bytes(loc, raw)
        self._changed(loc, subtree=False)
        return self

    def fetch_bytes(self) -> bytes:
        """The stored bytes, as they are (still pickled for a pickled blob)."""
        return read_bytes(self._location())

    def fetch(self) -> Any:
        raw = self.fetch_bytes()
        if self.serializer == "pickle":
            return pickle.loads(raw)
        return raw

    def to(self, system: Any, path: str | None = None, *, progress: bool = False) -> Blob:
        return Blob(self._copied_to(system, path, progress=progress), self.name, serializer=self.serializer)


def _serializer_of(data: Any) -> str:
    return "raw" if isinstance(data, bytes | bytearray | memoryview) else "pickle"
