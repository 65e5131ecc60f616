"""Mesh simplification with meshoptimizer, for level-of-detail variants.

Each indexed triangle primitive is simplified towards `ratio` of its triangles; borders are
locked so separate parts of a model do not open gaps. The largest absolute error (metres in
the primitive's own units) is reported as the fact `simplify.error`, which the build turns
into the 3D Tiles geometricError.
"""

from __future__ import annotations

import copy
from collections import Counter
from dataclasses import dataclass

import meshoptimizer
import numpy as np

from tourserver.ingest.gltf_io import MODE_TRIANGLES, Document
from tourserver.pipeline.base import Context
from tourserver.pipeline.repack import BufferBuilder, repack

ARRAY_BUFFER = 34962
ELEMENT_ARRAY_BUFFER = 34963


@dataclass(frozen=True)
class Simplify:
    ratio: float = 0.5
    target_error: float = 0.05  # relative to the primitive's extent; a cap, not a goal
    lock_border: bool = True
    # Models made of many open parts (window quads, facade panels) have borders everywhere,
    # and locking them stops simplification cold: then unlock, and say so in the facts.
    unlock_if_stuck: bool = True
    name: str = "simplify"

    def __call__(self, doc: Document, ctx: Context) -> Document:
        new_json = copy.deepcopy(doc.json)
        builder = BufferBuilder(new_json)
        usage = _accessor_usage(new_json)
        max_error = 0.0
        unlocked_count = 0
        for mesh in new_json.get("meshes", []):
            for prim in mesh.get("primitives", []):
                if prim.get("mode", MODE_TRIANGLES) != MODE_TRIANGLES or "indices" not in prim:
                    continue
                if "POSITION" not in prim.get("attributes", {}) or prim.get("extensions"):
                    continue  # compressed primitives are left alone
                err, unlocked = self._simplify_primitive(doc, new_json, prim, builder, usage)
                max_error = max(max_error, err)
                unlocked_count += unlocked
        ctx.facts["simplify.error"] = max(ctx.facts.get("simplify.error", 0.0), max_error)
        if unlocked_count:
            ctx.facts["simplify.unlocked_primitives"] = unlocked_count
            ctx.logger.info("simplify: %d primitive(s) had borders unlocked to reach the "
                            "target", unlocked_count)
        return repack(doc, new_json, builder.payloads)

    def _simplify_primitive(self, doc: Document, new_json: dict, prim: dict,
                            builder: BufferBuilder, usage: Counter) -> tuple[float, bool]:
        positions = doc.read_accessor(prim["attributes"]["POSITION"]).astype(np.float32)
        indices = doc.read_accessor(prim["indices"]).reshape(-1).astype(np.uint32)
        if len(indices) < 3 * 16 or len(positions) == 0:
            return 0.0, False
        target = max(3, int(len(indices) * self.ratio) // 3 * 3)
        dest = np.zeros(len(indices), dtype=np.uint32)
        result_error = np.zeros(1, dtype=np.float32)
        options = meshoptimizer.SIMPLIFY_LOCK_BORDER if self.lock_border else 0
        unlocked = False
        count = meshoptimizer.simplify(dest, indices, positions, target_index_count=target,
                                       target_error=self.target_error, options=options,
                                       result_error=result_error)
        if self.lock_border and self.unlock_if_stuck and count > 2 * target:
            count = meshoptimizer.simplify(dest, indices, positions, target_index_count=target,
                                           target_error=self.target_error, options=0,
                                           result_error=result_error)
            unlocked = True
        if count == 0:
            return 0.0, False
        new_indices = dest[:count]
        meshoptimizer.optimize_vertex_cache(new_indices, new_indices, len(new_indices),
                                            len(positions))
        scale = meshoptimizer.simplify_scale(positions)
        abs_error = float(result_error[0]) * float(scale)

        attrs = prim["attributes"]
        exclusive = not prim.get("targets") and all(usage[a] == 1 for a in attrs.values())
        if exclusive:
            # Keep only the vertices the simplified mesh still uses, in first-use order.
            used, first, inverse = np.unique(new_indices, return_index=True,
                                             return_inverse=True)
            order = np.argsort(first)
            rank = np.empty_like(order)
            rank[order] = np.arange(len(order))
            new_indices = rank[inverse].astype(np.uint32)
            kept = used[order]
            for acc_index in list(attrs.values()):
                old = new_json["accessors"][acc_index]
                data = doc.read_accessor(acc_index)[kept]
                replacement = _copy_accessor(old, data, builder, new_json)
                new_json["accessors"][acc_index] = replacement
            vertex_count = len(kept)
        else:
            vertex_count = len(positions)
        dtype = np.uint16 if vertex_count < 65536 else np.uint32
        prim["indices"] = builder.add_accessor(new_json, new_indices.astype(dtype),
                                               target=ELEMENT_ARRAY_BUFFER)
        return abs_error, unlocked


def _copy_accessor(old: dict, data: np.ndarray, builder: BufferBuilder, new_json: dict) -> dict:
    """A replacement for `old` holding `data`, same type, tightly packed in a new view."""
    acc = {k: v for k, v in old.items() if k not in ("bufferView", "byteOffset", "count",
                                                      "min", "max", "sparse")}
    acc["bufferView"] = builder.add_view(np.ascontiguousarray(data).tobytes(), ARRAY_BUFFER)
    acc["count"] = int(len(data))
    if "min" in old and len(data):
        acc["min"] = [_as_number(v, old) for v in data.min(axis=0)]
        acc["max"] = [_as_number(v, old) for v in data.max(axis=0)]
    return acc


def _as_number(value, acc: dict):
    return float(value) if acc["componentType"] == 5126 else int(value)


def _accessor_usage(doc_json: dict) -> Counter:
    """How many places refer to each accessor (shared ones must not be rewritten in place)."""
    usage: Counter = Counter()
    for mesh in doc_json.get("meshes", []):
        for prim in mesh.get("primitives", []):
            usage.update(prim.get("attributes", {}).values())
            if "indices" in prim:
                usage[prim["indices"]] += 1
            for target in prim.get("targets", []):
                usage.update(target.values())
    for skin in doc_json.get("skins", []):
        if "inverseBindMatrices" in skin:
            usage[skin["inverseBindMatrices"]] += 1
    for anim in doc_json.get("animations", []):
        for sampler in anim.get("samplers", []):
            usage[sampler["input"]] += 1
            usage[sampler["output"]] += 1
    return usage
