"""The smallest WebP encoding of an image that holds a floor on its metric (`quality`:
SSIMULACRA2, PSNR or the normal angle).

Candidates: lossy (quality searched), and for sources that are not JPEG, lossless,
near-lossless (level searched), a reduced palette coded losslessly (colours searched) and
posterized values coded losslessly (step searched). Every choice is made on a sample of
the image (`image_sample`): each candidate's setting and its bytes, scaled to the image.
Then the candidates are encoded at full size in order of those estimates, each measured
there and corrected (up where the sample was optimistic, down where it was cautious and
the saving is worth another encode); the first that holds wins, unless the sample measured
a smaller one exactly. So an image costs one or two full-size encodes, not the ~5 of a
search; the result is always measured on the whole image.

Where the time goes, and what keeps it down (one image at a time, 2048 px textures of the
generated bench scenes and DamagedHelmet): a full-size lossy encode costs ~0.45 s and its
measure (decode, SSIMULACRA2) ~0.5 s; a sample probe ~0.05 s.
- Colour (SSIMULACRA2): the sample reads above the whole image, so the first full-size
  encode aims above the floor (`SAMPLE_OPTIMISM`) and usually holds: one or two full-size
  encodes where there were two or three (1.0-2.7 s an image, from 1.0-3.6 s). A search
  again at a shifted floor starts from what the sample measured (`search_lowest(seen=)`).
- Normal maps: posterized values, scored by their angle on the pixels without encoding,
  held 4 degrees 14-56 % smaller than near-lossless, whose full-size encode alone takes
  3.7 s (libvips, at any effort): one lossless encode, ~1.1 s. But on a smooth map the
  angle cannot see the contour lines posterizing draws in its shading, so a step is only
  taken where the map's own texel noise masks it (`unbanded_step`): the bench's scanned
  maps, not FlightHelmet's baked ones, which stay near-lossless (libwebp's leaves smooth
  texels alone). Anisotropy maps (directions judged by PSNR) are neither posterized nor
  reduced to a palette beyond that either (`WebpOptions.direction`). Near-lossless is
  screened on a quarter of its sample before it is estimated.
- Packed data (PSNR): posterized values as before; the lossless encode (~1.1 s) dominates.

Lossy WebP is encoded from pixels converted once by `sharp_yuv` (the same least-squares
conversion as libwebp's sharp RGB->YUV option, which would cost ~0.3 s per megapixel in
every encode): it keeps colour edges through 4:2:0 (FlightHelmet's colour textures hold
40 dB 1.5-26 % smaller than plainly converted on four of five, 8 % larger on one;
DamagedHelmet's normal map holds 45 dB at all). Grey images skip it: their chroma is
flat. Alpha is coded losslessly once per image and joined to each colour-only encode
(`webp_container`). Near-lossless needs libvips (Pillow has no option for it). Every
result names the metric its score is (`Encoded.metric`).
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image

try:  # libvips' WebP writer has near-lossless, which Pillow's does not expose
    import pyvips
except (ImportError, OSError):  # no libvips: Pillow's lossy WebP, no near-lossless
    pyvips = None

from tourserver.ingest.images import psnr
from tourserver.pipeline.textures.quality import ANGLE_METRICS, PSNR, Metric
from tourserver.pipeline.textures.sample import Sample, activity_sample, sample_of, tile_activity
from tourserver.pipeline.textures.search import (
    Encoded,
    Probe,
    Prober,
    measure,
    search_lowest,
)
from tourserver.pipeline.textures.sharp_yuv import sharp_rgb
from tourserver.pipeline.textures.webp_container import riff_chunks, with_alpha

WEBP = "image/webp"
# A sample that misses the floor by this much at the top quality is taken for the image.
PROXY_MISS_DB = 1.0
# Estimates over this x the bytes to beat are not worth a full-size encode.
PROXY_OVER_LIMIT = 1.25
# Near-lossless WebP (lossless coding of slightly adjusted pixels) beats lossy WebP on data
# textures and flat synthetic images, where lossy's 4:2:0 chroma cannot reach the floor; on
# photographic colour textures lossy wins below about this many bits per pixel.
NEAR_LOSSLESS_BPP = 2.0
# Small images (icons, flat synthetic textures) often code smaller near-losslessly even
# when lossy is cheap, and trying costs milliseconds.
NEAR_LOSSLESS_SMALL_PIXELS = 256 * 256
NEAR_LOSSLESS_LEVELS = (0, 20, 40, 60, 80)  # libwebp's distinct levels: lower adjusts more
NEAR_LOSSLESS_START = 40  # usually the smallest level; PSNR rises with the level
# One step down the ladder (20 levels) lost 1.9-4.3 dB on every corpus texture tried.
NEAR_LOSSLESS_STEP_DB = 1.5
NEAR_LOSSLESS_SAMPLE_PIXELS = 128 * 128
NEAR_LOSSLESS_MIN_GAIN = 0.05  # of lossless's bytes on the same sample
# Near-lossless is screened on a quarter of samples this large (`_near_lossless_screened_out`)
# and left out where the screen puts it this share over the bytes to beat (on the seven
# 2048 px data and normal maps of the bench scenes and DamagedHelmet, the 256 px screen's
# estimate was within 4.5 % of the 512 px sample's).
NEAR_LOSSLESS_SCREEN_PIXELS = 512 * 512
NEAR_LOSSLESS_SCREEN_MARGIN = 0.1
# A full-size near-lossless encode costs ~3x a lossless one (0.45-0.6 s against 0.15-0.2
# s for a 512 px texture), and only one candidate is confirmed: near-lossless goes first
# only where the sample expects it to be this share smaller than the next candidate
# (AnisotropyBarnLamp's occlusion-roughness-metal map: a tie on the sample, posterized 3 %
# smaller in a third of the time; FlightHelmet's leather normal map: 5.5 % ahead on the
# sample, 10 % at full size).
NEAR_LOSSLESS_RANK_PENALTY = 0.05
# Flat synthetic images (UV grids, labels, icons) often hold the floor with a few colours:
# the fewest of these that does, coded losslessly, is a candidate too (as pngquant does for
# PNG). Photographs miss the floor even at 256 and cost a few milliseconds to rule out.
PALETTE_SIZES = (2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 192, 256)
# Data textures (normal, ORM): every colour value rounded to a multiple of a step (as
# pngquant's --posterize), coded losslessly. The floor's error budget spread evenly over
# all pixels codes 8-25 % smaller than libwebp's near-lossless on half of FlightHelmet's
# data textures at 45 dB, and on every data and normal map of the corpus and bench scenes
# at the default level (normal maps at 4 degrees: 37-56 % smaller, the noisy ones 14 %).
# Its score is known before encoding (no decode), so a candidate costs one lossless encode,
# a third of a near-lossless one (at 2048 px, 1.1 s against 3.7 s). Largest first.
POSTERIZE_STEPS = (16, 12, 10, 8, 7, 6, 5.5, 5, 4.5, 4, 3.5, 3, 2.5, 2)
# Lossy settings are chosen on a sample of at least this many pixels: a 256 px mosaic of a
# 512 px texture put a colour texture's quality 4 steps too low, and encodes up to 512 px
# cost milliseconds (images under twice this are searched whole).
LOSSY_SAMPLE_PIXELS = 512 * 512
# Lossy samples: 64 px tiles chosen by activity, error measured 8 px or more from the
# seams (`image_sample.activity_sample`; 128 px tiles were 0.9 dB off, root mean square).
LOSSY_TILE = 64
LOSSY_MARGIN = 8
# Before that: a 128 px activity sample (64 px tiles) that misses the floor by this much at
# the top quality rules lossy out. On the corpus its PSNR there was at most 2.8 dB under the
# whole image's, where the 512 px sample's rule (PROXY_MISS_DB) allows 1; FlightHelmet's
# ten data maps miss 45 dB by 5-17 dB, and each is spared a 512 px lossy encode.
LOSSY_QUICK_PIXELS = 128 * 128
LOSSY_OUT_OF_REACH_DB = 4.0
# A lower quality is tried at full size when the sample says it saves this share and this
# many bytes per megapixel of the image (a full-size encode and measure cost ~0.23 s per
# megapixel)...
LOWER_MIN_SAVING = 0.04
LOWER_MIN_BYTES_PER_MP = 4096
# ...or, on images up to CHEAP_PIXELS, this share of its bytes: a texture with few bytes
# per megapixel saves few bytes by the megapixel however large its share (Fox's only
# texture: q31 holds SSIMULACRA2 70 in 11 % fewer bytes than q39, 2.6 KB for its megapixel).
LOWER_LARGE_SHARE = 0.1
# Sharp YUV buys ~4-25 % of a colour texture's lossy bytes for one conversion of ~0.1 s
# per megapixel. Below this many bytes per megapixel at the top quality (on the sample)
# that saving is under the exchange rate LOWER_MIN_BYTES_PER_MP sets, so it is not used:
# DamagedHelmet's mostly black emissive map, 17 KB.
SHARP_MIN_BYTES_PER_MP = 64 * 1024
# A perceptual metric scores a lossy sample's whole mosaic, seams included, and reads it
# above the whole image at the same quality: SSIMULACRA2 by a median 1.8 points on 1/16
# samples (2048 px textures), 0.9 on 1/4 samples (1024 px; from 4 above to 23 below, one
# image to another). The first full-size encode aims this many metric steps above the
# floor on a 1/16 sample, in proportion to log2 of the share below that (0.6 steps at 1/4),
# so that it holds more often: a miss costs another full-size encode and measure (~1 s at
# 2048 px). Replayed on measured curves (every quality, sample and whole image) of 44
# textures and 1024 px quarters of them: 94 -> 65 full-size encodes, the search's time
# -26 %, bytes -1.6 % (at very-high, 18 textures: -3 % time, -0.4 % bytes; 1.0 suits that
# level a little better, 1.25 the default one).
SAMPLE_OPTIMISM = 1.25
# Down from a full-size hit, a quality the shifted sample puts this far under the floor
# is still tried (a full-size miss there costs one encode; the floor always holds).
DOWN_SLACK_DB = 0.1
# Full-size encodes per lossy candidate, at most (usually 1 or 2); more for images up to
# CHEAP_PIXELS, whose encodes take milliseconds.
MAX_FULL_ENCODES = 3
MAX_FULL_ENCODES_CHEAP = 5
CHEAP_PIXELS = 1024 * 1024


@dataclass(frozen=True)
class WebpOptions:
    max_quality: int = 95  # highest lossy quality tried
    effort: int = 4  # libwebp method 0-6
    lossless_effort: int = 50  # libwebp lossless "quality" (effort)
    near_lossless: bool = True
    max_pixels: int = 8192 * 8192  # decode cap for measuring
    metric: Metric = PSNR  # what `floor` is a score of (`quality`)
    # R and G hold directions judged by PSNR (an anisotropy map): quantized (posterized or
    # reduced to a palette) only where its own texel noise masks the step (`unbanded_step`).
    # PSNR cannot see the contours quantizing draws on a smooth map; normal maps, judged
    # by the angle, have the same guard on posterizing (a palette must hold the 99th
    # percentile angle everywhere: the barn lamp's 16-colour normal map rendered as its
    # source did).
    direction: bool = False


@dataclass(frozen=True)
class _Plan:
    estimate: float  # full-size bytes, from the sample
    kind: str  # lossy | lossless | near-lossless | palette | posterize
    setting: float | None  # quality, near-lossless level, palette colours or step
    result: Encoded | None  # the final result already, when the sample is the whole image
    sample: Prober | None = None  # lossy: the sample's quality -> (bytes, PSNR)
    sharp: bool = False  # lossy: libwebp's sharp RGB->YUV conversion
    scale: float = 1.0  # the image's pixels / the sample's


def encode_lossless(image: Image.Image, opts: WebpOptions) -> bytes:
    """Lossless WebP; exact: RGB under transparent pixels is kept."""
    out = io.BytesIO()
    image.save(out, format="WEBP", lossless=True, quality=opts.lossless_effort,
               method=opts.effort, exact=True)
    return out.getvalue()


def encode_webp(image: Image.Image, reference: np.ndarray, floor: float, opts: WebpOptions,
                where: str, *, lossless: bool = True,
                limit: int | None = None) -> Encoded | None:
    """The smallest WebP of `image` (RGB or RGBA) whose decoded pixels hold `floor` on
    `opts.metric` against `reference`, and under `limit` bytes when given; None if none
    does.
    `lossless`: also consider lossless and near-lossless (not worth it for decoded JPEGs,
    whose noise codes 3-5x larger losslessly than the JPEG)."""
    plans, later = _plans(image, reference, floor, opts, where, lossless)
    best = _first_that_holds(plans, image, reference, floor, opts, where, limit)
    if best is None and later:
        # Lossy held on the sample but not at full size: the lossless candidates after all.
        plans = _lossless_plans(image, reference, floor, opts, where, [])
        best = _first_that_holds(plans, image, reference, floor, opts, where, limit)
    return best


def estimate_webp(image: Image.Image, reference: np.ndarray, floor: float,
                  opts: WebpOptions, where: str, *, lossless: bool = True) -> float | None:
    """The bytes `encode_webp` is expected to come to, from its samples alone (10-15 %
    off; no full-size encode): what a byte budget is fitted by before the first run.
    None when no candidate is expected to hold the floor."""
    plans, later = _plans(image, reference, floor, opts, where, lossless)
    if not plans and later:
        plans = _lossless_plans(image, reference, floor, opts, where, [])
    sizes = [len(p.result.data) if p.result is not None else p.estimate for p in plans]
    return min(sizes) if sizes else None


def _plans(image: Image.Image, reference: np.ndarray, floor: float, opts: WebpOptions,
           where: str, lossless: bool) -> tuple[list[_Plan], bool]:
    """The candidates `encode_webp` confirms, estimated on samples, and whether the
    lossless ones were left for later (lossy is expected to win)."""
    grey = _is_grey(reference)
    # Grey images have flat chroma: sharp YUV would give them the same bytes.
    sharp = not grey
    lossy = None
    pixels = image.width * image.height
    # Large enough for a quick out-of-reach probe: both lossy samples rank the same tiles,
    # so their activity is computed once. (Smaller images are searched as cheaply.)
    activity = (tile_activity(reference, LOSSY_TILE) if pixels > 4 * LOSSY_QUICK_PIXELS
                else None)
    quick = None
    if activity is not None:
        quick = _lossy_prober(activity_sample(image, reference, LOSSY_QUICK_PIXELS,
                                              LOSSY_TILE, LOSSY_MARGIN, activity),
                              opts, where, sharp)
    if quick is None or not _lossy_out_of_reach(quick, floor, opts):
        sample = activity_sample(image, reference, LOSSY_SAMPLE_PIXELS, LOSSY_TILE,
                                 LOSSY_MARGIN, activity)
        # From 2048 px up both samples are 1/16 of the image: the same tiles, probed once.
        probed = (quick if quick is not None and quick.sample.scale == sample.scale
                  else _lossy_prober(sample, opts, where, sharp))
        lossy = _lossy_plan(probed, floor, opts, where)
    plans = [lossy] if lossy is not None else []
    costly = lossy is None or lossy.estimate * 8 > NEAR_LOSSLESS_BPP * pixels
    later = lossless and not (costly or pixels <= NEAR_LOSSLESS_SMALL_PIXELS)
    if lossless and not later:
        plans += _lossless_plans(image, reference, floor, opts, where, plans)
    elif later and opts.metric.per_texel:
        # Posterized values cost one sample encode (see `_lossless_plans`): smooth data and
        # normal maps that lossy holds cheaply can code smaller still (the barn lamp's
        # normal map: 7.1 KB posterized, 12.7 KB lossy).
        posterized = _posterize_plan(_lossless_sample(image, reference), floor, opts)
        plans += [posterized] if posterized is not None else []
    return plans, later


def _lossy_out_of_reach(quick: _SampleProbe, floor: float, opts: WebpOptions) -> bool:
    """Whether a small activity sample (`quick`) misses the floor at the top quality by so
    much that lossy cannot hold it on the whole image: decided for the cost of a 128 px
    encode, before the 512 px sample is made and probed (50-100 ms)."""
    value = quick.probe(opts.max_quality)[1]
    return value < floor - LOSSY_OUT_OF_REACH_DB * opts.metric.step


def redo_encoder(result: Encoded, image: Image.Image,
                 opts: WebpOptions) -> Callable[[Image.Image], bytes] | None:
    """The one encode that made `result` (a WebP from `encode_webp(image, ...)`), as a
    function of the image: for timing the last encode on its own
    (tools/bench/texture_floor_cost.py). None when it does not give `result`'s bytes
    again (lossy: tried with and without sharp YUV on `image`, not timed)."""
    if result.posterize is not None:
        step = result.posterize
        return lambda img: encode_lossless(posterize(img, step), opts)
    if result.near_lossless is not None:
        level = result.near_lossless
        return lambda img: _near_lossless_encoder(img, opts)(level)
    if result.palette is not None:
        colours = result.palette
        return lambda img: _palette_encoder(img, opts)(colours)
    if result.quality is None:
        return lambda img: encode_lossless(img, opts)
    quality = result.quality
    for sharp in (True, False):  # whichever conversion made it: the one with its bytes
        if _lossy_encoder(image, opts, sharp)(quality) == result.data:
            return lambda img: _lossy_encoder(img, opts, sharp)(quality)
    return None


def _lossless_plans(image: Image.Image, reference: np.ndarray, floor: float,
                    opts: WebpOptions, where: str, others: list[_Plan]) -> list[_Plan]:
    """Lossless and near-lossless, both estimated on one sample: near-lossless PSNR is
    local to each pixel's neighbourhood, so a small sample measures it well, and
    libwebp's near-lossless pass costs 5x less on a quarter of the pixels (0.017 s at
    128 px against 0.085 s at 256 px)."""
    sample = _lossless_sample(image, reference)
    exact = encode_lossless(sample.image, opts)
    plans = [_Plan(len(exact) * sample.scale, "lossless", None,
                   Encoded(exact, WEBP, np.inf, None, metric=opts.metric.name)
                   if sample.whole else None)]
    palette = _palette_plan(sample, floor, opts, where)
    # Posterized values are scored on their pixels, without encoding: planned under the
    # metrics of each texel, which score them cheaply (PSNR from value pairs, the normal
    # angle); SSIMULACRA2 would cost a score per step, and lossy or a palette wins there.
    posterized = _posterize_plan(sample, floor, opts) if opts.metric.per_texel else None
    cheaper = [p for p in (palette, posterized)
               if p is not None and p.estimate < plans[0].estimate]
    if opts.near_lossless and pyvips is not None:
        # Near-lossless is estimated last, against every other candidate: an estimate
        # ranks ahead only NEAR_LOSSLESS_RANK_PENALTY under the best of them.
        beat = min(p.estimate for p in [*others, *plans, *cheaper])
        if not sample.whole:
            beat /= 1 + NEAR_LOSSLESS_RANK_PENALTY
        near = None
        if not _near_lossless_screened_out(image, reference, sample, beat, opts):
            near = _near_lossless_plan(sample, floor, opts, where, beat=beat)
        # Where adjusting pixels hardly helps on the sample, it does not at full size
        # either (Fox: 0.3 % on the sample, 17 % larger at full size): not worth an encode.
        # (On a whole image the sizes are exact: the smaller simply wins.)
        gain = 0.0 if sample.whole else NEAR_LOSSLESS_MIN_GAIN
        if near is not None and near.estimate < (1 - gain) * plans[0].estimate:
            plans.append(near)
    return plans + cheaper


def _lossless_sample(image: Image.Image, reference: np.ndarray) -> Sample:
    if image.width * image.height <= NEAR_LOSSLESS_SMALL_PIXELS:
        return Sample(image, reference, 1.0)  # small flat images sample poorly
    return sample_of(image, reference, NEAR_LOSSLESS_SAMPLE_PIXELS)


def _near_lossless_screened_out(image: Image.Image, reference: np.ndarray, sample: Sample,
                                beat: float, opts: WebpOptions) -> bool:
    """Whether near-lossless's start level, estimated on a sample of a quarter the pixels,
    comes out well over `beat`: then it is not estimated on `sample` at all (its start
    level costs 0.26-0.31 s on the 512 px sample of a 2048 px texture, 0.1 s on the 256 px
    one). Only for samples of NEAR_LOSSLESS_SCREEN_PIXELS and more: on the 128 px sample of
    a 1024 px flat normal map (the barn lamp's) the estimate was 25 % under the 256 px
    sample's."""
    pixels = sample.image.width * sample.image.height
    if sample.whole or pixels < NEAR_LOSSLESS_SCREEN_PIXELS:
        return False
    screen = sample_of(image, reference, pixels // 4,
                       share=round(4 * image.width * image.height / pixels))
    near = _near_lossless_encoder(screen.image, opts)(NEAR_LOSSLESS_START)
    return len(near) * screen.scale > (1 + NEAR_LOSSLESS_SCREEN_MARGIN) * beat


def posterize(image: Image.Image, step: float) -> Image.Image:
    """`image` (RGB or RGBA) with every colour value rounded to the nearest multiple of
    `step` (alpha untouched: cut-out edges show every level)."""
    out = np.asarray(image).copy()
    out[..., :3] = _posterized_values(step)[out[..., :3]]
    return Image.fromarray(out, image.mode)


def _posterized_values(step: float) -> np.ndarray:
    """What each 8-bit value 0..255 posterizes to at `step`: one lookup per pixel."""
    values = np.arange(256, dtype=np.float32)
    levels = np.floor(values / np.float32(step) + np.float32(0.5))
    return np.minimum(np.rint(levels * np.float32(step)), 255).astype(np.uint8)


class _PosterizeError:
    """The PSNR (worst channel) of `image` posterized at any step against `reference`,
    without posterizing it: per channel, how often each (image value, reference value)
    pair occurs, so a step's squared error is a sum over 65,536 pairs, not over every
    pixel (the same integer sums as `psnr`: the same dB)."""

    def __init__(self, image: Image.Image, reference: np.ndarray) -> None:
        pixels = np.asarray(image)
        self._pairs = [np.bincount(pixels[..., c].ravel().astype(np.int32) * 256
                                   + reference[..., c].ravel(), minlength=65536)
                       .reshape(256, 256) for c in range(3)]
        # Alpha is never posterized: its own error is fixed.
        alpha = pixels[..., 3] if pixels.shape[2] == 4 else np.full(pixels.shape[:2], 255,
                                                                    np.uint8)
        self._alpha = psnr(alpha, reference[..., 3])
        self._count = pixels.shape[0] * pixels.shape[1]
        self._target = np.arange(256, dtype=np.int64)

    def __call__(self, step: float) -> float:
        posterized = _posterized_values(step).astype(np.int64)
        squared = (posterized[:, None] - self._target[None, :]) ** 2
        worst = self._alpha
        for pairs in self._pairs:
            mse = int((pairs * squared).sum()) / max(self._count, 1)
            if mse > 0:
                worst = min(worst, 10.0 * math.log10(255.0**2 / mse))
        return worst


def _posterize_scorer(image: Image.Image, reference: np.ndarray,
                      metric: Metric) -> Callable[[float], float]:
    """step -> the `metric`'s score of `image` posterized at that step against
    `reference`: no encode is needed, as the posterized pixels are coded losslessly. PSNR
    from value pairs (`_PosterizeError`); any other metric scores the posterized pixels."""
    if metric is PSNR:
        return _PosterizeError(image, reference)
    score = metric.prepare(reference)
    pixels = np.asarray(image)
    rgba = np.empty(reference.shape, np.uint8)
    rgba[..., 3] = pixels[..., 3] if pixels.shape[2] == 4 else 255

    def at(step: float) -> float:
        np.take(_posterized_values(step), pixels[..., :3], out=rgba[..., :3])
        return score(rgba)
    return at


def _posterize_plan(sample: Sample, floor: float, opts: WebpOptions) -> _Plan | None:
    """The largest step whose posterized sample holds the floor (its score is measured on
    the pixels, without encoding), and its lossless bytes. PSNR's scores cost next to
    nothing: every step is tried from the largest; another metric's steps are bisected
    (scores fall as steps grow)."""
    score = _posterize_scorer(sample.image, sample.reference, opts.metric)
    masked = _masked_step(sample, opts)
    steps = tuple(s for s in POSTERIZE_STEPS if s <= masked)
    if not steps:
        return None
    found = _largest_step(score, floor, opts.metric is PSNR, steps)
    if found is None:
        return None
    step, value = found
    data = encode_lossless(posterize(sample.image, step), opts)
    result = Encoded(data, WEBP, value, None, posterize=step, metric=opts.metric.name) \
        if sample.whole else None
    return _Plan(len(data) * sample.scale, "posterize", step, result)


def _largest_step(score: Callable[[float], float], floor: float, every: bool,
                  steps: tuple[float, ...] = POSTERIZE_STEPS) -> tuple[float, float] | None:
    """(step, score) of the largest of `steps` (largest first) whose score holds the
    floor: the first that does from the largest (`every`), or by bisection; None when none
    does."""
    if every:
        for step in steps:
            value = score(step)
            if value >= floor:
                return step, value
        return None
    lo, hi = 0, len(steps) - 1  # steps from the largest down
    held = score(steps[hi])
    if held < floor:
        return None
    while lo < hi:
        mid = (lo + hi) // 2
        value = score(steps[mid])
        if value >= floor:
            hi, held = mid, value
        else:
            lo = mid + 1
    return steps[hi], held


# A normal map posterized where it is smooth shows contour lines in its shading that its
# 99th-percentile angle cannot see; where its own texel noise is at least half the step,
# the rounding is lost in that noise (as dithering is). The noise: the median absolute
# difference of each texel from its four neighbours' mean, as a standard deviation (white
# noise: x 1.4826 / 1.118), in the channels that carry the direction (R, G). FlightHelmet's
# baked normal maps have 0.7 (no step is masked: they stay near-lossless), the bench's
# scanned and photographed ones 2-4.
UNBANDED_NOISE_SHARE = 2.0


def _masked_step(sample: Sample, opts: WebpOptions) -> float:
    """The largest posterize step allowed on `sample`: any for most images; for a map of
    directions (anisotropy, or a normal map, judged by the angle), what its own noise
    masks."""
    if opts.direction or opts.metric.name in ANGLE_METRICS:
        return unbanded_step(sample.reference)
    return np.inf


def unbanded_step(reference: np.ndarray) -> float:
    """The largest posterize step a map of directions' own noise masks (RGBA pixels)."""
    x = reference[..., :2].astype(np.float32)
    if x.shape[0] < 3 or x.shape[1] < 3:
        return 0.0
    residual = x[1:-1, 1:-1] - (x[:-2, 1:-1] + x[2:, 1:-1] + x[1:-1, :-2] + x[1:-1, 2:]) / 4
    sigma = [1.4826 * float(np.median(np.abs(residual[..., c]))) / 1.118 for c in range(2)]
    return UNBANDED_NOISE_SHARE * min(sigma)


def _palette_encoder(image: Image.Image, opts: WebpOptions) -> Callable[[int], bytes]:
    def encode(colours: int) -> bytes:
        # Fast octree: the one Pillow quantizer that keeps alpha.
        reduced = image.quantize(colours, method=Image.Quantize.FASTOCTREE)
        return encode_lossless(reduced.convert(image.mode), opts)
    return encode


def _palette_plan(sample: Sample, floor: float, opts: WebpOptions,
                  where: str) -> _Plan | None:
    """The fewest colours (of PALETTE_SIZES) whose palette holds the floor on the sample:
    a bisection, as PSNR grows with the colours. Not for a map of directions (`direction`)
    whose noise masks no step: a palette quantizes as posterizing does."""
    if opts.direction and _masked_step(sample, opts) < min(POSTERIZE_STEPS):
        return None
    probe = Prober(_palette_encoder(sample.image, opts), sample.reference, where,
                   opts.max_pixels, metric=opts.metric)
    lo, hi = 0, len(PALETTE_SIZES) - 1
    if probe(PALETTE_SIZES[hi])[1] < floor:
        return None
    while lo < hi:
        mid = (lo + hi) // 2
        if probe(PALETTE_SIZES[mid])[1] >= floor:
            hi = mid
        else:
            lo = mid + 1
    colours = PALETTE_SIZES[hi]
    data, value = probe(colours)
    result = (Encoded(data, WEBP, value, None, palette=colours, metric=opts.metric.name)
              if sample.whole else None)
    return _Plan(len(data) * sample.scale, "palette", colours, result)


def _first_that_holds(plans: list[_Plan], image: Image.Image, reference: np.ndarray,
                      floor: float, opts: WebpOptions, where: str,
                      limit: int | None) -> Encoded | None:
    """Confirm plans at full size in order of their estimates (near-lossless, the costly
    one, handicapped): the first that holds the floor under the cap, or a smaller one the
    sample already measured exactly."""
    best: Encoded | None = None
    cap = limit
    # A result the sample measured exactly (the sample was the whole image) is beaten by
    # an estimate only where the estimate saves enough to pay for a full-size encode, as
    # lower qualities are (`_worth_a_lower`): FlightHelmet's lens texture, lossy 99.9 KB
    # exact, posterized 98.1 KB estimated and 0.13 s to encode, came out larger.
    known = [len(p.result.data) for p in plans if p.result is not None]
    exact = min(known) if known else None
    pixels = image.width * image.height
    for plan in sorted(plans, key=_rank):
        if cap is not None and plan.estimate > PROXY_OVER_LIMIT * cap:
            continue  # well over what we have
        if plan.result is None and exact is not None and not (
                plan.estimate < (1 - LOWER_MIN_SAVING) * exact
                and _pays_for_an_encode(exact - plan.estimate, exact, pixels)):
            continue
        if best is not None and plan.result is None:
            # Ranked behind a result that holds. The sample's estimates are 10-15 % off,
            # but its ranking held on FlightHelmet's data textures wherever two
            # candidates were over 3 % apart; a second full-size encode won once in six,
            # by 0.1 %. Results the sample measured exactly (small images) cost nothing.
            continue
        result = plan.result or _confirm(plan, image, reference, floor, opts, where, cap)
        if result is not None and (cap is None or len(result.data) < cap):
            best, cap = result, len(result.data)
    return best


def _rank(plan: _Plan) -> float:
    if plan.kind == "near-lossless" and plan.result is None:
        return plan.estimate * (1 + NEAR_LOSSLESS_RANK_PENALTY)
    return plan.estimate


def _is_grey(reference: np.ndarray) -> bool:
    return bool((reference[..., 0] == reference[..., 1]).all()
                and (reference[..., 1] == reference[..., 2]).all())


def _lossy_encoder(image: Image.Image, opts: WebpOptions,
                   sharp: bool) -> Callable[[int], bytes]:
    # sharp: the pixels are converted once (`sharp_yuv`), so no encode pays libwebp's own
    # sharp conversion. exact: keep RGB under transparent pixels (libwebp would otherwise
    # rewrite them, which shows at alpha-blended and alpha-tested edges). Alpha is coded
    # losslessly once, and joined to each colour-only encode (`webp_container`).
    pixels = np.asarray(image)
    if sharp:
        pixels = sharp_rgb(pixels)
    height, width = pixels.shape[:2]
    alpha = None
    if pixels.shape[2] == 4:
        alpha = _alpha_chunk(pixels, opts)  # None: opaque here (a sample's tiles can be)
        pixels = pixels[..., :3]
    if pyvips is not None:  # libvips' writer is ~10 % faster than Pillow's here
        vimg = pyvips.Image.new_from_array(np.ascontiguousarray(pixels),
                                           interpretation="srgb")

        def colour(q: int) -> bytes:
            return vimg.webpsave_buffer(Q=q, effort=opts.effort, exact=True, keep="none")
    else:
        source = Image.fromarray(np.ascontiguousarray(pixels), "RGB")

        def colour(q: int) -> bytes:
            out = io.BytesIO()
            source.save(out, format="WEBP", quality=q, method=opts.effort, exact=True)
            return out.getvalue()
    if alpha is None:
        return colour
    return lambda q: with_alpha(colour(q), alpha, width, height)


def _alpha_chunk(pixels: np.ndarray, opts: WebpOptions) -> bytes | None:
    """The ALPH chunk libwebp writes for these RGBA pixels: lossless alpha, coded at the
    encoder's effort (at the lowest colour quality, the cheapest frame to throw away).
    None where every pixel is opaque: libwebp then writes no alpha at all."""
    if (pixels[..., 3] == 255).all():
        return None
    out = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels), "RGBA").save(
        out, format="WEBP", quality=0, method=opts.effort, exact=True, alpha_quality=100)
    found = [payload for fourcc, payload in riff_chunks(out.getvalue()) if fourcc == b"ALPH"]
    if len(found) != 1:
        raise ValueError("libwebp wrote no single alpha chunk for an image with alpha")
    return found[0]


