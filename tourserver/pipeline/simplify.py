"""Mesh simplification with meshoptimizer, bounded by a geometric error; then, when a budget
asks for it, further.

Error mode (always): every indexed triangle primitive is simplified as far as an error
bound allows, with no triangle target, so flat, densely subdivided detail (CAD façades,
scans) collapses at no visible cost. The bound is relative to the scene: `error` × the
diagonal of the default scene's world bounding box (default 1e-4, 0.01 %), turned into each
mesh's own units by the largest scale any node or instance draws it at (`gltf.scene`).

Budget mode (`ratio` and/or `max_triangles`, counted as the default scene draws them, each
instance apiece): when the error pass leaves more triangles than the goal, every primitive
is simplified again from its original indices to the same share of its error-pass count
(what a part loses for free decides what it must still give), within the cap `max_error`
(also relative to the scene). A primitive that cannot reach its share (its cap, locked
borders or topology stop it) keeps what it reached and the others are asked for more,
until the total is at or under the goal (under by less than a triangle per primitive and
pass). A document of one geometry goes straight to its target, then on to the bound if
that came first. Only if the goal is still missed are locked shared borders unlocked (fact
`unlocked_primitives`), then seams crossed (below); what remains over is reported as
`over_budget`, never hidden.

Crossing seams, the budget's last resort: where attribute seams split nearly every vertex
(boxes with a UV chart per face, windows, sills), meshoptimizer keeps the seams and can
remove next to nothing, so no ratio or cap meets a budget (the bench's city block: 5 % of
its triangles at any cap). A part still over its share then is simplified again, within
the same cap, on its positions alone (the split copies of a position are one vertex), and
each corner of the result takes back the copy at its place whose own triangles face most
like the new triangle (lowest index on a tie): a triangle on a box's front wall keeps the
front chart's UVs at the box's edges. The share loop then goes on with those parts (fact
`crossed_seams`, how many). The cost: textures may stretch where charts met, as one
triangle now spans what several charts mapped; the error reported is still meshoptimizer's
for the surface. Skinned parts and parts with morph targets never cross (their weights and
displacements belong to the copies they were measured on), and `cross_seams=False` forbids
it; error mode never crosses.

What stays correct:
- Attribute seams (UV, normal, colour splits at one position) do not tear: meshoptimizer
  moves the split copies of a vertex together (when crossing them, above, each kept copy
  stands where its position stood, so nothing tears either: only what a triangle maps
  changes).
- Borders that matter stay closed: an open border vertex that coincides in world space with
  an open border vertex of another primitive, another mesh or another instance of the same
  mesh is locked. Free borders (a panel's outline) may move within the bound.
- Skins: vertices are only removed, so the kept ones keep their joints and weights; what
  changes is which weights cover the removed vertex's place. Each vertex's weights enter
  the metric scaled by the lever of each joint (its distance to the joint's pivot): a
  collapse is refused when it would move the surface by more than the bound with every
  joint turned a radian.
- Morph targets: their position displacements enter the metric in position units (the
  four main directions when there are more targets), so the bound holds in the morphed
  poses too, not only in the base pose.
- Points, lines, strips, unindexed and compressed primitives are left as they are.

Normals are not in the metric: measured on a smooth sphere and a 1M-triangle grid, they
changed the triangle count by under 1 % at these bounds and cost 50-80 % more time.

Facts (named after the step): `error` (largest deviation in world units, metres:
meshoptimizer's quadric error, area-weighted distances to the original planes; the farthest
removed vertex measured up to ~1.7x that on spheres, up to ~3x on the low-poly Fox) and
`error_ratio` (that ÷ the scene diagonal), `triangles_before` / `triangles_after` (as
drawn), `locked_vertices` (shared-border vertices held), and when they happen
`unlocked_primitives`, `crossed_seams` and `over_budget`.
"""

from __future__ import annotations

import copy
import ctypes
import logging
from dataclasses import dataclass, field
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
    rewrite_primitive,
    shared_vertex_accessors,
    skip_reason,
    vertex_accessors,
)
from tourserver.gltf.scene import (
    Reader,
    box_corners,
    drawers,
    float_reader,
    mesh_world_scales,
    scene_diagonal,
)
from tourserver.pipeline.base import Context, fact_prefix

MAX_PASSES = 8  # budget passes; each strictly lowers the share of the parts still flexible
TOUCH = 1e-5  # border vertices this close (× scene diagonal) are one place
MAX_SKIN_COLUMNS = 12  # joint-weight directions kept in the metric (meshopt takes 32 in all)
MAX_MORPH_COLUMNS = 4  # morph directions (3 columns each)
MAX_BOX_PAIRS = 4096  # owners compared box against box; above, every border is examined


