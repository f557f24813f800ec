"""Tests of real CRM exports (issue 10) and of the input's bounded memory (issue 11): column names and
mappings, files without notes, rows that are not calls, look-alike dispositions, one number for one row
through every generation, a workbook made for people, edits made in the ops page, a stray corner cell.

Every file is written by the test (csv module, openpyxl) and run against the simulator over loopback.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from datetime import date, datetime
from pathlib import Path

import pytest
from conftest import read_results, write_csv, write_xlsx
from openpyxl import Workbook, load_workbook

from batch_dispose.job import validate_file
from batch_dispose.loading import load
from batch_dispose.models import Status
from batch_dispose.planning import apply_edits, load_table, plan, row_checker
from batch_dispose.settings import Settings


def _base(sim) -> list[str]:  # type: ignore[no-untyped-def]
    return ["--base-url", sim.base_url]


def _sent(sim) -> dict[str, dict]:  # type: ignore[no-untyped-def,type-arg]
    import json

    return {r.call_id: json.loads(r.body) for r in sim.stats.recorded}


# -- column names ------------------------------------------------------------------------------------

@pytest.mark.parametrize("notes", ["Remarks", "Comments", "Comment", "Call Notes", "Agent Remarks", "agent_notes",
                                   "DESCRIPTION"])
@pytest.mark.parametrize(("call", "log", "disposition"), [
    ("Call ID", "Log ID", "Disposition Name"),
    ("Call No", "Log No", "Call Disposition"),
    ("Call Number", "log-number", "Outcome"),
    ("Call Reference", "Log Id", "Disposition"),
])
def test_crm_column_names_are_recognised_and_notes_arrive(cli, sim, tmp_path: Path, notes: str, call: str,
                                                          log: str, disposition: str) -> None:
    """The names CRM exports give the four fields are understood, and the notes reach the server."""
    source = write_csv(tmp_path / "crm.csv", [["501", "Priya", "7001", "Interested", "wants a demo"]],
                       header=[call, "Agent", log, disposition, notes])
    result = cli("run", source, *_base(sim), "--json")
    assert result.code == 0, result.err
    assert _sent(sim)["501"] == {"logID": 7001, "dispositionName": "Interested", "notes": "wants a demo"}


def test_results_columns_are_never_taken_as_fields(tmp_path: Path) -> None:
    """A results workbook's `status` and `message` are never read as a disposition or notes."""
    source = write_csv(tmp_path / "r.csv", [["1", "2", "Interested", "ok", "x"]],
                       header=["status", "callID", "logID", "disposition", "message"])
    with pytest.raises(Exception, match="notes"):
        load_table(source, Settings())


def test_column_mapping_chooses_a_column_by_its_header(cli, sim, tmp_path: Path) -> None:
    """`--column notes=Summary` sends that column as the notes; the mapping in the config does the same."""
    header = ["callID", "logID", "disposition", "Summary", "Remarks"]
    source = write_csv(tmp_path / "m.csv", [["601", "1", "Callback", "from summary", "from remarks"]], header=header)
    result = cli("run", source, *_base(sim), "--column", "notes=Summary", "--json")
    assert result.code == 0, result.err
    assert _sent(sim)["601"]["notes"] == "from summary"
    (tmp_path / "batch-dispose.toml").write_text('[columns]\nnotes = "Summary"\ncallID = "callID"\n')
    other = write_csv(tmp_path / "n.csv", [["602", "1", "Callback", "summary two", "remarks two"]], header=header)
    assert cli("run", other, *_base(sim), "--json").code == 0
    assert _sent(sim)["602"]["notes"] == "summary two"


