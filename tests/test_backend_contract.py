"""The backend contract: one suite, run against every backend and its real local server.

Backends: ``memory``, ``here`` (a temporary directory), ``s3`` (moto), ``gs``
(fake-gcs-server), ``azure`` (Azurite) and ``cluster-a`` (OpenSSH). Most tests go
through :class:`~rhfs.backends.guard.Guarded`, as the VFS does; the error-mapping
tests also run on the raw backends. Each test works in a fresh directory.
"""

from __future__ import annotations

import errno
import hashlib
from pathlib import Path
from typing import Any

import pytest
from backend_fixtures import (
    BACKENDS,
    EEXIST,
    EINVAL,
    EISDIR,
    ENAMETOOLONG,
    ENOENT,
    ENOTDIR,
    ENOTEMPTY,
    PATTERN,
    STORES,
    Place,
    errno_of,
    make_place,
    payload,
    raw_backend,
)

from rhfs.backends.guard import Guarded, is_outage
from rhfs.errors import NotFound, RhfsError, to_errno
from rhfs.stats import Stats

pytestmark = pytest.mark.servers


@pytest.fixture(params=BACKENDS)
def place(request: pytest.FixtureRequest, tmp_path: Path) -> Place:
    return make_place(request.param, True, tmp_path, request)


@pytest.fixture(params=BACKENDS)
def raw_place(request: pytest.FixtureRequest, tmp_path: Path) -> Place:
    return make_place(request.param, False, tmp_path, request)


# -- stat and list -------------------------------------------------------------------------
def test_stat_of_a_file(place: Place) -> None:
    place.put("f.txt", b"hello")
    e = place.stat("f.txt")
    assert (e.name, e.is_dir, e.size) == ("f.txt", False, 5)
    assert e.mtime > 0
    assert e.etag


def test_etag_changes_when_content_changes(place: Place) -> None:
    place.put("f", b"one")
    first = place.stat("f").etag
    place.put("f", b"two")
    second = place.stat("f")
    assert second.etag and second.etag != first
    place.put("f", b"three!")
    assert place.stat("f").etag not in (first, second.etag)


def test_stat_of_a_directory(place: Place) -> None:
    place.mkdir("d")
    e = place.stat("d")
    assert (e.name, e.is_dir, e.size) == ("d", True, 0)
    assert place.backend.stat(place.root).is_dir


def test_list_shows_files_and_directories(place: Place) -> None:
    place.put("a.txt", b"a")
    place.put("b.bin", b"bb")
    place.mkdir("empty")
    place.mkdir("full")
    place.put("full/inner.txt", b"inner")
    entries = place.entries()
    assert sorted(entries) == ["a.txt", "b.bin", "empty", "full"]
    assert [entries[n].is_dir for n in sorted(entries)] == [False, False, True, True]
    assert entries["a.txt"].size == 1 and entries["b.bin"].size == 2
    for name in ("a.txt", "b.bin"):
        listed, stated = entries[name], place.stat(name)
        assert listed.mtime > 0 and listed.etag
        assert (listed.size, listed.etag) == (stated.size, stated.etag)
    assert place.names("empty") == []
    assert place.names("full") == ["inner.txt"]


def test_missing_paths_answer_enoent(place: Place) -> None:
    assert errno_of(place.backend.stat, place.p("nope")) == ENOENT
    assert errno_of(place.backend.list, place.p("nope")) == ENOENT
    assert errno_of(place.backend.stat, place.p("nope", "deeper")) in (ENOENT, ENOTDIR)


def test_list_of_a_file_is_enotdir(place: Place) -> None:
    place.put("f", b"x")
    assert errno_of(place.backend.list, place.p("f")) == ENOTDIR


# -- reads -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("offset", "size", "expected"),
    [
        (0, 10, PATTERN[:10]),
        (500, 100, PATTERN[500:600]),
        (1000, 100, PATTERN[1000:]),
        (1024, 10, b""),
        (5000, 1, b""),
        (7, 0, b""),
        (0, 1 << 20, PATTERN),
    ],
    ids=["start", "middle", "end", "at-eof", "past-eof", "zero-length", "whole"],
)
def test_ranged_reads(place: Place, offset: int, size: int, expected: bytes) -> None:
    place.put("r.bin", PATTERN)
    assert place.read("r.bin", offset, size) == expected


def test_one_reader_serves_many_ranges(place: Place) -> None:
    path = place.put("r.bin", PATTERN)
    reader = place.backend.open_reader(path, place.backend.stat(path))
    try:
        assert reader.read(1000, 24) == PATTERN[1000:]
        assert reader.read(0, 4) == PATTERN[:4]
        assert reader.read(512, 2) == PATTERN[512:514]
    finally:
        reader.close()


