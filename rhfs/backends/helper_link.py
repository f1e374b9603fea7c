"""One ssh connection to a cluster, and the session's helper running on it.

:class:`Helper` connects with asyncssh, forwarding a
:class:`~rhfs.backends.agent.PrivateAgent`, starts :mod:`rhfs.backends.remote_helper`
there (``python3 -c``, the program sent over stdin) and waits for its ready line. Then it
sends jobs, one JSON line each, and hands each answer to the thread waiting for it; progress
lines go to the job's callback. :meth:`Helper.send_files` frames files of this host on the
helper's stdin, as a push's peer frames them.

Threads: every connection's coroutines run on one event loop, in this module's thread
``rhfs-sessions``; callers block on futures, each under its own time limit (:func:`on_loop`).
A helper's lock is a leaf.

Invariants: signed requests and tokens travel only in job lines on the helper's stdin,
never in a command line; no message raised here carries a URL (:func:`scrub`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import itertools
import json
import logging
import os
import threading
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from rhfs.backends import agent as agents
from rhfs.backends import remote_helper
from rhfs.backends.base import FileCopy, Progress, SshEndpoint, tmp_sibling
from rhfs.backends.cluster import CONNECT_TIMEOUT
from rhfs.errors import NoSession, RhfsError, TimedOut, Unavailable

log = logging.getLogger(__name__)
T = TypeVar("T")
Answer = dict[str, Any]

START_SECONDS = 20.0  # to connect and hear the helper say it is ready
SEND_SECONDS = 30.0  # to hand one job line to the connection
FRAME_BYTES = 256 << 10  # file bytes per frame sent to the helper
FLUSH_BYTES = 1 << 20  # bytes of frames handed to the connection at once
CLOSE_SECONDS = 5.0  # for the helper to clean up and exit, then for the connection to close
PROGRAM = (Path(remote_helper.__file__).read_text() + "\nserve(PROGRAM)\n").encode()


def scrub(text: str) -> str:
    """``text`` without any URL in it (a signed URL holds its signature)."""
    return remote_helper.URL_PATTERN.sub("<url>", text)


# -- the event loop ------------------------------------------------------------------------
_loop: asyncio.AbstractEventLoop | None = None
_loop_lock = threading.Lock()  # guards _loop; a leaf


def _forget_loop_after_fork() -> None:
    """A forked child has no thread running the parent's loop: it starts its own on first use."""
    global _loop, _loop_lock
    _loop, _loop_lock = None, threading.Lock()


os.register_at_fork(after_in_child=_forget_loop_after_fork)


def on_loop(coro: Coroutine[Any, Any, T], timeout: float, what: str) -> T:
    """Run ``coro`` on the sessions' event loop and wait for it; cancelled after ``timeout``."""
    global _loop
    with _loop_lock:
        if _loop is None:
            _loop = asyncio.new_event_loop()
            threading.Thread(target=_loop.run_forever, name="rhfs-sessions", daemon=True).start()
        loop = _loop
    future = asyncio.run_coroutine_threadsafe(coro, loop)
    try:
        return future.result(timeout)
    except concurrent.futures.TimeoutError:
        future.cancel()
        raise TimedOut(f"{what} took more than {timeout:g}s") from None


