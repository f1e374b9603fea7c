"""Configuration: the TOML file of docs/SEMANTICS.md "Configuration", its search order and its defaults.

Every option and its default is declared once, in the dataclasses below; the
loader checks each table and key against those declarations. It collects every
problem it finds (unknown keys, wrong types, bad values), each as one line that
names the file, the table and the key; :class:`ConfigProblems` carries them all,
and its message is the first one.

Invariants:
- local paths (fields marked ``path``) are returned with ``~`` and ``$VARS``
  expanded; a cluster's ``root`` is a remote path and is left alone;
- a file that holds a secret must not be readable by group or others
  (:class:`ConfigError` otherwise, as ssh does);
- :func:`redacted` never returns a secret, and :meth:`Config.secrets` lists
  every secret so that the log can redact it.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import stat
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rhfs.errors import ConfigError

SEARCH_PATH_ENV = "RHFS_CONFIG"
USER_CONFIG = "~/.config/rhfs/config.toml"
SYSTEM_CONFIG = "/etc/rhfs/config.toml"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")

# Option names whose values are secrets, wherever they appear in a store's options.
SECRET_KEY_PATTERN = re.compile(
    r"(secret|password|passphrase|token|credential|connection_string|account_key|sas|private_key|session)",
    re.IGNORECASE,
)
PLAIN_SECRET_KEYS = frozenset({"key", "access_key", "aws_access_key_id", "client_secret"})
# Values that look like a secret key name but are not secret.
NON_SECRET_VALUES = frozenset({"anon", "google_default", "cloud", "cache", "browser", ""})
# Parts of an Azure connection string that are secrets on their own.
_CONNECTION_STRING_SECRETS = re.compile(r"(?:AccountKey|SharedAccessSignature)=([^;]+)", re.IGNORECASE)
_PATH = {"path": True}  # field metadata: a local path, expanded at load


def expand(path: str) -> str:
    return os.path.expanduser(os.path.expandvars(path)) if path else path


def _expand_url(url: str) -> str:
    """A local path or an fsspec URL: only a local path is expanded."""
    return url if "://" in url else expand(url)


@dataclass(frozen=True)
class MountConfig:
    attr_ttl: float = 5.0
    cache_dir: str = field(default="~/.cache/rhfs", metadata=_PATH)
    read_only: bool = False
    allow_other: bool = False
    op_timeout: float = 30.0
    log_level: str = "INFO"
    # -- for operators: metrics and kept uploads (validated by _validate_operators) --
    metrics_address: str = ""  # "HOST:PORT" of the Prometheus endpoint; "" serves none
    failed_max_age_days: float = 30.0  # kept uploads under cache_dir/failed older than this go; 0: never


@dataclass(frozen=True)
class HereConfig:
    root: str = field(default="~", metadata=_PATH)


@dataclass(frozen=True)
class CatalogConfig:
    url: str = field(default="~/.local/share/rhfs/catalog", metadata={"url": True})


@dataclass(frozen=True)
class TablesConfig:
    default_url: str = field(default="~/.local/share/rhfs/tables", metadata={"url": True})


@dataclass(frozen=True)
class StoreConfig:
    name: str
    protocol: str
    buckets: tuple[str, ...] | None = None
    transfer_cluster: str | None = None
    files_in_flight: int = 8  # files a tree job moves at once to or from this store
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ClusterConfig:
    name: str
    host: str
    port: int = 22
    user: str | None = None
    identity_file: str | None = field(default=None, metadata=_PATH)
    known_hosts: str = field(default="~/.ssh/known_hosts", metadata=_PATH)
    root: str = "~"  # on the cluster: never expanded here
    internal_host: str | None = None
    session_idle: float = 60.0  # seconds a kept ssh session for copies outlives its last job; 0: none
    files_in_flight: int = 8  # files a tree job moves at once to or from this cluster


@dataclass(frozen=True)
class Config:
    mount: MountConfig = MountConfig()
    here: HereConfig = HereConfig()
    catalog: CatalogConfig = CatalogConfig()
    tables: TablesConfig = TablesConfig()
    stores: dict[str, StoreConfig] = field(default_factory=dict)
    clusters: dict[str, ClusterConfig] = field(default_factory=dict)
    source: str | None = None  # the file it came from; None for the embedded default

    def secrets(self) -> list[str]:
        """Every secret value in this config, for log redaction."""
        found: list[str] = []
        for store in self.stores.values():
            for value in _secret_values(store.options):
                found.append(value)
                found.extend(_CONNECTION_STRING_SECRETS.findall(value))
        return [s for s in found if len(s) >= 4]


class ConfigProblems(ConfigError):
    """Every problem found in one config file; the message is the first, on one line."""

    def __init__(self, problems: list[str]) -> None:
        more = f" (and {len(problems) - 1} more; run: rhfs config check)" if len(problems) > 1 else ""
        super().__init__(problems[0] + more)
        self.problems = problems


_SECTIONS: dict[str, type] = {
    "mount": MountConfig,
    "here": HereConfig,
    "catalog": CatalogConfig,
    "tables": TablesConfig,
}
_TOP_LEVEL = (*_SECTIONS, "stores", "clusters")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_RESERVED_TOP_NAMES = frozenset({"here", "clusters", "tables", "blobs", ".rhfs"})


def find_config_file(explicit: str | None = None) -> str | None:
    """The config file by its search order (docs/SEMANTICS.md, "Configuration"), or None for the
    embedded default."""
    if explicit:
        path = expand(explicit)
        if not os.path.exists(path):
            raise ConfigError(f"{path}: config file not found (given with --config)")
        return path
    env = os.environ.get(SEARCH_PATH_ENV)
    if env:
        path = expand(env)
        if not os.path.exists(path):
            raise ConfigError(f"{path}: config file not found (given in ${SEARCH_PATH_ENV})")
        return path
    for candidate in (expand(USER_CONFIG), SYSTEM_CONFIG):
        if os.path.exists(candidate):
            return candidate
    return None


def load(explicit: str | None = None) -> Config:
    path = find_config_file(explicit)
    if path is None:
        return embedded_default()
    return load_file(path)


def load_file(path: str) -> Config:
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, not a config file") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from None
    config = parse(raw, path)
    if config.secrets():
        _check_private(path)
    return config


def parse(raw: dict[str, Any], source: str = "<config>") -> Config:
    """Build a Config from parsed TOML; raise :class:`ConfigProblems` naming every problem."""
    problems = _Problems(source)
    for name in raw:
        if name not in _TOP_LEVEL:
            problems.add(f"[{name}]", "unknown section" + _did_you_mean(name, _TOP_LEVEL))
    sections = {
        name: _build(cls, raw.get(name, {}), problems, f"[{name}]") for name, cls in _SECTIONS.items()
    }
    stores = {
        name: _build(StoreConfig, {**table, "name": name}, problems, f"[stores.{name}]")
        for name, table in _subtables(raw, "stores", problems).items()
    }
    clusters = {
        name: _build(ClusterConfig, {**table, "name": name}, problems, f"[clusters.{name}]")
        for name, table in _subtables(raw, "clusters", problems).items()
    }
    config = Config(
        stores={k: v for k, v in stores.items() if v is not None},
        clusters={k: v for k, v in clusters.items() if v is not None},
        source=source,
        **{k: v if v is not None else _SECTIONS[k]() for k, v in sections.items()},
    )
    _validate(config, problems)
    problems.raise_if_any()
    return config


def embedded_default() -> Config:
    """No file at all: here/, the local catalog, and stores whose credentials the standard chain finds."""
    return _expanded(Config(stores=_discover_stores(), source=None))


def _discover_stores() -> dict[str, StoreConfig]:
    stores: dict[str, StoreConfig] = {}
    home = Path.home()
    if (
        os.environ.get("AWS_ACCESS_KEY_ID")
        or os.environ.get("AWS_PROFILE")
        or (home / ".aws" / "credentials").exists()
    ):
        stores["s3"] = StoreConfig(name="s3", protocol="s3")
    if (
        os.environ.get("GOOGLE_APPLICATION_CREDENTIALS")
        or (home / ".config" / "gcloud" / "application_default_credentials.json").exists()
    ):
        stores["gs"] = StoreConfig(name="gs", protocol="gcs")
    if os.environ.get("AZURE_STORAGE_CONNECTION_STRING"):
        stores["azure"] = StoreConfig(name="azure", protocol="az")
    return stores


class _Problems:
    def __init__(self, source: str) -> None:
        self.source = source
        self.lines: list[str] = []

    def add(self, where: str, message: str) -> None:
        self.lines.append(f"{self.source}: {where}: {message}")

    def raise_if_any(self) -> None:
        if self.lines:
            raise ConfigProblems(self.lines)


def _did_you_mean(name: str, choices: Any) -> str:
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _subtables(raw: dict[str, Any], key: str, problems: _Problems) -> dict[str, dict[str, Any]]:
    value = raw.get(key, {})
    if not isinstance(value, dict):
        problems.add(f"[{key}]", f"must be a table of named tables ([{key}.NAME]), got {value!r}")
        return {}
    good: dict[str, dict[str, Any]] = {}
    for name, table in value.items():
        if not isinstance(table, dict):
            problems.add(f"[{key}.{name}]", f"must be a table, got {table!r}")
        elif not _NAME_RE.match(name):
            problems.add(f"[{key}.{name}]", "invalid name (letters, digits, '.', '_', '-'; at most 64)")
        else:
            good[name] = table
    return good


def _build(cls: type, table: Any, problems: _Problems, where: str) -> Any:
    """One dataclass from one TOML table; bad keys are reported and left at their default."""
    if not isinstance(table, dict):
        problems.add(where, f"must be a table, got {table!r}")
        return None
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    for key, value in table.items():
        f = fields.get(key)
        if f is None:
            problems.add(f"{where} {key}", "unknown key" + _did_you_mean(key, fields))
            continue
        ok, coerced = _coerce(value, str(f.type))
        if not ok:
            problems.add(f"{where} {key}", f"expected {coerced}, got {value!r}")
            continue
        if isinstance(coerced, str) and f.metadata.get("path"):
            coerced = expand(coerced)
        elif isinstance(coerced, str) and f.metadata.get("url"):
            coerced = _expand_url(coerced)
        values[key] = coerced
    required = [
        name
        for name, f in fields.items()
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    for name in required:
        if name not in table:
            problems.add(f"{where} {name}", "missing required key")
    if any(name not in values for name in required):
        return None
    return _expanded_fields(cls(**values))


def _coerce(value: Any, type_name: str) -> tuple[bool, Any]:
    """(True, value as the declared type) or (False, a description of the expected type)."""
    if type_name == "float":
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False, "a number"
        return True, float(value)
    if type_name == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            return False, "an integer"
        return True, value
    if type_name == "bool":
        return (True, value) if isinstance(value, bool) else (False, "true or false")
    if type_name.startswith("str"):
        return (True, value) if isinstance(value, str) else (False, "a string")
    if type_name.startswith("tuple"):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            return False, "a list of strings"
        return True, tuple(value)
    if type_name.startswith("dict"):
        return (True, value) if isinstance(value, dict) else (False, "a table")
    return True, value


def _expanded_fields(obj: Any) -> Any:
    """Expand the defaults of path fields too (values from the file are expanded already)."""
    changes = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if isinstance(value, str) and f.metadata.get("path"):
            changes[f.name] = expand(value)
        elif isinstance(value, str) and f.metadata.get("url"):
            changes[f.name] = _expand_url(value)
    return dataclasses.replace(obj, **changes) if changes else obj


def _expanded(config: Config) -> Config:
    return dataclasses.replace(
        config,
        **{name: _expanded_fields(getattr(config, name)) for name in _SECTIONS},
        clusters={k: _expanded_fields(v) for k, v in config.clusters.items()},
    )


def _validate(config: Config, problems: _Problems) -> None:
    m = config.mount
    if m.attr_ttl < 0:
        problems.add("[mount] attr_ttl", f"must be >= 0, got {m.attr_ttl:g}")
    if m.op_timeout <= 0:
        problems.add("[mount] op_timeout", f"must be > 0, got {m.op_timeout:g}")
    if m.log_level.upper() not in LOG_LEVELS:
        problems.add("[mount] log_level", f"expected one of {', '.join(LOG_LEVELS)}, got {m.log_level!r}")
    if not m.cache_dir:
        problems.add("[mount] cache_dir", "must not be empty")
    _validate_operators(m, problems)
    if not os.path.isdir(config.here.root):
        problems.add("[here] root", f"{config.here.root} is not a directory")
    for name, store in config.stores.items():
        where = f"[stores.{name}]"
        if name in _RESERVED_TOP_NAMES:
            problems.add(where, f"the name '{name}' is reserved for the tree itself")
        if not store.protocol:
            problems.add(f"{where} protocol", "must not be empty")
        for bucket in store.buckets or ():
            if not bucket or "/" in bucket:
                problems.add(f"{where} buckets", f"{bucket!r} is not a bucket name")
        if store.files_in_flight < 1:
            problems.add(f"{where} files_in_flight", f"must be >= 1, got {store.files_in_flight}")
        if store.transfer_cluster and store.transfer_cluster not in config.clusters:
            hint = _did_you_mean(store.transfer_cluster, config.clusters)
            problems.add(f"{where} transfer_cluster", f"no cluster named '{store.transfer_cluster}'{hint}")
    for name, cluster in config.clusters.items():
        where = f"[clusters.{name}]"
        if not cluster.host:
            problems.add(f"{where} host", "must not be empty")
        if not 0 < cluster.port < 65536:
            problems.add(f"{where} port", f"must be 1-65535, got {cluster.port}")
        if cluster.session_idle < 0:
            problems.add(f"{where} session_idle", f"must be >= 0, got {cluster.session_idle:g}")
        if cluster.files_in_flight < 1:
            problems.add(f"{where} files_in_flight", f"must be >= 1, got {cluster.files_in_flight}")
        if cluster.identity_file and not os.path.isfile(cluster.identity_file):
            problems.add(f"{where} identity_file", f"{cluster.identity_file}: no such file")
        if cluster.known_hosts and not os.path.isfile(cluster.known_hosts):
            problems.add(
                f"{where} known_hosts",
                f"{cluster.known_hosts}: no such file (host keys are always checked; "
                'set known_hosts = "" to turn that off on purpose)',
            )


# -- for operators: the metrics endpoint and kept uploads ------------------------------
def metrics_endpoint(address: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6) as (host, port); ValueError says what is wrong."""
    host, colon, port = address.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected HOST:PORT (such as 127.0.0.1:9464), got {address!r}")
    return host, int(port)