@dataclass(frozen=True)
class Simplify:
    error: float = 1e-4  # the error bound, × scene diagonal: simplify as far as it allows
    ratio: float | None = None  # budget: keep at most this fraction of the drawn triangles
    max_triangles: int | None = None  # budget: at most this many drawn triangles
    max_error: float = 0.01  # budget mode's cap, × scene diagonal
    cross_seams: bool = True  # budget mode's last resort: simplify across attribute seams
    name: str = "simplify"
    keeps_images: ClassVar[bool] = True  # see base.Transform

    def __post_init__(self) -> None:
        if not 0 <= self.error <= self.max_error:
            raise ValueError("simplify: need 0 <= error <= max_error")
        if self.ratio is not None and not 0 < self.ratio <= 1:
            raise ValueError("simplify: ratio must be in (0, 1]")
        if self.max_triangles is not None and self.max_triangles < 0:
            raise ValueError("simplify: max_triangles must be >= 0")

    def __call__(self, doc: Document, ctx: Context) -> Document:
        new_json = copy.deepcopy(doc.json)
        key = fact_prefix(self.name)
        reason = document_skip_reason(new_json)
        if reason:
            ctx.logger.info("%s: left unchanged: %s", self.name, reason)
            return Document(new_json, doc.bin, doc.source)
        read = float_reader(new_json, doc.read_accessor)
        diagonal = scene_diagonal(new_json, read)
        parts, fixed = _parts(doc, new_json, read, ctx.logger, self.name)
        before = fixed + sum(p.copies * p.triangles for p in parts)
        ctx.add(f"{key}.triangles_before", before)
        if diagonal <= 0 or not parts:
            ctx.add(f"{key}.triangles_after", before)
            return Document(new_json, doc.bin, doc.source)
        ctx.add(f"{key}.locked_vertices", _lock_shared_borders(parts, TOUCH * diagonal))
        bound = self.error * diagonal
        goal = self._goal(before)
        if goal is None:
            results = [part.simplify(part.indices, bound / part.scale) for part in parts]
        else:
            fit = _fit(parts, goal - fixed, bound, self.max_error * diagonal,
                       self.cross_seams)
            results = fit.results
            if fit.unlocked:
                ctx.add(f"{key}.unlocked_primitives", fit.unlocked)
                ctx.logger.info("%s: %d primitive(s) had shared borders unlocked to meet the "
                                "budget", self.name, fit.unlocked)
            if fit.crossed:
                ctx.add(f"{key}.crossed_seams", fit.crossed)
                ctx.logger.info("%s: %d primitive(s) simplified across attribute seams to "
                                "meet the budget (textures may stretch where UV charts met)",
                                self.name, fit.crossed)
        after = fixed + sum(p.copies * len(r.indices) // 3 for p, r in zip(parts, results,
                                                                              strict=True))
        ctx.add(f"{key}.triangles_after", after)
        if goal is not None and after > goal:
            ctx.add(f"{key}.over_budget", after - goal)
            ctx.logger.info("%s: %d drawn triangles, %d over the goal of %d: nothing can "
                            "shrink further within the error cap", self.name, after,
                            after - goal, goal)
        error = max((r.error * p.scale for p, r in zip(parts, results, strict=True)),
                    default=0.0)
        ctx.most(f"{key}.error", error)
        ctx.most(f"{key}.error_ratio", error / diagonal)
        builder = _apply(doc, new_json, parts, results)
        if builder is None:
            return Document(new_json, doc.bin, doc.source)
        return finish(doc, new_json, builder)

    def _goal(self, before: int) -> int | None:
        goals = []
        if self.ratio is not None and self.ratio < 1:
            goals.append(int(self.ratio * before))
        if self.max_triangles is not None:
            goals.append(self.max_triangles)
        return min(goals) if goals else None


# ---- one geometry: the primitives that share all their data --------------------------------
@dataclass
class _Result:
    indices: np.ndarray  # into the part's original vertices
    error: float  # absolute, in the part's own units


