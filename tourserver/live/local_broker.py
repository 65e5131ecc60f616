"""The default broker: one process, events and logs in SQLite in the data directory.

Every SQLite call runs on one worker thread (the event loop never touches the disk), in
the order it was asked for. Appends are group-committed: all appends waiting when the
thread gets to them go in one transaction, so a host's burst of several hundred cues is
one commit, not several hundred. A message is published only after its commit.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import orjson

from tourserver.live.broker import Broker, DurableHandler, EphemeralHandler, with_seq
from tourserver.live.events import Event

T = TypeVar("T")
log = logging.getLogger("tourserver.live")
DB_FILE = "live.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (id TEXT PRIMARY KEY, tour TEXT NOT NULL,
                                   record BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS log (event TEXT NOT NULL, seq INTEGER NOT NULL, body BLOB NOT NULL,
                                PRIMARY KEY (event, seq)) WITHOUT ROWID;
"""


class LocalBroker(Broker):
    def __init__(self, data_dir: Path):
        self.path = data_dir / DB_FILE
        self.process_id = f"p{os.getpid()}"
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="live-sqlite")
        self._db: sqlite3.Connection | None = None
        self._seq: dict[str, int] = {}  # next seq to assign, per event, once loaded
        self._seq_locks: dict[str, asyncio.Lock] = {}
        self._pending: list[tuple[str, int, bytes, asyncio.Future]] = []
        self._pending_lock = threading.Lock()
        self._flush_queued = False
        self._subs: dict[str, tuple[DurableHandler, EphemeralHandler]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    async def _run(self, fn: Callable[..., T], *args: object) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, fn, *args)

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        await self._run(self._open)

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA busy_timeout=5000")
        for attempt in range(50):
            try:
                # Switching to WAL needs a moment alone with the file: another process
                # opening it at the same instant gets "locked" without the busy handler.
                db.execute("PRAGMA journal_mode=WAL")
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or attempt == 49:
                    raise
                time.sleep(0.1)
        db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: a process crash loses nothing
        db.executescript(_SCHEMA)
        os.chmod(self.path, 0o600)
        self._db = db

    async def close(self) -> None:
        if self._db is not None:
            await self._run(self._db.close)
            self._db = None
        self._thread.shutdown(wait=True)

    # events
    async def put_event(self, event: Event) -> None:
        record = orjson.dumps(event.to_record())
        await self._run(self._write, "INSERT OR REPLACE INTO events VALUES (?, ?, ?)",
                        (event.id, event.tour, record))

    def _write(self, sql: str, params: tuple) -> None:
        assert self._db is not None
        with self._db:
            self._db.execute("BEGIN")
            self._db.execute(sql, params)

    def _query(self, sql: str, params: tuple) -> list[tuple]:
        assert self._db is not None
        return self._db.execute(sql, params).fetchall()

    async def get_event(self, event_id: str) -> Event | None:
        rows = await self._run(self._query, "SELECT record FROM events WHERE id = ?",
                               (event_id,))
        return Event.from_record(orjson.loads(rows[0][0])) if rows else None

    async def list_events(self, tour: str | None = None) -> list[Event]:
        if tour is None:
            rows = await self._run(self._query, "SELECT record FROM events", ())
        else:
            rows = await self._run(self._query, "SELECT record FROM events WHERE tour = ?",
                                   (tour,))
        events = [Event.from_record(orjson.loads(r[0])) for r in rows]
        return sorted(events, key=lambda e: (e.starts_at_ms, e.id))

    # the durable log
    async def last_seq(self, event_id: str) -> int:
        return await self._next_seq(event_id) - 1

    async def _next_seq(self, event_id: str) -> int:
        if event_id not in self._seq:
            lock = self._seq_locks.setdefault(event_id, asyncio.Lock())
            async with lock:
                if event_id not in self._seq:
                    rows = await self._run(self._query,
                                           "SELECT MAX(seq) FROM log WHERE event = ?",
                                           (event_id,))
                    self._seq[event_id] = (rows[0][0] or 0) + 1
        return self._seq[event_id]

    async def append(self, event_id: str, message: dict) -> int:
        return (await self.append_many(event_id, [message]))[0]

    async def append_many(self, event_id: str, messages: list[dict]) -> list[int]:
        first = await self._next_seq(event_id)
        self._seq[event_id] = first + len(messages)  # no await between reading and taking
        loop = asyncio.get_running_loop()
        waiting = []
        with self._pending_lock:
            for i, message in enumerate(messages):
                done: asyncio.Future = loop.create_future()
                self._pending.append((event_id, first + i, with_seq(message, first + i), done))
                waiting.append(done)
            queue = not self._flush_queued
            self._flush_queued = True
        if queue:
            self._thread.submit(self._flush)
        await asyncio.gather(*waiting)
        return list(range(first, first + len(messages)))

    def _flush(self) -> None:
        """On the SQLite thread: commit every waiting append at once, then publish them in
        order on the event loop."""
        with self._pending_lock:
            batch, self._pending = self._pending, []
            self._flush_queued = False
        assert self._db is not None and self._loop is not None
        try:
            with self._db:
                self._db.execute("BEGIN")
                self._db.executemany("INSERT INTO log VALUES (?, ?, ?)",
                                     [(e, s, b) for e, s, b, _ in batch])
            error = None
        except sqlite3.Error as exc:
            error = exc
        self._loop.call_soon_threadsafe(self._published, batch, error)

    def _published(self, batch: list, error: Exception | None) -> None:
        for event_id, seq, body, done in batch:
            if error is not None:
                self._seq.pop(event_id, None)  # reload from the database: no gap
                if not done.done():
                    done.set_exception(error)
                continue
            sub = self._subs.get(event_id)
            if sub is not None:
                try:
                    sub[0](seq, body)
                except Exception:  # one bad handler must not leave appends waiting
                    log.exception("a durable-message handler failed")
            if not done.done():
                done.set_result(seq)

    async def history(self, event_id: str, after_seq: int = 0,
                      limit: int | None = None) -> list[bytes]:
        rows = await self._run(
            self._query, "SELECT body FROM log WHERE event = ? AND seq > ? ORDER BY seq "
            "LIMIT ?", (event_id, after_seq, -1 if limit is None else limit))
        return [r[0] for r in rows]

    # fan-out: in one process, subscribers are called directly
    async def subscribe(self, event_id: str, on_durable: DurableHandler,
                        on_ephemeral: EphemeralHandler) -> None:
        self._subs[event_id] = (on_durable, on_ephemeral)

    async def unsubscribe(self, event_id: str) -> None:
        self._subs.pop(event_id, None)

    async def publish_ephemeral(self, event_id: str, payload: bytes) -> None:
        sub = self._subs.get(event_id)
        if sub is not None:
            sub[1](self.process_id, payload)
