"""search_lowest on synthetic quality -> PSNR curves: the answer, and how many encodes;
what a sample is measured on."""

from __future__ import annotations

import io
import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from tourserver.pipeline.textures.quality import NORMAL_ANGLE, PSNR, SSIMULACRA2
from tourserver.pipeline.textures.search import measure, search_lowest


def _probe_of(curve, calls: list[int]):
    def probe(q: int) -> tuple[bytes, float]:
        calls.append(q)
        return bytes(q), curve(q)
    return probe


def _convex(top: float, slope_top: float, slope_low: float):
    """Steep near the top, flat further down, as libwebp's PSNR against quality."""
    def curve(q: int) -> float:
        return top - slope_low * (95 - q) - (slope_top - slope_low) * 20 * (
            1 - math.exp(-(95 - q) / 20))
    return curve


def test_a_libwebp_like_curve_takes_few_encodes():
    worst = 0
    for top, slope_top, slope_low in [(48, 0.6, 0.1), (43, 0.35, 0.15), (44, 0.5, 0.2)]:
        curve = _convex(top, slope_top, slope_low)
        for floor in (38.0, 40.0, 41.5):
            calls: list[int] = []
            found = search_lowest(_probe_of(curve, calls), floor, 95)
            if curve(95) < floor:
                assert found is None
                continue
            assert found is not None
            _, q, value = found
            assert value >= floor and (q == 0 or curve(q - 1) < floor)
            assert len(calls) == len(set(calls))  # no quality encoded twice
            worst = max(worst, len(calls))
    assert worst <= 6  # a binary search over 0..95 needs 8 after the top


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(-3, 3), min_size=96, max_size=96), st.floats(0, 60))
def test_any_curve_ends_with_a_quality_that_holds_where_one_less_misses(noise, floor):
    # Rising on the whole, not monotone: libwebp's PSNR can dip by a step.
    curve = lambda q: 20 + 0.3 * q + noise[q]  # noqa: E731
    calls: list[int] = []
    found = search_lowest(_probe_of(curve, calls), floor, 95)
    assert len(calls) <= 96
    if curve(95) < floor:
        assert found is None
    else:
        assert found is not None
        _, q, value = found
        assert value == curve(q) >= floor
        assert q == 0 or (q - 1 in calls and curve(q - 1) < floor)  # measured, not assumed


def test_a_search_ends_where_no_lower_quality_can_save_more_than_negligible_bytes():
    # DamagedHelmet's mostly black emissive map: 40 dB held down to q3 on its sample, but
    # below q15 every quality is within a few hundred bytes of the next.
    curve = _convex(57.6, 0.3, 0.12)
    sizes = {q: 700 + 8 * q for q in range(96)}  # 8 bytes a quality step

    def probe(q: int) -> tuple[bytes, float]:
        calls.append(q)
        return bytes(sizes[q]), curve(q)

    calls: list[int] = []
    _, lowest, _ = search_lowest(probe, 48.0, 95)
    searched_to_the_end = len(calls)
    calls.clear()
    data, q, value = search_lowest(probe, 48.0, 95, negligible=100)
    assert value >= 48.0 and q >= lowest
    # It stopped once the lowest hit was within 100 bytes of the highest miss...
    misses = [c for c in calls if curve(c) < 48.0]
    assert misses and len(data) - sizes[max(misses)] <= 100
    assert len(calls) < searched_to_the_end
    # With nothing negligible it searches to the end.
    assert search_lowest(probe, 48.0, 95, negligible=0)[1] == lowest


def test_a_search_again_at_a_shifted_floor_starts_from_what_was_measured():
    # After a full-size encode, the sample's curve is searched again with the floor shifted
    # by what the whole image showed: the qualities already measured bracket the new floor,
    # so the search takes a probe or two where one from the top takes more (SSIMULACRA2
    # against quality: steeper than PSNR, and curved, so slopes mislead from the top).
    def curve(q: int) -> float:
        return 88 - 0.9 * (95 - q) - 0.004 * (95 - q) ** 2

    seen: dict[int, tuple[bytes, float]] = {}

    def cached(q: int) -> tuple[bytes, float]:
        calls.append(q)
        if q not in seen:
            seen[q] = (bytes(q), curve(q))
        return seen[q]

    calls: list[int] = []
    search_lowest(cached, 70.0, 95)
    fresh: list[int] = []
    expected = search_lowest(_probe_of(curve, fresh), 70.7, 95)
    calls.clear()
    known = set(seen)
    again = search_lowest(cached, 70.7, 95, seen=dict(seen))
    assert again == expected  # the same answer: it holds and the quality below misses
    assert len(set(calls) - known) <= 1 and len(fresh) >= 5


def test_a_metric_of_each_texel_is_measured_away_from_a_sample_s_seams():
    # Errors only along the seams of a mosaic's tiles (outside `inside`): the normal angle
    # and PSNR leave them out, as they do not reach the whole image's texels; SSIMULACRA2
    # looks at neighbourhoods and scores the whole mosaic.
    reference = np.full((128, 128, 4), 255, np.uint8)
    reference[..., :3] = (128, 128, 255)
    distorted = reference.copy()
    distorted[::64, :, :2] = (170, 90)  # the first row of each tile, tilted
    inside = np.zeros((128, 128), bool)
    inside[8:56, 8:56] = inside[72:120, 72:120] = True
    out = io.BytesIO()
    Image.fromarray(distorted, "RGBA").save(out, format="PNG")
    data = out.getvalue()
    assert PSNR.per_texel and NORMAL_ANGLE.per_texel and not SSIMULACRA2.per_texel
    assert measure(data, reference, "t", 1 << 20, inside, NORMAL_ANGLE) == 0.0
    assert measure(data, reference, "t", 1 << 20, None, NORMAL_ANGLE) < -20.0
    assert measure(data, reference, "t", 1 << 20, inside, PSNR) == np.inf
    assert measure(data, reference, "t", 1 << 20, inside, SSIMULACRA2) < 90.0
