"""The one exception hierarchy of rhfs and the one table from exceptions to errno.

Every layer raises these (or lets an ``OSError`` with an errno through); the faces
(FUSE adapter, fsspec face, Python API, CLI) turn them into an errno, an exception
or an exit code in exactly one place each, by calling :func:`to_errno`. The errnos
of rhfs's own errors are chosen here: elsewhere an error gets its errno from the class
raised, never from ``errno_=`` (which only :func:`translate` passes).

Invariant: nothing maps to EINVAL by accident. An exception that is not known to
mean something specific becomes EIO, the errno of "the system behind this path
failed".
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket


class RhfsError(Exception):
    """Base class. ``errno`` is what the kernel will be told."""

    errno: int = errno.EIO

    def __init__(self, message: str = "", *, errno_: int | None = None) -> None:
        super().__init__(message)
        if errno_ is not None:
            self.errno = errno_


class NotFound(RhfsError):
    errno = errno.ENOENT


class AlreadyExists(RhfsError):
    errno = errno.EEXIST


class NotADirectory(RhfsError):
    errno = errno.ENOTDIR


class IsADirectory(RhfsError):
    errno = errno.EISDIR


class DirectoryNotEmpty(RhfsError):
    errno = errno.ENOTEMPTY


class ReadOnly(RhfsError):
    errno = errno.EROFS


class NotSupported(RhfsError):
    errno = errno.EOPNOTSUPP


class BadHandle(RhfsError):
    """A file handle that is not open, or not open for what was asked (a write to a reader)."""

    errno = errno.EBADF


class Stale(RhfsError):
    """The file changed since it was opened; reading on would mix two versions."""

    errno = errno.ESTALE


class Busy(RhfsError):
    """The tree's own directories (its root, each system's root) cannot be removed or renamed."""

    errno = errno.EBUSY


class CrossDevice(RhfsError):
    errno = errno.EXDEV


class InvalidArgument(RhfsError):
    """Used only where the input itself is wrong (a bad name, a non-parquet part)."""

    errno = errno.EINVAL


class PermissionDenied(RhfsError):
    errno = errno.EACCES


class NotPermitted(RhfsError):
    """An operation the system does not allow here at all: a hard link or a special file
    where it has none, a change of owner the login may not make (EPERM, as link(2) and
    mknod(2) answer on a filesystem without them)."""

    errno = errno.EPERM


class NameTooLong(RhfsError):
    errno = errno.ENAMETOOLONG


class NoAttribute(RhfsError):
    errno = errno.ENODATA


class Unavailable(RhfsError):
    """The system behind a path is down or failing; its subtree answers EIO."""

    errno = errno.EIO


class TimedOut(RhfsError):
    errno = errno.ETIMEDOUT


class ShortRead(RhfsError):
    """A system returned fewer bytes than the file holds at that offset."""

    errno = errno.EIO


class ReadStalled(RhfsError):
    """A read waited on read-ahead that made no progress for far longer than any backend call
    may take: a bug, answered as an I/O error rather than a hang."""

    errno = errno.EIO


class UploadFailed(RhfsError):
    """An upload failed; the data is kept under ``cache_dir`` at ``kept_at``."""

    errno = errno.EIO

    def __init__(self, message: str, kept_at: str | None = None) -> None:
        super().__init__(message)
        self.kept_at = kept_at


class CantCopy(RhfsError):
    """A copy route cannot serve this request; the caller falls back to the next one."""

    errno = errno.EXDEV


class NoSession(CantCopy):
    """A cluster's session cannot run this job (nothing was written); the route's per-file command may."""


class ConfigError(RhfsError):
    """A configuration problem; the message names the file and the key."""

    errno = errno.EINVAL


class FuseUnavailable(RhfsError):
    """FUSE cannot work on this machine (no libfuse3, /dev/fuse or fusermount3, or a libfuse
    that is not version 3); the message says how to fix it."""

    errno = errno.ENOSYS


# Ordered: the first matching class wins. Subclasses before their bases.
_OS_EXCEPTION_ERRNO: tuple[tuple[type[BaseException], int], ...] = (
    (FileNotFoundError, errno.ENOENT),
    (FileExistsError, errno.EEXIST),
    (IsADirectoryError, errno.EISDIR),
    (NotADirectoryError, errno.ENOTDIR),
    (PermissionError, errno.EACCES),
    (TimeoutError, errno.ETIMEDOUT),
    (asyncio.TimeoutError, errno.ETIMEDOUT),
    (socket.timeout, errno.ETIMEDOUT),
    (ConnectionError, errno.EIO),
    (NotImplementedError, errno.EOPNOTSUPP),
    (OverflowError, errno.EOVERFLOW),  # a value the system cannot hold (a time out of its range)
    (UnicodeEncodeError, errno.EINVAL),  # a name the system cannot hold (object keys are UTF-8)
)


def to_errno(exc: BaseException) -> int:
    """The errno that ``exc`` means. Unknown exceptions are EIO, never EINVAL."""
    if isinstance(exc, RhfsError):
        return exc.errno
    if isinstance(exc, OSError) and isinstance(exc.errno, int) and exc.errno > 0:
        return exc.errno
    for cls, code in _OS_EXCEPTION_ERRNO:
        if isinstance(exc, cls):
            return code
    if http_status(exc) in (401, 403):  # a client library's refusal (Azure's AuthorizationFailure)
        return errno.EACCES
    return errno.EIO


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (a server's reply may follow it), or its type."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def http_status(exc: BaseException) -> int | None:
    """The HTTP status of a client library's error (azure ``status_code``, gcsfs ``code``)."""
    for attr in ("status_code", "status", "code"):
        value = getattr(exc, attr, None)
        if isinstance(value, int) and 100 <= value < 600:
            return value
    return None


def describe(exc: RhfsError) -> str:
    """The message of ``exc``, then what its errno means where that says more: not for EIO
    and EINVAL (the catch-alls), nor when the message says it already."""
    message = str(exc)
    meaning = os.strerror(exc.errno)
    if exc.errno not in (errno.EIO, errno.EINVAL) and meaning not in message:
        message = f"{message}: {meaning}"
    return message


def is_not_permitted(exc: BaseException) -> bool:
    """Is ``exc`` a refusal by the system's permissions (EPERM or EACCES)?"""
    return to_errno(exc) in (errno.EPERM, errno.EACCES)


def errno_name(code: int) -> str:
    """The symbolic name of an errno (``ENOENT``), or its number when it has none."""
    return errno.errorcode.get(code, str(code))


def is_expected(code: int) -> bool:
    """Errors that are normal answers (a lookup of a missing name, a FIFO where a system has
    none), logged at debug."""
    return code in (errno.ENOENT, errno.ENODATA, errno.EEXIST, errno.ENOTEMPTY, errno.EXDEV, errno.EPERM)


_CLASS_OF_ERRNO: dict[int, type[RhfsError]] = {
    cls.errno: cls
    for cls in (
        NotFound,
        AlreadyExists,
        NotADirectory,
        IsADirectory,
        DirectoryNotEmpty,
        ReadOnly,
        NotSupported,
        CrossDevice,
        PermissionDenied,
        NotPermitted,
        NameTooLong,
        NoAttribute,
        TimedOut,
    )
}


def translate(exc: BaseException) -> RhfsError:
    """The rhfs exception for any exception, keeping its errno (see :func:`to_errno`)."""
    if isinstance(exc, RhfsError):
        return exc
    code = to_errno(exc)
    cls = _CLASS_OF_ERRNO.get(code, RhfsError)
    message = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return cls(message or type(exc).__name__, errno_=code)
