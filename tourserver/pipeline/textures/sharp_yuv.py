"""Sharp RGB->YUV 4:2:0, done once per image, so any lossy WebP encode of it keeps its
colour edges.

Why: lossy WebP stores chroma at half resolution. A plain conversion averages each 2x2
block's colour, and the decoder's bilinear ("fancy") upsampling then smears colour across
edges; libwebp's sharp YUV instead chooses luma and chroma so that the *decoded* pixels
come closest to the source (see `webp_encode` for what that saves on the corpus).
libwebp runs it inside every encode, which costs ~0.3 s per megapixel here, once per
quality a search tries. This module solves the same least-squares problem once, in
NumPy, and returns RGB pixels whose plain conversion gives those luma and chroma values
(every pixel of a 2x2 block carries the block's chroma): encoding them without libwebp's
option decodes as close to the source as encoding the source with it (DamagedHelmet's
base colour at quality 87: 40.64/41.11/40.10 dB against libwebp's 40.66/41.04/40.06, in
0.1 % fewer bytes), for one pass of ~0.1 s per megapixel however many qualities follow.

The maths is libwebp's: BT.601 limited-range YUV, chroma sited between each pair of
pixels, decoded with 9-3-3-1 bilinear weights and clipped to 0..255. Each iteration
moves luma by the residual's mean and chroma by the adjoint of the upsampling applied to
the residual (a Jacobi step of the least-squares problem); on DamagedHelmet's base
colour, three or four iterations gave the same bytes and PSNR as two.
"""

from __future__ import annotations

import numpy as np

F = np.float32
ITERATIONS = 2
BAND_BLOCKS = 64  # 2x2 block rows per band: 128 pixel rows
# BT.601 limited range, as libwebp's VP8RGBToY/U/V and VP8YUVToR/G/B.
_Y = (F(0.2567890625), F(0.50412), F(0.09790625))
_U = (F(-0.14822), F(-0.29099), F(0.439453))
_V = (F(0.439453), F(-0.36799), F(-0.071462))
_YSCALE, _RV, _GU, _GV, _BU = F(1.164), F(1.596), F(0.391), F(0.813), F(2.018)


def sharp_rgb(pixels: np.ndarray, iterations: int = ITERATIONS) -> np.ndarray:
    """`pixels` (H x W x 3 or 4, uint8) with RGB replaced by values whose plain 4:2:0
    conversion is the sharp one; alpha is kept as it is."""
    height, width = pixels.shape[:2]
    rgb = pixels[..., :3]
    if height % 2 or width % 2:  # whole 2x2 blocks: repeat the last row or column
        rgb = np.pad(rgb, ((0, height % 2), (0, width % 2), (0, 0)), mode="edge")
    out = pixels.copy()
    # Bands of rows, each solved with a margin of `halo` block rows either side: an
    # iteration reaches one block row further, so the margin keeps every band's own rows
    # exactly what a solve of the whole image gives, while the band's arrays stay in the
    # CPU cache (0.40 s against 0.67 s for a 2048 px texture).
    blocks = rgb.shape[0] // 2
    halo = iterations + 1
    for top in range(0, blocks, BAND_BLOCKS):
        bottom = min(blocks, top + BAND_BLOCKS)
        lo, hi = max(0, top - halo), min(blocks, bottom + halo)
        luma, u, v = _solve(rgb[2 * lo:2 * hi], iterations)
        band = _to_rgb(luma, u, v)[2 * (top - lo):2 * (bottom - lo)]
        rows = min(height, 2 * bottom) - 2 * top
        out[2 * top:2 * top + rows, :, :3] = band[:rows, :width]
    return out


