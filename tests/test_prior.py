"""What earlier runs say about a row: the user's ledger wherever the run starts, what was sent, the ledger
over an old workbook, unknowns settled by a person, damaged ledgers and unwritable places refused."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from contextlib import closing
from pathlib import Path

import pytest

from batch_dispose.ledger import Ledger
from batch_dispose.ledgerfile import MIGRATIONS, healthy_mark
from batch_dispose.models import CallRequest, Status
from batch_dispose.prior import Given, decide
from tests.conftest import default_ledger, free_port, read_results, rows_of, write_csv


def _base(sim) -> list[str]:  # type: ignore[no-untyped-def]
    return ["--base-url", sim.base_url]


# --- the pure decision ------------------------------------------------------------------------------------


def _record(status: str, *, disposed_at: str | None = None, http_status: int | None = None, **sent: object):
    from batch_dispose.ledger import CallRecord

    return CallRecord("http://h", "C1", status, disposed_at, "2026-11-30T10:00:00.000Z", http_status, "m", 1,
                      "/x/morning.csv", 2, sent.get("log_id", 7), sent.get("disposition", "Callback"),
                      sent.get("notes", "n"))


CALL = CallRequest(0, 2, "C1", 7, "Callback", "n")

# given (workbook status), ledger record, force, retry_unknown -> send?, status
DECISIONS = [
    (None, None, False, False, True, None),
    (Given("disposed"), None, False, False, False, Status.SKIPPED),  # another ledger's run: still settled
    (Given("unknown"), None, False, True, True, None),
    (Given("unknown"), _record("disposed", disposed_at="2026-11-30T09:00:00.000Z"), False, True, False,
     Status.SKIPPED),  # an old workbook with --retry-unknown: the ledger wins
    (Given("failed"), _record("disposed", disposed_at="2026-11-30T09:00:00.000Z"), False, False, False,
     Status.SKIPPED),
    (None, _record("disposed", disposed_at="2026-11-30T09:00:00.000Z"), True, False, True, None),
    (Given("disposed"), _record("failed"), False, False, True, None),  # the ledger knows better
    (None, _record("unknown"), False, False, False, Status.UNKNOWN),
    (None, _record("unknown"), False, True, True, None),
    (None, _record("unknown", http_status=500), False, True, False, Status.UNKNOWN),  # probably disposed
    (None, _record("unknown", http_status=500), True, False, True, None),
]


@pytest.mark.parametrize(("given", "known", "force", "retry", "send", "status"), DECISIONS)
def test_the_ledger_outvotes_the_workbook_and_only_force_resends_a_disposed_call(given, known, force, retry, send,
                                                                                  status) -> None:
    """What earlier runs say decides each row: the ledger's disposed beats any workbook status and
    --retry-unknown; a probably-disposed unknown needs --force; the workbook speaks for calls the ledger lacks."""
    decision = decide(CALL, given, known, force=force, retry_unknown=retry)
    assert decision.send is send
    assert decision.status is status


def test_a_skipped_row_names_what_changed_since_it_was_sent() -> None:
    """A disposed call whose row now says something else is skipped with both values named."""
    known = _record("disposed", disposed_at="2026-11-30T09:00:00.000Z")
    changed = CallRequest(0, 2, "C1", 8, "Sale Done", "n")
    decision = decide(changed, None, known, force=False, retry_unknown=False)
    assert not decision.send and decision.changed
    assert "disposition: sent Callback, the file now says Sale Done" in decision.message
    assert "logID: sent 7, the file now says 8" in decision.message


# --- the user's ledger, whatever the folder -----------------------------------------------------------------


def test_same_calls_from_two_folders_and_three_reports_dirs_reach_the_server_once(cli, sim, tmp_path: Path,
                                                                                  monkeypatch) -> None:
    """Hand runs from two working folders with dated reports dirs share the user's ledger: each call once."""
    rows = rows_of(6)
    for folder, reports in (("a", "reports"), ("b", "reports/2026-12-01"), ("b", "out")):
        (tmp_path / folder).mkdir(exist_ok=True)
        monkeypatch.chdir(tmp_path / folder)
        source = write_csv(tmp_path / folder / "calls.csv", rows)
        result = cli("run", source, *_base(sim), "--reports-dir", reports, "--json")
        assert result.code == 0, result.err
    assert sim.stats.route_requests == 6 and set(sim.stats.received.values()) == {1}
    assert default_ledger().is_file()
    assert not (tmp_path / "a" / "reports" / "ledger.sqlite").exists()


