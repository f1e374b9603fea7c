"""The mount daemon's life: check FUSE, prepare the mount point, serve, tell systemd, stop cleanly.

``rhfs mount --foreground`` runs :func:`run` in the calling process. Plain
``rhfs mount`` starts that same command as a child with a fresh session and
returns once the mount answers, so the daemon never forks after fsspec
backends (and their event-loop threads) exist.

systemd (``Type=notify``): READY=1 is sent over ``$NOTIFY_SOCKET`` only once the
mount answers. On SIGTERM the daemon sends STOPPING=1, uploads every pending
write (files still open for writing) while the mount still serves, and only
then leaves libfuse's loop, which detaches the mount; ``destroy`` uploads
anything written in between. SIGINT and SIGHUP are left to libfuse, which
detaches first and uploads in ``destroy``.

How the loop is left: libfuse's own handler for SIGINT (installed because
mfusepy resets SIGINT to its default before mounting) is raised in the main
thread, which sits in libfuse's loop; the handler marks the session exited and
interrupts that wait. Doing it from a thread we own, after the flush, keeps the
order "flush, then unmount".
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable

from rhfs import __version__
from rhfs import mountpoint as mp
from rhfs.config import Config, expand
from rhfs.errors import FuseUnavailable, RhfsError

log = logging.getLogger(__name__)
APT_FUSE = "sudo apt-get install -y fuse3"
LIBFUSE_SIGNAL_EXIT = 8  # fuse_main_real's result when its loop ended on a signal


def sd_notify(message: str) -> bool:
    """Send one sd_notify(3) datagram; False when not run by systemd (or the socket is gone)."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(address)
            sock.sendall(message.encode())
    except OSError as e:
        log.warning("cannot notify systemd at %s: %s", address, e)
        return False
    return True


def preflight() -> None:
    """Raise :class:`FuseUnavailable` with the fix when libfuse3, /dev/fuse or fusermount3 is missing."""
    path = os.environ.get("FUSE_LIBRARY_PATH") or ctypes.util.find_library("fuse3")
    if not path:
        raise FuseUnavailable(f"libfuse3 is not installed; install it with: {APT_FUSE}")
    try:
        ctypes.CDLL(path)
    except OSError as e:
        raise FuseUnavailable(f"libfuse3 cannot be loaded ({e}); reinstall it with: {APT_FUSE}") from None
    if not os.path.exists("/dev/fuse"):
        raise FuseUnavailable(
            "/dev/fuse is missing: load the module (sudo modprobe fuse), or give the container "
            "--device /dev/fuse --cap-add SYS_ADMIN"
        )
    if os.geteuid() != 0 and not shutil.which("fusermount3"):
        raise FuseUnavailable(f"fusermount3 is not installed; install it with: {APT_FUSE}")


def prepare_mountpoint(path: str, *, allow_non_empty: bool = False) -> None:
    """Make ``path`` ready to mount on: clean a stale mount, refuse a live one, create the directory,
    and refuse a directory that holds anything (the mount would hide it) unless ``allow_non_empty``."""
    state = mp.probe(path)
    if state == "hung":
        pid = mp.daemon_pid(path)
        if pid is not None:
            raise RhfsError(
                f"{path}: mounted, but its daemon (pid {pid}) does not answer; run: rhfs unmount {path}"
            )
        state = "stale"  # no daemon behind it: nothing can answer
    if state == "stale":
        log.warning("%s: stale mount (Transport endpoint is not connected); cleaning it up", path)
        mp.unmount(path, lazy=True)
    elif state == "ok":
        entry = mp.mount_entry(path)
        if entry is None or entry.fstype == mp.RHFS_FSTYPE:
            raise RhfsError(f"{path}: already mounted (rhfs); run: rhfs unmount {path}")
        raise RhfsError(f"{path}: already mounted ({entry.fstype}); choose another mount point")
    if not os.path.exists(path):
        os.makedirs(path)
    elif not os.path.isdir(path):
        raise RhfsError(f"{path}: not a directory")
    elif not allow_non_empty and os.listdir(path):
        raise RhfsError(
            f"{path}: not empty; mounting there would hide its {len(os.listdir(path))} entries "
            "until unmounted: choose an empty directory, or pass --allow-non-empty"
        )


