"""What a new user meets in the first hour, through the installed binaries: failures named, not
dressed as success, and the rough edges of mounting.

- a store option its provider does not take is a config error at mount and in ``config check``
  (exit 2, one line naming the file, the store and the key);
- a configured bucket that does not exist, that the credentials may not list, or whose server
  does not answer, and a cluster that does not answer, are each named by ``rhfs mount`` (one
  line each), shown by ``rhfs status`` and ``status.json`` with their state and last error; a
  missing bucket is absent from its store's listing and ENOENT on access;
- a non-empty mount point is refused unless ``--allow-non-empty``; ``rhfs unmount`` without
  an argument names the mount point it takes down; ``mount.rhfs --help`` exits 0; the tree's
  own directories are dated when the mount began; ``status`` shows only systems of the tree;
  subcommand help describes ``--config`` and keeps the footer short.
"""

from __future__ import annotations

import errno
import json
import os
import re
import time
from pathlib import Path

import pytest
from conftest import require_fuse
from service_fixtures import MOUNT_RHFS, force_unmount, run, write_config
from testbed import Testbed

pytestmark = pytest.mark.timeout(300)


def _bad_store_config(tmp_path: Path) -> Path:
    path = tmp_path / "bad.toml"
    path.write_text(
        '[stores.minio]\nprotocol = "s3"\nbuckets = ["data"]\n'
        'options = { endpointurl = "http://127.0.0.1:9000", anon = true }\n'
    )
    return path


def test_a_bad_store_option_is_a_config_error_at_mount_and_in_config_check(tmp_path: Path) -> None:
    config = _bad_store_config(tmp_path)
    expected = (
        f"{config}: [stores.minio] options: unknown key 'endpointurl' for protocol 's3' "
        "(did you mean 'endpoint_url'?)"
    )
    mount = run("mount", str(tmp_path / "mnt"), "--config", str(config))
    assert mount.returncode == 2, mount.stdout + mount.stderr
    assert mount.stderr.strip().splitlines() == [f"rhfs: {expected}"]
    assert not (tmp_path / "mnt").exists(), "a refused config must not create the mount point"
    check = run("config", "check", "--config", str(config))
    assert check.returncode == 2, check.stdout + check.stderr
    assert check.stderr.splitlines()[0] == expected
    ls = run("ls", "s3://data", "--config", str(config))
    assert ls.returncode == 2 and expected in ls.stderr


def test_mount_names_every_store_it_cannot_make_one_line_each(tmp_path: Path) -> None:
    config = _bad_store_config(tmp_path)
    config.write_text(config.read_text() + '[stores.typo]\nprotocol = "s4"\n')
    mount = run("mount", str(tmp_path / "mnt"), "--config", str(config))
    assert mount.returncode == 2
    assert mount.stderr.strip().splitlines() == [
        f"rhfs: {config}: [stores.minio] options: unknown key 'endpointurl' for protocol 's3' "
        "(did you mean 'endpoint_url'?)",
        f"rhfs: {config}: [stores.typo] protocol: unknown protocol 's4'",
    ]
    check = run("config", "check", "--config", str(config))
    assert check.returncode == 2 and f"2 problem(s) in {config}" in check.stderr


@pytest.fixture
def troubled(testbed: Testbed, tmp_path: Path) -> Path:
    """The testbed's config with a missing bucket, a denied store, a dead store and a dead cluster."""
    bad_key = re.sub(r"AccountKey=[^;]+", "AccountKey=" + "QUFBQQ==" * 11, testbed.azure_connection_string)
    extra = (
        '[stores.moto]\nprotocol = "s3"\nbuckets = ["rhfs-test", "no-such-bucket"]\n'
        f'options = {{ key = "{testbed.s3_key}", secret = "{testbed.s3_secret}", '
        f'endpoint_url = "{testbed.s3_endpoint}" }}\n'
        '[stores.denied]\nprotocol = "az"\nbuckets = ["rhfs-test"]\n'
        f"options = {{ connection_string = {json.dumps(bad_key)} }}\n"
        '[stores.dead]\nprotocol = "s3"\nbuckets = ["gone"]\n'
        'options = { key = "k1234", secret = "dead-secret-1", endpoint_url = "http://127.0.0.1:1", '
        "config_kwargs = { retries = { max_attempts = 1 } } }\n"
        '[clusters.deadcluster]\nhost = "127.0.0.1"\nport = 1\nknown_hosts = ""\n'
    )
    return write_config(testbed, tmp_path / "cfg", extra=extra)


