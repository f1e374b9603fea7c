"""The FUSE face: a thin shell that turns kernel requests into VFS calls.

This is the only module that imports mfusepy. Each operation is one VFS call;
the :func:`_op` decorator turns any exception into an errno and one log line
(debug for expected answers such as ENOENT, a warning with the cause otherwise).

libfuse3 is pinned before mfusepy loads (mfusepy prefers libfuse2 when both are
installed) and asserted afterwards (:class:`~rhfs.errors.FuseUnavailable` otherwise):
libfuse2 has no ``copy_file_range``, which is how ``cp`` reaches us. mfusepy has no
wrapper for that callback, so :class:`RhfsFUSE` adds it.
"""

from __future__ import annotations

import ctypes.util
import errno
import functools
import itertools
import logging
import os
import posixpath
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from rhfs.backends.base import Owner
from rhfs.errors import FuseUnavailable, NoAttribute, NotSupported, errno_name, is_expected, to_errno
from rhfs.vfs.attrs import Attr
from rhfs.vfs.core import Vfs
from rhfs.vfs.recent import RecentMap

log = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])


def _pin_libfuse3() -> None:
    if os.environ.get("FUSE_LIBRARY_PATH"):
        return
    path = ctypes.util.find_library("fuse3")
    if not path:
        raise FuseUnavailable("libfuse3 is not installed; install it with: sudo apt-get install -y fuse3")
    os.environ["FUSE_LIBRARY_PATH"] = path


_pin_libfuse3()
import mfusepy  # noqa: E402

if mfusepy.fuse_version_major != 3:
    raise FuseUnavailable(
        f"rhfs needs libfuse3, but {os.environ.get('FUSE_LIBRARY_PATH')} is libfuse "
        f"{mfusepy.fuse_version_major}.{mfusepy.fuse_version_minor}; "
        "install it with: sudo apt-get install -y fuse3"
    )

LIBFUSE_VERSION = (mfusepy.fuse_version_major, mfusepy.fuse_version_minor)
MAX_THREADS = 16  # libfuse worker threads: requests served at once
MAX_REQUEST = 1 << 20  # the largest read/write request libfuse 3.14 can take (256 pages)
READ_AHEAD_KB = 4096  # the mount's kernel readahead: four 1 MiB requests in flight per reader
MAX_BACKGROUND = 32  # readahead requests the kernel may have in flight
FUSE_CAP_READDIRPLUS_AUTO = 1 << 14
FUSE_READDIR_PLUS = 1 << 0
FUSE_FILL_DIR_PLUS = 1 << 1
OWN_XATTR_PREFIX = b"user.rhfs."
UNSUPPORTED_XATTR_PREFIXES = (b"security.", b"system.")  # no labels, capabilities or ACLs
UTIME_NOW, UTIME_OMIT = (1 << 30) - 1, (1 << 30) - 2  # utimensat(2)'s special tv_nsec values
PACKED_LISTINGS = 64  # directories whose converted listing is kept for the next readdir


def _op(fn: F) -> F:
    name = fn.__name__

    @functools.wraps(fn)
    def wrapper(self: Operations, *args: Any) -> Any:
        self.vfs.stats.add_op(name)
        try:
            return fn(self, *args)
        except mfusepy.FuseOSError:
            raise
        except Exception as e:
            code = to_errno(e)
            self.vfs.stats.add_error(code)
            path = args[0] if args and isinstance(args[0], str) else ""
            if is_expected(code):
                log.debug("%s %s: %s", name, path, os.strerror(code))
            else:
                log.warning("%s %s: %s: %s", name, path, errno_name(code), e)
            raise mfusepy.FuseOSError(code) from None

    return wrapper  # type: ignore[return-value]


def _caller() -> Owner:
    """The uid and gid of the process whose request this thread serves (libfuse's context)."""
    uid, gid, _ = mfusepy.fuse_get_context()
    return Owner(uid=uid, gid=gid)