def test_a_ledger_that_never_saw_the_host_says_so_once(cli, sim, tmp_path: Path) -> None:
    """The first run to a host from this ledger says, in one line, that it has no record of it yet."""
    first = cli("run", write_csv(tmp_path / "a.csv", rows_of(2)), *_base(sim))
    assert f"has no record of {sim.base_url} yet" in first.err
    said_first = first.err.index("note: the ledger")  # before the run, not only in its summary at the end
    assert said_first < first.err.index("a.csv: 2 rows:"), first.err
    assert first.err.count("has no record") == 1, first.err  # not again among the summary's warnings (cron mail)
    second = cli("run", write_csv(tmp_path / "b.csv", rows_of(2, start=2000)), *_base(sim))
    assert "has no record" not in second.err
    other = cli("run", write_csv(tmp_path / "c.csv", rows_of(1, start=3000)), "--base-url", "http://localhost:"
                + sim.base_url.rsplit(":", 1)[1], "--quiet")  # no progress shown: the summary still says it
    assert other.err.count("has no record") == 1, other.err


def _v1_ledger(path: Path, host: str, call_ids: list[str]) -> None:
    """A ledger as the previous version left it (schema 1) with these calls disposed."""
    from batch_dispose.ledgerfile import _SCHEMA_1  # type: ignore[attr-defined]

    path.parent.mkdir(parents=True, exist_ok=True)
    with closing(sqlite3.connect(path, isolation_level=None)) as db:
        db.execute("PRAGMA journal_mode = WAL")
        db.executescript(f"BEGIN; {_SCHEMA_1} PRAGMA user_version = 1; COMMIT;")
        db.execute("INSERT INTO runs VALUES (1, ?, '/old/morning.csv', 'sha', 1, '2026-11-29T08:00:00.000Z', "
                   "'2026-11-29T08:01:00.000Z', '{}')", (host,))
        for n, call_id in enumerate(call_ids):
            db.execute("INSERT INTO calls VALUES (?, ?, 'disposed', 1, ?, 200, 'ok', 1, '2026-11-29T08:00:00.000Z', "
                       "'2026-11-29T08:00:01.000Z', '2026-11-29T08:00:01.000Z')", (host, call_id, n + 2))
            db.execute("INSERT INTO events (run_id, host, call_id, row, status, at) VALUES (1, ?, ?, ?, 'disposed', "
                       "'2026-11-29T08:00:01.000Z')", (host, call_id, n + 2))


def test_a_ledger_at_the_old_default_place_is_taken_over_once(cli, sim, tmp_path: Path) -> None:
    """reports/ledger.sqlite from the previous version is merged into the user's ledger once (its calls
    skipped, its history kept), renamed aside, and the run says so."""
    old = tmp_path / "reports" / "ledger.sqlite"
    _v1_ledger(old, sim.base_url, ["1000", "1001", "1002"])
    source = write_csv(tmp_path / "calls.csv", rows_of(5))
    result = cli("run", source, *_base(sim), "--json")
    assert result.code == 0, result.err
    assert result.json()["counts"]["skipped"] == 3 and result.json()["counts"]["disposed"] == 2
    assert set(sim.stats.received) == {"1003", "1004"}
    assert "took over the ledger" in result.err and "3 calls merged" in result.err
    assert not old.exists() and len(list(old.parent.glob("ledger.sqlite.merged-*"))) == 1
    assert not healthy_mark(old).exists()  # nothing left in the reports folder that speaks of a ledger there
    again = cli("run", source, *_base(sim))
    assert "took over" not in again.err and sim.stats.route_requests == 2
    with Ledger.open(default_ledger(), lock=False) as ledger:
        assert [event.file for event in ledger.events(call_id="1000")] == ["/old/morning.csv"]
        assert ledger.calls("1000")[0].disposed_at == "2026-11-29T08:00:01.000Z"


