"""The records of uploads kept under cache_dir/failed/ (rhfs.vfs.kept), without FUSE or servers."""

from __future__ import annotations

import json
import os
from pathlib import Path

from rhfs.vfs import kept


def keep(cache: Path, target: str, data: bytes, reason: str = "failed") -> Path:
    failed = Path(kept.failed_dir(str(cache)))
    failed.mkdir(parents=True, exist_ok=True)
    path = failed / kept.kept_name(target)
    path.write_bytes(data)
    kept.write_record(str(path), target, reason, f"{reason} for a test")
    return path


def test_failed_holds_only_kept_bytes_and_each_record_names_its_target(tmp_path: Path) -> None:
    a = keep(tmp_path, "/s3/b/a.bin", b"aaa")
    b = keep(tmp_path, "/tables/t/x.parquet", b"junk", reason="refused")
    assert sorted(os.listdir(tmp_path / "failed")) == sorted([a.name, b.name])
    listed = {k.target: k for k in kept.listing(str(tmp_path / "failed"))}
    assert listed["/s3/b/a.bin"].retryable and listed["/s3/b/a.bin"].size == 3
    assert not listed["/tables/t/x.parquet"].retryable
    assert kept.summary(str(tmp_path / "failed")) == {
        "count": 2,
        "retryable": 1,
        "refused": 1,
        "bytes": 7,
        "dir": str(tmp_path / "failed"),
    }


def test_a_kept_file_without_a_record_is_listed_but_never_retryable(tmp_path: Path) -> None:
    failed = tmp_path / "failed"
    failed.mkdir()
    (failed / "20200101T000000-abcdef12-s3__b__old.bin").write_bytes(b"old")
    (entry,) = kept.listing(str(failed))
    assert (entry.target, entry.reason, entry.retryable) == (None, "unknown", False)


def test_prune_removes_what_is_past_its_age_and_records_without_a_file(tmp_path: Path) -> None:
    old = keep(tmp_path, "/s3/b/old.bin", b"old")
    new = keep(tmp_path, "/s3/b/new.bin", b"new")
    gone = keep(tmp_path, "/s3/b/gone.bin", b"gone")
    gone.unlink()  # removed by hand: its record is left over
    records = tmp_path / kept.RECORDS_DIR
    record = records / f"{old.name}.json"
    doc = json.loads(record.read_text())
    record.write_text(json.dumps({**doc, "kept_at": doc["kept_at"] - 31 * kept.DAY}))
    assert kept.prune(str(tmp_path / "failed"), 0) == []  # 0 keeps every file
    assert not (records / f"{gone.name}.json").exists()
    removed = kept.prune(str(tmp_path / "failed"), 30)
    assert [k.target for k in removed] == ["/s3/b/old.bin"]
    assert not old.exists() and not record.exists()
    assert new.exists() and [k.target for k in kept.listing(str(tmp_path / "failed"))] == ["/s3/b/new.bin"]
