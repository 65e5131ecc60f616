"""Checks that a tour's content lands where its creator meant it: swapped latitude and
longitude, stops far from the rest of the tour or from its route, a route that misses its
stops, anchors at 0,0, heights no ground has, and missing headings.

Which part of a tour is "the rest"? If one stop in ten has its latitude and longitude
swapped, the other nine are; if the whole route is swapped, the stops are. Stops and the
route are grouped by single linkage (chains of hops of at most `max_stop_distance_km`,
a stop reaching the route when it is that close to the route's line) and the heaviest group
is the reference. A stop weighs 1 and the route ROUTE_WEIGHT: the route outvotes a single
stop (a one-stop tour trusts its route) but two stops that agree outvote the route. Equal
groups of stops: the one holding the earliest stop wins. Anything outside the reference is
an error, "swapped" when swapping its latitude and longitude would bring it within the
limit, "far" otherwise.

Distances are great-circle distances on the mean sphere (`geo.nearest_distances_m`,
`geo.polyline_distances_m`): within 0.5 % of the ellipsoid, which is plenty for limits of a
kilometre and more, and exact for route segments of any length.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from tourserver.errors import Issue
from tourserver.model import geo, geoid
from tourserver.model.manifest import Anchor, Tour

DEFAULT_MAX_STOP_DISTANCE_KM = 30.0
# The route counts as one and a half stops when deciding which group is the reference.
ROUTE_WEIGHT = 1.5
# A route that passes farther than this beyond a stop's trigger radius never brings the
# walker into its geofence: a warning (the route may be a sketch), not an error.
ROUTE_NEAR_M = 1000.0
# |lat| and |lon| below this are "0, 0" (Null Island, what an unset coordinate becomes):
# about 0.1 m, so no real place is caught.
NULL_ISLAND_DEG = 1e-6
# An ellipsoidal height this far below the geoid (sea level) is almost always an altitude
# above sea level written as `height` where the geoid undulation N is positive. 20 m keeps
# the Netherlands (-7 m) and most coasts clear; the Caspian shore (-28 m) or Dead Sea
# (-430 m) must use altitude_msl, which the hint says.
MAX_BELOW_GEOID_M = 20.0
# Highest ground on Earth is 8849 m (Everest); scenes stand on the ground or on buildings.
MAX_GROUND_MSL_M = 9000.0
# Lowest dry land is the Dead Sea shore, about -430 m.
MIN_GROUND_MSL_M = -450.0
# Bounds on the work hostile input can cause (a manifest is at most 4 MB): stops x route
# coordinates measured (~1 s), and far stops measured one by one (each costs O(stops)).
MAX_ROUTE_PAIRS = 20_000_000
MAX_FAR_STOPS = 50


@dataclass(frozen=True)
class _Placed:
    """One anchor as written (`raw`) and as parsed (WGS84), with where it is."""

    stop: str  # id of the stop it belongs to
    where: str  # JSON pointer of the anchor object
    raw: dict
    lat: float
    lon: float
    datum: str  # the datum its lat/lon were written in

    @property
    def written(self) -> tuple[Any, Any]:
        """(lat, lon) exactly as the creator wrote them."""
        if "geopose" in self.raw:
            pos = self.raw["geopose"]["position"]
            return pos["lat"], pos["lon"]
        return self.raw["lat"], self.raw["lon"]

    @property
    def lat_field(self) -> str:
        return self.where + ("/geopose/position/lat" if "geopose" in self.raw else "/lat")

    def swapped(self) -> tuple[float, float] | None:
        """WGS84 (lat, lon) if the written latitude and longitude are swapped back, or None
        when the written longitude cannot be a latitude."""
        lat, lon = self.written
        return _wgs84(float(lon), float(lat), self.datum)


@dataclass(frozen=True)
class _RoutePoint:
    index: int
    raw: list  # [lon, lat] or [lon, lat, alt] as written
    lat: float
    lon: float
    datum: str

    def swapped(self) -> tuple[float, float] | None:
        return _wgs84(float(self.raw[0]), float(self.raw[1]), self.datum)


def placement_issues(tour: Tour, data: dict, file: str | None) -> list[Issue]:
    """Every placement problem of a parsed `Tour` (errors and warnings), given the decoded
    manifest `data` it came from (for what the creator actually wrote).

    `data` must be the manifest `tour` was parsed from: stops, scenes and route
    coordinates correspond one to one."""
    limit_m = _limit_km(data) * 1000.0
    tour_datum = data.get("datum", "wgs84")
    issues: list[Issue] = []
    stops: list[_Placed] = []
    radii: list[float] = []
    scene_pairs: list[tuple[_Placed, _Placed]] = []
    for si, (stop, raw_stop) in enumerate(zip(tour.stops, data["stops"], strict=False)):
        where = f"/stops/{si}"
        raw_scenes = raw_stop.get("scenes", [])
        placed = _placed(stop.id, f"{where}/anchor", raw_stop["anchor"], stop.anchor)
        uses_stop_anchor = any("anchor" not in s for s in raw_scenes)
        usable = _anchor_issues(placed, issues, heading_matters=uses_stop_anchor)
        if usable:
            stops.append(placed)
            radii.append(stop.trigger.radius_m)
        for ci, (scene, raw_scene) in enumerate(zip(stop.scenes, raw_scenes, strict=False)):
            if "anchor" not in raw_scene:
                continue
            own = _placed(stop.id, f"{where}/scenes/{ci}/anchor", raw_scene["anchor"],
                          scene.anchor)
            if _anchor_issues(own, issues, heading_matters=True) and usable:
                scene_pairs.append((own, placed))
    route = _route(tour, data, tour_datum, issues)
    issues += _spread_issues(stops, radii, route, limit_m)
    issues += _scene_issues(scene_pairs, limit_m)
    return sorted((replace(i, file=file) for i in issues), key=_order)


# ------------------------------------------------------------------ one anchor at a time


def _anchor_issues(p: _Placed, issues: list[Issue], *, heading_matters: bool) -> bool:
    """Append the issues of one anchor on its own; True if it is usable for distances."""
    for suffix, value in _numbers(p.raw):
        if not _finite(value):
            name = suffix.rsplit("/", 1)[-1]
            issues.append(Issue("not_finite", f"{name} is not a finite number", None,
                                p.where + suffix, stop=p.stop, hint="write a number"))
            return False
    if abs(p.lat) < NULL_ISLAND_DEG and abs(p.lon) < NULL_ISLAND_DEG:
        issues.append(Issue(
            "null_island", "the anchor is at latitude 0, longitude 0 (Null Island, in the "
            "Gulf of Guinea)", None, p.lat_field, stop=p.stop,
            hint="give the real latitude and longitude of the place"))
        return False
    issues.extend(_height_issues(p))
    if heading_matters and "geopose" not in p.raw and "heading" not in p.raw:
        issues.append(Issue(
            "no_heading", "no heading: the scene's −Z faces north (heading 0)", None, p.where,
            stop=p.stop, severity="warning",
            hint="add heading: the compass bearing, in degrees clockwise from north, that "
                 "the scene's −Z axis should face"))
    return True


def _height_issues(p: _Placed) -> list[Issue]:
    n = float(geoid.geoid_undulation(p.lat, p.lon))
    if "geopose" in p.raw:
        h, field, name = float(p.raw["geopose"]["position"]["h"]), "/geopose/position/h", "h"
    elif "height" in p.raw:
        h, field, name = float(p.raw["height"]), "/height", "height"
    else:
        msl = float(p.raw["altitude_msl"])
        field = p.where + "/altitude_msl"
        if msl > MAX_GROUND_MSL_M:
            return [Issue("altitude_too_high", f"altitude_msl {msl:g} m is higher than any "
                          f"ground on Earth (limit {MAX_GROUND_MSL_M:g} m)", None, field,
                          stop=p.stop, hint="give the altitude above sea level in metres "
                          "(from feet: divide by 3.281)")]
        if msl < MIN_GROUND_MSL_M:
            return [Issue("altitude_too_low", f"altitude_msl {msl:g} m is lower than any land "
                          f"on Earth (limit {MIN_GROUND_MSL_M:g} m)", None, field,
                          stop=p.stop, hint="give the altitude above sea level in metres; "
                          "only places below sea level are negative")]
        return []
    msl, field = h - n, p.where + field
    if msl < -MAX_BELOW_GEOID_M:
        if name == "h":
            hint = (f"GeoPose h is ellipsoidal: if {h:g} m is the altitude above sea level, "
                    f"write h: {h + n:.1f} (altitude + geoid undulation), or use lat/lon "
                    f"with altitude_msl: {h:g}")
        else:
            hint = (f"if {h:g} m is the altitude above sea level, write it as "
                    f"altitude_msl: {h:g} instead of height")
        return [Issue("height_below_geoid", f"{name} {h:g} m is ellipsoidal; sea level (the "
                      f"geoid) is at {n:.1f} m here, so the anchor would be {-msl:.0f} m "
                      f"below sea level (limit {MAX_BELOW_GEOID_M:g} m)", None, field,
                      stop=p.stop, hint=hint)]
    if msl > MAX_GROUND_MSL_M:
        return [Issue("altitude_too_high", f"{name} {h:g} m puts the anchor {msl:.0f} m above "
                      f"sea level, higher than any ground on Earth (limit "
                      f"{MAX_GROUND_MSL_M:g} m)", None, field, stop=p.stop,
                      hint=f"give the {name} in metres (from feet: divide by 3.281)")]
    return []


# ------------------------------------------------------------- stops against each other


def _spread_issues(stops: list[_Placed], radii: list[float], route: list[_RoutePoint],
                   limit_m: float) -> list[Issue]:
    """Swapped, far and off-route stops, and swapped or far route coordinates."""
    if not stops:
        return []
    issues: list[Issue] = []
    if len(stops) * len(route) > MAX_ROUTE_PAIRS:
        issues.append(Issue(
            "route_not_checked", f"the route has {len(route)} coordinates and the tour "
            f"{len(stops)} stops: too many pairs to check the route against the stops (limit "
            f"{MAX_ROUTE_PAIRS:,})", None, "/route/coordinates", severity="warning",
            hint="simplify the route: a point every 10 to 20 m is plenty"))
        route = []
    pts = np.array([(s.lat, s.lon) for s in stops])
    line = np.array([(r.lat, r.lon) for r in route]).reshape(-1, 2)
    labels, linked = geo.link_clusters(pts, limit_m)
    d_route = geo.polyline_distances_m(pts, line)
    in_main, route_in_main = _reference(labels, d_route, limit_m, bool(route))
    main = pts[in_main]
    if route and len(main):
        route_issues, bad = _route_issues(route, main, limit_m)
        issues += route_issues
        if bad:
            # A coordinate reported already must not also make the route miss its stops.
            line = np.array([(r.lat, r.lon) for r in route if r.index not in bad])
            line = line.reshape(-1, 2)
            d_route = geo.polyline_distances_m(pts, line)
            route_in_main = route_in_main and len(line) > 0
    detailed, unlisted = 0, 0
    for i, stop in enumerate(stops):
        d_line = float(d_route[i]) if route_in_main else None
        # Nearest other reference stop: known to be near when linked inside the reference;
        # otherwise the stop is far from the other stops, and measuring it costs O(n).
        d_stop = None
        if in_main[i] and linked[i]:
            d_stop = 0.0
        elif len(main) - int(in_main[i]) > 0:
            if detailed >= MAX_FAR_STOPS:
                unlisted += 1
                continue
            detailed += 1
            d_stop = _nearest_other(pts[i], pts, in_main, i)
        found = [d for d in (d_stop, d_line) if d is not None]
        if not found:
            continue  # nothing to compare with: a lone stop and no usable route
        if min(found) > limit_m:
            issue = _swapped_stop(stop, pts, in_main, i, line if route_in_main else None,
                                  limit_m, min(found))
            if issue:
                issues.append(issue)
                continue
        if max(found) > limit_m:
            issues.append(_far_stop(stop, d_stop, d_line, limit_m))
        elif d_line is not None and d_line > ROUTE_NEAR_M + radii[i]:
            issues.append(Issue(
                "route_misses_stop", f"the route passes {_dist(d_line)} from the stop, whose "
                f"trigger radius is {radii[i]:g} m", None, stops[i].lat_field,
                stop=stops[i].stop, severity="warning",
                hint="add a route point near the stop, or check the stop's coordinates"))
    if unlisted:
        issues.append(Issue(
            "stop_far", f"{unlisted} more stops are farther than {_dist(limit_m)} from the "
            f"rest of the tour (only the first {MAX_FAR_STOPS} are listed)", None, "/stops",
            hint="fix the stops listed first; check the coordinates, or raise "
                 "max_stop_distance_km"))
    return issues


def _reference(labels: np.ndarray, d_route: np.ndarray, limit_m: float,
               has_route: bool) -> tuple[np.ndarray, bool]:
    """Which stops (mask) and whether the route belong to the reference group."""
    weight: dict[int, float] = dict(Counter(labels.tolist()))
    route_groups = set(labels[d_route <= limit_m].tolist()) if has_route else set()
    # (weight, -first stop index) per candidate group; the route's own group sorts last.
    groups = {(w, -g): ({g}, False) for g, w in weight.items() if g not in route_groups}
    if has_route:
        first = min(route_groups, default=len(labels))
        merged = sum(weight[g] for g in route_groups) + ROUTE_WEIGHT
        groups[(merged, -first)] = (route_groups, True)
    members, with_route = groups[max(groups)]
    return np.isin(labels, list(members)), with_route


def _nearest_other(point: np.ndarray, pts: np.ndarray, in_main: np.ndarray, i: int) -> float:
    mask = in_main.copy()
    mask[i] = False
    return float(geo.nearest_distances_m(point, pts[mask])[0])


def _distances(point: tuple[float, float], pts: np.ndarray, in_main: np.ndarray, i: int,
               line: np.ndarray | None) -> float:
    """Distance from `point` to the nearest reference stop other than i, or the route."""
    best = _nearest_other(np.asarray(point), pts, in_main, i)
    if line is not None:
        best = min(best, float(geo.polyline_distances_m([point], line)[0]))
    return best


def _swapped_stop(stop: _Placed, pts: np.ndarray, in_main: np.ndarray, i: int,
                  line: np.ndarray | None, limit_m: float, d_now: float) -> Issue | None:
    swapped = stop.swapped()
    if swapped is None:
        return None
    d_swapped = _distances(swapped, pts, in_main, i, line)
    if d_swapped > limit_m:
        return None
    lat, lon = stop.written
    return Issue(
        "lat_lon_swapped", f"latitude and longitude look swapped: as written the stop is "
        f"{_dist(d_now)} from the rest of the tour, swapped it would be {_dist(d_swapped)} "
        "from it", None, stop.lat_field, stop=stop.stop,
        hint=f"write lat: {lon}, lon: {lat}")


def _far_stop(stop: _Placed, d_stop: float | None, d_line: float | None,
              limit_m: float) -> Issue:
    parts = []
    if d_stop is not None and d_stop > limit_m:
        parts.append(f"{_dist(d_stop)} from the nearest other stop")
    if d_line is not None and d_line > limit_m:
        parts.append(f"{_dist(d_line)} from the route")
    return Issue("stop_far", f"the stop is {' and '.join(parts)} (limit {_dist(limit_m)})",
                 None, stop.lat_field, stop=stop.stop,
                 hint="check the coordinates, or raise max_stop_distance_km")


def _route_issues(route: list[_RoutePoint], main: np.ndarray,
                  limit_m: float) -> tuple[list[Issue], set[int]]:
    """Route coordinates far from every reference stop, swapped or just far: the issues,
    and the indices of the coordinates they report."""
    line = np.array([(r.lat, r.lon) for r in route])
    dist = geo.nearest_distances_m(line, main)
    far = [(r, float(d)) for r, d in zip(route, dist, strict=True) if d > limit_m]
    if not far:
        return [], set()
    # Swapping back is only possible where the written longitude can be a latitude.
    alts = [(j, a) for j, (r, _) in enumerate(far) if (a := r.swapped()) is not None]
    d_alts = np.full(len(far), math.inf)
    if alts:
        d_alts[[j for j, _ in alts]] = geo.nearest_distances_m([a for _, a in alts], main)
    swapped: list[tuple[_RoutePoint, float, float]] = []
    elsewhere: list[tuple[_RoutePoint, float, float]] = []
    for (r, d), da in zip(far, d_alts.tolist(), strict=True):
        (swapped if da <= limit_m else elsewhere).append((r, d, da))
    issues = []
    if swapped:
        r, d, d_alt = swapped[0]
        pair = f"[{r.raw[1]}, {r.raw[0]}]"
        hint = f"GeoJSON order is [longitude, latitude]: write {pair}"
        if len(swapped) == len(route):
            issues.append(Issue(
                "route_swapped", "every route coordinate looks like [latitude, longitude]: "
                f"the route is {_dist(d)} from the nearest stop, swapped it would be "
                f"{_dist(d_alt)}", None, "/route/coordinates",
                hint="GeoJSON order is [longitude, latitude]: swap every pair, e.g. write "
                     f"{pair} for the first"))
        else:
            more = f" ({len(swapped)} coordinates look swapped)" if len(swapped) > 1 else ""
            issues.append(Issue(
                "route_swapped", f"the coordinate looks like [latitude, longitude]: it is "
                f"{_dist(d)} from the nearest stop, swapped it would be {_dist(d_alt)}{more}",
                None, f"/route/coordinates/{r.index}", hint=hint))
    if elsewhere:
        r, d, _ = elsewhere[0]
        more = f" ({len(elsewhere)} coordinates are that far)" if len(elsewhere) > 1 else ""
        issues.append(Issue(
            "route_far", f"the coordinate is {_dist(d)} from the nearest stop (limit "
            f"{_dist(limit_m)}){more}", None, f"/route/coordinates/{r.index}",
            hint="check the coordinates ([longitude, latitude]), or raise "
                 "max_stop_distance_km"))
    return issues, {r.index for r, _ in far}


def _scene_issues(pairs: list[tuple[_Placed, _Placed]], limit_m: float) -> list[Issue]:
    """A scene's own anchor far from its stop's: swapped or just far."""
    issues = []
    for own, stop in pairs:
        d = geo.haversine_m(own.lat, own.lon, stop.lat, stop.lon)
        if d <= limit_m:
            continue
        alt = own.swapped()
        d_alt = geo.haversine_m(*alt, stop.lat, stop.lon) if alt else math.inf
        if d_alt <= limit_m:
            lat, lon = own.written
            issues.append(Issue(
                "lat_lon_swapped", f"latitude and longitude look swapped: as written the "
                f"scene is {_dist(d)} from its stop, swapped it would be {_dist(d_alt)}",
                None, own.lat_field, stop=own.stop, hint=f"write lat: {lon}, lon: {lat}"))
        else:
            issues.append(Issue(
                "scene_far", f"the scene is {_dist(d)} from its stop (limit {_dist(limit_m)})",
                None, own.lat_field, stop=own.stop,
                hint="check the coordinates, or raise max_stop_distance_km"))
    return issues


# ---------------------------------------------------------------------------- helpers


def _limit_km(data: dict) -> float:
    value = data.get("max_stop_distance_km", DEFAULT_MAX_STOP_DISTANCE_KM)
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    return float(value) if ok and math.isfinite(value) and value > 0 else \
        DEFAULT_MAX_STOP_DISTANCE_KM


def _placed(stop_id: str, where: str, raw: dict, anchor: Anchor) -> _Placed:
    return _Placed(stop_id, where, raw, anchor.pose.lat, anchor.pose.lon, anchor.input_datum)


def _finite(value: Any) -> bool:
    try:
        return math.isfinite(value)
    except (OverflowError, TypeError):  # an integer too large for a float
        return False


def _wgs84(lat: float, lon: float, datum: str) -> tuple[float, float] | None:
    if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
        return None
    return geo.gcj02_to_wgs84(lat, lon) if datum == "gcj02" else (lat, lon)


def _numbers(raw: dict) -> list[tuple[str, float]]:
    """(pointer suffix, value) of every number in an anchor as written."""
    if "geopose" in raw:
        gp = raw["geopose"]
        return ([(f"/geopose/position/{k}", v) for k, v in gp["position"].items()]
                + [(f"/geopose/quaternion/{k}", v) for k, v in gp["quaternion"].items()])
    return [(f"/{k}", raw[k]) for k in ("lat", "lon", "heading", "height", "altitude_msl")
            if k in raw]


def _route(tour: Tour, data: dict, datum: str, issues: list[Issue]) -> list[_RoutePoint]:
    """The route's usable points; coordinates at 0,0 are reported once and left out."""
    raw = data.get("route", {}).get("coordinates", [])
    points, null = [], []
    for i, ((lon, lat), coord) in enumerate(zip(tour.route, raw, strict=False)):
        if not (math.isfinite(lat) and math.isfinite(lon)):
            continue  # parse_tour already refused it as out of range
        if abs(lat) < NULL_ISLAND_DEG and abs(lon) < NULL_ISLAND_DEG:
            null.append(i)
            continue
        points.append(_RoutePoint(i, coord, lat, lon, datum))
    if null:
        more = f" ({len(null)} coordinates are)" if len(null) > 1 else ""
        issues.append(Issue("null_island", f"the coordinate is at longitude 0, latitude 0 "
                            f"(Null Island){more}", None, f"/route/coordinates/{null[0]}",
                            hint="give the real [longitude, latitude] or remove the point"))
    return points


def _dist(m: float) -> str:
    return f"{m:.0f} m" if m < 1000 else f"{m / 1000:.1f} km"


def _order(issue: Issue) -> tuple:
    """Manifest order: route first, then stops by index, then by field."""
    parts = re.split(r"(\d+)", issue.field or "")
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in parts)
