"""S3 listings parsed by rhfs.backends.listing_xml give what botocore's parser gives.

Against the testbed's moto: odd key names (URL-encoded in the answer), common
prefixes, and pages joined by continuation tokens.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from testbed import Testbed, fsspec_filesystem

from rhfs.backends import listing_xml
from rhfs.backends.object_api import open_object_api
from rhfs.backends.store import StoreBackend

NAMES = [
    "plain",
    "with space",
    "plus+sign",
    "percent%41",
    "ünïcødé",
    "amp&lt",
    "q?mark",
    "tab\tname",
    "sub/inner",
]


def _pages(fs: Any, prefix: str, **extra: Any) -> list[dict[str, Any]]:
    kwargs = {
        "Bucket": prefix.split("/")[0],
        "Prefix": prefix.split("/", 1)[1] + "/",
        "Delimiter": "/",
        **extra,
    }
    pages = []
    while True:
        page = fs.call_s3("list_objects_v2", **kwargs)
        page.pop("ResponseMetadata", None)
        pages.append(page)
        if not page.get("IsTruncated"):
            return pages
        kwargs["ContinuationToken"] = page["NextContinuationToken"]


def _count_parses(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    parsed: list[int] = []
    parse = listing_xml.parse_listing

    def counted(body: bytes) -> dict[str, Any]:
        parsed.append(1)
        return parse(body)

    monkeypatch.setattr(listing_xml, "parse_listing", counted)
    return parsed


@pytest.fixture
def listed(testbed: Testbed) -> Any:
    fs = fsspec_filesystem(testbed, "s3")
    prefix = f"{testbed.bucket}/listing-{uuid.uuid4().hex[:8]}"
    fs.pipe({f"{prefix}/{name}": name.encode() for name in NAMES})
    yield fs, prefix
    fs.rm(prefix, recursive=True)


def test_fast_listing_gives_what_botocore_gives(
    testbed: Testbed, listed: tuple[Any, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    plain, prefix = listed
    fast = fsspec_filesystem(testbed, "s3")
    listing_xml.install(fast.session if fast.session is not None else _session(fast))
    parsed = _count_parses(monkeypatch)
    for extra in ({}, {"MaxKeys": 3}):
        want, got = _pages(plain, prefix, **extra), _pages(fast, prefix, **extra)
        for page in want + got:
            for item in page.get("Contents", []):
                item.pop("Owner", None)
                item.pop("ChecksumAlgorithm", None)
                item.pop("ChecksumType", None)
        assert got == want
    assert len(parsed) == 1 + 3  # one page, then three of at most 3 entries (8 keys, 1 prefix)
    keys = [c["Key"] for page in got for c in page.get("Contents", [])]
    assert sorted(k.rsplit("/", 1)[-1] for k in keys) == sorted(n for n in NAMES if "/" not in n)


def _session(fs: Any) -> Any:
    from aiobotocore.session import AioSession

    fs.session = AioSession()
    return fs.session


def test_a_store_lists_odd_names_through_the_fast_parser(
    testbed: Testbed, listed: tuple[Any, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, prefix = listed
    parsed = _count_parses(monkeypatch)
    options = {"key": testbed.s3_key, "secret": testbed.s3_secret, "endpoint_url": testbed.s3_endpoint}
    api = open_object_api("s3", options)
    store = StoreBackend("s3", "s3", options, api=api)
    entries = store.list(prefix)
    assert [(e.name, e.is_dir, e.size) for e in entries] == sorted(
        (n.split("/")[0], "/" in n, 0 if "/" in n else len(n.encode())) for n in NAMES
    )
    assert all(e.etag and e.mtime > 0 for e in entries if not e.is_dir)
    assert parsed == [1]


def test_a_body_that_is_not_a_listing_is_left_to_botocore() -> None:
    with pytest.raises(ValueError):
        listing_xml.parse_listing(b"<?xml version='1.0'?><Error><Code>InternalError</Code></Error>")