class _Stopper:
    """Turns SIGTERM into: STOPPING=1, upload pending writes, then leave libfuse's loop."""

    def __init__(self, flush: Callable[[], None], mountpoint: str) -> None:
        self.flush = flush
        self.mountpoint = mountpoint
        self.ready = threading.Event()
        self.stopping = threading.Event()
        self.notified_stopping = False
        self._main = threading.main_thread().ident
        self._read, self._write = socket.socketpair()
        self._write.setblocking(False)

    def install(self) -> None:
        """Must run in the main thread, before libfuse installs its own handlers."""
        signal.set_wakeup_fd(self._write.fileno(), warn_on_full_buffer=False)
        signal.signal(signal.SIGTERM, lambda signum, frame: None)  # the wakeup fd does the work
        threading.Thread(target=self._watch, name="rhfs-signals", daemon=True).start()

    def uninstall(self) -> None:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)

    def notify_stopping(self, status: str) -> None:
        if not self.notified_stopping:
            self.notified_stopping = True
            sd_notify(f"STOPPING=1\nSTATUS={status}")

    def _watch(self) -> None:
        while True:
            data = self._read.recv(64)
            if not data:
                return
            if signal.SIGTERM in data and not self.stopping.is_set():
                threading.Thread(target=self._stop, name="rhfs-stop", daemon=True).start()

    def _stop(self) -> None:
        self.stopping.set()
        log.info("SIGTERM: uploading pending writes, then unmounting %s", self.mountpoint)
        self.notify_stopping("uploading pending writes")
        self.ready.wait()  # libfuse's handlers exist only once its loop runs
        started = time.monotonic()
        try:
            self.flush()
        except Exception as e:  # the destroy-time flush tries again
            log.error("flushing pending writes failed: %s", e)
        log.info("pending writes uploaded in %.1fs; unmounting", time.monotonic() - started)
        sd_notify("STATUS=unmounting")
        assert self._main is not None
        signal.pthread_kill(self._main, signal.SIGINT)


def run(
    config: Config,
    mountpoint: str,
    *,
    read_only: bool = False,
    allow_other: bool = False,
    allow_non_empty: bool = False,
) -> None:
    """Serve the tree at ``mountpoint`` until unmounted or signalled."""
    preflight()
    mountpoint = os.path.abspath(expand(mountpoint))
    prepare_mountpoint(mountpoint, allow_non_empty=allow_non_empty)

    from rhfs.fuse_adapter import Operations, serve
    from rhfs.reachability import MountCheck
    from rhfs.vfs import recovery
    from rhfs.wiring import build_core, system_keys

    cache_dir = expand(config.mount.cache_dir)
    spool_dir = recovery.claim_spool(cache_dir)
    checks: list[MountCheck] = []
    core = build_core(
        config,
        mountpoint=mountpoint,
        read_only=read_only,
        spool_dir=spool_dir,
        extra_status=lambda: checks[0].status() if checks else {},
    )
    vfs = core.vfs
    checks.append(MountCheck({k: vfs.table.mounts[k] for k in system_keys(config)}, config, core.stats))
    checks[0].start()
    if config.mount.metrics_address:  # before the mount: an address that cannot be served fails it
        from rhfs import metrics

        metrics.serve(config.mount.metrics_address, core.stats, core.control.status_document)
    recovery.start(vfs, cache_dir, config.mount.failed_max_age_days)
    stopper = _Stopper(vfs.shutdown, mountpoint)

    def announce_when_ready() -> None:
        if mp.wait_until(lambda: mp.answers(mountpoint), timeout=120, interval=0.1):
            stopper.ready.set()
            source = config.source or "embedded default"
            log.info("rhfs %s mounted %s (config: %s)", __version__, mountpoint, source)
            sd_notify(f"READY=1\nSTATUS=serving {mountpoint}")
        elif not stopper.stopping.is_set():
            log.error("%s did not answer within 120 s", mountpoint)

    def on_destroy() -> None:
        stopper.notify_stopping("unmounted; uploading pending writes")
        log.info("unmounted %s; pending writes uploaded", mountpoint)

    operations = Operations(vfs, on_destroy=on_destroy)
    stopper.install()
    mp.write_pidfile(mountpoint)  # before the mount answers: whoever sees the mount can find us
    threading.Thread(target=announce_when_ready, name="rhfs-ready", daemon=True).start()
    try:
        serve(
            operations,
            mountpoint,
            allow_other=allow_other or config.mount.allow_other,
            read_only=read_only or config.mount.read_only,
        )
    except RuntimeError as e:
        if e.args != (LIBFUSE_SIGNAL_EXIT,):
            message = f"libfuse could not mount {mountpoint} (error {e.args[0]}); see the lines above"
            raise RhfsError(message) from e
        if not stopper.stopping.is_set():
            log.info("stopped by a signal")
    finally:
        stopper.uninstall()
        mp.remove_pidfile(mountpoint)
    log.info("rhfs stopped")


def spawn(argv: list[str], mountpoint: str, log_path: str, timeout: float = 120.0) -> int:
    """Start ``rhfs mount --foreground`` as a detached child; return once the mount answers."""
    mountpoint = os.path.abspath(expand(mountpoint))
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    with open(log_path, "ab") as log_file:
        child = subprocess.Popen(
            [sys.executable, "-m", "rhfs", *argv, "--foreground"],
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=log_file,
            start_new_session=True,
            close_fds=True,
        )
        start = log_file.tell()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if mp.answers(mountpoint):
            return 0
        if child.poll() is not None:
            break
        time.sleep(0.05)
    else:
        child.terminate()
    with open(log_path, "rb") as f:
        f.seek(start)
        said = f.read()[-3000:].decode("utf-8", "replace").strip()
    sys.stderr.write(f"rhfs: the mount did not come up; the daemon said:\n{said}\n(log: {log_path})\n")
    return 1
