"""The tour model: tours, stops, GeoPose anchors, triggers, scenes and narration.

`parse_tour(data, file)` turns an already-decoded manifest (JSON or YAML) into a `Tour`,
or raises `ManifestInvalid` with every problem found (file, field path, reason, hint);
`parse_tour_with_warnings` also returns the warnings (text in a language the tour does not
offer). It does no I/O: checking the referenced files is `ingest.files`' job, and lines and
stop ids are added by `ingest.tours`.
"""

from __future__ import annotations

import difflib
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
SCENE_EXTENSIONS = (".glb", ".gltf")
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


# A value that YAML typed as a number, boolean or null where text is expected: the reader
# (ingest) replaces this with the exact quoted text when it knows it.
QUOTE_HINT = "put the value in quotes so it is read as text"


@cache
def _pattern_hints() -> dict[str, str]:
    defs = tour_schema()["$defs"]
    return {
        defs["hhmm"]["pattern"]: 'write the time as "HH:MM" in quotes, e.g. "09:00"',
        defs["lang"]["pattern"]: 'use a BCP-47 language tag such as "en" or "zh-Hans"',
        defs["id"]["pattern"]: "use lowercase letters, digits and hyphens (at most 63), "
                               "starting with a letter or digit",
    }


def schema_issues(data: Any, file: str | None) -> list[Issue]:
    """Validate against the JSON Schema; one Issue per leaf error, with its field path."""
    validator = jsonschema.Draft202012Validator(tour_schema())
    issues = []
    missing: list[tuple[str, str]] = []  # (object, field) of each missing required field
    for err in sorted(validator.iter_errors(data), key=lambda e: list(map(str, e.absolute_path))):
        # oneOf/anyOf failures are vague; name the most specific sub-error instead.
        best = jsonschema.exceptions.best_match([err]) if err.context else err
        where = _pointer(best.absolute_path)
        required = _REQUIRED_RE.match(best.message) if best.validator == "required" else None
        if err.validator == "oneOf" and "anchor" in map(str, err.absolute_path):
            issues.append(Issue(
                "schema", "an anchor needs either 'geopose', or 'lat' and 'lon' with exactly "
                "one of 'height' (ellipsoidal) or 'altitude_msl'", file, where,
                hint="give the position once: a geopose, or lat, lon and one height"))
        elif best.validator == "additionalProperties" and best.validator_value is False:
            issues.extend(_unknown_fields(best, file, where))
        elif required:
            missing.append((where, required.group(1)))
        else:
            issues.append(Issue("schema", best.message, file, where, hint=_schema_hint(best)))
    # A misspelt required field is one mistake: "did you mean" says it, not "missing" too.
    misspelt = {(i.field.rsplit("/", 1)[0] or "/", i.hint) for i in issues
                if i.code == "unknown_field" and i.field is not None}
    issues.extend(Issue("schema", f"missing field `{name}`", file, where, hint=f"add `{name}`")
                  for where, name in missing if (where, f"rename it to `{name}`") not in misspelt)
    return issues


def _unknown_fields(err: Any, file: str | None, where: str) -> list[Issue]:
    """One issue per unknown key, at the key itself, with the closest allowed name."""
    allowed = sorted(err.schema.get("properties", {}))
    out = []
    for key in sorted(k for k in err.instance if k not in allowed):
        field = f"{'' if where == '/' else where}/{key}"
        close = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.6)
        if close:
            out.append(Issue("unknown_field", f"unknown field `{key}`; did you mean "
                             f"`{close[0]}`?", file, field, hint=f"rename it to `{close[0]}`"))
        else:
            out.append(Issue("unknown_field", f"unknown field `{key}`", file, field,
                             hint=f"remove it; allowed here: {', '.join(allowed)}"))
    return out


_REQUIRED_RE = re.compile(r"^'(.+)' is a required property$")


def _schema_hint(err: Any) -> str | None:
    if err.validator == "type":
        expected = err.validator_value
        expected = [expected] if isinstance(expected, str) else list(expected)
        if "string" in expected and not isinstance(err.instance, (dict, list)):
            return QUOTE_HINT
        if "number" in expected and isinstance(err.instance, str):
            return "write the number without quotes"
    if err.validator == "pattern":
        return _pattern_hints().get(err.validator_value)
    bound = _BOUND_HINTS.get(err.validator)
    if bound:
        return bound.format(err.validator_value)
    if err.validator == "enum":
        return f"use one of: {', '.join(map(str, err.validator_value))}"
    return None


_BOUND_HINTS = {"minimum": "use a value of at least {}", "maximum": "use a value of at most {}",
                "exclusiveMinimum": "use a value above {}",
                "exclusiveMaximum": "use a value below {}"}


