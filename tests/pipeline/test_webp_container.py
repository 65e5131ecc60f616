"""Joining a colour-only lossy WebP and a once-coded alpha plane into one file."""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest
from PIL import Image

from tourserver.pipeline.textures.webp_container import riff_chunks, with_alpha


def _rgba(width: int = 96, height: int = 64) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    alpha = np.where((x - 40) ** 2 + (y - 30) ** 2 < 500, 255, (x * 2) % 256)
    return np.stack([x * 2, y * 3, (x + y) % 256, alpha], -1).astype(np.uint8)


def _webp(pixels: np.ndarray, **options) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="WEBP", exact=True, **options)
    return out.getvalue()


def test_alpha_coded_once_joins_any_colour_encode():
    pixels = _rgba()
    alpha = dict(riff_chunks(_webp(pixels, quality=0, alpha_quality=100)))[b"ALPH"]
    colour = _webp(np.ascontiguousarray(pixels[..., :3]), quality=80)
    joined = with_alpha(colour, alpha, 96, 64)
    assert [fourcc for fourcc, _ in riff_chunks(joined)] == [b"VP8X", b"ALPH", b"VP8 "]
    with Image.open(io.BytesIO(joined)) as img:
        assert img.size == (96, 64) and img.mode == "RGBA"
        decoded = np.asarray(img)
    with Image.open(io.BytesIO(colour)) as img:
        assert np.array_equal(decoded[..., :3], np.asarray(img.convert("RGB")))
    assert np.array_equal(decoded[..., 3], pixels[..., 3])  # lossless alpha
    assert struct.unpack_from("<I", joined, 4)[0] == len(joined) - 8


def test_odd_sized_chunks_are_padded():
    pixels = _rgba(33, 17)
    alpha = dict(riff_chunks(_webp(pixels, quality=0, alpha_quality=100)))[b"ALPH"]
    colour = _webp(np.ascontiguousarray(pixels[..., :3]), quality=50)
    for extra in (b"", b"\x00"):  # whatever the payload's parity
        joined = with_alpha(colour, alpha + extra, 33, 17)
        assert len(joined) % 2 == 0
        assert dict(riff_chunks(joined))[b"ALPH"] == alpha + extra


@pytest.mark.parametrize("data, message", [
    (b"GIF89a" + b"\0" * 20, "not a WebP file"),
    (b"RIFF\x20\0\0\0WEBPVP8 \xff\0\0\0abcd", "runs past the end"),
])
def test_what_is_not_a_webp_file_is_named(data, message):
    with pytest.raises(ValueError, match=message):
        riff_chunks(data)


def test_a_lossless_colour_file_or_a_bad_canvas_is_refused():
    pixels = _rgba()
    alpha = dict(riff_chunks(_webp(pixels, quality=0, alpha_quality=100)))[b"ALPH"]
    lossless = _webp(np.ascontiguousarray(pixels[..., :3]), lossless=True)
    with pytest.raises(ValueError, match="no single lossy"):
        with_alpha(lossless, alpha, 96, 64)
    with pytest.raises(ValueError, match="out of range"):
        with_alpha(_webp(np.ascontiguousarray(pixels[..., :3]), quality=50), alpha, 0, 64)
