"""The tree's own types: the mount table, and the one type for a place in the tree.

The mount table says which system serves each top-level directory of the tree.
Mount keys are tree paths without a leading slash: ``here``, ``s3``,
``clusters/cluster-a``, ``tables``, ``.rhfs``. Every strict prefix of a key is a
directory of the tree itself (``/`` and ``/clusters``), read-only, whose children are
the next components. Resolution is pure string work and never calls a backend.

A path resolves to a :class:`Location` (a place on one system: the VFS, the copy
planner, the Python API and ``rhfs cp`` all speak of files by it) or to a
:class:`TreeDir`. This module sits under both the VFS and the transfer layer.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass

from rhfs.backends.base import join
from rhfs.backends.guard import Guarded
from rhfs.errors import NotFound

ALWAYS_SHOWN = ("clusters",)


@dataclass(frozen=True, slots=True)
class Location:
    """A place on one system: its tree path, the system's guarded backend, the path there."""

    path: str  # the tree path, "/s3/bucket/key" (outside the tree: the local path, or a URL)
    backend: Guarded
    rel: str = ""  # the path inside the backend
    mount: str = ""  # the mount key that serves it; "" for a place outside the tree

    @property
    def is_system_root(self) -> bool:
        return self.rel == ""

    @property
    def in_tree(self) -> bool:
        """Is this a place of the tree (not a local path given to ``rhfs cp``, say)?"""
        return self.mount != ""

    def child(self, name: str) -> Location:
        """The place of ``name`` (one or more components) inside this directory, on the same system."""
        name = name.strip("/")
        if not name:
            return self
        return Location(
            path=posixpath.join(self.path, name),
            backend=self.backend,
            rel=join(self.rel, name),
            mount=self.mount,
        )

    @property
    def parent(self) -> Location:
        """The directory holding this place; a system's root is its own parent."""
        if self.is_system_root:
            return self
        return Location(
            path=posixpath.dirname(self.path),
            backend=self.backend,
            rel=posixpath.dirname(self.rel),
            mount=self.mount,
        )


@dataclass(frozen=True, slots=True)
class TreeDir:
    """A directory of the tree itself (``/``, ``/clusters``): read-only, served by no system."""

    path: str
    children: tuple[str, ...] = ()


def normalize(path: str) -> str:
    """'/a//b/' -> '/a/b'; the root is '/'."""
    parts = [p for p in path.split("/") if p]
    return "/" + "/".join(parts)


class MountTable:
    def __init__(self, mounts: dict[str, Guarded]) -> None:
        self.mounts = dict(mounts)
        self._synthetic: dict[str, set[str]] = {"": set(ALWAYS_SHOWN)}
        for name in ALWAYS_SHOWN:
            self._synthetic.setdefault(name, set())
        for key in self.mounts:
            parts = key.split("/")
            for i in range(len(parts)):
                prefix = "/".join(parts[:i])
                self._synthetic.setdefault(prefix, set()).add(parts[i])

    def resolve(self, path: str) -> Location | TreeDir:
        key = normalize(path)[1:]
        if key in self._synthetic and key not in self.mounts:
            return TreeDir(path=normalize(path), children=tuple(sorted(self._synthetic[key])))
        parts = key.split("/")
        for i in range(len(parts), 0, -1):
            mount = "/".join(parts[:i])
            backend = self.mounts.get(mount)
            if backend is not None:
                return Location(path=normalize(path), backend=backend, rel="/".join(parts[i:]), mount=mount)
        raise NotFound(path)

    def backends(self) -> list[Guarded]:
        return list(self.mounts.values())

    def mount_of_system(self, system: str) -> str | None:
        for key, backend in self.mounts.items():
            if backend.system == system:
                return key
        return None
