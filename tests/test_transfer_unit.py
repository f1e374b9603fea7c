"""The copy planner in-process (no FUSE) against the local servers: the paths a mount test cannot steer.

- parallel UploadPartCopy and multipart uploads by a cluster, with the size limits lowered;
- falling back when a cluster lacks curl or python3, and the log line saying why;
- no signed URL or token in any command line sent to a cluster: only in its stdin (a
  command's, or a job line to the helper of the cluster's kept session).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import tomllib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
import tomli_w
from testbed import Testbed

from rhfs.backends import helper_link, remote_helper, s3
from rhfs.backends.signed import HttpRequest
from rhfs.backends.store import StoreBackend
from rhfs.config import load_file
from rhfs.transfer.planner import Planner
from rhfs.transfer.shell import curl_config
from rhfs.transfer.tools import ToolCache
from rhfs.vfs.core import Vfs
from rhfs.wiring import build_core

MiB = 1 << 20
pytestmark = pytest.mark.servers


@pytest.fixture(scope="module")
def vfs(testbed: Testbed, tmp_path_factory: pytest.TempPathFactory) -> Vfs:
    d = tmp_path_factory.mktemp("transfer-unit")
    cfg = tomllib.loads(testbed.config_path.read_text())
    cfg["mount"]["cache_dir"] = str(d / "cache")
    cfg["stores"]["gs"]["transfer_cluster"] = "cluster-b"
    path = d / "rhfs.toml"
    path.write_text(tomli_w.dumps(cfg))
    path.chmod(0o600)
    return build_core(load_file(str(path))).vfs


@pytest.fixture
def name() -> str:
    return f"unit-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def commands(vfs: Vfs, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, bytes]]]:
    """Every (command, stdin) run on a cluster by the planner: a command per file, or a job of a
    session (the helper's command, and the job's line on its stdin)."""
    seen: list[tuple[str, bytes]] = []
    submit = helper_link.Helper.submit

    def recording_submit(helper: Any, fields: dict[str, Any], *args: Any) -> Any:
        seen.append((remote_helper.COMMAND, json.dumps(fields).encode()))
        return submit(helper, fields, *args)

    monkeypatch.setattr(helper_link.Helper, "submit", recording_submit)
    for guard in vfs.table.backends():
        run = guard.abilities.run
        if run is None:
            continue

        def recording(
            command: str, *, stdin: bytes | None = None, timeout: float | None = None, run: Any = run
        ) -> Any:
            seen.append((command, stdin or b""))
            return run(command, stdin=stdin, timeout=timeout)

        monkeypatch.setattr(guard, "abilities", dataclasses.replace(guard.abilities, run=recording))
    yield seen


def tools(vfs: Vfs) -> ToolCache:
    return cast(Planner, vfs.copier).ctx.tools


def copy(vfs: Vfs, src: str, dst: str) -> str:
    loc = vfs.resolve(src)
    return vfs.copier.copy(loc, vfs.resolve(dst), vfs.entry(loc, fresh=True))


def s3_etag(testbed: Testbed, key: str) -> str:
    return str(testbed.fs("s3").info(f"{testbed.bucket}/{key}")["ETag"]).strip('"')


def test_big_s3_copies_use_parallel_upload_part_copy(
    testbed: Testbed, vfs: Vfs, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(s3, "PARALLEL_COPY_FROM", 10 * MiB)
    monkeypatch.setattr(s3, "MIN_COPY_PART", 5 * MiB)
    data = os.urandom(23 * MiB)
    testbed.fs("s3").pipe_file(f"{testbed.bucket}/{name}/big.bin", data)
    route = copy(vfs, f"/s3/{testbed.bucket}/{name}/big.bin", f"/s3/{testbed.bucket}/{name}/copy.bin")
    assert route == "store-copy"
    assert testbed.fs("s3").cat_file(f"{testbed.bucket}/{name}/copy.bin") == data
    assert s3_etag(testbed, f"{name}/copy.bin").endswith("-5")  # five parts of 5 MiB (the last 3 MiB)


def test_a_failed_parallel_copy_is_aborted(testbed: Testbed, vfs: Vfs, name: str) -> None:
    provider = vfs.locate("/s3").backend.abilities.provider
    assert provider is not None
    with pytest.raises(FileNotFoundError):
        provider.server_copy(f"{testbed.bucket}/{name}/none", f"{testbed.bucket}/{name}/x", 2 << 30)
    uploads = testbed.fs("s3").list_multipart_uploads(testbed.bucket)
    assert [u for u in uploads if u["Key"].startswith(name)] == []
    assert not testbed.fs("s3").exists(f"{testbed.bucket}/{name}/x")


def test_s3_copies_wait_for_the_server_longer_than_the_store_clients_read_timeout(
    testbed: Testbed, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server copies before it answers: with the store's read timeout, every copy request
    here would time out and be retried while the first still runs (moto then fails a part
    copied twice, or a completion repeated after it succeeded)."""
    monkeypatch.setattr(s3, "PARALLEL_COPY_FROM", 10 * MiB)
    monkeypatch.setattr(s3, "MIN_COPY_PART", 5 * MiB)
    options = {
        "key": testbed.s3_key,
        "secret": testbed.s3_secret,
        "endpoint_url": testbed.s3_endpoint,
        "config_kwargs": {"read_timeout": 0.001},
    }
    store = StoreBackend("s3-impatient", "s3", options)
    fs = testbed.fs("s3")
    for label, size in (("one", 6 * MiB), ("parts", 12 * MiB)):
        data = os.urandom(size)
        fs.pipe_file(f"{testbed.bucket}/{name}/{label}.bin", data)
        src, dst = f"{testbed.bucket}/{name}/{label}.bin", f"{testbed.bucket}/{name}/{label}-copy.bin"
        store.provider.server_copy(src, dst, size)
        assert fs.cat_file(dst) == data
    assert s3_etag(testbed, f"{name}/parts-copy.bin").endswith("-3")


