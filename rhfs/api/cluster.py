"""``rh.cluster``: a configured SSH cluster, by name, that runs shell commands in its root."""

from __future__ import annotations

import shlex
from collections.abc import Sequence

from rhfs.api.places import session
from rhfs.errors import NotFound, NotSupported


class Cluster:
    def __init__(self, name: str) -> None:
        s = session()
        if name not in s.config.clusters:
            known = ", ".join(s.config.clusters) or "none"
            raise NotFound(
                f"no cluster named {name!r} in {s.config.source or 'the default config'} (known: {known})"
            )
        self.name = name

    def __repr__(self) -> str:
        return f"Cluster({self.name!r})"

    def run(self, commands: str | Sequence[str]) -> list[tuple[int, str, str]]:
        """Run each shell command in the cluster's root; return (exit status, stdout, stderr) each."""
        s = session()
        run = s.systems.backend(self.name).abilities.run
        if run is None:
            raise NotSupported(f"{self.name} cannot run commands")
        root = shlex.quote(s.systems.cluster_root(self.name))
        commands = [commands] if isinstance(commands, str) else commands
        return [run(f"cd {root} && {command}") for command in commands]
