"""A streaming reader of .xlsx sheets: rows as sparse cells, in bounded memory, whatever the sheet claims.

python-calamine builds a dense range from the first to the last cell of a sheet, so one stray cell at
XFD1048576 asks for 17 billion cells and aborts the process. Here the sheet's XML is parsed as it is
unzipped (expat), and each row comes out as its own `(row number, [(column, value), ...])`, holding only
the cells that exist. Values are typed as calamine types them: text, float, bool, and dates as
`datetime`/`date`/`time` (from the cell's number format); error cells (`#N/A`) are None.
"""

from __future__ import annotations

import contextlib
import posixpath
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from xml.parsers import expat

Cells = list[tuple[int, object]]  # (0-based column, value), in column order

_MAIN_NS = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
_REL_NS = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
_PKG_REL_NS = "http://schemas.openxmlformats.org/package/2006/relationships"
_DATE_FORMAT_IDS = frozenset([*range(14, 23), *range(27, 37), *range(45, 48), *range(50, 59)])
_ESCAPED = re.compile(r"_x([0-9A-Fa-f]{4})_")
_REF = re.compile(r"([A-Z]{1,3})(\d*)")
_QUOTED = re.compile(r'"[^"]*"|\[[^\]]*\]|\\.')
_CHUNK = 1 << 16
_LAST_ROW = 1_048_576  # a row number outside 1..this, or not after the previous row, is taken as the next row


class XlsxError(Exception):
    """The package is not a workbook we can read (a missing part, broken XML)."""


@dataclass(frozen=True)
class SheetInfo:
    name: str
    visible: bool
    part: str  # the sheet's zip member


def _unescape(text: str) -> str:
    return _ESCAPED.sub(lambda m: chr(int(m.group(1), 16)), text) if "_x" in text else text


def _local(name: str) -> str:
    """Element name without its namespace (expat runs with namespace processing: `ns local`)."""
    return name.rpartition(" ")[2]


def _parse(archive: zipfile.ZipFile, member: str, start, end=None, data=None) -> None:  # type: ignore[no-untyped-def]
    parser = expat.ParserCreate(namespace_separator=" ")
    parser.buffer_text = True
    parser.buffer_size = _CHUNK
    parser.StartElementHandler = start
    if end is not None:
        parser.EndElementHandler = end
    if data is not None:
        parser.CharacterDataHandler = data
    try:
        with archive.open(member) as stream:
            while chunk := stream.read(_CHUNK):
                parser.Parse(chunk, False)
        parser.Parse(b"", True)
    except KeyError:
        raise XlsxError(f"the part {member} is missing") from None
    except expat.ExpatError as exc:
        raise XlsxError(f"{member}: {exc}") from None


