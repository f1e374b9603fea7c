"""``Folder.mount``: the local path where a folder's files show, in an rhfs mount of this config.

- A folder on this machine is already local: its own path is the answer, and nothing is
  mounted.
- Otherwise a running rhfs mount serving the same config file (its ``.rhfs/status.json``
  names the file) is reused: the answer is the folder's path inside it.
- Otherwise ``rhfs mount`` of this config starts at ``path`` (default: a mount point of the
  config's own under the runtime directory), as the command line would: it returns once the
  mount answers, and the daemon outlives this process (``rhfs unmount`` stops it).

rhfs mounts the whole tree, never one folder alone; the folder is a directory of it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys

from rhfs import mountpoint as mp
from rhfs.api.places import session
from rhfs.errors import RhfsError
from rhfs.tree import Location

log = logging.getLogger(__name__)
EMBEDDED = "embedded default"  # what status.json names as the config when no file was found
MOUNT_TIMEOUT = 120.0


def _config_key(source: str | None) -> str:
    return os.path.realpath(source) if source else EMBEDDED


def serves_config(mountpoint: str, source: str | None) -> bool:
    """Whether the rhfs mount at ``mountpoint`` answers and serves the config file ``source``."""
    if not mp.answers(mountpoint):
        return False
    try:
        with open(os.path.join(mountpoint, ".rhfs", "status.json")) as f:
            served = json.load(f).get("daemon", {}).get("config")
    except (OSError, ValueError):
        return False
    return isinstance(served, str) and _config_key(None if served == EMBEDDED else served) == _config_key(
        source
    )


def running_mount(source: str | None) -> str | None:
    """A running rhfs mount of the config ``source``, if there is one."""
    return next((m for m in mp.rhfs_mounts() if serves_config(m, source)), None)


def default_mountpoint(source: str | None) -> str:
    key = hashlib.sha256(_config_key(source).encode()).hexdigest()[:12]
    return os.path.join(mp.runtime_dir(), f"api-mount-{key}")


def start_mount(mountpoint: str, source: str | None) -> None:
    """``rhfs mount mountpoint --config source``; raise :class:`RhfsError` with its words if it fails."""
    os.makedirs(mountpoint, exist_ok=True)
    argv = [sys.executable, "-m", "rhfs", "mount", mountpoint]
    if source:
        argv += ["--config", os.path.realpath(source)]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=MOUNT_TIMEOUT, check=False)
    if result.returncode != 0:
        words = (result.stderr or result.stdout).strip().splitlines()
        raise RhfsError(f"cannot mount the tree at {mountpoint}: {words[-1] if words else result.returncode}")
    log.info("mounted the tree at %s for Folder.mount", mountpoint)


def local_path_of(loc: Location, path: str | None) -> str:
    """The local path showing ``loc`` (see the module's docstring)."""
    on_disk = loc.backend.abilities.local_path
    if on_disk is not None:
        return on_disk(loc.rel)
    if not loc.in_tree:
        return loc.path
    source = session().config.source
    mountpoint = os.path.abspath(os.path.expanduser(path)) if path else running_mount(source)
    if mountpoint is None:
        mountpoint = default_mountpoint(source)
    if not serves_config(mountpoint, source):
        start_mount(mountpoint, source)
    return mountpoint + loc.path
