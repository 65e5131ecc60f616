"""Join folds unnamed sibling parts into one node and one draw per material, and leaves
what creators named, animated or share alone."""

from __future__ import annotations

import numpy as np
import pytest
from support import node_validator_available, require

from tourserver.gltf.document import Document, parse_glb, write_glb
from tourserver.gltf.scene import local_matrix
from tourserver.pipeline.base import run
from tourserver.pipeline.join import Join


def _box(offset: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """An open box (5 quads) with normals: positions, normals, indices."""
    p = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0],
                  [0, 0, 1], [1, 0, 1], [1, 1, 1], [0, 1, 1]], np.float32) + offset
    quads = [(0, 3, 2, 1), (4, 5, 6, 7), (0, 1, 5, 4), (1, 2, 6, 5), (2, 3, 7, 6)]
    positions, normals, indices = [], [], []
    for quad in quads:
        corners = p[list(quad)]
        n = np.cross(corners[1] - corners[0], corners[2] - corners[0])
        n /= np.linalg.norm(n)
        base = len(positions)
        positions.extend(corners)
        normals.extend([n] * 4)
        indices.extend([base, base + 1, base + 2, base, base + 2, base + 3])
    return (np.array(positions, np.float32), np.array(normals, np.float32),
            np.array(indices, np.uint16))


def _doc() -> Document:
    """A parent with seven children, each drawing a mesh of its own: four unnamed parts
    (one mirrored, two with the second material), a named one, an animated one and
    two that share one mesh."""
    chunks: list[bytes] = []
    views: list[dict] = []
    accessors: list[dict] = []

    def add(array: np.ndarray, kind: str, component: int, target: int | None) -> int:
        offset = sum(len(c) for c in chunks)
        data = array.tobytes()
        views.append({"buffer": 0, "byteOffset": offset, "byteLength": len(data)})
        if target is not None:
            views[-1]["target"] = target
        chunks.append(data + b"\0" * (-len(data) % 4))
        acc = {"bufferView": len(views) - 1, "componentType": component,
               "count": len(array), "type": kind}
        if kind == "VEC3" and target == 34962 and len(accessors) % 3 == 0:
            acc["min"] = array.min(axis=0).tolist()
            acc["max"] = array.max(axis=0).tolist()
        accessors.append(acc)
        return len(accessors) - 1

    meshes = []
    for k in range(8):
        positions, normals, indices = _box(float(k))
        prim = {"attributes": {"POSITION": add(positions, "VEC3", 5126, 34962),
                               "NORMAL": add(normals, "VEC3", 5126, 34962)},
                "indices": add(indices, "SCALAR", 5123, 34963), "material": k % 2}
        meshes.append({"primitives": [prim]})
    children = [
        {"mesh": 0, "translation": [0, 2, 0]},
        {"mesh": 1, "rotation": [0, 0.7071068, 0, 0.7071068]},
        {"mesh": 2, "scale": [-1, 1, 1]},  # a mirror
        {"mesh": 3, "translation": [5, 0, 0], "scale": [2, 2, 2]},
        {"mesh": 4, "name": "ticket booth"},
        {"mesh": 5},  # animated below
        {"mesh": 6}, {"mesh": 6},  # one shared mesh: left to instancing
    ]
    nodes = [{"name": "street", "children": list(range(1, 1 + len(children))),
              "translation": [10, 0, 0]}, *children]
    time = add(np.array([0, 1], np.float32), "SCALAR", 5126, None)
    accessors[time]["min"], accessors[time]["max"] = [0], [1]
    moves = add(np.array([[0, 0, 0], [0, 1, 0]], np.float32), "VEC3", 5126, None)
    doc_json = {
        "asset": {"version": "2.0"}, "scene": 0, "scenes": [{"nodes": [0]}], "nodes": nodes,
        "meshes": meshes, "materials": [{"name": "stone"}, {"name": "glass"}],
        "animations": [{"samplers": [{"input": time, "output": moves}],
                        "channels": [{"sampler": 0, "target": {"node": 6,
                                                               "path": "translation"}}]}],
        "accessors": accessors, "bufferViews": views,
        "buffers": [{"byteLength": sum(len(c) for c in chunks)}],
    }
    return parse_glb(write_glb(Document(doc_json, b"".join(chunks), "parts.glb")))