def test_mapping_a_header_the_file_lacks_is_one_sentence_naming_the_headers(cli, sim, tmp_path: Path) -> None:
    """A mapping that names no column of the file: exit 2, nothing sent, the headers found named."""
    source = write_csv(tmp_path / "m.csv", [["601", "1", "Callback", "x"]],
                       header=["callID", "logID", "disposition", "Summary"])
    result = cli("run", source, *_base(sim), "--column", "notes=Remarks")
    assert result.code == 2 and sim.stats.requests == 0
    line = result.err.strip()
    assert "\n" not in line and "'Remarks'" in line and "callID, logID, disposition, Summary" in line
    bad = cli("run", source, *_base(sim), "--column", "agent=Summary")
    assert bad.code == 2 and "not a field" in bad.err


def test_a_file_without_notes_is_not_sent_unless_no_notes_says_so(cli, sim, tmp_path: Path) -> None:
    """No notes column: run and validate exit 2 naming the options; with --no-notes it is sent, notes empty."""
    source = write_csv(tmp_path / "nn.csv", [["701", "1", "Interested", "Priya"]],
                       header=["callID", "logID", "disposition", "Agent"])
    for command in ("run", "validate"):
        result = cli(command, source, *_base(sim))
        assert result.code == 2, result.err
        assert "--column notes=" in result.err and "--no-notes" in result.err
        assert len(result.err.strip().splitlines()) == 1
    assert sim.stats.requests == 0
    assert not (tmp_path / "reports").exists() or not list((tmp_path / "reports").glob("*.xlsx"))
    sent = cli("run", source, *_base(sim), "--no-notes", "--json")
    assert sent.code == 0 and _sent(sim)["701"]["notes"] == ""
    assert "empty notes" in sent.err


# -- rows that are not calls ---------------------------------------------------------------------------

def _export(path: Path, helpers: int = 300) -> Path:
    """An export as a CRM makes it: two title rows, a blank line, the header, calls, a Total row, and
    helper formulas dragged down far below the data."""
    workbook = Workbook()
    sheet = workbook.active
    sheet.append(["Daily calls report"])
    sheet.append(["Team A", None, None, None, None, "exported", date(2026, 11, 30)])
    sheet.append([])
    sheet.append(["Call ID", "Log ID", "Disposition", "Remarks", "Agent", "Duration", "Called on"])
    for n in range(5):
        sheet.append([str(8000 + n), 900 + n, "Interested", f"remark {n}", "Priya", 61.5 + n,
                      datetime(2026, 11, 30, 10, n)])
    sheet.append(["Total", None, 5, None, None, 317.5])
    for _ in range(helpers):
        sheet.append([None, None, None, None, "", 0, None])
    workbook.save(path)
    return path


def test_an_export_with_titles_total_and_helper_rows_sends_exactly_its_calls(cli, sim, tmp_path: Path) -> None:
    """Title rows, a Total row and 300 helper-only rows: exactly the 5 calls sent, exit 0, nothing invalid,
    the ignored rows counted once in the Summary and the end-of-file summary."""
    source = _export(tmp_path / "export.xlsx")
    result = cli("run", source, *_base(sim), "--json")
    assert result.code == 0, result.err
    assert sorted(_sent(sim)) == [str(8000 + n) for n in range(5)]
    assert result.json()["counts"].get("invalid", 0) == 0
    assert "301 rows had no call data and were ignored" in result.err
    _, records, summary = read_results(Path(result.json()["results"]))
    assert summary["Rows without call data (ignored)"] == 301
    calls = [r for r in records if r["status"]]
    assert [r["row"] for r in calls] == [5, 6, 7, 8, 9]
    ignored = [r for r in records if not r["status"]]
    assert len(ignored) == 301 and all(r["message"].startswith("no call data") for r in ignored)
    assert ignored[0]["row"] == 10 and ignored[0]["Call ID"] == "Total"