def test_cluster_uploads_a_multipart_object_with_python(
    testbed: Testbed,
    vfs: Vfs,
    name: str,
    monkeypatch: pytest.MonkeyPatch,
    commands: list[tuple[str, bytes]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(s3.S3Provider, "single_put_limit", 6 * MiB)
    monkeypatch.setattr(s3, "MIN_UPLOAD_PART", 5 * MiB)
    tools(vfs).assume("cluster-a", {"python3", "ssh"})
    data = os.urandom(12 * MiB)
    local = testbed.cluster_roots["cluster-a"] / f"{name}.bin"
    local.write_bytes(data)
    try:
        with caplog.at_level(logging.INFO, logger="rhfs.transfer"):
            route = copy(vfs, f"/clusters/cluster-a/{name}.bin", f"/s3/{testbed.bucket}/{name}/up.bin")
    finally:
        local.unlink()
        tools(vfs).assume("cluster-a", set(), seconds=0)
    assert route == "cluster-python"
    assert "route cluster-curl cannot run" in caplog.text
    assert testbed.fs("s3").cat_file(f"{testbed.bucket}/{name}/up.bin") == data
    assert s3_etag(testbed, f"{name}/up.bin").endswith("-3")
    command, stdin = commands[-1]
    assert "X-Amz-Signature" not in command and "Signature=" not in command
    assert b"Signature" in stdin


def test_no_curl_and_no_python_falls_back_to_the_relay(
    testbed: Testbed, vfs: Vfs, name: str, caplog: pytest.LogCaptureFixture
) -> None:
    tools(vfs).assume("cluster-b", set())
    data = os.urandom(3 * MiB)
    testbed.fs("gs").pipe_file(f"{testbed.bucket}/{name}/g.bin", data)
    target = testbed.cluster_roots["cluster-b"] / f"{name}.bin"
    try:
        with caplog.at_level(logging.INFO, logger="rhfs.transfer"):
            route = copy(vfs, f"/gs/{testbed.bucket}/{name}/g.bin", f"/clusters/cluster-b/{name}.bin")
        assert route == "relay"
        assert target.read_bytes() == data
    finally:
        target.unlink(missing_ok=True)
        tools(vfs).assume("cluster-b", set(), seconds=0)
    assert "route cluster-curl cannot run (cluster-b has no curl)" in caplog.text
    assert "route cluster-python cannot run (cluster-b has no python3)" in caplog.text


def test_transfer_cluster_streams_a_multipart_object(
    testbed: Testbed, vfs: Vfs, name: str, monkeypatch: pytest.MonkeyPatch, commands: list[tuple[str, bytes]]
) -> None:
    monkeypatch.setattr(s3.S3Provider, "single_put_limit", 6 * MiB)
    monkeypatch.setattr(s3, "MIN_UPLOAD_PART", 5 * MiB)
    data = os.urandom(11 * MiB)
    testbed.fs("gs").pipe_file(f"{testbed.bucket}/{name}/t.bin", data)
    route = copy(vfs, f"/gs/{testbed.bucket}/{name}/t.bin", f"/s3/{testbed.bucket}/{name}/t.bin")
    assert route == "transfer-cluster"
    assert testbed.fs("s3").cat_file(f"{testbed.bucket}/{name}/t.bin") == data
    assert s3_etag(testbed, f"{name}/t.bin").endswith("-3")
    assert all("Signature" not in command for command, _ in commands)


def test_cluster_commands_carry_no_secret(testbed: Testbed, vfs: Vfs, name: str, commands: Any) -> None:
    data = os.urandom(MiB)
    testbed.fs("azure").pipe_file(f"{testbed.bucket}/{name}/a.bin", data)
    target = testbed.cluster_roots["cluster-a"] / f"{name}.bin"
    try:
        route = copy(vfs, f"/azure/{testbed.bucket}/{name}/a.bin", f"/clusters/cluster-a/{name}.bin")
        assert route == "cluster-curl"
        assert target.read_bytes() == data
    finally:
        target.unlink(missing_ok=True)
    command, stdin = commands[-1]
    assert "sig=" not in command and "http" not in command
    assert b"sig=" in stdin


def test_curl_config_quotes_values() -> None:
    request = HttpRequest("PUT", 'http://h/k?a="b"\\c', {"x-ms-blob-type": "BlockBlob"})
    assert curl_config(request).decode().splitlines() == [
        'url = "http://h/k?a=\\"b\\"\\\\c"',
        'request = "PUT"',
        'header = "x-ms-blob-type: BlockBlob"',
    ]
    assert "http" not in repr(request)


def test_part_sizes_stay_within_the_limits() -> None:
    assert s3.copy_part_size(1 << 30) == 128 * MiB
    assert s3.copy_part_size(100 << 40) == 5 << 30
    assert -(-(40 << 40) // s3.copy_part_size(40 << 40)) <= s3.MAX_PARTS
    assert s3.upload_part_size(5 << 40) * s3.MAX_PARTS >= 5 << 40  # S3's largest object


def test_one_provider_map_serves_urls_and_stores() -> None:
    from rhfs.backends.providers import PROVIDER_OF
    from rhfs.errors import CantCopy
    from rhfs.urls import provider

    for protocol, name in PROVIDER_OF.items():
        assert provider(protocol) == StoreBackend("x", protocol, {}).provider.name == name
    assert {provider(p) for p in ("s3a", "gcs", "abfs", "abfss", "adl")} == {"s3", "gs", "az"}
    generic = StoreBackend("m", "memory", {}).provider
    assert provider("memory") == "memory" and generic.name == "fsspec"
    for call in (
        lambda: generic.server_copy("b/k", "b/l", 1),
        lambda: generic.read_request("b/k", 60),
        lambda: generic.write_plan("b/k", 1, 60),
    ):
        with pytest.raises(CantCopy):
            call()
    assert generic.abort_unfinished_uploads("b/k") == 0


def test_tmp_files_of_relays_of_dead_daemons_are_swept(tmp_path: Path) -> None:
    from rhfs.transfer.direct import sweep

    (tmp_path / "999999999-abc").write_bytes(b"x")
    (tmp_path / f"{os.getpid()}-def").write_bytes(b"y")
    sweep(str(tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{os.getpid()}-def"]
