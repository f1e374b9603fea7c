"""S3 listings parsed without botocore's generic XML parser.

A LIST page of 1000 keys costs botocore about 40 ms of CPU: one whole parse of the
body to look for an error embedded in a 200 answer, then a parse driven by the
service model, field by field. :func:`install` makes a session's clients parse a
successful ``ListObjectsV2`` answer with one ElementTree pass instead, into the same
dict botocore gives (keys still URL-encoded when ``EncodingType`` is ``url``, which
botocore's own after-call handler decodes, as before). Every other answer, and any
answer that is not a 200, goes to botocore's parser unchanged.

Invariant: only the parse changes; signing, retries, errors and decoding stay botocore's.
"""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from typing import Any

from botocore import handlers
from botocore.parsers import lowercase_dict

from rhfs.backends.s3 import fast_timestamp

log = logging.getLogger(__name__)
LISTING_SHAPE = "ListObjectsV2Output"
LISTING_OPERATION = "ListObjectsV2"
_INTS = {"Size", "KeyCount", "MaxKeys"}
_TEXT = {
    "Name",
    "Prefix",
    "Delimiter",
    "ContinuationToken",
    "NextContinuationToken",
    "StartAfter",
    "EncodingType",
}


def _tag(element: ET.Element) -> str:
    return element.tag.rpartition("}")[2]


def _object(element: ET.Element) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for child in element:
        name, text = _tag(child), child.text or ""
        if name == "Size":
            out[name] = int(text)
        elif name == "LastModified":
            out[name] = fast_timestamp(text)
        elif name in ("Key", "ETag", "StorageClass"):
            out[name] = text
    return out


def parse_listing(body: bytes) -> dict[str, Any]:
    """The fields of a ``ListObjectsV2`` answer that botocore would give (owners left out)."""
    root = ET.fromstring(body)
    if _tag(root) != "ListBucketResult":
        raise ValueError(f"not a listing: <{_tag(root)}>")
    out: dict[str, Any] = {}
    contents: list[dict[str, Any]] = []
    prefixes: list[dict[str, str]] = []
    for child in root:
        name = _tag(child)
        if name == "Contents":
            contents.append(_object(child))
        elif name == "CommonPrefixes":
            prefixes.extend({"Prefix": p.text or ""} for p in child if _tag(p) == "Prefix")
        elif name == "IsTruncated":
            out[name] = (child.text or "").strip().lower() == "true"
        elif name in _INTS:
            out[name] = int(child.text or 0)
        elif name in _TEXT:
            out[name] = child.text or ""
    if contents:
        out["Contents"] = contents
    if prefixes:
        out["CommonPrefixes"] = prefixes
    return out


class ListingParser:
    """A response parser: listings by :func:`parse_listing`, the rest by botocore's parser."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def parse(self, response: dict[str, Any], shape: Any) -> Any:
        if shape is not None and shape.name == LISTING_SHAPE and response.get("status_code") == 200:
            try:
                parsed = parse_listing(response["body"])
            except (ET.ParseError, ValueError, TypeError):
                pass  # anything unexpected: botocore decides, as it always did
            else:
                parsed["ResponseMetadata"] = {
                    "HTTPStatusCode": 200,
                    "HTTPHeaders": lowercase_dict(response["headers"]),
                }
                return parsed
        return await self._inner.parse(response, shape)


def _handle_200_error(operation_model: Any, response_dict: Any, **kwargs: Any) -> None:
    """botocore's check for an error inside a 200 answer (a whole parse of the body), made
    only when a listing's first bytes name an error: a listing always starts with its root."""
    if operation_model.name == LISTING_OPERATION and response_dict:
        head = response_dict.get("body")
        if isinstance(head, bytes | bytearray) and b"<ListBucketResult" in head[:512]:
            return
    handlers._handle_200_error(operation_model, response_dict, **kwargs)


def install(session: Any) -> None:
    """Make the clients ``session`` creates from now on parse listings with :func:`parse_listing`.

    A botocore without the hooks this relies on keeps its own parser: listings are then
    slower, never wrong.
    """
    if not callable(getattr(handlers, "_handle_200_error", None)):
        log.info("botocore has no _handle_200_error: S3 listings keep botocore's parser")
        return
    factory = session.get_component("response_parser_factory")
    create = factory.create_parser

    def create_parser(protocol_name: str) -> Any:
        parser = create(protocol_name)
        return ListingParser(parser) if protocol_name == "rest-xml" else parser

    factory.create_parser = create_parser
    emitter = session.get_component("event_emitter")
    emitter.unregister("before-parse.s3.*", handlers._handle_200_error)
    emitter.register_first("before-parse.s3.*", _handle_200_error)
