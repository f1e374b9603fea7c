"""The VFS core on in-memory backends: no FUSE, no servers, no sockets.

Each test builds a :class:`Vfs` over two :class:`MemoryBackend` systems (``/mem``
with local-disk behaviour and ``/box`` as a store) and drives it through the
same FUSE-shaped calls the adapter makes.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import stat
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from rhfs.backends.base import BytesReader, Entry
from rhfs.backends.guard import Guarded
from rhfs.backends.memory import MemoryBackend
from rhfs.errors import CantCopy, Stale, UploadFailed, to_errno
from rhfs.location_io import FETCH_CHUNK
from rhfs.stats import Stats
from rhfs.tree import Location, MountTable
from rhfs.vfs.core import Vfs

WRITE = os.O_WRONLY
CREATE = os.O_WRONLY | os.O_CREAT
NS = 1_000_000_000  # nanoseconds in a second


class ModeMemoryBackend(MemoryBackend):
    """A memory backend that, like ``here`` and clusters, keeps modes and times."""

    def __init__(self, system: str, imitates: str) -> None:
        super().__init__(system, imitates)
        self.modes: dict[str, int] = {}
        self.abilities = dataclasses.replace(self.abilities, set_mode=self.set_mode, set_times=self.set_times)

    def set_mode(self, path: str, mode: int) -> None:
        self.calls.append(f"set_mode {path} {mode:o}")
        self.modes[path] = mode

    def set_times(self, path: str, atime_ns: int | None, mtime_ns: int | None) -> None:
        self.calls.append(f"set_times {path}")
        if mtime_ns is not None:
            self.mtimes[path] = mtime_ns / 1e9


class FlakyBackend(MemoryBackend):
    """Uploads fail while ``failing`` is set (an answer, not an outage: the guard keeps it up)."""

    failing = False

    def upload(self, local_path: str, path: str) -> None:
        if self.failing:
            raise OSError(errno.ENOSPC, "the store is full")
        super().upload(local_path, path)


class StoreLikeBackend(FlakyBackend):
    """Like a store: a rename makes new objects (new etags), and a reader refuses another version."""

    def rename(self, src: str, dst: str) -> None:
        super().rename(src, dst)
        with self._lock:
            for path in [p for p in self.files if p == dst or p.startswith(dst + "/")]:
                self._touch(path)

    def open_reader(self, path: str, entry: Entry) -> BytesReader:
        with self._lock:
            if path in self.files and self.etags.get(path) != entry.etag:
                raise Stale(f"{path} changed since it was opened")
        return super().open_reader(path, entry)


class WithinSystemCopier:
    """The VFS's copier for these tests: a copy within one system, as a store copies.
    (The tree's real planner and its routes are tested in test_copy_routes.py.)"""

    def __init__(self, stats: Stats) -> None:
        self.stats = stats

    def copy(self, src: Location, dst: Location, entry: Entry) -> str:
        copy_within = src.backend.abilities.copy_within
        if src.backend is not dst.backend or copy_within is None:
            raise CantCopy("not within one system")
        copy_within(src.rel, dst.rel)
        self.stats.add_copy("store-copy", entry.size)
        return "store-copy"


class World:
    def __init__(self, tmp: Path, ttl: float = 3600.0) -> None:
        self.stats = Stats()
        self.mem = ModeMemoryBackend("mem", "here")
        self.box = StoreLikeBackend("box", "store")
        table = MountTable(
            {
                "mem": Guarded(self.mem, self.stats, op_timeout=10),  # type: ignore[arg-type]
                "box": Guarded(self.box, self.stats, op_timeout=10),  # type: ignore[arg-type]
            }
        )
        self.cache_dir = tmp / "cache"
        self.vfs = Vfs(
            table,
            cache_dir=str(self.cache_dir),
            attr_ttl=ttl,
            stats=self.stats,
            copier=WithinSystemCopier(self.stats),
        )

    def write_file(self, path: str, data: bytes) -> None:
        fh = self.vfs.create(path, 0o644, CREATE).fh
        self.vfs.write(fh, data, 0)
        self.vfs.flush(fh)
        self.vfs.release(fh)

    def read_file(self, path: str) -> bytes:
        fh = self.vfs.open(path, os.O_RDONLY).fh
        try:
            return self.vfs.read(fh, 1 << 30, 0)
        finally:
            self.vfs.release(fh)

    def names(self, path: str) -> list[str]:
        return sorted(name for name, _ in self.vfs.readdir(path) if name not in (".", ".."))

    def calls(self, system: str, what: str) -> int:
        snapshot = self.stats.snapshot()["systems"][system]["metadata_calls"]
        return int(snapshot.get(what, 0))


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path)
    yield w
    for guarded in w.vfs.table.backends():
        guarded.close()


def errno_of(fn: Callable[..., Any], *args: Any) -> int:
    with pytest.raises(Exception) as caught:
        fn(*args)
    return to_errno(caught.value)


# -- files ---------------------------------------------------------------------------------
def test_create_write_flush_read(world: World) -> None:
    fh = world.vfs.create("/mem/a.txt", 0o644, CREATE).fh
    assert world.vfs.write(fh, b"hello ", 0) == 6
    assert world.vfs.write(fh, b"world", 6) == 5
    assert "a.txt" not in world.mem.files  # spooled, not uploaded yet
    world.vfs.flush(fh)
    assert world.mem.files["a.txt"] == b"hello world"
    world.vfs.release(fh)
    assert world.read_file("/mem/a.txt") == b"hello world"
    assert world.vfs.getattr("/mem/a.txt").size == 11
    assert os.listdir(world.cache_dir / "spool") == []


