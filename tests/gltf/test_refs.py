"""Reference walking: one rule for what a material's textures are, with the slot names."""

from __future__ import annotations

from tourserver.gltf.refs import texture_infos, texture_slots


def test_texture_slots_name_core_and_extension_slots_and_skip_extras():
    material = {
        "pbrMetallicRoughness": {"baseColorTexture": {"index": 0},
                                 "metallicRoughnessTexture": {"index": 1, "texCoord": 1}},
        "normalTexture": {"index": 2, "scale": 0.5},
        "extensions": {"KHR_materials_clearcoat": {
            "clearcoatTexture": {"index": 3},
            "clearcoatNormalTexture": {"index": 4}}},
        "extras": {"bakedFrom": {"index": 9}},  # an app's own data: not a texture
    }
    assert [(path, info["index"]) for path, info in texture_slots(material)] == [
        ("pbrMetallicRoughness.baseColorTexture", 0),
        ("pbrMetallicRoughness.metallicRoughnessTexture", 1),
        ("normalTexture", 2),
        ("extensions.KHR_materials_clearcoat.clearcoatTexture", 3),
        ("extensions.KHR_materials_clearcoat.clearcoatNormalTexture", 4),
    ]
    assert [info["index"] for info in texture_infos(material)] == [0, 1, 2, 3, 4]
    assert all(info is material["pbrMetallicRoughness"]["metallicRoughnessTexture"]
               for path, info in texture_slots(material) if path.endswith("RoughnessTexture"))
