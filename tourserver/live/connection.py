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
import time
from collections.abc import Callable

from aiohttp import web

from tourserver.live.protocol import Close, LiveLimits, dumps, text_frame

log = logging.getLogger("tourserver.live")


class TokenBucket:
    __slots__ = ("capacity", "rate", "tokens", "stamp")

    def __init__(self, capacity: float, rate: float):
        self.capacity, self.rate = capacity, rate
        self.tokens, self.stamp = capacity, time.monotonic()

    def take(self, cost: float = 1.0) -> bool:
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= cost:
            self.tokens -= cost
            return True
        return False


class WriteBatcher:
    """Frames for a socket wait in its outbox until the end of this loop iteration, then go
    out in one write: a host's burst of cues costs each phone one send() per iteration,
    not one per cue (the kernel call is most of a delivery's cost)."""

    def __init__(self) -> None:
        self._dirty: list[Connection] = []

    def mark(self, conn: Connection) -> None:
        self._dirty.append(conn)
        if len(self._dirty) == 1:
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        dirty, self._dirty = self._dirty, []
        for conn in dirty:
            conn.flush()


class Connection:
    __slots__ = ("ws", "transport", "role", "subject", "name", "id", "limits", "bucket",
                 "drops", "pose", "pose_at", "ready", "pending", "pending_bytes",
                 "closing", "sent_seq", "on_close", "expiry", "close_task", "outbox",
                 "outbox_bytes", "batcher", "appends", "appender")

    def __init__(self, ws: web.WebSocketResponse, transport: asyncio.Transport, role: str,
                 subject: str, name: str, limits: LiveLimits, batcher: WriteBatcher):
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
        self.outbox: list[bytes] = []
        self.outbox_bytes = 0
        self.batcher = batcher
        self.appends: list[dict] = []  # durable messages from this socket, to be logged
        self.appender: asyncio.Task | None = None

    def queued(self) -> int:
        """Bytes waiting for this phone: the transport's buffer and this iteration's."""
        return self.transport.get_write_buffer_size() + self.outbox_bytes

    def _queue(self, frame: bytes) -> None:
        if not self.outbox:
            self.batcher.mark(self)
        self.outbox.append(frame)
        self.outbox_bytes += len(frame)

    def flush(self) -> None:
        out, self.outbox, self.outbox_bytes = self.outbox, [], 0
        if out and not self.transport.is_closing():
            self.transport.write(out[0] if len(out) == 1 else b"".join(out))

    def send(self, frame: bytes) -> None:
        """Queue a frame that must arrive (durable or control)."""
        if self.closing:
            return
        if self.queued() + len(frame) > self.limits.send_queue_bytes:
            self.close(Close.SLOW_CONSUMER, "send queue full: reconnect with from_seq")
            return
        self._queue(frame)

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
        if self.queued() > self.limits.drop_ephemeral_bytes:
            return
        self._queue(frame)

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
        self.flush()  # what was sent before the close goes out before the close frame
        try:
            await asyncio.wait_for(self.ws.close(code=code, message=reason.encode()[:120]),
                                   timeout=3.0)
        except (TimeoutError, ConnectionError, RuntimeError):
            pass
        finally:
            if not self.transport.is_closing():
                self.transport.abort()
