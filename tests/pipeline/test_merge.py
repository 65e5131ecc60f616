"""MergePrimitives: primitives of one mesh sharing material and layout become one draw, the
triangles stay the same, seams are welded, and nothing is merged across meshes or nodes."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from support import corpus_file, node_validator_available, require

from tourserver.gltf.buffers import BufferBuilder, repack
from tourserver.gltf.document import Document, write_glb
from tourserver.ingest.loaders import load_asset
from tourserver.pipeline.base import run
from tourserver.pipeline.dedup import Dedup
from tourserver.pipeline.merge import MergePrimitives


def validate(doc: Document, tmp_path, name: str = "out.glb"):
    from tourserver.ingest.validator import validate_file

    require(node_validator_available(), "node + npm gltf-validator")
    path = tmp_path / name
    path.write_bytes(write_glb(doc))
    return validate_file(path)


def triangles(doc: Document, prim: dict) -> np.ndarray:
    """The primitive's triangles as sorted rows of corner coordinates (order-free)."""
    pos = doc.read_accessor(prim["attributes"]["POSITION"])
    idx = doc.read_accessor(prim["indices"]).reshape(-1, 3)
    tris = pos[idx].reshape(-1, 9)
    return tris[np.lexsort(tris.T[::-1])]


def strip(n: int, x0: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A strip of quads from x0 to x0 + n: positions, normals and indices."""
    xs = np.arange(n + 1, dtype=np.float32) + x0
    pos = np.array([[x, y, 0.0] for x in xs for y in (0.0, 1.0)], dtype=np.float32)
    normals = np.tile(np.array([[0.0, 0.0, 1.0]], np.float32), (len(pos), 1))
    # Tiny differences that 8-bit normals cannot tell apart (exporter noise).
    normals[::3, 0] = 1e-4
    faces = []
    for i in range(n):
        a = 2 * i
        faces += [a, a + 2, a + 1, a + 1, a + 2, a + 3]
    return pos, normals, np.array(faces, dtype=np.uint16)


def generated() -> Document:
    """Mesh 0: three triangle primitives (two with material 0 that share a seam, one with
    material 1), a point primitive and one with extras; mesh 1 has material 0 too."""
    doc_json: dict = {"asset": {"version": "2.0"}, "scene": 0,
                      "scenes": [{"nodes": [0, 1]}],
                      "materials": [{"name": "a"}, {"name": "b"}]}
    b = BufferBuilder(doc_json)

    def prim(x0: float, material: int | None, **extra) -> dict:
        pos, normals, ind = strip(4, x0)
        out = {"attributes": {
            "POSITION": b.add_accessor(doc_json, pos, target=34962, with_bounds=True),
            "NORMAL": b.add_accessor(doc_json, normals, target=34962)},
            "indices": b.add_accessor(doc_json, ind, target=34963)}
        if material is not None:
            out["material"] = material
        out.update(extra)
        return out

    points = {"attributes": {"POSITION": b.add_accessor(
        doc_json, np.array([[0, 0, 1]] * 3, np.float32), target=34962, with_bounds=True)},
        "mode": 0, "material": 0}
    doc_json["meshes"] = [
        {"name": "walls", "primitives": [prim(0.0, 0), prim(0.0, 1), prim(4.0, 0), points,
                                         prim(8.0, 0, extras={"keep": 1})]},
        {"name": "other", "primitives": [prim(20.0, 0)]}]
    doc_json["nodes"] = [{"name": "walls", "mesh": 0}, {"name": "other", "mesh": 1}]
    return repack(Document({"asset": {"version": "2.0"}}, b""), doc_json, b.payloads)


def test_generated_mesh_merges_within_the_mesh_only(tmp_path):
    doc = generated()
    before_json, before_bytes = copy.deepcopy(doc.json), write_glb(doc)
    out, ctx = run(doc, MergePrimitives())
    assert doc.json == before_json and write_glb(doc) == before_bytes  # input untouched
    report = validate(out, tmp_path)
    assert report.errors == 0, [m for m in report.messages if m["severity"] == 0]

    walls, other = out.json["meshes"]
    # Material-0 triangle primitives 0 and 2 become one, in place of the first; material 1,
    # the points and the primitive with extras stay; mesh 1 is never merged into mesh 0.
    assert [p.get("material") for p in walls["primitives"]] == [0, 1, 0, 0]
    assert [p.get("mode", 4) for p in walls["primitives"]] == [4, 4, 0, 4]
    assert walls["primitives"][3]["extras"] == {"keep": 1}
    assert len(other["primitives"]) == 1
    assert [n["name"] for n in out.json["nodes"]] == ["walls", "other"]
    assert ctx.facts["merge.primitives_before"] == 6
    assert ctx.facts["merge.primitives_after"] == 5

    # The same triangles, and the seam at x = 4 (two vertices) welded once.
    prims_in = doc.json["meshes"][0]["primitives"]
    expected = np.concatenate([triangles(doc, prims_in[0]), triangles(doc, prims_in[2])])
    expected = expected[np.lexsort(expected.T[::-1])]
    merged = walls["primitives"][0]
    assert np.array_equal(triangles(out, merged), expected)
    assert out.json["accessors"][merged["attributes"]["POSITION"]]["count"] == 10 + 10 - 2
    assert ctx.facts["merge.vertices_before"] == 20
    assert ctx.facts["merge.vertices_after"] == 18
    # Normals that differ below 8-bit precision merged; what remains still rounds alike.
    normals = out.read_accessor(merged["attributes"]["NORMAL"])
    assert np.array_equal(np.round(normals * 127), np.tile([0, 0, 127], (18, 1)))
    # Deterministic.
    assert write_glb(run(doc, MergePrimitives())[0]) == write_glb(out)


def test_exact_mode_keeps_normals_that_differ():
    out, ctx = run(generated(), MergePrimitives(normal_bits=None))
    merged = out.json["meshes"][0]["primitives"][0]
    # Seam vertex (4, 0): the first strip's noisy normal vs the second's clean one.
    assert ctx.facts["merge.vertices_after"] > 18
    assert out.json["accessors"][merged["attributes"]["POSITION"]]["count"] == \
        ctx.facts["merge.vertices_after"]


def test_tiles_building_two_primitives_become_one(tmp_path):
    # Its two primitives use two identical materials (sharing one vertex buffer): Dedup
    # makes them one material, as in the optimiser's chain, then they merge.
    doc, _ = run(load_asset(corpus_file("TilesBuilding/building.glb")), Dedup())
    prims_in = doc.json["meshes"][0]["primitives"]
    assert len(prims_in) == 2
    out, ctx = run(doc, MergePrimitives())
    report = validate(out, tmp_path)
    assert report.errors == 0, [m for m in report.messages if m["severity"] == 0]
    prims = out.json["meshes"][0]["primitives"]
    assert len(prims) == 1
    assert ctx.facts["merge.primitives_after"] == 1
    tri_in = sum(doc.json["accessors"][p["indices"]]["count"] for p in prims_in)
    assert out.json["accessors"][prims[0]["indices"]]["count"] == tri_in
    vertices_in = sum(doc.json["accessors"][p["attributes"]["POSITION"]]["count"]
                      for p in prims_in)
    assert ctx.facts["merge.vertices_after"] < vertices_in
    assert len(write_glb(out)) < len(write_glb(doc))


def test_fox_single_primitive_is_left_alone():
    doc = load_asset(corpus_file("Fox/Fox.glb"))
    out, ctx = run(doc, MergePrimitives())
    assert out.json == doc.json and out.bin == doc.bin
    assert ctx.facts["merge.primitives_before"] == ctx.facts["merge.primitives_after"] == 1


def test_unusable_settings_are_refused():
    with pytest.raises(ValueError):
        MergePrimitives(normal_bits=1)
