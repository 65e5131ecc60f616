"""Generated scenes of kinds the shared corpus lacks, for tools/bench/compare_peers.py.

    python tools/bench/scenes.py OUTDIR [--kinds facades,props]

Each generator is deterministic (seeded) and writes one self-contained GLB as a creator's
exporter would: named nodes in a hierarchy, materials with textures and UVs, JPEG colour
maps and PNG data maps. Textures are procedural but photographic in character: structure
(windows, planks, cracks), gradients (light falloff, vignetting) and per-pixel sensor-like
noise (luminance noise growing with brightness, weaker chroma noise), since noise is what
decides how many bytes a texture encoder spends, and PSNR-driven encoders spend it on the
noise.

  facades      a night street: 24 buildings whose façades are finely subdivided flat grids
               (CAD/scan-like, 10-40k triangles per building; every third one has 0.3 mm
               scan noise), a lit-window base colour + emissive pair with sensor noise, a
               normal map, an asphalt street, and 60 lanterns (~300 triangles, 2 materials)
               as separate named nodes. The scene of issue 18.
  noisy_photo  four meshes (rock, wall, barrel, crate) under two 2048² photographic
               material sets: colour (JPEG), normal and occlusion-roughness-metallic (PNG).
  props        400 named prop nodes sharing 6 meshes, plus 40 nodes with meshes that are
               identical copies (own accessors), in rows under group nodes; one 1024² atlas.
  city_block   a textured city block over 20 MB: 24 buildings with recessed windows, sills
               and roofs, four 2048² maps (façade atlas colour JPEG, its normal and ORM PNG,
               ground colour JPEG).

`generate(kind, cache_dir)` writes `<kind>.v<version>.glb` once and returns its path; a file
of the same generator version is reused. `build(kind, params)` returns the Document itself
(tests build small versions). Local only; numpy, Pillow and tourserver's GLB writer.
"""

from __future__ import annotations

import argparse
import io
import math
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from tourserver.gltf.document import Document, write_glb  # noqa: E402

FLOAT, U16, U32 = 5126, 5123, 5125
ARRAY_BUFFER, ELEMENT_ARRAY_BUFFER = 34962, 34963
REPEAT, LINEAR, LINEAR_MIPMAP_LINEAR = 10497, 9729, 9987
Y_180 = [0.0, 1.0, 0.0, 0.0]  # quaternion: half a turn about +Y


# ---- a small glTF builder -------------------------------------------------------------------
@dataclass
class Part:
    """Triangles with flat-friendly attributes: positions, normals, UVs, (m, 3) indices."""

    position: np.ndarray
    normal: np.ndarray
    uv: np.ndarray
    indices: np.ndarray

    @staticmethod
    def join(parts: list[Part]) -> Part:
        base = np.cumsum([0] + [len(p.position) for p in parts[:-1]])
        return Part(np.concatenate([p.position for p in parts]),
                    np.concatenate([p.normal for p in parts]),
                    np.concatenate([p.uv for p in parts]),
                    np.concatenate([p.indices + b for p, b in zip(parts, base, strict=True)]))

    @property
    def triangles(self) -> int:
        return len(self.indices)


class Gltf:
    """Accumulates JSON and one binary buffer; every array gets its own buffer view."""

    def __init__(self, generator: str) -> None:
        self.json: dict = {
            "asset": {"version": "2.0", "generator": f"tourserver bench scenes: {generator}"},
            "scene": 0, "scenes": [], "nodes": [], "meshes": [], "materials": [],
            "textures": [], "images": [], "samplers": [
                {"magFilter": LINEAR, "minFilter": LINEAR_MIPMAP_LINEAR, "wrapS": REPEAT,
                 "wrapT": REPEAT}],
            "accessors": [], "bufferViews": [], "buffers": []}
        self.blobs: list[bytes] = []
        self.offset = 0

    def _view(self, data: bytes, target: int | None) -> int:
        view = {"buffer": 0, "byteOffset": self.offset, "byteLength": len(data)}
        if target:
            view["target"] = target
        self.json["bufferViews"].append(view)
        padded = data + b"\0" * (-len(data) % 4)
        self.blobs.append(padded)
        self.offset += len(padded)
        return len(self.json["bufferViews"]) - 1

    def accessor(self, arr: np.ndarray, kind: str, minmax: bool = False) -> int:
        if kind == "SCALAR":  # indices
            arr = arr.astype(np.uint16 if arr.max(initial=0) < 65535 else np.uint32)
            ctype, target = (U16 if arr.dtype == np.uint16 else U32), ELEMENT_ARRAY_BUFFER
        else:
            arr = arr.astype(np.float32)
            ctype, target = FLOAT, ARRAY_BUFFER
        acc = {"bufferView": self._view(np.ascontiguousarray(arr).tobytes(), target),
               "componentType": ctype, "count": int(len(arr)), "type": kind}
        if minmax:
            acc["min"] = [float(v) for v in arr.min(axis=0)]
            acc["max"] = [float(v) for v in arr.max(axis=0)]
        self.json["accessors"].append(acc)
        return len(self.json["accessors"]) - 1

    def texture(self, data: bytes, mime: str, name: str) -> int:
        self.json["images"].append({"name": name, "mimeType": mime,
                                    "bufferView": self._view(data, None)})
        self.json["textures"].append({"name": name, "sampler": 0,
                                      "source": len(self.json["images"]) - 1})
        return len(self.json["textures"]) - 1

    def material(self, name: str, **fields) -> int:
        self.json["materials"].append({"name": name, **fields})
        return len(self.json["materials"]) - 1

    def mesh(self, name: str, parts: list[tuple[Part, int]]) -> int:
        prims = []
        for part, material in parts:
            prims.append({"attributes": {"POSITION": self.accessor(part.position, "VEC3", True),
                                         "NORMAL": self.accessor(part.normal, "VEC3"),
                                         "TEXCOORD_0": self.accessor(part.uv, "VEC2")},
                          "indices": self.accessor(part.indices.reshape(-1), "SCALAR"),
                          "material": material})
        self.json["meshes"].append({"name": name, "primitives": prims})
        return len(self.json["meshes"]) - 1

    def node(self, name: str, mesh: int | None = None, children: list[int] | None = None,
             translation=None, rotation=None, scale=None, extras: dict | None = None) -> int:
        node: dict = {"name": name}
        for key, value in (("mesh", mesh), ("children", children),
                           ("translation", translation), ("rotation", rotation),
                           ("scale", scale), ("extras", extras)):
            if value is not None:
                node[key] = [float(v) for v in value] if key in (
                    "translation", "rotation", "scale") else value
        self.json["nodes"].append(node)
        return len(self.json["nodes"]) - 1

    def document(self, scene: str, roots: list[int]) -> Document:
        self.json["scenes"].append({"name": scene, "nodes": roots})
        self.json["buffers"].append({"byteLength": self.offset})
        return Document(self.json, b"".join(self.blobs), f"<{scene}>")


