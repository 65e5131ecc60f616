"""Prune: what nothing references goes; every node, animation and extension stays."""

from __future__ import annotations

import copy

import numpy as np
import pytest
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
from tourserver.pipeline.optimize import OptimizeOptions, plan
from tourserver.pipeline.prune import Prune


def with_garbage(doc: Document) -> Document:
    """The document plus a mesh no node uses, and a material, texture, sampler, image and
    accessor nothing uses."""
    j = copy.deepcopy(doc.json)
    builder = BufferBuilder(j)
    stray = builder.add_accessor(j, np.arange(300, dtype=np.float32), target=None)
    orphan_pos = builder.add_accessor(j, np.ones((9, 3), dtype=np.float32), target=34962,
                                      with_bounds=True)
    png = bytes.fromhex("89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489"
                        "0000000d49444154789c6300010000050001a5f645400000000049454e44ae426082")
    view = builder.add_view(png)
    j.setdefault("images", []).append({"bufferView": view, "mimeType": "image/png"})
    j.setdefault("samplers", []).append({"magFilter": 9729})
    j.setdefault("textures", []).append({"source": len(j["images"]) - 1,
                                         "sampler": len(j["samplers"]) - 1})
    j.setdefault("materials", []).append(
        {"name": "unused", "pbrMetallicRoughness": {
            "baseColorTexture": {"index": len(j["textures"]) - 1}}})
    j.setdefault("meshes", []).append({"name": "orphan", "primitives": [
        {"attributes": {"POSITION": orphan_pos}, "material": len(j["materials"]) - 1}]})
    j.setdefault("extras", {})["stray_accessor"] = stray  # extras are never followed
    return append_views(doc, j, builder.payloads)


def append_views(doc: Document, j: dict, payloads: dict[int, bytes]) -> Document:
    """New views after the old bytes (repack would already prune the garbage)."""
    data = bytearray(doc.bin)
    for index in sorted(payloads):
        data += b"\0" * ((-len(data)) % 4)
        j["bufferViews"][index].update({"buffer": 0, "byteOffset": len(data)})
        data += payloads[index]
    return Document(j, bytes(data), doc.source)


def test_removes_unreferenced_objects_and_keeps_the_scene(tmp_path):
    doc = load_asset(corpus_file("TextureTransformTest/TextureTransformTest.gltf"))
    dirty = with_garbage(doc)
    assert len(write_glb(dirty)) > len(write_glb(doc)) + 300 * 4
    out, ctx = run(dirty, Prune())
    for kind in ("meshes", "materials", "textures", "samplers", "images"):
        assert ctx.facts[f"prune.{kind}"] == 1, kind
        assert len(out.json[kind]) == len(doc.json[kind]), kind
    assert ctx.facts["prune.accessors"] == 2
    assert len(write_glb(out)) < len(write_glb(dirty)) - 300 * 4
    assert resolved_scene(out) == resolved_scene(doc)
    assert out.json["extensionsUsed"] == doc.json["extensionsUsed"]  # texture transform
    assert out.json["extras"] == {"stray_accessor": dirty.json["extras"]["stray_accessor"]}
    assert validator_errors(out, tmp_path / "out.glb") == 0


def test_input_is_not_mutated_and_output_is_deterministic():
    doc = with_garbage(load_asset(corpus_file("Fox/Fox.glb")))
    before = copy.deepcopy(doc.json)
    first, _ = run(doc, Prune())
    second, _ = run(doc, Prune())
    assert doc.json == before
    assert write_glb(first) == write_glb(second)


def test_unknown_extension_prunes_nothing():
    doc = with_garbage(load_asset(corpus_file("TextureTransformTest/TextureTransformTest.gltf")))
    j = copy.deepcopy(doc.json)
    j["extensionsUsed"].append("ACME_mystery_refs")
    j["extensions"] = {"ACME_mystery_refs": {"material": len(j["materials"]) - 1}}
    out, ctx = run(Document(j, doc.bin), Prune())
    assert out.json == j
    assert out.bin == doc.bin
    assert not any(ctx.facts.values())


def test_nodes_without_meshes_and_unused_skins_nodes_are_kept():
    """Every node survives (names and hierarchy are the creator's); a skin no node uses goes,
    its joints stay."""
    doc = load_asset(corpus_file("Fox/Fox.glb"))
    j = copy.deepcopy(doc.json)
    skinned = next(n for n in j["nodes"] if "skin" in n)
    del skinned["skin"]
    out, ctx = run(Document(j, doc.bin), Prune())
    assert ctx.facts["prune.skins"] == 1
    assert "skins" not in out.json
    assert [n.get("name") for n in out.json["nodes"]] == [n.get("name") for n in j["nodes"]]
    assert len(out.json["animations"]) == 3


@pytest.mark.parametrize("rel", SMALL_CORPUS)
def test_corpus_models_keep_every_feature(rel, tmp_path):
    doc = load_asset(corpus_file(rel))
    out = Prune()(doc, Context())
    # Nothing there was unused, so nothing may be lost or grow.
    assert_same_scene_no_larger(doc, out, tmp_path)


