"""Remove what nothing refers to: meshes, skins, materials, textures, samplers, images and
accessors (whose bufferViews `repack` then drops), and vertex attributes no material reads
(texture coordinate sets no texture samples, tangents without a normal map; see
`drop_unused_attributes`), as glTF-Transform's prune and gltfpack do.

Why: exporters leave behind materials of deleted objects, textures no material samples and
accessors of replaced geometry; after `dedup` the merged copies are unreferenced too. Every
one of them costs bytes on a phone's network and memory.

What is always kept: every node (names and hierarchy are the creator's data, and animations,
skins and lights point at nodes), every scene, animation, camera and light. A kind of object
is only pruned when we know every place that can refer to it: if the document uses an
extension this module does not know (it could hold indices we would not renumber), nothing
is pruned and the reason is logged.

What refers to what is `tourserver.gltf.refs`'s one rule, shared with `dedup`.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

from tourserver.gltf.buffers import prune_accessors, repack
from tourserver.gltf.document import Document
from tourserver.gltf.refs import (
    OPAQUE_BUFFER_EXTENSIONS,
    PLAIN_MATERIAL_EXTENSIONS,
    TANGENT_EXTENSIONS,
    carried_extensions,
    drop_unused_extension_names,
    primitives,
    remove_items,
    samples_normal_map,
    texture_infos,
    unknown_extensions,
    used,
)
from tourserver.pipeline.base import Context


def drop_unused_attributes(doc_json: dict) -> int:
    """Remove vertex attributes no material of a primitive can read: the highest-numbered
    TEXCOORD_n sets no texture info samples (the sets must stay numbered from 0 without
    gaps, so an unused set below a used one stays) and TANGENT where no material has a
    normal texture or anisotropy. Every material a primitive can show counts (its own, the
    default when it has none, and every KHR_materials_variants mapping). An accessor shared
    by several primitives goes only where none of them reads it: otherwise primitives that
    share vertex data would stop sharing it and the file would grow. Left alone: primitives
    with morph targets or other extensions, and documents with EXT_structural_metadata or
    EXT_mesh_features (their textures sample TEXCOORD sets too). Returns how many
    attribute references were removed."""
    if {"EXT_structural_metadata", "EXT_mesh_features"} & set(
            doc_json.get("extensionsUsed", [])):
        return 0
    prims = list(primitives(doc_json))
    unused = [_unused_attributes(doc_json, prim) for prim in prims]
    # (semantic, accessor) pairs that some primitive still reads
    needed = {(name, acc) for prim, drop in zip(prims, unused, strict=True)
              for name, acc in prim.get("attributes", {}).items() if name not in drop}
    removed = 0
    for prim, drop in zip(prims, unused, strict=True):
        attributes = prim.get("attributes", {})
        # Highest sets first, so TEXCOORD_n stay numbered without gaps.
        sets = sorted((n for n in drop if n.startswith("TEXCOORD_")),
                      key=lambda n: int(n[9:]), reverse=True)
        for name in sets:
            if (name, attributes[name]) in needed:
                break  # a lower set cannot go while this one stays
            del attributes[name]
            removed += 1
        if "TANGENT" in drop and ("TANGENT", attributes["TANGENT"]) not in needed:
            del attributes["TANGENT"]
            removed += 1
    return removed


def _unused_attributes(doc_json: dict, prim: dict) -> set[str]:
    """The attributes of `prim` that none of its materials reads (see
    drop_unused_attributes); empty where that cannot be known."""
    extensions = set(prim.get("extensions", {})) - {"KHR_materials_variants"}
    if extensions or prim.get("targets"):
        return set()
    materials = doc_json.get("materials", [])
    shown = [prim.get("material")] + [
        m.get("material") for m in
        prim.get("extensions", {}).get("KHR_materials_variants", {}).get("mappings", [])]
    chosen = [materials[i] if isinstance(i, int) and 0 <= i < len(materials) else {}
              for i in shown]
    if any(carried_extensions(m) - PLAIN_MATERIAL_EXTENSIONS for m in chosen):
        return set()
    sampled: set[int] = set()
    tangents = False
    for material in chosen:
        tangents |= bool(TANGENT_EXTENSIONS & carried_extensions(material))
        tangents |= samples_normal_map(material)
        for info in texture_infos(material):
            transform = info.get("extensions", {}).get("KHR_texture_transform", {})
            sampled.add(int(transform.get("texCoord", info.get("texCoord", 0))))
    attributes = prim.get("attributes", {})
    out: set[str] = set()
    for index in sorted((int(k[9:]) for k in attributes
                         if k.startswith("TEXCOORD_") and k[9:].isdigit()), reverse=True):
        if index in sampled:
            break  # this set stays, so every lower one does too
        out.add(f"TEXCOORD_{index}")
    if "TANGENT" in attributes and not tangents:
        out.add("TANGENT")
    return out


@dataclass(frozen=True)
class Prune:
    """Remove unreferenced meshes, skins, materials, textures, samplers, images, accessors,
    and (with `attributes`) vertex attributes no material reads."""

    attributes: bool = True  # unused TEXCOORD_n sets and tangents (see drop_unused_attributes)
    name: str = "prune"

    def __call__(self, doc: Document, ctx: Context) -> Document:
        new_json = copy.deepcopy(doc.json)
        unknown = unknown_extensions(new_json)
        if unknown:
            ctx.logger.info("prune: nothing pruned: the extensions %s may refer to objects "
                            "by index", ", ".join(unknown))
            return Document(new_json, doc.bin, doc.source)
        if self.attributes:
            ctx.add("prune.attributes", drop_unused_attributes(new_json))
        # Order matters: a mesh's removal can free materials, a material's textures, ...
        for kind in ("meshes", "skins", "materials", "textures", "samplers", "images"):
            removed = remove_items(new_json, kind, used(new_json, kind))
            ctx.add(f"prune.{kind}", removed)
        images_removed = removed  # the last kind: images hold bytes
        drop_unused_extension_names(new_json)
        accessors_before = len(new_json.get("accessors", []))
        prune_accessors(new_json)  # safe: every extension here is known (checked above)
        if not new_json.get("accessors", True):
            new_json.pop("accessors")  # glTF forbids empty arrays
        removed = accessors_before - len(new_json.get("accessors", []))
        ctx.add("prune.accessors", removed)
        if (set(new_json.get("extensionsUsed", [])) & OPAQUE_BUFFER_EXTENSIONS
                or len(new_json.get("buffers", [])) > 1):
            # Compressed views (and their fallback buffers) are not ours to rebuild.
            return Document(new_json, doc.bin, doc.source)
        if not removed and not images_removed and not _orphan_views(new_json):
            return Document(new_json, doc.bin, doc.source)  # no bytes to drop: keep the layout
        return repack(doc, new_json, {})


def _orphan_views(doc_json: dict) -> bool:
    """Whether some bufferView is referenced by no accessor or image (repack drops those)."""
    referenced: set[int] = set()
    for acc in doc_json.get("accessors", []):
        referenced.add(acc.get("bufferView", -1))
        sparse = acc.get("sparse", {})
        referenced.add(sparse.get("indices", {}).get("bufferView", -1))
        referenced.add(sparse.get("values", {}).get("bufferView", -1))
    referenced.update(image.get("bufferView", -1) for image in doc_json.get("images", []))
    return bool(set(range(len(doc_json.get("bufferViews", [])))) - referenced)
