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
from pathlib import Path
from typing import Any

from rhfs.backends import remote_helper
from rhfs.backends.guard import Guarded
from rhfs.backends.signed import HttpRequest
from rhfs.errors import CantCopy, RhfsError
from rhfs.tree import Location

MISSING_TOOL, NO_AGENT = 127, 125
RUNNER = Path(__file__).with_name("remote_runner.py")
HELPER = Path(remote_helper.__file__)  # the runner calls its HTTP functions


def remote_path(loc: Location) -> str:
    """The absolute path of a cluster location (the cluster's root may need asking)."""
    resolve = loc.backend.abilities.remote_path
    if resolve is None:
        raise CantCopy(f"{loc.backend.system} has no paths to run commands on")
    return resolve(loc.rel)


def run_on(guard: Guarded, command: str, *, stdin: bytes | None, timeout: float) -> tuple[int, str, str]:
    """Run ``command`` on the cluster behind ``guard``; secrets only ever in ``stdin``."""
    run = guard.abilities.run
    if run is None:
        raise CantCopy(f"{guard.system} runs no commands")
    return run(command, stdin=stdin, timeout=timeout)


def require(tool: str) -> str:
    return f"command -v {tool} >/dev/null 2>&1 || exit {MISSING_TOOL}"


def raise_for_exit(code: int, err: str, where: str) -> None:
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
    """The runner's source (after the helper's, whose functions it calls) and its job, for ``python3 -``."""
    source = HELPER.read_text() + "\n" + RUNNER.read_text()
    return (source + f"\nmain(json.loads({json.dumps(job)!r}))\n").encode()


def parse_etags(out: str) -> list[str]:
    try:
        etags = json.loads(out.strip().splitlines()[-1])["etags"]
    except (ValueError, KeyError, IndexError) as e:
        raise RhfsError(f"the runner's answer is not understood: {e}") from None
    return [str(e) for e in etags]
