"""The optimiser: presets as chains of transforms, and `optimize()`, the one entry point the
CLI (`tourserver optimize`, `lods`) and the tour build share, so both produce the same
bytes for the same input."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, replace

from tourserver.errors import TourError
from tourserver.gltf.document import Document, write_glb
from tourserver.ingest.checks import BUDGETS, Budget, budget_issues, structural_issues
from tourserver.ingest.images import decode_image, rgba_pixels
from tourserver.pipeline.base import Context, Transform, run
from tourserver.pipeline.compact_json import CompactJson
from tourserver.pipeline.dedup import Dedup
from tourserver.pipeline.flat_normals import FlatNormals
from tourserver.pipeline.instance import Instance
from tourserver.pipeline.join import MODES as JOIN_MODES
from tourserver.pipeline.join import Join
from tourserver.pipeline.merge import MergePrimitives
from tourserver.pipeline.meshopt_compress import MeshoptCompress
from tourserver.pipeline.prune import Prune
from tourserver.pipeline.quantize import Quantize
from tourserver.pipeline.reorder import Reorder
from tourserver.pipeline.report import AssetStats, OptimizeReport, measure, texture_rows
from tourserver.pipeline.simplify import Simplify
from tourserver.pipeline.textures.cache import EncodeCache
from tourserver.pipeline.textures.encode import TextureEncode
from tourserver.pipeline.textures.quality import (
    PSNR,
    Target,
    halving_applies,
    halving_target,
    texture_quality,
)
from tourserver.pipeline.textures.resize import TextureResize
from tourserver.pipeline.textures.slots import (
    ALL_CHANNELS,
    fill_unread,
    image_channels,
    image_roles,
)
from tourserver.pipeline.weld import Weld

PRESETS = ("phone", "tablet", "headset", "archive")
TEXTURE_FORMATS = ("webp", "png", "jpeg", "ktx2", "keep")
COMPRESSION = ("meshopt", "none")


@dataclass(frozen=True)
class OptimizeOptions:
    """A preset plus the creator's overrides (None: the preset decides)."""

    preset: str = "phone"
    simplify: float | None = None  # keep this fraction of triangles
    # Simplify every mesh as far as this error allows, × the scene's diagonal (0: no
    # simplification beyond what a budget or `simplify` asks)
    simplify_error: float = 1e-4
    simplify_max_error: float = 0.01  # a budget's cap on the error, × the scene's diagonal
    texture_max: int | None = None
    # Set by budget fitting, not by creators: (image index, largest edge) for the images
    # made smaller than texture_max to meet a byte budget (`TextureResize.limits`).
    texture_limits: tuple[tuple[int, int], ...] = ()
    # Set by budget fitting too: the data maps (image indices) held to what halving them
    # would lose, at full size (`TextureEncode.relax_images`).
    relaxed_images: tuple[int, ...] = ()
    texture_format: str | None = None
    # A level of `textures.quality.LEVELS` or an SSIMULACRA2 score (None: the default level)
    texture_quality: str | float | None = None
    compress: str | None = None
    # Which sibling parts may become one node and one draw (`join.Join`): unnamed | all | none
    join: str = "unnamed"

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise TourError(f"unknown preset {self.preset!r}; use {', '.join(PRESETS)}",
                            code="usage")
        if self.simplify is not None and not 0 < self.simplify <= 1:
            raise TourError("--simplify must be in (0, 1]", code="usage")
        if not 0 <= self.simplify_error <= 0.1:
            raise TourError("--simplify-error must be between 0 and 0.1 (a share of the "
                            "scene's diagonal; 0.0001 is the default)", code="usage")
        if self.texture_max is not None and not 16 <= self.texture_max <= 16384:
            raise TourError("--texture-max must be between 16 and 16384", code="usage")
        if self.texture_format is not None and self.texture_format not in TEXTURE_FORMATS:
            raise TourError(f"--texture-format must be one of {', '.join(TEXTURE_FORMATS)}",
                            code="usage")
        texture_quality(self.texture_quality)  # raises a usage error for a bad level
        if self.join not in JOIN_MODES:
            raise TourError(f"--join must be one of {', '.join(JOIN_MODES)}", code="usage")
        if self.compress is not None and self.compress not in COMPRESSION:
            raise TourError(f"--compress must be one of {', '.join(COMPRESSION)}", code="usage")

    @property
    def budget(self) -> Budget:
        return BUDGETS[self.preset]