@dataclass(frozen=True)
class _SampleProbe:
    """A lossy sample and its quality -> (bytes, score) probe."""

    sample: Sample
    probe: Prober
    sharp: bool


def _lossy_prober(sample: Sample, opts: WebpOptions, where: str, sharp: bool) -> _SampleProbe:
    probe = Prober(_lossy_encoder(sample.image, opts, sharp), sample.reference, where,
                   opts.max_pixels, sample.inside, opts.metric)
    return _SampleProbe(sample, probe, sharp)


def _lossy_plan(lossy: _SampleProbe, floor: float, opts: WebpOptions,
                where: str) -> _Plan | None:
    """The lossy candidate: the lowest quality that holds the floor on the sample, and
    its bytes scaled to the image."""
    sample, probe, sharp = lossy.sample, lossy.probe, lossy.sharp
    top_data, top_value = probe(opts.max_quality)
    pixels = sample.image.width * sample.image.height
    if sharp and len(top_data) / pixels * 1e6 < SHARP_MIN_BYTES_PER_MP:
        sharp = False  # too few bytes for sharp YUV's saving to pay for its time
        probe = _lossy_prober(sample, opts, where, sharp).probe
        top_data, top_value = probe(opts.max_quality)
    if top_value < floor:
        if sample.whole or top_value < floor - PROXY_MISS_DB * opts.metric.step:
            return None
        # Just under on the sample: the whole image may still hold at the top quality.
        return _Plan(len(top_data) * sample.scale, "lossy", opts.max_quality, None, probe,
                     sharp, sample.scale)
    # A saving too small to pay for a full-size encode is not searched for: on a sample,
    # nor on an image that is its own sample, whose every probe is a full-size encode and
    # measure (FlightHelmet's 512 px lens texture: 8 probes, the last 3 for 44 bytes).
    negligible = _negligible(pixels)
    aim = floor + _optimism(sample, opts.metric)
    found = search_lowest(probe, aim, opts.max_quality, negligible, opts.metric.step)
    if found is None:  # only the top quality holds, and not by the sample's usual optimism
        found = top_data, opts.max_quality, top_value
    data, quality, value = found
    if not sample.whole:
        quality = _safest_worth_it(probe, aim, quality, sample.scale, sample.scale * pixels)
        data, value = probe(quality)
    result = Encoded(data, WEBP, value, quality, metric=opts.metric.name) if sample.whole \
        else None
    return _Plan(len(data) * sample.scale, "lossy", quality, result, probe, sharp,
                 sample.scale)


