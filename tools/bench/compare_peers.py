"""The optimiser against gltfpack and glTF-Transform, at their defaults and at equal quality.

    python tools/bench/compare_peers.py [--json] [--models NAME,...] [--out DIR] [--quick]
                                        [--no-big] [--no-probe] [--no-scenes]
                                        [--timeout S] [--samples N] [--cache DIR]
                                        [--jobs N] [--corpus DIR]

Models: every entry file listed in ../shared/corpus/README.md (not the `.bevy-ktx2.gltf`
duplicate), the generated FeatureProbe (peers.feature_probe_glb: extras, a morph target
and its animation, a custom attribute, points beside triangles) and the generated scenes of
tools/bench/scenes.py (facades, noisy_photo, props, city_block; written once into --cache).
For each it runs, one after another on the same machine:

  ours              python -m tourserver optimize IN -o OUT.glb --json   (its defaults)
  gltfpack          gltfpack -i IN -o OUT.glb                             (its defaults)
  gltfpack -cc      gltfpack -i IN -o OUT.glb -cc
  gt default        gltf-transform optimize IN OUT.glb                    (its defaults)
  gt meshopt+webp   gltf-transform optimize IN OUT.glb --compress meshopt --texture-compress webp

(the peers from node_modules/.bin, installed by `npm ci`) and measures every output the
same way: bytes raw and gzip -9, wall time, triangles drawn, draw calls (peers.draw_calls),
texture quality against the source (peers.TextureMeter: SSIMULACRA2 min/mean and
butteraugli max over colour slots, PSNR min over data slots over the channels read, the
angle between normals of normal maps), geometric error against the source (sampled
two-sided surface distance, in the model's units and as a share of its bounding-box
diagonal), Khronos validator errors/warnings, and what it dropped. Outputs with
EXT_meshopt_compression are decoded with the meshoptimizer library's decoders first.

At equal texture quality (skipped with --quick): glTF-Transform, which keeps the geometry
steps of its `optimize` and takes a WebP quality per slot, is rerun at rising WebP settings
(SWEEP_STEPS, searched by bisection) separately for the colour slots, until their worst
SSIMULACRA2 reaches ours, and for the data slots, until their worst PSNR and their normal
maps' mean angle reach ours; where ours made textures smaller, they are first capped at
ours' largest edge (`gltf-transform resize`). The settings are then combined in one output
that is measured like the others. gltfpack's npm (WebAssembly) build cannot re-encode
textures (`-tc`, `-tw` exit 1: "node.js builds do not support BasisU/WebP"): it keeps
every image as it was, so `gltfpack -cc` already is gltfpack at equal-or-better texture
quality.

Then a ~1M-triangle wavy grid is simplified to 10% by ours (--simplify 0.1; its JSON
report times the simplify step alone) and by `gltfpack -si 0.1` (wall time; also the wall
time without -si, so the difference estimates its simplification).

The issue's targets per model (see `targets`): ours' gzip bytes at most 0.9x the best
comparable peer output (`comparable_peers`); ours' wall time at most glTF-Transform's at
equal quality; at defaults, smaller than each peer's default output wherever our texture
quality is at least theirs (and it kept the data); 0 validator errors (none beyond the
input's).

Metric values are kept in --cache (metrics.json, keyed by the two images' bytes), so a
rerun measures only the outputs that changed. The package is byte-compiled first (as
`pip install` does). Local files only; every subprocess is bounded by --timeout; temporary
files are removed (outputs are kept only with --out). With --json the last stdout line is
one JSON object. Needs `pip install -e '.[bench]'` (rtree, ssimulacra2) and
`apt install butteraugli`; a missing colour metric is reported, not fatal.
"""

from __future__ import annotations

import argparse
import compileall
import datetime as dt
import gzip
import hashlib
import json
import math
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import peers  # noqa: E402  (tools/bench is not a package)
import scenes  # noqa: E402
from common import cpu_model, grid_glb  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT.parent / "shared" / "corpus"
BIN = ROOT / "node_modules" / ".bin"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "tourserver-bench"
OURS = "ours"
GT_EQUAL = "gt equal quality"
PEER_DEFAULTS = ("gltfpack", "gt default")
BIG_TRIANGLES = 1_000_000
PROBE = "FeatureProbe"


def tools(in_path: Path, out_path: Path) -> dict[str, list[str]]:
    i, o = str(in_path), str(out_path)
    gp, gt = str(BIN / "gltfpack"), str(BIN / "gltf-transform")
    return {
        OURS: [sys.executable, "-m", "tourserver", "optimize", i, "-o", o, "--json"],
        "gltfpack": [gp, "-i", i, "-o", o],
        "gltfpack -cc": [gp, "-i", i, "-o", o, "-cc"],
        "gt default": [gt, "optimize", i, o],
        "gt meshopt+webp": [gt, "optimize", i, o, "--compress", "meshopt",
                            "--texture-compress", "webp"],
    }


def corpus_models(corpus: Path) -> list[Path]:
    """Entry files from the README's table (first column), without the KTX2 duplicate."""
    found = []
    for line in (corpus / "README.md").read_text().splitlines():
        m = re.match(r"^\| `([^`]+\.(?:glb|gltf))`", line)
        if m and not m.group(1).endswith(".bevy-ktx2.gltf"):
            found.append(corpus / m.group(1))
    return found


