"""Tests of the row rules: which cells make a row invalid, the sentence a person reads, and the requests made.

Each test writes a real file (CSV with the csv module, XLSX with openpyxl, ODS with pandas + odfpy) or
uses a committed LibreOffice fixture, loads it with `load`, and checks what `validate` decides.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import pandas as pd
import pandera.pandas as pa
import pytest
from conftest import HEADER, write_csv, write_xlsx

from batch_dispose.loading import Table, load
from batch_dispose.models import CallRequest
from batch_dispose.schema import Validation, row_schema, validate

FIXTURES = Path(__file__).parent / "fixtures"
BASE = {"callID": "4471001", "logID": "87278", "disposition": "Interested", "notes": "note"}
ATTRIBUTE = {"callID": "call_id", "logID": "log_id", "disposition": "disposition", "notes": "notes"}
ALLOWED = ("Interested", "Not Interested", "Callback", "DNC")
HINDI_EMOJI = "ग्राहक ने रुचि दिखाई 👍"
# Words that would mean pandera's own report leaked into a message meant for operations staff.
INTERNALS = ("Check", "check", "failure_case", "<lambda>", "lambda", "Series", "dtype", "pandera", "Schema",
             "index", "Traceback", "NaN", "None", "{", "}")


@dataclass(frozen=True)
class Sent:
    """The row is valid and its request carries this value for the field."""

    value: object


def write_ods(path: Path, rows: Sequence[Sequence[object]], *, header: Sequence[str] = HEADER) -> Path:
    """A real ODS file written by pandas' odf engine; each cell keeps its Python type."""
    with pd.ExcelWriter(path, engine="odf") as writer:
        pd.DataFrame([list(row) for row in rows], columns=list(header), dtype=object).to_excel(
            writer, sheet_name="Calls", index=False)
    return path


def load_csv(tmp_path: Path, rows: Sequence[Sequence[object]], **kwargs: object) -> Table:
    """Write the rows as a real CSV (header first) and load it."""
    return load(write_csv(tmp_path / "calls.csv", rows, **kwargs))  # type: ignore[arg-type]


def one_row(tmp_path: Path, field: str, cell: str, allowed: Sequence[str] | None = None) -> Validation:
    """Validate a one-row CSV whose `field` cell holds `cell` and whose other cells are fine."""
    row = {**BASE, field: cell}
    return validate(load_csv(tmp_path, [[row[name] for name in HEADER]]), allowed)


def assert_plain(message: str) -> None:
    """A message is plain sentences for a person: no pandera internals, no unfilled placeholders."""
    for word in INTERNALS:
        assert word not in message, f"{word!r} in {message!r}"
    assert message.split(" ", 1)[0] in ("callID", "logID", "disposition", "notes"), message
    assert "\n" not in message


def check_outcome(result: Validation, field: str, expected: Sent | str) -> None:
    """The single row was sent with the expected value, or is invalid with a plain message holding `expected`."""
    if isinstance(expected, Sent):
        assert result.messages == {}
        [request] = result.requests
        assert getattr(request, ATTRIBUTE[field]) == expected.value
        assert type(request.log_id) is int
    else:
        assert result.requests == []
        assert list(result.messages) == [0]
        message = result.messages[0]
        assert expected in message, message
        assert message.startswith(field), message
        assert_plain(message)