def _optimism(sample: Sample, metric: Metric) -> float:
    """How far a lossy sample's score usually runs above the whole image's at the same
    quality: nothing for a metric of each texel, measured inside the tiles (PSNR, the
    normal angle); for one scored over the whole mosaic, seams included (SSIMULACRA2), up
    to SAMPLE_OPTIMISM steps (see there)."""
    if sample.whole or metric.per_texel:
        return 0.0
    return SAMPLE_OPTIMISM * metric.step * math.log2(sample.scale) / math.log2(16)


def _safest_worth_it(sample: Prober, floor: float, lowest: int, scale: float,
                     pixels: float) -> int:
    """The highest quality the sample saw holding the floor that `lowest` does not save
    enough bytes per megapixel under to be worth a full-size encode: more margin
    against the sample's error where it costs little. DamagedHelmet's mostly black emissive
    map held 40 dB on the sample at q1, and at q59 for 2.3 KB more per megapixel of the
    image; q1 missed by 2 dB on the whole image, q59 holds it with 9 dB to spare."""
    measured = sample.measured()
    least = len(measured[lowest][0])
    held = sorted(q for q, (_, value) in measured.items() if q > lowest and value >= floor)
    for quality in reversed(held):
        # Bytes per megapixel (or a large share of a cheap image): a small share of a large
        # texture is still worth having (SheenChair's 1024 x 512 base colour: q84 3 % under
        # q85, 5 KB per megapixel).
        more = len(measured[quality][0])
        if not _pays_for_an_encode((more - least) * scale, more * scale, pixels):
            return quality
    return lowest