def pbr(base_texture: int | None = None, base=(1.0, 1.0, 1.0, 1.0), metallic: float = 0.0,
        roughness: float = 0.8, orm_texture: int | None = None) -> dict:
    out: dict = {"baseColorFactor": list(base), "metallicFactor": metallic,
                 "roughnessFactor": roughness}
    if base_texture is not None:
        out["baseColorTexture"] = {"index": base_texture}
    if orm_texture is not None:
        out["metallicRoughnessTexture"] = {"index": orm_texture}
    return out


# ---- geometry ---------------------------------------------------------------------------------
def grid(nu: int, nv: int, origin, du, dv, uv0=(0.0, 0.0), uv_du=(1.0, 0.0), uv_dv=(0.0, 1.0),
         jitter: float = 0.0, rng: np.random.Generator | None = None) -> Part:
    """A flat nu x nv grid of quads spanning origin + s*du + t*dv (s, t in [0, 1]), facing
    cross(du, dv); UV = uv0 + s*uv_du + t*uv_dv. `jitter` moves vertices along the normal
    (scan noise, in metres)."""
    origin, du, dv = (np.asarray(v, np.float64) for v in (origin, du, dv))
    s, t = np.meshgrid(np.linspace(0, 1, nu + 1), np.linspace(0, 1, nv + 1))
    s, t = s.ravel()[:, None], t.ravel()[:, None]
    normal = np.cross(du, dv)
    normal /= np.linalg.norm(normal)
    pos = origin + s * du + t * dv
    if jitter and rng is not None:
        pos += rng.normal(0, jitter, (len(pos), 1)) * normal
    uv = np.asarray(uv0) + s * np.asarray(uv_du) + t * np.asarray(uv_dv)
    idx = np.arange((nu + 1) * (nv + 1)).reshape(nv + 1, nu + 1)
    a, b = idx[:-1, :-1].ravel(), idx[:-1, 1:].ravel()  # (s, t), (s + 1, t)
    c, d = idx[1:, :-1].ravel(), idx[1:, 1:].ravel()  # (s, t + 1), (s + 1, t + 1)
    tris = np.concatenate([np.stack([a, b, d], 1), np.stack([a, d, c], 1)])
    return Part(pos, np.tile(normal, (len(pos), 1)), uv, tris)


def box(size, center=(0.0, 0.0, 0.0), cells: int = 1, uv_rect=(0.0, 0.0, 1.0, 1.0)) -> Part:
    """An axis-aligned box of 6 grids (cells x cells each), every face mapped to uv_rect
    (u0, v0, u1, v1)."""
    sx, sy, sz = (float(v) / 2 for v in size)
    cx, cy, cz = center
    u0, v0, u1, v1 = uv_rect
    faces = [((-sx, -sy, sz), (2 * sx, 0, 0), (0, 2 * sy, 0)),    # +Z
             ((sx, -sy, -sz), (-2 * sx, 0, 0), (0, 2 * sy, 0)),   # -Z
             ((sx, -sy, sz), (0, 0, -2 * sz), (0, 2 * sy, 0)),    # +X
             ((-sx, -sy, -sz), (0, 0, 2 * sz), (0, 2 * sy, 0)),   # -X
             ((-sx, sy, sz), (2 * sx, 0, 0), (0, 0, -2 * sz)),    # +Y
             ((-sx, -sy, -sz), (2 * sx, 0, 0), (0, 0, 2 * sz))]   # -Y
    return Part.join([grid(cells, cells, np.add(o, (cx, cy, cz)), du, dv, (u0, v1),
                           (u1 - u0, 0), (0, v0 - v1)) for o, du, dv in faces])


def lathe(profile: list[tuple[float, float]], segments: int, uv_rect=(0.0, 0.0, 1.0, 1.0),
          center=(0.0, 0.0, 0.0)) -> Part:
    """A surface of revolution about +Y through (radius, height) profile points, bottom to
    top, with a UV seam column so the texture wraps once around."""
    u0, v0, u1, v1 = uv_rect
    prof = np.asarray(profile, np.float64)
    ang = np.linspace(0, 2 * math.pi, segments + 1)
    r = prof[:, 0][:, None] * np.ones(len(ang))
    h = prof[:, 1][:, None] * np.ones(len(ang))
    pos = np.stack([r * np.sin(ang), h, r * np.cos(ang)], -1).reshape(-1, 3) + np.asarray(center)
    arc = np.concatenate([[0], np.cumsum(np.hypot(np.diff(prof[:, 0]), np.diff(prof[:, 1])))])
    arc = arc / (arc[-1] or 1)
    uu, vv = np.meshgrid(np.linspace(u0, u1, len(ang)), v1 + (v0 - v1) * arc)
    idx = np.arange(len(prof) * len(ang)).reshape(len(prof), len(ang))
    a, b = idx[:-1, :-1].ravel(), idx[:-1, 1:].ravel()
    c, d = idx[1:, :-1].ravel(), idx[1:, 1:].ravel()
    tris = np.concatenate([np.stack([a, b, d], 1), np.stack([a, d, c], 1)])
    tris = tris[_proper(pos, tris)]
    return Part(pos, smooth_normals(pos, tris), np.stack([uu.ravel(), vv.ravel()], 1), tris)


