"""Tests of the runner: bounded concurrency, safe retries, stopping, and the journal-before-report order.

A fake sender stands in for the client (scripted verdicts per callID, recording what is in flight) and a
recording journal stands in for the ledger. Sleeps are injected: nothing here really waits.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence

import pytest

from batch_dispose.models import CallRequest, Outcome, Status, StopReason, Verdict
from batch_dispose.pacing import Pacer, RetryBudget
from batch_dispose.runner import MAX_DEFERRALS, MAX_WAITING, Runner, SendOptions

OK = Verdict(Status.DISPOSED, "Call disposed and ended.", 200)
FAILED_500 = Verdict(Status.FAILED, "the server did not dispose of the call (500: Failed to dispose of call.)", 500)
REJECTED = Verdict(Status.UNAUTHORIZED, "the server rejected the access token (403: Unauthorized Token)", 403)
SENT_UNKNOWN = Verdict(Status.UNKNOWN, "sent, but no reply within 1 s", None)
UNAVAILABLE = Verdict(Status.FAILED, "the server stayed unavailable (503 Service Unavailable); safe to re-run", 503,
                      retry=True)
NO_CONNECT = Verdict(Status.FAILED, "could not connect to the server; safe to re-run", None, retry=True)


def busy(retry_after: float | None) -> Verdict:
    return Verdict(Status.FAILED, "the server stayed busy (429 Too Many Requests)", 429, retry=True,
                   retry_after=retry_after)


def rows(count: int, start: int = 0) -> Iterator[CallRequest]:
    """`count` valid rows, made lazily like the job's generator."""
    for n in range(start, start + count):
        yield CallRequest(index=n, row=n + 2, call_id=f"C{n}", log_id=1000 + n, disposition="Interested", notes="")


Script = Callable[[CallRequest, int], Verdict]  # (row, attempt number from 1) -> verdict


class FakeSender:
    """A `Sender` answering from a script, recording attempts and how many were in flight at once."""

    timeout = 1.0

    def __init__(self, script: Script | dict[str, Sequence[Verdict]] | None = None, *, ticks: int = 1,
                 journal: RecordingJournal | None = None) -> None:
        self._script = script
        self._ticks = ticks  # event-loop turns each attempt takes, so attempts overlap
        self._journal = journal
        self.attempts: Counter[str] = Counter()
        self.in_flight = 0
        self.max_in_flight = 0
        self.max_tasks = 0

    def verdict(self, call: CallRequest, attempt: int) -> Verdict:
        if callable(self._script):
            return self._script(call, attempt)
        answers = (self._script or {}).get(call.call_id, ())
        return answers[attempt - 1] if attempt <= len(answers) else OK

    async def attempt(self, call: CallRequest) -> Verdict:
        self.attempts[call.call_id] += 1
        if self._journal is not None and self.attempts[call.call_id] == 1:
            assert call.call_id in self._journal.started, "a request left before its intent was committed"
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        self.max_tasks = max(self.max_tasks, len(asyncio.all_tasks()))
        try:
            for _ in range(self._ticks):
                await asyncio.sleep(0)
            return self.verdict(call, self.attempts[call.call_id])
        finally:
            self.in_flight -= 1

    @property
    def total(self) -> int:
        return sum(self.attempts.values())


class RecordingJournal:
    """A `Journal` that checks the order of commits: intent once, before any outcome, outcome once."""

    def __init__(self) -> None:
        self.started: set[str] = set()
        self.finished: dict[str, Outcome] = {}
        self.commits = 0

    async def commit(self, finished: Sequence[tuple[CallRequest, Outcome]], starting: Sequence[CallRequest]) -> None:
        self.commits += 1
        for call, outcome in finished:
            assert call.call_id in self.started, "an outcome was committed for a row never started"
            assert call.call_id not in self.finished, "an outcome was committed twice"
            self.finished[call.call_id] = outcome
        for call in starting:
            assert call.call_id not in self.started, "a row was started twice"
            self.started.add(call.call_id)


