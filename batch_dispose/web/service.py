"""The page's one door into the library: every call the page makes into batch_dispose's core is here.

The page is the CLI's product with a second face, so this module adds no behaviour of its own: it
loads with the CLI's loader, checks with `planning.plan` (the pandera schema and the ledger's history),
shows requests with `client.preview`, sends with `job.run_files`, and reads the history as
`history --json` does. When the core's signatures change, only this file changes.

Library calls made here (for re-pointing after a merge):
    planning.load_table(path, settings)     an upload read as `run` reads it (column mapping, --no-notes)
    loading.read_dispositions(path)         the --dispositions allow-list
    loading.MAX_BYTES, loading.FORMATS      the loader's limits, applied while an upload streams in
    loading.cell_text(value)                the text of a cell, for the first rows shown when no header is found
    planning.plan(table, settings, allowed, history, edits=, excluded=)   the check, as `validate` does
    job.run_files([path], settings, token, reporter=, stop=, edits=, excluded=)   the page's run IS `run`
    job.QuietReporter, job.RUN_STATUSES     the reporter seam (subclassed); the counts keys of `run --json`
    client.preview(base_url, call)          the first requests, token masked
    prior.reading(settings)                 the ledger's history for the check, read only (as validate)
    history.ask(path, call_ids=, limit=)    the history and "did call X go through?" (as history --json)
    settings.Settings.ledger_path, dataclasses.replace(settings, columns=, no_notes=)
    Table: .rows, .headers, .fields, .columns, .field_cells(), .sheet, .header_row, .ignored, .path
The edits and exclusions go to planning.plan / job.run_files, as `edits=` and `excluded=`.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import job, loading, planning
from ..errors import InputFileError, LedgerError, LockHeldError, UsageError
from ..models import FileResult, Outcome, Status
from .wording import for_page

if TYPE_CHECKING:
    from ..credentials import Secret
    from ..loading import Table
    from ..settings import Settings

__all__ = [
    "FIELDS",
    "MAX_BYTES",
    "Check",
    "FileResult",
    "InputFileError",
    "LedgerError",
    "LockHeldError",
    "QuietReporter",
    "UsageError",
    "allowed_dispositions",
    "call_history",
    "check",
    "load",
    "preview_grid",
    "run_file",
    "run_history",
    "with_columns",
]

FIELDS = ("callID", "logID", "disposition", "notes")
MAX_BYTES = loading.MAX_BYTES
FORMATS = tuple(loading.FORMATS)
RUN_STATUSES = tuple(status.value for status in job.RUN_STATUSES)
CHECK_STATUSES = ("ready", "invalid", "skipped", "unknown", "pending")
QuietReporter = job.QuietReporter
Edits = Mapping[int, Mapping[str, str]]


def load(path: Path, settings: Settings) -> Table:
    """An uploaded file read exactly as `run` reads it (with the settings' column mapping, once the
    loader has one); InputFileError carries the CLI's sentence."""
    return planning.load_table(path, settings)


def with_columns(settings: Settings, mapping: Mapping[str, str], no_notes: bool) -> Settings:
    """The settings with a column mapping chosen in the page (as --column FIELD=HEADER would give)."""
    changes: dict[str, Any] = {"columns": tuple(mapping.items())}
    if no_notes:
        changes["no_notes"] = True
    return replace(settings, **changes)


PREVIEW_ROWS = 30


