"""S3 (and S3-compatible servers): the :class:`~rhfs.backends.object_api.ObjectApi` and the
:class:`~rhfs.backends.providers.Provider` of an S3 store.

Every request goes through s3fs's ``_call_s3``, which signs it with s3fs's
credential chain and turns S3 errors into ``OSError``s with an errno (NoSuchKey
and NoSuchBucket become ``FileNotFoundError``).

:class:`S3Objects` invariants: a LIST is ``ListObjectsV2`` (1000 keys a page); a copy
under 5 GiB is one CopyObject, a larger one s3fs's UploadPartCopy; uploads of 32 MiB
and more are multipart, completed only at the end.

:class:`S3Provider`, for copy routes and recovery:

- a server-side copy of ``PARALLEL_COPY_FROM`` bytes or more is UploadPartCopy,
  ``COPY_PARTS_IN_FLIGHT`` parts at a time (one CopyObject is limited to 5 GiB and runs
  as one sequential stream on the server); a smaller one is one CopyObject. Copy
  requests go through a second client of the same account whose read timeout is
  ``COPY_READ_TIMEOUT``: the server copies before it answers (a CopyObject,
  UploadPartCopy or CompleteMultipartUpload of a large object can take longer than the
  store client's read timeout, 15 s by default), and a request retried after such a
  timeout would race the one still running (a second UploadPartCopy of the same part,
  or a second completion of an upload already completed, fails, and the copy with it);
- requests for others are presigned URLs: a GET, a PUT of up to 5 GiB, or else a
  multipart plan of presigned UploadPart URLs that the daemon completes or aborts;
- a multipart upload never completed or aborted stays on the server, invisible to
  listings but billed, until a lifecycle rule removes it: those a killed upload of a
  key left are aborted (:meth:`S3Provider.abort_unfinished_uploads`). A failed
  parallel copy aborts its own.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import os
import threading
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from rhfs.backends.object_api import (
    Listing,
    ObjectInfo,
    bounded,
    clean_etag,
    make_filesystem,
    stale,
    to_epoch,
)
from rhfs.backends.providers import Provider, split_object
from rhfs.backends.s3_presigned import Presigned, RawBody, error_text
from rhfs.backends.signed import HttpRequest, WritePlan
from rhfs.errors import NotFound

if TYPE_CHECKING:
    from rhfs.backends.store import StoreBackend

T = TypeVar("T")
SINGLE_COPY_LIMIT = 5 << 30
DIRECT_PUT = 4 << 20  # files up to this size are uploaded by one presigned PUT
UPLOAD_PART = 16 << 20
DELETE_BATCH = 1000
PARALLEL_COPY_FROM = 1 << 30  # objects this big or bigger are copied with parallel UploadPartCopy
COPY_PARTS_IN_FLIGHT = 8
COPY_READ_TIMEOUT = 900.0  # seconds a copy request may wait for its answer (the guard bounds the copy)
MIN_COPY_PART = 64 << 20
MAX_PART = 5 << 30
MAX_PARTS = 10_000
MIN_UPLOAD_PART = 128 << 20


def _status(exc: BaseException) -> int | None:
    """The HTTP status behind an error s3fs translated (its cause is botocore's ClientError)."""
    response = getattr(exc.__cause__, "response", None) or {}
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return int(status) if status else None


def fast_timestamp(value: Any) -> Any:
    """ISO 8601 times (every LIST entry) without dateutil, which costs more than the rest of
    parsing a listing; anything else as botocore parses it."""
    if isinstance(value, str) and len(value) >= 20 and value[10] == "T":
        try:
            return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            pass
    from botocore.utils import parse_timestamp

    return parse_timestamp(value)


class S3Objects:
    def __init__(self, fs: Any) -> None:
        self.fs = fs
        self.page_size = 1000  # keys per LIST page (S3's maximum)
        if getattr(fs, "session", None) is None:  # s3fs uses a session it is given
            from aiobotocore.session import AioSession

            fs.session = AioSession(**getattr(fs, "kwargs", {}))
            parsers = fs.session.get_component("response_parser_factory")
            parsers.set_parser_defaults(timestamp_parser=fast_timestamp)
        self.presigned = Presigned(fs)  # reads and small uploads without botocore's work per request

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        loop: asyncio.AbstractEventLoop = self.fs.loop
        return loop

    async def buckets(self) -> list[str]:
        out = await self.fs._call_s3("list_buckets")
        return sorted(b["Name"] for b in out.get("Buckets", []))

    async def head(self, bucket: str, key: str) -> ObjectInfo | None:
        try:
            out = await self.fs._call_s3("head_object", Bucket=bucket, Key=key)
        except FileNotFoundError:
            return None
        return ObjectInfo(
            key=key,
            size=int(out.get("ContentLength") or 0),
            mtime=to_epoch(out.get("LastModified")),
            etag=clean_etag(out.get("ETag")),
        )

    async def list_prefix(
        self, bucket: str, prefix: str, *, recursive: bool = False, limit: int | None = None
    ) -> Listing:
        objects: list[ObjectInfo] = []
        prefixes: list[str] = []
        kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix, "MaxKeys": limit or self.page_size}
        if not recursive:
            kwargs["Delimiter"] = "/"
        while True:
            try:
                page = await self.fs._call_s3("list_objects_v2", **kwargs)
            except FileNotFoundError:
                raise NotFound(f"no bucket {bucket}") from None
            for item in page.get("Contents", []) or []:
                objects.append(
                    ObjectInfo(
                        key=item["Key"],
                        size=int(item.get("Size") or 0),
                        mtime=to_epoch(item.get("LastModified")),
                        etag=clean_etag(item.get("ETag")),
                    )
                )
            prefixes.extend(p["Prefix"] for p in page.get("CommonPrefixes", []) or [])
            token = page.get("NextContinuationToken")
            if limit is not None or not page.get("IsTruncated") or not token:
                return Listing(objects, prefixes)
            kwargs["ContinuationToken"] = token

    async def read(self, bucket: str, key: str, start: int, end: int, etag: str | None = None) -> bytes:
        response = await self.presigned.get(bucket, key, start, end, etag)
        if response is not None:
            try:
                data: bytes = await response.read()
                return data
            except Exception as e:  # cut short: once more through botocore, which retries
                self.presigned.missed(f"GET of {bucket}/{key} broke: {error_text(e)}")
            finally:
                response.release()
        match = {"IfMatch": f'"{etag}"'} if etag else {}
        try:
            out = await self.fs._call_s3(
                "get_object", Bucket=bucket, Key=key, Range=f"bytes={start}-{end - 1}", **match
            )
        except OSError as e:
            if etag and _status(e) == 412:
                raise stale(f"{bucket}/{key}") from e
            raise
        body = out["Body"]
        try:
            data = await body.read()
        finally:
            body.close()
        return data

    async def open_stream(self, bucket: str, key: str, start: int, end: int, etag: str | None = None) -> Any:
        """One GET of bytes ``start:end``; its body is read progressively (:mod:`~rhfs.backends.streams`)."""
        response = await self.presigned.get(bucket, key, start, end, etag)
        if response is not None:
            return RawBody(response)
        match = {"IfMatch": f'"{etag}"'} if etag else {}
        try:
            out = await self.fs._call_s3(
                "get_object", Bucket=bucket, Key=key, Range=f"bytes={start}-{end - 1}", **match
            )
        except OSError as e:
            if etag and _status(e) == 412:
                raise stale(f"{bucket}/{key}") from e
            raise
        return out["Body"]

    async def put_file(self, bucket: str, key: str, local_path: str) -> None:
        if os.path.getsize(local_path) <= DIRECT_PUT:
            with open(local_path, "rb") as f:
                data = f.read()
            if await self.presigned.put(bucket, key, data):
                return
        await self.fs._put_file(local_path, f"{bucket}/{key}", chunksize=UPLOAD_PART)

    async def put_empty(self, bucket: str, key: str) -> None:
        await self.fs._call_s3("put_object", Bucket=bucket, Key=key, Body=b"")

    async def copy(
        self, bucket: str, key: str, dst_bucket: str, dst_key: str, size: int | None = None
    ) -> None:
        if size is not None and size <= SINGLE_COPY_LIMIT:
            await self.fs._call_s3(
                "copy_object", Bucket=dst_bucket, Key=dst_key, CopySource={"Bucket": bucket, "Key": key}
            )
        else:
            await self.fs._cp_file(f"{bucket}/{key}", f"{dst_bucket}/{dst_key}")

    async def delete(self, bucket: str, keys: list[str]) -> None:
        async def batch(chunk: list[str]) -> None:
            out = await self.fs._call_s3(
                "delete_objects",
                Bucket=bucket,
                Delete={"Objects": [{"Key": k} for k in chunk], "Quiet": True},
            )
            failed = [e for e in out.get("Errors", []) or [] if e.get("Code") != "NoSuchKey"]
            if failed:
                first = failed[0]
                raise OSError(f"deleting {first.get('Key')}: {first.get('Code')} {first.get('Message')}")

        chunks = [keys[i : i + DELETE_BATCH] for i in range(0, len(keys), DELETE_BATCH)]
        await bounded([partial(batch, c) for c in chunks])


