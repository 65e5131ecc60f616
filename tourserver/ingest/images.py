"""Image facts from headers only: never decode what we only need to measure."""

from __future__ import annotations

import io
import struct

from PIL import Image

from tourserver.ingest.gltf_io import GltfInvalid


def image_size(data: bytes, where: str = "image") -> tuple[int, int]:
    """(width, height) of a PNG, JPEG, WebP or KTX2 image, read from its header."""
    if data.startswith(b"\xabKTX 20\xbb\r\n\x1a\n"):
        if len(data) < 28:
            raise GltfInvalid(f"{where}: KTX2 header is cut off", code="image_invalid")
        width, height = struct.unpack_from("<II", data, 20)
        return width, height
    try:
        with Image.open(io.BytesIO(data)) as img:  # lazy: reads the header, decodes nothing
            return img.size
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise GltfInvalid(f"{where}: unreadable image: {exc}", code="image_invalid") from None
