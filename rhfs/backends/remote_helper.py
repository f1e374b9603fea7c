"""The program a cluster session runs on its cluster: Python 3.6+, standard library only.

Nothing is installed on the cluster. The session's command is fixed text (:data:`COMMAND`):
``python3 -c BOOT``, where ``BOOT`` reads a length line and this program's text from stdin,
keeps that text as ``PROGRAM`` and runs it. The daemon adds one line, ``serve(PROGRAM)``.
The program's text is also what a push sends to its destination, which runs the same helper.

Then stdin carries jobs, one JSON line each, and stdout their answers, one JSON line each;
many jobs run at once (a thread each). Every job has an ``id``; its answer repeats it::

    {"id": 1, "op": "copy", "src": P, "dst": P, "tmp": P, "size": N}  one file within the cluster
    {"id": 2, "op": "push", "src": P, "dst": P, "tmp": P, "size": N,  a file to another cluster
     "to": {"host", "port", "user", "alias", "host_keys": [line, ...]}}
    {"id": 3, "op": "upload", "file": P, "size": N, "parts": [[offset, length, request], ...]}
    {"id": 4, "op": "download", "read": request, "file": P, "tmp": P, "size": N}
    {"id": 5, "op": "relay", "read": request, "size": N, "parts": [...]}  store to store
    {"id": 6, "op": "copy-many", "files": [[src, dst, tmp, size], ...]}  many files, one job
    {"id": 7, "op": "push-many", "files": [...], "to": {...}}
    {"id": 8, "op": "connect", "to": {...}}   open the connection that pushes there will take
    {"id": 2, "op": "cancel"}                                        give up job 2

    {"ready": true, "pid": N, "python": "3.x.y"}       once, at the start
    {"id": 2, "progress": BYTES}                       now and then while a job runs
    {"id": 2, "ok": true, "bytes": BYTES, "etags": [...]}   uploads and relays give ETags
    {"id": 6, "ok": true, "bytes": BYTES, "failed": [[index, TEXT, K], ...]}  the files that failed
    {"id": 2, "ok": false, "error": TEXT, "kind": K}   K: "cant" (nothing was written, and the
        route cannot run here), "unsupported" (nothing was written; a per-file command may do
        it), or absent (it failed)

A request is ``{"method", "url", "headers"}``, with a signature or a token: requests come only
over stdin, never in argv, the environment or a file, and no error message carries a URL.

A push goes over one ssh connection per destination, opened at the first push there and kept
while this helper runs: ``ssh`` to the destination, authenticated by the agent the daemon
forwards, checking its host key against ``host_keys`` (written to a 0600 file in a private
directory made for it, both removed once the connection is up), runs the same helper there. Each
file is framed on that connection: ``recv-open``, ``recv-data`` lines each followed by ``len``
bytes, then ``recv-close`` (or ``recv-abort``); the destination answers ``recv-close``.

Invariants: every file is written to a hidden temporary sibling and renamed over its target
only once it holds exactly the expected size; the helper keeps no file of its own; when stdin
closes (the session ended, or the daemon is gone) it closes its peers, removes its temporary
files, and exits: nothing is left behind on the cluster.
"""

import itertools
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor

CHUNK = 1 << 20  # bytes per read and write of a file
FRAME = 1 << 20  # bytes per data frame sent to a peer
PARTS_IN_FLIGHT = 4
FILES_IN_FLIGHT = 8  # files of one copy-many or push-many job moving at once
TIMEOUT = 120  # seconds an HTTP request may stall
REFUSED_SECONDS = 60  # a push's destination that refused is not tried again this long
UNREACHED_SECONDS = 5  # nor one that could not be reached, this long
PROGRESS_EVERY = 0.25  # seconds between two progress answers of one job
TMP_MARK = ".rhfs-tmp-"
NOT_FOUND = 127  # the exit code of COMMAND where python3 is missing
BOOT = (
    "import sys;PROGRAM=sys.stdin.buffer.read(int(sys.stdin.buffer.readline()));"
    'exec(compile(PROGRAM,"rhfs-helper","exec"))'
)
COMMAND = "command -v python3 >/dev/null 2>&1 || exit 127; exec python3 -c " + shlex.quote(BOOT)
URL_PATTERN = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://\S*")
_temporaries = set()  # type: set[str]  # the temporary files being written, removed if the helper stops
_temporaries_lock = threading.Lock()


class Refused(Exception):
    """Nothing was written, and this job cannot run here."""

    kind = "cant"


