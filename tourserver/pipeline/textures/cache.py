"""Encoded textures by content, shared by the chains of one run.

Passed in explicitly (`TextureEncode(cache=...)`; `pipeline.session.Session` owns one per
run), so two runs never see each other's results and tests need no clearing.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from tourserver.pipeline.textures.search import Encoded


class EncodeCache:
    """Results of `encode_image` by (image bytes' hash, MIME type, role, settings), up to
    `max_bytes` of encoded data, least recently used out first, and those being computed.
    Encoding is deterministic, so a build that makes several tiers of one scene, whose
    images are often the same after resizing, encodes each once (the demo tour: 18
    variants of 6 scenes), and an encode started ahead (`TextureEncode.prepare`) is waited
    for, not repeated."""

    def __init__(self, max_bytes: int = 64 << 20) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[tuple, Encoded | None] = OrderedDict()
        self._pending: dict[tuple, Future] = {}
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: tuple) -> tuple[bool, Encoded | None]:
        """(True, the result) when one is kept under `key`, else (False, None)."""
        with self._lock:
            return self._kept(key)

    def _kept(self, key: tuple) -> tuple[bool, Encoded | None]:
        # Under the lock. A hit is the most recently used from now on.
        if key not in self._items:
            return False, None
        self._items.move_to_end(key)
        return True, self._items[key]

    def submit(self, key: tuple, pool: ThreadPoolExecutor,
               compute: Callable[[], Encoded | None]) -> Future:
        """The result under `key`: kept, being computed, or computed now on `pool`."""
        with self._lock:
            found, value = self._kept(key)
            if found:
                done: Future = Future()
                done.set_result(value)
                return done
            pending = self._pending.get(key)
            if pending is not None and not pending.cancelled():
                return pending

            def computed() -> Encoded | None:
                value = compute()
                self.put(key, value)
                return value
            future = pool.submit(computed)
            self._pending[key] = future
        # Done, failed or cancelled: no longer pending (a failure is not kept).
        future.add_done_callback(lambda _: self._forget(key, future))
        return future

    def _forget(self, key: tuple, future: Future) -> None:
        with self._lock:
            if self._pending.get(key) is future:
                del self._pending[key]

    def put(self, key: tuple, value: Encoded | None) -> None:
        size = len(value.data) if value is not None else 0
        if size > self.max_bytes:
            return
        with self._lock:
            if key in self._items:
                return
            self._items[key] = value
            self._bytes += size
            while self._bytes > self.max_bytes:
                _, old = self._items.popitem(last=False)
                self._bytes -= len(old.data) if old is not None else 0

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0
