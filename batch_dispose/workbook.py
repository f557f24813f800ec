"""The results workbook: every input row at its own line, with what happened to it, written atomically.

Sheet `Results` keeps every row of the input at the line it had there (rows above the header, the
header, blank lines left blank), so "row 22" is line 22 in the input, the workbook and every later
generation. Columns: `status`, `message` (first, seen without scrolling), the input's own columns
(numbers, dates and booleans stay typed; callID and logID stay text), then `row`, `http_status`,
`attempts`, `finished_at` (local time with its offset). Rows that are not calls keep a blank status
and the message IGNORED_MESSAGE. The input's other columns are read again from the file as the sheet
is written (`Table.source_rows`), so no pass holds the whole sheet. Sheet `Summary` holds counts and
settings. No cell is ever a formula; characters a workbook cannot hold are replaced visibly and the
row's message says so. The file is written to a new temporary name in the same folder (never
following a planted link), fsynced, and linked to its final name, never an existing file's.
"""

from __future__ import annotations

import functools
import math
import os
import re
import secrets
import zipfile
from collections.abc import Sequence
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import IO, BinaryIO

from . import grids
from .files import NEW_FILE, move_unique
from .loading import RESULT_COLUMNS, Table, cell_text
from .models import RowResults, Status

CELL_MAX = 32_767  # the most characters an Excel cell holds
LEAD_COLUMNS = ("status", "message")  # before the input's columns
TAIL_COLUMNS = ("row", "http_status", "attempts", "finished_at")  # after them
assert set(LEAD_COLUMNS + TAIL_COLUMNS) == set(RESULT_COLUMNS)
IGNORED_MESSAGE = "no call data: ignored (not sent, not counted as a problem)"
MESSAGE_WIDTH = 80  # characters of the message column seen without scrolling (the others: 60 at most); status and
# message then fit on one landscape page when printed
KINDS = ("results", "checked")  # run's and validate's workbooks
_RESULTS_SUFFIX = re.compile(r"-(?:results|checked)-\d{8}-\d{6}(?:-\d+)?$")
# C0 controls other than tab/LF/CR, DEL's neighbours XML refuses, lone surrogates, U+FFFE/U+FFFF.
_UNWRITABLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_TEMPORARY = re.compile(r"^\..*\.(\d+)\.tmp$")
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
    carry becomes U+FFFD, and text over 32,767 characters (as Excel counts them) is cut with a final ….
    """
    replaced = 0
    if _UNWRITABLE.search(text):
        def picture(match: re.Match[str]) -> str:
            ch = match.group()
            return chr(0x2400 + ord(ch)) if ord(ch) < 0x20 else "\ufffd"
        text, replaced = _UNWRITABLE.subn(picture, text)
    if len(text) > CELL_MAX // 2 and len(text.encode("utf-16-le")) > 2 * CELL_MAX:  # Excel counts UTF-16 units
        cut = text.encode("utf-16-le")[: 2 * (CELL_MAX - 1)].decode("utf-16-le", errors="ignore")
        text, replaced = cut + "…", replaced + len(text) - len(cut)
    return text, replaced


def local_time(moment: str | datetime) -> str:
    """ISO 8601 in the machine's local time with its offset (2026-11-30T11:05:02+05:30); "" stays ""."""
    if not moment:
        return ""
    if isinstance(moment, str):
        try:
            if len(moment) == 24 and moment[19] == "." and moment[23] == "Z":  # models.iso_now(): one a second
                return _local_second(moment[:19])
            parsed = datetime.fromisoformat(moment.replace("Z", "+00:00"))
        except ValueError:
            return moment
        moment = parsed
    if moment.tzinfo is None:
        return moment.isoformat(timespec="seconds")
    return moment.astimezone().isoformat(timespec="seconds")


@functools.lru_cache(maxsize=256)
def _local_second(utc: str) -> str:
    """A UTC second (2026-11-30T05:35:02) in local time: the outcomes of one second share one conversion."""
    return datetime.fromisoformat(utc + "+00:00").astimezone().isoformat(timespec="seconds")


