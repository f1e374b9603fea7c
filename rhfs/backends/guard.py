"""Fault isolation for one system: time limits, fail-fast while down, health and traffic counts.

Every backend in the tree is wrapped in a :class:`Guarded`. Each call runs on the
system's own small thread pool and is bounded by ``op_timeout``; a call that
times out, or fails at the connection level, marks the system down. While it is
down, calls fail at once with EIO for ``retry_interval`` seconds, then one call
is let through as a probe. A hung system therefore costs only its own subtree,
and never more than ``op_timeout`` per call.

Errors that are answers (ENOENT, EEXIST, ...) prove the system is up.

A guard shows its backend's :class:`~rhfs.backends.base.Traits` as they are and its
:class:`~rhfs.backends.base.Abilities` each under the guard, so that nothing above
the backends ever needs the unguarded backend.
"""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import logging
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from functools import partial
from typing import Any, TypeVar

from rhfs.backends.base import Abilities, Backend, Entry, Reader, RunCommand
from rhfs.backends.streams import GuardedStream, Stream
from rhfs.errors import RhfsError, TimedOut, Unavailable, http_status, to_errno, translate
from rhfs.stats import Stats

log = logging.getLogger(__name__)
T = TypeVar("T")
UPLOAD_MIN_RATE = 2 << 20  # bytes/s an upload may fall to, beyond op_timeout, before it counts as hung

_CONNECTION_ERRNOS = frozenset(
    {
        errno.ECONNREFUSED,
        errno.ECONNRESET,
        errno.ECONNABORTED,
        errno.EHOSTUNREACH,
        errno.ENETUNREACH,
        errno.ETIMEDOUT,
        errno.EPIPE,
        errno.ENOTCONN,
    }
)


_ANSWERS = (NotImplementedError, ValueError, KeyError, TypeError, AttributeError, ArithmeticError)


def is_outage(exc: BaseException) -> bool:
    """Does this failure say the system is unreachable, rather than answering no?

    Answers (ENOENT, EEXIST, EACCES, an HTTP 4xx, a bad argument) prove the system is
    up, whatever their errno attribute holds: s3fs and gcsfs raise ``FileNotFoundError``
    with ``errno`` None. Connection failures, time-outs and HTTP 5xx are outages, and
    so is any other failure of a client library that carries no answer.
    """
    if isinstance(exc, Unavailable | TimedOut):
        return True
    if isinstance(exc, RhfsError):
        return False
    if isinstance(exc, ConnectionError | TimeoutError | asyncio.TimeoutError):
        return True
    if isinstance(exc, OSError):
        return exc.errno in _CONNECTION_ERRNOS
    if isinstance(
        exc, NotImplementedError | ValueError | KeyError | TypeError | AttributeError | ArithmeticError
    ):
        return False  # a bad argument (a time out of range, say) is never an outage
    status = http_status(exc)
    if status is not None:
        return status >= 500
    return True


