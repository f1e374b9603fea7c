"""The one small Protocol every system implements, and the types it speaks.

A backend serves one system (``here``, a cluster, a store, or a virtual view)
under paths relative to that system's root: ``""`` is the root, components are
joined by ``/``, never with a leading slash. For a store the first component is
the bucket.

Required abilities: stat, list, open a ranged reader, upload a whole local file
atomically, remove, mkdir, rmdir, rename, url. Optional abilities are separate
small protocols (:class:`CopyWithin`, :class:`Runner`, :class:`Symlinks`,
:class:`Metadata`, :class:`UploadLeftovers`); a backend that has one implements it,
and a caller checks with ``isinstance``. A route that cannot serve a request raises
:class:`rhfs.errors.CantCopy` so that the caller falls back.

Backends raise :mod:`rhfs.errors` exceptions, or ``OSError``s with an errno.
"""

from __future__ import annotations

import hashlib
import posixpath
import uuid
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from rhfs.errors import InvalidArgument, IsADirectory, NameTooLong, NotADirectory

MAX_NAME_BYTES = 255
PATH_MAX = 4096  # Linux's, with the final NUL: the longest path a system call takes
TMP_MARK = ".rhfs-tmp-"  # an upload's temporary sibling: never listed, renamed over its target


@dataclass(frozen=True, slots=True)
class Entry:
    """What a backend knows of one file or directory."""

    name: str
    is_dir: bool
    size: int = 0
    mtime: float = 0.0
    etag: str | None = None
    mode: int | None = None  # permission bits, where the system has them
    link_target: str | None = None  # set for a symbolic link
    direct_io: bool = False  # content is generated; the kernel must not trust size or cache it
    # exact times in nanoseconds, where the system keeps them apart (None: ``mtime`` stands in)
    mtime_ns: int | None = None
    atime_ns: int | None = None
    ctime_ns: int | None = None

    @property
    def times_ns(self) -> tuple[int, int, int]:
        """(atime, mtime, ctime) in nanoseconds, each falling back on ``mtime``."""
        mtime_ns = self.mtime_ns if self.mtime_ns is not None else int(self.mtime * 1e9)
        atime_ns = self.atime_ns if self.atime_ns is not None else mtime_ns
        ctime_ns = self.ctime_ns if self.ctime_ns is not None else mtime_ns
        return atime_ns, mtime_ns, ctime_ns

    @property
    def version(self) -> tuple[object, ...]:
        """Changes whenever the content may have changed."""
        return (self.etag, self.size, self.mtime)


class Reader(Protocol):
    def read(self, offset: int, size: int) -> bytes: ...

    def close(self) -> None: ...


class BytesReader:
    """A :class:`Reader` over bytes already in memory (generated files, the memory backend)."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def read(self, offset: int, size: int) -> bytes:
        return self.data[offset : offset + size]

    def close(self) -> None:
        pass


@runtime_checkable
class Backend(Protocol):
    system: str  # the name shown in stats and status: "here", "s3", "cluster-a", ...
    kind: str  # "here", "cluster", "store", "view", "control"

    def stat(self, path: str) -> Entry: ...

    def list(self, path: str) -> list[Entry]: ...

    def open_reader(self, path: str, entry: Entry) -> Reader: ...

    def upload(self, local_path: str, path: str) -> None:
        """Replace ``path`` with the bytes of ``local_path``, atomically: readers see old or new."""
        ...

    def remove(self, path: str) -> None: ...

    def mkdir(self, path: str) -> None: ...

    def rmdir(self, path: str) -> None: ...

    def rename(self, src: str, dst: str) -> None: ...

    def url(self, path: str) -> str: ...


@runtime_checkable
class CopyWithin(Protocol):
    def copy_within(self, src: str, dst: str) -> None:
        """Copy a file inside this system without its bytes leaving it; CantCopy if impossible."""
        ...


@runtime_checkable
class Runner(Protocol):
    def run(
        self, command: str, *, stdin: bytes | None = None, timeout: float | None = None
    ) -> tuple[int, str, str]:
        """Run a shell command on the system; secrets go through ``stdin``, never ``command``."""
        ...


@runtime_checkable
class Symlinks(Protocol):
    def symlink(self, target: str, path: str) -> None: ...


@runtime_checkable
class Metadata(Protocol):
    def set_mode(self, path: str, mode: int) -> None: ...

    def set_times(self, path: str, atime_ns: int | None, mtime_ns: int | None) -> None:
        """Set the access and modification times, in nanoseconds; None leaves one as it is."""
        ...


@runtime_checkable
class UploadLeftovers(Protocol):
    def remove_upload_leftovers(self, path: str) -> int:
        """Clean up what killed uploads of exactly ``path`` left (a temporary sibling, an
        unfinished multipart upload); how many were found."""
        ...


def remove_upload_leftovers(backend: object, path: str) -> int:
    """:meth:`UploadLeftovers.remove_upload_leftovers`, or 0 where uploads leave nothing behind."""
    if isinstance(backend, UploadLeftovers):
        return backend.remove_upload_leftovers(path)
    return 0


def join(*parts: str) -> str:
    return "/".join(p.strip("/") for p in parts if p.strip("/"))


def parent(path: str) -> str:
    return posixpath.dirname(path)


def basename(path: str) -> str:
    return posixpath.basename(path)


def check_name(path: str) -> None:
    """Refuse names rhfs never creates: too long, ".", "..", or holding NUL or a newline."""
    for part in path.split("/"):
        if len(part.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES:
            raise NameTooLong(f"name longer than {MAX_NAME_BYTES} bytes")
        if part in (".", "..") or "\x00" in part or "\n" in part:
            raise InvalidArgument(f"invalid name {part!r}")


def check_name_length(path: str) -> None:
    """ENAMETOOLONG for a component over MAX_NAME_BYTES, before any look-up answers ENOENT."""
    if len(path) > MAX_NAME_BYTES and any(
        len(part.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES for part in path.split("/")
    ):
        raise NameTooLong(f"name longer than {MAX_NAME_BYTES} bytes")


def check_path_length(full: str) -> None:
    """ENAMETOOLONG for a path the system underneath cannot take whole (PATH_MAX bytes)."""
    if len(full) >= PATH_MAX // 4 and len(full.encode("utf-8", "surrogateescape")) >= PATH_MAX:
        raise NameTooLong(f"the path on the system would be longer than {PATH_MAX - 1} bytes")


def upload_tmp_name(name: str) -> str:
    """A fresh temporary sibling's name for an upload of ``name``.

    It carries a tag of ``name``, so that the start-up recovery of a killed daemon can
    find and remove what an upload of exactly that file left (:func:`is_upload_tmp_of`).
    """
    return f"{TMP_MARK}{_tag(name)}-{uuid.uuid4().hex}"


def is_upload_tmp_of(candidate: str, name: str) -> bool:
    """Is ``candidate`` a temporary sibling made by an upload of ``name``?"""
    return candidate.startswith(f"{TMP_MARK}{_tag(name)}-")


def _tag(name: str) -> str:
    return hashlib.sha256(name.encode("utf-8", "surrogateescape")).hexdigest()[:12]


def check_rename_over(moving_dir: bool, target_dir: bool, dst: str) -> None:
    """rename(2) over an existing ``dst``: a file never replaces a directory (EISDIR),
    nor a directory a file (ENOTDIR)."""
    if target_dir and not moving_dir:
        raise IsADirectory(dst)
    if moving_dir and not target_dir:
        raise NotADirectory(dst)
