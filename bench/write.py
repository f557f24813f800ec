"""Writing: issue 7 target 5, the results workbook beside the ways one could write it.

    python bench/write.py                # 100,000 rows
    python bench/write.py --big          # also 1,000,000 rows: ours vs XlsxWriter (slow: minutes)
    python bench/write.py --quick        # 5,000 rows: a smoke run

In this process, pinned to core 0, each writer given the same rows already in memory (a Table loaded
from a generated CSV with `loading.load`, a RowResults with mixed statuses, a Summary list):
  ours       `batch_dispose.workbook.write_results`: both sheets, column widths, frozen header, filter,
             status colours by conditional formatting, atomic write with fsync
  to_excel   `DataFrame.to_excel(engine="openpyxl")`, unstyled, of the same table (the frame is built
             before the clock starts)
  openpyxl   openpyxl write-only mode, `append` per row, unstyled
  XlsxWriter `constant_memory`, `strings_to_formulas=False` (and no URL/number guessing), `write_row`
Each is timed best of --repeat (default 1; these are long).
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    machine,
    pin_self,
    pinning_note,
    scratch,
    size_mb,
    table,
    verdict,
    write_csv,
    write_sheet,
)


def build(folder: Path, count: int):  # type: ignore[no-untyped-def]
    """The Table, RowResults and Summary a 'run' of `count` rows would hand to write_results."""
    from batch_dispose.loading import MAX_BYTES, load
    from batch_dispose.models import Outcome, RowResults, Status, iso, utc_now

    path = write_csv(folder / f"calls-{count}.csv", count, short=count > 200_000)
    loaded = load(path, max_bytes=max(MAX_BYTES, path.stat().st_size + 1))
    results = RowResults(len(loaded))
    rng = random.Random(3)
    now = iso(utc_now())
    for index in range(len(loaded)):
        roll = rng.random()
        if roll < 0.90:
            outcome = Outcome(Status.DISPOSED, "Call disposed and ended.", 200, 1, now)
        elif roll < 0.95:
            outcome = Outcome(Status.FAILED, "the server did not dispose of the call (500: Failed to dispose of "
                              "call.)", 500, 1, now)
        elif roll < 0.98:
            outcome = Outcome(Status.INVALID, "logID '87278.5' is not a whole number")
        else:
            outcome = Outcome(Status.UNKNOWN, "sent, but no reply within 30 s; its effect is unknown, so it is "
                              "not re-sent automatically", None, 1, now)
        results.set(index, outcome)
    summary = [("Command", "run"), ("Rows", len(loaded))]
    summary += [(status.value, count) for status, count in results.counts().items()]
    summary += [("Input file", str(path)), ("Input SHA-256", loaded.sha256), ("Tool version", "bench")]
    return loaded, results, summary


def plain_rows(loaded, results) -> list[list[object]]:  # type: ignore[no-untyped-def]
    """The same cells as plain Python rows, in the results workbook's order (status, message, the input
    columns, row, http_status, attempts, finished_at)."""
    columns = loaded.columns
    return [[results.status[index].value, results.message[index], *(column[index] for column in columns),
             loaded.rows[index], results.http_status[index], results.attempts[index], results.finished_at[index]]
            for index in range(len(loaded))]


def headers_of(loaded) -> list[str]:  # type: ignore[no-untyped-def]
    from batch_dispose.workbook import LEAD_COLUMNS, TAIL_COLUMNS

    return [*LEAD_COLUMNS, *loaded.headers, *TAIL_COLUMNS]


def write_ours(folder: Path, loaded, results, summary) -> Path:  # type: ignore[no-untyped-def]
    from batch_dispose.models import utc_now
    from batch_dispose.workbook import write_results

    return write_results(loaded, results, summary, reports_dir=folder / "reports", started=utc_now())


def write_to_excel(path: Path, frame) -> Path:  # type: ignore[no-untyped-def]
    frame.to_excel(path, index=False, engine="openpyxl", sheet_name="Results")
    return path


def write_openpyxl(path: Path, headers: list[str], rows: list[list[object]]) -> Path:
    return write_sheet(path, headers, rows, "Results")


def write_xlsxwriter(path: Path, headers: list[str], rows: list[list[object]]) -> Path:
    import xlsxwriter

    workbook = xlsxwriter.Workbook(str(path), {"constant_memory": True, "strings_to_formulas": False,
                                               "strings_to_urls": False, "strings_to_numbers": False})
    sheet = workbook.add_worksheet("Results")
    sheet.write_row(0, 0, headers)
    for number, row in enumerate(rows, start=1):
        sheet.write_row(number, 0, row)
    workbook.close()
    return path


def timed(repeat: int, action) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """Best time of `repeat` writes, and the file's size in MB (each file is removed after)."""
    best, size = float("inf"), 0.0
    for _ in range(repeat):
        started = time.perf_counter()
        path = action()
        best = min(best, time.perf_counter() - started)
        size = size_mb(path)
        os.unlink(path)
    return best, size


