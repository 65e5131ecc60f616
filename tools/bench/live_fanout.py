"""Live fan-out benchmark: one host, N attendees on one live event, cues fanned out.

    python tools/bench/live_fanout.py --attendees N --rate CUES_PER_S --seconds S
        [--json] [--processes K] [--burst B] [--lead-ms MS]

A real `tourserver serve` process (tiny content root: the tests' "mini" tour) with one
event, its host in this process and N attendees driven from K worker processes
(multiprocessing, spawn). Attendees are a minimal websocket client (handshake by hand,
masked client frames, unmasked server frames parsed in place, orjson for the cues) whose
sockets sit in one epoll set per process, drained in one asyncio callback: asyncio's own
per-socket transport path made the harness, not the server, the bottleneck.

Phases, in order:

1. tickets: every attendee gets a ticket with POST /v1/events/{id}/tickets (the server runs
   with --tickets-per-minute 100000000).
2. connect: attendees connect, `--connect-concurrency` at a time in all; `connect_s` is the
   time until all have their welcome. The server's VmRSS before and ~1 s after gives
   `kb_per_connection`.
3. sync: each attendee sends 8 `time` messages and keeps the offset of the least-delayed
   sample (tourserver.live.client.clock_sample / best_sample). On one machine the true
   offset is 0, so |offset| is the sync error (reported as `sync_offset_abs_p99_ms`).
4. steady: the host sends `--rate` cues a second for `--seconds` seconds, each with
   at = host's server clock + `--lead-ms`. Per delivery: latency = attendee receipt minus
   host send (wall clocks of this machine); each attendee schedules the cue with
   loop.call_at at the local time of `at - offset`. `skew` is when the phone would play the
   cue by its own clock sync, in true server time, minus `at`: max(at - offset, receipt) -
   at (this machine's clock is the server's), so it holds the sync error and any cue that
   arrived too late to be played on time. `timer_skew` is how late the harness's timers
   really fired ((wall + offset) - at): thousands of simulated phones share each core
   here, so it measures the harness more than the system; reported beside it. Server CPU
   (utime+stime from /proc/PID/stat) over the phase divided by the attendee deliveries
   gives `cpu_us_per_delivery`. `steady_per_cue`
   splits the latency: host send -> server accept (the cue's `ts`), -> first attendee
   receipt, and first -> last receipt (the fan-out's spread).
5. burst: the host sends `--burst` cues back to back (cue.at `--burst-lead-ms` ahead);
   deliveries per second from the first host send to the last attendee receipt. Then
   everything is closed, the server is stopped and a naive server (an aiohttp app in this
   file: welcome, time answers, cues relayed with `for ws in clients: await
   ws.send_str(text)`, the host included as on tourserver) gets the same attendees and the
   same burst: `ratio_vs_naive` is ours / naive.

`lost` counts (attendee, cue) deliveries that never arrived plus duplicated and
out-of-order ones, over the steady and burst phases on tourserver (the naive server's are
`naive_lost`). Everything binds 127.0.0.1. Progress goes to stderr; a table and, with
--json, one JSON object (the last line) to stdout. Every process started here is killed on
the way out (servers by process group).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime as dt
import gc
import json
import multiprocessing
import os
import platform
import random
import resource
import select
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from array import array
from pathlib import Path

import orjson

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))

from common import Procs, cpu_model, free_port, tail  # noqa: E402  (tools/bench is not a package)

HOST = "127.0.0.1"
NAIVE_HOST_TICKET = "host"
SYNC_SAMPLES = 8
SETTLE_S = 1.0
TARGETS = {  # name -> (comparison, bound)
    "p99_ms": ("<", 100.0),
    "skew_p99_ms": ("<", 10.0),
    "cpu_us_per_delivery": ("<=", 10.0),
    "kb_per_connection": ("<", 20.0),
    "ratio_vs_naive": (">=", 2.0),
}
_time = time.time


class BenchError(Exception):
    pass


def say(msg: str) -> None:
    print(f"[live_fanout {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def wall_ms() -> float:
    return _time() * 1000.0


def raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def proc_cpu_s(pid: int) -> float:
    """utime + stime of a process (all its threads), in seconds."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise BenchError(f"no VmRSS for pid {pid}")


# ---- a lean websocket client ----------------------------------------------------------------
class Sink:
    """Per worker process: playback skews and the number of playbacks still scheduled."""

    __slots__ = ("skews", "true_skews", "scheduled", "pending")

    def __init__(self) -> None:
        # max(at - offset, receipt) - at, in true time (this machine's clock is the server's):
        # when the phone would play the cue by its schedule. It holds the clock sync's error
        # and any late arrival, not the harness's timer jitter (thousands of simulated phones
        # share a core here; a real phone schedules one timer on its own).
        self.scheduled: list[float] = []
        self.skews: list[float] = []  # (wall + offset) - at: the playback timer's lateness
        self.true_skews: list[float] = []  # wall - at: on one machine the server's clock is
        self.pending = 0  # ours, so this adds the clock sync's error


# Every client of a process reads into this one buffer: a read is parsed before the next
# one starts. (asyncio's Protocol path allocates a 256 KiB bytes object for every recv().)
_RECV = bytearray(256 * 1024)
_RECV_VIEW = memoryview(_RECV)


