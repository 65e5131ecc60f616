"""Downscale embedded PNG/JPEG textures to a maximum edge, keeping their format."""

from __future__ import annotations

import copy
import io
from dataclasses import dataclass

from PIL import Image

from tourserver.ingest.gltf_io import Document, GltfInvalid
from tourserver.pipeline.base import Context
from tourserver.pipeline.repack import repack

MAX_DECODE_PIXELS = 8192 * 8192  # our own cap, far below Pillow's default bomb limit


@dataclass(frozen=True)
class TextureResize:
    max_px: int = 1024
    name: str = "texture-resize"

    def __call__(self, doc: Document, ctx: Context) -> Document:
        new_json = copy.deepcopy(doc.json)
        payloads: dict[int, bytes] = {}
        for i, image in enumerate(new_json.get("images", [])):
            view = image.get("bufferView")
            mime = image.get("mimeType")
            if view is None or mime not in ("image/png", "image/jpeg"):
                continue
            data = doc.buffer_view_bytes(view)
            resized = resize_image(data, mime, self.max_px, f"{doc.source}#/images/{i}")
            if resized is not None:
                payloads[view] = resized
        return repack(doc, new_json, payloads)


def resize_image(data: bytes, mime: str, max_px: int, where: str) -> bytes | None:
    """Return the re-encoded image, or None if it already fits."""
    with Image.open(io.BytesIO(data)) as img:
        w, h = img.size
        if w * h > MAX_DECODE_PIXELS:
            raise GltfInvalid(f"{where}: {w}x{h} image is over the decode limit",
                              code="image_too_large")
        if max(w, h) <= max_px:
            return None
        scale = max_px / max(w, h)
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        out = io.BytesIO()
        mode = img.mode
        # Resample in a full-colour mode, then return to the source's mode so a palette
        # or greyscale PNG does not come back as (larger) RGBA.
        work = img.convert("RGBA" if mode in ("P", "PA", "LA", "RGBA") else "RGB")
        resized = work.resize(size, Image.Resampling.LANCZOS)
        if mime == "image/png":
            if mode == "P":
                resized = resized.quantize(256)
            elif mode in ("L", "LA"):
                resized = resized.convert(mode)
            resized.save(out, format="PNG", optimize=True)
        else:
            resized.convert("RGB").save(out, format="JPEG", quality=85, optimize=True)
        return out.getvalue()
