"""Weld: identical vertices merge, unindexed triangles get indices, the surface is unchanged."""

from __future__ import annotations

import copy
import logging

import numpy as np
import pytest
import trimesh
from scene_compare import same_soups, validator_errors
from support import corpus_file

from tourserver.gltf.buffers import BufferBuilder, repack
from tourserver.gltf.document import Document, write_glb
from tourserver.ingest.loaders import load_asset
from tourserver.pipeline.base import Context, run
from tourserver.pipeline.instance import Instance
from tourserver.pipeline.reorder import Reorder
from tourserver.pipeline.weld import Weld


def mesh_doc(attributes: dict[str, np.ndarray], indices: np.ndarray | None = None,
             targets: list[dict[str, np.ndarray]] | None = None) -> Document:
    """One node, one mesh, one triangle primitive made of the given arrays."""
    j: dict = {"asset": {"version": "2.0"}, "scene": 0, "scenes": [{"nodes": [0]}],
               "nodes": [{"name": "thing", "mesh": 0, "extras": {"keep": True}}],
               "meshes": [{"name": "thing", "primitives": [{"attributes": {}}]}]}
    builder = BufferBuilder(j)
    prim = j["meshes"][0]["primitives"][0]
    for name, data in attributes.items():
        prim["attributes"][name] = builder.add_accessor(
            j, data, target=34962, with_bounds=name == "POSITION")
    if indices is not None:
        prim["indices"] = builder.add_accessor(j, indices, target=34963)
    for target in targets or []:
        prim.setdefault("targets", []).append({
            name: builder.add_accessor(j, data, target=34962, with_bounds=True)
            for name, data in target.items()})
    if targets:
        j["meshes"][0]["weights"] = [0.0] * len(targets)
    return repack(Document(j), j, builder.payloads)


def sphere_soup() -> tuple[trimesh.Trimesh, dict[str, np.ndarray]]:
    """An icosphere written the way CAD exporters do: three fresh vertices per triangle."""
    sphere = trimesh.creation.icosphere(subdivisions=3)
    corners = sphere.faces.reshape(-1)
    uv = (sphere.vertices[:, :2] * 0.5 + 0.5)
    return sphere, {"POSITION": sphere.vertices[corners].astype(np.float32),
                    "NORMAL": sphere.vertex_normals[corners].astype(np.float32),
                    "TEXCOORD_0": uv[corners].astype(np.float32)}


def test_triangle_soup_is_welded_and_indexed(tmp_path):
    sphere, attributes = sphere_soup()
    doc = mesh_doc(attributes)
    out, ctx = run(doc, Weld())
    assert ctx.facts["weld.vertices_before"] == 3 * len(sphere.faces)
    assert ctx.facts["weld.vertices_after"] == len(sphere.vertices)
    prim = out.json["meshes"][0]["primitives"][0]
    assert out.json["accessors"][prim["indices"]]["componentType"] == 5123  # uint16
    assert len(write_glb(out)) < len(write_glb(doc)) / 3
    assert same_soups(doc, out, ("POSITION", "NORMAL", "TEXCOORD_0"))
    position = out.json["accessors"][prim["attributes"]["POSITION"]]
    assert np.allclose(position["min"], attributes["POSITION"].min(axis=0))
    assert out.json["nodes"] == doc.json["nodes"]
    assert validator_errors(out, tmp_path / "out.glb") == 0


def test_vertices_differing_in_any_attribute_stay_apart():
    """A flat-shaded box: corners share positions but not normals: 24 vertices, not 8."""
    box = trimesh.creation.box()
    corners = box.faces.reshape(-1)
    normals = np.repeat(box.face_normals, 3, axis=0).astype(np.float32)
    doc = mesh_doc({"POSITION": box.vertices[corners].astype(np.float32), "NORMAL": normals})
    out, ctx = run(doc, Weld())
    assert ctx.facts["weld.vertices_after"] == 24
    assert same_soups(doc, out, ("POSITION", "NORMAL"))


