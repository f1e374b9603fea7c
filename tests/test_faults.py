"""Faults: a system that stops, hangs, slows down or drops connections costs only its own subtree.

Each test checks one promise of docs/SEMANTICS.md, "Faults", through a real mount:

- an operation on a system that is down fails with EIO or ETIMEDOUT within the op
  timeout, and every other system keeps answering meanwhile;
- ``.rhfs/status.json`` shows the outage, then the recovery, with no remount, and open
  files keep working after it;
- a failed upload fails ``close()``/``fsync()``; its bytes are kept under
  ``cache_dir/failed`` and the log line names that copy;
- no partial object ever becomes visible: after any fault the object holds its old
  content or the whole new one;
- after ``kill -9`` of the daemon no write is claimed, nothing partial is visible, the
  data is kept, and orphaned multipart uploads and a cluster's temporary files are
  cleaned up at the next start; `rhfs failed` lists what was kept as unfinished and retries it.

Faults are injected with :class:`faultproxy.FaultProxy` in front of moto (S3) and in
front of an sshd of our own (cluster-a), which is also crashed and restarted for real.
Every check asserts an errno *and* that no byte was lost.
"""

from __future__ import annotations

import errno
import json
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import RHFS, mounted
from faultproxy import FaultProxy
from faults_fixtures import (
    DEADLINE,
    FAST_TIMEOUT,
    OUTAGE_ERRNOS,
    OwnSshd,
    cache_dir,
    daemon_pid,
    errno_of,
    health,
    log_text,
    status,
    timed_errno,
    wait_for,
    write_config,
)
from testbed import Testbed, fsspec_filesystem

pytestmark = [pytest.mark.mount, pytest.mark.servers, pytest.mark.timeout(240)]

MiB = 1 << 20
ATTR_TTL = 1.0  # the testbed config's
OTHERS = ("here", "gs", "azure", "cluster-b")


@dataclass
class FaultBed:
    tb: Testbed
    mnt: Path
    config: Path
    s3: FaultProxy
    cluster: FaultProxy
    sshd: OwnSshd

    def root(self, system: str) -> Path:
        if system == "here":
            return self.mnt / "here"
        if system.startswith("cluster-"):
            return self.mnt / "clusters" / system
        return self.mnt / system / self.tb.bucket

    def proxy(self, system: str) -> FaultProxy:
        return {"s3": self.s3, "cluster-a": self.cluster}[system]

    def fresh_dir(self, system: str) -> Path:
        d = self.root(system) / f"f-{uuid.uuid4().hex[:8]}"
        d.mkdir()
        return d

    def server_bytes(self, system: str, path: Path) -> bytes | None:
        """The object's bytes straight from the server (not through rhfs); None if absent."""
        rel = path.relative_to(self.root(system)).as_posix()
        if system == "cluster-a":
            local = self.tb.cluster_roots["cluster-a"] / rel
            return local.read_bytes() if local.exists() else None
        fs = fsspec_filesystem(self.tb, system)
        key = f"{self.tb.bucket}/{rel}"
        return fs.cat_file(key) if fs.exists(key) else None

    def recovered(self, system: str) -> bool:
        """Wait out the fail-fast window: True once the system answers through the mount again.

        The probe writes and removes a small file: no cache can answer that (a lookup of a
        new name can be answered "absent" from a listing cached within attr_ttl).
        """

        def answers() -> bool:
            probe = self.root(system) / f".probe-{uuid.uuid4().hex}"
            return errno_of(lambda: (probe.write_bytes(b"probe"), probe.unlink())) == 0

        return wait_for(answers, timeout=DEADLINE * 2)


@pytest.fixture(scope="module")
def faultbed(testbed: Testbed, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultBed]:
    d = tmp_path_factory.mktemp("faults")
    sshd = OwnSshd(testbed, "cluster-a", d / "sshd")
    sshd.start()
    s3 = FaultProxy(testbed.ports["moto"])
    cluster = FaultProxy(sshd.port)
    config = write_config(testbed, d, s3_port=s3.port, cluster_ports={"cluster-a": cluster.port})
    try:
        with mounted(config, d / "mnt") as mnt:
            bed = FaultBed(testbed, mnt, config, s3, cluster, sshd)
            for system in ("s3", "cluster-a", *OTHERS):  # clients are made on first use: not in a test
                assert bed.recovered(system), system
            yield bed
    finally:
        s3.close()
        cluster.close()
        sshd.stop()