def _gcj02_to_wgs84(lat: float, lon: float, where: str, written_on: str, file: str | None,
                    issues: list[Issue]) -> tuple[float, float] | None:
    # Outside the area the conversion is the identity, so the datum there is a mistake.
    if not geo.in_gcj02_area(lat, lon):
        issues.append(Issue(
            "datum_outside_area", f"datum gcj02 ({written_on}) applies only in China, and "
            f"{lat}, {lon} is outside it", file, where,
            hint="remove `datum: gcj02`: coordinates outside China are already WGS84; "
                 "if this is in China, check that lat and lon are not swapped"))
        return None
    return geo.gcj02_to_wgs84(lat, lon)


def _anchor(anchor_id: str, raw: dict, tour_datum: str, where: str, file: str | None,
            issues: list[Issue]) -> Anchor | None:
    datum = raw.get("datum", tour_datum)
    written_on = "on this anchor" if "datum" in raw else "tour-level"
    if "geopose" in raw:
        pos = raw["geopose"]["position"]
        q = raw["geopose"]["quaternion"]
        quat = (float(q["x"]), float(q["y"]), float(q["z"]), float(q["w"]))
        norm = math.sqrt(sum(c * c for c in quat))
        if abs(norm - 1.0) > 1e-3:
            issues.append(Issue("quaternion_not_unit", f"quaternion norm is {norm:.6f}, not 1",
                                file, f"{where}/geopose/quaternion",
                                hint="give a unit quaternion (x, y, z, w); identity is w: 1"))
            return None
        quat = (quat[0] / norm, quat[1] / norm, quat[2] / norm, quat[3] / norm)
        lat, lon = float(pos["lat"]), float(pos["lon"])
        if datum == "gcj02":
            # The GeoPose standard is WGS84, but a position copied from a Chinese web map
            # is not: convert it like the other forms rather than ignore the datum.
            converted = _gcj02_to_wgs84(lat, lon, f"{where}/geopose/position", written_on,
                                        file, issues)
            if converted is None:
                return None
            lat, lon = converted
        pose = GeoPose(lat, lon, float(pos["h"]), quat)
        return Anchor(anchor_id, pose, datum, "ellipsoidal")
    lat, lon = float(raw["lat"]), float(raw["lon"])
    if datum == "gcj02":
        converted = _gcj02_to_wgs84(lat, lon, where, written_on, file, issues)
        if converted is None:
            return None
        lat, lon = converted
    if "height" in raw:
        h, height_kind = float(raw["height"]), "ellipsoidal"
    else:
        h, height_kind = geoid.msl_to_ellipsoidal(lat, lon, float(raw["altitude_msl"])), "msl"
    quat = geo.heading_to_enu_quaternion(float(raw.get("heading", 0.0)))
    return Anchor(anchor_id, GeoPose(lat, lon, h, quat), datum, height_kind)


def _offered_check(texts: dict, languages: tuple[str, ...], where: str, file: str | None,
                   issues: list[Issue]) -> None:
    """Text in a language the tour does not offer is never shown: warn (not an error, as
    it harms nobody), naming the language and the offered ones."""
    for lang in texts:
        if lang not in languages:
            issues.append(Issue(
                "language_not_offered", f"text in {lang}, which the tour does not offer "
                f"(it offers {', '.join(languages)})", file, f"{where}/{lang}",
                hint=f"add {lang} to `languages`, or fix the tag", severity="warning"))


_LANG_RE = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$")


def parse_tour(data: Any, file: str | None = None, expected_id: str | None = None) -> Tour:
    """Check a decoded manifest and build the Tour. Raises ManifestInvalid with all issues
    if any is an error; warnings are dropped (see `parse_tour_with_warnings`)."""
    return parse_tour_with_warnings(data, file, expected_id)[0]


