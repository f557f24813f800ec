"""Reading input files (CSV, XLSX, XLS, ODS) into a `Table`: the four fields as text, row by row.

Every cell is read as the text a person sees, then the header row is found and its columns are
matched to the fields we need (by the names CRM exports use, or by an explicit mapping). Rows that
are not calls (blank rows, footers such as `Total`, rows where only other columns hold something)
are counted, not kept. The other columns are not held in memory: `Table.source_rows()` reads the
file again when the results workbook is written. Nothing here judges the rows: that is `schema.py`.
Files that cannot be used at all raise `InputFileError` with one sentence naming the file and the fix.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path

from . import grids
from .calls import Kinds, NumberTexts, RowNumbers
from .errors import InputFileError
from .files import sha256_of
from .grids import Row, error, get
from .headers import (
    FIELDS,
    HEADER_ALIASES,
    REQUIRED_FIELDS,
    RESULT_COLUMNS,
    map_columns,
    matched_fields,
    normalize_header,
    raise_missing,
)
from .models import EXCLUDED_MESSAGE

__all__ = ["FIELDS", "HEADER_ALIASES", "REQUIRED_FIELDS", "RESULT_COLUMNS", "Table", "cell_kind", "cell_text",
           "load", "normalize_header", "read_dispositions"]

MAX_BYTES = 50 * 1024 * 1024  # a file larger than this on disk is refused
MAX_ROWS = 1_048_576  # Excel's own limit
MAX_COLUMNS = 16_384 - 6  # Excel's last column, less the result columns the workbook adds
HEADER_SCAN_ROWS = 30  # the header row is looked for among the first rows of a sheet
WIDTH_SAMPLE = 500  # call rows looked at to size the workbook's columns

FORMATS = {".csv": "csv", ".xlsx": "xlsx", ".xls": "xls", ".ods": "ods"}
#: First cells that make a row a footer when only numbers stand beside them.
_EXCLUDED_MARK = EXCLUDED_MESSAGE.split(";")[0]  # "excluded in the page", wherever the message has it
FOOTER_WORDS = frozenset({"total", "totals", "grand total", "grandtotal", "subtotal", "sub total", "count",
                          "sum", "total calls", "count of calls"})

# Cell kinds worth remembering for the ID columns (plain text and numbers need no mark).
KIND_DATE = "date"
KIND_BOOL = "bool"


@dataclass(frozen=True)
class Table:
    """One input sheet: the four fields of each call row as text, and where everything else is."""

    path: Path
    format: str  # csv, xlsx, xls, ods
    sha256: str  # of the file's bytes, for the Summary sheet
    headers: tuple[str, ...]  # the input's own column headers, as read (result columns removed)
    positions: tuple[int, ...]  # the file's column position of each header
    header_row: int  # the header's own row number
    cells: Mapping[str, Sequence[str]]  # field -> its text cells, one per call row (notes: absent when no column)
    rows: Sequence[int]  # the row number a spreadsheet shows for each call row (a calls.RowNumbers)
    fields: dict[str, int]  # field name -> index into headers (notes may be absent)
    kinds: Mapping[str, Sequence[str]]  # "callID"/"logID" -> per-row cell kind ("", "date", "bool")
    ignored: int = 0  # rows that are not calls (footers, rows of other columns only); blank rows not counted
    prior_status: list[str] | None = None  # per row, when the input is a results workbook
    prior_finished: list[str] | None = None
    prior_excluded: tuple[int, ...] = ()  # rows a results workbook given back has as excluded in the page
    sheet: str | None = None
    encoding: str | None = None
    delimiter: str | None = None
    warnings: tuple[str, ...] = field(default=())
    widths: tuple[int, ...] = field(default=())  # longest first line per header among the first rows

    def __len__(self) -> int:
        return len(self.rows)

    def field_cells(self, name: str) -> Sequence[str]:
        """The text cells of one field; all blank when the column is absent (notes)."""
        return self.cells.get(name) or [""] * len(self.rows)

    def source_rows(self) -> Iterator[tuple[int, Row]]:
        """Every non-skipped row of the sheet again, read from the file: (row number, raw cells).

        A file whose content is no longer what was read (its SHA-256 differs) gives only the header
        and the call rows, without their other cells: the fields are in the table, the rest is gone."""
        if not self._unchanged():
            yield self.header_row, dict(zip(self.positions, self.headers, strict=True))
            yield from ((number, {}) for number in self.rows)
            return
        if self.format == "csv":
            assert self.encoding is not None and self.delimiter is not None
            yield from grids.csv_records(self.path, self.encoding, self.delimiter, self.path)
            return
        book = grids.Workbook(None, self.path, self.format)
        sheet = next(sheet for sheet in book.sheets if sheet.name == self.sheet)
        yield from book.rows(sheet)

    def _unchanged(self) -> bool:
        try:
            return sha256_of(self.path) == self.sha256
        except OSError:
            return False

    @property
    def columns(self) -> tuple[list[str], ...]:
        """Every header's text cells, one per call row (reads the file again: for small files and tests)."""
        found: tuple[list[str], ...] = tuple([] for _ in self.headers)
        wanted = iter(self.rows)
        target = next(wanted, None)
        for number, raw in self.source_rows():
            if number != target:
                continue
            for position, column in zip(self.positions, found, strict=True):
                column.append(cell_text(get(raw, position)))
            target = next(wanted, None)
        for name, index in self.fields.items():  # the fields as the rules see them (edits included)
            found[index][:] = self.field_cells(name)
        return found

    def with_cells(self, cells: Mapping[str, Sequence[str]], kinds: Mapping[str, Sequence[str]] | None = None,
                   ) -> Table:
        """The same table with other field cells (edits made in the page), and their kinds if they changed."""
        from dataclasses import replace

        return replace(self, cells=cells, kinds=self.kinds if kinds is None else kinds)


