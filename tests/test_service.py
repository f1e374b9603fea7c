"""rhfs as a service: the systemd unit, a test that plays systemd, fstab, and logs without secrets.

- The unit that ``scripts/install-service.sh`` writes passes ``systemd-analyze verify``.
- A real unix datagram ``NOTIFY_SOCKET`` receives READY=1 only once the mount answers;
  SIGTERM gives STOPPING=1, a pending write (a file written but not yet closed)
  uploaded, and the mount gone. ``rhfs unmount`` (the unit's ExecStop) does the same.
- ``mount -T FSTAB`` and ``mount -t fuse.rhfs`` go through ``/sbin/mount.fuse.rhfs``,
  the link to ``mount.rhfs`` that the install script makes.
- Logs are journald-shaped under systemd, and hold none of the testbed's secrets.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from service_fixtures import (
    MOUNT_RHFS,
    RHFS,
    KeyGate,
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
from rhfs import log as rhfs_log

pytestmark = pytest.mark.timeout(300)
REPO = Path(__file__).resolve().parent.parent
INSTALL = REPO / "scripts" / "install-service.sh"


# -- the unit and the install script ------------------------------------------------------
def _install(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(INSTALL), "--root", str(root), *args], capture_output=True, text=True)


def _unit(text: str) -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values.setdefault(key.strip(), []).append(value.strip())
    return values


def test_the_installed_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    result = _install(tmp_path / "root")
    assert result.returncode == 0, result.stderr
    unit = tmp_path / "root" / "etc" / "systemd" / "system" / "rhfs.service"
    verify = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True)
    assert verify.returncode == 0, verify.stderr
    assert verify.stderr == "", verify.stderr
    keys = _unit(unit.read_text())
    assert keys["Type"] == ["notify"]
    assert keys["After"] == ["network-online.target"] and keys["Wants"] == ["network-online.target"]
    assert keys["Restart"] == ["on-failure"]
    assert keys["ExecStart"] == [f"{RHFS} mount /rh --foreground --config /etc/rhfs/config.toml"]
    assert keys["ExecStop"][0].startswith(f"-{RHFS} unmount /rh")
    shipped = _unit((REPO / "systemd" / "rhfs.service").read_text())
    assert shipped["ExecStart"] == [
        "/usr/local/bin/rhfs mount /rh --foreground --config /etc/rhfs/config.toml"
    ]
    assert {k: v for k, v in shipped.items() if not k.startswith("Exec")} == {
        k: v for k, v in keys.items() if not k.startswith("Exec")
    }, "the script changes only the paths"


def test_install_service_script_writes_unit_helper_and_private_config(tmp_path: Path) -> None:
    root = tmp_path / "root"
    result = _install(root, "--mountpoint", "/data/rh", "--config", "/etc/rhfs/site.toml")
    assert result.returncode == 0, result.stderr
    assert "systemd-analyze verify: ok" in result.stderr
    unit = _unit((root / "etc/systemd/system/rhfs.service").read_text())
    assert unit["ExecStart"] == [f"{RHFS} mount /data/rh --foreground --config /etc/rhfs/site.toml"]
    assert unit["ExecStop"][0].startswith(f"-{RHFS} unmount /data/rh ")
    helper = root / "sbin" / "mount.fuse.rhfs"
    assert helper.is_symlink() and os.path.realpath(helper) == os.path.realpath(MOUNT_RHFS)
    config = root / "etc" / "rhfs" / "site.toml"
    assert config.stat().st_mode & 0o777 == 0o600
    assert (root / "etc" / "rhfs").stat().st_mode & 0o777 == 0o700
    assert run("config", "check", "--config", str(config)).returncode == 0, "the example config is valid"
    config.write_text("# mine\n")
    again = _install(root, "--mountpoint", "/data/rh", "--config", "/etc/rhfs/site.toml")
    assert again.returncode == 0 and config.read_text() == "# mine\n", "a second run keeps the config"
    bad = subprocess.run(["bash", str(INSTALL), "--frobnicate"], capture_output=True, text=True)
    assert bad.returncode == 1 and "unknown argument" in bad.stderr


# -- a test that plays systemd ------------------------------------------------------------
class Notifications:
    """The receiving end of $NOTIFY_SOCKET, as systemd binds it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))

    def next(self, timeout: float) -> dict[str, str]:
        self.sock.settimeout(timeout)
        data = self.sock.recv(4096).decode()
        return dict(line.split("=", 1) for line in data.splitlines() if "=" in line)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def notify(tmp_path: Path) -> Iterator[Notifications]:
    n = Notifications(tmp_path / "notify.sock")
    yield n
    n.close()


