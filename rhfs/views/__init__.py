"""Views: the ``tables/`` and ``blobs/`` trees, made from the catalog and the systems' backends.

A view is a backend (traits ``holds_bytes=False``) whose files live on other backends. Views
are the only users of pyarrow. :func:`build_views` is called by
``rhfs.wiring.build_vfs``; the views reach each system through that system's
guarded backend, so traffic and faults are counted per real system, and a view
itself has no health of its own (:class:`ViewGuard`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from rhfs.backends.base import Backend
from rhfs.backends.guard import Guarded
from rhfs.backends.local import LocalBackend
from rhfs.backends.store import StoreBackend
from rhfs.config import Config, expand
from rhfs.errors import RhfsError, translate
from rhfs.stats import Stats

T = TypeVar("T")
CATALOG_TTL_SHARE = 0.5  # catalog documents are cached for this share of attr_ttl


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


def build_views(
    config: Config,
    mounts: dict[str, Guarded],
    stats: Stats,
    *,
    mountpoint: str | None = None,
    wrap_reader: Callable[..., Any] | None = None,
) -> dict[str, Guarded]:
    """The ``tables`` and ``blobs`` mounts over the given (guarded) system mounts."""
    from rhfs.catalog import open_catalog
    from rhfs.views.blobs import BlobsView
    from rhfs.views.parts import Converter
    from rhfs.views.systems import Systems
    from rhfs.views.tables import TablesView

    hidden = (mountpoint,) if mountpoint else ()

    def guard(backend: Backend) -> Guarded:
        return Guarded(backend, stats, op_timeout=config.mount.op_timeout)

    def default_store(name: str, protocol: str) -> Guarded:
        return guard(StoreBackend(name, protocol, {}))  # the provider's standard credential chain

    local = guard(LocalBackend("/", system="file", hidden=hidden))
    systems = Systems(config, dict(mounts), local, hidden, default_store=default_store)
    catalog = open_catalog(systems, config.catalog.url, ttl=config.mount.attr_ttl * CATALOG_TTL_SHARE)
    converter = Converter(expand(config.mount.cache_dir))
    default_url = config.tables.default_url
    tables = TablesView(catalog, systems, converter, default_url=default_url, wrap_reader=wrap_reader)
    blobs = BlobsView(catalog, systems, default_url=default_url, wrap_reader=wrap_reader)
    return {
        "tables": ViewGuard(tables, stats, workers=1),
        "blobs": ViewGuard(blobs, stats, workers=1),
    }


def view_of(backend: Backend) -> Any:
    """The view object behind a mount-table entry (unwrapping its guard)."""
    return getattr(backend, "inner", backend)


__all__ = ["ViewGuard", "build_views", "view_of"]