def number_text(value: float) -> str:
    """A number as a spreadsheet shows it: whole numbers without `.0`, else 15 significant digits."""
    if math.isfinite(value) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return format(value, ".15g")


def cell_text(value: object) -> str:
    """The text a spreadsheet cell shows (numbers without a trailing `.0`, dates in ISO 8601)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float):
        return number_text(value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    return "" if value is None else str(value)


def cell_kind(value: object) -> str:
    """"date" or "bool" for cells whose text could pass for an ID; "" for text and numbers."""
    if isinstance(value, bool):
        return KIND_BOOL
    if isinstance(value, datetime | date | time | timedelta):
        return KIND_DATE
    return ""


def read_dispositions(path: Path) -> tuple[str, ...]:
    """The allow-list file: one disposition name a line; blank lines and `#` comments ignored."""
    try:
        text = grids.decode(path.read_bytes(), path)[0]
    except OSError as exc:
        raise InputFileError(f"{path}: cannot read the dispositions file ({exc.strerror}); check --dispositions.",
                             path=path) from None
    names = tuple(line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#"))
    if not names:
        raise InputFileError(f"{path}: the dispositions file lists no names; put one name on each line.", path=path)
    return names


def load(path: Path, *, max_bytes: int = MAX_BYTES, max_rows: int = MAX_ROWS,
         columns: Mapping[str, str] | None = None) -> Table:
    """Read one input file into a Table, or raise InputFileError saying why it cannot be used.

    `columns` maps a field to its header text (`{"notes": "Remarks"}`), over the names it is known by."""
    mapping = _check_mapping(columns or {})
    fmt = FORMATS.get(path.suffix.lower())
    if path.is_dir():
        raise error(path, "is a folder, not a file; give a spreadsheet in it, or use `sweep` to run every "
                    "spreadsheet in a folder")
    if path.name.startswith("~$"):  # the owner file Excel keeps beside a workbook while it is open
        raise error(path, "is the lock file Excel keeps beside a workbook while it is open, not a spreadsheet; "
                    "use the workbook itself (saved, and best closed)")
    if fmt is None:
        raise error(path, f"is not a supported file type; use {', '.join(FORMATS)}")
    try:
        size = path.stat().st_size
        if not path.is_file():
            raise error(path, "is a folder, not a file; give the spreadsheet's own path")
    except FileNotFoundError:
        raise error(path, "does not exist; check the name and folder") from None
    except OSError as exc:
        raise error(path, f"cannot be read ({exc.strerror})") from None
    if size == 0:
        raise error(path, "is empty; export the calls again")
    if size > max_bytes:
        raise error(path, f"is {_size(size)}, over the {_size(max_bytes)} limit; split it into smaller files")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise error(path, f"cannot be read ({exc.strerror})") from None
    if fmt == "csv":
        text, encoding = grids.decode(data, path)  # checks the whole file decodes
        delimiter = _detect_delimiter(text[:65536], mapping)
        del text
        source = _Source(grids.csv_records(data, encoding, delimiter, path), mapping)
        return _build(path, fmt, data, source, max_rows, mapping, encoding=encoding, delimiter=delimiter)
    grids.check_container(data, path, fmt)
    book = grids.Workbook(data, path, fmt)
    if not book.sheets:
        raise error(path, "holds no sheets; open it, check the calls are there, and save it again")
    # Visible sheets first, hidden ones only as a fallback; each keeps its workbook order.
    candidates: list[_Source] = []
    for sheet in [s for s in book.sheets if s.visible] + [s for s in book.sheets if not s.visible]:
        source = _Source(book.rows(sheet), mapping)
        if source.header_index is not None:
            return _build(path, fmt, data, source, max_rows, mapping, sheet=sheet.name, hidden=not sheet.visible)
        candidates.append(source)
    _raise_missing(path, candidates, mapping)
    raise AssertionError("unreachable")


def _check_mapping(columns: Mapping[str, str]) -> dict[str, str]:
    from .errors import UsageError

    mapping = {}
    for name, header in columns.items():
        canonical = next((known for known in FIELDS if known.casefold() == name.strip().casefold()), None)
        if canonical is None:
            raise UsageError(f"--column {name}={header}: {name!r} is not a field; use one of {', '.join(FIELDS)}.")
        if not header.strip():
            raise UsageError(f"--column {name}=: give the header text of the column to use as {canonical}.")
        mapping[canonical] = header.strip()
    return mapping


def _detect_delimiter(text: str, mapping: Mapping[str, str]) -> str:
    """The delimiter whose split of the first lines finds our header; else the most consistent one."""
    import csv
    import io

    sample = text[:65536]
    best, best_score = ",", (-1, -1)
    for delimiter in grids.DELIMITERS:
        rows = []
        try:
            for record in csv.reader(io.StringIO(sample, newline=""), delimiter=delimiter, strict=False):
                rows.append(record)
                if len(rows) >= HEADER_SCAN_ROWS:
                    break
        except csv.Error:
            continue
        matched = max((len(matched_fields(r, mapping)) for r in rows), default=0)
        widths = [len(r) for r in rows if r]
        consistent = widths.count(max(set(widths), key=widths.count)) if widths and max(widths) > 1 else 0
        score = (matched, consistent)
        if score > best_score:
            best, best_score = delimiter, score
    return best


# -- from rows of cells to a Table -------------------------------------------------------------------

class _Source:
    """A sheet's rows whose first rows are searched for the header."""

    def __init__(self, rows: Iterator[tuple[int, Row]], mapping: Mapping[str, str]) -> None:
        self._iter = rows
        self.head: list[tuple[int, Row]] = []
        self.header_index: int | None = None
        self._pending: tuple[int, Row] | None = None
        for number, raw in rows:
            if number > HEADER_SCAN_ROWS:
                self._pending = (number, raw)
                return
            self.head.append((number, raw))
            if len(matched_fields(_texts(raw), mapping)) == len(REQUIRED_FIELDS):
                self.header_index = len(self.head) - 1
                break

    def rest(self) -> Iterator[tuple[int, Row]]:
        """Rows after the header, in order."""
        assert self.header_index is not None
        yield from self.head[self.header_index + 1:]
        if self._pending is not None:
            yield self._pending
        yield from self._iter