def write_results(table: Table, results: RowResults, summary: Sequence[tuple[str, object]], *,
                  reports_dir: Path, started: datetime, kind: str = "results",
                  notes: dict[int, str] | None = None) -> Path:
    """Write the results workbook and return its path (a new file, never an existing one).

    `kind` is "results" (run) or "checked" (validate); `notes` adds text to some rows' messages."""
    assert kind in KINDS
    reports_dir.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(reports_dir)
    stem = f"{input_stem(table.path)}-{kind}-{started.astimezone().strftime('%Y%m%d-%H%M%S')}"
    temporary = reports_dir / f".{stem}.{secrets.token_hex(4)}.{os.getpid()}.tmp"
    descriptor = os.open(temporary, NEW_FILE, 0o644)
    try:
        with open(descriptor, "wb") as handle:
            _write_package(handle, table, results, summary, notes or {})
            handle.flush()
            os.fsync(handle.fileno())
        return move_unique(temporary, reports_dir, stem, ".xlsx")
    finally:
        temporary.unlink(missing_ok=True)


def input_stem(path: Path) -> str:
    """The name results are filed under: a results (or checked) workbook given back keeps its original
    stem (day-results-20261127-170940.xlsx -> day), so re-runs do not pile up suffixes."""
    return _RESULTS_SUFFIX.sub("", path.stem) or path.stem


# -- the package ----------------------------------------------------------------------------------
# A results workbook can hold a million rows, so it is written as the OOXML it is, row by row, with
# inline strings: 6.2 times faster than XlsxWriter at 1M rows and 8.5 times faster than openpyxl's
# write-only mode at 100k (bench/write.py). Every cell is a number or inline text: there is no way
# to write a formula. Element order follows the SpreadsheetML schema, which Excel enforces.

_MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
_RELS = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
_XML = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
_CONTENT_TYPES = _XML + (
    '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
    '<Default Extension="xml" ContentType="application/xml"/>'
    '<Override PartName="/xl/workbook.xml" '
    'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
    '<Override PartName="/xl/worksheets/sheet1.xml" '
    'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>'
    '<Override PartName="/xl/worksheets/sheet2.xml" '
    'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>'
    '<Override PartName="/xl/styles.xml" '
    'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.styles+xml"/>'
    '</Types>')
_ROOT_RELS = _XML + (
    '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
    f'<Relationship Id="rId1" Type="{_RELS}/officeDocument" Target="xl/workbook.xml"/></Relationships>')
_WORKBOOK_RELS = _XML + (
    '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
    f'<Relationship Id="rId1" Type="{_RELS}/worksheet" Target="worksheets/sheet1.xml"/>'
    f'<Relationship Id="rId2" Type="{_RELS}/worksheet" Target="worksheets/sheet2.xml"/>'
    f'<Relationship Id="rId3" Type="{_RELS}/styles" Target="styles.xml"/></Relationships>')
_BOLD = ' s="1"'  # cellXfs 1: the bold font
_DATE, _DATETIME, _TIME, _DURATION = ' s="2"', ' s="3"', ' s="4"', ' s="5"'  # cellXfs 2-5: date formats
_STYLES = _XML + (
    f'<styleSheet xmlns="{_MAIN}">'
    '<numFmts count="2"><numFmt numFmtId="164" formatCode="yyyy-mm-dd"/>'
    '<numFmt numFmtId="165" formatCode="yyyy-mm-dd hh:mm:ss"/></numFmts>'
    '<fonts count="2"><font><sz val="11"/><name val="Calibri"/></font>'
    '<font><b/><sz val="11"/><name val="Calibri"/></font></fonts>'
    '<fills count="2"><fill><patternFill patternType="none"/></fill>'
    '<fill><patternFill patternType="gray125"/></fill></fills>'
    '<borders count="1"><border><left/><right/><top/><bottom/><diagonal/></border></borders>'
    '<cellStyleXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" borderId="0"/></cellStyleXfs>'
    '<cellXfs count="6"><xf numFmtId="0" fontId="0" fillId="0" borderId="0" xfId="0"/>'
    '<xf numFmtId="0" fontId="1" fillId="0" borderId="0" xfId="0" applyFont="1"/>'
    '<xf numFmtId="164" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/>'
    '<xf numFmtId="165" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/>'
    '<xf numFmtId="21" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/>'
    '<xf numFmtId="46" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/></cellXfs>'
    '<cellStyles count="1"><cellStyle name="Normal" xfId="0" builtinId="0"/></cellStyles>'
    f'<dxfs count="{len(STATUS_FILLS)}">'
    + "".join(f'<dxf><fill><patternFill patternType="solid"><bgColor rgb="FF{colour}"/></patternFill></fill></dxf>'
              for colour in STATUS_FILLS.values())
    + '</dxfs></styleSheet>')