class Reactor:
    """All the client sockets of a process in one epoll set, which the asyncio loop watches
    as a single file descriptor; `drain` reads every ready socket in one plain loop.

    asyncio's own per-socket path (selector key, Handle, _read_ready, transport) costs
    several microseconds a read in Python; with 2,500 sockets per process receiving 25,000
    frames a second that made the harness, not the server, the bottleneck. Timers (the
    playback of cues) still run on the asyncio loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.epoll = select.epoll()
        self.clients: dict[int, WsClient] = {}
        loop.add_reader(self.epoll.fileno(), self.drain)

    def add(self, client: WsClient) -> None:
        fd = client.sock.fileno()  # type: ignore[union-attr]
        self.clients[fd] = client
        self.epoll.register(fd, select.EPOLLIN)

    def remove(self, client: WsClient) -> None:
        if client.fd in self.clients:
            del self.clients[client.fd]
            try:
                self.epoll.unregister(client.fd)
            except (OSError, ValueError):
                pass

    def drain(self) -> None:
        t = _time() * 1000.0  # the data of this round was in the kernel by now
        clients, view = self.clients, _RECV_VIEW
        for fd, _ in self.epoll.poll(0, 16384):
            client = clients.get(fd)
            if client is None:
                continue
            try:
                n = client.sock.recv_into(view)  # type: ignore[union-attr]
            except (BlockingIOError, InterruptedError):
                continue
            except OSError as exc:
                client.lost(exc)
                continue
            if n == 0:
                client.lost(None)
            else:
                client.feed(_RECV[:n], t)


_REACTORS: dict[asyncio.AbstractEventLoop, Reactor] = {}


def reactor() -> Reactor:
    loop = asyncio.get_running_loop()
    if loop not in _REACTORS:
        _REACTORS[loop] = Reactor(loop)
    return _REACTORS[loop]


class WsClient:
    """One websocket, RFC 6455 by hand: the opening handshake, masked client frames and
    unmasked server frames. Durable messages (`{"seq":N,...}`) are recorded as
    (seq, ref, receipt wall ms, server ts); steady-phase cues (ref "s...") are also
    scheduled for playback with loop.call_at when the client has a Sink."""

    __slots__ = ("loop", "reactor", "request", "sock", "fd", "out", "buf", "upgraded",
                 "opened", "time_waiter", "got", "offset", "closed", "close_code", "sink",
                 "errors")

    def __init__(self, port: int, path: str, sink: Sink | None) -> None:
        key = base64.b64encode(random.randbytes(16)).decode()
        self.loop = asyncio.get_running_loop()
        self.reactor = reactor()
        self.request = (f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
                        "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
                        ).encode()
        self.sock: socket.socket | None = None
        self.fd = -1
        self.out = bytearray()  # what the kernel did not take yet (rare: frames are tiny)
        self.buf = b""
        self.upgraded = False
        self.opened: asyncio.Future = self.loop.create_future()  # the welcome frame
        self.time_waiter: asyncio.Future | None = None
        self.got: list[tuple[int, object, float, float]] = []  # seq, ref, receipt, server ts
        self.offset = 0.0  # server clock minus ours, once synced
        self.closed = False
        self.close_code: int | None = None
        self.sink = sink
        self.errors: list[dict] = []

    async def open(self, port: int, timeout: float) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock, self.fd = sock, sock.fileno()
        try:
            await asyncio.wait_for(self.loop.sock_connect(sock, (HOST, port)), timeout)
            self.reactor.add(self)
            self.write(self.request)
            await asyncio.wait_for(self.opened, timeout)
        except BaseException:
            self.lost(None)
            raise

    def lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.reactor.remove(self)
        if self.sock is not None:
            if self.out:
                self.loop.remove_writer(self.fd)
            self.sock.close()
        for fut in (self.opened, self.time_waiter):
            if fut is not None and not fut.done():
                fut.set_exception(ConnectionError(f"connection lost ({exc or 'closed'})"))

    def write(self, data: bytes) -> None:
        if self.closed or self.sock is None:
            return
        if self.out:
            self.out += data
            return
        try:
            n = self.sock.send(data)
        except (BlockingIOError, InterruptedError):
            n = 0
        except OSError as exc:
            self.lost(exc)
            return
        if n < len(data):
            self.out += data[n:]
            self.loop.add_writer(self.fd, self._flush)

    def _flush(self) -> None:
        try:
            n = self.sock.send(self.out)  # type: ignore[union-attr]
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self.lost(exc)
            return
        del self.out[:n]
        if not self.out:
            self.loop.remove_writer(self.fd)

    def feed(self, data: bytes | bytearray, t: float) -> None:
        if self.buf:
            data = self.buf + data
            self.buf = b""
        if not self.upgraded:
            end = data.find(b"\r\n\r\n")
            if end < 0:
                self.buf = bytes(data)
                return
            if not data.startswith(b"HTTP/1.1 101"):
                if not self.opened.done():
                    self.opened.set_exception(ConnectionError(
                        "upgrade refused: " + bytes(data[:300]).decode(errors="replace")))
                self.lost(None)
                return
            self.upgraded = True
            data = data[end + 4:]
        pos, n = 0, len(data)
        while n - pos >= 2:
            b1 = data[pos + 1]
            length = b1 & 0x7F
            if length < 126:
                start = pos + 2
            elif length == 126:
                if n - pos < 4:
                    break
                length = (data[pos + 2] << 8) | data[pos + 3]
                start = pos + 4
            else:
                if n - pos < 10:
                    break
                length = int.from_bytes(data[pos + 2:pos + 10], "big")
                start = pos + 10
            if b1 & 0x80:  # servers never mask (RFC 6455 §5.1); skip the key if one does
                start += 4
            end = start + length
            if end > n:
                break
            opcode = data[pos] & 0x0F
            pos = end
            if opcode == 1:
                self.on_text(data[start:end], t)
            elif opcode == 9:
                self.send_frame(0xA, bytes(data[start:end]))  # pong
            elif opcode == 8:
                payload = data[start:end]
                self.close_code = int.from_bytes(payload[:2], "big") if end - start >= 2 else 1005
                self.close()
                return
        if pos < n:
            self.buf = bytes(data[pos:])

    def on_text(self, payload: bytes | bytearray, t: float) -> None:
        if payload[:7] == b'{"seq":':
            msg = orjson.loads(payload)
            ref = msg.get("ref")
            self.got.append((msg["seq"], ref, t, msg.get("ts", 0.0)))
            sink = self.sink
            if sink is not None and ref.__class__ is str and ref[0] == "s":
                sink.pending += 1
                at = msg["at"]
                sink.scheduled.append(max(at - self.offset, t) - at)
                self.loop.call_at(self.loop.time() + (at - self.offset) / 1000.0 - _time(),
                                  self._play, at)
        elif payload[:14] == b'{"type":"time"':
            waiter = self.time_waiter
            if waiter is not None and not waiter.done():
                waiter.set_result((orjson.loads(payload), t))
        elif not self.opened.done():
            self.opened.set_result(None)  # the first other frame is the welcome
        elif payload[:15] == b'{"type":"error"':
            self.errors.append(orjson.loads(payload))

    def _play(self, at: float) -> None:
        late = _time() * 1000.0 - at
        sink = self.sink
        sink.skews.append(late + self.offset)  # type: ignore[union-attr]
        sink.true_skews.append(late)  # type: ignore[union-attr]
        sink.pending -= 1  # type: ignore[union-attr]

    def send_frame(self, opcode: int, payload: bytes) -> None:
        n = len(payload)
        if n < 126:
            head = bytes((0x80 | opcode, 0x80 | n))
        elif n < 65536:
            head = bytes((0x80 | opcode, 0xFE)) + n.to_bytes(2, "big")
        else:
            head = bytes((0x80 | opcode, 0xFF)) + n.to_bytes(8, "big")
        mask = random.randbytes(4)
        if n:
            key = (mask * (n // 4 + 1))[:n]
            payload = (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(
                n, "big")
        self.write(head + mask + payload)

    def send_json(self, message: dict) -> None:
        self.send_frame(0x1, orjson.dumps(message))

    def close(self) -> None:
        if self.closed or self.sock is None:
            return
        self.send_frame(0x8, (1000).to_bytes(2, "big"))
        self.lost(None)

    async def sync_clock(self, samples: int, spacing_s: float) -> tuple[float, float]:
        """NTP-style clock sync; keeps the least-delayed sample's offset. (offset, delay)"""
        from tourserver.live.client import best_sample, clock_sample

        got = []
        for _ in range(samples):
            waiter = self.loop.create_future()
            self.time_waiter = waiter
            t0 = wall_ms()
            self.send_json({"type": "time", "t0": t0})
            reply, t3 = await asyncio.wait_for(waiter, 20)
            got.append(clock_sample(t0, reply["t1"], reply["t2"], t3))
            await asyncio.sleep(spacing_s)
        best = best_sample(got)
        self.offset = best.offset_ms
        return best.offset_ms, best.delay_ms


