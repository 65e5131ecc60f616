"""Token buckets: one per live socket (its message rate) and one per client address (its
ticket requests). Addresses live in memory only, never logged or stored."""

from __future__ import annotations

import time
from collections import OrderedDict

from tourserver.errors import TooManyRequests


class TokenBucket:
    __slots__ = ("capacity", "rate", "tokens", "stamp")

    def __init__(self, capacity: float, rate: float):
        self.capacity, self.rate = capacity, rate
        self.tokens, self.stamp = capacity, time.monotonic()

    def take(self, cost: float = 1.0) -> bool:
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= cost:
            self.tokens -= cost
            return True
        return False

    def seconds_to_next(self) -> float:
        return max(0.0, (1.0 - self.tokens) / self.rate)


class AddressLimiter:
    """A token bucket per client address, bounded to the `max_addresses` most recent."""

    def __init__(self, per_minute: int, max_addresses: int = 100_000):
        self.per_minute = per_minute
        self.max = max_addresses
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def check(self, address: str) -> None:
        bucket = self._buckets.pop(address, None) or TokenBucket(self.per_minute,
                                                                 self.per_minute / 60.0)
        self._buckets[address] = bucket  # most recent last
        while len(self._buckets) > self.max:
            self._buckets.popitem(last=False)
        if not bucket.take():
            raise TooManyRequests(f"too many tickets from this address; the limit is "
                                  f"{self.per_minute} a minute",
                                  retry_after_s=max(1, round(bucket.seconds_to_next())))
