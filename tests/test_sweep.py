"""`batch-dispose sweep INBOX`: the cron job's command, on real inbox folders and the real simulator."""

from __future__ import annotations

import asyncio
import io
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from batch_dispose.credentials import Secret
from batch_dispose.ledger import Ledger
from batch_dispose.models import Activity, Status
from batch_dispose.progress import LineReporter
from batch_dispose.runner import ahead_for
from batch_dispose.settings import Settings
from batch_dispose.sweep import sweep
from tests.conftest import TOKEN, default_ledger, free_port, read_results, rows_of, write_csv, write_xlsx

SPREADSHEETS = (".csv", ".xlsx", ".xls", ".ods")
PROGRESS_BAR_MARKS = ("\r", "it/s", "%|")


def _age(*paths: Path, seconds: float = 120.0) -> None:
    """Make files look settled (last changed well over 10 seconds ago)."""
    then = time.time() - seconds
    for path in paths:
        os.utime(path, (then, then))


def _names(folder: Path) -> set[str]:
    return {path.name for path in folder.iterdir()} if folder.is_dir() else set()


def _spreadsheets_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.is_file() and p.suffix in SPREADSHEETS)


def _wait_for(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.005)


def _statuses(results: str | Path) -> dict[str, str]:
    return {str(r["callID"]): str(r["status"]) for r in read_results(Path(results))[1]}


# --- one sweep over a mixed inbox -------------------------------------------------------------------------