def test_ranged_read_and_write_in_the_middle(world: World) -> None:
    data = bytes(range(256)) * 100
    world.vfs.mkdir("/box/b")
    world.write_file("/box/b/f", data)
    fh = world.vfs.open("/box/b/f", os.O_RDONLY).fh
    assert world.vfs.read(fh, 100, 5000) == data[5000:5100]
    assert world.vfs.read(fh, 100, len(data) - 10) == data[-10:]
    assert world.vfs.read(fh, 100, len(data) + 10) == b""
    world.vfs.release(fh)
    fh = world.vfs.open("/box/b/f", os.O_RDWR).fh
    world.vfs.write(fh, b"XYZ", 1000)
    world.vfs.release(fh)
    assert world.box.files["b/f"] == data[:1000] + b"XYZ" + data[1003:]


def test_a_write_into_a_file_larger_than_a_fetch_chunk_keeps_all_its_bytes(world: World) -> None:
    data = os.urandom(FETCH_CHUNK * 2 + 12345)  # the spool is filled by several ranged reads
    world.write_file("/box/big", data)
    fh = world.vfs.open("/box/big", os.O_RDWR).fh
    world.vfs.write(fh, b"XYZ", FETCH_CHUNK + 7)
    world.vfs.release(fh)
    assert world.box.files["big"] == data[: FETCH_CHUNK + 7] + b"XYZ" + data[FETCH_CHUNK + 10 :]


def test_a_file_that_shrank_since_it_was_opened_fails_the_write(world: World) -> None:
    world.write_file("/mem/f", b"0123456789")
    fh = world.vfs.open("/mem/f", os.O_RDWR).fh
    world.mem.files["f"] = b"012"  # changed outside, before the spool is filled
    assert errno_of(world.vfs.write, fh, b"x", 5) == errno.EIO
    world.vfs.release(fh)
    assert world.mem.files["f"] == b"012", "never a short or mixed file"


def test_pending_file_is_visible_before_upload(world: World) -> None:
    fh = world.vfs.create("/mem/pending", 0o644, CREATE).fh
    world.vfs.write(fh, b"12345", 0)
    assert "pending" not in world.mem.files
    listing = dict(world.vfs.readdir("/mem"))
    assert listing["pending"].size == 5
    assert world.vfs.getattr("/mem/pending").size == 5
    reader = world.vfs.open("/mem/pending", os.O_RDONLY).fh  # shares the writer's spool
    assert world.vfs.read(reader, 10, 0) == b"12345"
    assert world.vfs.getattr("/mem/pending", reader).size == 5
    world.vfs.write(fh, b"678", 5)
    assert world.vfs.getattr("/mem/pending", reader).size == 8
    world.vfs.release(reader)
    world.vfs.release(fh)
    assert world.mem.files["pending"] == b"12345678"


def test_empty_new_file_is_created_at_close(world: World) -> None:
    fh = world.vfs.create("/box/empty", 0o644, CREATE).fh
    world.vfs.release(fh)
    assert world.box.files["empty"] == b""


def test_unlink_of_a_never_uploaded_file(world: World) -> None:
    fh = world.vfs.create("/mem/ghost", 0o644, CREATE).fh
    world.vfs.write(fh, b"boo", 0)
    world.vfs.unlink("/mem/ghost")
    assert "ghost" not in world.names("/mem")
    assert errno_of(world.vfs.getattr, "/mem/ghost") == errno.ENOENT
    world.vfs.write(fh, b"more", 3)  # writes to an unlinked file go nowhere
    world.vfs.release(fh)
    assert "ghost" not in world.mem.files
    assert os.listdir(world.cache_dir / "spool") == []


def test_unlink_of_a_flushed_then_rewritten_open_file_removes_it(world: World) -> None:
    fh = world.vfs.create("/mem/twice", 0o644, CREATE).fh
    world.vfs.write(fh, b"one", 0)
    world.vfs.flush(fh)
    world.vfs.write(fh, b"two", 3)
    world.vfs.unlink("/mem/twice")
    world.vfs.release(fh)
    assert "twice" not in world.mem.files
    assert errno_of(world.vfs.getattr, "/mem/twice") == errno.ENOENT


def test_truncate_by_path_and_by_handle(world: World) -> None:
    world.write_file("/box/t", b"0123456789")
    world.vfs.truncate("/box/t", 4)
    assert world.box.files["t"] == b"0123"
    assert world.vfs.getattr("/box/t").size == 4
    world.vfs.truncate("/box/t", 6)
    assert world.read_file("/box/t") == b"0123\0\0"
    fh = world.vfs.open("/box/t", os.O_RDWR).fh
    world.vfs.truncate("/box/t", 2, fh)
    assert world.vfs.getattr("/box/t").size == 2
    world.vfs.write(fh, b"!", 2)
    world.vfs.release(fh)
    assert world.box.files["t"] == b"01!"
    fh = world.vfs.open("/box/t", os.O_WRONLY | os.O_TRUNC).fh
    world.vfs.release(fh)
    assert world.box.files["t"] == b""
    assert errno_of(world.vfs.truncate, "/box/missing", 0) == errno.ENOENT


