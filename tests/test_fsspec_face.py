"""The ``rhfs://`` fsspec face: the mount's tree in-process, with the mount's answers.

Runs over the testbed config (so the catalog is the one ``mnt`` shows), through
``fsspec.filesystem("rhfs", config=...)`` as the registered entry point gives it.
"""

from __future__ import annotations

import errno
import uuid
from pathlib import Path
from typing import Any

import fsspec
import pandas as pd
import pytest
from tables_fixtures import ATTR_TTL, normalized, parquet_bytes, sample_frame, wait_for
from testbed import Testbed

from rhfs.fsspec_face import RhfsFileSystem

pytestmark = [pytest.mark.servers]


@pytest.fixture
def fs(testbed: Testbed) -> Any:
    return fsspec.filesystem("rhfs", config=str(testbed.config_path))


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_the_protocol_is_registered_and_shares_one_core(fs: Any, testbed: Testbed) -> None:
    assert isinstance(fs, RhfsFileSystem)
    assert fs.vfs is RhfsFileSystem(config=str(testbed.config_path)).vfs
    top = fs.ls("", detail=False)
    assert {"here", "clusters", "s3", "gs", "azure", "tables", "blobs", ".rhfs"} <= set(top)
    assert fs.isdir("tables") and fs.isdir("clusters/cluster-a")


def test_files_on_a_store_read_write_ranges_and_renames(fs: Any, testbed: Testbed) -> None:
    base = f"s3/rhfs-test/{unique('ff')}"
    fs.pipe_file(f"{base}/a.bin", b"0123456789")
    assert testbed.fs("s3").cat_file(base[3:] + "/a.bin") == b"0123456789"
    assert fs.cat_file(f"rhfs://{base}/a.bin", start=2, end=5) == b"234"
    assert fs.cat_file(f"{base}/a.bin", start=-3) == b"789"
    with fs.open(f"{base}/a.bin", "rb") as f:
        f.seek(6)
        assert f.read(2) == b"67"
    assert fs.info(f"{base}/a.bin")["size"] == 10
    fs.mv(f"{base}/a.bin", f"{base}/b.bin")
    assert fs.ls(base, detail=False) == [f"{base}/b.bin"]
    fs.rm(base, recursive=True)
    assert not fs.exists(base)


def test_errors_carry_the_mount_errno(fs: Any) -> None:
    with pytest.raises(FileNotFoundError):
        fs.info("tables/no-such-table")
    with pytest.raises(FileNotFoundError):
        fs.open("blobs/no-such-blob", "rb")
    with pytest.raises(OSError) as info:
        fs.mkdir("s3/new-bucket", create_parents=False)
    assert info.value.errno in (errno.EACCES, errno.EROFS, errno.EPERM)


def test_tables_read_write_and_refuse_like_the_mount(fs: Any, testbed: Testbed, mnt: Path) -> None:
    name = unique("ft")
    fs.mkdir(f"tables/{name}")
    with fs.open(f"tables/{name}/p0.parquet", "wb") as f:
        f.write(parquet_bytes(sample_frame(5)))
    with pytest.raises(OSError) as info, fs.open(f"tables/{name}/bad.parquet", "wb") as f:
        f.write(b"not parquet")
    assert info.value.errno == errno.EINVAL
    assert fs.ls(f"tables/{name}", detail=False) == [f"tables/{name}/p0.parquet"]
    frame = pd.read_parquet(f"rhfs://tables/{name}", storage_options={"config": str(testbed.config_path)})
    assert normalized(frame).equals(normalized(sample_frame(5)))
    assert wait_for((mnt / "tables" / name / "p0.parquet").exists, 10 * ATTR_TTL) is not None
    assert normalized(pd.read_parquet(mnt / "tables" / name)).equals(normalized(sample_frame(5)))
    fs.rm(f"tables/{name}", recursive=True)
    assert name not in [p.rsplit("/", 1)[-1] for p in fs.ls("tables", detail=False)]


def test_blobs_written_through_rhfs_are_raw_blobs(fs: Any, mnt: Path) -> None:
    name = unique("fb")
    fs.pipe_file(f"blobs/{name}", b"payload")
    assert fs.cat_file(f"blobs/{name}") == b"payload"
    assert wait_for((mnt / "blobs" / name).exists, 10 * ATTR_TTL) is not None
    assert (mnt / "blobs" / name).read_bytes() == b"payload"
    fs.rm_file(f"blobs/{name}")
    assert not fs.exists(f"blobs/{name}")
