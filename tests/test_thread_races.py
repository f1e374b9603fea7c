"""State shared by FUSE threads, hammered from many threads at once (docs/SEMANTICS.md,
"Concurrency"; the thread model is in rhfs/vfs/handles.py and rhfs/vfs/recent.py).

Each test shortens the interpreter's switch interval so that threads interleave at
almost every bytecode, which turns a window of a few instructions into a failure seen
in every run:

- a rename walks the VFS's record of opened versions while other threads open files
  and add to it;
- readdir's memo of listings forgets its oldest entries from many threads at once;
- the read-ahead producers of one handle make their first read of a cluster file at
  once: the remote file is opened once, not once per producer.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import asyncssh
import pytest

from rhfs.backends.cluster import ClusterBackend
from rhfs.backends.guard import Guarded
from rhfs.backends.memory import MemoryBackend
from rhfs.stats import Stats
from rhfs.tree import MountTable
from rhfs.vfs.core import Vfs

THREADS = 8


@pytest.fixture
def fast_switching() -> Iterator[None]:
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(before)


@pytest.fixture
def vfs(tmp_path: Path) -> Iterator[Vfs]:
    backend = Guarded(MemoryBackend("mem", "here"), Stats(), op_timeout=30)  # type: ignore[arg-type]
    v = Vfs(MountTable({"mem": backend}), cache_dir=str(tmp_path / "cache"), attr_ttl=3600.0)
    yield v
    backend.close()


def hammer(jobs: list[Callable[[], None]]) -> list[BaseException]:
    """Run the jobs on their own threads, started together; the exceptions they raised."""
    errors: list[BaseException] = []
    start = threading.Barrier(len(jobs))

    def run(job: Callable[[], None]) -> None:
        start.wait()
        try:
            job()
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=run, args=(job,), daemon=True) for job in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not [t for t in threads if t.is_alive()], "a thread is still running: a deadlock"
    return errors


def write(vfs: Vfs, path: str, data: bytes) -> None:
    fh = vfs.create(path, 0o644, os.O_WRONLY | os.O_CREAT).fh
    vfs.write(fh, data, 0)
    vfs.release(fh)


def test_renames_while_opens_record_versions(vfs: Vfs, fast_switching: None) -> None:
    for i in range(THREADS * 300):
        write(vfs, f"/mem/f{i}", b"x")
    write(vfs, "/mem/moving", b"m")

    def opener(first: int) -> None:
        for i in range(first, first + 300):
            vfs.release(vfs.open(f"/mem/f{i}", os.O_RDONLY).fh)  # records f{i}'s version

    def renamer() -> None:
        for n in range(300):
            vfs.rename(f"/mem/moving{'' if n % 2 == 0 else '2'}", f"/mem/moving{'2' if n % 2 == 0 else ''}")

    errors = hammer([lambda first=t * 300: opener(first) for t in range(THREADS - 1)] + [renamer])
    assert not errors, errors[:3]


def test_listing_memos_forget_from_many_threads(vfs: Vfs, fast_switching: None) -> None:
    for d in range(600):  # more directories than the memos keep
        vfs.mkdir(f"/mem/d{d}")

    def lister(offset: int) -> None:
        for n in range(1200):
            path = f"/mem/d{(offset + n) % 600}"
            vfs.readdir(path)
            vfs.opendir(path)

    errors = hammer([lambda offset=t * 75: lister(offset) for t in range(THREADS)])
    assert not errors, errors[:3]


@pytest.mark.servers
def test_a_cluster_file_read_by_many_producers_is_opened_once(
    testbed: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    from testbed import Testbed

    assert isinstance(testbed, Testbed)
    fs = testbed.fs("cluster-a")
    remote = str(testbed.cluster_roots["cluster-a"] / "opened-once.bin")
    data = os.urandom(1 << 20)
    fs.pipe_file(remote, data)
    backend = ClusterBackend(
        "cluster-a",
        "127.0.0.1",
        port=testbed.cluster_ports["cluster-a"],
        user=testbed.user,
        identity_file=str(testbed.client_key),
        known_hosts=str(testbed.known_hosts),
        root=str(testbed.cluster_roots["cluster-a"]),
    )
    backend.stat("opened-once.bin")  # connect first: the race is in opening the file
    reader = backend.open_reader("opened-once.bin", backend.stat("opened-once.bin"))
    opens: list[str] = []
    real_open = asyncssh.SFTPClient.open

    async def counting_open(self: asyncssh.SFTPClient, path: str, *args: object, **kwargs: object) -> object:
        if str(path).endswith("opened-once.bin"):
            opens.append(str(path))
        return await real_open(self, path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(asyncssh.SFTPClient, "open", counting_open)
    chunks: dict[int, bytes] = {}

    def producer(i: int) -> None:
        chunks[i] = reader.read(i << 17, 1 << 17)

    try:
        errors = hammer([lambda i=i: producer(i) for i in range(THREADS)])
        assert not errors, errors[:3]
        assert b"".join(chunks[i] for i in range(THREADS)) == data
        assert len(opens) == 1, f"the remote file was opened {len(opens)} times"
    finally:
        reader.close()
        fs.rm_file(remote)