class XlsxBook:
    """One .xlsx package: its sheets, shared strings and date styles, read once."""

    def __init__(self, archive: zipfile.ZipFile) -> None:
        self.archive = archive
        self.date1904 = False
        self.sheets = self._sheets()
        self._strings: list[str] | None = None
        self._date_styles: frozenset[int] | None = None

    def _sheets(self) -> list[SheetInfo]:
        rels: dict[str, str] = {}
        found: list[tuple[str, bool, str]] = []

        def rel(name, attrs):  # type: ignore[no-untyped-def]
            if _local(name) == "Relationship":
                rels[attrs.get("Id", "")] = attrs.get("Target", "")

        def book(name, attrs):  # type: ignore[no-untyped-def]
            local = _local(name)
            if local == "sheet":
                found.append((attrs.get("name", ""), attrs.get("state", "visible") == "visible",
                              attrs.get(f"{_REL_NS} id", "")))
            elif local == "workbookPr":
                self.date1904 = attrs.get("date1904", "false").lower() in ("1", "true")

        book_part = self._main_part()
        _parse(self.archive, book_part, book)
        folder, base = posixpath.split(book_part)
        _parse(self.archive, posixpath.join(folder, "_rels", base + ".rels"), rel)
        sheets = []
        for name, visible, rid in found:
            target = rels.get(rid, "")
            part = target.lstrip("/") if target.startswith("/") else posixpath.normpath(posixpath.join(folder, target))
            sheets.append(SheetInfo(name, visible, part))
        return sheets

    def _main_part(self) -> str:
        target = ["xl/workbook.xml"]

        def rel(name, attrs):  # type: ignore[no-untyped-def]
            if _local(name) == "Relationship" and attrs.get("Type", "").endswith("/officeDocument"):
                target[0] = attrs.get("Target", target[0]).lstrip("/")

        with contextlib.suppress(XlsxError):
            _parse(self.archive, "_rels/.rels", rel)
        return target[0]

    def strings(self) -> list[str]:
        if self._strings is None:
            self._strings = self._read_strings()
        return self._strings

    def _read_strings(self) -> list[str]:
        strings: list[str] = []
        parts: list[str] = []
        state = {"t": False, "skip": 0}
        append = strings.append

        def start(name, attrs):  # type: ignore[no-untyped-def]
            local = _local(name)
            if local == "t":
                state["t"] = True
            elif local == "si":
                parts.clear()
            elif local == "rPh":
                state["skip"] += 1

        def end(name):  # type: ignore[no-untyped-def]
            local = _local(name)
            if local == "t":
                state["t"] = False
            elif local == "si":
                append(_unescape("".join(parts)))
            elif local == "rPh":
                state["skip"] -= 1

        def data(text):  # type: ignore[no-untyped-def]
            if state["t"] and not state["skip"]:
                parts.append(text)

        part = next((name for name in self.archive.namelist() if name.lower() == "xl/sharedstrings.xml"), None)
        if part is not None:
            _parse(self.archive, part, start, end, data)
        return strings

    def date_styles(self) -> frozenset[int]:
        """The cellXfs indexes whose number format shows a date or time."""
        if self._date_styles is not None:
            return self._date_styles
        custom: dict[int, str] = {}
        formats: list[int] = []
        depth = {"xfs": False}

        def start(name, attrs):  # type: ignore[no-untyped-def]
            local = _local(name)
            if local == "numFmt":
                custom[int(attrs.get("numFmtId", "0"))] = attrs.get("formatCode", "")
            elif local == "cellXfs":
                depth["xfs"] = True
            elif local == "xf" and depth["xfs"]:
                formats.append(int(attrs.get("numFmtId", "0") or 0))

        def end(name):  # type: ignore[no-untyped-def]
            if _local(name) == "cellXfs":
                depth["xfs"] = False

        if "xl/styles.xml" in self.archive.namelist():
            _parse(self.archive, "xl/styles.xml", start, end)
        self._date_styles = frozenset(index for index, fmt in enumerate(formats)
                                      if fmt in _DATE_FORMAT_IDS or (fmt in custom and _is_date_code(custom[fmt])))
        return self._date_styles

    def rows(self, sheet: SheetInfo) -> Iterator[tuple[int, Cells]]:
        """Each row that holds a cell: (1-based row number, its cells), in sheet order."""
        strings = self.strings()
        dates = self.date_styles()
        epoch = datetime(1904, 1, 1) if self.date1904 else datetime(1899, 12, 30)
        done: list[tuple[int, Cells]] = []
        cells: Cells = []
        texts: list[str] = []
        row = 0
        column = -1
        kind = "n"
        style = 0
        reading: bool | None = False  # inside <v> or <t>; None inside phonetic text
        tags: dict[str, int] = {}  # element name -> 1 c, 2 v/t, 3 row, 4 rPh, 0 other
        columns: dict[str, int] = {}  # column letters -> position

        def tag(name: str) -> int:
            found = tags.get(name)
            if found is None:
                found = tags[name] = {"c": 1, "v": 2, "t": 2, "row": 3, "rPh": 4}.get(name[name.rfind(" ") + 1:], 0)
            return found

        def start(name, attrs):  # type: ignore[no-untyped-def]
            nonlocal row, column, kind, style, reading
            code = tags.get(name) or tag(name)
            if code == 1:
                ref = attrs.get("r")
                if ref:
                    letters = ref.rstrip("0123456789")
                    found = columns.get(letters)
                    if found is None:
                        found = columns[letters] = column_index(letters) if letters.isalpha() and letters.isupper() \
                            else column + 1
                    column = found
                else:
                    column += 1
                kind = attrs.get("t", "n")
                number = attrs.get("s")
                style = int(number) if number and number.isdigit() else 0
                texts.clear()
            elif code == 2:
                if reading is not None:
                    reading = True
            elif code == 3:
                number = attrs.get("r")
                row = int(number) if number and number.isdigit() and row < int(number) <= _LAST_ROW else row + 1
                column = -1
                cells.clear()
            elif code == 4:
                reading = None  # phonetic text is not the cell's

        def end(name):  # type: ignore[no-untyped-def]
            nonlocal reading
            code = tags.get(name) or tag(name)
            if code == 1:
                if texts:
                    value = _value(kind, "".join(texts), style, strings, dates, epoch)
                    if value is not None and value != "":
                        cells.append((column, value))
            elif code == 2:
                if reading is not None:
                    reading = False
            elif code == 4:
                reading = False
            elif code == 3 and cells:
                done.append((row, sorted(cells) if _unsorted(cells) else list(cells)))

        def data(text):  # type: ignore[no-untyped-def]
            if reading:
                texts.append(text)

        parser = expat.ParserCreate(namespace_separator=" ")
        parser.buffer_text = True
        parser.buffer_size = _CHUNK
        parser.StartElementHandler = start
        parser.EndElementHandler = end
        parser.CharacterDataHandler = data
        try:
            with self.archive.open(sheet.part) as stream:
                while chunk := stream.read(_CHUNK):
                    parser.Parse(chunk, False)
                    if done:
                        yield from done
                        done.clear()
            parser.Parse(b"", True)
        except KeyError:
            raise XlsxError(f"the part {sheet.part} is missing") from None
        except expat.ExpatError as exc:
            raise XlsxError(f"{sheet.part}: {exc}") from None
        yield from done


