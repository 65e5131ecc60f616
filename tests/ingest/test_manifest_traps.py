"""Manifest traps creators fall into: YAML's implicit types, duplicate keys, two manifests,
misspelt fields, text in languages not offered, datums. Each issue names the stop by id, the
manifest file, its line and the field, and says how to fix it."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from support import MINI_TOUR, REPO, make_mini_root

from tourserver.errors import Issue, ManifestInvalid
from tourserver.ingest import tours
from tourserver.ingest.manifest_text import decode_yaml
from tourserver.ingest.tours import load_all, load_tour, locate, read_manifest
from tourserver.model import geo
from tourserver.model.manifest import parse_tour

NARRATION = REPO / "assets/chongqing-night/narration/en"


def content(tmp_path: Path, data: dict | None = None) -> Path:
    """The mini tour with real narration audio (the file checks read audio by its bytes)."""
    root = make_mini_root(tmp_path / "content", data)
    for lang in ("en", "zh-Hans"):
        for ext in ("m4a", "mp3"):
            shutil.copyfile(NARRATION / f"jiefangbei.{ext}", root / f"assets/mini/{lang}/a.{ext}")
    return root


def write(root: Path, text: str, name: str = "tour.yaml") -> Path:
    folder = root / "tours" / "mini"
    for old in folder.iterdir():
        old.unlink()
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def dump(data: dict, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(data, ensure_ascii=False, indent=2)
    return yaml.safe_dump(data, allow_unicode=True, sort_keys=False)


def line_of(text: str, needle: str, nth: int = 1) -> int:
    """1-based line of the nth occurrence of `needle`."""
    at = -1
    for _ in range(nth):
        at = text.index(needle, at + 1)
    return text.count("\n", 0, at) + 1


def problems(root: Path) -> list[Issue]:
    with pytest.raises(ManifestInvalid) as info:
        load_tour(root / "tours" / "mini", root)
    return info.value.issues


def only(issues: list[Issue], code: str) -> Issue:
    mine = [i for i in issues if i.code == code]
    assert len(mine) == 1, issues
    issue = mine[0]
    # A message names neither the file nor the code (separate fields), nor /stops/N.
    assert Path(issue.file).name not in issue.message and code not in issue.message
    assert "/stops/" not in issue.message
    assert issue.hint
    return issue


# ------------------------------------------------------------------ YAML 1.2, not 1.1


def test_yaml_1_1_booleans_and_sexagesimal_times_stay_strings(tmp_path):
    data = copy.deepcopy(MINI_TOUR)
    data["languages"] = ["en", "no"]
    data["title"]["no"] = "Minitur"
    for stop in data["stops"]:
        stop["narration"]["no"] = stop["narration"].pop("zh-Hans")
    data["stops"][0]["title"].pop("zh-Hans")
    data["stops"][0]["trigger"]["level"] = "off"
    data["lights_on"][0].update(start="20:00", end="21:30")
    text = dump(data, "yaml")
    # pyyaml (YAML 1.1) quotes these; a creator writing by hand does not.
    for word in ("no", "off", "20:00", "21:30"):
        text = text.replace(f"'{word}'", word)
    assert "- no\n" in text and "start: 20:00" in text and "level: off" in text
    root = content(tmp_path)
    write(root, text)
    loaded = load_tour(root / "tours/mini", root)
    assert loaded.tour.languages == ("en", "no")
    assert loaded.tour.lights_on[0].start == "20:00" and loaded.tour.lights_on[0].end == "21:30"
    assert loaded.tour.stops[0].trigger.level == "off"
    assert read_manifest(root / "tours/mini/tour.yaml")["languages"] == ["en", "no"]


def test_a_number_where_text_is_expected_says_exactly_what_to_quote(tmp_path):
    root = content(tmp_path)
    text = dump(MINI_TOUR, "yaml").replace("title:\n    en: B\n", "title:\n    en: 1984\n")
    write(root, text)
    issue = only(problems(root), "schema")
    assert issue.stop == "mini-b" and issue.field == "/stops/1/title/en"
    assert issue.line == line_of(text, "en: 1984")
    assert issue.hint == 'write it in quotes: "1984"'


def test_a_yaml_1_1_document_is_still_told_what_to_quote(tmp_path):
    root = content(tmp_path)
    text = "%YAML 1.1\n---\n" + dump(MINI_TOUR, "yaml").replace("- zh-Hans\n", "- no\n", 1)
    write(root, text)
    issue = [i for i in problems(root) if i.field == "/languages/1"][0]
    assert issue.code == "schema" and issue.hint == 'write it in quotes: "no"'
    assert issue.line == line_of(text, "- no")


def test_syntax_error_keeps_line_and_column_and_says_what_to_do(tmp_path):
    root = content(tmp_path)
    write(root, "id: mini\ntitle:\n\ten: x\n")
    issue = only(problems(root), "syntax")
    assert issue.line == 3 and "column 1" in issue.message and "tabs" in issue.hint


# ------------------------------------------------------------------------ duplicates


@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_duplicate_key_names_the_key_and_both_lines(tmp_path, fmt):
    root = content(tmp_path)
    if fmt == "yaml":
        text = dump(MINI_TOUR, "yaml").replace("  trigger:\n    radius_m: 80\n",
                                               "  trigger:\n    radius_m: 80\n    radius_m: 8\n")
        needle = "radius_m: 8\n"
    else:
        text = dump(MINI_TOUR, "json").replace('"radius_m": 80\n',
                                               '"radius_m": 80,\n      "radius_m": 8\n')
        needle = '"radius_m": 8\n'
    write(root, text, f"tour.{fmt}")
    issue = only(problems(root), "duplicate_key")
    first, second = line_of(text, needle.replace("8\n", "80")), line_of(text, needle)
    assert issue.line == second and f"lines {first} and {second}" in issue.message
    assert "`radius_m`" in issue.message
    assert issue.stop == "mini-b" and issue.field == "/stops/1/trigger/radius_m"
    assert issue.file.endswith(f"tour.{fmt}") and issue.is_error


def test_two_manifests_in_one_folder_is_an_error_naming_both(tmp_path):
    root = content(tmp_path)
    (root / "tours/mini/tour.json").write_text(json.dumps(MINI_TOUR))
    issue = only(problems(root), "manifest_ambiguous")
    assert "tour.json" in issue.message and "tour.yaml" in issue.message
    _, issues = load_all(root)
    assert [i.code for i in issues] == ["manifest_ambiguous"]


# -------------------------------------------------------------------- misspelt fields


@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_misspelt_field_gets_did_you_mean(tmp_path, fmt):
    data = copy.deepcopy(MINI_TOUR)
    data["stops"][1]["trigger"] = {"raduis_m": 80}
    data["langauges"] = data.pop("languages")
    root = content(tmp_path)
    text = dump(data, fmt)
    write(root, text, f"tour.{fmt}")
    issues = problems(root)
    # One mistake, one issue: no "missing radius_m" beside "did you mean radius_m".
    assert [i.code for i in issues] == ["unknown_field", "unknown_field"], issues
    top, trigger = sorted(issues, key=lambda i: i.field)
    assert top.message == "unknown field `langauges`; did you mean `languages`?"
    assert top.field == "/langauges" and top.stop is None
    assert trigger.message == "unknown field `raduis_m`; did you mean `radius_m`?"
    assert trigger.field == "/stops/1/trigger/raduis_m" and trigger.stop == "mini-b"
    assert trigger.line == line_of(text, "raduis_m") and trigger.hint == "rename it to `radius_m`"


def test_unknown_field_with_no_near_name_lists_the_allowed_ones(tmp_path):
    data = copy.deepcopy(MINI_TOUR)
    data["stops"][0]["anchor"]["colour"] = "red"
    root = content(tmp_path, data)
    issue = only(problems(root), "unknown_field")
    assert issue.message == "unknown field `colour`" and issue.stop == "mini-a"
    assert "heading" in issue.hint and "altitude_msl" in issue.hint


# -------------------------------------------------------- languages the tour lacks


def test_text_in_a_language_not_offered_is_a_warning(tmp_path):
    data = copy.deepcopy(MINI_TOUR)
    data["title"]["fr"] = "Mini visite"
    data["stops"][1]["summary"] = {"en": "B", "de": "B"}
    data["stops"][0]["scenes"][0]["title"] = {"en": "A", "ja": "A"}
    root = content(tmp_path, data)
    text = (root / "tours/mini/tour.yaml").read_text()
    loaded = load_tour(root / "tours/mini", root)
    found = {i.field: i for i in loaded.warnings}
    assert set(found) == {"/title/fr", "/stops/1/summary/de", "/stops/0/scenes/0/title/ja"}
    for issue in found.values():
        assert issue.code == "language_not_offered" and issue.severity == "warning"
        assert "en, zh-Hans" in issue.message and issue.hint
    assert found["/stops/1/summary/de"].stop == "mini-b"
    assert found["/stops/0/scenes/0/title/ja"].stop == "mini-a"
    assert found["/title/fr"].line == line_of(text, "fr: Mini visite")
    assert "de" in found["/stops/1/summary/de"].message
    # load_all hands the warnings on; their severity tells them from errors.
    loaded_all, issues = load_all(root)
    assert len(loaded_all) == 1 and {i.field for i in issues} == set(found)
    assert not any(i.is_error for i in issues)


def test_narration_in_a_language_not_offered_stays_an_error(tmp_path):
    data = copy.deepcopy(MINI_TOUR)
    data["stops"][1]["narration"]["fr"] = copy.deepcopy(data["stops"][1]["narration"]["en"])
    data["title"]["fr"] = "Mini visite"
    root = content(tmp_path, data)
    issues = problems(root)
    errors = [i for i in issues if i.is_error]
    assert [(i.code, i.field, i.stop) for i in errors] == [
        ("language_not_offered", "/stops/1/narration/fr", "mini-b")]
    # The warnings come along, so the creator sees everything at once.
    assert any(i.field == "/title/fr" and i.severity == "warning" for i in issues)


# ------------------------------------------------------- every issue is located


def test_every_issue_names_the_stop_and_line_never_stops_n(tmp_path):
    data = copy.deepcopy(MINI_TOUR)
    data["stops"][1]["anchor"]["geopose"]["position"]["lat"] = 123
    root = content(tmp_path, data)
    text = (root / "tours/mini/tour.yaml").read_text()
    issue = only(problems(root), "schema")
    assert issue.stop == "mini-b" and issue.field == "/stops/1/anchor/geopose/position/lat"
    assert issue.line == line_of(text, "lat: 123")


def test_issues_from_other_checks_are_located_in_load_tour(tmp_path, monkeypatch):
    def placement(tour, data, file):
        return [Issue("stop_far", "2 km from /stops/0/anchor", file, "/stops/1/anchor",
                      hint="check it"),
                Issue("heading_missing", "no heading", file, "/stops/1/anchor/heading",
                      hint="add a heading", severity="warning")]

    monkeypatch.setattr(tours, "placement_issues", placement)
    root = content(tmp_path)
    text = (root / "tours/mini/tour.yaml").read_text()
    issues = problems(root)
    far = only(issues, "stop_far")
    assert far.stop == "mini-b" and far.line == line_of(text, "- anchor:", 2)
    assert far.message == "2 km from stop 'mini-a' (anchor)"
    heading = only(issues, "heading_missing")
    assert heading.severity == "warning" and heading.stop == "mini-b"
    assert heading.line == far.line  # a missing field: its object's line


def test_placement_warnings_alone_do_not_fail_the_tour(tmp_path, monkeypatch):
    seen = {}

    def placement(tour, data, file):
        seen["limit"] = data.get("max_stop_distance_km")
        return [Issue("heading_missing", "no heading", file, "/stops/1/anchor",
                      hint="add a heading", severity="warning")]

    monkeypatch.setattr(tours, "placement_issues", placement)
    data = copy.deepcopy(MINI_TOUR)
    data["max_stop_distance_km"] = 12.5
    root = content(tmp_path, data)
    loaded = load_tour(root / "tours/mini", root)
    assert seen["limit"] == 12.5
    assert [(w.code, w.stop) for w in loaded.warnings] == [("heading_missing", "mini-b")]


@pytest.mark.parametrize("value", [0, -3, "30"])
def test_max_stop_distance_must_be_a_positive_number(tmp_path, value):
    data = copy.deepcopy(MINI_TOUR)
    data["max_stop_distance_km"] = value
    root = content(tmp_path, data)
    issue = only(problems(root), "schema")
    assert issue.field == "/max_stop_distance_km" and issue.line


def test_ids_shared_between_tours_are_located(tmp_path):
    root = content(tmp_path)
    other = copy.deepcopy(MINI_TOUR)
    other["id"] = "other"
    make_mini_root(root, other)
    _, issues = load_all(root)
    dup = [i for i in issues if i.code == "duplicate_id"]
    # mini-a (stop and its anchor), mini-a-scene, mini-b: one issue each
    assert sorted(i.stop for i in dup) == ["mini-a", "mini-a", "mini-b"], dup
    for issue in dup:
        assert issue.file.endswith("tours/other/tour.yaml") and issue.line and issue.hint


def test_locate_leaves_issues_about_other_files_alone():
    text = decode_yaml("stops:\n- id: s1\n", "tour.yaml")
    other = Issue("x", "bad", "assets/a.glb", "/stops/0")
    assert locate(other, text, "tour.yaml") is other
    mine = locate(Issue("x", "see /stops/0/anchor/lat", None, "/stops/0/anchor"), text,
                  "tour.yaml")
    assert (mine.file, mine.line, mine.stop) == ("tour.yaml", 2, "s1")
    assert mine.message == "see stop 's1' (anchor/lat)"


# ---------------------------------------------------------------- hostile manifests


def test_alias_bomb_and_deep_nesting_are_refused_quickly(tmp_path):
    root = content(tmp_path)
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 10)}]\n"
        for i in range(9))
    write(root, bomb)
    assert only(problems(root), "manifest_too_complex").hint
    write(root, "[" * 50_000)
    assert only(problems(root), "syntax")


@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_non_finite_numbers_are_refused_at_their_field(tmp_path, fmt):
    root = content(tmp_path)
    text = dump(MINI_TOUR, fmt)
    text = (text.replace("lat: 29.5572", "lat: .nan") if fmt == "yaml"
            else text.replace('"lat": 29.5572', '"lat": NaN'))
    write(root, text, f"tour.{fmt}")
    issue = only(problems(root), "schema")
    assert issue.field == "/stops/0/anchor/lat" and issue.stop == "mini-a"


def test_tags_are_refused_and_bom_and_merge_keys_are_read(tmp_path):
    root = content(tmp_path)
    write(root, "!!python/object/apply:os.system ['true']\n")
    issue = problems(root)[0]
    assert issue.code == "syntax" and "!!python/object/apply:os.system" in issue.message
    write(root, "\ufeff" + json.dumps(MINI_TOUR), "tour.json")
    assert load_tour(root / "tours/mini", root).tour.id == "mini"
    data = copy.deepcopy(MINI_TOUR)
    text = dump(data, "yaml").replace("  trigger:\n    radius_m: 80\n",
                                      "  trigger:\n    <<: {radius_m: 80, dwell_s: 2}\n"
                                      "    dwell_s: 4\n")
    write(root, text)
    trigger = load_tour(root / "tours/mini", root).tour.stops[1].trigger
    assert (trigger.radius_m, trigger.dwell_s) == (80, 4)


def test_empty_manifest_says_so(tmp_path):
    root = content(tmp_path)
    write(root, "# nothing yet\n")
    assert only(problems(root), "manifest_empty")


# ---------------------------------------------------------------------------- datums


def test_gcj02_outside_china_is_an_error(tmp_path):
    data = copy.deepcopy(MINI_TOUR)
    data["stops"][0]["anchor"] = {"lat": 48.8566, "lon": 2.3522, "height": 80, "datum": "gcj02"}
    root = content(tmp_path, data)
    text = (root / "tours/mini/tour.yaml").read_text()
    issue = only(problems(root), "datum_outside_area")
    assert issue.stop == "mini-a" and issue.field == "/stops/0/anchor"
    assert issue.line == line_of(text, "anchor:") and "48.8566" in issue.message


def test_tour_level_gcj02_outside_china_names_every_anchor_and_the_route(tmp_path):
    data = copy.deepcopy(MINI_TOUR)
    data["datum"] = "gcj02"
    data["route"]["coordinates"] = [[2.35, 48.85], [2.36, 48.86]]
    data["stops"][0]["anchor"].update(lat=48.8566, lon=2.3522)
    data["stops"][1]["anchor"]["geopose"]["position"].update(lat=48.86, lon=2.35)
    root = content(tmp_path, data)
    found = {(i.field, i.stop) for i in problems(root) if i.code == "datum_outside_area"}
    assert found == {("/route/coordinates/0", None), ("/route/coordinates/1", None),
                     ("/stops/0/anchor", "mini-a"),
                     ("/stops/1/anchor/geopose/position", "mini-b")}


def test_gcj02_beside_a_geopose_converts_its_position():
    data = copy.deepcopy(MINI_TOUR)
    wgs = (29.5628, 106.5790)
    gcj = geo.wgs84_to_gcj02(*wgs)
    data["stops"][1]["anchor"]["geopose"]["position"].update(lat=gcj[0], lon=gcj[1])
    data["stops"][1]["anchor"]["datum"] = "gcj02"
    anchor = parse_tour(data).stops[1].anchor
    assert (anchor.pose.lat, anchor.pose.lon) == pytest.approx(wgs, abs=1e-8)
    assert anchor.input_datum == "gcj02" and anchor.pose.h == 150.0


def test_tour_level_gcj02_converts_route_and_every_anchor_form():
    data = copy.deepcopy(MINI_TOUR)
    data["datum"] = "gcj02"
    tour = parse_tour(data)
    for (lon, lat), written in zip(tour.route, MINI_TOUR["route"]["coordinates"], strict=True):
        assert geo.wgs84_to_gcj02(lat, lon) == pytest.approx((written[1], written[0]), abs=1e-8)
        assert geo.haversine_m(lat, lon, written[1], written[0]) > 200
    b = tour.stops[1].anchor.pose
    assert geo.wgs84_to_gcj02(b.lat, b.lon) == pytest.approx((29.5628, 106.5790), abs=1e-8)


def test_gltf_scene_sources_are_accepted():
    data = copy.deepcopy(MINI_TOUR)
    data["stops"][0]["scenes"][0]["source"] = "assets/mini/a.gltf"
    assert parse_tour(data).stops[0].scenes[0].source.endswith(".gltf")


# ------------------------------------------------------------------------------- CLI


def test_cli_validate_names_stop_and_line(tmp_path):
    data = copy.deepcopy(MINI_TOUR)
    data["stops"][1]["trigger"] = {"raduis_m": 80}
    root = content(tmp_path, data)
    text = (root / "tours/mini/tour.yaml").read_text()
    proc = subprocess.run([sys.executable, "-m", "tourserver", "validate",
                           str(root / "tours/mini")], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "mini-b" in proc.stderr and "raduis_m" in proc.stderr and "radius_m" in proc.stderr
    assert str(line_of(text, "raduis_m")) in proc.stderr
