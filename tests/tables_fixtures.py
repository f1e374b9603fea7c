"""Helpers for the tables, blobs, catalog, API and fsspec-face tests.

- :func:`api` points ``rhfs.api`` (and ``rhfs://``) at a config, once per config file;
- :func:`sample_frame` and :func:`normalized` make frames that compare across readers, and
  :func:`unique` names that no other test uses;
- :func:`derived_config` writes a copy of the testbed config with some keys changed;
- :func:`put_parquet`, :func:`put_bytes` write straight to a system with fsspec, never
  through rhfs, so the tests see rhfs read what others wrote.
"""

from __future__ import annotations

import io
import json
import os
import time
import tomllib
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import tomli_w
from testbed import Testbed

ATTR_TTL = 1.0  # the testbed config's [mount] attr_ttl


def api(config: Path) -> Any:
    """``rhfs.api`` over ``config`` (the same tree the mount builds from it)."""
    import rhfs.api

    rhfs.api.configure(str(config))
    return rhfs.api


def unique(prefix: str) -> str:
    """A name no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def numbered_frame(rows: int, parts: int, factor: float) -> pd.DataFrame:
    """Rows ``id`` 0.., ``part`` = id % parts (to partition by), ``x`` = id * factor."""
    ids = np.arange(rows)
    return pd.DataFrame({"id": ids, "part": ids % parts, "x": ids * factor})


def sample_frame(rows: int = 12, start: int = 0) -> pd.DataFrame:
    ids = range(start, start + rows)
    return pd.DataFrame(
        {
            "id": list(ids),
            "grade": [("a", "b", "c")[i % 3] for i in ids],
            "score": [i * 0.25 for i in ids],
        }
    )


def normalized(frame: pd.DataFrame | pa.Table | Any) -> pd.DataFrame:
    """Columns id, grade, score; sorted by id; partition columns as plain strings."""
    if isinstance(frame, pa.Table):
        frame = frame.to_pandas()
    if not isinstance(frame, pd.DataFrame):
        frame = frame.to_pandas()  # polars
    frame = frame[["id", "grade", "score"]].copy()
    frame["grade"] = frame["grade"].astype(str)
    frame["id"] = frame["id"].astype("int64")
    return frame.sort_values("id").reset_index(drop=True)


def parquet_bytes(frame: pd.DataFrame, **kwargs: Any) -> bytes:
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), buf, **kwargs)
    return buf.getvalue()


def system_key(tb: Testbed, system: str, path: str) -> str:
    """The fsspec path of ``path`` on ``system`` (bucket/key, or absolute on a cluster)."""
    if system.startswith("cluster-"):
        return f"{tb.cluster_roots[system]}/{path}"
    return path


def put_bytes(tb: Testbed, system: str, path: str, data: bytes) -> None:
    fs = tb.fs(system)
    key = system_key(tb, system, path)
    if system.startswith("cluster-"):
        fs.makedirs(os.path.dirname(key), exist_ok=True)
    fs.pipe_file(key, data)


def put_parquet(tb: Testbed, system: str, path: str, frame: pd.DataFrame, **kwargs: Any) -> None:
    put_bytes(tb, system, path, parquet_bytes(frame, **kwargs))


def derived_config(tb: Testbed, target: Path, change: Callable[[dict[str, Any]], None]) -> Path:
    """A copy of the testbed config with ``change(raw_toml_dict)`` applied, mode 600."""
    raw = tomllib.loads(tb.config_path.read_text())
    change(raw)
    target.write_text(tomli_w.dumps(raw))
    target.chmod(0o600)
    return target


def stats(mountpoint: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((mountpoint / ".rhfs" / "stats.json").read_text())
    return data


def wait_for(predicate: Callable[[], bool], timeout: float, interval: float = 0.05) -> float | None:
    """Seconds until ``predicate()`` held, or None if it never did within ``timeout``."""
    started = time.monotonic()
    while True:
        if predicate():
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            return None
        time.sleep(interval)
