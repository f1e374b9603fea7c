"""Concurrency: many readers and writers at once, and two mounts of one bucket.

- 16 threads write 16 different files at once, then 16 threads read them back, on
  every system: no error, no deadlock, every byte right;
- 16 threads write disjoint ranges of the same file through their own handles
  while 16 more read it: every handle shares one open file, so the result is
  exactly the union of the writes;
- two mounts of the same bucket: each sees the other's closed writes within
  ``attr_ttl``, and when both write one object at the same time, the object ends up
  exactly one writer's bytes, never a mix: last writer wins (docs/SEMANTICS.md).

A deadlock shows up as a thread still alive at its join deadline, not as a hung run.
"""

from __future__ import annotations

import errno
import hashlib
import os
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import mounted, system_path
from faults_fixtures import wait_for, write_config
from testbed import Testbed, fsspec_filesystem

pytestmark = [pytest.mark.mount, pytest.mark.servers, pytest.mark.timeout(240)]

THREADS = 16
JOIN_DEADLINE = 120.0  # seconds; far beyond the work, short of a hang
ATTR_TTL = 1.0  # the testbed config's


def run_all(jobs: list[Callable[[], object]]) -> list[object]:
    """Run every job on its own thread; fail if any raises or is still running at the deadline."""
    results: list[object] = [None] * len(jobs)
    errors: list[BaseException] = []
    start = threading.Barrier(len(jobs))

    def run(i: int) -> None:
        start.wait()
        try:
            results[i] = jobs[i]()
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(JOIN_DEADLINE)
    stuck = [t for t in threads if t.is_alive()]
    assert not stuck, f"{len(stuck)} of {len(threads)} threads still running: a deadlock"
    assert not errors, errors[:3]
    return results


@pytest.fixture
def work_dir(mnt: Path, system: str) -> Iterator[Path]:
    d = system_path(mnt, system) / f"conc-{uuid.uuid4().hex[:8]}"
    d.mkdir()
    yield d
    with ThreadPoolExecutor(8) as pool:  # rm -r of 16 remote files, in parallel
        list(pool.map(lambda p: p.unlink(missing_ok=True), [p for p in d.iterdir() if p.is_file()]))
    os.rmdir(d)


def test_16_writers_then_16_readers_on_different_files(work_dir: Path) -> None:
    payloads = [os.urandom((256 << 10) + i * 4099) for i in range(THREADS)]
    run_all([lambda i=i: (work_dir / f"f{i}.bin").write_bytes(payloads[i]) for i in range(THREADS)])
    assert sorted(os.listdir(work_dir)) == sorted(f"f{i}.bin" for i in range(THREADS))
    got = run_all([lambda i=i: (work_dir / f"f{i}.bin").read_bytes() for i in range(THREADS)])
    for i in range(THREADS):
        assert got[i] == payloads[i], f"f{i}.bin"


def test_16_readers_and_writers_on_the_same_file(work_dir: Path) -> None:
    part = 64 << 10
    target = work_dir / "shared.bin"
    old = os.urandom(THREADS * part)
    target.write_bytes(old)
    parts = [os.urandom(part) for _ in range(THREADS)]

    def write_part(i: int) -> None:
        fd = os.open(target, os.O_RDWR)
        try:
            os.pwrite(fd, parts[i], i * part)
        finally:
            os.close(fd)

    def read_whole() -> int:
        """A reader whose version is replaced mid-read gets ESTALE, and reopens (docs/SEMANTICS.md)."""
        for _ in range(50):
            try:
                data = target.read_bytes()
            except OSError as e:
                if e.errno != errno.ESTALE:
                    raise
                continue
            assert len(data) == len(old), len(data)
            return len(data)
        raise AssertionError("50 reads in a row found the file replaced under them")

    jobs: list[Callable[[], object]] = [lambda i=i: write_part(i) for i in range(THREADS)]
    run_all(jobs + [read_whole for _ in range(THREADS)])
    expected = b"".join(parts)
    assert target.read_bytes() == expected
    got = run_all([lambda: hashlib.sha256(target.read_bytes()).hexdigest() for _ in range(THREADS)])
    assert set(got) == {hashlib.sha256(expected).hexdigest()}


# -- two mounts of one bucket ------------------------------------------------------------------
@pytest.fixture(scope="module")
def two_mounts(testbed: Testbed, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """The testbed config mounted twice, each with its own cache_dir (its own spool and log)."""
    d = tmp_path_factory.mktemp("two-mounts")
    first = write_config(testbed, d / "a", op_timeout=30)
    second = write_config(testbed, d / "b", op_timeout=30)
    with mounted(first, d / "mnt-a") as a, mounted(second, d / "mnt-b") as b:
        yield a / "s3" / testbed.bucket, b / "s3" / testbed.bucket


def test_two_mounts_see_each_others_writes_after_close(two_mounts: tuple[Path, Path]) -> None:
    a, b = two_mounts
    name = f"shared-{uuid.uuid4().hex[:8]}.txt"
    (a / name).write_bytes(b"written by a\n")
    assert (b / name).read_bytes() == b"written by a\n"  # never seen by b: no cache to wait out
    (b / name).write_bytes(b"then rewritten by b, longer\n")
    assert wait_for(lambda: (a / name).read_bytes() == b"then rewritten by b, longer\n", timeout=5 * ATTR_TTL)
    (a / name).unlink()
    assert wait_for(lambda: not (b / name).exists(), timeout=5 * ATTR_TTL)


@pytest.mark.parametrize("round_", range(3))
def test_two_mounts_writing_one_object_last_writer_wins_whole(
    testbed: Testbed, two_mounts: tuple[Path, Path], round_: int
) -> None:
    a, b = two_mounts
    name = f"race-{uuid.uuid4().hex[:8]}.bin"
    (a / name).write_bytes(b"old")
    from_a, from_b = os.urandom(3 << 20), os.urandom((2 << 20) + 12345)
    run_all([lambda: (a / name).write_bytes(from_a), lambda: (b / name).write_bytes(from_b)])
    stored = fsspec_filesystem(testbed, "s3").cat_file(f"{testbed.bucket}/{name}")
    assert stored in (from_a, from_b), f"a mix of two writers ({len(stored)} bytes)"
    for mount in (a, b):  # both mounts settle on the winner
        assert wait_for(lambda m=mount: (m / name).read_bytes() == stored, timeout=5 * ATTR_TTL)
    (a / name).unlink()
