"""The catalog: JSON documents per name, atomic writes, no lost names under concurrent writers.

Runs on a local directory and on a moto bucket (``s3://rhfs-test/...``), each
reached through the backend that ``[catalog] url`` names, as the daemon does.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest
from testbed import Testbed

from rhfs.backends.base import Entry
from rhfs.backends.guard import Guarded
from rhfs.backends.local import LocalBackend
from rhfs.catalog import Catalog, CatalogConflict, NotInCatalog, Resource, open_catalog
from rhfs.config import load_file
from rhfs.errors import AlreadyExists, InvalidArgument, NameTooLong, NotFound
from rhfs.location_io import makedirs
from rhfs.stats import Stats
from rhfs.tree import Location
from rhfs.views.systems import Systems
from rhfs.wiring import make_store

WHERE = ("local", "s3")


def systems_for(config_path: Path) -> Systems:
    config = load_file(str(config_path))
    stores = {name: make_store(config, name) for name in config.stores}
    return Systems(config, stores, LocalBackend("/", system="file"))


@pytest.fixture(params=WHERE)
def catalog_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "local":
        return str(tmp_path / "catalog")
    request.getfixturevalue("testbed")
    return f"s3://rhfs-test/catalog-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def catalog(catalog_url: str, request: pytest.FixtureRequest, tmp_path: Path) -> Catalog:
    if catalog_url.startswith("s3://"):
        tb: Testbed = request.getfixturevalue("testbed")
        return open_catalog(systems_for(tb.config_path), catalog_url)
    config = tmp_path / "rhfs.toml"
    config.write_text("")
    return open_catalog(systems_for(config), catalog_url)


def test_put_get_names_delete(catalog: Catalog) -> None:
    assert catalog.names("table") == []
    stored = catalog.put(Resource(kind="table", name="t1", system="s3", path="rhfs-test/t1"))
    catalog.put(Resource(kind="blob", name="b1", system="file", path="/tmp/b1", serializer="pickle"))
    assert catalog.names("table") == ["t1"]
    assert catalog.names("blob") == ["b1"]
    got = catalog.get("table", "t1")
    assert (got.system, got.path, got.created_at) == ("s3", "rhfs-test/t1", stored.created_at)
    assert catalog.get("blob", "b1").serializer == "pickle"
    catalog.delete("table", "t1")
    assert catalog.names("table") == []
    with pytest.raises(NotInCatalog, match="no table named 't1'"):
        catalog.get("table", "t1")


def test_replacing_keeps_created_at(catalog: Catalog) -> None:
    first = catalog.put(Resource(kind="folder", name="f", system="s3", path="rhfs-test/a"))
    second = catalog.put(Resource(kind="folder", name="f", system="s3", path="rhfs-test/b"))
    assert second.created_at == first.created_at
    assert second.updated_at >= first.updated_at
    assert catalog.get("folder", "f").path == "rhfs-test/b"


def test_rename(catalog: Catalog) -> None:
    catalog.put(Resource(kind="blob", name="old", system="file", path="/x"))
    catalog.put(Resource(kind="blob", name="taken", system="file", path="/y"))
    with pytest.raises(AlreadyExists):
        catalog.rename("blob", "old", "taken")
    catalog.rename("blob", "old", "new")
    assert catalog.names("blob") == ["new", "taken"]
    assert catalog.get("blob", "new").path == "/x"


def test_missing_name_message_names_the_catalog(catalog: Catalog) -> None:
    with pytest.raises(NotInCatalog) as info:
        catalog.get("blob", "nope")
    assert "nope" in str(info.value) and catalog.url in str(info.value)
    assert info.value.errno == 2


@pytest.mark.parametrize("bad", ["", "a/b", "..", "x" * 300])
def test_invalid_names_are_refused(catalog: Catalog, bad: str) -> None:
    with pytest.raises((InvalidArgument, NameTooLong)):
        catalog.put(Resource(kind="table", name=bad, system="file", path="/x"))


def test_documents_are_plain_json(tmp_path: Path) -> None:
    config = tmp_path / "rhfs.toml"
    config.write_text("")
    catalog = open_catalog(systems_for(config), str(tmp_path / "cat"))
    catalog.put(Resource(kind="blob", name="b", system="file", path="/x", serializer="raw"))
    doc = json.loads((tmp_path / "cat" / "blobs" / "b.json").read_text())
    assert doc["name"] == "b" and doc["serializer"] == "raw" and doc["kind"] == "blob"
    assert sorted(p.name for p in (tmp_path / "cat" / "blobs").iterdir()) == ["b.json"]  # no temp left


def test_store_write_is_verified(testbed: Testbed) -> None:
    """On a store the document is read back; another writer's content means a conflict."""
    catalog = open_catalog(systems_for(testbed.config_path), f"s3://rhfs-test/cat-{uuid.uuid4().hex[:8]}")
    real_read = catalog._read

    def other_writer_won(path: str) -> bytes:
        return real_read(path).replace(b'"rhfs-test/mine"', b'"rhfs-test/theirs"')

    catalog._read = other_writer_won  # type: ignore[method-assign]
    with pytest.raises(CatalogConflict):
        catalog.put(Resource(kind="table", name="t", system="s3", path="rhfs-test/mine"))


