"""The build: validate every tour, store its files content-addressed, make scene variants,
and publish a new catalog atomically.

A scene source is stored as clients get it: one GLB (a .gltf and the files beside it are
packed into one). Warnings do not stop a build and come back in `BuildResult.warnings`;
`progress` hears of every scene and tier, and `BuildResult.variants` summarises them.

Layout of the data directory:
  blobs/ab/<sha256>.<ext>     immutable content, served at /c/<sha256>.<ext>
  cache/<key>.json            scene variants already made for a (source, tiers) pair
  builds/<build-id>.json      a published catalog
  builds/<build-id>/          what a server loads at start (store.artifacts): the tours
                              parsed, the cell index computed; written before `current`
  current                     the id of the catalog being served (replaced atomically)
A failed build never touches `current`, so the previous state keeps serving.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from tourserver import __version__
from tourserver.errors import BuildError, Issue, ManifestInvalid, TourError
from tourserver.files import atomic_write
from tourserver.gltf.document import Document, write_glb
from tourserver.ingest.files import asset_reason, at_file, scene_dependencies
from tourserver.ingest.inspect import scene_stats
from tourserver.ingest.loaders import load_asset
from tourserver.ingest.tours import LoadedTour, load_all, read_manifest
from tourserver.model.manifest import SceneRef, Stop
from tourserver.pipeline.presets import TIERS
from tourserver.pipeline.session import Session, Source
from tourserver.store import artifacts
from tourserver.store.blobs import BlobRef, BlobStore

log = logging.getLogger("tourserver.build")
CATALOG_FORMAT = 1
# Bump when the variant recipe changes so cached variants are made again.
BUILD_RECIPE = f"{__version__}/tiers-19"


# progress(done, total, label): one step per scene and tier, cached ones included.
Progress = Callable[[int, int, str], None]


@dataclass(frozen=True)
class VariantSummary:
    """One row of the build's summary: a scene's variant for one tier."""

    tour: str
    stop: str
    scene: str  # the scene's id
    tier: str
    triangles: int
    bytes: int
    reused: bool  # taken from the cache (or an unchanged build), not made now
    source: str = ""  # the scene's source file, as the manifest names it
    max_texture_px: int = 0


@dataclass(frozen=True)
class BuildResult:
    build_id: str
    changed: bool
    tours: int
    scenes: int
    variants_made: int
    seconds: float
    warnings: tuple[Issue, ...] = ()
    variants: tuple[VariantSummary, ...] = ()

    def to_json(self) -> dict:
        body = asdict(self)
        body["seconds"] = round(self.seconds, 3)
        body["warnings"] = [w.to_json() for w in self.warnings]
        return body


class DataDir:
    def __init__(self, root: Path):
        self.root = root
        self.blobs = BlobStore(root / "blobs")

    @property
    def current_file(self) -> Path:
        return self.root / "current"

    def current_build_id(self) -> str | None:
        return artifacts.current_build_id(self.root)

    def catalog_path(self, build_id: str) -> Path:
        return self.root / "builds" / f"{build_id}.json"

    def artifacts_dir(self, build_id: str) -> Path:
        return artifacts.build_dir(self.root, build_id)

    def read_current_catalog(self) -> dict | None:
        build_id = self.current_build_id()
        if build_id is None:
            return None
        try:
            data = json.loads(self.catalog_path(build_id).read_text("utf-8"))
        except (OSError, UnicodeDecodeError, ValueError):
            return None  # missing or damaged: not up to date, so the next build publishes
        return data if isinstance(data, dict) else None

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
        named = dict(lt.files)
        for scene in lt.tour.scenes():
            # A .gltf's .bin and textures are part of the scene: editing one is a change.
            source = lt.files[scene.source]
            for dep in scene_dependencies(source):
                named.setdefault(f"{scene.source}\0{dep.relative_to(source.parent)}", dep)
        for rel in sorted(named):
            # Content, not mtime: a fresh clone or a touch must not count as a change.
            digest = hashlib.sha256(named[rel].read_bytes()).hexdigest()
            h.update(f"{rel}\0{digest}\0".encode())
    return h.hexdigest()


def build(content_root: Path, data_root: Path, force: bool = False,
          progress: Progress | None = None) -> BuildResult:
    """Build and publish. Raises ManifestInvalid (nothing published) when any tour has an
    error; warnings are returned in the result. `progress` is called once per scene and
    tier, with (done, total, "scene-id tier")."""
    started = time.perf_counter()
    data = DataDir(data_root)
    loaded, issues = load_all(content_root)
    if any(i.is_error for i in issues):
        raise ManifestInvalid(sorted(issues, key=lambda i: not i.is_error))  # errors first
    warnings = tuple(issues)
    if not loaded:
        raise ManifestInvalid([Issue("no_tours", "no tours found", str(content_root / "tours"))])
    fingerprint = _fingerprint(loaded)
    with data.lock():
        current = data.read_current_catalog()
        if current and current.get("fingerprint") == fingerprint and not force:
            # Up to date, but published by a version that wrote no (or older) artifacts:
            # write them, so that upgrading needs no forced rebuild.
            _write_artifacts(data, current, loaded, replace=False)
            return BuildResult(current["build_id"], False, len(loaded),
                               len(current["scenes"]), 0, time.perf_counter() - started,
                               warnings, _summaries(loaded, current["scenes"]))
        steps = _Steps(sum(len(lt.tour.scenes()) for lt in loaded) * len(TIERS), progress)
        catalog, made = _make_catalog(loaded, data, fingerprint, steps)
        body = json.dumps(catalog, ensure_ascii=False, sort_keys=True, indent=1).encode()
        build_id = hashlib.sha256(body).hexdigest()[:16]
        catalog["build_id"] = build_id
        atomic_write(data.catalog_path(build_id),
                     json.dumps(catalog, ensure_ascii=False, sort_keys=True, indent=1).encode())
        # Everything a server loads is on disk before `current` names the build.
        _write_artifacts(data, catalog, loaded, replace=force)
        atomic_write(data.current_file, build_id.encode())
    log.info("published build %s (%d tours, %d variants made)", build_id, len(loaded), made)
    return BuildResult(build_id, True, len(loaded), len(catalog["scenes"]), made,
                       time.perf_counter() - started, warnings, tuple(steps.rows))


def _write_artifacts(data: DataDir, catalog: dict, loaded: list[LoadedTour],
                     replace: bool) -> None:
    """Write builds/<id>/ from the catalog and its tours (parsed and checked by this build:
    the same manifests the catalog holds). Computing the cell index is the slow part."""
    build_id = catalog["build_id"]
    if not replace and artifacts.present(data.artifacts_dir(build_id)):
        return
    files = {entry["manifest"]["id"]: {rel: BlobRef.from_json(ref)
                                       for rel, ref in entry["files"].items()}
             for entry in catalog["tours"]}
    art = artifacts.Artifacts(build_id, [lt.tour for lt in loaded], files, catalog["scenes"],
                              {})
    artifacts.write(data.artifacts_dir(build_id), art, replace=replace)


class _Steps:
    """Counts scene-tier steps for the progress callback and keeps the summary rows."""

    def __init__(self, total: int, progress: Progress | None):
        self.total, self.done, self.progress = total, 0, progress
        self.rows: list[VariantSummary] = []

    def record(self, row: VariantSummary) -> None:
        self.rows.append(row)
        self.done += 1
        if self.progress is not None:
            self.progress(self.done, self.total, f"{row.scene} {row.tier}")


@dataclass(frozen=True)
class _Scene:
    """One scene of one stop being built: enough to name it in a failure or a summary."""

    tour: str
    stop: Stop
    ref: SceneRef
    path: Path

    def failure(self, reason: str, code: str) -> BuildError:
        return BuildError(f"tour {self.tour!r}, stop {self.stop.id!r}: "
                          f"{at_file(self.ref.source, reason)}", code=code)

    def summary(self, variant: dict, reused: bool) -> VariantSummary:
        return VariantSummary(self.tour, self.stop.id, self.ref.id, variant["tier"],
                              int(variant["triangles"]), int(variant["blob"]["bytes"]), reused,
                              self.ref.source, int(variant.get("max_texture_px", 0)))


def _summaries(loaded: list[LoadedTour], scenes: dict) -> tuple[VariantSummary, ...]:
    """The summary of an unchanged build: every variant, all reused."""
    return tuple(_Scene(lt.tour.id, stop, scene, lt.files[scene.source]).summary(v, True)
                 for lt in loaded for stop in lt.tour.stops for scene in stop.scenes
                 for v in scenes.get(scene.id, {}).get("variants", []))


def _make_catalog(loaded: list[LoadedTour], data: DataDir, fingerprint: str,
                  steps: _Steps) -> tuple[dict, int]:
    tours = []
    scenes: dict[str, dict] = {}
    made = 0
    session = Session()  # one encode cache for every tier of every scene of this build
    for lt in loaded:
        sources = {scene.source for scene in lt.tour.scenes()}
        files = {rel: data.blobs.put_file(path).to_json() for rel, path in lt.files.items()
                 if rel not in sources}
        docs: dict[str, Document] = {}
        for stop in lt.tour.stops:
            for ref in stop.scenes:
                scene = _Scene(lt.tour.id, stop, ref, lt.files[ref.source])
                if ref.source not in files:
                    blob, doc = _store_source(data, scene)
                    files[ref.source] = blob.to_json()
                    if doc is not None:
                        docs[ref.source] = doc
                variants, fresh = _scene_variants(data, scene, BlobRef.from_json(
                    files[ref.source]), docs.get(ref.source), steps, session)
                made += fresh
                scenes[ref.id] = {"tour": lt.tour.id, "stop": stop.id, "variants": variants}
        tours.append({"manifest": read_manifest(lt.manifest_path), "files": files,
                      "manifest_file": lt.manifest_path.name})
    catalog = {"format": CATALOG_FORMAT, "fingerprint": fingerprint, "recipe": BUILD_RECIPE,
               "tours": tours, "scenes": scenes}
    return catalog, made


def _store_source(data: DataDir, scene: _Scene) -> tuple[BlobRef, Document | None]:
    """Store a scene source as clients get it: a GLB as it is; a .gltf (or a GLB naming
    files beside it) as one self-contained GLB, so a client or a pack needs one file."""
    if scene.path.suffix.lower() == ".glb" and not scene_dependencies(scene.path):
        return data.blobs.put_file(scene.path), None
    doc = _load(scene)
    return data.blobs.put(write_glb(doc), "glb"), doc


def _load(scene: _Scene) -> Document:
    try:
        return load_asset(scene.path)
    except TourError as exc:
        raise scene.failure(asset_reason(exc.message, scene.path), exc.code) from None


def _scene_variants(data: DataDir, scene: _Scene, source: BlobRef, doc: Document | None,
                    steps: _Steps, session: Session) -> tuple[list[dict], int]:
    """Make (or reuse from cache) every tier's variant of one source GLB."""
    key = hashlib.sha256(f"{BUILD_RECIPE}\0{source.sha256}\0".encode()
                         + "|".join(repr(t.options) for t in TIERS).encode())
    cache_file = data.root / "cache" / f"{key.hexdigest()}.json"
    if cache_file.is_file():
        cached = json.loads(cache_file.read_text("utf-8"))
        if all(data.blobs.has(BlobRef.from_json(v["blob"])) for v in cached):
            for v in cached:
                steps.record(scene.summary(v, True))
            return cached, 0
    doc = doc if doc is not None else _load(scene)
    variants = []
    previous_error = 0.0
    asset = Source(doc, source.bytes, str(scene.path))
    for tier in TIERS:
        result = session.optimize(asset, tier.options)
        out, glb, report = result.doc, result.glb, result.report
        if glb is None:  # structural problems in the source: name the first
            issue = report.issues[0]
            reason = asset_reason(issue.message, scene.path)
            if issue.field and not reason.startswith(("#", issue.field)):
                reason = f"#{issue.field}: {reason}"
            raise scene.failure(reason, issue.code)
        stats = scene_stats(out)
        ref = data.blobs.put(glb, "glb")
        # Geometric error must not shrink as detail drops (3D Tiles refinement relies on it).
        # Quantization moves the simplified surface again: the two errors add up.
        error = max(previous_error, float(result.facts.get("simplify.error", 0.0))
                    + float(result.facts.get("quantize.position_error", 0.0)))
        previous_error = error
        variant = {
            "tier": tier.name, "lod": tier.lod, "blob": ref.to_json(),
            "triangles": stats.triangles, "vertices": stats.vertices,
            "draw_calls": stats.draw_calls, "max_texture_px": stats.max_texture_px,
            "extensions_required": list(stats.extensions_required),
            "extensions_used": list(stats.extensions_used),
            "geometric_error": round(error, 4),
            "bounds": {"min": list(stats.bounds_min), "max": list(stats.bounds_max)},
        }
        variants.append(variant)
        steps.record(scene.summary(variant, False))
    atomic_write(cache_file, json.dumps(variants, sort_keys=True).encode())
    return variants, len(variants)


def validate_tours(content_root: Path) -> list[Issue]:
    """Every problem in every tour, without building anything."""
    try:
        _, issues = load_all(content_root)
    except TourError as exc:  # pragma: no cover - load_all collects, this is a safety net
        return [Issue(exc.code, exc.message)]
    return issues


__all__ = ["build", "validate_tours", "DataDir", "BuildResult", "BuildError", "VariantSummary"]
