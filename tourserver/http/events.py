"""Live events over HTTP: create, list, read, tickets, end, the log, and the socket's door.
Parse the request, call the live service, serialise; the live layer does the rest."""

from __future__ import annotations

import asyncio

import orjson
from aiohttp import web

from tourserver.errors import InvalidRequest
from tourserver.http.client_address import client_address
from tourserver.http.keys import LIVE, SETTINGS
from tourserver.http.responses import json_response
from tourserver.live import socket as live_socket
from tourserver.live.hub import now_ms

NO_STORE = "no-store"


async def _body(request: web.Request, *, optional: bool = False) -> object:
    data = await request.read()
    if not data.strip():
        if optional:
            return None
        raise InvalidRequest("a JSON body is required")
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"the body is not JSON: {exc.msg} at {exc.pos}") from None


async def create_event(request: web.Request) -> web.Response:
    live = request.app[LIVE]
    # Checking a key reads keys.json when it changed (a stat when not): in a thread.
    key_id = await asyncio.to_thread(live.host_key, request.headers.get("Authorization"))
    event = await live.create_event(await _body(request), key_id)
    response = json_response(request, event, cache=NO_STORE, status=201)
    response.headers["Location"] = f"/v1/events/{event['id']}"
    return response


async def list_events(request: web.Request) -> web.Response:
    tour = request.query.get("tour")
    if tour is not None and (not tour or len(tour) > 64):
        raise InvalidRequest("query parameter 'tour' is empty or too long", field="tour")
    upcoming = request.query.get("upcoming", "0")
    if upcoming not in ("0", "1"):
        raise InvalidRequest("upcoming must be 0 or 1", field="upcoming")
    live = request.app[LIVE]
    if "Authorization" in request.headers:  # a console checking its key: say if it is bad
        await asyncio.to_thread(live.host_key, request.headers["Authorization"])
    events = await live.list_events(tour, upcoming == "1")
    return json_response(request, {"events": events}, cache=NO_STORE)


async def get_event(request: web.Request) -> web.Response:
    live = request.app[LIVE]
    event = await live.event(request.match_info["event_id"])
    return json_response(request, event.to_json(now_ms()), cache=NO_STORE)


async def issue_ticket(request: web.Request) -> web.Response:
    live = request.app[LIVE]
    # The address is used for the rate limit in memory only: never logged or stored.
    address = client_address(request.remote, request.headers.get("X-Forwarded-For"),
                             request.app[SETTINGS].live.trusted_proxies)
    ticket = await live.issue_ticket(request.match_info["event_id"],
                                     await _body(request, optional=True), address)
    return json_response(request, ticket, cache=NO_STORE, status=201)


async def end_event(request: web.Request) -> web.Response:
    live = request.app[LIVE]
    event = await live.end_event(request.match_info["event_id"],
                                 request.headers.get("Authorization"))
    return json_response(request, event, cache=NO_STORE)


async def get_log(request: web.Request) -> web.StreamResponse:
    live = request.app[LIVE]
    event = await live.event(request.match_info["event_id"])
    lines = live.log_lines(event, request.query.get("ticket"))
    first = await anext(lines, b"")  # errors (a missing ticket) before the status is sent
    response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson",
                                           "Cache-Control": NO_STORE})
    await response.prepare(request)
    if first:
        await response.write(first)
    async for chunk in lines:
        await response.write(chunk)
    await response.write_eof()
    return response


async def live(request: web.Request) -> web.StreamResponse:
    service = request.app[LIVE]
    event = await service.event_for_socket(request.match_info["event_id"])
    ticket = request.query.get("ticket")
    if not ticket:
        raise InvalidRequest("?ticket= is required (POST /v1/events/{id}/tickets)",
                             code="ticket_missing", field="ticket")
    claims = service.claims(ticket, event.id)
    live_socket.check_origin(request, service.config.allowed_origins)
    from_seq = _int_query(request, "from_seq")
    speed = request.query.get("speed", "1")
    try:
        speed_value = float(speed)
    except ValueError:
        speed_value = 0.0
    if not 0.25 <= speed_value <= 16:
        raise InvalidRequest("speed must be a number from 0.25 to 16", field="speed")
    if request.headers.get("Upgrade", "").lower() != "websocket":
        raise InvalidRequest("this is a WebSocket endpoint: send an Upgrade request",
                             code="websocket_expected")
    return await live_socket.accept(service, request, event, claims, from_seq, speed_value)


def _int_query(request: web.Request, name: str) -> int | None:
    value = request.query.get(name)
    if value is None:
        return None
    if not (value.isascii() and value.isdigit()) or len(value) > 15:
        raise InvalidRequest(f"{name} must be a non-negative integer", field=name)
    return int(value)
