"""Clusters' kept sessions, through the real sshd clusters: the per-file routes as jobs on one connection.

- every route that runs on a cluster (cluster-cp, cluster-push both ways, cluster-curl both
  ways with each store, cluster-python's multipart uploads, transfer-cluster) copies
  byte-exact as a job of the cluster's session, with no byte through the daemon and no
  temporary file left;
- ``cp -r`` of many files inside the mount reuses one session (``sessions`` in
  ``.rhfs/stats.json``) and one helper process per cluster;
- the helper, and a push's helper on its destination, are gone from the clusters once the
  session closes after ``session_idle``, and once the daemon is killed with SIGKILL (the
  clusters are local sshd's: their processes are looked for under each sshd);
- no signed request, token or store address is in any process's argv on the clusters
  while copies run (``ps -eww -o pid=,args=`` sampled throughout);
- without python3 (``ToolCache.assume``), with no session (``session_idle = 0``), or where
  the helper cannot start, the routes run their per-file commands, and the log says so once.

Most tests drive the planner in-process, on a VFS of their own with a short ``session_idle``;
the ``cp -r`` and argv tests go through the shared mount, the SIGKILL test through a mount of
its own.
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import json
import logging
import os
import shutil
import signal
import subprocess
import threading
import time
import tomllib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
import tomli_w
from conftest import RHFS, mounted
from faults_fixtures import HELPER_MARK, argv, daemon_pid, descendants, helpers_under, wait_for, write_config
from testbed import Testbed, pid_alive

from rhfs.backends import helper_link, remote_helper, s3
from rhfs.config import load_file
from rhfs.transfer.planner import Planner
from rhfs.transfer.tools import ToolCache
from rhfs.vfs.core import Vfs
from rhfs.wiring import build_core

pytestmark = pytest.mark.servers
MiB = 1 << 20
IDLE = 1.5  # the session_idle of this file's own VFS
DATA = ("bytes_read", "bytes_written", "bytes_relayed")


# -- helpers ------------------------------------------------------------------------------------
def make_vfs(testbed: Testbed, directory: Path, idle: float = IDLE) -> Vfs:
    cfg = tomllib.loads(testbed.config_path.read_text())
    cfg["mount"]["cache_dir"] = str(directory / "cache")
    cfg["stores"]["gs"]["transfer_cluster"] = "cluster-b"
    for cluster in cfg["clusters"].values():
        cluster["session_idle"] = idle
    path = directory / "rhfs.toml"
    path.write_text(tomli_w.dumps(cfg))
    path.chmod(0o600)
    return build_core(load_file(str(path))).vfs


def close_sessions(vfs: Vfs) -> None:
    for guard in vfs.table.backends():
        if guard.abilities.session is not None:
            guard.abilities.session.close()


@pytest.fixture
def vfs(testbed: Testbed, tmp_path: Path) -> Iterator[Vfs]:
    v = make_vfs(testbed, tmp_path)
    yield v
    close_sessions(v)


def tools(vfs: Vfs) -> ToolCache:
    return cast(Planner, vfs.copier).ctx.tools


class Places:
    """One test's files on every system: written and read straight on the servers."""

    def __init__(self, tb: Testbed) -> None:
        self.tb, self.name = tb, f"sess-{uuid.uuid4().hex[:10]}"
        for cluster in ("cluster-a", "cluster-b"):
            self.folder(cluster)

    def tree(self, system: str, rel: str) -> str:
        if system.startswith("cluster-"):
            return f"/clusters/{system}/{self.name}/{rel}"
        return f"/{system}/{self.tb.bucket}/{self.name}/{rel}"

    def folder(self, cluster: str) -> Path:
        path = self.tb.cluster_roots[cluster] / self.name
        path.mkdir(exist_ok=True)
        return path

    def put(self, system: str, rel: str, data: bytes) -> None:
        if system.startswith("cluster-"):
            (self.folder(system) / rel).write_bytes(data)
        else:
            self.tb.fs(system).pipe_file(f"{self.tb.bucket}/{self.name}/{rel}", data)

    def get(self, system: str, rel: str) -> bytes | None:
        if system.startswith("cluster-"):
            path = self.folder(system) / rel
            return path.read_bytes() if path.exists() else None
        with contextlib.suppress(FileNotFoundError):
            data: bytes = self.tb.fs(system).cat_file(f"{self.tb.bucket}/{self.name}/{rel}")
            return data
        return None

    def leftovers(self) -> list[str]:
        """Temporary files left in this test's folders on the clusters."""
        return [str(p) for c in ("cluster-a", "cluster-b") for p in self.folder(c).glob(".rhfs-tmp-*")]

    def remove(self) -> None:
        for cluster in ("cluster-a", "cluster-b"):
            shutil.rmtree(self.tb.cluster_roots[cluster] / self.name, ignore_errors=True)


