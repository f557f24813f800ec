"""Progress on stderr: a tqdm bar at a terminal, a plain line every 10 seconds otherwise (cron)."""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TextIO

from .models import STATUS_ORDER, Activity, FileResult, Status

LINE_EVERY_S = 10.0
PROBLEMS = (Status.UNAUTHORIZED, Status.FAILED, Status.INVALID, Status.UNKNOWN)
PROBLEMS_PRINTED = 10  # rows to look at listed at the end of a file (all are in the workbook)


def counts_text(counts: Mapping[Status, int] | Mapping[str, int], *, empty: str = "nothing") -> str:
    """`33 disposed, 2 failed` in the usual status order, zeros left out; keyed by Status or by its text
    (a run's counts as the ledger keeps them)."""
    parts = [f"{counts[status]} {status.value}" for status in STATUS_ORDER if counts.get(status)]
    return ", ".join(parts) or empty


def activity_text(activity: Activity | None) -> str:
    """`waiting for 4 replies (oldest 12 s); server asked to wait 60 s`, or "" when nothing is awaited."""
    if activity is None:
        return ""
    parts = []
    if activity.in_flight:
        parts.append(f"waiting for {_replies(activity.in_flight)} (oldest {activity.oldest_s:.0f} s)")
    if activity.waiting:
        parts.append(f"{activity.waiting} to retry")
    if activity.server_wait_s >= 1:
        asked = activity.server_asked_s
        capped = f" (it asked for {asked:.0f} s)" if asked > activity.server_wait_s + 60 else ""
        parts.append(f"server asked to wait: {activity.server_wait_s:.0f} s{capped}")
    return "; ".join(parts)


def _replies(count: int) -> str:
    return f"{count} repl{'y' if count == 1 else 'ies'}"


