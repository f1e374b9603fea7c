"""The attributes the VFS hands to its faces, in rhfs's own types (no mfusepy here)."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass

from rhfs.backends.base import Entry

BLOCK_SIZE = 1 << 20  # st_blksize: coreutils then moves 1 MiB per read/write


@dataclass(frozen=True, slots=True)
class Attr:
    mode: int
    size: int
    mtime: float
    nlink: int = 1
    uid: int = 0
    gid: int = 0

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.mode)

    def as_stat(self) -> dict[str, int]:
        ns = int(self.mtime * 1e9)
        return {
            "st_mode": self.mode,
            "st_size": self.size,
            "st_nlink": self.nlink,
            "st_uid": self.uid,
            "st_gid": self.gid,
            "st_mtime": ns,
            "st_atime": ns,
            "st_ctime": ns,
            # Correct block counts matter: cp treats a file with too few blocks as sparse
            # and then skips copy_file_range.
            "st_blocks": (self.size + 511) // 512,
            "st_blksize": BLOCK_SIZE,
        }


_UID, _GID = os.getuid(), os.getgid()


def dir_attr(mtime: float = 0.0, mode: int = 0o755) -> Attr:
    return Attr(mode=stat.S_IFDIR | mode, size=0, mtime=mtime, nlink=2, uid=_UID, gid=_GID)


def attr_of(entry: Entry, read_only: bool = False) -> Attr:
    if entry.link_target is not None:
        return Attr(
            mode=stat.S_IFLNK | 0o777, size=len(entry.link_target), mtime=entry.mtime, uid=_UID, gid=_GID
        )
    if entry.is_dir:
        mode = entry.mode if entry.mode is not None else 0o755
        return dir_attr(entry.mtime, mode & ~0o222 if read_only else mode)
    mode = entry.mode if entry.mode is not None else 0o644
    if read_only:
        mode &= ~0o222
    return Attr(mode=stat.S_IFREG | mode, size=entry.size, mtime=entry.mtime, uid=_UID, gid=_GID)
