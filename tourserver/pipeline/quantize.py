"""Vertex quantization (KHR_mesh_quantization), following gltfpack's conventions.

Phones stream and upload fewer bytes when vertex attributes are small integers: positions
become 14-bit unsigned shorts, normals and tangents signed normalized bytes, texture
coordinates unsigned normalized shorts, colors and skin weights unsigned normalized bytes.
Quantized data also compresses far better with EXT_meshopt_compression and gzip.

How each attribute is stored (as gltfpack does, see zeux/meshoptimizer gltf/stream.cpp):

- POSITION: unsigned, unnormalized, `position_bits` per component, on a grid with ONE
  step for all three axes (so normals stay correct without renormalising) and, as
  gltfpack's prepareQuantizationPosition does, ONE step for all meshes of the scene: the
  step is the largest extent of the union of every mesh's box (in mesh space) over
  2^bits - 1. Identical geometry in different meshes then becomes identical integers, small
  meshes store small numbers, and the merged position stream compresses far better than
  with a box per mesh. Each mesh's offset is its own corner snapped to that shared grid, so
  two meshes round a common point to the same place (no cracks) and its values start at 0.
  The error bound is the scene's: step * sqrt(3) / 2 < extent / 2^(bits - 1).
  Meshes in other units or far apart in their own space would lose precision on such a
  grid; a mesh only joins a grid if the grid's union box stays within `max_grid_ratio`
  (64: at most 6 bits lost against a box of its own) times the smallest member's extent,
  otherwise it starts a grid of its own (see `_shared_grids`).
  The dequantization `p = q * step + offset` goes into the scene:
  * unskinned meshes: folded into the node's own transform when that is safe (no children,
    no camera/light/extensions, no translation/rotation/scale animation); otherwise the
    mesh moves to a new unnamed child node carrying the dequantization, like gltfpack's mesh
    nodes (a "weights" animation channel is retargeted to that child);
  * meshes drawn with EXT_mesh_gpu_instancing: folded into every instance's TRANSLATION and
    SCALE (new accessors), as gltfpack does; the node itself is untouched;
  * skinned meshes ignore their node's transform, so the dequantization is multiplied
    into the skin's inverse bind matrices instead (IBM' = IBM * D); every mesh bound to the
    same skin therefore shares one quantization box;
  * morph target POSITION deltas use the same step (signed shorts; float scaled by 1/step
    when a delta does not fit), so targets stay in the quantized space.
  Meshes not used by any node, or with sparse or already-integer positions (or instance
  attributes), keep float positions (logged).
  After a simplification (the fact `simplify.error`, in scene units), the
  surface is already off by up to that error; a grid much finer than it only costs bytes.
  Positions then take the fewest bits (not below `min_position_bits`, 12) whose worst
  rounding stays within `simplified_error_share` (a quarter) of it: 2CylinderEngine
  simplified to a budget took 13 bits, 7 % fewer bytes, adding 14 % to its error; at the
  default error bound alone (1e-4 of the diagonal) it keeps 14.
- NORMAL / TANGENT: signed normalized bytes (shorts above 8 bits); tangents keep w.
  Morph target normal/tangent deltas stay float (allowed by the extension).
- TEXCOORD_n: unsigned normalized shorts on a grid of 1/(2^`texcoord_bits` - 1) of the
  texture (of the set's range when it spans more, as gltfpack's 12 bits over [0, 1]; an
  existing transform's scale is taken into account), but no finer than a quarter texel of
  the largest image the set samples (at least 1,024 steps per repeat: a 512 px lightmap
  takes 11 bits), starting at the set's minimum, with a
  KHR_texture_transform (offset + scale) added to, or composed with,
  every texture info of every material that samples that set (gltfpack's way; the range is
  shared by all primitives using those materials, and by every variant material; an
  existing rotation is kept and the new offset turned with it). A set that no texture
  samples is stored at full 16-bit precision if it lies in [0, 1] (no transform needed) and
  stays float otherwise; sets a morph target moves stay float.
- COLOR_n in [0, 1]: unsigned normalized bytes (shorts above 8 bits); HDR colors stay float.
- WEIGHTS_0 (when there is no WEIGHTS_1): unsigned normalized bytes summing exactly to 255
  (shorts and 65535 above 8 bits). JOINTS_n and custom `_NAME` attributes are untouched.

Facts: `quantize.position_error` is the largest distance between an original position and
its dequantized value, measured on the data, in scene units (metres) for meshes whose nodes
are fixed in the scene and in mesh units for skinned, instanced or animated ones;
`quantize.position_step` the largest quantization step (same units);
`quantize.position_bits` the fewest position bits any grid used;
`quantize.position_grids` how many position grids were used (1: one for the whole scene);
`quantize.texcoord_error` the largest UV error; `quantize.morph_error` the largest morph
delta error; `quantize.accessors` how many accessors were rewritten.
"""

