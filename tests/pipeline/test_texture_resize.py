"""TextureResize: largest edge and power-of-two snapping, never upwards, formats kept."""

from __future__ import annotations

import copy
import io
import struct
import tempfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from support import corpus_file, node_validator_available, require

from tourserver.gltf.document import Document, GltfInvalid, write_glb
from tourserver.ingest.images import psnr, rgba_pixels
from tourserver.ingest.loaders import load_asset
from tourserver.ingest.validator import validate_file
from tourserver.pipeline.base import run
from tourserver.pipeline.textures.resize import TextureResize, target_size


def _is_pow2(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


@pytest.mark.parametrize("size,max_px,expected", [
    ((4096, 4096), 2048, (2048, 2048)),
    ((2048, 1024), 2048, (2048, 1024)),
    ((5000, 2500), 2048, (2048, 1024)),  # a 2:1 aspect stays exactly 2:1
    ((300, 200), 2048, (256, 128)),  # 300 -> 256 (nearest), 200 -> 128 (256 would upsize)
    ((200, 300), 2048, (128, 256)),
    ((1000, 500), 2048, (512, 256)),  # 1024 would upsize 1000: never
    ((64, 64), 2048, (64, 64)),
    ((3000, 1), 2048, (2048, 1)),
    ((1, 1), 2048, (1, 1)),
    ((4096, 4096), 1000, (512, 512)),  # nearest power of two not above max
])
def test_target_size_power_of_two(size, max_px, expected):
    got = target_size(*size, max_px, True)
    assert got == expected
    assert all(_is_pow2(v) for v in got)
    assert got[0] <= size[0] and got[1] <= size[1]  # never upsizes
    assert max(got) <= max_px


def test_target_size_without_snapping_keeps_aspect():
    assert target_size(4000, 3000, 2048, False) == (2048, 1536)
    assert target_size(300, 200, 2048, False) == (300, 200)


def _doc_with(images: list[tuple[bytes, str]]) -> Document:
    """A GLB-like document of images only, each used by a texture of one material."""
    chunks, views, entries = [], [], []
    offset = 0
    for data, mime in images:
        views.append({"buffer": 0, "byteOffset": offset, "byteLength": len(data)})
        padded = data + b"\0" * (-len(data) % 4)
        chunks.append(padded)
        offset += len(padded)
        entries.append({"mimeType": mime, "bufferView": len(views) - 1})
    positions = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], np.float32).tobytes()
    views.append({"buffer": 0, "byteOffset": offset, "byteLength": len(positions),
                  "target": 34962})
    chunks.append(positions)
    uv = np.array([[0, 0], [1, 0], [0, 1]], np.float32).tobytes()
    views.append({"buffer": 0, "byteOffset": offset + len(positions), "byteLength": len(uv),
                  "target": 34962})
    chunks.append(uv)
    doc_json = {
        "asset": {"version": "2.0"}, "scene": 0, "scenes": [{"nodes": [0]}],
        "nodes": [{"mesh": 0}],
        "meshes": [{"primitives": [{"attributes": {"POSITION": 0, "TEXCOORD_0": 1},
                                    "material": 0}]}],
        "materials": [{"pbrMetallicRoughness": {"baseColorTexture": {"index": 0}},
                       "emissiveTexture": {"index": len(images) - 1}}],
        "accessors": [
            {"bufferView": len(views) - 2, "componentType": 5126, "count": 3,
             "type": "VEC3", "min": [0, 0, 0], "max": [1, 1, 0]},
            {"bufferView": len(views) - 1, "componentType": 5126, "count": 3,
             "type": "VEC2"}],
        "textures": [{"source": i} for i in range(len(images))],
        "images": entries, "bufferViews": views,
        "buffers": [{"byteLength": sum(len(c) for c in chunks)}],
    }
    return Document(doc_json, b"".join(chunks), "generated.glb")


def _encode(img: Image.Image, fmt: str) -> bytes:
    out = io.BytesIO()
    img.save(out, format=fmt)
    return out.getvalue()


def _gradient(w: int, h: int) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 255 // max(1, w - 1), y * 255 // max(1, h - 1),
                     np.full_like(x, 90)], axis=-1).astype(np.uint8)


