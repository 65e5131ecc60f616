"""`tourserver validate` on the mistakes creators really make, one of each class, as a
creator sees them: the exit code, and a message naming the file, the stop (by id), the field
and the code. The checks themselves are tested in depth beside their modules
(tests/ingest/test_manifest_traps.py, test_files.py, tests/model/test_placement.py)."""

from __future__ import annotations

import copy
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from support import MINI_TOUR, make_mini_root, write_wav

from tourserver.cli import main

TOUR_FILE = "tours/mini/tour.yaml"


def _stop(data: dict, i: int) -> dict:
    return data["stops"][i]


def _move_to_paris(data: dict) -> None:
    """The mini tour, moved to Paris (where GCJ-02 does not apply)."""
    _stop(data, 0)["anchor"].update(lat=48.8584, lon=2.2945)
    _stop(data, 1)["anchor"]["geopose"]["position"].update(lat=48.8606, lon=2.3376)
    data["route"]["coordinates"] = [[2.2945, 48.8584], [2.3376, 48.8606]]
    data["timezone"] = "Europe/Paris"


def _swap_anchor(data: dict) -> None:
    # A swapped Chongqing (lon 106 as a latitude) is a schema error already; a swap that
    # stays within ±90 is what slips through, so swap an anchor in Paris.
    _move_to_paris(data)
    anchor = _stop(data, 0)["anchor"]
    anchor["lat"], anchor["lon"] = anchor["lon"], anchor["lat"]


def _swap_route(data: dict) -> None:
    data["route"]["coordinates"] = [[lat, lon] for lon, lat in data["route"]["coordinates"]]


# name: (change to the manifest dict, change to the files, code, stop id, field, exit code)
Case = tuple[Callable[[dict], None] | None, Callable[[Path], None] | None, str, str | None,
             str, int]
CASES: dict[str, Case] = {
    "lat and lon swapped in an anchor": (
        _swap_anchor, None, "lat_lon_swapped", "mini-a", "anchor/lat", 1),
    "route in [lat, lon] order": (
        lambda d: (_move_to_paris(d), _swap_route(d)), None, "route_swapped", None,
        "/route/coordinates", 1),
    "route in [lat, lon] order, out of range": (
        _swap_route, None, "coordinate_out_of_range", None, "/route/coordinates/0", 1),
    "a stop far from the rest": (
        lambda d: _stop(d, 1)["anchor"]["geopose"]["position"].update(lat=31.2304,
                                                                      lon=121.4737),
        None, "stop_far", "mini-b", "anchor", 1),
    "a stop at 0,0": (
        lambda d: _stop(d, 0)["anchor"].update(lat=0, lon=0), None, "null_island", "mini-a",
        "anchor", 1),
    "a height under the geoid": (
        lambda d: _stop(d, 1)["anchor"]["geopose"]["position"].update(h=-200.0), None,
        "height_below_geoid", "mini-b", "geopose/position/h", 1),
    "an altitude above any ground": (
        lambda d: _stop(d, 0)["anchor"].update(altitude_msl=12000), None,
        "altitude_too_high", "mini-a", "anchor/altitude_msl", 1),
    "gcj02 outside China": (
        lambda d: (_move_to_paris(d), _stop(d, 0)["anchor"].update(datum="gcj02")), None,
        "datum_outside_area", "mini-a", "anchor", 1),
    "a misspelt field": (
        lambda d: _stop(d, 0)["trigger"].update(raduis_m=_stop(d, 0)["trigger"].pop("radius_m")),
        None, "unknown_field", "mini-a", "trigger/raduis_m", 1),
    "a truncated scene": (
        None, lambda root: (root / "assets/mini/a.glb").write_bytes(
            (root / "assets/mini/a.glb").read_bytes()[:500]),
        "glb_truncated", "mini-a", "scenes/0/source", 1),
    "random bytes as a scene": (
        None, lambda root: (root / "assets/mini/a.glb").write_bytes(os.urandom(2048)),
        "scene_format", "mini-a", "scenes/0/source", 1),
    "a WAV named .mp3": (
        None, lambda root: write_wav(root / "assets/mini/en/a.mp3"), "audio_format", "mini-a",
        "narration/en/audio/1", 1),
    "subtitles past the end of the audio": (
        None, lambda root: (root / "assets/mini/zh-Hans/a.vtt").write_text(
            "WEBVTT\n\n00:00:00.000 --> 00:05:00.000\nToo long.\n"),
        "subtitles_past_audio", "mini-a", "narration/zh-Hans/subtitles", 1),
    "a title in a language the tour does not offer (warning)": (
        lambda d: _stop(d, 0)["title"].update(fr="A"), None, "language_not_offered", "mini-a",
        "title/fr", 0),
    "a missing heading (warning)": (
        lambda d: _stop(d, 0)["anchor"].pop("heading"), None, "no_heading", "mini-a",
        "anchor", 0),
}


