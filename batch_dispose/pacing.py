"""When to send: backoff between attempts, the run-wide retry budget, and the rate limit.

Each piece takes its clock, sleep and random source as arguments, so tests never really wait.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

BACKOFF_BASE_S = 0.5
BACKOFF_CAP_S = 20.0
RETRY_AFTER_CAP_S = 60.0
RETRY_AFTER_FLOOR_S = 1.0  # a Retry-After below this is treated as none (backoff as usual)
WINDOW_S = 1.05  # the rate window, with 5% headroom for how the server's clock sees arrivals
SERVED_SHARE = 0.95  # after a burst of 429s, the limit is this share of the rate the server was serving
_SECONDS = re.compile(r"[0-9]{1,9}")  # Retry-After delay-seconds: ASCII digits only (not "²" or "٣")
_HTTP_DATE = re.compile(r"[A-Za-z]{3}, [0-9]{2} [A-Za-z]{3} [0-9]{4} [0-9]{2}:[0-9]{2}:[0-9]{2} GMT")

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


def backoff(attempt: int, rng: random.Random, retry_after: float | None = None) -> float:
    """Seconds to wait before attempt `attempt + 1`: full jitter, exponential up to 20 s.

    A server's Retry-After of a second or more is honoured as asked, up to 60 s. One below a second
    (`Retry-After: 0`) is not a licence to hammer: the row backs off as it would without the header.
    """
    if retry_after is not None and retry_after >= RETRY_AFTER_FLOOR_S:
        return min(retry_after, RETRY_AFTER_CAP_S)
    jitter = rng.uniform(0.0, min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** (attempt - 1)))
    return jitter if retry_after is None else max(retry_after, jitter)


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Retry-After as seconds (`120`) or an HTTP date, parsed strictly; None when absent or malformed.

    Only ASCII digits count (Unicode digits such as `²`, signs, decimals and absurdly long numbers are
    malformed), and only the IMF-fixdate form of a date; a malformed header means "no Retry-After".
    The value is not capped here: the caller caps it (and can say what the server asked for).
    """
    if not value:
        return None
    value = value.strip()
    if _SECONDS.fullmatch(value):
        return float(value)
    if not _HTTP_DATE.fullmatch(value):
        return None
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
    answers were 429 (and, among fewer than 10 answers, at least half), the limit drops (at most once
    per window) to just below the rate the server was serving in that window (what it answered with
    anything but 429), or halves if it served nothing.
    Each window after that without a 429 grows it back by 5% (at least one request a second), up to the
    rate the server served; above that only by 1% a window (a limiter that counts rejected requests
    too punishes every probe).
    Without a configured rate there is no limit until such a burst; the limit is lifted once it has grown
    back to twice the rate we were sending at.
    """

    THROTTLED_MIN = 3  # 429s within one window that can mean a rate limit…
    THROTTLED_SHARE = 0.2  # …when they are also this share of the window's answers
    RECOVERY = 0.05
    PROBE = 0.01  # growth per clean window above the rate the server served at the last burst
    ANSWERS_MIN = 10  # fewer answers in a window: a rate limit only if half of them were 429s

    def __init__(self, rate: float | None, *, clock: Clock = time.monotonic, sleep: Sleep = asyncio.sleep) -> None:
        self.configured = rate
        self.limit = rate
        self._ceiling: float | None = None
        self._learned: float | None = None  # what the server served (per second) in the window of the last burst
        self._clock = clock
        self._sleep = sleep
        self._starts: deque[float] = deque()
        self._answers: deque[tuple[float, bool]] = deque()
        self._throttled = 0  # 429s among self._answers
        self._changed_at = float("-inf")
        self._paused_until = float("-inf")
        self._lock = asyncio.Lock()

    def pause_left(self) -> float:
        """Seconds left of the pause a burst of 429s set (every start waits it out), 0 when none."""
        return max(0.0, self._paused_until - self._clock())

    def paused(self) -> bool:
        """True while every start waits out a burst of 429s (or another waiter holds the pacer)."""
        return self._lock.locked() or self._clock() < self._paused_until

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
                # A --rate is a promise (2.5 allows 2 a window); a limit learned from 429s is an estimate.
                allowed = max(1, int(limit) if limit == self.configured else round(limit))
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
        answers = len(self._answers)
        if (throttled and self._throttled >= max(self.THROTTLED_MIN, self.THROTTLED_SHARE * answers)
                and (answers >= self.ANSWERS_MIN or 2 * self._throttled >= answers)):
            current = self.limit
            if current is None:  # the rate we were sending at, over the starts of the last window
                recent = [start for start in self._starts if now - start < WINDOW_S]
                span = max(now - recent[0], WINDOW_S / 10) if recent else WINDOW_S
                current = max(2.0, len(recent) / span)
                self._ceiling = 2 * current
            # What the server served in the last window is its rate: settle just below it. Only when it
            # served (almost) nothing is the limit halved instead, down to one request a second.
            served = (len(self._answers) - self._throttled) / WINDOW_S
            settled = served * SERVED_SHARE if served >= 1.0 else current / 2
            self.limit = max(min(1.0, self.configured or 1.0), min(current, settled))
            if served >= 1.0:
                self._learned = served
            self._changed_at = now
            self._paused_until = now + min(retry_after if retry_after is not None else WINDOW_S, RETRY_AFTER_CAP_S)
        elif self.limit is not None and self.limit != self.configured and not self._throttled:
            step = max(1.0, self.limit * self.RECOVERY)
            if self._learned is not None and self.limit + step > self._learned:  # near what the server served:
                step = max(self._learned - self.limit, self.limit * self.PROBE)  # probe above it only slowly
            self.limit += step
            self._changed_at = now
            if self.configured is not None:
                self.limit = min(self.limit, self.configured)
            elif self._ceiling is not None and self.limit >= self._ceiling:
                self.limit = self._ceiling = None
