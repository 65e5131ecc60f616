"""The optimiser against gltfpack and glTF-Transform on the shared corpus, in one run.

    python tools/bench/compare_peers.py [--json] [--models NAME,...] [--out DIR]
                                        [--samples N] [--timeout S] [--no-big]
                                        [--no-equal-psnr]

For every entry file listed in ../shared/corpus/README.md (not the `.bevy-ktx2.gltf`
duplicate) it runs, one after another on the same machine:

  ours                  python -m tourserver optimize IN -o OUT.glb --preset phone --json
  gltfpack -cc          gltfpack -i IN -o OUT.glb -cc
  gltfpack -cc -si 0.5  gltfpack -i IN -o OUT.glb -cc -si 0.5
  gt meshopt+webp       gltf-transform optimize IN OUT.glb --compress meshopt
                                                           --texture-compress webp
  gt default            gltf-transform optimize IN OUT.glb

(the peers from node_modules/.bin, installed by `npm ci`), and measures each output the same
way: bytes raw and gzip -9, the ratio of its gzip size to the smallest peer's, wall time,
triangles (tourserver.ingest.inspect.scene_stats), texture PSNR against the source, geometric
error against the source, Khronos validator errors/warnings, and what it dropped (node names,
extras, animations, skins, morph targets, extensions, custom attributes, point primitives).
How each figure is taken is in tools/bench/peers.py. Outputs with EXT_meshopt_compression
are decoded with the meshoptimizer library's decoders before they are read.

A generated `FeatureProbe` GLB (tools/bench/peers.py) adds what the corpus lacks: extras,
a morph target with its animation, a custom attribute on triangles, points beside triangles.

At equal texture PSNR (on unless --no-equal-psnr): for every model with images, glTF-Transform
is rerun at rising WebP quality until its worst-slot texture PSNR reaches ours (see
`equal_psnr`); `gt meshopt+webp` is the same pipeline at its default quality, 80.

Then a ~1M-triangle wavy grid is simplified to 10% by ours (--simplify 0.1; its JSON report
times the simplify step alone) and by `gltfpack -si 0.1` (wall time; also the wall time of
gltfpack without -si, so the difference estimates its simplification).

The package is byte-compiled first (as `pip install` does), so no run of ours pays for
compiling its own modules.

Local files only; every subprocess is bounded by --timeout; temporary files are removed
(outputs are kept only with --out). With --json the last stdout line is one JSON object.
Geometric error needs `rtree` (trimesh's proximity queries): `pip install rtree`.
"""

from __future__ import annotations

import argparse
import compileall
import datetime as dt
import gzip
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
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import peers  # noqa: E402  (tools/bench is not a package)
from common import cpu_model, grid_glb  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT.parent / "shared" / "corpus"
BIN = ROOT / "node_modules" / ".bin"
OURS = "ours"
BIG_TRIANGLES = 1_000_000
PROBE = "FeatureProbe"


