"""The lowest encoder quality whose decoded pixels hold a PSNR floor.

Why a search: PSNR grows with an encoder's quality setting, but by how much depends on the
image, so the only way to know that a quality holds the floor is to encode, decode and
measure. This module does that in as few encodes as it can, deterministically; the result
is always a measured one, never assumed.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from tourserver.ingest.images import decode_image, psnr, rgba_pixels

# dB of PSNR per quality step near the top of libwebp's range (corpus textures: 0.2-0.35).
SEARCH_SLOPE_DB = 0.25


@dataclass(frozen=True)
class Encoded:
    """One encoded image and what it is."""

    data: bytes
    mime: str
    psnr: float  # worst channel against the source pixels, dB (inf when lossless)
    quality: int | None  # lossy quality; None when lossless, near-lossless (or KTX2)
    near_lossless: int | None = None  # libwebp near-lossless level, when that won
    palette: int | None = None  # colours, when a reduced palette (lossless-coded) won
    posterize: float | None = None  # the step, when posterized values (lossless-coded) won


def measure(data: bytes, reference: np.ndarray, where: str, max_pixels: int) -> float:
    """PSNR (worst channel) of encoded `data` against the `reference` RGBA pixels."""
    with decode_image(data, where, max_pixels) as decoded:
        return psnr(rgba_pixels(decoded), reference)


Probe = Callable[[int], tuple[bytes, float]]


def prober(encode: Callable[[int], bytes], reference: np.ndarray, where: str,
           max_pixels: int) -> Probe:
    """quality -> (bytes, PSNR): encodes and measures each quality once (cached), so
    searches that revisit a quality cost nothing."""
    seen: dict[int, tuple[bytes, float]] = {}

    def probe(quality: int) -> tuple[bytes, float]:
        if quality not in seen:
            data = encode(quality)
            seen[quality] = (data, measure(data, reference, where, max_pixels))
        return seen[quality]
    return probe


def search_lowest(probe: Probe, floor: float,
                  max_quality: int) -> tuple[bytes, int, float] | None:
    """(bytes, quality, PSNR) at the lowest quality in 0..max_quality whose decoded pixels
    hold `floor` dB, as `probe` measures them; None when even max_quality misses it.

    A safeguarded interpolation search: PSNR grows smoothly with quality, so the next probe
    is interpolated between the best miss and the best hit, with a bisection whenever that
    did not halve the interval: ~5 encodes instead of a binary search's ~8, the same answer
    where PSNR is monotone in quality."""
    data, value = probe(max_quality)
    if value < floor:
        return None
    best = (data, max_quality, value)
    lo, hi = 0, max_quality  # invariant: hi holds the floor
    hi_value = value
    miss: tuple[int, float] | None = None  # the highest quality seen missing, its PSNR
    # The first probe is guessed from the headroom at the top quality and a typical slope
    # there, so most searches start next to their answer.
    guess = (max_quality - (hi_value - floor) / SEARCH_SLOPE_DB
             if math.isfinite(hi_value) else None)
    bisect = guess is None
    while lo < hi:
        width = hi - lo
        interpolated = not bisect and (guess is not None or (
            miss is not None and hi_value > miss[1]))
        if guess is not None:
            q, guess = round(guess), None
        elif interpolated:
            assert miss is not None
            t = (floor - miss[1]) / (hi_value - miss[1])
            q = math.ceil(miss[0] + t * (hi - miss[0]))
        else:
            q = (lo + hi) // 2
        q = min(hi - 1, max(lo, q))
        data, value = probe(q)
        if value >= floor:
            hi, hi_value, best = q, value, (data, q, value)
        else:
            lo, miss = q + 1, (q, value)
        bisect = interpolated and (hi - lo) > width // 2
    return best
