"""EXT_meshopt_compression: meshoptimizer's codecs and filters over vertex, index and
animation views.

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

Merging (`merge_views`, as gltfpack does): vertex, index and animation views holding the
same kind of data (same attribute or animation path, component type, element size and
target) are concatenated into one view before encoding, accessors addressing it through
`byteOffset`. The codec then sees one long stream instead of many short ones (each view
costs a header and a 16-byte tail, and short streams predict badly). Accessor data is
unchanged; only the view layout is. Skipped when an extension addresses views directly.

Filters (lossy re-encodings the spec defines; the bindings expose only their decoders, so
the encoders below follow meshoptimizer's `meshopt_encodeFilterOct/Quat/Exp` in numpy,
float32 arithmetic as the C code does):
- OCTAHEDRAL for NORMAL/TANGENT views that `Quantize` already made normalized int8 (int16):
  two octahedral coordinates plus a constant, tangent w kept; bytes stay 4 (8) per vertex,
  but the codec compresses them several times better. Angle error about 1 degree at 8 bits,
  measured by decoding and reported.
- QUATERNION for animation rotations (float -> normalized int16, `rotation_bits`) and
  EXPONENTIAL for translation/scale/weights floats (a shared exponent per component per
  accessor, `animation_bits` of mantissa): each used only when it makes the view smaller.
With `filters="auto"` normals are filtered only when already integers (the lossless
`archive` chain keeps float normals, so it stays exact) and animations only when the document
uses KHR_mesh_quantization (the chain has accepted loss); "always" filters animations
regardless; "none" keeps an exact round trip.

Without filters `decode_meshopt(compress(doc))` gives back every accessor exactly; every
encoding is checked by decoding it. The TRIANGLES index codec may rotate a triangle's three
indices (same triangle and winding), so by default it is used only where it round-trips
exactly, and INDICES otherwise; `rotate_triangles=True` accepts the rotation, as gltfpack does
(on a vertex-cache-optimised mesh TRIANGLES is about half the size of INDICES). For triangle
lists the smaller valid encoding wins. The vertex codec is pinned to version 0 and the
index codec to version 1, the versions EXT_meshopt_compression defines (version 1 of the
vertex codec belongs to KHR_meshopt_compression).

Facts: `meshopt.views`, `meshopt.bytes_before`, `meshopt.bytes_after`, `meshopt.merged_views`
(views folded into others), `meshopt.filtered_views`, `meshopt.normal_error_deg` (largest
angle between an input normal/tangent and its decoded value), `meshopt.rotation_error_deg`
(largest rotation angle between an input and decoded keyframe) and `meshopt.animation_error`
(largest absolute error of a decoded translation/scale/weight value).

This must be the LAST transform: `repack` does not understand views in a fallback buffer.
"""

from __future__ import annotations

import copy
import math
import zlib
from dataclasses import dataclass

import meshoptimizer
import numpy as np

from tourserver.gltf.document import COMPONENT_DTYPES, TYPE_SIZES, ChunkWriter, Document
from tourserver.gltf.meshopt import EXTENSION, decode_buffer, decode_meshopt
from tourserver.pipeline.base import Context

MODE_TRIANGLES = 4
LEVELS = ("default", "always")
FILTERS = ("auto", "always", "none")
QUANTIZATION = "KHR_mesh_quantization"
_DEFLATE_LEVEL = 6  # what HTTP servers use for gzip; only used to compare two encodings
_INDEX_BYTES = {5123: 2, 5125: 4}  # uint8 indices have no meshopt index codec: kept raw
# Keys under which glTF extensions address bufferViews directly (views we must not touch).
_VIEW_KEYS = ("bufferView", "values", "arrayOffsets", "stringOffsets")
FLOAT, BYTE, SHORT = 5126, 5120, 5122
_F32 = np.float32