from __future__ import annotations

import copy
from collections import defaultdict
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from tourserver.gltf.buffers import BufferBuilder, pack_accessor, repack
from tourserver.gltf.document import TYPE_SIZES, Document, GltfInvalid
from tourserver.gltf.refs import texture_infos
from tourserver.gltf.scene import local_matrix
from tourserver.ingest.images import image_size
from tourserver.model import geo
from tourserver.pipeline.base import Context

ARRAY_BUFFER = 34962
FLOAT, BYTE, UBYTE, SHORT, USHORT = 5126, 5120, 5121, 5122, 5123
EXTENSION = "KHR_mesh_quantization"
TEXTURE_TRANSFORM = "KHR_texture_transform"
INSTANCING = "EXT_mesh_gpu_instancing"
_CTYPES = {np.dtype(np.int8): BYTE, np.dtype(np.uint8): UBYTE, np.dtype(np.int16): SHORT,
           np.dtype(np.uint16): USHORT, np.dtype(np.float32): FLOAT}


@dataclass(frozen=True)
class Quantize:
    position_bits: int = 14  # gltfpack's default (-vp 14): 1/16383 of the largest extent
    normal_bits: int = 8  # 8 -> int8 normalized, above -> int16 normalized
    texcoord_bits: int = 12  # for UVs outside [0, 1] (stored in uint16 with a transform)
    # ...but no finer than this many steps per texel of the largest texture the set
    # samples (a rounding error under 1/8 texel; gltfpack's 12 bits give a 2048 px texture
    # half a texel), and never under `min_texcoord_steps` per texture repeat, so a small
    # palette texture's bilinear filter does not blend in a neighbouring colour. 0: no cap.
    texcoord_steps_per_texel: float = 4.0
    min_texcoord_steps: int = 1024
    color_bits: int = 8  # 8 -> uint8 normalized, above -> uint16 normalized
    weight_bits: int = 8  # skin weights, renormalised so they sum exactly to one
    # Meshes share one position grid (gltfpack's scene-wide box) unless the grid's box would
    # be more than this many times larger than a member's own box: each member then loses at
    # most log2(ratio) bits against a box of its own (see _shared_grids).
    max_grid_ratio: float = 64.0
    # A simplified document's geometric error is already the simplifier's (the fact
    # `simplify.error`): positions then need be no finer than this share of it, and take
    # fewer bits (down to `min_position_bits`; 0 keeps `position_bits` always).
    simplified_error_share: float = 0.25
    min_position_bits: int = 12
    name: str = "quantize"
    keeps_images: ClassVar[bool] = True  # see base.Transform

    def __post_init__(self) -> None:
        for field_name, low, high in (("position_bits", 1, 16), ("min_position_bits", 1, 16),
                                      ("normal_bits", 2, 16),
                                      ("texcoord_bits", 1, 16), ("color_bits", 1, 16),
                                      ("weight_bits", 1, 16)):
            value = getattr(self, field_name)
            if not low <= value <= high:
                raise ValueError(f"{field_name} must be in [{low}, {high}], got {value}")
        if not self.max_grid_ratio >= 1.0:
            raise ValueError(f"max_grid_ratio must be >= 1, got {self.max_grid_ratio}")

    def __call__(self, doc: Document, ctx: Context) -> Document:
        run = _Run(doc, self, ctx)
        return run.execute()


DEFAULTS = Quantize()


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict = {}

    def find(self, x):
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a, b) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            # Deterministic: the smaller key (by repr) becomes the root.
            if repr(rb) < repr(ra):
                ra, rb = rb, ra
            self.parent[rb] = ra

    def groups(self) -> dict:
        out: dict = defaultdict(list)
        for key in sorted(self.parent, key=repr):
            out[self.find(key)].append(key)
        return out


@dataclass
class _Box:
    """The meshes quantized together (one mesh, or all meshes bound to one skin)."""

    meshes: list[int]
    prims: list[dict]
    arrays: dict[int, np.ndarray]  # POSITION accessor -> float64 positions
    lo: np.ndarray
    hi: np.ndarray

    @property
    def extent(self) -> float:
        return float((self.hi - self.lo).max())