def _texts(raw: Row) -> list[str]:
    if isinstance(raw, dict):
        return [cell_text(raw.get(position)) for position in range(min(grids.width(raw), MAX_COLUMNS))]
    return [cell_text(value) for value in raw]


def _build(path: Path, fmt: str, data: bytes, source: _Source, max_rows: int, mapping: Mapping[str, str], *,
           sheet: str | None = None, hidden: bool = False, encoding: str | None = None,
           delimiter: str | None = None) -> Table:
    if source.header_index is None:
        _raise_missing(path, [source], mapping)
    assert source.header_index is not None
    header_row, header_raw = source.head[source.header_index]
    headers = [text.strip() for text in _texts(header_raw)]
    fields, result_positions, warnings = map_columns(path, headers, mapping)
    field_positions = [fields.get(name) for name in FIELDS]
    texts: dict[str, list[str] | NumberTexts] = {name: [] for name in FIELDS}
    texts["logID"] = NumberTexts()  # logIDs are whole numbers: 8 bytes a row, not a string each
    appends = [texts[name].append for name in FIELDS]
    kinds = {"callID": Kinds(), "logID": Kinds()}
    status_pos, finished_pos = result_positions.get("status"), result_positions.get("finished_at")
    row_pos, moved = result_positions.get("row"), 0  # a results workbook given back: its rows' own numbers
    results_at = frozenset(result_positions.values())  # a results workbook's own columns: not the footer's cells
    prior_status: list[str] | None = [] if status_pos is not None else None
    prior_finished: list[str] | None = [] if finished_pos is not None else None
    message_pos = result_positions.get("message") if status_pos is not None else None
    prior_excluded: list[int] = []
    typed = fmt != "csv"  # CSV cells are text already; workbook cells need converting
    shared: dict[str, str] = {}  # one string object for repeated values (dispositions, blanks)
    blank_headers = [position for position, header in enumerate(headers) if not header]
    used: set[int] = set()  # unnamed columns (blank header, or right of the header) holding something
    longest = [len(header) for header in headers]
    rows = RowNumbers()
    ignored = 0
    call_kinds, log_kinds = kinds["callID"].append, kinds["logID"].append
    plain = (str, float, int, type(None))
    positions = [-1 if position is None else position for position in field_positions]
    header_width = len(headers)
    call_header = headers[fields["callID"]]  # a paginated export repeats its header row down the sheet
    for number, raw in source.rest():
        if type(raw) is list:
            size = len(raw)
            values = [raw[position] if 0 <= position < size else None for position in positions]
        else:
            size = grids.width(raw)
            values = [raw.get(position) if position >= 0 else None for position in positions]  # type: ignore[union-attr]
        cells = [value if type(value) is str else cell_text(value) for value in values] if typed else \
            [value or "" for value in values]  # type: ignore[misc]
        if not "".join(cells).strip():  # type: ignore[arg-type]
            if _any_value(raw):
                ignored += 1  # other columns only: helper formulas dragged down, a note under the table
            continue
        if _maybe_footer(raw, cells, results_at) and _is_footer(raw, cells, results_at):  # type: ignore[arg-type]
            ignored += 1
            continue
        if " " in cells[0].strip() and _text_line(cells):  # type: ignore[arg-type,attr-defined]
            ignored += 1
            continue
        if cells[0] == call_header and _repeated_header(cells, headers, positions):  # type: ignore[arg-type]
            ignored += 1
            continue
        if len(rows) >= max_rows:
            raise error(path, f"has more than {max_rows:,} rows; split it into smaller files")
        rows.append(number)
        if len(shared) < 10_000:  # dispositions repeat: one string object each
            cells[2] = shared.setdefault(cells[2], cells[2])  # type: ignore[arg-type,call-overload]
        for append, cell in zip(appends, cells, strict=True):
            append(cell or "")  # type: ignore[arg-type]
        call_kinds("" if type(values[0]) in plain else cell_kind(values[0]))
        log_kinds("" if type(values[1]) in plain else cell_kind(values[1]))
        if prior_status is not None:
            prior_status.append(cell_text(get(raw, status_pos)).strip().lower())  # type: ignore[arg-type]
            if prior_status[-1] == "pending" and message_pos is not None and _EXCLUDED_MARK in cell_text(
                    get(raw, message_pos)).casefold():  # type: ignore[arg-type]  # a note added beside it too
                prior_excluded.append(number)  # a person excluded it: it stays out until they include it
        if prior_finished is not None:
            prior_finished.append(cell_text(get(raw, finished_pos)))  # type: ignore[arg-type]
        if row_pos is not None:
            was = cell_text(get(raw, row_pos)).strip()  # type: ignore[arg-type]
            moved += bool(was) and was != str(number)
        if size > header_width or blank_headers:
            _note_unnamed(raw, headers, blank_headers, used, longest)
            header_width = len(headers)
        if len(rows) <= WIDTH_SAMPLE:
            for position, value in grids.items(raw):
                if position < len(longest) and value is not None:
                    longest[position] = max(longest[position], len(cell_text(value).split("\n", 1)[0]))
    if not rows:
        if ignored:
            raise error(path, f"has a header row but no calls under it ({ignored:,} rows hold no callID, logID, "
                        "disposition or notes); put the calls in the rows below the header")
        raise error(path, "has a header row but no calls under it; put the calls in the rows below the header, "
                    "or export them again")
    if hidden:
        warnings.append(f"The calls were read from the hidden sheet '{sheet}'.")
    if moved:
        warnings.append(f"Rows of this results workbook moved since it was written ({moved:,} no longer sit at the "
                        f"number in their `row` column: sorted, or rows deleted above them), so row numbers now "
                        f"count places in this file. Sort by `row` first to keep the export's numbers.")
    keep = [position for position in range(len(headers)) if position not in result_positions.values()
            and (headers[position] or position in fields.values() or position in used)]
    index = {old: new for new, old in enumerate(keep)}
    cells_by_field = {name: texts[name] for name in FIELDS if name in fields}
    return Table(
        path=path, format=fmt, sha256=hashlib.sha256(data).hexdigest(),
        headers=tuple(headers[position] for position in keep), positions=tuple(keep), header_row=header_row,
        cells=cells_by_field, rows=rows, fields={name: index[position] for name, position in fields.items()},
        kinds=kinds, ignored=ignored, prior_status=prior_status, prior_finished=prior_finished,
        prior_excluded=tuple(prior_excluded), sheet=sheet,
        encoding=encoding, delimiter=delimiter, warnings=tuple(warnings),
        widths=tuple(min(longest[position], 200) for position in keep),
    )


