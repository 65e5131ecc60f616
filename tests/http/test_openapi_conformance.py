"""The OpenAPI document the server publishes matches what the server really answers.

A real server (the production `tourserver.http.server.start`, on a loopback socket) serves a
small built tour; the schema is loaded from its own `/v1/openapi.yaml`, so the document under
test is exactly the one clients download. Three layers, and a real WebSocket client:

* `test_fuzz_every_operation`: schemathesis property-based tests of every operation with
  generated parameters (mostly unknown ids: the 400/404 paths and their JSON errors).
* `test_fuzz_with_real_ids`: the same, with path parameters pinned to ids that exist, so the
  200/206/302/416 paths are generated too, with fuzzed query parameters and headers.
* `test_operation_with_real_ids`: explicit requests for every documented status we can
  provoke, each validated against the spec and asserted to have that status.

Live events are covered the same way: the fixture makes host and creator API keys, creates
real events (public, ticketed, ended...) and tickets through the API, and the explicit calls
provoke every documented status of every event operation. Two more servers on the same data
serve the calls a default server cannot answer: one with a tiny ticket rate limit (429) and
one with several workers and no broker, where live events are off (503). The WebSocket
upgrade (101) and the 403s only an upgrade can meet (kicked, event_full) are checked with a
real `websockets` client in `test_live_socket_*`.

Every response goes through the same checks: no 5xx, documented status, documented
Content-Type, body valid against the response schema, documented headers valid.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path

import h3
import jsonschema
import orjson
import pytest
import requests
import schemathesis
import websockets.sync.client
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

from tourserver.config import LiveSettings, Settings
from tourserver.http.app import create_app
from tourserver.http.server import start
from tourserver.live.tokens import Claims, Signer, load_secret
from tourserver.store.build import build
from tourserver.store.catalog import Catalog, load_published
from tourserver.store.keys import KeyStore

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
# The web app's pages and files, and metrics: served on purpose outside the JSON API.
UNDOCUMENTED_ROUTES = {("GET", "/"), ("GET", "/metrics"), ("GET", "/host"),
                       ("GET", "/app/{name}"), ("GET", "/sw.js"),
                       ("GET", "/vendor/{spec}/{path}")}
HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")

# The main server's ticket limit is out of reach: fuzzing alone asks for ~100 tickets, and
# the explicit 201s must not meet a 429. The limited server has the tiny one.
MAIN_TICKETS_PER_MINUTE = 100_000
LIMITED_TICKETS_PER_MINUTE = 2

# Fixed times, so the explicit calls (and their test ids) are the same on every run.
_SOON = datetime.now(UTC) + timedelta(days=30)  # events are planned at most two years ahead
FUTURE = _SOON.replace(hour=12, minute=0, second=0, microsecond=0).isoformat()
FUTURE_END = _SOON.replace(hour=15, minute=0, second=0, microsecond=0).isoformat()
UNKNOWN_KEY = "tsk_000000000000_" + "A" * 43  # well-formed, never issued
BIG_BODY = b'{"title": "' + b"x" * (70 * 1024) + b'"}'  # over the 64 KiB request limit


@dataclass
class LiveServer:
    url: str
    catalog: Catalog
    settings: Settings
    content: dict[str, str] = field(default_factory=dict)  # role -> a real "<sha>.<ext>"
    # name -> a real value: event ids, API keys, host tokens, tickets, invite codes
    ids: dict[str, str] = field(default_factory=dict)


def _loopback_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))  # the kernel picks a free port; no race with other tests
    sock.listen(128)
    sock.setblocking(False)
    return sock


@contextmanager
def _serving(settings_: Settings, catalog: Catalog, sock: socket.socket) -> Iterator[str]:
    """The real server on `sock`, in a thread with its own event loop; yields its URL."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="openapi-server", daemon=True)
    thread.start()
    runner = asyncio.run_coroutine_threadsafe(start(settings_, catalog, sock=sock),
                                              loop).result(30)
    url = f"http://127.0.0.1:{settings_.port}"
    try:
        health = requests.get(f"{url}/v1/health", timeout=10)
        assert health.status_code == 200, health.text
        yield url
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
        sock.close()


