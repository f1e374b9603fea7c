"""The handful of object-store requests a store backend needs, one adapter per provider.

:class:`ObjectApi` is what :mod:`rhfs.backends.store` builds POSIX-like directories
on: HEAD one key, LIST one level (or a whole subtree) under a prefix, ranged GET,
PUT of a local file or of an empty marker, server-side COPY, and DELETE. Each
provider's adapter (:mod:`~rhfs.backends.s3`, :mod:`~rhfs.backends.gcs`,
:mod:`~rhfs.backends.azure`) issues exactly these requests through the fsspec
filesystem's own client, so credentials and options stay fsspec's, while the
meaning of a key (``a/`` is a key like any other) is the store's, not fsspec's.
:func:`open_object_api` gets the adapter from the protocol's provider
(:mod:`~rhfs.backends.providers`).

Invariants:
- keys are passed exactly; nothing strips, adds or merges slashes;
- ``list`` with a delimiter is one LIST request per page, never a HEAD per key;
- ``head`` of a missing key returns None; a missing bucket raises :class:`NotFound`;
- ``delete`` ignores keys that are already gone;
- a ranged ``read`` given the etag seen at open never returns bytes of another version;
- every method is a coroutine run on the adapter's ``loop``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from rhfs.backends.providers import provider_of, provider_type
from rhfs.errors import Stale, first_line

os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")  # before gcsfs is imported

T = TypeVar("T")
PARALLEL_REQUESTS = 16  # requests in flight for bulk copies and deletes


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    key: str
    size: int
    mtime: float
    etag: str | None
    is_folder: bool = False  # a folder object (Azure ``hdi_isfolder``), not a ``key/`` marker


@dataclass(frozen=True, slots=True)
class Listing:
    objects: list[ObjectInfo]
    prefixes: list[str]  # common prefixes, each ending in "/"

    @property
    def empty(self) -> bool:
        return not self.objects and not self.prefixes


class ObjectApi(Protocol):
    @property
    def loop(self) -> asyncio.AbstractEventLoop: ...

    async def buckets(self) -> list[str]: ...

    async def head(self, bucket: str, key: str) -> ObjectInfo | None: ...

    async def list_prefix(
        self, bucket: str, prefix: str, *, recursive: bool = False, limit: int | None = None
    ) -> Listing:
        """Keys under ``prefix``: one level (with common prefixes) unless ``recursive``.

        ``limit`` asks for at most one page of about that many entries.
        """
        ...

    async def read(self, bucket: str, key: str, start: int, end: int, etag: str | None = None) -> bytes:
        """Bytes ``start:end``; with ``etag``, only of that version, else :func:`stale`."""
        ...

    async def put_file(self, bucket: str, key: str, local_path: str) -> None: ...

    async def put_empty(self, bucket: str, key: str) -> None: ...

    async def copy(
        self, bucket: str, key: str, dst_bucket: str, dst_key: str, size: int | None = None
    ) -> None:
        """A server-side copy; ``size``, when known, spares a HEAD."""
        ...

    async def delete(self, bucket: str, keys: list[str]) -> None: ...


def to_epoch(value: Any) -> float:
    """Seconds since the epoch from a datetime, an RFC 3339 string or a number; 0.0 if unknown."""
    if value is None:
        return 0.0
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value.timestamp()
    if isinstance(value, str):
        try:
            return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return 0.0
    return 0.0


def stale(what: str) -> Stale:
    """The object changed since it was opened: ESTALE, rather than a mix of two versions."""
    return Stale(f"{what} changed while open")


def clean_etag(value: Any) -> str | None:
    if value is None:
        return None
    return str(value).strip('"') or None


async def bounded(calls: Iterable[Callable[[], Awaitable[T]]], limit: int = PARALLEL_REQUESTS) -> list[T]:
    """Run the calls with at most ``limit`` in flight; the first failure is raised after all end."""
    semaphore = asyncio.Semaphore(limit)

    async def one(call: Callable[[], Awaitable[T]]) -> T:
        async with semaphore:
            return await call()

    results = await asyncio.gather(*(one(c) for c in calls), return_exceptions=True)
    for r in results:
        if isinstance(r, BaseException):
            raise r
    return results  # type: ignore[return-value]


# Where a provider's filesystem passes its ``**kwargs`` on, beyond the classes of its own MRO:
# fsspec's listings cache, and s3fs's aiobotocore session (where an unknown key fails, but only
# at the first request).
_KWARGS_SINKS: dict[str, tuple[tuple[str, str], ...]] = {
    "s3": (("fsspec.dircache", "DirCache"), ("aiobotocore.session", "AioSession")),
    "gs": (("fsspec.dircache", "DirCache"),),
    "az": (("fsspec.dircache", "DirCache"),),
}
_FSSPEC_OPTIONS = frozenset({"skip_instance_cache"})  # read by fsspec's instance cache


def accepted_options(protocol: str) -> frozenset[str] | None:
    """Every option key the filesystem of an S3, GCS or Azure store takes, from its signatures;
    None for any other protocol, whose filesystem may pass any key on (nothing is checked)."""
    import importlib
    import inspect

    import fsspec

    sinks = _KWARGS_SINKS.get(provider_of(protocol))
    if sinks is None:
        return None
    cls = fsspec.get_filesystem_class(protocol)
    inits = [k.__dict__["__init__"] for k in cls.__mro__ if "__init__" in k.__dict__]
    inits += [getattr(importlib.import_module(module), name).__init__ for module, name in sinks]
    names: set[str] = set(_FSSPEC_OPTIONS)
    for init in inits:
        params = inspect.signature(init).parameters.values()
        names |= {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    names.discard("self")
    return frozenset(names)


def option_problems(protocol: str, options: dict[str, Any]) -> list[tuple[str, str]]:
    """What stops a store of ``protocol`` with ``options`` from working, found without a
    request: ``(key, what is wrong)`` for a protocol fsspec does not know (or whose package
    is not installed), and for each option its filesystem does not take."""
    import difflib

    import fsspec

    def hint(name: str, choices: list[str]) -> str:
        close = difflib.get_close_matches(name, choices, n=1, cutoff=0.6)
        return f" (did you mean '{close[0]}'?)" if close else ""

    try:
        fsspec.get_filesystem_class(protocol)
    except ImportError as e:
        return [("protocol", f"'{protocol}' needs a package that is not installed: {first_line(e)}")]
    except ValueError:
        known = sorted(fsspec.available_protocols())
        return [("protocol", f"unknown protocol '{protocol}'{hint(protocol, known)}")]
    accepted = accepted_options(protocol)
    if accepted is None:
        return []
    return [
        ("options", f"unknown key '{key}' for protocol '{protocol}'{hint(key, sorted(accepted))}")
        for key in options
        if key not in accepted
    ]


def make_filesystem(protocol: str, options: dict[str, Any]) -> Any:
    import fsspec

    opts = dict(options)
    opts.setdefault("skip_instance_cache", True)
    opts.setdefault("use_listings_cache", False)
    opts.setdefault("asynchronous", False)
    return fsspec.filesystem(protocol, **opts)


def open_object_api(protocol: str, options: dict[str, Any]) -> ObjectApi:
    """The adapter for ``protocol``; its fsspec filesystem is made now (no request is sent).

    S3, GCS and Azure get their provider's adapter; any other fsspec protocol gets the
    best-effort :class:`~rhfs.backends.generic.FsspecObjects`.
    """
    fs = make_filesystem(protocol, options)
    return provider_type(provider_of(protocol)).open_api(fs)
