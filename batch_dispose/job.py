"""One command's work on its files: plan each (`planning.py`), send, write the workbook.

This is the library behind `run` and `validate` (and `sweep`, file by file, and the ops page). It
prints nothing: progress goes to a `Reporter`, results come back as `FileResult`s.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from . import __version__
from .errors import InputFileError, LedgerError
from .models import (
    Activity,
    CallRequest,
    ExitCode,
    FileResult,
    Outcome,
    RowResults,
    Status,
    StopReason,
    utc_now,
)
from .planning import Edits, load_table, plan
from .settings import Settings

if TYPE_CHECKING:
    import httpx

    from .credentials import Secret
    from .ledger import Ledger
    from .loading import Table

RUN_STATUSES = tuple(status for status in Status if status is not Status.READY)
VALIDATE_STATUSES = (Status.READY, Status.SKIPPED, Status.UNKNOWN, Status.INVALID)
PREVIEW_REQUESTS = 3


class Reporter(Protocol):
    """Where a command's progress goes (the CLI's bar or progress lines)."""

    def file_started(self, path: Path, rows: int, to_send: int) -> None: ...

    def outcome(self, status: Status) -> None: ...

    def tick(self, activity: Activity) -> None:
        """What the run is doing (replies awaited, rows waiting to retry), about twice a second while it sends."""

    def notice(self, text: str) -> bool:
        """One line to show before the first request leaves (a ledger that never saw this host); True if shown
        (the end-of-file summary then does not repeat it)."""

    def file_finished(self, result: FileResult) -> None: ...


class QuietReporter:
    """A reporter that shows nothing."""

    def file_started(self, path: Path, rows: int, to_send: int) -> None:
        return None

    def outcome(self, status: Status) -> None:
        return None

    def tick(self, activity: Activity) -> None:
        return None

    def notice(self, text: str) -> bool:
        return False

    def file_finished(self, result: FileResult) -> None:
        return None


def combined_exit_code(results: Sequence[FileResult]) -> ExitCode:
    """Several files (run A B…, sweep): 75 or 3 if any file had it, else 1 if any did not end 0, else 0."""
    codes = {result.exit_code for result in results}
    for code in (ExitCode.LOCKED, ExitCode.UNAUTHORIZED):
        if code in codes:
            return code
    return ExitCode.OK if codes <= {ExitCode.OK} else ExitCode.ROWS_LEFT


def exit_code_for(counts: Mapping[Status, int], stop_reason: StopReason | None = None) -> ExitCode:
    """3 only for a token problem: the run stopped on 3 rejections in a row, or every row it sent was rejected
    (too few to make three); a lone 403 among answered calls is that row's status (exit 1)."""
    unauthorized = counts.get(Status.UNAUTHORIZED, 0)
    answered = sum(counts.get(status, 0) for status in (Status.DISPOSED, Status.FAILED, Status.UNKNOWN))
    if stop_reason is StopReason.UNAUTHORIZED or (unauthorized and not answered):
        return ExitCode.UNAUTHORIZED
    if any(counts.get(status) for status in (Status.FAILED, Status.INVALID, Status.PENDING, Status.UNKNOWN,
                                             Status.UNAUTHORIZED)):
        return ExitCode.ROWS_LEFT
    return ExitCode.OK


def summary_rows(table: Table, settings: Settings, counts: Mapping[Status, int], statuses: Sequence[Status], *,
                 started, finished, command: str, stop_reason: StopReason | None,  # type: ignore[no-untyped-def]
                 warnings: Sequence[str]) -> list[tuple[str, object]]:
    """The Summary sheet: counts, the file and its SHA-256, the host, times, settings, version."""
    from .workbook import local_time

    rows: list[tuple[str, object]] = [("Command", command), ("Rows", len(table))]
    rows += [(status.value, counts.get(status, 0)) for status in statuses]
    rows.append(("Rows without call data (ignored)", table.ignored))
    rows += [
        ("Input file", str(table.path.resolve())),
        ("Sheet", table.sheet or "(CSV)"),
        ("Input SHA-256", table.sha256),
        ("Ryng host", settings.base_url or "(not set)"),
        ("Started", local_time(started)),
        ("Finished", local_time(finished)),
        ("Duration (s)", round((finished - started).total_seconds(), 3)),
    ]
    if stop_reason is not None:
        rows.append(("Stopped early", stop_reason.value))
    rows += [(f"Setting: {name}", value) for name, value in settings.described()]
    rows += [("Warning", warning) for warning in warnings]
    rows.append(("Tool version", f"batch-dispose {__version__}"))
    return rows


