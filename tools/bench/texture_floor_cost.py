"""How fast our optimiser could be at its own output: a lower bound on its wall time.

    python tools/bench/texture_floor_cost.py [--models NAME,...] [--runs N] [--json]

For each corpus model with textures it measures, in one run:

  ours      python -m tourserver optimize IN -o OUT.glb --preset phone --json (wall, median
            of --runs), and from its report the time outside texture-encode
  gt        gltf-transform optimize IN OUT.glb --compress meshopt --texture-compress webp
            (wall, median of --runs)
  final     CPU seconds of only the last encode of each texture, with the setting ours
            chose (its quality, posterize step, near-lossless level, palette or MozJPEG
            recode), from the decoded source pixels; checked to give the same bytes. No
            search, no measuring, and images ours keeps as they were count as nothing.
  measure   CPU seconds of decoding each of those outputs and measuring its PSNR against
            the source once: what holding a floor costs at the least, the setting known.

and reports `bound = ours outside textures + final / CPUs` (what ours would take if every
texture's setting were known in advance and the encodes spread perfectly over the CPUs;
the geometry steps ours runs beside the encodes count as sharing the CPUs with them)
and `verified = bound + measure / CPUs` (the same, each output checked once). Where
`bound / gt` is over 1, no cheaper search can meet "wall time at most glTF-Transform's"
at these bytes; where `verified / gt` is, not while each texture's floor is checked.
Only a different encoding can then (a lower libwebp effort, lossy data textures, a lower
floor).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from compare_peers import BIN, CORPUS, _last_json, corpus_models, run  # noqa: E402
from PIL import Image  # noqa: E402

from tourserver.ingest.images import decode_image, rgba_pixels  # noqa: E402
from tourserver.ingest.loaders import load_asset  # noqa: E402
from tourserver.pipeline.base import Context  # noqa: E402
from tourserver.pipeline.optimize import OptimizeOptions, plan  # noqa: E402
from tourserver.pipeline.textures import webp as webp_encode  # noqa: E402
from tourserver.pipeline.textures.encode import TextureEncode  # noqa: E402
from tourserver.pipeline.textures.jpeg_png import jpeg_lossless_recode  # noqa: E402
from tourserver.pipeline.textures.search import Encoded, measure  # noqa: E402
from tourserver.pipeline.textures.slots import fill_unread, image_channels, image_roles  # noqa: E402


def final_encoder(data: bytes, channels: str, result: Encoded, opts: webp_encode.WebpOptions):
    """A function that redoes, from `data` (decoded as `TextureEncode` decodes it), only the
    encode that made `result`; None when `result` is not one this can redo. The caller
    checks that it gives the same bytes."""
    if result.mime == "image/jpeg":
        return lambda: jpeg_lossless_recode(data)
    if result.mime != "image/webp":
        return None

    def source() -> Image.Image:
        with decode_image(data, "bench", opts.max_pixels) as img:
            reference = fill_unread(rgba_pixels(img), channels)
        alpha = bool((reference[..., 3] < 255).any())
        return Image.fromarray(reference, "RGBA").convert("RGBA" if alpha else "RGB")

    redo = webp_encode.redo_encoder(result, source(), opts)
    return None if redo is None else lambda: redo(source())


def final_encodes(path: Path) -> dict:
    """CPU seconds of each texture's last encode, as `final` in the docstring."""
    doc = load_asset(path)
    steps = plan(OptimizeOptions(preset="phone"))
    ctx = Context()
    for step in steps:
        if isinstance(step, TextureEncode):
            encoder = step
            break
        doc = step(doc, ctx)
    else:
        return {"images": [], "cpu_s": 0.0, "measure_cpu_s": 0.0}
    roles, channels = image_roles(doc.json), image_channels(doc.json)
    opts = webp_encode.WebpOptions(encoder.max_quality, encoder.effort, encoder.lossless_effort,
                                   encoder.near_lossless, encoder.max_pixels)
    rows, total, measured = [], 0.0, 0.0
    for i, image in enumerate(doc.json.get("images", [])):
        if encoder.skip_reason(doc.json, i) is not None:
            continue
        data = doc.buffer_view_bytes(image["bufferView"])
        read = channels.get(i, "RGBA")
        result = encoder.encode_image(data, image["mimeType"], roles.get(i, "data"), read,
                                 f"#{i}", None)
        if result is None or len(result.data) >= len(data):
            rows.append({"image": i, "kept": True, "cpu_s": 0.0})
            continue
        redo = final_encoder(data, read, result, opts)
        if redo is None:
            rows.append({"image": i, "error": f"cannot redo {result.mime}"})
            continue
        started = time.process_time()
        again = redo()
        cpu = time.process_time() - started
        with decode_image(data, "bench", opts.max_pixels) as img:
            reference = fill_unread(rgba_pixels(img), read)
        started = time.process_time()
        measure(result.data, reference, "bench", opts.max_pixels)
        check = time.process_time() - started
        rows.append({"image": i, "bytes": len(result.data), "same_bytes": again == result.data,
                     "cpu_s": round(cpu, 3), "measure_cpu_s": round(check, 3)})
        total += cpu
        measured += check
    return {"images": rows, "cpu_s": round(total, 3), "measure_cpu_s": round(measured, 3)}


