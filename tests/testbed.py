"""Importable helpers for tests that need rhfs's local servers (stdlib only at import time).

    tb = start_testbed(tmp_path / "tb")       # runs scripts/testbed.py start, loads state.json
    fs = fsspec_filesystem(tb, "s3")          # "s3", "gs", "azure", "cluster-a", "cluster-b"
    ...
    stop_testbed(tb.dir)

The servers outlive the test process (they run in their own sessions); always stop them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
TESTBED_SCRIPT = REPO / "scripts" / "testbed.py"
SYSTEMS = ("s3", "gs", "azure", "cluster-a", "cluster-b")
CLUSTERS = ("cluster-a", "cluster-b")


@dataclass
class Testbed:
    __test__ = False  # not a pytest test class

    dir: Path
    state: dict[str, Any]
    config_path: Path  # DIR/rhfs.toml (mode 600)
    env_path: Path  # DIR/env.sh
    ssh_config: Path  # DIR/ssh_config: `ssh -F ssh_config cluster-a`
    known_hosts: Path
    client_key: Path  # private ed25519 key authorised on both clusters
    user: str
    bucket: str  # "rhfs-test", present on every object store
    s3_endpoint: str
    s3_key: str
    s3_secret: str
    gcs_endpoint: str
    azure_endpoint: str  # http://127.0.0.1:PORT/devstoreaccount1
    azure_connection_string: str
    ports: dict[str, int] = field(default_factory=dict)  # server name -> port
    pids: dict[str, int] = field(default_factory=dict)  # server name -> pid
    cluster_ports: dict[str, int] = field(default_factory=dict)
    cluster_roots: dict[str, Path] = field(default_factory=dict)
    cache_dir: Path | None = None
    here_root: Path | None = None
    catalog_url: str = ""
    tables_url: str = ""

    def fs(self, system: str) -> Any:
        return fsspec_filesystem(self, system)

    def stop(self) -> None:
        stop_testbed(self.dir)


def _run(cmd: str, d: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(TESTBED_SCRIPT), cmd, "--dir", str(d), *extra],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=180,
    )


def load_testbed(d: str | os.PathLike[str]) -> Testbed:
    """Build a Testbed from DIR/state.json (no servers are started or checked)."""
    d = Path(d).resolve()
    st = json.loads((d / "state.json").read_text())
    p = st["paths"]
    return Testbed(
        dir=d,
        state=st,
        config_path=Path(p["config"]),
        env_path=Path(p["env"]),
        ssh_config=Path(p["ssh_config"]),
        known_hosts=Path(p["known_hosts"]),
        client_key=Path(p["client_key"]),
        user=st["user"],
        bucket=st["bucket"],
        s3_endpoint=st["s3"]["endpoint_url"],
        s3_key=st["s3"]["key"],
        s3_secret=st["s3"]["secret"],
        gcs_endpoint=st["gcs"]["endpoint_url"],
        azure_endpoint=st["azure"]["blob_endpoint"],
        azure_connection_string=st["azure"]["connection_string"],
        ports={n: int(s["port"]) for n, s in st["servers"].items()},
        pids={n: int(s["pid"]) for n, s in st["servers"].items()},
        cluster_ports={n: int(c["port"]) for n, c in st["clusters"].items()},
        cluster_roots={n: Path(c["root"]) for n, c in st["clusters"].items()},
        cache_dir=Path(p["cache_dir"]),
        here_root=Path(p["here_root"]),
        catalog_url=p["catalog_url"],
        tables_url=p["tables_url"],
    )


def start_testbed(d: str | os.PathLike[str], *extra_args: str) -> Testbed:
    """Start (or find running) servers for DIR; raise RuntimeError with their output if that fails."""
    d = Path(d)
    r = _run("start", d, *extra_args)
    if r.returncode != 0:
        raise RuntimeError(
            f"scripts/testbed.py start --dir {d} failed with exit {r.returncode}\n"
            f"--- stdout\n{r.stdout}\n--- stderr\n{r.stderr}"
        )
    return load_testbed(d)


def stop_testbed(d: str | os.PathLike[str]) -> None:
    r = _run("stop", Path(d))
    if r.returncode != 0:
        raise RuntimeError(
            f"scripts/testbed.py stop --dir {d} failed with exit {r.returncode}\n"
            f"--- stdout\n{r.stdout}\n--- stderr\n{r.stderr}"
        )


def pid_alive(pid: int) -> bool:
    """True if pid exists and is not a zombie (kill -0 succeeds on zombies; /proc does not lie)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read().decode("ascii", "replace")
    except OSError:
        return False
    rest = data[data.rfind(")") + 2 :].split()
    return bool(rest) and rest[0] not in ("Z", "X", "x")


def fsspec_filesystem(tb: Testbed, system: str) -> Any:
    """A fresh (uncached) fsspec filesystem talking straight to one testbed server.

    Object stores are addressed as "rhfs-test/key"; clusters by absolute path (see tb.cluster_roots).
    """
    if system == "s3":
        import s3fs

        # Region left unset on purpose: with us-east-1 moto rejects mkdir(bucket).
        return s3fs.S3FileSystem(
            key=tb.s3_key,
            secret=tb.s3_secret,
            endpoint_url=tb.s3_endpoint,
            skip_instance_cache=True,
        )
    if system in ("gs", "gcs"):
        # Must be set before gcsfs is imported, or every bucket call hangs 60 s on a gRPC probe.
        os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
        import gcsfs

        return gcsfs.GCSFileSystem(token="anon", endpoint_url=tb.gcs_endpoint, skip_instance_cache=True)
    if system in ("azure", "az", "abfs"):
        import adlfs

        return adlfs.AzureBlobFileSystem(
            connection_string=tb.azure_connection_string, skip_instance_cache=True
        )
    if system in CLUSTERS:
        import sshfs

        return sshfs.SSHFileSystem(
            "127.0.0.1",
            port=tb.cluster_ports[system],
            username=tb.user,
            client_keys=[str(tb.client_key)],
            known_hosts=str(tb.known_hosts),
            skip_instance_cache=True,
        )
    raise ValueError(f"unknown testbed system {system!r}; expected one of {', '.join(SYSTEMS)}")
