"""Standard I/O tools through the mount: fio with verification on every system, stress-ng's
filesystem stressors on ``here/`` and a cluster.

- ``fio --verify=crc32c``: a sequential writer, a random writer and a mixed random reader and
  writer run at once, each verifying what it wrote; then every file is verified again by a
  second run that only reads (``--verify_only``), after the first run closed them, so that on a
  store the bytes come back from the object the upload made.
- ``stress-ng``: the directory, rename, hard link, symbolic link, chmod, fallocate and hdd
  stressors (the hdd one with ``--verify``), a few seconds each, all at once.

Both must end with zero errors, and within their time limits: a hang fails the test.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.mount, pytest.mark.servers, pytest.mark.timeout(180)]

FIO_JOBS = [  # name, pattern, block size, file size: small enough to run in seconds on a store
    ("seq", "write", "64k", "4m"),
    ("rand", "randwrite", "4k", "1m"),
    ("mixed", "randrw", "16k", "2m"),
]
STRESSORS = ("dir", "rename", "link", "symlink", "chmod", "fallocate", "hdd")


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is missing: run scripts/install-system-deps.sh")
    return path


def fio(directory: Path, *extra: str) -> list[dict[str, Any]]:
    """One fio run of FIO_JOBS in ``directory``; the JSON report of each job."""
    argv = [tool("fio"), "--output-format=json", "--ioengine=psync", "--fallocate=none"]
    argv += ["--verify=crc32c", "--verify_fatal=1", "--verify_state_save=0", *extra]
    for name, pattern, block, size in FIO_JOBS:
        argv += [f"--name={name}", f"--directory={directory}", f"--rw={pattern}", f"--bs={block}"]
        argv += [f"--size={size}", "--randrepeat=1"]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, f"fio exited {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr}"
    jobs: list[dict[str, Any]] = json.loads(result.stdout[result.stdout.index("{") :])["jobs"]
    return jobs


def test_fio_verifies_every_byte_it_wrote(system_dir: Path) -> None:
    written = fio(system_dir)
    assert [job["jobname"] for job in written] == [name for name, *_ in FIO_JOBS]
    for job in written:
        assert job["error"] == 0, job["jobname"]
        assert job["write"]["io_bytes"] > 0 and job["read"]["io_bytes"] > 0, job["jobname"]  # it verified
    reread = fio(system_dir, "--verify_only")  # a fresh open of each file: what the system holds
    for job in reread:
        assert job["error"] == 0, job["jobname"]
        assert job["read"]["io_bytes"] > 0, job["jobname"]  # fio counts its pretended writes too


@pytest.mark.parametrize("system", ["here", "cluster-a"])
def test_stress_ng_filesystem_stressors_end_clean(system_dir: Path) -> None:
    argv = [tool("stress-ng"), "--temp-path", str(system_dir), "--timeout", "3s", "--verify"]
    for stressor in STRESSORS:
        argv += [f"--{stressor}", "1"]
    argv += ["--hdd-bytes", "4m", "--metrics-brief"]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    report = result.stdout + result.stderr
    assert result.returncode == 0, f"stress-ng exited {result.returncode}\n{report[-4000:]}"
    assert "successful run completed" in report and " fail:" not in report, report[-4000:]
    for stressor in STRESSORS:
        assert f"] {stressor} " in report, f"{stressor} did not run:\n{report[-4000:]}"
    assert list(system_dir.iterdir()) == []  # each stressor removed what it made
