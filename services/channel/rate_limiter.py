"""An async token bucket: at most `per_second` sends, and a pause a channel's 429 asks for.

Per process: each Functions host instance has its own bucket, so N instances send up to
N x `per_second` in all. The clock and the sleep are injected so tests run without waiting.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

Sleep = Callable[[float], Awaitable[None]]
# Waits shorter than this count as none: float rounding of a clock's large values (a wall clock's
# ulp is about 2e-7 s) must not leave a remainder too small to ever sleep away.
_EPSILON = 1e-6


class RateLimiter:
    """`await acquire()` before each send. Waiters are served in arrival order (one lock), so a
    burst of messages leaves at the configured rate instead of racing for tokens."""

    def __init__(
        self,
        per_second: float,
        burst: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if not per_second > 0:
            raise ValueError(f"per_second must be positive, not {per_second!r}")
        if burst < 1:
            raise ValueError(f"burst must be at least 1, not {burst!r}")
        self.per_second = per_second
        self._burst = burst
        self._clock = clock
        self._sleep = sleep
        self._tokens = burst
        self._refilled_at = clock()
        self._paused_until = float("-inf")
        self._lock = asyncio.Lock()

    def pause(self, seconds: float) -> None:
        """Hold every send of this process for `seconds` (a channel's Retry-After); never shortens a pause."""
        self._paused_until = max(self._paused_until, self._clock() + max(0.0, seconds))

    def paused_for(self) -> float:
        """Seconds left of the current pause (0 when not paused)."""
        return max(0.0, self._paused_until - self._clock())

    async def acquire(self, max_pause: float | None = None) -> bool:
        """Wait for this send's turn; True when it may go. With `max_pause`, give up (False, at once
        or as soon as it is known) instead of waiting out a pause longer than that: the caller then
        waits elsewhere (on the queue) rather than in a function invocation."""
        async with self._lock:
            while True:
                now = self._clock()
                if max_pause is not None and self._paused_until - now > max_pause:
                    return False
                self._refill(now)
                wait = max(self._paused_until - now, (1.0 - self._tokens) / self.per_second)
                if wait <= _EPSILON:
                    self._tokens = max(0.0, self._tokens - 1.0)
                    return True
                await self._sleep(wait)  # then look again: a 429 meanwhile may have extended the pause

    def _refill(self, now: float) -> None:
        self._tokens = min(self._burst, self._tokens + (now - self._refilled_at) * self.per_second)
        self._refilled_at = now
