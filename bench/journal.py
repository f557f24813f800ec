"""What the ledger costs a run: the tool's sending phase with the ledger's commits as they are, with a plain
text log fdatasync'd per commit instead (the cheapest durable record), with only their hand-off to the
ledger's thread (nothing written), and with none, beside raw aiohttp, all against one light server per
latency, in alternation (this machine's speed drifts by a few percent within minutes).

    python bench/journal.py                     # 3,000 rows at 50 ms and 10,000 at 0 ms, 3 rounds (about 3 minutes)
    python bench/journal.py --rounds 1 --quick  # a smoke run

The gap between `ledger` and `none` is what durability costs (an fsync'd SQLite commit before rows are sent,
`max(2, concurrency // 2)` rows ahead); between `log` and `handoff`, what one fdatasync per commit costs
with no SQL at all; between `handoff` and `none`, the thread hand-off alone. The
variants other than `ledger` exist only here: without the ledger's commits nothing a run does is durable.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import LightServer, machine, pinning_note, scratch, table, worker_process, write_csv

CLIENTS = (("tool, ledger as it is", "tool", "ledger"), ("tool, fdatasync'd text log", "tool", "log"),
           ("tool, hand-off only", "tool", "handoff"),
           ("tool, no ledger", "tool", "none"), ("raw aiohttp", "aiohttp", None))


def latency(folder: Path, csv_path: Path, latency_ms: float, rounds: int, concurrency: int) -> None:
    runs: dict[str, list[dict]] = {name: [] for name, _, _ in CLIENTS}  # type: ignore[type-arg]
    with LightServer(latency_ms) as server:
        for round_ in range(rounds):
            for n, (name, kind, journal) in enumerate(CLIENTS):
                reports = folder / f"reports-{latency_ms:g}-{round_}-{n}" if kind == "tool" else None
                report, _, _ = worker_process(kind, server.url, csv_path, concurrency, reports=reports,
                                              journal=journal)
                runs[name].append(report)
    rows = runs["raw aiohttp"][0]["rows"]
    bare = statistics.median(run["seconds"] for run in runs["raw aiohttp"])
    none = statistics.median(run["seconds"] for run in runs["tool, no ledger"])
    body = []
    for name, _, _ in CLIENTS:
        seconds = statistics.median(run["seconds"] for run in runs[name])
        cpu = statistics.median(run["cpu_s"] for run in runs[name])
        ideal = f"{100 * rows / seconds / (concurrency / (latency_ms / 1000)):.1f}%" if latency_ms else ""
        body.append([name, f"{seconds:.3f}", f"{rows / seconds:,.0f}", ideal, f"{100 * bare / seconds:.0f}%",
                     f"{1000 * cpu / rows:.3f}", f"{1000 * (seconds - none) / rows:+.3f}",
                     " / ".join(f"{run['seconds']:.2f}" for run in runs[name])])
    table(["client", "median s", "rows/s", "% of c/L", "% of raw aiohttp", "CPU ms/row", "ms/row over no ledger",
           "each round (s)"], body,
          title=f"{rows:,} rows, latency {latency_ms:g} ms, concurrency {concurrency}, median of {rounds} "
                f"alternating rounds")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=3000, help="rows at --latency-ms")
    parser.add_argument("--rows0", type=int, default=10000, help="rows at latency 0")
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="300 and 1,000 rows")
    args = parser.parse_args()
    if args.quick:
        args.rows, args.rows0 = 300, 1000
    print(f"machine: {machine()}\n{pinning_note()}")
    with scratch("bench-journal-") as folder:
        latency(folder, write_csv(folder / "calls.csv", args.rows), args.latency_ms, args.rounds, args.concurrency)
        latency(folder, write_csv(folder / "calls0.csv", args.rows0), 0.0, args.rounds, args.concurrency)


if __name__ == "__main__":
    main()