def smooth_normals(pos: np.ndarray, tris: np.ndarray) -> np.ndarray:
    """Area-weighted vertex normals, shared by vertices at the same position (UV seams and
    poles get one normal, as an exporter's smooth shading gives them)."""
    _, same = np.unique(np.round(pos, 6), axis=0, return_inverse=True)
    same = same.ravel()
    face = np.cross(pos[tris[:, 1]] - pos[tris[:, 0]], pos[tris[:, 2]] - pos[tris[:, 0]])
    acc = np.zeros((same.max() + 1, 3))
    for k in range(3):
        np.add.at(acc, same[tris[:, k]], face)
    nrm = acc[same]
    return nrm / np.maximum(np.linalg.norm(nrm, axis=1, keepdims=True), 1e-12)


def _proper(pos: np.ndarray, tris: np.ndarray) -> np.ndarray:
    """Which triangles have three distinct corners (those collapsed at a pole or an axis
    are dropped)."""
    a, b, c = (pos[tris[:, k]] for k in range(3))
    return ~((a == b).all(1) | (b == c).all(1) | (a == c).all(1))


# ---- photographic textures ------------------------------------------------------------------
def smooth_noise(rng: np.random.Generator, size: tuple[int, int], cells: int,
                 octaves: int = 4) -> np.ndarray:
    """Fractal value noise in [0, 1] of shape `size` (h, w): random grids upsampled bicubic,
    each octave twice the frequency at half the amplitude."""
    h, w = size
    out = np.zeros(size, np.float32)
    total = 0.0
    for o in range(octaves):
        n = cells * 2 ** o
        small = rng.random((n, n)).astype(np.float32)
        up = Image.fromarray(small).resize((w, h), Image.Resampling.BICUBIC)
        out += np.asarray(up) / 2 ** o
        total += 1 / 2 ** o
    out /= total
    lo, hi = float(out.min()), float(out.max())
    return (out - lo) / ((hi - lo) or 1)


def sensor_noise(img: np.ndarray, rng: np.random.Generator, luma: float = 4.0,
                 chroma: float = 1.5) -> np.ndarray:
    """A camera's noise on an (h, w, 3) 0-255 image: luminance noise with a shot-noise part
    that grows with brightness, weaker independent chroma noise; clipped, as uint8."""
    h, w, _ = img.shape
    bright = img.mean(axis=2, keepdims=True) / 255.0
    sigma = luma * (0.45 + 0.55 * np.sqrt(bright))
    noisy = (img + rng.standard_normal((h, w, 1), np.float32) * sigma
             + rng.standard_normal((h, w, 3), np.float32) * chroma)
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


def vignette(size: tuple[int, int], strength: float) -> np.ndarray:
    h, w = size
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    r2 = ((x / w - 0.5) ** 2 + (y / h - 0.5) ** 2) * 2
    return (1 - strength * r2)[..., None]


def normal_map(height: np.ndarray, strength: float, rng: np.random.Generator,
               noise: float = 1.5) -> np.ndarray:
    """A tangent-space normal map (OpenGL convention, +Y up in the image) of a height field
    in [0, 1], with a little bake noise."""
    gy, gx = np.gradient(height.astype(np.float32))
    n = np.stack([-gx * strength, gy * strength, np.ones_like(gx)], -1)
    n /= np.linalg.norm(n, axis=-1, keepdims=True)
    rgb = (n * 0.5 + 0.5) * 255 + rng.standard_normal(n.shape, np.float32) * noise
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def encode(pixels: np.ndarray, fmt: str, quality: int = 92) -> bytes:
    """JPEG (4:2:0, as Blender and most exporters write it) or PNG, as bytes."""
    out = io.BytesIO()
    img = Image.fromarray(pixels)
    if fmt == "JPEG":
        img.save(out, "JPEG", quality=quality, subsampling=2)
    else:
        img.save(out, "PNG", compress_level=1)  # Blender's default PNG compression, 15 %
    return out.getvalue()


def _rects(mask: np.ndarray, x0, y0, x1, y1) -> None:
    mask[int(y0):int(y1), int(x0):int(x1)] = True


def facade_night_maps(rng: np.random.Generator, px: int) -> tuple[np.ndarray, ...]:
    """A 4 x 4-bay façade tile photographed at night: (base colour, emissive, height).
    Concrete with stains and slab lines; lit windows (warm or cool, brightest near their
    lamp, some with curtains) and dark ones (sky reflections)."""
    size = (px, px)
    bay = px // 4
    y, x = np.mgrid[0:px, 0:px].astype(np.float32)
    stains = smooth_noise(rng, size, 6)
    grain = smooth_noise(rng, size, 64, 3)
    wall = (np.array([52, 50, 58], np.float32) * (0.75 + 0.5 * stains[..., None])
            * (0.9 + 0.2 * grain[..., None]) * (0.8 + 0.35 * (y / px))[..., None])
    height = 0.5 + 0.08 * grain
    slab = (y % bay) > bay - bay // 14
    wall[slab] *= 0.7
    height[slab] = 0.6
    base = wall.copy()
    emissive = np.zeros_like(base)
    for row in range(4):
        for col in range(4):
            x0, x1 = col * bay + bay * 0.2, col * bay + bay * 0.8
            y0, y1 = row * bay + bay * 0.15, row * bay + bay * 0.75
            frame = np.zeros(size, bool)
            _rects(frame, x0 - bay * 0.03, y0 - bay * 0.03, x1 + bay * 0.03, y1 + bay * 0.03)
            base[frame] = base[frame] * 0.6 + 40
            height[frame] = 0.65
            glass = np.zeros(size, bool)
            _rects(glass, x0, y0, x1, y1)
            height[glass] = 0.1
            gx, gy = x[glass], y[glass]
            if rng.random() < 0.6:  # lit: a lamp inside, light falling off from it
                tint = np.array([[255, 196, 120], [255, 170, 90], [225, 232, 255]][
                    rng.integers(0, 3)], np.float32)
                lx, ly = rng.uniform(x0, x1), rng.uniform(y0, (y0 + y1) / 2)
                fall = np.exp(-((gx - lx) ** 2 + (gy - ly) ** 2) / (2 * (bay * 0.35) ** 2))
                light = (0.35 + 0.65 * fall)[:, None] * tint * rng.uniform(0.7, 1.0)
                if rng.random() < 0.5:  # curtains: vertical folds dimming part of the pane
                    folds = 0.75 + 0.25 * np.sin((gx - x0) / bay * rng.uniform(40, 70))
                    cover = (gx - x0) < (x1 - x0) * rng.uniform(0.3, 0.6)
                    light[cover] *= (folds[cover] * 0.55)[:, None]
                base[glass] = light
                emissive[glass] = light
            else:  # dark: the sky and the street reflected
                refl = 0.5 + 0.5 * ((gx - x0) + (gy - y0)) / (x1 - x0 + y1 - y0)
                base[glass] = np.array([16, 22, 38], np.float32) * (0.6 + 0.8 * refl)[:, None]
    base = sensor_noise(base * vignette(size, 0.15), rng, luma=6.0, chroma=2.5)
    emissive = sensor_noise(emissive, rng, luma=4.0, chroma=1.5)
    return base, emissive, height


