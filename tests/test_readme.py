"""The README's two quick-start commands stay true, and CI runs the same test command."""

from __future__ import annotations

import re

from support import REPO


def readme_commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    quick = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```(?:sh|bash)\n(.+?)\n```", quick, flags=re.S)


def test_two_quick_start_commands():
    serve, test = readme_commands()[:2]
    assert "tourserver serve" in serve and "pip install" in serve
    assert "pytest" in test and "pip install" in test


def test_ci_runs_the_readme_test_command():
    test = readme_commands()[1].strip()
    assert test in (REPO / ".ci" / "run").read_text()