def run(cmd: list[str], timeout: float, cwd: Path) -> dict:
    """Run one command; wall time, exit code and the tails of its output."""
    started = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, timeout=timeout, check=False,
                              env=dict(os.environ, NO_COLOR="1", FORCE_COLOR="0"))
    except subprocess.TimeoutExpired:
        return {"status": "timeout", "wall_s": round(time.perf_counter() - started, 3),
                "error": f"killed after {timeout:.0f} s"}
    except OSError as exc:
        return {"status": "unavailable", "error": str(exc)}
    wall = time.perf_counter() - started
    out = proc.stdout.decode(errors="replace")
    err = proc.stderr.decode(errors="replace")
    return {"status": "ok" if proc.returncode == 0 else "failed", "exit": proc.returncode,
            "wall_s": round(wall, 3), "stdout": out, "stderr": err}


def _tail(text: str, n: int = 300) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return " | ".join(lines[-3:])[-n:]


def _last_json(stdout: str) -> dict | None:
    for line in reversed(stdout.strip().splitlines()):
        try:
            value = json.loads(line)
        except json.JSONDecodeError:
            continue
        return value if isinstance(value, dict) else None
    return None


def _gzip_size(data: bytes) -> int:
    return len(gzip.compress(data, 9, mtime=0))


class Source:
    """The input, loaded once: its document, geometry, trimesh and texture meter."""

    def __init__(self, path: Path, work: Path, pool=None, store: dict | None = None) -> None:
        from tourserver.gltf.document import write_glb
        from tourserver.ingest.inspect import scene_stats
        from tourserver.ingest.loaders import load_asset

        self.path = path
        self.doc = load_asset(path)
        glb = write_glb(self.doc)  # self-contained size: .gltf + .bin + images as one GLB
        self.bytes = len(glb)
        self.gzip_bytes = _gzip_size(glb)
        self.stats = scene_stats(self.doc)
        self.geometry = peers.world_geometry(self.doc)
        self.mesh = peers.canonical_mesh(self.geometry) if len(self.geometry.faces) else None
        self.meter = peers.TextureMeter(self.doc, work / "textures", pool, store)
        # Geometric error by a digest of the output's world geometry: outputs that differ
        # only in compression or textures (gltfpack and -cc, gt default and its WebP runs)
        # share one measurement, the costliest of the bench on dense scenes.
        self.geo: dict[str, dict | None] = {}
        pairs, _, _ = peers.slot_pairs(self.doc.json, self.doc.json)
        self.slots = {role: sorted({p.slot.rsplit(".", 1)[-1] for p in pairs if p.role == role})
                      for role in ("colour", "data")}


def measure_output(src: Source, out: Path, work: Path, samples: int) -> dict:
    """Every figure for one output file."""
    from tourserver.ingest.inspect import scene_stats
    from tourserver.ingest.loaders import load_asset
    from tourserver.ingest.validator import ValidatorUnavailable, validate_file

    data = out.read_bytes()
    row: dict = {"bytes": len(data), "gzip_bytes": _gzip_size(data)}
    try:
        report = validate_file(out)
        codes: dict[str, int] = {}
        for m in report.messages:
            if m.get("severity", 9) <= 1:
                codes[m["code"]] = codes.get(m["code"], 0) + 1
        row["validator"] = {"errors": report.errors, "warnings": report.warnings,
                            "codes": codes}
    except (ValidatorUnavailable, subprocess.TimeoutExpired) as exc:
        row["validator"] = {"error": str(exc)[:200]}
    try:
        decoded = work / "decoded.glb"
        decoded.write_bytes(peers.decode_meshopt_glb(data))
        doc = load_asset(decoded)
    except Exception as exc:  # a broken output is a result, not a crash of the bench
        row["read_error"] = f"{type(exc).__name__}: {str(exc)[:200]}"
        return row
    stats = scene_stats(doc)
    row.update(triangles=stats.triangles, vertices=stats.vertices,
               points=sum(int(doc.json["accessors"][p["attributes"]["POSITION"]]["count"])
                          for m in doc.json.get("meshes", []) for p in m.get("primitives", [])
                          if p.get("mode", 4) == 0 and "POSITION" in p.get("attributes", {})),
               draw_calls=peers.draw_calls(doc.json), max_texture_px=stats.max_texture_px)
    row["textures"] = src.meter.measure(doc)
    geometry = peers.world_geometry(doc)
    row["rendered_triangles"] = int(len(geometry.faces))  # instances included
    digest = hashlib.sha1(b"".join(np.ascontiguousarray(a).tobytes() for a in (
        geometry.vertices, geometry.faces, geometry.points))).hexdigest()
    if digest not in src.geo:
        try:
            src.geo[digest] = peers.geometric_error(src.geometry, geometry, samples,
                                                    src_mesh=src.mesh)
        except ImportError as exc:
            row["geo_error_note"] = f"{exc} (pip install rtree)"
    row["geo"] = src.geo.get(digest)
    row["dropped"] = peers.dropped(src.doc.json, doc.json)
    return row


