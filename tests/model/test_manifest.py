"""The tour model: parsing, anchor conversion, and one clear issue per manifest problem."""

from __future__ import annotations

import copy

import pytest
from support import MINI_TOUR

from tourserver.errors import ManifestInvalid
from tourserver.model import geo, geoid
from tourserver.model.manifest import match_language, parse_tour


def issues_of(data: dict) -> list:
    with pytest.raises(ManifestInvalid) as info:
        parse_tour(data, "tour.yaml")
    return info.value.issues


def fields(data: dict) -> set[tuple[str, str]]:
    return {(i.code, i.field) for i in issues_of(data)}


def test_mini_tour_parses_with_anchor_forms():
    tour = parse_tour(copy.deepcopy(MINI_TOUR), "tour.yaml", expected_id="mini")
    assert [s.id for s in tour.stops] == ["mini-a", "mini-b"]
    a = tour.stops[0].anchor.pose
    # altitude_msl converts with the real geoid (about -38.7 m in Chongqing), not a constant
    assert a.h == pytest.approx(240 + geoid.geoid_undulation(29.5572, 106.5770), abs=1e-9)
    assert -39.5 < a.h - 240 < -38.0
    assert a.quaternion == pytest.approx(geo.heading_to_enu_quaternion(90))
    b = tour.stops[1].anchor
    assert b.pose.h == 150.0 and b.input_height == "ellipsoidal"
    assert tour.default_language == "en"
    assert [a.id for a in tour.anchors()] == ["mini-a", "mini-b"]


def test_gcj02_input_is_stored_as_wgs84():
    data = copy.deepcopy(MINI_TOUR)
    wgs = (29.5658, 106.5873)
    gcj = geo.wgs84_to_gcj02(*wgs)
    data["stops"][0]["anchor"] = {"lat": gcj[0], "lon": gcj[1], "height": 200, "datum": "gcj02"}
    pose = parse_tour(data).stops[0].anchor.pose
    assert (pose.lat, pose.lon) == pytest.approx(wgs, abs=1e-8)
    assert geo.haversine_m(gcj[0], gcj[1], *wgs) > 200  # the offset really was applied


def test_route_in_gcj02_is_converted():
    data = copy.deepcopy(MINI_TOUR)
    data["datum"] = "gcj02"
    tour = parse_tour(data)
    lon, lat = tour.route[0]
    assert geo.wgs84_to_gcj02(lat, lon) == pytest.approx((29.5572, 106.5770), abs=1e-8)


@pytest.mark.parametrize(
    ("mutate", "code", "field"),
    [
        (lambda d: d.pop("title"), "schema", "/"),
        (lambda d: d["stops"][0]["anchor"].update(lat=95), "schema", "/stops/0/anchor/lat"),
        (lambda d: d["languages"].append("english language"), "schema", "/languages/2"),
        (lambda d: d.update(timezone="Mars/Olympus"), "timezone_unknown", "/timezone"),
        (lambda d: d["stops"][1].update(id="mini-a"), "duplicate_id", "/stops/1/id"),
        (lambda d: d["stops"][0]["trigger"].update(exit_radius_m=10), "trigger_exit_inside",
         "/stops/0/trigger/exit_radius_m"),
        (lambda d: d["stops"][1]["narration"].pop("zh-Hans"), "missing_narration",
         "/stops/1/narration"),
        (lambda d: d["stops"][1]["narration"].update(
            fr=copy.deepcopy(d["stops"][1]["narration"]["en"])),
         "language_not_offered", "/stops/1/narration/fr"),
        (lambda d: d["stops"][1]["anchor"]["geopose"]["quaternion"].update(w=2),
         "quaternion_not_unit", "/stops/1/anchor/geopose/quaternion"),
        (lambda d: d["stops"][0]["anchor"].update(height=3), "schema", "/stops/0/anchor"),
        (lambda d: d["stops"][0]["scenes"][0].update(source="assets/x.obj"), "unsupported_type",
         "/stops/0/scenes/0/source"),
        (lambda d: d["stops"][0].update(title={"zh-Hans": "甲"}), "missing_default_language",
         "/stops/0/title"),
        (lambda d: d["lights_on"][0].update(start="25:00"), "schema", "/lights_on/0/start"),
        (lambda d: d["route"].update(type="Polygon"), "schema", "/route/type"),
        (lambda d: d.update(extra=1), "unknown_field", "/extra"),
    ],
)
def test_each_problem_is_named_with_its_field(mutate, code, field):
    data = copy.deepcopy(MINI_TOUR)
    mutate(data)
    found = fields(data)
    assert (code, field) in found, found


def test_every_issue_is_reported_not_just_the_first():
    data = copy.deepcopy(MINI_TOUR)
    data["timezone"] = "Nowhere/Land"
    data["stops"][1]["id"] = "mini-a"
    codes = {i.code for i in issues_of(data)}
    assert {"timezone_unknown", "duplicate_id"} <= codes


def test_issue_text_names_file_field_and_reason():
    data = copy.deepcopy(MINI_TOUR)
    data["stops"][0]["anchor"]["lat"] = 95
    text = str(issues_of(data)[0])
    assert text.startswith("tour.yaml: /stops/0/anchor/lat:") and "95" in text


def test_folder_name_must_match_id():
    with pytest.raises(ManifestInvalid) as info:
        parse_tour(copy.deepcopy(MINI_TOUR), "tour.yaml", expected_id="other")
    assert info.value.issues[0].code == "id_mismatch"


@pytest.mark.parametrize(
    ("wanted", "found"),
    [("zh-Hans", "zh-Hans"), ("zh", "zh-Hans"), ("ZH-hans", "zh-Hans"), ("zh-Hans-CN", "zh-Hans"),
     ("en-GB", "en"), ("fr", None), ("not a tag", None)],
)
def test_language_lookup(wanted, found):
    assert match_language(("en", "zh-Hans"), wanted) == found