# -- one open session --------------------------------------------------------------------
class Helper:
    """One connection to a cluster, and the helper running on it."""

    def __init__(self, system: str, conn: Any, process: Any, agent: agents.PrivateAgent, pid: int) -> None:
        self.system, self.conn, self.process, self.agent, self.pid = system, conn, process, agent, pid
        self.ended: str | None = None  # why the helper is gone
        self._lock = threading.Lock()  # guards ended, _lost, _pending and _closed; a leaf
        self._pending: dict[int, tuple[concurrent.futures.Future[Answer], Progress | None]] = {}
        self._ids = itertools.count(1)
        self._stderr = b""
        self._closed = False
        self._lost = False  # the connection was lost (not only the helper gone)
        self._tasks: list[asyncio.Future[None]] = []  # its readers, kept from the garbage collector

    @classmethod
    async def start(cls, endpoint: SshEndpoint, agent: agents.PrivateAgent) -> Helper:
        import asyncssh

        options: dict[str, Any] = {
            "port": endpoint.port,
            "known_hosts": endpoint.known_hosts or None,
            "connect_timeout": CONNECT_TIMEOUT,
            "keepalive_interval": 15,
            "keepalive_count_max": 2,
            "agent_forwarding": agent.socket_path,
        }
        if endpoint.user:
            options["username"] = endpoint.user
        if endpoint.identity_file:
            options["client_keys"] = [endpoint.identity_file]
        system = endpoint.system
        try:
            conn = await asyncssh.connect(endpoint.host, **options)
        except (OSError, asyncssh.Error) as e:
            raise Unavailable(f"{system}: cannot open a session: {e}") from e
        try:
            process = await conn.create_process(remote_helper.COMMAND, encoding=None)
            process.stdin.write(f"{len(PROGRAM)}\n".encode() + PROGRAM)
            hello = await asyncio.wait_for(ready_line(process), START_SECONDS)
            if hello is None:
                raise NoSession(f"{system}: the session's helper cannot start ({await why_ended(process)})")
        except asyncssh.Error as e:
            conn.close()
            raise Unavailable(f"{system}: cannot start the session's helper: {e}") from e
        except BaseException:
            conn.close()
            raise
        helper = cls(system, conn, process, agent, int(hello.get("pid") or 0))
        helper._tasks = [asyncio.ensure_future(r) for r in (helper._read_answers(), helper._read_errors())]
        return helper

    async def _read_answers(self) -> None:
        why, lost = "the helper exited", False
        try:
            while line := await self.process.stdout.readline():
                self._dispatch(line)
        except Exception as e:  # the connection broke
            why, lost = f"the connection broke: {e}", True
        await asyncio.sleep(0.05)  # the last of stderr
        said = self._stderr.decode("utf-8", "replace").strip()[-300:]
        self._end(scrub(f"{why}: {said}" if said else why), lost)

    async def _read_errors(self) -> None:
        with contextlib.suppress(Exception):
            while chunk := await self.process.stderr.read(4096):
                self._stderr = (self._stderr + chunk)[-2000:]

    def _dispatch(self, line: bytes) -> None:
        try:
            answer = json.loads(line)
        except ValueError:
            return  # not the helper's (a login script's chatter)
        with self._lock:
            entry = self._pending.get(answer.get("id"))
        if entry is None:
            return
        future, progress = entry
        if "progress" in answer:
            if progress is not None:
                try:
                    progress(int(answer["progress"]))
                except Exception as e:  # a caller's callback must not stop the session
                    log.debug("%s: a progress callback failed: %s", self.system, e)
            return
        with contextlib.suppress(concurrent.futures.InvalidStateError):
            future.set_result(answer)

    def _end(self, why: str, lost: bool) -> None:
        """Fail every job waiting: an outage if the connection was lost, else a failure of its own."""
        with self._lock:
            self.ended = self.ended or why
            self._lost = lost
            pending = list(self._pending.values())
        for future, _ in pending:
            with contextlib.suppress(concurrent.futures.InvalidStateError):
                future.set_exception(self._ended_error())

    def _ended_error(self) -> RhfsError:
        error = Unavailable if self._lost else RhfsError
        return error(f"{self.system}: the session ended: {self.ended}")

    def submit(self, fields: dict[str, Any], timeout: float, progress: Progress | None) -> Answer:
        """Send one job and wait for its answer; TimedOut (and the job cancelled) after ``timeout``."""
        ident, future = self._expect(progress)
        try:
            self._send({"id": ident, **fields})
            try:
                return future.result(timeout)
            except concurrent.futures.TimeoutError:
                with contextlib.suppress(RhfsError):
                    self._send({"id": ident, "op": "cancel"})
                raise TimedOut(f"{self.system}: the copy took more than {timeout:g}s") from None
        finally:
            with self._lock:
                self._pending.pop(ident, None)

    def send_files(
        self, files: list[FileCopy], timeout: float, progress: Progress | None
    ) -> list[RhfsError | None]:
        """Send files of this host to the helper, framed on its stdin as a push's peer frames
        them (``recv-open``, ``recv-data``, ``recv-close``); each file's failure."""
        deadline = time.monotonic() + timeout
        expected: list[tuple[int, concurrent.futures.Future[Answer]]] = []
        failed: dict[int, RhfsError] = {}  # files that failed here, before the helper saw them whole
        stream = FrameStream(self, progress)
        try:
            for file in files:
                expected.append(self._expect(None))
                failure = stream.file(expected[-1][0], file)
                if failure is not None:
                    failed[expected[-1][0]] = failure
            stream.flush()
            return [
                failed[ident] if ident in failed else self._received(ident, future, deadline)
                for ident, future in expected
            ]
        finally:
            with self._lock:
                for ident, _ in expected:
                    self._pending.pop(ident, None)

    def _expect(self, progress: Progress | None) -> tuple[int, concurrent.futures.Future[Answer]]:
        """A new id, and the future its answer will settle; the helper must not have ended."""
        ident = next(self._ids)
        future: concurrent.futures.Future[Answer] = concurrent.futures.Future()
        with self._lock:
            if self.ended is not None:
                raise self._ended_error()
            self._pending[ident] = (future, progress)
        return ident, future

    def _received(
        self, ident: int, future: concurrent.futures.Future[Answer], deadline: float
    ) -> RhfsError | None:
        try:
            answer = future.result(max(0.0, deadline - time.monotonic()))
        except concurrent.futures.TimeoutError:
            with contextlib.suppress(RhfsError):
                self._send({"op": "recv-abort", "id": ident})
            return TimedOut(f"{self.system}: a file sent took too long")
        except RhfsError as e:
            return e
        if answer.get("ok"):
            return None
        return RhfsError(f"{self.system}: {scrub(str(answer.get('error') or 'no message'))}")

    def send_bytes(self, data: bytes) -> None:
        on_loop(self._write(data), SEND_SECONDS, f"{self.system}: sending a file")

    def _send(self, message: dict[str, Any]) -> None:
        on_loop(self._write((json.dumps(message) + "\n").encode()), SEND_SECONDS, f"{self.system}: a job")

    async def _write(self, data: bytes) -> None:
        try:
            self.process.stdin.write(data)
            await self.process.stdin.drain()
        except Exception as e:
            raise Unavailable(f"{self.system}: the session broke: {e}") from e

    def close(self) -> bool:
        """Close the helper's stdin (it cleans up and exits), the connection, and the agent.
        True if it was open until now."""
        with self._lock:
            if self._closed:
                return False
            self._closed = True
        try:
            on_loop(self._close(), 2 * CLOSE_SECONDS + 1, f"{self.system}: closing the session")
        except Exception as e:  # it is going away in any case
            log.debug("%s: closing the session: %s", self.system, e)
        finally:
            self.agent.close()
        return True

    async def _close(self) -> None:
        with contextlib.suppress(Exception):
            self.process.stdin.write_eof()
            await asyncio.wait_for(self.process.wait_closed(), CLOSE_SECONDS)
        self.conn.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.conn.wait_closed(), CLOSE_SECONDS)


