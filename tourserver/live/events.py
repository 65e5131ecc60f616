"""Live events: the record a host creates, and the checks on a create request. Pure."""

from __future__ import annotations

import secrets
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime

from tourserver.errors import InvalidRequest

VISIBILITIES = ("public", "ticketed")
MAX_TITLE_CHARS = 200
MAX_CAPACITY = 1_000_000
DEFAULT_LENGTH_MS = 4 * 3600 * 1000.0  # an event with no ends_at is open this long
MAX_AHEAD_MS = 2 * 365 * 24 * 3600 * 1000.0  # events are planned at most two years ahead
TOKEN_GRACE_MS = 2 * 3600 * 1000.0  # tickets outlive the planned end by this much


@dataclass(frozen=True)
class Event:
    id: str
    title: str
    tour: str
    stop: str | None
    starts_at_ms: float
    ends_at_ms: float | None
    capacity: int | None
    visibility: str
    created_at_ms: float
    host_key: str  # the API key id that created it (never the key)
    ended_at_ms: float | None = None

    def status(self, now_ms: float) -> str:
        if self.ended_at_ms is not None:
            return "ended"
        return "live" if now_ms >= self.starts_at_ms else "scheduled"

    @property
    def closes_at_ms(self) -> float:
        """When tokens for this event stop working."""
        end = self.ends_at_ms or self.starts_at_ms + DEFAULT_LENGTH_MS
        return end + TOKEN_GRACE_MS

    def ended(self, now_ms: float) -> Event:
        return replace(self, ended_at_ms=now_ms)

    def to_record(self) -> dict:
        return asdict(self)

    @classmethod
    def from_record(cls, data: dict) -> Event:
        return cls(**data)

    def to_json(self, now_ms: float) -> dict:
        """The public view: no key id, no invite code."""
        return {
            "id": self.id, "title": self.title, "tour": self.tour, "stop": self.stop,
            "starts_at": rfc3339(self.starts_at_ms),
            "ends_at": rfc3339(self.ends_at_ms) if self.ends_at_ms is not None else None,
            "ended_at": rfc3339(self.ended_at_ms) if self.ended_at_ms is not None else None,
            "capacity": self.capacity, "visibility": self.visibility,
            "status": self.status(now_ms),
            "live_url": f"/v1/events/{self.id}/live", "tickets_url":
                f"/v1/events/{self.id}/tickets", "log_url": f"/v1/events/{self.id}/log",
            "join_url": join_url(self.id),
        }


def join_url(event_id: str) -> str:
    return f"/?event={event_id}"


def new_event_id() -> str:
    return "ev_" + secrets.token_hex(8)


def rfc3339(ms: float) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


def parse_time(value: object, field: str) -> float:
    if not isinstance(value, str) or len(value) > 40:
        raise InvalidRequest(f"{field} must be an RFC 3339 date-time string", field=field)
    try:
        when = datetime.fromisoformat(value.replace("z", "Z"))
    except ValueError:
        raise InvalidRequest(f"{field} {value!r} is not an RFC 3339 date-time",
                             field=field) from None
    if when.tzinfo is None:
        raise InvalidRequest(f"{field} needs a time zone offset (Z or +08:00)", field=field)
    return when.timestamp() * 1000


def parse_create(body: object, *, tours: dict, host_key: str, now_ms: float) -> Event:
    """A create request checked field by field; `tours` maps tour id to its Tour."""
    if not isinstance(body, dict):
        raise InvalidRequest("the body must be a JSON object")
    allowed = {"title", "tour", "stop", "starts_at", "ends_at", "capacity", "visibility"}
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise InvalidRequest(f"unknown field {unknown[0]!r}; fields are "
                             f"{', '.join(sorted(allowed))}", field=unknown[0])
    title = body.get("title")
    if not isinstance(title, str) or not title.strip() or len(title) > MAX_TITLE_CHARS:
        raise InvalidRequest(f"title must be a non-empty string of at most {MAX_TITLE_CHARS} "
                             "characters", field="title")
    tour_id = body.get("tour")
    if not isinstance(tour_id, str) or tour_id not in tours:
        raise InvalidRequest(f"tour {tour_id!r} is not a published tour", code="tour_unknown",
                             field="tour")
    stop = body.get("stop")
    if stop is not None and (not isinstance(stop, str)
                             or stop not in {s.id for s in tours[tour_id].stops}):
        raise InvalidRequest(f"stop {stop!r} is not a stop of tour {tour_id}",
                             code="stop_unknown", field="stop")
    starts = parse_time(body.get("starts_at"), "starts_at")
    ends = parse_time(body["ends_at"], "ends_at") if body.get("ends_at") is not None else None
    if ends is not None and ends <= starts:
        raise InvalidRequest("ends_at must be after starts_at", field="ends_at")
    if (ends or starts + DEFAULT_LENGTH_MS) <= now_ms:
        raise InvalidRequest("the event would be over already", field="ends_at")
    for name, value in (("starts_at", starts), ("ends_at", ends)):
        if value is not None and value > now_ms + MAX_AHEAD_MS:
            raise InvalidRequest(f"{name} is more than two years ahead", field=name)
    capacity = body.get("capacity")
    if capacity is not None and (isinstance(capacity, bool) or not isinstance(capacity, int)
                                 or not 1 <= capacity <= MAX_CAPACITY):
        raise InvalidRequest(f"capacity must be an integer from 1 to {MAX_CAPACITY}",
                             field="capacity")
    visibility = body.get("visibility", "public")
    if visibility not in VISIBILITIES:
        raise InvalidRequest("visibility must be public or ticketed", field="visibility")
    return Event(id=new_event_id(), title=title.strip(), tour=tour_id, stop=stop,
                 starts_at_ms=starts, ends_at_ms=ends, capacity=capacity,
                 visibility=visibility, created_at_ms=now_ms, host_key=host_key)