async def open_client(port: int, path: str, sink: Sink | None,
                      timeout: float = 30.0) -> WsClient:
    client = WsClient(port, path, sink)
    await client.open(port, timeout)
    return client


def live_path(event_id: str, ticket: str) -> str:
    return f"/v1/events/{event_id}/live?ticket={ticket}"


# ---- pipes between the parent and the workers ----------------------------------------------
def _wake(fut: asyncio.Future) -> None:
    if not fut.done():
        fut.set_result(None)


async def arecv(conn) -> object:
    """conn.recv() without blocking the event loop (EOFError when the other end is gone)."""
    loop = asyncio.get_running_loop()
    while not conn.poll():
        fut = loop.create_future()
        loop.add_reader(conn.fileno(), _wake, fut)
        try:
            await fut
        finally:
            loop.remove_reader(conn.fileno())
    return conn.recv()


# ---- the attendee worker process -----------------------------------------------------------
class Worker:
    def __init__(self, index: int) -> None:
        self.index = index
        self.tickets: list[str] = []
        self.clients: list[WsClient] = []
        self.sink = Sink()

    async def op_tickets(self, base: str, event_id: str, count: int) -> dict:
        import aiohttp

        started = time.monotonic()
        sem = asyncio.Semaphore(8)
        connector = aiohttp.TCPConnector(limit=8)
        async with aiohttp.ClientSession(connector=connector) as http:
            async def one(i: int) -> str:
                async with sem:
                    for attempt in range(5):
                        async with http.post(f"{base}/v1/events/{event_id}/tickets",
                                             json={"name": f"w{self.index}-{i}"}) as resp:
                            body = await resp.read()
                            if resp.status == 201:
                                return orjson.loads(body)["ticket"]
                        await asyncio.sleep(0.2 * (attempt + 1))
                    raise BenchError(f"ticket: HTTP {resp.status}: {body[:200]!r}")

            self.tickets = list(await asyncio.gather(*(one(i) for i in range(count))))
        return {"tickets": len(self.tickets), "s": time.monotonic() - started}

    async def op_connect(self, port: int, event_id: str, concurrency: int) -> dict:
        self.clients = []
        sem = asyncio.Semaphore(concurrency)
        errors: list[str] = []
        started = time.monotonic()

        async def one(ticket: str) -> WsClient | None:
            async with sem:
                for attempt in range(4):
                    try:
                        return await open_client(port, live_path(event_id, ticket), self.sink)
                    except (OSError, ConnectionError, TimeoutError) as exc:
                        if attempt == 3:
                            errors.append(f"{type(exc).__name__}: {exc}"[:300])
                        else:
                            await asyncio.sleep(0.5 * (attempt + 1))
                return None

        got = await asyncio.gather(*(one(t) for t in self.tickets))
        self.clients = [c for c in got if c is not None]
        return {"connected": len(self.clients), "failed": len(errors), "errors": errors[:3],
                "s": time.monotonic() - started}

    async def op_sync(self, concurrency: int, spacing_s: float) -> dict:
        sem = asyncio.Semaphore(concurrency)

        async def one(c: WsClient) -> tuple[float, float]:
            async with sem:
                return await c.sync_clock(SYNC_SAMPLES, spacing_s)

        got = await asyncio.gather(*(one(c) for c in self.clients))
        return {"offsets": [g[0] for g in got], "delays": [g[1] for g in got]}

    async def op_wait(self, seq: int, within_s: float) -> dict:
        """Until every open client has received durable message `seq` (or the timeout)."""
        deadline = time.monotonic() + within_s
        left = list(self.clients)
        while True:
            left = [c for c in left if not c.closed and not (c.got and c.got[-1][0] >= seq)]
            if not left or time.monotonic() > deadline:
                return {"behind": len(left), "closed": sum(c.closed for c in self.clients)}
            await asyncio.sleep(0.01)

    async def op_report(self, send_times: dict[str, float]) -> dict:
        """Latencies, skews and losses of the cues in send_times; forgets them."""
        deadline = time.monotonic() + 10.0
        while self.sink.pending > 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        expected = set(send_times)
        lat = array("d")
        missing = duplicates = out_of_order = 0
        missed_refs: set[str] = set()
        last_t = 0.0
        per_ref: dict[str, list[float]] = {}  # ref -> [first receipt, last receipt, ts]
        for c in self.clients:
            seen: set = set()
            prev = -1
            for seq, ref, t, ts in c.got:
                if ref not in expected:
                    continue
                span = per_ref.get(ref)  # type: ignore[call-overload]
                if span is None:
                    per_ref[ref] = [t, t, ts]  # type: ignore[index]
                elif t < span[0]:
                    span[0] = t
                elif t > span[1]:
                    span[1] = t
                if ref in seen:
                    duplicates += 1
                    continue
                seen.add(ref)
                if seq < prev:
                    out_of_order += 1
                prev = max(prev, seq)
                lat.append(t - send_times[ref])
                if t > last_t:
                    last_t = t
            if len(seen) != len(expected):
                gone = expected - seen
                missing += len(gone)
                missed_refs |= gone
            c.got = []
        skews, true_skews = array("d", self.sink.skews), array("d", self.sink.true_skews)
        scheduled = array("d", self.sink.scheduled)
        self.sink.skews, self.sink.true_skews, self.sink.scheduled = [], [], []
        return {"lat": lat.tobytes(), "skews": skews.tobytes(),
                "scheduled": scheduled.tobytes(),
                "true_skews": true_skews.tobytes(), "missing": missing,
                "duplicates": duplicates, "out_of_order": out_of_order,
                "missed_refs": sorted(missed_refs), "last_t": last_t, "per_ref": per_ref,
                "pending_plays": self.sink.pending,
                "closed": sum(c.closed for c in self.clients),
                "close_codes": sorted({c.close_code for c in self.clients
                                       if c.close_code is not None})}

    async def op_close(self) -> dict:
        for c in self.clients:
            c.close()
        self.clients = []
        gc.collect()
        return {"closed": True}


