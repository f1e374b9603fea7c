"""Namespace operations of the VFS: mkdir, rmdir, unlink, rename, links, modes and times.

- POSIX answers where systems differ: EEXIST, ENOTEMPTY (a file pending upload counts),
  EISDIR, ENOTDIR, EINVAL for a move into itself, EXDEV across systems, EBUSY for the
  tree's own directories.
- What is open survives: before a name is removed or replaced, files open for writing
  on it fetch their content and readers on ``here`` and clusters open their files; a
  rename first uploads pending writes below the source, then re-keys open files and
  handles (on a store, moved objects are new objects, whose versions are taken again).
- ``chmod``, ``chown`` and ``utimens`` are accepted everywhere and applied where the
  system keeps them; on a file with unuploaded writes they wait for its upload.
- What is made (directories, symbolic links, special files, new files in
  :mod:`rhfs.vfs.file_ops`) belongs to the caller's :class:`~rhfs.backends.base.Owner` on
  systems that keep owners, where the daemon may give it (as root); in a set-group-ID
  directory the group is the directory's, as on a local filesystem.
- Hard links and special files are made where the system has them; elsewhere EPERM, as
  link(2) and mknod(2) answer on a filesystem without them.
"""

from __future__ import annotations

import logging
import stat

from rhfs.backends.base import Owner, check_rename_over
from rhfs.errors import (
    AlreadyExists,
    Busy,
    CrossDevice,
    DirectoryNotEmpty,
    InvalidArgument,
    IsADirectory,
    NotFound,
    NotPermitted,
    NotSupported,
    RhfsError,
    is_not_permitted,
)
from rhfs.tree import Location, TreeDir, normalize
from rhfs.vfs.handles import Handle
from rhfs.vfs.lookups import Lookups
from rhfs.vfs.open_files import MetadataChange, OpenFile, metadata_setter

log = logging.getLogger(__name__)

DEFAULT_DIR_MODE = 0o755


