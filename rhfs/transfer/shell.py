"""Helpers for commands run on a cluster, by the routes and by a cluster's own ``copy_within``.

Commands are fixed text built with ``shlex.quote`` from paths and sizes only;
everything secret (signed URLs, tokens) goes in the command's stdin: as a curl
config (:func:`curl_config`) or as the job of :mod:`rhfs.transfer.remote_runner`
(:func:`python_stdin`).

Exit codes the commands use: 127 a tool is missing, 125 no forwarded agent;
both mean the route cannot run (nothing was written), anything else non-zero
means it failed.
"""

from __future__ import annotations

import json
import posixpath
import shlex
from functools import partial
from pathlib import Path
from typing import Any

from rhfs.backends.base import upload_tmp_name
from rhfs.backends.guard import Guarded
from rhfs.backends.transfers import HttpRequest
from rhfs.errors import CantCopy, RhfsError
from rhfs.vfs.tree import Location

MISSING_TOOL, NO_AGENT = 127, 125
RUNNER = Path(__file__).with_name("remote_runner.py")


def backend(loc: Location) -> Guarded:
    assert loc.backend is not None
    return loc.backend


def remote_path(loc: Location) -> str:
    """The absolute path of a cluster location (the cluster's root may need asking)."""
    guard = backend(loc)
    path: str = guard.call("resolve", guard.inner.remote_path, loc.rel)  # type: ignore[attr-defined]
    return path


def run_on(guard: Guarded, command: str, *, stdin: bytes | None, timeout: float) -> tuple[int, str, str]:
    """Run ``command`` on the cluster behind ``guard``; secrets only ever in ``stdin``."""
    run: Any = partial(guard.inner.run, command, stdin=stdin, timeout=timeout)  # type: ignore[attr-defined]
    result: tuple[int, str, str] = guard.call_within(timeout + 5, "run", run)
    return result


def tmp_sibling(path: str) -> str:
    return posixpath.join(posixpath.dirname(path), upload_tmp_name(posixpath.basename(path)))


def copy_then_rename(src: str, dst: str) -> str:
    """``cp`` of ``src`` into a temporary sibling of ``dst``, renamed over ``dst``; removed on failure.

    ``dst`` never holds part of a copy. The command exits 1 if either step failed.
    """
    tmp, q = tmp_sibling(dst), shlex.quote
    return f"cp -- {q(src)} {q(tmp)} && mv -f -- {q(tmp)} {q(dst)} || {{ rm -f -- {q(tmp)}; exit 1; }}"


def require(tool: str) -> str:
    return f"command -v {tool} >/dev/null 2>&1 || exit {MISSING_TOOL}"


def check(code: int, err: str, where: str) -> None:
    """Raise for a command's failure: CantCopy when it could not start, RhfsError otherwise."""
    if code == 0:
        return
    if code == MISSING_TOOL:
        raise CantCopy(f"{where} lacks a tool the route needs")
    if code == NO_AGENT:
        raise CantCopy(f"{where} got no forwarded agent (AllowAgentForwarding?)")
    raise RhfsError(f"exit {code} on {where}: {err.strip()[-300:] or 'no message'}")


def _curl_quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def curl_config(request: HttpRequest) -> bytes:
    """A curl ``--config`` for one request (read by ``curl -K -`` from stdin)."""
    lines = [f"url = {_curl_quote(request.url)}", f"request = {_curl_quote(request.method)}"]
    lines += [f"header = {_curl_quote(f'{k}: {v}')}" for k, v in request.headers.items()]
    return ("\n".join(lines) + "\n").encode()


def python_stdin(job: dict[str, Any]) -> bytes:
    """The runner's source and its job, for ``python3 -``."""
    source = RUNNER.read_text()
    return (source + f"\nmain(json.loads({json.dumps(job)!r}))\n").encode()


def parse_etags(out: str) -> list[str]:
    try:
        etags = json.loads(out.strip().splitlines()[-1])["etags"]
    except (ValueError, KeyError, IndexError) as e:
        raise RhfsError(f"the runner's answer is not understood: {e}") from None
    return [str(e) for e in etags]
