"""Configuration (docs/SEMANTICS.md): bad configs, the search order, ``~``, the 0600 rule, redaction.

Every bad config is run through the installed ``rhfs``: ``rhfs mount`` must refuse it
with exit 2 and exactly one line naming the file and the key, and ``rhfs config
check`` must list every problem.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

import pytest
from service_fixtures import run, write_config

from rhfs import config as config_mod

pytestmark = pytest.mark.timeout(300)

CLUSTER_OK = 'host = "127.0.0.1"\nknown_hosts = ""\n'

# (id, TOML text, fragments the one-line error must hold besides the file's path)
BAD_CONFIGS = [
    ("not-toml", "[mount\nattr_ttl = 5\n", ["not valid TOML", "line 1"]),
    ("duplicate-key", "[mount]\nattr_ttl = 1\nattr_ttl = 2\n", ["not valid TOML"]),
    ("unknown-section", "[mnt]\nattr_ttl = 1\n", ["[mnt]", "unknown section", "did you mean 'mount'"]),
    (
        "unknown-key",
        "[mount]\nattr_tll = 1\n",
        ["[mount] attr_tll", "unknown key", "did you mean 'attr_ttl'"],
    ),
    ("not-a-number", '[mount]\nattr_ttl = "five"\n', ["[mount] attr_ttl", "expected a number", "'five'"]),
    ("negative-ttl", "[mount]\nattr_ttl = -1\n", ["[mount] attr_ttl", "must be >= 0"]),
    ("zero-timeout", "[mount]\nop_timeout = 0\n", ["[mount] op_timeout", "must be > 0"]),
    ("bad-log-level", '[mount]\nlog_level = "LOUD"\n', ["[mount] log_level", "'LOUD'"]),
    ("not-a-bool", '[mount]\nread_only = "yes"\n', ["[mount] read_only", "true or false"]),
    ("section-not-table", "mount = 5\n", ["[mount]", "must be a table"]),
    ("here-root-missing", '[here]\nroot = "/nonexistent/rhfs-root"\n', ["[here] root", "not a directory"]),
    ("store-no-protocol", '[stores.s3]\nbuckets = ["b"]\n', ["[stores.s3] protocol", "missing required key"]),
    (
        "store-unknown-key",
        '[stores.s3]\nprotocol = "s3"\nbucket = ["b"]\n',
        ["[stores.s3] bucket", "did you mean 'buckets'"],
    ),
    ("buckets-not-list", '[stores.s3]\nprotocol = "s3"\nbuckets = "b"\n', ["[stores.s3] buckets", "list"]),
    (
        "bucket-with-slash",
        '[stores.s3]\nprotocol = "s3"\nbuckets = ["a/b"]\n',
        ["[stores.s3] buckets", "'a/b'"],
    ),
    (
        "options-not-table",
        '[stores.s3]\nprotocol = "s3"\noptions = "x"\n',
        ["[stores.s3] options", "a table"],
    ),
    ("reserved-store-name", '[stores.tables]\nprotocol = "s3"\n', ["[stores.tables]", "reserved"]),
    ("bad-store-name", '[stores."my store"]\nprotocol = "s3"\n', ["[stores.my store]", "invalid name"]),
    ("stores-not-tables", "stores = 5\n", ["[stores]", "table of named tables"]),
    (
        "unknown-transfer-cluster",
        '[stores.s3]\nprotocol = "s3"\ntransfer_cluster = "cpu-clustr"\n'
        f"[clusters.cpu-cluster]\n{CLUSTER_OK}",
        ["[stores.s3] transfer_cluster", "no cluster named 'cpu-clustr'", "did you mean 'cpu-cluster'"],
    ),
    ("cluster-no-host", '[clusters.a]\nknown_hosts = ""\n', ["[clusters.a] host", "missing required key"]),
    ("cluster-bad-port", f"[clusters.a]\n{CLUSTER_OK}port = 70000\n", ["[clusters.a] port", "1-65535"]),
    ("cluster-port-string", f'[clusters.a]\n{CLUSTER_OK}port = "22"\n', ["[clusters.a] port", "an integer"]),
    (
        "identity-file-missing",
        f'[clusters.a]\n{CLUSTER_OK}identity_file = "/nonexistent/id_ed25519"\n',
        ["[clusters.a] identity_file", "/nonexistent/id_ed25519", "no such file"],
    ),
    (
        "known-hosts-missing",
        '[clusters.a]\nhost = "h"\nknown_hosts = "/nonexistent/known_hosts"\n',
        ["[clusters.a] known_hosts", "no such file", 'known_hosts = ""'],
    ),
]


def _write(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


@pytest.mark.parametrize(("text", "fragments"), [c[1:] for c in BAD_CONFIGS], ids=[c[0] for c in BAD_CONFIGS])
def test_a_bad_config_gives_one_line_naming_file_and_key(
    tmp_path: Path, text: str, fragments: list[str]
) -> None:
    config = _write(tmp_path / "config.toml", text)
    result = run("mount", str(tmp_path / "mnt"), "--config", str(config))
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"rhfs: {config}: ")
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    assert not (tmp_path / "mnt").exists(), "a refused config must not create the mount point"

    check = run("config", "check", "--config", str(config))
    assert check.returncode == 2
    assert all(f in check.stderr for f in fragments), check.stderr


def test_there_are_at_least_ten_kinds_of_bad_config() -> None:
    assert len(BAD_CONFIGS) >= 10


def test_config_check_names_every_unknown_key(tmp_path: Path) -> None:
    config = _write(
        tmp_path / "c.toml",
        "[mount]\nattr_tll = 1\ncache = 'x'\n[stores.s3]\nprotocol = 's3'\nendpoint = 'y'\n[extra]\n",
    )
    mount = run("mount", str(tmp_path / "mnt"), "--config", str(config))
    assert mount.returncode == 2
    assert "(and 3 more; run: rhfs config check)" in mount.stderr
    check = run("config", "check", "--config", str(config))
    assert check.returncode == 2
    problems = [line for line in check.stderr.splitlines() if line.startswith(str(config))]
    assert len(problems) == 4, check.stderr
    for where in ("[extra]", "[mount] attr_tll", "[mount] cache", "[stores.s3] endpoint"):
        assert any(where in line for line in problems), (where, check.stderr)
    assert "4 problem(s)" in check.stderr


def test_a_missing_config_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    result = run("config", "check", "--config", str(missing))
    assert result.returncode == 2
    assert f"{missing}: config file not found (given with --config)" in result.stderr
    result = run("config", "show", env={"RHFS_CONFIG": str(missing)})
    assert result.returncode == 2
    assert "given in $RHFS_CONFIG" in result.stderr


def _isolated_env(home: Path, **extra: str | None) -> dict[str, str | None]:
    env: dict[str, str | None] = {
        "HOME": str(home),
        "RHFS_CONFIG": None,
        "AWS_ACCESS_KEY_ID": None,
        "AWS_PROFILE": None,
        "GOOGLE_APPLICATION_CREDENTIALS": None,
        "AZURE_STORAGE_CONNECTION_STRING": None,
    }
    env.update(extra)
    return env


def _shown_source(result) -> str:  # type: ignore[no-untyped-def]
    assert result.returncode == 0, result.stderr
    first = result.stdout.splitlines()[0]
    return first.removeprefix("# ").split(" (defaults")[0]


def test_search_order(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    system_default = (
        "/etc/rhfs/config.toml" if os.path.exists("/etc/rhfs/config.toml") else "embedded default"
    )
    assert _shown_source(run("config", "show", env=_isolated_env(home))) == system_default

    user = home / ".config" / "rhfs" / "config.toml"
    user.parent.mkdir(parents=True)
    _write(user, "[mount]\nattr_ttl = 1.0\n")
    assert _shown_source(run("config", "show", env=_isolated_env(home))) == str(user)

    from_env = _write(tmp_path / "env.toml", "[mount]\nattr_ttl = 2.0\n")
    env = _isolated_env(home, RHFS_CONFIG=str(from_env))
    assert _shown_source(run("config", "show", env=env)) == str(from_env)

    explicit = _write(tmp_path / "explicit.toml", "[mount]\nattr_ttl = 3.0\n")
    shown = run("config", "show", "--config", str(explicit), env=env)
    assert _shown_source(shown) == str(explicit)
    assert tomllib.loads(shown.stdout)["mount"]["attr_ttl"] == 3.0


def test_system_config_is_last_in_the_search_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    system = _write(tmp_path / "etc-config.toml", "")
    monkeypatch.setattr(config_mod, "SYSTEM_CONFIG", str(system))
    monkeypatch.setenv("HOME", str(tmp_path / "empty-home"))
    monkeypatch.delenv("RHFS_CONFIG", raising=False)
    assert config_mod.find_config_file() == str(system)
    user = tmp_path / "empty-home" / ".config" / "rhfs" / "config.toml"
    user.parent.mkdir(parents=True)
    _write(user, "")
    assert config_mod.find_config_file() == str(user)


def test_tilde_is_expanded_and_defaults_are_filled_in(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / "data").mkdir(parents=True)
    config = _write(
        tmp_path / "c.toml",
        '[mount]\ncache_dir = "~/cache"\n[here]\nroot = "~/data"\n'
        '[clusters.a]\nhost = "h"\nknown_hosts = ""\nroot = "~/remote"\n',
    )
    shown = tomllib.loads(run("config", "show", "--config", str(config), env=_isolated_env(home)).stdout)
    assert shown["mount"]["cache_dir"] == f"{home}/cache"
    assert shown["here"]["root"] == f"{home}/data"
    assert shown["catalog"]["url"] == f"{home}/.local/share/rhfs/catalog"
    assert shown["clusters"]["a"]["root"] == "~/remote", "a cluster's root is remote: never expanded here"
    assert shown["mount"]["attr_ttl"] == 5.0 and shown["mount"]["op_timeout"] == 30.0
    assert shown["clusters"]["a"]["port"] == 22


def test_embedded_default_finds_stores_through_the_standard_chain(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    if os.path.exists("/etc/rhfs/config.toml"):
        pytest.fail("/etc/rhfs/config.toml exists on this machine: the embedded default cannot be observed")
    bare = tomllib.loads(run("config", "show", env=_isolated_env(home)).stdout)
    assert bare["stores"] == {} and bare["here"]["root"] == str(home)
    env = _isolated_env(home, AWS_ACCESS_KEY_ID="AKIAEXAMPLE", AZURE_STORAGE_CONNECTION_STRING="x")
    found = tomllib.loads(run("config", "show", env=env).stdout)
    assert found["stores"]["s3"]["protocol"] == "s3"
    assert found["stores"]["azure"]["protocol"] == "az"
    (home / ".aws").mkdir()
    (home / ".aws" / "credentials").write_text("[default]\n")
    assert "s3" in tomllib.loads(run("config", "show", env=_isolated_env(home)).stdout)["stores"]


SECRET_STORE = (
    '[stores.s3]\nprotocol = "s3"\noptions = { key = "AKIAEXAMPLEKEY", secret = "s3cr3t-value-42" }\n'
)


def test_a_file_with_secrets_must_be_private(tmp_path: Path) -> None:
    config = _write(tmp_path / "c.toml", SECRET_STORE, mode=0o644)
    result = run("mount", str(tmp_path / "mnt"), "--config", str(config))
    assert result.returncode == 2
    assert (
        f"{config}: holds secrets but is readable by others (mode 0644); run: chmod 600 {config}"
        in result.stderr
    )
    assert "s3cr3t-value-42" not in result.stderr
    config.chmod(0o600)
    assert run("config", "show", "--config", str(config)).returncode == 0
    plain = _write(tmp_path / "plain.toml", '[stores.s3]\nprotocol = "s3"\n', mode=0o644)
    assert run("config", "show", "--config", str(plain)).returncode == 0, "no secret: any mode is fine"


def test_config_show_redacts_secrets(tmp_path: Path) -> None:
    conn = "DefaultEndpointsProtocol=http;AccountName=acct;AccountKey=Zm9vYmFyYmF6cXV4;BlobEndpoint=http://h/acct;"
    config = _write(
        tmp_path / "c.toml",
        SECRET_STORE + f'[stores.azure]\nprotocol = "az"\noptions = {{ connection_string = "{conn}" }}\n',
    )
    result = run("config", "show", "--config", str(config))
    assert result.returncode == 0
    for secret in ("AKIAEXAMPLEKEY", "s3cr3t-value-42", "Zm9vYmFyYmF6cXV4"):
        assert secret not in result.stdout
    shown = tomllib.loads(result.stdout)
    assert shown["stores"]["s3"]["options"] == {"key": "***", "secret": "***"}
    assert shown["stores"]["azure"]["options"]["connection_string"] == "***"
    secrets = config_mod.load_file(str(config)).secrets()
    assert "Zm9vYmFyYmF6cXV4" in secrets, "the key inside a connection string is redacted on its own too"


# -- reachability: needs the local servers ------------------------------------------
def test_config_check_reaches_every_testbed_system(testbed, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    result = run("config", "check", "--config", str(testbed.config_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"config: {testbed.config_path}" in result.stdout
    for name in ("here", "clusters/cluster-a", "clusters/cluster-b", "s3/rhfs-test", "gs/rhfs-test"):
        line = next(line for line in result.stdout.splitlines() if line.split()[:1] == [name])
        assert line.split()[2] == "reachable:", line
    assert any(line.split()[:1] == ["azure/rhfs-test"] for line in result.stdout.splitlines())


def test_config_check_names_every_system_it_cannot_reach(testbed, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    extra = (
        '[stores.deads3]\nprotocol = "s3"\nbuckets = ["x"]\n'
        'options = { key = "k1234", secret = "dead-secret-1", endpoint_url = "http://127.0.0.1:1" }\n'
        '[stores.nobucket]\nprotocol = "s3"\nbuckets = ["no-such-bucket"]\n'
        f'options = {{ key = "{testbed.s3_key}", secret = "{testbed.s3_secret}", '
        f'endpoint_url = "{testbed.s3_endpoint}" }}\n'
        '[clusters.deadcluster]\nhost = "127.0.0.1"\nport = 1\nknown_hosts = ""\n'
    )
    config = write_config(testbed, tmp_path, extra=extra)
    result = run("config", "check", "--config", str(config), "--timeout", "5")
    assert result.returncode == 3, result.stdout + result.stderr
    lines = {line.split()[0]: line for line in result.stdout.splitlines()[1:]}
    for name in ("deads3/x", "clusters/deadcluster"):
        assert "UNREACHABLE" in lines[name], lines[name]
    assert "MISSING: bucket does not exist (no bucket no-such-bucket)" in lines["nobucket/no-such-bucket"]
    for name in ("here", "s3/rhfs-test", "gs/rhfs-test", "azure/rhfs-test", "clusters/cluster-a"):
        assert lines[name].split()[2] == "reachable:", lines[name]
    assert "3 system(s) or bucket(s) not reachable" in result.stderr
    assert "dead-secret-1" not in result.stdout + result.stderr
