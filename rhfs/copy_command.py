"""``rhfs cp SRC DST [-r]``: a face of the core, as the mount is: the same VFS and the
same copy planner (:class:`~rhfs.wiring.Core`), run in the calling process.

SRC and DST are URLs (``s3://bucket/key``, ``CLUSTER:path``, ``rhfs://<tree
path>``), paths inside a live rhfs mount (copied by this process, not through
the mount), or any other local path (the ``here`` routes; a :class:`~rhfs.tree.Location`
outside the tree, on the ``file`` system). As with ``cp``, a DST that is an existing
directory receives SRC under its own name, and a directory SRC needs ``-r``; as with
``rsync``, a directory SRC that ends in ``/`` is copied onto DST itself, so a rerun of
the same command syncs. Missing parents of DST are made either way.

The copy is one tree job (:class:`~rhfs.transfer.trees.TreeCopy`): files that already
match at DST are skipped, ``--checksum`` compares contents, ``--delete`` removes what
SRC lacks, and one byte progress bar, its total known up front, moves as files arrive.
One failed file does not stop the others; the result says which failed.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from rhfs import mountpoint as mp
from rhfs.config import Config
from rhfs.errors import IsADirectory, NotFound
from rhfs.location_io import makedirs
from rhfs.transfer.trees import TreeCopy, TreeOptions, TreeResult, into_directory, stat_or_none
from rhfs.tree import Location
from rhfs.wiring import Core, build_core


def endpoint(core: Core, arg: str, tree_path: Callable[[str, Config], str]) -> Location:
    """Where ``arg`` points: a URL or ``CLUSTER:path``, a path in a live mount, or a local path."""
    head = arg.partition(":")[0]
    if "://" in arg or (":" in arg and head in core.config.clusters):
        return core.vfs.locate(tree_path(arg, core.config))
    local = os.path.abspath(os.path.expanduser(arg))
    for mount in mp.rhfs_mounts():
        if local == mount or local.startswith(mount.rstrip("/") + "/"):
            rel = os.path.relpath(local, mount)
            return core.vfs.locate("/" if rel == "." else "/" + rel)
    return core.systems.outside_tree(local)


def run_cp(
    config: Config,
    src: str,
    dst: str,
    *,
    recursive: bool,
    tree_path: Callable[[str, Config], str],
    options: TreeOptions | None = None,
    progress: bool = True,
) -> TreeResult:
    """Copy ``src`` to ``dst`` as ``rhfs cp`` does; the result lists routes, skips and failures."""
    from tqdm import tqdm

    core = build_core(config)
    source, target = endpoint(core, src, tree_path), endpoint(core, dst, tree_path)
    entry = stat_or_none(source)
    if entry is None:
        raise NotFound(source.path)
    if entry.is_dir and not recursive:
        raise IsADirectory(f"{source.path} is a directory (use -r)")
    if not (entry.is_dir and src.endswith("/")):
        target = into_directory(source, target)
    makedirs(target.parent)  # as mkdir -p
    with tqdm(total=None, unit="B", unit_scale=True, disable=None if progress else True, leave=False) as bar:
        return TreeCopy(core.planner, options=options, progress=bar).run(source, target)