@pytest.fixture
def places(testbed: Testbed) -> Iterator[Places]:
    p = Places(testbed)
    yield p
    p.remove()


def copy(vfs: Vfs, src: str, dst: str) -> str:
    loc = vfs.resolve(src)
    return vfs.copier.copy(loc, vfs.resolve(dst), vfs.entry(loc, fresh=True))


def through_daemon(vfs: Vfs) -> int:
    systems = vfs.stats.snapshot()["systems"]
    return sum(counters[c] for counters in systems.values() for c in DATA)


def jobs(snapshot: dict[str, Any], cluster: str) -> tuple[int, int]:
    """(opened, reused) of ``cluster``'s sessions in a stats snapshot."""
    counts = snapshot["sessions"]["systems"].get(cluster, {})
    return counts.get("opened", 0), counts.get("reused", 0)


def helper_processes(tb: Testbed, cluster: str) -> set[int]:
    """Live processes of session helpers on ``cluster`` (under its sshd): helpers, and their ssh."""
    return helpers_under(tb.pids[cluster])


def helpers(pids: set[int]) -> set[int]:
    """The helpers themselves among ``pids`` (not the ssh a helper runs to reach a peer)."""
    return {p for p in pids if os.path.basename(argv(p).split(" ")[0]).startswith(("python", "bash", "sh"))}


def agents() -> set[int]:
    return {
        int(p)
        for p in os.listdir("/proc")
        if p.isdigit() and argv(int(p)).startswith("ssh-agent -a /tmp/rhfs-agent-") and pid_alive(int(p))
    }


def agent_dir(pid: int) -> str:
    """The directory of the agent ``pid`` (``ssh-agent -a DIR/agent.sock ...``)."""
    return os.path.dirname(argv(pid).split()[2])


def helper_dirs() -> set[str]:
    return set(glob.glob("/tmp/rhfs-helper-*"))


# -- every route, as a job of a session ------------------------------------------------------
ROUTES = [
    ("cluster-a", "cluster-a", "cluster-cp", "cluster-a"),
    ("cluster-a", "cluster-b", "cluster-push", "cluster-a"),
    ("cluster-b", "cluster-a", "cluster-push", "cluster-b"),
    ("cluster-a", "s3", "cluster-curl", "cluster-a"),
    ("s3", "cluster-b", "cluster-curl", "cluster-b"),
    ("cluster-b", "gs", "cluster-curl", "cluster-b"),
    ("gs", "cluster-a", "cluster-curl", "cluster-a"),
    ("cluster-a", "azure", "cluster-curl", "cluster-a"),
    ("azure", "cluster-b", "cluster-curl", "cluster-b"),
    ("gs", "s3", "transfer-cluster", "cluster-b"),  # gs's transfer_cluster
]


@pytest.mark.parametrize(("src", "dst", "route", "runs_on"), ROUTES)
def test_every_route_copies_byte_exact_as_a_job_of_one_session(
    vfs: Vfs, places: Places, src: str, dst: str, route: str, runs_on: str
) -> None:
    payloads = {"small.bin": os.urandom(4096), "big.bin": os.urandom(9 * MiB + 123)}
    for rel, data in payloads.items():
        places.put(src, rel, data)
    before = through_daemon(vfs)
    for rel in payloads:
        assert copy(vfs, places.tree(src, rel), places.tree(dst, f"copy-{rel}")) == route
    for rel, data in payloads.items():
        assert places.get(dst, f"copy-{rel}") == data, rel
    assert through_daemon(vfs) == before
    assert jobs(vfs.stats.snapshot(), runs_on) == (1, len(payloads) - 1)  # one session, reused
    assert places.leftovers() == []


