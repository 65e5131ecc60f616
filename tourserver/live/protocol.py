"""The live wire protocol, v1: names, limits, close and error codes, and the checks on what
clients send. docs/live-protocol.md documents every message; keep the two in step.

Pure: no I/O. Frames are encoded here once per message, so a fan-out to N connections
writes the same bytes N times instead of encoding N times.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import IntEnum
from typing import TypeGuard

import orjson

VERSION = 1

ROLES = ("host", "attendee", "viewer")

# Actions a host cue may carry; params are checked against the tour by room.check_cue.
CUE_ACTIONS = ("scene", "lights", "narration", "stop", "end")
LIGHT_PATTERNS = ("steady", "pulse", "strobe", "chase", "off")
REACTIONS = ("👏", "❤️", "🎆", "😮", "😂", "👍", "🔥", "✨")
MODERATION = ("mute", "unmute", "kick", "end")

# Which roles may send which message types.
ALLOWED: dict[str, frozenset[str]] = {
    "host": frozenset({"time", "sync", "cue", "chat", "moderate", "presence", "react"}),
    "attendee": frozenset({"time", "sync", "presence", "react", "chat"}),
    "viewer": frozenset({"time", "sync", "react"}),
}
KNOWN_TYPES = frozenset().union(*ALLOWED.values())

# Durable messages carry a per-event sequence number and are stored before they are sent.
DURABLE_TYPES = frozenset({"cue", "chat", "moderate", "end"})


class Close(IntEnum):
    """WebSocket close codes this server sends (RFC 6455 §7.4 and our 4xxx range)."""

    GOING_AWAY = 1001  # server shutting down, after flushing
    POLICY = 1008  # sustained abuse: the connection's rate limit kept being exceeded
    TOO_BIG = 1009  # a frame over the size limit
    SLOW_CONSUMER = 4000  # the send queue overflowed; reconnect with from_seq
    KICKED = 4001  # a host removed this attendee; do not reconnect
    EVENT_ENDED = 4002  # the event is over; GET /v1/events/{id}/log to replay
    TICKET_EXPIRED = 4003  # get a new ticket, then reconnect with from_seq


# Error codes in {"type": "error", "code", "message"}.
ERROR_CODES = {
    "bad_message": "not a JSON object with a known string \"type\"",
    "bad_field": "a field is missing, of the wrong type or out of range",
    "forbidden": "this role may not send this message",
    "rate_limited": "too many messages: this one was dropped",
    "muted": "a host muted you: chat is refused",
    "cue_time": "a cue's `at` is in the past or beyond the horizon",
    "unknown_target": "a scene, stop or narration not in the tour, or a moderation target "
                      "that is not an attendee id",
    "event_ended": "the event is over",
    "internal": "the server could not store the message (its log failed); retry later",
}


@dataclass(frozen=True)
class LiveLimits:
    """Per-socket limits; every one is configurable from Settings."""

    max_frame_bytes: int = 64 * 1024
    send_queue_bytes: int = 1024 * 1024  # over this a client is closed as a slow consumer
    drop_ephemeral_bytes: int = 256 * 1024  # over this presence and reactions are dropped
    cue_horizon_ms: float = 6 * 3600 * 1000.0
    chat_max_chars: int = 500
    history_window: int = 10_000  # resume replays at most this many messages, else snapshot
    presence_hz: float = 10.0
    reactions_hz: float = 4.0
    max_avatars: int = 16  # avatars sent in a presence message, not everyone to everyone
    heartbeat_s: float = 20.0
    # token buckets: (burst, refill per second)
    attendee_bucket: tuple[float, float] = (40.0, 20.0)
    host_bucket: tuple[float, float] = (2000.0, 200.0)
    abuse_drops: int = 50  # this many dropped messages in a row closes with 1008


class ProtocolError(Exception):
    """A client message we refuse: sent back as {"type": "error"}; the socket stays open."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def error(code: str, message: str, **extra: object) -> dict:
    return {"type": "error", "code": code, "message": message, **extra}


def parse(text: str | bytes) -> dict:
    """A client frame as a dict with a known type, or ProtocolError."""
    try:
        msg = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise ProtocolError("bad_message", f"not JSON: {exc.msg} at {exc.pos}") from None
    if not isinstance(msg, dict) or not isinstance(msg.get("type"), str):
        raise ProtocolError("bad_message", 'a frame must be a JSON object with a "type"')
    if msg["type"] not in KNOWN_TYPES:
        raise ProtocolError("bad_message", f"unknown type {msg['type'][:40]!r}")
    return msg


def number(msg: dict, name: str, *, low: float | None = None, high: float | None = None
           ) -> float:
    value = msg.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ProtocolError("bad_field", f"{msg['type']}.{name} must be a finite number")
    if (low is not None and value < low) or (high is not None and value > high):
        raise ProtocolError("bad_field", f"{msg['type']}.{name} is out of range")
    return float(value)


def text(msg: dict, name: str, max_chars: int, *, required: bool = True) -> str | None:
    value = msg.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ProtocolError("bad_field", f"{msg['type']}.{name} must be a non-empty string")
    if len(value) > max_chars:
        raise ProtocolError("bad_field", f"{msg['type']}.{name} is over {max_chars} characters")
    return value


def pose(msg: dict) -> dict:
    """A presence pose in the scene's local frame: position [x, y, z] in metres within
    10 km of the scene origin (an ECEF position is refused; degrees would fit the bound,
    which is why poses are never stored or logged), orientation a unit quaternion."""
    p = msg.get("pose")
    if not isinstance(p, dict):
        raise ProtocolError("bad_field", "presence.pose must be an object")
    position, orientation = p.get("position"), p.get("orientation")
    if not (_vector(position, 3, 10_000.0) and _vector(orientation, 4, 1.01)):
        raise ProtocolError("bad_field", "presence.pose needs position [x, y, z] within "
                            "10 km of the scene origin and orientation [x, y, z, w]")
    norm = math.sqrt(sum(v * v for v in orientation))
    if not 0.9 < norm < 1.1:
        raise ProtocolError("bad_field", "presence.pose.orientation must be a unit quaternion")
    return {"position": [round(v, 3) for v in position],
            "orientation": [round(v / norm, 4) for v in orientation]}


def _vector(value: object, n: int, bound: float) -> TypeGuard[list[float]]:
    return (isinstance(value, list) and len(value) == n
            and all(isinstance(v, int | float) and not isinstance(v, bool)
                    and math.isfinite(v) and abs(v) <= bound for v in value))


def dumps(message: dict) -> bytes:
    return orjson.dumps(message)


def text_frame(payload: bytes) -> bytes:
    """One unmasked, uncompressed, final WebSocket text frame (RFC 6455 §5.2), as a server
    sends it: built once per message and written unchanged to every receiver."""
    n = len(payload)
    if n < 126:
        header = bytes((0x81, n))
    elif n < 65536:
        header = bytes((0x81, 126)) + n.to_bytes(2, "big")
    else:
        header = bytes((0x81, 127)) + n.to_bytes(8, "big")
    return header + payload
