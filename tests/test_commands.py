"""The command line as people meet it: --help, `config` as a doctor for cron, `history`, and `| head`."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from batch_dispose.cli import main
from batch_dispose.ledger import Ledger
from batch_dispose.models import Status
from tests.conftest import TOKEN, rows_of, write_csv
from tests.test_docs import COMMANDS

ROOT = Path(__file__).resolve().parent.parent

#: Each command's own exit codes, as its --help must list them (and nothing more).
EXIT_CODES = {
    "run": {0, 1, 2, 3, 75, 130},
    "sweep": {0, 1, 2, 3, 75, 130},
    "validate": {0, 1, 2},
    "history": {0, 2},
    "config": {0, 1, 2},
    "simulate": {0, 2},
    "demo": {0, 1, 2},
    "resolve": {0, 2, 75},
    "serve": {0, 2},
}


def _help(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert main([*argv, "--help"]) == 0
    return capsys.readouterr().out


def _exit_codes_listed(text: str) -> set[int]:
    section = text.split("exit codes:\n", 1)[1]
    return {int(match) for match in re.findall(r"^\s+(\d+)\s+\S", section, re.MULTILINE)}


# --- --help ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", COMMANDS)
def test_each_commands_help_lists_its_own_exit_codes(capsys, monkeypatch, command: str) -> None:
    """`batch-dispose COMMAND --help` ends with that command's exit codes, not a table of codes it never returns."""
    monkeypatch.setenv("COLUMNS", "100")
    listed = _exit_codes_listed(_help(capsys, command))
    assert listed == EXIT_CODES.get(command, listed), f"{command} --help lists exit codes {sorted(listed)}"
    assert 0 in listed and 2 in listed


@pytest.mark.parametrize("argv", [[], *([command] for command in COMMANDS)], ids=lambda argv: " ".join(argv) or "-")
def test_help_is_wrapped_to_the_terminal_width(capsys, monkeypatch, argv: list[str]) -> None:
    """In an 80-column terminal no line of any --help is wider than 80 characters."""
    monkeypatch.setenv("COLUMNS", "80")
    text = _help(capsys, *argv)
    too_wide = [line for line in text.splitlines() if len(line) > 80]
    assert not too_wide, too_wide


@pytest.mark.parametrize("command", ["run", "validate", "sweep"])
def test_help_says_which_columns_are_needed_and_that_a_results_workbook_can_be_given_back(capsys, monkeypatch,
                                                                                        command: str) -> None:
    """The sending commands' --help names the four columns, the CRM names for notes, --column and re-runs."""
    monkeypatch.setenv("COLUMNS", "200")  # one paragraph a line: the phrases are not split
    text = " ".join(_help(capsys, command).split())
    for phrase in ("callID", "logID", "disposition", "notes", "Remarks", "Comments", "--column FIELD=HEADER",
                   "--no-notes", "results workbook"):
        assert phrase in text, f"{command} --help does not mention {phrase}"
    assert re.search(r"results workbook (can be given back|dropped into INBOX)", text)


@pytest.mark.parametrize(("command", "positional"), [("run", "FILE"), ("validate", "FILE"), ("sweep", "INBOX"),
                                                     ("history", "CALLID")])
def test_positional_arguments_are_described(capsys, monkeypatch, command: str, positional: str) -> None:
    """FILE..., INBOX and CALLID... each have a line of their own under "positional arguments"."""
    monkeypatch.setenv("COLUMNS", "120")
    text = _help(capsys, command)
    section = text.split("positional arguments:\n", 1)[1].split("\n\n", 1)[0]
    assert re.search(rf"^\s+{positional}\s+\S+", section, re.MULTILINE), section


@pytest.mark.parametrize("command", ["run", "sweep", "validate", "history", "config"])
def test_ledger_default_is_not_described_as_the_reports_folder(capsys, command: str) -> None:
    """The ledger belongs to the user: no --help says it lives in REPORTS_DIR."""
    text = _help(capsys, command)
    assert "REPORTS_DIR" not in text and "reports/ledger.sqlite" not in text


# --- config: the doctor ----------------------------------------------------------------------------------------


