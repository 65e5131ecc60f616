"""Instancing: fold repeated sibling nodes of one mesh into one EXT_mesh_gpu_instancing node.

Why: a street of identical lamps or the bolts of an engine are N nodes drawing the same
mesh, N draw calls on the phone. With EXT_mesh_gpu_instancing (three.js, Babylon.js, Bevy,
gltfpack and glTF-Transform support it) they become one node whose TRANSLATION / ROTATION /
SCALE accessors (float32) place every copy, drawn with one instanced call.

Which nodes: at least `min_instances` siblings (children of the same node, or roots of the
same scene) referencing the same mesh, each with no children, skin, camera, morph weights,
extensions or extras, not targeted by an animation and not a skin joint, and with a transform
that is translation-rotation-scale (a sheared matrix cannot be expressed). The instancing
node takes the place (index and position among its siblings) of the first of them.

No data is lost: the replaced nodes' names are kept, in order, in the instancing node's
`extras.instance_names` (null for unnamed ones), and the instancing node is named after the
first of them. Only the nodes are merged; the hierarchy above them is untouched.

Caveat: the extension is listed in extensionsUsed, not extensionsRequired (the file stays
loadable everywhere), so a viewer without it draws one copy. Facts:
`instance.nodes_replaced` (nodes folded into instancing nodes) and `instance.groups`.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from tourserver.gltf.buffers import BufferBuilder
from tourserver.gltf.document import ChunkWriter, Document
from tourserver.gltf.nodes import pinned_nodes, remove_nodes, root_counts, sibling_lists
from tourserver.gltf.refs import OPAQUE_BUFFER_EXTENSIONS, unknown_extensions
from tourserver.model import geo
from tourserver.pipeline.base import Context

EXTENSION = "EXT_mesh_gpu_instancing"
# Keys a node may have and still be folded into an instancing node.
_FOLDABLE_KEYS = {"mesh", "name", "matrix", "translation", "rotation", "scale"}


@dataclass(frozen=True)
class Instance:
    """Replace >= min_instances sibling nodes of one mesh by one instanced node."""

    min_instances: int = 4
    name: str = "instance"
    keeps_images: ClassVar[bool] = True  # see base.Transform

    def __call__(self, doc: Document, ctx: Context) -> Document:
        new_json = copy.deepcopy(doc.json)
        unknown = unknown_extensions(new_json)
        if unknown:
            ctx.logger.info("instance: left unchanged: the extensions %s may refer to nodes "
                            "by index", ", ".join(unknown))
            return Document(new_json, doc.bin, doc.source)
        if (set(new_json.get("extensionsUsed", [])) & OPAQUE_BUFFER_EXTENSIONS
                or len(new_json.get("buffers", [])) > 1):
            ctx.logger.info("instance: left unchanged: the buffers are compressed")
            return Document(new_json, doc.bin, doc.source)
        groups = _groups(new_json, max(2, self.min_instances))
        ctx.add("instance.groups", len(groups))
        replaced = sum(len(g) for g, _ in groups)
        ctx.add("instance.nodes_replaced", replaced)
        if not groups:
            return Document(new_json, doc.bin, doc.source)
        builder = BufferBuilder(new_json)
        nodes = new_json["nodes"]
        keep = [True] * len(nodes)
        for members, trs in groups:
            nodes[members[0]] = _instancing_node(new_json, builder, nodes, members, trs)
            for i in members[1:]:
                keep[i] = False
        remove_nodes(new_json, keep)
        used = new_json.setdefault("extensionsUsed", [])
        if EXTENSION not in used:
            used.append(EXTENSION)
        return _append(doc, new_json, builder.payloads)


def _append(doc: Document, new_json: dict, payloads: dict[int, bytes]) -> Document:
    """Add the new views after the existing bytes: the rest of the layout stays as it was
    (a full repack would only shuffle it)."""
    out = ChunkWriter(doc.bin)
    for index in sorted(payloads):
        offset = out.append(payloads[index])
        new_json["bufferViews"][index].update({"buffer": 0, "byteOffset": offset})
    return Document(new_json, out.bytes(), doc.source)


Trs = tuple[np.ndarray, np.ndarray, np.ndarray]  # translation, rotation (xyzw), scale


def node_trs(node: dict) -> Trs | None:
    """A node's local transform as translation, unit quaternion (x, y, z, w) and scale, or
    None when its matrix is not a TRS (shear, projection, zero scale)."""
    if "matrix" not in node:
        t = np.array(node.get("translation", [0.0, 0.0, 0.0]), dtype=np.float64)
        r = np.array(node.get("rotation", [0.0, 0.0, 0.0, 1.0]), dtype=np.float64)
        s = np.array(node.get("scale", [1.0, 1.0, 1.0]), dtype=np.float64)
        norm = np.linalg.norm(r)
        return (t, r / norm, s) if norm > 0 else None
    m = np.array(node["matrix"], dtype=np.float64).reshape(4, 4).T  # glTF is column-major
    if not np.allclose(m[3], [0, 0, 0, 1]):
        return None
    linear = m[:3, :3]
    s = np.linalg.norm(linear, axis=0)
    if np.any(s <= 1e-12):
        return None
    rot = linear / s
    if np.linalg.det(rot) < 0:  # a mirror: carry it in the first scale component
        s[0], rot[:, 0] = -s[0], -rot[:, 0]
    if not np.allclose(rot.T @ rot, np.eye(3), atol=1e-5):
        return None  # shear
    q = np.array(geo.quaternion_from_matrix(rot))
    rebuilt = geo.trs_matrix(m[:3, 3].tolist(), q.tolist(), s.tolist())
    if not np.allclose(rebuilt, m, atol=1e-6 * max(1.0, float(np.abs(m).max()))):
        return None
    return m[:3, 3].copy(), q / np.linalg.norm(q), s


def _groups(doc_json: dict, minimum: int) -> list[tuple[list[int], list[Trs]]]:
    """Runs of foldable sibling nodes per (parent, mesh), in sibling order."""
    nodes = doc_json.get("nodes", [])
    pinned = pinned_nodes(doc_json)
    root_count = root_counts(doc_json)
    groups: list[tuple[list[int], list[Trs]]] = []
    for siblings in sibling_lists(doc_json):
        by_mesh: dict[int, tuple[list[int], list[Trs]]] = {}
        for i in siblings:
            node = nodes[i]
            if ("mesh" not in node or set(node) - _FOLDABLE_KEYS or i in pinned
                    or root_count[i] > 1):
                continue
            trs = node_trs(node)
            if trs is None:
                continue
            members, transforms = by_mesh.setdefault(node["mesh"], ([], []))
            members.append(i)
            transforms.append(trs)
        groups.extend(g for g in by_mesh.values() if len(g[0]) >= minimum)
    groups.sort(key=lambda g: g[0][0])
    return groups


def _instancing_node(doc_json: dict, builder: BufferBuilder, nodes: list[dict],
                     members: list[int], trs: list[Trs]) -> dict:
    t = np.array([x[0] for x in trs], dtype=np.float32)
    r = np.array([x[1] for x in trs], dtype=np.float32)
    s = np.array([x[2] for x in trs], dtype=np.float32)
    attributes: dict[str, int] = {}
    # Only what differs from the identity is stored (at least one attribute is required).
    if np.any(t != 0) or (not np.any(r[:, :3] != 0) and not np.any(s != 1)):
        attributes["TRANSLATION"] = builder.add_accessor(doc_json, t, target=None)
    if np.any(r[:, :3] != 0):
        attributes["ROTATION"] = builder.add_accessor(doc_json, r, target=None)
    if np.any(s != 1):
        attributes["SCALE"] = builder.add_accessor(doc_json, s, target=None)
    names = [nodes[i].get("name") for i in members]
    node: dict = {}
    if names[0] is not None:
        node["name"] = names[0]
    node["mesh"] = nodes[members[0]]["mesh"]
    node["extensions"] = {EXTENSION: {"attributes": attributes}}
    if any(n is not None for n in names):
        node["extras"] = {"instance_names": names}
    return node