# -- uploads -------------------------------------------------------------------------------
@pytest.mark.parametrize("size", [0, 1, 1 << 20, 33 << 20], ids=["0B", "1B", "1MiB", "33MiB"])
def test_upload_sizes(place: Place, size: int) -> None:
    data = payload(size)
    place.put("u.bin", data)
    assert place.stat("u.bin").size == size
    got = place.read("u.bin")
    assert len(got) == size and hashlib.sha256(got).digest() == hashlib.sha256(data).digest()


def test_upload_replaces_whole_file(place: Place) -> None:
    place.put("f", b"a much longer first version")
    place.put("f", b"short")
    assert place.read("f") == b"short"
    assert place.names() == ["f"]  # no temporary sibling is ever listed


def test_upload_into_a_new_directory(place: Place) -> None:
    place.mkdir("d")
    place.mkdir("d/e")
    place.put("d/e/g.txt", b"g")
    assert place.names("d/e") == ["g.txt"]
    assert place.names("d") == ["e"]


# -- remove ----------------------------------------------------------------------------------
def test_remove_a_file(place: Place) -> None:
    place.mkdir("d")
    place.put("d/f", b"x")
    place.backend.remove(place.p("d/f"))
    assert errno_of(place.backend.stat, place.p("d/f")) == ENOENT
    assert place.stat("d").is_dir  # the emptied directory stays
    assert place.names("d") == []


def test_remove_errors(place: Place) -> None:
    place.mkdir("d")
    assert errno_of(place.backend.remove, place.p("d")) == EISDIR
    assert errno_of(place.backend.remove, place.p("missing")) == ENOENT


# -- mkdir and rmdir -------------------------------------------------------------------------
def test_mkdir_persists_an_empty_directory(place: Place) -> None:
    place.mkdir("x")
    place.mkdir("x/y")
    assert place.stat("x/y").is_dir
    assert place.names("x") == ["y"]
    assert place.names("x/y") == []
    assert place.names() == ["x"]


def test_mkdir_errors(place: Place) -> None:
    place.mkdir("d")
    place.put("f", b"x")
    assert errno_of(place.backend.mkdir, place.p("d")) == EEXIST
    assert errno_of(place.backend.mkdir, place.p("f")) == EEXIST
    assert errno_of(place.backend.mkdir, place.p("missing/sub")) == ENOENT
    assert errno_of(place.backend.mkdir, place.p("f/sub")) == ENOTDIR


def test_rmdir(place: Place) -> None:
    place.mkdir("d")
    place.mkdir("d/e")
    place.backend.rmdir(place.p("d/e"))
    assert errno_of(place.backend.stat, place.p("d/e")) == ENOENT
    assert place.stat("d").is_dir
    assert place.names("d") == []
    place.backend.rmdir(place.p("d"))
    assert place.names() == []


def test_rmdir_errors(place: Place) -> None:
    place.mkdir("d")
    place.put("d/f", b"x")
    place.mkdir("e")
    place.mkdir("e/sub")
    assert errno_of(place.backend.rmdir, place.p("d")) == ENOTEMPTY
    assert errno_of(place.backend.rmdir, place.p("e")) == ENOTEMPTY
    assert errno_of(place.backend.rmdir, place.p("d/f")) == ENOTDIR
    assert errno_of(place.backend.rmdir, place.p("missing")) == ENOENT


# -- rename ----------------------------------------------------------------------------------
def test_rename_a_file(place: Place) -> None:
    place.put("a", b"content")
    place.put("b", b"old")
    place.backend.rename(place.p("a"), place.p("c"))
    assert place.read("c") == b"content"
    assert errno_of(place.backend.stat, place.p("a")) == ENOENT
    place.backend.rename(place.p("c"), place.p("b"))  # replaces
    assert place.read("b") == b"content"
    assert place.names() == ["b"]


def test_rename_a_directory_tree(place: Place) -> None:
    place.mkdir("x")
    place.put("x/top.txt", b"top")
    place.mkdir("x/y")
    place.put("x/y/g.txt", b"g")
    place.mkdir("x/empty")
    place.backend.rename(place.p("x"), place.p("x2"))
    assert place.names() == ["x2"]
    assert errno_of(place.backend.stat, place.p("x")) == ENOENT
    assert place.names("x2") == ["empty", "top.txt", "y"]
    assert place.names("x2/y") == ["g.txt"]
    assert place.names("x2/empty") == []
    assert place.read("x2/y/g.txt") == b"g"


def test_rename_into_a_subdirectory_keeps_the_source_parent(place: Place) -> None:
    place.mkdir("src")
    place.mkdir("dst")
    place.put("src/f", b"f")
    place.backend.rename(place.p("src/f"), place.p("dst/f"))
    assert place.names("src") == []
    assert place.names("dst") == ["f"]