def test_multipart_uploads_send_their_parts_from_the_session(
    vfs: Vfs, places: Places, testbed: Testbed, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(s3.S3Provider, "single_put_limit", 6 * MiB)
    monkeypatch.setattr(s3, "MIN_UPLOAD_PART", 5 * MiB)
    data = os.urandom(12 * MiB)
    places.put("cluster-a", "up.bin", data)
    places.put("gs", "relay.bin", data)
    assert copy(vfs, places.tree("cluster-a", "up.bin"), places.tree("s3", "up.bin")) == "cluster-python"
    assert copy(vfs, places.tree("gs", "relay.bin"), places.tree("s3", "relay.bin")) == "transfer-cluster"
    for rel in ("up.bin", "relay.bin"):
        assert places.get("s3", rel) == data
        etag = testbed.fs("s3").info(f"{testbed.bucket}/{places.name}/{rel}")["ETag"]
        assert str(etag).strip('"').endswith("-3"), rel  # three parts, sent in parallel
    assert jobs(vfs.stats.snapshot(), "cluster-a") == (1, 0)
    assert jobs(vfs.stats.snapshot(), "cluster-b") == (1, 0)
    assert through_daemon(vfs) == 0


# -- many files, one session -------------------------------------------------------------------
def stats(mnt: Path) -> dict[str, Any]:
    return json.loads((mnt / ".rhfs" / "stats.json").read_text())


def test_cp_r_of_many_files_reuses_one_session_and_one_helper(testbed: Testbed, mnt: Path) -> None:
    count, name = 60, f"many-{uuid.uuid4().hex[:8]}"
    source = mnt / "clusters" / "cluster-a" / name
    source.mkdir()
    for i in range(count):
        (source / f"f{i:02d}.bin").write_bytes(os.urandom(4096))
    targets = [mnt / "clusters" / "cluster-b" / name, mnt / "s3" / testbed.bucket / name]
    running = {c: helper_processes(testbed, c) for c in ("cluster-a", "cluster-b")}
    before = stats(mnt)
    try:
        for target in targets:
            subprocess.run(["cp", "-r", str(source), str(target)], check=True, timeout=300)
        after = stats(mnt)
        started = {c: helpers(helper_processes(testbed, c) - running[c]) for c in running}
        for target in targets:
            for i in range(count):
                assert (target / f"f{i:02d}.bin").read_bytes() == (source / f"f{i:02d}.bin").read_bytes()
    finally:
        for path in (source, *targets):
            shutil.rmtree(path, ignore_errors=True)
    copies = {
        r: after["copies"][r]["count"] - before["copies"].get(r, {}).get("count", 0) for r in after["copies"]
    }
    assert copies.get("cluster-push") == count and copies.get("cluster-curl") == count
    opened = jobs(after, "cluster-a")[0] - jobs(before, "cluster-a")[0]
    reused = jobs(after, "cluster-a")[1] - jobs(before, "cluster-a")[1]
    assert opened <= 1 and opened + reused == 2 * count, (opened, reused)
    assert len(started["cluster-a"]) == opened  # one helper served every file
    assert len(started["cluster-b"]) <= 1  # the pushes' one helper on cluster-b
    assert {"opened", "reused", "open"} <= set(after["sessions"])
    for system, counters in after["systems"].items():
        old = before["systems"].get(system, {})
        if system != ".rhfs":  # (reading stats.json is read from .rhfs)
            assert all(counters[c] == old.get(c, 0) for c in DATA), system  # nothing through the daemon


# -- nothing left on the clusters ------------------------------------------------------------
def test_the_helpers_are_gone_once_the_session_closes_on_idle(
    vfs: Vfs, places: Places, testbed: Testbed
) -> None:
    running = helper_processes(testbed, "cluster-a") | helper_processes(testbed, "cluster-b")
    dirs, agents_before = helper_dirs(), agents()
    places.put("cluster-a", "x.bin", os.urandom(100_000))
    assert copy(vfs, places.tree("cluster-a", "x.bin"), places.tree("cluster-b", "x.bin")) == "cluster-push"
    started = (helper_processes(testbed, "cluster-a") | helper_processes(testbed, "cluster-b")) - running
    ours = agents() - agents_before
    agent_dirs = {agent_dir(p) for p in ours}
    assert len(helpers(started)) == 2, [argv(p) for p in started]  # one on A, and its peer on B
    assert helper_dirs() == dirs and len(ours) == 1  # B's host keys were removed once it answered
    assert vfs.stats.snapshot()["sessions"]["open"] == 1
    assert wait_for(lambda: not any(pid_alive(p) for p in started), timeout=IDLE + 20)
    assert wait_for(lambda: vfs.stats.snapshot()["sessions"]["open"] == 0, timeout=10)
    assert wait_for(lambda: not any(pid_alive(p) for p in ours), timeout=10)  # the forwarded agent
    assert not any(os.path.exists(d) for d in agent_dirs)


def test_a_daemon_killed_with_sigkill_leaves_no_helper_behind(testbed: Testbed, tmp_path: Path) -> None:
    config = write_config(testbed, tmp_path / "cfg", op_timeout=30)
    name = f"kill-{uuid.uuid4().hex[:8]}"
    running = helper_processes(testbed, "cluster-a") | helper_processes(testbed, "cluster-b")
    dirs, agents_before = helper_dirs(), agents()
    with mounted(config, tmp_path / "mnt") as mnt:
        src, dst = mnt / "clusters" / "cluster-a" / name, mnt / "clusters" / "cluster-b" / name
        src.mkdir()
        dst.mkdir()
        try:
            (src / "x.bin").write_bytes(os.urandom(200_000))
            subprocess.run(["cp", str(src / "x.bin"), str(dst / "x.bin")], check=True, timeout=120)
            assert (
                json.loads((mnt / ".rhfs" / "stats.json").read_text())["copies"]["cluster-push"]["count"] == 1
            )
            started = (
                helper_processes(testbed, "cluster-a") | helper_processes(testbed, "cluster-b")
            ) - running
            ours = agents() - agents_before
            assert len(helpers(started)) == 2 and len(ours) == 1
            agent_dirs = {agent_dir(p) for p in ours}
            assert all(os.path.isdir(d) for d in agent_dirs)
            os.kill(daemon_pid(mnt), signal.SIGKILL)
            assert wait_for(lambda: not any(pid_alive(p) for p in started), timeout=30), [
                argv(p) for p in started if pid_alive(p)
            ]
            assert helper_dirs() - dirs == set()
            # the agent's watcher sees the daemon's pipe end: it kills the agent, removes its directory
            assert wait_for(lambda: not any(pid_alive(p) for p in ours), timeout=5)
            assert wait_for(lambda: not any(os.path.exists(d) for d in agent_dirs), timeout=5)
        finally:
            for cluster in ("cluster-a", "cluster-b"):
                shutil.rmtree(testbed.cluster_roots[cluster] / name, ignore_errors=True)


# -- no secret in any argv ---------------------------------------------------------------------
class PsWatch:
    """Samples ``ps -eww -o pid=,args=`` for the daemon, its children and the clusters' sessions."""

    def __init__(self, roots: list[int]) -> None:
        self.roots = roots
        self.seen: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            watched = {p for root in self.roots for p in [root, *descendants(root)]}
            out = subprocess.run(["ps", "-eww", "-o", "pid=,args="], capture_output=True, text=True).stdout
            for line in out.splitlines():
                pid, _, args = line.strip().partition(" ")
                if pid.isdigit() and int(pid) in watched:
                    self.seen.add(args)

    def __enter__(self) -> PsWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def test_no_signed_request_is_in_any_argv_on_the_clusters(testbed: Testbed, mnt: Path) -> None:
    tag = f"argv-{uuid.uuid4().hex[:8]}"
    s3, gs, az = (mnt / store / testbed.bucket / tag for store in ("s3", "gs", "azure"))
    ca, cb = mnt / "clusters" / "cluster-a" / tag, mnt / "clusters" / "cluster-b" / tag
    payload = os.urandom(3 * MiB)
    for folder in (s3, gs, az, ca, cb):
        folder.mkdir()
    ports = [str(testbed.ports[server]) for server in testbed.ports if not server.startswith("cluster")]
    markers = ("Signature", "sig=", "X-Amz-", "access_token", "Bearer", "token=", "GoogleAccessId")
    try:
        (s3 / "f.bin").write_bytes(payload)
        roots = [daemon_pid(mnt), testbed.pids["cluster-a"], testbed.pids["cluster-b"]]
        with PsWatch(roots) as watch:
            for src, dst in [(s3, ca), (ca, gs), (gs, cb), (cb, az), (az, ca / "back"), (ca, cb / "pushed")]:
                dst.mkdir(exist_ok=True)
                subprocess.run(["cp", str(src / "f.bin"), str(dst / "f.bin")], check=True, timeout=120)
                assert (dst / "f.bin").read_bytes() == payload
    finally:
        for folder in (s3, gs, az, ca, cb):
            shutil.rmtree(folder, ignore_errors=True)
    assert any(HELPER_MARK in args for args in watch.seen), "the watch never saw a helper"
    for args in watch.seen:
        assert not any(m in args for m in markers), args
        assert not any(f"127.0.0.1:{port}" in args for port in ports), args  # no store's address


def test_no_signed_request_is_in_any_argv_on_the_clusters_during_tree_copies(
    testbed: Testbed, tmp_path: Path
) -> None:
    tag = f"argv-tree-{uuid.uuid4().hex[:8]}"
    source = testbed.cluster_roots["cluster-a"] / tag
    for i in range(30):
        (source / f"d{i % 3}").mkdir(parents=True, exist_ok=True)
        (source / f"d{i % 3}" / f"f{i}").write_bytes(os.urandom(20_000 + i))
    (source / "big.bin").write_bytes(os.urandom(3 * MiB))
    ports = [str(testbed.ports[server]) for server in testbed.ports if not server.startswith("cluster")]
    markers = ("Signature", "sig=", "X-Amz-", "access_token", "Bearer", "token=", "GoogleAccessId")
    trips = [
        (f"rhfs://clusters/cluster-a/{tag}", f"rhfs://s3/{testbed.bucket}/{tag}"),
        (f"rhfs://s3/{testbed.bucket}/{tag}", f"rhfs://clusters/cluster-b/{tag}"),
        (f"rhfs://clusters/cluster-b/{tag}", f"rhfs://gs/{testbed.bucket}/{tag}"),
        (f"rhfs://clusters/cluster-a/{tag}", f"rhfs://clusters/cluster-b/{tag}-pushed"),
    ]
    try:
        with PsWatch([os.getpid(), testbed.pids["cluster-a"], testbed.pids["cluster-b"]]) as watch:
            for src, dst in trips:
                argv = [RHFS, "cp", "-r", "--config", str(testbed.config_path), src, dst]
                done = subprocess.run(argv, capture_output=True, text=True, timeout=300)
                assert done.returncode == 0 and "copied 31 files" in done.stdout, done.stderr
        for name in (tag, f"{tag}-pushed"):
            copied = testbed.cluster_roots["cluster-b"] / name
            assert sorted(p.relative_to(copied) for p in copied.rglob("*")) == sorted(
                p.relative_to(source) for p in source.rglob("*")
            )
    finally:
        shutil.rmtree(source, ignore_errors=True)
        for name in (tag, f"{tag}-pushed"):
            shutil.rmtree(testbed.cluster_roots["cluster-b"] / name, ignore_errors=True)
    assert any(HELPER_MARK in args for args in watch.seen), "the watch never saw a helper"
    for args in watch.seen:
        assert not any(m in args for m in markers), args
        assert not any(f"127.0.0.1:{port}" in args for port in ports), args  # no store's address


# -- falling back to a command per file -------------------------------------------------------
FALLBACK = [
    ("cluster-a", "cluster-a", "cluster-cp"),
    ("cluster-a", "cluster-b", "cluster-push"),
    ("cluster-a", "s3", "cluster-curl"),
    ("s3", "cluster-b", "cluster-curl"),
]


def test_without_python3_the_routes_run_a_command_per_file(
    vfs: Vfs, places: Places, caplog: pytest.LogCaptureFixture
) -> None:
    for cluster in ("cluster-a", "cluster-b"):
        tools(vfs).assume(cluster, {"curl", "ssh"})
    data = os.urandom(300_000)
    with caplog.at_level(logging.INFO, logger="rhfs"):
        for i, (src, dst, route) in enumerate(FALLBACK * 2):
            places.put(src, f"s{i}.bin", data)
            assert copy(vfs, places.tree(src, f"s{i}.bin"), places.tree(dst, f"d{i}.bin")) == route
            assert places.get(dst, f"d{i}.bin") == data
    assert vfs.stats.snapshot()["sessions"]["opened"] == 0
    for cluster in ("cluster-a", "cluster-b"):
        said = f"{cluster} has no python3: its copies run one command per file"
        assert caplog.text.count(said) == 1, caplog.text
    assert places.leftovers() == [] and through_daemon(vfs) == 0


def test_a_push_to_a_cluster_without_python3_runs_ssh_per_file(
    vfs: Vfs, places: Places, caplog: pytest.LogCaptureFixture
) -> None:
    tools(vfs).assume("cluster-b", {"curl", "ssh"})
    data = os.urandom(300_000)
    with caplog.at_level(logging.INFO, logger="rhfs"):
        for i in range(2):
            places.put("cluster-a", f"s{i}.bin", data)
            route = copy(vfs, places.tree("cluster-a", f"s{i}.bin"), places.tree("cluster-b", f"d{i}.bin"))
            assert route == "cluster-push" and places.get("cluster-b", f"d{i}.bin") == data
    assert caplog.text.count("cluster-b has no python3: pushes to it run one ssh per file") == 1
    assert jobs(vfs.stats.snapshot(), "cluster-a") == (0, 0)


def test_a_helper_that_cannot_start_sends_the_copies_to_commands(
    vfs: Vfs, places: Places, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(remote_helper, "COMMAND", "echo no python here >&2; exit 3")
    data = os.urandom(300_000)
    with caplog.at_level(logging.INFO, logger="rhfs"):
        for i in range(3):
            places.put("cluster-a", f"s{i}.bin", data)
            assert (
                copy(vfs, places.tree("cluster-a", f"s{i}.bin"), places.tree("s3", f"d{i}.bin"))
                == "cluster-curl"
            )
            assert places.get("s3", f"d{i}.bin") == data
    warnings = [r.getMessage() for r in caplog.records if "cannot start" in r.getMessage()]
    assert len(warnings) == 1 and "exit 3: no python here" in warnings[0], warnings
    assert "one command per file" in warnings[0]
    assert vfs.stats.snapshot()["sessions"]["opened"] == 0


def test_with_no_session_a_multipart_upload_runs_python_per_file(
    testbed: Testbed, places: Places, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(s3.S3Provider, "single_put_limit", 6 * MiB)
    monkeypatch.setattr(s3, "MIN_UPLOAD_PART", 5 * MiB)
    vfs = make_vfs(testbed, tmp_path, idle=0)
    guard = vfs.locate("/clusters/cluster-a").backend
    assert guard.abilities.session is None
    run = guard.abilities.run
    assert run is not None
    commands: list[tuple[str, bytes]] = []

    def recording(command: str, *, stdin: bytes | None = None, timeout: float | None = None) -> Any:
        commands.append((command, stdin or b""))
        return run(command, stdin=stdin, timeout=timeout)

    monkeypatch.setattr(guard, "abilities", dataclasses.replace(guard.abilities, run=recording))
    data = os.urandom(12 * MiB)
    places.put("cluster-a", "up.bin", data)
    assert copy(vfs, places.tree("cluster-a", "up.bin"), places.tree("s3", "up.bin")) == "cluster-python"
    assert places.get("s3", "up.bin") == data
    command, stdin = commands[-1]
    assert command.endswith("exec python3 -") and "Signature" not in command and b"Signature" in stdin


# -- a session that ends, and a noisy login ---------------------------------------------------
def test_a_helper_gone_mid_session_is_replaced_and_the_cluster_stays_up(
    vfs: Vfs, places: Places, testbed: Testbed
) -> None:
    data = os.urandom(100_000)
    running = helper_processes(testbed, "cluster-a")
    places.put("cluster-a", "a.bin", data)
    assert copy(vfs, places.tree("cluster-a", "a.bin"), places.tree("cluster-a", "b.bin")) == "cluster-cp"
    (helper,) = helpers(helper_processes(testbed, "cluster-a") - running)
    os.kill(helper, signal.SIGKILL)
    assert wait_for(lambda: not pid_alive(helper), timeout=10)
    time.sleep(0.5)  # the session sees its channel close
    assert copy(vfs, places.tree("cluster-a", "a.bin"), places.tree("cluster-a", "c.bin")) == "cluster-cp"
    assert places.get("cluster-a", "c.bin") == data
    assert jobs(vfs.stats.snapshot(), "cluster-a") == (2, 0)  # a new session for the second copy
    assert vfs.stats.status()["cluster-a"]["health"] == "ok"


def test_what_a_login_prints_before_the_helper_is_passed_over(
    vfs: Vfs, places: Places, monkeypatch: pytest.MonkeyPatch
) -> None:
    chatty = "echo 'Welcome to the cluster {\"ready\": false}'; "
    monkeypatch.setattr(remote_helper, "COMMAND", chatty + remote_helper.COMMAND)
    program = helper_link.PROGRAM.replace(b'COMMAND = "command -v', b'COMMAND = "echo Welcome; command -v')
    assert program != helper_link.PROGRAM
    monkeypatch.setattr(helper_link, "PROGRAM", program)  # the helper's own COMMAND, for its peers
    data = os.urandom(100_000)
    places.put("cluster-a", "a.bin", data)
    assert copy(vfs, places.tree("cluster-a", "a.bin"), places.tree("cluster-b", "a.bin")) == "cluster-push"
    assert places.get("cluster-b", "a.bin") == data
    assert jobs(vfs.stats.snapshot(), "cluster-a") == (1, 0)
