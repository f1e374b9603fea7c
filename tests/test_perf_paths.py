"""The mount's fast paths, through the kernel: what they cost in requests and round trips.

No timing here (that is ``scripts/bench.py``): each test counts requests in
``.rhfs/stats.json``, or checks bytes, errno and kernel settings that the fast paths
rely on.
"""

from __future__ import annotations

import os
import random
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mount_fixtures import stats
from testbed import Testbed, fsspec_filesystem

MiB = 1 << 20


def calls(mnt: Path, system: str) -> dict[str, int]:
    return dict(stats(mnt)["systems"][system]["metadata_calls"])


def ops(mnt: Path) -> dict[str, int]:
    return dict(stats(mnt)["ops"])


@pytest.fixture
def s3_dir(mnt: Path, testbed: Testbed) -> Iterator[tuple[Path, Any, str]]:
    """A fresh prefix on S3: (its path in the mount, the S3 filesystem, its key prefix)."""
    name = f"perf-{uuid.uuid4().hex[:8]}"
    fs = fsspec_filesystem(testbed, "s3")
    yield mnt / "s3" / testbed.bucket / name, fs, f"{testbed.bucket}/{name}"
    fs.rm(f"{testbed.bucket}/{name}", recursive=True)


def test_ls_l_costs_one_listing_and_no_request_per_entry(mnt: Path, s3_dir: tuple[Path, Any, str]) -> None:
    path, fs, prefix = s3_dir
    fs.pipe({f"{prefix}/f{i:04d}": b"x" * i for i in range(300)})
    before_calls, before_ops = calls(mnt, "s3"), ops(mnt)
    out = subprocess.run(["ls", "-l", str(path)], capture_output=True, text=True, check=True).stdout
    after_calls, after_ops = calls(mnt, "s3"), ops(mnt)
    assert len(out.splitlines()) == 301  # "total" and 300 entries, sizes from the listing
    assert " 299 " in out
    assert after_calls.get("list", 0) - before_calls.get("list", 0) == 1
    assert after_calls.get("stat", 0) - before_calls.get("stat", 0) <= 2  # the directory itself
    assert after_ops.get("getattr", 0) - before_ops.get("getattr", 0) < 20  # not one per entry


def test_ls_l_is_told_once_that_there_are_no_labels_or_acls(mnt: Path, s3_dir: tuple[Path, Any, str]) -> None:
    path, fs, prefix = s3_dir
    fs.pipe({f"{prefix}/a": b"a"})
    for name, errno_text in (("security.selinux", "Operation not supported"), ("user.other", "No such attr")):
        result = subprocess.run(["getfattr", "-n", name, str(path / "a")], capture_output=True, text=True)
        assert result.returncode != 0 and errno_text in result.stderr, result.stderr
    url = subprocess.run(
        ["getfattr", "--only-values", "-n", "user.rhfs.url", str(path / "a")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert url == f"s3://{prefix}/a"
    trace = subprocess.run(
        ["strace", "-f", "-e", "trace=getxattr,lgetxattr", "ls", "-l", str(path)],
        capture_output=True,
        text=True,
    )
    assert trace.returncode == 0, trace.stderr
    assert trace.stderr.count("xattr(") <= 2  # once for labels, once for ACLs: not per entry


def test_cp_r_into_the_mount_makes_one_request_per_file(
    mnt: Path, s3_dir: tuple[Path, Any, str], tmp_path: Path
) -> None:
    path, fs, prefix = s3_dir
    src = tmp_path / "src"
    src.mkdir()
    for i in range(40):
        (src / f"f{i}").write_bytes(os.urandom(100 + i))
    path.mkdir()
    before = calls(mnt, "s3")
    subprocess.run(["cp", "-r", str(src), str(path / "copy")], check=True)
    after = calls(mnt, "s3")
    assert sum(after.values()) - sum(before.values()) <= 6  # the directory's own lookups, not per file
    uploaded = [p.rsplit("/", 1)[-1] for p in fs.find(f"{prefix}/copy") if not p.endswith("/")]
    assert sorted(uploaded) == sorted(f"f{i}" for i in range(40))
    for i in (0, 17, 39):
        assert fs.cat_file(f"{prefix}/copy/f{i}") == (src / f"f{i}").read_bytes()


def test_sequential_and_random_reads_return_the_bytes(mnt: Path, s3_dir: tuple[Path, Any, str]) -> None:
    path, fs, prefix = s3_dir
    data = random.Random(6).randbytes(24 * MiB + 12345)
    fs.pipe_file(f"{prefix}/big", data)
    before = stats(mnt)["systems"]["s3"]["bytes_read"]
    assert (path / "big").read_bytes() == data
    fetched = stats(mnt)["systems"]["s3"]["bytes_read"] - before
    assert len(data) <= fetched <= len(data) + 4 * MiB  # read once, not once per request
    rng = random.Random(7)
    with open(path / "big", "rb", buffering=0) as f:
        for _ in range(30):
            offset = rng.randrange(0, len(data) - 65536)
            assert os.pread(f.fileno(), 65536, offset) == data[offset : offset + 65536]
        assert os.pread(f.fileno(), 100, len(data) - 50) == data[-50:]


def test_the_kernel_reads_ahead_in_large_requests(mnt: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("only root may raise a mount's read_ahead_kb")
    with open("/proc/self/mountinfo") as f:
        device = next(line.split()[2] for line in f if line.split()[4] == str(mnt))
    assert int(Path(f"/sys/class/bdi/{device}/read_ahead_kb").read_text()) >= 1024


def test_a_parquet_file_is_fetched_once_and_read_again_from_the_page_cache(
    mnt: Path, s3_dir: tuple[Path, Any, str], tmp_path: Path
) -> None:
    """pandas reads a row group's column chunks side by side (5 row groups of chunks of 4 and
    8 MiB, as the bench's file): every byte is fetched once; a second read of the unchanged
    file is served by the kernel's page cache (the file is 87 MB; the kernel may have
    reclaimed a few of its pages since, on a machine short of memory)."""
    import numpy as np
    import pandas as pd

    path, fs, prefix = s3_dir
    rows = 4_200_000
    rng = np.random.default_rng(6)
    frame = pd.DataFrame({"id": np.arange(rows), "x": rng.random(rows), "y": rng.normal(size=rows)})
    local = tmp_path / "data.parquet"
    frame.to_parquet(local, index=False)
    fs.put_file(str(local), f"{prefix}/data.parquet")
    size = local.stat().st_size

    before = stats(mnt)["systems"]["s3"]["bytes_read"]
    assert pd.read_parquet(path / "data.parquet").equals(frame)
    first = stats(mnt)["systems"]["s3"]["bytes_read"]
    assert size <= first - before <= size + MiB  # plus at most the footer's read of the last MiB
    assert pd.read_parquet(path / "data.parquet").equals(frame)
    again = stats(mnt)["systems"]["s3"]["bytes_read"] - first
    assert again <= MiB  # 0, but for the odd pages the kernel reclaims when memory runs short
