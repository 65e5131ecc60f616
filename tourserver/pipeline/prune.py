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

The reference walkers here (`material_texture_infos`, `texture_refs`, `image_refs`, ...)
are shared with `dedup`, which redirects references and then removes the duplicates with
`remove_items`.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass

from tourserver.ingest.gltf_io import Document
from tourserver.pipeline.base import Context
from tourserver.pipeline.repack import prune_accessors, repack

# Extensions whose references to meshes, materials, textures, images, samplers, skins and
# accessors (if they have any) this module walks and renumbers. With any other extension in
# the document nothing is pruned.
KNOWN_EXTENSIONS = frozenset({
    "KHR_materials_anisotropy", "KHR_materials_clearcoat", "KHR_materials_diffuse_transmission",
    "KHR_materials_dispersion", "KHR_materials_emissive_strength", "KHR_materials_ior",
    "KHR_materials_iridescence", "KHR_materials_pbrSpecularGlossiness", "KHR_materials_sheen",
    "KHR_materials_specular", "KHR_materials_transmission", "KHR_materials_unlit",
    "KHR_materials_variants", "KHR_materials_volume", "KHR_texture_transform",
    "KHR_lights_punctual", "KHR_mesh_quantization", "KHR_texture_basisu", "EXT_texture_webp",
    "EXT_texture_avif", "EXT_mesh_gpu_instancing", "EXT_structural_metadata",
    "EXT_mesh_features", "EXT_meshopt_compression", "KHR_draco_mesh_compression",
    "KHR_xmp_json_ld",
})
# Extensions that only ever appear as keys of "extensions" objects: once no object carries
# them any more they can leave extensionsUsed (KHR_mesh_quantization, for one, never does).
_KEYED_EXTENSIONS = frozenset(e for e in KNOWN_EXTENSIONS if e.startswith("KHR_materials_")) | {
    "KHR_texture_transform", "KHR_texture_basisu", "EXT_texture_webp", "EXT_texture_avif",
    "EXT_mesh_gpu_instancing"}
# Extensions that address bufferViews or other buffers: the binary chunk is left as it is.
OPAQUE_BUFFER_EXTENSIONS = frozenset({"EXT_meshopt_compression", "KHR_draco_mesh_compression"})

Ref = tuple[dict | list, str | int]  # (container, key): container[key] is an index


def carried_extensions(obj: object) -> set[str]:
    """Names of the extensions objects carry anywhere below `obj` (extras not looked into)."""
    found: set[str] = set()

    def walk(node: object) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "extras":
                    continue
                if key == "extensions" and isinstance(value, dict):
                    found.update(value)
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(obj)
    return found


def extensions_in(doc_json: dict) -> set[str]:
    """Every extension the document declares or carries."""
    declared = set(doc_json.get("extensionsUsed", [])) | set(
        doc_json.get("extensionsRequired", []))
    return declared | carried_extensions(doc_json)


def unknown_extensions(doc_json: dict) -> list[str]:
    return sorted(extensions_in(doc_json) - KNOWN_EXTENSIONS)


def _primitives(doc_json: dict) -> Iterator[dict]:
    for mesh in doc_json.get("meshes", []):
        yield from mesh.get("primitives", [])


def mesh_refs(doc_json: dict) -> Iterator[Ref]:
    for node in doc_json.get("nodes", []):
        if "mesh" in node:
            yield node, "mesh"


def skin_refs(doc_json: dict) -> Iterator[Ref]:
    for node in doc_json.get("nodes", []):
        if "skin" in node:
            yield node, "skin"


def material_refs(doc_json: dict) -> Iterator[Ref]:
    for prim in _primitives(doc_json):
        if "material" in prim:
            yield prim, "material"
        variants = prim.get("extensions", {}).get("KHR_materials_variants", {})
        for mapping in variants.get("mappings", []):
            if "material" in mapping:
                yield mapping, "material"


def material_texture_infos(material: dict) -> Iterator[dict]:
    """Every texture-info object (`{"index": N, ...}`) in a material, in core fields and in
    any extension (clearcoat, sheen, specular, ...), found generically; extras are skipped."""
    stack: list = [material]
    while stack:
        obj = stack.pop()
        if isinstance(obj, dict):
            if isinstance(obj.get("index"), int) and obj is not material:
                yield obj
            stack.extend(v for k, v in reversed(list(obj.items())) if k != "extras")
        elif isinstance(obj, list):
            stack.extend(reversed(obj))


