"""How users name places on the command line and in the config: URLs to tree paths.

Forms (docs/SEMANTICS.md "Copies"): ``PROTO://bucket/key`` for a store, ``rhfs://path`` for a
tree path, ``CLUSTER:path`` for a cluster (relative to its root, or absolute
under it), and a bare tree path. A protocol is matched to a configured store by
provider (:data:`rhfs.backends.providers.PROVIDER_OF`), so ``s3a://`` finds an
``s3`` store and ``abfs://`` an ``az`` one; any other protocol finds only stores of
that very protocol. Among several stores of one provider, the one that lists the
bucket wins.
"""

from __future__ import annotations

from rhfs.backends.providers import PROVIDER_OF
from rhfs.config import Config, StoreConfig
from rhfs.errors import NotFound


def provider(protocol: str) -> str:
    """The provider a protocol speaks to (``s3``, ``gs``, ``az``), or the protocol itself."""
    return PROVIDER_OF.get(protocol, protocol)


def store_for(config: Config, protocol: str, bucket: str) -> StoreConfig | None:
    """The configured store that serves ``protocol://bucket``, or None if none speaks it."""
    stores = [s for s in config.stores.values() if provider(s.protocol) == provider(protocol)]
    chosen = [s for s in stores if s.buckets is None or bucket in s.buckets] or stores
    return chosen[0] if chosen else None


def tree_path(url: str, config: Config) -> str:
    """The tree path (``/s3/bucket/key``) that a URL names."""
    if url.startswith("rhfs://"):
        return "/" + url[len("rhfs://") :].strip("/")
    if "://" in url:
        protocol, _, rest = url.partition("://")
        store = store_for(config, protocol, rest.split("/", 1)[0])
        if store is None:
            raise NotFound(f"{url}: no configured store speaks {protocol}:// (add a [stores.NAME] table)")
        return f"/{store.name}/{rest.strip('/')}".rstrip("/")
    head, sep, rest = url.partition(":")
    if sep and head in config.clusters:
        root = config.clusters[head].root
        if rest.startswith("/"):
            if not root.startswith("/") or not (rest + "/").startswith(root.rstrip("/") + "/"):
                raise NotFound(f"{url}: outside {head}'s root ({root}); give a path relative to it")
            rest = rest[len(root.rstrip("/")) :]
        return f"/clusters/{head}/{rest.strip('/')}".rstrip("/")
    return "/" + url.strip("/")
