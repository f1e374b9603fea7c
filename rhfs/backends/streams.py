"""Body streams: one GET read progressively, for the read-ahead of sequential readers.

A :class:`Stream` yields the bytes ``[start, end)`` of the object version that was
opened, in order, from a single request. A sequential reader then pays for one
request however far it reads, where ranged reads pay per range (moto, and some
gateways, read the whole object for every ranged GET).

A reader offers streams with an optional method ``stream(offset, end)`` returning a
:class:`Stream`, or None when its system has no streaming GET; callers then fall
back to ranged ``read`` calls.

:class:`BodyStream` keeps the socket busy: a pump task on the client's event loop
reads the body as fast as it arrives into a buffer, and ``read`` takes from that
buffer. The buffer starts at ``FIRST_BUFFER`` bytes and doubles up to ``BUFFER`` as
the reader takes what it holds, so a stream opened on a wrong guess costs little.
Without a pump the connection would sit idle (and the server would stall on a full
socket) between one ``read`` and the next.

Invariants:
- ``read(n)`` returns exactly ``n`` bytes, fewer only at the end, ``b""`` after it;
  it waits at most ``timeout`` seconds for them (TimeoutError);
- ``close`` may be called at any time and from any thread, never blocks, and drops
  the connection rather than draining the body;
- a guarded stream bounds each ``read`` by the system's op timeout and counts its bytes.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from rhfs.backends.guard import Guarded

log = logging.getLogger(__name__)

FIRST_BUFFER = 2 << 20  # bytes a pump reads ahead of a new reader (a sequential guess may be wrong)
BUFFER = 16 << 20  # ... doubling, as the reader takes them, up to this: the read-ahead of a stream
PUMP_READ = 1 << 20


class Stream(Protocol):
    def read(self, n: int) -> bytes: ...

    def close(self) -> None: ...


class BodyStream:
    """A blocking face over an async HTTP body, pumped by a task on the body's event loop.

    ``run`` runs a coroutine function on that loop and waits for its result (the
    store's ``_run``); it is used once, to start the pump.
    """

    def __init__(self, run: Callable[..., Any], body: Any, *, timeout: float = 30.0) -> None:
        self.timeout = timeout
        self._cond = threading.Condition(threading.Lock())
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._limit = FIRST_BUFFER
        self._taken = 0
        self._done = False
        self._error: BaseException | None = None
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._room: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        run(self._start, body)

    async def _start(self, body: Any) -> None:
        self._loop = asyncio.get_running_loop()
        self._room = asyncio.Event()
        self._room.set()
        self._task = asyncio.ensure_future(self._pump(body))

    async def _pump(self, body: Any) -> None:
        assert self._room is not None
        try:
            while not self._closed:
                await self._room.wait()
                data: bytes = await body.read(PUMP_READ)
                with self._cond:
                    if not data:
                        break
                    self._chunks.append(data)
                    self._buffered += len(data)
                    if self._buffered >= self._limit:
                        self._room.clear()
                    self._cond.notify_all()
        except BaseException as e:  # the reader sees it; cancellation is a close
            with self._cond:
                self._error = e
        finally:
            body.close()
            with self._cond:
                self._done = True
                self._cond.notify_all()

    def read(self, n: int) -> bytes:
        with self._cond:
            if not self._cond.wait_for(lambda: self._buffered >= n or self._done, self.timeout):
                raise TimeoutError(f"no data for {self.timeout:g}s")
            if self._buffered < n and self._error is not None:
                raise self._error
            parts = []
            got = 0
            while got < n and self._chunks:
                chunk = self._chunks.popleft()
                if got + len(chunk) > n:
                    keep = got + len(chunk) - n
                    self._chunks.appendleft(chunk[-keep:])
                    chunk = chunk[:-keep]
                parts.append(chunk)
                got += len(chunk)
            self._buffered -= got
            self._taken += got
            if self._taken >= self._limit and self._limit < BUFFER:
                self._limit *= 2  # the reader keeps up: read further ahead
            wake = self._buffered < self._limit and self._room is not None and not self._room.is_set()
        if wake and self._loop is not None and self._room is not None:
            self._loop.call_soon_threadsafe(self._room.set)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def close(self) -> None:
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._chunks.clear()
            self._buffered = 0
        if self._loop is not None and self._task is not None:
            self._loop.call_soon_threadsafe(self._task.cancel)


class GuardedStream:
    """A :class:`Stream` opened under a system's guard, with its traffic counted.

    Its reads run in the caller's thread, not on the guard's pool: the pump has done the
    network work, a read only takes from its buffer, and waits at most the stream's own
    timeout. A stream that breaks is reopened through the guard, which then sees an outage.
    """

    def __init__(self, guard: Guarded, inner: Stream) -> None:
        self.guard, self.inner = guard, inner

    def read(self, n: int) -> bytes:
        data = self.inner.read(n)
        self.guard.stats.add_read(self.guard.system, len(data))
        return data

    def close(self) -> None:
        try:
            self.inner.close()
        except Exception as e:
            log.debug("%s: closing a stream failed: %s", self.guard.system, e)