def _good_setup(tmp_path: Path) -> Path:
    """A cron setup as the README describes it: a config file, a private token file, a dispositions file."""
    etc = tmp_path / "srv"
    (etc / "secrets").mkdir(parents=True)
    token = etc / "secrets" / "ryng-token"
    token.write_text(TOKEN + "\n", encoding="utf-8")
    token.chmod(0o600)
    (etc / "dispositions.txt").write_text("Interested\nCallback\n", encoding="utf-8")
    config = etc / "batch-dispose.toml"
    config.write_text('subdomain = "acme"\ntoken_file = "secrets/ryng-token"\nreports_dir = "reports"\n'
                      'ledger = "state/ledger.sqlite"\ndispositions = "dispositions.txt"\n', encoding="utf-8")
    return config


def test_config_passes_on_a_good_cron_setup_and_creates_nothing(cli, tmp_path: Path) -> None:
    """With the token file private, the dispositions readable and the folders creatable, every check is ok, exit 0,
    and the check itself creates no folder or ledger."""
    config = _good_setup(tmp_path)
    result = cli("config", "--config", config, token=None)
    assert result.code == 0, result.out
    checks = [line for line in result.out.splitlines() if line.startswith("  ")]
    assert {line.split()[1].rstrip(":") for line in checks} == {"token", "dispositions", "ledger", "reports_dir",
                                                                "base_url"}
    assert all(line.split()[0] == "ok" for line in checks), checks
    assert "all checks passed" in result.out
    assert TOKEN not in result.out + result.err
    assert not (config.parent / "reports").exists() and not (config.parent / "state").exists()


def test_config_json_has_real_booleans_and_opens_an_existing_ledger(cli, sim, tmp_path: Path) -> None:
    """`config --json` gives each check as {"ok": true|false, "message"}, and an existing ledger is opened."""
    config = _good_setup(tmp_path)
    with config.open("a", encoding="utf-8") as file:  # the simulator instead of acme.ryng.in
        file.write(f'base_url = "{sim.base_url}"\n')
    config.write_text(config.read_text(encoding="utf-8").replace('subdomain = "acme"\n', ""), encoding="utf-8")
    source = write_csv(tmp_path / "calls.csv", rows_of(2))
    assert cli("run", source, "--config", config, token=None).code == 0
    result = cli("config", "--config", config, "--json", token=None)
    assert result.code == 0, result.out
    answer = result.json()
    assert answer["ok"] is True and answer["exit_code"] == 0
    assert all(check["ok"] is True for check in answer["checks"].values())
    assert "1 run recorded" in answer["checks"]["ledger"]["message"]


def _breaks(name: str, config: Path) -> tuple[str, str]:
    """Break one thing in a good setup; returns (the check that must fail, a word its message must hold)."""
    etc = config.parent
    if name == "token file readable by others":
        (etc / "secrets" / "ryng-token").chmod(0o644)
        return "token", "chmod 600"
    if name == "token file missing":
        (etc / "secrets" / "ryng-token").unlink()
        return "token", "does not exist"
    if name == "dispositions file missing":
        (etc / "dispositions.txt").unlink()
        return "dispositions", "dispositions.txt"
    if name == "dispositions file empty":
        (etc / "dispositions.txt").write_text("# none yet\n\n", encoding="utf-8")
        return "dispositions", "no names"
    if name == "reports dir is a file":
        (etc / "reports").write_text("not a folder", encoding="utf-8")
        return "reports_dir", "is a file"
    if name == "ledger folder cannot be made":  # as root, chmod cannot stop a write: a file in the path can
        (etc / "state").write_text("a file where the ledger's folder should be", encoding="utf-8")
        return "ledger", "state"
    if name == "ledger is damaged":
        (etc / "state").mkdir()
        (etc / "state" / "ledger.sqlite").write_bytes(b"this is not an SQLite database at all" * 200)
        return "ledger", "ledger.sqlite"
    if name == "ledger is empty":
        (etc / "state").mkdir()
        (etc / "state" / "ledger.sqlite").write_bytes(b"")
        return "ledger", "empty"
    if name == "no account":
        config.write_text(config.read_text(encoding="utf-8").replace('subdomain = "acme"\n', ""), encoding="utf-8")
        return "base_url", "subdomain"
    raise AssertionError(name)


@pytest.mark.parametrize("broken", ["token file readable by others", "token file missing", "dispositions file missing",
                                    "dispositions file empty", "reports dir is a file", "ledger folder cannot be made",
                                    "ledger is damaged", "ledger is empty", "no account"])