def _start_foreground(
    config: Path, mnt: Path, notify: Notifications, journal: Path
) -> subprocess.Popen[bytes]:
    """``rhfs mount --foreground`` as systemd runs it: NOTIFY_SOCKET, and stderr as the journal stream."""
    err = open(journal, "wb")  # noqa: SIM115 - handed to the child
    st = os.fstat(err.fileno())
    env = dict(os.environ, NOTIFY_SOCKET=str(notify.path), JOURNAL_STREAM=f"{st.st_dev}:{st.st_ino}")
    proc = subprocess.Popen(
        [RHFS, "mount", str(mnt), "--foreground", "--config", str(config)],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=err,
        start_new_session=True,
    )
    err.close()
    return proc


def _ready(notify: Notifications, mnt: Path, proc: subprocess.Popen[bytes]) -> dict[str, str]:
    message = notify.next(timeout=120)
    # At the moment READY=1 arrives, the mount must already answer.
    assert mount_type(mnt) == "fuse.rhfs", "READY=1 before the mount exists"
    assert (mnt / ".rhfs" / "version").read_text() == f"rhfs {__version__}\n", "READY=1 before it answers"
    assert message.get("READY") == "1", message
    assert message.get("STATUS") == f"serving {mnt}"
    assert proc.poll() is None
    return message


@contextlib.contextmanager
def _cleanup(mnt: Path, proc: subprocess.Popen[bytes]) -> Iterator[None]:
    try:
        yield
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        force_unmount(mnt)


@pytest.mark.parametrize("stop", ["sigterm", "exec-stop"])
def test_plays_systemd(testbed: Testbed, tmp_path: Path, notify: Notifications, stop: str) -> None:
    config = write_config(testbed, tmp_path / "cfg")
    mnt = tmp_path / "mnt"
    journal = tmp_path / "journal"
    proc = _start_foreground(config, mnt, notify, journal)
    with _cleanup(mnt, proc):
        _ready(notify, mnt, proc)

        # A pending write: written through the mount, not yet closed (so not yet uploaded).
        key = f"{testbed.bucket}/systemd-{stop}-{uuid.uuid4().hex[:8]}.bin"
        payload = os.urandom(3 << 20)
        pending = open(mnt / "s3" / key, "wb", buffering=0)  # noqa: SIM115 - left open on purpose
        assert pending.write(payload) == len(payload)
        s3 = testbed.fs("s3")
        assert not s3.exists(key), "not uploaded before close or stop"

        if stop == "sigterm":
            proc.send_signal(signal.SIGTERM)
        else:  # the unit's ExecStop
            result = run("unmount", str(mnt))
            assert result.returncode == 0, result.stderr
        stopping = notify.next(timeout=30)
        assert stopping.get("STOPPING") == "1", stopping
        assert proc.wait(timeout=120) == 0
        assert mount_type(mnt) is None, "the mount is gone"
        s3.invalidate_cache()
        assert s3.cat(key) == payload, "the pending write was uploaded"
        with contextlib.suppress(OSError):
            pending.close()  # its mount is gone: close may fail, the data is safe

    lines = journal.read_text().splitlines()
    assert lines and all(re.match(r"<[0-7]>", line) for line in lines), lines[:5]
    text = "\n".join(lines)
    assert f"<6>INFO rhfs.daemon: rhfs {__version__} mounted {mnt}" in text
    if stop == "sigterm":
        assert "<6>INFO rhfs.daemon: SIGTERM: uploading pending writes, then unmounting" in text


def test_a_failed_start_never_says_ready(testbed: Testbed, tmp_path: Path, notify: Notifications) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[mount]\nattr_tll = 1\n")
    proc = _start_foreground(bad, tmp_path / "mnt", notify, tmp_path / "journal")
    with _cleanup(tmp_path / "mnt", proc):
        assert proc.wait(timeout=60) == 2, "exit 2: systemd marks the start failed (Restart=on-failure)"
        with pytest.raises(TimeoutError):
            notify.next(timeout=0.5)
    assert "attr_tll" in (tmp_path / "journal").read_text()


