"""Read and write GLB files as a plain document: the glTF JSON plus one binary buffer.

Keeping the JSON as a dict (rather than a typed object model) means nothing a creator
wrote is lost on a round trip: unknown extensions and extras pass through untouched.
Every offset and length from the file is checked against the real sizes before use.
"""

from __future__ import annotations

import functools
import io
import json
import struct
from dataclasses import dataclass, field
from pathlib import Path

import jsonschema_rs
import numpy as np

from tourserver.errors import TourError

GLB_MAGIC = 0x46546C67  # "glTF"
CHUNK_JSON = 0x4E4F534A
CHUNK_BIN = 0x004E4942
MAX_GLB_BYTES = 512 * 1024 * 1024

COMPONENT_DTYPES = {5120: np.int8, 5121: np.uint8, 5122: np.int16, 5123: np.uint16,
                    5125: np.uint32, 5126: np.float32}
TYPE_SIZES = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT2": 4, "MAT3": 9, "MAT4": 16}
MODE_TRIANGLES = 4


class GltfInvalid(TourError):
    code = "gltf_invalid"


_INDEX = {"type": "integer", "minimum": 0}
_COUNT = {"type": "integer", "minimum": 0, "maximum": 2**31}
# The parts of the glTF 2.0 schema this reader relies on; the rest passes through untouched.
GLTF_STRUCTURE = {
    "type": "object",
    "required": ["asset"],
    "properties": {
        "asset": {"type": "object"},
        "scene": _INDEX,
        "scenes": {"type": "array", "items": {"type": "object", "properties": {
            "nodes": {"type": "array", "items": _INDEX}}}},
        "nodes": {"type": "array", "items": {"type": "object", "properties": {
            "children": {"type": "array", "items": _INDEX}, "mesh": _INDEX,
            "matrix": {"type": "array", "minItems": 16, "maxItems": 16,
                       "items": {"type": "number"}},
            "translation": {"type": "array", "minItems": 3, "maxItems": 3,
                            "items": {"type": "number"}},
            "rotation": {"type": "array", "minItems": 4, "maxItems": 4,
                         "items": {"type": "number"}},
            "scale": {"type": "array", "minItems": 3, "maxItems": 3,
                      "items": {"type": "number"}}}}},
        "meshes": {"type": "array", "items": {
            "type": "object", "required": ["primitives"], "properties": {
                "primitives": {"type": "array", "items": {
                    "type": "object", "required": ["attributes"], "properties": {
                        "attributes": {"type": "object", "additionalProperties": _INDEX},
                        "indices": _INDEX, "material": _INDEX,
                        "mode": {"type": "integer", "minimum": 0, "maximum": 6},
                        "targets": {"type": "array", "items": {
                            "type": "object", "additionalProperties": _INDEX}}}}}}}},
        "accessors": {"type": "array", "items": {
            "type": "object", "required": ["componentType", "count", "type"], "properties": {
                "bufferView": _INDEX, "byteOffset": _COUNT,
                "componentType": {"enum": list(COMPONENT_DTYPES)},
                "count": {"type": "integer", "minimum": 1, "maximum": 2**31},
                "type": {"enum": list(TYPE_SIZES)},
                "min": {"type": "array", "items": {"type": "number"}},
                "max": {"type": "array", "items": {"type": "number"}}}}},
        "bufferViews": {"type": "array", "items": {
            "type": "object", "required": ["buffer", "byteLength"], "properties": {
                "buffer": _INDEX, "byteOffset": _COUNT,
                "byteLength": {"type": "integer", "minimum": 1, "maximum": 2**32},
                "byteStride": {"type": "integer", "minimum": 4, "maximum": 252}}}},
        "buffers": {"type": "array", "items": {
            "type": "object", "required": ["byteLength"], "properties": {
                "byteLength": {"type": "integer", "minimum": 1}, "uri": {"type": "string"}}}},
        "images": {"type": "array", "items": {"type": "object", "properties": {
            "bufferView": _INDEX, "mimeType": {"type": "string"}, "uri": {"type": "string"}}}},
        "skins": {"type": "array", "items": {"type": "object", "properties": {
            "inverseBindMatrices": _INDEX}}},
        "animations": {"type": "array", "items": {"type": "object", "properties": {
            "samplers": {"type": "array", "items": {
                "type": "object", "required": ["input", "output"],
                "properties": {"input": _INDEX, "output": _INDEX}}}}}},
        "extensionsUsed": {"type": "array", "items": {"type": "string"}},
        "extensionsRequired": {"type": "array", "items": {"type": "string"}},
    },
}


