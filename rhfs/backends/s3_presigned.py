"""S3 GETs and small PUTs by presigned URL: the same requests, without botocore's work.

Reads and small uploads are a mount's hottest paths, and botocore spends more time
building, signing and parsing a request than a local S3 server takes to answer it
(2.5 ms against 2 ms for a ranged GET on s3rver; s3fs's put_file of 4 KiB costs
twice a presigned PUT). A URL is signed locally by the same client (its endpoint,
region and credentials): once per object for GETs, reused for ``URL_LIFETIME``;
once per upload for PUTs. The request itself is a plain aiohttp request on the
client's event loop. The ``If-Match`` header still pins the version that was opened.

Invariants:
- only what botocore would have got is returned: a 206 for the range asked (or a 200
  for a range that is the whole object); 404 is FileNotFoundError and 412 (with an
  etag) is :func:`~rhfs.backends.object_api.stale`, as on the botocore path;
- anything else (another status, a connection error, an expired URL) returns None
  (False for a PUT) and the caller makes the request through botocore, which retries
  and explains;
- clients with settings this session would not honour (TLS verification, a proxy,
  proxies in the client config, requester pays, request parameters) never take this path,
  and after ``MISSES_ALLOWED`` fallbacks in a row the client rests on botocore for ``REST``
  seconds;
- a URL is never logged with its query (it holds a signature): errors are logged
  through :func:`error_text`; a URL is reused no longer than the credentials that signed it.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import datetime as dt
import logging
import os
import re
import ssl
import time
from collections import OrderedDict
from typing import Any

from rhfs.backends.object_api import stale

log = logging.getLogger(__name__)

URL_LIFETIME = 3600  # seconds a presigned URL is valid
URL_REUSE = URL_LIFETIME - 300  # ... and reused
URLS_KEPT = 4096
READ_TIMEOUT = 60  # seconds without a byte before a request is abandoned (botocore's default)
READ_BUFFER = 4 << 20  # a body is read in pieces of up to this; aiohttp buffers up to twice this
MISSES_ALLOWED = 8  # fallbacks in a row before the client rests on botocore ...
REST = 300  # ... for this many seconds


class Presigned:
    def __init__(self, fs: Any) -> None:
        self.fs = fs
        self._urls: OrderedDict[tuple[str, str], tuple[str, float]] = OrderedDict()
        self._session: Any = None
        self._misses = 0
        self._resting_until = 0.0
        self.enabled = _plain_client(fs)
        self._proxied_origins: dict[tuple[str, str], bool] = {}  # (scheme, host:port) -> proxied?

    async def get(self, bucket: str, key: str, start: int, end: int, etag: str | None) -> Any:
        """An open aiohttp response for bytes ``start:end``, or None: use botocore instead."""
        if not self.enabled or time.monotonic() < self._resting_until:
            return None
        import aiohttp

        try:
            url = await self._url(bucket, key)
            headers = {"Range": f"bytes={start}-{end - 1}"}
            if etag:
                headers["If-Match"] = f'"{etag}"'
            response = await self._http().get(_encoded(url), headers=headers, allow_redirects=False)
        except (aiohttp.ClientError, OSError, ValueError) as e:
            self.missed(f"GET of {bucket}/{key}: {error_text(e)}")
            return None
        if (response.status == 206 and _range_start(response) == start) or (
            response.status == 200 and start == 0 and _length(response) == end
        ):
            self._misses = 0
            return response
        response.release()
        if response.status == 404:
            self._misses = 0
            raise FileNotFoundError(f"{bucket}/{key}")
        if response.status == 412 and etag:
            self._misses = 0
            raise stale(f"{bucket}/{key}")
        if response.status == 403:
            self._urls.pop((bucket, key), None)  # expired credentials or URL: sign again next time
        self.missed(f"GET of {bucket}/{key}: HTTP {response.status}")
        return None

    def missed(self, what: str) -> None:
        """A request went back to botocore; too many in a row and this client stays there."""
        self._misses += 1
        log.debug("presigned %s; through botocore", what)
        if self._misses >= MISSES_ALLOWED:
            self._misses = 0
            self._resting_until = time.monotonic() + REST
            log.warning(
                "presigned requests failed %d times in a row (last: %s); botocore for %ds",
                MISSES_ALLOWED,
                what,
                REST,
            )

    async def put(self, bucket: str, key: str, data: bytes) -> bool:
        """PUT ``data`` as ``bucket/key`` in one request; False: use botocore instead."""
        if not self.enabled or time.monotonic() < self._resting_until:
            return False
        import aiohttp

        try:
            url, _ = await self._sign("PUT", "put_object", bucket, key)
            async with self._http().put(_encoded(url), data=data) as response:
                await response.read()
                if response.status == 200:
                    self._misses = 0
                    return True
                self.missed(f"PUT of {bucket}/{key}: HTTP {response.status}")
        except (aiohttp.ClientError, OSError, ValueError) as e:
            self.missed(f"PUT of {bucket}/{key}: {error_text(e)}")
        return False

    async def _url(self, bucket: str, key: str) -> str:
        now = time.monotonic()
        hit = self._urls.get((bucket, key))
        if hit is not None and hit[1] > now:
            self._urls.move_to_end((bucket, key))
            return hit[0]
        url, valid = await self._sign("GET", "get_object", bucket, key)
        self._urls[(bucket, key)] = (url, now + min(URL_REUSE, valid))
        while len(self._urls) > URLS_KEPT:
            self._urls.popitem(last=False)
        return url

    async def _sign(self, method: str, operation: str, bucket: str, key: str) -> tuple[str, float]:
        """A SigV4 query-signed URL (botocore presigns S3 URLs with SigV2 unless told otherwise),
        and for how many seconds it may be reused.

        The client's own presigned URL gives the object's address (endpoint, addressing
        style, quoting); its query is replaced by a SigV4 signature with the client's
        current credentials (temporary ones carry their token). Anonymous clients get the
        bare address.
        """
        from botocore.auth import S3SigV4QueryAuth
        from botocore.awsrequest import AWSRequest

        client = await self.fs.set_session()
        presigned: str = await client.generate_presigned_url(
            operation, Params={"Bucket": bucket, "Key": key}, ExpiresIn=URL_LIFETIME
        )
        address = presigned.split("?", 1)[0]
        if self._proxied(address):  # botocore takes the environment's proxies; this session does not
            self.enabled = False
            raise ValueError("the endpoint is reached through a proxy")
        credentials = client._get_credentials()  # botocore's (documented as private) accessor
        if credentials is None:
            return address, URL_REUSE
        frozen = await credentials.get_frozen_credentials()
        request = AWSRequest(method=method, url=address)
        region = client.meta.region_name or "us-east-1"
        S3SigV4QueryAuth(frozen, "s3", region, expires=URL_LIFETIME).add_auth(request)
        url: str = request.url
        return url, _credentials_left(credentials)

    def _proxied(self, address: str) -> bool:
        """:func:`_proxied`, asked once per origin (the daemon's environment does not change)."""
        import urllib.parse

        origin = urllib.parse.urlsplit(address)[:2]
        known = self._proxied_origins.get(origin)
        if known is None:
            known = self._proxied_origins[origin] = _proxied(address)
        return known

    def _http(self) -> Any:
        import aiohttp

        if self._session is None or self._session.closed:
            bundle = os.environ.get("AWS_CA_BUNDLE")  # as botocore: this bundle verifies TLS
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    ssl=ssl.create_default_context(cafile=bundle) if bundle else True
                ),
                trust_env=False,  # no proxy (see _proxied), and no netrc lookup per request
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=READ_TIMEOUT),
                auto_decompress=False,
                read_bufsize=READ_BUFFER,  # not 64 KiB: one stream runs faster (fewer loop turns)
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


