"""Many writers at once keep every byte: processes and threads writing, reading back,
renaming and deleting their own files, on every system, through the real mount.

Each worker writes files of random sizes (1 byte up to the system's cap), reads each
back just after ``close()``, renames it, reads it again under the new name, and deletes
every other one. Nothing may come back short, empty or different, whether read through
the mount or straight from the system underneath, and no temporary sibling may be left.

This is the workload that once lost files: a reader opening a file whose writer's
``release`` raced it got a fresh, empty spool for a file it took to be new, and the
reader's own ``close()`` then uploaded those 0 bytes over the data (docs/SEMANTICS.md,
"Concurrent writers"). ``RHFS_STRESS_ROUNDS`` repeats each test (CI runs 2 rounds).
"""

from __future__ import annotations

import multiprocessing
import os
import random
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import system_path
from mount_fixtures import outside
from testbed import Testbed

pytestmark = [pytest.mark.mount, pytest.mark.servers, pytest.mark.timeout(600)]

ROUNDS = int(os.environ.get("RHFS_STRESS_ROUNDS", "2"))
# (files per worker, the largest file): here/ is fast enough for the full sizes
WORK = {"here": (30, 2 << 20), "cluster-a": (12, 1 << 20), "s3": (10, 512 << 10)}
DEFAULT_WORK = (8, 256 << 10)  # gs and azure, whose emulators are the slowest writers


def churn(directory: str, seed: int, files: int, largest: int) -> list[str]:
    """One worker's run in its own directory; the problems it saw, one line each."""
    rng = random.Random(seed)
    problems = []
    os.makedirs(directory, exist_ok=True)
    kept: dict[str, bytes] = {}
    for j in range(files):
        data = rng.randbytes(rng.randint(1, largest))
        first, second = os.path.join(directory, f"f{j}"), os.path.join(directory, f"g{j}")
        with open(first, "wb") as f:
            f.write(data)
        problems += _check(first, data, "after close")
        os.rename(first, second)
        problems += _check(second, data, "after rename")
        if j % 2:
            os.unlink(second)
            if os.path.exists(second):
                problems.append(f"{second}: still there after unlink")
        else:
            kept[f"g{j}"] = data
    names = sorted(os.listdir(directory))
    if names != sorted(kept):
        problems.append(f"{directory}: lists {names}, expected {sorted(kept)}")
    return problems


def _check(path: str, data: bytes, when: str) -> list[str]:
    with open(path, "rb") as f:
        got = f.read()
    if got != data:
        return [f"{path} {when}: read {len(got)} bytes of {len(data)} (stat says {os.stat(path).st_size})"]
    return []


def _churn_job(args: tuple[str, int, int, int]) -> list[str]:
    return churn(*args)


@pytest.fixture
def work_root(mnt: Path, system: str) -> Iterator[Path]:
    root = system_path(mnt, system) / f"writers-{uuid.uuid4().hex[:8]}"
    root.mkdir()
    yield root
    for directory in root.iterdir():
        for p in directory.iterdir():
            p.unlink()
        directory.rmdir()
    root.rmdir()


def _assert_stored(testbed: Testbed, system: str, root: Path, mnt: Path, workers: int, files: int) -> None:
    """What the system underneath holds: exactly the kept files, at full size, no temporaries."""
    fs, base = outside(testbed, system, root, mnt)
    fs.invalidate_cache()  # a listing cached by an earlier test is not what the system holds now
    for i in range(workers):
        prefix = f"{base}/w{i}/"
        # find, not ls: adlfs lists a directory's marker blob in place of its content
        found = fs.find(prefix.rstrip("/"), detail=True).items()
        sizes = {name[len(prefix) :]: info["size"] for name, info in found if name.startswith(prefix)}
        sizes.pop("", None)  # a store's directory marker
        leftovers = [name for name in sizes if ".rhfs-tmp-" in name]
        assert not leftovers, f"w{i}: temporary siblings left: {leftovers}"
        sizes = {n: s for n, s in sizes.items() if not n.startswith(".")}
        assert sorted(sizes) == sorted(f"g{j}" for j in range(0, files, 2)), f"w{i}: {sorted(sizes)}"
        for name, size in sizes.items():
            assert size == (root / f"w{i}" / name).stat().st_size > 0, f"w{i}/{name}: {size} bytes stored"


def _report(problems: list[str], reads: int) -> str:
    return f"{len(problems)} lost or wrong of {reads} reads:\n" + "\n".join(problems[:10])


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_16_processes_lose_nothing(
    testbed: Testbed, mnt: Path, system: str, work_root: Path, round_: int
) -> None:
    files, largest = WORK.get(system, DEFAULT_WORK)
    jobs = [(str(work_root / f"w{i}"), 1000 * round_ + i, files, largest) for i in range(16)]
    with multiprocessing.get_context("fork").Pool(16) as pool:
        problems = [p for result in pool.map(_churn_job, jobs) for p in result]
    assert not problems, f"{len(problems)} lost or wrong of {16 * files * 2} reads:\n" + "\n".join(
        problems[:10]
    )
    _assert_stored(testbed, system, work_root, mnt, 16, files)


@pytest.mark.parametrize("round_", range(ROUNDS))
def test_64_threads_lose_nothing(
    testbed: Testbed, mnt: Path, system: str, work_root: Path, round_: int
) -> None:
    files, largest = WORK.get(system, DEFAULT_WORK)
    files, largest = max(2, files // 4), largest // 2
    jobs = [(str(work_root / f"w{i}"), 5000 + 1000 * round_ + i, files, largest) for i in range(64)]
    with ThreadPoolExecutor(64) as pool:
        problems = [p for result in pool.map(_churn_job, jobs) for p in result]
    assert not problems, f"{len(problems)} lost or wrong of {64 * files * 2} reads:\n" + "\n".join(
        problems[:10]
    )
    _assert_stored(testbed, system, work_root, mnt, 64, files)


def test_a_reader_racing_the_writers_release_reads_the_whole_file(mnt: Path) -> None:
    """The race itself, on here/: a reader opens a file while its writer is being released,
    hundreds of times. The file must never read, nor end up, short."""
    root = system_path(mnt, "here") / f"race-{uuid.uuid4().hex[:8]}"
    root.mkdir()
    try:
        data = os.urandom(1 << 20)

        def once(i: int) -> str | None:
            path = root / f"r{i}"
            path.write_bytes(data)  # its release reaches the daemon after close() returns
            got = path.read_bytes()  # this open races that release
            stored = path.stat().st_size
            path.unlink()
            return None if got == data and stored == len(data) else f"r{i}: read {len(got)}, stat {stored}"

        with ThreadPoolExecutor(16) as pool:
            problems = [p for p in pool.map(once, range(400)) if p]
        assert not problems, problems[:10]
    finally:
        for p in root.iterdir():
            p.unlink()
        root.rmdir()