class BarReporter:
    """A tqdm bar per file with counts per status, the rate, and what it is waiting for (a person at a
    terminal). It is refreshed on every tick (twice a second) even when no reply arrives, and its ETA is
    from the average rate since the start, so a stretch of hung requests does not make it jump."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._bar = None
        self._counts: Counter[Status] = Counter()
        self._activity = ""

    def notice(self, text: str) -> bool:
        print(text, file=self._stream, flush=True)
        return True

    def file_started(self, path: Path, rows: int, to_send: int) -> None:
        from tqdm import tqdm

        self._counts, self._activity = Counter(), ""
        self._bar = tqdm(total=to_send, desc=path.name, unit="call", file=self._stream, dynamic_ncols=True,
                         leave=True, mininterval=0.2, smoothing=0)

    def outcome(self, status: Status) -> None:
        self._counts[status] += 1
        if self._bar is not None:
            self._bar.update(1)
            if self._bar.n == self._bar.total or self._bar.n % 25 == 0:
                self._bar.set_postfix_str(self._postfix(), refresh=False)

    def tick(self, activity: Activity) -> None:
        self._activity = activity_text(activity)
        if self._bar is not None:
            self._bar.set_postfix_str(self._postfix(), refresh=False)
            self._bar.refresh()

    def _postfix(self) -> str:
        return "; ".join(filter(None, (counts_text(self._counts), self._activity)))

    def file_finished(self, result: FileResult) -> None:
        if self._bar is not None:
            self._bar.set_postfix_str(counts_text(self._counts), refresh=False)
            self._bar.close()
            self._bar = None


class LineReporter:
    """One progress line every 10 seconds on stderr (no terminal: cron mail stays readable), also while
    no reply arrives, saying how many replies it is waiting for."""

    def __init__(self, stream: TextIO, *, every: float = LINE_EVERY_S, clock=time.monotonic) -> None:  # type: ignore[no-untyped-def]
        self._stream = stream
        self._every = every
        self._clock = clock
        self._counts: Counter[Status] = Counter()
        self._name = ""
        self._total = 0
        self._started = self._last = 0.0
        self._activity: Activity | None = None

    def notice(self, text: str) -> bool:
        print(f"batch-dispose: {text}", file=self._stream, flush=True)
        return True

    def file_started(self, path: Path, rows: int, to_send: int) -> None:
        self._counts, self._activity = Counter(), None
        self._name, self._total = path.name, to_send
        self._started = self._last = self._clock()

    def outcome(self, status: Status) -> None:
        self._counts[status] += 1
        self._maybe_print()

    def tick(self, activity: Activity) -> None:
        self._activity = activity
        self._maybe_print()

    def _maybe_print(self) -> None:
        now = self._clock()
        if now - self._last >= self._every:
            self._last = now
            done = sum(self._counts.values())
            rate = done / max(now - self._started, 1e-9)
            doing = activity_text(self._activity)
            counts = f" ({counts_text(self._counts)})" if done else ""  # not "0/10 done (nothing)"
            print(f"batch-dispose: {self._name}: {done}/{self._total} done{counts}, "
                  f"{rate:.1f}/s{'; ' + doing if doing else ''}", file=self._stream, flush=True)

    def file_finished(self, result: FileResult) -> None:
        return None


class Watch:
    """Wraps the reporter of a run, and remembers what the run last said it was doing, so that the CLI's
    Ctrl-C handler can say what the stop waits for (`stopping_line`)."""

    def __init__(self, reporter, *, clock=time.monotonic) -> None:  # type: ignore[no-untyped-def]
        self._reporter = reporter
        self._clock = clock
        self._activity: Activity | None = None
        self._at = 0.0

    def notice(self, text: str) -> bool:
        notice = getattr(self._reporter, "notice", None)
        return bool(notice(text)) if notice is not None else False

    def file_started(self, path: Path, rows: int, to_send: int) -> None:
        self._activity = None
        self._reporter.file_started(path, rows, to_send)

    def outcome(self, status: Status) -> None:
        self._reporter.outcome(status)

    def tick(self, activity: Activity) -> None:
        self._activity, self._at = activity, self._clock()
        tick = getattr(self._reporter, "tick", None)
        if tick is not None:
            tick(activity)

    def file_finished(self, result: FileResult) -> None:
        self._activity = None
        self._reporter.file_finished(result)

    def stopping_line(self) -> str:
        """`stopping: waiting for 4 replies, at most 28 s; Ctrl-C again to quit at once`."""
        activity = self._activity
        if activity is None or not activity.in_flight:
            return "stopping: no new requests; finishing up (Ctrl-C again to quit at once)"
        if activity.longest_left_s is None:
            limit = f"the oldest has waited {activity.oldest_s + self._clock() - self._at:.0f} s"
        else:
            limit = f"at most {max(1.0, activity.longest_left_s - (self._clock() - self._at)):.0f} s"
        return (f"stopping: no new requests; waiting for {_replies(activity.in_flight)}, {limit}; "
                f"Ctrl-C again to quit at once")


def reporter_for(stream: TextIO, *, quiet: bool):  # type: ignore[no-untyped-def]
    """The bar at a terminal, lines otherwise; nothing with --quiet."""
    from .job import QuietReporter

    if quiet:
        return QuietReporter()
    isatty = getattr(stream, "isatty", None)
    return BarReporter(stream) if isatty is not None and isatty() else LineReporter(stream)


def summary_lines(result: FileResult, *, swept: bool = False) -> list[str]:
    """The short end-of-file summary for stderr (`swept`: in a sweep, whose advice is the next sweep)."""
    if result.results_path is None:
        if swept and result.stop_reason is not None:
            return [f"{result.input_path}: {not_run_line(result)}"]
        return [result.error or f"{result.input_path}: not run."]
    counts = {Status(key): value for key, value in result.counts.items()}
    lines = [f"{result.input_path.name}: {result.rows} row{'s' if result.rows != 1 else ''}: {counts_text(counts)} "
             f"({result.duration_s:.1f} s)"]
    lines += [f"warning: {warning}" for warning in result.warnings if warning not in result.noticed]  # said once
    if result.stop_reason is not None:
        lines.append(stop_line(result, swept=swept))
    left = sum(result.counts.get(status, 0) for status in PROBLEMS)
    shown = result.problems[:PROBLEMS_PRINTED]
    if shown:
        first = f"the first {len(shown)} of " if left > len(shown) else ""
        lines.append(f"rows to look at ({first}{left}; all are in the workbook):")
        lines += _grouped(shown)
    if result.results_path is not None:
        lines.append(f"results: {result.results_path}")
    return lines


def stop_line(result: FileResult, *, swept: bool = False) -> str:
    """Why the file's run stopped early, in one line ("stopped: …"); for the summary and for --json. In a
    sweep the file stays in the inbox, so the advice is the next sweep, not running the workbook again."""
    assert result.stop_reason is not None
    cause = f" ({result.stop_cause})" if result.stop_cause else ""
    what, again = STOP_LINES[result.stop_reason.value]
    return what.format(cause=cause) + (SWEEP_AGAIN if swept and again else again)


def not_run_line(result: FileResult) -> str:
    """A file a sweep did not reach, stopped by an earlier file (`--json`'s `stopped` for it)."""
    assert result.stop_reason is not None
    return f"not run: the sweep stopped before this file ({result.stop_reason.value}); it stays in the inbox for " \
           f"the next sweep"


SWEEP_AGAIN = "; the file stays in the inbox and the next sweep sends the rest"  # a sweep's advice, for `run`'s


def _grouped(problems: Sequence[tuple[int, str, str, str]]) -> list[str]:
    """One line per distinct problem, naming its rows ("rows 2, 3, 4"): a server that refused every
    connection gives one line, not the same sentence ten times."""
    rows: dict[tuple[str, str], list[int]] = {}
    for row, _call_id, status, message in problems:
        rows.setdefault((status, message), []).append(row)
    lines = []
    for (status, message), numbers in rows.items():
        if len(numbers) == 1:
            lines.append(f"  row {numbers[0]:>5}  {status:<12} {message}")
        else:
            lines.append(f"  rows {', '.join(map(str, numbers))}  {status}: {message}")  # at most the 10 printed
    return lines


STOP_LINES = {  # why a file's run stopped early, and what to do about it after `run` (a sweep says SWEEP_AGAIN)
    "unauthorized": ("stopped: the server rejected the access token 3 times in a row; check RYNG_ACCESS_TOKEN "
                     "or the token file", ", then run the results workbook again"),
    "unavailable": ("stopped: the server looks unavailable (it kept answering 'busy, retry later')",
                    "; run the results workbook again later"),
    "unreachable": ("stopped: could not connect to the server{cause}; check --subdomain / --base-url and the "
                    "network", ", then run the results workbook again"),
    "unresponsive": ("stopped: the server stopped answering usably (many requests in a row got no reply, or not "
                     "the API's); check the unknown rows in Ryng", ", then run the results workbook again"),
    "interrupted": ("stopped: interrupted; the rows not sent are pending", "; run the results workbook again"),
    "strict": ("stopped: --strict and the file has invalid rows; nothing was sent", ""),
}


def print_lines(lines: list[str], stream: TextIO = sys.stderr) -> None:
    for line in lines:
        print(line, file=stream)
