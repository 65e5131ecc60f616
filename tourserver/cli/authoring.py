"""`tourserver validate`, `build` and `new`: what a tour's author runs."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tourserver.cli import EXIT_INVALID, EXIT_OK, EXIT_USAGE, add_common_options
from tourserver.cli.assets import ASSET_SUFFIXES, _validate_asset
from tourserver.cli.output import _BuildProgress, _issues_json, _say_issues
from tourserver.errors import Issue, ManifestInvalid, TourError


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("build", help="validate tours and publish content-addressed variants")
    add_common_options(p)
    p.add_argument("--force", action="store_true", help="publish even if nothing changed")
    p.add_argument("--json", action="store_true",
                   help="one JSON document on stdout, failures included")
    p.add_argument("--quiet", action="store_true",
                   help="no progress, table or warnings; errors are still printed")
    p.set_defaults(func=cmd_build)

    p = sub.add_parser("validate", help="check tours, or one 3D asset against a device budget")
    add_common_options(p, data=False)
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
    add_common_options(p, data=False)
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
