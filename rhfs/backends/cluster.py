"""An SSH cluster as a backend: SFTP for files, a remote shell for commands.

The connection is made on first use and made again after it breaks, so a
cluster that is down when the mount starts, or restarts later, only costs its
own subtree EIO until it answers again.

Invariants:
- host keys are checked against ``known_hosts`` unless it is ``""`` on purpose;
- no path resolves outside the cluster's root (``..`` is refused);
- uploads go to a temporary sibling and are renamed over the target, so a
  reader or a crash never sees half a file;
- secrets reach a remote command only through its stdin.

Copy routes run their jobs on the cluster through its ``session`` ability, a kept
connection of its own (:mod:`rhfs.backends.cluster_session`), closed after
``session_idle`` seconds without a job (0: no session, a command per file).
"""

from __future__ import annotations

import logging
import os
import posixpath
import stat as stat_mod
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from rhfs.backends import cluster_nodes
from rhfs.backends.base import (
    SPECIAL_TYPES,
    TMP_MARK,
    Abilities,
    Entry,
    Traits,
    check_name,
    check_path_length,
    check_rename_over,
    copy_then_rename,
    is_upload_tmp_of,
    upload_tmp_name,
)
from rhfs.errors import (
    AlreadyExists,
    DirectoryNotEmpty,
    InvalidArgument,
    IsADirectory,
    NotADirectory,
    NotFound,
    PermissionDenied,
    RhfsError,
    Unavailable,
)
from rhfs.stats import Stats

log = logging.getLogger(__name__)
T = TypeVar("T")
CONNECT_TIMEOUT = 10.0
SFTP_TIME_MAX = (1 << 32) - 1  # SFTP v3 times are unsigned 32-bit seconds (the year 2106)
UPLOAD_REQUESTS = 64  # writes in flight during an upload, each of the server's maximum size


def asyncssh_error() -> type[Exception]:
    import asyncssh

    return asyncssh.SFTPError


def _sftp_error(exc: BaseException, path: str) -> BaseException:
    import asyncssh

    table: dict[int, type[RhfsError]] = {
        asyncssh.sftp.FX_NO_SUCH_FILE: NotFound,
        asyncssh.sftp.FX_PERMISSION_DENIED: PermissionDenied,
        asyncssh.sftp.FX_FILE_ALREADY_EXISTS: AlreadyExists,
        asyncssh.sftp.FX_DIR_NOT_EMPTY: DirectoryNotEmpty,
        asyncssh.sftp.FX_NOT_A_DIRECTORY: NotADirectory,
        asyncssh.sftp.FX_FILE_IS_A_DIRECTORY: IsADirectory,
    }
    if isinstance(exc, asyncssh.SFTPError):
        if exc.code in (asyncssh.sftp.FX_NO_CONNECTION, asyncssh.sftp.FX_CONNECTION_LOST):
            return Unavailable(f"connection lost: {exc.reason}")
        cls = table.get(exc.code)
        if cls is not None:
            return cls(path)
        return RhfsError(f"{path}: {exc.reason}")
    if isinstance(exc, asyncssh.Error | ConnectionError | EOFError | BrokenPipeError):
        return Unavailable(f"connection lost: {exc}")
    return exc


async def _advance_mtime(sftp: Any, tmp: str, old: Any) -> None:
    """Make the replacement's version differ from the old file's.

    SFTP v3 (OpenSSH) gives mtimes in whole seconds and no inode, so a same-size
    rewrite within one second would keep the etag ``mtime-size``. Such a rewrite gets
    the old mtime plus one second instead.
    """
    new = await sftp.stat(tmp)
    if new.size == old.size and old.mtime is not None and (new.mtime or 0) <= old.mtime:
        await sftp.utime(tmp, (new.atime or old.mtime, old.mtime + 1))


