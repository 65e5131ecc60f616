"""A Python client for the live protocol (the tests, the benchmark and native tools use it;
the web app has its JavaScript twin). It keeps the server clock, tracks the last durable
seq for resume, and queues everything else for the caller.

Clock sync, NTP style: each `time` exchange gives t0 (client send), t1 (server receive),
t2 (server send), t3 (client receive); offset = ((t1 - t0) + (t2 - t3)) / 2 and delay =
(t3 - t0) - (t2 - t1). Of several samples the one with the least delay is the least
disturbed by queueing, so its offset is kept (its error is at most delay / 2).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import orjson
import websockets
from websockets.asyncio.client import ClientConnection


def wall_ms() -> float:
    return time.time() * 1000.0


@dataclass(frozen=True)
class ClockSample:
    offset_ms: float  # server clock minus this clock
    delay_ms: float  # round trip minus the server's own time


def clock_sample(t0: float, t1: float, t2: float, t3: float) -> ClockSample:
    return ClockSample(((t1 - t0) + (t2 - t3)) / 2.0, (t3 - t0) - (t2 - t1))


def best_sample(samples: list[ClockSample]) -> ClockSample:
    return min(samples, key=lambda s: s.delay_ms)


class LiveClient:
    def __init__(self, ws: ClientConnection, welcome: dict, from_seq: int | None = None):
        self.ws = ws
        self.welcome = welcome
        # The last durable seq received: resume from here. Resuming, it is where we asked
        # to start, not the welcome's (the history in between is still on its way).
        self.seq = welcome.get("seq", 0) if from_seq is None else from_seq
        self.clock: ClockSample | None = None
        self.messages: asyncio.Queue[dict] = asyncio.Queue()
        self._time_waiters: dict[float, asyncio.Future] = {}
        self._reader = asyncio.get_running_loop().create_task(self._read())
        self.closed = asyncio.get_running_loop().create_future()

    @classmethod
    async def connect(cls, base_url: str, event_id: str, ticket: str, *,
                      from_seq: int | None = None, origin: str | None = None,
                      extra_query: str = "", open_timeout: float = 10.0) -> LiveClient:
        url = base_url.replace("http", "ws", 1) + f"/v1/events/{event_id}/live?ticket={ticket}"
        if from_seq is not None:
            url += f"&from_seq={from_seq}"
        url += extra_query
        headers = {"Origin": origin} if origin else None
        ws = await websockets.connect(url, additional_headers=headers, compression=None,
                                      open_timeout=open_timeout, max_size=2**24,
                                      ping_interval=None)
        welcome = orjson.loads(await asyncio.wait_for(ws.recv(), open_timeout))
        if welcome.get("type") != "welcome":
            raise ConnectionError(f"expected welcome, got {welcome}")
        return cls(ws, welcome, from_seq if welcome.get("mode") != "replay" else None)

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                msg = orjson.loads(raw)
                if msg.get("type") == "time" and msg.get("t0") in self._time_waiters:
                    self._time_waiters.pop(msg["t0"]).set_result((msg, wall_ms()))
                    continue
                if "seq" in msg and msg.get("type") != "snapshot" and not msg.get("replay"):
                    self.seq = max(self.seq, msg["seq"])
                elif msg.get("type") == "snapshot":
                    self.seq = msg["seq"]
                await self.messages.put(msg)
        except websockets.ConnectionClosed:
            pass
        finally:
            rcvd = self.ws.protocol.close_rcvd
            if not self.closed.done():
                self.closed.set_result((rcvd.code, rcvd.reason) if rcvd else (1006, ""))

    async def send(self, message: dict) -> None:
        await self.ws.send(orjson.dumps(message).decode())

    async def sync_clock(self, samples: int = 8, spacing_s: float = 0.02) -> ClockSample:
        got = []
        for _ in range(samples):
            t0 = wall_ms()
            waiter = asyncio.get_running_loop().create_future()
            self._time_waiters[t0] = waiter
            await self.send({"type": "time", "t0": t0})
            reply, t3 = await asyncio.wait_for(waiter, 10)
            got.append(clock_sample(t0, reply["t1"], reply["t2"], t3))
            await asyncio.sleep(spacing_s)
        self.clock = best_sample(got)
        await self.send({"type": "sync", "offset_ms": self.clock.offset_ms,
                         "delay_ms": max(0.0, self.clock.delay_ms)})
        return self.clock

    def server_now(self) -> float:
        return wall_ms() + (self.clock.offset_ms if self.clock else 0.0)

    async def next(self, kind: str | None = None, timeout: float = 10.0) -> dict:
        """The next queued message (of `kind`, skipping others)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no {kind or 'message'} within {timeout} s")
            msg = await asyncio.wait_for(self.messages.get(), left)
            if kind is None or msg["type"] == kind:
                return msg

    async def close(self) -> None:
        await self.ws.close()
        self._reader.cancel()
