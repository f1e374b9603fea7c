"""The table ``rhfs status`` prints, from the mount's status.json and stats.json.

Pure formatting: no I/O. Sizes are decimal (kB, MB, GB) as ``df -H`` prints them.
"""

from __future__ import annotations

from typing import Any


def human_size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)


def human_duration(seconds: float) -> str:
    s = int(seconds)
    days, s = divmod(s, 86400)
    hours, s = divmod(s, 3600)
    minutes, s = divmod(s, 60)
    return f"{days}d{hours}h" if days else f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{s:02d}s"


def format_status(status: dict[str, Any], stats: dict[str, Any]) -> str:
    """One header line, one row per system (and per configured bucket of a store, with its
    state: ok, missing, denied, unreachable or failed), and a line of op, error and copy counts."""
    d = status.get("daemon", {})
    traffic = stats.get("systems", {})
    rows: list[tuple[str, ...]] = [("SYSTEM", "KIND", "HEALTH", "LATENCY", "READ", "WRITTEN", "RELAYED")]
    errors_of = ["LAST ERROR"]
    for name, s in sorted(status.get("systems", {}).items()):
        t = traffic.get(name, {})
        latency = "-" if s.get("latency_ms") is None else f"{s['latency_ms']:.1f}ms"
        traffic_of = (human_size(t.get(k, 0)) for k in ("bytes_read", "bytes_written", "bytes_relayed"))
        rows.append((name, s.get("kind", "?"), s.get("health", "?"), latency, *traffic_of))
        errors_of.append(s.get("last_error") or "-")
        for bucket, b in sorted(s.get("buckets", {}).items()):  # a store's configured buckets
            rows.append((f"{name}/{bucket}", "bucket", b.get("state", "?"), "-", "-", "-", "-"))
            errors_of.append(b.get("last_error") or "-")
    width = max(18, *(len(row[0]) for row in rows))
    lines = [
        f"rhfs {d.get('version', '?')} at {d.get('mountpoint', '?')}  pid {d.get('pid', '?')}  "
        f"up {human_duration(d.get('uptime_s', 0))}  config {d.get('config', '?')}",
        "",
    ]
    for (name, kind, health, latency, *sizes), error in zip(rows, errors_of, strict=True):
        traffic_columns = " ".join(f"{size:>10}" for size in sizes)
        lines.append(f"{name:<{width}} {kind:<8} {health:<11} {latency:>9} {traffic_columns}  {error}")
    ops = stats.get("ops", {})
    errors = ", ".join(f"{k} {v}" for k, v in sorted(stats.get("errors", {}).items())) or "none"
    copies = ", ".join(
        f"{route} {c.get('count', 0)} ({human_size(c.get('bytes', 0))})"
        for route, c in sorted(stats.get("copies", {}).items())
    )
    lines += ["", f"ops {sum(ops.values())}; errors: {errors}" + (f"; copies: {copies}" if copies else "")]
    lines += _failed_uploads(status.get("failed_uploads") or {})
    return "\n".join(lines)


def _failed_uploads(kept: dict[str, Any]) -> list[str]:
    """One line when uploads are kept under cache_dir/failed/, none otherwise."""
    if not kept.get("count"):
        return []
    refused = f", {kept['refused']} not retryable" if kept.get("refused") else ""
    return [
        f"failed uploads: {kept['count']} kept ({human_size(kept.get('bytes', 0))}{refused}) under "
        f"{kept.get('dir', '?')}; see: rhfs failed list"
    ]


def not_ok(status: dict[str, Any]) -> list[str]:
    """The systems that are down and the configured buckets that are not ``ok``."""
    out = []
    for name, s in sorted(status.get("systems", {}).items()):
        if s.get("health") == "down":
            out.append(name)
        out += [f"{name}/{b}" for b, r in sorted(s.get("buckets", {}).items()) if r.get("state") != "ok"]
    return out
