"""Shared helpers for the bench/ scripts: pinning to a core, the light server, input files, peak RSS, tables.

Not part of the package and not a test. Every helper makes its state when called (no import-time work).
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
PYTHON = sys.executable
TOKEN = "bench-token"
SERVER_CORE = 1
CLIENT_CORE = 0

DISPOSITIONS = ("Interested", "Not Interested", "Callback", "Wrong Number", "Voicemail", "Do Not Call")
AGENTS = ("Asha Rao", "Vikram Singh", "Meera Iyer", "Rahul Verma", "Priya Nair", "Arjun Mehta", "Kavya Das")
NOTES = ("Customer asked for a callback tomorrow after 5 pm", "Spoke to the decision maker; sending the brochure",
         "No answer, left a voicemail", "Wrong person; number belongs to a shop",
         "Interested in the annual plan, wants pricing by email", "Asked not to be called again", "")
SHORT_NOTES = ("ok", "cb 5pm", "vm", "", "no", "email")


# -- pinning ---------------------------------------------------------------------------------------

def can_pin(core: int) -> bool:
    return hasattr(os, "sched_getaffinity") and core in os.sched_getaffinity(0)


def pin_prefix(core: int) -> list[str]:
    """`taskset -c CORE` when taskset exists and the core is ours to use; else nothing (see popen)."""
    if can_pin(core) and shutil.which("taskset"):
        return ["taskset", "-c", str(core)]
    return []


def pinning_note() -> str:
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    how = "taskset" if shutil.which("taskset") else "sched_setaffinity" if cores else "none"
    if len(cores) < 2:
        return (f"pinning: only {len(cores) or '?'} core(s) available; server and client share a core "
                "(figures pessimistic)")
    return f"pinning: server on core {SERVER_CORE}, measured client on core {CLIENT_CORE} (via {how}); cores {cores}"


def pin_self(core: int = CLIENT_CORE) -> None:
    """Pin this process (for in-process measurements); quietly does nothing where it cannot."""
    if can_pin(core):
        os.sched_setaffinity(0, {core})


def popen(cmd: Sequence[str], core: int | None, **kwargs) -> subprocess.Popen:  # type: ignore[type-arg, no-untyped-def]
    """Start a command pinned to a core: taskset if there is one, else sched_setaffinity in the child."""
    prefix = pin_prefix(core) if core is not None else []
    if core is not None and not prefix and can_pin(core):
        kwargs["preexec_fn"] = lambda: os.sched_setaffinity(0, {core})
    return subprocess.Popen([*prefix, *cmd], **kwargs)


@dataclass
class Measured:
    """A finished child process: wall time from start to exit, its own CPU time and peak RSS."""

    returncode: int
    wall_s: float
    cpu_s: float
    peak_rss_mb: float
    stdout: str
    stderr: str


def measure(cmd: Sequence[str], *, core: int | None = CLIENT_CORE, env: dict[str, str] | None = None,
            cwd: Path | None = None, timeout: float = 3600) -> Measured:
    """Run a command to its end; wall time is from process start to exit, rusage is the child's alone."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = time.perf_counter()
        process = popen(cmd, core, stdout=out, stderr=err, env=env, cwd=cwd)
        deadline = started + timeout
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                process.kill()
                pid, status, usage = os.wait4(process.pid, 0)
                break
            time.sleep(0.002)
        wall = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return Measured(process.returncode, wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024,
                        out.read(), err.read())