@contextmanager
def _other_server(main: LiveServer, data_dir: Path | None = None, **changes) -> Iterator[str]:
    """Another server on the main one's data (events, keys and secret), other settings."""
    sock = _loopback_socket()
    settings_ = Settings(data_dir=data_dir or main.settings.data_dir,
                         content_root=main.settings.content_root, host="127.0.0.1",
                         port=sock.getsockname()[1], access_log=False, **changes)
    with _serving(settings_, main.catalog, sock) as url:
        yield url


def _iso(when: datetime) -> str:
    return when.isoformat(timespec="seconds").replace("+00:00", "Z")


def _post(url: str, path: str, body: object = None, authorization: str | None = None,
          status: int = 201) -> dict:
    headers = {"Authorization": authorization} if authorization else {}
    response = requests.post(f"{url}{path}", json=body, headers=headers, timeout=10)
    assert response.status_code == status, response.text
    return response.json()


def _create_event(url: str, key: str, **fields) -> dict:
    body = {"title": "Lights on the river", "tour": "mini", "starts_at": FUTURE, **fields}
    return _post(url, "/v1/events", body, f"Bearer {key}")


def _ticket(url: str, event_id: str, body: object = None) -> dict:
    return _post(url, f"/v1/events/{event_id}/tickets", body)


def _live_ids(url: str, data: Path) -> dict[str, str]:
    """Keys, events and tickets made through the API, as the explicit calls use them."""
    store = KeyStore(data)
    _, host = store.create("host", "conformance host")
    _, other_host = store.create("host", "another host")
    _, creator = store.create("creator", "conformance creator")
    now = datetime.now(UTC)
    public = _create_event(url, host, title="Public, on now", starts_at=_iso(now - timedelta(
        minutes=10)), ends_at=_iso(now + timedelta(hours=3)), stop="mini-a")
    ticketed = _create_event(url, host, title="Ticketed, tomorrow", visibility="ticketed",
                             starts_at=_iso(now + timedelta(days=1)), capacity=50)
    ended = _create_event(url, host, title="Over", starts_at=_iso(now))
    _post(url, f"/v1/events/{ended['id']}/end", None, f"Bearer {ended['host_token']}", 200)
    to_end = _create_event(url, host, title="Ended by its host token")
    to_end_by_key = _create_event(url, host, title="Ended by its API key")
    to_end_lowercase = _create_event(url, host, title="Ended with a lower-case scheme")
    fuzz = _create_event(url, host, title="Fuzzed", starts_at=_iso(now))  # may be ended
    # As far ahead as an event may be planned (two years, less a day).
    far = _create_event(url, host, title="The far future",
                        starts_at=_iso(now + timedelta(days=729)))
    assert ticketed["invite_code"] and public["invite_code"] is None
    signer = Signer(load_secret(data))  # the server's own secret: genuine, long expired

    def expired(event: dict, role: str) -> str:
        return signer.sign(Claims(event["id"], role, "a-expired", expires_ms=1000.0))

    return {
        "host_key": host, "other_host_key": other_host, "creator_key": creator,
        "public": public["id"], "ticketed": ticketed["id"], "ended": ended["id"],
        "to_end": to_end["id"], "to_end_by_key": to_end_by_key["id"], "fuzz": fuzz["id"],
        "far": far["id"], "to_end_lowercase": to_end_lowercase["id"],
        "public_host_token": public["host_token"], "to_end_host_token": to_end["host_token"],
        "invite": ticketed["invite_code"],
        "public_ticket": _ticket(url, public["id"], {"name": "Ada"})["ticket"],
        "ticketed_ticket": _ticket(url, ticketed["id"],
                                   {"invite": ticketed["invite_code"]})["ticket"],
        "fuzz_ticket": _ticket(url, fuzz["id"])["ticket"],
        "expired_ticket": expired(ticketed, "attendee"),
        "expired_public_ticket": expired(public, "attendee"),
        "expired_host_token": expired(public, "host"),
    }