def test_config_names_each_broken_item_and_how_to_fix_it(cli, tmp_path: Path, broken: str) -> None:
    """One broken thing in a cron setup: exit 1, its check FAILED with a sentence naming it, every other check ok."""
    config = _good_setup(tmp_path)
    check, word = _breaks(broken, config)
    ledger = config.parent / "state" / "ledger.sqlite"
    before = ledger.read_bytes() if ledger.is_file() else None
    text = cli("config", "--config", config, token=None)
    assert text.code == 1, text.out
    failed = [line for line in text.out.splitlines() if line.startswith("  FAILED")]
    assert len(failed) == 1 and failed[0].split()[1] == f"{check}:", failed
    assert word in failed[0]
    assert "1 check failed" in text.out and "Traceback" not in text.out + text.err
    answer = cli("config", "--config", config, "--json", token=None).json()
    assert answer["ok"] is False and answer["exit_code"] == 1
    assert {name for name, state in answer["checks"].items() if state["ok"] is False} == {check}
    assert (ledger.read_bytes() if ledger.is_file() else None) == before  # looking changes nothing


def test_config_without_a_token_file_or_variable_says_how_to_set_one(cli, tmp_path: Path) -> None:
    """No token file and no RYNG_ACCESS_TOKEN: the token check fails and names both ways to give one."""
    answer = cli("config", "--subdomain", "acme", "--json", token=None).json()
    assert answer["checks"]["token"]["ok"] is False
    assert "RYNG_ACCESS_TOKEN" in answer["checks"]["token"]["message"]
    assert "token_file" in answer["checks"]["token"]["message"]
    assert cli("config", "--subdomain", "acme", "--json").json()["checks"]["token"]["ok"] is True


# --- history ---------------------------------------------------------------------------------------------------


def _two_runs(cli, simulator, tmp_path: Path) -> str:  # type: ignore[no-untyped-def]
    sim = simulator(scripts={"1001": [500]})
    source = write_csv(tmp_path / "calls.csv", rows_of(3))
    cli("run", source, "--base-url", sim.base_url)
    cli("run", source, "--base-url", sim.base_url)
    return sim.base_url


def test_history_shows_runs_with_readable_counts(cli, simulator, tmp_path: Path) -> None:
    """`history` lists each run as "2 disposed, 1 failed", not a raw JSON dict."""
    _two_runs(cli, simulator, tmp_path)
    result = cli("history")
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("run 2 ") and "1 disposed, 2 skipped  (workbook calls-results-" in lines[0]
    assert lines[1].startswith("run 1 ") and "2 disposed, 1 failed  (workbook calls-results-" in lines[1]
    assert "{" not in result.out
    runs = cli("history", "--json").json()["runs"]
    assert all(Path(run["results"]).is_file() and Path(run["results"]).parent == tmp_path / "reports" for run in runs)


def test_history_json_has_real_numbers(cli, simulator, tmp_path: Path) -> None:
    """`history --json` gives counts as an object of ints and ids, rows and HTTP statuses as numbers."""
    _two_runs(cli, simulator, tmp_path)
    runs = cli("history", "--json").json()["runs"]
    assert [run["id"] for run in runs] == [2, 1]
    assert {status: n for status, n in runs[1]["counts"].items() if n} == {"disposed": 2, "failed": 1}
    assert all(isinstance(value, int) for run in runs for value in run["counts"].values())
    calls = cli("history", "1001", "--json").json()["calls"]
    events = calls["1001"]["events"]
    assert [event["status"] for event in events] == ["disposed", "failed"]
    assert all(isinstance(event[key], int) for event in events for key in ("run_id", "row", "http_status"))


def test_history_limit_bounds_the_runs_and_the_outcomes_listed(cli, simulator, tmp_path: Path) -> None:
    """--limit 1 lists the newest run (and says there are more), and one outcome per call."""
    _two_runs(cli, simulator, tmp_path)
    runs = cli("history", "--limit", "1")
    assert runs.out.splitlines()[0].startswith("run 2 ") and "--limit N shows more" in runs.out
    assert cli("history", "--limit", "1", "--json").json()["more_runs"] is True
    call = cli("history", "1001", "--limit", "1", "--json").json()["calls"]["1001"]
    assert [event["status"] for event in call["events"]] == ["disposed"] and call["more_events"] is True
    bad = cli("history", "--limit", "0")
    assert bad.code == 2 and "--limit" in bad.err


