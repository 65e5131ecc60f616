"""Scene variant tiers the build produces for every scene, from richest to lightest.

Each tier is a set of optimiser options, so a tour build and a creator's
`tourserver optimize --preset ...` produce the same bytes for the same input.
"""

from __future__ import annotations

from dataclasses import dataclass

from tourserver.pipeline.optimize import OptimizeOptions


@dataclass(frozen=True)
class Tier:
    name: str
    lod: int  # 0 = full detail
    options: OptimizeOptions
    description: str


TIERS: tuple[Tier, ...] = (
    Tier("high", 0, OptimizeOptions(preset="headset"),
         "the headset preset: full geometry up to 750k triangles, textures up to 4096 px"),
    Tier("medium", 1, OptimizeOptions(preset="phone"),
         "the phone preset (5 MB, 100k triangles, 2048 px): the default for phones; "
         "`tourserver optimize --preset phone` gives the same bytes"),
    Tier("low", 2, OptimizeOptions(preset="phone", simplify=0.25, simplify_max_error=0.05,
                                   texture_max=512),
         "a quarter of the triangles, textures up to 512 px: Save-Data, slow networks, "
         "low memory"),
)
TIER_NAMES = tuple(t.name for t in TIERS)
# What a client that sends no client hints gets (see model.variants).
DEFAULT_TIER = "medium"