# -- renames -------------------------------------------------------------------------------
def test_rename_rekeys_an_open_file(world: World) -> None:
    fh = world.vfs.create("/mem/old", 0o644, CREATE).fh
    world.vfs.write(fh, b"abc", 0)
    world.vfs.rename("/mem/old", "/mem/new")
    assert world.names("/mem") == ["new"]
    world.vfs.write(fh, b"def", 3)
    assert world.vfs.getattr("/mem/new").size == 6
    world.vfs.release(fh)
    assert world.mem.files == {"new": b"abcdef"}


def _spool_records(world: World) -> list[dict[str, str]]:
    return [json.loads(p.read_text()) for p in (world.cache_dir / "spool").rglob("*.target")]


def test_rename_of_an_open_file_renames_its_recovery_record(world: World) -> None:
    world.vfs.mkdir("/box/d")
    fh = world.vfs.create("/box/d/f", 0o644, CREATE).fh
    world.vfs.write(fh, b"unfinished", 0)
    assert [r["path"] for r in _spool_records(world)] == ["/box/d/f"]
    world.vfs.rename("/box/d", "/box/e")
    assert [(r["path"], r["rel"]) for r in _spool_records(world)] == [("/box/e/f", "e/f")]
    world.vfs.release(fh)
    assert _spool_records(world) == []
    world.vfs.rename("/box/e/f", "/box/e/g")  # a closed file's record stays forgotten
    assert _spool_records(world) == []


def test_rename_of_a_directory_carries_pending_files(world: World) -> None:
    world.vfs.mkdir("/box/d")
    fh = world.vfs.create("/box/d/f", 0o644, CREATE).fh
    world.vfs.write(fh, b"inside", 0)
    world.vfs.rename("/box/d", "/box/e")
    world.vfs.write(fh, b"!", 6)
    world.vfs.release(fh)
    assert world.box.files == {"e/f": b"inside!"}
    assert "d" not in world.box.dirs
    assert world.names("/box") == ["e"]
    assert world.names("/box/e") == ["f"]


def test_rename_over_an_open_file_drops_its_writes(world: World) -> None:
    world.write_file("/mem/src", b"source")
    fh = world.vfs.create("/mem/dst", 0o644, CREATE).fh
    world.vfs.write(fh, b"doomed", 0)
    world.vfs.rename("/mem/src", "/mem/dst")
    world.vfs.release(fh)
    assert world.mem.files == {"dst": b"source"}


def test_rename_errors(world: World) -> None:
    world.vfs.mkdir("/mem/dir")
    world.vfs.mkdir("/mem/full")
    world.write_file("/mem/full/x", b"x")
    world.write_file("/mem/file", b"f")
    assert errno_of(world.vfs.rename, "/mem/file", "/mem/dir") == errno.EISDIR
    assert errno_of(world.vfs.rename, "/mem/dir", "/mem/file") == errno.ENOTDIR
    assert errno_of(world.vfs.rename, "/mem/dir", "/mem/full") == errno.ENOTEMPTY
    assert errno_of(world.vfs.rename, "/mem/file", "/box/file") == errno.EXDEV
    assert errno_of(world.vfs.rename, "/mem/nope", "/mem/other") == errno.ENOENT
    world.vfs.mkdir("/mem/empty")
    world.vfs.rename("/mem/full", "/mem/empty")  # a directory may replace an empty one
    assert world.names("/mem/empty") == ["x"]


# -- errors where POSIX has them -----------------------------------------------------------
def test_posix_errnos(world: World) -> None:
    world.write_file("/mem/f", b"f")
    world.vfs.mkdir("/mem/d")
    world.write_file("/mem/d/inner", b"i")
    assert errno_of(world.vfs.create, "/mem/f", 0o644, CREATE | os.O_EXCL) == errno.EEXIST
    assert errno_of(world.vfs.create, "/mem/d", 0o644, CREATE) == errno.EISDIR
    assert errno_of(world.vfs.create, "/mem/f/x", 0o644, CREATE) == errno.ENOTDIR
    assert errno_of(world.vfs.create, "/mem/nodir/x", 0o644, CREATE) == errno.ENOENT
    assert errno_of(world.vfs.open, "/mem/d", os.O_RDONLY) == errno.EISDIR
    assert errno_of(world.vfs.open, "/mem/missing", os.O_RDONLY) == errno.ENOENT
    assert errno_of(world.vfs.mkdir, "/mem/d") == errno.EEXIST
    assert errno_of(world.vfs.mkdir, "/mem/f") == errno.EEXIST
    assert errno_of(world.vfs.mkdir, "/mem") == errno.EEXIST
    assert errno_of(world.vfs.rmdir, "/mem/d") == errno.ENOTEMPTY
    assert errno_of(world.vfs.rmdir, "/mem/f") == errno.ENOTDIR
    assert errno_of(world.vfs.rmdir, "/mem/missing") == errno.ENOENT
    assert errno_of(world.vfs.unlink, "/mem/d") == errno.EISDIR
    assert errno_of(world.vfs.unlink, "/mem/missing") == errno.ENOENT
    assert errno_of(world.vfs.readdir, "/mem/f") == errno.ENOTDIR
    assert errno_of(world.vfs.readdir, "/mem/missing") == errno.ENOENT
    assert errno_of(world.vfs.getattr, "/nowhere") == errno.ENOENT


