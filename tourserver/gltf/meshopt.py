"""Decoding EXT_meshopt_compression: our own optimised files, and creators' files made by
gltfpack or glTF-Transform, read back into plain buffers.

Decoded sizes come from the file's JSON, so they are checked against a cap before anything
is allocated (the vertex codec cannot expand data more than about 64x, so a larger claim is
a lie).
"""

from __future__ import annotations

import copy

import meshoptimizer
import numpy as np

from tourserver.gltf.document import ChunkWriter, Document, GltfInvalid

EXTENSION = "EXT_meshopt_compression"
MAX_EXPANSION = 64
MAX_DECODED_BYTES = 1024 * 1024 * 1024


def decode_meshopt(doc: Document) -> Document:
    """Decompress every EXT_meshopt_compression view back into one plain buffer 0.

    Views keep their order and contents, so the result equals the document before
    compression view for view (used by inspect, validation and the round-trip tests)."""
    doc_json = copy.deepcopy(doc.json)
    views = doc_json.get("bufferViews", [])
    if not any(EXTENSION in v.get("extensions", {}) for v in views):
        return Document(doc_json, doc.bin, doc.source)
    out = ChunkWriter()
    budget = MAX_DECODED_BYTES
    for i, view in enumerate(views):
        ext = view.get("extensions", {}).pop(EXTENSION, None)
        if ext is None:
            data = doc.buffer_view_bytes(i)
        else:
            data = _decode_view(doc, i, ext, int(view["byteLength"]), budget)
            budget -= len(data)
            if not view["extensions"]:
                view.pop("extensions")
        view.update({"buffer": 0, "byteOffset": out.append(data), "byteLength": len(data)})
    bin_out = out.bytes()
    doc_json["buffers"] = [{"byteLength": len(bin_out)}]
    for key in ("extensionsUsed", "extensionsRequired"):
        if EXTENSION in doc_json.get(key, []):
            doc_json[key].remove(EXTENSION)
            if not doc_json[key]:
                doc_json.pop(key)
    return Document(doc_json, bin_out, doc.source)


def _decode_view(doc: Document, index: int, ext: dict, length: int, budget: int) -> bytes:
    where = f"/bufferViews/{index}/extensions/{EXTENSION}"
    start = int(ext.get("byteOffset", 0))
    end = start + int(ext["byteLength"])
    count, stride, mode = int(ext["count"]), int(ext["byteStride"]), ext["mode"]
    if ext.get("buffer", 0) != 0 or end > len(doc.bin) or count * stride != length:
        raise GltfInvalid(f"{doc.source}: compressed view {index} is out of range or its "
                          "count * byteStride does not match", code="meshopt_invalid",
                          field=where)
    if length > min(budget, max(MAX_EXPANSION * (end - start), 1 << 20)):
        raise GltfInvalid(f"{doc.source}: compressed view {index} claims {length} bytes from "
                          f"{end - start}: more than the codec can produce",
                          code="meshopt_invalid", field=where)
    try:
        return decode_buffer(doc.bin[start:end], mode, count, stride, ext.get("filter", "NONE"))
    except (RuntimeError, ValueError) as exc:
        raise GltfInvalid(f"{doc.source}: compressed view {index} does not decode: {exc}",
                          code="meshopt_invalid", field=where) from None


def decode_buffer(encoded: bytes, mode: str, count: int, stride: int, flt: str = "NONE") -> bytes:
    if mode == "ATTRIBUTES":
        out = meshoptimizer.decode_vertex_buffer(count, stride, encoded)
        out = np.ascontiguousarray(out).view(np.uint8).reshape(count, stride)
        if flt == "OCTAHEDRAL":
            out = meshoptimizer.decode_filter_oct(out, count, stride)
        elif flt == "QUATERNION":
            out = meshoptimizer.decode_filter_quat(out, count, stride)
        elif flt == "EXPONENTIAL":
            out = meshoptimizer.decode_filter_exp(out, count, stride)
        elif flt != "NONE":
            raise ValueError(f"unknown filter {flt!r}")
        return np.ascontiguousarray(out).tobytes()
    if mode in ("TRIANGLES", "INDICES") and stride in (2, 4):
        # Decode to 32-bit (the bindings' output array is uint32) and narrow after.
        decode = (meshoptimizer.decode_index_buffer if mode == "TRIANGLES"
                  else meshoptimizer.decode_index_sequence)
        indices = decode(count, 4, encoded)
        return indices.astype(np.uint16 if stride == 2 else np.uint32).tobytes()
    raise ValueError(f"unknown mode {mode!r} with byteStride {stride}")
