"""ruff is part of the suite, so CI fails on lint like on any other test."""

import re
import shutil
import subprocess

from support import REPO, require


def test_ruff_clean():
    ruff = shutil.which("ruff")
    require(ruff is not None, "ruff")
    proc = subprocess.run([ruff, "check", "tourserver", "tests", "tools"], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-4000:]


def test_core_does_not_import_the_edges():
    """model <- ingest <- pipeline <- store <- live <- {http, cli}: never the other way
    round (the core never imports the live layer; the HTTP layer mounts it)."""
    order = ["model", "ingest", "pipeline", "store", "live", "http"]
    for i, layer in enumerate(order):
        later = order[i + 1:] + ["cli", "render", "scaffold"]  # the CLI's own modules
        for path in (REPO / "tourserver" / layer).rglob("*.py"):
            imports = re.findall(r"^\s*(?:from|import)\s+([\w.]+)", path.read_text(), re.M)
            for other in later:
                assert not any(m.startswith(f"tourserver.{other}") for m in imports), (
                    f"{path} imports tourserver.{other}")
            if layer not in ("http", "live"):
                assert not any(m.split(".")[0] == "aiohttp" for m in imports), path