def _kernel_forgetter() -> Callable[[str], None]:
    """Make the kernel forget the attributes it holds of a path (libfuse's fuse_invalidate_path),
    for the other names of a hard-linked file that changed. Called in a request or in init."""
    lib = ctypes.CDLL(os.environ["FUSE_LIBRARY_PATH"])
    lib.fuse_get_context.restype = ctypes.POINTER(mfusepy.fuse_context)
    lib.fuse_invalidate_path.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    lib.fuse_invalidate_path.restype = ctypes.c_int
    fuse = lib.fuse_get_context().contents.fuse

    def forget(path: str) -> None:
        code = lib.fuse_invalidate_path(fuse, path.encode("utf-8", "surrogateescape"))
        if code not in (0, -errno.ENOENT):  # ENOENT: the kernel holds nothing of it
            log.debug("the kernel did not forget %s: %s", path, os.strerror(-code))

    return forget


def _timespec_ns(ts: Any) -> int | None:
    """A ``struct timespec`` of utimensat(2) in nanoseconds: UTIME_NOW is now, UTIME_OMIT None."""
    if ts.tv_nsec == UTIME_OMIT:
        return None
    if ts.tv_nsec == UTIME_NOW:
        return time.time_ns()
    return int(ts.tv_sec) * 1_000_000_000 + int(ts.tv_nsec)