def bench_model(name: str, path: Path, shown: str, work: Path, keep: Path | None,
                timeout: float, samples: int, sweep: bool = True, pool=None,
                store: dict | None = None) -> dict:
    started = time.perf_counter()
    folder = (keep / name) if keep else work / name
    folder.mkdir(parents=True, exist_ok=True)
    src = Source(path, work / name, pool, store)  # its metric PNGs stay in the temp dir
    result = {"model": name, "file": shown,
              "input": {"bytes": src.bytes, "gzip_bytes": src.gzip_bytes,
                        "triangles": src.stats.triangles,
                        "points": int(len(src.geometry.points)),
                        "draw_calls": peers.draw_calls(src.doc.json),
                        "max_texture_px": src.stats.max_texture_px,
                        "colour_slots": src.slots["colour"], "data_slots": src.slots["data"]},
              "tools": {}}
    try:
        from tourserver.ingest.validator import validate_file

        v = validate_file(path)
        result["input"]["validator"] = {"errors": v.errors, "warnings": v.warnings}
    except Exception as exc:  # the validator is optional for the bench
        result["input"]["validator"] = {"error": str(exc)[:200]}
    for tool in tools(path, Path("x")):
        out = folder / (re.sub(r"[^a-z0-9.]+", "-", tool.lower()).strip("-") + ".glb")
        out.unlink(missing_ok=True)
        cmd = tools(path, out)[tool]
        if tool != OURS and not Path(cmd[0]).exists():
            result["tools"][tool] = {"status": "unavailable",
                                     "error": f"{cmd[0]} missing: run npm ci"}
            continue
        print(f"…   {tool}", file=sys.stderr, flush=True)
        proc = run(cmd, timeout, work)
        row = {k: v for k, v in proc.items() if k not in ("stdout", "stderr")}
        if tool == OURS:
            report = _last_json(proc.get("stdout", ""))
            if proc.get("exit") == 3 and out.is_file():
                row["status"] = "ok"
                row["note"] = "over its preset's budget (exit 3)"
            if report and report.get("schema") == "tourserver.optimize/1":
                row["timings_s"] = report.get("timings_s", {})
                row["facts"] = report.get("facts", {})
                row["issues"] = report.get("issues", [])
        if row["status"] != "ok" or not out.is_file():
            if row["status"] == "ok":
                row["status"] = "failed"
            row["error"] = row.get("error") or _tail(proc.get("stderr", "") or
                                                     proc.get("stdout", ""))
            result["tools"][tool] = row
            continue
        row.update(measure_output(src, out, work, samples))
        result["tools"][tool] = row
    ours = result["tools"].get(OURS, {})
    ours_tex = ours.get("textures")
    if sweep and ours_tex and (ours_tex["colour_pairs"] or ours_tex["data_pairs"]):
        print(f"…   {GT_EQUAL}", file=sys.stderr, flush=True)
        result["equal"] = equal_quality(src, ours, folder, work, timeout, samples)
        if result["equal"].get("status") == "ok":
            result["tools"][GT_EQUAL] = result["equal"].pop("row")
    result["bench_s"] = round(time.perf_counter() - started, 1)  # measuring included
    return result


# ---- glTF-Transform at our texture quality --------------------------------------------------
# `optimize --texture-compress webp` takes no quality, so the same pipeline runs in steps:
# `optimize --compress false --texture-compress false` (its geometry steps), `webp --slots
# <colour slots> <setting>`, `webp --slots <data slots> <setting>`, `meshopt` (what optimize
# runs last, same defaults). The settings in order of rising fidelity: lossy WebP is 4:2:0
# and levels off near Q 100, then near-lossless (its "quality" is libwebp's preprocessing
# level: up to 5 - Q // 20 low bits of a pixel may change, 100 is lossless), then
# lossless. Each role is searched by bisection (4-5 tries of 18; the ladder is close to,
# not exactly, monotone, so the match found is a first crossing, not always the cheapest).
SWEEP_STEPS: tuple[tuple[str, list[str]], ...] = (
    ("q20", ["--quality", "20"]),
    ("q30", ["--quality", "30"]),
    ("q40", ["--quality", "40"]),
    ("q50", ["--quality", "50"]),
    ("q60", ["--quality", "60"]),
    ("q70", ["--quality", "70"]),
    ("q80", ["--quality", "80"]),
    ("q85", ["--quality", "85"]),
    ("q90", ["--quality", "90"]),
    ("q93", ["--quality", "93"]),
    ("q95", ["--quality", "95"]),
    ("q97", ["--quality", "97"]),
    ("q100", ["--quality", "100"]),
    ("near-lossless q20", ["--near-lossless", "true", "--quality", "20"]),
    ("near-lossless q40", ["--near-lossless", "true", "--quality", "40"]),
    ("near-lossless q60", ["--near-lossless", "true", "--quality", "60"]),
    ("near-lossless q80", ["--near-lossless", "true", "--quality", "80"]),
    ("lossless", ["--lossless", "true"]),
)
# "Equal or better": a few hundredths under ours still count (both metrics are exact on
# the same pixels; this only absorbs float rounding in how the two were computed).
SSIM_TOLERANCE = 0.05
PSNR_TOLERANCE = 0.05
ANGLE_TOLERANCE = 0.05  # degrees


def _glob(slots: list[str]) -> str:
    return slots[0] if len(slots) == 1 else "{" + ",".join(slots) + "}"


