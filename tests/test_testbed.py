"""The test rig itself: every server comes up, answers through fsspec, and goes away on stop.

No skips: a missing server, binary or client library is a failure here.
"""

from __future__ import annotations

import stat
import time
import tomllib
import uuid

import pytest

try:
    from tests.testbed import SYSTEMS, fsspec_filesystem, pid_alive, start_testbed, stop_testbed
except ImportError:  # tests/ is not a package: pytest puts tests/ itself on sys.path
    from testbed import SYSTEMS, fsspec_filesystem, pid_alive, start_testbed, stop_testbed

pytestmark = pytest.mark.timeout(240)


def _path(tb, system: str, name: str) -> str:
    if system in tb.cluster_roots:
        return f"{tb.cluster_roots[system]}/{name}"
    return f"{tb.bucket}/{name}"


def test_testbed_lifecycle(tmp_path):
    d = tmp_path / "tb"
    t0 = time.monotonic()
    tb = start_testbed(d)
    startup = time.monotonic() - t0
    try:
        assert set(tb.pids) == {"moto", "fake-gcs", "azurite", "cluster-a", "cluster-b"}
        assert all(pid_alive(pid) for pid in tb.pids.values()), tb.pids
        assert all(0 < port < 65536 for port in tb.ports.values())
        assert len(set(tb.ports.values())) == len(tb.ports)

        # The rhfs config: valid TOML, private, pointing at these servers.
        assert stat.S_IMODE(tb.config_path.stat().st_mode) == 0o600
        cfg = tomllib.loads(tb.config_path.read_text())
        assert cfg["mount"]["attr_ttl"] == 1.0
        assert cfg["stores"]["s3"]["options"]["endpoint_url"] == tb.s3_endpoint
        assert cfg["stores"]["gs"]["options"]["endpoint_url"] == tb.gcs_endpoint
        assert cfg["stores"]["azure"]["protocol"] == "az"
        for name in ("cluster-a", "cluster-b"):
            c = cfg["clusters"][name]
            assert c["port"] == tb.cluster_ports[name]
            assert c["root"] == str(tb.cluster_roots[name])
            assert tb.cluster_roots[name].is_dir()
            assert f"[127.0.0.1]:{c['port']} " in tb.known_hosts.read_text()

        # Write and read back one small object on each system, straight through fsspec.
        for system in SYSTEMS:
            fs = fsspec_filesystem(tb, system)
            path = _path(tb, system, f"hello-{uuid.uuid4().hex[:8]}.txt")
            payload = f"hello from {system}\n".encode()
            fs.pipe_file(path, payload)
            assert fs.cat_file(path) == payload, system
            assert fs.info(path)["size"] == len(payload), system
            fs.rm_file(path)
            assert not fs.exists(path), system

        # start again: same servers, nothing restarted.
        tb2 = start_testbed(d)
        assert tb2.pids == tb.pids
        assert tb2.ports == tb.ports
    finally:
        stop_testbed(d)

    assert not [n for n, pid in tb.pids.items() if pid_alive(pid)], "servers survived stop"
    stop_testbed(d)  # stopping twice is fine
    assert not [n for n, pid in tb.pids.items() if pid_alive(pid)]
    print(f"testbed start took {startup:.2f} s")