class FrameStream:
    """Files of this host, framed for a helper's stdin, written in writes of about
    :data:`FLUSH_BYTES`; ``progress`` told the bytes of files written so far."""

    def __init__(self, helper: Helper, progress: Progress | None) -> None:
        self.helper, self.progress = helper, progress
        self.frames: list[bytes] = []
        self.buffered = self.sent = 0

    def file(self, ident: int, file: FileCopy) -> RhfsError | None:
        """Frame one file; a failure here (it cannot be read, or it changed) is its own."""
        try:
            with open(file.src, "rb") as f:
                self._add({"op": "recv-open", "id": ident, "file": file.dst, "tmp": tmp_sibling(file.dst)})
                got = 0
                while data := f.read(FRAME_BYTES):
                    got += len(data)
                    if got > file.size:
                        break
                    self._add({"op": "recv-data", "id": ident, "len": len(data)}, data)
        except OSError as e:
            self._add({"op": "recv-abort", "id": ident})
            return RhfsError(f"{file.src}: {e.strerror or e}")
        if got != file.size:
            self._add({"op": "recv-abort", "id": ident})
            return RhfsError(f"{file.src} changed during the copy: {got} bytes or more, not {file.size}")
        self._add({"op": "recv-close", "id": ident, "size": file.size})
        return None

    def _add(self, header: dict[str, Any], payload: bytes = b"") -> None:
        self.frames.append(json.dumps(header).encode() + b"\n" + payload)
        self.buffered += len(self.frames[-1])
        if self.buffered >= FLUSH_BYTES:
            self.flush()

    def flush(self) -> None:
        if self.frames:
            self.helper.send_bytes(b"".join(self.frames))
            self.sent += self.buffered
            self.frames, self.buffered = [], 0
            if self.progress is not None:
                self.progress(self.sent)


async def ready_line(process: Any) -> Answer | None:
    """The helper's ready line, past any other output (a login script's); None if it ended first."""
    while line := await process.stdout.readline():
        with contextlib.suppress(ValueError):
            answer = json.loads(line)
            if isinstance(answer, dict) and answer.get("ready"):
                return answer
    return None


async def why_ended(process: Any) -> str:
    """Why a helper ended before it was ready: its exit status and the end of its stderr."""
    with contextlib.suppress(Exception):
        await asyncio.wait_for(process.wait_closed(), CLOSE_SECONDS)
    said = b""
    with contextlib.suppress(Exception):
        said = await asyncio.wait_for(process.stderr.read(), 1.0)
    code = process.exit_status
    if code == remote_helper.NOT_FOUND:
        return "no python3 there"
    text = said.decode("utf-8", "replace").strip()[-300:] or "no message"
    return scrub(f"exit {code}: {text}")
