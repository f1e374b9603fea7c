"""A Hypothesis state machine diffs the mount against a plain local directory.

Random sequences of create, write, append, ranged read, truncate, mkdir, unlink,
rmdir, rename, stat and list (and, on the systems that keep them, hard links, chmod
and chown: see ``KEEPS``) run on a fresh directory in the mount and on a local
temp directory; every step must give the same result on both: the same bytes, the
same listing, or the same errno. Up to three files are also held open for
writing across steps (written, read and closed later), as concurrent processes
would hold them. At the end of each sequence the two trees must
be identical. The other calls open and close their own file, as separate
processes would (close-to-open consistency).

The only divergences tolerated are those in docs/SEMANTICS.md, "Compared with a
local directory": directory sizes, link counts and times are not compared.

``RHFS_DIFF_EXAMPLES`` and ``RHFS_DIFF_STEPS`` raise the budget for a longer hunt.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import tempfile
import uuid
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    precondition,
    rule,
    run_state_machine_as_test,
)
from mount_fixtures import assert_same_tree

pytestmark = [pytest.mark.mount, pytest.mark.servers]

NAMES = ("a", "b", "c")
PATHS = [*NAMES, *(f"{p}/{c}" for p in NAMES for c in NAMES)]
EXAMPLES = int(os.environ.get("RHFS_DIFF_EXAMPLES", "20"))
STEPS = int(os.environ.get("RHFS_DIFF_STEPS", "40"))
# what each system keeps beyond names and bytes; a cluster's hard links are left out, since a
# write through one name gives that name a new file there (docs/SEMANTICS.md, "Owners and links")
KEEPS: dict[str, frozenset[str]] = {
    "here": frozenset({"link", "chmod", "chown"}),
    "cluster-a": frozenset({"chmod", "chown"}),
}
MODES = (0o600, 0o640, 0o644, 0o700, 0o755, 0o4755, 0o2750)
IDS = (-1, 0, 1234, 4321)

# A path is either one that exists now (most of the time) or any name of the small universe.
Pick = tuple[bool, int, str]
_index = st.integers(0, 1 << 16)
paths = st.tuples(st.integers(0, 3).map(bool), _index, st.sampled_from(PATHS))  # mostly existing
new_paths = st.tuples(st.integers(0, 3).map(lambda i: i == 0), _index, st.sampled_from(PATHS))
# (seed, length): position-dependent bytes that print short in a failing example
data = st.tuples(st.integers(0, 250), st.integers(0, 3000) | st.sampled_from([0, 1, 5000]))
Chunk = tuple[int, int]


def _bytes(chunk: Chunk) -> bytes:
    seed, length = chunk
    return bytes((seed + i) % 251 for i in range(length))


offsets = st.integers(min_value=0, max_value=8000)
sizes = st.integers(min_value=0, max_value=8000)

Outcome = tuple[str, Any]


def _do(fn: Any, *args: Any) -> Outcome:
    try:
        return ("ok", fn(*args))
    except OSError as e:
        return ("error", errno.errorcode.get(e.errno or 0, str(e.errno)))


def _write(path: Path, flags: int, chunk: bytes, offset: int | None) -> int:
    fd = os.open(path, flags, 0o644)
    try:
        return os.write(fd, chunk) if offset is None else os.pwrite(fd, chunk, offset)
    finally:
        os.close(fd)


def _read(path: Path, offset: int, size: int) -> bytes:
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.pread(fd, size, offset)
    finally:
        os.close(fd)


def _stat(path: Path) -> tuple[str, int, int, int, int]:
    """Type, size (0 for a directory), permission bits, owner and group."""
    st_ = os.stat(path)
    size = 0 if stat.S_ISDIR(st_.st_mode) else st_.st_size
    kind = "dir" if stat.S_ISDIR(st_.st_mode) else "file"
    return (kind, size, stat.S_IMODE(st_.st_mode), st_.st_uid, st_.st_gid)


def _list(path: Path) -> list[tuple[str, str, int, int, int, int]]:
    return sorted((name, *_stat(path / name)) for name in os.listdir(path))


class MountVersusLocal(RuleBasedStateMachine):
    mount_base: Path
    local_base: Path
    keeps: frozenset[str] = frozenset()

    def __init__(self) -> None:
        super().__init__()
        self.mounted = self.mount_base / uuid.uuid4().hex[:8]
        self.mounted.mkdir()
        self.local = Path(tempfile.mkdtemp(dir=self.local_base))
        self.writers: list[tuple[int, int, str]] = []  # (fd in the mount, local fd, path opened)
        self.linked = False  # a hard link was made: no file is held open from then on

    def pick(self, choice: Pick, *, dirs: bool = False) -> str:
        existing_first, index, fallback = choice
        if existing_first:
            found = [
                p.relative_to(self.local).as_posix()
                for p in sorted(self.local.rglob("*"))
                if not dirs or p.is_dir()
            ]
            if found:
                return found[index % len(found)]
        return fallback

    @initialize()
    def start(self) -> None:
        self.both("mkdir a", os.mkdir, "a")
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
        self.both("create b", _write, "b", flags, b"bee\n" * 100, None)
        self.both("create a/c", _write, "a/c", flags, b"sea", None)

    def both(self, what: str, fn: Any, *args: Any) -> Outcome:
        """Run ``fn(root / path...)`` on both sides; paths are the ``str`` arguments."""
        results = []
        for root in (self.mounted, self.local):
            rooted = [root / a if isinstance(a, str) else a for a in args]
            results.append(_do(fn, *rooted))
        mounted, local = results
        assert mounted == local, f"{what}: mount gave {mounted!r}, local gave {local!r}"
        return local

    @rule(choice=paths, chunk=data)
    def create(self, choice: Pick, chunk: Chunk) -> None:
        path = self.pick(choice)
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
        self.both(f"create {path} ({chunk[1]} B)", _write, path, flags, _bytes(chunk), None)

    @rule(choice=paths, chunk=data, offset=offsets)
    def write(self, choice: Pick, chunk: Chunk, offset: int) -> None:
        path = self.pick(choice)
        what = f"write {path} @{offset} ({chunk[1]} B)"
        self.both(what, _write, path, os.O_WRONLY, _bytes(chunk), offset)

    @rule(choice=paths, chunk=data)
    def append(self, choice: Pick, chunk: Chunk) -> None:
        path = self.pick(choice)
        flags = os.O_WRONLY | os.O_APPEND
        self.both(f"append {path} ({chunk[1]} B)", _write, path, flags, _bytes(chunk), None)

    @rule(choice=paths, offset=offsets, size=sizes)
    def read(self, choice: Pick, offset: int, size: int) -> None:
        path = self.pick(choice)
        self.both(f"read {path} @{offset} +{size}", _read, path, offset, size)

    @rule(choice=paths, size=sizes)
    def truncate(self, choice: Pick, size: int) -> None:
        path = self.pick(choice)
        self.both(f"truncate {path} {size}", os.truncate, path, size)

    @rule(choice=paths)
    def mkdir(self, choice: Pick) -> None:
        path = self.pick(choice)
        self.both(f"mkdir {path}", os.mkdir, path)

    @rule(choice=paths)
    def unlink(self, choice: Pick) -> None:
        path = self.pick(choice)
        self.both(f"unlink {path}", os.unlink, path)

    @rule(choice=paths)
    def rmdir(self, choice: Pick) -> None:
        path = self.pick(choice)
        self.both(f"rmdir {path}", os.rmdir, path)

    @rule(src_choice=paths, dst_choice=new_paths)
    def rename(self, src_choice: Pick, dst_choice: Pick) -> None:
        src, dst = self.pick(src_choice), self.pick(dst_choice)
        self.both(f"rename {src} {dst}", os.rename, src, dst)

    # Held-open writers and hard links are not mixed: each name of a file open for writing has
    # its own spool in the mount (docs/SEMANTICS.md, "Owners and links").
    @precondition(lambda self: "link" in self.keeps and not self.writers)
    @rule(src_choice=paths, dst_choice=new_paths)
    def link(self, src_choice: Pick, dst_choice: Pick) -> None:
        src, dst = self.pick(src_choice), self.pick(dst_choice)
        self.linked |= self.both(f"link {src} {dst}", os.link, src, dst)[0] == "ok"

    @precondition(lambda self: "chmod" in self.keeps)
    @rule(choice=paths, mode=st.sampled_from(MODES))
    def chmod(self, choice: Pick, mode: int) -> None:
        path = self.pick(choice)
        self.both(f"chmod {path} {mode:o}", os.chmod, path, mode)

    @precondition(lambda self: "chown" in self.keeps)
    @rule(choice=paths, uid=st.sampled_from(IDS), gid=st.sampled_from(IDS))
    def chown(self, choice: Pick, uid: int, gid: int) -> None:
        path = self.pick(choice)
        self.both(f"chown {path} {uid}:{gid}", os.chown, path, uid, gid)

    @rule(choice=paths)
    def stat(self, choice: Pick) -> None:
        path = self.pick(choice)
        self.both(f"stat {path}", _stat, path)

    @rule(choice=paths)
    def listdir(self, choice: Pick) -> None:
        path = "" if choice[1] % 4 == 0 else self.pick(choice, dirs=True)
        self.both(f"list {path or '.'}", _list, path)

    # -- files held open across steps: shared spools, renames and unlinks of open files ------
    def on_fds(self, what: str, fn: Any, writer: tuple[int, int, str], *args: Any) -> Outcome:
        mounted, local = _do(fn, writer[0], *args), _do(fn, writer[1], *args)
        assert mounted == local, f"{what} on {writer[2]}: mount gave {mounted!r}, local gave {local!r}"
        return local

    @precondition(lambda self: len(self.writers) < 3 and not self.linked)
    @rule(choice=paths, truncate=st.booleans())
    def open_writer(self, choice: Pick, truncate: bool) -> None:
        path = self.pick(choice)
        flags = os.O_RDWR | os.O_CREAT | (os.O_TRUNC if truncate else 0)
        mounted = _do(os.open, self.mounted / path, flags, 0o644)
        local = _do(os.open, self.local / path, flags, 0o644)
        for outcome in (mounted, local):
            if outcome[0] == "ok" and mounted[0] != local[0]:
                os.close(outcome[1])
        assert mounted[0] == local[0] and (mounted[0] == "ok" or mounted == local), (
            f"open {path} for writing: mount gave {mounted!r}, local gave {local!r}"
        )
        if local[0] == "ok":
            self.writers.append((mounted[1], local[1], path))

    @precondition(lambda self: bool(self.writers))
    @rule(index=_index, chunk=data, offset=offsets)
    def write_open(self, index: int, chunk: Chunk, offset: int) -> None:
        writer = self.writers[index % len(self.writers)]
        self.on_fds(f"pwrite @{offset} ({chunk[1]} B)", os.pwrite, writer, _bytes(chunk), offset)

    @precondition(lambda self: bool(self.writers))
    @rule(index=_index, offset=offsets, size=sizes)
    def read_open(self, index: int, offset: int, size: int) -> None:
        writer = self.writers[index % len(self.writers)]
        self.on_fds(f"pread @{offset} +{size}", os.pread, writer, size, offset)
        # the size by handle; fstat of a file unlinked while open is ESTALE (docs/SEMANTICS.md)
        self.on_fds("lseek end", lambda fd: os.lseek(fd, 0, os.SEEK_END), writer)

    @precondition(lambda self: bool(self.writers))
    @rule(index=_index)
    def close_writer(self, index: int) -> None:
        writer = self.writers.pop(index % len(self.writers))
        self.on_fds("close", os.close, writer)

    def teardown(self) -> None:
        try:
            while self.writers:
                self.close_writer(0)
            assert_same_tree(self.mounted, self.local)
        finally:
            shutil.rmtree(self.mounted, ignore_errors=True)
            shutil.rmtree(self.local, ignore_errors=True)


def test_mount_behaves_like_a_local_directory(system_dir: Path, system: str, tmp_path: Path) -> None:
    keeps = KEEPS.get(system, frozenset())
    attributes = {"mount_base": system_dir, "local_base": tmp_path, "keeps": keeps}
    machine = type("Machine", (MountVersusLocal,), attributes)
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=EXAMPLES,
            stateful_step_count=STEPS,
            deadline=None,
            database=None,
            derandomize=bool(os.environ.get("CI")),
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
            print_blob=True,
        ),
    )
