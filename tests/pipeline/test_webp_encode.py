"""WebP encoding chosen on a sample, confirmed at full size; the quality search under it."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from support import corpus_file

from tourserver.ingest.images import psnr, rgba_pixels
from tourserver.ingest.loaders import load_asset
from tourserver.pipeline.textures import webp as webp_encode
from tourserver.pipeline.textures.metrics import normal_angle_error, ssimulacra2
from tourserver.pipeline.textures.quality import NORMAL_ANGLE, PSNR, SSIMULACRA2
from tourserver.pipeline.textures.sample import TILE, Sample, _starts, sample_of
from tourserver.pipeline.textures.search import Prober, search_lowest
from tourserver.pipeline.textures.webp import LOSSY_SAMPLE_PIXELS, WebpOptions, encode_webp

OPTIONS = WebpOptions()


def _measured(data: bytes, img: Image.Image) -> float:
    with Image.open(io.BytesIO(data)) as decoded:
        return psnr(rgba_pixels(decoded), rgba_pixels(img))


def _recording_encoders(monkeypatch) -> list[tuple[tuple[int, int], bool]]:
    """(image size, sharp YUV) of every lossy encoder made."""
    made: list[tuple[tuple[int, int], bool]] = []
    original = webp_encode._lossy_encoder

    def recording(image, opts, sharp):
        encode = original(image, opts, sharp)

        def record(q):
            made.append((image.size, sharp))
            return encode(q)
        return record
    monkeypatch.setattr(webp_encode, "_lossy_encoder", recording)
    return made


# -- the quality search --------------------------------------------------------------------

def _pillow_webp(img: Image.Image, calls: list[int]):
    def encode(q: int) -> bytes:
        calls.append(q)
        out = io.BytesIO()
        img.save(out, format="WEBP", quality=q, method=4)
        return out.getvalue()
    return encode


@pytest.mark.parametrize("name", [
    "FlightHelmet/FlightHelmet_Materials_LeatherPartsMat_BaseColor.png",
    "FlightHelmet/FlightHelmet_Materials_MetalPartsMat_BaseColor.png"])
def test_search_finds_a_quality_that_holds_the_floor_where_one_less_misses(name):
    with Image.open(corpus_file(name)) as img:
        img = img.convert("RGB")
    calls: list[int] = []
    probe = Prober(_pillow_webp(img, calls), rgba_pixels(img), "t", 1 << 22)
    found = search_lowest(probe, 40.0, 95)
    assert found is not None and _measured(found[0], img) >= 40.0
    # "Lowest" as the search can know it (PSNR is not strictly monotone in libwebp's
    # quality): the quality found holds the floor and the one just below misses.
    assert _measured(_pillow_webp(img, [])(found[1] - 1), img) < 40.0
    assert len(calls) <= 5  # a binary search over 0..95 needs 8


def test_the_prober_encodes_each_quality_once():
    img = Image.fromarray(np.random.default_rng(2).integers(0, 256, (64, 64, 3), np.uint8))
    calls: list[int] = []
    probe = Prober(_pillow_webp(img, calls), rgba_pixels(img), "t", 1 << 22)
    assert probe(50) == probe(50)
    search_lowest(probe, 20.0, 95)
    assert len(calls) == len(set(calls))


# -- choosing on the sample, confirming at full size -------------------------------------

def _noisy(inside_tiles: bool, size: int = 1024) -> Image.Image:
    """A smooth gradient with fine noise either only inside the sample's tiles or only
    outside them: a sample that misjudges the whole image, on purpose."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    base = np.stack([x / size * 200 + 20, y / size * 200 + 20, np.full_like(x, 128)], -1)
    img = Image.fromarray(base.astype(np.uint8))
    sample = sample_of(img, rgba_pixels(img), LOSSY_SAMPLE_PIXELS)
    covered = np.zeros(size, bool)
    for start in _starts(size, sample.image.size[0] // TILE):
        covered[start:start + TILE] = True
    tiles = covered[:, None] & covered[None, :]
    where = tiles if inside_tiles else ~tiles
    base[where] += np.random.default_rng(4).normal(0, 2, (size, size, 3))[where]
    return Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))


