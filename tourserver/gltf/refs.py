"""Reference walking: one rule for "what uses this mesh, material, texture, image, sampler,
skin or accessor", shared by every transform that renumbers, removes or rewrites objects.

A reference is a (container, key) pair: `container[key]` holds an index. Walking yields
every such pair for one kind of object, so renumbering after a removal, finding what is
unused and redirecting duplicates all follow the same places.
"""

from __future__ import annotations

from collections.abc import Iterator

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
KEYED_EXTENSIONS = frozenset(e for e in KNOWN_EXTENSIONS if e.startswith("KHR_materials_")) | {
    "KHR_texture_transform", "KHR_texture_basisu", "EXT_texture_webp", "EXT_texture_avif",
    "EXT_mesh_gpu_instancing"}
# Extensions that address bufferViews or other buffers: the binary chunk is left as it is.
OPAQUE_BUFFER_EXTENSIONS = frozenset({"EXT_meshopt_compression", "KHR_draco_mesh_compression"})

Ref = tuple[dict, str]  # (container, key): container[key] is an index


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


def primitives(doc_json: dict) -> Iterator[dict]:
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
    for prim in primitives(doc_json):
        if "material" in prim:
            yield prim, "material"
        variants = prim.get("extensions", {}).get("KHR_materials_variants", {})
        for mapping in variants.get("mappings", []):
            if "material" in mapping:
                yield mapping, "material"


def texture_slots(material: dict) -> Iterator[tuple[str, dict]]:
    """(path, texture info) for every texture-info object (`{"index": N, ...}`) in a
    material, in core fields and in any extension (clearcoat, sheen, specular, ...), found
    generically; extras are skipped. The path names the slot:
    "pbrMetallicRoughness.baseColorTexture", "extensions.KHR_materials_sheen...."."""
    stack: list[tuple[str, object]] = [("", material)]
    while stack:
        path, obj = stack.pop()
        if isinstance(obj, dict):
            if isinstance(obj.get("index"), int) and obj is not material:
                yield path, obj
            stack.extend((f"{path}.{k}" if path else k, v)
                         for k, v in reversed(list(obj.items())) if k != "extras")
        elif isinstance(obj, list):
            stack.extend((f"{path}[{i}]", v) for i, v in reversed(list(enumerate(obj))))


def texture_infos(material: dict) -> Iterator[dict]:
    """Every texture-info object in a material (`texture_slots` without the paths)."""
    return (info for _, info in texture_slots(material))


def texture_refs(doc_json: dict) -> Iterator[Ref]:
    for material in doc_json.get("materials", []):
        for info in texture_infos(material):
            yield info, "index"
    metadata = doc_json.get("extensions", {}).get("EXT_structural_metadata", {})
    for table in metadata.get("propertyTextures", []):
        for prop in table.get("properties", {}).values():
            if isinstance(prop, dict) and "index" in prop:
                yield prop, "index"
    for prim in primitives(doc_json):
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
        names = [e for e in doc_json[field] if e in present or e not in KEYED_EXTENSIONS]
        if names:
            doc_json[field] = names
        else:
            doc_json.pop(field)


# Material extensions that read tangents (besides a normalTexture anywhere in a material).
TANGENT_EXTENSIONS = frozenset({"KHR_materials_anisotropy"})
# Material extensions known not to read tangents or texture coordinates beyond their own
# texture infos (which `material_texture_infos` finds); with any other, nothing is dropped.
PLAIN_MATERIAL_EXTENSIONS = frozenset(
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


def accessor_refs(doc_json: dict) -> Iterator[Ref]:
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
