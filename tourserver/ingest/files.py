"""Check every file a tour references, by its content: what `validate` reports and what the
build would otherwise trip over later.

Scenes are opened with the loader and structural checks the build itself uses, so a scene
that validates also builds. Audio is identified by its bytes (`ingest.audio`), subtitles
are parsed, and a narration's subtitles must not run past the end of its audio. Each
problem is an `Issue` against the manifest, at the field that names the file, with the stop
by its id, a message that names the referenced file and a hint.
"""

from __future__ import annotations

import json
import struct
import urllib.parse
from pathlib import Path

from tourserver.errors import Issue, TourError
from tourserver.gltf.document import GLB_MAGIC
from tourserver.ingest.audio import AudioInfo, AudioRejected, describe, probe_audio
from tourserver.ingest.checks import structural_issues
from tourserver.ingest.loaders import load_asset
from tourserver.ingest.resolver import resolve_inside
from tourserver.model.manifest import Tour, asset_paths
from tourserver.model.vtt import Cue, VttError, parse_vtt

MAX_SUBTITLE_BYTES = 2 * 1024 * 1024
MAX_SCENE_JSON_BYTES = 64 * 1024 * 1024  # the JSON of a scene read to list its files
# Subtitles may outlast their audio by this much (encoders pad or trim a few frames).
SUBTITLE_TOLERANCE_S = 0.5
PATH_HINT = "write paths relative to the content root (the folder holding tours/ and assets/)"
REEXPORT_HINT = "export the scene again from your 3D tool as glTF 2.0 (.glb or .gltf)"
SCENE_HINTS = {
    "glb_truncated": "the file is incomplete: copy or export it again",
    "position_not_finite": "the mesh has NaN or infinite vertices: fix it in your 3D tool "
                           "and export again",
    "index_out_of_range": REEXPORT_HINT,
    "image_too_large": "scale the texture down to at most 8192 px a side",
    "image_format": "save textures as PNG, JPEG or WebP",
    "image_invalid": "save the texture again as PNG, JPEG or WebP",
    "file_missing": "keep a .gltf's .bin and textures beside it, as it names them",
    "gltf_external_uri": "keep a .gltf's .bin and textures beside it, as it names them",
}

_Problem = tuple[str, str, str]  # code, message (naming the file), hint


def check_tour_files(tour: Tour, content_root: Path,
                     manifest_file: str) -> tuple[dict[str, Path], list[Issue]]:
    """Resolve and check every file `tour` references. Returns the files that exist and are
    safe (manifest-relative name -> path) and every problem found."""
    files: dict[str, Path] = {}
    issues: list[Issue] = []
    checked: dict[Path, list[_Problem]] = {}  # a file named twice is opened once
    audio: dict[Path, AudioInfo | None] = {}
    cues: dict[Path, list[Cue] | None] = {}
    for rel, field in asset_paths(tour):
        stop = _stop_id(tour, field)
        problems: list[_Problem] = []
        try:
            path = resolve_inside(content_root, rel, field)
        except TourError as exc:
            problems.append((exc.code, exc.message, PATH_HINT))
            path = None
        if path is not None and not path.is_file():
            problems.append(_missing(path, rel))
        elif path is not None:
            files[rel] = path
            if path not in checked:
                if field.endswith("/source"):
                    checked[path] = _scene_problems(path, rel)
                elif "/audio/" in field:
                    checked[path] = _audio_problems(path, rel, audio)
                else:
                    checked[path] = _subtitle_problems(path, rel, cues)
            problems.extend(checked[path])
        issues.extend(Issue(code, message, manifest_file, field, stop=stop, hint=hint)
                      for code, message, hint in problems)
    issues.extend(_timing_issues(tour, files, audio, cues, manifest_file))
    return files, issues


def asset_reason(message: str, path: Path) -> str:
    """A loader's message without the file's own path in front (callers name the file
    once, their way): "<path>#/images/0: ..." -> "#/images/0: ...", "<path>: x" -> "x"."""
    for prefix in (str(path), path.name):
        if message.startswith(prefix):
            rest = message[len(prefix):]
            return rest if rest.startswith("#") else rest.removeprefix(":").strip()
    return message


def scene_dependencies(path: Path) -> list[Path]:
    """The files beside a scene source that it references (a .gltf's buffers and images;
    a .glb may name some too), resolved as the loader resolves them. Unreadable sources and
    unsafe references are left out: the loader reports those."""
    try:
        doc_json = _scene_json(path)
    except (OSError, ValueError, struct.error):
        return []
    found: list[Path] = []
    for kind in ("buffers", "images"):
        items = doc_json.get(kind) if isinstance(doc_json, dict) else None
        for item in items if isinstance(items, list) else []:
            uri = item.get("uri") if isinstance(item, dict) else None
            if not isinstance(uri, str) or uri.startswith("data:"):
                continue
            parsed = urllib.parse.urlsplit(uri)
            if parsed.scheme or parsed.netloc:
                continue
            try:
                target = resolve_inside(path.parent, urllib.parse.unquote(parsed.path))
            except TourError:
                continue
            if target.is_file() and target not in found:
                found.append(target)
    return found


def _scene_json(path: Path) -> object:
    with path.open("rb") as fh:
        header = fh.read(20)
        if header[:4] == GLB_MAGIC.to_bytes(4, "little"):
            if len(header) < 20:
                raise ValueError("GLB header cut off")
            length = struct.unpack_from("<I", header, 12)[0]
            if length > MAX_SCENE_JSON_BYTES:
                raise ValueError("JSON chunk too large")
            return json.loads(fh.read(length))
        if path.stat().st_size > MAX_SCENE_JSON_BYTES:
            raise ValueError("too large for glTF JSON")
        return json.loads(header + fh.read())


