"""Read tour manifests from disk, check them and every file they reference, and give each
issue found (by any check) its manifest line and its stop's id, in one place: `load_tour`."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tourserver.errors import Issue, ManifestInvalid
from tourserver.ingest.files import check_tour_files
from tourserver.ingest.manifest_text import (
    ManifestSyntaxError,
    ManifestText,
    decode_json,
    decode_yaml,
    line_at,
    stop_index,
)
from tourserver.model.manifest import QUOTE_HINT, Tour, parse_tour_with_warnings
from tourserver.model.placement import placement_issues

MANIFEST_NAMES = ("tour.json", "tour.yaml", "tour.yml")
MAX_MANIFEST_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class LoadedTour:
    tour: Tour
    manifest_path: Path
    files: dict[str, Path]  # manifest-relative name -> resolved path
    warnings: tuple[Issue, ...] = ()  # located like errors; they do not stop a build
    lines: dict[str, int] = field(default_factory=dict)  # JSON pointer -> manifest line


def find_manifest(tour_dir: Path) -> Path:
    found = [tour_dir / name for name in MANIFEST_NAMES if (tour_dir / name).is_file()]
    if len(found) > 1:
        names = " and ".join(p.name for p in found)
        raise ManifestInvalid([Issue(
            "manifest_ambiguous", f"two manifests, {names}: a tour has exactly one",
            str(tour_dir), hint="delete the one you are not editing")])
    if found:
        return found[0]
    raise ManifestInvalid([Issue("manifest_missing",
                                 f"no manifest ({', '.join(MANIFEST_NAMES)}) in the folder",
                                 str(tour_dir))])


def read_manifest_text(path: Path) -> ManifestText:
    """Decode a JSON or YAML (1.2) manifest with the line of every field. Unreadable text
    (size, encoding, syntax) raises ManifestInvalid with line and column; duplicate keys
    and tags are returned in `.issues` so the rest of the file is still checked."""
    file = str(path)
    size = path.stat().st_size
    if size > MAX_MANIFEST_BYTES:
        raise ManifestInvalid([Issue("manifest_too_large",
                                     f"{size} bytes; the limit is {MAX_MANIFEST_BYTES}", file)])
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")  # editors on Windows write a BOM
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ManifestInvalid([Issue("encoding", f"not UTF-8 at byte {exc.start}", file,
                                     line=line, hint="save the file as UTF-8")]) from None
    decode = decode_json if path.suffix == ".json" else decode_yaml
    try:
        decoded = decode(text, file)
    except ManifestSyntaxError as exc:
        raise ManifestInvalid([exc.issue]) from None
    if decoded.data is None:
        raise ManifestInvalid([Issue("manifest_empty", "the manifest is empty", file,
                                     hint="see tours/chongqing-night/tour.yaml for a "
                                          "complete example")])
    return decoded


def read_manifest(path: Path) -> Any:
    """The decoded manifest (dict/list/str/int/float/bool/None). Raises ManifestInvalid on
    anything `read_manifest_text` finds, duplicate keys included."""
    decoded = read_manifest_text(path)
    if any(i.is_error for i in decoded.issues):
        raise ManifestInvalid(list(decoded.issues))
    return decoded.data


def load_tour(tour_dir: Path, content_root: Path) -> LoadedTour:
    """Read, parse and check one tour folder. Raises ManifestInvalid with every problem
    (warnings included) if any is an error; otherwise the warnings are in the result.
    Every issue leaves here with its manifest line and its stop's id."""
    manifest = find_manifest(tour_dir)
    file = str(manifest)
    text = read_manifest_text(manifest)
    issues = list(text.issues)
    tour: Tour | None = None
    files: dict[str, Path] = {}
    try:
        tour, warnings = parse_tour_with_warnings(text.data, file, expected_id=tour_dir.name)
        issues.extend(warnings)
    except ManifestInvalid as exc:
        issues.extend(exc.issues)
    if tour is not None:
        issues.extend(placement_issues(tour, text.data, file))
        files, file_issues = check_tour_files(tour, content_root, file)
        issues.extend(file_issues)
    located = [locate(issue, text, file) for issue in issues]
    if tour is None or any(i.is_error for i in located):
        raise ManifestInvalid(located)
    return LoadedTour(tour, manifest, files, tuple(located), text.lines)


