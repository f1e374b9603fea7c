"""Read-ahead (rhfs.vfs.readahead) and body streams (rhfs.backends.streams), without FUSE.

A scripted reader serves bytes from memory and records every request, so each test
checks both the bytes returned and the requests made: one stream for a sequential
reader, exact ranges for random reads, one request for a footer, nothing left in
the buffer pool after close, errors passed on and recovered from.
"""

from __future__ import annotations

import asyncio
import errno
import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from rhfs.backends.streams import BodyStream
from rhfs.errors import ReadStalled, RhfsError
from rhfs.vfs import readahead
from rhfs.vfs.readahead import BufferPool, ReadAhead

MiB = 1 << 20


class Stream:
    def __init__(self, owner: ScriptedReader, offset: int, end: int) -> None:
        self.owner, self.pos, self.end = owner, offset, end
        self.owner_start = offset
        self.closed = False

    def read(self, n: int) -> bytes:
        with self.owner.lock:
            self.owner.stream_reads += 1
            if self.owner.break_stream_at is not None and self.pos >= self.owner.break_stream_at:
                self.owner.break_stream_at = None
                raise ConnectionResetError("connection reset by peer")
        data = self.owner.data[self.pos : min(self.pos + n, self.end)]
        self.pos += len(data)
        return data

    def close(self) -> None:
        self.closed = True


class ScriptedReader:
    """An in-memory Reader that records its requests; ``streams=False`` hides ``stream``."""

    def __init__(self, data: bytes, *, streams: bool | None = True) -> None:
        self.data = data
        self.lock = threading.Lock()
        self.ranges: list[tuple[int, int]] = []
        self.opened: list[Stream] = []
        self.stream_reads = 0
        self.fail_reads = 0
        self.break_stream_at: int | None = None
        self.closed = False
        self.streams = streams
        if streams is False:
            self.stream = None  # type: ignore[assignment]

    def read(self, offset: int, size: int) -> bytes:
        with self.lock:
            self.ranges.append((offset, size))
            if self.fail_reads:
                self.fail_reads -= 1
                raise RhfsError("the server said no", errno_=errno.EIO)
        return self.data[offset : offset + size]

    def stream(self, offset: int, end: int) -> Stream | None:
        if self.streams is None:
            return None  # the reader has the method, its system has no streams (a guarded reader)
        with self.lock:
            stream = Stream(self, offset, end)
            self.opened.append(stream)
            return stream

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def pool(monkeypatch: pytest.MonkeyPatch) -> BufferPool:
    pool = BufferPool(64 * MiB)
    monkeypatch.setattr(readahead, "POOL", pool)
    return pool


def drained(pool: BufferPool) -> bool:
    """Producers still fetching when the file was closed give their pieces back as they finish."""
    deadline = time.monotonic() + 10
    while pool.used and time.monotonic() < deadline:
        time.sleep(0.01)
    return pool.used == 0


def payload(size: int) -> bytes:
    return random.Random(size).randbytes(size)


def read_sequentially(ra: ReadAhead, size: int, step: int = MiB) -> bytes:
    return b"".join(ra.read(off, step) for off in range(0, size, step))


def test_a_sequential_reader_is_served_by_one_stream(pool: BufferPool) -> None:
    data = payload(40 * MiB + 12345)
    reader = ScriptedReader(data)
    ra = ReadAhead(reader, len(data))
    assert read_sequentially(ra, len(data)) == data
    assert len(reader.opened) == 1
    assert reader.ranges == []
    ra.close()
    assert drained(pool)
    assert reader.closed and all(s.closed for s in reader.opened)


def test_without_streams_sequential_reads_use_large_ranges(pool: BufferPool) -> None:
    data = payload(20 * MiB + 7)
    reader = ScriptedReader(data, streams=False)
    ra = ReadAhead(reader, len(data))
    assert read_sequentially(ra, len(data), step=256 << 10) == data
    assert all(size <= readahead.RANGED_PIECE for _, size in reader.ranges)
    assert len(reader.ranges) <= len(data) // readahead.RANGED_PIECE + 2
    covered = sorted(reader.ranges)
    assert covered[0][0] == 0 and sum(size for _, size in covered) == len(data)
    ra.close()
    assert drained(pool)


