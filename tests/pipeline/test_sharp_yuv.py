"""Sharp RGB->YUV done once in NumPy: plain lossy WebP of its pixels keeps colour edges."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from support import corpus_file

from tourserver.ingest.images import psnr_channels, rgba_pixels
from tourserver.pipeline.textures import sharp_yuv
from tourserver.pipeline.textures.search import Prober, search_lowest
from tourserver.pipeline.textures.sharp_yuv import sharp_rgb


def _webp(pixels: np.ndarray, quality: int) -> tuple[bytes, np.ndarray]:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="WEBP", quality=quality, method=4, exact=True,
                                 alpha_quality=100)
    with Image.open(io.BytesIO(out.getvalue())) as decoded:
        return out.getvalue(), np.asarray(decoded.convert(Image.fromarray(pixels).mode))


def _smallest_holding(pixels: np.ndarray, floor: float) -> bytes:
    probe = Prober(lambda q: _webp(pixels, q)[0], rgba_pixels(Image.fromarray(pixels)), "t",
                   1 << 22)
    found = search_lowest(probe, floor, 95)
    assert found is not None
    return found[0]


def test_on_a_colour_texture_the_floor_holds_in_fewer_bytes():
    with Image.open(corpus_file(
            "FlightHelmet/FlightHelmet_Materials_RubberWoodMat_BaseColor.png")) as img:
        source = np.asarray(img.convert("RGB"))
    probe = Prober(lambda q: _webp(sharp_rgb(source), q)[0],
                   rgba_pixels(Image.fromarray(source)), "t", 1 << 22)
    found = search_lowest(probe, 40.0, 95)  # measured against the source, not its own pixels
    assert found is not None
    assert len(found[0]) < 0.95 * len(_smallest_holding(source, 40.0))


def test_the_worst_channel_gains_at_saturated_colour_edges():
    # Cells of random saturated colour, 13 x 9 px: edges inside 2x2 chroma blocks everywhere.
    rng = np.random.default_rng(7)
    y, x = np.mgrid[0:256, 0:256]
    cells = rng.integers(0, 256, (256 // 9 + 1, 256 // 13 + 1, 3))
    source = np.clip(cells[y // 9, x // 13] + rng.normal(0, 2, (256, 256, 3)), 0, 255)
    source = source.astype(np.uint8)
    _, plain = _webp(source, 90)
    _, sharp = _webp(sharp_rgb(source), 90)
    assert psnr_channels(sharp, source).min() > psnr_channels(plain, source).min() + 1.0


def test_flat_colour_and_grey_come_back_as_they_were():
    flat = np.full((64, 64, 3), (200, 120, 40), np.uint8)
    assert np.abs(sharp_rgb(flat).astype(int) - flat).max() <= 1  # rounding only
    grey = np.repeat(np.linspace(0, 255, 64 * 64).reshape(64, 64, 1), 3, -1).astype(np.uint8)
    assert np.abs(sharp_rgb(grey).astype(int) - grey).max() <= 2


@pytest.mark.parametrize("shape", [(33, 47, 4), (1, 1, 3), (2, 5, 3)])
def test_any_size_keeps_its_shape_and_alpha(shape):
    rng = np.random.default_rng(3)
    pixels = rng.integers(0, 256, shape, dtype=np.uint8)
    out = sharp_rgb(pixels)
    assert out.shape == pixels.shape and out.dtype == np.uint8
    if shape[2] == 4:
        assert np.array_equal(out[..., 3], pixels[..., 3])


@pytest.mark.parametrize("shape", [(301, 203, 4), (256, 64, 3), (129, 130, 3)])
def test_bands_give_the_pixels_one_whole_image_solve_gives(shape, monkeypatch):
    rng = np.random.default_rng(5)
    pixels = rng.integers(0, 256, shape, dtype=np.uint8)
    monkeypatch.setattr(sharp_yuv, "BAND_BLOCKS", 1 << 20)  # one band: the whole image
    whole = sharp_rgb(pixels)
    for blocks in (1, 7, 32):
        monkeypatch.setattr(sharp_yuv, "BAND_BLOCKS", blocks)
        assert np.array_equal(sharp_rgb(pixels), whole), blocks
