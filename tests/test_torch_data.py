"""PyTorch over rhfs against the local servers: a table's batches and a folder's files through
a real ``DataLoader`` with worker processes, and a forked process that builds its own core.

Every loader runs with ``num_workers=2`` and checks that each row or file comes out exactly
once; the loader's parent reads the same systems before and after, so a connection shared
across the fork would show as a failure on one side or the other.
"""

from __future__ import annotations

import errno
import os
import signal
import traceback
from collections import Counter
from pathlib import Path
from typing import Any

import fsspec
import pytest
import torch
from tables_fixtures import api, numbered_frame, unique
from testbed import Testbed
from torch.utils.data import DataLoader

from rhfs.torch_data import FolderFiles, TableBatches

pytestmark = [pytest.mark.servers]
ROWS = 3000


@pytest.fixture
def rh(testbed: Testbed) -> Any:
    return api(testbed.config_path)


def loaded_ids(loader: DataLoader[Any]) -> list[int]:
    out: list[int] = []
    for batch in loader:
        assert isinstance(batch["id"], torch.Tensor)
        assert batch["x"].tolist() == [2.0 * i for i in batch["id"].tolist()]
        out += batch["id"].tolist()
    return out


@pytest.mark.parametrize("system", ["s3", "cluster-a"])
def test_table_batches_are_sharded_across_workers(rh: Any, system: str) -> None:
    table = rh.table(
        data=numbered_frame(ROWS, 6, 2.0), name=unique("torch"), system=system, partition_cols=["part"]
    )
    table.write().save()
    assert len(table) == ROWS  # the parent has a live session on the system before the fork
    dataset = TableBatches(table, batch_size=128)
    ids = loaded_ids(DataLoader(dataset, batch_size=None, num_workers=2))
    duplicated = [i for i, n in Counter(ids).items() if n > 1]
    assert duplicated == [] and sorted(ids) == list(range(ROWS))
    assert loaded_ids(DataLoader(dataset, batch_size=None, num_workers=0)) != []
    assert len(table.fetch()) == ROWS  # the parent's own connections still work
    table.rm()


def test_shuffled_table_batches_with_workers_and_ranks(rh: Any) -> None:
    table = rh.table(data=numbered_frame(ROWS, 6, 2.0), system="s3", partition_cols=["part"]).write()
    runs = []
    for _ in range(2):
        seen = []
        for rank in range(2):
            ds = TableBatches(
                table, 100, shuffle_seed=3, shuffle_buffer_size=300, rank=rank, world_size=2, drop_last=False
            )
            seen += loaded_ids(DataLoader(ds, batch_size=None, num_workers=2))
        runs.append(seen)
    assert runs[0] == runs[1]  # the same seed, the same order in every worker
    assert sorted(runs[0]) == list(range(ROWS))
    table.rm()


def test_table_batches_in_spawned_workers(rh: Any) -> None:
    table = rh.table(data=numbered_frame(600, 6, 2.0), system="cluster-a", partition_cols=["part"]).write()
    loader = DataLoader(
        TableBatches(table, batch_size=64), batch_size=None, num_workers=2, multiprocessing_context="spawn"
    )
    assert sorted(loaded_ids(loader)) == list(range(600))
    table.rm()


def decode(data: bytes) -> int:
    return int(data.decode())


@pytest.fixture
def numbered_files(rh: Any) -> Any:
    folder = rh.folder(path=unique("samples"), system="cluster-a")
    folder.put({f"d{i % 3}/{i:03d}.txt": str(i).encode() for i in range(60)})
    yield folder
    folder.rm()


@pytest.mark.parametrize("through", ["rhfs", "mount"])
def test_folder_files_one_sample_per_file(numbered_files: Any, through: str, request: Any) -> None:
    if through == "mount":
        mnt: Path = request.getfixturevalue("mnt")
        root: Any = f"{mnt}/clusters/cluster-a/{numbered_files.path}"
    else:
        root = f"rhfs://clusters/cluster-a/{numbered_files.path}"
    dataset = FolderFiles(root, transform=decode)
    assert len(dataset) == 60 and dataset.files[0] == "d0/000.txt"
    samples = [int(s) for batch in DataLoader(dataset, batch_size=8, num_workers=2) for s in batch]
    assert sorted(samples) == list(range(60)) and len(set(samples)) == 60
    assert numbered_files.get("d1/001.txt") == b"1"  # the parent still reads


