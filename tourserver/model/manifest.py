"""The tour model: tours, stops, GeoPose anchors, triggers, scenes and narration.

`parse_tour(data, file)` turns an already-decoded manifest (JSON or YAML) into a `Tour`,
or raises `ManifestInvalid` with every problem found (file, field path, reason). It does no
I/O: checking that the referenced files exist is `ingest.tours`' job.
"""

from __future__ import annotations

import json
import math
import re
import zoneinfo
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import jsonschema

from tourserver.errors import Issue, ManifestInvalid
from tourserver.model import geo, geoid

SCHEMA_VERSION = 1
SCENE_EXTENSIONS = (".glb",)
AUDIO_EXTENSIONS = (".m4a", ".mp3")
SUBTITLE_EXTENSIONS = (".vtt",)


@dataclass(frozen=True)
class GeoPose:
    """OGC GeoPose 1.0 Basic-Quaternion: WGS84 position, orientation relative to local ENU."""

    lat: float
    lon: float
    h: float  # ellipsoidal height, metres
    quaternion: tuple[float, float, float, float]  # x, y, z, w

    def to_json(self) -> dict:
        x, y, z, w = self.quaternion
        return {
            "position": {"lat": self.lat, "lon": self.lon, "h": self.h},
            "quaternion": {"x": x, "y": y, "z": z, "w": w},
        }


@dataclass(frozen=True)
class Anchor:
    id: str
    pose: GeoPose
    input_datum: str  # what the creator wrote: "wgs84" or "gcj02"
    input_height: str  # "ellipsoidal" or "msl"


@dataclass(frozen=True)
class Trigger:
    radius_m: float
    exit_radius_m: float
    dwell_s: float
    level: str | None


@dataclass(frozen=True)
class SceneRef:
    id: str
    title: dict[str, str]
    source: str  # path relative to the content root
    anchor: Anchor


@dataclass(frozen=True)
class Narration:
    lang: str
    transcript: str
    audio: tuple[str, ...]
    subtitles: str


@dataclass(frozen=True)
class Stop:
    id: str
    title: dict[str, str]
    summary: dict[str, str]
    anchor: Anchor
    trigger: Trigger
    scenes: tuple[SceneRef, ...]
    narration: dict[str, Narration]


@dataclass(frozen=True)
class LightsOn:
    days: tuple[str, ...]
    start: str
    end: str


@dataclass(frozen=True)
class Tour:
    id: str
    title: dict[str, str]
    summary: dict[str, str]
    languages: tuple[str, ...]
    timezone: str
    lights_on: tuple[LightsOn, ...]
    route: tuple[tuple[float, float], ...]  # (lon, lat) WGS84
    attribution: tuple[dict, ...]
    stops: tuple[Stop, ...]

    @property
    def default_language(self) -> str:
        return self.languages[0]

    def anchors(self) -> list[Anchor]:
        """Every distinct anchor: each stop's, and each scene's own where it has one."""
        seen: dict[str, Anchor] = {}
        for stop in self.stops:
            seen.setdefault(stop.anchor.id, stop.anchor)
            for scene in stop.scenes:
                seen.setdefault(scene.anchor.id, scene.anchor)
        return list(seen.values())

    def scenes(self) -> list[SceneRef]:
        return [scene for stop in self.stops for scene in stop.scenes]


@cache
def tour_schema() -> dict:
    """The published JSON Schema for tour manifests."""
    text = resources.files("tourserver.model").joinpath("tour.schema.json").read_text("utf-8")
    return json.loads(text)


def _pointer(path: Any) -> str:
    return "/" + "/".join(str(p) for p in path) if path else "/"


def schema_issues(data: Any, file: str | None) -> list[Issue]:
    """Validate against the JSON Schema; one Issue per leaf error, with its field path."""
    validator = jsonschema.Draft202012Validator(tour_schema())
    issues = []
    for err in sorted(validator.iter_errors(data), key=lambda e: list(map(str, e.absolute_path))):
        # oneOf/anyOf failures are vague; name the most specific sub-error instead.
        best = jsonschema.exceptions.best_match([err]) if err.context else err
        message = best.message
        if err.validator == "oneOf" and "anchor" in map(str, err.absolute_path):
            message = (
                "an anchor needs either 'geopose', or 'lat' and 'lon' with exactly one of "
                "'height' (ellipsoidal) or 'altitude_msl'"
            )
        issues.append(Issue("schema", message, file, _pointer(best.absolute_path)))
    return issues


