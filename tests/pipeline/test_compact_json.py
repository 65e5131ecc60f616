"""CompactJson: float32 numbers in their shortest form, glTF defaults dropped, nothing else."""

from __future__ import annotations

import copy
import json

import numpy as np
from scene_compare import validator_errors
from support import corpus_file

from tourserver.gltf.buffers import BufferBuilder, repack
from tourserver.gltf.document import Document, write_glb
from tourserver.ingest.loaders import load_asset
from tourserver.pipeline.base import run
from tourserver.pipeline.compact_json import CompactJson, shortest_float32


def scene() -> Document:
    j: dict = {"asset": {"version": "2.0"}, "scene": 0, "scenes": [{"nodes": [0, 1]}]}
    b = BufferBuilder(j)
    pos = np.array([[0, 0, 0], [1, 0, 0], [0, 1.000000119, 0]], np.float32)
    acc = b.add_accessor(j, pos, target=34962, with_bounds=True)
    j["accessors"][acc]["min"] = [float(v) for v in pos.min(axis=0).astype(np.float64)]
    j["accessors"][acc]["max"] = [float(v) for v in pos.max(axis=0).astype(np.float64)]
    j["accessors"][acc]["byteOffset"] = 0
    j["meshes"] = [{"primitives": [{"attributes": {"POSITION": acc}, "mode": 4,
                                    "material": 0}]}]
    j["nodes"] = [
        {"name": "scaled", "mesh": 0, "translation": [-1.5535465478897095, 0.0, 2.5],
         "scale": [0.00018965348811447348] * 3, "rotation": [0.0, 0.0, 0.0, 1.0],
         "extras": {"lat": 29.557456789012345, "weight": 1.0}},
        {"name": "plain", "mesh": 0, "matrix": [1.0, 0, 0, 0, 0, 1.0, 0, 0, 0, 0, 1.0, 0,
                                                0, 0, 0, 1.0]}]
    j["materials"] = [{"name": "m", "pbrMetallicRoughness": {
        "baseColorFactor": [0.800000011920929, 0.2, 0.1, 1.0], "metallicFactor": 1.0,
        "roughnessFactor": 0.30000001192092896}, "emissiveFactor": [0.0, 0.0, 0.0],
        "alphaMode": "OPAQUE", "alphaCutoff": 0.5, "doubleSided": False,
        "extras": {"note": 0.30000001192092896}}]
    return repack(Document({"asset": {"version": "2.0"}}, b""), j, b.payloads)


def test_shortest_float32_reads_back_as_the_same_float32():
    rng = np.random.default_rng(5)
    values = np.concatenate([rng.normal(0, 1e3, 500), rng.normal(0, 1e-6, 500),
                             [0.0, 1.0, -2.0, 3.4028234663852886e38, 1e-45]])
    for value in values:
        short = shortest_float32(float(value))
        assert np.float32(short) == np.float32(value)
        assert len(repr(short)) <= len(repr(float(np.float32(value))))
    assert shortest_float32(1.0) == 1 and isinstance(shortest_float32(1.0), int)


def test_numbers_shortened_defaults_dropped_extras_untouched(tmp_path):
    doc = scene()
    before = copy.deepcopy(doc.json)
    out, ctx = run(doc, CompactJson())
    assert doc.json == before  # input untouched
    node = out.json["nodes"][0]
    assert node["scale"] == [0.00018965348] * 3
    assert node["translation"] == [-1.5535465, 0, 2.5]
    assert "rotation" not in node  # identity
    assert "matrix" not in out.json["nodes"][1]
    assert node["extras"] == {"lat": 29.557456789012345, "weight": 1.0}  # the creator's
    mat = out.json["materials"][0]
    assert mat["extras"] == {"note": 0.30000001192092896}
    assert mat["pbrMetallicRoughness"] == {"baseColorFactor": [0.8, 0.2, 0.1, 1],
                                           "roughnessFactor": 0.3}
    for key in ("emissiveFactor", "alphaMode", "alphaCutoff", "doubleSided"):
        assert key not in mat
    assert "mode" not in out.json["meshes"][0]["primitives"][0]
    acc = out.json["accessors"][0]
    assert "byteOffset" not in acc and acc["max"] == [1, 1.0000001, 0]
    assert ctx.facts["compact_json.numbers"] > 0 and ctx.facts["compact_json.defaults"] >= 8
    # Same float32 values wherever a renderer reads them; the file is smaller and valid.
    for a, b in ((before["nodes"][0]["scale"], node["scale"]),
                 (before["accessors"][0]["max"], acc["max"])):
        assert np.array_equal(np.float32(a), np.float32(b))
    assert len(json.dumps(out.json)) < len(json.dumps(before))
    assert validator_errors(out, tmp_path / "out.glb") == 0
    assert out.bin == doc.bin


def test_corpus_model_keeps_validating_and_shrinks(tmp_path):
    doc = load_asset(corpus_file("SheenChairLightmapped/MixedLightingExample.gltf"))
    out, _ = run(doc, CompactJson())
    assert len(write_glb(out)) < len(write_glb(doc))
    assert validator_errors(out, tmp_path / "out.glb") == 0
    assert [n.get("name") for n in out.json["nodes"]] == [n.get("name")
                                                         for n in doc.json["nodes"]]
