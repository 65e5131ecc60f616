"""A bad file never takes a tour offline: `serve` falls back to the last good build, and a
running server swaps in a newly published build (every worker, requests in flight
finishing on the old one) without a restart."""

from __future__ import annotations

import copy
import gc
import hashlib
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
import weakref
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from support import MINI_TOUR, REPO, make_mini_root
from test_serve import Served, copy_of, free_port

from tourserver.config import Settings
from tourserver.files import atomic_write
from tourserver.http.app import create_app
from tourserver.http.keys import CATALOG, RELOADER
from tourserver.store.build import DataDir, build
from tourserver.store.catalog import load_published
from tourserver.store.keys import KeyStore

BIG = 16 * 1024 * 1024  # more than the kernel buffers on both sides hold
NARRATION = REPO / "assets/chongqing-night/narration/en/jiefangbei"


def mini_root(where: Path, big_audio: bool = False) -> Path:
    """The mini tour with real narration (the build checks audio by its bytes); with
    `big_audio`, its English M4A carries 16 MB more in an MP4 `free` box."""
    root = make_mini_root(where)
    for lang in ("en", "zh-Hans"):
        for ext in ("m4a", "mp3"):
            shutil.copyfile(f"{NARRATION}.{ext}", root / f"assets/mini/{lang}/a.{ext}")
    if big_audio:
        pad(root / "assets/mini/en/a.m4a")
    return root


def pad(m4a: Path) -> None:
    """New random padding: the same audio, another file (and another blob)."""
    audio = Path(f"{NARRATION}.m4a").read_bytes()
    m4a.write_bytes(audio + struct.pack(">I", 8 + BIG) + b"free" + os.urandom(BIG))


