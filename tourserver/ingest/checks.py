"""Structural checks and device budgets for a loaded asset, as a list of `Issue`s.

`ingest.loaders` already refuses what cannot be read (bad headers, out-of-range views,
node cycles, hostile URIs). These checks look at the data itself: non-finite positions,
indices past the vertex count, images no decoder will open (`structural_issues`: what no
transform can fix), and the budgets of the target device (`budget_issues`: what the
optimiser fixes, so it is measured on its output; a texture over the iOS limit is one).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tourserver.errors import Issue, TourError
from tourserver.gltf.document import Document
from tourserver.ingest.images import MAX_DECODE_PIXELS, image_size
from tourserver.ingest.inspect import scene_stats

IOS_MAX_TEXTURE_PX = 4096  # larger textures fail to upload on many iPhones


@dataclass(frozen=True)
class Budget:
    """What one class of device can take. `None` means no limit."""

    name: str
    max_bytes: int | None
    max_triangles: int | None
    max_texture_px: int | None


BUDGETS = {
    "phone": Budget("phone", 5 * 1024 * 1024, 100_000, 2048),
    "tablet": Budget("tablet", 10 * 1024 * 1024, 300_000, 2048),
    "headset": Budget("headset", 25 * 1024 * 1024, 750_000, 4096),
    "archive": Budget("archive", None, None, None),
}


def structural_issues(doc: Document, file: str | None = None) -> list[Issue]:
    """Data problems a reader would trip over: NaN/Inf positions, indices out of range."""
    issues: list[Issue] = []
    accessors = doc.json.get("accessors", [])
    for m, mesh in enumerate(doc.json.get("meshes", [])):
        for p, prim in enumerate(mesh.get("primitives", [])):
            where = f"/meshes/{m}/primitives/{p}"
            if prim.get("extensions", {}).get("KHR_draco_mesh_compression"):
                continue  # compressed: the data is not in plain accessors
            pos_index = prim.get("attributes", {}).get("POSITION")
            if pos_index is None:
                issues.append(Issue("no_position", "primitive has no POSITION", file, where))
                continue
            count = int(accessors[pos_index]["count"])
            try:
                positions = doc.read_accessor(pos_index)
                if not np.isfinite(positions.astype(np.float64)).all():
                    issues.append(Issue("position_not_finite", "POSITION holds NaN or infinity",
                                        file, f"{where}/attributes/POSITION"))
                if "indices" in prim:
                    indices = doc.read_accessor(prim["indices"])
                    if len(indices) and int(indices.max()) >= count:
                        issues.append(Issue("index_out_of_range",
                                            f"index {int(indices.max())} but only {count} "
                                            "vertices", file, f"{where}/indices"))
            except TourError as exc:
                issues.append(Issue(exc.code, exc.message, file, exc.field or where))
    for i, image in enumerate(doc.json.get("images", [])):
        if "bufferView" in image:
            try:
                w, h = image_size(doc.buffer_view_bytes(image["bufferView"]), f"/images/{i}")
            except TourError as exc:
                issues.append(Issue(exc.code, exc.message, file, f"/images/{i}"))
                continue
            # Over the decode cap nothing can resize it; merely large (over the iOS limit or a
            # preset's) is fixed by the texture resize, and checked on the output instead.
            if w * h > MAX_DECODE_PIXELS:
                issues.append(Issue("image_too_large", f"{w}x{h} image is over the decode "
                                    f"limit of {MAX_DECODE_PIXELS:,} pixels (8192x8192)",
                                    file, f"/images/{i}"))
    return issues


def budget_issues(doc: Document, size_bytes: int, budget: Budget,
                  file: str | None = None) -> list[Issue]:
    """Where the asset exceeds the budget of its target device."""
    stats = scene_stats(doc)
    issues = []
    if budget.max_bytes is not None and size_bytes > budget.max_bytes:
        issues.append(Issue("over_budget_bytes", f"{size_bytes:,} bytes; the {budget.name} "
                            f"budget is {budget.max_bytes:,}"
                            f"{_over(size_bytes, budget.max_bytes)}", file))
    if budget.max_triangles is not None and stats.triangles > budget.max_triangles:
        issues.append(Issue("over_budget_triangles", f"{stats.triangles:,} triangles; the "
                            f"{budget.name} budget is {budget.max_triangles:,}"
                            f"{_over(stats.triangles, budget.max_triangles)}", file))
    if budget.max_texture_px is not None and stats.max_texture_px > budget.max_texture_px:
        issues.append(Issue("over_budget_texture", f"largest texture {stats.max_texture_px} px; "
                            f"the {budget.name} budget is {budget.max_texture_px} px", file))
    elif stats.max_texture_px > IOS_MAX_TEXTURE_PX:  # a budget without its own texture limit
        issues.append(Issue("over_budget_texture_ios", f"largest texture "
                            f"{stats.max_texture_px} px is over {IOS_MAX_TEXTURE_PX} px: iOS "
                            "devices fail to load it", file,
                            hint=f"resize it (optimize --texture-max {IOS_MAX_TEXTURE_PX})"))
    return issues


def _over(value: int, limit: int) -> str:
    """By how much: " (27,680 over, 1.28x)"."""
    return f" ({value - limit:,} over, {value / limit:.2f}x)" if limit else ""
