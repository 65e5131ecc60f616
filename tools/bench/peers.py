"""Measuring helpers for tools/bench/compare_peers.py: read any tool's output back fairly.

* `decode_meshopt_glb(data)`: a GLB with EXT_meshopt_compression buffer views → the same GLB
  with plain views in one binary chunk (through `tourserver.gltf.meshopt`, which
  calls the meshoptimizer library's own decoders, independently of our encoder).
* `world_geometry(doc)`: every triangle and point of the default scene in world space, as
  rendered at rest: normalized (quantized) accessors dequantized, sparse accessors applied,
  node transforms, EXT_mesh_gpu_instancing and skins (bind pose: joint world × inverse bind)
  applied. This makes outputs comparable whatever a tool did to the scene graph (flattening,
  joining, moving the dequantization transform onto nodes or inverse bind matrices).
* `geometric_error(src, out)`: two-sided surface distance, sampled (see its docstring).
* `TextureMeter(src_doc, work).measure(out_doc)`: each material slot's image against the
  source: SSIMULACRA2 and butteraugli for colour slots, PSNR (and the normal angle) for
  data slots; `ssimulacra2_score`, `butteraugli_distance` wrap the two tools.
* `draw_calls(doc_json)`: primitives drawn by the default scene.
* `dropped(src_json, out_json)`: what the output lost that the input had.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import shutil
import subprocess
from concurrent.futures import Executor, as_completed
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tourserver.gltf.document import (
    Document,
    parse_glb,
    write_glb,
)
from tourserver.gltf.meshopt import decode_meshopt
from tourserver.pipeline.textures.slots import image_channels

MESHOPT_EXTENSIONS = ("EXT_meshopt_compression",)
# Largest value of each normalized integer type (glTF 2.0 §3.11, "normalized" accessors).
_NORM = {5120: 127.0, 5121: 255.0, 5122: 32767.0, 5123: 65535.0}
_IMAGE_EXTENSIONS = ("KHR_texture_basisu", "EXT_texture_webp", "EXT_texture_avif")


# ---- meshopt decoding -----------------------------------------------------------------------
def decode_meshopt_glb(data: bytes) -> bytes:
    """Return `data` with every EXT_meshopt_compression view decoded; unchanged if none is.
    Uses tourserver's reader, which decodes with the meshoptimizer library's own decoders
    (not with anything of our encoder), so peers' files are read the same way as ours."""
    doc = parse_glb(data, "<peer output>", allow_uris=True)
    if not set(doc.json.get("extensionsUsed", [])) & set(MESHOPT_EXTENSIONS):
        return data
    return write_glb(decode_meshopt(doc))


# ---- world-space geometry -------------------------------------------------------------------
def read_float(doc: Document, index: int) -> np.ndarray:
    """An accessor as float64 (count, ncomp): normalized integers dequantized, sparse applied."""
    acc = doc.json["accessors"][index]
    if "sparse" in acc:
        base = dict(acc)
        sparse = base.pop("sparse")
        shim = Document(dict(doc.json, accessors=[base]), doc.bin, doc.source)
        values = shim.read_accessor(0).astype(np.float64)
        idx_acc = {"bufferView": sparse["indices"]["bufferView"],
                   "byteOffset": sparse["indices"].get("byteOffset", 0),
                   "componentType": sparse["indices"]["componentType"],
                   "count": sparse["count"], "type": "SCALAR"}
        val_acc = {"bufferView": sparse["values"]["bufferView"],
                   "byteOffset": sparse["values"].get("byteOffset", 0),
                   "componentType": acc["componentType"], "count": sparse["count"],
                   "type": acc["type"]}
        shim = Document(dict(doc.json, accessors=[idx_acc, val_acc]), doc.bin, doc.source)
        values[shim.read_accessor(0)[:, 0].astype(np.int64)] = shim.read_accessor(1)
    else:
        values = doc.read_accessor(index).astype(np.float64)
    if acc.get("normalized") and acc["componentType"] in _NORM:
        values = np.maximum(values / _NORM[acc["componentType"]], -1.0)
    return values


def _local_matrix(node: dict) -> np.ndarray:
    if "matrix" in node:
        return np.array(node["matrix"], dtype=float).reshape(4, 4).T
    return _trs(np.array(node.get("translation", [0, 0, 0]), float),
                np.array(node.get("rotation", [0, 0, 0, 1]), float),
                np.array(node.get("scale", [1, 1, 1]), float))


def _trs(t: np.ndarray, q: np.ndarray, s: np.ndarray) -> np.ndarray:
    x, y, z, w = q / (np.linalg.norm(q) or 1.0)
    m = np.eye(4)
    m[:3, :3] = np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]]) * s
    m[:3, 3] = t
    return m


