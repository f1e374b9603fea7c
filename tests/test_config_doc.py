"""docs/CONFIG.md: generated from rhfs/config.py, current, and every example in it loads.

No servers and no FUSE: the examples are loaded with rhfs's own loader, from files of the
modes a user would give them.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from rhfs import config as cfg
from rhfs import config_reference
from rhfs.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / config_reference.DOC_PATH


def examples() -> list[str]:
    return re.findall(r"```toml\n(.*?)```", DOC.read_text(), flags=re.S)


def test_config_md_is_current() -> None:
    assert DOC.read_text() == config_reference.render(), (
        f"{config_reference.DOC_PATH} is stale; run: {config_reference.REGENERATE}"
    )


def test_the_generator_says_when_the_document_is_stale(tmp_path: Path) -> None:
    script = REPO / "scripts" / "gen_config_doc.py"
    ok = subprocess.run([sys.executable, str(script), "--check"], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr


def test_every_key_has_help_and_appears_with_its_default() -> None:
    missing = config_reference.missing_help()
    assert missing == [], f"give each key its help in HELP in rhfs/config_reference.py: {missing}"
    text = DOC.read_text()
    for _, cls, _ in config_reference.SECTIONS:
        for f in dataclasses.fields(cls):
            if f.name != "name":
                assert re.search(rf"^\| `{f.name}` \|", text, flags=re.M), f"{cls.__name__}.{f.name}"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A HOME with the ssh files the examples name."""
    ssh = tmp_path / "home" / ".ssh"
    ssh.mkdir(parents=True)
    (ssh / "known_hosts").write_text("")
    (ssh / "id_ed25519").write_text("")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_the_document_has_the_examples_it_promises(home: Path) -> None:
    text = examples()
    assert len(text) == len(config_reference.EXAMPLES) >= 6
    joined = "\n".join(text)
    for needle in ("profile", "endpoint_url", 'protocol = "gcs"', "connection_string", "internal_host"):
        assert needle in joined, needle
    with_secrets = [t for t in text if cfg.parse(tomllib.loads(t)).secrets()]
    assert len(with_secrets) == 2, "the MinIO and Azure examples hold secrets"


@pytest.mark.parametrize("index", range(len(config_reference.EXAMPLES)))
def test_each_example_loads_with_the_config_loader(home: Path, index: int) -> None:
    path = home / f"example-{index}.toml"
    path.write_text(examples()[index])
    path.chmod(0o600)
    config = cfg.load_file(str(path))
    assert config.stores or config.clusters


@pytest.mark.parametrize("index", range(len(config_reference.EXAMPLES)))
def test_an_example_with_secrets_is_refused_unless_chmod_600(home: Path, index: int) -> None:
    path = home / f"example-{index}.toml"
    path.write_text(examples()[index])
    path.chmod(0o644)
    holds_secrets = bool(cfg.parse(tomllib.loads(path.read_text())).secrets())
    if not holds_secrets:
        cfg.load_file(str(path))  # a file without secrets may be readable by anyone
        return
    with pytest.raises(ConfigError, match=rf"run: chmod 600 {re.escape(str(path))}"):
        cfg.load_file(str(path))
    assert os.stat(path).st_mode & 0o777 == 0o644


RHFS = shutil.which("rhfs") or "rhfs"


@pytest.mark.parametrize("index", range(len(config_reference.EXAMPLES)))
def test_each_example_is_shown_by_the_installed_binary(home: Path, index: int) -> None:
    path = home / f"example-{index}.toml"
    path.write_text(examples()[index])
    path.chmod(0o600)
    env = {**os.environ, "HOME": str(home)}
    argv = [RHFS, "config", "show", "--config", str(path)]
    shown = subprocess.run(argv, capture_output=True, text=True, env=env)
    assert shown.returncode == 0, shown.stderr
    for secret in cfg.load_file(str(path)).secrets():
        assert secret not in shown.stdout and "***" in shown.stdout


def test_a_readable_file_with_secrets_is_refused_as_the_document_shows(home: Path) -> None:
    minio = next(e for e in examples() if "[stores.minio" in e)
    path = home / "config.toml"
    path.write_text(minio)
    path.chmod(0o644)
    env = {**os.environ, "HOME": str(home)}
    result = subprocess.run(
        [RHFS, "mount", str(home / "mnt"), "--config", str(path)], capture_output=True, text=True, env=env
    )
    assert result.returncode == 2
    shown = re.search(r"^rhfs: (/\S+): holds secrets.*$", DOC.read_text(), flags=re.M)
    assert shown is not None, "the document shows the refusal"
    assert result.stderr.strip() == shown.group(0).replace(shown.group(1), str(path))
    assert not (home / "mnt").exists() or not os.path.ismount(home / "mnt")
