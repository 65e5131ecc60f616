"""Simplification: by default as far as a small error bound relative to the scene allows,
with seams, shared borders, skins and morph targets kept right; further only to a budget."""

from __future__ import annotations

from itertools import product
from pathlib import Path

import numpy as np
import pytest
import trimesh
from scene_compare import validator_errors

from tourserver.gltf import scene
from tourserver.gltf.document import Document, parse_glb, read_glb, write_glb
from tourserver.ingest.inspect import scene_stats
from tourserver.pipeline.base import Context
from tourserver.pipeline.simplify import Simplify
from tourserver.pipeline.weld import Weld

FOX = Path(__file__).resolve().parents[1] / "models" / "Fox" / "Fox.glb"
POINTS, LINES = 0, 1


class Gltf:
    """A small glTF written by hand: what trimesh cannot export (morph targets, instancing,
    several primitives per mesh, points and lines beside triangles)."""

    def __init__(self) -> None:
        self.json: dict = {"asset": {"version": "2.0"}, "scene": 0, "scenes": [{"nodes": []}],
                           "nodes": [], "meshes": [], "accessors": [], "bufferViews": [],
                           "buffers": [{"byteLength": 0}]}
        self.bin = bytearray()

    def accessor(self, data, target: int | None = None) -> int:
        data = np.ascontiguousarray(data)
        ctype = {np.dtype(np.float32): 5126, np.dtype(np.uint32): 5125,
                 np.dtype(np.uint16): 5123}[data.dtype]
        view: dict = {"buffer": 0, "byteOffset": len(self.bin), "byteLength": data.nbytes}
        if target:
            view["target"] = target
        self.bin += data.tobytes() + b"\0" * (-data.nbytes % 4)
        self.json["bufferViews"].append(view)
        acc = {"bufferView": len(self.json["bufferViews"]) - 1, "componentType": ctype,
               "count": len(data),
               "type": "SCALAR" if data.ndim == 1 else f"VEC{data.shape[1]}"}
        if data.ndim == 2 and data.shape[1] == 3 and ctype == 5126:
            acc["min"] = data.min(axis=0).tolist()
            acc["max"] = data.max(axis=0).tolist()
        self.json["accessors"].append(acc)
        return len(self.json["accessors"]) - 1

    def primitive(self, positions, indices=None, mode: int = 4, targets=(), **attrs) -> dict:
        prim: dict = {"attributes": {"POSITION": self.accessor(np.float32(positions), 34962)}}
        for semantic, data in attrs.items():
            prim["attributes"][semantic] = self.accessor(np.float32(data), 34962)
        if indices is not None:
            prim["indices"] = self.accessor(np.uint32(indices).reshape(-1), 34963)
        if mode != 4:
            prim["mode"] = mode
        if targets:
            prim["targets"] = [{"POSITION": self.accessor(np.float32(t))} for t in targets]
        return prim

    def mesh(self, *primitives: dict) -> int:
        self.json["meshes"].append({"primitives": list(primitives)})
        return len(self.json["meshes"]) - 1

    def node(self, **fields) -> int:
        self.json["nodes"].append(fields)
        self.json["scenes"][0]["nodes"].append(len(self.json["nodes"]) - 1)
        return len(self.json["nodes"]) - 1

    def instanced(self, mesh: int, translations, scales) -> int:
        attrs = {"TRANSLATION": self.accessor(np.float32(translations)),
                 "SCALE": self.accessor(np.float32(scales))}
        self.json.setdefault("extensionsUsed", []).append("EXT_mesh_gpu_instancing")
        return self.node(mesh=mesh, extensions={"EXT_mesh_gpu_instancing": {"attributes": attrs}})

    def document(self) -> Document:
        self.json["buffers"][0]["byteLength"] = len(self.bin)
        return parse_glb(write_glb(Document(self.json, bytes(self.bin))))


