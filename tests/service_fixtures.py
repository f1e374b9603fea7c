"""Helpers for the service tests: private configs, the real installed binaries, daemons and mounts.

Every helper runs the installed ``rhfs`` / ``mount.rhfs`` (never an in-process call),
so the tests see what a user or systemd sees: exit codes, stdout and stderr.
Each mount gets its own config copy with its own ``cache_dir``, so its
``rhfs.log`` holds only its own daemon's lines.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sysconfig
import time
from collections.abc import Iterator
from pathlib import Path

from testbed import Testbed, pid_alive

SCRIPTS = Path(sysconfig.get_path("scripts"))  # the installed console scripts, not a shell shim
RHFS = str(SCRIPTS / "rhfs") if (SCRIPTS / "rhfs").exists() else shutil.which("rhfs") or "rhfs"
MOUNT_RHFS = str(SCRIPTS / "mount.rhfs") if (SCRIPTS / "mount.rhfs").exists() else "mount.rhfs"


def run(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120, binary: str = RHFS
) -> subprocess.CompletedProcess[str]:
    """Run the installed binary; ``env`` entries are added to (or, when None, removed from) ours."""
    full_env = dict(os.environ)
    for key, value in (env or {}).items():
        if value is None:
            full_env.pop(key, None)
        else:
            full_env[key] = value
    return subprocess.run(
        [binary, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
        stdin=subprocess.DEVNULL,
    )


def write_config(
    tb: Testbed, directory: Path, *, mount: str = "", extra: str = "", name: str = "rhfs.toml"
) -> Path:
    """The testbed's config with its own cache_dir (and ``mount`` lines added to [mount]), mode 600."""
    directory.mkdir(parents=True, exist_ok=True)
    text = tb.config_path.read_text()
    cache = directory / "cache"
    text = re.sub(r"(?m)^cache_dir = .*$", f"cache_dir = {json.dumps(str(cache))}", text)
    if mount:
        text = text.replace("[mount]\n", f"[mount]\n{mount.strip()}\n", 1)
    path = directory / name
    path.write_text(text + "\n" + extra)
    path.chmod(0o600)
    return path


def log_of(config: Path) -> Path:
    return config.parent / "cache" / "rhfs.log"


def status(mountpoint: Path) -> dict:
    return json.loads((mountpoint / ".rhfs" / "status.json").read_text())


def daemon_pid(mountpoint: Path) -> int:
    return int(status(mountpoint)["daemon"]["pid"])


def mount_type(path: Path) -> str | None:
    found = None
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            if left.split()[4] == str(path):
                found = right.split()[0]
    return found


def wait_for(predicate, timeout: float = 30.0, interval: float = 0.05) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


def force_unmount(mountpoint: Path) -> None:
    """Best-effort cleanup for a test's own mount point."""
    if mount_type(mountpoint) is not None:
        subprocess.run(["fusermount3", "-uz", str(mountpoint)], capture_output=True)


def stop_daemon(pid: int) -> None:
    """SIGKILL a daemon this test started, if it still runs."""
    if pid_alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def mounted(config: Path, mountpoint: Path, *extra: str) -> Iterator[Path]:
    """``rhfs mount`` with the real binary; always unmounted (and its daemon gone) afterwards."""
    if not os.path.exists("/dev/fuse"):
        raise AssertionError("/dev/fuse is missing: the mount tests need a FUSE-capable machine")
    mountpoint.mkdir(parents=True, exist_ok=True)
    result = run("mount", str(mountpoint), "--config", str(config), *extra)
    assert result.returncode == 0, (
        f"rhfs mount failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
    )
    pid = daemon_pid(mountpoint)
    try:
        yield mountpoint
    finally:
        run("unmount", str(mountpoint), timeout=120)
        force_unmount(mountpoint)
        stop_daemon(pid)


class KeyGate:
    """An HTTP proxy in front of an S3 server that accepts only the access keys in ``allowed``.

    moto accepts any key; this gate plays the provider revoking a key: a request signed
    with any other access key id gets S3's 403 ``InvalidAccessKeyId`` and never reaches
    the server. (moto's own IAM checking rejects signed requests whose query holds a
    ``/``, as every delimiter listing does, so it cannot play this part.)
    """

    def __init__(self, upstream: str) -> None:
        import http.client
        import http.server
        import threading
        import urllib.parse

        self.allowed: set[str] = set()
        self.refused: list[str] = []
        parsed = urllib.parse.urlparse(upstream)
        gate = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                match = re.search(r"Credential=([^/]+)/", self.headers.get("Authorization", "")) or re.search(
                    r"[?&]X-Amz-Credential=([^/%&]+)",
                    self.path,  # a presigned URL signs in its query
                )
                key = match.group(1) if match else ""
                if key not in gate.allowed:
                    gate.refused.append(key)
                    error = (
                        b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>InvalidAccessKeyId</Code>'
                        b"<Message>The AWS Access Key Id you provided does not exist in our records."
                        b"</Message></Error>"
                    )
                    self.send_response(403)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(error)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(error)
                    return
                conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
                conn.request(self.command, self.path, body=body, headers=headers)
                response = conn.getresponse()
                data = response.read()
                self.send_response(response.status, response.reason)
                for name, value in response.getheaders():
                    if name.lower() not in ("connection", "transfer-encoding", "content-length"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                conn.close()

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, name="key-gate", daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
