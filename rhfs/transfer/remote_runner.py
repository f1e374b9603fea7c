"""The HTTP side of a copy route, run on a cluster by ``python3 -`` (standard library only).

The daemon sends this file's text, followed by one line ``main(json.loads(...))``
holding the job, over the command's stdin: the job's signed URLs and tokens are
never in argv, in the environment, or in a file on the cluster. Jobs:

- ``{"op": "upload", "file": PATH, "size": N, "parts": [[offset, length, request], ...]}``
- ``{"op": "download", "file": PATH, "size": N, "read": request}``
- ``{"op": "relay", "read": request, "size": N, "parts": [...]}``: store to store, streamed

A request is ``{"method", "url", "headers"}``. Uploads print ``{"etags": [...]}``
(one per part) on stdout; the daemon completes multipart objects itself.

Invariants: a download writes a hidden temporary sibling and renames it only once
it holds exactly ``size`` bytes, so a failure leaves nothing behind; error
messages never include a URL or a header. Written for Python 3.6 and later.
"""

import json
import os
import sys
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor

CHUNK = 1 << 20
PARTS_IN_FLIGHT = 4
TIMEOUT = 120
TMP_MARK = ".rhfs-tmp-"


class Window:
    """The bytes ``[offset, offset + length)`` of a file, as a readable body."""

    def __init__(self, path, offset, length):
        self.f = open(path, "rb")  # noqa: SIM115 (closed by close())
        self.f.seek(offset)
        self.left = length

    def read(self, n=-1):
        if self.left <= 0:
            return b""
        n = self.left if n is None or n < 0 else min(n, self.left)
        data = self.f.read(n)
        self.left -= len(data)
        return data

    def close(self):
        self.f.close()


def send(spec, body=None, length=None, extra=None):
    headers = dict(spec.get("headers") or {})
    headers.update(extra or {})
    # With a body, urllib would add a form Content-Type, which signed requests did not sign
    # for (and some servers then parse the body as a form): send it empty, as curl omits it.
    if body is not None and not any(k.lower() == "content-type" for k in headers):
        headers["Content-Type"] = ""
    if length is not None:
        headers["Content-Length"] = str(length)
    request = urllib.request.Request(spec["url"], data=body, headers=headers, method=spec["method"])
    return urllib.request.urlopen(request, timeout=TIMEOUT)


def describe(e):
    if isinstance(e, urllib.error.HTTPError):
        return f"HTTP {e.code} {e.reason}"
    if isinstance(e, urllib.error.URLError):
        return f"cannot reach the store: {e.reason}"
    return f"{type(e).__name__}: {e}"


def put_part(part, source):
    offset, length, spec = part
    if source[0] == "file":
        body = Window(source[1], offset, length)
    else:
        body = send(source[1], extra={"Range": f"bytes={offset}-{offset + length - 1}"})
    try:
        with send(spec, body=body, length=length) as response:
            response.read()
            return response.headers.get("ETag") or ""
    finally:
        body.close()


def put_parts(parts, source):
    if len(parts) == 1:
        return [put_part(parts[0], source)]
    with ThreadPoolExecutor(PARTS_IN_FLIGHT) as pool:
        return list(pool.map(lambda part: put_part(part, source), parts))


def download(spec, path, size):
    tmp = os.path.join(os.path.dirname(path), TMP_MARK + uuid.uuid4().hex)
    try:
        with send(spec) as response, open(tmp, "wb") as out:
            while True:
                data = response.read(CHUNK)
                if not data:
                    break
                out.write(data)
        got = os.path.getsize(tmp)
        if got != size:
            raise OSError(f"got {got} bytes, expected {size}")
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def main(job):
    try:
        if job["op"] == "download":
            download(job["read"], job["file"], job["size"])
            print(json.dumps({"ok": True}))
        elif job["op"] == "upload":
            print(json.dumps({"etags": put_parts(job["parts"], ("file", job["file"]))}))
        elif job["op"] == "relay":
            print(json.dumps({"etags": put_parts(job["parts"], ("http", job["read"]))}))
        else:
            raise ValueError(f"unknown op {job['op']!r}")
    except Exception as e:
        sys.stderr.write(f"rhfs copy failed: {describe(e)}\n")
        sys.exit(1)