def test_restart_after_a_crash_cleans_up_and_says_ready_again(
    testbed: Testbed, tmp_path: Path, notify: Notifications
) -> None:
    config = write_config(testbed, tmp_path / "cfg")
    mnt = tmp_path / "mnt"
    first = _start_foreground(config, mnt, notify, tmp_path / "journal1")
    with _cleanup(mnt, first):
        _ready(notify, mnt, first)
        first.send_signal(signal.SIGKILL)  # a crash: systemd would restart it
        first.wait()
        second = _start_foreground(config, mnt, notify, tmp_path / "journal2")
        with _cleanup(mnt, second):
            _ready(notify, mnt, second)
            assert "stale mount" in (tmp_path / "journal2").read_text()
            second.send_signal(signal.SIGTERM)
            assert second.wait(timeout=60) == 0


# -- fstab --------------------------------------------------------------------------------
@pytest.fixture
def fstab_helper() -> Iterator[Path]:
    """/sbin/mount.fuse.rhfs -> mount.rhfs, as scripts/install-service.sh links it."""
    link = Path("/sbin/mount.fuse.rhfs")
    created = not link.exists() and not link.is_symlink()
    if created:
        link.symlink_to(MOUNT_RHFS)
    if os.path.realpath(link) != os.path.realpath(MOUNT_RHFS):
        pytest.fail(f"{link} does not point at {MOUNT_RHFS}: run scripts/install-service.sh")
    yield link
    if created:
        link.unlink()


