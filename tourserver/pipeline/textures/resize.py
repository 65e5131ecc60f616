"""Downscale embedded PNG/JPEG/WebP textures to a maximum edge, snapped to powers of two.

Phones sample, mipmap and (with KTX2) block-compress power-of-two textures best, and every
preset has a largest texture edge. Images are decoded under our pixel cap
(`ingest.images.decode_image`); a texture is only ever made smaller, never larger, and keeps
its format: a palette or greyscale PNG stays so, a JPEG stays a JPEG, a WebP stays a
(lossless) WebP. KTX2 images are left as they are: GPU block formats cannot be resampled
without transcoding (re-encoding is `texture_encode`'s job).

`limits`: (image index, largest edge) pairs under `max_px` for some images only; budget
fitting halves the images that weigh most first (`pipeline.optimize`). Facts: `images`
resized, `images_total` (all images, resized or not), `image.{i}.px` each resizable image's
longest edge after the step.

`intermediate=True` (the optimiser sets it when `texture_encode` follows): a resized JPEG
is kept at quality 100, full chroma, since the encoder re-encodes it and holds its rule
against these pixels. PNG and WebP are stored optimised either way: the encoder keeps an
image whose new encoding is not smaller, so a fast, larger intermediate would let larger
encodings through. `cache` keeps results by content across one optimisation's runs (a
budget's second run resizes the same images again).
"""

from __future__ import annotations

import copy
import hashlib
import io
from dataclasses import dataclass, field

from PIL import Image

from tourserver.gltf.buffers import repack
from tourserver.gltf.document import Document
from tourserver.ingest.images import MAX_DECODE_PIXELS, decode_image, image_size
from tourserver.pipeline.base import Context

__all__ = ["MAX_DECODE_PIXELS", "TextureResize", "resize_image", "target_size"]

RESIZABLE = ("image/png", "image/jpeg", "image/webp")
JPEG_QUALITY = 90  # resizing is not the place to lose quality; texture_encode tunes it
# Before an encoder, a resized JPEG stays a JPEG (the encoder treats photographs as such)
# but loses next to nothing: full chroma at quality 100. At 90 (4:2:0), noisy_photo's stone
# texture, re-encoded to SSIMULACRA2 70 against the resized image, scored 35.8 against its
# source; at 100 (4:4:4) 39.0.
INTERMEDIATE_JPEG_QUALITY = 100


@dataclass(frozen=True)
class TextureResize:
    max_px: int = 2048  # the largest edge allowed (the phone preset's limit)
    power_of_two: bool = True  # snap each edge to a power of two (never upwards)
    intermediate: bool = False  # an encoder re-encodes every image next (see above)
    limits: tuple[tuple[int, int], ...] = ()  # (image index, largest edge) below max_px
    name: str = "texture-resize"
    # Resized images by (source hash, MIME type, settings): a budget's next run resizes
    # the same images again (`pipeline.optimize`). None: no cache.
    cache: dict[tuple, bytes | None] | None = field(default=None, compare=False, repr=False)

    def __call__(self, doc: Document, ctx: Context) -> Document:
        new_json = copy.deepcopy(doc.json)
        payloads: dict[int, bytes] = {}
        resized = 0
        limits = dict(self.limits)
        for i, image in enumerate(new_json.get("images", [])):
            view = image.get("bufferView")
            mime = image.get("mimeType")
            if view is None or mime not in RESIZABLE:
                continue
            data = doc.buffer_view_bytes(view)
            where = f"{doc.source}#/images/{i}"
            max_px = min(self.max_px, limits.get(i, self.max_px))
            out = self._resized(data, mime, max_px, where)
            if out is not None:
                payloads[view] = out
                resized += 1
            ctx.facts[f"texture_resize.image.{i}.px"] = float(max(image_size(
                out if out is not None else data, where)))
        ctx.add("texture_resize.images", resized)
        ctx.facts["texture_resize.images_total"] = float(len(new_json.get("images", [])))
        if not payloads:
            return Document(new_json, doc.bin, doc.source)
        return repack(doc, new_json, payloads)

    def _resized(self, data: bytes, mime: str, max_px: int, where: str) -> bytes | None:
        key = (hashlib.sha256(data).digest(), mime, max_px, self.power_of_two,
               self.intermediate)
        if self.cache is not None and key in self.cache:
            return self.cache[key]
        out = resize_image(data, mime, max_px, where, power_of_two=self.power_of_two,
                           intermediate=self.intermediate)
        if self.cache is not None:
            self.cache[key] = out
        return out