def _near_lossless_encoder(image: Image.Image, opts: WebpOptions) -> Callable[[int], bytes]:
    vimg = pyvips.Image.new_from_array(np.ascontiguousarray(np.asarray(image)),
                                       interpretation="srgb")

    def encode(level: int) -> bytes:
        # exact=False: libwebp skips near-lossless when asked to keep every RGB value; the
        # PSNR check covers the pixels under transparency all the same.
        return vimg.webpsave_buffer(Q=level, lossless=True, near_lossless=True,
                                    effort=max(1, opts.effort), exact=False, keep="none")
    return encode


def _near_lossless_plan(sample: Sample, floor: float, opts: WebpOptions, where: str,
                        beat: float) -> _Plan | None:
    """The sample's smallest near-lossless level that holds the floor. PSNR rises with the
    level while size usually bottoms out near 40: start there, walk down while the floor
    holds and up until it does; give up when the start level is not under `beat` (an
    estimate of full-size bytes)."""
    encode = _near_lossless_encoder(sample.image, opts)

    def plan(level: int) -> tuple[_Plan, float]:
        data = encode(level)
        value = measure(data, sample.reference, where, opts.max_pixels, metric=opts.metric)
        result = (Encoded(data, WEBP, value, None, near_lossless=level, metric=opts.metric.name)
                  if sample.whole else None)
        return _Plan(len(data) * sample.scale, "near-lossless", level, result), value

    start = NEAR_LOSSLESS_LEVELS.index(NEAR_LOSSLESS_START)
    best, value = plan(NEAR_LOSSLESS_LEVELS[start])
    if best.estimate >= beat:
        return None  # higher levels are larger still; lower ones rarely much smaller
    if value >= floor:
        for level in reversed(NEAR_LOSSLESS_LEVELS[:start]):
            if value - floor < NEAR_LOSSLESS_STEP_DB * opts.metric.step:
                break  # one level down costs more than the margin: it would miss
            lower, lower_value = plan(level)
            if lower_value < floor or lower.estimate >= best.estimate:
                break  # below the floor, or no longer shrinking: lower levels will not help
            best, value = lower, lower_value
        return best
    for level in NEAR_LOSSLESS_LEVELS[start + 1:]:
        higher, higher_value = plan(level)
        if higher_value >= floor:
            return higher
    return None


