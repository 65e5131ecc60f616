"""The WebP container (RIFF): read its chunks, and put a lossy frame and a separately
coded alpha plane together into one extended file.

Why: libwebp codes alpha losslessly and the same way whatever the colour quality, yet
re-codes it inside every lossy encode; on FlightHelmet's lens texture that is 0.2 s of
a 0.22 s encode. `webp_encode` codes the alpha plane once and joins it to each colour-only
encode its quality search makes: the same ALPH chunk and VP8 frame a full encode writes,
in the layout the WebP container specification gives (VP8X, ALPH, VP8).
"""

from __future__ import annotations

import struct

_VP8X_ALPHA = 0x10
_MAX_CANVAS = 1 << 24


def riff_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """The (fourcc, payload) chunks of a WebP file, in order. ValueError if it is not one."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        raise ValueError("not a WebP file")
    end = min(len(data), 8 + struct.unpack_from("<I", data, 4)[0])
    chunks, at = [], 12
    while at + 8 <= end:
        fourcc, size = data[at:at + 4], struct.unpack_from("<I", data, at + 4)[0]
        if at + 8 + size > end:
            raise ValueError(f"WebP chunk {fourcc!r} runs past the end of the file")
        chunks.append((fourcc, data[at + 8:at + 8 + size]))
        at += 8 + size + (size & 1)
    return chunks


def with_alpha(colour: bytes, alpha: bytes, width: int, height: int) -> bytes:
    """A WebP file of the lossy frame in `colour` (a simple lossy WebP file) and `alpha`
    (an ALPH chunk's payload, as libwebp writes it for an image of this size)."""
    if not (0 < width <= _MAX_CANVAS and 0 < height <= _MAX_CANVAS):
        raise ValueError(f"canvas {width} x {height} is out of range")
    frames = [payload for fourcc, payload in riff_chunks(colour) if fourcc == b"VP8 "]
    if len(frames) != 1:
        raise ValueError("the colour file has no single lossy (VP8) frame")
    header = bytes([_VP8X_ALPHA, 0, 0, 0]) + (width - 1).to_bytes(3, "little") + (
        height - 1).to_bytes(3, "little")
    body = b"WEBP" + _chunk(b"VP8X", header) + _chunk(b"ALPH", alpha) + _chunk(
        b"VP8 ", frames[0])
    return b"RIFF" + struct.pack("<I", len(body)) + body


def _chunk(fourcc: bytes, payload: bytes) -> bytes:
    return fourcc + struct.pack("<I", len(payload)) + payload + b"\0" * (len(payload) & 1)
