"""Any other fsspec filesystem as an :class:`~rhfs.backends.object_api.ObjectApi`, best effort,
with the :class:`~rhfs.backends.providers.Provider` that can do nothing more.

For protocols without a provider adapter (``memory``, ``file``, ``hdfs``, ...) the
filesystem's own directories stand in for markers: a directory ``d`` is reported
as a marker object ``d/``, ``put_empty("d/")`` makes it, and deleting ``d/``
removes it. Requests are fsspec's synchronous calls, run in worker threads.

Invariants: the same as every adapter (exact keys, missing keys ignored on delete),
except that uploads are only as atomic as the filesystem's ``put_file``. There is no
server-side copy and no signed request (:class:`FsspecProvider` raises CantCopy, and
the copy routes fall back to streaming through the daemon); no upload leaves anything
on the server to abort.
"""

from __future__ import annotations

import asyncio
from typing import Any

from rhfs.backends.object_api import Listing, ObjectInfo, clean_etag, stale, to_epoch
from rhfs.backends.providers import GENERIC, Provider
from rhfs.errors import NotFound


def _info(key: str, info: dict[str, Any]) -> ObjectInfo:
    mtime = info.get("mtime") or info.get("LastModified") or info.get("last_modified") or info.get("created")
    etag = info.get("etag") or info.get("ETag") or info.get("md5") or info.get("checksum")
    if etag is None:
        etag = f"{to_epoch(mtime)}-{info.get('size')}"
    return ObjectInfo(key=key, size=int(info.get("size") or 0), mtime=to_epoch(mtime), etag=clean_etag(etag))


class FsspecObjects:
    def __init__(self, fs: Any) -> None:
        self.fs = fs

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        from fsspec.asyn import get_loop

        loop: asyncio.AbstractEventLoop = get_loop()
        return loop

    @staticmethod
    def _path(bucket: str, key: str) -> str:
        return f"{bucket}/{key}".rstrip("/")

    async def buckets(self) -> list[str]:
        names = await asyncio.to_thread(self.fs.ls, "", detail=False)
        return sorted(n.strip("/").rsplit("/", 1)[-1] for n in names)

    async def head(self, bucket: str, key: str) -> ObjectInfo | None:
        if key.endswith("/"):
            return None
        try:
            info = await asyncio.to_thread(self.fs.info, self._path(bucket, key))
        except FileNotFoundError:
            return None
        return _info(key, info) if info.get("type") == "file" else None

    async def list_prefix(
        self, bucket: str, prefix: str, *, recursive: bool = False, limit: int | None = None
    ) -> Listing:
        return await asyncio.to_thread(self._list, bucket, prefix, recursive)

    def _list(self, bucket: str, prefix: str, recursive: bool) -> Listing:
        path = self._path(bucket, prefix)
        base = self.fs._strip_protocol(path).rstrip("/")
        try:
            if recursive:
                found = self.fs.find(path, withdirs=True, detail=True)
                infos = list(found.values())
            else:
                infos = self.fs.ls(path, detail=True)
        except FileNotFoundError:
            if not prefix:
                raise NotFound(f"no bucket {bucket}") from None
            return Listing([], [])
        except NotADirectoryError:
            return Listing([], [])
        if any(
            self.fs._strip_protocol(i["name"]).rstrip("/") == base and i.get("type") == "file" for i in infos
        ):
            return Listing([], [])  # the prefix names a file
        objects = [ObjectInfo(key=prefix, size=0, mtime=0.0, etag=None)] if prefix else []
        prefixes: list[str] = []
        for info in infos:
            name = self.fs._strip_protocol(info["name"]).rstrip("/")
            if name == base or not name.startswith(base + "/"):
                continue
            key = prefix + name[len(base) + 1 :]
            if info.get("type") == "directory":
                if recursive:
                    objects.append(ObjectInfo(key=key + "/", size=0, mtime=0.0, etag=None))
                else:
                    prefixes.append(key + "/")
            else:
                objects.append(_info(key, info))
        return Listing(objects, prefixes)

    async def read(self, bucket: str, key: str, start: int, end: int, etag: str | None = None) -> bytes:
        data: bytes = await asyncio.to_thread(self.fs.cat_file, self._path(bucket, key), start=start, end=end)
        if etag is not None:  # no conditional reads here: check the version after the read
            now = await self.head(bucket, key)
            if now is None or now.etag != etag:
                raise stale(f"{bucket}/{key}")
        return data

    async def put_file(self, bucket: str, key: str, local_path: str) -> None:
        await asyncio.to_thread(self.fs.put_file, local_path, self._path(bucket, key))

    async def put_empty(self, bucket: str, key: str) -> None:
        if key.endswith("/"):
            await asyncio.to_thread(self.fs.makedirs, self._path(bucket, key), exist_ok=True)
        else:
            await asyncio.to_thread(self.fs.pipe_file, self._path(bucket, key), b"")

    async def copy(
        self, bucket: str, key: str, dst_bucket: str, dst_key: str, size: int | None = None
    ) -> None:
        if key.endswith("/"):
            await self.put_empty(dst_bucket, dst_key)
        else:
            await asyncio.to_thread(self._copy_file, self._path(bucket, key), self._path(dst_bucket, dst_key))

    def _copy_file(self, src: str, dst: str) -> None:
        self.fs.makedirs(self.fs._parent(dst), exist_ok=True)
        self.fs.cp_file(src, dst)

    async def delete(self, bucket: str, keys: list[str]) -> None:
        await asyncio.to_thread(self._delete, bucket, keys)

    def _delete(self, bucket: str, keys: list[str]) -> None:
        files = [k for k in keys if not k.endswith("/")]
        dirs = sorted((k for k in keys if k.endswith("/")), key=lambda k: -k.count("/"))
        for key in files:
            try:
                self.fs.rm_file(self._path(bucket, key))
            except FileNotFoundError:
                pass
        for key in dirs:
            try:
                self.fs.rmdir(self._path(bucket, key))
            except (FileNotFoundError, OSError):
                pass


class FsspecProvider(Provider):
    """The provider of any other protocol: every copy and signature raises CantCopy."""

    name = GENERIC

    @staticmethod
    def open_api(fs: Any) -> FsspecObjects:
        return FsspecObjects(fs)
