"""Join: fold sibling leaf nodes with meshes of their own into one node and one mesh, one
primitive per material, so a scene of many small parts costs a few draw calls.

Why: CAD and scan exports often arrive as hundreds of small unnamed parts, one node and one
mesh each (bolts, window frames, façade panels): a draw call each on the phone, where a
few hundred draws already cost frames. gltfpack joins meshes by default and drops the
nodes' names and hierarchy with them; we keep what creators name.

Which nodes (`names`):
- "unnamed" (the default): sibling leaf nodes (children of one node, or roots of one scene)
  with no name, no extras, no extensions, no camera, skin or morph weights, not animated and
  not a skin joint, whose mesh no other node draws (a shared mesh is left to instancing,
  which keeps it stored once) and has no morph targets. Their transforms are baked into the
  joined vertices, relative to the shared parent, so the scene draws exactly as before.
- "all": named nodes too; their names are moved, in order, to the joined node's
  `extras.joined_names` (a viewer can no longer find them as nodes: say so to the creator).
- "none": nothing is joined.

Primitives are grouped by material and vertex layout (attribute names, types and component
types). POSITION, NORMAL and TANGENT must be float (the transform runs before quantize);
normals use the inverse transpose, and mirrored parts get their triangles' winding flipped
so that faces stay front-facing. Facts: `join.nodes` (nodes folded), `join.groups`.
"""

from __future__ import annotations

import copy
from collections import Counter
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from tourserver.gltf.buffers import BufferBuilder
from tourserver.gltf.document import MODE_TRIANGLES, Document
from tourserver.gltf.nodes import pinned_nodes, remove_nodes, root_counts, sibling_lists
from tourserver.gltf.primitives import (
    FLOAT,
    add_index_accessor,
    add_vertex_accessor,
    as_rows,
    document_skip_reason,
    finish,
    read_indices,
    skip_reason,
)
from tourserver.gltf.refs import unknown_extensions
from tourserver.gltf.scene import local_matrix
from tourserver.pipeline.base import Context

MODES = ("unnamed", "all", "none")
_JOINABLE_KEYS = {"mesh", "matrix", "translation", "rotation", "scale"}
_TRANSFORMED = ("POSITION", "NORMAL", "TANGENT")


@dataclass(frozen=True)
class Join:
    names: str = "unnamed"  # which nodes may be joined: unnamed | all | none
    min_nodes: int = 2
    name: str = "join"
    keeps_images: ClassVar[bool] = True  # see base.Transform

    def __post_init__(self) -> None:
        if self.names not in MODES:
            raise ValueError(f"join: names must be one of {', '.join(MODES)}")

    def __call__(self, doc: Document, ctx: Context) -> Document:
        new_json = copy.deepcopy(doc.json)
        ctx.add("join.nodes", 0)
        if self.names == "none":
            return Document(new_json, doc.bin, doc.source)
        reason = document_skip_reason(new_json) or (
            "the extensions " + ", ".join(unknown_extensions(new_json)) + " may refer to "
            "nodes by index" if unknown_extensions(new_json) else None)
        if reason:
            ctx.logger.info("join: left unchanged: %s", reason)
            return Document(new_json, doc.bin, doc.source)
        runs = _runs(new_json, self.names == "all", self.min_nodes)
        if not runs:
            return Document(new_json, doc.bin, doc.source)
        builder = BufferBuilder(new_json)
        keep = [True] * len(new_json["nodes"])
        for members in runs:
            first = members[0]
            mesh = _joined_mesh(doc, new_json, builder, members)
            new_json.setdefault("meshes", []).append(mesh)
            node: dict = {"mesh": len(new_json["meshes"]) - 1}
            names = [new_json["nodes"][i].get("name") for i in members]
            if any(n is not None for n in names):
                node["extras"] = {"joined_names": names}
            new_json["nodes"][first] = node
            for i in members[1:]:
                keep[i] = False
            ctx.add("join.nodes", len(members))
            ctx.add("join.groups", 1)
        remove_nodes(new_json, keep)
        return finish(doc, new_json, builder)


