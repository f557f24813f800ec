"""Tests of reading input files into a Table: formats, headers, encodings, row numbers, unusable files.

Every test writes a real file into tmp_path (csv module, openpyxl, pandas' odf writer) or reads one of
the committed LibreOffice-made fixtures in tests/fixtures/ (see make_fixtures.py for what each row holds).
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import zipfile
from collections.abc import Sequence
from datetime import date, datetime
from pathlib import Path

import pandas as pd
import pytest
from conftest import HEADER, rows_of, write_csv, write_xlsx
from openpyxl import Workbook

from batch_dispose.errors import InputFileError
from batch_dispose.loading import Table, load, read_dispositions

FIXTURES = Path(__file__).parent / "fixtures"
LIBREOFFICE = ("xlsx", "xls", "ods")
FORMATS = ("csv", "xlsx", "ods")  # the formats these tests can write themselves
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00\x00"
HINDI_EMOJI = "ग्राहक ने रुचि दिखाई 👍"


# -- writers: each makes a real file of its format from rows of cells (header and title rows included) --

def csv_text(grid: Sequence[Sequence[object]], *, delimiter: str = ",", newline: str = "\n",
             quoting: int = csv.QUOTE_MINIMAL) -> str:
    """The CSV text the csv module writes for these rows (quoting what needs it)."""
    buffer = io.StringIO(newline="")
    csv.writer(buffer, delimiter=delimiter, lineterminator=newline, quoting=quoting).writerows(grid)
    return buffer.getvalue()


def write_grid(path: Path, grid: Sequence[Sequence[object]]) -> Path:
    """Write the rows as path's format says: CSV (csv module), XLSX (openpyxl) or ODS (pandas + odfpy)."""
    fmt = path.suffix.lower()
    if fmt == ".csv":
        path.write_bytes(csv_text(grid).encode("utf-8"))
    elif fmt == ".xlsx":
        workbook = Workbook()
        sheet = workbook.active
        sheet.title = "Calls"
        for row in grid:
            sheet.append(list(row))
        workbook.save(path)
        workbook.close()
    elif fmt == ".ods":
        width = max(len(row) for row in grid)
        padded = [list(row) + [None] * (width - len(row)) for row in grid]
        with pd.ExcelWriter(path, engine="odf") as writer:
            pd.DataFrame(padded, dtype=object).to_excel(writer, sheet_name="Calls", header=False, index=False)
    else:
        raise ValueError(path)
    return path


def fixture(ext: str) -> Path:
    return FIXTURES / f"libreoffice_calls.{ext}"


def assert_refused(exc: pytest.ExceptionInfo[InputFileError], path: Path, *fragments: str) -> None:
    """The message names the file first, then the problem and (after '; ') what to do, as one sentence."""
    message = str(exc.value)
    assert exc.value.path == path
    assert message.startswith(f"{path}: "), message
    assert message.endswith("."), message
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message


# -- formats x header variants ----------------------------------------------------------------------

HEADER_VARIANTS = [
    pytest.param(("callID", "logID", "disposition", "notes"), id="camel"),
    pytest.param(("Call ID", "Log ID", "Disposition Name", "Notes"), id="spaced"),
    pytest.param(("call_id", "log_id", "dispositionName", "note"), id="snake"),
    pytest.param(("CALL-ID", "LOG-ID", "DISPOSITION", "NOTE"), id="upper-dashed"),
    pytest.param((" CallId ", " logId ", " Disposition ", " notes "), id="padded"),
    pytest.param(("ｃａｌｌＩＤ", "ｌｏｇＩＤ", "ｄｉｓｐｏｓｉｔｉｏｎＮａｍｅ", "ｎｏｔｅ"), id="full-width"),
]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("names", HEADER_VARIANTS)
def test_header_variants_are_matched_and_other_columns_carried_in_order(
    tmp_path: Path, fmt: str, names: tuple[str, str, str, str]
) -> None:
    """Headers match ignoring case, spaces, `_`, `-` and full width; other columns stay, in their order."""
    call, log, disposition, notes = names
    header = [call, "Agent", log, disposition, notes, "Customer"]
    path = write_grid(tmp_path / f"calls.{fmt}", [
        header,
        ["00123", "Priya", "87278", "Interested", "Line one\nLine two", "R. Sharma"],
        ["4471002", "Rahul", "87279", "Callback", "", "A. Khan"],
    ])

    table = load(path)

    assert table.format == fmt
    assert table.headers == tuple(name.strip() for name in header)
    assert table.fields == {"callID": 0, "logID": 2, "disposition": 3, "notes": 4}
    assert table.field_cells("callID") == ["00123", "4471002"]
    assert table.field_cells("logID") == ["87278", "87279"]
    assert table.field_cells("disposition") == ["Interested", "Callback"]
    assert table.field_cells("notes") == ["Line one\nLine two", ""]
    assert table.columns[1] == ["Priya", "Rahul"]
    assert table.columns[5] == ["R. Sharma", "A. Khan"]
    assert table.rows == [2, 3]
    assert table.warnings == ()


