"""Bad input through a real mount: the errno a local filesystem gives, and no traceback.

Every case runs the same ``os`` call on the same small tree in the mount (on each
system) and in a local temp directory; the outcomes (``ok`` or an errno name) must
match, and neither tree may change as a side effect. The daemon log must hold no
Python traceback: every failure is one log line.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from mount_fixtures import assert_same_tree, daemon_log
from testbed import Testbed

pytestmark = [pytest.mark.mount, pytest.mark.servers]

Op = Callable[[Path], object]


def _open_close(path: Path, flags: int) -> None:
    os.close(os.open(path, flags, 0o644))


def _read_dir_as_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.read(fd, 10)
    finally:
        os.close(fd)


CASES: dict[str, Op] = {
    "open missing": lambda r: _open_close(r / "missing", os.O_RDONLY),
    "stat missing": lambda r: os.stat(r / "missing"),
    "create in missing dir": lambda r: _open_close(r / "missing" / "x", os.O_WRONLY | os.O_CREAT),
    "create excl existing": lambda r: _open_close(r / "f", os.O_WRONLY | os.O_CREAT | os.O_EXCL),
    "create excl existing dir": lambda r: _open_close(r / "d", os.O_WRONLY | os.O_CREAT | os.O_EXCL),
    "open dir for writing": lambda r: _open_close(r / "d", os.O_WRONLY),
    "open file as dir": lambda r: _open_close(r / "f", os.O_RDONLY | os.O_DIRECTORY),
    "open under a file": lambda r: _open_close(r / "f" / "x", os.O_RDONLY),
    "create under a file": lambda r: _open_close(r / "f" / "x", os.O_WRONLY | os.O_CREAT),
    "read a dir": lambda r: _read_dir_as_file(r / "d"),
    "truncate a dir": lambda r: os.truncate(r / "d", 0),
    "truncate missing": lambda r: os.truncate(r / "missing", 0),
    "listdir a file": lambda r: os.listdir(r / "f"),
    "listdir missing": lambda r: os.listdir(r / "missing"),
    "mkdir existing dir": lambda r: os.mkdir(r / "d"),
    "mkdir existing file": lambda r: os.mkdir(r / "f"),
    "mkdir in missing dir": lambda r: os.mkdir(r / "missing" / "x"),
    "mkdir under a file": lambda r: os.mkdir(r / "f" / "x"),
    "rmdir non-empty": lambda r: os.rmdir(r / "d"),
    "rmdir a file": lambda r: os.rmdir(r / "f"),
    "rmdir missing": lambda r: os.rmdir(r / "missing"),
    "unlink a dir": lambda r: os.unlink(r / "d"),
    "unlink missing": lambda r: os.unlink(r / "missing"),
    "unlink under a file": lambda r: os.unlink(r / "f" / "x"),
    "rename missing": lambda r: os.rename(r / "missing", r / "x"),
    "rename into missing dir": lambda r: os.rename(r / "f", r / "missing" / "x"),
    "rename file over non-empty dir": lambda r: os.rename(r / "f", r / "d"),
    "rename file over empty dir": lambda r: os.rename(r / "f", r / "e"),
    "rename dir over file": lambda r: os.rename(r / "d", r / "f"),
    "rename dir over non-empty dir": lambda r: os.rename(r / "e", r / "d"),
    "rename dir into itself": lambda r: os.rename(r / "d", r / "d" / "sub"),
    "rename under a file": lambda r: os.rename(r / "f" / "x", r / "y"),
    "chmod missing": lambda r: os.chmod(r / "missing", 0o600),
    "utime missing": lambda r: os.utime(r / "missing", (1, 1)),
}


def _make_tree(root: Path) -> None:
    (root / "f").write_bytes(b"a file\n")
    (root / "d").mkdir()
    (root / "d" / "inner").write_bytes(b"inside\n")
    (root / "e").mkdir()


def _outcome(op: Op, root: Path) -> str:
    try:
        op(root)
    except OSError as e:
        return errno.errorcode.get(e.errno or 0, str(e.errno))
    return "ok"


@pytest.fixture
def log_from_here(testbed: Testbed) -> Callable[[], str]:
    """The daemon log written since the test started."""
    log = daemon_log(testbed)
    start = log.stat().st_size

    def written() -> str:
        with open(log, "rb") as f:
            f.seek(start)
            return f.read().decode("utf-8", "replace")

    return written


def test_errnos_match_a_local_directory(
    system_dir: Path, tmp_path: Path, log_from_here: Callable[[], str]
) -> None:
    local = tmp_path / "local"
    local.mkdir()
    _make_tree(local)
    _make_tree(system_dir)
    outcomes = {name: (_outcome(op, system_dir), _outcome(op, local)) for name, op in CASES.items()}
    differ = {name: pair for name, pair in outcomes.items() if pair[0] != pair[1]}
    assert differ == {}, "(mount, local) outcomes differ"
    assert all(mounted != "ok" for mounted, _ in outcomes.values())
    assert_same_tree(system_dir, local)  # no failed call changed anything
    assert "Traceback" not in log_from_here()


def test_hard_links_work_where_the_system_has_them_and_answer_eperm_elsewhere(
    system_dir: Path, system: str
) -> None:
    (system_dir / "f").write_bytes(b"x")
    if system in ("here", "cluster-a"):
        os.link(system_dir / "f", system_dir / "g")
        assert (system_dir / "g").read_bytes() == b"x" and sorted(os.listdir(system_dir)) == ["f", "g"]
        return
    with pytest.raises(OSError) as caught:
        os.link(system_dir / "f", system_dir / "g")
    assert caught.value.errno == errno.EPERM  # as link(2) answers where a filesystem has none
    assert os.listdir(system_dir) == ["f"]


def test_control_files_and_the_tree_are_read_only(mnt: Path, log_from_here: Callable[[], str]) -> None:
    control = mnt / ".rhfs"
    for op, expected in (
        (lambda: (control / "stats.json").write_text("x"), errno.EROFS),
        (lambda: (control / "new").write_text("x"), errno.EROFS),
        (lambda: os.unlink(control / "version"), errno.EROFS),
        (lambda: os.mkdir(control / "d"), errno.EROFS),
        (lambda: os.mkdir(mnt / "clusters" / "nope"), errno.EROFS),
        (lambda: os.mkdir(mnt / "nope"), errno.EROFS),
        (lambda: (mnt / "nope").write_text("x"), errno.EROFS),
        (lambda: os.symlink("here", mnt / "nope"), errno.EROFS),
        (lambda: os.mkdir(mnt / "here"), errno.EEXIST),
        (lambda: os.rmdir(mnt / "here"), errno.EBUSY),
        (lambda: os.rmdir(mnt / "clusters"), errno.EBUSY),
        (lambda: os.rename(mnt / "here", mnt / "there"), errno.EBUSY),
        (lambda: os.rename(mnt / "here", mnt / "clusters" / "there"), errno.EBUSY),
    ):
        with pytest.raises(OSError) as caught:
            op()
        assert caught.value.errno == expected, (caught.value, errno.errorcode[expected])
    assert "Traceback" not in log_from_here()


def test_daemon_log_has_no_traceback(mnt: Path, testbed: Testbed) -> None:
    """Everything the session did through the mount so far left log lines, never a traceback."""
    assert (mnt / ".rhfs" / "version").read_text().startswith("rhfs ")
    text = daemon_log(testbed).read_text(errors="replace")
    assert "Traceback" not in text
    assert "Ignoring invalid max threads" not in text  # libfuse 3.14's noise at mount


@pytest.mark.parametrize("system", ["here", "cluster-a"])
def test_a_path_too_long_for_the_system_underneath_is_enametoolong_at_once(
    system_dir: Path, system: str, testbed: Testbed
) -> None:
    """Directories nested (through directory descriptors, so no call passes a long path) until
    the system's root plus the path reaches PATH_MAX: the next mkdir and create answer
    ENAMETOOLONG, and no write is taken, failed at close and moved to cache/failed."""
    assert testbed.cache_dir is not None
    failed = testbed.cache_dir / "failed"
    kept_before = set(os.listdir(failed)) if failed.exists() else set()
    name = "d" * 250
    fds = [os.open(system_dir, os.O_RDONLY | os.O_DIRECTORY)]
    refused = None
    try:
        for depth in range(20):
            try:
                os.mkdir(name, dir_fd=fds[-1])
            except OSError as e:
                refused = (depth, e.errno)
                break
            fds.append(os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fds[-1]))
        assert refused is not None and refused[1] == errno.ENAMETOOLONG, refused
        with pytest.raises(OSError) as caught:
            os.close(os.open(name, os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fds[-1]))
        assert caught.value.errno == errno.ENAMETOOLONG
    finally:
        while len(fds) > 1:
            os.close(fds.pop())
            os.rmdir(name, dir_fd=fds[-1])
        os.close(fds[0])
    kept_after = set(os.listdir(failed)) if failed.exists() else set()
    assert kept_after == kept_before