class Sleeps:
    """An injected sleep that records each delay and returns at once, moving a fake clock the pacer also reads."""

    def __init__(self) -> None:
        self.delays: list[float] = []
        self.now = 0.0

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        await self.pass_time(seconds)

    async def pass_time(self, seconds: float) -> None:
        self.now += max(seconds, 1e-6)
        await asyncio.sleep(0)

    def pacer(self, rate: float | None = None) -> Pacer:
        """A pacer on this fake clock (the runner's default one would really sleep after a 429)."""
        return Pacer(rate, clock=lambda: self.now, sleep=self.pass_time)


async def sleep_forever(seconds: float) -> None:
    """An injected sleep that never ends by itself (a row stays in backoff until the run stops)."""
    await asyncio.Event().wait()


class Run:
    """The result of one runner run: why it stopped, and what was reported, in order."""

    def __init__(self) -> None:
        self.reason: StopReason | None = None
        self.reported: list[tuple[str, Outcome]] = []

    @property
    def outcomes(self) -> dict[str, Outcome]:
        return dict(self.reported)

    def statuses(self) -> Counter[Status]:
        return Counter(outcome.status for _, outcome in self.reported)


def run(sender: FakeSender, requests: Iterable[CallRequest], *, concurrency: int = 4, retries: int = 3,
        journal: RecordingJournal | None = None, sleep: Callable[[float], object] | None = None,
        stop: asyncio.Event | None = None, budget: RetryBudget | None = None, pacer: Pacer | None = None,
        limit_s: float = 10) -> Run:
    """Run the runner to the end (or fail after `limit_s` rather than hang); outcomes checked against the journal."""
    result = Run()
    journal = journal if journal is not None else RecordingJournal()

    def on_outcome(call: CallRequest, outcome: Outcome) -> None:
        assert journal.finished.get(call.call_id) is outcome, "reported before its outcome was committed"
        result.reported.append((call.call_id, outcome))

    async def main() -> None:
        sleeps = sleep or Sleeps()
        if pacer is None:
            clock = sleeps if isinstance(sleeps, Sleeps) else Sleeps()
            chosen = clock.pacer()
        else:
            chosen = pacer
        runner = Runner(sender, SendOptions(concurrency=concurrency, retries=retries, seed=1), journal=journal,
                        on_outcome=on_outcome, stop=stop, sleep=sleeps, budget=budget, pacer=chosen)
        result.reason = await asyncio.wait_for(runner.run(requests), limit_s)
        assert runner.stop_reason == result.reason

    asyncio.run(main())
    ids = [call_id for call_id, _ in result.reported]
    assert len(ids) == len(set(ids)), "a row was reported twice"
    assert set(ids) == set(sender.attempts) | {i for i, o in result.reported if o.attempts == 0}
    return result


# --- concurrency and exactly-once reporting --------------------------------------------------


@pytest.mark.parametrize("concurrency", [1, 3, 8, 32])
def test_never_more_than_concurrency_attempts_in_flight(concurrency: int) -> None:
    """However many rows and retries, at most `concurrency` attempts are in flight, and that many are used."""
    script = {f"C{n}": [UNAVAILABLE, NO_CONNECT] for n in range(0, 200, 7)}
    sender = FakeSender(script, ticks=3)
    result = run(sender, rows(200), concurrency=concurrency)
    assert sender.max_in_flight == concurrency
    assert result.reason is None
    assert result.statuses() == {Status.DISPOSED: 200}


