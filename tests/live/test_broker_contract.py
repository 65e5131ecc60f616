"""The broker contract (tourserver/live/broker.py) on both brokers: LocalBroker on SQLite and
RedisBroker on a real redis-server started for this module."""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import orjson
import pytest
import redis
import redis.asyncio as aioredis
from live_support import RedisServer, free_port
from support import require

from tourserver.errors import TourError
from tourserver.live.broker import Broker, with_seq
from tourserver.live.events import Event, new_event_id
from tourserver.live.local_broker import LocalBroker
from tourserver.live.redis_broker import RedisBroker, redact_url

MakeBroker = Callable[[], Awaitable[Broker]]


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A throwaway redis-server: no persistence, its own directory and port."""
    require(shutil.which("redis-server") is not None, "redis-server")
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    yield server.url
    server.stop()


@pytest.fixture(params=["local", "redis"])
async def make_broker(request: pytest.FixtureRequest,
                      tmp_path: Path) -> AsyncIterator[MakeBroker]:
    """Makes started brokers of one kind on one store: a second one is a restart (LocalBroker)
    or another process (RedisBroker). Each test starts from an empty store."""
    url = None
    if request.param == "redis":
        url = request.getfixturevalue("redis_url")
        with redis.Redis.from_url(url) as client:
            client.flushall()
    made: list[Broker] = []

    async def make() -> Broker:
        broker: Broker = LocalBroker(tmp_path / "data") if url is None else RedisBroker(url)
        await broker.start()
        made.append(broker)
        return broker

    yield make
    for broker in made:
        await broker.close()


@pytest.fixture()
async def broker(make_broker: MakeBroker) -> Broker:
    return await make_broker()


@pytest.fixture()
async def redis_client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    await client.flushall()
    yield client
    await client.aclose()


class Received:
    """A subscriber that records what it is given."""

    def __init__(self) -> None:
        self.durable: list[tuple[int, bytes]] = []
        self.ephemeral: list[tuple[str, bytes]] = []

    def on_durable(self, seq: int, body: bytes) -> None:
        self.durable.append((seq, body))

    def on_ephemeral(self, process_id: str, payload: bytes) -> None:
        self.ephemeral.append((process_id, payload))

    @property
    def seqs(self) -> list[int]:
        return [seq for seq, _ in self.durable]


async def subscribed(broker: Broker, event_id: str) -> Received:
    got = Received()
    await broker.subscribe(event_id, got.on_durable, got.on_ephemeral)
    return got


async def wait_until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the broker")
        await asyncio.sleep(0.01)


def seqs_of(bodies: list[bytes]) -> list[int]:
    return [orjson.loads(b)["seq"] for b in bodies]


def make_event(tour: str = "mini", starts_at_ms: float = 1_000.0, **kw: object) -> Event:
    fields: dict = dict(id=new_event_id(), title="Night walk", tour=tour, stop=None,
                        starts_at_ms=starts_at_ms, ends_at_ms=None, capacity=None,
                        visibility="public", created_at_ms=500.0, host_key="key_1")
    fields.update(kw)
    return Event(**fields)


# both brokers

async def test_seq_starts_at_one_without_gaps(broker: Broker) -> None:
    ev = new_event_id()
    assert await broker.last_seq(ev) == 0
    messages = [{"type": "cue", "n": n} for n in range(3)]
    assert [await broker.append(ev, m) for m in messages] == [1, 2, 3]
    assert await broker.last_seq(ev) == 3
    # the stored bytes are with_seq's, byte for byte
    assert await broker.history(ev) == [with_seq(m, i + 1) for i, m in enumerate(messages)]
    assert await broker.last_seq(new_event_id()) == 0  # events have their own sequences


async def test_concurrent_appends_are_gap_free_and_received_in_order(broker: Broker) -> None:
    ev = new_event_id()
    got = await subscribed(broker, ev)
    seqs = await asyncio.gather(*(broker.append(ev, {"type": "cue", "task": t})
                                  for t in range(200)))
    assert sorted(seqs) == list(range(1, 201))
    await wait_until(lambda: len(got.durable) >= 200)
    await asyncio.sleep(0.05)  # nothing more arrives
    assert got.seqs == list(range(1, 201))
    assert [body for _, body in got.durable] == await broker.history(ev)
    # each task's message was stored under the seq its append returned
    by_seq = {orjson.loads(b)["seq"]: orjson.loads(b)["task"] for _, b in got.durable}
    assert {by_seq[s] for s in seqs} == set(range(200))
    assert all(by_seq[s] == t for t, s in enumerate(seqs))


async def test_append_many_is_one_ordered_batch(broker: Broker) -> None:
    ev = new_event_id()
    got = await subscribed(broker, ev)
    await broker.append(ev, {"type": "chat", "n": -1})
    seqs = await broker.append_many(ev, [{"type": "cue", "n": n} for n in range(300)])
    assert seqs == list(range(2, 302))
    await wait_until(lambda: len(got.durable) >= 301)
    assert got.seqs == list(range(1, 302))
    assert [orjson.loads(b)["n"] for b in await broker.history(ev)] == list(range(-1, 300))


async def test_history_after_and_limit(broker: Broker) -> None:
    ev = new_event_id()
    for n in range(10):
        await broker.append(ev, {"n": n})
    assert seqs_of(await broker.history(ev)) == list(range(1, 11))
    assert seqs_of(await broker.history(ev, 4)) == list(range(5, 11))
    assert seqs_of(await broker.history(ev, 4, limit=3)) == [5, 6, 7]
    assert seqs_of(await broker.history(ev, 9, limit=5)) == [10]
    assert await broker.history(ev, 10) == []
    assert await broker.history(new_event_id()) == []


async def test_events_roundtrip(broker: Broker) -> None:
    late = make_event(tour="mini", starts_at_ms=3_000.0, capacity=50, stop="mini-a")
    early = make_event(tour="other", starts_at_ms=1_000.0, ends_at_ms=9_000.0)
    tie = make_event(tour="mini", starts_at_ms=3_000.0, visibility="ticketed")
    for event in (late, early, tie):
        await broker.put_event(event)
    assert await broker.get_event(late.id) == late
    assert await broker.get_event(early.id) == early
    assert await broker.get_event("ev_missing") is None
    ordered = sorted([late, tie], key=lambda e: e.id)  # same start: by id
    assert await broker.list_events() == [early, *ordered]
    assert await broker.list_events("mini") == ordered
    assert await broker.list_events("other") == [early]
    assert await broker.list_events("nowhere") == []
    # a put replaces the record, and a changed tour moves it between the tour lists
    ended = early.ended(5_000.0)
    await broker.put_event(ended)
    assert await broker.get_event(early.id) == ended
    moved = make_event(id=tie.id, tour="other", starts_at_ms=500.0)
    await broker.put_event(moved)
    assert await broker.list_events("mini") == [late]
    assert await broker.list_events("other") == [moved, ended]
    assert await broker.list_events() == [moved, ended, late]


async def test_ephemeral_reaches_subscriber_and_is_not_stored(broker: Broker) -> None:
    ev = new_event_id()
    got = await subscribed(broker, ev)
    await broker.publish_ephemeral(ev, b'{"count":3}')
    await broker.publish_ephemeral(ev, b"line one\nline two")  # newlines in payloads survive
    await wait_until(lambda: len(got.ephemeral) >= 2)
    assert got.ephemeral == [(broker.process_id, b'{"count":3}'),
                             (broker.process_id, b"line one\nline two")]
    assert got.durable == []
    assert await broker.history(ev) == []
    assert await broker.last_seq(ev) == 0


async def test_unsubscribe_stops_delivery(broker: Broker) -> None:
    ev = new_event_id()
    got = await subscribed(broker, ev)
    await broker.append(ev, {"n": 1})
    await wait_until(lambda: got.seqs == [1])
    await broker.unsubscribe(ev)
    await broker.append(ev, {"n": 2})
    await broker.publish_ephemeral(ev, b"{}")
    await asyncio.sleep(0.1)
    assert got.seqs == [1] and got.ephemeral == []
    assert seqs_of(await broker.history(ev)) == [1, 2]


async def test_restart_continues_the_sequence(make_broker: MakeBroker) -> None:
    first = await make_broker()
    ev = new_event_id()
    event = make_event()
    await first.put_event(event)
    assert [await first.append(ev, {"n": n}) for n in range(2)] == [1, 2]
    await first.close()
    second = await make_broker()  # the same data directory, or the same Redis
    assert await second.last_seq(ev) == 2
    assert await second.append(ev, {"n": 2}) == 3
    assert await second.history(ev) == [with_seq({"n": n}, n + 1) for n in range(3)]
    assert await second.get_event(event.id) == event


# RedisBroker only

async def test_two_processes_share_one_sequence(redis_url: str,
                                                redis_client: aioredis.Redis) -> None:
    a, b = RedisBroker(redis_url), RedisBroker(redis_url)  # as two server processes would
    await a.start()
    await b.start()
    try:
        assert a.process_id != b.process_id
        ev = new_event_id()
        got_a, got_b = await subscribed(a, ev), await subscribed(b, ev)
        seqs = await asyncio.gather(*((a if i % 2 else b).append(ev, {"from": i % 2, "i": i})
                                      for i in range(200)))
        assert sorted(seqs) == list(range(1, 201))
        await wait_until(lambda: len(got_a.durable) >= 200 and len(got_b.durable) >= 200)
        await asyncio.sleep(0.05)
        assert got_a.seqs == list(range(1, 201))
        assert got_a.durable == got_b.durable
        assert [body for _, body in got_a.durable] == await b.history(ev)
        # ephemeral messages cross processes, naming their sender
        await a.publish_ephemeral(ev, b"hi")
        await wait_until(lambda: got_b.ephemeral != [])
        assert got_b.ephemeral == [(a.process_id, b"hi")]
    finally:
        await a.close()
        await b.close()


async def test_unreachable_redis_is_a_broker_unavailable_error() -> None:
    url = f"redis://:s3cret-pw@127.0.0.1:{free_port()}/0"
    broker = RedisBroker(url)
    with pytest.raises(TourError) as caught:
        await broker.start()
    assert caught.value.code == "broker_unavailable" and caught.value.status == 503
    assert caught.value.message.startswith(f"cannot reach Redis at {redact_url(url)}: ")
    assert "s3cret-pw" not in caught.value.message
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    await broker.close()  # harmless after a failed start
    with pytest.raises(TourError) as caught:
        await RedisBroker("http://example.invalid/").start()
    assert caught.value.code == "broker_unavailable"


def test_redact_url() -> None:
    assert redact_url("redis://:pw@h:6379/0") == "redis://h:6379/0"
    assert redact_url("redis://u:pw@h/1") == "redis://u@h/1"
    assert redact_url("unix:///run/r.sock?db=2&password=pw") == "unix:///run/r.sock?db=2"
    assert redact_url("redis://h") == "redis://h"


async def test_pubsub_connection_killed_nothing_is_lost(
        redis_url: str, redis_client: aioredis.Redis,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="tourserver.live")
    broker = RedisBroker(redis_url)
    await broker.start()
    try:
        ev = new_event_id()
        got = await subscribed(broker, ev)
        for n in range(3):
            await broker.append(ev, {"n": n})
        await wait_until(lambda: len(got.durable) >= 3)
        killed = await redis_client.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
        assert killed == 1
        # Appended at once: some are published while no connection is subscribed.
        for n in range(3, 23):
            await broker.append(ev, {"n": n})
        await wait_until(lambda: len(got.durable) >= 23)
        await asyncio.sleep(0.05)
        assert got.seqs == list(range(1, 24))
        assert [body for _, body in got.durable] == await broker.history(ev)
        assert "re-established" in caplog.text
        # and the new connection carries messages as before
        await broker.append(ev, {"n": 23})
        await wait_until(lambda: len(got.durable) >= 24)
        assert got.seqs == list(range(1, 25))
    finally:
        await broker.close()


async def test_gap_is_repaired_from_the_log(redis_url: str,
                                            redis_client: aioredis.Redis) -> None:
    """A message stored but never published (as if its PUBLISH were lost) is delivered
    before the next one."""
    broker = RedisBroker(redis_url)
    await broker.start()
    try:
        ev = new_event_id()
        got = await subscribed(broker, ev)
        assert await broker.append(ev, {"n": 1}) == 1
        await redis_client.incr(f"ts:seq:{ev}")
        await redis_client.xadd(f"ts:log:{ev}", {"body": with_seq({"n": 2}, 2)}, id="2-0")
        assert await broker.append(ev, {"n": 3}) == 3
        await wait_until(lambda: len(got.durable) >= 3)
        assert got.durable == [(n, with_seq({"n": n}, n)) for n in (1, 2, 3)]
    finally:
        await broker.close()


async def test_failing_handler_does_not_stop_the_reader(
        redis_url: str, redis_client: aioredis.Redis,
        caplog: pytest.LogCaptureFixture) -> None:
    broker = RedisBroker(redis_url)
    await broker.start()
    try:
        ev = new_event_id()
        seen: list[int] = []

        def flaky(seq: int, body: bytes) -> None:
            seen.append(seq)
            if seq == 2:
                raise ValueError("handler bug")

        def bad_ephemeral(process_id: str, payload: bytes) -> None:
            raise ValueError("handler bug")

        await broker.subscribe(ev, flaky, bad_ephemeral)
        await broker.publish_ephemeral(ev, b"x")
        for n in range(4):
            await broker.append(ev, {"n": n})
        await wait_until(lambda: len(seen) >= 4)
        assert seen == [1, 2, 3, 4]  # seq 2 is not given again
        errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
        assert len(errors) == 2 and "failed at seq 2" in errors[1]
    finally:
        await broker.close()


async def test_lost_counter_restarts_from_the_log(redis_url: str,
                                                  redis_client: aioredis.Redis) -> None:
    """If `ts:seq:<id>` is gone but the log is not, seqs continue after the log's last."""
    broker = RedisBroker(redis_url)
    await broker.start()
    try:
        ev = new_event_id()
        for n in range(3):
            await broker.append(ev, {"n": n})
        await redis_client.delete(f"ts:seq:{ev}")
        assert await broker.append(ev, {"n": 3}) == 4
        assert seqs_of(await broker.history(ev)) == [1, 2, 3, 4]
    finally:
        await broker.close()
