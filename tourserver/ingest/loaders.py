"""Load any supported asset into one self-contained `Document`.

.glb and .gltf may reference external buffers and images: they are read only from the
asset's own folder (never `..`, absolute paths or other schemes), `data:` URIs are capped,
every image must be PNG, JPEG, WebP or KTX2 by its bytes, and sizes are checked against the
real files before anything is allocated. .obj, .ply and .stl are converted with trimesh.
The result embeds everything in one binary chunk, so the rest of the pipeline never does I/O.
"""

from __future__ import annotations

import base64
import binascii
import json
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from tourserver.errors import TourError
from tourserver.gltf.document import (
    GLB_MAGIC,
    ChunkWriter,
    Document,
    GltfInvalid,
    check_structure,
    parse_glb,
)
from tourserver.gltf.meshopt import EXTENSION, decode_meshopt
from tourserver.ingest.resolver import resolve_inside

MESH_FORMATS = (".obj", ".ply", ".stl")
GLTF_FORMATS = (".glb", ".gltf")
IMAGE_MAGIC = {
    "image/png": b"\x89PNG\r\n\x1a\n",
    "image/jpeg": b"\xff\xd8\xff",
    "image/ktx2": b"\xabKTX 20\xbb\r\n\x1a\n",
}


@dataclass(frozen=True)
class LoadLimits:
    max_file_bytes: int = 512 * 1024 * 1024
    max_total_bytes: int = 1024 * 1024 * 1024  # all buffers and images together
    max_data_uri_bytes: int = 16 * 1024 * 1024


def sniff_image(data: bytes) -> str | None:
    """The MIME type of an allowed image format, from its bytes; None if not allowed."""
    for mime, magic in IMAGE_MAGIC.items():
        if data.startswith(magic):
            return mime
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def load_asset(path: Path, limits: LoadLimits | None = None) -> Document:
    """Read .glb, .gltf, .obj, .ply or .stl into a self-contained Document."""
    limits = limits or LoadLimits()
    suffix = path.suffix.lower()
    if not path.is_file():
        raise GltfInvalid(f"{path}: no such file", code="file_missing")
    size = path.stat().st_size
    if size > limits.max_file_bytes:
        raise GltfInvalid(f"{path}: {size} bytes is over the {limits.max_file_bytes}-byte limit",
                          code="gltf_too_large")
    if suffix in MESH_FORMATS:
        return _load_mesh(path)
    if suffix not in GLTF_FORMATS:
        raise GltfInvalid(f"{path}: unsupported file type {suffix or '(none)'}; use "
                          f"{', '.join(GLTF_FORMATS + MESH_FORMATS)}", code="unsupported_type")
    data = path.read_bytes()
    if suffix == ".glb" or data[:4] == GLB_MAGIC.to_bytes(4, "little"):
        doc = parse_glb(data, str(path), allow_uris=True)
        if EXTENSION in doc.json.get("extensionsUsed", []):
            # Compressed views live in buffer 0 and decode into it: do that first, so the
            # rest of the pipeline sees plain data.
            if any("uri" in b for b in doc.json.get("buffers", [])):
                raise GltfInvalid(f"{path}: EXT_meshopt_compression with external buffers is "
                                  "not supported; pack it as a self-contained GLB",
                                  code="gltf_unsupported")
            doc = decode_meshopt(doc)
        return _internalize(doc.json, doc.bin, path.parent, str(path), limits)
    try:
        doc_json = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise GltfInvalid(f"{path}: not valid JSON: {exc}", code="gltf_json") from None
    if not isinstance(doc_json, dict) or "asset" not in doc_json:
        raise GltfInvalid(f"{path}: no 'asset' object", code="gltf_json")
    check_structure(doc_json, str(path))
    return _internalize(doc_json, b"", path.parent, str(path), limits)


