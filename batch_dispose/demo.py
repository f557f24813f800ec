"""`batch-dispose demo`: the simulator and sample_data/ through `run`, end to end, checked.

Starts the simulator on a free loopback port with two calls set to fail, runs
`sample_data/end_of_day.xlsx` through the real `run` command (token from a private token file, a
fresh ledger), then checks against what the simulator received that everything behaved as told.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path
from typing import TextIO

from .models import ExitCode

SAMPLE = Path("sample_data") / "end_of_day.xlsx"
FAILING_CALLS = frozenset({"4471093", "4471107"})  # two valid rows of the sample, answered 500 by the simulator


def sample_file() -> Path:
    """sample_data/end_of_day.xlsx in the working folder, else beside the package (a source checkout)."""
    for base in (Path.cwd(), Path(__file__).resolve().parent.parent):
        if (base / SAMPLE).is_file():
            return base / SAMPLE
    raise FileNotFoundError(SAMPLE)


def run_demo(*, reports_dir: Path, out: TextIO, err: TextIO) -> int:
    from .cli import main
    from .simulator import SimConfig, start_in_thread

    try:
        sample = sample_file()
    except FileNotFoundError:
        print(f"batch-dispose demo: {SAMPLE} not found; run the demo from the project folder.", file=err)
        return ExitCode.USAGE
    token = os.urandom(12).hex()
    config = SimConfig(token=token, latency_ms=20, jitter_ms=10, fail_ids=FAILING_CALLS, seed=1)
    with tempfile.TemporaryDirectory(prefix="batch-dispose-demo-") as scratch, start_in_thread(config) as sim:
        token_file = Path(scratch) / "token"
        token_file.write_text(token + "\n")
        token_file.chmod(0o600)
        print(f"demo: Ryng simulator on {sim.base_url} ({', '.join(sorted(FAILING_CALLS))} set to fail)", file=err)
        ledger = Path(scratch) / "ledger.sqlite"  # a fresh one: the run warns that it has never seen this host
        print(f"demo: batch-dispose run {sample} --base-url {sim.base_url} --token-file … --ledger {ledger} --json",
              file=err)
        captured = io.StringIO()
        code = main(["run", str(sample), "--base-url", sim.base_url, "--token-file", str(token_file),
                     "--reports-dir", str(reports_dir), "--ledger", str(ledger),
                     "--json"], stdout=captured, stderr=err)
        summary = json.loads(captured.getvalue())
        problems = _check(summary, sim.stats)
    if problems:
        for problem in problems:
            print(f"demo: NOT AS EXPECTED: {problem}", file=err)
        return ExitCode.ROWS_LEFT
    print(f"demo: as expected (exit code {code}: some rows are invalid or failed on purpose). "
          f"Open {summary['results']}", file=err)
    return ExitCode.OK


def _check(summary: dict, stats) -> list[str]:  # type: ignore[no-untyped-def, type-arg]
    """What the demo promises: invalid rows never sent, the two failing calls failed, the rest disposed once."""
    counts = summary["counts"]
    problems = []
    if summary["exit_code"] != ExitCode.ROWS_LEFT:
        problems.append(f"run exited {summary['exit_code']}, expected 1 (rows invalid or failed on purpose)")
    if counts.get("failed") != len(FAILING_CALLS):
        problems.append(f"{counts.get('failed')} rows failed, expected {len(FAILING_CALLS)}")
    if not counts.get("invalid"):
        problems.append("no row was invalid, but the sample has invalid rows on purpose")
    sent = counts.get("disposed", 0) + counts.get("failed", 0)
    if counts.get("disposed", 0) + counts.get("failed", 0) + counts.get("invalid", 0) != summary["rows"]:
        problems.append(f"statuses other than disposed/failed/invalid: {counts}")
    if stats.route_requests != sent or stats.off_route:
        problems.append(f"the simulator received {stats.route_requests} end-calls ({stats.off_route} off route) "
                        f"for {sent} rows sent")
    if sum(stats.disposed.values()) != counts.get("disposed") or any(n != 1 for n in stats.disposed.values()):
        problems.append("the simulator's disposed calls do not match the disposed rows one to one")
    return problems
