"""The ``here`` system: a directory on the daemon host, served with plain OS calls.

Invariants:
- no path resolves outside ``root`` (``..`` is refused, and a symlink that points
  out is served as a link, never followed by rhfs itself);
- ``hidden`` paths (the mount point, when it lies under ``root``) are never listed
  and never entered: entering them would make the daemon call into itself;
- uploads write a temporary sibling and rename it over the target, so a reader or
  a crash never sees half a file.
"""

from __future__ import annotations

import os
import shutil
import stat as stat_mod
import threading

from rhfs.backends.base import (
    SPECIAL_TYPES,
    TMP_MARK,
    Abilities,
    Entry,
    Traits,
    check_name,
    check_path_length,
    is_upload_tmp_of,
    upload_tmp_name,
)
from rhfs.errors import NotFound, PermissionDenied


class LocalReader:
    def __init__(self, path: str) -> None:
        self._fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        self._lock = threading.Lock()

    def read(self, offset: int, size: int) -> bytes:
        return os.pread(self._fd, size, offset)

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1


def entry_from_stat(name: str, st: os.stat_result, link_target: str | None = None) -> Entry:
    node_type = stat_mod.S_IFMT(st.st_mode)
    return Entry(
        name=name,
        is_dir=stat_mod.S_ISDIR(st.st_mode),
        size=st.st_size if node_type in (stat_mod.S_IFREG, stat_mod.S_IFLNK) else 0,
        mtime=st.st_mtime,
        etag=f"{st.st_ino:x}-{st.st_mtime_ns:x}-{st.st_size:x}",
        mode=stat_mod.S_IMODE(st.st_mode),
        link_target=link_target,
        mtime_ns=st.st_mtime_ns,
        atime_ns=st.st_atime_ns,
        ctime_ns=st.st_ctime_ns,
        uid=st.st_uid,
        gid=st.st_gid,
        nlink=st.st_nlink,
        ino=st.st_ino,
        node_type=node_type if node_type in SPECIAL_TYPES else None,
        rdev=st.st_rdev,
    )