def equal_quality(src: Source, ours: dict, folder: Path, work: Path, timeout: float,
                  samples: int) -> dict:
    """glTF-Transform at the first SWEEP_STEPS setting whose colour slots reach ours
    (worst SSIMULACRA2), and (separately) whose data slots reach ours (worst PSNR, mean
    normal angle): `role_at_least`; both in one output, measured like every other. Where
    ours made its textures smaller than the source's, `gltf-transform resize` first caps
    them at ours' largest edge (the same choice of resolution, then the same quality).
    Its time: the commands' wall times, and the same less one Node start-up per extra
    command (`node_start_s`), as if one process did it."""
    from tourserver.ingest.loaders import load_asset

    gt = str(BIN / "gltf-transform")
    if not Path(gt).exists():
        return {"status": "unavailable", "error": f"{gt} missing: run npm ci"}
    base = work / "gt-eq-base.glb"
    proc = run([gt, "optimize", str(src.path), str(base), "--compress", "false",
                "--texture-compress", "false"], timeout, work)
    if proc["status"] != "ok" or not base.is_file():
        return {"status": "failed", "error": proc.get("error") or _tail(proc.get("stderr", ""))}
    result: dict = {"status": "not reached", "base_wall_s": proc["wall_s"], "tried": []}
    wall, commands = proc["wall_s"], 1
    cap = ours.get("max_texture_px") or 0
    if 0 < cap < src.stats.max_texture_px:
        resized = work / "gt-eq-resized.glb"
        step = run([gt, "resize", str(base), str(resized), "--width", str(cap),
                    "--height", str(cap)], timeout, work)
        if step["status"] != "ok":
            return dict(result, status="failed", error=_tail(step.get("stderr", "")))
        base, wall, commands = resized, wall + step["wall_s"], commands + 1
        result["resize_px"] = cap
    ours_tex = ours["textures"]
    chosen: dict[str, int] = {}
    for role in ("colour", "data"):
        if not src.slots[role] or not ours_tex[f"{role}_pairs"]:
            continue
        floor = (ours_tex["ssimulacra2_min"] - SSIM_TOLERANCE
                 if role == "colour" and ours_tex["ssimulacra2_min"] is not None else None)

        def meets(index: int, role=role, floor=floor) -> bool:
            label, opts = SWEEP_STEPS[index]
            out = work / "gt-eq-step.glb"
            out.unlink(missing_ok=True)
            step = run([gt, "webp", str(base), str(out), "--slots", _glob(src.slots[role]),
                        *opts], timeout, work)
            tried = {"role": role, "setting": label, "wall_s": step.get("wall_s")}
            result["tried"].append(tried)
            if step["status"] != "ok" or not out.is_file():
                tried["error"] = step.get("error") or _tail(step.get("stderr", ""))
                return False
            tex = src.meter.measure(load_asset(out), roles=(role,), butteraugli=False,
                                    floor=floor)
            tried["value"] = tex["ssimulacra2_min" if role == "colour" else "psnr_data_min"]
            if tex["normal_deg_mean"] is not None:
                tried["normal_deg_mean"] = tex["normal_deg_mean"]
            return not tex["below_floor"] and role_at_least(tex, ours_tex, role)

        lo, hi = -1, len(SWEEP_STEPS) - 1  # lossless is taken to meet any target
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if meets(mid):
                hi = mid
            else:
                lo = mid
        chosen[role] = hi
    # The output at the chosen settings, in the order optimize would run them.
    current = base
    for role, index in chosen.items():
        nxt = work / f"gt-eq-{role}.glb"
        step = run([gt, "webp", str(current), str(nxt), "--slots", _glob(src.slots[role]),
                    *SWEEP_STEPS[index][1]], timeout, work)
        if step["status"] != "ok":
            return dict(result, status="failed", error=_tail(step.get("stderr", "")))
        current, wall, commands = nxt, wall + step["wall_s"], commands + 1
    final = folder / "gt-equal-quality.glb"
    step = run([gt, "meshopt", str(current), str(final)], timeout, work)
    if step["status"] != "ok" or not final.is_file():
        return dict(result, status="failed", error=_tail(step.get("stderr", "")))
    wall += step["wall_s"]
    commands += 1
    row = {"status": "ok", "wall_s": round(wall, 3), "commands": commands,
           "settings": {role: SWEEP_STEPS[i][0] for role, i in chosen.items()}}
    if "resize_px" in result:
        row["settings"] = {"resize": f"{result['resize_px']} px", **row["settings"]}
    row.update(measure_output(src, final, work, samples))
    result.update(status="ok", row=row, settings=row["settings"])
    return result


def node_start_s(timeout: float = 60.0) -> float | None:
    """The least of three wall times of `gltf-transform --version`: one Node start-up with
    the CLI loaded, what each extra command of the equal-quality pipeline costs."""
    gt = BIN / "gltf-transform"
    if not gt.exists():
        return None
    times = [run([str(gt), "--version"], timeout, ROOT).get("wall_s") for _ in range(3)]
    return min(t for t in times if t is not None) if any(times) else None


# ---- which peer outputs count, and the targets ----------------------------------------------
# A peer output is comparable when its textures are at least ours (colour slots' worst
# SSIMULACRA2; data slots' worst PSNR and normal maps' mean angle; each within its
# tolerance; lossless counts as infinite), its geometric error is at most GEO_TOLERANCE x
# ours (the error is a sampled maximum: ~10 % noise between orders of the same surface) or
# under GEO_NEGLIGIBLE of the diagonal (quantization noise), and it dropped no data
# (attributes, points, morph targets, skins, animations, extensions such as metadata or
# materials); dropping only node names or extras still counts. Outputs with textures the
# bench cannot decode (KTX2) do not count.
GEO_NEGLIGIBLE = 5e-5
GEO_TOLERANCE = 1.25
DATA_DROPS = ("attribute", "point primitives", "morph", "skins", "animations", "KHR_", "EXT_")
BYTES_TARGET = 0.9
TIME_TARGET = 1.0