def test_mixed_inbox_is_run_filed_and_reported_in_one_sweep(cli, sim, tmp_path: Path) -> None:
    """Good and invalid-row files go to done/, a corrupt one to rejected/ with a reason, a fresh one waits; exit 1."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    good_csv = write_csv(inbox / "a-good.csv", rows_of(3, start=1000))
    good_xlsx = write_xlsx(inbox / "b-good.xlsx", rows_of(3, start=2000))
    invalid = write_csv(inbox / "c-invalid.csv", [*rows_of(2, start=3000), ["3002", "abc", "Interested", ""]])
    corrupt = inbox / "d-corrupt.xlsx"
    corrupt.write_bytes(b"PK\x03\x04 this is not really a workbook")
    _age(good_csv, good_xlsx, invalid, corrupt)
    fresh = write_csv(inbox / "e-fresh.csv", rows_of(2, start=4000))  # just written: still being copied in

    result = cli("sweep", inbox, "--base-url", sim.base_url, "--json")

    assert result.code == 1, result.err
    assert result.out.count("\n") == 1  # one JSON object, nothing else on stdout
    report = result.json()
    assert report["exit_code"] == 1
    offset = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d"  # a night's JSON line says which night it was
    assert re.fullmatch(offset, report["started_at"]) and re.fullmatch(offset, report["finished_at"])
    assert report["started_at"] <= report["finished_at"]
    files = {Path(entry["file"]).name: entry for entry in report["files"]}
    assert list(files) == ["a-good.csv", "b-good.xlsx", "c-invalid.csv", "d-corrupt.xlsx"]  # name order
    for entry in report["files"]:
        assert {"file", "moved_to", "results", "counts", "exit_code"} <= set(entry)

    for name, start in (("a-good.csv", 1000), ("b-good.xlsx", 2000)):
        entry = files[name]
        assert entry["exit_code"] == 0
        assert Path(entry["moved_to"]) == inbox / "done" / name
        assert entry["counts"]["disposed"] == 3
        assert _statuses(entry["results"]) == {str(start + n): "disposed" for n in range(3)}

    entry = files["c-invalid.csv"]
    assert entry["exit_code"] == 1
    assert Path(entry["moved_to"]) == inbox / "done" / "c-invalid.csv"
    assert entry["counts"]["disposed"] == 2 and entry["counts"]["invalid"] == 1
    assert _statuses(entry["results"])["3002"] == "invalid"

    entry = files["d-corrupt.xlsx"]
    assert entry["exit_code"] == 2
    assert entry["results"] is None
    assert Path(entry["moved_to"]) == inbox / "rejected" / "d-corrupt.xlsx"
    reason = (inbox / "rejected" / "d-corrupt.xlsx.reason.txt").read_text(encoding="utf-8").strip()
    assert "d-corrupt.xlsx" in reason and len(reason.split()) >= 4 and reason.endswith(".")

    assert _names(inbox) == {"done", "rejected", "e-fresh.csv"}
    assert _names(inbox / "done") == {"a-good.csv", "b-good.xlsx", "c-invalid.csv"}
    assert _names(inbox / "rejected") == {"d-corrupt.xlsx", "d-corrupt.xlsx.reason.txt"}
    assert fresh.read_bytes() == write_csv(tmp_path / "copy.csv", rows_of(2, start=4000)).read_bytes()
    assert "e-fresh.csv" in result.err  # the operator is told it was left for the next sweep
    assert "4000" not in sim.stats.received
    assert sim.stats.route_requests == 8 and set(sim.stats.received.values()) == {1}


def test_files_are_run_in_name_order_not_age_order(cli, sim, tmp_path: Path) -> None:
    """Files run one after another in name order, whatever order they arrived in."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    late = write_csv(inbox / "2-second.csv", rows_of(5, start=2000))
    early = write_xlsx(inbox / "1-first.xlsx", rows_of(5, start=1000))
    last = write_csv(inbox / "3-third.csv", rows_of(5, start=3000))
    _age(late, seconds=300)
    _age(early, seconds=100)
    _age(last, seconds=200)
    result = cli("sweep", inbox, "--base-url", sim.base_url, "--json")
    assert result.code == 0, result.err
    assert [Path(e["file"]).name for e in result.json()["files"]] == ["1-first.xlsx", "2-second.csv", "3-third.csv"]
    arrived = [int(request.call_id) // 1000 for request in sim.stats.recorded]
    assert arrived == sorted(arrived)  # every call of one file before any of the next


def test_hidden_lock_and_other_files_and_subfolders_are_left_alone(cli, sim, tmp_path: Path) -> None:
    """Hidden files, office lock files, subfolders and non-spreadsheets stay where they are, untouched and unsent."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    good = write_csv(inbox / "calls.csv", rows_of(2, start=1000))
    bystanders = {
        ".hidden.csv": write_csv(inbox / ".hidden.csv", rows_of(2, start=2000)).read_bytes(),
        "~$calls.xlsx": b"\x0bExcel owner lock",
        ".~lock.calls.xlsx#": b",someone,host,27.11.2026 16:07,file:///home/someone/.config/libreoffice/4;",
        "notes.txt": b"callID,logID,disposition,notes\n3000,1,Interested,\n",
        "calls.csv.bak": b"callID,logID,disposition,notes\n3001,1,Interested,\n",
    }
    for name, content in bystanders.items():
        if not (inbox / name).exists():
            (inbox / name).write_bytes(content)
    sub = inbox / "archive.csv"  # a folder that looks like a spreadsheet
    sub.mkdir()
    nested = write_csv(sub / "nested.csv", rows_of(2, start=4000))
    _age(good, *(inbox / name for name in bystanders), sub, nested)

    result = cli("sweep", inbox, "--base-url", sim.base_url, "--json")

    assert result.code == 0, result.err
    assert [Path(e["file"]).name for e in result.json()["files"]] == ["calls.csv"]
    for name, content in bystanders.items():
        assert (inbox / name).read_bytes() == content, f"{name} was touched"
    assert nested.is_file() and sub.is_dir()
    assert _names(inbox / "done") == {"calls.csv"}
    assert not (inbox / "rejected").exists()
    assert set(sim.stats.received) == {"1000", "1001"}
    # left alone, but named: an export that changed its format (a .tsv, a .bak) does not go unnoticed at night
    assert [Path(p).name for p in result.json()["not_spreadsheets"]] == ["calls.csv.bak", "notes.txt"]
    assert "not spreadsheets, left alone: calls.csv.bak, notes.txt" in result.err


def test_empty_inbox_exits_0_with_one_quiet_line(cli, sim, tmp_path: Path) -> None:
    """An empty inbox is a normal cron tick: exit 0, one short line on stderr, nothing sent."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    result = cli("sweep", inbox, "--base-url", sim.base_url)
    assert result.code == 0
    assert len(result.err.strip().splitlines()) == 1
    assert result.out == ""
    assert sim.stats.requests == 0


def test_missing_inbox_is_a_usage_error(cli, sim, tmp_path: Path) -> None:
    """A sweep of a folder that does not exist exits 2 and names the folder."""
    result = cli("sweep", tmp_path / "no-such-inbox", "--base-url", sim.base_url)
    assert result.code == 2
    assert "no-such-inbox" in result.err
    assert sim.stats.requests == 0


def test_two_good_files_exit_0(cli, sim, tmp_path: Path) -> None:
    """Two good files: both disposed, both in done/, exit 0."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    _age(write_csv(inbox / "a.csv", rows_of(4, start=1000)), write_xlsx(inbox / "b.xlsx", rows_of(4, start=2000)))
    result = cli("sweep", inbox, "--base-url", sim.base_url, "--json")
    assert result.code == 0, result.err
    assert result.json()["exit_code"] == 0
    assert [e["exit_code"] for e in result.json()["files"]] == [0, 0]
    assert _names(inbox / "done") == {"a.csv", "b.xlsx"}
    assert _spreadsheets_in(inbox) == []
    assert len(sim.stats.disposed) == 8


# --- a rejected token -------------------------------------------------------------------------------------


def _inbox_for_wrong_token(tmp_path: Path) -> Path:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    _age(write_csv(inbox / "a.csv", rows_of(6, start=1000)), write_csv(inbox / "b.csv", rows_of(6, start=2000)))
    return inbox


def test_wrong_token_exits_3_leaves_the_file_and_runs_nothing_after(cli, sim, tmp_path: Path) -> None:
    """A rejected token: exit 3, the stopped file stays in the inbox, the next file is never sent, no token leaks."""
    inbox = _inbox_for_wrong_token(tmp_path)
    wrong = "wrong-token-7e21b0"
    result = cli("sweep", inbox, "--base-url", sim.base_url, "--json", "--concurrency", "1", token=wrong)
    assert result.code == 3, result.err
    report = result.json()
    assert report["exit_code"] == 3
    first = report["files"][0]
    assert Path(first["file"]).name == "a.csv" and first["exit_code"] == 3 and first["moved_to"] is None
    assert (inbox / "a.csv").is_file()  # left for the next sweep, once the token is fixed
    assert not (inbox / "done" / "a.csv").exists()
    assert not any(call.startswith("2") for call in sim.stats.received)  # b.csv not sent
    assert sim.stats.route_requests <= 6
    assert wrong not in result.err + result.out
    for written in (tmp_path / "reports").glob("*.log"):
        assert wrong not in written.read_text(encoding="utf-8")


def test_wrong_token_leaves_the_files_after_the_stopped_one_in_the_inbox(cli, sim, tmp_path: Path) -> None:
    """Files the sweep never reached after a token stop stay in the inbox, not filed as rejected."""
    inbox = _inbox_for_wrong_token(tmp_path)
    result = cli("sweep", inbox, "--base-url", sim.base_url, "--json", "--concurrency", "1", token="wrong")
    assert result.code == 3
    assert _spreadsheets_in(inbox) == ["a.csv", "b.csv"]
    assert not (inbox / "rejected").exists()


def test_wrong_token_on_a_small_file_still_leaves_it_in_the_inbox(cli, sim, tmp_path: Path) -> None:
    """A 2-row file rejected for the token stays in the inbox and the sweep stops there (exit 3), saying so and
    what to do in a sweep: fix the token, the next sweep sends it (not "run the results workbook again")."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    _age(write_csv(inbox / "a.csv", rows_of(2, start=1000)), write_csv(inbox / "b.csv", rows_of(2, start=2000)))
    result = cli("sweep", inbox, "--base-url", sim.base_url, "--json", token="wrong")
    assert result.code == 3
    assert (inbox / "a.csv").is_file()
    assert result.json()["files"][0]["stop_reason"] == "unauthorized"
    assert "fix the token and the next sweep sends it" in result.err
    assert "run the results workbook again" not in result.err + result.out
    assert not any(call.startswith("2") for call in sim.stats.received)


def test_small_files_during_an_outage_stay_in_the_inbox_and_the_next_sweep_sends_them(cli, sim,
                                                                                       tmp_path: Path) -> None:
    """Nothing listening: a file too small to spend the retry budget (its rows give up one by one) stays in the
    inbox like a run that stopped early; the sweep goes on to the next file (a blip costs one file a night), and
    stops at the second such file in a row. The next sweep, with the server back, sends every row once."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    _age(write_csv(inbox / "a.csv", rows_of(3, start=1000)), write_csv(inbox / "b.csv", rows_of(3, start=2000)),
         write_csv(inbox / "c.csv", rows_of(3, start=3000)))
    down = cli("sweep", inbox, "--base-url", f"http://127.0.0.1:{free_port()}", "--retries", "1", "--json")
    assert down.code == 1, down.err
    files = {Path(item["file"]).name: item for item in down.json()["files"]}
    assert files["a.csv"]["moved_to"] is None and files["a.csv"]["counts"]["failed"] == 3
    assert files["a.csv"]["stop_reason"] == "unreachable"  # the JSON line tells "server down" from "bad rows"
    assert files["a.csv"]["note"].endswith("a.csv: no row could be sent (the server could not be reached); left in "
                                           "the inbox for the next sweep")
    assert files["b.csv"]["note"].endswith("left in the inbox, and the sweep stopped: the next sweep sends it")
    assert files["c.csv"]["moved_to"] is None and "error" not in files["c.csv"]  # not run is not unusable
    assert files["c.csv"]["stopped"] == ("not run: the sweep stopped before this file (unreachable); it stays in "
                                         "the inbox for the next sweep")
    assert _spreadsheets_in(inbox) == ["a.csv", "b.csv", "c.csv"] and not (inbox / "done").exists()
    back = cli("sweep", inbox, "--base-url", sim.base_url, "--json")
    assert back.code == 0, back.err
    assert _names(inbox / "done") == {"a.csv", "b.csv", "c.csv"} and _spreadsheets_in(inbox) == []
    assert sorted(sim.stats.received.values()) == [1] * 9


def test_a_blip_at_the_start_of_a_sweep_costs_the_first_file_a_night_not_every_file(tmp_path: Path) -> None:
    """The server refuses connections for the first file's attempts only (a restart at midnight): that file stays
    in the inbox for the next sweep, and the files after it are sent and filed tonight."""
    import httpx

    refused = [6]  # a.csv: 3 rows x (1 + --retries 1) attempts

    def answer(request: httpx.Request) -> httpx.Response:
        if refused[0]:
            refused[0] -= 1
            raise httpx.ConnectError("connection refused by 127.0.0.1:443")
        return httpx.Response(200, json={"error": False, "message": "Call disposed and ended.", "data": {}})

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    _age(write_csv(inbox / "a.csv", rows_of(3, start=1000)), write_csv(inbox / "b.csv", rows_of(3, start=2000)),
         write_csv(inbox / "c.csv", rows_of(3, start=3000)))
    settings = Settings(base_url="https://acme.ryng.in", retries=1, reports_dir=tmp_path / "reports")
    swept = asyncio.run(sweep(inbox, settings, Secret(TOKEN), transport=httpx.MockTransport(answer)))
    assert _spreadsheets_in(inbox) == ["a.csv"] and _names(inbox / "done") == {"b.csv", "c.csv"}
    assert [item.result.counts[Status.DISPOSED] for item in swept.files] == [0, 3, 3]
    assert "left in the inbox for the next sweep" in str(swept.files[0].note) and int(swept.exit_code) == 1


def test_a_file_with_a_row_the_server_kept_refusing_stays_for_the_next_sweep(cli, simulator, tmp_path: Path) -> None:
    """One row answered 503 to its last attempt (the others disposed): its file stays in the inbox, saying why,
    and the sweep goes on to the next file; the next sweep sends that row alone."""
    sim = simulator(scripts={"1001": [503, 503]}, retry_after=None)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    _age(write_csv(inbox / "a.csv", rows_of(3, start=1000)), write_csv(inbox / "b.csv", rows_of(2, start=2000)))
    first = cli("sweep", inbox, "--base-url", sim.base_url, "--retries", "1", "--json")
    assert first.code == 1, first.err
    assert "a.csv: 1 row could not be sent (the server was unavailable); left in the inbox" in first.err
    assert _spreadsheets_in(inbox) == ["a.csv"] and _names(inbox / "done") == {"b.csv"}
    again = cli("sweep", inbox, "--base-url", sim.base_url, "--json")
    assert again.code == 0, again.err
    assert _names(inbox / "done") == {"a.csv", "b.csv"}
    assert sim.stats.received["1001"] == 3 and sim.stats.received["1000"] == 1


def test_a_file_stamped_in_the_future_is_run_not_held_back_forever(cli, sim, tmp_path: Path) -> None:
    """A file whose modification time is far ahead (a skewed clock on the machine that wrote it) is run: waiting
    until it is "10 s old" would hold it back every night while the sweep exits 0."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    future = write_csv(inbox / "future.csv", rows_of(2))
    _age(future, seconds=-3600)
    result = cli("sweep", inbox, "--base-url", sim.base_url, "--json")
    assert result.code == 0, result.err
    assert result.json()["waiting"] == [] and _names(inbox / "done") == {"future.csv"}


def test_a_long_stop_in_a_sweep_says_the_next_sweep_sends_the_rest(cli, simulator, tmp_path: Path) -> None:
    """A file whose run stopped (the token rejected 3 times in a row) stays in the inbox; its stop line says the
    next sweep sends the rest, not to run the results workbook again (a sweep does that by itself)."""
    sim = simulator()
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    _age(write_csv(inbox / "a.csv", rows_of(20)))
    result = cli("sweep", inbox, "--base-url", sim.base_url, "--json", token="wrong")
    assert result.code == 3, result.err
    stopped = result.json()["files"][0]["stopped"]
    assert stopped.startswith("stopped: the server rejected the access token 3 times in a row") and \
        stopped.endswith("; the file stays in the inbox and the next sweep sends the rest"), stopped
    assert "run the results workbook again" not in result.err


# --- filing without overwriting ---------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "content", "folder"), [
    ("a.csv", None, "done"),
    ("a.xlsx", b"PK\x03\x04 broken", "rejected"),
])
def test_name_taken_in_done_or_rejected_gets_a_suffix(cli, sim, tmp_path: Path, name: str, content: bytes | None,
                                                      folder: str) -> None:
    """A swept file whose name is already taken in done/ or rejected/ becomes NAME-2; nothing is overwritten."""
    inbox = tmp_path / "inbox"
    (inbox / folder).mkdir(parents=True)
    earlier = inbox / folder / name
    earlier.write_bytes(b"yesterday's file")
    incoming = inbox / name
    if content is None:
        write_csv(incoming, rows_of(2))
    else:
        incoming.write_bytes(content)
    incoming_bytes = incoming.read_bytes()
    _age(incoming)
    result = cli("sweep", inbox, "--base-url", sim.base_url, "--json")
    stem, suffix = name.split(".")
    second = inbox / folder / f"{stem}-2.{suffix}"
    assert Path(result.json()["files"][0]["moved_to"]) == second
    assert earlier.read_bytes() == b"yesterday's file"
    assert second.read_bytes() == incoming_bytes
    assert not incoming.exists()
    if folder == "rejected":
        assert (inbox / "rejected" / f"{stem}-2.{suffix}.reason.txt").is_file()


