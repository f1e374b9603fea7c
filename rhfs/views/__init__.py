"""Views: the ``tables/`` and ``blobs/`` trees, made from the catalog and the systems' backends.

A view is a backend (``holds_bytes`` False) whose files live on other systems:
:mod:`~rhfs.views.tables` and :mod:`~rhfs.views.blobs`, which find them through the
catalog's addresses and :mod:`~rhfs.views.systems`. Views are the only users of
pyarrow. ``rhfs.wiring.build_core`` makes them; they reach each system through that
system's guarded backend, so traffic and faults are counted per real system, and a
view itself has no health of its own (:class:`ViewGuard`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from rhfs.backends.guard import Guarded
from rhfs.errors import RhfsError, translate

T = TypeVar("T")


class ViewGuard(Guarded):
    """The mount table's wrapper for a view: errors are translated, calls run inline.

    Health and time limits belong to the systems a view reads from; they are
    already guarded, so a view never marks itself down or adds a second timeout.
    """

    def call(self, what: str, fn: Callable[..., T], *args: Any) -> T:
        try:
            return fn(*args)
        except RhfsError:
            raise
        except Exception as e:
            raise translate(e) from e


__all__ = ["ViewGuard"]