def _validate_operators(m: MountConfig, problems: _Problems) -> None:
    if m.metrics_address:
        try:
            metrics_endpoint(m.metrics_address)
        except ValueError as e:
            problems.add("[mount] metrics_address", str(e))
    if m.failed_max_age_days < 0:
        problems.add("[mount] failed_max_age_days", f"must be >= 0, got {m.failed_max_age_days:g}")


def _is_secret(key: str, value: object) -> bool:
    if not isinstance(value, str) or value in NON_SECRET_VALUES:
        return False
    return bool(SECRET_KEY_PATTERN.search(key)) or key in PLAIN_SECRET_KEYS


def _secret_values(options: dict[str, Any]) -> list[str]:
    found: list[str] = []
    for key, value in options.items():
        if isinstance(value, dict):
            found.extend(_secret_values(value))
        elif _is_secret(key, value):
            found.append(value)
    return found


def _check_private(path: str) -> None:
    mode = os.stat(path).st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            f"{path}: holds secrets but is readable by others (mode {stat.S_IMODE(mode):04o}); "
            f"run: chmod 600 {path}"
        )


def redacted(config: Config) -> dict[str, Any]:
    """The config as a plain dict with every secret replaced by '***'."""
    out: dict[str, Any] = {name: dataclasses.asdict(getattr(config, name)) for name in _SECTIONS}
    out["stores"] = {}
    for name, store in config.stores.items():
        d = dataclasses.asdict(store)
        d.pop("name")
        d["options"] = _redact_options(store.options)
        if d["buckets"] is None:
            d.pop("buckets")
        if d["transfer_cluster"] is None:
            d.pop("transfer_cluster")
        out["stores"][name] = d
    out["clusters"] = {}
    for name, cluster in config.clusters.items():
        d = {k: v for k, v in dataclasses.asdict(cluster).items() if v is not None and k != "name"}
        out["clusters"][name] = d
    return out


def drop_none(obj: Any) -> Any:
    """``obj`` without the ``None`` values of its tables, at any depth, for TOML (which has no null)."""
    if isinstance(obj, dict):
        return {k: drop_none(v) for k, v in obj.items() if v is not None}
    if isinstance(obj, list | tuple):
        return [drop_none(v) for v in obj]
    return obj


def _redact_options(options: dict[str, Any]) -> dict[str, Any]:
    secrets = set(_secret_values(options))
    out: dict[str, Any] = {}
    for key, value in options.items():
        if isinstance(value, dict):
            out[key] = _redact_options(value)
        elif isinstance(value, str) and value in secrets:
            out[key] = "***"
        else:
            out[key] = value
    return out