def test_every_row_is_reported_exactly_once_after_its_commit() -> None:
    """Each row ends in one reported outcome, committed first, with the status, HTTP status and attempts it earned."""
    script = {
        "C0": [OK], "C1": [FAILED_500], "C2": [REJECTED], "C3": [SENT_UNKNOWN],
        "C4": [UNAVAILABLE, UNAVAILABLE, OK], "C5": [busy(2), OK], "C6": [NO_CONNECT, FAILED_500],
    }
    journal = RecordingJournal()
    sender = FakeSender(script, journal=journal, ticks=2)
    result = run(sender, rows(60), concurrency=5, journal=journal)
    assert result.reason is None
    assert len(result.reported) == 60 and journal.started == set(journal.finished) == {f"C{n}" for n in range(60)}
    got = {call_id: (o.status, o.http_status, o.attempts) for call_id, o in result.reported if call_id in script}
    assert got == {
        "C0": (Status.DISPOSED, 200, 1), "C1": (Status.FAILED, 500, 1), "C2": (Status.UNAUTHORIZED, 403, 1),
        "C3": (Status.UNKNOWN, None, 1), "C4": (Status.DISPOSED, 200, 3), "C5": (Status.DISPOSED, 200, 2),
        "C6": (Status.FAILED, 500, 2),
    }
    assert result.outcomes["C1"].message == FAILED_500.message
    assert all(o.finished_at.endswith("Z") for _, o in result.reported)
    assert sender.attempts["C3"] == 1, "an unknown row is never re-sent automatically"


def test_intent_is_committed_before_the_first_attempt() -> None:
    """No row's request leaves before the journal has committed its intent (the sender checks on each first try)."""
    journal = RecordingJournal()
    sender = FakeSender(journal=journal)
    run(sender, rows(100), concurrency=7, journal=journal)
    assert sender.total == 100
    assert journal.commits < 100, "outcomes and intents are committed in batches"


# --- retries ---------------------------------------------------------------------------------


STALE = Verdict(Status.FAILED, "the server had closed the connection before the request was written; the call was "
                "not sent, so it is safe to re-run", None, retry=True, stale=True)


def test_a_request_refused_on_a_connection_the_server_had_closed_goes_again_at_once_for_free() -> None:
    """A server that closes every kept-alive connection after its reply: each row's request refused on the stale
    connection is sent again at once (no backoff), without using up --retries or the run's retry budget, so
    every row ends disposed, however many rows the file has."""
    sleeps = Sleeps()
    sender = FakeSender(lambda call, attempt: STALE if attempt == 1 else OK)
    result = run(sender, rows(300), retries=0, sleep=sleeps)
    assert result.reason is None and {o.status for o in result.outcomes.values()} == {Status.DISPOSED}
    assert sleeps.delays == [] and sender.total == 600
    endless = FakeSender(lambda call, attempt: STALE)  # bounded all the same
    stuck = run(endless, rows(1), retries=0, sleep=Sleeps())
    assert endless.attempts["C0"] == MAX_DEFERRALS + 1 and stuck.outcomes["C0"].status is Status.FAILED


def test_a_row_the_run_stops_before_its_retry_says_what_its_last_attempt_ran_into() -> None:
    """A row that could not connect, then finds the run stopping just as its retry would start: pending, and its
    message says its attempt could not connect and why, never that the server "answered 'busy, retry later'"."""
    stop = asyncio.Event()
    sleeps = Sleeps()

    class StopsAtTheRetry(Pacer):  # the run is told to stop while the row waits its turn to try again
        async def wait(self) -> None:
            if sender.attempts["C0"]:
                stop.set()
            await super().wait()

    failing = Verdict(Status.FAILED, "could not connect to the server (connection refused by 127.0.0.1:9)", None,
                      retry=True, cause="connection refused by 127.0.0.1:9")
    sender = FakeSender(lambda call, attempt: failing)
    result = run(sender, rows(1), retries=3, sleep=sleeps, stop=stop,
                 pacer=StopsAtTheRetry(None, clock=lambda: sleeps.now, sleep=sleeps.pass_time))
    outcome = result.outcomes["C0"]
    assert (outcome.status, outcome.attempts, sender.attempts["C0"]) == (Status.PENDING, 1, 1)
    assert outcome.message.endswith("(1 attempt could not connect: connection refused by 127.0.0.1:9)"), outcome.message


