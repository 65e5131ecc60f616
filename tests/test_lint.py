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
    """model <- gltf <- ingest <- pipeline <- store <- live <- {http, cli}: never the other
    way round (the core never imports the live layer; the HTTP layer mounts it)."""
    order = ["model", "gltf", "ingest", "pipeline", "store", "live", "http"]
    for i, layer in enumerate(order):
        later = order[i + 1:] + ["cli", "render", "scaffold"]  # the CLI's own modules
        for path in (REPO / "tourserver" / layer).rglob("*.py"):
            imports = re.findall(r"^\s*(?:from|import)\s+([\w.]+)", path.read_text(), re.M)
            for other in later:
                assert not any(m.startswith(f"tourserver.{other}") for m in imports), (
                    f"{path} imports tourserver.{other}")
            if layer not in ("http", "live"):
                assert not any(m.split(".")[0] == "aiohttp" for m in imports), path


# Pipeline modules that are not transforms: the protocol, the chain, presets and reports.
PIPELINE_FRAME = {"base", "optimize", "presets", "report", "session"}


def test_no_transform_imports_another():
    """Every transform stands on the gltf layer and `pipeline.base` alone (glTF-Transform's
    rule): one that needs another's helper means the helper belongs in `tourserver.gltf`.
    Modules of one sub-package (`pipeline/textures/`) may use each other."""
    pipeline = REPO / "tourserver" / "pipeline"
    for path in pipeline.rglob("*.py"):
        if path.stem in PIPELINE_FRAME or path.stem == "__init__":
            continue
        package = path.parent.relative_to(pipeline).parts
        imports = re.findall(r"^\s*(?:from|import)\s+(tourserver\.pipeline[\w.]*)",
                             path.read_text(), re.M)
        for module in imports:
            parts = module.split(".")[2:]
            if not parts or parts[0] == "base":
                continue
            assert package and tuple(parts[:len(package)]) == package, (
                f"{path.relative_to(REPO)} imports {module}")


def test_types_check():
    """mypy over the package with the configuration in pyproject.toml ([tool.mypy])."""
    mypy = shutil.which("mypy")
    require(mypy is not None, "mypy")
    proc = subprocess.run([mypy], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:]
