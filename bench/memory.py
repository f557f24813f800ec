"""Memory: peak RSS and time of whole commands at 100,000 and 1,048,576 rows (issue 11, bounded memory).

    python bench/memory.py                 # validate at 100k and 1M rows: CSV, XLSX, data and helper-only rows
    python bench/memory.py --quick         # the same at 10k and 50k rows (a smoke run)
    python bench/memory.py --tree ../main  # the same commands on another checkout (today's figures)

Each command is a subprocess on core 0, its peak RSS taken from its own rusage (os.wait4):
`batch-dispose validate FILE --quiet` on
- data rows: every row a call (callID text, logID number, disposition, short notes, an agent column);
- helper-only rows: 10 calls, then rows where only a helper column holds something (a formula's 0
  dragged down the sheet), the shape that cost 1.4-1.5 GB before;
and one `batch-dispose run` of 100,000 CSV rows against bench/lightserver.py (latency 0, core 1).
The first line is the floor: the interpreter with every module a run imports. The baseline column
holds the figures measured before issue 11 (README "Performance").
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    PYTHON,
    LightServer,
    machine,
    measure,
    pinning_note,
    scratch,
    size_mb,
    table,
    tool_env,
    verdict,
    write_sheet,
)

IMPORTS = ("import batch_dispose.cli, batch_dispose.job, batch_dispose.loading, batch_dispose.schema, "
           "batch_dispose.client, batch_dispose.runner, batch_dispose.ledger, batch_dispose.workbook, tqdm")
HEADER = ["callID", "logID", "disposition", "notes", "agent"]
HELPER_HEADER = [*HEADER, "helper"]
MILLION = 1_048_575  # rows under the header: the sheet's last row is Excel's 1,048,576
#: Peak RSS (MB) before issue 11, from the issue's probe (README "Performance"), for 1M rows.
BASELINE = {("csv", "data", MILLION): "745", ("xlsx", "data", MILLION): "755",
            ("csv", "helper", MILLION): "1,400-1,500", ("xlsx", "helper", MILLION): "1,400-1,500"}
GOAL_MB = 400
LIMIT_MB = 1024


def data_rows(count: int):  # type: ignore[no-untyped-def]
    for n in range(count):
        yield [str(40_000_000 + n), 100_000 + n, ("Interested", "Callback", "Not Interested")[n % 3],
               f"note {n}", f"agent {n % 40}"]


def helper_rows(count: int):  # type: ignore[no-untyped-def]
    yield from ([*row, 1] for row in data_rows(10))
    for _ in range(count - 10):
        yield [None, None, None, None, None, 0]


def write(path: Path, kind: str, count: int) -> Path:
    header, body = (HEADER, data_rows(count)) if kind == "data" else (HELPER_HEADER, helper_rows(count))
    if path.suffix == ".csv":
        with open(path, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(header)
            writer.writerows(["" if cell is None else cell for cell in row] for row in body)
        return path
    return write_sheet(path, header, body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", default=f"100000,{MILLION}", help="row counts, comma-separated")
    parser.add_argument("--quick", action="store_true", help="10,000 and 50,000 rows")
    parser.add_argument("--tree", type=Path, help="measure the batch_dispose of this checkout (PYTHONPATH)")
    parser.add_argument("--formats", default="csv,xlsx", help="csv, xlsx or both")
    parser.add_argument("--no-run", action="store_true", help="skip the 100k-row `run`")
    args = parser.parse_args()
    counts = [10_000, 50_000] if args.quick else [int(text) for text in args.rows.split(",")]
    env = tool_env()
    if args.tree is not None:
        env["PYTHONPATH"] = str(args.tree.resolve())
    command = [PYTHON, "-m", "batch_dispose"]
    print(f"machine: {machine()}\n{pinning_note()}\ntree: {args.tree or 'this checkout'}")
    body: list[list[object]] = []
    checks: list[list[object]] = []
    with scratch("bench-memory-") as folder:
        floor = measure([PYTHON, "-c", IMPORTS], env=env, cwd=folder)
        body.append(["python + every module a run imports", "", "", "", floor.wall_s, floor.peak_rss_mb, ""])
        for count in counts:
            for fmt in args.formats.split(","):
                for kind in ("data", "helper"):
                    path = write(folder / f"{kind}-{count}.{fmt}", kind, count)
                    done = measure([*command, "validate", str(path), "--quiet", "--json",
                                    "--reports-dir", str(folder / "reports")], env=env, cwd=folder)
                    outcome = f"exit {done.returncode}"
                    if done.returncode in (0, 1):
                        shown = json.loads(done.stdout)
                        outcome = f"{shown['rows']:,} calls"
                    else:
                        outcome += ": " + done.stderr.strip().splitlines()[-1][:80] if done.stderr.strip() else ""
                    body.append([f"validate {fmt} {kind}", count, size_mb(path), outcome, done.wall_s,
                                 done.peak_rss_mb, BASELINE.get((fmt, kind, count), "")])
                    if count == MILLION:
                        checks.append([f"validate {fmt} {kind} at 1M rows", f"{done.peak_rss_mb:.0f} MB",
                                       f"< {LIMIT_MB} MB (goal {GOAL_MB})",
                                       verdict(done.peak_rss_mb < LIMIT_MB and done.returncode in (0, 1))])
                    path.unlink()
                    for produced in (folder / "reports").glob("*"):
                        produced.unlink()
        if not args.no_run:
            count = 10_000 if args.quick else 100_000
            path = write(folder / f"run-{count}.csv", "data", count)
            with LightServer(0) as server:
                done = measure([*command, "run", str(path), "--base-url", server.url, "--concurrency", "16",
                                "--json", "--quiet", "--reports-dir", str(folder / "reports-run"),
                                "--ledger", str(folder / "ledger.sqlite")], env=env, cwd=folder)
            disposed = json.loads(done.stdout)["counts"].get("disposed", 0) if done.returncode == 0 else 0
            body.append([f"run csv ({disposed:,} disposed)", count, size_mb(path), f"exit {done.returncode}",
                         done.wall_s, done.peak_rss_mb, "198" if count == 100_000 else ""])
            checks.append([f"run at {count:,} rows", f"{done.peak_rss_mb:.0f} MB", "< 500 MB",
                           verdict(done.peak_rss_mb < 500)])
    table(["command", "rows", "file MB", "outcome", "wall s", "peak RSS MB", "before (MB)"], body,
          title="Peak RSS (the process's own, from rusage) and wall time, process start to exit")
    if checks:
        table(["target", "figure", "goal", ""], checks, title="Summary")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
