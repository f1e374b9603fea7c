"""The ``rhfs`` command line (the README's "Command line"), and ``mount.rhfs`` (see ``fstab``).

Each subcommand is one parser plus one handler (``set_defaults(handler=...)``);
adding a command touches nothing else. Errors are turned into one line on
stderr and an exit code in :func:`_run`, and nowhere else.

Exit codes (also in ``rhfs --help``): 0 success; 1 the operation failed (the
message says why and what to do); 2 bad usage or a bad configuration; 3 the
tree is up but some system is unreachable (``status``, ``config check``).
``mount.rhfs`` follows mount(8) instead: 1 bad usage, 32 the mount failed.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from rhfs import __version__, fstab
from rhfs import config as config_mod
from rhfs import log as rhfs_log
from rhfs import mountpoint as mp
from rhfs.errors import ConfigError, FuseUnavailable, RhfsError, describe
from rhfs.reachability import probe_all
from rhfs.status_report import format_status, human_size, not_ok
from rhfs.urls import tree_path

DEFAULT_MOUNTPOINT = "~/rh"
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_DEGRADED = 0, 1, 2, 3
UNMOUNT_TIMEOUT = 600.0
MOUNT_CHECK_WAIT = 10.0  # seconds rhfs mount waits for the new mount's check of every system

EPILOG = """\
exit codes:
  0  success
  1  the operation failed; the message says why and what to do
  2  bad usage or a bad configuration (the message names the file and the key)
  3  the tree is up, but some system is unreachable (status, config check)

config file search order: --config, $RHFS_CONFIG, ~/.config/rhfs/config.toml,
/etc/rhfs/config.toml; with none found, the embedded default applies.

examples:
  rhfs mount ~/rh                      mount, return once the tree answers
  rhfs status ~/rh                     health and traffic of every system
  rhfs ls s3://my-bucket/data          list a URL (also cluster:path, tree paths)
  rhfs unmount ~/rh                    upload pending writes, then unmount
  rhfs config check                    validate the config, try every system
