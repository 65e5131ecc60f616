"""Logs and operations: readable lines on a terminal, JSON lines otherwise, neither ever
holding a location, a cell, a query or a client address; /metrics of several workers."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import h3
import pytest
from support import REPO

from tourserver.config import Settings
from tourserver.http.app import create_app
from tourserver.logs import (
    JsonFormatter,
    TextFormatter,
    make_formatter,
    resolve_log_format,
    setup_logging,
)
from tourserver.store.catalog import load_published

ACCESS = {"http": {"method": "GET", "route": "/v1/tours/{tour_id}", "status": 200,
                   "ms": 1.234, "bytes": 3481}}
TEXT_LINE = re.compile(r"^\d\d:\d\d:\d\d (debug|info |warn |error|crit ) [\w.-]+ \S")


def record(name: str = "tourserver.access", msg: str = "request", args: tuple = (),
           level: int = logging.INFO, extra: dict | None = None) -> logging.LogRecord:
    rec = logging.LogRecord(name, level, __file__, 1, msg, args, None)
    for key, value in (extra or {}).items():
        setattr(rec, key, value)
    return rec


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture()
def restore_logging():
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


# ---- the two formats ---------------------------------------------------------------------

def test_text_access_line_is_compact_and_readable():
    rec = record(extra=ACCESS)
    line = TextFormatter().format(rec)
    stamp = time.strftime("%H:%M:%S", time.localtime(rec.created))
    assert line == f"{stamp} info  access GET /v1/tours/{{tour_id}} 200 1.2 ms 3.4 KB"


def test_text_line_carries_the_extras_as_key_value_pairs():
    rec = record("tourserver.reload", "build %s not loaded", ("b2",), logging.ERROR,
                 {"build": "b1", "failed_build": "b2", "worker": 41,
                  "server": {"host": "0.0.0.0", "note": "two words"}})
    line = TextFormatter().format(rec)
    assert line.split(" ", 1)[1] == (
        'error reload build b2 not loaded build=b1 failed_build=b2 worker=41 '
        'server.host=0.0.0.0 server.note="two words"')


def test_json_line_carries_the_same_fields():
    rec = record(extra=ACCESS)
    entry = json.loads(JsonFormatter().format(rec))
    assert entry["level"] == "info" and entry["logger"] == "tourserver.access"
    assert entry["msg"] == "request" and entry["http"] == ACCESS["http"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", entry["ts"])


def test_text_escapes_control_characters_and_indents_continuations():
    """A value cannot forge a second log line or drive the operator's terminal."""
    rec = record("tourserver.http", "rejected: %s", ("bad\x1b[2J\r\nFAKE 00:00:00 info",),
                 logging.WARNING)
    line = TextFormatter(colour=True).format(rec)
    assert "\x1b[2J" not in line and "\\x1b[2J" in line and "\\x0d" in line
    assert line.splitlines()[1] == "    FAKE 00:00:00 info"


@pytest.mark.parametrize("formatter", [TextFormatter(), JsonFormatter()],
                         ids=["text", "json"])
def test_text_we_did_not_write_loses_its_cells_queries_and_coordinates(formatter):
    """aiohttp's parser quotes the start of a request line it refuses; an exception message
    may quote a path. Neither reaches the log with a location in it."""
    quoted = ("Got more than 8190 bytes when reading: bytearray(b'/v1/cells/882a100d25fffff"
              "?lat=29.5572&lon=106.5770&pad=aaaa...').")
    rec = record("tourserver.server", "rejected malformed request: %s", (quoted,),
                 extra={"detail": {"near": "29.557200,106.577012"}, "build": "8e2a1f4c9b0d7a63"})
    try:
        raise ValueError("no scene at /v1/cells/872a100d2ffffff?x=1")
    except ValueError:
        rec.exc_info = sys.exc_info()
    line = formatter.format(rec)
    for secret in ("882a100d25fffff", "872a100d2ffffff", "lat=", "29.55", "106.577", "x=1"):
        assert secret not in line, (secret, line)
    assert "/v1/cells/{cell}?{query}" in line and "{coord},{coord}" in line
    assert "8e2a1f4c9b0d7a63" in line  # a 16-digit build id is not a cell
    if isinstance(formatter, JsonFormatter):
        assert json.loads(line)["detail"] == {"near": "{coord},{coord}"}


def test_traceback_follows_a_text_line_indented():
    try:
        raise KeyError("boom")
    except KeyError:
        rec = record("tourserver.http", "unhandled", level=logging.ERROR)
        rec.exc_info = sys.exc_info()
    lines = TextFormatter().format(rec).splitlines()
    assert lines[0].endswith("error http unhandled")
    assert lines[1] == "    Traceback (most recent call last):"
    assert all(line.startswith("    ") for line in lines[1:])


