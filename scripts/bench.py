#!/usr/bin/env python3
"""Side-by-side benchmark: rhfs through its mount vs rclone mount, s3fs-fuse and direct s3fs.

One command, from a fresh clone (after ``scripts/install-system-deps.sh`` and
``pip install -e '.[test]'``)::

    python scripts/bench.py                  # everything, in under 10 minutes on 2 cores
    python scripts/bench.py --quick          # smaller sizes, a few minutes
    python scripts/bench.py --only seq,random --contenders rhfs,direct
    python scripts/bench.py --only folders   # the folders section (bench_folders.py) alone

It starts its own moto and s3rver on 127.0.0.1, creates the data, then for each
repeat and each contender mounts fresh, runs the read workloads (seq, random, ls,
parquet, rss) in one session and the write workloads (cpr, copy) in a second
session, and unmounts. It prints the medians with ratios against the best peer
and against direct s3fs, and writes them all to ``bench-results.json``.

A workload whose first run for a contender takes longer than ``--slow`` seconds
runs only once for that contender, and a ``cp``, ``ls -l`` or ``read_parquet`` still
running after ``--timeout`` seconds is cut short (its time is then a lower bound,
shown as ">", and a ratio or a verdict it makes uncertain as "<", ">" or "?"). After
the first round, which runs everything, the repeats run cheapest session first while
they fit in ``--budget`` seconds (counted from the start, data creation included).
Each cell shows how many runs its median has (``n=``).

``folders`` (:mod:`bench_folders`: whole trees between clusters, s3 and ``here/``
beside rsync, rclone and scp, on its own testbed) runs only when ``--only`` names it;
``--quick`` makes its folder 200 x 4 KiB + 64 MiB, and it has ``--repeats`` runs.

``--profile DIR`` records py-spy on the rhfs daemon during rhfs's first run of each
workload (see :mod:`bench_profile`), and prints, for each workload with a missed
target, the frames with the most self time.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_env as env
import bench_folders as folders
import bench_profile as prof
import bench_work as work

CONTENDERS = ("rhfs", "rclone-off", "rclone-full", "s3fs", "direct")
PEERS = ("rclone-off", "rclone-full", "s3fs")
WORKLOADS = (*work.READ_WORKLOADS, *work.WRITE_WORKLOADS)
MOUNT_COST = 3.0  # seconds to mount and unmount a contender, for the budget
WORKLOAD_OF = {"seq": "seq", "random": "random", "ls": "ls", "parquet": "parquet", "cpr": "cpr"}
WORKLOAD_OF |= {"copy256": "copy", "copy1g": "copy", "rss": "rss"}

# metric -> (unit, higher is better, target as text, check(rhfs, best peer, direct) -> bool | None)
METRICS: dict[str, tuple[str, bool, str, Any]] = {
    "seq_moto_MiBps": (
        "MiB/s",
        True,
        ">=1.0x best peer, >=0.8x direct",
        lambda r, p, d: _ge(r, p, 1.0) and _ge(r, d, 0.8),
    ),
    "seq_s3r_MiBps": ("MiB/s", True, ">=1.0x best peer", lambda r, p, d: _ge(r, p, 1.0)),
    "random_per_s": ("reads/s", True, ">=1.0x best peer", lambda r, p, d: _ge(r, p, 1.0)),
    "random_fetched_MiB": ("MiB", False, "", None),
    "ls_cold_s": ("s", False, "<=1.0x best peer", lambda r, p, d: _le(r, p, 1.0)),
    "ls_warm_s": ("s", False, "<=0.05 s", lambda r, p, d: r <= 0.05),
    "parquet_cold_s": ("s", False, "<=1.1x direct", lambda r, p, d: _le(r, d, 1.1)),
    "parquet_warm_s": ("s", False, "<=0.15 s", lambda r, p, d: r <= 0.15),
    "cpr_s": ("s", False, "best peer >=1.3x slower", lambda r, p, d: _le(r, p, 1 / 1.3)),
    "copy256_s": ("s", False, "<=0.5x best peer", lambda r, p, d: _le(r, p, 0.5)),
    "copy256_daemon_MiB": ("MiB", False, "0 through rhfs", lambda r, p, d: r < 1),
    "copy1g_s": ("s", False, "<=0.5x best peer", lambda r, p, d: _le(r, p, 0.5)),
    "copy1g_daemon_MiB": ("MiB", False, "0 through rhfs", lambda r, p, d: r < 1),
    "rss_peak_MB": ("MB", False, "<400 MB", lambda r, p, d: r < 400),
    "rss_read_MiBps": ("MiB/s", True, "", None),
}


def _ge(a: float | None, b: float | None, k: float) -> bool | None:
    return None if a is None or b is None else a >= k * b


def _le(a: float | None, b: float | None, k: float) -> bool | None:
    return None if a is None or b is None else a <= k * b


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--only", default="", help=f"comma-separated workloads: {','.join(WORKLOADS)}, and folders"
    )
    p.add_argument("--contenders", default=",".join(CONTENDERS), help="comma-separated contenders")
    p.add_argument("--quick", action="store_true", help="small sizes: a smoke run of a couple of minutes")
    p.add_argument("--repeats", type=int, default=3, help="runs per workload (the median is reported)")
    p.add_argument("--slow", type=float, default=12.0, help="a first run slower than this is not repeated")
    p.add_argument(
        "--budget", type=float, default=520.0, help="seconds: no repeat starts that would end later"
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        help="seconds a cp, ls or read_parquet may take; then cut short",
    )
    p.add_argument("--json", default="bench-results.json", help="where to write the results")
    p.add_argument("--workdir", default=None, help="scratch directory (default: a new temp dir)")
    p.add_argument("--keep", action="store_true", help="keep the scratch directory")
    p.add_argument("--profile", default=None, help="directory for py-spy profiles of rhfs's first runs")
    return p.parse_args(argv)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """The mount workloads named by ``--only`` (all by default), then the folders section if named."""
    named = [w for w in args.only.split(",") if w]
    only = [w for w in named if w != "folders"] if named else list(WORKLOADS)
    unknown = set(only) - set(WORKLOADS)
    if unknown:
        raise SystemExit(f"unknown workloads: {', '.join(sorted(unknown))}")
    results = run_mounts(args, only) if only else {}
    if "folders" in named:
        argv = ["--repeats", str(args.repeats)]
        argv += ["--files", "200", "--big-mib", "64"] if args.quick else []
        argv += ["--workdir", str(Path(args.workdir) / "folders")] if args.workdir else []
        argv += ["--keep"] if args.keep else []
        results["folders"] = folders.run(folders.parse_args(argv))
    return results


def run_mounts(args: argparse.Namespace, only: list[str]) -> dict[str, Any]:
    contenders = [c for c in args.contenders.split(",") if c]
    if args.profile and not prof.available():
        raise SystemExit("--profile needs py-spy: pip install py-spy (or pip install -e '.[test]')")
    workdir = Path(args.workdir) if args.workdir else env.default_workdir()
    workdir.mkdir(parents=True, exist_ok=True)
    free_gb = shutil.disk_usage(workdir).free / 1e9
    if free_gb < 20:
        env.log(f"only {free_gb:.0f} GB free under {workdir}: moto keeps copies on disk until it stops")
    runner = Runner(args, time.monotonic())
    servers = env.Servers(workdir)
    mounts: dict[str, env.Mount] = {}
    made: dict[str, Any] = {}
    try:
        servers.start()
        made = env.create_data(servers, env.Sizes.make(args.quick), workdir)
        mounts = env.make_mounts(servers, workdir, contenders)
        sessions = runner.sessions = [
            [w for w in work.READ_WORKLOADS if w in only],
            [w for w in work.WRITE_WORKLOADS if w in only],
        ]
        for contender in contenders:
            for session in sessions:
                runner.session(servers, made, mounts.get(contender), contender, 0, session)
        for rep in range(1, args.repeats):
            # the cheapest sessions first, so that the budget repeats as much as it can
            pairs = sorted(((c, i) for c in contenders for i in range(len(sessions))), key=runner.cost)
            for contender, i in pairs:
                runner.session(servers, made, mounts.get(contender), contender, rep, sessions[i])
    finally:
        for mount in mounts.values():
            mount.stop()
        servers.stop()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    return {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "machine": env.machine(),
        "quick": args.quick,
        "repeats": args.repeats,
        "budget_s": args.budget,
        "elapsed_s": round(time.monotonic() - runner.began, 1),
        "mounting_s": round(runner.overhead, 1),
        "sizes": {k: v for k, v in made.items() if k != "small_dir"},
        "samples": runner.samples,
        "timed_out": {c: sorted(m) for c, m in runner.timed_out.items() if m},
        "skipped": runner.skipped,
        "medians": {c: {m: statistics.median(v) for m, v in ms.items()} for c, ms in runner.samples.items()},
        "profiles": runner.profiles,
    }


class Runner:
    """Runs sessions, keeps the samples, and decides what the time budget still allows.

    A workload whose first run took longer than ``--slow`` seconds is not repeated. A
    repeat is skipped when the first run of its session says it would end past the
    budget; the table then shows how many runs each median has.
    """

    def __init__(self, args: argparse.Namespace, began: float) -> None:
        self.args = args
        self.began = began
        self.samples: dict[str, dict[str, list[float]]] = {}
        self.slow: dict[str, set[str]] = {}
        self.took: dict[tuple[str, str], float] = {}
        self.timed_out: dict[str, set[str]] = {}
        self.skipped: list[str] = []
        self.overhead = 0.0  # seconds spent mounting and unmounting
        self.sessions: list[list[str]] = [list(work.READ_WORKLOADS), list(work.WRITE_WORKLOADS)]
        self.profiles: dict[str, dict[str, Any]] = {}  # workload -> {file: top self-time frames}

    def cost(self, pair: tuple[str, int]) -> float:
        """Seconds a repeat of the contender's session would take, from its first run."""
        contender, i = pair
        slow = self.slow.get(contender, set())
        return sum(self.took.get((contender, w), 0.0) for w in self.sessions[i] if w not in slow)

    def session(
        self,
        servers: env.Servers,
        made: dict[str, Any],
        mount: env.Mount | None,
        contender: str,
        rep: int,
        session: list[str],
    ) -> None:
        slow = self.slow.setdefault(contender, set())
        todo = [w for w in session if not (rep and w in slow)]
        if not todo:
            return
        if rep:
            estimate = sum(self.took.get((contender, w), 0.0) for w in todo) + MOUNT_COST
            if time.monotonic() + estimate > self.began + self.args.budget:
                self.skipped.append(f"{contender} {','.join(todo)} #{rep + 1}")
                env.log(f"skipping {contender} {','.join(todo)} #{rep + 1}: past the time budget")
                return
        workloads = {**work.READ_WORKLOADS, **work.WRITE_WORKLOADS}
        began = time.monotonic()
        if mount is not None:
            mount.start()
        mounted = time.monotonic()
        try:
            for name in todo:
                self._one(servers, made, mount, contender, rep, name, workloads[name])
        finally:
            ending = time.monotonic()
            if mount is not None:
                mount.stop()
            unmounted = time.monotonic()
            env.log(f"{contender}: mounted in {mounted - began:.1f}s, unmounted in {unmounted - ending:.1f}s")
            self.overhead += mounted - began + unmounted - ending

    def _one(
        self,
        servers: env.Servers,
        made: dict[str, Any],
        mount: env.Mount | None,
        contender: str,
        rep: int,
        name: str,
        workload: Any,
    ) -> None:
        ctx = work.Ctx(servers, made, mount, tag=f"{contender}-{rep}", timeout=self.args.timeout)
        profiling = self.args.profile and contender == "rhfs" and not rep and mount is not None
        profile_dir = Path(self.args.profile) if profiling else None
        pids = {"daemon": mount.daemon_pid("moto")} if mount is not None else {}
        if name in work.WRITE_WORKLOADS:
            pids["moto"] = servers.procs["moto"].pid  # what a copy or an upload waits for
        started = time.monotonic()
        profiler = None
        try:
            with prof.profiled(profile_dir, name, pids) as profiler:
                if profiler is not None:
                    ctx.watch = profiler.watch  # the parquet child, where pandas works
                result = workload(ctx)
        except Exception as e:  # one failing contender must not lose the whole run
            env.log(f"{contender} {name} #{rep + 1} FAILED: {type(e).__name__}: {e}")
            result = {}
        took = time.monotonic() - started
        if profile_dir is not None:
            files = sorted(profile_dir.glob(f"{name}-*-*[0-9].txt"))
            seconds = profiler.seconds if profiler is not None else took
            self.profiles[name] = {f.name: prof.summary(f, seconds) for f in files}
        self.took.setdefault((contender, name), took)
        if took > self.args.slow:
            self.slow[contender].add(name)
        for metric, value in result.items():
            self.samples.setdefault(contender, {}).setdefault(metric, []).append(value)
        self.timed_out.setdefault(contender, set()).update(ctx.timed_out)
        shown = ", ".join(f"{k}={v:.3g}" for k, v in result.items())
        env.log(f"{contender} {name} #{rep + 1} ({took:.1f}s): {shown}")


