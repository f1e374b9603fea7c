"""Tree jobs on real servers: whole trees copied byte-exact, then synced, by every kind of route.

Each test builds a source tree on one system (nested directories, an empty one, an
empty file and a file of a few MiB), copies it with :class:`~rhfs.transfer.trees.TreeCopy`
over the tree's own planner, and reads the destination back through the backends.
"""

from __future__ import annotations

import os
import tomllib
import uuid
from pathlib import Path

import pytest
import tomli_w
from testbed import Testbed

from rhfs.backends.base import Entry
from rhfs.config import load_file
from rhfs.transfer.planner import Planner
from rhfs.transfer.trees import TreeCopy, TreeOptions
from rhfs.tree import Location
from rhfs.vfs.core import Vfs
from rhfs.wiring import build_core

pytestmark = pytest.mark.servers
MiB = 1 << 20

FILES = {
    "a.txt": b"alpha\n",
    "empty": b"",
    "d/b.bin": os.urandom(3 * MiB + 17),
    "d/e/c.txt": b"deep\n" * 100,
}
EMPTY_DIRS = ("d/nothing",)


@pytest.fixture(scope="module")
def vfs(testbed: Testbed, tmp_path_factory: pytest.TempPathFactory) -> Vfs:
    d = tmp_path_factory.mktemp("tree-jobs")
    cfg = tomllib.loads(testbed.config_path.read_text())
    cfg["mount"]["cache_dir"] = str(d / "cache")
    path = d / "rhfs.toml"
    path.write_text(tomli_w.dumps(cfg))
    path.chmod(0o600)
    return build_core(load_file(str(path))).vfs


def base(testbed: Testbed, system: str) -> str:
    return {
        "here": "/here",
        "cluster-a": "/clusters/cluster-a",
        "cluster-b": "/clusters/cluster-b",
        "s3": f"/s3/{testbed.bucket}",
        "gs": f"/gs/{testbed.bucket}",
    }[system]


def place(vfs: Vfs, testbed: Testbed, system: str) -> Location:
    loc = vfs.locate(f"{base(testbed, system)}/tree-{uuid.uuid4().hex[:10]}")
    return loc


def put(loc: Location, rel: str, data: bytes, tmp: Path) -> None:
    local = tmp / uuid.uuid4().hex
    local.write_bytes(data)
    loc.backend.upload(str(local), f"{loc.rel}/{rel}")
    local.unlink()


def make_tree(loc: Location, tmp: Path) -> None:
    loc.backend.mkdir(loc.rel)
    for directory in ("d", "d/e", *EMPTY_DIRS):
        loc.backend.mkdir(f"{loc.rel}/{directory}")
    for rel, data in FILES.items():
        put(loc, rel, data, tmp)


def read_tree(loc: Location, rel: str = "") -> tuple[dict[str, bytes], set[str]]:
    """(files -> bytes, directories) under ``loc``."""
    files: dict[str, bytes] = {}
    dirs: set[str] = set()
    here = loc.child(rel)
    for entry in here.backend.list(here.rel):
        name = f"{rel}/{entry.name}" if rel else entry.name
        if entry.is_dir:
            dirs.add(name)
            inner_files, inner_dirs = read_tree(loc, name)
            files |= inner_files
            dirs |= inner_dirs
        else:
            files[name] = _read(loc.child(name), entry)
    return files, dirs


def _read(loc: Location, entry: Entry) -> bytes:
    reader = loc.backend.open_reader(loc.rel, loc.backend.stat(loc.rel))
    try:
        return reader.read(0, entry.size + 1)
    finally:
        reader.close()


ROUTES = [
    ("here", "cluster-a"),
    ("cluster-a", "cluster-a"),
    ("cluster-a", "cluster-b"),
    ("cluster-a", "s3"),
    ("s3", "cluster-b"),
    ("s3", "s3"),
    ("s3", "gs"),
]


@pytest.mark.parametrize(("source", "target"), ROUTES, ids=[f"{a}->{b}" for a, b in ROUTES])
def test_a_tree_arrives_byte_exact_then_a_rerun_moves_nothing(
    vfs: Vfs, testbed: Testbed, tmp_path: Path, source: str, target: str
) -> None:
    src, dst = place(vfs, testbed, source), place(vfs, testbed, target)
    make_tree(src, tmp_path)
    planner = vfs.copier
    assert isinstance(planner, Planner)

    first = TreeCopy(planner).run(src, dst)
    assert first.failed == [] and first.files == len(FILES)
    files, dirs = read_tree(dst)
    assert files == FILES
    assert {"d", "d/e", *EMPTY_DIRS} <= dirs

    moved_before = vfs.stats.snapshot()["copies"]
    again = TreeCopy(planner).run(src, dst)
    assert (again.files, again.skipped, again.failed) == (0, len(FILES), [])
    assert vfs.stats.snapshot()["copies"] == moved_before  # no file was copied again