class RhfsFUSE(mfusepy.FUSE):
    """mfusepy's FUSE plus the ``copy_file_range`` callback of libfuse3, ``ftruncate``
    by handle, and C-level callbacks that mfusepy serves less well: ``readdir`` with whole
    attributes, ``opendir`` with the kernel's directory cache, and ``getxattr`` of names
    rhfs never has."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._listings: dict[int, tuple[list[bytes], Any]] = {}  # dir handle -> packed listing
        self._packed: RecentMap[str, tuple[list[tuple[str, Attr]], tuple[list[bytes], Any]]] = RecentMap(
            PACKED_LISTINGS
        )
        self._dir_handles = itertools.count(1)
        super().__init__(*args, **kwargs)

    def truncate_fuse_3(self, path: bytes | None, length: int, fip: Any) -> int:
        # mfusepy drops the file info; ftruncate of an unlinked file has only its handle.
        result: int = self.operations.truncate(
            None if path is None else path.decode(self.encoding, self.errors),
            length,
            fip.contents if fip else None,
        )
        return result

    def utimens_fuse_3(self, path: bytes | None, buf: Any, fip: Any) -> int:
        # mfusepy reads UTIME_NOW and UTIME_OMIT, which live in tv_nsec, as nanosecond counts:
        # `touch` would set 1970. Here each timespec is decoded: now, left out (None), or a time.
        times = None
        if buf:
            times = (_timespec_ns(buf.contents.actime), _timespec_ns(buf.contents.modtime))
        result: int = self.operations.utimens(
            None if path is None else path.decode(self.encoding, self.errors), times
        )
        return result

    def readdir_fuse_3(
        self, path: bytes | None, buf: Any, filler: Any, offset: int, fip: Any, flags: int
    ) -> int:
        # mfusepy passes only the mode, and offsets of 0, with which libfuse 3.14 sends
        # readdirplus entries the kernel ignores. Here every entry carries its attributes and
        # its position, so ``ls -l`` stats each entry from the kernel's cache, not by a LOOKUP.
        # The listing is taken once per opendir; later chunks resume from the kernel's offset.
        fh = fip.contents.fh
        packed = self._listings.get(fh) if offset else None
        if packed is None:
            decoded = "" if path is None else path.decode(self.encoding, self.errors)
            packed = self._pack(decoded, self.operations.readdir_attrs(decoded))
            self._listings[fh] = packed
        names, stats = packed
        plus = FUSE_FILL_DIR_PLUS if flags & FUSE_READDIR_PLUS else 0
        for index in range(offset, len(names)):
            if filler(buf, names[index], stats[index], index + 1, plus) != 0:
                break
        return 0

    def _pack(self, path: str, items: list[tuple[str, Attr]]) -> tuple[list[bytes], Any]:
        """Names and ``struct stat``s of a listing, built once per listing the VFS returns."""
        memo = self._packed.get(path)
        if memo is not None and memo[0] is items:
            return memo[1]
        stats = (mfusepy.c_stat * len(items))()
        for st, (name, attr) in zip(stats, items, strict=True):
            at = posixpath.normpath(posixpath.join(path, name))
            mfusepy.set_st_attrs(st, attr.as_stat(at), use_ns=True)
        packed = ([name.encode(self.encoding, self.errors) for name, _ in items], stats)
        self._packed.put(path, (items, packed))
        return packed

    def opendir(self, path: bytes, fip: Any) -> int:
        fi = fip.contents
        keep = self.operations.opendir(path.decode(self.encoding, self.errors))
        fi.fh = next(self._dir_handles)
        fi.cache_readdir = 1  # the kernel may serve readdir from its cache...
        fi.keep_cache = int(keep)  # ...but drops it unless what it read last is current
        return 0

    def releasedir(self, path: bytes | None, fip: Any) -> int:
        self._listings.pop(fip.contents.fh, None)
        return 0

    def getxattr(self, path: bytes, name: bytes, value: Any, size: int, *args: Any) -> int:
        # Names rhfs never has are answered here, with the errnos of NotSupported and
        # NoAttribute but without raising them through _op: no log line, no error counted.
        # The kernel asks for security.capability before every write; ``ls -l`` asks for an
        # ACL and a security label for every entry, unless told once that the filesystem has
        # none (EOPNOTSUPP), which it remembers for the rest of the listing.
        if name.startswith(UNSUPPORTED_XATTR_PREFIXES):
            return -NotSupported.errno
        if not name.startswith(OWN_XATTR_PREFIX):
            return -NoAttribute.errno
        result: int = super().getxattr(path, name, value, size, *args)
        return result

    def copy_file_range(
        self,
        path_in: bytes | None,
        fip_in: Any,
        off_in: int,
        path_out: bytes | None,
        fip_out: Any,
        off_out: int,
        size: int,
        flags: int,
    ) -> int:
        result: int = self.operations.copy_file_range(
            None if path_in is None else path_in.decode(self.encoding, self.errors),
            fip_in.contents.fh,
            off_in,
            None if path_out is None else path_out.decode(self.encoding, self.errors),
            fip_out.contents.fh,
            off_out,
            size,
            flags,
        )
        return result


class Operations(mfusepy.Operations):
    """Every callback is one VFS call. ``raw_fi`` gives us fuse_file_info for keep_cache and direct_io."""

    use_ns = True

    def __init__(
        self,
        vfs: Vfs,
        on_init: Callable[[], None] | None = None,
        on_destroy: Callable[[], None] | None = None,
    ) -> None:
        """``on_destroy`` runs after the unmount's final upload of pending writes."""
        self.vfs = vfs
        self.on_init = on_init
        self.on_destroy = on_destroy

    def init_with_config(self, conn: Any, config: Any) -> None:
        ttl = self.vfs.cache.ttl
        if config is not None:
            config.attr_timeout = ttl
            config.entry_timeout = ttl
            config.negative_timeout = ttl
            # a file unlinked while open is renamed to .fuse_hidden*, so that fstat still finds
            # it; the VFS removes its name on the system at once and never renames it there
            config.hard_remove = 0
            config.use_ino = 1  # here/'s own inodes (names of one file share one), made up elsewhere
            config.kernel_cache = 0
            config.auto_cache = 0
        if conn is not None:
            conn.max_write = MAX_REQUEST
            conn.max_readahead = READ_AHEAD_KB << 10
            conn.max_background = MAX_BACKGROUND
            conn.congestion_threshold = MAX_BACKGROUND * 3 // 4
            # readdirplus on every readdir, not only the first of a directory: ls -l of a big
            # directory reads it in several getdents calls
            conn.want &= ~FUSE_CAP_READDIRPLUS_AUTO
        self.vfs.forget_attrs = _kernel_forgetter()
        if self.on_init:
            self.on_init()

    def destroy(self, path: str) -> None:
        self.vfs.shutdown()
        if self.on_destroy:
            self.on_destroy()

    @_op
    def getattr(self, path: str | None, fh: Any = None) -> dict[str, int]:
        return self.vfs.getattr(path, fh.fh if fh is not None else None).as_stat(path or "")

    @_op
    def readdir(self, path: str, fh: int) -> list[tuple[str, dict[str, int], int]]:
        """Defined so that mfusepy registers readdir; RhfsFUSE.readdir_fuse_3 serves it
        from :meth:`readdir_attrs`. This plain form is mfusepy's own readdir protocol."""
        return [(name, attr.as_stat(posixpath.join(path, name)), 0) for name, attr in self.vfs.readdir(path)]

    @_op
    def readdir_attrs(self, path: str) -> list[tuple[str, Attr]]:
        """The entries with their attributes; the same list object while the listing is unchanged."""
        return self.vfs.readdir(path)

    @_op
    def opendir(self, path: str) -> bool:
        """Whether the kernel's cached entries of ``path`` are current (RhfsFUSE makes the handle)."""
        return self.vfs.opendir(path)

    def releasedir(self, path: str | None, fh: int) -> int:
        return 0  # RhfsFUSE drops the listing it kept for the handle

    @_op
    def readlink(self, path: str) -> str:
        return self.vfs.readlink(path)

    @_op
    def statfs(self, path: str) -> dict[str, int]:
        return self.vfs.statfs(path)

    @_op
    def open(self, path: str, fi: Any) -> int:
        opened = self.vfs.open(path, fi.flags)
        fi.fh = opened.fh
        fi.keep_cache = int(opened.keep_cache)
        fi.direct_io = int(opened.direct_io)
        return 0

    @_op
    def create(self, path: str, mode: int, fi: Any) -> int:
        opened = self.vfs.create(path, mode, fi.flags, _caller())
        fi.fh = opened.fh
        return 0

    @_op
    def read(self, path: str | None, size: int, offset: int, fi: Any) -> bytes:
        return self.vfs.read(fi.fh, size, offset)

    @_op
    def write(self, path: str | None, data: bytes, offset: int, fi: Any) -> int:
        return self.vfs.write(fi.fh, data, offset)

    @_op
    def truncate(self, path: str | None, length: int, fh: Any = None) -> int:
        self.vfs.truncate(path, length, fh.fh if fh is not None else None)
        return 0

    @_op
    def fallocate(self, path: str | None, mode: int, offset: int, size: int, fi: Any) -> int:
        self.vfs.fallocate(fi.fh, mode, offset, size)
        return 0

    @_op
    def flush(self, path: str | None, fi: Any) -> int:
        self.vfs.flush(fi.fh)
        return 0

    @_op
    def fsync(self, path: str | None, datasync: int, fi: Any) -> int:
        self.vfs.fsync(fi.fh)
        return 0

    @_op
    def release(self, path: str | None, fi: Any) -> int:
        self.vfs.release(fi.fh)
        return 0

    @_op
    def mkdir(self, path: str, mode: int) -> int:
        self.vfs.mkdir(path, mode, _caller())
        return 0

    @_op
    def mknod(self, path: str, mode: int, dev: int) -> int:
        self.vfs.mknod(path, mode, dev, _caller())
        return 0

    @_op
    def rmdir(self, path: str) -> int:
        self.vfs.rmdir(path)
        return 0

    @_op
    def unlink(self, path: str) -> int:
        self.vfs.unlink(path)
        return 0

    @_op
    def rename(self, old: str, new: str) -> int:
        self.vfs.rename(old, new)
        return 0

    @_op
    def symlink(self, path: str, target: str) -> int:
        self.vfs.symlink(target, path, _caller())
        return 0

    @_op
    def link(self, path: str, target: str) -> int:
        self.vfs.link(target, path)
        return 0

    @_op
    def chmod(self, path: str | None, mode: int) -> int:
        if path is not None:
            self.vfs.chmod(path, mode)
        return 0

    @_op
    def chown(self, path: str | None, uid: int, gid: int) -> int:
        if path is not None:
            self.vfs.chown(path, uid, gid)
        return 0

    @_op
    def utimens(self, path: str | None, times: tuple[int | None, int | None] | None = None) -> int:
        """``times`` in nanoseconds, None for UTIME_OMIT (RhfsFUSE decodes the kernel's timespecs)."""
        if path is not None:
            now = time.time_ns()
            atime_ns, mtime_ns = times if times is not None else (now, now)
            self.vfs.utimens(path, atime_ns, mtime_ns)
        return 0

    @_op
    def getxattr(self, path: str, name: str, position: int = 0) -> bytes:
        return self.vfs.getxattr(path, name)

    @_op
    def listxattr(self, path: str) -> list[str]:
        return self.vfs.listxattr(path)

    @_op
    def copy_file_range(
        self,
        path_in: str | None,
        fh_in: int,
        off_in: int,
        path_out: str | None,
        fh_out: int,
        off_out: int,
        size: int,
        flags: int,
    ) -> int:
        return self.vfs.copy_file_range(fh_in, off_in, fh_out, off_out, size)


