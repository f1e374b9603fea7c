"""Object stores (S3, GCS, Azure Blob) as one backend with POSIX-like directories.

Paths are ``bucket/key``. The requests themselves are made by a provider adapter
(:mod:`rhfs.backends.object_api`); this module gives them directory semantics:

- a directory is a prefix: it exists if a marker object ``key/`` exists (``mkdir``
  writes one, as rclone, s3fs-fuse and the cloud consoles do) or any key lies under
  ``key/`` (an implicit directory). A marker is never shown as a file;
- an object ``key`` and a prefix ``key/`` may both exist; the file then shadows the
  directory, in ``stat`` and in listings alike;
- removing the last entry of a directory leaves a marker behind, so the directory
  stays until ``rmdir``, as on a POSIX filesystem;
- renaming copies every key server-side, then deletes the sources: a failure
  leaves the source whole, but the rename is not atomic.

What only the provider knows (its own copies, signed requests, unfinished uploads)
is :attr:`StoreBackend.provider`, a :class:`~rhfs.backends.providers.Provider`.

Cost invariants: ``list`` is one LIST per page of one level; ``stat`` of a file is
one HEAD, of a directory one HEAD plus one LIST of at most one key, of a configured
bucket one LIST of at most one key (so that a bucket that does not exist is not shown);
nothing lists a whole subtree except renaming a directory.
"""

from __future__ import annotations

import errno
import posixpath
import threading
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, TypeVar

from rhfs.backends.base import Abilities, Entry, Traits, check_name, check_rename_over
from rhfs.backends.object_api import Listing, ObjectApi, ObjectInfo, bounded, open_object_api
from rhfs.backends.providers import Provider, provider_of, provider_type
from rhfs.backends.streams import BodyStream
from rhfs.errors import (
    AlreadyExists,
    DirectoryNotEmpty,
    InvalidArgument,
    IsADirectory,
    NameTooLong,
    NotADirectory,
    NotFound,
    PermissionDenied,
    first_line,
    to_errno,
)

T = TypeVar("T")
MARKER = "/"
MAX_KEY_BYTES = 1024  # the longest key S3, GCS and Azure accept
STARTED_AT = time.time()


def _valid_name(name: str) -> bool:
    try:
        check_name(name)
    except (InvalidArgument, NameTooLong):
        return False
    return bool(name)


def _file_entry(info: ObjectInfo) -> Entry:
    return Entry(
        name=posixpath.basename(info.key), is_dir=False, size=info.size, mtime=info.mtime, etag=info.etag
    )


def _dir_entry(name: str) -> Entry:
    # A prefix has no time of its own; every directory shows when this process started.
    return Entry(name=name, is_dir=True, mtime=STARTED_AT)


def entries_of(listing: Listing, prefix: str) -> list[Entry]:
    """The directory entries of one level's listing; markers and unusable names are left out."""
    entries: dict[str, Entry] = {}
    for info in listing.objects:
        name = info.key[len(prefix) :]
        if not _valid_name(name) or "/" in name:
            continue  # the directory's own marker, or a key no path can name
        entries[name] = _dir_entry(name) if info.is_folder else _file_entry(info)
    for sub in listing.prefixes:
        name = sub[len(prefix) :].rstrip("/")
        if _valid_name(name) and "/" not in name and name not in entries:
            entries[name] = _dir_entry(name)
    return sorted(entries.values(), key=lambda e: e.name)


class StoreReader:
    """Ranged reads of the version that was opened (ESTALE once the object is replaced)."""

    def __init__(self, store: StoreBackend, bucket: str, key: str, entry: Entry) -> None:
        self.store, self.bucket, self.key = store, bucket, key
        self.size, self.etag = entry.size, entry.etag

    def read(self, offset: int, size: int) -> bytes:
        end = min(offset + size, self.size)
        if offset >= end:
            return b""
        return self.store._run(self.store.api.read, self.bucket, self.key, offset, end, self.etag)

    def stream(self, offset: int, end: int) -> BodyStream | None:
        """One request for ``offset:end``, read progressively; None if the provider has no streams."""
        opener = getattr(self.store.api, "open_stream", None)
        end = min(end, self.size)
        if opener is None or offset >= end:
            return None
        body = self.store._run(opener, self.bucket, self.key, offset, end, self.etag)
        return BodyStream(self.store._run, body)

    def close(self) -> None:
        pass


