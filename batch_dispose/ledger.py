"""The ledger: what was sent to which Ryng host, durably, so no call is sent twice by accident.

SQLite in WAL mode with `synchronous=FULL`: a committed record survives a crash of the tool and of
the machine. Each row is recorded as `sending` *before* its request leaves, with what is sent
(logID, disposition, notes), and gets its outcome after (one transaction per batch, see
`runner.py`). A run that dies leaves `sending` rows; the next run, holding the lock, turns them into
`unknown`. A call once disposed on a host stays known as disposed (`disposed_at`), even if a later
forced send fails; only a person's `resolve --as failed` clears it.

By default the ledger belongs to the user (`settings.default_ledger_path()`), not to a folder. An
existing file is never replaced: one that is not a healthy ledger (empty, not SQLite, a damaged
page, another program's database) stops every command that would rely on it, with a sentence. A
new ledger is made only where no file exists, atomically (built aside, then linked into place).
Each run ends with a checkpoint, so the `-wal` file is folded into the main file.

An exclusive OS lock beside the ledger (`ledger.sqlite.lock`) lets one run at a time use it; the
kernel releases it when the process dies, so a lock is never stale.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import sqlite3
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from .errors import LedgerError, LedgerWriteError, LockHeldError
from .ledgerfile import RUN_RESULTS, SCHEMA_VERSION, connect, create, damaged, healthy_mark, mark_healthy, wal_of
from .models import CallRequest, Outcome, Status, iso, utc_now

__all__ = ["SCHEMA_VERSION", "CallRecord", "Event", "Ledger", "RunJournal"]
SENDING = "sending"
LOOKUP_CHUNK = 500
@dataclass(frozen=True)
class Event:
    """One recorded outcome, for `history` (a person's `resolve` too: then `who` and `why` are set)."""

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
    log_id: int | None = None  # what was sent (None: recorded before the ledger kept it)
    disposition: str | None = None
    notes: str | None = None
    who: str | None = None
    why: str | None = None


@dataclass(frozen=True)
class CallRecord:
    """What the ledger knows about one call on one host: its latest state and what was last sent."""

    host: str
    call_id: str
    status: str  # sending, or the last outcome (a Status value)
    disposed_at: str | None
    finished_at: str | None
    http_status: int | None
    message: str | None
    run_id: int
    file: str  # the input file of the run that last sent it (or `resolve by NAME`)
    row: int | None
    log_id: int | None = None  # None: sent by a ledger of schema 1, which did not keep it
    disposition: str | None = None
    notes: str | None = None
    resolved_by: str | None = None  # the person whose `resolve` set the current status

    @property
    def disposed(self) -> bool:
        return self.disposed_at is not None

    @property
    def probably_disposed(self) -> bool:
        """Left unknown, then re-sent with --retry-unknown and answered 500: the first attempt probably
        disposed it (see `prior.after_resend`). Only --force or `resolve --as failed` sends it again."""
        return self.status == Status.UNKNOWN and self.http_status == 500


_RECORD_COLUMNS = ("c.host, c.call_id, c.status, c.disposed_at, c.finished_at, c.http_status, c.message, c.run_id, "
                   "r.file, c.row, c.log_id, c.disposition, c.notes, c.resolved_by")


class Ledger:
    """An open ledger. Use `Ledger.open(path)` (locked, for sending) or `Ledger.read(path)` as a context manager."""

    def __init__(self, path: Path, connection: sqlite3.Connection, writer: ThreadPoolExecutor) -> None:
        self.path = path
        self._db = connection
        self.writer = writer  # the one thread that commits while a run sends (see RunJournal)
        self.notices: list[str] = []  # one-line things the next file's result should say (a takeover)
        self._journal_ready = False  # the TEMP view `commit` writes through (made on the first commit)

    @classmethod
    @contextmanager
    def open(cls, path: Path, *, lock: bool = True, recheck: bool = False) -> Iterator[Ledger]:
        """Lock (unless `lock=False`, for reading history), check, migrate and recover the ledger.

        With the lock, a ledger is created where no file exists; without it (history), a missing ledger
        is an error. An existing file that is not a healthy ledger raises DamagedLedgerError. SQLite's
        whole-file check runs when the file changed since it was last found healthy, or with `recheck`."""
        from filelock import FileLock, Timeout

        if lock:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise LedgerError(f"{path.parent}: cannot make the ledger's folder ({exc.strerror or exc}), so "
                                  f"nothing was sent; choose another place with --ledger.", path=path) from None
        guard = FileLock(f"{path}.lock", timeout=0)
        if lock:
            try:
                guard.acquire()
            except Timeout:
                raise LockHeldError(f"another batch-dispose run is using the ledger {path}; "
                                    f"nothing was sent. Try again when it has finished.", path=path) from None
            except OSError as exc:
                raise LedgerError(f"{path}: cannot lock the ledger ({exc.strerror or exc}), so nothing was sent; "
                                  f"make {path.parent} writable for this user, or choose another place with "
                                  f"--ledger.", path=path) from None
        try:
            if not path.exists() and not wal_of(path).exists():
                if not lock:
                    raise LedgerError(f"There is no ledger at {path} yet: nothing has been sent with it.", path=path)
                create(path)
            connection = connect(path, recheck=recheck)
            writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ledger")
            closed_cleanly = False
            try:
                ledger = cls(path, connection, writer)
                if lock:
                    ledger.recover()
                yield ledger
                if lock:
                    ledger.checkpoint()
                    closed_cleanly = True
            finally:
                writer.shutdown(wait=True)
                connection.close()
            if closed_cleanly:  # what SQLite itself just wrote and folded in needs no check next time
                mark_healthy(path)
        finally:
            if lock:
                guard.release()

    @classmethod
    @contextmanager
    def read(cls, path: Path) -> Iterator[Ledger | None]:
        """The ledger for reading only (validate): no lock, never created; None when there is no file.
        A damaged one raises DamagedLedgerError like any other command."""
        if not path.exists() and not wal_of(path).exists():
            yield None
            return
        with cls.open(path, lock=False) as ledger:
            yield ledger

    def take_over(self, old: Path | None) -> str | None:
        """Merge in, once, a ledger left at the old default place (REPORTS_DIR/ledger.sqlite), holding its lock
        too, then rename it aside (`ledger.sqlite.merged-YYYYmmdd`) so it is not merged again. Returns the line
        that says so, or None when there is nothing to take over."""
        from .files import move_unique, sha256_of
        from .ledgerfile import merge

        if old is None or not (old.exists() or wal_of(old).exists()) or old.resolve() == self.path.resolve():
            return None
        with Ledger.open(old) as previous:  # its lock, its health check, migration and recovery
            previous.checkpoint()
            try:
                merged = merge(self._db, old, sha256_of(old))
            except sqlite3.Error as exc:
                raise write_error(self.path, exc) from None
        aside = move_unique(old, old.parent, f"{old.name}.merged-{utc_now().strftime('%Y%m%d')}", "")
        healthy_mark(old).unlink(missing_ok=True)  # it spoke of the file just renamed
        if merged is None:
            return f"the ledger {old} had already been merged into {self.path}; it was renamed to {aside.name}"
        runs, calls = merged
        return (f"took over the ledger {old} (the old default place): {runs} runs and {calls} calls merged into "
                f"{self.path}; the old file was renamed to {aside.name}")

    def pragmas(self) -> dict[str, object]:
        """journal_mode, synchronous and user_version as SQLite reports them (for tests and `history`)."""
        return {name: self._db.execute(f"PRAGMA {name}").fetchone()[0]
                for name in ("journal_mode", "synchronous", "user_version")}

    def checkpoint(self) -> None:
        """Fold the WAL into the main file (end of a run): a copy of the main file alone is then complete."""
        with suppress(sqlite3.Error):  # not fatal: the WAL stays beside the ledger and SQLite folds it in later
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def recover(self) -> int:
        """Rows left `sending` by a run that died become `unknown`; returns how many."""
        now = iso(utc_now())
        with self._transaction():
            stuck = self._db.execute("SELECT host, call_id FROM calls WHERE status = ?", (SENDING,)).fetchall()
            message = ("in flight when its run stopped unexpectedly: the request may or may not have reached Ryng; "
                       "check the call in Ryng, or re-run with --retry-unknown")
            self._db.executemany(  # each also records an event (trigger); its time is when the request was sent,
                # the last thing known of it ("left unknown by an earlier run at …"), not when this run found it
                "UPDATE calls SET status = 'unknown', message = ?, finished_at = sent_at "
                "WHERE host = ? AND call_id = ?",
                [(message, host, call_id) for host, call_id in stuck])
            self._db.execute("UPDATE runs SET finished_at = ? WHERE finished_at IS NULL", (f"died before {now}",))
        return len(stuck)

    def known(self, host: str, call_ids: Sequence[str]) -> dict[str, CallRecord]:
        """What the ledger knows about each of these call IDs on this host (those it knows)."""
        found: dict[str, CallRecord] = {}
        for start in range(0, len(call_ids), LOOKUP_CHUNK):
            chunk = list(call_ids[start:start + LOOKUP_CHUNK])
            marks = ",".join("?" * len(chunk))
            rows = self._query(f"SELECT {_RECORD_COLUMNS} FROM calls c JOIN runs r ON r.id = c.run_id "
                               f"WHERE c.host = ? AND c.call_id IN ({marks})", (host, *chunk))
            found.update((row[1], CallRecord(*row)) for row in rows)
        return found

    def history_lookup(self, host: str) -> Callable[[list[str]], Mapping[str, CallRecord]]:
        """For `planning.plan`: call ID -> what the ledger knows about it on this host (see `prior.decide`)."""
        return lambda call_ids: self.known(host, call_ids)

    def knows_host(self, host: str) -> bool:
        """True once any run against this Ryng host was recorded here."""
        return bool(self._query("SELECT 1 FROM runs WHERE host = ? LIMIT 1", (host,)))

    def begin_run(self, host: str, file: Path | str, sha256: str) -> int:
        with self._transaction():
            cursor = self._db.execute(
                "INSERT INTO runs (host, file, sha256, pid, started_at) VALUES (?, ?, ?, ?, ?)",
                (host, str(file.resolve()) if isinstance(file, Path) else file, sha256, os.getpid(),
                 iso(utc_now())))
        return int(cursor.lastrowid or 0)

    def end_run(self, run_id: int, counts: Mapping[Status, int]) -> None:
        """The run's counts; then the WAL is folded into the main file (each file of a sweep ends complete)."""
        with self._transaction():
            self._db.execute("UPDATE runs SET finished_at = ?, counts = ? WHERE id = ?",
                             (iso(utc_now()), json.dumps({str(k): v for k, v in counts.items()}), run_id))
        self.checkpoint()

    def journal(self, host: str, run_id: int) -> RunJournal:
        return RunJournal(self, host, run_id)

    def commit(self, host: str, run_id: int, finished: Sequence[tuple[CallRequest, Outcome]],
               starting: Sequence[CallRequest]) -> None:
        """Outcomes just in, and intents of rows about to be sent (with what is sent), in one durable transaction.

        The rows go in as one multi-row INSERT into the connection's `journal` view, whose trigger updates each
        call's outcome (recording its event) or records its intent; so a commit is one statement, SQLite's own
        transaction. The writer thread lets go of the interpreter around every statement and must then win it
        back from a busy event loop: row by row (and BEGIN, COMMIT) that was about 40 waits per commit."""
        now = iso(utc_now())
        rows: list[object] = []
        for call, o in finished:
            rows += ("outcome", host, call.call_id, None, None, None, None, None, None,
                     o.status.value, o.http_status, o.message, o.attempts, o.finished_at or now)
        for call in starting:
            rows += ("intent", host, call.call_id, run_id, call.row, now, call.log_id, call.disposition, call.notes,
                     SENDING, None, None, None, None)
        count = len(finished) + len(starting)
        if not count:
            return
        if not self._journal_ready:
            self._make_journal()
        width = len(_JOURNAL_COLUMNS)
        try:
            if count <= COMMIT_CHUNK:  # the common commit: one statement is one transaction
                self._db.execute(_journal_sql(count), rows)
                return
        except sqlite3.Error as exc:
            raise write_error(self.path, exc) from None
        with self._transaction():
            for first in range(0, count, COMMIT_CHUNK):
                part = rows[first * width:(first + COMMIT_CHUNK) * width]
                self._db.execute(_journal_sql(len(part) // width), part)

    def _make_journal(self) -> None:
        """The `journal` view of this connection (TEMP: nothing is added to the ledger file's schema)."""
        try:
            self._db.executescript(_JOURNAL_VIEW)
        except sqlite3.Error as exc:
            raise write_error(self.path, exc) from None
        self._journal_ready = True

    def resolve(self, host: str, call_ids: Sequence[str], *, disposed: bool, who: str, why: str,
                run_id: int) -> list[CallRecord]:
        """Record what a person checked in Ryng: disposed (later runs skip the call) or not (later runs send
        it). Returns each call's record as it was before; an event keeps who, when and why."""
        before = self.known(host, call_ids)
        now = iso(utc_now())
        checked = f"recorded by {who} after checking in Ryng" + (f": {why}" if why else "")
        message = (f"disposed ({checked}); not sent again" if disposed
                   else f"not disposed ({checked}); the next run sends it")
        with self._transaction():
            for call_id in call_ids:
                self._db.execute(
                    "UPDATE calls SET status = ?, http_status = NULL, message = ?, attempts = NULL, finished_at = ?, "
                    "run_id = ?, resolved_by = ?, disposed_at = CASE WHEN ? THEN coalesce(disposed_at, ?) END "
                    "WHERE host = ? AND call_id = ?",
                    (Status.DISPOSED.value if disposed else Status.FAILED.value, message, now, run_id, who,
                     disposed, now, host, call_id))
                self._db.execute("UPDATE events SET why = ? WHERE id = (SELECT max(id) FROM events "
                                 "WHERE host = ? AND call_id = ?)", (why or None, host, call_id))
        return [before[call_id] for call_id in call_ids]

    def calls(self, call_id: str) -> list[CallRecord]:
        """What the ledger knows about a call ID on each host it knows it on (`history`)."""
        rows = self._query(f"SELECT {_RECORD_COLUMNS} FROM calls c JOIN runs r ON r.id = c.run_id "
                           f"WHERE c.call_id = ? ORDER BY c.host", (call_id,))
        return [CallRecord(*row) for row in rows]

    def spelled_alike(self, call_id: str, limit: int = 5) -> list[str]:
        """Call IDs the ledger knows that differ from `call_id` only in upper/lower case (call IDs are
        case-sensitive, people typing one often are not). A scan of the calls: asked only for an unknown ID."""
        rows = self._query("SELECT DISTINCT call_id FROM calls WHERE call_id = ? COLLATE NOCASE AND call_id != ? "
                           "ORDER BY call_id LIMIT ?", (call_id, call_id, limit))
        return [row[0] for row in rows]

    def events(self, *, call_id: str | None = None, run_id: int | None = None, limit: int = 200) -> list[Event]:
        """Recorded outcomes, newest first, for one call ID (any host) or one run."""
        where, args = ("e.call_id = ?", (call_id,)) if call_id is not None else ("e.run_id = ?", (run_id,))
        rows = self._query(
            f"SELECT e.run_id, e.host, e.call_id, e.row, e.status, e.http_status, e.message, e.attempts, e.at, "
            f"r.file, e.log_id, e.disposition, e.notes, e.who, e.why FROM events e JOIN runs r ON r.id = e.run_id "
            f"WHERE {where} ORDER BY e.id DESC LIMIT ?", (*args, limit))
        return [Event(*row) for row in rows]

    def state(self, call_id: str) -> list[tuple[str, str, str | None]]:
        """(host, status, disposed_at) of a call ID on each host the ledger knows it on (see `calls` for more)."""
        return self._query("SELECT host, status, disposed_at FROM calls WHERE call_id = ? ORDER BY host", (call_id,))

    def runs(self, limit: int = 20) -> list[tuple[int, str, str, str, str | None, str | None, str | None]]:
        """(id, host, file, started_at, finished_at, counts JSON, results workbook), newest first."""
        results = "r.path" if self._has_results() else "NULL"
        join = "LEFT JOIN run_results r ON r.run_id = runs.id" if results != "NULL" else ""
        return self._query(f"SELECT id, host, file, started_at, finished_at, counts, {results} FROM runs {join} "
                           f"ORDER BY id DESC LIMIT ?", (limit,))

    def note_results(self, run_id: int, path: Path) -> None:
        """Where run `run_id` wrote its results workbook (for `history` and the page, after a restart too)."""
        with self._transaction():
            self._db.execute(RUN_RESULTS)
            self._db.execute("INSERT OR REPLACE INTO run_results (run_id, path) VALUES (?, ?)", (run_id, str(path)))

    def results_of(self, run_id: int) -> str | None:
        """The results workbook run `run_id` wrote, if recorded."""
        if not self._has_results():
            return None
        found = self._query("SELECT path FROM run_results WHERE run_id = ?", (run_id,))
        return str(found[0][0]) if found else None

    def _has_results(self) -> bool:
        return bool(self._query("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'run_results'"))

    def _query(self, sql: str, args: Sequence[object] = ()) -> list:  # type: ignore[type-arg]
        """A read; a damaged page found on the way is a sentence, not a traceback."""
        try:
            return self._db.execute(sql, tuple(args)).fetchall()
        except sqlite3.DatabaseError as exc:
            raise damaged(self.path, f"SQLite: {exc}") from None

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
            raise write_error(self.path, exc) from None


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


COMMIT_CHUNK = 64  # rows per statement in `Ledger.commit` (14 parameters each: far below SQLite's limit)
_JOURNAL_COLUMNS = ("kind", "host", "call_id", "run_id", "row", "sent_at", "log_id", "disposition", "notes",
                    "status", "http_status", "message", "attempts", "finished_at")
_JOURNAL_VIEW = f"""
CREATE TEMP VIEW IF NOT EXISTS journal ({", ".join(_JOURNAL_COLUMNS)}) AS
    SELECT {", ".join(["NULL"] * len(_JOURNAL_COLUMNS))} WHERE 0;
CREATE TEMP TRIGGER IF NOT EXISTS journal_row INSTEAD OF INSERT ON journal
BEGIN
    UPDATE calls SET status = NEW.status, http_status = NEW.http_status, message = NEW.message,
        attempts = NEW.attempts, finished_at = NEW.finished_at,
        disposed_at = CASE WHEN NEW.status = 'disposed' AND disposed_at IS NULL THEN NEW.finished_at
                      ELSE disposed_at END
        WHERE NEW.kind = 'outcome' AND host = NEW.host AND call_id = NEW.call_id;  -- + event (trigger)
    INSERT INTO calls (host, call_id, status, run_id, row, sent_at, log_id, disposition, notes)
        SELECT NEW.host, NEW.call_id, NEW.status, NEW.run_id, NEW.row, NEW.sent_at, NEW.log_id, NEW.disposition,
               NEW.notes WHERE NEW.kind = 'intent'
        ON CONFLICT (host, call_id) DO UPDATE SET status = excluded.status, run_id = excluded.run_id,
        row = excluded.row, sent_at = excluded.sent_at, http_status = NULL, message = NULL,
        attempts = NULL, finished_at = NULL, log_id = excluded.log_id,
        disposition = excluded.disposition, notes = excluded.notes, resolved_by = NULL;
END;
"""


@functools.cache
def _journal_sql(count: int) -> str:
    """`count` outcomes and intents in one INSERT into the journal view (in order: outcomes first)."""
    row = "(" + ", ".join(["?"] * len(_JOURNAL_COLUMNS)) + ")"
    return f"INSERT INTO journal ({', '.join(_JOURNAL_COLUMNS)}) VALUES " + ", ".join([row] * count)


def write_error(path: Path, exc: sqlite3.Error) -> LedgerError:
    code = getattr(exc, "sqlite_errorcode", None)
    if code in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):  # not the disk's space: the file itself
        fix = ("The ledger file is damaged: restore it from a backup (with its -wal file) before the next run; "
               "until then no run can tell what was sent")
    elif code == sqlite3.SQLITE_FULL:
        fix = "Free some disk space and run the file again"
    elif code in (sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_PERM):
        fix = f"Make {path.parent} and the ledger writable for this user and run the file again"
    else:
        fix = "Check the disk holding it and run the file again"
    return LedgerWriteError(f"{path}: the ledger could not record ({exc}); sending stopped. {fix}: rows in "
                            f"flight will show as unknown.", path=path)