async def _keep_owner(sftp: Any, tmp: str, old: Any, login: tuple[int, int] | None) -> None:
    """Give an upload's temporary sibling the owner of the file it replaces, where the login may."""
    if old.uid is None or login is None or (old.uid, old.gid) == login:
        return
    try:
        await sftp.chown(tmp, uid=old.uid, gid=old.gid)
    except asyncssh_error() as e:
        log.debug("%s: keeps the login's owner: %s", tmp, e)


def entry_from_attrs(
    name: str, attrs: Any, link_target: str | None = None, ids: IdMap | None = None
) -> Entry:
    """An entry from SFTP attributes; owners through ``ids`` (the login's own shown as the daemon's)."""
    mode = attrs.permissions or 0
    is_dir = stat_mod.S_ISDIR(mode)
    node_type = stat_mod.S_IFMT(mode)
    uid, gid = (ids or IdMap()).shown(attrs.uid, attrs.gid)
    return Entry(
        name=name,
        is_dir=is_dir,
        size=0 if is_dir else int(attrs.size or 0),
        mtime=float(attrs.mtime or 0),
        etag=f"{attrs.mtime}-{attrs.size}" + (f"-{attrs.mtime_ns}" if attrs.mtime_ns else ""),
        mode=stat_mod.S_IMODE(mode),
        link_target=link_target,
        mtime_ns=_ns(attrs.mtime, attrs.mtime_ns),
        atime_ns=_ns(attrs.atime, attrs.atime_ns),
        uid=uid,
        gid=gid,
        node_type=node_type if node_type in SPECIAL_TYPES else None,
    )


class IdMap:
    """The login's uid and gid on the cluster, shown as the daemon's own (sshfs's ``idmap=user``):
    files the login owns there are the daemon user's here, whatever their numbers on each side.
    Every other owner is shown by its number on the cluster. Unknown ids (None) map nothing."""

    def __init__(self, remote: tuple[int, int] | None = None) -> None:
        self.remote = remote
        self.local = (os.geteuid(), os.getegid())

    def shown(self, uid: int | None, gid: int | None) -> tuple[int | None, int | None]:
        return self._swap(uid, gid, self.remote, self.local)

    def sent(self, uid: int | None, gid: int | None) -> tuple[int | None, int | None]:
        """The ids to ask the cluster for, for ids as shown here."""
        return self._swap(uid, gid, self.local, self.remote)

    @staticmethod
    def _swap(
        uid: int | None, gid: int | None, src: tuple[int, int] | None, dst: tuple[int, int] | None
    ) -> tuple[int | None, int | None]:
        if src is None or dst is None:
            return uid, gid
        return (dst[0] if uid == src[0] else uid, dst[1] if gid == src[1] else gid)


def _ns(seconds: int | None, nanoseconds: int | None) -> int | None:
    """An SFTP time in nanoseconds (SFTP v3 has whole seconds, v4 adds nanoseconds)."""
    return None if seconds is None else int(seconds) * 1_000_000_000 + int(nanoseconds or 0)


