"""Shared fixtures: the local servers, and real FUSE mounts of rhfs over them.

- ``testbed`` (session): moto, fake-gcs-server, Azurite and two sshd clusters on
  loopback, started by ``scripts/testbed.py`` and stopped at the end.
- ``mnt`` (session): ``rhfs mount`` of the testbed's config, through the real
  installed ``rhfs`` binary and the kernel.
- ``system_dir`` (parametrized over every system): a fresh, empty directory
  inside the mount on that system.

A test that needs ``/dev/fuse`` and does not find it fails; it never skips.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from testbed import Testbed, start_testbed, stop_testbed

SYSTEMS = ("here", "s3", "gs", "azure", "cluster-a")
RHFS = shutil.which("rhfs") or "rhfs"


def system_path(mountpoint: Path, system: str, bucket: str = "rhfs-test") -> Path:
    if system == "here":
        return mountpoint / "here"
    if system.startswith("cluster-"):
        return mountpoint / "clusters" / system
    return mountpoint / system / bucket


def require_fuse() -> None:
    if not os.path.exists("/dev/fuse"):
        pytest.fail("/dev/fuse is missing: the mount tests need a FUSE-capable machine")
    if not shutil.which("fusermount3"):
        pytest.fail("fusermount3 is missing: run scripts/install-system-deps.sh")


@contextlib.contextmanager
def mounted(config: Path, mountpoint: Path, *extra: str) -> Iterator[Path]:
    """``rhfs mount`` with the real binary; always unmounted afterwards."""
    require_fuse()
    mountpoint.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [RHFS, "mount", str(mountpoint), "--config", str(config), *extra],
        capture_output=True,
        text=True,
        timeout=90,
    )
    if result.returncode != 0:
        pytest.fail(f"rhfs mount failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    try:
        yield mountpoint
    finally:
        subprocess.run([RHFS, "unmount", str(mountpoint)], capture_output=True, timeout=60)
        if os.path.ismount(mountpoint):
            subprocess.run(["fusermount3", "-uz", str(mountpoint)], capture_output=True)


@pytest.fixture(scope="session")
def testbed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Testbed]:
    directory = tmp_path_factory.mktemp("testbed")
    tb = start_testbed(directory)
    try:
        yield tb
    finally:
        stop_testbed(directory)


@pytest.fixture(scope="session")
def mnt(testbed: Testbed, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    with mounted(testbed.config_path, tmp_path_factory.mktemp("mnt")) as mountpoint:
        yield mountpoint


@pytest.fixture(params=SYSTEMS)
def system(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def system_dir(mnt: Path, system: str) -> Iterator[Path]:
    """A fresh empty directory on one system, inside the shared mount."""
    path = system_path(mnt, system) / f"t-{uuid.uuid4().hex[:10]}"
    path.mkdir()
    yield path
    shutil.rmtree(path, ignore_errors=True)