def _confirm(plan: _Plan, image: Image.Image, reference: np.ndarray, floor: float,
             opts: WebpOptions, where: str, cap: int | None) -> Encoded | None:
    """Encode `plan` at full size, measured, its setting corrected until the whole image
    holds the floor (see `_confirm_lossy`; near-lossless and palettes only step up). None
    when it cannot, or cannot come in under `cap` bytes."""
    if plan.kind == "lossless":
        data = encode_lossless(image, opts)
        return Encoded(data, WEBP, np.inf, None, metric=opts.metric.name)
    if plan.kind == "palette":
        return _step_up(_palette_encoder(image, opts), PALETTE_SIZES, plan.setting,
                        reference, floor, opts, where, cap,
                        lambda d, v, s: Encoded(d, WEBP, v, None, palette=s,
                                                metric=opts.metric.name))
    if plan.kind == "posterize":
        # Its score is known before encoding: the largest step that holds at full size is
        # encoded once. PSNR's scores cost next to nothing: looked for from two above the
        # sample's step (which errs either way). Another metric's cost a full-size score
        # each: from the sample's own step down, as the sample saw the step above miss.
        assert plan.setting is not None
        cheap = opts.metric is PSNR
        start = POSTERIZE_STEPS.index(plan.setting)
        score = _posterize_scorer(image, reference, opts.metric)
        for step in POSTERIZE_STEPS[max(0, start - 2) if cheap else start:]:
            value = score(step)
            if value >= floor:
                data = encode_lossless(posterize(image, step), opts)
                if cap is not None and len(data) >= cap:
                    return None
                return Encoded(data, WEBP, value, None, posterize=step,
                               metric=opts.metric.name)
        return None
    if plan.kind == "near-lossless":
        return _step_up(_near_lossless_encoder(image, opts), NEAR_LOSSLESS_LEVELS,
                        plan.setting, reference, floor, opts, where, cap,
                        lambda d, v, s: Encoded(d, WEBP, v, None, near_lossless=s,
                                                metric=opts.metric.name))
    assert plan.setting is not None and plan.sample is not None
    return _confirm_lossy(int(plan.setting), plan.sample, plan.scale, image, reference, floor,
                          opts, where, plan.sharp, cap)


