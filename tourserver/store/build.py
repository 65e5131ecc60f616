"""The build: validate every tour, store its files content-addressed, make scene variants,
and publish a new catalog atomically.

Layout of the data directory:
  blobs/ab/<sha256>.<ext>     immutable content, served at /c/<sha256>.<ext>
  cache/<key>.json            scene variants already made for a (source, tiers) pair
  builds/<build-id>.json      a published catalog
  current                     the id of the catalog being served (replaced atomically)
A failed build never touches `current`, so the previous state keeps serving.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tourserver import __version__
from tourserver.errors import BuildError, Issue, ManifestInvalid, TourError
from tourserver.ingest.inspect import scene_stats
from tourserver.ingest.loaders import load_asset
from tourserver.ingest.tours import LoadedTour, load_all, read_manifest
from tourserver.pipeline.base import Context
from tourserver.pipeline.optimize import optimize
from tourserver.pipeline.presets import TIERS
from tourserver.store.blobs import BlobRef, BlobStore, atomic_write

log = logging.getLogger("tourserver.build")
CATALOG_FORMAT = 1
# Bump when the variant recipe changes so cached variants are made again.
BUILD_RECIPE = f"{__version__}/tiers-19"


@dataclass(frozen=True)
class BuildResult:
    build_id: str
    changed: bool
    tours: int
    scenes: int
    variants_made: int
    seconds: float


class DataDir:
    def __init__(self, root: Path):
        self.root = root
        self.blobs = BlobStore(root / "blobs")

    @property
    def current_file(self) -> Path:
        return self.root / "current"

    def current_build_id(self) -> str | None:
        try:
            return self.current_file.read_text().strip() or None
        except FileNotFoundError:
            return None

    def catalog_path(self, build_id: str) -> Path:
        return self.root / "builds" / f"{build_id}.json"

    def read_current_catalog(self) -> dict | None:
        build_id = self.current_build_id()
        if build_id is None:
            return None
        return json.loads(self.catalog_path(build_id).read_text("utf-8"))

    @contextmanager
    def lock(self) -> Iterator[None]:
        """One build at a time per data directory (several workers may start together)."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".build.lock", "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)


def _fingerprint(loaded: list[LoadedTour]) -> str:
    h = hashlib.sha256(BUILD_RECIPE.encode())
    for lt in loaded:
        h.update(lt.manifest_path.read_bytes())
        for rel in sorted(lt.files):
            # Content, not mtime: a fresh clone or a touch must not count as a change.
            digest = hashlib.sha256(lt.files[rel].read_bytes()).hexdigest()
            h.update(f"{rel}\0{digest}\0".encode())
    return h.hexdigest()


def build(content_root: Path, data_root: Path, force: bool = False) -> BuildResult:
    """Build and publish. Raises ManifestInvalid (nothing published) on any tour problem."""
    started = time.perf_counter()
    data = DataDir(data_root)
    loaded, issues = load_all(content_root)
    if issues:
        raise ManifestInvalid(issues)
    if not loaded:
        raise ManifestInvalid([Issue("no_tours", "no tours found", str(content_root / "tours"))])
    fingerprint = _fingerprint(loaded)
    with data.lock():
        current = data.read_current_catalog()
        if current and current.get("fingerprint") == fingerprint and not force:
            return BuildResult(current["build_id"], False, len(loaded),
                               len(current["scenes"]), 0, time.perf_counter() - started)
        catalog, made = _make_catalog(loaded, data, fingerprint)
        body = json.dumps(catalog, ensure_ascii=False, sort_keys=True, indent=1).encode()
        build_id = hashlib.sha256(body).hexdigest()[:16]
        catalog["build_id"] = build_id
        atomic_write(data.catalog_path(build_id),
                     json.dumps(catalog, ensure_ascii=False, sort_keys=True, indent=1).encode())
        atomic_write(data.current_file, build_id.encode())
    log.info("published build %s (%d tours, %d variants made)", build_id, len(loaded), made)
    return BuildResult(build_id, True, len(loaded), len(catalog["scenes"]), made,
                       time.perf_counter() - started)


def _make_catalog(loaded: list[LoadedTour], data: DataDir, fingerprint: str) -> tuple[dict, int]:
    tours = []
    scenes: dict[str, dict] = {}
    made = 0
    for lt in loaded:
        files = {rel: data.blobs.put_file(path).to_json() for rel, path in lt.files.items()}
        tours.append({"manifest": read_manifest(lt.manifest_path), "files": files,
                      "manifest_file": lt.manifest_path.name})
        for stop in lt.tour.stops:
            for scene in stop.scenes:
                source = BlobRef.from_json(files[scene.source])
                variants, fresh = _scene_variants(data, source, lt.files[scene.source])
                made += fresh
                scenes[scene.id] = {"tour": lt.tour.id, "stop": stop.id, "variants": variants}
    catalog = {"format": CATALOG_FORMAT, "fingerprint": fingerprint, "recipe": BUILD_RECIPE,
               "tours": tours, "scenes": scenes}
    return catalog, made


def _scene_variants(data: DataDir, source: BlobRef, path: Path) -> tuple[list[dict], int]:
    """Make (or reuse from cache) every tier's variant of one source GLB."""
    key = hashlib.sha256(f"{BUILD_RECIPE}\0{source.sha256}\0".encode()
                         + "|".join(repr(t.options) for t in TIERS).encode())
    cache_file = data.root / "cache" / f"{key.hexdigest()}.json"
    if cache_file.is_file():
        cached = json.loads(cache_file.read_text("utf-8"))
        if all(data.blobs.has(BlobRef.from_json(v["blob"])) for v in cached):
            return cached, 0
    try:
        doc = load_asset(path)
    except TourError as exc:
        raise BuildError(f"{path}: {exc.message}", code=exc.code) from None
    variants = []
    previous_error = 0.0
    for tier in TIERS:
        ctx = Context()
        out, glb, report = optimize(doc, path.stat().st_size, tier.options, source=str(path),
                                    ctx=ctx)
        if glb is None:  # structural problems in the source: name the first
            issue = report.issues[0]
            raise BuildError(f"{path}: {issue}", code=issue.code)
        stats = scene_stats(out)
        ref = data.blobs.put(glb, "glb")
        # Geometric error must not shrink as detail drops (3D Tiles refinement relies on it).
        # Quantization moves the simplified surface again: the two errors add up.
        error = max(previous_error, float(ctx.facts.get("simplify.error", 0.0))
                    + float(ctx.facts.get("quantize.position_error", 0.0)))
        previous_error = error
        variants.append({
            "tier": tier.name, "lod": tier.lod, "blob": ref.to_json(),
            "triangles": stats.triangles, "vertices": stats.vertices,
            "draw_calls": stats.draw_calls, "max_texture_px": stats.max_texture_px,
            "extensions_required": list(stats.extensions_required),
            "extensions_used": list(stats.extensions_used),
            "geometric_error": round(error, 4),
            "bounds": {"min": list(stats.bounds_min), "max": list(stats.bounds_max)},
        })
    atomic_write(cache_file, json.dumps(variants, sort_keys=True).encode())
    return variants, len(variants)


def validate_tours(content_root: Path) -> list[Issue]:
    """Every problem in every tour, without building anything."""
    try:
        _, issues = load_all(content_root)
    except TourError as exc:  # pragma: no cover - load_all collects, this is a safety net
        return [Issue(exc.code, exc.message)]
    return issues


__all__ = ["build", "validate_tours", "DataDir", "BuildResult", "BuildError"]
