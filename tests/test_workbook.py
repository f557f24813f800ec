"""The results workbook as ops staff open it: frozen header, filter, colours, widths, text kept exactly."""

from __future__ import annotations

import zipfile
from datetime import UTC, datetime
from pathlib import Path

import pytest
from openpyxl import load_workbook

from batch_dispose.loading import load
from batch_dispose.models import Outcome, RowResults, Status
from batch_dispose.workbook import CELL_MAX, input_stem, local_time, visible, write_results
from tests.conftest import write_csv

STARTED = datetime(2026, 11, 27, 16, 7, 0, tzinfo=UTC)


@pytest.mark.parametrize("text, shown, replaced", [
    ("plain", "plain", 0),
    ("nul\x00 bell\x07 esc\x1b", "nul\u2400 bell\u2407 esc\u241b", 3),
    ("tab\tnewline\ncr\r", "tab\tnewline\ncr\r", 0),  # XML holds these
    ("lone \ud800 surrogate", "lone \ufffd surrogate", 1),
    ("not a char \ufffe", "not a char \ufffd", 1),
])
def test_characters_a_workbook_cannot_hold_are_shown_visibly(text: str, shown: str, replaced: int) -> None:
    """Control characters become control pictures and XML-illegal ones U+FFFD, counted for the message."""
    assert visible(text) == (shown, replaced)


def test_over_long_text_is_cut_where_excel_counts_32767() -> None:
    """Text longer than a cell holds (emoji counting twice, as in Excel) is cut with a final …."""
    plain, cut = visible("x" * (CELL_MAX + 10))
    assert len(plain) == CELL_MAX and plain.endswith("…") and cut == 11
    emoji, _ = visible("😀" * CELL_MAX)
    assert len(emoji.encode("utf-16-le")) // 2 <= CELL_MAX and emoji.endswith("…")


def _results(tmp_path: Path, rows: list[list[object]], statuses: list[Status]) -> Path:
    table = load(write_csv(tmp_path / "day.csv", rows, header=["callID", "logID", "disposition", "notes", "Agent"]))
    results = RowResults(len(table))
    for index, status in enumerate(statuses):
        results.set(index, Outcome(status, f"message {index}", 200 if status is Status.DISPOSED else None,
                                   1, "2026-11-27T16:07:01.000Z"))
    return write_results(table, results, [("Rows", len(table)), ("Input file", "day.csv")],
                         reports_dir=tmp_path / "reports", started=STARTED)


def test_long_messages_and_summary_labels_are_readable_without_widening_columns(tmp_path: Path) -> None:
    """A skipped row's long message shows 80 characters before the column ends (other columns stop at 60), and
    the Summary's labels ("Rows without call data (ignored)") fit their column."""
    table = load(write_csv(tmp_path / "day.csv", [["C1", 1, "Interested", ""]]))
    results = RowResults(len(table))
    long = "already disposed at 2026-11-27 16:07:01 +0530 (ledger; last sent from crm-export-monday.xlsx); not sent"
    results.set(0, Outcome(Status.SKIPPED, long))
    label = "Rows without call data (ignored)"
    path = write_results(table, results, [("Rows", 1), (label, 0)], reports_dir=tmp_path / "reports", started=STARTED)
    workbook = load_workbook(path)
    assert workbook["Results"].column_dimensions["B"].width == 80
    assert workbook["Results"].page_setup.orientation == "landscape"  # printed, status and message fit one page
    assert workbook["Summary"].column_dimensions["A"].width >= len(label) + 1


