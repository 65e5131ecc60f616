"""MeshoptCompress: EXT_meshopt_compression with a fallback buffer; an exact round trip,
fewer bytes (raw and gzipped), and files the validator accepts."""

from __future__ import annotations

import gzip
import json
import struct

import meshoptimizer
import numpy as np
import pytest
import trimesh
from support import corpus_file, node_validator_available, require

from tourserver.gltf.document import COMPONENT_DTYPES, Document, parse_glb, write_glb
from tourserver.ingest.loaders import load_asset
from tourserver.pipeline.base import run
from tourserver.pipeline.meshopt_compress import (
    EXTENSION,
    MeshoptCompress,
    decode_meshopt,
    encode_filter_exp,
    encode_filter_oct,
    encode_filter_quat,
)
from tourserver.pipeline.quantize import Quantize

FALLBACK = {"EXT_meshopt_compression": {"fallback": True}}


def validate(doc: Document, tmp_path, name: str = "out.glb"):
    from tourserver.ingest.validator import validate_file

    require(node_validator_available(), "node + npm gltf-validator")
    path = tmp_path / name
    path.write_bytes(write_glb(doc))
    return validate_file(path)


def glb_json(data: bytes) -> dict:
    length = struct.unpack_from("<I", data, 12)[0]
    return json.loads(data[20:20 + length])


def _view_filters(doc: Document) -> dict[int, str]:
    """accessor -> the EXT_meshopt_compression filter on its view (if any)."""
    views = doc.json.get("bufferViews", [])
    out = {}
    for i, acc in enumerate(doc.json.get("accessors", [])):
        ext = views[acc["bufferView"]].get("extensions", {}).get(EXTENSION, {}) \
            if "bufferView" in acc else {}
        if "filter" in ext:
            out[i] = ext["filter"]
    return out


def _unit(a: np.ndarray) -> np.ndarray:
    return a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-30)


def assert_round_trip(before: Document, after: Document, facts: dict | None = None) -> None:
    """Every accessor decodes to its input: exactly, or within the reported error for
    views a lossy filter encoded (views may have been merged, so compare accessors)."""
    back = decode_meshopt(after)
    filters = _view_filters(after)
    facts = facts or {}
    for i, acc in enumerate(before.json.get("accessors", [])):
        a, b = before.read_accessor(i), back.read_accessor(i)
        flt = filters.get(i)
        if flt is None:
            assert np.array_equal(a, b), f"accessor {i}"
            assert back.json["accessors"][i]["componentType"] == acc["componentType"]
        elif flt == "OCTAHEDRAL":
            angle = np.degrees(np.arccos(np.clip(np.sum(
                _unit(a[:, :3].astype(float)) * _unit(b[:, :3].astype(float)), axis=1), -1, 1)))
            nonzero = np.abs(a[:, :3]).sum(axis=1) > 0
            assert angle[nonzero].max(initial=0) <= facts["meshopt.normal_error_deg"] + 1e-4
            assert facts["meshopt.normal_error_deg"] < 1.5  # 8-bit octahedral: about 1 degree
            if a.shape[1] == 4:
                assert np.array_equal(a[:, 3], b[:, 3])  # tangent handedness kept
        elif flt == "QUATERNION":
            assert back.json["accessors"][i]["normalized"] is True
            q = _unit(b.astype(float) / 32767.0)
            dots = np.abs(np.sum(_unit(a.astype(float)) * q, axis=1))
            angle = np.degrees(2 * np.arccos(np.clip(dots, 0, 1)))
            assert angle.max(initial=0) <= facts["meshopt.rotation_error_deg"] + 1e-4
            assert facts["meshopt.rotation_error_deg"] < 0.2
        else:
            assert flt == "EXPONENTIAL"
            err = np.abs(a.astype(float) - b.astype(float)).max(initial=0)
            assert err <= facts["meshopt.animation_error"] + 1e-9
            scale = np.abs(a).max(initial=1.0)
            assert facts["meshopt.animation_error"] <= scale * 2.0 ** -14
    for image, image_back in zip(before.json.get("images", []), back.json.get("images", []),
                                 strict=True):
        if "bufferView" in image:
            assert back.buffer_view_bytes(image_back["bufferView"]) == \
                before.buffer_view_bytes(image["bufferView"])
    assert EXTENSION not in back.json.get("extensionsUsed", [])
    assert back.json["buffers"] == [{"byteLength": len(back.bin)}]