def _unsorted(cells: Cells) -> bool:
    return any(cells[n][0] >= cells[n + 1][0] for n in range(len(cells) - 1))


def column_index(letters: str) -> int:
    """0-based column of upper-case letters: A -> 0, Z -> 25, AA -> 26 (the inverse of workbook._letter)."""
    number = 0
    for ch in letters:
        number = number * 26 + ord(ch) - 64
    return number - 1


def _value(kind, text: str, style: int, strings: list[str], dates: frozenset[int], epoch: datetime) -> object:  # type: ignore[no-untyped-def]
    if kind == "s":
        try:
            return strings[int(text)]
        except (ValueError, IndexError):
            return None
    if kind in ("inlineStr", "str"):
        return _unescape(text)
    if kind == "b":
        return text.strip() in ("1", "true")
    if kind == "e":
        return None
    if kind == "d":
        return text
    try:
        number = float(text)
    except ValueError:
        return text
    if style in dates:
        return _date(number, epoch)
    return number


def _date(serial: float, epoch: datetime) -> object:
    """An Excel serial date as calamine gives it: a time under 1, a date when whole, else a datetime."""
    if not -693594 < serial < 2958466:  # outside years 1-9999: keep the number
        return serial
    if 0 <= serial < 1:
        seconds = round(serial * 86400)
        return time(*divmod(divmod(min(seconds, 86399), 60)[0], 60), min(seconds, 86399) % 60)
    moment = epoch + timedelta(days=serial)
    moment = moment.replace(microsecond=0) + timedelta(seconds=round(moment.microsecond / 1e6))
    if moment.time() == time(0):
        return moment.date()
    return moment


def _is_date_code(code: str) -> bool:
    bare = _QUOTED.sub("", code).lower()
    bare = bare.split(";")[0]
    return any(ch in bare for ch in "dmyhs") and "general" not in bare


__all__ = ["Cells", "SheetInfo", "XlsxBook", "XlsxError", "date"]
