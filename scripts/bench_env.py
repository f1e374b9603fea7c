"""The benchmark's world: two S3 servers, their data, and the contenders' mounts.

Servers (both on 127.0.0.1, started and stopped by :class:`Servers`):
- ``moto``: ``moto_server``; a ranged GET costs as much as reading the whole object;
- ``s3r``: the npm ``s3rver`` from ``.testbed-node`` (or ``$RHFS_TESTBED_NODE_DIR``, as
  for ``scripts/testbed.py``); a ranged GET costs about the same whatever the object's
  size, as on a real store.

Contenders (each a :class:`Mount`, mounted fresh for every cold session so that no
cache of the kernel or the daemon survives between sessions):
- ``rhfs``: ``python -m rhfs mount DIR --config CFG --foreground`` with one store per server;
- ``rclone-off`` / ``rclone-full``: ``rclone mount`` with ``--vfs-cache-mode off|full``
  and ``--use-server-modtime`` (its best ``ls -l``), one daemon per server;
- ``s3fs``: s3fs-fuse, one daemon per server.

Every contender exposes the same layout: ``root/moto/KEY`` and ``root/s3r/KEY``.

Nothing here measures; :mod:`bench_work` does.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
BUCKET = "bench"
SERVERS = ("moto", "s3r")
KEYS = {"moto": ("testing", "testing"), "s3r": ("S3RVER", "S3RVER")}
MiB = 1 << 20
COPY_READ_TIMEOUT = 300  # seconds the bench's own s3fs clients wait for an answer


STARTED = time.monotonic()


def log(msg: str) -> None:
    print(f"[bench {time.monotonic() - STARTED:5.0f}s] {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def alive(pid: int) -> bool:
    """True unless the process is gone or a zombie (PID 1 here does not reap orphans)."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in (b"Z", b"X")


def stop_process(proc: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def mounted(path: str) -> bool:
    target = os.path.abspath(path)
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == target for line in f)


def wait_for(predicate: Any, timeout: float, what: str, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise RuntimeError(f"timed out after {timeout:g}s waiting for {what}")


def machine() -> dict[str, Any]:
    """What the results were measured on."""
    return {
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "load_average": os.getloadavg(),
    }


def proc_io(pid: int) -> dict[str, int]:
    with open(f"/proc/{pid}/io") as f:
        return {k: int(v) for k, v in (line.split(": ") for line in f)}


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


# ------------------------------------------------------------------------------------ servers


@dataclass
class Servers:
    workdir: Path
    ports: dict[str, int] = field(default_factory=dict)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def endpoint(self, server: str) -> str:
        return f"http://127.0.0.1:{self.ports[server]}"

    def start(self) -> None:
        logs = self.workdir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        moto = Path(sys.executable).parent / "moto_server"
        moto_cmd = [str(moto)] if moto.exists() else [sys.executable, "-m", "moto.server"]
        node_dir = Path(os.environ.get("RHFS_TESTBED_NODE_DIR", REPO / ".testbed-node"))  # as testbed.py
        s3rver = node_dir / "node_modules" / ".bin" / "s3rver"
        if not s3rver.exists():
            raise RuntimeError(
                f"{s3rver} is missing: run scripts/install-system-deps.sh, or point "
                "RHFS_TESTBED_NODE_DIR at a directory where it has run"
            )
        data = self.workdir / "s3rver-data"
        shutil.rmtree(data, ignore_errors=True)
        data.mkdir()
        commands = {
            "moto": lambda p: [*moto_cmd, "-H", "127.0.0.1", "-p", str(p)],
            "s3r": lambda p: [str(s3rver), "-d", str(data), "-a", "127.0.0.1", "-p", str(p), "--silent"],
        }
        for name, command in commands.items():
            port = free_port()
            with open(logs / f"{name}.log", "ab") as out:
                self.procs[name] = subprocess.Popen(
                    command(port), stdout=out, stderr=out, stdin=subprocess.DEVNULL, start_new_session=True
                )
            self.ports[name] = port
        for name in SERVERS:
            wait_for(lambda name=name: self._answers(name), 30, f"{name} to answer")

    def _answers(self, name: str) -> bool:
        if self.procs[name].poll() is not None:
            raise RuntimeError(f"{name} exited; see {self.workdir}/logs/{name}.log")
        try:
            urllib.request.urlopen(self.endpoint(name), timeout=1).close()
        except urllib.error.HTTPError:
            return True
        except OSError:
            return False
        return True

    def stop(self) -> None:
        for proc in self.procs.values():
            stop_process(proc)

    def fs(self, server: str) -> Any:
        """A fresh s3fs client (no instance or listing cache), as the direct contender uses."""
        import s3fs

        return s3fs.S3FileSystem(**self.storage_options(server), use_listings_cache=False)

    def storage_options(self, server: str) -> dict[str, Any]:
        """s3fs options; the read timeout outlasts a server-side copy (moto answers a 1 GiB
        CopyObject after about 10 s, and s3fs's default 15 s would retry it while it runs)."""
        key, secret = KEYS[server]
        return {
            "key": key,
            "secret": secret,
            "endpoint_url": self.endpoint(server),
            "skip_instance_cache": True,
            "config_kwargs": {"read_timeout": COPY_READ_TIMEOUT},
        }

    def put_raw(self, server: str, keys: list[str], body: bytes, threads: int = 8) -> None:
        """PUT ``body`` at each ``bucket/key`` with plain unsigned HTTP on kept-alive connections
        (moto checks no signature): many small objects at the server's pace, not botocore's."""
        local = threading.local()
        port = self.ports[server]

        def put(key: str) -> None:
            conn = getattr(local, "conn", None)
            if conn is None:
                conn = local.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            conn.request("PUT", "/" + urllib.parse.quote(key), body=body)
            response = conn.getresponse()
            response.read()
            if response.status != 200:
                raise RuntimeError(f"PUT {key}: HTTP {response.status}")

        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(put, keys))