def _value(tex: dict | None, key: str) -> float | None:
    value = (tex or {}).get(key)
    return None if value is None else float(value)


def role_at_least(tex: dict | None, ref: dict | None, role: str) -> bool:
    """Whether the `role` slots ("colour" or "data") of textures `tex` are at least as good
    as those of `ref`: colour by the worst SSIMULACRA2; data by the worst PSNR and, where
    `ref` has normal maps, the mean angle between normals (see the comment above)."""
    checks = ([("ssimulacra2_min", SSIM_TOLERANCE, 1)] if role == "colour" else
              [("psnr_data_min", PSNR_TOLERANCE, 1), ("normal_deg_mean", ANGLE_TOLERANCE, -1)])
    for key, tolerance, sign in checks:  # sign -1: lower is better
        want = _value(ref, key)
        if want is None:
            continue
        got = _value(tex, key)
        if got is None or sign * (got - want) < -tolerance:
            return False
    return True


def texture_at_least(tex: dict | None, ref: dict | None) -> bool:
    """Whether textures `tex` are at least as good as `ref` on colour and data slots;
    textures the bench cannot decode (KTX2) are not."""
    if (tex or {}).get("ktx2"):
        return False
    return role_at_least(tex, ref, "colour") and role_at_least(tex, ref, "data")


def _data_kept(row: dict) -> bool:
    return not any(d.startswith(DATA_DROPS) for d in row.get("dropped", []))


def comparable_peers(res: dict) -> list[tuple[str, int]]:
    """(label, gzip bytes) of every peer output comparable with ours, smallest first."""
    ours = res["tools"].get(OURS, {})
    if "gzip_bytes" not in ours:
        return []
    ours_geo = ours.get("geo") or {}

    def geo_ok(g: dict | None) -> bool:
        if not g or not ours_geo:
            return not ours_geo
        if g.get("missing"):
            return False
        return g["rel_max"] <= max(GEO_TOLERANCE * ours_geo["rel_max"], GEO_NEGLIGIBLE)

    found = [(tool, r["gzip_bytes"]) for tool, r in res["tools"].items()
             if tool != OURS and "gzip_bytes" in r
             and texture_at_least(r.get("textures"), ours.get("textures"))
             and geo_ok(r.get("geo")) and _data_kept(r)]
    return sorted(found, key=lambda item: item[1])


def targets(res: dict) -> dict:
    """The issue's targets for one model (None where they cannot be judged)."""
    rows = res["tools"]
    ours = rows.get(OURS, {})
    if "gzip_bytes" not in ours:
        return {"ours": ours.get("status", "missing")}
    best = comparable_peers(res)
    out: dict = {"best_peer": best[0][0] if best else None,
                 "best_peer_gzip_bytes": best[0][1] if best else None}
    out["bytes_ratio"] = round(ours["gzip_bytes"] / best[0][1], 3) if best else None
    out["bytes_met"] = None if not best else out["bytes_ratio"] <= BYTES_TARGET
    textured = bool(res["input"]["colour_slots"] or res["input"]["data_slots"])
    eq = rows.get(GT_EQUAL) if textured else rows.get("gt default")
    out["time_peer"] = GT_EQUAL if textured else "gt default"
    peer_s = None
    if eq and eq.get("status") == "ok" and "gzip_bytes" in eq:
        peer_s = eq["wall_s"]
        if textured and res.get("node_start_s"):
            peer_s = max(peer_s - (eq["commands"] - 1) * res["node_start_s"], 0.001)
    out["time_peer_s"] = round(peer_s, 3) if peer_s else None
    out["time_ratio"] = round(ours["wall_s"] / peer_s, 3) if peer_s else None
    out["time_met"] = None if peer_s is None else out["time_ratio"] <= TIME_TARGET
    out["defaults"] = {}
    for peer in PEER_DEFAULTS:
        theirs = rows.get(peer, {})
        if "gzip_bytes" not in theirs:
            verdict = "n/a (no output)"
        elif not _data_kept(theirs):
            verdict = "n/a (it dropped data)"
        elif not texture_at_least(ours.get("textures"), theirs.get("textures")):
            verdict = "n/a (their textures better)"
        else:
            verdict = "smaller" if ours["gzip_bytes"] < theirs["gzip_bytes"] else "NOT smaller"
        out["defaults"][peer] = verdict
    errors = (ours.get("validator") or {}).get("errors")
    before = (res["input"].get("validator") or {}).get("errors")
    out["validator_errors"] = errors
    out["validator_met"] = None if errors is None else (errors == 0 or errors <= (before or 0))
    return out


# ---- the 1M-triangle simplification ---------------------------------------------------------
def big_mesh_glb(triangles: int = BIG_TRIANGLES) -> bytes:
    """A wavy 100 m square grid with small seeded noise: ~`triangles` triangles, no textures."""
    n = int(round((triangles / 2) ** 0.5)) + 1
    xs, zs = np.meshgrid(np.linspace(-50, 50, n), np.linspace(-50, 50, n))
    rng = np.random.default_rng(7)
    ys = 3 * np.sin(xs / 7) * np.cos(zs / 9) + rng.normal(0, 0.005, xs.shape)
    return grid_glb(xs, ys, zs)


