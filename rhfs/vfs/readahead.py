"""Read-ahead for remote files: streams for sequential readers, exact ranges for random ones.

One :class:`ReadAhead` serves the reads of one open handle of a remote file.

How a read is served:
- A read inside the reach of a *run* is served from that run's buffer, which a
  background producer fills ahead of the reader. A handle keeps up to
  ``MAX_RUNS`` runs, so interleaved sequential readers (pyarrow's column chunks,
  the kernel's parallel readahead requests) each keep their own.
- A read of ``SEQUENTIAL_HINT`` bytes or more starts a new run: the kernel sends
  requests that large only when its own readahead has judged the access sequential.
  So does a small read that starts where the previous small read ended. After
  ``RANDOM_AFTER`` exact reads, a large request starts a run only at offset 0 or where
  the previous read ended: a random reader's reads that land next to cached pages also
  come as large requests.
- A small read near the end of a large file fetches the whole tail (``TAIL`` bytes)
  in one request: footers (parquet, zip) are read backwards in small steps.
- Any other read is fetched exactly, with one ranged read.

A run's producer reads one streaming GET of ``[start, end)`` when the reader offers
streams (:mod:`rhfs.backends.streams`: one request however far the reader goes),
and otherwise ranged reads of ``RANGED_PIECE`` bytes, ``RANGED_PARALLEL`` in flight.
It stays within ``window`` bytes of the furthest byte asked for; the window
doubles, from ``MIN_WINDOW`` to ``MAX_WINDOW``, as the reader keeps up.

Memory: every buffered byte of every run is charged to the process-wide
:class:`BufferPool`. Speculative fetches happen only while it has room; a piece a
reader is waiting for is always fetched. Bytes a run's reader has passed are
dropped, but for ``KEEP_BEHIND`` bytes kept for requests the kernel sends out of
order and for the slower readers of a shared run (pyarrow reads a row group's column
chunks side by side): it is at least ``REACH``, so no byte is fetched twice. Nor are the
pieces a reader waits for dropped, however far the run's other readers have gone: a
reader is registered with its run in the step that routes it there, and the run keeps
the pieces from its offset on until it is served. Producers never wait for room or
for the reader: they stop, and the next read starts them again, so the shared thread
pool cannot be exhausted by idle runs. A producer fetches one piece per task and queues
itself again: busy runs take turns on the pool with new ones, rather than holding its
threads for as long as their readers keep up.

No reader waits forever: a wait re-checks its run's progress, and a run that stores no
piece for ``stall_timeout`` seconds while a reader waits on it fails with
:class:`~rhfs.errors.ReadStalled` (EIO), once, with one log line. That is a bug (every
piece is one backend call, which its guard bounds), and it costs a read an error, not a hang.

Locks (the thread model is in :mod:`rhfs.vfs.core`): ``ReadAhead._cond`` guards every
run of its handle and is never held during a backend call; ``BufferPool._lock`` is a leaf
taken under it.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, NoReturn

from rhfs.backends.base import Reader
from rhfs.errors import BadHandle, ReadStalled, RhfsError, ShortRead

log = logging.getLogger(__name__)

MiB = 1 << 20
STREAM_PIECE = MiB  # the kernel's largest request: aligned pieces are returned without a copy
RANGED_PIECE = 4 * MiB
RANGED_PARALLEL = 4
MIN_WINDOW = 8 * MiB
MAX_WINDOW = 64 * MiB
REACH = 12 * MiB  # a read this far past a run's frontier still belongs to it (kernel readahead)
KEEP_BEHIND = REACH  # a reader that far behind the run's furthest reader still finds its bytes
SEQUENTIAL_HINT = 128 << 10
RANDOM_AFTER = 2  # exact reads after which a large request no longer starts a run by itself
TAIL = MiB
MAX_RUNS = 8
POOL_BYTES = 256 * MiB
# A run storing no piece for this many op timeouts is stuck: a backend call is bounded by one,
# and the slowest legitimate piece (a stream's read, reopened once) takes four. A stream's
# reads wait up to their own 30 s whatever the op timeout: never fewer than 30 s count.
STALL_OP_TIMEOUTS = 6
DEFAULT_OP_TIMEOUT = 30.0

_producers = ThreadPoolExecutor(max_workers=32, thread_name_prefix="rhfs-readahead")


def _new_producers_after_fork() -> None:
    """A forked child has none of the pool's threads: it gets a pool of its own."""
    global _producers
    _producers = ThreadPoolExecutor(max_workers=32, thread_name_prefix="rhfs-readahead")