def preview_grid(path: Path, limit: int = PREVIEW_ROWS) -> list[tuple[int, list[str]]]:
    """The first rows of the file's fullest sheet as text, (row number, cells), for picking the header row
    and the columns when the loader found no header. Only for showing: the loader alone reads calls.
    Empty when the file cannot be read at all (then there is nothing to pick)."""
    import csv
    import io
    import itertools

    found: list[tuple[int, list[str]]] = []
    try:
        data = path.read_bytes()
        if path.suffix.lower() == ".csv":
            try:
                text = data.decode("utf-8-sig")
            except UnicodeDecodeError:
                text = data.decode("cp1252", errors="replace")
            head = text[:65536]
            counts = {delimiter: head.count(delimiter) for delimiter in (",", ";", "\t", "|")}
            reader = csv.reader(io.StringIO(text, newline=""), delimiter=max(counts, key=counts.__getitem__))
            grid: Any = itertools.islice(reader, limit)
        else:
            import python_calamine

            with python_calamine.CalamineWorkbook.from_filelike(io.BytesIO(data)) as book:
                sheets = [book.get_sheet_by_index(n).to_python(skip_empty_area=False, nrows=limit)
                          for n in range(min(len(book.sheet_names), 10))]
            # the sheet with the most filled cells near its top: where the calls most likely are
            grid = max(sheets, key=lambda rows: sum(1 for row in rows for cell in row if cell not in ("", None)))
        for number, raw in enumerate(grid, start=1):
            cells = [loading.cell_text(value).strip() for value in raw]
            while cells and not cells[-1]:
                cells.pop()
            found.append((number, cells))
    except Exception:  # unreadable: the loader's sentence says why; nothing to pick from
        return []
    return found


def allowed_dispositions(settings: Settings) -> tuple[str, ...] | None:
    return loading.read_dispositions(settings.dispositions) if settings.dispositions else None


@dataclass
class Check:
    """What the page shows about an upload: each row's status and message, counts, columns, requests."""

    rows: list[int]  # spreadsheet row numbers, in order
    status: list[str]
    message: list[str]
    counts: dict[str, int]
    columns: dict[str, Any]
    previews: list[str]
    warnings: list[str]
    duplicates: int
    to_send: int
    ignored: int  # rows that are not calls (footers, helper formulas dragged down)
    index: dict[int, int] = field(default_factory=dict)  # row number -> position

    def problems(self, limit: int | None = None) -> list[dict[str, object]]:
        found = [{"row": row, "status": status, "message": message}
                 for row, status, message in zip(self.rows, self.status, self.message, strict=True)
                 if status != Status.READY]
        return found if limit is None else found[:limit]


def check(table: Table, settings: Settings, allowed: tuple[str, ...] | None, *,
          edits: Edits = {}, excluded: Collection[int] = ()) -> Check:  # noqa: B006 (read only)
    """`validate` on a loaded table with the page's edits and exclusions, consulting the ledger
    when a target is set (rows already disposed show `skipped`)."""
    from ..client import preview

    with _history(settings) as history:
        decided = planning.plan(table, settings, allowed, history, edits=edits, excluded=excluded)
    results = decided.results
    to_send = list(decided.to_send)
    for call in to_send:
        results.set(call.index, Outcome(Status.READY, "ready to send"))
    found = results.counts()
    counts = {name: found[Status(name)] for name in CHECK_STATUSES}
    statuses = [status.value for status in results.status]
    duplicates = sum(1 for index in decided.duplicates if results.status[index] is Status.INVALID)
    worded = {message: for_page(message) for message in set(results.message)}  # messages repeat: once each
    return Check(rows=list(table.rows), status=statuses, message=[worded[m] for m in results.message], counts=counts,
                 ignored=table.ignored,
                 columns=describe_columns(table), previews=[preview(settings.base_url, call) for call in to_send[:3]],
                 warnings=[for_page(warning) for warning in decided.warnings], duplicates=duplicates,
                 to_send=len(to_send),
                 index={row: position for position, row in enumerate(table.rows)})


def describe_columns(table: Table) -> dict[str, Any]:
    """Which sheet and header row were read, which column became each field, which are carried."""
    used = set(table.fields.values())
    return {
        "sheet": table.sheet,
        "header_row": table.header_row,
        "fields": {name: (table.headers[table.fields[name]] if name in table.fields else None) for name in FIELDS},
        "carried": [header or f"(column {position + 1})" for position, header in enumerate(table.headers)
                    if position not in used],
    }


def cells(table: Table, index: int, edits: Edits) -> dict[str, str]:
    """The four fields of one row as the page shows them (edited values where edited)."""
    row = table.rows[index]
    values = {name: table.field_cells(name)[index] for name in FIELDS}
    values.update(edits.get(row, {}))
    return values