def tools(in_path: Path, out_path: Path) -> dict[str, list[str]]:
    i, o = str(in_path), str(out_path)
    gp, gt = str(BIN / "gltfpack"), str(BIN / "gltf-transform")
    return {
        OURS: [sys.executable, "-m", "tourserver", "optimize", i, "-o", o, "--preset", "phone",
               "--json"],
        "gltfpack -cc": [gp, "-i", i, "-o", o, "-cc"],
        "gltfpack -cc -si 0.5": [gp, "-i", i, "-o", o, "-cc", "-si", "0.5"],
        "gt meshopt+webp": [gt, "optimize", i, o, "--compress", "meshopt",
                            "--texture-compress", "webp"],
        "gt default": [gt, "optimize", i, o],
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


class Source:
    """The input, loaded once: its document, geometry, trimesh and decoded images."""

    def __init__(self, path: Path) -> None:

        from tourserver.gltf.document import write_glb
        from tourserver.ingest.inspect import scene_stats
        from tourserver.ingest.loaders import load_asset

        self.path = path
        self.doc = load_asset(path)
        glb = write_glb(self.doc)  # self-contained size: .gltf + .bin + images as one GLB
        self.bytes = len(glb)
        self.gzip_bytes = len(gzip.compress(glb, 9, mtime=0))
        self.stats = scene_stats(self.doc)
        self.geometry = peers.world_geometry(self.doc)
        self.mesh = peers.canonical_mesh(self.geometry) if len(self.geometry.faces) else None
        self.images: dict = {}


def measure_output(src: Source, out: Path, work: Path, samples: int) -> dict:
    """Every figure for one output file."""
    from tourserver.ingest.inspect import scene_stats
    from tourserver.ingest.loaders import load_asset
    from tourserver.ingest.validator import ValidatorUnavailable, validate_file

    data = out.read_bytes()
    row: dict = {"bytes": len(data), "gzip_bytes": len(gzip.compress(data, 9, mtime=0))}
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
               draw_calls=stats.draw_calls, max_texture_px=stats.max_texture_px)
    tex = peers.texture_psnr(src.doc, doc, src.images)
    row["psnr"] = tex
    geometry = peers.world_geometry(doc)
    # scene_stats counts mesh x node; EXT_mesh_gpu_instancing instances are drawn too
    row["rendered_triangles"] = int(len(geometry.faces))
    geo = None
    try:
        geo = peers.geometric_error(src.geometry, geometry, samples, src_mesh=src.mesh)
    except ImportError as exc:
        row["geo_error_note"] = f"{exc} (pip install rtree)"
    row["geo"] = geo
    row["dropped"] = peers.dropped(src.doc.json, doc.json)
    return row


def bench_model(path: Path, work: Path, keep: Path | None, timeout: float,
                samples: int, equal: bool = True) -> dict:
    src = Source(path)
    name = path.parent.name
    result = {"model": name, "file": str(path.relative_to(path.parents[1])),
              "input": {"bytes": src.bytes, "gzip_bytes": src.gzip_bytes,
                        "triangles": src.stats.triangles,
                        "points": int(len(src.geometry.points)),
                        "draw_calls": src.stats.draw_calls,
                        "max_texture_px": src.stats.max_texture_px}, "tools": {}}
    try:
        from tourserver.ingest.validator import validate_file

        v = validate_file(path)
        result["input"]["validator"] = {"errors": v.errors, "warnings": v.warnings}
    except Exception as exc:  # the validator is optional for the bench
        result["input"]["validator"] = {"error": str(exc)[:200]}
    folder = (keep / name) if keep else work / name
    folder.mkdir(parents=True, exist_ok=True)
    for tool in tools(path, Path("x")):
        out = folder / (re.sub(r"[^a-z0-9.]+", "-", tool.lower()).strip("-") + ".glb")
        out.unlink(missing_ok=True)
        cmd = tools(path, out)[tool]
        if tool != OURS and not Path(cmd[0]).exists():
            result["tools"][tool] = {"status": "unavailable",
                                     "error": f"{cmd[0]} missing: run npm ci"}
            continue
        proc = run(cmd, timeout, work)
        row = {k: v for k, v in proc.items() if k not in ("stdout", "stderr")}
        if tool == OURS:
            report = _last_json(proc.get("stdout", ""))
            if proc.get("exit") == 3:
                row["status"] = "ok"
                row["note"] = "over the phone budget (exit 3)"
            if report and report.get("schema") == "tourserver.optimize/1":
                row["timings_s"] = report.get("timings_s", {})
                row["facts"] = report.get("facts", {})
        if row["status"] != "ok" or not out.is_file():
            if row["status"] == "ok":
                row["status"] = "failed"
            row["error"] = row.get("error") or _tail(proc.get("stderr", "") or
                                                     proc.get("stdout", ""))
            result["tools"][tool] = row
            continue
        row.update(measure_output(src, out, work, samples))
        result["tools"][tool] = row
    peers_gz = [r["gzip_bytes"] for t, r in result["tools"].items()
                if t != OURS and "gzip_bytes" in r]
    best = min(peers_gz) if peers_gz else None
    for row in result["tools"].values():
        if best and "gzip_bytes" in row:
            row["ratio_best_peer"] = round(row["gzip_bytes"] / best, 3)
    ours = result["tools"].get(OURS, {})
    target = (ours.get("psnr") or {}).get("min")
    if equal and src.doc.json.get("images") and target is not None:
        print(f"… {name}: glTF-Transform at ours' worst-slot PSNR {target:.1f} dB",
              file=sys.stderr, flush=True)
        eq = equal_psnr(src, target, folder, work, timeout)
        if eq.get("gzip_bytes") and ours.get("gzip_bytes"):
            eq["ours_gzip_bytes"] = ours["gzip_bytes"]
            eq["ratio_ours"] = round(ours["gzip_bytes"] / eq["gzip_bytes"], 3)
        result["equal_psnr"] = eq
    return result


