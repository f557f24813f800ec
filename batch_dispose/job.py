"""One command's work on its files: load, validate, decide what to send, send, write the workbook.

This is the library behind `run` and `validate` (and `sweep`, file by file). It prints nothing:
progress goes to a `Reporter`, results come back as `FileResult`s.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from . import __version__
from .errors import InputFileError
from .models import (
    Activity,
    CallRequest,
    ExitCode,
    FileResult,
    Outcome,
    RowResults,
    Status,
    StopReason,
    iso,
    utc_now,
)
from .settings import Settings

if TYPE_CHECKING:
    import httpx

    from .credentials import Secret
    from .ledger import Ledger
    from .loading import Table

RUN_STATUSES = tuple(status for status in Status if status is not Status.READY)
VALIDATE_STATUSES = (Status.READY, Status.INVALID)
PREVIEW_REQUESTS = 3


class Reporter(Protocol):
    """Where a command's progress goes (the CLI's bar or progress lines)."""

    def file_started(self, path: Path, rows: int, to_send: int) -> None: ...

    def outcome(self, status: Status) -> None: ...

    def tick(self, activity: Activity) -> None:
        """What the run is doing (replies awaited, rows waiting to retry), about twice a second while it sends."""

    def file_finished(self, result: FileResult) -> None: ...


class QuietReporter:
    """A reporter that shows nothing."""

    def file_started(self, path: Path, rows: int, to_send: int) -> None:
        return None

    def outcome(self, status: Status) -> None:
        return None

    def tick(self, activity: Activity) -> None:
        return None

    def file_finished(self, result: FileResult) -> None:
        return None


@dataclass
class Plan:
    """What was decided about a file before anything is sent."""

    table: Table
    results: RowResults
    to_send: list[CallRequest]
    warnings: list[str]
    notes: dict[int, str]  # row index -> why it is sent although an earlier run settled it


def plan(table: Table, settings: Settings, allowed: Sequence[str] | None,
         history: Callable[[list[str]], Mapping[str, tuple[Status, str]]] | None = None) -> Plan:
    """Validate every row and decide which to send; the rest get their status now.

    A row an earlier run disposed (the ledger, or the status column of a results workbook given
    back) is skipped unless --force; one it left unknown stays unknown unless --retry-unknown.
    `history(call_ids)` answers from the ledger: call ID -> (SKIPPED or UNKNOWN, message).
    """
    from .schema import validate

    results = RowResults(len(table))
    validation = validate(table, allowed)
    for index, message in validation.messages.items():
        results.set(index, Outcome(Status.INVALID, message))
    known = history([call.call_id for call in validation.requests]) if history and validation.requests else {}
    to_send, notes = [], {}
    for call in validation.requests:
        earlier = _from_workbook(table, call.index) or known.get(call.call_id)
        if earlier is None:
            to_send.append(call)
            continue
        status, message = earlier
        if status is Status.SKIPPED and settings.force:
            notes[call.index] = "sent again with --force: it was " + message.split(";")[0]
        elif status is Status.UNKNOWN and (settings.retry_unknown or settings.force):
            notes[call.index] = "re-sent with --retry-unknown: it was " + message.split(";")[0]
        else:
            results.set(call.index, Outcome(status, message))
            continue
        to_send.append(call)
    return Plan(table, results, to_send, list(table.warnings), notes)


def _from_workbook(table: Table, index: int) -> tuple[Status, str] | None:
    """What the status column of a results workbook given back says about a row, if it settles it."""
    if table.prior_status is None:
        return None
    status = table.prior_status[index]
    when = table.prior_finished[index] if table.prior_finished else ""
    at = f" at {when}" if when else ""
    if status in (Status.DISPOSED, Status.SKIPPED):
        return Status.SKIPPED, f"already {status}{at} (results workbook); not sent again"
    if status == Status.UNKNOWN:
        return Status.UNKNOWN, (f"left unknown by an earlier run{at} (results workbook); not re-sent: check the "
                                f"call in Ryng, or re-run with --retry-unknown")
    return None


def combined_exit_code(results: Sequence[FileResult]) -> ExitCode:
    """Several files (run A B…, sweep): 75 or 3 if any file had it, else 1 if any did not end 0, else 0."""
    codes = {result.exit_code for result in results}
    for code in (ExitCode.LOCKED, ExitCode.UNAUTHORIZED):
        if code in codes:
            return code
    return ExitCode.OK if codes <= {ExitCode.OK} else ExitCode.ROWS_LEFT


def exit_code_for(counts: Mapping[Status, int]) -> ExitCode:
    if counts.get(Status.UNAUTHORIZED):
        return ExitCode.UNAUTHORIZED
    if any(counts.get(status) for status in (Status.FAILED, Status.INVALID, Status.PENDING, Status.UNKNOWN)):
        return ExitCode.ROWS_LEFT
    return ExitCode.OK


def summary_rows(table: Table, settings: Settings, counts: Mapping[Status, int], statuses: Sequence[Status], *,
                 started, finished, command: str, stop_reason: StopReason | None,  # type: ignore[no-untyped-def]
                 warnings: Sequence[str]) -> list[tuple[str, object]]:
    """The Summary sheet: counts, the file and its SHA-256, the host, times, settings, version."""
    rows: list[tuple[str, object]] = [("Command", command), ("Rows", len(table))]
    rows += [(status.value, counts.get(status, 0)) for status in statuses]
    rows += [
        ("Input file", str(table.path.resolve())),
        ("Sheet", table.sheet or "(CSV)"),
        ("Input SHA-256", table.sha256),
        ("Ryng host", settings.base_url or "(not set)"),
        ("Started (UTC)", iso(started)),
        ("Finished (UTC)", iso(finished)),
        ("Duration (s)", round((finished - started).total_seconds(), 3)),
    ]
    if stop_reason is not None:
        rows.append(("Stopped early", stop_reason.value))
    rows += [(f"Setting: {name}", value) for name, value in settings.described()]
    rows += [("Warning", warning) for warning in warnings]
    rows.append(("Tool version", f"batch-dispose {__version__}"))
    return rows


def validate_file(path: Path, settings: Settings, *, reporter: QuietReporter | Reporter | None = None
                  ) -> tuple[FileResult, list[str]]:
    """`validate`: the workbook with ready/invalid rows, and a preview of the first requests."""
    from .client import preview
    from .loading import load, read_dispositions
    from .workbook import write_results

    started = utc_now()
    allowed = read_dispositions(settings.dispositions) if settings.dispositions else None
    table = load(path)
    decided = plan(table, settings, allowed)
    for call in decided.to_send:
        decided.results.set(call.index, Outcome(Status.READY, "ready to send"))
    counts = decided.results.counts()
    finished = utc_now()
    summary = summary_rows(table, settings, counts, VALIDATE_STATUSES, started=started, finished=finished,
                           command="validate", stop_reason=None, warnings=decided.warnings)
    results_path = write_results(table, decided.results, summary, reports_dir=settings.reports_dir, started=started)
    previews = [preview(settings.base_url, call) for call in decided.to_send[:PREVIEW_REQUESTS]]
    result = FileResult(path, results_path, len(table), {s: counts[s] for s in VALIDATE_STATUSES}, started,
                        finished, ExitCode.ROWS_LEFT if counts[Status.INVALID] else ExitCode.OK,
                        warnings=tuple(decided.warnings), problems=decided.results.problems(table.rows))
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
                    ) -> list[FileResult]:
    """`run`: each file in turn, holding the ledger's lock throughout. An unusable file is reported
    and the rest still run; once `stop_when` names a reason, the later files are reported as not run.
    `after_file` sees each result as soon as its workbook is written (sweep moves the file then).
    Raises LockHeldError (nothing sent) if another run holds the lock."""
    from .ledger import Ledger

    with Ledger.open(settings.ledger_path) as ledger:
        return await _run_files(paths, settings, token, reporter or QuietReporter(), stop or asyncio.Event(),
                                transport, ledger, after_file or (lambda result: None), stop_when)


async def _run_files(paths: Sequence[Path], settings: Settings, token: Secret, reporter: Reporter,
                     stop: asyncio.Event, transport: httpx.AsyncBaseTransport | None, ledger: Ledger,
                     after_file: Callable[[FileResult], None],
                     stop_when: Callable[[FileResult], StopReason | None],
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
                    result = await _run_file(path, settings, allowed, client, reporter, stop, ledger)
                except InputFileError as exc:
                    result = FileResult.unusable(path, str(exc))
                stopped = stop_when(result)
            reporter.file_finished(result)
            after_file(result)
            results.append(result)
    finally:
        await client.aclose()
    return results


async def _run_file(path: Path, settings: Settings, allowed: Sequence[str] | None, client,  # type: ignore[no-untyped-def]
                    reporter: Reporter, stop: asyncio.Event, ledger: Ledger) -> FileResult:
    from .loading import load
    from .runlog import RunLog
    from .runner import STOP_MESSAGES, Runner, SendOptions
    from .workbook import input_stem, write_results

    started = utc_now()
    table = load(path)
    assert settings.base_url is not None
    decided = plan(table, settings, allowed, ledger.history_lookup(settings.base_url))
    results = decided.results
    stop_reason: StopReason | None = None
    if settings.strict and results.counts()[Status.INVALID]:
        stop_reason = StopReason.STRICT
        to_send: list[CallRequest] = []
    else:
        to_send = decided.to_send
    reporter.file_started(path, len(table), len(to_send))
    call_ids = table.field_cells("callID")

    log = RunLog(settings.reports_dir, input_stem(path), started)
    decided.warnings.extend(f"{old.name}: the run log of a run that was killed was renamed to {new.name}"
                            for old, new in log.folded)
    log.note(f"run of {path} ({len(table)} rows, {len(to_send)} to send) to {settings.base_url}")
    for index, status in enumerate(results.status):
        if status is not Status.PENDING:
            log.outcome(table.rows[index], call_ids[index], _outcome_at(results, index))

    def on_outcome(call: CallRequest, outcome: Outcome) -> None:
        note = decided.notes.get(call.index)
        if note:
            outcome = replace(outcome, message=f"{outcome.message} ({note})")
        results.set(call.index, outcome)
        log.outcome(call.row, call.call_id, outcome)
        reporter.outcome(outcome.status)

    try:
        run_id = ledger.begin_run(settings.base_url, path, table.sha256)
        if to_send:
            runner = Runner(client, SendOptions(settings.concurrency, settings.retries, settings.rate),
                            journal=ledger.journal(settings.base_url, run_id), on_outcome=on_outcome, stop=stop,
                            on_tick=getattr(reporter, "tick", None))
            stop_reason = await runner.run(to_send)
        for index in range(len(results)):  # rows the run never reached
            if results.status[index] is Status.PENDING and not results.message[index]:
                results.set(index, Outcome(Status.PENDING, STOP_MESSAGES[stop_reason or StopReason.INTERRUPTED]))
                log.outcome(table.rows[index], call_ids[index], _outcome_at(results, index))
        counts = results.counts()
        ledger.end_run(run_id, {status: counts[status] for status in RUN_STATUSES})
        finished = utc_now()
        warnings = list(decided.warnings)
        if settings.force:
            warnings.append("--force: rows already disposed were sent again.")
        summary = summary_rows(table, settings, counts, RUN_STATUSES, started=started, finished=finished,
                               command="run", stop_reason=stop_reason, warnings=warnings)
        results_path = write_results(table, results, summary, reports_dir=settings.reports_dir, started=started)
        log.finish(results_path, [f"{status.value}: {counts[status]}" for status in RUN_STATUSES if counts[status]]
                   + [f"results: {results_path}"])
    finally:
        log.close()
    return FileResult(path, results_path, len(table), {s: counts[s] for s in RUN_STATUSES}, started, finished,
                      exit_code_for(counts), stop_reason, tuple(warnings), problems=results.problems(table.rows))


def _outcome_at(results: RowResults, index: int) -> Outcome:
    return Outcome(results.status[index], results.message[index], results.http_status[index],
                   results.attempts[index], results.finished_at[index])
