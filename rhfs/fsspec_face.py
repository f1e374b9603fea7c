"""The ``rhfs://`` fsspec face: the same tree as the mount, in-process, with no FUSE.

``rhfs://tables/sample_table`` is the path ``<mount>/tables/sample_table``: every
call here is one call into the same :class:`rhfs.vfs.core.Vfs` that the FUSE
adapter serves, that of the core ``rhfs.wiring.build_core`` builds from the config
found the usual way (or ``config=`` in the storage options). One core is shared per
config file within a process (:func:`shared_core`; the Python API uses it too); a forked
child builds its own on first use, and never uses its parent's connections. A
write makes missing parent directories, as writes to an object store do
(``auto_mkdir=False`` gives the mount's ENOENT instead).

Errors from the core are turned into ``OSError``s with their errno in one place
(:func:`_errors`): ENOENT is a ``FileNotFoundError``, a refused table part is
EINVAL at ``close()``, as through the mount.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import os
import queue
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from fsspec.spec import AbstractBufferedFile, AbstractFileSystem

from rhfs.errors import BadHandle, to_errno
from rhfs.vfs.core import Vfs

if TYPE_CHECKING:
    from rhfs.wiring import Core

_CORE_BY_CONFIG: dict[str | None, Core] = {}
_unclosed: queue.SimpleQueue[RhfsFile] = queue.SimpleQueue()  # put() is safe inside __del__
_closer_started = threading.Event()
_CORE_LOCK = threading.Lock()
_LEFT_BY_PARENT: list[Core] = []  # a forked child keeps its parent's cores, never using them


def _forget_after_fork() -> None:
    """In a forked child: build new cores on first use, as the parent's threads, event loops
    and connections did not come along (the parent's are kept, so nothing of them is closed)."""
    global _CORE_LOCK, _unclosed, _closer_started
    _LEFT_BY_PARENT.extend(_CORE_BY_CONFIG.values())
    _CORE_BY_CONFIG.clear()
    _CORE_LOCK, _unclosed, _closer_started = threading.Lock(), queue.SimpleQueue(), threading.Event()


os.register_at_fork(after_in_child=_forget_after_fork)


def shared_core(config: str | None = None) -> Core:
    """The process's core for a config file (``None``: the usual search order)."""
    from rhfs import config as config_mod
    from rhfs.wiring import build_core

    source = config_mod.find_config_file(config)
    with _CORE_LOCK:
        core = _CORE_BY_CONFIG.get(source)
        if core is None:
            loaded = config_mod.load_file(source) if source else config_mod.embedded_default()
            core = _CORE_BY_CONFIG[source] = build_core(loaded)
        return core


@contextlib.contextmanager
def _errors(path: str) -> Iterator[None]:
    try:
        yield
    except OSError as e:
        if e.errno is not None and e.filename is not None:
            raise
        code = to_errno(e)
        raise OSError(code, f"{os.strerror(code)}: {e}", path) from e
    except Exception as e:
        code = to_errno(e)
        raise OSError(code, f"{os.strerror(code)}: {e}", path) from e


class RhfsFileSystem(AbstractFileSystem):
    protocol = ("rhfs",)
    root_marker = ""

    def __init__(
        self, config: str | None = None, *, vfs: Vfs | None = None, auto_mkdir: bool = True, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.auto_mkdir = auto_mkdir  # a write makes its missing parent directories, as on a store
        self.config_file = config
        self._vfs = vfs if vfs is not None else shared_core(config).vfs
        self._pid = os.getpid()

    @property
    def vfs(self) -> Vfs:
        """The core this filesystem calls: in a process forked after it was made, that
        process's own core of the same config, never the parent's."""
        if self._pid != os.getpid():
            self._vfs, self._pid = shared_core(self.config_file).vfs, os.getpid()
        return self._vfs

    @classmethod
    def _strip_protocol(cls, path: Any) -> Any:
        if isinstance(path, list):
            return [cls._strip_protocol(p) for p in path]
        path = str(path)
        if path.startswith("rhfs://"):
            path = path[len("rhfs://") :]
        return path.strip("/")

    @staticmethod
    def _vpath(path: str) -> str:
        return "/" + path

    def _info_of(self, path: str, attr: Any) -> dict[str, Any]:
        return {
            "name": path,
            "size": attr.size,
            "type": "directory" if attr.is_dir else "file",
            "mtime": attr.mtime,
            "mode": attr.mode,
        }

    # -- metadata -------------------------------------------------------------------
    def info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        path = self._strip_protocol(path)
        with _errors(path):
            return self._info_of(path, self.vfs.getattr(self._vpath(path)))

    def ls(self, path: str, detail: bool = True, **kwargs: Any) -> list[Any]:
        path = self._strip_protocol(path)
        with _errors(path):
            try:
                listing = self.vfs.readdir(self._vpath(path))
            except Exception as e:
                if to_errno(e) != errno.ENOTDIR:
                    raise
                info = self.info(path)
                return [info] if detail else [path]
        prefix = path + "/" if path else ""
        infos = [self._info_of(prefix + name, attr) for name, attr in listing if name not in (".", "..")]
        return infos if detail else [i["name"] for i in infos]

    def modified(self, path: str) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.info(path)["mtime"], tz=dt.UTC)

    # -- namespace ------------------------------------------------------------------
    def mkdir(self, path: str, create_parents: bool = True, **kwargs: Any) -> None:
        path = self._strip_protocol(path)
        if create_parents:
            self.makedirs(path, exist_ok=False)
            return
        with _errors(path):
            self.vfs.mkdir(self._vpath(path))

    def makedirs(self, path: str, exist_ok: bool = False) -> None:
        path = self._strip_protocol(path)
        parts = path.split("/")
        for i in range(1, len(parts) + 1):
            sub = "/".join(parts[:i])
            if self.exists(sub):
                if i == len(parts) and not exist_ok:
                    raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), path)
                continue
            with _errors(sub):
                self.vfs.mkdir(self._vpath(sub))

    def rmdir(self, path: str) -> None:
        path = self._strip_protocol(path)
        with _errors(path):
            self.vfs.rmdir(self._vpath(path))

    def rm_file(self, path: str) -> None:
        path = self._strip_protocol(path)
        with _errors(path):
            self.vfs.unlink(self._vpath(path))

    _rm = rm_file

    def rm(self, path: Any, recursive: bool = False, maxdepth: int | None = None) -> None:
        for p in reversed(self.expand_path(path, recursive=recursive, maxdepth=maxdepth)):
            if self.isdir(p):
                self.rmdir(p)
            else:
                self.rm_file(p)

    def mv(
        self, path1: str, path2: str, recursive: bool = False, maxdepth: int | None = None, **kw: Any
    ) -> None:
        src, dst = self._strip_protocol(path1), self._strip_protocol(path2)
        with _errors(src):
            self.vfs.rename(self._vpath(src), self._vpath(dst))

    def cp_file(self, path1: str, path2: str, **kwargs: Any) -> None:
        with self.open(path1, "rb") as src, self.open(path2, "wb") as dst:
            while chunk := src.read(8 << 20):
                dst.write(chunk)

    # -- files ----------------------------------------------------------------------
    def _open(
        self,
        path: str,
        mode: str = "rb",
        block_size: int | None = None,
        autocommit: bool = True,
        cache_options: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> RhfsFile:
        return RhfsFile(self, self._strip_protocol(path), mode, block_size=block_size or (1 << 20), **kwargs)

    def cat_file(self, path: str, start: int | None = None, end: int | None = None, **kwargs: Any) -> bytes:
        path = self._strip_protocol(path)
        with _errors(path):
            size = self.vfs.getattr(self._vpath(path)).size
            start = 0 if start is None else (start if start >= 0 else max(size + start, 0))
            end = size if end is None else (end if end >= 0 else max(size + end, 0))
            opened = self.vfs.open(self._vpath(path), os.O_RDONLY)
            try:
                return self.vfs.read(opened.fh, max(end - start, 0), start) if end > start else b""
            finally:
                self.vfs.release(opened.fh)


class RhfsFile(AbstractBufferedFile):
    """A file of the tree: ranged reads through one Vfs handle, or a write uploaded at close.

    The handle belongs to the core of the process that opened the file: in a process forked
    after that, the file is unusable (EBADF) and closing it releases nothing."""

    fs: RhfsFileSystem

    def __init__(self, fs: RhfsFileSystem, path: str, mode: str = "rb", **kwargs: Any) -> None:
        _start_closer()
        self.fh: int | None = None
        self.vfs, self.opened_by = fs.vfs, os.getpid()
        if mode == "rb":
            with _errors(path):
                self.fh = self.vfs.open(fs._vpath(path), os.O_RDONLY).fh
        try:
            super().__init__(fs, path, mode, **kwargs)
        except BaseException:
            self._release()
            raise

    def _fetch_range(self, start: int, end: int) -> bytes:
        assert self.fh is not None
        with _errors(self.path):
            self._check_process()
            return self.vfs.read(self.fh, end - start, start)

    def _check_process(self) -> None:
        if self.opened_by != os.getpid():
            raise BadHandle("a file opened before a fork is not usable after it: open it again")

    def _initiate_upload(self) -> None:
        parent = self.path.rpartition("/")[0]
        if self.fs.auto_mkdir and parent and not self.fs.exists(parent):
            self.fs.makedirs(parent, exist_ok=True)
        with _errors(self.path):
            flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
            self._check_process()
            self.fh = self.vfs.create(self.fs._vpath(self.path), 0o644, flags).fh

    def _upload_chunk(self, final: bool = False) -> bool:
        assert self.fh is not None
        data = self.buffer.getvalue()
        with _errors(self.path):
            self._check_process()
            if data:
                self.vfs.write(self.fh, data, self.offset)
            if final:
                try:
                    self.vfs.flush(self.fh)
                finally:
                    self._release()
        return True

    def _release(self) -> None:
        fh, self.fh = self.fh, None
        if fh is not None and self.opened_by == os.getpid():
            with contextlib.suppress(Exception):  # a failed upload was already reported by flush
                self.vfs.release(fh)

    def close(self) -> None:
        try:
            super().close()
        finally:
            if self.mode == "rb":
                self._release()

    def __del__(self) -> None:
        # The garbage collector may run this on any thread and inside any lock (the event
        # loop thread of an async backend, an executor's submit): a file left open is
        # handed to a closing thread instead, with a put that takes no lock.
        if not self.closed and getattr(self, "opened_by", None) == os.getpid():
            _unclosed.put(self)


def _close_collected() -> None:
    while True:
        f = _unclosed.get()
        with contextlib.suppress(Exception):
            f.close()
        del f


def _start_closer() -> None:
    if not _closer_started.is_set():
        with _CORE_LOCK:
            if not _closer_started.is_set():
                threading.Thread(target=_close_collected, name="rhfs-fsspec-close", daemon=True).start()
                _closer_started.set()
