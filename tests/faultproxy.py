"""A loopback TCP proxy that injects network faults between rhfs and one server (stdlib only).

    proxy = FaultProxy(upstream_port)        # listens on 127.0.0.1:proxy.port
    proxy.slow(bytes_per_second=64 << 10)     # throttle both directions
    proxy.blackhole()                         # accept, swallow everything, answer nothing
    proxy.down()                              # reset every connection and refuse new ones
    proxy.drop_after(1 << 20)                 # reset each connection after 1 MiB has flowed
    proxy.reset_all()                         # reset the connections open now, keep the mode
    proxy.pass_through()                      # back to normal (resets connections a fault broke)
    proxy.close()

Modes apply at once to the connections already open, as a real network fault would.
Leaving ``blackhole`` resets the connections it swallowed bytes from: their streams are
corrupt, as after a NAT forgets its state. Resets are real RSTs (``SO_LINGER`` 0), so the
client sees ECONNRESET or ECONNREFUSED rather than a clean end of stream.
"""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator

PASS, SLOW, BLACKHOLE, DOWN, DROP_AFTER = "pass", "slow", "blackhole", "down", "drop-after"
_POLL = 0.05
_RECV = 64 << 10


def _reset(sock: socket.socket) -> None:
    """Close with an RST, not a FIN."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()


class _Connection:
    def __init__(self, proxy: FaultProxy, client: socket.socket) -> None:
        self.proxy = proxy
        self.client = client
        self.upstream: socket.socket | None = None
        self.closed = threading.Event()
        self.corrupt = False  # bytes were swallowed: the stream can never be trusted again
        self.flowed = 0
        self._lock = threading.Lock()

    def start(self) -> None:
        threading.Thread(target=self._run, name="faultproxy-conn", daemon=True).start()

    def _run(self) -> None:
        if self.proxy.mode != BLACKHOLE:
            try:
                self.upstream = socket.create_connection(("127.0.0.1", self.proxy.upstream_port), timeout=5)
                self.upstream.settimeout(None)
            except OSError:
                self.reset()
                return
        sources = [(self.client, True)] + ([(self.upstream, False)] if self.upstream is not None else [])
        for src, upward in sources:
            threading.Thread(
                target=self._pump, args=(src, upward), name="faultproxy-pump", daemon=True
            ).start()

    def _pump(self, src: socket.socket, upward: bool) -> None:
        """Copy src to its peer until either side ends or the connection is closed."""
        while not self.closed.is_set():
            try:
                ready, _, _ = select.select([src], [], [], _POLL)
            except (OSError, ValueError):
                break
            if not ready:
                continue
            try:
                data = src.recv(_RECV)
            except OSError:
                break
            if not data:
                break
            if not self._forward(data, upward):
                break
        self.close()

    def _forward(self, data: bytes, upward: bool) -> bool:
        proxy = self.proxy
        mode = proxy.mode
        if mode == BLACKHOLE or (upward and self.upstream is None):
            self.corrupt = True
            proxy.swallowed += len(data)
            return True
        if mode == DOWN:
            self.reset()
            return False
        dst = self.upstream if upward else self.client
        assert dst is not None
        view = memoryview(data)
        while view:
            if self.closed.is_set():
                return False
            piece = len(view)
            if proxy.mode == SLOW:
                piece = min(piece, max(1, int(proxy.bytes_per_second * _POLL)))
                time.sleep(piece / proxy.bytes_per_second)
            if proxy.mode == DROP_AFTER:
                with self._lock:
                    budget = proxy.drop_after_bytes - self.flowed
                if budget <= 0:
                    proxy.drops += 1
                    self.reset()
                    return False
                piece = min(piece, budget)
            try:
                dst.sendall(view[:piece])
            except OSError:
                return False
            with self._lock:
                self.flowed += piece
            proxy.forwarded += piece
            view = view[piece:]
        return True

    def reset(self) -> None:
        """RST both sides."""
        with self._lock:
            if self.closed.is_set():
                return
            self.closed.set()
        _reset(self.client)
        if self.upstream is not None:
            _reset(self.upstream)
        self.proxy._forget(self)

    def close(self) -> None:
        with self._lock:
            if self.closed.is_set():
                return
            self.closed.set()
        for sock in (self.client, self.upstream):
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.close()
        self.proxy._forget(self)


class FaultProxy:
    """One listening port on 127.0.0.1 that forwards to ``upstream_port``, with faults on demand."""

    def __init__(self, upstream_port: int, port: int = 0) -> None:
        self.upstream_port = upstream_port
        self.mode = PASS
        self.bytes_per_second = 1 << 20
        self.drop_after_bytes = 0
        self.accepted = 0
        self.refused = 0
        self.drops = 0
        self.forwarded = 0
        self.swallowed = 0
        self._connections: set[_Connection] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", port))
        self._listener.listen(128)
        self.port: int = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._accept_loop, name="faultproxy", daemon=True)
        self._thread.start()

    def __repr__(self) -> str:
        return f"FaultProxy(127.0.0.1:{self.port} -> {self.upstream_port}, {self.mode})"

    # -- modes ----------------------------------------------------------------------
    def pass_through(self) -> None:
        was = self.mode
        self.mode = PASS
        if was in (BLACKHOLE, DOWN, DROP_AFTER):
            # Connections a blackhole swallowed bytes from, or accepted without an upstream, are dead.
            self._reset_where(lambda c: c.corrupt or c.upstream is None or was != BLACKHOLE)

    def slow(self, bytes_per_second: int = 64 << 10) -> None:
        self.bytes_per_second = bytes_per_second
        self.mode = SLOW

    def blackhole(self) -> None:
        self.mode = BLACKHOLE

    def down(self) -> None:
        """As if the server stopped: every connection is reset and new ones are refused."""
        self.mode = DOWN
        self.reset_all()

    def drop_after(self, nbytes: int) -> None:
        """Reset each connection once ``nbytes`` have flowed through it (counted from now)."""
        with self._lock:
            for c in self._connections:
                c.flowed = 0
        self.drop_after_bytes = nbytes
        self.mode = DROP_AFTER

    def reset_all(self) -> None:
        self._reset_where(lambda c: True)

    @contextlib.contextmanager
    def fault(self, mode: str, amount: int = 0) -> Iterator[FaultProxy]:
        """``with proxy.fault("down"): ...``, then back to pass-through whatever happens."""
        if mode == SLOW:
            self.slow(amount or 64 << 10)
        elif mode == DROP_AFTER:
            self.drop_after(amount)
        elif mode == BLACKHOLE:
            self.blackhole()
        elif mode == DOWN:
            self.down()
        else:
            raise ValueError(f"unknown fault {mode!r}")
        try:
            yield self
        finally:
            self.pass_through()

    @property
    def open_connections(self) -> int:
        with self._lock:
            return len(self._connections)

    def close(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self._listener.close()
        self.reset_all()
        self._thread.join(timeout=2)

    # -- internals ------------------------------------------------------------------
    def _reset_where(self, predicate: Callable[[_Connection], bool]) -> None:
        with self._lock:
            victims = [c for c in self._connections if predicate(c)]
        for c in victims:
            c.reset()

    def _forget(self, conn: _Connection) -> None:
        with self._lock:
            self._connections.discard(conn)

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select([self._listener], [], [], _POLL)
                if not ready:
                    continue
                client, _addr = self._listener.accept()
            except OSError:
                if self._stop.is_set():
                    return
                continue
            if self.mode == DOWN:
                self.refused += 1
                _reset(client)
                continue
            self.accepted += 1
            conn = _Connection(self, client)
            with self._lock:
                self._connections.add(conn)
            conn.start()
