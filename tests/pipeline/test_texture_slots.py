"""Roles and read channels of images, from the material slots that sample them, and the
filling of channels no material reads."""

import io

import numpy as np
import pytest
from PIL import Image
from test_texture_encode import DEFAULT, check_image, pixels, texture_image, textured_doc

from tourserver.gltf.buffers import repack
from tourserver.gltf.document import Document, parse_glb, write_glb
from tourserver.ingest.images import psnr
from tourserver.pipeline.base import run
from tourserver.pipeline.textures.cache import EncodeCache
from tourserver.pipeline.textures.encode import TextureEncode
from tourserver.pipeline.textures.metrics import ssimulacra2
from tourserver.pipeline.textures.slots import fill_unread, image_channels, image_roles


def _doc(materials: list[dict], images: int, extensions: list[str] | None = None) -> dict:
    doc = {"materials": materials, "images": [{"uri": f"{i}.png"} for i in range(images)],
           "textures": [{"source": i} for i in range(images)]}
    if extensions:
        doc["extensionsUsed"] = extensions
    return doc


def test_channels_follow_the_spec_of_each_slot():
    doc = _doc([
        {"occlusionTexture": {"index": 0},
         "pbrMetallicRoughness": {"metallicRoughnessTexture": {"index": 1},
                                  "baseColorTexture": {"index": 2}},
         "extensions": {"KHR_materials_sheen": {"sheenRoughnessTexture": {"index": 3}},
                        "KHR_materials_volume": {"thicknessTexture": {"index": 4}}}},
        {"alphaMode": "MASK", "pbrMetallicRoughness": {"baseColorTexture": {"index": 5}}},
        {"extensions": {"VENDOR_fancy": {"glowTexture": {"index": 6}}}},
    ], images=8, extensions=["KHR_materials_sheen", "KHR_materials_volume"])
    assert image_channels(doc) == {0: "R", 1: "GB", 2: "RGB", 3: "A", 4: "G", 5: "RGBA",
                                   6: "RGBA", 7: "RGBA"}  # 6: unknown slot; 7: unused


def test_an_image_shared_by_slots_reads_their_union():
    # Occlusion in R, metallic-roughness in G and B: one ORM texture.
    doc = _doc([{"occlusionTexture": {"index": 0},
                 "pbrMetallicRoughness": {"metallicRoughnessTexture": {"index": 0}}}], 1)
    assert image_channels(doc) == {0: "RGB"}
    assert image_roles(doc) == {0: "data"}


def test_an_anisotropy_map_is_a_map_of_directions():
    # Its R and G turn the brushing direction: quantized only where its noise masks it
    # (`webp.WebpOptions.direction`). Shared with another slot, it is plain data.
    aniso = {"KHR_materials_anisotropy": {"anisotropyTexture": {"index": 0}}}
    assert image_roles(_doc([{"extensions": aniso}], 1)) == {0: "direction"}
    shared = {"extensions": aniso, "occlusionTexture": {"index": 0}}
    assert image_roles(_doc([shared], 1)) == {0: "data"}
    x, y = np.meshgrid(np.linspace(40, 215, 128), np.linspace(60, 200, 128))
    smooth = np.dstack([x, y, np.full_like(x, 255.0)])
    data = io.BytesIO()
    Image.fromarray(np.rint(smooth).astype(np.uint8)).save(data, format="PNG")
    for role in ("direction", "data"):
        found = TextureEncode().encode_image(data.getvalue(), "image/png", role, "RGB", "t")
        assert found is not None
        quantized = found.posterize is not None or found.palette is not None
        assert quantized == (role == "data"), (role, found)


def test_an_extension_that_may_read_textures_elsewhere_keeps_every_channel():
    doc = _doc([{"occlusionTexture": {"index": 0}}], 1, ["EXT_structural_metadata"])
    assert image_channels(doc) == {0: "RGBA"}