"""


SUBCOMMAND_EPILOG = (
    "exit codes: 0 done, 1 failed, 2 bad usage or config, 3 a system is unreachable (rhfs --help)"
)
CONFIG_HELP = (
    "config file (default: $RHFS_CONFIG, then ~/.config/rhfs/config.toml, then /etc/rhfs/config.toml, "
    "else the embedded default)"
)


def _level(value: str) -> str:
    try:
        return rhfs_log.check_level(value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="rhfs",
        description="Every SSH cluster and object-store bucket as one FUSE tree.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"rhfs {__version__}")
    p.add_argument("--log-level", type=_level, default=None, help="DEBUG, INFO, WARNING or ERROR")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--log-level", type=_level, default=argparse.SUPPRESS, help="DEBUG, INFO, WARNING or ERROR"
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, handler: Callable[[argparse.Namespace], int], text: str) -> Any:
        parser = sub.add_parser(name, help=text, description=text, parents=[common], epilog=SUBCOMMAND_EPILOG)
        parser.formatter_class = argparse.RawDescriptionHelpFormatter
        parser.set_defaults(handler=handler)
        return parser

    m = command("mount", _mount, "Mount the tree; return once it answers.")
    m.add_argument("mountpoint", nargs="?", default=DEFAULT_MOUNTPOINT, help="default: ~/rh")
    m.add_argument("--config", help=CONFIG_HELP)
    m.add_argument(
        "--foreground", action="store_true", help="stay attached; tell systemd READY=1 (Type=notify)"
    )
    m.add_argument("--read-only", action="store_true", help="refuse every write")
    m.add_argument("--allow-other", action="store_true", help="let other users in (with permission checks)")
    m.add_argument(
        "--allow-non-empty",
        action="store_true",
        help="mount over a directory that holds files (they are hidden until unmounted)",
    )

    u = command("unmount", _unmount, "Upload pending writes, then unmount.")
    u.add_argument(
        "mountpoint", nargs="?", default=None, help="default: ~/rh, or the only rhfs mount (it is named)"
    )
    u.add_argument("--timeout", type=float, default=UNMOUNT_TIMEOUT, help="seconds to wait (default 600)")

    s = command("status", _status, "Show each system's health and traffic.")
    s.add_argument("mountpoint", nargs="?", default=None, help="default: ~/rh, or the only rhfs mount")
    s.add_argument("--json", action="store_true", help="print status.json and stats.json as one object")

    ls = command("ls", _ls, "List a path or URL.")
    ls.add_argument(
        "url", help="s3://bucket/dir, gs://..., az://..., CLUSTER:path, a tree path or a mount path"
    )
    ls.add_argument("-l", "--long", action="store_true", help="kind, size and modification time")
    ls.add_argument("--config", help=CONFIG_HELP)

    cp = command("cp", _cp, "Copy files by the mount's server-side routes, outside a mount.")
    cp.add_argument("src", help="s3://bucket/key, CLUSTER:path, rhfs://tree/path, a mount path, a local path")
    cp.add_argument("dst", help="the same forms; an existing directory receives SRC under its name")
    cp.add_argument("-r", "--recursive", action="store_true", help="copy directories and their contents")
    cp.add_argument("--checksum", action="store_true", help="skip files by content, not by size and time")
    cp.add_argument("--delete", action="store_true", help="remove files at DST that SRC does not have")
    cp.add_argument("--config", help=CONFIG_HELP)

    c = command("config", _config_check, "Configuration commands.")
    csub = c.add_subparsers(dest="config_command", required=True, metavar="SUBCOMMAND")
    check_text = "validate the config and try every system and bucket"
    check = csub.add_parser(
        "check", help=check_text, description=check_text, parents=[common], epilog=SUBCOMMAND_EPILOG
    )
    check.add_argument("--config", help=CONFIG_HELP)
    check.add_argument("--timeout", type=float, default=15.0, help="seconds per system (default 15)")
    check.set_defaults(handler=_config_check)
    show_text = "print the effective config, secrets redacted"
    show = csub.add_parser(
        "show", help=show_text, description=show_text, parents=[common], epilog=SUBCOMMAND_EPILOG
    )
    show.add_argument("--config", help=CONFIG_HELP)
    show.set_defaults(handler=_config_show)
    _failed_parsers(command, common)
    return p


def _commands(parser: argparse.ArgumentParser) -> set[str]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return set(action.choices)
    return set()


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = _parser()
    if fstab.is_helper_form(args_list, _commands(parser)):
        return _mount_helper(args_list, prog="rhfs")
    args = parser.parse_args(args_list)
    return _run(args.handler, args)


def _run(handler: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    try:
        return handler(args)
    except ConfigError as e:
        _error(str(e))
        return EXIT_USAGE
    except FuseUnavailable as e:
        _error(str(e))
        return EXIT_FAILED
    except RhfsError as e:
        _error(describe(e))
        return EXIT_FAILED
    except OSError as e:
        _error(_os_message(e) if e.strerror else str(e))
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130


def _error(message: str) -> None:
    print(f"rhfs: {rhfs_log.redact(message)}", file=sys.stderr)


def _os_message(e: OSError) -> str:
    return f"{e.filename}: {e.strerror}" if e.filename else str(e.strerror)


def _mountpoint(raw: str) -> str:
    return os.path.abspath(config_mod.expand(raw))


# -- mount / unmount -------------------------------------------------------------------
def _mount(args: argparse.Namespace, *, quiet: bool = False) -> int:
    from rhfs import daemon
    from rhfs.wiring import construction_problems

    config = config_mod.load(args.config)
    level = getattr(args, "log_level", None) or config.mount.log_level
    rhfs_log.setup(level)
    mountpoint = _mountpoint(args.mountpoint)
    allow_non_empty = getattr(args, "allow_non_empty", False)
    problems = construction_problems(config)
    if problems:  # each one, as config check names them: a store that cannot even be made
        for line in problems:
            _error(line)
        return EXIT_USAGE
    if args.foreground:
        daemon.run(
            config,
            mountpoint,
            read_only=args.read_only,
            allow_other=args.allow_other,
            allow_non_empty=allow_non_empty,
        )
        return EXIT_OK
    daemon.preflight()
    daemon.prepare_mountpoint(mountpoint, allow_non_empty=allow_non_empty)
    argv = ["mount", mountpoint]
    if config.source:
        argv += ["--config", os.path.abspath(config.source)]
    for flag, given in (
        ("--read-only", args.read_only),
        ("--allow-other", args.allow_other),
        ("--allow-non-empty", allow_non_empty),
    ):
        if given:
            argv.append(flag)
    if getattr(args, "log_level", None):
        argv += ["--log-level", args.log_level]
    log_path = os.path.join(config.mount.cache_dir, "rhfs.log")
    code = daemon.spawn(argv, mountpoint, log_path)
    if code == 0 and not quiet:
        print(f"rhfs: mounted {mountpoint} (log: {log_path})", flush=True)
        _report_mount_check(mountpoint, min(config.mount.op_timeout, MOUNT_CHECK_WAIT) + 1)
    return code


def _report_mount_check(mountpoint: str, wait: float) -> None:
    """Name, one line each, every system and bucket the new mount's own check found wrong."""
    check: dict[str, Any] = {}

    def finished() -> bool:
        nonlocal check
        try:
            check = _read_json(os.path.join(mountpoint, ".rhfs", "status.json")).get("startup_check", {})
        except (OSError, RhfsError, ValueError):
            return False
        return bool(check.get("done"))

    mp.wait_until(finished, wait, interval=0.05)
    for line in check.get("problems", []):
        _error(line)
    for where in check.get("pending", []):
        _error(f"{where}: no answer yet; rhfs status {mountpoint} will show it")