def test_a_changed_file_is_copied_again_and_delete_removes_what_the_source_lacks(
    vfs: Vfs, testbed: Testbed, tmp_path: Path
) -> None:
    src, dst = place(vfs, testbed, "cluster-a"), place(vfs, testbed, "s3")
    make_tree(src, tmp_path)
    planner = vfs.copier
    assert isinstance(planner, Planner)
    TreeCopy(planner).run(src, dst)
    put(src, "a.txt", b"alpha, longer now\n", tmp_path)
    put(dst, "stale.txt", b"only at the destination\n", tmp_path)

    kept = TreeCopy(planner).run(src, dst)
    assert (kept.files, kept.skipped, kept.deleted) == (1, len(FILES) - 1, 0)
    assert read_tree(dst)[0]["stale.txt"] == b"only at the destination\n"

    synced = TreeCopy(planner, options=TreeOptions(delete=True)).run(src, dst)
    assert (synced.files, synced.deleted) == (0, 1)
    files, _ = read_tree(dst)
    assert files == FILES | {"a.txt": b"alpha, longer now\n"}


def test_checksum_compares_contents_not_size_and_time(vfs: Vfs, testbed: Testbed, tmp_path: Path) -> None:
    src, dst = place(vfs, testbed, "here"), place(vfs, testbed, "cluster-a")
    make_tree(src, tmp_path)
    planner = vfs.copier
    assert isinstance(planner, Planner)
    TreeCopy(planner).run(src, dst)
    put(dst, "a.txt", b"ALPHA\n", tmp_path)  # same size, newer: only a checksum sees it differ
    assert TreeCopy(planner).run(src, dst).files == 0
    assert TreeCopy(planner, options=TreeOptions(checksum=True)).run(src, dst).files == 1
    assert read_tree(dst)[0]["a.txt"] == FILES["a.txt"]


def test_a_failed_file_is_named_and_the_others_complete(vfs: Vfs, testbed: Testbed, tmp_path: Path) -> None:
    src, dst = place(vfs, testbed, "here"), place(vfs, testbed, "cluster-a")
    make_tree(src, tmp_path)
    dst.backend.mkdir(dst.rel)
    dst.backend.mkdir(f"{dst.rel}/a.txt")  # a directory where a file goes
    planner = vfs.copier
    assert isinstance(planner, Planner)
    result = TreeCopy(planner).run(src, dst)
    assert len(result.failed) == 1 and "a.txt" in result.failed[0]
    assert result.files == len(FILES) - 1
    assert read_tree(dst)[0] == {k: v for k, v in FILES.items() if k != "a.txt"}


@pytest.mark.parametrize(("source", "target"), [("cluster-a", "cluster-b"), ("cluster-b", "cluster-b")])
def test_a_failed_file_in_a_batch_is_named_and_the_others_complete(
    vfs: Vfs, testbed: Testbed, tmp_path: Path, source: str, target: str
) -> None:
    src, dst = place(vfs, testbed, source), place(vfs, testbed, target)
    make_tree(src, tmp_path)
    dst.backend.mkdir(dst.rel)
    dst.backend.mkdir(f"{dst.rel}/d")
    dst.backend.mkdir(f"{dst.rel}/d/b.bin")  # a directory where a file goes
    planner = vfs.copier
    assert isinstance(planner, Planner)
    result = TreeCopy(planner).run(src, dst)
    assert len(result.failed) == 1 and "d/b.bin" in result.failed[0], result.failed
    assert result.files == len(FILES) - 1
    assert read_tree(dst)[0] == {k: v for k, v in FILES.items() if k != "d/b.bin"}


class Recorded:
    """A progress bar that keeps what it was told."""

    def __init__(self) -> None:
        self.total: int | None = None
        self.updates: list[int] = []

    def update(self, n: int) -> None:
        self.updates.append(n)

    def refresh(self) -> None:
        pass


def test_many_files_between_clusters_go_in_a_few_session_jobs_and_progress_counts_their_bytes(
    vfs: Vfs, testbed: Testbed, tmp_path: Path
) -> None:
    src, dst = place(vfs, testbed, "cluster-a"), place(vfs, testbed, "cluster-b")
    src.backend.mkdir(src.rel)
    files = {f"f{i:03d}": os.urandom(1000 + i) for i in range(250)} | {"big.bin": os.urandom(40 * MiB)}
    for rel, data in files.items():
        put(src, rel, data, tmp_path)
    planner = vfs.copier
    assert isinstance(planner, Planner)
    before = vfs.stats.snapshot()["sessions"]["systems"].get("cluster-a", {})
    progress = Recorded()

    result = TreeCopy(planner, progress=progress).run(src, dst)
    assert (result.files, result.failed) == (len(files), [])
    assert read_tree(dst)[0] == files
    after = vfs.stats.snapshot()["sessions"]["systems"]["cluster-a"]
    jobs = sum(after.get(k, 0) - before.get(k, 0) for k in ("opened", "reused"))
    assert 0 < jobs <= 4, after  # two batches (200 files a job at most), one early opening
    total = sum(len(data) for data in files.values())
    assert progress.total == total and sum(progress.updates) == total
