"""Azure Blob Storage: the :class:`~rhfs.backends.object_api.ObjectApi` and the
:class:`~rhfs.backends.providers.Provider` of an Azure store, over adlfs's async service client.

adlfs's own ``ls``/``info`` merge a ``dir/`` marker with the directory's name and
hide the blobs under it, so this adapter speaks to the blob client directly.

Invariants:
- a LIST is ``List Blobs`` with ``delimiter=/`` (5000 a page), with metadata, so a
  folder blob (``hdi_isfolder=true``, as Data Lake tools write) is seen as a directory;
- reads are ranged downloads at absolute offsets;
- uploads are Put Blob, or Put Block + Put Block List for large files (atomic);
- a copy is Copy Blob from URL, and waits until the copy is no longer pending; a
  server-side copy that fails once started removes the broken blob it leaves.

For others (:class:`AzureProvider`), requests carry SAS URLs signed with the account
key (a store authenticated otherwise cannot sign them); a write is one Put Blob of at
most 5000 MiB. Uncommitted blocks expire on their own and are never
visible, so recovery has nothing to abort.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from functools import partial
from typing import Any, ClassVar

from rhfs.backends.object_api import Listing, ObjectInfo, bounded, clean_etag, stale, to_epoch
from rhfs.backends.providers import Provider, split_object
from rhfs.backends.signed import HttpRequest, WritePlan
from rhfs.errors import CantCopy, NotFound, RhfsError

COPY_POLL_SECONDS = 0.2
UPLOAD_CONCURRENCY = 8
BLOB_TYPE_HEADER = {"x-ms-blob-type": "BlockBlob"}


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


class AzureProvider(Provider):
    """An Azure store's Copy Blob from URL and SAS URLs."""

    name = "az"
    single_put_limit: ClassVar[int] = 5000 << 20  # bytes one Put Blob may carry

    @staticmethod
    def open_api(fs: Any) -> AzureObjects:
        return AzureObjects(fs)

    def server_copy(self, src: str, dst: str, size: int) -> None:
        (sb, sk), (db, dk) = split_object(src), split_object(dst)
        try:
            self.store._run(self.store.api.copy, sb, sk, db, dk, size=size)
        except NotFound:
            raise  # the copy never started: the destination is as it was
        except BaseException:  # a Copy Blob that failed once started leaves a broken blob
            self.store._run(self.store.api.delete, db, [dk])
            raise

    def read_request(self, path: str, expires: int) -> HttpRequest:
        bucket, key = split_object(path)
        return HttpRequest("GET", self._sas_url(bucket, key, expires, write=False))

    def write_plan(self, path: str, size: int, expires: int) -> WritePlan:
        bucket, key = split_object(path)
        if size > self.single_put_limit:
            raise CantCopy(f"{self.store.system}: a blob over {self.single_put_limit} bytes needs Put Block")
        url = self._sas_url(bucket, key, expires, write=True)
        return WritePlan([(0, size, HttpRequest("PUT", url, dict(BLOB_TYPE_HEADER)))])

    def _sas_url(self, bucket: str, key: str, expires: int, *, write: bool) -> str:
        from azure.core.utils import parse_connection_string
        from azure.storage.blob import BlobSasPermissions, generate_blob_sas

        fs = self.fs
        if getattr(fs, "connection_string", None):
            parts = parse_connection_string(fs.connection_string)
            account, account_key = parts.get("accountname"), parts.get("accountkey")
        else:
            account, account_key = getattr(fs, "account_name", None), getattr(fs, "account_key", None)
        if not account or not account_key:
            raise CantCopy(f"{self.store.system}: SAS URLs need the account key")
        permission = BlobSasPermissions(create=True, write=True) if write else BlobSasPermissions(read=True)
        sas = generate_blob_sas(
            account_name=account,
            container_name=bucket,
            blob_name=key,
            account_key=account_key,
            permission=permission,
            expiry=dt.datetime.now(dt.UTC) + dt.timedelta(seconds=expires),
        )
        blob_url: str = self.store.api.client.get_blob_client(bucket, key).url  # type: ignore[attr-defined]
        return f"{blob_url}?{sas}"
