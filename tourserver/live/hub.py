"""The live hub: this process's open rooms, their connections and the fan-out.

A room is open in a process while it has connections there. It subscribes to its event on
the broker once, folds every durable message into its `RoomState` and writes the message,
encoded once, to each local connection. Presence and reactions are summed per process and
exchanged as ephemeral broker messages, so every process shows the event-wide totals.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter

import orjson

from tourserver.live import protocol
from tourserver.live.broker import Broker
from tourserver.live.connection import Connection
from tourserver.live.events import Event
from tourserver.live.protocol import Close, LiveLimits, text_frame
from tourserver.live.room import RoomState, new_state
from tourserver.model.manifest import Tour

log = logging.getLogger("tourserver.live")
PEER_TTL_S = 3.0  # a process whose presence summary is older than this is forgotten
ROSTER_MAX = 500  # attendees listed to hosts (the count is always the whole event's)


def now_ms() -> float:
    return time.time() * 1000.0


class Room:
    def __init__(self, hub: Hub, event: Event, tour: Tour):
        self.hub = hub
        self.event = event
        self.state: RoomState = new_state(event.id, tour, event.starts_at_ms, event.stop)
        self.conns: dict[str, Connection] = {}
        self.opened = asyncio.Event()
        self._early: list[tuple[int, bytes]] = []  # durable messages while loading history
        self._ticker: asyncio.Task | None = None
        self._reactions: Counter[str] = Counter()  # this process's, since the last tick
        self._remote_reactions: Counter[str] = Counter()
        self._peers: dict[str, tuple[float, int, list]] = {}  # process -> (seen, count, avatars)
        self._peer_rosters: dict[str, list] = {}  # process -> its attendees, for hosts
        self._last_presence: bytes = b""
        self._end_timer: asyncio.TimerHandle | None = None
        self._end_at: float | None = None
        self.joining = 0  # sockets between hub.room() and room.add(): keep the room open
        self._batch: list[tuple[int, bytes]] = []  # this loop iteration's durable frames
        self._batch_effects: list[dict] = []

    async def open(self) -> None:
        broker = self.hub.broker
        await broker.subscribe(self.event.id, self._on_durable, self._on_ephemeral)
        for body in await broker.history(self.event.id, 0):
            self._fold(orjson.loads(body))
        early, self._early = self._early, []
        for seq, body in early:
            if seq > self.state.seq:
                self._fold(orjson.loads(body))
        self.opened.set()
        self._ticker = asyncio.get_running_loop().create_task(self._tick())

    async def close(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
        if self._end_timer is not None:
            self._end_timer.cancel()
        await self.hub.broker.unsubscribe(self.event.id)

    # durable messages, in sequence order
    def _on_durable(self, seq: int, body: bytes) -> None:
        if not self.opened.is_set():
            self._early.append((seq, body))
            return
        if seq <= self.state.seq:
            return
        message = orjson.loads(body)
        self._fold(message)
        frame = text_frame(body)
        if not self._batch:
            asyncio.get_running_loop().call_soon(self.flush)
        self._batch.append((seq, frame))
        for conn in self.conns.values():
            if not conn.ready:
                conn.send_durable(seq, frame)  # catching up: kept for after its history
        if message["type"] in ("moderate", "end"):
            self._batch_effects.append(message)

    def flush(self) -> None:
        """Send this iteration's durable frames: joined once, one write per socket; then
        what they do to sockets (kicks, the end)."""
        batch, self._batch = self._batch, []
        effects, self._batch_effects = self._batch_effects, []
        if not batch:
            return
        joined = batch[0][1] if len(batch) == 1 else b"".join(f for _, f in batch)
        for conn in list(self.conns.values()):
            conn.send_batch(batch, joined)
        for message in effects:
            self._after(message)

    def _fold(self, message: dict) -> None:
        self.state.apply(message)
        if message["type"] == "cue" and message["action"] == "end":
            self._schedule_end(message["at"])

    def _after(self, message: dict) -> None:
        """What a durable message does to sockets here, once everyone has been sent it."""
        if message["type"] == "moderate" and message["action"] == "kick":
            for conn in list(self.conns.values()):
                if conn.subject == message.get("target"):
                    conn.close(Close.KICKED, "removed by the host")
        elif message["type"] == "end":
            for conn in list(self.conns.values()):
                conn.close(Close.EVENT_ENDED, "the event has ended")

    def _schedule_end(self, at_ms: float) -> None:
        """The earliest end cue ends the event when it plays."""
        if self.state.phase == "ended" or (self._end_at is not None and self._end_at <= at_ms):
            return
        if self._end_timer is not None:
            self._end_timer.cancel()
        self._end_at = at_ms
        delay = max(0.0, (at_ms - now_ms()) / 1000.0)
        self._end_timer = asyncio.get_running_loop().call_later(
            delay, lambda: asyncio.ensure_future(self.hub.end_event(self.event.id,
                                                                    "the end cue played")))

    # connections
    def add(self, conn: Connection) -> None:
        self.conns[conn.id] = conn

    def remove(self, conn: Connection) -> None:
        self.conns.pop(conn.id, None)

    def present(self) -> int:
        fresh = time.monotonic() - PEER_TTL_S
        others = sum(c for pid, (seen, c, _) in self._peers.items()
                     if seen >= fresh and pid != self.hub.broker.process_id)
        return others + len(self.conns)

    # presence and reactions
    def react(self, emoji: str) -> None:
        self._reactions[emoji] += 1

    def _on_ephemeral(self, process_id: str, payload: bytes) -> None:
        if process_id == self.hub.broker.process_id:
            return
        data = orjson.loads(payload)
        self._peers[process_id] = (time.monotonic(), data["count"], data["avatars"])
        if "roster" in data:
            self._peer_rosters[process_id] = data["roster"]
        for emoji, n in data.get("reactions", {}).items():
            self._remote_reactions[emoji] += n

    def _avatars(self) -> list[dict]:
        posed = [c for c in self.conns.values() if c.pose is not None]
        posed.sort(key=lambda c: c.pose_at, reverse=True)  # the most recently moving first
        return [{"id": c.id, "role": c.role, "pose": c.pose}
                for c in posed[:self.hub.limits.max_avatars]]

    async def _tick(self) -> None:
        """At presence_hz: tell the other processes what is here, and tell everyone here the
        event-wide presence (when it changed) and the reactions of the last interval."""
        limits = self.hub.limits
        period = 1.0 / limits.presence_hz
        every = max(1, int(limits.presence_hz / limits.reactions_hz + 0.5))
        tick = 0
        while True:
            await asyncio.sleep(period)
            tick += 1
            try:
                self.state.advance(now_ms())
                local = self._avatars()
                summary: dict = {"count": len(self.conns), "avatars": local}
                if tick % every == 0 and self._reactions:
                    summary["reactions"] = dict(self._reactions)
                roster_tick = tick % max(1, round(limits.presence_hz)) == 0  # once a second
                if roster_tick:
                    summary["roster"] = self._roster()
                await self.hub.broker.publish_ephemeral(self.event.id, orjson.dumps(summary))
                if roster_tick:
                    self._send_roster(summary["roster"])
                fresh = time.monotonic() - PEER_TTL_S
                avatars = list(local)
                for pid, (seen, _, theirs) in self._peers.items():
                    if seen >= fresh and pid != self.hub.broker.process_id:
                        avatars.extend(theirs)
                frame = text_frame(orjson.dumps({
                    "type": "presence", "count": self.present(),
                    "avatars": avatars[:limits.max_avatars]}))
                if frame != self._last_presence:
                    self._last_presence = frame
                    self._broadcast_ephemeral(frame)
                if tick % every == 0:
                    counts = self._reactions + self._remote_reactions
                    self._reactions, self._remote_reactions = Counter(), Counter()
                    if counts:
                        self._broadcast_ephemeral(text_frame(orjson.dumps(
                            {"type": "reactions", "counts": dict(counts)})))
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("presence tick failed for an event")

    def _roster(self) -> list[dict]:
        """This process's attendees and viewers, for the hosts: who, and how well their
        clock is synced (what they reported)."""
        return [{"id": c.subject, "name": c.name, "role": c.role, "conn": c.id,
                 "delay_ms": c.sync_delay_ms}
                for c in list(self.conns.values())[:ROSTER_MAX] if c.role != "host"]

    def _send_roster(self, local: list[dict]) -> None:
        hosts = [c for c in self.conns.values() if c.role == "host"]
        if not hosts:
            return
        fresh = time.monotonic() - PEER_TTL_S
        attendees = list(local)
        for pid, roster in self._peer_rosters.items():
            seen = self._peers.get(pid, (0.0,))[0]
            if seen >= fresh and pid != self.hub.broker.process_id:
                attendees.extend(roster)
        muted = self.state.muted
        for a in attendees:
            a["muted"] = a["id"] in muted
        frame = text_frame(orjson.dumps({
            "type": "roster", "count": self.present(), "attendees": attendees[:ROSTER_MAX],
            "truncated": len(attendees) > ROSTER_MAX}))
        for conn in hosts:
            conn.send_ephemeral(frame)

    def _broadcast_ephemeral(self, frame: bytes) -> None:
        for conn in list(self.conns.values()):
            conn.send_ephemeral(frame)


class Hub:
    def __init__(self, broker: Broker, limits: LiveLimits):
        self.broker = broker
        self.limits = limits
        self.rooms: dict[str, Room] = {}
        self.replays: set = set()  # replay sockets (in no room), closed on shutdown too
        self._ending: dict[str, asyncio.Lock] = {}

    async def room(self, event: Event, tour: Tour) -> Room:
        """The open room of an event; the caller adds its connection before its next await
        (a room released meanwhile is opened again). It counts as joining until then."""
        while True:
            room = self.rooms.get(event.id)
            if room is None:
                room = Room(self, event, tour)
                self.rooms[event.id] = room
                await room.open()
            else:
                await room.opened.wait()
            if self.rooms.get(event.id) is room:
                room.joining += 1
                return room

    async def release(self, room: Room) -> None:
        """Close a room nobody here is in any more."""
        if not room.conns and not room.joining and self.rooms.get(room.event.id) is room:
            del self.rooms[room.event.id]
            await room.close()

    async def append(self, event_id: str, message: dict) -> int:
        return (await self.append_many(event_id, [message]))[0]

    async def append_many(self, event_id: str, messages: list[dict]) -> list[int]:
        ts = round(now_ms(), 3)
        for message in messages:
            message["ts"] = ts
        return await self.broker.append_many(event_id, messages)

    async def end_event(self, event_id: str, reason: str) -> Event | None:
        """Mark the event ended, then log `end` (which closes every socket on it). Once per
        process; two processes ending at once may log a second `end`, which folds to
        nothing."""
        async with self._ending.setdefault(event_id, asyncio.Lock()):
            event = await self.broker.get_event(event_id)
            if event is None or event.ended_at_ms is not None:
                return event
            ended = event.ended(now_ms())
            await self.broker.put_event(ended)
            await self.append(event_id, {"type": "end", "reason": reason})
            return ended

    async def shutdown(self) -> None:
        """Flush and close every socket with 1001, then the rooms."""
        for room in list(self.rooms.values()):
            room.flush()
        closing = []
        for room in list(self.rooms.values()):
            for conn in list(room.conns.values()):
                if not conn.closing:
                    conn.closing = True
                    closing.append(conn.ws.close(code=Close.GOING_AWAY,
                                                 message=b"server shutting down"))
        for conn in list(self.replays):
            if not conn.closing:
                conn.closing = True
                closing.append(conn.ws.close(code=Close.GOING_AWAY,
                                             message=b"server shutting down"))
        if closing:
            await asyncio.wait([asyncio.ensure_future(c) for c in closing], timeout=5.0)
        for room in list(self.rooms.values()):
            await room.close()
        self.rooms.clear()


def error_frame(code: str, message: str, ref: object = None) -> bytes:
    """An error; with the `ref` of the message it answers, when that message had one."""
    error = protocol.error(code, message)
    if isinstance(ref, str | int) and not isinstance(ref, bool) and len(str(ref)) <= 64:
        error["ref"] = ref
    return text_frame(protocol.dumps(error))
