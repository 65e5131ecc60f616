"""Hostile and malformed assets: one stable code, a message naming the place, no escape
from the asset's folder, no allocation before sizes are checked."""

from __future__ import annotations

import base64
import json
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import corpus_file, tiny_glb

from tourserver.errors import TourError
from tourserver.gltf.document import GltfInvalid, write_glb
from tourserver.ingest.checks import structural_issues
from tourserver.ingest.loaders import LoadLimits, load_asset

TRIANGLE = struct.pack("<9f", 0, 0, 0, 1, 0, 0, 0, 1, 0)


def gltf(tmp_path, buffers=None, images=None, name="a.gltf", extra=None):
    doc = {"asset": {"version": "2.0"},
           "buffers": buffers if buffers is not None else [
               {"uri": "data:application/octet-stream;base64,"
                + base64.b64encode(TRIANGLE).decode(), "byteLength": 36}],
           "bufferViews": [{"buffer": 0, "byteLength": 36}],
           "accessors": [{"bufferView": 0, "componentType": 5126, "count": 3, "type": "VEC3",
                          "min": [0, 0, 0], "max": [1, 1, 0]}],
           "meshes": [{"primitives": [{"attributes": {"POSITION": 0}}]}],
           "nodes": [{"mesh": 0}], "scenes": [{"nodes": [0]}], "scene": 0}
    if images is not None:
        doc["images"] = images
    doc.update(extra or {})
    path = tmp_path / name
    path.write_text(json.dumps(doc))
    return path


def test_a_clean_gltf_loads_and_embeds_everything(tmp_path):
    (tmp_path / "tex.png").write_bytes(corpus_png())
    doc = load_asset(gltf(tmp_path, images=[{"uri": "tex.png"}]))
    assert "uri" not in doc.json["buffers"][0] and "uri" not in doc.json["images"][0]
    assert doc.json["images"][0]["mimeType"] == "image/png"
    assert doc.read_accessor(0).shape == (3, 3)


def corpus_png() -> bytes:
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (4, 4), (200, 30, 30)).save(out, format="PNG")
    return out.getvalue()


@pytest.mark.parametrize(
    ("uri", "code"),
    [
        ("../outside.bin", "gltf_external_uri"),
        ("/etc/passwd", "gltf_external_uri"),
        ("sub/../../outside.bin", "gltf_external_uri"),
        ("http://example.org/a.bin", "gltf_external_uri"),
        ("file:///etc/passwd", "gltf_external_uri"),
        ("%2e%2e/outside.bin", "gltf_external_uri"),
        ("missing.bin", "file_missing"),
        ("data:application/octet-stream,notbase64", "gltf_data_uri"),
        ("data:application/octet-stream;base64,@@@@", "gltf_data_uri"),
    ],
)
def test_buffer_uris_are_confined(tmp_path, uri, code):
    (tmp_path.parent / "outside.bin").write_bytes(TRIANGLE)
    path = gltf(tmp_path, buffers=[{"uri": uri, "byteLength": 36}])
    with pytest.raises(GltfInvalid) as info:
        load_asset(path)
    assert info.value.code == code
    assert "/buffers/0/uri" in info.value.message


def test_symlink_out_of_the_folder_is_refused(tmp_path):
    (tmp_path / "outside.bin").write_bytes(TRIANGLE)
    folder = tmp_path / "asset"
    folder.mkdir()
    (folder / "link.bin").symlink_to(tmp_path / "outside.bin")
    with pytest.raises(GltfInvalid) as info:
        load_asset(gltf(folder, buffers=[{"uri": "link.bin", "byteLength": 36}]))
    assert info.value.code == "gltf_external_uri"


def test_oversized_data_uri_is_refused_before_decoding(tmp_path):
    payload = base64.b64encode(b"\0" * 4096).decode()
    path = gltf(tmp_path, buffers=[{"uri": "data:application/octet-stream;base64," + payload,
                                    "byteLength": 4096}])
    with pytest.raises(GltfInvalid) as info:
        load_asset(path, LoadLimits(max_data_uri_bytes=1024))
    assert info.value.code == "gltf_data_uri_too_large"


def test_claimed_sizes_are_checked_against_real_ones(tmp_path):
    (tmp_path / "small.bin").write_bytes(TRIANGLE)
    with pytest.raises(GltfInvalid) as info:
        load_asset(gltf(tmp_path, buffers=[{"uri": "small.bin", "byteLength": 1 << 40}]))
    assert info.value.code in ("glb_truncated", "gltf_too_large")


