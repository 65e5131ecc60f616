"""The mosaic that encoder settings are chosen on."""

import numpy as np
from PIL import Image

from tourserver.ingest.images import rgba_pixels
from tourserver.pipeline.image_sample import SAMPLE_SHARE, TILE, sample_of


def _image(height: int, width: int, mode: str = "RGB") -> Image.Image:
    rng = np.random.default_rng(5)
    channels = 4 if mode == "RGBA" else 3
    return Image.fromarray(rng.integers(0, 256, (height, width, channels), dtype=np.uint8),
                           mode)


def test_a_large_image_is_sampled_to_a_share_of_its_pixels():
    img = _image(2048, 2048)
    sample = sample_of(img, rgba_pixels(img))
    width, height = sample.image.size
    assert width % TILE == 0 and height % TILE == 0
    assert width * height == 2048 * 2048 // SAMPLE_SHARE
    assert sample.scale == SAMPLE_SHARE and not sample.whole
    assert sample.reference.shape == (height, width, 4)


def test_tiles_come_from_across_the_image_and_match_their_reference():
    # Each pixel holds its own coordinates, so every tile can be traced back.
    y, x = np.mgrid[0:1024, 0:1024]
    pixels = np.stack([x % 256, y % 256, (x // 256) * 16 + y // 256], -1).astype(np.uint8)
    img = Image.fromarray(pixels)
    sample = sample_of(img, rgba_pixels(img), min_pixels=128 * 128)
    mosaic = np.asarray(sample.image)
    assert np.array_equal(sample.reference[..., :3], mosaic)
    starts = set()
    for ty in range(0, mosaic.shape[0], TILE):
        for tx in range(0, mosaic.shape[1], TILE):
            first = mosaic[ty, tx].astype(int)
            sx, sy = first[2] // 16 * 256 + first[0], first[2] % 16 * 256 + first[1]
            # the whole tile is one contiguous block of the image
            assert np.array_equal(mosaic[ty:ty + TILE, tx:tx + TILE],
                                  pixels[sy:sy + TILE, sx:sx + TILE])
            assert sx % 8 == 0 and sy % 8 == 0  # block-aligned, as the encoder sees it
            starts.add((sx, sy))
    xs = sorted({sx for sx, _ in starts})
    assert xs[0] == 0 and xs[-1] >= 1024 - TILE - 8  # from edge to edge


def test_small_images_are_their_own_sample():
    img = _image(256, 256, "RGBA")
    sample = sample_of(img, rgba_pixels(img))
    assert sample.whole and sample.image is img


def test_non_square_images_keep_their_aspect():
    img = _image(512, 4096)
    sample = sample_of(img, rgba_pixels(img), min_pixels=64 * 64)
    width, height = sample.image.size
    assert width > 4 * height
    assert sample.scale == 512 * 4096 / (width * height)