def test_a_results_workbook_given_back_keeps_its_total_row_a_footer(cli, sim, tmp_path: Path) -> None:
    """Given back, the export's results workbook still reads its Total row as a footer (beside the message
    "no call data: ignored"): nothing invalid, nothing re-sent, exit 0."""
    first = cli("run", _export(tmp_path / "export.xlsx", helpers=3), *_base(sim), "--json")
    again = cli("run", first.json()["results"], *_base(sim), "--json")
    assert again.code == 0, again.err
    assert again.json()["counts"]["invalid"] == 0 and again.json()["counts"]["skipped"] == 5
    assert "4 rows had no call data and were ignored" in again.err
    assert sorted(_sent(sim)) == [str(8000 + n) for n in range(5)]


@pytest.mark.parametrize("footer", [["Grand Total", "", "12", ""], ["Count", "", "", "7"], ["TOTAL:", "", "3", ""],
                                    ["", "", "Sum", "42"], ["Count: 3", "", "", ""], ["Total = 1,204", "", "", ""]])
def test_footer_rows_are_not_calls(tmp_path: Path, footer: list[str]) -> None:
    """Total / Grand Total / Count / Sum with numbers or nothing beside them is a footer, not a call."""
    source = write_csv(tmp_path / "f.csv", [["1", "2", "Interested", "n"], footer])
    table = load(source)
    assert table.rows == [2] and table.ignored == 1


def test_a_total_row_under_a_name_column_stays_a_footer_in_every_generation(cli, sim, tmp_path: Path) -> None:
    """A CRM export whose Total sits under its first column (a name) with the count under Call ID: ignored in
    the file and in its results workbook given back, where status and message now come first (it became an
    invalid row asking for a log ID, and "send the rest again" was offered forever)."""
    workbook = Workbook()
    sheet = workbook.active
    sheet.append(["Lead Name", "Call ID", "Log ID", "Disposition", "Remarks"])
    sheet.append(["Asha", "8001", 901, "Interested", "ok"])
    sheet.append(["Ravi", "8002", 902, "Callback", ""])
    sheet.append(["Total", 2, None, None, None])
    workbook.save(tmp_path / "crm.xlsx")
    first = cli("run", tmp_path / "crm.xlsx", *_base(sim), "--json")
    assert first.code == 0 and first.json()["counts"]["invalid"] == 0, first.err
    again = cli("run", first.json()["results"], *_base(sim), "--json")
    assert again.code == 0, again.err
    assert again.json()["counts"]["invalid"] == 0 and "1 row had no call data and was ignored" in again.err


def test_a_paginated_export_s_repeated_header_and_text_lines_are_not_calls(cli, sim, tmp_path: Path) -> None:
    """A CRM export that repeats its header row at each page and ends with "Exported by … do not forward" and
    "Count: 3" under Call ID: exactly its calls sent, exit 0, the other lines counted as ignored; a half-typed
    row ("12 345" and nothing else) is still an invalid row that says what is missing."""
    header = ["Call ID", "Log ID", "Disposition", "Remarks"]
    source = write_csv(tmp_path / "paged.csv", [
        ["7001", "1", "Interested", "a"], ["7002", "2", "Callback", ""], ["Page 1 of 2", "", "", ""], header,
        ["7003", "3", "Interested", "b"], ["Exported by CRM v5 - confidential, do not forward", "", "", ""],
        ["Count: 3", "", "", ""]], header=header)
    result = cli("run", source, *_base(sim), "--json")
    assert result.code == 0, result.err
    assert sorted(_sent(sim)) == ["7001", "7002", "7003"]
    assert "4 rows had no call data and were ignored" in result.err
    half = write_csv(tmp_path / "half.csv", [["7004", "4", "Interested", ""], ["12 345", "", "", ""]])
    judged = cli("run", half, *_base(sim), "--json")
    assert judged.json()["counts"]["invalid"] == 1 and "row     3  invalid" in judged.err