def _read_uri(uri: str, folder: Path, source: str, where: str, limits: LoadLimits,
              budget: list[int]) -> bytes:
    if uri.startswith("data:"):
        header, _, payload = uri.partition(",")
        if not header.endswith(";base64"):
            raise GltfInvalid(f"{source}#{where}: data URI must be base64", code="gltf_data_uri",
                              field=where)
        if len(payload) * 3 // 4 > limits.max_data_uri_bytes:
            raise GltfInvalid(f"{source}#{where}: data URI is over the "
                              f"{limits.max_data_uri_bytes}-byte limit",
                              code="gltf_data_uri_too_large", field=where)
        try:
            data = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            raise GltfInvalid(f"{source}#{where}: data URI is not valid base64",
                              code="gltf_data_uri", field=where) from None
    else:
        parsed = urllib.parse.urlsplit(uri)
        if parsed.scheme or parsed.netloc:
            raise GltfInvalid(f"{source}#{where}: only relative paths and data: URIs are "
                              f"allowed, not {uri[:80]!r}", code="gltf_external_uri", field=where)
        try:
            target = resolve_inside(folder, urllib.parse.unquote(parsed.path), where)
        except TourError as exc:
            raise GltfInvalid(f"{source}#{where}: {exc.message}", code="gltf_external_uri",
                              field=where) from None
        if not target.is_file():
            raise GltfInvalid(f"{source}#{where}: {uri[:120]} not found beside the asset",
                              code="file_missing", field=where)
        size = target.stat().st_size
        if size > budget[0]:
            raise GltfInvalid(f"{source}#{where}: external files exceed the "
                              f"{limits.max_total_bytes}-byte total", code="gltf_too_large",
                              field=where)
        data = target.read_bytes()
    budget[0] -= len(data)
    if budget[0] < 0:
        raise GltfInvalid(f"{source}#{where}: resources exceed the {limits.max_total_bytes}-byte "
                          "total", code="gltf_too_large", field=where)
    return data


def _internalize(doc_json: dict, glb_bin: bytes, folder: Path, source: str,
                 limits: LoadLimits) -> Document:
    """Gather every buffer and image into one binary chunk; views are re-pointed."""
    budget = [limits.max_total_bytes - len(glb_bin)]
    out = ChunkWriter()
    starts: list[int] = []
    for i, buf in enumerate(doc_json.get("buffers", [])):
        where = f"/buffers/{i}"
        if "uri" in buf:
            data = _read_uri(buf["uri"], folder, source, f"{where}/uri", limits, budget)
        elif i == 0:
            data = glb_bin
        else:
            raise GltfInvalid(f"{source}#{where}: buffer has no uri and is not the GLB chunk",
                              code="gltf_schema", field=where)
        if len(data) < int(buf["byteLength"]):
            raise GltfInvalid(f"{source}#{where}: byteLength {buf['byteLength']} but the data "
                              f"has {len(data)} bytes", code="glb_truncated", field=where)
        starts.append(out.append(data[: int(buf["byteLength"])], align=8))
    views = doc_json.get("bufferViews", [])
    for i, view in enumerate(views):
        buf_len = int(doc_json["buffers"][view["buffer"]]["byteLength"])
        if int(view.get("byteOffset", 0)) + int(view["byteLength"]) > buf_len:
            raise GltfInvalid(f"{source}#/bufferViews/{i}: ends past its buffer",
                              code="accessor_out_of_range", field=f"/bufferViews/{i}")
        view["byteOffset"] = starts[view["buffer"]] + int(view.get("byteOffset", 0))
        view["buffer"] = 0
    doc = Document(doc_json, out.bytes(), source)
    for i, image in enumerate(doc_json.get("images", [])):
        where = f"/images/{i}"
        if "uri" in image:
            data = _read_uri(image.pop("uri"), folder, source, f"{where}/uri", limits, budget)
            views.append({"buffer": 0, "byteOffset": out.append(data, align=8),
                          "byteLength": len(data)})
            image["bufferView"] = len(views) - 1
        else:
            data = doc.buffer_view_bytes(image["bufferView"]) if "bufferView" in image else b""
        mime = sniff_image(data)
        if mime is None:
            raise GltfInvalid(f"{source}#{where}: not a PNG, JPEG, WebP or KTX2 image",
                              code="image_format", field=where)
        image["mimeType"] = mime
    if views:
        doc_json["bufferViews"] = views
    total = out.bytes()
    if doc_json.get("buffers") or total:
        doc_json["buffers"] = [{"byteLength": len(total)}] if total else []
        if not total:
            doc_json.pop("buffers")
    return Document(doc_json, total, source)


def _load_mesh(path: Path) -> Document:
    """OBJ/PLY/STL through trimesh, exported as GLB and read back through our checks."""
    import trimesh  # imported here: only mesh formats need it

    try:
        loaded = trimesh.load(str(path), force="scene", process=False)
        glb = loaded.export(file_obj=None, file_type="glb")  # no file: return the bytes
    except Exception as exc:  # trimesh raises many types; name the file and stop
        raise GltfInvalid(f"{path}: could not read as {path.suffix[1:].upper()}: "
                          f"{type(exc).__name__}: {str(exc)[:200]}", code="mesh_invalid") from None
    if not isinstance(glb, bytes | bytearray) or not glb:
        raise GltfInvalid(f"{path}: no geometry found", code="mesh_invalid")
    return parse_glb(bytes(glb), str(path))


__all__ = ["load_asset", "LoadLimits", "sniff_image"]
