"""The lowest encoder quality whose decoded pixels hold a floor on a metric (`quality`:
SSIMULACRA2, PSNR or the angle of normals).

Why a search: the score grows with an encoder's quality setting, but by how much depends
on the image, so the only way to know that a quality holds the floor is to encode, decode
and measure. This module does that in as few encodes as it can, deterministically; the result
is always a measured one, never assumed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from tourserver.ingest.images import decode_image, rgba_pixels
from tourserver.pipeline.textures.quality import PSNR, Metric

# dB of PSNR per quality step just below libwebp's top qualities, for the first guess down
# from the top (corpus textures: 0.3-0.6 there; the curve flattens further down, where
# each later guess follows the measured slope instead). Other metrics scale it by their
# `Metric.step`.
FIRST_SLOPE_DB = 0.45


@dataclass(frozen=True)
class Encoded:
    """One encoded image and what it is."""

    data: bytes
    mime: str
    score: float  # the metric's score against the source pixels (inf: identical pixels)
    quality: int | None  # lossy quality; None when lossless, near-lossless (or KTX2)
    near_lossless: int | None = None  # libwebp near-lossless level, when that won
    palette: int | None = None  # colours, when a reduced palette (lossless-coded) won
    posterize: float | None = None  # the step, when posterized values (lossless-coded) won
    # What `score` is (`quality.Metric.name`), named by the encoder that took it: the one
    # it was held to, or the one it could measure (basisu: PSNR).
    metric: str = field(kw_only=True)


def measure(data: bytes, reference: np.ndarray, where: str, max_pixels: int,
            inside: np.ndarray | None = None, metric: Metric = PSNR) -> float:
    """The `metric`'s score of encoded `data` against the `reference` RGBA pixels. A
    metric of each texel on its own (PSNR, the normal angle) counts only the pixels `inside`
    marks, when given; a perceptual metric looks at neighbourhoods, so it scores the whole
    image (a sample's margins included)."""
    with decode_image(data, where, max_pixels) as decoded:
        pixels = rgba_pixels(decoded)
    if inside is None or not metric.per_texel:
        return metric.score(pixels, reference)
    return metric.score(pixels[inside][None], reference[inside][None])


Probe = Callable[[int], tuple[bytes, float]]


class Prober:
    """quality -> (bytes, score; a metric of each texel over the pixels `inside` marks,
    when given): encodes and measures each quality once (cached), so searches that revisit
    a quality cost nothing."""

    def __init__(self, encode: Callable[[int], bytes], reference: np.ndarray, where: str,
                 max_pixels: int, inside: np.ndarray | None = None,
                 metric: Metric = PSNR) -> None:
        self._encode, self._reference, self._where = encode, reference, where
        self._max_pixels, self._inside, self._metric = max_pixels, inside, metric
        # Every probe scores against one reference: prepare it once (see Metric.prepare).
        self._score = metric.prepare(reference) if inside is None or not metric.per_texel \
            else None
        self._seen: dict[int, tuple[bytes, float]] = {}

    def __call__(self, quality: int) -> tuple[bytes, float]:
        if quality not in self._seen:
            data = self._encode(quality)
            if self._score is not None:
                with decode_image(data, self._where, self._max_pixels) as decoded:
                    value = self._score(rgba_pixels(decoded))
            else:
                value = measure(data, self._reference, self._where, self._max_pixels,
                                self._inside, self._metric)
            self._seen[quality] = (data, value)
        return self._seen[quality]

    def measured(self) -> dict[int, tuple[bytes, float]]:
        """Every quality encoded so far, with its bytes and score."""
        return dict(self._seen)


def search_lowest(probe: Probe, floor: float, max_quality: int,
                  negligible: int = 0, step: float = 1.0,
                  seen: Mapping[int, tuple[bytes, float]] | None = None,
                  ) -> tuple[bytes, int, float] | None:
    """(bytes, quality, score) at the lowest quality in 0..max_quality whose decoded pixels
    hold `floor`, as `probe` measures them; None when even max_quality misses it. `step`:
    the metric's `Metric.step` (1 for PSNR in dB).

    "Lowest" as a search can know it: the quality found holds and the one below misses
    (PSNR is not strictly monotone in libwebp's quality). Each probe aims at the floor
    along the measured curve: the secant through the nearest miss and hit, or below the
    lowest hit, the secant through the two lowest hits (from the top, a typical slope).
    Every probe narrows the range, so the search ends; within a bracket, one that did not
    halve it is followed by a bisection. 3-5 encodes where a binary search over 0..95
    needs 8. It also ends once the lowest hit is at most `negligible` bytes over the
    highest miss: no quality between them saves more (bytes shrink with the quality,
    near enough). `seen`: qualities `probe` measured already (`Prober.measured`), which
    start the search where they bracket the floor (a search again at a shifted floor
    costs 1-2 probes, not 4-5)."""
    data, value = probe(max_quality)
    if value < floor:
        return None
    hits = [(max_quality, value, data)]  # every hit, lowest quality last
    miss: tuple[int, float, int] | None = None  # the highest miss: quality, score, bytes
    known = seen or {}
    for q in sorted(known, reverse=True):
        if q >= max_quality:
            continue
        known_data, known_value = known[q]
        if known_value < floor:
            miss = (q, known_value, len(known_data))
            break  # below the highest miss, nothing is searched
        hits.append((q, known_value, known_data))
    bisect = False
    while True:
        hi, hi_value, hi_data = hits[-1]
        lo = miss[0] + 1 if miss is not None else 0
        if lo >= hi or (miss is not None and len(hi_data) - miss[2] <= negligible):
            return hi_data, hi, hi_value
        width = hi - lo
        if bisect:
            q = (lo + hi) // 2
        elif miss is not None:
            t = (floor - miss[1]) / (hi_value - miss[1]) if hi_value > miss[1] else 0.5
            q = math.ceil(miss[0] + t * (hi - miss[0]))
        else:
            slope = FIRST_SLOPE_DB * step
            if len(hits) > 1 and hits[-2][1] > hi_value:
                slope = (hits[-2][1] - hi_value) / (hits[-2][0] - hi)
            headroom = hi_value - floor
            q = math.floor(hi - headroom / slope) if math.isfinite(headroom) else (lo + hi) // 2
        q = min(hi - 1, max(lo, q))
        data, value = probe(q)
        if value >= floor:
            hits.append((q, value, data))
        else:
            miss = (q, value, len(data))
        # Within a bracket, a probe that did not halve it is followed by a bisection.
        bracketed = miss is not None and lo > 0
        new_width = hits[-1][0] - (miss[0] + 1 if miss is not None else 0)
        bisect = bracketed and not bisect and new_width > width // 2
