"""Quantize: KHR_mesh_quantization output that validates, keeps features, and stays within
the position error it reports (checked on the data, through the node transforms)."""

from __future__ import annotations

import copy
import io
import json

import numpy as np
import pytest
from PIL import Image
from support import corpus_file, node_validator_available, require

from tourserver.gltf.buffers import BufferBuilder
from tourserver.gltf.document import Document, write_glb
from tourserver.gltf.scene import local_matrix
from tourserver.ingest.loaders import load_asset
from tourserver.pipeline.base import Context, run
from tourserver.pipeline.quantize import Quantize


def validate(doc: Document, tmp_path, name: str = "out.glb"):
    from tourserver.ingest.validator import validate_file

    require(node_validator_available(), "node + npm gltf-validator")
    path = tmp_path / name
    path.write_bytes(write_glb(doc))
    return validate_file(path)


def world_matrices(doc_json: dict) -> dict[int, np.ndarray]:
    nodes = doc_json.get("nodes", [])
    parent = {c: i for i, n in enumerate(nodes) for c in n.get("children", [])}
    out: dict[int, np.ndarray] = {}

    def world(i: int) -> np.ndarray:
        if i not in out:
            local = local_matrix(nodes[i])
            out[i] = world(parent[i]) @ local if i in parent else local
        return out[i]

    for i in range(len(nodes)):
        world(i)
    return out


def apply(m: np.ndarray, p: np.ndarray) -> np.ndarray:
    return p @ m[:3, :3].T + m[:3, 3]


def mesh_to_input_space(before: Document, after: Document, mesh: int) -> list[np.ndarray]:
    """For each node drawing `mesh`, the matrix taking the output's stored positions to the
    input's mesh space (through node transforms, or inverse bind matrices when skinned)."""
    out = []
    w_in, w_out = world_matrices(before.json), world_matrices(after.json)
    for n, node in enumerate(before.json["nodes"]):
        if node.get("mesh") != mesh:
            continue
        if "skin" in node:
            skin_in = before.json["skins"][node["skin"]]
            skin_out = after.json["skins"][after.json["nodes"][n]["skin"]]
            ibm_in = before.read_accessor(skin_in["inverseBindMatrices"]).reshape(-1, 4, 4)
            ibm_out = after.read_accessor(skin_out["inverseBindMatrices"]).reshape(-1, 4, 4)
            for a, b in zip(ibm_in, ibm_out, strict=True):
                out.append(np.linalg.inv(a.T.astype(np.float64)) @ b.T.astype(np.float64))
            continue
        # The mesh may now hang from a new child node of n.
        holders = [c for c in [n] + after.json["nodes"][n].get("children", [])
                   if after.json["nodes"][c].get("mesh") == mesh]
        assert holders, f"node {n} lost mesh {mesh}"
        out.append(np.linalg.inv(w_in[n]) @ w_out[holders[0]])
    return out


def check_positions(before: Document, after: Document, bound: float) -> None:
    checked = 0
    for m, (mesh_in, mesh_out) in enumerate(zip(before.json["meshes"], after.json["meshes"],
                                                     strict=True)):
        for p_in, p_out in zip(mesh_in["primitives"], mesh_out["primitives"], strict=True):
            original = before.read_accessor(p_in["attributes"]["POSITION"]).astype(np.float64)
            stored = after.read_accessor(p_out["attributes"]["POSITION"]).astype(np.float64)
            for to_input in mesh_to_input_space(before, after, m):
                error = np.linalg.norm(apply(to_input, stored) - original, axis=1).max()
                # float32 node transforms add rounding well below the quantization step
                assert error <= bound * 1.001 + 1e-6 * np.abs(original).max(), (m, error)
                checked += 1
    assert checked


def extent(doc: Document) -> float:
    pts = np.concatenate([doc.read_accessor(p["attributes"]["POSITION"])
                          for mesh in doc.json["meshes"] for p in mesh["primitives"]])
    return float((pts.max(axis=0) - pts.min(axis=0)).max())