def test_handles_system_roots_and_replaced_versions_have_their_errnos(world: World) -> None:
    world.write_file("/box/f", b"12345")
    reader = world.vfs.open("/box/f", os.O_RDONLY).fh
    writer = world.vfs.create("/mem/w", 0o644, CREATE).fh
    gone = writer + reader + 100
    assert errno_of(world.vfs.read, gone, 1, 0) == errno.EBADF
    assert errno_of(world.vfs.getattr, None, gone) == errno.EBADF
    assert errno_of(world.vfs.truncate, None, 0, gone) == errno.EBADF
    assert errno_of(world.vfs.write, reader, b"x", 0) == errno.EBADF
    assert errno_of(world.vfs.copy_file_range, writer, 0, reader, 0, 5) == errno.EBADF
    assert errno_of(world.vfs.rmdir, "/mem") == errno.EBUSY
    assert errno_of(world.vfs.rename, "/mem", "/box/m") == errno.EBUSY
    assert errno_of(world.vfs.rename, "/mem/w", "/box") == errno.EBUSY
    world.box.files["f"] = b"123456"  # replaced by a longer version before the first read
    world.box.etags["f"] = "replaced"
    assert errno_of(world.vfs.read, reader, 5, 0) == errno.ESTALE
    world.vfs.release(reader)
    world.vfs.release(writer)


def test_a_kept_name_fits_one_name_and_ends_with_the_file_name() -> None:
    from rhfs.vfs.kept import kept_name

    name = kept_name("/s3/bucket/" + "d" * 250 + "/é" * 100 + "/part-0.parquet")
    assert len(name.encode()) <= 255 and name.endswith("__part-0.parquet")
    assert "/" not in kept_name("/here/a/b") and kept_name("/here/a/b").endswith("-here__a__b")
    assert kept_name("/here/caf\udce9").endswith("-here__caf")  # a name that is not UTF-8


def test_symlinks_answer_eopnotsupp_where_the_system_has_none(world: World) -> None:
    assert errno_of(world.vfs.symlink, "target", "/box/link") == errno.EOPNOTSUPP


def test_hard_links_and_special_files_answer_eperm_where_the_system_has_none(world: World) -> None:
    world.write_file("/box/a", b"x")
    assert errno_of(world.vfs.link, "/box/a", "/box/b") == errno.EPERM  # as link(2) answers
    assert errno_of(world.vfs.mknod, "/box/fifo", stat.S_IFIFO | 0o644, 0) == errno.EPERM
    assert world.box.files.keys() == {"a"}


# -- copies --------------------------------------------------------------------------------
def _copy(world: World, src: str, dst: str, off_in: int, off_out: int, length: int) -> int:
    fin = world.vfs.open(src, os.O_RDONLY).fh
    fout = world.vfs.create(dst, 0o644, CREATE).fh
    try:
        return world.vfs.copy_file_range(fin, off_in, fout, off_out, length)
    finally:
        world.vfs.release(fin)
        world.vfs.release(fout)


def test_copy_file_range_whole_file_is_server_side(world: World) -> None:
    world.write_file("/box/src", b"x" * 1000)
    assert _copy(world, "/box/src", "/box/dst", 0, 0, 1 << 30) == 1000
    assert "copy src dst" in world.box.calls
    assert world.box.files["dst"] == b"x" * 1000
    assert world.read_file("/box/dst") == b"x" * 1000
    assert world.stats.snapshot()["copies"]["store-copy"] == {"count": 1, "bytes": 1000}


def test_copy_file_range_partial_or_across_systems_is_exdev(world: World) -> None:
    world.write_file("/box/src", b"y" * 1000)
    assert errno_of(_copy, world, "/box/src", "/box/part", 10, 0, 100) == errno.EXDEV
    assert errno_of(_copy, world, "/box/src", "/box/part", 0, 0, 100) == errno.EXDEV
    assert errno_of(_copy, world, "/box/src", "/box/part", 0, 5, 1000) == errno.EXDEV
    assert errno_of(_copy, world, "/box/src", "/mem/other", 0, 0, 1000) == errno.EXDEV
    assert not any(c.startswith("copy") for c in world.box.calls)
    assert _copy(world, "/box/src", "/box/past-end", 2000, 0, 10) == 0


def test_copy_of_a_pending_source_uploads_it_first(world: World) -> None:
    fh = world.vfs.create("/box/fresh", 0o644, CREATE).fh
    world.vfs.write(fh, b"new bytes", 0)
    fout = world.vfs.create("/box/copy", 0o644, CREATE).fh
    assert world.vfs.copy_file_range(fh, 0, fout, 0, 1 << 20) == 9
    world.vfs.release(fout)
    world.vfs.release(fh)
    assert world.box.files["copy"] == b"new bytes"


# -- caches --------------------------------------------------------------------------------
def test_one_listing_serves_every_child_attribute(world: World) -> None:
    world.vfs.mkdir("/box/many")
    for i in range(20):
        world.box.files[f"many/f{i}"] = b"z" * i
        world.box.mtimes[f"many/f{i}"] = 1.0
    lists, stats = world.calls("box", "list"), world.calls("box", "stat")
    names = world.names("/box/many")
    sizes = [world.vfs.getattr(f"/box/many/{n}").size for n in names]
    assert sorted(sizes) == list(range(20))
    assert world.calls("box", "list") == lists + 1
    assert world.calls("box", "stat") == stats


