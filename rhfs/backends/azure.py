"""Azure Blob Storage as an :class:`~rhfs.backends.objects.ObjectApi`, over adlfs's async service client.

adlfs's own ``ls``/``info`` merge a ``dir/`` marker with the directory's name and
hide the blobs under it, so this adapter speaks to the blob client directly.

Invariants:
- a LIST is ``List Blobs`` with ``delimiter=/`` (5000 a page), with metadata, so a
  folder blob (``hdi_isfolder=true``, as Data Lake tools write) is seen as a directory;
- reads are ranged downloads at absolute offsets;
- uploads are Put Blob, or Put Block + Put Block List for large files (atomic);
- a copy is Copy Blob from URL, and waits until the copy is no longer pending.
"""

from __future__ import annotations

import asyncio
from functools import partial
from typing import Any

from rhfs.backends.objects import Listing, ObjectInfo, bounded, clean_etag, stale, to_epoch
from rhfs.errors import NotFound, RhfsError

COPY_POLL_SECONDS = 0.2
UPLOAD_CONCURRENCY = 8


def _not_found() -> type[BaseException]:
    from azure.core.exceptions import ResourceNotFoundError

    return ResourceNotFoundError


def _info(blob: Any) -> ObjectInfo:
    metadata = {k.lower(): str(v).lower() for k, v in (blob.metadata or {}).items()}
    return ObjectInfo(
        key=blob.name,
        size=int(blob.size or 0),
        mtime=to_epoch(blob.last_modified),
        etag=clean_etag(blob.etag),
        is_folder=metadata.get("hdi_isfolder") == "true",
    )


class AzureObjects:
    provider = "az"

    def __init__(self, fs: Any) -> None:
        self.fs = fs
        self.page_size = 5000  # blobs per List Blobs page (Azure's maximum)

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        loop: asyncio.AbstractEventLoop = self.fs.loop
        return loop

    @property
    def client(self) -> Any:
        return self.fs.service_client

    async def buckets(self) -> list[str]:
        return sorted([c.name async for c in self.client.list_containers()])

    async def head(self, bucket: str, key: str) -> ObjectInfo | None:
        blob = self.client.get_blob_client(bucket, key)
        try:
            props = await blob.get_blob_properties()
        except _not_found():
            return None
        return _info(props)

    async def list_prefix(
        self, bucket: str, prefix: str, *, recursive: bool = False, limit: int | None = None
    ) -> Listing:
        container = self.client.get_container_client(bucket)
        kwargs: dict[str, Any] = {
            "name_starts_with": prefix or None,
            "include": ["metadata"],
            "results_per_page": limit or self.page_size,
        }
        pager = container.list_blobs(**kwargs) if recursive else container.walk_blobs(delimiter="/", **kwargs)
        objects: list[ObjectInfo] = []
        prefixes: list[str] = []
        try:
            async for page in pager.by_page():
                async for item in page:
                    if hasattr(item, "size"):
                        objects.append(_info(item))
                    else:
                        prefixes.append(item.name)
                if limit is not None:
                    break
        except _not_found():
            raise NotFound(f"no container {bucket}") from None
        return Listing(objects, prefixes)

    async def read(self, bucket: str, key: str, start: int, end: int, etag: str | None = None) -> bytes:
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceModifiedError

        blob = self.client.get_blob_client(bucket, key)
        match: dict[str, Any] = (
            {"etag": etag, "match_condition": MatchConditions.IfNotModified} if etag else {}
        )
        try:
            stream = await blob.download_blob(offset=start, length=end - start, **match)
        except _not_found():
            raise NotFound(f"{bucket}/{key}") from None
        except ResourceModifiedError as e:
            raise stale(f"{bucket}/{key}") from e
        data: bytes = await stream.readall()
        return data

    async def put_file(self, bucket: str, key: str, local_path: str) -> None:
        blob = self.client.get_blob_client(bucket, key)
        with open(local_path, "rb") as f:
            await blob.upload_blob(f, overwrite=True, max_concurrency=UPLOAD_CONCURRENCY)

    async def put_empty(self, bucket: str, key: str) -> None:
        await self.client.get_blob_client(bucket, key).upload_blob(b"", overwrite=True)

    async def copy(
        self, bucket: str, key: str, dst_bucket: str, dst_key: str, size: int | None = None
    ) -> None:
        source = self.client.get_blob_client(bucket, key)
        target = self.client.get_blob_client(dst_bucket, dst_key)
        try:
            await target.start_copy_from_url(source.url)
        except _not_found():
            raise NotFound(f"{bucket}/{key}") from None
        while True:
            props = await target.get_blob_properties()
            status = props.copy.status if props.copy else None
            if status != "pending":
                break
            await asyncio.sleep(COPY_POLL_SECONDS)
        if status not in (None, "success"):
            raise RhfsError(f"copy of {bucket}/{key} ended {status}: {props.copy.status_description}")

    async def delete(self, bucket: str, keys: list[str]) -> None:
        container = self.client.get_container_client(bucket)

        async def one(key: str) -> None:
            try:
                await container.delete_blob(key)
            except _not_found():
                pass

        await bounded([partial(one, k) for k in keys])
