"""Several users on one ``allow_other`` mount, on ``here/`` and on a cluster.

The mount runs as root, as the service does. Users other than root (numeric uids, through
``setpriv``) work in a world-writable sticky directory, with real clients:
- what one makes (files, directories, links, FIFOs) belongs to that user and group, on the
  system underneath too, so the user can append to it, chmod it and rename it afterwards;
- ``chown`` and ``chgrp`` by root are kept;
- another user's 0600 file can be neither read, appended to, chmodded, renamed nor removed, and
  a third user cannot read the first one's private file.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import mounted, system_path
from testbed import Testbed

pytestmark = [pytest.mark.mount, pytest.mark.servers, pytest.mark.timeout(300)]

ALICE, BOB = 4101, 4102  # numeric uids with no passwd entry, as a cluster's users often have here


def as_user(uid: int, command: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``command`` run by bash as ``uid`` (its own gid, no other groups) in ``cwd``."""
    return subprocess.run(
        ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "bash", "-c", command],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"{result.args}: {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def refused(result: subprocess.CompletedProcess[str], message: str) -> None:
    assert result.returncode != 0 and message in result.stderr, (result.args, result.stderr)


@pytest.fixture(scope="module")
def shared_mount(testbed: Testbed) -> Iterator[Path]:
    """The testbed's mount with ``allow_other``, where other users can reach it."""
    base = Path(tempfile.mkdtemp(prefix="rhfs-users-", dir="/tmp"))
    base.chmod(0o755)
    try:
        with mounted(testbed.config_path, base / "mnt", "--allow-other") as mnt:
            yield mnt
    finally:
        shutil.rmtree(base, ignore_errors=True)


def underneath(testbed: Testbed, system: str) -> Path:
    """The directory that holds the system's files on this host (here's root, a cluster's root)."""
    if system == "here":
        assert testbed.here_root is not None
        return testbed.here_root
    return testbed.cluster_roots[system]


@pytest.fixture(params=["here", "cluster-a"])
def shared_dir(
    request: pytest.FixtureRequest, shared_mount: Path, testbed: Testbed
) -> Iterator[tuple[Path, Path]]:
    """A fresh sticky, world-writable directory (mode 1777) in the mount, and the same one underneath."""
    name = f"users-{uuid.uuid4().hex[:8]}"
    mounted_dir = system_path(shared_mount, request.param) / name
    mounted_dir.mkdir()
    mounted_dir.chmod(0o1777)
    try:
        yield mounted_dir, underneath(testbed, request.param) / name
    finally:
        shutil.rmtree(mounted_dir, ignore_errors=True)


def owner(path: Path) -> tuple[int, int]:
    st = os.lstat(path)
    return st.st_uid, st.st_gid


def test_a_user_owns_what_they_make_and_can_keep_working_on_it(shared_dir: tuple[Path, Path]) -> None:
    where, real = shared_dir
    ok(as_user(ALICE, "echo one > f && echo two >> f && chmod 640 f && mv f g && echo three >> g", where))
    ok(as_user(ALICE, "mkdir d && ln -s g s && touch d/inside && mv d e", where))
    assert (where / "g").read_text() == "one\ntwo\nthree\n"
    for name in ("g", "e", "s", "e/inside"):
        assert owner(where / name) == (ALICE, ALICE), name
        assert owner(real / name) == (ALICE, ALICE), name  # on the system too, not only shown
    assert os.stat(where / "g").st_mode & 0o7777 == 0o640
    listing = ok(as_user(ALICE, "LC_ALL=C ls -ln g", where)).split()
    assert listing[0] == "-rw-r-----" and listing[2:4] == [str(ALICE), str(ALICE)]
    ok(as_user(ALICE, "rm g s e/inside && rmdir e", where))
    assert sorted(os.listdir(where)) == []


def test_root_can_give_a_file_away_and_the_new_owner_has_it(shared_dir: tuple[Path, Path]) -> None:
    where, real = shared_dir
    (where / "given").write_text("yours\n")
    (where / "given").chmod(0o600)
    os.chown(where / "given", ALICE, -1)
    os.chown(where / "given", -1, BOB)  # chgrp alone keeps the owner
    assert owner(where / "given") == (ALICE, BOB) == owner(real / "given")
    ok(as_user(ALICE, "echo more >> given && chmod 640 given", where))
    assert (where / "given").read_text() == "yours\nmore\n"
    assert owner(real / "given") == (ALICE, BOB)  # a rewrite keeps the owner
    assert ok(as_user(BOB, "cat given", where)) == "yours\nmore\n"  # the group may read (g+r)


def test_another_users_private_file_is_out_of_reach(shared_dir: tuple[Path, Path]) -> None:
    where, real = shared_dir
    ok(as_user(ALICE, "umask 077 && echo secret > private", where))
    assert os.stat(real / "private").st_mode & 0o777 == 0o600
    refused(as_user(BOB, "cat private", where), "Permission denied")
    refused(as_user(BOB, "echo x >> private", where), "Permission denied")
    refused(as_user(BOB, "chmod 666 private", where), "Operation not permitted")
    refused(as_user(BOB, "mv private mine", where), "Operation not permitted")  # the sticky bit
    refused(as_user(BOB, "rm -f private", where), "Operation not permitted")
    refused(as_user(BOB, "touch -d 2001-01-01 private", where), "Permission denied")  # its open(2)
    refused(as_user(BOB, "python3 -c 'import os; os.utime(\"private\", (1, 1))'", where), "not permitted")
    (where / "root-only").write_text("root's\n")
    (where / "root-only").chmod(0o600)
    refused(as_user(ALICE, "cat root-only", where), "Permission denied")
    refused(as_user(ALICE, "chown 4101 root-only", where), "Operation not permitted")
    assert (where / "private").read_text() == "secret\n" and (real / "private").read_text() == "secret\n"
    assert owner(real / "root-only") == (0, 0)


def test_special_files_and_hard_links_of_a_user(shared_dir: tuple[Path, Path]) -> None:
    where, real = shared_dir
    ok(as_user(ALICE, "echo a > f && ln f g && mkfifo p", where))
    assert os.stat(real / "f").st_ino == os.stat(real / "g").st_ino and os.stat(real / "f").st_nlink == 2
    assert owner(real / "p") == (ALICE, ALICE) and (real / "p").is_fifo() and (where / "p").is_fifo()
    if "clusters" in where.parts:
        return  # a write through one name gives it a new file there (docs/SEMANTICS.md)
    assert os.stat(where / "f").st_nlink == 2 and os.stat(where / "f").st_ino == os.stat(where / "g").st_ino
    ok(as_user(ALICE, "echo b >> g", where))
    assert (where / "f").read_text() == "a\nb\n"  # one file under two names
    assert os.stat(real / "f").st_ino == os.stat(real / "g").st_ino