def test_own_changes_invalidate_caches(world: World) -> None:
    assert world.names("/mem") == []
    world.write_file("/mem/a", b"1")
    assert world.names("/mem") == ["a"]
    world.vfs.mkdir("/mem/d")
    assert world.names("/mem") == ["a", "d"]
    world.write_file("/mem/d/x", b"22")
    assert world.names("/mem/d") == ["x"]
    world.vfs.rename("/mem/d", "/mem/e")
    assert world.names("/mem") == ["a", "e"]
    assert world.names("/mem/e") == ["x"]
    assert errno_of(world.vfs.readdir, "/mem/d") == errno.ENOENT
    world.write_file("/mem/a", b"longer")
    assert world.vfs.getattr("/mem/a").size == 6
    assert world.read_file("/mem/a") == b"longer"
    world.vfs.truncate("/mem/a", 1)
    assert world.vfs.getattr("/mem/a").size == 1
    world.vfs.unlink("/mem/e/x")
    world.vfs.rmdir("/mem/e")
    world.vfs.unlink("/mem/a")
    assert world.names("/mem") == []
    assert errno_of(world.vfs.getattr, "/mem/a") == errno.ENOENT


def test_outside_changes_wait_for_the_ttl(tmp_path: Path) -> None:
    cached = World(tmp_path / "cached", ttl=3600.0)
    assert cached.names("/mem") == []
    cached.mem.files["outside"] = b"o"
    cached.mem.mtimes["outside"] = 1.0
    assert cached.names("/mem") == []  # within the ttl, the listing is served from the cache
    uncached = World(tmp_path / "uncached", ttl=0.0)
    assert uncached.names("/mem") == []
    uncached.mem.files["outside"] = b"o"
    uncached.mem.mtimes["outside"] = 1.0
    assert uncached.names("/mem") == ["outside"]


def test_a_change_made_elsewhere_is_forgotten_alone(world: World) -> None:
    world.vfs.mkdir("/box/d")
    world.write_file("/box/d/a", b"a")
    world.write_file("/mem/m", b"m")
    assert world.names("/box/d") == ["a"] and world.names("/mem") == ["m"]
    world.box.files["d/b"] = b"b"  # a face changed the system, not through the VFS
    world.box.mtimes["d/b"] = 1.0
    assert world.names("/box/d") == ["a"]
    world.vfs.changed_elsewhere("/box/d/b")
    assert world.names("/box/d") == ["a", "b"]
    assert world.vfs.cache.get_listing("/mem") is not None
    del world.box.files["d/a"], world.box.files["d/b"]
    world.box.dirs.discard("d")
    world.vfs.changed_elsewhere("/box/d", subtree=True)
    assert world.names("/box") == []
    assert world.vfs.cache.get_listing("/mem") is not None


# -- metadata ------------------------------------------------------------------------------
def test_mode_of_a_new_file_and_directory_is_applied(world: World) -> None:
    fh = world.vfs.create("/mem/script", 0o755, CREATE).fh
    assert world.vfs.getattr("/mem/script").mode & 0o777 == 0o755
    world.vfs.write(fh, b"#!/bin/sh\n", 0)
    world.vfs.flush(fh)
    assert world.mem.modes["script"] == 0o755
    reader = world.vfs.open("/mem/script", os.O_RDONLY).fh
    world.vfs.release(fh)  # the upload happened at flush; the reader still holds the open file
    assert world.vfs.getattr("/mem/script").mode & 0o777 == 0o755
    world.vfs.release(reader)
    world.write_file("/mem/plain", b"")
    assert "plain" not in world.mem.modes  # the default needs no call
    world.vfs.mkdir("/mem/private", 0o700)
    assert world.mem.modes["private"] == 0o700


def test_chmod_and_utimens_while_writing_survive_the_upload(world: World) -> None:
    fh = world.vfs.create("/mem/p", 0o644, CREATE).fh
    world.vfs.write(fh, b"data", 0)
    world.vfs.chmod("/mem/p", 0o600)
    world.vfs.utimens("/mem/p", 1000 * NS, 2000 * NS)
    assert "p" not in world.mem.files
    attr = world.vfs.getattr("/mem/p")
    assert (attr.mode & 0o777, attr.mtime) == (0o600, 2000.0)  # what it will be after the upload
    world.vfs.release(fh)
    assert world.mem.files["p"] == b"data"
    assert world.mem.modes["p"] == 0o600
    assert world.mem.mtimes["p"] == 2000.0
    world.vfs.chmod("/mem/p", 0o640)  # not open: applied at once
    assert world.mem.modes["p"] == 0o640
    assert errno_of(world.vfs.chmod, "/mem/missing", 0o600) == errno.ENOENT


# -- failed uploads ------------------------------------------------------------------------
def test_failed_upload_keeps_one_copy_and_retries_cleanly(world: World) -> None:
    world.box.failing = True
    fh = world.vfs.create("/box/fragile", 0o644, CREATE).fh
    world.vfs.write(fh, b"precious", 0)
    assert errno_of(world.vfs.flush, fh) == errno.EIO
    failed = world.cache_dir / "failed"
    kept = list(failed.iterdir())
    assert len(kept) == 1 and kept[0].read_bytes() == b"precious"
    world.vfs.write(fh, b"!", 8)
    assert errno_of(world.vfs.flush, fh) == errno.EIO  # the same kept copy, now current
    assert list(failed.iterdir()) == kept
    assert kept[0].read_bytes() == b"precious!"
    world.box.failing = False
    world.vfs.release(fh)  # the retry at release succeeds
    assert world.box.files["fragile"] == b"precious!"
    assert list(failed.iterdir()) == []