def _shared_grids(boxes: list[_Box], max_ratio: float) -> list[list[_Box]]:
    """Partition the boxes into grids sharing one step. Largest first, a box joins the first
    grid whose union with it stays within `max_ratio` times the smallest member's extent;
    so meshes in other units (millimetres beside metres) or far apart in their own space get
    a grid of their own instead of losing precision. Deterministic (stable sort)."""
    grids: list[tuple[np.ndarray, np.ndarray, float, list[_Box]]] = []
    for box in sorted(boxes, key=lambda b: -b.extent):
        for k, (lo, hi, smallest, members) in enumerate(grids):
            new_lo, new_hi = np.minimum(lo, box.lo), np.maximum(hi, box.hi)
            new_smallest = min(smallest, box.extent)
            if float((new_hi - new_lo).max()) <= max_ratio * new_smallest:
                grids[k] = (new_lo, new_hi, new_smallest, [*members, box])
                break
        else:
            grids.append((box.lo, box.hi, box.extent, [box]))
    return [members for *_, members in grids]


class _Run:
    """State of one quantization pass over a JSON copy of the document."""

    def __init__(self, doc: Document, settings: Quantize, ctx: Context):
        self.doc = doc
        self.s = settings
        self.ctx = ctx
        self.json = copy.deepcopy(doc.json)
        self.builder = BufferBuilder(self.json)
        self.accessors: list[dict] = self.json.get("accessors", [])
        self.cache: dict[tuple, int] = {}
        self.rewritten = 0
        self.position_error = 0.0
        self.position_step = 0.0
        self.position_bits = self.s.position_bits
        self.texcoord_error = 0.0
        self.morph_error = 0.0
        self.used_transform = False
        self.grids = 0

    # ---- helpers -------------------------------------------------------------------------
    def _is_float(self, index: int, acc_type: str) -> bool:
        acc = self.accessors[index]
        return (acc.get("componentType") == FLOAT and acc.get("type") == acc_type
                and "sparse" not in acc)

    def _new_accessor(self, old_index: int, data: np.ndarray, *, normalized: bool,
                      bounds: bool = False) -> int:
        """A new vertex accessor for `data` (a (count, n) integer or float array), its
        elements padded to 4 bytes as glTF requires of vertex attributes."""
        data = np.ascontiguousarray(data)
        packed, stride = pack_accessor(data, data.shape[1])
        view = self.builder.add_view(packed, ARRAY_BUFFER)
        if stride:
            self.json["bufferViews"][view]["byteStride"] = stride
        old = self.accessors[old_index]
        acc: dict = {"bufferView": view, "componentType": _CTYPES[data.dtype],
                     "count": int(len(data)), "type": old["type"]}
        if normalized:
            acc["normalized"] = True
        if bounds and len(data):
            cast = float if data.dtype == np.float32 else int
            acc["min"] = [cast(v) for v in data.min(axis=0)]
            acc["max"] = [cast(v) for v in data.max(axis=0)]
        for key in ("name", "extras"):
            if key in old:
                acc[key] = copy.deepcopy(old[key])
        self.accessors.append(acc)
        self.rewritten += 1
        return len(self.accessors) - 1

    def _prims(self):
        for m, mesh in enumerate(self.json.get("meshes", [])):
            for prim in mesh.get("primitives", []):
                yield m, prim

    # ---- main ----------------------------------------------------------------------------
    def execute(self) -> Document:
        self._positions()
        self._texcoords()
        self._other_attributes()
        self.ctx.most("quantize.position_error", self.position_error)
        self.ctx.most("quantize.position_step", self.position_step)
        if self.grids:
            self.ctx.facts["quantize.position_bits"] = float(self.position_bits)
        self.ctx.most("quantize.texcoord_error", self.texcoord_error)
        self.ctx.most("quantize.morph_error", self.morph_error)
        self.ctx.add("quantize.position_grids", self.grids)
        self.ctx.add("quantize.accessors", self.rewritten)
        if not self.rewritten:
            self.ctx.logger.info("quantize: nothing to quantize in %s", self.doc.source)
            return Document(copy.deepcopy(self.doc.json), self.doc.bin, self.doc.source)
        used = self.json.setdefault("extensionsUsed", [])
        required = self.json.setdefault("extensionsRequired", [])
        for ext, lists in ((EXTENSION, (used, required)),
                           (TEXTURE_TRANSFORM, (used,) if self.used_transform else ())):
            for names in lists:
                if ext not in names:
                    names.append(ext)
        return repack(self.doc, self.json, self.builder.payloads)

    # ---- positions -----------------------------------------------------------------------
    def _positions(self) -> None:
        nodes = self.json.get("nodes", [])
        mesh_nodes: dict[int, list[int]] = defaultdict(list)
        for n, node in enumerate(nodes):
            if "mesh" in node:
                mesh_nodes[node["mesh"]].append(n)
        uf = _UnionFind()
        skin_first: dict[int, int] = {}
        for m in range(len(self.json.get("meshes", []))):
            uf.find(m)
        for node in nodes:
            if "mesh" in node and "skin" in node:
                first = skin_first.setdefault(node["skin"], node["mesh"])
                uf.union(first, node["mesh"])
        boxes: list[_Box] = []
        for group in uf.groups().values():
            reason = self._group_blocker(group, mesh_nodes)
            if reason:
                self.ctx.logger.info("quantize: positions of mesh(es) %s stay float: %s",
                                     group, reason)
                continue
            box = self._read_group(group)
            if box is not None:
                boxes.append(box)
        scales = self._placed_scales(mesh_nodes)
        grids = _shared_grids(boxes, self.s.max_grid_ratio)
        for members in grids:
            lo = np.min([b.lo for b in members], axis=0)
            hi = np.max([b.hi for b in members], axis=0)
            extent = float((hi - lo).max())
            if extent <= 0.0:
                extent = 1.0  # a single point: any step works, a zero scale would be singular
            # Scene units per mesh unit, for the facts (1 when the placement is not fixed).
            placed = [scales.get(m) for b in members for m in b.meshes]
            unit = max(s for s in placed if s) if placed and all(placed) else 1.0
            bits = self._position_bits(extent, unit)
            self.position_bits = min(self.position_bits, bits)
            levels = (1 << bits) - 1
            step = extent / levels
            self.position_step = max(self.position_step, step * unit)
            for box in members:
                self._quantize_group(box, lo, step, levels, mesh_nodes, unit)
        if len(grids) > 1:
            self.ctx.logger.info("quantize: %d position grids (meshes whose sizes or places "
                                 "differ more than %gx do not share one)", len(grids),
                                 self.s.max_grid_ratio)
        self.grids += len(grids)

    def _placed_scales(self, mesh_nodes: dict[int, list[int]]) -> dict[int, float | None]:
        """For each mesh, the largest world scale of the nodes drawing it at rest, or None
        when where it lands is not fixed (skins, GPU instances, animated ancestors, nodes in
        no scene): the facts are then given in scene units."""
        nodes = self.json.get("nodes", [])
        animated = self._animated_nodes()
        world: dict[int, np.ndarray] = {}
        moving: set[int] = set()
        stack = [(n, np.eye(4), False) for scene in self.json.get("scenes", [])
                 for n in scene.get("nodes", [])]
        while stack:
            n, parent, parent_moving = stack.pop()
            if n in world or not 0 <= n < len(nodes):
                continue
            world[n] = parent @ local_matrix(nodes[n])
            if parent_moving or n in animated:
                moving.add(n)
            stack.extend((c, world[n], n in moving) for c in nodes[n].get("children", []))
        scales: dict[int, float | None] = {}
        for m, users in mesh_nodes.items():
            known = [n for n in users if n in world and n not in moving
                     and "skin" not in nodes[n]
                     and INSTANCING not in nodes[n].get("extensions", {})]
            if not users or len(known) != len(users):
                scales[m] = None
                continue
            scales[m] = max(float(np.linalg.norm(world[n][:3, :3], 2)) for n in users) or None
        return scales

    def _group_blocker(self, group: list[int], mesh_nodes: dict[int, list[int]]) -> str:
        nodes = self.json.get("nodes", [])
        meshes = self.json["meshes"]
        for m in group:
            if not mesh_nodes.get(m):
                return "no node uses the mesh"
            for n in mesh_nodes[m]:
                inst = nodes[n].get("extensions", {}).get(INSTANCING)
                if inst is None:
                    continue
                if "skin" in nodes[n]:
                    return "a skinned node drawn with EXT_mesh_gpu_instancing"
                for name, kind in (("TRANSLATION", "VEC3"), ("ROTATION", "VEC4"),
                                   ("SCALE", "VEC3")):
                    a = inst.get("attributes", {}).get(name)
                    if a is not None and not self._is_float(a, kind):
                        return f"its instances' {name} is sparse or not float"
            for prim in meshes[m].get("primitives", []):
                pos = prim.get("attributes", {}).get("POSITION")
                if pos is None or not self._is_float(pos, "VEC3"):
                    return "POSITION is missing, sparse or not float"
                for target in prim.get("targets", []):
                    if "POSITION" in target and not self._is_float(target["POSITION"], "VEC3"):
                        return "a morph target POSITION is sparse or not float"
        return ""

    def _read_group(self, group: list[int]) -> _Box | None:
        meshes = self.json["meshes"]
        prims = [prim for m in group for prim in meshes[m].get("primitives", [])]
        base = {prim["attributes"]["POSITION"] for prim in prims}
        arrays = {i: self.doc.read_accessor(i).astype(np.float64) for i in sorted(base)}
        stacked = np.concatenate(list(arrays.values()))
        if not np.all(np.isfinite(stacked)):
            self.ctx.logger.warning("quantize: positions of mesh(es) %s are not finite; left "
                                    "float", group)
            return None
        return _Box(group, prims, arrays, stacked.min(axis=0), stacked.max(axis=0))

    def _position_bits(self, extent: float, unit: float) -> int:
        """`position_bits`, or fewer when the document was simplified: the fewest whose
        worst rounding (step * sqrt(3) / 2) stays within `simplified_error_share` of the
        simplifier's error. That error is in scene units (metres); `unit` is scene units
        per mesh unit (the grid's extent is in mesh units)."""
        bits = self.s.position_bits
        error = (self.ctx.facts.get("simplify.error", 0.0) / unit
                 * self.s.simplified_error_share)
        if error <= 0.0:
            return bits
        allowed_step = error * 2.0 / np.sqrt(3.0)
        needed = int(np.ceil(np.log2(extent / allowed_step + 1.0)))
        return max(min(bits, self.s.min_position_bits), min(bits, needed))

    def _quantize_group(self, box: _Box, grid_lo: np.ndarray, step: float, levels: int,
                        mesh_nodes: dict[int, list[int]], unit: float = 1.0) -> None:
        """Positions of one group on the grid (grid_lo, step). The group's offset is snapped
        to that grid, so meshes sharing it round a common point to the same place (no
        cracks) while each stores small values from its own corner."""
        on_grid = {i: np.floor((p - grid_lo) / step + 0.5) for i, p in box.arrays.items()}
        corner = np.min([g.min(axis=0) for g in on_grid.values()], axis=0)
        offset = grid_lo + corner * step
        dequant = geo.trs_matrix(offset, scale=(step, step, step))

        new_index: dict[int, int] = {}
        for i, p in box.arrays.items():
            q = np.clip(on_grid[i] - corner, 0, levels).astype(np.uint16)
            recon = q.astype(np.float64) * step + offset
            # The renderer computes in float32: measure what it will see.
            recon32 = (q.astype(np.float32) * np.float32(step) + offset.astype(np.float32))
            err = max(float(np.linalg.norm(recon - p, axis=1).max(initial=0.0)),
                      float(np.linalg.norm(recon32.astype(np.float64) - p, axis=1)
                            .max(initial=0.0)))
            self.position_error = max(self.position_error, err * unit)
            new_index[i] = self._new_accessor(i, q, normalized=False, bounds=True)
        target_index: dict[int, int] = {}
        for prim in box.prims:
            prim["attributes"]["POSITION"] = new_index[prim["attributes"]["POSITION"]]
            for target in prim.get("targets", []):
                if "POSITION" not in target:
                    continue
                old = target["POSITION"]
                if old not in target_index:
                    target_index[old] = self._quantize_delta(old, step)
                target["POSITION"] = target_index[old]
        self._place_dequantization(box.meshes, mesh_nodes, dequant)

    def _quantize_delta(self, index: int, step: float) -> int:
        delta = self.doc.read_accessor(index).astype(np.float64)
        scaled = delta / step
        # Symmetric rounding, as gltfpack does, so +d and -d stay mirror images.
        q = np.sign(scaled) * np.floor(np.abs(scaled) + 0.5)
        if np.all(np.abs(q) <= 32767):
            self.morph_error = max(self.morph_error, float(
                np.linalg.norm(q * step - delta, axis=1).max(initial=0.0)))
            return self._new_accessor(index, q.astype(np.int16), normalized=False, bounds=True)
        # Too large for a short: keep float, in the quantized space (exact up to rounding).
        out = scaled.astype(np.float32)
        self.morph_error = max(self.morph_error, float(
            np.linalg.norm(out.astype(np.float64) * step - delta, axis=1).max(initial=0.0)))
        return self._new_accessor(index, out, normalized=False, bounds=True)

    def _place_dequantization(self, group: list[int], mesh_nodes: dict[int, list[int]],
                              dequant: np.ndarray) -> None:
        nodes = self.json["nodes"]
        animated = self._animated_nodes()
        skins: set[int] = set()
        for m in group:
            for n in mesh_nodes[m]:
                node = nodes[n]
                if "skin" in node:
                    skins.add(node["skin"])
                    continue
                if INSTANCING in node.get("extensions", {}):
                    self._fold_into_instances(node, dequant)
                    continue
                foldable = (not node.get("children") and "camera" not in node
                            and not node.get("extensions") and n not in animated)
                if foldable:
                    _fold_into_node(node, dequant)
                else:
                    self._add_mesh_child(n, dequant)
        for skin_index in sorted(skins):
            skin = self.json["skins"][skin_index]
            joints = len(skin.get("joints", []))
            if "inverseBindMatrices" in skin:
                ibm = self.doc.read_accessor(skin["inverseBindMatrices"]).astype(np.float64)
                mats = ibm.reshape(-1, 4, 4).transpose(0, 2, 1)  # column-major storage
            else:
                mats = np.repeat(np.eye(4)[None], joints, axis=0)
            out = (mats @ dequant).transpose(0, 2, 1).reshape(-1, 16).astype(np.float32)
            view = self.builder.add_view(out.tobytes())
            acc = {"bufferView": view, "componentType": FLOAT, "count": int(len(out)),
                   "type": "MAT4"}
            self.accessors.append(acc)
            skin["inverseBindMatrices"] = len(self.accessors) - 1
            self.rewritten += 1

    def _fold_into_instances(self, node: dict, dequant: np.ndarray) -> None:
        """Every instance transform T R S becomes T R S D, still a TRS (as gltfpack does):
        t' = t + R (S o), s' = S k. New accessors, since others may share the old ones."""
        attrs = node["extensions"][INSTANCING].setdefault("attributes", {})
        count = max(self.accessors[a]["count"] for a in attrs.values()) if attrs else 1
        t = (self.doc.read_accessor(attrs["TRANSLATION"]).astype(np.float64)
             if "TRANSLATION" in attrs else np.zeros((count, 3)))
        s = (self.doc.read_accessor(attrs["SCALE"]).astype(np.float64)
             if "SCALE" in attrs else np.ones((count, 3)))
        offset = dequant[:3, 3]
        if "ROTATION" in attrs:
            quats = self.doc.read_accessor(attrs["ROTATION"]).astype(np.float64)
            rots = np.array([geo.quaternion_to_matrix(q) for q in quats]).reshape(-1, 3, 3)
            moved = np.einsum("nij,nj->ni", rots, s * offset)
        else:
            moved = s * offset
        for name, value in (("TRANSLATION", t + moved), ("SCALE", s * float(dequant[0, 0]))):
            attrs[name] = self.builder.add_accessor(self.json, value.astype(np.float32),
                                                    target=None)
            self.rewritten += 1

    def _animated_nodes(self) -> set[int]:
        if "KHR_animation_pointer" in self.json.get("extensionsUsed", []):
            return set(range(len(self.json.get("nodes", []))))  # anything may move
        out = set()
        for anim in self.json.get("animations", []):
            for channel in anim.get("channels", []):
                target = channel.get("target", {})
                if target.get("path") in ("translation", "rotation", "scale") and \
                        "node" in target:
                    out.add(target["node"])
        return out

    def _add_mesh_child(self, n: int, dequant: np.ndarray) -> None:
        """Move node n's mesh to a new child carrying the dequantization (gltfpack's way)."""
        nodes = self.json["nodes"]
        node = nodes[n]
        child: dict = {"mesh": node.pop("mesh")}
        if "weights" in node:
            child["weights"] = node.pop("weights")
        child["translation"] = [float(v) for v in dequant[:3, 3]]
        child["scale"] = [float(dequant[0, 0])] * 3
        nodes.append(child)
        c = len(nodes) - 1
        node.setdefault("children", []).append(c)
        for anim in self.json.get("animations", []):
            for channel in anim.get("channels", []):
                target = channel.get("target", {})
                if target.get("node") == n and target.get("path") == "weights":
                    target["node"] = c

    # ---- texture coordinates -------------------------------------------------------------
    def _texcoords(self) -> None:
        uf = _UnionFind()
        blocked: set = set()
        for _, prim in self._prims():
            attrs = prim.get("attributes", {})
            moved = {k for t in prim.get("targets", []) for k in t}
            materials = [prim["material"]] if "material" in prim else []
            variants = prim.get("extensions", {}).get("KHR_materials_variants", {})
            materials += [mp["material"] for mp in variants.get("mappings", [])
                          if "material" in mp]
            for name, acc in attrs.items():
                if not name.startswith("TEXCOORD_"):
                    continue
                set_index = int(name.split("_")[1])
                key = ("acc", acc)
                uf.find(key)
                for mat in materials:
                    uf.union(key, ("mat", mat, set_index))
                if name in moved or not self._is_float(acc, "VEC2"):
                    blocked.add(key)
        for keys in uf.groups().values():
            accs = sorted(k[1] for k in keys if k[0] == "acc")
            if not accs:
                continue
            if any(k in blocked for k in keys):
                self.ctx.logger.info("quantize: TEXCOORD accessors %s stay float (morphed, "
                                     "sparse or not float)", accs)
                continue
            data = {i: self.doc.read_accessor(i).astype(np.float64) for i in accs}
            stacked = np.concatenate(list(data.values()))
            if not np.all(np.isfinite(stacked)):
                continue
            lo, hi = stacked.min(axis=0), stacked.max(axis=0)
            infos = self._texture_infos([k for k in keys if k[0] == "mat"])
            if not infos and lo.min() >= 0.0 and hi.max() <= 1.0:
                for i, uv in data.items():
                    q = np.floor(uv * 65535 + 0.5).astype(np.uint16)
                    self.texcoord_error = max(self.texcoord_error,
                                              float(np.abs(q / 65535 - uv).max(initial=0.0)))
                    self._retarget(i, self._new_accessor(i, q, normalized=True), "TEXCOORD_")
                continue
            if not infos:
                self.ctx.logger.info("quantize: TEXCOORD accessors %s stay float: outside "
                                     "[0, 1] and no texture samples them", accs)
                continue
            self._quantize_uv_group(data, lo, hi, infos)

    def _texture_infos(self, mat_keys: list) -> list[dict]:
        """Every texture info in these materials that samples the given texcoord set."""
        materials = self.json.get("materials", [])
        out: list[dict] = []
        for _, mat, set_index in mat_keys:
            if not 0 <= mat < len(materials):
                continue
            for info in texture_infos(materials[mat]):
                ext = info.get("extensions", {}).get(TEXTURE_TRANSFORM, {})
                if int(ext.get("texCoord", info.get("texCoord", 0))) == set_index:
                    out.append(info)
        return out

    def _largest_texture(self, infos: list[dict]) -> np.ndarray | None:
        """(width, height) in texels, the largest of the images these texture infos show
        (each texture's own source and its extensions' sources); None when one cannot be
        read (external, or not an image we know): then no texel cap applies."""
        textures = self.json.get("textures", [])
        images = self.json.get("images", [])
        largest = np.zeros(2)
        for info in infos:
            index = info.get("index")
            if not isinstance(index, int) or not 0 <= index < len(textures):
                return None
            tex = textures[index]
            sources = [tex.get("source")] + [e.get("source") for e in
                                              tex.get("extensions", {}).values()
                                              if isinstance(e, dict)]
            for source in (s for s in sources if isinstance(s, int)):
                image = images[source] if 0 <= source < len(images) else {}
                if "bufferView" not in image:
                    return None
                try:
                    size = image_size(self.doc.buffer_view_bytes(image["bufferView"]))
                except GltfInvalid:
                    return None
                largest = np.maximum(largest, size)
        return largest if largest.all() else None

    def _quantize_uv_group(self, data: dict[int, np.ndarray], lo: np.ndarray, hi: np.ndarray,
                           infos: list[dict]) -> None:
        levels = (1 << self.s.texcoord_bits) - 1
        # Precision is what the texture sees: steps of 1/levels of the texture (of the
        # set's range when it spans more than one repeat). A set covering a small part of an
        # atlas (lightmap UVs) then stores small numbers instead of 12 bits over its own
        # patch, which bought nothing a texel could show. Existing scales magnify UV steps.
        scales = [abs(float(v)) for info in infos
                  for v in info.get("extensions", {}).get(TEXTURE_TRANSFORM, {})
                  .get("scale", [1.0, 1.0])]
        texture_scale = max(scales, default=1.0) or 1.0
        span = np.maximum(hi - lo, 1.0 / texture_scale)
        texels = self._largest_texture(infos)
        if texels is not None and self.s.texcoord_steps_per_texel > 0:
            # Steps per texture repeat: a quarter texel, or the minimum; over the span.
            per_repeat = np.maximum(texels * self.s.texcoord_steps_per_texel,
                                    self.s.min_texcoord_steps)
            needed = np.ceil(span * texture_scale * per_repeat)
            levels = np.minimum(levels, needed).astype(np.int64)
        for i, uv in data.items():
            q = np.clip(np.floor((uv - lo) / span * levels + 0.5), 0, levels).astype(np.uint16)
            recon = q / levels * span + lo
            self.texcoord_error = max(self.texcoord_error,
                                      float(np.abs(recon - uv).max(initial=0.0)))
            self._retarget(i, self._new_accessor(i, q, normalized=True), "TEXCOORD_")
        # Normalized storage reads q / 65535; the transform maps that back to the range.
        scale = span * 65535.0 / levels
        done: set[int] = set()
        for info in infos:
            if id(info) in done:
                continue
            done.add(id(info))
            ext = info.setdefault("extensions", {}).setdefault(TEXTURE_TRANSFORM, {})
            old_offset = np.array(ext.get("offset", [0.0, 0.0]), dtype=np.float64)
            old_scale = np.array(ext.get("scale", [1.0, 1.0]), dtype=np.float64)
            # uv' = T R S (S_q q + lo) = (T + R S lo) R (S S_q) q: the rotation stays, the
            # dequantization offset turns with it. R is the spec's [[c, s], [-s, c]] (its
            # example maps the unit square to the lower-left quadrant; gltfpack agrees).
            angle = float(ext.get("rotation", 0.0))
            c, s = np.cos(angle), np.sin(angle)
            moved = old_scale * lo
            turned = np.array([c * moved[0] + s * moved[1], -s * moved[0] + c * moved[1]])
            ext["offset"] = [float(v) for v in old_offset + turned]
            ext["scale"] = [float(v) for v in old_scale * scale]
        self.used_transform = True

    def _retarget(self, old: int, new: int, prefix: str) -> None:
        for _, prim in self._prims():
            attrs = prim.get("attributes", {})
            for name in list(attrs):
                if name.startswith(prefix) and attrs[name] == old:
                    attrs[name] = new

    # ---- normals, tangents, colors, weights ----------------------------------------------
    def _other_attributes(self) -> None:
        for _, prim in self._prims():
            attrs = prim.get("attributes", {})
            for name in sorted(attrs):
                old = attrs[name]
                kind = name.split("_")[0] if not name.startswith("_") else ""
                if kind == "WEIGHTS" and (name != "WEIGHTS_0" or "WEIGHTS_1" in attrs):
                    continue  # renormalising across several sets is not done
                if kind not in ("NORMAL", "TANGENT", "COLOR", "WEIGHTS"):
                    continue
                key = (kind, old)
                if key not in self.cache:
                    made = self._quantize_attribute(kind, old)
                    if made is None:
                        continue
                    self.cache[key] = made
                attrs[name] = self.cache[key]

    def _quantize_attribute(self, kind: str, index: int) -> int | None:
        acc = self.accessors[index]
        if acc.get("componentType") != FLOAT or "sparse" in acc:
            return None
        ncomp = TYPE_SIZES[acc["type"]]
        data = self.doc.read_accessor(index).astype(np.float64)
        if not np.all(np.isfinite(data)):
            return None
        dtype: type[np.integer]  # signed for directions, unsigned for colors and weights
        if kind in ("NORMAL", "TANGENT"):
            if self.s.normal_bits <= 8:
                dtype, top = np.int8, 127
            else:
                dtype, top = np.int16, 32767
            q = np.clip(np.round(data * top), -top, top).astype(dtype)
            return self._new_accessor(index, q, normalized=True)
        if kind == "COLOR":
            if data.min(initial=0.0) < 0.0 or data.max(initial=0.0) > 1.0:
                self.ctx.logger.info("quantize: COLOR accessor %d is outside [0, 1]: kept "
                                     "float", index)
                return None
            dtype, top = (np.uint8, 255) if self.s.color_bits <= 8 else (np.uint16, 65535)
            q = np.floor(data * top + 0.5).astype(dtype)
            return self._new_accessor(index, q, normalized=True)
        if kind == "WEIGHTS" and ncomp == 4:
            dtype, top = (np.uint8, 255) if self.s.weight_bits <= 8 else (np.uint16, 65535)
            return self._new_accessor(index, _quantize_weights(data, top).astype(dtype),
                                      normalized=True)
        return None