def indexed_mesh(mode: int = 4, normals: bool = False) -> Document:
    mesh = trimesh.creation.icosphere(subdivisions=4, radius=3.0)
    doc = parse_glb(trimesh.Scene(mesh).export(file_type="glb", include_normals=normals))
    if mode != 4:
        doc.json["meshes"][0]["primitives"][0]["mode"] = mode
    return doc


def index_accessor(doc: Document) -> int:
    return doc.json["meshes"][0]["primitives"][0]["indices"]


def cache_optimised(doc: Document) -> np.ndarray:
    indices = doc.read_accessor(index_accessor(doc)).reshape(-1).astype(np.uint32)
    optimised = np.zeros_like(indices)
    vertices = doc.json["accessors"][doc.json["meshes"][0]["primitives"][0]["attributes"][
        "POSITION"]]["count"]
    meshoptimizer.optimize_vertex_cache(optimised, indices, len(indices), vertices)
    return optimised


def with_indices(doc: Document, indices: np.ndarray) -> Document:
    acc = doc.json["accessors"][index_accessor(doc)]
    view = doc.json["bufferViews"][acc["bufferView"]]
    start = view.get("byteOffset", 0) + acc.get("byteOffset", 0)
    raw = indices.astype(COMPONENT_DTYPES[acc["componentType"]]).tobytes()
    data = bytearray(doc.bin)
    data[start:start + len(raw)] = raw
    return Document(doc.json, bytes(data))


@pytest.mark.parametrize("mode, expected", [(4, "TRIANGLES"), (1, "INDICES")])
def test_generated_mesh_round_trips_exactly_and_shrinks(tmp_path, mode, expected):
    doc = indexed_mesh(mode)
    if mode == 4:
        # Cache-optimised triangles as the TRIANGLES codec stores them (rotation-stable), so
        # that mode is both exact and smaller; the test below covers the other cases.
        doc = with_indices(doc, cache_optimised(doc))
        rotated = decode_meshopt(run(doc, MeshoptCompress(level="always",
                                                          rotate_triangles=True))[0])
        doc = with_indices(doc, rotated.read_accessor(index_accessor(doc)).reshape(-1))
    before = write_glb(doc)
    out, ctx = run(doc, MeshoptCompress(level="always"))
    assert write_glb(doc) == before  # input untouched
    modes = {v["extensions"][EXTENSION]["mode"] for v in out.json["bufferViews"]
             if EXTENSION in v.get("extensions", {})}
    assert {expected, "ATTRIBUTES"} <= modes
    assert_round_trip(doc, out)
    packed = write_glb(out)
    assert len(packed) < len(before)
    assert len(gzip.compress(packed)) < len(packed)
    assert ctx.facts["meshopt.views"] >= 2
    report = validate(out, tmp_path)
    assert report.errors == 0, [m for m in report.messages if m["severity"] == 0]
    assert write_glb(run(doc, MeshoptCompress(level="always"))[0]) == packed  # deterministic


