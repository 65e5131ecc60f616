"""A small mosaic of tiles from across an image, to choose encoder settings on.

Why: each encode of a 2048 px texture costs up to 0.8 s, and
choosing a quality takes about five. Encoding a sixteenth of the pixels instead makes the
choice ~16x cheaper; the chosen setting is then encoded once at full size and measured
there. Tiles spread evenly over the image (rather than one centre crop) estimate the whole
image's error and bytes per pixel: a texture atlas's centre is often unlike its edges.

`activity_sample` picks its tiles by how busy they are instead (the image's tiles sorted by
the sum of differences between neighbouring pixels, taken at even quantiles), and measures
error away from the seams between them, for lossy coding, whose error follows detail and
which pays for every seam. On nine corpus textures at qualities near 40-45 dB its PSNR
was 0.35 dB from the whole image's (root mean square; 0.64 at worst), the grid's 3.0 dB
(7.2 at worst: DamagedHelmet's mostly black emissive map, whose grid tiles fell on black;
on its other maps, the tiles fell on calmer parts than the average and the seams made up
for it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

TILE = 64  # px; tiles start on 8 px steps, so 4:2:0 chroma and 8x8 blocks line up as in the image
SAMPLE_SHARE = 16  # a sample holds about 1/16 of the pixels...
SAMPLE_MIN_PIXELS = 256 * 256  # ...but no fewer than this by default: small samples mislead
GRID_OFFSET = 16  # px: where `activity_sample`'s grid starts (a macroblock in)


@dataclass(frozen=True)
class Sample:
    image: Image.Image  # what to encode: the mosaic, or the image itself when it is small
    reference: np.ndarray  # its reference RGBA pixels
    scale: float  # the image's pixels / the sample's: multiplies the sample's bytes
    # Which of the mosaic's pixels to measure error on (None: all of them).
    inside: np.ndarray | None = None

    @property
    def whole(self) -> bool:
        """The sample is the image: what it measures is the final result."""
        return self.scale == 1.0


def sample_of(image: Image.Image, reference: np.ndarray,
              min_pixels: int = SAMPLE_MIN_PIXELS, share: int = SAMPLE_SHARE) -> Sample:
    """A mosaic of TILE px tiles on an even grid over `image` (any mode Pillow can turn into
    an array), with the matching tiles of `reference` (H x W x 4): 1/`share` of the
    pixels, at least `min_pixels`. Images under twice that are their own sample."""
    width, height = image.size
    target = _target(width, height, min_pixels, TILE, share)
    if target is None:
        return Sample(image, reference, 1.0)
    tiles = target / (TILE * TILE)
    across = max(1, min(width // TILE, round((tiles * width / height) ** 0.5)))
    down = max(1, min(height // TILE, round(tiles / across)))
    corners = [(y, x) for y in _starts(height, down) for x in _starts(width, across)]
    return _mosaic(image, reference, corners, across, TILE)


def _target(width: int, height: int, min_pixels: int, tile: int,
            share: int = SAMPLE_SHARE) -> int | None:
    """A sample's pixels: 1/`share` of the image's, at least `min_pixels`; None when the
    image should be its own sample (under twice that, or under two tiles across)."""
    target = max(min_pixels, width * height // share)
    if width * height < 2 * target or width < 2 * tile or height < 2 * tile:
        return None
    return target


def _starts(length: int, count: int) -> list[int]:
    if count == 1:
        return [(length - TILE) // 2 // 8 * 8]
    return [(i * (length - TILE) // (count - 1)) // 8 * 8 for i in range(count)]


def tile_activity(reference: np.ndarray, tile: int = TILE) -> np.ndarray:
    """Each tile's activity on `activity_sample`'s grid over `reference` (H x W x 4), in
    reading order: computed once, it serves every sample of one image with this tile size
    (a 2048 px texture: ~40 ms)."""
    height, width = reference.shape[:2]
    offset, grid_across, grid_down = _grid(width, height, tile)
    return _tile_activity(reference[offset:, offset:], tile, grid_across, grid_down)


def _grid(width: int, height: int, tile: int) -> tuple[int, int, int]:
    # The grid starts GRID_OFFSET px in, so that edges on the power-of-two grids textures
    # are laid out on (atlas cells, tiled patterns) fall inside tiles, not between them.
    offset = GRID_OFFSET if min(width, height) >= 2 * tile + GRID_OFFSET else 0
    return offset, (width - offset) // tile, (height - offset) // tile


def activity_sample(image: Image.Image, reference: np.ndarray,
                    min_pixels: int = SAMPLE_MIN_PIXELS, tile: int = TILE,
                    margin: int = 8, activity: np.ndarray | None = None) -> Sample:
    """A mosaic of `tile` px tiles of `image` chosen at even quantiles of their activity,
    in reading order, with the matching tiles of `reference`; `inside` leaves out `margin`
    px along every tile edge. Sizes as `sample_of`. `activity`: `tile_activity(reference,
    tile)`, when already known."""
    width, height = image.size
    target = _target(width, height, min_pixels, tile)
    if target is None:
        return Sample(image, reference, 1.0)
    offset, grid_across, grid_down = _grid(width, height, tile)
    count = min(grid_across * grid_down, round(target / (tile * tile)))
    across = max(1, min(grid_across, round((count * width / height) ** 0.5)))
    down = max(1, min(grid_down, count // across))
    count = across * down
    if activity is None:
        activity = _tile_activity(reference[offset:, offset:], tile, grid_across, grid_down)
    order = np.argsort(activity, kind="stable")
    picked = sorted(int(order[(2 * k + 1) * len(order) // (2 * count)]) for k in range(count))
    corners = [(offset + p // grid_across * tile, offset + p % grid_across * tile)
               for p in picked]
    sample = _mosaic(image, reference, corners, across, tile)
    height_m, width_m = sample.reference.shape[:2]
    ys, xs = np.arange(height_m) % tile, np.arange(width_m) % tile
    inside = (((ys >= margin) & (ys < tile - margin))[:, None]
              & ((xs >= margin) & (xs < tile - margin))[None, :])
    return Sample(sample.image, sample.reference, sample.scale, inside)


def _mosaic(image: Image.Image, reference: np.ndarray, corners: list[tuple[int, int]],
            across: int, tile: int) -> Sample:
    """The tiles at `corners` (top, left), `across` to a row, of `image` and `reference`."""
    mosaic = _assemble(np.asarray(image), corners, across, tile)
    mosaic_reference = _assemble(reference, corners, across, tile)
    return Sample(Image.fromarray(mosaic, image.mode), mosaic_reference,
                  image.width * image.height / (mosaic.shape[0] * mosaic.shape[1]))


def _tile_activity(reference: np.ndarray, tile: int, across: int, down: int) -> np.ndarray:
    """Each grid tile's sum of absolute differences between neighbouring pixels (RGB), in
    reading order; on every other pixel, which ranks tiles as well at a quarter the cost."""
    half = tile // 2
    rgb = reference[0:down * tile:2, 0:across * tile:2, :3].astype(np.int16)
    busy = np.zeros(rgb.shape[:2], np.int32)
    busy[:, 1:] += np.abs(np.diff(rgb, axis=1)).sum(-1)
    busy[1:, :] += np.abs(np.diff(rgb, axis=0)).sum(-1)
    return busy.reshape(down, half, across, half).sum(axis=(1, 3)).ravel()


def _assemble(pixels: np.ndarray, corners: list[tuple[int, int]], across: int,
              tile: int) -> np.ndarray:
    tiles = [pixels[y:y + tile, x:x + tile] for y, x in corners]
    rows = [np.concatenate(tiles[i:i + across], axis=1) for i in range(0, len(tiles), across)]
    return np.ascontiguousarray(np.concatenate(rows, axis=0))
