"""The ``rhfs`` command line (PRODUCT.md §5) and the ``mount.rhfs`` fstab helper.

Exit codes: 0 success; 1 the operation failed (the message says why);
2 bad usage or a bad configuration.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence

from rhfs import __version__
from rhfs import config as config_mod
from rhfs import log as rhfs_log
from rhfs.errors import ConfigError, RhfsError

log = logging.getLogger("rhfs.cli")
DEFAULT_MOUNTPOINT = "~/rh"
EXIT_FAILED, EXIT_USAGE = 1, 2


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rhfs", description="Every cluster and bucket as one FUSE tree.")
    p.add_argument("--version", action="version", version=f"rhfs {__version__}")
    p.add_argument("--log-level", default=None, help="DEBUG, INFO, WARNING or ERROR (default: from config)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    m = sub.add_parser("mount", help="mount the tree (returns once it answers)")
    m.add_argument("mountpoint", nargs="?", default=DEFAULT_MOUNTPOINT, help="default: ~/rh")
    m.add_argument("--config", help="config file (default: search order of the docs)")
    m.add_argument("--foreground", action="store_true", help="stay attached (the systemd form)")
    m.add_argument("--read-only", action="store_true")
    m.add_argument("--allow-other", action="store_true", help="let other users in (sets default_permissions)")

    u = sub.add_parser("unmount", help="flush pending writes, then unmount")
    u.add_argument("mountpoint")

    s = sub.add_parser("status", help="each system's health and traffic")
    s.add_argument("mountpoint", nargs="?", default=DEFAULT_MOUNTPOINT)
    s.add_argument("--json", action="store_true")

    ls = sub.add_parser("ls", help="list a path or URL")
    ls.add_argument("url")
    ls.add_argument("--config")

    c = sub.add_parser("config", help="configuration commands")
    csub = c.add_subparsers(dest="config_command", required=True, metavar="SUBCOMMAND")
    check = csub.add_parser("check", help="validate the config and try every system")
    check.add_argument("--config")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _dispatch(args)
    except ConfigError as e:
        print(f"rhfs: {e}", file=sys.stderr)
        return EXIT_USAGE
    except (RhfsError, OSError) as e:
        print(f"rhfs: {e}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "mount":
        return _mount(args)
    if args.command == "unmount":
        return _unmount(args.mountpoint)
    if args.command == "status":
        return _status(args)
    if args.command == "ls":
        return _ls(args)
    if args.command == "config":
        return _config_check(args)
    raise AssertionError(args.command)


def _mount(args: argparse.Namespace) -> int:
    from rhfs import daemon

    config = config_mod.load(args.config)
    rhfs_log.setup(args.log_level or config.mount.log_level)
    mountpoint = os.path.abspath(config_mod.expand(args.mountpoint))
    if args.foreground:
        daemon.run(config, mountpoint, read_only=args.read_only, allow_other=args.allow_other)
        return 0
    daemon.prepare_mountpoint(mountpoint) if os.path.isdir(mountpoint) else os.makedirs(mountpoint)
    argv = ["mount", mountpoint]
    if args.config:
        argv += ["--config", os.path.abspath(args.config)]
    if args.read_only:
        argv.append("--read-only")
    if args.allow_other:
        argv.append("--allow-other")
    if args.log_level:
        argv = ["--log-level", args.log_level, *argv]
    log_path = os.path.join(config_mod.expand(config.mount.cache_dir), "rhfs.log")
    code = daemon.spawn(argv, mountpoint, log_path)
    if code == 0:
        print(f"rhfs: mounted {mountpoint} (log: {log_path})")
    return code


def _unmount(mountpoint: str) -> int:
    from rhfs import mountpoint as mp

    path = os.path.abspath(config_mod.expand(mountpoint))
    if mp.mount_type(path) is None:
        print(f"rhfs: {path} is not mounted", file=sys.stderr)
        return EXIT_FAILED
    mp.unmount(path, lazy=mp.is_stale(path))
    return 0


def _status(args: argparse.Namespace) -> int:
    path = os.path.abspath(config_mod.expand(args.mountpoint))
    with open(os.path.join(path, ".rhfs", "status.json")) as f:
        status = json.load(f)
    with open(os.path.join(path, ".rhfs", "stats.json")) as f:
        stats = json.load(f)
    if args.json:
        print(json.dumps({"status": status, "stats": stats}, indent=2))
        return 0
    traffic = stats.get("systems", {})
    print(f"{'SYSTEM':<20} {'KIND':<8} {'HEALTH':<7} {'LATENCY':>9} {'READ':>12} {'WRITTEN':>12}  LAST ERROR")
    for name, s in status["systems"].items():
        t = traffic.get(name, {})
        latency = "-" if s.get("latency_ms") is None else f"{s['latency_ms']:.1f}ms"
        print(
            f"{name:<20} {s['kind']:<8} {s['health']:<7} {latency:>9} "
            f"{t.get('bytes_read', 0):>12} {t.get('bytes_written', 0):>12}  {s.get('last_error') or ''}"
        )
    return 0


def _ls(args: argparse.Namespace) -> int:
    from rhfs.wiring import build_vfs

    config = config_mod.load(args.config)
    rhfs_log.setup("WARNING")
    vfs = build_vfs(config)
    for name, attr in vfs.readdir(args.url):
        if name not in (".", ".."):
            print(name + ("/" if attr.is_dir else ""))
    return 0


def _config_check(args: argparse.Namespace) -> int:
    from rhfs.wiring import build_vfs

    config = config_mod.load(args.config)
    rhfs_log.setup("ERROR")
    print(f"config: {config.source or 'embedded default'}: OK")
    vfs = build_vfs(config)
    failed = 0
    for mount, backend in vfs.table.mounts.items():
        try:
            backend.list("")
            print(f"  {mount:<24} reachable")
        except Exception as e:
            failed += 1
            print(f"  {mount:<24} UNREACHABLE: {e}")
    return EXIT_FAILED if failed else 0


def mount_helper_main(argv: Sequence[str] | None = None) -> int:
    """``mount.rhfs SOURCE MOUNTPOINT [-o opt,opt]``, as mount(8) calls fstab helpers."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) < 2:
        print("usage: mount.rhfs SOURCE MOUNTPOINT [-o options]", file=sys.stderr)
        return EXIT_USAGE
    mountpoint, options = args[1], []
    for i, a in enumerate(args):
        if a == "-o" and i + 1 < len(args):
            options += args[i + 1].split(",")
    cli = ["mount", mountpoint]
    for opt in options:
        key, _, value = opt.partition("=")
        if key == "config":
            cli += ["--config", value]
        elif key == "allow_other":
            cli.append("--allow-other")
        elif key in ("ro", "read_only"):
            cli.append("--read-only")
    return main(cli)
