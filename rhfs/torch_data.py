"""PyTorch datasets over rhfs: a table's batches, and a folder's files, one sample per file.

Both are ordinary ``torch.utils.data`` datasets, for an ordinary ``DataLoader``:

- :class:`TableBatches` is an ``IterableDataset`` of a table's batches (give the loader
  ``batch_size=None``). Each DataLoader worker (and each of ``world_size`` ranks) reads its
  own share of the table's row groups, so that no row comes out twice and none is missed.
- :class:`FolderFiles` is a map-style ``Dataset``: the files under a folder (an ``rh.folder``,
  an ``rhfs://`` URL or a local path such as one in the mount), listed once when it is made,
  each read whole when asked for and passed through ``transform``.

Workers: the dataset holds only addresses, paths and the config file's name. A worker
forked from the loader's process builds its own rhfs core on first use (the parent's
connections, event loops and locks stay with the parent); a spawned worker builds one from
the same config file. No handle is shared across a fork.

This module imports ``torch``, which rhfs does not need otherwise (``pip install
'rhfs[torch]'``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch.utils.data

from rhfs.api.folder import Folder
from rhfs.api.places import session, session_for
from rhfs.api.table import Table
from rhfs.views import streaming


def _config_source() -> str | None:
    return session().config.source


class TableBatches(torch.utils.data.IterableDataset):
    """The batches of ``table`` in ``stream_format`` (default ``"torch"``: dicts of tensors),
    of this worker's (and this rank's) row groups; see the module's docstring."""

    def __init__(
        self,
        table: Table,
        batch_size: int,
        *,
        columns: Sequence[str] | None = None,
        drop_last: bool = False,
        shuffle_seed: int | None = None,
        shuffle_buffer_size: int | None = None,
        stream_format: str = "torch",
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        super().__init__()
        self.address, self.name = table.address, table.name
        self.batch_size, self.columns, self.drop_last = batch_size, columns, drop_last
        self.shuffle = (
            None if shuffle_buffer_size is None else streaming.Shuffle(shuffle_buffer_size, shuffle_seed)
        )
        self.stream_format = stream_format
        self.rank, self.world_size = rank, world_size
        self.config_source = _config_source()

    def _shard(self) -> streaming.Shard:
        info = torch.utils.data.get_worker_info()
        workers, worker = (1, 0) if info is None else (info.num_workers, info.id)
        return streaming.Shard(self.rank * workers + worker, self.world_size * workers)

    def __iter__(self) -> Iterator[Any]:
        session_for(self.config_source)
        path, fs = Table(self.address, self.name).source()
        batches = streaming.batches(
            path,
            self.batch_size,
            fs,
            self.columns,
            drop_last=self.drop_last,
            shuffle=self.shuffle,
            shard=self._shard(),
        )
        for batch in batches:
            yield streaming.convert(batch, self.stream_format)


def read_bytes_default(data: bytes) -> bytes:
    return data


class FolderFiles(torch.utils.data.Dataset):
    """One sample per file under ``root``: ``transform(bytes of the file)``, in path order."""

    def __init__(self, root: Folder | str, transform: Callable[[bytes], Any] = read_bytes_default) -> None:
        super().__init__()
        self.transform = transform
        self.config_source = _config_source()
        self.tree_root: str | None = None  # a path of the tree, read through rhfs://
        self.local_root: str | None = None  # a local path (one in a mount, too), read with open()
        if isinstance(root, Folder):
            loc = root._location()
            on_disk = loc.backend.abilities.local_path
            if on_disk is not None:
                self.local_root = on_disk(loc.rel)
            elif loc.in_tree:
                self.tree_root = loc.path.strip("/")
            else:
                self.local_root = loc.path
        elif root.startswith("rhfs://"):
            self.tree_root = root[len("rhfs://") :].strip("/")
        else:
            self.local_root = os.path.abspath(os.path.expanduser(root))
        self.files = self._list()

    def _list(self) -> list[str]:
        """Every file under the root, as a path relative to it, sorted."""
        if self.tree_root is not None:
            fs = session().fs
            prefix = self.tree_root + "/"
            return sorted(p[len(prefix) :] for p in fs.find(self.tree_root) if p.startswith(prefix))
        assert self.local_root is not None
        found = []
        for directory, _dirs, names in os.walk(self.local_root):
            found += [os.path.relpath(os.path.join(directory, n), self.local_root) for n in names]
        return sorted(found)

    def __len__(self) -> int:
        return len(self.files)

    def read(self, index: int) -> bytes:
        """The bytes of file ``index``, read by this process's own rhfs handles."""
        name = self.files[index]
        if self.tree_root is not None:
            fs = session_for(self.config_source).fs
            return bytes(fs.cat_file(f"{self.tree_root}/{name}"))
        assert self.local_root is not None
        with open(os.path.join(self.local_root, name), "rb") as f:
            return f.read()

    def __getitem__(self, index: int) -> Any:
        return self.transform(self.read(index))
