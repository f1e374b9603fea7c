"""What copy routes need from an object store beyond the Backend protocol.

- :func:`same_account`: may one store's credentials copy objects of the other server-side?
- :func:`server_copy`: the provider's own copy. On S3 an object of ``PARALLEL_COPY_FROM``
  bytes or more is copied with UploadPartCopy, ``COPY_PARTS_IN_FLIGHT`` parts at a
  time (one CopyObject is limited to 5 GiB and runs as one sequential stream on the
  server); smaller ones with one CopyObject. GCS uses ``rewriteTo`` and Azure Copy
  Blob from URL, waiting until it is done (both through the store's own adapter).
  S3 copy requests go through a second client of the same account whose read timeout
  is ``COPY_READ_TIMEOUT``: the server copies before it answers (a CopyObject,
  UploadPartCopy or CompleteMultipartUpload of a large object can take longer than the
  store client's read timeout, 15 s by default), and a request retried after such a
  timeout would race the one still running (a second UploadPartCopy of the same part,
  or a second completion of an upload already completed, fails, and the copy with it).
- :func:`read_request` and :func:`write_plan`: HTTP requests that someone else (a
  command on a cluster) can run to read or write one object without the store's
  credentials: S3 presigned URLs, GCS resumable-upload sessions and media URLs, Azure
  SAS URLs. A write too big for one request is a multipart plan whose parts the
  remote side uploads and whose completion the daemon does (:meth:`WritePlan.finish`).

Invariants:
- nothing here logs or puts into an exception message a URL or a header: they
  carry signatures or tokens; :class:`HttpRequest` hides them from ``repr``;
- a failed multipart copy or plan is aborted, so no partial object appears;
- every function is synchronous; the store's event loop does the requests.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import threading
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from rhfs.backends.objects import make_filesystem
from rhfs.backends.store import StoreBackend
from rhfs.errors import CantCopy, NotFound

T = TypeVar("T")

PARALLEL_COPY_FROM = 1 << 30  # S3 objects this big or bigger are copied with parallel UploadPartCopy
COPY_PARTS_IN_FLIGHT = 8
COPY_READ_TIMEOUT = 900.0  # seconds an S3 copy request may wait for its answer (the guard bounds the copy)
MIN_COPY_PART = 64 << 20
MAX_PART = 5 << 30
MAX_PARTS = 10_000
SINGLE_PUT_LIMIT = {"s3": 5 << 30, "az": 5000 << 20}  # bytes one PUT may carry; GCS sessions: any size
MIN_UPLOAD_PART = 128 << 20
BLOB_TYPE_HEADER = {"x-ms-blob-type": "BlockBlob"}


@dataclass(frozen=True)
class HttpRequest:
    """One HTTP request; ``url`` and ``headers`` may hold a signature or a token."""

    method: str
    url: str = field(repr=False)
    headers: dict[str, str] = field(default_factory=dict, repr=False)

    def as_json(self) -> dict[str, Any]:
        return {"method": self.method, "url": self.url, "headers": dict(self.headers)}


@dataclass
class WritePlan:
    """How to write one object: ``parts`` of ``(offset, length, request)``, then ``finish``.

    A one-part plan's request writes the whole object and needs no finish. For more
    parts, the runner returns each part's ``ETag`` response header and the daemon
    completes the object with :meth:`finish`, or removes the parts with :meth:`abort`.
    """

    parts: list[tuple[int, int, HttpRequest]]
    _finish: Callable[[list[str]], None] | None = field(default=None, repr=False)
    _abort: Callable[[], None] | None = field(default=None, repr=False)

    @property
    def single(self) -> bool:
        return len(self.parts) == 1

    def finish(self, etags: list[str]) -> None:
        if self._finish is not None:
            self._finish(etags)

    def abort(self) -> None:
        if self._abort is not None:
            self._abort()


def _split(path: str) -> tuple[str, str]:
    bucket, _, key = path.partition("/")
    if not key:
        raise CantCopy(f"{path} is not an object")
    return bucket, key


def _run(store: StoreBackend, fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
    return _sync(store.api.loop, fn, *args, **kwargs)


def _sync(loop: asyncio.AbstractEventLoop, fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
    from fsspec.asyn import sync as fsspec_sync

    result: T = fsspec_sync(loop, fn, *args, **kwargs)
    return result


def _fs(store: StoreBackend) -> Any:
    return getattr(store.api, "fs", None)


_copy_clients: weakref.WeakKeyDictionary[StoreBackend, Any] = weakref.WeakKeyDictionary()
_copy_clients_lock = threading.Lock()


def _copy_fs(store: StoreBackend) -> Any:
    """The store's S3 account through a client that waits ``COPY_READ_TIMEOUT`` for an answer."""
    with _copy_clients_lock:
        fs = _copy_clients.get(store)
        if fs is None:
            options = dict(store.options)
            config = dict(options.get("config_kwargs") or {})
            config["read_timeout"] = max(COPY_READ_TIMEOUT, float(config.get("read_timeout") or 0))
            options["config_kwargs"] = config
            session = getattr(_fs(store), "session", None)
            if session is not None:  # its service model is loaded: no second load at the first copy
                options["session"] = session
            fs = _copy_clients[store] = make_filesystem(store.protocol, options)
        return fs