def sftp_time(ns: int) -> int:
    """A time as SFTP v3 (OpenSSH) carries it: whole seconds in 32 unsigned bits.

    Times outside that range are clamped to it, as the kernel clamps times to what a
    filesystem can hold (ext4 with small inodes, say); docs/SEMANTICS.md, Times.
    """
    return min(max(ns // 1_000_000_000, 0), SFTP_TIME_MAX)


class ClusterReader:
    """A ranged reader of one remote file, shared by the read-ahead producers of one handle.

    The remote file is opened once, on first read, under ``_lock`` (several producers may make
    that first read at once); reads themselves run in parallel on the open file.
    """

    def __init__(self, backend: ClusterBackend, path: str) -> None:
        self.backend, self.path = backend, path
        self._file: Any = None
        self._opened_on: Any = None  # the connection the handle belongs to
        self._lock = threading.Lock()  # guards _file and _opened_on

    def _remote_file(self) -> Any:
        """The remote file, opened now if it is not open on the current connection."""
        with self._lock:
            if self._file is not None and self._opened_on is self.backend._fs:
                return self._file

            async def go(sftp: Any) -> Any:
                return await sftp.open(self.path, "rb")

            self._file = None  # its connection was dropped since: reopen on the new one
            self._file = self.backend._call(go, self.path)
            self._opened_on = self.backend._fs  # the connection _call opened it on
            return self._file

    def read(self, offset: int, size: int) -> bytes:
        remote = self._remote_file()

        async def go(_: Any) -> bytes:
            data: bytes = await remote.read(size, offset)
            return data

        try:
            return self.backend._call(go, self.path)
        except (Unavailable, TimeoutError):  # the handle died with its connection: reopen next time
            with self._lock:
                if self._file is remote:
                    self._file = None
            raise

    def close(self) -> None:
        with self._lock:
            f, self._file = self._file, None
        if f is not None:

            async def go(_: Any) -> None:
                await f.close()

            try:
                self.backend._call(go, self.path)
            except Exception:  # closing a file on a dead connection is not an error
                pass


class ClusterBackend:
    traits = Traits(family="cluster", remote=True, open_survives_unlink=True)

    def __init__(
        self,
        system: str,
        host: str,
        port: int = 22,
        user: str | None = None,
        identity_file: str | None = None,
        known_hosts: str = "~/.ssh/known_hosts",
        root: str = "~",
        op_timeout: float = 30.0,
        session_idle: float = 60.0,
        stats: Stats | None = None,
    ) -> None:
        self.system = system
        self.host, self.port, self.user = host, port, user
        self.identity_file = os.path.expanduser(identity_file) if identity_file else None
        self.known_hosts = os.path.expanduser(known_hosts) if known_hosts else ""
        self.root_setting = root
        self.op_timeout = op_timeout
        self._fs: Any = None
        self._root: str | None = None
        self._ids: IdMap | None = None
        self._lock = threading.Lock()
        from rhfs.backends.cluster_session import ClusterSession  # it builds on this module

        session = ClusterSession(self, stats or Stats(), idle=session_idle) if session_idle > 0 else None
        self.abilities = Abilities(
            copy_within=self.copy_within,
            run=self.run,
            remote_path=self.remote_path,
            symlink=self.symlink,
            set_mode=self.set_mode,
            set_owner=self.set_owner,
            set_times=self.set_times,
            hard_link=self.hard_link,
            make_node=self.make_node,
            check_path=self.check_path,
            remove_upload_leftovers=self.remove_upload_leftovers,
            ssh=self,
            session=session,
        )
        if not self.known_hosts:
            log.warning("%s: known_hosts is empty: host keys are NOT checked", system)

    # -- connection -----------------------------------------------------------------
    def _connect(self) -> Any:
        import sshfs

        kwargs: dict[str, Any] = {
            "port": self.port,
            "known_hosts": self.known_hosts or None,
            "timeout": CONNECT_TIMEOUT,
            "connect_timeout": CONNECT_TIMEOUT,
            "skip_instance_cache": True,
            "keepalive_interval": 15,
            "keepalive_count_max": 2,
        }
        if self.user:
            kwargs["username"] = self.user
        if self.identity_file:
            kwargs["client_keys"] = [self.identity_file]
        fs = sshfs.SSHFileSystem(self.host, **kwargs)
        return fs

    def _filesystem(self) -> Any:
        with self._lock:
            if self._fs is None:
                self._fs = self._connect()
                self._root = None
            return self._fs

    def _drop(self, fs: Any) -> None:
        with self._lock:
            if self._fs is fs:
                self._fs = None
        try:
            fs.client.close()
        except Exception:
            pass

    def _call(self, fn: Callable[[Any], Awaitable[T]], path: str = "") -> T:
        """Run ``fn(sftp)`` on the connection's loop; reconnect next time if the link broke."""
        from fsspec.asyn import sync

        try:
            fs = self._filesystem()
        except Exception as e:
            raise Unavailable(f"{self.system}: cannot connect to {self.host}:{self.port}: {e}") from e

        async def with_channel() -> T:
            async with fs._pool.get() as sftp:
                return await fn(sftp)

        try:
            return sync(fs.loop, with_channel, timeout=self.op_timeout)
        except Exception as e:
            mapped = _sftp_error(e, path)
            if isinstance(mapped, Unavailable) or isinstance(e, TimeoutError):
                self._drop(fs)
            if mapped is e:
                raise
            raise mapped from e

    @property
    def root(self) -> str:
        if self._root is None:

            async def home(sftp: Any) -> str:
                resolved: str = await sftp.realpath(".")
                return resolved

            setting = self.root_setting or "~"
            if setting == "~" or setting.startswith("~/"):
                base = self._call(home)
                self._root = posixpath.normpath(base + setting[1:])
            else:
                self._root = posixpath.normpath(setting)
        return self._root

    @property
    def ids(self) -> IdMap:
        """The login's ids on the cluster (``id -u``, ``id -g``), asked once it answers; a login
        that runs no commands maps none."""
        if self._ids is None:
            try:
                code, out, _ = self.run("id -u && id -g")
            except RhfsError as e:
                log.debug("%s: the login's uid and gid are not known yet: %s", self.system, e)
                return IdMap()
            numbers = [int(n) for n in out.split() if n.isdigit()] if code == 0 else []
            self._ids = IdMap((numbers[0], numbers[1]) if len(numbers) == 2 else None)
        return self._ids

    def _abs(self, path: str) -> str:
        if not path:
            return self.root
        check_name(path)
        full = posixpath.join(self.root, path)
        check_path_length(full)
        return full

    def remote_path(self, path: str) -> str:
        """The absolute path on the cluster; used by copy routes that run commands there."""
        return self._abs(path)

    # -- the Backend protocol -------------------------------------------------------
    def stat(self, path: str) -> Entry:
        full, ids = self._abs(path), self.ids

        async def go(sftp: Any) -> Entry:
            attrs = await sftp.lstat(full)
            target = await sftp.readlink(full) if stat_mod.S_ISLNK(attrs.permissions or 0) else None
            return entry_from_attrs(posixpath.basename(path), attrs, target, ids)

        return self._call(go, path)

    def list(self, path: str) -> list[Entry]:
        full, ids = self._abs(path), self.ids

        async def go(sftp: Any) -> list[Entry]:
            names = await sftp.readdir(full)
            out = []
            for n in names:
                if n.filename in (".", "..") or n.filename.startswith(TMP_MARK):
                    continue
                target = None
                if stat_mod.S_ISLNK(n.attrs.permissions or 0):
                    target = await sftp.readlink(posixpath.join(full, n.filename))
                out.append(entry_from_attrs(n.filename, n.attrs, target, ids))
            return out

        try:
            return self._call(go, path)
        except NotFound:
            self._raise_not_a_directory(path)
            raise
        except RhfsError as e:
            if type(e) is RhfsError and not self.stat(path).is_dir:
                raise NotADirectory(path) from None
            raise

    def _raise_not_a_directory(self, path: str) -> None:
        """sftp-server answers "no such file" for ENOTDIR; tell the two apart for ``path``."""
        try:
            entry = self.stat(path)
        except NotFound:
            return
        if not entry.is_dir:
            raise NotADirectory(path) from None

    def _check_parent(self, path: str) -> None:
        """After a "no such file": ENOTDIR if the parent of ``path`` is a file."""
        parent = posixpath.dirname(path)
        if parent:
            self._raise_not_a_directory(parent)

    def open_reader(self, path: str, entry: Entry) -> ClusterReader:
        return ClusterReader(self, self._abs(path))

    def upload(self, local_path: str, path: str) -> None:
        full, login = self._abs(path), self.ids.remote
        tmp = posixpath.join(posixpath.dirname(full), upload_tmp_name(posixpath.basename(full)))

        async def go(sftp: Any) -> None:
            try:
                # block_size -1: the server's own limit (OpenSSH takes at most 256 KiB per write).
                # sparse=False: asyncssh's sparse copy skips holes, and a trailing hole (a file
                # extended by truncate) would leave the remote file short.
                await sftp.put(local_path, tmp, block_size=-1, max_requests=UPLOAD_REQUESTS, sparse=False)
                try:
                    old = await sftp.stat(full)
                except asyncssh_error():
                    old = None
                if old is not None:
                    await _keep_owner(sftp, tmp, old, login)
                    await sftp.chmod(tmp, stat_mod.S_IMODE(old.permissions or 0o644))
                    await _advance_mtime(sftp, tmp, old)
                await sftp.posix_rename(tmp, full)
            except BaseException:
                try:
                    await sftp.remove(tmp)
                except Exception:
                    pass
                raise

        try:
            self._call(go, path)
        except NotFound:
            self._check_parent(path)
            raise

    def remove(self, path: str) -> None:
        full = self._abs(path)

        async def go(sftp: Any) -> None:
            attrs = await sftp.lstat(full)
            if stat_mod.S_ISDIR(attrs.permissions or 0):
                raise IsADirectory(path)
            await sftp.remove(full)

        self._call(go, path)

    def mkdir(self, path: str) -> None:
        full = self._abs(path)

        async def go(sftp: Any) -> None:
            try:
                await sftp.mkdir(full)
            except asyncssh_error() as e:
                try:
                    await sftp.lstat(full)
                except asyncssh_error():
                    raise e from None
                raise AlreadyExists(path) from None

        try:
            self._call(go, path)
        except NotFound:
            self._check_parent(path)
            raise

    def rmdir(self, path: str) -> None:
        full = self._abs(path)

        async def go(sftp: Any) -> None:
            attrs = await sftp.lstat(full)
            if not stat_mod.S_ISDIR(attrs.permissions or 0):
                raise NotADirectory(path)
            if [n for n in await sftp.listdir(full) if n not in (".", "..")]:
                raise DirectoryNotEmpty(path)
            await sftp.rmdir(full)

        self._call(go, path)

    def rename(self, src: str, dst: str) -> None:
        full_src, full_dst = self._abs(src), self._abs(dst)

        async def go(sftp: Any) -> None:
            src_attrs = await sftp.lstat(full_src)
            if await sftp.exists(full_dst):
                dst_attrs = await sftp.lstat(full_dst)
                src_dir = stat_mod.S_ISDIR(src_attrs.permissions or 0)
                dst_dir = stat_mod.S_ISDIR(dst_attrs.permissions or 0)
                check_rename_over(src_dir, dst_dir, dst)
                if dst_dir and [n for n in await sftp.listdir(full_dst) if n not in (".", "..")]:
                    raise DirectoryNotEmpty(dst)
            await sftp.posix_rename(full_src, full_dst)

        try:
            self._call(go, src)
        except NotFound:
            self._check_parent(dst)
            raise

    def check_path(self, path: str) -> None:
        """Refuse, without a request, a path SFTP cannot carry (its paths are UTF-8 here)."""
        try:
            path.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidArgument(f"{path!r}: cluster paths are UTF-8, and this name is not") from None
        self._abs(path)  # a bad name, or a path too long for the cluster's PATH_MAX

    def url(self, path: str) -> str:
        user = f"{self.user}@" if self.user else ""
        return f"ssh://{user}{self.host}:{self.port}{self._abs(path)}"

    # -- optional abilities ---------------------------------------------------------
    def remove_upload_leftovers(self, path: str) -> int:
        """Remove the temporary siblings that killed uploads of ``path`` left; how many."""
        full = self._abs(path)
        folder, name = posixpath.split(full)

        async def go(sftp: Any) -> int:
            try:
                names = await sftp.listdir(folder)
            except asyncssh_error():
                return 0  # the folder is gone, and what was in it
            leftovers = [n for n in names if is_upload_tmp_of(n, name)]
            for n in leftovers:
                await sftp.remove(posixpath.join(folder, n))
            return len(leftovers)

        return self._call(go, path)

    def copy_within(self, src: str, dst: str) -> None:
        code, _, err = self.run(copy_then_rename(self._abs(src), self._abs(dst)))
        if code != 0:
            raise RhfsError(f"{self.system}: remote cp failed: {err.strip()[:200]}")

    def run(
        self, command: str, *, stdin: bytes | None = None, timeout: float | None = None
    ) -> tuple[int, str, str]:
        from fsspec.asyn import sync

        try:
            fs = self._filesystem()
        except Exception as e:
            raise Unavailable(f"{self.system}: cannot connect to {self.host}:{self.port}: {e}") from e

        async def go() -> Any:
            return await fs.client.run(command, input=stdin, encoding=None, check=False)

        try:
            result = sync(fs.loop, go, timeout=timeout or self.op_timeout)
        except Exception as e:
            mapped = _sftp_error(e, command)
            if isinstance(mapped, Unavailable) or isinstance(e, TimeoutError):
                self._drop(fs)
            raise mapped from e
        out = (result.stdout or b"").decode("utf-8", "replace")
        err = (result.stderr or b"").decode("utf-8", "replace")
        return (result.exit_status if result.exit_status is not None else 255), out, err

    def symlink(self, target: str, path: str) -> None:
        full = self._abs(path)

        async def go(sftp: Any) -> None:
            if await sftp.exists(full) or await sftp.islink(full):
                raise AlreadyExists(path)
            await sftp.symlink(target, full)

        self._call(go, path)

    def set_mode(self, path: str, mode: int) -> None:
        full = self._abs(path)

        async def go(sftp: Any) -> None:
            await sftp.chmod(full, stat_mod.S_IMODE(mode))

        self._call(go, path)

    def set_owner(self, path: str, uid: int | None, gid: int | None) -> None:
        """chown through SFTP, on the name itself (OpenSSH's lsetstat); where the login may."""
        full = self._abs(path)
        uid, gid = self.ids.sent(uid, gid)

        async def go(sftp: Any) -> None:
            if uid is None or gid is None:  # SFTP sets both: keep the one left out
                old = await sftp.lstat(full)
            await sftp.chown(
                full,
                uid=old.uid if uid is None else uid,
                gid=old.gid if gid is None else gid,
                follow_symlinks=False,
            )

        self._call(go, path)

    def hard_link(self, existing: str, new: str) -> None:
        """link(2) there, through OpenSSH's hardlink@openssh.com."""
        full_existing, full_new = self._abs(existing), self._abs(new)

        async def go(sftp: Any) -> None:
            try:
                await sftp.link(full_existing, full_new)
            except asyncssh_error() as e:  # sftp-server answers a bare "failure" for EEXIST
                if await sftp.exists(full_new) or await sftp.islink(full_new):
                    raise AlreadyExists(new) from None
                raise e

        try:
            self._call(go, new)
        except NotFound:
            self._check_parent(new)
            raise

    def make_node(self, path: str, mode: int, rdev: int) -> None:
        """A FIFO, device node or socket, by a command on the cluster (SFTP has no mknod)."""
        cluster_nodes.make_node(self.run, self._abs(path), mode, rdev, self.system)

    def set_times(self, path: str, atime_ns: int | None, mtime_ns: int | None) -> None:
        full = self._abs(path)

        async def go(sftp: Any) -> None:
            if atime_ns is None or mtime_ns is None:
                old = await sftp.lstat(full)
            atime = sftp_time(atime_ns) if atime_ns is not None else int(old.atime or 0)
            mtime = sftp_time(mtime_ns) if mtime_ns is not None else int(old.mtime or 0)
            await sftp.utime(full, (atime, mtime))

        self._call(go, path)
