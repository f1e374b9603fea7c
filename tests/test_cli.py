"""The command line (the README's "Command line"), always through the real installed binaries.

Covers every command's help and exit codes, the mount life cycle (mount, status,
ls, unmount), busy, stale and hung mount points, a missing libfuse3, and the
``mount.rhfs`` helper's own arguments.
"""

from __future__ import annotations

import ctypes.util
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from service_fixtures import (
    MOUNT_RHFS,
    RHFS,
    daemon_pid,
    force_unmount,
    log_of,
    mount_type,
    mounted,
    run,
    stop_daemon,
    wait_for,
    write_config,
)
from testbed import Testbed, pid_alive

from rhfs import __version__

pytestmark = pytest.mark.timeout(300)

COMMANDS = (
    ["mount"],
    ["unmount"],
    ["status"],
    ["ls"],
    ["cp"],
    ["config"],
    ["config", "check"],
    ["config", "show"],
)
SYSTEMS = ("here", "cluster-a", "cluster-b", "s3", "gs", "azure")
DEAD_STORE = (
    '[stores.dead]\nprotocol = "s3"\nbuckets = ["gone"]\n'
    'options = { key = "k1234", secret = "dead-secret-1", endpoint_url = "http://127.0.0.1:1" }\n'
)


@pytest.fixture
def config(testbed: Testbed, tmp_path: Path) -> Path:
    return write_config(testbed, tmp_path / "cfg")


# -- help, version, usage -----------------------------------------------------------------
def test_top_level_help_lists_commands_and_exit_codes() -> None:
    result = run("--help")
    assert result.returncode == 0
    for command in ("mount", "unmount", "status", "ls", "config"):
        assert f"    {command} " in result.stdout
    assert (
        "exit codes:" in result.stdout
        and "3  the tree is up, but some system is unreachable" in result.stdout
    )
    assert "$RHFS_CONFIG" in result.stdout


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_has_help(command: list[str]) -> None:
    result = run(*command, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: rhfs {' '.join(command)}")
    assert "--log-level" in result.stdout or command == ["config"]


def test_version() -> None:
    result = run("--version")
    assert (result.returncode, result.stdout.strip()) == (0, f"rhfs {__version__}")


def test_bad_usage_exits_2() -> None:
    assert run("frobnicate").returncode == 2
    assert run("mount", "--no-such-flag").returncode == 2
    bad_level = run("--log-level", "LOUD", "status")
    assert bad_level.returncode == 2 and "expected DEBUG, INFO, WARNING or ERROR" in bad_level.stderr


# -- the mount life cycle -----------------------------------------------------------------
def test_mount_status_ls_unmount(config: Path, tmp_path: Path, testbed: Testbed) -> None:
    mnt = tmp_path / "mnt"
    result = run("mount", str(mnt), "--config", str(config))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"rhfs: mounted {mnt} (log: {log_of(config)})"
    pid = daemon_pid(mnt)
    try:
        assert mount_type(mnt) == "fuse.rhfs"
        (mnt / "s3" / "rhfs-test" / "cli-status.txt").write_bytes(b"x" * 1000)

        table = run("status", str(mnt))
        assert table.returncode == 0, table.stderr
        lines = table.stdout.splitlines()
        assert lines[0].startswith(f"rhfs {__version__} at {mnt}  pid {pid}")
        assert lines[2].split()[:4] == ["SYSTEM", "KIND", "HEALTH", "LATENCY"]
        rows = {
            line.split()[0]: line.split() for line in lines[3:] if line.strip() and not line.startswith("ops")
        }
        assert set(SYSTEMS) <= set(rows), rows
        assert rows["s3"][1:3] == ["store", "ok"] and rows["cluster-a"][1] == "cluster"
        assert rows["s3"][7] == "kB" and float(rows["s3"][6]) >= 1.0, "1000 bytes written to s3"
        assert lines[-1].startswith("ops ")

        as_json = json.loads(run("status", str(mnt), "--json").stdout)
        assert as_json["status"]["daemon"]["pid"] == pid
        assert as_json["stats"]["systems"]["s3"]["bytes_written"] >= 1000

        listed = run("ls", str(mnt / "s3" / "rhfs-test"))
        assert listed.returncode == 0 and "cli-status.txt" in listed.stdout.split()
        top = run("ls", str(mnt))
        assert set(top.stdout.split()) >= {"here/", "clusters/", "s3/", "gs/", "azure/"}

        down = run("unmount", str(mnt))
        assert down.returncode == 0, down.stderr
        assert down.stdout.strip().endswith(f"rhfs: unmounted {mnt}")
        assert mount_type(mnt) is None
        assert wait_for(lambda: not pid_alive(pid), 10), "the daemon exits after unmount"
        again = run("unmount", str(mnt))
        assert again.returncode == 1 and f"{mnt} is not mounted" in again.stderr
        gone = run("status", str(mnt))
        assert gone.returncode == 1 and "is not an rhfs mount" in gone.stderr
    finally:
        force_unmount(mnt)
        stop_daemon(pid)


def test_status_without_a_mountpoint_finds_the_only_rhfs_mount(config: Path, tmp_path: Path) -> None:
    with mounted(config, tmp_path / "only") as mnt:
        with open("/proc/self/mountinfo") as f:
            mounts = [line for line in f if " - fuse.rhfs " in line]
        result = run("status", env={"HOME": str(tmp_path)})
        if len(mounts) == 1:
            assert result.returncode == 0 and f" at {mnt} " in result.stdout
        else:  # other rhfs mounts on this machine: it must ask which one
            assert result.returncode == 1 and "several rhfs mounts" in result.stderr


def test_status_exits_3_when_a_system_is_down(testbed: Testbed, tmp_path: Path) -> None:
    config = write_config(testbed, tmp_path / "cfg", mount="op_timeout = 5.0", extra=DEAD_STORE)
    with mounted(config, tmp_path / "mnt") as mnt:
        with pytest.raises(OSError):
            os.listdir(mnt / "dead" / "gone")
        result = run("status", str(mnt))
        assert result.returncode == 3, result.stdout + result.stderr
        row = next(line for line in result.stdout.splitlines() if line.startswith("dead "))
        assert row.split()[1:3] == ["store", "down"]
        assert "dead-secret-1" not in result.stdout


def test_mount_refuses_a_busy_mount_point(config: Path, tmp_path: Path) -> None:
    with mounted(config, tmp_path / "mnt") as mnt:
        pid = daemon_pid(mnt)
        second = run("mount", str(mnt), "--config", str(config))
        assert second.returncode == 1
        assert second.stderr.strip() == f"rhfs: {mnt}: already mounted (rhfs); run: rhfs unmount {mnt}"
        assert daemon_pid(mnt) == pid, "the first daemon keeps serving"
        foreground = run("mount", str(mnt), "--config", str(config), "--foreground")
        assert foreground.returncode == 1 and "already mounted" in foreground.stderr
    other = tmp_path / "tmpfs"
    other.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(other)], check=True)
    try:
        taken = run("mount", str(other), "--config", str(config))
        assert taken.returncode == 1
        assert taken.stderr.strip() == f"rhfs: {other}: already mounted (tmpfs); choose another mount point"
    finally:
        subprocess.run(["umount", str(other)], check=True)
    a_file = tmp_path / "file"
    a_file.write_text("x")
    result = run("mount", str(a_file), "--config", str(config))
    assert result.returncode == 1 and f"{a_file}: not a directory" in result.stderr