def bench_big(work: Path, timeout: float, samples: int) -> dict:
    path = work / "grid1m.glb"
    path.write_bytes(big_mesh_glb())
    src = Source(path, work / "big")
    result: dict = {"input": {"bytes": src.bytes, "triangles": src.stats.triangles}, "tools": {}}
    runs = {
        OURS: [sys.executable, "-m", "tourserver", "optimize", str(path), "-o",
               str(work / "ours.glb"), "--simplify", "0.1", "--json"],
        "gltfpack -si 0.1": [str(BIN / "gltfpack"), "-i", str(path), "-o",
                             str(work / "gp.glb"), "-si", "0.1"],
        "gltfpack (no -si)": [str(BIN / "gltfpack"), "-i", str(path), "-o",
                              str(work / "gp0.glb")],
    }
    outs = {OURS: work / "ours.glb", "gltfpack -si 0.1": work / "gp.glb",
            "gltfpack (no -si)": work / "gp0.glb"}
    for tool, cmd in runs.items():
        proc = run(cmd, timeout, work)
        row = {k: v for k, v in proc.items() if k not in ("stdout", "stderr")}
        if tool == OURS:
            report = _last_json(proc.get("stdout", ""))
            if report:
                row["timings_s"] = report.get("timings_s", {})
                row["simplify_s"] = row["timings_s"].get("simplify")
            if proc.get("exit") == 3:
                row["status"] = "ok"
        if row["status"] == "ok" and outs[tool].is_file():
            m = measure_output(src, outs[tool], work, samples)
            row.update({k: m.get(k) for k in ("bytes", "triangles", "geo", "validator",
                                               "read_error")})
        else:
            row["error"] = row.get("error") or _tail(proc.get("stderr", ""))
        result["tools"][tool] = row
    gp, gp0 = result["tools"]["gltfpack -si 0.1"], result["tools"]["gltfpack (no -si)"]
    if "wall_s" in gp and "wall_s" in gp0:
        gp["simplify_s_estimate"] = round(gp["wall_s"] - gp0["wall_s"], 3)
    return result


# ---- reporting ------------------------------------------------------------------------------
def machine() -> dict:
    def version(cmd: list[str]) -> str:
        try:
            p = subprocess.run(cmd, capture_output=True, timeout=60, check=False)
            return _tail((p.stdout + p.stderr).decode(errors="replace"), 80)
        except (OSError, subprocess.TimeoutExpired):
            return "unavailable"

    import importlib.metadata as md

    try:
        ssim = md.version("ssimulacra2")
    except md.PackageNotFoundError:
        ssim = "missing"
    return {"date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "platform": platform.platform(), "cpu": cpu_model(), "cores": os.cpu_count(),
            "python": platform.python_version(), "node": version(["node", "--version"]),
            "gltfpack": version([str(BIN / "gltfpack"), "-v"]),
            "gltf-transform": version([str(BIN / "gltf-transform"), "--version"]),
            "ssimulacra2": ssim,
            "butteraugli": shutil.which(peers.BUTTERAUGLI) or "missing"}


def _fmt_kb(n: int | None) -> str:
    return "–" if n is None else f"{n / 1024:,.0f}"


def _fmt_num(v, digits: int = 1) -> str:
    if v is None:
        return "–"
    v = float(v)
    return "lossless" if math.isinf(v) else f"{v:.{digits}f}"


def _fmt_tex(t: dict | None) -> tuple[str, str, str, str]:
    """(SSIMULACRA2 min/mean, butteraugli max, data PSNR min, normal ° mean/p99)."""
    if not t:
        return "–", "–", "–", "–"
    ssim = "–"
    if t.get("ssimulacra2_min") is not None:
        ssim = f"{_fmt_num(t['ssimulacra2_min'])} / {_fmt_num(t['ssimulacra2_mean'])}"
    normal = "–"
    if t.get("normal_deg_mean") is not None:
        normal = f"{t['normal_deg_mean']:.2f} / {t['normal_deg_p99']:.1f}"
    ktx2 = f" (+{t['ktx2']} KTX2)" if t.get("ktx2") else ""
    return (ssim + ktx2, _fmt_num(t.get("butteraugli_max"), 2),
            _fmt_num(t.get("psnr_data_min")), normal)


def _fmt_geo(g: dict | None) -> str:
    if not g:
        return "–"
    text = f"{g['max']:.3g} ({g['rel_max'] * 100:.4f}%)"
    if "triangles" in g and "points" in g:
        text += f"; points {g['points']['max']:.3g}"
    return text + "".join(f"; no {k}" for k in g.get("missing", []))


