"""What the commands print besides their own reports: problems grouped by file or as one
JSON document, and progress on a terminal."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

from tourserver.errors import Issue


def _say_issues(issues: Sequence[Issue], root: Path | None = None, *,
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


def _progress(quiet: bool):
    """A one-line progress display on a terminal; nothing when piped, --quiet or --json."""
    if quiet or not sys.stderr.isatty():
        return None

    def show(done: int, total: int, name: str) -> None:
        end = "\n" if done == total else ""
        print(f"\r[{done}/{total}] {name:<24}", end=end, file=sys.stderr, flush=True)

    return show


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
