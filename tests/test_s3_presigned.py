"""S3 reads and small uploads by presigned URL (rhfs.backends.s3_presigned) against moto.

The fast path must answer exactly what the botocore path answers: the bytes of the
version that was opened, ESTALE once it is replaced, ENOENT once it is gone; and a
client with settings the fast path cannot honour never takes it.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from service_fixtures import KeyGate
from testbed import Testbed

from rhfs.backends.s3_presigned import MISSES_ALLOWED, _proxied, error_text
from rhfs.backends.store import StoreBackend
from rhfs.backends.streams import BodyStream
from rhfs.errors import RhfsError, to_errno

MiB = 1 << 20


@pytest.fixture
def store(testbed: Testbed) -> Iterator[tuple[StoreBackend, str]]:
    options = {"key": testbed.s3_key, "secret": testbed.s3_secret, "endpoint_url": testbed.s3_endpoint}
    backend = StoreBackend("s3", "s3", options, (testbed.bucket,))
    prefix = f"{testbed.bucket}/gets-{uuid.uuid4().hex[:8]}"
    yield backend, prefix
    fs = backend.api.fs  # type: ignore[attr-defined]
    with contextlib.suppress(FileNotFoundError):
        fs.rm(prefix, recursive=True)


def put(backend: StoreBackend, path: str, data: bytes) -> None:
    backend.api.fs.pipe_file(path, data)  # type: ignore[attr-defined]


def test_ranged_reads_and_streams_take_the_presigned_path(store: tuple[StoreBackend, str]) -> None:
    backend, prefix = store
    data = os.urandom(3 * MiB + 17)
    put(backend, f"{prefix}/a", data)
    entry = backend.stat(f"{prefix}/a")
    reader = backend.open_reader(f"{prefix}/a", entry)
    assert reader.read(MiB + 5, 1000) == data[MiB + 5 : MiB + 1005]
    assert reader.read(0, len(data)) == data
    presigned = backend.api.presigned  # type: ignore[attr-defined]
    assert presigned.enabled and len(presigned._urls) == 1  # signed once, used for both
    stream = reader.stream(100, len(data))
    assert isinstance(stream, BodyStream)
    got = b"".join(iter(lambda: stream.read(MiB), b""))
    assert got == data[100:]


def test_a_replaced_object_is_stale_and_a_removed_one_is_gone(store: tuple[StoreBackend, str]) -> None:
    backend, prefix = store
    put(backend, f"{prefix}/b", b"first version")
    reader = backend.open_reader(f"{prefix}/b", backend.stat(f"{prefix}/b"))
    assert reader.read(0, 5) == b"first"
    put(backend, f"{prefix}/b", b"second version")
    with pytest.raises(RhfsError) as caught:
        reader.read(0, 5)
    assert caught.value.errno == errno.ESTALE
    with pytest.raises(RhfsError):
        reader.stream(0, 5)
    fresh = backend.open_reader(f"{prefix}/b", backend.stat(f"{prefix}/b"))
    assert fresh.read(0, 6) == b"second"
    backend.api.fs.rm_file(f"{prefix}/b")  # type: ignore[attr-defined]
    with pytest.raises(Exception) as gone:
        fresh.read(0, 6)
    assert to_errno(gone.value) in (errno.ENOENT, errno.ESTALE)


def test_a_client_with_its_own_tls_or_request_settings_stays_on_botocore(testbed: Testbed) -> None:
    base = {"key": testbed.s3_key, "secret": testbed.s3_secret, "endpoint_url": testbed.s3_endpoint}
    for extra in ({"client_kwargs": {"verify": False}}, {"requester_pays": True}):
        backend = StoreBackend("s3", "s3", {**base, **extra}, (testbed.bucket,))
        assert not backend.api.presigned.enabled  # type: ignore[attr-defined]


def test_small_uploads_take_one_presigned_put(store: tuple[StoreBackend, str], tmp_path: Any) -> None:
    backend, prefix = store
    calls: list[str] = []
    api = backend.api
    original = api.presigned.put  # type: ignore[attr-defined]

    async def counting(bucket: str, key: str, data: bytes) -> bool:
        calls.append(key)
        result: bool = await original(bucket, key, data)
        assert result  # taken, not fallen back from
        return result

    api.presigned.put = counting  # type: ignore[attr-defined]
    for size in (0, 1, 4096, 3 * MiB):
        local = tmp_path / f"f{size}"
        local.write_bytes(os.urandom(size))
        backend.upload(str(local), f"{prefix}/up{size}")
        entry = backend.stat(f"{prefix}/up{size}")
        assert entry.size == size
        assert backend.open_reader(f"{prefix}/up{size}", entry).read(0, size) == local.read_bytes()
    assert len(calls) == 4


def test_a_refused_url_is_signed_again_and_never_logged(
    testbed: Testbed, store: tuple[StoreBackend, str], caplog: pytest.LogCaptureFixture
) -> None:
    direct, prefix = store
    gate = KeyGate(testbed.s3_endpoint)  # refuses a URL signed with another key, as a provider would
    gate.allowed.add(testbed.s3_key)
    try:
        options = {"key": testbed.s3_key, "secret": testbed.s3_secret, "endpoint_url": gate.url}
        backend = StoreBackend("s3", "s3", options, (testbed.bucket,))
        put(backend, f"{prefix}/c", b"0123456789")
        entry = direct.stat(f"{prefix}/c")  # the gate's HEAD answers carry no length
        reader = backend.open_reader(f"{prefix}/c", entry)
        assert reader.read(2, 3) == b"234"
        presigned = backend.api.presigned  # type: ignore[attr-defined]
        ((bucket_key, (url, until)),) = presigned._urls.items()
        assert "X-Amz-Signature=" in url
        revoked = url.replace(f"X-Amz-Credential={testbed.s3_key}", "X-Amz-Credential=revoked")
        presigned._urls[bucket_key] = (revoked, until)
        with caplog.at_level(logging.DEBUG, logger="rhfs"):
            assert reader.read(5, 2) == b"56"  # refused (403), then through botocore
            assert bucket_key not in presigned._urls
            assert reader.read(0, 1) == b"0"  # through a new URL
        assert gate.refused == ["revoked"]
        assert presigned._urls[bucket_key][0] != revoked
        assert "HTTP 403" in caplog.text
        assert "Signature" not in caplog.text and "X-Amz" not in caplog.text
        assert presigned.enabled
    finally:
        gate.close()


def test_errors_are_logged_without_a_url_query() -> None:
    error = ValueError("400, message='bad', url='http://h/b/k?X-Amz-Signature=abc&X-Amz-Credential=k'")
    assert "abc" not in error_text(error) and "X-Amz" not in error_text(error)
    assert error_text(error).startswith("ValueError: 400")


def test_an_endpoint_behind_a_proxy_stays_on_botocore(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("http_proxy", "http://proxy.invalid:3128")
    monkeypatch.setenv("no_proxy", "localhost")
    assert _proxied("http://127.0.0.1:9000/bucket/key")
    assert not _proxied("https://127.0.0.1:9000/bucket/key")
    assert not _proxied("http://localhost:9000/bucket/key")
    monkeypatch.delenv("http_proxy")
    assert not _proxied("http://127.0.0.1:9000/bucket/key")


def test_after_misses_in_a_row_a_store_rests_on_botocore(store: tuple[StoreBackend, str]) -> None:
    backend, prefix = store
    put(backend, f"{prefix}/d", b"abcdef")
    presigned = backend.api.presigned  # type: ignore[attr-defined]
    for _ in range(MISSES_ALLOWED):
        presigned.missed("GET of a test object: HTTP 500")
    assert backend.open_reader(f"{prefix}/d", backend.stat(f"{prefix}/d")).read(1, 3) == b"bcd"
    assert presigned._urls == {}  # through botocore: nothing signed
    presigned._resting_until = 0.0  # the rest is over
    assert backend.open_reader(f"{prefix}/d", backend.stat(f"{prefix}/d")).read(1, 3) == b"bcd"
    assert len(presigned._urls) == 1
