"""The `tourserver` command: a thin layer that parses arguments, calls the library and
renders its result. Exit codes: 0 ok, 1 invalid input, 2 usage."""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import sys
from pathlib import Path

from tourserver import __version__
from tourserver.config import (
    DATA_ENV,
    Limits,
    LiveSettings,
    Settings,
    default_content_root,
    default_data_dir,
)
from tourserver.errors import Issue, ManifestInvalid, TourError

EXIT_OK, EXIT_INVALID, EXIT_USAGE, EXIT_OVER_BUDGET = 0, 1, 2, 3
ASSET_SUFFIXES = (".glb", ".gltf", ".obj", ".ply", ".stl")


def _print_issues(issues: list[Issue], as_json: bool) -> None:
    if as_json:
        print(json.dumps({"ok": not issues, "issues": [i.to_json() for i in issues]},
                         ensure_ascii=False, indent=1))
        return
    for issue in issues:
        print(f"error: {issue}", file=sys.stderr)
    if issues:
        print(f"{len(issues)} problem(s) found", file=sys.stderr)


def cmd_validate(args: argparse.Namespace) -> int:
    from tourserver.ingest.tours import load_all, load_tour

    target = Path(args.path) if args.path else None
    if target is not None and target.suffix.lower() in ASSET_SUFFIXES:
        return _validate_asset(target, args)
    if target is None:
        _, issues = load_all(args.root)
    else:
        tour_dir = target.parent if target.is_file() else target
        if not tour_dir.is_dir():
            _print_issues([Issue("not_found", "no such tour folder or manifest", str(target))],
                          args.json)
            return EXIT_INVALID
        root = args.root if args.root_given else _guess_root(tour_dir)
        try:
            load_tour(tour_dir, root)
            issues = []
        except ManifestInvalid as exc:
            issues = exc.issues
    _print_issues(issues, args.json)
    if not issues and not args.json:
        print("ok: no problems found")
    return EXIT_INVALID if issues else EXIT_OK


def _validate_asset(path: Path, args: argparse.Namespace) -> int:
    """Structural checks, the preset's budgets, and the Khronos validator where available."""
    from tourserver.ingest.checks import BUDGETS, budget_issues, structural_issues
    from tourserver.ingest.gltf_io import write_glb
    from tourserver.ingest.loaders import load_asset
    from tourserver.ingest.validator import ValidatorUnavailable, validate_file

    try:
        doc = load_asset(path)
    except TourError as exc:
        _print_issues([Issue(exc.code, exc.message, str(path), exc.field)], args.json)
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
        for issue in issues:
            print(f"error: {issue}", file=sys.stderr)
        for issue in over:
            print(f"over budget: {issue}", file=sys.stderr)
        if khronos["available"]:
            print(f"Khronos glTF-Validator: {khronos['errors']} error(s), "
                  f"{khronos['warnings']} warning(s)")
            for m in khronos["messages"]:
                if m.get("severity") == 1:
                    print(f"warning: {m.get('pointer', '')}: {m['message']} [{m['code']}]")
        elif "reason" in khronos:
            print(f"note: Khronos validator not run: {khronos['reason']}", file=sys.stderr)
        if not issues and not over:
            print(f"ok: {path} is valid and within the {args.preset} budget")
    if issues:
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
    try:
        doc = load_asset(args.input)
    except TourError as exc:
        _print_issues([Issue(exc.code, exc.message, str(args.input), exc.field)], args.json)
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
    if report.issues and not report.over_budget:
        return EXIT_INVALID
    return EXIT_OVER_BUDGET if report.over_budget else EXIT_OK


def _source_bytes(path: Path, doc) -> int:
    """What the asset weighs as delivered: the GLB itself, or a .gltf with every file it
    references (measured as the equivalent self-contained GLB)."""
    from tourserver.ingest.gltf_io import write_glb

    return path.stat().st_size if path.suffix.lower() == ".glb" else len(write_glb(doc))


def cmd_inspect(args: argparse.Namespace) -> int:
    from tourserver.ingest.inspect import inspect_document
    from tourserver.ingest.loaders import load_asset
    from tourserver.render import inspect_report

    try:
        info = inspect_document(load_asset(args.input))
    except TourError as exc:
        _print_issues([Issue(exc.code, exc.message, str(args.input), exc.field)], args.json)
        return EXIT_INVALID
    print(json.dumps(info, ensure_ascii=False) if args.json else inspect_report(info))
    return EXIT_OK