LIBREOFFICE_CELLS = (
    ["00123", "4471002", "4471003", "1.23456789012346e+16", "2024-01-05", "4471010", "4471013", "4471011",
     "4471012"],
    ["87278", "87279", "87280", "87281", "87282", "87283", "", "87284.5", "87285"],
    ["Interested", "Callback", "Not Interested", "DNC", "Callback", "Interested", "Interested", "Busy",
     "  Busy  "],
    ["Line one\nLine two", 'Said "call me", after 6, OK', HINDI_EMOJI, "", "a date typed as the callID",
     "=SUM(1,2) is only text", "logID is an error value", "fraction", "  trimmed  "],
    ["Priya", "Rahul", "Anita", "Vikram", "Vikram", "Priya", "Priya", "Priya", "Rahul"],
)


@pytest.mark.parametrize("ext", LIBREOFFICE)
def test_libreoffice_workbook_is_read_as_the_cells_a_person_sees(ext: str) -> None:
    """A LibreOffice-saved workbook: title sheet skipped, header at row 3, each cell as displayed."""
    path = fixture(ext)

    table = load(path)

    assert table.format == ext
    assert table.sheet == "Calls"  # the first sheet ("Title") has no call columns
    assert table.headers == ("Call ID", "log_id", "Disposition Name", "NOTE", "Agent")
    assert table.fields == {"callID": 0, "logID": 1, "disposition": 2, "notes": 3}
    assert table.rows == [4, 5, 7, 8, 9, 10, 11, 12, 13]  # row 6 is blank
    assert table.columns == LIBREOFFICE_CELLS
    assert table.kinds["callID"] == ["", "", "", "", "date", "", "", "", ""]
    assert table.kinds["logID"] == [""] * 9
    assert table.warnings == ()
    assert table.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("fmt", FORMATS)
def test_absent_notes_column_gives_blank_notes(tmp_path: Path, fmt: str) -> None:
    """Without a notes column every row has blank notes (whether such a file is sent is the job's decision)."""
    path = write_grid(tmp_path / f"calls.{fmt}", [["Call ID", "Log ID", "Disposition", "Agent"],
                                                  ["1", "2", "Interested", "Priya"],
                                                  ["3", "4", "Callback", "Rahul"]])

    table = load(path)

    assert "notes" not in table.fields
    assert table.field_cells("notes") == ["", ""]
    assert table.headers == ("Call ID", "Log ID", "Disposition", "Agent")
    assert table.warnings == ()


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(("header", "field", "first", "second"), [
    (["callID", "logID", "disposition", "notes", "Call ID"], "callID", "callID", "Call ID"),
    (["callID", "logID", "LOG_ID", "disposition", "notes"], "logID", "logID", "LOG_ID"),
    (["callID", "logID", "disposition", "notes", "dispositionName"], "disposition", "disposition", "dispositionName"),
    (["callID", "logID", "disposition", "note", "Agent", "Notes"], "notes", "note", "Notes"),
])
def test_two_columns_for_one_field_are_refused_naming_both(
    tmp_path: Path, fmt: str, header: list[str], field: str, first: str, second: str
) -> None:
    """Two columns that both match one field: refused, naming both so the user can remove one."""
    path = write_grid(tmp_path / f"calls.{fmt}", [header, [str(n) for n in range(len(header))]])

    with pytest.raises(InputFileError) as exc:
        load(path)

    assert_refused(exc, path, f"two columns for {field} ('{first}' and '{second}')", "rename or remove one")


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(("header", "fragments"), [
    (["Call ID", "Log Id", "Agent"],
     ["column 'disposition' is missing", "(found: Call ID, Log Id, Agent)", "rename the column", "to disposition"]),
    (["Call ID", "Agent", "Notes"],
     ["columns 'logID' and 'disposition' are missing", "(found: Call ID, Agent, Notes)", "to logID and disposition"]),
    (["ID", "Log", "Status"], ["'callID' and 'logID' and 'disposition' are missing", "found: ID, Log, Status"]),
])
def test_missing_required_column_is_named_with_what_was_found(
    tmp_path: Path, fmt: str, header: list[str], fragments: list[str]
) -> None:
    """A missing required column is refused; the message names it and lists the headers found."""
    path = write_grid(tmp_path / f"calls.{fmt}", [header, ["1", "2", "3"]])

    with pytest.raises(InputFileError) as exc:
        load(path)

    assert_refused(exc, path, *fragments)


