"""Tree jobs: a whole directory tree copied as one job, with sync semantics.

Every face that copies a folder (``rhfs cp -r``, ``rh.folder(...).to()``,
``rh.table(...).to()``) hands the whole tree to :class:`TreeCopy`, over the same
:class:`~rhfs.transfer.planner.Planner` the mount uses for each file:

1. The source is listed once, directory by directory; the total of files and bytes
   is known before the first byte moves (``progress.total``).
2. Each destination directory is listed once too. A file whose destination already
   matches is skipped, as ``rsync`` and ``aws s3 sync`` do: the same size, and a
   modification time no older than the source's (or the same etag on one store
   account), times compared to the second as SFTP keeps them; with ``checksum`` the
   contents are compared instead. So a rerun of an
   interrupted job resumes where it stopped, and a rerun on an unchanged tree moves
   no file bytes.
3. Directories are made first (empty ones too), empty files are written, and then the
   other files are handed to :func:`~rhfs.transfer.batches.copy_many` all at once: each takes the route a
   copy of its own would (server-side where one exists; the relay between the two places
   as they are where no route may take it, such as a write into a table, which its view
   checks), files whose route moves many as one job going in batches (a push from one
   cluster to another, a copy within one: one job of the cluster's session, on its one
   connection). ``files_in_flight`` jobs run at once: the option, or the least that the
   two systems' config allows (``files_in_flight``, 8 by default).
4. With ``delete``, destination files and directories that the source lacks are removed
   (``deleted`` counts the names removed, a directory with everything under it as one).

Each file appears whole or not at all (every route writes a temporary sibling or an
unfinished upload first). A file that fails is named in :attr:`TreeResult.failed`;
the others complete. Stats count each job under ``trees`` by route, with its files,
bytes and skipped files. ``progress`` advances as bytes move, as far as the routes tell (a
cluster session's jobs report their bytes four times a second), and by each file's size when
it is skipped or done.
"""

from __future__ import annotations

import hashlib
import logging
import posixpath
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from rhfs.backends.base import Entry
from rhfs.errors import AlreadyExists, IsADirectory, NotADirectory, NotFound, RhfsError
from rhfs.location_io import remove_tree, write_bytes
from rhfs.transfer.batches import copy_many
from rhfs.transfer.planner import CopyFailed, Planner
from rhfs.tree import Location

log = logging.getLogger(__name__)

HASH_CHUNK = 8 << 20
MODIFY_WINDOW = 1.0  # seconds: SFTP keeps whole seconds, so times are compared to the second


@dataclass(frozen=True)
class TreeOptions:
    delete: bool = False  # remove what the destination has and the source lacks
    checksum: bool = False  # skip by content, not by size and time
    files_in_flight: int | None = None  # None: the least the two systems' config allows


@dataclass
class TreeResult:
    files: int = 0  # copied
    bytes: int = 0  # of the files copied
    skipped: int = 0  # already matching at the destination
    deleted: int = 0
    routes: dict[str, int] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)  # "src -> dst: why", one per failed file


File = tuple[Location, Location, Entry, Entry | None]  # source, destination, and what each holds


class Progress(Protocol):
    """What a tree job reports to: a tqdm bar fits (``total`` and ``update(n)``)."""

    total: int | None

    def update(self, n: int) -> Any: ...

    def refresh(self) -> Any: ...


def into_directory(src: Location, dst: Location) -> Location:
    """``cp``'s rule: a ``dst`` that is a directory receives ``src`` under its own name."""
    target = stat_or_none(dst)
    if target is not None and target.is_dir:
        return dst.child(posixpath.basename(src.path.rstrip("/")))
    return dst


def stat_or_none(loc: Location) -> Entry | None:
    try:
        return loc.backend.stat(loc.rel) if loc.rel else Entry(name="", is_dir=True)
    except NotFound:
        return None