@pytest.fixture
def bed(faultbed: FaultBed) -> Iterator[FaultBed]:
    """Each test starts and ends with every system healthy."""
    yield faultbed
    faultbed.s3.pass_through()
    faultbed.cluster.pass_through()
    if faultbed.sshd.proc is None:
        faultbed.sshd.start()
    for system in ("s3", "cluster-a"):
        assert faultbed.recovered(system), f"{system} did not come back: {status(faultbed.mnt)[system]}"


def kept_copy(config: Path, tree_path: str) -> Path:
    """The copy the log names for a failed upload of ``tree_path``; it must lie under cache_dir."""
    found = re.findall(rf"{re.escape(tree_path)}\b.*?data kept at (\S+)", log_text(config))
    assert found, f"no log line names kept data for {tree_path}:\n{log_text(config)[-3000:]}"
    kept = Path(found[-1])
    assert kept.is_relative_to(cache_dir(config)), kept
    return kept


def tree_path_kept(config: Path, tree_path: str) -> bool:
    return bool(re.search(rf"{re.escape(tree_path)}\b.*?data kept at ", log_text(config)))


def tree(bed: FaultBed, path: Path) -> str:
    return "/" + path.relative_to(bed.mnt).as_posix()


def assert_others_work(bed: FaultBed) -> None:
    for system in OTHERS:
        p = bed.root(system) / f"alive-{uuid.uuid4().hex[:8]}"
        p.write_bytes(b"still here")
        assert p.read_bytes() == b"still here", system
        assert p.name in os.listdir(p.parent), system
        p.unlink()


# -- outages ------------------------------------------------------------------------------
@pytest.mark.parametrize("fault", ["blackhole", "down"])
@pytest.mark.parametrize("system", ["s3", "cluster-a"])
def test_outage_fails_fast_for_its_subtree_only_then_recovers(bed: FaultBed, system: str, fault: str) -> None:
    d = bed.fresh_dir(system)
    payload = os.urandom(256 << 10)
    (d / "kept.bin").write_bytes(payload)
    time.sleep(ATTR_TTL * 1.3)  # cached attributes and listings expire: every call below reaches the system

    with bed.proxy(system).fault(fault):
        # A hung call in flight must not hold up the rest of the tree.
        hung: list[tuple[int, float]] = []
        stuck = threading.Thread(target=lambda: hung.append(timed_errno(lambda: os.stat(d / "absent"))))
        stuck.start()
        assert_others_work(bed)
        stuck.join(timeout=DEADLINE * 2)
        assert not stuck.is_alive(), "a stat on the failed system hung"
        code, took = hung[0]
        assert code in OUTAGE_ERRNOS, (code, os.strerror(code))
        assert took < DEADLINE

        code, took = timed_errno(lambda: (d / "new.bin").write_bytes(b"never half-written"))
        assert code in OUTAGE_ERRNOS and took < DEADLINE, (code, took)
        code, took = timed_errno(lambda: os.listdir(bed.root(system)))
        assert code in OUTAGE_ERRNOS and took < DEADLINE, (code, took)

        st = status(bed.mnt)
        assert st[system]["health"] == "down", st[system]
        assert st[system]["last_error"] and st[system]["down_since"]
        assert all(st[s]["health"] == "ok" for s in OTHERS if s in st), st

    assert bed.recovered(system)
    assert health(bed.mnt, system) == "ok"
    assert (d / "kept.bin").read_bytes() == payload
    assert not (d / "new.bin").exists()
    assert bed.server_bytes(system, d / "new.bin") is None


