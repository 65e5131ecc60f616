"""One optimiser run: read an asset, run a preset's chain (as many levels as asked) and
write the result. `tourserver optimize`, `tourserver lods` and the tour build all go
through a `Session`, so they make the same bytes for the same input, and every chain of a
run shares one cache of encoded textures (a build's tiers, an asset's levels of detail:
their images are often the same after resizing)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tourserver.files import atomic_write
from tourserver.gltf.document import Document, write_glb
from tourserver.ingest.loaders import load_asset
from tourserver.pipeline.base import Context
from tourserver.pipeline.optimize import Lod, OptimizeOptions, make_lods, optimize
from tourserver.pipeline.report import OptimizeReport
from tourserver.pipeline.textures.cache import EncodeCache

Progress = Callable[[int, int, str], None]


@dataclass(frozen=True)
class Source:
    """An asset as read: its document, what it weighs as delivered, and its name."""

    doc: Document
    bytes: int
    name: str


@dataclass(frozen=True)
class Optimized:
    doc: Document
    glb: bytes | None  # None on a dry run or when the source has structural problems
    report: OptimizeReport
    facts: dict[str, float]


@dataclass
class Session:
    cache: EncodeCache = field(default_factory=EncodeCache)

    def read(self, path: Path) -> Source:
        """Load a .glb, .gltf (with its files), .obj, .ply or .stl. A .gltf weighs what the
        equivalent self-contained GLB does, so sizes compare like with like."""
        doc = load_asset(path)
        size = path.stat().st_size if path.suffix.lower() == ".glb" else len(write_glb(doc))
        return Source(doc, size, str(path))

    def optimize(self, source: Source, options: OptimizeOptions, *,
                 output: str | None = None, dry_run: bool = False,
                 progress: Progress | None = None) -> Optimized:
        ctx = Context()
        doc, glb, report = optimize(source.doc, source.bytes, options, source=source.name,
                                    output=output, dry_run=dry_run, ctx=ctx,
                                    progress=progress, cache=self.cache)
        return Optimized(doc, glb, report, dict(ctx.facts))

    def lods(self, source: Source, levels: int, options: OptimizeOptions, *,
             first: Optimized | None = None) -> list[Lod]:
        """Levels 0..levels-1; level 0 is `first` when the caller optimised it already
        (`optimize --lods N` does not optimise the full asset twice)."""
        level0 = None
        if first is not None and first.glb is not None:
            error = (first.facts.get("simplify.error", 0.0)
                     + first.facts.get("quantize.position_error", 0.0))
            triangles = first.report.after.triangles if first.report.after else 0
            level0 = Lod(0, first.glb, triangles, round(float(error), 6), first.report)
        return make_lods(source.doc, source.bytes, levels, options, source.name,
                         cache=self.cache, first=level0)

    @staticmethod
    def write(path: Path, data: bytes) -> None:
        """Atomically: a reader sees the old file or the new one, never a part."""
        atomic_write(path, data)


__all__ = ["Session", "Source", "Optimized"]
