"""Shared test helpers: tiny valid tours made on the fly, and the real-tool guard."""

from __future__ import annotations

import copy
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import trimesh
import yaml

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO.parent / "shared" / "corpus"
MODELS = REPO / "tests" / "models"  # small, openly licensed: see tests/models/README.md
REQUIRE_REAL = os.environ.get("TOURSERVER_REQUIRE_REAL_TOOLS") == "1"


def require(available: bool, what: str) -> None:
    """Skip when a real tool is missing, except in CI, where a missing tool is a failure."""
    if available:
        return
    if REQUIRE_REAL:
        pytest.fail(f"{what} is required (TOURSERVER_REQUIRE_REAL_TOOLS=1) but missing")
    pytest.skip(f"{what} not available")


def corpus_file(rel: str) -> Path:
    """A sample model: the small ones are committed under tests/models/ (so the suite runs
    on a fresh clone), the large ones come from ../shared/corpus."""
    committed = MODELS / rel
    if committed.is_file():
        return committed
    path = CORPUS / rel
    # Absent on a fresh clone with nothing beside it: a skip there, a failure in CI.
    require(path.is_file(), f"the shared corpus file {rel} (expected {path}, "
            "../shared/corpus beside the project)")
    return path


def tiny_glb(path: Path, subdivisions: int = 3) -> None:
    """A small textured-free icosphere GLB, enough geometry to simplify."""
    mesh = trimesh.creation.icosphere(subdivisions=subdivisions, radius=2.0)
    mesh.apply_translation([0, 2.0, 0])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(trimesh.Scene(mesh).export(file_type="glb"))


DEMO_NARRATION = Path(__file__).resolve().parents[1] / "assets/chongqing-night/narration/en"
VTT = "WEBVTT\n\n00:00:00.000 --> 00:00:01.500\nHello, night.\n"

MINI_TOUR = {
    "schema_version": 1,
    "id": "mini",
    "title": {"en": "Mini tour", "zh-Hans": "小游"},
    "summary": {"en": "Two stops for tests"},
    "languages": ["en", "zh-Hans"],
    "timezone": "Asia/Shanghai",
    "lights_on": [{"days": ["fri", "sat"], "start": "19:00", "end": "00:30"}],
    "route": {"type": "LineString",
              "coordinates": [[106.5770, 29.5572], [106.5790, 29.5628]]},
    "attribution": [{"what": "test scene", "author": "tests", "license": "CC0-1.0"}],
    "stops": [
        {
            "id": "mini-a",
            "title": {"en": "A", "zh-Hans": "甲"},
            "anchor": {"lat": 29.5572, "lon": 106.5770, "heading": 90, "altitude_msl": 240},
            "trigger": {"radius_m": 50, "exit_radius_m": 70, "dwell_s": 3, "level": "L1"},
            "scenes": [{"id": "mini-a-scene", "source": "assets/mini/a.glb"}],
            "narration": {
                lang: {"transcript": "Hello.", "audio": [f"assets/mini/{lang}/a.m4a",
                                                         f"assets/mini/{lang}/a.mp3"],
                       "subtitles": f"assets/mini/{lang}/a.vtt"}
                for lang in ("en", "zh-Hans")
            },
        },
        {
            "id": "mini-b",
            "title": {"en": "B"},
            "anchor": {"geopose": {"position": {"lat": 29.5628, "lon": 106.5790, "h": 150.0},
                                   "quaternion": {"x": 0, "y": 0, "z": 0, "w": 1}}},
            "trigger": {"radius_m": 80},
            "scenes": [],
            "narration": {
                lang: {"transcript": "Bye.", "audio": [f"assets/mini/{lang}/a.m4a"],
                       "subtitles": f"assets/mini/{lang}/a.vtt"}
                for lang in ("en", "zh-Hans")
            },
        },
    ],
}


