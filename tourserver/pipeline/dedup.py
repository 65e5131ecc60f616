"""Merge duplicates: identical images, samplers, textures, materials, accessors and meshes.

Why: exporters write one copy per object even when objects share a texture, a material or
the very same geometry (a street of identical lamps is often N meshes with N identical
vertex buffers). Each copy is bytes on a phone's network and a separate GPU upload.

How: each kind is keyed by what it is (an image by its bytes, an accessor by its type and
data, a texture by its image and sampler, a material or mesh by its JSON once the
references inside it point at the survivors); every reference to a duplicate is redirected
to the first copy and the duplicates are removed. References are found everywhere they can
be: primitives, morph targets, skins, animations, instancing, texture infos in core and
extension material fields (found generically), KHR_materials_variants mappings and
EXT_structural_metadata / EXT_mesh_features textures.

Names: by default (`keep_unique_names=False`, like glTF-Transform) two materials or meshes
that differ only in name are merged and the first one's name is kept; node names are never
touched. Documents with an extension we do not know are left unchanged (it may refer to
objects by index), and so are accessors in compressed (meshopt/Draco) buffers.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Callable, Hashable
from dataclasses import dataclass

from tourserver.gltf.buffers import prune_accessors, repack
from tourserver.gltf.document import Document
from tourserver.gltf.refs import (
    OPAQUE_BUFFER_EXTENSIONS,
    REF_WALKERS,
    accessor_refs,
    remove_items,
    unknown_extensions,
)
from tourserver.pipeline.base import Context


def _canonical(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True)
class Dedup:
    """Merge identical accessors, meshes, materials, textures (and samplers) and images."""

    accessors: bool = True
    meshes: bool = True
    materials: bool = True
    textures: bool = True  # samplers are merged with textures
    images: bool = True
    keep_unique_names: bool = False  # True: objects with different names are never merged
    name: str = "dedup"

    def __call__(self, doc: Document, ctx: Context) -> Document:
        new_json = copy.deepcopy(doc.json)
        unknown = unknown_extensions(new_json)
        if unknown:
            ctx.logger.info("dedup: left unchanged: the extensions %s may refer to objects "
                            "by index", ", ".join(unknown))
            return Document(new_json, doc.bin, doc.source)
        opaque = bool(set(new_json.get("extensionsUsed", [])) & OPAQUE_BUFFER_EXTENSIONS
                      or len(new_json.get("buffers", [])) > 1)
        counts: dict[str, int] = {}
        # Order matters: textures compare after images merge, materials after textures, ...
        if self.images:
            counts["images"] = self._merge(new_json, "images", _image_key(doc))
        if self.textures:
            counts["samplers"] = self._merge(new_json, "samplers", self._json_key)
            counts["textures"] = self._merge(new_json, "textures", self._json_key)
        if self.materials:
            counts["materials"] = self._merge(new_json, "materials", self._json_key)
        if self.accessors:
            if opaque:
                ctx.logger.info("dedup: accessors left as they are: their buffers are "
                                "compressed")
            else:
                counts["accessors"] = _merge_accessors(doc, new_json)
        if self.meshes:
            counts["meshes"] = self._merge(new_json, "meshes", self._json_key)
        for kind, n in counts.items():
            ctx.add(f"dedup.{kind}", n)
        if not (counts.get("accessors") or counts.get("images")) or opaque:
            # Only JSON changed (or the buffers are not ours to rebuild): keep the bytes.
            return Document(new_json, doc.bin, doc.source)
        prune_accessors(new_json)  # the merged-away copies (every extension here is known)
        return repack(doc, new_json, {})

    def _json_key(self, index: int, item: dict) -> Hashable:
        if self.keep_unique_names:
            return _canonical(item)
        return _canonical({k: v for k, v in item.items() if k != "name"})

    @staticmethod
    def _merge(doc_json: dict, kind: str, key: Callable[[int, dict], Hashable | None]) -> int:
        """Point every reference to a duplicate at the first copy; remove the duplicates."""
        items = doc_json.get(kind, [])
        first: dict[Hashable, int] = {}
        target = list(range(len(items)))
        for i, item in enumerate(items):
            k = key(i, item)
            if k is not None:
                target[i] = first.setdefault(k, i)
        duplicates = sum(1 for i, t in enumerate(target) if t != i)
        if not duplicates:
            return 0
        for container, ref_key in list(REF_WALKERS[kind](doc_json)):
            container[ref_key] = target[container[ref_key]]
        remove_items(doc_json, kind, [t == i for i, t in enumerate(target)])
        return duplicates


def _image_key(doc: Document) -> Callable[[int, dict], Hashable | None]:
    def key(index: int, image: dict) -> Hashable | None:
        rest = {k: v for k, v in image.items() if k not in ("name", "bufferView")}
        if "bufferView" in image:
            digest = hashlib.sha256(doc.buffer_view_bytes(image["bufferView"])).hexdigest()
        elif "uri" in image:
            digest = ""
        else:
            return None
        return digest, _canonical(rest)

    return key


def _accessor_roles(doc_json: dict) -> dict[int, set[str]]:
    """What each accessor is used as: index and vertex data live in differently typed
    bufferViews, so an accessor is only merged with copies used the same way."""
    roles: dict[int, set[str]] = {}

    def add(index: int, role: str) -> None:
        roles.setdefault(index, set()).add(role)

    for mesh in doc_json.get("meshes", []):
        for prim in mesh.get("primitives", []):
            for a in prim.get("attributes", {}).values():
                add(a, "vertex")
            for target in prim.get("targets", []):
                for a in target.values():
                    add(a, "vertex")
            if "indices" in prim:
                add(prim["indices"], "index")
    for skin in doc_json.get("skins", []):
        if "inverseBindMatrices" in skin:
            add(skin["inverseBindMatrices"], "skin")
    for anim in doc_json.get("animations", []):
        for sampler in anim.get("samplers", []):
            # The validator tells sampler inputs (time) from outputs: never merge the two.
            add(sampler["input"], "animation-input")
            add(sampler["output"], "animation-output")
    for node in doc_json.get("nodes", []):
        inst = node.get("extensions", {}).get("EXT_mesh_gpu_instancing", {})
        for a in inst.get("attributes", {}).values():
            add(a, "instance")
    return roles


def _merge_accessors(doc: Document, doc_json: dict) -> int:
    """Redirect references to byte-identical accessors (same type, component type,
    normalisation, count and data) to the first one; `prune_accessors` drops the rest."""
    accessors = doc_json.get("accessors", [])
    roles = _accessor_roles(doc_json)
    first: dict[Hashable, int] = {}
    target = list(range(len(accessors)))
    for i, acc in enumerate(accessors):
        if "bufferView" not in acc or "sparse" in acc or not roles.get(i):
            continue  # sparse and zero-filled accessors are cheap and left alone
        data = doc.read_accessor(i)
        rest = {k: v for k, v in acc.items()
                if k not in ("bufferView", "byteOffset", "name", "min", "max")}
        key = (tuple(sorted(roles[i])), _canonical(rest), hashlib.sha256(data.tobytes()).digest())
        target[i] = first.setdefault(key, i)
        survivor = accessors[target[i]]
        if survivor is not acc and "min" in acc and "min" not in survivor:
            survivor["min"], survivor["max"] = acc["min"], acc["max"]  # same data: same bounds
    duplicates = sum(1 for i, t in enumerate(target) if t != i)
    if duplicates:
        for container, ref_key in accessor_refs(doc_json):
            container[ref_key] = target[container[ref_key]]
    return duplicates