# --- crash and lock ---------------------------------------------------------------------------------------


def _spawn(*args: object, cwd: Path, token: str = TOKEN) -> subprocess.Popen[str]:
    env = {**os.environ, "RYNG_ACCESS_TOKEN": token}
    return subprocess.Popen([sys.executable, "-m", "batch_dispose", *map(str, args)], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_sweep_killed_midway_then_rerun_never_sends_twice(cli, simulator, tmp_path: Path) -> None:
    """kill -9 mid-sweep, then the next sweep: no call sent twice, every file filed, done rows skipped."""
    sim = simulator(latency_ms=20)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    sizes = {"a.csv": (1000, 40), "b.csv": (2000, 200), "c.xlsx": (3000, 40)}
    for name, (start, count) in sizes.items():
        (write_csv if name.endswith(".csv") else write_xlsx)(inbox / name, rows_of(count, start=start))
    _age(*(inbox / name for name in sizes))
    concurrency = 4
    victim = _spawn("sweep", inbox, "--base-url", sim.base_url, "--concurrency", concurrency, cwd=tmp_path)
    _wait_for(lambda: sim.stats.route_requests >= 40 + 60)  # a.csv done and filed, b.csv midway
    victim.kill()
    victim.communicate(timeout=30)
    assert _names(inbox / "done") == {"a.csv"}
    assert _spreadsheets_in(inbox) == ["b.csv", "c.xlsx"]
    answered_before = sum(1 for call in sim.stats.disposed if call.startswith("2"))

    result = cli("sweep", inbox, "--base-url", sim.base_url, "--concurrency", concurrency, "--json")

    assert result.code in (0, 1), result.err
    assert _spreadsheets_in(inbox) == []
    assert _names(inbox / "done") == {"a.csv", "b.csv", "c.xlsx"}
    files = {Path(e["file"]).name: e for e in result.json()["files"]}
    assert list(files) == ["b.csv", "c.xlsx"]
    b = _statuses(files["b.csv"]["results"])
    assert set(b.values()) <= {"skipped", "disposed", "unknown"}
    unknown = [call for call, status in b.items() if status == "unknown"]
    assert len(unknown) <= concurrency + ahead_for(concurrency)  # in flight, or committed ahead, at the kill
    assert sum(status == "skipped" for status in b.values()) >= answered_before - concurrency > 0
    assert set(_statuses(files["c.xlsx"]["results"]).values()) == {"disposed"}
    assert all(count == 1 for count in sim.stats.disposed.values()), "a call was disposed twice"
    assert all(count == 1 for call, count in sim.stats.received.items()), "a call was sent twice"
    every = {str(start + n) for start, count in sizes.values() for n in range(count)}
    assert set(sim.stats.disposed) | set(unknown) == every


def test_sweep_while_another_run_holds_the_lock_exits_75_and_sends_nothing(cli, sim, tmp_path: Path) -> None:
    """While another run holds the ledger's lock, a sweep exits 75, sends nothing and leaves every file in place."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    _age(write_csv(inbox / "a.csv", rows_of(3)), write_xlsx(inbox / "b.xlsx", rows_of(3, start=2000)))
    with Ledger.open(default_ledger()):
        result = cli("sweep", inbox, "--base-url", sim.base_url, "--json")
    assert result.code == 75
    assert result.json()["exit_code"] == 75
    assert result.json()["started_at"] and result.json()["finished_at"]  # which night was refused, in the log
    assert len(result.err.strip().splitlines()) == 1
    assert sim.stats.requests == 0
    assert _spreadsheets_in(inbox) == ["a.csv", "b.xlsx"]
    assert not (inbox / "done").exists() and not (inbox / "rejected").exists()


# --- cron conditions ---------------------------------------------------------------------------------------


def test_cron_like_run_no_tty_minimal_env_other_cwd_config_relative_paths(sim, tmp_path: Path) -> None:
    """Under cron (no TTY, bare environment, another cwd), paths in --config resolve beside it; no progress bar."""
    etc = tmp_path / "etc"
    etc.mkdir()
    config = etc / "batch-dispose.toml"
    config.write_text(f'base_url = "{sim.base_url}"\nreports_dir = "reports"\n'
                      f'ledger = "state/ledger.sqlite"\ntoken_file = "token.txt"\n', encoding="utf-8")
    token_file = etc / "token.txt"
    token_file.write_text(TOKEN + "\n", encoding="utf-8")
    token_file.chmod(0o600)
    cwd = tmp_path / "cron-home"
    inbox = cwd / "inbox"
    inbox.mkdir(parents=True)
    _age(write_csv(inbox / "a.csv", rows_of(30, start=1000)),
         write_xlsx(inbox / "b.xlsx", [*rows_of(5, start=2000), ["2005", "", "Interested", ""]]))

    env = {"PATH": os.environ["PATH"]}  # no RYNG_ACCESS_TOKEN: the token_file in the config must be used
    env.update({key: os.environ[key] for key in ("PYTHONPATH",) if key in os.environ})  # a checkout under test
    process = subprocess.run([sys.executable, "-m", "batch_dispose", "sweep", "inbox", "--config", config],
                             cwd=cwd, env=env, stdin=subprocess.PIPE, capture_output=True, text=True,
                             timeout=120, check=False)

    assert process.returncode == 1, process.stderr  # b.xlsx has an invalid row
    for mark in PROGRESS_BAR_MARKS:
        assert mark not in process.stderr, f"progress bar output {mark!r} in cron mail"
    assert TOKEN not in process.stderr + process.stdout
    assert (etc / "state" / "ledger.sqlite").is_file()
    workbooks = sorted(p.name for p in (etc / "reports").glob("*.xlsx"))
    assert len(workbooks) == 2 and workbooks[0].startswith("a-results-") and workbooks[1].startswith("b-results-")
    assert _names(cwd) == {"inbox"}  # nothing written relative to the working folder but the filing
    assert not (etc / "reports" / "ledger.sqlite").exists()
    assert _names(inbox / "done") == {"a.csv", "b.xlsx"}
    assert len(sim.stats.disposed) == 35


def test_line_reporter_prints_progress_lines_through_a_slow_sweep(simulator, tmp_path: Path) -> None:
    """Without a terminal, a slow sweep prints plain progress lines (counts and rate), never a bar."""
    sim = simulator(latency_ms=25)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    _age(write_csv(inbox / "slow.csv", rows_of(40)))
    stream = io.StringIO()
    settings = Settings(base_url=sim.base_url, concurrency=2, reports_dir=tmp_path / "reports")
    swept = asyncio.run(sweep(inbox, settings, Secret(TOKEN), reporter=LineReporter(stream, every=0.05)))
    assert int(swept.exit_code) == 0
    note, *lines = stream.getvalue().splitlines()
    assert note.startswith("batch-dispose: note: the ledger") and "has no record of" in note  # before sending
    assert len(lines) >= 3
    for line in lines:
        pattern = r"batch-dispose: slow\.csv: \d+/40 done( \(\d+ disposed\))?, \d+\.\d/s(; waiting for .*)?"
        assert re.fullmatch(pattern, line), line
    done = [int(re.search(r"(\d+)/40", line).group(1)) for line in lines]  # type: ignore[union-attr]
    assert done == sorted(done)
    assert not any(mark in stream.getvalue() for mark in PROGRESS_BAR_MARKS)


def test_line_reporter_prints_once_every_10_seconds() -> None:
    """The cron progress line comes every 10 seconds, not per row."""
    now = [0.0]
    stream = io.StringIO()
    reporter = LineReporter(stream, clock=lambda: now[0])
    reporter.file_started(Path("calls.csv"), rows=300, to_send=300)
    for second in range(1, 301):  # one outcome a second for 5 minutes, every 7th failed
        now[0] = float(second)
        reporter.outcome(Status.FAILED if second % 7 == 0 else Status.DISPOSED)
        if second == 9:
            assert stream.getvalue() == ""  # nothing before 10 seconds have passed
    lines = stream.getvalue().splitlines()
    assert len(lines) == 30
    assert lines[0] == "batch-dispose: calls.csv: 10/300 done (9 disposed, 1 failed), 1.0/s"
    assert lines[-1].startswith("batch-dispose: calls.csv: 300/300 done (258 disposed, 42 failed)")
    quiet = io.StringIO()  # a slow server: 10 s and no reply yet
    waiting = LineReporter(quiet, clock=lambda: now[0])
    waiting.file_started(Path("calls.csv"), rows=300, to_send=300)
    now[0] += 10
    waiting.tick(Activity(4, 10.0, 20.0, 0, 0.0, 0.0))
    assert quiet.getvalue().startswith("batch-dispose: calls.csv: 0/300 done, 0.0/s; waiting for 4 replies")


# --- the run log --------------------------------------------------------------------------------------------


def test_each_workbook_has_a_run_log_with_one_line_per_row_and_no_token(cli, sim, tmp_path: Path) -> None:
    """Beside each workbook a .log of the same name holds a line per row (row number, status) and no token."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    rows = [["1000", 1, "Interested", ""], ["1001", 2, "Interested", "x"], ["", "", "", ""],
            ["1002", "abc", "Interested", ""], ["1003", 4, "Callback", "y"]]
    _age(write_csv(inbox / "a.csv", rows), write_xlsx(inbox / "b.xlsx", rows_of(3, start=2000)))
    result = cli("sweep", inbox, "--base-url", sim.base_url, "--json")
    assert result.code == 1, result.err
    for entry in result.json()["files"]:
        workbook = Path(entry["results"])
        log = workbook.with_suffix(".log")
        assert log.is_file(), f"no run log beside {workbook.name}"
        text = log.read_text(encoding="utf-8")
        assert TOKEN not in text
        if workbook.name.startswith("a-"):
            expected = {2: "disposed", 3: "disposed", 5: "invalid", 6: "disposed"}  # row 4 is blank
        else:
            expected = {2: "disposed", 3: "disposed", 4: "disposed"}
        for row, status in expected.items():
            lines = [line for line in text.splitlines() if re.search(rf"\brow {row}\b", line)]
            assert len(lines) == 1, f"{log.name}: row {row}: {lines}"
            assert re.search(rf"\b{status}\b", lines[0])
    reports = tmp_path / "reports"
    assert len(list(reports.glob("*.log"))) == len(list(reports.glob("*.xlsx"))) == 2  # no stray logs