def make_mini_root(root: Path, manifest: dict | None = None, fmt: str = "yaml") -> Path:
    """Write a content root with one small valid tour (or the manifest given)."""
    manifest = copy.deepcopy(MINI_TOUR if manifest is None else manifest)
    tour_dir = root / "tours" / manifest.get("id", "mini")
    tour_dir.mkdir(parents=True, exist_ok=True)
    if fmt == "yaml":
        (tour_dir / "tour.yaml").write_text(yaml.safe_dump(manifest, allow_unicode=True))
    else:
        import json

        (tour_dir / "tour.json").write_text(json.dumps(manifest, ensure_ascii=False))
    assets = root / "assets" / "mini"
    if not (assets / "a.glb").exists():
        tiny_glb(assets / "a.glb")
        for lang in ("en", "zh-Hans"):
            (assets / lang).mkdir(parents=True, exist_ok=True)
            # Real audio: validate and build recognise audio by its bytes and check that
            # the subtitles end before it does.
            for ext in ("m4a", "mp3"):
                shutil.copyfile(DEMO_NARRATION / f"jiefangbei.{ext}", assets / lang / f"a.{ext}")
            (assets / lang / "a.vtt").write_text(VTT)
    return root


def node_validator_available() -> bool:
    from tourserver.ingest.validator import ValidatorUnavailable, find_validator

    try:
        find_validator()
        return True
    except ValidatorUnavailable:
        return False


def which(cmd: str) -> bool:
    return shutil.which(cmd) is not None


__all__ = ["np", "require", "corpus_file", "make_mini_root", "MINI_TOUR", "REPO"]


def first_loader_only(data: Path, marker: Path):
    """A catalog loader for `serve` whose first caller gets the catalog and every later one
    a TourError: one worker of several fails to start."""
    from tourserver.errors import TourError
    from tourserver.store.catalog import load_published

    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL))
    except FileExistsError:
        raise TourError("this worker was told to fail", code="test") from None
    return load_published(data)


def write_gltf(folder: Path, png: bytes, name: str = "scene") -> Path:
    """A textured pyramid as .gltf with a separate .bin and PNG."""
    folder.mkdir(parents=True, exist_ok=True)
    pos = np.array([[-1, 0, -1], [1, 0, -1], [1, 0, 1], [-1, 0, 1], [0, 2, 0]], np.float32)
    uv = np.array([[0, 0], [1, 0], [1, 1], [0, 1], [0.5, 0.5]], np.float32)
    idx = np.array([0, 2, 1, 0, 3, 2, 0, 1, 4, 1, 2, 4, 2, 3, 4, 3, 0, 4], np.uint16)
    blob = pos.tobytes() + uv.tobytes() + idx.tobytes()
    (folder / f"{name}.bin").write_bytes(blob)
    (folder / f"{name}-color.png").write_bytes(png)
    doc = {
        "asset": {"version": "2.0"}, "scene": 0, "scenes": [{"nodes": [0]}],
        "nodes": [{"mesh": 0, "name": "pyramid"}],
        "meshes": [{"primitives": [{"attributes": {"POSITION": 0, "TEXCOORD_0": 1},
                                    "indices": 2, "material": 0}]}],
        "materials": [{"pbrMetallicRoughness": {"baseColorTexture": {"index": 0}}}],
        "textures": [{"source": 0}], "images": [{"uri": f"{name}-color.png"}],
        "buffers": [{"uri": f"{name}.bin", "byteLength": len(blob)}],
        "bufferViews": [{"buffer": 0, "byteOffset": 0, "byteLength": 60, "target": 34962},
                        {"buffer": 0, "byteOffset": 60, "byteLength": 40, "target": 34962},
                        {"buffer": 0, "byteOffset": 100, "byteLength": 36, "target": 34963}],
        "accessors": [
            {"bufferView": 0, "componentType": 5126, "count": 5, "type": "VEC3",
             "min": [-1, 0, -1], "max": [1, 2, 1]},
            {"bufferView": 1, "componentType": 5126, "count": 5, "type": "VEC2"},
            {"bufferView": 2, "componentType": 5123, "count": 18, "type": "SCALAR"}],
    }
    path = folder / f"{name}.gltf"
    path.write_text(json.dumps(doc))
    return path


def write_wav(path: Path) -> None:
    """One second of silent 8 kHz WAV: audio no tour accepts (MP3 and AAC only)."""
    import wave

    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(bytes(16000))
