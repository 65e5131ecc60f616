"""Reorder triangles and vertices for the GPU (and for compression).

Why: a phone's GPU re-shades a vertex whenever it has fallen out of the small post-transform
cache, and fetches vertex memory in cache lines. meshoptimizer's `optimize_vertex_cache`
orders triangles so that neighbours share recently shaded vertices, and
`optimize_vertex_fetch` then orders vertices by first use. The same locality is what makes
index and vertex data compress well with gzip/Brotli and EXT_meshopt_compression.

With `strip=True` (the default) triangles are ordered with `optimize_vertex_cache_strip`
instead: more vertex shading (ACMR +1 % on TilesBuilding, +11 % on 2CylinderEngine), but
consecutive triangles share edges far more often, which EXT_meshopt_compression's triangle
codec and gzip reward (2CylinderEngine 13 %, TilesBuilding 3 % smaller gzipped). Phones
fetch scenes over weak networks, so the phone and headset presets take it; gltfpack makes
the same choice for `-cc`. `strip=False` keeps the cache-optimal order.

Optionally (`overdraw=True`) triangles are further ordered front-to-back-ish with
`optimize_overdraw`, trading a little vertex-cache efficiency for less overdraw.

What changes: the order of triangles in the index buffer and of vertices in every vertex
attribute (morph targets too, with the same table); never the set of triangles, their
winding, or any value. Vertices no triangle uses are dropped by the fetch step.
Primitives whose vertex buffers are shared with a primitive that uses other indices keep
their vertex order (reordering it for one would scramble the other, and copying it per
primitive would grow the file); their triangles are still reordered. Unindexed primitives
are left to `weld`, which indexes them.

Facts: `reorder.primitives`, and the average cache miss ratio (vertices shaded per triangle,
16-entry FIFO, as meshoptimizer's `analyzeVertexCache` measures it) `reorder.acmr_before`
and `reorder.acmr_after`.
"""

from __future__ import annotations

import copy
import ctypes
from dataclasses import dataclass
from typing import ClassVar

import meshoptimizer
import numpy as np

from tourserver.gltf.buffers import BufferBuilder
from tourserver.gltf.document import MODE_TRIANGLES, Document
from tourserver.gltf.primitives import (
    apply_references,
    document_skip_reason,
    finish,
    geometry_key,
    read_indices,
    rewrite_primitive,
    shared_vertex_accessors,
    skip_reason,
    vertex_accessors,
)
from tourserver.pipeline.base import Context, fact_prefix


class _CacheStatistics(ctypes.Structure):
    _fields_ = [("vertices_transformed", ctypes.c_uint), ("warps_executed", ctypes.c_uint),
                ("acmr", ctypes.c_float), ("atvr", ctypes.c_float)]


def _load_analyzer():
    """meshopt_analyzeVertexCache from the library the bindings ship (they do not wrap it);
    a private handle, so the bindings' own function prototypes are untouched."""
    try:
        lib = ctypes.CDLL(meshoptimizer.optimizer.lib._name)
        func = lib.meshopt_analyzeVertexCache
    except (AttributeError, OSError):
        return None
    func.restype = _CacheStatistics
    func.argtypes = [ctypes.POINTER(ctypes.c_uint), ctypes.c_size_t, ctypes.c_size_t,
                     ctypes.c_uint, ctypes.c_uint, ctypes.c_uint]
    return func


_ANALYZE = _load_analyzer()
CACHE_SIZE = 16


def vertices_transformed(indices: np.ndarray, vertex_count: int) -> int | None:
    """How many vertex shader runs a 16-entry FIFO cache needs for this index buffer."""
    if _ANALYZE is None or not len(indices):
        return None
    indices = np.ascontiguousarray(indices, dtype=np.uint32)
    stats = _ANALYZE(indices.ctypes.data_as(ctypes.POINTER(ctypes.c_uint)), len(indices),
                     vertex_count, CACHE_SIZE, 0, 0)
    return int(stats.vertices_transformed)


