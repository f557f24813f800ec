"""The raw rows of an input file, as often as they are wanted: `(row number, cells)` one row at a time.

`loading.py` reads an input twice: once to find the header and take the four fields, and again (in
`workbook.py`) to copy the other cells into the results workbook. Neither pass holds the whole sheet.
A row's cells are a list (position -> value) or, for a sheet read by the streaming reader, a dict
(only the cells that exist). CSV cells are text; workbook cells are typed (float, bool, dates, text).

Workbooks are checked before any XML is parsed (zip bombs, password protection, the wrong format
under the name). An .xlsx whose real extent (the cells it holds, not its dimension record) makes a
small dense range is read by python-calamine (fast); any other by the streaming reader in `xlsx.py`,
so a stray cell at XFD1048576 costs one cell, not 17 billion.
"""

from __future__ import annotations

import csv
import io
import re
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .errors import InputFileError

Row = list[object] | dict[int, object]

DELIMITERS = (",", ";", "\t", "|")
# Zip-based workbooks are checked before any XML is parsed (decompression bombs):
ZIP_MAX_ENTRIES = 10_000
ZIP_MAX_TOTAL = 20 * 50 * 1024 * 1024  # uncompressed bytes in all entries together
ZIP_MAX_RATIO = 200  # uncompressed/compressed for any entry above 1 MiB
DENSE_MAX_CELLS = 4_000_000  # a real extent up to this many cells is read by calamine
SPARSE_FROM = 256  # the streaming reader gives a row as a dict when its last cell is this far right

_OLE2_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_ZIP_MAGIC = b"PK\x03\x04"
_ENCRYPTION_STREAM = "EncryptionInfo".encode("utf-16-le")
_WIDE_COLUMN = re.compile(rb' r="([A-Z]{2,3})[0-9]')  # a cell right of column Z
_ROW_NUMBER = re.compile(rb'<(?:[\w.-]+:)?row r="(\d+)"')  # how Excel, LibreOffice and openpyxl write rows
_ANY_ROW_NUMBER = re.compile(rb'<(?:[\w.-]+:)?row\b[^>]*?\br="(\d+)"')


def error(path: Path, problem: str) -> InputFileError:
    return InputFileError(f"{path}: {problem}.", path=path)


def short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:120] if text else type(exc).__name__


def get(row: Row, position: int) -> object:
    """One cell of a row, None when the row has no cell there."""
    if isinstance(row, dict):
        return row.get(position)
    return row[position] if position < len(row) else None


def width(row: Row) -> int:
    return (max(row) + 1 if row else 0) if isinstance(row, dict) else len(row)


def items(row: Row) -> Iterator[tuple[int, object]]:
    return iter(sorted(row.items())) if isinstance(row, dict) else enumerate(row)


# -- CSV ----------------------------------------------------------------------------------------------

def decode(data: bytes, path: Path) -> tuple[str, str]:
    if data.startswith(b"\xef\xbb\xbf"):
        return _decode_as(data[3:], "utf-8", path), "utf-8-sig"
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return _decode_as(data, "utf-16", path), "utf-16"
    if _looks_binary(data[:8192]):
        raise error(path, "is not a text CSV file (it holds binary data); export the sheet again as CSV")
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("cp1252"), "cp1252"
    except UnicodeDecodeError:
        raise error(path, "is neither UTF-8 nor Windows-1252 text; save it again as 'CSV UTF-8'") from None


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
        raise error(path, f"starts like {encoding.upper()} text but is not; save it again as 'CSV UTF-8'") from None


def csv_records(data: bytes | Path, encoding: str, delimiter: str, path: Path) -> Iterator[tuple[int, Row]]:
    """The records of a CSV file's bytes (or of the file itself), decoded as they are read: no copy of
    the whole text is made."""
    csv.field_size_limit(sys.maxsize)
    stream = io.BytesIO(data) if isinstance(data, bytes) else open(data, "rb")  # noqa: SIM115 (closed below)
    with io.TextIOWrapper(stream, encoding=encoding, newline="") as lines:
        yield from _records(lines, delimiter, path)


