"""Perceptual image metrics that texture encodings are judged by.

`ssimulacra2`: SSIMULACRA2 (Jon Sneyers, Cloudinary; the 2023 version of libjxl's
tools/ssimulacra2.cc), a perceptual score for a distorted image against its reference. It
compares the two in XYB, libjxl's model of the eye's colour response, at six scales (1:1 to
1:32) by three error maps (SSIM, ringing/blocking, blurring), and maps a weighted sum of 108
norms, fitted to human ratings, onto libjxl's scale: 100 identical, 90 visually lossless (no
difference in a flicker test at 1:1), 80 very high quality (none in a side-by-side view), 70
high, 50 medium, 30 low; it goes below 0 for very strong distortion.
Why it is used here: PSNR counts every changed value the same, so holding a PSNR target on a
photographic texture pays to encode its sensor noise, which nobody sees; a perceptual score
lets the encoder drop that noise and keep what the eye notices (edges, smooth gradients, flat
areas turned blocky).

`normal_angle_error`: for tangent-space normal maps, whose texels are directions fed to
lighting rather than colours shown, the angle between each reference and distorted normal,
in degrees (mean, 99th percentile, maximum).

The SSIMULACRA2 port follows libjxl step for step (sRGB -> linear -> XYB, downscaling in
linear RGB, its recursive Gaussian of sigma 1.5 with zero outside the image, the scale loop,
weights and alpha handling), in float32 and in cache-sized bands of rows. It blurs with that
recursive filter's exact 9 taps: libjxl's float32 recursion adds rounding noise that lowers
libjxl's own scores, by ~0.1-0.5 typically and up to ~3 near 90 on 2048 px images; with an
exact blur, libjxl's tool agrees with this port to within 0.12 (on 180 WebP-coded textures).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

__all__ = ["AngleError", "Ssimulacra2Reference", "normal_angle_error", "ssimulacra2"]

# --- SSIMULACRA2 constants, from libjxl tools/ssimulacra2.cc and lib/jxl/opsin_params.h ---

_NUM_SCALES = 6
_MIN_SIZE = 8  # px: libjxl's tool refuses smaller images and stops scaling below this
_C2 = np.float32(0.0009)
_ALPHA_BACKGROUNDS = (0.1, 0.9)  # libjxl's tool: blend over dark and light, keep the worse

_OPSIN = np.array([[0.30, 0.622, 0.078],
                   [0.23, 0.692, 0.078],
                   [0.24342268924547819, 0.20476744424496821, 0.55180986650955360]],
                  np.float32)
_OPSIN_BIAS = 0.0037930732552754493

# Indexed as libjxl's Score() walks them: channel (X, Y, B), scale, norm (1, 4), then map
# (SSIM, ringing, blurring).
_WEIGHTS = np.array([
    0.0, 0.0007376606707406586, 0.0, 0.0, 0.0007793481682867309, 0.0, 0.0,
    0.0004371155730107379, 0.0, 1.1041726426657346, 0.00066284834129271,
    0.00015231632783718752, 0.0, 0.0016406437456599754, 0.0, 1.8422455520539298,
    11.441172603757666, 0.0, 0.0007989109436015163, 0.000176816438078653, 0.0,
    1.8787594979546387, 10.94906990605142, 0.0, 0.0007289346991508072, 0.9677937080626833,
    0.0, 0.00014003424285435884, 0.9981766977854967, 0.00031949755934435053,
    0.0004550992113792063, 0.0, 0.0, 0.0013648766163243398, 0.0, 0.0, 0.0, 0.0, 0.0,
    7.466890328078848, 0.0, 17.445833984131262, 0.0006235601634041466, 0.0, 0.0,
    6.683678146179332, 0.00037724407979611296, 1.027889937768264, 225.20515300849274, 0.0,
    0.0, 19.213238186143016, 0.0011401524586618361, 0.001237755635509985,
    176.39317598450694, 0.0, 0.0, 24.43300999870476, 0.28520802612117757,
    0.0004485436923833408, 0.0, 0.0, 0.0, 34.77906344483772, 44.835625328877896, 0.0, 0.0,
    0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0008680556573291698, 0.0, 0.0, 0.0, 0.0, 0.0,
    0.0005313191874358747, 0.0, 0.00016533814161379112, 0.0, 0.0, 0.0, 0.0, 0.0,
    0.0004179171803251336, 0.0017290828234722833, 0.0, 0.0020827005846636437, 0.0, 0.0,
    8.826982764996862, 23.19243343998926, 0.0, 95.1080498811086, 0.9863978034400682,
    0.9834382792465353, 0.0012286405048278493, 171.2667255897307, 0.9807858872435379, 0.0,
    0.0, 0.0, 0.0005130064588990679, 0.0, 0.00010854057858411537,
])

def _recursive_gaussian_kernel(sigma: float) -> np.ndarray:
    """The taps of libjxl's recursive Gaussian (Charalampidis 2016, gauss_blur.cc).

    That filter is linear and treats pixels outside the image as zero, so it equals a
    convolution with its impulse response: for sigma 1.5, 9 taps summing to 1 (a true
    Gaussian would need 11+). Running the recursion once on an impulse gives those taps."""
    radius = round(3.2795 * sigma + 0.2546)
    omega = np.pi / (2.0 * radius) * np.array([1.0, 3.0, 5.0])
    p = np.array([1.0, -1.0, 1.0]) / np.tan(0.5 * omega)
    r = np.array([1.0, -1.0, 1.0]) * p * p / np.sin(omega)
    rho = np.exp(-0.5 * sigma * sigma * omega * omega) / radius
    d_13, d_35, d_51 = (p[0] * r[1] - r[0] * p[1], p[1] * r[2] - r[1] * p[2],
                        p[2] * r[0] - r[2] * p[0])
    zeta_15, zeta_35 = d_35 / d_13, d_51 / d_13
    matrix = np.array([p, r, [zeta_15, zeta_35, 1.0]])
    gamma = np.array([1.0, radius * radius - sigma * sigma,
                      zeta_15 * rho[0] + zeta_35 * rho[1] + rho[2]])
    beta = np.linalg.solve(matrix, gamma)
    n2 = -beta * np.cos(omega * (radius + 1.0))
    d1 = -2.0 * np.cos(omega)
    # out[n] = sum_k y_k[n], y_k[n] = n2_k * (in[n-N-1] + in[n+N-1]) - d1_k y_k[n-1] - y_k[n-2]
    length = 4 * radius + 3
    impulse = np.zeros(length)
    impulse[2 * radius + 1] = 1.0
    prev, prev2 = np.zeros(3), np.zeros(3)
    response = np.zeros(length)
    for n in range(length):
        left, right = n - radius - 1, n + radius - 1
        total = (impulse[left] if left >= 0 else 0.0) + (impulse[right] if right < length else 0.0)
        out = n2 * total - d1 * prev - prev2
        prev2, prev = prev, out
        response[n] = out.sum()
    taps = response[np.abs(response) > 1e-9]
    return taps[::-1].astype(np.float32)  # symmetric anyway; as correlation taps


_KERNEL = _recursive_gaussian_kernel(1.5)
_KERNEL.setflags(write=False)
_RADIUS = len(_KERNEL) // 2

# The blur's working rows are sized to keep one band's planes within about this many bytes
# (a per-core L2 cache).
_BAND_BYTES = 1 << 21


def _srgb_to_linear(encoded: np.ndarray) -> np.ndarray:
    """The sRGB transfer curve, decoded; `encoded` in 0..1."""
    return np.where(encoded <= 0.04045, encoded / 12.92,
                    ((encoded + 0.055) / 1.055) ** 2.4).astype(np.float32)


_SRGB8_TO_LINEAR = _srgb_to_linear(np.arange(256, dtype=np.float64) / 255.0)
_SRGB8_TO_LINEAR.setflags(write=False)


def ssimulacra2(reference: np.ndarray, distorted: np.ndarray) -> float:
    """SSIMULACRA2 score of `distorted` against `reference`: H x W x 3 or H x W x 4 uint8
    sRGB arrays of one shape, at least 8 x 8. 100: identical; 90: visually lossless; 70:
    high quality; 50: medium (see the module docstring).

    With alpha, as libjxl's tool: both images are blended (in sRGB) over a dark (0.1) and a
    light (0.9) grey background and the worse of the two scores is returned, so colour
    under transparent texels does not count and a change of alpha does. Fully opaque
    images are scored once."""
    return Ssimulacra2Reference(reference).score(distorted)


class Ssimulacra2Reference:
    """A reference image prepared for several scores: its XYB at every scale is made once
    (the encoder's quality search scores 3-8 encodings of one image against it), at the
    cost of holding them (about 16 bytes a pixel, twice with alpha)."""

    def __init__(self, reference: np.ndarray) -> None:
        self._reference = reference
        self._scales: dict[float | None, list[np.ndarray]] = {}

    def score(self, distorted: np.ndarray) -> float:
        """`ssimulacra2(reference, distorted)`."""
        reference = self._reference
        _check_images(reference, distorted)
        if reference.shape[2] == 4 and not (_opaque(reference) and _opaque(distorted)):
            return min(self._score(distorted, bg) for bg in _ALPHA_BACKGROUNDS)
        return self._score(distorted, None)

    def _score(self, distorted: np.ndarray, background: float | None) -> float:
        if background not in self._scales:
            self._scales[background] = list(_xyb_scales(self._reference, background))
        return _score(self._scales[background], distorted, background)


def _check_images(reference: np.ndarray, distorted: np.ndarray) -> None:
    if reference.shape != distorted.shape:
        raise ValueError(f"image shapes differ: {reference.shape} and {distorted.shape}")
    if reference.ndim != 3 or reference.shape[2] not in (3, 4):
        raise ValueError(f"expected H x W x 3 or H x W x 4 pixels, got {reference.shape}")
    if reference.dtype != np.uint8 or distorted.dtype != np.uint8:
        raise ValueError(f"expected uint8 pixels, got {reference.dtype} and {distorted.dtype}")
    if min(reference.shape[:2]) < _MIN_SIZE:
        raise ValueError(f"SSIMULACRA2 needs at least {_MIN_SIZE} x {_MIN_SIZE} pixels, "
                         f"got {reference.shape[1]} x {reference.shape[0]}")


def _opaque(rgba: np.ndarray) -> bool:
    return bool((rgba[..., 3] == 255).all())


def _linear(pixels: np.ndarray) -> np.ndarray:
    """Linear RGB planes (3 x H x W float32) of sRGB pixels, ignoring alpha."""
    return _SRGB8_TO_LINEAR[np.moveaxis(pixels[..., :3], 2, 0)]


def _blend_table(background: float) -> np.ndarray:
    """Linear RGB of every 8-bit colour (columns) at every 8-bit alpha (rows) blended over a
    grey `background` in sRGB, as libjxl's AlphaBlend does before its conversion to linear."""
    levels = np.arange(256) / 255.0
    alpha = levels[:, None]
    return _srgb_to_linear(levels[None, :] * alpha + (1.0 - alpha) * background)


def _blended(rgba: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Linear RGB planes of `rgba` by a `_blend_table`."""
    planes = np.moveaxis(rgba, 2, 0)
    return table[planes[3], planes[:3]]


def _xyb_scales(pixels: np.ndarray, background: float | None) -> Iterator[np.ndarray]:
    """An sRGB image's XYB (laid out by `_padded`) at every scale SSIMULACRA2 measures,
    blended over `background` (None: alpha ignored)."""
    table = None if background is None else _blend_table(background)
    for scale in range(_scale_count(*pixels.shape[:2])):
        if scale == 0:
            xyb, linear = _top_scale(pixels, table)
        else:
            if scale > 1:
                linear = _downsample(linear)
            xyb = _positive_xyb(linear)
        yield xyb


def _score(reference: list[np.ndarray], pixels2: np.ndarray, background: float | None) -> float:
    """The score of an sRGB image against a reference's `_xyb_scales`, blended over
    `background` (None: alpha ignored)."""
    scales = len(reference)
    # libjxl walks its weights by channel, then scale: with fewer than six scales (images
    # under 113 px) the weights it pairs with the norms shift; kept for fidelity.
    weights = _WEIGHTS[:18 * scales].reshape(3, scales, 2, 3)
    # A channel's SSIM map is only made at scales where its norms weigh anything: at 1:1,
    # only Y's does (X's and B's weigh 0), which saves half the work at the costliest scale.
    wanted = (weights[..., 0] != 0).any(axis=2)  # (channel, scale)
    norms = []  # per scale: (channel, norm, map)
    for scale, xyb2 in enumerate(_xyb_scales(pixels2, background)):
        norms.append(_scale_norms(reference[scale], xyb2, np.flatnonzero(wanted[:, scale])))
    total = float(np.dot(weights.ravel(), np.stack(norms, axis=1).ravel()))
    total *= 0.9562382616834844
    total = (2.326765642916932 * total - 0.020884521182843837 * total ** 2
             + 6.248496625763138e-05 * total ** 3)
    return 100.0 - 10.0 * total ** 0.6276336467831387 if total > 0 else 100.0


def _scale_count(height: int, width: int) -> int:
    """How many scales libjxl measures: it tests the size before a scale's downscaling, so
    the last scale measured may be 4-7 px across."""
    count = 0
    while count < _NUM_SCALES and min(height, width) >= _MIN_SIZE:
        if count:
            height, width = (height + 1) // 2, (width + 1) // 2
        count += 1
    return count


def _downsample(linear: np.ndarray) -> np.ndarray:
    """2x2 box average; an odd last row or column is averaged with itself (libjxl clamps)."""
    height, width = linear.shape[1:]
    if height % 2 or width % 2:
        linear = np.pad(linear, ((0, 0), (0, height % 2), (0, width % 2)), mode="edge")
    rows = linear[:, 0::2] + linear[:, 1::2]
    out = rows[:, :, 0::2] + rows[:, :, 1::2]
    out *= np.float32(0.25)
    return out


# Colours are converted this many pixels at a time, so that the steps between stay in cache.
_CHUNK_PIXELS = 1 << 15


def _top_scale(pixels: np.ndarray, table: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """The 1:1 scale's XYB (laid out by `_padded`) and the 1:2 scale's linear RGB of H x W x
    3 or 4 uint8 sRGB `pixels` (blended by `table`, a `_blend_table`, unless None), converted
    a few rows at a time: the full-size linear image is never made."""
    height, width = pixels.shape[:2]
    xyb = _padded(height, width)
    half = np.empty((3, (height + 1) // 2, (width + 1) // 2), np.float32)
    step = max(2, _CHUNK_PIXELS // width // 2 * 2)  # even, so 2x2 blocks stay whole
    for top in range(0, height, step):
        rows = pixels[top:top + step]
        linear = _linear(rows) if table is None else _blended(rows, table)
        _xyb_into(linear, xyb[:, _RADIUS + top:_RADIUS + top + len(rows),
                              _RADIUS:_RADIUS + width])
        half[:, top // 2:(top + len(rows) + 1) // 2] = _downsample(linear)
    return xyb, half


def _positive_xyb(linear: np.ndarray) -> np.ndarray:
    """The XYB of linear RGB planes, laid out by `_padded`."""
    height, width = linear.shape[1:]
    xyb = _padded(height, width)
    step = max(1, _CHUNK_PIXELS // width)
    for top in range(0, height, step):
        rows = linear[:, top:top + step]
        _xyb_into(rows, xyb[:, _RADIUS + top:_RADIUS + top + rows.shape[1],
                            _RADIUS:_RADIUS + width])
    return xyb


def _xyb_into(linear: np.ndarray, out: np.ndarray) -> None:
    """libjxl's XYB of linear sRGB planes, shifted and scaled into about 0..1 as
    SSIMULACRA2's MakePositiveXYB does, written to the 3 planes `out`."""
    mixed = np.empty_like(linear)
    term = np.empty_like(linear[0])
    for i, m in enumerate(mixed):
        np.multiply(linear[0], _OPSIN[i, 0], out=m)
        np.multiply(linear[1], _OPSIN[i, 1], out=term)
        m += term
        np.multiply(linear[2], _OPSIN[i, 2], out=term)
        m += term
    # libjxl clamps the mix at 0 before the cube root; with linear sRGB in 0..1 and a
    # positive matrix and bias it never is below 0.
    mixed += np.float32(_OPSIN_BIAS)
    np.cbrt(mixed, out=mixed)
    # X = (m0 - m1) / 2, Y = (m0 + m1) / 2, B = m2 with m = cbrt(mix) - cbrt(bias); then
    # X * 14 + 0.42, Y + 0.01, B - Y + 0.55 (the cbrt(bias) cancels in X and B - Y).
    x, y, b = out
    np.subtract(mixed[0], mixed[1], out=x)
    x *= np.float32(7.0)
    x += np.float32(0.42)
    np.add(mixed[0], mixed[1], out=y)
    y *= np.float32(0.5)
    np.subtract(mixed[2], y, out=b)
    b += np.float32(0.55)
    y += np.float32(0.01 - math.cbrt(_OPSIN_BIAS))


def _padded(height: int, width: int) -> np.ndarray:
    """Zeros for 3 planes of height x width with a border of the blur's radius."""
    return np.zeros((3, height + 2 * _RADIUS, width + 2 * _RADIUS), np.float32)


def _scale_norms(xyb1: np.ndarray, xyb2: np.ndarray, ssim: np.ndarray) -> np.ndarray:
    """One scale's 18 norms as (channel, norm (1, 4), map (SSIM, ringing, blurring)), from
    two XYB images laid out by `_padded`; SSIM only for the channels in `ssim` (0 for the
    others).

    SSIM needs the blurred a, b, a^2, b^2 and ab of each channel; from ab and (a - b)^2 it
    can do without a^2 and b^2 (see `_band_sums`), which saves a fifth of the blurring.
    These maps are made and blurred a band of rows at a time, and the error maps summed over
    that band while it is still in cache: 3-4x faster than whole-image passes. Each band is
    worked on as one flat run of padded rows (a pixel at row * (width + 2 radius) + column):
    numpy is 1.5-2.5x faster on one long run than on rows of a 3-D view, at the cost of a
    few columns (and rows) of values past the image, which are never summed."""
    pad = _RADIUS
    height, row = xyb1.shape[1] - 2 * pad, xyb1.shape[2]
    width = row - 2 * pad
    planes = 6 + 2 * len(ssim)  # a and b of every channel; ab and (a - b)^2 of those in ssim
    band = int(max(8, min(height, _BAND_BYTES // (planes * 4 * row))))
    # Zeroed once, so that values past the image are always finite.
    stack, across, blurred, term = np.zeros((4, planes * (band + 2 * pad) * row), np.float32)
    work = np.zeros((3, 3, band * row), np.float32)
    image1, image2 = xyb1.reshape(3, -1), xyb2.reshape(3, -1)
    sums = np.zeros((6, 3))  # SSIM, SSIM^4, ringing, ringing^4, blurring, blurring^4
    for top in range(0, height, band):
        rows = min(band, height - top)
        tall = rows + 2 * pad  # output rows top.. and their neighbours
        size = planes * tall * row
        s = stack[:size].reshape(planes, tall * row)
        span = slice(top * row, (top + tall) * row)
        s[0:3], s[3:6] = image1[:, span], image2[:, span]
        if len(ssim):
            a, b = s[ssim], s[3 + ssim]
            products, squares = s[6:6 + len(ssim)], s[6 + len(ssim):]
            np.multiply(a, b, out=products)
            np.subtract(a, b, out=squares)
            squares *= squares
        # Along rows, then down columns: output i is centred on input i + radius * step.
        _blur_run(stack[:size], across[:size], term, step=1)
        _blur_run(across[:size], blurred[:size], term, step=row)
        pixels = rows * row
        maps = blurred[:size].reshape(planes, tall * row)[:, :pixels]
        first = (top + pad) * row + pad  # the band's first pixel in the padded images
        _band_sums(image1[:, first:first + pixels], image2[:, first:first + pixels], maps,
                   ssim, work[:, :, :pixels], width, row, sums)
    sums /= height * width
    sums[1::2] **= 0.25
    # (norm, map, channel) -> (channel, norm, map)
    return sums.reshape(3, 2, 3).transpose(2, 1, 0)


def _blur_run(src: np.ndarray, out: np.ndarray, term: np.ndarray, step: int) -> None:
    """out[i] = sum_j kernel[j] src[i + j * step] over a flat run (the last 2 radius * step
    outputs, which would read past it, are left as they were)."""
    length = len(src) - 2 * _RADIUS * step
    o, t = out[:length], term[:length]

    def window(offset: int) -> np.ndarray:
        return src[offset * step:offset * step + length]

    np.multiply(window(_RADIUS), _KERNEL[_RADIUS], out=o)
    for j in range(1, _RADIUS + 1):
        np.add(window(_RADIUS - j), window(_RADIUS + j), out=t)
        t *= _KERNEL[_RADIUS + j]
        o += t


def _band_sums(img1: np.ndarray, img2: np.ndarray, blurred: np.ndarray, ssim: np.ndarray,
               work: np.ndarray, width: int, row: int, sums: np.ndarray) -> None:
    """Add one band's per-channel sums of the error maps and of their 4th powers to `sums`,
    from `blurred` (mu1 and mu2 of every channel, then blur(ab) and blur((a - b)^2) of the
    channels in `ssim`), which is overwritten. All are runs of padded rows `row` long, of
    which the first `width` values are pixels."""
    mu1, mu2 = blurred[0:3], blurred[3:6]
    t, d, e = work
    if len(ssim):
        # SSIM without its luminance denominator (libjxl's 2023 correction):
        #   1 - (1 - (mu1 - mu2)^2) num / den, num = 2 (s12 - mu1 mu2) + C2,
        #   den = s11 - mu1^2 + s22 - mu2^2 + C2 = num + blur((a - b)^2) - (mu1 - mu2)^2,
        # as s11 + s22 = blur(a^2 + b^2) = blur((a - b)^2) + 2 s12. The right-hand side also
        # spares float32 the difference of two large squares.
        count = len(ssim)
        m1, m2 = mu1[ssim], mu2[ssim]
        num, den = blurred[6:6 + count], blurred[6 + count:]
        t, d = t[:count], d[:count]
        np.multiply(m1, m2, out=t)
        num -= t
        num *= np.float32(2.0)
        num += _C2
        np.subtract(m1, m2, out=t)
        t *= t
        den -= t
        den += num
        np.subtract(1.0, t, out=d)
        d *= num
        d /= den
        np.subtract(1.0, d, out=d)
        np.maximum(d, 0.0, out=d)
        _add_norm_sums(d, width, row, sums[0:2], ssim)
        t, d = work[0], work[1]
    # Edge maps: (1 + |img2 - mu2|) / (1 + |img1 - mu1|) - 1; above 0, the distorted image
    # has edges the reference lacks (ringing, blocking); below 0, it lost them (blurring).
    np.subtract(img1, mu1, out=t)
    np.abs(t, out=t)
    t += np.float32(1.0)
    np.subtract(img2, mu2, out=d)
    np.abs(d, out=d)
    d += np.float32(1.0)
    d /= t
    d -= np.float32(1.0)
    np.maximum(d, 0.0, out=e)
    _add_norm_sums(e, width, row, sums[2:4])
    np.minimum(d, 0.0, out=e)
    _add_norm_sums(e, width, row, sums[4:6])


def _add_norm_sums(errors: np.ndarray, width: int, row: int, sums: np.ndarray,
                   channels: np.ndarray | slice = slice(None)) -> None:
    """Add per-channel sums of `errors` (runs of padded rows) and of `errors ** 4` to the
    `channels` of `sums`, leaving out the values past the image; overwrites `errors`. The
    sign is dropped, as the 4th power drops it."""
    errors.reshape(len(errors), -1, row)[:, :, width:] = 0.0
    sums[0, channels] += np.abs(errors.sum(axis=1, dtype=np.float64))
    errors *= errors
    errors *= errors
    sums[1, channels] += errors.sum(axis=1, dtype=np.float64)


# --- Normal maps ---

# Decoded vectors shorter than this carry no direction: a unit normal quantised to 8 bits
# decodes to a length within ~1% of 1, while grey fill (128, 128, 128), used for atlas padding
# and unused texels, decodes to ~0.007 and flips direction with one step of coding error.
_MIN_NORMAL_LENGTH = 0.5


@dataclass(frozen=True)
class AngleError:
    """Angles between reference and distorted normals, in degrees."""

    mean: float
    p99: float
    max: float
    pixels: int  # how many texels were measured (those with a reference direction)


def normal_angle_error(reference: np.ndarray, distorted: np.ndarray) -> AngleError:
    """The angle, per texel, between the normals of two tangent-space normal maps (H x W x 3
    or x 4 uint8 of one shape; alpha is ignored), each decoded as 2 * v / 255 - 1 and
    normalised, as a renderer does.

    Texels whose reference vector is shorter than 0.5 (grey fill: no direction to keep) are
    left out; a distorted vector that short where the reference has a direction has lost
    it and counts as 180 degrees. With no texel left, every figure is 0."""
    if reference.shape != distorted.shape:
        raise ValueError(f"image shapes differ: {reference.shape} and {distorted.shape}")
    if reference.ndim != 3 or reference.shape[2] not in (3, 4):
        raise ValueError(f"expected H x W x 3 or H x W x 4 pixels, got {reference.shape}")
    (ax, ay, az), (bx, by, bz) = _normal_vectors(reference), _normal_vectors(distorted)
    # atan2(|a x b|, a . b) stays exact for small angles, where acos of a dot product does not
    # (lengths cancel: no need to normalise first). Worked in place: a 2048 px map is 4M
    # texels, and each temporary costs as much as the arithmetic.
    term = ay * bz
    term -= az * by
    cross = term * term
    np.multiply(az, bx, out=term)
    term -= ax * bz
    term *= term
    cross += term
    np.multiply(ax, by, out=term)
    term -= ay * bx
    term *= term
    cross += term
    np.sqrt(cross, out=cross)
    dot = ax * bx
    dot += ay * by
    dot += az * bz
    angles = np.degrees(np.arctan2(cross, dot, out=cross), out=cross)
    angles[_squared_length(bx, by, bz) < _MIN_NORMAL_LENGTH ** 2] = 180.0
    measured = _squared_length(ax, ay, az) >= _MIN_NORMAL_LENGTH ** 2
    if not measured.all():
        angles = angles[measured]
    if not angles.size:
        return AngleError(0.0, 0.0, 0.0, 0)
    return AngleError(mean=float(angles.mean(dtype=np.float64)),
                      p99=float(np.percentile(angles, 99)),
                      max=float(angles.max()),
                      pixels=int(angles.size))


_DECODE_NORMAL = (np.arange(256) * (2.0 / 255.0) - 1.0).astype(np.float32)
_DECODE_NORMAL.setflags(write=False)


def _normal_vectors(pixels: np.ndarray) -> list[np.ndarray]:
    """The x, y and z components (flat float32) of the vectors in a normal map's RGB, as
    2 * v / 255 - 1: one lookup per channel."""
    return [np.take(_DECODE_NORMAL, pixels[..., k]).ravel() for k in range(3)]


def _squared_length(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
    length = x * x
    length += y * y
    length += z * z
    return length
