"""What an operator of a mount sees: the Prometheus endpoint and the kept failed uploads.

One mount of the testbed, through the installed ``rhfs`` binary, with S3 reached through a
:class:`faultproxy.FaultProxy` (so that a test can take it down), its own ``cache_dir`` and
``[mount] metrics_address`` on a free loopback port. Metrics are scraped over real HTTP and
parsed with ``prometheus_client``'s own parser.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import RHFS, mounted
from faultproxy import FaultProxy
from faults_fixtures import DEADLINE, cache_dir, errno_of, health, log_text, wait_for, write_config
from mount_fixtures import let_caches_expire
from prometheus_client.parser import text_string_to_metric_families
from testbed import Testbed

from rhfs import __version__

MiB = 1 << 20


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class OperatorBed:
    tb: Testbed
    mnt: Path
    config: Path
    s3: FaultProxy
    metrics_url: str

    @property
    def bucket(self) -> Path:
        return self.mnt / "s3" / self.tb.bucket

    def fresh_dir(self) -> Path:
        d = self.bucket / f"op-{uuid.uuid4().hex[:8]}"
        d.mkdir()
        return d

    def s3_answers(self) -> bool:
        def probe() -> bool:
            p = self.bucket / f".probe-{uuid.uuid4().hex}"
            return errno_of(lambda: (p.write_bytes(b"probe"), p.unlink())) == 0

        return wait_for(probe, timeout=DEADLINE * 2)


@pytest.fixture(scope="module")
def opbed(testbed: Testbed, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OperatorBed]:
    d = tmp_path_factory.mktemp("operators")
    s3 = FaultProxy(testbed.ports["moto"])
    port = free_port()

    def edit(cfg: dict[str, Any]) -> None:
        cfg["mount"]["metrics_address"] = f"127.0.0.1:{port}"

    config = write_config(testbed, d, s3_port=s3.port, edit=edit)
    try:
        with mounted(config, d / "mnt") as mnt:
            bed = OperatorBed(testbed, mnt, config, s3, f"http://127.0.0.1:{port}/metrics")
            assert bed.s3_answers()
            yield bed
    finally:
        s3.close()


@pytest.fixture
def bed(opbed: OperatorBed) -> Iterator[OperatorBed]:
    yield opbed
    opbed.s3.pass_through()
    assert opbed.s3_answers(), "s3 did not come back"


# -- metrics ----------------------------------------------------------------------------
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(bed: OperatorBed) -> Samples:
    with urllib.request.urlopen(bed.metrics_url, timeout=10) as response:
        assert response.status == 200
        text = response.read().decode()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_metrics_count_real_traffic_and_agree_with_stats_json(bed: OperatorBed, tmp_path: Path) -> None:
    before = scrape(bed)
    assert value(before, "rhfs_system_up", system="s3", kind="store") == 1
    assert value(before, "rhfs_system_health", system="s3", kind="store", state="ok") == 1
    assert value(before, "rhfs_system_health", system="s3", kind="store", state="down") == 0
    assert value(before, "rhfs_uptime_seconds") > 0
    assert value(before, "rhfs_build_info", version=__version__) == 1

    local = tmp_path / "data.bin"
    local.write_bytes(os.urandom(2 * MiB))
    d = bed.fresh_dir()
    subprocess.run(["cp", str(local), str(d / "a.bin")], check=True)
    subprocess.run(["cp", str(d / "a.bin"), str(d / "b.bin")], check=True)  # server-side: store-copy
    assert (d / "b.bin").read_bytes() == local.read_bytes()

    after = scrape(bed)
    written = value(after, "rhfs_written_bytes_total", system="s3") - value(
        before, "rhfs_written_bytes_total", system="s3"
    )
    assert written >= 2 * MiB
    assert (
        value(after, "rhfs_copies_total", route="store-copy")
        == value(before, "rhfs_copies_total", route="store-copy") + 1
    )
    assert value(after, "rhfs_copy_bytes_total", route="store-copy") >= 2 * MiB
    read = "rhfs_read_bytes_total"
    assert value(after, read, system="s3") > value(before, read, system="s3")
    assert sum(v for (n, _), v in after.items() if n == "rhfs_ops_total") > sum(
        v for (n, _), v in before.items() if n == "rhfs_ops_total"
    )
    assert value(after, "rhfs_metadata_calls_total", system="s3", call="stat") > 0
    assert value(after, "rhfs_system_latency_seconds", system="s3") > 0

    stats = json.loads((bed.mnt / ".rhfs" / "stats.json").read_text())
    assert stats["systems"]["s3"]["bytes_written"] >= value(after, "rhfs_written_bytes_total", system="s3")
    assert stats["copies"]["store-copy"]["count"] >= value(after, "rhfs_copies_total", route="store-copy")


def test_metrics_show_a_system_that_is_down_and_its_failed_calls(bed: OperatorBed) -> None:
    target = bed.fresh_dir() / "a.bin"
    target.write_bytes(b"kept on s3")
    let_caches_expire()
    os.listdir(bed.mnt / "here")
    before = scrape(bed)
    bed.s3.down()
    assert errno_of(target.read_bytes) in (errno.EIO, errno.ETIMEDOUT)
    assert wait_for(lambda: health(bed.mnt, "s3") == "down")
    during = scrape(bed)
    assert value(during, "rhfs_system_up", system="s3", kind="store") == 0
    assert value(during, "rhfs_system_health", system="s3", kind="store", state="down") == 1
    failures = sum(v for (n, _), v in during.items() if n == "rhfs_errors_total")
    assert failures > sum(v for (n, _), v in before.items() if n == "rhfs_errors_total")
    assert value(during, "rhfs_system_up", system="here", kind="here") == 1


def test_a_metrics_address_in_use_fails_the_mount_naming_it(bed: OperatorBed, tmp_path: Path) -> None:
    taken = bed.metrics_url.split("/")[2]

    def edit(cfg: dict[str, Any]) -> None:
        cfg["mount"]["metrics_address"] = taken

    config = write_config(bed.tb, tmp_path, edit=edit)
    mountpoint = tmp_path / "mnt"
    result = subprocess.run(
        [RHFS, "mount", str(mountpoint), "--config", str(config)], capture_output=True, text=True, timeout=90
    )
    try:
        assert result.returncode == 1, result
        assert f"cannot serve metrics at {taken}: Address already in use" in result.stderr
        assert not os.path.ismount(mountpoint)
    finally:
        if os.path.ismount(mountpoint):
            subprocess.run([RHFS, "unmount", str(mountpoint)], capture_output=True, timeout=60)


def test_a_malformed_metrics_address_is_a_config_error(bed: OperatorBed, tmp_path: Path) -> None:
    def edit(cfg: dict[str, Any]) -> None:
        cfg["mount"]["metrics_address"] = "9464"

    config = write_config(bed.tb, tmp_path, edit=edit)
    argv = [RHFS, "mount", str(tmp_path / "mnt"), "--config", str(config)]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=90)
    assert result.returncode == 2, result
    assert "[mount] metrics_address: expected HOST:PORT (such as 127.0.0.1:9464), got '9464'" in result.stderr


# -- failed uploads -------------------------------------------------------------------------
def rhfs(bed: OperatorBed, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [RHFS, *argv, "--config", str(bed.config)], capture_output=True, text=True, timeout=120
    )


def listed(bed: OperatorBed, tree_path: str) -> dict[str, Any] | None:
    result = rhfs(bed, "failed", "list", "--json")
    assert result.returncode == 0, result
    found = [k for k in json.loads(result.stdout) if k["target"] == tree_path]
    assert len(found) <= 1, found
    return found[0] if found else None


def tree(bed: OperatorBed, path: Path) -> str:
    return "/" + path.relative_to(bed.mnt).as_posix()


def spools_released(bed: OperatorBed) -> bool:
    """Every file the daemon spooled is released (the kernel's release runs after close returns)."""
    root = cache_dir(bed.config) / "spool"
    return all(p.name == ".lock" for d in root.iterdir() if d.is_dir() for p in d.iterdir())


def write_during_outage(bed: OperatorBed, target: Path, data: bytes) -> None:
    f = open(target, "wb", buffering=0)  # noqa: SIM115 - closed below, and its failure is the point
    f.write(data)
    bed.s3.down()
    try:
        assert errno_of(f.close) in (errno.EIO, errno.ETIMEDOUT)
        assert wait_for(lambda: spools_released(bed))  # its release's retry failed too
    finally:
        bed.s3.pass_through()


def test_a_failed_upload_is_listed_counted_and_retried_to_its_target(bed: OperatorBed) -> None:
    target, data = bed.fresh_dir() / "report.bin", os.urandom(300_000)
    write_during_outage(bed, target, data)
    where = tree(bed, target)
    entry = listed(bed, where)
    assert entry is not None, "the failed upload is not listed"
    assert (entry["reason"], entry["retryable"], entry["size"]) == ("failed", True, len(data))
    assert Path(entry["path"]).read_bytes() == data

    with bed.s3.fault("down"):  # a retry that fails keeps the file
        result = rhfs(bed, "failed", "retry", where)
    assert result.returncode == 1, result
    assert f"{where}: still failing" in result.stderr
    assert listed(bed, where) is not None
    assert bed.s3_answers()

    status = json.loads((bed.mnt / ".rhfs" / "status.json").read_text())["failed_uploads"]
    assert status["count"] >= 1 and status["retryable"] >= 1 and status["bytes"] >= len(data)
    shown = subprocess.run([RHFS, "status", str(bed.mnt)], capture_output=True, text=True, timeout=30)
    assert "failed uploads: " in shown.stdout and "see: rhfs failed list" in shown.stdout, shown
    assert value(scrape(bed), "rhfs_failed_uploads", retryable="true") >= 1

    result = rhfs(bed, "failed", "retry", where)
    assert result.returncode == 0, result
    assert f"uploaded {where} ({entry['name']})" in result.stdout
    assert listed(bed, where) is None
    assert not Path(entry["path"]).exists()
    rel = target.relative_to(bed.bucket).as_posix()
    assert bed.tb.fs("s3").cat_file(f"{bed.tb.bucket}/{rel}") == data
    let_caches_expire()
    assert target.read_bytes() == data


def refused_part(bed: OperatorBed, table: Path, name: str) -> dict[str, Any]:
    part = table / name
    assert errno_of(lambda: part.write_bytes(b"not parquet at all")) == errno.EINVAL
    assert wait_for(lambda: spools_released(bed))
    entry = listed(bed, tree(bed, part))
    assert entry is not None
    return entry


def test_a_part_refused_for_its_content_is_not_retried_and_purge_removes_it(bed: OperatorBed) -> None:
    table = bed.mnt / "tables" / f"op{uuid.uuid4().hex[:8]}"
    table.mkdir()
    entry = refused_part(bed, table, "bad.parquet")
    assert (entry["reason"], entry["retryable"]) == ("refused", False)
    assert "not a valid parquet file" in entry["error"]

    result = rhfs(bed, "failed", "retry")
    assert result.returncode == 0, result
    assert f"not retried: {entry['target']}: refused for its content" in result.stdout
    assert listed(bed, entry["target"]) is not None
    assert os.listdir(table) == []

    assert rhfs(bed, "failed", "purge").returncode == 2  # neither names nor --all
    result = rhfs(bed, "failed", "purge", entry["target"])
    assert result.returncode == 0 and "removed 1 kept upload(s)" in result.stdout, result
    assert listed(bed, entry["target"]) is None
    assert not Path(entry["path"]).exists()


def test_kept_uploads_past_their_age_go_when_a_mount_starts(bed: OperatorBed, tmp_path: Path) -> None:
    table = bed.mnt / "tables" / f"op{uuid.uuid4().hex[:8]}"
    table.mkdir()
    old, new = refused_part(bed, table, "old.parquet"), refused_part(bed, table, "new.parquet")
    record = cache_dir(bed.config) / "failed-records" / f"{old['name']}.json"
    doc = json.loads(record.read_text())
    record.write_text(json.dumps({**doc, "kept_at": doc["kept_at"] - 31 * 86400}))

    def edit(cfg: dict[str, Any]) -> None:  # the same cache_dir, the default age of 30 days
        cfg["mount"]["cache_dir"] = str(cache_dir(bed.config))
        cfg["mount"].pop("metrics_address", None)

    second = write_config(bed.tb, tmp_path, s3_port=bed.s3.port, edit=edit)
    with mounted(second, tmp_path / "mnt"):
        assert wait_for(lambda: listed(bed, old["target"]) is None), "the old kept upload is still there"
    assert listed(bed, new["target"]) is not None
    assert f"removed 1 kept upload(s) older than 30 days from {cache_dir(bed.config) / 'failed'}" in log_text(
        bed.config
    )
    rhfs(bed, "failed", "purge", new["target"])
