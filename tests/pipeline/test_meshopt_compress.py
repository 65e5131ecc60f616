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

from tourserver.ingest.gltf_io import COMPONENT_DTYPES, Document, parse_glb, write_glb
from tourserver.ingest.loaders import load_asset
from tourserver.pipeline.base import run
from tourserver.pipeline.meshopt_compress import EXTENSION, MeshoptCompress, decode_meshopt
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


def assert_round_trip(before: Document, after: Document) -> None:
    back = decode_meshopt(after)
    views = before.json.get("bufferViews", [])
    assert len(back.json["bufferViews"]) == len(views)
    for i in range(len(views)):
        assert back.buffer_view_bytes(i) == before.buffer_view_bytes(i), f"view {i}"
    for i in range(len(before.json.get("accessors", []))):
        assert np.array_equal(back.read_accessor(i), before.read_accessor(i)), f"accessor {i}"
    assert EXTENSION not in back.json.get("extensionsUsed", [])
    assert back.json["buffers"] == [{"byteLength": len(back.bin)}]


def indexed_mesh(mode: int = 4) -> Document:
    mesh = trimesh.creation.icosphere(subdivisions=4, radius=3.0)
    doc = parse_glb(trimesh.Scene(mesh).export(file_type="glb"))
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
    assert_round_trip(quantized, out)
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
