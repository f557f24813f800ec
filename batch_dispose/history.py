"""`batch-dispose history`: what the ledger knows, as data (for `--json`, the page) and as lines for people.

Reads the ledger without taking its lock, so it answers while a run is sending. Three questions:
the recent runs; "did call X go through?" (its state on each Ryng host, what was sent, and every
recorded outcome); and every outcome one run recorded.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import UsageError
from .progress import counts_text

if TYPE_CHECKING:
    from .ledger import CallRecord as LedgerCall
    from .ledger import Event, Ledger

DEFAULT_LIMIT = 20


@dataclass(frozen=True)
class RunRecord:
    """One run the ledger knows: which file went to which host, when, and how its rows ended."""

    id: int
    host: str
    file: str
    started_at: str
    finished_at: str | None  # None while it runs; "died before …" when it never finished
    counts: dict[str, int] | None  # None: the run did not finish
    results: str | None = None  # the results workbook it wrote, when the ledger recorded it

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class HostState:
    """A call's latest state on one Ryng host, and what was last sent for it (when the ledger keeps it)."""

    host: str
    status: str
    disposed_at: str | None
    sent: dict[str, Any] | None = None


@dataclass(frozen=True)
class CallRecord:
    """Everything the ledger knows about one call ID."""

    call_id: str
    hosts: tuple[HostState, ...]
    events: tuple[Event, ...]  # newest first
    more: bool  # more events than the limit
    alike: tuple[str, ...] = ()  # unknown: the call IDs the ledger knows that differ only in case

    @property
    def known(self) -> bool:
        return bool(self.hosts or self.events)

    def to_json(self) -> dict[str, Any]:
        return {"known": self.known, "hosts": [asdict(state) for state in self.hosts],
                "events": [_event_json(event) for event in self.events], "more_events": self.more,
                "alike": list(self.alike)}


@dataclass(frozen=True)
class Answer:
    """What `history` says: `data` for --json (numbers as numbers), `lines` for people."""

    data: dict[str, Any]
    lines: list[str]


def ask(path: Path, *, call_ids: Sequence[str] = (), run_id: int | None = None, limit: int = DEFAULT_LIMIT,
        old: Path | None = None) -> Answer:
    """One run's outcomes (`run_id`), the calls asked about, or (neither) the recent runs.

    `old` is where the ledger was by default before it moved (REPORTS_DIR/ledger.sqlite). Until a run merges
    it in, it still holds what was sent before the upgrade: with no ledger at `path` yet it answers
    everything, and beside one it answers for the calls `path` does not know. So an upgrade never makes a
    sent call look unsent."""
    waiting = old if old is not None and old.is_file() and not _same_file(old, path) else None
    if waiting is not None and not path.is_file():
        answer = ask(waiting, call_ids=call_ids, run_id=run_id, limit=limit)
        answer.lines.insert(0, f"(the ledger at its old place, {waiting}; the next run moves it into {path})")
        return answer
    data: dict[str, Any] = {"ledger": str(path)}
    lines: list[str] = []
    with reading(path) as ledger:
        if run_id is not None:
            events, more = run_events(ledger, run_id, limit)
            data |= {"run": run_id, "events": [_event_json(event) for event in events], "more_events": more}
            lines += event_lines(events) or [f"run {run_id}: the ledger has no outcome recorded by it"]
            lines += [f"  (the newest {limit} outcomes; --limit N shows more)"] if more else []
        if call_ids:
            calls = call_records(ledger, call_ids, limit)
            earlier = _known_in(waiting, [record.call_id for record in calls if not record.known], limit)
            data["calls"] = {record.call_id: {**earlier[record.call_id].to_json(), "ledger": str(waiting)}
                             if record.call_id in earlier else record.to_json() for record in calls}
            lines += call_lines([record for record in calls if record.call_id not in earlier], limit)
            if earlier:
                lines.append(f"in the ledger at its old place ({waiting}; the next run merges it in):")
                lines += call_lines(list(earlier.values()), limit)
        if run_id is None and not call_ids:
            runs, more = recent_runs(ledger, limit)
            data |= {"runs": [run.to_json() for run in runs], "more_runs": more}
            lines += run_lines(runs, more, limit)
            if waiting is not None:
                lines.append(f"Runs from before the ledger moved are in {waiting} until the next run merges them "
                             f"in (`history --ledger {waiting}` shows them).")
    return Answer(data, lines)


def _known_in(ledger_path: Path | None, call_ids: Sequence[str], limit: int) -> dict[str, CallRecord]:
    """The records a ledger still at the old place has of these calls (only the calls it knows)."""
    if ledger_path is None or not call_ids:
        return {}
    with reading(ledger_path) as ledger:
        return {record.call_id: record for record in call_records(ledger, call_ids, limit) if record.known}


def _same_file(one: Path, other: Path) -> bool:
    try:
        return one.resolve() == other.resolve()
    except OSError:
        return False


@contextmanager
def reading(path: Path) -> Iterator[Ledger]:
    """The ledger at `path`, opened for reading (no lock); a missing ledger is a sentence, not a new file."""
    from .ledger import Ledger

    if not path.is_file():
        raise UsageError(f"There is no ledger at {path} yet: nothing has been sent with it (see `batch-dispose "
                         f"config` for the ledger in use, or name one with --ledger PATH).")
    with Ledger.open(path, lock=False) as ledger:
        yield ledger


