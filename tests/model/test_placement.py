"""Placement checks: content that would land in the wrong place is caught by validate."""

from __future__ import annotations

import copy
import re
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from support import MINI_TOUR

from tourserver.model import geo, geoid
from tourserver.model.manifest import parse_tour
from tourserver.model.placement import (
    DEFAULT_MAX_STOP_DISTANCE_KM,
    MAX_GROUND_MSL_M,
    MIN_GROUND_MSL_M,
    placement_issues,
)

DEMO = Path(__file__).resolve().parents[2] / "tours" / "chongqing-night" / "tour.yaml"

# Three real stops in Paris, a few km apart, and a route through them.
PARIS = [("notre-dame", 48.8530, 2.3499), ("louvre", 48.8606, 2.3376),
         ("eiffel", 48.8584, 2.2945)]
PARIS_ROUTE = [[lon, lat] for _, lat, lon in PARIS]


def make_stop(sid: str, lat: float, lon: float, **anchor) -> dict:
    stop = copy.deepcopy(MINI_TOUR["stops"][0])
    stop["id"] = sid
    stop["anchor"] = {"lat": lat, "lon": lon, "heading": 0, "altitude_msl": 35, **anchor}
    stop["scenes"] = [{"id": f"{sid}-scene", "source": "assets/mini/a.glb"}]
    return stop


def make_tour(stops=PARIS, route=PARIS_ROUTE) -> dict:
    data = copy.deepcopy(MINI_TOUR)
    data["timezone"] = "Europe/Paris"
    data["stops"] = [make_stop(*s) if isinstance(s, tuple) else s for s in stops]
    if route is None:
        data.pop("route")
    else:
        data["route"] = {"type": "LineString", "coordinates": copy.deepcopy(route)}
    return data


def check(data: dict, **extra) -> list:
    """Parse like load_tour does, then run the placement checks (with manifest fields
    the schema may not know yet added after parsing)."""
    tour = parse_tour(data, "tour.yaml")
    return placement_issues(tour, {**data, **extra}, "tour.yaml")


def only(issues: list, code: str):
    assert [i.code for i in issues] == [code], [str(i) for i in issues]
    assert issues[0].file == "tour.yaml"
    return issues[0]


# --------------------------------------------------------------------- clean tours


def test_demo_tour_has_no_placement_issues():
    data = yaml.safe_load(DEMO.read_text("utf-8"))
    assert check(data) == []


@pytest.mark.parametrize("route", [PARIS_ROUTE, None])
def test_three_stops_a_few_km_apart_are_clean(route):
    assert check(make_tour(route=route)) == []


# ---------------------------------------------------------------- swapped lat / lon


@pytest.mark.parametrize("route", [PARIS_ROUTE, None])
def test_swapped_stop_anchor_is_an_error_with_the_fix(route):
    stops = [*PARIS[:2], ("eiffel", 2.2945, 48.8584)]
    issue = only(check(make_tour(stops, route)), "lat_lon_swapped")
    assert issue.is_error and issue.stop == "eiffel"
    assert issue.field == "/stops/2/anchor/lat"
    assert "look swapped" in issue.message
    # Nearest of the other stops (or the route, which passes a little closer).
    far = geo.haversine_m(2.2945, 48.8584, 48.8606, 2.3376) / 1000
    shown = re.search(r"the stop is ([\d.]+) km from the rest of the tour", issue.message)
    assert float(shown[1]) == pytest.approx(far, rel=1e-3)
    assert issue.hint == "write lat: 48.8584, lon: 2.2945"


def test_the_swapped_stop_is_found_even_when_it_comes_first():
    stops = [("notre-dame", 2.3499, 48.8530), *PARIS[1:]]
    issue = only(check(make_tour(stops, route=None)), "lat_lon_swapped")
    assert (issue.stop, issue.field) == ("notre-dame", "/stops/0/anchor/lat")


def test_one_stop_tour_checks_its_anchor_against_the_route():
    issue = only(check(make_tour([("louvre", 2.3376, 48.8606)])), "lat_lon_swapped")
    assert (issue.stop, issue.field) == ("louvre", "/stops/0/anchor/lat")
    assert issue.hint == "write lat: 48.8606, lon: 2.3376"


