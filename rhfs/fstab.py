"""fstab support: ``mount.rhfs``, the helper mount(8) runs for filesystems of type ``fuse.rhfs``.

    rhfs  /rh  fuse.rhfs  config=/etc/rhfs/config.toml,allow_other,_netdev  0 0

mount(8) runs ``/sbin/mount.fuse.rhfs SOURCE DIR [-sfnv] [-o OPTS] [-t fuse.rhfs]``
(``scripts/install-service.sh`` links it to ``mount.rhfs``); without that link it
falls back to fuse3's ``mount.fuse3``, which runs ``rhfs SOURCE DIR -o OPTS``. Both
forms land in :func:`run`, which turns the options into an ``rhfs mount`` request.

Invariants: generic mount options are accepted and ignored; an unknown option is
refused unless ``-s`` (sloppy) is given; exit codes are mount(8)'s (0 mounted,
1 bad usage or configuration, 32 the mount failed); nothing is printed on success
unless ``-v``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import TextIO

EXIT_USAGE, EXIT_FAILED = 1, 32  # mount(8)'s codes for helpers
FSTAB_LINE = "rhfs  /rh  fuse.rhfs  config=/etc/rhfs/config.toml,allow_other,_netdev  0 0"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
IGNORED_OPTIONS = frozenset(
    {
        *("defaults", "rw", "dev", "nodev", "suid", "nosuid", "exec", "noexec", "async", "sync"),
        *("auto", "noauto", "user", "nouser", "users", "owner", "nofail", "_netdev"),
        *("atime", "noatime", "relatime", "norelatime", "strictatime", "nodiratime", "lazytime"),
        "default_permissions",
    }
)


def is_helper_form(argv: list[str], commands: set[str]) -> bool:
    """``rhfs SOURCE /DIR ...``: how mount.fuse3 runs the program named by the subtype."""
    if len(argv) < 2 or argv[0] in commands or argv[0].startswith("-"):
        return False
    return argv[1].startswith("/")


def run(argv: list[str], prog: str, mount: Callable[[argparse.Namespace], int]) -> int:
    """Parse mount(8)'s arguments and call ``mount`` with an ``rhfs mount`` namespace.

    ``mount`` returns rhfs's exit code (0, 2 for a bad configuration, else a failure).
    """
    if "--help" in argv or argv == ["-h"]:
        _usage(prog, sys.stdout)
        return 0
    positional, options, flags = split_args(argv)
    if len(positional) != 2 or "h" in flags:
        _usage(prog, sys.stderr)
        return EXIT_USAGE
    args = argparse.Namespace(
        mountpoint=positional[1],
        config=None,
        foreground=False,
        read_only=False,
        allow_other=False,
        allow_non_empty=False,
    )
    for opt in options:
        problem = _apply(args, opt)
        if problem and "s" not in flags:  # -s: sloppy, ignore what we do not know
            print(f"{prog}: {problem}", file=sys.stderr)
            return EXIT_USAGE
    if "v" in flags:
        print(f"{prog}: mounting {args.mountpoint} (options: {','.join(options) or 'none'})", file=sys.stderr)
    if "f" in flags:  # -f: fake, do everything but the mount
        return 0
    os.environ.setdefault("HOME", os.path.expanduser("~"))
    code = mount(args)
    return 0 if code == 0 else EXIT_USAGE if code == 2 else EXIT_FAILED


def _usage(prog: str, out: TextIO) -> None:
    print(
        f"usage: {prog} SOURCE MOUNTPOINT [-sfnv] [-o config=FILE,allow_other,ro,nonempty,log_level=L]",
        file=out,
    )
    print(f"fstab: {FSTAB_LINE}", file=out)


def _apply(args: argparse.Namespace, opt: str) -> str | None:
    """Set what one option means on ``args``; a problem's description, or None."""
    key, eq, value = opt.partition("=")
    if key == "config" and value:
        args.config = value
    elif key == "allow_other" and not eq:
        args.allow_other = True
    elif key in ("ro", "read_only") and not eq:
        args.read_only = True
    elif key == "nonempty" and not eq:  # FUSE's name for it: mount over a non-empty directory
        args.allow_non_empty = True
    elif key == "log_level" and value:
        if value.upper() not in LOG_LEVELS:
            return f"log_level={value}: expected one of {', '.join(LOG_LEVELS)}"
        args.log_level = value.upper()
    elif not (key in IGNORED_OPTIONS or key.startswith(("x-", "comment"))):
        return f"unknown mount option '{opt}'"
    return None


def split_args(argv: list[str]) -> tuple[list[str], list[str], set[str]]:
    """(positional arguments, ``-o`` options, single-letter flags) of a helper's command line."""
    positional: list[str] = []
    options: list[str] = []
    flags: set[str] = set()
    i = 0
    while i < len(argv):
        a = argv[i]
        if a in ("-o", "-t", "-N") and i + 1 < len(argv):
            if a == "-o":
                options += [o for o in argv[i + 1].split(",") if o]
            i += 2
            continue
        if a.startswith("-o") and len(a) > 2:
            options += [o for o in a[2:].split(",") if o]
        elif a.startswith("-") and len(a) > 1:
            flags.update(a[1:])
        else:
            positional.append(a)
        i += 1
    return positional, options, flags