os.register_at_fork(after_in_child=_new_producers_after_fork)


class BufferPool:
    """A byte budget shared by the read-ahead of every open file."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._lock = threading.Lock()

    def try_take(self, n: int, *, force: bool = False) -> bool:
        with self._lock:
            if not force and self.used + n > self.limit:
                return False
            self.used += n
            return True

    def give(self, n: int) -> None:
        with self._lock:
            self.used -= n


POOL = BufferPool(POOL_BYTES)


@dataclass(eq=False)
class _Run:
    """One sequential region being fetched: pieces ``[base, fetch_pos)``, some still in flight."""

    start: int
    end: int
    streamed: bool  # one streaming GET, else ranged reads (may fall back once, keeping its pieces)
    fetch_pos: int = 0  # next byte a producer will claim
    wanted: int = 0  # furthest byte (exclusive) a reader asked for
    served: int = 0  # furthest byte (exclusive) handed to a reader
    base: int = 0  # first byte still held
    window: int = MIN_WINDOW
    pieces: dict[int, bytes] = field(default_factory=dict)
    held: int = 0  # bytes charged to the pool
    producers: int = 0
    reading: bool = False  # a reader thread is pulling the stream (streamed runs have no producers)
    stream: Any = None
    error: BaseException | None = None
    closed: bool = False
    waiting: list[int] = field(default_factory=list)  # offsets of the readers routed here, not yet served
    stored: int = 0  # pieces stored so far: a waiter's measure of progress
    used_at: float = 0.0

    piece: int = 0  # piece size, fixed for the run's life

    def __post_init__(self) -> None:
        self.fetch_pos = self.base = self.wanted = self.served = self.start
        self.piece = STREAM_PIECE if self.streamed else RANGED_PIECE

    def piece_at(self, offset: int) -> int:
        """Start of the piece holding ``offset``: pieces are aligned to the piece size."""
        return max(self.start, offset // self.piece * self.piece)

    def piece_len(self, pos: int) -> int:
        return min((pos // self.piece + 1) * self.piece, self.end) - pos

    def reaches(self, offset: int) -> bool:
        return self.base <= offset < self.end and offset < max(self.fetch_pos, self.wanted) + REACH

    @property
    def finished(self) -> bool:
        """Evicted, closed or failed: nothing more is stored in it."""
        return self.closed or self.error is not None


class ReadAhead:
    """Adaptive read-ahead over a ranged :class:`Reader` (optionally with ``stream``)."""

    def __init__(
        self,
        reader: Reader,
        size: int,
        *,
        pool: BufferPool | None = None,
        op_timeout: float = DEFAULT_OP_TIMEOUT,
    ) -> None:
        self.reader = reader
        self.size = size
        self.pool = pool or POOL
        self.stall_timeout = STALL_OP_TIMEOUTS * max(op_timeout, DEFAULT_OP_TIMEOUT)
        self._cond = threading.Condition(threading.Lock())
        self._runs: list[_Run] = []
        self._last_end = -1  # end of the previous exact read
        self._exact_reads = 0  # reads served by one exact ranged read: a random reader
        self._streams = callable(getattr(reader, "stream", None))
        self._closed = False

    # -- reads ----------------------------------------------------------------------------
    def read(self, offset: int, size: int) -> bytes:
        end = min(offset + size, self.size)
        parts = []
        while offset < end:  # a request may straddle the end of a run
            data = self._read_segment(offset, end)
            parts.append(data)
            offset += len(data)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def _read_segment(self, offset: int, end: int) -> bytes:
        """Bytes from ``offset`` up to ``end`` or the end of the run that serves them."""
        while True:
            run = self._route(offset, end)
            if run is None:
                data = self.reader.read(offset, end - offset)
                if not data:
                    raise ShortRead(f"short read at {offset} of {self.size} bytes")
                return data
            taken = self._take(run, offset, end)
            if taken is not None:
                return taken  # else the run was cut short before offset or dropped: route again

    def _route(self, offset: int, end: int) -> _Run | None:
        """The run that serves ``offset`` (started if the read looks sequential), or None: exact.

        The reader is registered with the run it is given (``waiting``), in the same step
        as it is found there, and :meth:`_take` lets it go: from here on the run keeps its
        bytes, however far its other readers go.
        """
        with self._cond:
            if self._closed:
                raise BadHandle("read of a closed file")
            run = self._find(offset)
            if run is None:
                if self._looks_sequential(offset, end):
                    run = self._start(offset, self.size, streamed=self._streams)
                elif (
                    self.size >= 2 * TAIL and offset >= self.size - TAIL and self._exact_reads < RANDOM_AFTER
                ):
                    run = self._start(self.size - TAIL, self.size, streamed=False, window=TAIL)
            if run is None:
                self._last_end = end
                self._exact_reads += 1
                return None
            run.wanted = max(run.wanted, min(end, run.end))
            run.used_at = time.monotonic()
            self._feed(run)
            run.waiting.append(offset)
            return run

    def _looks_sequential(self, offset: int, end: int) -> bool:
        """Start a run here? Yes where the last exact read ended, or for a large request (the
        kernel's readahead), unless this handle has been reading at random: the kernel then
        also sends large requests now and then, when a read lands just after cached pages."""
        if offset == self._last_end:
            return True
        return end - offset >= SEQUENTIAL_HINT and (offset == 0 or self._exact_reads < RANDOM_AFTER)

    def _find(self, offset: int) -> _Run | None:
        for run in self._runs:
            if run.reaches(offset):
                return run
        return None

    def _start(self, start: int, end: int, *, streamed: bool, window: int = MIN_WINDOW) -> _Run:
        for other in self._runs:  # an earlier run stops where this one begins
            if other.start < start < other.end and other.fetch_pos <= start:
                other.end = start
                self._cond.notify_all()  # its readers past the new end go elsewhere
        nxt = min((r.start for r in self._runs if r.start > start), default=end)
        run = _Run(start=start, end=min(end, nxt), streamed=streamed, window=window)
        self._runs.append(run)
        log.debug("run %d-%d of %d (%s)", start, run.end, self.size, "stream" if streamed else "ranges")
        if len(self._runs) > MAX_RUNS:
            idle = [r for r in self._runs if not r.waiting and r is not run]
            if idle:
                self._drop(min(idle, key=lambda r: r.used_at))
        return run

    def _take(self, run: _Run, offset: int, end: int) -> bytes | None:
        """The run's bytes of ``offset:end``, cut at the run's end; None if it ends before offset.

        The caller was registered with ``run`` by :meth:`_route`; this lets it go.
        """
        with self._cond:
            try:
                seen, since = run.stored, time.monotonic()
                while True:
                    stop = min(end, run.end)
                    if stop <= offset:
                        return None
                    if self._ready(run, offset, stop):
                        break
                    if run.error is not None:
                        raise run.error
                    if run.closed:  # evicted before we waited: route again (EBADF if the file is)
                        return None
                    if run.piece_at(offset) < run.base:  # never so while we are registered
                        return None  # but were it: these bytes will not come again, route again
                    if run.streamed and not run.reading:
                        pulled = run.stored
                        self._pull(run, stop)
                        if run.stored != pulled or run.finished or not run.streamed:
                            continue
                        # nothing to pull, yet not ready: wait (bounded) rather than spin
                    self._feed(run)
                    now = time.monotonic()
                    if run.stored != seen:
                        seen, since = run.stored, now
                    left = since + self.stall_timeout - now
                    if left <= 0:
                        self._stalled(run, offset, stop, now - since)
                    self._cond.wait(timeout=left)
            finally:
                run.waiting.remove(offset)
            data = self._slice(run, offset, stop)
            run.served = max(run.served, stop)
            self._trim(run)
            self._grow(run)
            self._feed(run)
            return data

    def _ready(self, run: _Run, offset: int, end: int) -> bool:
        pos = run.piece_at(offset)
        while pos < end:
            piece = run.pieces.get(pos)
            if piece is None:
                return False
            pos += len(piece)
        return True

    def _slice(self, run: _Run, offset: int, end: int) -> bytes:
        pos = run.piece_at(offset)
        piece = run.pieces[pos]
        if pos == offset and pos + len(piece) == end:
            return piece  # the common case of an aligned kernel request: no copy
        parts = []
        while pos < end:
            piece = run.pieces[pos]
            view = memoryview(piece)[max(offset - pos, 0) : min(end - pos, len(piece))]
            parts.append(view)
            pos += len(piece)
        return b"".join(parts)

    def _trim(self, run: _Run) -> None:
        """Drop the pieces the reader has passed, but for KEEP_BEHIND and those a reader waits for."""
        keep_from = run.served - KEEP_BEHIND
        if run.waiting:
            keep_from = min(keep_from, min(run.waiting))
        while run.base < keep_from:
            piece = run.pieces.get(run.base)
            if piece is None or run.base + len(piece) > keep_from:
                break
            del run.pieces[run.base]
            run.held -= len(piece)
            self.pool.give(len(piece))
            run.base += len(piece)

    def _grow(self, run: _Run) -> None:
        if run.served - run.start >= run.window and run.window < MAX_WINDOW:
            run.window *= 2

    # -- fetching -------------------------------------------------------------------------
    def _pull(self, run: _Run, stop: int) -> None:
        """Read the run's stream up to ``stop`` in this reader's thread (lock held on entry and exit).

        A stream needs no producer: its pump reads ahead on the event loop, so taking the
        next pieces from it costs a copy, not a round trip. One reader pulls at a time; the
        others wait for the pieces it stores.
        """
        run.reading = True
        try:
            while run.streamed and run.fetch_pos < min(stop, run.end) and not run.finished:
                pos = run.fetch_pos
                n = run.piece_len(pos)
                self.pool.try_take(n, force=True)  # a reader is waiting for it
                run.fetch_pos += n
                self._cond.release()
                try:
                    data: bytes | None = self._fetch(run, pos, n)
                    failure: BaseException | None = None
                except BaseException as e:
                    data, failure = None, e
                finally:
                    self._cond.acquire()
                if data is None or run.finished:
                    self.pool.give(n)
                    if failure is not None and not run.finished:
                        self._fail(run, failure)
                    return
                self._store(run, pos, data)
            if run.fetch_pos >= run.end:
                self._close_stream(run)  # read to its end (or cut short): free the connection
        finally:
            run.reading = False
            self._cond.notify_all()

    def _store(self, run: _Run, pos: int, data: bytes) -> None:
        run.pieces[pos] = data
        run.held += len(data)
        run.stored += 1
        self._cond.notify_all()

    def _fail(self, run: _Run, error: BaseException) -> None:
        """The run cannot go on: its waiters get the error, the next read starts afresh (lock held).

        Its pieces go back to the pool now; what its producers still fetch, when they finish.
        """
        run.error = error
        if run in self._runs:
            self._runs.remove(run)
        self._release(run)
        self._close_stream(run)
        self._cond.notify_all()

    def _stalled(self, run: _Run, offset: int, stop: int, waited: float) -> NoReturn:
        """A reader waited ``stall_timeout`` and its run stored nothing: fail the run (lock held)."""
        log.error(
            "read-ahead stalled: a read of %d-%d of %d bytes waited %.0fs; its run %d-%d holds %d-%d, "
            "claimed to %d, %d producers, %s",
            offset,
            stop,
            self.size,
            waited,
            run.start,
            run.end,
            run.base,
            run.served,
            run.fetch_pos,
            run.producers,
            "a reader pulling its stream" if run.reading else "no reader pulling",
        )
        error = ReadStalled(f"a read at {offset} got no data from read-ahead for {waited:.0f}s")
        self._fail(run, error)
        raise error

    def _feed(self, run: _Run) -> None:
        """Start producers while a ranged run has room to fetch (called with the lock held)."""
        if run.streamed:
            return
        while run.producers < RANGED_PARALLEL and self._claimable(run):
            self._submit(run)

    def _submit(self, run: _Run) -> None:
        """Queue one producer task for ``run`` (lock held); its count is kept right if it cannot be."""
        run.producers += 1
        try:
            _producers.submit(self._produce, run)
        except BaseException:  # the pool is shut down (interpreter exit): no task will run
            run.producers -= 1
            raise

    def _claimable(self, run: _Run) -> bool:
        return (
            not run.closed
            and run.error is None
            and run.fetch_pos < run.end
            and run.fetch_pos < run.wanted + run.window
        )

    def _claim(self, run: _Run) -> tuple[int, int] | None:
        """The next piece to fetch, charged to the pool; None when the producer should stop."""
        with self._cond:
            if not self._claimable(run):
                run.producers -= 1
                if run.fetch_pos >= run.end and run.producers == 0:
                    self._close_stream(run)  # fetched to its end: free the connection
                return None
            pos = run.fetch_pos
            n = run.piece_len(pos)
            if not self.pool.try_take(n, force=pos < run.wanted):
                run.producers -= 1  # speculative and no room: the next read restarts us
                return None
            run.fetch_pos += n
            return pos, n

    def _produce(self, run: _Run) -> None:
        """One producer task: fetch one piece, then queue the next behind the other runs' tasks."""
        claimed = self._claim(run)
        if claimed is None:
            return
        pos, n = claimed
        try:
            data = self._fetch(run, pos, n)
        except BaseException as e:
            self.pool.give(n)
            with self._cond:
                run.producers -= 1
                if not run.finished:
                    self._fail(run, e)
                self._cond.notify_all()
            return
        with self._cond:
            if run.finished:
                self.pool.give(n)
                run.producers -= 1
                self._cond.notify_all()
                return
            self._store(run, pos, data)
            run.producers -= 1  # this task's turn ends; the next one queues behind the others
            if self._claimable(run):
                try:
                    self._submit(run)
                except BaseException as e:
                    self._fail(run, e)

    def _fetch(self, run: _Run, pos: int, n: int) -> bytes:
        data = self._stream_read(run, pos, n) if run.streamed else self.reader.read(pos, n)
        if len(data) != n:
            raise ShortRead(f"short read: {len(data)} of {n} bytes at {pos}")
        return data

    def _stream_read(self, run: _Run, pos: int, n: int) -> bytes:
        """Read the next piece of the run's stream; reopen it once if it broke or timed out."""
        for attempt in (1, 2):
            if run.stream is None:
                if run.closed:
                    raise BadHandle("read of a closed file")
                stream = self.reader.stream(pos, run.end)  # type: ignore[attr-defined]
                if stream is None:  # this system has no streams: ranged reads from now on
                    with self._cond:
                        self._streams = run.streamed = False
                    return self.reader.read(pos, n)
                with self._cond:
                    if run.closed:
                        stream.close()
                        raise BadHandle("read of a closed file")
                    run.stream = stream
            try:
                data: bytes = run.stream.read(n)
                return data
            except RhfsError:
                raise
            except Exception as e:
                if attempt == 2:
                    raise
                log.debug("stream broke at %d (%s); reopening", pos, e)
                with self._cond:
                    self._close_stream(run)
        raise AssertionError("unreachable")

    # -- closing --------------------------------------------------------------------------
    def _close_stream(self, run: _Run) -> None:
        stream, run.stream = run.stream, None
        if stream is not None:
            stream.close()  # never blocks (see rhfs.backends.streams)

    def _release(self, run: _Run) -> None:
        """Give the run's pieces back to the pool (lock held)."""
        self.pool.give(run.held)
        run.held = 0
        run.pieces.clear()

    def _drop(self, run: _Run) -> None:
        run.closed = True
        if run in self._runs:
            self._runs.remove(run)
        self._release(run)
        self._close_stream(run)
        self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            for run in list(self._runs):
                self._drop(run)
        self.reader.close()
