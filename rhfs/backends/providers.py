"""Which provider serves a store, and what copy routes and recovery ask of one.

- :data:`PROVIDER_OF` is the one map from fsspec protocols to providers (``s3``,
  ``gs``, ``az``). It picks a store's adapters, and :mod:`rhfs.urls` matches a URL's
  protocol to a configured store by it. Any other protocol is served by the generic
  adapter (:mod:`~rhfs.backends.generic`, provider ``fsspec``).
- :class:`Provider` is one store's provider knowledge, reached as
  :attr:`StoreBackend.provider <rhfs.backends.store.StoreBackend.provider>`: whether
  another store's account is the same, the provider's own server-side copy, HTTP
  requests that someone without the credentials can run (:mod:`~rhfs.backends.signed`),
  and aborting what unfinished uploads left on the server. It also makes the store's
  :class:`~rhfs.backends.object_api.ObjectApi`. Each provider module (``s3``, ``gcs``,
  ``azure``, ``generic``) holds one subclass; :func:`provider_type` names them all.

Invariants:
- what a provider cannot do raises :class:`rhfs.errors.CantCopy`, so that the caller
  falls back (these defaults are the generic adapter's whole behaviour);
- nothing logs or puts into an exception message a URL or a header: they carry
  signatures or tokens;
- a failed multipart copy or plan is aborted, so no partial object appears;
- every method is synchronous; the store's event loop does the requests.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from rhfs.backends.signed import HttpRequest, WritePlan
from rhfs.errors import CantCopy

if TYPE_CHECKING:
    from rhfs.backends.object_api import ObjectApi
    from rhfs.backends.store import StoreBackend

# Data Lake Gen1 (``adl``) is retired, and adlfs no longer serves it (fsspec's registry points
# to ``az://``): it stays an alias of Azure, so that ``adl://`` URLs still find an ``az`` store.
PROVIDER_OF = {
    "s3": "s3",
    "s3a": "s3",
    "gs": "gs",
    "gcs": "gs",
    "az": "az",
    "abfs": "az",
    "abfss": "az",
    "adl": "az",
}
GENERIC = "fsspec"  # the provider of every other protocol


def provider_of(protocol: str) -> str:
    """The provider that serves ``protocol``: ``s3``, ``gs``, ``az``, or ``fsspec``."""
    return PROVIDER_OF.get(protocol, GENERIC)


def split_object(path: str) -> tuple[str, str]:
    """``bucket/key`` as ``(bucket, key)``; CantCopy for a bucket or the root."""
    bucket, _, key = path.partition("/")
    if not key:
        raise CantCopy(f"{path} is not an object")
    return bucket, key


class Provider:
    """One store's provider: what it can do beyond the Backend protocol.

    Paths are the store's ``bucket/key``. This base class can do nothing: every copy
    and signature raises CantCopy, and no upload leaves anything to abort.
    """

    name: ClassVar[str]
    single_put_limit: ClassVar[int | None] = None  # bytes one signed PUT may carry; None: any size

    def __init__(self, store: StoreBackend) -> None:
        self.store = store

    @property
    def fs(self) -> Any:
        """The store's fsspec filesystem, made on first use (no request is sent)."""
        return getattr(self.store.api, "fs", None)

    @staticmethod
    def open_api(fs: Any) -> ObjectApi:
        """The store's :class:`~rhfs.backends.object_api.ObjectApi` over the fsspec filesystem ``fs``."""
        raise NotImplementedError

    def same_account(self, other: Provider) -> bool:
        """Can this store's credentials copy ``other``'s objects server-side (same provider,
        endpoint and keys)?"""
        if other is self:
            return True
        return self.store.protocol == other.store.protocol and self.store.options == other.store.options

    def server_copy(self, src: str, dst: str, size: int) -> None:
        """Copy ``src`` to ``dst`` inside the store's account, without the bytes leaving it."""
        split_object(src)
        split_object(dst)
        raise CantCopy(f"{self.store.system}: no server-side copy for protocol {self.store.protocol}")

    def read_request(self, path: str, expires: int) -> HttpRequest:
        """A GET of the whole object (a ``Range`` header may be added) that needs no other credential."""
        split_object(path)
        raise CantCopy(f"{self.store.system}: no signed requests for protocol {self.store.protocol}")

    def write_plan(self, path: str, size: int, expires: int) -> WritePlan:
        """Requests that create the object ``path`` of ``size`` bytes; nothing appears before they all end."""
        split_object(path)
        raise CantCopy(f"{self.store.system}: no signed requests for protocol {self.store.protocol}")

    def abort_unfinished_uploads(self, path: str) -> int:
        """Abort what unfinished uploads of exactly ``path`` left on the server; how many."""
        return 0


def provider_type(name: str) -> type[Provider]:
    """The :class:`Provider` subclass of the provider ``name`` (any unknown name: the generic one)."""
    if name == "s3":
        from rhfs.backends.s3 import S3Provider

        return S3Provider
    if name == "gs":
        from rhfs.backends.gcs import GcsProvider

        return GcsProvider
    if name == "az":
        from rhfs.backends.azure import AzureProvider

        return AzureProvider
    from rhfs.backends.generic import FsspecProvider

    return FsspecProvider
