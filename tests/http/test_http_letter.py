"""HTTP to the letter (issue 17): CORS on every response, client hints, RFC 9110 ranges and
If-Range on /c/, keys checked off the event loop, and the server's protocol guard (head
deadline, keep-alive, WebSocket upgrade, JSON for what the parser refuses) on a real socket.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import json
import socket
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest

from tourserver.config import Limits, Settings
from tourserver.http import server
from tourserver.http.app import create_app
from tourserver.http.middleware import install_headers
from tourserver.model.variants import CLIENT_HINTS
from tourserver.store.catalog import load_published
from tourserver.store.keys import KeyStore

EXPOSED = {"etag", "content-range", "accept-ranges", "content-length", "content-encoding",
           "location", "retry-after", "x-tourserver-tier"}


@pytest.fixture()
def catalog(mini_data):
    return load_published(mini_data)


@pytest.fixture()
def settings(mini_data, mini_root):
    return Settings(data_dir=mini_data, content_root=mini_root, access_log=False)


@pytest.fixture()
async def client(aiohttp_client, settings, catalog):
    app = create_app(settings, catalog)
    install_headers(app)  # idempotent: app.py may already have done it
    # aiohttp's test server is a real TCP socket: /c/ goes out with sendfile, as in production
    return await aiohttp_client(app)


def blob(catalog, ext: str):
    name = next(n for n in catalog.blobs if n.endswith("." + ext))
    return name, catalog.blobs[name]


async def whole(client, name: str) -> bytes:
    resp = await client.get(f"/c/{name}")
    assert resp.status == 200
    return await resp.read()


def assert_cors(resp) -> None:
    h = resp.headers
    assert h["Access-Control-Allow-Origin"] == "*", (resp.status, resp.url)
    exposed = {v.strip().lower() for v in h["Access-Control-Expose-Headers"].split(",")}
    assert EXPOSED <= exposed
    assert h["X-Content-Type-Options"] == "nosniff" and h["Referrer-Policy"] == "no-referrer"


# -- CORS and security headers on every response -----------------------------------------

async def test_cors_on_content_get_head_206_304_404(client, catalog):
    name, ref = blob(catalog, "glb")
    etag = f'"{ref.sha256}"'
    cases = [("GET", {}, 200), ("HEAD", {}, 200), ("GET", {"Range": "bytes=0-3"}, 206),
             ("GET", {"Range": "bytes=0-1,4-5"}, 206), ("GET", {"If-None-Match": etag}, 304),
             ("HEAD", {"If-None-Match": etag}, 304), ("GET", {"Range": "bytes=99999999-"}, 416)]
    for method, headers, status in cases:
        resp = await client.request(method, f"/c/{name}", headers=headers)
        await resp.read()
        assert resp.status == status, (method, headers)
        assert_cors(resp)
    resp = await client.get("/c/" + "0" * 64 + ".glb")
    assert resp.status == 404 and (await resp.json())["error"]["code"] == "not_found"
    assert_cors(resp)


async def test_cors_on_api_errors_and_preflight(client):
    for path, status in [("/v1/tours", 200), ("/v1/tours/nope", 404),
                         ("/v1/scenes/mini-a-scene/glb?tier=ultra", 400), ("/nowhere", 404),
                         ("/v1/health", 200), ("/", 200)]:
        resp = await client.get(path, allow_redirects=False)
        assert resp.status == status, path
        assert_cors(resp)
    resp = await client.post("/v1/tours")
    assert resp.status == 405 and "GET" in resp.headers["Allow"]
    assert_cors(resp)
    pre = await client.options("/c/x.glb", headers={
        "Origin": "https://viewer.example", "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "Range, If-None-Match, ECT"})
    assert pre.status == 204
    assert {"Range", "If-None-Match", "ECT"} <= {
        v.strip() for v in pre.headers["Access-Control-Allow-Headers"].split(",")}
    assert pre.headers["Access-Control-Allow-Origin"] == "*"


async def test_a_handlers_own_header_wins(client):
    resp = await client.get("/v1/scenes/mini-a-scene/glb", allow_redirects=False)
    assert resp.status == 302
    assert resp.headers.getall("Access-Control-Allow-Origin") == ["*"]  # once, not twice


async def test_websocket_upgrade_is_unharmed(client, mini_data):
    key = KeyStore(mini_data).create("host", "tests")[1]
    starts = (datetime.now(UTC) + timedelta(minutes=5)).isoformat().replace("+00:00", "Z")
    resp = await client.post("/v1/events", headers={"Authorization": f"Bearer {key}"},
                             json={"title": "River lights", "tour": "mini",
                                   "starts_at": starts})
    assert resp.status == 201, await resp.text()
    event = await resp.json()
    ticket = await (await client.post(f"/v1/events/{event['id']}/tickets",
                                      json={"name": "Mei"})).json()
    async with client.ws_connect(f"/v1/events/{event['id']}/live?ticket={ticket['ticket']}"
                                 ) as ws:
        welcome = await ws.receive_json(timeout=10)
        assert welcome["type"] == "welcome"
        await ws.send_json({"type": "time", "t0": 1.0})
        while (msg := await ws.receive_json(timeout=10))["type"] != "time":
            pass
        assert msg["t0"] == 1.0


# -- client hints ------------------------------------------------------------------------

async def test_accept_ch_and_vary_where_the_tier_is_chosen(client):
    hints = set(CLIENT_HINTS)
    for headers in ({}, {"Save-Data": "on"}, {"ECT": "4g", "Device-Memory": "8"}):
        resp = await client.get("/v1/scenes/mini-a-scene/glb", headers=headers,
                                allow_redirects=False)
        assert resp.status == 302
        assert {h.strip() for h in resp.headers["Accept-CH"].split(",")} == hints
        assert {h.strip() for h in resp.headers["Vary"].split(",")} == hints
        assert "Critical-CH" not in resp.headers
    # Asked for by name: the answer depends on no hint, so a cache may share it.
    resp = await client.get("/v1/scenes/mini-a-scene/glb?tier=low", headers={"ECT": "4g"},
                            allow_redirects=False)
    assert resp.headers["X-Tourserver-Tier"] == "low"
    assert not hints & {h.strip() for h in resp.headers.get("Vary", "").split(",")}
    assert "Accept-CH" in resp.headers


async def test_accept_ch_on_the_web_apps_pages(client):
    for path in ("/", "/host"):
        resp = await client.get(path)
        assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/html")
        assert {h.strip() for h in resp.headers["Accept-CH"].split(",")} == set(CLIENT_HINTS)
        assert "Critical-CH" not in resp.headers


# -- ranges and conditionals on /c/ ------------------------------------------------------

@pytest.mark.parametrize("header", ["items=0-1", "pages=1", "0-1", "=0-1", "bytes"])
async def test_a_range_in_another_unit_is_ignored(client, catalog, header):
    name, ref = blob(catalog, "m4a")
    resp = await client.get(f"/c/{name}", headers={"Range": header})
    assert resp.status == 200 and "Content-Range" not in resp.headers
    assert await resp.read() == await whole(client, name)


async def test_the_unit_is_case_insensitive(client, catalog):
    name, _ = blob(catalog, "m4a")
    resp = await client.get(f"/c/{name}", headers={"Range": "Bytes=0-1"})
    assert resp.status == 206 and len(await resp.read()) == 2


async def test_multiple_ranges_are_multipart_byteranges(client, catalog):
    name, ref = blob(catalog, "glb")
    full = await whole(client, name)
    size = len(full)
    asked = [(0, 11), (size - 20, size - 1), (100, 199)]  # served in the order asked
    header = "bytes=" + ", ".join(f"{a}-{b}" for a, b in asked) + f", ,{size + 50}-"
    resp = await client.get(f"/c/{name}", headers={"Range": header})
    assert resp.status == 206 and "Content-Range" not in resp.headers
    assert resp.headers["Content-Type"].startswith("multipart/byteranges; boundary=")
    # aiohttp's multipart reader on the response stream: a parser independent of ours
    reader = aiohttp.MultipartReader(resp.headers, resp.content)
    parts = []
    while (part := await reader.next()) is not None:
        parts.append((part.headers["Content-Type"], part.headers["Content-Range"],
                      await part.read(decode=False)))
    assert [p[1] for p in parts] == [f"bytes {a}-{b}/{size}" for a, b in asked]
    assert all(p[0] == ref.mime for p in parts)
    assert [p[2] for p in parts] == [full[a:b + 1] for a, b in asked]
    again = await client.get(f"/c/{name}", headers={"Range": header})
    body = await again.read()
    assert int(again.headers["Content-Length"]) == len(body)
    boundary = again.headers["Content-Type"].split("boundary=")[1]
    assert body.startswith(f"--{boundary}\r\n".encode())
    assert body.endswith(f"\r\n--{boundary}--\r\n".encode())


async def test_ranges_that_leave_one_part_get_a_plain_206(client, catalog):
    name, ref = blob(catalog, "glb")
    full = await whole(client, name)
    resp = await client.get(f"/c/{name}", headers={"Range": f"bytes=2-5,{ref.bytes + 9}-"})
    assert resp.status == 206
    assert resp.headers["Content-Range"] == f"bytes 2-5/{ref.bytes}"
    assert resp.headers["Content-Type"] == ref.mime and await resp.read() == full[2:6]


@pytest.mark.parametrize("header", [
    "bytes=0-9,5-14",  # overlapping
    "bytes=0-,-10",  # the whole file, then its end again
    "bytes=" + ",".join(f"{i * 4}-{i * 4 + 1}" for i in range(17)),  # more than 16 parts
])
async def test_overlapping_or_too_many_ranges_get_the_whole_file(client, catalog, header):
    name, ref = blob(catalog, "glb")
    resp = await client.get(f"/c/{name}", headers={"Range": header})
    assert resp.status == 200 and len(await resp.read()) == ref.bytes


async def test_head_ignores_range_and_mirrors_get(client, catalog):
    name, ref = blob(catalog, "glb")
    get = await client.get(f"/c/{name}")
    await get.read()
    for headers in ({}, {"Range": "bytes=0-3"}, {"Range": "bytes=0-1,4-5"}):
        head = await client.head(f"/c/{name}", headers=headers)
        assert head.status == 200 and await head.read() == b""  # Range is for GET only
        for h in ("Content-Type", "Content-Length", "ETag", "Cache-Control", "Accept-Ranges",
                  "Access-Control-Allow-Origin"):
            assert head.headers[h] == get.headers[h], h


@pytest.mark.parametrize("validator", [
    '"0123"', "W/{etag}", "Thu, 01 Jan 2026 00:00:00 GMT", "{etag}x",
])
async def test_if_range_with_a_stale_validator_sends_the_whole_file(client, catalog,
                                                                    validator):
    name, ref = blob(catalog, "glb")
    etag = f'"{ref.sha256}"'
    resp = await client.get(f"/c/{name}", headers={
        "Range": "bytes=0-3", "If-Range": validator.format(etag=etag)})
    assert resp.status == 200 and "Content-Range" not in resp.headers
    body = await resp.read()
    assert len(body) == ref.bytes and hashlib.sha256(body).hexdigest() == ref.sha256
    resp = await client.get(f"/c/{name}", headers={"Range": "bytes=0-3", "If-Range": etag})
    assert resp.status == 206 and len(await resp.read()) == 4


async def test_304_carries_validator_caching_and_cors(client, catalog):
    name, ref = blob(catalog, "vtt")
    resp = await client.get(f"/c/{name}", headers={"If-None-Match": f'W/"x", "{ref.sha256}"',
                                                   "Range": "bytes=0-1"})
    assert resp.status == 304 and await resp.read() == b""
    assert resp.headers["ETag"] == f'"{ref.sha256}"'
    assert resp.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert_cors(resp)


async def test_a_blob_missing_from_the_store_is_a_clean_500(client, catalog, caplog):
    name, ref = blob(catalog, "mp3")
    _, path = catalog.blob_path(name)
    head = await client.head(f"/c/{name}")  # the catalog answers HEAD: no file opened
    assert head.status == 200
    path.unlink()
    resp = await client.get(f"/c/{name}")
    assert resp.status == 500
    assert (await resp.json())["error"]["code"] == "content_unavailable"
    assert_cors(resp)
    name, ref = blob(catalog, "vtt")
    _, path = catalog.blob_path(name)
    path.write_bytes(path.read_bytes()[:-1])  # damaged: not the size the catalog says
    resp = await client.get(f"/c/{name}")
    assert resp.status == 500 and "Traceback" not in await resp.text()


# -- API keys, checked off the event loop, still seen at once ----------------------------

async def test_a_revoked_key_is_refused_on_the_next_request(client, mini_data):
    store = KeyStore(mini_data)
    record, key = store.create("host", "tests")
    auth = {"Authorization": f"Bearer {key}"}
    starts = (datetime.now(UTC) + timedelta(minutes=5)).isoformat().replace("+00:00", "Z")
    body = {"title": "River lights", "tour": "mini", "starts_at": starts}
    assert (await client.post("/v1/events", headers=auth, json=body)).status == 201
    assert (await client.get("/v1/events", headers=auth)).status == 200
    assert store.revoke(record.id)
    resp = await client.post("/v1/events", headers=auth, json=body)
    assert resp.status == 401 and (await resp.json())["error"]["message"]
    assert (await client.get("/v1/events", headers=auth)).status == 401
    _, new_key = store.create("host", "again")  # and a new key works at once
    resp = await client.post("/v1/events", headers={"Authorization": f"Bearer {new_key}"},
                             json=body)
    assert resp.status == 201


# -- the protocol guard, on a real server in this process --------------------------------

HEAD_TIMEOUT_S = 0.6


@pytest.fixture()
async def guarded(settings, catalog):
    """server.start() on a free port, with a short request-head deadline."""
    settings = replace(settings, port=0, limits=replace(Limits(),
                                                         header_timeout_s=HEAD_TIMEOUT_S))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    runner = await server.start(settings, catalog, sock=sock, reload_poll_s=None)
    yield port
    await runner.cleanup()
    gc.unfreeze()  # start() froze the heap for a long-lived server: not for a test


async def exchange(port: int, data: bytes, *, wait_s: float = 5.0) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    try:
        return await asyncio.wait_for(reader.read(), wait_s)
    finally:
        writer.close()


def split(raw: bytes) -> tuple[int, dict, bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, body


async def test_a_slow_head_gets_408_in_time(guarded):
    loop = asyncio.get_running_loop()
    started = loop.time()
    raw = await exchange(guarded, b"GET /v1/health HTTP/1.1\r\nHost: x\r\n")
    assert HEAD_TIMEOUT_S * 0.9 <= loop.time() - started < HEAD_TIMEOUT_S + 2
    status, _, body = split(raw)
    assert status == 408 and json.loads(body)["error"]["code"] == "header_timeout"


async def test_keep_alive_serves_the_next_request_and_times_its_head(guarded):
    reader, writer = await asyncio.open_connection("127.0.0.1", guarded)
    try:
        for _ in range(2):  # two requests on one connection, the second after a pause
            writer.write(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            assert head.startswith(b"HTTP/1.1 200")
            length = int(split(head)[1]["content-length"])
            assert json.loads(await reader.readexactly(length))["status"] == "ok"
            await asyncio.sleep(HEAD_TIMEOUT_S * 1.5)  # idle: not a slow head
        writer.write(b"GET /v1/health HTTP/1.1\r\n")  # a third head, never finished
        rest = await asyncio.wait_for(reader.read(), 5)
        assert rest.startswith(b"HTTP/1.1 408")
    finally:
        writer.close()


async def test_a_request_body_is_not_timed_as_a_head(guarded, mini_data):
    key = KeyStore(mini_data).create("host", "tests")[1]
    starts = (datetime.now(UTC) + timedelta(minutes=5)).isoformat().replace("+00:00", "Z")
    body = json.dumps({"title": "Slow upload", "tour": "mini", "starts_at": starts}).encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", guarded)
    try:
        writer.write(b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                     b"\r\nAuthorization: Bearer " + key.encode()
                     + b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n"
                     + body[:5])
        for piece in (body[5:10], body[10:]):  # a slow upload: longer than the deadline
            await asyncio.sleep(HEAD_TIMEOUT_S * 1.5)
            writer.write(piece)
        raw = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert raw.startswith(b"HTTP/1.1 201"), raw
    finally:
        writer.close()


async def test_a_websocket_outlives_the_head_deadline(guarded, mini_data):
    key = KeyStore(mini_data).create("host", "tests")[1]
    starts = (datetime.now(UTC) + timedelta(minutes=5)).isoformat().replace("+00:00", "Z")
    base = f"http://127.0.0.1:{guarded}"
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{base}/v1/events", headers={"Authorization": f"Bearer {key}"},
                             json={"title": "t", "tour": "mini", "starts_at": starts}) as r:
            event = await r.json()
        async with http.post(f"{base}/v1/events/{event['id']}/tickets", json={}) as r:
            ticket = (await r.json())["ticket"]
        async with http.ws_connect(f"{base}/v1/events/{event['id']}/live?ticket={ticket}",
                                   autoping=False, heartbeat=None) as ws:
            assert (await ws.receive_json(timeout=5))["type"] == "welcome"
            for i in range(3):  # frames after the deadline: never a 408 in the stream
                await asyncio.sleep(HEAD_TIMEOUT_S)
                await ws.send_json({"type": "time", "t0": float(i)})
                while (msg := await ws.receive(timeout=5)).type == aiohttp.WSMsgType.TEXT:
                    if json.loads(msg.data)["type"] == "time":
                        break
                assert msg.type == aiohttp.WSMsgType.TEXT, msg
                assert json.loads(msg.data)["t0"] == float(i)


@pytest.mark.parametrize(("raw", "status", "code"), [
    (b"GET /v1/health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n",
     431, "headers_too_large"),
    (b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, "uri_too_long"),
    (b"GET /v1/health HTTP/1.1\r\nHost: x\r\n"
     + b"".join(b"X-%d: 1\r\n" % i for i in range(200)) + b"\r\n", 431, "headers_too_large"),
    (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n", 400, "bad_request"),
], ids=["huge-header", "huge-url", "many-headers", "tls-to-http"])
async def test_what_the_parser_refuses_is_json(guarded, raw, status, code):
    got, headers, body = split(await exchange(guarded, raw))
    assert got == status
    assert headers["content-type"].startswith("application/json")
    assert json.loads(body)["error"]["code"] == code
