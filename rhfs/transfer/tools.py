"""Which commands a cluster has (curl, python3, ssh), asked once and remembered for a while.

Routes that run a command on a cluster check here first, so that a cluster
without curl or python3 costs one short probe, not a failed transfer, before
the planner falls back to the next route. A cluster's session asks nothing first: its
helper says when python3 is missing there (or at a push's destination), and only what is
already known to be missing (:meth:`ToolCache.lacks`) sends a job to a command at once.
"""

from __future__ import annotations

import threading
import time

from rhfs.backends.guard import Guarded

TOOLS = ("curl", "python3", "ssh")
PROBE = "for t in " + " ".join(TOOLS) + '; do command -v "$t" >/dev/null 2>&1 && echo "$t"; done; exit 0'
REMEMBER_SECONDS = 300.0


class ToolCache:
    def __init__(self, remember: float = REMEMBER_SECONDS) -> None:
        self.remember = remember
        self._known: dict[str, tuple[float, frozenset[str]]] = {}
        self._lock = threading.Lock()

    def assume(self, system: str, tools: set[str] | frozenset[str], seconds: float = 1e9) -> None:
        """Take ``tools`` as the cluster's set for ``seconds`` (tests; clusters known in advance)."""
        with self._lock:
            self._known[system] = (time.monotonic() + seconds, frozenset(tools))

    def tools(self, cluster: Guarded) -> frozenset[str]:
        with self._lock:
            known = self._known.get(cluster.system)
        if known is not None and known[0] > time.monotonic():
            return known[1]
        run = cluster.abilities.run
        if run is None:
            return frozenset()
        code, out, _ = run(PROBE)
        found = frozenset(line.strip() for line in out.splitlines() if line.strip() in TOOLS)
        if code == 0:
            self.assume(cluster.system, found, self.remember)
        return found

    def has(self, cluster: Guarded, tool: str) -> bool:
        return tool in self.tools(cluster)

    def lacks(self, cluster: Guarded, tool: str) -> bool:
        """Is the cluster known to lack ``tool``? Asks nothing: for a step that finds out itself
        (a session's helper, which says so when python3 is missing) and need not pay a probe."""
        with self._lock:
            known = self._known.get(cluster.system)
        return known is not None and known[0] > time.monotonic() and tool not in known[1]
