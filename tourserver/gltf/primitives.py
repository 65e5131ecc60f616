"""Primitive helpers: which primitives can be rewritten, their vertex accessors and indices,
and writing a primitive's data back through a `BufferBuilder`. Weld, reorder, merge, flat
normals and simplify all rewrite primitives; they do it through these, so a primitive's
data is read, shared and replaced by one set of rules.
"""

from __future__ import annotations

from collections import Counter

import meshoptimizer
import numpy as np

from tourserver.gltf.buffers import BufferBuilder, prune_accessors, repack
from tourserver.gltf.document import COMPONENT_DTYPES, MODE_TRIANGLES, Document
from tourserver.gltf.refs import OPAQUE_BUFFER_EXTENSIONS, unknown_extensions

ARRAY_BUFFER = 34962
ELEMENT_ARRAY_BUFFER = 34963
FLOAT = 5126


def skip_reason(doc_json: dict, prim: dict) -> str | None:
    """Why a triangle primitive's vertices cannot be rewritten, or None if they can."""
    if prim.get("mode", MODE_TRIANGLES) != MODE_TRIANGLES:
        return "not a triangle list"
    if "KHR_draco_mesh_compression" in prim.get("extensions", {}):
        return "Draco-compressed"
    attrs = prim.get("attributes", {})
    if "POSITION" not in attrs:
        return "no POSITION attribute"
    accessors = doc_json.get("accessors", [])
    used = vertex_accessors(prim)
    if "indices" in prim:
        used = [*used, prim["indices"]]
    if any("sparse" in accessors[a] for a in used):
        return "a sparse accessor (left as it is)"
    count = accessors[attrs["POSITION"]]["count"]
    if any(accessors[a]["count"] != count for a in vertex_accessors(prim)):
        return "attributes of different lengths"
    return None


def document_skip_reason(doc_json: dict) -> str | None:
    """Why no primitive of the document can be rewritten (compressed buffers), or None."""
    if set(doc_json.get("extensionsUsed", [])) & OPAQUE_BUFFER_EXTENSIONS:
        return "its buffers are compressed"
    if len(doc_json.get("buffers", [])) > 1:
        return "it has more than one buffer"
    return None


def vertex_accessors(prim: dict) -> list[int]:
    """The accessors that hold one element per vertex: attributes, then morph targets."""
    out = list(prim.get("attributes", {}).values())
    for target in prim.get("targets", []):
        out.extend(target.values())
    return out


def geometry_key(prim: dict) -> tuple:
    """Primitives with equal keys share all their data (and are rewritten once)."""
    return (prim.get("mode", MODE_TRIANGLES), tuple(prim.get("attributes", {}).items()),
            prim.get("indices"),
            tuple(tuple(t.items()) for t in prim.get("targets", [])))


def shared_vertex_accessors(doc_json: dict) -> set[int]:
    """Vertex accessors used by primitives with different data (or by anything else)."""
    users: Counter = Counter()
    seen: set[tuple] = set()
    for mesh in doc_json.get("meshes", []):
        for prim in mesh.get("primitives", []):
            key = geometry_key(prim)
            if key in seen:
                continue  # identical primitives are rewritten together
            seen.add(key)
            users.update(set(vertex_accessors(prim)))
    for anim in doc_json.get("animations", []):
        for sampler in anim.get("samplers", []):
            users.update((sampler["input"], sampler["output"]))
    return {a for a, n in users.items() if n > 1}


def read_indices(doc: Document, prim: dict, vertex_count: int) -> np.ndarray:
    if "indices" in prim:
        return np.ascontiguousarray(doc.read_accessor(prim["indices"]).reshape(-1),
                                    dtype=np.uint32)
    return np.arange(vertex_count, dtype=np.uint32)


