"""Loading tour folders: files checked, paths confined, syntax errors located; CLI validate."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys

import pytest
from support import MINI_TOUR, REPO, make_mini_root

from tourserver.errors import ManifestInvalid
from tourserver.ingest.tours import load_all, load_tour


def codes(root, tour="mini"):
    with pytest.raises(ManifestInvalid) as info:
        load_tour(root / "tours" / tour, root)
    return {(i.code, i.field) for i in info.value.issues}


def test_valid_tour_loads_in_yaml_and_json(tmp_path):
    for fmt in ("yaml", "json"):
        root = make_mini_root(tmp_path / fmt, fmt=fmt)
        loaded = load_tour(root / "tours" / "mini", root)
        assert loaded.tour.id == "mini"
        assert set(loaded.files) >= {"assets/mini/a.glb", "assets/mini/en/a.vtt"}


@pytest.mark.parametrize(
    "path",
    ["../../etc/passwd", "/etc/passwd", "assets/../../outside.glb", "C:/x.glb",
     "assets\\..\\..\\x.glb", "assets/mini/\x00.glb"],
)
def test_paths_may_not_leave_the_content_root(tmp_path, path):
    data = copy.deepcopy(MINI_TOUR)
    data["stops"][0]["scenes"][0]["source"] = path if path.endswith(".glb") else path + ".glb"
    root = make_mini_root(tmp_path, data)
    assert ("unsafe_path", "/stops/0/scenes/0/source") in codes(root)


def test_symlink_out_of_the_root_is_refused(tmp_path):
    outside = tmp_path / "outside.glb"
    outside.write_bytes(b"secret")
    root = make_mini_root(tmp_path / "c")
    os.symlink(outside, root / "assets" / "mini" / "link.glb")
    data = copy.deepcopy(MINI_TOUR)
    data["stops"][0]["scenes"][0]["source"] = "assets/mini/link.glb"
    make_mini_root(root, data)
    assert ("unsafe_path", "/stops/0/scenes/0/source") in codes(root)


def test_missing_files_and_broken_subtitles_are_named(tmp_path):
    data = copy.deepcopy(MINI_TOUR)
    data["stops"][0]["narration"]["en"]["audio"][0] = "assets/mini/en/missing.m4a"
    root = make_mini_root(tmp_path, data)
    (root / "assets/mini/zh-Hans/a.vtt").write_text("WEBVTT\n\n00:05.000 --> 00:01.000\nx\n")
    found = codes(root)
    assert ("file_missing", "/stops/0/narration/en/audio/0") in found
    assert ("subtitles_invalid", "/stops/0/narration/zh-Hans/subtitles") in found


def test_yaml_syntax_error_gives_line_and_column(tmp_path):
    root = make_mini_root(tmp_path)
    (root / "tours/mini/tour.yaml").write_text("id: mini\n\ttitle: x\n")
    with pytest.raises(ManifestInvalid) as info:
        load_tour(root / "tours/mini", root)
    issue = info.value.issues[0]
    assert issue.code == "syntax" and issue.line == 2 and "column 1" in issue.message


def test_json_syntax_error_and_yaml_tags_are_refused(tmp_path):
    root = make_mini_root(tmp_path, fmt="json")
    (root / "tours/mini/tour.json").write_text('{"id": "mini",,}')
    with pytest.raises(ManifestInvalid) as info:
        load_tour(root / "tours/mini", root)
    issue = info.value.issues[0]
    assert issue.code == "syntax" and issue.line == 1 and "column 15" in issue.message
    root2 = make_mini_root(tmp_path / "y")
    (root2 / "tours/mini/tour.yaml").write_text("!!python/object/apply:os.system ['true']\n")
    with pytest.raises(ManifestInvalid) as info:
        load_tour(root2 / "tours/mini", root2)
    assert info.value.issues[0].code == "syntax"


def test_huge_manifest_is_refused_before_parsing(tmp_path):
    root = make_mini_root(tmp_path)
    with open(root / "tours/mini/tour.yaml", "ab") as f:
        f.write(b"#" * (5 * 1024 * 1024))
    with pytest.raises(ManifestInvalid) as info:
        load_tour(root / "tours/mini", root)
    assert info.value.issues[0].code == "manifest_too_large"


def test_ids_must_be_unique_across_tours(tmp_path):
    root = make_mini_root(tmp_path)
    other = copy.deepcopy(MINI_TOUR)
    other["id"] = "other"
    make_mini_root(root, other)
    _, issues = load_all(root)
    assert any(i.code == "duplicate_id" and "mini-a" in i.message for i in issues)


def run_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "tourserver", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=120)


def test_cli_validate_reports_every_problem_without_traceback(tmp_path):
    data = copy.deepcopy(MINI_TOUR)
    data["stops"][0]["anchor"]["lat"] = 123
    data["stops"][1]["trigger"]["radius_m"] = -5
    root = make_mini_root(tmp_path, data)
    proc = run_cli("validate", str(root / "tours" / "mini"))
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr + proc.stdout
    # Grouped under the file, each stop named by its id, the field without /stops/N.
    assert proc.stderr.count("tours/mini/tour.yaml\n") == 1
    assert "stop mini-a  anchor/lat:" in proc.stderr
    assert "stop mini-b  trigger/radius_m:" in proc.stderr
    assert "/stops/" not in proc.stderr
    assert proc.stderr.rstrip().endswith("2 errors, 0 warnings")


def test_cli_validate_json_and_ok(tmp_path):
    root = make_mini_root(tmp_path)
    proc = run_cli("validate", str(root / "tours" / "mini"), "--json")
    assert proc.returncode == 0 and json.loads(proc.stdout) == {
        "ok": True, "content_root": str(root.resolve()), "errors": 0, "warnings": 0,
        "issues": []}
    (root / "tours/mini/tour.yaml").write_text("[")
    proc = run_cli("validate", str(root / "tours" / "mini"), "--json")
    report = json.loads(proc.stdout)
    assert proc.returncode == 1 and report["issues"][0]["code"] == "syntax"
    assert report["issues"][0]["file"].endswith("tour.yaml")


def test_cli_validate_missing_folder_is_a_clear_error(tmp_path):
    proc = run_cli("validate", str(tmp_path / "nope"))
    assert proc.returncode == 1 and "no such tour folder" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_bundled_tour_is_valid():
    proc = run_cli("validate", str(REPO / "tours" / "chongqing-night"))
    assert proc.returncode == 0, proc.stderr