@pytest.mark.parametrize(("system", "fault"), [("s3", "down"), ("cluster-a", "blackhole")])
def test_read_cut_mid_file_fails_then_the_same_handle_resumes(bed: FaultBed, system: str, fault: str) -> None:
    d = bed.fresh_dir(system)
    payload = os.urandom(24 * MiB)
    (d / "big.bin").write_bytes(payload)
    proxy = bed.proxy(system)
    proxy.slow(2 * MiB)  # so that read-ahead cannot have fetched the far end before the cut
    with open(d / "big.bin", "rb", buffering=0) as f:
        assert f.read(MiB) == payload[:MiB]
        with proxy.fault(fault):
            f.seek(20 * MiB)
            code, took = timed_errno(lambda: f.read(MiB))
            assert code in OUTAGE_ERRNOS and took < DEADLINE, (code, took)
        assert bed.recovered(system)
        f.seek(0)
        assert f.read() == payload, "the open file did not recover without a reopen"
    assert bed.server_bytes(system, d / "big.bin") == payload


@pytest.mark.parametrize(("system", "fault"), [("s3", "down"), ("s3", "blackhole"), ("cluster-a", "down")])
def test_upload_cut_mid_write_fails_close_and_keeps_the_data(bed: FaultBed, system: str, fault: str) -> None:
    d = bed.fresh_dir(system)
    old, new = os.urandom(64 << 10), os.urandom(3 * MiB)
    target = d / "doc.bin"
    target.write_bytes(old)
    f = open(target, "wb", buffering=0)  # noqa: SIM115 - closed below, and its failure is the point
    f.write(new[:MiB])
    with bed.proxy(system).fault(fault):
        f.write(new[MiB:])  # writes land in the spool: they succeed during the outage
        code, took = timed_errno(f.close)
        assert code in OUTAGE_ERRNOS and took < DEADLINE, (code, took)
    assert kept_copy(bed.config, tree(bed, target)).read_bytes() == new
    assert bed.recovered(system)
    assert bed.server_bytes(system, target) in (old, new), "a partial object became visible"
    assert target.read_bytes() in (old, new)


def test_fsync_fails_during_an_outage_and_close_uploads_after_it(bed: FaultBed) -> None:
    d = bed.fresh_dir("s3")
    target, data = d / "journal.log", os.urandom(512 << 10)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data)
        with bed.s3.fault("down"):
            code, took = timed_errno(lambda: os.fsync(fd))
            assert code in OUTAGE_ERRNOS and took < DEADLINE, (code, took)
            kept = kept_copy(bed.config, tree(bed, target))
            assert kept.read_bytes() == data
        assert bed.recovered("s3")
    finally:
        os.close(fd)  # the spool still holds the bytes: this upload succeeds
    assert bed.server_bytes("s3", target) == data
    assert target.read_bytes() == data


def test_cluster_server_crashed_mid_write_and_restarted(bed: FaultBed) -> None:
    """A real crash: sshd and every session it forked get SIGKILL, then it starts again."""
    d = bed.fresh_dir("cluster-a")
    old, new = os.urandom(100 << 10), os.urandom(2 * MiB)
    readable = os.urandom(24 * MiB)  # larger than read-ahead, so the read below reaches the server
    (d / "w.bin").write_bytes(old)
    (d / "r.bin").write_bytes(readable)
    reader = open(d / "r.bin", "rb", buffering=0)  # noqa: SIM115
    writer = open(d / "w.bin", "wb", buffering=0)  # noqa: SIM115
    try:
        writer.write(new[:MiB])
        bed.cluster.slow(2 * MiB)  # so that read-ahead cannot have fetched the far end before the crash
        assert reader.read(4096) == readable[:4096]
        bed.sshd.stop()
        bed.cluster.pass_through()
        writer.write(new[MiB:])
        code, took = timed_errno(writer.close)
        assert code in OUTAGE_ERRNOS and took < DEADLINE, (code, took)
        reader.seek(20 * MiB + 12345)
        code, took = timed_errno(lambda: reader.read(4096))
        assert code in OUTAGE_ERRNOS and took < DEADLINE, (code, took)
        assert_others_work(bed)
        assert health(bed.mnt, "cluster-a") == "down"

        bed.sshd.start()
        assert bed.recovered("cluster-a")
        assert health(bed.mnt, "cluster-a") == "ok"
        reader.seek(0)
        assert reader.read() == readable
    finally:
        reader.close()
    assert kept_copy(bed.config, tree(bed, d / "w.bin")).read_bytes() == new
    assert bed.server_bytes("cluster-a", d / "w.bin") == old
    leftovers = [p.name for p in (bed.tb.cluster_roots["cluster-a"] / d.name).iterdir()]
    assert sorted(n for n in leftovers if not n.startswith(".rhfs-tmp-")) == ["r.bin", "w.bin"]