def test_fox_round_trip_fallback_buffer_and_animation_samplers(tmp_path):
    doc = load_asset(corpus_file("Fox/Fox.glb"))
    out, _ = run(doc, MeshoptCompress(level="always"))
    assert_round_trip(doc, out)
    # The fallback buffer survives writing: sized, no data, tagged.
    written = glb_json(write_glb(out))
    assert written["buffers"][1] == {"byteLength": written["buffers"][1]["byteLength"],
                                     "extensions": FALLBACK}
    assert written["buffers"][0]["byteLength"] == len(out.bin)
    # Without data for the fallback, the spec makes the extension required.
    assert EXTENSION in written["extensionsUsed"] and EXTENSION in written["extensionsRequired"]
    views = written["bufferViews"]
    for view in views:
        ext = view.get("extensions", {}).get(EXTENSION)
        if ext:
            assert view["buffer"] == 1 and ext["buffer"] == 0
            assert view["byteLength"] == ext["count"] * ext["byteStride"]
        else:
            assert view["buffer"] == 0
    # Animation samplers are compressed too, as attributes.
    samplers = written["animations"][0]["samplers"]
    sampler_views = {written["accessors"][s[k]]["bufferView"] for s in samplers
                     for k in ("input", "output")}
    assert any(views[v].get("extensions", {}).get(EXTENSION, {}).get("mode") == "ATTRIBUTES"
               for v in sampler_views)
    report = validate(out, tmp_path)
    assert report.errors == 0, [m for m in report.messages if m["severity"] == 0]
    # The validator cannot read compressed data; the decoded file gets the full data checks.
    assert validate(decode_meshopt(out), tmp_path, "decoded.glb").errors == 0


def test_default_level_never_loses_to_gzip():
    doc = load_asset(corpus_file("Fox/Fox.glb"))
    out, _ = run(doc, MeshoptCompress())
    plain, packed = write_glb(doc), write_glb(out)
    assert len(packed) < len(plain)
    assert len(gzip.compress(packed, 6)) < len(gzip.compress(plain, 6))
    assert len(gzip.compress(packed, 6)) < len(packed)
    assert_round_trip(doc, out)


def test_quantize_then_compress_fox_validates(tmp_path):
    doc = load_asset(corpus_file("Fox/Fox.glb"))
    quantized = run(doc, Quantize())[0]
    out, ctx = run(quantized, MeshoptCompress())
    assert_round_trip(quantized, out, ctx.facts)
    filters = set(_view_filters(out).values())
    assert filters == {"QUATERNION", "EXPONENTIAL"}  # Fox has no normals
    assert set(out.json["extensionsRequired"]) >= {"KHR_mesh_quantization", EXTENSION}
    report = validate(out, tmp_path)
    assert report.errors == 0, [m for m in report.messages if m["severity"] == 0]
    assert validate(decode_meshopt(out), tmp_path, "decoded.glb").errors == 0
    assert len(gzip.compress(write_glb(out))) < len(gzip.compress(write_glb(doc)))
    assert len(out.json["animations"]) == len(doc.json["animations"]) == 3
    assert out.json["skins"][0]["joints"] == doc.json["skins"][0]["joints"]


def test_point_cloud_keeps_metadata_and_round_trips(tmp_path):
    doc = load_asset(corpus_file("PointCloudHouse/PropertyAttributesPointCloudHouse.gltf"))
    out, _ = run(doc, MeshoptCompress())
    assert_round_trip(doc, out)
    assert out.json["meshes"][0]["primitives"][0]["mode"] == 0
    assert out.json["extensions"] == doc.json["extensions"]
    assert len(gzip.compress(write_glb(out))) < len(gzip.compress(write_glb(doc)))
    report = validate(out, tmp_path)
    assert report.errors == 0, [m for m in report.messages if m["severity"] == 0]


def test_images_stay_plain_in_buffer_zero():
    doc = load_asset(corpus_file("Fox/Fox.glb"))
    out, _ = run(doc, MeshoptCompress(level="always"))
    image_view = out.json["images"][0]["bufferView"]
    assert out.json["bufferViews"][image_view]["buffer"] == 0
    assert EXTENSION not in out.json["bufferViews"][image_view].get("extensions", {})
    assert out.buffer_view_bytes(image_view) == doc.buffer_view_bytes(
        doc.json["images"][0]["bufferView"])


def test_write_glb_keeps_only_fallback_buffers():
    doc = indexed_mesh()
    # Documents without the extension are written as before: one buffer, the BIN chunk.
    assert glb_json(write_glb(doc))["buffers"] == [{"byteLength": len(doc.bin)}]
    stray = Document(dict(doc.json, buffers=[{"byteLength": 1}, {"byteLength": 8}]), doc.bin)
    assert glb_json(write_glb(stray))["buffers"] == [{"byteLength": len(doc.bin)}]


