"""The VFS's open handles and open files.

- Every handle the kernel holds is a :class:`Handle`, numbered from 1 (``fh``).
- Every path open for writing has one :class:`~rhfs.vfs.open_files.OpenFile`, shared by all
  its handles (as in rclone's VFS) and counted by ``refs``; it leaves the table when its
  last handle is released, or when its name goes (unlink, rename over it): then it is
  *detached* and its writers write to nothing visible.
- Whoever uses an open file takes its reference in the same step as it finds it
  (:meth:`HandleTable.join`, :meth:`HandleTable.share`): a file found without one could be
  discarded by a concurrent last release. Each time an open file leaves the table its
  path's :meth:`~HandleTable.generation` moves on, so that an open which looked the path up
  before that looks again instead of making an open file from a stale answer.
- A handle open for reading gets its reader on first use; readers of remote systems read
  through :class:`~rhfs.vfs.readahead.ReadAhead`.

Lock order (the whole thread model is in :mod:`rhfs.vfs.core`): ``OpenFile.lock``, then
:attr:`HandleTable.lock`. The table's lock guards both
tables, every ``refs`` count, the generations and each handle's reader slot; it is never
held during a backend call (a reader is opened outside it), and no lock is taken under it.
``OpenFile.lock`` may be held during a backend call (an upload); a last release holds it
from counting the references to discarding the file.
"""

from __future__ import annotations

import itertools
import logging
import posixpath
import threading
from collections.abc import Callable
from dataclasses import dataclass

from rhfs.backends.base import Entry, Reader
from rhfs.errors import BadHandle, RhfsError
from rhfs.tree import Location
from rhfs.vfs import recovery
from rhfs.vfs.open_files import OpenFile
from rhfs.vfs.readahead import DEFAULT_OP_TIMEOUT, ReadAhead

log = logging.getLogger(__name__)

GENERATION_SLOTS = 4096  # paths share a slot by hash: a shared slot only costs a second look-up


@dataclass
class OpenReply:
    fh: int
    keep_cache: bool = False
    direct_io: bool = False


@dataclass
class Handle:
    location: Location
    flags: int
    entry: Entry | None
    open_file: OpenFile | None = None
    reader: Reader | None = None
    has_read: bool = False  # a read has returned bytes of ``entry``'s version