def test_mount_creates_a_missing_mount_point(config: Path, tmp_path: Path) -> None:
    with mounted(config, tmp_path / "new" / "deeper") as mnt:
        assert mount_type(mnt) == "fuse.rhfs"


def test_after_kill_9_the_next_mount_cleans_up_the_stale_mount(config: Path, tmp_path: Path) -> None:
    mnt = tmp_path / "mnt"
    with mounted(config, mnt):
        old = daemon_pid(mnt)
        os.kill(old, signal.SIGKILL)
        assert wait_for(lambda: not pid_alive(old), 10)
        with pytest.raises(OSError) as stale:
            os.listdir(mnt)
        assert stale.value.errno in (107, 103), "ENOTCONN or ECONNABORTED: the daemon is gone"
        status = run("status", str(mnt))
        assert status.returncode == 1 and "stale mount (its daemon is gone)" in status.stderr

        again = run("mount", str(mnt), "--config", str(config))
        assert again.returncode == 0, again.stderr
        assert "stale mount (Transport endpoint is not connected); cleaning it up" in again.stderr
        new = daemon_pid(mnt)
        assert new != old
        assert "here" in os.listdir(mnt)
        with open("/proc/self/mountinfo") as f:
            assert sum(f" {mnt} " in line for line in f) == 1, "the stale mount is gone, not stacked"


def test_unmount_cleans_up_a_stale_mount(config: Path, tmp_path: Path) -> None:
    with mounted(config, tmp_path / "mnt") as mnt:
        pid = daemon_pid(mnt)
        os.kill(pid, signal.SIGKILL)
        assert wait_for(lambda: not pid_alive(pid), 10)  # the daemon is gone, not only signalled
        result = run("unmount", str(mnt))
        assert result.returncode == 0, result.stderr
        assert "cleaned up the stale mount" in result.stdout
        assert mount_type(mnt) is None