def test_point_cloud_metadata_survives():
    doc = load_asset(corpus_file("PointCloudHouse/PropertyAttributesPointCloudHouse.gltf"))
    out = Prune()(doc, Context())
    prim = out.json["meshes"][0]["primitives"][0]
    assert prim["mode"] == 0
    assert {"_INTENSITY", "_CLASSIFICATION"} <= set(prim["attributes"])
    assert out.json["extensions"]["EXT_structural_metadata"] == \
        doc.json["extensions"]["EXT_structural_metadata"]
    assert parse_glb(write_glb(out)).json["meshes"] == out.json["meshes"]


# -- vertex attributes no material reads ------------------------------------------------

PNG_1PX = bytes.fromhex("89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489"
                        "0000000d49444154789c6300010000050001a5f645400000000049454e44ae426082")


def _quad(materials: list[dict], prims: list[dict]) -> Document:
    """A quad with POSITION, NORMAL, TANGENT, TEXCOORD_0 and TEXCOORD_1, drawn by each of
    `prims` (attributes shared), with one texture every material may sample."""
    j: dict = {"asset": {"version": "2.0"}, "scene": 0, "scenes": [{"nodes": [0]}],
               "nodes": [{"mesh": 0}], "meshes": [{"primitives": []}],
               "materials": materials, "samplers": [{}]}
    builder = BufferBuilder(j)
    attrs = {
        "POSITION": builder.add_accessor(j, np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0],
                                                      [0, 1, 0]], np.float32),
                                         target=34962, with_bounds=True),
        "NORMAL": builder.add_accessor(j, np.tile(np.float32([0, 0, 1]), (4, 1)),
                                       target=34962),
        "TANGENT": builder.add_accessor(j, np.tile(np.float32([1, 0, 0, 1]), (4, 1)),
                                        target=34962),
        "TEXCOORD_0": builder.add_accessor(j, np.float32([[0, 0], [1, 0], [1, 1], [0, 1]]),
                                           target=34962),
        "TEXCOORD_1": builder.add_accessor(j, np.float32([[0, 0], [.5, 0], [.5, .5],
                                                          [0, .5]]), target=34962),
    }
    indices = builder.add_accessor(j, np.uint16([0, 1, 2, 0, 2, 3]), target=34963)
    for prim in prims:
        j["meshes"][0]["primitives"].append({"attributes": dict(attrs), "indices": indices,
                                             **prim})
    j["images"] = [{"bufferView": builder.add_view(PNG_1PX), "mimeType": "image/png"}]
    j["textures"] = [{"source": 0, "sampler": 0}]
    return repack(Document(j), j, builder.payloads)


def _attributes(doc: Document) -> list[set[str]]:
    return [set(p["attributes"]) for p in doc.json["meshes"][0]["primitives"]]


def test_unused_texture_coordinates_and_tangents_go(tmp_path):
    doc = _quad([{"pbrMetallicRoughness": {"baseColorTexture": {"index": 0}}}],
                [{"material": 0}])
    out, ctx = run(doc, Prune())
    assert _attributes(out) == [{"POSITION", "NORMAL", "TEXCOORD_0"}]
    assert ctx.facts["prune.attributes"] == 2
    assert len(out.bin) < len(doc.bin)
    assert validator_errors(out, tmp_path / "quad.glb") == 0


def test_a_used_set_keeps_the_unused_sets_below_it():
    doc = _quad([{"occlusionTexture": {"index": 0, "texCoord": 1}}], [{"material": 0}])
    out, _ = run(doc, Prune())
    assert {"TEXCOORD_0", "TEXCOORD_1"} <= _attributes(out)[0]


def test_what_a_variant_or_a_normal_map_reads_stays():
    doc = _quad([{"normalTexture": {"index": 0}},
                 {"extensions": {"KHR_materials_clearcoat": {
                     "clearcoatNormalTexture": {"index": 0}}}},
                 {"pbrMetallicRoughness": {"baseColorTexture": {"index": 0, "extensions": {
                     "KHR_texture_transform": {"texCoord": 1}}}}}],
                [{"material": 0},
                 {"material": 1, "extensions": {"KHR_materials_variants": {"mappings": [
                     {"material": 2, "variants": [0]}]}}}])
    doc.json["extensionsUsed"] = ["KHR_materials_clearcoat", "KHR_materials_variants",
                                  "KHR_texture_transform"]
    doc.json["extensions"] = {"KHR_materials_variants": {"variants": [{"name": "v"}]}}
    out, _ = run(doc, Prune())
    first, second = _attributes(out)
    assert "TANGENT" in first  # its normal map
    assert {"TANGENT", "TEXCOORD_0", "TEXCOORD_1"} <= second  # clearcoat normal, variant


def test_shared_vertex_data_is_kept_where_any_sharer_reads_it():
    # Both primitives draw the same accessors; only the second samples TEXCOORD_1. Dropping
    # it from the first would stop the two sharing their vertex data.
    doc = _quad([{}, {"occlusionTexture": {"index": 0, "texCoord": 1}}],
                [{"material": 0}, {"material": 1}])
    out, _ = run(doc, Prune())
    first, second = _attributes(out)
    assert "TEXCOORD_1" in first and "TEXCOORD_1" in second
    assert "TANGENT" not in first and "TANGENT" not in second  # no sharer reads tangents


def test_the_archive_preset_keeps_every_attribute():
    prunes = [t for t in plan(OptimizeOptions(preset="archive")) if isinstance(t, Prune)]
    assert prunes and not any(t.attributes for t in prunes)
    assert any(t.attributes for t in plan(OptimizeOptions(preset="phone"))
               if isinstance(t, Prune))