def model_table(res: dict) -> str:
    inp = res["input"]
    v = inp.get("validator", {})
    lines = [f"**{res['model']}** (`{res['file']}`): input {_fmt_kb(inp['bytes'])} KB "
             f"(gzip {_fmt_kb(inp['gzip_bytes'])} KB), {inp['triangles']:,} triangles"
             + (f", {inp['points']:,} points" if inp["points"] else "")
             + f", {inp['draw_calls']} draw calls"
             + f", validator {v.get('errors', '?')} E / {v.get('warnings', '?')} W", "",
             "| tool | KB | gzip KB | time s | triangles drawn | draws | SSIMULACRA2 min/mean | "
             "butteraugli max | data PSNR min dB | normal ° mean/p99 | geo max (of diag) | "
             "validator E/W | dropped |",
             "|---|--:|--:|--:|--:|--:|---|--:|--:|---|---|---|---|"]
    for tool, r in res["tools"].items():
        label = tool + (f" ({', '.join(f'{k} {s}' for k, s in r['settings'].items())})"
                        if r.get("settings") else "")
        if "bytes" not in r:
            lines.append(f"| {label} | {r['status']}: {r.get('error', '')[-120:]} "
                         "| | | | | | | | | | | |")
            continue
        val = r.get("validator", {})
        valtxt = f"{val['errors']}/{val['warnings']}" if "errors" in val else "?"
        if val.get("codes"):
            valtxt += " " + ", ".join(f"{c}×{n}" if n > 1 else c
                                      for c, n in sorted(val["codes"].items()))
        tris = r.get("rendered_triangles")
        if not tris and r.get("points"):
            tris = f"{r['points']:,} pts"
        elif tris is not None:
            tris = f"{tris:,}"
        ssim, butter, data, normal = _fmt_tex(r.get("textures"))
        lines.append(
            f"| {label} | {_fmt_kb(r['bytes'])} | {_fmt_kb(r['gzip_bytes'])} | "
            f"{r.get('wall_s', '–')} | {'–' if tris is None else tris} | "
            f"{r.get('draw_calls', '–')} | {ssim} | {butter} | {data} | {normal} | "
            f"{_fmt_geo(r.get('geo'))} | {valtxt} | "
            f"{', '.join(r.get('dropped', [])) or r.get('read_error', 'nothing listed')} |")
    return "\n".join(lines)


def equal_table(results: list[dict]) -> str:
    """One row per textured model: glTF-Transform at our texture quality."""
    lines = ["**At equal texture quality**: glTF-Transform (its optimize steps, WebP per "
             "slot role, meshopt) at the first setting whose colour slots' worst "
             "SSIMULACRA2, and data slots' worst PSNR and mean normal angle, reach ours", "",
             "| model | ours SSIMULACRA2 min | ours data PSNR min / normal ° | gt settings | "
             "gt gzip KB | ours gzip KB | ours ÷ gt | ours s | gt s (less Node start-ups) "
             "| tried |",
             "|---|--:|--:|---|--:|--:|--:|--:|--:|---|"]
    for res in results:
        eq = res.get("equal")
        if not eq:
            continue
        ours = res["tools"].get(OURS, {})
        gt = res["tools"].get(GT_EQUAL, {})
        tried = ", ".join(
            f"{t['role']} {t['setting']}: {_fmt_num(t.get('value'))}"
            + (f" ∠{t['normal_deg_mean']:.2f}°" if t.get("normal_deg_mean") is not None else "")
            for t in eq.get("tried", []))
        settings = ", ".join(f"{k} {v}" for k, v in eq.get("settings", {}).items())
        ratio = (round(ours["gzip_bytes"] / gt["gzip_bytes"], 3)
                 if gt.get("gzip_bytes") and ours.get("gzip_bytes") else "–")
        tex = ours.get("textures") or {}
        angle = tex.get("normal_deg_mean")
        lines.append(
            f"| {res['model']} | {_fmt_num(tex.get('ssimulacra2_min'))} | "
            f"{_fmt_num(tex.get('psnr_data_min'))}"
            f"{'' if angle is None else f' / {angle:.2f}'} | {settings or '–'} | "
            f"{_fmt_kb(gt.get('gzip_bytes'))} | "
            f"{_fmt_kb(ours.get('gzip_bytes'))} | {ratio} | {ours.get('wall_s', '–')} | "
            f"{gt.get('wall_s', eq.get('status'))} ({res['targets'].get('time_peer_s') or '–'})"
            f" | {tried or eq.get('error', '')} |")
    return "\n".join(lines)


def summary_table(results: list[dict]) -> str:
    """The issue's targets per model."""
    lines = [f"**Targets** (bytes: ours ÷ the best comparable peer ≤ {BYTES_TARGET}, see "
             f"`comparable_peers`; time: ours ÷ glTF-Transform at equal quality ≤ "
             f"{TIME_TARGET} (untextured: its default); defaults: smaller than each peer's "
             "default output where our textures are at least theirs and it kept the data; "
             "validator errors 0)", "",
             "| model | ours gzip KB | best comparable peer | its gzip KB | ours ÷ it | ours s "
             "| gt s | ours ÷ gt | vs gltfpack default | vs gt default | validator E |",
             "|---|--:|---|--:|--:|--:|--:|--:|---|---|--:|"]
    for res in results:
        t = res.get("targets", {})
        ours = res["tools"].get(OURS, {})
        if "bytes_ratio" not in t:
            lines.append(f"| {res['model']} | ours {t.get('ours')} | | | | | | | | | |")
            continue

        def mark(value, met):
            return "–" if value is None else f"{value}{'' if met else ' ✗'}"

        lines.append(
            f"| {res['model']} | {_fmt_kb(ours['gzip_bytes'])} | "
            f"{t['best_peer'] or 'none comparable'} | {_fmt_kb(t['best_peer_gzip_bytes'])} | "
            f"{mark(t['bytes_ratio'], t['bytes_met'])} | {ours.get('wall_s')} | "
            f"{t['time_peer_s'] or '–'} | {mark(t['time_ratio'], t['time_met'])} | "
            f"{t['defaults']['gltfpack']} | {t['defaults']['gt default']} | "
            f"{mark(t['validator_errors'], t['validator_met'])} |")
    return "\n".join(lines)