def _runs(doc_json: dict, named: bool, minimum: int) -> list[list[int]]:
    """Joinable nodes per sibling list, in sibling order."""
    nodes = doc_json.get("nodes", [])
    meshes = doc_json.get("meshes", [])
    pinned = pinned_nodes(doc_json)
    roots = root_counts(doc_json)
    drawn = Counter(node["mesh"] for node in nodes if "mesh" in node)
    allowed = _JOINABLE_KEYS | ({"name"} if named else set())
    runs = []
    for siblings in sibling_lists(doc_json):
        members = []
        for i in siblings:
            node = nodes[i]
            if ("mesh" not in node or set(node) - allowed or i in pinned or roots[i] > 1
                    or drawn[node["mesh"]] > 1):
                continue
            mesh = meshes[node["mesh"]]
            if set(mesh) - {"primitives"} or not all(
                    _joinable(doc_json, prim) for prim in mesh.get("primitives", [])):
                continue  # a named mesh, extras, morph weights, or primitives we cannot join
            members.append(i)
        if len(members) >= minimum:
            runs.append(members)
    return runs


def _joinable(doc_json: dict, prim: dict) -> bool:
    if skip_reason(doc_json, prim) or prim.get("targets") or set(prim) - {
            "attributes", "indices", "material", "mode"}:
        return False
    accessors = doc_json["accessors"]
    return all(accessors[prim["attributes"][a]]["componentType"] == FLOAT
               for a in _TRANSFORMED if a in prim["attributes"])


def _layout(doc_json: dict, prim: dict) -> tuple:
    accessors = doc_json["accessors"]
    return (prim.get("material"), prim.get("mode", MODE_TRIANGLES), tuple(sorted(
        (name, accessors[a]["type"], accessors[a]["componentType"],
         bool(accessors[a].get("normalized"))) for name, a in prim["attributes"].items())))


def _joined_mesh(doc: Document, doc_json: dict, builder: BufferBuilder,
                 members: list[int]) -> dict:
    """One primitive per material and layout, holding every member's triangles with its
    transform baked in (relative to the members' shared parent)."""
    groups: dict[tuple, list[tuple[dict, np.ndarray]]] = {}
    for i in members:
        node = doc_json["nodes"][i]
        matrix = local_matrix(node)
        for prim in doc_json["meshes"][node["mesh"]]["primitives"]:
            groups.setdefault(_layout(doc_json, prim), []).append((prim, matrix))
    primitives = []
    for key, parts in groups.items():
        template = parts[0][0]
        attributes: dict[str, list[np.ndarray]] = {name: [] for name in template["attributes"]}
        indices: list[np.ndarray] = []
        offset = 0
        for prim, matrix in parts:
            count = doc_json["accessors"][prim["attributes"]["POSITION"]]["count"]
            for name, a in prim["attributes"].items():
                attributes[name].append(_transformed(name, doc.read_accessor(a), matrix))
            tri = read_indices(doc, prim, count).reshape(-1, 3).astype(np.uint32)
            if np.linalg.det(matrix[:3, :3]) < 0:
                tri = tri[:, ::-1]  # a mirror turns faces around: keep them front-facing
            indices.append(tri.reshape(-1) + offset)
            offset += count
        new: dict = {"attributes": {}}
        for name, arrays in attributes.items():
            data = np.concatenate(arrays)
            old = doc_json["accessors"][template["attributes"][name]]
            new["attributes"][name] = add_vertex_accessor(
                doc_json, builder, old, as_rows(data.astype(data.dtype.newbyteorder("<"))),
                bounds=name == "POSITION")
        new["indices"] = add_index_accessor(doc_json, builder, np.concatenate(indices),
                                            offset)
        if key[0] is not None:
            new["material"] = key[0]
        if key[1] != MODE_TRIANGLES:
            new["mode"] = key[1]
        primitives.append(new)
    return {"primitives": primitives}


def _transformed(name: str, data: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """A vertex attribute in the parent's space: positions by the matrix, normals by its
    inverse transpose (renormalised), tangents' xyz by its linear part (w kept, flipped by
    a mirror); anything else as it is."""
    if name not in _TRANSFORMED:
        return data
    linear = matrix[:3, :3]
    values = data.astype(np.float64)
    if name == "POSITION":
        return (values @ linear.T + matrix[:3, 3]).astype(np.float32)
    if name == "NORMAL":
        moved = values @ np.linalg.inv(linear)
    else:
        moved = values[:, :3] @ linear.T
    length = np.linalg.norm(moved, axis=1, keepdims=True)
    moved = moved / np.where(length > 0, length, 1.0)
    if name == "TANGENT":
        w = values[:, 3:4] * (-1.0 if np.linalg.det(linear) < 0 else 1.0)
        moved = np.hstack([moved, w])
    return moved.astype(np.float32)


__all__ = ["Join", "MODES"]
