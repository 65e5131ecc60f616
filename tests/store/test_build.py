"""The build: content-addressed, atomic, idempotent, and a failure keeps the old state."""

from __future__ import annotations

import hashlib
import json

import pytest
from support import make_mini_root

from tourserver.errors import ManifestInvalid
from tourserver.files import atomic_write
from tourserver.store.blobs import BlobStore
from tourserver.store.build import DataDir, build
from tourserver.store.catalog import load_published


def test_build_publishes_content_addressed_files(mini_root, tmp_path):
    data = tmp_path / "data"
    result = build(mini_root, data)
    assert result.changed and result.tours == 1 and result.variants_made == 3
    catalog = load_published(data)
    for name, ref in catalog.blobs.items():
        _, path = catalog.blob_path(name)
        assert hashlib.sha256(path.read_bytes()).hexdigest() == ref.sha256
        assert path.stat().st_size == ref.bytes
    variants = catalog.scene("mini-a-scene").variants
    assert [v["tier"] for v in variants] == ["high", "medium", "low"]
    tris = [v["triangles"] for v in variants]
    assert tris[0] >= tris[1] >= tris[2] > 0 and tris[2] < tris[0]
    errors = [v["geometric_error"] for v in variants]
    # the full tier is only quantized: its error is tiny (the mesh is 4 m across)
    assert 0 <= errors[0] < 0.004 and errors[0] <= errors[1] <= errors[2]


def test_rebuild_with_nothing_changed_does_nothing(mini_root, tmp_path):
    data = tmp_path / "data"
    first = build(mini_root, data)
    files_before = {p: p.stat().st_mtime_ns for p in data.rglob("*") if p.is_file()}
    (mini_root / "tours/mini/tour.yaml").touch()  # a touch is not a change
    second = build(mini_root, data)
    assert not second.changed and second.build_id == first.build_id
    files_after = {p: p.stat().st_mtime_ns for p in data.rglob("*") if p.is_file()}
    assert files_after == files_before


def test_changed_narration_reuses_scene_variants(mini_root, tmp_path):
    data = tmp_path / "data"
    build(mini_root, data)
    vtt = mini_root / "assets/mini/en/a.vtt"
    vtt.write_text(vtt.read_text() + "\n00:00:02.000 --> 00:00:03.000\nMore.\n")
    result = build(mini_root, data)
    assert result.changed and result.variants_made == 0


def test_failed_build_leaves_previous_state_serving(mini_root, tmp_path):
    data = tmp_path / "data"
    first = build(mini_root, data)
    (mini_root / "tours/mini/tour.yaml").write_text("id: [broken\n")
    with pytest.raises(ManifestInvalid):
        build(mini_root, data)
    assert DataDir(data).current_build_id() == first.build_id
    assert load_published(data).tours["mini"].id == "mini"


def test_build_of_an_empty_root_fails_cleanly(tmp_path):
    (tmp_path / "tours").mkdir()
    with pytest.raises(ManifestInvalid) as info:
        build(tmp_path, tmp_path / "data")
    assert info.value.issues[0].code == "no_tours"


def test_build_is_deterministic(tmp_path):
    a = build(make_mini_root(tmp_path / "a"), tmp_path / "da")
    b = build(make_mini_root(tmp_path / "b"), tmp_path / "db")
    ca = json.loads(DataDir(tmp_path / "da").catalog_path(a.build_id).read_text())
    cb = json.loads(DataDir(tmp_path / "db").catalog_path(b.build_id).read_text())
    assert ca["scenes"] == cb["scenes"]


def test_atomic_write_never_leaves_a_partial_file(tmp_path, monkeypatch):
    target = tmp_path / "f.json"
    atomic_write(target, b"old")

    def boom(*_args):
        raise OSError("disk full")

    monkeypatch.setattr("os.replace", boom)
    with pytest.raises(OSError):
        atomic_write(target, b"new-and-longer")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.json"]  # no temp file left behind


def test_blob_store_names_by_content(tmp_path):
    store = BlobStore(tmp_path)
    ref = store.put(b"hello", ".VTT")
    assert ref.name == hashlib.sha256(b"hello").hexdigest() + ".vtt"
    assert store.put(b"hello", "vtt") == ref
    with pytest.raises(ValueError):
        store.put(b"x", ".exe")


def _triangles(doc):
    """Every triangle's corner positions, each rotated to start at its smallest corner
    (winding kept), sorted: equal for two documents with the same surface."""
    import numpy as np

    out = []
    for mesh in doc.json["meshes"]:
        for prim in mesh["primitives"]:
            pos = doc.read_accessor(prim["attributes"]["POSITION"]).astype(np.float64)
            if "indices" in prim:
                idx = doc.read_accessor(prim["indices"]).reshape(-1)
            else:
                idx = np.arange(len(pos))
            tri = np.round(pos[idx], 5).reshape(-1, 3, 3)
            first = np.array([min(range(3), key=lambda k, t=t: tuple(t[k])) for t in tri])
            rolled = np.stack([np.roll(t, -f, axis=0) for t, f in zip(tri, first, strict=True)])
            out.append(rolled.reshape(-1, 9))
    allt = np.concatenate(out)
    return allt[np.lexsort(allt.T[::-1])]


