"""``rhfs failed list | retry | purge``: the uploads kept under ``cache_dir/failed/``.

A face of the core, run in the calling process, as ``rhfs cp`` is: ``retry`` builds the tree
from the config (:func:`~rhfs.wiring.build_core`) and uploads each kept file to the tree path
its record names, through the same guarded backend or view as the mount, so a table part is
checked as parquet again. Files refused for their content (``reason`` ``refused``) and files
without a record are never retried: uploading them again would be refused again, or would have
nowhere to go. A file uploaded is removed with its record; one that fails again stays.
A live mount of the same config sees a retried file within its ``attr_ttl``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from rhfs.config import Config, expand
from rhfs.errors import NotFound, RhfsError, describe
from rhfs.status_report import human_size
from rhfs.tree import Location
from rhfs.vfs import kept as kept_files
from rhfs.vfs.kept import Kept


def failed_dir(config: Config) -> str:
    return kept_files.failed_dir(expand(config.mount.cache_dir))


def select(kept: list[Kept], names: Iterable[str]) -> list[Kept]:
    """The kept files named by their kept name or their target path; NotFound naming any other."""
    wanted = list(names)
    if not wanted:
        return kept
    chosen = [k for k in kept if k.name in wanted or k.target in wanted]
    unknown = [n for n in wanted if not any(n in (k.name, k.target) for k in kept)]
    if unknown:
        raise NotFound(f"no kept upload named {', '.join(unknown)}; see: rhfs failed list")
    return chosen


def why_not_retried(k: Kept) -> str:
    if k.target is None:
        return "no record of its target (kept by an older rhfs)"
    return f"refused for its content ({k.error})"


def list_lines(kept: list[Kept]) -> list[str]:
    """The table ``rhfs failed list`` prints: one row per kept file, then why it was kept."""
    lines = [f"{'KEPT AT':<16} {'SIZE':>9} {'REASON':<10} {'TARGET':<40} NAME"]
    for k in kept:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(k.kept_at))
        target = k.target or "(unknown)"
        lines.append(f"{when:<16} {human_size(k.size):>9} {k.reason:<10} {target:<40} {k.name}")
        if k.error:
            lines.append(f"{'':<16}   {k.error}")
    return lines


def as_json(k: Kept) -> dict[str, object]:
    return {
        "name": k.name,
        "path": k.path,
        "size": k.size,
        "kept_at": k.kept_at,
        "target": k.target,
        "reason": k.reason,
        "error": k.error,
        "retryable": k.retryable,
    }


@dataclass
class RetryResult:
    uploaded: list[Kept] = field(default_factory=list)
    failed: list[tuple[Kept, str]] = field(default_factory=list)  # and why
    not_retried: list[Kept] = field(default_factory=list)


def retry(config: Config, kept: list[Kept]) -> RetryResult:
    """Upload each retryable kept file to its target; remove the ones that arrive."""
    from rhfs.wiring import build_core

    result = RetryResult()
    todo = [k for k in kept if k.retryable]
    result.not_retried = [k for k in kept if not k.retryable]
    if not todo:
        return result
    table = build_core(config).vfs.table
    for k in todo:
        assert k.target is not None
        try:
            place = table.resolve(k.target)
        except NotFound:
            result.failed.append((k, "its system is no longer in the config"))
            continue
        try:
            if not isinstance(place, Location) or place.is_system_root:
                raise RhfsError(f"{k.target} is a directory of the tree, not a file")
            place.backend.upload(k.path, place.rel)
        except RhfsError as e:
            result.failed.append((k, describe(e)))
        except OSError as e:
            result.failed.append((k, e.strerror or str(e)))
        else:
            kept_files.remove(k.path)
            result.uploaded.append(k)
    return result


def purge(kept: list[Kept]) -> int:
    for k in kept:
        kept_files.remove(k.path)
    return len(kept)