# --- files that change or vanish mid-sweep, and a lone 403 ----------------------------------------------------


class _Meddler:
    """A reporter that does something to the inbox while a file is being run (as an export job or a person
    would), through the reporter seam the CLI's progress bar uses."""

    def __init__(self, on_first_outcome: Callable[[], None] | None = None,
                 on_start: Callable[[Path], None] | None = None) -> None:
        self._on_outcome, self._on_start = on_first_outcome, on_start

    def file_started(self, path: Path, rows: int, to_send: int) -> None:
        if self._on_start is not None:
            self._on_start(path)

    def outcome(self, status: Status) -> None:
        if self._on_outcome is not None:
            action, self._on_outcome = self._on_outcome, None
            action()

    def file_finished(self, result) -> None:  # type: ignore[no-untyped-def]
        return None


def test_a_file_replaced_during_its_run_stays_in_the_inbox_for_the_next_sweep(sim, tmp_path: Path) -> None:
    """The export overwrites calls.csv while the sweep runs it: it is not filed as done; the next sweep
    sends the new rows and skips what went through."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    source = write_csv(inbox / "calls.csv", rows_of(20, start=1000))
    _age(source)
    settings = Settings(base_url=sim.base_url, concurrency=2, reports_dir=tmp_path / "reports")

    def replace() -> None:
        write_csv(source, rows_of(20, start=5000))

    swept = asyncio.run(sweep(inbox, settings, Secret(TOKEN), reporter=_Meddler(replace)))
    assert swept.files[0].moved_to is None and "changed while the sweep was running" in str(swept.files[0].note)
    assert source.is_file() and not (inbox / "done").exists()
    _age(source)
    again = asyncio.run(sweep(inbox, settings, Secret(TOKEN)))
    assert again.files[0].moved_to == inbox / "done" / "calls.csv"
    assert {str(5000 + n) for n in range(20)} <= set(sim.stats.received)
    assert set(sim.stats.received.values()) == {1}


def test_a_file_deleted_during_the_sweep_gets_a_sentence(cli, sim, tmp_path: Path) -> None:
    """A waiting file deleted while an earlier one runs: one sentence for it, no traceback, the rest filed."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    first, second = write_csv(inbox / "a.csv", rows_of(3)), write_csv(inbox / "b.csv", rows_of(3, start=2000))
    _age(first, second)
    settings = Settings(base_url=sim.base_url, reports_dir=tmp_path / "reports")
    swept = asyncio.run(sweep(inbox, settings, Secret(TOKEN), reporter=_Meddler(on_start=lambda path: (
        second.unlink() if path == first else None))))
    assert swept.files[0].moved_to == inbox / "done" / "a.csv"
    assert swept.files[1].moved_to is None and "disappeared" in str(swept.files[1].note)
    assert int(swept.exit_code) == 1 and not (inbox / "rejected").exists()


