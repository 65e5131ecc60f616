"""Rebuild a document's binary buffer: new data for some views, unused views dropped."""

from __future__ import annotations

import copy

import numpy as np

from tourserver.ingest.gltf_io import Document

# Extensions whose JSON points at bufferViews in ways we do not rewrite: keep every view.
_VIEW_REFERENCING_EXTENSIONS = {"EXT_meshopt_compression", "KHR_draco_mesh_compression",
                                "EXT_structural_metadata", "EXT_mesh_features"}


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


def _accessor_refs(doc_json: dict):
    """Yield (container, key) for every place that holds an accessor index."""
    for mesh in doc_json.get("meshes", []):
        for prim in mesh.get("primitives", []):
            attrs = prim.get("attributes", {})
            yield from ((attrs, k) for k in attrs)
            if "indices" in prim:
                yield prim, "indices"
            for target in prim.get("targets", []):
                yield from ((target, k) for k in target)
    for skin in doc_json.get("skins", []):
        if "inverseBindMatrices" in skin:
            yield skin, "inverseBindMatrices"
    for anim in doc_json.get("animations", []):
        for sampler in anim.get("samplers", []):
            yield sampler, "input"
            yield sampler, "output"
    for node in doc_json.get("nodes", []):
        inst = node.get("extensions", {}).get("EXT_mesh_gpu_instancing", {}).get("attributes", {})
        yield from ((inst, k) for k in inst)


def prune_accessors(doc_json: dict) -> None:
    """Drop accessors nothing refers to, renumbering the references (in place)."""
    accessors = doc_json.get("accessors", [])
    refs = list(_accessor_refs(doc_json))
    used = sorted({container[key] for container, key in refs})
    if len(used) == len(accessors):
        return
    remap = {old: new for new, old in enumerate(used)}
    doc_json["accessors"] = [accessors[i] for i in used]
    for container, key in refs:
        container[key] = remap[container[key]]


def repack(doc: Document, new_json: dict, payloads: dict[int, bytes]) -> Document:
    """Write a new binary chunk for new_json. Views in `payloads` take that data; other
    views keep the old bytes. Views nothing references are dropped and indices renumbered."""
    if not (set(new_json.get("extensionsUsed", [])) - _KNOWN_ACCESSOR_SAFE):
        prune_accessors(new_json)
    views = new_json.get("bufferViews", [])
    keep_all = bool(_VIEW_REFERENCING_EXTENSIONS & set(new_json.get("extensionsUsed", [])))
    used = set(range(len(views))) if keep_all else set()
    if not keep_all:
        for acc in new_json.get("accessors", []):
            if "bufferView" in acc:
                used.add(acc["bufferView"])
        for image in new_json.get("images", []):
            if "bufferView" in image:
                used.add(image["bufferView"])
    order = sorted(used)
    remap = {old: new for new, old in enumerate(order)}
    chunks: list[bytes] = []
    new_views = []
    offset = 0
    for old in order:
        data = payloads[old] if old in payloads else doc.buffer_view_bytes(old)
        pad = (-offset) % 4  # accessors need component alignment; 4 covers every type
        chunks.append(b"\0" * pad)
        offset += pad
        view = {k: v for k, v in views[old].items() if k not in ("byteOffset", "byteLength")}
        view.update({"buffer": 0, "byteOffset": offset, "byteLength": len(data)})
        new_views.append(view)
        chunks.append(data)
        offset += len(data)
    out = copy.deepcopy(new_json) if new_json is doc.json else new_json
    out["bufferViews"] = new_views
    if not new_views:
        out.pop("bufferViews")
    for acc in out.get("accessors", []):
        if "bufferView" in acc:
            acc["bufferView"] = remap[acc["bufferView"]]
    for image in out.get("images", []):
        if "bufferView" in image:
            image["bufferView"] = remap[image["bufferView"]]
    return Document(out, b"".join(chunks), doc.source)
