"""The rest of the Runhouse API against the local servers: Table.stream's arguments, len and
iteration, Folder mv/open/get/put/rm/ls/mount, and Blob to/rm/exists_in_system.

Each test writes through ``rhfs.api`` and checks what the system holds with its own fsspec
client (never through rhfs), or through the real ``mnt`` mount.
"""

from __future__ import annotations

import os
import pickle
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import torch
from tables_fixtures import api, derived_config, numbered_frame, unique
from testbed import Testbed

from rhfs.catalog import NotInCatalog
from rhfs.errors import AlreadyExists, InvalidArgument, IsADirectory, NotSupported

pytestmark = [pytest.mark.servers]
ROWS = 1000


@pytest.fixture
def rh(testbed: Testbed) -> Any:
    return api(testbed.config_path)


@pytest.fixture
def s3_table(rh: Any) -> Any:
    table = rh.table(
        data=numbered_frame(ROWS, 8, 0.5), name=unique("stream"), system="s3", partition_cols=["part"]
    )
    table.write().save()
    yield table
    table.rm()


def ids(batches: list[Any]) -> list[int]:
    return [int(i) for b in batches for i in (b["id"].to_pylist() if isinstance(b, pa.Table) else b["id"])]


def test_stream_gives_exact_batches_and_drops_the_last_on_request(s3_table: Any) -> None:
    batches = list(s3_table.stream(batch_size=64))
    assert [len(b) for b in batches] == [64] * (ROWS // 64) + [ROWS % 64]
    assert sorted(ids(batches)) == list(range(ROWS))
    dropped = list(s3_table.stream(batch_size=64, drop_last=True))
    assert [len(b) for b in dropped] == [64] * (ROWS // 64)
    assert ids(dropped) == ids(batches)[: len(dropped) * 64]


def test_a_seeded_shuffle_buffer_gives_a_reproducible_order(s3_table: Any) -> None:
    plain = ids(list(s3_table.stream(batch_size=50)))
    first = ids(list(s3_table.stream(batch_size=50, shuffle_seed=7, shuffle_buffer_size=200)))
    again = ids(list(s3_table.stream(batch_size=50, shuffle_seed=7, shuffle_buffer_size=200)))
    other = ids(list(s3_table.stream(batch_size=50, shuffle_seed=8, shuffle_buffer_size=200)))
    assert first == again
    assert first != plain and first != other
    assert sorted(first) == sorted(other) == list(range(ROWS))  # no row lost or repeated
    # the buffer bounds how far a row moves: the first batch comes from the first 400 rows read
    assert max(plain.index(i) for i in first[:50]) < 2 * 200
    with pytest.raises(InvalidArgument, match="shuffle_seed needs shuffle_buffer_size"):
        s3_table.stream(batch_size=50, shuffle_seed=7)
    with pytest.raises(InvalidArgument, match="shuffle_buffer_size must be positive"):
        s3_table.stream(batch_size=50, shuffle_buffer_size=0)
    with pytest.raises(InvalidArgument, match="batch_size must be positive"):
        s3_table.stream(batch_size=0)


def test_prefetch_reads_ahead_without_changing_the_batches(s3_table: Any) -> None:
    expected = ids(list(s3_table.stream(batch_size=100, prefetch_batches=0)))
    assert ids(list(s3_table.stream(batch_size=100, prefetch_batches=3))) == expected
    stream = s3_table.stream(batch_size=100, prefetch_batches=2)
    assert len(next(stream)) == 100
    stream.close()  # a reader that stops early stops the read-ahead thread
    assert not any(t.name == "rhfs-stream-prefetch" for t in __import__("threading").enumerate())


def test_stream_formats(rh: Any, s3_table: Any) -> None:
    name = s3_table.name
    as_pandas = next(rh.table(name=name, stream_format="pandas").stream(batch_size=10))
    assert isinstance(as_pandas, pd.DataFrame) and list(as_pandas.columns) == ["id", "x", "part"]
    as_arrow = next(rh.table(name=name, stream_format="pyarrow").stream(batch_size=10))
    assert isinstance(as_arrow, pa.Table) and as_arrow.num_rows == 10
    as_torch = next(rh.table(name=name, stream_format="torch").stream(batch_size=10))
    assert isinstance(as_torch["id"], torch.Tensor) and as_torch["id"].shape == (10,)
    assert as_torch["x"].dtype == torch.float64
    assert as_torch["x"].tolist() == [i * 0.5 for i in as_torch["id"].tolist()]
    with pytest.raises(NotSupported, match="stream_format 'tf'"):
        rh.table(name=name, stream_format="tf")


def test_len_reads_only_the_footers_and_iteration_gives_rows(rh: Any) -> None:
    rng = np.random.default_rng(0)
    rows = 1_200_000  # ~10 MB of random floats in each of two parts: footers are a sliver of it
    data = pd.DataFrame({"id": np.arange(rows), "part": np.arange(rows) % 2, "r": rng.random(rows)})
    table = rh.table(data=data, name=unique("len"), system="s3", partition_cols=["part"]).write()
    stats = rh.session().core.stats
    total = sum(int(e["size"]) for e in rh.session().fs.find(f"s3/{table.path}", detail=True).values())
    before = stats.snapshot()["systems"]["s3"]["bytes_read"]
    assert len(table) == rows
    read = stats.snapshot()["systems"]["s3"]["bytes_read"] - before
    # what a footer read costs is the read-ahead's tail window per part, whatever the part's size
    assert read <= 2 * (2 << 20) and read < total / 4, f"len() read {read} bytes of {total}"
    rows_seen = iter(table)
    first = next(rows_seen)
    assert set(first) == {"id", "part", "r"} and isinstance(first["id"], int)
    assert sum(1 for _ in rows_seen) == rows - 1
    table.rm()


def test_put_get_and_open_files_inside_a_folder(rh: Any, testbed: Testbed) -> None:
    folder = rh.folder(path=unique("files"), system="cluster-a")
    folder.put({"raw.bin": b"\x00\x01", "obj.pkl": {"k": [1, 2]}, "sub/deep.bin": b"deep"})
    outside = testbed.fs("cluster-a")
    root = f"{testbed.cluster_roots['cluster-a']}/{folder.path}"
    assert outside.cat_file(f"{root}/raw.bin") == b"\x00\x01"
    assert pickle.loads(outside.cat_file(f"{root}/obj.pkl")) == {"k": [1, 2]}
    assert folder.get("sub/deep.bin") == b"deep"
    with pytest.raises(AlreadyExists, match=r"raw\.bin"):
        folder.put({"raw.bin": b"other", "new.bin": b"n"})
    assert not outside.exists(f"{root}/new.bin")  # nothing was written
    folder.put({"raw.bin": b"other"}, overwrite=True)
    assert folder.get("raw.bin") == b"other"
    folder.put({"note.txt": "héllo"}, mode="w")
    assert folder.get("note.txt", mode="r") == "héllo"
    with folder.open("written.txt", "w") as f:
        f.write("through open\n")
    assert outside.cat_file(f"{root}/written.txt") == b"through open\n"
    with folder.open("written.txt") as f:
        assert f.read() == b"through open\n"
    with pytest.raises(InvalidArgument):
        folder.open("x", mode="a")
    assert folder.ls() == ["note.txt", "obj.pkl", "raw.bin", "sub", "written.txt"]
    assert sorted(folder.ls(sort=True)) == folder.ls()
    folder.rm(contents=["raw.bin"])
    assert not outside.exists(f"{root}/raw.bin") and outside.exists(f"{root}/obj.pkl")
    with pytest.raises(IsADirectory, match="sub"):
        folder.rm(recursive=False)
    assert outside.exists(f"{root}/obj.pkl")  # the directory in the way was found first
    folder.rm(contents=["sub"])
    folder.rm(recursive=False)  # the files go, the folder stays
    assert folder.ls() == [] and folder.exists_in_system()
    folder.rm()
    assert not outside.exists(root) and not folder.exists_in_system()


def test_mv_renames_within_a_store_and_copies_across_systems(rh: Any, testbed: Testbed) -> None:
    name = unique("moved")
    folder = rh.folder(path=f"rhfs-test/{name}", system="s3").save(name)
    folder.put({"a.txt": b"a", "d/b.txt": b"b"})
    s3 = testbed.fs("s3")
    folder.mv("s3", f"rhfs-test/{name}-renamed")
    assert not s3.exists(f"rhfs-test/{name}/a.txt")
    assert s3.cat_file(f"rhfs-test/{name}-renamed/d/b.txt") == b"b"
    assert folder.path == f"rhfs-test/{name}-renamed"
    folder.mv("cluster-a", f"moved/{name}")
    assert not s3.exists(f"rhfs-test/{name}-renamed/a.txt")
    on_cluster = f"{testbed.cluster_roots['cluster-a']}/moved/{name}"
    assert testbed.fs("cluster-a").cat_file(f"{on_cluster}/d/b.txt") == b"b"
    loaded = rh.folder(name=name)  # the catalog entry followed the folder
    assert (loaded.system, loaded.path) == ("cluster-a", f"moved/{name}")
    other = rh.folder(path=f"rhfs-test/{name}-other", system="s3")
    other.put({"c.txt": b"c"})
    with pytest.raises(AlreadyExists):
        other.mv("cluster-a", f"moved/{name}", overwrite=False)
    loaded.rm()
    other.rm()
    with pytest.raises(NotInCatalog):
        rh.folder(name=name)


def test_mount_reuses_a_running_mount(rh: Any, mnt: Path) -> None:
    folder = rh.folder(path=f"rhfs-test/{unique('m')}", system="s3")
    folder.put({"seen.txt": b"in the mount"})
    local = folder.mount()
    assert local == f"{mnt}/s3/{folder.path}"
    assert Path(local, "seen.txt").read_bytes() == b"in the mount"
    here = rh.folder(path="a-local-folder")
    assert here.mount() == os.path.abspath("a-local-folder")  # already local: nothing mounted
    folder.rm()


def test_mount_starts_rhfs_when_none_serves_the_config(testbed: Testbed, tmp_path: Path) -> None:
    config = derived_config(testbed, tmp_path / "own.toml", lambda raw: None)
    rh = api(config)
    try:
        folder = rh.folder(path=f"rhfs-test/{unique('own')}", system="s3")
        folder.put({"f.txt": b"own mount"})
        mountpoint = tmp_path / "mnt"
        local = folder.mount(str(mountpoint))
        assert local == f"{mountpoint}/s3/{folder.path}"
        assert Path(local, "f.txt").read_bytes() == b"own mount"
        assert folder.mount() == local  # a second call reuses it
        folder.rm()
    finally:
        subprocess.run(["fusermount3", "-u", str(tmp_path / "mnt")], capture_output=True)
        api(testbed.config_path)


def test_mount_with_no_path_starts_one_under_the_runtime_directory(testbed: Testbed, tmp_path: Path) -> None:
    from rhfs.api.mounts import default_mountpoint
    from rhfs.mountpoint import runtime_dir

    config = derived_config(testbed, tmp_path / "default.toml", lambda raw: None)
    rh = api(config)
    mountpoint = default_mountpoint(str(config))
    try:
        folder = rh.folder(path=f"rhfs-test/{unique('dflt')}", system="s3")
        folder.put({"g.txt": b"default place"})
        local = folder.mount()
        assert local == f"{mountpoint}/s3/{folder.path}" and mountpoint.startswith(runtime_dir())
        assert Path(local, "g.txt").read_bytes() == b"default place"
        folder.rm()
    finally:
        subprocess.run(["fusermount3", "-u", mountpoint], capture_output=True)
        api(testbed.config_path)


def test_blob_to_rm_and_exists_in_system(rh: Any, testbed: Testbed) -> None:
    name = unique("blob")
    blob = rh.blob(data={"v": 1}, name=name, system="s3").write().save()
    copy = blob.to("cluster-a", path=f"blobs/{name}.pkl")
    assert copy.fetch() == {"v": 1} and copy.serializer == "pickle"
    on_cluster = f"{testbed.cluster_roots['cluster-a']}/blobs/{name}.pkl"
    assert pickle.loads(testbed.fs("cluster-a").cat_file(on_cluster)) == {"v": 1}
    assert blob.exists_in_system() and copy.exists_in_system()
    assert not rh.blob(path="blobs", system="cluster-a").exists_in_system()  # a directory is no blob
    blob.rm()
    assert not blob.exists_in_system() and copy.exists_in_system()
    with pytest.raises(NotInCatalog):
        rh.blob(name=name)
    copy.rm()
    assert not testbed.fs("cluster-a").exists(on_cluster)