def _records(lines: io.TextIOWrapper, delimiter: str, path: Path) -> Iterator[tuple[int, Row]]:
    records = csv.reader(lines, delimiter=delimiter, strict=True)
    row = 0
    try:
        for row, record in enumerate(records, start=1):
            if '="' in "".join(record):  # cheap first look for Excel's ="0054" (a cell kept as text)
                record = [_as_shown(cell) for cell in record]
            yield row, record  # type: ignore[misc]
    except csv.Error as exc:
        problem = ("a quoted cell is never closed (a \" is missing, or the file was cut off)"
                   if "end of data" in str(exc) else f"the quoting is broken ({exc})")
        raise error(path, f"row {row + 1}: {problem}; fix that row or export the file again") from None


_EXCEL_TEXT = re.compile(r'="((?:[^"]|"")*)"', re.DOTALL)


def _as_shown(cell: str) -> str:
    """A CSV cell written as `="0054000001"` (how exports keep Excel from dropping leading zeros or
    rounding long IDs) is the text Excel shows: `0054000001`."""
    match = _EXCEL_TEXT.fullmatch(cell.strip())
    return match.group(1).replace('""', '"') if match else cell


# -- workbooks ----------------------------------------------------------------------------------------

def check_container(data: bytes, path: Path, fmt: str) -> None:
    """Refuse, before any XML is parsed, what is not the format it claims or is a zip bomb."""
    if fmt in ("xlsx", "ods"):
        if data.startswith(_OLE2_MAGIC):
            if _ENCRYPTION_STREAM in data:
                raise error(path, "is password-protected; open it, remove the password, save it and try again")
            raise error(path, f"is an old-style .xls workbook named .{fmt}; rename it to .xls")
        if not data.startswith(_ZIP_MAGIC):
            raise error(path, f"is not a .{fmt} workbook (it may be damaged or another kind of file); "
                        f"open it and save it again as .{fmt}")
        _check_zip(data, path)
    elif not data.startswith(_OLE2_MAGIC):
        if data.startswith(_ZIP_MAGIC):
            raise error(path, "is a newer .xlsx workbook named .xls; rename it to .xlsx")
        raise error(path, "is not an .xls workbook (it may be damaged, or a web page saved as .xls); "
                    "open it and save it again as .xlsx")


def _check_zip(data: bytes, path: Path) -> None:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            entries = archive.infolist()
    except (zipfile.BadZipFile, ValueError, EOFError):
        raise error(path, "is damaged (its zip structure is broken); open it and save it again") from None
    if len(entries) > ZIP_MAX_ENTRIES:
        raise error(path, f"holds {len(entries)} parts, more than a spreadsheet has; it is refused as unsafe")
    total = sum(entry.file_size for entry in entries)
    suspicious = any(entry.file_size > 2**20 and entry.file_size > ZIP_MAX_RATIO * max(entry.compress_size, 1)
                     for entry in entries)
    if total > ZIP_MAX_TOTAL or suspicious:
        raise error(path, "unpacks to far more data than a spreadsheet of its size holds "
                    "(a decompression bomb?); it is refused as unsafe")
    if any(entry.flag_bits & 0x1 for entry in entries):
        raise error(path, "is password-protected; open it, remove the password, save it and try again")


@dataclass(frozen=True)
class Sheet:
    """One sheet of a workbook, and how to read it."""

    name: str
    visible: bool
    index: int  # its position in the workbook
    streaming: bool  # read by xlsx.py rather than calamine


