"""One live socket from upgrade to close: checks before the upgrade, welcome, resume or
replay, then the receive loop that turns client frames into durable messages, presence,
reactions and time answers."""

from __future__ import annotations

import asyncio
import logging
import time
from socket import SO_SNDBUF, SOL_SOCKET
from urllib.parse import urlsplit

import orjson
from aiohttp import WSMsgType, web

from tourserver.errors import Forbidden
from tourserver.live import protocol
from tourserver.live.connection import Connection
from tourserver.live.events import Event
from tourserver.live.hub import Room, error_frame, now_ms
from tourserver.live.protocol import ALLOWED, Close, ProtocolError, text_frame
from tourserver.live.room import check_cue, new_state
from tourserver.live.service import LiveService
from tourserver.live.tokens import Claims

log = logging.getLogger("tourserver.live")
LOOPBACK = {"localhost", "127.0.0.1", "::1", "[::1]"}
REPLAY_LEAD_MS = 1000.0
KERNEL_SEND_BUFFER = 64 * 1024
HISTORY_STALL_S = 10.0
MAX_APPENDS_WAITING = 2000  # per socket: beyond this, stop reading it until they are logged


def check_origin(request: web.Request, allowed: tuple[str, ...]) -> None:
    """Same-origin, loopback and configured origins pass; no Origin (native apps) passes."""
    origin = request.headers.get("Origin")
    if origin is None:
        return
    if origin in allowed or "*" in allowed:
        return
    parts = urlsplit(origin)
    if parts.hostname in LOOPBACK or parts.netloc == request.host:
        return
    raise Forbidden(f"origin {origin[:100]!r} may not open live sockets here",
                    code="origin_forbidden")


async def accept(service: LiveService, request: web.Request, event: Event, claims: Claims,
                 from_seq: int | None, speed: float) -> web.WebSocketResponse:
    """Everything before the upgrade has been checked but the room; then the socket."""
    tour = service.tours.get(event.tour)
    if tour is None:
        raise Forbidden(f"tour {event.tour!r} of this event is not published any more",
                        code="tour_unpublished")
    limits = service.limits
    replay = event.ended_at_ms is not None
    room = None if replay else await service.hub.room(event, tour)
    try:
        if room is not None:
            if claims.subject in room.state.kicked:
                raise Forbidden("the host removed you from this event", code="kicked")
            if (event.capacity is not None and claims.role != "host"
                    and room.present() >= event.capacity):
                raise Forbidden(f"the event is full ({event.capacity} people)",
                                code="event_full")
        ws = web.WebSocketResponse(compress=False, max_msg_size=limits.max_frame_bytes,
                                   heartbeat=limits.heartbeat_s, timeout=3.0)
        await ws.prepare(request)
    except BaseException:
        if room is not None:
            room.joining -= 1
            await service.hub.release(room)
        raise
    transport = request.transport
    assert transport is not None
    sock = transport.get_extra_info("socket")
    if sock is not None:
        # A fixed kernel send buffer: bounded kernel memory per phone, and a stalled phone
        # shows up in our own queue (and is dropped there) instead of hiding in megabytes
        # of autotuned kernel buffer.
        sock.setsockopt(SOL_SOCKET, SO_SNDBUF, KERNEL_SEND_BUFFER)
    conn = Connection(ws, transport, claims.role, claims.subject, claims.name, limits)
    loop = asyncio.get_running_loop()
    delay = (claims.expires_ms - now_ms()) / 1000.0
    conn.expiry = loop.call_later(max(0.0, delay), conn.close, Close.TICKET_EXPIRED,
                                  "the ticket expired: get a new one and resume")
    if room is None:
        service.hub.replays.add(conn)
        try:
            await _replay(service, ws, conn, event, speed)
        finally:
            service.hub.replays.discard(conn)
        return ws
    conn.on_close = room.remove
    room.add(conn)  # from here on live durable messages queue in conn.pending
    room.joining -= 1
    try:
        await _welcome(service, room, conn, from_seq)
        await _receive(service, room, conn)
        if conn.close_task is not None:
            await conn.close_task  # our close frame goes out before the handler returns
    finally:
        if conn.expiry is not None:
            conn.expiry.cancel()
        room.remove(conn)
        if conn.appender is not None:  # what this socket sent is logged even if it left
            await asyncio.shield(conn.appender)
        await service.hub.release(room)
    return ws


