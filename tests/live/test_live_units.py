"""The live layer's pure parts: frames, client-message checks, tokens, the room's fold and
lifecycle, and a socket's bounded send queue."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from support import MINI_TOUR

from tourserver.live import protocol
from tourserver.live.client import best_sample, clock_sample
from tourserver.live.connection import Connection
from tourserver.live.protocol import Close, LiveLimits, ProtocolError
from tourserver.live.room import LifecycleError, check_cue, new_state
from tourserver.live.tokens import Claims, Signer, TokenInvalid, load_secret
from tourserver.model.manifest import parse_tour


@pytest.fixture(scope="module")
def tour():
    return parse_tour(MINI_TOUR, "tour.yaml")


def test_text_frame_header_lengths():
    for n, header in [(5, b"\x81\x05"), (125, b"\x81\x7d"), (126, b"\x81\x7e\x00\x7e"),
                      (70000, b"\x81\x7f" + (70000).to_bytes(8, "big"))]:
        frame = protocol.text_frame(b"x" * n)
        assert frame.startswith(header) and len(frame) == len(header) + n


@pytest.mark.parametrize("raw,code", [
    ("[1, 2]", "bad_message"), ("{}", "bad_message"), ('{"type": 5}', "bad_message"),
    ('{"type": "hack"}', "bad_message"), ("{nope", "bad_message"),
])
def test_parse_refuses(raw, code):
    with pytest.raises(ProtocolError) as exc:
        protocol.parse(raw)
    assert exc.value.code == code


def test_pose_bounds():
    ok = protocol.pose({"type": "presence", "pose": {"position": [1, 2, 3],
                                                     "orientation": [0, 0, 0.7071, 0.7071]}})
    assert ok["position"] == [1, 2, 3]
    for pose in [{"position": [29.5, 106.5, 1e7], "orientation": [0, 0, 0, 1]},
                 {"position": [0, 0, 0], "orientation": [0, 0, 0, 3]},
                 {"position": [0, 0], "orientation": [0, 0, 0, 1]},
                 {"position": [0, 0, float("nan")], "orientation": [0, 0, 0, 1]},
                 {"position": [True, 0, 0], "orientation": [0, 0, 0, 1]}]:
        with pytest.raises(ProtocolError):
            protocol.pose({"type": "presence", "pose": pose})


def _secret_of(data_dir: str) -> bytes:
    return load_secret(Path(data_dir))


def test_workers_starting_together_agree_on_one_secret(tmp_path, monkeypatch):
    # `serve --workers N` starts N processes on a fresh data directory at once: each must
    # get the one secret, whole (a worker once read the file another had created but not
    # yet written, and exited).
    import multiprocessing

    monkeypatch.delenv("TOURSERVER_SECRET", raising=False)
    context = multiprocessing.get_context("fork")
    with context.Pool(8) as pool:
        for attempt in range(20):
            folder = tmp_path / f"data-{attempt}"
            secrets_read = pool.map(_secret_of, [str(folder)] * 8)
            assert len(set(secrets_read)) == 1 and len(secrets_read[0]) >= 32
            assert (folder / "live-secret").stat().st_mode & 0o777 == 0o600
            assert [p.name for p in folder.iterdir()] == ["live-secret"]  # no leftovers


def test_tokens(tmp_path, monkeypatch):
    monkeypatch.delenv("TOURSERVER_SECRET", raising=False)
    secret = load_secret(tmp_path)
    assert (tmp_path / "live-secret").stat().st_mode & 0o777 == 0o600
    assert load_secret(tmp_path) == secret  # made once, then read
    signer = Signer(secret)
    token = signer.sign(Claims("ev_1", "attendee", "a-1", 2e12, "Mei"))
    assert all(c.isalnum() or c in "-_." for c in token)  # URL-safe
    claims = signer.verify(token, "ev_1", 1e12)
    assert (claims.role, claims.subject, claims.name) == ("attendee", "a-1", "Mei")
    with pytest.raises(TokenInvalid, match="another event"):
        signer.verify(token, "ev_2", 1e12)
    with pytest.raises(TokenInvalid) as expired:
        signer.verify(token, "ev_1", 3e12)
    assert expired.value.expired
    body, mac = token.split(".")
    forged = Signer(b"another secret").sign(Claims("ev_1", "host", "h", 2e12))
    for bad in [body + "." + mac[:-2] + "AA", forged.split(".")[0] + "." + mac, "x" * 2000,
                "a.b.c", "", "%%%.%%%"]:
        with pytest.raises(TokenInvalid):
            signer.verify(bad, "ev_1", 1e12)
    monkeypatch.setenv("TOURSERVER_SECRET", "shared-by-every-node-0123")
    assert load_secret(tmp_path) == b"shared-by-every-node-0123"


def test_clock_sample_math():
    # Server 100 ms ahead; 10 ms each way; server holds it 2 ms.
    sample = clock_sample(t0=1000, t1=1110, t2=1112, t3=1022)
    assert sample.offset_ms == pytest.approx(100) and sample.delay_ms == pytest.approx(20)
    noisy = clock_sample(t0=1000, t1=1150, t2=1152, t3=1070)  # queued on the way out
    assert best_sample([noisy, sample]) is sample


def test_room_fold_and_lifecycle(tour):
    state = new_state("ev", tour, starts_at_ms=10_000, stop=None)
    assert state.phase == "scheduled" and state.stop == "mini-a"
    state.advance(5_000)
    assert state.phase == "scheduled"
    state.apply({"seq": 1, "type": "cue", "at": 20_000, "action": "stop",
                 "params": {"stop": "mini-b"}})
    assert state.phase == "live"  # the host's first cue starts it
    state.apply({"seq": 2, "type": "cue", "at": 15_000, "action": "lights",
                 "params": {"color": "#112233"}})
    state.apply({"seq": 2, "type": "chat", "text": "again"})  # seen already: ignored
    assert state.chats == 0
    snap = state.snapshot(16_000, present=3)
    assert snap["lights"]["color"] == "#112233" and snap["stop"] == "mini-a"
    assert [c["seq"] for c in snap["scheduled"]] == [1]
    assert state.snapshot(21_000, 3)["stop"] == "mini-b"
    state.apply({"seq": 3, "type": "moderate", "action": "mute", "target": "a-1"})
    state.apply({"seq": 4, "type": "moderate", "action": "kick", "target": "a-2"})
    assert state.muted == {"a-1"} and state.kicked == {"a-2"}
    state.apply({"seq": 5, "type": "end", "ts": 30_000})
    assert state.phase == "ended"
    with pytest.raises(LifecycleError):
        state.transition("live")


def test_check_cue(tour):
    now = 1_000_000.0
    body = check_cue({"type": "cue", "at": now + 10, "action": "stop",
                      "params": {"stop": "mini-a"}, "ref": "x"}, tour, now, 60_000)
    assert body == {"type": "cue", "at": now + 10, "action": "stop",
                    "params": {"stop": "mini-a", "scene": "mini-a-scene"}, "ref": "x"}
    # A stop with no scenes shows none (the previous scene does not linger).
    assert check_cue({"type": "cue", "at": now, "action": "stop",
                      "params": {"stop": "mini-b"}}, tour, now, 60_000)["params"] == {
        "stop": "mini-b", "scene": None}
    for msg, code in [
        ({"at": now - 1, "action": "end"}, "cue_time"),
        ({"at": now + 61_000, "action": "end"}, "cue_time"),
        ({"at": now, "action": "lights", "params": {"intensity": 2}}, "bad_field"),
        ({"at": now, "action": "lights", "params": {}}, "bad_field"),
        ({"at": now, "action": "lights", "params": {"pattern": "disco"}}, "bad_field"),
        ({"at": now, "action": "scene", "params": {"scene": "mini-b-scene"}},
         "unknown_target"),
        ({"at": now, "action": "stop", "params": "mini-a"}, "bad_field"),
        ({"at": now, "action": "scene", "params": {"scene": []}}, "bad_field"),
        ({"at": now, "action": "stop", "params": {"stop": {}}}, "bad_field"),
        ({"at": now, "action": "narration", "params": {"stop": "mini-a", "lang": []}},
         "bad_field"),
        ({"at": now, "action": "end", "ref": True}, "bad_field"),
        ({"at": now, "action": "end", "ref": 1.5}, "bad_field"),
    ]:
        with pytest.raises(ProtocolError) as exc:
            check_cue({"type": "cue", **msg}, tour, now, 60_000)
        assert exc.value.code == code, msg


class FakeTransport:
    def __init__(self):
        self.buffered = 0
        self.written: list[bytes] = []
        self.aborted = False

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def is_closing(self) -> bool:
        return self.aborted

    def abort(self) -> None:
        self.aborted = True


class FakeSocket:
    def __init__(self):
        self.closed_with: int | None = None

    async def close(self, code: int, message: bytes) -> bool:
        self.closed_with = code
        return True


async def test_send_queue_drops_presence_first_then_closes_slow_consumers():
    limits = LiveLimits(send_queue_bytes=1000, drop_ephemeral_bytes=300)
    transport, ws = FakeTransport(), FakeSocket()
    conn = Connection(ws, transport, "attendee", "a-1", "", limits)  # type: ignore[arg-type]
    conn.ready = True
    conn.send_durable(1, b"d1")
    conn.send_ephemeral(b"p1")
    transport.buffered = 400  # the phone has stopped reading
    conn.send_ephemeral(b"p2")  # dropped
    conn.send_durable(2, b"d2")  # still queued
    conn.send_durable(2, b"d2")  # a duplicate seq is never sent twice
    assert transport.written == [b"d1", b"p1", b"d2"]
    transport.buffered = 999
    conn.send_durable(3, b"d3")
    await asyncio.sleep(0)
    await conn.close_task
    assert ws.closed_with == Close.SLOW_CONSUMER and b"d3" not in transport.written


def test_a_burst_is_one_write_and_never_repeats_what_was_sent():
    transport = FakeTransport()
    conn = Connection(FakeSocket(), transport, "attendee", "a", "",  # type: ignore[arg-type]
                      LiveLimits())
    conn.ready = True
    burst = [(1, b"a"), (2, b"b"), (3, b"c")]
    conn.send_batch(burst, b"abc")
    conn.send_batch(burst, b"abc")  # the same frames again: nothing
    conn.send_batch([(3, b"c"), (4, b"d")], b"cd")  # seq 3 went out already: only 4
    assert transport.written == [b"abc", b"d"]


async def test_catching_up_queues_live_messages_and_sends_only_newer():
    transport = FakeTransport()
    conn = Connection(FakeSocket(), transport, "attendee", "a", "",  # type: ignore[arg-type]
                      LiveLimits())
    conn.sent_seq = 5  # the welcome said seq 5
    conn.send_durable(5, b"five")  # arrived while catching up, already covered
    conn.send_durable(6, b"six")
    conn.send_batch([(6, b"six")], b"six")  # the room's write skips a socket catching up
    assert transport.written == []
    conn.go_live()
    assert transport.written == [b"six"]
