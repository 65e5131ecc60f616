"""The live service: what the HTTP layer calls to create events, issue tickets and end
events, and what owns the broker, the hub and the token signer of this process."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from tourserver.errors import (
    Forbidden,
    InvalidRequest,
    NotFound,
    ServiceUnavailable,
    Unauthorized,
)
from tourserver.live.broker import Broker
from tourserver.live.events import Event, parse_create, rfc3339
from tourserver.live.hub import Hub, now_ms
from tourserver.live.local_broker import LocalBroker
from tourserver.live.protocol import LiveLimits
from tourserver.live.ratelimit import AddressLimiter
from tourserver.live.tokens import Claims, Signer, TokenInvalid, load_secret
from tourserver.store.keys import KeyStore

TICKET_ROLES = ("attendee", "viewer")
MAX_NAME_CHARS = 40
REPLAY_TICKET_MS = 2 * 3600 * 1000.0


@dataclass(frozen=True)
class LiveConfig:
    broker_url: str | None = None  # None: LocalBroker in the data directory
    limits: LiveLimits = field(default_factory=LiveLimits)
    allowed_origins: tuple[str, ...] = ()  # besides same-origin and loopback
    tickets_per_minute: int = 60  # per client address: phones share carrier addresses
    # Several workers each with its own SQLite broker would each number the same event's
    # messages: live events then need a shared broker, and say so.
    unavailable: str | None = None


def bearer(authorization: str | None) -> str | None:
    """The credential of an `Authorization: Bearer X` header (the scheme is
    case-insensitive, RFC 9110 §11.1)."""
    if not authorization:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    return value.strip() or None if scheme.lower() == "bearer" else None


def make_broker(config: LiveConfig, data_dir: Path) -> Broker:
    if config.broker_url is None:
        return LocalBroker(data_dir)
    from tourserver.live.redis_broker import RedisBroker  # only with --broker redis://

    return RedisBroker(config.broker_url, history_max=max(100_000,
                                                          config.limits.history_window))


class LiveService:
    def __init__(self, config: LiveConfig, data_dir: Path, tours: dict):
        self.config = config
        self.limits = config.limits
        self.tours = tours  # tour id -> Tour, from the published catalog
        self.keys = KeyStore(data_dir)
        self.broker = make_broker(config, data_dir)
        self.hub = Hub(self.broker, config.limits)
        self._secret = load_secret(data_dir)
        self.signer = Signer(self._secret)
        self.ticket_limiter = AddressLimiter(config.tickets_per_minute)

    def use_tours(self, tours: dict) -> None:
        """A newly published build's tours (hot reload): new events are checked against
        them. One assignment, so a request sees the old set or the new, never a mix."""
        self.tours = tours

    async def start(self) -> None:
        if self.config.unavailable:
            return  # live answers 503 here: no broker to open (workers would race for it)
        await self.broker.start()

    async def close(self) -> None:
        await self.hub.shutdown()
        await self.broker.close()

    def check_available(self) -> None:
        if self.config.unavailable:
            raise ServiceUnavailable(self.config.unavailable, code="live_unavailable")

    # credentials
    def host_key(self, authorization: str | None) -> str:
        """The id of the host API key in an `Authorization: Bearer` header."""
        token = bearer(authorization)
        if token is None:
            raise Unauthorized("an Authorization: Bearer header with a host API key is "
                               "required (tourserver keys create --role host)")
        record = self.keys.verify(token)
        if record is None:
            raise Unauthorized("the API key is unknown or revoked")
        if record.role != "host":
            raise Forbidden(f"a {record.role} key cannot do this; use a host key")
        return record.id

    def invite_code(self, event_id: str) -> str:
        mac = hmac.new(self._secret, b"invite\0" + event_id.encode(), hashlib.sha256)
        return base64.urlsafe_b64encode(mac.digest()[:12]).decode()

    def claims(self, token: str, event_id: str) -> Claims:
        try:
            return self.signer.verify(token, event_id, now_ms())
        except TokenInvalid as exc:
            raise Unauthorized(exc.message, code="ticket_expired" if exc.expired
                               else "ticket_invalid") from None

    # events
    async def event(self, event_id: str) -> Event:
        self.check_available()
        if len(event_id) > 64:
            raise NotFound("no such event", field="event_id")
        event = await self.broker.get_event(event_id)
        if event is None:
            raise NotFound(f"no event {event_id!r}", field="event_id")
        return event

    async def event_for_socket(self, event_id: str) -> Event:
        """The event a socket joins: the open room's own record when there is one (thousands
        of sockets share one object and nobody queries the store), else the stored one."""
        room = self.hub.rooms.get(event_id)
        if room is not None and room.state.phase != "ended" and not self.config.unavailable:
            return room.event
        return await self.event(event_id)

    async def create_event(self, body: object, key_id: str) -> dict:
        self.check_available()
        event = parse_create(body, tours=self.tours, host_key=key_id, now_ms=now_ms())
        await self.broker.put_event(event)
        return {**event.to_json(now_ms()), "host_token": self.host_token(event),
                "invite_code": self.invite_code(event.id) if event.visibility == "ticketed"
                else None}

    def host_token(self, event: Event) -> str:
        return self.signer.sign(Claims(event.id, "host", "host-" + event.host_key,
                                       event.closes_at_ms, "host"))

    async def list_events(self, tour: str | None, upcoming: bool) -> list[dict]:
        self.check_available()
        now = now_ms()
        events = await self.broker.list_events(tour)
        if upcoming:
            events = [e for e in events if e.status(now) != "ended"]
        return [e.to_json(now) for e in events]

    async def issue_ticket(self, event_id: str, body: object, address: str) -> dict:
        self.ticket_limiter.check(address)
        event = await self.event(event_id)
        if body is None:
            body = {}
        if not isinstance(body, dict):
            raise InvalidRequest("the body must be a JSON object (or empty)")
        unknown = sorted(set(body) - {"name", "role", "invite"})
        if unknown:
            raise InvalidRequest(f"unknown field {unknown[0]!r}", field=unknown[0])
        role = body.get("role", "attendee")
        if role not in TICKET_ROLES:
            raise InvalidRequest("role must be attendee or viewer", field="role")
        name = body.get("name", "")
        if not isinstance(name, str) or len(name) > MAX_NAME_CHARS:
            raise InvalidRequest(f"name must be a string of at most {MAX_NAME_CHARS} "
                                 "characters", field="name")
        if event.visibility == "ticketed":
            invite = body.get("invite")
            if not isinstance(invite, str) or not hmac.compare_digest(
                    invite, self.invite_code(event.id)):
                raise Forbidden("this event is ticketed: the host's invite code is required",
                                code="invite_required", field="invite")
        now = now_ms()
        if event.ended_at_ms is not None:
            role, expires = "viewer", now + REPLAY_TICKET_MS  # a replay of a finished event
        else:
            expires = event.closes_at_ms
        subject = "a-" + secrets.token_hex(6)
        ticket = self.signer.sign(Claims(event.id, role, subject, expires, name.strip()))
        return {"ticket": ticket, "role": role, "id": subject,
                "expires_at": rfc3339(expires), "live_url": f"/v1/events/{event.id}/live"}

    async def end_event(self, event_id: str, authorization: str | None) -> dict:
        event = await self.event(event_id)
        # The API-key check stats keys.json: off the event loop.
        await asyncio.to_thread(self._check_host, event, authorization)
        ended = await self.hub.end_event(event.id, "ended by the host")
        assert ended is not None
        return ended.to_json(now_ms())

    def _check_host(self, event: Event, authorization: str | None) -> None:
        """The event's host token, or the API key that created the event."""
        token = bearer(authorization)
        if token is not None:
            if token.startswith("tsk_"):
                if self.host_key(authorization) == event.host_key:
                    return
                raise Forbidden("only the key that created this event may end it")
            if self.claims(token, event.id).role == "host":
                return
            raise Forbidden("only the host may end this event")
        raise Unauthorized("an Authorization: Bearer header with the host token or the "
                           "creating API key is required")

    async def log_lines(self, event: Event, ticket: str | None):
        """The durable log as JSON lines, in pages (ticketed events need a ticket)."""
        if event.visibility == "ticketed":
            if not ticket:
                raise Unauthorized("this event is ticketed: pass ?ticket=")
            self.claims(ticket, event.id)
        after = 0
        while True:
            page = await self.broker.history(event.id, after, 1000)
            if not page:
                return
            yield b"\n".join(page) + b"\n"
            after = orjson.loads(page[-1])["seq"]  # by seq: a trimmed log has no seq 1
