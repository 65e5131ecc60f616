"""Weld: merge vertices whose every attribute is identical, and index unindexed triangles.

Why: many exporters (CAD, photogrammetry, 3D Tiles b3dm extractors) write one vertex per
triangle corner, so a smooth surface carries each vertex about six times. Merging them
shrinks the vertex buffers, lets the GPU's post-transform cache work, and is what makes
`reorder`, `simplify` and meshopt compression effective.

How: per triangle primitive, every attribute and morph-target attribute of a vertex is laid
side by side as raw bytes; `meshoptimizer.generate_vertex_remap` finds the unique rows
(first occurrence order, so the output is deterministic), and `remap_vertex_buffer` /
`remap_index_buffer` build the welded buffers. Morph targets share the vertex order, so they
are remapped with the same table (and take part in the comparison: vertices that move
differently under a morph are never merged). With `tolerance=0` (the default) only exact
duplicates merge, so the triangle soup is unchanged bit for bit. With a tolerance > 0,
float components are compared on a grid of that step: merged vertices differ by less than
one step per component, and the largest position change is reported as
`weld.position_error`.

Left alone (with the reason logged): points and lines, Draco-compressed primitives,
primitives with sparse accessors, and documents with meshopt-compressed buffers.
Facts: `weld.vertices_before`, `weld.vertices_after`, `weld.primitives` (how many changed).
"""

from __future__ import annotations

import copy
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import ClassVar

import meshoptimizer
import numpy as np

from tourserver.ingest.gltf_io import COMPONENT_DTYPES, MODE_TRIANGLES, Document
from tourserver.pipeline.base import Context, fact_prefix
from tourserver.pipeline.prune import OPAQUE_BUFFER_EXTENSIONS, unknown_extensions
from tourserver.pipeline.repack import BufferBuilder, prune_accessors, repack

ARRAY_BUFFER = 34962
ELEMENT_ARRAY_BUFFER = 34963
FLOAT = 5126


# --- helpers shared with `reorder` ---------------------------------------------------------

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


def _growing_groups(doc: Document, doc_json: dict) -> list[tuple]:
    """Geometry keys of primitives that share vertex buffers with others and, welded one
    by one, would together keep more vertices than the shared buffer has."""
    shared = shared_vertex_accessors(doc_json)
    groups: defaultdict[int, dict[tuple, int]] = defaultdict(dict)
    for mesh in doc_json.get("meshes", []):
        for prim in mesh.get("primitives", []):
            if not set(vertex_accessors(prim)) & shared or skip_reason(doc_json, prim):
                continue
            position = prim["attributes"]["POSITION"]
            n = doc_json["accessors"][position]["count"]
            key = geometry_key(prim)
            if key not in groups[position]:
                groups[position][key] = len(np.unique(read_indices(doc, prim, n)))
    growing: list[tuple] = []
    for position, used in groups.items():
        if sum(used.values()) > doc_json["accessors"][position]["count"]:
            growing.extend(used)
    return growing


# --- the transform -------------------------------------------------------------------------

@dataclass(frozen=True)
class Weld:
    """Merge identical vertices of triangle primitives; index unindexed ones."""

    tolerance: float = 0.0  # 0: exact duplicates only; > 0: grid step for float components
    name: str = "weld"
    keeps_images: ClassVar[bool] = True  # see base.Transform

    def __call__(self, doc: Document, ctx: Context) -> Document:
        new_json = copy.deepcopy(doc.json)
        reason = document_skip_reason(new_json)
        if reason:
            ctx.logger.info("weld: left unchanged: %s", reason)
            return Document(new_json, doc.bin, doc.source)
        builder = BufferBuilder(new_json)
        done: dict[tuple, dict | None] = {}
        growing = _growing_groups(doc, new_json)
        if growing:
            ctx.logger.info("weld: %d primitives sharing vertex buffers with overlapping "
                            "indices are left as they are (copies would grow the file)",
                            len(growing))
        done.update(dict.fromkeys(growing))
        welded: list[dict] = []  # the primitives we looked at, to count vertices
        old_positions: set[int] = set()
        changed = 0
        error = 0.0
        for m, mesh in enumerate(new_json.get("meshes", [])):
            for p, prim in enumerate(mesh.get("primitives", [])):
                key = geometry_key(prim)
                if key in done:
                    if done[key] is not None:
                        apply_references(prim, done[key])
                    continue
                reason = skip_reason(new_json, prim)
                if reason:
                    if prim.get("mode", MODE_TRIANGLES) == MODE_TRIANGLES:
                        ctx.logger.info("weld: /meshes/%d/primitives/%d skipped: %s", m, p,
                                        reason)
                    done[key] = None
                    continue
                welded.append(prim)
                old_positions.add(prim["attributes"]["POSITION"])
                result = self._weld(doc, new_json, builder, prim)
                done[key] = result[0] if result else None
                if result:
                    changed += 1
                    error = max(error, result[2])
        accessors = new_json.get("accessors", [])
        # Each vertex buffer counts once, however many primitives share it.
        before = sum(accessors[a]["count"] for a in old_positions)
        after = sum(accessors[a]["count"] for a in {p["attributes"]["POSITION"] for p in welded})
        key = fact_prefix(self.name)
        ctx.add(f"{key}.vertices_before", before)
        ctx.add(f"{key}.vertices_after", after)
        ctx.add(f"{key}.primitives", changed)
        if self.tolerance > 0:
            ctx.most(f"{key}.position_error", error)
        if not changed:
            return Document(new_json, doc.bin, doc.source)
        return finish(doc, new_json, builder)

    def _weld(self, doc: Document, new_json: dict, builder: BufferBuilder,
              prim: dict) -> tuple[dict, int, float] | None:
        accessors = new_json["accessors"]
        n = accessors[prim["attributes"]["POSITION"]]["count"]
        indices = read_indices(doc, prim, n)
        if len(indices) < 3:
            return None
        key = np.hstack([self._key_rows(doc, accessors, a) for a in vertex_accessors(prim)])
        key = np.ascontiguousarray(key)
        remap = np.zeros(n, dtype=np.uint32)
        unique = meshoptimizer.generate_vertex_remap(remap, indices, len(indices), key, n,
                                                     key.shape[1])
        new_indices = np.zeros_like(indices)
        meshoptimizer.remap_index_buffer(new_indices, indices, len(indices), remap)
        if prim.get("mode", MODE_TRIANGLES) == MODE_TRIANGLES:
            new_indices = drop_degenerate(new_indices)
        if unique >= n and len(new_indices) == len(indices):
            return None  # every vertex is used and distinct, no triangle collapsed
        error = 0.0
        position = prim["attributes"]["POSITION"]
        if self.tolerance > 0 and accessors[position]["componentType"] == FLOAT:
            positions = doc.read_accessor(position)
            kept = remap_rows(as_rows(positions), remap, unique).view("<f4")
            live = remap != np.uint32(0xFFFFFFFF)
            moved = positions[live].astype(np.float64) - kept[remap[live]]
            error = float(np.abs(moved).max(initial=0.0))
        new = rewrite_primitive(doc, new_json, builder, prim, remap, unique, new_indices)
        return new, unique, error

    def _key_rows(self, doc: Document, accessors: list[dict], index: int) -> np.ndarray:
        data = doc.read_accessor(index)
        if self.tolerance > 0 and accessors[index]["componentType"] == FLOAT:
            data = np.round(data.astype(np.float64) / self.tolerance).astype(np.int64)
        return as_rows(data)