def provider(store: StoreBackend) -> str:
    return str(getattr(store.api, "provider", "?"))


def same_account(a: StoreBackend, b: StoreBackend) -> bool:
    """Can ``b``'s credentials copy ``a``'s objects server-side (same provider, endpoint and keys)?"""
    if a is b:
        return True
    return a.protocol == b.protocol and a.options == b.options


# -- server-side copies -------------------------------------------------------------------
def server_copy(store: StoreBackend, src: str, dst: str, size: int) -> None:
    """Copy ``src`` to ``dst`` (``bucket/key``) inside ``store``'s account, without the bytes leaving it."""
    (sb, sk), (db, dk) = _split(src), _split(dst)
    if provider(store) == "s3":
        fs = _copy_fs(store)
        if size >= PARALLEL_COPY_FROM:
            _sync(fs.loop, _s3_parallel_copy, fs, sb, sk, db, dk, size)
        else:
            source = {"Bucket": sb, "Key": sk}
            _sync(fs.loop, fs._call_s3, "copy_object", Bucket=db, Key=dk, CopySource=source)
        return
    if provider(store) == "fsspec":
        raise CantCopy(f"{store.system}: no server-side copy for protocol {store.protocol}")
    try:
        _run(store, store.api.copy, sb, sk, db, dk, size=size)
    except NotFound:
        raise  # the copy never started: the destination is as it was
    except BaseException:
        if provider(store) == "az":  # a Copy Blob that failed once started leaves a broken blob
            _run(store, store.api.delete, db, [dk])
        raise


def copy_part_size(size: int) -> int:
    part = max(MIN_COPY_PART, math.ceil(size / COPY_PARTS_IN_FLIGHT), math.ceil(size / MAX_PARTS))
    return min(part, MAX_PART)


async def _s3_parallel_copy(fs: Any, sb: str, sk: str, db: str, dk: str, size: int) -> None:
    part = copy_part_size(size)
    mpu = await fs._call_s3("create_multipart_upload", Bucket=db, Key=dk)
    upload_id = mpu["UploadId"]
    semaphore = asyncio.Semaphore(COPY_PARTS_IN_FLIGHT)

    async def one(number: int, start: int) -> dict[str, Any]:
        end = min(start + part, size) - 1
        async with semaphore:
            out = await fs._call_s3(
                "upload_part_copy",
                Bucket=db,
                Key=dk,
                PartNumber=number,
                UploadId=upload_id,
                CopySource={"Bucket": sb, "Key": sk},
                CopySourceRange=f"bytes={start}-{end}",
            )
        return {"PartNumber": number, "ETag": out["CopyPartResult"]["ETag"]}

    try:
        parts = await asyncio.gather(*(one(i + 1, off) for i, off in enumerate(range(0, size, part))))
        await fs._call_s3(
            "complete_multipart_upload",
            Bucket=db,
            Key=dk,
            UploadId=upload_id,
            MultipartUpload={"Parts": list(parts)},
        )
    except BaseException:
        await fs._call_s3("abort_multipart_upload", Bucket=db, Key=dk, UploadId=upload_id)
        raise


# -- requests a remote command can run ------------------------------------------------------
def read_request(store: StoreBackend, path: str, expires: int) -> HttpRequest:
    """A GET of the whole object (a ``Range`` header may be added) that needs no other credential."""
    bucket, key = _split(path)
    kind, fs = provider(store), _fs(store)
    if kind == "s3":
        url = _run(store, fs._url, f"{bucket}/{key}", expires=expires)
        return HttpRequest("GET", url)
    if kind == "gs":
        headers: dict[str, str] = {}
        fs.credentials.apply(headers)  # a short-lived bearer token, or nothing for anonymous access
        return HttpRequest("GET", fs.url(f"{bucket}/{key}"), headers)
    if kind == "az":
        return HttpRequest("GET", _azure_sas_url(store, bucket, key, expires, write=False))
    raise CantCopy(f"{store.system}: no signed requests for protocol {store.protocol}")


