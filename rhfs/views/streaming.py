"""Streaming a parquet table in batches: exact sizes, a seeded shuffle buffer, shards, read-ahead.

:func:`batches` is the one pipeline behind ``Table.stream``, ``Table.__iter__`` and the
PyTorch dataset over a table:

1. The table's row groups, in the dataset's order, optionally cut to one shard (row group
   ``i`` belongs to shard ``i % count``), so that workers each read their own rows and no
   row is read twice.
2. Batches of exactly ``batch_size`` rows, across parts and row groups; the last may be
   shorter, or is dropped with ``drop_last``.
3. With ``shuffle_buffer_size`` (N), rows pass through a buffer: once it holds
   ``max(2N, N + batch_size)`` rows it is shuffled and batches are taken from it until N
   rows are left, which mix with the rows read next (so each shuffle of the buffer yields at
   least N rows: the cost per row stays constant whatever N). The
   permutations come from one ``numpy`` generator seeded with ``shuffle_seed``, so the same
   seed over the same table gives the same order.
4. :func:`prefetched` reads ``prefetch`` batches ahead on a background thread; an error
   there is raised in the reader, and a reader that stops early stops the thread.

:func:`convert` turns a pyarrow batch into the requested ``stream_format``: ``pyarrow``, a
``pandas`` DataFrame, or ``torch``: a dict of column name to tensor (columns that are not
numbers or booleans stay Python lists). :func:`count_rows` reads parquet footers only.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from rhfs.errors import InvalidArgument, NotSupported
from rhfs.views.tabledata import dataset

STREAM_FORMATS = ("pyarrow", "pandas", "torch")
_DONE = object()  # the end of a prefetched stream


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count``: the row groups ``index``, ``index + count``, ..."""

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if not 0 <= self.index < self.count:
            raise InvalidArgument(f"shard {self.index} of {self.count} does not exist")


@dataclass(frozen=True)
class Shuffle:
    buffer_size: int
    seed: int | None = None


def shuffle_of(buffer_size: int | None, seed: int | None) -> Shuffle | None:
    """The shuffle that ``shuffle_buffer_size`` and ``shuffle_seed`` ask for (None: the table's order)."""
    if buffer_size is None:
        if seed is not None:
            raise InvalidArgument("shuffle_seed needs shuffle_buffer_size: it seeds the shuffle buffer")
        return None
    return Shuffle(buffer_size, seed)


def count_rows(path: str, filesystem: Any = None) -> int:
    """The table's row count, from the parts' parquet footers (no row group is read)."""
    return int(dataset(path, filesystem).count_rows())


def _scan(
    path: str, filesystem: Any, columns: Sequence[str] | None, batch_size: int, shard: Shard
) -> Iterator[Any]:
    """The pyarrow RecordBatches of the table (of one shard of its row groups)."""
    import pyarrow.dataset as ds

    whole = dataset(path, filesystem)
    chosen = whole
    if shard.count > 1:
        mine, seen = [], 0  # each part once, with this shard's row groups of it
        for part in whole.get_fragments():
            groups = range(part.metadata.num_row_groups)
            ids = [g for g in groups if (seen + g) % shard.count == shard.index]
            seen += len(groups)
            if ids:
                mine.append(part.subset(row_group_ids=ids))
        chosen = ds.FileSystemDataset(mine, whole.schema, whole.format, filesystem=whole.filesystem)
    return iter(chosen.to_batches(columns=list(columns) if columns else None, batch_size=batch_size))


def _exact(source: Iterable[Any], batch_size: int) -> Iterator[Any]:
    """pyarrow Tables of exactly ``batch_size`` rows from RecordBatches; the last may be short."""
    import pyarrow as pa

    pending: list[Any] = []
    held = 0
    for batch in source:
        if batch.num_rows == 0:
            continue
        pending.append(batch)
        held += batch.num_rows
        if held < batch_size:
            continue
        joined = pa.Table.from_batches(pending)
        start = 0
        while held - start >= batch_size:
            yield joined.slice(start, batch_size)
            start += batch_size
        rest = joined.slice(start)
        pending, held = rest.to_batches(), rest.num_rows
    if held:
        yield pa.Table.from_batches(pending)