def test_history_of_an_unknown_call_is_one_line(cli, simulator, tmp_path: Path) -> None:
    """A call ID the ledger has never seen gets one line saying so, exit 0; --json says known: false."""
    _two_runs(cli, simulator, tmp_path)
    result = cli("history", "424242")
    assert result.code == 0
    assert result.out.strip().splitlines() == ["424242: the ledger has no record of this call ID"]
    assert cli("history", "424242", "--json").json()["calls"]["424242"]["known"] is False


def test_history_of_a_call_typed_in_the_wrong_case_names_the_one_the_ledger_knows(cli, sim, tmp_path: Path) -> None:
    """`history ab-12` when the ledger knows AB-12 says so, instead of only "no record" (call IDs are
    case-sensitive; a person typing one often is not)."""
    source = write_csv(tmp_path / "calls.csv", [["AB-12", 5000, "Interested", ""], ["ab-12x", 5001, "Interested", ""]])
    assert cli("run", source, "--base-url", sim.base_url).code == 0
    assert cli("history", "ab-12").out.strip().splitlines() == [
        "ab-12: the ledger has no record of this call ID (call IDs are case-sensitive: it knows AB-12)"]
    assert cli("history", "ab-12", "--json").json()["calls"]["ab-12"]["alike"] == ["AB-12"]
    assert cli("history", "AB-12", "--json").json()["calls"]["AB-12"]["alike"] == []


def test_history_of_a_run_lists_its_outcomes(cli, simulator, tmp_path: Path) -> None:
    """`history --run 1` lists the outcomes that run recorded, with file and row."""
    _two_runs(cli, simulator, tmp_path)
    result = cli("history", "--run", "1")
    assert result.code == 0
    assert len(result.out.splitlines()) == 3 and "calls.csv row 3  1001: failed (500)" in result.out


def test_history_without_a_ledger_says_where_it_looked(cli, tmp_path: Path) -> None:
    """No ledger yet: exit 2 and one sentence naming the path, with no new ledger made by looking."""
    result = cli("history", "--ledger", tmp_path / "none" / "ledger.sqlite")
    assert result.code == 2 and "none/ledger.sqlite" in result.err and len(result.err.splitlines()) == 1
    assert not (tmp_path / "none").exists()


# --- a reader that goes away -------------------------------------------------------------------------------------


@pytest.fixture
def long_history(tmp_path: Path) -> Path:
    """A ledger with 400 finished runs of long file names: `history --limit 400` prints more than a pipe holds."""
    path = tmp_path / "ledger.sqlite"
    with Ledger.open(path) as ledger:
        for n in range(400):
            name = f"end-of-day-export-from-the-crm-{n:04}-" + "x" * 160 + ".csv"
            run_id = ledger.begin_run("https://acme.ryng.in", tmp_path / name, "0" * 64)
            ledger.end_run(run_id, {Status.DISPOSED: 40, Status.FAILED: 2})
    return path


