"""Token endpoint throttling: a request rate per source address, and a temporary lock-out
per client id and per source address after repeated wrong secrets.

While a key is locked out every request for it is answered 429 with `Retry-After`, the
right secret included (so guessing cannot go on at full speed and succeed at once); the
secret is then not even hashed. A lock-out doubles with each repetition up to a ceiling and
is forgotten after a success. Memory is bounded: the least recently seen keys are dropped.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ThrottleSettings:
    rate_per_s: float = 5.0  # token requests per second and source address, sustained
    burst: int = 20  # ... and in a burst
    client_failures: int = 5  # wrong secrets in a row before a client id is locked out
    address_failures: int = 20  # ... before a source address is (many ids behind one NAT)
    lockout_s: float = 60.0  # the first lock-out; each further one doubles
    lockout_max_s: float = 900.0


@dataclass(slots=True)
class _Failures:
    count: int = 0
    lockouts: int = 0
    locked_until: float = 0.0


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float


class _Lru[V]:
    """A dict that forgets its least recently used keys beyond `size`."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: OrderedDict[str, V] = OrderedDict()

    def get(self, key: str) -> V | None:
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def put(self, key: str, value: V) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self._size:
            self._items.popitem(last=False)

    def pop(self, key: str) -> None:
        self._items.pop(key, None)


class TokenThrottle:
    def __init__(
        self,
        settings: ThrottleSettings,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 100_000,
    ) -> None:
        self._s = settings
        self._clock = clock
        self._failures: _Lru[_Failures] = _Lru(max_keys)
        self._buckets: _Lru[_Bucket] = _Lru(max_keys)

    def admit(self, client_id: str, address: str) -> int | None:
        """None when the request may proceed; else the seconds to wait (for Retry-After)."""
        now = self._clock()
        waits = [
            self._locked(f"client:{client_id}", now),
            self._locked(f"address:{address}", now),
            self._rate(address, now),
        ]
        longest = max(waits)
        return math.ceil(longest) if longest > 0 else None

    def failed(self, client_id: str, address: str) -> None:
        now = self._clock()
        self._count(f"client:{client_id}", self._s.client_failures, now)
        self._count(f"address:{address}", self._s.address_failures, now)

    def succeeded(self, client_id: str, address: str) -> None:
        self._failures.pop(f"client:{client_id}")
        entry = self._failures.get(f"address:{address}")
        if entry is not None:
            entry.count = 0

    def _locked(self, key: str, now: float) -> float:
        entry = self._failures.get(key)
        return max(0.0, entry.locked_until - now) if entry is not None else 0.0

    def _count(self, key: str, limit: int, now: float) -> None:
        entry = self._failures.get(key) or _Failures()
        entry.count += 1
        if entry.count >= limit:
            period = min(self._s.lockout_max_s, self._s.lockout_s * 2**entry.lockouts)
            entry.locked_until = now + period
            entry.lockouts += 1
            entry.count = 0
        self._failures.put(key, entry)

    def _rate(self, address: str, now: float) -> float:
        bucket = self._buckets.get(address) or _Bucket(float(self._s.burst), now)
        refill = (now - bucket.at) * self._s.rate_per_s
        bucket.tokens = min(float(self._s.burst), bucket.tokens + refill)
        bucket.at = now
        self._buckets.put(address, bucket)
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self._s.rate_per_s
