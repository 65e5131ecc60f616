"""The `tourserver` command: a thin layer that parses arguments, calls the library and
renders its result. Exit codes: 0 ok, 1 invalid input, 2 usage."""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import sys
import time
from pathlib import Path

from tourserver import __version__
from tourserver.config import (
    DATA_ENV,
    Limits,
    LiveSettings,
    Settings,
    default_data_dir,
    find_content_root,
)
from tourserver.errors import Issue, ManifestInvalid, TourError

EXIT_OK, EXIT_INVALID, EXIT_USAGE, EXIT_OVER_BUDGET = 0, 1, 2, 3
ASSET_SUFFIXES = (".glb", ".gltf", ".obj", ".ply", ".stl")


def _say_issues(issues: list[Issue], root: Path | None = None, *,
                warnings: bool = True) -> None:
    """Problems on stderr, grouped by file (warnings left out when `warnings` is False)."""
    from tourserver.render import issues_report, use_color

    shown = [i for i in issues if i.is_error or warnings]
    if shown:
        print(issues_report(shown, root, color=use_color(sys.stderr)), file=sys.stderr)


def _issues_json(issues: list[Issue], ok: bool, root: Path | None = None, **extra) -> str:
    """The one JSON document of validate and of a failed build."""
    from tourserver.render import count_issues

    errors, warnings = count_issues(issues)
    body = {"ok": ok, **({"content_root": str(root)} if root is not None else {}),
            "errors": errors, "warnings": warnings, **extra,
            "issues": [i.to_json() for i in issues]}
    return json.dumps(body, ensure_ascii=False, indent=1)


def _print_issues(issues: list[Issue], as_json: bool) -> None:
    """An asset command's input problems: JSON on stdout, or grouped on stderr."""
    if as_json:
        print(_issues_json(issues, not any(i.is_error for i in issues)))
    else:
        _say_issues(issues)


def _asset_issue(exc: TourError, path: Path) -> Issue:
    """A loader error as an Issue on its file; the loader's messages start with the file's
    name, which the Issue already carries."""
    message = exc.message.removeprefix(f"{path}: ")
    return Issue(exc.code, message, str(path), exc.field, hint=getattr(exc, "hint", None))


def _tours_to_check(args: argparse.Namespace) -> tuple[Path, Path | None, str]:
    """(content root, the one tour folder to check or None for all, a note on the root).
    A tour folder given as a path, as its manifest, or as the current directory is one and
    the same check; its content root is X for X/tours/<id>/."""
    from tourserver.config import is_tour_folder, tour_folder_root

    target = Path(args.path) if args.path else None
    if target is None and not args.root_given and is_tour_folder(Path.cwd()):
        target = Path.cwd()
    if target is None:
        return args.root.resolve(), None, args.root_note
    tour_dir = (target.parent if target.is_file() else target).resolve()
    if args.root_given or not tour_dir.is_dir():
        return args.root.resolve(), tour_dir, ""
    root, note = tour_folder_root(tour_dir)
    return root, tour_dir, note


def cmd_validate(args: argparse.Namespace) -> int:
    from tourserver.ingest.tours import load_all, load_tour
    from tourserver.render import count_issues, plural

    if args.path and Path(args.path).suffix.lower() in ASSET_SUFFIXES:
        return _validate_asset(Path(args.path), args)
    root, tour_dir, note = _tours_to_check(args)
    if note and not args.quiet:
        print(note, file=sys.stderr)
    if tour_dir is None:
        loaded, issues = load_all(root)
        issues = [*issues, *(w for lt in loaded for w in lt.warnings if w not in issues)]
    elif not tour_dir.is_dir():
        issues = [Issue("not_found", "no such tour folder or manifest", str(args.path),
                        hint="give a tour folder (tours/<id>/) or its tour.yaml")]
    else:
        try:
            issues = list(load_tour(tour_dir, root).warnings)
        except ManifestInvalid as exc:
            issues = exc.issues
    errors, warnings = count_issues(issues)
    failed = errors > 0 or (args.strict and warnings > 0)
    if args.json:
        print(_issues_json(issues, not failed, root))
        return EXIT_INVALID if failed else EXIT_OK
    _say_issues(issues, root, warnings=args.strict or not args.quiet)
    counts = f"{plural(errors, 'error')}, {plural(warnings, 'warning')}"
    if failed:
        why = " (--strict: warnings fail)" if not errors else ""
        print(f"{counts}{why}", file=sys.stderr)
    elif not args.quiet:
        print("ok: no problems found" if not warnings else
              f"ok: {counts} (--strict makes warnings fail)")
    return EXIT_INVALID if failed else EXIT_OK