def plan(options: OptimizeOptions, triangles: int = 0,
         cache: EncodeCache | None = None,
         resized: dict[tuple, bytes | None] | None = None) -> tuple[Transform, ...]:
    """The transforms a preset and its overrides amount to, in order. `cache` and
    `resized` keep encoded and resized images across the runs of one optimisation."""
    budget = options.budget
    lossless = options.preset == "archive"
    # Archive keeps vertex attributes no material reads (a later material may read them).
    steps: list[Transform] = [Dedup(), Prune(attributes=not lossless)]
    # Images are final from here on: texture-encode starts beside the geometry steps that
    # follow (`base.run`), and applies its results after them.
    texture_max = options.texture_max or budget.max_texture_px
    texture_format = options.texture_format or ("keep" if lossless else "webp")
    if texture_max:
        steps.append(TextureResize(max_px=texture_max, power_of_two=True,
                                   intermediate=texture_format != "keep",
                                   limits=options.texture_limits, cache=resized))
    encode = (TextureEncode(format=texture_format, cache=cache or EncodeCache(),
                            quality=texture_quality(options.texture_quality),
                            relax_images=frozenset(options.relaxed_images))
              if texture_format != "keep" else None)
    if not lossless:
        # Normals that only repeat each face's own go: clients compute flat normals, and the
        # weld below merges the positions they kept apart (archive keeps the attribute).
        steps.append(FlatNormals())
    steps.append(Weld())
    if not lossless:
        # One mesh's primitives with the same material become one draw (archive keeps them).
        steps.append(MergePrimitives())
        steps.append(Instance())
        if options.join != "none":
            steps.append(Join(names=options.join))
    # By default every mesh loses what an error far under a pixel allows (flat, subdivided
    # detail), then more only where the budget (or the creator's ratio) demands it.
    ratio = options.simplify if options.simplify is not None and options.simplify < 1 else None
    max_triangles = budget.max_triangles if options.simplify is None else None
    if not lossless or ratio is not None:
        steps.append(Simplify(error=0.0 if lossless else options.simplify_error, ratio=ratio,
                              max_triangles=max_triangles,
                              max_error=max(options.simplify_max_error,
                                            options.simplify_error)))
    steps.append(Reorder())
    compress = options.compress or "meshopt"
    if not lossless:
        # Vertices that quantize to the same values are the same vertex in the output: weld
        # them, and order again, as seams that close give the strip order longer runs
        # (TilesBuilding 5 % smaller). Quantize appends the new accessors; drop the float
        # ones before compression packs the bytes for good.
        steps.extend((Quantize(), Weld(name="weld-quantized"), Reorder(name="reorder-quantized")))
    if encode is not None:
        steps.append(encode)
    if not lossless:
        steps.append(Prune())
    if compress == "meshopt":
        steps.append(MeshoptCompress(rotate_triangles=True))
    steps.append(Prune(attributes=not lossless))
    if not lossless:
        steps.append(CompactJson())
    return tuple(steps)


# How many times a preset's chain runs, tighter each time, before an asset that is still
# over its budget is reported as such (exit 3). Each tightening aims under the budget from
# the measured overshoot, so a second run nearly always fits.
MAX_FIT_RUNS = 4
MIN_SIMPLIFY_RATIO = 0.01
MIN_FIT_TEXTURE_PX = 256  # textures are not shrunk below this to meet a byte budget
# How far a budget may loosen simplification's error cap (× the scene's diagonal) before
# the asset is reported over budget.
MAX_FIT_ERROR = 0.05


