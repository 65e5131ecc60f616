"""`serve --public-url --content-url`: behind a proxy and a CDN, every link in every
document points where clients can follow it. A second server stands in for the CDN; the
test follows every link, recursively, on the host the link names."""

from __future__ import annotations

import hashlib
import http.client
import json
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import h3
import pytest
import yaml
from live_support import LiveServer, free_port, private_data
from support import REPO, make_mini_root

from tourserver.store.blobs import MIME_TYPES
from tourserver.store.build import build

CDN_PREFIX = "/cdn/c/"  # not /c/: the whole content URL is used, not only its origin
LINK_KEYS = ("url", "href", "uri")


class Cdn:
    """A static file server standing in for a CDN: CDN_PREFIX<name> is blobs/<ab>/<name>,
    nothing else exists. It records what it was asked for."""

    def __init__(self, blobs: Path):
        self.asked: list[str] = []
        cdn = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                cdn.asked.append(self.path)
                name = self.path[len(CDN_PREFIX):] if self.path.startswith(CDN_PREFIX) else ""
                path = blobs / name[:2] / name
                if "/" in name or not name or not path.is_file():
                    self.send_error(404)
                    return
                body = path.read_bytes()
                self.send_response(200)
                self.send_header("Content-Type", MIME_TYPES[name.rsplit(".", 1)[1]])
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def behind_a_cdn(mini_built, tmp_path_factory) -> Iterator[tuple[LiveServer, Cdn]]:
    root, built = mini_built
    data = private_data(built, tmp_path_factory.mktemp("public-url"))
    cdn = Cdn(data / "blobs")
    port = free_port()
    server = LiveServer(data, root, "--public-url", f"http://127.0.0.1:{port}/",
                        "--content-url", cdn.base + CDN_PREFIX, port=port)
    try:
        yield server, cdn
    finally:
        server.stop()
        cdn.close()


def links_in(doc: object, key: str = "") -> Iterator[str]:
    """Every link in a document: url/href/uri fields, *_url fields and the `links` map."""
    if isinstance(doc, dict):
        for k, v in doc.items():
            if isinstance(v, str) and (k in LINK_KEYS or k.endswith("_url") or key == "links"):
                yield v
            else:
                yield from links_in(v, k)
    elif isinstance(doc, list):
        for item in doc:
            yield from links_in(item, key)


def fetch(url: str) -> tuple[int, dict, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=30) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def crawl(server: LiveServer, cdn: Cdn, start: list[str]) -> dict[str, bytes]:
    """Follow every link from the `start` documents; return each URL's body. Fails on a
    relative link, a link to the wrong place, or one that does not answer 200."""
    api = urlsplit(server.base)
    content = urlsplit(cdn.base + CDN_PREFIX)
    seen: dict[str, bytes] = {}
    todo = [server.base + path for path in start]
    while todo:
        url = todo.pop()
        target = urlsplit(url)
        assert target.scheme == "http" and target.netloc, f"relative link {url!r}"
        if target.path.startswith("/v1/"):
            assert target.netloc == api.netloc, f"API link not at the public URL: {url}"
        else:
            assert (target.netloc, target.path[:len(content.path)]) == (
                content.netloc, content.path), f"content link not at the content URL: {url}"
        url = url.split("#", 1)[0]  # a fragment names a place in the document
        if url in seen:
            continue
        status, headers, body = fetch(url)
        assert status == 200, (url, status, body[:300])
        seen[url] = body
        if headers.get("Content-Type", "").startswith("application/json"):
            todo.extend(links_in(json.loads(body)))
    return seen


def test_every_link_of_every_document_resolves_where_it_points(behind_a_cdn):
    server, cdn = behind_a_cdn
    cell = h3.latlng_to_cell(29.5572, 106.5770, 8)
    seen = crawl(server, cdn, ["/v1/tours", "/v1/tours/mini", "/v1/tours/mini?lang=en",
                               "/v1/tours/mini/tileset.json", "/v1/tours/mini/pack",
                               "/v1/tours/mini/pack?lang=zh-Hans&tier=high",
                               f"/v1/cells/{cell}", "/v1/anchors/mini-a",
                               "/v1/scenes/mini-a-scene"])
    on_cdn = [url for url in seen if url.startswith(cdn.base)]
    kinds = {url.rsplit(".", 1)[1] for url in on_cdn}
    # the scene's three variants, both audio formats and the subtitles came from the CDN
    assert {"glb", "m4a", "mp3", "vtt"} <= kinds, sorted(seen)
    scene = json.loads(seen[server.base + "/v1/scenes/mini-a-scene"])
    assert {v["url"] for v in scene["variants"]} <= set(on_cdn)
    assert all(path.startswith(CDN_PREFIX) for path in cdn.asked)


