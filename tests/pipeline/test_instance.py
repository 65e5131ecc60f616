"""Instance: repeated sibling nodes become one EXT_mesh_gpu_instancing node, drawn the same."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import trimesh.transformations as tf
from support import corpus_file, node_validator_available, require

from tourserver.gltf.buffers import BufferBuilder, repack
from tourserver.gltf.document import Document, write_glb
from tourserver.ingest.loaders import load_asset
from tourserver.ingest.validator import validate_file
from tourserver.pipeline.base import Context, run
from tourserver.pipeline.instance import Instance, node_trs

EXT = "EXT_mesh_gpu_instancing"


def local_matrix(node: dict) -> np.ndarray:
    if "matrix" in node:
        return np.array(node["matrix"], dtype=np.float64).reshape(4, 4).T
    x, y, z, w = node.get("rotation", [0, 0, 0, 1])
    return (tf.translation_matrix(node.get("translation", [0, 0, 0]))
            @ tf.quaternion_matrix([w, x, y, z]) @ np.diag([*node.get("scale", [1, 1, 1]), 1]))


def drawn(doc: Document) -> list[tuple[int, np.ndarray]]:
    """Every (mesh, world matrix) the default scene draws, instances expanded, sorted."""
    j = doc.json
    out: list[tuple[int, np.ndarray]] = []

    def visit(i: int, parent: np.ndarray) -> None:
        node = j["nodes"][i]
        world = parent @ local_matrix(node)
        if "mesh" in node:
            inst = node.get("extensions", {}).get(EXT)
            if inst is None:
                out.append((node["mesh"], world))
            else:
                attrs = inst["attributes"]
                count = j["accessors"][next(iter(attrs.values()))]["count"]
                t = doc.read_accessor(attrs["TRANSLATION"]) if "TRANSLATION" in attrs else \
                    np.zeros((count, 3))
                r = doc.read_accessor(attrs["ROTATION"]) if "ROTATION" in attrs else \
                    np.tile([0, 0, 0, 1.0], (count, 1))
                s = doc.read_accessor(attrs["SCALE"]) if "SCALE" in attrs else np.ones((count, 3))
                for k in range(count):
                    trs = {"translation": t[k].tolist(), "rotation": r[k].tolist(),
                           "scale": s[k].tolist()}
                    out.append((node["mesh"], world @ local_matrix(trs)))
        for c in node.get("children", []):
            visit(c, world)

    for root in j["scenes"][j.get("scene", 0)]["nodes"]:
        visit(root, np.eye(4))
    return sorted(out, key=lambda x: (x[0], *np.round(x[1], 4).reshape(-1)))


def same_drawing(a: Document, b: Document) -> bool:
    da, db = drawn(a), drawn(b)
    return len(da) == len(db) and all(
        ma == mb and np.allclose(xa, xb, atol=1e-5)
        for (ma, xa), (mb, xb) in zip(da, db, strict=True))


def validator_errors(doc: Document, path) -> int:
    require(node_validator_available(), "node + npm gltf-validator")
    path.write_bytes(write_glb(doc))
    return validate_file(path).errors


def street(lamps: int = 6, as_roots: bool = False, matrices: bool = False) -> Document:
    """A street node with `lamps` lamp nodes sharing one mesh, and a sign with its own."""
    rng = np.random.default_rng(5)
    j: dict = {"asset": {"version": "2.0"}, "scene": 0, "scenes": [{"nodes": [0]}],
               "nodes": [{"name": "street", "children": [], "extras": {"district": "Yuzhong"}}],
               "meshes": [], "materials": [{"name": "glow", "emissiveFactor": [1, 0.8, 0.5]}]}
    builder = BufferBuilder(j)
    tri = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], dtype=np.float32)
    for _ in range(2):
        j["meshes"].append({"primitives": [{"attributes": {"POSITION": builder.add_accessor(
            j, tri, target=34962, with_bounds=True)}, "material": 0}]})
    j["nodes"].append({"name": "sign", "mesh": 1, "translation": [0, 3, 0]})
    j["nodes"][0]["children"].append(1)
    for k in range(lamps):
        angle = rng.uniform(0, np.pi)
        q = tf.quaternion_about_axis(angle, [0, 1, 0])  # w, x, y, z
        node: dict = {"name": f"lamp {k}", "mesh": 0}
        trs = {"translation": [4.0 * k, 0.0, float(rng.uniform(-1, 1))],
               "rotation": [q[1], q[2], q[3], q[0]], "scale": [1.0, 1.0 + 0.1 * k, 1.0]}
        if matrices:
            node["matrix"] = local_matrix(trs).T.reshape(-1).tolist()
        else:
            node.update(trs)
        j["nodes"].append(node)
        (j["scenes"][0]["nodes"] if as_roots else j["nodes"][0]["children"]).append(
            len(j["nodes"]) - 1)
    return repack(Document(j), j, builder.payloads)


def test_lamps_become_one_instanced_node(tmp_path):
    doc = street(6)
    out, ctx = run(doc, Instance())
    assert ctx.facts["instance.nodes_replaced"] == 6
    assert ctx.facts["instance.groups"] == 1
    nodes = out.json["nodes"]
    assert len(nodes) == len(doc.json["nodes"]) - 5
    inst = [n for n in nodes if EXT in n.get("extensions", {})]
    assert len(inst) == 1
    assert inst[0]["extras"]["instance_names"] == [f"lamp {k}" for k in range(6)]
    assert inst[0]["name"] == "lamp 0"
    assert set(inst[0]["extensions"][EXT]["attributes"]) == {"TRANSLATION", "ROTATION", "SCALE"}
    for a in inst[0]["extensions"][EXT]["attributes"].values():
        assert out.json["accessors"][a]["componentType"] == 5126
    assert EXT in out.json["extensionsUsed"]
    assert EXT not in out.json.get("extensionsRequired", [])
    street_node = nodes[0]
    assert street_node["name"] == "street" and street_node["extras"] == {"district": "Yuzhong"}
    assert [nodes[c]["name"] for c in street_node["children"]] == ["sign", "lamp 0"]
    assert same_drawing(doc, out)
    assert validator_errors(out, tmp_path / "out.glb") == 0


def test_matrix_nodes_are_decomposed_and_save_bytes(tmp_path):
    doc = street(12, matrices=True)
    out, ctx = run(doc, Instance())
    assert ctx.facts["instance.nodes_replaced"] == 12
    assert same_drawing(doc, out)
    assert len(write_glb(out)) < len(write_glb(doc))
    assert validator_errors(out, tmp_path / "out.glb") == 0


def test_scene_roots_are_grouped_too(tmp_path):
    doc = street(5, as_roots=True)
    out, ctx = run(doc, Instance())
    assert ctx.facts["instance.nodes_replaced"] == 5
    assert same_drawing(doc, out)
    roots = out.json["scenes"][0]["nodes"]
    assert [out.json["nodes"][r]["name"] for r in roots] == ["street", "lamp 0"]
    assert validator_errors(out, tmp_path / "out.glb") == 0


def test_fewer_than_min_instances_is_left_alone():
    doc = street(3)
    out, ctx = run(doc, Instance())
    assert ctx.facts["instance.nodes_replaced"] == 0
    assert out.json == doc.json and out.bin == doc.bin
    out, ctx = run(doc, Instance(min_instances=3))
    assert ctx.facts["instance.nodes_replaced"] == 3


def test_nodes_with_their_own_data_are_not_folded(tmp_path):
    """Animated, extras-carrying, parent and sheared nodes keep their own node."""
    doc = street(8)
    j = copy.deepcopy(doc.json)
    lamps = [i for i, n in enumerate(j["nodes"]) if n.get("name", "").startswith("lamp")]
    j["nodes"][lamps[1]]["extras"] = {"bulb": "sodium"}
    j["nodes"].append({"name": "bulb"})
    j["nodes"][lamps[2]]["children"] = [len(j["nodes"]) - 1]
    sheared = np.eye(4)
    sheared[0, 1] = 0.5
    j["nodes"][lamps[3]] = {"name": "lamp 3", "mesh": 0,
                            "matrix": sheared.T.reshape(-1).tolist()}
    builder = BufferBuilder(j)
    times = builder.add_accessor(j, np.array([0.0, 1.0], dtype=np.float32), target=None,
                                 with_bounds=True)
    values = builder.add_accessor(j, np.array([[0, 0, 0], [0, 1, 0]], dtype=np.float32),
                                  target=None)
    j["animations"] = [{"name": "sway", "samplers": [{"input": times, "output": values}],
                        "channels": [{"sampler": 0, "target": {"node": lamps[0],
                                                               "path": "translation"}}]}]
    dirty = repack(doc, j, builder.payloads)
    out, ctx = run(dirty, Instance())
    assert ctx.facts["instance.nodes_replaced"] == 4  # lamps 4..7
    names = [n.get("name") for n in out.json["nodes"]]
    for kept in ("lamp 0", "lamp 1", "lamp 2", "lamp 3", "bulb"):
        assert kept in names
    target = out.json["animations"][0]["channels"][0]["target"]["node"]
    assert out.json["nodes"][target]["name"] == "lamp 0"
    bulb_parent = next(n for n in out.json["nodes"] if n.get("children") and
                       any(out.json["nodes"][c].get("name") == "bulb" for c in n["children"]))
    assert bulb_parent["name"] == "lamp 2"
    assert same_drawing(dirty, out)
    # glTF itself forbids the sheared matrix (NODE_MATRIX_NON_TRS): that one error stays.
    assert validator_errors(out, tmp_path / "out.glb") == validator_errors(
        dirty, tmp_path / "in.glb") == 1


def test_node_trs_round_trips_matrices():
    q = tf.quaternion_about_axis(0.7, [1, 2, 3])
    trs = {"translation": [1.0, -2.0, 3.0], "rotation": [q[1], q[2], q[3], q[0]],
           "scale": [2.0, 0.5, -1.0]}
    m = local_matrix(trs)
    t, r, s = node_trs({"matrix": m.T.reshape(-1).tolist()})
    rebuilt = local_matrix({"translation": t.tolist(), "rotation": r.tolist(),
                            "scale": s.tolist()})
    assert np.allclose(rebuilt, m, atol=1e-9)
    shear = np.eye(4)
    shear[0, 2] = 1.0
    assert node_trs({"matrix": shear.T.reshape(-1).tolist()}) is None


def test_input_not_mutated_and_deterministic():
    doc = street(6)
    before = copy.deepcopy(doc.json)
    a = Instance()(doc, Context())
    b = Instance()(doc, Context())
    assert doc.json == before
    assert write_glb(a) == write_glb(b)


@pytest.mark.parametrize("rel", ["Fox/Fox.glb", "TextureTransformTest/TextureTransformTest.gltf",
                                 "ClearCoatTest/ClearCoatTest.gltf",
                                 "PointCloudHouse/PropertyAttributesPointCloudHouse.gltf"])
def test_corpus_models_without_repeats_are_unchanged(rel):
    """No model here has four sibling copies of a mesh (Fox's nodes are joints)."""
    doc = load_asset(corpus_file(rel))
    out, ctx = run(doc, Instance())
    assert ctx.facts["instance.nodes_replaced"] == 0
    assert out.json == doc.json and out.bin == doc.bin
