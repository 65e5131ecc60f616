"""Rebuild a document's binary buffer: new data for some views, unused views dropped."""

from __future__ import annotations

import copy

import numpy as np

from tourserver.gltf.document import ChunkWriter, Document
from tourserver.gltf.refs import accessor_refs

# Extensions whose JSON points at bufferViews in ways we do not rewrite: keep every view.
_VIEW_REFERENCING_EXTENSIONS = {"EXT_meshopt_compression", "KHR_draco_mesh_compression"}


def _metadata_view_refs(doc_json: dict):
    """(container, key) of every bufferView index in EXT_structural_metadata property
    tables: the only view references of the metadata extensions (attributes and textures
    go through accessors and textures)."""
    meta = doc_json.get("extensions", {}).get("EXT_structural_metadata", {})
    for table in meta.get("propertyTables", []):
        for prop in table.get("properties", {}).values():
            for key in ("values", "arrayOffsets", "stringOffsets"):
                if isinstance(prop.get(key), int):
                    yield prop, key


# Extensions we know do not hold accessor indices we fail to see (pruning is safe with them).
_KNOWN_ACCESSOR_SAFE = {"KHR_materials_emissive_strength", "KHR_materials_clearcoat",
                        "KHR_materials_sheen", "KHR_materials_transmission",
                        "KHR_materials_volume", "KHR_materials_ior", "KHR_materials_specular",
                        "KHR_materials_unlit", "KHR_materials_anisotropy",
                        "KHR_materials_iridescence", "KHR_materials_variants",
                        "KHR_texture_transform", "KHR_lights_punctual", "KHR_mesh_quantization",
                        "EXT_mesh_gpu_instancing", "EXT_texture_webp", "KHR_texture_basisu"}


class BufferBuilder:
    """Collects bufferView payloads for a new binary chunk."""

    def __init__(self, doc_json: dict):
        self.views: list[dict] = doc_json.setdefault("bufferViews", [])
        self.payloads: dict[int, bytes] = {}

    def add_view(self, data: bytes, target: int | None = None) -> int:
        view: dict = {"buffer": 0, "byteLength": len(data)}
        if target is not None:
            view["target"] = target
        self.views.append(view)
        index = len(self.views) - 1
        self.payloads[index] = data
        return index

    def add_accessor(self, doc_json: dict, array: np.ndarray, *, target: int | None,
                     with_bounds: bool = False) -> int:
        """Append an accessor (and its view) for a float32/uint16/uint32 array."""
        array = np.ascontiguousarray(array)
        ctype = {np.dtype(np.float32): 5126, np.dtype(np.uint16): 5123,
                 np.dtype(np.uint32): 5125, np.dtype(np.uint8): 5121}[array.dtype]
        ncomp = 1 if array.ndim == 1 else array.shape[1]
        acc: dict = {"bufferView": self.add_view(array.tobytes(), target),
                     "componentType": ctype, "count": int(array.shape[0]),
                     "type": {1: "SCALAR", 2: "VEC2", 3: "VEC3", 4: "VEC4"}[ncomp]}
        if with_bounds and array.shape[0]:
            flat = array.reshape(array.shape[0], ncomp)
            acc["min"] = [float(v) for v in flat.min(axis=0)]
            acc["max"] = [float(v) for v in flat.max(axis=0)]
        accessors = doc_json.setdefault("accessors", [])
        accessors.append(acc)
        return len(accessors) - 1


def prune_accessors(doc_json: dict) -> None:
    """Drop accessors nothing refers to, renumbering the references (in place)."""
    accessors = doc_json.get("accessors", [])
    refs = list(accessor_refs(doc_json))
    used = sorted({container[key] for container, key in refs})
    if len(used) == len(accessors):
        return
    remap = {old: new for new, old in enumerate(used)}
    doc_json["accessors"] = [accessors[i] for i in used]
    for container, key in refs:
        container[key] = remap[container[key]]


