"""Debian's real nginx in front of a real `tourserver serve`, configured with what
`tourserver nginx-config` prints: /c/ files straight from the blob store with the headers
tourserver itself sends, the API, the web app and the live socket proxied."""

from __future__ import annotations

import gzip
import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h3
import pytest
from live_support import LiveServer, free_port, private_data, rfc3339
from support import REPO, require

from tourserver.http.nginx import ROUTES, NginxOptions

# Headers a /c/ response must carry alike from nginx and from tourserver.
CONTENT_HEADERS = ("ETag", "Cache-Control", "Content-Type", "Content-Length", "Accept-Ranges",
                   "Access-Control-Allow-Origin", "Access-Control-Expose-Headers",
                   "X-Content-Type-Options", "Referrer-Policy")
API_HEADERS = ("ETag", "Cache-Control", "Content-Type", "Vary", "Access-Control-Allow-Origin",
               "Access-Control-Expose-Headers", "X-Content-Type-Options")
HTTP_CONF = """\
worker_processes 1;
{user}
error_log {prefix}/error.log info;
events {{ worker_connections 256; }}
http {{
    default_type application/octet-stream;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    include {prefix}/tourserver.conf;
}}
"""


def nginx_binary() -> str | None:
    return shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None)


def nginx_config(data: Path, *args: str) -> str:
    """What the command prints (the real CLI, in a subprocess)."""
    proc = subprocess.run([sys.executable, "-m", "tourserver", "nginx-config", "--data",
                           str(data), *args], cwd=REPO, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


class Nginx:
    """nginx with a minimal http {} around the generated block, as the current user."""

    def __init__(self, prefix: Path, server_block: str, port: int):
        binary = nginx_binary()
        assert binary is not None
        self.prefix, self.port = prefix, port
        prefix.mkdir(parents=True, exist_ok=True)
        (prefix / "tourserver.conf").write_text(server_block)
        # As root, nginx would switch its workers to "nobody", who cannot read pytest's
        # private temp folders.
        user = "user root;" if os.geteuid() == 0 else ""
        (prefix / "nginx.conf").write_text(HTTP_CONF.format(user=user, prefix=prefix))
        cmd = [binary, "-p", str(prefix), "-c", str(prefix / "nginx.conf"),
               "-e", str(prefix / "error.log"),
               "-g", f"daemon off; pid {prefix}/nginx.pid;"]
        check = subprocess.run(cmd + ["-t"], capture_output=True, text=True, timeout=30)
        assert check.returncode == 0, check.stderr
        self._out = open(prefix / "stderr.log", "wb")
        self.proc = subprocess.Popen(cmd, stdout=self._out, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.monotonic() + 20
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"nginx exited:\n{self.logs()}")
            try:
                http.client.HTTPConnection("127.0.0.1", port, timeout=2).connect()
                break
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise AssertionError(f"nginx did not listen:\n{self.logs()}") from None
                time.sleep(0.05)

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in
                         (self.prefix / "stderr.log", self.prefix / "error.log") if p.exists())

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._out.close()


