"""docs/CONFIG.md, the configuration reference, rendered from the declarations of :mod:`rhfs.config`.

Keys, types and defaults come from the config dataclasses themselves; this module adds only
what a reader needs beyond them: one line of help per key (:data:`HELP`, which must name every
field of every section and nothing else) and worked examples (:data:`EXAMPLES`, each a whole
config file). ``python3 scripts/gen_config_doc.py`` writes the document; a test fails when the
file in the repository differs from :func:`render`, and another loads every example with
rhfs's own config loader.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from rhfs import config as cfg

DOC_PATH = "docs/CONFIG.md"
REGENERATE = "python3 scripts/gen_config_doc.py"

# (table as written in the file, its dataclass, what the table is)
SECTIONS: tuple[tuple[str, type, str], ...] = (
    ("[mount]", cfg.MountConfig, "How the daemon serves the tree."),
    ("[here]", cfg.HereConfig, "`here/`: the daemon host's own files."),
    ("[catalog]", cfg.CatalogConfig, "Where the catalog of tables, blobs and folders is kept."),
    ("[tables]", cfg.TablesConfig, "Where new tables are made."),
    (
        "[stores.NAME]",
        cfg.StoreConfig,
        "One object store account, shown as `NAME/` with its buckets below. NAME is letters, "
        "digits, `.`, `_` and `-` (at most 64), and not `here`, `clusters`, `tables` or `blobs`.",
    ),
    (
        "[clusters.NAME]",
        cfg.ClusterConfig,
        "One SSH cluster, shown as `clusters/NAME/`, reached over SFTP with its commands run by ssh.",
    ),
)


def _files_in_flight(system: str) -> str:
    return (
        "Files (or batches of files) a tree job (`rhfs cp -r`, `.to()`) moves at once to or from "
        f"this {system}; a job between two systems takes the lesser of their two."
    )


HELP: dict[type, dict[str, str]] = {
    cfg.MountConfig: {
        "attr_ttl": "Seconds that attributes, listings and the kernel's entries are cached: changes "
        "made outside the mount show within this time.",
        "cache_dir": "Local directory for spools, kept failed uploads (`failed/`), converted table "
        "parts and the daemon's log (`rhfs.log`).",
        "read_only": "Refuse every write (as `rhfs mount --read-only`).",
        "allow_other": "Let other users into the mount, with the kernel checking modes (as `--allow-other`).",
        "op_timeout": "Seconds one call to a system may take before it fails with ETIMEDOUT and the "
        "system is marked down; an upload gets one more second per 2 MiB.",
        "log_level": "`DEBUG`, `INFO`, `WARNING` or `ERROR` (`--log-level` overrides it).",
        "metrics_address": "Serve Prometheus metrics at `http://HOST:PORT/metrics` (such as "
        '"127.0.0.1:9464"); empty: no endpoint. The metrics are listed in docs/SEMANTICS.md, '
        '"Metrics".',
        "failed_max_age_days": "Kept uploads under `cache_dir/failed/` older than this many days are "
        "removed (at start, then every 6 hours); 0 keeps them until `rhfs failed purge`.",
    },
    cfg.HereConfig: {
        "root": "The local directory shown as `here/`.",
    },
    cfg.CatalogConfig: {
        "url": "A local directory, `s3://bucket/prefix` (or `gs://`, `az://`, served with the "
        "options of the configured store of that protocol and bucket), or `CLUSTER:path`.",
    },
    cfg.TablesConfig: {
        "default_url": "Where `mkdir tables/NAME` and the Python API put a new table's data "
        "(`<default_url>/NAME`); new blobs go to `<parent of it>/blobs/`. Same forms as `[catalog] url`.",
    },
    cfg.StoreConfig: {
        "name": "Not a key: the NAME of `[stores.NAME]`.",
        "protocol": "The fsspec protocol: `s3`, `gcs` (or `gs`), `az` (or `abfs`); any other "
        "installed fsspec protocol is served through that filesystem's own directories.",
        "buckets": "The buckets shown under `NAME/`; without it, every bucket the credentials can list.",
        "transfer_cluster": "A configured cluster that streams copies between this store and a "
        "store of another account, so that the bytes do not pass through the daemon.",
        "files_in_flight": _files_in_flight("store"),
        "options": "Passed as they are to the protocol's fsspec filesystem (`s3fs.S3FileSystem`, "
        '`gcsfs.GCSFileSystem`, `adlfs.AzureBlobFileSystem`); see "Store options" below. Without '
        "keys, the provider's standard credential chain applies.",
    },
    cfg.ClusterConfig: {
        "name": "Not a key: the NAME of `[clusters.NAME]`.",
        "host": "Host name or address the daemon connects to.",
        "port": "SSH port.",
        "user": "Login name; default: ssh's (the local user).",
        "identity_file": "Private key to log in with; default: your ssh agent and `~/.ssh/id_*`. "
        "Copies from another cluster to this one need it.",
        "known_hosts": 'File with the host keys to trust, always checked; `""` turns the check off '
        "(with a warning at start).",
        "root": "Directory on the cluster shown as `clusters/NAME/` (a path there, never expanded here).",
        "internal_host": "The name or address other clusters reach this one at (a private "
        "network, say), for cluster-to-cluster copies; default: `host`.",
        "session_idle": "Seconds the kept ssh session that runs copies on the cluster outlives its "
        "last job; 0: no session, one command per file.",
        "files_in_flight": _files_in_flight("cluster"),
    },
}

STORE_OPTIONS = """\
`options` is the keyword arguments of the protocol's fsspec filesystem, given as they are. The
ones most configs need:

