"""Times through the real mount, on every system: ``touch`` in all its forms and
``utimensat`` with UTIME_NOW and UTIME_OMIT (docs/SEMANTICS.md, "Times").

- ``here/`` keeps atime and mtime apart, to the nanosecond;
- clusters keep them apart in whole seconds (SFTP v3), and clamp a time past 2106 to
  the largest they can hold, with the cluster still ``ok``;
- stores keep the time of the last upload: ``touch`` never sets 1970, and a time asked
  for is accepted and not kept.
"""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.mount, pytest.mark.servers]

UTIME_NOW, UTIME_OMIT = (1 << 30) - 1, (1 << 30) - 2
AT_FDCWD = -100
NS = 1_000_000_000
KEEPS_TIMES = ("here", "cluster-a")
PRECISION_NS = {"here": 1, "cluster-a": NS}  # the unit each system keeps times in


class Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


def utimensat(path: Path, atime: tuple[int, int], mtime: tuple[int, int]) -> None:
    """The system call itself, so that UTIME_NOW and UTIME_OMIT reach the mount as they are."""
    libc = ctypes.CDLL(None, use_errno=True)
    times = (Timespec * 2)(Timespec(*atime), Timespec(*mtime))
    if libc.utimensat(AT_FDCWD, os.fsencode(path), times, 0) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), str(path))


def made(system_dir: Path, name: str = "f") -> Path:
    path = system_dir / name
    path.write_bytes(b"some bytes")
    return path


def recent(ns: int, slack: float = 5.0) -> bool:
    return abs(ns / NS - time.time()) < slack


def test_touch_of_an_existing_file_sets_now_not_1970(system_dir: Path, system: str) -> None:
    path = made(system_dir)
    if system in KEEPS_TIMES:
        os.utime(path, ns=(1_000_000 * NS, 1_000_000 * NS))  # 1970-01-12: far from now
    subprocess.run(["touch", str(path)], check=True)
    st = path.stat()
    assert recent(st.st_mtime_ns), time.ctime(st.st_mtime)
    assert recent(st.st_atime_ns), time.ctime(st.st_atime)


def test_touch_dash_d_shows_at_once(system_dir: Path, system: str) -> None:
    path = made(system_dir)
    subprocess.run(["touch", "-d", "2021-05-06 07:08:09 UTC", str(path)], check=True)
    st = path.stat()  # at once: no wait for attr_ttl
    if system in KEEPS_TIMES:
        assert st.st_mtime == st.st_atime == 1620284889
    else:
        assert recent(st.st_mtime_ns)  # the store's upload time


@pytest.mark.parametrize("system", KEEPS_TIMES)  # stores keep neither time apart (docs/SEMANTICS.md)
@pytest.mark.parametrize("flag", ["-a", "-m"])
def test_touch_a_or_m_moves_only_that_time(system_dir: Path, system: str, flag: str) -> None:
    path = made(system_dir)
    old = 1_600_000_000 * NS
    os.utime(path, ns=(old, old))
    subprocess.run(["touch", flag, str(path)], check=True)
    st = path.stat()
    moved, kept = (st.st_atime_ns, st.st_mtime_ns) if flag == "-a" else (st.st_mtime_ns, st.st_atime_ns)
    assert recent(moved)
    assert kept == old


def test_utimensat_with_utime_omit_and_utime_now(system_dir: Path, system: str) -> None:
    path = made(system_dir)
    if system not in KEEPS_TIMES:
        utimensat(path, (0, UTIME_NOW), (0, UTIME_OMIT))  # accepted; the store's time stays
        assert recent(path.stat().st_mtime_ns)
        return
    unit = PRECISION_NS[system]
    atime, mtime = 1_900_000_000 * NS + 123_456_789, 1_950_000_000 * NS + 987_654_321
    utimensat(path, divmod(atime, NS), divmod(mtime, NS))
    st = path.stat()
    assert (st.st_atime_ns, st.st_mtime_ns) == (atime // unit * unit, mtime // unit * unit)
    utimensat(path, (0, UTIME_OMIT), (0, UTIME_NOW))
    st = path.stat()
    assert st.st_atime_ns == atime // unit * unit
    assert recent(st.st_mtime_ns)
    utimensat(path, (0, UTIME_NOW), (0, UTIME_OMIT))
    after = path.stat()
    assert recent(after.st_atime_ns) and after.st_mtime_ns == st.st_mtime_ns


def test_times_set_on_a_file_being_written_survive_its_upload(system_dir: Path, system: str) -> None:
    path = system_dir / "written"
    with open(path, "wb") as f:
        f.write(b"x" * 1000)
        f.flush()  # the write reaches the mount before the times: a later write would move the mtime
        os.utime(f.fileno(), ns=(1_700_000_000 * NS, 1_700_000_001 * NS))
    st = path.stat()
    if system in KEEPS_TIMES:
        assert (st.st_atime, st.st_mtime) == (1_700_000_000, 1_700_000_001)
    else:
        assert recent(st.st_mtime_ns)


def test_a_time_past_2106_on_a_cluster_is_clamped_and_the_cluster_stays_ok(mnt: Path) -> None:
    from conftest import system_path

    d = system_path(mnt, "cluster-a")
    path = made(d, "y2106")
    neighbour = made(d, "y2106-neighbour")
    try:
        utimensat(path, (2**31, 0), (2**32, 0))  # pjdfstest utimensat/09's times
        st = path.stat()
        assert st.st_atime == 2**31  # 2038 fits in SFTP's 32 unsigned bits
        assert st.st_mtime == 2**32 - 1  # 2106 does not: the largest time it can hold
        assert neighbour.read_bytes() == b"some bytes"  # the rest of the cluster still answers
        status = json.loads((mnt / ".rhfs" / "status.json").read_text())
        assert status["systems"]["cluster-a"]["health"] == "ok", status["systems"]["cluster-a"]
    finally:
        path.unlink()
        neighbour.unlink()