@pytest.mark.parametrize("retries", [0, 1, 3, 5])
@pytest.mark.parametrize("answer", [UNAVAILABLE, NO_CONNECT], ids=["503", "connect"])
def test_retry_verdicts_are_retried_up_to_retries_then_fail(retries: int, answer: Verdict) -> None:
    """A row that keeps failing (no connection, 503 without Retry-After) is tried 1 + `retries` times
    with full-jitter backoff, then failed, saying so."""
    sleeps = Sleeps()
    sender = FakeSender(lambda call, attempt: answer)
    result = run(sender, rows(1), retries=retries, sleep=sleeps)
    outcome = result.outcomes["C0"]
    assert sender.attempts["C0"] == retries + 1
    assert (outcome.status, outcome.http_status, outcome.attempts) == (Status.FAILED, answer.http_status, retries + 1)
    assert outcome.message.startswith(answer.message)
    assert f"gave up after {retries + 1} attempt" in outcome.message
    assert len(sleeps.delays) == retries
    assert all(0 <= delay <= 0.5 * 2 ** n for n, delay in enumerate(sleeps.delays))
    assert result.reason is None


@pytest.mark.parametrize("retries", [0, 3])
@pytest.mark.parametrize("answer", [busy(None), busy(1.0), Verdict(Status.FAILED, "unavailable", 503, retry=True,
                                                                   retry_after=2.0)],
                         ids=["429", "429-retry-after", "503-retry-after"])
def test_deferrals_are_waited_out_without_using_up_retries(retries: int, answer: Verdict) -> None:
    """429s and 503s that say when to come back are waited out, up to MAX_DEFERRALS per row whatever
    --retries is; then the row fails saying it gave up."""

    sleeps = Sleeps()
    sender = FakeSender(lambda call, attempt: answer)
    result = run(sender, rows(1), retries=retries, sleep=sleeps)
    outcome = result.outcomes["C0"]
    assert sender.attempts["C0"] == outcome.attempts == MAX_DEFERRALS + 1
    assert outcome.status is Status.FAILED and f"gave up after {MAX_DEFERRALS + 1} attempts" in outcome.message
    assert len(sleeps.delays) == MAX_DEFERRALS
    if answer.retry_after is not None:
        assert all(answer.retry_after <= delay <= 60 for delay in sleeps.delays)


def test_a_deferral_then_failures_counts_only_the_failures() -> None:
    """A 429 does not use up --retries: 429, 503, 503 then 200 succeeds with --retries 2."""
    script = [busy(None), UNAVAILABLE, UNAVAILABLE, OK]
    sender = FakeSender(lambda call, attempt: script[attempt - 1])
    result = run(sender, rows(1), retries=2, sleep=Sleeps())
    assert result.outcomes["C0"].status is Status.DISPOSED and sender.attempts["C0"] == 4


@pytest.mark.parametrize("answer", [FAILED_500, REJECTED, SENT_UNKNOWN], ids=["500", "403", "unknown"])
def test_non_retry_verdicts_are_sent_once(answer: Verdict) -> None:
    """500, 403 and an unknown effect are never re-sent automatically."""
    sleeps = Sleeps()
    sender = FakeSender(lambda call, attempt: answer)
    result = run(sender, rows(2), sleep=sleeps)
    assert sender.attempts == {"C0": 1, "C1": 1}
    assert {o.status for _, o in result.reported} == {answer.status}
    assert sleeps.delays == []


@pytest.mark.parametrize(("retry_after", "waited"), [(7.0, 7.0), (59.5, 59.5), (120.0, 60.0), (86_400.0, 60.0)])
def test_retry_after_is_honoured(retry_after: float, waited: float) -> None:
    """A 429 with Retry-After waits that long, but at most 60 s, before the next attempt."""
    sleeps = Sleeps()
    sender = FakeSender({"C0": [busy(retry_after), busy(retry_after), OK]})
    result = run(sender, rows(1), sleep=sleeps)
    assert sleeps.delays == [waited, waited]
    assert result.outcomes["C0"].status is Status.DISPOSED


