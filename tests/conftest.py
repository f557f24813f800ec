"""Shared fixtures: the real simulator on loopback, the CLI in-process, and real spreadsheet files."""

from __future__ import annotations

import csv
import io
import json
import socket
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from openpyxl import Workbook, load_workbook

from batch_dispose.cli import main
from batch_dispose.simulator import RunningSimulator, SimConfig, start_in_thread

TOKEN = "test-token-3f9a1c"  # what the simulators in tests accept
HEADER = ["callID", "logID", "disposition", "notes"]


@pytest.fixture(autouse=True)
def _private_state_home(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every test gets its own per-user state folder (and home): the default ledger lives there, never in
    the real user's home."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_STATE_HOME", str(home / ".local" / "state"))
    return home


def default_ledger() -> Path:
    """Where the default (per-user) ledger is for the running test."""
    from batch_dispose.settings import default_ledger_path

    return default_ledger_path()


@pytest.fixture
def simulator() -> Iterator[Callable[..., RunningSimulator]]:
    """Start simulators (a real aiohttp server on a free loopback port); all stopped after the test."""
    started: list[RunningSimulator] = []

    def start(**config: object) -> RunningSimulator:
        config.setdefault("token", TOKEN)
        sim = start_in_thread(SimConfig(**config))  # type: ignore[arg-type]
        started.append(sim)
        return sim

    yield start
    for sim in started:
        sim.stop()


@pytest.fixture
def sim(simulator: Callable[..., RunningSimulator]) -> RunningSimulator:
    """A well-behaved simulator accepting TOKEN."""
    return simulator()


@dataclass
class CliResult:
    code: int
    out: str
    err: str

    def json(self) -> dict:  # type: ignore[type-arg]
        return json.loads(self.out)


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Callable[..., CliResult]:
    """Run `batch-dispose ARGS` in-process with the test token in the environment, from tmp_path."""
    monkeypatch.chdir(tmp_path)

    def run(*args: object, token: str | None = TOKEN) -> CliResult:
        if token is None:
            monkeypatch.delenv("RYNG_ACCESS_TOKEN", raising=False)
        else:
            monkeypatch.setenv("RYNG_ACCESS_TOKEN", token)
        out, err = io.StringIO(), io.StringIO()
        code = main([str(arg) for arg in args], stdout=out, stderr=err)
        return CliResult(code, out.getvalue(), err.getvalue())

    return run


def write_csv(path: Path, rows: Sequence[Sequence[object]], *, header: Sequence[str] = HEADER,
              delimiter: str = ",", encoding: str = "utf-8", newline: str = "\n") -> Path:
    """A real CSV file written with the csv module."""
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, delimiter=delimiter, lineterminator=newline)
    writer.writerow(header)
    writer.writerows(rows)
    path.write_bytes(buffer.getvalue().encode(encoding))
    return path


def write_xlsx(path: Path, rows: Sequence[Sequence[object]], *, header: Sequence[str] = HEADER,
               title: str = "Calls") -> Path:
    """A real XLSX file written by openpyxl (an Excel-compatible writer); strings stay strings."""
    workbook = Workbook()
    sheet = workbook.active
    sheet.title = title
    sheet.append(list(header))
    for row in rows:
        sheet.append(list(row))
    for line in sheet.iter_rows():
        for cell in line:
            if isinstance(cell.value, str) and cell.value.startswith("="):
                cell.data_type = "s"
    workbook.save(path)
    return path


def read_results(path: Path) -> tuple[list[str], list[dict[str, object]], dict[str, object]]:
    """(headers, rows under the header as dicts, summary) of a results workbook, read back with openpyxl.

    The header is the row holding `status` and `message`, wherever it is (title rows may stand above it);
    blank lines under it are left out, every other row is a record (its `row` cell says its line)."""
    workbook = load_workbook(path)
    rows = list(workbook["Results"].iter_rows(values_only=True))
    at = next(n for n, row in enumerate(rows) if "status" in row and "message" in row)
    headers = [str(value) for value in rows[at]]
    records = [dict(zip(headers, row, strict=True)) for row in rows[at + 1:] if any(v is not None for v in row)]
    summary = {str(key): value for key, value in workbook["Summary"].iter_rows(values_only=True)}
    workbook.close()
    return headers, records, summary


def rows_of(count: int, start: int = 1000) -> list[list[object]]:
    """`count` valid rows with distinct callIDs."""
    return [[str(start + n), 5000 + n, "Interested", f"note {n}"] for n in range(count)]


def free_port() -> int:
    """A loopback port nothing listens on (a refused connection, or a server's port to bind)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # type: ignore[no-any-return]
