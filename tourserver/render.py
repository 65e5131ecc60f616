"""Plain-text renderings of reports for the terminal. Pure functions: strings in, strings out."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

from tourserver.errors import Issue
from tourserver.pipeline.report import OptimizeReport

# ANSI styles, used only when use_color() says the stream is a terminal that wants them.
BOLD, RED, YELLOW, DIM, RESET = "\033[1m", "\033[31m", "\033[33m", "\033[2m", "\033[0m"


def use_color(stream=sys.stdout) -> bool:
    # https://no-color.org: any value, even empty, turns colour off.
    return stream.isatty() and "NO_COLOR" not in os.environ


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def count_issues(issues: Iterable[Issue]) -> tuple[int, int]:
    """(errors, warnings)."""
    issues = list(issues)
    errors = sum(1 for i in issues if i.is_error)
    return errors, len(issues) - errors


def display_path(file: str | None, root: Path | None) -> str:
    """A file as a creator knows it: relative to the content root when inside it, so the
    same tour reads the same from any working directory."""
    if not file:
        return "(no file)"
    if root is not None:
        try:
            return Path(file).resolve().relative_to(root.resolve()).as_posix()
        except ValueError:
            pass
    return file


_STOP_PREFIX = re.compile(r"^/stops/\d+(?=/|$)")


def _where(issue: Issue) -> str:
    """line, stop id and field: `line 12  stop mini-a  anchor/lat`. A stop named by its id
    needs no /stops/N prefix on its field."""
    parts = []
    if issue.line:
        parts.append(f"line {issue.line}")
    field = issue.field
    if issue.stop:
        parts.append(f"stop {issue.stop}")
        if field:
            field = _STOP_PREFIX.sub("", field).lstrip("/")
    if field:
        parts.append(field)
    return "  ".join(parts)


def issues_report(issues: list[Issue], root: Path | None = None, color: bool = False) -> str:
    """Issues grouped by file: each file once as a header, then one line per issue (label,
    line, stop, field, message, code) and its fix on the next line. No summary line."""
    def paint(text: str, style: str) -> str:
        return f"{style}{text}{RESET}" if color else text

    groups: dict[str, list[Issue]] = {}
    for issue in issues:
        groups.setdefault(display_path(issue.file, root), []).append(issue)
    out = []
    for file, group in groups.items():
        out.append(paint(file, BOLD))
        # Stable: by line where there is one, issues without a line after those with one.
        for issue in sorted(group, key=lambda i: (i.line is None, i.line or 0)):
            label = "error" if issue.is_error else "warning"
            styled = paint(f"{label:<8}", RED if issue.is_error else YELLOW)
            where = _where(issue)
            out.append(f"  {styled} {where + ': ' if where else ''}{issue.message} "
                       f"[{issue.code}]")
            if issue.hint:
                out.append(" " * 11 + paint(f"fix: {issue.hint}", DIM))
    return "\n".join(out)


def progress_line(done: int, total: int, label: str, width: int = 79) -> str:
    """One line to redraw in place (with \\r): `[3/18] scene-id high`, cut to the width."""
    text = f"[{done}/{total}] {label}"
    return text[:width].ljust(width)


def build_table(variants: Iterable) -> str:
    """The variants a build made or reused: tour, scene, tier, triangles, size, new/reused."""
    rows = [[v.tour, v.scene, v.tier, f"{v.triangles:,}", human_bytes(v.bytes),
             "reused" if v.reused else "new"] for v in variants]
    return table(rows, ["tour", "scene", "tier", "triangles", "size", "new/reused"])


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
    fields: list[tuple[str, str, Callable[[int], str]]] = [
        ("size", "bytes", human_bytes), ("triangles", "triangles", "{:,}".format),
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
    if report.textures:
        parts.append(table([[t["image"], (t.get("name") or "")[:28], t.get("mime", ""),
                             human_bytes(t.get("bytes_before", 0)),
                             human_bytes(t.get("bytes_after", 0)), t["setting"],
                             _score(t)] for t in report.textures],
                           ["image", "name", "type", "before", "after", "setting", "quality"]))
    # Per-image facts are in the table above.
    facts = {k: v for k, v in report.facts.items()
             if not k.startswith(("_", "texture_encode.image."))}
    if facts:
        parts.append("facts: " + ", ".join(f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v}"
                                           for k, v in sorted(facts.items())))
    for issue in report.issues:
        parts.append(f"problem: {issue}")
    return "\n\n".join(parts)


def _score(row: dict) -> str:
    metric, score = row.get("metric"), row.get("score")
    if metric is None or score is None:
        return "-"
    from tourserver.pipeline.textures.quality import describe_reported  # numpy: on use

    return describe_reported(metric, score)


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
    # Every extension the file uses, and whether a client must support it to open the file.
    required = set(info["extensions_required"])
    extensions = sorted(set(info["extensions_used"]) | required)
    if extensions:
        parts.append(table([[e, "required" if e in required else "optional"]
                            for e in extensions], ["extension", "client support"]))
    else:
        parts.append("extensions: none")
    return "\n\n".join(parts)