def test_rename_conflicts(place: Place) -> None:
    place.mkdir("d")
    place.put("d/inside", b"i")
    place.mkdir("empty")
    place.put("f", b"f")
    assert errno_of(place.backend.rename, place.p("f"), place.p("d")) == EISDIR
    assert errno_of(place.backend.rename, place.p("d"), place.p("f")) == ENOTDIR
    assert errno_of(place.backend.rename, place.p("empty"), place.p("d")) == ENOTEMPTY
    assert errno_of(place.backend.rename, place.p("missing"), place.p("z")) == ENOENT
    place.backend.rename(place.p("d"), place.p("empty"))  # onto an empty directory
    assert place.names("empty") == ["inside"]
    assert sorted(place.names()) == ["empty", "f"]


# -- copy_within -----------------------------------------------------------------------------
def test_copy_within(place: Place) -> None:
    copy_within = place.backend.abilities.copy_within
    assert copy_within is not None
    place.put("src.bin", PATTERN)
    place.mkdir("d")
    copy_within(place.p("src.bin"), place.p("d/dst.bin"))
    assert place.read("d/dst.bin") == PATTERN
    assert place.read("src.bin") == PATTERN


# -- names -------------------------------------------------------------------------------------
NAMES = ["with space.txt", "ünïcødé ✓.txt", "日本語", "#hash?query&amp%20.txt", "-dash", ".hidden"]


def test_unusual_names(place: Place) -> None:
    place.mkdir("dir with space")
    for i, name in enumerate(NAMES):
        place.put(f"dir with space/{name}", name.encode() * (i + 1))
    assert place.names("dir with space") == sorted(NAMES)
    for i, name in enumerate(NAMES):
        assert place.read(f"dir with space/{name}") == name.encode() * (i + 1)
    place.backend.rename(place.p("dir with space"), place.p("ü dir"))
    assert place.names("ü dir") == sorted(NAMES)


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("..", EINVAL),
        (".", EINVAL),
        ("new\nline", EINVAL),
        ("x" * 256, ENAMETOOLONG),
        ("é" * 128, ENAMETOOLONG),
    ],
    ids=["dotdot", "dot", "newline", "256-bytes", "256-utf8-bytes"],
)
def test_bad_names(place: Place, name: str, code: int) -> None:
    path = place.p(name)
    assert errno_of(place.backend.stat, path) == code
    assert errno_of(place.backend.mkdir, path) == code
    assert errno_of(place.put, name, b"x") == code
    assert errno_of(place.backend.rename, place.mkdir("ok"), path) == code


def test_longest_name_is_fine(place: Place) -> None:
    name = "n" * 255
    place.put(name, b"x")
    assert place.names() == [name]


# -- error mapping, raw and guarded ----------------------------------------------------------
def test_raw_errors_carry_their_errno(raw_place: Place) -> None:
    raw_place.put("f", b"x")
    b = raw_place.backend
    assert errno_of(b.stat, raw_place.p("missing")) == ENOENT
    assert errno_of(b.list, raw_place.p("f")) == ENOTDIR
    assert errno_of(b.mkdir, raw_place.p("f")) == EEXIST
    assert errno_of(b.remove, raw_place.p("missing")) == ENOENT


