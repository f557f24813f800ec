"""Reading input files (CSV, XLSX, XLS, ODS) into a `Table` of text cells.

Every cell is read as the text a person sees, then the header row is found and its columns are
matched to the fields we need. Nothing here judges the rows themselves: that is `schema.py`.
Files that cannot be used at all raise `InputFileError` with one sentence naming the file and the fix.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
import sys
import unicodedata
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path

from .errors import InputFileError

MAX_BYTES = 50 * 1024 * 1024  # a file larger than this on disk is refused
MAX_ROWS = 1_048_576  # Excel's own limit
HEADER_SCAN_ROWS = 30  # the header row is looked for among the first rows of a sheet
# Zip-based workbooks are checked before any XML is parsed (decompression bombs):
ZIP_MAX_ENTRIES = 10_000
ZIP_MAX_TOTAL = 20 * MAX_BYTES  # uncompressed bytes in all entries together
ZIP_MAX_RATIO = 200  # uncompressed/compressed for any entry above 1 MiB

FORMATS = {".csv": "csv", ".xlsx": "xlsx", ".xls": "xls", ".ods": "ods"}
DELIMITERS = (",", ";", "\t", "|")

#: Normalised header text -> field name.  Matching ignores case, spaces, `_` and `-`.
HEADER_ALIASES = {
    "callid": "callID",
    "logid": "logID",
    "disposition": "disposition",
    "dispositionname": "disposition",
    "notes": "notes",
    "note": "notes",
}
REQUIRED_FIELDS = ("callID", "logID", "disposition")
#: The columns a results workbook adds; found again when one is fed back in.
RESULT_COLUMNS = ("row", "status", "http_status", "message", "attempts", "finished_at")

# Cell kinds worth remembering for the ID columns (plain text and numbers need no mark).
KIND_DATE = "date"
KIND_BOOL = "bool"

_OLE2_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_ZIP_MAGIC = b"PK\x03\x04"
_ENCRYPTION_STREAM = "EncryptionInfo".encode("utf-16-le")


@dataclass(frozen=True)
class Table:
    """One input sheet as text cells, column by column, with blank rows left out."""

    path: Path
    format: str  # csv, xlsx, xls, ods
    sha256: str  # of the file's bytes, for the Summary sheet
    headers: tuple[str, ...]  # the input's own column headers, as read (result columns removed)
    columns: tuple[list[str], ...]  # cells as text, one list per header, aligned with `rows`
    rows: list[int]  # the row number a spreadsheet shows for each data row (header = its own row)
    fields: dict[str, int]  # field name -> column position (notes may be absent)
    kinds: dict[str, list[str]]  # "callID"/"logID" -> per-row cell kind ("", "date", "bool")
    prior_status: list[str] | None = None  # per row, when the input is a results workbook
    prior_finished: list[str] | None = None
    sheet: str | None = None
    encoding: str | None = None
    delimiter: str | None = None
    warnings: tuple[str, ...] = field(default=())

    def __len__(self) -> int:
        return len(self.rows)

    def field_cells(self, name: str) -> list[str]:
        """The text cells of one field; all blank when the column is absent (notes)."""
        position = self.fields.get(name)
        return self.columns[position] if position is not None else [""] * len(self.rows)


def normalize_header(text: str) -> str:
    """`Call ID`, `call_id`, `CALL-ID` and full-width `ｃａｌｌＩＤ` all become `callid`."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    return "".join(ch for ch in folded if not (ch.isspace() or ch in "_-"))


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
        text = _decode(path.read_bytes(), path)[0]
    except OSError as exc:
        raise InputFileError(f"{path}: cannot read the dispositions file ({exc.strerror}); check --dispositions.",
                             path=path) from None
    names = tuple(line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#"))
    if not names:
        raise InputFileError(f"{path}: the dispositions file lists no names; put one name on each line.", path=path)
    return names


def load(path: Path, *, max_bytes: int = MAX_BYTES, max_rows: int = MAX_ROWS) -> Table:
    """Read one input file into a Table, or raise InputFileError saying why it cannot be used."""
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise _error(path, f"is not a supported file type; use {', '.join(FORMATS)}")
    try:
        size = path.stat().st_size
        if not path.is_file():
            raise _error(path, "is a folder, not a file; give the spreadsheet's own path")
    except FileNotFoundError:
        raise _error(path, "does not exist; check the name and folder") from None
    except OSError as exc:
        raise _error(path, f"cannot be read ({exc.strerror})") from None
    if size == 0:
        raise _error(path, "is empty; export the calls again")
    if size > max_bytes:
        raise _error(path, f"is {_size(size)}, over the {_size(max_bytes)} limit; split it into smaller files")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise _error(path, f"cannot be read ({exc.strerror})") from None
    if fmt == "csv":
        text, encoding = _decode(data, path)
        delimiter = _detect_delimiter(text)
        records = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
        grid: Iterable[Sequence[object]] = _csv_rows(records, path)
        return _build(path, fmt, data, _Source(grid), max_rows, encoding=encoding, delimiter=delimiter)
    _check_container(data, path, fmt)
    return _load_workbook(path, fmt, data, max_rows)


# -- text files ---------------------------------------------------------------------------------

def _decode(data: bytes, path: Path) -> tuple[str, str]:
    if data.startswith(b"\xef\xbb\xbf"):
        return _decode_as(data[3:], "utf-8", path), "utf-8-sig"
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return _decode_as(data, "utf-16", path), "utf-16"
    if _looks_binary(data[:8192]):
        raise _error(path, "is not a text CSV file (it holds binary data); export the sheet again as CSV")
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("cp1252"), "cp1252"
    except UnicodeDecodeError:
        raise _error(path, "is neither UTF-8 nor Windows-1252 text; save it again as 'CSV UTF-8'") from None


def _looks_binary(sample: bytes) -> bool:
    """A zip, an old Office file, an image or a PDF, or text full of NUL bytes (UTF-16 without a BOM):
    not a text CSV. A stray control character or two in a note is still text."""
    if sample.startswith((_ZIP_MAGIC, _OLE2_MAGIC, b"\x89PNG", b"%PDF", b"\x1f\x8b", b"\xff\xd8\xff", b"GIF8")):
        return True
    return sample.count(0) > max(4, len(sample) // 100)


def _decode_as(data: bytes, encoding: str, path: Path) -> str:
    try:
        return data.decode(encoding)
    except UnicodeDecodeError:
        raise _error(path, f"starts like {encoding.upper()} text but is not; save it again as 'CSV UTF-8'") from None


def _detect_delimiter(text: str) -> str:
    """The delimiter whose split of the first lines finds our header; else the most consistent one."""
    sample = text[:65536]
    best, best_score = ",", (-1, -1)
    for delimiter in DELIMITERS:
        rows = []
        try:
            for record in csv.reader(io.StringIO(sample, newline=""), delimiter=delimiter, strict=False):
                rows.append(record)
                if len(rows) >= HEADER_SCAN_ROWS:
                    break
        except csv.Error:
            continue
        matched = max((len(_matched_fields(r)) for r in rows), default=0)
        widths = [len(r) for r in rows if r]
        consistent = widths.count(max(set(widths), key=widths.count)) if widths and max(widths) > 1 else 0
        score = (matched, consistent)
        if score > best_score:
            best, best_score = delimiter, score
    return best


def _csv_rows(records: Iterator[list[str]], path: Path) -> Iterator[Sequence[object]]:
    csv.field_size_limit(sys.maxsize)
    row = 0
    try:
        for row, record in enumerate(records, start=1):  # noqa: B007 (row is used after the loop)
            yield record
    except csv.Error as exc:
        problem = ("a quoted cell is never closed (a \" is missing, or the file was cut off)"
                   if "end of data" in str(exc) else f"the quoting is broken ({exc})")
        raise _error(path, f"row {row + 1}: {problem}; fix that row or export the file again") from None


# -- workbooks ----------------------------------------------------------------------------------

def _check_container(data: bytes, path: Path, fmt: str) -> None:
    """Refuse, before any XML is parsed, what is not the format it claims or is a zip bomb."""
    if fmt in ("xlsx", "ods"):
        if data.startswith(_OLE2_MAGIC):
            if _ENCRYPTION_STREAM in data:
                raise _error(path, "is password-protected; open it, remove the password, save it and try again")
            raise _error(path, f"is an old-style .xls workbook named .{fmt}; rename it to .xls")
        if not data.startswith(_ZIP_MAGIC):
            raise _error(path, f"is not a .{fmt} workbook (it may be damaged or another kind of file); "
                         f"open it and save it again as .{fmt}")
        _check_zip(data, path)
    elif not data.startswith(_OLE2_MAGIC):
        if data.startswith(_ZIP_MAGIC):
            raise _error(path, "is a newer .xlsx workbook named .xls; rename it to .xlsx")
        raise _error(path, "is not an .xls workbook (it may be damaged, or a web page saved as .xls); "
                     "open it and save it again as .xlsx")


def _check_zip(data: bytes, path: Path) -> None:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            entries = archive.infolist()
    except (zipfile.BadZipFile, ValueError, EOFError):
        raise _error(path, "is damaged (its zip structure is broken); open it and save it again") from None
    if len(entries) > ZIP_MAX_ENTRIES:
        raise _error(path, f"holds {len(entries)} parts, more than a spreadsheet has; it is refused as unsafe")
    total = sum(entry.file_size for entry in entries)
    suspicious = any(entry.file_size > 2**20 and entry.file_size > ZIP_MAX_RATIO * max(entry.compress_size, 1)
                     for entry in entries)
    if total > ZIP_MAX_TOTAL or suspicious:
        raise _error(path, "unpacks to far more data than a spreadsheet of its size holds "
                     "(a decompression bomb?); it is refused as unsafe")
    if any(entry.flag_bits & 0x1 for entry in entries):
        raise _error(path, "is password-protected; open it, remove the password, save it and try again")


def _load_workbook(path: Path, fmt: str, data: bytes, max_rows: int) -> Table:
    import python_calamine

    try:
        workbook = python_calamine.CalamineWorkbook.from_filelike(io.BytesIO(data))
    except python_calamine.PasswordError:
        raise _error(path, "is password-protected; open it, remove the password, save it and try again") from None
    except BaseException as exc:
        _reraise_unless_unreadable(exc)
        raise _error(path, f"cannot be read as a .{fmt} workbook ({_short(exc)}); open it and save it again") from None
    with workbook:
        sheets = [(meta.name, meta.visible == python_calamine.SheetVisibleEnum.Visible)
                  for meta in workbook.sheets_metadata]
        if not sheets:
            raise _error(path, "holds no sheets; open it, check the calls are there, and save it again")
        # Visible sheets first, hidden ones only as a fallback; each keeps its workbook order.
        order = [name for name, visible in sheets if visible] + [name for name, visible in sheets if not visible]
        candidates: list[_Source] = []
        for name in order:
            try:
                grid = workbook.get_sheet_by_name(name).to_python(skip_empty_area=False)
            except BaseException as exc:
                _reraise_unless_unreadable(exc)
                problem = f"sheet '{name}' cannot be read ({_short(exc)}); open it and save it again"
                raise _error(path, problem) from None
            source = _Source(grid, sheet=name)
            if source.header_index is not None:
                return _build(path, fmt, data, source, max_rows, sheet=name,
                              hidden=not dict(sheets)[name])
            candidates.append(source)
    _raise_missing(path, candidates)
    raise AssertionError("unreachable")


# -- from a grid of cells to a Table --------------------------------------------------------------

class _Source:
    """A grid of raw cells whose first rows are searched for the header."""

    def __init__(self, grid: Iterable[Sequence[object]], sheet: str | None = None) -> None:
        self.sheet = sheet
        self._iter = iter(grid)
        self.head: list[Sequence[object]] = []
        self.header_index: int | None = None
        for raw in self._iter:
            self.head.append(raw)
            if len(_matched_fields(_texts(raw))) == len(REQUIRED_FIELDS):
                self.header_index = len(self.head) - 1
                break
            if len(self.head) >= HEADER_SCAN_ROWS:
                break

    def rest(self) -> Iterator[Sequence[object]]:
        """Rows after the header, in order."""
        assert self.header_index is not None
        yield from self.head[self.header_index + 1:]
        yield from self._iter


def _texts(raw: Sequence[object]) -> list[str]:
    return [cell_text(value) for value in raw]


def _matched_fields(headers: Sequence[str]) -> set[str]:
    found = {HEADER_ALIASES[key] for key in map(normalize_header, headers) if key in HEADER_ALIASES}
    return found & set(REQUIRED_FIELDS)


def _build(path: Path, fmt: str, data: bytes, source: _Source, max_rows: int, *, sheet: str | None = None,
           hidden: bool = False, encoding: str | None = None, delimiter: str | None = None) -> Table:
    if source.header_index is None:
        _raise_missing(path, [source])
    assert source.header_index is not None
    headers = [text.strip() for text in _texts(source.head[source.header_index])]
    fields, result_positions = _map_columns(path, headers)
    width = len(headers)
    columns: list[list[str]] = [[] for _ in range(width)]
    id_positions = [(fields["callID"], "callID"), (fields["logID"], "logID")]
    kinds: dict[str, list[str]] = {"callID": [], "logID": []}
    typed = fmt != "csv"  # CSV cells are text already; workbook cells need converting
    rows: list[int] = []
    row_number = source.header_index + 1  # the header's own row number
    for raw in source.rest():
        row_number += 1
        texts = [cell_text(value) for value in raw] if typed else raw
        if not "".join(texts).strip():  # type: ignore[arg-type]
            continue
        if len(rows) >= max_rows:
            raise _error(path, f"has more than {max_rows:,} rows; split it into smaller files")
        if len(texts) > width:  # cells beyond the header: carried under a blank header
            extra = len(texts) - width
            headers.extend([""] * extra)
            columns.extend([[""] * len(rows) for _ in range(extra)])
            width = len(headers)
        rows.append(row_number)
        for position, column in enumerate(columns):
            column.append(texts[position] if position < len(texts) else "")  # type: ignore[arg-type]
        for position, name in id_positions:
            kinds[name].append(cell_kind(raw[position]) if typed and position < len(raw) else "")
    if not rows:
        raise _error(path, "has a header row but no calls under it; put the calls in the rows below the header, "
                     "or export them again")
    warnings = []
    if "notes" not in fields:
        warnings.append("There is no notes column: every call is sent with empty notes.")
    if hidden:
        warnings.append(f"The calls were read from the hidden sheet '{sheet}'.")
    prior_status = prior_finished = None
    if result_positions:
        prior_status = [text.strip().lower() for text in columns[result_positions["status"]]]
        prior_finished = columns[result_positions["finished_at"]]
    blank = {position for position in range(width)  # data starting in column B: no empty column A
             if not headers[position] and position not in fields.values() and not any(columns[position])}
    keep = [position for position in range(width) if position not in result_positions.values()
            and position not in blank]
    remap = {old: new for new, old in enumerate(keep)}
    return Table(
        path=path,
        format=fmt,
        sha256=hashlib.sha256(data).hexdigest(),
        headers=tuple(headers[position] for position in keep),
        columns=tuple(columns[position] for position in keep),
        rows=rows,
        fields={name: remap[position] for name, position in fields.items()},
        kinds=kinds,
        prior_status=prior_status,
        prior_finished=prior_finished,
        sheet=sheet,
        encoding=encoding,
        delimiter=delimiter,
        warnings=tuple(warnings),
    )


def _map_columns(path: Path, headers: list[str]) -> tuple[dict[str, int], dict[str, int]]:
    """Field -> position, and (for a results workbook) result column -> position."""
    fields: dict[str, int] = {}
    for position, header in enumerate(headers):
        name = HEADER_ALIASES.get(normalize_header(header))
        if name is None:
            continue
        if name in fields:
            first = headers[fields[name]]
            raise _error(path, f"has two columns for {name} ('{first}' and '{header}'); rename or remove one")
        fields[name] = position
    keys = [normalize_header(header) for header in headers]
    wanted = [normalize_header(name) for name in RESULT_COLUMNS]
    result_positions: dict[str, int] = {}
    if all(key in keys for key in wanted):  # a results workbook: its last block of result columns
        for name, key in zip(RESULT_COLUMNS, wanted, strict=True):
            result_positions[name] = len(keys) - 1 - keys[::-1].index(key)
    return fields, result_positions


def _raise_missing(path: Path, sources: Sequence[_Source]) -> None:
    """Name the missing required columns, showing the most header-like row we found."""
    candidates = [[text.strip() for text in _texts(raw) if text.strip()] for source in sources for raw in source.head]
    candidates = [texts for texts in candidates if texts]
    if not candidates:
        raise _error(path, "holds no data (every row is blank); export the calls again")
    best = max(candidates, key=lambda texts: len(_matched_fields(texts)))  # the first, among equals
    missing = [name for name in REQUIRED_FIELDS if name not in _matched_fields(best)]
    found = ", ".join(best[:8]) + ("…" if len(best) > 8 else "")
    plural = "s" if len(missing) > 1 else ""
    listed = " and ".join(f"'{name}'" for name in missing)
    raise _error(path, f"column{plural} {listed} {'are' if plural else 'is'} missing (found: {found}); "
                 f"rename the column{plural} in the header row to {' and '.join(missing)}")


def _reraise_unless_unreadable(exc: BaseException) -> None:
    """calamine fails on a damaged file with its own errors or, from a Rust panic, pyo3's
    PanicException (a BaseException); both mean "unreadable". Ctrl-C and exits pass through."""
    if not isinstance(exc, Exception) and type(exc).__name__ != "PanicException":
        raise exc


def _size(count: int) -> str:
    return f"{count / 2**20:.2f} MB" if count >= 2**16 else f"{count:,} bytes"


def _error(path: Path, problem: str) -> InputFileError:
    return InputFileError(f"{path}: {problem}.", path=path)


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:120] if text else type(exc).__name__