# ------------------------------------------------------------------------------------ data


@dataclass(frozen=True)
class Sizes:
    seq: int
    big: int
    parquet_rows: int
    small_files: int
    ls_objects: int

    @staticmethod
    def make(quick: bool) -> Sizes:
        if quick:
            return Sizes(seq=32 * MiB, big=128 * MiB, parquet_rows=500_000, small_files=200, ls_objects=1000)
        return Sizes(seq=256 * MiB, big=1024 * MiB, parquet_rows=4_200_000, small_files=1000, ls_objects=5000)


def _random_bytes(size: int) -> bytes:
    """``size`` bytes in which every MiB differs (its first 8 bytes are its index)."""
    block = os.urandom(MiB)
    return b"".join(
        i.to_bytes(8, "little") + block[8 : min(MiB, size - i * MiB)] for i in range(-(-size // MiB))
    )


def _parquet_file(path: Path, rows: int) -> None:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(6)
    frame = pd.DataFrame(
        {
            "id": np.arange(rows, dtype=np.int64),
            "x": rng.random(rows),
            "y": rng.normal(size=rows),
        }
    )
    frame.to_parquet(path, index=False)


def step(what: str, fn: Callable[[], Any]) -> None:
    started = time.monotonic()
    fn()
    log(f"{what} in {time.monotonic() - started:.1f}s")


def create_data(servers: Servers, sizes: Sizes, scratch: Path) -> dict[str, Any]:
    """Create buckets and objects on both servers; return what was made (keys and sizes).

    Everything is sent once from memory in single PUTs (moto assembles a multipart upload
    by copying it again); a big object on moto is made server-side from seq.bin by
    parallel UploadPartCopy, and the ls/ objects by plain HTTP PUTs, while the other
    steps run.
    """
    started = time.monotonic()
    copies = sizes.big // sizes.seq
    moto, s3r = servers.fs("moto"), servers.fs("s3r")
    moto.mkdir(BUCKET)
    # rclone sends HEAD ?versionId=null after a multipart upload, which moto answers with
    # 400 on an unversioned bucket: every contender gets this versioned bucket.
    moto.call_s3("put_bucket_versioning", Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    s3r.mkdir(BUCKET)

    def make_ls() -> None:  # the longest step (moto takes ~10 ms a PUT): it starts first
        keys = [f"{BUCKET}/ls/o{i:05d}" for i in range(sizes.ls_objects)]
        step("moto: ls/", lambda: servers.put_raw("moto", keys, b"ls"))

    def put(fs: Any, key: str, body: bytes) -> None:
        fs.call_s3("put_object", Bucket=BUCKET, Key=key, Body=body)

    def make_moto() -> None:
        step("moto: seq.bin", lambda: put(moto, "seq.bin", seq))
        step("moto: data.parquet", lambda: put(moto, "data.parquet", local_parquet.read_bytes()))
        step("moto: big.bin", lambda: _compose(moto, f"{BUCKET}/seq.bin", f"{BUCKET}/big.bin", copies))

    def make_s3r() -> None:
        step("s3r: seq.bin", lambda: put(s3r, "seq.bin", seq))
        source = {"Bucket": BUCKET, "Key": "seq.bin"}
        step(
            "s3r: rand.bin",
            lambda: s3r.call_s3("copy_object", Bucket=BUCKET, Key="rand.bin", CopySource=source),
        )
        # s3rver has no UploadPartCopy and fails to complete big multipart uploads: one PUT
        step("s3r: big.bin", lambda: put(s3r, "big.bin", seq * copies))

    with ThreadPoolExecutor(3) as pool:
        futures = [pool.submit(make_ls)]
        seq = _random_bytes(sizes.seq)
        local_parquet = scratch / "data.parquet"
        _parquet_file(local_parquet, sizes.parquet_rows)
        small = scratch / "small"
        small.mkdir(exist_ok=True)
        payload = os.urandom(4096)
        for i in range(sizes.small_files):
            (small / f"f{i:05d}").write_bytes(payload)
        futures += [pool.submit(make_moto), pool.submit(make_s3r)]
        for future in futures:
            future.result()
    made = {
        "seq": sizes.seq,
        "big": moto.info(f"{BUCKET}/big.bin")["size"],
        "big_s3r": s3r.info(f"{BUCKET}/big.bin")["size"],
        "parquet": local_parquet.stat().st_size,
        "parquet_rows": sizes.parquet_rows,
        "small_files": sizes.small_files,
        "ls_objects": sizes.ls_objects,
        "small_dir": str(small),
        "data_created_s": round(time.monotonic() - started, 1),
    }
    log(f"data created in {made['data_created_s']}s: {json.dumps(made)}")
    return made


def _compose(fs: Any, src: str, dst: str, copies: int) -> None:
    """dst = src repeated ``copies`` times, by parallel server-side UploadPartCopy (no bytes through us)."""
    bucket, src_key = src.split("/", 1)
    dst_key = dst.split("/", 1)[1]
    upload = fs.call_s3("create_multipart_upload", Bucket=bucket, Key=dst_key)

    def part(n: int) -> dict[str, Any]:
        out = fs.call_s3(
            "upload_part_copy",
            Bucket=bucket,
            Key=dst_key,
            UploadId=upload["UploadId"],
            PartNumber=n,
            CopySource={"Bucket": bucket, "Key": src_key},
        )
        return {"PartNumber": n, "ETag": out["CopyPartResult"]["ETag"]}

    with ThreadPoolExecutor(copies) as pool:
        parts = list(pool.map(part, range(1, copies + 1)))
    fs.call_s3(
        "complete_multipart_upload",
        Bucket=bucket,
        Key=dst_key,
        UploadId=upload["UploadId"],
        MultipartUpload={"Parts": parts},
    )


def drop(fs: Any, bucket: str, keys: list[str]) -> None:
    """Delete every version of each key: a versioned bucket keeps an object's bytes (in moto,
    on disk) until its version is deleted. One HEAD and one DELETE per version: moto's
    ListObjectVersions walks the whole bucket and takes seconds."""
    for key in keys:
        for _ in range(10):
            try:
                version = fs.call_s3("head_object", Bucket=bucket, Key=key).get("VersionId") or "null"
            except FileNotFoundError:
                break
            fs.call_s3("delete_object", Bucket=bucket, Key=key, VersionId=version)


# ------------------------------------------------------------------------------------ mounts


class Mount:
    """One contender's mount of both servers under ``root``: ``root/moto`` and ``root/s3r``."""

    name = ""

    def __init__(self, servers: Servers, workdir: Path) -> None:
        self.servers = servers
        self.workdir = workdir / self.name
        self.root = self.workdir / "mnt"
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def path(self, server: str, key: str) -> str:
        return str(self.root / server / key)

    def daemon_pid(self, server: str) -> int:
        return self.procs[server].pid

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        for mnt in self.mountpoints():
            if mounted(mnt):
                subprocess.run(["fusermount3", "-u", mnt], capture_output=True)
        for proc in self.procs.values():
            stop_process(proc)
        for mnt in self.mountpoints():
            if mounted(mnt):
                subprocess.run(["fusermount3", "-uz", mnt], capture_output=True)
        self.procs = {}

    def mountpoints(self) -> list[str]:
        return [str(self.root / s) for s in SERVERS]

    def _spawn(self, key: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        logs = self.workdir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        with open(logs / f"{key}.log", "ab") as out:
            self.procs[key] = subprocess.Popen(
                argv,
                stdout=out,
                stderr=out,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **(env or {})},
                start_new_session=True,
            )

    def _wait_mounted(self, mountpoints: list[str], probe: str) -> None:
        def up() -> bool:
            for key, proc in self.procs.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"{self.name}: {key} exited; see {self.workdir}/logs/{key}.log")
            return all(mounted(m) for m in mountpoints) and os.path.exists(probe)

        wait_for(up, 60, f"{self.name} to mount")

    def fresh_dir(self, name: str) -> Path:
        d = self.workdir / name
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
        return d


class RhfsMount(Mount):
    name = "rhfs"

    def __init__(self, servers: Servers, workdir: Path, log_level: str = "WARNING") -> None:
        super().__init__(servers, workdir)
        self.log_level = log_level

    def mountpoints(self) -> list[str]:
        return [str(self.root)]

    def path(self, server: str, key: str) -> str:
        return str(self.root / server / BUCKET / key)

    def daemon_pid(self, server: str) -> int:
        return self.procs["rhfs"].pid

    def stats(self) -> dict[str, Any]:
        with open(self.root / ".rhfs" / "stats.json") as f:
            return dict(json.load(f))

    def config_text(self, cache_dir: Path) -> str:
        lines = ["[mount]", "attr_ttl = 5.0", f"cache_dir = {json.dumps(str(cache_dir))}", ""]
        lines += ["[here]", f"root = {json.dumps(str(self.workdir / 'here'))}", ""]
        for server in SERVERS:
            key, secret = KEYS[server]
            lines += [
                f"[stores.{server}]",
                'protocol = "s3"',
                f'buckets = ["{BUCKET}"]',
                f"options = {{ key = {json.dumps(key)}, secret = {json.dumps(secret)}, "
                f"endpoint_url = {json.dumps(self.servers.endpoint(server))} }}",
                "",
            ]
        return "\n".join(lines)

    def start(self) -> None:
        cache = self.fresh_dir("cache")
        self.fresh_dir("here")
        self.root.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "rhfs.toml"
        fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(self.config_text(cache))
        argv = [sys.executable, "-m", "rhfs", "--log-level", self.log_level, "mount", str(self.root)]
        self._spawn("rhfs", [*argv, "--config", str(config), "--foreground"])
        self._wait_mounted([str(self.root)], str(self.root / "moto" / BUCKET))


class RcloneMount(Mount):
    def __init__(self, servers: Servers, workdir: Path, cache_mode: str) -> None:
        self.name = f"rclone-{cache_mode}"
        self.cache_mode = cache_mode
        super().__init__(servers, workdir)

    def start(self) -> None:
        cache = self.fresh_dir("cache")
        env = {}
        for server in SERVERS:
            key, secret = KEYS[server]
            up = server.upper()
            env.update(
                {
                    f"RCLONE_CONFIG_{up}_TYPE": "s3",
                    f"RCLONE_CONFIG_{up}_PROVIDER": "Other",
                    f"RCLONE_CONFIG_{up}_ENDPOINT": self.servers.endpoint(server),
                    f"RCLONE_CONFIG_{up}_ACCESS_KEY_ID": key,
                    f"RCLONE_CONFIG_{up}_SECRET_ACCESS_KEY": secret,
                    f"RCLONE_CONFIG_{up}_NO_CHECK_BUCKET": "true",
                }
            )
        os.environ.pop("AWS_CA_BUNDLE", None)
        for server in SERVERS:
            mnt = self.root / server
            mnt.mkdir(parents=True, exist_ok=True)
            argv = ["rclone", "mount", f"{server}:{BUCKET}", str(mnt), "--vfs-cache-mode", self.cache_mode]
            argv += ["--use-server-modtime", "--cache-dir", str(cache / server), "--config", "/dev/null"]
            self._spawn(server, argv, env)
        self._wait_mounted(self.mountpoints(), str(self.root / "moto" / "seq.bin"))


class S3fsMount(Mount):
    name = "s3fs"

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        for server in SERVERS:
            key, secret = KEYS[server]
            passwd = self.workdir / f"passwd-{server}"
            fd = os.open(passwd, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(f"{key}:{secret}\n")
            mnt = self.root / server
            mnt.mkdir(parents=True, exist_ok=True)
            argv = ["s3fs", BUCKET, str(mnt), "-f", "-o", f"url={self.servers.endpoint(server)}"]
            argv += ["-o", "use_path_request_style", "-o", f"passwd_file={passwd}"]
            self._spawn(server, argv)
        self._wait_mounted(self.mountpoints(), str(self.root / "moto" / "seq.bin"))


def make_mounts(servers: Servers, workdir: Path, names: list[str]) -> dict[str, Mount]:
    factories = {
        "rhfs": lambda: RhfsMount(servers, workdir),
        "rclone-off": lambda: RcloneMount(servers, workdir, "off"),
        "rclone-full": lambda: RcloneMount(servers, workdir, "full"),
        "s3fs": lambda: S3fsMount(servers, workdir),
    }
    return {name: factories[name]() for name in names if name in factories}


def default_workdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="rhfs-bench-"))
