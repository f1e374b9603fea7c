"""The attributes the VFS hands to its faces, in rhfs's own types (no mfusepy here)."""

from __future__ import annotations

import hashlib
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
    atime_ns: int | None = None  # None: the mtime stands in (as for ctime_ns)
    mtime_ns: int | None = None  # the exact mtime, where known
    ctime_ns: int | None = None
    rdev: int = 0
    ino: int | None = None  # the file's inode on its system, where it has one

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.mode)

    def as_stat(self, path: str = "") -> dict[str, int]:
        """A ``struct stat`` as a dict; ``path`` (the tree path) stands in for a missing inode."""
        ns = self.mtime_ns if self.mtime_ns is not None else int(self.mtime * 1e9)
        return {
            "st_mode": self.mode,
            "st_size": self.size,
            "st_nlink": self.nlink,
            "st_uid": self.uid,
            "st_gid": self.gid,
            "st_mtime": ns,
            "st_atime": self.atime_ns if self.atime_ns is not None else ns,
            "st_ctime": self.ctime_ns if self.ctime_ns is not None else ns,
            # Correct block counts matter: cp treats a file with too few blocks as sparse
            # and then skips copy_file_range.
            "st_blocks": (self.size + 511) // 512,
            "st_blksize": BLOCK_SIZE,
            "st_rdev": self.rdev,
            "st_ino": self.ino if self.ino is not None else synthetic_ino(path),
        }


_UID, _GID = os.getuid(), os.getgid()
SYNTHETIC_INO = 1 << 63  # set in every inode made up from a path, never in a local filesystem's


def synthetic_ino(path: str) -> int:
    """An inode number for a file whose system has none: the same for a path while it exists,
    and apart from the inodes of ``here/`` (whose files keep their own)."""
    digest = hashlib.blake2b(path.encode("utf-8", "surrogateescape"), digest_size=8).digest()
    return SYNTHETIC_INO | int.from_bytes(digest, "big") >> 1


def dir_attr(mtime: float = 0.0, mode: int = 0o755) -> Attr:
    return Attr(mode=stat.S_IFDIR | mode, size=0, mtime=mtime, nlink=2, uid=_UID, gid=_GID)


def attr_of(entry: Entry, read_only: bool = False) -> Attr:
    """The attributes of an entry: its owner and links where the system keeps them, else the
    daemon's uid and gid and one link (two for a directory)."""
    if entry.link_target is not None:
        file_type, mode, size, nlink = stat.S_IFLNK, 0o777, len(entry.link_target), 1
    elif entry.is_dir:
        file_type, mode, size, nlink = stat.S_IFDIR, 0o755 if entry.mode is None else entry.mode, 0, 2
    elif entry.node_type is not None:
        file_type, mode, size, nlink = entry.node_type, entry.mode or 0, 0, 1
    else:
        mode = 0o644 if entry.mode is None else entry.mode
        file_type, size, nlink = stat.S_IFREG, entry.size, 1
    if read_only and file_type != stat.S_IFLNK:
        mode &= ~0o222
    atime_ns, mtime_ns, ctime_ns = entry.times_ns
    return Attr(
        mode=file_type | mode,
        size=size,
        mtime=entry.mtime,
        nlink=nlink if entry.nlink is None else entry.nlink,
        uid=_UID if entry.uid is None else entry.uid,
        gid=_GID if entry.gid is None else entry.gid,
        atime_ns=atime_ns,
        mtime_ns=mtime_ns,
        ctime_ns=ctime_ns,
        rdev=entry.rdev,
        ino=entry.ino,
    )