def test_retry_after_zero_still_backs_off() -> None:
    """`Retry-After: 0` is not a licence to hammer: the row backs off as it would without the header."""
    sleeps = Sleeps()
    sender = FakeSender(lambda call, attempt: busy(0.0) if attempt <= 6 else OK)
    result = run(sender, rows(1), sleep=sleeps)
    assert result.outcomes["C0"].status is Status.DISPOSED
    assert len(sleeps.delays) == 6 and sum(sleeps.delays) > 2.0, "later waits grow as the backoff does"


# --- the retry budget ------------------------------------------------------------------------


@pytest.mark.parametrize("concurrency", [1, 8, 64])
def test_outage_stops_the_run_when_the_budget_runs_out(concurrency: int) -> None:
    """A server answering 503 to everything stops the run (UNAVAILABLE) within 100 retries; unsent rows go
    unreported."""
    sender = FakeSender(lambda call, attempt: UNAVAILABLE)
    result = run(sender, rows(10_000), concurrency=concurrency)
    assert result.reason is StopReason.UNAVAILABLE
    started = len(sender.attempts)
    assert sender.total <= started + 500 // 5
    assert started < 1_000, "the run stopped long before the end of the file"
    reported = {call_id: outcome for call_id, outcome in result.reported}
    assert set(sender.attempts) <= set(reported)
    unsent = [outcome for call_id, outcome in reported.items() if call_id not in sender.attempts]
    assert all(o.status is Status.PENDING and o.attempts == 0 for o in unsent), "started but stopped before sending"
    assert set(result.statuses()) <= {Status.FAILED, Status.PENDING}
    assert result.statuses()[Status.PENDING] >= 1
    pending = [o for _, o in result.reported if o.status is Status.PENDING]
    assert all("server looks unavailable" in o.message and o.http_status is None for o in pending)


def test_a_minority_of_503s_is_ridden_through() -> None:
    """A server answering 503 to one request in ten (then 200) never drains the budget: every row is disposed."""
    sender = FakeSender(lambda call, attempt: UNAVAILABLE if attempt == 1 and call.index % 10 == 0 else OK)
    budget = RetryBudget()
    result = run(sender, rows(5_000), concurrency=8, budget=budget)
    assert result.reason is None
    assert result.statuses() == {Status.DISPOSED: 5_000}
    assert sender.total == 5_500
    assert budget.level == budget.capacity


def test_a_drained_budget_refills_on_first_try_successes() -> None:
    """After retries drain part of the budget, first-try successes put one token back each."""
    budget = RetryBudget()
    sender = FakeSender(lambda call, attempt: UNAVAILABLE if call.index < 20 and attempt == 1 else OK)
    run(sender, rows(20), budget=budget)
    assert budget.level == 500 - 20 * 5
    run(FakeSender(), rows(30, start=100), budget=budget)
    assert budget.level == 500 - 20 * 5 + 30


# --- 403 -------------------------------------------------------------------------------------


def test_three_consecutive_403s_stop_the_run() -> None:
    """Three 403s in a row stop the run (UNAUTHORIZED); the rows not yet started are never attempted or reported."""
    sender = FakeSender(lambda call, attempt: REJECTED)
    result = run(sender, rows(50), concurrency=1)
    assert result.reason is StopReason.UNAUTHORIZED
    assert sender.attempts == {"C0": 1, "C1": 1, "C2": 1}
    assert result.statuses() == {Status.UNAUTHORIZED: 3}


