"""Synthetic content for the HTTP benchmark (tools/bench/http_bench.py).

Two things, both deterministic:

* `make_content_root(root)`: a small valid content root (one tour, two stops, narration,
  subtitles) whose first scene is a ~1 MB GLB, to be built with `tourserver build`.
* `write_data_dir(data, anchors)`: a published data directory with ~`anchors` stops
  spread over the Chongqing area (lat 29.4-29.7, lon 106.4-106.7), as tours of 1,000
  stops each, for the cell query: the catalog file and the start-up artifacts written by
  the build's own code (`store.artifacts.write`, cell index included), so that
  `tourserver serve --no-build --data DIR` serves it exactly as it would a real build.
  `python tools/bench/synthetic.py data DIR --anchors N` writes one;
  `python tools/bench/synthetic.py load DIR` times loading it as a worker does.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

import yaml
from common import grid_glb  # tools/bench is on sys.path (script dir, or the importer's)

from tourserver.files import atomic_write
from tourserver.model import cells, geo
from tourserver.model.manifest import Anchor, GeoPose, Stop, Tour, Trigger
from tourserver.store import artifacts

LAT_RANGE = (29.4, 29.7)
LON_RANGE = (106.4, 106.7)
STOPS_PER_TOUR = 1000
TOUR_BOX_M = 5000.0  # each tour's stops lie in a square of this side
GLB_TARGET_BYTES = 1_000_000
_M_PER_DEG_LAT = 111_195.0

DEMO_NARRATION = Path(__file__).resolve().parents[2] / "assets/chongqing-night/narration/en"
VTT = "WEBVTT\n\n00:00:00.000 --> 00:00:01.500\nHello, night.\n"


# ---- the small built content root ----------------------------------------------------------
def glb_bytes(target: int = GLB_TARGET_BYTES) -> bytes:
    """An untextured grid-mesh source GLB whose SERVED "high" variant (the build optimises
    it: quantization, meshopt) is close to `target` bytes, within a few per cent: the
    benchmark measures serving a ~1 MB file, not the source's size."""
    import numpy as np

    from tourserver.gltf.document import parse_glb
    from tourserver.pipeline.optimize import optimize
    from tourserver.pipeline.presets import TIERS

    def export(n: int) -> tuple[bytes, int]:
        xs, zs = np.meshgrid(np.linspace(-10, 10, n), np.linspace(-10, 10, n))
        # a wavy surface (normals vary) with seeded noise, so it does not compress to nothing
        ys = 0.5 * np.sin(xs) * np.cos(zs) + np.random.default_rng(3).normal(0, 0.01, xs.shape)
        source = grid_glb(xs, ys, zs)
        _, served, _ = optimize(parse_glb(source), len(source), TIERS[0].options)
        return source, len(served)

    lo, hi = 8, 700
    best = export(lo)
    for _ in range(12):  # bisection on the grid size: bounded
        if hi - lo <= 1:
            break
        mid = (lo + hi) // 2
        data = export(mid)
        if abs(data[1] - target) < abs(best[1] - target):
            best = data
        if data[1] < target:
            lo = mid
        else:
            hi = mid
    return best[0]


MINI_TOUR = {
    "schema_version": 1,
    "id": "bench",
    "title": {"en": "Benchmark tour", "zh-Hans": "基准游"},
    "summary": {"en": "Two stops and a 1 MB scene for the HTTP benchmark"},
    "languages": ["en", "zh-Hans"],
    "timezone": "Asia/Shanghai",
    "lights_on": [{"days": ["fri", "sat"], "start": "19:00", "end": "00:30"}],
    "route": {"type": "LineString",
              "coordinates": [[106.5770, 29.5572], [106.5790, 29.5628]]},
    "attribution": [{"what": "synthetic scene", "author": "tools/bench", "license": "CC0-1.0"}],
    "stops": [
        {
            "id": "bench-a",
            "title": {"en": "A", "zh-Hans": "甲"},
            "anchor": {"lat": 29.5572, "lon": 106.5770, "heading": 90, "altitude_msl": 240},
            "trigger": {"radius_m": 50, "exit_radius_m": 70, "dwell_s": 3, "level": "L1"},
            "scenes": [{"id": "bench-a-scene", "source": "assets/bench/big.glb"}],
            "narration": {
                lang: {"transcript": "Hello.", "audio": [f"assets/bench/{lang}/a.m4a",
                                                         f"assets/bench/{lang}/a.mp3"],
                       "subtitles": f"assets/bench/{lang}/a.vtt"}
                for lang in ("en", "zh-Hans")
            },
        },
        {
            "id": "bench-b",
            "title": {"en": "B"},
            "anchor": {"geopose": {"position": {"lat": 29.5628, "lon": 106.5790, "h": 150.0},
                                   "quaternion": {"x": 0, "y": 0, "z": 0, "w": 1}}},
            "trigger": {"radius_m": 80},
            "scenes": [],
            "narration": {
                lang: {"transcript": "Bye.", "audio": [f"assets/bench/{lang}/a.m4a"],
                       "subtitles": f"assets/bench/{lang}/a.vtt"}
                for lang in ("en", "zh-Hans")
            },
        },
    ],
}