def grid(nx: int, ny: int, x0=0.0, x1=1.0, y0=0.0, y1=1.0):
    """Vertices (n, 3) of a z = 0 grid, its triangles (m, 3) and its UVs (u along x)."""
    xs, ys = np.meshgrid(np.linspace(x0, x1, nx), np.linspace(y0, y1, ny))
    pos = np.stack([xs.ravel(), ys.ravel(), np.zeros(xs.size)], axis=1)
    i = np.arange(nx * ny).reshape(ny, nx)
    a, b, c, d = i[:-1, :-1].ravel(), i[:-1, 1:].ravel(), i[1:, :-1].ravel(), i[1:, 1:].ravel()
    faces = np.concatenate([np.stack([a, b, d], 1), np.stack([a, d, c], 1)])
    uv = np.stack([(xs.ravel() - x0) / (x1 - x0), (ys.ravel() - y0) / (y1 - y0)], axis=1)
    return pos, faces, uv


def run(doc: Document, **options) -> tuple[Document, dict]:
    ctx = Context()
    out = Simplify(**options)(doc, ctx)
    return out, ctx.facts


def prim_data(doc: Document, mesh: int = 0, prim: int = 0, semantic: str = "POSITION"):
    p = doc.json["meshes"][mesh]["primitives"][prim]
    return (doc.read_accessor(p["attributes"][semantic]).astype(np.float64),
            doc.read_accessor(p["indices"]).reshape(-1, 3).astype(np.int64))


