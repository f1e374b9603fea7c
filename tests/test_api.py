"""The Python API (docs/SEMANTICS.md) against the local servers: the tutorial, then each promise.

``rhfs.api`` runs over the testbed config, so its catalog is the one the ``mnt``
mount shows; names are unique per test.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pytest
from tables_fixtures import ATTR_TTL, api, derived_config, normalized, sample_frame, wait_for
from testbed import REPO, Testbed

from rhfs.catalog import NotInCatalog
from rhfs.errors import NotFound

pytestmark = [pytest.mark.servers]


@pytest.fixture
def rh(testbed: Testbed) -> Any:
    return api(testbed.config_path)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_the_data_tutorial_runs(testbed: Testbed, tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "examples" / "data_tutorial.py"),
            "--cluster",
            "cluster-a",
            "--store",
            "s3",
        ],
        env={**os.environ, "RHFS_CONFIG": str(testbed.config_path)},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    assert "cluster.run: [(0, '0.txt\\n1.txt\\n2.txt\\n3.txt\\n4.txt\\n', '')]" in result.stdout
    assert "tutorial: OK" in result.stdout
    routes = result.stdout.split("copies by route:")[1].splitlines()[0]
    assert "cluster-" in routes  # the s3 table reached the cluster by a command run there


def test_bytes_blobs_are_raw_and_other_data_is_pickled(rh: Any, testbed: Testbed) -> None:
    raw_name, obj_name = unique("raw"), unique("obj")
    raw = rh.blob(data=b"\x00raw bytes", name=raw_name, system="s3").write().save()
    obj = rh.blob(data={"x": list(range(5))}, name=obj_name, system="cluster-a").write().save()
    assert testbed.fs("s3").cat_file(raw.path) == b"\x00raw bytes"
    stored = testbed.fs("cluster-a").cat_file(f"{testbed.cluster_roots['cluster-a']}/{obj.path}")
    assert pickle.loads(stored) == {"x": [0, 1, 2, 3, 4]}
    catalog = Path(testbed.catalog_url) / "blobs"
    assert json.loads((catalog / f"{raw_name}.json").read_text())["serializer"] == "raw"
    assert json.loads((catalog / f"{obj_name}.json").read_text())["serializer"] == "pickle"
    assert rh.blob(name=raw_name).fetch() == b"\x00raw bytes"
    assert rh.blob(name=obj_name).fetch() == {"x": [0, 1, 2, 3, 4]}
    for blob in (raw, obj):
        assert blob.exists_in_system()
        blob.rm()
        assert not blob.exists_in_system()
    with pytest.raises(NotInCatalog):
        rh.blob(name=raw_name)


def test_missing_names_give_clear_errors(rh: Any) -> None:
    for factory, kind in ((rh.table, "table"), (rh.blob, "blob"), (rh.folder, "folder")):
        with pytest.raises(NotInCatalog, match=f"no {kind} named 'missing-name' in the catalog at "):
            factory(name="missing-name")
    with pytest.raises(NotFound, match=r"no cluster named 'cpu-cluster-x'.*cluster-a"):
        rh.cluster("cpu-cluster-x")
    with pytest.raises(NotFound, match="no system named 'nowhere'"):
        rh.folder(path="x", system="nowhere")


def test_tables_take_pandas_and_pyarrow_and_give_back_the_same_kind(rh: Any) -> None:
    frame = sample_frame(7)
    from_pandas = rh.table(data=frame, name=unique("pd"), system="gs").write()
    from_arrow = rh.table(data=pa.Table.from_pandas(frame, preserve_index=False), system="azure").write()
    fetched = from_pandas.fetch()
    assert isinstance(fetched, pd.DataFrame) and fetched.equals(frame)
    arrow = from_arrow.fetch()
    assert isinstance(arrow, pa.Table) and arrow.to_pandas().equals(frame)
    assert [len(b) for b in from_arrow.stream(batch_size=3)] == [3, 3, 1]
    assert list(from_pandas.fetch(columns=["id"]).columns) == ["id"]
    for t in (from_pandas, from_arrow):
        t.rm()
        assert not t.exists_in_system()


def test_a_partitioned_table_streams_exact_batches_and_shows_in_the_mount(rh: Any, mnt: Path) -> None:
    name = unique("hive")
    frame = sample_frame(11)
    table = rh.table(data=frame, name=name, system="cluster-a", partition_cols=["grade"]).write().save()
    assert sorted(table.ls()) == ["grade=a", "grade=b", "grade=c"]
    batches = list(rh.table(name=name).stream(batch_size=4))
    assert [len(b) for b in batches] == [4, 4, 3]
    assert normalized(pd.concat(batches)).equals(normalized(frame))
    path = mnt / "tables" / name
    assert wait_for(path.exists, 10 * ATTR_TTL) is not None
    assert sorted(os.listdir(path)) == ["grade=a", "grade=b", "grade=c"]
    assert normalized(pd.read_parquet(path)).equals(normalized(frame))
    table.rm()
    assert wait_for(lambda: not path.exists(), 10 * ATTR_TTL) is not None


def test_to_takes_the_planner_routes(rh: Any, tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    for i in range(3):
        (source / f"{i}.txt").write_text(str(i) * 100)
    folder = rh.folder(path=str(source))
    stats = rh.session().vfs.stats
    on_s3 = folder.to("s3")
    before = dict(stats.copies)
    again = on_s3.to("s3")  # same store: the provider's own copy
    on_cluster = again.to(rh.cluster("cluster-a"), path=unique("folder"))
    copies = {route: n - before.get(route, 0) for route, n in stats.copies.items()}
    assert copies.get("store-copy") == 3
    assert sum(n for route, n in copies.items() if route.startswith("cluster-")) == 3
    assert on_cluster.ls() == ["0.txt", "1.txt", "2.txt"]
    back = on_cluster.to("here", path=str(tmp_path / "back"))
    assert sorted(os.listdir(tmp_path / "back")) == ["0.txt", "1.txt", "2.txt"]
    assert (tmp_path / "back" / "2.txt").read_text() == "2" * 100
    for f in (on_s3, again, on_cluster, back):
        f.rm()


def test_a_mount_path_names_its_system(rh: Any, mnt: Path, testbed: Testbed) -> None:
    key = f"rhfs-test/{unique('mp')}"
    testbed.fs("s3").pipe_file(f"{key}/a.txt", b"a")
    folder = rh.folder(path=str(mnt / "s3" / key))
    assert (folder.system, folder.path) == ("s3", key)
    assert folder.ls() == ["a.txt"]
    name = unique("mpt")
    rh.table(data=sample_frame(2), name=name, path=f"/{key}/t", system="s3").write().save()
    assert wait_for((mnt / "tables" / name).exists, 10 * ATTR_TTL) is not None
    through_view = rh.folder(path=str(mnt / "tables" / name))
    assert (through_view.system, through_view.path) == ("s3", f"{key}/t")


def test_cluster_run_returns_status_and_output_per_command(rh: Any) -> None:
    results = rh.cluster("cluster-a").run(["echo hi", "echo oops >&2; exit 3"])
    assert results == [(0, "hi\n", ""), (3, "", "oops\n")]


def test_an_api_change_shows_at_once_in_rhfs_and_the_rest_stays_cached(
    testbed: Testbed, tmp_path: Path
) -> None:
    config = derived_config(testbed, tmp_path / "rhfs.toml", lambda raw: raw["mount"].update(attr_ttl=3600.0))
    rh = api(config)
    fs, cache = rh.session().fs, rh.session().vfs.cache
    key, other = f"{testbed.bucket}/{unique('inv')}", f"{testbed.bucket}/{unique('other')}"
    testbed.fs("s3").pipe_file(f"{key}/a.txt", b"a")
    testbed.fs("s3").pipe_file(f"{other}/o.txt", b"o")
    assert fs.ls(f"s3/{key}", detail=False) == [f"s3/{key}/a.txt"]
    assert fs.ls(f"s3/{other}", detail=False) == [f"s3/{other}/o.txt"]
    blob = rh.blob(data=b"new", path=f"{key}/b.bin", system="s3").write()
    assert fs.ls(f"s3/{key}", detail=False) == [f"s3/{key}/a.txt", f"s3/{key}/b.bin"]
    assert fs.cat_file(f"s3/{key}/b.bin") == b"new"
    assert cache.get_listing(f"/s3/{other}") is not None, "a change elsewhere keeps this listing"
    folder = rh.folder(path=key, system="s3").to("s3", path=f"{key}-copy")
    assert fs.ls(f"s3/{key}-copy", detail=False) == [f"s3/{key}-copy/a.txt", f"s3/{key}-copy/b.bin"]
    blob.rm()
    folder.rm()
    assert fs.ls(f"s3/{key}", detail=False) == [f"s3/{key}/a.txt"]
    assert not fs.exists(f"s3/{key}-copy")
    assert cache.get_listing(f"/s3/{other}") is not None