def _shuffled(source: Iterable[Any], batch_size: int, shuffle: Shuffle) -> Iterator[Any]:
    """Batches drawn at random from a buffer of rows (see the module's docstring)."""
    import numpy as np
    import pyarrow as pa

    rng = np.random.default_rng(shuffle.seed)
    threshold = max(2 * shuffle.buffer_size, shuffle.buffer_size + batch_size)
    pending: list[Any] = []  # the buffer, as the tables that came in
    held = 0
    for table in source:
        pending.append(table)
        held += table.num_rows
        if held < threshold:
            continue
        buffer = pa.concat_tables(pending)
        buffer = buffer.take(rng.permutation(buffer.num_rows))
        start = 0
        while buffer.num_rows - start - batch_size >= shuffle.buffer_size:
            yield buffer.slice(start, batch_size)
            start += batch_size
        pending, held = [buffer.slice(start)], buffer.num_rows - start
    if held:
        buffer = pa.concat_tables(pending)
        buffer = buffer.take(rng.permutation(buffer.num_rows))
        for start in range(0, buffer.num_rows, batch_size):
            yield buffer.slice(start, batch_size)


def batches(
    path: str,
    batch_size: int,
    filesystem: Any = None,
    columns: Sequence[str] | None = None,
    *,
    drop_last: bool = False,
    shuffle: Shuffle | None = None,
    shard: Shard | None = None,
) -> Iterator[Any]:
    """pyarrow Tables of ``batch_size`` rows of the table at ``path`` (see the module's
    docstring); the arguments are checked at the call, before anything is read."""
    if batch_size <= 0:
        raise InvalidArgument("batch_size must be positive")
    if shuffle is not None and shuffle.buffer_size <= 0:
        raise InvalidArgument("shuffle_buffer_size must be positive")
    return _batches(path, batch_size, filesystem, columns, drop_last, shuffle, shard or Shard())


def _batches(
    path: str,
    batch_size: int,
    filesystem: Any,
    columns: Sequence[str] | None,
    drop_last: bool,
    shuffle: Shuffle | None,
    shard: Shard,
) -> Iterator[Any]:
    exact = _exact(_scan(path, filesystem, columns, batch_size, shard), batch_size)
    out = exact if shuffle is None else _shuffled(exact, batch_size, shuffle)
    for table in out:
        if drop_last and table.num_rows < batch_size:
            return
        yield table


def prefetched(source: Iterator[Any], prefetch: int) -> Iterator[Any]:
    """``source``'s items, produced up to ``prefetch`` ahead on a background thread."""
    if prefetch <= 0:
        yield from source
        return
    ready: queue.Queue[Any] = queue.Queue(maxsize=prefetch)
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in source:
                if not put((item, None)):
                    return
        except BaseException as e:
            put((_DONE, e))
            return
        put((_DONE, None))

    producer = threading.Thread(target=produce, name="rhfs-stream-prefetch", daemon=True)
    producer.start()
    try:
        while True:
            item, error = ready.get()
            if error is not None:
                raise error
            if item is _DONE:
                return
            yield item
    finally:
        stop.set()
        producer.join()


def convert(table: Any, stream_format: str) -> Any:
    """A pyarrow Table as ``stream_format`` gives it (see the module's docstring)."""
    if stream_format == "pyarrow":
        return table
    if stream_format == "pandas":
        return table.to_pandas()
    if stream_format == "torch":
        return _to_torch(table)
    raise NotSupported(f"stream_format {stream_format!r} is not one of {', '.join(STREAM_FORMATS)}")


def _to_torch(table: Any) -> dict[str, Any]:
    import pyarrow.types as types
    import torch

    out: dict[str, Any] = {}
    for name, column in zip(table.column_names, table.columns, strict=True):
        kind = column.type
        if types.is_integer(kind) or types.is_floating(kind) or types.is_boolean(kind):
            out[name] = torch.from_numpy(column.to_numpy(zero_copy_only=False).copy())
        else:
            out[name] = column.to_pylist()
    return out