def table(results: dict[str, Any]) -> str:
    """Medians (with their run counts), ratios and verdicts; a lower bound makes a ratio one-sided."""
    medians: dict[str, dict[str, float]] = results["medians"]
    counts = {c: {m: len(v) for m, v in ms.items()} for c, ms in results["samples"].items()}
    cols = [c for c in CONTENDERS if c in medians]
    head = ["metric", "unit", *cols, "best peer", "rhfs/peer", "rhfs/direct", "target", "met"]
    rows = [head]
    for metric, (unit, higher, target, check) in METRICS.items():
        if not any(metric in medians[c] for c in cols):
            continue

        def bound(c: str | None, metric: str = metric) -> bool:
            return c is not None and metric in results.get("timed_out", {}).get(c, ())

        cells = [metric, unit]
        for c in cols:
            v = medians[c].get(metric)
            n = counts[c].get(metric, 0)
            cells.append("-" if v is None else f"{'>' if bound(c) else ''}{v:.3g} n={n}")
        peers = {p: medians[p][metric] for p in PEERS if p in medians and metric in medians[p]}
        best = (max if higher else min)(peers, key=peers.__getitem__) if peers else None
        r = medians.get("rhfs", {}).get(metric)
        d = medians.get("direct", {}).get(metric)
        p = peers.get(best) if best else None
        cells.append(best or "-")
        cells.append(_ratio(r, p, bound("rhfs"), bound(best)))
        cells.append(_ratio(r, d, bound("rhfs"), bound("direct")))
        cells.append(target)
        met = check(r, p, d) if check and r is not None else None
        relative = "peer" in target or "direct" in target
        others_bound = relative and (bound(best) or bound("direct"))
        if met is None:
            cells.append("")
        elif (met and bound("rhfs")) or (not met and others_bound):
            cells.append("?")  # a lower bound leaves it open
        else:
            cells.append("yes" if met else "NO")
        rows.append(cells)
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _ratio(a: float | None, b: float | None, a_bound: bool, b_bound: bool) -> str:
    """``a / b``; ">" if ``a`` is a lower bound, "<" if ``b`` is, "?" if both are."""
    if a is None or not b:
        return "-"
    mark = "?" if a_bound and b_bound else ">" if a_bound else "<" if b_bound else ""
    return f"{mark}{a / b:.2f}x"


