"""The session the CLI and the build share: budgets always met when simplifying or
downscaling more can meet them, levels of detail that reuse level 0, one texture cache per
run."""

from __future__ import annotations

import dataclasses
import io
import sys

import numpy as np
import pytest
import trimesh
from PIL import Image
from support import REPO
from test_texture_encode import counted_encodes, textured_doc

from tourserver.gltf.document import parse_glb, write_glb
from tourserver.ingest.checks import Budget
from tourserver.ingest.images import image_size
from tourserver.pipeline import optimize as optimize_module
from tourserver.pipeline.optimize import OptimizeOptions
from tourserver.pipeline.session import Session, Source


def _counted_chains(monkeypatch) -> list[int]:
    """How many steps each chain `optimize` runs from now on had, in call order."""
    chains: list[int] = []
    real_run = optimize_module.run

    def counting(doc, *steps, **kw):
        chains.append(len(steps))
        return real_run(doc, *steps, **kw)
    monkeypatch.setattr(optimize_module, "run", counting)
    return chains


def _source(doc) -> Source:
    return Source(doc, len(write_glb(doc)), "test.glb")


def _rough_terrain(path, cells: int = 300, noise: float = 0.1) -> None:
    """A 10 m grid of cells² x 2 triangles with `noise` m of noise: nothing an error bound
    far under a pixel can take away, so only the budget makes it smaller."""
    x, y = np.meshgrid(np.linspace(0, 10, cells + 1), np.linspace(0, 10, cells + 1))
    z = np.random.default_rng(5).normal(0, noise, x.shape)
    vertices = np.stack([x.ravel(), z.ravel(), y.ravel()], axis=1)
    i = np.arange(cells * (cells + 1)).reshape(cells, cells + 1)[:, :cells].ravel()
    faces = np.concatenate([np.stack([i, i + cells + 1, i + 1], 1),
                            np.stack([i + 1, i + cells + 1, i + cells + 2], 1)])
    path.write_bytes(trimesh.Scene(trimesh.Trimesh(vertices, faces, process=False))
                     .export(file_type="glb"))


def test_a_triangle_budget_is_met_by_simplifying_more(tmp_path):
    path = tmp_path / "terrain.glb"
    _rough_terrain(path)  # 180,000 triangles against the phone's 100,000
    session = Session()
    result = session.optimize(session.read(path), OptimizeOptions(preset="phone"))
    assert result.glb is not None and not result.report.issues
    assert result.report.after is not None
    assert 90_000 <= result.report.after.triangles <= 100_000  # fits, without overshooting
    assert parse_glb(result.glb).json["meshes"]


def test_a_budget_loosens_the_error_cap_when_simplification_stops_short(tmp_path):
    # When Simplify reports it stopped at its error cap short of the goal, the next run
    # asks for fewer triangles with a cap four times as loose (up to MAX_FIT_ERROR).
    path = tmp_path / "terrain.glb"
    _rough_terrain(path)
    session = Session()
    source = session.read(path)
    options = OptimizeOptions(preset="phone", simplify_error=0)
    out = session.optimize(source, OptimizeOptions(preset="phone", simplify=1,
                                                   simplify_error=0))  # 180,000 triangles
    before = optimize_module.measure(source.doc, source.bytes)
    tighter = optimize_module._tighter(options, options, before, out.doc,
                                       len(out.glb or b""), {"simplify.over_budget": 80_000})
    assert tighter is not None
    loosened, why = tighter
    assert loosened.simplify is not None and loosened.simplify < 100_000 / 180_000
    assert loosened.simplify_max_error == pytest.approx(0.04)
    assert "error cap of 4.0%" in why and "180,000 triangles > 100,000" in why
    stuck = optimize_module._tighter(options, options, before, out.doc, len(out.glb or b""),
                                     {})
    assert stuck is not None and stuck[0].simplify_max_error == 0.01  # not stuck: cap kept


def test_a_ratio_that_removed_nothing_is_not_asked_again(tmp_path):
    # A run whose tighter ratio left as many triangles as the run before (every vertex held
    # by seams or locks) has nothing more to give: fitting stops instead of running the
    # chain again for nothing.
    path = tmp_path / "terrain.glb"
    _rough_terrain(path)
    session = Session()
    source = session.read(path)
    out = session.optimize(source, OptimizeOptions(preset="phone", simplify=1,
                                                   simplify_error=0))  # 180,000 triangles
    before = optimize_module.measure(source.doc, source.bytes)
    size = len(out.glb or b"")
    same = optimize_module.measure(out.doc, size)
    fitting = OptimizeOptions(preset="phone", simplify=0.5, simplify_error=0)
    asked = OptimizeOptions(preset="phone", simplify_error=0)
    assert optimize_module._tighter(fitting, asked, before, out.doc, size, {}, same) is None
    fewer = dataclasses.replace(same, triangles=same.triangles + 1)  # the run before had more
    progressed = optimize_module._tighter(fitting, asked, before, out.doc, size, {}, fewer)
    assert progressed is not None and progressed[0].simplify is not None


