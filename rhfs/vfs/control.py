"""``.rhfs/``: read-only control files generated from the daemon's live state.

Files:
- ``status.json``: the daemon (pid, mount point, config file, version, uptime) and
  each system of the tree: its kind, health (``ok``, ``down``, or ``unknown`` before its
  first call), last error, latency (a moving average of its calls, in ms) and, for a
  store with configured buckets, each bucket's state and last error; plus what the
  daemon adds (its check of every system at start), and the uploads kept under
  ``cache_dir/failed/`` (``failed_uploads``, :mod:`rhfs.vfs.kept`);
- ``stats.json``: ops, errors by errno, copies by route, and bytes read, written
  and relayed per system;
- ``version``: ``rhfs X.Y.Z``;
- ``config.toml``: the effective configuration, defaults included, with every
  secret replaced by ``***``.

Their content is generated at each open, so they are served with direct I/O
(a reader never sees a stale size). Nothing under ``.rhfs`` can be written.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Collection
from typing import Any

import tomli_w

from rhfs import __version__
from rhfs.backends.base import Abilities, BytesReader, Entry, Traits
from rhfs.config import Config, drop_none, expand, redacted
from rhfs.errors import NotADirectory, NotFound, ReadOnly
from rhfs.stats import Stats
from rhfs.vfs import kept

CONTROL_MOUNT = ".rhfs"


class ControlView:
    traits = Traits(family="control", writable=False, holds_bytes=False)
    abilities = Abilities()
    system = CONTROL_MOUNT

    def __init__(
        self,
        stats: Stats,
        config: Config,
        extra_status: Callable[[], dict[str, Any]] | None = None,
        *,
        daemon: dict[str, Any] | None = None,
        systems: Collection[str] | None = None,
    ) -> None:
        """``daemon``: what status.json says of the daemon serving the tree, beyond its pid and
        version (its mount point, config file, ...); None in-process, where no daemon serves it.
        ``systems``: the systems status.json shows, those of the tree (None: every one counted)."""
        self.systems = None if systems is None else frozenset(systems)
        self.stats = stats
        self.config = config
        self.extra_status = extra_status
        self.daemon: dict[str, Any] = {"pid": os.getpid(), "version": __version__, **(daemon or {})}
        self._files: dict[str, Callable[[], bytes]] = {
            "status.json": self._status,
            "stats.json": lambda: _json(self.stats.snapshot()),
            "version": lambda: f"rhfs {__version__}\n".encode(),
            "config.toml": lambda: tomli_w.dumps(drop_none(redacted(self.config))).encode(),
        }

    def _status(self) -> bytes:
        return _json(self.status_document())

    def status_document(self) -> dict[str, Any]:
        """What status.json holds, as a dict (the metrics endpoint serves it too)."""
        now = time.time()
        systems = {}
        for name, health in self.stats.status().items():
            if health.get("kind") == self.traits.family:
                continue
            if self.systems is not None and name not in self.systems:
                continue  # counted, but not in the tree: the host's own `file` system, say
            if health.get("last_ok_at") is None and health.get("last_error_at") is None:
                health = {**health, "health": "unknown"}
            systems[name] = health
        status: dict[str, Any] = {
            "time": now,
            "daemon": {**self.daemon, "uptime_s": round(now - self.stats.started_at, 3)},
            "systems": systems,
            "failed_uploads": kept.summary(kept.failed_dir(expand(self.config.mount.cache_dir))),
        }
        if self.extra_status:
            status.update(self.extra_status())
        return status

    def _entry(self, name: str) -> Entry:
        return Entry(
            name=name, is_dir=False, size=len(self._files[name]()), mtime=time.time(), direct_io=True
        )

    def stat(self, path: str) -> Entry:
        if path == "":
            return Entry(name="", is_dir=True, mode=0o555, mtime=self.stats.started_at)
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
