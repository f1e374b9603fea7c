"""The one small Protocol every system implements, and the types it speaks.

A backend serves one system (``here``, a cluster, a store, or a virtual view)
under paths relative to that system's root: ``""`` is the root, components are
joined by ``/``, never with a leading slash. For a store the first component is
the bucket.

Required abilities: stat, list, open a ranged reader, upload a whole local file
atomically, remove, mkdir, rmdir, rename, url.

Each backend also declares, once, what it is and what more it can do:
- :class:`Traits`: plain facts the core reads its behaviour from (remote, writable,
  readers survive unlink, versioned objects, implicit directories). Nothing outside
  ``rhfs.backends`` asks a backend's class or name instead.
- :class:`Abilities`: its optional abilities, each a typed attribute that is None
  where the system lacks it (copy within, run a command, symlinks, modes and times,
  an ssh endpoint, a cluster's kept session, a store's provider adapter, a view's
  underlying file, ...).
  :class:`~rhfs.backends.guard.Guarded` offers the same abilities, each under its guard.

A route that cannot serve a request raises :class:`rhfs.errors.CantCopy` so that
the caller falls back.

Backends raise :mod:`rhfs.errors` exceptions, or ``OSError``s with an errno.
"""

from __future__ import annotations

import hashlib
import posixpath
import shlex
import stat
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from rhfs.errors import InvalidArgument, IsADirectory, NameTooLong, NotADirectory, RhfsError

if TYPE_CHECKING:
    from rhfs.backends.providers import Provider
    from rhfs.backends.signed import HttpRequest
    from rhfs.tree import Location  # a type only: a view answers where its file's bytes are

MAX_NAME_BYTES = 255
PATH_MAX = 4096  # Linux's, with the final NUL: the longest path a system call takes
TMP_MARK = ".rhfs-tmp-"  # an upload's temporary sibling: never listed, renamed over its target
SPECIAL_TYPES = (stat.S_IFIFO, stat.S_IFSOCK, stat.S_IFCHR, stat.S_IFBLK)  # an Entry's node_type


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
    # owner and links, where the system keeps them (None: the daemon's uid and gid, one link)
    uid: int | None = None
    gid: int | None = None
    nlink: int | None = None
    ino: int | None = None  # the file's identity on its system, where it has one (an inode)
    node_type: int | None = None  # S_IFIFO, S_IFSOCK, S_IFCHR or S_IFBLK for a special file
    rdev: int = 0  # the device of a character or block special file

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


@dataclass(frozen=True, slots=True)
class Owner:
    """Who a new file, directory, link or node belongs to: the uid and gid of the process that
    made it (from the kernel's request), as a local filesystem gives them."""

    uid: int
    gid: int


@dataclass(frozen=True, slots=True)
class Traits:
    """What a backend is, declared once by each backend; the core's behaviour follows from it."""

    family: str  # shown in status: "here", "cluster", "store", "view", "control"
    writable: bool = True  # files may be created, written, renamed and removed through the tree
    remote: bool = False  # the bytes are across a network: reads go through read-ahead
    holds_bytes: bool = True  # files are kept as written (False: a view, whose bytes live elsewhere)
    open_survives_unlink: bool = False  # an open file outlives its name, as on a local disk
    # whole objects: readers are tied to the version they opened (ESTALE after a change), a
    # rename makes new objects, an upload's size and time are known without asking, and
    # concurrent writers of one object are not serialised (the last one wins)
    versioned_objects: bool = False
    # a directory exists while a name is under it: none is made before a write, and an empty
    # one is only a marker, removed before a rename over it
    implicit_directories: bool = False


class RunCommand(Protocol):
    def __call__(
        self, command: str, *, stdin: bytes | None = None, timeout: float | None = None
    ) -> tuple[int, str, str]:
        """Run a shell command on the system; secrets go through ``stdin``, never ``command``."""
        ...


class SshEndpoint(Protocol):
    """How to reach a cluster over ssh, for routes that run ssh themselves."""

    system: str
    host: str
    port: int
    user: str | None
    identity_file: str | None
    known_hosts: str  # "" when host keys are not checked


@dataclass(frozen=True, slots=True)
class SshHop:
    """How one cluster reaches another over ssh, for a push: where, as whom, which host keys."""

    host: str  # as the source cluster reaches it (the destination's internal_host, or its host)
    port: int
    user: str
    host_keys: tuple[str, ...]  # known_hosts lines under agent.HOST_KEY_ALIAS; () when not checked
    identity_file: str | None  # the key the forwarded agent offers (None: only the daemon's own agent)


Progress = Callable[[int], None]  # bytes done so far, called now and then while a job runs


@dataclass(frozen=True, slots=True)
class FileCopy:
    """One file of a job that moves many: absolute paths on the cluster(s), and its size."""

    src: str
    dst: str
    size: int