@dataclass
class _Part:
    prims: list[dict]
    indices: np.ndarray
    positions: np.ndarray  # float32 (n, 3)
    scale: float  # the largest world scale it is drawn at
    copies: int  # how many times the default scene draws it
    placements: list[np.ndarray] = field(default_factory=list)  # per drawer, (k, 4, 4)
    skinned: list[bool] = field(default_factory=list)  # per drawer: placements are joints
    skin: tuple[np.ndarray, np.ndarray] | None = None  # joints, weights (n, 4s)
    metric: np.ndarray | None = None  # extra attribute columns (local units), float32
    metric_weight: float = 0.0  # see _metric_weight
    lock: np.ndarray | None = None  # uint8 per vertex
    crosses: bool = False  # simplified on positions alone: seams may go (see _Seams)
    seams: _Seams | None = None  # made when it first crosses

    @property
    def triangles(self) -> int:
        return len(self.indices) // 3

    @property
    def may_cross(self) -> bool:
        """Whether there are seams to cross, and they may be: not for skins or morph
        targets, whose weights and displacements belong to the copies they were measured
        on."""
        if self.metric is not None or self.skin is not None or any(self.skinned):
            return False
        if self.seams is None:
            self.seams = _Seams.of(self.positions, self.indices)
        return len(self.seams.points) < len(self.positions)

    def simplify(self, source: np.ndarray, bound: float, target: int = 0) -> _Result:
        """Simplify `source` (indices) to `target` indices or the absolute error `bound`,
        whichever comes first; the error returned is meshoptimizer's, in local units."""
        # No bound and no target (or one already met): nothing may change.
        if len(source) < 6 or (bound <= 0 and not 0 < target < len(source)):
            return _Result(source, 0.0)
        if self.crosses:
            return self._simplify_across_seams(source, bound, target)
        dest = np.empty_like(source)
        options = meshoptimizer.SIMPLIFY_ERROR_ABSOLUTE
        if self.metric is None and self.lock is None:
            error = np.zeros(1, dtype=np.float32)
            count = meshoptimizer.simplify(dest, source, self.positions, target_index_count=target,
                                           target_error=bound, options=options,
                                           result_error=error)
            result_error = float(error[0])
        else:
            columns = (self.metric if self.metric is not None
                       else np.zeros((len(self.positions), 1), np.float32))
            weights = np.full(columns.shape[1] if self.metric is not None else 0,
                              self.metric_weight, dtype=np.float32)
            count, result_error = _simplify_with_attributes(
                dest, source, self.positions, columns, weights, self.lock, target, bound,
                options)
        if count == 0:  # nothing left would draw nothing: keep the source
            return _Result(source, 0.0)
        return _Result(dest[:count].copy(), result_error)

    def _simplify_across_seams(self, source: np.ndarray, bound: float,
                               target: int) -> _Result:
        """As simplify, on the topology of the positions alone: the split copies of a
        vertex are one vertex, so seams do not hold anything; a shared-border lock, if the
        part still has one, holds its position. The vertices handed to meshoptimizer are
        the distinct positions only: copies it is given, even unused ones, it would keep as
        seams."""
        if self.seams is None:
            self.seams = _Seams.of(self.positions, self.indices)
        seams = self.seams
        shadow = np.ascontiguousarray(seams.group[source], dtype=np.uint32)
        dest = np.empty_like(shadow)
        options = meshoptimizer.SIMPLIFY_ERROR_ABSOLUTE
        if self.lock is None:
            error = np.zeros(1, dtype=np.float32)
            count = meshoptimizer.simplify(dest, shadow, seams.points,
                                           target_index_count=target, target_error=bound,
                                           options=options, result_error=error)
            result_error = float(error[0])
        else:
            lock = np.zeros(len(seams.points), dtype=np.uint8)
            np.maximum.at(lock, seams.group, self.lock)
            count, result_error = _simplify_with_attributes(
                dest, shadow, seams.points, np.zeros((len(seams.points), 1), np.float32),
                np.zeros(0, np.float32), lock, target, bound, options)
        if count == 0:
            return _Result(source, 0.0)
        return _Result(seams.copies_for(dest[:count]), result_error)