def make_content_root(root: Path, glb_target: int = GLB_TARGET_BYTES) -> Path:
    """Write a content root with the benchmark tour (id "bench") and its ~1 MB scene."""
    tour_dir = root / "tours" / MINI_TOUR["id"]
    tour_dir.mkdir(parents=True, exist_ok=True)
    (tour_dir / "tour.yaml").write_text(yaml.safe_dump(MINI_TOUR, allow_unicode=True))
    assets = root / "assets" / "bench"
    assets.mkdir(parents=True, exist_ok=True)
    (assets / "big.glb").write_bytes(glb_bytes(glb_target))
    for lang in ("en", "zh-Hans"):
        (assets / lang).mkdir(parents=True, exist_ok=True)
        # Real audio (the build checks it by its bytes), from the bundled demo tour.
        for ext in ("m4a", "mp3"):
            shutil.copyfile(DEMO_NARRATION / f"jiefangbei.{ext}", assets / lang / f"a.{ext}")
        (assets / lang / "a.vtt").write_text(VTT)
    return root


# ---- the 100k-anchor catalog ---------------------------------------------------------------
def _tour(index: int, rng: random.Random, stops: int) -> Tour:
    """One tour: `stops` stops on a jittered serpentine grid in a TOUR_BOX_M square placed
    at random in the area; the route visits them in order."""
    side = math.ceil(math.sqrt(stops))
    spacing = TOUR_BOX_M / side
    m_per_deg_lon = _M_PER_DEG_LAT * math.cos(math.radians(sum(LAT_RANGE) / 2))
    box_lat = TOUR_BOX_M / _M_PER_DEG_LAT
    box_lon = TOUR_BOX_M / m_per_deg_lon
    lat0 = rng.uniform(LAT_RANGE[0], LAT_RANGE[1] - box_lat)
    lon0 = rng.uniform(LON_RANGE[0], LON_RANGE[1] - box_lon)
    tour_id = f"syn-{index:04d}"
    quat = tuple(geo.heading_to_enu_quaternion(0.0))
    out: list[Stop] = []
    route: list[tuple[float, float]] = []
    for i in range(stops):
        row, col = divmod(i, side)
        if row % 2:
            col = side - 1 - col
        north = (row + 0.5) * spacing + rng.uniform(-0.3, 0.3) * spacing
        east = (col + 0.5) * spacing + rng.uniform(-0.3, 0.3) * spacing
        lat = round(lat0 + north / _M_PER_DEG_LAT, 7)
        lon = round(lon0 + east / m_per_deg_lon, 7)
        stop_id = f"{tour_id}-s{i:04d}"
        pose = GeoPose(lat, lon, round(rng.uniform(200.0, 400.0), 2), quat)
        radius = float(rng.choice((20, 30, 40)))
        out.append(Stop(
            id=stop_id,
            title={"en": f"Stop {i} of tour {index}", "zh-Hans": f"第{index}游第{i}站"},
            summary={"en": "A synthetic stop"},
            anchor=Anchor(stop_id, pose, "wgs84", "ellipsoidal"),
            trigger=Trigger(radius, radius * 1.25, 3.0, "L1"),
            scenes=(),
            narration={},
        ))
        route.append((lon, lat))
    return Tour(
        id=tour_id,
        title={"en": f"Synthetic tour {index}", "zh-Hans": f"合成游{index}"},
        summary={"en": "Benchmark data"},
        languages=("en", "zh-Hans"),
        timezone="Asia/Shanghai",
        lights_on=(),
        route=tuple(route),
        attribution=({"what": "synthetic", "author": "tools/bench", "license": "CC0-1.0"},),
        stops=tuple(out),
    )


def big_tours(anchors: int = 100_000, seed: int = 2024) -> list[Tour]:
    """ceil(anchors / 1000) tours with `anchors` stops (one anchor each)."""
    rng = random.Random(seed)
    tours = []
    left = anchors
    for t in range(max(1, math.ceil(anchors / STOPS_PER_TOUR))):
        stops = min(STOPS_PER_TOUR, left)
        left -= stops
        tours.append(_tour(t, rng, stops))
    return tours


