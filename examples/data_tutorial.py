"""Runhouse's data tutorial (folders, tables, blobs), with ``import rhfs as rh``.

Run it against any rhfs config (``RHFS_CONFIG``, ``~/.config/rhfs/config.toml``...)
that has an object store and a cluster, for example the local test servers::

    python scripts/testbed.py start --dir /tmp/tb
    RHFS_CONFIG=/tmp/tb/rhfs.toml python examples/data_tutorial.py --cluster cluster-a --store s3

Each step prints what it did and checks the result, so the script exits non-zero
if any step goes wrong. Everything it creates is removed at the end.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

import pandas as pd

import rhfs as rh


def folders(workdir: str, cluster: rh.Cluster, store: str) -> list[rh.Folder]:
    folder_name = "sample_folder"
    os.makedirs(os.path.join(workdir, folder_name), exist_ok=True)
    for i in range(5):
        with open(os.path.join(workdir, folder_name, f"{i}.txt"), "w") as f:
            f.write(str(i))
    example_folder = rh.folder(path=os.path.join(workdir, folder_name))

    cluster_folder = example_folder.to(system=cluster, path=folder_name)
    listing = cluster.run([f"ls {folder_name}"])
    print("cluster.run:", listing)
    assert listing == [(0, "0.txt\n1.txt\n2.txt\n3.txt\n4.txt\n", "")], listing

    s3_folder = example_folder.to(system=store)
    print(f"{store} folder:", s3_folder.path, s3_folder.ls())
    assert s3_folder.ls() == [f"{i}.txt" for i in range(5)]
    return [example_folder, cluster_folder, s3_folder]


def tables(cluster: rh.Cluster, store: str, bucket: str) -> list[rh.Table]:
    df = pd.DataFrame({"id": [1, 2, 3, 4, 5, 6], "grade": ["a", "b", "b", "a", "a", "e"]})
    table_name = "sample_table"
    path = f"/{bucket}/sample_table"
    rh_table = rh.table(data=df, name=table_name, path=path, system=store).write().save()

    reloaded_table = rh.table(name=table_name)
    batches = list(reloaded_table.stream(batch_size=2))
    for batch in batches:
        print(batch)
    assert [len(b) for b in batches] == [2, 2, 2]
    assert pd.concat(batches, ignore_index=True).equals(df)

    local_table = rh_table.to("here")
    cluster_table = rh_table.to(system=cluster, path="sample_table")
    for copy in (local_table, cluster_table):
        print(f"{table_name} on {copy.system}: {copy.path}")
        assert copy.fetch().equals(df)
    return [rh_table, local_table, cluster_table]


def blobs() -> list[rh.Blob]:
    data = list(range(50))
    blob_name = "local-blob"
    local_blob = rh.blob(data=data, name=blob_name, system="file").write().save()
    fetched = rh.blob(name=blob_name).fetch()
    print("blob:", fetched)
    assert fetched == data
    return [local_blob]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cluster", default="cpu-cluster", help="a cluster of the config")
    parser.add_argument("--store", default="s3", help="an object store of the config")
    parser.add_argument("--bucket", help="a bucket of that store (default: its first)")
    parser.add_argument("--workdir", help="where the local sample folder goes (default: a temp dir)")
    args = parser.parse_args(argv)

    from rhfs.api import session

    bucket = args.bucket or session().systems.first_bucket(args.store)
    cluster = rh.cluster(args.cluster)
    with tempfile.TemporaryDirectory(prefix="rhfs-tutorial-") as tmp:
        created: list[rh.Folder | rh.Blob] = []
        try:
            created += folders(args.workdir or tmp, cluster, args.store)
            created += tables(cluster, args.store, bucket)
            created += blobs()
        finally:
            for resource in created:
                resource.rm()
    copies = session().vfs.stats.snapshot()["copies"]
    print("copies by route:", {route: c["count"] for route, c in sorted(copies.items())})
    print("tutorial: OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
