#!/usr/bin/env python3
"""A bounded soak of a real rhfs mount: a mixed workload on every system, checked byte for byte.

    python scripts/soak.py                      # 10 minutes on a testbed of its own
    python scripts/soak.py --duration 120 --threads 6
    python scripts/soak.py --config my.toml     # an existing config (its systems must be writable)
    python scripts/soak.py --chaos              # S3 behind tests/faultproxy.py, faulted now and then

Each worker thread owns a directory on every system and loops until the deadline over:
write a new file, overwrite one, read one back and compare its SHA-256, copy within a system
and across systems with ``cp``, rename, delete, list (every file the worker made must be
listed), and stat. A model of what each file must hold is kept in memory; bytes are random.

Every ``--report-every`` seconds one line gives ops, errors, bytes written and verified, and
the daemon's RSS. At the end every file left is verified again, and the summary gives ops by
kind, errors by errno name, corruptions (a read that did not match: must be 0), bytes
verified, the daemon's RSS over time, and the warnings and errors in its log.

With ``--chaos``, S3 is reached through a fault proxy that alternates healthy minutes with
short outages (blackhole, refused connections, a slow link). Failures on S3 are then
expected and counted; a write that failed is not in the model (its bytes are under
``cache_dir/failed``); corruption is still never allowed.

Exit status: 0 if nothing was corrupt and (without --chaos) nothing failed; 1 otherwise.
Not part of CI.
"""

from __future__ import annotations

import argparse
import collections
import errno
import hashlib
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import tomli_w

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

SYSTEMS = ("here", "s3", "gs", "azure", "cluster-a")
OPS = {"write": 18, "overwrite": 8, "read": 30, "copy": 8, "rename": 6, "delete": 8, "list": 12, "stat": 10}
MAX_LIVE_BYTES = 512 << 20  # the model's total size; past it, deletes are preferred


@dataclass
class Totals:
    lock: threading.Lock = field(default_factory=threading.Lock)
    ops: collections.Counter[str] = field(default_factory=collections.Counter)
    errors: collections.Counter[str] = field(default_factory=collections.Counter)
    error_samples: list[str] = field(default_factory=list)
    corrupt: list[str] = field(default_factory=list)
    bytes_written: int = 0
    bytes_verified: int = 0
    live_bytes: int = 0

    def op(self, kind: str) -> None:
        with self.lock:
            self.ops[kind] += 1

    def error(self, kind: str, e: OSError, path: Path) -> None:
        name = errno.errorcode.get(e.errno or 0, str(e.errno))
        with self.lock:
            self.errors[f"{kind}:{name}"] += 1
            if len(self.error_samples) < 20:
                self.error_samples.append(f"{kind} {path}: {e}")


def system_root(mnt: Path, system: str, bucket: str) -> Path:
    if system == "here":
        return mnt / "here"
    if system.startswith("cluster-"):
        return mnt / "clusters" / system
    return mnt / system / bucket


