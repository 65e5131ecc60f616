"""Garbage collection of a data directory: old builds and the files only they use.

Keeps the current build and the `keep` most recent others (a server still serving the
previous build while it reloads must find its files), and deletes older builds/<id>.json,
every blob no kept build references, and cache entries naming a blob that will be gone.
It runs under the build lock, so a build never publishes while it decides.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from tourserver.errors import TourError
from tourserver.store.build import DataDir

DEFAULT_KEEP = 2
_BLOB_NAME = re.compile(r"^[0-9a-f]{64}\.[a-z0-9]{1,8}$")


@dataclass(frozen=True)
class Removed:
    path: str  # relative to the data directory
    bytes: int

    def to_json(self) -> dict:
        return {"path": self.path, "bytes": self.bytes}


@dataclass(frozen=True)
class GcResult:
    current: str
    kept: list[str]  # build ids, the current one first
    builds: list[Removed] = field(default_factory=list)
    blobs: list[Removed] = field(default_factory=list)
    cache: list[Removed] = field(default_factory=list)
    dry_run: bool = False

    @property
    def bytes_freed(self) -> int:
        return sum(r.bytes for r in (*self.builds, *self.blobs, *self.cache))

    def to_json(self) -> dict:
        return {"current": self.current, "kept": self.kept, "dry_run": self.dry_run,
                "bytes_freed": self.bytes_freed,
                "builds": [r.to_json() for r in self.builds],
                "blobs": [r.to_json() for r in self.blobs],
                "cache": [r.to_json() for r in self.cache]}


def blob_names(document: object) -> set[str]:
    """Every "<sha256>.<ext>" a catalog or cache entry refers to. It walks the whole
    document rather than known fields, so a blob reference added to the catalog format
    later is kept too: gc must never delete what a kept build uses."""
    found: set[str] = set()
    stack = [document]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            sha, ext = item.get("sha256"), item.get("ext")
            if isinstance(sha, str) and isinstance(ext, str):
                found.add(f"{sha}.{ext}")
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


def collect(data_root: Path, keep: int = DEFAULT_KEEP, dry_run: bool = False) -> GcResult:
    """Delete what no kept build needs (nothing with dry_run) and say what it was.
    Raises TourError when nothing is published or a kept build cannot be read: without
    knowing what a kept build references, nothing can safely be deleted."""
    if keep < 0:
        raise TourError("--keep must be 0 or more", code="usage")
    data = DataDir(data_root)
    with data.lock():
        current = data.current_build_id()
        if current is None:
            raise TourError(f"nothing is published in {data_root}; gc keeps the current "
                            "build and there is none", code="gc_refused")
        builds_dir = data_root / "builds"
        others = sorted((p for p in builds_dir.glob("*.json") if p.stem != current),
                        key=lambda p: (p.stat().st_mtime, p.name), reverse=True)
        kept_ids = [current, *(p.stem for p in others[:keep])]
        referenced: set[str] = set()
        for build_id in kept_ids:
            referenced |= blob_names(_read_kept(data, build_id))
        result = GcResult(current, kept_ids, dry_run=dry_run)
        result.builds.extend(_remove(data_root, others[keep:], dry_run))
        # Each build's precomputed files (store/artifacts: builds/<id>/), and folders a
        # build that died half-way left behind (.tmp-*: under the lock, none is in use).
        folders = [p.with_suffix("") for p in others[keep:]]
        folders += sorted(builds_dir.glob(".tmp-*"))
        result.builds.extend(_remove_folders(data_root, folders, dry_run))
        blobs = [p for p in _blob_files(data) if p.name not in referenced]
        gone = {p.name for p in blobs}
        result.cache.extend(_remove(data_root, _stale_cache(data, gone), dry_run))
        result.blobs.extend(_remove(data_root, blobs, dry_run))
        if not dry_run:
            _remove_empty_shards(data)
    return result


def _read_kept(data: DataDir, build_id: str) -> object:
    path = data.catalog_path(build_id)
    try:
        return json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else str(exc)
        raise TourError(f"kept build {build_id} cannot be read ({path}: {reason}); nothing "
                        "was removed", code="gc_refused") from None


def _blob_files(data: DataDir) -> list[Path]:
    if not data.blobs.root.is_dir():
        return []
    return sorted(p for shard in data.blobs.root.iterdir() if shard.is_dir()
                  for p in shard.iterdir() if _BLOB_NAME.match(p.name) and p.is_file())


def _stale_cache(data: DataDir, gone: set[str]) -> list[Path]:
    """Cache entries naming a blob that is deleted now or already missing (a build would
    remake those variants anyway), and entries that no longer parse."""
    stale = []
    for path in sorted((data.root / "cache").glob("*.json")):
        try:
            names = blob_names(json.loads(path.read_bytes()))
        except (OSError, ValueError):
            stale.append(path)
            continue
        if any(n in gone or not _blob_exists(data, n) for n in names):
            stale.append(path)
    return stale


def _blob_exists(data: DataDir, name: str) -> bool:
    return (data.blobs.root / name[:2] / name).is_file()


def _remove(data_root: Path, paths: list[Path], dry_run: bool) -> list[Removed]:
    removed = []
    for path in paths:
        try:
            size = path.lstat().st_size
            if not dry_run:
                path.unlink()
        except FileNotFoundError:
            continue
        removed.append(Removed(str(path.relative_to(data_root)), size))
    return removed


def _remove_folders(data_root: Path, folders: list[Path], dry_run: bool) -> list[Removed]:
    removed = []
    for folder in folders:
        if not folder.is_dir() or folder.is_symlink():
            continue
        removed.extend(_remove(data_root, sorted(p for p in folder.rglob("*")
                                                 if not p.is_dir()), dry_run))
        if not dry_run:
            for sub in sorted((p for p in folder.rglob("*") if p.is_dir()), reverse=True):
                sub.rmdir()
            folder.rmdir()
    return removed


def _remove_empty_shards(data: DataDir) -> None:
    if not data.blobs.root.is_dir():
        return
    for shard in data.blobs.root.iterdir():
        if shard.is_dir() and not any(shard.iterdir()):
            shard.rmdir()


__all__ = ["collect", "blob_names", "GcResult", "Removed", "DEFAULT_KEEP"]
