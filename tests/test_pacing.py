"""Tests of when requests go out: backoff, Retry-After, the retry budget and the rate limiter (fake clock)."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from batch_dispose.pacing import (
    BACKOFF_CAP_S,
    RETRY_AFTER_CAP_S,
    WINDOW_S,
    Pacer,
    RetryBudget,
    backoff,
    parse_retry_after,
)


class FakeTime:
    """A clock that only moves when someone sleeps on it (at least 1 µs, as real time would); records sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += max(seconds, 1e-6)  # Pacer can ask for 0 s when float rounding lands just short of the window
        await asyncio.sleep(0)  # let other waiters run, as a real sleep would


def start_times(pacer: Pacer, time: FakeTime, count: int, *, waiters: int = 1) -> list[float]:
    """The fake-clock moments at which `count` requests were let through by `waiters` concurrent callers."""
    starts: list[float] = []

    async def caller(share: int) -> None:
        for _ in range(share):
            await pacer.wait()
            starts.append(time.now)

    async def main() -> None:
        shares = [count // waiters + (1 if n < count % waiters else 0) for n in range(waiters)]
        await asyncio.wait_for(asyncio.gather(*(caller(share) for share in shares)), timeout=10)

    asyncio.run(main())
    return sorted(starts)


def busiest_window(starts: list[float]) -> int:
    """The most starts within any window of WINDOW_S seconds (each window begins at a start)."""
    return max(sum(1 for other in starts if 0 <= other - start < WINDOW_S) for start in starts)


# --- the rate limiter ------------------------------------------------------------------------


@pytest.mark.parametrize("rate", [1, 3, 8, 25])
@pytest.mark.parametrize("waiters", [1, 16])
def test_no_window_holds_more_than_rate_starts(rate: int, waiters: int) -> None:
    """However many callers wait at once, no window of 1.05 s ever holds more than `rate` request starts."""
    time = FakeTime()
    starts = start_times(Pacer(rate, clock=time.clock, sleep=time.sleep), time, 20 * rate + 7, waiters=waiters)
    assert len(starts) == 20 * rate + 7
    assert busiest_window(starts) == rate


@pytest.mark.parametrize("rate", [2, 10, 50])
def test_throughput_is_close_to_rate_per_window(rate: int) -> None:
    """A long run goes out at close to `rate` per 1.05 s: the limiter leaves headroom but wastes no more."""
    time = FakeTime()
    count = 40 * rate
    starts = start_times(Pacer(rate, clock=time.clock, sleep=time.sleep), time, count, waiters=8)
    per_second = (count - 1) / (starts[-1] - starts[0])
    assert per_second == pytest.approx(rate / WINDOW_S, rel=0.02)
    assert per_second < rate


def test_without_rate_nothing_waits() -> None:
    """With no configured rate and no 429 yet, requests are never delayed."""
    time = FakeTime()
    starts = start_times(Pacer(None, clock=time.clock, sleep=time.sleep), time, 500, waiters=8)
    assert time.sleeps == []
    assert set(starts) == {1000.0}


@pytest.mark.parametrize("rate", [0.1, 0.5])
def test_fractional_rate_below_one_is_honoured(rate: float) -> None:
    """--rate 0.5 means at most one request every 2 seconds, not one a second."""
    time = FakeTime()
    starts = start_times(Pacer(rate, clock=time.clock, sleep=time.sleep), time, 10)
    assert (len(starts) - 1) / (starts[-1] - starts[0]) <= rate


def answer(pacer: Pacer, time: FakeTime, throttled: int, total: int, *, spread: float = 0.5,
           retry_after: float | None = None) -> None:
    """`total` answers over `spread` seconds of fake time, the first `throttled` of them 429s."""
    for n in range(total):
        time.now += spread / total
        pacer.answered(n < throttled, retry_after if n < throttled else None)


def test_a_burst_of_429s_halves_the_limit_at_most_once_per_window() -> None:
    """Many 429s within one window halve the limit once; the next window's burst halves it again."""
    time = FakeTime()
    pacer = Pacer(10, clock=time.clock, sleep=time.sleep)
    answer(pacer, time, throttled=5, total=10)
    assert pacer.limit == 5
    answer(pacer, time, throttled=5, total=10, spread=0.2)  # same window: no second cut
    assert pacer.limit == 5
    time.now += WINDOW_S
    answer(pacer, time, throttled=5, total=10)
    assert pacer.limit == 2.5


def test_an_occasional_429_is_noise_and_does_not_slow_the_run() -> None:
    """One 429 among many answers in a window (under a tenth, or a single one) leaves the limit alone."""
    time = FakeTime()
    pacer = Pacer(50, clock=time.clock, sleep=time.sleep)
    for _ in range(20):  # 5% of answers are 429, spread out as random ones are
        for n in range(40):
            time.now += 1.1 / 40
            pacer.answered(n in (15, 35))
    assert pacer.limit == 50
    lone = Pacer(None, clock=time.clock, sleep=time.sleep)
    answer(lone, time, throttled=1, total=3)
    assert lone.limit is None


def test_limit_recovers_gradually_to_the_configured_rate_and_never_above() -> None:
    """After a cut, each window without a burst adds 5% (at least 1/s), up to the configured rate."""
    time = FakeTime()
    pacer = Pacer(20, clock=time.clock, sleep=time.sleep)
    answer(pacer, time, throttled=10, total=10)
    assert pacer.limit == 10
    seen = []
    for _ in range(30):
        time.now += WINDOW_S
        answer(pacer, time, throttled=0, total=5, spread=0.01)
        seen.append(pacer.limit)
    assert seen[0] == 11, "one window adds max(1, 5%) = 1 request/s"
    assert seen == sorted(seen) and max(seen) == 20


def test_limit_never_drops_below_one_request_a_second() -> None:
    """However many bursts, the limit stays at least 1/s (or the configured rate if that is lower)."""
    time = FakeTime()
    pacer = Pacer(8, clock=time.clock, sleep=time.sleep)
    for _ in range(20):
        time.now += WINDOW_S
        answer(pacer, time, throttled=4, total=4)
    assert pacer.limit == 1
    slow = Pacer(0.5, clock=time.clock, sleep=time.sleep)
    for _ in range(5):
        time.now += 3
        answer(slow, time, throttled=3, total=3)
    assert slow.limit == 0.5


def test_throttled_limit_actually_slows_the_requests() -> None:
    """After a cut at rate 8, the next windows hold at most 4 starts."""
    time = FakeTime()
    pacer = Pacer(8, clock=time.clock, sleep=time.sleep)
    start_times(pacer, time, 8)
    answer(pacer, time, throttled=4, total=4)
    starts = start_times(pacer, time, 40, waiters=4)
    assert busiest_window(starts) == 4


def test_without_rate_a_burst_sets_a_limit_pauses_and_recovery_lifts_it() -> None:
    """No --rate: a burst of 429s sets a limit of half the rate we were sending at and pauses starts for
    the Retry-After; windows without 429s then lift the limit again, gradually."""
    time = FakeTime()
    pacer = Pacer(None, clock=time.clock, sleep=time.sleep)
    for _ in range(20):  # 20 starts over 0.5 s: 40/s
        start_times(pacer, time, 1)
        time.now += 0.025
    answer(pacer, time, throttled=4, total=4, spread=0.01, retry_after=2.0)
    assert pacer.limit == pytest.approx(20 / 0.51 / 2, rel=0.05)
    paused_at = time.now
    starts = start_times(pacer, time, 40, waiters=4)
    assert starts[0] >= paused_at + 2.0 - 0.011, "no start during the Retry-After pause"
    assert busiest_window(starts) <= round(pacer.limit)  # a learned limit is an estimate: rounded, not floored
    windows = 0
    while pacer.limit is not None:
        time.now += WINDOW_S
        answer(pacer, time, throttled=0, total=3, spread=0.01)
        windows += 1
        assert windows < 100, "the limit was never lifted"
    assert windows > 2, "lifted gradually, not at once"
    time.sleeps.clear()
    start_times(pacer, time, 100, waiters=8)
    assert time.sleeps == []


# --- the retry budget ------------------------------------------------------------------------


def test_retry_budget_pays_100_retries_then_refuses() -> None:
    """A full budget of 500 pays for exactly 100 retries at 5 each; the 101st is refused and takes nothing."""
    budget = RetryBudget()
    assert (budget.capacity, budget.level) == (500, 500)
    assert all(budget.take() for _ in range(100))
    assert budget.level == 0
    assert budget.take() is False
    assert budget.level == 0


def test_retry_budget_refunds_one_per_first_try_success_capped() -> None:
    """Five first-try successes pay for one more retry, and refunds never fill past capacity."""
    budget = RetryBudget()
    budget.refund()
    assert budget.level == 500
    while budget.take():
        pass
    assert budget.level == 0
    for _ in range(4):
        budget.refund()
    assert budget.take() is False
    assert budget.level == 4
    budget.refund()
    assert budget.take() is True
    assert budget.level == 0


def test_retry_budget_cannot_overdraw() -> None:
    """A level below the cost of a retry refuses without going negative."""
    budget = RetryBudget(capacity=13)
    assert budget.take() and budget.take()
    assert budget.level == 3
    assert budget.take() is False
    assert budget.level == 3


# --- backoff and Retry-After -----------------------------------------------------------------


@pytest.mark.parametrize(("attempt", "ceiling"), [(1, 0.5), (2, 1.0), (3, 2.0), (6, 16.0), (7, 20.0), (10, 20.0)])
def test_backoff_is_full_jitter_within_exponential_cap(attempt: int, ceiling: float) -> None:
    """The wait before the next attempt is uniform between 0 and min(20 s, 0.5 s * 2^(attempt-1))."""
    rng = random.Random(7)
    waits = [backoff(attempt, rng) for _ in range(2000)]
    assert min(waits) >= 0
    assert max(waits) <= ceiling <= BACKOFF_CAP_S
    assert max(waits) > 0.9 * ceiling and min(waits) < 0.1 * ceiling, "full jitter spans the whole range"


@pytest.mark.parametrize(("retry_after", "wait"), [(7.0, 7.0), (60.0, 60.0), (120.0, 60.0), (86_400.0, 60.0)])
def test_backoff_honours_retry_after_up_to_60_s(retry_after: float, wait: float) -> None:
    """A server's Retry-After above the backoff is waited exactly, capped at 60 s."""
    assert RETRY_AFTER_CAP_S == 60
    assert backoff(1, random.Random(1), retry_after) == wait
    assert backoff(5, random.Random(1), retry_after) == wait


@pytest.mark.parametrize("retry_after", [0.0, -3.0, 0.1])
def test_a_retry_after_below_the_backoff_is_raised_to_it(retry_after: float) -> None:
    """`Retry-After: 0` (or less than the backoff) waits the normal backoff, which grows with each attempt."""
    for attempt in (1, 4, 8):
        rng, same = random.Random(attempt), random.Random(attempt)
        assert backoff(attempt, rng, retry_after) == max(retry_after, backoff(attempt, same))
    assert sum(backoff(attempt, random.Random(3), retry_after) for attempt in range(1, 12)) > 10


NOW = datetime(2026, 3, 4, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("120", 120.0),
        (" 5 ", 5.0),
        ("0", 0.0),
        (format_datetime(NOW + timedelta(seconds=90), usegmt=True), 90.0),
        ("Wed, 04 Mar 2026 12:00:30 GMT", 30.0),
        (format_datetime(NOW - timedelta(hours=1), usegmt=True), 0.0),
        ("Fri, 31 Dec 1999 23:59:59 GMT", 0.0),
        ("soon", None),
        ("1.5", None),
        ("-5", None),
        ("²", None),
        ("1²", None),
        ("٣", None),
        ("+5", None),
        ("9999999999999999999999", None),
        ("86400", 86400.0),
        ("", None),
        (None, None),
        ("Wed, 99 Foo 2026 25:61:61 GMT", None),
    ],
)
def test_parse_retry_after(value: str | None, seconds: float | None) -> None:
    """Retry-After in seconds or as an HTTP date becomes seconds to wait (a past date: 0); garbage is None."""
    assert parse_retry_after(value, now=NOW) == seconds


def test_the_limit_settles_at_what_the_server_served_and_probes_above_it_slowly() -> None:
    """A burst while the server served 10/s sets the limit just under 10; clean windows bring it back to 10
    quickly, and above it only by 1% a window (a limiter counting rejected requests punishes each probe)."""
    time = FakeTime()
    pacer = Pacer(None, clock=time.clock, sleep=time.sleep)
    start_times(pacer, time, 40)  # sent as fast as it could
    for n in range(40):  # one window: 10 served, then 30 answered 429
        time.now += 0.02
        pacer.answered(n >= 10, 1.0 if n >= 10 else None)
    assert pacer.limit == pytest.approx(10 / WINDOW_S * 0.95, rel=0.01)
    seen = []
    for _ in range(10):
        time.now += WINDOW_S
        answer(pacer, time, throttled=0, total=10, spread=0.01)
        seen.append(pacer.limit)
    assert seen[0] == pytest.approx(10 / WINDOW_S, rel=0.01), "back to the served rate at once"
    assert seen[-1] < 10 / WINDOW_S * 1.11, "above it, 1% a window"