def _unmount(args: argparse.Namespace) -> int:
    path = _status_target(args.mountpoint, "unmount")
    if args.mountpoint is None:
        print(f"rhfs: unmounting {path} (no mount point given)")
    state = mp.probe(path)
    entry = mp.mount_entry(path)
    if state == "unmounted" or entry is None:
        _error(f"{path} is not mounted")
        return EXIT_FAILED
    if entry.fstype != mp.RHFS_FSTYPE:
        _error(f"{path} is not an rhfs mount ({entry.fstype}); use umount")
        return EXIT_FAILED
    pid = mp.daemon_pid(path)
    if state == "stale" or (state == "hung" and pid is None):
        mp.unmount(path, lazy=True)
        print(f"rhfs: cleaned up the stale mount at {path} (its daemon was gone)")
        return EXIT_OK
    busy = [p for p in mp.busy_pids(path) if p != pid]
    if pid is None:
        mp.unmount(path)  # no daemon we can ask: a plain unmount, refused while busy
    else:
        try:
            os.kill(pid, signal.SIGTERM)  # the daemon uploads pending writes, then unmounts
        except PermissionError:
            mp.unmount(path)
        gone = mp.wait_until(
            lambda: mp.mount_entry(path) is None and not mp.pid_alive(pid), args.timeout, interval=0.1
        )
        if not gone:
            _error(f"the daemon (pid {pid}) did not stop within {args.timeout:g}s; it may still be uploading")
            return EXIT_FAILED
    if busy:
        pids = ", ".join(map(str, busy))
        print(f"rhfs: note: processes {pids} were still using {path}; their open files are now closed")
    print(f"rhfs: unmounted {path}")
    return EXIT_OK


# -- status ----------------------------------------------------------------------------
def _status(args: argparse.Namespace) -> int:
    path = _status_target(args.mountpoint)
    state = mp.probe(path)
    if state != "ok" or mp.mount_type(path) != mp.RHFS_FSTYPE:
        _error(_not_serving(path, state))
        return EXIT_FAILED
    status = _read_json(os.path.join(path, ".rhfs", "status.json"))
    stats = _read_json(os.path.join(path, ".rhfs", "stats.json"))
    if args.json:
        print(json.dumps({"status": status, "stats": stats}, indent=2, sort_keys=True))
    else:
        print(format_status(status, stats))
    return EXIT_DEGRADED if not_ok(status) else EXIT_OK


def _status_target(raw: str | None, command: str = "status") -> str:
    if raw is not None:
        return _mountpoint(raw)
    default = _mountpoint(DEFAULT_MOUNTPOINT)
    mounts = mp.rhfs_mounts()
    if default in mounts or len(mounts) != 1:
        if not mounts or default in mounts:
            return default
        raise RhfsError(f"several rhfs mounts ({', '.join(mounts)}); name one: rhfs {command} MOUNTPOINT")
    return mounts[0]


def _not_serving(path: str, state: str) -> str:
    if state == "unmounted" or mp.mount_type(path) != mp.RHFS_FSTYPE:
        return f"{path} is not an rhfs mount; mount it with: rhfs mount {path}"
    if state == "stale":
        return f"{path}: stale mount (its daemon is gone); run: rhfs mount {path} (it cleans up first)"
    return f"{path}: the daemon does not answer; run: rhfs unmount {path}"


def _read_json(path: str) -> dict[str, Any]:
    def read() -> str:
        with open(path) as f:
            return f.read()

    finished, result = mp._timed(read, mp.PROBE_TIMEOUT)
    if not finished:
        raise RhfsError(f"{path}: no answer within {mp.PROBE_TIMEOUT:g}s")
    if isinstance(result, BaseException):
        raise result
    data: dict[str, Any] = json.loads(str(result))
    return data