@dataclass(frozen=True)
class MeshoptCompress:
    # "default": a view is encoded only when that makes it smaller both as it is and after
    # deflate (phones usually fetch gzip-encoded; the byte-delta codec can lose to gzip on
    # unordered or float data). "always": whenever it makes the view smaller as it is.
    level: str = "default"
    # Let the TRIANGLES codec rotate each triangle's indices (a, b, c) -> (b, c, a): same
    # triangles, much smaller; off by default so decoding gives the input back exactly.
    rotate_triangles: bool = False
    # Lossy EXT_meshopt_compression filters: "auto", "always" or "none" (module docstring).
    filters: str = "auto"
    # Concatenate views of the same kind so the codec sees long streams (lossless).
    merge_views: bool = True
    rotation_bits: int = 12  # QUATERNION filter precision (gltfpack -ar 12)
    animation_bits: int = 16  # EXPONENTIAL mantissa bits (gltfpack -at 16 / -as 16)
    max_normal_error_deg: float = 2.0  # an OCTAHEDRAL view worse than this stays unfiltered
    name: str = "meshopt-compress"

    def __post_init__(self) -> None:
        if self.level not in LEVELS:
            raise ValueError(f"level must be one of {LEVELS}, got {self.level!r}")
        if self.filters not in FILTERS:
            raise ValueError(f"filters must be one of {FILTERS}, got {self.filters!r}")
        if not 4 <= self.rotation_bits <= 16:
            raise ValueError("rotation_bits must be in [4, 16]")
        if not 1 <= self.animation_bits <= 24:
            raise ValueError("animation_bits must be in [1, 24]")

    def __call__(self, doc: Document, ctx: Context) -> Document:
        new_json = copy.deepcopy(doc.json)
        if EXTENSION in new_json.get("extensionsUsed", []):
            ctx.logger.info("meshopt: %s is already compressed", doc.source)
            return Document(new_json, doc.bin, doc.source)
        if len(new_json.get("buffers", [])) > 1:
            ctx.logger.info("meshopt: %s has several buffers; left uncompressed", doc.source)
            return Document(new_json, doc.bin, doc.source)
        view_data = [doc.buffer_view_bytes(i) for i in range(len(new_json.get("bufferViews",
                                                                              [])))]
        merged = 0
        if self.merge_views:
            view_data, merged = _merge_views(new_json, view_data, ctx)
        views = new_json.get("bufferViews", [])
        plans = _plan_views(new_json)
        kinds = _view_kinds(new_json)
        animation_ok = self.filters == "always" or (
            self.filters == "auto" and QUANTIZATION in new_json.get("extensionsUsed", []))
        meshoptimizer.encode_vertex_version(0)
        meshoptimizer.encode_index_version(1)
        out = ChunkWriter()
        fallback = 0
        compressed = 0
        filtered = 0
        raw_bytes = 0
        as_sequence = 0  # triangle views for which INDICES mode was exact and smaller
        errors = {"normal": 0.0, "rotation": 0.0, "animation": 0.0}
        for i, view in enumerate(views):
            data = view_data[i]
            plan = plans.get(i)
            encoded = None
            flt = None
            if plan:
                plan, encoded = _encode_exact(data, plan, self.rotate_triangles)
                if plan and plan[0] == "INDICES" and plans[i][0] == "TRIANGLES":
                    as_sequence += 1
            deflated = _DeflatedSizes()  # each of this view's candidates deflated once
            if encoded is not None and not self._worth_it(data, encoded, deflated):
                encoded = None  # keep it plain: the codec does not pay here
            if plans.get(i, ("",))[0] == "ATTRIBUTES" and self.filters != "none":
                flt = self._filter_view(new_json, i, kinds.get(i), data, animation_ok)
            if flt is not None:
                f_name, f_data, f_stride, f_error, f_kind, apply = flt
                f_plan, f_encoded = _encode_exact(f_data, ("ATTRIBUTES", f_stride))
                if f_encoded is not None and self._worth_it(data, f_encoded, deflated) and (
                        encoded is None or _smaller(f_encoded, encoded, deflated)):
                    apply()
                    data, plan, encoded = f_data, f_plan, f_encoded
                    errors[f_kind] = max(errors[f_kind], f_error)
                    filtered += 1
                else:
                    flt = None
            if encoded is None:
                view.update({"buffer": 0, "byteOffset": out.append(data),
                             "byteLength": len(data)})
                continue
            assert plan is not None  # _encode_exact returns a plan with every encoding
            mode, stride = plan
            fallback += (-fallback) % 4
            ext = {"buffer": 0, "byteOffset": out.append(encoded), "byteLength": len(encoded),
                   "byteStride": stride, "count": len(data) // stride, "mode": mode}
            if flt is not None:
                ext["filter"] = flt[0]
            view.update({"buffer": 1, "byteOffset": fallback, "byteLength": len(data)})
            view.setdefault("extensions", {})[EXTENSION] = ext
            fallback += len(data)
            compressed += 1
            raw_bytes += len(data)
        bin_out = out.bytes()
        ctx.add("meshopt.views", compressed)
        ctx.add("meshopt.merged_views", merged)
        ctx.add("meshopt.filtered_views", filtered)
        for kind, fact in (("normal", "meshopt.normal_error_deg"),
                           ("rotation", "meshopt.rotation_error_deg"),
                           ("animation", "meshopt.animation_error")):
            ctx.most(fact, round(errors[kind], 6))
        ctx.add("meshopt.bytes_before", len(doc.bin))
        ctx.add("meshopt.bytes_after", len(bin_out))
        if not compressed:
            ctx.logger.info("meshopt: nothing to compress in %s", doc.source)
            return Document(copy.deepcopy(doc.json), doc.bin, doc.source)
        ctx.logger.info("meshopt: %d views (%d filtered, %d merged away), %d bytes of view "
                        "data now %d bytes in total", compressed, filtered, merged,
                        raw_bytes, len(bin_out))
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

    def _worth_it(self, data: bytes, encoded: bytes, deflated: _DeflatedSizes) -> bool:
        if len(encoded) >= len(data):
            return False
        if self.level == "always":
            return True
        return deflated(encoded) <= deflated(data)

    def _filter_view(self, doc_json: dict, v: int, kind: tuple | None, data: bytes,
                     animation_ok: bool):
        """A filtered version of view v, or None: (filter, bytes, stride, error, error kind,
        apply) where apply() rewrites the accessors for the filtered layout."""
        if kind is None:
            return None
        usage, ctype, acc_type, normalized = kind
        view = doc_json["bufferViews"][v]
        accessors = [a for a in doc_json.get("accessors", []) if a.get("bufferView") == v]
        ncomp = TYPE_SIZES[acc_type]
        if usage in ("attr:NORMAL", "attr:TANGENT") and normalized and ctype in (BYTE, SHORT):
            stride = 4 if ctype == BYTE else 8
            if int(view.get("byteStride", 0)) != stride or len(data) % stride or any(
                    int(a.get("byteOffset", 0)) % stride for a in accessors):
                return None
            dtype = np.int8 if ctype == BYTE else np.int16
            top = 127.0 if ctype == BYTE else 32767.0
            q = np.frombuffer(data, dtype=dtype).reshape(-1, 4)
            vec = np.maximum(q[:, :ncomp].astype(np.float64) / top, -1.0)
            full = np.zeros((len(q), 4), dtype=np.float64)
            full[:, :ncomp] = vec
            length = np.linalg.norm(full[:, :3], axis=1, keepdims=True)
            full[:, :3] /= np.where(length > 0, length, 1.0)
            encoded = encode_filter_oct(full, stride, 8 if ctype == BYTE else 16)
            back = meshoptimizer.decode_filter_oct(encoded.copy(), len(q), stride)
            back = back.view(dtype).reshape(-1, 4)[:, :3].astype(np.float64)
            valid = length[:, 0] > 0  # zero vectors (degenerate data) carry no direction
            error = _max_angle_deg(full[valid, :3], back[valid])
            if error > self.max_normal_error_deg:
                return None
            return ("OCTAHEDRAL", encoded.tobytes(), stride, error, "normal", lambda: None)
        if not animation_ok or ctype != FLOAT or "byteStride" in view:
            return None
        if usage == "anim:rotation" and acc_type == "VEC4":
            if any(int(a.get("byteOffset", 0)) % 16 for a in accessors) or len(data) % 16:
                return None
            quats = np.frombuffer(data, dtype="<f4").reshape(-1, 4)
            if not np.all(np.isfinite(quats)):
                return None
            encoded = encode_filter_quat(quats, self.rotation_bits)
            back = meshoptimizer.decode_filter_quat(encoded.copy(), len(quats), 8)
            back = back.view(np.int16).reshape(-1, 4).astype(np.float64) / 32767.0
            unit = quats.astype(np.float64)
            unit /= np.maximum(np.linalg.norm(unit, axis=1, keepdims=True), 1e-30)
            dots = np.abs(np.sum(unit * back / np.maximum(
                np.linalg.norm(back, axis=1, keepdims=True), 1e-30), axis=1))
            error = float(np.degrees(2 * np.arccos(np.clip(dots, 0.0, 1.0))).max(initial=0))

            def apply() -> None:
                view["byteLength"] = len(data) // 2
                for a in accessors:
                    a["componentType"] = SHORT
                    a["normalized"] = True
                    if "byteOffset" in a:
                        a["byteOffset"] = int(a["byteOffset"]) // 2
                    a.pop("min", None)
                    a.pop("max", None)
            return ("QUATERNION", encoded.tobytes(), 8, error, "rotation", apply)
        if usage in ("anim:translation", "anim:scale", "anim:weights"):
            stride = 4 * ncomp
            values = np.frombuffer(data, dtype="<f4").reshape(-1, ncomp)
            if not np.all(np.isfinite(values)) or stride % 4:
                return None
            out = np.empty((len(values), ncomp), dtype=np.uint32)
            # One exponent per component per accessor (gltfpack encodes each stream alone).
            for lo, hi in _accessor_rows(accessors, stride, len(values)):
                out[lo:hi] = encode_filter_exp(values[lo:hi], self.animation_bits)
            encoded = out.view(np.uint8).reshape(len(values), stride)
            back = meshoptimizer.decode_filter_exp(encoded.copy(), len(values), stride)
            back = back.view("<f4").reshape(-1, ncomp)
            error = float(np.abs(back.astype(np.float64) - values).max(initial=0.0))
            return ("EXPONENTIAL", encoded.tobytes(), stride, error, "animation", lambda: None)
        return None


DEFAULTS = MeshoptCompress()


class _DeflatedSizes:
    """Deflated sizes of byte strings, each compressed once (a view's raw bytes are
    compared with two or three encodings of it)."""

    def __init__(self) -> None:
        self._sizes: dict[int, tuple[bytes, int]] = {}  # the bytes kept: ids stay unique

    def __call__(self, data: bytes) -> int:
        found = self._sizes.get(id(data))
        if found is None:
            found = self._sizes[id(data)] = (data, len(zlib.compress(data, _DEFLATE_LEVEL)))
        return found[1]


def _smaller(a: bytes, b: bytes, deflated: _DeflatedSizes) -> bool:
    """a beats b after deflate (what phones fetch), ties going to the smaller raw size."""
    za, zb = deflated(a), deflated(b)
    return za < zb or (za == zb and len(a) < len(b))


def _accessor_rows(accessors: list[dict], stride: int, rows: int) -> list[tuple[int, int]]:
    """Row ranges of each accessor in a tightly packed view (the whole view if they
    overlap or leave gaps, which merged or exported views never do)."""
    spans = sorted((int(a.get("byteOffset", 0)) // stride, int(a["count"])) for a in accessors)
    out = []
    pos = 0
    for start, count in spans:
        if start != pos:
            return [(0, rows)]
        out.append((start, start + count))
        pos = start + count
    return out if pos == rows else [(0, rows)]


def _max_angle_deg(a: np.ndarray, b: np.ndarray) -> float:
    if not len(a):
        return 0.0
    na = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-30)
    nb = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-30)
    cos = np.clip(np.sum(na * nb, axis=1), -1.0, 1.0)
    return float(np.degrees(np.arccos(cos)).max())


# ---- filter encoders (meshoptimizer src/vertexfilter.cpp, float32 like the C code) -------
def _quantize_snorm(v: np.ndarray, bits: int) -> np.ndarray:
    """meshopt_quantizeSnorm: clamp to [-1, 1], scale, round half away from zero."""
    v = np.asarray(v, dtype=_F32)
    scale = _F32((1 << (bits - 1)) - 1)
    rnd = np.where(v >= 0, _F32(0.5), _F32(-0.5)).astype(_F32)
    v = np.clip(v, _F32(-1), _F32(1))
    return np.trunc(v * scale + rnd).astype(np.int32)


def encode_filter_oct(vectors: np.ndarray, stride: int, bits: int) -> np.ndarray:
    """meshopt_encodeFilterOct: (n, 4) unit vectors (w kept, e.g. a tangent's sign) to
    (n, stride) bytes for the OCTAHEDRAL filter; stride 4 -> int8, 8 -> int16."""
    n = np.asarray(vectors, dtype=_F32)
    nx, ny, nz, nw = n[:, 0], n[:, 1], n[:, 2], n[:, 3]
    nl = np.abs(nx) + np.abs(ny) + np.abs(nz)
    with np.errstate(divide="ignore"):
        ns = np.where(nl == 0, _F32(0), _F32(1) / nl).astype(_F32)
    nx = nx * ns
    ny = ny * ns
    sx = np.where(nx >= 0, _F32(1), _F32(-1)).astype(_F32)
    sy = np.where(ny >= 0, _F32(1), _F32(-1)).astype(_F32)
    u = np.where(nz >= 0, nx, (_F32(1) - np.abs(ny)) * sx)
    v = np.where(nz >= 0, ny, (_F32(1) - np.abs(nx)) * sy)
    out = np.stack([_quantize_snorm(u, bits), _quantize_snorm(v, bits),
                    np.full(len(n), int(_quantize_snorm(np.ones(1), bits)[0])),
                    _quantize_snorm(nw, stride * 2)], axis=1)
    dtype = np.int8 if stride == 4 else np.int16
    return np.ascontiguousarray(out.astype(dtype)).view(np.uint8).reshape(len(n), stride)


def encode_filter_quat(quats: np.ndarray, bits: int) -> np.ndarray:
    """meshopt_encodeFilterQuat: (n, 4) unit quaternions (x, y, z, w) to (n, 8) bytes: the
    three smallest components scaled by sqrt(2), then the largest one's index."""
    q = np.asarray(quats, dtype=_F32)
    a = np.abs(q)
    qc = np.zeros(len(q), dtype=np.int64)
    for k in (1, 2, 3):  # first maximum wins, as in the C code's strict comparisons
        qc = np.where(a[:, k] > a[np.arange(len(q)), qc], k, qc)
    rows = np.arange(len(q))
    sign = np.where(q[rows, qc] < 0, _F32(-1), _F32(1)).astype(_F32)
    scaler = _F32(math.sqrt(2.0))
    out = np.empty((len(q), 4), dtype=np.int16)
    for j in range(3):
        out[:, j] = _quantize_snorm(q[rows, (qc + j + 1) & 3] * scaler * sign, bits)
    one = int(_quantize_snorm(np.ones(1), bits)[0])
    out[:, 3] = (one & ~3) | qc
    return np.ascontiguousarray(out).view(np.uint8).reshape(len(q), 8)


def _optlog2(v: np.ndarray) -> np.ndarray:
    bits = np.asarray(v, dtype=_F32).view(np.uint32)
    e = ((bits >> 23) & 0xFF).astype(np.int64) - 127 + 1
    return np.where(np.asarray(v) == 0, 0, e)


def encode_filter_exp(values: np.ndarray, bits: int) -> np.ndarray:
    """meshopt_encodeFilterExp in meshopt_EncodeExpSharedComponent mode: (n, k) floats to
    (n, k) uint32 words, a 24-bit mantissa and an 8-bit exponent shared by each column."""
    v = np.asarray(values, dtype=_F32)
    min_exp = -100
    exp = np.maximum(_optlog2(v).max(axis=0, initial=min_exp), min_exp) - (bits - 1)
    scale = np.ldexp(np.ones(len(exp), dtype=_F32), -exp).astype(_F32)
    rnd = np.where(v >= 0, _F32(0.5), _F32(-0.5)).astype(_F32)
    m = np.trunc(v * scale + rnd).astype(np.int64)
    words = (m & 0xFFFFFF) | ((exp.astype(np.int64) & 0xFF) << 24)[None, :]
    return words.astype(np.uint32)


def _merge_views(doc_json: dict, view_data: list[bytes], ctx: Context
                 ) -> tuple[list[bytes], int]:
    """Concatenate views holding the same kind of accessor data (in place on doc_json).
    Returns the new per-view bytes and how many views were folded into others."""
    views = doc_json.get("bufferViews", [])
    accessors = doc_json.get("accessors", [])
    external: set[int] = set()
    for key, value in doc_json.items():
        if key not in ("accessors", "bufferViews", "images"):
            _collect_view_refs(value, external)
    for acc in accessors:
        _collect_view_refs(acc.get("extensions", {}), external)
    if external or any("sparse" in a for a in accessors):
        ctx.logger.info("meshopt: views left unmerged: sparse accessors or extensions "
                        "address views directly")
        return view_data, 0
    plans = _plan_views(doc_json)
    kinds = _view_kinds(doc_json)
    groups: dict[tuple, list[int]] = {}
    for v, view in enumerate(views):
        if v not in plans or kinds.get(v) is None:
            continue
        mode, stride = plans[v]
        if mode == "ATTRIBUTES" and len(view_data[v]) % stride:
            continue
        if mode != "ATTRIBUTES" and len(view_data[v]) % (3 * stride if mode == "TRIANGLES"
                                                          else stride):
            continue
        key = (mode, stride, kinds[v], view.get("target"), "byteStride" in view)
        groups.setdefault(key, []).append(v)
    new_index = list(range(len(views)))
    drop: set[int] = set()
    for key, members in groups.items():
        if len(members) < 2:
            continue
        first = members[0]
        # Keep accessors 4-byte aligned, and index data whole triangles (TRIANGLES mode).
        align = 12 if key[0] == "TRIANGLES" else 4
        parts = []
        pos = 0
        for v in members:
            pad = (-pos) % align
            parts.append(b"\0" * pad)
            pos += pad
            for acc in accessors:
                if acc.get("bufferView") == v:
                    acc["byteOffset"] = int(acc.get("byteOffset", 0)) + pos
            parts.append(view_data[v])
            pos += len(view_data[v])
            if v != first:
                drop.add(v)
                new_index[v] = first
        view_data[first] = b"".join(parts)
        views[first]["byteLength"] = len(view_data[first])
        if key[0] == "ATTRIBUTES" and views[first].get("target") == 34962:
            views[first]["byteStride"] = key[1]  # several vertex accessors share it now
    if not drop:
        return view_data, 0
    keep = [v for v in range(len(views)) if v not in drop]
    position = {v: k for k, v in enumerate(keep)}
    for acc in accessors:
        if "bufferView" in acc:
            acc["bufferView"] = position[new_index[acc["bufferView"]]]
    for image in doc_json.get("images", []):
        if "bufferView" in image:
            image["bufferView"] = position[image["bufferView"]]
    doc_json["bufferViews"] = [views[v] for v in keep]
    return [view_data[v] for v in keep], len(drop)


def _view_kinds(doc_json: dict) -> dict[int, tuple]:
    """What each view holds, when all its accessors hold the same kind of data:
    (usage, componentType, type, normalized); usage is e.g. "attr:NORMAL", "anim:rotation"."""
    usage: dict[int, set[str]] = {}

    def use(acc: int | None, what: str) -> None:
        if isinstance(acc, int):
            usage.setdefault(acc, set()).add(what)

    for mesh in doc_json.get("meshes", []):
        for prim in mesh.get("primitives", []):
            for name, acc in prim.get("attributes", {}).items():
                use(acc, "attr:" + (name if name.startswith("_") else name.split("_")[0]))
            for target in prim.get("targets", []):
                for name, acc in target.items():
                    use(acc, "target:" + name.split("_")[0])
            use(prim.get("indices"), "index")
    for anim in doc_json.get("animations", []):
        samplers = anim.get("samplers", [])
        for channel in anim.get("channels", []):
            s = channel.get("sampler")
            if isinstance(s, int) and 0 <= s < len(samplers):
                path = channel.get("target", {}).get("path", "?")
                use(samplers[s].get("input"), "anim:input")
                use(samplers[s].get("output"), "anim:" + path)
    for skin in doc_json.get("skins", []):
        use(skin.get("inverseBindMatrices"), "skin")
    by_view: dict[int, set[tuple]] = {}
    for a, acc in enumerate(doc_json.get("accessors", [])):
        if "bufferView" not in acc:
            continue
        uses = usage.get(a, {"?"})
        kind = (min(uses) if len(uses) == 1 else "?", acc.get("componentType"),
                acc.get("type"), bool(acc.get("normalized", False)))
        by_view.setdefault(acc["bufferView"], set()).add(kind)
    return {v: next(iter(k)) for v, k in by_view.items() if len(k) == 1 and
            next(iter(k))[0] != "?"}


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
            index_sizes = {_INDEX_BYTES.get(accessors[a]["componentType"]) for a in accs}
            size = index_sizes.pop() if len(index_sizes) == 1 else None
            if size is None or "byteStride" in view or length % size:
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
        decoded = decode_buffer(encoded, attempt[0], count, stride)
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
