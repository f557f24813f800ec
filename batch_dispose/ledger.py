"""The ledger: what was sent to which Ryng host, durably, so no call is sent twice by accident.

SQLite in WAL mode with `synchronous=FULL`: a committed record survives a crash of the tool and of
the machine. Each row is recorded as `sending` *before* its request leaves and gets its outcome
after (one transaction per batch, see `runner.py`). A run that dies leaves `sending` rows; the next
run, holding the lock, turns them into `unknown`. A call once disposed on a host stays known as
disposed (`disposed_at`), even if a later forced send fails.

An exclusive OS lock beside the ledger (`ledger.sqlite.lock`) lets one run at a time use it; the
kernel releases it when the process dies, so a lock is never stale.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .errors import LedgerError, LedgerWriteError, LockHeldError
from .models import CallRequest, Outcome, Status, iso, utc_now

SCHEMA_VERSION = 1
SENDING = "sending"
LOOKUP_CHUNK = 500

_SCHEMA = """
CREATE TABLE runs (
    id          INTEGER PRIMARY KEY,
    host        TEXT NOT NULL,
    file        TEXT NOT NULL,
    sha256      TEXT NOT NULL,
    pid         INTEGER NOT NULL,
    started_at  TEXT NOT NULL,
    finished_at TEXT,            -- NULL: the run died before it finished
    counts      TEXT             -- JSON {status: n} at the end
);
CREATE TABLE calls (             -- the latest state of each call on each host
    host        TEXT NOT NULL,
    call_id     TEXT NOT NULL,
    status      TEXT NOT NULL,   -- sending, or the row's last outcome
    run_id      INTEGER NOT NULL REFERENCES runs(id),
    row         INTEGER NOT NULL,
    http_status INTEGER,
    message     TEXT,
    attempts    INTEGER,
    sent_at     TEXT NOT NULL,
    finished_at TEXT,
    disposed_at TEXT,            -- when it was first disposed; never cleared
    PRIMARY KEY (host, call_id)
) WITHOUT ROWID;
CREATE TABLE events (            -- every outcome ever recorded, for `history`
    id          INTEGER PRIMARY KEY,
    run_id      INTEGER NOT NULL REFERENCES runs(id),
    host        TEXT NOT NULL,
    call_id     TEXT NOT NULL,
    row         INTEGER,
    status      TEXT NOT NULL,
    http_status INTEGER,
    message     TEXT,
    attempts    INTEGER,
    at          TEXT NOT NULL
);
CREATE INDEX events_by_call ON events (call_id);  -- `history CALLID`; `history --run N` scans (rare)
CREATE TRIGGER outcome_event AFTER UPDATE OF status ON calls WHEN NEW.status != 'sending'
BEGIN
    INSERT INTO events (run_id, host, call_id, row, status, http_status, message, attempts, at)
    VALUES (NEW.run_id, NEW.host, NEW.call_id, NEW.row, NEW.status, NEW.http_status, NEW.message,
            NEW.attempts, NEW.finished_at);
