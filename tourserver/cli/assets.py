"""`tourserver optimize`, `inspect` and `lods`, and `validate` given one 3D asset."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from tourserver.cli import EXIT_INVALID, EXIT_OK, EXIT_OVER_BUDGET, EXIT_USAGE
from tourserver.cli.output import _print_issues, _progress, _say_issues
from tourserver.errors import Issue, TourError

ASSET_SUFFIXES = (".glb", ".gltf", ".obj", ".ply", ".stl")


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("optimize", help="optimise a 3D asset for streaming to a device")
    p.add_argument("input", type=Path, help=".glb, .gltf (with its files), .obj, .ply or .stl")
    p.add_argument("-o", "--output", type=Path, help="output .glb")
    p.add_argument("--preset", default="phone", choices=("phone", "tablet", "headset", "archive"))
    p.add_argument("--simplify", type=float, metavar="RATIO",
                   help="keep this fraction of the triangles (default: only to fit the budget)")
    p.add_argument("--simplify-error", type=float, metavar="SHARE", default=1e-4,
                   help="simplify every mesh as far as an error of SHARE x the scene's "
                   "diagonal allows (default 0.0001: a millimetre on a 10 m building; "
                   "0 turns it off)")
    p.add_argument("--lods", type=int, metavar="N", help="also write N-1 coarser levels "
                   "beside the output (OUT.lod1.glb, ...)")
    p.add_argument("--texture-max", type=int, metavar="PX", help="largest texture edge")
    p.add_argument("--texture-format", choices=("webp", "png", "jpeg", "ktx2", "keep"))
    p.add_argument("--texture-quality", metavar="LEVEL", help="high (the default: visually "
                   "lossless on a phone), very-high, lossless, or an SSIMULACRA2 score 10-100 "
                   "for colour textures")
    p.add_argument("--compress", choices=("meshopt", "none"))
    p.add_argument("--join", choices=("unnamed", "all", "none"), default="unnamed",
                   help="fold sibling parts into one draw per material: unnamed ones (the "
                   "default), all (named ones too: their names move to extras.joined_names, "
                   "so they can no longer be found as nodes) or none")
    p.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
    p.add_argument("--dry-run", action="store_true", help="check and plan, write nothing")
    p.add_argument("--quiet", action="store_true", help="no progress and no table")
    p.set_defaults(func=cmd_optimize)

    p = sub.add_parser("inspect", help="tables of what a 3D asset holds and what it costs")
    p.add_argument("input", type=Path)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("lods", help="a chain of levels of detail with their geometric error")
    p.add_argument("input", type=Path)
    p.add_argument("-o", "--output", type=Path, required=True, help="output folder")
    p.add_argument("--levels", type=int, default=4)
    p.add_argument("--preset", default="phone", choices=("phone", "tablet", "headset", "archive"))
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_lods)


def _asset_issue(exc: TourError, path: Path) -> Issue:
    """A loader error as an Issue on its file; the loader's messages start with the file's
    name, which the Issue already carries."""
    message = exc.message.removeprefix(f"{path}: ")
    return Issue(exc.code, message, str(path), exc.field, hint=getattr(exc, "hint", None))


def _validate_asset(path: Path, args: argparse.Namespace) -> int:
    """Structural checks, the preset's budgets, and the Khronos validator where available."""
    from tourserver.gltf.document import write_glb
    from tourserver.ingest.checks import BUDGETS, budget_issues, structural_issues
    from tourserver.ingest.loaders import load_asset
    from tourserver.ingest.validator import ValidatorUnavailable, validate_file

    try:
        doc = load_asset(path)
    except TourError as exc:
        _print_issues([_asset_issue(exc, path)], args.json)
        return EXIT_INVALID
    issues = structural_issues(doc, str(path))
    size = path.stat().st_size if path.suffix.lower() == ".glb" else len(write_glb(doc))
    over = budget_issues(doc, size, BUDGETS[args.preset], str(path))
    khronos: dict = {"available": False}
    if path.suffix.lower() in (".glb", ".gltf"):
        try:
            report = validate_file(path)
            khronos = {"available": True, "errors": report.errors, "warnings": report.warnings,
                       "messages": report.messages[:50]}
            for m in report.messages:
                if m.get("severity") == 0:
                    issues.append(Issue(f"khronos:{m['code']}", m["message"], str(path),
                                        m.get("pointer")))
        except ValidatorUnavailable as exc:
            khronos["reason"] = str(exc)
    if args.json:
        print(json.dumps({"ok": not issues and not over, "issues": [i.to_json() for i in issues],
                          "over_budget": [i.to_json() for i in over], "preset": args.preset,
                          "khronos": khronos}, ensure_ascii=False, indent=1))
    else:
        _say_issues(issues + over)
        if khronos["available"] and not args.quiet:
            print(f"Khronos glTF-Validator: {khronos['errors']} error(s), "
                  f"{khronos['warnings']} warning(s)")
            for m in khronos["messages"]:
                if m.get("severity") == 1:
                    print(f"warning: {m.get('pointer', '')}: {m['message']} [{m['code']}]")
        elif "reason" in khronos and not args.quiet:
            print(f"note: Khronos validator not run: {khronos['reason']}", file=sys.stderr)
        if not issues and not over and not args.quiet:
            print(f"ok: {path} is valid and within the {args.preset} budget")
    if issues or (args.strict and khronos.get("warnings")):
        return EXIT_INVALID
    return EXIT_OVER_BUDGET if over else EXIT_OK