def tiny_png(size: tuple[int, int] = (4, 4)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(buf, format="PNG")
    return buf.getvalue()


def generated_scene(texture_size: tuple[int, int] = (4, 4)) -> Document:
    """A textured, morphing grid with UVs outside [0, 1], colors and tangents, drawn by a
    node that has a child and an animated translation (so the mesh must move to a new
    child), by a plain node (folded in place), and a line primitive."""
    n = 12
    xs, zs = np.meshgrid(np.linspace(-3.0, 5.0, n), np.linspace(-2.0, 2.0, n))
    pos = np.stack([xs.ravel(), np.sin(xs.ravel()) * 0.3 + 10.0, zs.ravel()], 1)
    pos = pos.astype(np.float32)
    normals = np.tile(np.array([[0.0, 1.0, 0.0]], np.float32), (len(pos), 1))
    tangents = np.tile(np.array([[1.0, 0.0, 0.0, -1.0]], np.float32), (len(pos), 1))
    uv = (pos[:, [0, 2]] * 0.5).astype(np.float32)  # spans [-1.5, 2.5]
    colors = np.clip(np.abs(pos[:, :3]) / 6.0, 0, 1).astype(np.float32)
    faces = []
    for r in range(n - 1):
        for c in range(n - 1):
            i = r * n + c
            faces += [i, i + n, i + 1, i + 1, i + n, i + n + 1]
    indices = np.array(faces, dtype=np.uint16)
    delta = np.zeros_like(pos)
    delta[:, 1] = 0.5
    doc_json: dict = {"asset": {"version": "2.0"}, "scene": 0, "scenes": [{"nodes": [0, 2]}]}
    b = BufferBuilder(doc_json)
    acc = {k: b.add_accessor(doc_json, v, target=34962, with_bounds=(k in ("p", "d")))
           for k, v in (("p", pos), ("n", normals), ("t", tangents), ("uv", uv),
                        ("c", colors), ("d", delta))}
    ind = b.add_accessor(doc_json, indices, target=34963)
    lines = b.add_accessor(doc_json, np.arange(20, dtype=np.uint16), target=34963)
    times = b.add_accessor(doc_json, np.array([0.0, 1.0], np.float32), target=None,
                           with_bounds=True)
    moves = b.add_accessor(doc_json, np.array([[0, 0, 0], [1, 0, 0]], np.float32), target=None)
    weights = b.add_accessor(doc_json, np.array([0.0, 1.0], np.float32), target=None)
    png = b.add_view(tiny_png(texture_size))
    attrs = {"POSITION": acc["p"], "NORMAL": acc["n"], "TANGENT": acc["t"],
             "TEXCOORD_0": acc["uv"], "COLOR_0": acc["c"]}
    doc_json.update({
        "meshes": [{"name": "grid", "weights": [0.0], "primitives": [
            {"attributes": attrs, "indices": ind, "material": 0,
             "targets": [{"POSITION": acc["d"]}]},
            {"attributes": {"POSITION": acc["p"]}, "indices": lines, "mode": 1,
             "targets": [{"POSITION": acc["d"]}]}]}],
        "nodes": [
            {"name": "animated", "mesh": 0, "children": [1], "translation": [1.0, 2.0, 3.0],
             "extras": {"keep": True}},
            {"name": "child", "translation": [0.0, 1.0, 0.0]},
            {"name": "plain", "mesh": 0, "rotation": [0.0, 0.7071068, 0.0, 0.7071068],
             "scale": [2.0, 2.0, 2.0]}],
        "materials": [{"name": "m", "pbrMetallicRoughness": {"baseColorTexture": {
            "index": 0, "extensions": {"KHR_texture_transform": {"offset": [0.25, 0.0]}}}},
            "normalTexture": {"index": 0}}],
        "textures": [{"source": 0}],
        "images": [{"bufferView": png, "mimeType": "image/png"}],
        "animations": [{"name": "go", "samplers": [{"input": times, "output": moves},
                                                    {"input": times, "output": weights}],
                        "channels": [{"sampler": 0, "target": {"node": 0,
                                                               "path": "translation"}},
                                     {"sampler": 1, "target": {"node": 0,
                                                               "path": "weights"}}]}],
        "extensionsUsed": ["KHR_texture_transform"],
    })
    from tourserver.gltf.buffers import repack

    return repack(Document({"asset": {"version": "2.0"}}, b""), doc_json, b.payloads)


def test_generated_scene_validates_and_stays_within_the_reported_bound(tmp_path):
    doc = generated_scene()
    before_json = copy.deepcopy(doc.json)
    before_bytes = write_glb(doc)
    assert validate(doc, tmp_path, "in.glb").errors == 0
    out, ctx = run(doc, Quantize())
    assert doc.json == before_json and write_glb(doc) == before_bytes  # input untouched
    report = validate(out, tmp_path)
    assert report.errors == 0, [m for m in report.messages if m["severity"] == 0]
    assert {"KHR_mesh_quantization"} <= set(out.json["extensionsRequired"])
    assert "KHR_mesh_quantization" in out.json["extensionsUsed"]

    bound = ctx.facts["quantize.position_error"]
    assert 0 < bound < extent(doc) / 2**13
    check_positions(doc, out, bound)

    acc = out.json["accessors"]
    prim = out.json["meshes"][0]["primitives"][0]
    pos = acc[prim["attributes"]["POSITION"]]
    assert pos["componentType"] == 5123 and not pos.get("normalized")
    assert all(isinstance(v, int) for v in pos["min"] + pos["max"])
    assert max(pos["max"]) == 2**14 - 1
    assert acc[prim["attributes"]["NORMAL"]]["componentType"] == 5120
    tangent = out.read_accessor(prim["attributes"]["TANGENT"])
    assert tangent.shape[1] == 4 and (tangent[:, 3] == -127).all()  # w survives
    assert acc[prim["attributes"]["COLOR_0"]]["componentType"] == 5121
    # Morph target deltas share the positions' step: 0.5 in y becomes 0.5 / step.
    step = ctx.facts["quantize.position_step"]
    target = out.read_accessor(prim["targets"][0]["POSITION"]).astype(np.float64)
    assert np.allclose(target[:, 1] * step, 0.5, atol=step)
    for view in out.json["bufferViews"]:
        assert view.get("byteStride", 4) % 4 == 0

    # UVs outside [0, 1] get a transform on every texture info that samples them, composed
    # with the transform that was already there; the dequantized UVs match the input.
    mat = out.json["materials"][0]
    base = mat["pbrMetallicRoughness"]["baseColorTexture"]["extensions"][
        "KHR_texture_transform"]
    normal = mat["normalTexture"]["extensions"]["KHR_texture_transform"]
    uv_in = doc.read_accessor(doc.json["meshes"][0]["primitives"][0]["attributes"]
                              ["TEXCOORD_0"]).astype(np.float64)
    q = out.read_accessor(prim["attributes"]["TEXCOORD_0"]).astype(np.float64) / 65535
    uv_out = q * np.array(normal["scale"]) + np.array(normal["offset"])
    assert np.abs(uv_out - uv_in).max() <= ctx.facts["quantize.texcoord_error"] + 1e-9
    assert ctx.facts["quantize.texcoord_error"] < 4.0 / 2**12
    assert np.allclose(np.array(base["offset"]), np.array(normal["offset"]) + [0.25, 0.0])

    # Features: names, extras, animation (weights retargeted with the mesh), line mode.
    names = [n.get("name") for n in out.json["nodes"]]
    assert {"animated", "child", "plain"} <= set(names)
    assert out.json["nodes"][0]["extras"] == {"keep": True}
    holder = [c for c in out.json["nodes"][0]["children"] if "mesh" in out.json["nodes"][c]]
    assert holder and "mesh" not in out.json["nodes"][0]
    channels = out.json["animations"][0]["channels"]
    assert channels[0]["target"] == {"node": 0, "path": "translation"}
    assert channels[1]["target"] == {"node": holder[0], "path": "weights"}
    assert out.json["meshes"][0]["primitives"][1]["mode"] == 1
    # Deterministic.
    assert write_glb(run(doc, Quantize())[0]) == write_glb(out)


def test_fox_skin_gets_the_dequantization_in_its_inverse_bind_matrices(tmp_path):
    doc = load_asset(corpus_file("Fox/Fox.glb"))
    out, ctx = run(doc, Quantize())
    report = validate(out, tmp_path)
    assert report.errors == 0, [m for m in report.messages if m["severity"] == 0]
    bound = ctx.facts["quantize.position_error"]
    assert 0 < bound < extent(doc) / 2**13
    # The skinned node's own transform is untouched (skinning ignores it) ...
    fox = next(i for i, n in enumerate(doc.json["nodes"]) if n.get("name") == "fox")
    assert {k: v for k, v in out.json["nodes"][fox].items()} == doc.json["nodes"][fox]
    # ... and every joint's IBM' = IBM * D maps stored positions back within the bound.
    check_positions(doc, out, bound)
    prim = out.json["meshes"][0]["primitives"][0]
    acc = out.json["accessors"]
    assert acc[prim["attributes"]["WEIGHTS_0"]]["componentType"] == 5121
    weights = out.read_accessor(prim["attributes"]["WEIGHTS_0"]).astype(int)
    assert (weights.sum(axis=1) == 255).all()
    joints_in = doc.read_accessor(doc.json["meshes"][0]["primitives"][0]["attributes"]
                                  ["JOINTS_0"])
    assert np.array_equal(out.read_accessor(prim["attributes"]["JOINTS_0"]), joints_in)
    assert [a["name"] for a in out.json["animations"]] == \
        [a["name"] for a in doc.json["animations"]]
    assert [n.get("name") for n in out.json["nodes"]] == \
        [n.get("name") for n in doc.json["nodes"]]
    assert len(write_glb(out)) < len(write_glb(doc))


def test_point_cloud_keeps_mode_metadata_and_custom_attributes(tmp_path):
    doc = load_asset(corpus_file("PointCloudHouse/PropertyAttributesPointCloudHouse.gltf"))
    out, ctx = run(doc, Quantize())
    report = validate(out, tmp_path)
    assert report.errors == 0, [m for m in report.messages if m["severity"] == 0]
    prim_in = doc.json["meshes"][0]["primitives"][0]
    prim = out.json["meshes"][0]["primitives"][0]
    assert prim["mode"] == 0
    assert prim["extensions"] == prim_in["extensions"]
    assert out.json["extensions"]["EXT_structural_metadata"] == \
        doc.json["extensions"]["EXT_structural_metadata"]
    for name in ("_INTENSITY", "_CLASSIFICATION"):
        assert np.array_equal(out.read_accessor(prim["attributes"][name]),
                              doc.read_accessor(prim_in["attributes"][name]))
    assert out.json["accessors"][prim["attributes"]["COLOR_0"]]["componentType"] == 5121
    bound = ctx.facts["quantize.position_error"]
    assert 0 < bound < extent(doc) / 2**13
    check_positions(doc, out, bound)


def test_more_bits_give_a_smaller_error():
    doc = generated_scene()
    errors = []
    for bits in (10, 14, 16):
        ctx = Context()
        run(doc, Quantize(position_bits=bits), ctx=ctx)
        errors.append(ctx.facts["quantize.position_error"])
    assert errors[0] > errors[1] > errors[2] > 0


def test_unusable_settings_are_refused():
    with pytest.raises(ValueError):
        Quantize(position_bits=17)


def test_json_stays_serialisable_and_sorted_keys_do_not_matter():
    out, _ = run(generated_scene(), Quantize())
    json.dumps(out.json)  # no numpy scalars leak into the JSON


def two_meshes(scale_b: float = 1.0, instanced: bool = False) -> Document:
    """Mesh 0 (a 10 m box) and mesh 1 (a 2 m box sharing a corner region with it), drawn by
    plain nodes; mesh 1's data is multiplied by `scale_b` (other units) and its node scales
    it back. With `instanced`, mesh 1 is drawn by an EXT_mesh_gpu_instancing node too."""
    rng = np.random.default_rng(7)
    a = (rng.random((200, 3)) * 10.0).astype(np.float32)
    b = (rng.random((100, 3)) * 2.0 + 3.0).astype(np.float32)
    b[:10] = a[:10] = np.float32([3.0, 3.0, 3.0]) + rng.random((10, 3)).astype(np.float32)
    doc_json: dict = {"asset": {"version": "2.0"}, "scene": 0, "scenes": [{"nodes": [0, 1]}]}
    bb = BufferBuilder(doc_json)
    pa = bb.add_accessor(doc_json, a, target=34962, with_bounds=True)
    pb = bb.add_accessor(doc_json, (b * scale_b).astype(np.float32), target=34962,
                         with_bounds=True)
    doc_json["meshes"] = [{"primitives": [{"attributes": {"POSITION": pa}, "mode": 0}]},
                          {"primitives": [{"attributes": {"POSITION": pb}, "mode": 0}]}]
    doc_json["nodes"] = [{"name": "a", "mesh": 0},
                         {"name": "b", "mesh": 1, "scale": [1.0 / scale_b] * 3}]
    if instanced:
        t = bb.add_accessor(doc_json, np.array([[0, 0, 0], [20, 0, 0]], np.float32),
                            target=None)
        r = bb.add_accessor(doc_json, np.array([[0, 0, 0, 1], [0, 0.7071068, 0, 0.7071068]],
                                               np.float32), target=None)
        s = bb.add_accessor(doc_json, np.array([[1, 1, 1], [2, 2, 2]], np.float32),
                            target=None)
        doc_json["nodes"].append({"name": "copies", "mesh": 1, "translation": [0, 5, 0],
                                  "extensions": {"EXT_mesh_gpu_instancing": {"attributes": {
                                      "TRANSLATION": t, "ROTATION": r, "SCALE": s}}}})
        doc_json["scenes"][0]["nodes"].append(2)
        doc_json["extensionsUsed"] = ["EXT_mesh_gpu_instancing"]
    from tourserver.gltf.buffers import repack

    return repack(Document({"asset": {"version": "2.0"}}, b""), doc_json, bb.payloads)


def stored_in_world(doc: Document, node: int) -> np.ndarray:
    """World positions of the node's mesh (following a mesh moved to a child)."""
    w = world_matrices(doc.json)
    holder = node if "mesh" in doc.json["nodes"][node] else next(
        c for c in doc.json["nodes"][node]["children"] if "mesh" in doc.json["nodes"][c])
    mesh = doc.json["meshes"][doc.json["nodes"][holder]["mesh"]]
    pos = doc.read_accessor(mesh["primitives"][0]["attributes"]["POSITION"])
    return apply(w[holder], pos.astype(np.float64))


def test_meshes_share_one_grid_so_a_common_point_lands_in_one_place(tmp_path):
    doc = two_meshes()
    out, ctx = run(doc, Quantize())
    assert validate(out, tmp_path).errors == 0
    assert ctx.facts["quantize.position_grids"] == 1
    # One step for both meshes (gltfpack's scene-wide grid): equal node scales.
    steps = {round(out.json["nodes"][n]["scale"][0], 12) for n in (0, 1)}
    assert len(steps) == 1
    step = ctx.facts["quantize.position_step"]
    assert abs(steps.pop() - step) < 1e-12
    bound = ctx.facts["quantize.position_error"]
    assert 0 < bound < extent(doc) / 2**13
    check_positions(doc, out, bound)
    # The points both meshes hold are quantized to the very same place (no cracks).
    wa, wb = stored_in_world(out, 0)[:10], stored_in_world(out, 1)[:10]
    assert np.abs(wa - wb).max() < 1e-9 * 10
    # Mesh 1 (2 m) stores small numbers from its own corner, on the shared grid.
    acc = out.json["accessors"][out.json["meshes"][1]["primitives"][0]["attributes"]
                                ["POSITION"]]
    assert min(acc["min"]) == 0 and max(acc["max"]) < 2**14 / 4


def test_meshes_in_other_units_get_their_own_grid():
    doc = two_meshes(scale_b=1000.0)  # mesh 1 in millimetres
    out, ctx = run(doc, Quantize())
    assert ctx.facts["quantize.position_grids"] == 2
    # Both meshes are as precise as the scene needs: the reported bound is in scene units
    # (metres), within the 14-bit world grid, and holds for every vertex as drawn.
    world = np.concatenate([stored_in_world(doc, 0), stored_in_world(doc, 1)])
    scene_extent = float((world.max(axis=0) - world.min(axis=0)).max())
    bound = ctx.facts["quantize.position_error"]
    assert bound <= scene_extent / 2**14 * 0.87 + 1e-9
    for node in (0, 1):
        error = np.linalg.norm(stored_in_world(out, node) - stored_in_world(doc, node), axis=1)
        assert error.max() <= bound * 1.001 + 1e-7
    # The 2 m part keeps the precision of its own box: per axis, half of 2 m / 16383.
    small = stored_in_world(doc, 1)
    own_step = float((small.max(axis=0) - small.min(axis=0)).max()) / (2**14 - 1)
    per_axis = np.abs(stored_in_world(out, 1) - small).max()
    assert per_axis <= own_step / 2 * 1.001
    out_one, ctx_one = run(doc, Quantize(max_grid_ratio=1e9))  # forced into one grid
    assert ctx_one.facts["quantize.position_grids"] == 1
    err_a = np.abs(stored_in_world(out_one, 0) - stored_in_world(doc, 0)).max()
    assert err_a > 100 * np.abs(stored_in_world(out, 0) - stored_in_world(doc, 0)).max()


def test_instanced_mesh_is_quantized_through_its_instance_transforms(tmp_path):
    import trimesh.transformations as tf

    doc = two_meshes(instanced=True)
    out, ctx = run(doc, Quantize())
    report = validate(out, tmp_path)
    assert report.errors == 0, [m for m in report.messages if m["severity"] == 0]
    mesh = out.json["meshes"][1]
    assert out.json["accessors"][mesh["primitives"][0]["attributes"]["POSITION"]][
        "componentType"] == 5123

    def instances(d: Document) -> np.ndarray:
        node = d.json["nodes"][2]
        attrs = node["extensions"]["EXT_mesh_gpu_instancing"]["attributes"]
        t, r, s = (d.read_accessor(attrs[k]).astype(np.float64)
                   for k in ("TRANSLATION", "ROTATION", "SCALE"))
        pos = d.read_accessor(d.json["meshes"][1]["primitives"][0]["attributes"]
                              ["POSITION"]).astype(np.float64)
        out_pts = []
        for k in range(len(t)):
            m = (local_matrix(node) @ tf.translation_matrix(t[k])
                 @ tf.quaternion_matrix([r[k][3], *r[k][:3]]) @ np.diag([*s[k], 1.0]))
            out_pts.append(apply(m, pos))
        return np.concatenate(out_pts)

    bound = ctx.facts["quantize.position_error"]
    # Instance scales go up to 2: the world error is at most twice the mesh-space bound.
    assert np.linalg.norm(instances(out) - instances(doc), axis=1).max() <= 2 * bound * 1.001
    assert out.json["nodes"][2]["translation"] == [0, 5, 0]  # the node itself is untouched


def texture_transform(uv: np.ndarray, ext: dict) -> np.ndarray:
    """KHR_texture_transform as the spec's example reads it: T * R * S, R = [[c, s], [-s, c]]
    (offset [0, 1], rotation pi/2, scale 0.5 maps the unit square to the lower-left quarter)."""
    c, s = np.cos(ext.get("rotation", 0.0)), np.sin(ext.get("rotation", 0.0))
    scaled = uv * np.array(ext.get("scale", [1.0, 1.0]))
    turned = np.stack([c * scaled[:, 0] + s * scaled[:, 1],
                       -s * scaled[:, 0] + c * scaled[:, 1]], axis=1)
    return turned + np.array(ext.get("offset", [0.0, 0.0]))


def test_transform_convention_matches_the_spec_example():
    corners = np.array([[0, 0], [1, 0], [0, 1], [1, 1]], np.float64)
    out = texture_transform(corners, {"offset": [0, 1], "rotation": np.pi / 2,
                                      "scale": [0.5, 0.5]})
    assert np.allclose(out.min(axis=0), [0.0, 0.5]) and np.allclose(out.max(axis=0), [0.5, 1])


def test_rotated_texture_transform_keeps_its_rotation_and_the_uvs_land_in_place():
    doc = generated_scene()
    j = copy.deepcopy(doc.json)
    ext = {"offset": [-0.86, 1.13], "rotation": 0.0873, "scale": [3.0, 3.0]}
    j["materials"][0]["pbrMetallicRoughness"]["baseColorTexture"]["extensions"][
        "KHR_texture_transform"] = dict(ext)
    j["materials"][0]["normalTexture"]["extensions"] = {"KHR_texture_transform": dict(ext)}
    doc = Document(j, doc.bin, doc.source)
    out, ctx = run(doc, Quantize())
    prim = out.json["meshes"][0]["primitives"][0]
    acc = out.json["accessors"][prim["attributes"]["TEXCOORD_0"]]
    assert acc["componentType"] == 5123 and acc["normalized"]
    uv_in = doc.read_accessor(j["meshes"][0]["primitives"][0]["attributes"]["TEXCOORD_0"])
    want = texture_transform(uv_in.astype(np.float64), ext)
    q = out.read_accessor(prim["attributes"]["TEXCOORD_0"]).astype(np.float64) / 65535
    mat = out.json["materials"][0]
    for info in (mat["pbrMetallicRoughness"]["baseColorTexture"], mat["normalTexture"]):
        new = info["extensions"]["KHR_texture_transform"]
        assert new["rotation"] == ext["rotation"]
        got = texture_transform(q, new)
        # The UV error is scaled by the transform's own scale (3) on the way.
        assert np.abs(got - want).max() <= 3 * ctx.facts["quantize.texcoord_error"] * 1.5 + 1e-9


def test_uvs_on_a_small_patch_of_a_texture_store_small_numbers():
    """A lightmap-style UV set covering 10 % of the texture is stored on a 1/4095 grid of
    the texture, not with 12 bits over its own patch, at the same bound in texture space."""
    doc = generated_scene()
    j = copy.deepcopy(doc.json)
    uv_index = j["meshes"][0]["primitives"][0]["attributes"]["TEXCOORD_0"]
    uv = doc.read_accessor(uv_index).astype(np.float64)
    patch = 0.2 + (uv - uv.min(axis=0)) / (uv.max(axis=0) - uv.min(axis=0)).max() * 0.1
    b = BufferBuilder(j)
    j["meshes"][0]["primitives"][0]["attributes"]["TEXCOORD_0"] = b.add_accessor(
        j, patch.astype(np.float32), target=34962)
    for info in (j["materials"][0]["pbrMetallicRoughness"]["baseColorTexture"],
                 j["materials"][0]["normalTexture"]):
        info.pop("extensions", None)
    from tourserver.gltf.buffers import repack

    doc = repack(doc, j, b.payloads)
    out, ctx = run(doc, Quantize(texcoord_steps_per_texel=0))  # the texel cap: next test
    prim = out.json["meshes"][0]["primitives"][0]
    q = out.read_accessor(prim["attributes"]["TEXCOORD_0"]).astype(np.int64)
    assert q.max() <= int(np.ceil(0.1 * 4095)) + 1  # ~410 steps, not 4095
    ext = out.json["materials"][0]["normalTexture"]["extensions"]["KHR_texture_transform"]
    got = q / 65535 * np.array(ext["scale"]) + np.array(ext["offset"])
    want = doc.read_accessor(doc.json["meshes"][0]["primitives"][0]["attributes"][
        "TEXCOORD_0"]).astype(np.float64)
    assert np.allclose(want.min(axis=0), 0.2, atol=1e-6)  # the patch, as read back
    assert np.abs(got - want).max() <= 0.5 / 4095 + 1e-6


@pytest.mark.parametrize("texture_size, steps_per_repeat", [
    ((256, 128), (1024, 1024)),  # small: the minimum, not a quarter texel (512 and 1024)
    ((256, 384), (1024, 1536)),  # the minimum across, a quarter texel down
    ((2048, 2048), (8192, 8192)),  # 12 bits (4095 steps) are coarser: they stay
])
def test_uv_steps_are_no_finer_than_a_quarter_texel(texture_size, steps_per_repeat):
    doc = generated_scene(texture_size)
    out, ctx = run(doc, Quantize())
    prim = out.json["meshes"][0]["primitives"][0]
    q = out.read_accessor(prim["attributes"]["TEXCOORD_0"]).astype(np.int64)
    uv = doc.read_accessor(doc.json["meshes"][0]["primitives"][0]["attributes"][
        "TEXCOORD_0"]).astype(np.float64)
    span = np.maximum(uv.max(axis=0) - uv.min(axis=0), 1.0)  # spans 4 repeats each way
    levels = np.minimum(np.ceil(span * np.array(steps_per_repeat)), 4095)
    assert np.array_equal(q.max(axis=0), levels)
    # The bound holds in texels: half a step of the texture.
    ext = out.json["materials"][0]["normalTexture"]["extensions"]["KHR_texture_transform"]
    base = doc.json["materials"][0]["normalTexture"].get("extensions", {}).get(
        "KHR_texture_transform", {})
    got = q / 65535 * np.array(ext["scale"]) + np.array(ext["offset"])
    want = uv * np.array(base.get("scale", [1, 1])) + np.array(base.get("offset", [0, 0]))
    assert (np.abs(got - want) <= span / levels / 2 + 1e-6).all()


def test_a_simplified_document_takes_fewer_position_bits_within_a_share_of_its_error():
    doc = generated_scene()
    size = extent(doc)
    plain = Context()
    run(doc, Quantize(), ctx=plain)
    assert plain.facts["quantize.position_bits"] == 14
    # As if the simplifier had already moved the surface by 1/500 of the extent.
    simplified = Context(facts={"simplify.error": size / 500})
    out, _ = run(doc, Quantize(), ctx=simplified)
    bits = simplified.facts["quantize.position_bits"]
    assert 12 <= bits < 14
    bound = simplified.facts["quantize.position_error"]
    assert plain.facts["quantize.position_error"] < bound <= 0.25 * size / 500
    check_positions(doc, out, bound)
    # Never below min_position_bits, however large the simplifier's error.
    coarse = Context(facts={"simplify.error": size})
    run(doc, Quantize(min_position_bits=12), ctx=coarse)
    assert coarse.facts["quantize.position_bits"] == 12
    # share 0: the simplifier's error is not used.
    off = Context(facts={"simplify.error": size / 500})
    run(doc, Quantize(simplified_error_share=0.0), ctx=off)
    assert off.facts["quantize.position_bits"] == 14