| protocol | option | meaning |
|---|---|---|
| `s3` | `profile` | a profile of `~/.aws/credentials` and `~/.aws/config` (roles, SSO, …) |
| `s3` | `key`, `secret`, `token` | static credentials (a secret: the file must be `chmod 600`) |
| `s3` | `endpoint_url` | another S3 server: MinIO, Ceph, a cloud's S3-compatible endpoint |
| `s3` | `client_kwargs = { region_name = "…" }` | the region, where the server needs one |
| `s3` | `anon = true` | public buckets, no credentials |
| `gcs` | `token` | a service-account JSON file, `"anon"`, or none for application default credentials |
| `gcs` | `project` | the project to list buckets of |
| `gcs` | `endpoint_url` | another GCS server (an emulator) |
| `az` | `connection_string` | a storage account's connection string (a secret) |
| `az` | `account_name` | the account; alone, `DefaultAzureCredential` finds the credentials |
| `az` | `account_key`, `sas_token` | static credentials (secrets) |

Each library checks its own options: `rhfs config check` builds every store and tries it, and
names an option its library does not take.
"""

SECRETS = """\
A config file that holds a secret (a store option named like `key`, `secret`, `token`,
`password`, `credential`, `connection_string`, `account_key`, `sas`, …) must not be readable
by group or others, as ssh demands of private keys. `rhfs mount` and every other command refuse
it with one line:

```console
$ rhfs mount
rhfs: /etc/rhfs/config.toml: holds secrets but is readable by others (mode 0644); \
run: chmod 600 /etc/rhfs/config.toml
```

Secrets never appear in the log, in `rhfs config show`, in `.rhfs/config.toml` or in any
command line; each is shown as `***`. A config without secrets (profiles, application default
credentials, an ssh key file) may be readable by anyone.
"""

# (title, what it shows, a whole config file)
EXAMPLES: tuple[tuple[str, str, str], ...] = (
    (
        "AWS with a profile",
        "Credentials from the `research` profile of `~/.aws/credentials` (or SSO, or a role with "
        "`source_profile`); no secret in the file.",
        """\
[stores.s3]
protocol = "s3"
buckets = ["my-bucket", "my-other-bucket"]
options = { profile = "research" }
""",
    ),
    (
        "MinIO or another S3-compatible server",
        "A custom endpoint with static keys: `chmod 600` the file. The `options` table may also be "
        'written inline: `options = { endpoint_url = "…", key = "…", secret = "…" }`.',
        """\
[stores.minio]
protocol = "s3"
buckets = ["data"]

[stores.minio.options]
endpoint_url = "http://minio.internal:9000"
key = "minioadmin"
secret = "minio-secret-key"
client_kwargs = { region_name = "us-east-1" }
""",
    ),
    (
        "Google Cloud Storage with application default credentials",
        "No token: `gcloud auth application-default login`, `GOOGLE_APPLICATION_CREDENTIALS` or the "
        "metadata server provides them.",
        """\
[stores.gs]
protocol = "gcs"
buckets = ["my-gcs-bucket"]
options = { project = "my-project" }
""",
    ),
    (
        "Azure Blob Storage with a connection string",
        "The connection string is a secret (its `AccountKey` too): `chmod 600` the file.",
        """\
[stores.azure]
protocol = "az"
buckets = ["my-container"]

[stores.azure.options]
connection_string = "DefaultEndpointsProtocol=https;AccountName=myaccount;AccountKey=bXlrZXk="
""",
    ),
    (
        "Two clusters, one reached by the other on a private network",
        "The daemon reaches both at their public names; a copy from `cpu` to `gpu` runs on `cpu`, "
        "which reaches `gpu` at its `internal_host`.",
        """\
