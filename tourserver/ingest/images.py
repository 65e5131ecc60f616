"""Images: facts from headers only, guarded decoding, and PSNR.

Embedded images are untrusted bytes. `image_size` reads only a header. `decode_image` checks
the size a header claims against OUR pixel cap before it decodes anything (Pillow's own
decompression-bomb limit is ~179 MP before it refuses, far too high for a phone pipeline),
accepts only PNG, JPEG and WebP, and turns every Pillow failure into one stable error code.
KTX2 is allowed in assets but never decoded here: it holds GPU block-compressed
(Basis Universal) data that only a Basis transcoder can expand, so callers leave it as it is.
"""

from __future__ import annotations

import io
import struct
import warnings

import numpy as np

# The three plugins are registered up front: Pillow otherwise imports all of its ~40
# format plugins (~20 ms) the first time it meets a format its pre-init set lacks (WebP).
from PIL import (  # noqa: F401
    Image,
    JpegImagePlugin,
    PngImagePlugin,
    UnidentifiedImageError,
    WebPImagePlugin,
)

from tourserver.gltf.document import GltfInvalid

KTX2_MAGIC = b"\xabKTX 20\xbb\r\n\x1a\n"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# Our decode cap: 8192 x 8192 (67 MP, 256 MiB as RGBA8). Anything larger is refused unread.
MAX_DECODE_PIXELS = 8192 * 8192
# Pillow format names we decode, with their MIME types.
DECODABLE = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}
# Signatures of formats we refuse, only to name them in the message.
_OTHER_FORMATS = ((b"GIF87a", "GIF"), (b"GIF89a", "GIF"), (b"BM", "BMP"), (b"II*\0", "TIFF"),
                  (b"MM\0*", "TIFF"), (b"\0\0\1\0", "ICO"), (b"8BPS", "PSD"), (b"qoif", "QOI"))


def image_size(data: bytes, where: str = "image") -> tuple[int, int]:
    """(width, height) of a PNG, JPEG, WebP or KTX2 image, read from its header."""
    if data.startswith(KTX2_MAGIC):
        if len(data) < 28:
            raise GltfInvalid(f"{where}: KTX2 header is cut off", code="image_invalid")
        width, height = struct.unpack_from("<II", data, 20)
        return width, height
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:  # lazy: reads the header only
                return img.size
    except Image.DecompressionBombError:
        # Pillow refuses absurd sizes before saying what they are; a PNG says it in IHDR.
        if data.startswith(PNG_MAGIC) and len(data) >= 24 and data[12:16] == b"IHDR":
            width, height = struct.unpack_from(">II", data, 16)
            return width, height
        raise GltfInvalid(f"{where}: image is over the decode limit of {MAX_DECODE_PIXELS} "
                          "pixels", code="image_too_large") from None
    except (OSError, ValueError, SyntaxError, EOFError, struct.error) as exc:
        raise GltfInvalid(f"{where}: unreadable image: {exc}", code="image_invalid") from None


def _format_name(data: bytes) -> str:
    for magic, name in _OTHER_FORMATS:
        if data.startswith(magic):
            return name
    return "an unknown format"


def decode_image(data: bytes, where: str = "image",
                 max_pixels: int = MAX_DECODE_PIXELS) -> Image.Image:
    """Decode a PNG, JPEG or WebP image after checking its header against `max_pixels`.

    Raises GltfInvalid with code `image_format` (not PNG/JPEG/WebP; KTX2 included: it is not
    decoded here), `image_too_large` (the header claims more than max_pixels; nothing is
    decoded) or `image_invalid` (truncated or corrupt data). `where` names the image."""
    if data.startswith(KTX2_MAGIC):
        raise GltfInvalid(f"{where}: KTX2 (Basis Universal) images are not decoded here; "
                          "they are kept as they are", code="image_format")
    try:
        with warnings.catch_warnings():
            # Pillow warns above its own limit; we apply ours below instead.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data), formats=tuple(DECODABLE))
    except Image.DecompressionBombError as exc:
        # Pillow refuses (from the header alone) sizes far above ours: same answer.
        raise GltfInvalid(f"{where}: image is over the decode limit of {max_pixels} pixels "
                          f"({exc})", code="image_too_large") from None
    except UnidentifiedImageError:
        raise GltfInvalid(f"{where}: {_format_name(data)} image; only PNG, JPEG and WebP can "
                          "be decoded (KTX2 is kept as it is)", code="image_format") from None
    except (OSError, ValueError, SyntaxError, EOFError, struct.error) as exc:
        raise GltfInvalid(f"{where}: unreadable image: {exc}", code="image_invalid") from None
    width, height = img.size
    if width <= 0 or height <= 0:
        img.close()
        raise GltfInvalid(f"{where}: image claims {width}x{height} pixels",
                          code="image_invalid")
    if width * height > max_pixels:
        img.close()
        raise GltfInvalid(f"{where}: {width}x{height} image is over the decode limit of "
                          f"{max_pixels} pixels", code="image_too_large")
    frames = getattr(img, "n_frames", 1)
    if frames > 1:
        img.close()  # an animated PNG/WebP is not a texture (glTF samples one frame)
        raise GltfInvalid(f"{where}: animated image ({frames} frames)",
                          code="image_format")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img.load()
    except (OSError, ValueError, SyntaxError, EOFError, struct.error, MemoryError) as exc:
        img.close()
        raise GltfInvalid(f"{where}: unreadable image: {exc}", code="image_invalid") from None
    return img


def rgba_pixels(img: Image.Image) -> np.ndarray:
    """An 8-bit (height, width, 4) array of the image: the common ground for comparisons."""
    return np.asarray(img.convert("RGBA"), dtype=np.uint8)


_PSNR_ROWS = 32768  # 32768 * 255^2 < 2^31


def psnr_channels(a: np.ndarray | Image.Image, b: np.ndarray | Image.Image) -> np.ndarray:
    """PSNR in dB of each channel (alpha included) of two same-shaped 8-bit images;
    inf where a channel is identical."""
    x = np.asarray(a, dtype=np.uint8)
    y = np.asarray(b, dtype=np.uint8)
    if x.shape != y.shape:
        raise ValueError(f"PSNR needs images of one shape, got {x.shape} and {y.shape}")
    if x.ndim == 2:
        x, y = x[..., None], y[..., None]
    channels = x.shape[-1]
    x, y = x.reshape(-1, channels), y.reshape(-1, channels)
    # Exact integer sums, 20x faster than float64 on a 2048 px texture (the quality search
    # measures every encode): int32 squares summed in chunks that cannot overflow int32.
    total = np.zeros(channels, dtype=np.int64)
    for start in range(0, len(x), _PSNR_ROWS):
        diff = np.subtract(x[start:start + _PSNR_ROWS], y[start:start + _PSNR_ROWS],
                           dtype=np.int32)
        total += np.einsum("ij,ij->j", diff, diff)
    mse = total / max(len(x), 1)
    with np.errstate(divide="ignore"):
        return np.where(mse == 0, np.inf, 10.0 * np.log10(255.0**2 / np.maximum(mse, 1e-300)))


def psnr(a: np.ndarray | Image.Image, b: np.ndarray | Image.Image) -> float:
    """The worst channel's PSNR in dB (alpha included; inf when identical): a texture is only
    as good as its worst channel, since data textures pack unrelated values per channel."""
    return float(psnr_channels(a, b).min())
