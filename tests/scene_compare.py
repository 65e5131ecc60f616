"""Comparing documents by what they draw, shared by the transform tests."""

from __future__ import annotations

import copy
import hashlib
import json

import numpy as np
from support import node_validator_available, require

from tourserver.gltf.document import Document, write_glb
from tourserver.gltf.refs import texture_infos
from tourserver.ingest.validator import validate_file


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def resolved_scene(doc: Document) -> list:
    """Every node with what it draws, resolved by value (accessor data, image bytes,
    material JSON with textures inlined, material and mesh names left out): equal for
    documents that render the same."""
    j = doc.json

    def acc(i: int):
        a = j["accessors"][i]
        return a["type"], a["componentType"], a.get("normalized"), _sha(
            doc.read_accessor(i).tobytes())

    def texture(i: int):
        t = j["textures"][i]
        image = j["images"][t["source"]]
        sampler = j["samplers"][t["sampler"]] if "sampler" in t else None
        return _sha(doc.buffer_view_bytes(image["bufferView"])), json.dumps(sampler)

    def material(i: int | None):
        if i is None:
            return None
        m = copy.deepcopy(j["materials"][i])
        m.pop("name", None)
        for info in texture_infos(m):
            info["index"] = texture(info["index"])
        return json.dumps(m, sort_keys=True)

    out = []
    for node in j.get("nodes", []):
        prims = []
        if "mesh" in node:
            for p in j["meshes"][node["mesh"]]["primitives"]:
                variants = p.get("extensions", {}).get("KHR_materials_variants", {})
                prims.append((sorted((k, acc(a)) for k, a in p["attributes"].items()),
                              acc(p["indices"]) if "indices" in p else None,
                              p.get("mode", 4), material(p.get("material")),
                              [sorted((k, acc(a)) for k, a in t.items())
                               for t in p.get("targets", [])],
                              [(m["variants"], material(m["material"]))
                               for m in variants.get("mappings", [])]))
        rest = {k: v for k, v in node.items() if k not in ("mesh", "skin")}
        out.append((json.dumps(rest, sort_keys=True), prims))
    for skin in j.get("skins", []):
        out.append(("skin", skin["joints"], acc(skin["inverseBindMatrices"])))
    for anim in j.get("animations", []):
        out.append(("animation", anim.get("name"), json.dumps(anim["channels"]),
                    [(acc(s["input"]), acc(s["output"]), s.get("interpolation"))
                     for s in anim["samplers"]]))
    return out


def soups(doc: Document, semantics: tuple[str, ...] = ("POSITION",)) -> list[np.ndarray]:
    """Per triangle primitive: its triangles as corner values (attributes named, then every
    morph target), each rotated to start at its smallest corner (winding kept), sorted;
    triangles that draw nothing (two equal corners) left out."""
    out = []
    for mesh in doc.json["meshes"]:
        for p in mesh["primitives"]:
            if p.get("mode", 4) != 4:
                continue
            attrs = p["attributes"]
            n = doc.json["accessors"][attrs["POSITION"]]["count"]
            cols = [doc.read_accessor(attrs[s]).astype(np.float64) for s in semantics
                    if s in attrs]
            cols += [doc.read_accessor(a).astype(np.float64) for t in p.get("targets", [])
                     for a in t.values()]
            values = np.hstack(cols)
            idx = (doc.read_accessor(p["indices"]).reshape(-1) if "indices" in p
                   else np.arange(n)).astype(np.int64)
            unique, rank = np.unique(values, axis=0, return_inverse=True)
            corners = rank.reshape(-1)[idx].reshape(-1, 3)
            # Triangles with two equal corners draw nothing: Weld drops them, so ignore them.
            corners = corners[(corners[:, 0] != corners[:, 1]) & (corners[:, 1] != corners[:, 2])
                              & (corners[:, 0] != corners[:, 2])]
            start = np.argmin(corners, axis=1)
            order = (start[:, None] + np.arange(3)) % 3
            canon = unique[np.take_along_axis(corners, order, axis=1)].reshape(len(corners), -1)
            out.append(canon[np.lexsort(canon.T[::-1])])
    return out


def same_soups(a: Document, b: Document, semantics=("POSITION",)) -> bool:
    sa, sb = soups(a, semantics), soups(b, semantics)
    return len(sa) == len(sb) and all(x.shape == y.shape and np.array_equal(x, y)
                                      for x, y in zip(sa, sb, strict=True))


def validator_errors(doc: Document, path) -> int:
    require(node_validator_available(), "node + npm gltf-validator")
    path.write_bytes(write_glb(doc))
    return validate_file(path).errors


SMALL_CORPUS = ["Fox/Fox.glb", "TextureTransformTest/TextureTransformTest.gltf",
                "ClearCoatTest/ClearCoatTest.gltf",
                "PointCloudHouse/PropertyAttributesPointCloudHouse.gltf"]


def assert_same_scene_no_larger(doc: Document, out: Document, tmp_path) -> None:
    """What a lossless clean-up step must keep: the scene drawn, document-level JSON, no
    growth, and no new validator errors."""
    assert resolved_scene(out) == resolved_scene(doc)
    for key in ("extensionsUsed", "extensions", "extras", "scenes", "asset"):
        assert out.json.get(key) == doc.json.get(key), key
    assert len(write_glb(out)) <= len(write_glb(doc))
    errors_in = validator_errors(doc, tmp_path / "in.glb")
    assert validator_errors(out, tmp_path / "out.glb") <= errors_in
