"""Resolve creator-supplied paths safely: relative, normalised and inside the content root."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from tourserver.errors import TourError


class UnsafePath(TourError):
    code = "unsafe_path"


def resolve_inside(root: Path, relative: str, field: str | None = None) -> Path:
    """Return root/relative if it stays inside root (after symlinks); raise UnsafePath."""
    if not relative or "\x00" in relative or "\\" in relative:
        raise UnsafePath(f"path {relative!r} is empty or has a NUL or backslash", field=field)
    pure = PurePosixPath(relative)
    if pure.is_absolute() or ".." in pure.parts or ":" in pure.parts[0]:
        raise UnsafePath(f"path {relative!r} must be relative and must not use '..'", field=field)
    real_root = root.resolve()
    target = (real_root / pure).resolve()
    if target != real_root and real_root not in target.parents:
        raise UnsafePath(f"path {relative!r} leaves the content root", field=field)
    return target
