"""Security: no one else gets in, no secret leaks out, no path leaves its system's root.

- ``allow_other`` is off unless asked for; with it, rhfs also sets
  ``default_permissions`` so that the kernel checks every other user's access
  against the modes rhfs reports (checked as the user ``nobody``);
- a test secret (a fresh S3 key pair, and the Azure account key) never appears in
  the daemon's log at DEBUG, in the argv of rhfs or of anything it runs (here or
  on a cluster), under ``.rhfs/``, or in any file written on the clusters (or
  anywhere under /tmp and $HOME) while the mount served copies between systems;
- path resolution never leaves a system's root: ``..`` is refused, and on ``here/``
  a symbolic link that points out is served as a link, never followed by rhfs,
  whether through the mount or through rhfs's own faces (``rhfs ls``, ``rhfs://``).
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import RHFS, mounted
from faults_fixtures import daemon_pid, descendants, errno_of, log_text, write_config
from testbed import Testbed

pytestmark = [pytest.mark.mount, pytest.mark.servers, pytest.mark.timeout(180)]

NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


def as_nobody(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*NOBODY, *argv], capture_output=True, text=True, timeout=60)


def mount_options(mountpoint: Path) -> set[str]:
    """The kernel's options for the FUSE mount at ``mountpoint`` (mount and super options)."""
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        if fields[4] == str(mountpoint):
            sep = fields.index("-")
            return set(fields[5].split(",")) | set(fields[sep + 3].split(","))
    raise LookupError(f"{mountpoint} is not mounted")


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A directory other users can traverse (pytest's tmp_path is private to root)."""
    d = Path(tempfile.mkdtemp(prefix="rhfs-sec-", dir="/tmp"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


# -- other users -----------------------------------------------------------------------------
def test_other_users_are_kept_out_by_default(testbed: Testbed, open_dir: Path) -> None:
    with mounted(testbed.config_path, open_dir / "mnt") as mnt:
        options = mount_options(mnt)
        assert "allow_other" not in options and "default_permissions" not in options, options
        assert os.listdir(mnt)  # the owner gets in
        denied = as_nobody("ls", str(mnt))
        assert denied.returncode != 0 and "Permission denied" in denied.stderr, denied


@pytest.mark.parametrize("how", ["flag", "config"])
def test_allow_other_brings_default_permissions(
    testbed: Testbed, open_dir: Path, tmp_path: Path, how: str
) -> None:
    home = tmp_path / "home"  # a private home directory, as most are
    home.mkdir(mode=0o700)
    (home / "notes.txt").write_text("mine")
    (home / "notes.txt").chmod(0o600)

    def edit(cfg: dict[str, Any]) -> None:
        cfg["here"]["root"] = str(home)
        cfg["mount"]["allow_other"] = how == "config"

    config = write_config(testbed, tmp_path / "cfg", edit=edit)
    extra = ("--allow-other",) if how == "flag" else ()
    with mounted(config, open_dir / "mnt", *extra) as mnt:
        assert {"allow_other", "default_permissions"} <= mount_options(mnt)
        bucket = mnt / "s3" / testbed.bucket
        seen = as_nobody("ls", str(bucket))
        assert seen.returncode == 0, seen  # rhfs reports directories as 0755: others may look
        name = f"nobody-{uuid.uuid4().hex[:8]}"
        refused = as_nobody("touch", str(bucket / name))
        assert refused.returncode != 0 and "Permission denied" in refused.stderr, refused
        assert not (bucket / name).exists()
        assert (mnt / "here" / "notes.txt").read_text() == "mine"  # the owner gets in
        private = as_nobody("cat", str(mnt / "here" / "notes.txt"))
        assert private.returncode != 0 and "Permission denied" in private.stderr, private
        # here/ shows its root's own mode, not a made-up 0755: a private home stays private.
        assert os.stat(mnt / "here").st_mode & 0o777 == 0o700
        listed = as_nobody("ls", str(mnt / "here"))
        assert listed.returncode != 0 and "Permission denied" in listed.stderr, listed


# -- secrets ---------------------------------------------------------------------------------
class ArgvWatch:
    """Samples the argv of the daemon, its children and every session on the clusters."""

    def __init__(self, roots: list[int]) -> None:
        self.roots = roots
        self.seen: dict[int, str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            for pid in [p for root in self.roots for p in [root, *descendants(root)]]:
                try:
                    self.seen[pid] = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
                except OSError:
                    pass

    def __enter__(self) -> ArgvWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def files_holding(secret: str, *roots: Path, newer_than: Path, exclude: tuple[Path, ...]) -> list[str]:
    """Regular files under ``roots`` changed since ``newer_than`` whose bytes contain ``secret``."""
    found = subprocess.run(
        [
            "find",
            *map(str, roots),
            "-xdev",
            "-type",
            "f",
            "-newer",
            str(newer_than),
            "-size",
            "-20M",
            "-print0",
        ],
        capture_output=True,
    ).stdout.split(b"\0")
    hits = []
    needle = secret.encode()
    for raw in filter(None, found):
        path = Path(os.fsdecode(raw))
        if path in exclude or any(path.is_relative_to(e) for e in exclude):
            continue
        try:
            if needle in path.read_bytes():
                hits.append(str(path))
        except OSError:
            continue
    return hits


def test_secrets_never_leave_the_config(testbed: Testbed, tmp_path: Path) -> None:
    s3_key = "AKIARHFS" + uuid.uuid4().hex[:12].upper()
    s3_secret = f"rhfs-test-secret-{uuid.uuid4().hex}"
    azure_key = testbed.state["azure"]["account_key"]

    def with_test_secret(cfg: dict[str, Any]) -> None:
        cfg["stores"]["s3"]["options"].update(key=s3_key, secret=s3_secret)
        cfg["mount"]["log_level"] = "DEBUG"

    marker = tmp_path / "marker"
    marker.write_text("")
    time.sleep(0.01)
    config = write_config(testbed, tmp_path / "cfg", edit=with_test_secret)
    secrets = {"s3 key": s3_key, "s3 secret": s3_secret, "azure account key": azure_key}
    with mounted(config, tmp_path / "mnt") as mnt:
        cluster_sshds = [testbed.pids["cluster-a"], testbed.pids["cluster-b"]]
        with ArgvWatch([daemon_pid(mnt), *cluster_sshds]) as watch:
            tag = uuid.uuid4().hex[:8]
            s3, gs, az = (mnt / name / testbed.bucket for name in ("s3", "gs", "azure"))
            ca, cb = mnt / "clusters" / "cluster-a", mnt / "clusters" / "cluster-b"
            payload = os.urandom(3 << 20)
            (s3 / f"{tag}.bin").write_bytes(payload)
            # Every route that may carry credentials: store <-> cluster, store -> other store.
            for src, dst in [(s3, ca), (ca, cb), (cb, s3 / "back"), (s3, gs), (s3, az), (az, s3 / "az")]:
                name = f"{tag}.bin"
                (dst).mkdir(exist_ok=True)
                subprocess.run(["cp", str(src / name), str(dst / name)], check=True, timeout=120)
                assert (dst / name).read_bytes() == payload
            errno_of(lambda: (mnt / ".rhfs" / "status.json").write_text("x"))  # a logged failure
            control = {p.name: p.read_bytes() for p in (mnt / ".rhfs").iterdir() if p.is_file()}
        subprocess.run([RHFS, "status", str(mnt)], capture_output=True, timeout=30)
    argv = "\n".join(watch.seen.values())
    assert any("rhfs" in a and "mount" in a for a in watch.seen.values()), "the watch saw no daemon"
    assert any(a.startswith("bash -c") for a in watch.seen.values()), "the watch saw no command on a cluster"
    log = log_text(config)
    assert "DEBUG" in log, "the log was not at DEBUG: the test would prove little"
    for what, secret in secrets.items():
        assert secret not in log, f"{what} in the daemon log"
        assert secret not in argv, f"{what} in an argv: {[a for a in watch.seen.values() if secret in a]}"
        for name, data in control.items():
            assert secret.encode() not in data, f"{what} in .rhfs/{name}"
    for what, secret in secrets.items():
        if what == "azure account key":
            continue  # the well-known development key is in every testbed's files; ours is unique
        hits = files_holding(
            secret,
            *testbed.cluster_roots.values(),
            Path("/tmp"),
            Path.home(),
            newer_than=marker,
            # The S3 server's own request log: a presigned URL names its key id, as S3's access logs do.
            exclude=(config, testbed.dir / "logs"),
        )
        assert not hits, f"{what} written to {hits}"


# -- path resolution -------------------------------------------------------------------------
@pytest.fixture
def escapes(testbed: Testbed) -> Iterator[dict[str, str]]:
    """Symbolic links on here/ that point out of its root, as a user might leave them."""
    assert testbed.here_root is not None
    d = testbed.here_root / f"esc-{uuid.uuid4().hex[:8]}"
    d.mkdir()
    links = {"etc": "/etc", "up": "../../..", "root": "/", "inside": "."}
    for name, target in links.items():
        (d / name).symlink_to(target)
    yield {"dir": d.name, **links}
    shutil.rmtree(d)


def test_links_out_of_here_are_served_as_links_not_followed(mnt: Path, escapes: dict[str, str]) -> None:
    d = mnt / "here" / escapes["dir"]
    for name in ("etc", "up", "root"):
        st = os.lstat(d / name)
        assert os.path.islink(d / name), name
        assert os.readlink(d / name) == escapes[name]
        assert st.st_size == len(escapes[name])


def test_rhfs_own_faces_never_follow_a_link_out_of_here(
    testbed: Testbed, mnt: Path, escapes: dict[str, str]
) -> None:
    """``rhfs ls`` and ``rhfs://`` resolve paths themselves; the kernel is not there to help."""
    import fsspec

    base = f"here/{escapes['dir']}"
    listed = subprocess.run(
        [RHFS, "ls", f"rhfs://{base}/etc", "--config", str(testbed.config_path)],
        capture_output=True,
        text=True,
    )
    assert "passwd" not in listed.stdout, listed  # the link itself, never what it points at
    for inner in ("root/etc", "up/etc"):
        result = subprocess.run(
            [RHFS, "ls", f"rhfs://{base}/{inner}", "--config", str(testbed.config_path)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode != 0 and "passwd" not in result.stdout, (inner, result)
    fs = fsspec.filesystem("rhfs", config=str(testbed.config_path), skip_instance_cache=True)
    for inner in ("etc/passwd", "root/etc/passwd", "up/etc/passwd"):
        with pytest.raises(OSError) as failure:
            fs.cat_file(f"{base}/{inner}")
        assert failure.value.errno in (errno.EACCES, errno.ENOENT), failure.value
    # A link that stays inside the root is followed as usual.
    (testbed.here_root / escapes["dir"] / "f.txt").write_text("inside")  # type: ignore[operator]
    assert fs.cat_file(f"{base}/inside/f.txt") == b"inside"


def test_dot_dot_never_climbs_out_of_a_system(testbed: Testbed, mnt: Path) -> None:
    import fsspec

    fs = fsspec.filesystem("rhfs", config=str(testbed.config_path), skip_instance_cache=True)
    for path in ("here/../here/..", "here/../../etc/passwd", "clusters/cluster-a/../../etc/passwd"):
        with pytest.raises(OSError) as failure:
            fs.cat_file(path)
        assert failure.value.errno in (errno.EINVAL, errno.ENOENT), (path, failure.value)
    result = subprocess.run(
        [RHFS, "ls", "rhfs://here/../..", "--config", str(testbed.config_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0, result
    # Through the mount, ``..`` is the kernel's: here/.. is the mount's root, never the host's.
    assert os.path.samefile(mnt / "here" / "..", mnt)