def _validate_asset(path: Path, args: argparse.Namespace) -> int:
    """Structural checks, the preset's budgets, and the Khronos validator where available."""
    from tourserver.ingest.checks import BUDGETS, budget_issues, structural_issues
    from tourserver.ingest.gltf_io import write_glb
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


def _progress(quiet: bool):
    """A one-line progress display on a terminal; nothing when piped, --quiet or --json."""
    if quiet or not sys.stderr.isatty():
        return None

    def show(done: int, total: int, name: str) -> None:
        end = "\n" if done == total else ""
        print(f"\r[{done}/{total}] {name:<24}", end=end, file=sys.stderr, flush=True)

    return show


def cmd_optimize(args: argparse.Namespace) -> int:
    from tourserver.ingest.loaders import load_asset
    from tourserver.pipeline.optimize import OptimizeOptions, make_lods, optimize
    from tourserver.render import optimize_report
    from tourserver.store.blobs import atomic_write

    try:
        options = OptimizeOptions(preset=args.preset, simplify=args.simplify,
                                  texture_max=args.texture_max,
                                  texture_format=args.texture_format, compress=args.compress)
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
    try:
        doc = load_asset(args.input)
    except TourError as exc:
        _print_issues([_asset_issue(exc, args.input)], args.json)
        return EXIT_INVALID
    size = _source_bytes(args.input, doc)
    out = str(args.output) if args.output else None
    _, glb, report = optimize(doc, size, options, source=str(args.input), output=out,
                              dry_run=args.dry_run,
                              progress=None if args.json else _progress(args.quiet))
    lod_files = []
    if glb is not None and args.lods and args.lods > 1:
        for lod in make_lods(doc, size, args.lods, options, str(args.input))[1:]:
            path = args.output.with_name(f"{args.output.stem}.lod{lod.level}.glb")
            atomic_write(path, lod.glb)
            lod_files.append({"level": lod.level, "path": str(path), "bytes": len(lod.glb),
                              "triangles": lod.triangles,
                              "geometric_error": lod.geometric_error})
    if glb is not None:
        atomic_write(args.output, glb)
    if args.json:
        body = report.to_json()
        if lod_files:
            body["lods"] = lod_files
        print(json.dumps(body, ensure_ascii=False))
    elif not args.quiet:
        print(optimize_report(report))
        for lod in lod_files:
            print(f"lod {lod['level']}: {lod['path']} {lod['triangles']:,} triangles, "
                  f"error {lod['geometric_error']:.4g} m")
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


