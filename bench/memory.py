"""Memory: issue 7 target 6, peak RSS of whole commands as the row count grows.

    python bench/memory.py               # run at 10,000 and 100,000 rows; validate at 1,000,000
    python bench/memory.py --quick       # run at 1,000 and 5,000; validate at 20,000

Each command is a subprocess on core 0 (`batch-dispose run ... --concurrency 16 --json --quiet`
against bench/lightserver.py at latency 0 on core 1; `batch-dispose validate --quiet`), its peak RSS
taken from its own rusage (os.wait4). The first line is the floor: the interpreter with every module
a run imports, and nothing else.
"""

from __future__ import annotations

import argparse
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
    tool_command,
    tool_env,
    verdict,
    write_csv,
)

IMPORTS = ("import batch_dispose.cli, batch_dispose.job, batch_dispose.loading, batch_dispose.schema, "
           "batch_dispose.client, batch_dispose.runner, batch_dispose.ledger, batch_dispose.workbook, tqdm")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", default="10000,100000", help="row counts for `run`, comma-separated")
    parser.add_argument("--validate-rows", type=int, default=1_000_000, help="rows for `validate` (default 1M)")
    parser.add_argument("--quick", action="store_true", help="run at 1,000 and 5,000 rows; validate at 20,000")
    args = parser.parse_args()
    counts = [int(text) for text in args.rows.split(",")]
    if args.quick:
        counts, args.validate_rows = [1000, 5000], min(args.validate_rows, 20_000)
    print(f"machine: {machine()}\n{pinning_note()}")
    body: list[list[object]] = []
    peaks: dict[str, float] = {}
    with scratch("bench-memory-") as folder:
        floor = measure([PYTHON, "-c", IMPORTS], env=tool_env(), cwd=folder)
        body.append(["python + every module a run imports", 0, "", floor.wall_s, floor.peak_rss_mb, "", ""])
        previous: tuple[int, float] | None = None
        for count in counts:
            path = write_csv(folder / f"calls-{count}.csv", count)
            with LightServer(0) as server:
                done = measure([*tool_command(), "run", str(path), "--base-url", server.url, "--concurrency", "16",
                                "--json", "--quiet", "--reports-dir", str(folder / f"reports-{count}")],
                               env=tool_env(), cwd=folder)
            if done.returncode != 0:
                raise SystemExit(f"run failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
            disposed = json.loads(done.stdout)["counts"].get("disposed", 0)
            peaks[f"run {count}"] = done.peak_rss_mb
            growth = (1024 * 1024 * (done.peak_rss_mb - previous[1]) / (count - previous[0])
                      if previous else "")
            previous = (count, done.peak_rss_mb)
            body.append([f"batch-dispose run ({disposed:,} disposed)", count, size_mb(path), done.wall_s,
                         done.peak_rss_mb, done.peak_rss_mb - floor.peak_rss_mb, growth])
            path.unlink()
        path = write_csv(folder / "big.csv", args.validate_rows, short=True)
        done = measure([*tool_command(), "validate", str(path), "--quiet", "--reports-dir", str(folder / "reports-v")],
                       env=tool_env(), cwd=folder)
        if done.returncode != 0:
            raise SystemExit(f"validate failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
        peaks["validate"] = done.peak_rss_mb
        body.append(["batch-dispose validate (short notes)", args.validate_rows, size_mb(path), done.wall_s,
                     done.peak_rss_mb, done.peak_rss_mb - floor.peak_rss_mb,
                     1024 * 1024 * (done.peak_rss_mb - floor.peak_rss_mb) / args.validate_rows])
    table(["command", "rows", "file MB", "wall s", "peak RSS MB", "above floor MB", "bytes/row"], body,
          title="Target 6: peak RSS (the process's own, from rusage)")
    print("bytes/row: for run, the growth from the previous run size; for validate, above the floor.")
    checks = []
    for count in counts:
        if count == 100_000 or args.quick:
            checks.append([f"6 run at {count:,} rows", f"{peaks[f'run {count}']:.0f} MB", "< 500 MB",
                           verdict(peaks[f"run {count}"] < 500)])
    checks.append([f"6 validate at {args.validate_rows:,} rows", f"{peaks['validate']:.0f} MB", "(report; < 2 GB in 4)",
                   verdict(peaks["validate"] < 2048)])
    table(["target", "figure", "goal", ""], checks, title="Summary")


if __name__ == "__main__":
    main()
