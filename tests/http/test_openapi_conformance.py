"""The OpenAPI document the server publishes matches what the server really answers.

A real server (the production `tourserver.http.server.start`, on a loopback socket) serves a
small built tour; the schema is loaded from its own `/v1/openapi.yaml`, so the document under
test is exactly the one clients download. Three layers:

* `test_fuzz_every_operation`: schemathesis property-based tests of every operation with
  generated parameters (mostly unknown ids: the 400/404 paths and their JSON errors).
* `test_fuzz_with_real_ids`: the same, with path parameters pinned to ids that exist, so the
  200/206/302/416 paths are generated too, with fuzzed query parameters and headers.
* `test_operation_with_real_ids`: explicit requests for every documented status we can
  provoke, each validated against the spec and asserted to have that status.

Every response goes through the same checks: no 5xx, documented status, documented
Content-Type, body valid against the response schema, documented headers valid.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import resources

import h3
import pytest
import requests
import schemathesis
import yaml
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from support import make_mini_root

from tourserver.config import Settings
from tourserver.http.app import create_app
from tourserver.http.server import start
from tourserver.store.build import build
from tourserver.store.catalog import Catalog, load_published

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]

# Deterministic and bounded: the whole module runs in well under a minute.
FUZZ = settings(
    max_examples=30,
    derandomize=True,
    database=None,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],  # no shrinking: failures are reported as found
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                           HealthCheck.function_scoped_fixture],
)

SEED = 20240607
MINI_STOP = (29.5572, 106.5770)  # stop mini-a of tests/support.MINI_TOUR
STOP_CELL_8 = h3.latlng_to_cell(*MINI_STOP, 8)
STOP_CELL_7 = h3.latlng_to_cell(*MINI_STOP, 7)
NOWHERE_CELL_8 = h3.latlng_to_cell(-45.0, -120.0, 8)  # a valid cell with nothing in it

# Routes served on purpose outside the documented API.
UNDOCUMENTED_ROUTES = {"/", "/metrics"}


@dataclass
class LiveServer:
    url: str
    catalog: Catalog
    settings: Settings
    content: dict[str, str] = field(default_factory=dict)  # role -> a real "<sha>.<ext>"


def _loopback_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))  # the kernel picks a free port; no race with other tests
    sock.listen(128)
    sock.setblocking(False)
    return sock


@pytest.fixture(scope="module")
def live_server(tmp_path_factory) -> Iterator[LiveServer]:
    """The real server on a loopback port, in a thread with its own event loop."""
    base = tmp_path_factory.mktemp("openapi-conformance")
    root = make_mini_root(base / "content")
    data = base / "data"
    build(root, data)
    catalog = load_published(data)
    sock = _loopback_socket()
    port = sock.getsockname()[1]
    settings_ = Settings(data_dir=data, content_root=root, host="127.0.0.1", port=port,
                         access_log=False)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="openapi-server", daemon=True)
    thread.start()
    runner = asyncio.run_coroutine_threadsafe(start(settings_, catalog, sock=sock),
                                              loop).result(30)
    url = f"http://127.0.0.1:{port}"
    try:
        health = requests.get(f"{url}/v1/health", timeout=10)
        assert health.status_code == 200, health.text
        scene = catalog.scenes["mini-a-scene"].variant("medium")["blob"]
        content = {"scene": f"{scene['sha256']}.{scene['ext']}"}
        for name, ref in catalog.blobs.items():
            content.setdefault(ref.mime.split("/")[0], name)  # audio/..., text/...
        yield LiveServer(url, catalog, settings_, content)
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
        sock.close()


def _config(parameters: dict | None = None) -> schemathesis.Config:
    return schemathesis.Config.from_dict({
        "seed": SEED,
        "cache": {"enabled": False},
        "parameters": parameters or {},
    })


def _real_parameters(server: LiveServer) -> dict:
    return {
        "path.tour_id": "mini",
        "path.anchor_id": "mini-a",
        "path.scene_id": "mini-a-scene",
        "path.cell": STOP_CELL_8,
        "path.name": server.content["scene"],
    }


@pytest.fixture(scope="module")
def served_schema(live_server):
    """The document as the server publishes it, with generated parameters."""
    return schemathesis.openapi.from_url(f"{live_server.url}/v1/openapi.yaml",
                                         config=_config(), timeout=10)


@pytest.fixture(scope="module")
def served_schema_real_ids(live_server):
    """The same document, with every path parameter pinned to an id that exists."""
    return schemathesis.openapi.from_url(f"{live_server.url}/v1/openapi.yaml",
                                         config=_config(_real_parameters(live_server)),
                                         timeout=10)


fuzz_schema = schemathesis.pytest.from_fixture("served_schema")
real_schema = schemathesis.pytest.from_fixture("served_schema_real_ids")


@fuzz_schema.parametrize()
@FUZZ
def test_fuzz_every_operation(case):
    case.call_and_validate(checks=CHECKS, timeout=10)


@real_schema.parametrize()
@FUZZ
def test_fuzz_with_real_ids(case):
    case.call_and_validate(checks=CHECKS, timeout=10)


# ---- explicit requests with real ids ---------------------------------------------------------

@dataclass(frozen=True)
class Call:
    path: str
    status: int
    path_parameters: dict = field(default_factory=dict)
    query: dict = field(default_factory=dict)
    headers: dict = field(default_factory=dict)
    known_bug: str | None = None  # a server bug: strict xfail until it is fixed

    def __str__(self) -> str:
        extra = {**self.path_parameters, **self.query, **self.headers}
        return f"{self.path} {extra} -> {self.status}"


def _calls(content: dict[str, str]) -> list[Call]:
    scene, audio = content["scene"], content["audio"]
    return [
        Call("/v1/health", 200),
        Call("/v1/openapi.yaml", 200),
        Call("/v1/schema/tour.json", 200),
        Call("/v1/tours", 200),
        Call("/v1/tours", 200, query={"lang": "zh"}),
        Call("/v1/tours", 400, query={"lang": "fr"}),
        Call("/v1/tours", 400, query={"lang": ""}),
        Call("/v1/tours/{tour_id}", 200, {"tour_id": "mini"}),
        Call("/v1/tours/{tour_id}", 200, {"tour_id": "mini"}, query={"lang": "zh-Hans"}),
        Call("/v1/tours/{tour_id}", 400, {"tour_id": "mini"}, query={"lang": "fr"}),
        Call("/v1/tours/{tour_id}", 404, {"tour_id": "nowhere"}),
        Call("/v1/tours/{tour_id}/tileset.json", 200, {"tour_id": "mini"}),
        Call("/v1/tours/{tour_id}/tileset.json", 404, {"tour_id": "nowhere"}),
        Call("/v1/tours/{tour_id}/pack", 200, {"tour_id": "mini"}),
        Call("/v1/tours/{tour_id}/pack", 200, {"tour_id": "mini"},
             query={"lang": "zh-Hans", "tier": "low"}),
        Call("/v1/tours/{tour_id}/pack", 400, {"tour_id": "mini"}, query={"lang": "fr"}),
        Call("/v1/tours/{tour_id}/pack", 404, {"tour_id": "nowhere"}),
        Call("/v1/anchors/{anchor_id}", 200, {"anchor_id": "mini-a"}),
        Call("/v1/anchors/{anchor_id}", 200, {"anchor_id": "mini-b"}),
        Call("/v1/anchors/{anchor_id}", 404, {"anchor_id": "nowhere"}),
        Call("/v1/anchors/{anchor_id}/geopose", 200, {"anchor_id": "mini-a"}),
        Call("/v1/anchors/{anchor_id}/geopose", 200, {"anchor_id": "mini-b"}),
        Call("/v1/anchors/{anchor_id}/geopose", 404, {"anchor_id": "nowhere"}),
        Call("/v1/scenes/{scene_id}", 200, {"scene_id": "mini-a-scene"}),
        Call("/v1/scenes/{scene_id}", 404, {"scene_id": "nowhere"}),
        Call("/v1/scenes/{scene_id}/glb", 302, {"scene_id": "mini-a-scene"}),
        Call("/v1/scenes/{scene_id}/glb", 302, {"scene_id": "mini-a-scene"},
             query={"tier": "high"}),
        Call("/v1/scenes/{scene_id}/glb", 302, {"scene_id": "mini-a-scene"},
             headers={"Save-Data": "on"}),
        Call("/v1/scenes/{scene_id}/glb", 302, {"scene_id": "mini-a-scene"},
             headers={"ECT": "4g", "Device-Memory": "8"}),
        Call("/v1/scenes/{scene_id}/glb", 400, {"scene_id": "mini-a-scene"},
             query={"tier": "ultra"}),
        Call("/v1/scenes/{scene_id}/glb", 404, {"scene_id": "nowhere"}),
        Call("/v1/cells/{cell}", 200, {"cell": STOP_CELL_8}),
        Call("/v1/cells/{cell}", 200, {"cell": STOP_CELL_7}),
        Call("/v1/cells/{cell}", 200, {"cell": NOWHERE_CELL_8}),
        Call("/v1/cells/{cell}", 400, {"cell": h3.latlng_to_cell(*MINI_STOP, 9)}),
        Call("/v1/cells/{cell}", 400, {"cell": "not-a-cell"}),
        Call("/v1/cells/{cell}", 400, {"cell": "-1"}),
        Call("/c/{name}", 200, {"name": scene}),
        Call("/c/{name}", 200, {"name": audio}),
        Call("/c/{name}", 206, {"name": scene}, headers={"Range": "bytes=0-15"}),
        Call("/c/{name}", 206, {"name": scene}, headers={"Range": "bytes=-4"}),
        Call("/c/{name}", 416, {"name": scene}, headers={"Range": "bytes=999999999-"}),
        Call("/c/{name}", 404, {"name": "0" * 64 + ".glb"}),
    ]


def _call_params() -> list:
    calls = _calls({"scene": "<scene>", "audio": "<audio>"})  # real names exist only later
    return [pytest.param(i, id=str(c), marks=[pytest.mark.xfail(reason=c.known_bug,
                                                                   strict=True)]
                         if c.known_bug else []) for i, c in enumerate(calls)]


@pytest.mark.parametrize("index", _call_params())
def test_operation_with_real_ids(served_schema, live_server, index):
    call = _calls(live_server.content)[index]
    operation = served_schema[call.path]["GET"]
    case = operation.Case(path_parameters=call.path_parameters or None,
                          query=call.query or None, headers=call.headers or None)
    response = case.call_and_validate(checks=CHECKS, timeout=10)
    assert response.status_code == call.status, response.text


def test_explicit_calls_cover_every_documented_status(served_schema, live_server):
    """Each documented response status is provoked by at least one explicit call
    (304: see test_not_modified)."""
    provoked = {(c.path, str(c.status)) for c in _calls(live_server.content)}
    missing = []
    for path, methods in served_schema.raw_schema["paths"].items():
        for status in methods["get"]["responses"]:
            if status != "304" and (path, status) not in provoked:
                missing.append(f"GET {path} {status}")
    assert not missing, "documented but never provoked: " + ", ".join(missing)


@pytest.mark.parametrize("path,path_parameters", [
    ("/v1/schema/tour.json", {}),
    ("/v1/tours", {}),
    ("/v1/tours/{tour_id}", {"tour_id": "mini"}),
    ("/v1/tours/{tour_id}/tileset.json", {"tour_id": "mini"}),
    ("/v1/tours/{tour_id}/pack", {"tour_id": "mini"}),
    ("/v1/anchors/{anchor_id}", {"anchor_id": "mini-a"}),
    ("/v1/anchors/{anchor_id}/geopose", {"anchor_id": "mini-a"}),
    ("/v1/scenes/{scene_id}", {"scene_id": "mini-a-scene"}),
    ("/v1/cells/{cell}", {"cell": STOP_CELL_8}),
    ("/c/{name}", {"name": "<scene>"}),
])
def test_not_modified(served_schema, live_server, path, path_parameters):
    """A conditional GET with the ETag of a 200 gets a documented 304."""
    if path_parameters.get("name") == "<scene>":
        path_parameters = {"name": live_server.content["scene"]}
    operation = served_schema[path]["GET"]
    first = operation.Case(path_parameters=path_parameters or None).call_and_validate(
        checks=CHECKS, timeout=10)
    assert first.status_code == 200
    etag = first.headers["etag"][0]
    again = operation.Case(path_parameters=path_parameters or None,
                           headers={"If-None-Match": etag})
    response = again.call_and_validate(checks=CHECKS, timeout=10)
    assert response.status_code == 304


def test_cell_lists_the_stop(served_schema, live_server):
    """The res-8 cell of stop mini-a really returns it (not just a schema-valid empty list)."""
    response = requests.get(f"{live_server.url}/v1/cells/{STOP_CELL_8}", timeout=10)
    body = response.json()
    assert "mini-a" in [s["id"] for s in body["stops"]]
    assert "mini-a" in [a["id"] for a in body["anchors"]]
    assert [t["id"] for t in body["tours"]] == ["mini"]


def test_served_document_is_the_packaged_one(live_server):
    served = requests.get(f"{live_server.url}/v1/openapi.yaml", timeout=10)
    assert served.status_code == 200
    packaged = resources.files("tourserver.http").joinpath("openapi.yaml").read_bytes()
    assert served.content == packaged


def test_every_api_route_is_documented(served_schema, live_server):
    """Nothing under /v1 or /c is served without being in the OpenAPI document."""
    app = create_app(live_server.settings, live_server.catalog)
    served = {r.resource.canonical for r in app.router.routes()
              if r.method == "GET" and r.resource is not None}
    documented = set(yaml.safe_load(
        requests.get(f"{live_server.url}/v1/openapi.yaml", timeout=10).text)["paths"])
    assert served - UNDOCUMENTED_ROUTES == documented
