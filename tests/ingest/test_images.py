"""Guarded image decoding: our pixel cap before any decode, a format allowlist, and PSNR."""

from __future__ import annotations

import io
import struct
import time
import zlib

import numpy as np
import pytest
from PIL import Image

from tourserver.gltf.document import GltfInvalid
from tourserver.ingest.images import (
    KTX2_MAGIC,
    MAX_DECODE_PIXELS,
    decode_image,
    image_size,
    psnr,
    psnr_channels,
)


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height RGBA pixels (a decompression bomb)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr)
            + _chunk(b"IDAT", zlib.compress(b"\0" * 4096)) + _chunk(b"IEND", b""))


def encoded(img: Image.Image, fmt: str) -> bytes:
    out = io.BytesIO()
    img.save(out, format=fmt)
    return out.getvalue()


@pytest.fixture
def no_decoding(monkeypatch):
    """Fail the test if any pixel data is decoded."""
    def refuse(self, *args, **kwargs):
        raise AssertionError("pixel data was decoded")
    monkeypatch.setattr(Image.Image, "load", refuse)
    monkeypatch.setattr("PIL.ImageFile.ImageFile.load", refuse)


@pytest.mark.parametrize("size", [(50000, 50000), (9000, 9000), (70000, 1000)])
def test_bomb_is_refused_from_its_header_without_decoding(size, no_decoding):
    data = png_claiming(*size)
    started = time.perf_counter()
    with pytest.raises(GltfInvalid) as err:
        decode_image(data, "bomb.glb#/images/3")
    assert err.value.code == "image_too_large"
    assert "bomb.glb#/images/3" in err.value.message
    assert time.perf_counter() - started < 1.0
    assert size[0] * size[1] > MAX_DECODE_PIXELS  # (9000^2 is under Pillow's own limit)


def test_our_cap_is_configurable():
    data = encoded(Image.new("RGB", (64, 64)), "PNG")
    with pytest.raises(GltfInvalid) as err:
        decode_image(data, "x", max_pixels=64 * 63)
    assert err.value.code == "image_too_large"
    assert decode_image(data, "x", max_pixels=64 * 64).size == (64, 64)


@pytest.mark.parametrize("fmt,name", [("GIF", "GIF"), ("BMP", "BMP"), ("TIFF", "TIFF")])
def test_formats_outside_the_allowlist_are_refused(fmt, name):
    data = encoded(Image.new("RGB", (8, 8), (200, 10, 10)), fmt)
    with pytest.raises(GltfInvalid) as err:
        decode_image(data, "a.gltf#/images/0")
    assert err.value.code == "image_format"
    assert name in err.value.message and "a.gltf#/images/0" in err.value.message


def test_ktx2_is_named_and_not_decoded():
    data = KTX2_MAGIC + struct.pack("<IIII", 0, 1, 256, 128) + bytes(64)
    assert image_size(data) == (256, 128)  # the header is still read for facts
    with pytest.raises(GltfInvalid) as err:
        decode_image(data, "k")
    assert err.value.code == "image_format" and "KTX2" in err.value.message


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_truncated_and_corrupt_images_are_invalid(fmt):
    rng = np.random.default_rng(1)
    data = encoded(Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)), fmt)
    for bad in (data[: len(data) // 2], data[:16] + b"\xff" * (len(data) - 16)):
        with pytest.raises(GltfInvalid) as err:
            decode_image(bad, "t")
        assert err.value.code in ("image_invalid", "image_format")
    with pytest.raises(GltfInvalid) as err:
        decode_image(data[: len(data) // 2], "t")
    assert err.value.code == "image_invalid"


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_allowed_formats_decode(fmt):
    img = decode_image(encoded(Image.new("RGB", (40, 30), (1, 2, 3)), fmt), "ok")
    assert img.size == (40, 30)
    assert np.asarray(img.convert("RGB")).shape == (30, 40, 3)


def test_psnr_per_channel_with_alpha():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (32, 32, 4), dtype=np.uint8)
    assert psnr(a, a) == float("inf")
    b = a.copy()
    b[..., 3] ^= 1  # alpha differs by at most 1 everywhere (and RGB not at all)
    channels = psnr_channels(a, b)
    assert np.isinf(channels[:3]).all()
    mse = np.mean((a[..., 3].astype(float) - b[..., 3]) ** 2)
    assert channels[3] == pytest.approx(10 * np.log10(255**2 / mse))
    assert psnr(a, b) == pytest.approx(channels[3])  # the worst channel decides
    assert psnr(Image.fromarray(a), Image.fromarray(b)) == pytest.approx(channels[3])


def test_psnr_of_known_noise_and_shape_checks():
    a = np.full((100, 100, 3), 128, np.uint8)
    b = a.copy()
    b[::2] += 10  # half the pixels off by 10: MSE = 50
    assert psnr(a, b) == pytest.approx(10 * np.log10(255**2 / 50))
    assert psnr(a[..., 0], b[..., 0]) == pytest.approx(10 * np.log10(255**2 / 50))
    with pytest.raises(ValueError):
        psnr(a, b[:50])


def test_psnr_sums_exactly_on_large_images():
    # 4 Mpx of the largest possible error: the integer sums must not overflow.
    a = np.zeros((2048, 2048, 4), np.uint8)
    b = np.full_like(a, 255)
    assert psnr_channels(a, b) == pytest.approx([0.0] * 4, abs=1e-12)
    b[0, 0, 0] = 0  # one pixel less of error in one channel
    expected = 10 * np.log10(255.0**2 / (255.0**2 * (2048 * 2048 - 1) / (2048 * 2048)))
    assert psnr_channels(a, b)[0] == pytest.approx(expected, rel=1e-12)