def test_swapped_geopose_position_names_the_geopose_field():
    stop = make_stop("eiffel", 0, 0)
    stop["anchor"] = {"geopose": {"position": {"lat": 2.2945, "lon": 48.8584, "h": 80.0},
                                  "quaternion": {"x": 0, "y": 0, "z": 0, "w": 1}}}
    issue = only(check(make_tour([*PARIS[:2], stop])), "lat_lon_swapped")
    assert issue.field == "/stops/2/anchor/geopose/position/lat"


def test_a_whole_swapped_route_is_reported_once():
    route = [[lat, lon] for lon, lat in PARIS_ROUTE]
    issue = only(check(make_tour(route=route)), "route_swapped")
    assert issue.is_error and issue.field == "/route/coordinates"
    assert "every route coordinate" in issue.message
    assert "[2.3499, 48.853]" in issue.hint


def test_one_swapped_route_coordinate_is_named():
    route = copy.deepcopy(PARIS_ROUTE)
    route[1] = [48.8606, 2.3376]
    issue = only(check(make_tour(route=route)), "route_swapped")
    assert issue.field == "/route/coordinates/1"
    assert "write [2.3376, 48.8606]" in issue.hint


# ------------------------------------------------------------------ stops far away


def test_stop_far_from_the_tour_and_route_names_both_distances_and_the_limit():
    lyon = (45.7640, 4.8357)
    issue = only(check(make_tour([*PARIS[:2], ("lyon", *lyon)])), "stop_far")
    assert issue.is_error and (issue.stop, issue.field) == ("lyon", "/stops/2/anchor/lat")
    to_stop = geo.haversine_m(*lyon, 48.8530, 2.3499) / 1000
    assert f"{to_stop:.1f} km from the nearest other stop" in issue.message
    assert "km from the route" in issue.message
    assert f"(limit {DEFAULT_MAX_STOP_DISTANCE_KM:.1f} km)" in issue.message
    assert issue.hint == "check the coordinates, or raise max_stop_distance_km"


def test_the_limit_comes_from_the_manifest():
    far = ("versailles", 48.8049, 2.1204)  # ~17 km from the Eiffel tower
    assert [i.code for i in check(make_tour([*PARIS, far], route=None))] == []
    issue = only(check(make_tour([*PARIS, far], route=None), max_stop_distance_km=10),
                 "stop_far")
    assert "(limit 10.0 km)" in issue.message and issue.stop == "versailles"


def test_stop_near_the_others_but_far_from_the_route():
    a = PARIS[0]
    b_lat, b_lon = geo.destination_point(a[1], a[2], 90, 25_000)
    c_lat, c_lon = geo.destination_point(a[1], a[2], 90, 50_000)
    route = [[a[2], a[1]], [a[2] + 0.01, a[1]]]  # a short route at the first stop only
    issues = check(make_tour([a, ("b", b_lat, b_lon), ("c", c_lat, c_lon)], route))
    assert [(i.code, i.stop, i.severity) for i in issues] == [
        ("route_misses_stop", "b", "warning"), ("stop_far", "c", "error")]
    assert "from the route" in issues[1].message
    assert "nearest other stop" not in issues[1].message


def test_route_that_misses_a_stop_is_a_warning():
    issue = only(check(make_tour(route=PARIS_ROUTE[:2])), "route_misses_stop")
    assert issue.severity == "warning" and not issue.is_error
    assert (issue.stop, issue.field) == ("eiffel", "/stops/2/anchor/lat")
    assert "passes 3.2 km from the stop" in issue.message and "50 m" in issue.message


def test_route_coordinate_far_from_every_stop():
    route = [*PARIS_ROUTE, [4.8357, 45.7640]]
    issue = only(check(make_tour(route=route)), "route_far")
    assert issue.field == "/route/coordinates/3" and "km from the nearest stop" in issue.message


