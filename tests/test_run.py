"""`batch-dispose run` end to end: real files, the real simulator on loopback, the workbook read back."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from openpyxl import load_workbook

from tests.conftest import HEADER, TOKEN, read_results, rows_of, write_csv, write_xlsx

NOTES = [
    "Line one\nLine two",
    'He said "call me", then hung up, twice',
    "ग्राहक ने प्रीमियम योजना में रुचि दिखाई",
    "Great call 👍🏽 — follow up",
    "=HYPERLINK(\"http://evil.example\",\"click\")",
    "+1 555 0100",
    "-5 minutes late",
    "@mention the supervisor",
    "\tstarts with a tab",
]


def _base(sim) -> list[str]:  # type: ignore[no-untyped-def]
    return ["--base-url", sim.base_url]


def test_each_valid_row_is_one_patch_with_token_and_numeric_log_id(cli, sim, tmp_path: Path) -> None:
    """Every valid row becomes exactly one PATCH on the end-call route with the token and a JSON number logID."""
    rows = [[f"C{n}", f"{87000 + n}.0" if n % 2 else 87000 + n, "Interested", NOTES[n]] for n in range(len(NOTES))]
    source = write_xlsx(tmp_path / "calls.xlsx", rows)
    result = cli("run", source, *_base(sim), "--json")
    assert result.code == 0, result.err
    recorded = sim.stats.recorded
    assert sorted(r.call_id for r in recorded) == sorted(f"C{n}" for n in range(len(NOTES)))
    for request in recorded:
        n = int(request.call_id[1:])
        assert request.method == "PATCH"
        assert request.raw_path == f"/rest-api/v1/preview/call/C{n}"
        assert request.headers["x-access-token"] == TOKEN
        body = json.loads(request.body)
        assert set(body) == {"logID", "dispositionName", "notes"}
        assert body["logID"] == 87000 + n and type(body["logID"]) is int
        assert body["notes"] == NOTES[n].strip()
    assert sim.stats.off_route == 0


def test_invalid_rows_are_never_sent_and_valid_ones_still_go(cli, sim, tmp_path: Path) -> None:
    """Invalid rows produce no request; the valid rows of the same file are still sent."""
    rows = [["A1", 1, "Interested", ""], ["bad id", 2, "Interested", ""], ["A3", "2.5", "Callback", ""],
            ["A4", 4, "", ""], ["A5", 5, "DNC", "ok"], ["A1", 6, "Interested", "dup"]]
    source = write_csv(tmp_path / "calls.csv", rows)
    result = cli("run", source, *_base(sim), "--json")
    assert result.code == 1
    assert sorted(sim.stats.received) == ["A1", "A5"]
    assert sim.stats.received["A1"] == 1
    _, records, summary = read_results(Path(result.json()["results"]))
    assert [r["status"] for r in records] == ["disposed", "invalid", "invalid", "invalid", "disposed", "invalid"]
    assert "space" in records[1]["message"]
    assert "'2.5' is not a whole number" in records[2]["message"]
    assert "disposition is blank" in records[3]["message"]
    assert "duplicate of row 2" in records[5]["message"]
    assert summary["disposed"] == 2 and summary["invalid"] == 4 and summary["Rows"] == 6


def test_results_workbook_keeps_every_row_in_order_with_input_columns(cli, simulator, tmp_path: Path) -> None:
    """The Results sheet lists every input row at its own line: status and message first, then its own
    columns, then row, http_status, attempts and finished_at (local time with its offset)."""
    sim = simulator(fail_ids=frozenset({"B2"}))
    header = ["Agent", "Call ID", "Log ID", "Disposition", "Notes", "Customer"]
    rows = [["Priya", "B1", 1, "Interested", "n1", "R. Sharma"],
            ["Rahul", "B2", 2, "Callback", "n2", "A. Khan"],
            ["", "", "", "", "", ""],
            ["Anita", "B3", "x", "DNC", "n3", "S. Iyer"]]
    source = write_csv(tmp_path / "day.csv", rows, header=header)
    result = cli("run", source, *_base(sim), "--json")
    headers, records, summary = read_results(Path(result.json()["results"]))
    assert headers == ["status", "message", *header, "row", "http_status", "attempts", "finished_at"]
    assert [r["Call ID"] for r in records] == ["B1", "B2", "B3"]
    assert [r["row"] for r in records] == [2, 3, 5]  # the blank row 4 is left out, not renumbered
    assert [r["status"] for r in records] == ["disposed", "failed", "invalid"]
    assert records[0]["http_status"] == 200 and records[0]["attempts"] == 1
    assert records[1]["http_status"] == 500 and "Failed to dispose of call." in records[1]["message"]
    assert records[2]["attempts"] == 0 and records[2]["http_status"] is None
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d", records[0]["finished_at"])
    counted = sum(v for k, v in summary.items() if k in {"disposed", "skipped", "unauthorized", "failed",
                                                          "invalid", "pending", "unknown"})
    assert counted == summary["Rows"] == 3
    assert summary["Ryng host"] == sim.base_url
    assert len(summary["Input SHA-256"]) == 64


def test_workbook_never_holds_a_formula_and_notes_read_back_exactly(cli, sim, tmp_path: Path) -> None:
    """Text starting with = + - @ or a tab is stored as text, exactly as it was, in every column."""
    rows = [[f"F{n}", n + 1, "Interested", note] for n, note in enumerate(NOTES)]
    header = [*HEADER]
    source = write_xlsx(tmp_path / "f.xlsx", [[*row, "=1+1"] for row in rows], header=[*header, "=Extra"])
    result = cli("run", source, *_base(sim), "--json")
    workbook = load_workbook(Path(result.json()["results"]))
    for sheet in workbook.worksheets:
        for line in sheet.iter_rows():
            for cell in line:
                assert cell.data_type != "f", f"{sheet.title}!{cell.coordinate} is a formula"
    values = list(workbook["Results"].iter_rows(values_only=True))
    workbook.close()
    assert values[0][6] == "=Extra"  # status, message, then the input's columns
    assert [row[5] for row in values[1:]] == NOTES
    assert all(row[6] == "=1+1" for row in values[1:])


def test_control_characters_are_replaced_visibly_and_the_message_says_so(cli, sim, tmp_path: Path) -> None:
    """A note holding characters a workbook cannot hold is still written, shown with visible symbols."""
    source = write_csv(tmp_path / "c.csv", [["K1", 1, "Interested", "bell\x07 and nul\x00 here"]])
    result = cli("run", source, *_base(sim), "--json")
    assert result.code == 0
    assert json.loads(sim.stats.recorded[0].body)["notes"] == "bell\x07 and nul\x00 here"
    _, records, _ = read_results(Path(result.json()["results"]))
    assert records[0]["notes"] == "bell\u2407 and nul\u2400 here"
    assert "2 characters" in records[0]["message"]


@pytest.mark.parametrize("content, problem", [
    (b"", "is empty"),
    (b"callID,logID,disposition,notes\n", "no calls under it"),
    (b"\x89PNG\r\n\x1a\n" + bytes(200), "binary"),
    (b"name,phone\nPriya,123\n", "'callID' and 'logID' and 'disposition' are missing"),
])
def test_unusable_csv_is_one_line_exit_2_and_nothing_sent(cli, sim, tmp_path: Path, content: bytes,
                                                          problem: str) -> None:
    """A file that cannot be used gets one stderr line naming it, exit 2, no request, no traceback."""
    source = tmp_path / "bad.csv"
    source.write_bytes(content)
    result = cli("run", source, *_base(sim))
    assert result.code == 2
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and "bad.csv" in lines[0] and problem in lines[0]
    assert "Traceback" not in result.err
    assert sim.stats.requests == 0


@pytest.mark.parametrize("name, content", [
    ("corrupt.xlsx", b"PK\x03\x04" + bytes(100)),
    ("text.xlsx", b"callID,logID\n1,2\n"),
    ("page.xls", b"<html><table><tr><td>callID</td></tr></table></html>"),
    ("notes.ods", b"hello"),
    ("calls.pdf", b"%PDF-1.4"),
    ("missing.xlsx", None),
])
def test_unusable_workbooks_exit_2_naming_the_file(cli, sim, tmp_path: Path, name: str, content: bytes | None) -> None:
    """Corrupt, mis-named, missing or unsupported files exit 2 with a sentence naming the file."""
    source = tmp_path / name
    if content is not None:
        source.write_bytes(content)
    result = cli("run", source, *_base(sim), "--json")
    assert result.code == 2
    assert name in result.err and "Traceback" not in result.err
    assert result.json() == {"error": result.json()["error"], "exit_code": 2}
    assert sim.stats.requests == 0


def test_header_only_workbook_exits_2(cli, sim, tmp_path: Path) -> None:
    """A workbook with a header and no rows is unusable: exit 2, nothing sent."""
    source = write_xlsx(tmp_path / "empty.xlsx", [])
    result = cli("run", source, *_base(sim))
    assert result.code == 2 and "no calls under it" in result.err
    assert sim.stats.requests == 0


def test_wrong_token_stops_after_three_403s_rest_pending_exit_3(cli, sim, tmp_path: Path) -> None:
    """With a rejected token the run stops after 3 consecutive 403s; unsent rows are pending; exit 3."""
    source = write_csv(tmp_path / "calls.csv", rows_of(200))
    result = cli("run", source, *_base(sim), "--json", "--concurrency", "4", token="wrong-token")
    assert result.code == 3
    summary = result.json()
    assert summary["exit_code"] == 3
    assert summary["counts"]["unauthorized"] == sim.stats.route_requests <= 4
    assert summary["counts"]["pending"] == 200 - summary["counts"]["unauthorized"]
    assert "rejected the access token" in result.err
    _, records, _ = read_results(Path(summary["results"]))
    assert {r["status"] for r in records[10:]} == {"pending"}
    assert "not sent" in records[-1]["message"]


def test_exit_code_0_when_all_disposed_and_json_is_the_only_stdout(cli, sim, tmp_path: Path) -> None:
    """All rows disposed: exit 0, and stdout holds exactly one JSON object with the contract's keys."""
    source = write_csv(tmp_path / "calls.csv", rows_of(25))
    result = cli("run", source, *_base(sim), "--json")
    assert result.code == 0
    summary = json.loads(result.out)  # the whole of stdout parses as one object
    assert set(summary) == {"results", "rows", "counts", "duration_s", "exit_code"}
    assert summary["rows"] == 25 and summary["counts"]["disposed"] == 25 and summary["exit_code"] == 0
    assert Path(summary["results"]).is_file()
    assert Path(summary["results"]).parent == tmp_path / "reports"


