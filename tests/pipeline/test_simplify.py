"""Simplification: the error bound holds, borders stay locked unless that stalls it."""

from __future__ import annotations

import numpy as np
import trimesh

from tourserver.gltf.document import parse_glb
from tourserver.ingest.inspect import scene_stats
from tourserver.pipeline.base import Context
from tourserver.pipeline.simplify import Simplify


def glb_of(mesh) -> bytes:
    return trimesh.Scene(mesh).export(file_type="glb")


def test_closed_mesh_reaches_the_target_within_the_error():
    mesh = trimesh.creation.icosphere(subdivisions=5, radius=1.0)
    doc = parse_glb(glb_of(mesh))
    ctx = Context()
    out = Simplify(ratio=0.1, target_error=0.05)(doc, ctx)
    tris = scene_stats(out).triangles
    assert tris <= len(mesh.faces) * 0.12
    error = ctx.facts["simplify.error"]
    assert 0 < error < 0.05 * 2.1  # relative to the extent (2 m across)
    # every simplified vertex lies near the original surface
    pos = out.read_accessor(out.json["meshes"][0]["primitives"][0]["attributes"]["POSITION"])
    dist = np.abs(np.linalg.norm(pos, axis=1) - 1.0)
    assert dist.max() <= error + 1e-6
    assert "simplify.unlocked_primitives" not in ctx.facts


def test_open_grid_keeps_its_border():
    plane = trimesh.Trimesh(*trimesh.remesh.subdivide_to_size(
        np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]], float),
        np.array([[0, 1, 2], [0, 2, 3]]), max_edge=0.02))
    doc = parse_glb(glb_of(plane))
    ctx = Context()
    out = Simplify(ratio=0.5, target_error=0.01)(doc, ctx)
    pos = out.read_accessor(out.json["meshes"][0]["primitives"][0]["attributes"]["POSITION"])
    # the plane's outline is still there: its corners survive
    for corner in ([0, 0], [1, 0], [1, 1], [0, 1]):
        assert np.isclose(pos[:, :2], corner, atol=1e-6).all(axis=1).any()
    assert scene_stats(out).triangles < len(plane.faces)


def test_many_open_strips_unlock_rather_than_stall():
    """Thin open strips: every vertex is on a border, so locking them blocks everything."""
    n = 40  # one row of quads: two rows of vertices, all of them on the border
    xs = np.linspace(0, 1, n + 1)
    verts = np.concatenate([np.stack([xs, np.zeros_like(xs), np.zeros_like(xs)], 1),
                            np.stack([xs, np.full_like(xs, 0.02), np.zeros_like(xs)], 1)])
    faces = [f for i in range(n) for f in ([i, i + 1, n + 2 + i], [i, n + 2 + i, n + 1 + i])]
    strip = trimesh.Trimesh(verts, np.array(faces), process=False)
    strips = [strip.copy().apply_translation([0, i * 0.1, 0]) for i in range(100)]
    mesh = trimesh.util.concatenate(strips)
    doc = parse_glb(glb_of(mesh))
    locked = Simplify(ratio=0.3, target_error=0.2, unlock_if_stuck=False)(doc, Context())
    assert scene_stats(locked).triangles > len(mesh.faces) * 0.9  # stalled
    ctx = Context()
    out = Simplify(ratio=0.3, target_error=0.2)(doc, ctx)
    assert scene_stats(out).triangles < len(mesh.faces) * 0.6
    assert ctx.facts["simplify.unlocked_primitives"] == 1


def test_ratio_is_of_the_whole_document_when_small_parts_cannot_shrink():
    # 300 separate two-triangle quads (nothing to remove) beside one dense sphere: asking for
    # 40 % of all triangles must take the difference from the sphere, within its error cap.
    quads = [trimesh.creation.box(extents=(0.1, 0.1, 0.001)).apply_translation((i, 5, 0))
             for i in range(300)]
    sphere = trimesh.creation.icosphere(subdivisions=5, radius=1.0)
    scene = trimesh.Scene()
    for i, quad in enumerate(quads):
        scene.add_geometry(quad, geom_name=f"quad{i}")
    scene.add_geometry(sphere, geom_name="sphere")
    doc = parse_glb(scene.export(file_type="glb"))
    before = scene_stats(doc).triangles
    ctx = Context()
    out = Simplify(ratio=0.4, target_error=0.05)(doc, ctx)
    after = scene_stats(out).triangles
    assert after <= before * 0.4 * 1.02
    assert ctx.facts["simplify.triangles_after"] == after
    assert ctx.facts["simplify.triangles_before"] == before
    assert ctx.facts["simplify.error"] < 0.05 * 2.1
