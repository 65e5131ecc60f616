"""What a re-encoded texture must hold, by what it is for: the named quality levels of
`--texture-quality` and the metric each kind of image is judged by.

- Colour images (base colour, emissive, sheen, specular colour, diffuse) are judged by
  SSIMULACRA2 (`metrics.ssimulacra2`), a perceptual score: PSNR pays to encode sensor
  noise nobody sees, a perceptual score spends bytes where the eye looks.
- Normal maps are judged by the angle their normals turn (`metrics.normal_angle_error`, the
  99th percentile in degrees): they feed lighting, and a colour metric says nothing of how
  far a surface's shading moves.
- Other data (occlusion-roughness-metallic, clearcoat, thickness...) pack unrelated values
  per channel and show as lighting faults, so every channel holds a PSNR floor.

The levels. `high`, the default, holds 70 on SSIMULACRA2: on libjxl's scale "high quality,
artefacts hard to notice without comparing with the original" at 1:1 on a desktop monitor.
A phone in AR shows a texture smaller than that, on a screen of 400-500 pixels per inch
held at arm's length, where each texel covers a third of the angle or less: there, 70 is
visually lossless. `very-high` (80: no difference side by side at 1:1) is for close-up
inspection or a headset's wider view; `lossless` keeps every value. A number is an
SSIMULACRA2 target for colour, with the data rules of the level at or below it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from tourserver.errors import TourError
from tourserver.ingest.images import psnr
from tourserver.pipeline.textures.metrics import (
    Ssimulacra2Reference,
    normal_angle_error,
    ssimulacra2,
)


@dataclass(frozen=True)
class Metric:
    """A score of decoded pixels against the reference (both RGBA uint8): higher is better.
    `step` is the score change that counts for as much as 1 dB of PSNR does, so the
    search's rules of thumb (how far a sample may miss, how much slack to allow) carry
    over from one metric to another."""

    name: str
    score: Callable[[np.ndarray, np.ndarray], float]
    step: float
    lossless: float  # the score of identical pixels
    # reference -> (decoded -> score): what a search that scores many encodings of one
    # image calls, so the reference's own work is done once (None: `score` each time)
    prepared: Callable[[np.ndarray], Callable[[np.ndarray], float]] | None = None
    # Scores each texel on its own (PSNR, the normal angle), so a sample's seams can be
    # left out and posterized values scored without encoding; SSIMULACRA2 looks at
    # neighbourhoods.
    per_texel: bool = False

    def prepare(self, reference: np.ndarray) -> Callable[[np.ndarray], float]:
        """decoded -> score against `reference`."""
        if self.prepared is not None:
            return self.prepared(reference)
        return lambda decoded: self.score(decoded, reference)


def _psnr(decoded: np.ndarray, reference: np.ndarray) -> float:
    return psnr(decoded, reference)


def _ssimulacra2(decoded: np.ndarray, reference: np.ndarray) -> float:
    return ssimulacra2(reference, decoded)


def _normal_angle(decoded: np.ndarray, reference: np.ndarray) -> float:
    # Negated, so that higher is better as for every other metric.
    return -normal_angle_error(reference, decoded).p99


PSNR = Metric("psnr", _psnr, 1.0, np.inf, per_texel=True)
SSIMULACRA2 = Metric("ssimulacra2", _ssimulacra2, 2.0, 100.0,
                     lambda reference: Ssimulacra2Reference(reference).score)
NORMAL_ANGLE = Metric("normal_p99_deg", _normal_angle, 0.5, 0.0, per_texel=True)


@dataclass(frozen=True)
class Target:
    """One image's rule: its metric and the least score it must hold."""

    metric: Metric
    floor: float



def reported(metric: str, score: float) -> float:
    """A score as a JSON-safe fact: degrees for normals (0 when identical), 100 for
    identical pixels otherwise."""
    if not np.isfinite(score):
        return 0.0 if metric == NORMAL_ANGLE.name else 100.0
    if metric == NORMAL_ANGLE.name:
        return round(-score, 3)
    return round(min(score, 100.0), 3)


def describe(metric: str, score: float) -> str:
    """A score for people: "SSIMULACRA2 71.2", "42.1 dB", "1.80° (p99 normal angle)"."""
    value = reported(metric, score)
    if metric == NORMAL_ANGLE.name:
        return f"{value:.2f}° p99 normal angle"
    if not np.isfinite(score):
        return "identical pixels"
    return f"{value:.1f} dB" if metric == PSNR.name else f"SSIMULACRA2 {value:.1f}"


@dataclass(frozen=True)
class TextureQuality:
    """The targets of one level."""

    name: str
    colour: float  # SSIMULACRA2
    normal_deg: float  # p99 angle
    data_db: float  # PSNR, worst channel
    lossless: bool = False

    def target(self, role: str, channels: str) -> Target:
        """The rule for an image of `role` (colour, normal or data) whose materials read
        `channels`. A single scalar (occlusion alone, roughness alone) has no channels to
        mix and no direction to bend: it is judged as a grey image is, by SSIMULACRA2."""
        if role == "colour" or (role == "data" and len(channels) == 1):
            return Target(SSIMULACRA2, self.colour)
        if role == "normal":
            return Target(NORMAL_ANGLE, -self.normal_deg)
        return Target(PSNR, self.data_db)


LEVELS = {
    "high": TextureQuality("high", colour=70.0, normal_deg=4.0, data_db=40.0),
    "very-high": TextureQuality("very-high", colour=80.0, normal_deg=2.0, data_db=45.0),
    "lossless": TextureQuality("lossless", colour=100.0, normal_deg=0.0, data_db=np.inf,
                               lossless=True),
}
DEFAULT_LEVEL = "high"


def texture_quality(value: str | float | None) -> TextureQuality:
    """A level by name, or an SSIMULACRA2 target (10-100) for colour with the data rules of
    the named level at or below it (TourError code "usage" otherwise)."""
    if value is None:
        return LEVELS[DEFAULT_LEVEL]
    if isinstance(value, str) and value in LEVELS:
        return LEVELS[value]
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if not 10 <= number <= 100:
        raise TourError(f"--texture-quality {value!r}: use {', '.join(LEVELS)} or an "
                        "SSIMULACRA2 score from 10 to 100 (70 high, 80 very high, "
                        "90 visually lossless at 1:1)", code="usage")
    if number >= 100:
        return LEVELS["lossless"]
    base = LEVELS["very-high"] if number >= LEVELS["very-high"].colour else LEVELS["high"]
    return TextureQuality(f"{number:g}", colour=number, normal_deg=base.normal_deg,
                          data_db=base.data_db)


__all__ = ["Metric", "Target", "TextureQuality", "LEVELS", "DEFAULT_LEVEL", "texture_quality",
           "PSNR", "SSIMULACRA2", "NORMAL_ANGLE", "reported", "describe"]
