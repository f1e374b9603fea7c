"""Object stores (S3, GCS, Azure Blob, or any fsspec protocol) as one backend.

Paths are ``bucket/key``. Directories are prefixes; ``mkdir`` writes a zero-byte
marker object ``prefix/`` so that an empty directory persists, as rclone and
s3fs-fuse do. Renames are a server-side copy followed by a delete (not atomic).
Uploads are single PUTs or multipart uploads that complete at the end, so a
reader (or a crash) never sees half an object.

Invariants:
- this module and its siblings are the only importers of fsspec and its backends;
- entry metadata is normalised here (mtime as epoch seconds, a string etag);
- listings come from one LIST call per directory; attributes never need a HEAD per file.
"""

from __future__ import annotations

import datetime as dt
import os
import posixpath
import threading
from typing import Any

from rhfs.backends.base import Entry, check_name
from rhfs.errors import (
    AlreadyExists,
    CantCopy,
    DirectoryNotEmpty,
    NotADirectory,
    NotFound,
    PermissionDenied,
)

os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")

_PROVIDER_OF = {"s3": "s3", "s3a": "s3", "gcs": "gs", "gs": "gs", "az": "az", "abfs": "az", "adl": "az"}
MARKER_SUFFIX = "/"


def _to_epoch(value: Any) -> float:
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


def entry_from_info(info: dict[str, Any]) -> Entry:
    name = posixpath.basename(info["name"].rstrip("/"))
    is_dir = info.get("type") == "directory"
    mtime = (
        info.get("LastModified")
        or info.get("last_modified")
        or info.get("updated")
        or info.get("mtime")
        or info.get("timeCreated")
    )
    etag = info.get("ETag") or info.get("etag") or info.get("generation") or info.get("md5Hash")
    if isinstance(etag, str):
        etag = etag.strip('"')
    return Entry(
        name=name,
        is_dir=is_dir,
        size=0 if is_dir else int(info.get("size") or 0),
        mtime=_to_epoch(mtime),
        etag=None if etag is None else str(etag),
    )


def make_filesystem(protocol: str, options: dict[str, Any]) -> Any:
    import fsspec

    opts = dict(options)
    opts.setdefault("skip_instance_cache", True)
    opts.setdefault("use_listings_cache", False)
    return fsspec.filesystem(protocol, **opts)


class StoreReader:
    def __init__(self, fs: Any, path: str, size: int) -> None:
        self.fs, self.path, self.size = fs, path, size

    def read(self, offset: int, size: int) -> bytes:
        end = min(offset + size, self.size)
        if offset >= end:
            return b""
        data: bytes = self.fs.cat_file(self.path, start=offset, end=end)
        return data

    def close(self) -> None:
        pass


class StoreBackend:
    kind = "store"

    def __init__(
        self,
        system: str,
        protocol: str,
        options: dict[str, Any],
        buckets: tuple[str, ...] | None = None,
        fs: Any = None,
    ) -> None:
        self.system = system
        self.protocol = protocol
        self.provider = _PROVIDER_OF.get(protocol, protocol)
        self.options = options
        self.configured_buckets = buckets
        self._fs = fs
        self._fs_lock = threading.Lock()

    # The filesystem is made on first use, so that a store that is down does not stop the mount.
    @property
    def fs(self) -> Any:
        if self._fs is None:
            with self._fs_lock:
                if self._fs is None:
                    self._fs = make_filesystem(self.protocol, self.options)
        return self._fs

    def buckets(self) -> list[str]:
        if self.configured_buckets is not None:
            return list(self.configured_buckets)
        return sorted(posixpath.basename(p.rstrip("/")) for p in self.fs.ls("", detail=False))

    def _check(self, path: str) -> str:
        if path:
            check_name(path)
        return path

    def stat(self, path: str) -> Entry:
        path = self._check(path)
        if not path:
            return Entry(name="", is_dir=True)
        if "/" not in path:
            if path in self.buckets():
                return Entry(name=path, is_dir=True)
            raise NotFound(path)
        try:
            info = self.fs.info(path)
        except FileNotFoundError:
            raise NotFound(path) from None
        return entry_from_info(info)

    def list(self, path: str) -> list[Entry]:
        path = self._check(path)
        if not path:
            return [Entry(name=b, is_dir=True) for b in self.buckets()]
        try:
            infos = self.fs.ls(path, detail=True)
        except FileNotFoundError:
            if "/" not in path and path in self.buckets():
                return []
            raise NotFound(path) from None
        except NotADirectoryError:
            raise NotADirectory(path) from None
        own = path.rstrip("/")
        entries = []
        for info in infos:
            name = info["name"].rstrip("/")
            if name == own or not name:
                continue  # the directory's own marker
            entries.append(entry_from_info(info))
        if not entries and "/" in path:
            # An empty listing is either an empty directory (marker only) or a file.
            entry = self.stat(path)
            if not entry.is_dir:
                raise NotADirectory(path)
        return entries

    def open_reader(self, path: str, entry: Entry) -> StoreReader:
        return StoreReader(self.fs, self._check(path), entry.size)

    def upload(self, local_path: str, path: str) -> None:
        self._check(path)
        self.fs.put_file(local_path, path)

    def remove(self, path: str) -> None:
        entry = self.stat(path)
        if entry.is_dir:
            from rhfs.errors import IsADirectory

            raise IsADirectory(path)
        self.fs.rm_file(path)

    def mkdir(self, path: str) -> None:
        path = self._check(path)
        if "/" not in path:
            raise PermissionDenied(f"{self.system}: buckets are not created through the mount")
        try:
            self.stat(path)
        except NotFound:
            pass
        else:
            raise AlreadyExists(path)
        if not self.stat(posixpath.dirname(path)).is_dir:
            raise NotADirectory(path)
        self.fs.pipe_file(path + MARKER_SUFFIX, b"")

    def rmdir(self, path: str) -> None:
        path = self._check(path)
        if "/" not in path:
            raise PermissionDenied(f"{self.system}: buckets are not removed through the mount")
        entry = self.stat(path)
        if not entry.is_dir:
            raise NotADirectory(path)
        if self.list(path):
            raise DirectoryNotEmpty(path)
        try:
            self.fs.rm_file(path + MARKER_SUFFIX)
        except FileNotFoundError:
            pass

    def rename(self, src: str, dst: str) -> None:
        entry = self.stat(src)
        self._check(dst)
        if not entry.is_dir:
            self.fs.cp_file(src, dst)
            self.fs.rm_file(src)
            return
        keys = [k for k in self.fs.find(src, withdirs=False) if k.rstrip("/") != src]
        markers = [src + MARKER_SUFFIX]
        for key in keys:
            self.fs.cp_file(key, dst + key[len(src) :])
        self.fs.pipe_file(dst + MARKER_SUFFIX, b"")
        for key in keys + markers:
            try:
                self.fs.rm_file(key)
            except FileNotFoundError:
                pass

    def url(self, path: str) -> str:
        return f"{self.protocol}://{path}"

    def copy_within(self, src: str, dst: str) -> None:
        self._check(dst)
        try:
            self.fs.cp_file(src, dst)
        except NotImplementedError:
            raise CantCopy(f"{self.system}: no server-side copy") from None