@pytest.mark.parametrize("inside_tiles", [False, True], ids=["optimistic", "cautious"])
def test_the_sample_s_answer_is_corrected_at_full_size(inside_tiles, monkeypatch):
    # Noise outside the tiles: the sample looks cleaner than the image, its quality is too
    # low and must be stepped up. Noise inside them: its quality is higher than needed.
    # (Grid tiles, so the sample is misled on purpose: tiles chosen by activity see noise
    # wherever it is.)
    monkeypatch.setattr(webp_encode, "activity_sample",
                        lambda image, reference, min_pixels, *_: sample_of(image, reference,
                                                                           min_pixels))
    # And the sample's lowest quality is planned, without the margin a cheap higher one buys.
    monkeypatch.setattr(webp_encode, "_safest_worth_it", lambda sample, floor, lowest, *_:
                        lowest)
    # The sample is searched to the end, however few bytes a lower quality saves.
    monkeypatch.setattr(webp_encode, "_negligible", lambda sample_pixels: 0)
    img = _noisy(inside_tiles)
    reference = rgba_pixels(img)
    sample = sample_of(img, reference, LOSSY_SAMPLE_PIXELS)
    planned = webp_encode._lossy_plan(webp_encode._lossy_prober(sample, OPTIONS, "t", True),
                                      40.0, OPTIONS, "t")
    assert planned is not None
    result = encode_webp(img, reference, 40.0, OPTIONS, "t", lossless=False)
    assert result is not None and result.quality is not None
    assert _measured(result.data, img) >= 40.0  # held on the whole image, not the sample
    if inside_tiles:
        assert result.quality < planned.setting  # a lower quality held on the whole image
    else:
        assert result.quality > planned.setting  # stepped up from the sample's answer


def test_a_large_image_far_below_the_floor_is_not_encoded_at_full_size(monkeypatch):
    made = _recording_encoders(monkeypatch)
    img = Image.fromarray(np.random.default_rng(1).integers(0, 256, (1100, 1100, 3),
                                                            dtype=np.uint8))
    assert encode_webp(img, rgba_pixels(img), 60.0, OPTIONS, "t", lossless=False) is None
    assert made and all(size != img.size for size, _ in made)  # only the sample was tried