def test_morph_targets_are_remapped_and_keep_vertices_apart(tmp_path):
    sphere, attributes = sphere_soup()
    n = len(attributes["POSITION"])
    displacement = np.zeros((n, 3), dtype=np.float32)
    displacement[: n // 2] = attributes["NORMAL"][: n // 2] * 0.1
    # The first half of the triangles bulge; vertices on the boundary move in one copy only.
    doc = mesh_doc({"POSITION": attributes["POSITION"], "NORMAL": attributes["NORMAL"]},
                   targets=[{"POSITION": displacement}])
    out, ctx = run(doc, Weld())
    expected = len(np.unique(np.hstack([attributes["POSITION"], attributes["NORMAL"],
                                        displacement]), axis=0))
    assert ctx.facts["weld.vertices_after"] == expected < n
    assert same_soups(doc, out, ("POSITION", "NORMAL"))  # targets are in the soup
    assert out.json["meshes"][0]["weights"] == [0.0]
    assert validator_errors(out, tmp_path / "out.glb") == 0


@pytest.mark.parametrize("overlap", [False, True])
def test_primitives_sharing_a_vertex_buffer(overlap, tmp_path):
    """Two primitives over one duplicated vertex buffer: disjoint halves are welded each on
    its own; fully overlapping ones are left (per-primitive copies would grow the file)."""
    sphere, attributes = sphere_soup()
    n = len(attributes["POSITION"])
    doc = mesh_doc(attributes, indices=np.arange(n // 2 if not overlap else n, dtype=np.uint16))
    j = copy.deepcopy(doc.json)
    builder = BufferBuilder(j)
    second = np.arange(n // 2 if not overlap else 0, n, dtype=np.uint16)
    prim = dict(j["meshes"][0]["primitives"][0])
    prim["indices"] = builder.add_accessor(j, second[::-1].copy(), target=34963)
    j["meshes"][0]["primitives"].append(prim)
    doc = repack(doc, j, builder.payloads)
    out, ctx = run(doc, Weld())
    assert same_soups(doc, out, ("POSITION", "NORMAL", "TEXCOORD_0"))
    if overlap:
        assert out.json == doc.json and out.bin == doc.bin
    else:
        assert ctx.facts["weld.vertices_after"] < n / 3
        assert len(write_glb(out)) < len(write_glb(doc)) / 2
    assert validator_errors(out, tmp_path / "out.glb") == 0


def test_tolerance_merges_near_duplicates_within_the_bound():
    sphere, attributes = sphere_soup()
    jitter = np.random.default_rng(7).uniform(-1e-6, 1e-6, attributes["POSITION"].shape)
    attributes = {"POSITION": (attributes["POSITION"] + jitter).astype(np.float32)}
    doc = mesh_doc(attributes)
    _, exact = run(doc, Weld())
    assert exact.facts["weld.vertices_after"] == exact.facts["weld.vertices_before"]
    out, ctx = run(doc, Weld(tolerance=1e-4))
    assert ctx.facts["weld.vertices_after"] < ctx.facts["weld.vertices_before"] / 3
    assert 0 < ctx.facts["weld.position_error"] <= 1e-4
    # Weld keeps the triangle order: compare corner by corner.
    prim = out.json["meshes"][0]["primitives"][0]
    corners = out.read_accessor(prim["attributes"]["POSITION"])[
        out.read_accessor(prim["indices"]).reshape(-1)]
    moved = np.abs(corners.astype(np.float64) - attributes["POSITION"]).max()
    assert moved <= ctx.facts["weld.position_error"] <= 1e-4


def test_sparse_accessors_are_left_alone(caplog):
    sphere, attributes = sphere_soup()
    doc = mesh_doc({"POSITION": attributes["POSITION"]})
    j = copy.deepcopy(doc.json)
    builder = BufferBuilder(j)
    j["accessors"].append({
        "componentType": 5126, "count": len(attributes["POSITION"]), "type": "VEC3",
        "min": [0.0, 0.0, 0.0], "max": [0.0, 0.5, 0.0],
        "sparse": {"count": 1,
                   "indices": {"bufferView": builder.add_view(np.array([3], "<u2").tobytes()),
                               "componentType": 5123},
                   "values": {"bufferView": builder.add_view(
                       np.array([0, 0.5, 0], "<f4").tobytes())}}})
    j["meshes"][0]["primitives"][0]["targets"] = [{"POSITION": len(j["accessors"]) - 1}]
    sparse_doc = repack(doc, j, builder.payloads)
    with caplog.at_level(logging.INFO, logger="tourserver.pipeline"):
        out, ctx = run(sparse_doc, Weld())
    assert out.json == sparse_doc.json and out.bin == sparse_doc.bin
    assert "sparse" in caplog.text


def test_fox_is_welded_and_keeps_its_skin_and_animations(tmp_path):
    doc = load_asset(corpus_file("Fox/Fox.glb"))
    before = copy.deepcopy(doc.json)
    out, ctx = run(doc, Weld())
    assert doc.json == before  # the input is never mutated
    assert ctx.facts["weld.vertices_before"] == 1728
    assert ctx.facts["weld.vertices_after"] < 1728 / 3
    assert len(write_glb(out)) < 0.8 * len(write_glb(doc))
    assert same_soups(doc, out, ("POSITION", "NORMAL", "TEXCOORD_0", "JOINTS_0", "WEIGHTS_0"))
    assert out.json["nodes"] == doc.json["nodes"]
    assert out.json["skins"][0]["joints"] == doc.json["skins"][0]["joints"]
    assert [a["channels"] for a in out.json["animations"]] == \
        [a["channels"] for a in doc.json["animations"]]
    assert [a.get("name") for a in out.json["animations"]] == ["Survey", "Walk", "Run"]
    assert validator_errors(out, tmp_path / "out.glb") == 0
    again, _ = run(doc, Weld())
    assert write_glb(again) == write_glb(out)  # deterministic


@pytest.mark.parametrize("rel", ["TextureTransformTest/TextureTransformTest.gltf",
                                 "PointCloudHouse/PropertyAttributesPointCloudHouse.gltf",
                                 "ClearCoatTest/ClearCoatTest.gltf"])
def test_nothing_to_weld_leaves_the_bytes(rel):
    """Already indexed models without duplicates, and point clouds, come back as they were."""
    doc = load_asset(corpus_file(rel))
    out = Weld()(doc, Context())
    assert out.bin == doc.bin and out.json == doc.json


@pytest.mark.slow
def test_large_2cylinderengine_weld_reorder_instance(tmp_path):
    """The one test on the 1.8 MB CAD model. It is indexed already, and every vertex differs
    from the others in position or normal (hard edges), so an exact weld merges none and
    keeps the surface bit for bit; reorder then cuts vertex-cache misses, and its repeated
    bolts (10 + 10 + 4 sibling nodes) become instanced nodes. The result stays valid."""
    from test_instance import same_drawing

    doc = load_asset(corpus_file("2CylinderEngine/2CylinderEngine.glb"))
    out, ctx = run(doc, Weld(), Reorder(), Instance())
    assert ctx.facts["weld.vertices_after"] <= ctx.facts["weld.vertices_before"] == 55843
    assert ctx.facts["reorder.acmr_after"] < ctx.facts["reorder.acmr_before"]
    assert ctx.facts["instance.nodes_replaced"] == 24
    assert same_soups(doc, out, ("POSITION", "NORMAL"))
    assert same_drawing(doc, out)
    assert validator_errors(out, tmp_path / "out.glb") == 0


def test_triangles_that_repeat_a_vertex_are_dropped():
    """Found by the peer benchmark: 2CylinderEngine has 11,154 such triangles, which
    gltfpack removes and we kept."""
    import struct

    from tourserver.gltf.document import Document, parse_glb, write_glb
    from tourserver.ingest.inspect import scene_stats
    from tourserver.pipeline.base import Context

    pos = struct.pack("<12f", 0, 0, 0, 1, 0, 0, 0, 1, 0, 1, 1, 0)
    idx = struct.pack("<9H", 0, 1, 2, 1, 3, 2, 2, 2, 3) + b"\0\0"
    data = pos + idx
    doc = parse_glb(write_glb(Document({
        "asset": {"version": "2.0"}, "scene": 0, "scenes": [{"nodes": [0]}],
        "nodes": [{"mesh": 0}], "meshes": [{"primitives": [{"attributes": {"POSITION": 0},
                                                            "indices": 1}]}],
        "buffers": [{"byteLength": len(data)}],
        "bufferViews": [{"buffer": 0, "byteLength": 48, "target": 34962},
                        {"buffer": 0, "byteOffset": 48, "byteLength": 18, "target": 34963}],
        "accessors": [{"bufferView": 0, "componentType": 5126, "count": 4, "type": "VEC3",
                       "min": [0, 0, 0], "max": [1, 1, 0]},
                      {"bufferView": 1, "componentType": 5123, "count": 9, "type": "SCALAR"}],
    }, data)))
    out = Weld()(doc, Context())
    assert scene_stats(out).triangles == 2


def test_optimised_output_has_no_two_vertices_alike(tmp_path):
    """The phone preset welds again after quantization: vertices whose attributes quantize
    to the same values are one vertex in the file (TilesBuilding had 640 such pairs).
    Checked without meshopt compression, whose octahedral normal filter may still round a
    few more normals alike (0.2 % here) after the weld."""
    from tourserver.gltf.document import parse_glb
    from tourserver.gltf.meshopt import decode_meshopt
    from tourserver.pipeline.optimize import OptimizeOptions, optimize

    path = corpus_file("TilesBuilding/building.glb")
    _, glb, report = optimize(load_asset(path), path.stat().st_size,
                              OptimizeOptions(compress="none"))
    assert glb is not None
    assert report.facts["weld_quantized.vertices_after"] < report.facts[
        "weld_quantized.vertices_before"]
    out = decode_meshopt(parse_glb(glb, "out.glb"))
    for mesh in out.json["meshes"]:
        for prim in mesh["primitives"]:
            columns = [np.ascontiguousarray(out.read_accessor(a)).view(np.uint8).reshape(
                out.json["accessors"][a]["count"], -1) for a in prim["attributes"].values()]
            rows = np.concatenate(columns, axis=1)
            assert len(np.unique(rows, axis=0)) == len(rows)
    (tmp_path / "out.glb").write_bytes(glb)
    assert validator_errors(out, tmp_path / "checked.glb") == 0