def _manifest(tour: Tour) -> dict:
    """The tour as a manifest, for the catalog file (gc and people read it; servers load
    the artifacts). Synthetic: no narration, so it is not meant to pass `validate`."""
    def anchor(a: Anchor) -> dict:
        x, y, z, w = a.pose.quaternion
        return {"geopose": {"position": {"lat": a.pose.lat, "lon": a.pose.lon, "h": a.pose.h},
                            "quaternion": {"x": x, "y": y, "z": z, "w": w}}}

    return {"schema_version": 1, "id": tour.id, "title": tour.title, "summary": tour.summary,
            "languages": list(tour.languages), "timezone": tour.timezone,
            "route": {"type": "LineString", "coordinates": [list(c) for c in tour.route]},
            "attribution": list(tour.attribution),
            "stops": [{"id": s.id, "title": s.title, "summary": s.summary,
                       "anchor": anchor(s.anchor),
                       "trigger": {"radius_m": s.trigger.radius_m,
                                   "exit_radius_m": s.trigger.exit_radius_m,
                                   "dwell_s": s.trigger.dwell_s, "level": s.trigger.level},
                       "scenes": [], "narration": {}} for s in tour.stops]}


def write_data_dir(data: Path, anchors: int = 100_000,
                   progress: Callable[[str], None] | None = None) -> dict:
    """Publish the synthetic tours in `data` as a build would (catalog file, artifacts,
    then `current`). Returns the build id, the busiest and a median res-8 cell with their
    counts, and how long indexing took."""
    tours = big_tours(anchors)
    build_id = f"synthetic-{anchors}"
    started = time.perf_counter()
    index = cells.index_tours(tours)
    index_s = time.perf_counter() - started
    if progress:
        progress(f"indexed {anchors} anchors in {len(tours)} tours in {index_s:.1f} s")
    catalog = {"format": 1, "build_id": build_id, "fingerprint": "synthetic",
               "recipe": "synthetic", "scenes": {},
               "tours": [{"manifest": _manifest(t), "files": {}, "manifest_file": "tour.json"}
                         for t in tours]}
    atomic_write(data / "builds" / f"{build_id}.json", json.dumps(catalog).encode())
    artifacts.write(artifacts.build_dir(data, build_id),
                    artifacts.Artifacts(build_id, tours, {}, {}, index), replace=True)
    atomic_write(data / "current", build_id.encode())
    busiest, median = busiest_cell(index), median_cell(index)
    return {"build_id": build_id, "anchors": anchors, "tours": len(tours),
            "index_s": round(index_s, 2), "cell": busiest[0], "cell_counts": busiest[1],
            "median_cell": median[0], "median_cell_counts": median[1],
            "cells_with_anchors": sum(1 for h in index[8].values() if h[2])}


def _counts(hits: cells.CellHits) -> dict[str, int]:
    return {"tours": len(hits[0]), "stops": len(hits[1]), "anchors": len(hits[2])}


def busiest_cell(index: dict, res: int = 8) -> tuple[str, dict[str, int]]:
    """The res-`res` cell holding the most anchors, and its counts."""
    cell, hits = max(index[res].items(), key=lambda kv: (len(kv[1][2]), kv[0]))
    return cell, _counts(hits)


def median_cell(index: dict, res: int = 8) -> tuple[str, dict[str, int]]:
    """A res-`res` cell with the median number of anchors (among cells with any)."""
    ranked = sorted((kv for kv in index[res].items() if kv[1][2]),
                    key=lambda kv: (len(kv[1][2]), kv[0]))
    cell, hits = ranked[len(ranked) // 2]
    return cell, _counts(hits)


def time_load(data: Path) -> dict:
    """Load the published build as a worker does (store.catalog.load_published) and say
    how long it took; run it in a fresh process for a fair figure."""
    from tourserver.store.catalog import load_published

    started = time.perf_counter()
    catalog = load_published(data)
    return {"load_s": round(time.perf_counter() - started, 3),
            "anchors": len(catalog.anchors), "tours": len(catalog.tours)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("data", help="publish the synthetic tours in a data directory")
    p.add_argument("path", type=Path)
    p.add_argument("--anchors", type=int, default=100_000)
    p = sub.add_parser("load", help="time loading a data directory's published build")
    p.add_argument("path", type=Path)
    p = sub.add_parser("root", help="write the small content root (with the ~1 MB GLB)")
    p.add_argument("path", type=Path)
    args = parser.parse_args(argv)
    if args.command == "data":
        def progress(msg: str) -> None:
            print(msg, file=sys.stderr, flush=True)

        print(json.dumps(write_data_dir(args.path, args.anchors, progress)))
    elif args.command == "load":
        print(json.dumps(time_load(args.path)))
    else:
        make_content_root(args.path)
        print(args.path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
