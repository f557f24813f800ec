"""Sending the valid rows: bounded concurrency, retries that are safe, and stopping cleanly.

The runner knows nothing of files or terminals. It pulls rows lazily from an iterable (memory
does not grow with the row count), keeps at most `concurrency` requests in flight, and after each
batch of outcomes calls the journal once (durable intents of the rows about to start, and the
outcomes just finished, in one commit) before reporting them through `on_outcome`. So anything a
user sees as recorded has been committed, and no request leaves before its intent is committed.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from .models import Activity, CallRequest, Outcome, Status, StopReason, Verdict, iso_now
from .pacing import Clock, Pacer, RetryBudget, Sleep, backoff

UNAUTHORIZED_STOP = 3  # consecutive 403s that stop the run
UNKNOWN_STOP_MIN = 3  # consecutive unknown outcomes that stop the run: max(this, concurrency)
MAX_WAITING = 1000  # rows waiting to retry at once (each is a small task)
MAX_DEFERRALS = 10  # 429s / 503s with Retry-After waited out per row, besides --retries
PROGRESS_GRACE_S = 10.0  # deferrals are free while the server gave a real answer within this long
OUTAGE_S = 15.0  # no real answer for this long while rows are being retried: the server is down
TICK_S = 0.5  # how often `on_tick` hears what the run is doing, replies or not


class Sender(Protocol):
    """Sends one attempt of a row and classifies the answer (`client.RyngClient`)."""

    async def attempt(self, call: CallRequest) -> Verdict: ...


class Journal(Protocol):
    """Durable record of what is being sent and what came back (`ledger.RunJournal`)."""

    async def commit(self, finished: Sequence[tuple[CallRequest, Outcome]],
                     starting: Sequence[CallRequest]) -> None: ...


class NoJournal:
    """A journal that keeps nothing (validate, tests)."""

    async def commit(self, finished: Sequence[tuple[CallRequest, Outcome]],
                     starting: Sequence[CallRequest]) -> None:
        return None


@dataclass
class SendOptions:
    concurrency: int = 8
    retries: int = 3
    rate: float | None = None
    seed: int | None = None  # for the jitter; None in real runs
    ahead: int | None = None  # intents committed ahead of the free slots (None: ahead_for(concurrency))


def ahead_for(concurrency: int) -> int:
    """Rows whose intent is committed before a slot is free for them: half the concurrency, at least 2
    (enough for the replies that arrive during one commit's fsync, even on a slow disk).

    After a kill -9 the rows with an intent and no outcome are `unknown` (never re-sent without
    --retry-unknown): at most concurrency + ahead_for(concurrency) of them (12 at the default 8, 24 at 16).
    """
    return max(2, concurrency // 2)


@dataclass
class _State:
    stop_reason: StopReason | None = None
    stop_cause: str = ""  # a run stopped as unreachable: what the last connection attempt ran into
    unauthorized_streak: int = 0
    unknown_streak: int = 0
    active: int = 0  # rows started and not yet recorded
    waiting: int = 0  # of those, rows sleeping before a retry (they hold no request slot)
    finished: list[tuple[CallRequest, Outcome]] = field(default_factory=list)
    crash: BaseException | None = None  # a bug inside a row's task, re-raised by run()
    began: float = 0.0  # clock time the run began
    answered_at: float | None = None  # clock time of the last real answer (anything but "retry later")
    sending: dict[int, float] = field(default_factory=dict)  # id(row) -> when its current attempt left
    resuming: dict[int, tuple[float, float]] = field(default_factory=dict)  # id(row) -> (server wait ends, asked)


class Runner:
    """One run's sending: `await Runner(...).run(requests)` returns why it stopped early, or None."""

    def __init__(self, sender: Sender, options: SendOptions, *, journal: Journal | None = None,
                 on_outcome: Callable[[CallRequest, Outcome], None] | None = None,
                 stop: asyncio.Event | None = None, sleep: Sleep = asyncio.sleep,
                 pacer: Pacer | None = None, budget: RetryBudget | None = None,
                 on_tick: Callable[[Activity], None] | None = None, clock: Clock = time.monotonic) -> None:
        self._sender = sender
        self._options = options
        self._journal = journal or NoJournal()
        self._on_outcome = on_outcome or (lambda call, outcome: None)
        self._stop = stop or asyncio.Event()  # set from outside: Ctrl-C / SIGTERM
        self._sleep = sleep
        self._pacer = pacer or Pacer(options.rate, sleep=sleep)
        self._budget = budget or RetryBudget()
        self._rng = random.Random(options.seed)
        self._state = _State()
        self._wake = asyncio.Event()
        self._halted = asyncio.Event()
        self._slots = asyncio.Semaphore(options.concurrency)
        self._on_tick = on_tick
        self._clock = clock
        self._deadline: float | None = getattr(sender, "deadline_s", None)  # no attempt outlives this
        self._ahead = options.ahead if options.ahead is not None else ahead_for(options.concurrency)
        self._ready: deque[CallRequest] = deque()  # intents committed, not started yet
        self._tasks: set[asyncio.Task[None]] = set()

    def activity(self) -> Activity:
        """What the run is doing now: replies awaited (and the longest they can still take), rows waiting
        to retry, and the longest wait a server asked for."""
        state, now = self._state, self._clock()
        oldest = now - min(state.sending.values()) if state.sending else 0.0
        left = None if self._deadline is None else (max(0.0, self._deadline - oldest) if state.sending else 0.0)
        waits = [(until - now, asked) for until, asked in state.resuming.values() if until > now]
        longest = max(waits, default=(0.0, 0.0))
        paused = self._pacer.pause_left()  # every start waits out the Retry-After of a burst of 429s
        if paused > longest[0]:
            longest = (paused, paused)
        return Activity(len(state.sending), oldest, left, state.waiting, longest[0], longest[1])

    @property
    def stop_reason(self) -> StopReason | None:
        return self._state.stop_reason

    @property
    def stop_cause(self) -> str:
        """Stopped as unreachable: what the last connection attempt ran into ("connection refused by host:443")."""
        return self._state.stop_cause

    def _stopping(self) -> bool:
        if self._stop.is_set() and not self._halted.is_set():
            self._halt(StopReason.INTERRUPTED)
        return self._halted.is_set()

    def _halt(self, reason: StopReason) -> None:
        """Start no new row and no further retry; the first reason given is the one reported."""
        if self._state.stop_reason is None:
            self._state.stop_reason = reason
        self._halted.set()
        self._wake.set()

    async def run(self, requests: Iterable[CallRequest]) -> StopReason | None:
        """Send every row (or until a stop); every started row is reported exactly once.

        Intents are committed a bounded step ahead of the free slots (`SendOptions.ahead` rows), so a slot
        freed by a reply starts its next row at once instead of waiting for a commit. After a 403 or a row
        with no usable reply, new rows start one at a time once those in flight are back, until a row gets a
        real answer (`_probing`): a wrong token costs at most the requests already in flight plus the ones
        that complete the streak of three, and a server that answers nothing only the requests in flight.
        """
        state, source = self._state, iter(requests)
        exhausted = False
        state.began = self._clock()
        stop_watch = asyncio.ensure_future(self._watch_stop())
        ticker = asyncio.ensure_future(self._tick()) if self._on_tick is not None else None
        ready = self._ready
        try:
            while True:
                self._wake.clear()  # anything that happens from here on (even during the commit) wakes us
                self._fill()
                starting: list[CallRequest] = []
                while (not exhausted and not self._stopping() and state.waiting < MAX_WAITING
                       and len(ready) + len(starting) < self._wanted()):
                    call = next(source, None)
                    if call is None:
                        exhausted = True
                    else:
                        starting.append(call)
                if ready and self._stopping():  # committed as starting, never sent: they end pending
                    state.finished += [(call, _pending(0, state.stop_reason)) for call in ready]
                    ready.clear()
                finished, state.finished = state.finished, []
                if finished or starting:  # outcomes that arrive meanwhile wait for the next commit
                    await self._journal.commit(finished, starting)
                for call, outcome in finished:
                    self._on_outcome(call, outcome)
                ready.extend(starting)
                self._fill()
                if state.crash is not None:
                    raise state.crash
                if not state.active and not state.finished and not ready and (exhausted or self._stopping()):
                    return state.stop_reason
                if not state.finished:
                    await self._wake.wait()
        finally:
            stop_watch.cancel()
            if ticker is not None:
                ticker.cancel()
            for task in self._tasks:
                task.cancel()

    def _free(self) -> int:
        """Request slots free for a new row (rows sleeping before a retry hold none)."""
        state = self._state
        return self._options.concurrency - (state.active - state.waiting)

    def _wanted(self) -> int:
        """How many committed-but-unstarted rows to hold: the free slots plus `ahead`; while probing (see
        `_probing`), one at a time."""
        state = self._state
        if self._probing():
            return 1 if not state.active else 0
        return max(0, self._free()) + self._ahead

    def _probing(self) -> bool:
        """After a 403, or a row that got no usable reply (a hang, a reset, a 502), no new row starts while
        others are in flight, and then one at a time, until a row gets a real answer: the rows already out
        tell whether the server works, and each row started meanwhile could only be one more rejected or
        unknown call. A working server answers another row within milliseconds, so this costs it nothing."""
        state = self._state
        return bool(state.unauthorized_streak or state.unknown_streak)

    def _may_start(self) -> bool:
        """Whether a committed row may start now: a slot is free, not too many rows wait to retry, no probe
        is out (`_probing`), and the run is not stopping."""
        state = self._state
        return (bool(self._ready) and self._free() > 0 and state.waiting < MAX_WAITING
                and (not self._probing() or not state.active) and not self._stopping())

    def _fill(self) -> None:
        """Start committed rows while slots are free (called by the loop, and by a row that waits to retry)."""
        while self._may_start():
            self._state.active += 1
            task = asyncio.ensure_future(self._slot(self._ready.popleft()))
            self._tasks.add(task)
            task.add_done_callback(self._task_done)

    async def _slot(self, call: CallRequest) -> None:
        """Send a row; then, while a committed row may start, the next one in the same task. A freed slot's
        next request leaves in the same turn of the event loop as the reply that freed it, with no task to
        create and schedule in between (that turn was a few percent of the run at 50 ms)."""
        while True:
            await self._settle(call)
            if not self._may_start():
                return
            call = self._ready.popleft()
            self._state.active += 1

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._wake.set()
        if not task.cancelled() and task.exception() is not None:
            self._state.crash = task.exception()  # a bug: run() raises it

    async def _watch_stop(self) -> None:
        await self._stop.wait()
        self._halt(StopReason.INTERRUPTED)
        if self._on_tick is not None:  # what the stop waits for, at once
            self._on_tick(self.activity())

    async def _tick(self) -> None:
        """Tell `on_tick` what the run is doing every TICK_S, even while no reply arrives."""
        assert self._on_tick is not None
        while True:
            await asyncio.sleep(TICK_S)
            self._on_tick(self.activity())

    async def _settle(self, call: CallRequest) -> None:
        """All attempts of one row, ending in exactly one recorded outcome.

        A failed attempt that provably did not take effect (could not connect, 503) is retried up to
        --retries times, each retry paid from the run-wide budget. An answer that says when to come back
        (429, or 503 with Retry-After) is the server deferring the request: it is waited out without using
        up --retries, up to MAX_DEFERRALS times, and costs the budget nothing while the server keeps giving
        real answers to other rows (a rate-limited server is slow, not down). Only when no real answer came
        for PROGRESS_GRACE_S are deferrals paid too; after OUTAGE_S without one, the run stops.
        """
        state, attempts, failures, deferrals, stale, key = self._state, 0, 0, 0, 0, id(call)
        verdict: Verdict | None = None  # the last attempt's, for a row the run stops before its next attempt
        while True:
            attempts += 1
            async with self._slots:
                await self._paced()
                if self._stopping():  # stopped while this row waited for its turn: it is not sent
                    return self._record(call, _pending(attempts - 1, self._state.stop_reason, verdict))
                state.sending[key] = self._clock()
                try:
                    verdict = await self._sender.attempt(call)
                finally:
                    del state.sending[key]
            self._pacer.answered(verdict.http_status == 429, verdict.retry_after)
            if not verdict.retry:
                if verdict.http_status is not None:
                    state.answered_at = self._clock()
                if verdict.status is Status.DISPOSED and attempts == 1:
                    self._budget.refund()
                self._note_streaks(verdict.status)
                return self._record(call, _outcome(verdict, attempts))
            if verdict.stale and stale < MAX_DEFERRALS and not self._stopping():
                stale += 1  # the server closed a kept-alive connection: again at once, on a new one, for free
                continue
            deferred = verdict.http_status in (429, 503) and (verdict.retry_after is not None
                                                               or verdict.http_status == 429)
            deferrals, failures = deferrals + deferred, failures + (not deferred)
            if failures > self._options.retries or deferrals > MAX_DEFERRALS:
                return self._record(call, _outcome(verdict, attempts, f" (gave up after {_attempts(attempts)})"))
            if self._stopping():
                return self._record(call, _pending(attempts, self._state.stop_reason, verdict))
            if not self._may_retry(deferred):
                reason = StopReason.UNREACHABLE if verdict.http_status is None else StopReason.UNAVAILABLE
                if self._state.stop_reason is None and reason is StopReason.UNREACHABLE:
                    self._state.stop_cause = verdict.cause
                self._halt(reason)
                return self._record(call, _pending(attempts, reason, verdict))
            wait = backoff(failures + deferrals, self._rng, verdict.retry_after)
            if verdict.retry_after is not None:
                state.resuming[key] = (self._clock() + wait, verdict.retry_after)
            state.waiting += 1
            self._fill()  # a waiting row frees its place for another
            self._wake.set()
            try:
                interrupted = await self._pause(wait)
            finally:
                state.waiting -= 1
                state.resuming.pop(key, None)
            if interrupted:
                return self._record(call, _pending(attempts, self._state.stop_reason, verdict))

    def _may_retry(self, deferred: bool) -> bool:
        """Whether the run can afford one more retry (see `_settle`)."""
        state, now = self._state, self._clock()
        quiet = now - (state.answered_at if state.answered_at is not None else state.began)
        if quiet >= OUTAGE_S:
            return False
        if deferred and state.answered_at is not None and now - state.answered_at < PROGRESS_GRACE_S:
            return True
        return self._budget.take()

    async def _paced(self) -> None:
        """Wait for the pacer's go, or until the run starts stopping (a slow pacer must not hold the stop)."""
        if self._pacer.limit is None and not self._pacer.paused():
            return await self._pacer.wait()  # the hot path: no limit, nothing to wait for
        if not self._stopping():
            await self._unless_halted(self._pacer.wait())
        return None

    async def _pause(self, seconds: float) -> bool:
        """Sleep before a retry; True if the run began stopping meanwhile."""
        if not self._stopping():
            await self._unless_halted(self._sleep(seconds))
        return self._stopping()

    async def _unless_halted(self, waiting: Awaitable[None]) -> None:
        """Await `waiting`, or stop awaiting it (cancelled) as soon as the run begins stopping."""
        task = asyncio.ensure_future(waiting)
        stopper = asyncio.ensure_future(self._halted.wait())
        try:
            await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            task.cancel()
            stopper.cancel()

    def _note_streaks(self, status: Status) -> None:
        """3 rejected tokens in a row stop the run; so does a wave of replies we cannot use (a server that
        hangs, resets or answers 502/504 to everything): each more row sent would only be one more unknown."""
        state = self._state
        state.unauthorized_streak = state.unauthorized_streak + 1 if status is Status.UNAUTHORIZED else 0
        state.unknown_streak = state.unknown_streak + 1 if status is Status.UNKNOWN else 0
        if state.unauthorized_streak >= UNAUTHORIZED_STOP:
            self._halt(StopReason.UNAUTHORIZED)
        if state.unknown_streak >= max(UNKNOWN_STOP_MIN, self._options.concurrency):
            self._halt(StopReason.UNRESPONSIVE)

    def _record(self, call: CallRequest, outcome: Outcome) -> None:
        """The row's one outcome: its slot is free from now on (`_slot` gives it at once to a row whose intent
        is already committed), so the next commit can carry both this outcome and the intent of the row
        that takes its place."""
        self._state.finished.append((call, outcome))
        self._state.active -= 1
        self._wake.set()


STOP_MESSAGES = {
    StopReason.UNAUTHORIZED: "not sent: the run stopped after the server rejected the token 3 times in a row",
    StopReason.UNAVAILABLE: "not sent: the run stopped because the server looks unavailable "
    "(it kept asking us to retry, and served nothing meanwhile); safe to re-run",
    StopReason.UNREACHABLE: "not sent: the run stopped because the server could not be reached; safe to re-run",
    StopReason.UNRESPONSIVE: "not sent: the run stopped because the server stopped answering usably "
    "(many requests in a row got no reply, or not the API's); safe to re-run",
    StopReason.INTERRUPTED: "not sent: the run was interrupted; safe to re-run",
    StopReason.STRICT: "not sent: --strict and the file has invalid rows; fix them and run again",
}


def _outcome(verdict: Verdict, attempts: int, suffix: str = "") -> Outcome:
    return Outcome(verdict.status, verdict.message + suffix, verdict.http_status, attempts, iso_now())


def _pending(attempts: int, reason: StopReason | None, last: Verdict | None = None) -> Outcome:
    message = STOP_MESSAGES[reason or StopReason.INTERRUPTED]
    if attempts:
        what = "could not connect" if last is not None and last.http_status is None else "answered 'busy, retry later'"
        message += f" ({_attempts(attempts)} {what}{': ' + last.cause if last is not None and last.cause else ''})"
    return Outcome(Status.PENDING, message, None, attempts, iso_now())


def _attempts(count: int) -> str:
    return f"{count} attempt{'s' if count != 1 else ''}"