def test_archive_preset_keeps_every_triangle(mini_root, tmp_path):
    """Lossless: dedup, weld, reorder and meshopt compression change bytes, not geometry."""
    from support import corpus_file

    from tourserver.ingest.loaders import load_asset
    from tourserver.pipeline.optimize import OptimizeOptions, optimize

    for source in (mini_root / "assets/mini/a.glb", corpus_file("Fox/Fox.glb")):
        doc = load_asset(source)
        _, glb, report = optimize(doc, source.stat().st_size, OptimizeOptions(preset="archive"))
        assert glb is not None and report.after.bytes < report.before.bytes
        out = tmp_path / "out.glb"
        out.write_bytes(glb)
        again = load_asset(out)  # decodes EXT_meshopt_compression
        assert (_triangles(again) == _triangles(doc)).all()
        assert len(again.json.get("animations", [])) == len(doc.json.get("animations", []))


def test_build_and_the_optimize_command_give_the_same_bytes(mini_root, tmp_path):
    import subprocess
    import sys

    data = tmp_path / "data"
    build(mini_root, data)
    medium = load_published(data).scene("mini-a-scene").variant("medium")
    out = tmp_path / "cli.glb"
    proc = subprocess.run([sys.executable, "-m", "tourserver", "optimize",
                           str(mini_root / "assets/mini/a.glb"), "-o", str(out), "--preset",
                           "phone", "--quiet"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert hashlib.sha256(out.read_bytes()).hexdigest() == medium["blob"]["sha256"]


def test_build_reports_progress_and_a_summary(mini_root, tmp_path):
    data = tmp_path / "data"
    steps = []
    first = build(mini_root, data, progress=lambda *step: steps.append(step))
    labels = [f"mini-a-scene {tier}" for tier in ("high", "medium", "low")]
    assert steps == [(i + 1, 3, label) for i, label in enumerate(labels)]
    assert [(v.tour, v.stop, v.scene, v.tier, v.reused) for v in first.variants] == [
        ("mini", "mini-a", "mini-a-scene", tier, False) for tier in ("high", "medium", "low")]
    assert all(v.triangles > 0 and v.bytes > 0 and v.source == "assets/mini/a.glb"
               for v in first.variants)
    body = json.loads(json.dumps(first.to_json()))
    assert body["build_id"] == first.build_id and len(body["variants"]) == 3
    # forced: every variant comes from the cache, and still counts as a step
    steps.clear()
    forced = build(mini_root, data, force=True, progress=lambda *step: steps.append(step))
    assert [s[2] for s in steps] == labels and forced.variants_made == 0
    assert all(v.reused for v in forced.variants)
    # nothing changed: no work, but the summary still lists what is published
    steps.clear()
    same = build(mini_root, data, progress=lambda *step: steps.append(step))
    assert not same.changed and steps == []
    assert [(v.tier, v.bytes) for v in same.variants] == [
        (v.tier, v.bytes) for v in first.variants]


def test_warnings_do_not_stop_a_build_and_are_returned(mini_root, tmp_path, monkeypatch):
    from tourserver.errors import Issue
    from tourserver.store import build as build_module

    real = build_module.load_all
    warning = Issue("heading_missing", "no heading: the scene faces north", "tour.yaml",
                    "/stops/1/anchor", stop="mini-b", severity="warning")

    def with_warning(root):
        loaded, issues = real(root)
        return loaded, [*issues, warning]

    monkeypatch.setattr(build_module, "load_all", with_warning)
    result = build(mini_root, tmp_path / "data")
    assert result.changed and result.warnings == (warning,)
    assert result.to_json()["warnings"] == [warning.to_json()]
    error = Issue("x_error", "broken", "tour.yaml")
    monkeypatch.setattr(build_module, "load_all",
                        lambda root: (real(root)[0], [warning, error]))
    with pytest.raises(ManifestInvalid) as info:
        build(mini_root, tmp_path / "data2")
    assert info.value.issues == [error, warning]  # errors first


def test_a_scene_failure_names_the_tour_stop_and_file(mini_root, tmp_path, monkeypatch):
    from support import tiny_glb

    from tourserver.errors import BuildError
    from tourserver.gltf.document import GltfInvalid
    from tourserver.store import build as build_module

    data = tmp_path / "data"
    first = build(mini_root, data)
    tiny_glb(mini_root / "assets/mini/a.glb", subdivisions=2)  # a new source: not cached

    def refuse(path, *args):
        raise GltfInvalid(f"{path}#/images/0: the decoder gave up", code="image_invalid")

    monkeypatch.setattr(build_module, "load_asset", refuse)
    with pytest.raises(BuildError) as info:
        build(mini_root, data)
    message = info.value.message
    assert message == ("tour 'mini', stop 'mini-a': assets/mini/a.glb#/images/0: the decoder "
                       "gave up")
    assert info.value.code == "image_invalid"
    assert DataDir(data).current_build_id() == first.build_id


def test_a_gltf_source_is_stored_as_glb_and_its_bin_is_part_of_the_fingerprint(tmp_path):
    import copy

    from support import MINI_TOUR
    from test_build_gltf_8k_mp3 import gradient_png, write_gltf

    manifest = copy.deepcopy(MINI_TOUR)
    manifest["stops"][0]["scenes"][0]["source"] = "assets/mini/g/scene.gltf"
    root = make_mini_root(tmp_path / "content", manifest)
    write_gltf(root / "assets/mini/g", gradient_png(64))
    data = tmp_path / "data"
    first = build(root, data)
    ref = load_published(data).tour_files["mini"]["assets/mini/g/scene.gltf"]
    assert ref.ext == "glb"
    assert not build(root, data).changed
    bin_path = root / "assets/mini/g/scene.bin"
    blob = bytearray(bin_path.read_bytes())
    blob[4 * 3 * 4 + 4] ^= 0x01  # nudge the apex's height
    bin_path.write_bytes(bytes(blob))
    again = build(root, data)
    assert again.changed and again.build_id != first.build_id and again.variants_made == 3
