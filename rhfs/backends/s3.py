"""S3 (and S3-compatible servers) as an :class:`~rhfs.backends.objects.ObjectApi`.

Every request goes through s3fs's ``_call_s3``, which signs it with s3fs's
credential chain and turns S3 errors into ``OSError``s with an errno (NoSuchKey
and NoSuchBucket become ``FileNotFoundError``).

Invariants: a LIST is ``ListObjectsV2`` (1000 keys a page); a copy under 5 GiB is
one CopyObject, a larger one s3fs's UploadPartCopy; uploads of 32 MiB and more
are multipart, completed only at the end.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
from functools import partial
from typing import Any

from rhfs.backends.objects import Listing, ObjectInfo, bounded, clean_etag, stale, to_epoch
from rhfs.backends.s3_presigned import Presigned, RawBody, quiet
from rhfs.errors import NotFound

SINGLE_COPY_LIMIT = 5 << 30
DIRECT_PUT = 4 << 20  # files up to this size are uploaded by one presigned PUT
UPLOAD_PART = 16 << 20
DELETE_BATCH = 1000


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
    provider = "s3"

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
                self.presigned.missed(f"GET of {bucket}/{key} broke: {quiet(e)}")
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
