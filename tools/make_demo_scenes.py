#!/usr/bin/env python3
"""Procedural night scenes for the bundled demo tour "chongqing-night".

Writes one binary glTF 2.0 file per scene to assets/chongqing-night/scenes/:

    hongya-cave-facade      Hongyadong: stilt houses stacked up a cliff (the hero, ~226k tris)
    jiefangbei-monument     Liberation Monument: octagonal clock tower on its plaza
    chaotianmen-confluence  Chaotianmen: promontory plaza, docks, river, sail towers
    yangtze-cableway-cabin  Yangtze River Cableway: a lit cabin hanging from its cables
    liziba-monorail         Liziba: a monorail train entering a residential block
    nanshan-viewpoint       Nanshan Yikeshu: viewing platform facing a lit skyline panel

Conventions: glTF +Y up, metres, the scene's north along -Z (the manifest's anchor
`heading` rotates -Z onto a compass bearing), origin at the anchor point on the ground.
Materials are PBR metallic-roughness with Pillow-generated textures; glowing materials
carry an emissiveTexture and KHR_materials_emissive_strength (used, not required).

Everything is seeded, so re-running gives byte-identical files. Usage (repo root):

    python3 tools/make_demo_scenes.py                  # all scenes
    python3 tools/make_demo_scenes.py --only liziba-monorail --preview /tmp/prev
"""

from __future__ import annotations

# ruff: noqa: E741  (I is the conventional name for triangle index arrays here)
import argparse
import io
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pygltflib as gl
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
OUT_DIR = ROOT / "assets" / "chongqing-night" / "scenes"
GENERATOR = "tools/make_demo_scenes.py"
EXTRAS = {"generator": GENERATOR, "license": "CC0-1.0"}
EMISSIVE_EXT = "KHR_materials_emissive_strength"

F32 = np.float32

# =============================================================================
# Textures (Pillow + numpy, seeded)
# =============================================================================


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def _noise(size: int, seed: int, octaves: int = 4) -> np.ndarray:
    """Tileable value noise in [0, 1] (sum of upsampled random grids)."""
    rng = _rng(seed)
    acc = np.zeros((size, size), F32)
    amp, tot = 1.0, 0.0
    for o in range(octaves):
        cells = 4 * 2**o
        g = rng.random((cells, cells)).astype(F32)
        img = Image.fromarray((g * 255).astype(np.uint8), "L")
        # Tile 3x3 before resizing so the result wraps, then crop the centre.
        big = Image.new("L", (cells * 3, cells * 3))
        for i in range(3):
            for j in range(3):
                big.paste(img, (i * cells, j * cells))
        big = big.resize((size * 3, size * 3), Image.BICUBIC)
        a = np.asarray(big, F32)[size : 2 * size, size : 2 * size] / 255.0
        acc += amp * a
        tot += amp
        amp *= 0.5
    return acc / tot


def _to_img(rgb: np.ndarray) -> Image.Image:
    return Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8), "RGB")


def tex_wood(size=1024, seed=1):
    y, x = np.mgrid[0:size, 0:size].astype(F32) / size
    n = _noise(size, seed, 5)
    planks = 8
    pid = np.floor(x * planks)
    rng = _rng(seed + 1)
    shade = rng.uniform(0.8, 1.15, planks).astype(F32)[pid.astype(int)]
    grain = 0.5 + 0.5 * np.sin((x * planks * 18 + n * 6 + pid * 1.7) * math.pi)
    base = np.stack([96 + 38 * grain, 52 + 22 * grain, 28 + 12 * grain], -1) * shade[..., None]
    base *= (0.85 + 0.3 * n)[..., None]
    edge = np.abs((x * planks) % 1 - 0.5) > 0.485
    base[edge] *= 0.45
    return _to_img(base)


def tex_roof(size=512, seed=2):
    y, x = np.mgrid[0:size, 0:size].astype(F32) / size
    n = _noise(size, seed, 4)
    cols, rows = 16, 12
    cx = (x * cols) % 1
    ry = (y * rows) % 1
    tile = np.sin(cx * math.pi) ** 0.6  # rounded channel tiles
    lap = 0.55 + 0.45 * ry  # each row darker at its top edge
    v = (0.35 + 0.65 * tile) * lap * (0.8 + 0.4 * n)
    base = np.stack([58 * v + 14, 62 * v + 14, 66 * v + 16], -1)
    return _to_img(base)


def tex_stone(size=1024, seed=3, tint=(128, 124, 116), brick=(0.5, 0.25), mortar=0.04):
    """Stone blocks / bricks with mortar lines, running bond."""
    y, x = np.mgrid[0:size, 0:size].astype(F32) / size
    bw, bh = brick
    row = np.floor(y / bh)
    xs = x + (row % 2) * bw * 0.5
    col = np.floor(xs / bw)
    rng = _rng(seed)
    var = rng.uniform(0.75, 1.2, (64, 64)).astype(F32)
    shade = var[(row % 64).astype(int), (col % 64).astype(int)]
    n = _noise(size, seed + 7, 5)
    fx = (xs / bw) % 1
    fy = (y / bh) % 1
    m = (fx < mortar / bw) | (fy < mortar / bh)
    base = np.array(tint, F32)[None, None, :] * (shade * (0.7 + 0.5 * n))[..., None]
    base[m] = np.array(tint, F32) * 0.45
    return _to_img(base)


def tex_rock(size=1024, seed=4):
    n = _noise(size, seed, 6)
    n2 = _noise(size, seed + 1, 3)
    strata = 0.5 + 0.5 * np.sin((np.mgrid[0:size, 0:size][0] / size * 14 + n2 * 3) * math.pi)
    v = 0.45 + 0.35 * n + 0.2 * strata
    base = np.stack([92 * v, 86 * v, 76 * v], -1)
    return _to_img(base)


def tex_lattice(size=512, seed=5, lit=True, glow=(255, 196, 110)):
    """Paper window with a carved wooden lattice (base) / its glow (emissive)."""
    y, x = np.mgrid[0:size, 0:size].astype(F32) / size
    n = _noise(size, seed, 3)
    paper = np.array(glow if lit else (120, 100, 80), F32)
    img = paper[None, None, :] * (0.85 + 0.25 * n)[..., None]
    # radial falloff like a lamp behind paper
    r = np.hypot(x - 0.5, y - 0.45)
    img *= (1.15 - 0.6 * r)[..., None]
    # lattice: 6x8 grid + diagonal "ice-crack" bars + thick frame
    grid = (np.abs((x * 6) % 1 - 0.5) > 0.44) | (np.abs((y * 8) % 1 - 0.5) > 0.44)
    diag = np.abs(((x + y) * 4) % 1 - 0.5) > 0.47
    frame = (x < 0.06) | (x > 0.94) | (y < 0.06) | (y > 0.94)
    wood = grid | (diag & ~frame & (np.abs(x - 0.5) < 0.3)) | frame
    img[wood] = (40, 22, 12) if not lit else (0, 0, 0)
    if not lit:
        img[wood] = (70, 38, 20)
    return _to_img(img)


def tex_lantern(size=512, seed=6, lit=True):
    y, x = np.mgrid[0:size, 0:size].astype(F32) / size
    n = _noise(size, seed, 3)
    red = np.array((255, 70, 40) if lit else (190, 30, 25), F32)
    img = red[None, None, :] * (0.8 + 0.3 * n)[..., None]
    core = np.sin(y * math.pi) ** 0.7  # brighter belly
    img *= (0.55 + 0.6 * core)[..., None]
    ribs = np.abs((x * 16) % 1 - 0.5) > 0.45
    img[ribs] *= 0.55
    bands = (y < 0.08) | (y > 0.92)
    img[bands] = (230, 170, 60) if lit else (170, 120, 40)
    tassel = (y > 0.96) & (np.abs(x - 0.5) < 0.04)
    img[tassel] = (200, 160, 40)
    return _to_img(img)


def tex_windows(
    size=1024, seed=7, cols=8, rows=16, frac=0.7, lit=True, frame=(30, 34, 40), warm=True
):
    """Curtain-wall facade: a grid of windows, some lit (warm/cool mix)."""
    y, x = np.mgrid[0:size, 0:size].astype(F32) / size
    rng = _rng(seed)
    on = rng.random((rows, cols)) < frac
    hue = rng.random((rows, cols))
    ci = np.clip((x * cols).astype(int), 0, cols - 1)
    ri = np.clip((y * rows).astype(int), 0, rows - 1)
    fx, fy = (x * cols) % 1, (y * rows) % 1
    pane = (fx > 0.12) & (fx < 0.88) & (fy > 0.18) & (fy < 0.86)
    warmc = np.array((255, 200, 120), F32)
    coolc = np.array((190, 220, 255), F32)
    mix = (hue[ri, ci] > (0.25 if warm else 0.7))[..., None]
    col = np.where(mix, warmc, coolc)
    bright = (0.6 + 0.4 * rng.random((rows, cols)))[ri, ci][..., None]
    img = np.broadcast_to(np.array(frame, F32), (size, size, 3)).copy()
    lit_mask = pane & on[ri, ci]
    if lit:
        img[:] = 0
        img[lit_mask] = (col * bright)[lit_mask]
    else:
        dark = np.array((22, 30, 44), F32)
        img[pane] = dark
        img[lit_mask] = (col * bright * 0.8)[lit_mask]
    return _to_img(img)


def tex_clock(size=512, lit=True):
    img = Image.new("RGB", (size, size), (0, 0, 0) if lit else (40, 40, 40))
    d = ImageDraw.Draw(img)
    c = size / 2
    face = (255, 244, 214) if lit else (235, 230, 215)
    d.ellipse([8, 8, size - 8, size - 8], fill=(150, 120, 60))
    d.ellipse([24, 24, size - 24, size - 24], fill=face)
    for h in range(60):
        a = h / 60 * 2 * math.pi
        r0 = c - 40 if h % 5 else c - 70
        w = 3 if h % 5 else 10
        d.line(
            [
                (c + (c - 34) * math.sin(a), c - (c - 34) * math.cos(a)),
                (c + r0 * math.sin(a), c - r0 * math.cos(a)),
            ],
            fill=(30, 24, 20),
            width=w,
        )
    # hands at 21:47 (night)
    for frac, ln, w in (((9 + 47 / 60) / 12, c * 0.5, 16), (47 / 60, c * 0.75, 9)):
        a = frac * 2 * math.pi
        d.line([(c, c), (c + ln * math.sin(a), c - ln * math.cos(a))], fill=(20, 16, 12), width=w)
    d.ellipse([c - 14, c - 14, c + 14, c + 14], fill=(120, 90, 40))
    return img


def tex_concrete(size=512, seed=8, tint=(170, 166, 158)):
    n = _noise(size, seed, 6)
    y = np.mgrid[0:size, 0:size][0] / size
    seams = np.abs((y * 8) % 1 - 0.5) > 0.49
    v = 0.72 + 0.4 * n
    img = np.array(tint, F32)[None, None, :] * v[..., None]
    img[seams] *= 0.7
    return _to_img(img)


def tex_water(size=1024, seed=9, lit=False):
    y, x = np.mgrid[0:size, 0:size].astype(F32) / size
    n = _noise(size, seed, 5)
    rip = 0.5 + 0.5 * np.sin((y * 60 + n * 8) * math.pi)
    if not lit:
        v = 0.6 + 0.4 * n
        img = np.stack([14 * v + 4 * rip, 26 * v + 6 * rip, 40 * v + 10 * rip], -1)
        return _to_img(img)
    # emissive: broken streaks of reflected city light
    rng = _rng(seed + 1)
    img = np.zeros((size, size, 3), F32)
    streak = (rip > 0.82) & (n > 0.45)
    cols = rng.random((size,)).astype(F32)
    band = np.sin(x * 23 * math.pi + n * 4) > 0.3
    warm = np.array((255, 170, 70), F32)
    cool = np.array((120, 170, 255), F32)
    c = np.where((cols[(x * size).astype(int) % size] > 0.5)[..., None], warm, cool)
    img[streak & band] = c[streak & band] * 0.8
    return _to_img(img)


