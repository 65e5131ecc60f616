"""What each image is for, from the material slots that sample it: its role (colour or
data) and the channels a renderer reads from it.

Why channels: glTF materials read fixed channels of some textures (occlusion: R;
metallic-roughness: G and B; sheen roughness: A; ...). Errors in a channel nobody reads
cannot show, and such a channel can be filled with something that costs nothing: an
occlusion-only texture becomes grey (its R copied to G and B), which a lossy codec stores
without chroma, and an opaque material's base colour drops its alpha. glTF-Transform
tracks the same thing (`getTextureChannelMask`) to pick KTX2 channel layouts.
"""

from __future__ import annotations

import numpy as np

from tourserver.gltf.refs import texture_infos

ALL_CHANNELS = "RGBA"
# Material slots whose texture holds colour; every other *Texture slot holds data.
COLOUR_SLOTS = frozenset({"baseColorTexture", "emissiveTexture", "sheenColorTexture",
                          "specularColorTexture", "diffuseTexture",
                          "diffuseTransmissionColorTexture"})
# Material slots whose texture holds tangent-space normals (judged by the angle they turn).
NORMAL_SLOTS = frozenset({"normalTexture", "clearcoatNormalTexture"})
# Data whose R and G hold a direction (KHR_materials_anisotropy: the brushing direction in
# tangent space, B its strength): held to PSNR as data, but quantized (posterized, or
# reduced to a palette) only where its own texel noise masks the step, as normal maps are
# (`webp.unbanded_step`): posterizing the barn lamp's smooth anisotropy map at step 8
# visibly weakened its brushed streaks in a render (docs/textures.md).
DIRECTION_SLOTS = frozenset({"anisotropyTexture"})
# Channels read by each slot, as the glTF 2.0 spec and each extension's spec define them.
# baseColorTexture adds A for MASK and BLEND materials (see `_slot_channels`).
CORE_SLOT_CHANNELS = {
    "baseColorTexture": "RGB", "metallicRoughnessTexture": "GB", "normalTexture": "RGB",
    "occlusionTexture": "R", "emissiveTexture": "RGB",
}
EXTENSION_SLOT_CHANNELS = {
    ("KHR_materials_clearcoat", "clearcoatTexture"): "R",
    ("KHR_materials_clearcoat", "clearcoatRoughnessTexture"): "G",
    ("KHR_materials_clearcoat", "clearcoatNormalTexture"): "RGB",
    ("KHR_materials_sheen", "sheenColorTexture"): "RGB",
    ("KHR_materials_sheen", "sheenRoughnessTexture"): "A",
    ("KHR_materials_transmission", "transmissionTexture"): "R",
    ("KHR_materials_volume", "thicknessTexture"): "G",
    ("KHR_materials_specular", "specularTexture"): "A",
    ("KHR_materials_specular", "specularColorTexture"): "RGB",
    ("KHR_materials_iridescence", "iridescenceTexture"): "R",
    ("KHR_materials_iridescence", "iridescenceThicknessTexture"): "G",
    ("KHR_materials_anisotropy", "anisotropyTexture"): "RGB",
    ("KHR_materials_diffuse_transmission", "diffuseTransmissionTexture"): "A",
    ("KHR_materials_diffuse_transmission", "diffuseTransmissionColorTexture"): "RGB",
}
# Extensions that cannot make anything else read a texture. With any other in
# extensionsUsed (EXT_structural_metadata's property textures, say, or one we do not know)
# every image keeps all its channels.
_CHANNEL_SAFE_EXTENSIONS = frozenset(
    {ext for ext, _ in EXTENSION_SLOT_CHANNELS} | {
        "KHR_materials_emissive_strength", "KHR_materials_ior", "KHR_materials_dispersion",
        "KHR_materials_unlit", "KHR_materials_variants", "KHR_texture_transform",
        "KHR_lights_punctual", "KHR_mesh_quantization", "KHR_texture_basisu",
        "EXT_texture_webp", "EXT_texture_avif", "EXT_mesh_gpu_instancing",
        "EXT_meshopt_compression", "KHR_draco_mesh_compression", "KHR_xmp_json_ld"})


