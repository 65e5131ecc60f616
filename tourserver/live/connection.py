"""One live socket's sending side: bounded, never awaited by the fan-out.

The fan-out writes a frame encoded once to each connection's transport and moves on; the
transport buffers what the kernel does not take yet. That buffer is the send queue: over
`drop_ephemeral_bytes` presence and reactions are dropped for this client only, over
`send_queue_bytes` the client is closed as a slow consumer (it resumes from history when it
reconnects). Nobody else waits for a slow phone.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable

from aiohttp import web

from tourserver.live.protocol import Close, LiveLimits, dumps, text_frame
from tourserver.live.ratelimit import TokenBucket

log = logging.getLogger("tourserver.live")


class Connection:
    __slots__ = ("ws", "transport", "role", "subject", "name", "id", "limits", "bucket",
                 "drops", "pose", "pose_at", "ready", "pending", "pending_bytes",
                 "closing", "sent_seq", "on_close", "expiry", "close_task", "appends",
                 "appender", "sync_delay_ms")

    def __init__(self, ws: web.WebSocketResponse, transport: asyncio.Transport, role: str,
                 subject: str, name: str, limits: LiveLimits):
        self.ws = ws
        self.transport = transport
        self.role = role
        self.subject = subject  # from the ticket: the same across reconnects
        self.name = name
        self.id = secrets.token_hex(4)  # this socket, in presence: not linkable to a ticket
        self.limits = limits
        capacity, rate = limits.host_bucket if role == "host" else limits.attendee_bucket
        self.bucket = TokenBucket(capacity, rate)
        self.drops = 0
        self.pose: dict | None = None
        self.pose_at = 0.0
        self.ready = False  # false while history is being sent: live frames wait in pending
        self.pending: list[tuple[int, bytes]] = []
        self.pending_bytes = 0
        self.closing = False
        self.sent_seq = 0
        self.on_close: Callable[[Connection], None] | None = None
        self.expiry: asyncio.TimerHandle | None = None
        self.close_task: asyncio.Task | None = None  # the handler waits for it before leaving
        self.appends: list[dict] = []  # durable messages from this socket, to be logged
        self.appender: asyncio.Task | None = None
        self.sync_delay_ms: float | None = None  # the round trip of its best clock sample

    def queued(self) -> int:
        """Bytes waiting for this phone."""
        return self.transport.get_write_buffer_size()

    def send(self, frame: bytes) -> None:
        """Queue a frame that must arrive (durable or control)."""
        if self.closing:
            return
        if self.transport.get_write_buffer_size() + len(frame) > self.limits.send_queue_bytes:
            self.close(Close.SLOW_CONSUMER, "send queue full: reconnect with from_seq")
            return
        self.transport.write(frame)

    def send_durable(self, seq: int, frame: bytes) -> None:
        if not self.ready:
            self.pending.append((seq, frame))
            self.pending_bytes += len(frame)
            if self.pending_bytes > self.limits.send_queue_bytes:
                self.close(Close.SLOW_CONSUMER, "too far behind while catching up")
            return
        if seq > self.sent_seq:
            self.sent_seq = seq
            self.send(frame)

    def send_ephemeral(self, frame: bytes) -> None:
        """Presence and reactions: the first thing a backed-up client goes without."""
        if self.closing or not self.ready:
            return
        if self.transport.get_write_buffer_size() > self.limits.drop_ephemeral_bytes:
            return
        self.transport.write(frame)

    def send_batch(self, frames: list[tuple[int, bytes]], joined: bytes) -> None:
        """This loop iteration's durable frames of the room, joined once for everyone: one
        write per phone however many cues a host's burst holds."""
        first, last = frames[0][0], frames[-1][0]
        if not self.ready or self.closing or last <= self.sent_seq:
            return
        if first > self.sent_seq:
            self.sent_seq = last
            self.send(joined)
            return
        for seq, frame in frames:  # partly sent already (it was catching up): the rest
            self.send_durable(seq, frame)

    def send_json(self, message: dict) -> None:
        self.send(text_frame(dumps(message)))

    def go_live(self) -> None:
        """History is sent: flush what arrived meanwhile (only what is newer), then go live."""
        pending, self.pending, self.pending_bytes = self.pending, [], 0
        self.ready = True
        for seq, frame in pending:
            self.send_durable(seq, frame)

    def close(self, code: int, reason: str) -> None:
        """Close from the server side without waiting here; a peer that never reads its
        close frame is cut off after a few seconds."""
        if self.closing:
            return
        self.closing = True
        if self.expiry is not None:
            self.expiry.cancel()
        if self.on_close is not None:
            self.on_close(self)
        self.close_task = asyncio.get_running_loop().create_task(self._close(code, reason))

    async def _close(self, code: int, reason: str) -> None:
        try:
            await asyncio.wait_for(self.ws.close(code=code, message=reason.encode()[:120]),
                                   timeout=3.0)
        except (TimeoutError, ConnectionError, RuntimeError):
            pass
        finally:
            if not self.transport.is_closing():
                self.transport.abort()
