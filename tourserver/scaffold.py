"""`tourserver new`: a new tour folder that validates and builds as it stands.

A commented manifest (tours/<id>/tour.yaml), a placeholder marker scene
(assets/<id>/scenes/marker.glb) and, per language, placeholder narration: about two seconds
of silent MP3 and subtitles that end before it does (assets/<id>/narration/<lang>/). The
creator replaces them one by one, running `tourserver validate` as they go.

Used only by the CLI; it writes files but never prints.
"""

from __future__ import annotations

import json
import re
import zoneinfo
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tourserver.errors import TourError
from tourserver.gltf.document import Document, write_glb

ID_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")  # tour.schema.json#/$defs/id
LANG_RE = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$")  # tour.schema.json#/$defs/lang

# Where a new tour's one stop goes when --at is not given: Jiefangbei, Chongqing, the first
# stop of the bundled demo tour (WGS84, ground about 245 m above sea level).
DEFAULT_PLACE = (29.5600, 106.5734, 245.0)
DEFAULT_TIMEZONE = "Asia/Shanghai"
SILENCE_S = 2.0
SUBTITLE_END_S = 1.5  # before the audio ends: subtitles past the audio are an error

# Placeholder words by primary language subtag: (narration, the stop's title).
PLACEHOLDER_TEXT = {
    "en": ("Replace this with the narration for this stop.", "First stop"),
    "zh": ("请在这里写下这一站的解说词。", "第一站"),
}


class ScaffoldError(TourError):
    code = "scaffold"


@dataclass(frozen=True)
class NewTour:
    """What `tourserver new` was asked for; `altitude_msl` None means "not known"."""

    tour_id: str
    lat: float = DEFAULT_PLACE[0]
    lon: float = DEFAULT_PLACE[1]
    altitude_msl: float | None = DEFAULT_PLACE[2]
    languages: tuple[str, ...] = ("en",)
    title: str | None = None
    timezone: str = DEFAULT_TIMEZONE

    @property
    def stop_id(self) -> str:
        # Stop and scene ids are global across tours: derive them from the tour's id, kept
        # within the id pattern's 63 characters.
        return f"{self.tour_id[:56].rstrip('-')}-stop-1"

    @property
    def scene_id(self) -> str:
        return f"{self.tour_id[:49].rstrip('-')}-marker-1"


