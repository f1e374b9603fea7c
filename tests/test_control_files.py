"""``.rhfs/``: status.json, stats.json, version and config.toml, read through a real mount.

Each test mounts the testbed with its own config copy, so the counters it reads
are its own.
"""

from __future__ import annotations

import errno
import json
import os
import time
import tomllib
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from service_fixtures import daemon_pid, mounted, run, write_config
from testbed import Testbed

from rhfs import __version__

pytestmark = pytest.mark.timeout(300)

FILES = ["config.toml", "stats.json", "status.json", "version"]
SYSTEMS = {"here", "cluster-a", "cluster-b", "s3", "gs", "azure"}
DEAD_STORE = (
    '[stores.dead]\nprotocol = "s3"\nbuckets = ["gone"]\n'
    'options = { key = "k1234", secret = "dead-secret-1", endpoint_url = "http://127.0.0.1:1" }\n'
)


@pytest.fixture
def mnt(testbed: Testbed, tmp_path: Path) -> Iterator[Path]:
    config = write_config(testbed, tmp_path / "cfg", mount="op_timeout = 5.0", extra=DEAD_STORE)
    with mounted(config, tmp_path / "mnt") as mountpoint:
        yield mountpoint


def _json(mnt: Path, name: str) -> dict:
    return json.loads((mnt / ".rhfs" / name).read_text())


def test_control_files_are_listed_and_read_only(mnt: Path) -> None:
    control = mnt / ".rhfs"
    assert sorted(os.listdir(control)) == FILES
    refused = (errno.EROFS, errno.EACCES, errno.EPERM)
    for attempt in (
        lambda: (control / "version").write_text("x"),
        lambda: (control / "new").write_text("x"),
        lambda: (control / "status.json").unlink(),
        lambda: (control / "sub").mkdir(),
        lambda: (control / "version").rename(control / "v2"),
    ):
        with pytest.raises(OSError) as e:
            attempt()
        assert e.value.errno in refused, e.value
    assert sorted(os.listdir(control)) == FILES


def test_version_matches_the_cli(mnt: Path) -> None:
    version = (mnt / ".rhfs" / "version").read_text()
    assert version == f"rhfs {__version__}\n" == run("--version").stdout


def test_status_json_names_the_daemon_and_every_system(mnt: Path, tmp_path: Path) -> None:
    status = _json(mnt, "status.json")
    daemon = status["daemon"]
    assert daemon["pid"] == daemon_pid(mnt) and daemon["pid"] != os.getpid()
    assert daemon["mountpoint"] == str(mnt)
    assert daemon["config"] == str(tmp_path / "cfg" / "rhfs.toml")
    assert daemon["version"] == __version__ and daemon["uptime_s"] >= 0
    systems = status["systems"]
    assert SYSTEMS | {"dead"} <= set(systems)
    assert ".rhfs" not in systems, "the control files are not a system"
    for name, s in systems.items():
        assert {"kind", "health", "last_error", "latency_ms"} <= set(s), name
        assert s["health"] in ("ok", "down", "unknown")
    assert systems["s3"]["kind"] == "store" and systems["cluster-a"]["kind"] == "cluster"
    assert systems["here"]["kind"] == "here"