def test_fill_unread_makes_single_channel_images_grey_and_drops_unread_alpha():
    rng = np.random.default_rng(3)
    pixels_in = rng.integers(0, 256, (8, 8, 4), dtype=np.uint8)
    grey = fill_unread(pixels_in, "R")
    assert (grey[..., 0] == pixels_in[..., 0]).all()
    assert (grey[..., 1] == grey[..., 0]).all() and (grey[..., 2] == grey[..., 0]).all()
    assert (grey[..., 3] == 255).all()
    thickness = fill_unread(pixels_in, "G")
    assert (thickness[..., :3] == pixels_in[..., 1:2]).all()
    alpha_only = fill_unread(pixels_in, "A")
    assert (alpha_only[..., :3] == 0).all() and (alpha_only[..., 3] == pixels_in[..., 3]).all()
    two = fill_unread(pixels_in, "GBA")
    assert two is pixels_in  # two colour channels read: nothing is filled
    done = fill_unread(grey, "R")
    assert done is grey  # already filled: the same array back


@pytest.fixture(scope="module")
def cache() -> EncodeCache:
    """Shared by the runs below: the generated document's other images are encoded once
    (results are deterministic, so the outputs are the same)."""
    return EncodeCache()


def _with_occlusion_image(rgb: np.ndarray):
    """The generated document with its normal-map slot turned into an occlusion slot whose
    image carries unrelated noise in G and B."""
    doc = textured_doc()
    material = doc.json["materials"][0]
    material["occlusionTexture"] = material.pop("normalTexture")
    index = doc.json["textures"][1]["source"]
    out = io.BytesIO()
    Image.fromarray(rgb).save(out, format="PNG")
    changed = repack(doc, doc.json, {doc.json["images"][index]["bufferView"]: out.getvalue()})
    return parse_glb(write_glb(Document(changed.json, changed.bin, "occlusion.glb")),
                     "occlusion.glb"), index


def test_an_occlusion_texture_is_stored_grey_and_holds_the_colour_target_in_red(cache):
    y, x = np.mgrid[0:256, 0:256]
    rng = np.random.default_rng(5)
    red = (128 + 100 * np.sin(x / 23) * np.cos(y / 31)).astype(np.uint8)
    noise = rng.integers(0, 256, (256, 256, 2), dtype=np.uint8)
    doc, index = _with_occlusion_image(np.dstack([red, noise]))
    filled, ctx = run(doc, TextureEncode(format="webp", cache=cache))
    _, new = texture_image(filled, 1)
    _, old = texture_image(doc, 1)
    got, want = pixels(filled, new), pixels(doc, old)
    # The channel occlusion reads holds the colour target, judged as a grey image: a lone
    # scalar has no channels to mix and no direction to bend (PSNR in every channel is for
    # packed maps).
    metric, value = check_image(doc, index, filled, new, ctx)
    assert metric == "ssimulacra2"
    grey = np.repeat(want[..., :1], 3, axis=-1)
    assert ssimulacra2(grey, np.repeat(got[..., :1], 3, axis=-1)) >= DEFAULT.colour
    assert psnr(got[..., 1], got[..., 0]) > 40 and psnr(got[..., 2], got[..., 0]) > 40  # grey
    size = filled.json["bufferViews"][new["bufferView"]]["byteLength"]
    # The noise in G and B no longer costs anything: a quarter of what keeping every
    # channel (`fill_unread_channels=False`: all four judged as data) would store.
    data = doc.buffer_view_bytes(old["bufferView"])
    as_was = TextureEncode(fill_unread_channels=False).encode_image(data, "image/png", "data",
                                                                    "RGBA", "t")
    kept = len(as_was.data) if as_was is not None else len(data)
    assert size < min(kept, len(data)) / 4


def test_a_packed_map_keeps_the_data_floor(cache):
    # The same image read as occlusion (R) and metallic-roughness (G, B): three values.
    y, x = np.mgrid[0:256, 0:256]
    smooth = [(128 + 90 * np.sin(x / f) * np.cos(y / g)).astype(np.uint8)
              for f, g in ((23, 31), (17, 13), (29, 37))]
    doc, index = _with_occlusion_image(np.dstack(smooth))
    doc.json["materials"][0]["pbrMetallicRoughness"]["metallicRoughnessTexture"] = {
        "index": 1}
    assert image_channels(doc.json)[index] == "RGB"
    out, ctx = run(doc, TextureEncode(format="webp", cache=cache))
    _, new = texture_image(out, 1)
    _, old = texture_image(doc, 1)
    assert psnr(pixels(out, new)[..., :3], pixels(doc, old)[..., :3]) >= DEFAULT.data_db
    assert check_image(doc, index, out, new, ctx)[0] == "psnr"