def test_first_sheet_holding_the_columns_is_used_and_hidden_ones_only_as_a_fallback(tmp_path: Path) -> None:
    """Sheets without the columns are skipped; a hidden sheet is used only if no visible one fits, with a warning."""
    workbook = Workbook()
    cover = workbook.active
    cover.title = "Cover"
    cover.append(["Ryng calls export"])
    hidden = workbook.create_sheet("Old")
    hidden.append(HEADER)
    hidden.append(["999", 1, "Busy", "old"])
    hidden.sheet_state = "hidden"
    calls = workbook.create_sheet("Calls")
    calls.append(HEADER)
    calls.append(["4471001", 87278, "Interested", ""])
    both = tmp_path / "both.xlsx"
    workbook.save(both)
    workbook.remove(calls)
    only_hidden = tmp_path / "only_hidden.xlsx"
    workbook.save(only_hidden)
    workbook.close()

    visible = load(both)
    fallback = load(only_hidden)

    assert (visible.sheet, visible.field_cells("callID"), visible.warnings) == ("Calls", ["4471001"], ())
    assert (fallback.sheet, fallback.field_cells("callID")) == ("Old", ["999"])
    assert fallback.warnings == ("The calls were read from the hidden sheet 'Old'.",)


def test_results_workbook_fed_back_in_drops_its_result_columns(tmp_path: Path) -> None:
    """A results workbook is a valid input: its result columns are set aside, the prior status kept per row."""
    header = [*HEADER, "Agent", "row", "status", "http_status", "message", "attempts", "finished_at"]
    path = write_xlsx(tmp_path / "calls-results-20250101-000000.xlsx", [
        ["4471001", 87278, "Interested", "n", "Priya", 2, "disposed", 200, "Call disposed and ended.", 1,
         "2025-01-01T00:00:01+00:00"],
        ["4471002", 87279, "Callback", "", "Rahul", 3, "Failed", 500, "Failed to dispose of call.", 1,
         "2025-01-01T00:00:02+00:00"],
    ], header=header)

    table = load(path)

    assert table.headers == (*HEADER, "Agent")
    assert table.field_cells("callID") == ["4471001", "4471002"]
    assert table.columns[4] == ["Priya", "Rahul"]
    assert table.prior_status == ["disposed", "failed"]
    assert table.prior_finished == ["2025-01-01T00:00:01+00:00", "2025-01-01T00:00:02+00:00"]


@pytest.mark.parametrize("name", ["CALLS.CSV", "Calls.XLSX", "calls.Ods"])
def test_extension_case_does_not_matter(tmp_path: Path, name: str) -> None:
    """`CALLS.CSV` and `Calls.XLSX` load like their lower-case names."""
    path = tmp_path / name
    path.write_bytes(write_grid(tmp_path / f"x{Path(name).suffix.lower()}", [HEADER, *rows_of(2)]).read_bytes())

    assert load(path).field_cells("callID") == ["1000", "1001"]


# -- CSV text: delimiters, encodings, line ends, quoting -----------------------------------------------

