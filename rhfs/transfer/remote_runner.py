"""One HTTP job of a copy route, run on a cluster by ``python3 -`` where no session serves it.

:func:`rhfs.transfer.shell.python_stdin` sends :mod:`rhfs.backends.remote_helper`'s text (its
HTTP functions: signed requests, parts in parallel, a download into a temporary sibling), then
this file's, then one line ``main(json.loads(...))`` holding the job, over the command's stdin:
the job's signed URLs and tokens are never in argv, in the environment, or in a file on the
cluster. Jobs:

- ``{"op": "upload", "file": PATH, "size": N, "parts": [[offset, length, request], ...]}``
- ``{"op": "download", "file": PATH, "size": N, "read": request}``
- ``{"op": "relay", "read": request, "size": N, "parts": [...]}``: store to store, streamed

A request is ``{"method", "url", "headers"}``. Uploads print ``{"etags": [...]}``
(one per part) on stdout; the daemon completes multipart objects itself.

Invariants: a download writes a hidden temporary sibling and renames it only once it holds
exactly ``size`` bytes, so a failure leaves nothing behind; error messages never include a
URL or a header. Written for Python 3.6 and later.
"""

import json
import sys

try:  # on the cluster these come from the helper's text, sent before this file's
    from rhfs.backends.remote_helper import describe, download, put_parts
except ImportError:
    pass


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