RULES = [
    # callID
    pytest.param("callID", "", "callID is blank", id="callID-blank"),
    pytest.param("callID", "   \t ", "callID is blank", id="callID-whitespace-only"),
    pytest.param("callID", "a" * 64, Sent("a" * 64), id="callID-64-chars"),
    pytest.param("callID", "a" * 65, "callID is 65 characters long; a call ID has at most 64", id="callID-65-chars"),
    pytest.param("callID", "/" * 70, "callID is 70 characters long", id="callID-long-reported-before-chars"),
    pytest.param("callID", "4471 001", "callID '4471 001' has a space, which a call ID cannot hold",
                 id="callID-space"),
    pytest.param("callID", "4471/001", "has the character '/'", id="callID-slash"),
    pytest.param("callID", "4471?x=1", "has the character '?'", id="callID-question-mark"),
    pytest.param("callID", "%2F", "callID '%2F' has the character '%'", id="callID-percent-encoded"),
    pytest.param("callID", "..", "callID '..' has the character '.'", id="callID-dot-dot"),
    pytest.param("callID", "4471#1", "has the character '#'", id="callID-hash"),
    pytest.param("callID", "café", "has the character 'é'", id="callID-unicode-letter"),
    pytest.param("callID", "4471\u200b001", "has an invisible character (U+200B)", id="callID-zero-width-space"),
    pytest.param("callID", "  4471001  ", Sent("4471001"), id="callID-trimmed"),
    pytest.param("callID", "\u00a04471001\u00a0", Sent("4471001"), id="callID-nbsp-trimmed"),
    pytest.param("callID", "１２３", Sent("123"), id="callID-full-width-digits"),
    pytest.param("callID", "00123", Sent("00123"), id="callID-leading-zeros-kept"),
    pytest.param("callID", "Abc_DEF-09", Sent("Abc_DEF-09"), id="callID-letters-digits-underscore-dash"),
    pytest.param("callID", "12345.0", Sent("12345"), id="callID-number-text-with-.0"),
    pytest.param("callID", "1.23457E+16", "callID '1.23457E+16' was rounded by the spreadsheet", id="callID-rounded"),
    pytest.param("callID", "1,23457E+16", "format the callID column as Text", id="callID-rounded-decimal-comma"),
    pytest.param("callID", "1E5", Sent("1E5"), id="callID-letters-like-an-exponent-are-an-id"),
    pytest.param("callID", "१२३", Sent("123"), id="callID-devanagari-digits"),
    # logID
    pytest.param("logID", "87278", Sent(87278), id="logID-whole"),
    pytest.param("logID", "87278.0", Sent(87278), id="logID-.0"),
    pytest.param("logID", " 87278 ", Sent(87278), id="logID-trimmed"),
    pytest.param("logID", "８７２７８", Sent(87278), id="logID-full-width"),
    pytest.param("logID", "087278", Sent(87278), id="logID-leading-zero"),
    pytest.param("logID", "9223372036854775807", Sent(9223372036854775807), id="logID-int64-max"),
    pytest.param("logID", "9223372036854775808", "logID '9223372036854775808' is too large for a log ID",
                 id="logID-int64-max-plus-1"),
    pytest.param("logID", "87278.5", "logID '87278.5' is not a whole number", id="logID-fraction"),
    pytest.param("logID", "abc", "logID 'abc' is not a whole number", id="logID-letters"),
    pytest.param("logID", "87 278", "logID '87 278' is not a whole number", id="logID-inner-space"),
    pytest.param("logID", "0", "logID '0' is not a positive whole number", id="logID-zero"),
    pytest.param("logID", "-5", "logID '-5' is not a positive whole number", id="logID-negative"),
    pytest.param("logID", "1e5", "logID '1e5' is not a whole number", id="logID-exponent"),
    pytest.param("logID", "87,278", "logID '87,278' is not a whole number (remove the thousands separators)",
                 id="logID-thousands-separator"),
    pytest.param("logID", "+5", Sent(5), id="logID-plus-sign"),
    pytest.param("logID", "-0", "logID '-0' is not a positive whole number", id="logID-minus-zero"),
    pytest.param("logID", "٨٧٢٧٨", Sent(87278), id="logID-arabic-indic-digits"),
    pytest.param("logID", "1.23457E+16", "logID '1.23457E+16' was rounded by the spreadsheet", id="logID-rounded"),
    pytest.param("logID", "", "logID is blank", id="logID-blank"),
    pytest.param("logID", "  ", "logID is blank", id="logID-whitespace-only"),
    # disposition
    pytest.param("disposition", "", "disposition is blank", id="disposition-blank"),
    pytest.param("disposition", " \u00a0 ", "disposition is blank", id="disposition-whitespace-only"),
    pytest.param("disposition", "Interested", Sent("Interested"), id="disposition-given"),
    pytest.param("disposition", "  Not Interested  ", Sent("Not Interested"), id="disposition-trimmed"),
    # notes
    pytest.param("notes", "", Sent(""), id="notes-blank"),
    pytest.param("notes", "x" * 32_767, Sent("x" * 32_767), id="notes-32767"),
    pytest.param("notes", "😀" * 16_384, "notes are 32,768 characters long (as Excel counts them)",
                 id="notes-emoji-count-twice"),
    pytest.param("notes", "x" * 32_768, "notes are 32,768 characters long (as Excel counts them); at most 32,767",
                 id="notes-32768"),
    pytest.param("notes", "  Line one\nLine two\n  ", Sent("Line one\nLine two"), id="notes-trimmed-lf-kept"),
    pytest.param("notes", "Line one\r\nLine two\r\n", Sent("Line one\r\nLine two"), id="notes-crlf-kept"),
    pytest.param("notes", 'Said "call me", after 6', Sent('Said "call me", after 6'), id="notes-quotes-commas"),
    pytest.param("notes", "=SUM(1,2)", Sent("=SUM(1,2)"), id="notes-formula-text"),
    pytest.param("notes", HINDI_EMOJI, Sent(HINDI_EMOJI), id="notes-hindi-emoji"),
]