class ChunkWriter:
    """A binary chunk built by appending blocks, each starting at a multiple of `align`
    (4 for vertex data, as glTF requires; 8 keeps doubles aligned), zero-padded between."""

    def __init__(self, start: bytes = b"") -> None:
        self.parts: list[bytes] = [start] if start else []
        self.size = len(start)

    def append(self, data: bytes, align: int = 4) -> int:
        """Add `data` at the next aligned offset; return that offset."""
        pad = (-self.size) % align
        if pad:
            self.parts.append(b"\0" * pad)
        offset = self.size + pad
        self.parts.append(data)
        self.size = offset + len(data)
        return offset

    def bytes(self) -> bytes:
        return b"".join(self.parts)


@functools.cache
def _structure_validator() -> jsonschema_rs.Draft202012Validator:
    return jsonschema_rs.Draft202012Validator(GLTF_STRUCTURE)


def check_structure(doc_json: dict, source: str) -> None:
    """Types of every field we read, then every index in range and no node cycles."""
    error = next(iter(_structure_validator().iter_errors(doc_json)), None)
    if error is not None:
        where = "/" + "/".join(map(str, error.instance_path))
        raise GltfInvalid(f"{source}{'#' + where}: {error.message[:200]}", code="gltf_schema",
                          field=where)

    def check(index: int, kind: str, where: str) -> None:
        if index >= len(doc_json.get(kind, [])):
            raise GltfInvalid(f"{source}#{where}: {kind} {index} does not exist",
                              code="gltf_bad_index", field=where)

    for i, node in enumerate(doc_json.get("nodes", [])):
        for c in node.get("children", []):
            check(c, "nodes", f"/nodes/{i}/children")
        if "mesh" in node:
            check(node["mesh"], "meshes", f"/nodes/{i}/mesh")
    for i, scene in enumerate(doc_json.get("scenes", [])):
        for n in scene.get("nodes", []):
            check(n, "nodes", f"/scenes/{i}/nodes")
    if "scene" in doc_json:
        check(doc_json["scene"], "scenes", "/scene")
    for m, mesh in enumerate(doc_json.get("meshes", [])):
        for p, prim in enumerate(mesh["primitives"]):
            where = f"/meshes/{m}/primitives/{p}"
            for name, a in prim["attributes"].items():
                check(a, "accessors", f"{where}/attributes/{name}")
            if "indices" in prim:
                check(prim["indices"], "accessors", f"{where}/indices")
            if "material" in prim:
                check(prim["material"], "materials", f"{where}/material")
    for i, acc in enumerate(doc_json.get("accessors", [])):
        if "bufferView" in acc:
            check(acc["bufferView"], "bufferViews", f"/accessors/{i}/bufferView")
    for i, view in enumerate(doc_json.get("bufferViews", [])):
        check(view["buffer"], "buffers", f"/bufferViews/{i}/buffer")
    for i, image in enumerate(doc_json.get("images", [])):
        if "bufferView" in image:
            check(image["bufferView"], "bufferViews", f"/images/{i}/bufferView")
    for i, skin in enumerate(doc_json.get("skins", [])):
        if "inverseBindMatrices" in skin:
            check(skin["inverseBindMatrices"], "accessors", f"/skins/{i}/inverseBindMatrices")
    for a, anim in enumerate(doc_json.get("animations", [])):
        for s, sampler in enumerate(anim.get("samplers", [])):
            check(sampler["input"], "accessors", f"/animations/{a}/samplers/{s}/input")
            check(sampler["output"], "accessors", f"/animations/{a}/samplers/{s}/output")
    _check_node_tree(doc_json.get("nodes", []), source)


def _check_node_tree(nodes: list[dict], source: str) -> None:
    """glTF node hierarchies are trees: no cycles, no node with two parents."""
    parent: dict[int, int] = {}
    for i, node in enumerate(nodes):
        for c in node.get("children", []):
            if c in parent or c == i:
                raise GltfInvalid(f"{source}#/nodes/{i}/children: node {c} has two parents "
                                  "or is its own child", code="gltf_node_cycle",
                                  field=f"/nodes/{i}/children")
            parent[c] = i
    rooted: set[int] = set()  # nodes known to reach a root: each walk is O(new nodes)
    for start in range(len(nodes)):
        path: list[int] = []
        on_path: set[int] = set()
        n = start
        while n in parent and n not in rooted:
            if n in on_path:
                raise GltfInvalid(f"{source}#/nodes/{n}: the node tree has a cycle",
                                  code="gltf_node_cycle", field=f"/nodes/{n}")
            on_path.add(n)
            path.append(n)
            n = parent[n]
        rooted.update(path)
        rooted.add(n)