def test_403s_stop_a_concurrent_run_early() -> None:
    """With requests in flight, the run still stops soon after three 403s; those in flight finish and are reported."""
    sender = FakeSender(lambda call, attempt: REJECTED, ticks=2)
    result = run(sender, rows(500), concurrency=8)
    assert result.reason is StopReason.UNAUTHORIZED
    assert len(sender.attempts) <= 2 * 8
    assert result.statuses()[Status.UNAUTHORIZED] == len(sender.attempts)
    unsent = [outcome for call_id, outcome in result.reported if call_id not in sender.attempts]
    assert all(o.status is Status.PENDING and o.attempts == 0 for o in unsent), "committed ahead, never sent"


@pytest.mark.parametrize("pattern", [
    [REJECTED, REJECTED, OK],
    [REJECTED, OK],
    [REJECTED, REJECTED, FAILED_500],
    [REJECTED, REJECTED, SENT_UNKNOWN],
])
def test_a_non_403_answer_resets_the_streak(pattern: list[Verdict]) -> None:
    """A 403 streak broken by any other answer never stops the run: every row is attempted."""
    sender = FakeSender(lambda call, attempt: pattern[call.index % len(pattern)])
    result = run(sender, rows(60), concurrency=1)
    assert result.reason is None
    assert len(sender.attempts) == 60 and len(result.reported) == 60


def test_a_server_that_answers_nothing_gets_no_row_beyond_those_in_flight() -> None:
    """Every request hangs until its timeout, the timeouts a few turns apart: once the first row ends with no
    reply, no new row starts while the others are still out, so the run stops (UNRESPONSIVE) with exactly
    the rows that were in flight unknown, not more."""

    class Hanging(FakeSender):
        async def attempt(self, call: CallRequest) -> Verdict:
            self.attempts[call.call_id] += 1
            for _ in range(3 * (call.index % 4) + 3):  # the timeouts of concurrent requests, spread out
                await asyncio.sleep(0)
            return SENT_UNKNOWN

    sender = Hanging()
    result = run(sender, rows(40), concurrency=4)
    assert result.reason is StopReason.UNRESPONSIVE
    assert len(sender.attempts) == 4 and result.statuses()[Status.UNKNOWN] == 4
    unsent = [outcome for call_id, outcome in result.reported if call_id not in sender.attempts]
    assert all(o.status is Status.PENDING and o.attempts == 0 for o in unsent), "committed ahead, never sent"


def test_an_occasional_unknown_does_not_slow_a_working_server() -> None:
    """One row in ten with no usable reply: every row is still sent, at full concurrency."""
    sender = FakeSender(lambda call, attempt: SENT_UNKNOWN if call.index % 10 == 3 else OK, ticks=3)
    result = run(sender, rows(200), concurrency=8)
    assert result.reason is None and len(sender.attempts) == 200
    assert result.statuses() == {Status.DISPOSED: 180, Status.UNKNOWN: 20} and sender.max_in_flight == 8


# --- stopping --------------------------------------------------------------------------------


def test_stop_event_interrupts_gracefully() -> None:
    """Setting stop mid-run: rows in backoff end pending, rows in flight complete, rows not started are never sent."""
    stop = asyncio.Event()
    release = asyncio.Event()
    retrying = {"C0", "C1"}
    blocked: list[str] = []
    concurrency = 4

    class Blocking(FakeSender):
        async def attempt(self, call: CallRequest) -> Verdict:
            self.attempts[call.call_id] += 1
            if call.call_id in retrying:
                return UNAVAILABLE
            blocked.append(call.call_id)
            if len(blocked) == concurrency:  # every slot is busy: press Ctrl-C, then let them answer
                stop.set()
                asyncio.get_running_loop().call_later(0, release.set)
            await release.wait()
            return OK

    sender = Blocking()
    result = run(sender, rows(100), concurrency=concurrency, stop=stop, sleep=sleep_forever)
    assert result.reason is StopReason.INTERRUPTED
    outcomes = result.outcomes
    assert {call_id: outcomes[call_id].status for call_id in retrying} == {"C0": Status.PENDING, "C1": Status.PENDING}
    assert all("interrupted" in outcomes[call_id].message and outcomes[call_id].attempts == 1 for call_id in retrying)
    assert {call_id: outcomes[call_id].status for call_id in blocked} == dict.fromkeys(blocked, Status.DISPOSED)
    assert set(sender.attempts) == retrying | set(blocked)
    sent = [call_id for call_id, outcome in result.reported if outcome.attempts]
    assert len(sent) == len(retrying) + concurrency
    ahead = [outcome for call_id, outcome in result.reported if call_id not in sender.attempts]
    assert all(o.status is Status.PENDING and o.attempts == 0 for o in ahead), "committed ahead, never sent"


