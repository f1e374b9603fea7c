"""Special files on a cluster: FIFOs, device nodes and UNIX sockets, made by a command there.

SFTP has no mknod, so a cluster makes special files with the commands any Linux host has
(``mkfifo``, ``mknod``; a socket is bound by ``python3``) over the cluster's ``run`` ability.
The command's answer becomes the error a local ``mknod(2)`` would give: EEXIST, ENOENT,
EACCES, and EPERM for anything else (a login that may not run commands, or may not make
device nodes).
"""

from __future__ import annotations

import os
import posixpath
import shlex
import stat

from rhfs.backends.base import RunCommand
from rhfs.errors import AlreadyExists, NotFound, NotPermitted, PermissionDenied, RhfsError

BIND_SOCKET = "import socket, sys; socket.socket(socket.AF_UNIX).bind(sys.argv[1])"
# what the commands print, in the C locale, for the errors that have their own answer
_ANSWERS: tuple[tuple[str, type[RhfsError]], ...] = (
    ("File exists", AlreadyExists),
    ("Address already in use", AlreadyExists),
    ("No such file or directory", NotFound),
    ("Permission denied", PermissionDenied),
)


def node_command(full: str, mode: int, rdev: int) -> str:
    """The shell command that makes the special file ``full`` with ``mode`` (its type and bits)."""
    bits, q = f"{stat.S_IMODE(mode):o}", shlex.quote(full)
    kind = stat.S_IFMT(mode)
    if kind == stat.S_IFIFO:
        return f"LC_ALL=C mkfifo -m {bits} -- {q}"
    if kind in (stat.S_IFCHR, stat.S_IFBLK):
        letter = "c" if kind == stat.S_IFCHR else "b"
        return f"LC_ALL=C mknod -m {bits} -- {q} {letter} {os.major(rdev)} {os.minor(rdev)}"
    if kind == stat.S_IFSOCK:  # bound from its directory: a socket's path holds 107 bytes at most
        where, name = (shlex.quote(p) for p in posixpath.split(full))
        bind = f"python3 -c {shlex.quote(BIND_SOCKET)} {name} && chmod {bits} -- {name}"
        return f"cd -- {where} && {bind}"
    raise NotPermitted(f"{full}: no special file of type {kind:o}")


def make_node(run: RunCommand, full: str, mode: int, rdev: int, system: str) -> None:
    """Make the special file ``full`` on the cluster with ``run``; the error mknod(2) would give."""
    code, _, err = run(node_command(full, mode, rdev))
    if code == 0:
        return
    for text, answer in _ANSWERS:
        if text in err:
            raise answer(f"{system}: {full}: {text}")
    raise NotPermitted(f"{system}: cannot make the special file {full}: {err.strip()[:200]}")