@dataclass
class _Seams:
    """The split copies of each position in one part, and the way each copy faces."""
    points: np.ndarray  # (positions, 3) float32, each distinct position once
    group: np.ndarray  # (n,) which of them each vertex is at
    members: np.ndarray  # vertices ordered by position, then index
    start: np.ndarray  # (positions,) where each position's vertices begin in `members`
    size: np.ndarray  # (positions,) how many vertices each position has
    facing: np.ndarray  # (n, 3) unit area-weighted normal of each vertex's own triangles

    @classmethod
    def of(cls, positions: np.ndarray, indices: np.ndarray) -> _Seams:
        rows = np.ascontiguousarray(positions + np.float32(0))  # -0.0 is 0.0
        _, lowest, group = np.unique(rows.view(np.dtype((np.void, rows.strides[0]))),
                                     return_index=True, return_inverse=True)
        group = group.reshape(-1).astype(np.int64)
        members = np.argsort(group, kind="stable")
        size = np.bincount(group, minlength=len(lowest))
        start = np.cumsum(size) - size
        tri = indices.reshape(-1, 3).astype(np.int64)
        corners = positions[tri].astype(np.float64)
        normal = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
        facing = np.stack([np.bincount(tri.ravel(), np.repeat(normal[:, c], 3),
                                       minlength=len(positions)) for c in range(3)], axis=1)
        length = np.linalg.norm(facing, axis=1, keepdims=True)
        facing = np.divide(facing, length, out=np.zeros_like(facing), where=length > 0)
        facing[np.bincount(tri.ravel(), minlength=len(positions)) == 0] = np.nan  # unused
        return cls(np.ascontiguousarray(rows[lowest]), group, members, start, size, facing)

    def copies_for(self, shadow: np.ndarray) -> np.ndarray:
        """Indices (into the part's vertices) for triangles simplified on the distinct
        positions (`shadow`, into `points`): each corner takes, of the copies at its
        position, the one whose own triangles face most like its triangle (unused copies
        last, then the lowest index)."""
        shadow = shadow.astype(np.int64)
        tri = self.points[shadow.reshape(-1, 3)].astype(np.float64)
        normal = np.repeat(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), 3, axis=0)
        size = self.size[shadow]
        corner = np.repeat(np.arange(len(shadow)), size)  # one row per (corner, copy)
        offset = np.arange(len(corner)) - np.repeat(np.cumsum(size) - size, size)
        copy = self.members[np.repeat(self.start[shadow], size) + offset]
        score = np.einsum("ij,ij->i", normal[corner], self.facing[copy])
        score = np.nan_to_num(score, nan=-np.inf)
        best = np.maximum.reduceat(score, np.cumsum(size) - size)
        chosen = np.flatnonzero(score == best[corner])
        firsts = chosen[np.r_[True, corner[chosen][1:] != corner[chosen][:-1]]]
        return copy[firsts].astype(np.uint32)


