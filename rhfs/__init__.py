"""rhfs: every cluster and bucket as one FUSE tree, with a Runhouse-style Python API.

``import rhfs as rh`` gives ``rh.folder``, ``rh.table``, ``rh.blob`` and ``rh.cluster``.
They are loaded lazily, so that ``rhfs.errors`` or ``rhfs.config`` import nothing heavy.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_API_NAMES = ("folder", "table", "blob", "cluster", "Folder", "Table", "Blob", "Cluster")


def __getattr__(name: str) -> Any:
    if name in _API_NAMES:
        from rhfs import api

        return getattr(api, name)
    raise AttributeError(f"module 'rhfs' has no attribute {name!r}")
