"""tables/ and blobs/ through a real mount and through ``rhfs://``, with real clients.

- every reader (pandas, pyarrow.dataset, duckdb, polars) reads three tables (parquet
  parts on s3, hive partitions on cluster-a, CSV parts on gs) from the mount path
  and from ``rhfs://`` with equal results;
- reading one column of a 200 MB parquet part fetches a fraction of it from s3
  (the ``.rhfs/stats.json`` counter);
- two mounts sharing a catalog on a moto bucket see each other's new table within
  ``attr_ttl``;
- a part that is not parquet is refused at close with EINVAL, and the table is unchanged;
- CSV, JSON Lines and Arrow files copied in are stored as they are and read as parquet by
  pandas and duckdb; a bad one is EINVAL with a log line saying what was wrong;
- a missing name is ENOENT in the mount.
"""

from __future__ import annotations

import errno
import io
import os
import pickle
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest
from conftest import mounted
from mount_fixtures import daemon_log
from tables_fixtures import (
    ATTR_TTL,
    api,
    derived_config,
    normalized,
    parquet_bytes,
    put_bytes,
    put_parquet,
    sample_frame,
    stats,
    wait_for,
)
from testbed import Testbed

from rhfs.catalog import NotInCatalog
from rhfs.fsspec_face import RhfsFileSystem

pytestmark = [pytest.mark.mount, pytest.mark.servers]

FULL = sample_frame(30)


@dataclass(frozen=True)
class TableCase:
    kind: str  # "parquet", "hive", "csv"
    name: str
    hive: bool = False

    @property
    def glob(self) -> str:
        return "*/*.parquet" if self.hive else "*.parquet"


@pytest.fixture(scope="module")
def reader_tables(testbed: Testbed, mnt: Path) -> dict[str, TableCase]:
    """Three tables written straight to the servers, then catalogued through the API."""
    rh = api(testbed.config_path)
    tag = uuid.uuid4().hex[:8]
    chunks = [FULL.iloc[i : i + 10] for i in range(0, len(FULL), 10)]
    for i, chunk in enumerate(chunks):
        put_parquet(testbed, "s3", f"rhfs-test/rd-{tag}/parquet/part-{i}.parquet", chunk)
        put_bytes(testbed, "gs", f"rhfs-test/rd-{tag}/csv/part-{i}.csv", chunk.to_csv(index=False).encode())
    for grade, rows in FULL.groupby("grade"):
        put_parquet(
            testbed, "cluster-a", f"rd-{tag}/hive/grade={grade}/part-0.parquet", rows.drop(columns="grade")
        )
    cases = {
        "parquet": TableCase("parquet", f"rd-parquet-{tag}"),
        "hive": TableCase("hive", f"rd-hive-{tag}", hive=True),
        "csv": TableCase("csv", f"rd-csv-{tag}"),
    }
    rh.table(name=cases["parquet"].name, path=f"/rhfs-test/rd-{tag}/parquet", system="s3").save()
    rh.table(name=cases["hive"].name, path=f"rd-{tag}/hive", system="cluster-a").save()
    rh.table(name=cases["csv"].name, path=f"/rhfs-test/rd-{tag}/csv", system="gs").save()
    assert wait_for(lambda: cases["csv"].name in os.listdir(mnt / "tables"), 10 * ATTR_TTL) is not None
    return cases


def _hive_value(path: str) -> str:
    return next(p.split("=", 1)[1] for p in path.split("/") if p.startswith("grade="))


def read_pandas(where: str, fs: RhfsFileSystem | None, case: TableCase) -> Any:
    return pd.read_parquet(where, filesystem=fs) if fs else pd.read_parquet(where)


def read_pyarrow(where: str, fs: RhfsFileSystem | None, case: TableCase) -> Any:
    return ds.dataset(where, filesystem=fs, format="parquet", partitioning="hive").to_table()


def read_duckdb(where: str, fs: RhfsFileSystem | None, case: TableCase) -> Any:
    conn = duckdb.connect()
    if fs is not None:
        conn.register_filesystem(fs)
        where = "rhfs://" + where
    hive = "true" if case.hive else "false"
    return conn.sql(f"SELECT * FROM read_parquet('{where}/{case.glob}', hive_partitioning={hive})").df()


