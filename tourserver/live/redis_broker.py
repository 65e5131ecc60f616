"""The shared broker: events, logs and fan-out in one Redis, for several processes or hosts.

It uses `redis.asyncio` from redis-py, the official Redis client, maintained by Redis
itself: one dependency for commands, Lua scripts and pub/sub, without a thread per call.

Layout:
- `ts:event:<id>`: an event's record (JSON); `ts:events` and `ts:events:tour:<tour>` are
  sorted sets of event ids scored by starts_at_ms;
- `ts:seq:<id>`: the event's last sequence number; `ts:log:<id>`: a stream of its durable
  messages, with stream ids `<seq>-0`, so history is an XRANGE by seq;
- `ts:ch:<id>:d` and `ts:ch:<id>:e`: pub/sub channels of durable and ephemeral messages.

An append is one Lua script: INCR, XADD, PUBLISH. Redis runs a script alone, so sequence
numbers are unique and gap-free across processes, a message is stored before it is sent,
and the messages of an event are published in seq order. Pub/sub loses what is published
while a connection is down, so each subscription keeps the last seq it delivered and reads
any gap from the stream before delivering further: every subscriber gets every durable
message once, in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from dataclasses import dataclass
from typing import cast
from urllib.parse import parse_qsl, urlencode, urlsplit

import orjson
import redis.asyncio as aioredis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from tourserver.errors import ServiceUnavailable, TourError
from tourserver.live.broker import Broker, DurableHandler, EphemeralHandler
from tourserver.live.events import Event

log = logging.getLogger("tourserver.live")

EVENTS = "ts:events"
SUBSCRIBE_TIMEOUT_S = 10.0
CATCH_UP_PAGE = 1000  # history read per round trip when repairing a gap
CONNECT_TIMEOUT_S = 5.0
COMMAND_TIMEOUT_S = 10.0
MAX_CONNECTIONS = 64  # per process, the pub/sub one included

# KEYS: seq counter, log stream. ARGV: MAXLEN, channel, then each message's JSON without
# its "{" (one or many: a batch is one round trip, numbered in order).
# If the counter is gone but the log is not (an eviction, a partial restore), the log's last
# id restarts it: a seq is never given twice and the XADD never fails half-way through.
_APPEND_LUA = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  local top = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
  if top[1] then
    redis.call('SET', KEYS[1], string.match(top[1][1], '^(%d+)'))
  end
end
local first = 0
for i = 3, #ARGV do
  local seq = redis.call('INCR', KEYS[1])
  if i == 3 then first = seq end
  local body = '{"seq":' .. seq .. ',' .. ARGV[i]
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[1], seq .. '-0', 'body', body)
  redis.call('PUBLISH', ARGV[2], body)
end
return first
"""


def _event_key(event_id: str) -> str:
    return f"ts:event:{event_id}"


def _tour_key(tour: str) -> str:
    return f"ts:events:tour:{tour}"


def _seq_key(event_id: str) -> str:
    return f"ts:seq:{event_id}"


def _log_key(event_id: str) -> str:
    return f"ts:log:{event_id}"


def _durable_channel(event_id: str) -> str:
    return f"ts:ch:{event_id}:d"


def _ephemeral_channel(event_id: str) -> str:
    return f"ts:ch:{event_id}:e"


def body_seq(body: bytes) -> int:
    """The seq of a durable message's bytes, which always start with `{"seq":N,`."""
    return int(body[7:body.index(b",", 7)])


