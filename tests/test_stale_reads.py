"""A file replaced elsewhere and opened again within ``attr_ttl`` reads whole, never fails.

The mount may still hold the old attributes for up to ``attr_ttl``; a store's reader is tied
to the version it opens (ESTALE once replaced). A new open whose first read meets ESTALE
re-reads the entry and serves the new version instead of failing, when the size the kernel
was told still holds: the reader saw nothing of the old version, so nothing is mixed.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from mount_fixtures import STORES, let_caches_expire, outside
from testbed import Testbed

pytestmark = [pytest.mark.mount, pytest.mark.servers]


@pytest.mark.parametrize("system", STORES)
def test_open_after_an_outside_replace_reads_a_whole_version(
    system_dir: Path, mnt: Path, system: str, testbed: Testbed
) -> None:
    fs, base = outside(testbed, system, system_dir, mnt)
    path = system_dir / "f"
    path.write_bytes(b"old version\n")
    assert [p.name for p in system_dir.iterdir()] == ["f"]  # the listing caches the old entry
    fs.pipe_file(f"{base}/f", b"NEW VERSION\n")  # same size: the kernel's cached size stays right
    assert path.read_bytes() in (b"old version\n", b"NEW VERSION\n")
    let_caches_expire()
    assert path.read_bytes() == b"NEW VERSION\n"
