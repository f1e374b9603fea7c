"""Real clients through a real mount give what they give on a plain local directory.

Each test body runs once per system (here, s3, gs, azure, cluster-a) through the
``system_dir`` fixture: the same commands run in the mount and in a local temp
directory, and the listings (``ls -l``, ``find``), ``du -sb`` and bytes are compared.
"""

from __future__ import annotations

import errno
import os
import subprocess
from pathlib import Path

import pytest
from mount_fixtures import (
    STORES,
    assert_same_tree,
    let_caches_expire,
    ls_l,
    make_local_tree,
    outside,
    sh,
    stats,
)
from testbed import Testbed

pytestmark = [pytest.mark.mount, pytest.mark.servers]

SIZES = {"zero": 0, "one": 1, "mib": 1 << 20, "big": 33 << 20}


@pytest.fixture
def local(tmp_path: Path) -> Path:
    path = tmp_path / "local"
    path.mkdir()
    return path


def both(command: str, mounted: Path, local: Path) -> None:
    """Run one shell command in both directories; it must succeed in both."""
    for root in (mounted, local):
        sh(command, root)


def test_cp_in_and_out_cat_and_ls(system_dir: Path, local: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for name, size in SIZES.items():
        (src / name).write_bytes(os.urandom(size))
    both(f"cp {src}/* .", system_dir, local)
    assert_same_tree(system_dir, local)
    for name in SIZES:
        assert sh(f"cat {name} | cmp - {src / name}", system_dir).returncode == 0
    out = tmp_path / "out"
    out.mkdir()
    sh(f"cp {system_dir}/* {out}/", tmp_path)
    for name in SIZES:
        assert (out / name).read_bytes() == (src / name).read_bytes(), name
    # inside the mount: cp of a whole file (server-side where the system can) and a cat of it
    both("cp mib mib-copy && cp big big-copy", system_dir, local)
    assert_same_tree(system_dir, local)


def test_mkdir_mv_rm_find_du(system_dir: Path, local: Path, tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    make_local_tree(tree)
    both(f"cp -r {tree} t && mkdir -p a/b/c && mkdir -p a/b/c && mkdir -p a/x", system_dir, local)
    assert_same_tree(system_dir, local)
    both("mv t/top.txt a/b/c/moved.txt && mv t/docs a/x/docs-moved", system_dir, local)
    assert_same_tree(system_dir, local)
    both("mv a/x/docs-moved/deep . && mv a/b/c/moved.txt top-again", system_dir, local)
    assert_same_tree(system_dir, local)
    both("rm -r a/x && rm -r deep/deeper && rm t/zero", system_dir, local)
    assert_same_tree(system_dir, local)
    both("rm -r a deep t", system_dir, local)
    assert_same_tree(system_dir, local)
    assert ls_l(system_dir) == [".:", "-rw-r--r-- 0 0 1000 top-again"]


def test_rsync_a_in_and_back_out(system_dir: Path, local: Path, tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    make_local_tree(tree)
    both(f"rsync -a {tree}/ tree/", system_dir, local)
    assert_same_tree(system_dir, local)
    back = tmp_path / "back"
    sh(f"rsync -a {system_dir}/tree/ {back}/", tmp_path)
    assert_same_tree(back, tree)
    # a second run after a change sends the change
    (tree / "docs" / "readme.txt").write_bytes(b"changed and longer\n")
    both(f"rsync -a {tree}/ tree/", system_dir, local)
    assert_same_tree(system_dir, local)


def test_overwrite_shorter_append_and_dd(system_dir: Path, local: Path) -> None:
    both("head -c 300000 /dev/zero | tr '\\0' 'x' > f && printf 'short' > f", system_dir, local)
    assert_same_tree(system_dir, local)
    both("echo appended >> f && printf 'more' >> f && echo new >> g", system_dir, local)
    assert_same_tree(system_dir, local)
    both("seq 1 200000 > n", system_dir, local)
    ranges = []
    for root in (system_dir, local):
        ranges.append(sh("dd if=n bs=4096 skip=100 count=7 status=none | md5sum", root).stdout)
        ranges.append(sh("dd if=n bs=1 skip=654321 count=1000 status=none | md5sum", root).stdout)
        ranges.append(sh("tail -c 5000 n | md5sum", root).stdout)
    assert ranges[:3] == ranges[3:]
    both("printf 'XXXX' | dd of=n bs=1 seek=500000 conv=notrunc status=none", system_dir, local)
    # past the end: the gap reads as zeros
    both("printf 'YY' | dd of=n bs=1 seek=2000000 conv=notrunc status=none", system_dir, local)
    both("truncate -s 1000 f && truncate -s 10 g && : > z && truncate -s 4097 z", system_dir, local)
    assert_same_tree(system_dir, local)


def test_st_blocks_says_files_are_not_sparse(system_dir: Path, local: Path, tmp_path: Path) -> None:
    sizes = [0, 1, 511, 512, 513, 4096, 100_000, 1 << 20]
    for size in sizes:
        (local / f"s{size}").write_bytes(os.urandom(size))
    sh(f"cp {local}/* .", system_dir)
    for size in sizes:
        blocks, unit, st_size = sh(f"stat -c '%b %B %s' s{size}", system_dir).stdout.split()
        assert int(st_size) == size
        assert int(blocks) * int(unit) >= size  # coreutils: fewer blocks than bytes means sparse
        assert int(blocks) == -(-size // 512)
    out = tmp_path / "out"
    out.mkdir()
    sh(f"cp --sparse=auto {system_dir}/s* {out}/", tmp_path)
    for size in sizes:
        assert (out / f"s{size}").read_bytes() == (local / f"s{size}").read_bytes()


def test_ls_l_does_one_listing(system_dir: Path, mnt: Path, system: str) -> None:
    count = 30
    sh(f"for i in $(seq 1 {count}); do echo $i > f$i; done; mkdir sub", system_dir)
    let_caches_expire()
    before = stats(mnt)["systems"][system]["metadata_calls"]
    lines = sh("ls -l .", system_dir).stdout.splitlines()
    after = stats(mnt)["systems"][system]["metadata_calls"]
    assert len(lines) == count + 2  # "total" and the subdirectory
    # The directory's one listing, plus at most its expired ancestors' listings, which now
    # answer their lookups: nothing that grows with the number of entries.
    assert after.get("list", 0) - before.get("list", 0) <= 3
    assert after.get("stat", 0) - before.get("stat", 0) <= 2
    assert sum(after.values()) - sum(before.values()) <= 5


def test_outside_changes_show_within_attr_ttl(
    system_dir: Path, mnt: Path, system: str, testbed: Testbed
) -> None:
    fs, base = outside(testbed, system, system_dir, mnt)
    sh("echo original > changed && echo doomed > removed && mkdir d", system_dir)
    assert sorted(os.listdir(system_dir)) == ["changed", "d", "removed"]
    assert (system_dir / "changed").read_text() == "original\n"
    fs.pipe_file(f"{base}/changed", b"changed outside, and longer\n")
    fs.rm_file(f"{base}/removed")
    fs.pipe_file(f"{base}/added", b"new\n")
    fs.pipe_file(f"{base}/d/inner", b"inner\n")
    let_caches_expire()
    assert sorted(os.listdir(system_dir)) == ["added", "changed", "d"]
    assert os.listdir(system_dir / "d") == ["inner"]
    assert (system_dir / "changed").read_text() == "changed outside, and longer\n"
    assert (system_dir / "changed").stat().st_size == len("changed outside, and longer\n")
    assert (system_dir / "added").read_text() == "new\n"
    assert not (system_dir / "removed").exists()


def test_symlinks(system_dir: Path, system: str) -> None:
    (system_dir / "target").write_text("pointed at\n")
    if system in STORES:
        with pytest.raises(OSError) as caught:
            os.symlink("target", system_dir / "link")
        assert caught.value.errno == errno.EOPNOTSUPP
        result = sh("ln -s target link", system_dir, check=False)
        assert result.returncode != 0 and "Operation not supported" in result.stderr
        return
    sh("ln -s target link && ln -s ../nowhere dangling", system_dir)
    assert sh("readlink link", system_dir).stdout == "target\n"
    assert os.readlink(system_dir / "dangling") == "../nowhere"
    assert sh("cat link", system_dir).stdout == "pointed at\n"
    assert sh("ls -l link", system_dir).stdout.split()[0].startswith("l")
    assert sorted(os.listdir(system_dir)) == ["dangling", "link", "target"]
    with pytest.raises(subprocess.CalledProcessError):
        subprocess.run(["cat", str(system_dir / "dangling")], check=True, capture_output=True)
    os.unlink(system_dir / "link")
    assert (system_dir / "target").read_text() == "pointed at\n"


def test_a_reader_opened_before_removal(system_dir: Path, system: str) -> None:
    """As locally, on here/ and clusters; a store answers ENOENT or ESTALE instead of old bytes."""
    (system_dir / "gone").write_bytes(b"first version")
    (system_dir / "replaced").write_bytes(b"old")
    (system_dir / "replacement").write_bytes(b"new, longer")
    with open(system_dir / "gone", "rb") as gone, open(system_dir / "replaced", "rb") as replaced:
        os.unlink(system_dir / "gone")
        os.rename(system_dir / "replacement", system_dir / "replaced")
        if system in STORES:
            for f in (gone, replaced):
                with pytest.raises(OSError) as caught:
                    f.read()
                assert caught.value.errno in (errno.ENOENT, errno.ESTALE)
        else:
            assert gone.read() == b"first version"
            assert replaced.read() == b"old"
    assert (system_dir / "replaced").read_bytes() == b"new, longer"
    assert sorted(os.listdir(system_dir)) == ["replaced"]


def test_a_file_unlinked_while_open_for_writing(system_dir: Path, local: Path) -> None:
    """Reads, writes, ftruncate, fstat and fchmod by handle work as locally."""
    outcomes = []
    for root in (system_dir, local):
        (root / "f").write_bytes(b"0123456789")
        fd = os.open(root / "f", os.O_RDWR)
        try:
            os.unlink(root / "f")
            os.pwrite(fd, b"ab", 8)
            os.ftruncate(fd, 12)
            os.fchmod(fd, 0o600)
            st = os.fstat(fd)
            seen = (os.pread(fd, 100, 0), os.lseek(fd, 0, os.SEEK_END), st.st_size, st.st_nlink)
            outcomes.append((*seen, sorted(os.listdir(root))))
        finally:
            os.close(fd)
    assert outcomes[0] == outcomes[1] == (b"01234567ab\0\0", 12, 12, 0, [])
    assert os.listdir(system_dir) == []
