"""Scene variant tiers the build produces for every scene, from richest to lightest.

Until the full optimiser lands these are simplification + texture downscaling; each tier
is a tuple of transforms, so the optimiser plugs in by changing this table only.
"""

from __future__ import annotations

from dataclasses import dataclass

from tourserver.pipeline.base import Transform
from tourserver.pipeline.simplify import Simplify
from tourserver.pipeline.texture_resize import TextureResize


@dataclass(frozen=True)
class Tier:
    name: str
    lod: int  # 0 = full detail
    transforms: tuple[Transform, ...]
    description: str


TIERS: tuple[Tier, ...] = (
    Tier("high", 0, (TextureResize(2048),),
         "full geometry, textures up to 2048 px: headsets and recent phones on fast networks"),
    # Borders are not locked: creators' models are often many open parts (window quads,
    # facade panels) whose every edge is a border, which would stop simplification cold.
    Tier("medium", 1, (Simplify(0.5, target_error=0.02, lock_border=False), TextureResize(1024)),
         "half the triangles, textures up to 1024 px: the default for phones"),
    Tier("low", 2, (Simplify(0.15, target_error=0.1, lock_border=False), TextureResize(512)),
         "15% of the triangles, textures up to 512 px: Save-Data, slow networks, low memory"),
)
TIER_NAMES = tuple(t.name for t in TIERS)
# What a client that sends no client hints gets (see model.variants).
DEFAULT_TIER = "medium"
