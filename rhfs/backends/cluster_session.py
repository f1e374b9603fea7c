"""A cluster's kept ssh session: one connection, and on it a helper that runs copy jobs there.

:class:`ClusterSession` is a cluster's ``session`` ability
(:class:`~rhfs.backends.base.ClusterSessions`). The first job opens an asyncssh connection
to the cluster and starts :mod:`rhfs.backends.remote_helper` on it
(:class:`~rhfs.backends.helper_link.Helper`); later jobs reuse both, so a job costs one JSON
line each way on an open connection, and a job of many files one line for them all. The
session is closed ``idle`` seconds after its last job ended (the cluster's
``session_idle``): the helper sees its stdin close, cleans up and exits.

The connection forwards a :class:`~rhfs.backends.agent.PrivateAgent`, started at the first
push; before each push the destination's key is added to it for :data:`KEY_SECONDS`, in
which the helper may log in to the destination (once: it keeps that connection open).

Where the helper cannot start (no python3 there, or one older than 3.6), every job raises
:class:`~rhfs.errors.NoSession` for :data:`UNUSABLE_SECONDS`, the log says so once, and
the routes run their per-file commands.

Threads: callers block on the connection's futures (:mod:`rhfs.backends.helper_link`),
each under its own time limit. The locks here are leaves: nothing waits on a cluster while
holding one (the job that finds no session open becomes its opener; the others wait for that
opening outside the lock).

Invariants:
- signed requests and tokens travel only in job lines on the helper's stdin, never in a
  command line; no message raised here carries a URL;
- a job answered ``cant`` or ``unsupported`` wrote nothing (CantCopy, NoSession);
- every session is closed when the daemon exits; a daemon that dies closes it anyway,
  since the helper exits when its stdin ends.
"""

from __future__ import annotations

import atexit
import concurrent.futures
import contextlib
import logging
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

from rhfs.backends import agent as agents
from rhfs.backends.base import FileCopy, Progress, SshEndpoint, SshHop, tmp_sibling
from rhfs.backends.helper_link import START_SECONDS, Answer, Helper, on_loop, scrub
from rhfs.backends.signed import HttpRequest
from rhfs.errors import CantCopy, NoSession, RhfsError
from rhfs.stats import Stats

log = logging.getLogger(__name__)

IDLE_SECONDS = 60.0  # the default of a cluster's session_idle
UNUSABLE_SECONDS = 300  # a cluster whose helper cannot start runs per-file commands this long
KEY_SECONDS = 120  # a push's key stays in the forwarded agent this long after it was added


# -- the ability ------------------------------------------------------------------------------
class ClusterSession:
    """A cluster's ``session`` ability: its jobs, run on one kept connection."""

    def __init__(self, endpoint: SshEndpoint, stats: Stats, idle: float = IDLE_SECONDS) -> None:
        self.endpoint, self.stats, self.idle = endpoint, stats, idle
        self.system = endpoint.system
        self._lock = threading.Lock()  # guards the attributes below; a leaf
        self._opening: concurrent.futures.Future[Helper] | None = None  # the session, once open
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
        before: Callable[[Helper], None] | None = None,
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
        before: Callable[[Helper], None] | None = None,
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

    def _acquire(self) -> Helper:
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

    def _open(self) -> Helper:
        agent = agents.PrivateAgent()
        try:
            start = Helper.start(self.endpoint, agent)
            helper = on_loop(start, START_SECONDS + 5, f"{self.system}: opening a session")
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

    def _close(self, opening: concurrent.futures.Future[Helper] | None) -> None:
        if opening is None or not opening.done() or opening.exception() is not None:
            return
        helper = opening.result()
        if helper.close():
            self.stats.end_session(self.system)
            log.debug("%s: session closed", self.system)


def _ended(opening: concurrent.futures.Future[Helper]) -> bool:
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
