"""Helpers for the mount-level tests: compare a directory in the mount with a plain local one.

Every comparison goes through real clients (``ls``, ``find``, ``du``, ``cat``) or
plain ``os`` calls, run the same way on both sides, with each side's root
replaced by ``ROOT`` so that outputs can be compared as text.
"""

from __future__ import annotations

import difflib
import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

from testbed import Testbed

ATTR_TTL = 1.0  # the testbed config's [mount] attr_ttl
STORES = ("s3", "gs", "azure")


def sh(
    command: str, cwd: Path, *, check: bool = True, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run a shell command in ``cwd``; with ``check`` fail with its output."""
    result = subprocess.run(
        ["bash", "-c", f"set -euo pipefail; {command}"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"`{command}` in {cwd} exited {result.returncode}\n--- stdout\n{result.stdout}"
            f"\n--- stderr\n{result.stderr}"
        )
    return result


def ls_l(root: Path) -> list[str]:
    """``ls -lR`` of a tree as (type+mode, owner, group, size-for-files, name) lines.

    Left out on purpose (docs/SEMANTICS.md, "Compared with a local directory"):
    link counts, times, the ``total`` block line and directory sizes.
    """
    out = sh("LC_ALL=C ls -lRn --time-style=+ .", root).stdout
    lines = []
    for line in out.splitlines():
        fields = line.split(None, 5)
        if len(fields) < 6 or line.startswith("total"):
            if line.endswith(":"):
                lines.append(line)  # a "./sub:" header
            continue
        mode, _links, owner, group, size, name = fields
        lines.append(" ".join((mode, owner, group, "-" if mode.startswith("d") else size, name.strip())))
    return lines


def find_listing(root: Path) -> list[str]:
    """``find`` output relative to the root, with each entry's type and, for files, size."""
    out = sh("LC_ALL=C find . -mindepth 1 -printf '%y %P\\n'", root).stdout.splitlines()
    sizes = sh("LC_ALL=C find . -type f -printf '%s %P\\n'", root).stdout.splitlines()
    return sorted(out) + sorted(sizes)


def file_bytes(root: Path) -> dict[str, bytes]:
    """Every regular file's bytes, read with ``cat``."""
    names = sh("find . -type f -printf '%P\\0'", root).stdout.split("\0")
    return {
        n: subprocess.run(["cat", n], cwd=root, capture_output=True, check=True).stdout for n in names if n
    }


def du_sb(root: Path) -> int:
    return int(sh("du -sb .", root).stdout.split()[0])


def local_du_sb(root: Path) -> int:
    """What ``du -sb`` gives on the mount for a local tree: directories count 0 bytes there."""
    dir_bytes = sum(int(s) for s in sh("find . -type d -printf '%s\\n'", root).stdout.split())
    return du_sb(root) - dir_bytes


def assert_same_lines(what: str, mounted: list[str], local: list[str]) -> None:
    if mounted != local:
        diff = "\n".join(difflib.unified_diff(local, mounted, "local", "mount", lineterm=""))
        raise AssertionError(f"{what} differs:\n{diff}")


def assert_same_tree(mounted: Path, local: Path) -> None:
    """Same ``ls -lR``, ``find``, ``du -sb`` and bytes on both sides.

    ``mounted`` may also be a local directory (a tree copied back out of the mount).
    """
    assert_same_lines("ls -lR", ls_l(mounted), ls_l(local))
    assert_same_lines("find", find_listing(mounted), find_listing(local))
    in_mount = "fuse" in sh("stat -f -c %T .", mounted).stdout
    mounted_du = du_sb(mounted) if in_mount else local_du_sb(mounted)
    local_du = local_du_sb(local)
    if mounted_du != local_du:
        raise AssertionError(f"du -sb: {mounted_du} in the mount, {local_du} locally")
    mounted_bytes, local_bytes = file_bytes(mounted), file_bytes(local)
    for name, data in local_bytes.items():
        if mounted_bytes[name] != data:
            raise AssertionError(f"{name}: bytes differ ({len(mounted_bytes[name])} vs {len(data)})")


def outside(testbed: Testbed, system: str, mounted: Path, mountpoint: Path) -> tuple[Any, str]:
    """The fsspec filesystem and path that reach ``mounted`` without going through the mount."""
    rel = mounted.relative_to(mountpoint).as_posix()
    if system == "here":
        import fsspec

        assert testbed.here_root is not None
        return fsspec.filesystem("file"), str(testbed.here_root / rel.removeprefix("here/"))
    if system.startswith("cluster-"):
        return testbed.fs(system), str(
            testbed.cluster_roots[system] / rel.removeprefix(f"clusters/{system}/")
        )
    return testbed.fs(system), rel.removeprefix(f"{system}/")


def stats(mountpoint: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((mountpoint / ".rhfs" / "stats.json").read_text())
    return data


def let_caches_expire() -> None:
    """Wait out ``attr_ttl`` so the next lookup reaches the system."""
    time.sleep(ATTR_TTL + 0.3)


def daemon_log(testbed: Testbed) -> Path:
    assert testbed.cache_dir is not None
    return testbed.cache_dir / "rhfs.log"


def make_local_tree(root: Path) -> None:
    """A small tree with nested directories, an empty file and an empty directory."""
    (root / "docs" / "deep" / "deeper").mkdir(parents=True)
    (root / "empty-dir").mkdir()
    (root / "docs" / "readme.txt").write_bytes(b"read me\n")
    (root / "docs" / "deep" / "data.bin").write_bytes(os.urandom(70_000))
    (root / "docs" / "deep" / "deeper" / "note").write_bytes(b"n")
    (root / "zero").write_bytes(b"")
    (root / "top.txt").write_bytes(b"top level\n" * 100)
