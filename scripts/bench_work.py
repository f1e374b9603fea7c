"""The benchmark's workloads, each measured for one contender.

A contender is either a :class:`bench_env.Mount` (rhfs, rclone, s3fs-fuse: measured
through the kernel with ordinary file calls and coreutils) or ``None`` for the direct
fsspec call (s3fs in this process). Every workload returns ``{metric: value}``.

Cold means a fresh mount (see :mod:`bench_env`): the caller mounts before a session.
"Counted until in the bucket" polls the server with a separate client; a copy counts
as landed at the start of the first check that finds it complete.

A ``cp``, an ``ls -l`` or a ``pandas.read_parquet`` still running after ``Ctx.timeout``
seconds is cut short (pandas runs in a child process, which is killed); its metric is
then the time it had taken, a lower bound, and is named in ``Ctx.timed_out``.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bench_env import BUCKET, MiB, Mount, RhfsMount, Servers, drop, log, proc_io, rss_bytes

READ_BUFFER = MiB
RANDOM_READS = 200
RANDOM_SIZE = 64 << 10


@dataclass
class Ctx:
    servers: Servers
    made: dict[str, Any]
    mount: Mount | None  # None: the direct fsspec call
    tag: str  # unique per contender and repeat, for keys that writes create
    timeout: float = 30.0  # a cp, ls or parquet read slower than this is cut short (a lower bound)
    timed_out: set[str] = field(default_factory=set)  # metrics that are lower bounds
    watch: Callable[[int, str], None] = field(default=lambda pid, role: None)  # a process to profile

    @property
    def direct(self) -> bool:
        return self.mount is None


def _read_all(path: str) -> int:
    buf = bytearray(READ_BUFFER)
    view = memoryview(buf)
    total = 0
    fd = os.open(path, os.O_RDONLY)
    try:
        while True:
            n = os.readv(fd, [view])
            if n == 0:
                return total
            total += n
    finally:
        os.close(fd)


# ------------------------------------------------------------------------------------ reads


def seq(ctx: Ctx) -> dict[str, float]:
    """Sequential read of seq.bin, cold, from each server."""
    out = {}
    for server in ("moto", "s3r"):
        size = ctx.made["seq"]
        started = time.perf_counter()
        if ctx.mount is None:
            got = len(ctx.servers.fs(server).cat_file(f"{BUCKET}/seq.bin"))
        else:
            got = _read_all(ctx.mount.path(server, "seq.bin"))
        elapsed = time.perf_counter() - started
        assert got == size, (got, size)
        out[f"seq_{server}_MiBps"] = size / MiB / elapsed
    return out


def random_reads(ctx: Ctx) -> dict[str, float]:
    """RANDOM_READS preads of RANDOM_SIZE at seeded offsets of rand.bin on s3rver, open to close."""
    size = ctx.made["seq"]
    rng = random.Random(6)
    offsets = [rng.randrange(0, size - RANDOM_SIZE) & ~4095 for _ in range(RANDOM_READS)]
    before = _daemon_bytes(ctx, "s3r")
    started = time.perf_counter()
    if ctx.mount is None:
        fs = ctx.servers.fs("s3r")
        for off in offsets:
            assert len(fs.cat_file(f"{BUCKET}/rand.bin", start=off, end=off + RANDOM_SIZE)) == RANDOM_SIZE
    else:
        fd = os.open(ctx.mount.path("s3r", "rand.bin"), os.O_RDONLY)
        try:
            for off in offsets:
                assert len(os.pread(fd, RANDOM_SIZE, off)) == RANDOM_SIZE
        finally:
            os.close(fd)
    elapsed = time.perf_counter() - started
    out = {"random_per_s": RANDOM_READS / elapsed}
    after = _daemon_bytes(ctx, "s3r")
    if before is not None and after is not None:
        out["random_fetched_MiB"] = (after - before) / MiB
    return out


def ls(ctx: Ctx) -> dict[str, float]:
    """``ls -l`` of a directory of ls_objects objects: cold (first after mount), then warm."""
    out: dict[str, float] = {}
    if ctx.mount is None:
        fs = ctx.servers.fs("moto")
        for phase in ("cold", "warm"):
            started = time.perf_counter()
            n = len(fs.ls(f"{BUCKET}/ls", detail=True, refresh=True))
            out[f"ls_{phase}_s"] = time.perf_counter() - started
            assert n == ctx.made["ls_objects"], n
        return out
    path = ctx.mount.path("moto", "ls")
    ops_before = _rhfs_ops(ctx)
    for phase in ("cold", "warm"):
        started = time.perf_counter()
        listing = _run_cut(["ls", "-l", path], ctx.timeout)
        if listing is None:
            ctx.timed_out.add(f"ls_{phase}_s")
            out[f"ls_{phase}_s"] = ctx.timeout
            return out
        out[f"ls_{phase}_s"] = time.perf_counter() - started
        lines = listing.count("\n") - 1  # "total N"
        assert lines == ctx.made["ls_objects"], lines
    ops_after = _rhfs_ops(ctx)
    if ops_before is not None and ops_after is not None:
        for op in ("getattr", "readdir_attrs", "getxattr", "listxattr"):
            out[f"ls_fuse_{op}"] = ops_after.get(op, 0) - ops_before.get(op, 0)
    return out


PARQUET_CHILD = """
import json, sys, time
import pandas as pd
path, options, rows = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3])
print("ready", flush=True)
sys.stdin.readline()
for phase in ("cold", "warm"):
    started = time.perf_counter()
    frame = pd.read_parquet(path, storage_options=options)
    took = time.perf_counter() - started
    assert len(frame) == rows, (len(frame), rows)
    print(phase, took, flush=True)
