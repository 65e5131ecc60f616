"""A 3D Tiles 1.1 tileset for a tour: one subtree per scene, its LODs chained by REPLACE."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from tourserver.model import geo
from tourserver.model.anchors import pose_to_ecef_matrix
from tourserver.model.manifest import GeoPose

# glTF content is y-up; 3D Tiles turns it z-up before the tile transform: (x, y, z)->(x, -z, y).
_Y_UP_TO_Z_UP = np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0]], dtype=float)


def _local_box(bounds: dict) -> tuple[np.ndarray, np.ndarray]:
    lo = _Y_UP_TO_Z_UP @ np.array(bounds["min"], dtype=float)
    hi = _Y_UP_TO_Z_UP @ np.array(bounds["max"], dtype=float)
    lo, hi = np.minimum(lo, hi), np.maximum(lo, hi)
    return (lo + hi) / 2, np.maximum((hi - lo) / 2, 0.01)


def _box(center: np.ndarray, half: np.ndarray) -> list[float]:
    return [*map(float, center), float(half[0]), 0.0, 0.0, 0.0, float(half[1]), 0.0,
            0.0, 0.0, float(half[2])]


def scene_tile(pose: GeoPose, variants: list[dict],
               url_for: Callable[[dict], str]) -> tuple[dict, list[tuple]]:
    """The tile chain for one scene (lightest variant at the top) and its ECEF corners."""
    ordered = sorted(variants, key=lambda v: -v["lod"])  # low, medium, high
    center, half = _local_box(ordered[-1]["bounds"])
    diagonal = float(np.linalg.norm(half) * 2)
    transform = pose_to_ecef_matrix(pose)
    tiles: list[dict[str, Any]] = []
    for depth, variant in enumerate(ordered):
        finest = depth == len(ordered) - 1
        # A coarser tile must carry a positive error or a viewer never refines past it.
        floor = 0.0 if finest else diagonal * 0.01 * (len(ordered) - 1 - depth)
        tiles.append({
            "boundingVolume": {"box": _box(*_local_box(variant["bounds"]))},
            "geometricError": 0.0 if finest else max(variant["geometric_error"], floor),
            "refine": "REPLACE",
            "content": {"uri": url_for(variant)},
        })
    for parent, child in zip(tiles, tiles[1:], strict=False):
        parent["children"] = [child]
    # Errors must not grow toward the leaves.
    for parent, child in zip(tiles, tiles[1:], strict=False):
        parent["geometricError"] = max(parent["geometricError"], child["geometricError"])
    top = tiles[0]
    top["transform"] = geo.column_major(transform)
    corners = []
    for sx in (-1, 1):
        for sy in (-1, 1):
            for sz in (-1, 1):
                local = center + half * np.array([sx, sy, sz])
                corners.append(tuple(transform @ np.array([*local, 1.0]))[:3])
    top["_diagonal"] = diagonal
    return top, corners


def tileset_document(scenes: list[tuple[GeoPose, list[dict]]],
                     url_for: Callable[[dict], str]) -> dict:
    children = []
    lats, lons, hs = [], [], []
    for pose, variants in scenes:
        tile, corners = scene_tile(pose, variants, url_for)
        children.append(tile)
        for corner in corners:
            lat, lon, h = geo.ecef_to_geodetic(np.array(corner))
            lats.append(lat)
            lons.append(lon)
            hs.append(h)
    if not children:
        raise ValueError("a tileset needs at least one scene")
    root_error = max(max(t.pop("_diagonal") for t in children),
                     max(t["geometricError"] for t in children) * 4)
    region = [math.radians(min(lons)), math.radians(min(lats)), math.radians(max(lons)),
              math.radians(max(lats)), min(hs), max(hs)]
    return {
        "asset": {"version": "1.1", "generator": "tourserver"},
        "geometricError": root_error,
        "root": {
            "boundingVolume": {"region": region},
            "geometricError": root_error,
            "refine": "ADD",
            "children": children,
        },
    }