def test_resizes_to_powers_of_two_keeping_formats_and_modes():
    palette = Image.fromarray(_gradient(600, 300)).quantize(64)
    grey = Image.fromarray(_gradient(300, 300)[..., 0], "L")
    jpeg = Image.fromarray(_gradient(3000, 1500))
    small = Image.fromarray(_gradient(64, 64))
    src = _doc_with([(_encode(palette, "PNG"), "image/png"), (_encode(grey, "PNG"), "image/png"),
                     (_encode(jpeg, "JPEG"), "image/jpeg"), (_encode(small, "PNG"), "image/png")])
    before = copy.deepcopy(src.json)
    out, ctx = run(src, TextureResize(max_px=2048))
    assert src.json == before
    got = []
    for image in out.json["images"]:
        with Image.open(io.BytesIO(out.buffer_view_bytes(image["bufferView"]))) as img:
            got.append((img.format, img.mode, img.size))
    assert got == [("PNG", "P", (512, 256)), ("PNG", "L", (256, 256)),
                   ("JPEG", "RGB", (2048, 1024)), ("PNG", "RGB", (64, 64))]
    # An image that already fits is kept byte for byte.
    assert (out.buffer_view_bytes(out.json["images"][3]["bufferView"])
            == src.buffer_view_bytes(src.json["images"][3]["bufferView"]))
    assert ctx.facts["texture_resize.images"] == 3
    assert len(write_glb(out)) < len(write_glb(src))
    # The content is the same picture, smaller: compare against a plain downscale.
    with Image.open(io.BytesIO(out.buffer_view_bytes(out.json["images"][2]["bufferView"]))) as im:
        reference = jpeg.resize(im.size, Image.Resampling.LANCZOS)
        assert psnr(rgba_pixels(im), rgba_pixels(reference)) > 35
    if node_validator_available():
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "out.glb"
            path.write_bytes(write_glb(out))
            assert validate_file(path).errors == 0


def test_a_webp_larger_than_the_preset_is_resized_and_stays_webp():
    rgba = np.dstack([_gradient(4096, 2048), np.full((2048, 4096), 200, np.uint8)])
    src = _doc_with([(_encode(Image.fromarray(rgba, "RGBA"), "WEBP"), "image/webp")])
    out, ctx = run(src, TextureResize(max_px=1024))
    with Image.open(io.BytesIO(out.buffer_view_bytes(out.json["images"][0]["bufferView"]))) as im:
        assert (im.format, im.mode, im.size) == ("WEBP", "RGBA", (1024, 512))
    assert ctx.facts["texture_resize.images"] == 1


def test_never_upsizes():
    img = Image.fromarray(_gradient(200, 120))
    out, _ = run(_doc_with([(_encode(img, "PNG"), "image/png")]), TextureResize(max_px=4096))
    with Image.open(io.BytesIO(out.buffer_view_bytes(out.json["images"][0]["bufferView"]))) as im:
        # 200 -> 128 (256 would upsize); 120 -> 64, the power of two nearest 128 * 120 / 200
        assert im.size == (128, 64)


def test_power_of_two_can_be_off():
    img = Image.fromarray(_gradient(300, 200))
    src = _doc_with([(_encode(img, "PNG"), "image/png")])
    out, _ = run(src, TextureResize(max_px=2048, power_of_two=False))
    assert write_glb(out) == write_glb(Document(src.json, src.bin, src.source))


def test_a_bomb_is_refused_naming_the_image():
    ihdr = struct.pack(">IIBBBBB", 50000, 50000, 8, 2, 0, 0, 0)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body)))

    bomb = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(b"\0" * 1024)) + chunk(b"IEND", b""))
    small = _encode(Image.fromarray(_gradient(64, 64)), "PNG")
    src = _doc_with([(small, "image/png"), (bomb, "image/png")])
    with pytest.raises(GltfInvalid) as err:
        run(src, TextureResize(max_px=1024))
    assert err.value.code == "image_too_large"
    assert "generated.glb#/images/1" in err.value.message