def _floor_pow2(n: int) -> int:
    return 1 << (max(1, n).bit_length() - 1)


def _nearest_pow2(x: float, cap: int) -> int:
    """The power of two nearest to x (in ratio; ties go down), but never above cap."""
    low = _floor_pow2(max(1, int(x)))
    high = low * 2
    best = high if high / x < x / low else low
    return best if best <= cap else _floor_pow2(cap)


def target_size(width: int, height: int, max_px: int, power_of_two: bool) -> tuple[int, int]:
    """The size an image of width x height is resized to (never larger in either edge)."""
    scale = min(1.0, max_px / max(width, height))
    w, h = max(1.0, width * scale), max(1.0, height * scale)
    if not power_of_two:
        return max(1, round(w)), max(1, round(h))
    cap_w, cap_h = min(width, max_px), min(height, max_px)
    long_is_w = width >= height
    first = _nearest_pow2(w if long_is_w else h, cap_w if long_is_w else cap_h)
    # Keep the aspect exactly when it is itself a power-of-two ratio (1:1, 2:1, ...);
    # otherwise snap the short edge on its own (UVs are normalised, so this is harmless).
    ratio = (height / width) if long_is_w else (width / height)
    second = _nearest_pow2(max(1.0, first * ratio), cap_h if long_is_w else cap_w)
    return (first, second) if long_is_w else (second, first)


def resize_image(data: bytes, mime: str, max_px: int, where: str,
                 power_of_two: bool = False, intermediate: bool = False) -> bytes | None:
    """Return the re-encoded image, or None if it already fits. `intermediate`: an
    encoder comes next (a JPEG keeps nearly every value)."""
    w, h = image_size(data, where)  # the header says whether it fits: no decode for that
    size = target_size(w, h, max_px, power_of_two)
    if size == (w, h) and w * h <= MAX_DECODE_PIXELS:
        return None
    with decode_image(data, where) as img:  # checks the header against our pixel cap
        out = io.BytesIO()
        mode = img.mode
        # Resample in a full-colour mode, then return to the source's mode so a palette
        # or greyscale PNG does not come back as (larger) RGBA.
        work = img.convert("RGBA" if mode in ("P", "PA", "LA", "RGBA") else "RGB")
        # Area averaging (as mipmaps are made): Lanczos rings at sharp edges, and the
        # ringing is noise the encoder must then keep to hold the PSNR floor (an alpha-masked
        # skyline came out 10x larger as WebP after a Lanczos downscale).
        resized = work.resize(size, Image.Resampling.BOX)
        if mime == "image/png":
            if mode == "P":
                resized = resized.quantize(256)
            elif mode in ("L", "LA"):
                resized = resized.convert(mode)
            # Optimised even before an encoder: an encoding that is not smaller than the
            # image it is given is not kept, so a fast, larger PNG here let larger WebPs
            # through (the demo's skyline at 512 px: its low tier came out 8 % heavier).
            resized.save(out, format="PNG", optimize=True)
        elif mime == "image/webp":
            # Lossless: the one lossy step is texture_encode's, at its quality target.
            if "A" not in mode:
                resized = resized.convert("RGB")
            resized.save(out, format="WEBP", lossless=True, method=4)
        else:
            if mode == "L":
                resized = resized.convert("L")  # greyscale JPEG stays one channel
            else:
                resized = resized.convert("RGB")
            if intermediate:
                resized.save(out, format="JPEG", quality=INTERMEDIATE_JPEG_QUALITY,
                             subsampling=0)
            else:
                resized.save(out, format="JPEG", quality=JPEG_QUALITY, optimize=True)
        return out.getvalue()