def test_crossing_seams_to_meet_a_budget_is_reported(monkeypatch):
    # Every vertex a seam (a UV cell per grid cell): only crossing seams meets the budget,
    # and the report says so, with what it may cost.
    # Two of the bench's city-block buildings: recessed windows, a UV chart per face.
    sys.path.insert(0, str(REPO / "tools" / "bench"))
    import scenes

    doc = scenes.build("city_block", buildings=2, texture_px=256)  # ~15,000 triangles
    plain = Session().optimize(_source(doc), OptimizeOptions(preset="phone"))
    assert plain.report.after is not None
    goal = plain.report.after.triangles // 3  # where the seams stop every other means
    small = Budget("phone", 5 * 1024 * 1024, goal, 2048)
    monkeypatch.setitem(optimize_module.BUDGETS, "phone", small)
    result = Session().optimize(_source(doc), OptimizeOptions(preset="phone"))
    assert result.glb is not None and not result.report.issues, result.report.issues
    assert result.report.after is not None and result.report.after.triangles <= goal
    assert result.facts["simplify.crossed_seams"] >= 1
    assert any("across attribute seams" in line and "stretch" in line
               for line in result.report.fitted), result.report.fitted


def test_what_the_creator_fixed_is_not_overridden(tmp_path):
    path = tmp_path / "terrain.glb"
    _rough_terrain(path)
    session = Session()
    result = session.optimize(session.read(path), OptimizeOptions(preset="phone", simplify=1))
    assert [i.code for i in result.report.over_budget] == ["over_budget_triangles"]
    assert result.report.fitted == []
    assert "the phone budget is 100,000" in result.report.over_budget[0].message