@pytest.mark.parametrize(("field", "cell", "expected"), RULES)
def test_row_rules(tmp_path: Path, field: str, cell: str, expected: Sent | str) -> None:
    """Each cell is either sent (trimmed and normalised) or makes its row invalid with a plain message."""
    check_outcome(one_row(tmp_path, field, cell), field, expected)


TYPED = [
    pytest.param("callID", 12345, Sent("12345"), id="callID-number"),
    pytest.param("callID", 4471002.0, Sent("4471002"), id="callID-float-whole"),
    pytest.param("callID", 123456789012345, Sent("123456789012345"), id="callID-15-digits"),
    pytest.param("callID", 12345678901234567, "was rounded by the spreadsheet (more than 15 digits); "
                 "format the callID column as Text", id="callID-17-digits"),
    pytest.param("callID", date(2024, 1, 5), "callID '2024-01-05' is a date, not a call ID; format the callID "
                 "column as Text", id="callID-date"),
    pytest.param("callID", datetime(2024, 1, 5, 9, 30), "is a date, not a call ID", id="callID-datetime"),
    pytest.param("callID", True, "callID 'TRUE' is TRUE/FALSE, not a call ID", id="callID-true"),
    pytest.param("callID", False, "callID 'FALSE' is TRUE/FALSE", id="callID-false"),
    pytest.param("logID", 87278, Sent(87278), id="logID-number"),
    pytest.param("logID", 87278.0, Sent(87278), id="logID-float-whole"),
    pytest.param("logID", 87278.5, "logID '87278.5' is not a whole number", id="logID-fraction"),
    pytest.param("logID", 12345678901234567, "logID '1.23456789012346e+16' was rounded", id="logID-17-digits"),
    pytest.param("logID", date(2024, 1, 5), "logID '2024-01-05' is a date, not a log ID", id="logID-date"),
    pytest.param("logID", True, "logID 'TRUE' is TRUE/FALSE, not a log ID", id="logID-true"),
    pytest.param("logID", 0, "logID '0' is not a positive whole number", id="logID-zero"),
]


WORKBOOK_WRITERS = {"xlsx": write_xlsx, "ods": write_ods}


