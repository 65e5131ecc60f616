"""JPEG and PNG: Pillow's encoders, and MozJPEG's lossless re-coding of a JPEG (progressive,
optimised Huffman tables: the same DCT coefficients, so the same pixels)."""

from __future__ import annotations

import io

from PIL import Image

try:  # MozJPEG's lossless re-coding (progressive, optimised Huffman tables)
    import mozjpeg_lossless_optimization as mozjpeg
except (ImportError, OSError):  # without it JPEGs are only ever re-encoded lossily
    mozjpeg = None


def jpeg_lossless_recode(data: bytes) -> bytes | None:
    """The JPEG re-coded by MozJPEG without touching its DCT coefficients (progressive,
    optimised Huffman tables; the ICC profile kept): identical pixels. None when MozJPEG is
    missing or refuses the file."""
    if mozjpeg is None:
        return None
    try:
        return mozjpeg.optimize(data, copy=mozjpeg.COPY_MARKERS.ICC)
    except (ValueError, RuntimeError):
        return None


def jpeg_bytes(img: Image.Image, quality: int, grey: bool) -> bytes:
    out = io.BytesIO()
    # 4:4:4 above quality 90 (where chroma subsampling would dominate the error), Pillow's
    # 4:2:0 below; optimize gives smaller Huffman tables at no quality cost.
    img.convert("L" if grey else "RGB").save(out, format="JPEG", quality=quality,
                                             optimize=True,
                                             subsampling=0 if quality >= 90 else 2)
    return out.getvalue()


def png_bytes(img: Image.Image, alpha: bool) -> bytes:
    out = io.BytesIO()
    work = img
    if img.mode not in ("1", "L", "LA", "P", "RGB", "RGBA"):
        work = img.convert("RGBA" if alpha else "RGB")
    elif img.mode == "RGBA" and not alpha:
        work = img.convert("RGB")  # an opaque alpha channel is a quarter of the bytes
    work.save(out, format="PNG", optimize=True)
    return out.getvalue()