@pytest.fixture(scope="module")
def live_server(tmp_path_factory) -> Iterator[LiveServer]:
    """The real server on a loopback port, with live events, keys and tickets made."""
    base = tmp_path_factory.mktemp("openapi-conformance")
    root = make_mini_root(base / "content")
    data = base / "data"
    build(root, data)
    catalog = load_published(data)
    sock = _loopback_socket()
    settings_ = Settings(data_dir=data, content_root=root, host="127.0.0.1",
                         port=sock.getsockname()[1], access_log=False,
                         live=LiveSettings(tickets_per_minute=MAIN_TICKETS_PER_MINUTE))
    with _serving(settings_, catalog, sock) as url:
        scene = catalog.scenes["mini-a-scene"].variant("medium")["blob"]
        content = {"scene": f"{scene['sha256']}.{scene['ext']}"}
        for name, ref in catalog.blobs.items():
            content.setdefault(ref.mime.split("/")[0], name)  # audio/..., text/...
        yield LiveServer(url, catalog, settings_, content, {**content, **_live_ids(url, data)})


@pytest.fixture(scope="module")
def limited_server(live_server) -> Iterator[str]:
    """The same data on a server allowing LIMITED_TICKETS_PER_MINUTE tickets an address."""
    with _other_server(live_server, live=LiveSettings(
            tickets_per_minute=LIMITED_TICKETS_PER_MINUTE)) as url:
        yield url


@pytest.fixture(scope="module")
def unavailable_server(live_server) -> Iterator[str]:
    """Several workers and no shared broker: live events answer 503."""
    with _other_server(live_server, workers=2) as url:
        yield url


@pytest.fixture(scope="module")
def scratch_server(live_server, tmp_path_factory) -> Iterator[str]:
    """The same catalog and API keys, but events of its own: for calls that break a server's
    event store (a known bug), away from the events the other calls rely on."""
    data = tmp_path_factory.mktemp("openapi-scratch")
    shutil.copy2(live_server.settings.data_dir / "keys.json", data / "keys.json")
    with _other_server(live_server, data_dir=data) as url:
        yield url


def _config(parameters: dict | None = None, bearer: str | None = None) -> schemathesis.Config:
    return schemathesis.Config.from_dict({
        "seed": SEED,
        "cache": {"enabled": False},
        "parameters": parameters or {},
        **({"auth": {"openapi": {"bearer": {"bearer": bearer}}}} if bearer else {}),
    })


def _real_parameters(server: LiveServer) -> dict:
    return {
        "path.tour_id": "mini",
        "path.anchor_id": "mini-a",
        "path.scene_id": "mini-a-scene",
        "path.cell": STOP_CELL_8,
        "path.name": server.content["scene"],
        # An event of its own: POST .../end with the real host key may end it.
        "path.event_id": server.ids["fuzz"],
        "query.ticket": server.ids["fuzz_ticket"],
    }


@pytest.fixture(scope="module")
def served_schema(live_server):
    """The document as the server publishes it, with generated parameters."""
    return schemathesis.openapi.from_url(f"{live_server.url}/v1/openapi.yaml",
                                         config=_config(), timeout=10)