# ---- the comparison: the best peer output at equal quality ------------------------
# A peer output is comparable when its worst texture slot is at least ours (lossless counts
# as infinite; ours' own rounding gets 0.05 dB) and its geometric error is at most
# GEO_TOLERANCE x ours (the error is a sampled maximum: ~10 % noise between runs) or under
# GEO_NEGLIGIBLE of the diagonal (quantization noise). Peers that draw fewer triangles at
# 2-250x our error (gltfpack -si 0.5) or lose texture quality are left out;
# peers with less error are kept even when ours simplified to fit the phone budget. The
# equal-PSNR glTF-Transform run counts with the geometry of `gt meshopt+webp` (same
# geometry steps; only the WebP settings differ). A peer that dropped data (attributes,
# points, morph targets, skins, animations, extensions such as metadata or materials) is
# not comparable; one that dropped only node names or extras still is.
GEO_NEGLIGIBLE = 5e-5
GEO_TOLERANCE = 1.25
DATA_DROPS = ("attribute", "point primitives", "morph", "skins", "animations", "KHR_", "EXT_")


def comparable_peers(res: dict) -> list[tuple[str, int]]:
    """(label, gzip bytes) of every peer output comparable with ours, smallest first."""
    ours = res["tools"].get(OURS, {})
    if "gzip_bytes" not in ours:
        return []
    ours_psnr = (ours.get("psnr") or {}).get("min")
    ours_geo = ours.get("geo") or {}

    def psnr_ok(p: dict | None) -> bool:
        if ours_psnr is None:
            return True
        value = (p or {}).get("min")
        return value is not None and float(value) >= float(ours_psnr) - 0.05

    def geo_ok(g: dict | None) -> bool:
        if not g or not ours_geo:
            return not ours_geo
        if g.get("missing"):
            return False
        return g["rel_max"] <= max(GEO_TOLERANCE * ours_geo["rel_max"], GEO_NEGLIGIBLE)

    def data_kept(r: dict) -> bool:
        return not any(d.startswith(DATA_DROPS) for d in r.get("dropped", []))

    found = [(tool, r["gzip_bytes"]) for tool, r in res["tools"].items()
             if tool != OURS and "gzip_bytes" in r and psnr_ok(r.get("psnr"))
             and geo_ok(r.get("geo")) and data_kept(r)]
    eq = res.get("equal_psnr") or {}
    gt_webp = res["tools"].get("gt meshopt+webp", {})
    if eq.get("status") == "ok" and psnr_ok(eq.get("psnr")) and geo_ok(
            gt_webp.get("geo")) and data_kept(gt_webp):
        found.append((f"gt {eq['quality']}", eq["gzip_bytes"]))
    return sorted(found, key=lambda item: item[1])