def _quantize_weights(weights: np.ndarray, top: int) -> np.ndarray:
    """Weights to integers summing exactly to `top` (gltfpack's renormalizeWeights)."""
    weights = np.clip(weights, 0.0, None)
    total = weights.sum(axis=1, keepdims=True)
    safe = np.where(total > 0, total, 1.0)
    q = np.floor(weights / safe * top + 0.5).astype(np.int64)
    nonzero = total[:, 0] > 0
    # The rounding error is at most 0.5 per component: give it to the largest weight.
    largest = np.argmax(q, axis=1)
    fix = top - q.sum(axis=1)
    rows = np.nonzero(nonzero)[0]
    q[rows, largest[rows]] += fix[rows]
    return q


def _fold_into_node(node: dict, dequant: np.ndarray) -> None:
    """node := node * D, keeping the node's form (matrix or TRS)."""
    if "matrix" in node:
        node["matrix"] = [float(v) for v in (local_matrix(node) @ dequant).T.reshape(-1)]
        return
    # T R S (translate(o) scale(k)) = translate(t + R (S o)) R (S k): still a TRS.
    step = float(dequant[0, 0])
    offset = dequant[:3, 3]
    rot = geo.quaternion_to_matrix(node.get("rotation", [0.0, 0.0, 0.0, 1.0]))
    scale = np.array(node.get("scale", [1.0, 1.0, 1.0]), dtype=np.float64)
    translation = np.array(node.get("translation", [0.0, 0.0, 0.0]), dtype=np.float64)
    node["translation"] = [float(v) for v in translation + rot @ (scale * offset)]
    node["scale"] = [float(v) for v in scale * step]