def test_a_large_image_that_cannot_beat_what_we_have_is_not_encoded_at_full_size(
        monkeypatch):
    y, x = np.mgrid[0:1100, 0:1100]
    img = Image.fromarray(np.stack([x % 256, y % 256, (x // 5) % 256], -1).astype(np.uint8))
    reference = rgba_pixels(img)
    assert encode_webp(img, reference, 30.0, OPTIONS, "t", lossless=False) is not None
    made = _recording_encoders(monkeypatch)
    assert encode_webp(img, reference, 30.0, OPTIONS, "t", lossless=False, limit=100) is None
    assert made and all(size != img.size for size, _ in made)


def test_grey_images_skip_sharp_yuv_and_colour_images_use_it(monkeypatch):
    made = _recording_encoders(monkeypatch)
    rng = np.random.default_rng(6)
    grey = Image.fromarray(np.repeat(rng.integers(0, 256, (128, 128, 1), np.uint8), 3, -1))
    encode_webp(grey, rgba_pixels(grey), 30.0, OPTIONS, "t", lossless=False)
    assert made and not any(sharp for _, sharp in made)
    made.clear()
    colour = Image.fromarray(rng.integers(0, 256, (128, 128, 3), np.uint8))
    encode_webp(colour, rgba_pixels(colour), 30.0, OPTIONS, "t", lossless=False)
    assert made and all(sharp for _, sharp in made)


def test_a_colour_image_that_codes_small_skips_sharp_yuv_after_one_probe(monkeypatch):
    # Mostly black with a few lit specks, like an emissive map: a few KB per megapixel,
    # where sharp YUV's few per cent are not worth its encode time.
    made = _recording_encoders(monkeypatch)
    pixels = np.zeros((512, 512, 3), np.uint8)
    pixels[100:104, 200:230] = (255, 180, 40)
    pixels[300:340, 50:53] = (40, 200, 255)
    img = Image.fromarray(pixels)
    result = encode_webp(img, rgba_pixels(img), 40.0, OPTIONS, "t", lossless=False)
    assert result is not None and _measured(result.data, img) >= 40.0
    whole = [sharp for size, sharp in made if size == img.size]  # not the quick probe's
    assert whole[:1] == [True]  # the top-quality probe decides
    assert whole[1:] and not any(whole[1:])


def _corpus_png(name: str) -> Image.Image:
    with Image.open(corpus_file(f"FlightHelmet/{name}")) as img:
        return img.convert("RGB")


def test_near_lossless_chosen_on_a_small_sample_holds_on_the_whole_image():
    # A leather normal map, 512 px: lossy cannot hold 45 dB (4:2:0 chroma), and libwebp's
    # near-lossless codes it ~10 % smaller than posterizing does.
    img = _corpus_png("FlightHelmet_Materials_LeatherPartsMat_Normal.png")
    result = encode_webp(img, rgba_pixels(img), 45.0, OPTIONS, "t")
    assert result is not None and result.near_lossless is not None
    assert 45.0 <= _measured(result.data, img) < np.inf


@pytest.mark.parametrize("name", ["FlightHelmet_Materials_LeatherPartsMat_Normal.png",
                                  "FlightHelmet_Materials_MetalPartsMat_OcclusionRoughMetal.png"])
def test_lossy_far_out_of_reach_is_ruled_out_on_a_small_sample(name, monkeypatch):
    # Data maps at 45 dB: lossy holds 28-35 dB on these even at q95. One lossy encode of a
    # 128 px sample says so, and the answer is the one the whole lossy search would give.
    img = _corpus_png(name)
    reference = rgba_pixels(img)
    made = _recording_encoders(monkeypatch)
    quick = encode_webp(img, reference, 45.0, OPTIONS, "t")
    assert [size for size, _ in made] == [(128, 128)]
    monkeypatch.setattr(webp_encode, "_lossy_out_of_reach", lambda *_, **__: False)
    made.clear()
    searched = encode_webp(img, reference, 45.0, OPTIONS, "t")
    assert (512, 512) in [size for size, _ in made]  # without it, lossy is tried whole
    assert quick is not None and quick.quality is None  # the lossless family won
    assert quick == searched


def test_lossy_within_reach_is_searched_as_before(monkeypatch):
    img = _corpus_png("FlightHelmet_Materials_LeatherPartsMat_BaseColor.png")
    made = _recording_encoders(monkeypatch)
    result = encode_webp(img, rgba_pixels(img), 40.0, OPTIONS, "t")
    assert result is not None and result.quality is not None
    assert [size for size, _ in made][0] == (128, 128)  # the quick probe, then the search
    assert [size for size, _ in made].count((512, 512)) >= 2


def _full_size_near_lossless(monkeypatch) -> list[tuple[int, int]]:
    sizes: list[tuple[int, int]] = []
    original = webp_encode._near_lossless_encoder

    def recording(image, opts):
        sizes.append(image.size)
        return original(image, opts)
    monkeypatch.setattr(webp_encode, "_near_lossless_encoder", recording)
    return sizes


def test_near_lossless_that_hardly_helps_on_the_sample_is_not_encoded_at_full_size(
        monkeypatch):
    # Fox's texture: flat colour areas; near-lossless saves 0.3 % on the sample and would
    # come out 17 % larger than lossless at full size.
    doc = load_asset(corpus_file("Fox/Fox.glb"))
    image = doc.json["images"][0]
    with Image.open(io.BytesIO(doc.buffer_view_bytes(image["bufferView"]))) as img:
        img = img.convert("RGB")
    sizes = _full_size_near_lossless(monkeypatch)
    result = encode_webp(img, rgba_pixels(img), 40.0, OPTIONS, "t")
    assert result is not None and result.near_lossless is None  # lossless or a palette won
    assert sizes and img.size not in sizes


def test_a_normal_map_is_posterized_to_the_largest_step_that_holds_the_floor():
    img = _corpus_png("FlightHelmet_Materials_GlassPlasticMat_OcclusionRoughMetal.png")
    reference = rgba_pixels(img)
    result = encode_webp(img, reference, 45.0, OPTIONS, "t")
    assert result is not None and result.posterize is not None
    # Lossless coding of the posterized pixels: what decodes is exactly them.
    with Image.open(io.BytesIO(result.data)) as decoded:
        assert np.array_equal(rgba_pixels(decoded),
                              rgba_pixels(webp_encode.posterize(img, result.posterize)))
    assert 45.0 <= _measured(result.data, img) == pytest.approx(result.score)
    steps = webp_encode.POSTERIZE_STEPS
    larger = steps[steps.index(result.posterize) - 1]
    assert psnr(rgba_pixels(webp_encode.posterize(img, larger)), reference) < 45.0
    # Smaller than either other way of holding 45 dB losslessly coded.
    near = webp_encode._near_lossless_encoder(img, OPTIONS)
    holding = [d for d in map(near, webp_encode.NEAR_LOSSLESS_LEVELS)
               if _measured(d, img) >= 45.0]
    assert len(result.data) < min(len(d) for d in holding)
    assert len(result.data) < 0.8 * len(webp_encode.encode_lossless(img, OPTIONS))


def test_under_ssimulacra2_the_floor_is_its_score_and_values_are_not_posterized(
        monkeypatch):
    # Posterized values are scored on their pixels, without encoding: cheap for a metric of
    # each texel, a whole score per step for SSIMULACRA2, where they are no candidate,
    # while the other lossless-coded ones still are. (A 256 px crop: small images have
    # their lossless candidates planned at once.)
    planned: list[str] = []
    for name in ("_lossless_plans", "_posterize_plan"):
        original = getattr(webp_encode, name)
        monkeypatch.setattr(webp_encode, name, lambda *a, _n=name, _o=original, **k:
                            planned.append(_n) or _o(*a, **k))
    img = _corpus_png("FlightHelmet_Materials_GlassPlasticMat_OcclusionRoughMetal.png")
    img = img.crop((0, 0, 256, 256))
    reference = rgba_pixels(img)
    result = encode_webp(img, reference, 80.0, WebpOptions(metric=SSIMULACRA2), "t")
    assert planned == ["_lossless_plans"]
    assert result is not None and result.posterize is None
    with Image.open(io.BytesIO(result.data)) as decoded:
        score = ssimulacra2(reference, rgba_pixels(decoded))
    assert 80.0 <= score == pytest.approx(result.score)
    planned.clear()
    assert encode_webp(img, reference, 45.0, WebpOptions(metric=PSNR), "t") is not None
    assert planned == ["_lossless_plans", "_posterize_plan"]  # PSNR: it is planned


def _angle(data: bytes, reference: np.ndarray) -> float:
    with Image.open(io.BytesIO(data)) as decoded:
        return normal_angle_error(reference, rgba_pixels(decoded)).p99


def test_a_smooth_normal_map_is_not_posterized(monkeypatch):
    # Posterized, a smooth baked normal map would show contour lines in its shading that
    # its 99th-percentile angle cannot see: FlightHelmet's glass normal map (texel noise
    # ~0.7 levels) masks no step, and keeps libwebp's near-lossless, which leaves smooth
    # texels as they are.
    img = _corpus_png("FlightHelmet_Materials_GlassPlasticMat_Normal.png")
    reference = rgba_pixels(img)
    assert webp_encode.unbanded_step(reference) < min(webp_encode.POSTERIZE_STEPS)
    result = encode_webp(img, reference, -4.0, WebpOptions(metric=NORMAL_ANGLE), "t")
    assert result is not None and result.posterize is None
    assert result.metric == "normal_p99_deg"
    assert _angle(result.data, reference) <= 4.0


def test_a_flat_normal_map_lossy_holds_cheaply_is_not_posterized():
    # The barn lamp's normal map (1024 px, mostly flat): lossy holds 4 degrees at q95;
    # posterized values would be smaller, but would band its gentle bumps.
    with Image.open(corpus_file("AnisotropyBarnLamp/AnisotropyBarnLamp_normalbump.png")
                    ) as source:
        img = source.convert("RGB")
    reference = rgba_pixels(img)
    result = encode_webp(img, reference, -4.0, WebpOptions(metric=NORMAL_ANGLE), "t")
    assert result is not None and result.posterize is None
    assert _angle(result.data, reference) <= 4.0


def test_a_noisy_normal_map_is_posterized_within_its_noise(monkeypatch):
    # Where a normal map's own texel noise is at least half the step, posterizing is lost
    # in it (as dithering is): scored on its pixels without encoding, one lossless encode,
    # and near-lossless's full-size encode (3.7 s for a 2048 px map) is never made.
    img = _noisy_normals(512)  # noise of 5 levels
    reference = rgba_pixels(img)
    masked = webp_encode.unbanded_step(reference)
    assert 8 <= masked <= 12
    sizes = _full_size_near_lossless(monkeypatch)
    result = encode_webp(img, reference, -4.0, WebpOptions(metric=NORMAL_ANGLE), "t")
    assert result is not None and result.posterize is not None
    assert result.posterize <= masked
    with Image.open(io.BytesIO(result.data)) as decoded:
        assert np.array_equal(rgba_pixels(decoded),
                              rgba_pixels(webp_encode.posterize(img, result.posterize)))
    angle = _angle(result.data, reference)
    assert angle <= 4.0 and -result.score == pytest.approx(angle)
    assert img.size not in sizes


def _noisy_normals(size: int) -> Image.Image:
    """A bumpy surface's normal map with sensor-like noise: lossy cannot hold 4 degrees."""
    rng = np.random.default_rng(12)
    y, x = np.mgrid[0:size, 0:size] / size
    dx, dy = 0.4 * np.cos(9 * x) * np.sin(7 * y), 0.4 * np.sin(5 * x + 3 * y)
    normals = np.stack([-dx, -dy, np.ones_like(dx)], -1)
    normals /= np.linalg.norm(normals, axis=-1, keepdims=True)
    pixels = (normals + 1) * 127.5 + rng.normal(0, 5, normals.shape)
    return Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8))


def test_near_lossless_screened_out_is_not_estimated_on_the_whole_sample(monkeypatch):
    # Near-lossless's start level is estimated first on a quarter of the sample (1/64 of a
    # 2048 px map, 0.1 s, where the 1/16 sample costs 0.3 s): well over the posterized
    # values' estimate there, it goes no further. (Here a 1024 px map, with the screen
    # lowered to its 256 px sample.)
    monkeypatch.setattr(webp_encode, "NEAR_LOSSLESS_SCREEN_PIXELS", 256 * 256)
    img = _noisy_normals(1024)
    sizes = _full_size_near_lossless(monkeypatch)
    result = encode_webp(img, rgba_pixels(img), -4.0, WebpOptions(metric=NORMAL_ANGLE), "t")
    assert result is not None and result.posterize is not None
    assert sizes == [(128, 128)]  # the screen only: not the 256 px sample, nor the image


@pytest.mark.parametrize("metric, floor", [(PSNR, 30.0), (SSIMULACRA2, 60.0),
                                           (NORMAL_ANGLE, -12.0)])
def test_each_result_names_the_metric_it_was_measured_by(metric, floor):
    # The encoder names what its score is: the facts and the report take it from there.
    img = _corpus_png("FlightHelmet_Materials_GlassPlasticMat_Normal.png").crop(
        (0, 0, 256, 256))
    reference = rgba_pixels(img)
    for lossless in (True, False):  # the lossless-coded family, then lossy alone
        result = encode_webp(img, reference, floor, WebpOptions(metric=metric), "t",
                             lossless=lossless)
        assert result is not None and result.metric == metric.name
        with Image.open(io.BytesIO(result.data)) as decoded:
            assert metric.score(rgba_pixels(decoded), reference) == pytest.approx(
                result.score)


def test_a_perceptual_metric_s_first_full_size_guess_aims_above_the_floor():
    # SSIMULACRA2 scores a sample's whole mosaic, seams included, above the whole image: the
    # first full-size encode aims higher on a 1/16 sample, less on a 1/4 one; a metric of
    # each texel is measured inside the tiles and aims at the floor itself.
    img = Image.new("RGB", (64, 64))
    reference = rgba_pixels(img)
    sixteenth, quarter, whole = (Sample(img, reference, scale) for scale in (16.0, 4.0, 1.0))
    step = SSIMULACRA2.step
    assert webp_encode._optimism(sixteenth, SSIMULACRA2) == pytest.approx(
        webp_encode.SAMPLE_OPTIMISM * step)
    assert webp_encode._optimism(quarter, SSIMULACRA2) == pytest.approx(
        webp_encode.SAMPLE_OPTIMISM * step / 2)
    assert webp_encode._optimism(whole, SSIMULACRA2) == 0.0
    assert webp_encode._optimism(sixteenth, PSNR) == 0.0
    assert webp_encode._optimism(sixteenth, NORMAL_ANGLE) == 0.0


@pytest.mark.parametrize("name", ["FlightHelmet_Materials_GlassPlasticMat_Normal.png",
                                  "FlightHelmet_Materials_GlassPlasticMat_OcclusionRoughMetal.png"])
def test_near_lossless_stops_at_its_first_level_when_posterized_values_beat_it(
        name, monkeypatch):
    # Posterized values are estimated 5 % or more under near-lossless's starting level on
    # the sample (76 against 101 KB; 120 against 121): near-lossless cannot rank ahead, so
    # no other level is tried (it walked down, or up, one more before).
    levels: list[int] = []
    original = webp_encode._near_lossless_encoder

    def recording(image, opts):
        encode = original(image, opts)
        return lambda level: levels.append(level) or encode(level)
    monkeypatch.setattr(webp_encode, "_near_lossless_encoder", recording)
    img = _corpus_png(name)
    result = encode_webp(img, rgba_pixels(img), 45.0, OPTIONS, "t")
    assert result is not None and result.posterize is not None
    assert levels == [webp_encode.NEAR_LOSSLESS_START]


@pytest.mark.parametrize("mode", ["RGB", "RGBA"])
def test_posterized_error_from_value_pairs_is_the_measured_one(mode):
    # Counted from (value, reference value) pairs, without posterizing the image: the same
    # dB as posterizing and measuring, for every step, with a reference that differs.
    rng = np.random.default_rng(5)
    img = Image.fromarray(rng.integers(0, 256, (60, 50, len(mode)), dtype=np.uint8), mode)
    reference = rgba_pixels(img).copy()
    reference[::7, ::3] ^= 1  # off by one here and there, alpha included
    error = webp_encode._PosterizeError(img, reference)
    for step in webp_encode.POSTERIZE_STEPS:
        measured = psnr(rgba_pixels(webp_encode.posterize(img, step)), reference)
        assert error(step) == measured


def test_posterize_leaves_alpha_alone_and_keeps_the_extremes():
    rng = np.random.default_rng(4)
    pixels = rng.integers(0, 256, (16, 16, 4), dtype=np.uint8)
    pixels[0, 0, :3] = (0, 255, 128)
    out = np.asarray(webp_encode.posterize(Image.fromarray(pixels, "RGBA"), 4.5))
    assert np.array_equal(out[..., 3], pixels[..., 3])
    assert tuple(out[0, 0, :2]) == (0, 255)  # black and white stay exact
    assert np.abs(out[..., :3].astype(int) - pixels[..., :3]).max() <= 3  # half a step, rounded


def _few_colours(size: int = 256) -> Image.Image:
    """A UV-test-like card: flat coloured cells with dark grid lines and a little
    anti-aliasing noise, the kind of synthetic texture a palette codes best."""
    rng = np.random.default_rng(8)
    cells = rng.integers(40, 230, (8, 8, 3)).repeat(size // 8, 0).repeat(size // 8, 1)
    cells[:: size // 8] = 20
    cells[:, :: size // 8] = 20
    noisy = cells + rng.integers(-1, 2, cells.shape) * (rng.random(cells.shape[:2]) < 0.05)[
        ..., None]
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


def test_a_few_colour_image_takes_the_fewest_colours_that_hold_the_floor():
    img = _few_colours()
    result = encode_webp(img, rgba_pixels(img), 40.0, OPTIONS, "t")
    assert result is not None and result.palette is not None
    assert _measured(result.data, img) >= 40.0
    lossless = webp_encode.encode_lossless(img, OPTIONS)
    assert len(result.data) < len(lossless)
    # The fewest: the next smaller palette misses the floor.
    smaller = webp_encode.PALETTE_SIZES[webp_encode.PALETTE_SIZES.index(result.palette) - 1]
    assert _measured(webp_encode._palette_encoder(img, OPTIONS)(smaller), img) < 40.0


def test_a_photograph_rules_the_palette_out():
    rng = np.random.default_rng(9)
    img = Image.fromarray(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8))
    sample = sample_of(img, rgba_pixels(img))
    assert webp_encode._palette_plan(sample, 40.0, OPTIONS, "t") is None


def test_near_lossless_tied_on_the_sample_gives_way_to_the_cheaper_candidate(monkeypatch):
    # The barn lamp's occlusion-roughness-metal map: near-lossless and posterized values
    # tie on the sample; posterized is a lossless encode, a third of near-lossless's time,
    # and comes out smaller at full size.
    with Image.open(corpus_file("AnisotropyBarnLamp/AnisotropyBarnLamp_"
                                "occlusionroughnessmetal.png")) as img:
        img = img.convert("RGB")
    sizes = _full_size_near_lossless(monkeypatch)
    result = encode_webp(img, rgba_pixels(img), 45.0, OPTIONS, "t")
    assert result is not None and result.posterize is not None
    assert 45.0 <= _measured(result.data, img) < np.inf
    assert img.size not in sizes  # near-lossless was never encoded at full size


def test_a_candidate_ranked_behind_one_that_holds_is_not_encoded_at_full_size(monkeypatch):
    # The metal parts' occlusion-roughness-metal map: posterized values are estimated ~15 %
    # under near-lossless and hold the floor, so near-lossless is not tried at full size
    # (its full-size encode used to be made and lost, at three times the cost).
    img = _corpus_png("FlightHelmet_Materials_MetalPartsMat_OcclusionRoughMetal.png")
    sizes = _full_size_near_lossless(monkeypatch)
    result = encode_webp(img, rgba_pixels(img), 45.0, OPTIONS, "t")
    assert result is not None and result.posterize is not None
    assert 45.0 <= _measured(result.data, img)
    assert sizes and img.size not in sizes  # tried on the sample only


def test_a_smooth_map_is_not_coded_at_the_quality_its_sample_seams_ask_for():
    # DamagedHelmet's occlusion map (2048 px, grey, smooth): every seam of the lossy sample's
    # mosaic is an edge the image does not have. Measured over the whole mosaic of 64 px
    # grid tiles, the sample asked for q73 (111 KB); measured away from the seams, the
    # whole image is coded at a lower quality that holds (q47, 84 KB).
    doc = load_asset(corpus_file("DamagedHelmet/DamagedHelmet.glb"))
    occlusion = doc.json["materials"][0]["occlusionTexture"]["index"]
    image = doc.json["images"][doc.json["textures"][occlusion]["source"]]
    with Image.open(io.BytesIO(doc.buffer_view_bytes(image["bufferView"]))) as img:
        grey = img.convert("L").convert("RGB")  # as texture_slots fills an R-only map
    result = encode_webp(grey, rgba_pixels(grey), 40.0, OPTIONS, "t", lossless=False)
    assert result is not None and result.quality is not None
    assert result.quality < 73 and len(result.data) < 90_000
    assert _measured(result.data, grey) >= 40.0


class _Curve:
    """A stand-in for a sample's `Prober`: quality -> (bytes, PSNR) from given tables."""

    def __init__(self, sizes: dict[int, int], values: dict[int, float],
                 tried: tuple[int, ...] = ()) -> None:
        self.sizes, self.values = sizes, values
        self.tried = set(tried)

    def __call__(self, quality: int) -> tuple[bytes, float]:
        self.tried.add(quality)
        return bytes(self.sizes[quality]), self.values[quality]

    def measured(self) -> dict[int, tuple[bytes, float]]:
        return {q: self(q) for q in sorted(self.tried)}


def test_a_cheap_higher_quality_is_planned_over_the_sample_s_lowest():
    # DamagedHelmet's emissive map on its sample (1/16 of 2048 px): q1 holds 40 dB, q59 costs
    # 600 bytes more (2.3 KB per megapixel of the image: under what a full-size encode is
    # worth), q95 2.5 KB more. q59 is planned: q1 missed by 2 dB on the whole image.
    sizes = {1: 768, 14: 1000, 59: 1366, 95: 3232}
    values = {1: 40.8, 14: 42.6, 59: 49.0, 95: 58.3}
    curve = _Curve(sizes, values, tried=tuple(sizes))
    pixels = 2048 * 2048
    assert webp_encode._safest_worth_it(curve, 40.0, 1, 16.0, pixels) == 59
    # Where every step up costs real bytes, the lowest quality stays the plan.
    costly = _Curve({q: 20 * n for q, n in sizes.items()}, values, tried=tuple(sizes))
    assert webp_encode._safest_worth_it(costly, 40.0, 1, 16.0, pixels) == 1
    # A small share of many bytes is worth it too: SheenChair's 1024 x 512 base colour,
    # q84 3 % under q85 on its sample, 5 KB per megapixel of the image.
    chair = _Curve({84: 34392, 85: 35502, 95: 54782}, {84: 40.25, 85: 40.56, 95: 44.36},
                   tried=(84, 85, 95))
    assert webp_encode._safest_worth_it(chair, 40.0, 84, 2.33, 1024 * 512) == 84


def test_down_from_a_full_size_hit_a_quality_just_under_on_the_sample_is_tried():
    # DamagedHelmet's base colour: q88 held at full size 0.07 dB above its sample; the
    # shifted sample put q87 0.02 dB under the floor, and q87 held at full size.
    values = {q: 40.54 + (q - 88) * 0.63 for q in range(0, 96)}
    sizes = {q: 30_000 + 800 * q for q in range(0, 96)}
    curve = _Curve(sizes, values)
    following = webp_encode._next_quality(curve, 40.0, 95, 88, 40.61, held=(88, 40.61),
                                          missed=None)
    assert following == 87
    # Coming up from a miss there is no slack: the floor must be expected to hold.
    up = webp_encode._next_quality(curve, 40.0, 95, 80, 35.5, held=None, missed=(80, 35.5))
    assert up == 88  # q87 is 0.09 dB under on the sample


def _lens() -> Image.Image:
    """FlightHelmet's lens texture (512 px, RGBA, alpha-blended)."""
    with Image.open(corpus_file("FlightHelmet/FlightHelmet_Materials_LensesMat_BaseColor.png")
                    ) as source:
        return source.convert("RGBA")


def test_alpha_is_coded_once_per_image_not_once_per_quality(monkeypatch):
    # FlightHelmet's lens texture: its alpha plane is 87 % of the bytes and 0.2 s of every
    # 0.22 s lossy encode. Coded once, it joins each colour-only encode of the search.
    img = _lens()
    coded: list[tuple[int, int]] = []
    real = webp_encode._alpha_chunk
    monkeypatch.setattr(webp_encode, "_alpha_chunk",
                        lambda pixels, opts: coded.append(pixels.shape[:2]) or real(pixels,
                                                                                   opts))
    reference = rgba_pixels(img)
    result = encode_webp(img, reference, 40.0, OPTIONS, "t")
    assert result is not None and result.quality is not None  # lossy won
    # The quick out-of-reach probe's sample, then the image itself (its own lossy sample):
    # one alpha encode each, not one per quality.
    assert coded == [(128, 128), (512, 512)]
    with Image.open(io.BytesIO(result.data)) as decoded:
        assert np.array_equal(np.asarray(decoded.convert("RGBA"))[..., 3], reference[..., 3])
    assert _measured(result.data, img) >= 40.0


def test_an_estimate_barely_under_an_exact_result_is_not_encoded_at_full_size(monkeypatch):
    # The lens texture (512 px, searched whole): lossy q82 holds 40 dB in 99.9 KB, exactly;
    # posterized values are estimated 2 % smaller on a 128 px sample, not enough to pay for
    # a full-size lossless encode (which came out larger).
    img = _lens()
    sizes: list[tuple[int, int]] = []
    real = webp_encode.encode_lossless
    monkeypatch.setattr(webp_encode, "encode_lossless",
                        lambda image, opts: sizes.append(image.size) or real(image, opts))
    result = encode_webp(img, rgba_pixels(img), 40.0, OPTIONS, "t")
    assert result is not None and result.quality == 82
    assert sizes and img.size not in sizes  # the lossless family ran on its sample only


def test_an_alpha_image_whose_sampled_tiles_are_opaque_still_keeps_its_alpha():
    # Transparency only in a corner strip the lossy sample's tiles may miss: the sample is
    # coded without alpha, the image with it.
    y, x = np.mgrid[0:1100, 0:1100]
    pixels = np.stack([x % 256, y % 256, (x + y) % 256, np.full_like(x, 255)], -1)
    pixels[:, :8, 3] = 0  # under the activity grid's 16 px offset
    img = Image.fromarray(pixels.astype(np.uint8), "RGBA")
    reference = rgba_pixels(img)
    sample = webp_encode.activity_sample(img, reference, LOSSY_SAMPLE_PIXELS,
                                         webp_encode.LOSSY_TILE, webp_encode.LOSSY_MARGIN)
    assert (sample.reference[..., 3] == 255).all()
    result = encode_webp(img, reference, 30.0, OPTIONS, "t", lossless=False)
    assert result is not None and result.quality is not None
    with Image.open(io.BytesIO(result.data)) as decoded:
        assert np.array_equal(np.asarray(decoded.convert("RGBA"))[..., 3], reference[..., 3])


def _smooth_directions(size: int = 256) -> Image.Image:
    """An anisotropy map's shape: a direction turning smoothly across the texture in R, G
    (no texel noise), full strength in B."""
    y, x = np.mgrid[0:size, 0:size] / size
    angle = 1.2 * x + 0.6 * y
    pixels = np.dstack([128 + 100 * np.cos(angle), 128 + 100 * np.sin(angle),
                        np.full_like(x, 255)])
    return Image.fromarray(np.rint(pixels).astype(np.uint8))


def test_a_smooth_map_of_directions_is_not_quantized():
    # PSNR cannot see the contours quantizing draws on a smooth map of directions: the
    # barn lamp's anisotropy map, posterized at step 8 (42 dB), lost its brushed streaks in
    # a render. As a map of directions it is neither posterized nor reduced to a palette;
    # as plain data the same pixels are posterized.
    img = _smooth_directions()
    reference = rgba_pixels(img)
    assert webp_encode.unbanded_step(reference) < min(webp_encode.POSTERIZE_STEPS)
    plain = encode_webp(img, reference, 40.0, WebpOptions(), "t")
    assert plain is not None and (plain.posterize or plain.palette)
    guarded = encode_webp(img, reference, 40.0, WebpOptions(direction=True), "t")
    assert guarded is not None and guarded.posterize is None and guarded.palette is None
    with Image.open(io.BytesIO(guarded.data)) as decoded:
        assert psnr(rgba_pixels(decoded), reference) >= 40.0
