"""`tourserver serve` (build, then serve; an earlier build keeps serving when this one
fails) and `gc`."""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from tourserver import __version__
from tourserver.cli import EXIT_INVALID, EXIT_OK, EXIT_USAGE, add_common_options
from tourserver.config import Limits, LiveSettings, Settings
from tourserver.errors import ManifestInvalid, TourError
from tourserver.logs import LOG_FORMAT_ENV

RELOAD_POLL_ENV = "TOURSERVER_RELOAD_POLL"
PUBLIC_URL_ENV = "TOURSERVER_PUBLIC_URL"
CONTENT_URL_ENV = "TOURSERVER_CONTENT_URL"


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("serve", help="build if needed, then serve the tours over HTTP")
    add_common_options(p)
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
    p.add_argument("--trusted-proxy", action="append", metavar="CIDR",
                   help="a proxy (nginx, a load balancer) whose X-Forwarded-For names the "
                        "client, for per-address limits (repeat; default: none)")
    p.add_argument("--max-frame-bytes", type=int, default=LiveSettings.max_frame_bytes,
                   metavar="N", help="largest live frame a client may send (closed with 1009)")
    p.add_argument("--history-window", type=int, default=LiveSettings.history_window,
                   metavar="N", help="messages a reconnecting client may catch up on")
    p.add_argument("--cue-horizon", type=float, default=LiveSettings.cue_horizon_s,
                   metavar="S", help="how far ahead a host may schedule a cue")
    p.add_argument("--live-heartbeat", type=float, default=LiveSettings.heartbeat_s,
                   metavar="S", help="ping live sockets every S seconds; no pong closes them")
    p.add_argument("--log-format", choices=("text", "json"), default=None,
                   help="log lines on stderr: readable text or JSON lines (default: "
                        f"${LOG_FORMAT_ENV}, else text on a terminal and JSON otherwise)")
    p.add_argument("--public-url", metavar="URL", default=os.environ.get(PUBLIC_URL_ENV),
                   help="the address clients reach this server at (e.g. "
                        "https://tours.example.org): API links in documents start with it "
                        "(default: relative links)")
    p.add_argument("--content-url", metavar="URL", default=os.environ.get(CONTENT_URL_ENV),
                   help="where the /c/ files are served, e.g. a CDN: "
                        "https://cdn.example.org/c/ (default: PUBLIC_URL/c/, else /c/)")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("gc", help="delete old builds and the files only they use")
    add_common_options(p, root=False)
    p.add_argument("--keep", type=int, default=2, metavar="N",
                   help="previous builds kept besides the current one (default 2: a server "
                        "still on the previous build while it reloads finds its files)")
    p.add_argument("--dry-run", action="store_true", help="say what would go, delete nothing")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_gc)


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


@contextlib.contextmanager
def _shared_worker_metrics(workers: int) -> Iterator[None]:
    """With several workers, a directory they share their metrics through (see
    http.metrics): PROMETHEUS_MULTIPROC_DIR if the operator set one, emptied of an earlier
    run's counts, else a new temporary one, removed when serving stops. Set before the
    workers start: prometheus_client reads it when a worker first imports it."""
    from tourserver.http.metrics import MULTIPROC_ENV

    given = os.environ.get(MULTIPROC_ENV)
    if given:
        folder = Path(given)
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob("*.db"):  # else the last run's counts would be added in
            stale.unlink()
        yield
        return
    if workers <= 1:
        yield  # one process: its own registry is the whole story
        return
    folder = Path(tempfile.mkdtemp(prefix="tourserver-metrics-"))
    os.environ[MULTIPROC_ENV] = str(folder)
    try:
        yield
    finally:
        os.environ.pop(MULTIPROC_ENV, None)
        shutil.rmtree(folder, ignore_errors=True)


def cmd_serve(args: argparse.Namespace) -> int:
    from tourserver.config import base_url
    from tourserver.http.client_address import parse_networks
    from tourserver.http.reload import POLL_S
    from tourserver.http.server import serve
    from tourserver.logs import resolve_log_format, setup_logging
    from tourserver.store.catalog import Catalog, Links, load_published, published_build_id

    # How often each worker looks for a newly published build; 0: only on SIGHUP.
    try:
        reload_poll_s = float(os.environ.get(RELOAD_POLL_ENV) or POLL_S)
    except ValueError:
        reload_poll_s = -1.0
    if not 0 <= reload_poll_s < float("inf"):
        print(f"usage error: {RELOAD_POLL_ENV} must be a number of seconds (0: only on "
              "SIGHUP)", file=sys.stderr)
        return EXIT_USAGE
    try:
        log_format = resolve_log_format(args.log_format)
        public_url = base_url(args.public_url, "--public-url") if args.public_url else None
        content_url = (base_url(args.content_url, "--content-url", trailing_slash=True)
                       if args.content_url else None)
        trusted_proxies = parse_networks(args.trusted_proxy or ())
    except ValueError as exc:
        print(f"usage error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    note = _bundled_demo_note(args)
    if note:
        print(note, file=sys.stderr, flush=True)  # the first line, before any log
    # Spawned workers inherit the environment: they log as this process does even when
    # they set up logging with no argument.
    os.environ[LOG_FORMAT_ENV] = log_format
    setup_logging(log_format)
    problems = [] if args.no_build else _build_problems(args)
    settings = Settings(data_dir=args.data, content_root=args.root, host=args.host,
                        port=args.port, workers=args.workers,
                        limits=Limits(header_timeout_s=args.header_timeout),
                        live=LiveSettings(broker_url=args.broker,
                                          allowed_origins=tuple(args.allow_origin or ()),
                                          tickets_per_minute=args.tickets_per_minute,
                                          trusted_proxies=trusted_proxies,
                                          max_frame_bytes=args.max_frame_bytes,
                                          history_window=args.history_window,
                                          cue_horizon_s=args.cue_horizon,
                                          heartbeat_s=args.live_heartbeat),
                        log_format=log_format, public_url=public_url, content_url=content_url)
    # Every link in every document starts with these (relative without the options).
    links = Links(content_base=settings.content_base, api_base=settings.api_base)
    try:
        # Fail here, clearly, not in a worker. With several workers, check that the build's
        # files are there and let each worker load it (loading it here too would double the
        # start-up time at 100k anchors); a worker that cannot load it stops the server.
        if args.workers > 1:
            catalog, build_id = None, published_build_id(args.data)
        else:
            catalog = load_published(args.data, links=links)
            build_id = catalog.build_id
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
        _say_serving_previous(args, problems, build_id)

    def say_serving() -> None:
        where = (f"; links to {settings.api_base or 'this server'}/v1/ and "
                 f"{settings.content_base}" if public_url or content_url else "")
        print(f"tourserver {__version__} serving http://{args.host}:{args.port}/ "
              f"({args.workers} worker(s), data {args.data}{where})", file=sys.stderr,
              flush=True)

    def loaded() -> Catalog:
        assert catalog is not None  # one process: the catalog just loaded
        return catalog

    # One process serves the catalog just checked; workers (other processes) load their own.
    load = (loaded if args.workers <= 1 else
            functools.partial(load_published, args.data, links=links))
    try:
        with _shared_worker_metrics(args.workers):
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
