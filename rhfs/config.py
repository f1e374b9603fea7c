"""Configuration: the TOML file of PRODUCT.md §6, its search order and its defaults.

Every option and its default is declared once, in the dataclasses below; the
loader checks each table and key against those declarations, so an unknown key
is an error that names the key and the file.

Invariants:
- paths are returned with ``~`` expanded;
- a file that holds a secret must not be readable by group or others
  (:class:`ConfigError` otherwise, as ssh does);
- :func:`redacted` never returns a secret.
"""

from __future__ import annotations

import dataclasses
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

# Option names whose values are secrets, wherever they appear in a store's options.
SECRET_KEY_PATTERN = re.compile(
    r"(secret|password|passphrase|token|credential|connection_string|account_key|sas|private_key|session)",
    re.IGNORECASE,
)
# Values that look like a secret key name but are not secret.
NON_SECRET_VALUES = frozenset({"anon", "google_default", "cloud", "cache", "browser", ""})


def expand(path: str) -> str:
    return os.path.expanduser(os.path.expandvars(path)) if path else path


@dataclass(frozen=True)
class MountConfig:
    attr_ttl: float = 5.0
    cache_dir: str = "~/.cache/rhfs"
    read_only: bool = False
    allow_other: bool = False
    op_timeout: float = 30.0
    log_level: str = "INFO"


@dataclass(frozen=True)
class HereConfig:
    root: str = "~"


@dataclass(frozen=True)
class CatalogConfig:
    url: str = "~/.local/share/rhfs/catalog"


@dataclass(frozen=True)
class TablesConfig:
    default_url: str = "~/.local/share/rhfs/tables"


@dataclass(frozen=True)
class StoreConfig:
    name: str
    protocol: str
    buckets: tuple[str, ...] | None = None
    transfer_cluster: str | None = None
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ClusterConfig:
    name: str
    host: str
    port: int = 22
    user: str | None = None
    identity_file: str | None = None
    known_hosts: str = "~/.ssh/known_hosts"
    root: str = "~"
    internal_host: str | None = None


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
            found.extend(_secret_values(store.options))
        return [s for s in found if len(s) >= 4]


_SECTIONS: dict[str, type] = {
    "mount": MountConfig,
    "here": HereConfig,
    "catalog": CatalogConfig,
    "tables": TablesConfig,
}
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_RESERVED_TOP_NAMES = frozenset({"here", "clusters", "tables", "blobs", ".rhfs"})


def find_config_file(explicit: str | None = None) -> str | None:
    """The config file by the search order of §6, or None for the embedded default."""
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
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from None
    config = parse(raw, path)
    if config.secrets():
        _check_private(path)
    return config


def parse(raw: dict[str, Any], source: str = "<config>") -> Config:
    unknown = set(raw) - set(_SECTIONS) - {"stores", "clusters"}
    if unknown:
        raise ConfigError(f"{source}: unknown section [{sorted(unknown)[0]}]")
    sections = {name: _build(cls, raw.get(name, {}), source, f"[{name}]") for name, cls in _SECTIONS.items()}
    stores = {
        name: _build(StoreConfig, {**table, "name": name}, source, f"[stores.{name}]")
        for name, table in _subtables(raw, "stores", source).items()
    }
    clusters = {
        name: _build(ClusterConfig, {**table, "name": name}, source, f"[clusters.{name}]")
        for name, table in _subtables(raw, "clusters", source).items()
    }
    config = Config(stores=stores, clusters=clusters, source=source, **sections)
    _validate(config, source)
    return config


def embedded_default() -> Config:
    """No file at all: here/, the local catalog, and stores whose credentials the standard chain finds."""
    return Config(stores=_discover_stores(), source=None)


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


def _subtables(raw: dict[str, Any], key: str, source: str) -> dict[str, dict[str, Any]]:
    value = raw.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{source}: [{key}] must be a table of named tables")
    for name, table in value.items():
        if not isinstance(table, dict):
            raise ConfigError(f"{source}: [{key}.{name}] must be a table")
        if not _NAME_RE.match(name):
            raise ConfigError(f"{source}: [{key}.{name}]: invalid name (letters, digits, '.', '_', '-')")
    return value


def _build(cls: type, table: Any, source: str, where: str) -> Any:
    if not isinstance(table, dict):
        raise ConfigError(f"{source}: {where} must be a table")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(table) - set(fields)
    if unknown:
        raise ConfigError(f"{source}: {where}: unknown key '{sorted(unknown)[0]}'")
    missing = [
        name
        for name, f in fields.items()
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING and name not in table
    ]
    if missing:
        raise ConfigError(f"{source}: {where}: missing required key '{missing[0]}'")
    values = {}
    for name, value in table.items():
        values[name] = _coerce(value, fields[name].type, source, f"{where} {name}")
    return cls(**values)


def _coerce(value: Any, annotation: Any, source: str, where: str) -> Any:
    kind = str(annotation)
    if kind == "float":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{source}: {where}: expected a number, got {value!r}")
        return float(value)
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{source}: {where}: expected an integer, got {value!r}")
        return value
    if kind == "bool":
        if not isinstance(value, bool):
            raise ConfigError(f"{source}: {where}: expected true or false, got {value!r}")
        return value
    if kind.startswith("str"):
        if value is None and "None" in kind:
            return None
        if not isinstance(value, str):
            raise ConfigError(f"{source}: {where}: expected a string, got {value!r}")
        return value
    if kind.startswith("tuple"):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{source}: {where}: expected a list of strings, got {value!r}")
        return tuple(value)
    if kind.startswith("dict"):
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: {where}: expected a table, got {value!r}")
        return value
    return value


def _validate(config: Config, source: str) -> None:
    m = config.mount
    if m.attr_ttl < 0:
        raise ConfigError(f"{source}: [mount] attr_ttl: must be >= 0, got {m.attr_ttl}")
    if m.op_timeout <= 0:
        raise ConfigError(f"{source}: [mount] op_timeout: must be > 0, got {m.op_timeout}")
    if m.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ConfigError(f"{source}: [mount] log_level: expected DEBUG, INFO, WARNING or ERROR")
    for name, store in config.stores.items():
        if name in _RESERVED_TOP_NAMES:
            raise ConfigError(f"{source}: [stores.{name}]: '{name}' is reserved for the tree itself")
        if not store.protocol:
            raise ConfigError(f"{source}: [stores.{name}] protocol: must not be empty")
        if store.transfer_cluster and store.transfer_cluster not in config.clusters:
            raise ConfigError(
                f"{source}: [stores.{name}] transfer_cluster: no cluster named '{store.transfer_cluster}'"
            )
    for name, cluster in config.clusters.items():
        if not cluster.host:
            raise ConfigError(f"{source}: [clusters.{name}] host: must not be empty")
        if not 0 < cluster.port < 65536:
            raise ConfigError(f"{source}: [clusters.{name}] port: must be 1-65535, got {cluster.port}")


PLAIN_SECRET_KEYS = frozenset({"key", "access_key", "aws_access_key_id", "client_secret"})


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