def read_polars(where: str, fs: RhfsFileSystem | None, case: TableCase) -> Any:
    if fs is None:
        return pl.scan_parquet(f"{where}/{case.glob}", hive_partitioning=case.hive).collect()
    # polars opens no fsspec URL itself: it is given the files; partition values come from their paths.
    frames = []
    for path in sorted(fs.glob(f"{where}/{case.glob}")):
        frame = pl.scan_parquet(fs.open(path, "rb"))
        if case.hive:
            frame = frame.with_columns(pl.lit(_hive_value(path)).alias("grade"))
        frames.append(frame)
    return pl.concat(frames, how="diagonal").collect()


READERS: dict[str, Callable[[str, RhfsFileSystem | None, TableCase], Any]] = {
    "pandas": read_pandas,
    "pyarrow.dataset": read_pyarrow,
    "duckdb": read_duckdb,
    "polars": read_polars,
}


@pytest.mark.parametrize("reader", sorted(READERS))
@pytest.mark.parametrize("kind", ["parquet", "hive", "csv"])
def test_every_reader_reads_every_table_from_the_mount_and_rhfs(
    reader_tables: dict[str, TableCase], mnt: Path, testbed: Testbed, reader: str, kind: str
) -> None:
    case = reader_tables[kind]
    read = READERS[reader]
    from_mount = normalized(read(str(mnt / "tables" / case.name), None, case))
    fs = RhfsFileSystem(config=str(testbed.config_path))
    from_rhfs = normalized(read(f"tables/{case.name}", fs, case))
    pd.testing.assert_frame_equal(from_mount, from_rhfs)
    pd.testing.assert_frame_equal(from_mount, normalized(FULL))