def test_failed_upload_at_release_is_kept_and_logged(world: World, caplog: pytest.LogCaptureFixture) -> None:
    world.box.failing = True
    fh = world.vfs.create("/box/lost", 0o644, CREATE).fh
    world.vfs.write(fh, b"keep me", 0)
    with pytest.raises(UploadFailed):
        world.vfs.flush(fh)
    world.vfs.release(fh)  # retries, fails again, must not raise
    kept = list((world.cache_dir / "failed").iterdir())
    assert [p.read_bytes() for p in kept] == [b"keep me"]
    assert any(str(kept[0]) in r.getMessage() for r in caplog.records)
    assert os.listdir(world.cache_dir / "spool") == []


def test_a_write_after_utimens_sets_the_time_anew(world: World) -> None:
    fh = world.vfs.create("/mem/w", 0o644, CREATE).fh
    world.vfs.utimens("/mem/w", 1000 * NS, 2000 * NS)
    world.vfs.write(fh, b"later", 0)
    world.vfs.release(fh)
    assert world.mem.mtimes["w"] > 2000.0


def test_the_trees_own_directories_are_read_only(world: World) -> None:
    assert world.names("/") == ["box", "clusters", "mem"]
    assert errno_of(world.vfs.create, "/new", 0o644, CREATE) == errno.EROFS
    assert errno_of(world.vfs.mkdir, "/clusters/new") == errno.EROFS
    assert errno_of(world.vfs.symlink, "mem", "/link") == errno.EROFS
    assert errno_of(world.vfs.mkdir, "/mem") == errno.EEXIST
    assert errno_of(world.vfs.rmdir, "/mem") == errno.EBUSY
    assert errno_of(world.vfs.rename, "/mem", "/other") == errno.EBUSY
    assert errno_of(world.vfs.rename, "/mem/x", "/other") == errno.EROFS
    assert errno_of(world.vfs.getattr, "/nowhere") == errno.ENOENT
    assert errno_of(world.vfs.create, "/mem/nodir/x", 0o644, CREATE) == errno.ENOENT


def test_readers_on_here_outlive_unlink_and_replacement(world: World) -> None:
    world.write_file("/mem/kept", b"old bytes")
    reader = world.vfs.open("/mem/kept", os.O_RDONLY).fh
    world.vfs.unlink("/mem/kept")
    assert world.vfs.read(reader, 100, 0) == b"old bytes"
    world.vfs.release(reader)
    world.write_file("/mem/target", b"before")
    world.write_file("/mem/source", b"after")
    reader = world.vfs.open("/mem/target", os.O_RDONLY).fh
    world.vfs.rename("/mem/source", "/mem/target")
    assert world.vfs.read(reader, 100, 0) == b"before"
    world.vfs.release(reader)
    assert world.read_file("/mem/target") == b"after"


def test_a_directory_holding_a_file_being_written_is_not_empty(world: World) -> None:
    world.vfs.mkdir("/box/d")
    world.vfs.mkdir("/box/e")
    fh = world.vfs.create("/box/d/pending", 0o644, CREATE).fh
    assert errno_of(world.vfs.rmdir, "/box/d") == errno.ENOTEMPTY
    assert errno_of(world.vfs.rename, "/box/e", "/box/d") == errno.ENOTEMPTY
    world.vfs.release(fh)
    assert world.box.files["d/pending"] == b""
    world.vfs.unlink("/box/d/pending")
    world.vfs.rmdir("/box/d")


def test_a_file_open_for_writing_keeps_its_bytes_when_removed(world: World) -> None:
    world.write_file("/box/doomed", b"old content")
    fh = world.vfs.open("/box/doomed", os.O_RDWR).fh
    world.vfs.unlink("/box/doomed")
    assert world.vfs.read(fh, 100, 0) == b"old content"
    world.vfs.write(fh, b"NEW", 0)
    assert world.vfs.read(fh, 100, 0) == b"NEW content"
    world.vfs.release(fh)
    assert "doomed" not in world.box.files
    world.write_file("/box/target", b"target bytes")
    world.write_file("/box/source", b"source")
    fh = world.vfs.open("/box/target", os.O_RDWR).fh
    world.vfs.rename("/box/source", "/box/target")
    assert world.vfs.read(fh, 100, 0) == b"target bytes"
    world.vfs.write(fh, b"lost", 0)
    world.vfs.release(fh)
    assert world.box.files == {"target": b"source"}


def test_an_unlinked_open_file_answers_by_handle(world: World) -> None:
    world.write_file("/mem/u", b"0123456789")
    fh = world.vfs.open("/mem/u", os.O_RDWR).fh
    world.vfs.unlink("/mem/u")
    assert world.vfs.getattr(None, fh).size == 10
    world.vfs.truncate(None, 4, fh)
    assert world.vfs.getattr(None, fh).size == 4
    assert world.vfs.read(fh, 100, 0) == b"0123"
    world.vfs.release(fh)
    assert errno_of(world.vfs.getattr, None, fh) == errno.EBADF
    assert "u" not in world.mem.files


def test_open_files_follow_a_rename_on_a_store(world: World) -> None:
    world.write_file("/box/old", b"stored bytes")
    writer = world.vfs.open("/box/old", os.O_RDWR).fh  # content not fetched yet
    reader = world.vfs.open("/box/old", os.O_RDONLY).fh
    world.vfs.rename("/box/old", "/box/new")
    assert world.vfs.read(reader, 100, 0) == b"stored bytes"  # shares the writer's spool
    world.vfs.write(writer, b"S", 0)
    world.vfs.release(reader)
    world.vfs.release(writer)
    assert world.box.files == {"new": b"Stored bytes"}
    world.write_file("/box/plain", b"read me")
    reader = world.vfs.open("/box/plain", os.O_RDONLY).fh
    assert world.vfs.read(reader, 4, 0) == b"read"
    world.vfs.rename("/box/plain", "/box/moved")
    assert world.vfs.read(reader, 100, 0) == b"read me"
    world.vfs.release(reader)