@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"], ids=["comma", "semicolon", "tab", "pipe"])
def test_csv_delimiter_is_detected_and_quoted_fields_survive(tmp_path: Path, delimiter: str) -> None:
    """Each delimiter is detected; quoted fields keep newlines, quotes, commas and every delimiter, unchanged."""
    tricky = 'Said "call me", after 6; ok\tthen | bye\nsecond line'
    path = write_csv(tmp_path / "calls.csv", [
        ["4471001", "87278", "Interested", tricky],
        ["4471002", "87279", "Not Interested", HINDI_EMOJI],
        ["4471003", "87280", "Callback", "a,b;c|d"],
    ], delimiter=delimiter)

    table = load(path)

    assert table.delimiter == delimiter
    assert table.headers == tuple(HEADER)
    assert table.field_cells("callID") == ["4471001", "4471002", "4471003"]
    assert table.field_cells("notes") == [tricky, HINDI_EMOJI, "a,b;c|d"]
    assert table.rows == [2, 3, 4]  # the quoted two-line note is still one row


def test_csv_delimiter_is_found_from_the_header_even_when_notes_hold_other_delimiters(tmp_path: Path) -> None:
    """A `;` file whose notes are full of commas is still read as `;`-separated."""
    notes = ["a, b, c, d, e, f", "1,2,3,4,5,6,7,8", "x,y"]
    rows = [[str(n), str(n), "Interested", note] for n, note in enumerate(notes, start=1)]
    path = write_csv(tmp_path / "calls.csv", rows, delimiter=";")

    table = load(path)

    assert table.delimiter == ";"
    assert table.field_cells("notes") == notes


CAFE = "Café – “quoted” ‘single’ €5"
ENCODINGS = [
    pytest.param(lambda text: text.encode("utf-8"), "utf-8", CAFE + " " + HINDI_EMOJI, id="utf-8"),
    pytest.param(lambda text: codecs.BOM_UTF8 + text.encode("utf-8"), "utf-8-sig", CAFE + " " + HINDI_EMOJI,
                 id="utf-8-bom"),
    pytest.param(lambda text: text.encode("cp1252"), "cp1252", CAFE, id="cp1252"),
    pytest.param(lambda text: text.encode("utf-16"), "utf-16", CAFE + " " + HINDI_EMOJI, id="utf-16-bom"),
    pytest.param(lambda text: codecs.BOM_UTF16_LE + text.encode("utf-16-le"), "utf-16", CAFE + " " + HINDI_EMOJI,
                 id="utf-16-le-bom"),
    pytest.param(lambda text: codecs.BOM_UTF16_BE + text.encode("utf-16-be"), "utf-16", CAFE + " " + HINDI_EMOJI,
                 id="utf-16-be-bom"),
]


@pytest.mark.parametrize(("encode", "encoding", "note"), ENCODINGS)
@pytest.mark.parametrize("delimiter", [",", "\t"], ids=["comma", "tab"])
def test_csv_encodings_are_read_correctly(tmp_path: Path, encode, encoding: str, note: str, delimiter: str) -> None:  # type: ignore[no-untyped-def]
    """UTF-8 with or without BOM, Windows-1252 and UTF-16 with BOM all read back to the same text."""
    header = ["Call ID", "Log ID", "Disposition", "Notes"]
    text = csv_text([header, ["4471001", "87278", "Intéressé", note], ["4471002", "87279", "Busy", ""]],
                    delimiter=delimiter, newline="\r\n")
    path = tmp_path / "calls.csv"
    path.write_bytes(encode(text))

    table = load(path)

    assert table.encoding == encoding
    assert table.headers == tuple(header)  # no BOM glued to the first header
    assert table.field_cells("callID") == ["4471001", "4471002"]
    assert table.field_cells("disposition") == ["Intéressé", "Busy"]
    assert table.field_cells("notes") == [note, ""]


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"], ids=["LF", "CRLF", "CR"])
def test_csv_line_ends_all_give_the_same_rows(tmp_path: Path, newline: str) -> None:
    """LF, CRLF and CR-only files give the same cells and row numbers; a newline inside quotes is kept as is."""
    path = tmp_path / "calls.csv"
    path.write_bytes(csv_text([
        HEADER,
        ["4471001", "87278", "Interested", "one"],
        ["4471002", "87279", "Callback", "Line one\nLine two"],
        [],
        ["4471003", "87280", "Busy", "three"],
    ], newline=newline, quoting=csv.QUOTE_ALL).encode("utf-8"))  # as spreadsheets do: every line break quoted

    table = load(path)

    assert table.field_cells("callID") == ["4471001", "4471002", "4471003"]
    assert table.field_cells("notes") == ["one", "Line one\nLine two", "three"]
    assert table.rows == [2, 3, 5]