def write_plan(store: StoreBackend, path: str, size: int, expires: int) -> WritePlan:
    """Requests that create the object ``path`` of ``size`` bytes; nothing appears before they all end."""
    bucket, key = _split(path)
    kind, fs = provider(store), _fs(store)
    if kind == "s3":
        if size <= SINGLE_PUT_LIMIT["s3"]:
            url = _run(store, fs._url, f"{bucket}/{key}", expires=expires, client_method="put_object")
            return WritePlan([(0, size, HttpRequest("PUT", url))])
        return _run(store, _s3_multipart_plan, store, fs, bucket, key, size, expires)
    if kind == "gs":
        from gcsfs.core import initiate_upload

        session = _run(store, initiate_upload, fs, bucket, key)
        return WritePlan([(0, size, HttpRequest("PUT", session))])
    if kind == "az":
        if size > SINGLE_PUT_LIMIT["az"]:
            raise CantCopy(f"{store.system}: a blob over {SINGLE_PUT_LIMIT['az']} bytes needs Put Block")
        url = _azure_sas_url(store, bucket, key, expires, write=True)
        return WritePlan([(0, size, HttpRequest("PUT", url, dict(BLOB_TYPE_HEADER)))])
    raise CantCopy(f"{store.system}: no signed requests for protocol {store.protocol}")


def upload_part_size(size: int) -> int:
    return min(MAX_PART, max(MIN_UPLOAD_PART, math.ceil(size / MAX_PARTS)))


async def _s3_multipart_plan(
    store: StoreBackend, fs: Any, bucket: str, key: str, size: int, expires: int
) -> WritePlan:
    part = upload_part_size(size)
    mpu = await fs._call_s3("create_multipart_upload", Bucket=bucket, Key=key)
    upload_id = mpu["UploadId"]
    s3 = await fs.get_s3(bucket)
    parts = []
    for number, offset in enumerate(range(0, size, part), start=1):
        url = await s3.generate_presigned_url(
            ClientMethod="upload_part",
            Params={"Bucket": bucket, "Key": key, "UploadId": upload_id, "PartNumber": number},
            ExpiresIn=expires,
        )
        parts.append((offset, min(part, size - offset), HttpRequest("PUT", url)))

    def finish(etags: list[str]) -> None:
        listing = [{"PartNumber": i, "ETag": etag} for i, etag in enumerate(etags, start=1)]
        _run(
            store,
            fs._call_s3,
            "complete_multipart_upload",
            Bucket=bucket,
            Key=key,
            UploadId=upload_id,
            MultipartUpload={"Parts": listing},
        )

    def abort() -> None:
        _run(store, fs._call_s3, "abort_multipart_upload", Bucket=bucket, Key=key, UploadId=upload_id)

    return WritePlan(parts, finish, abort)


def _azure_sas_url(store: StoreBackend, bucket: str, key: str, expires: int, *, write: bool) -> str:
    from azure.core.utils import parse_connection_string
    from azure.storage.blob import BlobSasPermissions, generate_blob_sas

    fs = _fs(store)
    if getattr(fs, "connection_string", None):
        parts = parse_connection_string(fs.connection_string)
        account, account_key = parts.get("accountname"), parts.get("accountkey")
    else:
        account, account_key = getattr(fs, "account_name", None), getattr(fs, "account_key", None)
    if not account or not account_key:
        raise CantCopy(f"{store.system}: SAS URLs need the account key")
    permission = BlobSasPermissions(create=True, write=True) if write else BlobSasPermissions(read=True)
    sas = generate_blob_sas(
        account_name=account,
        container_name=bucket,
        blob_name=key,
        account_key=account_key,
        permission=permission,
        expiry=dt.datetime.now(dt.UTC) + dt.timedelta(seconds=expires),
    )
    blob_url: str = store.api.client.get_blob_client(bucket, key).url  # type: ignore[attr-defined]
    return f"{blob_url}?{sas}"


__all__ = [
    "HttpRequest",
    "WritePlan",
    "copy_part_size",
    "provider",
    "read_request",
    "same_account",
    "server_copy",
    "write_plan",
]