def locate(issue: Issue, text: ManifestText, file: str) -> Issue:
    """Give a manifest issue its line, its stop's id and, for a YAML value that needs
    quotes, the exact text to quote. Messages name a stop by id, never as /stops/N."""
    if issue.file not in (None, file):
        return issue  # about another file: the manifest's lines do not apply
    hint = issue.hint
    if hint == QUOTE_HINT and issue.field in text.plain:
        hint = f'write it in quotes: "{text.plain[issue.field]}"'
    return dataclasses.replace(
        issue, file=file, hint=hint,
        line=issue.line or line_at(text.lines, issue.field),
        stop=issue.stop or _stop_id(text.data, stop_index(issue.field)),
        message=_STOP_POINTER.sub(lambda m: _name_stop(m, text.data), issue.message))


_STOP_POINTER = re.compile(r"/stops/(\d+)((?:/[\w-]+(?:\.[\w-]+)*)*)")


def _stop_id(data: Any, index: int | None) -> str | None:
    stops = data.get("stops") if isinstance(data, dict) else None
    if index is None or not isinstance(stops, list) or index >= len(stops):
        return None
    ident = stops[index].get("id") if isinstance(stops[index], dict) else None
    return ident if isinstance(ident, str) else None


def _name_stop(match: re.Match, data: Any) -> str:
    ident = _stop_id(data, int(match.group(1)))
    name = f"stop {ident!r}" if ident else f"stop {int(match.group(1)) + 1}"
    rest = match.group(2).lstrip("/")
    return f"{name} ({rest})" if rest else name


def load_all(content_root: Path) -> tuple[list[LoadedTour], list[Issue]]:
    """Load every tour under content_root/tours. The issues are the errors of tours that
    failed and the warnings of those that loaded (tell them apart by severity), and ids
    that collide between tours (anchor, stop and scene ids are global)."""
    tours_dir = content_root / "tours"
    loaded: list[LoadedTour] = []
    issues: list[Issue] = []
    if not tours_dir.is_dir():
        return [], [Issue("tours_missing", "no tours/ folder", str(content_root))]
    for tour_dir in sorted(p for p in tours_dir.iterdir() if p.is_dir()):
        try:
            lt = load_tour(tour_dir, content_root)
        except ManifestInvalid as exc:
            issues.extend(exc.issues)
            continue
        loaded.append(lt)
        issues.extend(lt.warnings)
    owners: dict[str, str] = {}
    for lt in loaded:
        clashes = []
        for (kind, ident), where in sorted(_id_fields(lt.tour).items()):
            owner = owners.setdefault(f"{kind}:{ident}", lt.tour.id)
            if owner != lt.tour.id:
                clashes.append((kind, ident, where, owner))
        # A stop's or scene's anchor has its id: say the clash once, for the stop or scene.
        named = {ident for kind, ident, _, _ in clashes if kind != "anchor"}
        for kind, ident, where, owner in clashes:
            if kind == "anchor" and ident in named:
                continue
            issues.append(Issue("duplicate_id", f"{kind} id {ident!r} is also used by tour "
                                f"{owner!r}", str(lt.manifest_path), where,
                                line_at(lt.lines, where),
                                lt.tour.stops[stop_index(where) or 0].id,
                                hint="rename it: ids are shared by every tour"))
    return loaded, issues


def _id_fields(tour: Tour) -> dict[tuple[str, str], str]:
    """(kind, id) -> the field that names it. Anchors take their stop's or scene's id."""
    out: dict[tuple[str, str], str] = {}
    for si, stop in enumerate(tour.stops):
        out.setdefault(("stop", stop.id), f"/stops/{si}/id")
        out.setdefault(("anchor", stop.anchor.id), f"/stops/{si}/anchor")
        for ci, scene in enumerate(stop.scenes):
            out.setdefault(("scene", scene.id), f"/stops/{si}/scenes/{ci}/id")
            if scene.anchor is not stop.anchor:
                out.setdefault(("anchor", scene.anchor.id), f"/stops/{si}/scenes/{ci}/anchor")
    return out
