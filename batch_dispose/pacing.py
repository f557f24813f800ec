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
    """At most `rate` request starts in any window of WINDOW_S, slowed down on 429s (AIMD).

    Below one request a second the window stretches instead (`--rate 0.5`: one start per 2.1 s).
    Starts are evenly spaced (window / limit apart), never bursts. A 429 now and then is noise; a
    server's rate limit shows as many: when, within one window, at least 3 answers and a fifth of all
    answers were 429, the limit halves (at most once per window).
    Each window after that without such a burst grows it back by 5% (at least one request a second).
    Without a configured rate there is no limit until such a burst; the limit then starts at half the
    rate we were sending at, and is lifted once it has grown back to twice that.
    """

    THROTTLED_MIN = 3  # 429s within one window that can mean a rate limit…
    THROTTLED_SHARE = 0.2  # …when they are also this share of the window's answers
    RECOVERY = 0.05

    def __init__(self, rate: float | None, *, clock: Clock = time.monotonic, sleep: Sleep = asyncio.sleep) -> None:
        self.configured = rate
        self.limit = rate
        self._ceiling: float | None = None
        self._clock = clock
        self._sleep = sleep
        self._starts: deque[float] = deque()
        self._answers: deque[tuple[float, bool]] = deque()
        self._throttled = 0  # 429s among self._answers
        self._changed_at = float("-inf")
        self._paused_until = float("-inf")
        self._lock = asyncio.Lock()

    async def wait(self) -> None:
        """Return when one more request may start, and count it as started."""
        if self.limit is None and not self._lock.locked():  # no limit: nothing to wait for (the hot path)
            now = self._clock()
            if now >= self._paused_until:
                while self._starts and now - self._starts[0] >= WINDOW_S:
                    self._starts.popleft()
                self._starts.append(now)
                return
        async with self._lock:
            while True:
                now = self._clock()
                if now < self._paused_until:
                    await self._sleep(self._paused_until - now)
                    continue
                limit = self.limit
                window = WINDOW_S if limit is None else WINDOW_S * max(1.0, 1.0 / limit)
                while self._starts and now - self._starts[0] >= window:
                    self._starts.popleft()
                if limit is None:
                    self._starts.append(now)
                    return
                allowed = max(1, int(limit))
                # Evenly spaced (no bursts), and never `allowed` starts within one window.
                ready_at = self._starts[-1] + window / allowed if self._starts else now
                if len(self._starts) >= allowed:
                    ready_at = max(ready_at, self._starts[len(self._starts) - allowed] + window)
                if ready_at <= now:
                    self._starts.append(now)
                    return
                await self._sleep(ready_at - now + 1e-6)  # a microsecond more: float rounding never lands short

    def answered(self, throttled: bool, retry_after: float | None = None) -> None:
        """Note one answer (throttled: it was a 429) and adjust the limit (see the class docstring).

        A burst of 429s also pauses every start for the Retry-After asked (else one window): the
        server's rate limit is per second, so sending on at any rate would only collect more 429s.
        """
        now = self._clock()
        self._answers.append((now, throttled))
        self._throttled += throttled
        while self._answers[0][0] + WINDOW_S <= now:
            self._throttled -= self._answers.popleft()[1]
        if now - self._changed_at < WINDOW_S:
            return
        if throttled and self._throttled >= max(self.THROTTLED_MIN, self.THROTTLED_SHARE * len(self._answers)):
            current = self.limit
            if current is None:  # the rate we were sending at, over the starts of the last window
                recent = [start for start in self._starts if now - start < WINDOW_S]
                span = max(now - recent[0], WINDOW_S / 10) if recent else WINDOW_S
                current = max(2.0, len(recent) / span)
                self._ceiling = 2 * current
            self.limit = max(min(1.0, self.configured or 1.0), current / 2)
            self._changed_at = now
            self._paused_until = now + min(retry_after if retry_after is not None else WINDOW_S, RETRY_AFTER_CAP_S)
        elif self.limit is not None and self.limit != self.configured and not self._throttled:
            self.limit += max(1.0, self.limit * self.RECOVERY)
            self._changed_at = now
            if self.configured is not None:
                self.limit = min(self.limit, self.configured)
            elif self._ceiling is not None and self.limit >= self._ceiling:
                self.limit = self._ceiling = None