"""


def parquet(ctx: Ctx) -> dict[str, float]:
    """``pandas.read_parquet`` of data.parquet, cold then warm, in a child that has imported pandas."""
    if ctx.mount is None:
        path, options = f"s3://{BUCKET}/data.parquet", ctx.servers.storage_options("moto")
    else:
        path, options = ctx.mount.path("moto", "data.parquet"), None
    argv = [sys.executable, "-c", PARQUET_CHILD, path, json.dumps(options), str(ctx.made["parquet_rows"])]
    child = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert child.stdin is not None and child.stdout is not None
    if child.stdout.readline().strip() != "ready":
        child.kill()
        raise RuntimeError(f"the pandas child failed: {child.communicate()}")
    ctx.watch(child.pid, "pandas")
    child.stdin.write("go\n")
    child.stdin.flush()
    cut = False
    try:
        printed, _ = child.communicate(timeout=ctx.timeout)
    except subprocess.TimeoutExpired:
        child.kill()
        try:
            printed, _ = child.communicate(timeout=5)
        except subprocess.TimeoutExpired:  # still in a FUSE read: the unmount ends it
            printed = ""
        cut = True
    out = {
        f"parquet_{phase}_s": float(took) for phase, took in (line.split() for line in printed.splitlines())
    }
    if cut:
        phase = "warm" if "parquet_cold_s" in out else "cold"
        out[f"parquet_{phase}_s"] = ctx.timeout - out.get("parquet_cold_s", 0.0)
        ctx.timed_out.add(f"parquet_{phase}_s")
    elif child.returncode != 0 or len(out) != 2:
        raise RuntimeError(f"the pandas child exited with {child.returncode}")
    return out


def rss(ctx: Ctx) -> dict[str, float]:
    """The daemon's peak RSS while big.bin is read sequentially from s3rver."""
    if ctx.mount is None:
        return {}
    pid = ctx.mount.daemon_pid("s3r")
    peak = [rss_bytes(pid)]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], rss_bytes(pid))
            done.wait(0.01)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.perf_counter()
    try:
        got = _read_all(ctx.mount.path("s3r", "big.bin"))
    finally:
        done.set()
        sampler.join()
    elapsed = time.perf_counter() - started
    assert got == ctx.made["big_s3r"]
    return {"rss_peak_MB": peak[0] / 1e6, "rss_read_MiBps": got / MiB / elapsed}


# ------------------------------------------------------------------------------------ writes


def cpr(ctx: Ctx) -> dict[str, float]:
    """``cp -r`` of small_files x 4 KiB into the moto bucket, until all are in the bucket."""
    src = ctx.made["small_dir"]
    count = ctx.made["small_files"]
    prefix = f"cpr-{ctx.tag}"
    checker = ctx.servers.fs("moto")
    started = time.perf_counter()
    if ctx.mount is None:
        ctx.servers.fs("moto").put(src.rstrip("/") + "/", f"{BUCKET}/{prefix}/", recursive=True)
    elif not _cp(ctx, "cpr_s", "-r", src, ctx.mount.path("moto", prefix)):
        return {"cpr_s": ctx.timeout}
    returned = time.perf_counter() - started

    def landed() -> bool:
        found = checker.find(f"{BUCKET}/{prefix}", detail=True)
        files = [v for k, v in found.items() if k.rsplit("/", 1)[-1].startswith("f")]  # no markers
        return len(files) == count and all(v["size"] == 4096 for v in files)

    landed_at = _poll(landed, started + ctx.timeout)
    if landed_at is None:
        ctx.timed_out.add("cpr_s")
        return {"cpr_s": ctx.timeout, "cpr_returned_s": returned}
    return {"cpr_s": landed_at - started, "cpr_returned_s": returned}


