"""Start-up: issue 7 target 7, how long `--help` takes, and what the heavy imports would cost.

    python bench/startup.py              # median of 15 runs each
    python bench/startup.py --quick      # median of 3

Each command is a fresh subprocess on core 0, timed from process start to exit. For reference:
the bare interpreter, and the import time of each heavy module on its own (median of --import-runs,
each in a fresh process), and which of them `batch-dispose --help` actually imports.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import PYTHON, machine, measure, pinning_note, scratch, table, tool_command, tool_env, verdict

HEAVY = ("pandas", "pandera.pandas", "numpy", "httpx", "aiohttp", "openpyxl", "python_calamine", "tqdm",
         "batch_dispose.cli", "batch_dispose.schema", "batch_dispose.job", "batch_dispose.client")
PROBE = ("import sys, time; t = time.perf_counter(); import {module}; "
         "print(time.perf_counter() - t)")
HELP_IMPORTS = ("import sys; sys.argv = ['batch-dispose', '--help']\n"
                "from batch_dispose.cli import main\n"
                "try:\n    main()\nexcept SystemExit:\n    pass\n"
                "print('LOADED', ' '.join(m for m in {heavy!r} if m in sys.modules))")


def median_wall(command: list[str], runs: int, folder: Path) -> tuple[float, float, int]:
    walls = []
    code = 0
    for _ in range(runs):
        done = measure(command, env=tool_env(), cwd=folder)
        code = done.returncode
        walls.append(done.wall_s)
    return statistics.median(walls), min(walls), code


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=15, help="runs per command (default 15)")
    parser.add_argument("--import-runs", type=int, default=5, help="runs per module import (default 5)")
    parser.add_argument("--quick", action="store_true", help="3 runs each")
    args = parser.parse_args()
    if args.quick:
        args.runs, args.import_runs = 3, 1
    print(f"machine: {machine()}\n{pinning_note()}")
    with scratch("bench-startup-") as folder:
        commands = [
            ("batch-dispose --help", [*tool_command(), "--help"]),
            ("python -m batch_dispose --help", [PYTHON, "-m", "batch_dispose", "--help"]),
            ("batch-dispose run --help", [*tool_command(), "run", "--help"]),
            ("python -c pass (the interpreter alone)", [PYTHON, "-c", "pass"]),
        ]
        body, medians = [], {}
        for label, command in commands:
            median, fastest, code = median_wall(command, args.runs, folder)
            medians[label] = median
            body.append([label, args.runs, f"{median:.3f}", f"{fastest:.3f}", code])
        table(["command", "runs", "median s", "min s", "exit"], body,
              title="Target 7: start-up, process start to exit")

        imports = []
        for module in HEAVY:
            seconds = []
            for _ in range(args.import_runs):
                done = measure([PYTHON, "-c", PROBE.format(module=module)], env=tool_env(), cwd=folder)
                if done.returncode != 0:
                    break
                seconds.append(float(done.stdout.strip().splitlines()[-1]))
            median = f"{statistics.median(seconds):.3f}" if seconds else "failed"
            imports.append([f"import {module}", len(seconds), median])
        table(["module (alone, fresh process)", "runs", "median s"], imports,
              title="For reference: import time of the heavy modules")
        done = measure([PYTHON, "-c", HELP_IMPORTS.format(heavy=HEAVY)], env=tool_env(), cwd=folder)
        loaded = next((line.split()[1:] for line in done.stdout.splitlines() if line.startswith("LOADED")), [])
        print(f"\nheavy modules loaded by `batch-dispose --help`: {', '.join(loaded) or 'none'}")
    help_s = medians["batch-dispose --help"]
    module_s = medians["python -m batch_dispose --help"]
    table(["target", "figure", "goal", ""], [
        ["7 batch-dispose --help", f"{help_s:.3f} s median", "< 0.5 s", verdict(help_s < 0.5)],
        ["7 python -m batch_dispose --help", f"{module_s:.3f} s median", "< 0.5 s", verdict(module_s < 0.5)],
    ], title="Summary")


if __name__ == "__main__":
    main()