def _source_bytes(path: Path, doc) -> int:
    """What the asset weighs as delivered: the GLB itself, or a .gltf with every file it
    references (measured as the equivalent self-contained GLB)."""
    from tourserver.ingest.gltf_io import write_glb

    return path.stat().st_size if path.suffix.lower() == ".glb" else len(write_glb(doc))


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
    from tourserver.ingest.loaders import load_asset
    from tourserver.pipeline.optimize import OptimizeOptions, make_lods
    from tourserver.store.blobs import atomic_write

    # Writing into the input's own folder is fine; replacing the input is not.
    outputs = [args.output / f"lod{level}.glb" for level in range(max(args.levels, 1))]
    if _refuse_overwriting_input(args.input, [*outputs, args.output / "lods.json"]):
        return EXIT_USAGE
    try:
        doc = load_asset(args.input)
        lods = make_lods(doc, _source_bytes(args.input, doc), args.levels,
                         OptimizeOptions(preset=args.preset), str(args.input))
    except TourError as exc:
        if exc.code == "usage":
            print(f"usage error: {exc.message}", file=sys.stderr)
            return EXIT_USAGE
        _print_issues([_asset_issue(exc, args.input)], args.json)
        return EXIT_INVALID
    args.output.mkdir(parents=True, exist_ok=True)
    entries = []
    for lod in lods:
        path = args.output / f"lod{lod.level}.glb"
        atomic_write(path, lod.glb)
        entries.append({"level": lod.level, "file": path.name, "bytes": len(lod.glb),
                        "triangles": lod.triangles, "geometric_error": lod.geometric_error})
    manifest = {"schema": "tourserver.lods/1", "source": str(args.input), "levels": entries}
    atomic_write(args.output / "lods.json", json.dumps(manifest, indent=1).encode())
    if args.json:
        print(json.dumps(manifest))
    else:
        from tourserver.render import human_bytes, table

        print(table([[e["level"], e["file"], f"{e['triangles']:,}", human_bytes(e["bytes"]),
                      f"{e['geometric_error']:.4g}"] for e in entries],
                    ["lod", "file", "triangles", "size", "error (m)"]))
    return EXIT_OK


class _BuildProgress:
    """Progress per scene and tier on one line redrawn in place, on a terminal only."""

    def __init__(self) -> None:
        import shutil

        self.width = max(20, shutil.get_terminal_size().columns - 1)
        self.shown = False

    def __call__(self, done: int, total: int, label: str) -> None:
        from tourserver.render import progress_line

        print("\r" + progress_line(done, total, label, self.width), end="", file=sys.stderr,
              flush=True)
        self.shown = True

    def clear(self) -> None:
        if self.shown:
            print("\r" + " " * self.width + "\r", end="", file=sys.stderr, flush=True)
            self.shown = False


def _build_failed(args: argparse.Namespace, root: Path, exc: TourError) -> int:
    from tourserver.render import count_issues, plural
    from tourserver.store.build import DataDir

    issues = exc.issues if isinstance(exc, ManifestInvalid) else []
    error = {} if issues else {"error": {"code": exc.code, "message": exc.message}}
    if args.json:
        print(_issues_json(issues, False, root, **error))
        return EXIT_INVALID
    _say_issues(issues, root, warnings=not args.quiet)
    if not issues:
        print(f"error: {exc.message} [{exc.code}]", file=sys.stderr)
    errors, warnings = count_issues(issues)
    counts = f" ({plural(errors, 'error')}, {plural(warnings, 'warning')})" if issues else ""
    previous = DataDir(args.data).current_build_id()
    print(f"build failed{counts}: nothing was published; " + (
        f"the previous build {previous} keeps serving" if previous else
        "there is no earlier build to serve"), file=sys.stderr)
    return EXIT_INVALID


def cmd_build(args: argparse.Namespace) -> int:
    from tourserver.render import build_table, plural
    from tourserver.store.build import build

    root = args.root.resolve()
    if args.root_note and not args.quiet:
        print(args.root_note, file=sys.stderr)
    progress = None
    if not (args.quiet or args.json) and sys.stderr.isatty():
        progress = _BuildProgress()
    failure: TourError | None = None
    try:
        result = build(root, args.data, force=args.force, progress=progress)
    except TourError as exc:
        failure = exc
    finally:
        if progress is not None:
            progress.clear()  # before anything else is printed on that line
    if failure is not None:
        return _build_failed(args, root, failure)
    if args.json:
        print(json.dumps({"ok": True, "content_root": str(root), **result.to_json()},
                         ensure_ascii=False, indent=1))
        return EXIT_OK
    _say_issues(result.warnings, root, warnings=not args.quiet)
    if args.quiet:
        return EXIT_OK
    if result.variants:
        print(build_table(result.variants))
    if result.changed:
        print(f"published build {result.build_id}: {plural(result.tours, 'tour')}, "
              f"{plural(result.scenes, 'scene')}, {plural(result.variants_made, 'variant')} "
              f"made in {result.seconds:.1f} s -> {args.data}")
    else:
        print(f"up to date: build {result.build_id} ({args.data})")
    return EXIT_OK