def validate_file(path: Path, settings: Settings, *, reporter: QuietReporter | Reporter | None = None,
                  edits: Edits | None = None, excluded: Collection[int] | None = None,
                  ) -> tuple[FileResult, list[str]]:
    """`validate`: the -checked- workbook with ready/invalid rows, and a preview of the first requests.

    A file without a notes column (and no --no-notes) raises InputFileError, as `run` does: no workbook."""
    from .client import preview
    from .loading import read_dispositions
    from .preflight import check_places
    from .prior import reading
    from .workbook import write_results

    started = utc_now()
    check_places(settings, ledger=False)
    allowed = read_dispositions(settings.dispositions) if settings.dispositions else None
    with reading(settings) as history:  # with a target: rows `run` would skip show as skipped
        decided = plan(load_table(path, settings), settings, allowed, history, edits=edits, excluded=excluded)
    table = decided.table
    for call in decided.to_send:
        decided.results.set(call.index, Outcome(Status.READY, "ready to send"))
    counts = decided.results.counts()
    finished = utc_now()
    summary = summary_rows(table, settings, counts, VALIDATE_STATUSES, started=started, finished=finished,
                           command="validate", stop_reason=None, warnings=decided.warnings)
    results_path = write_results(table, decided.results, summary, reports_dir=settings.reports_dir, started=started,
                                 kind="checked", notes=decided.edited)
    previews = [preview(settings.base_url, call) for call in decided.to_send[:PREVIEW_REQUESTS]]
    shown = {s: counts[s] for s in VALIDATE_STATUSES}
    if counts[Status.PENDING]:
        shown[Status.PENDING] = counts[Status.PENDING]  # rows excluded in the page
    result = FileResult(path, results_path, len(table), shown, started, finished,
                        ExitCode.ROWS_LEFT if counts[Status.INVALID] or counts[Status.UNKNOWN] else ExitCode.OK,
                        warnings=tuple(decided.warnings), ignored=table.ignored,
                        problems=decided.results.problems(table.rows, table.field_cells("callID")))
    (reporter or QuietReporter()).file_finished(result)
    return result, previews


def stops_the_batch(result: FileResult) -> StopReason | None:
    """After a file that stopped for a rejected token or an interruption, later files are not run
    (they would stop the same way)."""
    return result.stop_reason if result.stop_reason in (StopReason.UNAUTHORIZED, StopReason.INTERRUPTED) else None


async def run_files(paths: Sequence[Path], settings: Settings, token: Secret, *,
                    reporter: Reporter | None = None, stop: asyncio.Event | None = None,
                    transport: httpx.AsyncBaseTransport | None = None,
                    after_file: Callable[[FileResult], None] | None = None,
                    stop_when: Callable[[FileResult], StopReason | None] = stops_the_batch,
                    edits: Edits | None = None, excluded: Collection[int] | None = None,
                    ) -> list[FileResult]:
    """`run`: each file in turn, holding the ledger's lock throughout. An unusable file is reported
    and the rest still run; once `stop_when` names a reason, the later files are reported as not run.
    `after_file` sees each result as soon as its workbook is written (sweep moves the file then).
    `edits` and `excluded` (see `plan`) are for a run of one file (the ops page).
    Raises LockHeldError (nothing sent) if another run holds the lock."""
    from .ledger import Ledger
    from .preflight import check_places

    check_places(settings)  # before the first request leaves: a sentence, exit 2, nothing sent
    assert not (edits or excluded) or len(paths) == 1, "edits and exclusions belong to one file"
    with Ledger.open(settings.ledger_path) as ledger:
        notice = ledger.take_over(settings.old_ledger_path)
        if notice:
            ledger.notices.append(notice)
        return await _run_files(paths, settings, token, reporter or QuietReporter(), stop or asyncio.Event(),
                                transport, ledger, after_file or (lambda result: None), stop_when,
                                _Edits(edits, excluded))


async def _run_files(paths: Sequence[Path], settings: Settings, token: Secret, reporter: Reporter,
                     stop: asyncio.Event, transport: httpx.AsyncBaseTransport | None, ledger: Ledger,
                     after_file: Callable[[FileResult], None],
                     stop_when: Callable[[FileResult], StopReason | None], changes: _Edits,
                     ) -> list[FileResult]:
    from .client import RyngClient
    from .loading import read_dispositions
    from .transport import default_transport

    assert settings.base_url is not None, "run needs a base URL"
    allowed = read_dispositions(settings.dispositions) if settings.dispositions else None
    client = RyngClient(settings.base_url, token, timeout=settings.timeout,
                        transport=transport or default_transport(settings.concurrency, settings.base_url))
    results: list[FileResult] = []
    stopped: StopReason | None = None
    try:
        for path in paths:
            if stopped is None and stop.is_set():
                stopped = StopReason.INTERRUPTED
            if stopped is not None:
                result = FileResult.not_run(path, stopped)
            else:
                try:
                    result = await _run_file(path, settings, allowed, client, reporter, stop, ledger, changes)
                except InputFileError as exc:
                    result = FileResult.unusable(path, str(exc))
                stopped = stop_when(result)
            reporter.file_finished(result)
            after_file(result)
            results.append(result)
    finally:
        await client.aclose()
    return results


@dataclass(frozen=True)
class _Edits:
    edits: Edits | None = None
    excluded: Collection[int] | None = None