def test_sheet_is_set_up_for_people_and_reads_back_exactly(tmp_path: Path) -> None:
    """Header frozen and bold, autofilter over every row, one colour rule per status, widths set, and
    every cell reads back as written (text stays text, numbers are numbers)."""
    rows = [["C1", 1, "Interested", "=SUM(1,2)", "Priya"], ["C2", 2, "DNC", "a < b & c > \"d\"", "Rahul"],
            ["C3", "x", "Callback", "  spaced  ", ""]]
    path = _results(tmp_path, rows, [Status.DISPOSED, Status.FAILED, Status.INVALID])
    assert path.name == "day-results-20261127-160700.xlsx"
    workbook = load_workbook(path)
    assert workbook.sheetnames == ["Results", "Summary"]
    sheet = workbook["Results"]
    assert sheet.freeze_panes == "A2"
    assert sheet.auto_filter.ref == "A1:K4"
    rules = [rule for cf in sheet.conditional_formatting for rule in cf.rules]
    assert sorted(rule.formula[0] for rule in rules) == sorted(f'$A2="{status.value}"' for status in Status)
    assert all(sheet.column_dimensions[letter].width >= 8 for letter in "ABCDEFGHIJK")
    assert all(cell.font.b for cell in sheet[1])
    values = [[cell.value for cell in line] for line in sheet.iter_rows(min_row=2)]
    assert values[0] == ["disposed", "message 0", "C1", "1", "Interested", "=SUM(1,2)", "Priya", 2, 200, 1,
                         local_time("2026-11-27T16:07:01.000Z")]
    assert values[1][5] == 'a < b & c > "d"' and values[2][5] == "  spaced  "
    assert all(cell.data_type != "f" for line in sheet.iter_rows() for cell in line)
    assert dict(workbook["Summary"].iter_rows(values_only=True)) == {"Rows": 3, "Input file": "day.csv"}
    workbook.close()


def test_result_columns_read_back_exactly_what_was_recorded(tmp_path: Path) -> None:
    """The compact result columns give back each outcome as recorded: an outcome's time to the millisecond
    (the workbook shows it in local time), a blank one, one of another shape as it is; no HTTP status as
    blank, attempts as counted."""
    table = load(write_csv(tmp_path / "day.csv", [[f"C{n}", n + 1, "Interested", ""] for n in range(4)]))
    results = RowResults(len(table))
    times = ["2026-11-27T16:07:01.007Z", "", "died before 2026-11-27T16:07:01", "1969-12-31T23:59:59.500Z"]
    for index, at in enumerate(times):
        results.set(index, Outcome(Status.DISPOSED if at else Status.UNKNOWN, "m", 200 if at else None, index, at))
    assert results.finished_at == times and results.http_status == [200, None, 200, 200]
    assert results.attempts == [0, 1, 2, 3] and results.status[1] is Status.UNKNOWN
    path = write_results(table, results, [("Rows", 4)], reports_dir=tmp_path / "reports", started=STARTED)
    sheet = load_workbook(path)["Results"]
    assert [row[-1] for row in sheet.iter_rows(min_row=2, values_only=True)] == [
        local_time(times[0]), None, times[2], local_time(times[3])]


def test_workbook_is_a_valid_package_libreoffice_and_calamine_can_read(tmp_path: Path) -> None:
    """The package holds the parts Excel needs, and calamine reads it back as a new input would."""
    path = _results(tmp_path, [["C1", 1, "Interested", "n", "A"]], [Status.DISPOSED])
    with zipfile.ZipFile(path) as package:
        assert package.testzip() is None
        assert {"[Content_Types].xml", "_rels/.rels", "xl/workbook.xml", "xl/styles.xml",
                "xl/worksheets/sheet1.xml", "xl/worksheets/sheet2.xml"} <= set(package.namelist())
    table = load(path)  # a results workbook is itself a valid input
    assert table.prior_status == ["disposed"] and table.headers == ("callID", "logID", "disposition", "notes", "Agent")


def test_a_second_workbook_in_the_same_second_gets_a_new_name(tmp_path: Path) -> None:
    """Two runs starting in the same second never overwrite each other: -2 is appended."""
    first = _results(tmp_path, [["C1", 1, "Interested", "n", "A"]], [Status.DISPOSED])
    second = _results(tmp_path, [["C1", 1, "Interested", "n", "A"]], [Status.SKIPPED])
    assert second.name == "day-results-20261127-160700-2.xlsx" and first.exists()
    assert not list((tmp_path / "reports").glob(".*.tmp"))


@pytest.mark.parametrize("name, stem", [
    ("end_of_day.xlsx", "end_of_day"),
    ("end_of_day-results-20261127-170940.xlsx", "end_of_day"),
    ("end_of_day-results-20261127-170940-3.xlsx", "end_of_day"),
    ("my-results-file.csv", "my-results-file"),
])
def test_a_results_workbook_given_back_keeps_its_original_name(name: str, stem: str) -> None:
    """Re-running a results workbook files it under the original name, not a growing chain of suffixes."""
    assert input_stem(Path(name)) == stem