def _place(text: str) -> tuple[float, float, float | None]:
    """--at LAT,LON or LAT,LON,ALTITUDE_MSL."""
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) not in (2, 3):
        raise argparse.ArgumentTypeError(f"{text!r}: give LAT,LON or LAT,LON,ALTITUDE_MSL in "
                                         "degrees and metres, e.g. 31.2400,121.4900,5")
    return values[0], values[1], values[2] if len(values) == 3 else None


def cmd_new(args: argparse.Namespace) -> int:
    from tourserver.config import find_content_root
    from tourserver.scaffold import (
        DEFAULT_PLACE,
        DEFAULT_TIMEZONE,
        NewTour,
        scaffold_files,
        write_tour,
    )

    if args.root_given:
        root, note = args.root.resolve(), ""
    else:  # never the bundled demo: a new tour goes here, or in the content root around us
        root, note = find_content_root(Path.cwd(), bundled=False)
    lat, lon, altitude = args.at or DEFAULT_PLACE
    spec = NewTour(args.tour_id, lat, lon, altitude,
                   tuple(x.strip() for x in args.languages.split(",") if x.strip()),
                   args.title, args.timezone or ("UTC" if args.at else DEFAULT_TIMEZONE))
    try:
        written = write_tour(root, scaffold_files(spec))
    except TourError as exc:
        if exc.code == "usage":  # exc.field names the argument or option
            print(f"usage error: {exc.field}: {exc.message}", file=sys.stderr)
            return EXIT_USAGE
        print(f"error: {exc.message}", file=sys.stderr)
        return EXIT_INVALID
    if note:
        print(note, file=sys.stderr)
    manifest = f"tours/{spec.tour_id}/tour.yaml"
    print(f"created tour {spec.tour_id} in {root}:")
    print("\n".join(f"  {p.relative_to(root).as_posix()}" for p in written))
    if args.at is None:
        print(f"note: the stop is at an example place (Jiefangbei, Chongqing); set its anchor "
              f"in {manifest}, or pass --at LAT,LON,ALTITUDE_MSL next time")
    elif altitude is None:
        print(f"note: altitude_msl is 0: set the ground height above sea level at the stop in "
              f"{manifest} (or pass --at LAT,LON,ALTITUDE_MSL)")
    if args.at is not None and not args.timezone:
        print(f"note: timezone is UTC: set the tour's IANA time zone in {manifest} (or pass "
              "--timezone) so lights_on means local time")
    print(f"next: edit {manifest}, replace the placeholder scene and narration, then run "
          f"`tourserver validate tours/{spec.tour_id}` and `tourserver build`")
    return EXIT_OK


RELOAD_POLL_ENV = "TOURSERVER_RELOAD_POLL"


def _bundled_demo_note(args: argparse.Namespace) -> str | None:
    """Why `serve` shows the bundled demo, when nobody chose a content root holding it."""
    from tourserver.config import bundled_content_root

    if args.root_given or (Path.cwd() / "tours").is_dir():
        return None
    if args.root.resolve() != bundled_content_root():
        return None
    return (f"serving the bundled demo tour from {args.root / 'tours'} (no tours/ folder "
            f"in {Path.cwd()}; pass --root)")