def asphalt_map(rng: np.random.Generator, px: int) -> np.ndarray:
    size = (px, px)
    blotch = smooth_noise(rng, size, 4)
    grain = smooth_noise(rng, size, 128, 2)
    img = np.array([58, 58, 62], np.float32) * (0.7 + 0.5 * blotch[..., None]) * (
        0.8 + 0.4 * grain[..., None])
    stones = rng.random(size) < 0.02  # aggregate catching the lamp light
    img[stones] *= rng.uniform(1.3, 2.0, (int(stones.sum()), 1))
    return sensor_noise(img * vignette(size, 0.25), rng, luma=7.0, chroma=2.0)


def stone_maps(rng: np.random.Generator, px: int) -> tuple[np.ndarray, ...]:
    """Weathered stone: (colour, normal, ORM) with cracks, lichen and soft light."""
    size = (px, px)
    big, mid = smooth_noise(rng, size, 5), smooth_noise(rng, size, 24)
    fine = smooth_noise(rng, size, 160, 2)
    ridge = np.abs(smooth_noise(rng, size, 10) - 0.5)
    cracks = np.clip(1 - ridge / 0.015, 0, 1)
    height = 0.5 * big + 0.3 * mid + 0.2 * fine - 0.35 * cracks
    colour = np.array([142, 132, 118], np.float32) * (0.65 + 0.45 * height[..., None])
    lichen = np.clip((smooth_noise(rng, size, 12) - 0.62) * 6, 0, 1)[..., None]
    colour = colour * (1 - lichen) + np.array([96, 112, 62], np.float32) * lichen
    colour = sensor_noise(colour * vignette(size, 0.2), rng, luma=6.0, chroma=2.0)
    normal = normal_map(height, px / 6, rng)
    return colour, normal, orm_map(height, 0.75, 0.0, rng)