def optimize(doc: Document, source_bytes: int, options: OptimizeOptions, *,
             source: str = "<memory>", output: str | None = None,
             dry_run: bool = False, ctx: Context | None = None,
             progress: Callable[[int, int, str], None] | None = None,
             cache: EncodeCache | None = None,
             ) -> tuple[Document, bytes | None, OptimizeReport]:
    """Check, transform and measure one asset. Returns the new document, its GLB bytes
    (None on a dry run) and the report. Never writes files.

    A preset's budget is met whenever simplifying or downscaling more can meet it: when
    the output is over, the chain runs again with a tighter ratio of triangles or smaller
    textures, aimed under the budget by the measured overshoot (`report.fitted` says
    what was tightened). What still does not fit is reported as over budget."""
    ctx = ctx or Context()
    cache = cache if cache is not None else EncodeCache()
    before = measure(doc, source_bytes)
    budget = options.budget
    report = OptimizeReport(source, output, options.preset, before,
                            steps=[_describe(t) for t in plan(options, before.triangles)],
                            dry_run=dry_run)
    report.issues.extend(structural_issues(doc, source))
    if dry_run or report.issues:
        return doc, None, report
    resized: dict[tuple, bytes | None] = {}
    attempt = options
    prefit = _prefit(doc, options, cache, resized)
    if prefit is not None:
        attempt, why = prefit
        report.fitted.append(why)
        ctx.logger.info("%s: expected over the %s budget; first run with %s", source,
                        budget.name, why)
    previous: AssetStats | None = None
    for _ in range(MAX_FIT_RUNS):
        steps = plan(attempt, before.triangles, cache, resized)
        run_ctx = Context(logger=ctx.logger)
        out, run_ctx = run(doc, *steps, ctx=run_ctx, progress=progress)
        glb = write_glb(out)
        over = budget_issues(out, len(glb), budget, output)
        tighter = (_tighter(attempt, options, before, out, len(glb), run_ctx.facts, previous)
                   if over else None)
        previous = measure(out, len(glb))
        if tighter is None:
            break
        attempt, why = tighter
        report.fitted.append(why)
        ctx.logger.info("%s: over the %s budget; again with %s", source, budget.name, why)
    crossed = int(run_ctx.facts.get("simplify.crossed_seams", 0))
    if crossed:
        report.fitted.append(f"{crossed} part(s) simplified across attribute seams to meet "
                             "the triangle budget (textures may stretch where UV charts met)")
    ctx.facts.update(run_ctx.facts)
    for name, seconds in run_ctx.timings.items():
        ctx.timings[name] = ctx.timings.get(name, 0.0) + seconds
    report.steps = [_describe(t) for t in steps]
    report.timings_s.update(ctx.timings)
    report.after = measure(out, len(glb))
    report.facts = dict(ctx.facts)
    report.textures = texture_rows(report.facts, out)
    report.issues.extend(over)
    return out, glb, report