def _step_up(encode: Callable[[int], bytes], ladder: tuple[int, ...], start: float | None,
             reference: np.ndarray, floor: float, opts: WebpOptions, where: str,
             cap: int | None, result: Callable[[bytes, float, int], Encoded]) -> Encoded | None:
    """The first setting from `start` up `ladder` (larger and closer to the source at each
    step) whose full-size encoding holds the floor; None once one reaches `cap` bytes."""
    assert start is not None
    for setting in ladder[ladder.index(start):]:
        data = encode(setting)
        if cap is not None and len(data) >= cap:
            return None  # the settings above are larger still
        value = measure(data, reference, where, opts.max_pixels, metric=opts.metric)
        if value >= floor:
            return result(data, value, setting)
    return None


def _confirm_lossy(quality: int, sample: Prober, scale: float, image: Image.Image,
                   reference: np.ndarray, floor: float, opts: WebpOptions, where: str,
                   sharp: bool, cap: int | None) -> Encoded | None:
    """The lowest quality that holds the floor at full size, starting from the sample's
    answer, in a few full-size encodes. Between a full-size miss and hit the next quality
    is interpolated; beyond them, the whole image's PSNR curve is taken as the sample's
    shifted by what the last full-size encode showed (the sample is searched again, its
    encodes cached).
    A lower quality is tried only while the sample expects it to save enough bytes."""
    full = Prober(_lossy_encoder(image, opts, sharp), reference, where, opts.max_pixels,
                  metric=opts.metric)
    pixels = image.width * image.height
    budget = MAX_FULL_ENCODES if pixels > CHEAP_PIXELS else MAX_FULL_ENCODES_CHEAP
    best: Encoded | None = None
    held: tuple[int, float] | None = None  # the lowest quality seen holding, its PSNR
    missed: tuple[int, float] | None = None  # the highest quality seen missing, its PSNR
    for _ in range(budget):
        data, value = full(quality)
        if value >= floor:
            held = (quality, value) if held is None or quality < held[0] else held
            if (cap is None or len(data) < cap) and (best is None
                                                     or len(data) < len(best.data)):
                best = Encoded(data, WEBP, value, quality, metric=opts.metric.name)
        else:
            missed = (quality, value) if missed is None or quality > missed[0] else missed
            if cap is not None and len(data) >= cap:
                break  # higher qualities are larger still
        if not math.isfinite(value):
            break
        if missed is None and not _worth_a_lower(sample, scale, pixels,
                                                 _smallest_below(sample, quality), quality):
            break  # nothing the sample saw below saves enough: no need to search it again
        following = _next_quality(sample, floor, opts.max_quality, quality, value, held,
                                  missed, _negligible(round(pixels / scale)),
                                  opts.metric.step)
        if following is None or (held is not None and following < held[0] and not
                                 _worth_a_lower(sample, scale, pixels, following, held[0])):
            break
        quality = following
    return best


