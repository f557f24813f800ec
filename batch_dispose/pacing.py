"""When to send: backoff between attempts, the run-wide retry budget, and the rate limit.

Each piece takes its clock, sleep and random source as arguments, so tests never really wait.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

BACKOFF_BASE_S = 0.5
BACKOFF_CAP_S = 20.0
RETRY_AFTER_CAP_S = 60.0
WINDOW_S = 1.05  # the rate window, with 5% headroom for how the server's clock sees arrivals

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


def backoff(attempt: int, rng: random.Random, retry_after: float | None = None) -> float:
    """Seconds to wait before attempt `attempt + 1`: Retry-After if given, else full jitter."""
    if retry_after is not None:
        return min(max(retry_after, 0.0), RETRY_AFTER_CAP_S)
    return rng.uniform(0.0, min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** (attempt - 1)))


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Retry-After as seconds (`120`) or an HTTP date; None when absent or malformed."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - (now or datetime.now(UTC))).total_seconds())


class RetryBudget:
    """A run-wide retry quota shaped like botocore's: retries spend it, first-try successes refill it.

    A server failing a steady minority of requests is ridden through; a server failing everything
    drains the bucket, and the run stops instead of retrying forever.
    """

    CAPACITY = 500
    RETRY_COST = 5
    SUCCESS_REFUND = 1

    def __init__(self, capacity: int = CAPACITY) -> None:
        self.capacity = capacity
        self.level = capacity

    def take(self) -> bool:
        """Pay for one retry; False (and nothing taken) when the bucket cannot pay."""
        if self.level < self.RETRY_COST:
            return False
        self.level -= self.RETRY_COST
        return True

    def refund(self) -> None:
        """A request succeeded at its first try."""
        self.level = min(self.capacity, self.level + self.SUCCESS_REFUND)


class Pacer:
    """At most `rate` request starts in any window of WINDOW_S, slowed down on 429 (AIMD).

    Without a configured rate there is no limit until the server answers 429; then the limit becomes
    half the rate we were sending at, halves again on each further 429, grows back by about one
    request a second per second, and is lifted once it has doubled past where it started.
    """

    def __init__(self, rate: float | None, *, clock: Clock = time.monotonic, sleep: Sleep = asyncio.sleep) -> None:
        self.configured = rate
        self.limit = rate
        self._ceiling = rate
        self._clock = clock
        self._sleep = sleep
        self._starts: deque[float] = deque()
        self._lock = asyncio.Lock()

    async def wait(self) -> None:
        """Return when one more request may start, and count it as started."""
        async with self._lock:
            while True:
                now = self._clock()
                while self._starts and now - self._starts[0] >= WINDOW_S:
                    self._starts.popleft()
                allowed = max(1, int(self.limit)) if self.limit is not None else None
                if allowed is None or len(self._starts) < allowed:
                    self._starts.append(now)
                    return
                await self._sleep(self._starts[len(self._starts) - allowed] + WINDOW_S - now)

    def throttled(self) -> None:
        """The server answered 429: halve the limit (multiplicative decrease)."""
        now = self._clock()
        recent = sum(1 for start in self._starts if now - start < WINDOW_S)
        current = self.limit if self.limit is not None else float(max(recent, 2))
        if self._ceiling is None:
            self._ceiling = 2 * current
        self.limit = max(1.0, current / 2)

    def succeeded(self) -> None:
        """A request went through: grow the limit back by one request a second, per second."""
        if self.limit is None or self.limit == self.configured:
            return
        self.limit += 1.0 / self.limit
        if self.configured is not None:
            self.limit = min(self.limit, self.configured)
        elif self._ceiling is not None and self.limit >= self._ceiling:
            self.limit = self._ceiling = None
