"""A small mosaic of tiles from across an image, to choose encoder settings on.

Why: each encode of a 2048 px texture costs up to 0.8 s, and
choosing a quality takes about five. Encoding a sixteenth of the pixels instead makes the
choice ~16x cheaper; the chosen setting is then encoded once at full size and measured
there. Tiles spread evenly over the image (rather than one centre crop) estimate the whole
image's error and bytes per pixel: a texture atlas's centre is often unlike its edges.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

TILE = 64  # px; tiles start on 8 px steps, so 4:2:0 chroma and 8x8 blocks line up as in the image
SAMPLE_SHARE = 16  # a sample holds about 1/16 of the pixels...
SAMPLE_MIN_PIXELS = 256 * 256  # ...but no fewer than this by default: small samples mislead


@dataclass(frozen=True)
class Sample:
    image: Image.Image  # what to encode: the mosaic, or the image itself when it is small
    reference: np.ndarray  # its reference RGBA pixels
    scale: float  # the image's pixels / the sample's: multiplies the sample's bytes

    @property
    def whole(self) -> bool:
        """The sample is the image: what it measures is the final result."""
        return self.scale == 1.0


def sample_of(image: Image.Image, reference: np.ndarray,
              min_pixels: int = SAMPLE_MIN_PIXELS, tile: int = TILE) -> Sample:
    """A mosaic of `tile` px tiles on an even grid over `image` (any mode Pillow can turn into
    an array), with the matching tiles of `reference` (H x W x 4): 1/SAMPLE_SHARE of the
    pixels, at least `min_pixels`. Images under twice that are their own sample."""
    width, height = image.size
    pixels = width * height
    target = max(min_pixels, pixels // SAMPLE_SHARE)
    if pixels < 2 * target or width < 2 * tile or height < 2 * tile:
        return Sample(image, reference, 1.0)
    tiles = target / (tile * tile)
    across = max(1, min(width // tile, round((tiles * width / height) ** 0.5)))
    down = max(1, min(height // tile, round(tiles / across)))
    xs = _starts(width, across, tile)
    ys = _starts(height, down, tile)
    source = np.asarray(image)
    mosaic = _assemble(source, xs, ys, tile)
    mosaic_reference = _assemble(reference, xs, ys, tile)
    return Sample(Image.fromarray(mosaic, image.mode), mosaic_reference,
                  pixels / (mosaic.shape[0] * mosaic.shape[1]))


def _starts(length: int, count: int, tile: int = TILE) -> list[int]:
    if count == 1:
        return [(length - tile) // 2 // 8 * 8]
    return [(i * (length - tile) // (count - 1)) // 8 * 8 for i in range(count)]


def _assemble(pixels: np.ndarray, xs: list[int], ys: list[int], tile: int) -> np.ndarray:
    rows = [np.concatenate([pixels[y:y + tile, x:x + tile] for x in xs], axis=1) for y in ys]
    return np.ascontiguousarray(np.concatenate(rows, axis=0))