def serve(
    operations: Operations,
    mountpoint: str,
    *,
    allow_other: bool = False,
    read_only: bool = False,
    debug: bool = False,
) -> None:
    """Serve until unmounted or signalled (libfuse handles SIGTERM/SIGINT/SIGHUP)."""
    # libfuse 3.14's fuse_main_real hands its UINT_MAX default for max_idle_threads to a setter
    # that rejects it with a warning on every mount (libfuse issue 1003); naming both values avoids it.
    options: dict[str, Any] = {
        "fsname": "rhfs",
        "subtype": "rhfs",
        "max_idle_threads": MAX_THREADS,
        "max_threads": MAX_THREADS,
    }
    if allow_other:
        options["allow_other"] = True
        options["default_permissions"] = True
    if read_only:
        options["ro"] = True
    threading.Thread(target=_tune_bdi, args=(mountpoint,), name="rhfs-tune", daemon=True).start()
    threading.Thread(target=_warm_up, args=(operations.vfs,), name="rhfs-warm-up", daemon=True).start()
    RhfsFUSE(operations, mountpoint, raw_fi=True, foreground=True, nothreads=False, debug=debug, **options)


def _tune_bdi(mountpoint: str, timeout: float = 60.0) -> None:
    """Raise the mount's kernel readahead once it is mounted.

    The kernel caps a FUSE mount's readahead at 128 KiB, whatever ``max_readahead``
    says; only the bdi's ``read_ahead_kb`` raises it (root only). Found by the mount's
    device number in mountinfo: stat()ing our own mount from here could deadlock.
    """
    target = os.path.abspath(mountpoint)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open("/proc/self/mountinfo") as f:
            device = next((ln.split()[2] for ln in f if ln.split()[4] == target and " - fuse" in ln), None)
        if device is not None:
            try:
                with open(f"/sys/class/bdi/{device}/read_ahead_kb", "w") as bdi:
                    bdi.write(str(READ_AHEAD_KB))
            except OSError as e:
                log.info("kernel readahead left at its default (%s): %s", device, e)
            return
        time.sleep(0.05)


def _warm_up(vfs: Vfs) -> None:
    """Make each system's client now (imports, models), not in the first user's request.

    The ability runs outside the guards: a failure here is not an outage; the first real
    request will say what is wrong."""
    for backend in vfs.table.backends():
        warm_up = backend.abilities.warm_up
        if warm_up is not None:
            try:
                warm_up()
            except Exception as e:
                log.debug("warming up %s: %s", backend.system, e)