def _tighter(options: OptimizeOptions, asked: OptimizeOptions, before: AssetStats,
             out: Document, size: int, facts: dict[str, float],
             previous: AssetStats | None = None,
             ) -> tuple[OptimizeOptions, str] | None:
    """The next options to try for an output over its budget, and what changed; None when
    neither simplifying nor downscaling can bring it any closer. Triangles and bytes are
    tightened together, so one more run can fix both. What the creator set (`asked`:
    --simplify, --texture-max) is never overridden. `previous`: the run before's output;
    a tighter ratio that removed no triangle there will not remove any now, so it is not
    asked again (city_block, whose seams held every vertex, ran four times for nothing)."""
    budget = options.budget
    after = measure(out, size)
    stuck = (previous is not None and after.triangles >= previous.triangles
             and options.simplify is not None)
    lighter: _Lighter | None = None
    simplify: float | None = None
    max_error: float | None = None
    why: list[str] = []
    ratio = options.simplify if options.simplify is not None else (
        after.triangles / before.triangles if before.triangles else 1.0)
    share = ratio
    if budget.max_triangles and after.triangles > budget.max_triangles:
        share = ratio * budget.max_triangles / after.triangles * 0.98
        why.append(f"{after.triangles:,} triangles > {budget.max_triangles:,}")
    if budget.max_bytes and size > budget.max_bytes:
        why.append(f"{size:,} bytes > {budget.max_bytes:,}")
        if _texture_bytes(out) > size / 2:
            lighter = _lighter_textures(options, out, facts, size - budget.max_bytes,
                                        may_shrink=asked.texture_max is None)
        if lighter is None and after.triangles:
            share = min(share, ratio * budget.max_bytes / size * 0.9)
    if asked.simplify is None and not stuck and MIN_SIMPLIFY_RATIO <= share < ratio:
        simplify = share
        if facts.get("simplify.over_budget"):
            # Simplify stopped at its error cap short of the goal: let it go further.
            cap = min(MAX_FIT_ERROR, options.simplify_max_error * 4)
            if cap > options.simplify_max_error:
                max_error = cap
    done = []
    tighter = options
    if simplify is not None:
        tighter = replace(tighter, simplify=simplify)
        done.append(f"{simplify:.1%} of the triangles")
    if max_error is not None:
        tighter = replace(tighter, simplify_max_error=max_error)
        done.append(f"an error cap of {max_error:.1%} of the diagonal")
    if lighter is not None:
        tighter = replace(tighter, relaxed_images=lighter.relaxed,
                          texture_limits=tuple(sorted(lighter.limits.items())))
        done.extend(_gave_way(options, lighter, out))
    if not done:
        return None
    return tighter, f"{', '.join(done)} ({'; '.join(why)})"


# What a heavy image saves when it gives way, of its bytes. Halving (a quarter of the
# pixels) re-encodes to 0.2-0.3 of them on the bench's noisy scenes, 0.6 where detail is
# coarse (the facades' street at 2048 px); a data map held to halving's loss at full size
# to 0.04-0.24. Both are counted low: too low gives way more than needed, too high costs
# one more run; the aim is 10 % under what is over.
GIVING_WAY_SAVES = 0.7


@dataclass(frozen=True)
class _Lighter:
    relaxed: tuple[int, ...]  # `OptimizeOptions.relaxed_images`
    limits: dict[int, int]  # image index -> largest edge (`OptimizeOptions.texture_limits`)
    new: list[int]  # the images that give way this time


def _gave_way(options: OptimizeOptions, lighter: _Lighter, doc: Document) -> list[str]:
    """What `lighter` changes from `options`, for the report's `fitted`."""
    names = [im.get("name") or f"image {i}" for i, im in enumerate(doc.json.get("images", []))]
    done = []
    relaxed = [names[i] for i in lighter.new
               if i in lighter.relaxed and i not in options.relaxed_images]
    if relaxed:
        done.append(f"data maps held to what halving them would lose, at full size "
                    f"({', '.join(relaxed)})")
    earlier = dict(options.texture_limits)
    for px in sorted(set(lighter.limits.values()), reverse=True):
        changed = [names[i] for i in sorted(lighter.limits)
                   if lighter.limits[i] == px and earlier.get(i) != px]
        if changed:
            done.append(f"textures up to {px} px ({', '.join(changed)})")
    return done