def test_retry_answer_after_stop_is_pending_not_retried() -> None:
    """A row answered 503 after the stop was set is not retried: it ends pending with its one attempt."""
    stop = asyncio.Event()
    sleeps = Sleeps()

    def script(call: CallRequest, attempt: int) -> Verdict:
        stop.set()
        return UNAVAILABLE

    sender = FakeSender(script)
    result = run(sender, rows(10), concurrency=1, stop=stop, sleep=sleeps)
    assert result.reason is StopReason.INTERRUPTED
    assert sender.attempts == {"C0": 1}
    assert [(c, o.status, o.attempts) for c, o in result.reported if o.attempts] == [("C0", Status.PENDING, 1)]
    assert {o.status for _, o in result.reported} == {Status.PENDING}
    assert "interrupted" in result.outcomes["C0"].message


def test_stop_already_set_sends_nothing() -> None:
    """A runner whose stop event is already set sends nothing and reports nothing."""
    stop = asyncio.Event()
    stop.set()
    sender = FakeSender()
    result = run(sender, rows(10), stop=stop)
    assert result.reason is StopReason.INTERRUPTED
    assert sender.total == 0


def test_rows_waiting_for_the_rate_limiter_are_not_sent_after_stop() -> None:
    """Ctrl-C stops starting requests: rows still waiting for their turn under --rate are not sent."""
    stop = asyncio.Event()
    now = [0.0]

    async def sleep(seconds: float) -> None:
        now[0] += max(seconds, 1e-6)
        await asyncio.sleep(0)

    def script(call: CallRequest, attempt: int) -> Verdict:
        stop.set()  # Ctrl-C while the other rows wait for the 1-per-window limiter
        return OK

    sender = FakeSender(script)
    pacer = Pacer(1, clock=lambda: now[0], sleep=sleep)
    result = run(sender, rows(10), concurrency=4, stop=stop, pacer=pacer, sleep=sleep)
    assert result.reason is StopReason.INTERRUPTED
    assert sender.total == 1


# --- bounded memory and bugs -----------------------------------------------------------------


def test_live_tasks_stay_bounded_over_30000_rows() -> None:
    """30,000 rows are pulled lazily: the number of live asyncio tasks never grows with the row count."""
    sender = FakeSender()
    result = run(sender, rows(30_000), concurrency=8, limit_s=60)
    assert result.reason is None and len(result.reported) == 30_000
    assert sender.max_tasks <= 8 + 3  # the rows in flight, run() in wait_for, the test's main and the stop watcher