# -- row numbers --------------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", FORMATS)
def test_row_numbers_are_those_a_spreadsheet_shows(tmp_path: Path, fmt: str) -> None:
    """Title rows shift the header down, blank rows count but are left out, a multi-line cell is one row."""
    path = write_grid(tmp_path / f"calls.{fmt}", [
        ["Ryng calls export"],                                       # 1
        ["Day report: 27 Nov"],                                      # 2
        [],                                                          # 3
        HEADER,                                                      # 4
        ["4471001", "87278", "Interested", "one"],                   # 5
        ["4471002", "87279", "Callback", "Line one\nLine two\nthree"],  # 6
        [],                                                          # 7
        ["", "", "", ""],                                            # 8
        ["4471003", "87280", "Busy", ""],                            # 9
    ])

    table = load(path)

    assert table.rows == [5, 6, 9]
    assert len(table) == 3
    assert table.field_cells("callID") == ["4471001", "4471002", "4471003"]


def test_csv_row_of_only_spaces_counts_as_blank(tmp_path: Path) -> None:
    """A CSV line of delimiters and spaces is a blank row: counted for numbering, left out of the table."""
    path = tmp_path / "calls.csv"
    path.write_text("callID,logID,disposition,notes\n1,2,Interested,\n , ,  ,\n,,,\n3,4,Busy,\n", encoding="utf-8")

    assert load(path).rows == [2, 5]


def test_cells_beyond_the_header_are_carried_under_a_blank_header(tmp_path: Path) -> None:
    """Cells to the right of the last header are kept (under a blank header), not dropped."""
    path = tmp_path / "calls.csv"
    path.write_text("callID,logID,disposition,notes\n1,2,Interested,n,extra\n3,4,Busy\n", encoding="utf-8")

    table = load(path)

    assert table.headers == (*HEADER, "")
    assert table.columns[4] == ["extra", ""]
    assert table.field_cells("notes") == ["n", ""]


# -- numbers, dates and booleans in cells -------------------------------------------------------------

TYPED_ROWS = [
    # callID cell, logID cell -> callID text, logID text, callID kind
    ("00123", 87278, "00123", "87278", ""),
    (12345, 87278.0, "12345", "87278", ""),
    (4471002.0, "87279", "4471002", "87279", ""),
    (123456789012345, 1, "123456789012345", "1", ""),
    (12345678901234567, 2, "1.23456789012346e+16", "2", ""),
    (date(2024, 1, 5), 3, "2024-01-05", "3", "date"),
    (datetime(2024, 1, 5, 10, 30), 4, "2024-01-05T10:30:00", "4", "date"),
    (True, 5, "TRUE", "5", "bool"),
    (False, 87284.5, "FALSE", "87284.5", "bool"),
]


@pytest.mark.parametrize("fmt", ["xlsx", "ods"])
def test_typed_cells_are_read_as_their_displayed_text(tmp_path: Path, fmt: str) -> None:
    """Text `00123` stays, 12345 is `12345` (never `12345.0`), a 17-digit number shows rounded, dates are marked."""
    path = write_grid(tmp_path / f"calls.{fmt}", [HEADER, *([call, log, "Interested", ""]
                                                            for call, log, *_ in TYPED_ROWS)])

    table = load(path)

    assert table.field_cells("callID") == [row[2] for row in TYPED_ROWS]
    assert table.field_cells("logID") == [row[3] for row in TYPED_ROWS]
    assert table.kinds["callID"] == [row[4] for row in TYPED_ROWS]
    assert table.kinds["logID"] == [""] * len(TYPED_ROWS)


def test_csv_cells_are_kept_exactly_as_written(tmp_path: Path) -> None:
    """In a CSV every cell is text already: `00123`, `87278.0` and `1.23457E+16` are not reinterpreted."""
    path = write_csv(tmp_path / "calls.csv", [["00123", "87278.0", " Interested ", " x "],
                                              ["1.23457E+16", "2024-01-05", "TRUE", ""]])

    table = load(path)

    assert table.field_cells("callID") == ["00123", "1.23457E+16"]
    assert table.field_cells("logID") == ["87278.0", "2024-01-05"]
    assert table.field_cells("disposition") == [" Interested ", "TRUE"]
    assert table.field_cells("notes") == [" x ", ""]
    assert table.kinds == {"callID": ["", ""], "logID": ["", ""]}


