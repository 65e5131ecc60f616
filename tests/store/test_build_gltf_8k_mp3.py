"""A tour as a creator really ships one: a .gltf scene with its .bin and an 8192 px
texture beside it, and MP3-only narration. It builds, every tier fits its texture budget,
and clients get one self-contained GLB."""

from __future__ import annotations

import copy
import io
import shutil

import pytest
from PIL import Image
from support import (
    MINI_TOUR,
    REPO,
    make_mini_root,
    node_validator_available,
    require,
    write_gltf,
)

from tourserver.ingest.checks import BUDGETS
from tourserver.ingest.loaders import load_asset
from tourserver.pipeline.presets import TIERS
from tourserver.store.build import build
from tourserver.store.catalog import load_published

SOURCE = "assets/city/scene/scene.gltf"


def gradient_png(size: int) -> bytes:
    """A smooth size x size RGB gradient: quick to make and to compress (under 1 MB)."""
    ramp = Image.linear_gradient("L").resize((size, size), Image.Resampling.BILINEAR)
    rgb = Image.merge("RGB", (ramp, ramp.transpose(Image.Transpose.ROTATE_90),
                              Image.new("L", (size, size), 128)))
    out = io.BytesIO()
    rgb.save(out, "PNG", compress_level=1)
    return out.getvalue()


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    base = tmp_path_factory.mktemp("gltf-8k-mp3")
    manifest = copy.deepcopy(MINI_TOUR)
    stop = manifest["stops"][0]
    manifest.update(id="city", title={"en": "City"}, summary={"en": "One stop"},
                    languages=["en"], stops=[stop])
    stop.update(title={"en": "A"}, scenes=[{"id": "city-scene", "source": SOURCE}],
                narration={"en": {"transcript": "Hello.", "audio": ["assets/city/en/a.mp3"],
                                  "subtitles": "assets/city/en/a.vtt"}})
    root = make_mini_root(base / "content", manifest)
    write_gltf(root / "assets/city/scene", gradient_png(8192))
    narration = REPO / "assets/chongqing-night/narration/en"
    (root / "assets/city/en").mkdir(parents=True)
    shutil.copyfile(narration / "jiefangbei.mp3", root / "assets/city/en/a.mp3")
    shutil.copyfile(narration / "jiefangbei.vtt", root / "assets/city/en/a.vtt")
    steps = []
    result = build(root, base / "data", progress=lambda *step: steps.append(step))
    return root, base / "data", result, steps


def test_it_publishes_with_every_tier_within_its_texture_budget(built):
    _, data, result, steps = built
    assert result.changed and result.scenes == 1 and result.variants_made == len(TIERS)
    variants = {v["tier"]: v for v in load_published(data).scene("city-scene").variants}
    for tier in TIERS:
        limit = tier.options.texture_max or BUDGETS[tier.options.preset].max_texture_px
        assert 0 < variants[tier.name]["max_texture_px"] <= limit, tier.name
    assert variants["high"]["max_texture_px"] == 4096  # resized, not refused
    assert steps == [(i + 1, len(TIERS), f"city-scene {t.name}") for i, t in enumerate(TIERS)]
    assert [(v.scene, v.tier, v.reused) for v in result.variants] == [
        ("city-scene", t.name, False) for t in TIERS]


def test_the_stored_source_is_one_self_contained_glb(built, tmp_path):
    _, data, _, _ = built
    catalog = load_published(data)
    ref = catalog.tour_files["city"][SOURCE]
    assert ref.ext == "glb" and ref.mime == "model/gltf-binary"
    _, path = catalog.blob_path(ref.name)
    assert path.read_bytes()[:4] == b"glTF"
    copy_ = tmp_path / "alone" / "source.glb"  # nothing beside it: it must stand alone
    copy_.parent.mkdir()
    shutil.copyfile(path, copy_)
    doc = load_asset(copy_)
    assert all("uri" not in b for b in doc.json.get("buffers", []))
    assert all("uri" not in i for i in doc.json["images"])


def test_mp3_only_narration_is_served_as_mp3(built):
    _, data, _, _ = built
    pack = load_published(data).pack("city", "en", None)
    audio = [f for f in pack["files"] if f["role"] == "audio"]
    assert [f["mime"] for f in audio] == ["audio/mpeg"]


def test_a_variant_passes_the_khronos_validator(built):
    require(node_validator_available(), "the Khronos glTF validator (npm ci)")
    from tourserver.ingest.validator import validate_file

    _, data, _, _ = built
    catalog = load_published(data)
    variant = catalog.scene("city-scene").variant("medium")
    _, path = catalog.blob_path(f"{variant['blob']['sha256']}.glb")
    report = validate_file(path)
    assert report.errors == 0, report.messages[:5]


def test_optimize_resizes_an_8k_texture_instead_of_refusing_it(built, tmp_path):
    import json
    import subprocess
    import sys

    root, _, _, _ = built
    out = tmp_path / "out.glb"
    proc = subprocess.run([sys.executable, "-m", "tourserver", "optimize", str(root / SOURCE),
                           "-o", str(out), "--texture-max", "2048", "--json"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    assert report["input"]["max_texture_px"] == 8192
    assert report["output"]["max_texture_px"] == 2048
    assert report["facts"]["texture_resize.images"] == 1 and report["issues"] == []
    assert out.read_bytes()[:4] == b"glTF"


def test_the_ios_limit_is_an_over_budget_item_where_no_preset_limit_applies(built):
    from tourserver.ingest.checks import budget_issues, structural_issues

    root, _, _, _ = built
    doc = load_asset(root / SOURCE)  # reads headers only: nothing is decoded
    assert structural_issues(doc) == []  # 8192 px is within the decode cap
    [archive] = budget_issues(doc, 1, BUDGETS["archive"], "scene.gltf")
    assert archive.code == "over_budget_texture_ios" and "8192 px" in archive.message
    [phone] = budget_issues(doc, 1, BUDGETS["phone"], "scene.gltf")
    assert phone.code == "over_budget_texture"
