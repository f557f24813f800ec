"""Sending: issue 7 targets 1-3, side by side with their baselines in the same run.

    python bench/send.py                 # 10,000 rows, concurrency 16 (about 4 minutes)
    python bench/send.py --aiohttp-only  # the same without the two httpx peers at 50 ms (about 3 minutes)
    python bench/send.py --quick         # 1,000 rows: a smoke run
    python bench/send.py --profile       # the tool's sending phase under pyinstrument (latency 0, then 50 ms)

Target 1: `batch-dispose run` (a subprocess, process start to exit: load, validate, ledger, send,
workbook) against bench/lightserver.py answering after 50 ms, vs the ideal concurrency / latency; beside
it, on the same server, the tool's sending phase and the peers users write (raw aiohttp, httpx.Client +
threads, bare httpx async), each timed on both footings: its sending loop alone, and its whole process.
Target 3, same server, same run: a sequential httpx.Client loop (first --seq-rows rows). Beside them, the
ceiling: bare sockets with no HTTP library (`_workers.py bare-socket`), the most any client reaches here.
Target 2: latency 0; three bare clients and the tool's sending phase, each in its own process, each
against a fresh light server whose CPU per request shows it is not the bottleneck.
Servers run on core 1, measured clients on core 0 (taskset), when the machine has them.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    LightServer,
    Measured,
    ServerStats,
    machine,
    measure,
    pinning_note,
    scratch,
    table,
    tool_command,
    tool_env,
    verdict,
    worker_process,
    write_csv,
)

BARE = (("httpx-async", "httpx.AsyncClient (default transport)"),
        ("httpx-threads", "httpx.Client + threads"),
        ("aiohttp", "raw aiohttp (TCPConnector + semaphore)"))


def worker(kind: str, url: str, csv_path: Path, concurrency: int, *, limit: int | None = None,
           reports: Path | None = None, profile: bool = False) -> tuple[dict, str]:  # type: ignore[type-arg]
    report, text, _ = worker_process(kind, url, csv_path, concurrency, limit=limit, reports=reports, profile=profile)
    return report, text


PEERS = (("aiohttp", "raw aiohttp (TCPConnector + semaphore)"), ("httpx-threads", "httpx.Client + threads"),
         ("httpx-async", "httpx.AsyncClient (default transport)"))


def end_to_end(args: argparse.Namespace, folder: Path, csv_path: Path) -> dict[str, float]:
    """Targets 1 and 3: latency 50 ms, the tool end to end, its sending phase, the peers and a sequential loop,
    all against one server. Each peer is timed two ways: its sending loop alone (rows already in memory, the
    clock started after its imports) and its whole process (start to exit); the tool likewise: `run` as a
    process, and its sending phase in-process (`bench/_workers.py tool`)."""
    ideal = args.concurrency / (args.latency_ms / 1000)
    server = LightServer(args.latency_ms).start()
    peers: dict[str, tuple[dict, Measured]] = {}  # type: ignore[type-arg]
    try:
        done = measure([*tool_command(), "run", str(csv_path), "--base-url", server.url, "--concurrency",
                        str(args.concurrency), "--json", "--quiet", "--reports-dir", str(folder / "reports-e2e")],
                       env=tool_env(), cwd=folder)
        phase, _, _ = worker_process("tool", server.url, csv_path, args.concurrency, reports=folder / "reports-phase")
        seq, _ = worker("sequential", server.url, csv_path, args.concurrency, limit=args.seq_rows)
        for kind, _label in PEERS if not args.aiohttp_only else PEERS[:1]:
            report, _, process = worker_process(kind, server.url, csv_path, args.concurrency)
            peers[kind] = (report, process)
        floor, _, floor_process = worker_process("bare-socket", server.url, csv_path, args.concurrency)
    finally:
        stats = server.stop()
    if done.returncode not in (0, 1):
        raise SystemExit(f"batch-dispose run failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout)
    disposed = result["counts"].get("disposed", 0)
    tool_rate = args.rows / done.wall_s
    seq_rate = seq["rows"] / seq["seconds"]
    phase_rate = phase["rows"] / phase["seconds"]
    body = [["batch-dispose run", phase_rate, 100 * phase_rate / ideal, args.rows, done.wall_s, tool_rate,
             100 * tool_rate / ideal, 1000 * done.cpu_s / args.rows,
             f"{disposed} disposed; sending phase from _workers.py tool (load, validate, plan: "
             f"{phase['before_send_s']:.2f} s before it, workbook {phase['after_send_s']:.2f} s after)"]]
    for kind, label in PEERS:
        if kind in peers:
            report, process = peers[kind]
            rate = report["rows"] / report["seconds"]
            whole = report["rows"] / process.wall_s
            body.append([label, rate, 100 * rate / ideal, report["rows"], process.wall_s, whole, 100 * whole / ideal,
                         1000 * process.cpu_s / report["rows"], f"{report['errors']} errors; no validation, "
                         f"ledger or workbook"])
    floor_rate = floor["rows"] / floor["seconds"]
    body.append(["bare sockets, no HTTP library (the ceiling)", floor_rate, 100 * floor_rate / ideal, floor["rows"],
                 floor_process.wall_s, "", "", 1000 * floor_process.cpu_s / floor["rows"],
                 f"{floor['errors']} errors; not a peer: what this machine and server allow any client"])
    body.append(["sequential httpx.Client loop", seq_rate, 100 * seq_rate / ideal, seq["rows"], "", "", "",
                 1000 * seq["cpu_s"] / seq["rows"], f"first {seq['rows']} rows; {seq['errors']} errors"])
    table(["client", "sending rows/s", "% of c/L", "rows", "process s", "process rows/s", "% of c/L",
           "CPU ms/row", "note"], body,
          title=f"Targets 1 and 3: latency {args.latency_ms:g} ms, concurrency {args.concurrency}, ideal c/L = "
                f"{ideal:.0f} rows/s. Two footings: 'sending' = the sending loop alone (rows in memory, imports "
                f"done); 'process' = process start to exit (interpreter, imports, reading the file; for the tool "
                f"also validation, the ledger and the results workbook). CPU is the whole process's.")
    print(f"server: {stats.requests:,} requests ({stats.off_route} off route), "
          f"{stats.cpu_per_request_us:.0f} us CPU/request -> capacity ~{stats.capacity_per_s:,.0f} requests/s")
    if disposed != args.rows:
        print(f"WARNING: only {disposed} of {args.rows} rows were disposed: {result['counts']}")
    bare = peers["aiohttp"][0]
    best_peer = max(peers.values(), key=lambda item: item[0]["rows"] / item[0]["seconds"])
    best_process = max(peers.values(), key=lambda item: item[0]["rows"] / item[1].wall_s)
    return {"t1": tool_rate / ideal, "t1_rate": tool_rate, "ideal": ideal, "t3": tool_rate / seq_rate,
            "seq_rate": seq_rate, "bare50": bare["rows"] / bare["seconds"] / ideal, "phase50": phase_rate / ideal,
            "best_peer": best_peer[0]["rows"] / best_peer[0]["seconds"] / ideal,
            "best_process": best_process[0]["rows"] / best_process[1].wall_s / ideal, "floor50": floor_rate / ideal}


def overhead(args: argparse.Namespace, folder: Path, csv_path: Path) -> dict[str, float]:
    """Target 2: latency 0, bare clients vs the tool's sending phase, each with a fresh server."""
    measured: dict[str, tuple[dict, ServerStats]] = {}  # type: ignore[type-arg]
    for attempt in range(args.repeat):
        for kind in [kind for kind, _ in BARE] + ["tool"]:
            server = LightServer(0).start()
            try:
                reports = folder / f"reports-{kind}-{attempt}" if kind == "tool" else None
                report, _ = worker(kind, server.url, csv_path, args.concurrency, reports=reports)
            finally:
                stats = server.stop()
            best = measured.get(kind)
            if best is None or report["rows"] / report["seconds"] > best[0]["rows"] / best[0]["seconds"]:
                measured[kind] = (report, stats)
    rates = {kind: report["rows"] / report["seconds"] for kind, (report, _) in measured.items()}
    ceiling_kind = max((kind for kind, _ in BARE), key=rates.__getitem__)
    ceiling = rates[ceiling_kind]
    body = []
    for kind, label in [*BARE, ("tool", "batch-dispose sending phase (run_files)")]:
        report, stats = measured[kind]
        body.append([label, report["rows"], report["seconds"], rates[kind], 1000 * report["cpu_s"] / report["rows"],
                     100 * rates[kind] / ceiling, stats.cpu_per_request_us, stats.capacity_per_s,
                     stats.capacity_per_s / rates[kind], report["errors"]])
    table(["client", "rows", "send s", "rows/s", "CPU ms/row", "% of ceiling", "server us/req",
           "server cap/s", "cap/rate", "errors"], body,
          title=f"Target 2: latency 0, concurrency {args.concurrency}, {args.rows:,} rows "
                f"(best of {args.repeat}); ceiling = {dict(BARE)[ceiling_kind]}")
    tool_report = measured["tool"][0]
    print(f"tool in-process phases: before sending {tool_report['before_send_s']:.2f} s (load, validate, plan), "
          f"sending {tool_report['seconds']:.2f} s, after {tool_report['after_send_s']:.2f} s (workbook); "
          f"statuses {tool_report['statuses']}")
    print("server cap/s = requests / the server's CPU seconds while serving (start-up left out): what its core "
          "could answer; cap/rate well above 1 means the server was not the bottleneck.")
    return {"t2_share": rates["tool"] / ceiling, "t2_vs_httpx": rates["tool"] / rates["httpx-async"],
            "tool_rate": rates["tool"], "ceiling": ceiling}


