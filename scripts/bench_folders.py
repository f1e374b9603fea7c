#!/usr/bin/env python3
"""Folders: whole trees copied between clusters, a store and ``here/``, beside rsync, rclone and scp.

    python scripts/bench_folders.py                          # 1000 x 4 KiB + 256 MiB, 3 repeats
    python scripts/bench_folders.py --files 200 --big-mib 64 --repeats 1
    python scripts/bench_folders.py --throughput-mib 1024    # the 1 GiB file of the scp target
    python scripts/bench.py --only folders                   # the same, as a section of bench.py

It starts its own testbed (``scripts/testbed.py start`` in a temp dir: moto and two
sshd "clusters" on 127.0.0.1), mounts rhfs on it (``python3 -m rhfs mount``), and makes
a folder of ``--files`` 4 KiB files and one ``--big-mib`` file on each source system.
Then, for each route and repeat, each into a fresh destination:

- ``api``: ``rh.folder(path=..., system=...).to(system, path)``, in a fresh Python
  process, timed from ``rhfs.api.configure()`` to the return of ``.to()`` (the import
  of ``rhfs.api`` not counted);
- ``rhfs-cp``: ``rhfs cp -r SRC DST``, the whole command (Python's start included), run
  by ``rhfs.cli.main`` in a child that then writes its core's stats;
- ``mount-cp``: ``cp -r`` inside the mount (also shown per file);
- ``api-resync``, ``cp-resync``: the same ``.to()`` and ``rhfs cp -r SRC/ DST`` again onto
  the unchanged copy they made, with the file bytes they moved (the tree jobs' stats);
- the peers: ``rsync -a`` over one ssh connection (cluster-a -> cluster-b: run on
  cluster-a to cluster-b, ``rsync``, and from this host to cluster-b, ``rsync-host``;
  here -> cluster-a: from this host), ``rclone copy`` with sftp and s3 remotes of a
  temporary rclone.conf (``disable_hashcheck``: without it rclone runs ``md5sum`` over
  ssh for every file, ~0.25 s each here), and, for the throughput target, ``scp`` of one
  big file run on cluster-a to cluster-b beside ``cp`` of it in the mount.

Bytes through rhfs are those of the process that copied (the mount's daemon for
``cp`` in the mount, the child for the API and ``rhfs cp``): the deltas of its stats'
``systems`` ``bytes_read``, ``bytes_written`` and ``bytes_relayed``.

It prints the medians with ratios, then each target with met or MISSED, and writes
everything to ``--json``. Every destination is checked (file count and bytes) and
removed after its route's repeat; a method that fails is logged and has no sample.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_env as env

REPO = Path(__file__).resolve().parent.parent
TESTBED = REPO / "scripts" / "testbed.py"
SMALL = 4096
MiB = 1 << 20
STEP_TIMEOUT = 1800.0  # seconds any one copy may take before it is called failed
BIG = "big.bin"


@dataclass(frozen=True)
class Route:
    name: str
    src: str  # a system: "cluster-a", "cluster-b", "s3" or "here"
    dst: str
    through_daemon: str  # as docs/SEMANTICS.md's route table says: "none" or "all"


ROUTES = (
    Route("cluster-a->cluster-b", "cluster-a", "cluster-b", "none"),
    Route("cluster-a->s3", "cluster-a", "s3", "none"),
    Route("s3->cluster-b", "s3", "cluster-b", "none"),
    Route("s3->s3", "s3", "s3", "none"),
    Route("here->cluster-a", "here", "cluster-a", "all"),
)
RHFS_METHODS = ("api", "rhfs-cp", "mount-cp")
RESYNCS = {"api-resync": "api", "cp-resync": "rhfs-cp"}
PEERS = ("rsync", "rsync-host", "rclone")
METHODS = (*RHFS_METHODS, *RESYNCS, *PEERS)

API_CHILD = r"""
import json, sys, time
job = json.loads(sys.argv[1])
import rhfs.api as rh
began = time.perf_counter()
session = rh.configure(job["config"])
rh.folder(path=job["src"][1], system=job["src"][0]).to(job["dst"][0], job["dst"][1])
took = time.perf_counter() - began
print(json.dumps({"s": took, "stats": session.core.stats.snapshot()}), flush=True)
"""

CP_CHILD = r"""
import json, sys
import rhfs.copy_command as copy_command
from rhfs import cli
cores = []
build = copy_command.build_core
def keep(config):
    cores.append(build(config))
    return cores[-1]