def test_scene_anchor_far_from_its_stop_or_swapped():
    stop = make_stop("louvre", 48.8606, 2.3376)
    stop["scenes"][0]["anchor"] = {"lat": 2.3376, "lon": 48.8606, "heading": 0,
                                   "altitude_msl": 35}
    issue = only(check(make_tour([PARIS[0], stop, PARIS[2]])), "lat_lon_swapped")
    assert (issue.stop, issue.field) == ("louvre", "/stops/1/scenes/0/anchor/lat")
    stop["scenes"][0]["anchor"].update(lat=45.7640, lon=4.8357)
    issue = only(check(make_tour([PARIS[0], stop, PARIS[2]])), "scene_far")
    assert "from its stop (limit 30.0 km)" in issue.message


# -------------------------------------------------------------------- Null Island


def test_stop_at_null_island_is_one_error():
    issue = only(check(make_tour([*PARIS[:2], ("eiffel", 0, 0)])), "null_island")
    assert issue.is_error and (issue.stop, issue.field) == ("eiffel", "/stops/2/anchor/lat")


def test_scene_anchor_and_route_point_at_null_island():
    stop = make_stop("louvre", 48.8606, 2.3376)
    stop["scenes"][0]["anchor"] = {"lat": 0.0, "lon": 1e-7, "heading": 0, "height": 80}
    route = [*PARIS_ROUTE, [0, 0], [0, 0]]
    issues = check(make_tour([PARIS[0], stop, PARIS[2]], route))
    assert [(i.code, i.field) for i in issues] == [
        ("null_island", "/route/coordinates/3"),
        ("null_island", "/stops/1/scenes/0/anchor/lat")]
    assert "2 coordinates" in issues[0].message


# ------------------------------------------------------------------------ heights


def test_sea_level_altitude_given_as_height():
    n = geoid.geoid_undulation(48.8530, 2.3499)  # about +44.5 m in Paris
    stops = [("notre-dame", 48.8530, 2.3499, ), *PARIS[1:]]
    data = make_tour(stops)
    data["stops"][0]["anchor"] = {"lat": 48.8530, "lon": 2.3499, "heading": 0, "height": 5}
    issue = only(check(data), "height_below_geoid")
    assert issue.is_error and (issue.stop, issue.field) == ("notre-dame",
                                                            "/stops/0/anchor/height")
    assert f"{n - 5:.0f} m below sea level" in issue.message
    assert "altitude_msl: 5" in issue.hint
    data["stops"][0]["anchor"]["height"] = 35 + n  # the right ellipsoidal height
    assert check(data) == []


def test_geopose_h_below_the_geoid_suggests_the_ellipsoidal_value():
    stop = make_stop("eiffel", 0, 0)
    stop["anchor"] = {"geopose": {"position": {"lat": 48.8584, "lon": 2.2945, "h": 10},
                                  "quaternion": {"x": 0, "y": 0, "z": 0, "w": 1}}}
    issue = only(check(make_tour([*PARIS[:2], stop])), "height_below_geoid")
    n = geoid.geoid_undulation(48.8584, 2.2945)
    assert issue.field == "/stops/2/anchor/geopose/position/h"
    assert f"h: {10 + n:.1f}" in issue.hint


def test_chongqing_heights_with_negative_undulation_are_fine():
    data = copy.deepcopy(MINI_TOUR)
    data["stops"][0]["anchor"] = {"lat": 29.5572, "lon": 106.5770, "heading": 90,
                                  "height": 200}
    assert check(data) == []


@pytest.mark.parametrize(("anchor", "code", "field"), [
    ({"altitude_msl": 12000}, "altitude_too_high", "altitude_msl"),
    ({"altitude_msl": MIN_GROUND_MSL_M - 100}, "altitude_too_low", "altitude_msl"),
    ({"height": 30000}, "altitude_too_high", "height"),
])
def test_heights_no_ground_has(anchor, code, field):
    data = make_tour()
    data["stops"][1]["anchor"] = {"lat": 48.8606, "lon": 2.3376, "heading": 0, **anchor}
    issue = only(check(data), code)
    assert issue.is_error and (issue.stop, issue.field) == ("louvre", f"/stops/1/anchor/{field}")
    assert f"{MAX_GROUND_MSL_M:g} m" in issue.message or f"{MIN_GROUND_MSL_M:g} m" in \
        issue.message