def test_rows_waiting_to_retry_are_bounded() -> None:
    """Rows sleeping before a retry free their request slot, but at most about MAX_WAITING of them pile up."""
    release = asyncio.Event()
    sleeping = {"now": 0, "peak": 0, "tasks": 0}
    watchers: list[asyncio.Future[None]] = []  # held, so the watcher is not collected while it runs
    sender = FakeSender(lambda call, attempt: UNAVAILABLE if attempt == 1 else OK)

    async def release_when_quiet() -> None:  # once the runner starts nothing new, wake every sleeping row
        while True:
            before = sender.total
            for _ in range(20):
                await asyncio.sleep(0)
            if sender.total == before:
                release.set()
                return

    async def sleep(seconds: float) -> None:  # every backoff lasts until the runner stops starting rows
        if sleeping["peak"] == 0:
            watchers.append(asyncio.ensure_future(release_when_quiet()))
        sleeping["now"] += 1
        sleeping["peak"] = max(sleeping["peak"], sleeping["now"])
        sleeping["tasks"] = max(sleeping["tasks"], len(asyncio.all_tasks()))
        try:
            await release.wait()
        finally:
            sleeping["now"] -= 1

    result = run(sender, rows(3_000), concurrency=8, sleep=sleep, budget=RetryBudget(capacity=10**9), limit_s=60)
    assert result.statuses() == {Status.DISPOSED: 3_000}
    assert MAX_WAITING <= sleeping["peak"] <= MAX_WAITING + 8
    assert sleeping["tasks"] <= 3 * (MAX_WAITING + 8) + 4  # a waiting row: its task, a sleeper, a stop watcher


def test_a_bug_in_the_sender_propagates_instead_of_hanging() -> None:
    """An unexpected exception inside an attempt comes out of run(), not a silent hang."""
    def script(call: CallRequest, attempt: int) -> Verdict:
        if call.index == 5:
            raise ZeroDivisionError("a bug")
        return OK

    with pytest.raises(ZeroDivisionError, match="a bug"):
        run(FakeSender(script), rows(50), concurrency=4, limit_s=5)


def test_an_empty_input_finishes_at_once() -> None:
    """No rows: nothing is sent, nothing reported, no stop reason."""
    sender = FakeSender()
    result = run(sender, [])
    assert (result.reason, result.reported, sender.total) == (None, [], 0)


@pytest.mark.parametrize("concurrency", [1, 8, 16])
def test_rows_at_risk_from_a_kill_are_at_most_concurrency_plus_ahead(concurrency: int) -> None:
    """At every commit, rows with an intent and no outcome (unknown after a kill -9) are at most
    concurrency + ahead_for(concurrency): the crash guarantee, stated as a number."""
    from batch_dispose.runner import ahead_for

    class Counting(RecordingJournal):
        peak = 0

        async def commit(self, finished: Sequence[tuple[CallRequest, Outcome]],
                         starting: Sequence[CallRequest]) -> None:
            await super().commit(finished, starting)
            Counting.peak = max(Counting.peak, len(self.started) - len(self.finished))
            await asyncio.sleep(0)  # replies arrive while a commit is being made

    journal = Counting()
    sender = FakeSender(ticks=3, journal=journal)
    result = run(sender, rows(2_000), concurrency=concurrency, journal=journal)
    assert result.statuses() == {Status.DISPOSED: 2_000}
    assert Counting.peak <= concurrency + ahead_for(concurrency)
    assert sender.max_in_flight == concurrency


def test_activity_says_what_the_run_waits_for() -> None:
    """Runner.activity() counts the requests in flight, the rows waiting to retry and the server's asked wait."""
    seen = []

    async def main() -> None:
        release = asyncio.Event()

        class Holding(FakeSender):
            async def attempt(self, call: CallRequest) -> Verdict:
                self.attempts[call.call_id] += 1
                if call.call_id == "C0":
                    return busy(30.0)
                await release.wait()
                return OK

        sleeps, stop = Sleeps(), asyncio.Event()
        runner = Runner(Holding(), SendOptions(concurrency=3, seed=1), sleep=sleep_forever, pacer=sleeps.pacer(),
                        stop=stop)
        task = asyncio.ensure_future(runner.run(rows(3)))
        for _ in range(50):
            await asyncio.sleep(0)
        seen.append(runner.activity())
        release.set()
        stop.set()  # as Ctrl-C does
        await asyncio.wait_for(task, 5)

    asyncio.run(main())
    activity = seen[0]
    assert activity.in_flight == 2 and activity.waiting == 1
    assert 29 <= activity.server_wait_s <= 30 and activity.server_asked_s == 30.0
