"""HTTP requests that someone else (a command on a cluster) can run to read or write one
object without the store's credentials, whatever the provider.

- :class:`HttpRequest`: one request; S3 presigned URLs, GCS media URLs with a
  short-lived token or resumable-upload sessions, Azure SAS URLs;
- :class:`WritePlan`: how to write one object. A write too big for one request is a
  multipart plan whose parts the remote side uploads and whose completion the daemon
  does (:meth:`WritePlan.finish`), or whose parts it removes (:meth:`WritePlan.abort`).

Each provider makes them (:meth:`~rhfs.backends.providers.Provider.read_request` and
:meth:`~rhfs.backends.providers.Provider.write_plan`).

Invariant: a URL or a header carries a signature or a token: :class:`HttpRequest` hides
them from ``repr``, and nothing logs them or puts them into an exception message.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class HttpRequest:
    """One HTTP request; ``url`` and ``headers`` may hold a signature or a token."""

    method: str
    url: str = field(repr=False)
    headers: dict[str, str] = field(default_factory=dict, repr=False)

    def as_json(self) -> dict[str, Any]:
        return {"method": self.method, "url": self.url, "headers": dict(self.headers)}


@dataclass
class WritePlan:
    """How to write one object: ``parts`` of ``(offset, length, request)``, then ``finish``.

    A one-part plan's request writes the whole object and needs no finish. For more
    parts, the runner returns each part's ``ETag`` response header and the daemon
    completes the object with :meth:`finish`, or removes the parts with :meth:`abort`.
    """

    parts: list[tuple[int, int, HttpRequest]]
    _finish: Callable[[list[str]], None] | None = field(default=None, repr=False)
    _abort: Callable[[], None] | None = field(default=None, repr=False)

    @property
    def single(self) -> bool:
        return len(self.parts) == 1

    def finish(self, etags: list[str]) -> None:
        if self._finish is not None:
            self._finish(etags)

    def abort(self) -> None:
        if self._abort is not None:
            self._abort()


__all__ = ["HttpRequest", "WritePlan"]
