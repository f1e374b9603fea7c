"""Google Cloud Storage: the :class:`~rhfs.backends.object_api.ObjectApi` and the
:class:`~rhfs.backends.providers.Provider` of a GCS store, over gcsfs's JSON API client.

Requests go through gcsfs's ``_call`` (its credentials, retries and error
translation: 404 is ``FileNotFoundError``). The etag is the object's generation,
which changes on every write.

Invariants: a LIST is ``objects.list`` with ``delimiter=/`` (up to 1000 a page);
copies are ``rewriteTo`` loops (server-side, any size); uploads of 5 MiB and more
are resumable uploads, finalised only at the end.

For others (:class:`GcsProvider`), a read is the object's media URL with a short-lived
bearer token (none for anonymous access), and a write of any size is one PUT to a
resumable-upload session. An unfinished session expires on its own and is never
visible, so recovery has nothing to abort.
"""

from __future__ import annotations

import asyncio
from functools import partial
from typing import Any

from rhfs.backends.object_api import Listing, ObjectInfo, bounded, stale, to_epoch
from rhfs.backends.providers import Provider, split_object
from rhfs.backends.signed import HttpRequest, WritePlan
from rhfs.errors import NotFound


def _info(item: dict[str, Any]) -> ObjectInfo:
    return ObjectInfo(
        key=item["name"],
        size=int(item.get("size") or 0),
        mtime=to_epoch(item.get("updated") or item.get("timeCreated")),
        etag=str(item.get("generation") or item.get("etag") or "") or None,
    )


class GcsObjects:
    def __init__(self, fs: Any) -> None:
        self.fs = fs
        self.page_size = 1000  # objects per LIST page

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        loop: asyncio.AbstractEventLoop = self.fs.loop
        return loop

    async def buckets(self) -> list[str]:
        return sorted(p.rstrip("/") for p in await self.fs._ls("", detail=False))

    async def head(self, bucket: str, key: str) -> ObjectInfo | None:
        try:
            item = await self.fs._call("GET", "b/{}/o/{}", bucket, key, json_out=True)
        except FileNotFoundError:
            return None
        return _info(item)

    async def list_prefix(
        self, bucket: str, prefix: str, *, recursive: bool = False, limit: int | None = None
    ) -> Listing:
        objects: list[ObjectInfo] = []
        prefixes: list[str] = []
        params: dict[str, Any] = {"prefix": prefix or None, "maxResults": limit or self.page_size}
        if not recursive:
            params["delimiter"] = "/"
        while True:
            try:
                page = await self.fs._call("GET", "b/{}/o", bucket, json_out=True, **params)
            except FileNotFoundError:
                raise NotFound(f"no bucket {bucket}") from None
            objects.extend(_info(item) for item in page.get("items", []) or [])
            prefixes.extend(page.get("prefixes", []) or [])
            token = page.get("nextPageToken")
            if limit is not None or not token:
                return Listing(objects, prefixes)
            params["pageToken"] = token

    async def read(self, bucket: str, key: str, start: int, end: int, etag: str | None = None) -> bytes:
        url = self.fs.url(f"{bucket}/{key}")
        # The generation opened: still readable with object versioning, else 404 once replaced.
        pinned = {"generation": etag} if etag and etag.isdigit() else {}
        try:
            _, data = await self.fs._call("GET", url, headers={"Range": f"bytes={start}-{end - 1}"}, **pinned)
        except FileNotFoundError as e:
            if pinned:
                raise stale(f"{bucket}/{key}") from e
            raise
        return bytes(data)

    async def put_file(self, bucket: str, key: str, local_path: str) -> None:
        await self.fs._put_file(local_path, f"{bucket}/{key}")

    async def put_empty(self, bucket: str, key: str) -> None:
        await self.fs._pipe_file(f"{bucket}/{key}", b"")

    async def copy(
        self, bucket: str, key: str, dst_bucket: str, dst_key: str, size: int | None = None
    ) -> None:
        await self.fs._cp_file(f"{bucket}/{key}", f"{dst_bucket}/{dst_key}")

    async def delete(self, bucket: str, keys: list[str]) -> None:
        async def one(key: str) -> None:
            try:
                await self.fs._call("DELETE", "b/{}/o/{}", bucket, key)
            except FileNotFoundError:
                pass

        await bounded([partial(one, k) for k in keys])


class GcsProvider(Provider):
    """A GCS store's ``rewriteTo`` copies, media URLs and resumable-upload sessions."""

    name = "gs"

    @staticmethod
    def open_api(fs: Any) -> GcsObjects:
        return GcsObjects(fs)

    def server_copy(self, src: str, dst: str, size: int) -> None:
        (sb, sk), (db, dk) = split_object(src), split_object(dst)
        self.store._run(self.store.api.copy, sb, sk, db, dk, size=size)

    def read_request(self, path: str, expires: int) -> HttpRequest:
        bucket, key = split_object(path)
        fs = self.fs
        headers: dict[str, str] = {}
        fs.credentials.apply(headers)  # a short-lived bearer token, or nothing for anonymous access
        return HttpRequest("GET", fs.url(f"{bucket}/{key}"), headers)

    def write_plan(self, path: str, size: int, expires: int) -> WritePlan:
        bucket, key = split_object(path)
        from gcsfs.core import initiate_upload

        session = self.store._run(initiate_upload, self.fs, bucket, key)
        return WritePlan([(0, size, HttpRequest("PUT", session))])
