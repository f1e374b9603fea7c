"""Logging: one line per event to stderr, in a form journald understands, with secrets redacted.

The level prefix ``<N>`` lets journald (SyslogLevelPrefix, on by default) file each
line at its priority when rhfs runs under systemd; on a terminal the plain form is used.

Invariant: every registered secret is replaced by ``***`` in every record, whatever
logger wrote it (fsspec, botocore and asyncssh included).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from typing import IO

_SYSLOG_PRIORITY = {
    logging.DEBUG: 7,
    logging.INFO: 6,
    logging.WARNING: 4,
    logging.ERROR: 3,
    logging.CRITICAL: 2,
}

_secrets: set[str] = set()
_secrets_lock = threading.Lock()


def register_secret(value: str) -> None:
    if value and len(value) >= 4:
        with _secrets_lock:
            _secrets.add(value)


def redact(text: str) -> str:
    for secret in sorted(_secrets, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, "***")
    return text


class _Formatter(logging.Formatter):
    def __init__(self, journald: bool) -> None:
        super().__init__("%(levelname)s %(name)s: %(message)s")
        self.journald = journald

    def format(self, record: logging.LogRecord) -> str:
        line = redact(super().format(record))
        if self.journald:
            return f"<{_SYSLOG_PRIORITY.get(record.levelno, 6)}>{line}"
        return line


def setup(level: str = "INFO", *, stream: IO[str] | None = None) -> None:
    """Configure the root logger once per process. Third-party loggers stay at WARNING."""
    journald = bool(os.environ.get("JOURNAL_STREAM") or os.environ.get("INVOCATION_ID"))
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(_Formatter(journald))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    logging.getLogger("rhfs").setLevel(level.upper())
    for noisy in ("mfusepy", "fsspec", "s3fs", "gcsfs", "adlfs", "asyncssh", "botocore", "azure", "urllib3"):
        logging.getLogger(noisy).setLevel(
            logging.ERROR if noisy in ("asyncssh", "azure") else logging.WARNING
        )