def test_colour_only_on_a_terminal_and_never_with_no_color(monkeypatch):
    rec = record(extra={"http": {**ACCESS["http"], "status": 503}})
    monkeypatch.delenv("NO_COLOR", raising=False)
    assert "\x1b[31m503\x1b[0m" in make_formatter("text", FakeTerminal()).format(rec)
    assert "\x1b" not in make_formatter("text", io.StringIO()).format(rec)
    monkeypatch.setenv("NO_COLOR", "1")
    assert "\x1b" not in make_formatter("text", FakeTerminal()).format(rec)


def test_format_follows_the_flag_then_the_environment_then_the_terminal(monkeypatch):
    monkeypatch.delenv("TOURSERVER_LOG_FORMAT", raising=False)
    assert resolve_log_format(None, FakeTerminal()) == "text"
    assert resolve_log_format(None, io.StringIO()) == "json"
    monkeypatch.setenv("TOURSERVER_LOG_FORMAT", "json")
    assert resolve_log_format(None, FakeTerminal()) == "json"
    assert resolve_log_format("text", io.StringIO()) == "text"
    monkeypatch.setenv("TOURSERVER_LOG_FORMAT", "yaml")
    with pytest.raises(ValueError, match="TOURSERVER_LOG_FORMAT must be text or json"):
        resolve_log_format(None, io.StringIO())


def test_invalid_log_format_is_a_usage_error(tmp_path):
    env = {**os.environ, "TOURSERVER_LOG_FORMAT": "xml"}
    proc = subprocess.run([sys.executable, "-m", "tourserver", "serve", "--no-build",
                           "--data", str(tmp_path)], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2
    assert "usage error: TOURSERVER_LOG_FORMAT must be text or json, not 'xml'" in proc.stderr
    assert "Traceback" not in proc.stderr


# ---- privacy, through the real application -----------------------------------------------

@pytest.mark.parametrize("fmt", ["text", "json"])
async def test_logs_never_hold_a_cell_a_query_or_an_address(fmt, aiohttp_client, mini_built,
                                                            restore_logging):
    root, data = mini_built
    stream = io.StringIO()
    setup_logging(fmt, stream=stream)
    settings = Settings(data_dir=data, content_root=root)
    client = await aiohttp_client(create_app(settings, load_published(data)))
    lat, lon = 29.5572, 106.5770
    cell = h3.latlng_to_cell(lat, lon, 8)
    fine = h3.latlng_to_cell(lat, lon, 12)
    spy = {"X-Forwarded-For": "203.0.113.7", "X-Real-IP": "203.0.113.7"}
    requests = [(f"/v1/cells/{cell}?lat={lat}&lon={lon}", 200),
                (f"/v1/cells/{fine}", 400),  # too fine: refused, and not logged either
                ("/v1/tours/mini?lang=en&where=secret-spot", 200),
                (f"/v1/nothing/{cell}?lat={lat}", 404),
                ("/v1/scenes/mini-a-scene/glb?tier=low", 302)]
    for url, status in requests:
        resp = await client.get(url, headers=spy, allow_redirects=False)
        assert resp.status == status, url
    text = stream.getvalue()
    access = [line for line in text.splitlines() if "access" in line]
    assert len(access) == len(requests), text
    for secret in (cell, fine, str(lat), str(lon), "lat=", "secret-spot", "?",
                   "127.0.0.1", "203.0.113.7"):
        assert secret not in text, (secret, text)
    if fmt == "json":
        routes = [json.loads(line)["http"]["route"] for line in access]
        assert routes == ["/v1/cells/{cell}", "/v1/cells/{cell}", "/v1/tours/{tour_id}",
                          "unmatched", "/v1/scenes/{scene_id}/glb"]
    else:
        assert all(TEXT_LINE.match(line) for line in text.splitlines()), text
        assert " access GET /v1/cells/{cell} 200 " in access[0]
        assert " access GET /v1/cells/{cell} 400 " in access[1]
        assert " access GET unmatched 404 " in access[3]


# ---- a real `serve`: its first lines, its workers, its metrics ---------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(base: str, path: str) -> bytes:
    with urllib.request.urlopen(base + path, timeout=30) as resp:  # a new connection each
        return resp.read()


@pytest.fixture(scope="module")
def two_workers_text(mini_built, tmp_path_factory):
    """`serve --log-format text --workers 2` on the mini tour, its stderr in a file."""
    _, built = mini_built
    data = tmp_path_factory.mktemp("logs") / "data"
    shutil.copytree(built, data)
    port = _free_port()
    log = data.parent / "serve.log"
    env = {k: v for k, v in os.environ.items()
           if k not in ("TOURSERVER_LOG_FORMAT", "PROMETHEUS_MULTIPROC_DIR")}
    with open(log, "wb") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "tourserver", "serve", "--no-build",
                                 "--data", str(data), "--port", str(port), "--workers", "2",
                                 "--log-format", "text"], cwd=REPO, env=env, stdout=fh,
                                stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            try:
                _get(base, "/v1/health")
                break
            except OSError:
                time.sleep(0.2)
        yield base, log
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)