# -- ls --------------------------------------------------------------------------------
def _ls(args: argparse.Namespace) -> int:
    url = args.url
    local = os.path.abspath(config_mod.expand(url)) if "://" not in url else ""
    if local and any(local == m or local.startswith(m.rstrip("/") + "/") for m in mp.rhfs_mounts()):
        return _ls_local(local, args.long)  # a path in a live mount: ask the mount
    from rhfs.wiring import build_core

    config = config_mod.load(args.config)
    rhfs_log.setup(getattr(args, "log_level", None) or "WARNING")
    vfs = build_core(config).vfs
    path = tree_path(url, config)
    attr = vfs.getattr(path)
    rows = [(os.path.basename(path), attr)] if not attr.is_dir else vfs.readdir(path)
    for name, a in rows:
        if name not in (".", ".."):
            print(_ls_line(name, a.is_dir, a.size, a.mtime, args.long))
    return EXIT_OK


def _ls_local(path: str, long: bool) -> int:
    if not os.path.isdir(path):
        st = os.stat(path)
        print(_ls_line(os.path.basename(path), False, st.st_size, st.st_mtime, long))
        return EXIT_OK
    for entry in sorted(os.scandir(path), key=lambda e: e.name):
        st = entry.stat(follow_symlinks=False)
        print(_ls_line(entry.name, entry.is_dir(), st.st_size, st.st_mtime, long))
    return EXIT_OK


def _ls_line(name: str, is_dir: bool, size: int, mtime: float, long: bool) -> str:
    if not long:
        return name + ("/" if is_dir else "")
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(mtime))
    return f"{'d' if is_dir else '-'} {size:>12} {when}  {name}{'/' if is_dir else ''}"


# -- cp ----------------------------------------------------------------------------------
def _cp(args: argparse.Namespace) -> int:
    from rhfs.copy_command import run_cp
    from rhfs.transfer.trees import TreeOptions

    config = config_mod.load(args.config)
    rhfs_log.setup(getattr(args, "log_level", None) or "WARNING")
    options = TreeOptions(delete=args.delete, checksum=args.checksum)
    result = run_cp(
        config, args.src, args.dst, recursive=args.recursive, tree_path=tree_path, options=options
    )
    routes = ", ".join(f"{route} {n}" for route, n in sorted(result.routes.items()))
    skipped = f", {result.skipped} unchanged" if result.skipped else ""
    deleted = f", {result.deleted} deleted" if result.deleted else ""
    print(
        f"copied {result.files} files, {human_size(result.bytes)}"
        + (f" ({routes})" if routes else "")
        + skipped
        + deleted
    )
    for failure in result.failed:
        _error(failure)
    if result.failed:
        _error(f"{len(result.failed)} file(s) failed; the others were copied (run it again to retry them)")
    return EXIT_FAILED if result.failed else EXIT_OK


# -- config ----------------------------------------------------------------------------
def _config_check(args: argparse.Namespace) -> int:
    from rhfs.wiring import construction_problems

    rhfs_log.setup(getattr(args, "log_level", None) or "ERROR")
    path = config_mod.find_config_file(args.config)
    try:
        config = config_mod.load(args.config)
        problems = construction_problems(config)
    except config_mod.ConfigProblems as e:
        problems = e.problems
    if problems:
        for line in problems:
            print(rhfs_log.redact(line), file=sys.stderr)
        print(f"rhfs: {len(problems)} problem(s) in {path or 'the embedded default'}", file=sys.stderr)
        return EXIT_USAGE
    print(f"config: {path}" if path else "config: embedded default (no file found)")
    results = probe_all(config, args.timeout)
    failed = 0
    for r in results:
        failed += not r.ok
        state = "reachable" if r.ok else r.state.upper()
        detail = r.detail if r.ok else r.line().partition(": ")[2]
        print(f"  {r.where:<24} {r.family:<8} {state}: {rhfs_log.redact(detail)}")
    if failed:
        print(f"rhfs: {failed} system(s) or bucket(s) not reachable", file=sys.stderr)
    code = EXIT_DEGRADED if failed else EXIT_OK
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # a hung system's worker thread must not hold the process open


def _config_show(args: argparse.Namespace) -> int:
    import tomli_w

    config = config_mod.load(args.config)
    print(f"# {config.source or 'embedded default'} (defaults filled in, secrets redacted)")
    print(tomli_w.dumps(config_mod.drop_none(config_mod.redacted(config))), end="")
    return EXIT_OK