def test_a_total_row_beside_a_helper_columns_text_is_still_a_footer(tmp_path: Path) -> None:
    """A Total row with a count under Call ID and a sum under Duration, where a helper formula dragged down
    shows its text ("MISSING") in its own column: a footer, not an invalid call asking to fill in a log ID."""
    workbook = Workbook()
    sheet = workbook.active
    sheet.append(["S.No", "Call ID", "Log ID", "Disposition", "Remarks", "Duration", "Check"])
    sheet.append([1, "8001", 901, "Interested", "ok", 61.5, "OK"])
    sheet.append([2, "8002", 902, "Callback", "", 30, "OK"])
    sheet.append(["Total", 2, None, None, None, 91.5, "MISSING"])
    workbook.save(tmp_path / "export.xlsx")
    table = load(tmp_path / "export.xlsx")
    assert table.rows == [2, 3] and table.ignored == 1


def test_a_results_workbook_sorted_by_hand_says_its_row_numbers_moved(cli, sim, tmp_path: Path) -> None:
    """Sorted in Excel (by status, say) and given back, a results workbook's rows no longer sit at the number in
    their `row` column: the run says so in a sentence (row numbers now count places in the file), while a
    workbook given back as written says nothing of the kind. Nothing is sent twice either way."""
    source = write_csv(tmp_path / "calls.csv", [["1000", "5000", "Interested", "a"], ["1001", "abc", "Callback", ""],
                                                 ["1002", "5002", "Interested", "b"]])
    first = cli("run", source, *_base(sim), "--json")
    results = Path(first.json()["results"])
    again = cli("run", results, *_base(sim), "--json")
    assert "moved since it was written" not in again.err
    workbook = load_workbook(results)
    sheet = workbook["Results"]
    data = [[cell.value for cell in row] for row in sheet.iter_rows(min_row=2)]
    for number, values in enumerate(reversed(data), start=2):  # sorted by hand: the invalid row first
        for column, value in enumerate(values, start=1):
            sheet.cell(number, column, value)
    sorted_by_hand = tmp_path / "sorted.xlsx"
    workbook.save(sorted_by_hand)
    moved = cli("run", sorted_by_hand, *_base(sim), "--json")
    assert moved.code == 1, moved.err
    assert "Rows of this results workbook moved since it was written (2 no longer sit at the number in their " \
           "`row` column" in moved.err
    assert sorted(_sent(sim)) == ["1000", "1002"]


def test_a_row_called_total_with_call_data_beside_it_is_still_judged(tmp_path: Path) -> None:
    """`Total` beside a disposition text is not a footer: the row is checked (and found invalid). Nor is a call
    whose ID begins with a footer's word (`COUNT-123`, `Total-7`) and whose disposition was left blank: it is an
    invalid row saying what is missing, never silently ignored."""
    source = write_csv(tmp_path / "f.csv", [["1", "2", "Interested", "n"], ["Total", "x", "Callback", "a note"],
                                            ["COUNT-123", "5001", "", ""], ["Total-7", "", "", ""]])
    table = load(source)
    assert table.rows == [2, 3, 4, 5] and table.ignored == 0


def test_call_id_pattern_makes_other_ids_invalid_with_a_sentence(cli, sim, tmp_path: Path) -> None:
    """With --call-id-pattern '\\d+' a callID with letters is invalid and the message says what IDs look like."""
    source = write_csv(tmp_path / "p.csv", [["123", "1", "Interested", ""], ["AB12", "2", "Interested", ""]])
    result = cli("run", source, *_base(sim), "--call-id-pattern", r"\d+", "--json")
    assert result.code == 1 and sorted(_sent(sim)) == ["123"]
    _, records, _ = read_results(Path(result.json()["results"]))
    assert records[1]["status"] == "invalid" and "does not look like this account's call IDs" in records[1]["message"]
    assert cli("run", source, *_base(sim), "--call-id-pattern", "(").code == 2