def tex_strip(size=256, color=(120, 200, 255)):
    y, x = np.mgrid[0:size, 0:size].astype(F32) / size
    core = np.exp(-(((y - 0.5) / 0.18) ** 2))
    dots = 0.75 + 0.25 * (np.sin(x * 32 * math.pi) > 0)
    img = np.array(color, F32)[None, None, :] * (core * dots)[..., None]
    img += 255 * (core**6)[..., None] * 0.6
    return _to_img(img)


def tex_metal(size=512, seed=10, tint=(90, 94, 100)):
    n = _noise(size, seed, 3)
    x = np.mgrid[0:size, 0:size][1] / size
    brushed = _noise(size, seed + 3, 6)
    v = 0.75 + 0.2 * n + 0.15 * (brushed - 0.5)
    img = np.array(tint, F32)[None, None, :] * v[..., None]
    del x
    return _to_img(img)


def tex_paint(size=512, seed=11, color=(190, 28, 30), stripe=(235, 235, 230)):
    y, x = np.mgrid[0:size, 0:size].astype(F32) / size
    n = _noise(size, seed, 4)
    img = np.array(color, F32)[None, None, :] * (0.85 + 0.25 * n)[..., None]
    s = (y > 0.70) & (y < 0.76)
    img[s] = np.array(stripe, F32)
    return _to_img(img)


def tex_foliage(size=512, seed=12):
    n = _noise(size, seed, 6)
    n2 = _noise(size, seed + 1, 2)
    v = 0.35 + 0.65 * n
    img = np.stack([18 * v + 10 * n2, 52 * v + 16 * n2, 24 * v], -1)
    return _to_img(img)


def tex_bark(size=512, seed=13):
    y, x = np.mgrid[0:size, 0:size].astype(F32) / size
    n = _noise(size, seed, 5)
    fur = 0.5 + 0.5 * np.sin((x * 24 + n * 5) * math.pi)
    v = 0.45 + 0.35 * fur + 0.2 * n
    img = np.stack([70 * v, 56 * v, 42 * v], -1)
    return _to_img(img)


