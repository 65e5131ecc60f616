"""What a server loads at start: a build's tours already checked and parsed, and its cells.

`tourserver build` writes them beside the catalog file, before `current` names the build:

  builds/<id>.json            the catalog (manifests, files, variants): gc reads it
  builds/<id>/tours-1.json    every tour as trusted values, with its files and variants
  builds/<id>/cells-1.json    res -> cell -> [tours, stops, anchors] (model.cells.index_tours)

Loading them checks nothing the build checked: no JSON Schema, no geoid, no datum
conversion, no H3 geometry (seconds per 10,000 stops). Positions are stored as the model
holds them (WGS84, ellipsoidal heights); stops are arrays, not objects, as they are most of
the bytes. The number in a file name is its format: a new format is a new name, so one
version never misreads another's files, and a build without them (made by an older
tourserver) is refused with a message saying how to rebuild.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import orjson

from tourserver.errors import TourError
from tourserver.files import atomic_write
from tourserver.model import cells
from tourserver.model.manifest import (
    Anchor,
    GeoPose,
    LightsOn,
    Narration,
    SceneRef,
    Stop,
    Tour,
    Trigger,
)
from tourserver.store.blobs import BlobRef

FORMAT = 1
TOURS_FILE = f"tours-{FORMAT}.json"
CELLS_FILE = f"cells-{FORMAT}.json"
REBUILD = "tourserver build --force"


@dataclass
class Artifacts:
    """A build as a server needs it. `files` maps tour id -> manifest path -> blob;
    `scenes` is the catalog's scene id -> {"tour", "stop", "variants"}."""

    build_id: str
    tours: list[Tour]
    files: dict[str, dict[str, BlobRef]]
    scenes: dict[str, dict]
    cell_index: dict[int, dict[str, cells.CellHits]]
    # {"tours", "stops", "anchors"}: how many the index numbers (read fills it in)
    counts: dict[str, int] | None = None


def build_dir(data_root: Path, build_id: str) -> Path:
    """Where a build's artifacts are: builds/<id>/, beside the catalog builds/<id>.json."""
    return data_root / "builds" / build_id


def current_build_id(data_root: Path) -> str | None:
    """The build id `<data>/current` names, or None when nothing is published."""
    try:
        # junk in it is left for the caller's build id check to name, not a decode error
        return (data_root / "current").read_bytes().decode("utf-8", "replace").strip() or None
    except FileNotFoundError:
        return None


# ---- writing (at build time) ----------------------------------------------------------------
def _anchor_json(a: Anchor) -> list:
    p = a.pose
    return [a.id, p.lat, p.lon, p.h, *p.quaternion, a.input_datum, a.input_height]


def _stop_json(s: Stop) -> list:
    t = s.trigger
    return [s.id, s.title, s.summary, _anchor_json(s.anchor),
            [t.radius_m, t.exit_radius_m, t.dwell_s, t.level],
            # a scene on its stop's anchor (the usual case) stores no copy of it
            [[c.id, c.title, c.source, None if c.anchor == s.anchor else _anchor_json(c.anchor)]
             for c in s.scenes],
            {lang: [n.transcript, list(n.audio), n.subtitles] for lang, n in s.narration.items()}]


def _tour_json(tour: Tour, files: dict[str, BlobRef]) -> dict:
    return {"id": tour.id, "title": tour.title, "summary": tour.summary,
            "languages": list(tour.languages), "timezone": tour.timezone,
            "lights_on": [[list(x.days), x.start, x.end] for x in tour.lights_on],
            "route": [list(c) for c in tour.route], "attribution": list(tour.attribution),
            "files": {rel: [r.sha256, r.ext, r.bytes] for rel, r in files.items()},
            "stops": [_stop_json(s) for s in tour.stops]}


def encode(art: Artifacts) -> dict[str, bytes]:
    """File name -> bytes. Computes the cell index if `art` has none (the slow part)."""
    index = art.cell_index or cells.index_tours(art.tours)
    counts = _counts(art.tours)
    head = {"format": FORMAT, "build_id": art.build_id, "counts": counts}
    tours = {**head, "tours": [_tour_json(t, art.files.get(t.id, {})) for t in art.tours],
             "scenes": art.scenes}
    cell_doc = {**head, "resolutions": {str(res): {cell: list(hits) for cell, hits in
                                                   sorted(by_cell.items())}
                                        for res, by_cell in index.items()}}
    return {TOURS_FILE: orjson.dumps(tours), CELLS_FILE: orjson.dumps(cell_doc)}