def test_unknown_level_is_refused():
    with pytest.raises(ValueError):
        MeshoptCompress(level="max")


def test_triangle_rotation_is_exact_by_default_and_smaller_when_allowed():
    doc = indexed_mesh()
    doc = with_indices(doc, cache_optimised(doc))  # as the optimiser leaves it
    index_view = doc.json["accessors"][doc.json["meshes"][0]["primitives"][0]["indices"]][
        "bufferView"]
    exact = run(doc, MeshoptCompress(level="always"))[0]
    assert exact.json["bufferViews"][index_view]["extensions"][EXTENSION]["mode"] == "INDICES"
    assert_round_trip(doc, exact)
    rotated = run(doc, MeshoptCompress(level="always", rotate_triangles=True))[0]
    ext = rotated.json["bufferViews"][index_view]["extensions"][EXTENSION]
    assert ext["mode"] == "TRIANGLES"
    assert ext["byteLength"] < exact.json["bufferViews"][index_view]["extensions"][EXTENSION][
        "byteLength"]
    before = doc.read_accessor(doc.json["meshes"][0]["primitives"][0]["indices"]).reshape(-1, 3)
    after = decode_meshopt(rotated).read_accessor(
        doc.json["meshes"][0]["primitives"][0]["indices"]).reshape(-1, 3)
    assert not np.array_equal(before, after)
    same = np.any([(np.roll(before, k, axis=1) == after).all(axis=1) for k in range(3)], axis=0)
    assert same.all()  # each triangle the same, same winding, same order


def _c_encoder(name: str):
    """meshoptimizer's own C filter encoder from the bindings' library, when it exports it
    (the Python API has only the decoders): the reference our numpy encoders must match."""
    import ctypes

    from meshoptimizer._loader import lib

    func = getattr(lib, name, None)
    require(func is not None, f"{name} exported by the meshoptimizer bindings")
    return func, ctypes


def test_filter_encoders_match_meshoptimizer_byte_for_byte():
    rng = np.random.default_rng(7)
    n = 1001
    vec = rng.normal(size=(n, 4)).astype(np.float32)
    vec[:, :3] /= np.linalg.norm(vec[:, :3], axis=1, keepdims=True)
    vec[:, 3] = np.sign(vec[:, 3])
    vec[:4, :3] = [[0, 0, 1], [0, 0, -1], [1, 0, 0], [0, 0, 0]]
    quats = rng.normal(size=(n, 4)).astype(np.float32)
    quats /= np.linalg.norm(quats, axis=1, keepdims=True)
    quats[:2] = [[0, 0, 0, 1], [0.5, 0.5, -0.5, -0.5]]
    floats = (rng.normal(size=(n, 3)) * [1e-3, 1.0, 300.0]).astype(np.float32)
    floats[0] = 0.0
    oct_c, ct = _c_encoder("meshopt_encodeFilterOct")
    quat_c, _ = _c_encoder("meshopt_encodeFilterQuat")
    exp_c, _ = _c_encoder("meshopt_encodeFilterExp")
    ptr = ct.c_void_p
    for stride, bits in ((4, 8), (8, 16), (4, 6)):
        ref = np.zeros((n, stride), np.uint8)
        oct_c(ref.ctypes.data_as(ptr), ct.c_size_t(n), ct.c_size_t(stride), ct.c_int(bits),
              vec.ctypes.data_as(ptr))
        assert np.array_equal(encode_filter_oct(vec, stride, bits), ref)
    for bits in (12, 16):
        ref = np.zeros((n, 8), np.uint8)
        quat_c(ref.ctypes.data_as(ptr), ct.c_size_t(n), ct.c_size_t(8), ct.c_int(bits),
               quats.ctypes.data_as(ptr))
        assert np.array_equal(encode_filter_quat(quats, bits), ref)
    ref = np.zeros((n, 3), np.uint32)
    exp_c(ref.ctypes.data_as(ptr), ct.c_size_t(n), ct.c_size_t(12), ct.c_int(16),
          floats.ctypes.data_as(ptr), ct.c_int(2))  # meshopt_EncodeExpSharedComponent
    assert np.array_equal(encode_filter_exp(floats, 16), ref)
    # And the public decoders give the data back within the filters' precision.
    back = meshoptimizer.decode_filter_exp(encode_filter_exp(floats, 16).view(np.uint8)
                                           .reshape(n, 12), n, 12).view(np.float32)
    # One exponent per column, from its largest value (a zero counts as 2^0, as in the C
    # code): half a step of a 16-bit mantissa.
    bound = np.maximum(np.abs(floats).max(axis=0), 1.0) * 2.0 ** -15
    assert np.all(np.abs(back.reshape(n, 3) - floats).max(axis=0) <= bound)