class LocalBackend:
    traits = Traits(family="here", open_survives_unlink=True)

    def __init__(self, root: str, system: str = "here", hidden: tuple[str, ...] = ()) -> None:
        self.system = system
        self.root = os.path.realpath(os.path.expanduser(root))
        self.hidden = frozenset(os.path.realpath(h) for h in hidden)
        self.abilities = Abilities(
            copy_within=self.copy_within,
            local_path=self.local_path,
            symlink=self.symlink,
            set_mode=self.set_mode,
            set_owner=self.set_owner,
            set_times=self.set_times,
            hard_link=self.hard_link,
            make_node=self.make_node,
            check_path=self.check_path,
            remove_upload_leftovers=self.remove_upload_leftovers,
        )

    def _abs(self, path: str) -> str:
        if path:
            check_name(path)
        full = os.path.join(self.root, path) if path else self.root
        check_path_length(full)
        if full in self.hidden:
            raise NotFound(path)
        if "/" in path:
            self._check_parents(path, full)
        return full

    def _check_parents(self, path: str, full: str) -> None:
        """The OS follows links in the directories above ``full``: they must not lead out of root.

        Through FUSE the kernel resolves each component itself, but rhfs's own faces
        (``rhfs ls``, ``rhfs://``) hand over whole paths.
        """
        parent = os.path.realpath(os.path.dirname(full))
        if os.path.commonpath([parent, self.root]) != self.root:
            raise PermissionDenied(f"{path}: a symbolic link on the way leads out of {self.system}'s root")
        if any(os.path.commonpath([parent, h]) == h for h in self.hidden):
            raise NotFound(path)  # the mount point itself: entering it would call the daemon

    def stat(self, path: str) -> Entry:
        full = self._abs(path)
        st = os.lstat(full)
        target = os.readlink(full) if stat_mod.S_ISLNK(st.st_mode) else None
        return entry_from_stat(os.path.basename(path), st, target)

    def list(self, path: str) -> list[Entry]:
        full = self._abs(path)
        entries = []
        with os.scandir(full) as it:
            for d in it:
                if d.path in self.hidden or d.name.startswith(TMP_MARK):
                    continue
                try:
                    st = d.stat(follow_symlinks=False)
                    target = os.readlink(d.path) if d.is_symlink() else None
                except FileNotFoundError:
                    continue
                entries.append(entry_from_stat(d.name, st, target))
        return entries

    def open_reader(self, path: str, entry: Entry) -> LocalReader:
        return LocalReader(self._abs(path))

    def upload(self, local_path: str, path: str) -> None:
        """A temporary sibling with the old file's owner and mode, renamed over it; a file with
        more than one name is rewritten in place instead, so that its names stay one file."""
        full = self._abs(path)
        try:
            old: os.stat_result | None = os.lstat(full)
        except FileNotFoundError:
            old = None
        if old is not None and old.st_nlink > 1 and stat_mod.S_ISREG(old.st_mode):
            _rewrite_in_place(local_path, full)
            return
        tmp = os.path.join(os.path.dirname(full), upload_tmp_name(os.path.basename(full)))
        try:
            shutil.copyfile(local_path, tmp)
            if old is not None and stat_mod.S_ISREG(old.st_mode):
                _keep_owner(tmp, old)
                os.chmod(tmp, stat_mod.S_IMODE(old.st_mode))
            os.replace(tmp, full)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise

    def remove_upload_leftovers(self, path: str) -> int:
        """Remove the temporary siblings that killed uploads of ``path`` left; how many."""
        full = self._abs(path)
        removed = 0
        try:
            with os.scandir(os.path.dirname(full)) as entries:
                for d in entries:
                    if is_upload_tmp_of(d.name, os.path.basename(full)):
                        os.unlink(d.path)
                        removed += 1
        except FileNotFoundError:
            pass
        return removed

    def remove(self, path: str) -> None:
        os.unlink(self._abs(path))

    def mkdir(self, path: str) -> None:
        os.mkdir(self._abs(path))

    def rmdir(self, path: str) -> None:
        os.rmdir(self._abs(path))

    def rename(self, src: str, dst: str) -> None:
        os.rename(self._abs(src), self._abs(dst))

    def check_path(self, path: str) -> None:
        """Refuse, before a file is made, a name or a path this host cannot hold."""
        self._abs(path)

    def url(self, path: str) -> str:
        return "file://" + self._abs(path)

    def local_path(self, path: str) -> str:
        """The real path on the daemon host; used by routes that read or write locally."""
        return self._abs(path)

    def copy_within(self, src: str, dst: str) -> None:
        shutil.copyfile(self._abs(src), self._abs(dst))

    def symlink(self, target: str, path: str) -> None:
        os.symlink(target, self._abs(path))

    def set_mode(self, path: str, mode: int) -> None:
        full = self._abs(path)
        if not os.path.islink(full):  # Linux cannot chmod a link itself; never follow one out
            os.chmod(full, stat_mod.S_IMODE(mode))

    def set_owner(self, path: str, uid: int | None, gid: int | None) -> None:
        os.lchown(self._abs(path), -1 if uid is None else uid, -1 if gid is None else gid)

    def hard_link(self, existing: str, new: str) -> None:
        os.link(self._abs(existing), self._abs(new), follow_symlinks=False)

    def make_node(self, path: str, mode: int, rdev: int) -> None:
        """A FIFO, socket or device node (devices only where the daemon may make them)."""
        os.mknod(self._abs(path), mode, rdev)

    def set_times(self, path: str, atime_ns: int | None, mtime_ns: int | None) -> None:
        full = self._abs(path)
        if atime_ns is None or mtime_ns is None:  # os.utime has no UTIME_OMIT: keep what is there
            st = os.lstat(full)
            atime_ns = st.st_atime_ns if atime_ns is None else atime_ns
            mtime_ns = st.st_mtime_ns if mtime_ns is None else mtime_ns
        os.utime(full, ns=(atime_ns, mtime_ns), follow_symlinks=False)


def _keep_owner(tmp: str, old: os.stat_result) -> None:
    """Give a replacement the owner of the file it replaces, where the daemon may (as root)."""
    if (old.st_uid, old.st_gid) == (os.geteuid(), os.getegid()):
        return
    try:
        os.chown(tmp, old.st_uid, old.st_gid)
    except PermissionError:
        pass  # a daemon that is not root: the file becomes its own, as any rewrite by it would


def _rewrite_in_place(local_path: str, full: str) -> None:
    """Write ``local_path``'s bytes over ``full`` itself (its inode, owner and mode stay)."""
    with open(local_path, "rb") as src, open(full, "r+b") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
        dst.truncate()
