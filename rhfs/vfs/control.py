"""``.rhfs/``: read-only control files generated from the daemon's live state.

Files: ``status.json`` (each system's kind, health, last error, latency),
``stats.json`` (ops, errors by errno, bytes per system, copies by route),
``version``, and ``config.toml`` with every secret redacted. Their content is
generated at each open, so they are served with direct I/O.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import tomli_w

from rhfs import __version__
from rhfs.backends.base import Entry
from rhfs.config import Config, redacted
from rhfs.errors import NotADirectory, NotFound, ReadOnly
from rhfs.stats import Stats


class BytesReader:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def read(self, offset: int, size: int) -> bytes:
        return self.data[offset : offset + size]

    def close(self) -> None:
        pass


class ControlView:
    kind = "control"
    system = ".rhfs"

    def __init__(self, stats: Stats, config: Config, extra_status: Callable[[], dict] | None = None) -> None:
        self.stats = stats
        self.config = config
        self.extra_status = extra_status
        self._files: dict[str, Callable[[], bytes]] = {
            "status.json": self._status,
            "stats.json": lambda: _json(self.stats.snapshot()),
            "version": lambda: f"rhfs {__version__}\n".encode(),
            "config.toml": lambda: tomli_w.dumps(_drop_none(redacted(self.config))).encode(),  # type: ignore[arg-type]
        }

    def _status(self) -> bytes:
        status = {"time": time.time(), "systems": self.stats.status()}
        if self.extra_status:
            status.update(self.extra_status())
        return _json(status)

    def _entry(self, name: str) -> Entry:
        return Entry(
            name=name, is_dir=False, size=len(self._files[name]()), mtime=time.time(), direct_io=True
        )

    def stat(self, path: str) -> Entry:
        if path == "":
            return Entry(name="", is_dir=True, mode=0o555)
        if path not in self._files:
            raise NotFound(path)
        return self._entry(path)

    def list(self, path: str) -> list[Entry]:
        if path != "":
            raise NotADirectory(path) if path in self._files else NotFound(path)
        return [self._entry(name) for name in sorted(self._files)]

    def open_reader(self, path: str, entry: Entry) -> BytesReader:
        if path not in self._files:
            raise NotFound(path)
        return BytesReader(self._files[path]())

    def _refuse(self, *args: object) -> None:
        raise ReadOnly(".rhfs is read-only")

    upload = remove = mkdir = rmdir = rename = _refuse

    def url(self, path: str) -> str:
        return f"rhfs-control:{path}"


def _json(obj: object) -> bytes:
    return (json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n").encode()


def _drop_none(obj: object) -> object:
    if isinstance(obj, dict):
        return {k: _drop_none(v) for k, v in obj.items() if v is not None}
    if isinstance(obj, list | tuple):
        return [_drop_none(v) for v in obj]
    return obj