class Guarded:
    """A :class:`Backend` that wraps another with time limits and health tracking."""

    def __init__(
        self,
        inner: Backend,
        stats: Stats,
        op_timeout: float = 30.0,
        retry_interval: float = 2.0,
        workers: int = 16,
    ) -> None:
        self.inner = inner
        self.system = inner.system
        self.traits = inner.traits
        self.stats = stats
        self.op_timeout = op_timeout
        self.retry_interval = retry_interval
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"rhfs-{inner.system}")
        self._down_until = 0.0
        self._last_error = ""
        self.abilities = self._guarded(inner.abilities)
        stats.register_system(inner.system, inner.traits.family)

    def _guarded(self, abilities: Abilities) -> Abilities:
        """The same abilities, each system call under this guard. Pure ones (a path's
        check or local name), the ssh endpoint, a cluster's session and the provider adapter
        (whose calls a route makes under :meth:`call_within` with its own time limit) are
        shown as they are."""
        changes: dict[str, Any] = {}
        for name in (
            "copy_within",
            "remote_path",
            "symlink",
            "set_mode",
            "set_owner",
            "set_times",
            "hard_link",
            "make_node",
            "remove_upload_leftovers",
        ):
            fn = getattr(abilities, name)
            if fn is not None:
                changes[name] = partial(self.call, name, fn)
        if abilities.run is not None:
            changes["run"] = self._guarded_run(abilities.run)
        return dataclasses.replace(abilities, **changes)

    def _guarded_run(self, run: RunCommand) -> RunCommand:
        def guarded(
            command: str, *, stdin: bytes | None = None, timeout: float | None = None
        ) -> tuple[int, str, str]:
            limit = self.op_timeout if timeout is None else timeout + 5  # the command's own limit first
            return self.call_within(limit, "run", partial(run, command, stdin=stdin, timeout=timeout))

        return guarded

    def call(self, what: str, fn: Callable[..., T], *args: Any) -> T:
        return self.call_within(self.op_timeout, what, fn, *args)

    def call_within(self, timeout: float, what: str, fn: Callable[..., T], *args: Any) -> T:
        """:meth:`call` with its own time limit, for work that grows with its size (a copy)."""
        now = time.monotonic()
        if now < self._down_until:
            raise Unavailable(f"{self.system} is unreachable ({self._last_error})")
        started = time.monotonic()
        future = self._pool.submit(fn, *args)
        try:
            result = future.result(timeout=timeout)
        except FutureTimeout:
            future.cancel()
            self._mark_down(f"{what} timed out after {timeout:g}s")
            raise TimedOut(f"{self.system}: {what} timed out after {timeout:g}s") from None
        except BaseException as e:
            if is_outage(e):
                self._mark_down(f"{what}: {type(e).__name__}: {e}")
                if isinstance(e, RhfsError) or to_errno(e) in (errno.ETIMEDOUT,):
                    raise
                raise Unavailable(f"{self.system}: {what}: {e}") from e
            self.stats.record_ok(self.system, time.monotonic() - started)
            if isinstance(e, Exception) and not isinstance(e, RhfsError):
                raise translate(e) from e
            raise
        self.stats.record_ok(self.system, time.monotonic() - started)
        self._down_until = 0.0
        return result

    def _mark_down(self, message: str) -> None:
        if self._down_until == 0.0:
            log.warning("%s is unreachable: %s", self.system, message)
        self._last_error = message
        self._down_until = time.monotonic() + self.retry_interval
        self.stats.record_failure(self.system, message)

    # -- the Backend protocol -------------------------------------------------------
    def stat(self, path: str) -> Entry:
        return self.call("stat", self.inner.stat, path)

    def list(self, path: str) -> list[Entry]:
        return self.call("list", self.inner.list, path)

    def open_reader(self, path: str, entry: Entry) -> Reader:
        reader = self.call("open", self.inner.open_reader, path, entry)
        return GuardedReader(self, reader)

    def upload(self, local_path: str, path: str) -> None:
        size = os.path.getsize(local_path)
        limit = self.op_timeout + size / UPLOAD_MIN_RATE  # a big upload is not a hung one
        self.call_within(limit, "upload", self.inner.upload, local_path, path)
        self.stats.add_written(self.system, size)

    def remove(self, path: str) -> None:
        self.call("remove", self.inner.remove, path)

    def mkdir(self, path: str) -> None:
        self.call("mkdir", self.inner.mkdir, path)

    def rmdir(self, path: str) -> None:
        self.call("rmdir", self.inner.rmdir, path)

    def rename(self, src: str, dst: str) -> None:
        self.call("rename", self.inner.rename, src, dst)

    def url(self, path: str) -> str:
        return self.inner.url(path)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


class GuardedReader:
    def __init__(self, guard: Guarded, inner: Reader) -> None:
        self.guard, self.inner = guard, inner

    def read(self, offset: int, size: int) -> bytes:
        data = self.guard.call("read", self.inner.read, offset, size)
        self.guard.stats.add_read(self.guard.system, len(data))
        return data

    def stream(self, offset: int, end: int) -> Stream | None:
        """The inner reader's stream of ``offset:end`` under this guard, or None if it has none."""
        opener = getattr(self.inner, "stream", None)
        if opener is None:
            return None
        inner = self.guard.call("read", opener, offset, end)
        return None if inner is None else GuardedStream(self.guard, inner)

    def close(self) -> None:
        try:
            self.guard.call("close", self.inner.close)
        except Exception as e:  # a reader that cannot close has nothing left to lose
            log.debug("%s: closing a reader failed: %s", self.guard.system, e)