copy_command.build_core = keep
code = cli.main(sys.argv[2:])
with open(sys.argv[1], "w") as f:
    json.dump(cores[0].stats.snapshot() if cores else {}, f)
sys.exit(code)
"""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--files", type=int, default=1000, help="4 KiB files in the folder")
    p.add_argument("--big-mib", type=int, default=256, help="MiB of the folder's one big file")
    p.add_argument("--repeats", type=int, default=3, help="runs of each route (the median is reported)")
    p.add_argument(
        "--throughput-mib",
        type=int,
        default=0,
        help="MiB of the file for the scp target (default: the folder's big file; 1024 for 1 GiB)",
    )
    p.add_argument("--routes", default=",".join(r.name for r in ROUTES), help="comma-separated routes")
    p.add_argument("--json", default="bench-results-folders.json", help="where to write the results")
    p.add_argument("--workdir", default=None, help="scratch directory (default: a new temp dir)")
    p.add_argument("--keep", action="store_true", help="keep the scratch directory")
    return p.parse_args(argv)


def _sh(argv: list[str], timeout: float = STEP_TIMEOUT, **kw: Any) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, **kw
    )
    if done.returncode:
        said = (done.stderr or done.stdout).strip()[-800:]
        raise RuntimeError(f"{shlex.join(argv)[:300]} exited with {done.returncode}: {said}")
    return done


def _timed(argv: list[str], **kw: Any) -> tuple[float, subprocess.CompletedProcess[str]]:
    started = time.perf_counter()
    done = _sh(argv, **kw)
    return time.perf_counter() - started, done


def through(stats: dict[str, Any]) -> int:
    """Bytes a process's stats say went through it: read, written and relayed, over every system
    but ``.rhfs`` (whose stats.json the bench itself reads)."""
    keys = ("bytes_read", "bytes_written", "bytes_relayed")
    systems = stats.get("systems", {})
    return sum(int(s.get(k, 0)) for name, s in systems.items() if name != ".rhfs" for k in keys)


class World:
    """The testbed, the mount and the places of each system, in every form a contender names them."""

    def __init__(self, workdir: Path) -> None:
        self.dir = workdir / "testbed"
        self.mnt = workdir / "mnt"
        self.scratch = workdir
        self.state: dict[str, Any] = {}
        self.mounted = False

    # -- setting up -------------------------------------------------------------------------
    def start(self) -> None:
        env.step("testbed", lambda: _sh([sys.executable, str(TESTBED), "start", "--dir", str(self.dir)]))
        self.state = json.loads((self.dir / "state.json").read_text())
        self.config = self.state["paths"]["config"]
        self.bucket = self.state["bucket"]
        self.mnt.mkdir(parents=True, exist_ok=True)
        mount = [sys.executable, "-m", "rhfs", "--log-level", "WARNING", "mount", str(self.mnt)]
        env.step("mount", lambda: _sh([*mount, "--config", self.config], timeout=180))
        self.mounted = True
        self.rclone_conf = self.scratch / "rclone.conf"
        fd = os.open(self.rclone_conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(self._rclone_text())

    def stop(self) -> None:
        if self.mounted:
            try:
                _sh([sys.executable, "-m", "rhfs", "unmount", str(self.mnt)], timeout=300)
            except Exception as e:
                env.log(f"unmount failed ({e}); unmounting lazily")
                subprocess.run(["fusermount3", "-uz", str(self.mnt)], capture_output=True)
            self.mounted = False
        if self.state:
            subprocess.run(
                [sys.executable, str(TESTBED), "stop", "--dir", str(self.dir)], capture_output=True
            )

    def _rclone_text(self) -> str:
        p, s3 = self.state["paths"], self.state["s3"]
        lines = []
        for name, c in self.state["clusters"].items():
            lines += [f"[{name}]", "type = sftp", f"host = {c['host']}", f"port = {c['port']}"]
            lines += [f"user = {c['user']}", f"key_file = {p['client_key']}"]
            lines += [f"known_hosts_file = {p['known_hosts']}", "shell_type = unix"]
            lines += ["disable_hashcheck = true", ""]
        lines += ["[s3]", "type = s3", "provider = Other", f"endpoint = {s3['endpoint_url']}"]
        lines += [f"access_key_id = {s3['key']}", f"secret_access_key = {s3['secret']}"]
        # one PUT per file: rclone's multipart upload ends with HEAD ?versionId=null, which
        # moto answers with 400 on an unversioned bucket (see bench_env.create_data)
        lines += ["no_check_bucket = true", "upload_cutoff = 5G", ""]
        return "\n".join(lines)

    def make_sources(self, files: int, big_mib: int, throughput_mib: int) -> dict[str, Any]:
        """``src/`` on here, cluster-a and s3: ``files`` x 4 KiB and one big file; and the
        file of the throughput target on cluster-a (the folder's big file unless another size)."""
        started = time.monotonic()
        here = self.local("here", "src")
        assert here is not None
        here.mkdir(parents=True)
        payload = os.urandom(SMALL)
        for i in range(files):
            (here / f"f{i:05d}").write_bytes(payload)
        _random_file(here / BIG, big_mib * MiB)
        a = self.local("cluster-a", "src")
        assert a is not None
        shutil.copytree(here, a)
        servers = env.Servers(self.scratch, ports={"moto": int(self.state["servers"]["moto"]["port"])})
        keys = [f"{self.bucket}/src/f{i:05d}" for i in range(files)]
        env.step("s3: small files", lambda: servers.put_raw("moto", keys, payload))
        big = (here / BIG).read_bytes()
        key = f"{self.bucket}/src/{BIG}"
        env.step("s3: big file", lambda: servers.put_raw("moto", [key], big, threads=1))
        throughput = "src/" + BIG
        if throughput_mib and throughput_mib != big_mib:
            throughput = "throughput.bin"
            path = self.local("cluster-a", throughput)
            assert path is not None
            _random_file(path, throughput_mib * MiB)
        made = {
            "files": files + 1,
            "bytes": files * SMALL + big_mib * MiB,
            "big_bytes": big_mib * MiB,
            "throughput_file": throughput,
            "throughput_bytes": (throughput_mib or big_mib) * MiB,
            "data_created_s": round(time.monotonic() - started, 1),
        }
        env.log(f"sources made: {json.dumps(made)}")
        return made

    # -- names ------------------------------------------------------------------------------
    def root(self, system: str) -> str:
        if system == "here":
            return str(self.state["paths"]["here_root"])
        return str(self.state["clusters"][system]["root"])

    def local(self, system: str, rel: str) -> Path | None:
        """The place on this machine's disk (the testbed's cluster roots and here/ are local)."""
        return None if system == "s3" else Path(self.root(system)) / rel

    def url(self, system: str, rel: str) -> str:
        """As ``rhfs cp`` takes it."""
        if system == "s3":
            return f"s3://{self.bucket}/{rel}"
        if system == "here":
            return str(self.local(system, rel))
        return f"{system}:{rel}"

    def api(self, system: str, rel: str) -> tuple[str, str]:
        """(system, path) as ``rh.folder`` takes them."""
        if system == "s3":
            return "s3", f"{self.bucket}/{rel}"
        if system == "here":
            return "here", str(self.local(system, rel))
        return system, rel

    def in_mount(self, system: str, rel: str) -> str:
        if system == "s3":
            return str(self.mnt / "s3" / self.bucket / rel)
        if system == "here":
            return str(self.mnt / "here" / rel)
        return str(self.mnt / "clusters" / system / rel)

    def rclone(self, system: str, rel: str) -> str:
        if system == "s3":
            return f"s3:{self.bucket}/{rel}"
        if system == "here":
            return str(self.local(system, rel))
        return f"{system}:{self.root(system)}/{rel}"

    def ssh_options(self, cluster: str) -> list[str]:
        """The testbed's key and known_hosts, and no prompt (the port is ``-p`` for ssh, ``-P`` for scp)."""
        p = self.state["paths"]
        opts = ["-F", "/dev/null", "-i", p["client_key"], "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes"]
        return [*opts, "-o", f"UserKnownHostsFile={p['known_hosts']}", "-o", "StrictHostKeyChecking=yes"]

    def ssh(self, cluster: str) -> list[str]:
        """``ssh`` to ``cluster``, without the login (rsync's ``-e``)."""
        return ["ssh", *self.ssh_options(cluster), "-p", str(self.state["clusters"][cluster]["port"])]

    def login(self, cluster: str) -> str:
        c = self.state["clusters"][cluster]
        return f"{c['user']}@{c['host']}"

    def remote(self, cluster: str, rel: str) -> str:
        """``user@host:path`` for rsync and scp."""
        return f"{self.login(cluster)}:{self.root(cluster)}/{rel}"

    # -- checking and cleaning --------------------------------------------------------------
    def count(self, system: str, rel: str) -> tuple[int, int]:
        """Files and bytes under a place."""
        local = self.local(system, rel)
        if local is not None:
            sizes = [f.stat().st_size for f in local.rglob("*") if f.is_file()]
        else:
            found = self.s3fs().find(f"{self.bucket}/{rel}", detail=True)
            sizes = [int(v["size"]) for k, v in found.items() if not k.endswith("/")]
        return len(sizes), sum(sizes)

    def remove(self, system: str, rel: str) -> None:
        local = self.local(system, rel)
        if local is not None:
            shutil.rmtree(local, ignore_errors=True)
            return
        fs = self.s3fs()
        keys = list(fs.find(f"{self.bucket}/{rel}"))
        if keys:
            fs.rm(keys)

    def s3fs(self) -> Any:
        import s3fs

        s3 = self.state["s3"]
        return s3fs.S3FileSystem(
            key=s3["key"],
            secret=s3["secret"],
            endpoint_url=s3["endpoint_url"],
            skip_instance_cache=True,
            use_listings_cache=False,
        )

    def mount_stats(self) -> dict[str, Any]:
        return dict(json.loads((self.mnt / ".rhfs" / "stats.json").read_text()))


def _random_file(path: Path, size: int) -> None:
    with open(path, "wb") as f:
        for offset in range(0, size, 8 * MiB):
            f.write(os.urandom(min(8 * MiB, size - offset)))


# ------------------------------------------------------------------------------------ measuring

Measured = tuple[float, int | None, int | None]  # seconds, file bytes moved, bytes through rhfs


class Bench:
    """Runs each route's copies and peers, checks each destination, and keeps the samples."""

    def __init__(self, world: World, made: dict[str, Any]) -> None:
        self.w = world
        self.made = made
        self.samples: dict[str, dict[str, dict[str, list[float]]]] = {}  # route -> method -> metric
        self.failed: list[str] = []
        self.child_env = {**os.environ, "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}
        self.child_env.pop("AWS_CA_BUNDLE", None)  # rclone fails with LoadCustomCABundleError

    def route(self, route: Route, rep: int) -> None:
        made: list[str] = []  # destinations on route.dst, removed at the end

        def fresh(method: str) -> str:
            made.append(f"from-{route.src}-{method}-{rep}")
            return made[-1]

        try:
            first: dict[str, str] = {}
            for method in RHFS_METHODS:
                rel = fresh(method)
                if self._one(route, method, rel, lambda m=method, rel=rel: self._rhfs(route, m, rel)):
                    first[method] = rel
            for resync, of in RESYNCS.items():
                if of in first:
                    again = lambda of=of: self._rhfs(route, of, first[of], again=True)  # noqa: E731
                    self._one(route, resync, first[of], again)
            for method, (rel, argv) in self._peers(route, fresh).items():
                self._one(route, method, rel, self._peer(argv))
            if route.src.startswith("cluster") and route.dst.startswith("cluster"):
                self._throughput(route, rep)
        finally:
            for rel in made:
                try:
                    self.w.remove(route.dst, rel)
                except Exception as e:
                    env.log(f"could not remove {route.dst}:{rel}: {e}")

    def _one(self, route: Route, method: str, rel: str, measure: Any) -> bool:
        """Run one copy into ``rel`` on the route's destination, check it, keep its numbers."""
        try:
            took, moved, through_rhfs = measure()
            files, nbytes = self.w.count(route.dst, rel)
            want = (self.made["files"], self.made["bytes"])
            if (files, nbytes) != want:
                raise RuntimeError(f"{route.dst}:{rel} has {files} files of {nbytes} B, not {want}")
        except Exception as e:
            env.log(f"{route.name} {method} FAILED: {type(e).__name__}: {e}")
            self.failed.append(f"{route.name} {method}: {type(e).__name__}: {e}"[:600])
            return False
        cell = self.samples.setdefault(route.name, {}).setdefault(method, {})
        cell.setdefault("s", []).append(took)
        shown = f"{took:.2f} s"
        if moved is not None:
            cell.setdefault("moved", []).append(moved)
            shown += f", {moved} file bytes moved"
        if through_rhfs is not None:
            cell.setdefault("through", []).append(through_rhfs)
            shown += f", {through_rhfs} B through rhfs"
        env.log(f"{route.name} {method}: {shown}")
        return True

    def _rhfs(self, route: Route, method: str, rel: str, again: bool = False) -> Measured:
        w = self.w
        if method == "api":
            job = {"config": w.config, "src": w.api(route.src, "src"), "dst": w.api(route.dst, rel)}
            _, done = _timed([sys.executable, "-c", API_CHILD, json.dumps(job)], env=self.child_env)
            out = json.loads(done.stdout.strip().splitlines()[-1])
            return float(out["s"]), int(out["stats"]["trees"]["bytes"]), through(out["stats"])
        if method == "rhfs-cp":
            stats_file = w.scratch / "cp-stats.json"
            source = w.url(route.src, "src") + ("/" if again else "")
            argv = [sys.executable, "-c", CP_CHILD, str(stats_file), "cp", "-r", source]
            took, done = _timed([*argv, w.url(route.dst, rel), "--config", w.config], env=self.child_env)
            stats = json.loads(stats_file.read_text())
            env.log(f"  rhfs cp printed: {done.stdout.strip()}")
            return took, int(stats["trees"]["bytes"]), through(stats)
        before = w.mount_stats()
        took, _ = _timed(["cp", "-r", w.in_mount(route.src, "src"), w.in_mount(route.dst, rel)])
        after = w.mount_stats()
        moved = sum(int(c["bytes"]) for c in after["copies"].values())
        moved -= sum(int(c["bytes"]) for c in before["copies"].values())
        return took, moved, through(after) - through(before)

    def _peer(self, argv: list[str]) -> Any:
        return lambda: (_timed(argv, env=self.child_env)[0], None, None)

    def _peers(self, route: Route, fresh: Any) -> dict[str, tuple[str, list[str]]]:
        """The peers' command lines, each with the fresh destination it copies into."""
        w = self.w
        out: dict[str, tuple[str, list[str]]] = {}
        if "s3" not in (route.src, route.dst):
            src = f"{w.local(route.src, 'src')}/"

            def rsync(rel: str) -> list[str]:
                return [
                    "rsync",
                    "-a",
                    "-e",
                    shlex.join(w.ssh(route.dst)),
                    src,
                    w.remote(route.dst, rel) + "/",
                ]

            rel = fresh("rsync")
            if route.src == "here":
                out["rsync"] = rel, rsync(rel)
            else:  # run on the source cluster, over its one ssh connection to the destination
                out["rsync"] = rel, [*w.ssh(route.src), w.login(route.src), shlex.join(rsync(rel))]
                # the reference of "daemon host -> cluster-b": the testbed's roots are on this host
                rel = fresh("rsync-host")
                out["rsync-host"] = rel, rsync(rel)
        rel = fresh("rclone")
        rclone = ["rclone", "--config", str(w.rclone_conf), "copy", w.rclone(route.src, "src")]
        out["rclone"] = rel, [*rclone, w.rclone(route.dst, rel)]
        return out

    def _throughput(self, route: Route, rep: int) -> None:
        """One big file cluster -> cluster: ``cp`` in the mount, and ``scp`` run on the source cluster."""
        w = self.w
        name, size = self.made["throughput_file"], self.made["throughput_bytes"]
        targets = {"scp": f"throughput-scp-{rep}", "mount-cp": f"throughput-rhfs-{rep}"}
        cell = self.samples.setdefault("throughput", {})
        try:
            for method, rel in targets.items():
                before = w.mount_stats()
                if method == "scp":
                    port = str(w.state["clusters"][route.dst]["port"])
                    scp = ["scp", *w.ssh_options(route.dst), "-P", port, f"{w.root(route.src)}/{name}"]
                    scp.append(w.remote(route.dst, rel))
                    command = [*w.ssh(route.src), w.login(route.src), shlex.join(scp)]
                else:
                    command = ["cp", w.in_mount(route.src, name), w.in_mount(route.dst, rel)]
                took, _ = _timed(command)
                local = w.local(route.dst, rel)
                assert local is not None
                if local.stat().st_size != size:
                    raise RuntimeError(f"{method}: {local} has {local.stat().st_size} B, not {size}")
                metrics = cell.setdefault(method, {})
                metrics.setdefault("s", []).append(took)
                metrics.setdefault("MiBps", []).append(size / MiB / took)
                if method == "mount-cp":
                    metrics.setdefault("through", []).append(through(w.mount_stats()) - through(before))
                env.log(f"throughput {method}: {size / MiB / took:.1f} MiB/s ({took:.2f} s)")
        except Exception as e:
            env.log(f"throughput FAILED: {type(e).__name__}: {e}")
            self.failed.append(f"throughput: {type(e).__name__}: {e}"[:600])
        finally:
            for rel in targets.values():
                w.remove(route.dst, rel)


# ------------------------------------------------------------------------------------ the run


def run(args: argparse.Namespace) -> dict[str, Any]:
    wanted = [r for r in args.routes.split(",") if r]
    unknown = set(wanted) - {r.name for r in ROUTES}
    if unknown:
        raise SystemExit(f"unknown routes: {', '.join(sorted(unknown))}")
    routes = [r for r in ROUTES if r.name in wanted]
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="rhfs-bench-folders-"))
    workdir.mkdir(parents=True, exist_ok=True)
    began = time.monotonic()
    world = World(workdir)
    bench: Bench | None = None
    made: dict[str, Any] = {}
    try:
        world.start()
        made = world.make_sources(args.files, args.big_mib, args.throughput_mib)
        bench = Bench(world, made)
        for rep in range(args.repeats):
            for route in routes:
                env.log(f"{route.name} #{rep + 1}")
                bench.route(route, rep)
    finally:
        world.stop()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    samples = bench.samples if bench else {}
    results: dict[str, Any] = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "machine": env.machine(),
        "files": args.files,
        "big_mib": args.big_mib,
        "repeats": args.repeats,
        "sizes": made,
        "routes": {r.name: {"src": r.src, "dst": r.dst, "through_daemon": r.through_daemon} for r in routes},
        "elapsed_s": round(time.monotonic() - began, 1),
        "samples": samples,
        "medians": {
            route: {m: {k: statistics.median(v) for k, v in ks.items()} for m, ks in ms.items()}
            for route, ms in samples.items()
        },
        "failed": bench.failed if bench else [],
    }
    results["targets"] = targets(results)
    return results


