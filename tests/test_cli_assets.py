"""The asset commands as a creator uses them: exit codes, reports, and what survives."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from support import corpus_file, node_validator_available, require, tiny_glb

from tourserver.ingest.loaders import load_asset
from tourserver.ingest.validator import validate_file


def run(*args, env=None):
    return subprocess.run([sys.executable, "-m", "tourserver", *map(str, args)],
                          capture_output=True, text=True, timeout=300, env=env)


SMALL = ["Fox/Fox.glb", "TextureTransformTest/TextureTransformTest.gltf",
         "PointCloudHouse/PropertyAttributesPointCloudHouse.gltf",
         "ClearCoatTest/ClearCoatTest.gltf"]


def features(doc) -> dict:
    j = doc.json
    return {
        "node_names": sorted(n.get("name", "") for n in j.get("nodes", []) if n.get("name")),
        "animations": [(a.get("name"), len(a["channels"])) for a in j.get("animations", [])],
        "skins": len(j.get("skins", [])),
        "targets": sum(len(p.get("targets", [])) for m in j.get("meshes", [])
                       for p in m["primitives"]),
        "material_extensions": sorted({e for m in j.get("materials", [])
                                       for e in m.get("extensions", {})}),
        "attributes": sorted({a for m in j.get("meshes", []) for p in m["primitives"]
                              for a in p["attributes"]}),
        "modes": sorted({p.get("mode", 4) for m in j.get("meshes", []) for p in m["primitives"]}),
        "structural_metadata": "EXT_structural_metadata" in j.get("extensions", {}),
        "extras": [n.get("extras") for n in j.get("nodes", []) if n.get("extras")],
    }


@pytest.mark.parametrize("model", SMALL)
def test_phone_preset_keeps_features_and_validates(model, tmp_path):
    require(node_validator_available(), "node + npm gltf-validator")
    source = corpus_file(model)
    out = tmp_path / "out.glb"
    proc = run("optimize", source, "-o", out, "--json")
    assert proc.returncode in (0, 3), proc.stderr
    report = json.loads(proc.stdout)
    assert report["schema"] == "tourserver.optimize/1"
    assert report["output"]["bytes"] == out.stat().st_size
    before, after = load_asset(source), load_asset(out)
    got, want = features(after), features(before)
    # Instancing may fold nodes; their names move to extras.instance_names, never lost.
    names = set(got.pop("node_names"))
    for extra in got["extras"]:
        names |= set(extra.get("instance_names", []))
    assert set(want.pop("node_names")) <= names
    got.pop("extras"), want.pop("extras")
    assert got == want, model
    source_errors = validate_file(source).errors
    assert validate_file(out).errors <= source_errors


def test_optimize_report_table_and_sizes(tmp_path):
    source = corpus_file("Fox/Fox.glb")
    out = tmp_path / "fox.glb"
    proc = run("optimize", source, "-o", out)
    assert proc.returncode == 0, proc.stderr
    for words in ("before", "after", "triangles", "GPU memory", "quantize", "meshopt"):
        assert words in proc.stdout
    assert "\r[" not in proc.stderr  # no progress bar when not on a terminal
    assert out.stat().st_size < source.stat().st_size


def test_dry_run_writes_nothing(tmp_path):
    out = tmp_path / "never.glb"
    proc = run("optimize", corpus_file("Fox/Fox.glb"), "-o", out, "--dry-run", "--json")
    assert proc.returncode == 0 and not out.exists()
    report = json.loads(proc.stdout)
    assert report["dry_run"] and report["output"] is None and report["steps"]


def test_exit_codes(tmp_path):
    bad = tmp_path / "bad.glb"
    bad.write_bytes(b"glTF\x02\x00\x00\x00\xff\xff\xff\xff")
    proc = run("optimize", bad, "-o", tmp_path / "o.glb")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr and "bad.glb" in proc.stderr
    assert run("optimize", bad, "-o", tmp_path / "o.glb", "--simplify", "3").returncode == 2
    assert run("optimize", bad).returncode == 2  # no -o
    assert run("optimize", bad, "--preset", "fridge").returncode == 2
    # over budget: a 100k-triangle budget can't hold a 160k mesh when told not to simplify
    big = tmp_path / "big.glb"
    tiny_glb(big, subdivisions=7)  # 327,680 triangles
    proc = run("optimize", big, "-o", tmp_path / "b.glb", "--simplify", "1", "--simplify-error",
               "0", "--json")
    assert proc.returncode == 3
    report = json.loads(proc.stdout)
    assert report["issues"][0]["code"] == "over_budget_triangles"
    # without --simplify the phone preset simplifies just enough to fit
    proc = run("optimize", big, "-o", tmp_path / "c.glb", "--json")
    assert proc.returncode == 0, proc.stdout
    assert json.loads(proc.stdout)["output"]["triangles"] <= 100_000


def test_inspect(tmp_path):
    proc = run("inspect", corpus_file("Fox/Fox.glb"), "--json")
    info = json.loads(proc.stdout)
    assert proc.returncode == 0
    assert info["summary"]["triangles"] == 576 and len(info["animations"]) == 3
    assert info["textures"][0]["width"] == 1024
    assert info["textures"][0]["slots"] == ["fox_material:pbrMetallicRoughness.baseColorTexture"]
    table = run("inspect", corpus_file("Fox/Fox.glb")).stdout
    assert "animation" in table and "Survey" in table
    missing = run("inspect", tmp_path / "nope.glb")
    assert missing.returncode == 1 and "Traceback" not in missing.stderr


def test_validate_asset(tmp_path):
    require(node_validator_available(), "node + npm gltf-validator")
    proc = run("validate", corpus_file("Fox/Fox.glb"), "--json")
    report = json.loads(proc.stdout)
    assert proc.returncode == 0 and report["ok"] and report["khronos"]["errors"] == 0
    proc = run("validate", corpus_file("ClearCoatTest/ClearCoatTest.gltf"))
    assert proc.returncode == 1 and "MESH_PRIMITIVE_NO_TANGENT_SPACE" in proc.stderr
    big = tmp_path / "big.glb"
    tiny_glb(big, subdivisions=7)
    assert run("validate", big).returncode == 3
    assert run("validate", big, "--preset", "headset").returncode == 0


def test_lods_chain(tmp_path):
    big = tmp_path / "sphere.glb"
    tiny_glb(big, subdivisions=6)  # 81,920 triangles
    proc = run("lods", big, "-o", tmp_path / "lods", "--levels", "4", "--json")
    assert proc.returncode == 0, proc.stderr
    levels = json.loads(proc.stdout)["levels"]
    tris = [lv["triangles"] for lv in levels]
    errors = [lv["geometric_error"] for lv in levels]
    assert tris == sorted(tris, reverse=True) and tris[-1] < tris[0] / 4
    assert errors == sorted(errors) and errors[-1] > errors[0]
    manifest = json.loads((tmp_path / "lods" / "lods.json").read_text())
    assert [lv["file"] for lv in manifest["levels"]] == [f"lod{i}.glb" for i in range(4)]
    for lv in manifest["levels"]:
        assert (tmp_path / "lods" / lv["file"]).stat().st_size == lv["bytes"]


def test_quality_and_simplification_options(tmp_path):
    fox = corpus_file("Fox/Fox.glb")
    bad = run("optimize", fox, "-o", tmp_path / "o.glb", "--texture-quality", "superb")
    assert bad.returncode == 2 and "high, very-high, lossless" in bad.stderr
    bad = run("optimize", fox, "-o", tmp_path / "o.glb", "--simplify-error", "0.5")
    assert bad.returncode == 2 and "--simplify-error" in bad.stderr
    proc = run("optimize", fox, "-o", tmp_path / "o.glb", "--texture-quality", "very-high",
               "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    [row] = report["textures"]  # the fox's one texture, with its score on its own metric
    assert row["metric"] == "ssimulacra2" and row["score"] >= 80
    assert row["bytes_after"] < row["bytes_before"]
    # The bound holds (the skinned fox hardly simplifies: its weights block collapses).
    assert 0 <= report["facts"]["simplify.error_ratio"] <= 1e-4 * 1.001