def test_folder_files_from_a_folder_object_on_a_store(rh: Any) -> None:
    folder = rh.folder(path=f"rhfs-test/{unique('s3samples')}", system="s3")
    folder.put({f"{i}.bin": bytes([i]) * (i + 1) for i in range(20)})
    dataset = FolderFiles(folder)
    got = [bytes(b[0]) for b in DataLoader(dataset, batch_size=None, num_workers=2, collate_fn=lambda x: [x])]
    assert sorted(got, key=len) == [bytes([i]) * (i + 1) for i in range(20)]
    folder.rm()


def test_a_forked_child_builds_its_own_core(rh: Any, testbed: Testbed, tmp_path: Path) -> None:
    """The parent has used read-ahead's producer threads (a large gs read through rhfs://: gs
    has no streams, so ranged reads run on the pool) and a cluster session (a copy between
    clusters) before the fork; the child does both again, on its own core."""
    folder = rh.folder(path=unique("fork"), system="cluster-a")
    folder.put({"f.txt": b"before"})
    big = f"rhfs-test/{unique('big')}.bin"
    testbed.fs("gs").pipe_file(big, os.urandom(24 << 20))
    whole = rh.session().fs.cat_file(f"gs/{big}")
    folder.to("cluster-b", path=unique("fork-copy"))
    parent_core = rh.session().core
    made_before = fsspec.filesystem("rhfs", config=str(testbed.config_path))
    assert made_before.vfs is parent_core.vfs
    f_path = f"clusters/cluster-a/{folder.path}/f.txt"
    open_before = made_before.open(f_path)  # its handle belongs to the parent's core
    pid = os.fork()
    if pid == 0:  # the child: exit status 0 only if all holds within a minute, and why not in child.txt
        status = 1
        signal.alarm(60)
        try:
            import rhfs.api as child_api
            import rhfs.fsspec_face

            own = child_api.session_for(str(testbed.config_path)).core
            assert own is not parent_core
            assert rhfs.fsspec_face.shared_core(str(testbed.config_path)) is own
            own_files = [made_before.open(f"gs/{big}")]  # until one has the parent's file's number
            while own_files[-1].fh < open_before.fh and len(own_files) < 500:
                own_files.append(made_before.open(f"gs/{big}"))
            own_file = own_files[-1]
            assert own_file.fh == open_before.fh
            try:
                open_before.read()
                raise AssertionError("a file opened before the fork was read after it")
            except OSError as e:
                assert e.errno == errno.EBADF
            open_before.close()  # closing the parent's file releases nothing of the child's
            assert own_file.read(1 << 20) == whole[: 1 << 20]
            for f in own_files:
                f.close()
            assert child_api.folder(path=folder.path, system="cluster-a").get("f.txt") == b"before"
            assert child_api.session().fs.cat_file(f"gs/{big}") == whole
            assert made_before.vfs is own.vfs  # a filesystem made before the fork moves to the child's core
            assert made_before.cat_file(f_path) == b"before"
            copy = child_api.folder(path=folder.path, system="cluster-a").to("cluster-b", path=unique("c"))
            assert copy.get("f.txt") == b"before"
            copy.rm()
            status = 0
        except BaseException:
            (tmp_path / "child.txt").write_text(traceback.format_exc())
        finally:
            os._exit(status)
    _, status = os.waitpid(pid, 0)
    why = (tmp_path / "child.txt").read_text() if (tmp_path / "child.txt").exists() else ""
    assert os.waitstatus_to_exitcode(status) == 0, why or f"the child ended with status {status}"
    assert rh.session().core is parent_core
    assert open_before.read() == b"before"
    open_before.close()
    folder.put({"g.txt": b"after"})
    assert folder.get("g.txt") == b"after" and folder.get("f.txt") == b"before"
    assert rh.session().fs.cat_file(f"gs/{big}") == whole
    folder.rm()
    testbed.fs("gs").rm_file(big)
