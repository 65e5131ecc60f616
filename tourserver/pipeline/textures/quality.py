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
from PIL import Image

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


def _normal_mean_angle(decoded: np.ndarray, reference: np.ndarray) -> float:
    return -normal_angle_error(reference, decoded).mean


PSNR = Metric("psnr", _psnr, 1.0, np.inf, per_texel=True)
SSIMULACRA2 = Metric("ssimulacra2", _ssimulacra2, 2.0, 100.0,
                     lambda reference: Ssimulacra2Reference(reference).score)
NORMAL_ANGLE = Metric("normal_p99_deg", _normal_angle, 0.5, 0.0, per_texel=True)
# A budget's rule for normal maps (`halving_target`): the mean stays meaningful where a
# map's own texel noise, which halving removes, sets its 99th percentile.
NORMAL_MEAN_ANGLE = Metric("normal_mean_deg", _normal_mean_angle, 0.15, 0.0, per_texel=True)
ANGLE_METRICS = (NORMAL_ANGLE.name, NORMAL_MEAN_ANGLE.name)


@dataclass(frozen=True)
class Target:
    """One image's rule: its metric and the least score it must hold."""

    metric: Metric
    floor: float



def reported(metric: str, score: float) -> float:
    """A score as a JSON-safe fact: degrees for normals (0 when identical), 100 for
    identical pixels otherwise."""
    if not np.isfinite(score):
        return 0.0 if metric in ANGLE_METRICS else 100.0
    if metric in ANGLE_METRICS:
        return round(-score, 3)
    return round(min(score, 100.0), 3)


def describe(metric: str, score: float) -> str:
    """A score for people: "SSIMULACRA2 71.2", "42.1 dB", "1.80° p99 normal angle"."""
    return describe_reported(metric, reported(metric, score))


def describe_reported(metric: str, value: float) -> str:
    """`describe` for a score already `reported` (the optimise report's texture rows)."""
    if metric == NORMAL_ANGLE.name:
        return f"{value:.2f}° p99 normal angle"
    if metric == NORMAL_MEAN_ANGLE.name:
        return f"{value:.2f}° mean normal angle"
    if metric == PSNR.name:
        return "identical pixels" if value >= 100 else f"{value:.1f} dB"
    return "identical pixels" if value >= 100 else f"SSIMULACRA2 {value:.1f}"


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


# Under a budget a normal map's mean angle is held no looser than this, however little
# halving it would lose (a smooth map): about the level's 4° p99 on such maps.
MIN_HALVING_MEAN_DEG = 1.0


def halving_applies(rule: Target) -> bool:
    """Whether a budget can relax `rule` (`halving_target`): normal maps' and packed
    data's rules, not colour's."""
    return rule.metric in (NORMAL_ANGLE, PSNR) and np.isfinite(rule.floor)


def halving_target(rule: Target, reference: np.ndarray) -> Target:
    """A data map's rule under a byte budget (`TextureEncode.relax_images`): it may lose at
    full size what halving it would lose, scored at full size as a renderer samples the
    halved map (box down, bilinear up). Halving costs more detail per byte saved than a
    lossy encode at full size (the bench's city block: its normal and ORM maps at full
    size took a quarter of their halved bytes, for the same loss), so a budget lowers the
    data maps' rule before their size. Normal maps are held to the mean angle (see
    NORMAL_MEAN_ANGLE); packed data to the lower of the level's PSNR and halving's.
    Colour, and data judged as grey, keep their rule."""
    if not halving_applies(rule) or min(reference.shape[:2]) < 8:
        return rule
    h, w = reference.shape[:2]
    image = Image.fromarray(reference, "RGBA")
    halved = image.resize((max(1, w // 2), max(1, h // 2)), Image.Resampling.BOX)
    seen = np.asarray(halved.resize((w, h), Image.Resampling.BILINEAR))
    if rule.metric is NORMAL_ANGLE:
        lost = max(normal_angle_error(reference, seen).mean, MIN_HALVING_MEAN_DEG)
        return Target(NORMAL_MEAN_ANGLE, -lost)
    return Target(PSNR, min(rule.floor, psnr(seen, reference)))


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
           "PSNR", "SSIMULACRA2", "NORMAL_ANGLE", "NORMAL_MEAN_ANGLE", "ANGLE_METRICS",
           "halving_applies", "halving_target", "reported", "describe", "describe_reported"]
