"""The authoring commands as a creator meets them: `new`, `validate`, `build` and the asset
tools, run as `python3 -m tourserver ...` and judged by what is printed and the exit code."""

from __future__ import annotations

import json
import os
import stat
import struct
import subprocess
import sys
from pathlib import Path

import trimesh
import yaml
from support import REPO, node_validator_available, require, tiny_glb

from tourserver.ingest.audio import probe_audio
from tourserver.model.vtt import parse_vtt
from tourserver.scaffold import silent_mp3

TOUR = "night-walk"


def run(*args, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    """The CLI in a child process under umask 022, without colour, as a creator runs it."""
    environ = {**os.environ, "NO_COLOR": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "tourserver", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=300, env=environ,
                          preexec_fn=lambda: os.umask(0o022))


def new_tour(root: Path, *extra) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    proc = run("new", TOUR, *extra, cwd=root)
    assert proc.returncode == 0, proc.stderr
    return root


def manifest(root: Path) -> Path:
    return root / "tours" / TOUR / "tour.yaml"


def break_tour(root: Path) -> None:
    """Three mistakes in one stop: a WAV renamed .mp3 and a missing scene (errors) and no
    heading (a warning)."""
    text = manifest(root).read_text()
    text = "\n".join(line for line in text.splitlines() if "heading: 0" not in line) + "\n"
    manifest(root).write_text(text.replace("scenes/marker.glb", "scenes/missing.glb"))
    wav = b"RIFF" + struct.pack("<I", 36) + b"WAVEfmt " + bytes(24)
    (root / f"assets/{TOUR}/narration/en/{TOUR}-stop-1.mp3").write_bytes(wav)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# -- new --------------------------------------------------------------------------------


def test_new_then_validate_then_build(tmp_path):
    root = new_tour(tmp_path / "content", "--languages", "en,zh-Hans")
    files = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
    stop = f"{TOUR}-stop-1"
    assert files == {f"tours/{TOUR}/tour.yaml", f"assets/{TOUR}/scenes/marker.glb",
                     *(f"assets/{TOUR}/narration/{lang}/{stop}.{ext}"
                       for lang in ("en", "zh-Hans") for ext in ("mp3", "vtt"))}
    text = manifest(root).read_text()
    data = yaml.safe_load(text)
    anchor = data["stops"][0]["anchor"]
    assert {"lat", "lon", "heading", "altitude_msl"} <= set(anchor)
    # Commented: every field line of the manifest's top level carries a comment.
    top = [line for line in text.splitlines() if line[:1].isalpha()]
    assert top and all("#" in line for line in top), top
    # About two seconds of real MP3, and subtitles that end before it does.
    for lang in ("en", "zh-Hans"):
        audio = probe_audio(root / f"assets/{TOUR}/narration/{lang}/{stop}.mp3")
        assert audio.format == "mp3" and 1.9 <= audio.duration_s <= 2.1
        cues = parse_vtt((root / f"assets/{TOUR}/narration/{lang}/{stop}.vtt").read_text())
        assert cues[-1].end_s < audio.duration_s

    proc = run("validate", cwd=root)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok: no problems found", proc
    assert proc.stderr == ""
    data_dir = tmp_path / "data"
    proc = run("build", "--data", data_dir, cwd=root)
    assert proc.returncode == 0, proc.stderr
    assert "published build" in proc.stdout
    for tier in ("high", "medium", "low"):
        assert any(TOUR in line and tier in line and "new" in line
                   for line in proc.stdout.splitlines()), proc.stdout
    # Written with the usual permissions (0644 under umask 022), not mkstemp's 0600.
    written = [p for p in data_dir.rglob("*") if p.is_file() and not p.name.startswith(".")]
    assert written and {p.name: mode(p) for p in written if mode(p) != 0o644} == {}


def test_new_marker_scene_passes_the_khronos_validator(tmp_path):
    require(node_validator_available(), "node + npm gltf-validator")
    root = new_tour(tmp_path)
    proc = run("validate", f"assets/{TOUR}/scenes/marker.glb", "--json", cwd=root)
    report = json.loads(proc.stdout)
    assert proc.returncode == 0, report
    assert report["khronos"]["errors"] == 0 and report["khronos"]["warnings"] == 0


def test_new_with_a_place_languages_and_title(tmp_path):
    # `no` (Norwegian) is YAML 1.1's false: the scaffold quotes it.
    root = new_tour(tmp_path, "--at", "59.9139,10.7522,12", "--languages", "no,en",
                    "--title", "Oslo: by night", "--timezone", "Europe/Oslo")
    data = yaml.safe_load(manifest(root).read_text())
    assert data["languages"] == ["no", "en"] and data["timezone"] == "Europe/Oslo"
    assert data["title"] == {"no": "Oslo: by night", "en": "Oslo: by night"}
    assert data["stops"][0]["anchor"] == {"lat": 59.9139, "lon": 10.7522, "heading": 0,
                                          "altitude_msl": 12}
    assert data["route"]["coordinates"][0] == [10.7522, 59.9139]  # GeoJSON: lon first
    proc = run("validate", cwd=root)
    assert proc.returncode == 0, proc.stderr


def test_new_refuses_an_existing_tour_and_bad_ids(tmp_path):
    root = new_tour(tmp_path)
    before = manifest(root).read_bytes()
    proc = run("new", TOUR, cwd=root)
    assert proc.returncode == 1 and "already exists" in proc.stderr
    assert f"tours/{TOUR}" in proc.stderr and "Traceback" not in proc.stderr
    assert manifest(root).read_bytes() == before
    for bad in ("Night_Walk", "-walk", "a" * 64, "walk/../x", "walk.tour"):
        proc = run("new", "--", bad, cwd=root)
        assert proc.returncode == 2 and "not valid" in proc.stderr, (bad, proc.stderr)
    for option, value in (("--at", "200,10"), ("--at", "north"), ("--languages", "english!"),
                          ("--timezone", "Mars/Olympus")):
        proc = run("new", "other", option, value, cwd=root)
        assert proc.returncode == 2 and option in proc.stderr, (option, proc.stderr)
    assert sorted(p.name for p in (root / "tours").iterdir()) == [TOUR]
    assert sorted(p.name for p in (root / "assets").iterdir()) == [TOUR]


# -- validate -----------------------------------------------------------------------------


def test_validate_groups_by_file_and_names_stop_field_and_fix(tmp_path):
    root = new_tour(tmp_path)
    break_tour(root)
    report = json.loads(run("validate", "--json", cwd=root).stdout)
    assert report["ok"] is False and report["errors"] >= 2 and report["warnings"] >= 1
    assert report["content_root"] == str(root.resolve())
    assert set(report) == {"ok", "content_root", "errors", "warnings", "issues"}
    proc = run("validate", cwd=root)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    out = proc.stderr
    lines = out.splitlines()
    # The manifest is named once, as a header, relative to the content root.
    assert lines.count(f"tours/{TOUR}/tour.yaml") == 1
    assert out.count("tour.yaml") == 1
    for issue in report["issues"]:
        assert out.count(f"[{issue['code']}]") == 1, issue["code"]
    assert "/stops/" not in out and f"stop {TOUR}-stop-1" in out
    error_lines = [line for line in lines if line.lstrip().startswith("error")]
    assert any("line " in line and "narration/en/audio/0:" in line for line in error_lines)
    assert any("scenes/0/source:" in line for line in error_lines)
    warning = next(line for line in lines if line.lstrip().startswith("warning"))
    assert "anchor" in warning
    assert any(line.lstrip().startswith("fix: ") for line in lines)
    assert lines[-1] == (f"{report['errors']} errors, {report['warnings']} warning"
                         + ("s" if report["warnings"] != 1 else ""))


def test_warnings_pass_unless_strict(tmp_path):
    root = new_tour(tmp_path)
    text = manifest(root).read_text()
    manifest(root).write_text("\n".join(line for line in text.splitlines()
                                        if "heading: 0" not in line) + "\n")
    proc = run("validate", cwd=root)
    assert proc.returncode == 0, proc.stderr
    assert "warning" in proc.stderr and "ok: 0 errors, 1 warning" in proc.stdout
    proc = run("validate", "--strict", cwd=root)
    assert proc.returncode == 1 and "warning" in proc.stderr and "--strict" in proc.stderr
    report = json.loads(run("validate", "--strict", "--json", cwd=root).stdout)
    assert report["ok"] is False and report["errors"] == 0 and report["warnings"] == 1
    report = json.loads(run("validate", "--json", cwd=root).stdout)
    assert report["ok"] is True and report["issues"][0]["severity"] == "warning"
    # --quiet leaves warnings out, but not with --strict
    assert run("validate", "--quiet", cwd=root).stderr == ""
    assert "warning" in run("validate", "--quiet", "--strict", cwd=root).stderr


def test_validate_the_same_however_the_tour_is_named(tmp_path):
    root = new_tour(tmp_path / "content")
    break_tour(root)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    runs = [run("validate", cwd=root / "tours" / TOUR),
            run("validate", f"tours/{TOUR}/tour.yaml", cwd=root),
            run("validate", f"tours/{TOUR}", cwd=root),
            run("validate", "--root", root, cwd=elsewhere),
            run("validate", root / "tours" / TOUR, cwd=elsewhere)]
    first = runs[0]
    assert first.returncode == 1 and first.stderr
    for proc in runs[1:]:
        assert (proc.returncode, proc.stdout, proc.stderr) == (
            first.returncode, first.stdout, first.stderr), proc.args
    docs = [run("validate", "--json", cwd=root / "tours" / TOUR),
            run("validate", "--json", "--root", root, cwd=elsewhere)]
    assert docs[0].stdout == docs[1].stdout


def test_outside_a_content_folder_the_root_is_said(tmp_path):
    proc = run("validate", "--quiet", cwd=tmp_path)
    note = f"no tours/ folder here: using the bundled demo tours at {REPO}"
    assert note not in proc.stderr  # --quiet: only problems
    proc = run("validate", cwd=tmp_path)
    assert note in proc.stderr and "--root" in proc.stderr, proc.stderr
    # build says it too, and a data directory that cannot be made still gives one JSON
    # document (no traceback)
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    proc = run("build", "--json", "--data", blocker, cwd=tmp_path)
    assert note in proc.stderr and "Traceback" not in proc.stderr
    report = json.loads(proc.stdout)
    assert proc.returncode == 1 and report["ok"] is False and report["error"]["code"]
    # inside a content folder, or with --root, nothing is said about it
    root = new_tour(tmp_path / "content")
    assert "note:" not in run("validate", cwd=root).stderr
    assert "note:" not in run("validate", "--root", root, cwd=tmp_path).stderr


# -- build --------------------------------------------------------------------------------


def test_build_json_is_one_document_even_when_it_fails(tmp_path):
    root = new_tour(tmp_path / "content")
    data_dir = tmp_path / "data"
    proc = run("build", "--json", "--data", data_dir, cwd=root)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["ok"] is True and report["changed"] is True and report["warnings"] == []
    assert report["content_root"] == str(root.resolve())
    assert {(v["scene"], v["tier"]) for v in report["variants"]} == {
        (f"{TOUR}-marker-1", tier) for tier in ("high", "medium", "low")}
    assert all(v["triangles"] > 0 and v["bytes"] > 0 for v in report["variants"])

    break_tour(root)
    proc = run("build", "--json", "--data", data_dir, cwd=root)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    report = json.loads(proc.stdout)  # exactly one document: json.loads refuses extra data
    assert report["ok"] is False and report["errors"] >= 2
    assert {i["severity"] for i in report["issues"]} == {"error", "warning"}
    assert all(i["stop"] == f"{TOUR}-stop-1" for i in report["issues"])
    # Without --json: the problems grouped, and what keeps serving.
    proc = run("build", "--data", data_dir, cwd=root)
    assert proc.returncode == 1 and f"tours/{TOUR}/tour.yaml\n" in proc.stderr
    assert "nothing was published; the previous build" in proc.stderr
    # --quiet still prints the errors (not the warning)
    proc = run("build", "--quiet", "--data", data_dir, cwd=root)
    assert proc.returncode == 1 and proc.stdout == ""
    assert "[file_missing]" in proc.stderr
    assert not any(line.lstrip().startswith("warning") for line in proc.stderr.splitlines())


# -- asset tools --------------------------------------------------------------------------


def test_optimize_output_mode_and_refusing_its_own_input(tmp_path):
    source = tmp_path / "scene.glb"
    tiny_glb(source, subdivisions=2)
    proc = run("optimize", "scene.glb", "-o", "out.glb", "--quiet", cwd=tmp_path)
    assert proc.returncode == 0 and proc.stdout == proc.stderr == ""
    assert mode(tmp_path / "out.glb") == 0o644
    original = source.read_bytes()
    (tmp_path / "link.glb").symlink_to(source)
    for out in ("scene.glb", "./scene.glb", source, "link.glb"):
        proc = run("optimize", "scene.glb", "-o", out, cwd=tmp_path)
        assert proc.returncode == 2 and "is the input file itself" in proc.stderr, out
    proc = run("optimize", "link.glb", "-o", "scene.glb", cwd=tmp_path)
    assert proc.returncode == 2
    assert source.read_bytes() == original
    # lods may write beside its input, never over it
    (tmp_path / "lods").mkdir()
    os.link(source, tmp_path / "lods" / "lod1.glb")
    proc = run("lods", "scene.glb", "-o", "lods", "--levels", "2", cwd=tmp_path)
    assert proc.returncode == 2 and "lod1.glb is the input file itself" in proc.stderr
    assert source.read_bytes() == original
    proc = run("lods", "scene.glb", "-o", ".", "--levels", "2", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert mode(tmp_path / "lod0.glb") == 0o644 and mode(tmp_path / "lods.json") == 0o644


def test_quiet_still_prints_errors(tmp_path):
    bad = tmp_path / "bad.glb"
    bad.write_bytes(b"glTF\x02\x00\x00\x00\xff\xff\xff\xff")
    proc = run("optimize", bad, "-o", tmp_path / "o.glb", "--quiet", cwd=tmp_path)
    assert proc.returncode == 1 and "bad.glb" in proc.stderr and "[glb_" in proc.stderr
    big = tmp_path / "big.glb"
    tiny_glb(big, subdivisions=7)  # 327,680 triangles: over the phone budget
    proc = run("optimize", big, "-o", tmp_path / "b.glb", "--simplify", "1",
               "--simplify-error", "0", "--quiet", cwd=tmp_path)
    assert proc.returncode == 3 and "over_budget_triangles" in proc.stderr
    root = new_tour(tmp_path / "content")
    break_tour(root)
    proc = run("validate", "--quiet", cwd=root)
    assert proc.returncode == 1 and "[file_missing]" in proc.stderr and proc.stdout == ""
    assert not any(line.lstrip().startswith("warning") for line in proc.stderr.splitlines())


def test_inspect_into_head_ends_quietly(tmp_path):
    # Enough meshes that the listing outgrows a pipe's buffer, so the reader leaves early.
    scene = trimesh.Scene([trimesh.creation.box(extents=(1, 1, 1)).apply_translation((i, 0, 0))
                           for i in range(1500)])
    (tmp_path / "many.glb").write_bytes(scene.export(file_type="glb"))
    proc = subprocess.run(["bash", "-c", f"set -o pipefail; {sys.executable} -m tourserver "
                           "inspect many.glb | head -1"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode in (0, 141), proc.stderr
    assert proc.stdout.count("\n") == 1 and "triangles" in proc.stdout
    assert "Traceback" not in proc.stderr and "error" not in proc.stderr, proc.stderr


def _declared(path: Path) -> dict:
    data = path.read_bytes()
    length = struct.unpack_from("<I", data, 12)[0]
    return json.loads(data[20:20 + length])


def test_inspect_lists_every_required_extension(tmp_path):
    tiny_glb(tmp_path / "scene.glb", subdivisions=2)
    proc = run("optimize", "scene.glb", "-o", "packed.glb", "--compress", "meshopt", "--quiet",
               cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    declared = _declared(tmp_path / "packed.glb")
    required = set(declared["extensionsRequired"])
    # The fixture must exercise what the loader decodes away: meshopt and quantization.
    assert {"EXT_meshopt_compression", "KHR_mesh_quantization"} <= required
    info = json.loads(run("inspect", "packed.glb", "--json", cwd=tmp_path).stdout)
    assert set(info["extensions_required"]) == required
    assert set(info["extensions_used"]) == set(declared["extensionsUsed"])
    table = run("inspect", "packed.glb", cwd=tmp_path).stdout
    for name in required:
        assert any(name in line and "required" in line for line in table.splitlines()), name


def _on_a_terminal(args: list, cwd: Path, env: dict) -> str:
    """What the CLI writes to stderr when stderr is a terminal."""
    import pty

    leader, follower = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "tourserver", *map(str, args)], cwd=cwd,
                            stdout=subprocess.DEVNULL, stderr=follower, env=env)
    os.close(follower)
    out = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the child closed its end
            break
        if not chunk:
            break
        out += chunk
    proc.wait(timeout=300)
    os.close(leader)
    return out.decode("utf-8", "replace")


def test_colour_only_on_a_terminal_and_never_with_no_color(tmp_path):
    root = new_tour(tmp_path)
    break_tour(root)
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    assert "\033[31m" in _on_a_terminal(["validate"], root, env)
    assert "\033[" not in _on_a_terminal(["validate"], root, {**env, "NO_COLOR": ""})
    piped = subprocess.run([sys.executable, "-m", "tourserver", "validate"], cwd=root,
                           capture_output=True, text=True, env=env, timeout=300)
    assert piped.returncode == 1 and "\033[" not in piped.stderr
    # build's progress line is drawn on a terminal only (the tour mended, warning aside)
    data_dir = tmp_path / "data"
    (root / f"assets/{TOUR}/scenes/missing.glb").write_bytes(
        (root / f"assets/{TOUR}/scenes/marker.glb").read_bytes())
    (root / f"assets/{TOUR}/narration/en/{TOUR}-stop-1.mp3").write_bytes(silent_mp3(2.0))
    shown = _on_a_terminal(["build", "--data", data_dir], root, env)
    assert f"[1/3] {TOUR}-marker-1" in shown and "\r" in shown
    proc = run("build", "--data", data_dir, "--force", cwd=root)
    assert proc.returncode == 0 and "\r" not in proc.stderr