class Worker(threading.Thread):
    def __init__(self, n: int, dirs: dict[str, Path], totals: Totals, deadline: float, max_size: int) -> None:
        super().__init__(name=f"soak-{n}", daemon=True)
        self.rng = random.Random(n * 7919 + int(time.time()))
        self.dirs, self.totals, self.deadline, self.max_size = dirs, totals, deadline, max_size
        self.files: dict[Path, str] = {}  # path -> sha256 of what it must hold
        self.sizes: dict[Path, int] = {}
        self.history: dict[Path, list[str]] = collections.defaultdict(list)  # for a corrupt file's report
        self.counter = 0

    # -- helpers -------------------------------------------------------------------------
    def _payload(self) -> bytes:
        size = min(int(self.rng.paretovariate(1.2) * 16384), self.max_size)
        return self.rng.randbytes(size)

    def _new_path(self, system: str | None = None) -> Path:
        self.counter += 1
        system = system or self.rng.choice(list(self.dirs))
        return self.dirs[system] / f"f{self.counter:06d}.bin"

    def _remember(self, path: Path, data: bytes) -> None:
        with self.totals.lock:
            self.totals.live_bytes += len(data) - self.sizes.get(path, 0)
        self.files[path] = hashlib.sha256(data).hexdigest()
        self.sizes[path] = len(data)

    def _forget(self, path: Path) -> None:
        self.files.pop(path, None)
        with self.totals.lock:
            self.totals.live_bytes -= self.sizes.pop(path, 0)

    def _note(self, path: Path, event: str) -> None:
        self.history[path].append(f"{time.strftime('%H:%M:%S')} {event}")
        del self.history[path][:-8]

    def _corrupt(self, path: Path, what: str) -> None:
        with self.totals.lock:
            self.totals.corrupt.append(f"{path}: {what}; history: {self.history.get(path, [])}")

    def _pick(self) -> Path | None:
        return self.rng.choice(list(self.files)) if self.files else None

    def verify(self, path: Path) -> None:
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() != self.files[path]:
            self._corrupt(path, f"{len(data)} bytes, expected {self.sizes[path]}")
            return
        with self.totals.lock:
            self.totals.bytes_verified += len(data)

    # -- operations ----------------------------------------------------------------------
    def do_write(self, path: Path | None = None) -> None:
        path = path or self._new_path()
        data = self._payload()
        try:
            path.write_bytes(data)
        except OSError as e:
            self._note(path, f"write failed {e.errno}")
            self._forget(path)  # a failed close: old or new content; its bytes are kept under failed/
            raise
        self._note(path, f"written {len(data)}")
        self._remember(path, data)
        with self.totals.lock:
            self.totals.bytes_written += len(data)

    def do_overwrite(self) -> None:
        path = self._pick()
        if path is not None:
            self.do_write(path)

    def do_read(self) -> None:
        path = self._pick()
        if path is not None:
            self.verify(path)

    def do_copy(self) -> None:
        src = self._pick()
        if src is None:
            return
        dst = self._new_path()
        result = subprocess.run(["cp", str(src), str(dst)], capture_output=True, text=True, timeout=600)
        if result.returncode != 0:
            code = errno.EIO if "Input/output" in result.stderr else errno.ETIMEDOUT
            self._note(dst, f"copy failed {code}")
            raise OSError(code, result.stderr.strip()[-200:], str(dst))
        self._note(dst, f"copied from {src.name}")
        self.files[dst], self.sizes[dst] = self.files[src], self.sizes[src]
        with self.totals.lock:
            self.totals.live_bytes += self.sizes[src]

    def do_rename(self) -> None:
        src = self._pick()
        if src is None:
            return
        dst = self._new_path(next(s for s, d in self.dirs.items() if d == src.parent))
        try:
            os.rename(src, dst)
        except OSError as e:
            # A failed rename may have happened in full, in part (a store copies, then deletes) or
            # not at all: neither name can be expected any more.
            self._note(src, f"rename to {dst.name} failed {e.errno}")
            self._forget(src)
            raise
        self._note(src, f"renamed to {dst.name}")
        self._note(dst, f"renamed from {src.name}")
        self.files[dst], self.sizes[dst] = self.files.pop(src), self.sizes.pop(src)

    def do_delete(self) -> None:
        path = self._pick()
        if path is not None:
            try:
                path.unlink()
            except OSError as e:
                self._note(path, f"unlink failed {e.errno}")  # the DELETE may still have happened
                self._forget(path)
                raise
            self._note(path, "unlinked")
            self._forget(path)

    def do_list(self) -> None:
        system = self.rng.choice(list(self.dirs))
        listed = set(os.listdir(self.dirs[system]))
        missing = [p.name for p in self.files if p.parent == self.dirs[system] and p.name not in listed]
        for name in missing[:3]:
            self._corrupt(self.dirs[system] / name, "not listed")

    def do_stat(self) -> None:
        path = self._pick()
        if path is not None and os.stat(path).st_size != self.sizes[path]:
            self._corrupt(path, f"stat size differs from {self.sizes[path]}")

    def run(self) -> None:
        kinds, weights = list(OPS), list(OPS.values())
        while time.monotonic() < self.deadline:
            kind = self.rng.choices(kinds, weights)[0]
            if self.totals.live_bytes > MAX_LIVE_BYTES and kind in ("write", "copy"):
                kind = "delete"
            try:
                getattr(self, f"do_{kind}")()
            except OSError as e:
                self.totals.error(kind, e, Path(e.filename or "?"))
            self.totals.op(kind)


