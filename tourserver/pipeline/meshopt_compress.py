"""EXT_meshopt_compression: meshoptimizer's codecs over vertex, index and animation views.

Each bufferView that only accessors read (vertex attributes, morph targets, indices,
animation inputs/outputs, inverse bind matrices, instance transforms) is encoded with the
PyPI `meshoptimizer` bindings: `encode_vertex_buffer` (mode ATTRIBUTES), `encode_index_buffer`
(mode TRIANGLES, for triangle lists) or `encode_index_sequence` (mode INDICES, for lines,
strips, fans and points). Images and views something else addresses directly (sparse
accessors, EXT_structural_metadata property tables) stay as they are. The compressed bytes
go in the GLB's binary chunk (buffer 0); each compressed view's own `buffer`/`byteOffset`
points into a fallback buffer 1 that has a byteLength and no data, tagged
`{"EXT_meshopt_compression": {"fallback": true}}` (gltfpack's `-c` layout).

Because that fallback buffer holds no bytes, the spec says the extension must be REQUIRED
("If a fallback buffer doesn't have a URI and doesn't refer to the GLB binary chunk, it
follows that EXT_meshopt_compression must be a required extension"), and gltfpack marks it
required unless `-cf` writes real fallback data; so we list it in extensionsUsed and
extensionsRequired.

Which views: with `level="default"` a view is encoded only when the result is smaller
both as it is and after deflate, because phones fetch over gzip and the byte-delta codec
loses to gzip on unordered or float data (run vertex cache/fetch optimisation and
`Quantize` first for the real gains); `level="always"` encodes whenever raw bytes shrink.

Filters: none. The codecs are lossless; the OCTAHEDRAL/QUATERNION/EXPONENTIAL filters are
lossy re-encodings (and the PyPI bindings expose only their decoders), so we leave precision
choices to `Quantize`, which runs before this step, and keep an exact round trip:
`decode_meshopt(compress(doc))` gives back every view byte for byte. Every encoding is
checked by decoding it. The TRIANGLES index codec may rotate a triangle's three indices
(same triangle and winding), so by default it is used only where it round-trips exactly,
and INDICES otherwise; `rotate_triangles=True` accepts the rotation, as gltfpack does
(on a vertex-cache-optimised mesh TRIANGLES is about half the size of INDICES). For triangle
lists the smaller valid encoding wins. The vertex codec is pinned to version 0 and the
index codec to version 1, the versions EXT_meshopt_compression defines (version 1 of the
vertex codec belongs to KHR_meshopt_compression).

This must be the LAST transform: `repack` does not understand views in a fallback buffer.
"""

from __future__ import annotations

import copy
import math
import zlib
from dataclasses import dataclass

import meshoptimizer
import numpy as np

from tourserver.ingest.gltf_io import COMPONENT_DTYPES, TYPE_SIZES, Document
from tourserver.ingest.meshopt_decode import EXTENSION, _decode, decode_meshopt
from tourserver.pipeline.base import Context

MODE_TRIANGLES = 4
LEVELS = ("default", "always")
_DEFLATE_LEVEL = 6  # what HTTP servers use for gzip; only used to compare two encodings
_INDEX_BYTES = {5123: 2, 5125: 4}  # uint8 indices have no meshopt index codec: kept raw
# Keys under which glTF extensions address bufferViews directly (views we must not touch).
_VIEW_KEYS = ("bufferView", "values", "arrayOffsets", "stringOffsets")