def worker_process(kind: str, url: str, csv_path: Path, concurrency: int, *, limit: int | None = None,
                   reports: Path | None = None, profile: bool = False, journal: str | None = None,
                   ) -> tuple[dict, str, Measured]:  # type: ignore[type-arg]
    """A measured client in its own process: its JSON report (the timed sending loop), its other output, and
    the process as a whole (wall time from process start to exit: interpreter, imports, reading the CSV)."""
    command = [PYTHON, str(BENCH / "_workers.py"), kind, "--url", url, "--csv", str(csv_path),
               "--concurrency", str(concurrency)]
    if limit:
        command += ["--limit", str(limit)]
    if reports is not None:
        command += ["--reports", str(reports)]
    if profile:
        command.append("--profile")
    if journal is not None:
        command += ["--journal", journal]
    done = measure(command, env=tool_env(), cwd=csv_path.parent)
    if done.returncode != 0:
        raise SystemExit(f"{kind} {journal or ''} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    lines = done.stdout.rstrip().splitlines()
    return json.loads(lines[-1]), "\n".join(lines[:-1]), done


def tool_env() -> dict[str, str]:
    env = dict(os.environ)
    env["RYNG_ACCESS_TOKEN"] = TOKEN
    env.pop("PYTHONASYNCIODEBUG", None)
    return env


def tool_command() -> list[str]:
    """The installed `batch-dispose` entry point of this virtualenv (else `python -m batch_dispose`)."""
    script = Path(PYTHON).parent / "batch-dispose"
    return [str(script)] if script.exists() else [PYTHON, "-m", "batch_dispose"]


def cpu_now() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def self_peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- the light server ------------------------------------------------------------------------------

@dataclass
class ServerStats:
    requests: int = 0
    off_route: int = 0
    cpu_s: float = 0.0

    @property
    def cpu_per_request_us(self) -> float:
        return 1e6 * self.cpu_s / self.requests if self.requests else float("nan")

    @property
    def capacity_per_s(self) -> float:
        """Requests/s the server could answer on its core at this CPU cost."""
        return self.requests / self.cpu_s if self.cpu_s else float("inf")


class LightServer:
    """`bench/lightserver.py` on its own core; `url` while running, `stats` after `stop()`."""

    def __init__(self, latency_ms: float = 0.0, core: int = SERVER_CORE) -> None:
        self.latency_ms = latency_ms
        self.core = core
        self.url = ""
        self.stats = ServerStats()
        self._process: subprocess.Popen | None = None  # type: ignore[type-arg]
        self._startup_cpu_s = 0.0

    def start(self) -> LightServer:
        self._process = popen([PYTHON, str(BENCH / "lightserver.py"), "--latency-ms", str(self.latency_ms)],
                              self.core, stdout=subprocess.PIPE, text=True)
        assert self._process.stdout is not None
        line = self._process.stdout.readline().strip()
        if not line.isdigit():
            self._process.kill()
            raise RuntimeError(f"lightserver did not start (said {line!r})")
        self.url = f"http://127.0.0.1:{line}"
        self._startup_cpu_s = _process_cpu_s(self._process.pid)
        return self

    def stop(self) -> ServerStats:
        if self._process is None:
            return self.stats
        self._process.send_signal(signal.SIGTERM)
        out, _ = self._process.communicate(timeout=30)
        self._process = None
        fields = out.split()
        if len(fields) >= 3:  # its start-up (interpreter, imports) is not serving: left out
            self.stats = ServerStats(int(fields[-3]), int(fields[-2]), float(fields[-1]) - self._startup_cpu_s)
        return self.stats

    def __enter__(self) -> LightServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _process_cpu_s(pid: int) -> float:
    """CPU seconds a process has used so far (Linux /proc; 0 where there is none)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- input files -----------------------------------------------------------------------------------

def call_id(index: int) -> str:
    return f"C{index:08d}"


def rows(count: int, *, short: bool = False, seed: int = 7) -> Iterator[list[object]]:
    """Realistic rows: callID (text), logID (number), disposition, notes, agent."""
    rng = random.Random(seed)
    notes = SHORT_NOTES if short else NOTES
    for index in range(count):
        yield [call_id(index), 100_000 + index, rng.choice(DISPOSITIONS), rng.choice(notes), rng.choice(AGENTS)]


HEADER = ["callID", "logID", "disposition", "notes", "agent"]


def write_csv(path: Path, count: int, *, short: bool = False) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        writer.writerows(rows(count, short=short))
    return path


def write_xlsx(path: Path, count: int) -> Path:
    """openpyxl write-only: callID as text cells, logID as numbers."""
    return write_sheet(path, HEADER, rows(count))


def write_sheet(path: Path, header: Sequence[object], body: Iterable[Sequence[object]], name: str = "Calls") -> Path:
    """One sheet written by openpyxl in write-only mode (row by row, as a person's export would be)."""
    from openpyxl import Workbook

    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet(name)
    sheet.append(header)
    for row in body:
        sheet.append(row)
    workbook.save(path)
    return path


@contextlib.contextmanager
def scratch(prefix: str = "bench-") -> Iterator[Path]:
    """A temporary folder, removed afterwards (whatever happens)."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def size_mb(path: Path) -> float:
    return path.stat().st_size / 2**20


# -- output ----------------------------------------------------------------------------------------

def table(headers: Sequence[str], body: Sequence[Sequence[object]], title: str = "") -> None:
    """Print a plain text table, numbers right-aligned."""
    cells = [[_fmt(value) for value in row] for row in body]
    widths = [max(len(str(h)), *(len(row[n]) for row in cells)) if cells else len(str(h))
              for n, h in enumerate(headers)]
    numeric = [all(_is_number(row[n]) for row in body) if body else False for n in range(len(headers))]

    def line(values: Sequence[str]) -> str:
        pairs = enumerate(zip(values, widths, strict=True))
        return "  ".join(v.rjust(w) if numeric[n] else v.ljust(w) for n, (v, w) in pairs)

    if title:
        print(f"\n{title}")
    print(line([str(h) for h in headers]).rstrip())
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print(line(row).rstrip())
    sys.stdout.flush()


def _is_number(value: object) -> bool:
    if isinstance(value, str):
        try:
            float(value.replace(",", ""))
        except ValueError:
            return value in ("", "-")
        return True
    return isinstance(value, int | float) and not isinstance(value, bool)


def _fmt(value: object) -> str:
    if isinstance(value, float):
        if value != value:
            return "-"
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        if abs(value) >= 100:
            return f"{value:.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.2f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def verdict(ok: bool) -> str:
    return "MET" if ok else "NOT MET"


def machine() -> str:
    """One line about this machine, for the README's performance section."""
    import platform

    cpu = ""
    with contextlib.suppress(OSError):
        for text in Path("/proc/cpuinfo").read_text().splitlines():
            if text.startswith("model name"):
                cpu = text.split(":", 1)[1].strip()
                break
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"{cpu or platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
            f"Python {platform.python_version()}, {platform.system()} {platform.release()}, load {load:.2f}")