# --- what was sent ------------------------------------------------------------------------------------------


def test_a_second_file_changing_three_dispositions_sends_nothing_and_names_both(cli, sim, tmp_path: Path) -> None:
    """Three sent calls whose disposition changed in a later file: nothing re-sent, each message names the
    sent and the new value, and the Summary counts them."""
    rows = rows_of(5)
    cli("run", write_csv(tmp_path / "first.csv", rows), *_base(sim))
    changed = [[*row[:2], "Sale Done" if n < 3 else row[2], row[3]] for n, row in enumerate(rows)]
    result = cli("run", write_csv(tmp_path / "second.csv", changed), *_base(sim), "--json")
    assert result.code == 0 and sim.stats.route_requests == 5
    _, records, summary = read_results(Path(result.json()["results"]))
    for record in records[:3]:
        assert record["status"] == "skipped"
        assert "disposition: sent Interested, the file now says Sale Done" in str(record["message"])
    assert all("differs" not in str(record["message"]) for record in records[3:])
    assert "skipped with different content: 3" in str(summary.get("Warning"))
    assert "skipped with different content: 3" in result.err


def test_notes_with_control_characters_given_back_in_the_results_workbook_are_no_change(cli, sim,
                                                                                          tmp_path: Path) -> None:
    """A note with a BEL character, shown as ␇ in the results workbook, is the same note when that workbook is
    given back: skipped as sent, not "the file now differs … --force would send it again"."""
    first = cli("run", write_csv(tmp_path / "calls.csv", [["1000", 5000, "Interested", "bell\x07 here"],
                                                           ["1001", 5001, "Interested", "plain"]]), *_base(sim),
                "--json")
    assert first.json()["counts"]["disposed"] == 2, first.err
    again = cli("run", first.json()["results"], *_base(sim), "--json")
    _, records, _ = read_results(Path(again.json()["results"]))
    assert [record["status"] for record in records] == ["skipped", "skipped"]
    assert "differs" not in str(records[0]["message"]) and "different content" not in again.err
    assert sim.stats.route_requests == 2


def test_the_ledger_keeps_what_was_sent_for_history(cli, sim, tmp_path: Path) -> None:
    """logID, disposition and notes of each call are in the ledger, for `history` and the page."""
    cli("run", write_csv(tmp_path / "calls.csv", [["C7", 42, "Callback", "ring at 5"]]), *_base(sim))
    with Ledger.open(default_ledger(), lock=False) as ledger:
        record = ledger.calls("C7")[0]
        event = ledger.events(call_id="C7")[0]
    assert (record.log_id, record.disposition, record.notes) == (42, "Callback", "ring at 5")
    assert (event.log_id, event.disposition, event.notes, event.status) == (42, "Callback", "ring at 5", "disposed")


def test_an_old_results_workbook_with_retry_unknown_sends_nothing_the_ledger_has_as_disposed(cli, simulator,
                                                                                              tmp_path: Path) -> None:
    """Run, settle the unknown with --retry-unknown, then the first results workbook again with
    --retry-unknown (twice): nothing the ledger has as disposed is sent again."""
    sim = simulator(scripts={"1001": [502]})
    first = cli("run", write_csv(tmp_path / "calls.csv", rows_of(3)), *_base(sim), "--json")
    assert first.json()["counts"]["unknown"] == 1
    assert cli("run", tmp_path / "calls.csv", *_base(sim), "--retry-unknown").code == 0
    assert sim.stats.received["1001"] == 2
    for _ in range(2):
        again = cli("run", first.json()["results"], *_base(sim), "--retry-unknown", "--json")
        assert again.code == 0 and again.json()["counts"]["skipped"] == 3
    assert sim.stats.route_requests == 4


def test_a_retry_unknown_row_whose_request_never_left_does_not_say_it_was_re_sent(cli, simulator,
                                                                                  tmp_path: Path) -> None:
    """An unknown row given back with --retry-unknown to a server that refuses connections: its message says it
    could not connect, not also that it was "re-sent with --retry-unknown" (nothing left)."""

    sim = simulator(scripts={"1001": [502]})
    first = cli("run", write_csv(tmp_path / "calls.csv", rows_of(3)), *_base(sim), "--json")
    port = free_port()
    again = cli("run", first.json()["results"], "--base-url", f"http://127.0.0.1:{port}", "--retry-unknown",
                "--retries", "0", "--json")
    _, records, _ = read_results(Path(again.json()["results"]))
    (row,) = [r for r in records if str(r["callID"]) == "1001"]
    assert row["status"] == "failed" and "could not connect" in row["message"]
    assert "re-sent" not in row["message"], row["message"]