def parse_tour_with_warnings(data: Any, file: str | None = None,
                             expected_id: str | None = None) -> tuple[Tour, list[Issue]]:
    """Like `parse_tour`, and also return the warnings. ManifestInvalid, when raised,
    carries the warnings too, so a creator sees everything at once."""
    issues = schema_issues(data, file)
    if issues:
        raise ManifestInvalid(issues)

    def issue(code: str, message: str, field: str, hint: str | None = None) -> None:
        issues.append(Issue(code, message, file, field, hint=hint))

    if expected_id is not None and data["id"] != expected_id:
        issue("id_mismatch", f"tour id {data['id']!r} must match its folder {expected_id!r}", "/id",
              hint="rename the folder or change `id` so they match")
    languages = tuple(data["languages"])
    default_lang = languages[0]
    try:
        zoneinfo.ZoneInfo(data["timezone"])
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        issue("timezone_unknown", f"unknown IANA time zone {data['timezone']!r}", "/timezone",
              hint="use an IANA name such as Asia/Shanghai or Europe/Paris")
    for key in ("title", "summary"):
        if key in data and default_lang not in data[key]:
            issue("missing_default_language", f"no {key} in the default language {default_lang}",
                  f"/{key}", hint=f"add a {key} in {default_lang} (the first of `languages`)")
        _offered_check(data.get(key, {}), languages, f"/{key}", file, issues)
    tour_datum = data.get("datum", "wgs84")

    route: list[tuple[float, float]] = []
    for i, coord in enumerate(data.get("route", {}).get("coordinates", [])):
        lon, lat = float(coord[0]), float(coord[1])
        if not (-180 <= lon <= 180 and -90 <= lat <= 90):
            issue("coordinate_out_of_range", f"[{lon}, {lat}] is not [longitude, latitude]",
                  f"/route/coordinates/{i}", hint="GeoJSON order is [longitude, latitude]")
            continue
        if tour_datum == "gcj02":
            converted = _gcj02_to_wgs84(lat, lon, f"/route/coordinates/{i}", "tour-level",
                                        file, issues)
            if converted is None:
                continue
            lat, lon = converted
        route.append((lon, lat))

    stop_ids: set[str] = set()
    scene_ids: set[str] = set()
    stops: list[Stop] = []
    for si, raw in enumerate(data["stops"]):
        where = f"/stops/{si}"
        if raw["id"] in stop_ids:
            issue("duplicate_id", f"stop id {raw['id']!r} is used twice", f"{where}/id",
                  hint="give every stop its own id")
        stop_ids.add(raw["id"])
        if default_lang not in raw["title"]:
            issue("missing_default_language", f"no title in {default_lang}", f"{where}/title",
                  hint=f"add a title in {default_lang} (the first of `languages`)")
        for key in ("title", "summary"):
            _offered_check(raw.get(key, {}), languages, f"{where}/{key}", file, issues)
        anchor = _anchor(raw["id"], raw["anchor"], tour_datum, f"{where}/anchor", file, issues)
        trig = raw["trigger"]
        radius = float(trig["radius_m"])
        exit_radius = float(trig.get("exit_radius_m", radius * 1.25))
        if exit_radius < radius:
            issue("trigger_exit_inside", f"exit_radius_m {exit_radius} is smaller than "
                  f"radius_m {radius}", f"{where}/trigger/exit_radius_m",
                  hint="make exit_radius_m at least radius_m, or leave it out (1.25 x)")
        trigger = Trigger(radius, exit_radius, float(trig.get("dwell_s", 0)), trig.get("level"))

        scenes: list[SceneRef] = []
        for ci, scene in enumerate(raw["scenes"]):
            swhere = f"{where}/scenes/{ci}"
            if scene["id"] in scene_ids:
                issue("duplicate_id", f"scene id {scene['id']!r} is used twice", f"{swhere}/id",
                      hint="give every scene its own id")
            scene_ids.add(scene["id"])
            _offered_check(scene.get("title", {}), languages, f"{swhere}/title", file, issues)
            if not scene["source"].lower().endswith(SCENE_EXTENSIONS):
                issue("unsupported_type", f"scene source must be one of "
                      f"{', '.join(SCENE_EXTENSIONS)}", f"{swhere}/source",
                      hint="convert it with `tourserver optimize` (reads .obj, .ply, .stl)")
            scene_anchor = anchor
            if "anchor" in scene:
                # A scene's own anchor is named after the scene: keep it apart from stops'.
                if scene["id"] in {s["id"] for s in data["stops"]}:
                    issue("duplicate_id", f"scene {scene['id']!r} has its own anchor, so its "
                          "id must differ from every stop id", f"{swhere}/id",
                          hint="rename the scene")
                scene_anchor = _anchor(scene["id"], scene["anchor"], tour_datum,
                                       f"{swhere}/anchor", file, issues)
            if scene_anchor is not None:
                scenes.append(SceneRef(scene["id"], dict(scene.get("title", {})),
                                       scene["source"], scene_anchor))

        narration: dict[str, Narration] = {}
        for lang, nar in raw["narration"].items():
            nwhere = f"{where}/narration/{lang}"
            if lang not in languages:
                issue("language_not_offered", f"narration in {lang}, which the tour does not "
                      f"offer (it offers {', '.join(languages)})", nwhere,
                      hint=f"add {lang} to `languages`, or fix the tag")
            for ai, path in enumerate(nar["audio"]):
                if not path.lower().endswith(AUDIO_EXTENSIONS):
                    issue("unsupported_type", f"audio must be one of "
                          f"{', '.join(AUDIO_EXTENSIONS)}", f"{nwhere}/audio/{ai}",
                          hint="encode it as AAC (.m4a) or MP3")
            if not nar["subtitles"].lower().endswith(SUBTITLE_EXTENSIONS):
                issue("unsupported_type", "subtitles must be WebVTT (.vtt)",
                      f"{nwhere}/subtitles", hint="convert them to WebVTT")
            narration[lang] = Narration(lang, nar["transcript"], tuple(nar["audio"]),
                                        nar["subtitles"])
        for lang in languages:
            if lang not in narration:
                issue("missing_narration", f"no narration in {lang}, which the tour offers",
                      f"{where}/narration", hint=f"add narration in {lang}, or remove {lang} "
                      "from `languages`")
        if anchor is not None:
            stops.append(Stop(raw["id"], dict(raw["title"]), dict(raw.get("summary", {})),
                              anchor, trigger, tuple(scenes), narration))

    if any(i.is_error for i in issues):
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
    ), issues


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