@dataclass
class Document:
    """A glTF asset held as its JSON and its single binary chunk."""

    json: dict
    bin: bytes = b""
    source: str = "<memory>"
    _cache: dict = field(default_factory=dict, repr=False)

    def buffer_view_bytes(self, index: int) -> bytes:
        views = self.json.get("bufferViews", [])
        if not 0 <= index < len(views):
            raise GltfInvalid(f"{self.source}: bufferView {index} does not exist",
                              field=f"/bufferViews/{index}")
        view = views[index]
        if view.get("buffer", 0) != 0:
            raise GltfInvalid(f"{self.source}: only the GLB buffer 0 is supported",
                              field=f"/bufferViews/{index}/buffer")
        start = int(view.get("byteOffset", 0))
        end = start + int(view["byteLength"])
        if start < 0 or end > len(self.bin):
            raise GltfInvalid(f"{self.source}: bufferView {index} ends at byte {end}, past the "
                              f"{len(self.bin)}-byte buffer", field=f"/bufferViews/{index}")
        return self.bin[start:end]

    def read_accessor(self, index: int) -> np.ndarray:
        """Decode an accessor to a (count, components) array, with bounds checked."""
        accessors = self.json.get("accessors", [])
        if not 0 <= index < len(accessors):
            raise GltfInvalid(f"{self.source}: accessor {index} does not exist",
                              field=f"/accessors/{index}")
        acc = accessors[index]
        where = f"/accessors/{index}"
        if "sparse" in acc:
            raise GltfInvalid(f"{self.source}: sparse accessors are not supported yet",
                              code="gltf_unsupported", field=f"{where}/sparse")
        dtype = np.dtype(COMPONENT_DTYPES[acc["componentType"]]).newbyteorder("<")
        ncomp = TYPE_SIZES[acc["type"]]
        count = int(acc["count"])
        if "bufferView" not in acc:
            return np.zeros((count, ncomp), dtype=dtype)
        data = self.buffer_view_bytes(acc["bufferView"])
        stride = int(self.json["bufferViews"][acc["bufferView"]].get("byteStride", 0)) or (
            dtype.itemsize * ncomp)
        offset = int(acc.get("byteOffset", 0))
        need = offset + (count - 1) * stride + dtype.itemsize * ncomp if count else 0
        if need > len(data):
            raise GltfInvalid(f"{self.source}: accessor {index} needs {need} bytes but its "
                              f"bufferView has {len(data)}", code="accessor_out_of_range",
                              field=where)
        arr = np.lib.stride_tricks.as_strided(
            np.frombuffer(data, dtype=np.uint8, offset=offset, count=max(need - offset, 0)),
            shape=(count, ncomp * dtype.itemsize), strides=(stride, 1))
        return np.ascontiguousarray(arr).view(dtype).reshape(count, ncomp).copy()


