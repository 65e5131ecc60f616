"""Small pieces the benchmarks share: the machine's CPU name, a grid-mesh GLB,
subprocesses in their own process groups, waiting for a server, running and reading wrk,
and finding a scene's variant in a published build."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, or "unknown"."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def grid_glb(xs: np.ndarray, ys: np.ndarray, zs: np.ndarray) -> bytes:
    """An untextured GLB of the height field ys over the (xs, zs) meshgrid, two triangles
    per cell."""
    import trimesh

    n = xs.shape[0]
    vertices = np.stack([xs.ravel(), ys.ravel(), zs.ravel()], axis=1)
    idx = np.arange(n * n).reshape(n, n)
    a, b = idx[:-1, :-1].ravel(), idx[:-1, 1:].ravel()
    c, d = idx[1:, :-1].ravel(), idx[1:, 1:].ravel()
    faces = np.concatenate([np.stack([a, c, b], 1), np.stack([b, c, d], 1)])
    mesh = trimesh.Trimesh(vertices=vertices, faces=faces, process=False)
    return trimesh.Scene(mesh).export(file_type="glb")


class Procs:
    """Subprocesses in their own process groups (stop() kills the whole group), and
    multiprocessing workers; stop_all() ends everything, workers first."""

    def __init__(self) -> None:
        self.running: list[subprocess.Popen] = []
        self.workers: list = []  # multiprocessing.Process

    def start(self, cmd: list[str], log: Path, stdout=None) -> subprocess.Popen:
        with open(log, "ab") as err:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                                    stdout=stdout if stdout is not None else err,
                                    stderr=err, start_new_session=True, cwd=str(REPO))
        self.running.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen, grace_s: float = 12.0) -> None:
        if proc in self.running:
            self.running.remove(proc)
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                pass
        try:  # whatever is left of the group (workers, orphans)
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        if proc.stdout is not None:
            proc.stdout.close()

    def stop_all(self, grace_s: float = 12.0) -> None:
        for w in self.workers:
            if w.is_alive():
                w.kill()
        for w in self.workers:
            w.join(timeout=5)
        self.workers = []
        for proc in list(reversed(self.running)):
            self.stop(proc, grace_s)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def tail(path: Path, n: int = 20) -> str:
    """The last n lines of a log, for an error message."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


class BenchError(RuntimeError):
    """A benchmark cannot go on: a tool is missing, a server did not start, output differs."""


def find_tool(cmd: str) -> str | None:
    """A command's path, also in the sbin folders (nginx lives there) a user's PATH lacks."""
    found = shutil.which(cmd)
    if found:
        return found
    for d in ("/usr/sbin", "/usr/local/sbin", "/sbin"):
        if os.access(f"{d}/{cmd}", os.X_OK):
            return f"{d}/{cmd}"
    return None


def fetch(url: str, accept_encoding: str | None = None, timeout: float = 10.0
          ) -> tuple[int, dict, bytes]:
    """Status, headers and the body as sent (urllib does not decode gzip)."""
    headers = {"User-Agent": "tourserver-bench"}
    if accept_encoding:
        headers["Accept-Encoding"] = accept_encoding
    req = urllib.request.Request(url, headers=headers)
    with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 (loopback only)
        return resp.status, dict(resp.headers), resp.read()


def wait_http(url: str, proc: subprocess.Popen, log: Path, timeout_s: float) -> None:
    """Until `url` answers 200; BenchError (with the log's tail) if `proc` exits first."""
    deadline = time.monotonic() + timeout_s
    while True:
        if proc.poll() is not None:
            raise BenchError(f"{proc.args[0]} exited with {proc.returncode}:\n{tail(log)}")
        try:
            if fetch(url, timeout=2)[0] == 200:
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise BenchError(f"{url} did not answer within {timeout_s:g} s:\n{tail(log)}")
        time.sleep(0.1)


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text.strip())
    if not m:
        raise BenchError(f"cannot read wrk latency {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse_wrk(out: str) -> dict:
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in ([\d.]+\w+), ([\d.]+\w+) read", out)
    if not rps or not total:
        raise BenchError(f"cannot parse wrk output:\n{out}")
    pct = {p: _ms(v) for p, v in re.findall(r"^\s+(50|75|90|99)%\s+(\S+)", out, re.M)}
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
                       out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "rps": float(rps.group(1)),
        "requests": int(total.group(1)),
        "read": total.group(3),
        "p50_ms": pct.get("50"), "p75_ms": pct.get("75"),
        "p90_ms": pct.get("90"), "p99_ms": pct.get("99"),
        "socket_errors": sum(map(int, errors.groups())) if errors else 0,
        "non_2xx": int(non2xx.group(1)) if non2xx else 0,
    }


def run_wrk(wrk: str, url: str, connections: int, duration: int,
            accept_encoding: str | None = None) -> dict:
    """One wrk run (2 threads at most): requests per second, latency percentiles, errors."""
    threads = max(1, min(2, connections))
    cmd = [wrk, f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--latency"]
    if accept_encoding:
        cmd += ["-H", f"Accept-Encoding: {accept_encoding}"]
    cmd.append(url)
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60)
    if out.returncode != 0:
        raise BenchError(f"wrk failed ({out.returncode}): {out.stderr.strip()}")
    return parse_wrk(out.stdout)


def high_variant(data: Path, scene_id: str) -> tuple[str, int, Path]:
    """(name, bytes, path) of the "high" tier variant of a scene in a published build."""
    build_id = (data / "current").read_text().strip()
    catalog = json.loads((data / "builds" / f"{build_id}.json").read_text("utf-8"))
    for v in catalog["scenes"][scene_id]["variants"]:
        if v["tier"] == "high":
            blob = v["blob"]
            name = f"{blob['sha256']}.{blob['ext']}"
            path = data / "blobs" / blob["sha256"][:2] / name
            if not path.is_file() or path.stat().st_size != blob["bytes"]:
                raise BenchError(f"blob {path} is missing or has the wrong size")
            return name, int(blob["bytes"]), path
    raise BenchError("the build has no high variant for the benchmark scene")


