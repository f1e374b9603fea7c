"""The copy planner: picks the route for one whole-file copy, falling back while a route cannot run.

A :class:`Route` is one small class per way of moving bytes (docs/SEMANTICS.md "Copies"). The
planner tries them in order; the first whose :meth:`Route.applies` is true runs.
A route that cannot serve this copy raises :class:`CantCopy` *before anything
is written*; the planner logs why and tries the next. Any other failure is final:
it becomes :class:`CopyFailed` (EIO), whose message names the route, and the
route has left no partial destination (every route writes a temporary object or
file, or an unfinished upload, and only makes it visible at the end).

``tables/`` and ``blobs/`` locations are first resolved to the system and path
holding their bytes, through the view's ``underlying`` ability; a view that cannot
be bypassed raises CantCopy, and the caller falls back.

Routes choose by what each end declares (:class:`~rhfs.backends.base.Traits` and
:class:`~rhfs.backends.base.Abilities`), never by a backend's class or name:
:func:`holds_bytes`, :func:`runs_commands`, :func:`signs_requests`.

A route that runs on a cluster submits its job to the cluster's kept session
(:meth:`Context.session`) where it has one that can run it, and otherwise runs one command
for the file (:meth:`Route.in_session_or`).

Many files at once (a tree job's) go through :mod:`rhfs.transfer.batches`, which gives each
file these same routes and batches the files of a route that moves many as one job.

Invariants:
- a route counts, in :class:`Stats`, every data byte that passes through the daemon
  (read from, written to, relayed); routes run elsewhere count none;
- each copy that succeeds is counted once, under its route's name, with its size;
- no log line, and no exception message, carries a signed URL or a token.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar, TypeVar

from rhfs.backends.base import ClusterSessions, Entry, Progress
from rhfs.backends.guard import Guarded
from rhfs.config import ClusterConfig, Config
from rhfs.errors import CantCopy, NoSession, RhfsError
from rhfs.stats import Stats
from rhfs.transfer.tools import ToolCache
from rhfs.tree import Location, MountTable

log = logging.getLogger(__name__)
T = TypeVar("T")

MIN_RATE = 2 << 20  # bytes/s a transfer is allowed before it counts as hung
URL_SLACK = 600  # seconds a signed URL outlives the transfer's time limit
SESSION_SLACK = 30.0  # seconds a job on a session may take beyond its own limit (opening the session)


class CopyFailed(RhfsError):
    """A route started and failed; its message names the route. Always EIO."""


FILE_SECONDS = 0.5  # the time limit a batch allows for each file, on top of its bytes
FILES_IN_FLIGHT = 8  # files a route that runs commands one by one moves at once


@dataclass(frozen=True)
class Job:
    src: Location
    dst: Location
    entry: Entry
    progress: Progress | None = None  # told the bytes moved so far, where the route can say

    @property
    def size(self) -> int:
        return self.entry.size

    def __str__(self) -> str:
        return f"{self.src.path} -> {self.dst.path}"


@dataclass
class Context:
    """What routes share: counters, the config, the tree, and where to spool."""

    stats: Stats
    config: Config
    table: MountTable
    spool_dir: str
    tools: ToolCache
    op_timeout: float = 30.0
    _said: set[str] = field(default_factory=set)  # clusters whose lack of a session was logged
    _said_lock: threading.Lock = field(default_factory=threading.Lock)  # guards _said; a leaf

    def session(self, cluster: Guarded) -> ClusterSessions | None:
        """The cluster's kept session, where its helper can run (python3 there); None: a command per file."""
        session = cluster.abilities.session
        if session is None:
            return None
        if self.tools.lacks(cluster, "python3"):
            message = f"{cluster.system} has no python3: its copies run one command per file"
            self.say_once(cluster.system, message)
            return None
        return session

    def say_once(self, key: str, message: str) -> None:
        """Log ``message`` the first time ``key`` comes, at INFO."""
        with self._said_lock:
            if key in self._said:
                return
            self._said.add(key)
        log.info("%s", message)

    def time_limit(self, size: int) -> float:
        return self.op_timeout + size / MIN_RATE

    def batch_time_limit(self, jobs: list[Job]) -> float:
        """The time limit of one job moving ``jobs``: their bytes, and a little for each file."""
        return self.time_limit(sum(job.size for job in jobs)) + len(jobs) * FILE_SECONDS

    def url_lifetime(self, size: int) -> int:
        return int(self.time_limit(size)) + URL_SLACK

    def files_in_flight(self, *locations: Location) -> int:
        """Files a tree job between ``locations`` moves at once: the least their systems allow."""
        limits = [FILES_IN_FLIGHT]
        for loc in locations:
            system = loc.backend.system
            config = self.config.clusters.get(system) or self.config.stores.get(system)
            limits.append(config.files_in_flight if config else FILES_IN_FLIGHT)
        return min(limits[1:] or limits)

    def cluster_config(self, system: str) -> ClusterConfig | None:
        return self.config.clusters.get(system)

    def transfer_cluster(self, store_system: str) -> Guarded | None:
        store = self.config.stores.get(store_system)
        if store is None or not store.transfer_cluster:
            return None
        return self.table.mounts.get(f"clusters/{store.transfer_cluster}")


