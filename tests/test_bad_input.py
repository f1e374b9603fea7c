"""Bad input: each case gets a clear errno and one log line, and loses nothing.

- names too long for the kernel (a 256-byte component) or for a store (a key over
  1024 bytes), and names a system cannot hold (not UTF-8, on stores and clusters);
- names holding a newline are refused everywhere; names merely containing ``..``
  are ordinary names;
- writes to the read-only control files under ``.rhfs/``;
- a part that is not parquet, written into a table;
- a config that holds a secret but is readable by others (``rhfs mount`` refuses);
- a cluster whose host key is wrong (refused unless ``known_hosts = ""``), and a
  cluster unreachable or hung when the mount starts: the mount comes up and only
  that cluster's subtree answers EIO.

docs/SEMANTICS.md ("Names", "Faults") states these answers.
"""

from __future__ import annotations

import errno
import os
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import RHFS, mounted, system_path
from faultproxy import FaultProxy
from faults_fixtures import DEADLINE, OUTAGE_ERRNOS, errno_of, log_text, status, timed_errno, write_config
from testbed import Testbed

pytestmark = [pytest.mark.mount, pytest.mark.servers, pytest.mark.timeout(180)]

STORES = ("s3", "gs", "azure")
STORE_KEY_LIMIT = 1024  # bytes, on S3, GCS and Azure alike


def warnings_about(tb: Testbed, needle: str) -> list[str]:
    """Daemon log lines at WARNING or above that mention ``needle``."""
    log = (tb.cache_dir or Path()) / "rhfs.log"
    text = log.read_text(errors="replace") if log.exists() else ""
    return [ln for ln in text.splitlines() if needle in ln and (" WARNING " in ln or " ERROR " in ln)]


@pytest.fixture
def bad_dir(mnt: Path, system: str) -> Iterator[Path]:
    """A fresh directory holding one file, ``keep.txt``, that no bad call may touch."""
    d = system_path(mnt, system) / f"bad-{uuid.uuid4().hex[:8]}"
    d.mkdir()
    (d / "keep.txt").write_bytes(b"keep me\n")
    yield d
    subprocess.run(["rm", "-rf", str(d)], capture_output=True)


def assert_untouched(d: Path) -> None:
    assert sorted(os.listdir(d)) == ["keep.txt"]
    assert (d / "keep.txt").read_bytes() == b"keep me\n"


def create(path: Path | bytes) -> Callable[[], None]:
    return lambda: os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o644))


def refused_once(tb: Testbed, fn: Callable[[], object], code: int, needle: str) -> None:
    """``fn`` fails with ``code``, and the log gains exactly one warning that mentions ``needle``."""
    before = len(warnings_about(tb, needle))
    assert errno_of(fn) == code, os.strerror(code)
    lines = warnings_about(tb, needle)[before:]
    assert len(lines) == 1, lines


# -- names -----------------------------------------------------------------------------------
def test_too_long_and_newline_names_are_refused(testbed: Testbed, bad_dir: Path, system: str) -> None:
    tag = uuid.uuid4().hex[:6]
    refused_once(testbed, create(bad_dir / (tag + "a" * 250)), errno.ENAMETOOLONG, tag)
    refused_once(testbed, create(bad_dir / f"{tag}\nb"), errno.EINVAL, tag)
    refused_once(testbed, lambda: os.mkdir(bad_dir / f"{tag}-dir\n"), errno.EINVAL, tag)
    refused_once(testbed, lambda: os.rename(bad_dir / "keep.txt", bad_dir / f"{tag}\n"), errno.EINVAL, tag)
    assert_untouched(bad_dir)


def test_names_that_are_not_utf8(testbed: Testbed, bad_dir: Path, system: str) -> None:
    """Object keys and SFTP paths are UTF-8; here/ is a local directory and takes any bytes."""
    tag = uuid.uuid4().hex[:6]
    name = os.fsencode(bad_dir) + b"/" + tag.encode() + b"\xff\xfe.txt"
    if system == "here":
        create(name)()
        os.unlink(name)
    else:
        refused_once(testbed, create(name), errno.EINVAL, tag)
    assert_untouched(bad_dir)