def test_status_json_shows_health_latency_and_outages(mnt: Path, testbed: Testbed) -> None:
    deadline = time.monotonic() + 30
    while not _json(mnt, "status.json")["startup_check"]["done"] and time.monotonic() < deadline:
        time.sleep(0.1)
    checked = _json(mnt, "status.json")
    assert checked["startup_check"]["done"], "the mount's own check of every system ends"
    before = checked["systems"]
    assert before["gs"]["health"] == "ok" and before["gs"]["latency_ms"] > 0, "tried at start"
    assert before["gs"]["buckets"][testbed.bucket]["state"] == "ok"
    assert before["dead"]["buckets"]["gone"]["state"] == "unreachable"
    for system in ("gs", "azure"):
        os.listdir(mnt / system / testbed.bucket)
    os.listdir(mnt / "clusters" / "cluster-a")
    with pytest.raises(OSError):
        os.listdir(mnt / "dead" / "gone")
    after = _json(mnt, "status.json")["systems"]
    for system in ("gs", "azure", "cluster-a"):
        assert after[system]["health"] == "ok", after[system]
        assert after[system]["latency_ms"] > 0 and after[system]["last_error"] is None
    dead = after["dead"]
    assert dead["health"] == "down" and dead["down_since"] is not None
    # refused at once (Could not connect) or silently dropped (timed out): both name the outage
    reasons = ("timed out", "unreachable", "could not connect", "connection refused")
    assert any(reason in dead["last_error"].lower() for reason in reasons), dead
    assert "dead-secret-1" not in json.dumps(after)


def test_stats_json_counts_ops_errors_and_bytes_per_system(mnt: Path, testbed: Testbed) -> None:
    before = _json(mnt, "stats.json")
    payload = os.urandom(300_000)
    name = f"stats-{uuid.uuid4().hex[:8]}"
    (mnt / "gs" / testbed.bucket / f"{name}-written.bin").write_bytes(payload)
    testbed.fs("gs").pipe(f"{testbed.bucket}/{name}-read.bin", payload)  # never seen by the mount
    assert (mnt / "gs" / testbed.bucket / f"{name}-read.bin").read_bytes() == payload
    for _ in range(3):
        with pytest.raises(FileNotFoundError):
            os.stat(mnt / "here" / f"missing-{uuid.uuid4().hex}")
    after = _json(mnt, "stats.json")

    def ops(stats: dict, name: str) -> int:
        return int(stats["ops"].get(name, 0))

    assert ops(after, "write") > ops(before, "write") and ops(after, "read") > ops(before, "read")
    assert ops(after, "getattr") >= ops(before, "getattr") + 3
    assert after["errors"].get("ENOENT", 0) >= before["errors"].get("ENOENT", 0) + 3
    gs_before = before["systems"].get("gs", {})
    gs = after["systems"]["gs"]
    assert gs["bytes_written"] - gs_before.get("bytes_written", 0) >= len(payload)
    assert gs["bytes_read"] - gs_before.get("bytes_read", 0) >= len(payload)
    assert after["systems"]["s3"]["bytes_written"] == before["systems"].get("s3", {}).get("bytes_written", 0)
    assert after["uptime_s"] >= before["uptime_s"]


def test_control_files_are_generated_at_each_open(mnt: Path) -> None:
    first = _json(mnt, "status.json")
    time.sleep(0.05)
    second = _json(mnt, "status.json")
    assert second["time"] > first["time"], "a fresh document at every open, never a cached one"
    text = (mnt / ".rhfs" / "stats.json").read_bytes()
    assert text.endswith(b"}\n") and json.loads(text), "direct I/O: the whole document, whatever stat said"


def test_config_toml_is_the_effective_config_with_secrets_redacted(mnt: Path, testbed: Testbed) -> None:
    text = (mnt / ".rhfs" / "config.toml").read_text()
    config = tomllib.loads(text)
    assert config["mount"]["attr_ttl"] == 1.0 and config["mount"]["op_timeout"] == 5.0
    assert config["mount"]["log_level"] == "INFO", "defaults are filled in"
    assert config["stores"]["s3"]["options"]["key"] == "***"
    assert config["stores"]["s3"]["options"]["secret"] == "***"
    assert config["stores"]["s3"]["options"]["endpoint_url"] == testbed.s3_endpoint
    assert config["stores"]["azure"]["options"]["connection_string"] == "***"
    assert config["stores"]["gs"]["options"]["token"] == "anon", "not a secret: left as is"
    assert config["clusters"]["cluster-a"]["identity_file"] == str(testbed.client_key)
    for secret in (testbed.s3_secret, testbed.azure_connection_string, "dead-secret-1"):
        assert secret not in text
