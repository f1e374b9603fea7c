"""``rh.table``: a directory of parquet parts on any system, written, fetched and streamed.

``stream`` is :func:`rhfs.views.streaming.batches` over the table's parts, read through the
same VFS core as the mount (``rhfs://``): exact batch sizes, ``drop_last``, a seeded shuffle
buffer, and ``prefetch_batches`` read ahead on a background thread. ``stream_format`` picks
what each batch is: ``"pyarrow"``, ``"pandas"`` or ``"torch"`` (default: pandas for pandas and
dask tables, pyarrow otherwise). ``len()`` reads the parts' parquet footers only; iterating a
table gives its rows as dicts.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Any

from rhfs.api.folder import Folder
from rhfs.api.places import copy_tree, session
from rhfs.catalog import Address, Resource
from rhfs.errors import InvalidArgument, NotSupported
from rhfs.views import streaming, tabledata

DEFAULT_BATCH_SIZE = 256  # the batch size of iterating a table's rows, as Runhouse's
DEFAULT_PREFETCH_BATCHES = 1  # as Runhouse's


def check_stream_format(stream_format: str | None) -> str | None:
    if stream_format is not None and stream_format not in streaming.STREAM_FORMATS:
        raise NotSupported(
            f"stream_format {stream_format!r} is not one of {', '.join(streaming.STREAM_FORMATS)}"
        )
    return stream_format


class Table(Folder):
    kind = "table"

    def __init__(
        self,
        address: Address,
        name: str | None = None,
        data: Any = None,
        data_type: str | None = None,
        partition_cols: Sequence[str] | None = None,
        stream_format: str | None = None,
    ) -> None:
        super().__init__(address, name)
        self.data = data
        self.data_type = data_type or (tabledata.data_type_of(data) if data is not None else None)
        self.partition_cols = partition_cols
        self.stream_format = check_stream_format(stream_format)

    def _resource(self, name: str) -> Resource:
        return replace(super()._resource(name), data_type=self.data_type)

    def write(self) -> Table:
        """Write the data as parquet parts at the table's place."""
        if self.data is None:
            raise InvalidArgument("this table has no data to write")
        s = session()
        loc = self._location()
        with tempfile.TemporaryDirectory(prefix="rhfs-table-") as tmp:
            tabledata.write_parts(self.data, tmp, self.partition_cols)
            copy_tree(s, s.systems.outside_tree(tmp), loc)
        self._changed(loc)
        return self

    def source(self) -> tuple[str, Any]:
        """The path to read the table's parts from, and the filesystem to read it with
        (``None``: a local path outside the tree)."""
        s = session()
        if self.name:
            found = s.catalog.find("table", self.name, fresh=True)
            if found is not None and found.address == self.address:
                return f"tables/{self.name}", s.fs
        loc = self._location()
        if not loc.in_tree:
            return loc.path, None
        return loc.path.lstrip("/"), s.fs

    @property
    def _format(self) -> str:
        if self.stream_format is not None:
            return self.stream_format
        return "pandas" if self.data_type in tabledata.PANDAS_TYPES else "pyarrow"

    def exists_in_system(self) -> bool:
        """Whether the table's directory is there and holds at least one entry (as Runhouse)."""
        return super().exists_in_system() and bool(self.ls())

    def fetch(self, columns: Sequence[str] | None = None) -> Any:
        """All rows (pandas for pandas and dask tables, pyarrow otherwise)."""
        path, fs = self.source()
        return tabledata.from_arrow(tabledata.read(path, fs, columns), self.data_type)

    def stream(
        self,
        batch_size: int,
        drop_last: bool = False,
        shuffle_seed: int | None = None,
        shuffle_buffer_size: int | None = None,
        prefetch_batches: int | None = None,
        *,
        columns: Sequence[str] | None = None,
    ) -> Iterator[Any]:
        """Batches of ``batch_size`` rows in ``stream_format`` (see the module's docstring)."""
        shuffle = streaming.shuffle_of(shuffle_buffer_size, shuffle_seed)
        path, fs = self.source()
        stream_format = self._format
        batches = streaming.batches(path, batch_size, fs, columns, drop_last=drop_last, shuffle=shuffle)
        converted = (streaming.convert(batch, stream_format) for batch in batches)
        prefetch = DEFAULT_PREFETCH_BATCHES if prefetch_batches is None else prefetch_batches
        return streaming.prefetched(converted, prefetch)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        """Each row, as a dict of column name to value."""
        path, fs = self.source()
        for batch in streaming.prefetched(streaming.batches(path, DEFAULT_BATCH_SIZE, fs), 1):
            yield from batch.to_pylist()

    def __len__(self) -> int:
        """The row count, from the parts' parquet footers (no row is read)."""
        path, fs = self.source()
        return streaming.count_rows(path, fs)

    def to(self, system: Any, path: str | None = None, *, progress: bool = False) -> Table:
        """A copy of this table on ``system``; onto an existing copy, only what changed moves."""
        copied = self._copied_to(system, path, progress=progress)
        return Table(copied, self.name, data_type=self.data_type, stream_format=self.stream_format)
