"""Whole files and directory trees on one system, each spoken of by its :class:`~rhfs.tree.Location`.

- :func:`fetch` and :func:`fetch_into` are the one loop that reads a whole file into a
  local one: parallel ranged reads (``FETCH_IN_FLIGHT`` of ``FETCH_CHUNK`` bytes), each
  written at its offset. The copy routes, the VFS (an open file's old content), the
  tables view (a source to convert) and the faces all read whole files with it;
- :func:`read_bytes` reads a small file into memory and :func:`write_bytes` writes one
  from memory, by the system's own atomic upload (catalog documents, blobs, empty files);
- :func:`makedirs` and :func:`remove_tree` make and remove directory trees.

Invariants: a file that shrinks or grows while it is read is a failure, never a short
or mixed copy; a full local disk fails the read (:func:`rhfs.local_writes.pwrite_all`); after
a failed ranged read, the reads not yet started never start. Traffic is counted by the
guarded backend each read goes through. This module sits under the VFS, the transfer
layer, the catalog and the views, and imports none of them.
"""

from __future__ import annotations

import os
import tempfile
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait

from rhfs.backends.base import Entry, join
from rhfs.errors import AlreadyExists, NotFound, RhfsError
from rhfs.local_writes import pwrite_all
from rhfs.tree import Location

FETCH_CHUNK = 8 << 20
FETCH_IN_FLIGHT = 8
NOT_FOUND = (NotFound, FileNotFoundError)  # what a backend may raise for a missing path


def fetch(loc: Location, entry: Entry, local_path: str, *, mode: int = 0o600) -> None:
    """Read the whole file at ``loc`` (as ``entry`` describes it) into ``local_path``."""
    fd = os.open(local_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    try:
        fetch_into(fd, loc, entry)
    finally:
        os.close(fd)


def fetch_into(fd: int, loc: Location, entry: Entry) -> None:
    """Write the whole file at ``loc`` at the start of the open local file ``fd``."""
    reader = loc.backend.open_reader(loc.rel, entry)
    try:

        def one(offset: int) -> None:
            want = min(FETCH_CHUNK, entry.size - offset)
            data = reader.read(offset, want)
            if len(data) != want:
                raise RhfsError(
                    f"{loc.path} changed while it was read: {len(data)} bytes at {offset}, not {want}"
                )
            pwrite_all(fd, data, offset)

        offsets = range(0, entry.size, FETCH_CHUNK)
        if offsets:
            one(offsets[0])  # the first read opens the remote file once, before the others share it
        with ThreadPoolExecutor(FETCH_IN_FLIGHT, thread_name_prefix="rhfs-fetch") as pool:
            futures = [pool.submit(one, offset) for offset in offsets[1:]]
            wait(futures, return_when=FIRST_EXCEPTION)
            for future in futures:
                future.cancel()
        for future in futures:
            if not future.cancelled():
                future.result()  # the first failure, if any
    finally:
        reader.close()


def read_bytes(loc: Location, *, limit: int | None = None) -> bytes:
    """The whole content of a (small) file; RhfsError if it is larger than ``limit``."""
    entry = loc.backend.stat(loc.rel)
    if limit is not None and entry.size > limit:
        raise RhfsError(f"{loc.backend.url(loc.rel)} is too large ({entry.size} bytes, at most {limit})")
    reader = loc.backend.open_reader(loc.rel, entry)
    try:
        data = reader.read(0, entry.size)
    finally:
        reader.close()
    if len(data) != entry.size:
        raise RhfsError(f"{loc.backend.url(loc.rel)} changed while it was read")
    return data


def write_bytes(loc: Location, data: bytes) -> None:
    """Replace the file at ``loc`` with ``data``, atomically (the backend's upload of a temporary file)."""
    fd, tmp = tempfile.mkstemp(prefix="rhfs-write-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        loc.backend.upload(tmp, loc.rel)
    finally:
        os.unlink(tmp)


def makedirs(loc: Location) -> None:
    """Make the directory at ``loc`` and any missing parents (a store's bucket must exist)."""
    parts = [p for p in loc.rel.split("/") if p]
    for i in range(1, len(parts) + 1):
        sub = "/".join(parts[:i])
        try:
            if loc.backend.stat(sub).is_dir:
                continue
        except NOT_FOUND:
            pass
        try:
            loc.backend.mkdir(sub)
        except (AlreadyExists, FileExistsError):  # made meanwhile, by another process or thread
            pass


def remove_tree(loc: Location) -> None:
    """Remove ``loc`` and everything under it; a missing path is already removed."""
    backend = loc.backend
    try:
        entry = backend.stat(loc.rel)
    except NOT_FOUND:
        return
    if not entry.is_dir:
        backend.remove(loc.rel)
        return
    for child in backend.list(loc.rel):
        if child.is_dir:
            remove_tree(loc.child(child.name))
            continue
        try:
            backend.remove(join(loc.rel, child.name))
        except NOT_FOUND:
            pass
    try:
        backend.rmdir(loc.rel)
    except NOT_FOUND:
        pass
