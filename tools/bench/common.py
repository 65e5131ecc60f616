"""Small pieces the benchmarks share: the machine's CPU name, a grid-mesh GLB, and
subprocesses in their own process groups."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
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