def test_serve_log_format_text_reads_as_lines_in_every_worker(two_workers_text):
    base, log = two_workers_text
    _get(base, "/v1/tours/mini")
    time.sleep(0.3)
    lines = log.read_text().splitlines()
    assert lines[0].startswith("tourserver ") and " serving http://127.0.0.1:" in lines[0]
    logged = lines[1:]
    assert logged and not any(line.startswith("{") for line in logged), lines
    assert all(TEXT_LINE.match(line) for line in logged), lines
    # Both spawned workers chose the format the supervisor was given.
    pids = {m.group(1) for line in logged if (m := re.search(r" server\.pid=(\d+)", line))}
    assert len(pids) == 2, lines
    assert any(" info  access GET /v1/tours/{tour_id} 200 " in line for line in logged)


def test_a_refused_request_line_is_logged_without_its_cell_or_query(two_workers_text):
    base, log = two_workers_text
    cell = h3.latlng_to_cell(29.5572, 106.5770, 8)
    port = int(base.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(f"GET /v1/cells/{cell}?lat=29.5572&pad={'a' * 9000} HTTP/1.1\r\n"
                  "Host: x\r\n\r\n".encode())
        assert re.match(rb"HTTP/1\.[01] 4\d\d ", s.recv(4096))
    time.sleep(0.3)
    text = log.read_text()
    assert "rejected" in text  # the refusal is logged, and with nothing to place it
    assert cell not in text and "lat=" not in text and "29.5572" not in text


def test_metrics_on_any_worker_count_every_worker(two_workers_text):
    base, _ = two_workers_text
    workers: set[int] = set()
    served = 0
    while len(workers) < 2 or served < 20:
        workers.add(json.loads(_get(base, "/v1/health"))["worker"])
        _get(base, "/v1/anchors/mini-a")
        served += 1
        assert served < 500, "one worker took every connection"
    pattern = re.compile(r'^tourserver_http_requests_total\{method="GET",'
                         r'route="/v1/anchors/\{anchor_id\}",status="200"\} (\S+)$', re.M)
    for _ in range(10):  # scrapes land on either worker: each must report the node's total
        body = _get(base, "/metrics").decode()
        assert [float(x) for x in pattern.findall(body)] == [served], body
    assert "tourserver_http_request_duration_seconds_bucket" in body
    assert "anchor_id" in body and "mini-a" not in body


async def test_metrics_count_open_live_sockets(mini_built, tmp_path):
    from live_support import LiveServer, private_data

    root, built = mini_built
    server = LiveServer(private_data(built, tmp_path), root)
    pattern = re.compile(r"^tourserver_live_sockets (\S+)$", re.M)

    def sockets() -> float:
        _, _, body = server.call("GET", "/metrics")
        return float(pattern.search(body.decode()).group(1))

    try:
        event = await asyncio.to_thread(server.create_event)
        assert await asyncio.to_thread(sockets) == 0
        clients = [await server.attendee(event["id"], name=f"a{i}") for i in range(3)]
        assert await asyncio.to_thread(sockets) == 3
        await clients[0].close()
        deadline = time.monotonic() + 10
        while (count := await asyncio.to_thread(sockets)) != 2:
            assert time.monotonic() < deadline, count
            await asyncio.sleep(0.1)
        for client in clients[1:]:
            await client.close()
    finally:
        server.stop()


def test_the_access_log_is_written_once_per_loop_turn_in_the_same_shape(capsys):
    import asyncio
    import io

    from tourserver.logs import AccessLog, setup_logging

    for fmt in ("json", "text"):
        stream = io.StringIO()
        setup_logging(fmt, stream=stream)
        access = AccessLog()

        async def two_requests(access: AccessLog = access, stream: io.StringIO = stream) -> str:
            for route in ("/v1/cells/{cell}", "/v1/tours"):
                access.request({"method": "GET", "route": route, "status": 200, "ms": 0.25,
                                "bytes": 1234})
            before = stream.getvalue()  # nothing written yet: one write per loop turn
            await asyncio.sleep(0)
            return before

        assert asyncio.run(two_requests()) == ""
        lines = stream.getvalue().splitlines()
        assert len(lines) == 2, lines
        if fmt == "json":
            entry = json.loads(lines[0])
            assert {k: entry[k] for k in ("level", "logger", "msg")} == {
                "level": "info", "logger": "tourserver.access", "msg": "request"}
            assert entry["http"]["route"] == "/v1/cells/{cell}" and entry["ts"].endswith("Z")
        else:
            assert "GET /v1/cells/{cell} 200" in lines[0] and "/v1/tours" in lines[1]