def tex_skyline(size=1024, seed=14, lit=True):
    """RGBA skyline silhouette of the Yuzhong peninsula with lit windows."""
    rng = _rng(seed)
    w, h = size, size // 2
    alpha = Image.new("L", (w, h), 0)
    da = ImageDraw.Draw(alpha)
    rgb = np.zeros((h, w, 3), F32)
    # hills
    xs = np.arange(w)
    hill = (h * (0.78 - 0.1 * np.sin(xs / w * math.pi * 1.3) - 0.04 * np.sin(xs / w * 11))).astype(
        int
    )
    for i in range(w):
        da.line([(i, hill[i]), (i, h)], fill=255)
    towers = []
    x = 0
    while x < w:
        tw = int(rng.integers(10, 34))
        th = int(h * (0.15 + 0.55 * rng.random() * (1.0 - abs(x / w - 0.55))))
        top = hill[min(x, w - 1)] - th
        towers.append((x, top, tw))
        da.rectangle([x, top, x + tw - 2, h], fill=255)
        if rng.random() < 0.3:  # spire
            da.polygon([(x, top), (x + tw // 2, top - tw), (x + tw - 2, top)], fill=255)
        x += tw + int(rng.integers(-4, 3))
    a = np.asarray(alpha, F32) / 255.0
    base = np.array((16, 20, 34), F32)
    rgb[:] = base
    yy, xx = np.mgrid[0:h, 0:w]
    win = ((xx % 4) < 2) & ((yy % 5) < 2)
    on = rng.random((h, w)) < 0.45
    col = np.where(
        (rng.random((h, w)) < 0.7)[..., None],
        np.array((255, 205, 130), F32),
        np.array((170, 210, 255), F32),
    )
    mask = win & on & (a > 0.5) & (yy > 6)
    # crown lights on tower tops
    for tx, top, tw in towers:
        if rng.random() < 0.5:
            rgb[max(top, 0) : max(top, 0) + 2, tx : tx + tw - 2] = (
                (120, 220, 255) if rng.random() < 0.5 else (255, 120, 200)
            )
            if lit:
                mask[max(top, 0) : max(top, 0) + 2, tx : tx + tw - 2] = True
    if lit:
        out = np.zeros_like(rgb)
        out[mask] = col[mask]
        keep = (rgb != base).any(-1) & mask
        out[keep] = rgb[keep]
    else:
        out = rgb.copy()
        out[mask] = col[mask] * 0.8
    rgba = np.dstack([np.clip(out, 0, 255), a * 255]).astype(np.uint8)
    full = np.zeros((size, size, 4), np.uint8)
    full[size - h :, :, :] = rgba
    return Image.fromarray(full, "RGBA")


def tex_interior(size=256, seed=15):
    y, x = np.mgrid[0:size, 0:size].astype(F32) / size
    n = _noise(size, seed, 3)
    glow = 1.0 - 0.5 * np.abs(y - 0.4)
    img = np.array((255, 226, 170), F32)[None, None, :] * (glow * (0.8 + 0.2 * n))[..., None]
    mull = np.abs((x * 4) % 1 - 0.5) > 0.46
    img[mull] = (10, 10, 12)
    return _to_img(img)


def encode_image(img: Image.Image, fmt: str) -> tuple[bytes, str]:
    bio = io.BytesIO()
    if fmt == "jpeg":
        img.convert("RGB").save(bio, "JPEG", quality=88, optimize=True, subsampling=0)
        return bio.getvalue(), "image/jpeg"
    img.save(bio, "PNG", optimize=True)
    return bio.getvalue(), "image/png"


# =============================================================================
# Geometry
# =============================================================================


class MeshBuf:
    """Triangles grouped by material name, in a node's local space."""

    def __init__(self):
        self.groups: dict[str, list[list[np.ndarray]]] = {}

    def add(self, mat: str, P, N, UV, I):
        g = self.groups.setdefault(mat, [[], [], [], [], [0]])
        off = g[4][0]
        g[0].append(np.asarray(P, F32).reshape(-1, 3))
        g[1].append(np.asarray(N, F32).reshape(-1, 3))
        g[2].append(np.asarray(UV, F32).reshape(-1, 2))
        g[3].append(np.asarray(I, np.int64).reshape(-1) + off)
        g[4][0] += len(g[0][-1])

    def tri_count(self) -> int:
        return sum(int(sum(len(i) for i in g[3]) // 3) for g in self.groups.values())


def _yaw(v, yaw):
    if not yaw:
        return np.asarray(v, F32)
    c, s = math.cos(yaw), math.sin(yaw)
    v = np.asarray(v, F32)
    x, y, z = v[..., 0], v[..., 1], v[..., 2]
    return np.stack([c * x + s * z, y, -s * x + c * z], -1).astype(F32)


def quad(mb, mat, p0, eu, ev, uv=(0, 0, 1, 1)):
    p0, eu, ev = (np.asarray(a, F32) for a in (p0, eu, ev))
    n = np.cross(eu, ev)
    n = n / np.linalg.norm(n)
    P = [p0, p0 + eu, p0 + eu + ev, p0 + ev]
    u0, v0, u1, v1 = uv
    UV = [(u0, v1), (u1, v1), (u1, v0), (u0, v0)]
    mb.add(mat, P, [n] * 4, UV, [0, 1, 2, 0, 2, 3])


def box(mb, mat, c, s, uvs=1.0, yaw=0.0, faces="+x-x+y-y+z-z"):
    """Axis box (optionally yawed about its centre). UVs in world units / uvs."""
    c = np.asarray(c, F32)
    hx, hy, hz = (x / 2 for x in s)
    defs = {
        "+x": ((hx, -hy, hz), (0, 0, -2 * hz), (0, 2 * hy, 0)),
        "-x": ((-hx, -hy, -hz), (0, 0, 2 * hz), (0, 2 * hy, 0)),
        "+z": ((-hx, -hy, hz), (2 * hx, 0, 0), (0, 2 * hy, 0)),
        "-z": ((hx, -hy, -hz), (-2 * hx, 0, 0), (0, 2 * hy, 0)),
        "+y": ((-hx, hy, hz), (2 * hx, 0, 0), (0, 0, -2 * hz)),
        "-y": ((-hx, -hy, -hz), (2 * hx, 0, 0), (0, 0, 2 * hz)),
    }
    for k in ("+x", "-x", "+y", "-y", "+z", "-z"):
        if k not in faces:
            continue
        o, eu, ev = defs[k]
        lu = np.linalg.norm(eu) / uvs
        lv = np.linalg.norm(ev) / uvs
        quad(mb, mat, c + _yaw(o, yaw), _yaw(eu, yaw), _yaw(ev, yaw), (0, 0, lu, lv))


def beam(mb, mat, a, b, w, h=None, uvs=1.0):
    """Box of cross-section w x h from point a to point b (any direction)."""
    a, b = np.asarray(a, F32), np.asarray(b, F32)
    h = w if h is None else h
    d = b - a
    L = float(np.linalg.norm(d))
    t = d / L
    up = np.array((0, 1, 0), F32) if abs(t[1]) < 0.9 else np.array((1, 0, 0), F32)
    sx = np.cross(up, t)
    sx /= np.linalg.norm(sx)
    sy = np.cross(t, sx)
    hw, hh = w / 2, h / 2
    corners = [(-hw, -hh), (hw, -hh), (hw, hh), (-hw, hh)]
    for i in range(4):
        c0, c1 = corners[i], corners[(i + 1) % 4]
        p0 = a + sx * c0[0] + sy * c0[1]
        e = sx * (c1[0] - c0[0]) + sy * (c1[1] - c0[1])
        quad(mb, mat, p0, e, d, (0, 0, np.linalg.norm(e) / uvs, L / uvs))
    # end caps
    for p, s in ((a, -1), (b, 1)):
        p0 = p - sx * hw * s - sy * hh
        quad(mb, mat, p0, sx * w * s, sy * h, (0, 0, w / uvs, h / uvs))


def grid(mb, mat, fn, nu, nv, uv_scale=(1.0, 1.0)):
    """Parametric surface fn(u, v) -> (..., 3) over [0,1]^2 with (nu x nv) cells."""
    u = np.linspace(0, 1, nu + 1, dtype=np.float64)
    v = np.linspace(0, 1, nv + 1, dtype=np.float64)
    U, V = np.meshgrid(u, v, indexing="xy")
    P = np.asarray(fn(U, V), np.float64)
    eps = 1e-4
    du = np.asarray(fn(np.clip(U + eps, 0, 1), V)) - np.asarray(fn(np.clip(U - eps, 0, 1), V))
    dv = np.asarray(fn(U, np.clip(V + eps, 0, 1))) - np.asarray(fn(U, np.clip(V - eps, 0, 1)))
    N = np.cross(du, dv)
    ln = np.linalg.norm(N, axis=-1, keepdims=True)
    N = np.where(ln > 1e-12, N / np.maximum(ln, 1e-12), np.array((0, 1, 0)))
    UV = np.stack([U * uv_scale[0], V * uv_scale[1]], -1)
    idx = np.arange((nu + 1) * (nv + 1)).reshape(nv + 1, nu + 1)
    a, b = idx[:-1, :-1], idx[:-1, 1:]
    c, d = idx[1:, 1:], idx[1:, :-1]
    I = np.stack([a, b, c, a, c, d], -1).reshape(-1)
    mb.add(mat, P.reshape(-1, 3), N.reshape(-1, 3), UV.reshape(-1, 2), I)


def lathe(mb, mat, profile, seg, center=(0, 0, 0), uv_v=1.0, caps=True, flat=False, phase=0.0):
    """Surface of revolution of a (radius, y) profile around +Y. Fan caps at the ends."""
    cx, cy, cz = center
    prof = np.asarray(profile, np.float64)
    if flat:
        for i in range(seg):
            a0 = phase + 2 * math.pi * i / seg
            a1 = phase + 2 * math.pi * (i + 1) / seg
            for j in range(len(prof) - 1):
                r0, y0 = prof[j]
                r1, y1 = prof[j + 1]
                p = [
                    (cx + r0 * math.sin(a0), cy + y0, cz + r0 * math.cos(a0)),
                    (cx + r0 * math.sin(a1), cy + y0, cz + r0 * math.cos(a1)),
                    (cx + r1 * math.sin(a1), cy + y1, cz + r1 * math.cos(a1)),
                    (cx + r1 * math.sin(a0), cy + y1, cz + r1 * math.cos(a0)),
                ]
                p = np.asarray(p, F32)
                n = np.cross(p[1] - p[0], p[3] - p[0])
                if np.linalg.norm(n) < 1e-9:
                    n = np.cross(p[2] - p[1], p[3] - p[1])
                n = n / np.linalg.norm(n)
                w = 2 * math.pi * max(r0, r1) / seg
                mb.add(
                    mat,
                    p,
                    [n] * 4,
                    [(0, y0 / uv_v), (w, y0 / uv_v), (w, y1 / uv_v), (0, y1 / uv_v)],
                    [0, 1, 2, 0, 2, 3],
                )
    else:

        def fn(U, V):
            a = phase + U * 2 * math.pi
            k = V * (len(prof) - 1)
            j = np.clip(np.floor(k).astype(int), 0, len(prof) - 2)
            f = k - j
            r = prof[j, 0] * (1 - f) + prof[j + 1, 0] * f
            y = prof[j, 1] * (1 - f) + prof[j + 1, 1] * f
            return np.stack([cx + r * np.sin(a), cy + y, cz + r * np.cos(a)], -1)

        # sample exactly at profile knots
        n_v = len(prof) - 1
        u = np.linspace(0, 1, seg + 1)
        V = np.arange(n_v + 1) / n_v
        UU, VV = np.meshgrid(u, V, indexing="xy")
        P = fn(UU, VV)
        # normals from profile tangent
        a = phase + UU * 2 * math.pi
        dr = np.gradient(prof[:, 0])
        dy = np.gradient(prof[:, 1])
        nr, ny = dy, -dr
        ln = np.hypot(nr, ny)
        nr, ny = nr / ln, ny / ln
        NR = np.broadcast_to(nr[:, None], UU.shape)
        NY = np.broadcast_to(ny[:, None], UU.shape)
        N = np.stack([NR * np.sin(a), NY, NR * np.cos(a)], -1)
        circ = 2 * math.pi * max(prof[:, 0].max(), 1e-3)
        UV = np.stack(
            [UU * circ / max(uv_v, 1e-6), np.broadcast_to(prof[:, 1][:, None], UU.shape) / uv_v], -1
        )
        idx = np.arange((seg + 1) * (n_v + 1)).reshape(n_v + 1, seg + 1)
        A, B = idx[:-1, :-1], idx[:-1, 1:]
        C, D = idx[1:, 1:], idx[1:, :-1]
        # profile goes bottom -> top: (A, D, C, A, C, B) gives outward faces
        I = np.stack([A, B, C, A, C, D], -1).reshape(-1)
        # orient: check first triangle normal vs N
        P3 = P.reshape(-1, 3)
        t = I[:3]
        fn_ = np.cross(P3[t[1]] - P3[t[0]], P3[t[2]] - P3[t[0]])
        if np.dot(fn_, N.reshape(-1, 3)[t[0]]) < 0:
            I = np.stack([A, C, B, A, D, C], -1).reshape(-1)
        mb.add(mat, P3, N.reshape(-1, 3), UV.reshape(-1, 2), I)
    if caps:
        for (r, y), up in ((prof[0], -1), (prof[-1], 1)):
            if r < 1e-6:
                continue
            ang = phase + np.arange(seg) / seg * 2 * math.pi
            ring = np.stack([cx + r * np.sin(ang), np.full(seg, cy + y), cz + r * np.cos(ang)], -1)
            P = np.vstack([[cx, cy + y, cz], ring])
            N = np.tile([0, up, 0], (seg + 1, 1))
            UV = np.vstack(
                [[0.5, 0.5], np.stack([0.5 + 0.5 * np.sin(ang), 0.5 + 0.5 * np.cos(ang)], -1)]
            )
            I = []
            for i in range(seg):
                j = (i + 1) % seg
                I += [0, 1 + i, 1 + j] if up > 0 else [0, 1 + j, 1 + i]
            mb.add(mat, P, N, UV, I)


def disc(mb, mat, center, radius, normal_axis="+z", seg=48):
    """Flat disc facing +Z or -Z (clock faces) with 0..1 UVs."""
    cx, cy, cz = center
    ang = np.arange(seg) / seg * 2 * math.pi
    s = 1 if normal_axis == "+z" else -1
    ring = np.stack(
        [cx + s * radius * np.sin(ang), cy + radius * np.cos(ang), np.full(seg, cz)], -1
    )
    P = np.vstack([[cx, cy, cz], ring])
    N = np.tile([0, 0, s], (seg + 1, 1))
    UV = np.vstack([[0.5, 0.5], np.stack([0.5 + 0.5 * np.sin(ang), 0.5 - 0.5 * np.cos(ang)], -1)])
    I = []
    for i in range(seg):
        j = (i + 1) % seg
        I += [0, 1 + j, 1 + i]
    # fix winding to face +normal
    P3 = np.asarray(P, F32)
    n = np.cross(P3[I[1]] - P3[I[0]], P3[I[2]] - P3[I[0]])
    if n[2] * s < 0:
        I = [I[k] for t in range(0, len(I), 3) for k in (t, t + 2, t + 1)]
    mb.add(mat, P, N, UV, I)


def cylinder(mb, mat, a, b, r, seg=12, uvs=1.0, caps=False):
    """Round tube from a to b."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    d = b - a
    L = np.linalg.norm(d)
    t = d / L
    up = np.array((0, 1, 0.0)) if abs(t[1]) < 0.9 else np.array((1, 0, 0.0))
    sx = np.cross(up, t)
    sx /= np.linalg.norm(sx)
    sy = np.cross(t, sx)
    ang = np.arange(seg + 1) / seg * 2 * math.pi
    ring = np.cos(ang)[:, None] * sx + np.sin(ang)[:, None] * sy
    P = np.vstack([a + r * ring, b + r * ring])
    N = np.vstack([ring, ring])
    circ = 2 * math.pi * r
    UV = np.vstack(
        [
            np.stack([ang / (2 * math.pi) * circ / uvs, np.zeros(seg + 1)], -1),
            np.stack([ang / (2 * math.pi) * circ / uvs, np.full(seg + 1, L / uvs)], -1),
        ]
    )
    I = []
    n1 = seg + 1
    for i in range(seg):
        I += [i, i + 1, n1 + i + 1, i, n1 + i + 1, n1 + i]
    P3 = P
    tri = np.cross(P3[I[1]] - P3[I[0]], P3[I[2]] - P3[I[0]])
    if np.dot(tri, N[I[0]]) < 0:
        I = [I[k] for q in range(0, len(I), 3) for k in (q, q + 2, q + 1)]
    mb.add(mat, P, N, UV, I)


def polyline_tube(mb, mat, pts, r, seg=8, uvs=1.0):
    for p, q in zip(pts[:-1], pts[1:], strict=False):
        cylinder(mb, mat, p, q, r, seg, uvs)


def lantern(mb, mat, c, r=0.22, h=0.42, seg=10):
    """Chinese paper lantern: barrel body plus small caps."""
    prof = [
        (r * 0.35, -h / 2),
        (r * 0.8, -h * 0.38),
        (r, -h * 0.15),
        (r, h * 0.15),
        (r * 0.8, h * 0.38),
        (r * 0.35, h / 2),
    ]
    lathe(mb, mat, prof, seg, center=c, uv_v=h, caps=True)


# =============================================================================
# Scene assembly and GLB writing (pygltflib)
# =============================================================================


@dataclass
class Mat:
    name: str
    base: str  # texture key
    emissive: str | None = None
    strength: float = 1.0
    metallic: float = 0.0
    roughness: float = 0.8
    double: bool = False
    alpha_mask: bool = False
    tint: tuple = (1.0, 1.0, 1.0, 1.0)


@dataclass
class SNode:
    name: str
    mesh: MeshBuf | None = None
    translation: tuple | None = None
    rotation_y: float = 0.0
    children: list = field(default_factory=list)
    extras: dict | None = None

    def child(self, name, **kw) -> SNode:
        n = SNode(name, **kw)
        self.children.append(n)
        return n


class SceneWriter:
    def __init__(self, name: str):
        self.name = name
        self.textures: dict[str, tuple[Image.Image, str]] = {}
        self.materials: dict[str, Mat] = {}

    def texture(self, key: str, img: Image.Image, fmt: str = "jpeg"):
        self.textures[key] = (img, fmt)

    def material(self, m: Mat):
        self.materials[m.name] = m

    def write(self, root: SNode, path: Path) -> dict:
        g = gl.GLTF2()
        g.asset = gl.Asset(version="2.0", generator=GENERATOR)
        blob = bytearray()
        views: dict[str, bytearray] = {
            "pos": bytearray(),
            "nrm": bytearray(),
            "uv": bytearray(),
            "i16": bytearray(),
            "i32": bytearray(),
        }
        pending = []  # (accessor, view key, offset)

        used_mats: list[str] = []
        stats = {"triangles": 0, "vertices": 0, "nodes": 0}

        def add_acc(key, arr, ctype, atype, minmax=False):
            buf = views[key]
            off = len(buf)
            buf += arr.tobytes()
            while len(buf) % 4:
                buf += b"\x00"
            acc = gl.Accessor(componentType=ctype, count=int(len(arr)), type=atype, byteOffset=off)
            if minmax:
                acc.min = [float(x) for x in arr.min(0)]
                acc.max = [float(x) for x in arr.max(0)]
            g.accessors.append(acc)
            pending.append((acc, key))
            return len(g.accessors) - 1

        def emit_mesh(name: str, mb: MeshBuf) -> int:
            prims = []
            for mat, (Ps, Ns, UVs, Is, _) in mb.groups.items():
                P = np.vstack(Ps).astype(F32)
                N = np.vstack(Ns).astype(np.float64)
                N = (N / np.linalg.norm(N, axis=1, keepdims=True)).astype(F32)
                UV = np.vstack(UVs).astype(F32)
                I = np.concatenate(Is)
                if len(P) < 65535:
                    ia = add_acc("i16", I.astype(np.uint16), gl.UNSIGNED_SHORT, gl.SCALAR)
                else:
                    ia = add_acc("i32", I.astype(np.uint32), gl.UNSIGNED_INT, gl.SCALAR)
                attrs = gl.Attributes(
                    POSITION=add_acc("pos", P, gl.FLOAT, gl.VEC3, True),
                    NORMAL=add_acc("nrm", N, gl.FLOAT, gl.VEC3),
                    TEXCOORD_0=add_acc("uv", UV, gl.FLOAT, gl.VEC2),
                )
                if mat not in used_mats:
                    used_mats.append(mat)
                prims.append(
                    gl.Primitive(
                        attributes=attrs,
                        indices=ia,
                        material=used_mats.index(mat),
                        mode=gl.TRIANGLES,
                    )
                )
                stats["triangles"] += len(I) // 3
                stats["vertices"] += len(P)
            g.meshes.append(gl.Mesh(name=name, primitives=prims))
            return len(g.meshes) - 1

        def emit_node(n: SNode) -> int:
            node = gl.Node(name=n.name)
            g.nodes.append(node)
            idx = len(g.nodes) - 1
            stats["nodes"] += 1
            if n.mesh is not None and n.mesh.groups:
                node.mesh = emit_mesh(n.name, n.mesh)
            if n.translation is not None:
                node.translation = [float(x) for x in n.translation]
            if n.rotation_y:
                node.rotation = [0.0, math.sin(n.rotation_y / 2), 0.0, math.cos(n.rotation_y / 2)]
            if n.extras:
                node.extras = n.extras
            kids = [emit_node(c) for c in n.children]
            if kids:
                node.children = kids
            return idx

        root_idx = emit_node(root)
        g.scenes = [gl.Scene(name=self.name, nodes=[root_idx])]
        g.scene = 0

        # buffer views for geometry
        view_idx = {}
        for key, target in (
            ("pos", gl.ARRAY_BUFFER),
            ("nrm", gl.ARRAY_BUFFER),
            ("uv", gl.ARRAY_BUFFER),
            ("i16", gl.ELEMENT_ARRAY_BUFFER),
            ("i32", gl.ELEMENT_ARRAY_BUFFER),
        ):
            data = views[key]
            if not data:
                continue
            off = len(blob)
            blob += data
            while len(blob) % 4:
                blob += b"\x00"
            bv = gl.BufferView(buffer=0, byteOffset=off, byteLength=len(data), target=target)
            stride = {"pos": 12, "nrm": 12, "uv": 8}.get(key)
            if stride:
                bv.byteStride = stride  # several accessors share each vertex bufferView
            g.bufferViews.append(bv)
            view_idx[key] = len(g.bufferViews) - 1
        for acc, key in pending:
            acc.bufferView = view_idx[key]

        # textures (only those used by used materials), in first-use order
        tex_order: list[str] = []
        for mn in used_mats:
            m = self.materials[mn]
            for k in (m.base, m.emissive):
                if k and k not in tex_order:
                    tex_order.append(k)
        g.samplers = [
            gl.Sampler(
                magFilter=gl.LINEAR,
                minFilter=gl.LINEAR_MIPMAP_LINEAR,
                wrapS=gl.REPEAT,
                wrapT=gl.REPEAT,
            )
        ]
        for k in tex_order:
            img, fmt = self.textures[k]
            data, mime = encode_image(img, fmt)
            off = len(blob)
            blob += data
            while len(blob) % 4:
                blob += b"\x00"
            g.bufferViews.append(gl.BufferView(buffer=0, byteOffset=off, byteLength=len(data)))
            g.images.append(gl.Image(name=k, mimeType=mime, bufferView=len(g.bufferViews) - 1))
            g.textures.append(gl.Texture(name=k, sampler=0, source=len(g.images) - 1))
        any_emissive = False
        for mn in used_mats:
            m = self.materials[mn]
            pbr = gl.PbrMetallicRoughness(
                baseColorTexture=gl.TextureInfo(index=tex_order.index(m.base)),
                metallicFactor=m.metallic,
                roughnessFactor=m.roughness,
            )
            if tuple(m.tint) != (1.0, 1.0, 1.0, 1.0):
                pbr.baseColorFactor = list(m.tint)
            mat = gl.Material(name=m.name, pbrMetallicRoughness=pbr, doubleSided=m.double)
            if m.alpha_mask:
                mat.alphaMode = gl.MASK
                mat.alphaCutoff = 0.5
            if m.emissive:
                mat.emissiveTexture = gl.TextureInfo(index=tex_order.index(m.emissive))
                mat.emissiveFactor = [1.0, 1.0, 1.0]
                if m.strength != 1.0:
                    mat.extensions = {EMISSIVE_EXT: {"emissiveStrength": float(m.strength)}}
                    any_emissive = True
            g.materials.append(mat)
        if any_emissive:
            g.extensionsUsed = [EMISSIVE_EXT]
        g.buffers = [gl.Buffer(byteLength=len(blob))]
        g.set_binary_blob(bytes(blob))
        path.parent.mkdir(parents=True, exist_ok=True)
        data = b"".join(g.save_to_bytes())
        path.write_bytes(data)
        stats["bytes"] = len(data)
        stats["materials"] = len(used_mats)
        stats["textures"] = len(tex_order)
        return stats


def std_materials(sw: SceneWriter, hero: bool = False):
    """Textures and materials shared by several scenes (only used ones are written)."""
    big = 1024 if hero else 512
    sw.texture("wood", tex_wood(big, 1))
    sw.texture("roof_tiles", tex_roof(512, 2))
    sw.texture("stone_blocks", tex_stone(512, 3, (132, 126, 116), (0.25, 0.125), 0.01))
    sw.texture("paving", tex_stone(512, 31, (104, 100, 96), (0.125, 0.125), 0.006))
    sw.texture("lattice_base", tex_lattice(512, 5, lit=False))
    sw.texture("lattice_glow", tex_lattice(512, 5, lit=True))
    sw.texture("lantern_base", tex_lantern(512, 6, lit=False))
    sw.texture("lantern_glow", tex_lantern(512, 6, lit=True))
    sw.texture("metal", tex_metal(512, 10))
    sw.texture("concrete", tex_concrete(512, 8))
    sw.texture("water_base", tex_water(big, 9, lit=False))
    sw.texture("water_glow", tex_water(big, 9, lit=True))
    sw.texture("strip_cyan", tex_strip(256, (90, 200, 255)))
    sw.texture("strip_gold", tex_strip(256, (255, 190, 90)))
    sw.texture("facade_base", tex_windows(1024 if hero else 512, 7, lit=False))
    sw.texture("facade_glow", tex_windows(1024 if hero else 512, 7, lit=True))
    sw.material(Mat("wood_dark", "wood", roughness=0.75))
    sw.material(Mat("roof_tile", "roof_tiles", roughness=0.7, double=True))
    sw.material(Mat("stone", "stone_blocks", roughness=0.9))
    sw.material(Mat("paving", "paving", roughness=0.85))
    sw.material(Mat("window_lattice", "lattice_base", "lattice_glow", strength=4.0, roughness=0.6))
    sw.material(Mat("lantern_red", "lantern_base", "lantern_glow", strength=6.0, roughness=0.6))
    sw.material(Mat("metal", "metal", metallic=1.0, roughness=0.45))
    sw.material(Mat("concrete", "concrete", roughness=0.9))
    sw.material(Mat("river", "water_base", "water_glow", strength=1.5, roughness=0.08))
    sw.material(Mat("light_strip_cyan", "strip_cyan", "strip_cyan", strength=8.0, roughness=0.4))
    sw.material(Mat("light_strip_gold", "strip_gold", "strip_gold", strength=8.0, roughness=0.4))
    sw.material(
        Mat("tower_facade", "facade_base", "facade_glow", strength=3.0, metallic=0.2, roughness=0.3)
    )


# =============================================================================
# Scenes
# =============================================================================


def eave_roof(mb, mat, x0, x1, y, z_wall, depth, rise, lift=0.45, nu=14, nv=4):
    """Single-slope canopy (腰檐) along X with upturned corners, wall at z_wall facing +Z."""
    w = x1 - x0

    def fn(U, V):
        x = x0 - 0.4 + U * (w + 0.8)
        z = z_wall + V * depth
        corner = np.abs(2 * U - 1) ** 6
        yy = y + rise * (1 - V) ** 1.3 + lift * corner * V**1.5
        return np.stack([x, yy, z], -1)

    grid(mb, mat, fn, nu, nv, ((w + 0.8) / 1.5, depth / 1.5))


def hip_roof(mb, mat, cx, cz, w, d, y, h, lift=0.7, nu=16, nv=8):
    """Curved gable roof with upturned eave corners, ridge along X, plus gable ends."""
    ow, od = w + 1.2, d + 1.2
    for side in (1, -1):

        def fn(U, V, side=side):
            x = cx - ow / 2 + U * ow
            z = cz + side * V * od / 2
            corner = np.abs(2 * U - 1) ** 5
            yy = y + h * (1 - V**1.6) + lift * corner * V**2
            return np.stack([x, yy, z], -1)

        grid(mb, mat, fn, nu, nv, (ow / 1.5, od / 3.0))
    # ridge beam
    box(mb, mat, (cx, y + h + 0.12, cz), (ow + 0.3, 0.3, 0.3), 1.0)


def build_hongya(out: Path, preview: Path | None):
    sw = SceneWriter("hongya-cave-facade")
    std_materials(sw, hero=True)
    sw.texture("rock", tex_rock(1024, 4))
    sw.material(Mat("cliff_rock", "rock", roughness=0.95))
    rng = _rng(20240601)
    root = SNode(
        "hongya",
        extras=dict(
            EXTRAS,
            scene="hongya-cave-facade",
            description="Hongyadong stilt houses on the Jialing cliff, facing +Z (river).",
        ),
    )
    tiers = 11
    storey = 3.4
    span = 120.0

    # Cliff: displaced rock face behind the houses, from the river road up to Cangbai Rd.
    cliff = root.child("hongya/cliff", mesh=MeshBuf())
    top_y = tiers * storey + 4

    def cliff_fn(U, V):
        x = -span / 2 - 10 + U * (span + 20)
        y = -2 + V * (top_y + 2)
        n = (
            np.sin(U * 37.0) * 0.6
            + np.sin(U * 91.0 + V * 13.0) * 0.35
            + np.sin(V * 23.0 + U * 7) * 0.5
        )
        z = -tiers * 1.1 - 7.0 + (1 - V) * 2.5 + n
        return np.stack([x, y, z], -1)

    grid(cliff.mesh, "cliff_rock", cliff_fn, 220, 90, (14, 5))
    # Cangbai Road terrace on top and the river road at the bottom
    top = root.child("hongya/cangbai_road", mesh=MeshBuf())
    box(top.mesh, "paving", (0, top_y + 0.25, -tiers * 1.1 - 14), (span + 20, 0.5, 16), 4.0)
    for i in range(40):
        x = -span / 2 + i * span / 39
        cylinder(
            top.mesh,
            "metal",
            (x, top_y + 0.5, -tiers * 1.1 - 6.5),
            (x, top_y + 1.6, -tiers * 1.1 - 6.5),
            0.05,
            8,
        )
    beam(
        top.mesh,
        "metal",
        (-span / 2, top_y + 1.6, -tiers * 1.1 - 6.5),
        (span / 2, top_y + 1.6, -tiers * 1.1 - 6.5),
        0.08,
    )
    road = root.child("hongya/river_road", mesh=MeshBuf())
    box(road.mesh, "paving", (0, -0.25, 10), (span + 40, 0.5, 22), 4.0)
    for i in range(24):
        x = -span / 2 + i * span / 23
        lathe(
            road.mesh,
            "metal",
            [(0.09, 0), (0.07, 3.8), (0.05, 4.2)],
            8,
            center=(x, 0, 17),
            caps=False,
        )
        lathe(
            road.mesh,
            "light_strip_gold",
            [(0.05, 0), (0.22, 0.12), (0.24, 0.3), (0.12, 0.45)],
            10,
            center=(x, 4.2, 17),
            uv_v=0.5,
        )

    house_no = 0
    for t in range(tiers):
        tier = root.child(f"hongya/tier_{t:02d}")
        y0 = t * storey
        zf = -t * 1.1 + rng.uniform(-0.3, 0.3)  # façade line steps back up the cliff
        x = -span / 2 + rng.uniform(0, 3)
        while x < span / 2 - 4:
            w = float(rng.uniform(6.0, 10.5))
            d = float(rng.uniform(5.0, 7.0))
            h = storey - 0.15
            front = zf + rng.uniform(-0.6, 0.6)
            mb = MeshBuf()
            cx = x + w / 2
            tier.child(
                f"hongya/tier_{t:02d}/house_{house_no:03d}", mesh=mb, translation=(cx, y0, front)
            )
            # local frame: façade plane at z=0, house body behind it (-Z), floor at y=0
            box(mb, "wood_dark", (0, h / 2, -d / 2), (w, h, d), 2.0, faces="+x-x+z+y")
            # timber frame: posts and a sill beam on the façade
            for px in np.linspace(-w / 2 + 0.15, w / 2 - 0.15, max(3, int(w / 2.2))):
                box(mb, "wood_dark", (px, h / 2, 0.08), (0.22, h, 0.16), 1.0, faces="+x-x+z")
            box(mb, "wood_dark", (0, h - 0.25, 0.1), (w, 0.2, 0.2), 1.0, faces="+z-y+y")
            # windows (emissive lattice panels) between the posts
            nwin = max(2, int(w / 1.9))
            ww = (w - 0.6) / nwin
            lit_row = rng.random() < 0.92
            for k in range(nwin):
                wx = -w / 2 + 0.3 + k * ww
                if lit_row and rng.random() < 0.9:
                    quad(
                        mb,
                        "window_lattice",
                        (wx + 0.12, 0.95, 0.17),
                        (ww - 0.24, 0, 0),
                        (0, 1.6, 0),
                    )
                else:
                    quad(
                        mb,
                        "wood_dark",
                        (wx + 0.12, 0.95, 0.17),
                        (ww - 0.24, 0, 0),
                        (0, 1.6, 0),
                        (0, 0, 0.8, 1.0),
                    )
            # balcony: slab, balusters, hand rail, corbels
            bd = 1.1
            box(mb, "wood_dark", (0, 0.1, bd / 2), (w, 0.2, bd), 1.0)
            nb = int(w / 0.32)
            for k in range(nb + 1):
                bx = -w / 2 + 0.05 + k * (w - 0.1) / nb
                box(mb, "wood_dark", (bx, 0.6, bd - 0.05), (0.06, 0.8, 0.06), 1.0, faces="+x-x+z-z")
            box(mb, "wood_dark", (0, 1.05, bd - 0.05), (w, 0.09, 0.12), 1.0)
            box(mb, "wood_dark", (-w / 2 + 0.04, 0.6, bd / 2), (0.08, 0.9, bd), 1.0, faces="+x-x+y")
            box(mb, "wood_dark", (w / 2 - 0.04, 0.6, bd / 2), (0.08, 0.9, bd), 1.0, faces="+x-x+y")
            for px in np.linspace(-w / 2 + 0.3, w / 2 - 0.3, max(2, int(w / 3))):
                beam(mb, "wood_dark", (px, -0.9, 0.0), (px, -0.05, bd - 0.1), 0.14)
            # eave canopy over the façade with upturned corners
            eave_roof(mb, "roof_tile", -w / 2, w / 2, h - 0.05, 0.0, 1.6, 0.55, lift=0.5)
            # lanterns under the eave
            nl = max(2, int(w / 1.6))
            for k in range(nl):
                lx = -w / 2 + (k + 0.5) * w / nl
                cylinder(mb, "metal", (lx, h - 0.25, 1.15), (lx, h - 0.55, 1.15), 0.01, 4)
                lantern(mb, "lantern_red", (lx, h - 0.8, 1.15), 0.2, 0.42, 10)
            # stilts under the ground tier and under houses jutting past the tier below
            if t == 0 or rng.random() < 0.25:
                for px in np.linspace(-w / 2 + 0.3, w / 2 - 0.3, max(2, int(w / 2.5))):
                    for pz in (0.9, -d + 0.5):
                        cylinder(
                            mb,
                            "wood_dark",
                            (px, -storey if t else -1.0, pz),
                            (px, 0.0, pz),
                            0.14,
                            8,
                        )
            # full roof on the top tier and on some projecting pavilions
            if t == tiers - 1 or rng.random() < 0.12:
                hip_roof(mb, "roof_tile", 0.0, -d / 2, w, d, h + 0.35, 1.8, lift=0.8)
                for k in range(2):
                    lantern(
                        mb,
                        "lantern_red",
                        (-w / 2 - 0.2 + k * (w + 0.4), h + 0.1, 1.0),
                        0.26,
                        0.55,
                        12,
                    )
            house_no += 1
            x += w + float(rng.uniform(0.2, 1.2))

    # a pavilion tower (the showpiece gate tower) at the top centre
    tower = root.child(
        "hongya/gate_tower", mesh=MeshBuf(), translation=(0.0, tiers * storey, -tiers * 1.1 + 1)
    )
    mb = tower.mesh
    for lvl in range(3):
        s = 10 - lvl * 2.2
        yb = lvl * 3.6
        box(mb, "wood_dark", (0, yb + 1.6, -s / 2), (s, 3.2, s), 2.0, faces="+x-x+z+y")
        for k in range(int(s / 1.6)):
            quad(
                mb,
                "window_lattice",
                (-s / 2 + 0.3 + k * 1.6, yb + 0.6, 0.02),
                (1.3, 0, 0),
                (0, 2.0, 0),
            )
        hip_roof(mb, "roof_tile", 0.0, -s / 2, s, s, yb + 3.2, 1.2 + 0.3 * lvl, lift=0.9)
        for k in range(6):
            lantern(mb, "lantern_red", (-s / 2 + (k + 0.5) * s / 6, yb + 2.6, 0.9), 0.3, 0.6, 12)

    stats = sw.write(root, out)
    if preview:
        render_preview(root, sw, preview / "hongya-cave-facade.png")
    return stats


def build_jiefangbei(out: Path, preview: Path | None):
    sw = SceneWriter("jiefangbei-monument")
    std_materials(sw)
    sw.texture("clock_base", tex_clock(512, lit=False))
    sw.texture("clock_glow", tex_clock(512, lit=True))
    sw.texture("marble", tex_stone(512, 40, (150, 72, 60), (0.5, 0.25), 0.008))
    sw.material(Mat("clock_face", "clock_base", "clock_glow", strength=5.0, roughness=0.3))
    sw.material(Mat("red_marble", "marble", roughness=0.4))
    root = SNode(
        "jiefangbei",
        extras=dict(
            EXTRAS,
            scene="jiefangbei-monument",
            description="Liberation Monument, 27.5 m octagonal tower; clock faces on four sides.",
        ),
    )
    plaza = root.child("jiefangbei/plaza", mesh=MeshBuf())
    mb = plaza.mesh
    # circular plaza, paved, subdivided into rings

    def plaza_fn(U, V):
        a = U * 2 * math.pi
        r = 12 + V * 38
        return np.stack([r * np.sin(a), np.zeros_like(r), r * np.cos(a)], -1)

    grid(mb, "paving", plaza_fn, 192, 24, (2 * math.pi * 30 / 2, 38 / 2))
    # flip to face up if needed is handled by normal calc: ensure +Y
    # monument platform: 10 m radius, 1.6 m high, 8 steps
    for s in range(8):
        r = 12 - s * 0.25
        lathe(
            mb,
            "stone",
            [(r, s * 0.2), (r, (s + 1) * 0.2)],
            8,
            flat=True,
            caps=True,
            phase=math.pi / 8,
        )
    # balustrade on the platform edge
    for k in range(64):
        a = k / 64 * 2 * math.pi
        box(
            mb,
            "stone",
            (10.0 * math.sin(a), 1.6 + 0.45, 10.0 * math.cos(a)),
            (0.18, 0.9, 0.18),
            0.5,
            yaw=a,
        )
    for k in range(8):
        a0, a1 = k / 8 * 2 * math.pi + math.pi / 8, (k + 1) / 8 * 2 * math.pi + math.pi / 8
        beam(
            mb,
            "stone",
            (10 * math.sin(a0), 2.0, 10 * math.cos(a0)),
            (10 * math.sin(a1), 2.0, 10 * math.cos(a1)),
            0.2,
        )
        # flowerbeds
        am = (a0 + a1) / 2
        box(
            mb,
            "stone",
            (6.5 * math.sin(am), 1.85, 6.5 * math.cos(am)),
            (2.6, 0.5, 1.2),
            0.5,
            yaw=am,
        )
    # street lamps around the plaza
    lamps = root.child("jiefangbei/lamps", mesh=MeshBuf())
    for k in range(16):
        a = k / 16 * 2 * math.pi
        cx, cz = 17 * math.sin(a), 17 * math.cos(a)
        lathe(
            lamps.mesh,
            "metal",
            [(0.16, 0), (0.14, 0.3), (0.12, 0.5), (0.07, 0.6), (0.06, 4.5), (0.1, 4.6)],
            24,
            center=(cx, 0, cz),
        )
        beam(
            lamps.mesh,
            "metal",
            (cx - 0.5 * math.cos(a), 4.55, cz + 0.5 * math.sin(a)),
            (cx + 0.5 * math.cos(a), 4.55, cz - 0.5 * math.sin(a)),
            0.06,
        )
        for side in (-1, 1):
            lathe(
                lamps.mesh,
                "light_strip_gold",
                [
                    (0.04, 0),
                    (0.14, 0.05),
                    (0.2, 0.1),
                    (0.24, 0.2),
                    (0.25, 0.3),
                    (0.24, 0.4),
                    (0.2, 0.5),
                    (0.12, 0.56),
                    (0.04, 0.6),
                ],
                24,
                center=(cx + side * 0.45 * math.cos(a), 4.6, cz - side * 0.45 * math.sin(a)),
                uv_v=0.6,
            )
    # tower
    tw = root.child("jiefangbei/tower")
    body = tw.child("jiefangbei/tower/body", mesh=MeshBuf())
    mb = body.mesh
    base_y = 1.6
    lathe(
        mb,
        "red_marble",
        [(4.2, 0), (4.2, 1.6), (3.6, 1.6), (3.6, 2.0)],
        8,
        center=(0, base_y, 0),
        flat=True,
        phase=math.pi / 8,
        uv_v=1.0,
    )
    lathe(
        mb,
        "concrete",
        [(3.1, 0), (3.1, 17.5), (3.3, 17.6), (3.3, 18.0), (3.0, 18.1)],
        8,
        center=(0, base_y + 2.0, 0),
        flat=True,
        phase=math.pi / 8,
        uv_v=2.0,
    )
    # vertical fluting ribs at the corners
    for k in range(8):
        a = k / 8 * 2 * math.pi
        r = 3.1 / math.cos(math.pi / 8)
        beam(
            mb,
            "concrete",
            (r * math.sin(a), base_y + 2.0, r * math.cos(a)),
            (r * math.sin(a), base_y + 19.5, r * math.cos(a)),
            0.3,
        )
    # window slits (24, lit)
    apo = 3.1
    for k in range(8):
        a = k / 8 * 2 * math.pi + math.pi / 8 * 0 + math.pi / 8
        a = k / 8 * 2 * math.pi
        nx, nz = math.sin(a + math.pi / 8), math.cos(a + math.pi / 8)
        tx, tz = math.cos(a + math.pi / 8), -math.sin(a + math.pi / 8)
        for j in range(3):
            y = base_y + 5 + j * 4.6
            p0 = (apo * nx + 0.02 * nx - 0.3 * tx, y, apo * nz + 0.02 * nz - 0.3 * tz)
            quad(mb, "window_lattice", p0, (0.6 * tx, 0, 0.6 * tz), (0, 1.8, 0))
    # clock storey
    clock = tw.child("jiefangbei/tower/clock", mesh=MeshBuf())
    mb = clock.mesh
    cy0 = base_y + 20.1
    lathe(
        mb,
        "concrete",
        [(3.0, 0), (3.0, 4.0), (3.3, 4.1), (3.3, 4.4)],
        8,
        center=(0, cy0, 0),
        flat=True,
        phase=math.pi / 8,
        uv_v=2.0,
    )
    for k in range(4):
        a = k * math.pi / 2
        cmb = MeshBuf()
        disc(cmb, "clock_face", (0, 2.0, 0.0), 1.35, "+z", 48)
        clock.child(
            f"jiefangbei/tower/clock/face_{'nesw'[k]}",
            mesh=cmb,
            translation=(
                3.0 * math.sin(a) + 0.03 * math.sin(a),
                cy0,
                3.0 * math.cos(a) + 0.03 * math.cos(a),
            ),
            rotation_y=a,
        )
    # helmet dome and flagpole
    top = tw.child("jiefangbei/tower/crown", mesh=MeshBuf())
    prof = [(2.9, 0)] + [
        (2.9 * math.cos(t), 2.4 * math.sin(t)) for t in np.linspace(0.1, math.pi / 2 - 0.05, 12)
    ]
    lathe(top.mesh, "concrete", prof, 32, center=(0, cy0 + 4.4, 0), uv_v=2.0)
    cylinder(top.mesh, "metal", (0, cy0 + 6.6, 0), (0, cy0 + 9.5, 0), 0.06, 12)
    lathe(
        top.mesh,
        "light_strip_gold",
        [(0.02, 0), (0.15, 0.12), (0.02, 0.3)],
        12,
        center=(0, cy0 + 9.5, 0),
        uv_v=0.3,
    )
    # a ring of uplight strips on the pedestal
    for k in range(8):
        a = k / 8 * 2 * math.pi
        box(
            top.mesh,
            "light_strip_cyan",
            (3.9 * math.sin(a + math.pi / 8), base_y + 1.62, 3.9 * math.cos(a + math.pi / 8)),
            (2.6, 0.06, 0.12),
            1.0,
            yaw=a + math.pi / 8,
        )
    stats = sw.write(root, out)
    if preview:
        render_preview(root, sw, preview / "jiefangbei-monument.png")
    return stats


def build_chaotianmen(out: Path, preview: Path | None):
    sw = SceneWriter("chaotianmen-confluence")
    std_materials(sw)
    root = SNode(
        "chaotianmen",
        extras=dict(
            EXTRAS,
            scene="chaotianmen-confluence",
            description="Promontory pointing -Z; Jialing on -X side, Yangtze on +X side.",
        ),
    )
    # rivers: a big water plane with gentle swell, below the square
    river = root.child("chaotianmen/rivers", mesh=MeshBuf())

    def water(U, V):
        x = -220 + U * 440
        z = -320 + V * 420
        y = -18 + 0.25 * np.sin(x * 0.07 + z * 0.05) + 0.15 * np.sin(z * 0.13)
        return np.stack([x, y, z], -1)

    grid(river.mesh, "river", water, 90, 90, (440 / 20, 420 / 20))
    # promontory: stepped terraces narrowing to a point at -Z
    prom = root.child("chaotianmen/square", mesh=MeshBuf())
    mb = prom.mesh
    levels = [(0.0, 60, 0), (-4.0, 52, -20), (-8.0, 44, -40), (-12.0, 36, -60), (-16.0, 26, -80)]
    for i, (y, w, z0) in enumerate(levels):
        length = 110 - i * 12
        # wedge: a box plus a pointed end made from a lathe-free prism
        box(mb, "paving", (0, y - 1.0, z0 - length / 2 + 30), (w, 2.0, length), 4.0)
        # light strips along the terrace edges
        box(
            mb,
            "light_strip_cyan",
            (-w / 2 - 0.05, y - 0.3, z0 - length / 2 + 30),
            (0.1, 0.15, length),
            1.0,
        )
        box(
            mb,
            "light_strip_cyan",
            (w / 2 + 0.05, y - 0.3, z0 - length / 2 + 30),
            (0.1, 0.15, length),
            1.0,
        )
        box(mb, "light_strip_gold", (0, y - 0.3, z0 - length + 30 - 0.05), (w, 0.15, 0.1), 1.0)
        # steps down to the next level
        if i < len(levels) - 1:
            for s in range(10):
                box(
                    mb,
                    "stone",
                    (0, y - 0.2 - s * 0.4, z0 - length + 30 - 0.2 - s * 0.45),
                    (w * 0.3, 0.4, 0.45),
                    1.0,
                )
    # retaining wall down to the water
    box(mb, "stone", (0, -18.5 + 8, -40), (64, 17, 150), 6.0, faces="+x-x-z")
    # railings with posts along the top level edges
    for side in (-1, 1):
        for k in range(40):
            z = 30 - k * 2.5
            cylinder(mb, "metal", (side * 29.8, 0, z), (side * 29.8, 1.1, z), 0.04, 8)
        beam(mb, "metal", (side * 29.8, 1.1, 30), (side * 29.8, 1.1, -70), 0.06)
    # lamp posts
    for k in range(12):
        for side in (-1, 1):
            x, z = side * 24, 25 - k * 8
            lathe(mb, "metal", [(0.1, 0), (0.07, 5.5)], 10, center=(x, 0, z), caps=True)
            lathe(
                mb,
                "light_strip_gold",
                [(0.05, 0), (0.25, 0.1), (0.28, 0.3), (0.1, 0.45)],
                12,
                center=(x, 5.5, z),
                uv_v=0.5,
            )
    # docks and a cruise boat
    docks = root.child("chaotianmen/docks")
    for k in range(4):
        m = MeshBuf()
        box(m, "metal", (0, 0, 0), (10, 1.5, 30), 2.0)
        box(m, "light_strip_gold", (0, 0.8, 15.05), (10, 0.15, 0.1), 1.0)
        box(m, "light_strip_gold", (5.05, 0.8, 0), (0.1, 0.15, 30), 1.0)
        side = -1 if k % 2 == 0 else 1
        docks.child(
            f"chaotianmen/docks/pontoon_{k}", mesh=m, translation=(side * 45, -17.4, -20 - k * 35)
        )
    boat = docks.child(
        "chaotianmen/docks/cruise_boat",
        mesh=MeshBuf(),
        translation=(60, -17.5, -60),
        rotation_y=0.15,
    )
    mb = boat.mesh

    def hull(U, V):
        z = -30 + U * 60
        a = V * math.pi
        taper = np.clip(1 - ((np.abs(z) - 22) / 8).clip(0) ** 1.5, 0.05, 1)
        x = -np.cos(a) * 6 * taper
        y = -np.sin(a) * 2.5 + 1.5
        return np.stack([x, y, z], -1)

    grid(mb, "metal", hull, 40, 12, (60 / 4, 3))
    for deck in range(3):
        w = 11 - deck * 2
        L = 50 - deck * 10
        box(mb, "paving", (0, 2 + deck * 2.6, 0), (w, 0.3, L), 4.0)
        quad(
            mb,
            "tower_facade",
            (w / 2 - 0.4, 2.2 + deck * 2.6, L / 2 - 2),
            (0, 0, -(L - 4)),
            (0, 2.2, 0),
            (0, 0, (L - 4) / 12, 0.3),
        )
        quad(
            mb,
            "tower_facade",
            (-w / 2 + 0.4, 2.2 + deck * 2.6, -L / 2 + 2),
            (0, 0, L - 4),
            (0, 2.2, 0),
            (0, 0, (L - 4) / 12, 0.3),
        )
        box(mb, "wood_dark", (0, 3.3 + deck * 2.6, 0), (w - 1, 2.2, L - 4), 4.0, faces="+z-z")
        box(mb, "light_strip_gold", (0, 4.6 + deck * 2.6, 0), (w + 0.1, 0.12, L), 1.0)
    # sail towers behind the square (+Z), simple curved lit slabs with a sky bridge
    towers = root.child("chaotianmen/sail_towers")
    for k in range(4):
        m = MeshBuf()
        h = 230.0 if k in (1, 2) else 190.0
        w = 30.0

        def sail(U, V, h=h, w=w):
            x = -w / 2 + U * w
            y = V * h
            bow = 6 * np.sin(V * math.pi * 0.9) * (1 - (2 * U - 1) ** 2)
            z = -bow + 4 * V
            return np.stack([x, y, z], -1)

        grid(m, "tower_facade", sail, 8, 40, (w / 24, h / 48))

        def back(U, V, h=h, w=w):
            x = w / 2 - U * w
            y = V * h
            z = np.full_like(x, 0.0) + 4 * V - 14
            return np.stack([x, y, z], -1)

        grid(m, "tower_facade", back, 4, 20, (w / 24, h / 48))
        box(m, "concrete", (0, h + 0.5, -6), (w, 1.0, 16), 4.0)
        box(m, "light_strip_cyan", (0, h * 0.5, 2.0), (0.2, h * 0.9, 0.2), 1.0)
        towers.child(
            f"chaotianmen/sail_towers/tower_{k}",
            mesh=m,
            translation=(-66 + k * 44, 0, 90 + abs(k - 1.5) * 10),
            rotation_y=math.pi,
        )
    bridge = towers.child("chaotianmen/sail_towers/sky_bridge", mesh=MeshBuf())
    box(bridge.mesh, "tower_facade", (0, 236, 100), (180, 10, 26), 24.0)
    box(bridge.mesh, "light_strip_cyan", (0, 231, 86.9), (180, 0.4, 0.2), 1.0)
    box(bridge.mesh, "light_strip_cyan", (0, 241, 86.9), (180, 0.4, 0.2), 1.0)
    stats = sw.write(root, out)
    if preview:
        render_preview(root, sw, preview / "chaotianmen-confluence.png")
    return stats


def build_cableway(out: Path, preview: Path | None):
    sw = SceneWriter("yangtze-cableway-cabin")
    std_materials(sw)
    sw.texture("cabin_paint", tex_paint(512, 11))
    sw.texture("interior", tex_interior(256, 15))
    sw.material(Mat("cabin_red", "cabin_paint", metallic=0.3, roughness=0.4))
    sw.material(Mat("cabin_glow", "interior", "interior", strength=5.0, roughness=0.2))
    root = SNode(
        "cableway",
        extras=dict(
            EXTRAS,
            scene="yangtze-cableway-cabin",
            description="Cabin at mid-span, cables along -Z (towards the Nan'an bank).",
        ),
    )
    # The anchor is the north station; the cabin is shown a little way out over the river.
    cab_z = -40.0
    cab_y = 10.0
    cables = root.child("cableway/cables", mesh=MeshBuf())
    span = 240.0

    def sag(z):
        s = (z + 20) / span
        return 14.0 - 8.0 * s + 10 * (s - 0.5) ** 2 - 2.5

    for x in (-1.1, 1.1, 0.0):
        pts = [(x, sag(z) + (0 if x else -0.6), z) for z in np.linspace(20, -220, 49)]
        polyline_tube(cables.mesh, "metal", pts, 0.026 if x else 0.02, 8)
    river = root.child("cableway/river", mesh=MeshBuf())

    def water(U, V):
        x = -150 + U * 300
        z = 30 - V * 300
        y = -55 + 0.2 * np.sin(x * 0.05 + z * 0.09)
        return np.stack([x, y, z], -1)

    grid(river.mesh, "river", water, 60, 60, (15, 15))
    station = root.child("cableway/north_station", mesh=MeshBuf())
    mb = station.mesh
    box(mb, "concrete", (0, -6, 14), (14, 24, 14), 3.0)
    box(mb, "light_strip_gold", (0, 6.2, 6.9), (14, 0.3, 0.2), 1.0)
    for k in range(6):
        quad(mb, "cabin_glow", (-6 + k * 2.0 + 0.2, 1.0, 6.98), (1.6, 0, 0), (0, 3.5, 0))
    cab = root.child("cableway/cabin", translation=(0, cab_y, cab_z))
    body = cab.child("cableway/cabin/body", mesh=MeshBuf())
    mb = body.mesh
    W, H, L = 2.6, 2.5, 5.6
    # lower body and roof in red paint, window band glowing
    box(mb, "cabin_red", (0, 0.45, 0), (W, 0.9, L), 1.0)
    box(mb, "cabin_red", (0, H - 0.25, 0), (W, 0.5, L), 1.0)
    # window band: four sides
    quad(mb, "cabin_glow", (W / 2, 0.9, L / 2), (0, 0, -L), (0, H - 1.4, 0))
    quad(mb, "cabin_glow", (-W / 2, 0.9, -L / 2), (0, 0, L), (0, H - 1.4, 0))
    quad(mb, "cabin_glow", (-W / 2, 0.9, L / 2), (W, 0, 0), (0, H - 1.4, 0))
    quad(mb, "cabin_glow", (W / 2, 0.9, -L / 2), (-W, 0, 0), (0, H - 1.4, 0))
    # pillars between windows
    for sz in np.linspace(-L / 2, L / 2, 6):
        for sx in (-1, 1):
            box(mb, "cabin_red", (sx * (W / 2 + 0.02), H / 2 + 0.2, sz), (0.08, H - 1.3, 0.12), 1.0)
    # rounded roof cap
    lathe(
        mb,
        "cabin_red",
        [(1.3, 0), (1.2, 0.2), (0.8, 0.35), (0.3, 0.4)],
        24,
        center=(0, H, 0),
        uv_v=0.5,
    )
    # interior: seats, handrail, ceiling light
    for sz in (-1.8, 1.8):
        box(mb, "wood_dark", (0, 1.2, sz), (W - 0.4, 0.12, 0.5), 1.0)
    cylinder(mb, "metal", (0, H - 0.6, -L / 2 + 0.3), (0, H - 0.6, L / 2 - 0.3), 0.03, 10)
    box(mb, "cabin_glow", (0, H - 0.52, 0), (0.6, 0.04, L - 1.2), 1.0, faces="-y")
    # hanger and carriage
    hang = cab.child("cableway/cabin/hanger", mesh=MeshBuf())
    mb = hang.mesh
    beam(
        mb,
        "metal",
        (0, H + 0.3, 0),
        (
            0,
            14.0
            - 8 * ((cab_z + 20) / span)
            + 10 * (((cab_z + 20) / span) - 0.5) ** 2
            - 2.5
            - cab_y
            - 0.5,
            0,
        ),
        0.18,
    )
    top_y = sag(cab_z) - cab_y
    box(mb, "metal", (0, top_y - 0.35, 0), (2.8, 0.3, 3.0), 1.0)
    for sx in (-1.1, 1.1):
        for sz in (-1.1, -0.37, 0.37, 1.1):
            cylinder(
                mb, "metal", (sx - 0.08, top_y, sz), (sx + 0.08, top_y, sz), 0.2, 16, caps=False
            )
    # navigation lights on the cabin
    for sx in (-1, 1):
        lathe(
            mb,
            "light_strip_gold",
            [(0.02, 0), (0.09, 0.05), (0.02, 0.12)],
            10,
            center=(sx * 1.3, H + 0.1, L / 2 - 0.2),
            uv_v=0.12,
        )
    stats = sw.write(root, out)
    if preview:
        render_preview(root, sw, preview / "yangtze-cableway-cabin.png")
    return stats


def build_liziba(out: Path, preview: Path | None):
    sw = SceneWriter("liziba-monorail")
    std_materials(sw)
    sw.texture("train_paint", tex_paint(512, 12, (230, 232, 236), (30, 120, 200)))
    sw.texture("interior", tex_interior(256, 15))
    sw.texture(
        "apartment_base",
        tex_windows(512, 17, cols=6, rows=8, frac=0.65, lit=False, frame=(150, 140, 128)),
    )
    sw.texture(
        "apartment_glow",
        tex_windows(512, 17, cols=6, rows=8, frac=0.65, lit=True, frame=(150, 140, 128)),
    )
    sw.material(Mat("train_body", "train_paint", metallic=0.4, roughness=0.35))
    sw.material(Mat("train_windows", "interior", "interior", strength=4.0, roughness=0.2))
    sw.material(Mat("apartment", "apartment_base", "apartment_glow", strength=2.5, roughness=0.7))
    root = SNode(
        "liziba",
        extras=dict(
            EXTRAS,
            scene="liziba-monorail",
            description="19-storey block; Line 2 track along X through floors 6-8.",
        ),
    )
    floor_h = 3.0
    floors = 19
    BW, BD = 36.0, 18.0
    bz = -30.0
    bld = root.child("liziba/building")
    hole = (5, 8)  # floors 6..8 (0-based 5..7) are the station
    for f in range(floors):
        m = MeshBuf()
        if hole[0] <= f < hole[1]:
            # station storeys: only end walls and columns, open along the track
            for sx in (-1, 1):
                box(m, "concrete", (sx * (BW / 2 - 2), floor_h / 2, 0), (4, floor_h, BD), 2.0)
            for cx in np.linspace(-BW / 2 + 6, BW / 2 - 6, 6):
                for cz in (-BD / 2 + 0.5, BD / 2 - 0.5):
                    box(m, "concrete", (cx, floor_h / 2, cz), (0.6, floor_h, 0.6), 1.0)
            if f == hole[0]:
                # platforms and lighting inside the station
                for sz in (-4.5, 4.5):
                    box(m, "paving", (0, 0.9, sz), (BW - 8, 0.3, 3.0), 2.0)
                    box(
                        m,
                        "light_strip_gold",
                        (0, 0.9, sz - 1.5 * np.sign(sz)),
                        (BW - 8, 0.08, 0.12),
                        1.0,
                    )
            box(m, "light_strip_cyan", (0, floor_h - 0.3, 0), (BW - 8, 0.1, 0.6), 1.0, faces="-y")
        else:
            # façade with windows: front, back, sides
            box(m, "concrete", (0, 0.15, 0), (BW + 0.4, 0.3, BD + 0.4), 3.0)
            quad(
                m,
                "apartment",
                (-BW / 2, 0.3, BD / 2),
                (BW, 0, 0),
                (0, floor_h - 0.3, 0),
                (0, 0, BW / 36 * 6 / 6 * 1.0, 1 / 8),
            )
            quad(
                m,
                "apartment",
                (BW / 2, 0.3, -BD / 2),
                (-BW, 0, 0),
                (0, floor_h - 0.3, 0),
                (0, 0, 1.0, 1 / 8),
            )
            quad(
                m,
                "apartment",
                (BW / 2, 0.3, BD / 2),
                (0, 0, -BD),
                (0, floor_h - 0.3, 0),
                (0, 0, 0.5, 1 / 8),
            )
            quad(
                m,
                "apartment",
                (-BW / 2, 0.3, -BD / 2),
                (0, 0, BD),
                (0, floor_h - 0.3, 0),
                (0, 0, 0.5, 1 / 8),
            )
            # balconies with rails on the front
            for k in range(6):
                bx = -BW / 2 + 3 + k * 6
                box(m, "concrete", (bx, 0.15, BD / 2 + 0.6), (4.5, 0.2, 1.2), 1.0)
                for j in range(19):
                    cylinder(
                        m,
                        "metal",
                        (bx - 2.2 + j * 0.245, 0.25, BD / 2 + 1.15),
                        (bx - 2.2 + j * 0.245, 1.2, BD / 2 + 1.15),
                        0.02,
                        8,
                    )
                beam(
                    m,
                    "metal",
                    (bx - 2.25, 1.2, BD / 2 + 1.15),
                    (bx + 2.25, 1.2, BD / 2 + 1.15),
                    0.05,
                )
                beam(
                    m,
                    "metal",
                    (bx - 2.25, 0.3, BD / 2 + 1.15),
                    (bx + 2.25, 0.3, BD / 2 + 1.15),
                    0.04,
                )
                # air-conditioner units and window sills, front and back
                box(m, "metal", (bx + 2.6, 0.55, BD / 2 + 0.3), (0.8, 0.55, 0.35), 0.5)
                box(m, "metal", (bx, 0.55, -BD / 2 - 0.2), (0.8, 0.55, 0.35), 0.5)
                box(m, "concrete", (bx, 0.95, -BD / 2 - 0.08), (2.4, 0.1, 0.16), 0.5)
                box(m, "concrete", (bx, floor_h - 0.35, -BD / 2 - 0.08), (2.4, 0.1, 0.16), 0.5)
        bld.child(f"liziba/building/floor_{f + 1:02d}", mesh=m, translation=(0, f * floor_h, bz))
    roofn = bld.child("liziba/building/roof", mesh=MeshBuf(), translation=(0, floors * floor_h, bz))
    box(roofn.mesh, "concrete", (0, 0.4, 0), (BW + 0.4, 0.8, BD + 0.4), 3.0)
    box(roofn.mesh, "light_strip_cyan", (0, 0.85, BD / 2 + 0.25), (BW, 0.15, 0.1), 1.0)
    # track beam and piers, along X through the station storeys
    track = root.child("liziba/track", mesh=MeshBuf())
    ty = hole[0] * floor_h + 0.5
    box(track.mesh, "concrete", (0, ty, bz), (260, 1.5, 0.85), 2.0)
    box(track.mesh, "concrete", (0, ty, bz - 3.2), (260, 1.5, 0.85), 2.0)
    for px in (-125, -95, -65, -35, 35, 65, 95, 125):
        box(track.mesh, "concrete", (px, ty / 2 - 0.4, bz - 1.6), (1.6, ty - 0.8, 1.6), 2.0)
        box(track.mesh, "concrete", (px, ty - 1.2, bz - 1.6), (1.8, 0.8, 5.4), 2.0)
    # the train: 4 cars entering from +X
    train = root.child("liziba/train", translation=(18.0, ty + 0.75, bz))
    for c in range(4):
        m = MeshBuf()
        L, W, H = 14.6, 2.9, 3.0
        box(m, "train_body", (0, H / 2, 0), (L, H, W), 1.0, faces="+y-y+z-z")
        quad(
            m,
            "train_windows",
            (-L / 2 + 0.5, 1.3, W / 2 + 0.01),
            (L - 1.0, 0, 0),
            (0, 1.1, 0),
            (0, 0, 4, 1),
        )
        quad(
            m,
            "train_windows",
            (L / 2 - 0.5, 1.3, -W / 2 - 0.01),
            (-(L - 1.0), 0, 0),
            (0, 1.1, 0),
            (0, 0, 4, 1),
        )
        if c in (0, 3):
            s = 1 if c == 3 else -1
            # rounded nose

            def nose(U, V, s=s, L=L, W=W, H=H):
                a = (U - 0.5) * math.pi
                yy = 0.2 + V * (H - 0.4)
                k = np.sin(V * math.pi) * 0.5 + 0.5
                x = s * (L / 2 + 1.2 * np.cos(a) * k)
                z = (W / 2) * np.sin(a)
                return np.stack([x, yy, z], -1)

            grid(m, "train_body", nose, 12, 8, (2, 2))
            box(m, "light_strip_gold", (s * (L / 2 + 1.0), 0.8, 0), (0.1, 0.25, 2.0), 1.0)
            quad(
                m,
                "train_windows",
                (s * (L / 2 + 1.15), 1.6, s * (-1.0)),
                (0, 0, s * 2.0),
                (0, 0.9, 0),
                (0, 0, 1, 1),
            )
        else:
            box(m, "train_body", (0, H / 2, 0), (L, H, W), 1.0, faces="+x-x")
        # bogies straddling the beam
        for bx in (-L / 2 + 2.5, L / 2 - 2.5):
            box(m, "metal", (bx, -0.35, 0), (2.4, 0.7, W + 0.2), 1.0)
        train.child(f"liziba/train/car_{c + 1}", mesh=m, translation=(c * 15.4, 0, 0))
    # street and the viewing platform in front (+Z)
    ground = root.child("liziba/ground", mesh=MeshBuf())
    box(ground.mesh, "paving", (0, -0.25, 0), (200, 0.5, 120), 4.0)
    box(ground.mesh, "stone", (0, 2.0, 22), (40, 4.0, 10), 2.0)
    for k in range(30):
        cylinder(
            ground.mesh,
            "metal",
            (-19.5 + k * 1.35, 4.0, 17.1),
            (-19.5 + k * 1.35, 5.1, 17.1),
            0.03,
            6,
        )
    beam(ground.mesh, "metal", (-19.8, 5.1, 17.1), (19.8, 5.1, 17.1), 0.06)
    for k in range(8):
        x = -30 + k * 8.5
        lathe(ground.mesh, "metal", [(0.1, 0), (0.07, 5.5)], 10, center=(x, 0, 8), caps=True)
        lathe(
            ground.mesh,
            "light_strip_gold",
            [(0.05, 0), (0.25, 0.1), (0.28, 0.3), (0.1, 0.45)],
            12,
            center=(x, 5.5, 8),
            uv_v=0.5,
        )
    # neighbouring slab blocks
    nb = root.child("liziba/neighbours")
    rng = _rng(33)
    for k, x in enumerate((-70, -45, 45, 72)):
        h = float(rng.uniform(30, 70))
        m = MeshBuf()
        box(m, "apartment", (0, h / 2, 0), (20, h, 16), 6.0)
        nb.child(
            f"liziba/neighbours/block_{k}", mesh=m, translation=(x, 0, -45 - rng.uniform(0, 10))
        )
    stats = sw.write(root, out)
    if preview:
        render_preview(root, sw, preview / "liziba-monorail.png")
    return stats


def build_nanshan(out: Path, preview: Path | None):
    sw = SceneWriter("nanshan-viewpoint")
    std_materials(sw)
    sw.texture("skyline_base", tex_skyline(1024, 14, lit=False), "png")
    sw.texture("skyline_glow", tex_skyline(1024, 14, lit=True), "png")
    sw.texture("leaves", tex_foliage(512, 12))
    sw.texture("bark", tex_bark(512, 13))
    sw.material(
        Mat(
            "skyline",
            "skyline_base",
            "skyline_glow",
            strength=3.0,
            roughness=0.9,
            double=True,
            alpha_mask=True,
        )
    )
    sw.material(Mat("foliage", "leaves", roughness=0.9))
    sw.material(Mat("bark", "bark", roughness=0.95))
    root = SNode(
        "nanshan",
        extras=dict(
            EXTRAS,
            scene="nanshan-viewpoint",
            description="Viewing platform; the Yuzhong skyline panel lies along -Z.",
        ),
    )
    deck = root.child("nanshan/platform", mesh=MeshBuf())
    mb = deck.mesh

    def deck_fn(U, V):
        a = (U - 0.5) * math.radians(140)
        r = 2 + V * 16
        return np.stack([r * np.sin(a), np.zeros_like(r), -r * np.cos(a)], -1)

    grid(mb, "paving", deck_fn, 48, 16, (24, 8))

    # supporting wall below the rim
    def wall(U, V):
        a = (U - 0.5) * math.radians(140)
        r = 18.0
        y = -6 + V * 6
        return np.stack([r * np.sin(a), y, -r * np.cos(a)], -1)

    grid(mb, "stone", wall, 48, 4, (30, 3))
    # railing along the rim: posts, balusters, hand rail, light strip
    n = 120
    pts = []
    for k in range(n + 1):
        a = (k / n - 0.5) * math.radians(140)
        pts.append((17.7 * math.sin(a), -17.7 * math.cos(a)))
    for k, (x, z) in enumerate(pts):
        if k % 6 == 0:
            box(
                mb,
                "stone",
                (x, 0.55, z),
                (0.25, 1.1, 0.25),
                0.5,
                yaw=-(k / n - 0.5) * math.radians(140),
            )
        else:
            cylinder(mb, "metal", (x, 0.0, z), (x, 1.05, z), 0.025, 6)
    for (x0, z0), (x1, z1) in zip(pts[:-1], pts[1:], strict=False):
        beam(mb, "metal", (x0, 1.1, z0), (x1, 1.1, z1), 0.07, 0.05)
        beam(
            mb,
            "light_strip_gold",
            (x0 * 0.995, 0.25, z0 * 0.995),
            (x1 * 0.995, 0.25, z1 * 0.995),
            0.05,
            0.05,
        )
    # the huangjue tree behind the platform (+Z side)
    tree = root.child("nanshan/huangjue_tree", mesh=MeshBuf(), translation=(6.0, 0, 8.0))
    mb = tree.mesh
    lathe(mb, "bark", [(0.9, 0), (0.6, 1.5), (0.5, 4.0), (0.4, 6.0)], 16, uv_v=2.0)
    rng = _rng(44)
    for k in range(6):
        a = k / 6 * 2 * math.pi + rng.uniform(-0.3, 0.3)
        tip = (3.5 * math.sin(a), 7.0 + rng.uniform(-0.5, 1.5), 3.5 * math.cos(a))
        cylinder(mb, "bark", (0, 5.0, 0), tip, 0.22, 10)
    for _ in range(18):
        a = rng.uniform(0, 2 * math.pi)
        r = rng.uniform(0, 4.5)
        c = (r * math.sin(a), 7.5 + rng.uniform(-1, 2), r * math.cos(a))
        s = rng.uniform(1.6, 2.6)
        prof = [
            (s * math.sin(t), s * 0.7 * -math.cos(t)) for t in np.linspace(0.15, math.pi - 0.15, 8)
        ]
        lathe(mb, "foliage", prof, 14, center=c, uv_v=1.0)
    # observation tower behind
    tw = root.child("nanshan/tower", mesh=MeshBuf(), translation=(-10, 0, 16))
    for lvl in range(6):
        y = lvl * 4.6
        lathe(
            tw.mesh,
            "concrete",
            [(5.0 - lvl * 0.3, 0), (5.0 - lvl * 0.3, 4.2)],
            8,
            center=(0, y, 0),
            flat=True,
            phase=math.pi / 8,
            uv_v=2.0,
        )
        lathe(
            tw.mesh,
            "light_strip_gold",
            [(5.15 - lvl * 0.3, 4.2), (5.15 - lvl * 0.3, 4.45)],
            8,
            center=(0, y, 0),
            flat=True,
            phase=math.pi / 8,
            uv_v=0.25,
        )
    # lamps on the platform
    lamps = root.child("nanshan/lamps", mesh=MeshBuf())
    for k in range(7):
        a = (k / 6 - 0.5) * math.radians(120)
        x, z = 12 * math.sin(a), -12 * math.cos(a)
        lathe(lamps.mesh, "metal", [(0.08, 0), (0.05, 3.2)], 10, center=(x, 0, z))
        lathe(
            lamps.mesh,
            "light_strip_gold",
            [(0.03, 0), (0.2, 0.1), (0.22, 0.25), (0.03, 0.4)],
            12,
            center=(x, 3.2, z),
            uv_v=0.4,
        )
    # skyline panel across the river (-Z), curved, plus a few 3D lit slabs in front of it
    sky = root.child("nanshan/skyline", mesh=MeshBuf())

    def panel(U, V):
        a = (U - 0.5) * math.radians(110)
        r = 1400.0
        y = -265 + V * 560  # river ~175 m MSL, platform ~440 m
        return np.stack([r * np.sin(a), y, -r * np.cos(a)], -1)

    # (1 - U, 1 - V): normal faces the viewer (+Z) and image row 0 (sky) is at the top
    grid(sky.mesh, "skyline", lambda U, V: panel(1 - U, 1 - V), 40, 4, (1, 1))
    slabs = root.child("nanshan/skyline_towers")
    rng = _rng(45)
    for k in range(12):
        a = rng.uniform(-0.45, 0.45)
        r = float(rng.uniform(900, 1200))
        h = float(rng.uniform(180, 330))
        m = MeshBuf()
        box(m, "tower_facade", (0, h / 2, 0), (40, h, 30), 40.0)
        box(m, "light_strip_cyan", (0, h + 1, 0), (40.5, 2, 30.5), 4.0)
        slabs.child(
            f"nanshan/skyline_towers/tower_{k:02d}",
            mesh=m,
            translation=(r * math.sin(a), -262, -r * math.cos(a)),
            rotation_y=-a,
        )
    stats = sw.write(root, out)
    if preview:
        render_preview(root, sw, preview / "nanshan-viewpoint.png")
    return stats


# =============================================================================
# Preview (orthographic, painter's algorithm, not committed)
# =============================================================================


def _world_tris(node: SNode, parent=None):
    parent = np.eye(4) if parent is None else parent
    T = np.eye(4)
    if node.translation is not None:
        T[:3, 3] = node.translation
    if node.rotation_y:
        c, s = math.cos(node.rotation_y), math.sin(node.rotation_y)
        R = np.array([[c, 0, s, 0], [0, 1, 0, 0], [-s, 0, c, 0], [0, 0, 0, 1]])
        T = T @ R
    M = parent @ T
    if node.mesh is not None:
        for mat, (Ps, _n, _uv, Is, _) in node.mesh.groups.items():
            P = np.vstack(Ps).astype(np.float64)
            P = (M[:3, :3] @ P.T).T + M[:3, 3]
            I = np.concatenate(Is).reshape(-1, 3)
            yield mat, P[I]
    for c in node.children:
        yield from _world_tris(c, M)


def render_preview(root: SNode, sw: SceneWriter, path: Path, size=1024, yaw=0.5, pitch=0.35):
    path.parent.mkdir(parents=True, exist_ok=True)
    colors = {}
    for name, m in sw.materials.items():
        img = sw.textures[m.emissive or m.base][0].convert("RGB").resize((8, 8))
        c = np.asarray(img, F32).reshape(-1, 3).mean(0)
        if m.emissive:
            c = np.clip(c * 2.0 + 40, 0, 255)
        colors[name] = c
    tris, cols = [], []
    for mat, T in _world_tris(root):
        tris.append(T)
        cols.append(np.repeat(colors.get(mat, np.array([200, 0, 200]))[None], len(T), 0))
    T = np.vstack(tris)
    C = np.vstack(cols)
    cy, sy = math.cos(yaw), math.sin(yaw)
    cp, sp = math.cos(pitch), math.sin(pitch)
    R = np.array([[cy, 0, -sy], [0, 1, 0], [sy, 0, cy]]) @ np.eye(3)
    R = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]]) @ R
    V = T @ R.T
    n = np.cross(V[:, 1] - V[:, 0], V[:, 2] - V[:, 0])
    ln = np.linalg.norm(n, axis=1) + 1e-12
    shade = 0.45 + 0.55 * np.abs(n[:, 2] / ln)
    lo = V[..., :2].reshape(-1, 2).min(0)
    hi = V[..., :2].reshape(-1, 2).max(0)
    scale = (size - 20) / max(hi - lo)
    xy = (V[..., :2] - lo) * scale + 10
    xy[..., 1] = size - xy[..., 1]
    order = np.argsort(V[..., 2].mean(1))  # far (small z) first
    img = Image.new("RGB", (size, size), (8, 10, 22))
    d = ImageDraw.Draw(img)
    for i in order:
        c = tuple(int(v) for v in np.clip(C[i] * shade[i], 0, 255))
        d.polygon([tuple(p) for p in xy[i]], fill=c)
    img.save(path)


# =============================================================================

SCENES = {
    "hongya-cave-facade": build_hongya,
    "jiefangbei-monument": build_jiefangbei,
    "chaotianmen-confluence": build_chaotianmen,
    "yangtze-cableway-cabin": build_cableway,
    "liziba-monorail": build_liziba,
    "nanshan-viewpoint": build_nanshan,
}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Build the procedural chongqing-night scenes (GLB).")
    ap.add_argument("--only", action="append", choices=sorted(SCENES), help="scene id (repeatable)")
    ap.add_argument("--out", type=Path, default=OUT_DIR, help="output folder")
    ap.add_argument(
        "--preview", type=Path, default=None, help="also write orthographic preview PNGs here"
    )
    args = ap.parse_args(argv)
    total = 0
    for sid, fn in SCENES.items():
        if args.only and sid not in args.only:
            continue
        st = fn(args.out / f"{sid}.glb", args.preview)
        total += st["bytes"]
        print(
            f"{sid:24s} {st['triangles']:7d} tris {st['vertices']:7d} verts {st['nodes']:4d} nodes "
            f"{st['materials']:2d} mats {st['textures']:2d} tex {st['bytes'] / 1e6:6.2f} MB"
        )
    print(f"total {total / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
