"""Which coarse H3 cells a stop, an anchor or a tour touches.

Phones ask for a whole cell (resolution 7: ~5 km², or 8: ~0.7 km²) and do geofencing
themselves, so the server never learns where they are. A stop is in every cell its
geofence circle (exit radius) overlaps; a tour is in every cell its route or its stops
touch. Geometry is planar in a local equirectangular frame: exact enough at these sizes.

`index_tours()` computes every tour's cells once, at build time (seconds per 10,000
stops): a server loads the result and never recomputes it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence

import h3

from tourserver.model.manifest import Tour

DISCOVERY_RESOLUTIONS = (7, 8)
_CELL_RE = re.compile(r"^[0-9a-fA-F]{15,16}$")
_EARTH_R = 6_371_008.8


class CellError(ValueError):
    pass


def parse_cell(text: str) -> tuple[str, int]:
    """Check a client-supplied cell id; return (canonical id, resolution) or raise CellError."""
    if not _CELL_RE.match(text) or not h3.is_valid_cell(text):
        raise CellError(f"{text[:32]!r} is not a valid H3 cell index")
    res = h3.get_resolution(text)
    if res not in DISCOVERY_RESOLUTIONS:
        raise CellError(f"resolution {res} is not allowed: ask for a coarse cell of resolution "
                        f"{' or '.join(map(str, DISCOVERY_RESOLUTIONS))} so that the server "
                        "never learns a precise position")
    return text.lower(), res


def _project(lat0: float, lon0: float):
    kx = math.radians(1) * _EARTH_R * math.cos(math.radians(lat0))
    ky = math.radians(1) * _EARTH_R

    def to_xy(lat: float, lon: float) -> tuple[float, float]:
        return (lon - lon0) * kx, (lat - lat0) * ky

    return to_xy


def _point_segment_distance(p, a, b) -> float:
    ax, ay = a
    bx, by = b
    px, py = p
    dx, dy = bx - ax, by - ay
    length2 = dx * dx + dy * dy
    t = 0.0 if length2 == 0 else max(0.0, min(1.0, ((px - ax) * dx + (py - ay) * dy) / length2))
    return math.hypot(px - (ax + t * dx), py - (ay + t * dy))


def _inside(p, polygon) -> bool:
    x, y = p
    inside = False
    n = len(polygon)
    for i in range(n):
        (x1, y1), (x2, y2) = polygon[i], polygon[(i + 1) % n]
        if (y1 > y) != (y2 > y) and x < (x2 - x1) * (y - y1) / (y2 - y1) + x1:
            inside = not inside
    return inside


def _segments_cross(a, b, c, d) -> bool:
    def orient(p, q, r):
        return (q[0] - p[0]) * (r[1] - p[1]) - (q[1] - p[1]) * (r[0] - p[0])

    d1, d2 = orient(c, d, a), orient(c, d, b)
    d3, d4 = orient(a, b, c), orient(a, b, d)
    return (d1 * d2 <= 0) and (d3 * d4 <= 0)


def _cell_polygon(cell: str, to_xy) -> list[tuple[float, float]]:
    return [to_xy(lat, lon) for lat, lon in h3.cell_to_boundary(cell)]


def circle_cells(lat: float, lon: float, radius_m: float, res: int) -> set[str]:
    """Cells of resolution `res` that a circle overlaps."""
    center = h3.latlng_to_cell(lat, lon, res)
    edge = h3.average_hexagon_edge_length(res, unit="m")
    k = int(math.ceil(radius_m / (edge * 1.5))) + 1
    to_xy = _project(lat, lon)
    origin = (0.0, 0.0)
    found = {center}
    # A cell's circumradius is under 1.5x the average edge at any latitude: cheap tests on
    # the centre settle most cells, the polygon is only needed in between.
    reach = radius_m + edge * 1.5
    for cell in h3.grid_disk(center, k):
        if cell in found:
            continue
        clat, clon = h3.cell_to_latlng(cell)
        cx, cy = to_xy(clat, clon)
        d = math.hypot(cx, cy)
        if d > reach:
            continue
        if d <= radius_m:
            found.add(cell)
            continue
        poly = _cell_polygon(cell, to_xy)
        if _inside(origin, poly) or any(
            _point_segment_distance(origin, poly[i], poly[(i + 1) % len(poly)]) <= radius_m
            for i in range(len(poly))
        ):
            found.add(cell)
    return found


def line_cells(coords: Iterable[tuple[float, float]], res: int) -> set[str]:
    """Cells of resolution `res` that a polyline of (lon, lat) points passes through."""
    points = list(coords)
    if not points:
        return set()
    lon0, lat0 = points[0]
    to_xy = _project(lat0, lon0)
    edge = h3.average_hexagon_edge_length(res, unit="m")
    found: set[str] = set()
    for (lon_a, lat_a), (lon_b, lat_b) in zip(points, points[1:] or points, strict=False):
        a, b = to_xy(lat_a, lon_a), to_xy(lat_b, lon_b)
        length = math.hypot(b[0] - a[0], b[1] - a[1])
        steps = max(1, int(length / (edge / 2)))
        candidates: set[str] = set()
        for i in range(steps + 1):
            t = i / steps
            cell = h3.latlng_to_cell(lat_a + t * (lat_b - lat_a), lon_a + t * (lon_b - lon_a), res)
            candidates.update(h3.grid_disk(cell, 1))
        for cell in candidates - found:
            poly = _cell_polygon(cell, to_xy)
            if _inside(a, poly) or _inside(b, poly) or any(
                _segments_cross(a, b, poly[i], poly[(i + 1) % len(poly)])
                for i in range(len(poly))
            ):
                found.add(cell)
    return found


def point_cell(lat: float, lon: float, res: int) -> str:
    return h3.latlng_to_cell(lat, lon, res)


# A cell's contents as positions, not ids: (tours, stops, anchors), each a list of indexes.
# Tours are numbered in the order given, stops in tour then stop order, anchors in tour then
# `Tour.anchors()` order. Compact to store and to load (a few ints per cell instead of
# hundreds of thousands of strings).
CellHits = tuple[list[int], list[int], list[int]]


def index_tours(tours: Sequence[Tour], resolutions: Sequence[int] = DISCOVERY_RESOLUTIONS
                ) -> dict[int, dict[str, CellHits]]:
    """res -> cell -> CellHits for every cell a tour, a stop's geofence (exit radius) or an
    anchor touches. Each list is in increasing order, without repeats."""
    index: dict[int, dict[str, CellHits]] = {}
    for res in resolutions:
        by_cell: dict[str, CellHits] = {}
        stop_no = anchor_no = 0
        for tour_no, tour in enumerate(tours):
            tour_cells: set[str] = line_cells(tour.route, res)
            for stop in tour.stops:
                pose = stop.anchor.pose
                stop_cells = circle_cells(pose.lat, pose.lon, stop.trigger.exit_radius_m, res)
                tour_cells |= stop_cells
                for cell in stop_cells:
                    by_cell.setdefault(cell, ([], [], []))[1].append(stop_no)
                stop_no += 1
            for anchor in tour.anchors():
                cell = point_cell(anchor.pose.lat, anchor.pose.lon, res)
                by_cell.setdefault(cell, ([], [], []))[2].append(anchor_no)
                tour_cells.add(cell)
                anchor_no += 1
            for cell in tour_cells:
                by_cell.setdefault(cell, ([], [], []))[0].append(tour_no)
        index[res] = by_cell
    return index
