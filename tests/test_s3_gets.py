"""S3 reads by presigned URL (rhfs.backends.s3_gets) against the testbed's moto.

The fast path must answer exactly what the botocore path answers: the bytes of the
version that was opened, ESTALE once it is replaced, ENOENT once it is gone; and a
client with settings the fast path cannot honour never takes it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import uuid
from collections.abc import Iterator

import pytest
from testbed import Testbed

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
    gets = backend.api.gets  # type: ignore[attr-defined]
    assert gets.enabled and len(gets._urls) == 1  # signed once, used for both
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
        assert not backend.api.gets.enabled  # type: ignore[attr-defined]