@dataclass(frozen=True)
class Reorder:
    """meshoptimizer vertex-cache or strip (and optional overdraw) then vertex-fetch order."""

    vertex_cache: bool = True
    strip: bool = True  # strip-friendly order: smaller compressed, slightly more shading
    overdraw: bool = False
    vertex_fetch: bool = True
    overdraw_threshold: float = 1.05  # allowed ACMR increase for less overdraw
    name: str = "reorder"
    keeps_images: ClassVar[bool] = True  # see base.Transform

    def __call__(self, doc: Document, ctx: Context) -> Document:
        new_json = copy.deepcopy(doc.json)
        reason = document_skip_reason(new_json)
        if reason:
            ctx.logger.info("reorder: left unchanged: %s", reason)
            return Document(new_json, doc.bin, doc.source)
        shared = shared_vertex_accessors(new_json)
        builder = BufferBuilder(new_json)
        done: dict[tuple, dict | None] = {}
        changed = triangles = shaded_before = shaded_after = 0
        measured = True
        for m, mesh in enumerate(new_json.get("meshes", [])):
            for p, prim in enumerate(mesh.get("primitives", [])):
                key = geometry_key(prim)
                if key in done:
                    refs = done[key]
                    if refs is not None:
                        apply_references(prim, refs)
                    continue
                done[key] = None
                if prim.get("mode", MODE_TRIANGLES) != MODE_TRIANGLES:
                    continue
                reason = skip_reason(new_json, prim) or (
                    None if "indices" in prim else "not indexed (weld indexes it)")
                if reason:
                    ctx.logger.info("reorder: /meshes/%d/primitives/%d skipped: %s", m, p,
                                    reason)
                    continue
                fetch = self.vertex_fetch and not (set(vertex_accessors(prim)) & shared)
                result = self._reorder(doc, new_json, builder, prim, fetch)
                if result is None:
                    continue
                done[key], tris, before, after = result
                changed += 1
                triangles += tris
                if before is None or after is None:
                    measured = False
                else:
                    shaded_before += before
                    shaded_after += after
        prefix = fact_prefix(self.name)
        ctx.add(f"{prefix}.primitives", changed)
        if changed and measured and triangles:
            ctx.facts[f"{prefix}.acmr_before"] = shaded_before / triangles
            ctx.facts[f"{prefix}.acmr_after"] = shaded_after / triangles
        if not changed:
            return Document(new_json, doc.bin, doc.source)
        return finish(doc, new_json, builder)

    def _reorder(self, doc: Document, new_json: dict, builder: BufferBuilder, prim: dict,
                 fetch: bool) -> tuple[dict, int, int | None, int | None] | None:
        n = new_json["accessors"][prim["attributes"]["POSITION"]]["count"]
        indices = read_indices(doc, prim, n)
        if len(indices) < 3 or len(indices) % 3:
            return None
        before = vertices_transformed(indices, n)
        ordered = indices
        if self.vertex_cache:
            ordered = np.zeros_like(indices)
            optimize = (meshoptimizer.optimize_vertex_cache_strip if self.strip
                        else meshoptimizer.optimize_vertex_cache)
            optimize(ordered, indices, len(indices), n)
        if self.overdraw:
            positions = np.ascontiguousarray(
                doc.read_accessor(prim["attributes"]["POSITION"]), dtype=np.float32)
            source, ordered = ordered, np.zeros_like(indices)
            meshoptimizer.optimize_overdraw(ordered, source, positions, len(source), n,
                                            positions.shape[1] * 4, self.overdraw_threshold)
        remap = None
        unique = n
        if fetch:
            remap = np.zeros(n, dtype=np.uint32)
            unique = meshoptimizer.optimize_vertex_fetch_remap(remap, ordered, len(ordered), n)
            remapped = np.zeros_like(ordered)
            meshoptimizer.remap_index_buffer(remapped, ordered, len(ordered), remap)
            ordered = remapped
            if unique == n and np.array_equal(remap, np.arange(n, dtype=np.uint32)):
                remap = None  # already in first-use order
        if remap is None and np.array_equal(ordered, indices):
            return None  # already optimal: keep the bytes as they are
        after = vertices_transformed(ordered, unique)
        new = rewrite_primitive(doc, new_json, builder, prim, remap, unique, ordered)
        return new, len(indices) // 3, before, after

