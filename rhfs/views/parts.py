"""Table parts: which files a table shows, conversion of non-parquet parts, and parquet checks.

A table directory may hold parquet parts (shown under their own names), CSV,
JSON Lines and Arrow IPC/Feather parts (shown as ``<stem>.parquet``), partition
subdirectories (kept), and other files (hidden, as are names starting with
``.`` or ``_``, which parquet readers skip anyway).

Converted parts live under ``<cache_dir>/tables/`` named by a hash of the
source's identity and a hash of its version (etag, size, mtime), so a changed
source is converted again, and an older conversion of the same source is removed
when a newer one lands. A conversion that fails is remembered for that version
and not retried until the source changes.

Invariant: a file enters the cache only complete (written to a temporary name,
then renamed), so a reader never sees half a conversion.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import uuid
from collections.abc import Callable
from typing import Any

from rhfs.errors import InvalidArgument

log = logging.getLogger(__name__)

PARQUET_SUFFIX = ".parquet"
CONVERTIBLE = {
    ".csv": "csv",
    ".jsonl": "json",
    ".ndjson": "json",
    ".json": "json",
    ".arrow": "ipc",
    ".feather": "ipc",
    ".ipc": "ipc",
}


def is_hidden(name: str) -> bool:
    return name.startswith((".", "_"))


def split_suffix(name: str) -> tuple[str, str]:
    stem, dot, suffix = name.rpartition(".")
    return (stem, "." + suffix.lower()) if dot and stem else (name, "")


def source_format(name: str) -> str | None:
    """'parquet', 'csv', 'json' or 'ipc' for a file a table shows; None for a hidden one."""
    if is_hidden(name):
        return None
    _, suffix = split_suffix(name)
    if suffix == PARQUET_SUFFIX:
        return "parquet"
    return CONVERTIBLE.get(suffix)


def shown_name(name: str) -> str | None:
    """The name a source file has in the table view, or None if it is hidden."""
    fmt = source_format(name)
    if fmt is None:
        return None
    return name if fmt == "parquet" else split_suffix(name)[0] + PARQUET_SUFFIX


def check_parquet(path: str) -> None:
    """Raise InvalidArgument unless ``path`` is a readable parquet file."""
    import pyarrow.parquet as pq

    try:
        meta = pq.ParquetFile(path).metadata
        for i in range(meta.num_row_groups):
            meta.row_group(i)
    except Exception as e:
        raise InvalidArgument(f"not a valid parquet file: {e}") from None


FORMAT_NAMES = {"csv": "CSV", "json": "JSON Lines", "ipc": "Arrow IPC"}
PART_NAMES = (
    "a table part must be named *.parquet, *.csv, *.jsonl, *.ndjson, *.json, *.arrow, *.feather or *.ipc"
)


def check_part(path: str, fmt: str) -> None:
    """Raise InvalidArgument, saying what is wrong, unless pyarrow reads ``path`` as ``fmt``.

    A parquet file is checked by its footer and row groups; a CSV, JSON Lines or Arrow file is
    read whole, with the type inference its conversion will use.
    """
    if fmt == "parquet":
        check_parquet(path)
        return
    try:
        read_table(path, fmt)
    except Exception as e:
        raise InvalidArgument(f"not a valid {FORMAT_NAMES.get(fmt, fmt)} file: {e}") from None


def to_parquet(source: str, fmt: str, target: str) -> None:
    """Convert a local CSV, JSON Lines or Arrow IPC file to parquet at ``target``."""
    import pyarrow.parquet as pq

    pq.write_table(read_table(source, fmt), target)


def read_table(source: str, fmt: str) -> Any:
    """A local CSV, JSON Lines or Arrow IPC file as one pyarrow Table."""
    import pyarrow as pa

    if fmt == "csv":
        import pyarrow.csv as pcsv

        table = pcsv.read_csv(source)
    elif fmt == "json":
        table = _read_json(source)
    elif fmt == "ipc":
        import pyarrow.feather as feather

        try:
            table = feather.read_table(source)
        except pa.ArrowInvalid:
            with pa.OSFile(source) as f:
                table = pa.ipc.open_stream(f).read_all()
    else:
        raise InvalidArgument(f"unknown part format {fmt!r}")
    return table


def _read_json(source: str) -> object:
    import pyarrow as pa
    import pyarrow.json as pjson

    try:
        return pjson.read_json(source)
    except pa.ArrowInvalid:
        with open(source, "rb") as f:
            records = json.load(f)  # a JSON array of records, not JSON Lines
        if not isinstance(records, list):
            raise InvalidArgument("a .json part must be JSON Lines or an array of records") from None
        return pa.Table.from_pylist(records)


def _digest(value: object) -> str:
    return hashlib.sha256(repr(value).encode()).hexdigest()


class Converter:
    """Converted parts, cached under ``cache_dir/tables`` by source identity and version."""

    def __init__(self, cache_dir: str) -> None:
        self.dir = os.path.join(cache_dir, "tables")
        os.makedirs(self.dir, mode=0o700, exist_ok=True)
        self._locks: dict[str, threading.Lock] = {}
        self._locks_lock = threading.Lock()
        self._failed: dict[str, str] = {}

    def _names(self, source_id: str, version: object) -> tuple[str, str]:
        prefix = _digest(source_id)[:32]
        return prefix, os.path.join(self.dir, f"{prefix}-{_digest(version)[:16]}{PARQUET_SUFFIX}")

    def _lock(self, key: str) -> threading.Lock:
        with self._locks_lock:
            return self._locks.setdefault(key, threading.Lock())

    def converted(self, source_id: str, version: object, fmt: str, fetch: Callable[[str], None]) -> str:
        """The local path of the parquet form of a source, converting it on first use.

        ``fetch(local_path)`` writes the source's bytes to ``local_path``.
        """
        prefix, path = self._names(source_id, version)
        if os.path.exists(path):
            return path
        with self._lock(prefix):
            if os.path.exists(path):
                return path
            if path in self._failed:
                raise InvalidArgument(f"{source_id}: {self._failed[path]}")
            tag = uuid.uuid4().hex
            raw, tmp = f"{path}.{tag}.src", f"{path}.{tag}.tmp"
            try:
                fetch(raw)
                to_parquet(raw, fmt, tmp)
                os.replace(tmp, path)
            except InvalidArgument as e:
                self._failed[path] = str(e)
                raise
            except Exception as e:
                if isinstance(e, OSError) or type(e).__module__.startswith("rhfs"):
                    raise  # the source could not be read: try again next time
                self._failed[path] = f"cannot convert {fmt} to parquet: {e}"
                log.warning("%s: cannot convert %s to parquet: %s", source_id, fmt, e)
                raise InvalidArgument(f"{source_id}: {self._failed[path]}") from None
            finally:
                for leftover in (raw, tmp):
                    if os.path.exists(leftover):
                        os.unlink(leftover)
            self._drop_older(prefix, path)
            log.info("converted %s (%s) to parquet", source_id, fmt)
            return path

    def _drop_older(self, prefix: str, keep: str) -> None:
        for name in os.listdir(self.dir):
            full = os.path.join(self.dir, name)
            if name.startswith(prefix + "-") and name.endswith(PARQUET_SUFFIX) and full != keep:
                try:
                    os.unlink(full)
                except FileNotFoundError:
                    pass