def parse_glb(data: bytes, source: str = "<memory>", allow_uris: bool = False) -> Document:
    """Parse GLB bytes. Raises GltfInvalid naming the problem for any malformed input.

    With allow_uris, external buffers and images are left for `ingest.loaders` to resolve
    inside the asset's folder; without it, a GLB must be self-contained."""
    if len(data) < 20:
        raise GltfInvalid(f"{source}: {len(data)} bytes is too short for a GLB",
                          code="glb_truncated")
    magic, version, length = struct.unpack_from("<III", data, 0)
    if magic != GLB_MAGIC:
        raise GltfInvalid(f"{source}: not a GLB file (bad magic)", code="glb_bad_magic")
    if version != 2:
        raise GltfInvalid(f"{source}: GLB version {version}; only 2 is supported",
                          code="glb_version")
    if length != len(data):
        # Fewer bytes: cut short (an interrupted copy). More: something was appended.
        raise GltfInvalid(f"{source}: header says {length} bytes, file has {len(data)}",
                          code="glb_truncated" if len(data) < length else "glb_length_mismatch")
    json_chunk: bytes | None = None
    bin_chunk = b""
    pos = 12
    while pos < length:
        if pos + 8 > length:
            raise GltfInvalid(f"{source}: chunk header at byte {pos} is cut off",
                              code="glb_truncated")
        chunk_len, chunk_type = struct.unpack_from("<II", data, pos)
        start, end = pos + 8, pos + 8 + chunk_len
        if end > length:
            raise GltfInvalid(f"{source}: chunk at byte {pos} claims {chunk_len} bytes, past "
                              "the end of the file", code="glb_truncated")
        if chunk_type == CHUNK_JSON and json_chunk is None:
            json_chunk = data[start:end]
        elif chunk_type == CHUNK_BIN and not bin_chunk:
            bin_chunk = data[start:end]
        pos = end
    if json_chunk is None:
        raise GltfInvalid(f"{source}: no JSON chunk", code="glb_no_json")
    try:
        doc_json = json.loads(json_chunk.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise GltfInvalid(f"{source}: JSON chunk is not valid JSON: {exc}",
                          code="gltf_json") from None
    if not isinstance(doc_json, dict) or "asset" not in doc_json:
        raise GltfInvalid(f"{source}: JSON chunk has no 'asset' object", code="gltf_json")
    check_structure(doc_json, source)
    if allow_uris:
        return Document(doc_json, bytes(bin_chunk), source)
    buffers = doc_json.get("buffers", [])
    if buffers and "uri" in buffers[0]:
        raise GltfInvalid(f"{source}: buffer 0 of a GLB must be the binary chunk, not a URI",
                          code="gltf_external_uri", field="/buffers/0/uri")
    if any(not _is_meshopt_fallback(b) for b in buffers[1:]):
        raise GltfInvalid(f"{source}: external buffers are not supported in a GLB",
                          code="gltf_external_uri", field="/buffers/1")
    if buffers and int(buffers[0].get("byteLength", 0)) > len(bin_chunk):
        raise GltfInvalid(f"{source}: buffer 0 claims {buffers[0]['byteLength']} bytes, BIN "
                          f"chunk has {len(bin_chunk)}", code="glb_truncated",
                          field="/buffers/0/byteLength")
    for i, image in enumerate(doc_json.get("images", [])):
        if "uri" in image:
            raise GltfInvalid(f"{source}: image {i} uses a URI; a GLB must embed its images",
                              code="gltf_external_uri", field=f"/images/{i}/uri")
    return Document(doc_json, bytes(bin_chunk), source)


def read_glb(path: Path, max_bytes: int = MAX_GLB_BYTES) -> Document:
    size = path.stat().st_size
    if size > max_bytes:
        raise GltfInvalid(f"{path}: {size} bytes is over the {max_bytes}-byte limit",
                          code="gltf_too_large")
    return parse_glb(path.read_bytes(), str(path))


def _pad(data: bytes, fill: bytes) -> bytes:
    return data + fill * ((4 - len(data) % 4) % 4)


def _is_meshopt_fallback(buffer: dict) -> bool:
    """A placeholder buffer with no bytes, only sized, for EXT_meshopt_compression."""
    return ("uri" not in buffer and buffer.get("extensions", {})
            .get("EXT_meshopt_compression", {}).get("fallback") is True)


def write_glb(doc: Document) -> bytes:
    """Serialise to GLB bytes: compact JSON (sorted keys are not used: order is meaning-free
    but keeping the creator's order keeps diffs readable), 4-byte aligned chunks."""
    body = dict(doc.json)
    if doc.bin:
        # Buffer 0 is the BIN chunk; data-less EXT_meshopt_compression fallback buffers
        # after it are kept (views of compressed data point at them).
        extra = doc.json.get("buffers", [])[1:]
        keep = extra if extra and all(_is_meshopt_fallback(b) for b in extra) else []
        body["buffers"] = [{"byteLength": len(doc.bin)}, *keep]
    json_bytes = _pad(json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode(), b" ")
    out = io.BytesIO()
    bin_bytes = _pad(doc.bin, b"\0") if doc.bin else b""
    total = 12 + 8 + len(json_bytes) + (8 + len(bin_bytes) if bin_bytes else 0)
    out.write(struct.pack("<III", GLB_MAGIC, 2, total))
    out.write(struct.pack("<II", len(json_bytes), CHUNK_JSON))
    out.write(json_bytes)
    if bin_bytes:
        out.write(struct.pack("<II", len(bin_bytes), CHUNK_BIN))
        out.write(bin_bytes)
    return out.getvalue()