_ESCAPE = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"})
_EPOCH = datetime(1899, 12, 30)


class _Layout:
    """Where each column of the Results sheet is: status, message, the input's columns, the tail."""

    def __init__(self, table: Table) -> None:
        lead = len(LEAD_COLUMNS)
        self.column = {position: lead + n for n, position in enumerate(table.positions)}  # file position -> column
        self.field_columns = {lead + index: name for name, index in table.fields.items()}
        self.tail = lead + len(table.headers)
        self.headers = [*LEAD_COLUMNS, *(visible(header)[0] for header in table.headers), *TAIL_COLUMNS]
        self.letters = [_letter(n) for n in range(len(self.headers))]


def _write_package(handle: BinaryIO, table: Table, results: RowResults, summary: Sequence[tuple[str, object]],
                   notes: dict[int, str]) -> None:
    layout = _Layout(table)
    first = table.header_row
    with zipfile.ZipFile(handle, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as package:
        package.writestr("[Content_Types].xml", _CONTENT_TYPES)
        package.writestr("_rels/.rels", _ROOT_RELS)
        package.writestr("xl/_rels/workbook.xml.rels", _WORKBOOK_RELS)
        package.writestr("xl/styles.xml", _STYLES)
        with package.open("xl/worksheets/sheet1.xml", "w") as sheet:
            last_row = _results_sheet(sheet, table, results, layout, notes)
        filter_ref = f"A{first}:{layout.letters[-1]}{max(last_row, first)}"
        package.writestr("xl/workbook.xml", _XML + (
            f'<workbook xmlns="{_MAIN}" xmlns:r="{_RELS}"><bookViews><workbookView/></bookViews><sheets>'
            '<sheet name="Results" sheetId="1" r:id="rId1"/><sheet name="Summary" sheetId="2" r:id="rId2"/>'
            '</sheets><definedNames><definedName name="_xlnm._FilterDatabase" localSheetId="0" hidden="1">'
            f"Results!{_absolute(filter_ref)}</definedName></definedNames></workbook>"))
        package.writestr("xl/worksheets/sheet2.xml", _summary_sheet(summary))


def _absolute(ref: str) -> str:
    return ":".join(re.sub(r"([A-Z]+)(\d+)", r"$\1$\2", part) for part in ref.split(":"))


def _results_sheet(sheet: IO[bytes], table: Table, results: RowResults, layout: _Layout,
                   notes: dict[int, str]) -> int:
    """Write the sheet, row by row from a second read of the input; returns the last row written."""
    letters, headers, first = layout.letters, layout.headers, table.header_row
    end_guess = max(table.rows[-1] if table.rows else first, first)
    widths = "".join(f'<col min="{n}" max="{n}" width="{width}" customWidth="1"/>'
                     for n, width in enumerate(_widths(layout, table, results), start=1))
    sheet.write((_XML + (
        f'<worksheet xmlns="{_MAIN}" xmlns:r="{_RELS}"><dimension ref="A1:{letters[-1]}{end_guess}"/>'
        f'<sheetViews><sheetView workbookViewId="0"><pane ySplit="{first}" topLeftCell="A{first + 1}" '
        f'activePane="bottomLeft" state="frozen"/><selection pane="bottomLeft" activeCell="A{first + 1}" '
        f'sqref="A{first + 1}"/></sheetView></sheetViews>'
        f'<sheetFormatPr defaultRowHeight="15"/><cols>{widths}</cols><sheetData>')).encode("utf-8"))
    chunk: list[str] = []
    write = chunk.append
    rows, column, fields, tail = table.rows, layout.column, layout.field_columns, layout.tail
    field_cells = {index: table.field_cells(name) for index, name in fields.items()}
    # a date or TRUE/FALSE where an ID belongs is written back as the cell it was, so that the workbook given
    # back is judged the same (as text, `2026-11-30` would pass for a call ID and be sent)
    id_cells = {target: (table.positions[table.fields[name]], table.kinds[name]) for target, name in fields.items()
                if name in table.kinds}  # (the cell's place in the file: a workbook given back has columns before it)
    wanted = 0  # the next call row (index into table.rows)
    last = first
    for number, raw in table.source_rows():
        if number < first:
            cells = _placed(raw, column)
            if cells:
                write(_row(number, cells, letters))
                last = number
            continue
        if number == first:
            write(_row(number, [(n, header) for n, header in enumerate(headers)], letters, _BOLD))
            continue
        if wanted < len(rows) and rows[wanted] == number:
            index = wanted
            wanted += 1
            cells = _placed(raw, column, skip=fields)
            cells += [(n, values[index]) for n, values in field_cells.items()]
            for n, (position, kinds) in id_cells.items():
                original = grids.get(raw, position) if kinds[index] else None
                if original is not None:
                    cells = [(target, original if target == n else value) for target, value in cells]
            cells.sort(key=lambda cell: cell[0])
            cells, replaced = _shown(cells)
            message = results.message[index]
            note = notes.get(index)
            if note:
                message = f"{message} ({note})" if message else note
            if replaced:
                message = (message + ". " if message else "") + (
                    f"The workbook shows {replaced} character{'s' if replaced > 1 else ''} of this row that "
                    f"a workbook cannot hold as visible symbols (control characters as ␀-style pictures)")
            status = results.status[index].value
            finished = results.finished_at[index]
            line = [(0, status), (1, visible(message)[0]), *cells, (tail, number),
                    (tail + 1, results.http_status[index]), (tail + 2, results.attempts[index]),
                    (tail + 3, local_time(finished) if finished else "")]
            write(_row(number, line, letters))
            last = number
        else:
            cells = _placed(raw, column)
            if not cells:
                continue  # a blank line stays blank
            cells, _ = _shown(cells)
            write(_row(number, [(1, IGNORED_MESSAGE), *cells, (tail, number)], letters))
            last = number
        if len(chunk) >= 2000:
            sheet.write("".join(chunk).encode("utf-8"))
            chunk.clear()
    status_ref = f"A{first + 1}"
    rules = "".join(f'<cfRule type="expression" dxfId="{n}" priority="{n + 1}"><formula>'
                    f'$A{first + 1}="{status.value}"</formula></cfRule>'
                    for n, status in enumerate(STATUS_FILLS))
    write(f'</sheetData><autoFilter ref="A{first}:{letters[-1]}{max(last, first)}"/>'
          f'<conditionalFormatting sqref="{status_ref}:{letters[-1]}{max(last, first + 1)}">{rules}'
          '</conditionalFormatting><pageSetup orientation="landscape"/></worksheet>')  # printed: status and message
    sheet.write("".join(chunk).encode("utf-8"))
    return last


def _placed(raw: grids.Row, column: dict[int, int], skip: dict[int, str] | None = None) -> list[tuple[int, object]]:
    """The row's cells that have a column in the sheet, as (sheet column, value); blanks left out."""
    placed = []
    for position, value in grids.items(raw):
        target = column.get(position)
        if target is None or value is None or value == "" or (skip and target in skip):
            continue
        placed.append((target, value))
    return placed


def _shown(cells: list[tuple[int, object]]) -> tuple[list[tuple[int, object]], int]:
    """Text cells as a workbook can hold them, and how many characters had to be replaced."""
    replaced = 0
    shown = []
    for target, value in cells:
        if isinstance(value, str) and (len(value) > CELL_MAX // 2 or _UNWRITABLE.search(value)):
            value, count = visible(value)
            replaced += count
        shown.append((target, value))
    return shown, replaced


def _row(number: int, cells: Sequence[tuple[int, object]], letters: list[str], style: str = "") -> str:
    row = str(number)
    parts = [f'<row r="{row}">']
    for position, value in cells:
        if value is None or value == "":
            continue
        ref = letters[position] + row
        if isinstance(value, str):
            parts.append(f'<c r="{ref}" t="inlineStr"{style}><is><t xml:space="preserve">'
                         f'{value.translate(_ESCAPE)}</t></is></c>')
        elif isinstance(value, bool):
            parts.append(f'<c r="{ref}" t="b"><v>{int(value)}</v></c>')
        elif isinstance(value, int | float):
            if isinstance(value, float) and not math.isfinite(value):
                parts.append(f'<c r="{ref}" t="inlineStr"><is><t>{value}</t></is></c>')
            else:
                parts.append(f'<c r="{ref}"><v>{value!r}</v></c>')
        else:
            parts.append(_dated(ref, value))
    parts.append("</row>")
    return "".join(parts)


def _dated(ref: str, value: object) -> str:
    """A date, time or duration as a real spreadsheet date (a serial number with a date format)."""
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.replace(tzinfo=None)
        serial = (value - _EPOCH) / timedelta(days=1)
        style = _DATE if value.time() == time() else _DATETIME  # a date cell reads back at midnight: no 00:00:00
    elif isinstance(value, date):
        serial, style = float((value - _EPOCH.date()).days), _DATE
    elif isinstance(value, time):
        serial = (value.hour * 3600 + value.minute * 60 + value.second + value.microsecond / 1e6) / 86400
        style = _TIME
    elif isinstance(value, timedelta):
        serial, style = value / timedelta(days=1), _DURATION
    else:
        text = cell_text(value).translate(_ESCAPE)
        return f'<c r="{ref}" t="inlineStr"><is><t xml:space="preserve">{text}</t></is></c>'
    if serial < 1:  # before 1900: Excel cannot show it as a date; keep the text
        text = cell_text(value).translate(_ESCAPE)
        return f'<c r="{ref}" t="inlineStr"><is><t xml:space="preserve">{text}</t></is></c>' \
            if not isinstance(value, time | timedelta) else f'<c r="{ref}"{style}><v>{serial!r}</v></c>'
    return f'<c r="{ref}"{style}><v>{serial!r}</v></c>'


def _letter(position: int) -> str:
    """Column letters: 0 -> A, 25 -> Z, 26 -> AA."""
    letters = ""
    position += 1
    while position:
        position, remainder = divmod(position - 1, 26)
        letters = chr(65 + remainder) + letters
    return letters


def _widths(layout: _Layout, table: Table, results: RowResults) -> list[float]:
    sample = range(min(len(table), 500))
    longest = [len(header) for header in layout.headers]
    longest[0] = max([longest[0], *(len(results.status[index].value) for index in sample)])
    longest[1] = max([longest[1], len(IGNORED_MESSAGE) if table.ignored else 0,
                      *(len(results.message[index]) for index in sample)])
    for n, width in enumerate(table.widths):
        longest[2 + n] = max(longest[2 + n], width)
    tail = layout.tail
    longest[tail] = max(longest[tail], len(str(table.rows[-1])) if table.rows else 0)
    longest[tail + 3] = max(longest[tail + 3], 25 if any(results.finished_at[index] for index in sample) else 0)
    widths: list[float] = [min(max(length + 2, 8), 60) for length in longest]
    widths[1] = min(max(longest[1] + 2, 8), MESSAGE_WIDTH)  # messages run long: more of each is read unscrolled
    return widths


def _summary_sheet(summary: Sequence[tuple[str, object]]) -> str:
    labels = min(max((len(key) for key, _ in summary), default=20) + 2, 45)  # "Rows without call data (ignored)"
    rows = []
    for number, (key, value) in enumerate(summary, start=1):
        if isinstance(value, str):
            cell = _text(f"B{number}", visible(value)[0])
        else:
            cell = f'<c r="B{number}"><v>{value}</v></c>'
        rows.append(f'<row r="{number}">{_text(f"A{number}", key, _BOLD)}{cell}</row>')
    return _XML + (f'<worksheet xmlns="{_MAIN}"><cols><col min="1" max="1" width="{labels}" customWidth="1"/>'
                   f'<col min="2" max="2" width="70" customWidth="1"/></cols><sheetData>{"".join(rows)}'
                   "</sheetData></worksheet>")


def _text(ref: str, value: str, style: str = "") -> str:
    if not value:
        return ""
    return f'<c r="{ref}" t="inlineStr"{style}><is><t xml:space="preserve">{value.translate(_ESCAPE)}</t></is></c>'


def _remove_stale_temporaries(folder: Path) -> None:
    """Half-written workbooks of processes that died (kill -9, power loss) are removed."""
    for leftover in folder.glob(".*.tmp"):
        match = _TEMPORARY.match(leftover.name)
        if match and ("-results-" in leftover.name or "-checked-" in leftover.name) and not _alive(int(match[1])):
            leftover.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, but is not ours to signal
        return True
    return True