def cmd_lods(args: argparse.Namespace) -> int:
    from tourserver.ingest.loaders import load_asset
    from tourserver.pipeline.optimize import OptimizeOptions, make_lods
    from tourserver.store.blobs import atomic_write

    try:
        doc = load_asset(args.input)
        lods = make_lods(doc, _source_bytes(args.input, doc), args.levels,
                         OptimizeOptions(preset=args.preset), str(args.input))
    except TourError as exc:
        if exc.code == "usage":
            print(f"usage error: {exc.message}", file=sys.stderr)
            return EXIT_USAGE
        _print_issues([Issue(exc.code, exc.message, str(args.input), exc.field)], args.json)
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


def _guess_root(tour_dir: Path) -> Path:
    """tours/<id>/ sits in the content root: use its grandparent."""
    tour_dir = tour_dir.resolve()
    return tour_dir.parent.parent if tour_dir.parent.name == "tours" else tour_dir.parent


def cmd_build(args: argparse.Namespace) -> int:
    from tourserver.store.build import build

    try:
        result = build(args.root, args.data, force=args.force)
    except ManifestInvalid as exc:
        _print_issues(exc.issues, args.json)
        print("build failed: nothing was published; the previous build keeps serving",
              file=sys.stderr)
        return EXIT_INVALID
    except TourError as exc:
        print(f"error: {exc.message} [{exc.code}]", file=sys.stderr)
        return EXIT_INVALID
    if args.json:
        print(json.dumps(vars(result)))
    elif result.changed:
        print(f"published build {result.build_id}: {result.tours} tour(s), {result.scenes} "
              f"scene(s), {result.variants_made} variant(s) made in {result.seconds:.1f} s "
              f"-> {args.data}")
    else:
        print(f"up to date: build {result.build_id} ({args.data})")
    return EXIT_OK


def cmd_serve(args: argparse.Namespace) -> int:
    from tourserver.http.server import serve
    from tourserver.logs import setup_logging
    from tourserver.store.build import DataDir, build
    from tourserver.store.catalog import load_published

    setup_logging()
    log = logging.getLogger("tourserver.cli")
    if not args.no_build:
        try:
            result = build(args.root, args.data)
            log.info("build %s", "published" if result.changed else "up to date",
                     extra={"build": result.build_id})
        except ManifestInvalid as exc:
            for issue in exc.issues:
                log.error("invalid tour: %s", issue)
            if DataDir(args.data).current_build_id() is None:
                if any(i.code == "tours_missing" for i in exc.issues):
                    print(f"error: no tours/ folder in {args.root}; run from the folder that "
                          "holds tours/ and assets/, or pass --root", file=sys.stderr)
                    return EXIT_INVALID
                print("error: the tours are invalid and nothing was published before; "
                      "run `tourserver validate`", file=sys.stderr)
                return EXIT_INVALID
            log.warning("build failed; serving the previous build")
    try:
        load_published(args.data)  # fail here, clearly, not in a worker
    except TourError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return EXIT_INVALID
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

    try:
        failed = serve(settings, functools.partial(load_published, args.data), say_serving)
    except TourError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return EXIT_INVALID
    return EXIT_INVALID if failed else EXIT_OK


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
                           help="content root holding tours/ and assets/ (default: current "
                                "directory if it has tours/, else the source checkout)")
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
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_build)

    p = sub.add_parser("validate", help="check tours, or one 3D asset against a device budget")
    common(p, data=False)
    p.add_argument("path", nargs="?", help="a tour folder or manifest (default: every tour), "
                   "or a .glb/.gltf/.obj/.ply/.stl file")
    p.add_argument("--preset", default="phone", choices=("phone", "tablet", "headset", "archive"),
                   help="device budget for an asset (phone: 5 MB, 100k triangles, 2048 px)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_validate)

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
    if getattr(args, "root", None) is None:
        args.root = default_content_root()
    if hasattr(args, "data") and args.data is None:
        args.data = default_data_dir()
    if getattr(args, "workers", 1) < 1:
        parser.error("--workers must be at least 1")
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return 130
    except TourError as exc:
        print(f"error: {exc.message} [{exc.code}]", file=sys.stderr)
        return EXIT_INVALID
    except OSError as exc:
        print(f"error: {exc.strerror or exc}: {exc.filename or ''}", file=sys.stderr)
        return EXIT_INVALID
    except Exception as exc:  # a bug of ours: one clear line, the traceback on request
        if os.environ.get("TOURSERVER_DEBUG"):
            raise
        print(f"internal error: {type(exc).__name__}: {exc} (set TOURSERVER_DEBUG=1 for the "
              "traceback, and please report it)", file=sys.stderr)
        return EXIT_INVALID


if __name__ == "__main__":
    sys.exit(main())