def _anchor(anchor_id: str, raw: dict, tour_datum: str, where: str, file: str | None,
            issues: list[Issue]) -> Anchor | None:
    if "geopose" in raw:
        pos = raw["geopose"]["position"]
        q = raw["geopose"]["quaternion"]
        quat = (float(q["x"]), float(q["y"]), float(q["z"]), float(q["w"]))
        norm = math.sqrt(sum(c * c for c in quat))
        if abs(norm - 1.0) > 1e-3:
            issues.append(Issue("quaternion_not_unit", f"quaternion norm is {norm:.6f}, not 1",
                                file, f"{where}/geopose/quaternion"))
            return None
        quat = tuple(c / norm for c in quat)
        pose = GeoPose(float(pos["lat"]), float(pos["lon"]), float(pos["h"]), quat)
        return Anchor(anchor_id, pose, "wgs84", "ellipsoidal")
    lat, lon = float(raw["lat"]), float(raw["lon"])
    datum = raw.get("datum", tour_datum)
    if datum == "gcj02":
        lat, lon = geo.gcj02_to_wgs84(lat, lon)
    if "height" in raw:
        h, height_kind = float(raw["height"]), "ellipsoidal"
    else:
        h, height_kind = geoid.msl_to_ellipsoidal(lat, lon, float(raw["altitude_msl"])), "msl"
    quat = geo.heading_to_enu_quaternion(float(raw.get("heading", 0.0)))
    return Anchor(anchor_id, GeoPose(lat, lon, h, tuple(quat)), datum, height_kind)


_LANG_RE = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$")