def _any_value(raw: Row) -> bool:
    values = raw.values() if isinstance(raw, dict) else raw
    # `_filled` written out: this runs for every row of a million helper-only rows
    return any(value is not None and (not isinstance(value, str) or value.strip()) for value in values)


def _maybe_footer(raw: Row, cells: list[str], results_at: frozenset[int] = frozenset()) -> bool:
    """A cheap first look: a footer word in the row's first filled cell (a results workbook's own columns
    left out) or in one of the four fields."""
    first = _first_filled(raw, results_at)
    if isinstance(first, str) and _footer_word(first[:24]):
        return True  # `Total` in column A (or wherever the row begins), a count under Call ID
    if cells[0][:1].isdigit():  # a call ID as most accounts write them
        return False
    return any(_footer_word(cell[:24]) for cell in cells if cell)


def _first_filled(raw: Row, results_at: frozenset[int]) -> object:
    """The row's first cell that holds something, a results workbook's own columns left out; None if none."""
    first = get(raw, 0)  # most rows begin in column A: no scan
    if 0 not in results_at and _filled(first):
        return first
    for position, value in grids.items(raw):
        if position not in results_at and _filled(value):
            return value
    return None


def _filled(value: object) -> bool:
    return value is not None and (not isinstance(value, str) or bool(value.strip()))