def test_look_alike_dispositions_are_warned_about_before_sending(tmp_path: Path) -> None:
    """`Intrested` beside `Interested` and `Call back` beside `Callback` are named, with their row counts and
    where the rarer spelling is, so it can be found."""
    rows = [[str(n), "1", "Interested", ""] for n in range(3)] + [["10", "1", "Intrested", ""],
                                                                 ["11", "1", "Callback", ""],
                                                                 ["12", "1", "Call back", ""],
                                                                 ["13", "1", "Not Interested", ""]]
    source = write_csv(tmp_path / "d.csv", rows)
    result, _ = validate_file(source, Settings(reports_dir=tmp_path / "reports"))
    alike = [w for w in result.warnings if "look alike" in w]
    assert len(alike) == 2
    assert any("'Intrested' (1 row: row 5) beside 'Interested' (3 rows)" in w for w in alike), alike
    assert any("'Call back'" in w and "'Callback'" in w for w in alike)
    assert not any("Not Interested" in w for w in alike)


# -- one number for one row -------------------------------------------------------------------------------

def test_each_row_keeps_its_line_through_three_generations(cli, simulator, tmp_path: Path) -> None:
    """A row on line 11 of the input is on line 11 with `row` 11 in the results workbook and in the next
    two generations fed back in; title rows stay above the header, result columns are never duplicated."""
    sim = simulator(scripts={"8002": [500, 500]})
    source = _export(tmp_path / "export.xlsx", helpers=3)
    current = source
    for generation in range(3):
        result = cli("run", current, *_base(sim), "--json", "--force" if generation == 2 else "--quiet")
        assert result.code in (0, 1), result.err
        current = Path(result.json()["results"])
        sheet = load_workbook(current)["Results"]
        assert sheet["C1"].value == "Daily calls report" and sheet["I2"].value == datetime(2026, 11, 30)
        assert [c.value for c in sheet[4]][:3] == ["status", "message", "Call ID"]
        assert sheet.freeze_panes == "A5" and sheet.auto_filter.ref.startswith("A4:")
        assert sheet["C7"].value == "8002" and sheet["J7"].value == 7  # `row` after the 7 input columns
        assert sheet["H7"].value == 63.5 and sheet["I7"].value == datetime(2026, 11, 30, 10, 2)
        headers = [c.value for c in sheet[4]]
        assert headers.count("status") == 1 and headers.count("row") == 1
    assert sim.stats.received["8002"] == 3


def test_carried_numbers_and_dates_stay_typed_ids_stay_text(cli, sim, tmp_path: Path) -> None:
    """Numbers, dates and booleans carried from the input are numbers, dates and booleans in the workbook;
    callID and logID are text; finished_at is local time with its offset."""
    source = write_xlsx(tmp_path / "t.xlsx", [["9001", 9001, "Interested", "n", 12.5, datetime(2026, 1, 2, 3, 4, 5),
                                               True, date(2026, 1, 3)]],
                        header=["callID", "logID", "disposition", "notes", "Minutes", "Called", "VIP", "Day"])
    result = cli("run", source, *_base(sim), "--json")
    assert result.code == 0, result.err
    headers, records, summary = read_results(Path(result.json()["results"]))
    record = records[0]
    assert record["callID"] == "9001" and record["logID"] == "9001"
    assert record["Minutes"] == 12.5 and record["VIP"] is True
    assert record["Called"] == datetime(2026, 1, 2, 3, 4, 5) and record["Day"] == datetime(2026, 1, 3)
    sheet = load_workbook(Path(result.json()["results"]))["Results"]
    formats = {header: sheet.cell(2, headers.index(header) + 1).number_format for header in ("Called", "Day")}
    assert formats == {"Called": "yyyy-mm-dd hh:mm:ss", "Day": "yyyy-mm-dd"}  # a date is not shown at 00:00:00
    offset = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d"
    assert re.fullmatch(offset, record["finished_at"]) and re.fullmatch(offset, summary["Started"])
    assert headers[:2] == ["status", "message"]


