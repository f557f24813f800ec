"""What to send from one file: load it as the settings say, apply a person's edits, check every row,
and weigh what earlier runs say (the ledger, a results workbook given back) before anything is sent.

`job.py` runs what is planned here; the CLI's `validate`/`run` and the ops page both plan through
`plan()`, so a row edited in the page is judged by the same schema as a row fixed in the workbook.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .calls import Calls, Selection
from .errors import InputFileError
from .models import EXCLUDED_MESSAGE, CallRequest, Outcome, RowResults, Status
from .settings import Settings

if TYPE_CHECKING:
    from .ledger import CallRecord
    from .loading import Table
    from .prior import Given

EDITABLE = ("callID", "logID", "disposition", "notes")
#: Spreadsheet row number -> {field: new text}: cells a person changed before sending (the ops page).
Edits = Mapping[int, Mapping[str, str]]


@dataclass
class Plan:
    """What was decided about a file before anything is sent."""

    table: Table  # with the edits applied: the values as they are sent
    results: RowResults
    to_send: Sequence[CallRequest]  # a compact sequence (calls.Selection): iterate, index or slice it
    warnings: list[str]
    notes: dict[int, str]  # row index -> why it is sent although an earlier run settled it
    resent_unknown: set[int] = field(default_factory=set)  # row indexes re-sent with --retry-unknown
    edited: dict[int, str] = field(default_factory=dict)  # row index -> what a person changed, for its message
    duplicates: set[int] = field(default_factory=set)  # row indexes invalid as a repeat of an earlier callID


def load_table(path: Path, settings: Settings) -> Table:
    """Load one input with the settings' column mapping; a file without a notes column is refused
    unless --no-notes says that empty notes are meant."""
    from .loading import load

    table = load(path, columns=dict(settings.columns))
    if "notes" not in table.fields and not settings.no_notes:
        found = ", ".join(header for header in table.headers if header)
        raise InputFileError(f"{path}: there is no notes column (found: {found}), so nothing is sent; name the "
                             f"notes column with --column notes=HEADER, or pass --no-notes if the calls are meant "
                             f"to be sent with empty notes.", path=path)
    return table


def plan(table: Table, settings: Settings, allowed: Sequence[str] | None,
         history: Callable[[list[str]], Mapping[str, CallRecord]] | None = None, *,
         edits: Edits | None = None, excluded: Collection[int] | None = None) -> Plan:
    """Validate every row and decide which to send; the rest get their status now.

    `edits` (row number -> {field: text}) replace cells before the rules judge them; `excluded` rows
    (row numbers) are not sent (pending); None (the command line) means the rows a results workbook
    given back has as excluded in the page, which stay out until a person includes them (clearing the
    status cell in the file, or unticking the box in the page). What earlier runs say (the ledger through
    `history(call_ids)`, and the status column of a results workbook given back) is weighed by
    `prior.decide`: the ledger is the truth about what was sent; only --force sends a call it has as
    disposed.
    """
    from .schema import validate

    table, edited = apply_edits(table, edits or {})
    results = RowResults(len(table))
    validation = validate(table, allowed, settings.call_id_pattern)
    for index, message in validation.messages.items():
        results.set(index, Outcome(Status.INVALID, message))
    left_out = {row_index(table, row) for row in (table.prior_excluded if excluded is None else excluded)}
    for index in left_out:
        results.set(index, Outcome(Status.PENDING, EXCLUDED_MESSAGE))
    requests: Calls | Selection = validation.requests
    if left_out:
        kept = validation.requests.subset()
        for call in validation.requests:
            if call.index not in left_out:
                kept.append(call)
        requests = kept
    warnings = [*table.warnings, *validation.warnings]
    if "notes" not in table.fields:
        warnings.append("There is no notes column (--no-notes): every call is sent with empty notes.")
    if table.ignored:
        warnings.append(f"{table.ignored:,} row{'s' if table.ignored != 1 else ''} had no call data and "
                        f"{'were' if table.ignored != 1 else 'was'} ignored (totals, repeated headers, lines of text, "
                        f"or only other columns filled).")
    to_send, notes, resent_unknown, changed = _settle_by_history(table, settings, requests, results, history)
    if changed:
        warnings.append(f"skipped with different content: {changed} (already disposed, but the file now says "
                        f"something else than what was sent; each row's message names both values). Nothing was "
                        f"sent again; --force would send them.")
    return Plan(table, results, to_send, warnings, notes, resent_unknown, edited, validation.duplicates)


def _settle_by_history(table: Table, settings: Settings, requests: Sequence[CallRequest], results: RowResults,
                       history: Callable[[list[str]], Mapping[str, CallRecord]] | None
                       ) -> tuple[Sequence[CallRequest], dict[int, str], set[int], int]:
    """What earlier runs say about each valid row (`prior.decide`): send it, or settle it now (skipped /
    unknown). Returns the rows to send, their notes, the rows re-sent as unknown, and how many skipped
    rows differ from what was sent."""
    from .prior import decide

    known = history([call.call_id for call in requests]) if history and requests else {}
    if not known and table.prior_status is None:  # nothing earlier runs say (a first run): every valid row goes
        return requests, {}, set(), 0
    to_send: Selection | list[CallRequest] = (requests.subset() if isinstance(requests, Calls | Selection)
                                              else [])  # compact, in input order
    notes: dict[int, str] = {}
    resent_unknown: set[int] = set()
    changed = 0
    for call in requests:
        decision = decide(call, _from_workbook(table, call.index), known.get(call.call_id),
                          force=settings.force, retry_unknown=settings.retry_unknown)
        if not decision.send:
            assert decision.status is not None
            results.set(call.index, Outcome(decision.status, decision.message))
            changed += decision.changed
            continue
        to_send.append(call)
        if decision.message:
            notes[call.index] = decision.message
        if decision.resends_unknown:
            resent_unknown.add(call.index)
    return to_send, notes, resent_unknown, changed


def row_index(table: Table, row: int) -> int:
    """The table index of spreadsheet row `row`; UsageError when that row is not a call row."""
    from .errors import UsageError

    index = bisect.bisect_left(table.rows, row)
    if index >= len(table.rows) or table.rows[index] != row:
        raise UsageError(f"{table.path}: row {row} is not a call row of the file (blank, a title, the header, "
                         f"or a row without call data).")
    return index


def apply_edits(table: Table, edits: Edits) -> tuple[Table, dict[int, str]]:
    """The table with a person's edits in place, and for each edited row what changed (for its message)."""
    from .errors import UsageError

    if not edits:
        return table, {}
    cells = {name: list(table.field_cells(name)) for name in EDITABLE}
    kinds = {name: list(table.kinds[name]) for name in table.kinds}  # a typed-in ID is text, whatever the cell was
    edited: dict[int, str] = {}
    for row, changes in sorted(edits.items()):
        index = row_index(table, row)
        said = []
        for name, text in changes.items():
            if name not in EDITABLE:
                raise UsageError(f"row {row}: {name!r} cannot be edited; edit one of {', '.join(EDITABLE)}.")
            before = cells[name][index]
            if text != before:
                said.append(f"{name} {_short(before)} -> {_short(text)}")
                cells[name][index] = text
                if name in kinds:
                    kinds[name][index] = ""
        if said:
            edited[index] = "edited in the page: " + ", ".join(said)
    if "notes" not in table.fields and not any(cells["notes"]):
        del cells["notes"]
    return table.with_cells(cells, kinds), edited


def _short(text: str, limit: int = 40) -> str:
    return repr(text if len(text) <= limit else text[: limit - 1] + "…")


def row_checker(table: Table, settings: Settings, allowed: Sequence[str] | None = None):  # type: ignore[no-untyped-def]
    """A `schema.RowChecker` for this file and settings: `.check(index, {field: text}) -> (status, message)`
    judges one edited row by the same rules, the duplicate rule against the rest of the file."""
    from .schema import RowChecker

    return RowChecker(table, allowed, settings.call_id_pattern)


def _from_workbook(table: Table, index: int) -> Given | None:
    """What the status column of a results workbook given back says about a row, if it is one."""
    from .prior import Given

    if table.prior_status is None:
        return None
    return Given(table.prior_status[index], table.prior_finished[index] if table.prior_finished else "")