def test_history_into_head_ends_quietly(long_history: Path) -> None:
    """`batch-dispose history | head -1` prints one line and ends with exit 0, no traceback, no "Exception ignored"."""
    command = (f"{sys.executable} -m batch_dispose history --limit 400 --ledger {long_history} | head -1; "
               f"echo \"exit=${{PIPESTATUS[0]}}\" >&2")
    done = subprocess.run(["bash", "-c", command], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.stdout.startswith("run 400 ") and len(done.stdout.splitlines()) == 1
    assert done.stderr.strip() == "exit=0", done.stderr


@pytest.mark.parametrize("argv", [["history", "--json"], ["config", "--subdomain", "acme"], ["--help"]],
                         ids=lambda argv: argv[0])
def test_a_pipe_closed_before_anything_is_written_ends_quietly(long_history: Path, tmp_path: Path,
                                                              argv: list[str]) -> None:
    """A reader that closes at once (`| true`): no traceback on stderr, and the command's own exit code (0)."""
    extra = ["--ledger", str(long_history)] if argv[0] == "history" else []
    process = subprocess.Popen([sys.executable, "-m", "batch_dispose", *argv, *extra], cwd=tmp_path,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONPATH": str(ROOT), "RYNG_ACCESS_TOKEN": TOKEN})
    assert process.stdout is not None
    process.stdout.close()  # before the interpreter has even started
    _, err = process.communicate(timeout=60)
    assert "Traceback" not in err and "Exception ignored" not in err and "BrokenPipe" not in err, err
    assert process.returncode == 0, err


def test_history_json_is_one_object_even_when_long(long_history: Path, cli) -> None:
    """`history --json --limit 400` is one JSON object with 400 runs of integer counts."""
    answer = cli("history", "--json", "--limit", "400", "--ledger", long_history).json()
    assert len(answer["runs"]) == 400 and answer["more_runs"] is False
    assert {status: n for status, n in answer["runs"][0]["counts"].items() if n} == {"disposed": 40, "failed": 2}
    json.dumps(answer)


@pytest.mark.parametrize("argv", [["--token", "s3cr3t-value", "run", "calls.csv"],
                                  ["--token=s3cr3t-value", "validate", "calls.csv"],
                                  ["run", "calls.csv", "--token", "s3cr3t-value"],
                                  ["--token", "s3cr3t-value", "simulate"]], ids=lambda argv: " ".join(argv))
def test_a_token_on_the_command_line_is_refused_without_echoing_it(cli, argv: list[str]) -> None:
    """`--token X` anywhere but after `simulate` exits 2 with a sentence, and X is printed nowhere."""
    result = cli(*argv)
    assert result.code == 2
    assert "RYNG_ACCESS_TOKEN" in result.err and "s3cr3t" not in result.out + result.err


def test_history_shows_what_was_sent_for_a_call(cli, sim, tmp_path: Path) -> None:
    """`history CALLID` shows the logID, disposition and notes that were sent (with a ledger that keeps them)."""
    source = write_csv(tmp_path / "calls.csv", rows_of(1))
    assert cli("run", source, "--base-url", sim.base_url).code == 0
    call = cli("history", "1000", "--json").json()["calls"]["1000"]
    if call["hosts"][0]["sent"] is None:
        pytest.skip("this ledger does not keep what was sent yet (schema 1)")
    assert call["hosts"][0]["sent"] == {"logID": 5000, "disposition": "Interested", "notes": "note 0"}
    assert 'last sent: logID 5000, disposition Interested, notes "note 0"' in cli("history", "1000").out


def test_history_lines_name_what_was_sent() -> None:
    """What was sent reads as `logID 5000, disposition Interested, notes "…"`, under the call's state line."""
    from batch_dispose.history import CallRecord, HostState, call_lines

    state = HostState("https://acme.ryng.in", "disposed", "2026-11-27T16:07:00.123Z",
                      {"logID": 5000, "disposition": "Interested", "notes": 'said "call back"'})
    lines = call_lines([CallRecord("1000", (state,), (), False)], limit=20)
    assert lines[0].startswith("1000 on https://acme.ryng.in: disposed (disposed at 2026-11-27 ")
    assert lines[1] == '  last sent: logID 5000, disposition Interested, notes "said \\"call back\\""'


def test_history_says_when_a_run_that_died_was_found_in_local_time() -> None:
    """A run killed mid-way is listed as "did not finish (died before 2026-11-30 13:04:39 +0000)", in the local
    time every other line uses, not the ledger's raw UTC text."""
    from batch_dispose.history import RunRecord, run_lines

    died = RunRecord(7, "https://acme.ryng.in", "/in/calls.csv", "2026-11-30T13:00:00.000Z",
                     "died before 2026-11-30T13:04:39.695Z", None)
    (line,) = run_lines([died], more=False, limit=20)
    assert re.search(r"did not finish \(died before 2026-11-30 \d\d:\d\d:39 [+-]\d{4}\)$", line), line


def test_run_prints_each_files_summary_when_that_file_ends(simulator, tmp_path: Path) -> None:
    """`run A B`: A's summary and results path are on stderr while B is still being sent, not only at the end."""
    sim = simulator(latency_ms=150)
    first = write_csv(tmp_path / "first.csv", rows_of(2))
    second = write_csv(tmp_path / "second.csv", rows_of(10, start=5000))
    argv = [sys.executable, "-m", "batch_dispose", "run", first, second, "--base-url", sim.base_url,
            "--concurrency", "1"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RYNG_ACCESS_TOKEN": TOKEN}
    with subprocess.Popen(argv, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                          env=env) as process:
        assert process.stderr is not None
        for line in process.stderr:
            if line.startswith("results:") and "first-results-" in line:
                break
        sent_of_second = sum(1 for call_id in sim.stats.disposed if call_id.startswith("50"))
        rest = process.stderr.read()
    assert sent_of_second < 10, "first.csv's summary came only after second.csv was sent"
    assert "second.csv: 10 rows: 10 disposed" in rest and process.returncode == 0