class _Overlay(Document):
    """The old document's bytes, with some views replaced: what the new JSON points at."""

    def __init__(self, doc: Document, new_json: dict, payloads: dict[int, bytes]):
        super().__init__(new_json, doc.bin, doc.source)
        self._base = doc
        self._payloads = payloads

    def buffer_view_bytes(self, index: int) -> bytes:
        if index in self._payloads:
            return self._payloads[index]
        return self._base.buffer_view_bytes(index)


def pack_accessor(data: np.ndarray, ncomp: int) -> tuple[bytes, int | None]:
    """Tightly packed bytes; vertex elements are padded to 4 bytes (glTF §3.6.2.4)."""
    itemsize = data.dtype.itemsize * ncomp
    if itemsize % 4 == 0:
        return data.tobytes(), None
    stride = itemsize + (-itemsize) % 4
    out = np.zeros((len(data), stride), dtype=np.uint8)
    out[:, :itemsize] = data.reshape(len(data), -1).view(np.uint8).reshape(len(data), itemsize)
    return out.tobytes(), stride


def repack(doc: Document, new_json: dict, payloads: dict[int, bytes]) -> Document:
    """Write a new binary chunk for new_json: every accessor gets its own tightly packed
    view (so data nothing uses is dropped even from shared or interleaved views), images
    keep their bytes, and views in `payloads` replace the old ones."""
    if new_json is doc.json:
        new_json = copy.deepcopy(new_json)
    if set(new_json.get("extensionsUsed", [])) & _VIEW_REFERENCING_EXTENSIONS:
        return _repack_views(doc, new_json, payloads)  # views are opaque to us: keep all
    if not (set(new_json.get("extensionsUsed", [])) - _KNOWN_ACCESSOR_SAFE):
        prune_accessors(new_json)
    source = _Overlay(doc, new_json, payloads)
    old_views = new_json.get("bufferViews", [])
    out = ChunkWriter()
    views: list[dict] = []

    def add(data: bytes, template: dict, stride: int | None) -> int:
        view = {k: v for k, v in template.items()
                if k not in ("byteOffset", "byteLength", "byteStride")}
        view.update({"buffer": 0, "byteOffset": out.append(data), "byteLength": len(data)})
        if stride:
            view["byteStride"] = stride
        views.append(view)
        return len(views) - 1

    whole_views: dict[int, int] = {}  # views copied as they are (images, sparse accessors)

    def keep_view(old: int) -> int:
        if old not in whole_views:
            template = old_views[old]
            whole_views[old] = add(source.buffer_view_bytes(old), template,
                                   template.get("byteStride"))
        return whole_views[old]

    accessors = new_json.get("accessors", [])
    for i, acc in enumerate(accessors):
        if "bufferView" not in acc:
            continue
        old = acc["bufferView"]
        if "sparse" in acc:
            acc["bufferView"] = keep_view(old)
            continue
        data = source.read_accessor(i)
        ncomp = data.shape[1]
        template = old_views[old]
        is_vertex = template.get("target") == 34962 or "byteStride" in template
        if is_vertex:
            packed, stride = pack_accessor(data, ncomp)
        else:
            packed, stride = data.tobytes(), None
        acc["bufferView"] = add(packed, template, stride)
        acc.pop("byteOffset", None)
    for image in new_json.get("images", []):
        if "bufferView" in image:
            image["bufferView"] = keep_view(image["bufferView"])
    for container, key in _metadata_view_refs(new_json):
        container[key] = keep_view(container[key])
    new_json["bufferViews"] = views
    if not views:
        new_json.pop("bufferViews")
    return Document(new_json, out.bytes(), doc.source)


def _repack_views(doc: Document, new_json: dict, payloads: dict[int, bytes]) -> Document:
    """Keep every view whole, in order (for extensions that address views directly)."""
    out = ChunkWriter()
    for i, view in enumerate(new_json.get("bufferViews", [])):
        data = payloads[i] if i in payloads else doc.buffer_view_bytes(i)
        view.update({"buffer": 0, "byteOffset": out.append(data), "byteLength": len(data)})
    return Document(new_json, out.bytes(), doc.source)