def profile(args: argparse.Namespace, csv_path: Path) -> None:
    """The sending phase under pyinstrument: at latency 0 (where the CPU goes), then at --latency-ms
    (where a slot's time goes between requests: the runner, ledger commits)."""
    for latency in (0.0, args.latency_ms):
        print(f"\n######## profile at server latency {latency:g} ms, {args.rows:,} rows, "
              f"concurrency {args.concurrency} ########")
        with LightServer(latency) as server:
            report, text = worker("tool", server.url, csv_path, args.concurrency,
                                  reports=csv_path.parent / f"reports-prof-{latency:g}", profile=True)
        print(text)
        print(f"\n(profiled run: {report['rows']:,} rows sent in {report['seconds']:.2f} s = "
              f"{report['rows'] / report['seconds']:,.0f} rows/s under the profiler, "
              f"{1000 * report['cpu_s'] / report['rows']:.2f} ms CPU/row)")
        if latency == 0:
            with LightServer(0) as server:
                bare, text = worker("aiohttp", server.url, csv_path, args.concurrency, profile=True)
            print(text)
            print(f"(raw aiohttp under the same profiler: {bare['rows'] / bare['seconds']:,.0f} rows/s, "
                  f"{1000 * bare['cpu_s'] / bare['rows']:.2f} ms CPU/row)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000, help="rows in the file (default 10,000)")
    parser.add_argument("--seq-rows", type=int, default=300, help="rows the sequential loop sends (default 300)")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--latency-ms", type=float, default=50.0, help="server latency for targets 1 and 3")
    parser.add_argument("--repeat", type=int, default=1, help="target 2: best of N runs of each client")
    parser.add_argument("--quick", action="store_true", help="1,000 rows and 30 sequential: a smoke run")
    parser.add_argument("--aiohttp-only", action="store_true",
                        help="at --latency-ms, only raw aiohttp as a peer (skips the two httpx peers: about 70 s)")
    parser.add_argument("--profile", action="store_true",
                        help="only profile the tool's sending phase, at latency 0 and at --latency-ms")
    args = parser.parse_args()
    if args.quick:
        args.rows, args.seq_rows = min(args.rows, 1000), min(args.seq_rows, 30)
    print(f"machine: {machine()}\n{pinning_note()}")
    with scratch("bench-send-") as folder:
        csv_path = write_csv(folder / "calls.csv", args.rows)
        if args.profile:
            profile(args, csv_path)
            return
        one = end_to_end(args, folder, csv_path)
        two = overhead(args, folder, csv_path)
    from batch_dispose.runner import ahead_for

    table(["target", "figure", "goal", ""], [
        ["1 end to end at 50 ms", f"{one['t1_rate']:.0f} rows/s = {100 * one['t1']:.1f}% of {one['ideal']:.0f} "
         f"(raw aiohttp, sending only: {100 * one['bare50']:.1f}%; bare sockets, the ceiling here: "
         f"{100 * one['floor50']:.1f}%)", ">= 94% (issue 11; 90% with margin)",
         verdict(one["t1"] >= 0.94)],
        ["1 on the same footing: sending phases at 50 ms", f"tool {100 * one['phase50']:.1f}% of c/L; best peer "
         f"{100 * one['best_peer']:.1f}%", "ahead of every peer", verdict(one["phase50"] >= one["best_peer"])],
        ["1 on the same footing: processes, start to exit", f"tool {100 * one['t1']:.1f}% of c/L; best peer "
         f"{100 * one['best_process']:.1f}%", "ahead of every peer", verdict(one["t1"] >= one["best_process"])],
        ["2 sending phase vs ceiling", f"{two['tool_rate']:,.0f} / {two['ceiling']:,.0f} rows/s = "
         f"{100 * two['t2_share']:.0f}%", ">= 75%", verdict(two["t2_share"] >= 0.75)],
        ["2 sending phase vs httpx.AsyncClient", f"{two['t2_vs_httpx']:.2f}x", ">= 2x",
         verdict(two["t2_vs_httpx"] >= 2)],
        ["3 vs sequential httpx.Client", f"{one['t3']:.1f}x ({one['seq_rate']:.1f} rows/s sequential)", ">= 15x",
         verdict(one["t3"] >= 15)],
    ], title="Summary")
    print(f"crash guarantee at concurrency {args.concurrency}: after a kill -9, at most "
          f"{args.concurrency + ahead_for(args.concurrency)} rows are unknown (concurrency + "
          f"{ahead_for(args.concurrency)} committed ahead)")


if __name__ == "__main__":
    main()
