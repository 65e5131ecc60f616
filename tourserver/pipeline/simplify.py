"""Mesh simplification with meshoptimizer, for level-of-detail variants.

The document is simplified towards `ratio` of its triangles: each indexed triangle primitive
first gets the same ratio, and when small or locked parts cannot shrink that far, the others
are asked for more (a few passes), so a device budget is met on scenes made of many parts.
Borders are locked so separate parts of a model do not open gaps (unlocked, and reported,
only when a primitive is stuck otherwise). The error cap `target_error` always holds.
The largest absolute error (metres in the primitive's own units) is reported as the fact
`simplify.error`, which the build turns into the 3D Tiles geometricError; the facts
`simplify.triangles_before` / `simplify.triangles_after` say how far it got.
"""

from __future__ import annotations

import copy
from collections import Counter
from dataclasses import dataclass
from typing import ClassVar

import meshoptimizer
import numpy as np

from tourserver.gltf.document import MODE_TRIANGLES, Document
from tourserver.pipeline.base import Context
from tourserver.gltf.buffers import BufferBuilder, repack

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
    keeps_images: ClassVar[bool] = True  # see base.Transform

    def __call__(self, doc: Document, ctx: Context) -> Document:
        new_json = copy.deepcopy(doc.json)
        builder = BufferBuilder(new_json)
        usage = _accessor_usage(new_json)
        prims = [prim for mesh in new_json.get("meshes", [])
                 for prim in mesh.get("primitives", [])
                 if prim.get("mode", MODE_TRIANGLES) == MODE_TRIANGLES and "indices" in prim
                 and "POSITION" in prim.get("attributes", {})
                 and not prim.get("extensions")]  # compressed primitives are left alone
        sources = [_Source.read(doc, prim) for prim in prims]
        results = self._simplify_all(sources)
        max_error = 0.0
        unlocked_count = 0
        for prim, source, result in zip(prims, sources, results, strict=True):
            if result is None:
                continue
            max_error = max(max_error, result.error)
            unlocked_count += result.unlocked
            self._apply(doc, new_json, prim, source, result, builder, usage)
        ctx.most("simplify.error", max_error)
        before = sum(len(s.indices) // 3 for s in sources)
        after = sum(len(r.indices) // 3 if r else len(s.indices) // 3
                    for s, r in zip(sources, results, strict=True))
        ctx.add("simplify.triangles_before", before)
        ctx.add("simplify.triangles_after", after)
        if unlocked_count:
            ctx.facts["simplify.unlocked_primitives"] = unlocked_count
            ctx.logger.info("simplify: %d primitive(s) had borders unlocked to reach the "
                            "target", unlocked_count)
        return repack(doc, new_json, builder.payloads)

    def _simplify_all(self, sources: list[_Source]) -> list[_Result | None]:
        """`ratio` is of the whole document's triangles, not of each primitive's: small
        parts (a window quad) cannot lose half their triangles, so once a pass shows which
        primitives got stuck, the others are asked for more, up to MAX_PASSES passes, each
        from the original indices."""
        total = sum(len(s.indices) // 3 for s in sources)
        goal = total * self.ratio
        ratios = [self.ratio] * len(sources)
        results: list[_Result | None] = []
        for _ in range(MAX_PASSES):
            results = [self._simplify(s, r) for s, r in zip(sources, ratios, strict=True)]
            counts = [len(r.indices) // 3 if r else len(s.indices) // 3
                      for s, r in zip(sources, results, strict=True)]
            if sum(counts) <= goal * 1.02:
                break
            flexible = [i for i, (s, c) in enumerate(zip(sources, counts, strict=True))
                        if results[i] is not None and c <= 1.05 * ratios[i] * len(s.indices) / 3
                        and ratios[i] > MIN_RATIO]
            if not flexible:
                break
            flexible_set = set(flexible)
            stuck = sum(c for i, c in enumerate(counts) if i not in flexible_set)
            room = sum(len(sources[i].indices) // 3 for i in flexible)
            share = max(MIN_RATIO, (goal - stuck) / room) if room else MIN_RATIO
            if all(share >= ratios[i] for i in flexible):
                break
            for i in flexible:
                ratios[i] = min(ratios[i], share)
        return results

    def _simplify(self, source: _Source, ratio: float) -> _Result | None:
        indices, positions = source.indices, source.positions
        if len(indices) < 3 * 16 or len(positions) == 0:
            return None
        target = max(3, int(len(indices) * ratio) // 3 * 3)
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
            return None
        new_indices = dest[:count].copy()
        meshoptimizer.optimize_vertex_cache(new_indices, new_indices, len(new_indices),
                                            len(positions))
        abs_error = float(result_error[0]) * float(meshoptimizer.simplify_scale(positions))
        return _Result(new_indices, abs_error, unlocked)

    def _apply(self, doc: Document, new_json: dict, prim: dict, source: _Source,
               result: _Result, builder: BufferBuilder, usage: Counter) -> None:
        new_indices = result.indices
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
            vertex_count = len(source.positions)
        dtype = np.uint16 if vertex_count < 65536 else np.uint32
        prim["indices"] = builder.add_accessor(new_json, new_indices.astype(dtype),
                                               target=ELEMENT_ARRAY_BUFFER)


MAX_PASSES = 4
MIN_RATIO = 0.01


@dataclass(frozen=True)
class _Source:
    indices: np.ndarray
    positions: np.ndarray

    @classmethod
    def read(cls, doc: Document, prim: dict) -> _Source:
        return cls(doc.read_accessor(prim["indices"]).reshape(-1).astype(np.uint32),
                   doc.read_accessor(prim["attributes"]["POSITION"]).astype(np.float32))


@dataclass(frozen=True)
class _Result:
    indices: np.ndarray
    error: float  # absolute, in the primitive's units
    unlocked: bool


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