class HandleTable:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.handles: dict[int, Handle] = {}
        self.open_files: dict[str, OpenFile] = {}
        self._fh_counter = itertools.count(1)
        self._generations = [0] * GENERATION_SLOTS  # by hash of path: see generation()

    # -- handles ------------------------------------------------------------------------
    def add(self, handle: Handle) -> OpenReply:
        with self.lock:
            fh = next(self._fh_counter)
            self.handles[fh] = handle
        return OpenReply(fh)

    def handle(self, fh: int) -> Handle:
        handle = self.handles.get(fh)
        if handle is None:
            raise BadHandle(f"bad file handle {fh}")
        return handle

    def find(self, fh: int | None) -> Handle | None:
        return self.handles.get(fh) if fh is not None else None

    def pop(self, fh: int) -> Handle | None:
        with self.lock:
            return self.handles.pop(fh, None)

    # -- open files ---------------------------------------------------------------------
    def open_file(self, path: str) -> OpenFile | None:
        """The open file of ``path``, without a reference: for a look at its state only."""
        with self.lock:
            return self.open_files.get(path)

    def join(self, path: str) -> OpenFile | None:
        """The open file of ``path`` with one more reference, or None if none is open.

        Taking the reference in the same step as the look-up is what keeps a file being
        released from being discarded under its new user.
        """
        with self.lock:
            open_file = self.open_files.get(path)
            if open_file is not None:
                open_file.refs += 1
            return open_file

    def is_open(self, path: str) -> bool:
        """Is any handle open on ``path``?"""
        with self.lock:
            return path in self.open_files or any(h.location.path == path for h in self.handles.values())

    def generation(self, path: str) -> int:
        """A count that changes whenever an open file of ``path`` leaves the table."""
        with self.lock:
            return self._generations[hash(path) % GENERATION_SLOTS]

    def share(
        self, loc: Location, entry: Entry | None, spool_dir: str, seen: int
    ) -> tuple[OpenFile, bool] | None:
        """The open file of ``loc`` with one more reference, made now from ``entry`` if none is open.

        ``entry`` is what the caller looked up (None: no such file) after reading the
        :meth:`generation` ``seen``. If an open file of the path has left the table since,
        its upload may have changed what ``entry`` says: None is returned, and the caller
        looks again. Returns the open file and whether it was made now.
        """
        with self.lock:
            open_file = self.open_files.get(loc.path)
            if open_file is not None:
                open_file.refs += 1
                return open_file, False
            if self._generations[hash(loc.path) % GENERATION_SLOTS] != seen:
                return None
            open_file = OpenFile(loc, spool_dir, exists=entry is not None, entry=entry)
            open_file.refs = 1
            self.open_files[loc.path] = open_file
            return open_file, True

    def drop_ref(self, open_file: OpenFile) -> bool:
        """One reference fewer; True if it was the last (the file then leaves the table)."""
        with self.lock:
            open_file.refs -= 1
            last = open_file.refs == 0
            if last:
                self._remove(open_file)
        return last

    def detach(self, open_file: OpenFile) -> None:
        """The file's name is gone: its handles write to nothing visible from now on."""
        with self.lock:
            self._remove(open_file)
        open_file.unlinked = True

    def _remove(self, open_file: OpenFile) -> None:
        """Take ``open_file`` out of the table, if it is there (lock held)."""
        if self.open_files.get(open_file.path) is open_file:
            del self.open_files[open_file.path]
            self._generations[hash(open_file.path) % GENERATION_SLOTS] += 1

    def all_open_files(self) -> list[OpenFile]:
        with self.lock:
            return list(self.open_files.values())

    def in_directory(self, path: str) -> dict[str, OpenFile]:
        """Files open for writing directly in ``path`` (not detached), by name."""
        prefix = path.rstrip("/") + "/"
        with self.lock:
            return {
                p[len(prefix) :]: of
                for p, of in self.open_files.items()
                if posixpath.dirname(p) == path and not of.unlinked
            }

    def pending_names(self, path: str) -> tuple[str, ...]:
        with self.lock:
            return tuple(sorted(p for p, of in self.open_files.items() if posixpath.dirname(p) == path))

    def pending_under(self, path: str) -> bool:
        """Is a file below ``path`` open for writing (and so shown, perhaps not yet uploaded)?"""
        prefix = path.rstrip("/") + "/"
        with self.lock:
            return any(p.startswith(prefix) and not of.unlinked for p, of in self.open_files.items())

    def at_or_under(self, path: str) -> list[OpenFile]:
        prefix = path + "/"
        with self.lock:
            return [of for p, of in self.open_files.items() if p == path or p.startswith(prefix)]

    def move(
        self, old: str, new: str, resolve: Callable[[str], Location]
    ) -> tuple[list[OpenFile], list[Handle]]:
        """After a rename of ``old`` to ``new``: detach what was replaced at ``new``, re-key the
        open files and handles at or below ``old``; return those moved."""
        old_prefix, new_prefix = old + "/", new + "/"

        def moved_path(p: str) -> str | None:
            if p == old:
                return new
            return new + p[len(old) :] if p.startswith(old_prefix) else None

        with self.lock:
            replaced = [p for p in self.open_files if p == new or p.startswith(new_prefix)]
            for p in replaced:
                gone = self.open_files[p]
                self._remove(gone)
                gone.unlinked = True  # its writers now write to nothing visible
            moved_files = []
            for p in [p for p in self.open_files if moved_path(p) is not None]:
                open_file = self.open_files[p]
                self._remove(open_file)
                open_file.location = resolve(moved_path(p) or p)
                self.open_files[open_file.path] = open_file
                moved_files.append(open_file)
            moved_handles = []
            for handle in self.handles.values():
                target = moved_path(handle.location.path)
                if target is not None:
                    handle.location = resolve(target)
                    moved_handles.append(handle)
        for open_file in moved_files:
            recovery.retarget(open_file.spool_path, open_file.location)
        return moved_files, moved_handles

    # -- readers ------------------------------------------------------------------------
    def reader(self, handle: Handle, *, open_now: bool = False) -> Reader:
        """The handle's reader, made on first use; ``open_now`` opens the file on the system now."""
        if handle.reader is None:
            backend, entry = handle.location.backend, handle.entry
            assert entry is not None
            reader = backend.open_reader(handle.location.rel, entry)
            if open_now:
                reader.read(0, 0)  # a cluster's reader opens its remote file on first read
            if backend.traits.remote:  # a guard bounds each call: read-ahead's waits follow
                op_timeout = getattr(backend, "op_timeout", DEFAULT_OP_TIMEOUT)
                reader = ReadAhead(reader, entry.size, op_timeout=op_timeout)
            with self.lock:
                if handle.reader is None:
                    handle.reader = reader
                else:
                    reader.close()
        assert handle.reader is not None
        return handle.reader

    def pin_readers(self, path: str) -> None:
        """Before ``path`` is removed or replaced, open its readers' files on the system.

        On ``here`` and clusters an open file outlives its name, so readers that opened
        the file before keep reading its bytes, as on a local filesystem. (Stores answer
        ESTALE instead: their readers are tied to the version they opened.)
        """
        with self.lock:
            waiting = [
                h
                for h in self.handles.values()
                if h.location.path == path
                and h.reader is None
                and h.open_file is None
                and h.location.backend.traits.open_survives_unlink
            ]
        for handle in waiting:
            try:
                self.reader(handle, open_now=True)
            except RhfsError as e:
                log.debug("%s: could not keep a reader open: %s", path, e)