def test_validate_after_a_run_shows_no_row_ready(cli, sim, tmp_path: Path) -> None:
    """`validate` with a target reads the ledger: rows `run` would skip are skipped, with run's message."""
    source = write_csv(tmp_path / "calls.csv", rows_of(4))
    cli("run", source, *_base(sim))
    checked = cli("validate", source, *_base(sim), "--json")
    assert checked.code == 0, checked.err
    assert checked.json()["counts"]["ready"] == 0 and checked.json()["counts"]["skipped"] == 4
    _, records, _ = read_results(Path(checked.json()["results"]))
    assert all("already disposed at" in str(record["message"]) for record in records)
    import re  # the time as people read it (local, to the second, with its offset), not the ledger's ISO form
    assert all(re.search(r"disposed at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4} \(", str(record["message"]))
               for record in records), records[0]["message"]


def test_validate_never_creates_a_ledger(cli, sim, tmp_path: Path) -> None:
    """`validate` with a target and no ledger yet shows every row ready and leaves no ledger behind."""
    checked = cli("validate", write_csv(tmp_path / "calls.csv", rows_of(2)), *_base(sim), "--json")
    assert checked.json()["counts"]["ready"] == 2
    assert not default_ledger().exists()


# --- unknowns that can be settled ---------------------------------------------------------------------------


def test_a_resent_unknown_answered_500_is_not_failed_and_never_sent_again(cli, simulator, tmp_path: Path) -> None:
    """Lost reply, --retry-unknown, 500 on the re-send: the row is unknown (probably disposed), not failed,
    and no later run sends it, with or without --retry-unknown."""
    sim = simulator(scripts={"1001": [502, 500]})
    source = write_csv(tmp_path / "calls.csv", rows_of(3))
    cli("run", source, *_base(sim))
    resent = cli("run", source, *_base(sim), "--retry-unknown", "--json")
    _, records, _ = read_results(Path(resent.json()["results"]))
    assert records[1]["status"] == "unknown" and "probably disposed" in str(records[1]["message"])
    assert "resolve 1001 --as disposed" in str(records[1]["message"])
    assert resent.json()["counts"]["failed"] == 0
    for flags in ((), ("--retry-unknown",)):
        later = cli("run", source, *_base(sim), *flags, "--json")
        assert later.json()["counts"]["unknown"] == 1
        _, again, _ = read_results(Path(later.json()["results"]))
        messages = [str(records[1]["message"]), str(again[1]["message"])]
    assert sim.stats.received["1001"] == 2
    for message in messages:  # what a person reads: one or two plain sentences, nothing said twice
        assert message.count(". ") <= 1 and message.count("re-sen") == 1 and message.count("probably") == 1, message


def test_resolve_records_who_and_why_and_decides_later_runs(cli, simulator, tmp_path: Path) -> None:
    """`resolve --as failed` makes a probably-disposed call sendable; `--as disposed` makes runs skip it;
    history keeps who and why."""
    sim = simulator(scripts={"1001": [502, 500], "1002": [502]})
    source = write_csv(tmp_path / "calls.csv", rows_of(3))
    cli("run", source, *_base(sim))
    disposed = cli("resolve", "1002", "--as", "disposed", *_base(sim))
    assert disposed.code == 0 and "recorded as disposed" in disposed.err
    cli("run", source, *_base(sim), "--retry-unknown")
    failed = cli("resolve", "1001", "--as", "failed", "--note", "not ended in Ryng", *_base(sim), "--json")
    assert failed.code == 0, failed.err
    assert failed.json()["resolved"][0]["was"] == "unknown"
    later = cli("run", source, *_base(sim), "--json")
    assert later.code == 0 and later.json()["counts"]["disposed"] == 1
    assert sim.stats.received["1001"] == 3 and sim.stats.received["1002"] == 1
    with Ledger.open(default_ledger(), lock=False) as ledger:
        event = next(e for e in ledger.events(call_id="1001") if e.who)
    assert event.why == "not ended in Ryng" and event.status == "failed"
    assert "warning" not in failed.err  # 1001 was left unknown: reopening it is what resolve is for
    slip = cli("resolve", "1000", "--as", "failed", *_base(sim))  # the server had answered 200 for 1000
    assert slip.code == 0
    assert ("warning: the server itself had confirmed 1000 disposed; if that call ID was a slip, undo it now: "
            "batch-dispose resolve 1000 --as disposed") in slip.err