def timed(cmd: list[str], runs: int, cwd: Path) -> tuple[float | None, list[dict]]:
    results = [run(cmd, 600, cwd) for _ in range(runs)]
    walls = [r["wall_s"] for r in results if r.get("status") == "ok"]
    return (statistics.median(walls) if len(walls) == runs else None), results


def _beside_textures(timings: dict[str, float]) -> float:
    """Seconds of the steps ours runs while the textures are encoded: those after
    texture-resize and before texture-encode (the report lists steps in order)."""
    names = list(timings)
    if "texture-resize" not in names or "texture-encode" not in names:
        return 0.0
    between = names[names.index("texture-resize") + 1:names.index("texture-encode")]
    return sum(timings[name] for name in between)


def bench(path: Path, runs: int, work: Path) -> dict:
    out = work / f"{path.stem}.glb"
    ours_cmd = [sys.executable, "-m", "tourserver", "optimize", str(path), "-o", str(out),
                "--preset", "phone", "--json"]
    gt_cmd = [str(BIN / "gltf-transform"), "optimize", str(path), str(work / "gt.glb"),
              "--compress", "meshopt", "--texture-compress", "webp"]
    ours, ours_runs = timed(ours_cmd, runs, work)
    gt, _ = timed(gt_cmd, runs, work)
    reports = [_last_json(r.get("stdout", "")) or {} for r in ours_runs]
    textures = statistics.median(r.get("timings_s", {}).get("texture-encode", 0.0)
                                 for r in reports)
    beside = statistics.median(_beside_textures(r.get("timings_s", {})) for r in reports)
    final = final_encodes(path)
    cpus = os.cpu_count() or 1
    row = {"model": path.parent.name, "ours_s": ours, "ours_textures_s": round(textures, 3),
           "gt_s": gt, "final_cpu_s": final["cpu_s"], "measure_cpu_s": final["measure_cpu_s"],
           "cpus": cpus, "final": final["images"]}
    if ours is not None and gt:
        # The steps run beside the encodes share the CPUs with them.
        row["bound_s"] = round(ours - textures - beside + (final["cpu_s"] + beside) / cpus, 3)
        row["verified_s"] = round(row["bound_s"] + final["measure_cpu_s"] / cpus, 3)
        row["ours_over_gt"] = round(ours / gt, 3)
        row["bound_over_gt"] = round(row["bound_s"] / gt, 3)
        row["verified_over_gt"] = round(row["verified_s"] / gt, 3)
    return row


def table(rows: list[dict]) -> str:
    lines = ["| model | ours s | of which textures s | final encodes CPU s | measures CPU s "
             "| bound s | verified s | gt s | ours ÷ gt | bound ÷ gt | verified ÷ gt |",
             "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['ours_s']} | {r['ours_textures_s']} | "
                     f"{r['final_cpu_s']} | {r['measure_cpu_s']} | {r.get('bound_s', '–')} | "
                     f"{r.get('verified_s', '–')} | {r['gt_s']} | "
                     f"{r.get('ours_over_gt', '–')} | {r.get('bound_over_gt', '–')} | "
                     f"{r.get('verified_over_gt', '–')} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", help="comma-separated folder names (default: all "
                        "with textures)")
    parser.add_argument("--runs", type=int, default=3, help="timed runs per tool (median)")
    parser.add_argument("--json", action="store_true", help="last stdout line: JSON")
    args = parser.parse_args(argv)
    if not CORPUS.is_dir():
        print(f"error: the corpus is missing at {CORPUS}", file=sys.stderr)
        return 1
    wanted = set(args.models.split(",")) if args.models else None
    rows = []
    with tempfile.TemporaryDirectory(prefix="tourserver-floor-cost-") as tmp:
        for path in corpus_models(CORPUS):
            if wanted is not None and path.parent.name not in wanted:
                continue
            if wanted is None and not load_asset(path).json.get("images"):
                continue
            print(f"{path.parent.name} ...", file=sys.stderr, flush=True)
            rows.append(bench(path, args.runs, Path(tmp)))
    print(table(rows))
    bad = [f"{r['model']} image {f['image']}" for r in rows for f in r["final"]
           if f.get("error") or f.get("same_bytes") is False]
    if bad:
        print(f"\nnot reproduced (their time is not counted): {', '.join(bad)}")
    if args.json:
        print(json.dumps({"schema": "tourserver.bench.floor_cost/1", "models": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