@pytest.mark.parametrize("name", BACKENDS)
def test_guard_maps_answers_and_stays_healthy(
    name: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    raw, base = raw_backend(name, tmp_path, request)
    stats = Stats()
    guarded = Guarded(raw, stats, op_timeout=60.0)
    missing = f"{base}/missing-{name}" if base else f"missing-{name}"
    try:
        with pytest.raises(NotFound):
            guarded.stat(missing)
        with pytest.raises(RhfsError) as info:
            guarded.remove(missing)
        assert info.value.errno == errno.ENOENT
        with pytest.raises(NotFound):
            guarded.list(missing)
        assert stats.health[raw.system].healthy
        guarded.list(base)  # answered, not failed fast: the system was never marked down
    finally:
        guarded.close()


def test_is_outage_classifies_by_meaning() -> None:
    assert not is_outage(FileNotFoundError("no such key"))  # s3fs and gcsfs leave errno None
    assert not is_outage(FileExistsError("x"))
    assert not is_outage(PermissionError("denied"))
    assert not is_outage(NotFound("x"))
    assert not is_outage(OSError("server said 416"))
    assert is_outage(ConnectionRefusedError(errno.ECONNREFUSED, "refused"))
    assert is_outage(TimeoutError())
    assert is_outage(OSError(errno.ECONNRESET, "reset"))
    assert to_errno(FileNotFoundError("x")) == ENOENT


# -- stores only: markers, implicit directories, buckets, request counts ---------------------
@pytest.fixture(params=STORES)
def store_place(request: pytest.FixtureRequest, tmp_path: Path) -> Place:
    return make_place(request.param, False, tmp_path, request)


def _key(place: Place, rel: str) -> tuple[str, str]:
    bucket, _, key = place.p(rel).partition("/")
    return bucket, key


def test_store_markers_are_never_files(store_place: Place) -> None:
    b: Any = store_place.backend
    bucket, key = _key(store_place, "m")
    b._run(b.api.put_empty, bucket, key + "/")
    b._run(b.api.put_empty, bucket, key + "/sub/")
    store_place.put("m/f", b"f")
    assert store_place.names() == ["m"]
    assert store_place.stat("m").is_dir
    entries = store_place.entries("m")
    assert sorted(entries) == ["f", "sub"]
    assert entries["sub"].is_dir and not entries["f"].is_dir
    assert store_place.names("m/sub") == []


def test_store_implicit_directories(store_place: Place) -> None:
    store_place.put("i/j/k.txt", b"k")  # no markers anywhere
    assert store_place.stat("i").is_dir and store_place.stat("i/j").is_dir
    assert store_place.names("i") == ["j"]
    assert store_place.names("i/j") == ["k.txt"]
    assert errno_of(store_place.backend.rmdir, store_place.p("i")) == ENOTEMPTY


def test_store_bucket_root(store_place: Place) -> None:
    b = store_place.backend
    bucket = store_place.root.split("/")[0]
    assert b.stat(bucket).is_dir
    assert bucket in [e.name for e in b.list("")]
    assert store_place.root.split("/")[1] in [e.name for e in b.list(bucket)]
    assert errno_of(b.mkdir, "another-bucket") == errno.EACCES
    assert errno_of(b.stat, "no-such-bucket") == ENOENT


class CountingApi:
    """Wraps an ObjectApi and records each request by name."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.calls = inner, []  # type: ignore[var-annotated]

    @property
    def loop(self) -> Any:
        return self.inner.loop

    def __getattr__(self, name: str) -> Any:
        fn = getattr(self.inner, name)

        async def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(name)
            return await fn(*args, **kwargs)

        return counted


def test_store_request_counts(store_place: Place) -> None:
    from rhfs.backends.store import StoreBackend

    b: Any = store_place.backend
    for i in range(30):
        store_place.put(f"many/f{i}", b"x")
    store_place.mkdir("many/sub")
    store_place.put("deep/a/b/c/d.txt", b"d")
    api = CountingApi(b.api)
    counted = StoreBackend(b.system, b.protocol, b.options, b.configured_buckets, api=api)  # type: ignore[arg-type]
    assert len(counted.list(store_place.p("many"))) == 31
    assert api.calls == ["list_prefix"]
    api.calls.clear()
    counted.stat(store_place.p("many/f3"))
    assert api.calls == ["head"]
    api.calls.clear()
    counted.stat(store_place.p("many"))
    assert api.calls == ["head", "list_prefix"]  # one LIST of at most one key, not the subtree
    api.calls.clear()
    counted.stat(store_place.p("deep"))
    assert api.calls == ["head", "list_prefix"]


def test_store_listing_pages(store_place: Place) -> None:
    """Listings and directory renames follow continuation tokens (pages made small here)."""
    b: Any = store_place.backend
    names = [f"k{i:02d}" for i in range(23)]
    for n in names:
        store_place.put(f"big/{n}", n.encode())
    store_place.mkdir("big/sub")
    store_place.put("big/sub/inner", b"i")
    b.api.page_size = 5
    try:
        assert store_place.names("big") == [*names, "sub"]
        store_place.backend.rename(store_place.p("big"), store_place.p("moved"))
        assert store_place.names("moved") == [*names, "sub"]
        assert store_place.names("moved/sub") == ["inner"]
        assert errno_of(store_place.backend.stat, store_place.p("big")) == ENOENT
    finally:
        b.api.page_size = type(b.api)(b.api.fs).page_size


def test_a_reader_never_mixes_two_versions(place: Place) -> None:
    """After a replacement, an open reader gives the old bytes or ESTALE, never the new ones."""
    old, new = b"o" * 1000, b"n" * 1000
    path = place.put("v", old)
    reader = place.backend.open_reader(path, place.backend.stat(path))
    try:
        assert reader.read(0, 10) == old[:10]
        place.put("v", new)
        try:
            rest = reader.read(10, 990)
        except Exception as e:
            assert to_errno(e) == errno.ESTALE, e
        else:
            assert rest == old[10:]
    finally:
        reader.close()
    assert place.read("v") == new