@pytest.mark.parametrize("store", STORES)
def test_keys_longer_than_a_store_allows(testbed: Testbed, mnt: Path, store: str) -> None:
    """Each component is legal, but the whole key passes the 1024 bytes stores allow."""
    top = system_path(mnt, store) / f"long-{uuid.uuid4().hex[:8]}"
    top.mkdir()
    try:
        tag = uuid.uuid4().hex[:6]
        deep = top
        while len(deep.relative_to(system_path(mnt, store)).as_posix().encode()) + 250 < STORE_KEY_LIMIT:
            deep = deep / ("d" * 240)
        deep.mkdir(parents=True)
        refused_once(testbed, create(deep / (tag + "f" * 240)), errno.ENAMETOOLONG, tag)
        refused_once(testbed, lambda: os.mkdir(deep / (tag + "g" * 240)), errno.ENAMETOOLONG, tag)
        assert os.listdir(deep) == []
    finally:
        subprocess.run(["rm", "-rf", str(top)], capture_output=True)


def test_names_containing_dots_are_ordinary(bad_dir: Path, system: str) -> None:
    """Only ``.`` and ``..`` themselves are special, and the kernel resolves those before rhfs."""
    names = ["a..b", "..hidden", "trailing..", "...", ". leading space"]
    for name in names:
        (bad_dir / name).write_bytes(name.encode())
    assert sorted(os.listdir(bad_dir)) == sorted([*names, "keep.txt"])
    for name in names:
        assert (bad_dir / name).read_bytes() == name.encode()
    os.rename(bad_dir / "a..b", bad_dir / "b..a")
    assert (bad_dir / "b..a").read_bytes() == b"a..b"
    # ``x/..`` is the kernel's: it never reaches rhfs as a name.
    (bad_dir / "sub..dir").mkdir()
    assert os.path.samefile(bad_dir / "sub..dir" / "..", bad_dir)


# -- read-only views -------------------------------------------------------------------------
def test_writes_to_the_control_files_are_read_only(testbed: Testbed, mnt: Path) -> None:
    control = mnt / ".rhfs"
    version = (control / "version").read_bytes()
    names = sorted(os.listdir(control))
    cases: list[tuple[str, Callable[[], object]]] = [
        ("status.json", lambda: open(control / "status.json", "wb").close()),
        ("version", lambda: os.open(control / "version", os.O_WRONLY | os.O_APPEND)),
        ("version", lambda: os.truncate(control / "version", 0)),
        ("version", lambda: os.unlink(control / "version")),
        ("version", lambda: os.rename(control / "version", control / "v2")),
        ("version", lambda: os.chmod(control / "version", 0o666)),
        ("new-file", lambda: open(control / "new-file", "wb").close()),
        ("new-dir", lambda: os.mkdir(control / "new-dir")),
    ]
    for name, fn in cases:
        refused_once(testbed, fn, errno.EROFS, f"/.rhfs/{name}")
    assert (control / "version").read_bytes() == version
    assert sorted(os.listdir(control)) == names


def test_a_part_that_is_not_parquet_is_refused_and_kept(testbed: Testbed, mnt: Path) -> None:
    table = mnt / "tables" / f"bad-{uuid.uuid4().hex[:8]}"
    table.mkdir()
    try:
        junk = b"this is not parquet\n" * 100
        f = open(table / "part-0.parquet", "wb")  # noqa: SIM115 - its close() is what is checked
        f.write(junk)
        before = len(warnings_about(testbed, "part-0.parquet"))
        assert errno_of(f.close) == errno.EINVAL
        assert warnings_about(testbed, "part-0.parquet")[before:], "no log line for the refused part"
        # The kernel sends RELEASE after close() returns; until then the refused file is open.
        deadline = time.monotonic() + 10
        while os.listdir(table) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert os.listdir(table) == []
        assert testbed.cache_dir is not None
        kept = sorted((testbed.cache_dir / "failed").glob(f"*{table.name}*part-0.parquet"))
        assert kept and kept[-1].read_bytes() == junk, "the refused bytes were not kept"
    finally:
        subprocess.run(["rm", "-rf", str(table)], capture_output=True)


