"""The broker: where events and their durable logs live, and how messages reach every
process that has listeners. Two implementations share this contract:

- `LocalBroker` (local_broker.py): one process, SQLite in the data directory (default);
- `RedisBroker` (redis_broker.py): any number of processes and machines on one Redis.

Contract, which tests/live/test_broker_contract.py checks on both:
- `append` gives the message the next sequence number of its event (1, 2, 3, ... with no
  gap, unique across every process), stores it, and only then publishes it;
- every subscriber of an event, in every process, receives the durable messages of that
  event once each, in sequence order;
- `history(event, after)` returns the stored messages with seq > after, in order;
- ephemeral messages (presence, reactions) are published to every process and never stored.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

import orjson

from tourserver.live.events import Event

# (seq, the message's JSON bytes with "seq" in it)
DurableHandler = Callable[[int, bytes], None]
# (the sending process's id, the payload bytes)
EphemeralHandler = Callable[[str, bytes], None]


def with_seq(message: dict, seq: int) -> bytes:
    """The stored and sent bytes of a durable message: `seq` first, then its fields."""
    rest = orjson.dumps(message)[1:]
    return b'{"seq":%d%s' % (seq, rest if rest == b"}" else b"," + rest)


class Broker(ABC):
    """One per process. `process_id` names this process in ephemeral messages."""

    process_id: str

    @abstractmethod
    async def start(self) -> None: ...

    @abstractmethod
    async def close(self) -> None: ...

    # events
    @abstractmethod
    async def put_event(self, event: Event) -> None: ...

    @abstractmethod
    async def get_event(self, event_id: str) -> Event | None: ...

    @abstractmethod
    async def list_events(self, tour: str | None = None) -> list[Event]: ...

    # the durable log
    @abstractmethod
    async def append(self, event_id: str, message: dict) -> int:
        """Store `message` under the event's next seq, publish it, return the seq."""

    async def append_many(self, event_id: str, messages: list[dict]) -> list[int]:
        """Append several messages in order, as one batch where the broker can (one
        transaction, one round trip); returns their seqs."""
        return [await self.append(event_id, m) for m in messages]

    @abstractmethod
    async def history(self, event_id: str, after_seq: int = 0,
                      limit: int | None = None) -> list[bytes]: ...

    @abstractmethod
    async def last_seq(self, event_id: str) -> int: ...

    # fan-out
    @abstractmethod
    async def subscribe(self, event_id: str, on_durable: DurableHandler,
                        on_ephemeral: EphemeralHandler) -> None:
        """Start receiving the event's messages in this process (one subscription per
        event per process: the hub multiplexes its connections on it)."""

    @abstractmethod
    async def unsubscribe(self, event_id: str) -> None: ...

    @abstractmethod
    async def publish_ephemeral(self, event_id: str, payload: bytes) -> None: ...