def carried_columns(table: Table) -> list[list[str]]:
    """The cells of the carried columns (read once per page: the loader may read them from the file again)."""
    used = set(table.fields.values())
    return [column for position, column in enumerate(table.columns) if position not in used]


async def run_file(path: Path, settings: Settings, token: Secret, *, reporter: job.Reporter, stop: Any,
                   edits: Edits, excluded: Collection[int]) -> FileResult:
    """`batch-dispose run FILE` with the page's edits: the same load, plan, ledger, lock, runner and
    workbook. Raises LockHeldError when another run (the page's, the CLI's, cron's) holds the lock."""
    results = await job.run_files([path], settings, token, reporter=reporter, stop=stop,
                                  edits=edits, excluded=excluded)
    return results[0]


@contextmanager
def _history(settings: Settings) -> Iterator[Any]:
    """What the ledger knows, read only, for the check (as `validate` with a target); None without one."""
    from ..prior import reading

    with reading(settings) as lookup:
        yield lookup


def run_history(settings: Settings, limit: int = 50) -> list[dict[str, Any]]:
    """The runs the ledger knows (the page's, the CLI's, cron's), newest first: `history --json`'s runs."""
    from ..history import ask

    if not _any_ledger(settings):
        return []
    return list(ask(settings.ledger_path, limit=limit, old=settings.old_ledger_path).data["runs"])


def call_history(settings: Settings, call_id: str, limit: int = 50) -> dict[str, Any]:
    """What the ledger knows of one call ID (`history --json CALLID`'s record): its state and what was sent
    on each host, and every recorded outcome, newest first."""
    from ..history import ask

    if not _any_ledger(settings):
        return {"call": call_id, "known": False, "hosts": [], "events": [], "more_events": False, "alike": []}
    answer = ask(settings.ledger_path, call_ids=[call_id], limit=limit, old=settings.old_ledger_path)
    record = answer.data["calls"][call_id]
    for event in record["events"]:  # the ledger keeps the CLI's words ("re-run with --retry-unknown")
        event["message"] = for_page(event["message"] or "")
    return {"call": call_id, **record}


def recorded_workbook(settings: Settings, run_id: int, recorded: str | None = None) -> Path | None:
    """The results workbook the ledger recorded for run `run_id` (or `recorded`, already read), if it is an
    .xlsx file inside the reports folder: the page serves nothing else, whatever the ledger says."""
    from ..ledger import Ledger

    if recorded is None and settings.ledger_path.is_file():
        with Ledger.read(settings.ledger_path) as ledger:
            recorded = ledger.results_of(run_id) if ledger is not None else None
    if not recorded:
        return None
    path, folder = Path(recorded).resolve(), settings.reports_dir.resolve()
    return path if path.suffix == ".xlsx" and path.is_relative_to(folder) and path.is_file() else None


def _any_ledger(settings: Settings) -> bool:
    """The user's ledger, or one still at the old default place that the next run merges in."""
    old = settings.old_ledger_path
    return settings.ledger_path.is_file() or (old is not None and old.is_file())


def summary(result: FileResult) -> dict[str, object]:
    """A finished run as `run --json` shows it (the same keys; messages and warnings in the page's words)."""
    return {
        "results": str(result.results_path) if result.results_path else None,
        "rows": result.rows,
        "counts": {str(status): count for status, count in result.counts.items()},
        "duration_s": round(result.duration_s, 3),
        "exit_code": int(result.exit_code),
        "stop_reason": result.stop_reason.value if result.stop_reason else None,
        "stop_cause": result.stop_cause,
        "problems": [{"row": row, "call": call_id, "status": status, "message": for_page(message)}
                     for row, call_id, status, message in result.problems],
        "warnings": [for_page(warning) for warning in result.warnings],
        "error": result.error,
    }


def host_of(settings: Settings) -> str:
    from urllib.parse import urlsplit

    return urlsplit(settings.base_url or "").netloc or "(no target set)"


Callback = Callable[[], None]