@pytest.mark.parametrize("fmt", WORKBOOK_WRITERS)
@pytest.mark.parametrize(("field", "cell", "expected"), TYPED)
def test_typed_workbook_cells(tmp_path: Path, fmt: str, field: str, cell: object, expected: Sent | str) -> None:
    """Numbers are read as their integer text; rounded numbers, dates and TRUE/FALSE in an ID column are invalid."""
    row = {**BASE, field: cell}
    path = WORKBOOK_WRITERS[fmt](tmp_path / f"calls.{fmt}", [[row[name] for name in HEADER]])

    check_outcome(validate(load(path)), field, expected)


@pytest.mark.parametrize(("cell", "expected"), [
    pytest.param("Interested", Sent("Interested"), id="exact"),
    pytest.param("interested", Sent("Interested"), id="lower-case"),
    pytest.param("  NOT INTERESTED ", Sent("Not Interested"), id="upper-case-padded"),
    pytest.param("dnc", Sent("DNC"), id="short"),
    pytest.param("Intrested", "disposition 'Intrested' is not in the dispositions list (did you mean 'Interested'?)",
                 id="near-miss"),
    pytest.param("Call back", "(did you mean 'Callback'?)", id="near-miss-space"),
    pytest.param("", "disposition is blank", id="blank"),
])
def test_allow_list_matches_ignoring_case_and_sends_its_spelling(
    tmp_path: Path, cell: str, expected: Sent | str
) -> None:
    """With an allow-list a disposition matches ignoring case, is sent as the list spells it, near misses get a hint."""
    check_outcome(one_row(tmp_path, "disposition", cell, ALLOWED), "disposition", expected)


def test_disposition_far_from_every_allowed_name_gets_no_hint(tmp_path: Path) -> None:
    """A disposition unlike any listed name is invalid without a misleading "did you mean"."""
    result = one_row(tmp_path, "disposition", "Wrong Number", ALLOWED)

    assert result.messages == {0: "disposition 'Wrong Number' is not in the dispositions list"}


def test_without_allow_list_any_disposition_is_sent_as_written(tmp_path: Path) -> None:
    """Without an allow-list any non-blank disposition is sent, trimmed, with its own spelling."""
    assert one_row(tmp_path, "disposition", "  intrested  ").requests[0].disposition == "intrested"


def test_duplicate_call_ids_point_at_the_first_rows_spreadsheet_row(tmp_path: Path) -> None:
    """A repeated callID (once trimmed and folded) is invalid as "duplicate of row N"; blank ones are not duplicates."""
    path = tmp_path / "calls.csv"
    path.write_text(
        "Day report: 27 Nov\n"           # 1
        "\n"                             # 2
        "callID,logID,disposition\n"     # 3
        "4471001,1,Interested\n"         # 4
        ",2,Interested\n"                # 5  blank callID
        "\n"                             # 6
        "4471001,3,Callback\n"           # 7  duplicate of row 4
        ",4,Interested\n"                # 8  blank again: not a duplicate of row 5
        '" 4471001 ",5,Busy\n'           # 9  duplicate of row 4 once trimmed
        "４４７１００１,6,Busy\n"        # 10 duplicate of row 4 once folded
        "4471002,7,\"Line one\nLine two\"\n"  # 11 (a two-line cell: still one row)
        "4471002,8,Busy\n",              # 12 duplicate of row 11
        encoding="utf-8",
    )
    table = load(path)

    result = validate(table)

    by_row = {table.rows[index]: message for index, message in result.messages.items()}
    assert by_row == {
        5: "callID is blank (or the cell holds an error such as #N/A); fill in the call's ID",
        7: "callID '4471001' is a duplicate of row 4; each call is sent once, from its first row",
        8: "callID is blank (or the cell holds an error such as #N/A); fill in the call's ID",
        9: "callID '4471001' is a duplicate of row 4; each call is sent once, from its first row",
        10: "callID '4471001' is a duplicate of row 4; each call is sent once, from its first row",
        12: "callID '4471002' is a duplicate of row 11; each call is sent once, from its first row",
    }
    assert [(request.row, request.call_id, request.log_id) for request in result.requests] == [
        (4, "4471001", 1), (11, "4471002", 7)]