def drop_degenerate(indices: np.ndarray) -> np.ndarray:
    """Remove triangles that repeat a vertex (after welding): they draw nothing."""
    tri = indices[: len(indices) // 3 * 3].reshape(-1, 3)
    keep = (tri[:, 0] != tri[:, 1]) & (tri[:, 1] != tri[:, 2]) & (tri[:, 0] != tri[:, 2])
    return np.ascontiguousarray(tri[keep].reshape(-1))


def as_rows(data: np.ndarray) -> np.ndarray:
    """An accessor's (count, ncomp) array as (count, bytes) uint8 rows."""
    data = np.ascontiguousarray(data)
    return data.view(np.uint8).reshape(len(data), -1)


def remap_rows(rows: np.ndarray, remap: np.ndarray, unique: int) -> np.ndarray:
    """Move row i to remap[i] (rows whose remap is ~0 are dropped)."""
    dest = np.zeros((unique, rows.shape[1]), dtype=np.uint8)
    if unique:
        meshoptimizer.remap_vertex_buffer(dest, rows, len(rows), rows.shape[1], remap)
    return dest


def add_vertex_accessor(doc_json: dict, builder: BufferBuilder, old: dict,
                        rows: np.ndarray, bounds: bool) -> int:
    """A new accessor like `old` (type, normalisation, name, extras) holding `rows`, in its
    own vertex bufferView padded to a 4-byte stride (glTF §3.6.2.4); min/max recomputed."""
    acc = {k: v for k, v in old.items()
           if k not in ("bufferView", "byteOffset", "count", "min", "max", "sparse")}
    itemsize = rows.shape[1]
    stride = itemsize + (-itemsize) % 4
    packed = np.zeros((len(rows), stride), dtype=np.uint8)
    packed[:, :itemsize] = rows
    view = builder.add_view(packed.tobytes(), ARRAY_BUFFER)
    if stride != itemsize:
        builder.views[view]["byteStride"] = stride
    acc["bufferView"] = view
    acc["count"] = int(len(rows))
    if (bounds or "min" in old) and len(rows):
        dtype = np.dtype(COMPONENT_DTYPES[old["componentType"]]).newbyteorder("<")
        values = np.ascontiguousarray(rows).view(dtype).reshape(len(rows), -1)
        cast = float if old["componentType"] == FLOAT else int
        acc["min"] = [cast(v) for v in values.min(axis=0)]
        acc["max"] = [cast(v) for v in values.max(axis=0)]
    accessors = doc_json.setdefault("accessors", [])
    accessors.append(acc)
    return len(accessors) - 1


def add_index_accessor(doc_json: dict, builder: BufferBuilder, indices: np.ndarray,
                       vertex_count: int) -> int:
    # 65535 is the primitive-restart value and not a valid uint16 index in glTF.
    dtype = np.uint16 if vertex_count <= 65535 else np.uint32
    return builder.add_accessor(doc_json, indices.astype(dtype), target=ELEMENT_ARRAY_BUFFER)


def rewrite_primitive(doc: Document, new_json: dict, builder: BufferBuilder, prim: dict,
                      remap: np.ndarray | None, unique: int, indices: np.ndarray) -> dict:
    """Point `prim` at new accessors: its vertex data moved by `remap` (None: unchanged)
    and `indices`. Returns the new references, to reuse for primitives sharing the data."""
    accessors = new_json["accessors"]
    new: dict = {"attributes": dict(prim["attributes"]),
                 "targets": [dict(t) for t in prim.get("targets", [])]}
    if remap is not None:
        for container in (new["attributes"], *new["targets"]):
            for semantic, a in container.items():
                rows = remap_rows(as_rows(doc.read_accessor(a)), remap, unique)
                container[semantic] = add_vertex_accessor(
                    new_json, builder, accessors[a], rows, bounds=semantic == "POSITION")
    new["indices"] = add_index_accessor(new_json, builder, indices, unique)
    apply_references(prim, new)
    return new


def apply_references(prim: dict, new: dict) -> None:
    prim["attributes"] = dict(new["attributes"])
    if new["targets"]:
        prim["targets"] = [dict(t) for t in new["targets"]]
    prim["indices"] = new["indices"]


def finish(doc: Document, new_json: dict, builder: BufferBuilder) -> Document:
    """Drop the replaced accessors (when no unknown extension could still use them) and
    rebuild the binary chunk."""
    if not unknown_extensions(new_json):
        prune_accessors(new_json)
    return repack(doc, new_json, builder.payloads)
