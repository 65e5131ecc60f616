"""Flat normals: NORMAL goes only where a client's own flat normals draw the same."""

from __future__ import annotations

import numpy as np
import trimesh
from scene_compare import soups, validator_errors
from support import corpus_file
from test_weld import mesh_doc

from tourserver.gltf.document import Document
from tourserver.ingest.loaders import load_asset
from tourserver.pipeline.base import run
from tourserver.pipeline.flat_normals import FlatNormals
from tourserver.pipeline.optimize import OptimizeOptions, plan
from tourserver.pipeline.weld import Weld


def flat_soup(mesh: trimesh.Trimesh) -> dict[str, np.ndarray]:
    """A flat-shaded mesh as exporters write one: three vertices per face, each with the
    face's normal."""
    corners = mesh.faces.reshape(-1)
    return {"POSITION": mesh.vertices[corners].astype(np.float32),
            "NORMAL": np.repeat(mesh.face_normals, 3, axis=0).astype(np.float32)}


def client_flat_normals(doc: Document, prim: dict) -> np.ndarray:
    """What the glTF spec has a client compute without NORMAL: each face's normal."""
    p = doc.read_accessor(prim["attributes"]["POSITION"]).astype(np.float64)
    tri = doc.read_accessor(prim["indices"]).reshape(-1, 3)
    face = np.cross(p[tri[:, 1]] - p[tri[:, 0]], p[tri[:, 2]] - p[tri[:, 0]])
    return face / np.linalg.norm(face, axis=1, keepdims=True)


def positions_with_normals(doc: Document) -> dict[tuple, np.ndarray]:
    """{triangle's corner positions (rounded): the normal a client shades it with}."""
    out = {}
    for mesh in doc.json["meshes"]:
        for prim in mesh["primitives"]:
            p = doc.read_accessor(prim["attributes"]["POSITION"]).astype(np.float64)
            tri = doc.read_accessor(prim["indices"]).reshape(-1, 3)
            if "NORMAL" in prim["attributes"]:
                n = doc.read_accessor(prim["attributes"]["NORMAL"]).astype(np.float64)
                normals = n[tri].mean(axis=1)
                normals /= np.linalg.norm(normals, axis=1, keepdims=True)
            else:
                normals = client_flat_normals(doc, prim)
            for t, normal in zip(tri, normals, strict=True):
                out[tuple(np.round(p[t], 5).reshape(-1))] = normal
    return out


def test_a_flat_shaded_box_loses_its_normals_and_welds_to_its_corners(tmp_path):
    box = trimesh.creation.box()
    doc = mesh_doc(flat_soup(box), np.arange(36, dtype=np.uint16))
    out, ctx = run(doc, FlatNormals(), Weld())
    prim = out.json["meshes"][0]["primitives"][0]
    assert "NORMAL" not in prim["attributes"]
    assert ctx.facts["flat_normals.triangles"] == 12
    assert out.json["accessors"][prim["attributes"]["POSITION"]]["count"] == 8  # was 36
    # A client shades every face with the normal the source stored.
    assert np.allclose(client_flat_normals(out, prim), box.face_normals[
        _face_order(out, prim, box)], atol=1e-6)
    assert [s.shape for s in soups(out)] == [s.shape for s in soups(doc)]
    assert validator_errors(out, tmp_path / "box.glb") == 0


def _face_order(doc: Document, prim: dict, mesh: trimesh.Trimesh) -> np.ndarray:
    """For each output triangle, the index of the source face with the same corners."""
    p = doc.read_accessor(prim["attributes"]["POSITION"]).astype(np.float64)
    tri = doc.read_accessor(prim["indices"]).reshape(-1, 3)
    centres = p[tri].mean(axis=1)
    source = mesh.vertices[mesh.faces].mean(axis=1)
    return np.argmin(np.linalg.norm(centres[:, None] - source[None], axis=2), axis=1)


def test_smooth_normals_stay():
    sphere = trimesh.creation.icosphere(subdivisions=2)
    doc = mesh_doc({"POSITION": sphere.vertices.astype(np.float32),
                    "NORMAL": sphere.vertex_normals.astype(np.float32)},
                   sphere.faces.reshape(-1).astype(np.uint16))
    out, ctx = run(doc, FlatNormals())
    assert "NORMAL" in out.json["meshes"][0]["primitives"][0]["attributes"]
    assert ctx.facts["flat_normals.primitives"] == 0