# -- copies ---------------------------------------------------------------------------------
def test_server_side_copy_cut_leaves_no_partial_destination(bed: FaultBed) -> None:
    d = bed.fresh_dir("s3")
    payload = os.urandom(2 * MiB)
    (d / "src.bin").write_bytes(payload)
    src = os.open(d / "src.bin", os.O_RDONLY)
    dst = os.open(d / "dst.bin", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        with bed.s3.fault("blackhole"):
            code, took = timed_errno(lambda: os.copy_file_range(src, dst, len(payload)))
            assert code in OUTAGE_ERRNOS and took < DEADLINE, (code, took)
            # The failed copy already said so; close() has nothing more to upload (or fails too).
            code, took = timed_errno(lambda: os.close(dst))
            assert code in (0, *OUTAGE_ERRNOS) and took < DEADLINE, (code, took)
    finally:
        os.close(src)
    assert bed.recovered("s3")
    assert bed.server_bytes("s3", d / "dst.bin") in (None, b"", payload)
    assert bed.server_bytes("s3", d / "src.bin") == payload


def test_streamed_copy_cut_midway_keeps_what_was_copied(bed: FaultBed) -> None:
    """here/ -> s3 is streamed by the reader (cp falls back to read/write on EXDEV)."""
    here, d = bed.fresh_dir("here"), bed.fresh_dir("s3")
    payload = os.urandom(4 * MiB)
    (here / "src.bin").write_bytes(payload)
    src = open(here / "src.bin", "rb")  # noqa: SIM115
    dst = open(d / "copy.bin", "wb")  # noqa: SIM115
    try:
        dst.write(src.read(MiB))
        bed.s3.down()
        dst.write(src.read())
    finally:
        src.close()
    with pytest.raises(OSError) as failure:
        dst.close()
    assert failure.value.errno in OUTAGE_ERRNOS, failure.value
    bed.s3.pass_through()
    assert kept_copy(bed.config, tree(bed, d / "copy.bin")).read_bytes() == payload
    assert bed.recovered("s3")
    assert bed.server_bytes("s3", d / "copy.bin") in (None, payload)


# -- slow and dropping servers ------------------------------------------------------------
def test_slow_server_answers_small_requests_and_times_out_big_ones(bed: FaultBed) -> None:
    here, d = bed.fresh_dir("here"), bed.fresh_dir("s3")
    small, big = os.urandom(16 << 10), os.urandom(3 * MiB)
    (d / "small.bin").write_bytes(small)
    (here / "big.bin").write_bytes(big)
    with bed.s3.fault("slow", 128 << 10):
        time.sleep(ATTR_TTL * 1.3)  # let the attribute cache expire: every call below reaches the server
        assert (d / "small.bin").read_bytes() == small
        # A copy too slow for its time limit fails; its source is untouched.
        started = time.monotonic()
        cp = subprocess.run(
            ["cp", str(here / "big.bin"), str(d / "copied.bin")], capture_output=True, text=True
        )
        took = time.monotonic() - started
        assert cp.returncode != 0 and took < DEADLINE, (cp, took)
        assert "timed out" in cp.stderr or "Input/output error" in cp.stderr, cp.stderr
        assert bed.recovered("s3"), "small requests stopped working on a slow server"
        # So does an upload: close() fails, and the bytes are kept.
        code, took = timed_errno(lambda: (d / "written.bin").write_bytes(big))
        assert code in OUTAGE_ERRNOS and took < DEADLINE, (code, took)
        assert_others_work(bed)
    assert kept_copy(bed.config, tree(bed, d / "written.bin")).read_bytes() == big
    assert bed.recovered("s3")
    assert (here / "big.bin").read_bytes() == big
    assert bed.server_bytes("s3", d / "copied.bin") in (None, big)
    assert bed.server_bytes("s3", d / "written.bin") in (None, big)
    assert (d / "small.bin").read_bytes() == small


def test_slow_upload_longer_than_op_timeout_still_succeeds(bed: FaultBed) -> None:
    """op_timeout bounds a request, not a whole upload: an upload's limit grows with its size."""
    d = bed.fresh_dir("s3")
    data = os.urandom(16 * MiB)
    with bed.s3.fault("slow", 4 * MiB):
        started = time.monotonic()
        (d / "slow.bin").write_bytes(data)
        took = time.monotonic() - started
    assert took > FAST_TIMEOUT, f"the proxy did not slow the upload down enough to test this ({took:.1f}s)"
    assert bed.server_bytes("s3", d / "slow.bin") == data


def test_dropped_connections_fail_cleanly_and_lose_nothing(bed: FaultBed) -> None:
    d = bed.fresh_dir("s3")
    payload, old, new = os.urandom(2 * MiB), os.urandom(1000), os.urandom(2 * MiB)
    (d / "r.bin").write_bytes(payload)
    (d / "w.bin").write_bytes(old)
    f = open(d / "w.bin", "wb", buffering=0)  # noqa: SIM115 - truncated: nothing to fetch
    time.sleep(ATTR_TTL * 1.3)  # attributes expire: the reads below go to the server
    with bed.s3.fault("drop-after", 64 << 10):
        code, took = timed_errno(lambda: (d / "r.bin").read_bytes())
        assert code in OUTAGE_ERRNOS and took < DEADLINE, (code, took)
        f.write(new)
        code, took = timed_errno(f.close)
        assert code in OUTAGE_ERRNOS and took < DEADLINE, (code, took)
    assert bed.s3.drops > 0
    assert kept_copy(bed.config, tree(bed, d / "w.bin")).read_bytes() == new
    assert bed.recovered("s3")
    assert bed.server_bytes("s3", d / "w.bin") in (old, new)
    assert (d / "r.bin").read_bytes() == payload


def test_connections_reset_during_a_read_are_retried(bed: FaultBed) -> None:
    d = bed.fresh_dir("s3")
    payload = os.urandom(12 * MiB)
    (d / "r.bin").write_bytes(payload)
    stop = threading.Event()

    def reset_often() -> None:
        while not stop.wait(0.15):
            bed.s3.reset_all()

    resetter = threading.Thread(target=reset_often)
    resetter.start()
    try:
        got: list[bytes] = []
        code = errno_of(lambda: got.append((d / "r.bin").read_bytes()))
    finally:
        stop.set()
        resetter.join()
    assert code in (0, *OUTAGE_ERRNOS), code
    if code == 0:
        assert got[0] == payload, "a reset connection corrupted a read"
    assert bed.recovered("s3")
    assert (d / "r.bin").read_bytes() == payload


# -- the daemon killed ----------------------------------------------------------------------
WRITER = r"""
import os, sys
path, size, wait = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "wait"
data = bytes(range(256)) * (size // 256)
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
view = memoryview(data)
while view:
    view = view[os.write(fd, view):]
print("written", flush=True)
if wait:
    sys.stdin.readline()
try:
    os.close(fd)
    print("closed 0", flush=True)
except OSError as e:
    print(f"closed {e.errno}", flush=True)
"""


NOT_CONNECTED = (errno.ENOTCONN, errno.ECONNABORTED)  # a request lost with the daemon, or one after


def _writer(path: Path, size: int, wait: bool) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path), str(size), "wait" if wait else "go"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "written"
    return proc