def publish(root: Path, data: Path) -> str:
    """`tourserver build` as a creator runs it, beside the running server."""
    proc = subprocess.run([sys.executable, "-m", "tourserver", "build", "--root", str(root),
                           "--data", str(data), "--json"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)["build_id"]


def retitle(root: Path, title: str) -> None:
    manifest = yaml.safe_load((root / "tours/mini/tour.yaml").read_text())
    manifest["title"]["en"] = title
    (root / "tours/mini/tour.yaml").write_text(yaml.safe_dump(manifest, allow_unicode=True))


def builds_by_worker(server: Served, want: str, timeout: float = 15.0) -> dict[int, str]:
    """Ask /v1/health on fresh connections (SO_REUSEPORT spreads them over the workers)
    until every worker seen reports `want`, or the time is up."""
    seen: dict[int, str] = {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        health = server.get_json("/v1/health")
        assert isinstance(health["reloading"], bool) and health["loaded_at"].endswith("Z")
        seen[health["worker"]] = health["build"]
        if len(seen) >= 2 and set(seen.values()) == {want}:
            break
        time.sleep(0.02)
    return seen


def failure_block(log: str) -> list[str]:
    lines = log.splitlines()
    assert sum(line.startswith("build failed") for line in lines) == 1, log
    start = next(i for i, line in enumerate(lines) if line.startswith("build failed"))
    end = next(i for i in range(start, len(lines)) if lines[i].startswith("see every problem"))
    return lines[start:end + 1]


# ---- serve falls back to the last good build -------------------------------------------

@pytest.mark.parametrize(("breakage", "named"), [
    ("scene", "a.glb"),  # random bytes where a GLB was: the build, not the manifest, fails
    ("manifest", "tour.yaml"),
])
def test_serve_keeps_serving_the_last_good_build_when_the_rebuild_fails(
        tmp_path, breakage, named):
    root = mini_root(tmp_path / "content")
    data = tmp_path / "data"
    good = Served(data, "--root", str(root))
    try:
        first = good.get_json("/v1/health")["build"]
    finally:
        assert good.stop() == 0
    if breakage == "scene":
        (root / "assets/mini/a.glb").write_bytes(os.urandom(4096))
    else:
        (root / "tours/mini/tour.yaml").write_text("id: [mini\n")

    server = Served(data, "--root", str(root))
    try:
        assert server.get_json("/v1/health")["build"] == first
        status, _, body = server.get("/v1/tours/mini")
        assert status == 200 and json.loads(body)["id"] == "mini"
    finally:
        assert server.stop() == 0
    log = server.log.read_text()
    assert "Traceback" not in log
    block = failure_block(log)
    assert any(named in line for line in block[1:-2]), block  # the problem, by file
    assert block[-2].startswith(f"serving the previous build {first} from ")
    assert block[-1] == f"see every problem with: tourserver validate --root {root}"


def test_serve_with_a_broken_scene_and_nothing_published_exits_1(tmp_path):
    root = mini_root(tmp_path / "content")
    (root / "assets/mini/a.glb").write_bytes(os.urandom(4096))
    proc = subprocess.run(
        [sys.executable, "-m", "tourserver", "serve", "--root", str(root), "--data",
         str(tmp_path / "data"), "--port", str(free_port())],
        capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "nothing was published" in proc.stderr and "a.glb" in proc.stderr
    assert "serving" not in proc.stderr


def test_serve_without_a_content_folder_says_it_serves_the_bundled_demo(tmp_path, demo_data):
    data = copy_of(demo_data, tmp_path)
    here = tmp_path / "elsewhere"
    here.mkdir()
    with socket.socket() as taken:  # the port is taken: serve says its first line, then stops
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        proc = subprocess.run(
            [sys.executable, "-m", "tourserver", "serve", "--data", str(data), "--port",
             str(taken.getsockname()[1])],
            cwd=here, capture_output=True, text=True, timeout=120,
            env={**os.environ, "PYTHONPATH": str(REPO)})
    first = proc.stderr.splitlines()[0]
    assert first == (f"serving the bundled demo tour from {REPO / 'tours'} (no tours/ folder "
                     f"in {here}; pass --root)"), proc.stderr
    assert proc.returncode == 1 and "cannot listen" in proc.stderr


# ---- hot reload ----------------------------------------------------------------------------

def test_two_workers_swap_in_a_new_build_while_a_download_is_in_flight(tmp_path):
    root = mini_root(tmp_path / "content", big_audio=True)
    data = tmp_path / "data"
    server = Served(data, "--root", str(root), "--workers", "2")
    try:
        old_build = server.get_json("/v1/health")["build"]
        audio = server.get_json("/v1/tours/mini?lang=en")["stops"][0]["narration"]["en"][
            "audio"][0]
        with socket.socket() as slow:  # a phone on a bad network: reads a little, then waits
            slow.settimeout(30)
            slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
            slow.connect(("127.0.0.1", server.port))
            slow.sendall(f"GET {audio['url']} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            received = slow.recv(4096)
            assert received.startswith(b"HTTP/1.1 200")

            # A new title and new narration are published while the download runs.
            retitle(root, "Mini tour, second edition")
            pad(root / "assets/mini/en/a.m4a")
            new_build = publish(root, data)
            assert new_build != old_build
            seen = builds_by_worker(server, new_build)
            assert len(seen) == 2 and set(seen.values()) == {new_build}, seen
            for _ in range(10):
                tour = server.get_json("/v1/tours/mini?lang=en")
                assert tour["title"] == {"en": "Mini tour, second edition"}
                assert tour["stops"][0]["narration"]["en"]["audio"][0]["url"] != audio["url"]

            while chunk := slow.recv(1 << 20):
                received += chunk
                if len(received.partition(b"\r\n\r\n")[2]) >= audio["bytes"]:
                    break
        body = received.partition(b"\r\n\r\n")[2]
        assert len(body) == audio["bytes"]
        assert hashlib.sha256(body).hexdigest() == audio["sha256"]  # the old build's file
    finally:
        assert server.stop() == 0
    log = server.log.read_text()
    assert log.count(f"reloaded: build {old_build} -> {new_build}") == 2  # once a worker


def test_sighup_reloads_every_worker_at_once(tmp_path, monkeypatch):
    root = mini_root(tmp_path / "content")
    data = tmp_path / "data"
    monkeypatch.setenv("TOURSERVER_RELOAD_POLL", "0")  # no polling: only SIGHUP reloads
    server = Served(data, "--root", str(root), "--workers", "2")
    try:
        old_build = server.get_json("/v1/health")["build"]
        retitle(root, "Mini tour, by SIGHUP")
        new_build = publish(root, data)
        time.sleep(2)
        assert set(builds_by_worker(server, new_build, timeout=1).values()) == {old_build}
        os.kill(server.proc.pid, signal.SIGHUP)  # the supervisor passes it to its workers
        seen = builds_by_worker(server, new_build, timeout=5)
        assert len(seen) == 2 and set(seen.values()) == {new_build}, seen
        assert server.get_json("/v1/tours/mini?lang=en")["title"] == {
            "en": "Mini tour, by SIGHUP"}
    finally:
        assert server.stop() == 0


def test_a_catalog_that_fails_to_load_leaves_the_old_build_serving(tmp_path):
    root = mini_root(tmp_path / "content")
    data = tmp_path / "data"
    server = Served(data, "--root", str(root))
    dd = DataDir(data)
    try:
        good = server.get_json("/v1/health")["build"]
        atomic_write(dd.current_file, b"0123456789abcdef")  # names a build that is not there
        time.sleep(2.5)  # two looks or more: logged once all the same
        assert server.get_json("/v1/health")["build"] == good
        atomic_write(dd.catalog_path("fedcba9876543210"), b'{"tours": [{"manifest": ')
        atomic_write(dd.current_file, b"fedcba9876543210")  # a damaged catalog
        os.kill(server.proc.pid, signal.SIGHUP)
        time.sleep(1.5)
        status, _, body = server.get("/v1/tours/mini")
        assert status == 200 and server.get_json("/v1/health")["build"] == good

        # The watch goes on: the good build named again is no change, a new one is taken.
        atomic_write(dd.current_file, good.encode())
        retitle(root, "Mini tour, fixed")
        fixed = publish(root, data)
        deadline = time.monotonic() + 10
        while server.get_json("/v1/health")["build"] != fixed:
            assert time.monotonic() < deadline, server.log.read_text()
            time.sleep(0.1)
    finally:
        assert server.stop() == 0
    errors = [json.loads(line) for line in server.log.read_text().splitlines()
              if line.startswith("{") and '"tourserver.reload"' in line
              and '"level":"error"' in line]
    assert [e["failed_build"] for e in errors] == ["0123456789abcdef", "fedcba9876543210"]
    assert "is missing" in errors[0]["msg"] and "cannot be read" in errors[1]["msg"]
    assert all(e["build"] == good for e in errors)


# ---- in process: the swap itself ------------------------------------------------------------

async def test_a_swap_gives_live_events_the_new_tours_and_frees_the_old_catalog(
        tmp_path, aiohttp_client):
    root = mini_root(tmp_path / "content")
    data = tmp_path / "data"
    build(root, data)
    app = create_app(Settings(data_dir=data, content_root=root, access_log=False),
                     load_published(data), reload_poll_s=0)
    client = await aiohttp_client(app)
    _, key = KeyStore(data).create("host", "tests")
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).isoformat(timespec="seconds")
    event = {"title": "Night walk", "tour": "night", "starts_at": tomorrow}
    auth = {"Authorization": f"Bearer {key}"}
    refused = await client.post("/v1/events", json=event, headers=auth)
    assert (await refused.json())["error"]["code"] == "tour_unknown"

    second = copy.deepcopy(MINI_TOUR)
    second["id"] = "night"
    for stop in second["stops"]:
        stop["id"] = "night-" + stop["id"]
        for scene in stop["scenes"]:
            scene["id"] = "night-" + scene["id"]
    make_mini_root(root, second)  # the same asset files: no need to copy them again
    new_build = build(root, data).build_id
    old = weakref.ref(app[CATALOG].catalog)
    gc.disable()  # the old catalog must go by reference counting alone: it is frozen in serve
    try:
        assert await app[RELOADER].check()
        assert not await app[RELOADER].check()  # the same build is never loaded twice
        assert old() is None
    finally:
        gc.enable()
    health = await (await client.get("/v1/health")).json()
    assert health["build"] == new_build and health["reloading"] is False
    tours = await (await client.get("/v1/tours")).json()
    assert sorted(t["id"] for t in tours["tours"]) == ["mini", "night"]
    created = await client.post("/v1/events", json=event, headers=auth)
    assert created.status == 201, await created.text()


def use_every_document(catalog) -> None:
    catalog.cached(("tour", "mini", None), lambda: catalog.tour_document("mini", None))
    catalog.cached(("pack", "mini", "en", None), lambda: catalog.pack("mini", "en", None))
    catalog.cached(("tileset", "mini"), lambda: catalog.tileset("mini"))
    catalog.cell_rendered(next(iter(catalog.cell_index[8])), 8)


def test_a_used_catalog_holds_no_reference_cycles(tmp_path):
    """What lets a frozen catalog (server.start freezes it) be freed after a swap."""
    build(mini_root(tmp_path / "content"), tmp_path / "data")
    catalog = load_published(tmp_path / "data")
    use_every_document(catalog)
    old = weakref.ref(catalog)
    gc.disable()
    try:
        del catalog
        assert old() is None
    finally:
        gc.enable()