async def _run_file(path: Path, settings: Settings, allowed: Sequence[str] | None, client,  # type: ignore[no-untyped-def]
                    reporter: Reporter, stop: asyncio.Event, ledger: Ledger, changes: _Edits) -> FileResult:
    from .prior import SettlingJournal, new_host_notice
    from .runlog import RunLog
    from .runner import STOP_MESSAGES, Runner, SendOptions
    from .workbook import input_stem, write_results

    started = utc_now()
    assert settings.base_url is not None
    decided = plan(load_table(path, settings), settings, allowed, ledger.history_lookup(settings.base_url),
                   edits=changes.edits, excluded=changes.excluded)
    table = decided.table
    results = decided.results
    warnings = [*ledger.notices, *decided.warnings]
    ledger.notices.clear()
    stop_reason: StopReason | None = None
    stop_cause = ""
    if settings.strict and results.counts()[Status.INVALID]:
        stop_reason = StopReason.STRICT
        to_send: Sequence[CallRequest] = []
    else:
        to_send = decided.to_send
    new_host = new_host_notice(ledger, settings.base_url) if to_send else None
    noticed: tuple[str, ...] = ()
    if new_host:
        warnings.append(new_host)
        notice = getattr(reporter, "notice", None)
        # before anything goes out: a wrong --ledger or --subdomain can still be stopped
        if notice is not None and notice(f"note: {new_host}; Ctrl-C now if that is not what you meant"):
            noticed = (new_host,)
    reporter.file_started(path, len(table), len(to_send))
    call_ids = table.field_cells("callID")

    log = RunLog(settings.reports_dir, input_stem(path), started)
    warnings.extend(f"{old.name}: the run log of a run that was killed was renamed to {new.name}"
                    for old, new in log.folded)
    log.note(f"run of {path} ({len(table)} rows, {len(to_send)} to send) to {settings.base_url}")
    for index, status in enumerate(results.status):
        if status is not Status.PENDING:
            log.outcome(table.rows[index], call_ids[index], _outcome_at(results, index))

    def on_outcome(call: CallRequest, outcome: Outcome) -> None:
        settled = journal.settle(call, outcome)  # a re-sent unknown answered 500: probably disposed, not failed
        note = decided.notes.get(call.index) if settled is outcome else None  # else its message says it was re-sent
        outcome = settled
        never_left = outcome.status is Status.PENDING or (outcome.status is Status.FAILED
                                                          and outcome.http_status is None)
        if note and not never_left:  # "re-sent with --retry-unknown" is not true of a request that never left
            outcome = replace(outcome, message=f"{outcome.message} ({note})")
        results.set(call.index, outcome)
        log.outcome(call.row, call.call_id, outcome)
        reporter.outcome(outcome.status)

    try:
        run_id = ledger.begin_run(settings.base_url, path, table.sha256)
        journal = SettlingJournal(ledger.journal(settings.base_url, run_id), decided.resent_unknown)
        if to_send:
            runner = Runner(client, SendOptions(settings.concurrency, settings.retries, settings.rate),
                            journal=journal, on_outcome=on_outcome, stop=stop,
                            on_tick=getattr(reporter, "tick", None))
            stop_reason = await runner.run(to_send)
            stop_cause = runner.stop_cause
        for index in range(len(results)):  # rows the run never reached
            if results.status[index] is Status.PENDING and not results.message[index]:
                results.set(index, Outcome(Status.PENDING, STOP_MESSAGES[stop_reason or StopReason.INTERRUPTED]))
                log.outcome(table.rows[index], call_ids[index], _outcome_at(results, index))
        counts = results.counts()
        ledger.end_run(run_id, {status: counts[status] for status in RUN_STATUSES})
        finished = utc_now()
        if settings.force:
            warnings.append("--force: rows already disposed were sent again.")
        summary = summary_rows(table, settings, counts, RUN_STATUSES, started=started, finished=finished,
                               command="run", stop_reason=stop_reason, warnings=warnings)
        results_path = write_results(table, results, summary, reports_dir=settings.reports_dir, started=started,
                                     notes=decided.edited)
        with contextlib.suppress(LedgerError):  # only where to find the workbook: the run itself is recorded
            ledger.note_results(run_id, results_path)
        log.finish(results_path, [f"{status.value}: {counts[status]}" for status in RUN_STATUSES if counts[status]]
                   + [f"results: {results_path}"])
    finally:
        log.close()
    unavailable = sum(1 for status, http_status in zip(results.status, results.http_status, strict=True)
                      if status is Status.FAILED and http_status in UNAVAILABLE_STATUSES)
    return FileResult(path, results_path, len(table), {s: counts[s] for s in RUN_STATUSES}, started, finished,
                      exit_code_for(counts, stop_reason), stop_reason, tuple(warnings),
                      problems=results.problems(table.rows, call_ids), ignored=table.ignored, stop_cause=stop_cause,
                      noticed=noticed, unavailable=unavailable)


UNAVAILABLE_STATUSES = (None, 429, 503)  # a failed row with one of these never took effect: the next run sends it


def _outcome_at(results: RowResults, index: int) -> Outcome:
    return Outcome(results.status[index], results.message[index], results.http_status[index],
                   results.attempts[index], results.finished_at[index])
