"""The mosaic that encoder settings are chosen on."""

import numpy as np
from PIL import Image

from tourserver.ingest.images import rgba_pixels
from tourserver.pipeline.textures.sample import (
    SAMPLE_SHARE,
    TILE,
    activity_sample,
    sample_of,
    tile_activity,
)


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


def test_a_sample_can_take_a_smaller_share():
    # Near-lossless is screened on a quarter of the lossless family's 1/16 sample.
    img = _image(2048, 2048)
    sample = sample_of(img, rgba_pixels(img), min_pixels=256 * 256, share=64)
    width, height = sample.image.size
    assert width * height == 2048 * 2048 // 64 and sample.scale == 64


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


def test_activity_tiles_sample_busy_and_calm_parts_in_their_share():
    # A quarter of the image is noise, the rest flat grey: a grid of tiles could land on
    # either; tiles taken at even quantiles of activity hold a quarter noise, like the image.
    pixels = np.full((2048, 2048, 3), 90, np.uint8)
    rng = np.random.default_rng(2)
    pixels[1024 + 16:, 1024 + 16:] = rng.integers(0, 256, (1024 - 16, 1024 - 16, 3))
    img = Image.fromarray(pixels)
    sample = activity_sample(img, rgba_pixels(img), 512 * 512, 64, 8)
    mosaic = np.asarray(sample.image)
    assert mosaic.shape == (512, 512, 3) and sample.scale == 16
    busy = [mosaic[y:y + 64, x:x + 64].std() > 20 for y in range(0, 512, 64)
            for x in range(0, 512, 64)]
    assert abs(sum(busy) / len(busy) - 0.25) <= 1 / 16
    assert np.array_equal(sample.reference[..., :3], mosaic)


def test_activity_tiles_measure_away_from_the_seams():
    img = _image(1024, 1024)
    sample = activity_sample(img, rgba_pixels(img), 256 * 256, 64, 8)
    inside = sample.inside
    assert inside is not None and inside.shape == sample.reference.shape[:2]
    assert not inside[:, 56:72].any() and not inside[56:72, :].any()  # a seam at 64
    assert inside[8:56, 8:56].all()
    assert inside.mean() == (48 / 64) ** 2


def test_edges_on_a_power_of_two_grid_fall_inside_activity_tiles():
    # A texture laid out in 256 px cells: every cell edge is a multiple of 64. Tiles that
    # started there would have them all on their seams, measured nowhere.
    y, x = np.mgrid[0:1024, 0:1024]
    pixels = np.stack([x % 256, y % 256, np.full_like(x, 128)], -1).astype(np.uint8)
    img = Image.fromarray(pixels)
    sample = activity_sample(img, rgba_pixels(img), 256 * 256, 64, 8)
    red = sample.reference[..., 0].astype(int)
    across_an_edge = 0
    for ty in range(0, red.shape[0], 64):
        for tx in range(0, red.shape[1], 64):
            interior = red[ty + 8:ty + 56, tx + 8:tx + 56]
            across_an_edge += interior.min() < 16 and interior.max() > 240
    assert across_an_edge >= 2  # both sides of a cell edge, away from the seams


def test_small_images_are_their_own_activity_sample():
    img = _image(512, 512)
    sample = activity_sample(img, rgba_pixels(img), 512 * 512, 64, 8)
    assert sample.whole and sample.inside is None


def test_tile_activity_computed_once_gives_the_same_samples():
    img = _image(1024, 768)
    reference = rgba_pixels(img)
    activity = tile_activity(reference, TILE)
    for min_pixels in (128 * 128, 256 * 256):
        given = activity_sample(img, reference, min_pixels, TILE, 8, activity)
        computed = activity_sample(img, reference, min_pixels, TILE, 8)
        assert np.array_equal(given.reference, computed.reference)
        assert np.array_equal(given.inside, computed.inside)


def test_one_image_s_lossy_samples_rank_its_tiles_once(monkeypatch):
    from tourserver.pipeline.textures import sample as image_sample
    from tourserver.pipeline.textures import webp as webp_encode
    calls = []
    real = image_sample._tile_activity
    monkeypatch.setattr(image_sample, "_tile_activity",
                        lambda *args: calls.append(1) or real(*args))
    y, x = np.mgrid[0:1200, 0:1200]
    noise = np.random.default_rng(3).normal(0, 2, (1200, 1200, 3))
    pixels = np.stack([x / 6, y / 6, np.full_like(x, 120.0)], -1) + noise
    img = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    result = webp_encode.encode_webp(img, rgba_pixels(img), 40.0, webp_encode.WebpOptions(),
                                     "t", lossless=False)
    assert result is not None and result.quality is not None  # searched on its sample
    assert calls == [1]  # which shares the quick probe's ranking of the tiles
