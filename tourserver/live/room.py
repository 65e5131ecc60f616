"""An event's shared state, as a fold over its durable log, and its lifecycle.

Every process that has listeners for an event keeps one `RoomState`, built from the log
and then advanced by each durable message in sequence order, so every process (and every
late joiner's snapshot) agrees on it. Pure: no I/O, no clock but the `now_ms` passed in.

Lifecycle (Colyseus-style, explicit):

    scheduled --(starts_at reached, or the host's first cue)--> live --(end)--> ended
    scheduled --(end)--> ended

No other transition exists; `transition()` refuses the rest.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from tourserver.live import protocol
from tourserver.live.protocol import ProtocolError
from tourserver.model.manifest import Tour

PHASES = ("scheduled", "live", "ended")
_TRANSITIONS = {("scheduled", "live"), ("live", "ended"), ("scheduled", "ended")}
_COLOUR = re.compile(r"^#[0-9a-fA-F]{6}$")


class LifecycleError(Exception):
    pass


@dataclass
class RoomState:
    event_id: str
    tour: Tour
    starts_at_ms: float
    phase: str = "scheduled"
    seq: int = 0  # the last durable message folded in
    stop: str | None = None
    scene: str | None = None
    lights: dict = field(default_factory=lambda: {"color": "#ffffff", "intensity": 1.0,
                                                  "pattern": "steady"})
    narration: dict | None = None
    pending: list[dict] = field(default_factory=list)  # cues not yet played, by `at`
    muted: set[str] = field(default_factory=set)
    kicked: set[str] = field(default_factory=set)
    cues: int = 0
    chats: int = 0
    ended_at_ms: float | None = None

    def transition(self, to: str) -> None:
        if self.phase == to:
            return
        if (self.phase, to) not in _TRANSITIONS:
            raise LifecycleError(f"an event cannot go from {self.phase} to {to}")
        self.phase = to

    def advance(self, now_ms: float) -> None:
        """Play every pending cue whose time has come, and start the event on time."""
        if self.phase == "scheduled" and now_ms >= self.starts_at_ms:
            self.transition("live")
        while self.pending and self.pending[0]["at"] <= now_ms:
            self._play(self.pending.pop(0))

    def apply(self, message: dict) -> None:
        """Fold one durable message in (in sequence order)."""
        seq = message["seq"]
        if seq <= self.seq:
            return  # already folded in (a replay of history)
        self.seq = seq
        kind = message["type"]
        if kind == "cue":
            self.cues += 1
            if self.phase == "scheduled":
                self.transition("live")
            self.pending.append(message)
            self.pending.sort(key=lambda m: (m["at"], m["seq"]))
        elif kind == "chat":
            self.chats += 1
        elif kind == "moderate":
            target = message.get("target")
            if not isinstance(target, str):
                return  # socket.py logs moderation of an attendee id only
            if message["action"] == "mute":
                self.muted.add(target)
            elif message["action"] == "unmute":
                self.muted.discard(target)
            elif message["action"] == "kick":
                self.kicked.add(target)
        elif kind == "end":
            self.transition("ended")
            self.ended_at_ms = message.get("ts")

    def _play(self, cue: dict) -> None:
        params, action = cue.get("params") or {}, cue["action"]
        if action == "scene":
            self.scene = params["scene"]
        elif action == "lights":
            self.lights = {**self.lights, **params}
        elif action == "narration":
            self.narration = {**params, "at": cue["at"], "seq": cue["seq"]}
        elif action == "stop":
            self.stop = params["stop"]
            self.scene = params.get("scene")

    def snapshot(self, now_ms: float, present: int) -> dict:
        self.advance(now_ms)
        return {
            "phase": self.phase, "stop": self.stop, "scene": self.scene,
            "lights": self.lights, "narration": self.narration,
            "scheduled": list(self.pending),
            "counts": {"present": present, "cues": self.cues, "chats": self.chats},
            "muted": sorted(self.muted),
        }


def new_state(event_id: str, tour: Tour, starts_at_ms: float, stop: str | None) -> RoomState:
    first = stop or (tour.stops[0].id if tour.stops else None)
    scene = None
    for s in tour.stops:
        if s.id == first and s.scenes:
            scene = s.scenes[0].id
    return RoomState(event_id, tour, starts_at_ms, stop=first, scene=scene)


def check_cue(msg: dict, tour: Tour, now_ms: float, horizon_ms: float) -> dict:
    """A host's cue checked against the protocol and the tour; returns the durable body."""
    at = protocol.number(msg, "at")
    if at < now_ms:
        raise ProtocolError("cue_time", f"cue.at is {now_ms - at:.0f} ms in the past; cues "
                            "are scheduled ahead on the server clock (sync with `time`)")
    if at > now_ms + horizon_ms:
        raise ProtocolError("cue_time", f"cue.at is more than {horizon_ms / 1000:g} s ahead")
    action = msg.get("action")
    if action not in protocol.CUE_ACTIONS:
        raise ProtocolError("bad_field", f"cue.action must be one of "
                            f"{', '.join(protocol.CUE_ACTIONS)}")
    params = msg.get("params", {})
    if not isinstance(params, dict):
        raise ProtocolError("bad_field", "cue.params must be an object")
    body = {"type": "cue", "at": at, "action": action, "params": _cue_params(action, params,
                                                                             tour)}
    ref = msg.get("ref")
    if ref is not None:
        if isinstance(ref, bool) or not isinstance(ref, str | int) or len(str(ref)) > 64:
            raise ProtocolError("bad_field", "cue.ref must be a string or an integer "
                                "(at most 64 characters)")
        body["ref"] = ref
    return body


