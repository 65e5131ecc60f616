"""Dedup: duplicates merge, every reference follows, the scene renders the same."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import trimesh
from scene_compare import (
    SMALL_CORPUS,
    assert_same_scene_no_larger,
    resolved_scene,
    validator_errors,
)
from support import corpus_file

from tourserver.gltf.buffers import BufferBuilder, repack
from tourserver.gltf.document import Document, parse_glb, write_glb
from tourserver.ingest.loaders import load_asset
from tourserver.pipeline.base import Context, run
from tourserver.pipeline.dedup import Dedup


def copies_doc(copies: int = 3) -> Document:
    """`copies` nodes, each with its own mesh, accessors and (equal) material: what many
    exporters write for N placements of one object."""
    box = trimesh.creation.icosphere(subdivisions=2)
    j: dict = {"asset": {"version": "2.0"}, "scene": 0,
               "scenes": [{"nodes": list(range(copies))}], "nodes": [], "meshes": [],
               "materials": []}
    builder = BufferBuilder(j)
    for i in range(copies):
        pos = builder.add_accessor(j, box.vertices.astype(np.float32), target=34962,
                                   with_bounds=True)
        nor = builder.add_accessor(j, box.vertex_normals.astype(np.float32), target=34962)
        idx = builder.add_accessor(j, box.faces.reshape(-1).astype(np.uint16), target=34963)
        j["materials"].append({"name": f"paint.{i:03d}", "pbrMetallicRoughness": {
            "baseColorFactor": [0.9, 0.6, 0.1, 1.0]}})
        j["meshes"].append({"name": f"lamp.{i:03d}", "primitives": [
            {"attributes": {"POSITION": pos, "NORMAL": nor}, "indices": idx, "material": i}]})
        j["nodes"].append({"name": f"lamp {i}", "mesh": i, "translation": [3.0 * i, 0, 0],
                           "extras": {"id": i}})
    return repack(Document(j), j, builder.payloads)


def test_copies_merge_into_one_mesh(tmp_path):
    doc = copies_doc(3)
    out, ctx = run(doc, Dedup())
    assert ctx.facts["dedup.accessors"] == 6
    assert ctx.facts["dedup.materials"] == 2
    assert ctx.facts["dedup.meshes"] == 2
    assert len(out.json["meshes"]) == 1 and len(out.json["accessors"]) == 3
    assert [n["mesh"] for n in out.json["nodes"]] == [0, 0, 0]
    assert len(write_glb(out)) < len(write_glb(doc)) / 2
    assert resolved_scene(out) == resolved_scene(doc)
    assert [n["name"] for n in out.json["nodes"]] == ["lamp 0", "lamp 1", "lamp 2"]
    assert validator_errors(out, tmp_path / "out.glb") == 0


def test_keep_unique_names_keeps_differently_named_materials_and_meshes():
    out, ctx = run(copies_doc(3), Dedup(keep_unique_names=True))
    assert ctx.facts["dedup.accessors"] == 6  # data merge regardless
    assert ctx.facts["dedup.materials"] == 0 and ctx.facts["dedup.meshes"] == 0
    assert len(out.json["meshes"]) == 3


def test_index_and_vertex_data_are_never_merged(tmp_path):
    """Same bytes used as indices and as a vertex attribute live in different view types."""
    j: dict = {"asset": {"version": "2.0"}, "scenes": [{"nodes": [0]}], "nodes": [{"mesh": 0}],
               "meshes": [{"primitives": [{"attributes": {}, "indices": 0}]}]}
    builder = BufferBuilder(j)
    data = np.arange(12, dtype=np.uint16).reshape(-1)
    builder.add_accessor(j, data, target=34963)
    pos = builder.add_accessor(j, np.random.default_rng(1).random((12, 3), dtype=np.float32),
                               target=34962, with_bounds=True)
    custom = builder.add_accessor(j, data.reshape(-1, 1).astype(np.uint16), target=34962)
    j["meshes"][0]["primitives"][0]["attributes"] = {"POSITION": pos, "_ID": custom}
    doc = repack(Document(j), j, builder.payloads)
    out, ctx = run(doc, Dedup())
    assert ctx.facts["dedup.accessors"] == 0
    assert validator_errors(out, tmp_path / "out.glb") == 0


def test_duplicate_images_and_textures_in_extensions_are_merged(tmp_path):
    """A clearcoat texture pointing at a second copy of an image is redirected."""
    doc = load_asset(corpus_file("ClearCoatTest/ClearCoatTest.gltf"))
    j = copy.deepcopy(doc.json)
    infos = [info for m in j["materials"]
             for info in m.get("extensions", {}).get("KHR_materials_clearcoat", {}).values()
             if isinstance(info, dict) and "index" in info]
    assert infos, "ClearCoatTest has clearcoat textures"
    texture = j["textures"][infos[0]["index"]]
    image = j["images"][texture["source"]]
    view_bytes = doc.buffer_view_bytes(image["bufferView"])
    builder = BufferBuilder(j)
    view = builder.add_view(view_bytes)
    j["images"].append({"bufferView": view, "mimeType": image["mimeType"], "name": "copy"})
    j["textures"].append({**texture, "source": len(j["images"]) - 1})
    infos[0]["index"] = len(j["textures"]) - 1
    dirty = repack(doc, j, builder.payloads)
    assert resolved_scene(dirty) == resolved_scene(doc)

    out, ctx = run(dirty, Dedup())
    assert ctx.facts["dedup.images"] >= 1
    assert ctx.facts["dedup.textures"] >= 1
    assert len(write_glb(out)) < len(write_glb(dirty)) - len(view_bytes) + 64
    assert resolved_scene(out) == resolved_scene(doc)
    assert out.json["extensionsUsed"] == doc.json["extensionsUsed"]
    errors_in = validator_errors(doc, tmp_path / "in.glb")
    assert validator_errors(out, tmp_path / "out.glb") <= errors_in


def test_variant_mappings_follow_merged_materials(tmp_path):
    doc = load_asset(corpus_file("TextureTransformTest/TextureTransformTest.gltf"))
    j = copy.deepcopy(doc.json)
    twin = copy.deepcopy(j["materials"][0])
    twin["name"] = "twin"
    j["materials"].append(twin)
    j["extensionsUsed"].append("KHR_materials_variants")
    j["extensions"] = {"KHR_materials_variants": {"variants": [{"name": "night"}]}}
    prim = j["meshes"][-1]["primitives"][0]
    prim["extensions"] = {"KHR_materials_variants": {"mappings": [
        {"material": len(j["materials"]) - 1, "variants": [0]}]}}
    dirty = Document(j, doc.bin)
    out, ctx = run(dirty, Dedup())
    assert ctx.facts["dedup.materials"] == 1
    mapping = out.json["meshes"][-1]["primitives"][0]["extensions"]["KHR_materials_variants"]
    assert mapping["mappings"][0]["material"] == 0
    assert resolved_scene(out) == resolved_scene(dirty)
    assert validator_errors(out, tmp_path / "out.glb") == 0


def test_input_not_mutated_and_deterministic():
    doc = copies_doc(4)
    before = copy.deepcopy(doc.json)
    a, _ = run(doc, Dedup())
    b, _ = run(doc, Dedup())
    assert doc.json == before
    assert write_glb(a) == write_glb(b)


def test_unknown_extension_leaves_the_document_alone():
    doc = copies_doc(2)
    j = copy.deepcopy(doc.json)
    j["extensionsUsed"] = ["ACME_lod"]
    j["nodes"][0]["extensions"] = {"ACME_lod": {"meshes": [1]}}
    out, ctx = run(Document(j, doc.bin), Dedup())
    assert out.json == j and out.bin == doc.bin
    assert not any(ctx.facts.values())


@pytest.mark.parametrize("rel", SMALL_CORPUS)
def test_corpus_models_render_the_same(rel, tmp_path):
    doc = load_asset(corpus_file(rel))
    out = Dedup()(doc, Context())
    assert_same_scene_no_larger(doc, out, tmp_path)
    names = [n.get("name") for n in parse_glb(write_glb(out)).json["nodes"]]
    assert names == [n.get("name") for n in doc.json["nodes"]]


def test_clearcoat_duplicates_are_found():
    """ClearCoatTest reuses textures and materials under several indices."""
    doc = load_asset(corpus_file("ClearCoatTest/ClearCoatTest.gltf"))
    out, ctx = run(doc, Dedup())
    assert ctx.facts["dedup.textures"] > 0 and ctx.facts["dedup.materials"] > 0
    assert len(out.json["materials"]) < len(doc.json["materials"])
    assert len(out.json["textures"]) < len(doc.json["textures"])


def test_animation_times_and_values_with_equal_bytes_stay_apart(tmp_path):
    """Found by the peer benchmark: a morph-weight track whose values equal its times was
    merged into one accessor used as both input and output (ACCESSOR_USAGE_OVERRIDE)."""
    import struct

    from tourserver.gltf.document import parse_glb
    from tourserver.pipeline.base import Context

    times = struct.pack("<3f", 0.0, 0.5, 1.0)
    pos = struct.pack("<9f", 0, 0, 0, 1, 0, 0, 0, 1, 0)
    delta = struct.pack("<9f", 0, 0, 0, 0, 0, 1, 0, 0, 1)
    data = pos + delta + times + times
    doc_json = {
        "asset": {"version": "2.0"}, "scene": 0, "scenes": [{"nodes": [0]}],
        "nodes": [{"mesh": 0, "name": "m"}],
        "meshes": [{"primitives": [{"attributes": {"POSITION": 0}, "targets": [{"POSITION": 1}]}],
                    "weights": [0.0]}],
        "buffers": [{"byteLength": len(data)}],
        "bufferViews": [{"buffer": 0, "byteLength": 36, "target": 34962},
                        {"buffer": 0, "byteOffset": 36, "byteLength": 36, "target": 34962},
                        {"buffer": 0, "byteOffset": 72, "byteLength": 12},
                        {"buffer": 0, "byteOffset": 84, "byteLength": 12}],
        "accessors": [
            {"bufferView": 0, "componentType": 5126, "count": 3, "type": "VEC3",
             "min": [0, 0, 0], "max": [1, 1, 0]},
            {"bufferView": 1, "componentType": 5126, "count": 3, "type": "VEC3",
             "min": [0, 0, 0], "max": [0, 0, 1]},
            {"bufferView": 2, "componentType": 5126, "count": 3, "type": "SCALAR",
             "min": [0.0], "max": [1.0]},
            {"bufferView": 3, "componentType": 5126, "count": 3, "type": "SCALAR"}],
        "animations": [{"samplers": [{"input": 2, "output": 3}],
                        "channels": [{"sampler": 0, "target": {"node": 0, "path": "weights"}}]}],
    }
    from tourserver.gltf.document import Document as _Doc
    from tourserver.gltf.document import write_glb as _write

    doc = parse_glb(_write(_Doc(doc_json, data)))
    out = Dedup()(doc, Context())
    sampler = out.json["animations"][0]["samplers"][0]
    assert sampler["input"] != sampler["output"]
    assert validator_errors(out, tmp_path / "anim.glb") == 0
