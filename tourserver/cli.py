"""The `tourserver` command: a thin layer that parses arguments, calls the library and
renders its result. Exit codes: 0 ok, 1 invalid input, 2 usage."""

from __future__ import annotations

import argparse
import functools
import json
import logging
import sys
from pathlib import Path

from tourserver import __version__
from tourserver.config import (
    DATA_ENV,
    Limits,
    Settings,
    default_content_root,
    default_data_dir,
)
from tourserver.errors import Issue, ManifestInvalid, TourError

EXIT_OK, EXIT_INVALID, EXIT_USAGE = 0, 1, 2


def _print_issues(issues: list[Issue], as_json: bool) -> None:
    if as_json:
        print(json.dumps({"ok": not issues, "issues": [vars(i) for i in issues]},
                         ensure_ascii=False, indent=1))
        return
    for issue in issues:
        print(f"error: {issue}", file=sys.stderr)
    if issues:
        print(f"{len(issues)} problem(s) found", file=sys.stderr)


def cmd_validate(args: argparse.Namespace) -> int:
    from tourserver.ingest.tours import load_all, load_tour

    target = Path(args.path) if args.path else None
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
                        limits=Limits(header_timeout_s=args.header_timeout))
    print(f"tourserver {__version__} serving http://{args.host}:{args.port}/ "
          f"({args.workers} worker(s), data {args.data})", file=sys.stderr, flush=True)
    serve(settings, functools.partial(load_published, args.data))
    return EXIT_OK


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tourserver", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"tourserver {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser, data: bool = True) -> None:
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
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("build", help="validate tours and publish content-addressed variants")
    common(p)
    p.add_argument("--force", action="store_true", help="publish even if nothing changed")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_build)

    p = sub.add_parser("validate", help="check tour manifests and the files they name")
    common(p, data=False)
    p.add_argument("path", nargs="?", help="a tour folder or manifest (default: every tour)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_validate)
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


if __name__ == "__main__":
    sys.exit(main())