def recent_runs(ledger: Ledger, limit: int = DEFAULT_LIMIT) -> tuple[list[RunRecord], bool]:
    """The newest `limit` runs, newest first, and whether there are older ones."""
    rows = ledger.runs(limit=limit + 1)
    return [_run_record(row) for row in rows[:limit]], len(rows) > limit


def call_records(ledger: Ledger, call_ids: Sequence[str], limit: int = DEFAULT_LIMIT) -> list[CallRecord]:
    """Each call ID's state on each host, what was sent, and its newest `limit` outcomes."""
    records = []
    for call_id in call_ids:
        events = ledger.events(call_id=call_id, limit=limit + 1)
        states = tuple(_host_state(row, events) for row in ledger.calls(call_id))
        alike = () if states or events else tuple(ledger.spelled_alike(call_id))
        records.append(CallRecord(call_id, states, tuple(events[:limit]), len(events) > limit, alike))
    return records


def run_events(ledger: Ledger, run_id: int, limit: int = DEFAULT_LIMIT) -> tuple[list[Event], bool]:
    """The newest `limit` outcomes recorded by run `run_id`, and whether it recorded more."""
    events = ledger.events(run_id=run_id, limit=limit + 1)
    return events[:limit], len(events) > limit


# --- lines for people -----------------------------------------------------------------------------------------


def run_lines(runs: Sequence[RunRecord], more: bool, limit: int) -> list[str]:
    if not runs:
        return ["The ledger has no runs yet."]
    lines = []
    for run in runs:
        outcome = counts_text(run.counts, empty="no rows") if run.counts is not None else (
            "did not finish" + (f" ({when(run.finished_at)})" if run.finished_at else "; it may still be running"))
        workbook = f"  (workbook {Path(run.results).name})" if run.results else ""
        lines.append(f"run {run.id}  {when(run.started_at)}  {Path(run.file).name} -> {run.host}  {outcome}{workbook}")
    if more:
        lines.append(f"(the newest {limit} runs; --limit N shows more)")
    return lines


def call_lines(records: Sequence[CallRecord], limit: int) -> list[str]:
    lines = []
    for record in records:
        if not record.known:
            alike = f" (call IDs are case-sensitive: it knows {', '.join(record.alike)})" if record.alike else ""
            lines.append(f"{record.call_id}: the ledger has no record of this call ID{alike}")
            continue
        for state in record.hosts:
            disposed = f" (disposed at {when(state.disposed_at)})" if state.disposed_at else ""
            lines.append(f"{record.call_id} on {state.host}: {state.status}{disposed}")
            if state.sent:
                lines.append(f"  last sent: {sent_text(state.sent)}")
        lines += event_lines(record.events)
        if record.more:
            lines.append(f"  (the newest {limit} outcomes; --limit N shows more)")
    return lines


def event_lines(events: Sequence[Event]) -> list[str]:
    lines = []
    for event in events:
        code = f" ({event.http_status})" if event.http_status else ""
        message = f"  {event.message}" if event.message else ""
        who, why = event.who, event.why  # set for a person's `resolve`
        if who:  # its stored message repeats who and why: one clean line instead
            lines.append(f"  {when(event.at)}  run {event.run_id}  resolve by {who}  {event.call_id}: "
                         f"{event.status} (checked in Ryng{': ' + why if why else ''})")
            continue
        lines.append(f"  {when(event.at)}  run {event.run_id}  {Path(event.file).name} row {event.row}  "
                     f"{event.call_id}: {event.status}{code}{message}")
    return lines


def sent_text(sent: dict[str, Any]) -> str:
    parts = [f"logID {sent['logID']}" if sent.get("logID") is not None else "",
             f"disposition {sent['disposition']}" if sent.get("disposition") is not None else "",
             f"notes {json.dumps(sent['notes'], ensure_ascii=False)}" if sent.get("notes") is not None else ""]
    return ", ".join(part for part in parts if part)


DIED = "died before "


def when(moment: str | None) -> str:
    """A ledger time (UTC, ISO 8601) in this machine's local time with its offset, to the second."""
    if not moment:
        return ""
    if moment.startswith(DIED):  # a run that died: `recover` notes when the next run found it
        return DIED + when(moment.removeprefix(DIED))
    try:
        parsed = datetime.fromisoformat(moment.replace("Z", "+00:00"))
    except ValueError:
        return moment  # other text stays as it is
    return parsed.astimezone().strftime("%Y-%m-%d %H:%M:%S %z") if parsed.tzinfo else moment


# --- from the ledger's rows ---------------------------------------------------------------------------------------


def _run_record(row: Sequence[Any]) -> RunRecord:
    run_id, host, file, started_at, finished_at, counts = row[:6]
    parsed = json.loads(counts) if isinstance(counts, str) else counts
    return RunRecord(int(run_id), host, file, started_at, finished_at,
                     {str(name): int(value) for name, value in parsed.items()} if parsed is not None else None,
                     row[6] if len(row) > 6 else None)


def _host_state(row: LedgerCall, events: Sequence[Event]) -> HostState:
    sent = _sent(row)
    if sent is None:  # else: the newest outcome on this host that recorded what it sent
        sent = next((found for event in events if event.host == row.host and (found := _sent(event))), None)
    return HostState(row.host, row.status, row.disposed_at, sent)


def _sent(record: LedgerCall | Event) -> dict[str, Any] | None:
    """What was sent (None when recorded by a ledger of schema 1, which did not keep it)."""
    values = {"logID": record.log_id, "disposition": record.disposition, "notes": record.notes}
    return values if any(value is not None for value in values.values()) else None


def _event_json(event: Event) -> dict[str, Any]:
    return asdict(event)