def test_mount_names_every_bucket_and_system_it_cannot_reach(troubled: Path, tmp_path: Path) -> None:
    require_fuse()
    mnt = tmp_path / "mnt"
    mount = run("mount", str(mnt), "--config", str(troubled))
    try:
        assert mount.returncode == 0, mount.stdout + mount.stderr
        said = mount.stderr.splitlines()
        for prefix in (
            "rhfs: moto/no-such-bucket: bucket does not exist (no bucket no-such-bucket)",
            "rhfs: denied/rhfs-test: bucket access denied (",
            "rhfs: dead/gone: bucket unreachable (",
            "rhfs: clusters/deadcluster: unreachable (",
        ):
            assert sum(line.startswith(prefix) for line in said) == 1, (prefix, mount.stderr)
        assert len(said) == 4, mount.stderr
        assert "dead-secret-1" not in mount.stderr and "QUFBQQ" not in mount.stderr

        # the missing bucket is not in the tree; the one that exists is
        assert os.listdir(mnt / "moto") == ["rhfs-test"]
        for attempt in (
            lambda: os.stat(mnt / "moto" / "no-such-bucket"),
            lambda: (mnt / "moto" / "no-such-bucket" / "f").write_bytes(b"x"),
        ):
            with pytest.raises(OSError) as e:
                attempt()
            assert e.value.errno == errno.ENOENT
        (mnt / "moto" / "rhfs-test" / "checks.txt").write_bytes(b"ok")
        with pytest.raises(OSError) as denied:
            os.listdir(mnt / "denied" / "rhfs-test")
        assert denied.value.errno == errno.EACCES

        status = json.loads((mnt / ".rhfs" / "status.json").read_text())
        buckets = {
            f"{name}/{b}": r for name, s in status["systems"].items() for b, r in s.get("buckets", {}).items()
        }
        assert {k: r["state"] for k, r in buckets.items()} == {
            "moto/rhfs-test": "ok",
            "moto/no-such-bucket": "missing",
            "denied/rhfs-test": "denied",
            "dead/gone": "unreachable",
            "s3/rhfs-test": "ok",
            "gs/rhfs-test": "ok",
            "azure/rhfs-test": "ok",
        }
        assert buckets["moto/no-such-bucket"]["last_error"] == "no bucket no-such-bucket"
        assert buckets["dead/gone"]["last_error"] and buckets["denied/rhfs-test"]["last_error"]
        assert status["systems"]["deadcluster"]["health"] == "down"
        assert "file" not in status["systems"], "status shows only the systems of the tree"
        assert status["startup_check"]["done"] and not status["startup_check"]["pending"]

        table = run("status", str(mnt))
        assert table.returncode == 3, table.stdout + table.stderr
        rows = {line.split()[0]: line.split() for line in table.stdout.splitlines()[3:] if line.strip()}
        assert rows["moto/no-such-bucket"][1:3] == ["bucket", "missing"]
        assert rows["moto/no-such-bucket"][-3:] == ["no", "bucket", "no-such-bucket"]
        assert rows["dead/gone"][1:3] == ["bucket", "unreachable"]
        assert rows["denied/rhfs-test"][1:3] == ["bucket", "denied"]
        assert rows["moto/rhfs-test"][1:3] == ["bucket", "ok"]
        assert "file" not in rows

        check = run("config", "check", "--config", str(troubled), "--timeout", "5")
        assert check.returncode == 3
        lines = {line.split()[0]: line for line in check.stdout.splitlines()[1:]}
        assert "MISSING: bucket does not exist" in lines["moto/no-such-bucket"]
        assert "DENIED" in lines["denied/rhfs-test"] and "UNREACHABLE" in lines["dead/gone"]
        assert "reachable" in lines["moto/rhfs-test"] and "UNREACHABLE" in lines["clusters/deadcluster"]
        assert "4 system(s) or bucket(s) not reachable" in check.stderr
    finally:
        run("unmount", str(mnt))
        force_unmount(mnt)


# -- rough edges ------------------------------------------------------------------------------
@pytest.fixture
def config(testbed: Testbed, tmp_path: Path) -> Path:
    require_fuse()
    return write_config(testbed, tmp_path / "cfg")


def test_a_non_empty_mount_point_is_refused_unless_asked(config: Path, tmp_path: Path) -> None:
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    (mnt / "mine.txt").write_text("still here")
    refused = run("mount", str(mnt), "--config", str(config))
    assert refused.returncode == 1
    assert refused.stderr.strip() == (
        f"rhfs: {mnt}: not empty; mounting there would hide its 1 entries until unmounted: "
        "choose an empty directory, or pass --allow-non-empty"
    )
    assert not os.path.ismount(mnt)
    try:
        allowed = run("mount", str(mnt), "--config", str(config), "--allow-non-empty")
        assert allowed.returncode == 0, allowed.stderr
        assert "here" in os.listdir(mnt)
        assert run("unmount", str(mnt)).returncode == 0
        assert (mnt / "mine.txt").read_text() == "still here"
    finally:
        force_unmount(mnt)


def test_unmount_without_an_argument_names_the_mount_point(config: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    mnt = home / "rh"
    started = time.time()
    mounted = run("mount", "--config", str(config), env={"HOME": str(home)})
    assert mounted.returncode == 0, mounted.stderr
    try:
        # the tree's own directories are dated when the mount began, not 1970
        for path in (mnt, mnt / "clusters", mnt / "here", mnt / "s3", mnt / ".rhfs"):
            assert started - 5 <= path.stat().st_mtime <= time.time(), path
        down = run("unmount", env={"HOME": str(home)})
        assert down.returncode == 0, down.stderr
        assert down.stdout.splitlines() == [
            f"rhfs: unmounting {mnt} (no mount point given)",
            f"rhfs: unmounted {mnt}",
        ]
        assert not os.path.ismount(mnt)
    finally:
        force_unmount(mnt)


def test_mount_helper_help_exits_0() -> None:
    result = run("--help", binary=MOUNT_RHFS)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: mount.rhfs SOURCE MOUNTPOINT")
    assert run(binary=MOUNT_RHFS).returncode == 1, "no arguments is still bad usage"


@pytest.mark.parametrize("command", [["ls"], ["cp"], ["config", "check"], ["config", "show"], ["mount"]])
def test_subcommand_help_describes_config_and_keeps_the_footer_short(command: list[str]) -> None:
    result = run(*command, "--help")
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    assert "--config CONFIG config file (default: $RHFS_CONFIG, then ~/.config/rhfs/config.toml" in text
    assert "examples:" not in result.stdout and "(rhfs --help)" in result.stdout
    assert "examples:" in run("--help").stdout