def test_corpus_fox_validates():
    src = load_asset(corpus_file("Fox/Fox.glb"))  # one 1024 px PNG of flat colours
    out, _ = run(src, TextureResize(max_px=256))
    image = out.json["images"][0]
    with Image.open(io.BytesIO(out.buffer_view_bytes(image["bufferView"]))) as im:
        # 1/16 of the GPU memory (the PNG's bytes may grow a little: resampling smooths
        # the flat colours' edges, which PNG compresses less well)
        assert im.size == (256, 256)
    assert out.json["animations"] == src.json["animations"]
    assert out.json["skins"] == src.json["skins"]
    require(node_validator_available(), "node + npm gltf-validator")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "fox.glb"
        path.write_bytes(write_glb(out))
        assert validate_file(path).errors == 0


def test_an_intermediate_resize_keeps_the_pixels_and_is_cached(monkeypatch):
    # Before an encoder, a resized PNG is stored fast (the encoder re-encodes it anyway):
    # the same pixels as the optimised one; a budget's next run finds it in the cache.
    from tourserver.pipeline.textures import resize as resize_module

    rng = np.random.default_rng(3)
    img = Image.fromarray(rng.integers(0, 256, (600, 600, 3), dtype=np.uint8))
    src = _doc_with([(_encode(img, "PNG"), "image/png")])
    final, _ = run(src, TextureResize(max_px=256))
    cache: dict = {}
    fast, _ = run(src, TextureResize(max_px=256, intermediate=True, cache=cache))

    def pixels(doc):
        data = doc.buffer_view_bytes(doc.json["images"][0]["bufferView"])
        return rgba_pixels(Image.open(io.BytesIO(data)))
    assert np.array_equal(pixels(final), pixels(fast))
    assert pixels(fast).shape[:2] == (256, 256)
    calls = []
    real = resize_module.resize_image
    monkeypatch.setattr(resize_module, "resize_image",
                        lambda *a, **k: calls.append(a) or real(*a, **k))
    again, _ = run(src, TextureResize(max_px=256, intermediate=True, cache=cache))
    assert calls == [] and again.bin == fast.bin
    run(src, TextureResize(max_px=128, intermediate=True, cache=cache))  # another size
    assert len(calls) == 1


def test_limits_shrink_only_the_images_they_name():
    img = Image.fromarray(_gradient(512, 512))
    src = _doc_with([(_encode(img, "PNG"), "image/png"), (_encode(img, "PNG"), "image/png")])
    out, ctx = run(src, TextureResize(max_px=512, limits=((1, 128),)))
    sizes = [Image.open(io.BytesIO(out.buffer_view_bytes(im["bufferView"]))).size
             for im in out.json["images"]]
    assert sizes == [(512, 512), (128, 128)]
    assert ctx.facts["texture_resize.image.0.px"] == 512
    assert ctx.facts["texture_resize.image.1.px"] == 128
    assert ctx.facts["texture_resize.images_total"] == 2


def test_an_intermediate_jpeg_loses_next_to_nothing():
    # Before an encoder a resized JPEG stays a JPEG, at full chroma and quality 100: the
    # encoder's rule is then held against (nearly) the resized pixels themselves.
    rng = np.random.default_rng(4)
    noisy = np.clip(_gradient(600, 600).astype(np.int16)
                    + rng.normal(0, 12, (600, 600, 3)), 0, 255).astype(np.uint8)
    src = _doc_with([(_encode(Image.fromarray(noisy), "JPEG"), "image/jpeg")])
    exact = np.asarray(Image.open(io.BytesIO(src.buffer_view_bytes(0))).convert("RGB")
                       .resize((256, 256), Image.Resampling.BOX))

    def decoded(doc):
        image = doc.json["images"][0]
        assert image["mimeType"] == "image/jpeg"
        return np.asarray(Image.open(io.BytesIO(doc.buffer_view_bytes(image["bufferView"])))
                          .convert("RGB"))
    final, _ = run(src, TextureResize(max_px=256))
    fast, _ = run(src, TextureResize(max_px=256, intermediate=True))
    assert psnr(decoded(fast), exact) >= 45 > psnr(decoded(final), exact) + 3