@dataclass(frozen=True)
class MeshoptCompress:
    # "default": a view is encoded only when that makes it smaller both as it is and after
    # deflate (phones usually fetch gzip-encoded; the byte-delta codec can lose to gzip on
    # unordered or float data). "always": whenever it makes the view smaller as it is.
    level: str = "default"
    # Let the TRIANGLES codec rotate each triangle's indices (a, b, c) -> (b, c, a): same
    # triangles, much smaller; off by default so decoding gives the input back exactly.
    rotate_triangles: bool = False
    name: str = "meshopt-compress"

    def __post_init__(self) -> None:
        if self.level not in LEVELS:
            raise ValueError(f"level must be one of {LEVELS}, got {self.level!r}")

    def __call__(self, doc: Document, ctx: Context) -> Document:
        new_json = copy.deepcopy(doc.json)
        if EXTENSION in new_json.get("extensionsUsed", []):
            ctx.logger.info("meshopt: %s is already compressed", doc.source)
            return Document(new_json, doc.bin, doc.source)
        if len(new_json.get("buffers", [])) > 1:
            ctx.logger.info("meshopt: %s has several buffers; left uncompressed", doc.source)
            return Document(new_json, doc.bin, doc.source)
        views = new_json.get("bufferViews", [])
        plans = _plan_views(new_json)
        meshoptimizer.encode_vertex_version(0)
        meshoptimizer.encode_index_version(1)
        chunks: list[bytes] = []
        offset = 0
        fallback = 0
        compressed = 0
        raw_bytes = 0
        as_sequence = 0  # triangle views for which INDICES mode was exact and smaller
        for i, view in enumerate(views):
            data = doc.buffer_view_bytes(i)
            plan = plans.get(i)
            encoded = None
            if plan:
                plan, encoded = _encode_exact(data, plan, self.rotate_triangles)
                if plan and plan[0] == "INDICES" and plans[i][0] == "TRIANGLES":
                    as_sequence += 1
            if encoded is not None and not self._worth_it(data, encoded):
                encoded = None  # keep it plain: the codec does not pay here
            pad = (-offset) % 4
            chunks.append(b"\0" * pad)
            offset += pad
            if encoded is None:
                view.update({"buffer": 0, "byteOffset": offset, "byteLength": len(data)})
                chunks.append(data)
                offset += len(data)
                continue
            mode, stride = plan
            fallback += (-fallback) % 4
            ext = {"buffer": 0, "byteOffset": offset, "byteLength": len(encoded),
                   "byteStride": stride, "count": len(data) // stride, "mode": mode}
            view.update({"buffer": 1, "byteOffset": fallback, "byteLength": len(data)})
            view.setdefault("extensions", {})[EXTENSION] = ext
            chunks.append(encoded)
            offset += len(encoded)
            fallback += len(data)
            compressed += 1
            raw_bytes += len(data)
        bin_out = b"".join(chunks)
        ctx.facts["meshopt.views"] = ctx.facts.get("meshopt.views", 0) + compressed
        ctx.facts["meshopt.bytes_before"] = ctx.facts.get("meshopt.bytes_before", 0) + len(
            doc.bin)
        ctx.facts["meshopt.bytes_after"] = ctx.facts.get("meshopt.bytes_after", 0) + len(
            bin_out)
        if not compressed:
            ctx.logger.info("meshopt: nothing to compress in %s", doc.source)
            return Document(copy.deepcopy(doc.json), doc.bin, doc.source)
        ctx.logger.info("meshopt: %d views, %d bytes of view data now %d bytes in total",
                        compressed, raw_bytes, len(bin_out))
        if as_sequence:
            ctx.logger.info("meshopt: %d triangle index views use INDICES mode (TRIANGLES "
                            "would rotate triangles or be larger; optimise the vertex cache "
                            "first and allow rotate_triangles)", as_sequence)
        new_json["buffers"] = [{"byteLength": len(bin_out)},
                               {"byteLength": fallback,
                                "extensions": {EXTENSION: {"fallback": True}}}]
        for key in ("extensionsUsed", "extensionsRequired"):
            names = new_json.setdefault(key, [])
            if EXTENSION not in names:
                names.append(EXTENSION)
        return Document(new_json, bin_out, doc.source)

    def _worth_it(self, data: bytes, encoded: bytes) -> bool:
        if len(encoded) >= len(data):
            return False
        if self.level == "always":
            return True
        return (len(zlib.compress(encoded, _DEFLATE_LEVEL))
                <= len(zlib.compress(data, _DEFLATE_LEVEL)))


DEFAULTS = MeshoptCompress()


def _plan_views(doc_json: dict) -> dict[int, tuple[str, int]]:
    """For each view we can compress: (mode, byteStride). Views anything but plain accessors
    refers to (images, sparse data, extension tables) are left out."""
    views = doc_json.get("bufferViews", [])
    accessors = doc_json.get("accessors", [])
    external: set[int] = set()
    for key, value in doc_json.items():
        if key not in ("accessors", "bufferViews"):
            _collect_view_refs(value, external)
    for acc in accessors:
        if "sparse" in acc:
            _collect_view_refs(acc["sparse"], external)
        _collect_view_refs(acc.get("extensions", {}), external)

    index_accessors: dict[int, list[int]] = {}  # accessor -> primitive modes using it
    for mesh in doc_json.get("meshes", []):
        for prim in mesh.get("primitives", []):
            if "indices" in prim:
                index_accessors.setdefault(prim["indices"], []).append(
                    prim.get("mode", MODE_TRIANGLES))
    users: dict[int, list[int]] = {}
    for a, acc in enumerate(accessors):
        if "bufferView" in acc:
            users.setdefault(acc["bufferView"], []).append(a)

    plans: dict[int, tuple[str, int]] = {}
    for v, view in enumerate(views):
        if v in external or v not in users or view.get("buffer", 0) != 0:
            continue
        length = int(view["byteLength"])
        accs = users[v]
        as_index = [a in index_accessors for a in accs]
        if all(as_index):
            sizes = {_INDEX_BYTES.get(accessors[a]["componentType"]) for a in accs}
            if len(sizes) != 1 or None in sizes or "byteStride" in view:
                continue
            size = sizes.pop()
            if length % size:
                continue
            modes = {m for a in accs for m in index_accessors[a]}
            triangles = (modes == {MODE_TRIANGLES} and (length // size) % 3 == 0
                         and all(int(accessors[a].get("byteOffset", 0)) % (3 * size) == 0
                                 for a in accs))
            plans[v] = ("TRIANGLES" if triangles else "INDICES", size)
        elif not any(as_index):
            stride = int(view.get("byteStride", 0))
            if not stride:
                sizes = {np.dtype(COMPONENT_DTYPES[accessors[a]["componentType"]]).itemsize
                         * TYPE_SIZES[accessors[a]["type"]] for a in accs}
                stride = sizes.pop() if len(sizes) == 1 else math.gcd(*sizes)
            if stride % 4 or stride > 256 or length % stride:
                continue
            plans[v] = ("ATTRIBUTES", stride)
    return plans


def _collect_view_refs(value, out: set[int]) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            if key in _VIEW_KEYS and isinstance(item, int):
                out.add(item)
            elif isinstance(item, (dict, list)):
                _collect_view_refs(item, out)
    elif isinstance(value, list):
        for item in value:
            _collect_view_refs(item, out)


def _encode_exact(data: bytes, plan: tuple[str, int], rotate_triangles: bool = False
                  ) -> tuple[tuple[str, int] | None, bytes | None]:
    """Encode and check by decoding. For triangle lists both index codecs are tried and the
    smaller valid one kept: TRIANGLES may rotate a triangle's indices (same triangle, same
    winding), which is only valid with `rotate_triangles`; INDICES is always exact."""
    mode, stride = plan
    count = len(data) // stride
    best: tuple[tuple[str, int] | None, bytes | None] = (None, None)
    for attempt in ((mode, stride), ("INDICES", stride)) if mode == "TRIANGLES" else (plan,):
        encoded = _encode(data, attempt)
        if encoded is None or (best[1] is not None and len(encoded) >= len(best[1])):
            continue
        decoded = _decode(encoded, attempt[0], count, stride)
        if decoded == data or (rotate_triangles and attempt[0] == "TRIANGLES"
                               and _same_triangles(decoded, data, stride)):
            best = (attempt, encoded)
    return best


def _same_triangles(a: bytes, b: bytes, stride: int) -> bool:
    """Same triangles in the same order and winding, each possibly rotated."""
    dtype = np.uint16 if stride == 2 else np.uint32
    ta = np.frombuffer(a, dtype=dtype).reshape(-1, 3)
    tb = np.frombuffer(b, dtype=dtype).reshape(-1, 3)
    matches = [(np.roll(tb, k, axis=1) == ta).all(axis=1) for k in range(3)]
    return bool(np.any(matches, axis=0).all())


def _encode(data: bytes, plan: tuple[str, int]) -> bytes | None:
    mode, stride = plan
    count = len(data) // stride
    if count == 0:
        return None
    if mode == "ATTRIBUTES":
        return meshoptimizer.encode_vertex_buffer(
            np.frombuffer(data, dtype=np.uint8).reshape(count, stride), count, stride)
    indices = np.frombuffer(data, dtype=np.uint16 if stride == 2 else np.uint32)
    indices = indices.astype(np.uint32)
    vertex_count = int(indices.max()) + 1
    if mode == "TRIANGLES":
        return meshoptimizer.encode_index_buffer(indices, count, vertex_count)
    return meshoptimizer.encode_index_sequence(indices, count, vertex_count)


__all__ = ["MeshoptCompress", "decode_meshopt", "EXTENSION"]