END;
"""


@dataclass(frozen=True)
class Event:
    """One recorded outcome, for `history`."""

    run_id: int
    host: str
    call_id: str
    row: int | None
    status: str
    http_status: int | None
    message: str
    attempts: int | None
    at: str
    file: str


class Ledger:
    """An open ledger, holding the lock. Use `Ledger.open(path)` as a context manager."""

    def __init__(self, path: Path, connection: sqlite3.Connection, writer: ThreadPoolExecutor) -> None:
        self.path = path
        self._db = connection
        self.writer = writer  # the one thread that commits while a run sends (see RunJournal)

    @classmethod
    @contextmanager
    def open(cls, path: Path, *, lock: bool = True) -> Iterator[Ledger]:
        """Lock (unless `lock=False`, for reading history), open, migrate and recover the ledger."""
        from filelock import FileLock, Timeout

        path.parent.mkdir(parents=True, exist_ok=True)
        guard = FileLock(f"{path}.lock", timeout=0)
        if lock:
            try:
                guard.acquire()
            except Timeout:
                raise LockHeldError(f"another batch-dispose run is using the ledger {path}; "
                                    f"nothing was sent. Try again when it has finished.", path=path) from None
        try:
            connection = _connect(path)
            writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ledger")
            try:
                ledger = cls(path, connection, writer)
                if lock:
                    ledger.recover()
                yield ledger
            finally:
                writer.shutdown(wait=True)
                connection.close()
        finally:
            if lock:
                guard.release()

    def pragmas(self) -> dict[str, object]:
        """journal_mode, synchronous and user_version as SQLite reports them (for tests and `history`)."""
        return {name: self._db.execute(f"PRAGMA {name}").fetchone()[0]
                for name in ("journal_mode", "synchronous", "user_version")}

    def recover(self) -> int:
        """Rows left `sending` by a run that died become `unknown`; returns how many."""
        now = iso(utc_now())
        with self._transaction():
            stuck = self._db.execute("SELECT host, call_id FROM calls WHERE status = ?", (SENDING,)).fetchall()
            message = ("in flight when its run stopped unexpectedly: the request may or may not have reached Ryng; "
                       "check the call in Ryng, or re-run with --retry-unknown")
            self._db.executemany(  # each also records an event (trigger)
                "UPDATE calls SET status = 'unknown', message = ?, finished_at = ? WHERE host = ? AND call_id = ?",
                [(message, now, host, call_id) for host, call_id in stuck])
            self._db.execute("UPDATE runs SET finished_at = ? WHERE finished_at IS NULL", (f"died before {now}",))
        return len(stuck)

    def history_lookup(self, host: str) -> Callable[[list[str]], Mapping[str, tuple[Status, str]]]:
        """For `job.plan`: call IDs this host has disposed (skipped) or left unknown."""
        def lookup(call_ids: list[str]) -> dict[str, tuple[Status, str]]:
            found: dict[str, tuple[Status, str]] = {}
            for start in range(0, len(call_ids), LOOKUP_CHUNK):
                chunk = call_ids[start:start + LOOKUP_CHUNK]
                marks = ",".join("?" * len(chunk))
                rows = self._db.execute(
                    f"SELECT c.call_id, c.status, c.disposed_at, c.finished_at, r.file FROM calls c "
                    f"JOIN runs r ON r.id = c.run_id WHERE c.host = ? AND c.call_id IN ({marks})", (host, *chunk))
                for call_id, status, disposed_at, finished_at, file in rows:
                    if disposed_at is not None:
                        found[call_id] = (Status.SKIPPED, f"already disposed at {disposed_at} "
                                          f"(ledger; last sent from {Path(file).name}); not sent again")
                    elif status in (SENDING, Status.UNKNOWN):
                        found[call_id] = (Status.UNKNOWN, f"left unknown by an earlier run at {finished_at} "
                                          f"({Path(file).name}); not re-sent: check the call in Ryng, "
                                          f"or re-run with --retry-unknown")
            return found
        return lookup

    def begin_run(self, host: str, file: Path, sha256: str) -> int:
        with self._transaction():
            cursor = self._db.execute(
                "INSERT INTO runs (host, file, sha256, pid, started_at) VALUES (?, ?, ?, ?, ?)",
                (host, str(file.resolve()), sha256, os.getpid(), iso(utc_now())))
        return int(cursor.lastrowid or 0)

    def end_run(self, run_id: int, counts: Mapping[Status, int]) -> None:
        with self._transaction():
            self._db.execute("UPDATE runs SET finished_at = ?, counts = ? WHERE id = ?",
                             (iso(utc_now()), json.dumps({str(k): v for k, v in counts.items()}), run_id))

    def journal(self, host: str, run_id: int) -> RunJournal:
        return RunJournal(self, host, run_id)

    def commit(self, host: str, run_id: int, finished: Sequence[tuple[CallRequest, Outcome]],
               starting: Sequence[CallRequest]) -> None:
        """Outcomes just in, and intents of rows about to be sent, in one durable transaction."""
        now = iso(utc_now())
        with self._transaction():
            if finished:
                self._db.executemany(
                    "UPDATE calls SET status = ?, http_status = ?, message = ?, attempts = ?, finished_at = ?, "
                    "disposed_at = CASE WHEN ? = 'disposed' AND disposed_at IS NULL THEN ? ELSE disposed_at END "
                    "WHERE host = ? AND call_id = ?",
                    [(o.status.value, o.http_status, o.message, o.attempts, o.finished_at or now, o.status.value,
                      o.finished_at or now, host, call.call_id) for call, o in finished])  # + event (trigger)
            if starting:
                self._db.executemany(
                    "INSERT INTO calls (host, call_id, status, run_id, row, sent_at) VALUES (?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT (host, call_id) DO UPDATE SET status = excluded.status, run_id = excluded.run_id, "
                    "row = excluded.row, sent_at = excluded.sent_at, http_status = NULL, message = NULL, "
                    "attempts = NULL, finished_at = NULL",
                    [(host, call.call_id, SENDING, run_id, call.row, now) for call in starting])

    def events(self, *, call_id: str | None = None, run_id: int | None = None, limit: int = 200) -> list[Event]:
        """Recorded outcomes, newest first, for one call ID (any host) or one run."""
        where, args = ("e.call_id = ?", (call_id,)) if call_id is not None else ("e.run_id = ?", (run_id,))
        rows = self._db.execute(
            f"SELECT e.run_id, e.host, e.call_id, e.row, e.status, e.http_status, e.message, e.attempts, e.at, "
            f"r.file FROM events e JOIN runs r ON r.id = e.run_id WHERE {where} ORDER BY e.id DESC LIMIT ?",
            (*args, limit)).fetchall()
        return [Event(*row) for row in rows]

    def state(self, call_id: str) -> list[tuple[str, str, str | None]]:
        """(host, status, disposed_at) of a call ID on each host the ledger knows it on."""
        return self._db.execute("SELECT host, status, disposed_at FROM calls WHERE call_id = ? ORDER BY host",
                                (call_id,)).fetchall()

    def runs(self, limit: int = 20) -> list[tuple[int, str, str, str, str | None, str | None]]:
        """(id, host, file, started_at, finished_at, counts JSON), newest first."""
        return self._db.execute("SELECT id, host, file, started_at, finished_at, counts FROM runs "
                                "ORDER BY id DESC LIMIT ?", (limit,)).fetchall()

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            raise LedgerWriteError(f"{self.path}: the ledger could not record ({exc}); sending stopped. Free some "
                                   f"disk space and run the file again: rows in flight will show as unknown.",
                                   path=self.path) from None


class RunJournal:
    """The runner's journal for one run on one host (see `runner.Journal`).

    Commits run on the ledger's own thread (SQLite releases the GIL while it writes and fsyncs), so
    the event loop keeps reading replies meanwhile; those then go into the next commit together.
    """

    def __init__(self, ledger: Ledger, host: str, run_id: int) -> None:
        self._ledger, self._host, self._run_id = ledger, host, run_id

    async def commit(self, finished: Sequence[tuple[CallRequest, Outcome]], starting: Sequence[CallRequest]) -> None:
        await asyncio.get_running_loop().run_in_executor(
            self._ledger.writer, self._ledger.commit, self._host, self._run_id, finished, starting)


def _connect(path: Path) -> sqlite3.Connection:
    try:
        connection = sqlite3.connect(path, isolation_level=None, timeout=5.0, check_same_thread=False)
    except sqlite3.Error as exc:
        raise LedgerError(f"{path}: cannot open the ledger ({exc}).", path=path) from None
    try:
        _prepare(connection, path)
    except BaseException:
        connection.close()
        raise
    return connection


def _prepare(connection: sqlite3.Connection, path: Path) -> None:
    try:
        connection.execute("PRAGMA journal_mode = WAL")
        connection.execute("PRAGMA synchronous = FULL")
        connection.execute("PRAGMA foreign_keys = ON")
        version = connection.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise LedgerError(f"{path}: the ledger was written by a newer batch-dispose (schema {version}); "
                              f"upgrade batch-dispose.", path=path)
        if version == 0:
            tables = connection.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table'").fetchone()[0]
            if tables:
                raise LedgerError(f"{path}: this SQLite file is not a batch-dispose ledger; use --ledger to "
                                  f"name another file.", path=path)
            connection.executescript(f"BEGIN IMMEDIATE; {_SCHEMA} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;")
    except sqlite3.DatabaseError as exc:
        raise LedgerError(f"{path}: cannot open the ledger ({exc}); if it is damaged, move it aside and "
                          f"the next run starts a new one (rows then are not known as sent).", path=path) from None