class ClusterSessions(Protocol):
    """A cluster's persistent ssh session, whose helper runs copy jobs there (a cluster's ``session``).

    Each call is one job on an open connection: it blocks until the helper answers, within
    ``timeout`` seconds of work (the session's own start comes on top). Paths are absolute
    paths on the cluster; each destination is written whole or not at all. It raises
    :class:`~rhfs.errors.NoSession` when the session cannot run the job (no python3 there, say)
    and :class:`~rhfs.errors.CantCopy` when the route cannot run there at all, both before
    anything is written; signed requests reach the cluster only in the helper's stdin.
    """

    def copy(
        self, src: str, dst: str, size: int, *, timeout: float, progress: Progress | None = None
    ) -> None:
        """Copy a file within the cluster."""
        ...

    def push(
        self, src: str, hop: SshHop, dst: str, size: int, *, timeout: float, progress: Progress | None = None
    ) -> None:
        """Send a file to another cluster, over one ssh connection kept from this one to it."""
        ...

    def upload(
        self,
        src: str,
        size: int,
        parts: list[tuple[int, int, HttpRequest]],
        *,
        timeout: float,
        progress: Progress | None = None,
    ) -> list[str]:
        """PUT a file's parts to a store with the signed requests; each part's ETag."""
        ...

    def download(
        self, request: HttpRequest, dst: str, size: int, *, timeout: float, progress: Progress | None = None
    ) -> None:
        """GET an object with the signed request into a file."""
        ...

    def relay(
        self,
        request: HttpRequest,
        size: int,
        parts: list[tuple[int, int, HttpRequest]],
        *,
        timeout: float,
        progress: Progress | None = None,
    ) -> list[str]:
        """Stream an object from one store into another's parts; each part's ETag."""
        ...

    def copy_many(
        self, files: list[FileCopy], *, timeout: float, progress: Progress | None = None
    ) -> list[RhfsError | None]:
        """Copy several files within the cluster as one job; each file's failure (None: copied)."""
        ...

    def push_many(
        self, files: list[FileCopy], hop: SshHop, *, timeout: float, progress: Progress | None = None
    ) -> list[RhfsError | None]:
        """Send several files to another cluster as one job, over the one connection to it."""
        ...

    def receive_many(
        self, files: list[FileCopy], *, timeout: float, progress: Progress | None = None
    ) -> list[RhfsError | None]:
        """Send several files of the daemon host (``src``) to the cluster (``dst``), framed on
        the session's own connection; each file's failure (None: copied)."""
        ...

    def warm(self, hop: SshHop | None = None) -> None:
        """Start opening the session (and its connection to ``hop``) in the background."""
        ...

    def close(self) -> None:
        """Close the session now, if one is open (the next job opens another)."""
        ...


@dataclass(frozen=True, slots=True)
class Abilities:
    """A backend's optional abilities; each is None where the system lacks it."""

    copy_within: Callable[[str, str], None] | None = None  # the bytes never leave the system
    run: RunCommand | None = None  # a shell command on the system
    remote_path: Callable[[str], str] | None = None  # the absolute path there ("" -> the root)
    local_path: Callable[[str], str] | None = None  # the path on the daemon host's own disk
    symlink: Callable[[str, str], None] | None = None  # (target, path)
    set_mode: Callable[[str, int], None] | None = None
    # (path, uid, gid), never following a link; None leaves that id as it is
    set_owner: Callable[[str, int | None, int | None], None] | None = None
    hard_link: Callable[[str, str], None] | None = None  # (existing, new): one more name of a file
    make_node: Callable[[str, int, int], None] | None = None  # (path, mode with its S_IF type, rdev)
    # (path, atime_ns, mtime_ns), in nanoseconds; None leaves one as it is
    set_times: Callable[[str, int | None, int | None], None] | None = None
    check_path: Callable[[str], None] | None = None  # ENAMETOOLONG for a path the system cannot take
    remove_upload_leftovers: Callable[[str], int] | None = None  # a killed upload's temporary siblings
    ssh: SshEndpoint | None = None
    provider: Provider | None = None  # a store's adapter: server-side copy, signing, unfinished uploads
    session: ClusterSessions | None = None  # a cluster's kept ssh session, running copy jobs there
    # a view: where a file's bytes really are, (path, for_write) -> the place on its system
    underlying: Callable[[str, bool], Location] | None = None
    warm_up: Callable[[], None] | None = None  # make the client now; run at start, outside any guard


@runtime_checkable
class Backend(Protocol):
    system: str  # the name shown in stats and status: "here", "s3", "cluster-a", ...
    traits: Traits
    abilities: Abilities

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


def tmp_sibling(path: str) -> str:
    """A fresh temporary sibling of ``path`` (see :func:`upload_tmp_name`)."""
    return posixpath.join(posixpath.dirname(path), upload_tmp_name(posixpath.basename(path)))


def copy_then_rename(src: str, dst: str) -> str:
    """The shell command that copies ``src`` into a temporary sibling of ``dst`` and renames
    it over ``dst``, removing it on failure: ``dst`` never holds part of a copy (exit 1)."""
    tmp, q = tmp_sibling(dst), shlex.quote
    return f"cp -- {q(src)} {q(tmp)} && mv -f -- {q(tmp)} {q(dst)} || {{ rm -f -- {q(tmp)}; exit 1; }}"


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