def _prefit(doc: Document, options: OptimizeOptions, cache: EncodeCache,
            resized: dict[tuple, bytes | None]) -> tuple[OptimizeOptions, str] | None:
    """Options that land a byte budget in the first run where the textures alone are
    expected over it, and what changed; None where they are not. The images the chain
    would encode are estimated from the encoder's samples (`TextureEncode.estimate`,
    10-15 % off, no full-size encode), and the heaviest give way as after a run
    (`_lighter_textures`). Without it, the first run encodes every image at the level's
    rules only to learn the overshoot: noisy_photo's two noisy normal maps cost 5.7 s each
    near-losslessly, and are then relaxed. Where the source's own images fit the budget
    (their new encodings nearly always come in under them), nothing is estimated; what
    the estimate misses (geometry, its error) the runs that follow fit as before."""
    budget = options.budget
    if not budget.max_bytes or _texture_bytes(doc) <= budget.max_bytes:
        return None
    steps = plan(options, 0, cache, resized)
    resize = next((k for k, t in enumerate(steps) if isinstance(t, TextureResize)), None)
    encode = next((t for t in steps if isinstance(t, TextureEncode)), None)
    if resize is None or encode is None:
        return None
    # The images as the encoder will see them (resized, kept for the first run).
    preview, preview_ctx = run(doc, *steps[:resize + 1])
    sizes = encode.estimate(preview)
    expected = sum(sizes.values())
    if not sizes or expected <= budget.max_bytes:
        return None
    lighter = _lighter_textures(options, preview, preview_ctx.facts,
                                expected - budget.max_bytes,
                                may_shrink=options.texture_max is None, sizes=sizes)
    if lighter is None:
        return None
    fitted = replace(options, relaxed_images=lighter.relaxed,
                     texture_limits=tuple(sorted(lighter.limits.items())))
    done = _gave_way(options, lighter, preview)
    return fitted, (f"{', '.join(done)} (textures estimated at {expected:,.0f} bytes > "
                    f"{budget.max_bytes:,})")


def _lighter_textures(options: OptimizeOptions, out: Document, facts: dict[str, float],
                      over: float, may_shrink: bool,
                      sizes: dict[int, float] | None = None) -> _Lighter | None:
    """Which images give way to save `over` bytes: the heaviest first, until what they
    save (GIVING_WAY_SAVES of each) covers it. A data map gives its rule first, where that
    asks less (`_relaxing_loosens`): it is held to what halving it would lose, at full size
    (`quality.halving_target`), which keeps more of it per byte than halving does. Then
    it, or a colour image, is halved, never below MIN_FIT_TEXTURE_PX (not when
    `may_shrink` is False: the creator fixed --texture-max). Heavy images are most of a
    budget's overshoot (noisy normal maps, 2-4 MB each), while the light ones keep their
    size and quality. None when no image can give way (or the images cannot be matched to
    the resize step's). `sizes`: each image's bytes, where they are estimates (`_prefit`)
    rather than `out`'s own."""
    images = out.json.get("images", [])
    if facts.get("texture_resize.images_total") != len(images):
        return None  # a later step removed an image: indices no longer match
    encoded = (options.texture_format or ("keep" if options.preset == "archive" else "webp")
               ) != "keep"
    quality = texture_quality(options.texture_quality)
    may_relax = encoded and not quality.lossless
    roles, channels = image_roles(out.json), image_channels(out.json)
    views = out.json.get("bufferViews", [])
    if sizes is None:
        sizes = {i: float(views[im["bufferView"]]["byteLength"])
                 for i, im in enumerate(images) if "bufferView" in im}
    heavy = sorted(((size, i) for i, size in sizes.items()), reverse=True)
    relaxed = set(options.relaxed_images)
    limits = dict(options.texture_limits)
    new = []
    saved = 0.0
    for size, i in heavy:
        if saved >= over * 1.1:
            break
        read = channels.get(i, ALL_CHANNELS)
        if (may_relax and i not in relaxed
                and _relaxing_loosens(out, i, quality.target(roles.get(i, "data"), read), read)):
            relaxed.add(i)
        elif may_shrink and f"texture_resize.image.{i}.px" in facts:
            edge = int(facts[f"texture_resize.image.{i}.px"])
            if edge // 2 < MIN_FIT_TEXTURE_PX:
                continue
            limits[i] = edge // 2
        else:
            continue
        new.append(i)
        saved += size * GIVING_WAY_SAVES
    return _Lighter(tuple(sorted(relaxed)), limits, new) if new else None


_DECODABLE = ("image/png", "image/jpeg", "image/webp")