def summary_table(results: list[dict]) -> str:
    """The issue's targets per model: bytes against the best comparable peer, and wall time
    against glTF-Transform."""
    lines = ["**Against the best comparable peer** (equal or better texture PSNR, geometric "
             f"error at most {GEO_TOLERANCE}x ours or negligible, no data dropped; see "
             "`comparable_peers`); last column: against the smallest peer output whatever "
             "its quality", "",
             "| model | ours gzip KB | best comparable peer | its gzip KB | ours ÷ it | "
             "ours s | gt meshopt+webp s | gt default s | ours ÷ smallest peer |",
             "|---|--:|---|--:|--:|--:|--:|--:|--:|"]
    for res in results:
        ours = res["tools"].get(OURS, {})
        peers_ = comparable_peers(res)
        label, size = peers_[0] if peers_ else ("none comparable", None)
        ratio = round(ours["gzip_bytes"] / size, 3) if size and "gzip_bytes" in ours else "–"
        res["comparable"] = {"peer": label, "gzip_bytes": size, "ratio_ours": ratio}
        lines.append(
            f"| {res['model']} | {_fmt_kb(ours.get('gzip_bytes'))} | {label} | "
            f"{_fmt_kb(size)} | {ratio} | {ours.get('wall_s', '–')} | "
            f"{res['tools'].get('gt meshopt+webp', {}).get('wall_s', '–')} | "
            f"{res['tools'].get('gt default', {}).get('wall_s', '–')} | "
            f"{ours.get('ratio_best_peer', '–')} |")
    return "\n".join(lines)


# ---- glTF-Transform at equal texture PSNR ------------------------------------------------
# `optimize --texture-compress webp` has no quality option, so the same pipeline is run in
# three steps: optimize without textures or compression, `webp --quality Q`, then `meshopt`
# (what `optimize --compress meshopt` runs last, same defaults). At Q 80, sharp's default,
# this gives `gt meshopt+webp`'s output within a few bytes (DamagedHelmet: 1,398,641 vs
# 1,398,639 gzip bytes). Textures here are at most 2048 px, so optimize's --texture-size
# 2048 resize, skipped with --texture-compress false, would not change them.
# The sweep is bounded (at most 10 steps, each smaller-first within its mode): lossy Q 80 →
# 100; lossy WebP is 4:2:0 and levels off a few dB above Q 80, so then near-lossless (where
# the "quality" is libwebp's preprocessing level: 5 - Q // 20 low bits may change, so 1-19,
# 20-39, ... behave alike and 100 is lossless; sharp takes 1-100), then lossless.
EQUAL_PSNR_STEPS: tuple[tuple[str, list[str]], ...] = (
    ("webp q80", ["--quality", "80"]),
    ("webp q90", ["--quality", "90"]),
    ("webp q95", ["--quality", "95"]),
    ("webp q100", ["--quality", "100"]),
    ("webp near-lossless q1", ["--near-lossless", "true", "--quality", "1"]),
    ("webp near-lossless q20", ["--near-lossless", "true", "--quality", "20"]),
    ("webp near-lossless q40", ["--near-lossless", "true", "--quality", "40"]),
    ("webp near-lossless q60", ["--near-lossless", "true", "--quality", "60"]),
    ("webp near-lossless q80", ["--near-lossless", "true", "--quality", "80"]),
    ("webp lossless", ["--lossless", "true"]),
)