def test_several_broken_fields_give_one_message_naming_each(tmp_path: Path) -> None:
    """A row breaking a rule in every field gets one message naming each field, in column order."""
    table = load_csv(tmp_path, [["4471/001", "87278.5", "  ", "x" * 40_000], ["4471002", "87279", "Busy", ""]])

    result = validate(table)

    assert list(result.messages) == [0]
    message = result.messages[0]
    assert message == (
        "callID '4471/001' has the character '/', which a call ID cannot hold; use only letters, digits, _ and -. "
        "logID '87278.5' is not a whole number. "
        "disposition is blank (or the cell holds an error such as #N/A); fill in a disposition such as Interested. "
        "notes are 40,000 characters long (as Excel counts them); at most 32,767 fit in a cell, so shorten them"
    )
    assert [request.call_id for request in result.requests] == ["4471002"]


def test_long_values_are_shortened_in_messages(tmp_path: Path) -> None:
    """A long bad value is quoted shortened with an ellipsis, so the message stays readable."""
    message = one_row(tmp_path, "logID", "9" * 19 + "x" * 100).messages[0]

    assert message == f"logID '{'9' * 19 + 'x' * 20}…' is not a whole number"


def test_every_message_is_plain_sentences(tmp_path: Path) -> None:
    """Across every kind of invalid row at once, each message is plain text for a person, one per invalid row."""
    invalid = [param.values for param in RULES if not isinstance(param.values[2], Sent)]
    rows = []
    for number, (field, cell, _) in enumerate(invalid):
        row = {**BASE, "callID": f"C{number}", field: cell}
        rows.append([row[name] for name in HEADER])
    rows.append([rows[-1][0], "1", "Interested", ""])  # a duplicate of the last (a notes row), too
    table = load_csv(tmp_path, rows)

    result = validate(table, ALLOWED)

    assert sorted(result.messages) == list(range(len(rows)))
    for message in result.messages.values():
        assert_plain(message)


def test_valid_rows_become_call_requests(tmp_path: Path) -> None:
    """Each valid row becomes a CallRequest with its table index, spreadsheet row, IDs, disposition and notes."""
    path = tmp_path / "calls.csv"
    path.write_text(
        "Call ID,Log ID,Disposition Name,Notes,Agent\n"                # 1
        "00123,87278,Interested,\"  Line one\nLine two  \",Priya\n"  # 2 (one row over two lines)
        "\n"                                                          # 3
        " 4471002 ,87279.0, Callback ,,Rahul\n"                       # 4
        "4471003,abc,Busy,x,Anita\n"                                  # 5
        "１２３４,８７２８０,Not Interested,ग्राहक 👍,Vikram\n",        # 6
        encoding="utf-8",
    )

    result = validate(load(path))

    assert result.requests == [
        CallRequest(index=0, row=2, call_id="00123", log_id=87278, disposition="Interested",
                    notes="Line one\nLine two"),
        CallRequest(index=1, row=4, call_id="4471002", log_id=87279, disposition="Callback", notes=""),
        CallRequest(index=3, row=6, call_id="1234", log_id=87280, disposition="Not Interested", notes="ग्राहक 👍"),
    ]
    assert all(type(request.log_id) is int for request in result.requests)
    assert result.requests[0].body() == {"logID": 87278, "dispositionName": "Interested",
                                         "notes": "Line one\nLine two"}
    assert result.messages == {2: "logID 'abc' is not a whole number"}


