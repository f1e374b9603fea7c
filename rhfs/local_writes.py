"""Local file writes that never stop part way in silence.

``os.pwrite`` may write only part of its data without an error (a full disk, a file
size limit); only the next call fails. Every local write of bytes rhfs must keep
whole (spools, fetched copies) goes through :func:`pwrite_all`, which writes all of
them or raises.
"""

from __future__ import annotations

import errno
import os


def pwrite_all(fd: int, data: bytes | memoryview, offset: int) -> int:
    """Write all of ``data`` at ``offset``, or raise ``OSError`` (ENOSPC, EFBIG, ...)."""
    view = memoryview(data)
    total = len(view)
    while view:
        written = os.pwrite(fd, view, offset)
        if written <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        view, offset = view[written:], offset + written
    return total