class TreeCopy:
    def __init__(
        self,
        planner: Planner,
        *,
        options: TreeOptions | None = None,
        progress: Progress | None = None,
    ) -> None:
        self.planner = planner
        self.options = options or TreeOptions()
        self.progress = progress
        self.result = TreeResult()
        self._lock = threading.Lock()
        self._implied: dict[str, Location] = {}  # directories left to their names (see _mkdir)
        self._unprepared: tuple[Location, Location] | None = None  # the trees, until prepared

    # -- the job ----------------------------------------------------------------------------
    def run(self, src: Location, dst: Location) -> TreeResult:
        """Make ``dst`` a copy of the file or tree at ``src`` (onto ``dst``, as ``rsync src/ dst``)."""
        entry = stat_or_none(src)
        if entry is None:
            raise NotFound(src.path)
        target = stat_or_none(dst)
        files: list[File] = []
        if not entry.is_dir:
            if target is not None and target.is_dir:
                raise IsADirectory(f"{dst.path} is a directory")
            files.append((src, dst, entry, target))
        elif target is not None and not target.is_dir:
            raise NotADirectory(f"{dst.path} is not a directory")
        else:
            self._unprepared = (src, dst)  # until a file needs copying (see _plan)
            self._plan(src, dst, target is not None, files)
        self._set_total(sum(e.size for _, _, e, _ in files))
        self._copy_files(files, self.options.files_in_flight or self.planner.ctx.files_in_flight(src, dst))
        if entry.is_dir:
            self.planner.ctx.stats.add_tree(self.result.routes, self.result.bytes, self.result.skipped)
        return self.result

    def _set_total(self, total: int) -> None:
        if self.progress is not None:
            self.progress.total = total
            self.progress.refresh()

    def _plan(
        self,
        src: Location,
        dst: Location,
        dst_exists: bool,
        files: list[File],
    ) -> None:
        """Walk ``src``: make each directory at ``dst``, list what is there, and queue the files."""
        entries = src.backend.list(src.rel)
        there: dict[str, Entry] = {}
        if dst_exists:
            there = {e.name: e for e in dst.backend.list(dst.rel)}
        else:
            self._mkdir(dst, empty=not entries)
        for entry in entries:
            s, d = src.child(entry.name), dst.child(entry.name)
            existing = there.get(entry.name)
            if entry.is_dir:
                if existing is not None and not existing.is_dir:
                    self._fail(s, d, IsADirectory(f"{d.path} is a file"))
                    continue
                self._plan(s, d, existing is not None, files)
            elif entry.link_target is None:
                files.append((s, d, entry, existing))
                self._prepare_for(files[-1])
        if self.options.delete:
            names = {e.name for e in entries}
            for name in there:
                if name not in names:
                    self._delete(dst.child(name))

    def _prepare_for(self, file: File) -> None:
        """At the first file that will be copied, have the route get ready (open the sessions it
        needs) while the rest of the trees is listed; a rerun that copies nothing opens none."""
        if self._unprepared is None:
            return
        src, dst, entry, existing = file
        if existing is None or self.options.checksum or not self._matches(src, entry, dst, existing):
            self.planner.prepare(*self._unprepared)
            self._unprepared = None

    def _mkdir(self, dst: Location, *, empty: bool) -> None:
        """A directory at ``dst``. Where names imply their directories (a store), only an empty
        one is made (its marker), after the unmade directories above it."""
        if dst.backend.traits.implicit_directories:
            if not empty:
                self._implied[dst.path] = dst
                return
            above = [p for p in self._implied if dst.path.startswith(p + "/")]
            for path in sorted(above, key=len):
                self._make(self._implied.pop(path))
        self._make(dst)

    @staticmethod
    def _make(dst: Location) -> None:
        try:
            dst.backend.mkdir(dst.rel)
        except AlreadyExists:
            pass

    def _delete(self, loc: Location) -> None:
        try:
            remove_tree(loc)
        except RhfsError as e:
            with self._lock:
                self.result.failed.append(f"delete {loc.path}: {e}")
            return
        with self._lock:
            self.result.deleted += 1

    # -- the files ----------------------------------------------------------------------------
    def _copy_files(self, files: list[File], in_flight: int) -> None:
        """Skip the files that match, write the empty ones, and copy the others all at once
        (:func:`~rhfs.transfer.batches.copy_many`), the progress advancing as their bytes move."""
        with ThreadPoolExecutor(in_flight, thread_name_prefix="rhfs-tree") as pool:
            todo = [
                file for file, same in zip(files, pool.map(self._matching, files), strict=True) if not same
            ]
            empty = [file for file in todo if file[2].size == 0]
            list(pool.map(self._empty, empty))
        full = [(s, d, e) for s, d, e, _ in todo if e.size > 0]
        outcomes = copy_many(self.planner, full, in_flight=in_flight, moved=self._advance)
        for (s, d, e), outcome in zip(full, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                self._fail(s, d, outcome)
            else:
                self._done(e, outcome)

    def _matching(self, file: File) -> bool:
        """Does the destination already hold this file (skipped, and counted so)? A failure to
        tell is the file's failure."""
        src, dst, entry, existing = file
        try:
            same = existing is not None and self._matches(src, entry, dst, existing)
        except (RhfsError, OSError) as e:
            self._fail(src, dst, e)
            return True
        if same:
            with self._lock:
                self.result.skipped += 1
            self._advance(entry.size)
        return same

    def _empty(self, file: File) -> None:
        src, dst, entry, _ = file
        try:
            write_bytes(dst, b"")
        except (RhfsError, OSError) as e:
            self._fail(src, dst, e)
            return
        self.planner.ctx.stats.add_copy("empty", 0)
        self._done(entry, "empty")

    def _done(self, entry: Entry, route: str) -> None:
        with self._lock:
            self.result.files += 1
            self.result.bytes += entry.size
            self.result.routes[route] = self.result.routes.get(route, 0) + 1

    def _fail(self, src: Location, dst: Location, error: BaseException) -> None:
        """Name the file in the result (the faces report it: ``rhfs cp`` prints each, the API
        raises :class:`SomeFilesFailed`), with why, once."""
        pair = f"{src.path} -> {dst.path}"
        failure = f"{pair}: {str(error).removeprefix(f'copy {pair}: ')}"
        log.info("copy %s failed", failure)
        with self._lock:
            self.result.failed.append(failure)

    def _advance(self, n: int) -> None:
        if self.progress is not None:
            with self._lock:
                self.progress.update(n)

    def _matches(self, src: Location, entry: Entry, dst: Location, existing: Entry) -> bool:
        """Does the destination already hold this file? (see the module's docstring)"""
        if existing.is_dir or existing.size != entry.size:
            return False
        if self.options.checksum:
            return _digest(src, entry) == _digest(dst, existing)
        provider, other = src.backend.abilities.provider, dst.backend.abilities.provider
        if entry.etag and entry.etag == existing.etag and provider and other and provider.same_account(other):
            return True
        return existing.mtime + MODIFY_WINDOW > entry.mtime


class SomeFilesFailed(CopyFailed):
    """A tree job ended with files that could not be copied; the others were."""

    def __init__(self, result: TreeResult) -> None:
        shown = "; ".join(result.failed[:5]) + ("; ..." if len(result.failed) > 5 else "")
        super().__init__(f"{len(result.failed)} file(s) failed: {shown}")
        self.result = result


def _digest(loc: Location, entry: Entry) -> str:
    """The SHA-256 of a file's content, read through its backend."""
    digest = hashlib.sha256()
    reader = loc.backend.open_reader(loc.rel, entry)
    try:
        for offset in range(0, entry.size, HASH_CHUNK):
            digest.update(reader.read(offset, HASH_CHUNK))
    finally:
        reader.close()
    return digest.hexdigest()