@pytest.mark.parametrize("msl", [8848, -420, 0])
def test_extreme_but_real_altitudes_pass(msl):
    data = make_tour()
    data["stops"][1]["anchor"]["altitude_msl"] = msl
    assert check(data) == []


# ------------------------------------------------------------------------ heading


def test_missing_heading_is_a_warning_where_a_scene_uses_the_anchor():
    data = make_tour()
    del data["stops"][0]["anchor"]["heading"]
    issue = only(check(data), "no_heading")
    assert issue.severity == "warning"
    assert (issue.stop, issue.field) == ("notre-dame", "/stops/0/anchor")
    assert issue.message == "no heading: the scene's −Z faces north (heading 0)"
    data["stops"][0]["scenes"] = []  # nothing is placed with it
    assert check(data) == []


def test_scene_anchor_without_heading_warns():
    data = make_tour()
    data["stops"][2]["scenes"][0]["anchor"] = {"lat": 48.8583, "lon": 2.2944, "height": 80}
    issue = only(check(data), "no_heading")
    assert issue.field == "/stops/2/scenes/0/anchor"


# ---------------------------------------------------------------- hostile numbers


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # parse_tour
def test_nan_coordinates_are_an_error_not_a_traceback():
    data = make_tour()
    data["stops"][1]["anchor"]["lat"] = float("nan")
    issue = only(check(data), "not_finite")
    assert issue.field == "/stops/1/anchor/lat" and issue.stop == "louvre"


def test_many_stops_and_a_long_route_stay_fast():
    rng = np.random.default_rng(7)
    lat = 48.85 + rng.uniform(-0.05, 0.05, 1500)
    lon = 2.35 + rng.uniform(-0.08, 0.08, 1500)
    stops = [(f"s{i}", float(a), float(o)) for i, (a, o) in enumerate(zip(lat, lon, strict=True))]
    route = [[float(o), float(a)] for a, o in zip(lat, lon, strict=True)] * 4
    data = make_tour(stops, route)
    tour = parse_tour(data, "tour.yaml")
    start = time.perf_counter()
    assert placement_issues(tour, data, "tour.yaml") == []
    assert time.perf_counter() - start < 10


# --------------------------------------------------------------------- geo helpers


def test_polyline_distance_is_cross_track_inside_and_vertex_outside():
    line = [(0.0, 0.0), (0.0, 10.0)]
    d = geo.polyline_distances_m([(0.01, 5.0), (0.0, -170.0), (0.0, 12.0)], line)
    assert d[0] == pytest.approx(geo.haversine_m(0.01, 5.0, 0.0, 5.0), rel=1e-9)
    assert d[1] == pytest.approx(geo.haversine_m(0.0, -170.0, 0.0, 0.0), rel=1e-9)
    assert d[2] == pytest.approx(geo.haversine_m(0.0, 12.0, 0.0, 10.0), rel=1e-9)
    assert np.isinf(geo.polyline_distances_m([(1.0, 1.0)], np.empty((0, 2)))).all()


def test_link_clusters_matches_brute_force():
    rng = np.random.default_rng(3)
    pts = np.column_stack((rng.uniform(48.0, 48.5, 300), rng.uniform(2.0, 2.8, 300)))
    labels, linked = geo.link_clusters(pts, 1500.0)
    d = np.array([[geo.haversine_m(*a, *b) for b in pts] for a in pts])
    np.fill_diagonal(d, np.inf)
    assert (linked == (d.min(axis=1) <= 1500.0)).all()
    for i in range(len(pts)):
        for j in np.flatnonzero(d[i] <= 1500.0):
            assert labels[i] == labels[j]
    assert len(set(labels.tolist())) > 10  # not everything in one cluster


def test_in_gcj02_area():
    assert geo.in_gcj02_area(29.56, 106.58)  # Chongqing
    assert not geo.in_gcj02_area(48.85, 2.35)  # Paris
    assert not geo.in_gcj02_area(-33.87, 151.21)  # Sydney