def error_text(e: BaseException) -> str:
    """An error's message with any URL query (a presigned URL's signature) cut out."""
    return re.sub(r"\?[^\s'\")>]*", "?...", f"{type(e).__name__}: {e}")


def _encoded(url: str) -> Any:
    """The URL as signed: aiohttp must not quote it again."""
    import yarl

    return yarl.URL(url, encoded=True)


def _range_start(response: Any) -> int:
    """The first byte of a 206 (``Content-Range: bytes START-END/SIZE``), -1 if unreadable."""
    match = re.match(r"bytes (\d+)-", response.headers.get("Content-Range", ""))
    return int(match.group(1)) if match else -1


def _credentials_left(credentials: Any) -> float:
    """Seconds until temporary credentials expire, less a margin; URL_REUSE for lasting ones."""
    expiry = getattr(credentials, "_expiry_time", None)  # botocore's RefreshableCredentials
    if expiry is None:
        return URL_REUSE
    left = (expiry - dt.datetime.now(dt.UTC)).total_seconds() - 60
    return max(0.0, min(URL_REUSE, left))


def _length(response: Any) -> int:
    try:
        return int(response.headers.get("Content-Length", -1))
    except ValueError:
        return -1


def _proxied(url: str) -> bool:
    """Would botocore reach ``url`` through a proxy from the environment (HTTPS_PROXY, ...)?"""
    import urllib.parse
    import urllib.request

    parts = urllib.parse.urlsplit(url)
    return parts.scheme in urllib.request.getproxies() and not urllib.request.proxy_bypass(
        parts.hostname or ""
    )


def _plain_client(fs: Any) -> bool:
    """Does the client use nothing an aiohttp session of ours would not reproduce?"""
    client_kwargs = getattr(fs, "client_kwargs", None) or {}
    config_kwargs = getattr(fs, "config_kwargs", None) or {}
    return not (
        "verify" in client_kwargs
        or getattr(fs, "kwargs", {}).get("verify") is not None
        or any(k in config_kwargs for k in ("proxies", "proxies_config", "client_cert"))
        or getattr(fs, "req_kw", None)
        or getattr(fs, "s3_additional_kwargs", None)
    )