def rss_kib(pid: int | None) -> int:
    if pid is None:
        return 0
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def chaos(proxy: object, stop: threading.Event, log: list[str]) -> None:
    """Healthy for 40-80 s, then 5-15 s of one fault, over and over."""
    rng = random.Random(1)
    while not stop.wait(rng.uniform(40, 80)):
        fault = rng.choice(["blackhole", "down", "slow"])
        log.append(f"{time.strftime('%H:%M:%S')} s3 {fault}")
        with proxy.fault(fault, 256 << 10 if fault == "slow" else 0):  # type: ignore[attr-defined]
            stop.wait(rng.uniform(5, 15))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=600, help="seconds of workload (default 600)")
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--max-size", type=int, default=8 << 20, help="largest file, bytes (default 8 MiB)")
    ap.add_argument("--report-every", type=float, default=30)
    ap.add_argument("--config", help="an rhfs config to mount (default: start a testbed of our own)")
    ap.add_argument("--systems", default=",".join(SYSTEMS))
    ap.add_argument("--chaos", action="store_true", help="fault S3 now and then through a proxy")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    args = ap.parse_args()

    from testbed import start_testbed, stop_testbed

    from rhfs import mountpoint as mp

    work = Path(tempfile.mkdtemp(prefix="rhfs-soak-"))
    testbed_dir = None
    proxy = None
    if args.config:
        config = Path(args.config)
        raw = tomllib.loads(config.read_text())
        bucket = next(iter(next(iter(raw.get("stores", {}).values()), {}).get("buckets", ["rhfs-test"])))
    else:
        testbed_dir = work / "testbed"
        tb = start_testbed(testbed_dir)
        raw = tomllib.loads(tb.config_path.read_text())
        raw["mount"]["cache_dir"] = str(work / "cache")
        if args.chaos:
            from faultproxy import FaultProxy

            proxy = FaultProxy(tb.ports["moto"])
            raw["stores"]["s3"]["options"]["endpoint_url"] = f"http://127.0.0.1:{proxy.port}"
            raw["mount"]["op_timeout"] = 5.0
        config = work / "rhfs.toml"
        config.write_bytes(tomli_w.dumps(raw).encode())
        config.chmod(0o600)
        bucket = tb.bucket
    cache_dir = Path(os.path.expanduser(raw.get("mount", {}).get("cache_dir", "~/.cache/rhfs")))
    mnt = work / "mnt"
    mnt.mkdir()
    mounted = subprocess.run(
        ["rhfs", "mount", str(mnt), "--config", str(config)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        print(mounted.stdout, mounted.stderr, file=sys.stderr)
        return 1
    pid = mp.daemon_pid(str(mnt))
    log_start = (cache_dir / "rhfs.log").stat().st_size if (cache_dir / "rhfs.log").exists() else 0
    totals = Totals()
    systems = [s for s in args.systems.split(",") if s]
    stop = threading.Event()
    chaos_log: list[str] = []
    rss: list[tuple[float, int]] = []
    started = time.monotonic()
    try:
        workers = []
        for n in range(args.threads):
            dirs = {s: system_root(mnt, s, bucket) / f"soak-{os.getpid()}-{n}" for s in systems}
            for d in dirs.values():
                d.mkdir()
            workers.append(Worker(n, dirs, totals, started + args.duration, args.max_size))
        if proxy is not None:
            threading.Thread(target=chaos, args=(proxy, stop, chaos_log), daemon=True).start()
        for w in workers:
            w.start()
        print(f"soak: {args.threads} threads on {', '.join(systems)} for {args.duration:.0f}s; mount {mnt}")
        print(
            f"{'t':>6} {'ops':>8} {'errors':>7} {'written':>12} {'verified':>12} {'live':>12} {'rss_kib':>9}"
        )
        while any(w.is_alive() for w in workers):
            for w in workers:
                w.join(timeout=max(0.0, args.report_every / len(workers)))
            t = time.monotonic() - started
            if not rss or t - rss[-1][0] >= args.report_every or not any(w.is_alive() for w in workers):
                rss.append((t, rss_kib(pid)))
                with totals.lock:
                    print(
                        f"{t:6.0f} {sum(totals.ops.values()):8d} {sum(totals.errors.values()):7d} "
                        f"{totals.bytes_written:12d} {totals.bytes_verified:12d} {totals.live_bytes:12d} "
                        f"{rss[-1][1]:9d}",
                        flush=True,
                    )
        stop.set()
        if proxy is not None:
            proxy.pass_through()
            time.sleep(3)
        final_checked = 0
        for w in workers:
            for path in list(w.files):
                try:
                    w.verify(path)
                    final_checked += 1
                except OSError as e:
                    totals.error("final-read", e, path)
                    w._corrupt(path, f"unreadable at the end: {e}")
        for w in workers:
            for d in w.dirs.values():
                shutil.rmtree(d, ignore_errors=True)
    finally:
        subprocess.run(["rhfs", "unmount", str(mnt)], capture_output=True)
        if proxy is not None:
            proxy.close()
        if testbed_dir is not None:
            stop_testbed(testbed_dir)
    log_tail = ""
    if (cache_dir / "rhfs.log").exists():
        with open(cache_dir / "rhfs.log", errors="replace") as f:
            f.seek(log_start)
            log_tail = f.read()
    warnings = sum(" WARNING " in ln for ln in log_tail.splitlines())
    log_errors = sum(" ERROR " in ln for ln in log_tail.splitlines())
    elapsed = time.monotonic() - started

    print("\n== soak summary ==")
    print(
        f"duration {elapsed:.0f}s, {args.threads} threads, systems {', '.join(systems)}, chaos {args.chaos}"
    )
    print(f"ops {sum(totals.ops.values())} ({sum(totals.ops.values()) / elapsed:.1f}/s): {dict(totals.ops)}")
    print(f"errors {sum(totals.errors.values())}: {dict(totals.errors)}")
    for sample in totals.error_samples[:5]:
        print(f"  e.g. {sample}")
    print(f"corrupt {len(totals.corrupt)}: {totals.corrupt[:5]}")
    print(f"bytes written {totals.bytes_written}, bytes verified {totals.bytes_verified}")
    print(f"files verified at the end {final_checked}")
    rss_line = ", ".join(f"{t:.0f}s:{kib // 1024}MiB" for t, kib in rss)
    print(f"daemon rss over time: {rss_line}")
    if rss:
        print(
            f"daemon rss min {min(k for _, k in rss) // 1024} MiB, max {max(k for _, k in rss) // 1024} MiB"
        )
    print(f"daemon log: {warnings} warnings, {log_errors} errors")
    if chaos_log:
        print(f"faults injected: {chaos_log}")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    failed = bool(totals.corrupt) or (bool(totals.errors) and not args.chaos)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