def surface_distance(points: np.ndarray, vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Distance from each point to the nearest of the triangles."""
    tri = vertices[faces]
    best = np.full(len(points), np.inf)
    for start in range(0, len(points), 256):
        chunk = points[start:start + 256]
        pairs_p = np.repeat(chunk, len(tri), axis=0)
        pairs_t = np.tile(tri, (len(chunk), 1, 1))
        closest = trimesh.triangles.closest_point(pairs_t, pairs_p)
        d = np.linalg.norm(closest - pairs_p, axis=1).reshape(len(chunk), len(tri))
        best[start:start + 256] = d.min(axis=1)
    return best


def locate(points2d: np.ndarray, vertices2d: np.ndarray, faces: np.ndarray):
    """For points in the plane: the triangle holding each (-1: none) and barycentrics."""
    a, b, c = (vertices2d[faces[:, k]] for k in range(3))
    v0, v1 = b - a, c - a
    den = v0[:, 0] * v1[:, 1] - v1[:, 0] * v0[:, 1]
    p = points2d[:, None, :] - a[None]
    u = (p[..., 0] * v1[None, :, 1] - v1[None, :, 0] * p[..., 1]) / den
    v = (v0[None, :, 0] * p[..., 1] - p[..., 0] * v0[None, :, 1]) / den
    inside = (u >= -1e-9) & (v >= -1e-9) & (u + v <= 1 + 1e-9)
    which = np.where(inside.any(axis=1), inside.argmax(axis=1), -1)
    rows = np.arange(len(points2d))
    return which, u[rows, which], v[rows, which]


# ---- error mode, the default ---------------------------------------------------------------
def test_flat_facade_collapses_to_a_handful_of_triangles_and_its_uvs_still_map():
    pos, faces, uv = grid(201, 201, 0, 20, 0, 12)  # 80,000 triangles, a 20 x 12 m wall
    g = Gltf()
    g.node(mesh=g.mesh(g.primitive(pos, faces, TEXCOORD_0=uv)))
    doc = g.document()
    out, facts = run(doc)
    assert facts["simplify.triangles_before"] == 80_000
    assert scene_stats(out).triangles == facts["simplify.triangles_after"] <= 20
    new_pos, new_faces = prim_data(out)
    new_uv, _ = prim_data(out, semantic="TEXCOORD_0")
    samples = np.random.default_rng(3).uniform([0, 0], [20, 12], size=(2000, 2))
    which, u, v = locate(samples, new_pos[:, :2], new_faces)
    assert (which >= 0).all()  # the wall's outline still covers every sample
    tri_uv = new_uv[new_faces[which]]
    looked_up = tri_uv[:, 0] + u[:, None] * (tri_uv[:, 1] - tri_uv[:, 0]) + v[:, None] * (
        tri_uv[:, 2] - tri_uv[:, 0])
    assert np.abs(looked_up - samples / [20, 12]).max() < 1e-5


def test_error_is_bounded_in_world_units_for_the_largest_instance():
    """A sphere drawn three times, at scales 1, 5 and 20, beside a 400 m ground: the bound
    (relative to the scene) must hold for the 20x copy, in metres."""
    sphere = trimesh.creation.icosphere(subdivisions=4, radius=1.0)

    def build(scales) -> Document:
        g = Gltf()
        ground, ground_faces, _ = grid(2, 2, -200, 200, -200, 200)
        g.node(mesh=g.mesh(g.primitive(ground, ground_faces)))
        mesh = g.mesh(g.primitive(sphere.vertices, sphere.faces))
        g.instanced(mesh, [[30.0 * k, 0, 30] for k in range(len(scales))],
                    [[s, s, s] for s in scales])
        return g.document()

    doc = build([1, 5, 20])
    diagonal = scene.scene_diagonal(doc.json, doc.read_accessor)
    out, facts = run(doc, error=2e-4)
    assert facts["simplify.error_ratio"] <= 2e-4 * 1.0001
    assert facts["simplify.error"] == pytest.approx(facts["simplify.error_ratio"] * diagonal)
    pos, faces = prim_data(out, mesh=1)
    deviation = surface_distance(sphere.vertices * 20, pos * 20, faces).max()
    # meshoptimizer's error is a quadric (area-weighted distances to the original planes):
    # the farthest removed vertex lies up to about 1.7x that from the new surface
    assert 0 < deviation <= facts["simplify.error"] * 2
    # drawn only at scale 1, the same sphere may lose more
    small, _ = run(build([1, 1, 1]), error=2e-4)
    assert len(prim_data(small, mesh=1)[1]) < len(faces) < len(sphere.faces)


def test_a_mesh_an_animation_enlarges_is_simplified_for_its_largest_size():
    sphere = trimesh.creation.icosphere(subdivisions=4, radius=1.0)

    def build(grows: bool) -> Document:
        g = Gltf()
        ground, ground_faces, _ = grid(2, 2, -100, 100, -100, 100)
        g.node(mesh=g.mesh(g.primitive(ground, ground_faces)))
        node = g.node(mesh=g.mesh(g.primitive(sphere.vertices, sphere.faces)))
        if grows:
            times = g.accessor(np.float32([0, 1]))
            scales = g.accessor(np.float32([[1, 1, 1], [10, 10, 10]]))
            g.json["animations"] = [{
                "samplers": [{"input": times, "output": scales}],
                "channels": [{"sampler": 0, "target": {"node": node, "path": "scale"}}]}]
            g.json["accessors"][times].update(min=[0.0], max=[1.0])
        return g.document()

    still, _ = run(build(False), error=2e-4)
    grown, _ = run(build(True), error=2e-4)
    assert len(prim_data(still, mesh=1)[1]) < len(prim_data(grown, mesh=1)[1])


def test_uv_seams_do_not_tear():
    """A UV sphere: its seam column and its poles are split copies of one position."""
    nu, nv = 96, 48
    u, v = np.meshgrid(np.linspace(0, 1, nu + 1), np.linspace(0, 1, nv + 1))
    theta, phi = u * 2 * np.pi, v * np.pi
    pos = np.stack([np.sin(phi) * np.cos(theta), np.cos(phi), np.sin(phi) * np.sin(theta)],
                   axis=-1).reshape(-1, 3)
    pos[np.isclose(u.ravel(), 1)] = pos[np.isclose(u.ravel(), 0)]  # bit-equal seam copies
    pos[v.ravel() == 0], pos[v.ravel() == 1] = [0, 1, 0], [0, -1, 0]  # one point per pole
    uv = np.stack([u.ravel(), v.ravel()], axis=1)
    idx = np.arange((nu + 1) * (nv + 1)).reshape(nv + 1, nu + 1)
    faces = []
    for i in range(nv):
        for j in range(nu):
            a, b, c, d = idx[i, j], idx[i, j + 1], idx[i + 1, j], idx[i + 1, j + 1]
            if i > 0:
                faces.append([a, c, b])
            if i < nv - 1:
                faces.append([b, c, d])
    g = Gltf()
    g.node(mesh=g.mesh(g.primitive(pos, np.array(faces), TEXCOORD_0=uv, NORMAL=pos)))
    doc = g.document()
    out, _ = run(doc, error=2e-3)
    new_pos, new_faces = prim_data(out)
    new_uv, _ = prim_data(out, semantic="TEXCOORD_0")
    assert len(new_faces) < len(faces) / 3
    # welded by position the surface is closed, as it was: every edge has two triangles
    assert closed(*prim_data(doc)) and closed(new_pos, new_faces)
    # and every seam vertex (poles aside) still has its twin on the other side of the texture
    on_seam = ((new_uv[:, 0] == 0) | (new_uv[:, 0] == 1)) & (np.abs(new_pos[:, 1]) < 1)
    for side, other in ((0, 1), (1, 0)):
        here = {tuple(p) for p in new_pos[on_seam & (new_uv[:, 0] == side)]}
        there = {tuple(p) for p in new_pos[on_seam & (new_uv[:, 0] == other)]}
        assert here == there and len(here) > 2


def closed(positions: np.ndarray, faces: np.ndarray) -> bool:
    """Every edge, welded by position, has two triangles (triangles that weld to a line,
    where the UV copies of a pole meet, draw nothing and are left out)."""
    _, welded = np.unique(positions, axis=0, return_inverse=True)
    tri = welded.reshape(-1)[faces]
    tri = tri[(tri[:, 0] != tri[:, 1]) & (tri[:, 1] != tri[:, 2]) & (tri[:, 0] != tri[:, 2])]
    edges = np.sort(np.concatenate([tri[:, [0, 1]], tri[:, [1, 2]], tri[:, [2, 0]]]), axis=1)
    _, counts = np.unique(edges, axis=0, return_counts=True)
    return bool((counts == 2).all())


@pytest.mark.parametrize("layout", ["meshes", "primitives", "instances", "shared vertices"])
def test_borders_shared_by_parts_stay_closed_and_free_borders_move(layout):
    """Two wavy patches meet along x = 0 (straight, so nothing but the lock keeps both
    sides' vertices the same); as two meshes on offset nodes, two primitives of one mesh,
    one mesh drawn twice by EXT_mesh_gpu_instancing, or two primitives indexing one vertex
    buffer."""
    rng = np.random.default_rng(5)

    def patch(nx: int, seed_shift: float):
        pos, faces, _ = grid(nx, 41, -1, 0, 0, 1)
        x, y = pos[:, 0], pos[:, 1]
        inside = (x > -1) & (x < 0)  # both x edges stay exactly straight, at z = 0
        pos[:, 2] = np.where(inside, 0.05 * np.sin(np.pi * x) * np.cos(3 * y + seed_shift)
                             + rng.normal(0, 2e-4, len(x)), 0)
        return pos, faces

    g = Gltf()
    a_pos, a_faces = patch(41, 0.0)
    b_pos, b_faces = patch(33 if layout in ("meshes", "primitives") else 41, 1.0)
    if layout == "instances":  # one patch, drawn at x in [-1, 0] and [0, 1]
        g.instanced(g.mesh(g.primitive(a_pos, a_faces)), [[0, 0, 0], [1, 0, 0]],
                    [[1, 1, 1], [1, 1, 1]])
        place = [(0, 0, [0, 0, 0]), (0, 0, [1, 0, 0])]
    elif layout == "shared vertices":  # one buffer; A's right column is B's left one
        b_pos[:, 0] += 1
        b_pos = b_pos.reshape(41, 41, 3)[:, 1:].reshape(-1, 3)
        old = np.arange(41 * 41).reshape(41, 41)
        new = np.full((41, 41), -1)
        new[:, 0] = old[:, 40]  # B's column 0 is A's column 40
        new[:, 1:] = 41 * 41 + np.arange(41 * 40).reshape(41, 40)
        b_faces = new.reshape(-1)[b_faces]
        everything = np.concatenate([a_pos, b_pos])
        mesh = g.mesh(g.primitive(everything, a_faces), g.primitive(everything, b_faces))
        shared = g.json["meshes"][mesh]["primitives"]
        shared[1]["attributes"] = shared[0]["attributes"]
        g.node(mesh=mesh)
        place = [(0, 0, [0, 0, 0]), (0, 1, [0, 0, 0])]
    elif layout == "primitives":
        b_pos[:, 0] += 1
        g.node(mesh=g.mesh(g.primitive(a_pos, a_faces), g.primitive(b_pos, b_faces)))
        place = [(0, 0, [0, 0, 0]), (0, 1, [0, 0, 0])]
    else:  # B is stored around its own origin and moved into place by its node
        b_pos[:, 0] += 0.5
        g.node(mesh=g.mesh(g.primitive(a_pos, a_faces)))
        g.node(mesh=g.mesh(g.primitive(b_pos, b_faces)), translation=[0.5, 0, 0])
        place = [(0, 0, [0, 0, 0]), (1, 0, [0.5, 0, 0])]
    doc = g.document()
    out, facts = run(doc, error=1e-3)
    assert facts["simplify.locked_vertices"] >= 41
    assert facts["simplify.triangles_after"] < facts["simplify.triangles_before"] / 4
    worlds = []
    for mesh, prim, offset in place:
        pos, faces = prim_data(out, mesh, prim)
        worlds.append((pos + offset)[np.unique(faces)])
    left_side = worlds[0][np.isclose(worlds[0][:, 0], 0, atol=1e-6)]
    right_side = worlds[1][np.isclose(worlds[1][:, 0], 0, atol=1e-6)]
    assert sorted(map(tuple, left_side)) == sorted(map(tuple, right_side))
    assert len(left_side) == 41  # nothing on the shared border went
    # the free outline of patch A (its y = 0 edge) was simplified within the bound
    assert np.isclose(worlds[0][:, 1], 0).sum() < 33
    if layout == "shared vertices":  # still one vertex buffer
        prims = out.json["meshes"][0]["primitives"]
        assert prims[0]["attributes"] == prims[1]["attributes"]


# ---- skins and morph targets ----------------------------------------------------------------
def posed(doc: Document, pose: dict[int, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The Fox's vertices skinned with some joints' local matrices replaced, and its
    triangles."""
    j = doc.json
    read = scene.float_reader(j, doc.read_accessor)
    world = scene.world_matrices(j, scene.scene_roots(j), pose)
    mats = scene.joint_matrices(j, j["skins"][0], world, read)
    prim = j["meshes"][0]["primitives"][0]
    pos = read(prim["attributes"]["POSITION"])
    joints = doc.read_accessor(prim["attributes"]["JOINTS_0"]).astype(np.int64)
    weights = read(prim["attributes"]["WEIGHTS_0"])
    homo = np.c_[pos, np.ones(len(pos))]
    out = sum(weights[:, k, None] * np.einsum("nij,nj->ni", mats[joints[:, k]], homo)
              for k in range(4))
    return out[:, :3], doc.read_accessor(prim["indices"]).reshape(-1, 3).astype(np.int64)


def test_skinned_fox_keeps_its_skin_and_its_shape_when_posed(tmp_path):
    welded = Weld()(read_glb(FOX), Context())  # the Fox comes unindexed
    out, facts = run(welded, error=1e-2)
    before, after = facts["simplify.triangles_before"], facts["simplify.triangles_after"]
    assert after < before * 0.85  # something was simplified
    j_in, j_out = welded.json, out.json
    assert j_out["skins"] == j_in["skins"] and j_out["nodes"] == j_in["nodes"]
    assert np.array_equal(out.read_accessor(j_out["skins"][0]["inverseBindMatrices"]),
                          welded.read_accessor(j_in["skins"][0]["inverseBindMatrices"]))
    # every kept vertex is one of the input's, with its own joints, weights and UV
    attrs_in = j_in["meshes"][0]["primitives"][0]["attributes"]
    attrs_out = j_out["meshes"][0]["primitives"][0]["attributes"]
    assert attrs_out.keys() == attrs_in.keys()

    def rows(doc: Document, attrs: dict) -> set:
        data = [doc.read_accessor(attrs[s]).astype(np.float64) for s in sorted(attrs)]
        return set(map(tuple, np.hstack(data)))

    assert rows(out, attrs_out) <= rows(welded, attrs_in)
    # every joint turned a radian: the simplified fox stays about as close to the posed
    # original as at rest (simplified for the rest pose alone it strays 3x further)
    bend = trimesh.transformations.rotation_matrix(1.0, [1, 0, 0])
    pose = {j: scene.local_matrix(j_in["nodes"][j]) @ bend for j in j_in["skins"][0]["joints"]}
    deviation = {}
    for name, joints in (("rest", {}), ("posed", pose)):
        src_pos, _ = posed(welded, joints)
        new_pos, new_faces = posed(out, joints)
        deviation[name] = surface_distance(src_pos, new_pos, new_faces).max()
    bound = scene.scene_diagonal(j_in, welded.read_accessor) * 1e-2
    assert deviation["posed"] <= 2 * bound
    assert deviation["posed"] <= 1.25 * deviation["rest"]
    assert validator_errors(out, tmp_path / "fox.glb") == 0


def test_morph_target_keeps_its_shape_while_the_flat_base_collapses():
    """A flat sheet whose one morph target raises a bump: simplified for the base pose
    alone it would be two triangles and lose the bump."""
    pos, faces, _ = grid(41, 41, -1, 1, -1, 1)
    r2 = (pos[:, 0] - 0.3) ** 2 + (pos[:, 1] + 0.2) ** 2
    bump = np.zeros_like(pos)
    bump[:, 2] = 0.3 * np.exp(-r2 / 0.05)
    g = Gltf()
    g.node(mesh=g.mesh(g.primitive(pos, faces, targets=[bump])))
    doc = g.document()
    out, facts = run(doc, error=1e-3)
    assert facts["simplify.triangles_after"] < len(faces) / 2  # the flat part collapsed
    new_pos, new_faces = prim_data(out)
    target = out.json["meshes"][0]["primitives"][0]["targets"][0]["POSITION"]
    morphed = new_pos + out.read_accessor(target)
    deviation = surface_distance(pos + bump, morphed, new_faces).max()
    assert deviation <= 3 * 1e-3 * scene.scene_diagonal(doc.json, doc.read_accessor)


def test_points_and_lines_are_left_as_they_are():
    pos, faces, _ = grid(21, 21)
    g = Gltf()
    cloud = np.random.default_rng(1).random((500, 3))
    g.node(mesh=g.mesh(g.primitive(pos, faces), g.primitive(cloud, mode=POINTS),
                       g.primitive(pos[:40], np.arange(40), mode=LINES)))
    doc = g.document()
    out, _ = run(doc)
    assert scene_stats(out).triangles < len(faces)
    for p in (1, 2):
        a, b = doc.json["meshes"][0]["primitives"][p], out.json["meshes"][0]["primitives"][p]
        assert b.get("mode") == a.get("mode")
        assert np.array_equal(out.read_accessor(b["attributes"]["POSITION"]),
                              doc.read_accessor(a["attributes"]["POSITION"]))
        if "indices" in a:
            assert np.array_equal(out.read_accessor(b["indices"]),
                                  doc.read_accessor(a["indices"]))


# ---- budget mode ---------------------------------------------------------------------------
def many_parts() -> Document:
    """Spheres of three densities and 300 separate two-triangle quads, which cannot shrink."""
    g = Gltf()
    for k, subdivisions in enumerate((3, 4, 5)):
        s = trimesh.creation.icosphere(subdivisions=subdivisions, radius=1.0 + k)
        g.node(mesh=g.mesh(g.primitive(s.vertices, s.faces)), translation=[8.0 * k, 0, 0])
    quad, quad_faces, _ = grid(2, 2, 0, 0.1, 0, 0.1)
    mesh = g.mesh(g.primitive(quad, quad_faces))
    for i in range(300):
        g.node(mesh=mesh, translation=[0.2 * (i % 30), 10 + 0.2 * (i // 30), 0])
    return g.document()


@pytest.mark.parametrize("ratio", [0.5, 0.3, 0.17, 0.1])
def test_budget_lands_at_or_under_the_goal(ratio):
    doc = many_parts()
    before = scene_stats(doc).triangles
    out, facts = run(doc, ratio=ratio, max_error=0.05)
    after = scene_stats(out).triangles
    assert after <= int(before * ratio)
    assert after >= int(before * ratio) * 0.9  # and not needlessly far under
    assert facts["simplify.triangles_after"] == after
    assert facts["simplify.triangles_before"] == before
    assert "simplify.over_budget" not in facts
    assert facts["simplify.error_ratio"] <= 0.05


def test_max_triangles_is_met_on_a_single_dense_mesh():
    sphere = trimesh.creation.icosphere(subdivisions=6, radius=1.0)
    out, facts = run(parse_glb(trimesh.Scene(sphere).export(file_type="glb")),
                     max_triangles=10_000)
    assert 9_000 <= scene_stats(out).triangles <= 10_000
    pos, faces = prim_data(out)
    deviation = np.abs(np.linalg.norm(pos, axis=1) - 1).max()
    assert deviation <= facts["simplify.error"] + 1e-6


def test_a_budget_that_cannot_be_met_is_reported_not_hidden():
    g = Gltf()
    quad, quad_faces, _ = grid(2, 2, 0, 0.1, 0, 0.1)
    mesh = g.mesh(g.primitive(quad, quad_faces))
    for i in range(300):
        g.node(mesh=mesh, translation=[0.2 * i, 0, 0])
    out, facts = run(g.document(), max_triangles=400, max_error=1e-4)
    assert scene_stats(out).triangles == 600
    assert facts["simplify.over_budget"] == 200


# ---- budget mode's last resort: crossing attribute seams -----------------------------------
def split_box(n: int, **attrs):
    """A 2 m box, each face an n x n grid whose every cell has its own four vertices and
    its own atlas cell: every vertex is a seam (as on the bench's city block, where UV
    charts meet at nearly every corner). Returns positions, triangles, UVs and the face
    (0-5) of each vertex."""
    positions: list[np.ndarray] = []
    uvs: list[list[float]] = []
    faces: list[list[int]] = []
    side: list[int] = []
    atlas = int(np.ceil(np.sqrt(6 * n * n)))
    for f, (axis, sign) in enumerate(product(range(3), (-1.0, 1.0))):
        u_axis, v_axis = (a for a in range(3) if a != axis)
        outward = sign * (-1 if axis == 1 else 1)  # e_u x e_v is +x, -y, +z
        for i, j in product(range(n), range(n)):
            first = len(positions)
            cell = len(faces) // 2
            for du, dv in ((0, 0), (1, 0), (1, 1), (0, 1)):
                p = np.zeros(3)
                p[axis], p[u_axis], p[v_axis] = sign, -1 + 2 * (i + du) / n, -1 + 2 * (j + dv) / n
                positions.append(p)
                uvs.append([(cell % atlas + 0.8 * du) / atlas, (cell // atlas + 0.8 * dv) / atlas])
                side.append(f)
            quad = [[first, first + 1, first + 2], [first, first + 2, first + 3]]
            faces += quad if outward > 0 else [t[::-1] for t in quad]
    return np.array(positions), np.array(faces), np.array(uvs), np.array(side)


def box_document(n: int = 8, beside: str = "", deform: str = "") -> Document:
    """The split box, skinned or morphed if asked, beside a sphere or a flat grid."""
    pos, faces, uv, _ = split_box(n)
    g = Gltf()
    prim = g.primitive(pos, faces, TEXCOORD_0=uv,
                       targets=[np.zeros_like(pos)] if deform == "morph" else ())
    if deform == "skin":
        prim["attributes"]["JOINTS_0"] = g.accessor(np.zeros((len(pos), 4), np.uint16), 34962)
        weights = np.zeros((len(pos), 4), np.float32)
        weights[:, 0] = 1
        prim["attributes"]["WEIGHTS_0"] = g.accessor(weights, 34962)
        joint = g.node(translation=[0.0, 0.0, 0.0])
        g.json["skins"] = [{"joints": [joint]}]
        g.node(mesh=g.mesh(prim), skin=0)
    else:
        g.node(mesh=g.mesh(prim))
    if beside == "sphere":  # no seams; its own curvature holds it at the cap
        sphere = trimesh.creation.icosphere(subdivisions=2, radius=1.0)
        g.node(mesh=g.mesh(g.primitive(sphere.vertices, sphere.faces)), translation=[4, 0, 0])
    elif beside == "grid":  # no seams, flat: collapses in error mode
        flat, flat_faces, _ = grid(21, 21, 3, 5, -1, 1)
        g.node(mesh=g.mesh(g.primitive(flat, flat_faces)))
    return g.document()


def test_seams_everywhere_hold_a_budget_unless_crossing_them_is_forbidden():
    doc = box_document()
    out, facts = run(doc, max_triangles=150, cross_seams=False)
    assert facts["simplify.triangles_after"] == facts["simplify.triangles_before"] == 768
    assert facts["simplify.over_budget"] == 618
    assert "simplify.crossed_seams" not in facts


@pytest.mark.parametrize("beside", ["", "sphere"])
def test_crossing_seams_meets_the_budget_and_keeps_each_face_on_its_own_chart(
        beside, tmp_path):
    doc = box_document(beside=beside)
    out, facts = run(doc, max_triangles=150)
    assert scene_stats(out).triangles == facts["simplify.triangles_after"] <= 150
    assert facts["simplify.crossed_seams"] == 1  # the box: the sphere has no seams
    assert "simplify.over_budget" not in facts
    assert facts["simplify.error"] <= 0.01 * scene.scene_diagonal(doc.json, doc.read_accessor)
    # a valid mesh: indices in range, no degenerate triangles
    new_pos, new_faces = prim_data(out)
    new_uv, _ = prim_data(out, semantic="TEXCOORD_0")
    assert new_faces.min() >= 0 and new_faces.max() < len(new_pos)
    tri = new_pos[new_faces]
    assert (np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
            > 1e-9).all()
    # every corner is one of the source's vertices: its position with one of the UVs the
    # source had there, from the face the triangle lies on (not the neighbour's chart)
    pos, _, uv, side = split_box(8)
    def vertex(p: np.ndarray, t: np.ndarray) -> tuple:
        return tuple(p.astype(np.float32).tolist()), tuple(t.astype(np.float32).tolist())

    source = {vertex(p, t): f for p, t, f in zip(pos, uv, side, strict=True)}
    normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    axis = np.abs(normal).argmax(axis=1)
    face_of_triangle = 2 * axis + (normal[np.arange(len(normal)), axis] > 0)
    for t, corners in enumerate(new_faces):
        for c in corners:
            key = vertex(new_pos[c], new_uv[c])
            assert key in source
            assert source[key] == face_of_triangle[t]
    assert validator_errors(out, tmp_path / "box.glb") == 0


@pytest.mark.parametrize("deform", ["skin", "morph"])
def test_skinned_and_morphed_meshes_never_cross_seams(deform):
    doc = box_document(deform=deform)
    out, facts = run(doc, max_triangles=150)
    assert "simplify.crossed_seams" not in facts
    assert facts["simplify.over_budget"] == 618  # reported, not met at the skin's cost
    assert scene_stats(out).triangles == 768


@pytest.mark.parametrize("options", [{}, {"ratio": 0.3, "max_error": 0.05}])
def test_crossing_is_only_a_last_resort(options):
    """Error mode never crosses, nor does a budget the seam-keeping passes meet: the output
    is the same with crossing allowed or forbidden."""
    if options:
        doc = many_parts()
    else:
        doc = box_document(beside="grid")
    allowed, facts = run(doc, **options)
    forbidden, _ = run(doc, cross_seams=False, **options)
    assert "simplify.crossed_seams" not in facts
    assert facts["simplify.triangles_after"] < facts["simplify.triangles_before"]
    assert allowed.json == forbidden.json and allowed.bin == forbidden.bin