def test_unmount_refuses_what_rhfs_did_not_mount(tmp_path: Path) -> None:
    result = run("unmount", "/proc")
    assert result.returncode == 1 and "not an rhfs mount (proc); use umount" in result.stderr


def test_unmount_of_a_hung_daemon_times_out_and_says_so(config: Path, tmp_path: Path) -> None:
    with mounted(config, tmp_path / "mnt") as mnt:
        pid = daemon_pid(mnt)
        os.kill(pid, signal.SIGSTOP)
        try:
            status = run("status", str(mnt))
            assert status.returncode == 1 and "does not answer" in status.stderr
            mount = run("mount", str(mnt), "--config", str(config))
            assert mount.returncode == 1 and f"its daemon (pid {pid}) does not answer" in mount.stderr
            result = run("unmount", str(mnt), "--timeout", "2")
            assert (
                result.returncode == 1 and f"the daemon (pid {pid}) did not stop within 2s" in result.stderr
            )
        finally:
            os.kill(pid, signal.SIGCONT)
        assert wait_for(lambda: not pid_alive(pid), 30), "the queued SIGTERM stops it once it runs again"
        assert mount_type(mnt) is None


def test_unmount_while_a_shell_is_inside(config: Path, tmp_path: Path) -> None:
    with mounted(config, tmp_path / "mnt") as mnt:
        shell = subprocess.Popen(["sleep", "60"], cwd=mnt / "here")
        try:
            result = run("unmount", str(mnt))
            assert result.returncode == 0, result.stderr
            assert f"processes {shell.pid} were still using {mnt}" in result.stdout
            assert mount_type(mnt) is None
        finally:
            shell.kill()
            shell.wait()


# -- a missing libfuse3 -------------------------------------------------------------------
def _libfuse3_file() -> str:
    name = ctypes.util.find_library("fuse3")
    assert name, "libfuse3 must be installed on the test machine"
    out = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True).stdout
    path = next(line.split("=> ")[1] for line in out.splitlines() if line.strip().startswith(name))
    return os.path.realpath(path)