WRITER = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {tests!r})
    from test_catalog import systems_for
    from pathlib import Path
    from rhfs.catalog import Resource, open_catalog
    catalog = open_catalog(systems_for(Path({config!r})), {url!r})
    for i in range({count}):
        catalog.put(Resource(kind="table", name=f"{prefix}-{{i}}", system="file", path=f"/d/{{i}}"))
    """
)


def test_two_processes_writing_different_names_lose_nothing(
    catalog_url: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    if catalog_url.startswith("s3://"):
        config = request.getfixturevalue("testbed").config_path
    else:
        config = tmp_path / "rhfs.toml"
        config.write_text("")
    count = 15
    writers = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                WRITER.format(
                    tests=str(Path(__file__).parent),
                    config=str(config),
                    url=catalog_url,
                    count=count,
                    prefix=p,
                ),
            ]
        )
        for p in ("a", "b")
    ]
    assert [w.wait(timeout=120) for w in writers] == [0, 0]
    names = open_catalog(systems_for(config), catalog_url).names("table")
    assert names == sorted(f"{p}-{i}" for p in ("a", "b") for i in range(count))


def test_a_local_address_is_in_the_tree_where_here_serves_it(tmp_path: Path) -> None:
    here, outside = tmp_path / "here", tmp_path / "outside"
    (here / "in").mkdir(parents=True)
    outside.mkdir()
    (here / "link").symlink_to(outside)  # a link on the way out of here's root
    config = tmp_path / "rhfs.toml"
    config.write_text(f"[here]\nroot = {json.dumps(str(here))}\n")
    stats = Stats()
    systems = Systems(
        load_file(str(config)),
        {"here": Guarded(LocalBackend(str(here)), stats)},
        Guarded(LocalBackend("/", system="file"), stats),
    )
    inside = systems.locate(systems.address("file", str(here / "in" / "f")))
    assert (inside.path, inside.rel, inside.mount, inside.backend.system) == (
        "/here/in/f",
        "in/f",
        "here",
        "here",
    )
    for path in (outside / "f", here / "link" / "f"):
        loc = systems.locate(systems.address("here", str(path)))
        assert (loc.path, loc.in_tree, loc.backend.system) == (str(path), False, "file")
    with pytest.raises(NotFound, match="no configured store speaks"):
        systems.parse_url("s3://nowhere/x")  # these systems were given no factory for default stores


class _MadeMeanwhile(LocalBackend):
    """A directory another process makes between our look-up and our mkdir."""

    def stat(self, path: str) -> Entry:
        raise FileNotFoundError(path)


def test_a_directory_made_meanwhile_by_another_writer_is_not_an_error(tmp_path: Path) -> None:
    (tmp_path / "catalog" / "tables").mkdir(parents=True)
    backend = _MadeMeanwhile(str(tmp_path), system="file")
    makedirs(Location(path=str(tmp_path / "catalog/tables"), backend=backend, rel="catalog/tables"))  # type: ignore[arg-type]
    assert (tmp_path / "catalog" / "tables").is_dir()
