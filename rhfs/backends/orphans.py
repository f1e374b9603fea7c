"""Unfinished uploads a dead daemon left: found and cleaned up for one target.

rhfs's start-up recovery (:mod:`rhfs.vfs.recovery`) knows which targets a dead
daemon was writing and calls :func:`abort_unfinished_uploads` for each:

- an S3 multipart upload that is never completed or aborted stays on the server,
  invisible to listings but billed, until a lifecycle rule removes it: it is aborted;
- a cluster or ``here`` upload writes a hidden temporary sibling and renames it over
  the target; one cut short leaves that sibling behind: it is removed.

Other providers need nothing: an unfinished GCS resumable upload and Azure's
uncommitted blocks expire on their own, and neither is ever visible.

Invariant: only what uploads of exactly that target left is touched, never a
whole bucket's or folder's.
"""

from __future__ import annotations

from typing import Any


def abort_unfinished_uploads(backend: Any, rel: str) -> int:
    """Clean up what unfinished uploads of exactly ``rel`` left; how many were found."""
    api = backend.api
    if getattr(api, "provider", None) != "s3":
        return 0
    bucket, _, key = rel.partition("/")
    if not key:
        return 0
    fs = api.fs

    async def go() -> int:
        aborted = 0
        request: dict[str, str] = {"Bucket": bucket, "Prefix": key}
        while True:
            page = await fs._call_s3("list_multipart_uploads", **request)
            for upload in page.get("Uploads", []) or []:
                if upload.get("Key") == key:
                    await fs._call_s3(
                        "abort_multipart_upload", Bucket=bucket, Key=key, UploadId=upload["UploadId"]
                    )
                    aborted += 1
            if not page.get("IsTruncated"):
                return aborted
            request["KeyMarker"] = page.get("NextKeyMarker", "")
            request["UploadIdMarker"] = page.get("NextUploadIdMarker", "")

    from fsspec.asyn import sync

    result: int = sync(api.loop, go)
    return result