class Unsupported(Refused):
    """Nothing was written; a per-file command may still do it."""

    kind = "unsupported"


class Cancelled(Exception):
    pass


def describe(e):
    """A failure in words, without any URL (a signed one holds its signature)."""
    if isinstance(e, urllib.error.HTTPError):
        return f"HTTP {e.code} {e.reason}"
    if isinstance(e, urllib.error.URLError):
        text = f"cannot reach the store: {e.reason}"
    elif isinstance(e, (Refused, Cancelled)):
        text = str(e)
    else:
        text = f"{type(e).__name__}: {e}"
    return URL_PATTERN.sub("<url>", text)


class Job:
    """One running job: its progress in bytes, and whether it was cancelled."""

    def __init__(self, report=None, ident=None):
        self.report, self.id = report, ident
        self.done = 0
        self.cancelled = False
        self._lock = threading.Lock()
        self._reported = time.monotonic()

    def check(self):
        if self.cancelled:
            raise Cancelled("cancelled")

    def add(self, n):
        self.check()
        with self._lock:
            self.done += n
            now = time.monotonic()
            due = self.report is not None and now - self._reported >= PROGRESS_EVERY
            if due:
                self._reported = now
        if due:
            self.report({"id": self.id, "progress": self.done})


class Whole:
    """A hidden temporary sibling of ``path``, renamed over it only when it holds ``size`` bytes."""

    def __init__(self, tmp, path, mode=0o666):
        self.tmp, self.path = tmp, path
        self.fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
        with _temporaries_lock:
            _temporaries.add(tmp)

    def write(self, data):
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view) :]

    def fill(self, source, size, job):
        """Write what ``source`` (a file, a response) holds, then :meth:`finish`; abort on a failure."""
        try:
            while True:
                data = source.read(CHUNK)
                if not data:
                    break
                job.add(len(data))
                self.write(data)
        except BaseException:
            self.abort()
            raise
        self.finish(size)

    def finish(self, size):
        try:
            got = os.fstat(self.fd).st_size
            os.close(self.fd)
            self.fd = -1
            if got != size:
                raise OSError(f"got {got} bytes, expected {size}")
            os.replace(self.tmp, self.path)
        except BaseException:
            self.abort()
            raise
        self._forget()

    def abort(self):
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        try:
            os.unlink(self.tmp)
        except OSError:
            pass
        self._forget()

    def _forget(self):
        with _temporaries_lock:
            _temporaries.discard(self.tmp)


def remove_temporaries():
    with _temporaries_lock:
        names = list(_temporaries)
        _temporaries.clear()
    for name in names:
        try:
            os.unlink(name)
        except OSError:
            pass


# -- HTTP: requests the daemon signed ------------------------------------------------------
class Body:
    """At most ``length`` bytes of ``source`` (a file or a response), as a request body."""

    def __init__(self, source, length, job):
        self.source, self.left, self.job = source, length, job

    def read(self, n=-1):
        if self.left <= 0:
            return b""
        n = self.left if n is None or n < 0 else min(n, self.left)
        data = self.source.read(n)
        self.left -= len(data)
        self.job.add(len(data))
        return data

    def close(self):
        self.source.close()


def send(spec, body=None, length=None, extra=None):
    headers = dict(spec.get("headers") or {})
    headers.update(extra or {})
    # With a body, urllib would add a form Content-Type, which signed requests did not sign
    # for (and some servers then parse the body as a form): send it empty, as curl omits it.
    if body is not None and not any(k.lower() == "content-type" for k in headers):
        headers["Content-Type"] = ""
    if length is not None:
        headers["Content-Length"] = str(length)
    request = urllib.request.Request(spec["url"], data=body, headers=headers, method=spec["method"])
    return urllib.request.urlopen(request, timeout=TIMEOUT)


def put_part(part, source, job):
    offset, length, spec = part
    if source[0] == "file":
        raw = open(source[1], "rb")  # noqa: SIM115 (closed by the body)
        raw.seek(offset)
    else:
        raw = send(source[1], extra={"Range": f"bytes={offset}-{offset + length - 1}"})
    body = Body(raw, length, job)
    try:
        with send(spec, body=body, length=length) as response:
            response.read()
            return response.headers.get("ETag") or ""
    finally:
        body.close()


def put_parts(parts, source, job=None):
    job = job or Job()
    if len(parts) == 1:
        return [put_part(parts[0], source, job)]
    with ThreadPoolExecutor(PARTS_IN_FLIGHT) as pool:
        return list(pool.map(lambda part: put_part(part, source, job), parts))