# -- failed: the uploads kept under cache_dir/failed/ -----------------------------------
def _failed_parsers(command: Callable[..., Any], common: argparse.ArgumentParser) -> None:
    f = command("failed", _failed_list, "Uploads kept under cache_dir/failed/: list, retry or purge them.")
    fsub = f.add_subparsers(dest="failed_command", required=True, metavar="SUBCOMMAND")
    config_help = "config file (default: the search order of rhfs --help)"
    names_help = "kept names or target tree paths, as 'rhfs failed list' prints them (default: all)"
    listing_help = "list each kept file, its target and why"
    listing = fsub.add_parser("list", help=listing_help, description=listing_help + ".", parents=[common])
    listing.add_argument("--config", help=config_help)
    listing.add_argument("--json", action="store_true", help="one JSON list")
    listing.set_defaults(handler=_failed_list)
    retry_help = "upload kept files to their targets (not files refused for their content)"
    retry = fsub.add_parser(
        "retry",
        help=retry_help,
        description="Upload each kept file (all, or those named) to the tree path it was going to, "
        "replacing what is there now. Files refused for their content, such as a table part that "
        "is not parquet, are never retried.",
        parents=[common],
    )
    retry.add_argument("names", nargs="*", help=names_help)
    retry.add_argument("--config", help=config_help)
    retry.set_defaults(handler=_failed_retry)
    purge = fsub.add_parser(
        "purge",
        help="remove kept files",
        description="Remove the kept files named, or --all.",
        parents=[common],
    )
    purge.add_argument("names", nargs="*", help="kept names or target tree paths")
    purge.add_argument("--all", action="store_true", help="remove every kept file")
    purge.add_argument("--config", help=config_help)
    purge.set_defaults(handler=_failed_purge)


def _failed_list(args: argparse.Namespace) -> int:
    from rhfs import failed_command as fc

    config = config_mod.load(args.config)
    for secret in config.secrets():
        rhfs_log.register_secret(secret)
    kept = fc.kept_files.listing(fc.failed_dir(config))
    if args.json:
        print(rhfs_log.redact(json.dumps([fc.as_json(k) for k in kept], indent=2)))
    elif not kept:
        print(f"no failed uploads are kept under {fc.failed_dir(config)}")
    else:
        print("\n".join(rhfs_log.redact(line) for line in fc.list_lines(kept)))
    return EXIT_OK


def _failed_retry(args: argparse.Namespace) -> int:
    from rhfs import failed_command as fc

    config = config_mod.load(args.config)
    rhfs_log.setup(getattr(args, "log_level", None) or "WARNING")
    kept = fc.select(fc.kept_files.listing(fc.failed_dir(config)), args.names)
    result = fc.retry(config, kept)
    for k in result.uploaded:
        print(f"uploaded {k.target} ({k.name})")
    for k in result.not_retried:
        why = fc.why_not_retried(k)
        print(f"not retried: {k.target or k.name}: {why}; remove it with: rhfs failed purge {k.name}")
    for k, why in result.failed:
        _error(f"{k.target}: still failing: {why}; kept at {k.path}")
    print(
        f"{len(result.uploaded)} uploaded, {len(result.failed)} failed, {len(result.not_retried)} not retried"
    )
    return EXIT_FAILED if result.failed else EXIT_OK


def _failed_purge(args: argparse.Namespace) -> int:
    from rhfs import failed_command as fc

    if not args.names and not args.all:
        _error("name the kept files to remove (see: rhfs failed list), or give --all")
        return EXIT_USAGE
    config = config_mod.load(args.config)
    kept = fc.select(fc.kept_files.listing(fc.failed_dir(config)), args.names)
    print(f"removed {fc.purge(kept)} kept upload(s) from {fc.failed_dir(config)}")
    return EXIT_OK


# -- fstab: mount.rhfs -----------------------------------------------------------------
def mount_helper_main(argv: Sequence[str] | None = None) -> int:
    """``mount.rhfs SOURCE MOUNTPOINT [-sfnv] [-o opt,...] [-t fuse.rhfs]``, as mount(8) calls helpers."""
    return _mount_helper(list(sys.argv[1:] if argv is None else argv), prog="mount.rhfs")


def _mount_helper(argv: list[str], prog: str) -> int:
    return fstab.run(argv, prog, lambda args: _run(lambda a: _mount(a, quiet=True), args))