def test_server_failure_makes_exit_1_and_keeps_the_servers_message(cli, simulator, tmp_path: Path) -> None:
    """A 500 fails the row with the server's message and the run exits 1."""
    sim = simulator(fail_ids=frozenset({"1003"}))
    source = write_csv(tmp_path / "calls.csv", rows_of(5))
    result = cli("run", source, *_base(sim), "--json")
    assert result.code == 1
    assert result.json()["counts"] == {"disposed": 4, "skipped": 0, "unauthorized": 0, "failed": 1,
                                       "invalid": 0, "pending": 0, "unknown": 0}


def test_results_workbook_fed_back_sends_only_what_is_left(cli, simulator, tmp_path: Path) -> None:
    """Re-running the results workbook sends only failed/invalid rows (fixed by hand), never the disposed."""
    sim = simulator(scripts={"1001": [500]})
    source = write_csv(tmp_path / "calls.csv", [*rows_of(3), ["1003", "x", "Interested", "fix me"]])
    first = cli("run", source, *_base(sim), "--json").json()
    assert first["counts"]["disposed"] == 2 and first["counts"]["failed"] == 1 and first["counts"]["invalid"] == 1
    workbook = load_workbook(first["results"])
    sheet = workbook["Results"]
    sheet["D5"] = "5003"  # fix the invalid logID by hand, as ops staff would
    fixed = tmp_path / "fixed.xlsx"
    workbook.save(fixed)
    second = cli("run", fixed, *_base(sim), "--json", "--ledger", tmp_path / "other-ledger.sqlite")
    assert second.code == 0, second.err
    assert sim.stats.received == {"1000": 1, "1001": 2, "1002": 1, "1003": 1}
    headers, records, _ = read_results(Path(second.json()["results"]))
    assert headers.count("status") == 1 and headers.count("row") == 1
    assert [r["status"] for r in records] == ["skipped", "disposed", "skipped", "disposed"]


