"""MergePrimitives: join the primitives of one mesh that could be drawn as one.

Why: exporters often split a mesh into several primitives with the same material (per
source object, per smoothing group, per 65k-vertex chunk). Each primitive costs a draw call
on the phone, and the vertices on the seams between them are stored once per primitive.
gltfpack merges them (TilesBuilding: 2 primitives become 1, 119.5k vertices become 107k);
so do we, but only inside ONE mesh: meshes and nodes, with their names and hierarchy, are
the creator's data and are never merged.

How: within a mesh, triangle primitives are grouped when they share material, mode, the
attribute set (same names, accessor types, componentTypes and normalized flags), the same
morph targets layout, and carry no extensions or extras of their own (KHR_materials_variants
mappings, EXT_structural_metadata property attributes or Draco stay per primitive). Each
group becomes one primitive at the place of its first member: vertex data concatenated, the
indices offset, then the vertices shared by the seams welded with
`meshoptimizer.generate_vertex_remap` over every attribute and morph target byte (exact
duplicates only, so the triangles are unchanged bit for bit). The merged primitive keeps the
order of the triangles.

Left alone (logged): points and lines, primitives with sparse accessors or attributes of
different lengths, documents with compressed or several buffers, and documents whose
KHR_animation_pointer animations address primitives.
Facts: `merge.primitives_before`, `merge.primitives_after` (over all meshes),
`merge.vertices_before`, `merge.vertices_after` (of the merged groups).
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import ClassVar

import meshoptimizer
import numpy as np

from tourserver.gltf.buffers import BufferBuilder
from tourserver.gltf.document import MODE_TRIANGLES, Document
from tourserver.gltf.primitives import (
    FLOAT,
    add_index_accessor,
    add_vertex_accessor,
    as_rows,
    document_skip_reason,
    finish,
    read_indices,
    remap_rows,
    skip_reason,
)
from tourserver.pipeline.base import Context


@dataclass(frozen=True)
class MergePrimitives:
    """Concatenate compatible primitives of each mesh and weld their shared vertices."""

    weld: bool = True  # merge the vertices the joined primitives have in common
    # Compare float NORMAL/TANGENT as the signed normalized integers `quantize` will store
    # (gltfpack's reindexMesh does the same): vertices that differ below that precision
    # end up identical anyway. None: compare the exact bytes.
    normal_bits: int | None = 8
    name: str = "merge"
    keeps_images: ClassVar[bool] = True  # see base.Transform

    def __post_init__(self) -> None:
        if self.normal_bits is not None and not 2 <= self.normal_bits <= 16:
            raise ValueError(f"normal_bits must be in [2, 16] or None, got {self.normal_bits}")

    def __call__(self, doc: Document, ctx: Context) -> Document:
        new_json = copy.deepcopy(doc.json)
        meshes = new_json.get("meshes", [])
        before = sum(len(m.get("primitives", [])) for m in meshes)
        reason = document_skip_reason(new_json) or _pointer_reason(new_json)
        if reason:
            ctx.logger.info("merge: left unchanged: %s", reason)
            self._facts(ctx, before, before, 0, 0)
            return Document(new_json, doc.bin, doc.source)
        builder = BufferBuilder(new_json)
        vertices_before = vertices_after = 0
        changed = False
        for m, mesh in enumerate(meshes):
            groups: dict[str, list[int]] = {}
            for p, prim in enumerate(mesh.get("primitives", [])):
                key = _merge_key(new_json, prim)
                if key is None:
                    continue
                groups.setdefault(key, []).append(p)
            merged: dict[int, dict] = {}
            dropped: set[int] = set()
            for members in groups.values():
                if len(members) < 2:
                    continue
                prims = [mesh["primitives"][p] for p in members]
                result = self._merge(doc, new_json, builder, prims)
                merged[members[0]] = result[0]
                dropped.update(members[1:])
                vertices_before += result[1]
                vertices_after += result[2]
                ctx.logger.info("merge: /meshes/%d primitives %s joined (%d -> %d vertices)",
                                m, members, result[1], result[2])
            if merged:
                changed = True
                mesh["primitives"] = [merged.get(p, prim)
                                      for p, prim in enumerate(mesh["primitives"])
                                      if p not in dropped]
        after = sum(len(m.get("primitives", [])) for m in meshes)
        self._facts(ctx, before, after, vertices_before, vertices_after)
        if not changed:
            return Document(new_json, doc.bin, doc.source)
        return finish(doc, new_json, builder)

    @staticmethod
    def _facts(ctx: Context, before: int, after: int, vb: int, va: int) -> None:
        for fact, value in (("primitives_before", before), ("primitives_after", after),
                            ("vertices_before", vb), ("vertices_after", va)):
            ctx.add(f"merge.{fact}", value)

    def _merge(self, doc: Document, new_json: dict, builder: BufferBuilder,
               prims: list[dict]) -> tuple[dict, int, int]:
        accessors = new_json["accessors"]
        first = prims[0]
        semantics = sorted(first["attributes"])
        target_semantics = [sorted(t) for t in first.get("targets", [])]
        rows: dict[tuple, list[np.ndarray]] = {}
        indices: list[np.ndarray] = []
        base = 0
        for prim in prims:
            n = accessors[prim["attributes"]["POSITION"]]["count"]
            indices.append(read_indices(doc, prim, n).astype(np.uint64) + base)
            base += n
            for s in semantics:
                rows.setdefault(("a", s), []).append(
                    as_rows(doc.read_accessor(prim["attributes"][s])))
            for t, names in enumerate(target_semantics):
                for s in names:
                    rows.setdefault(("t", t, s), []).append(
                        as_rows(doc.read_accessor(prim["targets"][t][s])))
        if base > 0xFFFFFFFE:
            raise ValueError("merged primitive would exceed 32-bit indices")
        index = np.ascontiguousarray(np.concatenate(indices), dtype=np.uint32)
        stacked = {k: np.concatenate(v) for k, v in rows.items()}
        unique = base
        remap = None
        if self.weld and len(index):
            # Every byte of every attribute and morph target (normals and tangents at the
            # precision they will be stored with).
            key = np.ascontiguousarray(np.hstack(
                [self._key_rows(k, v, accessors, first) for k, v in stacked.items()]))
            remap = np.zeros(base, dtype=np.uint32)
            unique = meshoptimizer.generate_vertex_remap(remap, index, len(index), key, base,
                                                         key.shape[1])
            new_index = np.zeros_like(index)
            meshoptimizer.remap_index_buffer(new_index, index, len(index), remap)
            index = new_index
        out = {k: v for k, v in first.items() if k not in ("attributes", "targets", "indices")}
        out["attributes"] = {}
        if target_semantics:
            out["targets"] = [{} for _ in target_semantics]
        for k, data in stacked.items():
            if remap is not None:
                data = remap_rows(data, remap, unique)
            old = (accessors[first["attributes"][k[1]]] if k[0] == "a"
                   else accessors[first["targets"][k[1]][k[2]]])
            semantic = k[-1]
            new = add_vertex_accessor(new_json, builder, old, data,
                                      bounds=semantic == "POSITION")
            if k[0] == "a":
                out["attributes"][semantic] = new
            else:
                out["targets"][k[1]][semantic] = new
        out["indices"] = add_index_accessor(new_json, builder, index, unique)
        return out, base, unique


    def _key_rows(self, k: tuple, rows: np.ndarray, accessors: list[dict],
                  first: dict) -> np.ndarray:
        if self.normal_bits is None or k[0] != "a" or k[1] not in ("NORMAL", "TANGENT"):
            return rows
        if accessors[first["attributes"][k[1]]]["componentType"] != FLOAT:
            return rows
        top = 127 if self.normal_bits <= 8 else 32767  # quantize's int8 / int16 storage
        values = rows.view("<f4").astype(np.float64)
        # The same rounding as quantize (np.round, clipped), so the stored bytes agree.
        return as_rows(np.clip(np.round(values * top), -top, top).astype(np.int32))


def _merge_key(doc_json: dict, prim: dict) -> str | None:
    """Primitives of one mesh with equal keys can be drawn as one; None: never merged."""
    if prim.get("mode", MODE_TRIANGLES) != MODE_TRIANGLES or skip_reason(doc_json, prim):
        return None
    if prim.get("extensions") or prim.get("extras") is not None:
        return None
    accessors = doc_json.get("accessors", [])

    def layout(attrs: dict) -> list:
        return [(s, accessors[a]["type"], accessors[a]["componentType"],
                 bool(accessors[a].get("normalized", False))) for s, a in sorted(attrs.items())]

    if "indices" in prim and accessors[prim["indices"]].get("sparse"):
        return None
    return json.dumps([prim.get("material"), layout(prim["attributes"]),
                       [layout(t) for t in prim.get("targets", [])]])


def _pointer_reason(doc_json: dict) -> str | None:
    """KHR_animation_pointer may address /meshes/i/primitives/j: merging would renumber."""
    if "KHR_animation_pointer" not in doc_json.get("extensionsUsed", []):
        return None
    for anim in doc_json.get("animations", []):
        for channel in anim.get("channels", []):
            pointer = (channel.get("target", {}).get("extensions", {})
                       .get("KHR_animation_pointer", {}).get("pointer", ""))
            if "/primitives/" in pointer:
                return "KHR_animation_pointer animates primitives"
    return None


DEFAULTS = MergePrimitives()

__all__ = ["MergePrimitives", "DEFAULTS"]