class Route:
    """One way of copying a file. Subclasses set ``name`` and implement both methods."""

    name: ClassVar[str] = "?"

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def applies(self, job: Job) -> bool:
        """Is this route meant for these two systems? Pure: no request is sent."""
        raise NotImplementedError

    def batches(self, job: Job) -> bool:
        """Does this route move files like ``job``'s many at once, as one job (:meth:`run_many`)?"""
        return False

    def prepare(self, job: Job) -> None:
        """Get ready, without blocking, for files like ``job``'s (a tree's two directories): open
        a session ahead of its jobs, say. Nothing by default."""

    def run(self, job: Job) -> None:
        """Copy the file; CantCopy (only before anything is written) to let the next route try."""
        raise NotImplementedError

    def run_many(self, jobs: list[Job], progress: Progress | None) -> list[BaseException | None]:
        """Copy ``jobs`` (all between the same two systems) as one job, for a route that
        ``batches``; each file's failure, None where it was copied, CantCopy where nothing was
        written and the next route may try. ``progress``: the bytes of all moved so far."""
        raise NotImplementedError

    def in_session_or(
        self,
        cluster: Guarded,
        limit: float,
        in_session: Callable[[ClusterSessions], T],
        per_file: Callable[[], T],
    ) -> T:
        """``in_session(session)`` under ``cluster``'s guard where its session can, else ``per_file()``.

        ``limit`` is the job's own time limit; the guard allows the session's opening on top.
        """
        session = self.ctx.session(cluster)
        if session is not None:
            try:
                return cluster.call_within(limit + SESSION_SLACK, self.name, in_session, session)
            except NoSession:
                pass  # nothing was written; the session said why, once
        return per_file()


def holds_bytes(loc: Location) -> bool:
    """Does the system keep files as written (not a view)?"""
    return loc.backend.traits.holds_bytes


def runs_commands(loc: Location) -> bool:
    """Can the system run a command on its own files (a cluster)?"""
    abilities = loc.backend.abilities
    return abilities.run is not None and abilities.remote_path is not None


def signs_requests(loc: Location) -> bool:
    """Has the system a provider adapter that signs requests and copies server-side (a store)?"""
    return loc.backend.abilities.provider is not None


class Planner:
    """The :class:`rhfs.vfs.core.Copier` of the tree: ``copy`` returns the route's name."""

    def __init__(self, ctx: Context, routes: list[Route], *, relay: Route | None = None) -> None:
        """``relay``: the route that moves any file's bytes through this process, for
        :meth:`copy_or_relay` (one of ``routes``)."""
        self.ctx = ctx
        self.routes = routes
        self.relay = relay

    def copy(self, src: Location, dst: Location, entry: Entry) -> str:
        job = Job(self.underlying(src, for_write=False), self.underlying(dst, for_write=True), entry)
        if entry.is_dir:
            raise CantCopy(f"{src.path} is a directory")
        for route in self.routes:
            if not route.applies(job):
                continue
            try:
                return self.run_route(route, job)
            except CantCopy as e:
                log.info("copy %s: route %s cannot run (%s); trying the next", job, route.name, e)
        families = job.src.backend.traits.family, job.dst.backend.traits.family
        raise CantCopy(f"copy {job}: no route between {families[0]} and {families[1]}")

    def copy_or_relay(self, src: Location, dst: Location, entry: Entry) -> str:
        """:meth:`copy`, and where no route may take the file (a view's file that must be read
        or checked by the view itself), the relay between the two locations as they are.

        For the faces that copy whole files themselves (``rhfs cp``, the Python API); in the
        mount, the kernel falls back to reads and writes instead."""
        try:
            return self.copy(src, dst, entry)
        except CantCopy as e:
            if self.relay is None or entry.is_dir:
                raise
            log.debug("copy %s -> %s: %s; relaying it through this process", src.path, dst.path, e)
        return self.run_route(self.relay, Job(src, dst, entry))

    def prepare(self, src: Location, dst: Location) -> None:
        """Get the route that files from ``src`` to ``dst`` (two directories) will take ready."""
        try:
            job = Job(
                self.underlying(src, for_write=False), self.underlying(dst, for_write=True), Entry("", True)
            )
        except CantCopy:
            return
        route = next((route for route in self.routes if route.applies(job)), None)
        if route is not None:
            route.prepare(job)

    def run_route(self, route: Route, job: Job) -> str:
        """Run one route; count the copy under its name. CantCopy passes; any other failure is final."""
        try:
            route.run(job)
        except CantCopy:
            raise
        except Exception as e:
            raise CopyFailed(f"copy {job}: route {route.name} failed: {e}") from e
        self.ctx.stats.add_copy(route.name, job.size)
        if job.progress is not None:
            job.progress(job.size)
        return route.name

    def underlying(self, loc: Location, *, for_write: bool) -> Location:
        """Where a view's file really lives (``tables/``, ``blobs/``); other locations as they are."""
        if loc.backend.traits.holds_bytes:
            return loc
        underlying = loc.backend.abilities.underlying
        if underlying is None:
            raise CantCopy(f"{loc.path}: this view keeps its bytes to itself")
        return underlying(loc.rel, for_write)