def test_several_files_take_the_sweep_json_shape(cli, sim, tmp_path: Path) -> None:
    """`run A B` runs each file with its own workbook; an unusable one does not stop the others."""
    good = write_csv(tmp_path / "a.csv", rows_of(3))
    bad = tmp_path / "b.csv"
    bad.write_bytes(b"")
    other = write_csv(tmp_path / "c.csv", rows_of(2, start=2000))
    result = cli("run", good, bad, other, *_base(sim), "--json")
    summary = result.json()
    assert result.code == summary["exit_code"] == 1
    assert [Path(f["file"]).name for f in summary["files"]] == ["a.csv", "b.csv", "c.csv"]
    assert [f["exit_code"] for f in summary["files"]] == [0, 2, 0]
    assert summary["files"][1]["results"] is None and "empty" in summary["files"][1]["error"]
    assert sim.stats.route_requests == 5


def test_token_never_appears_in_output_workbook_or_ledger(cli, simulator, tmp_path: Path) -> None:
    """The token is in the request header and nowhere else: not stdout, stderr, workbook or ledger."""
    canary = "CANARY-7d1e0f5b2a"
    sim = simulator(token=canary, scripts={"1001": [500], "1002": [403]})
    source = write_csv(tmp_path / "calls.csv", rows_of(4))
    result = cli("run", source, *_base(sim), "--json", token=canary)
    assert all(r.headers["x-access-token"] == canary for r in sim.stats.recorded)
    assert canary not in result.out and canary not in result.err
    for written in tmp_path.rglob("*"):
        if written.is_file() and written != source:
            assert canary.encode() not in written.read_bytes(), written