def compare(args: argparse.Namespace, folder: Path, count: int, writers: tuple[str, ...]) -> dict[str, float]:
    import pandas as pd

    loaded, results, summary = build(folder, count)
    headers, rows = headers_of(loaded), plain_rows(loaded, results)
    frame = pd.DataFrame(rows, columns=headers) if "to_excel" in writers else None
    actions = {
        "ours": ("batch_dispose write_results (styled, 2 sheets)",
                 lambda: write_ours(folder, loaded, results, summary)),
        "to_excel": ("DataFrame.to_excel(engine='openpyxl'), unstyled",
                     lambda: write_to_excel(folder / f"to_excel-{count}.xlsx", frame)),
        "openpyxl": ("openpyxl write-only, unstyled", lambda: write_openpyxl(folder / f"openpyxl-{count}.xlsx",
                                                                             headers, rows)),
        "xlsxwriter": ("XlsxWriter constant_memory, unstyled",
                       lambda: write_xlsxwriter(folder / f"xlsxwriter-{count}.xlsx", headers, rows)),
    }
    seconds, sizes = {}, {}
    for key in writers:
        seconds[key], sizes[key] = timed(args.repeat, actions[key][1])
    extra = ["to_excel / it"] if "to_excel" in seconds else []
    table(["writer", "seconds", "rows/s", "MB", "time vs ours", *extra], [
        [actions[key][0], seconds[key], count / seconds[key], sizes[key], seconds[key] / seconds["ours"],
         *([seconds["to_excel"] / seconds[key]] if extra else [])]
        for key in writers
    ], title=f"Target 5: writing {count:,} rows x {len(headers)} columns, best of {args.repeat}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000, help="rows (default 100,000)")
    parser.add_argument("--big", action="store_true", help="also ours vs XlsxWriter at --big-rows")
    parser.add_argument("--big-rows", type=int, default=1_000_000, help="rows for --big (default 1,000,000)")
    parser.add_argument("--repeat", type=int, default=1, help="best of N (default 1)")
    parser.add_argument("--quick", action="store_true", help="5,000 rows (and 50,000 with --big)")
    args = parser.parse_args()
    if args.quick:
        args.rows, args.big_rows = min(args.rows, 5000), min(args.big_rows, 50_000)
    print(f"machine: {machine()}\n{pinning_note()} (this process on core 0)")
    pin_self()
    import openpyxl
    import pandas
    import xlsxwriter

    print(f"pandas {pandas.__version__}, openpyxl {openpyxl.__version__}, XlsxWriter {xlsxwriter.__version__}")
    with scratch("bench-write-") as folder:
        seconds = compare(args, folder, args.rows, ("ours", "to_excel", "openpyxl", "xlsxwriter"))
        big = compare(args, folder, args.big_rows, ("ours", "xlsxwriter")) if args.big else None
    rows = [["5 ours vs to_excel (openpyxl)", f"{seconds['to_excel'] / seconds['ours']:.1f}x faster", ">= 1.5x",
             verdict(seconds["to_excel"] / seconds["ours"] >= 1.5)],
            ["  openpyxl write-only vs XlsxWriter", f"XlsxWriter {seconds['openpyxl'] / seconds['xlsxwriter']:.1f}x "
             f"faster", "(pick by measurement)", ""],
            ["  ours vs XlsxWriter", f"{seconds['xlsxwriter'] / seconds['ours']:.1f}x faster", "", ""]]
    if big:
        rows.append([f"  ours vs XlsxWriter at {args.big_rows:,}", f"{big['xlsxwriter'] / big['ours']:.1f}x faster",
                     "", ""])
    table(["target", "figure", "goal", ""], rows, title="Summary")


if __name__ == "__main__":
    main()