def test_a_listing_shows_what_files_being_written_hold(world: World) -> None:
    world.write_file("/box/f", b"x" * 400)
    assert dict(world.vfs.readdir("/box"))["f"].size == 400
    fh = world.vfs.open("/box/f", os.O_RDWR).fh
    world.vfs.truncate("/box/f", 0)
    assert dict(world.vfs.readdir("/box"))["f"].size == 0
    world.vfs.release(fh)
    assert dict(world.vfs.readdir("/box"))["f"].size == 0


# -- concurrent opens and releases (docs/SEMANTICS.md, "Concurrent writers") ---------------
def test_a_reader_that_joins_a_file_being_released_reads_its_bytes(world: World) -> None:
    """The 0-byte race: a reader's open and the writer's release of the same file. The reader
    holds a reference from the moment it finds the open file, so the release cannot discard
    it under the reader, and no empty spool is ever made (and uploaded) in its place."""
    fh = world.vfs.create("/mem/r", 0o644, CREATE).fh
    world.vfs.write(fh, b"payload", 0)
    world.vfs.flush(fh)
    reader = world.vfs.open("/mem/r", os.O_RDONLY).fh  # finds the writer's open file
    world.vfs.release(fh)  # the writer's release, which came late
    assert world.vfs.read(reader, 100, 0) == b"payload"
    world.vfs.flush(reader)  # a reader's close() sends a flush too
    world.vfs.release(reader)
    assert world.mem.files["r"] == b"payload"


def test_a_file_released_while_an_open_looks_it_up_is_looked_up_again(world: World) -> None:
    """Between an open's look-up and the making of its open file, another handle creates,
    writes and releases the same path. The stale "no such file" must not win: it would make
    an empty open file and upload it over the other's bytes."""
    original = world.vfs._file_entry
    raced = []

    def racing_lookup(loc: Location, *, fresh: bool, missing_ok: bool = False) -> Entry | None:
        answer = original(loc, fresh=fresh, missing_ok=missing_ok)
        if not raced:
            raced.append(answer)
            world.write_file("/mem/c", b"the other writer's bytes")  # a whole create-write-release
        return answer

    world.vfs._file_entry = racing_lookup  # type: ignore[method-assign]
    fh = world.vfs.create("/mem/c", 0o644, os.O_WRONLY | os.O_CREAT).fh  # no O_TRUNC: keeps the bytes
    world.vfs._file_entry = original  # type: ignore[method-assign]
    assert raced == [None]  # the first look-up was made before the other writer's file existed
    assert world.vfs.read(fh, 100, 0) == b"the other writer's bytes"
    world.vfs.release(fh)
    assert world.mem.files["c"] == b"the other writer's bytes"