async def _worker_loop(index: int, conn) -> None:
    worker = Worker(index)
    while True:
        try:
            cmd = await arecv(conn)
        except (EOFError, OSError):
            return  # the parent is gone
        op, kwargs = cmd  # type: ignore[misc]
        if op == "quit":
            conn.send({"ok": True})
            return
        try:
            result = await getattr(worker, f"op_{op}")(**kwargs)
        except Exception as exc:  # reported to the parent, which stops the run
            result = {"error": f"worker {index} {op}: {type(exc).__name__}: {exc}"}
        conn.send(result)


def worker_entry(index: int, conn) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles ^C and kills us
    raise_nofile()
    gc.disable()  # the harness makes no cycles worth a pause in the middle of a phase
    asyncio.run(_worker_loop(index, conn))


# ---- the naive server ----------------------------------------------------------------------
async def naive_serve(port: int) -> None:
    """The same subset of the protocol, written the obvious way: no encode-once, no
    transport writes, just `await ws.send_str(text)` to every client in turn."""
    from aiohttp import WSMsgType, web

    clients: set[web.WebSocketResponse] = set()
    seq = 0

    async def live(request: web.Request) -> web.WebSocketResponse:
        nonlocal seq
        ws = web.WebSocketResponse(max_msg_size=64 * 1024)
        await ws.prepare(request)
        is_host = request.query.get("ticket") == NAIVE_HOST_TICKET
        await ws.send_str(orjson.dumps({
            "type": "welcome", "v": 1, "role": "host" if is_host else "attendee", "seq": seq,
            "server_time": wall_ms()}).decode())
        clients.add(ws)
        try:
            async for frame in ws:
                if frame.type is not WSMsgType.TEXT:
                    continue
                received = wall_ms()
                msg = orjson.loads(frame.data)
                kind = msg.get("type")
                if kind == "time":
                    await ws.send_str(orjson.dumps({"type": "time", "t0": msg["t0"],
                                                    "t1": received,
                                                    "t2": wall_ms()}).decode())
                elif kind == "cue" and is_host:
                    seq += 1
                    text = orjson.dumps({"seq": seq, "type": "cue", "at": msg["at"],
                                         "action": msg["action"],
                                         "params": msg.get("params", {}),
                                         "ref": msg.get("ref"),
                                         "ts": round(wall_ms(), 3)}).decode()
                    for other in list(clients):
                        try:
                            await other.send_str(text)
                        except ConnectionError:
                            pass
        finally:
            clients.discard(ws)
        return ws

    async def health(_request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/v1/events/{event_id}/live", live)
    app.router.add_get("/v1/health", health)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, HOST, port, backlog=1024).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    parent = os.getppid()
    print(f"naive server on {HOST}:{port}", file=sys.stderr, flush=True)
    while not stop.is_set():  # also stop if the bench that started us is gone
        try:
            await asyncio.wait_for(stop.wait(), 1.0)
        except TimeoutError:
            if os.getppid() != parent:
                break
    for ws in list(clients):
        await ws.close()
    await runner.cleanup()