def test_reading_one_column_of_a_200mb_table_fetches_a_fraction(
    testbed: Testbed, mnt: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows, columns = 2_500_000, 10  # 10 float64 columns, uncompressed: 200 MB
    data = {f"c{i}": np.arange(i, i + rows, dtype=np.float64) for i in range(columns)}
    buf = io.BytesIO()
    pq.write_table(pa.table(data), buf, compression=None, use_dictionary=False, row_group_size=rows)
    size = buf.tell()
    assert size >= 200_000_000
    name = f"big-{uuid.uuid4().hex[:8]}"
    put_bytes(testbed, "s3", f"rhfs-test/{name}/part-0.parquet", buf.getvalue())
    del buf
    api(testbed.config_path).table(name=name, path=f"/rhfs-test/{name}", system="s3").save()
    part = mnt / "tables" / name / "part-0.parquet"
    assert wait_for(part.exists, 10 * ATTR_TTL) is not None

    before = stats(mnt)["systems"]["s3"]["bytes_read"]
    column = pq.read_table(part, columns=["c3"])["c3"].to_numpy()
    fetched = stats(mnt)["systems"]["s3"]["bytes_read"] - before
    with capsys.disabled():
        print(f"\none column of {size} bytes: s3 bytes_read grew by {fetched} ({fetched / size:.1%})")
    assert np.array_equal(column, data["c3"])
    assert fetched < size // 2  # one column is a tenth of the file; the rest is footer and read-ahead


@pytest.fixture
def table_on_s3(testbed: Testbed, mnt: Path) -> Iterator[tuple[str, Path]]:
    name = f"t-{uuid.uuid4().hex[:8]}"
    put_parquet(testbed, "s3", f"rhfs-test/{name}/part-0.parquet", sample_frame())
    api(testbed.config_path).table(name=name, path=f"/rhfs-test/{name}", system="s3").save()
    path = mnt / "tables" / name
    assert wait_for(path.exists, 10 * ATTR_TTL) is not None
    yield name, path


def test_an_invalid_part_is_refused_at_close_and_the_table_is_unchanged(
    table_on_s3: tuple[str, Path], tmp_path: Path
) -> None:
    _, path = table_on_s3
    before = sorted(os.listdir(path))
    with pytest.raises(OSError) as info, open(path / "bad.parquet", "wb") as f:
        f.write(b"definitely not parquet")
    assert info.value.errno == errno.EINVAL
    junk = tmp_path / "notes.parquet"
    junk.write_text("hello")
    result = subprocess.run(["cp", str(junk), str(path)], capture_output=True, text=True)
    assert result.returncode != 0 and "Invalid argument" in result.stderr
    assert sorted(os.listdir(path)) == before
    pd.testing.assert_frame_equal(normalized(pd.read_parquet(path)), normalized(sample_frame()))


def test_mkdir_cp_and_rm_r_of_a_table_with_coreutils(testbed: Testbed, mnt: Path, tmp_path: Path) -> None:
    name = f"made-{uuid.uuid4().hex[:8]}"
    local = tmp_path / "p.parquet"
    local.write_bytes(parquet_bytes(sample_frame(7)))
    table = mnt / "tables" / name
    subprocess.run(["mkdir", str(table)], check=True)
    subprocess.run(["cp", str(local), str(table / "p.parquet")], check=True)
    pd.testing.assert_frame_equal(normalized(pd.read_parquet(table)), normalized(sample_frame(7)))
    data_dir = Path(testbed.tables_url) / name
    assert (data_dir / "p.parquet").is_file()
    subprocess.run(["rm", "-r", str(table)], check=True)
    assert not table.exists() and not data_dir.exists()
    with pytest.raises(NotInCatalog, match=f"no table named '{name}'"):
        api(testbed.config_path).table(name=name)


def test_missing_names_are_enoent(mnt: Path) -> None:
    for path in ("tables/no-such-table", "tables/no-such-table/x.parquet", "blobs/no-such-blob"):
        with pytest.raises(FileNotFoundError):
            os.stat(mnt / path)
    result = subprocess.run(["ls", str(mnt / "tables" / "no-such-table")], capture_output=True, text=True)
    assert result.returncode != 0 and "No such file or directory" in result.stderr


def test_blobs_in_the_mount(testbed: Testbed, mnt: Path) -> None:
    rh = api(testbed.config_path)
    name = f"blob-{uuid.uuid4().hex[:8]}"
    rh.blob(data={"a": [1, 2, 3]}, name=name, system="s3").write().save()
    path = mnt / "blobs" / name
    assert wait_for(path.exists, 10 * ATTR_TTL) is not None
    assert pickle.loads(path.read_bytes()) == {"a": [1, 2, 3]}  # pickled, as the catalog says

    raw = mnt / "blobs" / f"raw-{name}"
    raw.write_bytes(b"written through the mount")
    assert rh.blob(name=f"raw-{name}").fetch() == b"written through the mount"
    shutil.copyfile(raw, path)  # replacing the pickled blob's bytes where it lives (on s3)
    assert rh.blob(name=name).fetch_bytes() == b"written through the mount"
    raw.unlink()
    path.unlink()
    assert not raw.exists() and not path.exists()


def test_two_mounts_share_a_catalog_on_a_bucket(
    testbed: Testbed, tmp_path_factory: pytest.TempPathFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    tag = uuid.uuid4().hex[:8]
    configs = []
    for side in ("a", "b"):
        d = tmp_path_factory.mktemp(f"shared-{side}")

        def change(raw: dict[str, Any], d: Path = d) -> None:
            raw["catalog"]["url"] = f"s3://rhfs-test/shared-catalog-{tag}"
            raw["tables"]["default_url"] = f"s3://rhfs-test/shared-tables-{tag}"
            raw["mount"]["cache_dir"] = str(d / "cache")

        configs.append((derived_config(testbed, d / "rhfs.toml", change), d / "mnt"))
    (config_a, mnt_a), (config_b, mnt_b) = configs
    with mounted(config_a, mnt_a) as a, mounted(config_b, mnt_b) as b:
        assert os.listdir(b / "tables") == []  # b has looked, and may cache that answer for attr_ttl
        (a / "tables" / "shared").mkdir()
        seen_after = wait_for(lambda: "shared" in os.listdir(b / "tables"), 10 * ATTR_TTL)
        with capsys.disabled():
            print(f"\na table made in one mount appeared in the other after {seen_after}s")
        assert seen_after is not None and seen_after <= ATTR_TTL + 0.5, seen_after

        (a / "tables" / "shared" / "p.parquet").write_bytes(parquet_bytes(sample_frame(4)))
        assert wait_for(lambda: (b / "tables" / "shared" / "p.parquet").exists(), 10 * ATTR_TTL) is not None
        pd.testing.assert_frame_equal(
            normalized(pd.read_parquet(b / "tables" / "shared")), normalized(sample_frame(4))
        )

        subprocess.run(["rm", "-r", str(b / "tables" / "shared")], check=True)
        assert wait_for(lambda: "shared" not in os.listdir(a / "tables"), 10 * ATTR_TTL) is not None


def test_cp_out_of_and_into_a_table(mnt: Path, table_on_s3: tuple[str, Path]) -> None:
    _, path = table_on_s3
    key = f"rhfs-test/cp-{uuid.uuid4().hex[:8]}"
    out = mnt / "s3" / key
    out.mkdir()
    before = stats(mnt)["copies"].get("store-copy", {}).get("count", 0)
    subprocess.run(["cp", str(path / "part-0.parquet"), str(out / "copy.parquet")], check=True)
    assert stats(mnt)["copies"]["store-copy"]["count"] == before + 1  # a part's bytes never left s3
    assert (out / "copy.parquet").read_bytes() == parquet_bytes(sample_frame())

    subprocess.run(["cp", str(out / "copy.parquet"), str(path / "part-1.parquet")], check=True)
    assert sorted(os.listdir(path)) == ["part-0.parquet", "part-1.parquet"]
    (out / "junk.parquet").write_bytes(b"junk")
    result = subprocess.run(["cp", str(out / "junk.parquet"), str(path)], capture_output=True, text=True)
    assert result.returncode != 0 and "Invalid argument" in result.stderr  # checked, however it arrives
    assert sorted(os.listdir(path)) == ["part-0.parquet", "part-1.parquet"]


def test_csv_json_lines_and_arrow_files_copied_into_a_table_are_read_as_parquet(
    testbed: Testbed, mnt: Path, tmp_path: Path
) -> None:
    name = f"formats-{uuid.uuid4().hex[:8]}"
    table = mnt / "tables" / name
    table.mkdir()
    frames = [sample_frame(3, start) for start in (0, 10, 20)]
    files = {
        "data.csv": frames[0].to_csv(index=False).encode(),
        "more.jsonl": frames[1].to_json(orient="records", lines=True).encode(),
    }
    for file_name, data in files.items():
        (tmp_path / file_name).write_bytes(data)
    feather.write_feather(pa.Table.from_pandas(frames[2], preserve_index=False), str(tmp_path / "last.arrow"))
    files["last.arrow"] = (tmp_path / "last.arrow").read_bytes()
    for file_name in files:
        subprocess.run(["cp", str(tmp_path / file_name), str(table)], check=True)

    assert sorted(os.listdir(table)) == ["data.parquet", "last.parquet", "more.parquet"]
    with pytest.raises(FileNotFoundError):
        os.stat(table / "data.csv")  # shown only as data.parquet
    data_dir = Path(testbed.tables_url) / name
    assert {p.name: p.read_bytes() for p in data_dir.iterdir()} == files  # stored as they are
    expected = normalized(pd.concat(frames))
    pd.testing.assert_frame_equal(normalized(pd.read_parquet(table)), expected, check_dtype=False)
    rows = duckdb.sql(f"select id, grade, score from read_parquet('{table}/*.parquet')").df()
    pd.testing.assert_frame_equal(normalized(rows), expected, check_dtype=False)

    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n3\n")
    result = subprocess.run(["cp", str(bad), str(table)], capture_output=True, text=True)
    assert result.returncode != 0 and "Invalid argument" in result.stderr
    said = daemon_log(testbed).read_text(errors="replace")
    assert f"tables/{name}/bad.csv refused: not a valid CSV file: " in said
    assert sorted(os.listdir(table)) == ["data.parquet", "last.parquet", "more.parquet"]
    assert sorted(p.name for p in data_dir.iterdir()) == sorted(files)
    subprocess.run(["rm", "-r", str(table)], check=True)