def node_world_matrices(j: dict) -> tuple[dict[int, np.ndarray], list[int]]:
    """World matrix of every node reachable from the default scene, and those nodes in order."""
    nodes = j.get("nodes", [])
    scenes = j.get("scenes", [])
    roots = scenes[j.get("scene", 0)].get("nodes", []) if scenes else list(range(len(nodes)))
    world: dict[int, np.ndarray] = {}
    order: list[int] = []
    stack = [(r, np.eye(4)) for r in reversed(roots)]
    while stack:
        i, parent = stack.pop()
        if i in world:
            continue
        world[i] = parent @ _local_matrix(nodes[i])
        order.append(i)
        stack.extend((c, world[i]) for c in reversed(nodes[i].get("children", [])))
    return world, order


def _instances(doc: Document, node: dict) -> list[np.ndarray]:
    ext = node.get("extensions", {}).get("EXT_mesh_gpu_instancing")
    if not ext:
        return [np.eye(4)]
    attrs = ext.get("attributes", {})
    n = next(iter(doc.json["accessors"][a]["count"] for a in attrs.values()), 0)
    t = read_float(doc, attrs["TRANSLATION"]) if "TRANSLATION" in attrs else np.zeros((n, 3))
    r = (read_float(doc, attrs["ROTATION"]) if "ROTATION" in attrs
         else np.tile([0, 0, 0, 1.0], (n, 1)))
    s = read_float(doc, attrs["SCALE"]) if "SCALE" in attrs else np.ones((n, 3))
    return [_trs(t[i], r[i], s[i]) for i in range(n)]


def _skinned(doc: Document, prim: dict, skin: dict, world: dict[int, np.ndarray],
             pos: np.ndarray) -> np.ndarray | None:
    """Rest-pose positions of a skinned primitive (None if it has no joints)."""
    attrs = prim["attributes"]
    if "JOINTS_0" not in attrs or "WEIGHTS_0" not in attrs:
        return None
    joints = skin["joints"]
    ibm = (read_float(doc, skin["inverseBindMatrices"]).reshape(-1, 4, 4).transpose(0, 2, 1)
           if "inverseBindMatrices" in skin else np.tile(np.eye(4), (len(joints), 1, 1)))
    mats = np.stack([world.get(jn, np.eye(4)) for jn in joints]) @ ibm
    homo = np.c_[pos, np.ones(len(pos))]
    out = np.zeros((len(pos), 4))
    total = np.zeros(len(pos))
    set_no = 0
    while f"JOINTS_{set_no}" in attrs and f"WEIGHTS_{set_no}" in attrs:
        jidx = doc.read_accessor(attrs[f"JOINTS_{set_no}"]).astype(np.int64)
        wts = read_float(doc, attrs[f"WEIGHTS_{set_no}"])
        for k in range(jidx.shape[1]):
            out += wts[:, k, None] * np.einsum("nij,nj->ni", mats[jidx[:, k]], homo)
            total += wts[:, k]
        set_no += 1
    out /= np.where(total > 0, total, 1.0)[:, None]  # quantized weights need not sum to 1
    return out[:, :3]


@dataclass
class Geometry:
    vertices: np.ndarray  # (n, 3) float64, world space
    faces: np.ndarray  # (m, 3) int64 into vertices
    points: np.ndarray  # (k, 3) float64: POINTS primitives


def world_geometry(doc: Document) -> Geometry:
    """Triangles and points of the default scene, in world space, at rest (see module doc).
    Morph targets are not applied (their default weights are ignored); lines are skipped."""
    j = doc.json
    world, order = node_world_matrices(j)
    verts: list[np.ndarray] = []
    faces: list[np.ndarray] = []
    points: list[np.ndarray] = []
    base = 0
    for ni in order:
        node = j["nodes"][ni]
        if "mesh" not in node:
            continue
        skin = j["skins"][node["skin"]] if "skin" in node else None
        for prim in j["meshes"][node["mesh"]].get("primitives", []):
            if "POSITION" not in prim.get("attributes", {}):
                continue
            pos = read_float(doc, prim["attributes"]["POSITION"])[:, :3]
            mode = prim.get("mode", 4)
            if mode not in (0, 4, 5, 6):
                continue
            rest = _skinned(doc, prim, skin, world, pos) if skin else None
            if mode == 0:
                tri = None
            elif "indices" in prim:
                idx = doc.read_accessor(prim["indices"])[:, 0].astype(np.int64)
                tri = _triangles(idx, mode)
            else:
                tri = _triangles(np.arange(len(pos)), mode)
            for inst in _instances(doc, node):
                if rest is not None:  # a skinned mesh ignores its node's transform
                    p = rest
                else:
                    m = world[ni] @ inst
                    p = pos @ m[:3, :3].T + m[:3, 3]
                if tri is None:
                    points.append(p)
                else:
                    verts.append(p)
                    faces.append(tri + base)
                    base += len(p)
    return Geometry(
        np.concatenate(verts) if verts else np.zeros((0, 3)),
        np.concatenate(faces) if faces else np.zeros((0, 3), np.int64),
        np.concatenate(points) if points else np.zeros((0, 3)))


