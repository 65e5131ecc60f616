"""The published state a server answers from: tours, anchors, scenes, files and the cell index.

Loaded from a build's artifacts (see `store.artifacts`: tours already checked and parsed,
cells already indexed) and read-only afterwards, so requests never touch the tour sources
and a worker never re-validates a manifest. Documents that do not depend on the request
are rendered once per process, on first use, with their links (see `Links`); handlers
only pick and serialise.
"""

from __future__ import annotations

import contextlib
import gc
import gzip
import hashlib
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from tourserver.errors import InvalidRequest, NotFound, TourError
from tourserver.model import cells
from tourserver.model.anchors import anchor_document
from tourserver.model.manifest import Anchor, SceneRef, Stop, Tour, match_language
from tourserver.model.tileset import tileset_document
from tourserver.pipeline.presets import DEFAULT_TIER, TIER_NAMES
from tourserver.store import artifacts
from tourserver.store.blobs import BlobRef, BlobStore


@dataclass(frozen=True)
class Links:
    """Where the links in documents point. `content_base` is where /c/<sha256>.<ext> files
    are (a CDN, say "https://cdn.example.org/c/"); `api_base` is put before API paths
    (say "https://tours.example.org": /v1/anchors/x becomes https://tours.example.org/v1/
    anchors/x). The defaults give the relative links a single server needs."""

    content_base: str = "/c/"
    api_base: str = ""

    def __post_init__(self) -> None:
        # One spelling of each base, so a link never has "//" or lacks its "/".
        object.__setattr__(self, "content_base", self.content_base.rstrip("/") + "/")
        object.__setattr__(self, "api_base", self.api_base.rstrip("/"))

    def content(self, name: str) -> str:
        """The URL of the content file `name` ("<sha256>.<ext>")."""
        return self.content_base + name

    def api(self, path: str) -> str:
        """The URL of the API path `path` (starting with "/")."""
        return self.api_base + path


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
    links: Links = field(default_factory=Links)
    tours: dict[str, Tour] = field(default_factory=dict)
    tour_files: dict[str, dict[str, BlobRef]] = field(default_factory=dict)
    anchors: dict[str, AnchorEntry] = field(default_factory=dict)
    scenes: dict[str, SceneEntry] = field(default_factory=dict)
    blobs: dict[str, BlobRef] = field(default_factory=dict)  # "<sha>.<ext>" -> ref
    # res -> cell -> (tours, stops, anchors) as positions in the three lists below
    cell_index: dict[int, dict[str, cells.CellHits]] = field(default_factory=dict)
    anchor_scenes: dict[str, list[str]] = field(default_factory=dict)
    # Numbered as model.cells.index_tours numbers them: tours in order, stops in tour and
    # stop order, anchors in tour and Tour.anchors() order (first use of an id).
    numbered_tours: list[Tour] = field(default_factory=list, repr=False)
    numbered_stops: list[tuple[Tour, Stop]] = field(default_factory=list, repr=False)
    numbered_anchors: list[AnchorEntry] = field(default_factory=list, repr=False)
    # The catalog never changes once loaded, so documents are rendered once. Keys are
    # validated and normalised before use (ids exist, languages matched), which bounds it.
    _rendered: dict[tuple, Rendered] = field(default_factory=dict, repr=False)

    def cached(self, key: tuple, make: Callable[[], object]) -> Rendered:
        hit = self._rendered.get(key)
        if hit is None:
            hit = self._rendered[key] = render(make(), compress=True)
        return hit

    # ---- loading -------------------------------------------------------------------------
    @classmethod
    def from_tours(cls, build_id: str, blob_store: BlobStore | None, tours: Sequence[Tour],
                   files: dict[str, dict[str, BlobRef]], scenes: dict, *,
                   cell_index: dict[int, dict[str, cells.CellHits]] | None = None,
                   links: Links | None = None) -> Catalog:
        """A catalog of parsed tours. `scenes` is the build's scene id -> {"variants"};
        `cell_index` as `model.cells.index_tours(tours)` gives it (computed if None)."""
        catalog = cls(build_id=build_id, blob_store=blob_store, links=links or Links())
        for tour in tours:
            catalog.add_tour(tour, files.get(tour.id, {}), scenes)
        catalog.cell_index = cell_index if cell_index is not None else cells.index_tours(tours)
        return catalog

    def add_tour(self, tour: Tour, files: dict[str, BlobRef], scene_variants: dict) -> None:
        """Add a tour (the cell index is the caller's: see from_tours)."""
        self.tours[tour.id] = tour
        self.numbered_tours.append(tour)
        self.tour_files[tour.id] = files
        for ref in files.values():
            self.blobs[ref.name] = ref
        for stop in tour.stops:
            self.numbered_stops.append((tour, stop))
            self._add_anchor(stop.anchor, tour.id, stop.id, "stop")
            for scene in stop.scenes:
                if scene.anchor.id != stop.anchor.id:
                    self._add_anchor(scene.anchor, tour.id, stop.id, "scene")
                variants = []
                for v in scene_variants.get(scene.id, {}).get("variants", []):
                    ref = BlobRef.from_json(v["blob"])
                    self.blobs[ref.name] = ref
                    variants.append(v)
                self.scenes[scene.id] = SceneEntry(scene, tour.id, stop.id, variants)
                self.anchor_scenes.setdefault(scene.anchor.id, []).append(scene.id)

    def _add_anchor(self, anchor: Anchor, tour: str, stop: str, kind: str) -> None:
        if anchor.id not in self.anchors:  # ids are unique across tours (the build checks)
            entry = self.anchors[anchor.id] = AnchorEntry(anchor, tour, stop, kind)
            self.numbered_anchors.append(entry)

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
        doc = anchor_document(entry.anchor, tour=entry.tour, stop=entry.stop, kind=entry.kind)
        # model.anchors writes API paths; where they point is the serving side's choice
        doc["links"] = {name: self.links.api(path) for name, path in doc["links"].items()}
        return doc

    def content_url(self, ref: BlobRef) -> str:
        """Where clients fetch a content file (the /v1/scenes/{id}/glb redirect uses it)."""
        return self.links.content(ref.name)

    def scene_document(self, scene_id: str) -> dict:
        entry = self.scene(scene_id)
        return {
            "id": entry.scene.id,
            "title": entry.scene.title,
            "tour": entry.tour,
            "stop": entry.stop,
            "anchor": {"id": entry.scene.anchor.id,
                       "url": self.links.api(f"/v1/anchors/{entry.scene.anchor.id}")},
            "default_tier": DEFAULT_TIER,
            "variants": [self._variant_json(v) for v in entry.variants],
            "links": {"glb": self.links.api(f"/v1/scenes/{scene_id}/glb")},
        }

    def _variant_json(self, v: dict) -> dict:
        ref = BlobRef.from_json(v["blob"])
        return {
            "tier": v["tier"], "lod": v["lod"], "url": self.content_url(ref),
            "sha256": ref.sha256,
            "bytes": ref.bytes, "mime": ref.mime, "triangles": v["triangles"],
            "vertices": v["vertices"], "draw_calls": v["draw_calls"],
            "max_texture_px": v["max_texture_px"],
            "extensions_required": v["extensions_required"],
            "extensions_used": v["extensions_used"],
            "geometric_error": v["geometric_error"],
        }

    def _file(self, tour_id: str, rel: str) -> dict:
        ref = self.tour_files[tour_id][rel]
        return {"url": self.content_url(ref), "mime": ref.mime, "bytes": ref.bytes,
                "sha256": ref.sha256}

    def _stop_json(self, tour: Tour, stop: Stop, lang: str | None) -> dict:
        langs = [lang] if lang else list(stop.narration)
        api = self.links.api
        return {
            "id": stop.id,
            "title": _pick(stop.title, lang, tour.default_language),
            "summary": _pick(stop.summary, lang, tour.default_language),
            "anchor": {"id": stop.anchor.id, "url": api(f"/v1/anchors/{stop.anchor.id}"),
                       "geopose_url": api(f"/v1/anchors/{stop.anchor.id}/geopose"),
                       "geopose": stop.anchor.pose.to_json()},
            "trigger": {"radius_m": stop.trigger.radius_m,
                        "exit_radius_m": stop.trigger.exit_radius_m,
                        "dwell_s": stop.trigger.dwell_s, "level": stop.trigger.level},
            "scenes": [{"id": s.id, "title": _pick(s.title, lang, tour.default_language),
                        "url": api(f"/v1/scenes/{s.id}"), "glb_url": api(f"/v1/scenes/{s.id}/glb"),
                        "anchor_url": api(f"/v1/anchors/{s.anchor.id}")} for s in stop.scenes],
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
                "url": self.links.api(f"/v1/tours/{tour.id}")}

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
            "links": {"self": self.links.api(f"/v1/tours/{tour.id}"),
                      "tileset": self.links.api(f"/v1/tours/{tour.id}/tileset.json"),
                      "pack": self.links.api(f"/v1/tours/{tour.id}/pack"),
                      # live events change by the minute: linked, so this stays cacheable
                      "events": self.links.api(f"/v1/events?tour={tour.id}&upcoming=1")},
        }

    def tileset(self, tour_id: str) -> dict:
        tour = self.tour(tour_id)
        scenes = [(s.anchor.pose, self.scenes[s.id].variants) for s in tour.scenes()
                  if self.scenes[s.id].variants]
        if not scenes:
            raise NotFound(f"tour {tour_id!r} has no built scenes", field="tour_id")
        return tileset_document(scenes, lambda v: self.content_url(BlobRef.from_json(v["blob"])))

    def cell_rendered(self, cell: str, res: int) -> Rendered:
        if cell in self.cell_index.get(res, {}):
            return self.cached(("cell", cell), lambda: self.cell_document(cell, res))
        return render(self.cell_document(cell, res))  # empty: cheap, and not cached

    def cell_document(self, cell: str, res: int) -> dict:
        tour_nos, stop_nos, anchor_nos = self.cell_index.get(res, {}).get(cell, ((), (), ()))
        api = self.links.api
        stops = []
        for n in stop_nos:
            tour, stop = self.numbered_stops[n]
            stops.append({"id": stop.id, "tour": tour.id, "title": stop.title,
                          "geopose": stop.anchor.pose.to_json(),
                          "trigger": {"radius_m": stop.trigger.radius_m,
                                      "exit_radius_m": stop.trigger.exit_radius_m,
                                      "dwell_s": stop.trigger.dwell_s,
                                      "level": stop.trigger.level},
                          "url": api(f"/v1/tours/{tour.id}#stop={stop.id}")})
        anchors = []
        for n in anchor_nos:
            entry = self.numbered_anchors[n]
            anchor_id = entry.anchor.id
            anchors.append({"id": anchor_id, "tour": entry.tour, "stop": entry.stop,
                            "kind": entry.kind, "scenes": self.anchor_scenes.get(anchor_id, []),
                            "geopose": entry.anchor.pose.to_json(),
                            "url": api(f"/v1/anchors/{anchor_id}")})
        return {"cell": cell, "resolution": res,
                "tours": [self.tour_summary(self.numbered_tours[n]) for n in tour_nos],
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

        api = self.links.api
        document(api(f"/v1/tours/{tour.id}?lang={lang}"), self.tour_document(tour.id, lang),
                 "application/json")
        for anchor in tour.anchors():
            document(api(f"/v1/anchors/{anchor.id}"), self.anchor_document(anchor.id),
                     "application/json")
        for scene in tour.scenes():
            document(api(f"/v1/scenes/{scene.id}"), self.scene_document(scene.id),
                     "application/json")
            variant = self.scenes[scene.id].variant(tier)
            ref = BlobRef.from_json(variant["blob"])
            files.append({"url": self.content_url(ref), "sha256": ref.sha256, "bytes": ref.bytes,
                          "mime": ref.mime, "role": "scene", "scene": scene.id})
        for stop in tour.stops:
            narration = stop.narration.get(lang)
            if narration is None:
                continue
            # The first audio file is the preferred format; fallbacks stay online-only.
            for rel, role in ((narration.audio[0], "audio"), (narration.subtitles, "subtitles")):
                ref = self.tour_files[tour.id][rel]
                files.append({"url": self.content_url(ref), "sha256": ref.sha256,
                              "bytes": ref.bytes,
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


# Bodies under this size are sent as they are: gzip would save a few bytes at best.
GZIP_MIN_BYTES = 1024


@dataclass(frozen=True)
class Rendered:
    """A response body rendered once, with its strong validator, and the same body
    gzip-compressed where that is worth it (None otherwise). Phones always accept gzip,
    and a 175 KB cell document is 17 KB compressed: compressed once here, not per request."""

    body: bytes
    etag: str
    gzip: bytes | None = None

    @property
    def gzip_etag(self) -> str:
        """The compressed body's validator: another representation, so another strong
        ETag (RFC 9110 §8.8.3), as Apache's mod_deflate does."""
        return self.etag[:-1] + '-gzip"'


def render(body: object, *, compress: bool = False) -> Rendered:
    """`compress`: also keep a gzip copy (for documents rendered once and sent often)."""
    data = json_bytes(body)
    packed = None
    if compress and len(data) >= GZIP_MIN_BYTES:
        # level 6: ~1.5 ms for 175 KB and within 10 % of level 9's size (3x slower)
        packed = gzip.compress(data, compresslevel=6, mtime=0)
        packed = packed if len(packed) < len(data) else None
    return Rendered(data, '"' + hashlib.sha256(data).hexdigest()[:32] + '"', packed)


BUILD_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def load_published(data_root: Path, *, links: Links | None = None) -> Catalog:
    """The catalog of the current published build in a data directory."""
    build_id = artifacts.current_build_id(data_root)
    if build_id is None:
        raise NotFound(f"nothing is published in {data_root}; run `tourserver build`")
    return load_build(data_root, build_id, links=links)


def published_build_id(data_root: Path) -> str:
    """The current build's id, once its catalog and start-up files are there: the cheap
    check a supervisor makes before its workers start (each loads the build itself).
    Raises TourError like load_published for what is missing; damage inside the files
    is left for the load to find."""
    build_id = artifacts.current_build_id(data_root)
    if build_id is None:
        raise NotFound(f"nothing is published in {data_root}; run `tourserver build`")
    if not BUILD_ID_RE.match(build_id):
        raise TourError(f"{data_root / 'current'} holds {build_id[:80]!r}, not a build id",
                        code="catalog_unreadable")
    folder = artifacts.build_dir(data_root, build_id)
    for path in (folder.parent / f"{build_id}.json", folder / artifacts.TOURS_FILE,
                 folder / artifacts.CELLS_FILE):
        if not path.is_file():
            raise TourError(f"build {build_id} cannot be read: {path} is missing: run "
                            f"`{artifacts.REBUILD}` to rebuild it", code="catalog_unreadable")
    return build_id


def load_build(data_root: Path, build_id: str, *, links: Links | None = None) -> Catalog:
    """The catalog of one published build, from the artifacts the build wrote (see
    store.artifacts): no manifest is parsed or validated and no cell is computed here.
    Missing (a build by an older tourserver) or damaged artifacts are a TourError (code
    catalog_unreadable) naming the file and saying how to rebuild, never a traceback.
    `links`: where document links point (default: relative, this server)."""
    if not BUILD_ID_RE.match(build_id):  # `current` names a file: no paths in it
        raise TourError(f"{data_root / 'current'} holds {build_id[:80]!r}, not a build id",
                        code="catalog_unreadable")
    folder = artifacts.build_dir(data_root, build_id)
    with _collector_paused():
        art = artifacts.read(folder, build_id)
        try:
            catalog = Catalog.from_tours(build_id, BlobStore(data_root / "blobs"), art.tours,
                                         art.files, art.scenes, cell_index=art.cell_index,
                                         links=links)
        except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
            # the scene variants are kept as the build wrote them: read here, not before
            raise artifacts.unreadable(folder / artifacts.TOURS_FILE,
                                       f"damaged: {type(exc).__name__}: {exc}") from None
    if art.counts is None or len(catalog.numbered_anchors) != art.counts["anchors"]:
        raise artifacts.anchors_mismatch(folder, art, len(catalog.numbered_anchors))
    return catalog


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """A load makes about a million objects and no cycles: without the cyclic collector
    walking the growing heap again and again, it takes 0.9 s instead of 2.5 s at 100,000
    stops. Process-wide, but only for the load; a reload in a serving worker pauses it for
    that long, which only delays freeing cyclic garbage."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
