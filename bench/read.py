"""Reading: issue 7 target 4, the tool's load + validate beside pandas' readers on the same file.

    python bench/read.py                 # 100,000-row XLSX, then a 1,000,000-row CSV through `validate`
    python bench/read.py --quick         # 5,000-row XLSX and 50,000-row CSV: a smoke run

Part 1 (in this process, pinned to core 0; imports done before the clock): the XLSX read by
`batch_dispose.loading.load` + `batch_dispose.schema.validate`, by `pandas.read_excel(engine="calamine")`
alone and by `pandas.read_excel(engine="openpyxl")` (pandas' default for .xlsx). The fast two are
timed best of --repeat, openpyxl once (it is the slow one by far).
Part 2: `batch-dispose validate FILE --quiet` on a 1,000,000-row CSV as a subprocess on core 0 (load,
validate, and the 1M-row results workbook): wall time from process start to exit and peak RSS.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    machine,
    measure,
    pin_self,
    pinning_note,
    scratch,
    size_mb,
    table,
    tool_command,
    tool_env,
    verdict,
    write_csv,
    write_xlsx,
)


def best_of(repeat: int, action) -> tuple[float, object]:  # type: ignore[no-untyped-def]
    best, result = float("inf"), None
    for _ in range(repeat):
        started = time.perf_counter()
        result = action()
        best = min(best, time.perf_counter() - started)
    return best, result


def xlsx_part(args: argparse.Namespace, folder: Path) -> dict[str, float]:
    import pandas as pd

    from batch_dispose.loading import load
    from batch_dispose.schema import validate

    path = folder / "calls.xlsx"
    started = time.perf_counter()
    write_xlsx(path, args.rows)
    print(f"wrote {path.name}: {args.rows:,} rows, {size_mb(path):.1f} MB in {time.perf_counter() - started:.1f} s")
    validate(load(write_csv(folder / "warm.csv", 10)))  # first-call costs (pandera, regex compiles) off the clock

    def ours():  # type: ignore[no-untyped-def]
        table_ = load(path)
        return table_, validate(table_)

    ours_s, (loaded, checked) = best_of(args.repeat, ours)
    calamine_s, frame = best_of(args.repeat, lambda: pd.read_excel(path, engine="calamine"))
    openpyxl_s, frame_o = best_of(1, lambda: pd.read_excel(path, engine="openpyxl"))
    assert len(loaded) == len(frame) == len(frame_o) == args.rows, (len(loaded), len(frame), len(frame_o))
    invalid = list(checked.messages.items())
    assert len(checked.requests) == args.rows, f"{len(invalid)} rows invalid: {invalid[:3]}"
    load_s, _ = best_of(args.repeat, lambda: load(path))
    table(["reader", "runs", "seconds", "rows/s", "vs calamine", "openpyxl / it"], [
        ["batch_dispose load + validate", args.repeat, ours_s, args.rows / ours_s, ours_s / calamine_s,
         openpyxl_s / ours_s],
        ["  of which load (calamine -> text cells)", args.repeat, load_s, args.rows / load_s, load_s / calamine_s,
         openpyxl_s / load_s],
        ["pandas.read_excel(engine='calamine')", args.repeat, calamine_s, args.rows / calamine_s, 1.0,
         openpyxl_s / calamine_s],
        ["pandas.read_excel(engine='openpyxl')", 1, openpyxl_s, args.rows / openpyxl_s, openpyxl_s / calamine_s, 1.0],
    ], title=f"Target 4a: reading a {args.rows:,}-row XLSX (5 columns), best of {args.repeat} except openpyxl")
    return {"vs_calamine": ours_s / calamine_s, "vs_openpyxl": openpyxl_s / ours_s}


def csv_part(args: argparse.Namespace, folder: Path) -> dict[str, float]:
    path = write_csv(folder / "big.csv", args.csv_rows, short=True)
    print(f"\nwrote {path.name}: {args.csv_rows:,} rows, {size_mb(path):.1f} MB (short notes: under the 50 MB limit)")
    done = measure([*tool_command(), "validate", str(path), "--quiet", "--reports-dir", str(folder / "reports")],
                   env=tool_env(), cwd=folder)
    if done.returncode != 0:
        raise SystemExit(f"validate failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    workbook = next((folder / "reports").glob("*.xlsx"))
    table(["command", "rows", "wall s", "rows/s", "CPU s", "peak RSS MB", "workbook MB"], [
        ["batch-dispose validate --quiet", args.csv_rows, done.wall_s, args.csv_rows / done.wall_s, done.cpu_s,
         done.peak_rss_mb, size_mb(workbook)],
    ], title=f"Target 4b: validating a {args.csv_rows:,}-row CSV (subprocess, process start to exit)")
    return {"wall": done.wall_s, "rss": done.peak_rss_mb}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000, help="rows of the XLSX (default 100,000)")
    parser.add_argument("--csv-rows", type=int, default=1_000_000, help="rows of the CSV (default 1,000,000)")
    parser.add_argument("--repeat", type=int, default=3, help="best of N for the fast readers (default 3)")
    parser.add_argument("--quick", action="store_true", help="5,000-row XLSX, 50,000-row CSV, one run each")
    args = parser.parse_args()
    if args.quick:
        args.rows, args.csv_rows, args.repeat = min(args.rows, 5000), min(args.csv_rows, 50_000), 1
    print(f"machine: {machine()}\n{pinning_note()} (this process on core 0)")
    pin_self()
    with scratch("bench-read-") as folder:
        four_a = xlsx_part(args, folder)
        four_b = csv_part(args, folder)
    table(["target", "figure", "goal", ""], [
        ["4 XLSX load+validate vs calamine", f"{four_a['vs_calamine']:.2f}x its time", "<= 2x",
         verdict(four_a["vs_calamine"] <= 2)],
        ["4 XLSX load+validate vs openpyxl", f"{four_a['vs_openpyxl']:.1f}x faster", ">= 5x",
         verdict(four_a["vs_openpyxl"] >= 5)],
        [f"4 validate {args.csv_rows:,}-row CSV: time", f"{four_b['wall']:.1f} s", "< 60 s",
         verdict(four_b["wall"] < 60)],
        [f"4 validate {args.csv_rows:,}-row CSV: peak RSS", f"{four_b['rss']:,.0f} MB", "< 2,048 MB",
         verdict(four_b["rss"] < 2048)],
    ], title="Summary")


if __name__ == "__main__":
    main()