class StoreBackend:
    traits = Traits(family="store", remote=True, versioned_objects=True, implicit_directories=True)

    def __init__(
        self,
        system: str,
        protocol: str,
        options: dict[str, Any],
        buckets: tuple[str, ...] | list[str] | None = None,
        api: ObjectApi | None = None,
        on_bucket: Callable[[str, str, str | None], None] | None = None,
    ) -> None:
        """``on_bucket(bucket, state, error)`` hears what each look-up of a configured bucket
        found: ``ok``, ``missing`` or ``denied``."""
        self.system = system
        self.protocol = protocol
        self.options = options
        self.configured_buckets = tuple(buckets) if buckets is not None else None
        self._api = api
        self._api_lock = threading.Lock()
        self._on_bucket = on_bucket
        self._missing: set[str] = set()  # configured buckets the last look-up did not find
        # the protocol's provider adapter; it makes no client of its own until it needs one
        self.provider: Provider = provider_type(provider_of(protocol))(self)
        self.abilities = Abilities(
            copy_within=self.copy_within,
            check_path=self.check_path,
            remove_upload_leftovers=self.remove_upload_leftovers,
            provider=self.provider,
            warm_up=self.warm_up,
        )

    # The client is made on first use, so that a store that is down does not stop the mount.
    @property
    def api(self) -> ObjectApi:
        if self._api is None:
            with self._api_lock:
                if self._api is None:
                    self._api = open_object_api(self.protocol, self.options)
        return self._api

    def _run(self, fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        from fsspec.asyn import sync

        result: T = sync(self.api.loop, fn, *args, **kwargs)
        return result

    def warm_up(self) -> None:
        """Make the client now (imports, service models; no request), not in the first request."""
        connect = getattr(getattr(self.api, "fs", None), "connect", None)
        if callable(connect):
            connect()

    # -- paths and lookups ----------------------------------------------------------------
    @staticmethod
    def _split(path: str) -> tuple[str, str]:
        if path:
            check_name(path)
        bucket, _, key = path.partition("/")
        try:
            size = len(key.encode("utf-8"))
        except UnicodeEncodeError:
            raise InvalidArgument(f"{path!r}: object keys are UTF-8, and this name is not") from None
        if size > MAX_KEY_BYTES:
            raise NameTooLong(f"{path}: keys are at most {MAX_KEY_BYTES} bytes on S3, GCS and Azure")
        return bucket, key

    def check_path(self, path: str) -> None:
        """Refuse, without a request, a path no key can name (EINVAL, ENAMETOOLONG)."""
        self._split(path)

    def buckets(self) -> list[str]:
        """The store's buckets: the configured ones (less those a look-up found missing), or all."""
        if self.configured_buckets is not None:
            return [b for b in self.configured_buckets if b not in self._missing]
        return self._run(self.api.buckets)

    def _bucket(self, bucket: str) -> Entry | None:
        """A bucket's entry. A configured bucket is asked for (one LIST of at most one key), so
        that one that does not exist is never shown as an empty directory."""
        if self.configured_buckets is None:
            return _dir_entry(bucket) if bucket in self.buckets() else None
        if bucket not in self.configured_buckets:
            return None
        try:
            self._run(self.api.list_prefix, bucket, "", limit=1)
        except NotFound as e:
            self._bucket_found(bucket, "missing", first_line(e))
            return None
        except Exception as e:
            if to_errno(e) == errno.EACCES:
                self._bucket_found(bucket, "denied", first_line(e))
            raise
        self._bucket_found(bucket, "ok", None)
        return _dir_entry(bucket)

    def _bucket_found(self, bucket: str, state: str, error: str | None) -> None:
        if state == "missing":
            self._missing.add(bucket)
        else:
            self._missing.discard(bucket)
        if self._on_bucket is not None:
            self._on_bucket(bucket, state, error)

    def _lookup(self, bucket: str, key: str) -> Entry | None:
        """The entry at ``key``: one HEAD, then (for a directory) one LIST of at most one key."""
        if not key:
            return self._bucket(bucket)
        info = self._run(self.api.head, bucket, key)
        if info is not None and not key.endswith("/"):
            return _dir_entry(posixpath.basename(key)) if info.is_folder else _file_entry(info)
        listing = self._run(self.api.list_prefix, bucket, key + MARKER, limit=1)
        return None if listing.empty else _dir_entry(posixpath.basename(key))

    def _require_dir(self, bucket: str, key: str) -> None:
        entry = self._lookup(bucket, key)
        if entry is None:
            raise NotFound(f"{bucket}/{key}")
        if not entry.is_dir:
            raise NotADirectory(f"{bucket}/{key}")

    def _keep_dir(self, bucket: str, key: str) -> None:
        """Leave a marker in ``key`` if nothing else is left there, so the directory stays."""
        if key and self._run(self.api.list_prefix, bucket, key + MARKER, limit=1).empty:
            self._run(self.api.put_empty, bucket, key + MARKER)

    # -- the Backend protocol -------------------------------------------------------------
    def stat(self, path: str) -> Entry:
        if not path:
            return _dir_entry("")
        entry = self._lookup(*self._split(path))
        if entry is None:
            raise NotFound(path)
        return entry

    def list(self, path: str) -> list[Entry]:
        if not path:
            return [_dir_entry(b) for b in self.buckets()]
        bucket, key = self._split(path)
        prefix = key + MARKER if key else ""
        listing = self._run(self.api.list_prefix, bucket, prefix)
        if key and listing.empty:
            info = self._run(self.api.head, bucket, key)
            if info is None:
                raise NotFound(path)
            if not info.is_folder:
                raise NotADirectory(path)
        return entries_of(listing, prefix)

    def open_reader(self, path: str, entry: Entry) -> StoreReader:
        bucket, key = self._split(path)
        if not key:
            raise IsADirectory(path)
        return StoreReader(self, bucket, key, entry)

    def upload(self, local_path: str, path: str) -> None:
        bucket, key = self._split(path)
        if not key:
            raise IsADirectory(path)
        self._run(self.api.put_file, bucket, key, local_path)

    def remove(self, path: str) -> None:
        bucket, key = self._split(path)
        if not key:
            raise IsADirectory(path)
        info = self._run(self.api.head, bucket, key)
        if info is None or info.is_folder:
            if info is not None or self._lookup(bucket, key) is not None:
                raise IsADirectory(path)
            raise NotFound(path)
        self._run(self.api.delete, bucket, [key])
        self._keep_dir(bucket, posixpath.dirname(key))

    def mkdir(self, path: str) -> None:
        bucket, key = self._split(path)
        if not key:
            raise PermissionDenied(f"{self.system}: buckets are not created through the mount")
        if self._lookup(bucket, key) is not None:
            raise AlreadyExists(path)
        self._require_dir(bucket, posixpath.dirname(key))
        self._run(self.api.put_empty, bucket, key + MARKER)

    def rmdir(self, path: str) -> None:
        bucket, key = self._split(path)
        if not key:
            raise PermissionDenied(f"{self.system}: buckets are not removed through the mount")
        info = self._run(self.api.head, bucket, key)
        if info is not None and not info.is_folder:
            raise NotADirectory(path)
        listing = self._run(self.api.list_prefix, bucket, key + MARKER, limit=2)
        if listing.empty and info is None:
            raise NotFound(path)
        if listing.prefixes or any(o.key != key + MARKER for o in listing.objects):
            raise DirectoryNotEmpty(path)
        self._run(self.api.delete, bucket, [key + MARKER] + ([key] if info is not None else []))
        self._keep_dir(bucket, posixpath.dirname(key))

    def rename(self, src: str, dst: str) -> None:
        (sb, sk), (db, dk) = self._split(src), self._split(dst)
        if not sk or not dk:
            raise PermissionDenied(f"{self.system}: buckets are not renamed through the mount")
        entry = self._lookup(sb, sk)
        if entry is None:
            raise NotFound(src)
        if (sb, sk) == (db, dk):
            return
        if entry.is_dir and sb == db and (dk + "/").startswith(sk + "/"):
            raise InvalidArgument(f"cannot move {src} into itself")
        self._require_dir(db, posixpath.dirname(dk))
        target = self._lookup(db, dk)
        if target is not None:
            check_rename_over(entry.is_dir, target.is_dir, dst)
            if target.is_dir:
                self.rmdir(dst)  # ENOTEMPTY unless it is empty
        if entry.is_dir:
            self._move_tree(sb, sk, db, dk)
        else:
            self._run(self.api.copy, sb, sk, db, dk, size=entry.size)
            self._run(self.api.delete, sb, [sk])
        self._keep_dir(sb, posixpath.dirname(sk))

    def _move_tree(self, sb: str, sk: str, db: str, dk: str) -> None:
        keys = self._run(self.api.list_prefix, sb, sk + MARKER, recursive=True).objects
        folder = self._run(self.api.head, sb, sk)
        api = self.api

        async def copy_all() -> None:
            await bounded(
                [partial(api.copy, sb, o.key, db, dk + o.key[len(sk) :], size=o.size) for o in keys]
            )
            if folder is not None or not keys:
                await api.put_empty(db, dk + MARKER)

        self._run(copy_all)
        self._run(self.api.delete, sb, [o.key for o in keys] + ([sk] if folder is not None else []))

    def url(self, path: str) -> str:
        return f"{self.protocol}://{path}"

    # -- optional abilities ---------------------------------------------------------------
    def remove_upload_leftovers(self, path: str) -> int:
        """Abort what killed uploads of exactly ``path`` left on the server; how many."""
        return self.provider.abort_unfinished_uploads(path)

    def copy_within(self, src: str, dst: str) -> None:
        (sb, sk), (db, dk) = self._split(src), self._split(dst)
        if not sk or not dk:
            raise IsADirectory(src if not sk else dst)
        info = self._run(self.api.head, sb, sk)
        if info is None:
            raise IsADirectory(src) if self._lookup(sb, sk) is not None else NotFound(src)
        if info.is_folder:
            raise IsADirectory(src)
        self._run(self.api.copy, sb, sk, db, dk, size=info.size)