def _validate(root: Path, *extra: str, capsys) -> tuple[int, str]:
    code = main(["validate", str(root / "tours/mini"), *extra])
    out = capsys.readouterr()
    return code, out.out + out.err


@pytest.mark.parametrize("case", list(CASES))
def test_validate_names_the_file_stop_field_and_code(tmp_path, capsys, case):
    change_manifest, change_files, code, stop, field, exit_code = CASES[case]
    data = copy.deepcopy(MINI_TOUR)
    if change_manifest:
        change_manifest(data)
    root = make_mini_root(tmp_path, data)
    if change_files:
        change_files(root)
    rc, text = _validate(root, capsys=capsys)
    assert rc == exit_code, text
    assert "Traceback" not in text
    line = next((ln for ln in text.splitlines() if f"[{code}]" in ln), None)
    assert line is not None, text
    assert TOUR_FILE in text  # the file, named once as the group's heading
    assert text.count(TOUR_FILE) == 1
    if stop:
        assert f"stop {stop}" in line or f"stop '{stop}'" in line, line
    assert field.lstrip("/") in line, line
    assert "/stops/" not in line  # stops are named by id, never by index
    assert "fix:" in text  # every message comes with a fix
    if exit_code == 0:  # a warning: printed, fails only with --strict
        assert "warning" in line
        rc, _ = _validate(root, "--strict", capsys=capsys)
        assert rc == 1
    # Tools get the same, as JSON: one document, the issue with its line.
    main(["validate", str(root / "tours/mini"), "--json"])
    doc = json.loads(capsys.readouterr().out)
    found = [i for i in doc["issues"] if i["code"] == code]
    assert found and found[0]["line"] >= 1 and found[0]["file"].endswith(TOUR_FILE)
    if stop:
        assert found[0]["stop"] == stop


def test_yaml_1_1_traps_are_read_as_creators_mean_them(tmp_path, capsys):
    root = make_mini_root(tmp_path)
    manifest = root / TOUR_FILE
    text = manifest.read_text()
    text = text.replace("start: '19:00'", "start: 19:00")
    assert "start: 19:00" in text
    manifest.write_text(text)
    rc, out = _validate(root, capsys=capsys)
    assert rc == 0, out
    from tourserver.ingest.tours import read_manifest

    assert read_manifest(manifest)["lights_on"][0]["start"] == "19:00"  # not 1140


def test_duplicate_keys_and_two_manifests_are_errors(tmp_path, capsys):
    root = make_mini_root(tmp_path)
    manifest = root / TOUR_FILE
    manifest.write_text(manifest.read_text().replace("timezone: Asia/Shanghai",
                                                     "timezone: Asia/Shanghai\n"
                                                     "timezone: Europe/Paris"))
    rc, out = _validate(root, capsys=capsys)
    assert rc == 1 and "[duplicate_key]" in out and "timezone" in out
    shutil.copyfile(manifest, manifest.with_name("tour.json"))
    rc, out = _validate(root, capsys=capsys)
    assert rc == 1 and "[manifest_ambiguous]" in out
    assert "tour.json" in out and "tour.yaml" in out