def test_two_last_releases_at_once_upload_once(world: World) -> None:
    """Each release takes the file's lock before it counts references: one of two concurrent
    releases is the last and uploads, never neither."""
    a = world.vfs.create("/mem/two", 0o644, CREATE).fh
    b = world.vfs.open("/mem/two", os.O_WRONLY).fh
    world.vfs.write(b, b"written by b, never flushed", 0)
    threads = [threading.Thread(target=world.vfs.release, args=(fh,)) for fh in (a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert world.mem.files["two"] == b"written by b, never flushed"
    assert os.listdir(world.cache_dir / "spool") == []


def test_create_without_o_trunc_keeps_an_existing_file(world: World) -> None:
    """The kernel sends CREATE for a name it believed absent (a stale negative entry): the
    file is opened as it is, and only O_TRUNC empties it."""
    world.write_file("/mem/kept", b"old bytes")
    fh = world.vfs.create("/mem/kept", 0o644, os.O_WRONLY | os.O_CREAT).fh
    world.vfs.release(fh)
    assert world.mem.files["kept"] == b"old bytes"
    fh = world.vfs.create("/mem/kept", 0o644, os.O_WRONLY | os.O_CREAT | os.O_TRUNC).fh
    world.vfs.release(fh)
    assert world.mem.files["kept"] == b""


# -- times (docs/SEMANTICS.md, "Times") -----------------------------------------------------
def test_utimens_leaves_out_what_is_none(world: World) -> None:
    world.write_file("/mem/t", b"x")
    world.vfs.utimens("/mem/t", 1000 * NS, 2000 * NS)
    assert world.mem.mtimes["t"] == 2000.0
    world.vfs.utimens("/mem/t", 3000 * NS, None)  # UTIME_OMIT for the mtime
    assert world.mem.mtimes["t"] == 2000.0
    world.vfs.utimens("/mem/t", None, None)  # both left out: nothing to do, but ENOENT still holds
    assert errno_of(world.vfs.utimens, "/mem/missing", None, None) == errno.ENOENT


def test_utimens_on_a_file_open_but_unchanged_shows_at_once(world: World) -> None:
    """``touch -d`` opens the file, then sets its times by handle: getattr must show them now,
    not the open file's idea of the times from before."""
    world.write_file("/mem/touched", b"x")
    fh = world.vfs.open("/mem/touched", os.O_WRONLY).fh
    world.vfs.utimens("/mem/touched", 1500 * NS, 2500 * NS)
    attr = world.vfs.getattr("/mem/touched")
    assert (attr.atime_ns, attr.mtime_ns) == (1500 * NS, 2500 * NS)
    world.vfs.release(fh)
    assert world.mem.mtimes["touched"] == 2500.0


def test_a_write_after_utimens_keeps_the_access_time_asked_for(world: World) -> None:
    fh = world.vfs.create("/mem/aw", 0o644, CREATE).fh
    world.vfs.utimens("/mem/aw", 1000 * NS, 2000 * NS)
    world.vfs.write(fh, b"later", 0)
    atime_ns, mtime_ns = world.vfs.getattr("/mem/aw").atime_ns, world.vfs.getattr("/mem/aw").mtime_ns
    assert atime_ns == 1000 * NS and mtime_ns is not None and mtime_ns > 2000 * NS
    world.vfs.release(fh)


def test_names_over_255_bytes_are_enametoolong_for_every_call(world: World) -> None:
    long_name = "/mem/" + "n" * 256
    for call, args in [
        (world.vfs.getattr, (long_name,)),
        (world.vfs.chmod, (long_name, 0o600)),
        (world.vfs.truncate, (long_name, 0)),
        (world.vfs.unlink, (long_name,)),
        (world.vfs.rmdir, (long_name,)),
        (world.vfs.rename, (long_name, "/mem/x")),
        (world.vfs.rename, ("/mem/x", long_name)),
        (world.vfs.create, (long_name, 0o644, CREATE)),
    ]:
        assert errno_of(call, *args) == errno.ENAMETOOLONG, call.__name__


def test_a_change_in_a_directory_refreshes_the_directorys_attributes(world: World) -> None:
    world.vfs.mkdir("/mem/parent")
    before = world.vfs.getattr("/mem/parent")
    world.vfs.mkdir("/mem/parent/child")
    world.mem.mtimes["parent"] = before.mtime + 10  # the system moves the parent's mtime
    world.vfs.rmdir("/mem/parent/child")
    assert world.vfs.getattr("/mem/parent").mtime == before.mtime + 10
    world.mem.mtimes["parent"] = before.mtime + 20
    world.write_file("/mem/parent/file", b"x")
    assert world.vfs.getattr("/mem/parent").mtime == before.mtime + 20


def test_fstat_of_an_unlinked_file_open_for_reading_answers_with_no_links(world: World) -> None:
    world.write_file("/mem/gone", b"bytes")
    fh = world.vfs.open("/mem/gone", os.O_RDONLY).fh
    world.vfs.unlink("/mem/gone")
    attr = world.vfs.getattr(None, fh)
    assert (attr.size, attr.nlink) == (5, 0)
    world.vfs.release(fh)


def test_fallocate_grows_zeroes_or_keeps_the_size_as_locally(world: World) -> None:
    fh = world.vfs.create("/box/f", 0o644, CREATE).fh
    try:
        world.vfs.write(fh, b"abcdef", 0)
        world.vfs.fallocate(fh, 0, 4, 6)  # plain: grows to 10 bytes of which the new ones are zeros
        world.vfs.fallocate(fh, 0x01, 0, 100)  # KEEP_SIZE: the size stays
        world.vfs.fallocate(fh, 0x03, 1, 2)  # PUNCH_HOLE | KEEP_SIZE: zeros in place
        world.vfs.fallocate(fh, 0x11, 8, 50)  # ZERO_RANGE | KEEP_SIZE: never past the end
        assert world.vfs.getattr("/box/f", fh).size == 10
        assert errno_of(world.vfs.fallocate, fh, 0x02, 0, 1) == errno.EOPNOTSUPP  # a hole must keep the size
        assert errno_of(world.vfs.fallocate, fh, 0x08, 0, 1) == errno.EOPNOTSUPP  # COLLAPSE_RANGE
    finally:
        world.vfs.release(fh)
    assert world.box.files["f"] == b"a\0\0def\0\0\0\0"
    reader = world.vfs.open("/box/f", os.O_RDONLY).fh
    try:
        assert errno_of(world.vfs.fallocate, reader, 0, 0, 20) == errno.EBADF
    finally:
        world.vfs.release(reader)


def test_libfuses_hidden_name_of_an_open_file_never_reaches_the_system(world: World) -> None:
    world.write_file("/box/f", b"abc")
    fh = world.vfs.open("/box/f", os.O_RDWR).fh
    hidden = "/box/.fuse_hidden0000000200000001"
    try:
        world.vfs.rename("/box/f", hidden)  # libfuse, on unlink of an open file
        assert "f" not in world.box.files and not any(".fuse_hidden" in n for n in world.box.files)
        world.vfs.write(fh, b"xyz!", 0)
        attr = world.vfs.getattr(hidden)
        assert (attr.size, attr.nlink) == (4, 0)  # fstat still finds the file
        world.vfs.chmod(hidden, 0o600)  # accepted, nothing kept
    finally:
        world.vfs.release(fh)
    world.vfs.unlink(hidden)  # libfuse, after the last release
    assert errno_of(world.vfs.getattr, hidden) == errno.ENOENT
    assert world.box.files == {}
    world.write_file("/box/g", b"closed")
    world.vfs.rename("/box/g", hidden)  # a user's rename of a closed file is a rename
    assert world.box.files == {hidden.rsplit("/", 1)[1]: b"closed"}