def _world_triangles(doc: Document) -> dict[int | None, np.ndarray]:
    """Per material, every drawn triangle in world space, each starting at its smallest
    corner with its winding kept, sorted: equal for documents that draw the same."""
    j = doc.json
    found: dict[int | None, list] = {}

    def walk(index: int, parent: np.ndarray) -> None:
        node = j["nodes"][index]
        world = parent @ local_matrix(node)
        if "mesh" in node:
            for prim in j["meshes"][node["mesh"]]["primitives"]:
                p = doc.read_accessor(prim["attributes"]["POSITION"]).astype(np.float64)
                p = p @ world[:3, :3].T + world[:3, 3]
                tri = p[doc.read_accessor(prim["indices"]).reshape(-1, 3)]
                if np.linalg.det(world[:3, :3]) < 0:
                    tri = tri[:, ::-1]  # a mirrored node draws its faces the other way
                found.setdefault(prim.get("material"), []).extend(tri)
        for child in node.get("children", []):
            walk(child, world)

    for root in j["scenes"][0]["nodes"]:
        walk(root, np.eye(4))
    out = {}
    for material, tris in found.items():
        canonical = []
        for t in np.round(np.array(tris), 5):
            start = min(range(3), key=lambda k: tuple(t[k]))
            canonical.append(np.roll(t, -start, axis=0).reshape(-1))
        out[material] = np.array(sorted(map(tuple, canonical)))
    return out


def test_unnamed_parts_become_one_draw_per_material_and_draw_the_same():
    src = _doc()
    out, ctx = run(src, Join())
    parent = out.json["nodes"][0]
    assert len(parent["children"]) == 5  # 4 parts -> 1, named, animated, 2 sharing
    joined = out.json["nodes"][parent["children"][0]]
    assert "name" not in joined and "extras" not in joined
    assert len(out.json["meshes"][joined["mesh"]]["primitives"]) == 2  # two materials
    assert ctx.facts["join.nodes"] == 4
    before, after = _world_triangles(src), _world_triangles(out)
    assert before.keys() == after.keys()
    for material in before:
        assert np.allclose(before[material], after[material], atol=1e-4)
    names = [n.get("name") for n in out.json["nodes"]]
    assert "ticket booth" in names and "street" in names
    # The animation still moves the same part.
    target = out.json["animations"][0]["channels"][0]["target"]["node"]
    assert out.json["nodes"][target]["mesh"] == src.json["nodes"][6]["mesh"]


def test_normals_follow_the_parts():
    out, _ = run(_doc(), Join())
    joined = out.json["nodes"][out.json["nodes"][0]["children"][0]]
    for prim in out.json["meshes"][joined["mesh"]]["primitives"]:
        p = out.read_accessor(prim["attributes"]["POSITION"])
        n = out.read_accessor(prim["attributes"]["NORMAL"])
        tri = out.read_accessor(prim["indices"]).reshape(-1, 3)
        face = np.cross(p[tri[:, 1]] - p[tri[:, 0]], p[tri[:, 2]] - p[tri[:, 0]])
        face /= np.linalg.norm(face, axis=1, keepdims=True)
        assert np.allclose(np.linalg.norm(n, axis=1), 1, atol=1e-5)
        # Each face's winding agrees with its vertices' normals (mirror included).
        assert (np.einsum("ij,ij->i", face, n[tri[:, 0]]) > 0.99).all()


def test_all_joins_named_parts_and_keeps_their_names_in_extras():
    out, ctx = run(_doc(), Join(names="all"))
    joined = out.json["nodes"][out.json["nodes"][0]["children"][0]]
    assert joined["extras"]["joined_names"] == [None, None, None, None, "ticket booth"]
    assert ctx.facts["join.nodes"] == 5


def test_none_joins_nothing():
    src = _doc()
    out, _ = run(src, Join(names="none"))
    assert out.json["nodes"] == src.json["nodes"]


def test_the_joined_file_validates(tmp_path):
    require(node_validator_available(), "node + npm gltf-validator")
    from tourserver.ingest.validator import validate_file

    out, _ = run(_doc(), Join())
    path = tmp_path / "joined.glb"
    path.write_bytes(write_glb(out))
    report = validate_file(path)
    assert report.errors == 0, report.messages[:5]


def test_a_bad_mode_is_refused():
    with pytest.raises(ValueError, match="unnamed, all, none"):
        Join(names="some")