def redact_url(url: str) -> str:
    """The URL without its password (in the userinfo or a `password=` query item)."""
    try:
        parts = urlsplit(url)
        host = parts.netloc.rpartition("@")[2]
        netloc = f"{parts.username}@{host}" if parts.username else host
        query = urlencode([(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
                           if k.lower() != "password"])
    except ValueError:
        return "<unparsable URL>"
    # Not urlunsplit: it turns unix:///path into unix:/path.
    return f"{parts.scheme}://{netloc}{parts.path}" + (f"?{query}" if query else "")


@dataclass
class _Subscription:
    on_durable: DurableHandler
    on_ephemeral: EphemeralHandler
    last: int  # the last seq delivered: later messages must follow it without a gap
    ready: asyncio.Future | None = None  # set when the server confirms the subscription


class RedisBroker(Broker):
    def __init__(self, url: str, *, history_max: int = 100_000):
        self.url = url
        self.history_max = history_max
        self.process_id = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        self._redis: aioredis.Redis | None = None
        self._pubsub: PubSub | None = None
        self._reader: asyncio.Task | None = None
        self._append: AsyncScript | None = None
        self._subs: dict[str, _Subscription] = {}

    def _unavailable(self, exc: BaseException) -> TourError:
        reason = str(exc) or type(exc).__name__
        password = urlsplit(self.url).password if "://" in self.url else None
        if password:
            reason = reason.replace(password, "***")  # error texts may quote the URL
        # A TourError with status 503: the edge renders it as "try again", not as a bug.
        return ServiceUnavailable(f"cannot reach Redis at {redact_url(self.url)}: {reason}",
                                  code="broker_unavailable")

    async def start(self) -> None:
        try:
            # A blocking pool: a burst of appends waits for a free connection instead of
            # failing with "Too many connections" (the plain pool's behaviour at its size).
            # Commands are not retried: an append whose reply was lost may have run, and
            # running it again would store the message twice. The caller sees the error.
            pool = aioredis.BlockingConnectionPool.from_url(
                self.url, max_connections=MAX_CONNECTIONS, timeout=COMMAND_TIMEOUT_S,
                socket_connect_timeout=CONNECT_TIMEOUT_S, socket_timeout=COMMAND_TIMEOUT_S,
                retry=Retry(NoBackoff(), 0))
            client = aioredis.Redis.from_pool(pool)
        except ValueError as exc:  # a malformed URL
            raise self._unavailable(exc) from None
        try:
            await client.ping()
            pubsub = client.pubsub()
            await pubsub.connect()  # the reader reads this connection from the start
        except (RedisError, OSError) as exc:
            await client.aclose()
            raise self._unavailable(exc) from None
        assert pubsub.connection is not None
        # Reads and SUBSCRIBEs can be repeated safely, so on the pub/sub connection a drop is
        # retried (reconnect, re-subscribe, read again) before the reader hears of it.
        pubsub.connection.retry = Retry(ExponentialWithJitterBackoff(base=0.05, cap=2.0), 3)
        # Called after redis-py has re-sent SUBSCRIBE for every channel on a new connection
        # (its own callback was registered first): messages in between are repaired later.
        pubsub.connection.register_connect_callback(self._on_reconnect)
        self._redis, self._pubsub = client, pubsub
        self._append = client.register_script(_APPEND_LUA)
        self._reader = asyncio.get_running_loop().create_task(self._read(),
                                                              name="redis-broker-reader")

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            try:
                await self._reader
            except asyncio.CancelledError:
                pass
            self._reader = None
        for sub in self._subs.values():
            if sub.ready is not None and not sub.ready.done():
                sub.ready.cancel()
        self._subs.clear()
        # Closing the pub/sub connection ends its subscriptions on the server.
        if self._pubsub is not None:
            await self._pubsub.aclose()
            self._pubsub = None
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None

    @property
    def _r(self) -> aioredis.Redis:
        if self._redis is None:
            raise RuntimeError("RedisBroker.start() was not called")
        return self._redis

    # events
    async def put_event(self, event: Event) -> None:
        r = self._r
        old = await r.get(_event_key(event.id))
        # Read outside the transaction: an event is written by its host alone, rarely.
        old_tour = orjson.loads(old)["tour"] if old else None
        # One transaction, so a reader never sees the record without its index entries.
        async with r.pipeline(transaction=True) as pipe:
            pipe.set(_event_key(event.id), orjson.dumps(event.to_record()))
            pipe.zadd(EVENTS, {event.id: event.starts_at_ms})
            if old_tour is not None and old_tour != event.tour:
                pipe.zrem(_tour_key(old_tour), event.id)
            pipe.zadd(_tour_key(event.tour), {event.id: event.starts_at_ms})
            await pipe.execute()

    async def get_event(self, event_id: str) -> Event | None:
        record = await self._r.get(_event_key(event_id))
        return Event.from_record(orjson.loads(record)) if record else None

    async def list_events(self, tour: str | None = None) -> list[Event]:
        r = self._r
        # The client does not decode responses: replies are bytes (redis-py types cannot say so).
        ids = cast(list[bytes], await r.zrange(EVENTS if tour is None else _tour_key(tour), 0, -1))
        if not ids:
            return []
        records = await r.mget([_event_key(i.decode()) for i in ids])
        events = [Event.from_record(orjson.loads(rec)) for rec in records if rec]
        # The set's order is already this for ASCII ids; sorting keeps LocalBroker's exactly.
        return sorted(events, key=lambda e: (e.starts_at_ms, e.id))

    # the durable log
    async def append(self, event_id: str, message: dict) -> int:
        return (await self.append_many(event_id, [message]))[0]

    async def append_many(self, event_id: str, messages: list[dict]) -> list[int]:
        assert self._append is not None, "RedisBroker.start() was not called"
        # The script writes exactly `with_seq(message, seq)`: '{"seq":N,' + each of these.
        rests = [orjson.dumps(m)[1:] for m in messages]
        if any(rest == b"}" for rest in rests):
            raise ValueError("a durable message needs at least one field")
        first = int(await self._append(
            keys=[_seq_key(event_id), _log_key(event_id)],
            args=[self.history_max, _durable_channel(event_id), *rests]))
        return list(range(first, first + len(messages)))

    async def history(self, event_id: str, after_seq: int = 0,
                      limit: int | None = None) -> list[bytes]:
        if limit == 0:
            return []
        # A negative limit is no limit, as in LocalBroker's SQLite LIMIT.
        entries = cast(list[tuple[bytes, dict[bytes, bytes]]], await self._r.xrange(
            _log_key(event_id), min=f"{after_seq + 1}-0", max="+",
            count=limit if limit and limit > 0 else None))
        return [fields[b"body"] for _, fields in entries]

    async def last_seq(self, event_id: str) -> int:
        value = await self._r.get(_seq_key(event_id))
        return int(value) if value else 0

    # fan-out
    async def subscribe(self, event_id: str, on_durable: DurableHandler,
                        on_ephemeral: EphemeralHandler) -> None:
        assert self._pubsub is not None, "RedisBroker.start() was not called"
        sub = self._subs.get(event_id)
        if sub is not None:  # one subscription per event: new handlers replace the old
            sub.on_durable, sub.on_ephemeral = on_durable, on_ephemeral
            if sub.ready is not None:  # a subscribe() of this event still waiting
                await asyncio.shield(sub.ready)
            return
        ready = asyncio.get_running_loop().create_future()
        sub = _Subscription(on_durable, on_ephemeral, 0, ready)
        self._subs[event_id] = sub
        try:
            # Read before SUBSCRIBE: what is appended between the two is caught up from the
            # log when the confirmation arrives, so nothing after this seq is missed.
            sub.last = await self.last_seq(event_id)
            await self._pubsub.subscribe(_durable_channel(event_id),
                                         _ephemeral_channel(event_id))
            # The reader resolves this on the server's confirmation, so a message appended
            # after subscribe() returns is received.
            await asyncio.wait_for(asyncio.shield(ready), SUBSCRIBE_TIMEOUT_S)
        except (RedisError, OSError, TimeoutError) as exc:
            error = self._unavailable(exc)
            self._drop_subscription(event_id, sub, error)
            with contextlib.suppress(RedisError, OSError):  # best effort: it may be down
                await self._pubsub.unsubscribe(_durable_channel(event_id),
                                               _ephemeral_channel(event_id))
            raise error from None
        except asyncio.CancelledError:
            # The channels may stay subscribed; their messages are ignored without a sub.
            self._drop_subscription(event_id, sub, None)
            raise
        finally:
            sub.ready = None

    def _drop_subscription(self, event_id: str, sub: _Subscription,
                           error: Exception | None) -> None:
        """Forget a subscription that failed, waking any subscribe() waiting on it."""
        if self._subs.get(event_id) is sub:
            del self._subs[event_id]
        if sub.ready is not None and not sub.ready.done():
            if error is None:
                sub.ready.cancel()
            else:
                sub.ready.set_exception(error)
                sub.ready.exception()  # retrieved: no "never retrieved" warning if unawaited

    async def unsubscribe(self, event_id: str) -> None:
        if self._subs.pop(event_id, None) is None or self._pubsub is None:
            return
        await self._pubsub.unsubscribe(_durable_channel(event_id),
                                       _ephemeral_channel(event_id))

    async def publish_ephemeral(self, event_id: str, payload: bytes) -> None:
        await self._r.publish(_ephemeral_channel(event_id),
                              self.process_id.encode() + b"\n" + payload)

    # the reader: one task reads the pub/sub connection and calls the handlers in order
    def _on_reconnect(self, connection: object) -> None:
        log.warning("Redis pub/sub connection re-established at %s; resubscribed to %d "
                    "event(s), catching up from their logs", redact_url(self.url),
                    len(self._subs))

    async def _read(self) -> None:
        assert self._pubsub is not None
        pubsub = self._pubsub
        delay = 0.1
        while True:
            try:
                # redis-py retries a dropped connection itself, re-subscribing on the new
                # one; it raises only when the retries are used up.
                message = await pubsub.get_message(timeout=None)
                delay = 0.1
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("Redis pub/sub connection at %s is down (%s); retrying in %.1f s",
                            redact_url(self.url), exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            if message is None:
                continue
            try:
                await self._dispatch(message)
            except asyncio.CancelledError:
                raise
            except Exception:
                # A failed history read while repairing a gap: the next message retries it.
                log.exception("live broker: could not dispatch a Redis message")

    async def _dispatch(self, message: dict) -> None:
        kind = message["type"]
        channel: bytes = message["channel"]
        if not channel.startswith(b"ts:ch:"):
            return
        event_id, durable = channel[6:-2].decode(), channel.endswith(b":d")
        sub = self._subs.get(event_id)
        if sub is None:
            return
        if kind == "message":
            data: bytes = message["data"]
            if durable:
                await self._deliver(event_id, sub, body_seq(data), data)
            else:
                process_id, _, payload = data.partition(b"\n")
                try:
                    sub.on_ephemeral(process_id.decode(), payload)
                except Exception:
                    log.exception("live broker: ephemeral handler of %s failed", event_id)
        elif kind == "subscribe" and not durable:
            # Both channels are subscribed by one command, so on the second's confirmation
            # both are live: read what the log has beyond `last` (an append racing the first
            # subscription, or anything missed while reconnecting), then report ready.
            if sub.ready is None:  # a re-subscription after a reconnect
                stored = await self.last_seq(event_id)
                if stored < sub.last:
                    # Seqs up to sub.last will be given again, and dropped here as repeats.
                    log.error("live broker: Redis has lost %s's log after seq %d (restarted "
                              "without persistence?)", event_id, stored)
            await self._catch_up(event_id, sub)
            if sub.ready is not None and not sub.ready.done():
                sub.ready.set_result(None)

    async def _deliver(self, event_id: str, sub: _Subscription, seq: int, body: bytes) -> None:
        if seq <= sub.last:
            return  # already delivered (by a catch-up)
        if seq > sub.last + 1:
            await self._catch_up(event_id, sub)  # fills the gap; the log has `body` too
            if self._subs.get(event_id) is not sub or seq <= sub.last:
                return
            log.warning("live broker: %s seq %d..%d are gone from the log (history_max); "
                        "delivering from %d", event_id, sub.last + 1, seq - 1, seq)
        self._call(event_id, sub, seq, body)

    async def _catch_up(self, event_id: str, sub: _Subscription) -> None:
        while self._subs.get(event_id) is sub:
            bodies = await self.history(event_id, sub.last, CATCH_UP_PAGE)
            for body in bodies:
                seq = body_seq(body)
                if seq > sub.last:
                    self._call(event_id, sub, seq, body)
            if len(bodies) < CATCH_UP_PAGE:
                return

    def _call(self, event_id: str, sub: _Subscription, seq: int, body: bytes) -> None:
        sub.last = seq  # first: a handler that fails still does not get it twice
        try:
            sub.on_durable(seq, body)
        except Exception:
            log.exception("live broker: durable handler of %s failed at seq %d", event_id, seq)