def write(folder: Path, art: Artifacts, *, replace: bool = False) -> None:
    """Write a build's artifacts to `folder` (builds/<id>/). A new directory appears
    whole (written aside, then renamed); with `replace`, the files of an existing one are
    replaced one by one, each atomically (same build and format: the same content unless
    they were damaged). Without `replace` an existing directory is left as it is."""
    if present(folder) and not replace:
        return
    files = encode(art)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".tmp-{folder.name}-"))
    try:
        for name, data in files.items():
            atomic_write(tmp / name, data)
        os.chmod(tmp, 0o755)  # mkdtemp's 0700 would hide it from a server of another user
        try:
            os.rename(tmp, folder)
            return
        except OSError:
            if not folder.is_dir():
                raise
        for name in files:
            os.replace(tmp / name, folder / name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def present(folder: Path) -> bool:
    return (folder / TOURS_FILE).is_file() and (folder / CELLS_FILE).is_file()


# ---- reading (at server start) -------------------------------------------------------------
def _anchor(v: list) -> Anchor:
    return Anchor(v[0], GeoPose(v[1], v[2], v[3], (v[4], v[5], v[6], v[7])), v[8], v[9])


def _stop(v: list) -> Stop:
    sid, title, summary, raw_anchor, trig, raw_scenes, raw_narration = v
    anchor = _anchor(raw_anchor)
    scenes = tuple(SceneRef(c[0], c[1], c[2], anchor if c[3] is None else _anchor(c[3]))
                   for c in raw_scenes)
    narration = {lang: Narration(lang, n[0], tuple(n[1]), n[2])
                 for lang, n in raw_narration.items()}
    return Stop(sid, title, summary, anchor, Trigger(trig[0], trig[1], trig[2], trig[3]),
                scenes, narration)


def _tour(d: dict) -> tuple[Tour, dict[str, BlobRef]]:
    tour = Tour(id=d["id"], title=d["title"], summary=d["summary"],
                languages=tuple(d["languages"]), timezone=d["timezone"],
                lights_on=tuple(LightsOn(tuple(x[0]), x[1], x[2]) for x in d["lights_on"]),
                route=tuple((c[0], c[1]) for c in d["route"]),
                attribution=tuple(d["attribution"]),
                stops=tuple(map(_stop, d["stops"])))
    files = {rel: BlobRef(r[0], r[1], r[2]) for rel, r in d["files"].items()}
    return tour, files


def _counts(tours: Sequence[Tour]) -> dict[str, int]:
    return {"tours": len(tours), "stops": sum(len(t.stops) for t in tours),
            "anchors": sum(len(t.anchors()) for t in tours)}


def unreadable(path: Path, reason: str) -> TourError:
    """The error for a damaged artifact: which file, why, and how to rebuild it."""
    return TourError(f"{path} cannot be read ({reason[:300]}); run `{REBUILD}` to rebuild it",
                     code="catalog_unreadable")


def _read_json(path: Path, build_id: str) -> dict:
    try:
        data = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        catalog = path.parent.parent / f"{build_id}.json"
        if not catalog.exists():
            raise TourError(f"no catalog for build {build_id}: {catalog} is missing",
                            code="catalog_unreadable") from None
        raise TourError(f"build {build_id} cannot be read: {path} is missing (written by "
                        f"another version of tourserver, or never finished): run `{REBUILD}` "
                        "to rebuild it", code="catalog_unreadable") from None
    except OSError as exc:
        raise unreadable(path, exc.strerror or str(exc)) from None
    except orjson.JSONDecodeError as exc:
        raise unreadable(path, f"damaged: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise unreadable(path, f"not in format {FORMAT}: another version of tourserver wrote it")
    if data.get("build_id") != build_id:
        raise unreadable(path, f"it belongs to build {str(data.get('build_id'))[:40]!r}")
    return data


def read(folder: Path, build_id: str) -> Artifacts:
    """A build's artifacts from `folder` (builds/<id>/), or TourError (code
    catalog_unreadable) saying what is wrong with which file and how to rebuild: never a
    stray KeyError or traceback."""
    path = folder / TOURS_FILE
    try:
        data = _read_json(path, build_id)
        tours, files = [], {}
        for d in data["tours"]:
            tour, tour_files = _tour(d)
            tours.append(tour)
            files[tour.id] = tour_files
        scenes, counts = data["scenes"], data["counts"]
        # Anchors are counted by whoever numbers them (the catalog): see anchors_mismatch.
        if not isinstance(scenes, dict) or (counts["tours"], counts["stops"]) != (
                len(tours), sum(len(t.stops) for t in tours)):
            raise ValueError("its counts do not match its tours")
        path = folder / CELLS_FILE
        index = _read_cells(_read_json(path, build_id), counts)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
        raise unreadable(path, f"damaged: {type(exc).__name__}: {exc}") from None
    return Artifacts(build_id, tours, files, scenes, index, counts)


def anchors_mismatch(folder: Path, art: Artifacts, anchors: int) -> TourError:
    """The error for a build whose anchors, as numbered on loading, are not the ones its
    index was made for."""
    return unreadable(folder / TOURS_FILE, f"damaged: {anchors} anchors where its index "
                      f"expects {(art.counts or {}).get('anchors')}")


def _read_cells(data: dict, counts: dict) -> dict[int, dict[str, cells.CellHits]]:
    if data["counts"] != counts:
        raise ValueError("it was made for other tours")
    limits = (counts["tours"], counts["stops"], counts["anchors"])
    index: dict[int, dict[str, cells.CellHits]] = {}
    for res, by_cell in data["resolutions"].items():
        out = index[int(res)] = {}
        for cell, (t, s, a) in by_cell.items():
            # A damaged index fails here, at load, not in a request (min/max run in C).
            for found, limit in ((t, limits[0]), (s, limits[1]), (a, limits[2])):
                if found and not (0 <= min(found) and max(found) < limit):
                    raise ValueError(f"cell {cell[:20]} names a position out of range")
            out[cell] = (t, s, a)
    return index


__all__ = ["Artifacts", "FORMAT", "read", "write", "encode", "present", "build_dir",
           "current_build_id", "unreadable", "anchors_mismatch", "TOURS_FILE", "CELLS_FILE"]
