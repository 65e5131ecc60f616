"""A real `tourserver serve` process on the bundled tour: what a phone and an operator see."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import h3
import pytest
from support import REPO, make_mini_root, node_validator_available, require

from tourserver.ingest.validator import validate_file


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Served:
    def __init__(self, data: Path, *extra: str):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = data.parent / f"serve-{self.port}.log"
        self._log_fh = open(self.log, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tourserver", "serve", "--data", str(data),
             "--port", str(self.port), *extra],
            cwd=REPO, stdout=self._log_fh, stderr=subprocess.STDOUT,
            start_new_session=True)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"serve exited early:\n{self.log.read_text()}")
            try:
                self.get("/v1/health")
                return
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise AssertionError(f"serve did not come up:\n{self.log.read_text()}")

    def get(self, path: str, headers: dict | None = None):
        req = urllib.request.Request(self.base + path, headers=headers or {})
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, dict(resp.headers), resp.read()

    def get_json(self, path: str):
        return json.loads(self.get(path)[2])

    def stop(self, sig=signal.SIGTERM, timeout=30) -> int:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._log_fh.close()
        return self.proc.returncode


def copy_of(demo_data: Path, where: Path) -> Path:
    """A private copy of the session's built demo data: `serve` finds it up to date, so
    each server starts in a second instead of rebuilding every scene."""
    target = where / "data"
    shutil.copytree(demo_data, target)
    return target


@pytest.fixture(scope="module")
def served(tmp_path_factory, demo_data):
    data = copy_of(demo_data, tmp_path_factory.mktemp("serve"))
    server = Served(data, "--header-timeout", "1")
    yield server
    server.stop()


def test_every_glb_the_server_hands_out_passes_the_khronos_validator(served, tmp_path):
    require(node_validator_available(), "node + npm gltf-validator")
    tours = served.get_json("/v1/tours")["tours"]
    assert [t["id"] for t in tours] == ["chongqing-night"]
    tour = served.get_json("/v1/tours/chongqing-night")
    assert len(tour["stops"]) >= 5
    checked = 0
    for stop in tour["stops"]:
        for scene_ref in stop["scenes"]:
            scene = served.get_json(scene_ref["url"])
            for variant in scene["variants"]:
                status, headers, body = served.get(variant["url"])
                assert status == 200 and headers["Content-Type"] == "model/gltf-binary"
                assert len(body) == variant["bytes"]
                path = tmp_path / f"{scene['id']}-{variant['tier']}.glb"
                path.write_bytes(body)
                report = validate_file(path)
                assert report.errors == 0, (path.name, report.messages[:5])
                checked += 1
    assert checked >= 15


def test_hero_scene_is_heavy_enough_for_lods_to_matter(served):
    scene = served.get_json("/v1/scenes/hongya-cave-facade")
    tiers = {v["tier"]: v for v in scene["variants"]}
    assert tiers["high"]["triangles"] > 100_000
    assert tiers["high"]["triangles"] > tiers["medium"]["triangles"] > tiers["low"]["triangles"]
    assert tiers["high"]["bytes"] > tiers["low"]["bytes"]
    assert tiers["low"]["max_texture_px"] <= 512


def test_every_scene_gets_lighter_from_tier_to_tier(served):
    """A lighter tier never costs more bytes, triangles or texture size than a richer one."""
    tour = served.get_json("/v1/tours/chongqing-night")
    for stop in tour["stops"]:
        for ref in stop["scenes"]:
            tiers = {v["tier"]: v for v in served.get_json(ref["url"])["variants"]}
            for key in ("bytes", "triangles", "max_texture_px"):
                assert tiers["high"][key] >= tiers["medium"][key] >= tiers["low"][key], (
                    ref["url"], key)


def test_bundled_narration_and_discovery(served):
    tour = served.get_json("/v1/tours/chongqing-night?lang=en")
    for stop in tour["stops"]:
        narration = stop["narration"]["en"]
        assert narration["audio"][0]["mime"] == "audio/mp4"
        status, headers, body = served.get(narration["audio"][0]["url"],
                                           {"Range": "bytes=0-1"})  # Safari's probe
        assert status == 206 and len(body) == 2
        status, headers, vtt = served.get(narration["subtitles"]["url"])
        assert vtt.startswith(b"WEBVTT") and headers["Content-Type"].startswith("text/vtt")
        pose = stop["anchor"]["geopose"]["position"]
        cell = h3.latlng_to_cell(pose["lat"], pose["lon"], 8)
        found = served.get_json(f"/v1/cells/{cell}")
        assert stop["id"] in [s["id"] for s in found["stops"]]
        assert "chongqing-night" in [t["id"] for t in found["tours"]]


def test_logs_are_json_and_never_hold_a_location(served):
    cell = h3.latlng_to_cell(29.5628, 106.5790, 7)
    served.get(f"/v1/cells/{cell}")
    time.sleep(0.3)
    text = served.log.read_text()
    assert cell not in text
    for line in text.splitlines():
        if line.startswith("{"):
            entry = json.loads(line)
            assert "remote" not in json.dumps(entry)
    assert '"route":"/v1/cells/{cell}"' in text


def test_slow_client_gets_408_and_is_disconnected(served):
    with socket.create_connection(("127.0.0.1", served.port), timeout=10) as s:
        s.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n")  # never finishes the head
        started = time.monotonic()
        data = b""
        while chunk := s.recv(4096):
            data += chunk
        assert time.monotonic() - started < 5
    assert data.startswith(b"HTTP/1.1 408")
    assert b'"code":"header_timeout"' in data


def test_idle_connection_is_closed_too(served):
    with socket.create_connection(("127.0.0.1", served.port), timeout=10) as s:
        started = time.monotonic()
        assert s.recv(4096).startswith(b"HTTP/1.1 408")
        assert time.monotonic() - started < 5


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"GET /v1/health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n", 431),
        (b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n", 400),
    ],
    ids=["huge-header", "huge-url", "tls-to-http"],
)
def test_malformed_requests_get_json_4xx(served, raw, status):
    with socket.create_connection(("127.0.0.1", served.port), timeout=10) as s:
        s.sendall(raw)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head[:9] in (b"HTTP/1.1 ", b"HTTP/1.0 ") and head[9:12] == str(status).encode()
    assert json.loads(body)["error"]["code"] in ("bad_request", "uri_too_long",
                                                 "headers_too_large")


def test_two_workers_share_one_port(tmp_path, demo_data):
    data = copy_of(demo_data, tmp_path)
    server = Served(data, "--workers", "2")
    try:
        # Both processes accept on the same port (SO_REUSEPORT spreads new connections);
        # the second may still be starting when the first answers.
        workers: set[int] = set()
        deadline = time.monotonic() + 60
        while len(workers) < 2 and time.monotonic() < deadline:
            workers.add(server.get_json("/v1/health")["worker"])
        assert len(workers) == 2
    finally:
        assert server.stop() == 0


def test_sigterm_finishes_the_request_in_flight(tmp_path):
    # A tour whose narration is 16 MB: more than the kernel buffers on both sides hold, so
    # the server is still sending when it is told to stop.
    root = make_mini_root(tmp_path / "content")
    mp3 = root / "assets/mini/en/a.mp3"
    mp3.write_bytes(mp3.read_bytes() * 72)  # real MP3 frames: audio is checked by content
    server = Served(tmp_path / "data", "--root", str(root))
    tour = server.get_json("/v1/tours/mini?lang=en")
    audio = tour["stops"][0]["narration"]["en"]["audio"][1]
    assert audio["url"].endswith(".mp3") and audio["bytes"] > 16_000_000
    with socket.socket() as s:
        s.settimeout(30)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)  # before connect: fixed
        s.connect(("127.0.0.1", server.port))
        s.sendall(f"GET {audio['url']} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        first = s.recv(4096)
        assert first.startswith(b"HTTP/1.1 200")
        os.killpg(server.proc.pid, signal.SIGTERM)
        time.sleep(0.5)
        received = first
        while chunk := s.recv(1 << 20):
            received += chunk
    body = received.partition(b"\r\n\r\n")[2]
    assert len(body) == audio["bytes"]
    assert server.proc.wait(30) == 0  # and then it exits cleanly by itself
    server.stop()
    log = server.log.read_text()
    # The download really was in flight: shutdown began before it was logged as done.
    assert log.index("shutting down") < log.index('"route":"/c/{name}"')


@pytest.mark.parametrize("damage", ["missing", "corrupt"])
def test_workers_that_cannot_load_the_build_stop_serve_clearly(tmp_path, damage):
    """With --workers 2 the supervisor only checks the build's files are there (each worker
    loads it): missing files fail in the supervisor, damaged ones in the workers; either
    way `serve` exits 1 with one clear line naming the file, and no traceback."""
    root = make_mini_root(tmp_path / "content")
    data = tmp_path / "data"
    build = subprocess.run([sys.executable, "-m", "tourserver", "build", "--root", str(root),
                            "--data", str(data)], capture_output=True, text=True, timeout=120)
    assert build.returncode == 0, build.stderr
    build_id = (data / "current").read_text().strip()
    tours_file = data / "builds" / build_id / "tours-1.json"
    if damage == "missing":
        tours_file.unlink()
    else:
        tours_file.write_bytes(tours_file.read_bytes()[:100])
    proc = subprocess.run(
        [sys.executable, "-m", "tourserver", "serve", "--no-build", "--workers", "2",
         "--data", str(data), "--port", str(free_port())],
        capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "tours-1.json" in proc.stderr and "tourserver build --force" in proc.stderr


def test_serve_with_invalid_tours_and_nothing_published_fails_clearly(tmp_path):
    (tmp_path / "tours" / "broken").mkdir(parents=True)
    (tmp_path / "tours" / "broken" / "tour.yaml").write_text("id: [\n")
    proc = subprocess.run(
        [sys.executable, "-m", "tourserver", "serve", "--root", str(tmp_path), "--data",
         str(tmp_path / "data"), "--port", str(free_port())],
        capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert "tour.yaml" in proc.stderr and "nothing was published" in proc.stderr


def test_serve_without_tours_says_where_it_looked(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "tourserver", "serve", "--root", str(tmp_path), "--data",
         str(tmp_path / "data"), "--port", str(free_port())],
        capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert f"no tours/ folder in {tmp_path}" in proc.stderr and "--root" in proc.stderr


@pytest.mark.parametrize("workers", [1, 2])
def test_serve_on_a_port_in_use_fails_clearly(tmp_path, demo_data, workers):
    data = copy_of(demo_data, tmp_path)
    with socket.socket() as taken:  # a listener that does not share the port
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run(
            [sys.executable, "-m", "tourserver", "serve", "--data", str(data), "--port",
             str(port), "--workers", str(workers)],
            cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in proc.stderr
    assert "serving http" not in proc.stderr  # it never said it was serving


def test_one_worker_failing_stops_the_others(tmp_path, demo_data):
    # The second worker cannot load its catalog: the supervisor stops the first, which is
    # serving, and exits 1 rather than running on at half size.
    script = f"""
import functools, sys
sys.path.insert(0, {str(REPO / "tests")!r})
from pathlib import Path
from support import first_loader_only
from tourserver.config import Settings
from tourserver.http.server import serve
settings = Settings(data_dir=Path({str(demo_data)!r}), port={free_port()}, workers=2)
sys.exit(serve(settings, functools.partial(first_loader_only, Path({str(demo_data)!r}),
                                           Path({str(tmp_path / "marker")!r}))))
"""
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "error: this worker was told to fail" in proc.stderr
    assert "Traceback" not in proc.stderr
