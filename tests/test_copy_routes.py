"""Copies through the real mount with coreutils ``cp``, ``cp -r`` and ``mv``: each route of docs/SEMANTICS.md.

For each pair of systems the test writes the source straight to its server, copies it
inside the mount, reads the destination straight from its server, and reads
``.rhfs/stats.json`` before and after: the route taken, and the data bytes that passed
through the daemon (read, written and relayed, over every system), which must be zero
for every route the table marks "none".

A second mount (``bed2``) adds what the shared testbed config lacks: a store with a
``transfer_cluster``, and ``cluster-c``: cluster-b's sshd with an ``internal_host``
nothing listens on, so a push from cluster-a fails halfway while the daemon still
reaches both ends.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import tomllib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from conftest import mounted, system_path
from tables_fixtures import api, parquet_bytes, sample_frame
from testbed import Testbed

MiB = 1 << 20
SIZES = (9 * MiB + 123, 200_000)  # one file bigger than a fetch chunk, one small
DATA_COUNTERS = ("bytes_read", "bytes_written", "bytes_relayed")
SAME_SERVER = {"cluster-c": "cluster-b"}  # bed2's cluster-c is cluster-b's sshd

pytestmark = [pytest.mark.mount, pytest.mark.servers]


# -- helpers ----------------------------------------------------------------------------------
def stats(mnt: Path) -> dict[str, Any]:
    return json.loads((mnt / ".rhfs" / "stats.json").read_text())


def through_daemon(before: dict[str, Any], after: dict[str, Any]) -> int:
    """Data bytes read, written or relayed by the daemon between two snapshots, over all systems."""
    total = 0
    for system, counters in after["systems"].items():
        if system == ".rhfs":
            continue
        old = before["systems"].get(system, {})
        total += sum(counters.get(c, 0) - old.get(c, 0) for c in DATA_COUNTERS)
    return total


def relayed(before: dict[str, Any], after: dict[str, Any]) -> int:
    return sum(
        c.get("bytes_relayed", 0) - before["systems"].get(s, {}).get("bytes_relayed", 0)
        for s, c in after["systems"].items()
    )


def copies(before: dict[str, Any], after: dict[str, Any], route: str) -> int:
    def count(snapshot: dict[str, Any]) -> int:
        return int(snapshot["copies"].get(route, {}).get("count", 0))

    return count(after) - count(before)


@dataclass
class Place:
    """A fresh directory on one system, seen through the mount and straight on its server."""

    tb: Testbed
    mnt: Path
    system: str
    name: str

    @property
    def path(self) -> Path:
        return system_path(self.mnt, self.system, self.tb.bucket) / self.name

    def _local(self, rel: str) -> Path | None:
        if self.system == "here":
            assert self.tb.here_root is not None
            return self.tb.here_root / self.name / rel
        if self.system.startswith("cluster-"):
            server = SAME_SERVER.get(self.system, self.system)
            return self.tb.cluster_roots[server] / self.name / rel
        return None

    def _key(self, rel: str) -> str:
        return f"{self.tb.bucket}/{self.name}/{rel}"

    def put(self, rel: str, data: bytes) -> None:
        """Write a source file through the mount, so the mount knows it at once (a write made
        straight to the server may stay unseen for ``attr_ttl``, by design)."""
        target = self.path / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)

    def get(self, rel: str) -> bytes | None:
        """Read straight from the server; None if there is no such file."""
        local = self._local(rel)
        if local is not None:
            return local.read_bytes() if local.is_file() else None
        fs = self.tb.fs(self.system)
        try:
            data: bytes = fs.cat_file(self._key(rel))
        except FileNotFoundError:
            return None
        return data

    def names(self) -> list[str]:
        """Every file name under this place on the server (temporary files included)."""
        local = self._local("")
        if local is not None:
            return sorted(str(p.relative_to(local)) for p in local.rglob("*") if p.is_file())
        fs = self.tb.fs(self.system)
        root = self._key("").rstrip("/")
        names = {k[len(root) + 1 :].rstrip("/") for k in fs.find(root)} - {""}
        # adlfs shows a directory's marker blob as a file: leave out names that hold others
        return sorted(n for n in names if not any(m.startswith(n + "/") for m in names))


def fresh(tb: Testbed, mnt: Path, system: str) -> Iterator[Place]:
    place = Place(tb, mnt, system, f"cp-{uuid.uuid4().hex[:10]}")
    place.path.mkdir()
    try:
        yield place
    finally:
        shutil.rmtree(place.path, ignore_errors=True)


def run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    if check and result.returncode != 0:
        raise AssertionError(f"{argv} exited {result.returncode}: {result.stderr}")
    return result


@pytest.fixture
def places(testbed: Testbed, mnt: Path) -> Iterator[Any]:
    """``places("s3")`` -> a fresh Place; all removed at the end."""
    made: list[Iterator[Place]] = []

    def make(system: str, base: Path = mnt) -> Place:
        gen = fresh(testbed, base, system)
        made.append(gen)
        return next(gen)

    yield make
    for gen in made:
        next(gen, None)


# -- every row of the routes table (docs/SEMANTICS.md, "Copies"), one file at a time --------
NONE_ROUTES = [
    ("s3", "s3", "store-copy"),
    ("gs", "gs", "store-copy"),
    ("azure", "azure", "store-copy"),
    ("cluster-a", "cluster-a", "cluster-cp"),
    ("cluster-a", "cluster-b", "cluster-push"),
    ("cluster-b", "cluster-a", "cluster-push"),
    ("cluster-a", "s3", "cluster-curl"),
    ("s3", "cluster-a", "cluster-curl"),
    ("cluster-b", "gs", "cluster-curl"),
    ("gs", "cluster-b", "cluster-curl"),
    ("cluster-a", "azure", "cluster-curl"),
    ("azure", "cluster-a", "cluster-curl"),
]
DAEMON_ROUTES = [
    ("s3", "gs", "relay"),
    ("gs", "azure", "relay"),
    ("azure", "s3", "relay"),
    ("here", "s3", "here-upload"),
    ("here", "cluster-a", "here-upload"),
    ("here", "azure", "here-upload"),
    ("gs", "here", "here-download"),
    ("cluster-b", "here", "here-download"),
    ("s3", "here", "here-download"),
]


def copy_files(mnt: Path, src: Place, dst: Place) -> tuple[dict[str, Any], dict[str, Any], list[bytes]]:
    payloads = [os.urandom(n) for n in SIZES]
    for i, data in enumerate(payloads):
        src.put(f"f{i}.bin", data)
    before = stats(mnt)
    for i in range(len(payloads)):
        run("cp", str(src.path / f"f{i}.bin"), str(dst.path / f"f{i}.bin"))
    after = stats(mnt)
    for i, data in enumerate(payloads):
        assert dst.get(f"f{i}.bin") == data, f"f{i}.bin differs after {src.system} -> {dst.system}"
    return before, after, payloads


@pytest.mark.parametrize(("src_system", "dst_system", "route"), NONE_ROUTES)
def test_cp_moves_no_byte_through_the_daemon(
    places: Any, mnt: Path, src_system: str, dst_system: str, route: str
) -> None:
    src, dst = places(src_system), places(dst_system)
    before, after, payloads = copy_files(mnt, src, dst)
    assert copies(before, after, route) == len(payloads)
    assert through_daemon(before, after) == 0
    assert [n for n in dst.names() if ".rhfs-tmp-" in n] == []


@pytest.mark.parametrize(("src_system", "dst_system", "route"), DAEMON_ROUTES)
def test_cp_through_the_daemon_is_direct_and_counted(
    places: Any, mnt: Path, src_system: str, dst_system: str, route: str
) -> None:
    src, dst = places(src_system), places(dst_system)
    before, after, payloads = copy_files(mnt, src, dst)
    total = sum(len(p) for p in payloads)
    assert copies(before, after, route) == len(payloads)
    assert before["ops"].get("write", 0) == after["ops"].get("write", 0), "bytes came as kernel writes"
    assert through_daemon(before, after) >= total
    assert relayed(before, after) == (total if route == "relay" else 0)


# -- cp -r -------------------------------------------------------------------------------------
TREE = {"a.bin": 9 * MiB + 7, "sub/b.bin": MiB, "sub/deeper/c.txt": 5000, "sub/empty": 0}


@pytest.mark.parametrize(
    ("src_system", "dst_system", "route"),
    [
        ("s3", "s3", "store-copy"),
        ("cluster-a", "cluster-b", "cluster-push"),
        ("cluster-a", "gs", "cluster-curl"),
        ("azure", "cluster-b", "cluster-curl"),
        ("gs", "gs", "store-copy"),
        ("s3", "azure", "relay"),
        ("here", "cluster-a", "here-upload"),
    ],
)
def test_cp_r_copies_a_tree(places: Any, mnt: Path, src_system: str, dst_system: str, route: str) -> None:
    src, dst = places(src_system), places(dst_system)
    payloads = {rel: os.urandom(n) for rel, n in TREE.items()}
    for rel, data in payloads.items():
        src.put(f"tree/{rel}", data)
    before = stats(mnt)
    run("cp", "-r", str(src.path / "tree"), str(dst.path / "tree"))
    after = stats(mnt)
    for rel, data in payloads.items():
        assert dst.get(f"tree/{rel}") == data, rel
    nonempty = [d for d in payloads.values() if d]
    assert copies(before, after, route) == len(nonempty)
    moved = through_daemon(before, after)
    if route in ("store-copy", "cluster-push", "cluster-curl"):
        assert moved == 0
    else:
        assert moved >= sum(len(d) for d in nonempty)
    assert sorted(dst.names()) == sorted(f"tree/{rel}" for rel in payloads)


# -- mv ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("src_system", "dst_system"),
    [("s3", "s3"), ("gs", "gs"), ("s3", "cluster-a"), ("cluster-a", "azure"), ("cluster-a", "cluster-b")],
)
def test_mv_of_a_file_and_a_tree_leaves_no_source(
    places: Any, mnt: Path, src_system: str, dst_system: str
) -> None:
    src, dst = places(src_system), places(dst_system)
    one = os.urandom(3 * MiB)
    tree = {rel: os.urandom(n) for rel, n in TREE.items()}
    src.put("one.bin", one)
    for rel, data in tree.items():
        src.put(f"tree/{rel}", data)
    before = stats(mnt)
    run("mv", str(src.path / "one.bin"), str(dst.path / "one.bin"))
    run("mv", str(src.path / "tree"), str(dst.path / "tree"))
    after = stats(mnt)
    assert dst.get("one.bin") == one
    for rel, data in tree.items():
        assert dst.get(f"tree/{rel}") == data, rel
    assert src.names() == []
    assert not (src.path / "one.bin").exists() and not (src.path / "tree").exists()
    assert through_daemon(before, after) == 0


# -- another mount: a transfer cluster, and a cluster the other cannot reach ------------------
@dataclass
class Bed2:
    mnt: Path
    log: Path


@pytest.fixture(scope="module")
def bed2(testbed: Testbed, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bed2]:
    d = tmp_path_factory.mktemp("copy-bed2")
    cfg = tomllib.loads(testbed.config_path.read_text())
    cfg["mount"]["cache_dir"] = str(d / "cache")
    cfg["stores"]["s3"]["transfer_cluster"] = "cluster-a"
    cfg["clusters"]["cluster-c"] = {**cfg["clusters"]["cluster-b"], "internal_host": "127.0.0.2"}
    config = d / "rhfs.toml"
    config.write_text(tomli_w.dumps(cfg))
    config.chmod(0o600)
    with mounted(config, d / "mnt") as mountpoint:
        yield Bed2(mountpoint, d / "cache" / "rhfs.log")


def test_store_to_another_provider_runs_on_the_transfer_cluster(places: Any, bed2: Bed2) -> None:
    src, dst = places("s3", bed2.mnt), places("gs", bed2.mnt)
    before, after, payloads = copy_files(bed2.mnt, src, dst)
    assert copies(before, after, "transfer-cluster") == len(payloads)
    assert through_daemon(before, after) == 0


def test_push_to_an_unreachable_cluster_fails_whole(testbed: Testbed, places: Any, bed2: Bed2) -> None:
    src, dst = places("cluster-a", bed2.mnt), places("cluster-c", bed2.mnt)
    src.put("x.bin", os.urandom(2 * MiB))
    kh_before = set(Path("/tmp").glob("rhfs-kh.*"))
    log_before = bed2.log.read_text()
    result = run("cp", str(src.path / "x.bin"), str(dst.path / "x.bin"), check=False)
    assert result.returncode != 0 and "Input/output error" in result.stderr, result.stderr
    assert dst.names() == []  # no file, and no temporary file
    assert set(Path("/tmp").glob("rhfs-kh.*")) <= kh_before  # nothing left on cluster-a
    new_lines = bed2.log.read_text()[len(log_before) :].splitlines()
    failures = [line for line in new_lines if "cluster-push" in line]
    assert len(failures) == 1 and "failed" in failures[0], new_lines


def test_source_deleted_before_the_copy_leaves_no_destination(
    testbed: Testbed, places: Any, bed2: Bed2
) -> None:
    src, dst = places("s3", bed2.mnt), places("cluster-a", bed2.mnt)
    data = os.urandom(MiB)
    src.put("gone.bin", data)
    log_before = bed2.log.read_text()
    fd_in = os.open(src.path / "gone.bin", os.O_RDONLY)
    fd_out = os.open(dst.path / "gone.bin", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        testbed.fs("s3").rm_file(f"{testbed.bucket}/{src.name}/gone.bin")
        with pytest.raises(OSError) as failure:
            os.copy_file_range(fd_in, fd_out, len(data))
        assert failure.value.errno == errno.EIO
    finally:
        os.close(fd_out)
        os.close(fd_in)
    assert dst.names() == []
    new_lines = bed2.log.read_text()[len(log_before) :].splitlines()
    assert len([line for line in new_lines if "route cluster-curl failed" in line]) == 1, new_lines


# -- rhfs cp: the same routes outside a mount -------------------------------------------------
def rhfs_cp(testbed: Testbed, *args: str) -> subprocess.CompletedProcess[str]:
    return run(shutil.which("rhfs") or "rhfs", "cp", "--config", str(testbed.config_path), *args, check=False)


def test_rhfs_cp_copies_urls_mount_paths_and_local_paths(
    testbed: Testbed, places: Any, tmp_path: Path
) -> None:
    local = tmp_path / "tree"
    payloads = {rel: os.urandom(n) for rel, n in TREE.items()}
    for rel, data in payloads.items():
        (local / rel).parent.mkdir(parents=True, exist_ok=True)
        (local / rel).write_bytes(data)
    s3, cluster, gs = places("s3"), places("cluster-a"), places("gs")
    steps = [
        (str(local), f"s3://{testbed.bucket}/{s3.name}/tree", "here-upload"),
        (f"s3://{testbed.bucket}/{s3.name}/tree", f"cluster-a:{cluster.name}/tree", "cluster-curl"),
        (f"cluster-a:{cluster.name}/tree", str(gs.path / "tree"), "cluster-curl"),  # a mount path
        (str(gs.path / "tree"), str(tmp_path / "back"), "here-download"),
    ]
    for src, dst, route in steps:
        result = rhfs_cp(testbed, "-r", src, dst)
        assert result.returncode == 0, result.stderr
        assert f"{route} 3" in result.stdout and "empty 1" in result.stdout, result.stdout
    for place in (s3, cluster, gs):
        for rel, data in payloads.items():
            assert place.get(f"tree/{rel}") == data, (place.system, rel)
    for rel, data in payloads.items():
        assert (tmp_path / "back" / rel).read_bytes() == data


def test_rhfs_cp_of_one_file_into_a_directory(testbed: Testbed, places: Any) -> None:
    src, dst = places("azure"), places("azure")
    data = os.urandom(MiB)
    src.put("one.bin", data)
    result = rhfs_cp(
        testbed, f"az://{testbed.bucket}/{src.name}/one.bin", f"az://{testbed.bucket}/{dst.name}"
    )
    assert result.returncode == 0 and "store-copy 1" in result.stdout, result.stderr
    assert dst.get("one.bin") == data


def test_rhfs_cp_refuses_a_directory_without_r_and_a_missing_source(testbed: Testbed, places: Any) -> None:
    src = places("s3")
    src.put("d/x", b"x")
    result = rhfs_cp(testbed, f"s3://{testbed.bucket}/{src.name}/d", f"s3://{testbed.bucket}/{src.name}/e")
    assert result.returncode == 1 and "use -r" in result.stderr
    result = rhfs_cp(testbed, f"s3://{testbed.bucket}/{src.name}/nope", f"s3://{testbed.bucket}/{src.name}/e")
    assert result.returncode == 1 and "No such file" in result.stderr


def test_rhfs_cp_into_a_table_is_relayed_through_the_view(testbed: Testbed, tmp_path: Path) -> None:
    rh = api(testbed.config_path)
    name = f"cp-{uuid.uuid4().hex[:8]}"
    table = rh.table(data=sample_frame(3), name=name, system="s3").write().save()
    good, junk = tmp_path / "good.parquet", tmp_path / "junk.parquet"
    good.write_bytes(parquet_bytes(sample_frame(4, start=100)))
    junk.write_bytes(b"not parquet at all")
    result = rhfs_cp(testbed, str(good), f"rhfs://tables/{name}/extra.parquet")
    assert result.returncode == 0 and "relay 1" in result.stdout, result.stdout + result.stderr
    assert testbed.fs("s3").cat_file(f"{table.path}/extra.parquet") == good.read_bytes()
    result = rhfs_cp(testbed, str(junk), f"rhfs://tables/{name}/junk.parquet")
    assert result.returncode == 1 and "not a valid parquet file" in result.stderr, result.stderr
    assert not testbed.fs("s3").exists(f"{table.path}/junk.parquet")
    table.rm()


def test_rhfs_cp_of_a_tree_onto_itself_again_syncs(testbed: Testbed, places: Any, tmp_path: Path) -> None:
    """A SRC ending in "/" is copied onto DST (rsync's rule): the rerun moves nothing,
    a changed file moves alone, and --delete removes what SRC lacks."""
    src, dst = places("cluster-a"), places("s3")
    for rel, n in TREE.items():
        src.put(f"tree/{rel}", os.urandom(n))
    source, target = f"cluster-a:{src.name}/tree/", f"s3://{testbed.bucket}/{dst.name}/copy"
    first = rhfs_cp(testbed, "-r", source, target)
    assert first.returncode == 0 and "unchanged" not in first.stdout, first.stdout + first.stderr
    again = rhfs_cp(testbed, "-r", source, target)
    assert again.returncode == 0 and f"copied 0 files, 0 B, {len(TREE)} unchanged" in again.stdout, (
        again.stdout
    )
    changed = next(rel for rel, n in TREE.items() if n)
    src.put(f"tree/{changed}", b"now different, and longer than before" * 100)
    dst.put("copy/only-here", b"x")
    synced = rhfs_cp(testbed, "-r", "--delete", source, target)
    assert synced.returncode == 0 and "copied 1 files" in synced.stdout, synced.stdout
    assert "1 deleted" in synced.stdout and dst.get(f"copy/{changed}") == src.get(f"tree/{changed}")