# -- configuration ---------------------------------------------------------------------------
@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_a_config_with_secrets_readable_by_others_is_refused(
    testbed: Testbed, tmp_path: Path, mode: int
) -> None:
    config = write_config(testbed, tmp_path / "cfg", mode=mode)
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    result = subprocess.run(
        [RHFS, "mount", str(mountpoint), "--config", str(config)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2, result
    assert str(config) in result.stderr and "chmod 600" in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not os.path.ismount(mountpoint)


def test_a_config_without_secrets_may_be_readable(testbed: Testbed, tmp_path: Path) -> None:
    def only_here(cfg: dict[str, Any]) -> None:
        cfg["stores"], cfg["clusters"] = {}, {}

    config = write_config(testbed, tmp_path / "cfg", mode=0o644, edit=only_here)
    with mounted(config, tmp_path / "mnt") as mountpoint:
        assert "here" in os.listdir(mountpoint)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def odd_clusters(testbed: Testbed, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A mount with four more clusters: wrong host key, unchecked host key, unreachable, hung."""
    d = tmp_path_factory.mktemp("odd-clusters")
    hung = FaultProxy(testbed.cluster_ports["cluster-a"])
    hung.blackhole()
    a_port = testbed.cluster_ports["cluster-a"]
    b_key = testbed.state["clusters"]["cluster-b"]["host_key"].split()
    wrong = d / "wrong_known_hosts"
    wrong.write_text(f"[127.0.0.1]:{a_port} {b_key[0]} {b_key[1]}\n")

    def add(cfg: dict[str, Any]) -> None:
        base = dict(cfg["clusters"]["cluster-a"])
        cfg["clusters"]["wrong-key"] = {**base, "known_hosts": str(wrong)}
        cfg["clusters"]["unchecked"] = {**base, "known_hosts": ""}
        cfg["clusters"]["unreachable"] = {**base, "port": _closed_port()}
        cfg["clusters"]["hung"] = {**base, "port": hung.port}

    config = write_config(testbed, d, edit=add)
    try:
        with mounted(config, d / "mnt") as mountpoint:
            yield mountpoint
    finally:
        hung.close()


def test_a_wrong_host_key_is_refused(odd_clusters: Path) -> None:
    config = odd_clusters.parent / "rhfs.toml"
    code, took = timed_errno(lambda: os.listdir(odd_clusters / "clusters" / "wrong-key"))
    assert code == errno.EIO and took < DEADLINE, (code, took)
    st = status(odd_clusters)["wrong-key"]
    assert st["health"] == "down" and "host key" in st["last_error"].lower(), st
    assert [ln for ln in log_text(config).splitlines() if "wrong-key" in ln and "host key" in ln.lower()]


def test_known_hosts_empty_on_purpose_skips_the_check_and_says_so(odd_clusters: Path) -> None:
    config = odd_clusters.parent / "rhfs.toml"
    assert isinstance(os.listdir(odd_clusters / "clusters" / "unchecked"), list)
    assert [ln for ln in log_text(config).splitlines() if "unchecked" in ln and "NOT checked" in ln]


@pytest.mark.parametrize("name", ["unreachable", "hung"])
def test_a_cluster_down_at_mount_time_costs_only_its_subtree(odd_clusters: Path, name: str) -> None:
    assert name in os.listdir(odd_clusters / "clusters")
    code, took = timed_errno(lambda: os.listdir(odd_clusters / "clusters" / name))
    assert code in OUTAGE_ERRNOS and took < DEADLINE, (code, took)
    code, took = timed_errno(create(odd_clusters / "clusters" / name / "x"))
    assert code in OUTAGE_ERRNOS and took < DEADLINE, (code, took)
    assert status(odd_clusters)[name]["health"] == "down"
    for other in ("here", "s3", "cluster-a"):
        p = system_path(odd_clusters, other) / f"alive-{uuid.uuid4().hex[:6]}"
        p.write_bytes(b"ok")
        assert p.read_bytes() == b"ok"
        p.unlink()