def test_pack_files_are_the_bytes_it_promises(behind_a_cdn):
    server, cdn = behind_a_cdn
    pack = json.loads(fetch(server.base + "/v1/tours/mini/pack?lang=en&tier=low")[2])
    assert pack["count"] == len(pack["files"]) > 0
    for entry in pack["files"]:
        status, _, body = fetch(entry["url"])
        assert status == 200, entry
        assert hashlib.sha256(body).hexdigest() == entry["sha256"], entry["url"]
        assert len(body) == entry["bytes"]
        want = cdn.base if entry["role"] != "document" else server.base
        assert entry["url"].startswith(want), entry


def test_tileset_content_is_on_the_cdn(behind_a_cdn):
    server, cdn = behind_a_cdn
    tileset = json.loads(fetch(server.base + "/v1/tours/mini/tileset.json")[2])
    uris = list(links_in(tileset))
    assert uris and all(u.startswith(cdn.base + CDN_PREFIX) for u in uris), uris


def test_the_variant_redirect_sends_clients_to_the_cdn(behind_a_cdn):
    server, cdn = behind_a_cdn
    scene = json.loads(fetch(server.base + "/v1/scenes/mini-a-scene")[2])
    urls = {v["tier"]: v["url"] for v in scene["variants"]}
    for hints, tier in (({"Save-Data": "on"}, "low"), ({}, "medium")):
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        try:
            conn.request("GET", "/v1/scenes/mini-a-scene/glb", headers=hints)
            resp = conn.getresponse()
            resp.read()
        finally:
            conn.close()
        assert resp.status == 302
        assert resp.headers["Location"] == urls[tier], (hints, resp.headers["Location"])


@pytest.mark.parametrize(("flag", "value", "says"), [
    ("--public-url", "tours.example.org", "absolute http:// or https:// URL"),
    ("--public-url", "ftp://tours.example.org", "absolute http:// or https:// URL"),
    ("--content-url", "https://cdn.example.org/c/?v=1", "may not have a query or fragment"),
    ("--content-url", "/c/", "absolute http:// or https:// URL"),
    ("--public-url", "https://user:secret@tours.example.org", "user name or password"),
])
def test_a_bad_base_url_is_a_usage_error(tmp_path, flag, value, says):
    proc = subprocess.run([sys.executable, "-m", "tourserver", "serve", "--no-build",
                           "--data", str(tmp_path), flag, value], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith(f"usage error: {flag} ") and says in proc.stderr
    assert "secret" not in proc.stderr and "Traceback" not in proc.stderr


def test_a_build_swapped_in_while_serving_keeps_the_links(mini_built, tmp_path):
    root, built = mini_built
    data = private_data(built, tmp_path)
    server = LiveServer(data, root, "--public-url", "https://tours.example.org",
                        "--content-url", "https://cdn.example.org/c")
    try:
        first = server.json("GET", "/v1/health")["build"]
        manifest = yaml.safe_load((root / "tours/mini/tour.yaml").read_text())
        manifest["title"]["en"] = "Mini tour, revised"
        changed = make_mini_root(tmp_path / "content", manifest)
        assert build(changed, data).build_id != first
        deadline = time.monotonic() + 30
        while server.json("GET", "/v1/health")["build"] == first:
            assert time.monotonic() < deadline, "the new build was not swapped in"
            time.sleep(0.1)
        tour = server.json("GET", "/v1/tours/mini?lang=en")
    finally:
        server.stop()
    assert tour["title"] == {"en": "Mini tour, revised"}
    links = list(links_in(tour))
    assert links and all(link.startswith(("https://tours.example.org/v1/",
                                          "https://cdn.example.org/c/")) for link in links)


def test_relative_links_without_the_options(mini_built, tmp_path):
    root, built = mini_built
    data = private_data(built, tmp_path)
    server = LiveServer(data, root)
    try:
        tour = json.loads(fetch(server.base + "/v1/tours/mini")[2])
    finally:
        server.stop()
    links = list(links_in(tour))
    assert links and all(link.startswith(("/v1/", "/c/")) for link in links), links