def copy(ctx: Ctx) -> dict[str, float]:
    """``cp`` of seq.bin and big.bin to new keys in the same bucket, until in the bucket.

    The copies are deleted afterwards (each holds 256 MiB or 1 GiB of moto's disk); the
    small files of :func:`cpr` are kept (4 MB a run).
    """
    try:
        return _copy(ctx)
    finally:
        dropping = time.monotonic()
        drop(ctx.servers.fs("moto"), BUCKET, [f"{label}-{ctx.tag}" for label in ("copy256", "copy1g")])
        log(f"deleted the copies in {time.monotonic() - dropping:.1f}s")


def _copy(ctx: Ctx) -> dict[str, float]:
    out = {}
    checker = ctx.servers.fs("moto")
    for label, key, size in (("copy256", "seq.bin", ctx.made["seq"]), ("copy1g", "big.bin", ctx.made["big"])):
        dst = f"{label}-{ctx.tag}"
        before = _daemon_bytes(ctx, "moto")
        rchar = proc_io(ctx.mount.daemon_pid("moto"))["rchar"] if isinstance(ctx.mount, RhfsMount) else 0
        started = time.perf_counter()
        if ctx.mount is None:
            ctx.servers.fs("moto").copy(f"{BUCKET}/{key}", f"{BUCKET}/{dst}")
        elif not _cp(ctx, f"{label}_s", ctx.mount.path("moto", key), ctx.mount.path("moto", dst)):
            out[f"{label}_s"] = ctx.timeout
            continue
        returned = time.perf_counter() - started

        def landed(dst: str = dst, size: int = size) -> bool:
            try:
                return bool(checker.info(f"{BUCKET}/{dst}", refresh=True)["size"] == size)
            except FileNotFoundError:
                return False

        landed_at = _poll(landed, started + ctx.timeout)
        if landed_at is None:
            ctx.timed_out.add(f"{label}_s")
        out[f"{label}_s"] = ctx.timeout if landed_at is None else landed_at - started
        out[f"{label}_returned_s"] = returned
        after = _daemon_bytes(ctx, "moto")
        out[f"{label}_daemon_MiB"] = 0.0 if ctx.mount is None else (after or 0) / MiB - (before or 0) / MiB
        if isinstance(ctx.mount, RhfsMount):  # for the record: rchar also counts module and data files read
            out[f"{label}_daemon_rchar_MiB"] = (proc_io(ctx.mount.daemon_pid("moto"))["rchar"] - rchar) / MiB
    return out


# ------------------------------------------------------------------------------------ helpers


def _cp(ctx: Ctx, metric: str, *args: str) -> bool:
    """Run cp; False (and ``metric`` marked as a lower bound) if it took longer than the timeout."""
    if _run_cut(["cp", *args], ctx.timeout) is None:
        ctx.timed_out.add(metric)
        return False
    return True


def _run_cut(argv: list[str], timeout: float) -> str | None:
    """Run a command and return its output; None if it ran past ``timeout``. Then it is killed,
    but not waited for long: a process in a FUSE call dies only when the daemon answers,
    and the session's unmount ends that call."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.communicate(timeout=1)
        return None
    if proc.returncode:
        raise subprocess.CalledProcessError(proc.returncode, argv)
    return output


def _poll(check: Callable[[], bool], deadline: float) -> float | None:
    """The perf_counter time at which a successful check began; None if none did by ``deadline``."""
    while True:
        began = time.perf_counter()
        if check():
            return began
        if began > deadline:
            return None
        time.sleep(0.05)


def _daemon_bytes(ctx: Ctx, server: str) -> int | None:
    """Bytes through the daemon serving ``server``.

    Peers: ``read()`` bytes of the daemon process (``rchar``: FUSE writes reaching it and
    socket reads made with read()). rhfs: bytes it read from, wrote to and relayed for
    that store, by its own counters: Python's socket calls are not in ``rchar``, and a
    ``cp`` that fell back to reads and writes through the mount is read from the store
    and written to it. (rhfs's ``rchar`` is kept beside it, in ``*_daemon_rchar_MiB``:
    it also counts the modules and botocore's service files a first copy loads.)
    """
    if ctx.mount is None:
        return None
    if isinstance(ctx.mount, RhfsMount):
        system = ctx.mount.stats()["systems"].get(server, {})
        return int(sum(system.get(k, 0) for k in ("bytes_read", "bytes_written", "bytes_relayed")))
    return proc_io(ctx.mount.daemon_pid(server))["rchar"]


def _rhfs_ops(ctx: Ctx) -> dict[str, int] | None:
    if not isinstance(ctx.mount, RhfsMount):
        return None
    return dict(ctx.mount.stats()["ops"])


READ_WORKLOADS: dict[str, Callable[[Ctx], dict[str, float]]] = {
    "seq": seq,
    "random": random_reads,
    "ls": ls,
    "parquet": parquet,
    "rss": rss,
}
WRITE_WORKLOADS: dict[str, Callable[[Ctx], dict[str, float]]] = {"cpr": cpr, "copy": copy}
