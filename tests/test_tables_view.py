"""The tables/ and blobs/ views through the VFS core (no FUSE), over the local servers.

Each test gets its own catalog, ``[tables] default_url`` and cache directory (a
copy of the testbed config), and writes its sources straight to the servers with
fsspec, so the views are seen reading what other tools wrote.
"""

from __future__ import annotations

import errno
import io
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest
from tables_fixtures import derived_config, normalized, parquet_bytes, put_bytes, put_parquet, sample_frame
from testbed import Testbed

from rhfs.catalog import Catalog, Resource
from rhfs.config import load_file
from rhfs.errors import to_errno
from rhfs.vfs.core import Vfs
from rhfs.wiring import build_core

pytestmark = [pytest.mark.servers]


@dataclass
class World:
    vfs: Vfs
    catalog: Catalog
    tb: Testbed
    tmp: Path
    prefix: str  # a fresh key prefix for this test's data on the stores

    def table(self, name: str, system: str, path: str) -> None:
        url = f"{system}:{path}"
        self.catalog.put(Resource(kind="table", name=name, system=system, path=path, url=url))

    def read(self, path: str) -> bytes:
        opened = self.vfs.open(path, os.O_RDONLY)
        try:
            size = self.vfs.getattr(path).size
            return self.vfs.read(opened.fh, size + 1, 0)
        finally:
            self.vfs.release(opened.fh)

    def write(self, path: str, data: bytes) -> None:
        opened = self.vfs.create(path, 0o644, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        try:
            self.vfs.write(opened.fh, data, 0)
            self.vfs.flush(opened.fh)
        finally:
            self.vfs.release(opened.fh)

    def names(self, path: str) -> list[str]:
        return sorted(n for n, _ in self.vfs.readdir(path) if n not in (".", ".."))

    def bytes_read(self, system: str) -> int:
        return int(self.vfs.stats.snapshot()["systems"].get(system, {}).get("bytes_read", 0))


@pytest.fixture
def world(testbed: Testbed, tmp_path: Path) -> Iterator[World]:
    def change(raw: dict[str, Any]) -> None:
        raw["catalog"]["url"] = str(tmp_path / "catalog")
        raw["tables"]["default_url"] = str(tmp_path / "tables")
        raw["mount"]["cache_dir"] = str(tmp_path / "cache")

    config = load_file(str(derived_config(testbed, tmp_path / "rhfs.toml", change)))
    core = build_core(config)
    vfs = core.vfs
    yield World(vfs, core.catalog, testbed, tmp_path, f"tv-{uuid.uuid4().hex[:10]}")
    vfs.shutdown()


def errno_of(fn: Any, *args: Any) -> int:
    try:
        fn(*args)
    except Exception as e:
        return to_errno(e)
    raise AssertionError(f"{fn.__name__}{args} did not fail")


def test_parquet_parts_and_partition_directories_are_shown(world: World) -> None:
    base = f"rhfs-test/{world.prefix}"
    frame = sample_frame()
    put_parquet(world.tb, "s3", f"{base}/p0.parquet", frame)
    put_parquet(world.tb, "s3", f"{base}/grade=a/p1.parquet", frame)
    for hidden in ("_SUCCESS", ".p0.parquet.crc", "notes.txt", "_tmp/x.parquet"):
        put_bytes(world.tb, "s3", f"{base}/{hidden}", b"x")
    world.table("t", "s3", base)
    assert world.names("/tables") == ["t"]
    assert world.names("/tables/t") == ["grade=a", "p0.parquet"]
    assert world.names("/tables/t/grade=a") == ["p1.parquet"]
    assert world.read("/tables/t/p0.parquet") == parquet_bytes(frame)
    assert world.vfs.getxattr("/tables/t/p0.parquet", "user.rhfs.url") == f"s3://{base}/p0.parquet".encode()
    for hidden in ("_SUCCESS", "notes.txt", "_tmp"):
        assert errno_of(world.vfs.getattr, f"/tables/t/{hidden}") == errno.ENOENT


def test_csv_jsonl_and_arrow_parts_show_as_converted_parquet(world: World) -> None:
    base = f"rhfs-test/{world.prefix}"
    a, b, c, d = (sample_frame(3, start) for start in (0, 10, 20, 30))
    put_bytes(world.tb, "gs", f"{base}/a.csv", a.to_csv(index=False).encode())
    put_bytes(world.tb, "gs", f"{base}/b.jsonl", b.to_json(orient="records", lines=True).encode())
    sink = io.BytesIO()
    feather.write_feather(pa.Table.from_pandas(c, preserve_index=False), sink)
    put_bytes(world.tb, "gs", f"{base}/c.arrow", sink.getvalue())
    stream = io.BytesIO()
    with pa.ipc.new_stream(stream, pa.Table.from_pandas(d, preserve_index=False).schema) as writer:
        writer.write_table(pa.Table.from_pandas(d, preserve_index=False))
    put_bytes(world.tb, "gs", f"{base}/d.ipc", stream.getvalue())
    world.table("conv", "gs", base)

    assert world.names("/tables/conv") == ["a.parquet", "b.parquet", "c.parquet", "d.parquet"]
    for name, frame in (("a", a), ("b", b), ("c", c), ("d", d)):
        data = world.read(f"/tables/conv/{name}.parquet")
        assert len(data) == world.vfs.getattr(f"/tables/conv/{name}.parquet").size
        assert pq.read_table(pa.BufferReader(data)).to_pandas().equals(frame)

    fetched = world.bytes_read("gs")
    world.vfs.cache.clear()
    assert world.names("/tables/conv") == ["a.parquet", "b.parquet", "c.parquet", "d.parquet"]
    assert world.bytes_read("gs") == fetched  # converted once, then served from the cache

    changed = sample_frame(5, 100)
    put_bytes(world.tb, "gs", f"{base}/a.csv", changed.to_csv(index=False).encode())
    world.vfs.cache.clear()
    data = world.read("/tables/conv/a.parquet")
    assert pq.read_table(pa.BufferReader(data)).to_pandas().equals(changed)  # a new version converts again
    cached = os.listdir(world.tmp / "cache" / "tables")
    assert len([n for n in cached if n.endswith(".parquet")]) == 4  # the old conversion is gone


def test_a_native_parquet_part_wins_over_a_convertible_one(world: World) -> None:
    base = f"rhfs-test/{world.prefix}"
    native, other = sample_frame(2), sample_frame(2, 50)
    put_parquet(world.tb, "s3", f"{base}/x.parquet", native)
    put_bytes(world.tb, "s3", f"{base}/x.csv", other.to_csv(index=False).encode())
    world.table("both", "s3", base)
    assert world.names("/tables/both") == ["x.parquet"]
    assert world.read("/tables/both/x.parquet") == parquet_bytes(native)


def test_a_part_that_cannot_be_converted_is_left_out(world: World) -> None:
    base = f"rhfs-test/{world.prefix}"
    put_parquet(world.tb, "s3", f"{base}/good.parquet", sample_frame(2))
    put_bytes(world.tb, "s3", f"{base}/broken.jsonl", b"{not json\n")
    world.table("broken", "s3", base)
    assert world.names("/tables/broken") == ["good.parquet"]
    assert errno_of(world.vfs.getattr, "/tables/broken/broken.parquet") == errno.ENOENT


def test_reading_a_footer_fetches_only_the_footer(world: World) -> None:
    base = f"rhfs-test/{world.prefix}"
    big = pd.DataFrame({"v": range(1_000_000), "w": [float(i) for i in range(1_000_000)]})
    data = parquet_bytes(big, compression=None)
    assert len(data) > 8_000_000
    put_bytes(world.tb, "s3", f"{base}/big.parquet", data)
    world.table("big", "s3", base)
    size = world.vfs.getattr("/tables/big/big.parquet").size
    before = world.bytes_read("s3")
    opened = world.vfs.open("/tables/big/big.parquet", os.O_RDONLY)
    try:
        tail = world.vfs.read(opened.fh, 8, size - 8)
    finally:
        world.vfs.release(opened.fh)
    assert tail[-4:] == b"PAR1"
    assert world.bytes_read("s3") - before <= size // 4  # the tail, never the whole file


def test_an_invalid_part_is_refused_with_einval_and_the_table_is_unchanged(world: World) -> None:
    base = f"rhfs-test/{world.prefix}"
    put_parquet(world.tb, "s3", f"{base}/p0.parquet", sample_frame())
    world.table("t", "s3", base)
    before = world.names("/tables/t")
    assert errno_of(world.write, "/tables/t/bad.parquet", b"this is not parquet") == errno.EINVAL
    assert errno_of(world.write, "/tables/t/p0.parquet", b"PAR1 but not really PAR1") == errno.EINVAL
    assert errno_of(world.write, "/tables/t/notes.txt", b"id\n1\n") == errno.EINVAL  # not a part's name
    assert errno_of(world.write, "/tables/t/data.csv", b"a,b\n1,2\n3\n") == errno.EINVAL  # a short row
    world.vfs.cache.clear()
    assert world.names("/tables/t") == before
    assert world.read("/tables/t/p0.parquet") == parquet_bytes(sample_frame())
    assert sorted(world.tb.fs("s3").ls(base, detail=False)) == [f"{base}/p0.parquet"]


def test_writing_parts_and_replacing_a_converted_one(world: World) -> None:
    base = f"rhfs-test/{world.prefix}"
    put_bytes(world.tb, "s3", f"{base}/old.csv", sample_frame(2).to_csv(index=False).encode())
    world.table("w", "s3", base)
    world.write("/tables/w/new.parquet", parquet_bytes(sample_frame(3)))
    replacement = sample_frame(4, 70)
    world.write("/tables/w/old.parquet", parquet_bytes(replacement))
    assert world.names("/tables/w") == ["new.parquet", "old.parquet"]
    assert world.read("/tables/w/old.parquet") == parquet_bytes(replacement)
    assert sorted(world.tb.fs("s3").ls(base, detail=False)) == [f"{base}/new.parquet", f"{base}/old.parquet"]


def test_csv_json_lines_and_arrow_parts_are_stored_as_they_are_and_shown_as_parquet(world: World) -> None:
    base = f"rhfs-test/{world.prefix}"
    put_parquet(world.tb, "s3", f"{base}/c.parquet", sample_frame(2))
    world.table("m", "s3", base)
    frame = sample_frame(5)
    arrow = io.BytesIO()
    feather.write_feather(pa.Table.from_pandas(frame, preserve_index=False), arrow)
    parts = {
        "a.csv": frame.to_csv(index=False).encode(),
        "b.jsonl": frame.to_json(orient="records", lines=True).encode(),
        "c.arrow": arrow.getvalue(),  # replaces the native c.parquet shown under the same name
    }
    for name, data in parts.items():
        world.write(f"/tables/m/{name}", data)
    fs = world.tb.fs("s3")
    stored = {key.rsplit("/", 1)[1]: fs.cat_file(key) for key in fs.ls(base, detail=False)}
    assert stored == parts
    world.vfs.cache.clear()
    assert world.names("/tables/m") == ["a.parquet", "b.parquet", "c.parquet"]
    for name in ("a", "b", "c"):
        shown = pq.read_table(io.BytesIO(world.read(f"/tables/m/{name}.parquet"))).to_pandas()
        pd.testing.assert_frame_equal(normalized(shown), normalized(frame), check_dtype=False)
    for name, junk in (("d.jsonl", b'{"id": 1}\n{"id": \n'), ("e.arrow", b"ARROW1 but no more")):
        assert errno_of(world.write, f"/tables/m/{name}", junk) == errno.EINVAL
    world.vfs.cache.clear()
    assert world.names("/tables/m") == ["a.parquet", "b.parquet", "c.parquet"]


def test_rm_of_a_converted_part_removes_its_source(world: World) -> None:
    base = f"rhfs-test/{world.prefix}"
    put_bytes(world.tb, "gs", f"{base}/a.csv", sample_frame(2).to_csv(index=False).encode())
    put_parquet(world.tb, "gs", f"{base}/b.parquet", sample_frame(2))
    world.table("r", "gs", base)
    world.vfs.unlink("/tables/r/a.parquet")
    world.vfs.unlink("/tables/r/b.parquet")
    assert world.names("/tables/r") == []
    left = world.tb.fs("gs").find(base)
    assert not [k for k in left if k.endswith((".csv", ".parquet"))], left


def test_mkdir_makes_an_empty_table_and_rmdir_removes_data_and_entry(world: World) -> None:
    world.vfs.mkdir("/tables/fresh")
    assert errno_of(world.vfs.mkdir, "/tables/fresh") == errno.EEXIST
    assert (world.tmp / "tables" / "fresh").is_dir()
    assert world.catalog.get("table", "fresh").path == str(world.tmp / "tables" / "fresh")
    assert world.names("/tables/fresh") == []
    world.vfs.mkdir("/tables/fresh/grade=a")
    world.write("/tables/fresh/grade=a/p.parquet", parquet_bytes(sample_frame(2)))
    (world.tmp / "tables" / "fresh" / "_SUCCESS").write_bytes(b"")
    assert errno_of(world.vfs.rmdir, "/tables/fresh") == errno.ENOTEMPTY
    world.vfs.unlink("/tables/fresh/grade=a/p.parquet")
    world.vfs.rmdir("/tables/fresh/grade=a")
    world.vfs.rmdir("/tables/fresh")  # only hidden files are left: they go with the table
    assert not (world.tmp / "tables" / "fresh").exists()
    assert world.catalog.find("table", "fresh") is None
    assert errno_of(world.vfs.getattr, "/tables/fresh") == errno.ENOENT


def test_renaming_a_table_renames_its_catalog_entry(world: World) -> None:
    world.vfs.mkdir("/tables/before")
    world.vfs.rename("/tables/before", "/tables/after")
    assert world.names("/tables") == ["after"]
    assert world.catalog.get("table", "after").path == str(world.tmp / "tables" / "before")


def test_missing_names_are_enoent(world: World) -> None:
    for path in ("/tables/nope", "/tables/nope/x.parquet", "/blobs/nope"):
        assert errno_of(world.vfs.getattr, path) == errno.ENOENT
    assert errno_of(world.vfs.readdir, "/tables/nope") == errno.ENOENT
    assert errno_of(world.vfs.open, "/blobs/nope", os.O_RDONLY) == errno.ENOENT


def test_a_blob_is_its_stored_bytes_wherever_it_lives(world: World) -> None:
    key = f"rhfs-test/{world.prefix}/blob.bin"
    put_bytes(world.tb, "azure", key, b"stored bytes")
    world.catalog.put(Resource(kind="blob", name="b", system="azure", path=key, serializer="raw"))
    assert world.names("/blobs") == ["b"]
    assert world.vfs.getattr("/blobs/b").size == len(b"stored bytes")
    assert world.read("/blobs/b") == b"stored bytes"
    world.write("/blobs/b", b"replaced through the view")
    assert world.tb.fs("azure").cat_file(key) == b"replaced through the view"
    world.vfs.unlink("/blobs/b")
    assert not world.tb.fs("azure").exists(key)
    assert world.catalog.find("blob", "b") is None


def test_a_new_file_in_blobs_is_a_new_raw_blob(world: World) -> None:
    world.write("/blobs/made-here", b"raw bytes")
    resource = world.catalog.get("blob", "made-here")
    assert resource.serializer == "raw"
    assert resource.path == str(world.tmp / "blobs" / "made-here")
    assert (world.tmp / "blobs" / "made-here").read_bytes() == b"raw bytes"
    assert errno_of(world.vfs.mkdir, "/blobs/dir") == errno.EOPNOTSUPP