@pytest.fixture(scope="module")
def served_schema_real_ids(live_server):
    """The same document, with every path parameter pinned to an id that exists, tickets to
    a real one and the bearer credential to a real host API key."""
    return schemathesis.openapi.from_url(f"{live_server.url}/v1/openapi.yaml",
                                         config=_config(_real_parameters(live_server),
                                                        live_server.ids["host_key"]),
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

NO_BODY = object()  # a Call without a request body


@dataclass(frozen=True)
class Call:
    path: str
    status: int
    path_parameters: dict = field(default_factory=dict)
    query: dict = field(default_factory=dict)
    headers: dict = field(default_factory=dict)
    method: str = "GET"
    body: object = NO_BODY  # JSON-able, or bytes sent as they are (as application/json)
    code: str | None = None  # the error code the body must carry
    server: str = "main"  # or "limited" (tiny ticket rate limit), "unavailable" (live off)
    repeat: int = 1  # send up to this many times until the status comes (a rate limit)
    known_bug: str | None = None  # a server bug: strict xfail until it is fixed

    def __str__(self) -> str:
        extra = {**self.path_parameters, **self.query, **self.headers}
        text = f"{self.method} {self.path} {extra}"
        if self.body is not NO_BODY:
            text += f" body={_short(self.body)}"
        if self.server != "main":
            text += f" on {self.server}"
        return f"{text} -> {self.status}"


def _short(value: object) -> str:
    """A body for a test id: every value that could be long cut short."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k!r}: {_short(v)}" for k, v in value.items()) + "}"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


class _Placeholders(dict):
    """Ids for test names at collection time, before the server made the real ones."""

    def __missing__(self, key: str) -> str:
        return f"<{key}>"


def _event_calls(ids: dict[str, str]) -> list[Call]:
    host = {"Authorization": f"Bearer {ids['host_key']}"}
    creator = {"Authorization": f"Bearer {ids['creator_key']}"}
    public, ticketed, ended = ids["public"], ids["ticketed"], ids["ended"]
    ev = "/v1/events/{event_id}"
    create = {"title": "Lanterns", "tour": "mini", "starts_at": FUTURE}

    def post_event(status: int, body: object = NO_BODY, headers: dict = host, **kw) -> Call:
        return Call("/v1/events", status, headers=headers, method="POST", body=body, **kw)

    def ticket(status: int, event_id: str, body: object = NO_BODY, **kw) -> Call:
        return Call(ev + "/tickets", status, {"event_id": event_id}, method="POST",
                    body=body, **kw)

    def end(status: int, event_id: str, authorization: str | None, **kw) -> Call:
        headers = {"Authorization": authorization} if authorization else {}
        return Call(ev + "/end", status, {"event_id": event_id}, headers=headers,
                    method="POST", **kw)

    def log(status: int, event_id: str, ticket_: str | None = None, **kw) -> Call:
        query = {"ticket": ticket_} if ticket_ is not None else {}
        return Call(ev + "/log", status, {"event_id": event_id}, query=query, **kw)

    def live(status: int, event_id: str, query: dict, **kw) -> Call:
        return Call(ev + "/live", status, {"event_id": event_id}, query=query, **kw)

    return [
        # POST /v1/events
        post_event(201, create),
        post_event(201, {**create, "stop": "mini-b", "ends_at": FUTURE_END, "capacity": 3,
                         "visibility": "ticketed"}),
        post_event(201, {**create, "stop": None, "ends_at": None, "capacity": None,
                         "visibility": "public"}),
        post_event(400),  # no body
        post_event(400, b"{not json"),
        post_event(400, ["not", "an", "object"]),
        post_event(400, {**create, "colour": "red"}),
        post_event(400, {**create, "title": "   "}),
        post_event(400, {**create, "tour": "nowhere"}, code="tour_unknown"),
        post_event(400, {key: v for key, v in create.items() if key != "tour"},
                   code="tour_unknown"),
        post_event(400, {**create, "stop": "nowhere"}, code="stop_unknown"),
        post_event(400, {**create, "starts_at": "tomorrow at nine"}),
        post_event(400, {**create, "starts_at": FUTURE[:19]}),  # no offset
        post_event(400, {**create, "ends_at": _SOON.replace(hour=11).isoformat()}),  # before
        post_event(400, {**create, "starts_at": "2001-01-01T00:00:00Z"}),  # over already
        post_event(400, {**create, "capacity": 0}),
        post_event(400, {**create, "capacity": True}),
        post_event(400, {**create, "visibility": "secret"}),
        post_event(401, create, {}),
        post_event(401, create, {"Authorization": f"Bearer {UNKNOWN_KEY}"}),
        post_event(401, create, {"Authorization": f"Basic {ids['host_key']}"}),
        post_event(403, create, creator),
        post_event(413, BIG_BODY),
        post_event(503, create, server="unavailable", code="live_unavailable"),
        post_event(400, {**create, "starts_at": "0001-01-01T00:00:00+01:00"}),  # year 0 UTC
        post_event(400, {**create, "starts_at": "9999-12-31T23:30:00-01:00"}, server="scratch"),
        post_event(400, {**create, "starts_at": "2999-01-01T00:00:00Z"}, server="scratch"),
        # GET /v1/events
        Call("/v1/events", 200),
        Call("/v1/events", 200, query={"tour": "mini"}),
        Call("/v1/events", 200, query={"tour": "nowhere"}),
        Call("/v1/events", 200, query={"upcoming": "1"}),
        Call("/v1/events", 200, query={"tour": "mini", "upcoming": "0"}),
        Call("/v1/events", 400, query={"upcoming": "yes"}),
        Call("/v1/events", 200, headers={"Authorization": f"Bearer {ids['host_key']}"}),
        Call("/v1/events", 401, headers={"Authorization": f"Bearer {UNKNOWN_KEY}"}),
        Call("/v1/events", 403, headers={"Authorization": f"Bearer {ids['creator_key']}"}),
        Call("/v1/events", 400, query={"tour": ""}),
        Call("/v1/events", 400, query={"tour": "t" * 65}),
        Call("/v1/events", 503, server="unavailable"),
        # GET /v1/events/{event_id}
        Call(ev, 200, {"event_id": public}),
        Call(ev, 200, {"event_id": ticketed}),
        Call(ev, 200, {"event_id": ended}),
        Call(ev, 200, {"event_id": ids["far"]}),
        Call(ev, 404, {"event_id": "ev_0000000000000000"}),
        Call(ev, 404, {"event_id": "e" * 65}),
        Call(ev, 503, {"event_id": public}, server="unavailable"),
        # POST /v1/events/{event_id}/tickets
        ticket(201, public),
        ticket(201, public, {}),
        ticket(201, public, {"name": "Ada", "role": "viewer"}),
        ticket(201, public, {"invite": "ignored for a public event"}),
        ticket(201, ticketed, {"invite": ids["invite"], "name": "Bo"}),
        ticket(201, ended),  # a viewer ticket for the replay
        ticket(400, public, b"{not json"),
        ticket(400, public, ["attendee"]),
        ticket(400, public, {"seat": "12A"}),
        ticket(400, public, {"role": "host"}),
        ticket(400, public, {"name": "n" * 41}),
        ticket(400, public, {"name": 7}),
        ticket(403, ticketed, code="invite_required"),
        ticket(403, ticketed, {"invite": "not-the-code"}, code="invite_required"),
        ticket(404, "ev_0000000000000000"),
        ticket(413, public, BIG_BODY),
        ticket(429, public, server="limited", repeat=LIMITED_TICKETS_PER_MINUTE + 1,
               code="rate_limited"),
        ticket(503, public, server="unavailable", code="live_unavailable"),
        ticket(201, ids["far"]),
        # POST /v1/events/{event_id}/end
        end(200, ids["to_end"], f"Bearer {ids['to_end_host_token']}"),
        end(200, ids["to_end_by_key"], f"Bearer {ids['host_key']}"),
        end(200, ended, f"Bearer {ids['host_key']}"),  # again: answered as it is
        end(401, public, None),
        end(401, public, f"Token {ids['public_host_token']}"),
        end(401, public, f"Bearer {UNKNOWN_KEY}"),
        end(401, public, "Bearer not-a-token", code="ticket_invalid"),
        end(401, public, f"Bearer {ids['to_end_host_token']}", code="ticket_invalid"),
        end(401, public, f"Bearer {ids['expired_host_token']}", code="ticket_expired"),
        end(403, public, f"Bearer {ids['public_ticket']}"),
        end(403, public, f"Bearer {ids['other_host_key']}"),
        end(403, public, f"Bearer {ids['creator_key']}"),
        end(404, "ev_0000000000000000", f"Bearer {ids['host_key']}"),
        end(503, public, f"Bearer {ids['host_key']}", server="unavailable"),
        Call(ev + "/end", 200, {"event_id": ended}, method="POST",
             headers={"Authorization": f"Bearer {ids['host_key']}", "If-None-Match": "*"}),
        end(200, ids["to_end_lowercase"], f"bearer {ids['host_key']}"),
        # GET /v1/events/{event_id}/log
        log(200, public),
        log(200, public, "ignored for a public event"),
        log(200, ended),
        log(200, ticketed, ids["ticketed_ticket"]),
        log(401, ticketed),
        log(401, ticketed, "not-a-ticket", code="ticket_invalid"),
        log(401, ticketed, ids["public_ticket"], code="ticket_invalid"),  # another event's
        log(401, ticketed, ids["expired_ticket"], code="ticket_expired"),
        log(404, "ev_0000000000000000"),
        log(503, public, server="unavailable"),
        # GET /v1/events/{event_id}/live (the upgrade itself: test_live_socket_*)
        live(400, public, {}, code="ticket_missing"),
        live(400, public, {"ticket": ids["public_ticket"]}, code="websocket_expected"),
        live(400, public, {"ticket": ids["public_ticket"], "from_seq": "-1"}),
        live(400, public, {"ticket": ids["public_ticket"], "from_seq": "next"}),
        live(400, public, {"ticket": ids["public_ticket"], "speed": "100"}),
        live(400, public, {"ticket": ids["public_ticket"], "speed": "fast"}),
        live(401, public, {"ticket": "not-a-ticket"}, code="ticket_invalid"),
        live(401, public, {"ticket": ids["ticketed_ticket"]}, code="ticket_invalid"),
        live(401, public, {"ticket": ids["expired_public_ticket"]}, code="ticket_expired"),
        live(403, public, {"ticket": ids["public_ticket"]},
             headers={"Origin": "https://evil.example"}, code="origin_forbidden"),
        live(404, "ev_0000000000000000", {"ticket": ids["public_ticket"]}),
        live(503, public, {"ticket": ids["public_ticket"]}, server="unavailable"),
        live(400, public, {"ticket": ids["public_ticket"], "from_seq": "\u00b2"}),
    ]


def _calls(ids: dict[str, str]) -> list[Call]:
    scene, audio = ids["scene"], ids["audio"]
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
        *_event_calls(ids),
    ]


def _call_params() -> list:
    calls = _calls(_Placeholders())  # real ids exist only later
    return [pytest.param(i, id=str(c), marks=[pytest.mark.xfail(reason=c.known_bug,
                                                                   strict=True)]
                         if c.known_bug else []) for i, c in enumerate(calls)]


def _server_url(request, server: LiveServer, name: str) -> str:
    if name == "main":
        return server.url
    return request.getfixturevalue(f"{name}_server")


@pytest.mark.parametrize("index", _call_params())
def test_operation_with_real_ids(request, served_schema, live_server, index):
    call = _calls(live_server.ids)[index]
    operation = served_schema[call.path][call.method]
    kwargs = {} if call.body is NO_BODY else {"body": call.body,
                                               "media_type": "application/json"}
    case = operation.Case(path_parameters=call.path_parameters or None,
                          query=call.query or None, headers=call.headers or None, **kwargs)
    base_url = _server_url(request, live_server, call.server)
    # A documented 503 is what the call is for; every other check still applies.
    checks = CHECKS if call.status != 503 else [c for c in CHECKS if c is not not_a_server_error]
    for _ in range(call.repeat):
        response = case.call_and_validate(base_url=base_url, checks=checks, timeout=10)
        if response.status_code == call.status:
            break
    assert response.status_code == call.status, response.text
    if call.code is not None:
        assert response.json()["error"]["code"] == call.code, response.text
    if call.status == 429:
        assert int(response.headers["retry-after"][0]) >= 1
    if (call.method, call.path, call.status) == ("POST", "/v1/events", 201):
        assert response.headers["location"] == [f"/v1/events/{response.json()['id']}"]


# Provoked elsewhere: 304 by test_not_modified, 101 by test_live_socket_upgrades, 414 and
# 431 by test_oversized_requests_get_documented_json_errors.
PROVOKED_ELSEWHERE = {"304", "101", "414", "431"}


def test_oversized_requests_get_documented_json_errors(served_schema, live_server):
    """Every operation documents 414 (request line too long) and 431 (header too long):
    the server answers both, before routing, with the JSON error the document promises."""
    import requests

    for path, methods in served_schema.raw_schema["paths"].items():
        for method, operation in methods.items():
            if method not in HTTP_METHODS:
                continue
            url = live_server.url + re.sub(r"\{[^}]+\}", "x", path)
            for status, kwargs in (("414", {"params": {"pad": "p" * 9000}}),
                                   ("431", {"headers": {"X-Pad": "p" * 9000}})):
                assert status in operation["responses"], (method, path, status)
                response = requests.request(method.upper(), url, timeout=10, **kwargs)
                assert str(response.status_code) == status, (method, path, response.text)
                assert response.headers["Content-Type"].startswith("application/json")
                assert response.json()["error"]["code"]


def test_explicit_calls_cover_every_documented_status(served_schema, live_server):
    """Each documented response status of each operation is provoked by at least one
    explicit call that is not a known bug."""
    provoked = {(c.method, c.path, str(c.status)) for c in _calls(live_server.ids)
                if not c.known_bug}
    missing = []
    for path, methods in served_schema.raw_schema["paths"].items():
        for method, operation in methods.items():
            if method not in HTTP_METHODS:
                continue
            for status in operation["responses"]:
                if (status not in PROVOKED_ELSEWHERE
                        and (method.upper(), path, status) not in provoked):
                    missing.append(f"{method.upper()} {path} {status}")
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
    ("/v1/events", {}),
    ("/v1/events/{event_id}", {"event_id": "<public>"}),
])
def test_not_modified(served_schema, live_server, path, path_parameters):
    """A conditional GET with the ETag of a 200 gets a documented 304."""
    path_parameters = {name: live_server.ids[value[1:-1]] if value.startswith("<") else value
                       for name, value in path_parameters.items()}
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
    """Nothing under /v1 or /c is served, with any method, without being in the OpenAPI
    document (HEAD comes with every GET)."""
    app = create_app(live_server.settings, live_server.catalog)
    served = {(r.method, r.resource.canonical) for r in app.router.routes()
              if r.method != "HEAD" and r.resource is not None}
    paths = yaml.safe_load(
        requests.get(f"{live_server.url}/v1/openapi.yaml", timeout=10).text)["paths"]
    documented = {(method.upper(), path) for path, methods in paths.items()
                  for method in methods if method in HTTP_METHODS}
    assert served - UNDOCUMENTED_ROUTES == documented


# ---- the live socket: what a schemathesis call cannot do ---------------------------------

def _ws_url(server: LiveServer, event_id: str, ticket: str, **query: str) -> str:
    extra = "".join(f"&{k}={v}" for k, v in query.items())
    return f"ws://127.0.0.1:{server.settings.port}/v1/events/{event_id}/live?ticket={ticket}{extra}"


def _receive_until(ws, kind: str) -> dict:
    while True:
        message = json.loads(ws.recv(timeout=10))
        if message["type"] == kind:
            return message


def _documented_statuses(served_schema, path: str) -> dict:
    return served_schema.raw_schema["paths"][path]["get"]["responses"]


def _assert_documented_rejection(served_schema, exc: websockets.InvalidStatus,
                                 status: int, code: str) -> None:
    """An upgrade refused with a documented status and a JSON error of the documented shape."""
    response = exc.response
    assert response.status_code == status, response.body
    assert str(status) in _documented_statuses(served_schema, "/v1/events/{event_id}/live")
    assert response.headers["Content-Type"].startswith("application/json")
    body = orjson.loads(response.body)
    jsonschema.validate(body, served_schema.raw_schema["components"]["schemas"]["Error"])
    assert body["error"]["code"] == code, body


@pytest.mark.parametrize("event,ticket,mode", [
    ("public", "public_ticket", "live"),
    ("public", "public_host_token", "live"),
    ("ticketed", "ticketed_ticket", "live"),
    ("ended", None, "replay"),
])
def test_live_socket_upgrades(served_schema, live_server, event, ticket, mode):
    """A real WebSocket client gets the documented 101, then the welcome."""
    assert "101" in _documented_statuses(served_schema, "/v1/events/{event_id}/live")
    event_id = live_server.ids[event]
    token = live_server.ids[ticket] if ticket else _ticket(live_server.url, event_id)["ticket"]
    with websockets.sync.client.connect(_ws_url(live_server, event_id, token),
                                        open_timeout=10) as ws:
        assert ws.response.status_code == 101
        welcome = _receive_until(ws, "welcome")
        assert welcome["event"]["id"] == event_id
        assert welcome.get("mode") == mode


def test_live_socket_event_full(served_schema, live_server):
    """A full event refuses the upgrade with the documented 403 (code event_full)."""
    event = _create_event(live_server.url, live_server.ids["host_key"], capacity=1,
                          starts_at=_iso(datetime.now(UTC)))
    first, second = (_ticket(live_server.url, event["id"])["ticket"] for _ in range(2))
    with websockets.sync.client.connect(_ws_url(live_server, event["id"], first),
                                        open_timeout=10) as ws:
        _receive_until(ws, "welcome")
        with pytest.raises(websockets.InvalidStatus) as refused:
            websockets.sync.client.connect(_ws_url(live_server, event["id"], second),
                                           open_timeout=10)
    _assert_documented_rejection(served_schema, refused.value, 403, "event_full")


def test_live_socket_kicked(served_schema, live_server):
    """Someone the host kicked is refused the upgrade with the documented 403 (kicked)."""
    event = _create_event(live_server.url, live_server.ids["host_key"],
                          starts_at=_iso(datetime.now(UTC)))
    ticket = _ticket(live_server.url, event["id"], {"name": "Troll"})
    with (websockets.sync.client.connect(_ws_url(live_server, event["id"],
                                                 event["host_token"]), open_timeout=10) as host,
          websockets.sync.client.connect(_ws_url(live_server, event["id"], ticket["ticket"]),
                                         open_timeout=10) as attendee):
        _receive_until(host, "welcome")
        assert _receive_until(attendee, "welcome")["you"]["id"] == ticket["id"]
        host.send(json.dumps({"type": "moderate", "action": "kick", "target": ticket["id"]}))
        _receive_until(host, "moderate")
        with pytest.raises(websockets.ConnectionClosed):
            while True:
                attendee.recv(timeout=10)
    with pytest.raises(websockets.InvalidStatus) as refused:
        websockets.sync.client.connect(_ws_url(live_server, event["id"], ticket["ticket"]),
                                       open_timeout=10)
    _assert_documented_rejection(served_schema, refused.value, 403, "kicked")
