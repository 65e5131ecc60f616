"""The `tourserver` command: a thin layer that parses arguments, calls the library and
renders its result. Exit codes: 0 ok, 1 invalid input, 2 usage, 3 over a preset's budget,
141 when the reader of its output went away (`inspect | head`)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from tourserver import __version__
from tourserver.config import DATA_ENV, default_data_dir, find_content_root
from tourserver.errors import TourError

EXIT_OK, EXIT_INVALID, EXIT_USAGE, EXIT_OVER_BUDGET = 0, 1, 2, 3


def add_common_options(p: argparse.ArgumentParser, data: bool = True, root: bool = True) -> None:
    """--root and --data, for the commands that read tours or the data directory."""
    if root:
        p.add_argument("--root", type=Path, default=None,
                       help="content root holding tours/ and assets/ (default: the "
                            "current directory if it has tours/, the one around a tour "
                            "folder, else the bundled demo, said on stderr)")
    if data:
        p.add_argument("--data", type=Path, default=None,
                       help=f"data directory (default: ${DATA_ENV} or "
                            f"{default_data_dir()})")


def make_parser() -> argparse.ArgumentParser:
    # Imported here, not above: the command modules import the exit codes from this one.
    from tourserver.cli import assets, authoring, deploy, keys, serving

    parser = argparse.ArgumentParser(prog="tourserver", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"tourserver {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in (serving, authoring, assets, keys, deploy):
        module.add_parsers(sub)
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
