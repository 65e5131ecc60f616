"""Plain-text renderings of reports for the terminal. Pure functions: strings in, strings out."""

from __future__ import annotations

import os
import sys

from tourserver.pipeline.report import OptimizeReport


def use_color(stream=sys.stdout) -> bool:
    return stream.isatty() and "NO_COLOR" not in os.environ


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    return f"{n:.2f} GB"


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    for r in rows:
        out.append("  ".join(str(c).rjust(w) if str(c)[:1].isdigit() or str(c)[:1] in "-+"
                             else str(c).ljust(w) for c, w in zip(r, widths, strict=True)))
    return "\n".join(out)


def _delta(before: float, after: float) -> str:
    if not before:
        return ""
    return f"{(after - before) / before * 100:+.1f}%"


def optimize_report(report: OptimizeReport) -> str:
    b, a = report.before, report.after
    fields = [("size", "bytes", human_bytes), ("triangles", "triangles", "{:,}".format),
              ("vertices", "vertices", "{:,}".format), ("draw calls", "draw_calls", str),
              ("materials", "materials", str), ("textures", "textures", str),
              ("largest texture", "max_texture_px", lambda v: f"{v} px"),
              ("GPU memory (est.)", "gpu_bytes", human_bytes)]
    rows = []
    for label, key, fmt in fields:
        before = getattr(b, key)
        if a is None:
            rows.append([label, fmt(before), "", ""])
        else:
            after = getattr(a, key)
            rows.append([label, fmt(before), fmt(after), _delta(before, after)])
    parts = [f"{report.input} -> {report.output or '(dry run)'}  [preset {report.preset}]",
             table(rows, ["", "before", "after", "change"])]
    if a is not None:
        parts.append("extensions required: " + (", ".join(a.extensions_required) or "none"))
    # Names only: every step's settings are in the --json report ("steps").
    steps = [[s.split("(")[0], f"{report.timings_s.get(s.split('(')[0], 0.0) * 1000:.0f} ms"
              if report.timings_s else "planned"] for s in report.steps]
    parts.append(table(steps, ["step", "time"]))
    facts = {k: v for k, v in report.facts.items() if not k.startswith("_")}
    if facts:
        parts.append("facts: " + ", ".join(f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v}"
                                           for k, v in sorted(facts.items())))
    for issue in report.issues:
        parts.append(f"problem: {issue}")
    return "\n\n".join(parts)


def inspect_report(info: dict) -> str:
    s = info["summary"]
    parts = [f"{s['triangles']:,} triangles, {s['vertices']:,} vertices, {s['draw_calls']} "
             f"draw calls, {s['nodes']} nodes, largest texture {s['max_texture_px']} px"]
    if info["scenes"]:
        parts.append(table([[x["index"], x["name"], x["root_nodes"]] for x in info["scenes"]],
                           ["scene", "name", "root nodes"]))
    if info["meshes"]:
        parts.append(table([[m["index"], m["name"][:30], m["primitives"], m["instances"],
                             f"{m['vertices']:,}", f"{m['triangles']:,}",
                             ",".join(map(str, m["modes"])), m["morph_targets"],
                             human_bytes(m["data_bytes"])] for m in info["meshes"]],
                           ["mesh", "name", "prims", "instances", "vertices", "triangles",
                            "modes", "targets", "size"]))
    if info["materials"]:
        parts.append(table([[m["index"], m["name"][:30], m["alpha_mode"], m["textures"],
                             ",".join(m["extensions"]) or "-"] for m in info["materials"]],
                           ["material", "name", "alpha", "textures", "extensions"]))
    if info["textures"]:
        parts.append(table([[t["texture"], t["image"], t["mime"], f"{t['width']}x{t['height']}",
                             human_bytes(t["bytes"]), ";".join(t["slots"])[:60] or "-"]
                            for t in info["textures"]],
                           ["texture", "image", "type", "size", "bytes", "used by"]))
    if info["animations"]:
        parts.append(table([[a["index"], a["name"][:30], a["channels"], a["samplers"],
                             f"{a['duration_s']} s"] for a in info["animations"]],
                           ["animation", "name", "channels", "samplers", "duration"]))
    parts.append(f"skins: {info['skins']}")
    parts.append("extensions used: " + (", ".join(info["extensions_used"]) or "none"))
    parts.append("extensions required: " + (", ".join(info["extensions_required"]) or "none"))
    return "\n\n".join(parts)