def _solve(rgb: np.ndarray, iterations: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r, g, b = (rgb[..., k].astype(F) for k in range(3))
    luma = _Y[0] * r + _Y[1] * g + _Y[2] * b + F(16)
    br, bg, bb = _block_mean(r), _block_mean(g), _block_mean(b)
    u = _U[0] * br + _U[1] * bg + _U[2] * bb  # centred on 0, not 128
    v = _V[0] * br + _V[1] * bg + _V[2] * bb
    step_y = F(1 / (3 * 1.164))
    # Half the inverse of each chroma row's squared norm: the upsampling's adjoint sums
    # about four pixels' worth of residual per chroma sample.
    step_u = F(1 / (2 * (0.391**2 + 2.018**2)))
    step_v = F(1 / (2 * (1.596**2 + 0.813**2)))
    for _ in range(iterations):
        uu, vv = _upsample(u), _upsample(v)
        y = _YSCALE * (luma - F(16))
        er = np.clip(y + _RV * vv, 0, 255)
        er -= r
        eg = np.clip(y - _GU * uu - _GV * vv, 0, 255)
        eg -= g
        eb = np.clip(y + _BU * uu, 0, 255)
        eb -= b
        mean = (er + eg + eb) * F(1 / 3)
        luma -= mean * F(3) * step_y
        np.clip(luma, 16, 235, out=luma)
        # Chroma takes what the luma step left: the residual net of its mean.
        er -= mean
        eg -= mean
        eb -= mean
        u -= _upsample_adjoint(-_GU * eg + _BU * eb) * step_u
        v -= _upsample_adjoint(_RV * er - _GV * eg) * step_v
        np.clip(u, -112, 112, out=u)
        np.clip(v, -112, 112, out=v)
    return luma, u, v


def _to_rgb(luma: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Pixels that carry `luma` each and their block's chroma (not upsampled: the
    encoder averages each block back to it)."""
    y = _YSCALE * (np.round(luma) - F(16))
    uu = np.repeat(np.repeat(u, 2, 0), 2, 1)
    vv = np.repeat(np.repeat(v, 2, 0), 2, 1)
    out = np.empty((*luma.shape, 3), np.uint8)
    for k, value in enumerate((y + _RV * vv, y - _GU * uu - _GV * vv, y + _BU * uu)):
        np.clip(np.round(value), 0, 255, out=out[..., k], casting="unsafe")
    return out


def _block_mean(x: np.ndarray) -> np.ndarray:
    return F(0.25) * (x[0::2, 0::2] + x[0::2, 1::2] + x[1::2, 0::2] + x[1::2, 1::2])


def _upsample(c: np.ndarray) -> np.ndarray:
    """libwebp's fancy upsampling: (h, w) chroma to (2h, 2w), 3/4 of the nearest sample
    and 1/4 of the next along each axis, edges repeated."""
    p = np.pad(c, 1, mode="edge")
    rows = np.empty((2 * c.shape[0], c.shape[1] + 2), F)
    rows[0::2] = F(0.75) * p[1:-1] + F(0.25) * p[:-2]
    rows[1::2] = F(0.75) * p[1:-1] + F(0.25) * p[2:]
    out = np.empty((2 * c.shape[0], 2 * c.shape[1]), F)
    out[:, 0::2] = F(0.75) * rows[:, 1:-1] + F(0.25) * rows[:, :-2]
    out[:, 1::2] = F(0.75) * rows[:, 1:-1] + F(0.25) * rows[:, 2:]
    return out


def _upsample_adjoint(g: np.ndarray) -> np.ndarray:
    """The transpose of `_upsample`: (2h, 2w) back to (h, w); edge samples take back what
    the repeated edge lent."""
    return _adjoint_axis(_adjoint_axis(g, 1), 0)


def _adjoint_axis(g: np.ndarray, axis: int) -> np.ndarray:
    g = np.moveaxis(g, axis, 0)
    even, odd = g[0::2], g[1::2]
    out = F(0.75) * (even + odd)
    out[:-1] += F(0.25) * even[1:]
    out[1:] += F(0.25) * odd[:-1]
    out[0] += F(0.25) * even[0]
    out[-1] += F(0.25) * odd[-1]
    return np.moveaxis(out, 0, axis)
