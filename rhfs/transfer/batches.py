"""Many files at once: the files of a tree job, each by the routes a copy of its own would take.

:func:`copy_many` gives every file the planner's routes in the planner's order, the relay
last (as :meth:`Planner.copy_or_relay` does one file). Files whose route moves many files as
one job (:meth:`Route.batches`: a push between two clusters, a copy within one, files of this
host sent to a cluster's session) go to it in batches of up to :data:`BATCH_FILES` files and
:data:`BATCH_BYTES` bytes; the others go one by one; ``in_flight`` units run at once. A file
its route cannot take (CantCopy: nothing was written) goes on to the next route, in a next
round. Every copied file is counted once, under its route's name, as a copy of its own is.

:func:`one_by_one` and :func:`retry_per_file` serve routes that batch, where a batch cannot
run as one job (no session there) or a file of it cannot (NoSession: its per-file command may).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from functools import partial

from rhfs.backends.base import Entry, Progress
from rhfs.errors import CantCopy, NoSession
from rhfs.transfer.planner import FILES_IN_FLIGHT, CopyFailed, Job, Planner, Route
from rhfs.tree import Location

log = logging.getLogger(__name__)

BATCH_FILES = 200  # files in one job of a route that moves many at once
BATCH_BYTES = 256 << 20  # bytes in one such job (a bigger file goes alone)


def copy_many(
    planner: Planner,
    items: list[tuple[Location, Location, Entry]],
    *,
    in_flight: int,
    moved: Progress | None = None,
) -> list[str | BaseException]:
    """:meth:`copy_or_relay` of every file in ``items``, many at once (see the module's
    docstring); each file's route name, or why it was not copied. ``moved(n)``: ``n``
    more bytes moved, as the routes tell."""
    outcomes: list[str | BaseException] = [CantCopy("no route")] * len(items)
    tries = {index: _candidates(planner, *item) for index, item in enumerate(items)}
    with ThreadPoolExecutor(max(1, in_flight), thread_name_prefix="rhfs-copy") as pool:
        while tries := {index: left for index, left in tries.items() if left}:
            units = _units({index: left[0] for index, left in tries.items()})
            for unit, results in zip(
                units, pool.map(partial(_run_unit, planner, moved=moved), units), strict=True
            ):
                for (index, (route, job)), result in zip(unit, results, strict=True):
                    outcomes[index] = route.name if result is None else result
                    if isinstance(result, CantCopy):
                        log.info("copy %s: route %s cannot run (%s)", job, route.name, result)
                        tries[index] = tries[index][1:]
                    else:
                        tries[index] = []
    return outcomes


def _candidates(planner: Planner, src: Location, dst: Location, entry: Entry) -> list[tuple[Route, Job]]:
    """The routes that apply to one file, in order, each with its job; the relay last."""
    candidates: list[tuple[Route, Job]] = []
    try:
        job = Job(planner.underlying(src, for_write=False), planner.underlying(dst, for_write=True), entry)
        candidates = [(route, job) for route in planner.routes if route.applies(job)]
    except CantCopy as e:
        log.debug("copy %s -> %s: %s", src.path, dst.path, e)
    if planner.relay is not None:
        candidates.append((planner.relay, Job(src, dst, entry)))
    return candidates


def _run_unit(
    planner: Planner, unit: list[tuple[int, tuple[Route, Job]]], moved: Progress | None
) -> list[BaseException | None]:
    """Run one file, or one batch of files on one route; each file's failure (None: copied)."""
    route, meter = unit[0][1][0], _Meter(moved)
    jobs = [replace(job, progress=meter) for _, (_, job) in unit]
    if not route.batches(jobs[0]):
        try:
            planner.run_route(route, jobs[0])
        except Exception as e:
            return [e]
        return [None]
    try:
        results = route.run_many(jobs, meter)
    except Exception as e:
        results = [e] * len(jobs)
    for job, result in zip(jobs, results, strict=True):
        if result is None:
            planner.ctx.stats.add_copy(route.name, job.size)
    meter(sum(job.size for job, result in zip(jobs, results, strict=True) if result is None))
    return [_final(route, job, result) for job, result in zip(jobs, results, strict=True)]


def one_by_one(run: Callable[[Job], None], jobs: list[Job]) -> list[BaseException | None]:
    """``run(job)`` of each job, a few at once: for a route that batches, where it cannot; each
    file's failure, None where it was copied."""

    def outcome(job: Job) -> BaseException | None:
        try:
            run(job)
        except Exception as e:
            return e
        return None

    with ThreadPoolExecutor(min(FILES_IN_FLIGHT, len(jobs)) or 1, thread_name_prefix="rhfs-file") as pool:
        return list(pool.map(outcome, jobs))


def retry_per_file(
    jobs: list[Job], outcomes: list[BaseException | None], run: Callable[[Job], None]
) -> list[BaseException | None]:
    """``outcomes`` of a batch, with the files the session could not take (NoSession, nothing
    written) run one by one by ``run``."""
    again = [i for i, outcome in enumerate(outcomes) if isinstance(outcome, NoSession)]
    if again:
        for i, outcome in zip(again, one_by_one(run, [jobs[i] for i in again]), strict=True):
            outcomes[i] = outcome
    return outcomes


def _final(route: Route, job: Job, result: BaseException | None) -> BaseException | None:
    """One file's outcome in a batch, as :meth:`Planner._run` gives a file's alone."""
    if result is None or isinstance(result, (CantCopy, CopyFailed)):
        return result
    return CopyFailed(f"copy {job}: route {route.name} failed: {result}")


class _Meter:
    """A job's :data:`Progress` (bytes so far), passed on as the bytes more since last told."""

    def __init__(self, moved: Progress | None) -> None:
        self.moved, self.told = moved, 0
        self._lock = threading.Lock()  # guards told; a leaf

    def __call__(self, done: int) -> None:
        with self._lock:
            more, self.told = done - self.told, max(done, self.told)
        if more > 0 and self.moved is not None:
            self.moved(more)


def _units(first: dict[int, tuple[Route, Job]]) -> list[list[tuple[int, tuple[Route, Job]]]]:
    """Each file's next try as a unit of work: alone, or, on a route that ``batches``, in a
    batch with other files between the same two systems."""
    units: list[list[tuple[int, tuple[Route, Job]]]] = []
    open_batches: dict[tuple[int, int, int], list[tuple[int, tuple[Route, Job]]]] = {}
    for index, (route, job) in first.items():
        if not route.batches(job):
            units.append([(index, (route, job))])
            continue
        key = (id(route), id(job.src.backend), id(job.dst.backend))
        batch = open_batches.get(key)
        size = sum(j.size for _, (_, j) in batch) if batch else 0
        if batch is None or len(batch) >= BATCH_FILES or size + job.size > BATCH_BYTES:
            batch = open_batches[key] = []
            units.append(batch)
        batch.append((index, (route, job)))
    return units
