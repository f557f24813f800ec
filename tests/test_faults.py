"""Misbehaving servers, over real sockets: safe retries, the retry budget, the rate limit, timeouts."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.conftest import free_port, read_results, rows_of, write_csv

# callID -> (what the server does, attempt by attempt), expected status, requests the server sees, message part
CLASSIFICATION = [
    ("ok", [200], "disposed", 1, "Call disposed and ended."),
    ("forbidden", [403], "unauthorized", 1, "rejected the access token"),
    ("error500", [500], "failed", 1, "Failed to dispose of call."),
    ("bad400", [400], "failed", 1, "refused the request (400"),
    ("gone404", [404], "failed", 1, "refused the request (404"),
    ("busy429", [429, 200], "disposed", 2, "Call disposed"),
    ("down503", [503, 503, 200], "disposed", 3, "Call disposed"),
    ("gateway502", [502, 200], "unknown", 1, "--retry-unknown"),
    ("timeout504", [504, 200], "unknown", 1, "504"),
    ("html", ["html", 200], "unknown", 1, "Bad Gateway"),
    ("html200", ["html200", 200], "unknown", 1, "not with the API's reply"),
    ("empty200", ["empty200", 200], "unknown", 1, "empty body"),
    ("reset", ["reset", 200], "unknown", 1, "connection broke"),
    ("closed", ["close", 200], "unknown", 1, "connection broke"),
    ("hung", ["hang", 200], "unknown", 1, "no reply within 0.5 s"),
]


@pytest.fixture
def classified(cli, simulator, tmp_path: Path):  # type: ignore[no-untyped-def]
    """One run over a server scripted per callID (one row per row of the classification table)."""
    sim = simulator(scripts={name: actions for name, actions, *_ in CLASSIFICATION}, retry_after="0")
    source = write_csv(tmp_path / "faults.csv", [[name, n + 1, "Interested", ""]
                                                 for n, (name, *_) in enumerate(CLASSIFICATION)])
    result = cli("run", source, "--base-url", sim.base_url, "--timeout", "0.5", "--concurrency", "32", "--json")
    _, records, _ = read_results(Path(result.json()["results"]))
    return sim, {record["callID"]: record for record in records}


@pytest.mark.parametrize("name, actions, status, requests, message", CLASSIFICATION,
                         ids=[row[0] for row in CLASSIFICATION])
def test_every_answer_is_classified_and_only_safe_ones_retried(classified, name: str, actions: list[object],
                                                               status: str, requests: int, message: str) -> None:
    """Each kind of answer ends the row as the classification table says, with exactly the requests
    the server counted: retried only when the request provably did not take effect."""
    sim, records = classified
    assert records[name]["status"] == status
    assert sim.stats.received[name] == requests
    assert records[name]["attempts"] == requests
    assert message in records[name]["message"]


def test_503_without_retry_after_uses_up_retries_then_fails(cli, simulator, tmp_path: Path) -> None:
    """A 503 that does not say when to come back counts against --retries; the row then fails, safe to re-run."""
    sim = simulator(scripts={"1000": [503, 503, 503]}, retry_after=None)
    source = write_csv(tmp_path / "calls.csv", rows_of(1))
    result = cli("run", source, "--base-url", sim.base_url, "--retries", "1", "--json")
    _, records, _ = read_results(Path(result.json()["results"]))
    assert sim.stats.received["1000"] == 2
    assert records[0]["status"] == "failed" and "gave up after 2 attempts" in records[0]["message"]
    assert "safe to re-run" in records[0]["message"]


def test_connection_refused_is_retried_then_failed_as_safe_to_rerun(cli, tmp_path: Path) -> None:
    """Nothing listening: every attempt fails to connect, the row fails saying it is safe to re-run."""
    port = free_port()
    source = write_csv(tmp_path / "calls.csv", rows_of(1))
    result = cli("run", source, "--base-url", f"http://127.0.0.1:{port}", "--retries", "1", "--json")
    _, records, _ = read_results(Path(result.json()["results"]))
    assert records[0]["status"] == "failed" and records[0]["attempts"] == 2
    assert "could not connect" in records[0]["message"] and "safe to re-run" in records[0]["message"]


def test_a_steady_minority_of_503_and_429_is_ridden_through_in_parallel(cli, simulator, tmp_path: Path) -> None:
    """10% 503s and 5% 429s with Retry-After: 1: every row disposed once, and the run takes about a
    retry wait longer than a clean one, not the sum of the waits."""
    rows = 400
    clean = simulator(latency_ms=5)
    source = write_csv(tmp_path / "calls.csv", rows_of(rows))
    started = time.monotonic()
    assert cli("run", source, "--base-url", clean.base_url, "--ledger", tmp_path / "clean.sqlite").code == 0
    clean_s = time.monotonic() - started

    sim = simulator(latency_ms=5, status_mix={503: 0.10, 429: 0.05}, retry_after="1", seed=7)
    started = time.monotonic()
    result = cli("run", source, "--base-url", sim.base_url, "--json")
    faulty_s = time.monotonic() - started
    assert result.code == 0, result.err
    assert result.json()["counts"]["disposed"] == rows
    assert set(sim.stats.disposed.values()) == {1} and len(sim.stats.disposed) == rows
    retries = sim.stats.route_requests - rows
    assert retries >= 40
    assert faulty_s < clean_s + 6.0, f"{faulty_s:.1f}s vs {clean_s:.1f}s clean: waits were not overlapped"
    assert faulty_s < retries * 1.0 / 8  # far less than the waits spread over the slots


def test_a_server_down_stops_within_the_budget_rest_pending(cli, simulator, tmp_path: Path) -> None:
    """503 to everything: the run stops within the retry budget, the rest pending, exit 1, and one
    line says the server looks unavailable."""
    rows = 2000
    sim = simulator(status_mix={503: 1.0}, retry_after="1")
    source = write_csv(tmp_path / "calls.csv", rows_of(rows))
    started = time.monotonic()
    result = cli("run", source, "--base-url", sim.base_url, "--json")
    assert time.monotonic() - started < 10
    assert result.code == 1
    counts = result.json()["counts"]
    assert counts["pending"] > rows / 2 and counts["disposed"] == 0
    assert sim.stats.route_requests <= counts["pending"] + counts["failed"] + 500 // 5
    assert sim.stats.route_requests - len(sim.stats.received) <= 100  # retries paid from the budget
    assert "server looks unavailable" in result.err


def test_rate_limit_is_never_exceeded_as_the_server_counts(cli, simulator, tmp_path: Path) -> None:
    """--rate 20: no one-second window on the server holds more than 20 requests (how fast is bench/'s job)."""
    rows = 60
    sim = simulator()
    source = write_csv(tmp_path / "calls.csv", rows_of(rows))
    result = cli("run", source, "--base-url", sim.base_url, "--rate", "20", "--json")
    assert result.code == 0
    assert sim.stats.max_per_second <= 20


@pytest.mark.parametrize(("limit", "retry_after", "concurrency", "strict"),
                         [(10, "1", 8, False), (5, None, 16, False), (10, "1", 16, True)],
                         ids=["10-per-s-retry-after-1-c8", "5-per-s-no-retry-after-c16", "10-per-s-429s-count-c16"])
def test_a_rate_limited_server_is_ridden_out_to_the_last_row(cli, simulator, tmp_path: Path, limit: int,
                                                             retry_after: str | None, concurrency: int,
                                                             strict: bool) -> None:
    """A server that answers 429 above N requests/s (even one counting the 429s against the limit) is slow,
    not down: every row ends disposed, once, exit 0, in at most 1.5 x rows/N + 5 s."""
    rows = 4 * limit  # four windows of the limit: enough to back off and grow back
    sim = simulator(rate_limit=limit, retry_after=retry_after, rate_limit_counts_rejected=strict)
    source = write_csv(tmp_path / "calls.csv", rows_of(rows))
    started = time.monotonic()
    result = cli("run", source, "--base-url", sim.base_url, "--concurrency", concurrency, "--json")
    elapsed = time.monotonic() - started
    assert result.code == 0, result.err
    assert result.json()["counts"]["disposed"] == rows
    assert set(sim.stats.disposed.values()) == {1} and len(sim.stats.disposed) == rows
    assert elapsed <= 1.5 * rows / limit + 5


def test_a_server_that_only_says_429_stops_as_unavailable(cli, simulator, tmp_path: Path) -> None:
    """429 to everything, never a success: the run stops in bounded time, the rest pending, saying the
    server looks unavailable."""
    sim = simulator(status_mix={429: 1.0}, retry_after="1")
    source = write_csv(tmp_path / "calls.csv", rows_of(300))
    started = time.monotonic()
    result = cli("run", source, "--base-url", sim.base_url, "--json")
    assert time.monotonic() - started < 20
    assert result.code == 1 and result.json()["counts"]["disposed"] == 0
    assert "server looks unavailable" in result.err
    assert sim.stats.route_requests < 300


def test_refused_connections_stop_the_run_saying_it_could_not_connect(cli, tmp_path: Path) -> None:
    """Nothing listening: the run stops soon, and says it could not connect (not that the server was busy)."""
    port = free_port()
    source = write_csv(tmp_path / "calls.csv", rows_of(300))
    started = time.monotonic()
    result = cli("run", source, "--base-url", f"http://127.0.0.1:{port}", "--json")
    assert time.monotonic() - started < 20
    assert result.code == 1 and result.json()["counts"]["pending"] > 0
    assert f"stopped: could not connect to the server (connection refused by 127.0.0.1:{port}); check" in result.err
    assert result.json()["stop_reason"] == "unreachable"  # why, in the JSON too: not just "exit 1, rows left"
    assert result.json()["stopped"].startswith(f"stopped: could not connect to the server (connection refused by "
                                               f"127.0.0.1:{port})")
    assert "busy" not in result.err
    _, records, _ = read_results(Path(result.json()["results"]))
    tried = [r["message"] for r in records if r["attempts"]]
    assert tried and all(f"connection refused by 127.0.0.1:{port})" in m for m in tried), tried[:1]  # pending or failed
    assert not any("ssl:default" in str(r["message"]) or "[Connect call" in str(r["message"]) for r in records)


def test_a_small_file_against_a_refused_port_names_the_cause_once_per_row_in_plain_words(cli, tmp_path: Path) -> None:
    """Few rows give up one by one (failed, not a stopped run): each message says what happened and where,
    without the HTTP library's own wording."""
    port = free_port()
    result = cli("run", write_csv(tmp_path / "calls.csv", rows_of(3)), "--base-url", f"http://127.0.0.1:{port}",
                 "--retries", "1", "--json")
    _, records, _ = read_results(Path(result.json()["results"]))
    assert [r["status"] for r in records] == ["failed"] * 3
    assert result.err.count("could not connect") == 1  # one line for the three rows: "rows 2, 3, 4  failed: …"
    assert f"  rows 2, 3, 4  failed: could not connect to the server (connection refused by 127.0.0.1:{port})" \
        in result.err
    assert records[0]["message"] == (f"could not connect to the server (connection refused by 127.0.0.1:{port}); the "
                                     f"call was not sent, so it is safe to re-run (gave up after 2 attempts)")


def test_server_side_rate_limit_is_met_by_slowing_down(cli, simulator, tmp_path: Path) -> None:
    """A server that answers 429 above 30 requests/s: every row still ends disposed, once."""
    sim = simulator(rate_limit=50, retry_after="1", latency_ms=2)
    source = write_csv(tmp_path / "calls.csv", rows_of(150))
    result = cli("run", source, "--base-url", sim.base_url, "--json")
    assert result.code == 0, result.err
    assert set(sim.stats.disposed.values()) == {1} and len(sim.stats.disposed) == 150
    assert sim.stats.answers["429"] < 150, "it kept hammering the limit instead of slowing down"


def test_hanging_server_ends_within_the_timeout_rows_unknown(cli, simulator, tmp_path: Path) -> None:
    """A server that never answers: the run ends after about one timeout, hung rows unknown, the rest
    pending (each more row would only be one more unknown)."""
    sim = simulator(hang_rate=1.0)
    source = write_csv(tmp_path / "calls.csv", rows_of(40))
    started = time.monotonic()
    result = cli("run", source, "--base-url", sim.base_url, "--timeout", "1", "--concurrency", "4", "--json")
    elapsed = time.monotonic() - started
    assert 1.0 <= elapsed < 3.0
    counts = result.json()["counts"]
    assert counts["unknown"] == sim.stats.route_requests == 4 and counts["pending"] == 36
    assert result.code == 1 and "stopped answering" in result.err


def test_a_few_hung_requests_do_not_hold_up_the_run(cli, simulator, tmp_path: Path) -> None:
    """A few hung requests among many: they end unknown after the timeout; everything else is disposed."""
    sim = simulator(scripts={"1010": ["hang"], "1050": ["hang"]})
    source = write_csv(tmp_path / "calls.csv", rows_of(200))
    started = time.monotonic()
    result = cli("run", source, "--base-url", sim.base_url, "--timeout", "1", "--json")
    assert time.monotonic() - started < 3.5
    assert result.json()["counts"] | {} == {"disposed": 198, "skipped": 0, "unauthorized": 0, "failed": 0,
                                            "invalid": 0, "pending": 0, "unknown": 2}


def test_unknown_is_never_resent_automatically_and_retry_unknown_says_so(cli, simulator, tmp_path: Path) -> None:
    """A 502 leaves the row unknown; the next run does not send it; --retry-unknown sends it and the
    results say it was re-sent."""
    sim = simulator(scripts={"1001": [502]})
    source = write_csv(tmp_path / "calls.csv", rows_of(3))
    first = cli("run", source, "--base-url", sim.base_url, "--json")
    assert first.code == 1 and first.json()["counts"]["unknown"] == 1
    second = cli("run", source, "--base-url", sim.base_url, "--json")
    assert second.json()["counts"] == {"disposed": 0, "skipped": 2, "unauthorized": 0, "failed": 0, "invalid": 0,
                                       "pending": 0, "unknown": 1}
    assert sim.stats.received["1001"] == 1
    third = cli("run", source, "--base-url", sim.base_url, "--retry-unknown", "--json")
    assert third.code == 0 and sim.stats.received["1001"] == 2
    _, records, _ = read_results(Path(third.json()["results"]))
    assert records[1]["status"] == "disposed" and "re-sent with --retry-unknown" in records[1]["message"]


@pytest.mark.parametrize("value", ["²", "-1", "1.5", "soon", "99999999999999999999"])
def test_a_malformed_retry_after_falls_back_to_the_backoff(cli, simulator, tmp_path: Path, value: str) -> None:
    """`Retry-After: ²` (or negative, decimal, garbage, absurd) is no Retry-After: the row backs off and is sent."""
    sim = simulator(scripts={"1000": [429, 200]}, retry_after=value)
    source = write_csv(tmp_path / "calls.csv", rows_of(1))
    started = time.monotonic()
    result = cli("run", source, "--base-url", sim.base_url, "--json")
    assert result.code == 0, result.err
    assert sim.stats.received["1000"] == 2 and time.monotonic() - started < 10
