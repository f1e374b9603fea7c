"""py-spy profiles of rhfs during the benchmark's workloads (``bench.py --profile DIR``).

For each rhfs workload of the first repeat, py-spy samples the daemon; for the
parquet workload also the child process in which pandas reads (added with
:meth:`Profiler.watch` once it has started), and for the write workloads also the
moto server, which is written in Python too. Only the thread holding the GIL is
sampled (``py-spy --gil``), so a profile shows where the process's Python time goes,
and its share of the wall time says how busy Python was: a daemon that seldom held
the GIL was bounded elsewhere (the server, the network, the kernel's FUSE round
trips, or native code that releases the GIL). Waiting threads are not in it.

Each process's samples are written as py-spy's collapsed stacks,
``DIR/<workload>-<role>-<pid>.txt`` (``role``: daemon, pandas or moto; one line per
stack: ``thread;frame;...;leaf count``, for flamegraph.pl or speedscope), and a
summary, ``DIR/<workload>-<role>-<pid>.summary.txt``:
the samples per thread and the top frames by self time (the leaf frame of each
sample, grouped by function and file).
"""

from __future__ import annotations

import collections
import contextlib
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

RATE = 100  # samples per second
NATIVE = "(native code: no Python frame on the stack)"


def available() -> bool:
    return shutil.which("py-spy") is not None


class Profiler:
    """py-spy recorders for one workload, written into ``out_dir`` when stopped."""

    def __init__(self, out_dir: Path, name: str) -> None:
        self.out_dir = out_dir
        self.name = name
        self.procs: list[tuple[subprocess.Popen[bytes], Path]] = []
        self.started = time.monotonic()
        self.seconds = 0.0  # how long it recorded, once stopped

    def watch(self, pid: int, role: str) -> None:
        spy = shutil.which("py-spy")
        if spy is None:
            raise RuntimeError("py-spy is not installed (pip install py-spy)")
        self.out_dir.mkdir(parents=True, exist_ok=True)
        out = self.out_dir / f"{self.name}-{role}-{pid}.txt"
        cmd = [spy, "record", "--pid", str(pid), "--rate", str(RATE), "--format", "raw"]
        cmd += ["--threads", "--gil", "--nonblocking", "-o", str(out)]
        self.procs.append((subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL), out))

    def stop(self) -> None:
        self.seconds = seconds = time.monotonic() - self.started
        for proc, out in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(30)
            if out.exists():
                out.with_suffix(".summary.txt").write_text(summarize(out, seconds))


@contextlib.contextmanager
def profiled(out_dir: Path | None, name: str, pids: dict[str, int]) -> Iterator[Profiler | None]:
    """Record py-spy on ``pids`` (role -> pid), and on what is watched, while the block runs;
    nothing if no ``out_dir``."""
    if out_dir is None:
        yield None
        return
    profiler = Profiler(out_dir, name)
    for role, pid in pids.items():
        profiler.watch(pid, role)
    try:
        yield profiler
    finally:
        profiler.stop()


def _frame(text: str) -> str:
    """``func (rhfs/vfs/core.py:123)`` -> ``func (rhfs/vfs/core.py)``: samples of a function add up."""
    func, _, where = text.partition(" (")
    return f"{func} ({where.rstrip(')').rsplit(':', 1)[0]})" if where else func


def top_frames(path: Path, count: int | None = 5) -> list[tuple[str, int]]:
    """The ``count`` frames with the most self-time samples in a collapsed-stacks file."""
    frames: collections.Counter[str] = collections.Counter()
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if stack and n.isdigit():
            parts = stack.split(";")
            frames[_frame(parts[-1]) if len(parts) > 1 else NATIVE] += int(n)
    return frames.most_common(count)


def summary(path: Path, seconds: float, count: int = 5) -> dict[str, Any]:
    """For the results: samples holding the GIL, the share of the time it was held, the top frames."""
    samples = sum(n for _, n in top_frames(path, None))
    return {"samples": samples, "gil": samples / RATE / max(seconds, 1e-9), "top": top_frames(path, count)}


def summarize(path: Path, seconds: float, frames: int = 15) -> str:
    threads: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if stack and n.isdigit():
            threads[stack.split(";")[0]] += int(n)
            total += int(n)
    lines = [
        f"{path.name}: {total} samples holding the GIL in {seconds:.1f}s at {RATE}/s "
        f"(the GIL held {total / RATE / max(seconds, 1e-9):.0%} of the time)",
        "",
        "samples  thread",
    ]
    lines += [f"{n:7d}  {thread}" for thread, n in threads.most_common(10)]
    lines += ["", "self     %     frame"]
    lines += [f"{n:7d}  {n / max(total, 1):4.0%}  {frame}" for frame, n in top_frames(path, frames)]
    return "\n".join(lines) + "\n"
