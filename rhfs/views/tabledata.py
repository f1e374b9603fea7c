"""In-memory table data for the Python API: accepting it, writing parts, reading and streaming.

Accepted data: pandas DataFrames, pyarrow Tables and RecordBatches, and, when
those libraries are installed, dask DataFrames, ray Datasets and Hugging Face
``datasets.Dataset``. Each is turned into one pyarrow Table; ``data_type``
records what came in so that ``fetch`` and ``stream`` give the same kind back
(streaming itself is :mod:`rhfs.views.streaming`)
(pandas for pandas and dask, pyarrow otherwise).

Parts are written as ``part-<i>.parquet`` (in hive partition directories when
``partition_cols`` are given), so writing the same table again replaces them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

PANDAS_TYPES = ("pandas", "dask")


def data_type_of(data: Any) -> str:
    module = type(data).__module__.split(".")[0]
    if module in ("pandas", "pyarrow", "dask", "ray", "datasets"):
        return "huggingface" if module == "datasets" else module
    raise TypeError(
        f"a table takes pandas, pyarrow, dask, ray or Hugging Face data, not {type(data).__name__}"
    )


def to_arrow(data: Any) -> Any:
    """One pyarrow Table holding ``data``."""
    import pyarrow as pa

    data_type = data_type_of(data)
    if data_type == "pyarrow":
        return data if isinstance(data, pa.Table) else pa.Table.from_batches([data])
    if data_type == "pandas":
        return pa.Table.from_pandas(data, preserve_index=False)
    if data_type == "dask":
        return pa.Table.from_pandas(data.compute(), preserve_index=False)
    if data_type == "ray":
        import ray

        return pa.concat_tables(ray.get(data.to_arrow_refs()))
    return data.with_format("arrow")[:]  # Hugging Face datasets


def from_arrow(table: Any, data_type: str | None) -> Any:
    return table.to_pandas() if data_type in PANDAS_TYPES else table


def write_parts(data: Any, directory: str, partition_cols: Sequence[str] | None = None) -> int:
    """Write ``data`` as parquet parts under a local ``directory``; return the row count."""
    import pyarrow.parquet as pq

    table = to_arrow(data)
    pq.write_to_dataset(
        table,
        directory,
        partition_cols=list(partition_cols) if partition_cols else None,
        basename_template="part-{i}.parquet",
        existing_data_behavior="overwrite_or_ignore",
    )
    return int(table.num_rows)


def dataset(path: str, filesystem: Any = None) -> Any:
    """The parquet dataset at ``path``; an fsspec ``filesystem`` (``rhfs://``) is read without
    fsspec's own block cache, as the tree's read-ahead already reads ahead."""
    import pyarrow.dataset as ds

    if filesystem is not None:
        filesystem = _unbuffered(filesystem)
    return ds.dataset(path, filesystem=filesystem, format="parquet", partitioning="hive")


def _unbuffered(filesystem: Any) -> Any:
    import pyarrow as pa
    import pyarrow.fs as pafs

    if isinstance(filesystem, pafs.FileSystem):
        return filesystem

    class Unbuffered(pafs.FSSpecHandler):
        """Files opened with ``cache_type="none"``: each read of pyarrow's is one read of the
        file, with no copy through a second buffer of fsspec's."""

        def open_input_file(self, path: str) -> Any:
            if not self.fs.isfile(path):
                raise FileNotFoundError(path)
            return pa.PythonFile(self.fs.open(path, mode="rb", cache_type="none"), mode="r")

        open_input_stream = open_input_file

    return pafs.PyFileSystem(Unbuffered(filesystem))


def read(path: str, filesystem: Any = None, columns: Sequence[str] | None = None) -> Any:
    return dataset(path, filesystem).to_table(columns=list(columns) if columns else None)