def check_request(spec: NewTour) -> None:
    """Refuse what would not validate, naming the option (ScaffoldError, code "usage")."""
    def usage(message: str, field: str) -> ScaffoldError:
        return ScaffoldError(message, code="usage", field=field)

    if not ID_RE.fullmatch(spec.tour_id):
        raise usage(f"tour id {spec.tour_id!r} is not valid: use 1-63 lowercase letters, digits "
                    "and hyphens, starting with a letter or digit (e.g. shanghai-bund)",
                    "TOUR_ID")
    if not spec.languages:
        raise usage("--languages needs at least one language code, e.g. en,zh-Hans",
                    "--languages")
    for lang in spec.languages:
        if not LANG_RE.fullmatch(lang):
            raise usage(f"{lang!r} is not a BCP-47 language code such as en, zh-Hans or pt-BR",
                        "--languages")
    if len(set(spec.languages)) != len(spec.languages):
        raise usage("--languages lists a language twice", "--languages")
    if not (-90 <= spec.lat <= 90 and -180 <= spec.lon <= 180):
        raise usage(f"--at {spec.lat},{spec.lon} is not a place: latitude is -90..90 and "
                    "longitude -180..180, latitude first", "--at")
    if spec.title is not None and (not spec.title.strip() or
                                   any(ord(c) < 32 for c in spec.title)):
        raise usage("--title must be non-empty text on one line", "--title")
    try:
        zoneinfo.ZoneInfo(spec.timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise usage(f"{spec.timezone!r} is not an IANA time zone such as Europe/Paris",
                    "--timezone") from None


def scaffold_files(spec: NewTour) -> dict[str, bytes]:
    """Every file of the new tour, by path relative to the content root."""
    check_request(spec)
    tid, stop = spec.tour_id, spec.stop_id
    files = {f"tours/{tid}/tour.yaml": manifest_text(spec).encode(),
             f"assets/{tid}/scenes/marker.glb": marker_glb()}
    audio = silent_mp3(SILENCE_S)
    for lang in spec.languages:
        base = f"assets/{tid}/narration/{lang}/{stop}"
        files[f"{base}.mp3"] = audio
        files[f"{base}.vtt"] = subtitles(_placeholder(lang), SUBTITLE_END_S).encode()
    return files


def write_tour(root: Path, files: dict[str, bytes]) -> list[Path]:
    """Write the files under root, never over an existing one; all or nothing."""
    tour_dir = (root / next(p for p in files if p.endswith("tour.yaml"))).parent
    if tour_dir.exists():
        raise ScaffoldError(f"{tour_dir} already exists; nothing was written (choose another "
                            "id, or remove that folder first)", code="tour_exists")
    clash = [rel for rel in files if (root / rel).exists()]
    if clash:
        raise ScaffoldError(f"{root / clash[0]} already exists; nothing was written",
                            code="tour_exists")
    written: list[Path] = []
    made_dirs: list[Path] = []
    try:
        for rel, data in files.items():
            path = root / rel
            for parent in reversed(path.parents):
                if not parent.exists():
                    parent.mkdir()
                    made_dirs.append(parent)
            with open(path, "xb") as fh:  # x: never replace a file that appeared meanwhile
                written.append(path)
                fh.write(data)
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        for folder in reversed(made_dirs):
            try:
                folder.rmdir()
            except OSError:
                pass
        raise
    return written


def _placeholder(lang: str, which: int = 0) -> str:
    return PLACEHOLDER_TEXT.get(lang.split("-")[0].lower(), PLACEHOLDER_TEXT["en"])[which]


def _q(text: str) -> str:
    """A YAML double-quoted scalar (JSON strings are valid YAML): never read as a number,
    a date, a time or a boolean, whatever a creator types (`no`, `19:00`, `on`)."""
    return json.dumps(text, ensure_ascii=False)


def _num(value: float) -> str:
    return f"{value:.6f}".rstrip("0").rstrip(".") if value % 1 else f"{value:.0f}"


def _c(text: str, comment: str = "", column: int = 34) -> str:
    """A manifest line with its comment lined up in one column."""
    if not comment:
        return text
    return f"{text.ljust(column - 1)} # {comment}"


def manifest_text(spec: NewTour) -> str:
    """The commented tour.yaml: every field with a short comment on what it means."""
    tid, stop, langs = spec.tour_id, spec.stop_id, spec.languages
    title = spec.title or tid.replace("-", " ").capitalize()
    # The route runs from the stop 55 m north, to show its [lon, lat] order.
    north = spec.lat + 0.0005 if spec.lat <= 89.9 else spec.lat - 0.0005
    if spec.altitude_msl is None:
        altitude = _c("      altitude_msl: 0", "TODO: the ground height above sea level "
                      "here, metres (0 is right only at the coast)")
    else:
        altitude = _c(f"      altitude_msl: {_num(spec.altitude_msl)}",
                      "ground height above mean sea level, metres (not ellipsoidal)")

    def per_language(indent: str, text: str | None) -> list[str]:
        return [f"{indent}{_q(lang)}: {_q(text or _placeholder(lang, 1))}" for lang in langs]

    lines = [
        f"# A tourserver tour, made by `tourserver new {tid}`.",
        "# Every field is described in tourserver/model/tour.schema.json (also served at",
        "# /v1/schema/tour.json). Paths are relative to the content root: the folder that",
        "# holds tours/ and assets/. Check your edits with `tourserver validate`, publish them",
        "# with `tourserver build`. Quote text YAML could read as something else:",
        '# "19:00", "no", "on", "1.0".',
        "",
        _c("schema_version: 1", "the manifest format; 1 is the only one so far"),
        _c(f"id: {tid}", f"the folder's name: tours/{tid}/"),
        _c("title:", "the tour's name, one entry per language offered"),
        *per_language("  ", title),
        _c("summary:", "optional: a sentence for the list of tours"),
        *per_language("  ", "One line about this tour."),
        _c(f"languages: [{', '.join(_q(lang) for lang in langs)}]",
           "BCP-47 codes; the first is the default"),
        _c(f"timezone: {_q(spec.timezone)}", "IANA time zone of lights_on"),
        _c("lights_on:", "optional: when the night scenes are lit, local time"),
        "  - days: [mon, tue, wed, thu, fri, sat, sun]",
        _c('    start: "19:00"', "quoted: YAML reads an unquoted 19:00 as a number"),
        _c('    end: "23:30"', "an end before the start runs past midnight"),
        _c("route:", "optional: the walking route, a GeoJSON LineString"),
        "  type: LineString",
        _c("  coordinates:", "[longitude, latitude]: longitude FIRST (GeoJSON order)"),
        f"    - [{_num(spec.lon)}, {_num(spec.lat)}]",
        f"    - [{_num(spec.lon)}, {_num(north)}]",
        _c("attribution:", "who made each part, and its licence (at least one)"),
        '  - what: "placeholder scene and narration made by tourserver new"',
        "    author: \"the tour's authors\"",
        _c("    license: CC0-1.0", "an SPDX licence identifier"),
        _c("stops:", "in walking order"),
        _c(f"  - id: {stop}", "unique among all tours on the server"),
        "    title:",
        *per_language("      ", None),
        _c("    anchor:", "where the scene's origin sits, WGS84"),
        _c(f"      lat: {_num(spec.lat)}", "latitude, degrees north (-90..90)"),
        _c(f"      lon: {_num(spec.lon)}", "longitude, degrees east (-180..180)"),
        _c("      heading: 0", "compass bearing the scene's -Z axis faces: 0 north, 90 east"),
        altitude,
        _c("      # datum: gcj02", "add if lat/lon were copied from a Chinese web map"),
        _c("    trigger:", "the geofence that starts this stop on the phone"),
        _c("      radius_m: 40", "starts within this many metres"),
        _c("      exit_radius_m: 60", "ends only beyond this distance"),
        _c("      dwell_s: 3", "seconds inside before it starts"),
        _c("    scenes:", ".glb, or .gltf with its files: origin on the ground at the"),
        _c(f"      - id: {spec.scene_id}", "anchor, metres, +Y up, -Z facing the heading"),
        f"        source: assets/{tid}/scenes/marker.glb",
        _c("    narration:", "per language: the words, the audio and its subtitles"),
    ]
    for lang in langs:
        base = f"assets/{tid}/narration/{lang}/{stop}"
        lines += [
            f"      {_q(lang)}:",
            f"        transcript: {_q(_placeholder(lang))}",
            _c("        audio:", "best first: AAC in .m4a, then MP3; checked by content"),
            f"          - {base}.mp3",
            _c(f"        subtitles: {base}.vtt", "WebVTT, ending before the audio does"),
        ]
    return "\n".join(lines) + "\n"


def subtitles(text: str, end_s: float) -> str:
    """A WebVTT file with one cue from 0 to end_s."""
    total_ms = round(end_s * 1000)
    return (f"WEBVTT\n\n00:00:00.000 --> 00:00:{total_ms // 1000:02d}.{total_ms % 1000:03d}\n"
            f"{text}\n")


def silent_mp3(seconds: float) -> bytes:
    """Silence as MPEG-1 Layer III: 48 kHz mono frames at 32 kbit/s (96 bytes, 24 ms each).
    With zeroed side info a frame carries no Huffman data, which decoders play as silence."""
    header = bytes([0xFF, 0xFB,  # sync, MPEG-1, Layer III, no CRC
                    0x14,  # bitrate index 1 (32 kbit/s), 48 kHz, no padding
                    0xC4])  # mono, not copyrighted, original
    frame = header + bytes(144 * 32000 // 48000 - len(header))
    return frame * round(seconds * 48000 / 1152)


def marker_glb() -> bytes:
    """A small glowing marker: a 2.2 m post at the origin and an arrow on the ground pointing
    along -Z, so the scene shows where its anchor is and which way `heading` turns it."""
    quads = []

    def box(x0, x1, y0, y1, z0, z1):
        p = np.array([[x, y, z] for x in (x0, x1) for y in (y0, y1) for z in (z0, z1)])
        # Each face's corners counter-clockwise seen from outside.
        for face in ((1, 3, 7, 5), (0, 4, 6, 2), (2, 6, 7, 3), (0, 1, 5, 4), (4, 5, 7, 6),
                     (0, 2, 3, 1)):
            quads.append(p[list(face)])

    box(-0.08, 0.08, 0.0, 2.2, -0.08, 0.08)
    y = 0.02  # just above the ground, facing up
    shaft = np.array([[-0.1, y, 0.0], [0.1, y, 0.0], [0.1, y, -0.8], [-0.1, y, -0.8]])
    quads.append(shaft)
    head = np.array([[-0.35, y, -0.8], [0.35, y, -0.8], [0.0, y, -1.4]])
    positions: list[np.ndarray] = []
    normals: list[np.ndarray] = []
    indices: list[int] = []
    for poly in [*quads, head]:
        normal = np.cross(poly[1] - poly[0], poly[2] - poly[0])
        normal /= np.linalg.norm(normal)
        base = len(positions)
        positions.extend(poly)
        normals.extend([normal] * len(poly))
        for k in range(1, len(poly) - 1):
            indices.extend((base, base + k, base + k + 1))
    pos = np.asarray(positions, dtype="<f4")
    nrm = np.asarray(normals, dtype="<f4")
    idx = np.asarray(indices, dtype="<u2")
    idx_bytes = idx.tobytes() + bytes(-idx.nbytes % 4)
    blob = pos.tobytes() + nrm.tobytes() + idx_bytes
    doc_json = {
        "asset": {"version": "2.0", "generator": "tourserver new"},
        "scene": 0,
        "scenes": [{"name": "marker", "nodes": [0]}],
        "nodes": [{"name": "marker", "mesh": 0}],
        "meshes": [{"name": "marker", "primitives": [
            {"attributes": {"POSITION": 0, "NORMAL": 1}, "indices": 2, "material": 0}]}],
        "materials": [{"name": "marker", "pbrMetallicRoughness": {
            "baseColorFactor": [1.0, 0.55, 0.1, 1.0], "metallicFactor": 0.0,
            "roughnessFactor": 0.6}, "emissiveFactor": [1.0, 0.45, 0.05]}],
        "buffers": [{"byteLength": len(blob)}],
        "bufferViews": [
            {"buffer": 0, "byteOffset": 0, "byteLength": pos.nbytes, "target": 34962},
            {"buffer": 0, "byteOffset": pos.nbytes, "byteLength": nrm.nbytes, "target": 34962},
            {"buffer": 0, "byteOffset": pos.nbytes + nrm.nbytes, "byteLength": idx.nbytes,
             "target": 34963}],
        "accessors": [
            {"bufferView": 0, "componentType": 5126, "count": len(pos), "type": "VEC3",
             "min": pos.min(axis=0).tolist(), "max": pos.max(axis=0).tolist()},
            {"bufferView": 1, "componentType": 5126, "count": len(nrm), "type": "VEC3"},
            {"bufferView": 2, "componentType": 5123, "count": len(idx), "type": "SCALAR"}],
    }
    return write_glb(Document(doc_json, blob))