def _triangles(idx: np.ndarray, mode: int) -> np.ndarray:
    if mode == 4:
        return idx[: len(idx) // 3 * 3].reshape(-1, 3)
    if len(idx) < 3:
        return np.zeros((0, 3), np.int64)
    if mode == 5:  # strip: every other triangle flips its winding
        tris = np.stack([idx[:-2], idx[1:-1], idx[2:]], axis=1)
        tris[1::2, [0, 1]] = tris[1::2, [1, 0]]
        return tris
    return np.stack([np.full(len(idx) - 2, idx[0]), idx[1:-1], idx[2:]], axis=1)  # fan


# ---- geometric error ------------------------------------------------------------------------
def canonical_mesh(geometry: Geometry):
    """A trimesh of the triangles in an order that depends on where they are, not on how
    a tool ordered them: surface sampling picks triangles by cumulative area, so the same
    surface in another order drew other points (AnisotropyBarnLamp's sampled maximum moved
    by 40 % between two orders of identical geometry)."""
    import trimesh

    faces = np.asarray(geometry.faces)
    corners = np.asarray(geometry.vertices)[faces]  # (n, 3, 3)
    # Each triangle starts at its lexicographically smallest corner (winding kept), since
    # points inside a triangle are drawn relative to its first corner.
    def less(a: np.ndarray, b: np.ndarray) -> np.ndarray:  # lexicographic, row by row
        return (a[:, 0] < b[:, 0]) | ((a[:, 0] == b[:, 0]) & (
            (a[:, 1] < b[:, 1]) | ((a[:, 1] == b[:, 1]) & (a[:, 2] < b[:, 2]))))

    c0, c1, c2 = corners[:, 0], corners[:, 1], corners[:, 2]
    first = np.where(less(c1, c0) & ~less(c2, c1), 1, 0)
    first = np.where(less(c2, c0) & less(c2, c1), 2, first)
    roll = (np.arange(3)[None, :] + first[:, None]) % 3
    faces = np.take_along_axis(faces, roll, axis=1)
    corners = np.asarray(geometry.vertices)[faces]
    keys = np.round(corners.reshape(len(faces), -1), 9)
    order = np.lexsort(keys.T[::-1]) if len(faces) else np.arange(0)
    return trimesh.Trimesh(geometry.vertices, faces[order], process=False)


# trimesh's closest_point gathers every candidate triangle of every query point at once: on
# models with long thin triangles that reached ~16 GB for 20,000 points. Chunks bound it.
PROXIMITY_CHUNK = 1000


def _closest_distances(mesh, points: np.ndarray) -> np.ndarray:
    """Exact distance from each point to the closest point of the mesh's surface: libigl's
    AABB tree when installed (SheenChair's long thin triangles took trimesh 45 s per
    output, libigl well under 1 s; the two agree to ~1e-7 of the model's size), else
    trimesh.proximity in chunks."""
    try:
        import igl
    except ImportError:
        import trimesh

        return np.concatenate([
            trimesh.proximity.closest_point(mesh, points[i:i + PROXIMITY_CHUNK])[1]
            for i in range(0, len(points), PROXIMITY_CHUNK)])
    d2, _, _ = igl.point_mesh_squared_distance(
        np.ascontiguousarray(points, np.float64),
        np.ascontiguousarray(mesh.vertices, np.float64),
        np.ascontiguousarray(mesh.faces, np.int64))
    return np.sqrt(np.maximum(d2, 0.0))


def geometric_error(src: Geometry, out: Geometry, samples: int = 20000, seed: int = 1,
                    src_mesh=None) -> dict | None:
    """Two-sided distance between the input and output surfaces, in the input's units.

    Triangles: `samples` area-weighted points on the input surface → distance to the closest
    point of the output surface (exact point-to-triangle, `_closest_distances`), and the same from
    the output surface to the input. `max` is the larger of the two sampled maxima (a sampled
    Hausdorff distance), `mean` the mean of the input→output distances; `rel_max` divides by
    the input's bounding-box diagonal. Points: nearest output point for every input point and
    back (scipy cKDTree). With both kinds, `max` covers both and each has its own entry;
    a kind the output lost entirely is listed in `missing` (None: nothing comparable).
    `src_mesh` lets a caller reuse one trimesh (and its triangle tree) for every output."""
    import trimesh

    both = np.r_[src.vertices, src.points]
    diag = float(np.linalg.norm(both.max(axis=0) - both.min(axis=0))) if len(both) else 0.0
    diag = diag or 1.0
    parts: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    missing: list[str] = []
    if len(src.faces):
        if len(out.faces):
            a = src_mesh if src_mesh is not None else canonical_mesh(src)
            b = canonical_mesh(out)
            pa, _ = trimesh.sample.sample_surface(a, samples, seed=seed)
            pb, _ = trimesh.sample.sample_surface(b, samples, seed=seed + 1)
            parts["triangles"] = (_closest_distances(b, pa), _closest_distances(a, pb))
        else:
            missing.append("triangles")
    if len(src.points):
        if len(out.points):
            from scipy.spatial import cKDTree

            fwd, _ = cKDTree(out.points).query(src.points)
            rev, _ = cKDTree(src.points).query(out.points)
            parts["points"] = (fwd, rev)
        else:
            missing.append("points")
    if not parts:
        return None
    result: dict = {"diagonal": diag, "missing": missing}
    for kind, (fwd, rev) in parts.items():
        worst = float(max(np.max(fwd), np.max(rev)))
        result[kind] = {"max": worst, "mean": float(np.mean(fwd))}
    result["max"] = max(v["max"] for k, v in result.items() if k in parts)
    result["mean"] = result[next(iter(parts))]["mean"]  # triangles when there are any
    result["rel_max"] = result["max"] / diag
    return result


# ---- textures -------------------------------------------------------------------------------
def _slots(material: dict, path: str = "") -> list[tuple[str, int]]:
    """(slot path, texture index) for every textureInfo in a material, extensions included."""
    found: list[tuple[str, int]] = []
    if isinstance(material, dict):
        if isinstance(material.get("index"), int) and path:
            found.append((path, material["index"]))
        for key, value in material.items():
            if key != "extras":
                found.extend(_slots(value, f"{path}.{key}" if path else key))
    return found


def _texture_image(j: dict, texture: int) -> int | None:
    tex = j.get("textures", [])[texture]
    for ext in _IMAGE_EXTENSIONS:  # what a viewer that supports the extension shows
        src = tex.get("extensions", {}).get(ext, {}).get("source")
        if src is not None:
            return src
    return tex.get("source")


def _match_materials(src: list[dict], out: list[dict]) -> dict[int, int]:
    """Source material → output material: by name where names are unique on both sides,
    else by index when the counts agree (tools that merge materials may leave gaps)."""
    names_out: dict[str, list[int]] = {}
    for i, m in enumerate(out):
        names_out.setdefault(m.get("name", ""), []).append(i)
    names_src = [m.get("name", "") for m in src]
    match: dict[int, int] = {}
    for i, name in enumerate(names_src):
        if name and names_src.count(name) == 1 and len(names_out.get(name, [])) == 1:
            match[i] = names_out[name][0]
        elif len(src) == len(out):
            match[i] = i
    return match


def decode_image(doc: Document, image: int):
    """A Pillow image, or None for formats Pillow cannot decode here (KTX2)."""
    from PIL import Image

    entry = doc.json["images"][image]
    if entry.get("mimeType") == "image/ktx2" or "bufferView" not in entry:
        return None
    img = Image.open(io.BytesIO(doc.buffer_view_bytes(entry["bufferView"])))
    img.load()
    return img


def psnr(a, b, channels: str = "RGBA") -> float:
    """PSNR in dB of image b against reference a (b resized to a's size first), over the
    `channels` materials read from it (alpha only where a has alpha)."""
    from PIL import Image

    mode = "RGBA" if ("A" in a.getbands() or "transparency" in a.info) else "RGB"
    read = [mode.index(c) for c in channels if c in mode]
    ra = np.asarray(a.convert(mode), dtype=np.float64)[..., read]
    bb = b.convert(mode)
    if bb.size != a.size:
        bb = bb.resize(a.size, Image.Resampling.BILINEAR)
    mse = float(np.mean((ra - np.asarray(bb, dtype=np.float64)[..., read]) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


# ---- texture quality: SSIMULACRA2 and butteraugli for colour, PSNR and angle for data -------
# Slots whose texture is colour (judged by eye: SSIMULACRA2 and butteraugli); every other
# slot holds data (PSNR over the channels read; normal maps also by the angle between
# normals). A copy of the glTF and KHR_materials_* definitions rather than an import of
# the optimiser's list, so a change there cannot move the yardstick.
COLOUR_SLOTS = frozenset({"baseColorTexture", "emissiveTexture", "sheenColorTexture",
                          "specularColorTexture", "diffuseTexture",
                          "diffuseTransmissionColorTexture"})
NORMAL_SLOTS = frozenset({"normalTexture", "clearcoatNormalTexture"})
BUTTERAUGLI = "butteraugli"  # Debian's package: Google's original implementation
# A colour texture whose alpha is read is judged over a dark and a light background, the
# worse counting (what ssimulacra2's compute_ssimulacra2_with_alpha means to do; in 0.3.0
# it drops alpha before blending, so the blending is done here).
ALPHA_BACKGROUNDS = (0.1, 0.9)


class MetricUnavailable(RuntimeError):
    """A texture metric's package or binary is not installed."""


def ssimulacra2_score(reference: Path | str, distorted: Path | str) -> float:
    """SSIMULACRA2 of `distorted` against `reference` (PNG or JPEG paths, same size), by
    the PyPI package ssimulacra2 0.3.0, independent of anything in tourserver. 100:
    identical; 90: visually lossless at 1:1; 70: high quality; 50: medium; 30: low."""
    try:
        from ssimulacra2 import compute_ssimulacra2
    except ImportError as exc:
        raise MetricUnavailable("pip install ssimulacra2==0.3.0") from exc
    return float(compute_ssimulacra2(str(reference), str(distorted)))


def butteraugli_distance(reference: Path | str, distorted: Path | str,
                         timeout: float = 900.0) -> float:
    """Butteraugli distance of `distorted` from `reference` (PNG or JPEG paths, same size)
    by the `butteraugli` binary (apt install butteraugli). Below 1: no visible difference;
    1-2: subtle; above 3: clearly visible."""
    exe = shutil.which(BUTTERAUGLI)
    if exe is None:
        raise MetricUnavailable("apt install butteraugli")
    proc = subprocess.run([exe, str(reference), str(distorted)], capture_output=True,
                          text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"butteraugli exited {proc.returncode}: {proc.stderr.strip()[-200:]}")
    return float(proc.stdout.split()[0])


def metrics_missing() -> dict[str, str]:
    """{metric: how to install it} for the colour metrics this machine lacks."""
    missing = {}
    if importlib.util.find_spec("ssimulacra2") is None:
        missing["ssimulacra2"] = "pip install ssimulacra2==0.3.0"
    if shutil.which(BUTTERAUGLI) is None:
        missing["butteraugli"] = "apt install butteraugli"
    return missing


def normal_angle(reference, distorted) -> dict:
    """Angle in degrees between the normals two tangent-space normal maps encode (Pillow
    images; `distorted` resized to the reference's size first): mean and 99th percentile."""
    from PIL import Image

    def unit(img) -> np.ndarray:
        v = np.asarray(img.convert("RGB"), np.float32) / 127.5 - 1.0
        return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-6)

    if distorted.size != reference.size:
        distorted = distorted.resize(reference.size, Image.Resampling.BILINEAR)
    dots = np.clip((unit(reference) * unit(distorted)).sum(-1), -1.0, 1.0)
    deg = np.degrees(np.arccos(dots))
    return {"normal_deg_mean": float(deg.mean()), "normal_deg_p99": float(np.percentile(deg, 99))}


@dataclass(frozen=True)
class SlotPair:
    """A source image and the output image the same material slot shows."""

    slot: str  # its path in the material, e.g. "pbrMetallicRoughness.baseColorTexture"
    src_image: int
    out_image: int
    channels: str  # what the source's materials read from the source image

    @property
    def role(self) -> str:
        return "colour" if self.slot.rsplit(".", 1)[-1] in COLOUR_SLOTS else "data"

    @property
    def normal(self) -> bool:
        return self.slot.rsplit(".", 1)[-1] in NORMAL_SLOTS


def slot_pairs(src_json: dict, out_json: dict) -> tuple[list[SlotPair], int, int]:
    """(pairs, missing slots, unmatched materials): one pair per distinct (source image,
    output image, role) found through matching material slots."""
    channels = image_channels(src_json)
    match = _match_materials(src_json.get("materials", []), out_json.get("materials", []))
    pairs: dict[tuple[int, int, str], SlotPair] = {}
    missing = 0
    for si, mat in enumerate(src_json.get("materials", [])):
        if si not in match:
            continue
        out_slots = dict(_slots(out_json["materials"][match[si]]))
        for path, tex in _slots(mat):
            s_img = _texture_image(src_json, tex)
            if s_img is None:
                continue
            if path not in out_slots:
                missing += 1
                continue
            o_img = _texture_image(out_json, out_slots[path])
            if o_img is None:
                continue
            pair = SlotPair(path, s_img, o_img, channels.get(s_img, "RGBA"))
            pairs.setdefault((s_img, o_img, pair.role), pair)
    return list(pairs.values()), missing, len(src_json.get("materials", [])) - len(match)


def _image_bytes(doc: Document, image: int) -> bytes | None:
    entry = doc.json["images"][image]
    if entry.get("mimeType") == "image/ktx2" or "bufferView" not in entry:
        return None
    return doc.buffer_view_bytes(entry["bufferView"])


def _ssimulacra2_job(reference: str, distorted: str) -> float:
    return ssimulacra2_score(reference, distorted)


def _butteraugli_job(reference: str, distorted: str) -> float:
    return butteraugli_distance(reference, distorted)


_JOBS = {"ssimulacra2": _ssimulacra2_job, "butteraugli": _butteraugli_job}


class TextureMeter:
    """Texture quality of outputs against one source document.

    Colour slots: SSIMULACRA2 (min and mean over pairs) and butteraugli (max), each image
    decoded with Pillow, resized to the source size (bilinear) when a tool downscaled it,
    written as PNG and handed to the metric; identical pixels score 100 / 0 without a run.
    Data slots: PSNR over the channels read (`psnr`), normal maps also `normal_angle`.
    Metric runs go to `pool` (a concurrent.futures executor) when given. Decoded sources,
    written PNGs and metric values are kept on the instance for the outputs that follow
    (tools often keep an image as it was; the equal-quality sweep meets images again)."""

    def __init__(self, src: Document, work: Path, pool: Executor | None = None,
                 store: dict | None = None) -> None:
        self.src = src
        self.work = Path(work)
        self.work.mkdir(parents=True, exist_ok=True)
        self.pool = pool
        self.missing = metrics_missing()
        self._sources: dict[int, object] = {}
        self._digests: dict[int, str] = {}
        self._pngs: dict[tuple, Path] = {}
        # Metric values by "metric|source image sha1|output image sha1|background": pure
        # functions of the two images, so a caller may keep `store` between runs.
        self._values: dict[str, float] = store if store is not None else {}

    def _source(self, image: int):
        if image not in self._sources:
            self._sources[image] = decode_image(self.src, image)
        return self._sources[image]

    def _png(self, key: str, img, bg: float | None) -> Path:
        """`img` as an RGB PNG (alpha blended over grey `bg` when given), written once."""
        from PIL import Image

        if (key, bg) not in self._pngs:
            if bg is None:
                rgb = img.convert("RGB")
            else:
                rgba = img.convert("RGBA")
                rgb = Image.new("RGB", rgba.size, (round(bg * 255),) * 3)
                rgb.paste(rgba, mask=rgba.getchannel("A"))
            path = self.work / f"{len(self._pngs):05d}.png"
            rgb.save(path, compress_level=1)
            self._pngs[(key, bg)] = path
        return self._pngs[(key, bg)]

    def measure(self, out: Document, roles: tuple[str, ...] = ("colour", "data"),
                butteraugli: bool = True, floor: float | None = None) -> dict:
        """Quality of `out`'s textures (see the class doc). With `floor`, colour pairs
        stop being measured as soon as one scores below it (SSIMULACRA2; the sweep needs
        no more) and the result says `below_floor`."""
        from PIL import Image

        pairs, missing, unmatched = slot_pairs(self.src.json, out.json)
        rows: list[dict] = []
        jobs: list[tuple] = []  # (row, metric, value key, (reference, distorted) or None)
        for pair in pairs:
            if pair.role not in roles:
                continue
            row: dict = {"slot": pair.slot, "role": pair.role, "src_image": pair.src_image,
                         "out_image": pair.out_image}
            rows.append(row)
            data = _image_bytes(out, pair.out_image)
            ref = self._source(pair.src_image)
            if data is None or ref is None:
                row["ktx2"] = True
                continue
            got = Image.open(io.BytesIO(data))
            got.load()
            if got.size != ref.size:
                got = got.resize(ref.size, Image.Resampling.BILINEAR)
            if pair.role == "data":
                row["psnr"] = psnr(ref, got, pair.channels)
                if pair.normal:
                    row.update(normal_angle(ref, got))
                continue
            alpha = "A" in pair.channels and ("A" in ref.getbands() or "transparency" in ref.info)
            same = np.array_equal(np.asarray(ref.convert("RGBA")), np.asarray(got.convert("RGBA")))
            if same:
                row.update(ssimulacra2=100.0, butteraugli=0.0)
                continue
            digest = hashlib.sha1(data).hexdigest()
            if pair.src_image not in self._digests:
                source = _image_bytes(self.src, pair.src_image) or b""
                self._digests[pair.src_image] = hashlib.sha1(source).hexdigest()
            for bg in (ALPHA_BACKGROUNDS if alpha else (None,)):
                for metric in ("ssimulacra2", "butteraugli") if butteraugli else ("ssimulacra2",):
                    if metric in self.missing:
                        row[f"{metric}_note"] = self.missing[metric]
                        continue
                    key = f"{metric}|{self._digests[pair.src_image]}|{digest}|{bg}"
                    if key not in self._values:
                        refs = (self._png(f"src{pair.src_image}", ref, bg),
                                self._png(f"{digest}-{ref.size}", got, bg))
                        jobs.append((row, metric, key, refs))
                    else:
                        jobs.append((row, metric, key, None))
        below = self._run(jobs, floor)
        for row, metric, key, _ in jobs:
            if key in self._values:
                worse = min if metric == "ssimulacra2" else max
                value = self._values[key]
                row[metric] = worse(row.get(metric, value), value)
        return _summary(rows, missing, unmatched, below)

    def _run(self, jobs: list, floor: float | None) -> bool:
        """Compute the jobs' missing values; True when one SSIMULACRA2 fell below `floor`."""
        todo = [(metric, key, paths) for _, metric, key, paths in jobs
                if paths is not None and key not in self._values]
        todo = list({key: (metric, key, paths) for metric, key, paths in todo}.values())
        below = any(floor is not None and metric == "ssimulacra2" and key in self._values
                    and self._values[key] < floor for _, metric, key, _ in jobs)
        if below:
            return True
        if self.pool is None:
            for metric, key, paths in todo:
                self._values[key] = _JOBS[metric](*map(str, paths))
                if floor is not None and metric == "ssimulacra2" and self._values[key] < floor:
                    return True
            return False
        futures = {self.pool.submit(_JOBS[metric], *map(str, paths)): (metric, key)
                   for metric, key, paths in todo}
        for future in as_completed(futures):
            if future.cancelled():
                continue
            metric, key = futures[future]
            self._values[key] = future.result()
            if floor is not None and metric == "ssimulacra2" and self._values[key] < floor:
                for other in futures:
                    other.cancel()
                below = True
        return below


def _summary(rows: list[dict], missing: int, unmatched: int, below: bool) -> dict:
    def values(key: str, role: str) -> list[float]:
        return [r[key] for r in rows if r["role"] == role and r.get(key) is not None]

    ssim, butter = values("ssimulacra2", "colour"), values("butteraugli", "colour")
    data = values("psnr", "data")
    finite = [v for v in data if np.isfinite(v)]
    angles = values("normal_deg_mean", "data")
    return {
        "ssimulacra2_min": min(ssim) if ssim else None,
        "ssimulacra2_mean": float(np.mean(ssim)) if ssim else None,
        "butteraugli_max": max(butter) if butter else None,
        "psnr_data_min": min(data) if data else None,
        "psnr_data_mean": (float(np.mean(finite)) if finite else
                           (float("inf") if data else None)),
        "normal_deg_mean": max(angles) if angles else None,
        "normal_deg_p99": max(values("normal_deg_p99", "data"), default=None),
        "colour_pairs": sum(1 for r in rows if r["role"] == "colour"),
        "data_pairs": sum(1 for r in rows if r["role"] == "data"),
        "ktx2": sum(1 for r in rows if r.get("ktx2")),
        "missing_slots": missing, "unmatched_materials": unmatched,
        "below_floor": below, "rows": rows,
    }


def draw_calls(j: dict) -> int:
    """Primitives drawn by the default scene: each primitive of each mesh node reached from
    it, once; an EXT_mesh_gpu_instancing node draws its primitives once whatever its
    instance count (one instanced draw each)."""
    _, order = node_world_matrices(j)
    nodes, meshes = j.get("nodes", []), j.get("meshes", [])
    return sum(len(meshes[nodes[i]["mesh"]].get("primitives", []))
               for i in order if "mesh" in nodes[i])


# ---- what was dropped -----------------------------------------------------------------------
def _count_extras(node) -> int:
    if isinstance(node, dict):
        return int("extras" in node) + sum(_count_extras(v) for k, v in node.items()
                                           if k != "extras")
    if isinstance(node, list):
        return sum(_count_extras(v) for v in node)
    return 0


def features(j: dict) -> dict:
    """The things peers are criticised for dropping, counted in one document."""
    prims = [p for m in j.get("meshes", []) for p in m.get("primitives", [])]
    moved = {name for n in j.get("nodes", []) for key in ("instance_names", "joined_names")
             for name in (n.get("extras") or {}).get(key) or [] if isinstance(name, str)}
    return {
        "node_names": {n["name"] for n in j.get("nodes", []) if n.get("name")},
        # Names of nodes folded into an instanced or joined node, kept in its extras
        # (`pipeline.instance`, `pipeline.join`): no longer nodes, but not lost.
        "moved_names": moved,
        "extras": _count_extras(j),
        "animations": len(j.get("animations", [])),
        "skins": len(j.get("skins", [])),
        "morph_targets": sum(len(p.get("targets", [])) for p in prims),
        "extensions": set(j.get("extensionsUsed", [])),
        "custom_attributes": {a for p in prims for a in p.get("attributes", {})
                              if a.startswith("_")},
        "point_primitives": sum(1 for p in prims if p.get("mode", 4) == 0),
    }


def dropped(src_json: dict, out_json: dict) -> list[str]:
    """Human-readable list of what the output lost (empty: nothing on the list was lost)."""
    a, b = features(src_json), features(out_json)
    lost: list[str] = []
    names = a["node_names"] - b["node_names"]
    moved = names & b["moved_names"]
    if names - moved:
        lost.append(f"node names {len(names - moved)}/{len(a['node_names'])}")
    if moved:
        lost.append(f"node names moved to extras {len(moved)}/{len(a['node_names'])}")
    for key, label in (("extras", "extras"), ("animations", "animations"), ("skins", "skins"),
                       ("morph_targets", "morph targets"),
                       ("point_primitives", "point primitives")):
        if b[key] < a[key]:
            lost.append(f"{label} {a[key] - b[key]}/{a[key]}")
    for attr in sorted(a["custom_attributes"] - b["custom_attributes"]):
        lost.append(f"attribute {attr}")
    # Extensions replaced by an equivalent are not losses: meshopt/quantization are added.
    for ext in sorted(a["extensions"] - b["extensions"]):
        lost.append(ext)
    return lost


__all__ = ["decode_meshopt_glb", "world_geometry", "Geometry", "geometric_error",
           "TextureMeter", "slot_pairs", "ssimulacra2_score", "butteraugli_distance",
           "normal_angle", "draw_calls", "dropped", "features", "read_float", "psnr"]


# ---- a probe for what the corpus lacks ------------------------------------------------------
def feature_probe_glb() -> bytes:
    """A small valid GLB holding every feature on the "dropped" list that the corpus lacks:
    extras (asset, scene, node, mesh, material), a morph target with default weights, a
    custom float attribute `_TEMPERATURE` on triangles, named nodes in a hierarchy, a morph
    weight animation, and a POINTS primitive with `_INTENSITY`. Deterministic."""
    n = 24  # a 24 x 24 wavy grid: enough triangles for simplifiers to act on
    xs, zs = np.meshgrid(np.linspace(-1, 1, n), np.linspace(-1, 1, n))
    pos = np.stack([xs.ravel(), 0.1 * np.sin(3 * xs.ravel()) * np.cos(2 * zs.ravel()),
                    zs.ravel()], axis=1).astype(np.float32)
    normal = np.tile(np.array([0, 1, 0], np.float32), (len(pos), 1))
    temp = (20 + 5 * xs.ravel()).astype(np.float32)[:, None]
    delta = np.zeros_like(pos)
    delta[:, 1] = 0.2 * (1 - xs.ravel() ** 2).astype(np.float32)
    idx = np.arange(n * n).reshape(n, n)
    a, b = idx[:-1, :-1].ravel(), idx[:-1, 1:].ravel()
    c, d = idx[1:, :-1].ravel(), idx[1:, 1:].ravel()
    tris = np.concatenate([np.stack([a, c, b], 1), np.stack([b, c, d], 1)]).astype(np.uint16)
    rng = np.random.default_rng(3)
    pts = rng.uniform(-1, 1, (500, 3)).astype(np.float32) + np.float32([0, 1.5, 0])
    inten = rng.uniform(0, 1, (500, 1)).astype(np.float32)
    times = np.array([[0.0], [1.0]], np.float32)
    weights = np.array([[0.0], [1.0]], np.float32)
    blobs, views, accessors = [], [], []
    offset = 0

    def add(arr: np.ndarray, kind: str, ctype: int, target: int | None, minmax: bool = False):
        nonlocal offset
        data = arr.tobytes()
        view = {"buffer": 0, "byteOffset": offset, "byteLength": len(data)}
        if target:
            view["target"] = target
        views.append(view)
        blobs.append(data + b"\0" * ((-len(data)) % 4))
        offset += len(blobs[-1])
        acc = {"bufferView": len(views) - 1, "componentType": ctype, "count": len(arr),
               "type": kind}
        if minmax:
            acc["min"] = [float(v) for v in arr.reshape(len(arr), -1).min(axis=0)]
            acc["max"] = [float(v) for v in arr.reshape(len(arr), -1).max(axis=0)]
        accessors.append(acc)
        return len(accessors) - 1

    p = add(pos, "VEC3", 5126, 34962, True)
    nrm = add(normal, "VEC3", 5126, 34962)
    tmp = add(temp, "SCALAR", 5126, 34962)
    dlt = add(delta, "VEC3", 5126, 34962, True)
    ind = add(tris.reshape(-1, 1), "SCALAR", 5123, 34963)
    pp = add(pts, "VEC3", 5126, 34962, True)
    pi = add(inten, "SCALAR", 5126, 34962)
    ti = add(times, "SCALAR", 5126, None, True)
    wo = add(weights, "SCALAR", 5126, None)
    doc_json = {
        "asset": {"version": "2.0", "generator": "tourserver feature probe",
                  "extras": {"tour": "probe"}},
        "extensionsUsed": ["KHR_materials_emissive_strength"],
        "scene": 0,
        "scenes": [{"name": "probe", "nodes": [0], "extras": {"night": True}}],
        "nodes": [
            {"name": "probe_root", "children": [1, 2], "extras": {"anchor": "stop-1"}},
            {"name": "probe_surface", "mesh": 0, "translation": [0, 0, -2],
             "extras": {"clickable": True}},
            {"name": "probe_points", "mesh": 1, "translation": [0, 0, 2]},
        ],
        "meshes": [
            {"name": "surface", "weights": [0.5], "extras": {"targetNames": ["bulge"]},
             "primitives": [{"attributes": {"POSITION": p, "NORMAL": nrm, "_TEMPERATURE": tmp},
                             "indices": ind, "material": 0, "targets": [{"POSITION": dlt}]}]},
            {"name": "cloud", "primitives": [{"attributes": {"POSITION": pp, "_INTENSITY": pi},
                                              "mode": 0, "material": 0}]},
        ],
        "materials": [{"name": "glow", "emissiveFactor": [1, 0.6, 0.2],
                       "extensions": {"KHR_materials_emissive_strength":
                                      {"emissiveStrength": 4.0}},
                       "extras": {"bloom": 1}}],
        "animations": [{"name": "breathe", "samplers": [{"input": ti, "output": wo}],
                        "channels": [{"sampler": 0,
                                      "target": {"node": 1, "path": "weights"}}]}],
        "accessors": accessors,
        "bufferViews": views,
        "buffers": [{"byteLength": offset}],
    }
    return write_glb(Document(doc_json, b"".join(blobs), "<probe>"))
