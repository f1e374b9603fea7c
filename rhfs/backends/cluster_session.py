"""A cluster's kept ssh session: one connection, and on it a helper that runs copy jobs there.

:class:`ClusterSession` is a cluster's ``session`` ability
(:class:`~rhfs.backends.base.ClusterSessions`). The first job opens an asyncssh connection
to the cluster and starts :mod:`rhfs.backends.remote_helper` on it (``python3 -c``, the
program sent over stdin); later jobs reuse both, so a job costs one JSON line each way on an
open connection. The session is closed ``idle`` seconds after its last job ended (the
cluster's ``session_idle``): the helper sees its stdin close, cleans up and exits.

The connection forwards a :class:`~rhfs.backends.agent.PrivateAgent`, started at the first
push; before each push the destination's key is added to it for :data:`KEY_SECONDS`, in
which the helper may log in to the destination (once: it keeps that connection open).

Where the helper cannot start (no python3 there, or one older than 3.6), every job raises
:class:`~rhfs.errors.NoSession` for :data:`UNUSABLE_SECONDS`, the log says so once, and
the routes run their per-file commands.

Threads: every connection's coroutines run on one event loop, in this module's thread
``rhfs-sessions``; callers block on futures, each under its own time limit. The locks
here are leaves: nothing waits on a cluster while holding one (the job that finds no
session open becomes its opener; the others wait for that opening outside the lock).

Invariants:
- signed requests and tokens travel only in job lines on the helper's stdin, never in a
  command line; no message raised here carries a URL;
- a job answered ``cant`` or ``unsupported`` wrote nothing (CantCopy, NoSession);
- every session is closed when the daemon exits; a daemon that dies closes it anyway,
  since the helper exits when its stdin ends.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import itertools
import json
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

from rhfs.backends import agent as agents
from rhfs.backends import remote_helper
from rhfs.backends.base import FileCopy, Progress, SshEndpoint, SshHop, tmp_sibling
from rhfs.backends.cluster import CONNECT_TIMEOUT
from rhfs.backends.signed import HttpRequest
from rhfs.errors import CantCopy, NoSession, RhfsError, TimedOut, Unavailable
from rhfs.stats import Stats

log = logging.getLogger(__name__)
T = TypeVar("T")
Answer = dict[str, Any]

IDLE_SECONDS = 60.0  # the default of a cluster's session_idle
START_SECONDS = 20.0  # to connect and hear the helper say it is ready
UNUSABLE_SECONDS = 300  # a cluster whose helper cannot start runs per-file commands this long
KEY_SECONDS = 120  # a push's key stays in the forwarded agent this long after it was added
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


def _on_loop(coro: Coroutine[Any, Any, T], timeout: float, what: str) -> T:
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
class _Helper:
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
    async def start(cls, endpoint: SshEndpoint, agent: agents.PrivateAgent) -> _Helper:
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
            hello = await asyncio.wait_for(_hello(process), START_SECONDS)
            if hello is None:
                raise NoSession(f"{system}: the session's helper cannot start ({await _why(process)})")
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
        ident = next(self._ids)
        future: concurrent.futures.Future[Answer] = concurrent.futures.Future()
        with self._lock:
            if self.ended is not None:
                raise self._ended_error()
            self._pending[ident] = (future, progress)
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
        waiting: list[tuple[int, concurrent.futures.Future[Answer]] | RhfsError] = []
        stream = _FrameStream(self, progress)
        try:
            for file in files:
                ident = next(self._ids)
                future: concurrent.futures.Future[Answer] = concurrent.futures.Future()
                with self._lock:
                    if self.ended is not None:
                        raise self._ended_error()
                    self._pending[ident] = (future, None)
                waiting.append(stream.file(ident, file) or (ident, future))
            stream.flush()
            return [w if isinstance(w, RhfsError) else self._received(*w, deadline) for w in waiting]
        finally:
            with self._lock:
                for w in waiting:
                    if not isinstance(w, RhfsError):
                        self._pending.pop(w[0], None)

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
        _on_loop(self._write(data), SEND_SECONDS, f"{self.system}: sending a file")

    def _send(self, message: dict[str, Any]) -> None:
        _on_loop(self._write((json.dumps(message) + "\n").encode()), SEND_SECONDS, f"{self.system}: a job")

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
            _on_loop(self._close(), 2 * CLOSE_SECONDS + 1, f"{self.system}: closing the session")
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


class _FrameStream:
    """Files of this host, framed for a helper's stdin, written in writes of about
    :data:`FLUSH_BYTES`; ``progress`` told the bytes of files written so far."""

    def __init__(self, helper: _Helper, progress: Progress | None) -> None:
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


async def _hello(process: Any) -> Answer | None:
    """The helper's ready line, past any other output (a login script's); None if it ended first."""
    while line := await process.stdout.readline():
        with contextlib.suppress(ValueError):
            answer = json.loads(line)
            if isinstance(answer, dict) and answer.get("ready"):
                return answer
    return None


async def _why(process: Any) -> str:
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


# -- the ability ------------------------------------------------------------------------------
class ClusterSession:
    """A cluster's ``session`` ability: its jobs, run on one kept connection."""

    def __init__(self, endpoint: SshEndpoint, stats: Stats, idle: float = IDLE_SECONDS) -> None:
        self.endpoint, self.stats, self.idle = endpoint, stats, idle
        self.system = endpoint.system
        self._lock = threading.Lock()  # guards the attributes below; a leaf
        self._opening: concurrent.futures.Future[_Helper] | None = None  # the session, once open
        self._busy = 0  # jobs between _acquire and _release
        self._last_used = 0.0
        self._timer: threading.Timer | None = None
        self._unusable_until = 0.0
        self._unusable_why = ""
        _SESSIONS.add(self)

    def copy(
        self, src: str, dst: str, size: int, *, timeout: float, progress: Progress | None = None
    ) -> None:
        fields = {"op": "copy", "src": src, "dst": dst, "tmp": tmp_sibling(dst), "size": size}
        self._job(fields, timeout, progress)

    def push(
        self, src: str, hop: SshHop, dst: str, size: int, *, timeout: float, progress: Progress | None = None
    ) -> None:
        fields, identity = self._push_fields(hop)
        fields.update({"op": "push", "src": src, "dst": dst, "tmp": tmp_sibling(dst), "size": size})
        self._job(fields, timeout, progress, before=lambda helper: helper.agent.add(identity, KEY_SECONDS))

    def _push_fields(self, hop: SshHop) -> tuple[dict[str, Any], str]:
        """A push's destination, as the helper takes it, and the key that logs in there."""
        if hop.identity_file is None:
            raise NoSession(f"{self.system}: a push to {hop.host} needs the daemon's own agent")
        to = {"host": hop.host, "port": hop.port, "user": hop.user, "alias": agents.HOST_KEY_ALIAS}
        to["host_keys"] = list(hop.host_keys)
        return {"to": to}, hop.identity_file

    def upload(
        self,
        src: str,
        size: int,
        parts: list[tuple[int, int, HttpRequest]],
        *,
        timeout: float,
        progress: Progress | None = None,
    ) -> list[str]:
        fields = {"op": "upload", "file": src, "size": size, "parts": _parts(parts)}
        return _etags(self._job(fields, timeout, progress))

    def download(
        self, request: HttpRequest, dst: str, size: int, *, timeout: float, progress: Progress | None = None
    ) -> None:
        fields = {"op": "download", "read": request.as_json(), "file": dst, "size": size}
        fields["tmp"] = tmp_sibling(dst)
        self._job(fields, timeout, progress)

    def relay(
        self,
        request: HttpRequest,
        size: int,
        parts: list[tuple[int, int, HttpRequest]],
        *,
        timeout: float,
        progress: Progress | None = None,
    ) -> list[str]:
        fields = {"op": "relay", "read": request.as_json(), "size": size, "parts": _parts(parts)}
        return _etags(self._job(fields, timeout, progress))

    def copy_many(
        self, files: list[FileCopy], *, timeout: float, progress: Progress | None = None
    ) -> list[RhfsError | None]:
        return self._many({"op": "copy-many"}, files, timeout, progress)

    def push_many(
        self, files: list[FileCopy], hop: SshHop, *, timeout: float, progress: Progress | None = None
    ) -> list[RhfsError | None]:
        fields, identity = self._push_fields(hop)
        fields["op"] = "push-many"
        return self._many(
            fields, files, timeout, progress, before=lambda h: h.agent.add(identity, KEY_SECONDS)
        )

    def receive_many(
        self, files: list[FileCopy], *, timeout: float, progress: Progress | None = None
    ) -> list[RhfsError | None]:
        helper = self._acquire()
        try:
            return helper.send_files(files, timeout, progress)
        finally:
            self._release()

    def warm(self, hop: SshHop | None = None) -> None:
        """Open the session now, in the background, and the connection to ``hop`` on it; a
        failure here is only logged (the job that needs it then meets it)."""

        def opening() -> None:
            try:
                if hop is None:
                    self._acquire()
                    self._release()
                else:
                    fields, identity = self._push_fields(hop)
                    fields["op"] = "connect"
                    self._job(
                        fields, START_SECONDS, None, before=lambda h: h.agent.add(identity, KEY_SECONDS)
                    )
            except RhfsError as e:
                log.debug("%s: opening the session ahead of its jobs: %s", self.system, e)

        threading.Thread(target=opening, name=f"rhfs-{self.system}-warm", daemon=True).start()

    def close(self) -> None:
        """Close the session now, if one is open."""
        with self._lock:
            opening, self._opening = self._opening, None
        self._close(opening)

    # -- the session's life ----------------------------------------------------------------
    def _job(
        self,
        fields: dict[str, Any],
        timeout: float,
        progress: Progress | None,
        before: Callable[[_Helper], None] | None = None,
    ) -> Answer:
        helper = self._acquire()
        try:
            if before is not None:
                before(helper)
            answer = helper.submit(fields, timeout, progress)
        finally:
            self._release()
        if answer.get("ok"):
            return answer
        raise self._failure(answer.get("error"), answer.get("kind"))

    def _many(
        self,
        fields: dict[str, Any],
        files: list[FileCopy],
        timeout: float,
        progress: Progress | None,
        before: Callable[[_Helper], None] | None = None,
    ) -> list[RhfsError | None]:
        """One job over ``files``; each file's failure, None where it was copied."""
        fields["files"] = [[f.src, f.dst, tmp_sibling(f.dst), f.size] for f in files]
        outcomes: list[RhfsError | None] = [None] * len(files)
        for index, error, kind in self._job(fields, timeout, progress, before).get("failed") or []:
            outcomes[int(index)] = self._failure(error, kind)
        return outcomes

    def _failure(self, error: object, kind: object) -> RhfsError:
        """A job's (or one file's) failure, as the helper answered it."""
        text = f"{self.system}: {scrub(str(error or 'no message'))}"
        if kind == "unsupported":
            return NoSession(text)
        if kind == "cant":
            return CantCopy(text)
        return RhfsError(text)

    def _acquire(self) -> _Helper:
        """The open session, opened now if there is none (or it ended); counted as opened or reused."""
        with self._lock:
            if time.monotonic() < self._unusable_until:
                raise NoSession(self._unusable_why)
            opening, stale = self._opening, None
            opener = opening is None or _ended(opening)
            if opener:
                stale, opening = opening, concurrent.futures.Future()
                self._opening = opening
            self._busy += 1
        assert opening is not None
        if stale is not None:
            closing = threading.Thread(target=self._close, args=(stale,), name="rhfs-session-close")
            closing.daemon = True
            closing.start()
        try:
            if opener:
                try:
                    opening.set_result(self._open())
                except BaseException as e:
                    opening.set_exception(e)
                    raise
            helper = opening.result(START_SECONDS + 10)
        except BaseException:
            with self._lock:
                if self._opening is opening:
                    self._opening = None
            self._release()
            raise
        self.stats.add_session(self.system, opened=opener)
        return helper

    def _open(self) -> _Helper:
        agent = agents.PrivateAgent()
        try:
            start = _Helper.start(self.endpoint, agent)
            helper = _on_loop(start, START_SECONDS + 5, f"{self.system}: opening a session")
        except NoSession as e:
            agent.close()
            with self._lock:
                self._unusable_until = time.monotonic() + UNUSABLE_SECONDS
                self._unusable_why = str(e)
            log.warning("%s; its copies run one command per file for the next %d s", e, UNUSABLE_SECONDS)
            raise
        except BaseException:
            agent.close()
            raise
        log.debug("%s: session opened (helper pid %d)", self.system, helper.pid)
        return helper

    def _release(self) -> None:
        with self._lock:
            self._busy -= 1
            self._last_used = time.monotonic()
            if self._busy == 0 and self._timer is None and self._opening is not None:
                self._start_timer(self.idle)

    def _start_timer(self, seconds: float) -> None:
        self._timer = threading.Timer(seconds, self._idle_check)
        self._timer.name, self._timer.daemon = f"rhfs-{self.system}-idle", True
        self._timer.start()

    def _idle_check(self) -> None:
        with self._lock:
            self._timer = None
            if self._busy or self._opening is None:
                return
            left = self._last_used + self.idle - time.monotonic()
            if left > 0.01:
                self._start_timer(left)
                return
            opening, self._opening = self._opening, None
        self._close(opening)

    def _close(self, opening: concurrent.futures.Future[_Helper] | None) -> None:
        if opening is None or not opening.done() or opening.exception() is not None:
            return
        helper = opening.result()
        if helper.close():
            self.stats.end_session(self.system)
            log.debug("%s: session closed", self.system)


def _ended(opening: concurrent.futures.Future[_Helper]) -> bool:
    """Is this session gone (its opening failed, or its helper ended)? An opening under way is not."""
    if not opening.done():
        return False
    return opening.exception() is not None or opening.result().ended is not None


def _parts(parts: list[tuple[int, int, HttpRequest]]) -> list[list[Any]]:
    return [[offset, length, request.as_json()] for offset, length, request in parts]


def _etags(answer: Answer) -> list[str]:
    return [str(etag) for etag in answer.get("etags") or []]


_SESSIONS: weakref.WeakSet[ClusterSession] = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    for session in list(_SESSIONS):
        with contextlib.suppress(Exception):
            session.close()
