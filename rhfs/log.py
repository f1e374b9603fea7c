"""Logging: one line per event to stderr, in a form journald understands, with secrets redacted.

Under systemd (stderr is the journal stream named by ``$JOURNAL_STREAM``) each line
starts with a ``<N>`` syslog priority, which journald files at that priority, and
carries no timestamp (journald adds its own). Anywhere else (a terminal, or the
``rhfs.log`` file of a background mount) each line starts with a local timestamp.

The level of rhfs's own loggers comes from ``--log-level`` or ``[mount] log_level``;
third-party loggers (fsspec, botocore, asyncssh...) stay at WARNING or above,
because their debug output can carry request signatures.

Invariant: every registered secret is replaced by ``***`` in every record, whatever
logger wrote it (fsspec, botocore and asyncssh included), in tracebacks, and in
uncaught exceptions of any thread.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from types import TracebackType
from typing import IO

_SYSLOG_PRIORITY = {
    logging.DEBUG: 7,
    logging.INFO: 6,
    logging.WARNING: 4,
    logging.ERROR: 3,
    logging.CRITICAL: 2,
}
THIRD_PARTY = ("mfusepy", "fsspec", "s3fs", "gcsfs", "adlfs", "asyncssh", "botocore", "aiobotocore", "azure")
QUIET = ("asyncssh", "azure", "urllib3")  # chatty at WARNING: only errors

_secrets: set[str] = set()
_secrets_lock = threading.Lock()
log = logging.getLogger("rhfs")


def _new_lock_after_fork() -> None:
    """A forked child may have been made while another thread held the lock: it gets its own."""
    global _secrets_lock
    _secrets_lock = threading.Lock()


os.register_at_fork(after_in_child=_new_lock_after_fork)


def register_secret(value: str) -> None:
    if value and len(value) >= 4:
        with _secrets_lock:
            _secrets.add(value)


def redact(text: str) -> str:
    with _secrets_lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, "***")
    return text


def under_journald(stream: IO[str]) -> bool:
    """True when ``stream`` is the journal stream systemd gave this service (see systemd.exec)."""
    expected = os.environ.get("JOURNAL_STREAM", "")
    if not expected:
        return False
    try:
        st = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return expected == f"{st.st_dev}:{st.st_ino}"


class _Formatter(logging.Formatter):
    def __init__(self, journald: bool) -> None:
        fmt = "%(levelname)s %(name)s: %(message)s"
        super().__init__(fmt if journald else "%(asctime)s " + fmt, datefmt="%Y-%m-%dT%H:%M:%S%z")
        self.journald = journald

    def formatMessage(self, record: logging.LogRecord) -> str:
        # One line per event: a server's multi-line error text is folded; tracebacks stay below it.
        return " ".join(super().formatMessage(record).split("\n"))

    def format(self, record: logging.LogRecord) -> str:
        line = redact(super().format(record))
        if self.journald:
            # One journal entry per line: continuation lines of a traceback keep the priority.
            priority = f"<{_SYSLOG_PRIORITY.get(record.levelno, 6)}>"
            return "\n".join(priority + part for part in line.split("\n"))
        return line


def check_level(level: str) -> str:
    upper = level.upper()
    if upper not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ValueError(f"log level {level!r}: expected DEBUG, INFO, WARNING or ERROR")
    return upper


def setup(level: str = "INFO", *, stream: IO[str] | None = None) -> None:
    """Configure logging once per process: rhfs at ``level``, third parties at WARNING."""
    out = stream or sys.stderr
    handler = logging.StreamHandler(out)
    handler.setFormatter(_Formatter(under_journald(out)))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    log.setLevel(check_level(level))
    for name in THIRD_PARTY + QUIET:
        logging.getLogger(name).setLevel(logging.ERROR if name in QUIET else logging.WARNING)
    sys.excepthook = _log_uncaught
    threading.excepthook = _log_uncaught_in_thread


def _log_uncaught(
    exc_type: type[BaseException], value: BaseException, tb: TracebackType | None, where: str = ""
) -> None:
    if issubclass(exc_type, KeyboardInterrupt):
        sys.__excepthook__(exc_type, value, tb)
        return
    log.critical("uncaught exception%s: %s", where, value, exc_info=(exc_type, value, tb))


def _log_uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
    if args.exc_value is None:
        return
    name = args.thread.name if args.thread else "?"
    _log_uncaught(args.exc_type, args.exc_value, args.exc_traceback, f" in thread {name}")