def _build_problems(args: argparse.Namespace) -> list[str]:
    """Build, and return why it failed (nothing when it did not). Every failure counts: a
    broken scene file must not stop `serve` when an earlier build can still be served."""
    from tourserver.store.build import build

    try:
        result = build(args.root, args.data)
    except ManifestInvalid as exc:
        return [f"{issue.severity}: {issue}" for issue in exc.issues]
    except TourError as exc:
        return [f"error: {exc.message} [{exc.code}]"]
    except OSError as exc:
        return [f"error: {exc.strerror or exc}: {exc.filename or ''}"]
    except Exception as exc:  # a bug of ours must not take the tours offline either
        if os.environ.get("TOURSERVER_DEBUG"):
            logging.getLogger("tourserver.cli").exception("build failed")
        return [f"internal error: {type(exc).__name__}: {exc} (set TOURSERVER_DEBUG=1 for "
                "the traceback, and please report it)"]
    logging.getLogger("tourserver.cli").info(
        "build %s", "published" if result.changed else "up to date",
        extra={"build": result.build_id})
    return []


def _validate_command(args: argparse.Namespace) -> str:
    return f"tourserver validate --root {args.root}" if args.root_given else "tourserver validate"


def _say_serving_previous(args: argparse.Namespace, problems: list[str], build_id: str) -> None:
    """One block on stderr: what is wrong, what is served instead, where to see more."""
    from tourserver.store.build import DataDir

    try:
        when = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(
            DataDir(args.data).catalog_path(build_id).stat().st_mtime))
    except OSError:
        when = "an earlier run"
    lines = [f"build failed ({len(problems)} problem(s)); the changes are not served:",
             *(f"  {p}" for p in problems),
             f"serving the previous build {build_id} from {when}",
             f"see every problem with: {_validate_command(args)}"]
    print("\n".join(lines), file=sys.stderr, flush=True)


def cmd_serve(args: argparse.Namespace) -> int:
    from tourserver.http.reload import POLL_S
    from tourserver.http.server import serve
    from tourserver.logs import setup_logging
    from tourserver.store.catalog import Catalog, load_published

    # How often each worker looks for a newly published build; 0: only on SIGHUP.
    try:
        reload_poll_s = float(os.environ.get(RELOAD_POLL_ENV) or POLL_S)
    except ValueError:
        reload_poll_s = -1.0
    if not 0 <= reload_poll_s < float("inf"):
        print(f"usage error: {RELOAD_POLL_ENV} must be a number of seconds (0: only on "
              "SIGHUP)", file=sys.stderr)
        return EXIT_USAGE
    note = _bundled_demo_note(args)
    if note:
        print(note, file=sys.stderr, flush=True)  # the first line, before any log
    setup_logging()
    problems = [] if args.no_build else _build_problems(args)
    try:
        catalog = load_published(args.data)  # fail here, clearly, not in a worker
    except TourError as exc:
        if not problems:
            print(f"error: {exc.message}", file=sys.stderr)
        elif not (args.root / "tours").is_dir():
            print(f"error: no tours/ folder in {args.root}; run from the folder that "
                  "holds tours/ and assets/, or pass --root", file=sys.stderr)
        else:
            print("\n".join(["error: the build failed and nothing was published before, so "
                             "there is nothing to serve:", *(f"  {p}" for p in problems),
                             f"see every problem with: {_validate_command(args)}"]),
                  file=sys.stderr)
        return EXIT_INVALID
    if problems:
        _say_serving_previous(args, problems, catalog.build_id)
    settings = Settings(data_dir=args.data, content_root=args.root, host=args.host,
                        port=args.port, workers=args.workers,
                        limits=Limits(header_timeout_s=args.header_timeout),
                        live=LiveSettings(broker_url=args.broker,
                                          allowed_origins=tuple(args.allow_origin or ()),
                                          tickets_per_minute=args.tickets_per_minute,
                                          max_frame_bytes=args.max_frame_bytes,
                                          history_window=args.history_window,
                                          cue_horizon_s=args.cue_horizon,
                                          heartbeat_s=args.live_heartbeat))

    def say_serving() -> None:
        print(f"tourserver {__version__} serving http://{args.host}:{args.port}/ "
              f"({args.workers} worker(s), data {args.data})", file=sys.stderr, flush=True)

    def loaded() -> Catalog:
        return catalog

    # One process serves the catalog just checked; workers (other processes) load their own.
    load = loaded if args.workers <= 1 else functools.partial(load_published, args.data)
    if args.workers > 1:
        del catalog  # the supervisor serves nothing: do not hold a catalog for its lifetime
    try:
        failed = serve(settings, load, say_serving, reload_poll_s)
    except TourError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return EXIT_INVALID
    return EXIT_INVALID if failed else EXIT_OK