def test_validate_writes_a_checked_workbook_that_is_a_valid_input(cli, sim, tmp_path: Path) -> None:
    """`validate` names its workbook -checked-; given back, it is read and its rows filed under the stem."""
    source = write_csv(tmp_path / "day.csv", [["1", "2", "Interested", "n"]])
    checked = Path(cli("validate", source, "--json").json()["results"])
    assert re.fullmatch(r"day-checked-\d{8}-\d{6}\.xlsx", checked.name)
    again = cli("run", checked, *_base(sim), "--json")
    assert again.code == 0 and re.fullmatch(r"day-results-\d{8}-\d{6}\.xlsx", Path(again.json()["results"]).name)
    assert _sent(sim)["1"]["notes"] == "n"


def test_a_planted_symlink_is_never_followed(tmp_path: Path) -> None:
    """Temporary workbooks are created new (O_EXCL|O_NOFOLLOW): a link planted in the folder is left alone."""
    reports = tmp_path / "reports"
    reports.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    for n in range(50):  # whatever name it picks, no link is followed
        (reports / f".day-checked-link{n}.{os.getpid()}.tmp").symlink_to(victim)
    source = write_csv(tmp_path / "day.csv", [["1", "2", "Interested", "n"]])
    result, _ = validate_file(source, Settings(reports_dir=reports))
    assert victim.read_text() == "precious" and result.results_path is not None


# -- edits made in the ops page ------------------------------------------------------------------------------

def test_edits_replace_cells_before_the_rules_and_excluded_rows_are_not_sent(tmp_path: Path) -> None:
    """An edit is judged by the same rules, written as sent, and named in the row's message; an excluded row
    is pending and says so."""
    source = write_csv(tmp_path / "e.csv", [["1", "2", "Intrested", "n"], ["2", "x", "Busy", ""],
                                            ["3", "4", "Busy", ""]])
    settings = Settings(reports_dir=tmp_path / "reports")
    result, _ = validate_file(source, settings, edits={2: {"disposition": "Interested"}, 3: {"logID": "44"}},
                              excluded={4})
    assert result.counts[Status.READY] == 2 and result.counts[Status.INVALID] == 0
    _, records, _ = read_results(result.results_path)  # type: ignore[arg-type]
    assert records[0]["disposition"] == "Interested"
    assert "edited in the page: disposition 'Intrested' -> 'Interested'" in records[0]["message"]
    assert records[1]["logID"] == "44" and records[2]["status"] == "pending"
    assert records[2]["message"] == "excluded in the page; not sent"


def test_one_row_is_checked_again_with_the_same_rules_and_the_duplicate_rule(tmp_path: Path) -> None:
    """`row_checker(...).check(index, edits)` answers like a full validation, duplicates included."""
    source = write_csv(tmp_path / "c.csv", [["1", "2", "Interested", ""], ["2", "x", "Busy", ""]])
    settings = Settings(call_id_pattern=r"\d+")
    table = load_table(source, settings)
    checker = row_checker(table, settings)
    assert checker.check(1)[0] is Status.INVALID
    assert checker.check(1, {"logID": "5"}) == (Status.READY, "ready to send")
    status, message = checker.check(1, {"callID": "1", "logID": "5"})
    assert status is Status.INVALID and "duplicate of row 2" in message
    assert "does not look like" in checker.check(1, {"callID": "A1", "logID": "5"})[1]
    edited, said = apply_edits(table, {3: {"logID": "5"}})
    assert plan(edited, settings, None).to_send[1].log_id == 5 and said == {1: "edited in the page: logID 'x' -> '5'"}