def _parts(doc: Document, doc_json: dict, read: Reader, logger: logging.Logger,
           name: str) -> tuple[list[_Part], int]:
    """The geometries to simplify, and the drawn triangles of those left as they are."""
    scales = mesh_world_scales(doc_json, read)
    scene_drawers = list(drawers(doc_json, read))
    by_mesh: dict[int, list] = {}
    for drawer in scene_drawers:
        by_mesh.setdefault(drawer.mesh, []).append(drawer)
    skins = {d.mesh: doc_json["nodes"][d.node]["skin"] for d in scene_drawers
             if "skin" in doc_json["nodes"][d.node]}
    accessors = doc_json.get("accessors", [])
    parts: dict[tuple, _Part | None] = {}
    fixed = 0
    skipped = 0
    for m, mesh in enumerate(doc_json.get("meshes", [])):
        mesh_drawers = by_mesh.get(m, [])
        copies = sum(d.count for d in mesh_drawers)
        for prim in mesh.get("primitives", []):
            key = geometry_key(prim)
            if key in parts:
                part = parts[key]
                if part is None:
                    fixed += copies * _triangle_count(accessors, prim)
                else:
                    part.prims.append(prim)
                    part.copies += copies
                    part.scale = max(part.scale, scales.get(m, 0.0))
                    _add_placements(part, mesh_drawers)
                continue
            reason = skip_reason(doc_json, prim) or (
                None if "indices" in prim else "not indexed (weld indexes it)")
            if reason is None and scales.get(m, 0.0) <= 0:
                reason = "no scene draws it (or only at scale 0)"
            if reason:
                parts[key] = None
                fixed += copies * _triangle_count(accessors, prim)
                if prim.get("mode", MODE_TRIANGLES) == MODE_TRIANGLES:
                    skipped += 1
                    logger.debug("%s: /meshes/%d primitive skipped: %s", name, m, reason)
                continue
            attrs = prim["attributes"]
            positions = np.ascontiguousarray(read(attrs["POSITION"])[:, :3], dtype=np.float32)
            indices = np.ascontiguousarray(doc.read_accessor(prim["indices"]).reshape(-1),
                                           dtype=np.uint32)
            indices = indices[: len(indices) // 3 * 3]
            part = _Part([prim], indices, positions, scales[m], copies)
            _add_placements(part, mesh_drawers)
            part.skin = _skin_data(doc, read, prim)
            pivots = _pivots(doc_json, read, skins[m]) if m in skins else None
            part.metric = _deformation_metric(doc_json, read, prim, positions, part.skin,
                                              pivots)
            if part.metric is not None:
                part.metric_weight = _metric_weight(positions, indices)
            parts[key] = part
    if skipped:
        logger.info("%s: %d triangle primitive(s) left as they are (compressed, unindexed, "
                    "sparse or not drawn)", name, skipped)
    return [p for p in parts.values() if p is not None], fixed


def _triangle_count(accessors: list[dict], prim: dict) -> int:
    if prim.get("mode", MODE_TRIANGLES) != MODE_TRIANGLES:
        return 0
    if "indices" in prim:
        return int(accessors[prim["indices"]]["count"]) // 3
    position = prim.get("attributes", {}).get("POSITION")
    return int(accessors[position]["count"]) // 3 if position is not None else 0


def _add_placements(part: _Part, mesh_drawers: list) -> None:
    for drawer in mesh_drawers:
        part.placements.append(drawer.placements)
        part.skinned.append(drawer.joints is not None)


# ---- what besides the surface must survive: skins and morph targets -------------------------
def _skin_data(doc: Document, read: Reader,
               prim: dict) -> tuple[np.ndarray, np.ndarray] | None:
    attrs = prim["attributes"]
    joints, weights = [], []
    s = 0
    while f"JOINTS_{s}" in attrs and f"WEIGHTS_{s}" in attrs:
        joints.append(doc.read_accessor(attrs[f"JOINTS_{s}"]).astype(np.int64))
        weights.append(read(attrs[f"WEIGHTS_{s}"]))
        s += 1
    if not joints:
        return None
    return np.hstack(joints), np.hstack(weights)


def _pivots(doc_json: dict, read: Reader, skin_index: int) -> np.ndarray | None:
    """Each joint's origin in the mesh's (bind) space: the inverse of its inverse bind
    matrix, applied to the origin."""
    skin = doc_json["skins"][skin_index]
    if "inverseBindMatrices" not in skin:
        return None
    ibm = read(skin["inverseBindMatrices"]).reshape(-1, 4, 4).transpose(0, 2, 1)
    try:
        return np.linalg.inv(ibm)[:, :3, 3]
    except np.linalg.LinAlgError:
        return None


def _deformation_metric(doc_json: dict, read: Reader, prim: dict, positions: np.ndarray,
                        skin: tuple[np.ndarray, np.ndarray] | None,
                        pivots: np.ndarray | None) -> np.ndarray | None:
    """Columns, in position units, whose interpolation error is how far a collapse moves
    the surface in other poses: skin weights × joint levers, morph displacements."""
    columns = []
    if skin is not None:
        columns.append(_skin_columns(positions, *skin, pivots))
    deltas = [read(t["POSITION"])[:, :3] for t in prim.get("targets", []) if "POSITION" in t]
    if deltas:
        if len(deltas) > MAX_MORPH_COLUMNS:
            flat = np.stack([d.reshape(-1) for d in deltas])  # (targets, 3n)
            flat = _principal(flat.T, MAX_MORPH_COLUMNS).T
            deltas = [row.reshape(-1, 3) for row in flat]
        columns.extend(deltas)
    if not columns:
        return None
    return np.ascontiguousarray(np.hstack(columns), dtype=np.float32)


def _skin_columns(positions: np.ndarray, joints: np.ndarray, weights: np.ndarray,
                  pivots: np.ndarray | None) -> np.ndarray:
    """Each vertex's joint weights × each joint's lever (the farthest vertex it moves from
    its pivot; the mesh's extent without pivots), in at most MAX_SKIN_COLUMNS main
    directions: a collapse that changes the weights covering a place by dw moves it by
    about dw × lever when the joint turns a radian. Computed sparsely (4 influences per
    vertex and set), as a skin may have hundreds of joints."""
    count = int(joints.max(initial=0)) + 1
    lever = np.full(count, float(np.ptp(positions, axis=0).max(initial=0.0)))
    if pivots is not None and len(pivots) >= count:
        used = weights > 0
        reach = np.linalg.norm(positions[:, None, :] - pivots[joints], axis=2)
        lever[:] = 0.0
        np.maximum.at(lever, joints[used], reach[used])
    values = weights * lever[joints]  # (n, influences)
    rows = np.arange(len(positions))[:, None]
    if count <= MAX_SKIN_COLUMNS:
        dense = np.zeros((len(positions), count))
        np.add.at(dense, (np.broadcast_to(rows, joints.shape), joints), values)
        return dense
    mean = np.bincount(joints.ravel(), values.ravel(), minlength=count) / len(positions)
    gram = np.zeros((count, count))
    np.add.at(gram, (joints[:, :, None], joints[:, None, :]),
              values[:, :, None] * values[:, None, :])
    _, vectors = np.linalg.eigh(gram - len(positions) * np.outer(mean, mean))
    main = vectors[:, -MAX_SKIN_COLUMNS:]
    return np.einsum("ni,nik->nk", values, main[joints])


def _metric_weight(positions: np.ndarray, indices: np.ndarray) -> float:
    """The attribute weight that makes a change in a metric column count about like the
    same change in position. meshoptimizer (0.22) weighs an attribute's interpolation error
    by triangle area, without normalising it as it does the positional error: a weighted
    change of 1 across an edge of length d counts like a move of d, so the weight is the
    inverse of the typical edge. The factor 0.5 is measured: a morph target's bump on a
    41 and an 81 vertex square sheet then deviates by at most the bound in the morphed
    pose (`test_morph_target_keeps_its_shape_while_the_flat_base_collapses`)."""
    tri = positions[indices[: len(indices) // 3 * 3].reshape(-1, 3)]
    edges = np.linalg.norm(tri[:, 1] - tri[:, 0], axis=1)
    edge = float(np.median(edges[edges > 0])) if (edges > 0).any() else 1.0
    return 0.5 / edge


def _principal(data: np.ndarray, keep: int) -> np.ndarray:
    """`data` (n, k) projected on its `keep` main directions (unchanged when k <= keep):
    differences between rows, which the metric measures, are kept as far as they can."""
    if data.shape[1] <= keep:
        return data
    centred = data - data.mean(axis=0)
    _, vectors = np.linalg.eigh(centred.T @ centred)
    return data @ vectors[:, -keep:]


# ---- borders shared with other parts --------------------------------------------------------
def _lock_shared_borders(parts: list[_Part], tolerance: float) -> int:
    """Lock the open-border vertices that meet another open border in world space (of
    another primitive, or of another copy of the same). Returns how many were locked."""
    owners: list[tuple[int, int, int]] = []  # (part, drawer, copy)
    boxes = []
    for i, part in enumerate(parts):
        corners = box_corners(part.positions.min(axis=0), part.positions.max(axis=0))
        for d, placements in enumerate(part.placements):
            moved = np.einsum("kij,cj->kci", placements, corners)[..., :3]
            if part.skinned[d]:  # one copy, placed by many joints
                owners.append((i, d, -1))
                boxes.append(np.stack([moved.reshape(-1, 3).min(0), moved.reshape(-1, 3).max(0)]))
                continue
            for c in range(len(placements)):
                owners.append((i, d, c))
                boxes.append(np.stack([moved[c].min(0), moved[c].max(0)]))
    if len(owners) < 2:
        return 0
    candidates = _touching(np.array(boxes), tolerance)
    points, ids = [], []
    borders: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    for o in np.flatnonzero(candidates):
        i, d, c = owners[o]
        if i not in borders:
            borders[i] = _border_vertices(parts[i])
        welded, border, representative = borders[i]
        if not len(border):
            continue
        local = parts[i].positions[representative[border]].astype(np.float64)
        if parts[i].skinned[d]:
            world = _skinned(local, parts[i], representative[border], parts[i].placements[d])
        else:
            m = parts[i].placements[d][c]
            world = local @ m[:3, :3].T + m[:3, 3]
        points.append(world)
        ids.append(np.stack([np.full(len(border), i), border], axis=1))
    if not points:
        return 0
    near = _near_another(np.concatenate(points), tolerance)
    hits = np.concatenate(ids)[near]
    locked = 0
    for i, (welded, _, _) in borders.items():
        chosen = np.unique(hits[hits[:, 0] == i, 1])
        if len(chosen):
            lock = np.isin(welded, chosen)
            parts[i].lock = lock.astype(np.uint8)
            locked += int(lock.sum())
    return locked


def _touching(boxes: np.ndarray, tolerance: float) -> np.ndarray:
    """Which boxes (m, 2, 3) touch another one (all of them when there are too many)."""
    if len(boxes) > MAX_BOX_PAIRS:
        return np.ones(len(boxes), dtype=bool)
    lo, hi = boxes[:, 0] - tolerance, boxes[:, 1] + tolerance
    overlap = np.asarray(((lo[:, None] <= hi[None]) & (lo[None] <= hi[:, None])).all(axis=2))
    np.fill_diagonal(overlap, False)
    return np.asarray(overlap.any(axis=1))


def _border_vertices(part: _Part) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vertices welded by position (a seam is no border), the welded ids on open edges
    (used by one triangle), and one original vertex for each welded id."""
    n = len(part.positions)
    welded = np.zeros(n, dtype=np.uint32)
    if len(part.indices) < 3:
        return welded, np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    unique = meshoptimizer.generate_vertex_remap(welded, part.indices, len(part.indices),
                                                 part.positions, n, 12)
    representative = np.zeros(unique, dtype=np.int64)
    used = welded != np.uint32(0xFFFFFFFF)
    representative[welded[used]] = np.flatnonzero(used)
    tri = welded[part.indices].reshape(-1, 3)
    turned = tri[:, [1, 2, 0]]
    lo = np.minimum(tri, turned).ravel().astype(np.int64)
    hi = np.maximum(tri, turned).ravel().astype(np.int64)
    keys = (lo * unique + hi)[lo != hi]
    keys.sort()
    single = np.ones(len(keys), dtype=bool)
    repeat = keys[1:] == keys[:-1]
    single[1:] &= ~repeat
    single[:-1] &= ~repeat
    open_keys = keys[single]
    border = np.unique(np.concatenate([open_keys // unique, open_keys % unique]))
    return welded, border, representative


def _skinned(local: np.ndarray, part: _Part, vertices: np.ndarray,
             joints: np.ndarray) -> np.ndarray:
    """Rest-pose world positions of skinned vertices."""
    if part.skin is None:
        return local
    index, weight = part.skin[0][vertices], part.skin[1][vertices]
    homo = np.c_[local, np.ones(len(local))]
    out = np.zeros_like(local)
    for k in range(index.shape[1]):
        mats = joints[np.clip(index[:, k], 0, len(joints) - 1)]
        out += weight[:, k, None] * np.einsum("nij,nj->ni", mats, homo)[:, :3]
    total = weight.sum(axis=1, keepdims=True)
    return out / np.where(total > 0, total, 1.0)


def _near_another(points: np.ndarray, tolerance: float) -> np.ndarray:
    """For each point, whether another point lies within about `tolerance` (up to 3.5×):
    points go in cells of that size, and each looks in the 2×2×2 cells around it."""
    cell = np.floor(points / tolerance).astype(np.int64)
    origin = cell.min(axis=0) - 1
    span = cell.max(axis=0) - origin + 2

    def key(c: np.ndarray) -> np.ndarray:
        c = c - origin
        return (c[:, 0] * span[1] + c[:, 1]) * span[2] + c[:, 2]

    keys = np.sort(key(cell))
    base = np.floor(points / tolerance - 0.5).astype(np.int64)
    found = np.zeros(len(points), dtype=np.int64)
    for offset in np.array(np.meshgrid([0, 1], [0, 1], [0, 1])).T.reshape(-1, 3):
        k = key(base + offset)
        found += np.searchsorted(keys, k, side="right") - np.searchsorted(keys, k, side="left")
    return found >= 2  # each point finds itself once


# ---- budget ---------------------------------------------------------------------------------
@dataclass
class _Fit:
    results: list[_Result]
    unlocked: int
    crossed: int = 0


def _fit(parts: list[_Part], goal: int, bound: float, cap: float, cross_seams: bool) -> _Fit:
    """Simplify as far as `bound` allows and further, within `cap` (both world units),
    until the drawn triangles are at most `goal`; as a last resort across seams."""
    if len(parts) == 1:
        return _fit_one(parts[0], goal, bound, cap, cross_seams)
    # Error pass first: what each part loses for free decides what share it must give.
    base = [part.simplify(part.indices, bound / part.scale) for part in parts]
    current = list(base)
    flexible = set(range(len(parts)))
    unlocked: set[int] = set()
    crossed: set[int] = set()  # parts whose result was simplified across seams
    while True:
        for _ in range(MAX_PASSES):
            drawn = [p.copies * len(r.indices) // 3 for p, r in zip(parts, current, strict=True)]
            if sum(drawn) <= goal:
                return _Fit(current, len(unlocked), len(crossed))
            # Every flexible part gets the same share of its error-pass count; a part that
            # stops above its share (its cap or locks) keeps what it reached, the others
            # share the rest. Each share is smaller than the last, so this ends.
            stuck = sum(n for i, n in enumerate(drawn) if i not in flexible)
            room = sum(parts[i].copies * len(base[i].indices) // 3 for i in flexible)
            if not room:
                break
            share = max(0.0, (goal - stuck) / room)
            for i in sorted(flexible):
                target = int(len(base[i].indices) // 3 * share)
                if target >= len(current[i].indices) // 3:
                    continue
                # From the original indices, not the error pass's result: one pass keeps
                # the original's quadrics (from the result, the largest error measured
                # 30 % worse on a noisy grid).
                current[i] = parts[i].simplify(parts[i].indices, cap / parts[i].scale,
                                               target * 3)
                if parts[i].crosses:
                    crossed.add(i)
                if len(current[i].indices) // 3 > target:
                    flexible.discard(i)
        # Still over: borders held for other parts give way before the budget does.
        retry = {i for i in range(len(parts))
                 if i not in flexible and parts[i].lock is not None and i not in unlocked}
        if retry:
            for i in retry:
                parts[i].lock = None
            unlocked |= retry
            flexible |= retry
            continue
        # Still over: seams give way last (where they split nearly every vertex, nothing
        # else can go).
        retry = {i for i in range(len(parts)) if cross_seams and i not in flexible
                 and not parts[i].crosses and parts[i].may_cross}
        if not retry:
            return _Fit(current, len(unlocked), len(crossed))
        for i in retry:
            parts[i].crosses = True
        flexible |= retry


def _fit_one(part: _Part, goal: int, bound: float, cap: float, cross_seams: bool) -> _Fit:
    """One part: straight to its target within the cap (unlocked, then across seams, if
    that is what it takes), then on as far as the bound allows if the target came first
    (one pass over the full mesh instead of two)."""
    target = max(0, goal) // part.copies if part.copies else part.triangles
    result = part.simplify(part.indices, cap / part.scale, target * 3)
    unlocked = crossed = 0
    if len(result.indices) // 3 > target and part.lock is not None:
        part.lock = None
        unlocked = 1
        result = part.simplify(part.indices, cap / part.scale, target * 3)
    if len(result.indices) // 3 > target and cross_seams and part.may_cross:
        part.crosses = True
        crossed = 1
        result = part.simplify(part.indices, cap / part.scale, target * 3)
    room = bound / part.scale - result.error
    if room > 0:
        more = part.simplify(result.indices, room)
        result = _Result(more.indices, result.error + more.error)
    return _Fit([result], unlocked, crossed)


# ---- writing the result ---------------------------------------------------------------------
def _apply(doc: Document, new_json: dict, parts: list[_Part],
           results: list[_Result]) -> BufferBuilder | None:
    """Point each simplified part's primitives at its new indices, keeping only the
    vertices still used (unless other primitives share the vertex data). Returns the
    BufferBuilder holding the new data, or None when nothing changed."""
    shared = shared_vertex_accessors(new_json)
    builder: BufferBuilder | None = None
    for part, result in zip(parts, results, strict=True):
        if len(result.indices) >= len(part.indices):
            continue
        builder = builder or BufferBuilder(new_json)
        first = part.prims[0]
        n = len(part.positions)
        if shared & set(vertex_accessors(first)):
            new = rewrite_primitive(doc, new_json, builder, first, None, n, result.indices)
        else:
            remap = np.zeros(n, dtype=np.uint32)
            unique = meshoptimizer.optimize_vertex_fetch_remap(remap, result.indices,
                                                               len(result.indices), n)
            indices = remap[result.indices]
            new = rewrite_primitive(doc, new_json, builder, first, remap, unique, indices)
        for prim in part.prims[1:]:
            apply_references(prim, new)
    return builder


# ---- meshoptimizer's simplifyWithAttributes -------------------------------------------------
# The Python binding (0.2.30a0) declares no argument types for it, so its float argument
# cannot be passed: call the library's function through a prototype of our own.
_P = ctypes.POINTER
_SIMPLIFY_WITH_ATTRIBUTES = ctypes.CFUNCTYPE(
    ctypes.c_size_t, _P(ctypes.c_uint), _P(ctypes.c_uint), ctypes.c_size_t, _P(ctypes.c_float),
    ctypes.c_size_t, ctypes.c_size_t, _P(ctypes.c_float), ctypes.c_size_t, _P(ctypes.c_float),
    ctypes.c_size_t, _P(ctypes.c_ubyte), ctypes.c_size_t, ctypes.c_float, ctypes.c_uint,
    _P(ctypes.c_float))(("meshopt_simplifyWithAttributes", meshoptimizer.simplifier.lib))


def _simplify_with_attributes(dest: np.ndarray, indices: np.ndarray, positions: np.ndarray,
                              attributes: np.ndarray, weights: np.ndarray,
                              lock: np.ndarray | None, target: int, error: float,
                              options: int) -> tuple[int, float]:
    indices = np.ascontiguousarray(indices, dtype=np.uint32)
    positions = np.ascontiguousarray(positions, dtype=np.float32)
    attributes = np.ascontiguousarray(attributes, dtype=np.float32)
    weights = np.ascontiguousarray(weights, dtype=np.float32)
    assert len(weights) <= min(32, attributes.shape[1]) and len(dest) >= len(indices)
    held = np.ascontiguousarray(lock, dtype=np.uint8) if lock is not None else None
    lock_ptr = held.ctypes.data_as(_P(ctypes.c_ubyte)) if held is not None else None
    result = ctypes.c_float(0.0)
    count = _SIMPLIFY_WITH_ATTRIBUTES(
        dest.ctypes.data_as(_P(ctypes.c_uint)), indices.ctypes.data_as(_P(ctypes.c_uint)),
        len(indices), positions.ctypes.data_as(_P(ctypes.c_float)), len(positions), 12,
        attributes.ctypes.data_as(_P(ctypes.c_float)), attributes.shape[1] * 4,
        weights.ctypes.data_as(_P(ctypes.c_float)), len(weights), lock_ptr, target, error,
        options, ctypes.byref(result))
    return int(count), float(result.value)