@pytest.mark.parametrize("foreground", [False, True], ids=["background", "foreground"])
def test_a_missing_libfuse3_gives_the_apt_command(config: Path, tmp_path: Path, foreground: bool) -> None:
    """libfuse3 hidden in a private mount namespace (an empty file bound over the library)."""
    library = _libfuse3_file()
    mnt = tmp_path / "mnt"
    command = f"mount --bind /dev/null {library} && exec {RHFS} mount {mnt} --config {config}"
    result = subprocess.run(
        ["unshare", "--mount", "sh", "-c", command + (" --foreground" if foreground else "")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1, result
    assert "libfuse3 cannot be loaded" in result.stderr
    assert result.stderr.strip().endswith("install it with: sudo apt-get install -y fuse3")
    assert len(result.stderr.strip().splitlines()) == 1
    assert mount_type(mnt) is None


# -- ls of URLs, without a mount ----------------------------------------------------------
def test_ls_lists_urls_of_every_kind(testbed: Testbed, config: Path) -> None:
    for system in ("s3", "gs", "azure"):
        testbed.fs(system).pipe(f"{testbed.bucket}/cli-ls/{system}.txt", b"12345")
    cluster_root = testbed.cluster_roots["cluster-a"]
    testbed.fs("cluster-a").makedirs(f"{cluster_root}/cli-ls", exist_ok=True)
    testbed.fs("cluster-a").pipe(f"{cluster_root}/cli-ls/a.txt", b"1")
    cases = {
        "s3://rhfs-test/cli-ls": "s3.txt",
        "gs://rhfs-test/cli-ls": "gs.txt",
        "gcs://rhfs-test/cli-ls": "gs.txt",
        "az://rhfs-test/cli-ls": "azure.txt",
        "cluster-a:cli-ls": "a.txt",
        f"cluster-a:{cluster_root}/cli-ls": "a.txt",
        "/s3/rhfs-test/cli-ls": "s3.txt",
        "rhfs://azure/rhfs-test/cli-ls": "azure.txt",
    }
    for url, name in cases.items():
        result = run("ls", url, "--config", str(config))
        assert result.returncode == 0, (url, result.stderr)
        assert result.stdout.split() == [name], (url, result.stdout)
    long = run("ls", "-l", "s3://rhfs-test/cli-ls/s3.txt", "--config", str(config))
    assert long.returncode == 0 and long.stdout.split()[:2] == ["-", "5"]
    top = run("ls", "s3://rhfs-test", "--config", str(config))
    assert "cli-ls/" in top.stdout.split()


def test_ls_of_a_missing_path_or_unknown_store_fails_clearly(config: Path) -> None:
    missing = run("ls", "s3://rhfs-test/no/such/dir", "--config", str(config))
    assert missing.returncode == 1 and missing.stderr.startswith("rhfs: ")
    unknown = run("ls", "wasb://x/y", "--config", str(config))
    assert unknown.returncode == 1 and "no configured store speaks wasb://" in unknown.stderr
    outside = run("ls", "cluster-a:/etc", "--config", str(config))
    assert outside.returncode == 1 and "outside cluster-a's root" in outside.stderr


# -- log level ----------------------------------------------------------------------------
def test_log_level_comes_from_the_cli_or_the_config(testbed: Testbed, tmp_path: Path) -> None:
    quiet = write_config(testbed, tmp_path / "quiet", mount='log_level = "WARNING"')
    with mounted(quiet, tmp_path / "m1") as mnt:
        os.listdir(mnt / "here")
    assert "INFO rhfs.daemon: rhfs" not in log_of(quiet).read_text()

    with mounted(quiet, tmp_path / "m2", "--log-level", "DEBUG") as mnt, pytest.raises(FileNotFoundError):
        os.stat(mnt / "here" / "no-such-file")
    text = log_of(quiet).read_text()
    assert "INFO rhfs.daemon: rhfs" in text and " DEBUG rhfs." in text
    first = text.splitlines()[-1]
    assert time.strftime("%Y-") in first.split()[0], "lines off journald start with a timestamp"


# -- mount.rhfs, the fstab helper ---------------------------------------------------------
def test_mount_helper_usage_and_options(config: Path, tmp_path: Path) -> None:
    usage = run(binary=MOUNT_RHFS)
    assert usage.returncode == 1
    assert "fuse.rhfs  config=/etc/rhfs/config.toml,allow_other,_netdev  0 0" in usage.stderr
    mnt = tmp_path / "mnt"
    unknown = run("rhfs", str(mnt), "-o", f"config={config},frobnicate", binary=MOUNT_RHFS)
    assert unknown.returncode == 1 and "unknown mount option 'frobnicate'" in unknown.stderr
    fake = run(
        "rhfs", str(mnt), "-f", "-v", "-o", f"config={config},frobnicate,_netdev", "-s", binary=MOUNT_RHFS
    )
    assert fake.returncode == 0 and "mount.rhfs: mounting" in fake.stderr
    assert mount_type(mnt) is None, "-f (fake) mounts nothing"
    bad = tmp_path / "bad.toml"
    bad.write_text("[mount]\nattr_tll = 1\n")
    refused = run("rhfs", str(mnt), "-o", f"config={bad}", binary=MOUNT_RHFS)
    assert refused.returncode == 1 and "attr_tll" in refused.stderr


def test_mount_helper_mounts_quietly_with_fstab_options(config: Path, tmp_path: Path) -> None:
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    result = run(
        "rhfs",
        str(mnt),
        "-o",
        f"rw,config={config},ro,allow_other,_netdev,nofail,x-systemd.automount",
        binary=MOUNT_RHFS,
    )
    assert result.returncode == 0, result.stderr
    pid = daemon_pid(mnt)
    try:
        assert result.stdout == "", "mount helpers are quiet on success"
        with open("/proc/self/mountinfo") as f:
            line = next(line for line in f if f" {mnt} " in line)
        assert "allow_other" in line and " ro," in line
        with pytest.raises(OSError) as refused:
            (mnt / "here" / "x").write_text("x")
        assert refused.value.errno == 30, "ro: EROFS"
    finally:
        run("unmount", str(mnt))
        force_unmount(mnt)
        stop_daemon(pid)


def test_mount_fuse3_runs_rhfs_with_the_fstab_arguments(config: Path, tmp_path: Path) -> None:
    """Without /sbin/mount.fuse.rhfs, mount(8) runs mount.fuse3, which runs `rhfs SOURCE DIR -o OPTS`."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    env = dict(os.environ, PATH=f"{Path(RHFS).parent}:{os.environ['PATH']}")
    result = subprocess.run(
        ["/sbin/mount.fuse3", "rhfs", str(mnt), "-t", "fuse.rhfs", "-o", f"config={config},_netdev"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    pid = daemon_pid(mnt)
    try:
        assert mount_type(mnt) == "fuse.rhfs"
        assert "rhfs-test" in os.listdir(mnt / "s3")
    finally:
        run("unmount", str(mnt))
        force_unmount(mnt)
        stop_daemon(pid)
