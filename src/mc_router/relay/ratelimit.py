"""The accept-loop token bucket (spec §4.1, quirk Q45 kept).

Rate R tokens per second, capacity 2R, starts full. `take()` always succeeds and returns how
long the caller must wait before its token really exists, so excess connections wait in the
kernel backlog instead of being refused. The clock is injected so tests control time.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class TokenBucket:
    __slots__ = ("_clock", "_last", "_tokens", "capacity", "rate")

    def __init__(self, rate: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = max(1.0, float(rate))
        self.capacity = 2.0 * self.rate
        self._clock = clock
        self._tokens = self.capacity
        self._last = clock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.rate)
        self._last = now

    def take(self) -> float:
        """Take one token; return the seconds to wait until it is really available (0 = now)."""
        self._refill()
        self._tokens -= 1.0
        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate

    def give_back(self) -> None:
        """Return a token taken for a client that was refused after all."""
        self._tokens += 1.0

    @property
    def available(self) -> float:
        """Tokens available now (negative while callers are queued), for the metrics gauge."""
        self._refill()
        return self._tokens
