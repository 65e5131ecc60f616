"""The published state a server answers from: tours, anchors, scenes, files and the cell index.

Built once from a catalog file (see `store.build`) and read-only afterwards, so requests
never touch the tour sources. Documents that do not depend on the request are rendered
once here; handlers only pick and serialise.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from tourserver.errors import InvalidRequest, NotFound, TourError
from tourserver.model import cells
from tourserver.model.anchors import anchor_document
from tourserver.model.manifest import Anchor, SceneRef, Stop, Tour, match_language, parse_tour
from tourserver.model.tileset import tileset_document
from tourserver.pipeline.presets import DEFAULT_TIER, TIER_NAMES
from tourserver.store.blobs import BlobRef, BlobStore


@dataclass
class SceneEntry:
    scene: SceneRef
    tour: str
    stop: str
    variants: list[dict]  # ordered as TIERS, each with a "blob"

    def variant(self, tier: str) -> dict:
        for v in self.variants:
            if v["tier"] == tier:
                return v
        raise NotFound(f"scene {self.scene.id!r} has no tier {tier!r}", field="tier")


@dataclass
class AnchorEntry:
    anchor: Anchor
    tour: str
    stop: str
    kind: str  # "stop" or "scene"


@dataclass
class Catalog:
    build_id: str
    blob_store: BlobStore | None
    tours: dict[str, Tour] = field(default_factory=dict)
    tour_files: dict[str, dict[str, BlobRef]] = field(default_factory=dict)
    anchors: dict[str, AnchorEntry] = field(default_factory=dict)
    scenes: dict[str, SceneEntry] = field(default_factory=dict)
    blobs: dict[str, BlobRef] = field(default_factory=dict)  # "<sha>.<ext>" -> ref
    # res -> cell -> {"tours": [...], "stops": [...], "anchors": [...]}
    cell_index: dict[int, dict[str, dict[str, list]]] = field(default_factory=dict)
    stops_by_id: dict[str, tuple[Tour, Stop]] = field(default_factory=dict)
    anchor_scenes: dict[str, list[str]] = field(default_factory=dict)
    # The catalog never changes once loaded, so documents are rendered once. Keys are
    # validated and normalised before use (ids exist, languages matched), which bounds it.
    _rendered: dict[tuple, Rendered] = field(default_factory=dict, repr=False)

    def cached(self, key: tuple, make) -> Rendered:
        hit = self._rendered.get(key)
        if hit is None:
            hit = self._rendered[key] = render(make())
        return hit

    # ---- loading -------------------------------------------------------------------------
    @classmethod
    def from_catalog_json(cls, data: dict, blob_store: BlobStore | None) -> Catalog:
        catalog = cls(build_id=data.get("build_id", "unbuilt"), blob_store=blob_store)
        for entry in data["tours"]:
            tour = parse_tour(entry["manifest"], entry.get("manifest_file"))
            files = {rel: BlobRef.from_json(ref) for rel, ref in entry["files"].items()}
            catalog.add_tour(tour, files, data["scenes"])
        catalog.index_cells()
        return catalog

    def add_tour(self, tour: Tour, files: dict[str, BlobRef], scene_variants: dict) -> None:
        self.tours[tour.id] = tour
        self.tour_files[tour.id] = files
        for ref in files.values():
            self.blobs[ref.name] = ref
        for stop in tour.stops:
            self.stops_by_id[stop.id] = (tour, stop)
            self.anchors.setdefault(stop.anchor.id, AnchorEntry(stop.anchor, tour.id, stop.id,
                                                                "stop"))
            for scene in stop.scenes:
                if scene.anchor.id != stop.anchor.id:
                    self.anchors[scene.anchor.id] = AnchorEntry(scene.anchor, tour.id, stop.id,
                                                                "scene")
                variants = []
                for v in scene_variants.get(scene.id, {}).get("variants", []):
                    ref = BlobRef.from_json(v["blob"])
                    self.blobs[ref.name] = ref
                    variants.append(v)
                self.scenes[scene.id] = SceneEntry(scene, tour.id, stop.id, variants)
                self.anchor_scenes.setdefault(scene.anchor.id, []).append(scene.id)

    def index_cells(self) -> None:
        index: dict[int, dict[str, dict[str, list]]] = {
            res: defaultdict(lambda: {"tours": [], "stops": [], "anchors": []})
            for res in cells.DISCOVERY_RESOLUTIONS}
        for tour in self.tours.values():
            for res in cells.DISCOVERY_RESOLUTIONS:
                tour_cells: set[str] = cells.line_cells(tour.route, res)
                for stop in tour.stops:
                    pose = stop.anchor.pose
                    stop_cells = cells.circle_cells(pose.lat, pose.lon,
                                                    stop.trigger.exit_radius_m, res)
                    tour_cells |= stop_cells
                    for cell in stop_cells:
                        index[res][cell]["stops"].append(stop.id)
                for anchor in tour.anchors():
                    cell = cells.point_cell(anchor.pose.lat, anchor.pose.lon, res)
                    index[res][cell]["anchors"].append(anchor.id)
                    tour_cells.add(cell)
                for cell in tour_cells:
                    index[res][cell]["tours"].append(tour.id)
        self.cell_index = {res: dict(by_cell) for res, by_cell in index.items()}

    # ---- lookups -------------------------------------------------------------------------
    def tour(self, tour_id: str) -> Tour:
        try:
            return self.tours[tour_id]
        except KeyError:
            raise NotFound(f"no tour {tour_id!r}", field="tour_id") from None

    def anchor(self, anchor_id: str) -> AnchorEntry:
        try:
            return self.anchors[anchor_id]
        except KeyError:
            raise NotFound(f"no anchor {anchor_id!r}", field="anchor_id") from None

    def scene(self, scene_id: str) -> SceneEntry:
        try:
            return self.scenes[scene_id]
        except KeyError:
            raise NotFound(f"no scene {scene_id!r}", field="scene_id") from None

    def blob_path(self, name: str) -> tuple[BlobRef, Path]:
        ref = self.blobs.get(name)
        if ref is None or self.blob_store is None:
            raise NotFound(f"no content {name!r}", field="name")
        return ref, self.blob_store.path_for(ref)

    def language(self, tour: Tour, wanted: str | None) -> str | None:
        """None means every language; an unknown one is a 400 naming what is offered."""
        if wanted is None:
            return None
        found = match_language(tour.languages, wanted)
        if found is None:
            raise InvalidRequest(f"language {wanted!r} is not offered; this tour has "
                                 f"{', '.join(tour.languages)}", code="language_unavailable",
                                 field="lang")
        return found

    # ---- documents -----------------------------------------------------------------------
    def anchor_document(self, anchor_id: str) -> dict:
        entry = self.anchor(anchor_id)
        return anchor_document(entry.anchor, tour=entry.tour, stop=entry.stop, kind=entry.kind)

    def scene_document(self, scene_id: str) -> dict:
        entry = self.scene(scene_id)
        return {
            "id": entry.scene.id,
            "title": entry.scene.title,
            "tour": entry.tour,
            "stop": entry.stop,
            "anchor": {"id": entry.scene.anchor.id, "url": f"/v1/anchors/{entry.scene.anchor.id}"},
            "default_tier": DEFAULT_TIER,
            "variants": [self._variant_json(v) for v in entry.variants],
            "links": {"glb": f"/v1/scenes/{scene_id}/glb"},
        }

    @staticmethod
    def _variant_json(v: dict) -> dict:
        ref = BlobRef.from_json(v["blob"])
        return {
            "tier": v["tier"], "lod": v["lod"], "url": ref.url, "sha256": ref.sha256,
            "bytes": ref.bytes, "mime": ref.mime, "triangles": v["triangles"],
            "vertices": v["vertices"], "draw_calls": v["draw_calls"],
            "max_texture_px": v["max_texture_px"],
            "extensions_required": v["extensions_required"],
            "extensions_used": v["extensions_used"],
            "geometric_error": v["geometric_error"],
        }

    def _file(self, tour_id: str, rel: str) -> dict:
        ref = self.tour_files[tour_id][rel]
        return {"url": ref.url, "mime": ref.mime, "bytes": ref.bytes, "sha256": ref.sha256}

    def _stop_json(self, tour: Tour, stop: Stop, lang: str | None) -> dict:
        langs = [lang] if lang else list(stop.narration)
        return {
            "id": stop.id,
            "title": _pick(stop.title, lang, tour.default_language),
            "summary": _pick(stop.summary, lang, tour.default_language),
            "anchor": {"id": stop.anchor.id, "url": f"/v1/anchors/{stop.anchor.id}",
                       "geopose_url": f"/v1/anchors/{stop.anchor.id}/geopose",
                       "geopose": stop.anchor.pose.to_json()},
            "trigger": {"radius_m": stop.trigger.radius_m,
                        "exit_radius_m": stop.trigger.exit_radius_m,
                        "dwell_s": stop.trigger.dwell_s, "level": stop.trigger.level},
            "scenes": [{"id": s.id, "title": _pick(s.title, lang, tour.default_language),
                        "url": f"/v1/scenes/{s.id}", "glb_url": f"/v1/scenes/{s.id}/glb",
                        "anchor_url": f"/v1/anchors/{s.anchor.id}"} for s in stop.scenes],
            "narration": {
                code: {
                    "transcript": stop.narration[code].transcript,
                    "audio": [self._file(tour.id, p) for p in stop.narration[code].audio],
                    "subtitles": self._file(tour.id, stop.narration[code].subtitles),
                }
                for code in langs if code in stop.narration
            },
        }

    def tour_summary(self, tour: Tour, lang: str | None = None) -> dict:
        return {"id": tour.id, "title": _pick(tour.title, lang, tour.default_language),
                "summary": _pick(tour.summary, lang, tour.default_language),
                "languages": list(tour.languages), "stops": len(tour.stops),
                "url": f"/v1/tours/{tour.id}"}

    def tour_document(self, tour_id: str, lang: str | None) -> dict:
        tour = self.tour(tour_id)
        lang = self.language(tour, lang)
        return {
            "id": tour.id,
            "title": _pick(tour.title, lang, tour.default_language),
            "summary": _pick(tour.summary, lang, tour.default_language),
            "languages": list(tour.languages),
            "default_language": tour.default_language,
            "language": lang,
            "timezone": tour.timezone,
            "lights_on": [{"days": list(x.days), "start": x.start, "end": x.end}
                          for x in tour.lights_on],
            "route": {"type": "LineString", "coordinates": [list(c) for c in tour.route]},
            "attribution": list(tour.attribution),
            "stops": [self._stop_json(tour, s, lang) for s in tour.stops],
            "links": {"self": f"/v1/tours/{tour.id}",
                      "tileset": f"/v1/tours/{tour.id}/tileset.json",
                      "pack": f"/v1/tours/{tour.id}/pack",
                      # live events change by the minute: linked, so this stays cacheable
                      "events": f"/v1/events?tour={tour.id}&upcoming=1"},
        }

    def tileset(self, tour_id: str) -> dict:
        tour = self.tour(tour_id)
        scenes = [(s.anchor.pose, self.scenes[s.id].variants) for s in tour.scenes()
                  if self.scenes[s.id].variants]
        if not scenes:
            raise NotFound(f"tour {tour_id!r} has no built scenes", field="tour_id")
        return tileset_document(scenes, lambda v: BlobRef.from_json(v["blob"]).url)

    def cell_rendered(self, cell: str, res: int) -> Rendered:
        if cell in self.cell_index.get(res, {}):
            return self.cached(("cell", cell), lambda: self.cell_document(cell, res))
        return render(self.cell_document(cell, res))  # empty: cheap, and not cached

    def cell_document(self, cell: str, res: int) -> dict:
        hit = self.cell_index.get(res, {}).get(cell, {"tours": [], "stops": [], "anchors": []})
        stops = []
        for stop_id in hit["stops"]:
            tour, stop = self.stops_by_id[stop_id]
            stops.append({"id": stop.id, "tour": tour.id, "title": stop.title,
                          "geopose": stop.anchor.pose.to_json(),
                          "trigger": {"radius_m": stop.trigger.radius_m,
                                      "exit_radius_m": stop.trigger.exit_radius_m,
                                      "dwell_s": stop.trigger.dwell_s,
                                      "level": stop.trigger.level},
                          "url": f"/v1/tours/{tour.id}#stop={stop.id}"})
        anchors = []
        for anchor_id in hit["anchors"]:
            entry = self.anchors[anchor_id]
            anchors.append({"id": anchor_id, "tour": entry.tour, "stop": entry.stop,
                            "kind": entry.kind, "scenes": self.anchor_scenes.get(anchor_id, []),
                            "geopose": entry.anchor.pose.to_json(),
                            "url": f"/v1/anchors/{anchor_id}"})
        return {"cell": cell, "resolution": res,
                "tours": [self.tour_summary(self.tours[t]) for t in hit["tours"]],
                "stops": stops, "anchors": anchors}

    def pack(self, tour_id: str, lang: str | None, tier: str | None) -> dict:
        """Every file a phone needs to run the tour offline, in one language and tier."""
        tour = self.tour(tour_id)
        lang = self.language(tour, lang) or tour.default_language
        tier = tier or DEFAULT_TIER
        if tier not in TIER_NAMES:
            raise InvalidRequest(f"tier {tier!r} is unknown; use one of {', '.join(TIER_NAMES)}",
                                 code="tier_unknown", field="tier")
        files: list[dict] = []

        def document(url: str, body: dict, mime: str) -> None:
            data = json_bytes(body)
            files.append({"url": url, "sha256": hashlib.sha256(data).hexdigest(),
                          "bytes": len(data), "mime": mime, "role": "document"})

        document(f"/v1/tours/{tour.id}?lang={lang}", self.tour_document(tour.id, lang),
                 "application/json")
        for anchor in tour.anchors():
            document(f"/v1/anchors/{anchor.id}", self.anchor_document(anchor.id),
                     "application/json")
        for scene in tour.scenes():
            document(f"/v1/scenes/{scene.id}", self.scene_document(scene.id), "application/json")
            variant = self.scenes[scene.id].variant(tier)
            ref = BlobRef.from_json(variant["blob"])
            files.append({"url": ref.url, "sha256": ref.sha256, "bytes": ref.bytes,
                          "mime": ref.mime, "role": "scene", "scene": scene.id})
        for stop in tour.stops:
            narration = stop.narration.get(lang)
            if narration is None:
                continue
            # The first audio file is the preferred format; fallbacks stay online-only.
            for rel, role in ((narration.audio[0], "audio"), (narration.subtitles, "subtitles")):
                ref = self.tour_files[tour.id][rel]
                files.append({"url": ref.url, "sha256": ref.sha256, "bytes": ref.bytes,
                              "mime": ref.mime, "role": role, "stop": stop.id})
        return {"tour": tour.id, "language": lang, "tier": tier, "build": self.build_id,
                "files": files, "total_bytes": sum(f["bytes"] for f in files),
                "count": len(files)}


def _pick(values: dict[str, str], lang: str | None, default: str) -> dict[str, str]:
    if lang is None:
        return dict(values)
    if lang in values:
        return {lang: values[lang]}
    return {default: values[default]} if default in values else {}


def json_bytes(body: object) -> bytes:
    """Canonical JSON for responses: stable bytes, so ETags and pack hashes agree.
    orjson: about 7x faster than the json module on our larger documents."""
    return orjson.dumps(body, option=orjson.OPT_SORT_KEYS | orjson.OPT_SERIALIZE_NUMPY)


@dataclass(frozen=True)
class Rendered:
    """A response body rendered once, with its strong validator."""

    body: bytes
    etag: str


def render(body: object) -> Rendered:
    data = json_bytes(body)
    return Rendered(data, '"' + hashlib.sha256(data).hexdigest()[:32] + '"')


BUILD_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def load_published(data_root: Path) -> Catalog:
    """The catalog of the current published build in a data directory."""
    from tourserver.store.build import DataDir  # build imports catalog's neighbours only

    build_id = DataDir(data_root).current_build_id()
    if build_id is None:
        raise NotFound(f"nothing is published in {data_root}; run `tourserver build`")
    return load_build(data_root, build_id)


def load_build(data_root: Path, build_id: str) -> Catalog:
    """The catalog of one published build. A missing or damaged catalog file is a
    TourError (code catalog_unreadable) naming it, never a stray KeyError or traceback."""
    from tourserver.store.build import DataDir

    data = DataDir(data_root)
    if not BUILD_ID_RE.match(build_id):  # `current` names a file: no paths in it
        raise TourError(f"{data.current_file} holds {build_id[:80]!r}, not a build id",
                        code="catalog_unreadable")
    path = data.catalog_path(build_id)
    try:
        raw = json.loads(path.read_bytes())
        if not isinstance(raw, dict):
            raise TypeError("not a JSON object")
        return Catalog.from_catalog_json(raw, data.blobs)
    except FileNotFoundError:
        raise TourError(f"no catalog for build {build_id}: {path} is missing",
                        code="catalog_unreadable") from None
    except TourError as exc:  # a manifest in it no longer parses (made by another version)
        raise TourError(f"{path}: {exc.message}",
                        code="catalog_unreadable") from None
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else f"{type(exc).__name__}: {exc}"
        raise TourError(f"{path} cannot be read: {reason}"[:500],
                        code="catalog_unreadable") from None