def _name(params: dict, key: str) -> str | None:
    """A string param, or None; anything else (a list, a number) is a bad field."""
    value = params.get(key)
    if value is not None and not isinstance(value, str):
        raise ProtocolError("bad_field", f"cue.params.{key} must be a string")
    return value


def _cue_params(action: str, params: dict, tour: Tour) -> dict:
    stops = {s.id: s for s in tour.stops}
    scenes = {sc.id for s in tour.stops for sc in s.scenes}
    if action == "scene":
        scene = _name(params, "scene")
        if scene not in scenes:
            raise ProtocolError("unknown_target", f"scene {scene!r} is not in tour {tour.id}")
        return {"scene": scene}
    if action == "lights":
        out: dict = {}
        if "color" in params:
            if not isinstance(params["color"], str) or not _COLOUR.match(params["color"]):
                raise ProtocolError("bad_field", "lights.color must be #rrggbb")
            out["color"] = params["color"].lower()
        if "intensity" in params:
            out["intensity"] = protocol.number(
                {"type": "cue", "intensity": params["intensity"]}, "intensity", low=0, high=1)
        if "pattern" in params:
            if params["pattern"] not in protocol.LIGHT_PATTERNS:
                raise ProtocolError("bad_field", "lights.pattern must be one of "
                                    + ", ".join(protocol.LIGHT_PATTERNS))
            out["pattern"] = params["pattern"]
        if "period_ms" in params:
            out["period_ms"] = protocol.number(
                {"type": "cue", "period_ms": params["period_ms"]}, "period_ms", low=50,
                high=60_000)
        if not out:
            raise ProtocolError("bad_field", "lights needs color, intensity, pattern or "
                                "period_ms")
        return out
    if action == "narration":
        stop = stops.get(_name(params, "stop") or "")
        if stop is None:
            raise ProtocolError("unknown_target", f"stop {params.get('stop')!r} is not in "
                                f"tour {tour.id}")
        lang = _name(params, "lang")
        if lang is not None and lang not in stop.narration:
            raise ProtocolError("unknown_target", f"stop {stop.id} has no narration in "
                                f"{lang!r}; it has {', '.join(stop.narration)}")
        return {"stop": stop.id, **({"lang": lang} if lang else {})}
    if action == "stop":
        stop = stops.get(_name(params, "stop") or "")
        if stop is None:
            raise ProtocolError("unknown_target", f"stop {params.get('stop')!r} is not in "
                                f"tour {tour.id}")
        # A stop without scenes shows none: the previous stop's scene does not linger.
        return {"stop": stop.id, "scene": stop.scenes[0].id if stop.scenes else None}
    return {}  # end: the show's last cue; the event closes when it plays
