"""S3 GETs by presigned URL: the same requests, without botocore's work on each one.

Reads are a mount's hottest path, and botocore spends more time building, signing
and parsing a ranged GET than a local S3 server takes to answer it (2.5 ms against
2 ms on s3rver). A presigned URL is signed once per object, locally, by the same
client (its endpoint, region and credentials), and reused for ``URL_LIFETIME``; each
ranged GET is then a plain aiohttp request on the client's event loop. The
``If-Match`` header still pins the version that was opened.

Invariants:
- only what botocore would have got is returned: a 206 for the range asked (or a 200
  for a range that is the whole object); 404 is FileNotFoundError and 412 (with an
  etag) is :func:`~rhfs.backends.objects.stale`, as on the botocore path;
- anything else (another status, a connection error, an expired URL) returns None
  and the caller makes the request through botocore, which retries and explains;
- clients with settings this session would not honour (TLS verification, proxies in
  the client config, requester pays, request parameters) never take this path.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import time
from collections import OrderedDict
from typing import Any

from rhfs.backends.objects import stale

log = logging.getLogger(__name__)

URL_LIFETIME = 3600  # seconds a presigned URL is valid
URL_REUSE = URL_LIFETIME - 300  # ... and reused
URLS_KEPT = 4096
READ_TIMEOUT = 60  # seconds without a byte before a request is abandoned (botocore's default)


class PresignedGets:
    def __init__(self, fs: Any) -> None:
        self.fs = fs
        self._urls: OrderedDict[tuple[str, str], tuple[str, float]] = OrderedDict()
        self._session: Any = None
        self.enabled = _plain_client(fs)

    async def get(self, bucket: str, key: str, start: int, end: int, etag: str | None) -> Any:
        """An open aiohttp response for bytes ``start:end``, or None: use botocore instead."""
        if not self.enabled:
            return None
        import aiohttp

        try:
            url = await self._url(bucket, key)
            headers = {"Range": f"bytes={start}-{end - 1}"}
            if etag:
                headers["If-Match"] = f'"{etag}"'
            response = await self._http().get(url, headers=headers, allow_redirects=False)
        except (aiohttp.ClientError, OSError, ValueError) as e:
            log.debug("presigned GET of %s/%s: %s; through botocore", bucket, key, e)
            return None
        if response.status == 206 or (response.status == 200 and start == 0 and _length(response) == end):
            return response
        response.release()
        if response.status == 404:
            raise FileNotFoundError(f"{bucket}/{key}")
        if response.status == 412 and etag:
            raise stale(f"{bucket}/{key}")
        if response.status == 403:
            self._urls.pop((bucket, key), None)  # expired credentials or URL: sign again next time
        log.debug("presigned GET of %s/%s: HTTP %d; through botocore", bucket, key, response.status)
        return None

    async def _url(self, bucket: str, key: str) -> str:
        now = time.monotonic()
        hit = self._urls.get((bucket, key))
        if hit is not None and hit[1] > now:
            self._urls.move_to_end((bucket, key))
            return hit[0]
        client = await self.fs.set_session()
        url: str = await client.generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=URL_LIFETIME
        )
        self._urls[(bucket, key)] = (url, now + URL_REUSE)
        while len(self._urls) > URLS_KEPT:
            self._urls.popitem(last=False)
        return url

    def _http(self) -> Any:
        import aiohttp

        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                trust_env=True,  # proxies from the environment, as botocore
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=READ_TIMEOUT),
                auto_decompress=False,
            )
            atexit.register(self._close, asyncio.get_running_loop(), self._session)
        return self._session

    @staticmethod
    def _close(loop: asyncio.AbstractEventLoop, session: Any) -> None:
        """Close the session at exit while its loop still runs (else aiohttp warns)."""
        if not session.closed and loop.is_running():
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(session.close(), loop).result(timeout=2)


class RawBody:
    """An aiohttp response read as a body stream is: ``await read(n)``, ``close()``."""

    def __init__(self, response: Any) -> None:
        self.response = response

    async def read(self, n: int) -> bytes:
        data: bytes = await self.response.content.read(n)
        return data

    def close(self) -> None:
        self.response.close()


def _length(response: Any) -> int:
    try:
        return int(response.headers.get("Content-Length", -1))
    except ValueError:
        return -1


def _plain_client(fs: Any) -> bool:
    """Does the client use nothing an aiohttp session of ours would not reproduce?"""
    client_kwargs = getattr(fs, "client_kwargs", None) or {}
    config_kwargs = getattr(fs, "config_kwargs", None) or {}
    return not (
        "verify" in client_kwargs
        or any(k in config_kwargs for k in ("proxies", "proxies_config", "client_cert"))
        or getattr(fs, "req_kw", None)
        or getattr(fs, "s3_additional_kwargs", None)
    )