[clusters.cpu]
host = "cpu.example.org"
user = "ubuntu"
identity_file = "~/.ssh/id_ed25519"
root = "/data"

[clusters.gpu]
host = "gpu.example.org"
user = "ubuntu"
identity_file = "~/.ssh/id_ed25519"
internal_host = "10.0.0.12"
root = "/scratch"
session_idle = 120.0
""",
    ),
    (
        "A service with metrics",
        "A mount for systemd, with the Prometheus endpoint on loopback and kept uploads removed after "
        "a week.",
        """\
[mount]
cache_dir = "/var/cache/rhfs"
allow_other = true
op_timeout = 60.0
log_level = "WARNING"
metrics_address = "127.0.0.1:9464"
failed_max_age_days = 7.0

[catalog]
url = "s3://my-bucket/rhfs-catalog"

[tables]
default_url = "s3://my-bucket/tables"

[stores.s3]
protocol = "s3"
buckets = ["my-bucket"]
""",
    ),
)


def _type_name(f: dataclasses.Field[Any]) -> str:
    t = str(f.type)
    if t.startswith("tuple"):
        return "list of strings"
    if t.startswith("dict"):
        return "table"
    return {"float": "number", "int": "integer", "bool": "true/false"}.get(t.split(" ")[0], "string")


def _default(f: dataclasses.Field[Any]) -> str:
    if f.default_factory is not dataclasses.MISSING:
        return "`{}`"
    if f.default is dataclasses.MISSING:
        return "required"
    if f.default is None:
        return "none"
    if isinstance(f.default, bool):
        return f"`{str(f.default).lower()}`"
    if isinstance(f.default, str):
        return f'`"{f.default}"`'
    return f"`{f.default:g}`" if isinstance(f.default, float) else f"`{f.default}`"


def missing_help() -> list[str]:
    """Keys without help, and help for keys that do not exist, as ``Class.key`` names."""
    problems = []
    for _, cls, _ in SECTIONS:
        fields = {f.name for f in dataclasses.fields(cls)}
        helped = set(HELP.get(cls, {}))
        problems += [f"{cls.__name__}.{name} has no help" for name in sorted(fields - helped)]
        problems += [f"{cls.__name__}.{name} is not a key" for name in sorted(helped - fields)]
    return problems


def _section(table: str, cls: type, about: str) -> list[str]:
    lines = [f"### `{table}`", "", about, "", "| key | type | default | meaning |", "|---|---|---|---|"]
    for f in dataclasses.fields(cls):
        if f.name == "name":
            continue  # the table's own name, not a key
        local = f.metadata.get("path") or f.metadata.get("url")
        where = " `~` and `$VARS` are expanded" + (" in a local path." if f.metadata.get("url") else ".")
        meaning = HELP[cls][f.name] + (where if local else "")
        lines.append(f"| `{f.name}` | {_type_name(f)} | {_default(f)} | {meaning} |")
    return [*lines, ""]


def render() -> str:
    """The whole of docs/CONFIG.md."""
    lines = [
        "# rhfs configuration reference",
        "",
        f"<!-- Generated from rhfs/config.py by `{REGENERATE}`; edit those, not this file. -->",
        "",
        "rhfs reads one TOML file, the first found of: `--config FILE`, `$RHFS_CONFIG`, "
        f"`{cfg.USER_CONFIG}`, `{cfg.SYSTEM_CONFIG}`. With none, the embedded default applies: "
        "`here/` at your home directory, the local catalog, and a store for each provider whose "
        "standard credentials are found (`s3` for `AWS_ACCESS_KEY_ID`, `AWS_PROFILE` or "
        "`~/.aws/credentials`; `gs` for `GOOGLE_APPLICATION_CREDENTIALS` or gcloud's application default "
        "credentials; `azure` for `AZURE_STORAGE_CONNECTION_STRING`).",
        "",
        "Every key is optional unless marked required. An unknown table or key, a wrong type or a bad "
        'value is an error that names the file, the table and the key (with "did you mean"); '
        "`rhfs config check` lists them all, then tries every system; `rhfs config show` prints "
        "the effective config with defaults filled in.",
        "",
        "## Secrets and `chmod 600`",
        "",
        SECRETS,
        "## Keys",
        "",
    ]
    for table, cls, about in SECTIONS:
        lines += _section(table, cls, about)
    lines += ["## Store options", "", STORE_OPTIONS, "## Examples", ""]
    lines.append("Each is a whole config file; the tests load every one with rhfs's own loader.")
    lines.append("")
    for title, about, text in EXAMPLES:
        lines += [f"### {title}", "", about, "", "```toml", text.rstrip("\n"), "```", ""]
    return "\n".join(lines).rstrip("\n") + "\n"
