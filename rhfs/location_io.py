"""Whole files on one system, each spoken of by its :class:`~rhfs.tree.Location`.

:func:`fetch` and :func:`fetch_into` are the one loop that reads a whole file into a
local one: parallel ranged reads (``FETCH_IN_FLIGHT`` of ``FETCH_CHUNK`` bytes), each
written at its offset. The copy routes and the VFS (an open file's old content) read
whole files with it.

Invariants: a file that shrinks or grows while it is read is a failure, never a short
or mixed copy; a full local disk fails the read (:func:`rhfs.fileio.pwrite_all`); after
a failed ranged read, the reads not yet started never start. Traffic is counted by the
guarded backend each read goes through. This module sits under the VFS and the
transfer layer, and imports neither.
"""

from __future__ import annotations

import os
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait

from rhfs.backends.base import Entry
from rhfs.errors import RhfsError
from rhfs.fileio import pwrite_all
from rhfs.tree import Location

FETCH_CHUNK = 8 << 20
FETCH_IN_FLIGHT = 8


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