def test_total_resource_budget(tmp_path):
    (tmp_path / "a.bin").write_bytes(TRIANGLE * 100)
    with pytest.raises(GltfInvalid) as info:
        load_asset(gltf(tmp_path, buffers=[{"uri": "a.bin", "byteLength": 3600}]),
                   LoadLimits(max_total_bytes=1000))
    assert info.value.code == "gltf_too_large"


@pytest.mark.parametrize(("data", "what"), [
    (b"GIF89a" + bytes(32), "gif"), (b"BM" + bytes(60), "bmp"), (b"<svg/>", "svg"),
])
def test_only_allowed_image_formats(tmp_path, data, what):
    (tmp_path / f"t.{what}").write_bytes(data)
    with pytest.raises(GltfInvalid) as info:
        load_asset(gltf(tmp_path, images=[{"uri": f"t.{what}"}]))
    assert info.value.code == "image_format" and "/images/0" in info.value.message


def test_nan_positions_and_wild_indices_are_reported(tmp_path):
    bad = struct.pack("<9f", float("nan"), 0, 0, 1, 0, 0, 0, 1, 0)
    idx = struct.pack("<3H", 0, 1, 7)
    data = bad + idx + b"\0\0"
    path = gltf(tmp_path, buffers=[{"uri": "data:application/octet-stream;base64,"
                                    + base64.b64encode(data).decode(), "byteLength": 44}],
                extra={"bufferViews": [{"buffer": 0, "byteLength": 36},
                                       {"buffer": 0, "byteOffset": 36, "byteLength": 6}],
                       "accessors": [{"bufferView": 0, "componentType": 5126, "count": 3,
                                      "type": "VEC3"},
                                     {"bufferView": 1, "componentType": 5123, "count": 3,
                                      "type": "SCALAR"}],
                       "meshes": [{"primitives": [{"attributes": {"POSITION": 0},
                                                   "indices": 1}]}]})
    codes = {(i.code, i.field) for i in structural_issues(load_asset(path), str(path))}
    assert ("position_not_finite", "/meshes/0/primitives/0/attributes/POSITION") in codes
    assert ("index_out_of_range", "/meshes/0/primitives/0/indices") in codes


def test_unsupported_and_broken_mesh_formats(tmp_path):
    (tmp_path / "a.fbx").write_bytes(b"Kaydara FBX Binary")
    with pytest.raises(GltfInvalid, match="unsupported file type"):
        load_asset(tmp_path / "a.fbx")
    (tmp_path / "b.stl").write_bytes(b"solid x\nfacet garbage\n" * 3)
    with pytest.raises(GltfInvalid) as info:
        load_asset(tmp_path / "b.stl")
    assert info.value.code == "mesh_invalid"


def test_obj_ply_stl_load(tmp_path):
    import trimesh

    mesh = trimesh.creation.box()
    for ext in ("obj", "ply", "stl"):
        path = tmp_path / f"box.{ext}"
        mesh.export(path)
        doc = load_asset(path)
        from tourserver.ingest.inspect import scene_stats

        assert scene_stats(doc).triangles == 12, ext


def test_corpus_models_with_external_files_load(tmp_path):
    doc = load_asset(corpus_file("TextureTransformTest/TextureTransformTest.gltf"))
    assert len(doc.json["images"]) == 5 and all("bufferView" in i for i in doc.json["images"])
    glb = tmp_path / "t.glb"
    glb.write_bytes(write_glb(doc))
    again = load_asset(glb)
    assert again.json["images"][0]["mimeType"] == doc.json["images"][0]["mimeType"]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(st.recursive(st.none() | st.booleans() | st.integers(-5, 2**33) | st.text(max_size=12),
                    lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.sampled_from(
                        ["uri", "byteLength", "buffer", "bufferView", "count", "type",
                         "componentType", "byteOffset", "byteStride", "nodes", "children",
                         "mesh", "attributes", "indices", "primitives", "POSITION"]),
                        inner, max_size=5), max_leaves=20),
       st.sampled_from(["buffers", "bufferViews", "accessors", "meshes", "nodes", "images",
                        "scenes", "scene", "animations", "skins"]))
def test_fuzzed_gltf_json_never_crashes_the_loader(tmp_path, value, key):
    path = tmp_path / "f.gltf"
    path.write_text(json.dumps({"asset": {"version": "2.0"}, key: value}))
    try:
        doc = load_asset(path)
        structural_issues(doc, str(path))
    except TourError:
        pass


def test_glb_with_trailing_garbage_and_cut_files(tmp_path):
    path = tmp_path / "a.glb"
    tiny_glb(path)
    data = path.read_bytes()
    for bad, code in ((data[:-10], "glb_truncated"), (data + b"junk", "glb_length_mismatch")):
        path.write_bytes(bad)
        with pytest.raises(GltfInvalid) as info:
            load_asset(path)
        assert info.value.code == code