# ---- the parent ----------------------------------------------------------------------------
async def wait_http(url: str, proc: subprocess.Popen, log: Path, timeout_s: float) -> None:
    import aiohttp

    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise BenchError(f"{proc.args[0]} exited with {proc.returncode}:\n"
                                 f"{tail(log)}")
            try:
                async with http.get(url, timeout=aiohttp.ClientTimeout(total=2)) as resp:
                    if resp.status == 200:
                        return
            except (aiohttp.ClientError, OSError, TimeoutError):
                pass
            await asyncio.sleep(0.1)
    raise BenchError(f"{url} did not answer within {timeout_s:g} s:\n{tail(log)}")


class Pool:
    """The worker processes and their pipes; every call goes to all of them at once."""

    def __init__(self, procs: Procs, count: int) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.conns = []
        for i in range(count):
            parent, child = ctx.Pipe()
            p = ctx.Process(target=worker_entry, args=(i, child), daemon=True,
                            name=f"live-fanout-worker-{i}")
            p.start()
            child.close()
            procs.workers.append(p)
            self.conns.append(parent)
        self.pids = [p.pid for p in procs.workers]

    async def call(self, op: str, timeout: float, per_worker: list[dict] | None = None,
                   **kwargs: object) -> list[dict]:
        for i, conn in enumerate(self.conns):
            conn.send((op, per_worker[i] if per_worker is not None else kwargs))
        try:
            results = await asyncio.wait_for(
                asyncio.gather(*(arecv(c) for c in self.conns)), timeout)
        except TimeoutError:
            raise BenchError(f"workers did not finish {op!r} within {timeout:g} s") from None
        except (EOFError, OSError) as exc:
            raise BenchError(f"a worker process died during {op!r} ({exc!r})") from None
        for r in results:
            if "error" in r:  # type: ignore[operator]
                raise BenchError(r["error"])  # type: ignore[index]
        return results  # type: ignore[return-value]

    async def quit(self) -> None:
        try:
            await self.call("quit", 5.0)
        except (BenchError, OSError, EOFError):
            pass


def split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