def test_a_lone_403_is_that_rows_status_not_a_token_stop(cli, simulator, tmp_path: Path) -> None:
    """One call answered 403 among good ones: that row is unauthorized, the file is filed, later files run,
    and the sweep exits 1, not 3."""
    sim = simulator(scripts={"1002": [403]})
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    _age(write_csv(inbox / "a.csv", rows_of(5)), write_csv(inbox / "b.csv", rows_of(3, start=2000)))
    result = cli("sweep", inbox, "--base-url", sim.base_url, "--json")
    assert result.code == 1, result.err
    files = result.json()["files"]
    assert [entry["exit_code"] for entry in files] == [1, 0]
    assert files[0]["counts"]["unauthorized"] == 1 and files[0]["moved_to"]
    assert _names(inbox / "done") == {"a.csv", "b.csv"}


def test_a_file_replaced_while_an_earlier_one_runs_waits_for_the_next_sweep(cli, sim, tmp_path: Path) -> None:
    """A waiting file the export overwrote while the sweep ran an earlier one stays in the inbox (exit 1);
    the next sweep files it, and no call is sent twice."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    first, second = write_csv(inbox / "a.csv", rows_of(3)), write_csv(inbox / "b.csv", rows_of(3, start=2000))
    _age(first, second)
    settings = Settings(base_url=sim.base_url, reports_dir=tmp_path / "reports")

    def rewrite(path: Path) -> None:
        if path == first:
            write_csv(second, rows_of(4, start=3000))  # the export overwrote b.csv before it was read

    swept = asyncio.run(sweep(inbox, settings, Secret(TOKEN), reporter=_Meddler(on_start=rewrite)))
    assert int(swept.exit_code) == 1
    assert swept.files[1].moved_to is None and "changed while the sweep" in str(swept.files[1].note)
    _age(second)
    result = cli("sweep", inbox, "--base-url", sim.base_url, "--json")
    assert result.code == 0, result.err
    assert set(sim.stats.received.values()) == {1}