def test_quantized_normals_get_the_octahedral_filter_and_shrink(tmp_path):
    doc = indexed_mesh(normals=True)
    doc = with_indices(doc, cache_optimised(doc))
    quantized = run(doc, Quantize())[0]
    exact, _ = run(quantized, MeshoptCompress(filters="none"))
    out, ctx = run(quantized, MeshoptCompress())
    assert "OCTAHEDRAL" in _view_filters(out).values()
    assert "OCTAHEDRAL" not in _view_filters(exact).values()
    assert_round_trip(quantized, exact)  # no filter: exact
    assert_round_trip(quantized, out, ctx.facts)
    assert 0 < ctx.facts["meshopt.normal_error_deg"] < 1.5
    assert len(write_glb(out)) < len(write_glb(exact))
    # Smooth sphere normals already gzip well unfiltered: the filter is chosen per view
    # on deflated size, so the whole file gzipped stays within a hair of the exact one.
    assert len(gzip.compress(write_glb(out), 6)) <= 1.01 * len(gzip.compress(write_glb(exact), 6))
    report = validate(out, tmp_path)
    assert report.errors == 0, [m for m in report.messages if m["severity"] == 0]
    assert validate(decode_meshopt(out), tmp_path, "decoded.glb").errors == 0
    assert write_glb(run(quantized, MeshoptCompress())[0]) == write_glb(out)  # deterministic


def test_fox_animation_filters_merge_and_shrink(tmp_path):
    doc = load_asset(corpus_file("Fox/Fox.glb"))
    quantized = run(doc, Quantize())[0]
    plain, _ = run(quantized, MeshoptCompress(filters="none", merge_views=False))
    merged, _ = run(quantized, MeshoptCompress(filters="none"))
    out, ctx = run(quantized, MeshoptCompress())
    assert_round_trip(quantized, merged)
    assert len(merged.json["bufferViews"]) < len(plain.json["bufferViews"]) // 3
    assert ctx.facts["meshopt.merged_views"] > 0
    sizes = [len(gzip.compress(write_glb(d), 9)) for d in (plain, merged, out)]
    assert sizes[0] > sizes[1] > sizes[2], sizes
    assert_round_trip(quantized, out, ctx.facts)
    assert ctx.facts["meshopt.rotation_error_deg"] > 0
    report = validate(out, tmp_path)
    assert report.errors == 0, [m for m in report.messages if m["severity"] == 0]
    assert validate(decode_meshopt(out), tmp_path, "decoded.glb").errors == 0


def test_auto_filters_keep_unquantized_animation_exact():
    # The lossless chain (no Quantize, so no KHR_mesh_quantization) must stay exact.
    doc = load_asset(corpus_file("Fox/Fox.glb"))
    out, ctx = run(doc, MeshoptCompress())
    assert not _view_filters(out)
    assert_round_trip(doc, out)
    forced, ctx = run(doc, MeshoptCompress(filters="always"))
    assert {"QUATERNION"} <= set(_view_filters(forced).values())
    assert_round_trip(doc, forced, ctx.facts)


def test_bad_filter_settings_are_refused():
    with pytest.raises(ValueError):
        MeshoptCompress(filters="lossy")
    with pytest.raises(ValueError):
        MeshoptCompress(rotation_bits=2)