def _texture_images(doc_json: dict, index: object) -> list[int]:
    """The images a texture can show: its source and every extension's source."""
    textures = doc_json.get("textures", [])
    if not isinstance(index, int) or not 0 <= index < len(textures):
        return []
    tex = textures[index]
    sources = [tex.get("source")] + [e.get("source") for e in tex.get("extensions", {}).values()
                                     if isinstance(e, dict)]
    return [s for s in sources if isinstance(s, int)]


def _material_slots(material: dict) -> list[tuple[str, dict, str]]:
    """(slot name, texture info, channels read) for every texture info of a material;
    infos in places we do not know read all channels."""
    known: dict[int, tuple[str, str]] = {}
    pbr = material.get("pbrMetallicRoughness", {})
    for holder in (material, pbr):
        for slot, channels in CORE_SLOT_CHANNELS.items():
            info = holder.get(slot) if isinstance(holder, dict) else None
            if isinstance(info, dict):
                if slot == "baseColorTexture" and material.get("alphaMode") in ("MASK", "BLEND"):
                    channels += "A"
                known[id(info)] = (slot, channels)
    for ext_name, ext in material.get("extensions", {}).items():
        if isinstance(ext, dict):
            for slot, info in ext.items():
                ext_channels = EXTENSION_SLOT_CHANNELS.get((ext_name, slot))
                if ext_channels is not None and isinstance(info, dict):
                    known[id(info)] = (slot, ext_channels)
    found = []
    for info in texture_infos(material):
        slot, channels = known.get(id(info), ("", ALL_CHANNELS))
        found.append((slot, info, channels))
    return found


def image_roles(doc_json: dict) -> dict[int, str]:
    """{image index: "colour", "normal", "direction" or "data"} from the material slots
    that use each image. An image used in two roles is data (every channel held to PSNR:
    the strictest)."""
    roles: dict[int, str] = {}
    for material in doc_json.get("materials", []):
        for slot, info, _ in _material_slots(material):
            role = ("colour" if slot in COLOUR_SLOTS else
                    "normal" if slot in NORMAL_SLOTS else
                    "direction" if slot in DIRECTION_SLOTS else "data")
            for image in _texture_images(doc_json, info.get("index")):
                seen = roles.get(image, role)
                roles[image] = role if seen == role else "data"
    return roles


def image_channels(doc_json: dict) -> dict[int, str]:
    """{image index: the channels (of "RGBA", in that order) any material reads from it}.
    Images no material uses, and every image of a document with an extension that could
    read textures elsewhere, read all of "RGBA"."""
    count = len(doc_json.get("images", []))
    if set(doc_json.get("extensionsUsed", [])) - _CHANNEL_SAFE_EXTENSIONS:
        return dict.fromkeys(range(count), ALL_CHANNELS)
    read: dict[int, set[str]] = {}
    for material in doc_json.get("materials", []):
        for _, info, channels in _material_slots(material):
            for image in _texture_images(doc_json, info.get("index")):
                read.setdefault(image, set()).update(channels)
    return {i: "".join(c for c in ALL_CHANNELS if c in read.get(i, ALL_CHANNELS))
            for i in range(count)}


def fill_unread(pixels: np.ndarray, channels: str) -> np.ndarray:
    """RGBA `pixels` with the channels not in `channels` filled so they cost nothing to
    store: one colour channel read -> it is copied to all three (grey); none read -> black;
    alpha not read -> opaque. Two colour channels read: the third stays (filling it saves
    little and would be measured as an error). Returns `pixels` itself when nothing
    changes."""
    colour = [i for i, c in enumerate("RGB") if c in channels]
    if len(colour) == 1:
        kept = pixels[..., colour[0]:colour[0] + 1]
        grey = not bool((pixels[..., :3] == kept).all())
    else:
        grey = not colour and bool(pixels[..., :3].any())
    opaque = "A" not in channels and bool((pixels[..., 3] != 255).any())
    if not grey and not opaque:
        return pixels
    out = pixels.copy()
    if grey:
        out[..., :3] = kept if colour else 0
    if opaque:
        out[..., 3] = 255
    return out
