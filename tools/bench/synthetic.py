"""Synthetic content for the HTTP benchmark (tools/bench/http_bench.py).

Two things, both deterministic:

* `make_content_root(root)`: a small valid content root (one tour, two stops, narration,
  subtitles) whose first scene is a ~1 MB GLB, to be built with `tourserver build`.
* `big_catalog(anchors)`: an in-memory `Catalog` with ~`anchors` stops spread over the
  Chongqing area (lat 29.4-29.7, lon 106.4-106.7), as tours of 1,000 stops each, for the
  cell query. `python tools/bench/synthetic.py serve --port P --anchors N` serves it with
  the production server code (`tourserver.http.server.start`) and production logging
  (JSON lines on stderr: redirect stderr to a file or /dev/null).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import yaml
from common import grid_glb  # tools/bench is on sys.path (script dir, or the importer's)

from tourserver.model import geo
from tourserver.model.manifest import Anchor, GeoPose, Stop, Tour, Trigger
from tourserver.store.catalog import Catalog

LAT_RANGE = (29.4, 29.7)
LON_RANGE = (106.4, 106.7)
STOPS_PER_TOUR = 1000
TOUR_BOX_M = 5000.0  # each tour's stops lie in a square of this side
GLB_TARGET_BYTES = 1_000_000
_M_PER_DEG_LAT = 111_195.0

VTT = "WEBVTT\n\n00:00:00.000 --> 00:00:01.500\nHello, night.\n"


# ---- the small built content root ----------------------------------------------------------
def glb_bytes(target: int = GLB_TARGET_BYTES) -> bytes:
    """An untextured grid-mesh source GLB whose SERVED "high" variant (the build optimises
    it: quantization, meshopt) is close to `target` bytes, within a few per cent: the
    benchmark measures serving a ~1 MB file, not the source's size."""
    import numpy as np

    from tourserver.ingest.gltf_io import parse_glb
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
        # Not real audio: the server treats audio as opaque bytes.
        (assets / lang / "a.m4a").write_bytes(b"\0\0\0\x18ftypM4A " + bytes(64))
        (assets / lang / "a.mp3").write_bytes(b"ID3" + bytes(64))
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


def big_catalog(anchors: int = 100_000, seed: int = 2024,
                progress: Callable[[str], None] | None = None) -> Catalog:
    """A catalog of ceil(anchors / 1000) tours with `anchors` stops (one anchor each)."""
    rng = random.Random(seed)
    catalog = Catalog(build_id=f"synthetic-{anchors}", blob_store=None)
    n_tours = max(1, math.ceil(anchors / STOPS_PER_TOUR))
    left = anchors
    for t in range(n_tours):
        stops = min(STOPS_PER_TOUR, left)
        left -= stops
        catalog.add_tour(_tour(t, rng, stops), {}, {})
    started = time.perf_counter()
    catalog.index_cells()
    if progress:
        progress(f"indexed {len(catalog.anchors)} anchors in {len(catalog.tours)} tours "
                 f"in {time.perf_counter() - started:.1f} s")
    return catalog


def busiest_cell(catalog: Catalog, res: int = 8) -> tuple[str, dict[str, int]]:
    """The res-`res` cell holding the most anchors, and its counts."""
    cell, hit = max(catalog.cell_index[res].items(),
                    key=lambda kv: (len(kv[1]["anchors"]), kv[0]))
    return cell, {k: len(v) for k, v in hit.items()}


def median_cell(catalog: Catalog, res: int = 8) -> tuple[str, dict[str, int]]:
    """A res-`res` cell with the median number of anchors (among cells with any)."""
    ranked = sorted((kv for kv in catalog.cell_index[res].items() if kv[1]["anchors"]),
                    key=lambda kv: (len(kv[1]["anchors"]), kv[0]))
    cell, hit = ranked[len(ranked) // 2]
    return cell, {k: len(v) for k, v in hit.items()}


# ---- serving it ----------------------------------------------------------------------------
def _gc_pause_log() -> list[tuple[int, float]]:
    """Record every garbage-collector pass (generation, ms): a diagnostic, off by default."""
    import gc

    pauses: list[tuple[int, float]] = []
    started = [0.0]

    def callback(phase: str, info: dict) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            pauses.append((info["generation"], (time.perf_counter() - started[0]) * 1000))

    gc.callbacks.append(callback)
    return pauses


async def _serve(port: int, anchors: int, gc_stats: bool = False,
                 gc_freeze: bool = False) -> None:
    import gc

    from tourserver.config import Settings
    from tourserver.http.server import start

    def progress(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    catalog = big_catalog(anchors, progress=progress)
    if gc_freeze:  # diagnostic: move the loaded catalog out of the collector's sight
        gc.collect()
        gc.freeze()
    pauses = _gc_pause_log() if gc_stats else None
    cell, counts = busiest_cell(catalog)
    typical, typical_counts = median_cell(catalog)
    # Same settings as `tourserver serve` (access log on), but no content on disk.
    settings = replace(Settings(data_dir=Path("/nonexistent"), content_root=Path("/nonexistent")),
                       host="127.0.0.1", port=port, workers=1)
    runner = await start(settings, catalog)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(json.dumps({"ready": True, "port": port, "cell": cell, "cell_counts": counts,
                      "median_cell": typical, "median_cell_counts": typical_counts,
                      "cells_with_anchors": sum(1 for h in catalog.cell_index[8].values()
                                                if h["anchors"]),
                      "anchors": len(catalog.anchors), "tours": len(catalog.tours)}), flush=True)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
        if pauses is not None:
            gen2 = sorted(ms for gen, ms in pauses if gen == 2)
            young = sorted(ms for gen, ms in pauses if gen < 2)
            print(json.dumps({"gc_passes": len(pauses), "gen2_ms": [round(x, 1) for x in gen2],
                              "young_max_ms": round(max(young, default=0.0), 2),
                              "young_total_ms": round(sum(young), 1)}),
                  file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("serve", help="serve the synthetic catalog on 127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--anchors", type=int, default=100_000)
    p.add_argument("--gc-stats", action="store_true",
                   help="diagnostic: print garbage-collector pauses on stderr at exit")
    p.add_argument("--gc-freeze", action="store_true",
                   help="diagnostic (not production behaviour): gc.freeze() after loading")
    p = sub.add_parser("root", help="write the small content root (with the ~1 MB GLB)")
    p.add_argument("path", type=Path)
    args = parser.parse_args(argv)
    if args.command == "serve":
        from tourserver.logs import setup_logging

        setup_logging()  # production logging: JSON lines on stderr
        asyncio.run(_serve(args.port, args.anchors, args.gc_stats, args.gc_freeze))
    else:
        make_content_root(args.path)
        print(args.path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
