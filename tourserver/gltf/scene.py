"""The scene graph in world space: node matrices, what draws each mesh and at what scale,
and the size of the scene.

Pure functions over the glTF JSON and an accessor reader (`Reader`: accessor index -> array,
usually `Document.read_accessor`; wrap it with `float_reader` where normalized integers may
appear). A mesh is drawn by every node of the scene that refers to it, once per
EXT_mesh_gpu_instancing instance; a skinned mesh is placed by its joints (world matrix ×
inverse bind matrix), not by its node (glTF 2.0 §3.7.3.3).

Why here: simplification bounds its error in world units, which needs the largest scale
any copy of a mesh is drawn at, and "relative to the scene" needs the scene's bounding box.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from tourserver.model.geo import trs_matrix

Reader = Callable[[int], np.ndarray]
INSTANCING = "EXT_mesh_gpu_instancing"
# Largest value of each normalized integer type (glTF 2.0 §3.11).
_NORMALIZED_MAX = {5120: 127.0, 5121: 255.0, 5122: 32767.0, 5123: 65535.0}


def float_reader(doc_json: dict, read: Reader) -> Reader:
    """`read` returning float64, normalized integers mapped to [-1, 1] / [0, 1]."""
    def read_float(index: int) -> np.ndarray:
        values = read(index).astype(np.float64)
        acc = doc_json["accessors"][index]
        if acc.get("normalized") and acc["componentType"] in _NORMALIZED_MAX:
            values = np.maximum(values / _NORMALIZED_MAX[acc["componentType"]], -1.0)
        return values
    return read_float


def local_matrix(node: dict) -> np.ndarray:
    if "matrix" in node:
        return np.array(node["matrix"], dtype=np.float64).reshape(4, 4).T  # column-major
    return trs_matrix(node.get("translation", (0.0, 0.0, 0.0)),
                      node.get("rotation", (0.0, 0.0, 0.0, 1.0)),
                      node.get("scale", (1.0, 1.0, 1.0)))


def scene_roots(doc_json: dict, scene: int | None = None) -> list[int]:
    """Root nodes of `scene` (None: the default scene; without scenes, every node that is
    nobody's child)."""
    scenes = doc_json.get("scenes", [])
    if scenes:
        index = doc_json.get("scene", 0) if scene is None else scene
        return list(scenes[index].get("nodes", []))
    nodes = doc_json.get("nodes", [])
    children = {c for node in nodes for c in node.get("children", [])}
    return [i for i in range(len(nodes)) if i not in children]


def world_matrices(doc_json: dict, roots: list[int],
                   overrides: dict[int, np.ndarray] | None = None) -> dict[int, np.ndarray]:
    """World matrix of every node under `roots`, parents before children; `overrides`
    replace some nodes' local matrices."""
    nodes = doc_json.get("nodes", [])
    overrides = overrides or {}
    world: dict[int, np.ndarray] = {}
    stack = [(r, np.eye(4)) for r in reversed(roots)]
    while stack:
        i, parent = stack.pop()
        if i in world:  # a node reached twice: invalid glTF, checked on load
            continue
        local = overrides[i] if i in overrides else local_matrix(nodes[i])
        world[i] = parent @ local
        stack.extend((c, world[i]) for c in reversed(nodes[i].get("children", [])))
    return world


def instance_count(doc_json: dict, node: dict) -> int:
    """How many copies a node draws: one per EXT_mesh_gpu_instancing instance, else one
    (read from the accessors' counts: the instance data may be compressed)."""
    attrs = node.get("extensions", {}).get(INSTANCING, {}).get("attributes", {})
    for accessor in attrs.values():
        return int(doc_json["accessors"][accessor]["count"])
    return 1


def instance_matrices(doc_json: dict, node: dict, read: Reader) -> np.ndarray:
    """(k, 4, 4): the node-local transform of each EXT_mesh_gpu_instancing instance, or
    one identity when the node is not instanced. `read` must return floats."""
    attrs = node.get("extensions", {}).get(INSTANCING, {}).get("attributes", {})
    if not attrs:
        return np.eye(4)[None]
    n = int(doc_json["accessors"][next(iter(attrs.values()))]["count"])
    t = read(attrs["TRANSLATION"])[:, :3] if "TRANSLATION" in attrs else np.zeros((n, 3))
    r = read(attrs["ROTATION"])[:, :4] if "ROTATION" in attrs else np.tile([0, 0, 0, 1.0], (n, 1))
    s = read(attrs["SCALE"])[:, :3] if "SCALE" in attrs else np.ones((n, 3))
    return np.stack([trs_matrix(t[i], r[i], s[i]) for i in range(n)]) if n else np.zeros(
        (0, 4, 4))


def joint_matrices(doc_json: dict, skin: dict, world: dict[int, np.ndarray],
                   read: Reader) -> np.ndarray:
    """(J, 4, 4): joint world matrix × inverse bind matrix, what skinning applies."""
    joints = skin.get("joints", [])
    if "inverseBindMatrices" in skin:
        ibm = read(skin["inverseBindMatrices"]).reshape(-1, 4, 4).transpose(0, 2, 1)
    else:
        ibm = np.tile(np.eye(4), (len(joints), 1, 1))
    return np.stack([world.get(j, np.eye(4)) for j in joints]) @ ibm if joints else ibm


@dataclass(frozen=True)
class Drawer:
    """One node drawing a mesh: `copies` (k, 4, 4) place its k instances in the world; a
    skinned mesh is placed by `joints` (J, 4, 4) instead, and counts as one copy."""

    node: int
    mesh: int
    copies: np.ndarray
    joints: np.ndarray | None = None

    @property
    def count(self) -> int:
        return 1 if self.joints is not None else len(self.copies)

    @property
    def placements(self) -> np.ndarray:
        """The matrices that may carry this mesh's vertices into the world."""
        return self.joints if self.joints is not None else self.copies


def drawers(doc_json: dict, read: Reader, scene: int | None = None,
            overrides: dict[int, np.ndarray] | None = None) -> Iterator[Drawer]:
    """Every node of `scene` (None: the default) that draws a mesh, with its placements
    (`overrides`: see `world_matrices`)."""
    nodes = doc_json.get("nodes", [])
    world = world_matrices(doc_json, scene_roots(doc_json, scene), overrides)
    for i, matrix in world.items():
        node = nodes[i]
        if "mesh" not in node:
            continue
        if "skin" in node:
            skin = doc_json["skins"][node["skin"]]
            yield Drawer(i, node["mesh"], matrix[None],
                         joint_matrices(doc_json, skin, world, read))
        else:
            yield Drawer(i, node["mesh"], matrix @ instance_matrices(doc_json, node, read))


def max_scale(matrices: np.ndarray) -> float:
    """The largest factor any of the (k, 4, 4) matrices stretches a length by."""
    if not len(matrices):
        return 0.0
    return float(np.linalg.norm(matrices[:, :3, :3], ord=2, axis=(1, 2)).max())


def mesh_world_scales(doc_json: dict, read: Reader) -> dict[int, float]:
    """For each mesh drawn in any scene: the largest scale any node or instance draws it
    at, also with every animated node at its largest keyframe scale (a mesh that grows
    when played must be simplified for its largest size). Meshes no scene draws are left
    out. `read` must return floats."""
    nodes = doc_json.get("nodes", [])
    grown = {i: trs_matrix(nodes[i].get("translation", (0.0, 0.0, 0.0)),
                           nodes[i].get("rotation", (0.0, 0.0, 0.0, 1.0)),
                           np.maximum(np.abs(nodes[i].get("scale", (1.0, 1.0, 1.0))), top))
             for i, top in _animated_scale_maxima(doc_json, read).items()
             if "matrix" not in nodes[i]}  # animated nodes have TRS (glTF 2.0 §3.11)
    scales: dict[int, float] = {}
    scenes: list[int | None] = [*range(len(doc_json.get("scenes", [])))] or [None]
    for scene in scenes:
        for overrides in ({}, grown) if grown else ({},):
            for drawer in drawers(doc_json, read, scene, overrides):
                scale = max_scale(drawer.placements)
                scales[drawer.mesh] = max(scales.get(drawer.mesh, 0.0), scale)
    return scales


def _animated_scale_maxima(doc_json: dict, read: Reader) -> dict[int, np.ndarray]:
    """Node -> largest |scale| per axis over every animation keyframe targeting it."""
    out: dict[int, np.ndarray] = {}
    for anim in doc_json.get("animations", []):
        samplers = anim.get("samplers", [])
        for channel in anim.get("channels", []):
            target = channel.get("target", {})
            if target.get("path") != "scale" or "node" not in target:
                continue
            values = np.abs(read(samplers[channel["sampler"]]["output"])[:, :3])
            if len(values):
                node = target["node"]
                out[node] = np.maximum(out.get(node, np.zeros(3)), values.max(axis=0))
    return out


def position_bounds(doc_json: dict, accessor: int, read: Reader) -> tuple[np.ndarray,
                                                                          np.ndarray]:
    """A POSITION accessor's min and max (from the accessor's own bounds when present)."""
    acc = doc_json["accessors"][accessor]
    if "min" in acc and "max" in acc:
        lo = np.array(acc["min"][:3], dtype=np.float64)
        hi = np.array(acc["max"][:3], dtype=np.float64)
        if acc.get("normalized") and acc["componentType"] in _NORMALIZED_MAX:
            top = _NORMALIZED_MAX[acc["componentType"]]
            lo, hi = np.maximum(lo / top, -1.0), np.maximum(hi / top, -1.0)
        return lo, hi
    values = read(accessor)[:, :3]
    return values.min(axis=0), values.max(axis=0)


def box_corners(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """(8, 4) homogeneous corners of an axis-aligned box."""
    return np.array([[x, y, z, 1.0] for x in (lo[0], hi[0]) for y in (lo[1], hi[1])
                     for z in (lo[2], hi[2])])


def scene_bounds(doc_json: dict, read: Reader, scene: int | None = None
                 ) -> tuple[np.ndarray, np.ndarray] | None:
    """World-space bounding box of everything `scene` draws (None when it draws nothing).
    Each primitive's box is carried by every placement (a skinned mesh's box by each of
    its joints: exact in the bind pose, a little loose in others)."""
    meshes = doc_json.get("meshes", [])
    lo, hi = np.full(3, np.inf), np.full(3, -np.inf)
    for drawer in drawers(doc_json, read, scene):
        placements = drawer.placements
        if not len(placements):
            continue
        for prim in meshes[drawer.mesh].get("primitives", []):
            if "POSITION" not in prim.get("attributes", {}):
                continue
            corners = box_corners(*position_bounds(doc_json, prim["attributes"]["POSITION"],
                                                   read))
            moved = np.einsum("kij,cj->kci", placements, corners)[..., :3].reshape(-1, 3)
            lo, hi = np.minimum(lo, moved.min(axis=0)), np.maximum(hi, moved.max(axis=0))
    if not np.isfinite(lo).all():
        return None
    return lo, hi


def scene_diagonal(doc_json: dict, read: Reader, scene: int | None = None) -> float:
    """Length of the diagonal of `scene`'s world bounding box (0 for an empty scene)."""
    bounds = scene_bounds(doc_json, read, scene)
    return 0.0 if bounds is None else float(np.linalg.norm(bounds[1] - bounds[0]))


__all__ = ["Drawer", "Reader", "box_corners", "drawers", "float_reader", "instance_matrices",
           "joint_matrices", "local_matrix", "max_scale", "mesh_world_scales",
           "position_bounds", "scene_bounds", "scene_diagonal", "scene_roots",
           "world_matrices"]
