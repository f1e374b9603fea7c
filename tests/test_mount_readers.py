"""Dataframe readers read parquet through a real mount: one file, and a directory of parts.

pandas and pyarrow write into the mount (sequential writes of a new file), then
pandas, ``pyarrow.dataset``, duckdb and polars read back from the mount path,
on every system (the issue asks for ``s3/`` and ``clusters/cluster-a/``).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

pytestmark = [pytest.mark.mount, pytest.mark.servers]

ROWS = 5000


def _frame(start: int = 0, rows: int = ROWS) -> pd.DataFrame:
    ids = range(start, start + rows)
    return pd.DataFrame(
        {
            "id": list(ids),
            "name": [f"row-{i}" for i in ids],
            "score": [i * 0.5 for i in ids],
            "grade": [("a", "b", "c")[i % 3] for i in ids],
        }
    )


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame[["id", "name", "score", "grade"]].copy()
    frame["grade"] = frame["grade"].astype(str)
    return frame.sort_values("id").reset_index(drop=True)


def test_one_parquet_file(system_dir: Path, tmp_path: Path) -> None:
    expected = _frame()
    written = system_dir / "written.parquet"
    expected.to_parquet(written, row_group_size=1000)  # written straight into the mount
    copied = system_dir / "copied.parquet"
    expected.to_parquet(tmp_path / "local.parquet", row_group_size=1000)
    shutil.copyfile(tmp_path / "local.parquet", copied)
    for path in (written, copied):
        pd.testing.assert_frame_equal(_sorted(pd.read_parquet(path)), _sorted(expected))
        table = ds.dataset(path, format="parquet").to_table()
        assert table.num_rows == ROWS
        pd.testing.assert_frame_equal(_sorted(table.to_pandas()), _sorted(expected))
        one_group = pq.ParquetFile(path).read_row_group(3)  # a ranged read from the middle
        assert one_group.column("id").to_pylist() == list(range(3000, 4000))
    assert duckdb.sql(f"select count(*), sum(id) from read_parquet('{written}')").fetchall()[0] == (
        ROWS,
        sum(range(ROWS)),
    )
    assert pl.read_parquet(copied).height == ROWS


def test_directory_of_parts(system_dir: Path) -> None:
    parts = system_dir / "parts"
    parts.mkdir()
    frames = [_frame(i * ROWS) for i in range(3)]
    for i, frame in enumerate(frames):
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), parts / f"part-{i}.parquet")
    expected = _sorted(pd.concat(frames))
    pd.testing.assert_frame_equal(_sorted(pd.read_parquet(parts)), expected)
    dataset = ds.dataset(parts, format="parquet")
    assert sorted(Path(f).name for f in dataset.files) == [
        "part-0.parquet",
        "part-1.parquet",
        "part-2.parquet",
    ]
    pd.testing.assert_frame_equal(_sorted(dataset.to_table().to_pandas()), expected)
    filtered = dataset.to_table(filter=ds.field("id") >= 2 * ROWS, columns=["id"])
    assert filtered.num_rows == ROWS
    assert duckdb.sql(f"select count(*) from read_parquet('{parts}/*.parquet')").fetchall()[0] == (3 * ROWS,)
    assert pl.scan_parquet(f"{parts}/*.parquet").select(pl.len()).collect().item() == 3 * ROWS


def test_hive_partitioned_directory(system_dir: Path) -> None:
    frame = _frame()
    hive = system_dir / "hive"
    ds.write_dataset(
        pa.Table.from_pandas(frame, preserve_index=False),
        hive,
        format="parquet",
        partitioning=["grade"],
        partitioning_flavor="hive",
    )
    assert sorted(p.name for p in hive.iterdir()) == ["grade=a", "grade=b", "grade=c"]
    dataset = ds.dataset(hive, format="parquet", partitioning="hive")
    pd.testing.assert_frame_equal(_sorted(dataset.to_table().to_pandas()), _sorted(frame))
    only_b = dataset.to_table(filter=ds.field("grade") == "b")
    assert only_b.num_rows == len(frame[frame.grade == "b"])
    pd.testing.assert_frame_equal(_sorted(pd.read_parquet(hive)), _sorted(frame))
