"""Facts about a glTF document: what a client needs to pick a variant."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tourserver.ingest.gltf_io import MODE_TRIANGLES, Document
from tourserver.ingest.images import image_size


@dataclass(frozen=True)
class SceneStats:
    triangles: int
    vertices: int
    draw_calls: int
    materials: int
    textures: int
    max_texture_px: int
    extensions_required: tuple[str, ...]
    extensions_used: tuple[str, ...]
    bounds_min: tuple[float, float, float]
    bounds_max: tuple[float, float, float]


def _node_meshes(doc_json: dict):
    """Yield (mesh index, world matrix) for every mesh instance in the default scene."""
    nodes = doc_json.get("nodes", [])
    scenes = doc_json.get("scenes", [])
    roots = scenes[doc_json.get("scene", 0)]["nodes"] if scenes else list(range(len(nodes)))
    stack = [(r, np.eye(4)) for r in roots]
    seen = 0
    while stack:
        index, parent = stack.pop()
        seen += 1
        if seen > 1_000_000:  # a cycle or an absurd tree; validation reports it elsewhere
            return
        node = nodes[index]
        local = np.eye(4)
        if "matrix" in node:
            local = np.array(node["matrix"], dtype=float).reshape(4, 4).T
        else:
            t = node.get("translation", [0, 0, 0])
            x, y, z, w = node.get("rotation", [0, 0, 0, 1])
            s = node.get("scale", [1, 1, 1])
            rot = np.array([
                [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])
            local[:3, :3] = rot * np.array(s)
            local[:3, 3] = t
        world = parent @ local
        if "mesh" in node:
            yield node["mesh"], world
        stack.extend((c, world) for c in node.get("children", []))


def scene_stats(doc: Document) -> SceneStats:
    j = doc.json
    triangles = vertices = draws = 0
    lo = np.full(3, np.inf)
    hi = np.full(3, -np.inf)
    for mesh_index, world in _node_meshes(j):
        for prim in j["meshes"][mesh_index].get("primitives", []):
            draws += 1
            pos_acc = j["accessors"][prim["attributes"]["POSITION"]]
            vertices += int(pos_acc["count"])
            if prim.get("mode", MODE_TRIANGLES) == MODE_TRIANGLES:
                count = j["accessors"][prim["indices"]]["count"] if "indices" in prim else (
                    pos_acc["count"])
                triangles += int(count) // 3
            if "min" in pos_acc and "max" in pos_acc:
                corners = np.array([[x, y, z, 1.0] for x in (pos_acc["min"][0], pos_acc["max"][0])
                                    for y in (pos_acc["min"][1], pos_acc["max"][1])
                                    for z in (pos_acc["min"][2], pos_acc["max"][2])])
                moved = (world @ corners.T).T[:, :3]
                lo = np.minimum(lo, moved.min(axis=0))
                hi = np.maximum(hi, moved.max(axis=0))
    max_px = 0
    for i, image in enumerate(j.get("images", [])):
        if "bufferView" in image:
            size = image_size(doc.buffer_view_bytes(image["bufferView"]), f"/images/{i}")
            max_px = max(max_px, *size)
    if not np.isfinite(lo).all():
        lo = hi = np.zeros(3)
    return SceneStats(
        triangles=triangles, vertices=vertices, draw_calls=draws,
        materials=len(j.get("materials", [])), textures=len(j.get("textures", [])),
        max_texture_px=max_px,
        extensions_required=tuple(sorted(j.get("extensionsRequired", []))),
        extensions_used=tuple(sorted(j.get("extensionsUsed", []))),
        bounds_min=tuple(float(v) for v in lo), bounds_max=tuple(float(v) for v in hi))