def equal_psnr(src: Source, target: float, folder: Path, work: Path, timeout: float) -> dict:
    """glTF-Transform (meshopt + WebP) at the first quality of EQUAL_PSNR_STEPS whose
    worst-slot texture PSNR (peers.texture_psnr "min", as in the PSNR column) is >= `target`,
    ours' worst slot. Returns that output's gzip bytes, quality, PSNR and every step tried."""
    from tourserver.ingest.loaders import load_asset

    gt = str(BIN / "gltf-transform")
    if not Path(gt).exists():
        return {"status": "unavailable", "error": f"{gt} missing: run npm ci"}
    base, webp = folder / "gt-eq-base.glb", work / "gt-eq-webp.glb"
    proc = run([gt, "optimize", str(src.path), str(base), "--compress", "false",
                "--texture-compress", "false"], timeout, work)
    if proc["status"] != "ok" or not base.is_file():
        return {"status": "failed", "error": proc.get("error") or _tail(proc.get("stderr", ""))}
    # Its time at that quality: the three commands' wall times (three Node start-ups,
    # ~0.3 s each; optimize offers no WebP quality setting to do it in one).
    result: dict = {"target_psnr": target, "tried": [], "status": "not reached",
                    "base_wall_s": proc.get("wall_s", 0.0)}
    for label, opts in EQUAL_PSNR_STEPS:
        out = folder / (re.sub(r"[^a-z0-9]+", "-", f"gt-eq-{label}") + ".glb")
        steps = [[gt, "webp", str(base), str(webp), *opts], [gt, "meshopt", str(webp), str(out)]]
        wall, failed = 0.0, None
        for cmd in steps:
            proc = run(cmd, timeout, work)
            wall += proc.get("wall_s", 0.0)
            if proc["status"] != "ok":
                failed = proc.get("error") or _tail(proc.get("stderr", ""))
                break
        if failed or not out.is_file():
            result["tried"].append({"quality": label, "status": "failed", "error": failed})
            continue
        data = out.read_bytes()
        decoded = work / "decoded.glb"
        decoded.write_bytes(peers.decode_meshopt_glb(data))
        tex = peers.texture_psnr(src.doc, load_asset(decoded), src.images)
        step = {"quality": label, "bytes": len(data),
                "gzip_bytes": len(gzip.compress(data, 9, mtime=0)),
                "wall_s": round(wall, 3), "psnr": tex}
        result["tried"].append(step)
        if tex.get("min") is not None and tex["min"] >= target:
            result.update(status="ok", **{k: step[k] for k in ("quality", "bytes",
                                                               "gzip_bytes", "psnr")},
                          wall_s=round(result["base_wall_s"] + wall, 3))
            break
    return result


# ---- the 1M-triangle simplification ---------------------------------------------------------
def big_mesh_glb(triangles: int = BIG_TRIANGLES) -> bytes:
    """A wavy 100 m square grid with small seeded noise: ~`triangles` triangles, no textures."""
    import numpy as np

    n = int(round((triangles / 2) ** 0.5)) + 1
    xs, zs = np.meshgrid(np.linspace(-50, 50, n), np.linspace(-50, 50, n))
    rng = np.random.default_rng(7)
    ys = 3 * np.sin(xs / 7) * np.cos(zs / 9) + rng.normal(0, 0.005, xs.shape)
    return grid_glb(xs, ys, zs)