def test_logids_read_back_exactly_as_written_from_their_compact_column(tmp_path: Path) -> None:
    """logIDs are kept as numbers where the text is a number's own spelling, and as text otherwise; either
    way every cell reads back exactly as written (a CSV whose logIDs are all `N.0` too)."""
    odd = ["87278", "0", "087", "87278.0", "", "abc", "1234567890123456789", "٣", " 5", "-5", "+7"]
    rows = [[f"C{n}", text, "Interested", ""] for n, text in enumerate(odd)]
    assert load(write_csv(tmp_path / "odd.csv", rows)).field_cells("logID") == odd
    decimals = [f"{n}.0" for n in range(3000)]
    cells = load(write_csv(tmp_path / "decimals.csv", [[f"C{n}", text, "Interested", ""]
                                                       for n, text in enumerate(decimals)])).field_cells("logID")
    assert cells == decimals and cells[-1] == "2999.0" and cells[10:12] == ["10.0", "11.0"]


# -- unusable files -----------------------------------------------------------------------------------

def _truncated(ext: str) -> bytes:
    data = fixture(ext).read_bytes()
    return data[: len(data) // 2]


def _zip_bomb(tmp_path: Path) -> bytes:
    path = write_xlsx(tmp_path / "real.xlsx", rows_of(2))
    with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("xl/media/padding.bin", bytes(4 * 2**20))  # 4 MiB of zeros: ~1000x compression
    return path.read_bytes()


def _ole2_with_encryption() -> bytes:
    """The shape Office gives an encrypted .xlsx: an OLE2 container holding an EncryptionInfo stream."""
    return (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(504) + "EncryptionInfo".encode("utf-16-le")
            + bytes(1024))



UNUSABLE = [
    # name, contents (bytes, or a function of tmp_path), fragments the message must hold
    pytest.param("empty.csv", b"", ["is empty", "export the calls again"], id="empty-csv"),
    pytest.param("empty.xlsx", b"", ["is empty", "export the calls again"], id="empty-xlsx"),
    pytest.param("calls.txt", b"callID,logID,disposition\n1,2,x\n",
                 ["is not a supported file type", "use .csv, .xlsx, .xls, .ods"], id="txt"),
    pytest.param("calls.pdf", b"%PDF-1.7\n", ["is not a supported file type", "use .csv"], id="pdf"),
    pytest.param("calls", b"callID,logID,disposition\n1,2,x\n", ["is not a supported file type"], id="no-ext"),
    pytest.param("image.xlsx", PNG, ["is not a .xlsx workbook", "save it again as .xlsx"], id="png-as-xlsx"),
    pytest.param("image.ods", PNG, ["is not a .ods workbook", "save it again as .ods"], id="png-as-ods"),
    pytest.param("image.xls", PNG, ["is not an .xls workbook", "save it again"], id="png-as-xls"),
    pytest.param("image.csv", PNG, ["is not a text CSV file", "export the sheet again as CSV"], id="png-as-csv"),
    pytest.param("text.xlsx", b"callID,logID,disposition\n1,2,x\n", ["is not a .xlsx workbook", "save it again"],
                 id="text-as-xlsx"),
    pytest.param("page.xls", b"<html><table><tr><td>callID</td></tr></table></html>",
                 ["is not an .xls workbook", "a web page saved as .xls", "save it again as .xlsx"], id="html-as-xls"),
    pytest.param("half.xlsx", lambda _: _truncated("xlsx"), ["is damaged", "open it and save it again"],
                 id="truncated-xlsx"),
    pytest.param("half.ods", lambda _: _truncated("ods"), ["is damaged", "open it and save it again"],
                 id="truncated-ods"),
    pytest.param("half.xls", lambda _: _truncated("xls"), ["cannot be read as a .xls workbook", "save it again"],
                 id="truncated-xls"),
    pytest.param("old.xlsx", lambda _: fixture("xls").read_bytes(), ["old-style .xls workbook", "rename it to .xls"],
                 id="ole2-as-xlsx"),
    pytest.param("new.xls", lambda _: fixture("xlsx").read_bytes(), ["newer .xlsx workbook", "rename it to .xlsx"],
                 id="xlsx-as-xls"),
    pytest.param("locked.xlsx", lambda _: _ole2_with_encryption(), ["password-protected", "remove the password"],
                 id="password-protected"),
    pytest.param("bomb.xlsx", _zip_bomb, ["decompression bomb", "refused as unsafe"], id="zip-bomb"),
    pytest.param("odd.csv", b"callID,logID,disposition\n1,2,\x81\x8d\x90\xc3\n",
                 ["neither UTF-8 nor Windows-1252", "save it again as 'CSV UTF-8'"], id="undecodable-csv"),
    pytest.param("odd16.csv", b"\xff\xfe" + "callID,logID".encode("utf-16-le") + b"\x00\xd8",
                 ["starts like UTF-16 text but is not", "save it again"], id="broken-utf-16"),
    pytest.param("header_only.csv", b"callID,logID,disposition,notes\r\n", ["has a header row but no calls"],
                 id="header-only-csv"),
    pytest.param("header_only.xlsx", lambda tmp: write_xlsx(tmp / "h.xlsx", []).read_bytes(),
                 ["has a header row but no calls"], id="header-only-xlsx"),
    pytest.param("blank.csv", b"\n\n,,,\n  ,  \n", ["holds no data (every row is blank)"], id="all-blank-csv"),
    pytest.param("blank.xlsx", lambda tmp: write_grid(tmp / "b.xlsx", [[], [None, None]]).read_bytes(),
                 ["holds no data (every row is blank)"], id="all-blank-xlsx"),
]


@pytest.mark.parametrize(("name", "contents", "fragments"), UNUSABLE)
def test_unusable_file_is_refused_naming_it_and_what_to_do(
    tmp_path: Path, name: str, contents: object, fragments: list[str]
) -> None:
    """A file that cannot be used raises InputFileError: its path, the problem, then `; ` and what to do."""
    data = contents(tmp_path) if callable(contents) else contents
    path = tmp_path / "input" / name
    path.parent.mkdir()
    path.write_bytes(data)  # type: ignore[arg-type]

    with pytest.raises(InputFileError) as exc:
        load(path)

    assert_refused(exc, path, *fragments)
    assert "; " in str(exc.value), "the message should say what to do after the problem"


@pytest.mark.parametrize("name", ["missing.csv", "missing.xlsx", "missing.ods"])
def test_missing_file_is_refused(tmp_path: Path, name: str) -> None:
    """A path that does not exist: refused, naming it and asking to check the name and folder."""
    path = tmp_path / name

    with pytest.raises(InputFileError) as exc:
        load(path)

    assert_refused(exc, path, "does not exist", "check the name and folder")


def test_folder_named_like_a_spreadsheet_is_refused(tmp_path: Path) -> None:
    """A folder called `calls.csv` is refused, not read."""
    path = tmp_path / "calls.csv"
    path.mkdir()

    with pytest.raises(InputFileError) as exc:
        load(path)

    assert_refused(exc, path, "is a folder, not a file")


@pytest.mark.parametrize("name", ["inbox", "exports.d"])
def test_a_folder_given_to_run_points_at_sweep(cli, tmp_path: Path, name: str) -> None:
    """`run FOLDER` (a folder of exports, named without a spreadsheet's suffix) says it is a folder and names
    `sweep`, instead of calling it an unsupported file type; nothing is sent."""
    (tmp_path / name).mkdir()
    result = cli("run", tmp_path / name, "--base-url", "http://127.0.0.1:9")
    assert result.code == 2
    assert "is a folder, not a file" in result.err and "`sweep`" in result.err and "file type" not in result.err


def test_excels_lock_file_is_named_for_what_it_is(cli, tmp_path: Path) -> None:
    """`~$calls.xlsx`, the file Excel keeps beside a workbook while it is open: said to be that, not a damaged
    workbook to "open and save again"."""
    lock = tmp_path / "~$calls.xlsx"
    lock.write_bytes(b"\x05Priya" + bytes(150))
    result = cli("validate", lock)
    assert result.code == 2
    assert "is the lock file Excel keeps beside a workbook while it is open" in result.err
    assert "damaged" not in result.err


def test_sweep_given_a_file_points_at_run(cli, tmp_path: Path) -> None:
    """`sweep FILE` says it is a file and names `run FILE`, instead of "the inbox folder does not exist"."""
    source = write_csv(tmp_path / "calls.csv", [["1000", "1", "Interested", ""]])
    result = cli("sweep", source, "--base-url", "http://127.0.0.1:9")
    assert result.code == 2
    assert "is a file, not a folder" in result.err and f"`run {source}`" in result.err


@pytest.mark.parametrize("fmt", FORMATS)
def test_row_limit_counts_calls_not_blank_rows(tmp_path: Path, fmt: str) -> None:
    """More data rows than max_rows is refused with a hint to split; blank rows do not count toward it."""
    over = write_grid(tmp_path / f"over.{fmt}", [HEADER, *rows_of(6)])
    at_limit = write_grid(tmp_path / f"at.{fmt}", [HEADER, *rows_of(3), [], [], *rows_of(2, start=2000)])

    with pytest.raises(InputFileError) as exc:
        load(over, max_rows=5)

    assert_refused(exc, over, "has more than 5 rows", "split it into smaller files")
    assert len(load(at_limit, max_rows=5)) == 5


@pytest.mark.parametrize("fmt", FORMATS)
def test_size_limit_is_checked_on_disk(tmp_path: Path, fmt: str) -> None:
    """A file larger than max_bytes is refused with a hint to split; one exactly at the limit loads."""
    path = write_grid(tmp_path / f"calls.{fmt}", [HEADER, *rows_of(3)])
    size = path.stat().st_size

    with pytest.raises(InputFileError) as exc:
        load(path, max_bytes=size - 1)

    assert_refused(exc, path, "limit; split it into smaller files", "split it into smaller files")
    assert len(load(path, max_bytes=size)) == 3


def test_the_input_file_is_never_modified(tmp_path: Path) -> None:
    """Loading leaves the file's bytes exactly as they were."""
    path = fixture("xlsx")
    before = path.read_bytes()

    load(path)

    assert path.read_bytes() == before


# -- the dispositions allow-list file ------------------------------------------------------------------

def test_dispositions_file_lists_one_name_a_line(tmp_path: Path) -> None:
    """The allow-list: one name a line, trimmed; blank lines, `#` comments and a BOM ignored."""
    path = tmp_path / "dispositions.txt"
    path.write_bytes(codecs.BOM_UTF8 + "# Ryng dispositions\r\nInterested\r\n\r\n  Not Interested  \r\n"
                     "  # old\r\nDNC\r\nRückruf\r\n".encode())

    assert read_dispositions(path) == ("Interested", "Not Interested", "DNC", "Rückruf")


def test_dispositions_file_without_names_is_refused(tmp_path: Path) -> None:
    """An allow-list with no names is refused, saying to put one name on each line."""
    path = tmp_path / "dispositions.txt"
    path.write_text("# nothing yet\n\n", encoding="utf-8")

    with pytest.raises(InputFileError) as exc:
        read_dispositions(path)

    assert_refused(exc, path, "lists no names", "put one name on each line")


def test_table_is_a_plain_value(tmp_path: Path) -> None:
    """A loaded Table is a frozen value whose length is its number of calls."""
    table = load(write_csv(tmp_path / "calls.csv", rows_of(3)))

    assert isinstance(table, Table)
    assert len(table) == 3
    with pytest.raises(AttributeError):
        table.rows = []  # type: ignore[misc]


@pytest.mark.parametrize("content, row", [
    ('callID,logID,disposition,notes\n1,2,Interested,"cut off in the middle', 2),
    ('callID,logID,disposition,notes\n1,2,Interested,ok\n3,4,Callback,"half"way\n', 3),
])
def test_broken_csv_quoting_names_the_row(tmp_path: Path, content: str, row: int) -> None:
    """A quoted cell that never closes (a cut-off upload) or broken quoting is refused, naming the row."""
    path = tmp_path / "cut.csv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(InputFileError) as caught:
        load(path)
    assert f"row {row}:" in str(caught.value) and "export the file again" in str(caught.value)


def test_an_empty_unnamed_column_before_the_data_is_left_out(tmp_path: Path) -> None:
    """Data that starts in column B does not add a blank column to the table or the results."""
    path = tmp_path / "b.csv"
    path.write_text(",callID,logID,disposition\n,1,2,Interested\n,3,4,Callback\n", encoding="utf-8")
    table = load(path)
    assert table.headers == ("callID", "logID", "disposition")
    assert table.columns[0] == ["1", "3"]
