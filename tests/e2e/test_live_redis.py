"""Live events across processes: a real redis-server and two `tourserver serve` processes
with separate data directories and a shared secret, attendees split between them."""

from __future__ import annotations

import asyncio
import shutil

import pytest
from live_support import LiveServer, RedisServer, drain, private_data
from support import require

from tourserver.live.client import LiveClient

SECRET = "tests-shared-secret-0123456789abcdef"


@pytest.fixture()
def cluster(mini_built, tmp_path):
    require(shutil.which("redis-server") is not None, "redis-server (Debian package)")
    root, built = mini_built
    redis = RedisServer(tmp_path)
    env = {"TOURSERVER_SECRET": SECRET}
    servers = []
    try:
        for name in ("a", "b"):
            data = private_data(built, tmp_path / name)
            servers.append(LiveServer(data, root, "--broker", redis.url,
                                      "--tickets-per-minute", "10000", env=env))
        yield servers
    finally:
        for srv in servers:
            srv.stop()
        redis.stop()


async def test_two_processes_share_events_in_order(cluster):
    a, b = cluster
    event = a.create_event()
    # Process b has its own data directory: it knows the event only through Redis.
    assert b.json("GET", f"/v1/events/{event['id']}")["title"] == event["title"]
    host = await a.host(event)
    phones = ([await a.attendee(event["id"]) for _ in range(5)]
              + [await b.attendee(event["id"]) for _ in range(5)])
    hosts_b = await LiveClient.connect(b.base, event["id"], event["host_token"])
    for i in range(40):
        await host.send({"type": "cue", "at": host.server_now() + 300, "action": "lights",
                         "params": {"color": "#00ff00"}, "ref": i})
        if i % 4 == 0:  # a second host on the other process, interleaved
            await hosts_b.send({"type": "chat", "text": f"from b {i}"})
    expected = None
    for phone in [host, hosts_b, *phones]:
        got: list[dict] = []
        while len(got) < 50:
            msg = await phone.next(timeout=20)
            if "seq" in msg:
                got.append(msg)
        assert [m["seq"] for m in got] == list(range(1, 51))  # unique and gap-free
        order = [(m["type"], m.get("ref"), m.get("text")) for m in got]
        expected = expected or order
        assert order == expected
        assert [m["ref"] for m in got if m["type"] == "cue"] == list(range(40))
    # Presence counts everyone, across both processes.
    watcher = phones[-1]
    count = 0
    for _ in range(30):
        count = (await watcher.next("presence", 5))["count"]
        if count == 12:
            break
    assert count == 12
    # A phone moves from b to a and resumes where it was.
    mover = phones[-1]
    seen = mover.seq
    await mover.close()
    for i in range(40, 45):
        await host.send({"type": "cue", "at": host.server_now() + 300, "action": "lights",
                         "params": {"intensity": 0.2}, "ref": i})
    await drain(host, "cue", 5)
    ticket = (await asyncio.to_thread(b.ticket, event["id"]))["ticket"]
    moved = await LiveClient.connect(a.base, event["id"], ticket, from_seq=seen)
    got = await drain(moved, "cue", 5)
    assert [m["seq"] for m in got] == list(range(seen + 1, seen + 6))
    for client in [host, hosts_b, moved, *phones[:-1]]:
        await client.close()


async def test_resume_after_one_process_restarts(cluster):
    a, b = cluster
    event = b.create_event()
    host = await b.host(event)
    ticket = (await asyncio.to_thread(a.ticket, event["id"]))["ticket"]
    phone = await LiveClient.connect(a.base, event["id"], ticket)
    for i in range(6):
        await host.send({"type": "cue", "at": host.server_now() + 300, "action": "stop",
                         "params": {"stop": "mini-b" if i % 2 else "mini-a"}, "ref": i})
    await drain(phone, "cue", 6)
    seen = 3
    await asyncio.to_thread(a.stop)
    code, _ = await asyncio.wait_for(phone.closed, 10)
    assert code == 1001
    for i in range(6, 9):  # while a is down, b carries on
        await host.send({"type": "cue", "at": host.server_now() + 300, "action": "lights",
                         "params": {"pattern": "chase"}, "ref": i})
    await drain(host, "cue", 9)
    await asyncio.to_thread(a.start)
    phone = await LiveClient.connect(a.base, event["id"], ticket, from_seq=seen)
    assert phone.welcome["seq"] == 9
    got = await drain(phone, "cue", 6)
    assert [m["seq"] for m in got] == [4, 5, 6, 7, 8, 9]
    await host.send({"type": "cue", "at": host.server_now() + 300, "action": "end"})
    assert (await phone.next("cue"))["seq"] == 10
    assert (await phone.next("end"))["seq"] == 11
    for client in (host, phone):
        await client.close()