async def _welcome(service: LiveService, room: Room, conn: Connection,
                   from_seq: int | None) -> None:
    now = now_ms()
    seq = room.state.seq
    conn.sent_seq = seq
    state = room.state.snapshot(now, room.present())
    event = room.event.to_json(now)
    event["status"] = state["phase"]  # a host's first cue starts it before starts_at
    conn.send_json({"type": "welcome", "v": protocol.VERSION, "role": conn.role,
                    "mode": "live", "event": event, "seq": seq,
                    "server_time": now_ms(), "state": state,
                    "you": {"id": conn.subject, "name": conn.name, "conn": conn.id},
                    "limits": {"max_frame_bytes": service.limits.max_frame_bytes,
                               "chat_max_chars": service.limits.chat_max_chars,
                               "cue_horizon_ms": service.limits.cue_horizon_ms}})
    if from_seq is not None and from_seq < seq:
        if seq - from_seq > service.limits.history_window:
            conn.send_json({"type": "snapshot", "reset": True, "seq": seq,
                            "state": room.state.snapshot(now_ms(), room.present()),
                            "reason": f"from_seq {from_seq} is older than the history window "
                                      f"({service.limits.history_window} messages)"})
        else:
            await _send_history(conn, await service.broker.history(room.event.id, from_seq,
                                                                   seq - from_seq))
    elif from_seq is not None and from_seq > seq:
        conn.send_json({"type": "snapshot", "reset": True, "seq": seq,
                        "state": room.state.snapshot(now_ms(), room.present()),
                        "reason": f"from_seq {from_seq} is ahead of the event's log ({seq})"})
    conn.go_live()


async def _send_history(conn: Connection, bodies: list[bytes]) -> None:
    """History can be larger than the send queue: send it at the pace the phone reads,
    waiting while its queue is over half full (a phone that stops reading is closed as
    any slow consumer)."""
    half = conn.limits.send_queue_bytes // 2
    for body in bodies:
        waited = 0.0
        while conn.queued() > half and not conn.closing:
            if waited > HISTORY_STALL_S:
                conn.close(Close.SLOW_CONSUMER, "not reading its history")
                return
            await asyncio.sleep(0.01)
            waited += 0.01
        if conn.closing:
            return
        conn.send(text_frame(body))


async def _receive(service: LiveService, room: Room, conn: Connection) -> None:
    ws, limits = conn.ws, service.limits
    allowed = ALLOWED[conn.role]
    async for frame in ws:
        if conn.closing:
            break
        received = now_ms()
        if not conn.bucket.take():
            conn.drops += 1
            if conn.drops >= limits.abuse_drops:
                conn.close(Close.POLICY, "rate limit exceeded again and again")
                break
            if conn.drops == 1 or conn.drops % 10 == 0:
                conn.send(error_frame("rate_limited", "too many messages: this one was "
                                      "dropped"))
            continue
        conn.drops = 0
        if frame.type is not WSMsgType.TEXT:
            if frame.type is WSMsgType.BINARY:
                conn.send(error_frame("bad_message", "frames are JSON text, not binary"))
            continue
        if len(conn.appends) >= MAX_APPENDS_WAITING and conn.appender is not None:
            await asyncio.shield(conn.appender)
        msg: dict = {}
        try:
            msg = protocol.parse(frame.data)
            kind = msg["type"]
            if kind not in allowed:
                raise ProtocolError("forbidden", f"the {conn.role} role may not send {kind}")
            await _handle(service, room, conn, kind, msg, received)
        except ProtocolError as exc:
            conn.send(error_frame(exc.code, exc.message, msg.get("ref")))
        except Exception:  # the broker failed (a disk, Redis): say so, keep the socket
            log.exception("live message failed")
            conn.send(error_frame("internal", "the server could not store this message; "
                                  "retry later"))


