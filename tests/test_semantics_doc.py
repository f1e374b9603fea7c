"""docs/SEMANTICS.md is tested: its console examples run through a real mount, and every
test module or test it names exists.

A ``console`` block is a sequence of ``$ command`` lines, each followed by the exact output
(stdout and stderr together) that the command prints when run with bash in the mount's root.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parent.parent / "docs" / "SEMANTICS.md"
TESTS = Path(__file__).resolve().parent


def console_blocks(text: str) -> list[list[tuple[str, str]]]:
    blocks = []
    for body in re.findall(r"```console\n(.*?)```", text, flags=re.S):
        steps: list[tuple[str, str]] = []
        for line in body.splitlines():
            if line.startswith("$ "):
                steps.append((line[2:], ""))
            elif steps:
                command, output = steps[-1]
                steps[-1] = (command, output + line + "\n")
        blocks.append(steps)
    return blocks


def test_the_document_has_examples() -> None:
    blocks = console_blocks(DOC.read_text())
    assert len(blocks) >= 5
    assert sum(len(b) for b in blocks) >= 15


def test_console_examples_run_through_the_mount(mnt: Path) -> None:
    for leftover in (mnt / "s3" / "rhfs-test" / "sem", mnt / "here" / "sem-b.txt"):
        if leftover.is_dir():
            shutil.rmtree(leftover)
        elif leftover.exists():
            leftover.unlink()
    for block in console_blocks(DOC.read_text()):
        for command, expected in block:
            result = subprocess.run(
                ["bash", "-c", command],
                cwd=mnt,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                timeout=120,
            )
            assert result.stdout == expected, f"$ {command}\nexpected:\n{expected}\ngot:\n{result.stdout}"


def _test_names() -> set[str]:
    names = set()
    for path in TESTS.glob("test_*.py"):
        names.update(re.findall(r"^\s*def (test_\w+)", path.read_text(), flags=re.M))
    return names


@pytest.mark.parametrize("kind", ["modules", "tests"])
def test_every_test_the_document_names_exists(kind: str) -> None:
    text = DOC.read_text()
    if kind == "modules":
        named = set(re.findall(r"`(tests/[\w/]+\.py)", text))
        missing = sorted(n for n in named if not (TESTS.parent / n).exists())
    else:
        named = set(re.findall(r"`(test_\w+)`", text)) | set(re.findall(r"::(test_\w+)", text))
        missing = sorted(named - _test_names())
    assert named, f"the document names no test {kind}"
    assert not missing, f"docs/SEMANTICS.md names {kind} that do not exist: {missing}"