_COUNT_AFTER = re.compile(r"(?:\s*[:=]|\s)\s*[\d.,]*\s*$")  # ": 3", " = 1,204", " 3", ":"; never "-123" (an ID)


def _footer_word(text: str) -> bool:
    """`Total`, `Grand Total:`, `Count: 3`, `Total = 1,204`: a footer's word, with or without its figure."""
    return " ".join(_COUNT_AFTER.sub("", text.casefold(), count=1).split()) in FOOTER_WORDS


def _text_line(cells: list[str]) -> bool:
    """A line of words under Call ID and nothing in the other call fields ("Exported by CRM v5 - confidential",
    "Page 2 of 3"): not a call. Three words at least, one of them a word of letters, so that a half-typed
    row ("12 345", nothing else yet) is still an invalid row that says what is missing."""
    words = cells[0].split()
    return (len(words) >= 3 and any(word.isalpha() and len(word) > 1 for word in words)
            and not "".join(cells[1:]).strip())


def _repeated_header(cells: list[str], headers: list[str], positions: list[int]) -> bool:
    """The header row again (a paginated export repeats it): each call field's cell is its column's name."""
    return all(cell == (headers[position] if position >= 0 else "")
               for cell, position in zip(cells, positions, strict=True))


def _is_footer(raw: Row, cells: list[str], results_at: frozenset[int] = frozenset()) -> bool:
    """`Total` / `Grand Total` / `Count` in the first filled cell (or the callID cell), and in the four call
    fields nothing but numbers (counts, sums) or blanks. Other columns may hold anything: a helper formula
    dragged down past the data shows its text on the Total row too. A call always has a disposition, which
    is text, so no call is taken for a footer. In a results workbook given back, its own columns (status,
    message "no call data: ignored", row...) are not looked at, so a footer stays a footer in every
    generation."""
    first = _first_filled(raw, results_at)
    if first is None:
        return False
    if not _footer_word(cell_text(first)) and not _footer_word(cells[0]):
        return False
    return all(_numeric(cell) for cell in cells if cell.strip() and not _footer_word(cell))


def _numeric(value: object) -> bool:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return True
    text = cell_text(value).strip().replace(",", "").rstrip("%")
    try:
        float(text)
    except ValueError:
        return False
    return True


def _note_unnamed(raw: Row, headers: list[str], blank_headers: list[int], used: set[int],
                  longest: list[int]) -> None:
    """Cells under a blank header or right of the header: such a column is carried under a blank header."""
    for position, value in grids.items(raw):
        if position >= MAX_COLUMNS:
            break
        if (position >= len(headers) or position in blank_headers) and value is not None and cell_text(value):
            if position >= len(headers):
                extra = position + 1 - len(headers)
                headers.extend([""] * extra)
                blank_headers.extend(range(len(headers) - extra, len(headers)))
                longest.extend([0] * extra)
            used.add(position)


def _raise_missing(path: Path, sources: Sequence[_Source], mapping: Mapping[str, str]) -> None:
    raise_missing(path, [_texts(raw) for source in sources for _, raw in source.head], mapping)


def _size(count: int) -> str:
    return f"{count / 2**20:.2f} MB" if count >= 2**16 else f"{count:,} bytes"