def test_a_reader_whose_system_has_no_streams_falls_back_to_ranges(pool: BufferPool) -> None:
    data = payload(12 * MiB + 5)
    reader = ScriptedReader(data, streams=None)
    ra = ReadAhead(reader, len(data))
    assert read_sequentially(ra, len(data), step=128 << 10) == data
    assert sum(size for _, size in reader.ranges) == len(data)
    ra.close()
    assert drained(pool)


def test_a_request_straddling_two_runs(pool: BufferPool) -> None:
    data = payload(20 * MiB)
    reader = ScriptedReader(data)
    ra = ReadAhead(reader, len(data))
    assert ra.read(8 * MiB, MiB) == data[8 * MiB : 9 * MiB]  # a run from 8 MiB
    assert ra.read(0, MiB) == data[:MiB]  # a run from 0, cut at 8 MiB
    for off in range(MiB, 7 * MiB, MiB):
        assert ra.read(off, MiB) == data[off : off + MiB]
    assert ra.read(7 * MiB + 4096, MiB) == data[7 * MiB + 4096 : 8 * MiB + 4096]
    assert ra.read(9 * MiB, MiB) == data[9 * MiB : 10 * MiB]
    ra.close()
    assert drained(pool)


def test_small_random_reads_fetch_exactly_what_is_asked(pool: BufferPool) -> None:
    data = payload(64 * MiB)
    reader = ScriptedReader(data)
    ra = ReadAhead(reader, len(data))
    rng = random.Random(1)
    offsets = [rng.randrange(0, 60 * MiB) & ~4095 for _ in range(50)]
    for off in offsets:
        assert ra.read(off, 65536) == data[off : off + 65536]
    assert reader.ranges == [(off, 65536) for off in offsets]
    assert reader.opened == []
    ra.close()


def test_a_random_reader_s_large_requests_stay_exact(pool: BufferPool) -> None:
    data = payload(64 * MiB)
    reader = ScriptedReader(data)
    ra = ReadAhead(reader, len(data))
    for off in (5 * MiB, 40 * MiB, 17 * MiB):
        assert ra.read(off, 65536) == data[off : off + 65536]
    # the kernel's readahead when a read lands just after cached pages: large, but not a stream
    assert ra.read(30 * MiB, MiB) == data[30 * MiB : 31 * MiB]
    assert reader.opened == [] and reader.ranges[-1] == (30 * MiB, MiB)
    # ... until the reader shows it goes on from there
    for off in range(31 * MiB, 36 * MiB, MiB):
        assert ra.read(off, MiB) == data[off : off + MiB]
    assert len(reader.opened) == 1
    ra.close()


def test_a_footer_is_fetched_in_one_request(pool: BufferPool) -> None:
    data = payload(30 * MiB)
    reader = ScriptedReader(data)
    ra = ReadAhead(reader, len(data))
    end = len(data)
    assert ra.read(end - 8, 8) == data[-8:]  # a parquet reader: magic and footer length
    assert ra.read(end - 40000, 39992) == data[end - 40000 : end - 8]  # then the footer
    assert reader.ranges == [(end - readahead.TAIL, readahead.TAIL)]
    ra.close()


def test_adjacent_small_reads_become_a_stream(pool: BufferPool) -> None:
    data = payload(8 * MiB)
    reader = ScriptedReader(data)
    ra = ReadAhead(reader, len(data))
    out = [ra.read(off, 4096) for off in range(MiB, 3 * MiB, 4096)]
    assert b"".join(out) == data[MiB : 3 * MiB]
    assert reader.ranges == [(MiB, 4096)]  # the first is exact, the next starts a stream
    assert len(reader.opened) == 1
    ra.close()


