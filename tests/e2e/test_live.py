"""The live channel end to end: a real `tourserver serve` process and real websocket clients
(the websockets library), as phones and a host console would use it."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time

import pytest
import websockets
from live_support import LiveServer, drain, private_data, quiet, rfc3339
from support import REPO

from tourserver.live.client import LiveClient, wall_ms
from tourserver.live.tokens import Claims, Signer, load_secret


@pytest.fixture(scope="module")
def server(mini_built, tmp_path_factory):
    root, built = mini_built
    data = private_data(built, tmp_path_factory.mktemp("live"))
    srv = LiveServer(data, root, "--tickets-per-minute", "100000", "--live-heartbeat", "1")
    yield srv
    srv.stop()


async def cue(host: LiveClient, ref: object, lead_ms: float = 300, **params) -> None:
    await host.send({"type": "cue", "at": host.server_now() + lead_ms, "action": "lights",
                     "params": params or {"color": "#ff8800"}, "ref": ref})


# ---- connecting ------------------------------------------------------------------------

async def test_welcome_and_clock_sync(server):
    event = server.create_event(stop="mini-a")
    client = await server.attendee(event["id"], name="Mei")
    w = client.welcome
    assert w["v"] == 1 and w["role"] == "attendee" and w["seq"] == 0
    assert w["event"]["id"] == event["id"] and w["event"]["status"] == "live"
    assert abs(w["server_time"] - wall_ms()) < 5000
    assert w["state"]["stop"] == "mini-a" and w["state"]["scene"] == "mini-a-scene"
    assert w["state"]["scheduled"] == [] and w["you"]["name"] == "Mei"
    sample = await client.sync_clock(8)
    # Same machine, same clock: the estimate is within its own error bound (delay / 2).
    assert sample.delay_ms >= 0
    assert abs(sample.offset_ms) <= sample.delay_ms / 2 + 1.0
    await client.close()


async def test_checks_before_the_upgrade(server):
    event = server.create_event()
    ticket = server.ticket(event["id"])["ticket"]
    path = f"/v1/events/{event['id']}/live"
    upgrade = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
               "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}
    cases = [
        (f"{path}", {}, 400, "ticket_missing"),
        (f"{path}?ticket=garbage", {}, 401, "ticket_invalid"),
        (f"{path}?ticket={ticket[:-3]}abc", {}, 401, "ticket_invalid"),
        (f"/v1/events/ev_nope/live?ticket={ticket}", {}, 404, "not_found"),
        (f"{path}?ticket={ticket}", {"Origin": "https://evil.example"}, 403,
         "origin_forbidden"),
        (f"{path}?ticket={ticket}&from_seq=-1", {}, 400, "invalid_request"),
    ]
    for url, headers, status, code in cases:
        got, hdrs, body = server.call("GET", url, headers={**upgrade, **headers})
        assert got == status, (url, got, body)
        assert hdrs["Content-Type"].startswith("application/json")
        assert json.loads(body)["error"]["code"] == code
    # A ticket for another event, and an expired one (signed with the server's own secret).
    other = server.create_event()
    got, _, body = server.call("GET", f"/v1/events/{other['id']}/live?ticket={ticket}",
                               headers=upgrade)
    assert got == 401 and b"another event" in body
    signer = Signer(load_secret(server.data))
    expired = signer.sign(Claims(event["id"], "attendee", "a-old", wall_ms() - 1))
    got, _, body = server.call("GET", f"{path}?ticket={expired}", headers=upgrade)
    assert got == 401 and json.loads(body)["error"]["code"] == "ticket_expired"
    # Loopback and same-origin pages, and native apps (no Origin), get in.
    for origin in ("http://localhost:5173", server.base, None):
        client = await LiveClient.connect(server.base, event["id"], ticket, origin=origin)
        await client.close()


async def test_permessage_deflate_is_off(server):
    event = server.create_event()
    ticket = server.ticket(event["id"])["ticket"]
    url = server.base.replace("http", "ws") + f"/v1/events/{event['id']}/live?ticket={ticket}"
    async with websockets.connect(url) as ws:  # offers permessage-deflate by default
        assert "Sec-WebSocket-Extensions" not in ws.response.headers


# ---- cues --------------------------------------------------------------------------------

async def test_every_attendee_gets_every_cue_in_order(server):
    event = server.create_event()
    host = await server.host(event)
    attendees = [await server.attendee(event["id"]) for _ in range(20)]
    for i in range(60):
        await cue(host, i, color=f"#{i:06x}")
    expected = None
    for client in [host, *attendees]:
        got = await drain(client, "cue", 60)
        assert [m["seq"] for m in got] == list(range(1, 61))
        assert [m["ref"] for m in got] == list(range(60))
        assert [m["params"]["color"] for m in got] == [f"#{i:06x}" for i in range(60)]
        stripped = [(m["seq"], m["at"], m["action"]) for m in got]
        expected = expected or stripped
        assert stripped == expected  # the same messages, in the same order, for everyone
    # A late joiner sees the cues not yet played in its snapshot, and only those.
    await asyncio.sleep(0.4)
    await cue(host, "late", lead_ms=20_000)
    late = await server.attendee(event["id"])
    assert late.welcome["seq"] == 61
    assert [c["ref"] for c in late.welcome["state"]["scheduled"]] == ["late"]
    for client in [host, late, *attendees]:
        await client.close()


async def test_cue_checks(server):
    event = server.create_event()
    host = await server.host(event)
    bystander = await server.attendee(event["id"])
    attendee = await server.attendee(event["id"])
    now = host.server_now()
    bad = [
        ({"type": "cue", "at": now - 5000, "action": "lights", "params": {"color": "#fff000"}},
         "cue_time"),
        ({"type": "cue", "at": now + 7 * 3600_000, "action": "end"}, "cue_time"),
        ({"type": "cue", "at": now + 500, "action": "scene", "params": {"scene": "nope"}},
         "unknown_target"),
        ({"type": "cue", "at": now + 500, "action": "narration",
          "params": {"stop": "mini-a", "lang": "fr"}}, "unknown_target"),
        ({"type": "cue", "at": now + 500, "action": "fireworks"}, "bad_field"),
        ({"type": "cue", "at": "soon", "action": "end"}, "bad_field"),
        ({"type": "cue", "at": now + 500, "action": "lights", "params": {"color": "red"}},
         "bad_field"),
        ({"type": "nonsense"}, "bad_message"),
    ]
    for message, code in bad:
        await host.send(message)
        assert (await host.next("error"))["code"] == code, message
    await host.ws.send("{not json")
    assert (await host.next("error"))["code"] == "bad_message"
    # An attendee sending host messages: an error to them, nothing to anyone else.
    await attendee.send({"type": "cue", "at": now + 1000, "action": "end"})
    assert (await attendee.next("error"))["code"] == "forbidden"
    await attendee.send({"type": "moderate", "action": "end"})
    assert (await attendee.next("error"))["code"] == "forbidden"
    assert await quiet(bystander, "cue") and await quiet(host, "cue")
    assert (await asyncio.to_thread(server.json, "GET",
                                    f"/v1/events/{event['id']}"))["status"] == "live"
    # Every action the protocol names is accepted with good params.
    good = [("scene", {"scene": "mini-a-scene"}),
            ("lights", {"color": "#00ffaa", "intensity": 0.5, "pattern": "pulse",
                        "period_ms": 800}),
            ("narration", {"stop": "mini-a", "lang": "zh-Hans"}), ("stop", {"stop": "mini-b"})]
    for action, params in good:
        await host.send({"type": "cue", "at": host.server_now() + 100, "action": action,
                         "params": params})
    got = await drain(bystander, "cue", 4)
    assert [m["action"] for m in got] == [a for a, _ in good]
    await asyncio.sleep(0.3)
    late = await server.attendee(event["id"])
    state = late.welcome["state"]
    assert state["stop"] == "mini-b" and state["lights"]["pattern"] == "pulse"
    assert state["narration"]["lang"] == "zh-Hans"
    for client in (host, bystander, attendee, late):
        await client.close()


async def test_host_burst_of_a_timeline_is_not_cut_off(server):
    event = server.create_event()
    host = await server.host(event)
    attendee = await server.attendee(event["id"])
    base = host.server_now() + 60_000
    for i in range(500):
        await host.send({"type": "cue", "at": base + i * 100, "action": "lights",
                         "params": {"intensity": (i % 10) / 10}, "ref": i})
    got = await drain(attendee, "cue", 500)
    assert [m["ref"] for m in got] == list(range(500))
    assert await quiet(host, "error", 0.3)
    await host.close()
    await attendee.close()


# ---- resume ------------------------------------------------------------------------------

async def test_resume_after_a_dropped_connection(server):
    event = server.create_event()
    host = await server.host(event)
    ticket = server.ticket(event["id"])["ticket"]
    phone = await LiveClient.connect(server.base, event["id"], ticket)
    for i in range(5):
        await cue(host, i)
    await drain(phone, "cue", 5)
    seen = phone.seq
    phone.ws.transport.abort()  # signal lost on a bridge: no close handshake
    await asyncio.sleep(0.2)
    for i in range(5, 12):
        await cue(host, i)
        await host.send({"type": "chat", "text": f"message {i}"})
    await drain(host, "chat", 7)
    phone = await LiveClient.connect(server.base, event["id"], ticket, from_seq=seen)
    assert phone.welcome["seq"] == seen + 14
    for i in range(12, 15):
        await cue(host, i)
    durable = []
    while len(durable) < 17:
        msg = await phone.next()
        if "seq" in msg:
            durable.append(msg)
    assert [m["seq"] for m in durable] == list(range(seen + 1, seen + 18))
    assert [m["ref"] for m in durable if m["type"] == "cue"] == list(range(5, 15))
    await phone.close()
    await host.close()


async def test_resume_of_more_history_than_the_send_queue_holds(server):
    """3,000 chats of ~560 bytes (1.7 MB, over the 1 MiB queue) are all caught up on."""
    event = server.create_event()
    host = await server.host(event)
    text = "夜" * 180
    for i in range(3000):
        await host.send({"type": "chat", "text": f"{i} {text}"})
        if i % 1000 == 999:
            await asyncio.sleep(5)  # the host's bucket refills at 200 a second
    await drain(host, "chat", 3000, timeout=60)
    phone = await server.attendee(event["id"], from_seq=0)
    got = await drain(phone, "chat", 3000, timeout=60)
    assert [m["seq"] for m in got] == list(range(1, 3001))
    await phone.send({"type": "cue", "at": 0, "action": "end", "ref": "mine"})
    error = await phone.next("error")
    assert error["code"] == "forbidden" and error["ref"] == "mine"  # errors name their message
    for client in (host, phone):
        await client.close()


async def test_resume_older_than_the_window_gets_a_snapshot(mini_built, tmp_path):
    root, built = mini_built
    srv = LiveServer(private_data(built, tmp_path), root, "--history-window", "5",
                     "--tickets-per-minute", "1000")
    try:
        event = srv.create_event()
        host = await srv.host(event)
        for i in range(8):
            await cue(host, i)
        await drain(host, "cue", 8)
        phone = await srv.attendee(event["id"], from_seq=1)
        snap = await phone.next()
        assert snap["type"] == "snapshot" and snap["reset"] is True and snap["seq"] == 8
        assert "history window" in snap["reason"]
        assert len(snap["state"]["scheduled"]) + snap["state"]["counts"]["cues"] >= 8
        ok = await srv.attendee(event["id"], from_seq=4)
        assert [m["seq"] for m in await drain(ok, "cue", 4)] == [5, 6, 7, 8]
        for client in (host, phone, ok):
            await client.close()
    finally:
        srv.stop()


async def test_restart_loses_nothing(mini_built, tmp_path):
    root, built = mini_built
    srv = LiveServer(private_data(built, tmp_path), root, "--tickets-per-minute", "1000")
    try:
        event = srv.create_event()
        host = await srv.host(event)
        ticket = srv.ticket(event["id"])["ticket"]
        phone = await LiveClient.connect(srv.base, event["id"], ticket)
        for i in range(10):
            await cue(host, i, lead_ms=30_000)
        await drain(phone, "cue", 10)
        await asyncio.to_thread(srv.stop)
        code, _ = await asyncio.wait_for(phone.closed, 10)
        assert code == 1001  # going away, after flushing
        await asyncio.to_thread(srv.start)
        phone = await LiveClient.connect(srv.base, event["id"], ticket, from_seq=4)
        assert phone.welcome["seq"] == 10
        assert len(phone.welcome["state"]["scheduled"]) == 10  # not played yet: kept
        host = await srv.host(event)
        await cue(host, 10)
        got = await drain(phone, "cue", 7)
        assert [m["seq"] for m in got] == list(range(5, 12))
        assert [m["ref"] for m in got] == list(range(4, 11))
        for client in (host, phone):
            await client.close()
    finally:
        srv.stop()


# ---- limits and close codes ------------------------------------------------------------

async def test_a_ticket_that_expires_while_connected_closes_with_4003(server):
    event = server.create_event()
    signer = Signer(load_secret(server.data))
    ticket = signer.sign(Claims(event["id"], "attendee", "a-brief", wall_ms() + 1500))
    phone = await LiveClient.connect(server.base, event["id"], ticket)
    code, _ = await asyncio.wait_for(phone.closed, 10)
    assert code == 4003


async def test_oversized_frame_closes_with_1009(server):
    event = server.create_event()
    phone = await server.attendee(event["id"])
    await phone.ws.send(json.dumps({"type": "chat", "text": "x" * 70_000}))
    code, _ = await asyncio.wait_for(phone.closed, 10)
    assert code == 1009


async def test_flooding_attendee_is_limited_then_closed_with_1008(server):
    event = server.create_event()
    phone = await server.attendee(event["id"])
    bystander = await server.attendee(event["id"])
    for _ in range(45):
        await phone.send({"type": "react", "emoji": "👏"})
    assert (await phone.next("error"))["code"] == "rate_limited"
    try:
        for _ in range(200):
            await phone.send({"type": "react", "emoji": "🔥"})
    except websockets.ConnectionClosed:
        pass
    code, _ = await asyncio.wait_for(phone.closed, 10)
    assert code == 1008
    assert bystander.ws.state is websockets.protocol.State.OPEN
    await bystander.close()


async def test_chat_mute_kick(server):
    event = server.create_event()
    host = await server.host(event)
    ticket = server.ticket(event["id"], name="Wei")
    loud = await LiveClient.connect(server.base, event["id"], ticket["ticket"])
    other = await server.attendee(event["id"])
    await loud.send({"type": "chat", "text": "你好 Chongqing"})
    chat = await other.next("chat")
    assert chat["text"] == "你好 Chongqing" and chat["from"] == ticket["id"]
    assert chat["name"] == "Wei" and chat["seq"] == 1
    await loud.send({"type": "chat", "text": "y" * 501})
    assert (await loud.next("error"))["code"] == "bad_field"
    await host.send({"type": "moderate", "action": "mute", "target": chat["from"]})
    assert (await other.next("moderate"))["action"] == "mute"
    await loud.send({"type": "chat", "text": "still here"})
    assert (await loud.next("error"))["code"] == "muted"
    assert await quiet(other, "chat")
    await host.send({"type": "moderate", "action": "unmute", "target": chat["from"]})
    await other.next("moderate")
    await loud.send({"type": "chat", "text": "back"})
    assert (await other.next("chat"))["text"] == "back"
    await host.send({"type": "moderate", "action": "kick", "target": chat["from"]})
    code, _ = await asyncio.wait_for(loud.closed, 10)
    assert code == 4001
    with pytest.raises(websockets.InvalidStatus) as refused:
        await LiveClient.connect(server.base, event["id"], ticket["ticket"])
    assert refused.value.response.status_code == 403
    await host.send({"type": "moderate", "action": "kick", "target": "nobody"})
    assert (await host.next("error"))["code"] == "unknown_target"
    for client in (host, other):
        await client.close()


async def test_capacity(server):
    event = server.create_event(capacity=2)
    first = await server.attendee(event["id"])
    second = await server.attendee(event["id"])
    with pytest.raises(websockets.InvalidStatus) as full:
        await server.attendee(event["id"])
    assert full.value.response.status_code == 403
    assert b"event_full" in full.value.response.body
    await first.close()
    await asyncio.sleep(0.1)
    third = await server.attendee(event["id"])
    for client in (second, third):
        await client.close()


async def test_dead_connections_are_reaped(server):
    """A phone that vanished without closing stops answering pings and is dropped."""
    event = server.create_event()
    watcher = await server.attendee(event["id"])
    ticket = server.ticket(event["id"])["ticket"]
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.sendall((f"GET /v1/events/{event['id']}/live?ticket={ticket} HTTP/1.1\r\n"
                  f"Host: 127.0.0.1:{server.port}\r\nUpgrade: websocket\r\n"
                  "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                  "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n").encode())
    assert sock.recv(12) == b"HTTP/1.1 101"
    counts = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and (not counts or counts[-1] != 1):
        counts.append((await watcher.next("presence"))["count"])
    assert 2 in counts and counts[-1] == 1  # the silent socket was counted, then reaped
    sock.close()
    await watcher.close()


async def test_a_stalled_phone_does_not_hold_up_the_others(server):
    """Ten phones stop reading. The host keeps talking: everyone else gets every message
    promptly, and the stalled ones are closed as slow consumers (4000)."""
    event = server.create_event()
    host = await server.host(event)
    readers = [await server.attendee(event["id"]) for _ in range(3)]
    ticket = server.ticket(event["id"])["ticket"]
    stalled = []
    for _ in range(10):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", server.port))
        sock.sendall((f"GET /v1/events/{event['id']}/live?ticket={ticket} HTTP/1.1\r\n"
                      f"Host: 127.0.0.1:{server.port}\r\nUpgrade: websocket\r\n"
                      "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n").encode())
        assert sock.recv(12) == b"HTTP/1.1 101"
        stalled.append(sock)  # never read again
    text = "灯" * 150  # ~600 bytes a frame
    for i in range(2400):  # ~1.5 MB: past every stalled phone's queue and kernel buffers
        await host.send({"type": "chat", "text": f"{i} {text}"})
        if i % 200 == 199:
            await asyncio.sleep(1.0)  # stay within the host's rate limit
    for client in readers:  # a loop awaiting each phone's send would never get here
        got = await drain(client, "chat", 2400, timeout=30)
        assert [int(m["text"].split()[0]) for m in got] == list(range(2400))
    # Every stalled socket was closed by the server: reading it now ends in EOF after the
    # frames the kernel held, with the slow-consumer close frame or a reset.
    for sock in stalled:
        sock.settimeout(10)
        data = b""
        try:
            while chunk := sock.recv(1 << 20):
                data += chunk
        except (ConnectionResetError, TimeoutError) as exc:
            assert not isinstance(exc, TimeoutError), "a stalled socket was never closed"
        sock.close()
        assert len(data) < 2400 * 600  # it did not get everything: it was cut off
    for client in (host, *readers):
        await client.close()


# ---- presence and reactions ------------------------------------------------------------

async def test_presence_is_bounded_and_scene_local(server):
    event = server.create_event()
    watcher = await server.attendee(event["id"])
    phones = [await server.attendee(event["id"]) for _ in range(20)]
    for i, phone in enumerate(phones):
        await phone.send({"type": "presence",
                          "pose": {"position": [i, 1.6, -2.0], "orientation": [0, 0, 0, 1]}})
    started = time.monotonic()
    frames = []
    while (left := 1.5 - (time.monotonic() - started)) > 0:
        try:
            frames.append(await watcher.next("presence", left))
        except TimeoutError:
            break  # presence is sent when it changes: it has settled
    last = frames[-1]
    assert last["count"] == 21
    assert 0 < len(last["avatars"]) <= 16  # not everyone to everyone
    assert len(frames) <= 16  # at most 10 a second
    # A GPS fix instead of a scene-local pose is refused.
    await phones[0].send({"type": "presence", "pose": {"position": [29.56, 106.57, 2e6],
                                                      "orientation": [0, 0, 0, 1]}})
    assert (await phones[0].next("error"))["code"] == "bad_field"
    for phone in phones:
        await phone.send({"type": "react", "emoji": "🎆"})
    await phones[0].send({"type": "react", "emoji": "💣"})
    assert (await phones[0].next("error"))["code"] == "bad_field"
    total = 0
    deadline = time.monotonic() + 3
    while total < 20 and time.monotonic() < deadline:
        total += (await watcher.next("reactions", 3))["counts"].get("🎆", 0)
    assert total == 20
    for client in (watcher, *phones):
        await client.close()


# ---- ending and replay -------------------------------------------------------------------

async def test_end_log_and_replay(server):
    event = server.create_event()
    host = await server.host(event)
    phone = await server.attendee(event["id"])
    for i in range(3):
        await cue(host, i, lead_ms=100)
    await host.send({"type": "chat", "text": "thanks all"})
    await drain(phone, "chat", 1)
    await host.send({"type": "moderate", "action": "end"})
    end = await phone.next("end")
    assert end["seq"] == 5
    code, _ = await asyncio.wait_for(phone.closed, 10)
    assert code == 4002
    status, headers, body = server.call("GET", f"/v1/events/{event['id']}/log")
    assert status == 200 and headers["Content-Type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in body.splitlines()]
    assert [m["seq"] for m in lines] == [1, 2, 3, 4, 5]
    assert [m["type"] for m in lines] == ["cue", "cue", "cue", "chat", "end"]
    info = server.json("GET", f"/v1/events/{event['id']}")
    assert info["status"] == "ended" and info["ended_at"]
    ticket = server.ticket(event["id"])
    assert ticket["role"] == "viewer"
    replay = await LiveClient.connect(server.base, event["id"], ticket["ticket"],
                                      extra_query="&speed=4")
    assert replay.welcome["mode"] == "replay"
    got = [await replay.next(timeout=10) for _ in range(5)]
    assert [m["seq"] for m in got] == [1, 2, 3, 4, 5] and all(m["replay"] for m in got)
    assert all(m["at"] > replay.welcome["server_time"] for m in got if m["type"] == "cue")
    code, _ = await asyncio.wait_for(replay.closed, 15)
    assert code == 4002
    status, _, _ = server.call("POST", f"/v1/events/{event['id']}/end",
                               headers={"Authorization": f"Bearer {event['host_token']}"})
    assert status == 200  # ending twice is harmless


async def test_end_cue_closes_the_event_when_it_plays(server):
    event = server.create_event()
    host = await server.host(event)
    phone = await server.attendee(event["id"])
    await host.send({"type": "cue", "at": host.server_now() + 300, "action": "end"})
    assert (await phone.next("cue"))["action"] == "end"
    assert (await phone.next("end"))["reason"] == "the end cue played"
    code, _ = await asyncio.wait_for(phone.closed, 10)
    assert code == 4002


# ---- events over HTTP --------------------------------------------------------------------

def test_event_api(server):
    key = {"Authorization": f"Bearer {server.key}"}
    body = {"title": "Nanshan fireworks", "tour": "mini", "starts_at": rfc3339(3600),
            "ends_at": rfc3339(7200), "visibility": "ticketed", "capacity": 500}
    created = server.json("POST", "/v1/events", body, key, status=201)
    assert created["status"] == "scheduled" and created["invite_code"]
    assert created["join_url"].endswith(created["id"])
    listed = server.json("GET", "/v1/events?tour=mini&upcoming=1")["events"]
    assert created["id"] in [e["id"] for e in listed]
    assert all("host_token" not in e and "invite_code" not in e for e in listed)
    tour = server.json("GET", "/v1/tours/mini")
    linked = server.json("GET", tour["links"]["events"])["events"]
    assert created["id"] in [e["id"] for e in linked]
    # Ticketed: the invite code is needed.
    got, _, raw = server.call("POST", f"/v1/events/{created['id']}/tickets", {})
    assert got == 403 and json.loads(raw)["error"]["code"] == "invite_required"
    ticket = server.ticket(created["id"], invite=created["invite_code"], role="viewer")
    assert ticket["role"] == "viewer" and ticket["expires_at"].endswith("Z")
    got, _, raw = server.call("GET", f"/v1/events/{created['id']}/log")
    assert got == 401
    for bad, field in [({**body, "tour": "nowhere"}, "tour"),
                       ({**body, "starts_at": "tomorrow"}, "starts_at"),
                       ({**body, "ends_at": rfc3339(-7200), "starts_at": rfc3339(-9000)},
                        "ends_at"),
                       ({**body, "capacity": 0}, "capacity"),
                       ({**body, "colour": "red"}, "colour")]:
        got, _, raw = server.call("POST", "/v1/events", bad, key)
        assert got == 400 and json.loads(raw)["error"]["field"] == field, raw
    got, _, raw = server.call("POST", "/v1/events", body)
    assert got == 401


def test_keys_take_effect_on_a_running_server(server):
    proc = subprocess.run([sys.executable, "-m", "tourserver", "keys", "create", "--role",
                           "host", "--data", str(server.data), "--json"],
                          capture_output=True, text=True, cwd=REPO, timeout=60)
    assert proc.returncode == 0, proc.stderr
    made = json.loads(proc.stdout)
    auth = {"Authorization": f"Bearer {made['key']}"}
    body = {"title": "t", "tour": "mini", "starts_at": rfc3339(60)}
    assert server.call("POST", "/v1/events", body, auth)[0] == 201
    subprocess.run([sys.executable, "-m", "tourserver", "keys", "revoke", made["id"],
                    "--data", str(server.data)], check=True, cwd=REPO, timeout=60)
    assert server.call("POST", "/v1/events", body, auth)[0] == 401
    creator = subprocess.run([sys.executable, "-m", "tourserver", "keys", "create", "--role",
                              "creator", "--data", str(server.data), "--json"],
                             capture_output=True, text=True, cwd=REPO, timeout=60)
    auth = {"Authorization": f"Bearer {json.loads(creator.stdout)['key']}"}
    assert server.call("POST", "/v1/events", body, auth)[0] == 403
    log = server.log.read_text()
    assert made["key"] not in log  # keys are never logged


def test_ticket_rate_limit_per_address(mini_built, tmp_path):
    root, built = mini_built
    srv = LiveServer(private_data(built, tmp_path), root, "--tickets-per-minute", "30")
    try:
        event = srv.create_event()
        codes = [srv.call("POST", f"/v1/events/{event['id']}/tickets", {})[0]
                 for _ in range(31)]
        assert codes[:30] == [201] * 30 and codes[30] == 429
        _, headers, raw = srv.call("POST", f"/v1/events/{event['id']}/tickets", {})
        assert int(headers["Retry-After"]) >= 1
        assert json.loads(raw)["error"]["code"] == "rate_limited"
    finally:
        srv.stop()


def test_behind_a_trusted_proxy_the_ticket_limit_is_per_forwarded_client(mini_built, tmp_path):
    """Behind nginx every request comes from the proxy: with --trusted-proxy, each tourist
    named by X-Forwarded-For has their own budget; without it, the header is ignored (a
    client cannot forge its way past the limit)."""
    root, built = mini_built
    srv = LiveServer(private_data(built, tmp_path), root, "--tickets-per-minute", "3",
                     "--trusted-proxy", "127.0.0.1/32")
    try:
        event = srv.create_event()
        url = f"/v1/events/{event['id']}/tickets"

        def ticket(forwarded: str) -> int:
            return srv.call("POST", url, {}, {"X-Forwarded-For": forwarded})[0]

        assert [ticket("198.51.100.7") for _ in range(4)] == [201, 201, 201, 429]
        assert ticket("198.51.100.8") == 201  # another tourist behind the same proxy
        # The client's own claim left of the proxy's entry is not believed.
        assert ticket("203.0.113.9, 198.51.100.7") == 429
    finally:
        srv.stop()
    srv = LiveServer(private_data(built, tmp_path / "untrusted"), root,
                     "--tickets-per-minute", "3")
    try:
        event = srv.create_event()
        url = f"/v1/events/{event['id']}/tickets"
        codes = [srv.call("POST", url, {}, {"X-Forwarded-For": f"198.51.100.{i}"})[0]
                 for i in range(4)]
        assert codes == [201, 201, 201, 429]  # forged headers do not help
    finally:
        srv.stop()


def test_several_workers_without_a_broker_say_what_is_missing(mini_built, tmp_path):
    root, built = mini_built
    srv = LiveServer(private_data(built, tmp_path), root, "--workers", "2")
    try:
        got, _, raw = srv.call("POST", "/v1/events", {"title": "t", "tour": "mini",
                                                      "starts_at": rfc3339(60)},
                               {"Authorization": f"Bearer {srv.key}"})
        assert got == 503
        error = json.loads(raw)["error"]
        assert error["code"] == "live_unavailable" and "--broker redis://" in error["message"]
        assert srv.call("GET", "/v1/tours/mini")[0] == 200  # the rest still serves
    finally:
        srv.stop()


async def test_hosts_see_the_roster_with_clock_sync_quality(server):
    event = server.create_event()
    host = await server.host(event)
    phone = await server.attendee(event["id"], name="Lan")
    await phone.sync_clock(4)  # also reports its sync to the server
    viewer_ticket = server.ticket(event["id"], role="viewer")["ticket"]
    viewer = await LiveClient.connect(server.base, event["id"], viewer_ticket)
    roster = await host.next("roster", 5)
    while len(roster["attendees"]) < 2 or roster["attendees"][0]["delay_ms"] is None:
        roster = await host.next("roster", 5)
    lan = next(a for a in roster["attendees"] if a["name"] == "Lan")
    assert lan["id"] == phone.welcome["you"]["id"] and lan["role"] == "attendee"
    assert lan["delay_ms"] >= 0 and lan["muted"] is False and roster["count"] == 3
    assert {a["role"] for a in roster["attendees"]} == {"attendee", "viewer"}  # no host
    assert await quiet(phone, "roster", 1.5)  # only hosts get it
    for client in (host, phone, viewer):
        await client.close()
