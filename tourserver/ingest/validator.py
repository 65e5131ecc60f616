"""The Khronos glTF-Validator, run as a Node subprocess.

The validator is a Dart library compiled to JavaScript (npm `gltf-validator`); it has no
CLI, so `gltf_validator.mjs` beside this file wraps it. Node and the npm package are
optional at run time: `find_validator()` says plainly when they are missing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

_SCRIPT = Path(__file__).with_name("gltf_validator.mjs")


@dataclass(frozen=True)
class ValidatorReport:
    errors: int
    warnings: int
    messages: list[dict] = field(default_factory=list)
    raw: dict = field(default_factory=dict)


class ValidatorUnavailable(RuntimeError):
    """Node or the npm package gltf-validator cannot be found."""


def _node_modules_candidates() -> list[Path]:
    found = []
    env = os.environ.get("TOURSERVER_NODE_MODULES")
    if env:
        found.append(Path(env))
    # A source checkout keeps node_modules at the project root, beside the package.
    found.append(Path(__file__).resolve().parents[2] / "node_modules")
    found.append(Path.cwd() / "node_modules")
    return found


def find_validator() -> tuple[str, Path]:
    """Return (node executable, node_modules folder) or raise ValidatorUnavailable."""
    node = shutil.which("node")
    if node is None:
        raise ValidatorUnavailable("node is not on PATH; install Node.js to run gltf-validator")
    for candidate in _node_modules_candidates():
        if (candidate / "gltf-validator" / "package.json").is_file():
            return node, candidate
    raise ValidatorUnavailable(
        "npm package gltf-validator not found; run `npm install` in the project root"
    )


def validate_file(path: str | Path, timeout_s: float = 120.0) -> ValidatorReport:
    """Validate one .glb or .gltf file with the Khronos validator."""
    node, modules = find_validator()
    env = dict(os.environ, TOURSERVER_NODE_MODULES=str(modules))
    proc = subprocess.run(
        [node, str(_SCRIPT), str(path)],
        capture_output=True,
        timeout=timeout_s,
        env=env,
        check=False,
    )
    if proc.returncode != 0:
        raise ValidatorUnavailable(proc.stderr.decode(errors="replace").strip())
    raw = json.loads(proc.stdout)
    issues = raw.get("issues", {})
    return ValidatorReport(
        errors=int(issues.get("numErrors", 0)),
        warnings=int(issues.get("numWarnings", 0)),
        messages=list(issues.get("messages", [])),
        raw=raw,
    )