def cmd_gc(args: argparse.Namespace) -> int:
    from tourserver.render import human_bytes
    from tourserver.store.gc import collect

    if args.keep < 0:
        print("usage error: --keep must be 0 or more", file=sys.stderr)
        return EXIT_USAGE
    try:
        result = collect(args.data, keep=args.keep, dry_run=args.dry_run)
    except TourError as exc:
        print(f"error: {exc.message} [{exc.code}]", file=sys.stderr)
        return EXIT_INVALID
    if args.json:
        print(json.dumps(result.to_json()))
        return EXIT_OK
    kept = (f"kept build {result.kept[0]} (current)" + "".join(f", {k}" for k in result.kept[1:])
            + f" in {args.data}")
    if not (result.builds or result.blobs or result.cache):
        print(f"nothing to remove; {kept}")
        return EXIT_OK
    verb = "would remove" if args.dry_run else "removed"
    for r in result.builds:
        print(f"{verb} {r.path} ({human_bytes(r.bytes)})")
    blob_bytes = sum(r.bytes for r in result.blobs)
    cache_bytes = sum(r.bytes for r in result.cache)
    print(f"{verb} {len(result.builds)} build(s), {len(result.blobs)} file(s) "
          f"({human_bytes(blob_bytes)}) and {len(result.cache)} cache entr"
          f"{'y' if len(result.cache) == 1 else 'ies'} ({human_bytes(cache_bytes)}): "
          f"{human_bytes(result.bytes_freed)} {'to free' if args.dry_run else 'freed'}")
    print(kept)
    return EXIT_OK


def cmd_keys_create(args: argparse.Namespace) -> int:
    from tourserver.store.keys import KeyStore

    record, key = KeyStore(args.data).create(args.role, args.name)
    print(json.dumps({**record.to_json(), "key": key}, ensure_ascii=False) if args.json
          else key)
    print(f"note: key {record.id} ({record.role}) will not be shown again; store it now",
          file=sys.stderr)
    return EXIT_OK


def cmd_keys_list(args: argparse.Namespace) -> int:
    from tourserver.render import table
    from tourserver.store.keys import KeyStore

    keys = KeyStore(args.data).list()
    if args.json:
        print(json.dumps([k.to_json() for k in keys], ensure_ascii=False))
    elif keys:
        print(table([[k.id, k.role, k.name, k.created_at] for k in keys],
                    ["id", "role", "name", "created"]))
    else:
        print(f"no keys in {args.data}")
    return EXIT_OK