def test_resolve_of_an_unknown_call_or_without_a_ledger_is_exit_2(cli, sim, tmp_path: Path) -> None:
    """resolve names what it does not know and records nothing: exit 2; while a run holds the lock: 75."""
    assert cli("resolve", "1000", "--as", "disposed", *_base(sim)).code == 2
    cli("run", write_csv(tmp_path / "calls.csv", rows_of(1)), *_base(sim))
    missing = cli("resolve", "1000", "9999", "--as", "disposed", *_base(sim))
    assert missing.code == 2 and "9999" in missing.err and "Traceback" not in missing.err
    with Ledger.open(default_ledger()):
        assert cli("resolve", "1000", "--as", "disposed", *_base(sim)).code == 75


# --- a damaged ledger is never silently a new one -----------------------------------------------------------


def _damage_a_page(path: Path) -> None:
    with closing(sqlite3.connect(path)) as db:
        db.execute("CREATE TABLE filler (x)")
        db.executemany("INSERT INTO filler VALUES (?)", [("x" * 500,)] * 400)
        db.commit()
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = bytearray(path.read_bytes())
    page = 4096
    for offset in range(page * 3, min(len(data), page * 6)):
        data[offset] = 0x5A
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", ["empty", "garbage", "foreign", "page"])
def test_a_damaged_ledger_stops_every_command_with_one_sentence(cli, sim, tmp_path: Path, damage: str) -> None:
    """A ledger truncated to 0 bytes, not SQLite, another program's database or with a damaged page: run,
    sweep, validate and history send nothing, exit 2, one sentence, no traceback; the file is untouched."""
    source = write_csv(tmp_path / "calls.csv", rows_of(3))
    ledger = default_ledger()
    cli("run", source, *_base(sim))
    if damage == "empty":
        ledger.write_bytes(b"")
    elif damage == "garbage":
        ledger.write_bytes(b"this is not a database\n" * 100)
    elif damage == "foreign":
        ledger.unlink()
        with closing(sqlite3.connect(ledger)) as db:
            db.execute("CREATE TABLE photos (id)")
    else:
        _damage_a_page(ledger)
    before = ledger.read_bytes()
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    waiting = write_csv(inbox / "more.csv", rows_of(2, start=7000))
    os.utime(waiting, (time.time() - 120, time.time() - 120))
    for args in (("run", source, *_base(sim), "--json"), ("validate", source, *_base(sim)),
                 ("sweep", inbox, *_base(sim)), ("history", "1000"),
                 ("resolve", "1000", "--as", "disposed", *_base(sim))):
        result = cli(*args)
        assert result.code == 2, (args, result.err)
        assert "Traceback" not in result.err and len(result.err.strip().splitlines()) == 1, result.err
        assert "ledger" in result.err and ("backup" in result.err or "--ledger" in result.err)
    assert json.loads(cli("run", source, *_base(sim), "--json").out)["exit_code"] == 2
    assert sim.stats.route_requests == 3
    assert ledger.read_bytes() == before
    assert waiting.is_file()  # the sweep left its file in the inbox