def _noisy_doc(px: int):
    """textured_doc with its first image replaced by `px`² of noise: bytes no encoder
    can squeeze at a high quality."""
    doc = textured_doc()
    rng = np.random.default_rng(7)
    noise = rng.integers(0, 256, (px, px, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(noise).save(out, format="PNG")
    data = out.getvalue()
    views = doc.json["bufferViews"]
    image = doc.json["images"][0]
    chunks = [doc.buffer_view_bytes(i) for i in range(len(views))]
    chunks[image["bufferView"]] = data
    offset = 0
    blob = b""
    for i, chunk in enumerate(chunks):
        views[i]["byteOffset"] = offset
        views[i]["byteLength"] = len(chunk)
        padded = chunk + b"\0" * (-len(chunk) % 4)
        blob += padded
        offset += len(padded)
    doc.json["buffers"] = [{"byteLength": len(blob)}]
    image["mimeType"] = "image/png"
    return parse_glb(write_glb(type(doc)(doc.json, blob, "noisy.glb")))


def test_a_byte_budget_is_met_by_smaller_textures(monkeypatch):
    # A 1 MB budget (the phone's is 5 MB: a test asset that large would be slow to encode).
    small = Budget("phone", 1024 * 1024, 100_000, 2048)
    monkeypatch.setitem(optimize_module.BUDGETS, "phone", small)
    doc = _noisy_doc(1024)  # ~3 MB of noise as PNG
    result = Session().optimize(_source(doc), OptimizeOptions(preset="phone"))
    assert result.glb is not None and not result.report.issues, result.report.issues
    assert len(result.glb) <= small.max_bytes
    assert any("textures up to" in step for step in result.report.fitted)
    # The heavy noise is what was halved; the light textures keep their size.
    before = [image_size(doc.buffer_view_bytes(im["bufferView"]))
              for im in doc.json["images"]]
    out = parse_glb(result.glb)
    after = [image_size(out.buffer_view_bytes(im["bufferView"])) for im in out.json["images"]]
    assert after[0][0] < before[0][0] and after[1:] == before[1:], (before, after)


@pytest.mark.parametrize("estimated", [True, False])
def test_a_byte_budget_relaxes_a_heavy_normal_map_before_halving_it(monkeypatch, estimated):
    # A scanned surface: a light colour texture and a normal map whose grain is most of
    # the bytes. Under a budget its rule gives way first (what halving it would lose, at
    # full size); no texture is made smaller, and the colour texture is left as it was.
    # Estimated from the encoder's samples, this is known before the first run, which then
    # fits; without the estimate (`estimated` False), a second run fits it.
    from test_texture_quality import _doc, _normal_map, _photo, _png

    doc = _doc(_png(_photo()), _png(_normal_map(512, noise=0.4)))
    free = Session().optimize(_source(doc), OptimizeOptions(preset="tablet"))
    assert free.glb is not None
    budget = len(free.glb) - 80_000  # the level's normal map is ~200 KB of it
    small = Budget("phone", budget, 100_000, 2048)
    monkeypatch.setitem(optimize_module.BUDGETS, "phone", small)
    if not estimated:
        monkeypatch.setattr(optimize_module, "_prefit", lambda *args: None)
    chains = _counted_chains(monkeypatch)
    fitted = Session().optimize(_source(doc), OptimizeOptions(preset="phone"))
    assert fitted.glb is not None and not fitted.report.issues, fitted.report.issues
    assert len(fitted.glb) <= budget
    [line] = fitted.report.fitted
    assert line.startswith("data maps held to what halving them would lose, at full size "
                           "(image 1) (")
    if estimated:
        assert line.endswith(f" bytes > {budget:,})") and "textures estimated at" in line
        assert len([n for n in chains if n > 5]) == 1  # one run of the chain (and a preview)
    else:
        assert line.endswith(f"({len(free.glb):,} bytes > {budget:,})")
        assert len(chains) == 2
    out, before = parse_glb(fitted.glb), parse_glb(free.glb)
    sizes = [[image_size(d.buffer_view_bytes(im["bufferView"])) for im in d.json["images"]]
             for d in (out, before)]
    assert sizes[0] == sizes[1] and sizes[0][1] == (512, 512)
    rows = {row["image"]: row for row in fitted.report.textures}
    assert rows[1]["metric"] == "normal_mean_deg"
    colour = [d.buffer_view_bytes(d.json["images"][0]["bufferView"]) for d in (out, before)]
    assert colour[0] == colour[1]


def test_only_data_maps_that_halving_would_harm_more_than_their_rule_are_relaxed():
    # Relaxing a smooth data map would change nothing (halving it loses less than its 40 dB
    # rule allows) and cost a run: it is halved instead. A noisy one, and any normal map,
    # gives its rule.
    from test_texture_quality import _doc, _normal_map, _png

    from tourserver.pipeline.textures.quality import LEVELS

    y, x = np.mgrid[0:256, 0:256] / 256
    smooth = np.dstack([255 * x, 255 * y, 128 + 60 * x * y]).astype(np.uint8)
    noisy = np.random.default_rng(3).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    data = LEVELS["high"].target("data", "RGB")
    normal = LEVELS["high"].target("normal", "RGB")
    smooth_doc, noisy_doc = (_doc(_png(pixels), _png(pixels)) for pixels in (smooth, noisy))
    assert not optimize_module._relaxing_loosens(smooth_doc, 1, data, "RGB")
    assert optimize_module._relaxing_loosens(noisy_doc, 1, data, "RGB")
    assert optimize_module._relaxing_loosens(_doc(_png(smooth), _png(_normal_map())), 1,
                                             normal, "RGB")


def test_levels_of_detail_reuse_level_0(monkeypatch):
    chains = _counted_chains(monkeypatch)
    session = Session()
    source = _source(textured_doc())
    options = OptimizeOptions(preset="phone")
    first = session.optimize(source, options)
    lods = session.lods(source, 3, options, first=first)
    assert [lod.level for lod in lods] == [0, 1, 2]
    assert lods[0].glb == first.glb  # level 0 is the optimised asset itself
    assert len(chains) == 3  # one chain per level: level 0 was not optimised twice
    errors = [lod.geometric_error for lod in lods]
    assert errors == sorted(errors)


def test_one_session_encodes_each_image_once(monkeypatch):
    calls = counted_encodes(monkeypatch)
    source = _source(textured_doc())
    session = Session()
    session.optimize(source, OptimizeOptions(preset="phone"))
    once = len(calls)
    assert once == 4
    session.optimize(source, OptimizeOptions(preset="tablet"))  # the same images
    assert len(calls) == once
    Session().optimize(source, OptimizeOptions(preset="phone"))  # another run: its own
    assert len(calls) == 2 * once


@pytest.mark.parametrize("levels", [0, 9])
def test_levels_out_of_range_are_a_usage_error(levels):
    from tourserver.errors import TourError

    session = Session()
    with pytest.raises(TourError) as err:
        session.lods(_source(textured_doc()), levels, OptimizeOptions())
    assert err.value.code == "usage"


def test_no_error_bound_and_no_budget_keeps_every_triangle(tmp_path):
    from support import tiny_glb

    path = tmp_path / "sphere.glb"
    tiny_glb(path, subdivisions=5)  # 20,480 triangles, under the budget
    session = Session()
    source = session.read(path)
    kept = session.optimize(source, OptimizeOptions(preset="phone", simplify_error=0))
    assert kept.report.after is not None and kept.report.after.triangles == 20_480
    bounded = session.optimize(source, OptimizeOptions(preset="phone"))
    assert bounded.report.after is not None and bounded.report.after.triangles < 20_480
    assert 0 < bounded.facts["simplify.error_ratio"] <= 1e-4 * 1.001