# -- bounded memory ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("corner", ["XFD1048576", "CV1048576"])
def test_a_stray_corner_cell_costs_one_cell_not_the_whole_range(tmp_path: Path, corner: str) -> None:
    """3 calls and one stray cell far away: loaded and written under a 1.5 GB address-space limit, no abort,
    the 3 rows kept, the stray cell's row ignored."""
    source = write_xlsx(tmp_path / "stray.xlsx", [[str(n), n + 1, "Interested", ""] for n in range(3)])
    workbook = load_workbook(source)
    workbook.active[corner] = "stray"
    workbook.save(source)
    script = textwrap.dedent(f"""
        import resource, sys
        resource.setrlimit(resource.RLIMIT_AS, (1_500_000_000, 1_500_000_000))
        from datetime import datetime, UTC
        from pathlib import Path
        from batch_dispose.loading import load
        from batch_dispose.models import RowResults
        from batch_dispose.workbook import write_results
        table = load(Path({str(source)!r}))
        write_results(table, RowResults(len(table)), [], reports_dir=Path({str(tmp_path / 'r')!r}),
                      started=datetime.now(UTC))
        print(list(table.rows), table.ignored)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).parent.parent)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[2, 3, 4] 1"


def test_many_helper_rows_cost_no_call_rows(tmp_path: Path) -> None:
    """20,000 rows of other columns only under 2 calls: 2 call rows kept, the rest only counted."""
    path = tmp_path / "h.csv"
    lines = ["callID,logID,disposition,notes,helper", "1,2,Interested,,x", "2,3,Busy,,y"]
    lines += [",,,,0"] * 20_000
    path.write_text("\n".join(lines) + "\n")
    table = load(path)
    assert table.rows == [2, 3] and table.ignored == 20_000


def test_the_streaming_reader_reads_what_calamine_reads(tmp_path: Path) -> None:
    """A sheet read by the streaming reader (a far cell makes its extent huge) gives the same cells, kinds and
    carried values as calamine gives for the same sheet without that cell."""
    from datetime import time as clock

    rows = [["00123", 87278, "Interested", "Line one\nLine two", date(2026, 1, 5), 12.5, True],
            ["4471002", 87279.0, "Call back", "a < b & \"c\"", datetime(2026, 1, 5, 9, 30), clock(10, 15), False],
            [date(2024, 1, 5), "87280", "  Busy  ", "", None, 1e20, "text"]]
    header = ["Call ID", "log_id", "Disposition Name", "NOTE", "Day", "Minutes", "VIP"]
    dense = write_xlsx(tmp_path / "dense.xlsx", rows, header=header)
    sparse = write_xlsx(tmp_path / "sparse.xlsx", rows, header=header)
    workbook = load_workbook(sparse)
    workbook.active["XFD1048576"] = "far away"
    workbook.save(sparse)
    one, other = load(dense), load(sparse)
    assert (one.rows, one.kinds, one.cells, one.headers) == (other.rows, other.kinds, other.cells, other.headers)
    assert one.columns == other.columns
    def typed(table):  # type: ignore[no-untyped-def]  # an empty cell is "" from calamine, None when streamed
        return [[None if cell == "" else cell for cell in raw] for _, raw in table.source_rows()][:4]

    assert typed(one) == typed(other)
    assert other.ignored == 1


def test_an_input_column_called_status_survives_generations(cli, sim, tmp_path: Path) -> None:
    """The input's own `status` column is carried; fed back, our status column is the one read and replaced."""
    source = write_csv(tmp_path / "s.csv", [["1", "2", "Interested", "n", "open"]], header=["callID", "logID",
                                                                                         "disposition", "notes",
                                                                                         "status"])
    first = Path(cli("run", source, *_base(sim), "--json").json()["results"])
    second = cli("run", first, *_base(sim), "--json")
    sheet = load_workbook(Path(second.json()["results"]))["Results"]
    headers, values = ([cell.value for cell in sheet[n]] for n in (1, 2))
    assert headers[0] == headers[6] == "status" and headers.count("status") == 2
    assert values[0] == "skipped" and values[6] == "open" and sim.stats.received == {"1": 1}


def test_a_file_changed_after_it_was_read_still_gets_its_workbook(tmp_path: Path) -> None:
    """The other columns are read again when the workbook is written; if the file changed meanwhile, the
    workbook still holds every call row with its fields and result (the other cells are left blank)."""
    from datetime import UTC

    from batch_dispose.models import RowResults
    from batch_dispose.workbook import write_results

    source = write_csv(tmp_path / "c.csv", [["1", "2", "Interested", "n", "Priya"]],
                       header=["callID", "logID", "disposition", "notes", "Agent"])
    table = load(source)
    source.write_text("something else entirely\n")
    path = write_results(table, RowResults(len(table)), [], reports_dir=tmp_path / "r", started=datetime.now(UTC))
    _, records, _ = read_results(path)
    assert [(r["callID"], r["notes"], r["Agent"], r["row"]) for r in records] == [("1", "n", None, 2)]


# -- a date where a call ID belongs -------------------------------------------------------------------


def _dated(path: Path) -> Path:
    """A workbook whose second call has a date in its callID cell (Excel turned `2026-11-30` into one)."""
    workbook = Workbook()
    sheet = workbook.active
    sheet.append(["callID", "logID", "disposition", "notes"])
    sheet.append(["7001", 1, "Interested", "a"])
    sheet.append([datetime(2026, 11, 30), 2, "Callback", "b"])
    workbook.save(path)
    return path


def test_a_date_in_the_callid_column_stays_invalid_when_the_workbook_is_given_back(cli, sim, tmp_path: Path) -> None:
    """The results workbook keeps the date as a date, so given back unfixed the row is invalid again, not
    sent as the call `2026-11-30`."""
    first = cli("run", _dated(tmp_path / "dated.xlsx"), *_base(sim), "--json")
    assert first.json()["counts"]["invalid"] == 1
    again = cli("run", first.json()["results"], *_base(sim), "--json")
    assert again.json()["counts"]["invalid"] == 1, again.err
    assert "is a date" in again.err and list(_sent(sim)) == ["7001"]
    # each later generation too: its input now has status and message columns before the callID
    third = cli("run", again.json()["results"], *_base(sim), "--json")
    assert third.json()["counts"]["invalid"] == 1, third.err
    cells = {sheet_row[2].row: sheet_row[2].value for sheet_row in load_workbook(third.json()["results"])["Results"]
             .iter_rows(min_row=2)}
    assert cells == {2: "7001", 3: datetime(2026, 11, 30)} and list(_sent(sim)) == ["7001"]


def test_a_date_callid_fixed_in_the_page_is_sent_as_typed(tmp_path: Path) -> None:
    """A callID typed over a date cell in the page is text: ready to send, not "is a date"."""
    table = load_table(_dated(tmp_path / "dated.xlsx"), Settings())
    decided = plan(table, Settings(), None, edits={3: {"callID": "7002"}})
    assert decided.results.status[1] is not Status.INVALID, decided.results.message[1]
    assert [call.call_id for call in decided.to_send] == ["7001", "7002"]


def test_excel_text_cells_in_a_csv_are_read_as_excel_shows_them(cli, sim, tmp_path: Path) -> None:
    """A CRM export that writes IDs as ="0054000001" (so Excel keeps the zeros) is sent as 0054000001, the
    text Excel shows, and the results workbook shows that text too."""
    source = tmp_path / "export.csv"
    source.write_text('Call ID,Log ID,Disposition,Remarks\n="0054000001",="1001",Interested,"said ""yes"""\n'
                      '="0054000002",1002,Callback,="a ""quoted"" word"\n ="0054000003" ,1003,Busy,\n',
                      encoding="utf-8")
    result = cli("run", source, *_base(sim), "--json")
    assert result.code == 0, result.err
    assert _sent(sim) == {"0054000001": {"logID": 1001, "dispositionName": "Interested", "notes": 'said "yes"'},
                          "0054000002": {"logID": 1002, "dispositionName": "Callback", "notes": 'a "quoted" word'},
                          "0054000003": {"logID": 1003, "dispositionName": "Busy", "notes": ""}}
    sheet = load_workbook(result.json()["results"])["Results"]
    assert [sheet.cell(row, 3).value for row in (2, 3)] == ["0054000001", "0054000002"]