def test_a_mostly_flat_primitive_is_split_and_every_triangle_keeps_its_shading(tmp_path):
    box = trimesh.creation.box()
    attributes = flat_soup(trimesh.util.concatenate([box.copy().apply_translation((x, 0, 0))
                                                     for x in range(10)]))
    attributes["NORMAL"][:3] = [0.6, 0.0, 0.8]  # one triangle shaded unlike its face
    doc = mesh_doc(attributes, np.arange(360, dtype=np.uint16))
    out, ctx = run(doc, FlatNormals())
    prims = out.json["meshes"][0]["primitives"]
    assert len(prims) == 2 and ctx.facts["flat_normals.split"] == 1
    assert sorted("NORMAL" in p["attributes"] for p in prims) == [False, True]
    smooth = next(p for p in prims if "NORMAL" in p["attributes"])
    assert out.json["accessors"][smooth["indices"]]["count"] == 3
    before, after = positions_with_normals(doc), positions_with_normals(out)
    assert before.keys() == after.keys()  # every triangle drawn once, winding kept
    worst = max(np.degrees(np.arccos(np.clip(before[k] @ after[k], -1, 1))) for k in before)
    assert worst < 1e-3
    assert validator_errors(out, tmp_path / "split.glb") == 0


def test_a_triangle_wound_against_its_normal_is_not_flat():
    box = trimesh.creation.box()
    attributes = flat_soup(box)
    attributes["NORMAL"] = -attributes["NORMAL"]  # every face seen from behind
    doc = mesh_doc(attributes, np.arange(36, dtype=np.uint16))
    out, _ = run(doc, FlatNormals())
    assert "NORMAL" in out.json["meshes"][0]["primitives"][0]["attributes"]


def test_tangents_normal_maps_and_morph_targets_keep_their_normals():
    box = trimesh.creation.box()
    indices = np.arange(36, dtype=np.uint16)
    with_tangent = flat_soup(box)
    with_tangent["TANGENT"] = np.tile([1, 0, 0, 1], (36, 1)).astype(np.float32)
    morphed = mesh_doc(flat_soup(box), indices,
                       targets=[{"POSITION": np.zeros((36, 3), np.float32)}])
    normal_mapped = mesh_doc(flat_soup(box), indices)
    normal_mapped.json["materials"] = [{"normalTexture": {"index": 0}}]
    normal_mapped.json["meshes"][0]["primitives"][0]["material"] = 0
    clearcoat_mapped = mesh_doc(flat_soup(box), indices)
    clearcoat_mapped.json["materials"] = [{"extensions": {"KHR_materials_clearcoat": {
        "clearcoatNormalTexture": {"index": 0}}}}]
    clearcoat_mapped.json["meshes"][0]["primitives"][0]["material"] = 0
    for doc in (mesh_doc(with_tangent, indices), morphed, normal_mapped, clearcoat_mapped):
        out, ctx = run(doc, FlatNormals())
        assert "NORMAL" in out.json["meshes"][0]["primitives"][0]["attributes"]
        assert ctx.facts["flat_normals.primitives"] == 0


def test_the_archive_preset_keeps_normals():
    assert not any(isinstance(t, FlatNormals) for t in plan(OptimizeOptions(preset="archive")))
    assert any(isinstance(t, FlatNormals) for t in plan(OptimizeOptions(preset="phone")))


def test_tiles_building_welds_to_a_third_of_its_vertices(tmp_path):
    doc = load_asset(corpus_file("TilesBuilding/building.glb"))
    out, ctx = run(doc, FlatNormals(), Weld())
    assert ctx.facts["flat_normals.triangles"] > 0.98 * sum(
        len(s) for s in soups(doc))
    assert ctx.facts["weld.vertices_after"] < 0.4 * ctx.facts["weld.vertices_before"]
    before, after = positions_with_normals(doc), positions_with_normals(out)
    assert before.keys() == after.keys()
    worst = max(np.degrees(np.arccos(np.clip(before[k] @ after[k], -1, 1))) for k in before)
    assert worst <= 1.0 + 1e-6  # within max_angle_deg of what the source shaded with
    assert validator_errors(out, tmp_path / "building.glb") == 0