def call(port: int, method: str, path: str, headers: dict | None = None,
         body: bytes | None = None) -> tuple[int, http.client.HTTPMessage, bytes]:
    """One request, no redirects followed, no headers added but Host."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.headers, resp.read()
    finally:
        conn.close()


def port_of(base: str) -> int:
    return int(base.rsplit(":", 1)[1])


@pytest.fixture(scope="module")
def front(mini_built, tmp_path_factory):
    """(tourserver, nginx) with nginx in front; both stopped at the end, whatever happens."""
    require(nginx_binary() is not None, "nginx (Debian's nginx package)")
    root, built = mini_built
    where = tmp_path_factory.mktemp("nginx")
    server = LiveServer(private_data(built, where), root)
    nginx = None
    try:
        port = free_port()
        block = nginx_config(server.data, "--upstream", f"127.0.0.1:{server.port}",
                             "--listen", f"127.0.0.1:{port}", "--server-name", "localhost",
                             "--log-dir", str(where / "nginx"))
        nginx = Nginx(where / "nginx", block, port)
        yield server, nginx
    finally:
        if nginx is not None:
            nginx.stop()
        server.stop()


def content_urls(server: LiveServer) -> list[str]:
    tour = server.json("GET", "/v1/tours/mini")
    urls = []
    for stop in tour["stops"]:
        for ref in stop["scenes"]:
            urls += [v["url"] for v in server.json("GET", ref["url"])["variants"]]
        for narration in stop["narration"].values():
            urls += [a["url"] for a in narration["audio"]] + [narration["subtitles"]["url"]]
    urls = [re.sub(r"^https?://[^/]+", "", u) for u in dict.fromkeys(urls)]
    assert {u.rsplit(".", 1)[1] for u in urls} == {"glb", "m4a", "mp3", "vtt"}
    return urls


def content_requests_seen(server: LiveServer) -> float:
    """How many /c/ requests tourserver itself has answered (its /metrics)."""
    text = server.call("GET", "/metrics")[2].decode()
    return sum(float(v) for v in re.findall(
        r'^tourserver_http_requests_total\{[^}]*route="/c/\{name\}"[^}]*\} (\S+)$', text, re.M))


def same(a: http.client.HTTPMessage, b: http.client.HTTPMessage, names) -> None:
    for name in names:
        assert a.get_all(name) == b.get_all(name), (name, a.get_all(name), b.get_all(name))


# ---- the command ---------------------------------------------------------------------------

def test_options_are_checked(tmp_path):
    good = Path("/srv/tourserver")
    for bad in ({"data_dir": Path("relative")}, {"data_dir": Path("/srv/a b")},
                {"data_dir": Path("/srv/$x")}, {"upstreams": ("10.0.0.5",)},
                {"upstreams": ("10.0.0.5:99999",)}, {"upstreams": ("a;b:80",)},
                {"upstreams": ()}, {"server_names": ("a b",)}, {"listen": "eighty"},
                {"public_url": "ftp://x"}, {"public_url": "https://x.org/tours"},
                {"log_dir": Path("logs")}):
        with pytest.raises(ValueError):
            NginxOptions(**{"data_dir": good, **bad})
    NginxOptions(good, upstreams=("[::1]:8080", "unix:/run/tourserver.sock", "node-2:8080"),
                 listen="[::]:80", public_url="https://tours.example.org/")
    proc = subprocess.run([sys.executable, "-m", "tourserver", "nginx-config", "--data",
                           str(tmp_path), "--upstream", "nowhere"], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and proc.stdout == ""
    assert "--upstream 'nowhere' is not HOST:PORT" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_public_url_names_the_server(tmp_path):
    text = nginx_config(tmp_path, "--public-url", "http://tours.example.org:8088")
    assert "server_name tours.example.org;" in text and "listen 8088;" in text
    assert f"alias {tmp_path.resolve()}/blobs/" in text
    text = nginx_config(tmp_path, "--public-url", "https://tours.example.org",
                        "--upstream", "10.0.0.5:8080", "--upstream", "10.0.0.6:8080")
    assert "listen 80;" in text and "#   listen 443 ssl" in text
    assert "server 10.0.0.5:8080;" in text and "server 10.0.0.6:8080;" in text


def test_the_access_log_knows_every_route(mini_data):
    """nginx logs route templates (never paths): a route it does not know logs as
    "unmatched", so the list must follow http/app.py."""
    from tourserver.config import Settings
    from tourserver.http.app import create_app
    from tourserver.store.catalog import load_published

    app = create_app(Settings(data_dir=mini_data), load_published(mini_data))
    served = {re.sub(r"\{(\w+):[^}]*\}", r"{\1}", r.canonical)
              for r in app.router.resources()}
    assert served == set(ROUTES)


# ---- content -------------------------------------------------------------------------------

def test_content_comes_from_the_blob_store_with_tourservers_headers(front):
    server, nginx = front
    urls = content_urls(server)
    seen = content_requests_seen(server)
    for url in urls:
        for method in ("GET", "HEAD"):
            status, via, body = call(nginx.port, method, url)
            d_status, direct, d_body = call(server.port, method, url)
            assert status == d_status == 200, (url, status, d_status)
            assert body == d_body and (method == "GET") == bool(body)
            same(via, direct, CONTENT_HEADERS)
            assert via["ETag"] == f'"{url[3:].split(".")[0]}"'
            assert via.get("Last-Modified") is None  # the hash is the only validator
    # nginx answered all of them itself: tourserver counted only our direct requests.
    assert content_requests_seen(server) - seen == 2 * len(urls)


def test_ranges_and_validators_through_nginx(front):
    server, nginx = front
    url = next(u for u in content_urls(server) if u.endswith(".glb"))
    etag = f'"{url[3:].split(".")[0]}"'
    whole = call(server.port, "GET", url)[2]
    size = len(whole)

    def both(headers: dict) -> tuple[int, http.client.HTTPMessage, bytes]:
        status, via, body = call(nginx.port, "GET", url, headers)
        d_status, direct, d_body = call(server.port, "GET", url, headers)
        assert (status, body) == (d_status, d_body), (headers, status, d_status)
        same(via, direct, ("ETag", "Content-Range", "Content-Length",
                           "Access-Control-Allow-Origin"))
        return status, via, body

    status, via, body = both({"Range": "bytes=0-1"})  # Safari's probe
    assert status == 206 and body == whole[:2] and via["Content-Range"] == f"bytes 0-1/{size}"
    assert both({"Range": "bytes=-10"})[2] == whole[-10:]
    assert both({"Range": "bytes=0-1", "If-Range": etag})[0] == 206
    for stale in ('"0123abcd"', f"W/{etag}", "Sat, 05 Dec 2026 01:09:23 GMT"):
        status, _, body = both({"Range": "bytes=0-1", "If-Range": stale})
        assert status == 200 and body == whole, stale  # RFC 9110 §13.1.5: the whole file
    assert both({"Range": "items=0-1"})[2] == whole  # another unit: ignored
    for inm in (etag, f"W/{etag}", f'"nope", {etag}', "*"):
        status, via, body = both({"If-None-Match": inm})
        assert status == 304 and body == b"" and via["ETag"] == etag, inm
        # RFC 9110 §8.6: a 304 carries no Content-Length but the 200's.
        assert via.get("Content-Length") in (None, str(size))
    assert both({"If-None-Match": '"nope"'})[0] == 200
    # Unsatisfiable: nginx's own 416 (with the file's Cache-Control, where tourserver says
    # no-store), the same Content-Range and error code, each header once.
    status, via, body = call(nginx.port, "GET", url, {"Range": f"bytes={size}-"})
    d_status, direct, d_body = call(server.port, "GET", url, {"Range": f"bytes={size}-"})
    assert status == d_status == 416
    same(via, direct, ("Content-Range", "Content-Type", "Access-Control-Allow-Origin"))
    assert via["Content-Range"] == f"bytes */{size}"
    assert json.loads(body)["error"]["code"] == json.loads(d_body)["error"]["code"]
    assert len(via.keys()) == len({k.lower() for k in via.keys()})
    status, via, body = call(nginx.port, "GET", url, {"Range": "bytes=0-1,4-5"})
    assert status == 206 and via["Content-Type"].startswith("multipart/byteranges")
    assert whole[:2] in body and whole[4:6] in body


def test_unknown_content_is_the_same_json_404(front):
    server, nginx = front
    for path in ("/c/" + "0" * 64 + ".glb", "/c/" + "0" * 64 + ".exe", "/c/" + "A" * 64 + ".glb",
                 "/c/hello.txt", "/c/"):
        status, via, body = call(nginx.port, "GET", path)
        d_status, direct, d_body = call(server.port, "GET", path)
        assert status == d_status == 404, path
        assert json.loads(body) == json.loads(d_body), path
        same(via, direct, ("Content-Type", "Cache-Control", "Access-Control-Allow-Origin",
                           "X-Content-Type-Options"))


def test_content_preflight_is_tourservers(front):
    server, nginx = front
    url = content_urls(server)[0]
    headers = {"Origin": "https://viewer.example", "Access-Control-Request-Method": "GET",
               "Access-Control-Request-Headers": "range, if-none-match"}
    status, via, _ = call(nginx.port, "OPTIONS", url, headers)
    d_status, direct, _ = call(server.port, "OPTIONS", url, headers)
    assert status == d_status == 204
    same(via, direct, ("Access-Control-Allow-Origin", "Access-Control-Allow-Methods",
                       "Access-Control-Allow-Headers", "Access-Control-Max-Age"))


# ---- the API -------------------------------------------------------------------------------

def test_api_documents_pass_unchanged(front):
    server, nginx = front
    for path in ("/v1/tours/mini?lang=en", "/v1/tours", "/v1/anchors/mini-a",
                 "/v1/tours/nope", "/v1/tours/mini?lang=fr"):
        status, via, body = call(nginx.port, "GET", path)
        d_status, direct, d_body = call(server.port, "GET", path)
        assert (status, body) == (d_status, d_body), path
        same(via, direct, API_HEADERS)
    # gzip for JSON: tourserver's own compressed copy (compressed once, with its own strong
    # ETag) passes through unchanged, and revalidates.
    status, direct, plain = call(server.port, "GET", "/v1/tours/mini")
    _, direct_gz, _ = call(server.port, "GET", "/v1/tours/mini", {"Accept-Encoding": "gzip"})
    status, via, packed = call(nginx.port, "GET", "/v1/tours/mini", {"Accept-Encoding": "gzip"})
    assert status == 200 and via["Content-Encoding"] == "gzip"
    assert gzip.decompress(packed) == plain and len(packed) < len(plain)
    assert via["ETag"] == direct_gz["ETag"] != direct["ETag"]
    assert "Accept-Encoding" in via["Vary"]
    status, _, _ = call(nginx.port, "GET", "/v1/tours/mini",
                        {"Accept-Encoding": "gzip", "If-None-Match": via["ETag"]})
    assert status == 304


def test_client_hints_reach_tourserver(front):
    server, nginx = front
    path = "/v1/scenes/mini-a-scene/glb"
    tiers = {}
    for hints, tier in (({}, "medium"), ({"Save-Data": "on"}, "low"), ({"ECT": "2g"}, "low"),
                        ({"ECT": "4g", "Device-Memory": "8"}, "high")):
        status, via, _ = call(nginx.port, "GET", path, hints)
        d_status, direct, _ = call(server.port, "GET", path, hints)
        assert status == d_status == 302 and via["X-Tourserver-Tier"] == tier, hints
        same(via, direct, ("Location", "Vary", "Accept-CH", "Cache-Control",
                           "X-Tourserver-Tier"))
        tiers[tier] = via["Location"]
    assert tiers["low"] != tiers["medium"]  # Save-Data: on got another file than no hints
    status, via, body = call(nginx.port, "GET", re.sub(r"^https?://[^/]+", "", tiers["low"]))
    assert status == 200 and via["Content-Type"] == "model/gltf-binary" and body[:4] == b"glTF"


def test_bodies_over_tourservers_limit_are_refused_as_json(front):
    server, nginx = front
    big = json.dumps({"title": "x" * 100_000}).encode()
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {server.key}"}
    status, via, body = call(nginx.port, "POST", "/v1/events", headers, big)
    d_status, _, d_body = call(server.port, "POST", "/v1/events", headers, big)
    assert status == d_status == 413
    assert json.loads(body)["error"]["code"] == json.loads(d_body)["error"]["code"]
    assert via["Content-Type"] == "application/json; charset=utf-8"
    assert via["Access-Control-Allow-Origin"] == "*"


# ---- the live socket -----------------------------------------------------------------------

async def test_live_event_through_nginx(front):
    from tourserver.live.client import LiveClient

    server, nginx = front
    base = f"http://127.0.0.1:{nginx.port}"
    status, _, body = call(nginx.port, "POST", "/v1/events", {
        "Authorization": f"Bearer {server.key}", "Content-Type": "application/json"},
        json.dumps({"title": "River lights", "tour": "mini", "starts_at": rfc3339(-1),
                    "visibility": "public"}).encode())
    assert status == 201, body
    event = json.loads(body)
    status, _, body = call(nginx.port, "POST", f"/v1/events/{event['id']}/tickets",
                           {"Content-Type": "application/json"}, b'{"name": "Mei"}')
    assert status == 201, body
    ticket = json.loads(body)["ticket"]
    # The page's own origin passes tourserver's same-origin check: nginx kept the Host.
    attendee = await LiveClient.connect(base, event["id"], ticket, origin=base)
    host = await LiveClient.connect(base, event["id"], event["host_token"])
    direct = await server.attendee(event["id"])
    try:
        assert attendee.welcome["you"]["name"] == "Mei"
        sample = await attendee.sync_clock(4)
        assert sample.delay_ms >= 0
        await host.send({"type": "cue", "at": host.server_now() + 300, "action": "lights",
                         "params": {"color": "#ff8800"}, "ref": "through-nginx"})
        for client in (attendee, direct, host):
            cue = await client.next("cue", 10)
            assert cue["ref"] == "through-nginx" and cue["seq"] == 1
    finally:
        for client in (attendee, host, direct):
            await client.close()


# ---- logs and failure ----------------------------------------------------------------------

def test_nginx_logs_hold_no_address_path_or_query(front):
    server, nginx = front
    cell = h3.latlng_to_cell(29.5572, 106.5770, 8)
    call(nginx.port, "GET", f"/v1/cells/{cell}?lat=29.5572&lon=106.5770")
    call(nginx.port, "GET", content_urls(server)[0])
    call(nginx.port, "GET", "/v1/events/ev_x/live?ticket=secret-ticket")
    call(nginx.port, "GET", "/29.5572,106.5770")
    time.sleep(0.2)
    lines = (nginx.prefix / "tourserver.access.log").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    routes = {r["route"] for r in records}
    assert {"/v1/cells/{cell}", "/c/{name}", "/v1/events/{event_id}/live",
            "unmatched"} <= routes
    logs = "\n".join(lines)
    error_log = nginx.prefix / "tourserver.error.log"
    if error_log.exists():
        logs += error_log.read_text()
    for secret in (cell, "29.5572", "106.5770", "secret-ticket", "127.0.0.1", "?"):
        assert secret not in logs, secret


def test_content_is_served_while_tourserver_is_down(front, tmp_path):
    server, _ = front
    port = free_port()
    block = nginx_config(server.data, "--upstream", f"127.0.0.1:{free_port()}",
                         "--listen", f"127.0.0.1:{port}", "--log-dir", str(tmp_path))
    nginx = Nginx(tmp_path / "nginx", block, port)
    try:
        url = content_urls(server)[0]
        status, _, body = call(port, "GET", url)
        assert status == 200 and body == call(server.port, "GET", url)[2]
        status, via, body = call(port, "GET", "/v1/tours")
        assert status == 502 and via["Content-Type"] == "application/json; charset=utf-8"
        assert json.loads(body)["error"]["code"] == "upstream_unavailable"
        assert via["Access-Control-Allow-Origin"] == "*"
    finally:
        nginx.stop()