def _next_quality(sample: Prober, floor: float, max_quality: int, last: int,
                  last_value: float, held: tuple[int, float] | None,
                  missed: tuple[int, float] | None, negligible: int = 0,
                  step: float = 1.0) -> int | None:
    if held is not None and missed is not None:
        if held[0] - missed[0] <= 1:
            return None  # found: the quality below the lowest hit misses
        t = (floor - missed[1]) / (held[1] - missed[1])
        interpolated = math.ceil(missed[0] + t * (held[0] - missed[0]))
        return min(held[0] - 1, max(missed[0] + 1, interpolated))
    offset = last_value - sample(last)[1]
    # Down from a hit, a quality the shifted sample puts just under the floor is tried too:
    # one step's change is measured better than the level (DamagedHelmet's base colour:
    # q88 held at full size, the shifted sample put q87 0.02 dB under, and q87 held by 0.1).
    slack = DOWN_SLACK_DB * step if held is not None and missed is None else 0.0
    found = search_lowest(sample, floor - offset - slack, max_quality, negligible, step,
                          sample.measured())
    from_sample = found[1] if found is not None else max_quality
    if held is None:
        assert missed is not None
        following = max(from_sample, missed[0] + 1)
        return following if following <= max_quality else None
    # Down from a hit: the shifted sample's answer only. Stepping further by a typical
    # slope found one quality more at the price of a full-size miss in most cases (it cost
    # DamagedHelmet's base colour and normal map one full-size encode each).
    return from_sample if from_sample < held[0] else None


