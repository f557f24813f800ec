"""Saying what it is doing: progress while replies are awaited, the stop line, each file's summary on time."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from batch_dispose.cli import main
from batch_dispose.credentials import Secret
from batch_dispose.job import QuietReporter, run_files
from batch_dispose.models import Activity
from batch_dispose.progress import LineReporter, Watch, activity_text
from batch_dispose.settings import Settings
from tests.conftest import TOKEN, rows_of, write_csv


def test_cron_lines_keep_coming_while_every_request_hangs(simulator, tmp_path: Path) -> None:
    """Without a terminal, progress lines keep coming while no reply arrives, saying how many are awaited."""
    sim = simulator(hang_rate=1.0)
    source = write_csv(tmp_path / "calls.csv", rows_of(3))
    stream = io.StringIO()
    settings = Settings(base_url=sim.base_url, concurrency=3, timeout=2.0, reports_dir=tmp_path / "reports",
                        ledger=tmp_path / "ledger.sqlite")
    asyncio.run(run_files([source], settings, Secret(TOKEN), reporter=LineReporter(stream, every=0.4)))
    waiting = [line for line in stream.getvalue().splitlines() if "waiting for 3 replies" in line]
    assert len(waiting) >= 2, stream.getvalue()
    assert "0/3 done" in waiting[0]


def test_the_stop_line_says_how_many_replies_and_the_longest_wait() -> None:
    """Ctrl-C's line names the replies awaited and the most it can take, from the run's last tick."""
    clock = [100.0]
    watch = Watch(QuietReporter(), clock=lambda: clock[0])
    assert "no new requests" in watch.stopping_line()
    watch.tick(Activity(in_flight=4, oldest_s=9.0, longest_left_s=28.4))
    clock[0] += 0.4
    assert watch.stopping_line() == ("stopping: no new requests; waiting for 4 replies, at most 28 s; "
                                     "Ctrl-C again to quit at once")


def test_a_capped_retry_after_says_what_it_waits_for() -> None:
    """A server asking for a day is waited 60 s at most, and the progress text says so."""
    text = activity_text(Activity(waiting=30, server_wait_s=58.0, server_asked_s=86_400.0))
    assert text == "30 to retry; server asked to wait: 58 s (it asked for 86400 s)"


def test_sigterm_line_names_the_replies_in_flight(simulator, tmp_path: Path) -> None:
    """SIGTERM while 4 requests hang: stderr says it waits for 4 replies and at most how long, then it ends."""
    sim = simulator(hang_rate=1.0)
    source = write_csv(tmp_path / "calls.csv", rows_of(20))
    env = {**os.environ, "RYNG_ACCESS_TOKEN": TOKEN}
    run = subprocess.Popen([sys.executable, "-m", "batch_dispose", "run", str(source), "--base-url", sim.base_url,
                            "--concurrency", "4", "--timeout", "4", "--quiet"], cwd=tmp_path, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while sim.stats.route_requests < 4:
        assert time.monotonic() < deadline, "the run never sent"
        time.sleep(0.01)
    time.sleep(1.2)  # a tick or two
    run.send_signal(signal.SIGTERM)
    _, err = run.communicate(timeout=30)
    assert "stopping: no new requests; waiting for 4 replies, at most" in err, err
    assert "Ctrl-C again to quit at once" in err


class _Timed(io.StringIO):
    """stderr that notes how many requests the server had seen when each line was written."""

    def __init__(self, sim) -> None:  # type: ignore[no-untyped-def]
        super().__init__()
        self.sim, self.seen = sim, []  # type: ignore[var-annotated]

    def write(self, text: str) -> int:
        self.seen.append((text, self.sim.stats.route_requests))
        return super().write(text)


def test_run_of_two_files_prints_each_summary_when_that_file_ends(simulator, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """`run A B`: A's summary is on stderr before B's first request is sent; --json stays one object."""
    sim = simulator()
    first = write_csv(tmp_path / "first.csv", rows_of(3))
    second = write_csv(tmp_path / "second.csv", rows_of(3, start=5000))
    monkeypatch.setenv("RYNG_ACCESS_TOKEN", TOKEN)
    monkeypatch.chdir(tmp_path)
    out, err = io.StringIO(), _Timed(sim)
    code = main(["run", str(first), str(second), "--base-url", sim.base_url, "--json", "--quiet"], stdout=out,
                stderr=err)
    assert code == 0
    summary_of_first = next(seen for text, seen in err.seen if text.startswith("first.csv: 3 rows"))
    assert summary_of_first == 3
    assert out.getvalue().count("\n") == 1 and out.getvalue().startswith("{")