def test_a_healthy_ledger_is_read_whole_only_after_it_changed(cli, sim, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """SQLite's whole-file check (seconds for a ledger of a year's calls, read cold) runs once per change of the
    file, not on every command: not after a run closed the ledger, again after the file was replaced (a restore
    of a copy), then not again; `config`, the doctor, always reads it whole. Damage is still found: see above."""
    source = write_csv(tmp_path / "calls.csv", rows_of(3))
    cli("run", source, *_base(sim))
    checks: list[str] = []
    connect = sqlite3.connect

    def traced(*args, **kwargs):  # type: ignore[no-untyped-def]
        db = connect(*args, **kwargs)
        db.set_trace_callback(lambda sql: checks.append(sql) if "quick_check" in sql else None)
        return db

    monkeypatch.setattr(sqlite3, "connect", traced)
    assert cli("history", "1000").code == 0
    assert cli("validate", source, *_base(sim)).code == 0
    assert cli("run", source, *_base(sim)).code == 0  # all skipped: nothing sent again
    assert checks == []
    ledger = default_ledger()
    ledger.write_bytes(ledger.read_bytes())  # a restore of a copy: same bytes, a changed file
    assert cli("history", "1000").code == 0
    assert len(checks) == 1
    assert cli("history", "1000").code == 0
    assert len(checks) == 1
    assert cli("config", *_base(sim)).code in (0, 1)
    assert len(checks) == 2
    assert sim.stats.route_requests == 3


def test_a_run_folds_the_wal_into_the_ledger(cli, sim, tmp_path: Path) -> None:
    """After a run, the main ledger file alone holds everything (no -wal content left to lose)."""
    cli("run", write_csv(tmp_path / "calls.csv", rows_of(20)), *_base(sim))
    wal = default_ledger().with_name("ledger.sqlite-wal")
    assert not wal.exists() or wal.stat().st_size == 0
    copy = tmp_path / "copy.sqlite"
    copy.write_bytes(default_ledger().read_bytes())
    with closing(sqlite3.connect(copy)) as db:
        assert db.execute("SELECT count(*) FROM calls WHERE disposed_at IS NOT NULL").fetchone()[0] == 20


def test_schema_1_ledgers_are_migrated_in_place(tmp_path: Path) -> None:
    """A ledger of the previous version opens, gains the columns for what was sent, and keeps its calls."""
    path = tmp_path / "ledger.sqlite"
    _v1_ledger(path, "http://h", ["A"])
    with Ledger.open(path) as ledger:
        assert ledger.pragmas()["user_version"] == 2 == max(MIGRATIONS) + 1
        assert ledger.known("http://h", ["A"])["A"].disposed and ledger.known("http://h", ["A"])["A"].log_id is None


# --- local faults before the first request ------------------------------------------------------------------


def test_reports_dir_pointing_at_a_file_sends_nothing(cli, sim, tmp_path: Path) -> None:
    """--reports-dir naming a file: nothing sent, exit 2, one sentence, and the --json object."""
    (tmp_path / "notafolder").write_text("x")
    result = cli("run", write_csv(tmp_path / "calls.csv", rows_of(2)), *_base(sim), "--reports-dir",
                 tmp_path / "notafolder", "--json")
    assert result.code == 2 and result.json()["exit_code"] == 2
    assert "is a file, not a folder" in result.json()["error"]
    assert len(result.err.strip().splitlines()) == 1 and sim.stats.requests == 0


def test_a_ledger_folder_that_cannot_be_made_sends_nothing(cli, sim, tmp_path: Path) -> None:
    """--ledger inside something that is not a folder: nothing sent, exit 2, one sentence naming it."""
    (tmp_path / "state").write_text("x")
    result = cli("run", write_csv(tmp_path / "calls.csv", rows_of(2)), *_base(sim), "--ledger",
                 tmp_path / "state" / "ledger.sqlite")
    assert result.code == 2 and "ledger folder" in result.err
    assert len(result.err.strip().splitlines()) == 1 and sim.stats.requests == 0


def test_a_takeover_keeps_the_earliest_disposal_and_every_event(tmp_path: Path) -> None:
    """A call in both ledgers ends disposed (the old one's disposal wins over a later failure), with the
    events of both and no invented ones."""
    from batch_dispose.models import Outcome

    old = tmp_path / "reports" / "ledger.sqlite"
    _v1_ledger(old, "http://h", ["C1"])
    with Ledger.open(tmp_path / "user.sqlite") as ledger:
        run_id = ledger.begin_run("http://h", tmp_path / "x.csv", "sha")
        call = CallRequest(0, 2, "C1", 5, "Interested", "")
        ledger.commit("http://h", run_id, [], [call])
        ledger.commit("http://h", run_id, [(call, Outcome(Status.FAILED, "no", 500, 1, "2026-11-30T10:00:00.000Z"))],
                      [])
        assert "1 calls merged" in str(ledger.take_over(old))
        record = ledger.calls("C1")[0]
        assert record.status == "disposed" and record.disposed_at == "2026-11-29T08:00:01.000Z"
        assert sorted(event.status for event in ledger.events(call_id="C1")) == ["disposed", "failed"]
        assert ledger.take_over(old) is None  # renamed aside: not merged twice


def test_history_shows_what_was_sent_and_who_resolved(cli, simulator, tmp_path: Path) -> None:
    """`history CALLID` shows the logID, disposition and notes sent, and who recorded a resolve and why."""
    sim = simulator(scripts={"C7": [502]})
    cli("run", write_csv(tmp_path / "calls.csv", [["C7", 42, "Callback", "ring at 5"]]), *_base(sim))
    cli("resolve", "C7", "--as", "disposed", "--note", "seen ended in Ryng", *_base(sim))
    shown = cli("history", "C7")
    assert shown.code == 0
    assert "logID 42" in shown.out and "Callback" in shown.out and "ring at 5" in shown.out
    assert "seen ended in Ryng" in shown.out
    resolved = [line for line in shown.out.splitlines() if "resolve by" in line]
    assert len(resolved) == 1 and resolved[0].count("seen ended in Ryng") == 1, shown.out  # one clean line
    assert resolved[0].rstrip().endswith("C7: disposed (checked in Ryng: seen ended in Ryng)")


def test_call_history_answers_from_the_users_ledger_without_one_too(cli, sim, tmp_path: Path) -> None:
    """The library's "did call X go through?" (the page's and `history`'s) gives the state, what was sent and
    the outcomes, and nothing (no error, no new ledger) before any run."""
    from batch_dispose.settings import Settings
    from batch_dispose.web.service import call_history

    settings = Settings(base_url=sim.base_url, reports_dir=tmp_path / "reports")
    assert call_history(settings, "1000")["known"] is False
    assert not default_ledger().exists()
    cli("run", write_csv(tmp_path / "calls.csv", rows_of(1)), *_base(sim))
    answer = call_history(settings, "1000")
    host = answer["hosts"][0]
    assert host["disposed_at"] and host["sent"]["logID"] == 5000 and answer["events"][0]["status"] == "disposed"


def test_history_after_an_upgrade_answers_from_the_ledger_at_its_old_place(cli, sim, tmp_path: Path) -> None:
    """Before the first run of the new version merges reports/ledger.sqlite in, "did call X go through?" is
    answered from it (the CLI and the page), not "no record": an upgrade never makes a sent call look unsent."""
    from batch_dispose.settings import Settings
    from batch_dispose.web.service import call_history

    old = tmp_path / "reports" / "ledger.sqlite"
    _v1_ledger(old, sim.base_url, ["1000"])
    shown = cli("history", "1000")
    assert shown.code == 0, shown.err
    assert f"1000 on {sim.base_url}: disposed" in shown.out and str(old) in shown.out
    assert cli("history", "1000", "--json").json()["calls"]["1000"]["known"] is True
    assert call_history(Settings(base_url=sim.base_url, reports_dir=tmp_path / "reports"), "1000")["known"] is True
    assert not default_ledger().exists()  # reading never makes the new ledger

    old.rename(tmp_path / "kept.sqlite")  # the user's ledger now exists (a run), and an old one appears beside it
    cli("run", write_csv(tmp_path / "calls.csv", [["2000", 7, "Callback", ""]]), *_base(sim))
    (tmp_path / "kept.sqlite").rename(old)
    both = cli("history", "1000", "2000", "--json").json()["calls"]
    assert both["1000"]["known"] and both["1000"]["ledger"] == str(old)
    assert both["2000"]["known"] and "ledger" not in both["2000"]
    lines = cli("history", "1000", "2000").out
    assert lines.index(f"2000 on {sim.base_url}: disposed") < lines.index("old place") < lines.index("1000 on ")