def cmd_optimize(args: argparse.Namespace) -> int:
    from tourserver.pipeline.optimize import OptimizeOptions
    from tourserver.pipeline.session import Session
    from tourserver.render import optimize_report

    try:
        options = OptimizeOptions(preset=args.preset, simplify=args.simplify,
                                  simplify_error=args.simplify_error,
                                  texture_max=args.texture_max,
                                  texture_format=args.texture_format,
                                  texture_quality=args.texture_quality, compress=args.compress,
                                  join=args.join)
    except TourError as exc:
        print(f"usage error: {exc.message}", file=sys.stderr)
        return EXIT_USAGE
    if args.output is None and not args.dry_run:
        print("usage error: -o OUT is required (or --dry-run)", file=sys.stderr)
        return EXIT_USAGE
    if args.output is not None:
        outputs = [args.output, *(args.output.with_name(f"{args.output.stem}.lod{level}.glb")
                                  for level in range(1, args.lods or 1))]
        if _refuse_overwriting_input(args.input, outputs):
            return EXIT_USAGE
    session = Session()
    try:
        source = session.read(args.input)
    except TourError as exc:
        _print_issues([_asset_issue(exc, args.input)], args.json)
        return EXIT_INVALID
    out = str(args.output) if args.output else None
    result = session.optimize(source, options, output=out, dry_run=args.dry_run,
                              progress=None if args.json else _progress(args.quiet))
    report = result.report
    lod_files = []
    if result.glb is not None and args.lods and args.lods > 1:
        for lod in session.lods(source, args.lods, options, first=result)[1:]:
            path = args.output.with_name(f"{args.output.stem}.lod{lod.level}.glb")
            session.write(path, lod.glb)
            lod_files.append({"level": lod.level, "path": str(path), "bytes": len(lod.glb),
                              "triangles": lod.triangles,
                              "geometric_error": lod.geometric_error})
    if result.glb is not None:
        session.write(args.output, result.glb)
    if args.json:
        body = report.to_json()
        if lod_files:
            body["lods"] = lod_files
        print(json.dumps(body, ensure_ascii=False))
    elif not args.quiet:
        print(optimize_report(report))
        for row in lod_files:
            print(f"lod {row['level']}: {row['path']} {row['triangles']:,} triangles, "
                  f"error {row['geometric_error']:.4g} m")
    else:
        _say_issues(report.issues)  # --quiet drops the report, never the problems
    if report.issues and not report.over_budget:
        return EXIT_INVALID
    return EXIT_OVER_BUDGET if report.over_budget else EXIT_OK


def _refuse_overwriting_input(source: Path, outputs: list[Path]) -> bool:
    """Say so and return True if an output would replace the input (the same path, or the
    same file through a symlink or hard link): the input is still being read then."""
    for out in outputs:
        try:
            same = out.resolve() == source.resolve() or (
                out.exists() and source.exists() and os.path.samefile(out, source))
        except OSError:
            same = False
        if same:
            print(f"usage error: {out} is the input file itself; write the output to another "
                  "file", file=sys.stderr)
            return True
    return False


def cmd_inspect(args: argparse.Namespace) -> int:
    from tourserver.ingest.inspect import inspect_file
    from tourserver.render import inspect_report

    try:
        info = inspect_file(args.input)
    except TourError as exc:
        _print_issues([_asset_issue(exc, args.input)], args.json)
        return EXIT_INVALID
    print(json.dumps(info, ensure_ascii=False) if args.json else inspect_report(info))
    return EXIT_OK


def cmd_lods(args: argparse.Namespace) -> int:
    from tourserver.pipeline.optimize import OptimizeOptions
    from tourserver.pipeline.session import Session

    # Writing into the input's own folder is fine; replacing the input is not.
    outputs = [args.output / f"lod{level}.glb" for level in range(max(args.levels, 1))]
    if _refuse_overwriting_input(args.input, [*outputs, args.output / "lods.json"]):
        return EXIT_USAGE
    session = Session()
    try:
        source = session.read(args.input)
        lods = session.lods(source, args.levels, OptimizeOptions(preset=args.preset))
    except TourError as exc:
        if exc.code == "usage":
            print(f"usage error: {exc.message}", file=sys.stderr)
            return EXIT_USAGE
        _print_issues([_asset_issue(exc, args.input)], args.json)
        return EXIT_INVALID
    entries = []
    for lod in lods:
        path = args.output / f"lod{lod.level}.glb"
        session.write(path, lod.glb)
        entries.append({"level": lod.level, "file": path.name, "bytes": len(lod.glb),
                        "triangles": lod.triangles, "geometric_error": lod.geometric_error})
    manifest = {"schema": "tourserver.lods/1", "source": str(args.input), "levels": entries}
    session.write(args.output / "lods.json", json.dumps(manifest, indent=1).encode())
    if args.json:
        print(json.dumps(manifest))
    else:
        from tourserver.render import human_bytes, table

        print(table([[e["level"], e["file"], f"{e['triangles']:,}", human_bytes(e["bytes"]),
                      f"{e['geometric_error']:.4g}"] for e in entries],
                    ["lod", "file", "triangles", "size", "error (m)"]))
    return EXIT_OK
