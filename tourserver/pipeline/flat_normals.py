"""Flat normals: drop NORMAL where it only repeats each triangle's own face normal.

Why: flat-shaded models (buildings, CAD, low-poly scenes) store one vertex per corner of
every face only because each face's normal differs; the positions repeat three to six
times. The glTF spec says that when normals are not specified, client implementations MUST
calculate flat normals. So where every triangle's vertex normals are its face normal
(within `max_angle_deg`), the attribute can go: the renderer draws the same shading, and
the weld that follows merges the repeated positions (TilesBuilding: 107k -> 46k vertices,
about half its bytes).

A primitive whose triangles are all flat loses NORMAL. One that is mostly flat (at least
`min_flat_share` of its triangles) is split in two: the flat triangles without NORMAL, the
others with it (one more draw call). Degenerate triangles draw nothing and count as flat.

Left alone: primitives with TANGENT, morph targets, a material with a normal texture
(computed tangents would then rest on computed normals), non-triangle modes, and what
`weld.skip_reason` names (Draco, sparse accessors, compressed buffers).
Facts: `flat_normals.primitives` (primitives that lost NORMAL, split ones included),
`flat_normals.split`, `flat_normals.triangles` (triangles now drawn with flat normals).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from tourserver.gltf.buffers import BufferBuilder
from tourserver.gltf.document import MODE_TRIANGLES, Document
from tourserver.gltf.primitives import (
    document_skip_reason,
    finish,
    read_indices,
    rewrite_primitive,
    skip_reason,
)
from tourserver.gltf.refs import samples_normal_map
from tourserver.pipeline.base import Context


@dataclass(frozen=True)
class _Change:
    """What happens to one primitive's data: with `smooth` None every triangle is flat and
    NORMAL simply goes; otherwise both parts' {"attributes", "indices"} references."""

    triangles: int  # triangles now drawn with flat normals
    flat: dict | None
    smooth: dict | None


@dataclass(frozen=True)
class FlatNormals:
    max_angle_deg: float = 1.0  # int8 normals alone are off by up to ~0.5 degrees
    min_flat_share: float = 0.9  # split a primitive only when this share of it is flat
    name: str = "flat-normals"
    keeps_images: ClassVar[bool] = True  # see base.Transform

    def __call__(self, doc: Document, ctx: Context) -> Document:
        new_json = copy.deepcopy(doc.json)
        reason = document_skip_reason(new_json)
        if reason:
            ctx.logger.info("flat-normals: left unchanged: %s", reason)
            return Document(new_json, doc.bin, doc.source)
        builder = BufferBuilder(new_json)
        dropped = split = triangles = 0
        # Primitives that share their data (instances of one mesh part) change together.
        done: dict[tuple, _Change | None] = {}
        for mesh in new_json.get("meshes", []):
            added: list[dict] = []
            for prim in mesh.get("primitives", []):
                if self._blocked(new_json, prim):
                    continue
                key = (prim["attributes"]["NORMAL"], prim["attributes"]["POSITION"],
                       prim.get("indices"))
                if key not in done:
                    change = done[key] = self._rewrite(doc, new_json, builder, prim)
                    if change is not None:
                        dropped += 1
                        split += change.smooth is not None
                        triangles += change.triangles
                change = done[key]
                if change is None:
                    continue
                if change.smooth is None:
                    prim["attributes"].pop("NORMAL")
                    continue
                assert change.flat is not None
                prim["attributes"] = dict(change.smooth["attributes"])
                prim["indices"] = change.smooth["indices"]
                added.append({**{k: v for k, v in prim.items()
                                 if k not in ("attributes", "indices")},
                              "attributes": dict(change.flat["attributes"]),
                              "indices": change.flat["indices"]})
            mesh.get("primitives", []).extend(added)
        ctx.add("flat_normals.primitives", dropped)
        ctx.add("flat_normals.split", split)
        ctx.add("flat_normals.triangles", triangles)
        if not dropped:
            return Document(new_json, doc.bin, doc.source)
        if split:
            ctx.logger.info("flat-normals: %d primitive(s) split into flat and smooth parts",
                            split)
        return finish(doc, new_json, builder)

    def _rewrite(self, doc: Document, new_json: dict, builder: BufferBuilder,
                 prim: dict) -> _Change | None:
        """None when `prim` keeps its normals; else what changes."""
        flat = self._flat_triangles(doc, prim)
        if flat is None or not flat.any():
            return None
        if flat.all():
            return _Change(int(flat.sum()), None, None)
        if flat.mean() < self.min_flat_share:
            return None
        n = new_json["accessors"][prim["attributes"]["POSITION"]]["count"]
        triangles = read_indices(doc, prim, n)[: len(flat) * 3].reshape(-1, 3)
        flat_part = {"attributes": {k: v for k, v in prim["attributes"].items()
                                    if k != "NORMAL"}}
        smooth_part = {"attributes": dict(prim["attributes"])}
        _compact(doc, new_json, builder, flat_part, triangles[flat])
        _compact(doc, new_json, builder, smooth_part, triangles[~flat])
        return _Change(int(flat.sum()), flat_part, smooth_part)

    def _blocked(self, doc_json: dict, prim: dict) -> bool:
        attrs = prim.get("attributes", {})
        if "NORMAL" not in attrs or "TANGENT" in attrs or prim.get("targets"):
            return True
        if prim.get("mode", MODE_TRIANGLES) != MODE_TRIANGLES or skip_reason(doc_json, prim):
            return True
        material = prim.get("material")
        if material is None:
            return False
        return samples_normal_map(doc_json.get("materials", [])[material])

    def _flat_triangles(self, doc: Document, prim: dict) -> np.ndarray | None:
        """Per triangle: whether its three vertex normals are its face normal."""
        attrs = prim["attributes"]
        positions = doc.read_accessor(attrs["POSITION"]).astype(np.float64)
        normals = doc.read_accessor(attrs["NORMAL"]).astype(np.float64)
        if len(positions) != len(normals) or len(positions) == 0:
            return None
        indices = read_indices(doc, prim, len(positions))
        if len(indices) < 3 or int(indices.max()) >= len(positions):
            return None
        tri = indices[: len(indices) // 3 * 3].reshape(-1, 3)
        corners = positions[tri]
        face = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
        area = np.linalg.norm(face, axis=1)
        degenerate = area <= 1e-12 * max(1.0, float(np.abs(positions).max()))
        face = face / np.where(degenerate, 1.0, area)[:, None]
        vertex = normals[tri]
        length = np.linalg.norm(vertex, axis=2)
        vertex = vertex / np.where(length > 0, length, 1.0)[..., None]
        cosine = np.einsum("tij,tj->ti", vertex, face).min(axis=1)
        return degenerate | (cosine >= np.cos(np.radians(self.max_angle_deg)))


def _compact(doc: Document, new_json: dict, builder: BufferBuilder, prim: dict,
             triangles: np.ndarray) -> None:
    """Point `prim` at new vertex accessors holding only the vertices `triangles` use."""
    count = new_json["accessors"][prim["attributes"]["POSITION"]]["count"]
    used = np.unique(triangles)
    remap = np.full(count, 0xFFFFFFFF, dtype=np.uint32)
    remap[used] = np.arange(len(used), dtype=np.uint32)
    indices = np.ascontiguousarray(remap[triangles.reshape(-1)])
    rewrite_primitive(doc, new_json, builder, prim, remap, len(used), indices)
