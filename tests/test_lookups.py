"""Lookups answered from listings (rhfs.vfs.cache names): fewer requests, never a wrong answer.

``cp -r`` into a directory made through the mount costs one request per file (its
upload); a name missing from a listing is answered absent only within ``attr_ttl``
and only until the mount itself touches it; an expired small listing is listed again
instead of one request per name.
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from mount_fixtures import stats
from testbed import Testbed, fsspec_filesystem

from rhfs.backends.base import Entry
from rhfs.backends.guard import Guarded
from rhfs.backends.memory import MemoryBackend
from rhfs.errors import NotFound, to_errno
from rhfs.stats import Stats
from rhfs.tree import MountTable
from rhfs.vfs.cache import MetadataCache
from rhfs.vfs.core import Vfs

CREATE = os.O_WRONLY | os.O_CREAT


class World:
    def __init__(self, tmp: Path, ttl: float) -> None:
        self.stats = Stats()
        self.box = MemoryBackend("box", "store")
        self.table = MountTable({"box": Guarded(self.box, self.stats, op_timeout=10)})  # type: ignore[arg-type]
        self.vfs = Vfs(self.table, cache_dir=str(tmp / "cache"), attr_ttl=ttl, stats=self.stats)

    def cp(self, path: str, data: bytes) -> None:
        """What cp does for one file: a lookup that fails, create, write, close."""
        assert errno_of(self.vfs.getattr, path) == 2
        fh = self.vfs.create(path, 0o644, CREATE).fh
        self.vfs.write(fh, data, 0)
        self.vfs.flush(fh)
        self.vfs.release(fh)

    def requests(self) -> list[str]:
        return [c.split()[0] for c in self.box.calls]


def errno_of(fn, *args):  # type: ignore[no-untyped-def]
    try:
        fn(*args)
    except Exception as e:
        return to_errno(e)
    return 0


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path, ttl=3600)
    yield w
    for guarded in w.table.backends():
        guarded.close()


def test_cp_r_into_a_new_directory_makes_one_request_per_file(world: World) -> None:
    world.vfs.mkdir("/box/dst")
    world.box.calls.clear()
    for i in range(20):
        world.cp(f"/box/dst/f{i}", b"x" * i)
    assert world.requests() == ["upload"] * 20
    assert sorted(n for n, _ in world.vfs.readdir("/box/dst") if n[0] != ".") == sorted(
        f"f{i}" for i in range(20)
    )
    assert world.vfs.getattr("/box/dst/f7").size == 7


def test_a_listed_directory_answers_lookups_of_other_names(world: World) -> None:
    world.box.mkdir("d")
    world.box.files["d/a"] = b"a"
    world.vfs.readdir("/box/d")
    world.box.calls.clear()
    assert world.vfs.getattr("/box/d/a").size == 1
    assert errno_of(world.vfs.getattr, "/box/d/missing") == 2
    assert world.box.calls == []


def test_names_touched_by_the_mount_are_never_answered_absent(world: World) -> None:
    world.box.mkdir("d")
    world.vfs.readdir("/box/d")
    world.cp("/box/d/new", b"1")  # uploaded after the listing
    world.vfs.rename("/box/d/new", "/box/d/renamed")
    assert world.vfs.getattr("/box/d/renamed").size == 1
    world.vfs.mkdir("/box/d/sub")
    assert world.vfs.getattr("/box/d/sub").is_dir
    world.cp("/box/d/sub/inner", b"22")
    world.vfs.rename("/box/d/sub", "/box/d/sub2")
    assert world.vfs.getattr("/box/d/sub2/inner").size == 2
    assert errno_of(world.vfs.getattr, "/box/d/sub/inner") == 2


def test_a_listing_that_raced_with_an_upload_keeps_the_uploaded_name() -> None:
    cache = MetadataCache(ttl=60)
    cache.put_listing("/d", [Entry(name="a", is_dir=False)])
    listed_before_upload = [Entry(name="a", is_dir=False)]
    cache.invalidate("/d/b")  # the mount uploaded /d/b while a LIST was under way
    cache.put_listing("/d", listed_before_upload)  # ... and that LIST did not see it
    assert not cache.known_absent("/d/b")
    assert cache.known_absent("/d/c")


def test_outside_changes_show_within_ttl_and_a_small_directory_is_listed_again(tmp_path: Path) -> None:
    w = World(tmp_path, ttl=0.3)
    try:
        w.box.mkdir("d")
        for i in range(5):
            w.box.files[f"d/f{i}"] = b"x"
        w.vfs.readdir("/box/d")
        w.box.files["d/late"] = b"made elsewhere"
        assert errno_of(w.vfs.getattr, "/box/d/late") == 2  # the listing is younger than ttl
        time.sleep(0.4)  # let the listing expire (not a timing assertion)
        w.box.calls.clear()
        assert w.vfs.getattr("/box/d/late").size == len(b"made elsewhere")
        assert errno_of(w.vfs.getattr, "/box/d/other") == 2
        assert w.vfs.getattr("/box/d/f3").size == 1
        assert w.requests() == ["list"]  # one listing answered all three
    finally:
        for guarded in w.table.backends():
            guarded.close()


def test_an_unlinked_name_is_asked_for_again(world: World) -> None:
    world.box.mkdir("d")
    world.box.files["d/a"] = b"a"
    world.vfs.readdir("/box/d")
    world.vfs.unlink("/box/d/a")
    with pytest.raises(NotFound):
        world.vfs.entry(world.vfs.resolve("/box/d/a"))
    world.box.files["d/a"] = b"back"  # recreated elsewhere: seen at once, the name was touched
    assert world.vfs.getattr("/box/d/a").size == 4


def test_attributes_after_an_upload_come_without_a_request(world: World) -> None:
    world.vfs.mkdir("/box/d")
    world.cp("/box/d/f", b"12345")
    world.box.calls.clear()
    attr = world.vfs.getattr("/box/d/f")
    assert attr.size == 5
    world.vfs.chmod("/box/d/f", 0o600)  # what cp -a and rsync -a do after the close
    world.vfs.utimens("/box/d/f", 1.0, 2.0)
    assert world.requests() == []


def test_a_reader_after_an_upload_pins_the_version_the_system_holds(world: World) -> None:
    world.vfs.mkdir("/box/d")
    world.cp("/box/d/f", b"first")
    world.box.calls.clear()
    fh = world.vfs.open("/box/d/f", os.O_RDONLY).fh
    assert world.requests() == ["stat"]  # the version (etag) is the system's, not a guess
    world.box.files["d/f"] = b"other"  # replaced elsewhere while open
    world.box.etags["d/f"] = "replaced"
    assert world.vfs.read(fh, 5, 0) == b"other"  # nothing served yet: the same size reads anew
    world.vfs.release(fh)


def test_a_listing_replaces_what_the_mount_knew_after_an_upload(world: World) -> None:
    world.vfs.mkdir("/box/d")
    world.cp("/box/d/f", b"abc")
    world.vfs.readdir("/box/d")
    world.box.calls.clear()
    fh = world.vfs.open("/box/d/f", os.O_RDONLY).fh
    assert world.requests() == []  # the listed entry carries the system's version
    assert world.vfs.read(fh, 3, 0) == b"abc"
    world.vfs.release(fh)


def test_through_the_mount_cp_p_costs_one_request_per_file_and_stat_none(
    mnt: Path, testbed: Testbed, tmp_path: Path
) -> None:
    name = f"lookups-{uuid.uuid4().hex[:8]}"
    dst = mnt / "s3" / testbed.bucket / name
    src = tmp_path / "src"
    src.mkdir()
    for i in range(20):
        (src / f"f{i}").write_bytes(b"x" * (100 + i))

    def s3_calls() -> dict[str, int]:
        system = stats(mnt)["systems"]["s3"]
        return {"requests": system["requests"], **system["metadata_calls"]}

    try:
        before = s3_calls()
        subprocess.run(["cp", "-p", "-r", str(src), str(dst)], check=True)  # chmod, utimens per file
        out = subprocess.run(
            ["stat", "-c", "%s", *(str(dst / f"f{i}") for i in range(20))],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        after = s3_calls()
        assert out == [str(100 + i) for i in range(20)]
        assert after["requests"] - before["requests"] == 20  # the uploads
        # no HEAD per file after its upload; only ancestors whose cached entries expired
        assert after.get("stat", 0) - before.get("stat", 0) < 10
        assert (dst / "f7").read_bytes() == b"x" * 107
    finally:
        fsspec_filesystem(testbed, "s3").rm(f"{testbed.bucket}/{name}", recursive=True)