def copy_part_size(size: int) -> int:
    part = max(MIN_COPY_PART, math.ceil(size / COPY_PARTS_IN_FLIGHT), math.ceil(size / MAX_PARTS))
    return min(part, MAX_PART)


def upload_part_size(size: int) -> int:
    return min(MAX_PART, max(MIN_UPLOAD_PART, math.ceil(size / MAX_PARTS)))


def _sync(loop: asyncio.AbstractEventLoop, fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
    from fsspec.asyn import sync

    result: T = sync(loop, fn, *args, **kwargs)
    return result


class S3Provider(Provider):
    """An S3 store's copies, presigned requests and multipart clean-up (see above)."""

    name = "s3"
    single_put_limit: ClassVar[int] = 5 << 30

    def __init__(self, store: StoreBackend) -> None:
        super().__init__(store)
        self._copy_fs: Any = None
        self._copy_fs_lock = threading.Lock()

    @staticmethod
    def open_api(fs: Any) -> S3Objects:
        from rhfs.backends import listing_xml

        api = S3Objects(fs)
        listing_xml.install(fs.session)
        return api

    def _copy_client(self) -> Any:
        """The store's account through a client that waits ``COPY_READ_TIMEOUT`` for an answer."""
        with self._copy_fs_lock:
            if self._copy_fs is None:
                options = dict(self.store.options)
                config = dict(options.get("config_kwargs") or {})
                config["read_timeout"] = max(COPY_READ_TIMEOUT, float(config.get("read_timeout") or 0))
                options["config_kwargs"] = config
                session = getattr(self.fs, "session", None)
                if session is not None:  # its service model is loaded: no second load at the first copy
                    options["session"] = session
                self._copy_fs = make_filesystem(self.store.protocol, options)
            return self._copy_fs

    def server_copy(self, src: str, dst: str, size: int) -> None:
        (sb, sk), (db, dk) = split_object(src), split_object(dst)
        fs = self._copy_client()
        if size >= PARALLEL_COPY_FROM:
            _sync(fs.loop, _parallel_copy, fs, sb, sk, db, dk, size)
        else:
            source = {"Bucket": sb, "Key": sk}
            _sync(fs.loop, fs._call_s3, "copy_object", Bucket=db, Key=dk, CopySource=source)

    def read_request(self, path: str, expires: int) -> HttpRequest:
        bucket, key = split_object(path)
        url = self.store._run(self.fs._url, f"{bucket}/{key}", expires=expires)
        return HttpRequest("GET", url)

    def write_plan(self, path: str, size: int, expires: int) -> WritePlan:
        bucket, key = split_object(path)
        fs = self.fs
        if size <= self.single_put_limit:
            url = self.store._run(fs._url, f"{bucket}/{key}", expires=expires, client_method="put_object")
            return WritePlan([(0, size, HttpRequest("PUT", url))])
        return self.store._run(self._multipart_plan, fs, bucket, key, size, expires)

    async def _multipart_plan(self, fs: Any, bucket: str, key: str, size: int, expires: int) -> WritePlan:
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
            self.store._run(
                fs._call_s3,
                "complete_multipart_upload",
                Bucket=bucket,
                Key=key,
                UploadId=upload_id,
                MultipartUpload={"Parts": listing},
            )

        def abort() -> None:
            self.store._run(fs._call_s3, "abort_multipart_upload", Bucket=bucket, Key=key, UploadId=upload_id)

        return WritePlan(parts, finish, abort)

    def abort_unfinished_uploads(self, path: str) -> int:
        bucket, _, key = path.partition("/")
        if not key:
            return 0
        fs = self.fs

        async def go() -> int:
            aborted = 0
            request: dict[str, str] = {"Bucket": bucket, "Prefix": key}
            while True:
                page = await fs._call_s3("list_multipart_uploads", **request)
                for upload in page.get("Uploads", []) or []:
                    if upload.get("Key") == key:
                        await fs._call_s3(
                            "abort_multipart_upload", Bucket=bucket, Key=key, UploadId=upload["UploadId"]
                        )
                        aborted += 1
                if not page.get("IsTruncated"):
                    return aborted
                request["KeyMarker"] = page.get("NextKeyMarker", "")
                request["UploadIdMarker"] = page.get("NextUploadIdMarker", "")

        return self.store._run(go)


async def _parallel_copy(fs: Any, sb: str, sk: str, db: str, dk: str, size: int) -> None:
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