def test_validate_sends_nothing_and_marks_ready_or_invalid(cli, sim, tmp_path: Path) -> None:
    """`validate` writes ready/invalid rows, shows requests with the token masked, and sends nothing."""
    source = write_csv(tmp_path / "calls.csv", [*rows_of(4), ["bad id", 1, "X", ""]])
    result = cli("validate", source, *_base(sim), "--json")
    assert result.code == 1
    assert result.json()["counts"] == {"ready": 4, "skipped": 0, "unknown": 0, "invalid": 1}
    assert sim.stats.requests == 0
    assert "PATCH " + sim.base_url + "/rest-api/v1/preview/call/1000" in result.err
    assert "x-access-token: ********" in result.err and TOKEN not in result.err
    _, records, _ = read_results(Path(result.json()["results"]))
    assert [r["status"] for r in records] == ["ready"] * 4 + ["invalid"]


def test_token_on_the_command_line_is_refused(cli, sim, tmp_path: Path) -> None:
    """`--token VALUE` is refused without echoing the value; the token only comes from env or a file."""
    source = write_csv(tmp_path / "calls.csv", rows_of(1))
    result = cli("run", source, *_base(sim), "--token=s3cret-value", token=None)
    assert result.code == 2 and "never taken from the command line" in result.err
    assert "s3cret-value" not in result.err + result.out
    assert sim.stats.requests == 0


def test_token_file_is_read_and_a_world_readable_one_warns(cli, sim, tmp_path: Path) -> None:
    """--token-file supplies the token; a file others can read gets a warning naming chmod 600."""
    token_file = tmp_path / "token.txt"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o644)
    source = write_csv(tmp_path / "calls.csv", rows_of(2))
    result = cli("run", source, *_base(sim), "--token-file", token_file, token=None)
    assert result.code == 0
    assert "chmod 600" in result.err


def test_missing_token_is_a_usage_error(cli, sim, tmp_path: Path) -> None:
    """No token anywhere: exit 2 with a sentence saying where to put it; nothing sent."""
    source = write_csv(tmp_path / "calls.csv", rows_of(1))
    result = cli("run", source, *_base(sim), token=None)
    assert result.code == 2 and "RYNG_ACCESS_TOKEN" in result.err
    assert sim.stats.requests == 0


@pytest.mark.parametrize("args, fragment", [
    (["--base-url", "http://example.com"], "plain http://"),
    (["--subdomain", "bad_name!"], "not a valid subdomain"),
    ([], "--subdomain"),
    (["--base-url", "http://127.0.0.1:1", "--concurrency", "0"], "--concurrency must be between"),
])
def test_bad_target_or_options_are_usage_errors(cli, tmp_path: Path, args: list[str], fragment: str) -> None:
    """Plain http to a remote host, a malformed subdomain, no target or a bad number: exit 2."""
    source = write_csv(tmp_path / "calls.csv", rows_of(1))
    result = cli("run", source, *args)
    assert result.code == 2 and fragment in result.err


def test_strict_sends_nothing_when_any_row_is_invalid(cli, sim, tmp_path: Path) -> None:
    """--strict with an invalid row: nothing is sent, valid rows are pending, exit 1."""
    source = write_csv(tmp_path / "calls.csv", [*rows_of(3), ["", 1, "X", ""]])
    result = cli("run", source, *_base(sim), "--strict", "--json")
    assert result.code == 1
    assert result.json()["counts"]["pending"] == 3 and result.json()["counts"]["invalid"] == 1
    assert sim.stats.requests == 0


def test_dispositions_allow_list_sends_the_lists_spelling(cli, sim, tmp_path: Path) -> None:
    """With --dispositions, names match ignoring case and are sent in the list's spelling; others invalid."""
    allowed = tmp_path / "dispositions.txt"
    allowed.write_text("Interested\nNot Interested\nCallback\n")
    source = write_csv(tmp_path / "calls.csv", [["D1", 1, "interested", ""], ["D2", 2, "NOT INTERESTED", ""],
                                                ["D3", 3, "Intrested", ""]])
    result = cli("run", source, *_base(sim), "--dispositions", allowed, "--json")
    assert result.code == 1
    sent = {r.call_id: json.loads(r.body)["dispositionName"] for r in sim.stats.recorded}
    assert sent == {"D1": "Interested", "D2": "Not Interested"}
    _, records, _ = read_results(Path(result.json()["results"]))
    assert "did you mean 'Interested'" in records[2]["message"]


def test_python_dash_m_and_help_list_every_command(cli) -> None:
    """`--help` names every command and the exit codes."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "batch_dispose", "--help"], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0
    for command in ("run", "validate", "simulate", "demo"):
        assert command in done.stdout
    assert "75" in done.stdout and "RYNG_ACCESS_TOKEN" in done.stdout
