"""Tree jobs meeting faults, through the installed ``rhfs cp``, on real sshd clusters and moto.

- The copying process is killed (SIGKILL) mid-tree: no helper is left on either cluster, no
  half file is visible at the destination, and the rerun completes what was left, skipping
  what had arrived.
- The destination cluster's sshd is killed mid-tree: ``rhfs cp`` ends, non-zero, within a
  bounded time, naming the files that failed.
- On a terminal (a pty), the progress bar moves during one 256 MiB copy: its percentage is
  seen between 0 and 100, as the session's helper reports the bytes.

The destination cluster-b is served by a second sshd of its own (:class:`OwnSshd`), which
the stop test may kill without touching the testbed's.
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import signal
import struct
import subprocess
import termios
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import RHFS
from faults_fixtures import OwnSshd, argv, helpers_under, wait_for, write_config
from testbed import Testbed

from rhfs.backends.base import TMP_MARK

pytestmark = pytest.mark.servers
MiB = 1 << 20
SMALL_FILES = 400
BIG = 48 * MiB
STOP_LIMIT = 120.0  # seconds rhfs cp may take to give up once its destination is gone


@dataclass
class Bed:
    tb: Testbed
    config: Path
    sshd: OwnSshd

    def root(self, cluster: str) -> Path:
        return self.tb.cluster_roots[cluster]

    def cp(self, src: str, dst: str, *extra: str) -> subprocess.Popen[str]:
        argv = [RHFS, "cp", "-r", "--config", str(self.config), *extra, src, dst]
        return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def helpers(self) -> set[int]:
        assert self.sshd.proc is not None
        return helpers_under(self.tb.pids["cluster-a"]) | helpers_under(self.sshd.proc.pid)


@pytest.fixture(scope="module")
def bed(testbed: Testbed, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bed]:
    d = tmp_path_factory.mktemp("tree-faults")
    sshd = OwnSshd(testbed, "cluster-b", d / "sshd")
    sshd.start()
    config = write_config(testbed, d, op_timeout=10, cluster_ports={"cluster-b": sshd.port})
    try:
        yield Bed(testbed, config, sshd)
    finally:
        sshd.stop()


def make_source(root: Path) -> tuple[str, dict[str, bytes]]:
    """A tree on a cluster: many small files in two directories, and one big file."""
    name = f"tree-{uuid.uuid4().hex[:10]}"
    files = {f"{'ab'[i % 2]}/f{i:04d}": os.urandom(4096 + i) for i in range(SMALL_FILES)}
    files["big.bin"] = os.urandom(BIG)
    for rel, data in files.items():
        path = root / name / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return name, files


def arrived(top: Path) -> dict[str, Path]:
    """The files under ``top`` by relative path, temporaries included."""
    if not top.exists():
        return {}
    return {str(p.relative_to(top)): p for p in top.rglob("*") if p.is_file()}


def temporaries(top: Path) -> list[str]:
    return [rel for rel in arrived(top) if TMP_MARK in rel]


def test_a_tree_copy_killed_mid_way_leaves_no_half_file_and_the_rerun_completes(bed: Bed) -> None:
    name, files = make_source(bed.root("cluster-a"))
    dst = bed.root("cluster-b") / name
    src_url, dst_url = f"rhfs://clusters/cluster-a/{name}", f"rhfs://clusters/cluster-b/{name}"

    others = bed.helpers()  # sessions of other tests' cores, in this process
    proc = bed.cp(src_url, dst_url)
    landed = wait_for(lambda: len(arrived(dst)) - len(temporaries(dst)) >= 20, timeout=60, interval=0.02)
    assert landed and proc.poll() is None, "the copy ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)

    def left() -> set[int]:
        return bed.helpers() - others

    assert wait_for(lambda: not left(), timeout=30), [argv(p)[:200] for p in left()]
    assert wait_for(lambda: not temporaries(dst), timeout=10), temporaries(dst)
    there = arrived(dst)
    assert 0 < len(there) < len(files)
    for rel, path in there.items():
        assert path.read_bytes() == files[rel], f"{rel} is not whole"

    rerun = bed.cp(f"{src_url}/", dst_url)
    out, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err
    assert re.search(rf"{len(there)} unchanged", out), out
    assert {rel: p.read_bytes() for rel, p in arrived(dst).items()} == files


def test_a_destination_cluster_stopped_mid_tree_fails_the_copy_naming_its_files(bed: Bed) -> None:
    name, files = make_source(bed.root("cluster-a"))
    dst = bed.root("cluster-b") / name
    proc = bed.cp(f"rhfs://clusters/cluster-a/{name}", f"rhfs://clusters/cluster-b/{name}")
    try:
        landed = wait_for(lambda: len(arrived(dst)) - len(temporaries(dst)) >= 20, timeout=60, interval=0.02)
        assert landed and proc.poll() is None, "the copy ended before its destination could be stopped"
        bed.sshd.stop()
        started = time.monotonic()
        out, err = proc.communicate(timeout=STOP_LIMIT)
    finally:
        if proc.poll() is None:
            proc.kill()
        if bed.sshd.proc is None:
            bed.sshd.start()
    assert time.monotonic() - started < STOP_LIMIT
    assert proc.returncode != 0, out
    failed, copied = re.search(r"(\d+) file\(s\) failed", err), re.search(r"copied (\d+) files", out)
    assert failed is not None and copied is not None, (out, err)
    assert int(failed.group(1)) > 0 and int(copied.group(1)) + int(failed.group(1)) == len(files)
    assert f"clusters/cluster-a/{name}/" in err and f"-> /clusters/cluster-b/{name}/" in err, err


def test_the_progress_bar_moves_on_a_terminal_during_a_big_copy(bed: Bed) -> None:
    name = f"big-{uuid.uuid4().hex[:10]}.bin"
    (bed.root("cluster-a") / name).write_bytes(os.urandom(256 * MiB))
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))  # a bar needs columns
    argv = [RHFS, "cp", "--config", str(bed.config), f"rhfs://clusters/cluster-a/{name}"]
    argv.append(f"rhfs://clusters/cluster-b/{name}")  # a push: its bytes move as fast as B takes them
    proc = subprocess.Popen(argv, stdin=terminal, stdout=terminal, stderr=terminal)
    os.close(terminal)
    shown = b""
    try:
        while True:
            ready, _, _ = select.select([controller], [], [], 120)
            if not ready:
                break
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # the terminal closed: the copy ended
                break
            if not chunk:
                break
            shown += chunk
    finally:
        os.close(controller)
        proc.wait(60)
        (bed.root("cluster-a") / name).unlink()
        (bed.root("cluster-b") / name).unlink(missing_ok=True)
    assert proc.returncode == 0, shown[-2000:]
    percents = {int(p) for p in re.findall(rb"(\d{1,3})%\|", shown)}
    assert any(0 < p < 100 for p in percents), shown[-2000:]
    assert b"256M" in shown or b"268M" in shown, shown[-2000:]  # the total was known up front