def test_interleaved_sequential_readers_keep_their_own_runs(pool: BufferPool) -> None:
    data = payload(48 * MiB)
    reader = ScriptedReader(data)
    ra = ReadAhead(reader, len(data))
    starts = [0, 16 * MiB, 32 * MiB]
    for i in range(0, 16 * MiB, MiB):
        for start in starts:
            assert ra.read(start + i, MiB) == data[start + i : start + i + MiB]
    assert len(reader.opened) == 3
    assert reader.ranges == []
    ra.close()
    assert drained(pool)


def test_parallel_out_of_order_requests_get_the_right_bytes(pool: BufferPool) -> None:
    data = payload(32 * MiB + 999)
    reader = ScriptedReader(data)
    ra = ReadAhead(reader, len(data))
    offsets = list(range(0, len(data), MiB))
    # what the kernel's readahead does: several requests in flight, finishing in any order
    batches = [offsets[i : i + 6] for i in range(0, len(offsets), 6)]
    with ThreadPoolExecutor(6) as pool_:
        for batch in batches:
            random.Random(len(batch)).shuffle(batch)
            for off, got in zip(batch, pool_.map(lambda o: ra.read(o, MiB), batch), strict=True):
                assert got == data[off : off + MiB]
    ra.close()
    assert drained(pool)


def test_the_pool_bounds_what_is_fetched_ahead(monkeypatch: pytest.MonkeyPatch) -> None:
    small = BufferPool(4 * MiB)
    monkeypatch.setattr(readahead, "POOL", small)
    data = payload(64 * MiB)
    reader = ScriptedReader(data)
    ra = ReadAhead(reader, len(data))
    seen = 0
    for off in range(0, len(data), MiB):
        assert ra.read(off, MiB) == data[off : off + MiB]
        seen = max(seen, small.used)
    assert seen <= 4 * MiB + readahead.KEEP_BEHIND + 2 * MiB  # plus what readers were waiting for
    ra.close()
    assert drained(small)


def test_a_failed_fetch_fails_the_read_and_the_next_read_starts_afresh(pool: BufferPool) -> None:
    data = payload(16 * MiB)
    reader = ScriptedReader(data, streams=False)
    reader.fail_reads = 1
    ra = ReadAhead(reader, len(data))
    with pytest.raises(RhfsError) as caught:
        ra.read(0, MiB)
    assert caught.value.errno == errno.EIO
    assert read_sequentially(ra, len(data)) == data
    ra.close()
    assert drained(pool)


def test_a_broken_stream_is_reopened_where_it_broke(pool: BufferPool) -> None:
    data = payload(24 * MiB)
    reader = ScriptedReader(data)
    reader.break_stream_at = 5 * MiB
    ra = ReadAhead(reader, len(data))
    assert read_sequentially(ra, len(data)) == data
    assert [s.pos for s in reader.opened][-1] == len(data)
    assert len(reader.opened) == 2
    ra.close()


def test_reads_past_the_end_and_of_a_closed_file(pool: BufferPool) -> None:
    data = payload(3 * MiB)
    ra = ReadAhead(ScriptedReader(data), len(data))
    assert ra.read(len(data), MiB) == b""
    assert ra.read(len(data) - 10, MiB) == data[-10:]
    ra.close()
    with pytest.raises(RhfsError) as caught:
        ra.read(0, 10)
    assert caught.value.errno == errno.EBADF


# -- no reader waits forever ------------------------------------------------------------------