# ------------------------------------------------------------------------------------ targets


def _cluster_route(route: dict[str, str]) -> bool:
    return route["src"].startswith("cluster") or route["dst"].startswith("cluster")


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target on each route it covers: its measured value and whether it is met (None: no data)."""
    medians, samples, files = results["medians"], results["samples"], results["sizes"].get("files", 1)
    out: list[dict[str, Any]] = []

    def add(target: str, route: str, value: str, met: bool | None) -> None:
        out.append({"target": target, "route": route, "value": value, "met": met})

    def s(route: str, method: str) -> float | None:
        return medians.get(route, {}).get(method, {}).get("s")

    for name, route in results["routes"].items():
        if _cluster_route(route):
            peer = "rsync" if s(name, "rsync") is not None else "rclone"
            ref = s(name, peer)
            for method in ("api", "rhfs-cp"):
                mine = s(name, method)
                ok = None if mine is None or ref is None else mine <= 2 * ref
                shown = "-" if mine is None or ref is None else f"{mine / ref:.3g}x {peer}"
                why = "" if peer == "rsync" else " (no rsync to a store)"
                add(f"{method} <= 2x {peer}{why}", name, shown, ok)
            mine = s(name, "mount-cp")
            per_file = None if mine is None else mine * 1000 / files
            shown = "-" if per_file is None else f"{per_file:.1f} ms/file"
            add("cp -r in mount <= 40 ms/file", name, shown, None if per_file is None else per_file <= 40)
        for resync, of in RESYNCS.items():
            again, first = s(name, resync), s(name, of)
            moved = samples.get(name, {}).get(resync, {}).get("moved")
            if again is None or first is None or moved is None:
                add(f"{resync} <= 0.3x {of}, 0 B moved", name, "-", None)
                continue
            ok = again <= 0.3 * first and max(moved) == 0
            add(f"{resync} <= 0.3x {of}, 0 B moved", name, f"{again / first:.3g}x, {max(moved)} B", ok)
        if route["through_daemon"] == "none":
            for method in (*RHFS_METHODS, *RESYNCS):
                seen = samples.get(name, {}).get(method, {}).get("through")
                shown = "-" if not seen else f"{max(seen)} B"
                add(f"{method}: 0 B through rhfs", name, shown, None if not seen else max(seen) == 0)
    big = medians.get("throughput", {})
    rhfs_rate, scp_rate = big.get("mount-cp", {}).get("MiBps"), big.get("scp", {}).get("MiBps")
    ok = None if rhfs_rate is None or scp_rate is None else rhfs_rate >= 0.7 * scp_rate
    shown = "-" if ok is None else f"{rhfs_rate:.0f} vs {scp_rate:.0f} MiB/s, {rhfs_rate / scp_rate:.3g}x"
    add("big file cluster -> cluster >= 0.7x scp", "cluster-a->cluster-b", shown, ok)
    return out


# ------------------------------------------------------------------------------------ printing


def _grid(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def table(results: dict[str, Any]) -> str:
    """The medians with ratios to the peers, then the targets with met or MISSED."""
    medians, samples, files = results["medians"], results["samples"], results["sizes"].get("files", 1)
    head = ["route", "method", "median s", "ms/file", "vs rsync", "vs rclone", "vs first", "moved MiB"]
    rows = [[*head, "via rhfs MiB"]]
    for name in results["routes"]:
        got = medians.get(name, {})
        for method in METHODS:
            m = got.get(method)
            if m is None:
                continue
            n = len(samples[name][method]["s"])
            per_file = f"{m['s'] * 1000 / files:.1f}" if method == "mount-cp" else ""
            cells = [name, method, f"{m['s']:.2f} n={n}", per_file]
            for peer in ("rsync", "rclone"):
                ref = got.get(peer, {}).get("s")
                cells.append(f"{m['s'] / ref:.2f}x" if ref and method not in PEERS else "")
            first = got.get(RESYNCS.get(method, ""), {}).get("s")
            cells.append(f"{m['s'] / first:.2f}x" if first else "")
            cells += [f"{m['moved'] / MiB:.3g}" if "moved" in m else ""]
            cells += [f"{m['through'] / MiB:.3g}" if "through" in m else ""]
            rows.append(cells)
    text = _grid(rows)
    big = medians.get("throughput", {})
    if big:
        shown = ", ".join(f"{method} {m['MiBps']:.1f} MiB/s ({m['s']:.2f} s)" for method, m in big.items())
        size = results["sizes"]["throughput_bytes"] / MiB
        text += f"\n\none {size:.0f} MiB file cluster-a -> cluster-b: {shown}"
    rows = [["target", "route", "value", "met"]]
    verdicts = {True: "met", False: "MISSED", None: "?"}
    for t in results["targets"]:
        rows.append([t["target"], t["route"], t["value"], verdicts[t["met"]]])
    text += "\n\n" + _grid(rows)
    if results["failed"]:
        text += "\n\nfailed:\n" + "\n".join(f"  {f}" for f in results["failed"])
    return text


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    results = run(args)
    text = table(results)
    print(text)
    print(f"\nelapsed {results['elapsed_s']} s; medians of up to {args.repeats}; results in {args.json}")
    results["table"] = text
    with open(args.json, "w") as f:
        json.dump(results, f, indent=2, sort_keys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