def wood_maps(rng: np.random.Generator, px: int) -> tuple[np.ndarray, ...]:
    """Planks with grain and seams: (colour, normal, ORM)."""
    size = (px, px)
    y, x = np.mgrid[0:px, 0:px].astype(np.float32)
    plank = px // 8
    warp = smooth_noise(rng, size, 8)
    rings = 0.5 + 0.5 * np.sin((x % plank) / plank * 30 + warp * 18 + (x // plank) * 7.3)
    fine = smooth_noise(rng, size, 200, 2)
    seam = (x % plank) < max(2, px // 512)
    height = 0.55 + 0.15 * rings + 0.1 * fine
    height[seam] = 0.0
    tone = 0.75 + 0.5 * smooth_noise(rng, (1, 8), 8, 1)[0][(x // plank).astype(int) % 8]
    colour = np.array([150, 98, 58], np.float32) * (
        (0.6 + 0.4 * rings) * tone * (0.9 + 0.2 * fine))[..., None]
    colour[seam] *= 0.35
    colour = sensor_noise(colour * vignette(size, 0.2), rng, luma=5.0, chroma=2.0)
    return colour, normal_map(height, px / 10, rng), orm_map(height, 0.6, 0.0, rng)


def orm_map(height: np.ndarray, roughness: float, metallic: float,
            rng: np.random.Generator) -> np.ndarray:
    """Occlusion (cavities of the height field darker), roughness around `roughness` with
    variation, metallic constant: R, G, B as glTF reads them."""
    size = height.shape
    cavity = height - np.asarray(Image.fromarray(height.astype(np.float32)).resize(
        (max(1, size[1] // 16), max(1, size[0] // 16)), Image.Resampling.BILINEAR).resize(
        (size[1], size[0]), Image.Resampling.BILINEAR))
    occ = np.clip(0.85 + 2.5 * cavity, 0, 1)
    rough = np.clip(roughness + 0.2 * (smooth_noise(rng, size, 16) - 0.5), 0, 1)
    img = np.stack([occ * 255, rough * 255, np.full(size, metallic * 255)], -1)
    return sensor_noise(img, rng, luma=2.0, chroma=1.0)


def atlas_map(rng: np.random.Generator, px: int) -> np.ndarray:
    """A 2 x 2 prop atlas: wood (top left), painted metal (top right), traffic-cone
    orange with a white band (bottom left), concrete (bottom right)."""
    half = px // 2
    wood = wood_maps(rng, half)[0].astype(np.float32)
    size = (half, half)
    y = np.mgrid[0:half, 0:half][0].astype(np.float32)
    metal = np.array([40, 70, 60], np.float32) * (0.8 + 0.4 * smooth_noise(rng, size, 8))[
        ..., None]
    scratches = rng.random(size) < 0.004
    metal[scratches] = 170
    cone = np.where(((y > half * 0.4) & (y < half * 0.6))[..., None],
                    np.array([235, 235, 230], np.float32), np.array([230, 90, 20], np.float32))
    cone = cone * (0.85 + 0.3 * smooth_noise(rng, size, 6))[..., None]
    concrete = np.array([150, 148, 140], np.float32) * (
        0.7 + 0.4 * smooth_noise(rng, size, 20))[..., None]
    img = np.concatenate([np.concatenate([wood, metal], 1), np.concatenate([cone, concrete], 1)])
    return sensor_noise(img, rng, luma=5.0, chroma=2.0)


# ---- facades --------------------------------------------------------------------------------
@dataclass(frozen=True)
class FacadesParams:
    buildings: int = 24
    lanterns: int = 60
    min_triangles: int = 10_000  # per building: façade grids + roof
    max_triangles: int = 40_000
    texture_px: int = 2048  # the lit-window base colour and emissive; normal and asphalt half
    seed: int = 18


def facade_building(rng: np.random.Generator, width: float, depth: float, height: float,
                    triangles: int, jitter: float, tile: float) -> tuple[Part, Part]:
    """(façades, roof) of a box building on the ground at its origin: four flat grids whose
    cell size gives about `triangles` triangles; UVs repeat the façade tile every `tile`
    metres."""
    cell = math.sqrt(2 * 2 * (width + depth) * height / triangles)
    nh = max(1, round(height / cell))
    sides = []
    for origin, du, dv, length in (
            ((-width / 2, 0, depth / 2), (width, 0, 0), (0, height, 0), width),
            ((width / 2, 0, depth / 2), (0, 0, -depth), (0, height, 0), depth),
            ((width / 2, 0, -depth / 2), (-width, 0, 0), (0, height, 0), width),
            ((-width / 2, 0, -depth / 2), (0, 0, depth), (0, height, 0), depth)):
        n = max(1, round(length / cell))
        sides.append(grid(n, nh, origin, du, dv, (0, height / tile), (length / tile, 0),
                          (0, -height / tile), jitter, rng))
    roof = grid(2, 2, (-width / 2, height, depth / 2), (width, 0, 0), (0, 0, -depth),
                (0, 0), (width / 4, 0), (0, depth / 4))
    return Part.join(sides), roof


def lantern_parts() -> tuple[Part, Part]:
    """(post, lamp) of a street lantern, ~300 triangles: a tapered post with a collar and
    an arm, and a glass lamp."""
    post = lathe([(0.09, 0.0), (0.09, 0.3), (0.065, 0.35), (0.055, 2.0), (0.05, 3.4),
                  (0.08, 3.45), (0.08, 3.55), (0.0, 3.6)], 16, (0.0, 0.0, 1.0, 1.0))
    lamp = lathe([(0.0, 3.6), (0.12, 3.62), (0.2, 3.85), (0.16, 4.0), (0.06, 4.1),
                  (0.0, 4.15)], 16, (0.0, 0.0, 1.0, 1.0))
    return post, lamp


def build_facades(p: FacadesParams = FacadesParams()) -> Document:
    rng = np.random.default_rng(p.seed)
    g = Gltf("facades")
    base, emissive, height = facade_night_maps(rng, p.texture_px)
    t_base = g.texture(encode(base, "JPEG"), "image/jpeg", "facade_night_basecolor")
    t_emit = g.texture(encode(emissive, "JPEG"), "image/jpeg", "facade_night_emissive")
    small = np.asarray(Image.fromarray(height.astype(np.float32)).resize(
        (p.texture_px // 2, p.texture_px // 2), Image.Resampling.BILINEAR))
    t_norm = g.texture(encode(normal_map(small, p.texture_px / 24, rng), "PNG"), "image/png",
                       "facade_normal")
    t_asph = g.texture(encode(asphalt_map(rng, p.texture_px // 2), "JPEG", 90), "image/jpeg",
                       "asphalt")
    m_facade = g.material("facade_night", pbrMetallicRoughness=pbr(t_base, roughness=0.85),
                          emissiveTexture={"index": t_emit}, emissiveFactor=[1.0, 1.0, 1.0],
                          normalTexture={"index": t_norm})
    m_roof = g.material("roof_tar", pbrMetallicRoughness=pbr(base=(0.08, 0.08, 0.09, 1),
                                                            roughness=0.95))
    m_street = g.material("asphalt", pbrMetallicRoughness=pbr(t_asph, roughness=0.9))
    m_metal = g.material("lantern_metal", pbrMetallicRoughness=pbr(
        base=(0.05, 0.06, 0.05, 1), metallic=0.9, roughness=0.4))
    m_glass = g.material("lantern_glass", pbrMetallicRoughness=pbr(base=(1, 0.9, 0.7, 1)),
                         emissiveFactor=[1.0, 0.78, 0.45])
    per_side = math.ceil(p.buildings / 2)
    street_half, tile = 7.0, 12.0
    buildings, x = [], [-per_side * 6.5, -per_side * 6.5]
    for i in range(p.buildings):
        side = i % 2
        width, depth = rng.uniform(9, 15), rng.uniform(10, 16)
        tall = rng.uniform(12, 36)
        target = int(rng.uniform(p.min_triangles, p.max_triangles))
        facades, roof = facade_building(rng, width, depth, tall, target - 8,
                                        3e-4 if i % 3 == 2 else 0.0, tile)
        mesh = g.mesh(f"building_{i:02d}", [(facades, m_facade), (roof, m_roof)])
        z = (street_half + depth / 2) * (1 if side else -1)
        buildings.append(g.node(f"building_{i:02d}", mesh, translation=(
            x[side] + width / 2, 0, z), rotation=Y_180 if side else None,
            extras={"floors": int(tall // 3)}))
        x[side] += width + rng.uniform(0.4, 2.0)
    length = max(x) + per_side * 6.5 + 10
    ground = grid(8, 2, (-per_side * 6.5 - 5, 0, street_half + 20), (length, 0, 0),
                  (0, 0, -2 * (street_half + 20)), (0, 0), (length / 8, 0),
                  (0, 2 * (street_half + 20) / 8))
    street = g.node("street_surface", g.mesh("street", [(ground, m_street)]))
    post, lamp = lantern_parts()
    lantern_mesh = g.mesh("lantern", [(post, m_metal), (lamp, m_glass)])
    lanterns = []
    for i in range(p.lanterns):
        side = i % 2
        along = -per_side * 6.5 + (i // 2 + 0.5) * (length - 10) / math.ceil(p.lanterns / 2)
        lanterns.append(g.node(f"lantern_{i:02d}", lantern_mesh, translation=(
            along, 0, (street_half - 1.2) * (1 if side else -1)),
            extras={"light": "sodium"}))
    root = g.node("night_street", children=[
        g.node("buildings", children=buildings), g.node("lanterns", children=lanterns),
        street], extras={"scene_kind": "facades"})
    return g.document("night_street", [root])


# ---- noisy_photo ----------------------------------------------------------------------------
@dataclass(frozen=True)
class NoisyPhotoParams:
    texture_px: int = 2048
    seed: int = 19


def rock_part(rng: np.random.Generator, radius: float, nu: int = 96, nv: int = 48) -> Part:
    """A lumpy rock: a UV sphere (with its seam column) pushed in and out by a few random
    waves, smooth-shaded."""
    theta = np.linspace(0, math.pi, nv + 1)[:, None]  # from the top
    phi = np.linspace(0, 2 * math.pi, nu + 1)[None, :]
    dirs = np.stack([np.sin(theta) * np.sin(phi), np.cos(theta) * np.ones_like(phi),
                     np.sin(theta) * np.cos(phi)], -1)
    r = np.ones(dirs.shape[:2])
    for _ in range(6):
        k = rng.normal(0, 1, 3)
        k *= rng.uniform(2, 6) / np.linalg.norm(k)
        r += rng.uniform(0.02, 0.08) * np.sin(dirs @ k + rng.uniform(0, 6.3))
    pos = dirs * (radius * r)[..., None] * np.array([1.0, 0.7, 1.0])
    uu, vv = np.meshgrid(np.linspace(0, 2, nu + 1), np.linspace(0, 1, nv + 1))
    idx = np.arange((nu + 1) * (nv + 1)).reshape(nv + 1, nu + 1)
    a, b = idx[:-1, :-1].ravel(), idx[:-1, 1:].ravel()
    c, d = idx[1:, :-1].ravel(), idx[1:, 1:].ravel()
    tris = np.concatenate([np.stack([a, c, d], 1), np.stack([a, d, b], 1)])
    flat = pos.reshape(-1, 3)
    tris = tris[_proper(flat, tris)]
    return Part(flat, smooth_normals(flat, tris), np.stack([uu.ravel(), vv.ravel()], 1), tris)


def build_noisy_photo(p: NoisyPhotoParams = NoisyPhotoParams()) -> Document:
    rng = np.random.default_rng(p.seed)
    g = Gltf("noisy_photo")
    sets = {}
    for name, maker in (("stone", stone_maps), ("wood", wood_maps)):
        colour, normal, orm = maker(rng, p.texture_px)
        t_c = g.texture(encode(colour, "JPEG"), "image/jpeg", f"{name}_basecolor")
        t_n = g.texture(encode(normal, "PNG"), "image/png", f"{name}_normal")
        t_o = g.texture(encode(orm, "PNG"), "image/png", f"{name}_orm")
        sets[name] = g.material(name, pbrMetallicRoughness=pbr(t_c, orm_texture=t_o),
                                normalTexture={"index": t_n}, occlusionTexture={"index": t_o})
    rock = g.mesh("rock", [(rock_part(rng, 1.2), sets["stone"])])
    wall = grid(96, 48, (-3, 0, 0), (6, 0, 0), (0, 3, 0), (0, 1.5), (3, 0), (0, -1.5))
    bumps = smooth_noise(rng, (49, 97), 6).ravel()
    wall.position[:, 2] += 0.04 * bumps
    wall_mesh = g.mesh("wall", [(wall, sets["stone"])])
    barrel = lathe([(0.0, 0.0), (0.3, 0.0), (0.3, 0.02)] + [
        (0.3 + 0.05 * math.sin(math.pi * t), 0.02 + 0.86 * t) for t in np.linspace(0, 1, 14)]
        + [(0.3, 0.9), (0.0, 0.9)], 40)
    barrel_mesh = g.mesh("barrel", [(barrel, sets["wood"])])
    crate_mesh = g.mesh("crate", [(box((0.8, 0.8, 0.8), (0, 0.4, 0), 6), sets["wood"])])
    stone = g.node("stone_group", children=[
        g.node("rock", rock, translation=(-1.5, 0.8, 1.5)),
        g.node("wall", wall_mesh, translation=(0, 0, -1))])
    wood = g.node("wood_group", children=[
        g.node("barrel", barrel_mesh, translation=(1.5, 0, 1.2)),
        g.node("crate", crate_mesh, translation=(2.6, 0, 0.4),
               rotation=(0, math.sin(math.pi / 12), 0, math.cos(math.pi / 12)))])
    return g.document("photo_set", [g.node("photo_set", children=[stone, wood])])


# ---- props ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class PropsParams:
    nodes: int = 400  # sharing the prop meshes
    duplicates: int = 40  # with their own identical copies of a prop mesh
    row: int = 20
    atlas_px: int = 1024
    seed: int = 20


WOOD, METAL, CONE, CONCRETE = (0, 0, .5, .5), (.5, 0, 1, .5), (0, .5, .5, 1), (.5, .5, 1, 1)


def prop_parts() -> dict[str, Part]:
    """Six small props, 100-700 triangles each, mapped into the atlas quadrants."""
    slats = [box((1.6, 0.04, 0.12), (0, 0.45, z), 2, WOOD) for z in (-0.14, 0, 0.14)]
    back = [box((1.6, 0.12, 0.04), (0, 0.6 + 0.15 * k, -0.22), 2, WOOD) for k in range(2)]
    legs = [box((0.06, 0.45, 0.4), (x, 0.225, 0), 1, METAL) for x in (-0.7, 0.7)]
    return {
        "crate": box((0.6, 0.6, 0.6), (0, 0.3, 0), 5, WOOD),
        "bin": lathe([(0.0, 0.0), (0.25, 0.0)]
                     + [(0.25 + 0.03 * t, 0.9 * t) for t in np.linspace(0, 1, 6)]
                     + [(0.3, 0.92), (0.0, 0.92)], 24, METAL),
        "bollard": lathe([(0.0, 0.0), (0.11, 0.0), (0.11, 0.8)] + [
            (0.11 * math.cos(a), 0.8 + 0.11 * math.sin(a)) for a in np.linspace(0, math.pi / 2, 6)],
            20, METAL),
        "cone": lathe([(0.0, 0.0), (0.22, 0.0), (0.22, 0.04)] + [
            (0.2 - 0.17 * t, 0.04 + 0.66 * t) for t in np.linspace(0, 1, 8)] + [(0.0, 0.7)],
            24, CONE),
        "bench": Part.join(slats + back + legs),
        "planter": Part.join([box((1.0, 0.5, 1.0), (0, 0.25, 0), 4, CONCRETE),
                              box((0.9, 0.02, 0.9), (0, 0.45, 0), 2, CONCRETE)]),
    }


def build_props(p: PropsParams = PropsParams()) -> Document:
    rng = np.random.default_rng(p.seed)
    g = Gltf("props")
    atlas = g.texture(encode(atlas_map(rng, p.atlas_px), "JPEG", 90), "image/jpeg", "props_atlas")
    mat = g.material("props_atlas", pbrMetallicRoughness=pbr(atlas, roughness=0.7))
    parts = prop_parts()
    names = sorted(parts)
    shared = {name: g.mesh(name, [(parts[name], mat)]) for name in names}
    rows: list[list[int]] = []
    counters = dict.fromkeys(names, 0)

    def place(i: int, name: str, mesh: int, label: str) -> None:
        if i % p.row == 0:
            rows.append([])
        yaw = rng.uniform(0, 2 * math.pi)
        rows[-1].append(g.node(label, mesh, translation=(
            (i % p.row) * 2.0 + rng.uniform(-0.3, 0.3), 0, (i // p.row) * 2.5),
            rotation=(0, math.sin(yaw / 2), 0, math.cos(yaw / 2))))

    for i in range(p.nodes):
        name = names[int(rng.integers(0, len(names)))]
        counters[name] += 1
        place(i, name, shared[name], f"{name}_{counters[name]:03d}")
    for k in range(p.duplicates):  # the same mesh exported again (no instancing in the tool)
        name = names[k % len(names)]
        place(p.nodes + k, name, g.mesh(f"{name}_copy_{k:02d}", [(parts[name], mat)]),
              f"{name}_copy_{k:02d}")
    groups = [g.node(f"row_{r:02d}", children=kids) for r, kids in enumerate(rows)]
    return g.document("plaza_props", [g.node("plaza", children=groups)])


# ---- city_block -----------------------------------------------------------------------------
@dataclass(frozen=True)
class CityBlockParams:
    buildings: int = 24
    texture_px: int = 2048
    bay: float = 3.0  # metres per window bay, across and up
    min_floors: int = 5
    max_floors: int = 14
    seed: int = 21


def window_bay(x: float, y: float, bay: float, uv: tuple[float, float, float, float],
               depth: float = 0.25) -> Part:
    """One bay of a façade in its plane (z = 0, facing +Z) with its lower-left corner at
    (x, y): the wall around a window opening, the opening's four reveal faces and its
    pane, recessed by `depth`, and a sill. UVs map the bay onto uv (u0, v0, u1, v1)."""
    u0, v0, u1, v1 = uv
    wx0, wx1, wy0, wy1 = x + bay * 0.25, x + bay * 0.75, y + bay * 0.3, y + bay * 0.8

    def tex(px: float, py: float) -> tuple[float, float]:  # façade point -> atlas
        return u0 + (px - x) / bay * (u1 - u0), v1 - (py - y) / bay * (v1 - v0)

    def quad(p0, p1, p2, p3) -> Part:  # counter-clockwise seen from the front
        pts = np.array([p0, p1, p2, p3], np.float64)
        n = np.cross(pts[1] - pts[0], pts[3] - pts[0])
        n /= np.linalg.norm(n)
        uvs = np.array([tex(pt[0], pt[1]) for pt in pts])
        return Part(pts, np.tile(n, (4, 1)), uvs, np.array([[0, 1, 2], [0, 2, 3]]))

    z = 0.0
    parts = [quad((x, y, z), (x + bay, y, z), (x + bay, wy0, z), (x, wy0, z)),         # below
             quad((x, wy1, z), (x + bay, wy1, z), (x + bay, y + bay, z), (x, y + bay, z)),
             quad((x, wy0, z), (wx0, wy0, z), (wx0, wy1, z), (x, wy1, z)),             # left
             quad((wx1, wy0, z), (x + bay, wy0, z), (x + bay, wy1, z), (wx1, wy1, z)),
             quad((wx0, wy0, -depth), (wx1, wy0, -depth), (wx1, wy1, -depth),        # pane
                  (wx0, wy1, -depth)),
             # the reveals, facing into the opening: its top faces down, its left side +X
             quad((wx0, wy1, -depth), (wx1, wy1, -depth), (wx1, wy1, z), (wx0, wy1, z)),
             quad((wx0, wy0, z), (wx1, wy0, z), (wx1, wy0, -depth), (wx0, wy0, -depth)),
             quad((wx0, wy0, z), (wx0, wy0, -depth), (wx0, wy1, -depth), (wx0, wy1, z)),
             quad((wx1, wy0, -depth), (wx1, wy0, z), (wx1, wy1, z), (wx1, wy1, -depth))]
    sill = box((wx1 - wx0 + 0.2, 0.06, 0.12), ((wx0 + wx1) / 2, wy0 - 0.03, 0.06), 1,
               (u0, v1 - 0.02 * (v1 - v0), u1, v1))
    return Part.join(parts + [sill])


def city_building(floors: int, across: int, deep: int, bay: float, style: int) -> Part:
    """A building of `across` x `deep` bays and `floors` storeys, every bay a window_bay,
    façades turned to face out; UVs in the atlas quadrant of `style` (0-3), one bay being
    a quarter of the quadrant."""
    qu, qv = (style % 2) * 0.5, (style // 2) * 0.5
    sides = []
    templates: dict[tuple[int, int], Part] = {}  # one bay per atlas cell, moved into place
    width, depth = across * bay, deep * bay
    # (bays along, rotation about Y, offset of the façade plane)
    for count, angle, offset in ((across, 0.0, (-width / 2, 0, depth / 2)),
                                 (deep, math.pi / 2, (width / 2, 0, depth / 2)),
                                 (across, math.pi, (width / 2, 0, -depth / 2)),
                                 (deep, -math.pi / 2, (-width / 2, 0, -depth / 2))):
        bays = []
        for f in range(floors):
            for b in range(count):
                key = (b % 4, f % 4)
                if key not in templates:
                    cu, cv = qu + key[0] * 0.125, qv + key[1] * 0.125
                    templates[key] = window_bay(0.0, 0.0, bay, (cu, cv, cu + 0.125, cv + 0.125))
                t = templates[key]
                bays.append(Part(t.position + (b * bay, f * bay, 0.0), t.normal, t.uv,
                                 t.indices))
        face = Part.join(bays)
        c, s = math.cos(angle), math.sin(angle)
        rot = np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
        sides.append(Part(face.position @ rot.T + offset, face.normal @ rot.T, face.uv,
                          face.indices))
    roof = grid(across, deep, (-width / 2, floors * bay, depth / 2), (width, 0, 0),
                (0, 0, -depth), (qu, qv + 0.5), (0.5, 0), (0, -0.5))
    parapet = box((width + 0.4, 0.6, depth + 0.4), (0, floors * bay + 0.3, 0), 2,
                  (qu, qv, qu + 0.5, qv + 0.0625))
    return Part.join(sides + [roof, parapet])


def build_city_block(p: CityBlockParams = CityBlockParams()) -> Document:
    rng = np.random.default_rng(p.seed)
    g = Gltf("city_block")
    half = p.texture_px // 2
    quads = [facade_night_maps(rng, half) for _ in range(4)]  # four façade styles
    colour = np.concatenate([np.concatenate([quads[0][0], quads[1][0]], 1),
                             np.concatenate([quads[2][0], quads[3][0]], 1)])
    height = np.concatenate([np.concatenate([quads[0][2], quads[1][2]], 1),
                             np.concatenate([quads[2][2], quads[3][2]], 1)])
    t_c = g.texture(encode(colour, "JPEG", 90), "image/jpeg", "facade_atlas_basecolor")
    t_n = g.texture(encode(normal_map(height, p.texture_px / 24, rng), "PNG"), "image/png",
                    "facade_atlas_normal")
    t_o = g.texture(encode(orm_map(height, 0.8, 0.0, rng), "PNG"), "image/png",
                    "facade_atlas_orm")
    t_g = g.texture(encode(asphalt_map(rng, p.texture_px), "JPEG", 90), "image/jpeg",
                    "ground_basecolor")
    m_facade = g.material("facade_atlas", pbrMetallicRoughness=pbr(t_c, orm_texture=t_o),
                          normalTexture={"index": t_n}, occlusionTexture={"index": t_o})
    m_ground = g.material("ground", pbrMetallicRoughness=pbr(t_g, roughness=0.9))
    cols = math.ceil(math.sqrt(p.buildings))
    lots: list[int] = []
    spacing = 12 * p.bay
    for i in range(p.buildings):
        across, deep = int(rng.integers(4, 9)), int(rng.integers(4, 9))
        floors = int(rng.integers(p.min_floors, p.max_floors + 1))
        style = int(rng.integers(0, 4))
        mesh = g.mesh(f"building_{i:02d}", [(city_building(floors, across, deep, p.bay, style),
                                            m_facade)])
        lots.append(g.node(f"lot_{i:02d}", children=[g.node(
            f"building_{i:02d}", mesh, extras={"floors": floors, "style": style})],
            translation=((i % cols) * spacing, 0, (i // cols) * spacing)))
    extent = cols * spacing
    ground = grid(16, 16, (-spacing / 2, 0, extent - spacing / 2), (extent, 0, 0),
                  (0, 0, -extent), (0, 0), (extent / 20, 0), (0, extent / 20))
    root = g.node("city_block", children=[
        g.node("buildings", children=lots),
        g.node("ground", g.mesh("ground", [(ground, m_ground)]))])
    return g.document("city_block", [root])


# ---- generation and caching -----------------------------------------------------------------
@dataclass(frozen=True)
class Kind:
    version: int  # bump when the output changes, so cached files are made again
    build: Callable[..., Document]
    params: object


KINDS: dict[str, Kind] = {
    "facades": Kind(1, build_facades, FacadesParams()),
    "noisy_photo": Kind(1, build_noisy_photo, NoisyPhotoParams()),
    "props": Kind(1, build_props, PropsParams()),
    "city_block": Kind(1, build_city_block, CityBlockParams()),
}


def build(kind: str, params: object | None = None, **changes) -> Document:
    """The Document of a kind, with its default params or `params`, fields changed by
    `changes` (tests build small versions: `build("props", nodes=10)`)."""
    spec = KINDS[kind]
    chosen = replace(params or spec.params, **changes)
    return spec.build(chosen)


def generate(kind: str, cache_dir: Path) -> Path:
    """The path of `kind`'s GLB at default params in `cache_dir`, written once per
    generator version (atomically, so a killed run leaves no half file)."""
    path = Path(cache_dir) / f"{kind}.v{KINDS[kind].version}.glb"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(write_glb(build(kind)))
        tmp.replace(path)
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("outdir", type=Path)
    p.add_argument("--kinds", default=",".join(KINDS), help="comma-separated: "
                   + ", ".join(KINDS))
    p.add_argument("--validate", action="store_true",
                   help="run the Khronos validator on each file (needs node)")
    args = p.parse_args(argv)
    for kind in [k.strip() for k in args.kinds.split(",") if k.strip()]:
        if kind not in KINDS:
            print(f"error: unknown kind {kind!r}", file=sys.stderr)
            return 2
        path = generate(kind, args.outdir)
        line = f"{kind}: {path} ({path.stat().st_size / 1e6:.1f} MB)"
        if args.validate:
            from tourserver.ingest.validator import validate_file

            report = validate_file(path)
            line += f", validator {report.errors} errors / {report.warnings} warnings"
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