class GatedReader:
    """Ranged reads only (no streams) of ``data``; a read at an offset in ``gates`` first waits
    for its event, and one in ``fail_at`` then raises. ``returned`` is set as each read returns."""

    def __init__(self, data: bytes, *, delay: float = 0.0) -> None:
        self.data, self.delay = data, delay
        self.lock = threading.Lock()
        self.ranges: list[tuple[int, int]] = []
        self.gates: dict[int, threading.Event] = {}
        self.fail_at: set[int] = set()
        self.returned: dict[int, threading.Event] = {}

    def read(self, offset: int, size: int) -> bytes:
        with self.lock:
            self.ranges.append((offset, size))
            returned = self.returned.setdefault(offset, threading.Event())
        gate = self.gates.get(offset)
        if gate is not None:
            gate.wait(30)
        if self.delay:
            time.sleep(self.delay)
        if offset in self.fail_at:
            raise RhfsError("the server said no", errno_=errno.EIO)
        returned.set()
        return self.data[offset : offset + size] if self.data else bytes(size)

    def close(self) -> None:
        pass


def within(seconds: float, fn, *args):  # type: ignore[no-untyped-def]
    """``fn(*args)`` in a thread: its result or its exception, or a failure if it is still
    waiting after ``seconds`` (the thread is a daemon: a hang fails the test, not the run)."""
    box: dict[str, object] = {}

    def call() -> None:
        try:
            box["value"] = fn(*args)
        except BaseException as e:
            box["error"] = e

    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"{getattr(fn, '__name__', fn)}{args} still waiting after {seconds}s"
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["value"]