def _close_errno(proc: subprocess.Popen[str]) -> int:
    out, _ = proc.communicate("close\n", timeout=60)
    return int(out.split()[-1])


def _multipart_uploads(tb: Testbed, key: str) -> list[dict[str, object]]:
    fs = fsspec_filesystem(tb, "s3")
    out = fs.call_s3("list_multipart_uploads", Bucket=tb.bucket, Prefix=key)
    return [u for u in out.get("Uploads", []) if u["Key"] == key]


def test_kill_9_mid_write_claims_nothing_shows_nothing_and_recovers(
    testbed: Testbed, tmp_path_factory: pytest.TempPathFactory
) -> None:
    d = tmp_path_factory.mktemp("kill9")
    proxy = FaultProxy(testbed.ports["moto"])
    config = write_config(testbed, d, op_timeout=60, s3_port=proxy.port)
    mnt = d / "mnt"
    prefix = f"kill9-{uuid.uuid4().hex[:8]}"
    spooled_size, uploading_size = 2 * MiB, 40 * MiB  # the second goes multipart (>= 32 MiB)
    expected = {n: bytes(range(256)) * (n // 256) for n in (spooled_size, uploading_size)}
    try:
        with mounted(config, mnt):
            bucket = mnt / "s3" / testbed.bucket
            (bucket / prefix).mkdir()
            spooled = _writer(bucket / prefix / "spooled.bin", spooled_size, wait=True)
            proxy.slow(4 * MiB)
            uploading = _writer(bucket / prefix / "uploading.bin", uploading_size, wait=False)
            key = f"{prefix}/uploading.bin"
            assert wait_for(lambda: bool(_multipart_uploads(testbed, key)), timeout=30), "no upload started"

            os.kill(daemon_pid(mnt), 9)
            assert _close_errno(spooled) in NOT_CONNECTED
            assert _close_errno(uploading) in NOT_CONNECTED
            proxy.pass_through()
            s3 = fsspec_filesystem(testbed, "s3")
            for name in ("spooled.bin", "uploading.bin"):
                assert not s3.exists(f"{testbed.bucket}/{prefix}/{name}"), f"{name} became visible"
            assert _multipart_uploads(testbed, key), "the test needs an orphaned multipart upload"

            # The next start: the stale mount is cleaned, orphans aborted, the data kept and named.
            again = subprocess.run(
                [RHFS, "mount", str(mnt), "--config", str(config)], capture_output=True, text=True, timeout=90
            )
            assert again.returncode == 0, again.stderr
            assert wait_for(lambda: not _multipart_uploads(testbed, key), timeout=30), "orphan not aborted"
            for name, size in (("spooled.bin", spooled_size), ("uploading.bin", uploading_size)):
                tree_path = f"/s3/{testbed.bucket}/{prefix}/{name}"
                assert wait_for(lambda t=tree_path: tree_path_kept(config, t), timeout=30), name  # background
                kept = kept_copy(config, tree_path)
                assert kept.read_bytes() == expected[size], name
                assert errno_of(lambda n=name: os.stat(bucket / prefix / n)) == errno.ENOENT
            assert status(mnt)["s3"]["health"] == "ok"

            # rhfs failed: both are listed as unfinished, and a retry asked for uploads one.
            listed = subprocess.run(
                [RHFS, "failed", "list", "--json", "--config", str(config)], capture_output=True, text=True
            )
            kept_now = {k["target"]: k for k in json.loads(listed.stdout)}
            spooled_path = f"/s3/{testbed.bucket}/{prefix}/spooled.bin"
            for name in ("spooled.bin", "uploading.bin"):
                entry = kept_now[f"/s3/{testbed.bucket}/{prefix}/{name}"]
                assert (entry["reason"], entry["retryable"]) == ("unfinished", True), entry
            argv = [RHFS, "failed", "retry", spooled_path, "--config", str(config)]
            retried = subprocess.run(argv, capture_output=True, text=True)
            assert retried.returncode == 0 and f"uploaded {spooled_path}" in retried.stdout, retried
            assert s3.cat_file(f"{testbed.bucket}/{prefix}/spooled.bin") == expected[spooled_size]
    finally:
        proxy.close()


def _upload_leftovers(folder: Path) -> list[str]:
    return [n for n in os.listdir(folder) if n.startswith(".rhfs-tmp-")]


def test_kill_9_mid_cluster_upload_leaves_no_temporary_file_after_the_next_start(
    testbed: Testbed, tmp_path_factory: pytest.TempPathFactory
) -> None:
    d = tmp_path_factory.mktemp("kill9c")
    proxy = FaultProxy(testbed.ports["cluster-a"])
    config = write_config(testbed, d, op_timeout=60, cluster_ports={"cluster-a": proxy.port})
    mnt = d / "mnt"
    folder = f"kill9c-{uuid.uuid4().hex[:8]}"
    remote = testbed.cluster_roots["cluster-a"] / folder  # the cluster's disk, seen directly
    size = 8 * MiB
    try:
        with mounted(config, mnt):
            (mnt / "clusters" / "cluster-a" / folder).mkdir()
            proxy.slow(1 * MiB)
            writer = _writer(mnt / "clusters" / "cluster-a" / folder / "big.bin", size, wait=False)
            assert wait_for(lambda: bool(_upload_leftovers(remote)), timeout=30), "no upload started"
            os.kill(daemon_pid(mnt), 9)
            assert _close_errno(writer) in NOT_CONNECTED
            proxy.pass_through()
            assert _upload_leftovers(remote), "the test needs a temporary file left by the killed upload"
            assert not (remote / "big.bin").exists(), "half a file became visible"

            again = subprocess.run(
                [RHFS, "mount", str(mnt), "--config", str(config)], capture_output=True, text=True, timeout=90
            )
            assert again.returncode == 0, again.stderr
            assert wait_for(lambda: not _upload_leftovers(remote), timeout=30), _upload_leftovers(remote)
            tree_path = f"/clusters/cluster-a/{folder}/big.bin"
            assert wait_for(lambda: tree_path_kept(config, tree_path), timeout=30)
            assert kept_copy(config, tree_path).read_bytes() == bytes(range(256)) * (size // 256)
            assert not (remote / "big.bin").exists()
    finally:
        proxy.close()


# -- a full disk on the daemon host ----------------------------------------------------------
def test_a_full_disk_fails_copies_and_writes_and_never_stores_a_short_file(
    testbed: Testbed, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Writes to a full disk may be partial before they fail: rhfs must never keep the part.

    ``prlimit --fsize`` on the daemon is a full disk that needs no mount: a write past the
    limit is cut short, and the next one fails with EFBIG.
    """
    d = tmp_path_factory.mktemp("full-disk")
    here_root = d / "here"
    here_root.mkdir()

    def private_here(cfg: dict[str, object]) -> None:
        cfg["here"] = {"root": str(here_root)}  # type: ignore[index]

    config = write_config(testbed, d, op_timeout=30, edit=private_here)
    payload = os.urandom(3 * MiB)
    limit = MiB + 12345
    with mounted(config, d / "mnt") as mnt:
        s3, gs, here = (mnt / "s3" / testbed.bucket, mnt / "gs" / testbed.bucket, mnt / "here")
        top = f"full-{uuid.uuid4().hex[:8]}"
        for root in (s3, gs):
            (root / top).mkdir()
        (s3 / top / "src.bin").write_bytes(payload)
        pid = daemon_pid(mnt)
        subprocess.run(["prlimit", f"--pid={pid}", f"--fsize={limit}:unlimited"], check=True)
        try:
            # store -> here/ (downloaded by the daemon) and store -> another store (relayed through
            # a spool): each must fail, and leave no destination at all.
            for dst in (here / "copy.bin", gs / top / "copy.bin"):
                cp = subprocess.run(
                    ["cp", str(s3 / top / "src.bin"), str(dst)], capture_output=True, text=True
                )
                assert cp.returncode != 0, f"cp to {dst} claimed success on a full disk"
                assert read_or_errno(dst) in (errno.ENOENT, payload), f"{dst}: a short copy was kept"
            assert [p.name for p in here_root.iterdir()] == []
            # A write into an existing file first fetches it into the spool, which must not be cut short.
            f = open(s3 / top / "src.bin", "r+b", buffering=0)  # noqa: SIM115
            code = errno_of(lambda: f.write(b"!"))
            close = errno_of(f.close)
            assert errno.EFBIG in (code, close), (code, close)
        finally:
            subprocess.run(["prlimit", f"--pid={pid}", "--fsize=unlimited:unlimited"], check=True)
        assert bed_bytes(testbed, f"{top}/src.bin") in (payload, b"!" + payload[1:])
        assert not fsspec_filesystem(testbed, "gs").exists(f"{testbed.bucket}/{top}/copy.bin")


def read_or_errno(path: Path) -> bytes | int:
    try:
        return path.read_bytes()
    except OSError as e:
        return e.errno or -1


def bed_bytes(tb: Testbed, key: str) -> bytes:
    data: bytes = fsspec_filesystem(tb, "s3").cat_file(f"{tb.bucket}/{key}")
    return data