def missed_profiles(results: dict[str, Any], text: str) -> str:
    """For each workload with a target not met (NO or ?), the top self-time frames of its profile."""
    missed = {WORKLOAD_OF[m.split("_")[0]] for m in _missed(text)}
    lines = []
    for name, files in results.get("profiles", {}).items():
        if name not in missed:
            continue
        for file, summary in files.items():
            held = f"the GIL held {summary['gil']:.0%} of the time ({summary['samples']} samples)"
            lines.append(f"{name}: {file}, {held}")
            lines += [f"    {n:6d}  {frame}" for frame, n in summary["top"]]
    return "\n".join(lines)


def _missed(text: str) -> list[str]:
    return [line.split()[0] for line in text.splitlines()[2:] if line.rstrip().endswith(("NO", "?"))]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    results = run(args)
    if "medians" in results:
        text = table(results)
        print(text)
        profiles = missed_profiles(results, text)
        if profiles:
            missed = f"where a target is missed ({args.profile})"
            print(f"\nrhfs's top frames by self time holding the GIL, {missed}:")
            print(profiles)
        spent = f"data {results['sizes'].get('data_created_s')} s, mounting {results['mounting_s']} s"
        print(f"\nelapsed {results['elapsed_s']} s ({spent}); medians of up to {args.repeats}")
        results["table"] = text
    if "folders" in results:
        text = results["folders"]["table"] = folders.table(results["folders"])
        print(f"\nfolders:\n{text}\n\nfolders: elapsed {results['folders']['elapsed_s']} s")
    print(f"results in {args.json}")
    with open(args.json, "w") as f:
        json.dump(results, f, indent=2, sort_keys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