def _relaxing_loosens(out: Document, i: int, rule: Target, channels: str) -> bool:
    """Whether holding image `i` to what halving it would lose asks less than its rule:
    always for a normal map (the mean angle, at least 1°, against the 99th percentile);
    for packed data, where halving the image as encoded loses more than the rule allows
    (its encoding holds the rule, so stands in for the source). A smooth data map loses
    less when halved: relaxing it would change nothing and cost a run, so it is halved."""
    if not halving_applies(rule):
        return False
    image = out.json["images"][i]
    if rule.metric is not PSNR or image.get("mimeType") not in _DECODABLE:
        return True
    with decode_image(out.buffer_view_bytes(image["bufferView"]), f"image {i}") as img:
        pixels = fill_unread(rgba_pixels(img), channels)
    return halving_target(rule, pixels).floor < rule.floor


def _texture_bytes(doc: Document) -> int:
    """Bytes of the embedded images."""
    views = doc.json.get("bufferViews", [])
    return sum(int(views[im["bufferView"]]["byteLength"]) for im in doc.json.get("images", [])
               if "bufferView" in im)


@dataclass(frozen=True)
class Lod:
    level: int
    glb: bytes
    triangles: int
    geometric_error: float  # metres (the asset's units): how far this level may deviate
    report: OptimizeReport


def make_lods(doc: Document, source_bytes: int, levels: int,
              options: OptimizeOptions | None = None, source: str = "<memory>", *,
              cache: EncodeCache | None = None, first: Lod | None = None) -> list[Lod]:
    """A chain of levels of detail: level 0 is the optimised full asset (`first`, when the
    caller has it already); each next level keeps about half the triangles (and half the
    texture size) of the one before. Errors never shrink from one level to the next (3D
    Tiles geometricError relies on that)."""
    if not 1 <= levels <= 8:
        raise TourError("--levels must be between 1 and 8", code="usage")
    options = options or OptimizeOptions()
    cache = cache if cache is not None else EncodeCache()
    base_px = options.texture_max or options.budget.max_texture_px or 4096
    lods: list[Lod] = [first] if first is not None else []
    error = first.geometric_error if first is not None else 0.0
    for level in range(len(lods), levels):
        ratio = 0.5 ** level
        level_options = replace(
            options, simplify=None if level == 0 else ratio,
            simplify_error=options.simplify_error * 4 ** level,
            simplify_max_error=options.simplify_max_error * 4 ** level,
            texture_max=max(64, base_px >> level))
        lod = lod_of(doc, source_bytes, level, level_options, source, cache)
        error = max(error, lod.geometric_error)
        lods.append(replace(lod, geometric_error=round(error, 6)))
    return lods


def lod_of(doc: Document, source_bytes: int, level: int, options: OptimizeOptions,
           source: str = "<memory>", cache: EncodeCache | None = None) -> Lod:
    """One level: the optimised asset with its geometric error (simplification and
    quantization move the surface; the two errors add up)."""
    ctx = Context()
    _, glb, report = optimize(doc, source_bytes, options, source=source, ctx=ctx, cache=cache)
    if glb is None:
        raise TourError(f"{source}: {report.issues[0]}", code=report.issues[0].code)
    error = (float(ctx.facts.get("simplify.error", 0.0))
             + float(ctx.facts.get("quantize.position_error", 0.0)))
    return Lod(level, glb, report.after.triangles if report.after else 0, round(error, 6),
               report)


def _describe(t: Transform) -> str:
    shown = {f.name for f in dataclasses.fields(t) if f.repr} if dataclasses.is_dataclass(t) \
        else set(vars(t))
    fields = {k: v for k, v in vars(t).items() if k != "name" and k in shown}
    return t.name + ("(" + ", ".join(f"{k}={v}" for k, v in fields.items()) + ")"
                     if fields else "")


__all__ = ["OptimizeOptions", "optimize", "plan", "make_lods", "lod_of", "Lod", "PRESETS"]
