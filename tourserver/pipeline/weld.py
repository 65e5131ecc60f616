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
from collections import defaultdict
from dataclasses import dataclass
from typing import ClassVar

import meshoptimizer
import numpy as np

from tourserver.gltf.buffers import BufferBuilder
from tourserver.gltf.document import MODE_TRIANGLES, Document
from tourserver.gltf.primitives import (
    FLOAT,
    apply_references,
    as_rows,
    document_skip_reason,
    drop_degenerate,
    finish,
    geometry_key,
    read_indices,
    remap_rows,
    rewrite_primitive,
    shared_vertex_accessors,
    skip_reason,
    vertex_accessors,
)
from tourserver.pipeline.base import Context, fact_prefix


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
                    refs = done[key]
                    if refs is not None:
                        apply_references(prim, refs)
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
        prefix = fact_prefix(self.name)
        ctx.add(f"{prefix}.vertices_before", before)
        ctx.add(f"{prefix}.vertices_after", after)
        ctx.add(f"{prefix}.primitives", changed)
        if self.tolerance > 0:
            ctx.most(f"{prefix}.position_error", error)
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