def _stop_id(tour: Tour, field: str) -> str | None:
    parts = field.split("/")
    if len(parts) > 2 and parts[1] == "stops" and parts[2].isdigit():
        index = int(parts[2])
        if index < len(tour.stops):
            return tour.stops[index].id
    return None


def _missing(path: Path, rel: str) -> _Problem:
    if path.is_dir():
        return "file_missing", f"{rel} is a folder, not a file", PATH_HINT
    # A name that differs only in case works on macOS and Windows, then fails on the server.
    if path.parent.is_dir():
        for other in path.parent.iterdir():
            if other.name.lower() == path.name.lower():
                folder = rel.rpartition("/")[0]
                return ("file_missing", f"{rel} does not exist",
                        f"did you mean {folder + '/' if folder else ''}{other.name}?")
    return "file_missing", f"{rel} does not exist", PATH_HINT


def _scene_problems(path: Path, rel: str) -> list[_Problem]:
    if path.stat().st_size == 0:
        return [("file_empty", f"{rel} is empty (0 bytes)", REEXPORT_HINT)]
    try:
        doc = load_asset(path)
    except TourError as exc:
        if exc.code == "glb_bad_magic":
            return [_not_a_glb(path, rel)]
        return [(exc.code, at_file(rel, asset_reason(exc.message, path)),
                 SCENE_HINTS.get(exc.code, REEXPORT_HINT))]
    except OSError as exc:
        return [("file_unreadable", f"{rel} cannot be read: {exc.strerror}", PATH_HINT)]
    problems = []
    for issue in structural_issues(doc):
        reason = asset_reason(issue.message, path)
        if issue.field and not reason.startswith((issue.field, "#")):
            reason = f"#{issue.field}: {reason}"
        problems.append((issue.code, at_file(rel, reason),
                         SCENE_HINTS.get(issue.code, REEXPORT_HINT)))
    return problems


def at_file(rel: str, reason: str) -> str:
    """"rel: reason", or "rel#/pointer: reason" when the reason is inside the file."""
    if reason.startswith("/"):
        reason = "#" + reason
    return f"{rel}{reason}" if reason.startswith("#") else f"{rel}: {reason}"


def _not_a_glb(path: Path, rel: str) -> _Problem:
    with path.open("rb") as fh:
        head = fh.read(4096)
    if head.lstrip().startswith(b"{") and b'"asset"' in head:
        return ("scene_type_mismatch", f"{rel} is a glTF JSON scene, not a binary GLB",
                "rename it to .gltf (and update the manifest), keeping its files beside it")
    what = describe(head)
    return ("scene_format", f"{rel} is {what}, not a glTF scene",
            "point `source` at the scene exported as glTF 2.0 (.glb or .gltf)")


def _audio_problems(path: Path, rel: str, cache: dict[Path, AudioInfo | None]) -> list[_Problem]:
    try:
        cache[path] = probe_audio(path)
    except AudioRejected as exc:
        cache[path] = None
        return [(exc.code, f"{rel} {exc.message}", exc.hint)]
    except OSError as exc:
        cache[path] = None
        return [("file_unreadable", f"{rel} cannot be read: {exc.strerror}", PATH_HINT)]
    return []


def _subtitle_problems(path: Path, rel: str,
                       cache: dict[Path, list[Cue] | None]) -> list[_Problem]:
    cache[path] = None
    if path.stat().st_size > MAX_SUBTITLE_BYTES:
        return [("subtitles_too_large", f"{rel} is over {MAX_SUBTITLE_BYTES:,} bytes",
                 "split the narration, or drop styling and notes from the file")]
    try:
        cache[path] = parse_vtt(path.read_text("utf-8"))
    except UnicodeDecodeError:
        return [("subtitles_invalid", f"{rel} is not UTF-8 text", "save it as UTF-8")]
    except VttError as exc:
        return [("subtitles_invalid", f"{rel}: {exc}",
                 "see https://www.w3.org/TR/webvtt1/ for the cue format")]
    except OSError as exc:
        return [("file_unreadable", f"{rel} cannot be read: {exc.strerror}", PATH_HINT)]
    return []


def _clock(seconds: float) -> str:
    minutes, secs = divmod(seconds, 60)
    return f"{int(minutes):02d}:{secs:06.3f}"


def _timing_issues(tour: Tour, files: dict[str, Path], audio: dict[Path, AudioInfo | None],
                   cues: dict[Path, list[Cue] | None], manifest_file: str) -> list[Issue]:
    """Subtitles whose last cue ends after the shortest of their narration's audio files."""
    issues = []
    for si, stop in enumerate(tour.stops):
        for lang, narration in stop.narration.items():
            sub = files.get(narration.subtitles)
            parsed = cues.get(sub) if sub else None
            infos = [(rel, audio.get(files[rel])) for rel in narration.audio if rel in files]
            measured = [(rel, info) for rel, info in infos if info is not None]
            if not parsed or not measured or len(measured) < len(infos):
                continue  # a missing or broken file is reported on its own
            audio_rel, shortest = min(measured, key=lambda item: item[1].duration_s)
            end = max(cue.end_s for cue in parsed)
            if end > shortest.duration_s + SUBTITLE_TOLERANCE_S:
                issues.append(Issue(
                    "subtitles_past_audio",
                    f"{narration.subtitles} runs to {_clock(end)}, past the end of "
                    f"{audio_rel} at {_clock(shortest.duration_s)}",
                    manifest_file, f"/stops/{si}/narration/{lang}/subtitles", stop=stop.id,
                    hint=f"end the last cue by {_clock(shortest.duration_s)}, or check the "
                         "audio is complete"))
    return issues


__all__ = ["check_tour_files", "scene_dependencies", "asset_reason", "at_file",
           "MAX_SUBTITLE_BYTES"]
