"""The README's first set-up command, as a new user runs it: from a clone, in a fresh HOME.

The command is taken verbatim from README.md's first ``bash`` block and run by ``bash``
in a copy of this repository's files, with a fresh ``HOME`` and a ``PATH`` that gives
first either Debian's own ``/usr/bin/python3`` (PEP 668-managed: a plain ``pip install``
there is refused) or the Python that runs the tests. It installs from PyPI into a
virtual environment, mounts ``~/rh`` on the embedded default, and the test checks the
tree's top level, then unmounts with the installed ``rhfs``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import require_fuse

REPO = Path(__file__).resolve().parent.parent
SYSTEM_PYTHON = Path("/usr/bin/python3")
TOP_LEVEL = [".rhfs", "blobs", "clusters", "here", "tables"]  # the embedded default, no store found

pytestmark = [pytest.mark.mount, pytest.mark.timeout(600)]


def readme_command_1() -> str:
    blocks = re.findall(r"```bash\n(.*?)```", (REPO / "README.md").read_text(), flags=re.S)
    assert len(blocks) >= 2 and blocks[1].strip() == "bash scripts/test.sh", "README: two set-up commands"
    return blocks[0].strip()


def clone(into: Path) -> Path:
    """This repository's files as a clone has them (tracked and new, none ignored)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = REPO / name
        if source.is_file():
            (into / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, into / name)
    return into


@pytest.fixture(scope="module")
def pip_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Shared by the two runs, so that only the first downloads every wheel."""
    return tmp_path_factory.mktemp("pip-cache")


def test_system_python_is_externally_managed() -> None:
    """What makes the system-Python run below mean something on Debian 12 and Ubuntu 24.04."""
    assert SYSTEM_PYTHON.exists(), "no /usr/bin/python3: install python3"
    stdlib = subprocess.run(
        [str(SYSTEM_PYTHON), "-c", "import sysconfig; print(sysconfig.get_path('stdlib'))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert (Path(stdlib) / "EXTERNALLY-MANAGED").exists(), f"{SYSTEM_PYTHON} is not PEP 668-managed"


@pytest.mark.parametrize("python", ["system", "project"])
def test_readme_command_1_installs_and_mounts(python: str, tmp_path: Path, pip_cache: Path) -> None:
    require_fuse()
    first = SYSTEM_PYTHON.parent if python == "system" else Path(sys.executable).parent
    home = tmp_path / "home"
    home.mkdir()
    work = clone(tmp_path / "rhfs")
    env = {
        "HOME": str(home),
        "PATH": f"{first}:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
        "LANG": "C.UTF-8",
        "PIP_CACHE_DIR": str(pip_cache),
    }
    mountpoint = home / "rh"
    rhfs = home / ".local" / "bin" / "rhfs"
    try:
        result = subprocess.run(
            ["bash", "-c", readme_command_1()],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=480,
            stdin=subprocess.DEVNULL,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert f"rhfs: mounted {mountpoint}" in result.stdout, result.stdout + result.stderr
        venv_python = home / ".local" / "share" / "rhfs" / "venv" / "bin" / "python"
        made_by = subprocess.run(
            [str(venv_python), "-c", "import sys; print(sys.base_prefix)"], capture_output=True, text=True
        ).stdout.strip()
        expected_base = "/usr" if python == "system" else sys.base_prefix
        assert made_by == expected_base, f"the venv was made by {made_by}, not {expected_base}"
        assert sorted(os.listdir(mountpoint)) == TOP_LEVEL
        assert (mountpoint / ".rhfs" / "version").read_text().startswith("rhfs ")

        down = subprocess.run(
            [str(rhfs), "unmount", str(mountpoint)], env=env, capture_output=True, text=True, timeout=120
        )
        assert down.returncode == 0, down.stderr
        assert down.stdout.strip().endswith(f"rhfs: unmounted {mountpoint}")
        assert not os.path.ismount(mountpoint)
    finally:
        subprocess.run(["fusermount3", "-uz", str(mountpoint)], capture_output=True)