def _smallest_below(sample: Prober, quality: int) -> int:
    """The quality under `quality` that gave the sample's fewest bytes (`quality` itself
    when none was tried)."""
    below = {q: len(data) for q, (data, _) in sample.measured().items() if q < quality}
    return min(below, key=lambda q: (below[q], q)) if below else quality


def _worth_a_lower(sample: Probe, scale: float, pixels: int, lower: int,
                   quality: int) -> bool:
    """Whether the sample expects `lower` to save enough bytes over `quality` to be worth
    another full-size encode of `pixels` pixels."""
    now, then = len(sample(quality)[0]), len(sample(lower)[0])
    return then < (1 - LOWER_MIN_SAVING) * now and _pays_for_an_encode(
        (now - then) * scale, now * scale, pixels)


def _negligible(sample_pixels: int) -> int:
    """The most bytes a sample of `sample_pixels` pixels can save, scaled to the image,
    without paying for a full-size encode (the exchange rate is per pixel: the same for
    the sample as for the image)."""
    return math.ceil(LOWER_MIN_BYTES_PER_MP * sample_pixels / 1e6) - 1


def _pays_for_an_encode(saved: float, of: float, pixels: float) -> bool:
    """Whether `saved` bytes (of `of`) are worth one more full-size encode of `pixels`
    pixels."""
    return (saved >= LOWER_MIN_BYTES_PER_MP * pixels / 1e6
            or (pixels <= CHEAP_PIXELS and saved >= LOWER_LARGE_SHARE * of))