def cmd_keys_revoke(args: argparse.Namespace) -> int:
    from tourserver.store.keys import KeyStore

    if not KeyStore(args.data).revoke(args.id):
        print(f"error: no key with id {args.id}", file=sys.stderr)
        return EXIT_INVALID
    print(f"revoked key {args.id}")
    return EXIT_OK


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tourserver", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"tourserver {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser, data: bool = True, root: bool = True) -> None:
        if root:
            p.add_argument("--root", type=Path, default=None,
                           help="content root holding tours/ and assets/ (default: the "
                                "current directory if it has tours/, the one around a tour "
                                "folder, else the bundled demo, said on stderr)")
        if data:
            p.add_argument("--data", type=Path, default=None,
                           help=f"data directory (default: ${DATA_ENV} or "
                                f"{default_data_dir()})")

    p = sub.add_parser("serve", help="build if needed, then serve the tours over HTTP")
    common(p)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--workers", type=int, default=1, help="processes sharing the port")
    p.add_argument("--no-build", action="store_true", help="serve the published build as is")
    p.add_argument("--header-timeout", type=float, default=Limits.header_timeout_s,
                   metavar="S", help="close connections whose request head takes longer")
    p.add_argument("--broker", metavar="URL", default=os.environ.get("TOURSERVER_BROKER"),
                   help="redis://HOST:PORT/DB to run live events across processes and "
                        "machines (default: this process, SQLite in the data directory)")
    p.add_argument("--allow-origin", action="append", metavar="ORIGIN",
                   help="a web origin allowed to open live sockets, besides same-origin and "
                        "loopback (repeat; '*' allows any)")
    p.add_argument("--tickets-per-minute", type=int, default=LiveSettings.tickets_per_minute,
                   metavar="N", help="live tickets per client address per minute")
    p.add_argument("--max-frame-bytes", type=int, default=LiveSettings.max_frame_bytes,
                   metavar="N", help="largest live frame a client may send (closed with 1009)")
    p.add_argument("--history-window", type=int, default=LiveSettings.history_window,
                   metavar="N", help="messages a reconnecting client may catch up on")
    p.add_argument("--cue-horizon", type=float, default=LiveSettings.cue_horizon_s,
                   metavar="S", help="how far ahead a host may schedule a cue")
    p.add_argument("--live-heartbeat", type=float, default=LiveSettings.heartbeat_s,
                   metavar="S", help="ping live sockets every S seconds; no pong closes them")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("build", help="validate tours and publish content-addressed variants")
    common(p)
    p.add_argument("--force", action="store_true", help="publish even if nothing changed")
    p.add_argument("--json", action="store_true",
                   help="one JSON document on stdout, failures included")
    p.add_argument("--quiet", action="store_true",
                   help="no progress, table or warnings; errors are still printed")
    p.set_defaults(func=cmd_build)

    p = sub.add_parser("validate", help="check tours, or one 3D asset against a device budget")
    common(p, data=False)
    p.add_argument("path", nargs="?", help="a tour folder or its manifest (default: the tour "
                   "folder you are in, else every tour), or a .glb/.gltf/.obj/.ply/.stl file")
    p.add_argument("--preset", default="phone", choices=("phone", "tablet", "headset", "archive"),
                   help="device budget for an asset (phone: 5 MB, 100k triangles, 2048 px)")
    p.add_argument("--strict", action="store_true", help="warnings fail too (exit 1)")
    p.add_argument("--json", action="store_true",
                   help="one JSON document on stdout: ok, counts and every issue")
    p.add_argument("--quiet", action="store_true",
                   help="print errors only (and warnings with --strict)")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("new", help="start a tour: a commented manifest and placeholder assets "
                       "that validate as they stand")
    common(p, data=False)
    p.add_argument("tour_id", metavar="TOUR_ID", help="lowercase letters, digits and hyphens, "
                   "e.g. shanghai-bund; also the folder's name")
    p.add_argument("--at", type=_place, metavar="LAT,LON[,ALT]",
                   help="the first stop's place, WGS84 degrees, and its ground height above "
                        "sea level in metres (default: an example place in Chongqing)")
    p.add_argument("--languages", default="en", metavar="LANGS",
                   help="comma-separated BCP-47 codes, the default first (default: en)")
    p.add_argument("--title", help="the tour's title (default: from its id)")
    p.add_argument("--timezone", metavar="TZ",
                   help="IANA time zone of the lights-on schedule (default: Asia/Shanghai, "
                        "or UTC with --at)")
    p.set_defaults(func=cmd_new)

    p = sub.add_parser("optimize", help="optimise a 3D asset for streaming to a device")
    p.add_argument("input", type=Path, help=".glb, .gltf (with its files), .obj, .ply or .stl")
    p.add_argument("-o", "--output", type=Path, help="output .glb")
    p.add_argument("--preset", default="phone", choices=("phone", "tablet", "headset", "archive"))
    p.add_argument("--simplify", type=float, metavar="RATIO",
                   help="keep this fraction of the triangles (default: only to fit the budget)")
    p.add_argument("--lods", type=int, metavar="N", help="also write N-1 coarser levels "
                   "beside the output (OUT.lod1.glb, ...)")
    p.add_argument("--texture-max", type=int, metavar="PX", help="largest texture edge")
    p.add_argument("--texture-format", choices=("webp", "png", "jpeg", "ktx2", "keep"))
    p.add_argument("--compress", choices=("meshopt", "none"))
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

    p = sub.add_parser("gc", help="delete old builds and the files only they use")
    common(p, root=False)
    p.add_argument("--keep", type=int, default=2, metavar="N",
                   help="previous builds kept besides the current one (default 2: a server "
                        "still on the previous build while it reloads finds its files)")
    p.add_argument("--dry-run", action="store_true", help="say what would go, delete nothing")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_gc)

    p = sub.add_parser("keys", help="API keys for event hosts and content creators")
    keys = p.add_subparsers(dest="keys_command", required=True)
    p = keys.add_parser("create", help="make a key and print it, once")
    common(p, root=False)
    p.add_argument("--role", required=True, choices=("host", "creator"))  # store.keys.ROLES
    p.add_argument("--name", default="", help="a label for the key, e.g. who holds it")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_keys_create)
    p = keys.add_parser("list", help="every key's id, role, name and creation time")
    common(p, root=False)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_keys_list)
    p = keys.add_parser("revoke", help="remove a key; it stops working at once")
    common(p, root=False)
    p.add_argument("id", help="the key's id, as `keys list` shows it")
    p.set_defaults(func=cmd_keys_revoke)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = make_parser()
    args = parser.parse_args(argv)
    args.root_given = getattr(args, "root", None) is not None
    args.root_note = ""  # why this content root, when nobody chose it and it is not plain
    if getattr(args, "root", None) is None:
        args.root, args.root_note = find_content_root(Path.cwd())
    if hasattr(args, "data") and args.data is None:
        args.data = default_data_dir()
    if getattr(args, "workers", 1) < 1:
        parser.error("--workers must be at least 1")
    try:
        code = args.func(args)
        sys.stdout.flush()  # a closed pipe shows here, inside the handlers below
        return code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader stopped early (`inspect x.glb | head`): not an error, and nothing more
        # can be said on stdout; point it at /dev/null so the exit flush stays quiet too.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + 13  # what a shell reports for SIGPIPE
    except TourError as exc:
        return _failed(args, exc.code, exc.message)
    except OSError as exc:
        return _failed(args, "os_error", f"{exc.strerror or exc}: {exc.filename or ''}")
    except Exception as exc:  # a bug of ours: one clear line, the traceback on request
        if os.environ.get("TOURSERVER_DEBUG"):
            raise
        return _failed(args, "internal_error", f"{type(exc).__name__}: {exc} (set "
                       "TOURSERVER_DEBUG=1 for the traceback, and please report it)",
                       prefix="internal error")


def _failed(args: argparse.Namespace, code: str, message: str, prefix: str = "error") -> int:
    """An error no command handled: one line on stderr and, with --json, still one JSON
    document on stdout (the command printed none: they print theirs last)."""
    print(f"{prefix}: {message} [{code}]", file=sys.stderr)
    if getattr(args, "json", False):
        print(json.dumps({"ok": False, "error": {"code": code, "message": message},
                          "issues": []}, ensure_ascii=False))
    return EXIT_INVALID


if __name__ == "__main__":
    sys.exit(main())
