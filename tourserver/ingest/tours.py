"""Read tour manifests from disk and check every file they reference."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import yaml

from tourserver.errors import Issue, ManifestInvalid, TourError
from tourserver.ingest.resolver import resolve_inside
from tourserver.model.manifest import Tour, asset_paths, parse_tour
from tourserver.model.vtt import VttError, parse_vtt

MANIFEST_NAMES = ("tour.json", "tour.yaml", "tour.yml")
MAX_MANIFEST_BYTES = 4 * 1024 * 1024
MAX_SUBTITLE_BYTES = 2 * 1024 * 1024


@dataclass(frozen=True)
class LoadedTour:
    tour: Tour
    manifest_path: Path
    files: dict[str, Path]  # manifest-relative name -> resolved path


def find_manifest(tour_dir: Path) -> Path:
    for name in MANIFEST_NAMES:
        if (tour_dir / name).is_file():
            return tour_dir / name
    raise ManifestInvalid([Issue("manifest_missing",
                                 f"no manifest ({', '.join(MANIFEST_NAMES)}) in the folder",
                                 str(tour_dir))])


def read_manifest(path: Path) -> object:
    """Decode a JSON or YAML manifest; syntax errors become an Issue with line and column."""
    file = str(path)
    size = path.stat().st_size
    if size > MAX_MANIFEST_BYTES:
        raise ManifestInvalid([Issue("manifest_too_large",
                                     f"{size} bytes; the limit is {MAX_MANIFEST_BYTES}", file)])
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ManifestInvalid([Issue("encoding", f"not UTF-8 at byte {exc.start}", file)]) from None
    if path.suffix == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ManifestInvalid([Issue("syntax", f"line {exc.lineno} column {exc.colno}: "
                                         f"{exc.msg}", file)]) from None
    try:
        # safe_load: YAML tags cannot construct Python objects.
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1} column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ManifestInvalid([Issue("syntax", f"{where}{problem}", file)]) from None


def load_tour(tour_dir: Path, content_root: Path) -> LoadedTour:
    """Read, parse and check one tour folder. Raises ManifestInvalid with every problem."""
    manifest = find_manifest(tour_dir)
    file = str(manifest)
    tour = parse_tour(read_manifest(manifest), file, expected_id=tour_dir.name)
    issues: list[Issue] = []
    files: dict[str, Path] = {}
    for rel, field in asset_paths(tour):
        try:
            path = resolve_inside(content_root, rel, field)
        except TourError as exc:
            issues.append(Issue(exc.code, exc.message, file, field))
            continue
        if not path.is_file():
            issues.append(Issue("file_missing", f"{rel} does not exist", file, field))
            continue
        files[rel] = path
        if path.suffix.lower() == ".vtt":
            issues.extend(_check_vtt(path, rel, file, field))
    if issues:
        raise ManifestInvalid(issues)
    return LoadedTour(tour, manifest, files)


def _check_vtt(path: Path, rel: str, file: str, field: str) -> list[Issue]:
    if path.stat().st_size > MAX_SUBTITLE_BYTES:
        return [Issue("subtitles_too_large", f"{rel} is over {MAX_SUBTITLE_BYTES} bytes",
                      file, field)]
    try:
        parse_vtt(path.read_text("utf-8"))
    except UnicodeDecodeError:
        return [Issue("subtitles_invalid", f"{rel} is not UTF-8", file, field)]
    except VttError as exc:
        return [Issue("subtitles_invalid", f"{rel} {exc}", file, field)]
    return []


def load_all(content_root: Path) -> tuple[list[LoadedTour], list[Issue]]:
    """Load every tour under content_root/tours; collect issues across all of them,
    including ids that collide between tours (anchor, stop and scene ids are global)."""
    tours_dir = content_root / "tours"
    loaded: list[LoadedTour] = []
    issues: list[Issue] = []
    if not tours_dir.is_dir():
        return [], [Issue("tours_missing", "no tours/ folder", str(content_root))]
    for tour_dir in sorted(p for p in tours_dir.iterdir() if p.is_dir()):
        try:
            loaded.append(load_tour(tour_dir, content_root))
        except ManifestInvalid as exc:
            issues.extend(exc.issues)
    owners: dict[str, str] = {}
    for lt in loaded:
        ids = {("stop", s.id) for s in lt.tour.stops} | {("scene", s.id)
                                                           for s in lt.tour.scenes()}
        ids |= {("anchor", a.id) for a in lt.tour.anchors()}
        for kind, ident in sorted(ids):
            owner = owners.setdefault(f"{kind}:{ident}", lt.tour.id)
            if owner != lt.tour.id:
                issues.append(Issue("duplicate_id", f"{kind} id {ident!r} is also used by "
                                    f"tour {owner!r}", str(lt.manifest_path)))
    return loaded, issues