def texture_refs(doc_json: dict) -> Iterator[Ref]:
    for material in doc_json.get("materials", []):
        for info in material_texture_infos(material):
            yield info, "index"
    metadata = doc_json.get("extensions", {}).get("EXT_structural_metadata", {})
    for table in metadata.get("propertyTextures", []):
        for prop in table.get("properties", {}).values():
            if isinstance(prop, dict) and "index" in prop:
                yield prop, "index"
    for prim in _primitives(doc_json):
        features = prim.get("extensions", {}).get("EXT_mesh_features", {})
        for feature_id in features.get("featureIds", []):
            texture = feature_id.get("texture")
            if isinstance(texture, dict) and "index" in texture:
                yield texture, "index"


def image_refs(doc_json: dict) -> Iterator[Ref]:
    for texture in doc_json.get("textures", []):
        if "source" in texture:
            yield texture, "source"
        for ext in texture.get("extensions", {}).values():  # webp, basisu, avif, dds
            if isinstance(ext, dict) and isinstance(ext.get("source"), int):
                yield ext, "source"


def sampler_refs(doc_json: dict) -> Iterator[Ref]:
    for texture in doc_json.get("textures", []):
        if "sampler" in texture:
            yield texture, "sampler"


REF_WALKERS = {"meshes": mesh_refs, "skins": skin_refs, "materials": material_refs,
               "textures": texture_refs, "images": image_refs, "samplers": sampler_refs}


def remove_items(doc_json: dict, kind: str, keep: list[bool]) -> int:
    """Drop the items of `kind` whose `keep` flag is False and renumber every reference
    (in place). The caller guarantees nothing refers to a dropped item. Returns the count."""
    items = doc_json.get(kind, [])
    if all(keep):
        return 0
    remap: dict[int, int] = {}
    kept: list = []
    for i, item in enumerate(items):
        if keep[i]:
            remap[i] = len(kept)
            kept.append(item)
    for container, key in list(REF_WALKERS[kind](doc_json)):
        container[key] = remap[container[key]]
    if kept:
        doc_json[kind] = kept
    else:
        doc_json.pop(kind, None)
    return len(items) - len(kept)


def used(doc_json: dict, kind: str) -> list[bool]:
    flags = [False] * len(doc_json.get(kind, []))
    for container, key in REF_WALKERS[kind](doc_json):
        if 0 <= container[key] < len(flags):
            flags[container[key]] = True
    return flags


def drop_unused_extension_names(doc_json: dict) -> None:
    """Remove from extensionsUsed/Required the extensions no object carries any more."""
    present = carried_extensions(
        {k: v for k, v in doc_json.items() if k not in ("extensionsUsed", "extensionsRequired")})
    for field in ("extensionsUsed", "extensionsRequired"):
        if field not in doc_json:
            continue
        names = [e for e in doc_json[field] if e in present or e not in _KEYED_EXTENSIONS]
        if names:
            doc_json[field] = names
        else:
            doc_json.pop(field)


# Material extensions that read tangents (besides a normalTexture anywhere in a material).
_TANGENT_EXTENSIONS = frozenset({"KHR_materials_anisotropy"})
# Material extensions known not to read tangents or texture coordinates beyond their own
# texture infos (which `material_texture_infos` finds); with any other, nothing is dropped.
_PLAIN_MATERIAL_EXTENSIONS = frozenset(
    e for e in KNOWN_EXTENSIONS if e.startswith("KHR_materials_")) | {"KHR_texture_transform"}


def samples_normal_map(material: dict) -> bool:
    """Whether a material samples a normal map anywhere (normalTexture, or an extension's
    clearcoatNormalTexture, ...): a normal map reads tangents, and bends normals."""
    stack: list = [material]
    while stack:
        obj = stack.pop()
        if isinstance(obj, dict):
            for key, value in obj.items():
                if key == "extras":
                    continue
                if key.lower().endswith("normaltexture") and isinstance(value, dict):
                    return True
                stack.append(value)
        elif isinstance(obj, list):
            stack.extend(obj)
    return False


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
    prims = list(_primitives(doc_json))
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
    if any(carried_extensions(m) - _PLAIN_MATERIAL_EXTENSIONS for m in chosen):
        return set()
    sampled: set[int] = set()
    tangents = False
    for material in chosen:
        tangents |= bool(_TANGENT_EXTENSIONS & carried_extensions(material))
        tangents |= samples_normal_map(material)
        for info in material_texture_infos(material):
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
