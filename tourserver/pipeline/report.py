"""What an optimisation did, before and after: the one report the CLI, the build and any
HTTP endpoint render (as a table or as versioned JSON)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from tourserver.errors import Issue
from tourserver.gltf.document import TYPE_SIZES, Document
from tourserver.ingest.images import image_size
from tourserver.ingest.inspect import scene_stats

REPORT_SCHEMA = "tourserver.optimize/1"


@dataclass(frozen=True)
class AssetStats:
    bytes: int
    triangles: int
    vertices: int
    draw_calls: int
    materials: int
    textures: int
    images: int
    max_texture_px: int
    gpu_bytes: int  # estimated GPU memory once uploaded (vertex, index and texture data)
    extensions_used: tuple[str, ...]
    extensions_required: tuple[str, ...]


def estimate_gpu_bytes(doc: Document) -> int:
    """Vertex and index data as stored (quantized data stays small on the GPU), plus
    textures as RGBA8 with mipmaps (x4/3); KTX2 transcodes to about 1 byte per pixel."""
    total = 0
    for acc in doc.json.get("accessors", []):
        itemsize = {5120: 1, 5121: 1, 5122: 2, 5123: 2, 5125: 4, 5126: 4}[acc["componentType"]]
        total += int(acc["count"]) * TYPE_SIZES[acc["type"]] * itemsize
    for i, image in enumerate(doc.json.get("images", [])):
        if "bufferView" not in image:
            continue
        w, h = image_size(doc.buffer_view_bytes(image["bufferView"]), f"/images/{i}")
        per_pixel = 1 if image.get("mimeType") == "image/ktx2" else 4
        total += w * h * per_pixel * 4 // 3
    return total


def measure(doc: Document, size_bytes: int) -> AssetStats:
    s = scene_stats(doc)
    return AssetStats(
        bytes=size_bytes, triangles=s.triangles, vertices=s.vertices, draw_calls=s.draw_calls,
        materials=s.materials, textures=s.textures, images=len(doc.json.get("images", [])),
        max_texture_px=s.max_texture_px, gpu_bytes=estimate_gpu_bytes(doc),
        extensions_used=s.extensions_used, extensions_required=s.extensions_required)


@dataclass
class OptimizeReport:
    input: str
    output: str | None
    preset: str
    before: AssetStats
    after: AssetStats | None = None
    steps: list[str] = field(default_factory=list)
    timings_s: dict[str, float] = field(default_factory=dict)
    facts: dict[str, float] = field(default_factory=dict)
    issues: list[Issue] = field(default_factory=list)
    dry_run: bool = False
    # What the budget made tighter than the preset, run by run (see optimize.optimize).
    fitted: list[str] = field(default_factory=list)
    # One row per re-encoded image: what it became and how it scores (`texture_rows`).
    textures: list[dict] = field(default_factory=list)

    @property
    def over_budget(self) -> list[Issue]:
        return [i for i in self.issues if i.code.startswith("over_budget")]

    def to_json(self) -> dict:
        return {
            "schema": REPORT_SCHEMA,
            "input": {"path": self.input, **asdict(self.before)},
            "output": ({"path": self.output, **asdict(self.after)} if self.after else None),
            "preset": self.preset,
            "dry_run": self.dry_run,
            "steps": self.steps,
            "fitted": self.fitted,
            "textures": self.textures,
            "timings_s": {k: round(v, 4) for k, v in self.timings_s.items()},
            "facts": {k: (round(v, 6) if isinstance(v, float) else v)
                      for k, v in sorted(self.facts.items())},
            "issues": [i.to_json() for i in self.issues],
            "ok": not self.issues,
        }


SCORES = ("ssimulacra2", "normal_p99_deg", "normal_mean_deg", "psnr")
SETTINGS = ("quality", "near_lossless", "palette", "posterize")


def texture_rows(facts: dict[str, float], doc: Document) -> list[dict]:
    """Per re-encoded image (from texture-encode's facts): its name, type, bytes before
    and after, the setting that won and its score on the image's own metric."""
    rows: dict[int, dict] = {}
    prefix = "texture_encode.image."
    for key, value in facts.items():
        if not key.startswith(prefix):
            continue
        digits, _, name = key[len(prefix):].partition(".")
        row = rows.setdefault(int(digits), {"image": int(digits)})
        if name in SCORES:
            row["metric"], row["score"] = name, value
        elif name in SETTINGS:
            row["setting"] = f"{name} {value:g}"
        else:
            row[name] = int(value) if name.startswith("bytes") else value
    images = doc.json.get("images", [])
    for index, row in rows.items():
        if index < len(images):
            row["name"] = images[index].get("name", "")
            row["mime"] = images[index].get("mimeType", "")
        row.setdefault("setting", "lossless")
    return [rows[i] for i in sorted(rows)]


__all__ = ["texture_rows", "AssetStats", "OptimizeReport", "measure", "estimate_gpu_bytes",
           "REPORT_SCHEMA"]
