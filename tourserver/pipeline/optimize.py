"""The optimiser: presets as chains of transforms, and `optimize()`, the one entry point the
CLI (`tourserver optimize`, `lods`) and the tour build share, so both produce the same
bytes for the same input."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from tourserver.errors import TourError
from tourserver.gltf.document import Document, write_glb
from tourserver.ingest.checks import BUDGETS, Budget, budget_issues, structural_issues
from tourserver.pipeline.base import Context, Transform, run
from tourserver.pipeline.compact_json import CompactJson
from tourserver.pipeline.dedup import Dedup
from tourserver.pipeline.flat_normals import FlatNormals
from tourserver.pipeline.instance import Instance
from tourserver.pipeline.merge import MergePrimitives
from tourserver.pipeline.meshopt_compress import MeshoptCompress
from tourserver.pipeline.prune import Prune
from tourserver.pipeline.quantize import Quantize
from tourserver.pipeline.reorder import Reorder
from tourserver.pipeline.report import OptimizeReport, measure
from tourserver.pipeline.simplify import Simplify
from tourserver.pipeline.textures.encode import TextureEncode
from tourserver.pipeline.textures.resize import TextureResize
from tourserver.pipeline.weld import Weld

PRESETS = ("phone", "tablet", "headset", "archive")
TEXTURE_FORMATS = ("webp", "png", "jpeg", "ktx2", "keep")
COMPRESSION = ("meshopt", "none")


@dataclass(frozen=True)
class OptimizeOptions:
    """A preset plus the creator's overrides (None: the preset decides)."""

    preset: str = "phone"
    simplify: float | None = None  # keep this fraction of triangles
    simplify_error: float = 0.01  # relative to the mesh extent: a cap on the deviation
    texture_max: int | None = None
    texture_format: str | None = None
    compress: str | None = None

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise TourError(f"unknown preset {self.preset!r}; use {', '.join(PRESETS)}",
                            code="usage")
        if self.simplify is not None and not 0 < self.simplify <= 1:
            raise TourError("--simplify must be in (0, 1]", code="usage")
        if self.texture_max is not None and not 16 <= self.texture_max <= 16384:
            raise TourError("--texture-max must be between 16 and 16384", code="usage")
        if self.texture_format is not None and self.texture_format not in TEXTURE_FORMATS:
            raise TourError(f"--texture-format must be one of {', '.join(TEXTURE_FORMATS)}",
                            code="usage")
        if self.compress is not None and self.compress not in COMPRESSION:
            raise TourError(f"--compress must be one of {', '.join(COMPRESSION)}", code="usage")

    @property
    def budget(self) -> Budget:
        return BUDGETS[self.preset]


def plan(options: OptimizeOptions, triangles: int = 0) -> tuple[Transform, ...]:
    """The transforms a preset and its overrides amount to, in order."""
    budget = options.budget
    lossless = options.preset == "archive"
    # Archive keeps vertex attributes no material reads (a later material may read them).
    steps: list[Transform] = [Dedup(), Prune(attributes=not lossless)]
    # Images are final from here on: texture-encode starts beside the geometry steps that
    # follow (`base.run`), and applies its results after them.
    texture_max = options.texture_max or budget.max_texture_px
    if texture_max:
        steps.append(TextureResize(max_px=texture_max, power_of_two=True))
    texture_format = options.texture_format or ("keep" if lossless else "webp")
    encode = TextureEncode(format=texture_format) if texture_format != "keep" else None
    if not lossless:
        # Normals that only repeat each face's own go: clients compute flat normals, and the
        # weld below merges the positions they kept apart (archive keeps the attribute).
        steps.append(FlatNormals())
    steps.append(Weld())
    if not lossless:
        # One mesh's primitives with the same material become one draw (archive keeps them).
        steps.append(MergePrimitives())
        steps.append(Instance())
    ratio = options.simplify
    if ratio is None and budget.max_triangles and triangles > budget.max_triangles:
        ratio = budget.max_triangles / triangles  # fit the device: no more than needed
    if ratio is not None and ratio < 1:
        steps.append(Simplify(ratio=ratio, target_error=options.simplify_error))
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


def optimize(doc: Document, source_bytes: int, options: OptimizeOptions, *,
             source: str = "<memory>", output: str | None = None,
             dry_run: bool = False, ctx: Context | None = None,
             progress: Callable[[int, int, str], None] | None = None,
             ) -> tuple[Document, bytes | None, OptimizeReport]:
    """Check, transform and measure one asset. Returns the new document, its GLB bytes
    (None on a dry run) and the report. Never writes files."""
    ctx = ctx or Context()
    before = measure(doc, source_bytes)
    steps = plan(options, before.triangles)
    report = OptimizeReport(source, output, options.preset, before,
                            steps=[_describe(t) for t in steps], dry_run=dry_run)
    report.issues.extend(structural_issues(doc, source))
    if dry_run or report.issues:
        return doc, None, report
    doc, ctx = run(doc, *steps, ctx=ctx, progress=progress)
    report.timings_s.update(ctx.timings)
    glb = write_glb(doc)
    report.after = measure(doc, len(glb))
    report.facts = dict(ctx.facts)
    report.issues.extend(budget_issues(doc, len(glb), options.budget, output))
    return doc, glb, report


@dataclass(frozen=True)
class Lod:
    level: int
    glb: bytes
    triangles: int
    geometric_error: float  # metres (the asset's units): how far this level may deviate
    report: OptimizeReport


def make_lods(doc: Document, source_bytes: int, levels: int,
              options: OptimizeOptions | None = None, source: str = "<memory>") -> list[Lod]:
    """A chain of levels of detail: level 0 is the optimised full asset; each next level
    keeps about half the triangles (and half the texture size) of the one before. Errors
    never shrink from one level to the next (3D Tiles geometricError relies on that)."""
    if not 1 <= levels <= 8:
        raise TourError("--levels must be between 1 and 8", code="usage")
    options = options or OptimizeOptions()
    base_px = options.texture_max or options.budget.max_texture_px or 4096
    lods: list[Lod] = []
    error = 0.0
    for level in range(levels):
        ratio = 0.5 ** level
        level_options = replace(
            options, simplify=None if level == 0 else ratio,
            simplify_error=0.01 * 4 ** level, texture_max=max(64, base_px >> level))
        ctx = Context()
        _, glb, report = optimize(doc, source_bytes, level_options, source=source, ctx=ctx)
        if glb is None:
            raise TourError(f"{source}: {report.issues[0]}", code=report.issues[0].code)
        # Quantization moves the simplified surface again: the two errors add up.
        error = max(error, float(ctx.facts.get("simplify.error", 0.0))
                    + float(ctx.facts.get("quantize.position_error", 0.0)))
        lods.append(Lod(level, glb, report.after.triangles, round(error, 6), report))
    return lods


def _describe(t: Transform) -> str:
    fields = {k: v for k, v in vars(t).items() if k != "name"}
    return t.name + ("(" + ", ".join(f"{k}={v}" for k, v in fields.items()) + ")"
                     if fields else "")


__all__ = ["OptimizeOptions", "optimize", "plan", "make_lods", "Lod", "PRESETS"]
