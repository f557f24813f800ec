"""The results workbook: every input row with what happened to it, written atomically.

Sheet `Results` holds the input's own columns as read, then `row`, `status`, `http_status`,
`message`, `attempts`, `finished_at`; sheet `Summary` holds counts and the run's settings. No cell is
ever a formula; characters a workbook cannot hold are replaced visibly and the row's message says
so. The file is written to a temporary name in the same folder, fsynced, and then linked to its
final name, which is never an existing file's (`-2`, `-3`… are appended).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path

from .files import fsync_file, move_unique
from .loading import RESULT_COLUMNS, Table
from .models import RowResults, Status

CELL_MAX = 32_767  # the most characters an Excel cell holds
WIDTH_SAMPLE = 500  # rows looked at to size the columns
# C0 controls other than tab/LF/CR, DEL's neighbours XML refuses, lone surrogates, U+FFFE/U+FFFF.
_UNWRITABLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
STATUS_FILLS = {
    Status.DISPOSED: "C6EFCE",  # green
    Status.SKIPPED: "DDEBF7",  # pale blue
    Status.UNAUTHORIZED: "F8CBAD",  # orange
    Status.FAILED: "FFC7CE",  # red
    Status.INVALID: "FFEB9C",  # yellow
    Status.PENDING: "E7E6E6",  # grey
    Status.UNKNOWN: "E4DFEC",  # lavender
    Status.READY: "E2EFDA",  # pale green
}


def visible(text: str) -> tuple[str, int]:
    """Text a workbook can hold, and how many characters were replaced to get it.

    Control characters become their Unicode control pictures (NUL -> ␀), anything else XML cannot
    carry becomes U+FFFD, and text over 32,767 characters is cut with a final ….
    """
    replaced = 0
    if _UNWRITABLE.search(text):
        def picture(match: re.Match[str]) -> str:
            ch = match.group()
            return chr(0x2400 + ord(ch)) if ord(ch) < 0x20 else "\ufffd"
        text, replaced = _UNWRITABLE.subn(picture, text)
    if len(text) > CELL_MAX:
        text, replaced = text[: CELL_MAX - 1] + "…", replaced + len(text) - CELL_MAX + 1
    return text, replaced


def write_results(table: Table, results: RowResults, summary: Sequence[tuple[str, object]], *,
                  reports_dir: Path, started: datetime) -> Path:
    """Write the results workbook and return its path (a new file, never an existing one)."""
    from openpyxl import Workbook

    reports_dir.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(reports_dir)
    workbook = Workbook(write_only=True)
    _results_sheet(workbook, table, results)
    _summary_sheet(workbook, summary)
    stem = f"{table.path.stem}-results-{started.strftime('%Y%m%d-%H%M%S')}"
    temporary = reports_dir / f".{stem}.{os.getpid()}.tmp"
    try:
        workbook.save(temporary)
        fsync_file(temporary)
        return move_unique(temporary, reports_dir, stem, ".xlsx")
    finally:
        temporary.unlink(missing_ok=True)


def _results_sheet(workbook, table: Table, results: RowResults) -> None:  # type: ignore[no-untyped-def]
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.formatting.rule import FormulaRule
    from openpyxl.styles import Font, PatternFill
    from openpyxl.utils import get_column_letter

    sheet = workbook.create_sheet("Results")
    headers = [visible(header)[0] for header in table.headers] + list(RESULT_COLUMNS)
    last_column = get_column_letter(len(headers))
    status_column = get_column_letter(len(table.headers) + 2)
    last_row = len(table) + 1
    sheet.freeze_panes = "A2"
    sheet.auto_filter.ref = f"A1:{last_column}{last_row}"
    for status, colour in STATUS_FILLS.items():
        fill = PatternFill(fill_type="solid", start_color=colour, end_color=colour)
        rule = FormulaRule(formula=[f'${status_column}2="{status.value}"'], fill=fill)
        sheet.conditional_formatting.add(f"A2:{last_column}{max(last_row, 2)}", rule)
    for position, width in enumerate(_widths(headers, table, results), start=1):
        sheet.column_dimensions[get_column_letter(position)].width = width
    bold = Font(bold=True)
    header_cells = []
    for header in headers:
        cell = _text_cell(WriteOnlyCell, sheet, header)
        cell.font = bold
        header_cells.append(cell)
    sheet.append(header_cells)
    for values in _result_rows(table, results):
        sheet.append([_text_cell(WriteOnlyCell, sheet, value) if isinstance(value, str) and value.startswith("=")
                      else value for value in values])


def _result_rows(table: Table, results: RowResults) -> Iterator[list[object]]:
    """Each row's cells: input cells as text, then the result columns (numbers where numeric)."""
    columns = table.columns
    for index, row_number in enumerate(table.rows):
        cells = [column[index] for column in columns]
        message = results.message[index]
        joined = "".join(cells)
        if _UNWRITABLE.search(joined) or len(joined) > CELL_MAX:
            replaced = 0
            for position, text in enumerate(cells):
                cells[position], count = visible(text)
                replaced += count
            if replaced:
                message = (message + ". " if message else "") + (
                    f"The workbook shows {replaced} character{'s' if replaced > 1 else ''} of this row that "
                    f"a workbook cannot hold as visible symbols (control characters as ␀-style pictures)")
        cells.extend([
            row_number,
            results.status[index].value,
            results.http_status[index],
            visible(message)[0],
            results.attempts[index],
            results.finished_at[index],
        ])
        yield cells


def _text_cell(cell_type, sheet, value: str):  # type: ignore[no-untyped-def]
    """A cell that holds `value` as text even when it starts with `=`."""
    cell = cell_type(sheet, value=value)
    cell.data_type = "s"
    return cell


def _widths(headers: Sequence[str], table: Table, results: RowResults) -> list[float]:
    sample = range(min(len(table), WIDTH_SAMPLE))
    longest = [len(header) for header in headers]
    for position, column in enumerate(table.columns):
        for index in sample:
            longest[position] = max(longest[position], len(column[index].split("\n", 1)[0]))
    base = len(table.columns)
    for offset, values in enumerate((table.rows, [s.value for s in results.status], results.http_status,
                                     results.message, results.attempts, results.finished_at)):
        for index in sample:
            longest[base + offset] = max(longest[base + offset], len(str(values[index] or "")))
    return [min(max(length + 2, 8), 60) for length in longest]


def _summary_sheet(workbook, summary: Sequence[tuple[str, object]]) -> None:  # type: ignore[no-untyped-def]
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.styles import Font

    sheet = workbook.create_sheet("Summary")
    sheet.column_dimensions["A"].width = 24
    sheet.column_dimensions["B"].width = 70
    bold = Font(bold=True)
    for key, value in summary:
        label = _text_cell(WriteOnlyCell, sheet, key)
        label.font = bold
        if isinstance(value, str):
            value = _text_cell(WriteOnlyCell, sheet, visible(value)[0])
        sheet.append([label, value])


def _remove_stale_temporaries(folder: Path) -> None:
    """Half-written workbooks of processes that died (kill -9, power loss) are removed."""
    for leftover in folder.glob(".*-results-*.tmp"):
        pid = leftover.suffixes[-2].lstrip(".") if len(leftover.suffixes) >= 2 else ""
        if pid.isdigit() and not _alive(int(pid)):
            leftover.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, but is not ours to signal
        return True
    return True