def _umount_and_wait(mnt: Path) -> None:
    pid = daemon_pid(mnt)
    result = subprocess.run(["umount", str(mnt)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert mount_type(mnt) is None
    assert wait_for(lambda: not pid_alive(pid), 30), "umount(8) ends the daemon"


def test_fstab_line_mounts_through_mount_rhfs(testbed: Testbed, tmp_path: Path, fstab_helper: Path) -> None:
    config = write_config(testbed, tmp_path / "cfg")
    mnt = tmp_path / "rh"
    mnt.mkdir()
    fstab = tmp_path / "fstab"
    fstab.write_text(f"rhfs  {mnt}  fuse.rhfs  config={config},allow_other,_netdev  0 0\n")
    try:
        result = subprocess.run(
            ["mount", "-v", "-T", str(fstab), str(mnt)], capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, result.stderr
        assert f"mount.rhfs: mounting {mnt} " in result.stderr, "mount(8) ran mount.fuse.rhfs -> mount.rhfs"
        with open("/proc/self/mountinfo") as f:
            line = next(line for line in f if f" {mnt} " in line)
        assert " - fuse.rhfs rhfs " in line and "allow_other" in line
        assert testbed.bucket in os.listdir(mnt / "s3")
        _umount_and_wait(mnt)

        direct = subprocess.run(
            ["mount", "-t", "fuse.rhfs", "rhfs", str(mnt), "-o", f"config={config},ro"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert direct.returncode == 0, direct.stderr
        assert mount_type(mnt) == "fuse.rhfs"
        with pytest.raises(OSError) as refused:
            (mnt / "here" / "x").write_text("x")
        assert refused.value.errno == 30, "ro: EROFS"
        _umount_and_wait(mnt)
    finally:
        force_unmount(mnt)


def test_fstab_mount_failure_is_reported_to_mount(tmp_path: Path, fstab_helper: Path) -> None:
    mnt = tmp_path / "rh"
    mnt.mkdir()
    bad = tmp_path / "bad.toml"
    bad.write_text("[stores.s3]\nprotocl = 's3'\n")
    result = subprocess.run(
        ["mount", "-t", "fuse.rhfs", "rhfs", str(mnt), "-o", f"config={bad}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert f"{bad}: [stores.s3] protocl: unknown key (did you mean 'protocol'?)" in result.stderr
    assert mount_type(mnt) is None


# -- logs ---------------------------------------------------------------------------------
def _testbed_secrets(tb: Testbed) -> list[str]:
    account_key = re.search(r"AccountKey=([^;]+)", tb.azure_connection_string)
    assert account_key
    key_body = [line for line in tb.client_key.read_text().splitlines() if not line.startswith("-----")]
    return [tb.s3_key, tb.s3_secret, account_key.group(1), tb.azure_connection_string, *key_body[:2]]


def test_logs_never_hold_the_testbeds_secrets(testbed: Testbed, tmp_path: Path) -> None:
    bad_key = "QmFkS2V5Rm9yQXp1cml0ZVRlc3RzT25seTEyMzQ1Njc4OTA="
    bad_azure = testbed.azure_connection_string.replace(
        re.search(r"AccountKey=([^;]+)", testbed.azure_connection_string).group(1),  # type: ignore[union-attr]
        bad_key,
    )
    extra = (
        '[stores.deads3]\nprotocol = "s3"\nbuckets = ["gone"]\n'
        'options = { key = "AKIADEADSTOREKEY", secret = "dead-store-secret-42", '
        'endpoint_url = "http://127.0.0.1:1" }\n'
        f'[stores.badazure]\nprotocol = "az"\nbuckets = ["{testbed.bucket}"]\n'
        f'options = {{ connection_string = "{bad_azure}" }}\n'
    )
    config = write_config(
        testbed, tmp_path / "cfg", mount='log_level = "DEBUG"\nop_timeout = 5.0', extra=extra
    )
    secrets = [*_testbed_secrets(testbed), bad_key, "AKIADEADSTOREKEY", "dead-store-secret-42"]
    seen = []
    with mounted(config, tmp_path / "mnt") as mnt:
        for top in ("s3", "gs", "azure"):
            path = mnt / top / testbed.bucket / f"secret-check-{uuid.uuid4().hex[:6]}.txt"
            path.write_text("payload")
            assert path.read_text() == "payload"
            path.unlink()
        (mnt / "clusters" / "cluster-a" / "secret-check.txt").write_text("x")
        for broken in ("deads3/gone", f"badazure/{testbed.bucket}", "s3/no-such-bucket/x"):
            with pytest.raises(OSError):
                os.listdir(mnt / broken)
        for name in ("status.json", "stats.json", "config.toml"):
            seen.append((mnt / ".rhfs" / name).read_text())
        seen.append(run("status", str(mnt)).stdout)
    log = log_of(config).read_text()
    assert " DEBUG " in log, "the daemon logged at DEBUG"
    assert "badazure" in log and "deads3" in log, "the failures were logged"
    for text in (log, *seen):
        for secret in secrets:
            assert secret not in text, f"a secret ({secret[:4]}...) leaked"


def test_log_lines_are_journald_shaped_and_redacted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # setup() configures the whole process: give pytest its logging and hooks back afterwards.
    monkeypatch.setattr(logging.getLogger(), "handlers", list(logging.getLogger().handlers))
    for name in ("", "rhfs", *rhfs_log.THIRD_PARTY, *rhfs_log.QUIET):
        monkeypatch.setattr(logging.getLogger(name), "level", logging.getLogger(name).level)
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)
    monkeypatch.setattr(threading, "excepthook", threading.excepthook)
    out = tmp_path / "stderr"
    with open(out, "w") as stream:
        st = os.fstat(stream.fileno())
        monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
        rhfs_log.setup("DEBUG", stream=stream)
        rhfs_log.register_secret("hunter2-secret")
        logger = logging.getLogger("rhfs.test")
        logger.debug("debug line")
        logger.warning("server said:\nline two hunter2-secret")
        logging.getLogger("botocore.test").info("third-party info is dropped")
        thread = threading.Thread(target=lambda: (_ for _ in ()).throw(RuntimeError("hunter2-secret")))
        thread.start()
        thread.join()
    lines = out.read_text().splitlines()
    assert lines[0] == "<7>DEBUG rhfs.test: debug line"
    assert lines[1] == "<4>WARNING rhfs.test: server said: line two ***", "one line per event, redacted"
    assert not any("third-party" in line for line in lines)
    assert lines[2].startswith("<2>CRITICAL rhfs: uncaught exception in thread")
    assert all(line.startswith("<") for line in lines), "every traceback line keeps its priority"
    assert lines[-1] == "<2>RuntimeError: ***"
    assert "hunter2-secret" not in out.read_text()

    with open(tmp_path / "elsewhere", "w") as other:
        rhfs_log.setup("INFO", stream=other)  # JOURNAL_STREAM names another file: not the journal
        logging.getLogger("rhfs.test").info("plain")
    plain = (tmp_path / "elsewhere").read_text()
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4} INFO rhfs.test: plain$", plain.strip()), plain


# -- credentials: the provider's chain, refreshed without a remount -----------------------
CREDENTIAL_PROCESS = """
import datetime, json, sys
state, calls = sys.argv[1], sys.argv[2]
with open(state) as f:
    creds = json.load(f)
with open(calls, "a") as f:
    f.write(creds["AccessKeyId"] + "\\n")
expires = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(minutes=12)
print(json.dumps({"Version": 1, "AccessKeyId": creds["AccessKeyId"],
                  "SecretAccessKey": creds["SecretAccessKey"], "Expiration": expires.isoformat()}))
"""


@pytest.fixture
def gate(testbed: Testbed) -> Iterator[KeyGate]:
    g = KeyGate(testbed.s3_endpoint)
    yield g
    g.close()


def test_rotated_credentials_are_picked_up_without_a_remount(
    testbed: Testbed, tmp_path: Path, gate: KeyGate
) -> None:
    """Credentials from the chain (a profile's credential_process, with an expiry less than 15
    minutes away) are fetched again by botocore before they expire: rotating them under the
    daemon needs no remount, while a store given static keys in its config stops working."""
    first = {"AccessKeyId": "AKIAROTATEDKEY000001", "SecretAccessKey": "first-rotated-secret"}
    second = {"AccessKeyId": "AKIAROTATEDKEY000002", "SecretAccessKey": "second-rotated-secret"}
    gate.allowed = {first["AccessKeyId"]}
    bucket = testbed.bucket
    prefix = f"rotation-{uuid.uuid4().hex[:8]}"

    state, calls, script = tmp_path / "creds.json", tmp_path / "calls", tmp_path / "creds.py"
    state.write_text(json.dumps(first))
    script.write_text(CREDENTIAL_PROCESS)
    aws_config = tmp_path / "aws-config"
    process = f"{sys.executable} {script} {state} {calls}"
    aws_config.write_text(f"[profile rhfs-rot]\ncredential_process = {process}\n")
    config = tmp_path / "rhfs.toml"
    config.write_text(
        f'[mount]\ncache_dir = "{tmp_path}/cache"\n[here]\nroot = "{tmp_path}"\n'
        f'[stores.rot]\nprotocol = "s3"\nbuckets = ["{bucket}"]\n'
        f'options = {{ profile = "rhfs-rot", endpoint_url = "{gate.url}" }}\n'
        f'[stores.static]\nprotocol = "s3"\nbuckets = ["{bucket}"]\n'
        f'options = {{ key = "{first["AccessKeyId"]}", secret = "{first["SecretAccessKey"]}", '
        f'endpoint_url = "{gate.url}" }}\n'
    )
    config.chmod(0o600)
    env = {
        "AWS_CONFIG_FILE": str(aws_config),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-credentials"),
        "AWS_ACCESS_KEY_ID": None,
        "AWS_SECRET_ACCESS_KEY": None,
        "AWS_SESSION_TOKEN": None,
        "AWS_PROFILE": None,
        "AWS_ENDPOINT_URL": None,
    }
    mnt = tmp_path / "mnt"
    result = run("mount", str(mnt), "--config", str(config), env=env)
    assert result.returncode == 0, result.stderr
    pid = daemon_pid(mnt)
    s3 = testbed.fs("s3")
    try:
        (mnt / "rot" / bucket / f"{prefix}-before.txt").write_text("before")
        (mnt / "static" / bucket / f"{prefix}-static.txt").write_text("static")
        assert calls.read_text().split() and set(calls.read_text().split()) == {first["AccessKeyId"]}
        assert gate.refused == []

        # Rotate: the chain now hands out a new key, and the provider revokes the old one.
        state.write_text(json.dumps(second))
        gate.allowed = {second["AccessKeyId"]}

        (mnt / "rot" / bucket / f"{prefix}-after.txt").write_text("after")
        assert s3.cat(f"{bucket}/{prefix}-after.txt") == b"after"
        assert second["AccessKeyId"] in calls.read_text().split(), "the daemon asked the chain again"
        with pytest.raises(OSError) as refused:
            (mnt / "static" / bucket / f"{prefix}-static-after.txt").write_text("x")
        assert refused.value.errno in (errno.EACCES, errno.EPERM), "frozen keys: refused"
        assert gate.refused and set(gate.refused) == {first["AccessKeyId"]}
        log = log_of(config).read_text()
        assert "first-rotated-secret" not in log and "second-rotated-secret" not in log
    finally:
        run("unmount", str(mnt))
        force_unmount(mnt)
        stop_daemon(pid)
