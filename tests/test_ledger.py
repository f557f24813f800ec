"""Never twice, never lost: the ledger across runs, kill -9 at any moment, one run at a time, SIGTERM."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

import pytest

from batch_dispose.ledger import Ledger
from batch_dispose.runner import ahead_for
from tests.conftest import TOKEN, default_ledger, read_results, rows_of, write_csv


def _spawn(*args: object, cwd: Path, token: str = TOKEN) -> subprocess.Popen[str]:
    """The real command in its own process (so it can be killed like cron's would be)."""
    env = {**os.environ, "RYNG_ACCESS_TOKEN": token}
    return subprocess.Popen([sys.executable, "-m", "batch_dispose", *map(str, args)], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.005)


def _integrity(path: Path) -> str:
    with closing(sqlite3.connect(path)) as connection:
        return connection.execute("PRAGMA integrity_check").fetchone()[0]


def _recorded_outcomes(ledger: Path) -> int:
    """Outcomes the running process has committed so far (a reader beside the writer, as WAL allows)."""
    if not ledger.exists():
        return 0
    try:
        with closing(sqlite3.connect(f"file:{ledger}?mode=ro", uri=True, timeout=1)) as connection:
            return connection.execute("SELECT count(*) FROM events").fetchone()[0]
    except sqlite3.OperationalError:  # not created yet
        return 0


def test_ledger_pragmas_are_wal_full_and_versioned(tmp_path: Path) -> None:
    """The ledger is WAL with synchronous=FULL (2) and carries its schema version."""
    with Ledger.open(tmp_path / "ledger.sqlite") as ledger:
        assert ledger.pragmas() == {"journal_mode": "wal", "synchronous": 2, "user_version": 2}


def test_same_file_twice_sends_nothing_the_second_time(cli, sim, tmp_path: Path) -> None:
    """Running the same file again skips every row (with when it was disposed) and exits 0."""
    source = write_csv(tmp_path / "calls.csv", rows_of(20))
    assert cli("run", source, "--base-url", sim.base_url).code == 0
    again = cli("run", source, "--base-url", sim.base_url, "--json")
    assert again.code == 0
    assert again.json()["counts"]["skipped"] == 20
    assert sim.stats.route_requests == 20
    _, records, _ = read_results(Path(again.json()["results"]))
    assert all(r["status"] == "skipped" and "already disposed at 20" in r["message"] for r in records)


def test_second_file_sharing_call_ids_sends_only_the_new_ones(cli, sim, tmp_path: Path) -> None:
    """A callID disposed from one file is skipped in another; only new callIDs are sent."""
    first = write_csv(tmp_path / "morning.csv", rows_of(10))
    second = write_csv(tmp_path / "evening.csv", rows_of(10, start=1005))
    cli("run", first, "--base-url", sim.base_url)
    result = cli("run", second, "--base-url", sim.base_url, "--json")
    assert result.json()["counts"]["skipped"] == 5 and result.json()["counts"]["disposed"] == 5
    assert all(count == 1 for count in sim.stats.received.values())
    assert len(sim.stats.received) == 15


def test_same_call_id_on_another_host_is_a_different_call(cli, simulator, tmp_path: Path) -> None:
    """The ledger is keyed by Ryng host and callID: another tenant's call with the same ID is sent."""
    one, two = simulator(), simulator()
    source = write_csv(tmp_path / "calls.csv", rows_of(3))
    cli("run", source, "--base-url", one.base_url)
    result = cli("run", source, "--base-url", two.base_url, "--json")
    assert result.json()["counts"]["disposed"] == 3
    assert two.stats.route_requests == 3


def test_force_sends_again_and_says_so(cli, sim, tmp_path: Path) -> None:
    """--force sends already-disposed rows again, and the Summary sheet says it was forced."""
    source = write_csv(tmp_path / "calls.csv", rows_of(2))
    cli("run", source, "--base-url", sim.base_url)
    result = cli("run", source, "--base-url", sim.base_url, "--force", "--json")
    assert result.json()["counts"]["disposed"] == 2
    assert sim.stats.route_requests == 4
    _, _, summary = read_results(Path(result.json()["results"]))
    assert summary["Setting: force"] == "yes"
    assert "--force" in str(summary.get("Warning"))


def test_a_run_holding_the_lock_makes_another_exit_75_without_sending(cli, sim, tmp_path: Path) -> None:
    """While one run holds the ledger's lock, another prints one line and exits 75, sending nothing."""
    source = write_csv(tmp_path / "calls.csv", rows_of(3))
    with Ledger.open(default_ledger()):
        result = cli("run", source, "--base-url", sim.base_url, "--json")
    assert result.code == 75
    assert result.json()["exit_code"] == 75
    assert len(result.err.strip().splitlines()) == 1 and "another batch-dispose run" in result.err
    assert sim.stats.requests == 0


def test_two_runs_started_at_once_exactly_one_sends(simulator, tmp_path: Path) -> None:
    """Two processes on one ledger at the same moment: one sends everything, the other exits 75 at once."""
    sim = simulator(latency_ms=20)
    source = write_csv(tmp_path / "calls.csv", rows_of(60))
    runs = [_spawn("run", source, "--base-url", sim.base_url, cwd=tmp_path) for _ in range(2)]
    codes = sorted(run.wait(timeout=60) for run in runs)
    for run in runs:
        run.communicate()
    assert codes == [0, 75]
    assert sim.stats.route_requests == 60 and set(sim.stats.received.values()) == {1}


@pytest.mark.parametrize("kill_at", [1, 100, 250])  # at the start, mid-run, near the end
def test_kill_9_at_any_moment_then_rerun_never_sends_twice(simulator, tmp_path: Path, kill_at: int) -> None:
    """After kill -9 mid-run, re-running sends only what was not recorded; in-flight rows become unknown,
    and only --retry-unknown re-sends them."""
    sim = simulator(latency_ms=15, jitter_ms=10, repeat_fails=True, seed=kill_at)
    rows = 300
    concurrency = 8
    source = write_csv(tmp_path / "calls.csv", rows_of(rows))
    base = ["--base-url", sim.base_url, "--concurrency", concurrency]
    victim = _spawn("run", source, *base, cwd=tmp_path)
    _wait_for(lambda: sim.stats.route_requests >= kill_at)
    victim.kill()
    victim.communicate(timeout=30)
    ledger = default_ledger()
    assert _integrity(ledger) == "ok"

    again = _spawn("run", source, *base, "--json", cwd=tmp_path)
    out, err = again.communicate(timeout=60)
    assert again.returncode in (0, 1), err
    _, records, _ = read_results(Path(__import__("json").loads(out)["results"]))
    statuses = {r["callID"]: r["status"] for r in records}
    assert len(statuses) == rows
    assert set(statuses.values()) <= {"disposed", "skipped", "unknown"}
    unknown = [call for call, status in statuses.items() if status == "unknown"]
    assert len(unknown) <= concurrency + ahead_for(concurrency)  # in flight, or committed ahead, at the kill
    assert all(count == 1 for count in sim.stats.received.values()), "a call was sent twice"
    for call, status in statuses.items():
        if status in ("disposed", "skipped"):
            assert sim.stats.disposed[call] == 1, f"{call} reported {status} but not disposed on the server"
    assert _integrity(ledger) == "ok"

    settle = _spawn("run", source, *base, "--retry-unknown", "--json", cwd=tmp_path)
    out, err = settle.communicate(timeout=60)
    final = {r["callID"]: r for r in read_results(Path(__import__("json").loads(out)["results"]))[1]}
    for call in unknown:
        assert sim.stats.received[call] <= 2
        assert final[call]["status"] in ("disposed", "unknown")
        if final[call]["status"] == "unknown":  # it had reached the server before the kill: 500 on the re-send
            assert sim.stats.disposed[call] == 1 and "probably disposed" in final[call]["message"]
    assert all(count == 1 for call, count in sim.stats.received.items() if call not in unknown)
    assert all(count <= 1 for count in sim.stats.disposed.values())


def test_row_in_flight_at_a_kill_is_unknown_until_retry_unknown(simulator, tmp_path: Path) -> None:
    """A row whose request was in flight at kill -9 is unknown on the next run (not re-sent), and only
    --retry-unknown sends it again."""
    sim = simulator(scripts={"1005": ["hang"]})
    source = write_csv(tmp_path / "calls.csv", rows_of(30))
    base = ["--base-url", sim.base_url, "--concurrency", "4"]
    victim = _spawn("run", source, *base, cwd=tmp_path)
    _wait_for(lambda: _recorded_outcomes(default_ledger()) >= 29)  # all but the hung row
    victim.kill()
    victim.communicate(timeout=30)
    again = _spawn("run", source, *base, "--json", cwd=tmp_path)
    out, _ = again.communicate(timeout=60)
    assert again.returncode == 1
    records = {r["callID"]: r for r in read_results(Path(__import__("json").loads(out)["results"]))[1]}
    assert records["1005"]["status"] == "unknown" and "--retry-unknown" in records["1005"]["message"]
    assert all(r["status"] in ("disposed", "skipped") for call, r in records.items() if call != "1005")
    assert sim.stats.received["1005"] == 1
    settle = _spawn("run", source, *base, "--retry-unknown", "--json", cwd=tmp_path)
    out, _ = settle.communicate(timeout=60)
    assert settle.returncode == 0
    assert sim.stats.received["1005"] == 2 and sim.stats.disposed["1005"] == 1


def test_kill_during_workbook_write_leaves_no_half_workbook(cli, tmp_path: Path) -> None:
    """Killing while the workbook is written leaves no partial .xlsx; the next run cleans the leftover."""
    source = write_csv(tmp_path / "big.csv", rows_of(40_000))
    reports = tmp_path / "reports"
    victim = _spawn("validate", source, "--quiet", cwd=tmp_path)
    _wait_for(lambda: any(reports.glob(".big-checked-*.tmp")), timeout=60)
    time.sleep(0.05)
    victim.kill()
    victim.communicate(timeout=30)
    from openpyxl import load_workbook

    for finished in reports.glob("*.xlsx"):  # a workbook that exists is complete
        workbook = load_workbook(finished, read_only=True)
        assert workbook["Results"].max_row == 40_001
        workbook.close()
    small = write_csv(tmp_path / "small.csv", rows_of(2))
    assert cli("validate", small).code == 0
    assert not list(reports.glob(".big-checked-*.tmp"))


def test_sigterm_stops_gracefully_and_rerun_completes(simulator, tmp_path: Path) -> None:
    """SIGTERM mid-run: exit 1 within the timeout, workbook written with the rest pending; a re-run finishes."""
    sim = simulator(latency_ms=40)
    source = write_csv(tmp_path / "calls.csv", rows_of(150))
    base = ["--base-url", sim.base_url, "--concurrency", "4", "--timeout", "5"]
    run = _spawn("run", source, *base, "--json", cwd=tmp_path)
    _wait_for(lambda: sim.stats.route_requests >= 20)
    stopped_at = time.monotonic()
    run.send_signal(signal.SIGTERM)
    out, err = run.communicate(timeout=30)
    assert run.returncode == 1, err
    assert time.monotonic() - stopped_at < 5
    summary = __import__("json").loads(out)
    assert summary["counts"]["pending"] > 0
    assert summary["counts"]["disposed"] + summary["counts"]["pending"] == 150
    assert summary["counts"]["disposed"] == sum(sim.stats.disposed.values())
    _, records, _ = read_results(Path(summary["results"]))
    assert all("interrupted" in r["message"] for r in records if r["status"] == "pending")
    rerun = _spawn("run", summary["results"], *base, "--json", cwd=tmp_path)
    out, _ = rerun.communicate(timeout=60)
    assert rerun.returncode == 0
    assert set(sim.stats.disposed.values()) == {1} and len(sim.stats.disposed) == 150


def test_history_answers_did_call_x_go_through(cli, simulator, tmp_path: Path) -> None:
    """`history CALLID` shows the call's state per host and each recorded outcome with file and row."""
    sim = simulator(scripts={"1001": [500]})
    source = write_csv(tmp_path / "calls.csv", rows_of(2))
    cli("run", source, "--base-url", sim.base_url)
    cli("run", source, "--base-url", sim.base_url)
    result = cli("history", "1000", "1001", "9999")
    assert result.code == 0
    assert f"1000 on {sim.base_url}: disposed (disposed at 20" in result.out
    assert "calls.csv row 3  1001: failed (500)" in result.out
    assert "calls.csv row 3  1001: disposed (200)" in result.out
    assert "9999: the ledger has no record" in result.out
    runs = cli("history", "--json").json()["runs"]
    assert len(runs) == 2 and all(run["finished_at"] for run in runs)


def test_a_ledger_that_cannot_record_stops_with_a_sentence(tmp_path: Path) -> None:
    """When the ledger cannot write (a full disk), the commit fails with a sentence saying what to do,
    and nothing of that commit is half-recorded."""
    from batch_dispose.errors import LedgerWriteError
    from batch_dispose.models import CallRequest

    with Ledger.open(tmp_path / "ledger.sqlite") as ledger:
        run_id = ledger.begin_run("http://h", tmp_path / "x.csv", "sha")
        pages = ledger._db.execute("PRAGMA page_count").fetchone()[0]
        ledger._db.execute(f"PRAGMA max_page_count = {pages}")  # the disk is now "full"
        calls = [CallRequest(n, n + 2, f"C{n}", 1, "Interested", "") for n in range(5000)]
        with pytest.raises(LedgerWriteError, match=r"could not record .*Free some disk space"):
            ledger.commit("http://h", run_id, [], calls)
        assert ledger.history_lookup("http://h")(["C0", "C4999"]) == {}
    assert _integrity(tmp_path / "ledger.sqlite") == "ok"


def test_a_call_in_flight_at_a_crash_is_unknown_as_of_when_it_was_sent(tmp_path: Path) -> None:
    """Found `sending` by the next run, a call is unknown "as of" the moment its request was recorded as leaving
    (what `history` and the skip message show), not the moment the next run happened to find it."""
    from batch_dispose.models import CallRequest

    path = tmp_path / "ledger.sqlite"
    call = CallRequest(index=0, row=2, call_id="1000", log_id=5000, disposition="Interested", notes="")
    with Ledger.open(path) as ledger:
        run = ledger.begin_run("http://127.0.0.1:1", "calls.csv", "")
        ledger.commit("http://127.0.0.1:1", run, [], [call])
    with closing(sqlite3.connect(path)) as db, db:
        db.execute("UPDATE calls SET status = 'sending'")  # as a kill -9 between intent and outcome leaves it
        db.execute("UPDATE runs SET finished_at = NULL")
        (sent_at,) = db.execute("SELECT sent_at FROM calls").fetchone()
    time.sleep(1.1)
    with Ledger.open(path) as ledger:
        (record,) = ledger.calls("1000")
    assert record.status == "unknown" and record.finished_at == sent_at