class Workbook:
    """A workbook's sheets, each readable as rows as often as wanted (from the file's bytes in memory)."""

    def __init__(self, data: bytes | None, path: Path, fmt: str) -> None:
        """From the file's bytes, or (data None) from the file itself, read as needed."""
        self.data, self.path, self.fmt = data, path, fmt
        self.sheets = self._sheets()

    def _sheets(self) -> list[Sheet]:
        if self.fmt == "xlsx":
            from .xlsx import XlsxError

            try:
                book = self._xlsx()
                return [Sheet(info.name, info.visible, n, self._sparse(book, info.part))
                        for n, info in enumerate(book.sheets)]
            except (XlsxError, zipfile.BadZipFile, ValueError, EOFError) as exc:
                if not self._calamine_reads():  # calamine knows more packages than our reader
                    raise error(self.path, f"cannot be read as a .xlsx workbook ({short(exc)}); "
                                "open it and save it again") from None
        import python_calamine

        with self._calamine() as workbook:
            return [Sheet(meta.name, meta.visible == python_calamine.SheetVisibleEnum.Visible, n, False)
                    for n, meta in enumerate(workbook.sheets_metadata)]

    def _calamine_reads(self) -> bool:
        try:
            with self._calamine():
                return True
        except InputFileError:
            return False

    def _xlsx(self):  # type: ignore[no-untyped-def]
        from .xlsx import XlsxBook

        return XlsxBook(zipfile.ZipFile(io.BytesIO(self.data) if self.data is not None else self.path))

    def _calamine(self):  # type: ignore[no-untyped-def]
        import python_calamine

        try:
            if self.data is None:
                return python_calamine.CalamineWorkbook.from_path(str(self.path))
            return python_calamine.CalamineWorkbook.from_filelike(io.BytesIO(self.data))
        except python_calamine.PasswordError:
            raise error(self.path, "is password-protected; open it, remove the password, save it and try again"
                        ) from None
        except BaseException as exc:
            reraise_unless_unreadable(exc)
            raise error(self.path, f"cannot be read as a .{self.fmt} workbook ({short(exc)}); "
                        "open it and save it again") from None

    @staticmethod
    def _sparse(book, part: str) -> bool:  # type: ignore[no-untyped-def]
        """True when the sheet's real extent (rows x columns of the cells it holds) may be too big to be dense.

        A cheap scan of the XML: the widest column right of Z (else Z), the highest row number."""
        columns: set[bytes] = set()
        last_row = 0
        try:
            for pattern in (_ROW_NUMBER, _ANY_ROW_NUMBER):
                with book.archive.open(part) as stream:
                    tail = b""
                    while chunk := stream.read(1 << 20):
                        buffer = tail + chunk
                        cut = max(buffer.rfind(b"<"), 0)
                        columns.update(_WIDE_COLUMN.findall(buffer, 0, cut))
                        rows = pattern.findall(buffer, 0, cut)
                        if rows:
                            last_row = max(last_row, max(map(int, rows)))
                        tail = buffer[cut:]
                if last_row:
                    break
        except KeyError:
            return True  # the streaming reader will say the part is missing
        from .xlsx import column_index

        last_column = max((column_index(letters.decode("ascii")) for letters in columns), default=25) + 1
        return last_row * last_column > DENSE_MAX_CELLS

    def rows(self, sheet: Sheet) -> Iterator[tuple[int, Row]]:
        """Each row of the sheet: (1-based row number, cells). Rows may be skipped when empty."""
        if sheet.streaming:
            from .xlsx import XlsxError

            book = self._xlsx()
            info = book.sheets[sheet.index]
            try:
                for number, cells in book.rows(info):
                    if cells[-1][0] >= SPARSE_FROM:
                        yield number, dict(cells)
                    else:
                        dense: list[object] = [None] * (cells[-1][0] + 1)
                        for position, value in cells:
                            dense[position] = value
                        yield number, dense
            except XlsxError as exc:
                raise error(self.path, f"sheet '{sheet.name}' cannot be read ({short(exc)}); "
                            "open it and save it again") from None
            return
        with self._calamine() as workbook:
            try:
                found = workbook.get_sheet_by_index(sheet.index)
                left = found.start[1] if found.start else 0
                pad = [None] * left
                for number, cells in enumerate(found.iter_rows(), start=1):
                    yield number, (pad + cells) if left else cells
            except BaseException as exc:
                reraise_unless_unreadable(exc)
                raise error(self.path, f"sheet '{sheet.name}' cannot be read ({short(exc)}); "
                            "open it and save it again") from None


def reraise_unless_unreadable(exc: BaseException) -> None:
    """calamine fails on a damaged file with its own errors or, from a Rust panic, pyo3's
    PanicException (a BaseException); both mean "unreadable". Ctrl-C and exits pass through."""
    if not isinstance(exc, Exception) and type(exc).__name__ != "PanicException":
        raise exc
