"""The run log: never follows a planted symlink, a full disk is one sentence, a killed run's log is folded."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from batch_dispose.errors import RunLogError
from batch_dispose.models import Outcome, Status
from batch_dispose.runlog import RunLog
from tests.conftest import rows_of, write_csv

STARTED = datetime(2026, 11, 30, 6, 0, 0, tzinfo=UTC)


def test_a_planted_symlink_is_never_followed(tmp_path: Path) -> None:
    """A symlink planted where the log will be created is left alone: the victim file is not written."""
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    reports = tmp_path / "reports"
    reports.mkdir()
    planted = reports / f"calls-results-20261130-060000.{os.getpid()}.log"
    planted.symlink_to(victim)
    log = RunLog(reports, "calls", STARTED)
    log.note("hello")
    log.finish(None, ["done"])
    assert victim.read_text() == "precious\n"
    assert log.path != planted and "hello" in log.path.read_text()


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_full_disk_is_one_sentence_not_a_traceback(tmp_path: Path) -> None:
    """Writing the log on a full disk raises RunLogError: one sentence naming the log and what to do."""
    log = RunLog(tmp_path, "calls", STARTED, opener=lambda path, flags, mode: os.open("/dev/full", os.O_WRONLY))
    with pytest.raises(RunLogError) as caught:
        for row in range(2000):
            log.outcome(row, f"C{row}", Outcome(Status.DISPOSED, "Call disposed and ended.", 200, 1))
        log.finish(None, ["done"])
    assert "could not be written" in str(caught.value) and "Free some disk space" in str(caught.value)
    log.close()


def dead_pid() -> int:
    """The process ID of a process that has ended."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_the_log_of_a_killed_run_is_folded_and_named(cli, sim, tmp_path: Path) -> None:
    """A `*.PID.log` left by a killed run is renamed `*-interrupted.log` by the next run, which says so."""
    reports = tmp_path / "reports"
    reports.mkdir()
    orphan = reports / f"calls-results-20261129-170000.{dead_pid()}.log"
    orphan.write_text("2026-11-29T17:00:00.000Z  row 2  callID 1000  disposed 200  attempts=1\n")
    source = write_csv(tmp_path / "calls.csv", rows_of(2))
    result = cli("run", source, "--base-url", sim.base_url)
    assert result.code == 0, result.err
    folded = reports / "calls-results-20261129-170000-interrupted.log"
    assert not orphan.exists() and "callID 1000" in folded.read_text()
    assert folded.name in result.err
    assert not list(reports.glob("*.*.log")), "the run's own log took its final name"


def test_a_run_killed_mid_way_leaves_the_lines_it_had_written_a_second_before(tmp_path: Path) -> None:
    """The log reaches the disk as the run goes, at least once a second, not only when 8 KB have piled up: a run
    killed after a few rows leaves their lines (a 0-byte interrupted log told nothing)."""
    log = RunLog(tmp_path, "calls", STARTED)
    ok = Outcome(Status.DISPOSED, "Call disposed and ended.", 200, 1, "2026-11-30T06:00:01.000Z")
    log.outcome(2, "1000", ok)
    time.sleep(1.05)
    log.outcome(3, "1001", ok)
    on_disk = log.path.read_text(encoding="utf-8")  # read by another handle, the log still open (as after a kill)
    assert "callID 1000  disposed 200" in on_disk and "callID 1001  disposed 200" in on_disk
    log.close()