def big_table(res: dict) -> str:
    lines = [f"**1M-triangle grid** ({res['input']['triangles']:,} triangles, "
             f"{_fmt_kb(res['input']['bytes'])} KB) simplified to 10%", "",
             "| tool | wall s | simplify s | triangles | geo max (of diag) | status |",
             "|---|--:|--:|--:|---|---|"]
    for tool, r in res["tools"].items():
        simp = r.get("simplify_s", r.get("simplify_s_estimate"))
        tris = r.get("triangles")
        lines.append(f"| {tool} | {r.get('wall_s', '–')} | "
                     f"{'–' if simp is None else simp} | "
                     f"{'–' if tris is None else f'{tris:,}'} | {_fmt_geo(r.get('geo'))} | "
                     f"{r['status']}{': ' + r['error'][:100] if r.get('error') else ''} |")
    return "\n".join(lines)


# ---- the run --------------------------------------------------------------------------------
def select_models(args) -> list[tuple[str, Path | None]]:
    """(name, path) of every model to run; generated ones have path None until made."""
    chosen: list[tuple[str, Path | None]] = [(p.parent.name, p) for p in corpus_models(args.corpus)]
    if not args.no_probe:
        chosen.append((PROBE, None))
    if not args.no_scenes:
        chosen.extend((kind, None) for kind in scenes.KINDS)
    if args.models:
        wanted = {m.strip().lower() for m in args.models.split(",") if m.strip()}
        chosen = [(n, p) for n, p in chosen if n.lower() in wanted
                  or (p is not None and p.stem.lower() in wanted)]
    return chosen


def _load_store(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _save_store(path: Path, store: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(store, sort_keys=True))
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--json", action="store_true", help="last stdout line: one JSON object")
    p.add_argument("--models", help="comma-separated names: corpus folders, FeatureProbe, "
                   + ", ".join(scenes.KINDS) + " (default: all)")
    p.add_argument("--out", type=Path, help="keep the outputs here (default: a temp dir)")
    p.add_argument("--corpus", type=Path, default=CORPUS)
    p.add_argument("--cache", type=Path, default=CACHE,
                   help=f"generated scenes and metric values (default: {CACHE})")
    p.add_argument("--samples", type=int, default=20000, help="surface samples per side")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds per subprocess")
    p.add_argument("--quick", action="store_true", help="skip the equal-quality sweep")
    p.add_argument("--no-big", action="store_true", help="skip the 1M-triangle run")
    p.add_argument("--no-probe", action="store_true", help="skip the generated feature probe")
    p.add_argument("--no-scenes", action="store_true",
                   help="skip the generated scenes (tools/bench/scenes.py)")
    p.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1),
                   help="metric processes (SSIMULACRA2 needs ~2 GB each at 2048²)")
    args = p.parse_args(argv)

    models = select_models(args)
    if not models:
        print(f"error: no model matches {args.models}", file=sys.stderr)
        return 2
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
    missing = peers.metrics_missing()
    for metric, how in missing.items():
        print(f"warning: {metric} missing ({how}): its column stays empty", file=sys.stderr)
    # Byte-compile the package first, as `pip install` does: with PYTHONDONTWRITEBYTECODE
    # set (as on these machines) every run would otherwise compile ~100 modules again.
    compileall.compile_dir(str(ROOT / "tourserver"), quiet=1)
    info = machine()
    info["node_start_s"] = node_start_s()
    store_path = args.cache / "metrics.json"
    store = _load_store(store_path)
    results, big = [], None
    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="compare-peers-"))
    try:
        with ProcessPoolExecutor(max(1, args.jobs)) as pool:
            for name, path in models:
                if path is None and name == PROBE:
                    path = work / "generated" / f"{PROBE}.glb"
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_bytes(peers.feature_probe_glb())
                elif path is None:
                    print(f"… {name}: generating (or reusing) in {args.cache / 'scenes'}",
                          file=sys.stderr, flush=True)
                    path = scenes.generate(name, args.cache / "scenes")
                print(f"… {name}", file=sys.stderr, flush=True)
                shown = (str(path.relative_to(args.corpus)) if path.is_relative_to(args.corpus)
                         else f"generated: {path.name}")
                res = bench_model(name, path, shown, work, args.out, args.timeout,
                                  args.samples, not args.quick, pool, store)
                res["node_start_s"] = info["node_start_s"]
                res["targets"] = targets(res)
                results.append(res)
                _save_store(store_path, store)
                if not args.json:
                    print(model_table(res) + "\n", flush=True)
        if not args.no_big:
            print("… 1M-triangle grid", file=sys.stderr, flush=True)
            big = bench_big(work, args.timeout, args.samples)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    info["run_s"] = round(time.perf_counter() - started, 1)
    tables = ([model_table(r) for r in results] if args.json else [])
    if any(r.get("equal") for r in results):
        tables.append(equal_table(results))
    tables.append(summary_table(results))
    if big:
        tables.append(big_table(big))
    for table in tables:
        print(table + "\n", flush=True)
    if args.json:
        print(json.dumps(_finite({"schema": "tourserver.compare_peers/2", "machine": info,
                                  "samples": args.samples, "models": results, "big": big}),
                         default=_json_default, allow_nan=False))
    else:
        print(" · ".join(f"{k}: {v}" for k, v in info.items()))
    return 0


def _finite(value):
    """JSON has no infinity: a lossless PSNR becomes the string "inf"."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def _json_default(value):
    try:
        return _finite(float(value))  # numpy scalars
    except (TypeError, ValueError):
        return str(value)


if __name__ == "__main__":
    sys.exit(main())