async def _handle(service: LiveService, room: Room, conn: Connection, kind: str, msg: dict,
                  received: float) -> None:
    state, limits = room.state, service.limits
    if kind == "time":
        t0 = protocol.number(msg, "t0")
        conn.send_json({"type": "time", "t0": t0, "t1": received, "t2": now_ms()})
    elif kind == "sync":  # the client's clock sync result, shown to hosts in the roster
        conn.sync_delay_ms = round(protocol.number(msg, "delay_ms", low=0, high=60_000), 2)
    elif kind == "presence":
        conn.pose = protocol.pose(msg)
        conn.pose_at = time.monotonic()
    elif kind == "react":
        if msg.get("emoji") not in protocol.REACTIONS:
            raise ProtocolError("bad_field", "react.emoji must be one of "
                                + " ".join(protocol.REACTIONS))
        room.react(msg["emoji"])
    elif state.phase == "ended":
        raise ProtocolError("event_ended", "the event is over")
    elif kind == "chat":
        if conn.subject in state.muted:
            raise ProtocolError("muted", "a host muted you: chat is refused")
        text = protocol.text(msg, "text", limits.chat_max_chars)
        _log(service, room, conn, {"type": "chat", "from": conn.subject, "name": conn.name,
                                   "role": conn.role, "text": text})
    elif kind == "cue":
        _log(service, room, conn, check_cue(msg, state.tour, now_ms(), limits.cue_horizon_ms))
    elif kind == "moderate":
        action = msg.get("action")
        if action not in protocol.MODERATION:
            raise ProtocolError("bad_field", "moderate.action must be one of "
                                + ", ".join(protocol.MODERATION))
        if action == "end":
            if conn.appender is not None:
                await asyncio.shield(conn.appender)  # the host's earlier messages come first
            await service.hub.end_event(room.event.id, "ended by the host")
            return
        target = msg.get("target")
        if not isinstance(target, str) or not target.startswith("a-") or len(target) > 40:
            raise ProtocolError("unknown_target", "moderate.target must be an attendee id "
                                "(the `from` of their chat)")
        _log(service, room, conn, {"type": "moderate", "action": action, "target": target})


def _log(service: LiveService, room: Room, conn: Connection, body: dict) -> None:
    """Queue a durable message from this socket; its appender logs what has queued up in
    one batch (one transaction or round trip), in order, while the socket reads on."""
    conn.appends.append(body)
    if conn.appender is None:
        conn.appender = asyncio.get_running_loop().create_task(_appender(service, room, conn))


async def _appender(service: LiveService, room: Room, conn: Connection) -> None:
    try:
        while conn.appends:
            batch, conn.appends = conn.appends, []
            try:
                await service.hub.append_many(room.event.id, batch)
            except Exception:  # the broker failed (a disk, Redis): say so, keep the socket
                log.exception("live messages could not be logged")
                for body in batch:
                    conn.send(error_frame("internal", "the server could not store this "
                                          "message; retry later", body.get("ref")))
    finally:
        conn.appender = None


async def _replay(service: LiveService, ws: web.WebSocketResponse, conn: Connection,
                  event: Event, speed: float) -> None:
    """A finished event played again: its log re-sent at its original pace (times `speed`),
    with every cue's `at` moved onto the replay's timeline."""
    tour = service.tours[event.tour]
    log_ = [orjson.loads(b) for b in await service.broker.history(event.id, 0)]
    now = now_ms()
    state = new_state(event.id, tour, event.starts_at_ms, event.stop)
    conn.ready = True
    conn.send_json({"type": "welcome", "v": protocol.VERSION, "role": conn.role,
                    "mode": "replay", "speed": speed, "event": event.to_json(now), "seq": 0,
                    "server_time": now, "state": state.snapshot(now, 0),
                    "you": {"id": conn.subject, "name": conn.name, "conn": conn.id}})
    sender = asyncio.get_running_loop().create_task(_replay_send(conn, log_, speed))
    try:
        async for frame in ws:  # only `time` is answered in a replay
            if frame.type is WSMsgType.TEXT and conn.bucket.take():
                try:
                    msg = protocol.parse(frame.data)
                    if msg["type"] != "time":
                        raise ProtocolError("forbidden", "a replay only answers time")
                    conn.send_json({"type": "time", "t0": protocol.number(msg, "t0"),
                                    "t1": now_ms(), "t2": now_ms()})
                except ProtocolError as exc:
                    conn.send(error_frame(exc.code, exc.message))
        if conn.close_task is not None:
            await conn.close_task
    finally:
        sender.cancel()
        if conn.expiry is not None:
            conn.expiry.cancel()


async def _replay_send(conn: Connection, log_: list[dict], speed: float) -> None:
    if log_:
        first = min(m.get("ts", 0.0) for m in log_)
        start = now_ms() + REPLAY_LEAD_MS
        for msg in log_:
            send_at = start + (msg.get("ts", first) - first) / speed
            delay = (send_at - now_ms()) / 1000.0
            if delay > 0:
                await asyncio.sleep(delay)
            out = {**msg, "replay": True}
            if msg["type"] == "cue":
                out["orig_at"] = msg["at"]
                out["at"] = start + (msg["at"] - first) / speed
            conn.send_json(out)
    await asyncio.sleep(REPLAY_LEAD_MS / 1000.0)
    conn.close(Close.EVENT_ENDED, "replay finished")
