"""Small pieces both benchmarks use: the machine's CPU name and a grid-mesh GLB."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, or "unknown"."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def grid_glb(xs: np.ndarray, ys: np.ndarray, zs: np.ndarray) -> bytes:
    """An untextured GLB of the height field ys over the (xs, zs) meshgrid, two triangles
    per cell."""
    import trimesh

    n = xs.shape[0]
    vertices = np.stack([xs.ravel(), ys.ravel(), zs.ravel()], axis=1)
    idx = np.arange(n * n).reshape(n, n)
    a, b = idx[:-1, :-1].ravel(), idx[:-1, 1:].ravel()
    c, d = idx[1:, :-1].ravel(), idx[1:, 1:].ravel()
    faces = np.concatenate([np.stack([a, c, b], 1), np.stack([b, c, d], 1)])
    mesh = trimesh.Trimesh(vertices=vertices, faces=faces, process=False)
    return trimesh.Scene(mesh).export(file_type="glb")