class NamespaceOps(Lookups):
    def mkdir(self, path: str, mode: int = 0o755, owner: Owner | None = None) -> None:
        new = self._resolve_new(path)
        if isinstance(new, TreeDir) or new.is_system_root:
            raise AlreadyExists(path)
        loc = self._writable(new)
        ids = self.owner_of_new(loc, owner)
        loc.backend.mkdir(loc.rel)
        self._changed(loc.path)
        self.cache.new_empty_dir(loc.path)
        self._give_owner(loc, ids)
        set_mode = loc.backend.abilities.set_mode
        if stat.S_IMODE(mode) != DEFAULT_DIR_MODE and set_mode is not None:
            set_mode(loc.rel, stat.S_IMODE(mode))

    def _give_owner(self, loc: Location, ids: tuple[int, int | None] | None) -> None:
        """Give a name just made its owner (see :meth:`owner_of_new`); a system that does not
        let the daemon do it leaves the daemon's (logged at debug)."""
        set_owner = loc.backend.abilities.set_owner
        if ids is None or set_owner is None:
            return
        try:
            set_owner(loc.rel, *ids)
        except RhfsError as e:
            if not is_not_permitted(e):
                raise
            log.debug("%s: left with the daemon's owner: %s", loc.path, e)
        self._changed(loc.path)

    def rmdir(self, path: str) -> None:
        found = self.resolve(path)
        if isinstance(found, TreeDir) or found.is_system_root:
            raise Busy(f"{path} is a system root")
        loc = self._writable(found)
        if self.handles.pending_under(loc.path):
            raise DirectoryNotEmpty(path)
        loc.backend.rmdir(loc.rel)
        self.cache.invalidate_tree(loc.path)

    def unlink(self, path: str) -> None:
        path = normalize(path)
        found = self.resolve(path)
        if isinstance(found, TreeDir) or found.is_system_root:
            raise IsADirectory(path)
        loc = self._writable(found)
        with self._holding(path) as open_file:
            if open_file is not None and not open_file.remote_exists:
                self.handles.detach(open_file)
                self._changed(path)
                return  # never uploaded: nothing remote to remove
            self._keep_readable(open_file, path)
            try:
                loc.backend.remove(loc.rel)
            except NotFound:
                if open_file is None:
                    raise
            if open_file is not None:
                self.handles.detach(open_file)
        self._changed(path)
        self.links.forget(path)

    def _keep_readable(self, open_file: OpenFile | None, path: str) -> None:
        """Before ``path`` is removed or replaced: what is open on it keeps its bytes."""
        if open_file is not None:
            try:
                with open_file.lock:
                    open_file.fill()  # handles open for writing read their spool from now on
            except RhfsError as e:
                log.warning("%s: could not fetch the content of a file being removed: %s", path, e)
        self.handles.pin_readers(path)

    def rename(self, old: str, new: str) -> None:
        src_found = self.resolve(old)
        if isinstance(src_found, TreeDir) or src_found.is_system_root:
            raise Busy(f"{src_found.path} is a system root")
        dst_found = self._resolve_new(new)
        if isinstance(dst_found, TreeDir) or dst_found.is_system_root:
            raise Busy(f"{dst_found.path} is a system root")
        src, dst = self._writable(src_found), self._writable(dst_found)
        if src.backend is not dst.backend:
            raise CrossDevice(f"{old} -> {new} crosses systems")
        self._upload_open_files_under(src.path)  # the rename moves what the system holds
        src_entry = self.entry(src, fresh=True)
        dst_entry = self._exists(dst)
        if src_entry.is_dir and (dst.path + "/").startswith(src.path + "/"):
            raise InvalidArgument(f"cannot move {old} into itself")
        if dst_entry is not None and src_entry.ino is not None and src_entry.ino == dst_entry.ino:
            return  # two names of one file: rename(2) leaves both as they are
        if dst_entry is not None:
            check_rename_over(src_entry.is_dir, dst_entry.is_dir, new)
            if dst_entry.is_dir:
                if self.handles.pending_under(dst.path) or self._list(dst):
                    raise DirectoryNotEmpty(new)
                if src.backend.traits.implicit_directories:
                    src.backend.rmdir(dst.rel)  # only a marker: the rename makes the directory anew
        with self._holding(dst.path) as replaced:
            if dst_entry is not None and not dst_entry.is_dir:
                self._keep_readable(replaced, dst.path)
            src.backend.rename(src.rel, dst.rel)
            self._moved(src.path, dst.path)  # detaches what was replaced before it is let go

    def _upload_open_files_under(self, path: str) -> None:
        """Upload pending writes at ``path`` or below it (before a rename moves them)."""
        for open_file in self.handles.at_or_under(path):
            with open_file.lock:
                if open_file.upload(self.failed_dir):
                    self._uploaded(open_file)

    def _moved(self, old: str, new: str) -> None:
        """After a rename: re-key open files and handles, drop what was replaced, forget caches."""
        moved_files, moved_handles = self.handles.move(old, new, self.locate)
        self._changed_linked(new)  # a file replaced there lost a name
        self.links.moved(old, new)
        for p in [p for p in list(self._versions) if p in (old, new) or p.startswith(old + "/")]:
            # list(): a snapshot taken in one step; other FUSE threads insert while this runs
            del self._versions[p]
        self.cache.invalidate_tree(old)
        self.cache.invalidate_tree(new)
        self._follow_move(moved_files, moved_handles)

    def _follow_move(self, moved_files: list[OpenFile], moved_handles: list[Handle]) -> None:
        """Moved objects on a store are new objects (copies): take their versions, so that
        content fetched later is not refused as stale. Readers tied to the old object reopen.
        On ``here`` and clusters an open file follows its rename by itself."""
        for open_file in moved_files:
            if open_file.needs_fill:
                try:
                    open_file.entry = self.entry(open_file.location, fresh=True)
                except RhfsError as e:
                    log.warning("%s: cannot follow the rename of an open file: %s", open_file.path, e)
        for handle in moved_handles:
            if handle.open_file is not None or not handle.location.backend.traits.versioned_objects:
                continue
            reader, handle.reader = handle.reader, None
            if reader is not None:
                reader.close()
            try:
                handle.entry = self.entry(handle.location, fresh=True)
            except RhfsError as e:
                log.warning("%s: cannot follow the rename of an open file: %s", handle.location.path, e)

    def symlink(self, target: str, path: str, owner: Owner | None = None) -> None:
        loc = self._writable(self._resolve_new(path))
        symlink = loc.backend.abilities.symlink
        if symlink is None:
            raise NotSupported(f"{loc.backend.system} has no symbolic links")
        ids = self.owner_of_new(loc, owner)
        symlink(target, loc.rel)
        self._changed(loc.path)
        self._give_owner(loc, ids)

    def mknod(self, path: str, mode: int, rdev: int, owner: Owner | None = None) -> None:
        """A FIFO, a UNIX socket or a device node; EPERM where the system has none."""
        new = self._resolve_new(path)
        if isinstance(new, TreeDir) or new.is_system_root:
            raise AlreadyExists(path)
        loc = self._writable(new)
        make_node = loc.backend.abilities.make_node
        if make_node is None:
            raise NotPermitted(f"{loc.backend.system} cannot hold special files")
        if self.handles.open_file(loc.path) is not None or self._exists(loc, fresh=True) is not None:
            raise AlreadyExists(path)
        ids = self.owner_of_new(loc, owner)
        make_node(loc.rel, mode, rdev)
        self._changed(loc.path)
        self._give_owner(loc, ids)
        set_mode = loc.backend.abilities.set_mode
        if set_mode is not None:  # the daemon's own umask took bits the caller's mode has
            set_mode(loc.rel, stat.S_IMODE(mode))

    def link(self, target: str, path: str) -> None:
        """A hard link: ``path`` becomes one more name of the file at ``target``."""
        src_found = self.resolve(target)
        if isinstance(src_found, TreeDir) or src_found.is_system_root:
            raise NotPermitted(f"{target} is a directory")
        src, dst = self._writable(src_found), self._writable(self._resolve_new(path))
        if src.backend is not dst.backend:
            raise CrossDevice(f"{target} -> {path} crosses systems")
        hard_link = src.backend.abilities.hard_link
        if hard_link is None:
            raise NotPermitted(f"{src.backend.system} has no hard links")
        self._upload_open_files_under(src.path)  # the new name shows what was written so far
        hard_link(src.rel, dst.rel)
        self._changed(src.path)
        self._changed(dst.path)
        if self.forget_attrs is not None:  # the kernel holds the old link count of the first name
            self.forget_attrs(src.path)
        self.entry(src, fresh=True)  # both names are known from now on (LinkedNames)
        self.entry(dst, fresh=True)

    def chmod(self, path: str, mode: int) -> None:
        self._set_metadata(path, "set_mode", mode)

    def chown(self, path: str, uid: int | None, gid: int | None) -> None:
        """Change the owner and group (None, or -1 as chown(2) takes it, leaves one as it is)."""
        uid = None if uid is None or uid < 0 else uid
        gid = None if gid is None or gid < 0 else gid
        if uid is None and gid is None:
            self.entry(self.resolve(path))  # ENOENT for a missing file, and nothing to change
            return
        self._set_metadata(path, "set_owner", uid, gid)

    def utimens(self, path: str, atime_ns: int | None, mtime_ns: int | None) -> None:
        """Set the times in nanoseconds; None leaves that time as it is (UTIME_OMIT)."""
        if atime_ns is None and mtime_ns is None:
            self.entry(self.resolve(path))  # ENOENT for a missing file, and nothing to change
            return
        self._set_metadata(path, "set_times", atime_ns, mtime_ns)

    def _set_metadata(self, path: str, change: MetadataChange, *args: int | None) -> None:
        """Accepted everywhere so that cp -a and rsync -a work; applied where the system has it."""
        path = normalize(path)
        found = self.resolve(path)
        if isinstance(found, TreeDir) or found.is_system_root:
            return
        loc = self._writable(found)
        setter = metadata_setter(loc.backend.abilities, change)
        with self._holding(path) as open_file:
            if open_file is not None:
                with open_file.lock:
                    if open_file.dirty or not open_file.remote_exists:
                        if setter is not None:  # the upload would undo it now
                            open_file.set_later(change, args)
                        return
            self.entry(loc)  # ENOENT for a missing file
            if setter is not None:
                setter(loc.rel, *args)
                if open_file is not None:
                    open_file.note_applied(change, args)
                self._changed(path)
