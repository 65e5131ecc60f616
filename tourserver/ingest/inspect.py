"""Facts about a glTF document: what a client needs to pick a variant."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tourserver.gltf.document import GLB_MAGIC, MODE_TRIANGLES, Document, parse_glb
from tourserver.gltf.refs import texture_slots
from tourserver.gltf.scene import instance_count, scene_roots, world_matrices
from tourserver.ingest.images import image_size
from tourserver.ingest.loaders import load_asset


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


def _node_meshes(doc_json: dict) -> Iterator[tuple[int, np.ndarray, int]]:
    """(mesh index, world matrix, instance count) for every mesh node in the default
    scene. Bounds ignore per-instance transforms (their data may be compressed)."""
    nodes = doc_json.get("nodes", [])
    for index, world in world_matrices(doc_json, scene_roots(doc_json)).items():
        node = nodes[index]
        if "mesh" in node:
            yield node["mesh"], world, instance_count(doc_json, node)


def scene_stats(doc: Document) -> SceneStats:
    j = doc.json
    triangles = vertices = draws = 0
    lo = np.full(3, np.inf)
    hi = np.full(3, -np.inf)
    for mesh_index, world, instances in _node_meshes(j):
        for prim in j["meshes"][mesh_index].get("primitives", []):
            draws += 1
            pos_acc = j["accessors"][prim["attributes"]["POSITION"]]
            vertices += int(pos_acc["count"])
            if prim.get("mode", MODE_TRIANGLES) == MODE_TRIANGLES:
                count = j["accessors"][prim["indices"]]["count"] if "indices" in prim else (
                    pos_acc["count"])
                triangles += int(count) // 3 * instances
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
        bounds_min=(float(lo[0]), float(lo[1]), float(lo[2])),
        bounds_max=(float(hi[0]), float(hi[1]), float(hi[2])))


def _accessor_bytes(doc_json: dict, index: int) -> int:
    acc = doc_json["accessors"][index]
    item = {5120: 1, 5121: 1, 5122: 2, 5123: 2, 5125: 4, 5126: 4}[acc["componentType"]]
    sizes = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT2": 4, "MAT3": 9, "MAT4": 16}
    return int(acc["count"]) * sizes[acc["type"]] * item


def declared_extensions(path: Path) -> tuple[list[str], list[str]]:
    """(extensionsUsed, extensionsRequired) as the file itself declares them. The loader
    decodes EXT_meshopt_compression and drops it from the document, but a client still
    needs it to open the file, so inspect reports the file's own lists."""
    data = path.read_bytes()
    if data[:4] == GLB_MAGIC.to_bytes(4, "little"):
        doc_json = parse_glb(data, str(path), allow_uris=True).json
    elif path.suffix.lower() == ".gltf":
        doc_json = json.loads(data.decode("utf-8"))
    else:  # .obj, .ply, .stl: no glTF extensions
        return [], []
    return (sorted(doc_json.get("extensionsUsed", [])),
            sorted(doc_json.get("extensionsRequired", [])))


def inspect_file(path: Path) -> dict:
    """inspect_document for a file on disk, with the extensions the file declares."""
    doc = load_asset(path)  # validates first: declared_extensions then reads a sound file
    return inspect_document(doc, declared_extensions(path))


def inspect_document(doc: Document,
                     declared: tuple[list[str], list[str]] | None = None) -> dict:
    """Tables of scenes, meshes, materials, textures, animations and extensions, like
    gltf-transform's inspect: what a creator needs to see where the bytes and costs are.
    `declared`: the source file's (extensionsUsed, extensionsRequired), merged in."""
    j = doc.json
    used, required = declared or ([], [])
    stats = scene_stats(doc)
    meshes = []
    for m, mesh in enumerate(j.get("meshes", [])):
        prims = mesh.get("primitives", [])
        vertices = triangles = size = 0
        modes, attributes = set(), set()
        for prim in prims:
            attrs = prim.get("attributes", {})
            attributes.update(attrs)
            modes.add(prim.get("mode", MODE_TRIANGLES))
            pos = attrs.get("POSITION")
            vertices += int(j["accessors"][pos]["count"]) if pos is not None else 0
            size += sum(_accessor_bytes(j, a) for a in attrs.values())
            if "indices" in prim:
                size += _accessor_bytes(j, prim["indices"])
                if prim.get("mode", MODE_TRIANGLES) == MODE_TRIANGLES:
                    triangles += int(j["accessors"][prim["indices"]]["count"]) // 3
            elif prim.get("mode", MODE_TRIANGLES) == MODE_TRIANGLES and pos is not None:
                triangles += int(j["accessors"][pos]["count"]) // 3
        instances = sum(1 for n in j.get("nodes", []) if n.get("mesh") == m)
        meshes.append({"index": m, "name": mesh.get("name", ""), "primitives": len(prims),
                       "instances": instances, "vertices": vertices, "triangles": triangles,
                       "modes": sorted(modes), "attributes": sorted(attributes),
                       "morph_targets": max((len(p.get("targets", [])) for p in prims),
                                            default=0),
                       "data_bytes": size})
    slots: dict[int, list[str]] = {}
    materials = []
    for i, mat in enumerate(j.get("materials", [])):
        mat_slots = list(texture_slots(mat))
        for path, info in mat_slots:
            slots.setdefault(info["index"], []).append(f"{mat.get('name', i)}:{path}")
        materials.append({"index": i, "name": mat.get("name", ""),
                          "alpha_mode": mat.get("alphaMode", "OPAQUE"),
                          "double_sided": bool(mat.get("doubleSided", False)),
                          "extensions": sorted(mat.get("extensions", {})),
                          "textures": len(mat_slots)})
    textures = []
    for t, tex in enumerate(j.get("textures", [])):
        sources = [tex.get("source")] + [e.get("source") for e in
                                          tex.get("extensions", {}).values()
                                          if isinstance(e, dict)]
        for src in [s for s in sources if s is not None]:
            image = j["images"][src]
            data = doc.buffer_view_bytes(image["bufferView"]) if "bufferView" in image else b""
            w, h = image_size(data, f"/images/{src}") if data else (0, 0)
            textures.append({"texture": t, "image": src, "name": image.get("name", ""),
                             "mime": image.get("mimeType", ""), "width": w, "height": h,
                             "bytes": len(data), "slots": slots.get(t, [])})
    animations = []
    for a, anim in enumerate(j.get("animations", [])):
        duration = 0.0
        for sampler in anim.get("samplers", []):
            acc = j["accessors"][sampler["input"]]
            if "max" in acc:
                duration = max(duration, float(acc["max"][0]))
        animations.append({"index": a, "name": anim.get("name", ""),
                           "channels": len(anim.get("channels", [])),
                           "samplers": len(anim.get("samplers", [])),
                           "duration_s": round(duration, 3)})
    scenes = [{"index": s, "name": sc.get("name", ""), "root_nodes": len(sc.get("nodes", []))}
              for s, sc in enumerate(j.get("scenes", []))]
    return {
        "summary": {"triangles": stats.triangles, "vertices": stats.vertices,
                    "draw_calls": stats.draw_calls, "nodes": len(j.get("nodes", [])),
                    "max_texture_px": stats.max_texture_px,
                    "bounds": {"min": list(stats.bounds_min), "max": list(stats.bounds_max)}},
        "scenes": scenes, "meshes": meshes, "materials": materials, "textures": textures,
        "animations": animations, "skins": len(j.get("skins", [])),
        "extensions_used": sorted({*j.get("extensionsUsed", []), *used}),
        "extensions_required": sorted({*j.get("extensionsRequired", []), *required}),
    }