def test_missing_notes_column_sends_empty_notes(tmp_path: Path) -> None:
    """Without a notes column every valid row is sent with notes ""."""
    table = load_csv(tmp_path, [["1", "2", "Interested"], ["3", "4", "Busy"]],
                     header=["callID", "logID", "disposition"])

    result = validate(table)

    assert [request.notes for request in result.requests] == ["", ""]


@pytest.mark.parametrize("ext", ["xlsx", "xls", "ods"])
def test_libreoffice_fixture_rows(ext: str) -> None:
    """The LibreOffice workbook: rounded, date and #N/A/fraction rows invalid; the rest sent, trimmed."""
    table = load(FIXTURES / f"libreoffice_calls.{ext}")

    result = validate(table)

    by_row = {table.rows[index]: message for index, message in result.messages.items()}
    assert by_row == {
        8: "callID '1.23456789012346e+16' was rounded by the spreadsheet (more than 15 digits); "
           "format the callID column as Text and type the IDs again",
        9: "callID '2024-01-05' is a date, not a call ID; format the callID column as Text and type the IDs again",
        11: "logID is blank (or the cell holds an error such as #N/A); fill in the log ID",
        12: "logID '87284.5' is not a whole number",
    }
    assert result.requests == [
        CallRequest(index=0, row=4, call_id="00123", log_id=87278, disposition="Interested",
                    notes="Line one\nLine two"),
        CallRequest(index=1, row=5, call_id="4471002", log_id=87279, disposition="Callback",
                    notes='Said "call me", after 6, OK'),
        CallRequest(index=2, row=7, call_id="4471003", log_id=87280, disposition="Not Interested", notes=HINDI_EMOJI),
        CallRequest(index=5, row=10, call_id="4471010", log_id=87283, disposition="Interested",
                    notes="=SUM(1,2) is only text"),
        CallRequest(index=8, row=13, call_id="4471012", log_id=87285, disposition="Busy", notes="trimmed"),
    ]


def test_libreoffice_fixture_with_allow_list(tmp_path: Path) -> None:
    """With an allow-list, a listed name in other case is sent in the list's spelling and others are invalid."""
    table = load(FIXTURES / "libreoffice_calls.xlsx")

    result = validate(table, ["interested", "CALLBACK", "Not Interested"])

    assert [(request.row, request.disposition) for request in result.requests] == [
        (4, "interested"), (5, "CALLBACK"), (7, "Not Interested"), (10, "interested")]
    assert result.messages[table.rows.index(13)] == "disposition 'Busy' is not in the dispositions list"


def test_rules_are_one_pandera_schema() -> None:
    """The row rules are one pandera DataFrameSchema over the four fields (and the ID cells' kinds)."""
    schema = row_schema(ALLOWED)

    assert isinstance(schema, pa.DataFrameSchema)
    assert set(schema.columns) == {"callID", "callID_first", "callID_kind", "logID", "logID_kind", "disposition",
                                   "notes"}


def test_call_ids_that_read_as_dates_get_one_warning(tmp_path: Path) -> None:
    """A CSV whose call IDs a spreadsheet turned into dates (`2026-11-30`) is warned about once, naming the
    first row; they stay valid (some accounts may use such IDs), and a call_id_pattern makes them invalid."""
    source = write_csv(tmp_path / "dated.csv", [["7001", "1", "Interested", "a"], ["2026-11-30", "2", "Callback", "b"],
                                                ["30-11-2026", "3", "Callback", "c"], ["2026-1130", "4", "Sale", "d"]])
    table = load(source)
    checked = validate(table)
    dated = [warning for warning in checked.warnings if "as date" in warning]
    assert dated == ["callID '2026-11-30' (row 3) and 1 more read as dates: a spreadsheet may have "
                     "turned the call IDs into dates, so check them before sending (a call_id_pattern such as \\d+ "
                     "makes such IDs invalid)."]
    assert len(checked.requests) == 4
    assert not any("date" in warning for warning in validate(table, call_id_pattern=r"[\d-]+").warnings)
