"""The helper of a cluster's kept session, run here as a cluster runs it: ``python3 -c BOOT``, pipes.

No servers but a slow HTTP one of its own (for a cancel): the protocol of
:mod:`rhfs.backends.remote_helper` (jobs and answers as JSON lines, a peer's files in
frames), on this machine's Python and on Python 3.6, the oldest a cluster may have
(pyenv's, where this machine has one).
"""

from __future__ import annotations

import glob
import http.server
import json
import os
import queue
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from rhfs.backends import remote_helper
from rhfs.backends.helper_link import PROGRAM

OLDEST = sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.6*/bin/python3.6")))
PYTHONS = [
    pytest.param(sys.executable, id="this-python"),
    pytest.param(
        OLDEST[0] if OLDEST else "python3.6",
        id="python3.6",
        marks=pytest.mark.skipif(not OLDEST and not shutil.which("python3.6"), reason="no Python 3.6 here"),
    ),
]
MiB = 1 << 20


class Helper:
    """One helper process, talked to as a session talks to it."""

    def __init__(
        self, python: str, tmp: Path, *, program: bytes = PROGRAM, env: dict[str, str] | None = None
    ):
        self.tmpdir = tmp / "tmpdir"
        self.tmpdir.mkdir(exist_ok=True)
        env = {**(os.environ if env is None else env), "TMPDIR": str(self.tmpdir)}
        self.proc = subprocess.Popen(
            [python, "-c", remote_helper.BOOT], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.stdin, self.stdout = self.proc.stdin, self.proc.stdout
        self.stdin.write(f"{len(program)}\n".encode() + program)
        self.stdin.flush()
        self.lines: queue.Queue[bytes] = queue.Queue()
        threading.Thread(target=self._read_lines, daemon=True).start()
        self.hello = self.read()
        self.progress: list[int] = []

    def _read_lines(self) -> None:
        for line in iter(self.stdout.readline, b""):
            self.lines.put(line)

    def send(self, message: dict[str, Any], payload: bytes = b"") -> None:
        self.stdin.write(json.dumps(message).encode() + b"\n" + payload)
        self.stdin.flush()

    def read(self, timeout: float = 30) -> dict[str, Any]:
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError("the helper did not answer") from None
        answer: dict[str, Any] = json.loads(line)
        return answer

    def answer(self, ident: int) -> dict[str, Any]:
        """The final answer of job ``ident``, its progress answers kept in ``progress``."""
        while True:
            answer = self.read()
            if "progress" in answer:
                self.progress.append(answer["progress"])
            elif answer.get("id") == ident:
                return answer

    def close(self) -> int:
        self.stdin.close()
        return self.proc.wait(30)


@pytest.fixture(params=PYTHONS)
def python(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def helper(python: str, tmp_path: Path) -> Any:
    h = Helper(python, tmp_path)
    yield h
    if h.proc.poll() is None:
        h.close()


def test_it_says_ready_and_leaves_nothing_when_its_stdin_closes(helper: Helper, python: str) -> None:
    assert helper.hello["ready"] is True and helper.hello["pid"] == helper.proc.pid
    version = subprocess.run([python, "-c", "import sys; print(sys.version_info[:2])"], capture_output=True)
    assert helper.hello["python"].startswith(".".join(version.stdout.decode().strip("()\n").split(", ")))
    assert list(helper.tmpdir.iterdir()) == []  # it keeps no file of its own
    assert helper.close() == 0
    assert list(helper.tmpdir.iterdir()) == []


def test_a_copy_is_whole_or_nothing(helper: Helper, tmp_path: Path) -> None:
    data = os.urandom(3 * MiB + 5)
    (tmp_path / "src").write_bytes(data)
    (tmp_path / "src").chmod(0o640)
    src, dst = str(tmp_path / "src"), str(tmp_path / "dst")
    helper.send(
        {"id": 1, "op": "copy", "src": src, "dst": dst, "tmp": dst + ".rhfs-tmp-1", "size": len(data)}
    )
    answer = helper.answer(1)
    assert answer == {"id": 1, "ok": True, "bytes": len(data)}
    assert (tmp_path / "dst").read_bytes() == data and (tmp_path / "dst").stat().st_mode & 0o777 == 0o640
    other = str(tmp_path / "other")
    helper.send({"id": 2, "op": "copy", "src": src, "dst": other, "tmp": other + ".rhfs-tmp-2", "size": 7})
    answer = helper.answer(2)
    assert answer["ok"] is False and "expected 7" in answer["error"] and "kind" not in answer
    helper.send(
        {"id": 3, "op": "copy", "src": src + "-none", "dst": other, "tmp": other + ".rhfs-tmp-3", "size": 1}
    )
    assert "No such file" in helper.answer(3)["error"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dst", "src", "tmpdir"]  # no temporary file


def test_many_jobs_run_at_once(helper: Helper, tmp_path: Path) -> None:
    (tmp_path / "src").write_bytes(b"x" * 4096)
    for i in range(1, 21):
        dst = str(tmp_path / f"d{i}")
        helper.send(
            {"id": i, "op": "copy", "src": str(tmp_path / "src"), "dst": dst, "tmp": dst + ".t", "size": 4096}
        )
    answers = [helper.read() for _ in range(20)]
    assert sorted(a["id"] for a in answers) == list(range(1, 21)) and all(a["ok"] for a in answers)
    assert all((tmp_path / f"d{i}").read_bytes() == b"x" * 4096 for i in range(1, 21))


def test_a_peer_file_comes_in_frames_and_is_kept_only_whole(helper: Helper, tmp_path: Path) -> None:
    one, two = os.urandom(600_000), os.urandom(300_000)
    for ident, name in ((1, "one"), (2, "two"), (3, "short"), (4, "dropped")):
        path = str(tmp_path / name)
        helper.send({"op": "recv-open", "id": ident, "file": path, "tmp": path + ".rhfs-tmp-x"})
    for offset in range(0, len(one), 256 << 10):  # two files interleaved, as concurrent pushes send them
        for ident, data in ((1, one), (2, two)):
            chunk = data[offset : offset + (256 << 10)]
            if chunk:
                helper.send({"op": "recv-data", "id": ident, "len": len(chunk)}, chunk)
    helper.send({"op": "recv-data", "id": 3, "len": 3}, b"abc")
    helper.send({"op": "recv-data", "id": 4, "len": 3}, b"abc")
    helper.send({"op": "recv-close", "id": 1, "size": len(one)})
    helper.send({"op": "recv-close", "id": 2, "size": len(two)})
    helper.send({"op": "recv-close", "id": 3, "size": 4})
    helper.send({"op": "recv-abort", "id": 4})
    helper.send({"id": 5, "op": "none"})  # answered only once every frame before it was taken
    answers = {a["id"]: a for a in (helper.read() for _ in range(4))}
    assert answers[1]["ok"] and answers[2]["ok"] and not answers[3]["ok"]
    assert "expected 4" in answers[3]["error"]
    assert (tmp_path / "one").read_bytes() == one and (tmp_path / "two").read_bytes() == two
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one", "tmpdir", "two"]  # no temporary file


def test_a_file_cut_off_by_the_end_of_stdin_leaves_nothing(helper: Helper, tmp_path: Path) -> None:
    path = str(tmp_path / "cut")
    helper.send({"op": "recv-open", "id": 1, "file": path, "tmp": path + ".rhfs-tmp-x"})
    helper.send({"op": "recv-data", "id": 1, "len": 5}, b"hello")
    assert helper.close() == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tmpdir"]
    assert list(helper.tmpdir.iterdir()) == []


def test_progress_is_answered_in_bytes(python: str, tmp_path: Path) -> None:
    eager = PROGRAM.replace(b"PROGRESS_EVERY = 0.25", b"PROGRESS_EVERY = 0")
    assert eager != PROGRAM
    helper = Helper(python, tmp_path, program=eager)
    size = 3 * MiB + 1
    (tmp_path / "src").write_bytes(b"y" * size)
    dst = str(tmp_path / "dst")
    helper.send(
        {"id": 7, "op": "copy", "src": str(tmp_path / "src"), "dst": dst, "tmp": dst + ".t", "size": size}
    )
    assert helper.answer(7)["bytes"] == size
    assert helper.progress == [MiB, 2 * MiB, 3 * MiB, size]
    assert helper.close() == 0


def test_bad_jobs_are_answered_and_the_helper_goes_on(helper: Helper, tmp_path: Path) -> None:
    helper.send({"id": 1, "op": "format-the-disk"})
    assert helper.answer(1) == {"id": 1, "ok": False, "error": "ValueError: unknown op 'format-the-disk'"}
    helper.send({"id": 99, "op": "cancel"})  # nothing of that id runs: nothing happens
    secret = "http://127.0.0.1:1/bucket/key?X-Amz-Signature=deadbeef"
    helper.send(
        {
            "id": 2,
            "op": "download",
            "read": {"method": "GET", "url": secret, "headers": {}},
            "file": str(tmp_path / "d"),
            "tmp": str(tmp_path / "d.t"),
            "size": 1,
        }
    )
    answer = helper.answer(2)
    assert answer["ok"] is False and "cannot reach the store" in answer["error"]
    assert "Signature" not in json.dumps(answer) and "127.0.0.1" not in json.dumps(answer)


def test_a_push_without_a_forwarded_agent_is_refused_before_anything_is_written(
    python: str, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if k != "SSH_AUTH_SOCK"}
    helper = Helper(python, tmp_path, env=env)
    (tmp_path / "src").write_bytes(b"z")
    to = {"host": "127.0.0.1", "port": 1, "user": "nobody", "alias": "rhfs-destination", "host_keys": []}
    helper.send(
        {
            "id": 1,
            "op": "push",
            "src": str(tmp_path / "src"),
            "dst": "/nowhere",
            "tmp": "/nowhere.t",
            "size": 1,
            "to": to,
        }
    )
    answer = helper.answer(1)
    assert answer["kind"] == "cant" and "agent" in answer["error"]
    assert helper.close() == 0


def test_error_messages_name_no_url() -> None:
    text = remote_helper.describe(ValueError("bad https://h.example/k?sig=abc&se=2030 here"))
    assert text == "ValueError: bad <url> here"


class SlowServer:
    """An HTTP server on loopback whose one object comes 1 MiB at a time, 0.2 s apart."""

    def __init__(self, chunks: int) -> None:
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Length", str(chunks * MiB))
                self.end_headers()
                for _ in range(chunks):
                    try:
                        self.wfile.write(b"s" * MiB)
                        self.wfile.flush()
                    except OSError:
                        return
                    time.sleep(0.2)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/bucket/key"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_a_cancelled_job_stops_at_its_next_chunk_and_leaves_nothing(python: str, tmp_path: Path) -> None:
    eager = PROGRAM.replace(b"PROGRESS_EVERY = 0.25", b"PROGRESS_EVERY = 0")
    helper, server = Helper(python, tmp_path, program=eager), SlowServer(chunks=30)
    try:
        dst = str(tmp_path / "d")
        read = {"method": "GET", "url": server.url, "headers": {}}
        helper.send(
            {"id": 1, "op": "download", "read": read, "file": dst, "tmp": dst + ".t", "size": 30 * MiB}
        )
        assert helper.read()["progress"] == MiB  # under way
        helper.send({"id": 1, "op": "cancel"})
        answer = helper.answer(1)
        assert answer == {"id": 1, "ok": False, "error": "cancelled"}
        assert sorted(p.name for p in tmp_path.iterdir()) == ["tmpdir"]  # no file, no temporary one
        assert helper.close() == 0
    finally:
        server.close()