def bench_big(work: Path, timeout: float, samples: int) -> dict:
    path = work / "grid1m.glb"
    path.write_bytes(big_mesh_glb())
    src = Source(path)
    result: dict = {"input": {"bytes": src.bytes, "triangles": src.stats.triangles}, "tools": {}}
    runs = {
        OURS: [sys.executable, "-m", "tourserver", "optimize", str(path), "-o",
               str(work / "ours.glb"), "--preset", "phone", "--simplify", "0.1", "--json"],
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
    cpu = cpu_model()

    def version(cmd: list[str]) -> str:
        try:
            p = subprocess.run(cmd, capture_output=True, timeout=60, check=False)
            return _tail((p.stdout + p.stderr).decode(errors="replace"), 80)
        except (OSError, subprocess.TimeoutExpired):
            return "unavailable"

    return {"date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "platform": platform.platform(), "cpu": cpu, "cores": os.cpu_count(),
            "python": platform.python_version(), "node": version(["node", "--version"]),
            "gltfpack": version([str(BIN / "gltfpack"), "-v"]),
            "gltf-transform": version([str(BIN / "gltf-transform"), "--version"])}


def _fmt_kb(n: int | None) -> str:
    return "–" if n is None else f"{n / 1024:,.0f}"


def _fmt_psnr(p: dict | None) -> str:
    if not p or p.get("min") is None:
        return "n/a (KTX2)" if p and p.get("ktx2") else "–"
    lo, mean = p["min"], p["mean"]
    text = "lossless" if lo == float("inf") else (
        f"{lo:.1f} / {mean:.1f}" if mean != float("inf") else f"{lo:.1f}")
    return text + (f" (+{p['ktx2']} KTX2)" if p.get("ktx2") else "")


def _fmt_geo(g: dict | None) -> str:
    if not g:
        return "–"
    text = f"{g['max']:.3g} ({g['rel_max'] * 100:.3f}%)"
    if "triangles" in g and "points" in g:
        text += f"; points {g['points']['max']:.3g}"
    return text + "".join(f"; no {k}" for k in g.get("missing", []))


def model_table(res: dict) -> str:
    inp = res["input"]
    v = inp.get("validator", {})
    lines = [f"**{res['model']}** (`{res['file']}`): input {_fmt_kb(inp['bytes'])} KB "
             f"(gzip {_fmt_kb(inp['gzip_bytes'])} KB), {inp['triangles']:,} triangles"
             + (f", {inp['points']:,} points" if inp["points"] else "")
             + f", validator {v.get('errors', '?')} E / {v.get('warnings', '?')} W", "",
             "| tool | KB | gzip KB | vs best peer | time s | triangles drawn | PSNR min/mean dB | "
             "geo max (of diag) | validator E/W | dropped |",
             "|---|--:|--:|--:|--:|--:|---|---|---|---|"]
    for tool, r in res["tools"].items():
        if "bytes" not in r:
            lines.append(f"| {tool} | {r['status']}: {r.get('error', '')[-120:]} "
                         "| | | | | | | | |")
            continue
        val = r.get("validator", {})
        valtxt = (f"{val['errors']}/{val['warnings']}" if "errors" in val else "?")
        if val.get("codes"):
            valtxt += " " + ", ".join(f"{c}×{n}" if n > 1 else c
                                      for c, n in sorted(val["codes"].items()))
        tris = r.get("rendered_triangles")
        if not tris and r.get("points"):
            tris = f"{r['points']:,} pts"
        elif tris is not None:
            tris = f"{tris:,}" + ("" if tris == r["triangles"] else
                                  f" ({r['triangles']:,} in scene_stats)")
        lines.append(
            f"| {tool} | {_fmt_kb(r['bytes'])} | {_fmt_kb(r['gzip_bytes'])} | "
            f"{r.get('ratio_best_peer', '–')} | {r.get('wall_s', '–')} | "
            f"{'–' if tris is None else tris} | {_fmt_psnr(r.get('psnr'))} | "
            f"{_fmt_geo(r.get('geo'))} | {valtxt} | "
            f"{', '.join(r.get('dropped', [])) or r.get('read_error', 'nothing listed')} |")
    return "\n".join(lines)


def equal_psnr_table(results: list[dict]) -> str:
    """One row per textured model: glTF-Transform at ours' worst-slot PSNR."""
    lines = ["**At equal texture PSNR**: glTF-Transform (meshopt + WebP) at the first quality "
             "whose worst-slot PSNR reaches ours", "",
             "| model | ours gzip KB | ours PSNR min dB | gt quality | gt gzip KB | "
             "gt PSNR min dB | ours ÷ gt | ours s | gt s | tried (quality: min dB) |",
             "|---|--:|--:|---|--:|--:|--:|--:|--:|---|"]
    for res in results:
        eq = res.get("equal_psnr")
        if not eq:
            continue
        tried = ", ".join(
            f"{t['quality'].removeprefix('webp ')}: "
            + (_fmt_psnr(t["psnr"]).split(" /")[0] if "psnr" in t else t["status"])
            for t in eq.get("tried", []))
        ours = res["tools"][OURS]
        gt_psnr = _fmt_psnr(eq["psnr"]).split(" /")[0] if "psnr" in eq else eq["status"]
        lines.append(
            f"| {res['model']} | {_fmt_kb(ours.get('gzip_bytes'))} | "
            f"{_fmt_psnr(ours.get('psnr')).split(' /')[0]} | {eq.get('quality', '–')} | "
            f"{_fmt_kb(eq.get('gzip_bytes'))} | {gt_psnr} | {eq.get('ratio_ours', '–')} | "
            f"{ours.get('wall_s', '–')} | {eq.get('wall_s', '–')} | "
            f"{tried or eq.get('error', '')} |")
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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--json", action="store_true", help="last stdout line: one JSON object")
    p.add_argument("--models", help="comma-separated folder names (default: all)")
    p.add_argument("--out", type=Path, help="keep the outputs here (default: a temp dir)")
    p.add_argument("--corpus", type=Path, default=CORPUS)
    p.add_argument("--samples", type=int, default=20000, help="surface samples per side")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds per subprocess")
    p.add_argument("--no-big", action="store_true", help="skip the 1M-triangle run")
    p.add_argument("--equal-psnr", action=argparse.BooleanOptionalAction, default=True,
                   help="rerun glTF-Transform at rising WebP quality until its worst-slot "
                        "texture PSNR reaches ours (textured models only; default: on)")
    p.add_argument("--no-probe", action="store_true",
                   help="skip the generated feature probe (extras, morph targets, ...)")
    args = p.parse_args(argv)

    models = corpus_models(args.corpus)
    probe = not args.no_probe
    if args.models:
        wanted = {m.strip().lower() for m in args.models.split(",") if m.strip()}
        models = [m for m in models if m.parent.name.lower() in wanted or m.stem.lower()
                  in wanted]
        probe = probe and PROBE.lower() in wanted
        if not models and not probe:
            print(f"error: no corpus model matches {args.models}", file=sys.stderr)
            return 2
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
    # Byte-compile the package first, as `pip install` does: with PYTHONDONTWRITEBYTECODE
    # set (as on these machines) every run would otherwise compile ~100 modules again.
    compileall.compile_dir(str(ROOT / "tourserver"), quiet=1)
    info = machine()
    results, big = [], None
    work = Path(tempfile.mkdtemp(prefix="compare-peers-"))
    try:
        if probe:  # generated: the features the corpus lacks (see peers.feature_probe_glb)
            (work / "generated" / PROBE).mkdir(parents=True)
            models.append(work / "generated" / PROBE / f"{PROBE}.glb")
            models[-1].write_bytes(peers.feature_probe_glb())
        for path in models:
            print(f"… {path.parent.name}", file=sys.stderr, flush=True)
            res = bench_model(path, work, args.out, args.timeout, args.samples,
                              args.equal_psnr)
            results.append(res)
            if not args.json:
                print(model_table(res) + "\n", flush=True)
        if not args.json and any(r.get("equal_psnr") for r in results):
            print(equal_psnr_table(results) + "\n", flush=True)
        if not args.json:
            print(summary_table(results) + "\n", flush=True)
        if not args.no_big:
            print("… 1M-triangle grid", file=sys.stderr, flush=True)
            big = bench_big(work, args.timeout, args.samples)
            if not args.json:
                print(big_table(big) + "\n", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        for res in results:
            print(model_table(res) + "\n")
        if any(r.get("equal_psnr") for r in results):
            print(equal_psnr_table(results) + "\n")
        print(summary_table(results) + "\n")  # also fills each result's "comparable"
        if big:
            print(big_table(big) + "\n")
        print(json.dumps(_finite({"schema": "tourserver.compare_peers/1", "machine": info,
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
        return float(value)  # numpy scalars
    except (TypeError, ValueError):
        return str(value)


if __name__ == "__main__":
    sys.exit(main())