async def wait_echo(host: WsClient, ref: str, timeout: float) -> int | None:
    """The seq the server gave cue `ref`, from the host's own copy of it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for seq, got_ref, _, _ in reversed(host.got):
            if got_ref == ref:
                return seq
        await asyncio.sleep(0.005)
    return None


def cue(ref: str, at: float) -> bytes:
    return orjson.dumps({"type": "cue", "at": at, "action": "lights",
                         "params": {"color": "#ff0000"}, "ref": ref})


async def burst(pool: Pool, host: WsClient, count: int, lead_ms: float,
                label: str) -> dict:
    """`count` cues back to back; deliveries a second from the first send to the last
    attendee receipt."""
    host.got = []
    send_times: dict[str, float] = {}
    first = wall_ms()
    for i in range(count):
        ref = f"b{i}"
        now = wall_ms()
        send_times[ref] = now
        host.send_frame(0x1, cue(ref, now + host.offset + lead_ms))
    last_seq = await wait_echo(host, f"b{count - 1}", 60.0)
    if last_seq is None:
        raise BenchError(f"{label}: the host never got its last burst cue back "
                         f"(errors: {host.errors[:3]})")
    waited = await pool.call("wait", 300.0, seq=last_seq, within_s=240.0)
    if any(w["behind"] for w in waited):
        say(f"{label}: {sum(w['behind'] for w in waited)} attendee(s) never got the last cue")
    reports = await pool.call("report", 120.0, send_times=send_times)
    merged = merge(reports)
    elapsed_s = (merged["last_t"] - first) / 1000.0
    merged["elapsed_s"] = elapsed_s
    merged["per_s"] = merged["deliveries"] / elapsed_s if elapsed_s > 0 else 0.0
    return merged


def merge(reports: list[dict]) -> dict:
    import numpy as np

    lat = np.concatenate([np.frombuffer(r["lat"], dtype=np.float64) for r in reports])
    skews = np.concatenate([np.frombuffer(r["skews"], dtype=np.float64) for r in reports])
    true_skews = np.concatenate([np.frombuffer(r["true_skews"], dtype=np.float64)
                                 for r in reports])
    scheduled = np.concatenate([np.frombuffer(r["scheduled"], dtype=np.float64)
                                for r in reports])
    missed: set[str] = set()
    spans: dict[str, list[float]] = {}
    for r in reports:
        missed |= set(r["missed_refs"])
        for ref, (first, last, ts) in r["per_ref"].items():
            span = spans.setdefault(ref, [first, last, ts])
            span[0], span[1] = min(span[0], first), max(span[1], last)
    return {
        "lat": lat, "skews": skews, "true_skews": true_skews, "scheduled": scheduled,
        "deliveries": int(lat.size),
        "spans": spans,
        "missing": sum(r["missing"] for r in reports),
        "duplicates": sum(r["duplicates"] for r in reports),
        "out_of_order": sum(r["out_of_order"] for r in reports),
        "lost_cues": len(missed),
        "last_t": max(r["last_t"] for r in reports),
        "closed": sum(r["closed"] for r in reports),
        "close_codes": sorted({c for r in reports for c in r["close_codes"]}),
        "pending_plays": sum(r["pending_plays"] for r in reports),
    }


def span_stats(spans: dict[str, list[float]], send_times: dict[str, float]) -> dict:
    """Per cue: host send -> server accept (its `ts`), -> first attendee receipt, and the
    spread from the first to the last attendee receipt (the fan-out as seen by clients)."""
    accept, first, spread = [], [], []
    for ref, (lo, hi, ts) in spans.items():
        sent = send_times[ref]
        accept.append(ts - sent)
        first.append(lo - sent)
        spread.append(hi - lo)
    return {"accept_ms_p50": pct(accept, 50), "accept_ms_p99": pct(accept, 99),
            "first_receipt_ms_p50": pct(first, 50), "first_receipt_ms_p99": pct(first, 99),
            "fanout_spread_ms_p50": pct(spread, 50), "fanout_spread_ms_p99": pct(spread, 99)}


def pct(values, q: float) -> float:
    import numpy as np

    return round(float(np.percentile(values, q)), 3) if len(values) else float("nan")


async def run(args: argparse.Namespace, procs: Procs, tmp: Path) -> dict:
    import aiohttp

    sys.path.insert(0, str(REPO / "tests"))
    from support import make_mini_root

    from tourserver.store.keys import KeyStore

    raise_nofile()
    load_start = os.getloadavg()
    say(f"starting {args.processes} worker process(es)")
    pool = Pool(procs, args.processes)

    say("building the mini content root")
    root, data = make_mini_root(tmp / "root"), tmp / "data"
    built = subprocess.run([sys.executable, "-m", "tourserver", "build", "--root", str(root),
                            "--data", str(data)], cwd=REPO, capture_output=True, text=True,
                           timeout=300)
    if built.returncode != 0:
        raise BenchError(f"tourserver build failed:\n{built.stderr[-2000:]}")
    _, key = KeyStore(data).create("host", "live_fanout bench")

    port = free_port()
    log = tmp / "tourserver.log"
    server = procs.start([sys.executable, "-m", "tourserver", "serve", "--data", str(data),
                          "--root", str(root), "--host", HOST, "--port", str(port),
                          "--no-build", "--tickets-per-minute", "100000000"], log)
    base = f"http://{HOST}:{port}"
    await wait_http(f"{base}/v1/health", server, log, 60)
    say(f"tourserver pid {server.pid} on {base}")

    starts = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{base}/v1/events", headers={"Authorization": f"Bearer {key}"},
                             json={"title": "live fan-out bench", "tour": "mini",
                                   "starts_at": starts, "visibility": "public"}) as resp:
            body = await resp.read()
            if resp.status != 201:
                raise BenchError(f"create event: HTTP {resp.status}: {body[:300]!r}")
            event = orjson.loads(body)
    event_id = event["id"]
    host = await open_client(port, live_path(event_id, event["host_token"]), None)
    await host.sync_clock(SYNC_SAMPLES, 0.01)

    n = args.attendees
    shares = split(n, args.processes)
    say(f"issuing {n} tickets")
    t0 = time.monotonic()
    await pool.call("tickets", 600.0, per_worker=[
        {"base": base, "event_id": event_id, "count": c} for c in shares])
    tickets_s = time.monotonic() - t0

    await asyncio.sleep(SETTLE_S)
    rss_before = proc_rss_kb(server.pid)
    say(f"connecting {n} attendees ({args.connect_concurrency} at a time); "
        f"server RSS {rss_before / 1024:.1f} MB")
    per_conc = max(1, args.connect_concurrency // args.processes)
    t0 = time.monotonic()
    conn_results = await pool.call("connect", 900.0, port=port, event_id=event_id,
                                   concurrency=per_conc)
    connect_s = time.monotonic() - t0
    connected = sum(r["connected"] for r in conn_results)
    connect_failures = sum(r["failed"] for r in conn_results)
    if connect_failures:
        say(f"{connect_failures} attendee(s) could not connect, e.g. "
            f"{[e for r in conn_results for e in r['errors']][:2]}")
    if not connected:
        raise BenchError("no attendee could connect")
    await asyncio.sleep(SETTLE_S)
    rss_after = proc_rss_kb(server.pid)
    kb_per_connection = (rss_after - rss_before) / connected
    say(f"{connected} connected in {connect_s:.1f} s; server RSS {rss_after / 1024:.1f} MB "
        f"({kb_per_connection:.1f} KB a connection)")

    say("clock sync (8 time exchanges per attendee)")
    t0 = time.monotonic()
    synced = await pool.call("sync", 900.0, concurrency=args.sync_concurrency,
                             spacing_s=0.01)
    sync_s = time.monotonic() - t0
    offsets = [abs(o) for r in synced for o in r["offsets"]]
    delays = [d for r in synced for d in r["delays"]]
    await asyncio.sleep(0.5)

    # steady phase
    count = max(1, round(args.rate * args.seconds))
    say(f"steady: {count} cues at {args.rate:g}/s, lead {args.lead_ms:g} ms")
    host.got = []
    send_times: dict[str, float] = {}
    loop = asyncio.get_running_loop()
    cpu0, harness0 = proc_cpu_s(server.pid), sum(proc_cpu_s(p) for p in pool.pids)
    w0 = time.monotonic()
    first_send = wall_ms()
    start = loop.time()
    for i in range(count):
        delay = start + i / args.rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        ref, now = f"s{i}", wall_ms()
        send_times[ref] = now
        host.send_frame(0x1, cue(ref, now + host.offset + args.lead_ms))
    last_seq = await wait_echo(host, f"s{count - 1}", 30.0)
    if last_seq is None:
        raise BenchError(f"the host never got its last steady cue back "
                         f"(errors: {host.errors[:3]})")
    waited = await pool.call("wait", 120.0, seq=last_seq, within_s=60.0)
    cpu1, harness1 = proc_cpu_s(server.pid), sum(proc_cpu_s(p) for p in pool.pids)
    w1 = time.monotonic()
    if any(w["behind"] for w in waited):
        say(f"steady: {sum(w['behind'] for w in waited)} attendee(s) never got the last cue")
    steady = merge(await pool.call("report", 120.0, send_times=send_times))
    steady_s = (steady["last_t"] - first_send) / 1000.0
    server_cpu_s = cpu1 - cpu0
    host_errors = list(host.errors)

    await asyncio.sleep(0.5)
    say(f"burst: {args.burst} cues back to back, tourserver")
    ours = await burst(pool, host, args.burst, args.burst_lead_ms, "tourserver burst")
    host_errors += host.errors
    say(f"tourserver burst: {ours['per_s']:,.0f} deliveries/s")

    await pool.call("close", 60.0)
    host.close()
    procs.stop(server)

    say("naive server: connecting the same attendees")
    naive_port = free_port()
    naive_log = tmp / "naive.log"
    naive = procs.start([sys.executable, str(Path(__file__).resolve()), "--naive-server",
                         "--port", str(naive_port)], naive_log)
    await wait_http(f"http://{HOST}:{naive_port}/v1/health", naive, naive_log, 60)
    naive_conn = await pool.call("connect", 900.0, port=naive_port, event_id=event_id,
                                 concurrency=per_conc)
    naive_connected = sum(r["connected"] for r in naive_conn)
    nhost = await open_client(naive_port, live_path(event_id, NAIVE_HOST_TICKET), None)
    await nhost.sync_clock(SYNC_SAMPLES, 0.01)
    await asyncio.sleep(SETTLE_S)
    say(f"burst: {args.burst} cues back to back, naive server ({naive_connected} attendees)")
    theirs = await burst(pool, nhost, args.burst, args.burst_lead_ms, "naive burst")
    say(f"naive burst: {theirs['per_s']:,.0f} deliveries/s")
    await pool.call("close", 60.0)
    nhost.close()
    procs.stop(naive)
    await pool.quit()

    lost = (steady["missing"] + steady["duplicates"] + steady["out_of_order"]
            + ours["missing"] + ours["duplicates"] + ours["out_of_order"])
    naive_lost = theirs["missing"] + theirs["duplicates"] + theirs["out_of_order"]
    ratio = ours["per_s"] / theirs["per_s"] if theirs["per_s"] > 0 else 0.0
    skew_abs = abs(steady["scheduled"])
    timer_abs = abs(steady["skews"])
    summary = {
        "bench": "live_fanout",
        "command": shlex.join(["python", "tools/bench/live_fanout.py", *args.argv]),
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine_info(load_start),
        "attendees": n, "connected": connected, "connect_failures": connect_failures,
        "rate": args.rate, "seconds": args.seconds, "processes": args.processes,
        "burst": args.burst, "lead_ms": args.lead_ms, "burst_lead_ms": args.burst_lead_ms,
        "cues": count,
        "tickets_s": round(tickets_s, 2), "connect_s": round(connect_s, 2),
        "sync_s": round(sync_s, 2),
        "p50_ms": pct(steady["lat"], 50), "p90_ms": pct(steady["lat"], 90),
        "p99_ms": pct(steady["lat"], 99),
        "steady_per_cue": span_stats(steady["spans"], send_times),
        "max_ms": round(float(steady["lat"].max()), 3) if steady["deliveries"] else None,
        "deliveries": steady["deliveries"],
        "deliveries_per_s": round(steady["deliveries"] / steady_s, 1) if steady_s > 0 else 0.0,
        "lost": lost, "lost_cues": steady["lost_cues"] + ours["lost_cues"],
        "missing": steady["missing"] + ours["missing"],
        "duplicates": steady["duplicates"] + ours["duplicates"],
        "out_of_order": steady["out_of_order"] + ours["out_of_order"],
        "closed_by_server": max(steady["closed"], ours["closed"]),
        "close_codes": sorted(set(steady["close_codes"]) | set(ours["close_codes"])),
        "host_errors": len(host_errors),
        "host_error_sample": host_errors[:3],
        "rss_before_kb": rss_before, "rss_after_kb": rss_after,
        "kb_per_connection": round(kb_per_connection, 2),
        "server_cpu_s": round(server_cpu_s, 3),
        "cpu_us_per_delivery": (round(server_cpu_s * 1e6 / steady["deliveries"], 3)
                                if steady["deliveries"] else None),
        "server_cpu_share": round(server_cpu_s / (w1 - w0), 3),
        "harness_cpu_share": round((harness1 - harness0) / (w1 - w0), 3),
        "skew_p50_ms": pct(skew_abs, 50), "skew_p99_ms": pct(skew_abs, 99),
        "skew_max_ms": round(float(skew_abs.max()), 3) if skew_abs.size else None,
        "skew_samples": int(skew_abs.size),
        "timer_skew_p50_ms": pct(timer_abs, 50), "timer_skew_p99_ms": pct(timer_abs, 99),
        "timer_skew_unplayed": steady["pending_plays"],
        "timer_true_skew_p99_ms": pct(abs(steady["true_skews"]), 99),
        "sync_offset_abs_p50_ms": pct(offsets, 50), "sync_offset_abs_p99_ms": pct(offsets, 99),
        "sync_delay_p50_ms": pct(delays, 50), "sync_delay_p99_ms": pct(delays, 99),
        "burst_deliveries": ours["deliveries"],
        "burst_s": round(ours["elapsed_s"], 3),
        "burst_deliveries_per_s": round(ours["per_s"], 1),
        "burst_p99_ms": pct(ours["lat"], 99),
        "naive_connected": naive_connected,
        "naive_burst_deliveries": theirs["deliveries"],
        "naive_burst_s": round(theirs["elapsed_s"], 3),
        "naive_burst_deliveries_per_s": round(theirs["per_s"], 1),
        "naive_burst_p99_ms": pct(theirs["lat"], 99),
        "naive_lost": naive_lost,
        "ratio_vs_naive": round(ratio, 3),
    }
    summary["targets"] = targets(summary)
    return summary


def targets(summary: dict) -> dict:
    out = {}
    for name, (op, bound) in TARGETS.items():
        value = summary.get(name)
        ok = value is not None and value == value and (
            value < bound if op == "<" else value <= bound if op == "<=" else value >= bound)
        out[name] = {"target": f"{op} {bound:g}", "value": value, "met": bool(ok)}
    return out


def machine_info(load_start: tuple[float, float, float]) -> dict:
    import aiohttp

    return {"nproc": os.cpu_count(), "cpu": cpu_model(), "python": platform.python_version(),
            "aiohttp": aiohttp.__version__, "kernel": platform.release(),
            "loadavg_start": [round(x, 2) for x in load_start],
            "loadavg_end": [round(x, 2) for x in os.getloadavg()]}


def table(s: dict) -> str:
    rows = [
        ("attendees (connected)", f"{s['attendees']} ({s['connected']})"),
        ("worker processes", s["processes"]),
        ("connect_s", s["connect_s"]),
        ("latency p50 / p99 / max ms", f"{s['p50_ms']} / {s['p99_ms']} / {s['max_ms']}"),
        ("deliveries/s (steady)", f"{s['deliveries_per_s']:,.0f}"),
        ("lost", s["lost"]),
        ("kb_per_connection", s["kb_per_connection"]),
        ("cpu_us_per_delivery", s["cpu_us_per_delivery"]),
        ("server_cpu_share", s["server_cpu_share"]),
        ("skew p50 / p99 ms", f"{s['skew_p50_ms']} / {s['skew_p99_ms']}"),
        ("harness timer skew p50 / p99 ms",
         f"{s['timer_skew_p50_ms']} / {s['timer_skew_p99_ms']}"),
        ("burst deliveries/s ours / naive",
         f"{s['burst_deliveries_per_s']:,.0f} / {s['naive_burst_deliveries_per_s']:,.0f}"),
        ("ratio_vs_naive", s["ratio_vs_naive"]),
    ]
    width = max(len(r[0]) for r in rows)
    lines = [f"{k.ljust(width)}  {v}" for k, v in rows]
    lines.append("targets: " + ", ".join(
        f"{k} {t['target']} {'met' if t['met'] else 'MISSED'}" for k, t in s["targets"].items()))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--attendees", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=10.0, help="steady cues a second")
    parser.add_argument("--seconds", type=float, default=10.0, help="steady phase length")
    parser.add_argument("--burst", type=int, default=200,
                        help="cues in the burst (the host's bucket allows 2000)")
    parser.add_argument("--processes", type=int, default=2 if (os.cpu_count() or 1) <= 2
                        else 3, help="attendee worker processes")
    parser.add_argument("--lead-ms", type=float, default=300.0,
                        help="cue.at = host's server clock + this")
    parser.add_argument("--burst-lead-ms", type=float, default=60_000.0,
                        help="cue.at lead in the burst: tourserver handles a host's cues one "
                        "after the other, so the last of a burst is checked seconds later")
    parser.add_argument("--connect-concurrency", type=int, default=100,
                        help="attendees connecting at once, in all")
    parser.add_argument("--sync-concurrency", type=int, default=50,
                        help="attendees syncing their clock at once, per process")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object with every figure as the last line")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs)")
    parser.add_argument("--naive-server", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.argv = argv
    if args.naive_server:
        raise_nofile()
        asyncio.run(naive_serve(args.port))
        return 0
    if not (1 <= args.attendees <= 100_000 and 0 < args.rate <= 1000
            and 0 < args.seconds <= 3600 and 1 <= args.burst <= 2000
            and 1 <= args.processes <= 64 and 0 < args.lead_ms <= 60_000
            and 0 < args.burst_lead_ms <= 3_600_000):
        parser.error("--attendees 1..100000, --rate 0..1000, --seconds 0..3600, "
                     "--burst 1..2000, --processes 1..64, --lead-ms 0..60000, "
                     "--burst-lead-ms 0..3600000")

    def on_signal(signum, _frame):
        raise SystemExit(128 + signum)  # unwinds through the finally below: cleanup

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    procs = Procs()
    tmp = Path(tempfile.mkdtemp(prefix="live-fanout-"))
    try:
        summary = asyncio.run(run(args, procs, tmp))
    except (BenchError, OSError, subprocess.SubprocessError) as exc:
        print(f"live_fanout: {exc}", file=sys.stderr)
        return 1
    finally:
        procs.stop_all()
        if args.keep:
            say(f"kept {tmp}")
        else:
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
    print(table(summary))
    if args.json:
        print(json.dumps(summary, ensure_ascii=False, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