def parse_tour(data: Any, file: str | None = None, expected_id: str | None = None) -> Tour:
    """Check a decoded manifest and build the Tour. Raises ManifestInvalid with all issues."""
    issues = schema_issues(data, file)
    if issues:
        raise ManifestInvalid(issues)

    def issue(code: str, message: str, field: str) -> None:
        issues.append(Issue(code, message, file, field))

    if expected_id is not None and data["id"] != expected_id:
        issue("id_mismatch", f"tour id {data['id']!r} must match its folder {expected_id!r}", "/id")
    languages = tuple(data["languages"])
    default_lang = languages[0]
    try:
        zoneinfo.ZoneInfo(data["timezone"])
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        issue("timezone_unknown", f"unknown IANA time zone {data['timezone']!r}", "/timezone")
    for key in ("title", "summary"):
        if key in data and default_lang not in data[key]:
            issue("missing_default_language", f"no {key} in the default language {default_lang}",
                  f"/{key}")
    tour_datum = data.get("datum", "wgs84")

    route: list[tuple[float, float]] = []
    for i, coord in enumerate(data.get("route", {}).get("coordinates", [])):
        lon, lat = float(coord[0]), float(coord[1])
        if not (-180 <= lon <= 180 and -90 <= lat <= 90):
            issue("coordinate_out_of_range", f"[{lon}, {lat}] is not [longitude, latitude]",
                  f"/route/coordinates/{i}")
            continue
        if tour_datum == "gcj02":
            lat, lon = geo.gcj02_to_wgs84(lat, lon)
        route.append((lon, lat))

    stop_ids: set[str] = set()
    scene_ids: set[str] = set()
    stops: list[Stop] = []
    for si, raw in enumerate(data["stops"]):
        where = f"/stops/{si}"
        if raw["id"] in stop_ids:
            issue("duplicate_id", f"stop id {raw['id']!r} is used twice", f"{where}/id")
        stop_ids.add(raw["id"])
        if default_lang not in raw["title"]:
            issue("missing_default_language", f"no title in {default_lang}", f"{where}/title")
        anchor = _anchor(raw["id"], raw["anchor"], tour_datum, f"{where}/anchor", file, issues)
        trig = raw["trigger"]
        radius = float(trig["radius_m"])
        exit_radius = float(trig.get("exit_radius_m", radius * 1.25))
        if exit_radius < radius:
            issue("trigger_exit_inside", f"exit_radius_m {exit_radius} is smaller than "
                  f"radius_m {radius}", f"{where}/trigger/exit_radius_m")
        trigger = Trigger(radius, exit_radius, float(trig.get("dwell_s", 0)), trig.get("level"))

        scenes: list[SceneRef] = []
        for ci, scene in enumerate(raw["scenes"]):
            swhere = f"{where}/scenes/{ci}"
            if scene["id"] in scene_ids:
                issue("duplicate_id", f"scene id {scene['id']!r} is used twice", f"{swhere}/id")
            scene_ids.add(scene["id"])
            if not scene["source"].lower().endswith(SCENE_EXTENSIONS):
                issue("unsupported_type", f"scene source must be one of {SCENE_EXTENSIONS}",
                      f"{swhere}/source")
            scene_anchor = anchor
            if "anchor" in scene:
                # A scene's own anchor is named after the scene: keep it apart from stops'.
                if scene["id"] in {s["id"] for s in data["stops"]}:
                    issue("duplicate_id", f"scene {scene['id']!r} has its own anchor, so its "
                          "id must differ from every stop id", f"{swhere}/id")
                scene_anchor = _anchor(scene["id"], scene["anchor"], tour_datum,
                                       f"{swhere}/anchor", file, issues)
            if scene_anchor is not None:
                scenes.append(SceneRef(scene["id"], dict(scene.get("title", {})),
                                       scene["source"], scene_anchor))

        narration: dict[str, Narration] = {}
        for lang, nar in raw["narration"].items():
            nwhere = f"{where}/narration/{lang}"
            if lang not in languages:
                issue("language_not_offered", f"{lang} is not in the tour's languages",
                      nwhere)
            for ai, path in enumerate(nar["audio"]):
                if not path.lower().endswith(AUDIO_EXTENSIONS):
                    issue("unsupported_type", f"audio must be one of {AUDIO_EXTENSIONS}",
                          f"{nwhere}/audio/{ai}")
            if not nar["subtitles"].lower().endswith(SUBTITLE_EXTENSIONS):
                issue("unsupported_type", "subtitles must be WebVTT (.vtt)",
                      f"{nwhere}/subtitles")
            narration[lang] = Narration(lang, nar["transcript"], tuple(nar["audio"]),
                                        nar["subtitles"])
        for lang in languages:
            if lang not in narration:
                issue("missing_narration", f"no narration in {lang}, which the tour offers",
                      f"{where}/narration")
        if anchor is not None:
            stops.append(Stop(raw["id"], dict(raw["title"]), dict(raw.get("summary", {})),
                              anchor, trigger, tuple(scenes), narration))

    if issues:
        raise ManifestInvalid(issues)
    return Tour(
        id=data["id"],
        title=dict(data["title"]),
        summary=dict(data.get("summary", {})),
        languages=languages,
        timezone=data["timezone"],
        lights_on=tuple(LightsOn(tuple(x["days"]), x["start"], x["end"])
                        for x in data.get("lights_on", [])),
        route=tuple(route),
        attribution=tuple(dict(a) for a in data["attribution"]),
        stops=tuple(stops),
    )


def asset_paths(tour: Tour) -> list[tuple[str, str]]:
    """Every file a tour references, with the field path that names it."""
    out: list[tuple[str, str]] = []
    for si, stop in enumerate(tour.stops):
        for ci, scene in enumerate(stop.scenes):
            out.append((scene.source, f"/stops/{si}/scenes/{ci}/source"))
        for lang, nar in stop.narration.items():
            for ai, path in enumerate(nar.audio):
                out.append((path, f"/stops/{si}/narration/{lang}/audio/{ai}"))
            out.append((nar.subtitles, f"/stops/{si}/narration/{lang}/subtitles"))
    return out


def match_language(offered: tuple[str, ...], wanted: str) -> str | None:
    """BCP-47 lookup (RFC 4647 §3.4): exact tag, then progressively shorter prefixes."""
    if not _LANG_RE.match(wanted):
        return None
    lower = {tag.lower(): tag for tag in offered}
    tag = wanted.lower()
    while tag:
        if tag in lower:
            return lower[tag]
        # 'zh' should also find 'zh-Hans': pick the first offered tag extending the prefix.
        for off_lower, off in lower.items():
            if off_lower.startswith(tag + "-"):
                return off
        tag = tag.rpartition("-")[0]
    return None
