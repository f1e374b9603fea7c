"""The layering rules of docs/ARCHITECTURE.md, checked on the source itself.

Each rule is read off the import statements and the syntax tree of every module
under ``rhfs/``, so that a change which breaks one fails here, by name.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "rhfs"
CLIENT_LIBRARIES = {"fsspec", "s3fs", "gcsfs", "adlfs", "sshfs", "asyncssh", "botocore", "aiobotocore"}
CLIENT_LIBRARIES |= {"azure"}


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def layer(path: Path) -> str:
    """``backends``, ``vfs``, ``transfer``, ``views``, or ``top`` for modules directly in rhfs/."""
    relative = path.relative_to(PACKAGE).parts
    return relative[0] if len(relative) > 1 else "top"


def imported(path: Path) -> set[str]:
    """Every module ``path`` imports, at any depth (lazy imports in functions count too);
    names imported for type annotations only (under ``if TYPE_CHECKING:``) do not count."""
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            node.body = []
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def offenders(rule: object, paths: list[Path]) -> list[str]:
    return [str(p.relative_to(PACKAGE)) for p in paths if rule(p)]  # type: ignore[operator]


def test_only_backends_import_the_client_libraries() -> None:
    """(The ``rhfs://`` face is an fsspec filesystem itself: it may import fsspec, no client.)"""

    def breaks(path: Path) -> bool:
        top = {name.split(".")[0] for name in imported(path)}
        if path.name == "fsspec_face.py":
            top.discard("fsspec")
        return layer(path) != "backends" and bool(top & CLIENT_LIBRARIES)

    assert offenders(breaks, modules()) == []


def test_the_vfs_never_imports_mfusepy() -> None:
    def breaks(path: Path) -> bool:
        return layer(path) == "vfs" and any(name.split(".")[0] == "mfusepy" for name in imported(path))

    assert offenders(breaks, modules()) == []
    assert "mfusepy" in {n.split(".")[0] for n in imported(PACKAGE / "fuse_adapter.py")}


def test_only_the_metrics_face_imports_prometheus_client() -> None:
    def breaks(path: Path) -> bool:
        uses = any(name.split(".")[0] == "prometheus_client" for name in imported(path))
        return uses and path.name != "metrics.py"

    assert offenders(breaks, modules()) == []
    assert "prometheus_client" in {n.split(".")[0] for n in imported(PACKAGE / "metrics.py")}


def test_nothing_in_transfer_imports_the_vfs_or_a_face() -> None:
    faces = ("rhfs.vfs", "rhfs.api", "rhfs.cli", "rhfs.wiring", "rhfs.mountpoint", "rhfs.fuse_adapter")

    def breaks(path: Path) -> bool:
        return layer(path) == "transfer" and any(name.startswith(faces) for name in imported(path))

    assert offenders(breaks, modules()) == []


def test_backends_import_no_layer_above_them() -> None:
    above = ("rhfs.vfs", "rhfs.transfer", "rhfs.views", "rhfs.tree", "rhfs.api", "rhfs.wiring", "rhfs.cli")

    def breaks(path: Path) -> bool:
        return layer(path) == "backends" and any(name.startswith(above) for name in imported(path))

    assert offenders(breaks, modules()) == []


FAMILIES = {"here", "cluster", "store", "view", "control"}  # what backends declare as Traits.family


def test_no_layer_above_the_backends_unwraps_a_guard() -> None:
    """Above the backends, a backend is asked for its traits and abilities, never for the
    object inside its guard."""

    def breaks(path: Path) -> bool:
        tree = ast.parse(path.read_text())
        return layer(path) != "backends" and any(
            isinstance(node, ast.Attribute) and node.attr == "inner" for node in ast.walk(tree)
        )

    assert offenders(breaks, modules()) == []


def test_no_layer_above_the_backends_switches_on_a_family_name() -> None:
    """No ``x.kind == "store"`` or ``family in ("here", "cluster")``: behaviour follows traits."""

    def names_a_family(node: ast.AST) -> bool:
        return any(isinstance(n, ast.Constant) and n.value in FAMILIES for n in ast.walk(node))

    def breaks(path: Path) -> bool:
        tree = ast.parse(path.read_text())
        return layer(path) != "backends" and any(
            isinstance(node, ast.Compare) and names_a_family(node) for node in ast.walk(tree)
        )

    assert offenders(breaks, modules()) == []


def test_no_module_outside_the_backends_tests_a_backend_class() -> None:
    classes = {"LocalBackend", "ClusterBackend", "StoreBackend", "MemoryBackend"}

    def breaks(path: Path) -> bool:
        if layer(path) == "backends":
            return False
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "isinstance":
                names = {n.id for n in ast.walk(node.args[1]) if isinstance(n, ast.Name)}
                if names & classes:
                    return True
        return False

    assert offenders(breaks, modules()) == []


def test_errnos_are_chosen_only_in_the_errors_module() -> None:
    def breaks(path: Path) -> bool:
        if path.name == "errors.py":
            return False
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.keyword) and node.arg == "errno_":
                return True
        return False

    assert offenders(breaks, modules()) == []