def eventually(check, seconds: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "condition never came true"
        time.sleep(0.005)


def assert_served_once(
    thread: threading.Thread,
    got: list[bytes],
    expected: bytes,
    reader: GatedReader,
    ra: ReadAhead,
    pool: BufferPool,
) -> None:
    """The read in ``thread`` returned ``expected``, no byte was fetched twice, and closing
    the file gives every piece back."""
    thread.join(5)
    assert not thread.is_alive(), f"{thread.name}: the read never returned"
    assert got == [expected]
    offsets = [off for off, _ in reader.ranges]
    assert len(offsets) == len(set(offsets)), sorted(offsets)
    ra.close()
    assert drained(pool)


def test_a_waiter_s_first_piece_is_kept_while_the_run_s_other_readers_go_far_ahead(
    pool: BufferPool,
) -> None:
    """A read straddling two pieces waits for the second, slow to come; the run's other
    readers meanwhile go more than KEEP_BEHIND past the first. The first piece must stay:
    once dropped it is never fetched again, and the waiter would wait for it forever."""
    piece = readahead.RANGED_PIECE
    data = payload(64 * MiB)
    reader = GatedReader(data)
    reader.gates[piece] = slow = threading.Event()
    ra = ReadAhead(reader, len(data))
    assert ra.read(0, MiB) == data[:MiB]  # a run: pieces 0, 1 (held back) and 2 on their way
    waiter = threading.Thread(target=lambda: got.append(ra.read(piece - 4096, 8192)), daemon=True)
    got: list[bytes] = []
    waiter.start()
    eventually(lambda: len(ra._runs[0].waiting) == 1)
    for off in range(2 * piece, 17 * MiB, MiB):  # the kernel's readahead, far ahead
        assert within(5, ra.read, off, MiB) == data[off : off + MiB]
    slow.set()
    assert_served_once(waiter, got, data[piece - 4096 : piece + 4096], reader, ra, pool)


def test_a_reader_routed_to_a_run_keeps_its_bytes_until_it_takes_them(
    pool: BufferPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A kernel request routed to a run, whose thread then runs late (a loaded machine), while
    the run's other readers go more than KEEP_BEHIND past it: its bytes must still be there."""
    data = payload(64 * MiB)
    reader = GatedReader(data)
    ra = ReadAhead(reader, len(data))
    routed, resume = threading.Event(), threading.Event()
    take = ReadAhead._take

    def late_take(self: ReadAhead, run: object, offset: int, end: int) -> bytes | None:
        if threading.current_thread().name == "late":
            routed.set()
            resume.wait(10)
        return take(self, run, offset, end)  # type: ignore[arg-type]

    monkeypatch.setattr(ReadAhead, "_take", late_take)
    assert ra.read(0, MiB) == data[:MiB]
    got: list[bytes] = []
    late = threading.Thread(target=lambda: got.append(ra.read(MiB, MiB)), name="late", daemon=True)
    late.start()
    assert routed.wait(5)
    for off in range(2 * MiB, 18 * MiB, MiB):
        assert within(5, ra.read, off, MiB) == data[off : off + MiB]
    resume.set()
    assert_served_once(late, got, data[MiB : 2 * MiB], reader, ra, pool)


def test_a_read_whose_run_makes_no_progress_fails_instead_of_hanging(
    pool: BufferPool, caplog: pytest.LogCaptureFixture
) -> None:
    """Whatever the bug that leaves a waiter with nothing to wake it (here a backend read
    that never returns, which a guard would not allow), the read fails with EIO, one log line."""
    data = payload(16 * MiB)
    reader = GatedReader(data)
    reader.gates[0] = never = threading.Event()
    ra = ReadAhead(reader, len(data))
    ra.stall_timeout = 0.3
    try:
        with caplog.at_level("ERROR", logger="rhfs.vfs.readahead"), pytest.raises(ReadStalled) as caught:
            within(5, ra.read, 0, MiB)
        assert caught.value.errno == errno.EIO
        assert len([r for r in caplog.records if "stalled" in r.getMessage()]) == 1
    finally:
        never.set()
    assert within(5, ra.read, 0, MiB) == data[:MiB]  # the next read starts afresh
    ra.close()
    assert drained(pool)


def test_a_failed_run_gives_its_pieces_back_to_the_pool(pool: BufferPool) -> None:
    """A run fails while it holds pieces and others are still being fetched: all of them go
    back to the pool shared by every open file, not only those of runs closed normally."""
    piece = readahead.RANGED_PIECE
    data = payload(32 * MiB)
    reader = GatedReader(data)
    reader.gates[2 * piece] = first_served = threading.Event()
    reader.returned[2 * piece] = third = threading.Event()
    reader.gates[piece] = third  # the second piece fails once the third has come
    reader.fail_at.add(piece)
    ra = ReadAhead(reader, len(data))
    assert ra.read(0, MiB) == data[:MiB]
    first_served.set()
    with pytest.raises(RhfsError):
        within(5, ra.read, piece, MiB)
    ra.close()
    assert drained(pool)


def test_busy_runs_do_not_starve_a_new_run_of_producers(
    pool: BufferPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Runs whose readers keep up with their producers must not hold the shared pool's
    threads for as long as they read: a file opened meanwhile gets its bytes at once."""
    workers = ThreadPoolExecutor(max_workers=readahead.RANGED_PARALLEL, thread_name_prefix="t-ra")
    monkeypatch.setattr(readahead, "_producers", workers)
    monkeypatch.setattr(readahead, "RANGED_PIECE", 64 << 10)
    for name in ("MIN_WINDOW", "MAX_WINDOW", "REACH", "KEEP_BEHIND"):
        monkeypatch.setattr(readahead, name, MiB)
    busy = ReadAhead(GatedReader(b"", delay=0.002), 1 << 40)
    stop = threading.Event()

    def read_on() -> None:
        off = 0
        while not stop.is_set():
            busy.read(off, 64 << 10)
            off += 64 << 10

    reading = threading.Thread(target=read_on, daemon=True)
    reading.start()
    try:
        time.sleep(0.2)  # its producers are all busy now, and stay so while it reads
        data = payload(4 * MiB)
        other = ReadAhead(ScriptedReader(data, streams=False), len(data))
        assert within(3, other.read, 0, MiB) == data[:MiB]
        other.close()
    finally:
        stop.set()
        reading.join(10)
        busy.close()
        workers.shutdown(wait=True)
    assert drained(pool)


def test_a_producer_that_cannot_be_queued_leaves_no_phantom(
    pool: BufferPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The shared pool refusing work (shut down at exit) fails the read and counts no producer
    that will never run: once it takes work again, reads are served, not left waiting."""
    live, dead = readahead._producers, ThreadPoolExecutor(max_workers=1)
    dead.shutdown()
    monkeypatch.setattr(readahead, "_producers", dead)
    data = payload(8 * MiB)
    ra = ReadAhead(GatedReader(data), len(data))
    for _ in range(readahead.RANGED_PARALLEL):
        with pytest.raises(RuntimeError):
            within(5, ra.read, 0, MiB)
    monkeypatch.setattr(readahead, "_producers", live)
    assert within(5, ra.read, 0, MiB) == data[:MiB]
    ra.close()
    assert drained(pool)


# -- BodyStream over an async body ------------------------------------------------------------


class AsyncBody:
    """An aiohttp-like body: read(n) returns what has arrived, at most n bytes."""

    def __init__(self, data: bytes, piece: int) -> None:
        self.data, self.piece, self.pos = data, piece, 0
        self.closed = False

    async def read(self, n: int) -> bytes:
        await asyncio.sleep(0)
        out = self.data[self.pos : self.pos + min(n, self.piece)]
        self.pos += len(out)
        return out

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def loop() -> asyncio.AbstractEventLoop:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield loop
    loop.call_soon_threadsafe(loop.stop)
    thread.join()
    loop.close()


def runner(loop: asyncio.AbstractEventLoop):  # type: ignore[no-untyped-def]
    def run(fn, *args):  # type: ignore[no-untyped-def]
        return asyncio.run_coroutine_threadsafe(fn(*args), loop).result()

    return run


def test_a_body_stream_returns_exact_pieces_then_the_rest(loop: asyncio.AbstractEventLoop) -> None:
    data = os.urandom(5 * MiB + 321)
    body = AsyncBody(data, piece=100_000)
    stream = BodyStream(runner(loop), body)
    got = []
    while True:
        piece = stream.read(MiB)
        if not piece:
            break
        got.append(piece)
    assert b"".join(got) == data
    assert [len(p) for p in got[:-1]] == [MiB] * 5 and len(got[-1]) == 321
    assert body.closed


def test_closing_a_body_stream_early_drops_the_connection(loop: asyncio.AbstractEventLoop) -> None:
    data = os.urandom(64 * MiB)
    body = AsyncBody(data, piece=MiB)
    stream = BodyStream(runner(loop), body)
    assert stream.read(MiB) == data[:MiB]
    stream.close()
    asyncio.run_coroutine_threadsafe(asyncio.sleep(0.05), loop).result()
    assert body.closed
    assert body.pos < len(data)  # not drained


def test_column_chunks_read_side_by_side_are_fetched_once(pool: BufferPool) -> None:
    """pyarrow reads a row group's column chunks at once, one reader each, the later ones
    ahead of the earlier: no byte is fetched twice, though they share a run."""
    chunks = [(4 * MiB + 500_000), (8 * MiB + 700_000), (8 * MiB + 700_000)] * 3  # 3 row groups
    data = payload(sum(chunks))
    reader = ScriptedReader(data)
    ra = ReadAhead(reader, len(data))
    start = 0
    for group in range(3):
        sizes = chunks[3 * group : 3 * group + 3]
        starts = [start, start + sizes[0], start + sizes[0] + sizes[1]]
        pos = list(starts)
        while any(p < s + n for p, s, n in zip(pos, starts, sizes, strict=True)):
            for i in reversed(range(3)):  # the last column first: its reader is the furthest
                end = min(pos[i] + MiB, starts[i] + sizes[i])
                if pos[i] < end:
                    assert ra.read(pos[i], end - pos[i]) == data[pos[i] : end]
                    pos[i] = end
        start += sum(sizes)
    fetched = sum(s.pos - s.owner_start for s in reader.opened) + sum(n for _, n in reader.ranges)
    assert fetched <= len(data) + readahead.TAIL
    ra.close()
    assert drained(pool)