def download(spec, path, size, tmp=None, job=None):
    tmp = tmp or os.path.join(os.path.dirname(path), TMP_MARK + uuid.uuid4().hex)
    with send(spec) as response:
        Whole(tmp, path).fill(response, size, job or Job())


# -- files on the cluster -------------------------------------------------------------------
def copy(src, dst, tmp, size, job):
    with open(src, "rb") as f:
        Whole(tmp, dst, os.fstat(f.fileno()).st_mode & 0o777).fill(f, size, job)


class Waiter:
    def __init__(self):
        self.answer = None
        self._event = threading.Event()

    def set(self, answer):
        if self.answer is None:
            self.answer = answer
            self._event.set()

    def wait(self, job):
        while not self._event.wait(0.5):
            job.check()
        return self.answer


def _message(line):
    """A JSON line as a dict; {} for any other line."""
    try:
        message = json.loads(line.decode("utf-8", "replace"))
    except ValueError:
        return {}
    return message if isinstance(message, dict) else {}


def frame(header, payload=b""):
    return json.dumps(header).encode() + b"\n" + payload


class Peer:
    """One ssh connection to a push's destination, with this same helper running there."""

    def __init__(self, server, hop):
        if shutil.which("ssh") is None:
            raise Refused("no ssh client on the source cluster")
        if not os.environ.get("SSH_AUTH_SOCK"):
            raise Refused("no forwarded agent on the source cluster (AllowAgentForwarding?)")
        self.server, self.host = server, hop["host"]
        self.dead = None
        self.waiters = {}
        self.ids = itertools.count(1)
        self.lock = threading.Lock()  # one frame at a time on the connection
        self.said = b""
        directory = None
        if hop["host_keys"]:
            directory = tempfile.mkdtemp(prefix="rhfs-helper-")
            known = os.path.join(directory, "known_hosts")
            with os.fdopen(os.open(known, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as f:
                f.write("\n".join(hop["host_keys"]) + "\n")
            checks = ["StrictHostKeyChecking=yes", "UserKnownHostsFile=" + known]
            checks += ["GlobalKnownHostsFile=/dev/null", "HostKeyAlias=" + hop["alias"]]
        else:
            checks = ["StrictHostKeyChecking=no", "UserKnownHostsFile=/dev/null"]
            checks += ["GlobalKnownHostsFile=/dev/null"]
        options = ["BatchMode=yes", *checks, "ForwardAgent=no", "ClearAllForwardings=yes"]
        options += ["ConnectTimeout=10", "ServerAliveInterval=15"]
        argv = ["ssh", "-T"] + [a for o in options for a in ("-o", o)]
        argv += ["-p", str(hop["port"]), "-l", hop["user"], hop["host"], COMMAND]
        try:
            self.proc = subprocess.Popen(
                argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
            )
            stdin, stdout, stderr = self.proc.stdin, self.proc.stdout, self.proc.stderr
            assert stdin is not None and stdout is not None and stderr is not None
            self.stdin, self.stdout, self.errors = stdin, stdout, stderr
            threading.Thread(target=self._drain_stderr, daemon=True).start()
            try:
                self.stdin.write(str(len(server.program)).encode() + b"\n" + server.program)
                self.stdin.flush()
            except OSError:
                pass  # ssh is gone already: its exit status says why
            hello = self._hello()
        finally:
            if directory is not None:  # the host key was checked before the helper there could answer
                shutil.rmtree(directory, ignore_errors=True)
        if not hello:
            code = self.proc.wait()
            if code == NOT_FOUND:
                raise Unsupported("the destination has no python3")
            raise OSError(f"ssh to {self.host} failed (exit {code}): {self._said()}")
        threading.Thread(target=self._read_answers, daemon=True).start()

    def _hello(self):
        """The helper's ready line, past anything a login script printed; b"" if it ended first."""
        for line in iter(self.stdout.readline, b""):
            if _message(line).get("ready"):
                return line
        return b""

    def _said(self):
        time.sleep(0.05)  # let the last of stderr arrive
        return self.said.decode("utf-8", "replace").strip()[-300:] or "no message"

    def _drain_stderr(self):
        for line in iter(self.errors.readline, b""):
            self.said = (self.said + line)[-2000:]

    def _read_answers(self):
        for line in iter(self.stdout.readline, b""):
            answer = _message(line)
            waiter = self.waiters.get(answer.get("id"))
            if waiter is not None:
                waiter.set(answer)
        self.dead = f"the connection to {self.host} ended: {self._said()}"
        for waiter in list(self.waiters.values()):
            waiter.set({"ok": False, "error": self.dead})
        self.server.forget_peer(self)

    def write(self, frames):
        with self.lock:
            try:
                self.stdin.write(b"".join(frames))
                self.stdin.flush()
            except OSError:
                pass  # the reader sees the end, and answers every waiter

    def send_file(self, job, src, dst, tmp, size):
        ident = next(self.ids)
        waiter = self.waiters[ident] = Waiter()
        try:
            if self.dead:
                raise OSError(self.dead)
            with open(src, "rb") as f:
                frames, sent = [frame({"op": "recv-open", "id": ident, "file": dst, "tmp": tmp})], 0
                data = f.read(FRAME)
                while data and waiter.answer is None and sent <= size:
                    frames.append(frame({"op": "recv-data", "id": ident, "len": len(data)}, data))
                    sent += len(data)
                    job.add(len(data))
                    data = f.read(FRAME)
                    if data:
                        self.write(frames)
                        frames = []
            if waiter.answer is not None or sent != size:  # the destination failed, or the source changed
                self.write([*frames, frame({"op": "recv-abort", "id": ident})])
                if waiter.answer is None:
                    raise OSError(f"{src} changed during the copy: {sent} bytes or more, not {size}")
            else:
                self.write([*frames, frame({"op": "recv-close", "id": ident, "size": size})])
            answer = waiter.wait(job)
        except Cancelled:
            self.write([frame({"op": "recv-abort", "id": ident})])
            raise
        finally:
            self.waiters.pop(ident, None)
        if not answer.get("ok"):
            raise OSError(answer.get("error") or "the destination failed")

    def close(self):
        try:
            self.stdin.close()
        except OSError:
            pass

    def wait(self, seconds):
        try:
            self.proc.wait(seconds)
        except subprocess.TimeoutExpired:
            self.proc.kill()


# -- the helper's loop --------------------------------------------------------------------------
class Server:
    def __init__(self, program, inp, out):
        self.program, self.inp, self.out = program, inp, out
        self.out_lock = threading.Lock()
        self.jobs = {}
        self.incoming = {}  # a peer's files being received, by id
        self.refused = set()  # ids whose file failed: their remaining frames are dropped
        self.peers = {}
        self.openings = {}  # a lock per destination, held while its connection opens
        self.refusals = {}  # destinations that refused a push: until when, and why
        self.peers_lock = threading.Lock()  # guards peers, openings and refusals

    def answer(self, message):
        data = (json.dumps(message) + "\n").encode()
        with self.out_lock:
            try:
                self.out.write(data)
                self.out.flush()
            except (OSError, ValueError):
                pass  # the daemon is gone: the end of stdin stops this helper

    def serve(self):
        try:
            version = ".".join(str(n) for n in sys.version_info[:3])
            self.answer({"ready": True, "pid": os.getpid(), "python": version})
            for line in iter(self.inp.readline, b""):
                message = json.loads(line.decode())
                op = message.get("op", "")
                if op.startswith("recv-"):
                    self.receive(message)
                elif op == "cancel":
                    job = self.jobs.get(message["id"])
                    if job is not None:
                        job.cancelled = True
                else:
                    threading.Thread(target=self.run_job, args=(message,), daemon=True).start()
        finally:
            self.close()

    def run_job(self, message):
        ident = message["id"]
        job = self.jobs[ident] = Job(self.answer, ident)
        try:
            run = OPS.get(message.get("op"))
            if run is None:
                raise ValueError(f"unknown op {message.get('op')!r}")
            result = run(self, job, message)
            answer = {"id": ident, "ok": True, "bytes": job.done}
            answer.update(result or {})
        except Refused as e:
            answer = {"id": ident, "ok": False, "error": describe(e), "kind": e.kind}
        except Exception as e:
            answer = {"id": ident, "ok": False, "error": describe(e)}
        finally:
            self.jobs.pop(ident, None)
        self.answer(answer)

    def peer(self, hop):
        """The connection to ``hop``, opened now if there is none (one per destination). A
        destination that refused (no python3 there, no ssh here) is not tried again for
        :data:`REFUSED_SECONDS`, one that could not be reached for :data:`UNREACHED_SECONDS`:
        its pushes fail at once, as the first did, rather than each waiting on its own try."""
        key = json.dumps(hop, sort_keys=True)
        with self.peers_lock:
            opening = self.openings.setdefault(key, threading.Lock())
        with opening:  # pushes elsewhere do not wait for this connection
            with self.peers_lock:
                peer, refused = self.peers.get(key), self.refusals.get(key)
            if refused is not None and time.monotonic() < refused[0]:
                raise refused[1]
            if peer is None or peer.dead:
                try:
                    peer = Peer(self, hop)
                except Exception as e:
                    seconds = REFUSED_SECONDS if isinstance(e, Refused) else UNREACHED_SECONDS
                    with self.peers_lock:
                        self.refusals[key] = (time.monotonic() + seconds, e)
                    raise
                with self.peers_lock:
                    self.peers[key] = peer
            return peer

    def forget_peer(self, peer):
        with self.peers_lock:
            for key, known in list(self.peers.items()):
                if known is peer:
                    del self.peers[key]

    def receive(self, message):
        """One frame of a file a peer sends: written here, in order, by the reading thread."""
        op, ident = message["op"], message["id"]
        payload = self.inp.read(message["len"]) if op == "recv-data" else b""
        if ident in self.refused:
            if op in ("recv-close", "recv-abort"):
                self.refused.discard(ident)
            return
        try:
            if op == "recv-open":
                self.incoming[ident] = Whole(message["tmp"], message["file"])
            elif op == "recv-data":
                self.incoming[ident].write(payload)
            elif op == "recv-close":
                self.incoming.pop(ident).finish(message["size"])
                self.answer({"id": ident, "ok": True})
            elif op == "recv-abort":
                incoming = self.incoming.pop(ident, None)
                if incoming is not None:
                    incoming.abort()
        except Exception as e:
            incoming = self.incoming.pop(ident, None)
            if incoming is not None:
                incoming.abort()
            if op not in ("recv-close", "recv-abort"):
                self.refused.add(ident)
            self.answer({"id": ident, "ok": False, "error": describe(e)})

    def close(self):
        with self.peers_lock:
            peers = list(self.peers.values())
            self.peers.clear()
        for peer in peers:
            peer.close()  # the helper there sees the end of its stdin, cleans up and exits
        for peer in peers:
            peer.wait(5)
        for incoming in list(self.incoming.values()):
            incoming.abort()
        remove_temporaries()


def _copy(server, job, m):
    copy(m["src"], m["dst"], m["tmp"], m["size"], job)


def _push(server, job, m):
    server.peer(m["to"]).send_file(job, m["src"], m["dst"], m["tmp"], m["size"])


def _upload(server, job, m):
    return {"etags": put_parts(m["parts"], ("file", m["file"]), job)}


def _download(server, job, m):
    download(m["read"], m["file"], m["size"], m["tmp"], job)


def _relay(server, job, m):
    return {"etags": put_parts(m["parts"], ("http", m["read"]), job)}


def _many(one):
    """An op over ``m["files"]``, ``[src, dst, tmp, size]`` each, run a few at a time as one job:
    its progress counts them all; its answer lists the files that failed, ``[index, error, kind]``."""

    def run(server, job, m):
        failed = []

        def each(index, file):
            try:
                one(server, job, m, *file)
            except Cancelled:
                raise
            except Refused as e:
                failed.append([index, describe(e), e.kind])
            except Exception as e:
                failed.append([index, describe(e), None])

        with ThreadPoolExecutor(FILES_IN_FLIGHT) as pool:
            list(pool.map(each, range(len(m["files"])), m["files"]))
        return {"failed": failed}

    return run


def _copy_one(server, job, m, src, dst, tmp, size):
    copy(src, dst, tmp, size, job)


def _push_one(server, job, m, src, dst, tmp, size):
    server.peer(m["to"]).send_file(job, src, dst, tmp, size)


def _connect(server, job, m):
    server.peer(m["to"])


OPS = {"copy": _copy, "push": _push, "upload": _upload, "download": _download, "relay": _relay}
OPS.update({"copy-many": _many(_copy_one), "push-many": _many(_push_one), "connect": _connect})


def _stop(signum, _frame):
    raise SystemExit(1)


def serve(program):
    """Run jobs from stdin until it closes, then clean up and exit."""
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _stop)
    try:
        Server(program, sys.stdin.buffer, sys.stdout.buffer).serve()
    finally:
        remove_temporaries()
    os._exit(0)
