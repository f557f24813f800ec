"""The ledger's file: its schema and migrations, its health check, creating one, merging another in.

`ledger.py` holds the operations; this module deals with the SQLite file itself. An existing file is
never replaced: one that is not a healthy ledger raises DamagedLedgerError with what to do.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from .errors import DamagedLedgerError, LedgerError
from .models import iso, utc_now

SCHEMA_VERSION = 2
SQLITE_HEADER = b"SQLite format 3\x00"

_SCHEMA_1 = """
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
    disposed_at TEXT,            -- when it was first disposed; cleared only by `resolve --as failed`
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

_MIGRATE_1_TO_2 = """
ALTER TABLE calls ADD COLUMN log_id INTEGER;        -- what was last sent (NULL: sent by schema 1)
ALTER TABLE calls ADD COLUMN disposition TEXT;
ALTER TABLE calls ADD COLUMN notes TEXT;
ALTER TABLE calls ADD COLUMN resolved_by TEXT;      -- the person whose `resolve` set the status, if any
ALTER TABLE events ADD COLUMN log_id INTEGER;
ALTER TABLE events ADD COLUMN disposition TEXT;
ALTER TABLE events ADD COLUMN notes TEXT;
ALTER TABLE events ADD COLUMN who TEXT;             -- `resolve`: the OS user who recorded it
ALTER TABLE events ADD COLUMN why TEXT;             -- `resolve --note`
CREATE TABLE takeovers (                            -- ledgers merged in from the old default place
    sha256      TEXT PRIMARY KEY,
    path        TEXT NOT NULL,
    at          TEXT NOT NULL
);
DROP TRIGGER outcome_event;
""" + (_TRIGGER := """
CREATE TRIGGER outcome_event AFTER UPDATE OF status ON calls WHEN NEW.status != 'sending'
BEGIN
    INSERT INTO events (run_id, host, call_id, row, status, http_status, message, attempts, at,
                        log_id, disposition, notes, who)
    VALUES (NEW.run_id, NEW.host, NEW.call_id, NEW.row, NEW.status, NEW.http_status, NEW.message,
            NEW.attempts, NEW.finished_at, NEW.log_id, NEW.disposition, NEW.notes, NEW.resolved_by);
END;
""")

MIGRATIONS = {1: _MIGRATE_1_TO_2}  # from version N to N + 1

# Where each run wrote its results workbook. Added beside schema 2 without a new version, made by the first run
# that records one: a batch-dispose that does not know it still opens the ledger, and a ledger without it has
# simply recorded no workbook yet.
RUN_RESULTS = ("CREATE TABLE IF NOT EXISTS run_results (run_id INTEGER PRIMARY KEY REFERENCES runs(id), "
               "path TEXT NOT NULL)")


def damaged(path: Path, reason: str) -> DamagedLedgerError:
    return DamagedLedgerError(
        f"{path}: the ledger is damaged ({reason}), so nothing was sent. Restore it from a backup (together with "
        f"its -wal file), or move it aside knowingly (mv '{path}' '{path}.damaged'): calls sent with it are then "
        f"no longer known as sent and would be sent again.", path=path, reason=reason)


def wal_of(path: Path) -> Path:
    return path.with_name(path.name + "-wal")


def check_file(path: Path) -> None:
    """An existing ledger file must at least look like SQLite (a 0-byte file is a failed copy, not a new ledger)."""
    try:
        if not path.exists():
            raise damaged(path, f"the file is missing but its write-ahead log {wal_of(path).name} is there")
        if not path.is_file():
            raise damaged(path, "it is not a file")
        with open(path, "rb") as handle:
            head = handle.read(len(SQLITE_HEADER))
    except OSError as exc:
        raise LedgerError(f"{path}: cannot read the ledger ({exc.strerror}); check its permissions.",
                          path=path) from None
    if not head:
        raise damaged(path, "the file is empty, 0 bytes")
    if head != SQLITE_HEADER:
        raise damaged(path, "the file is not an SQLite database")


def create(path: Path) -> None:
    """A new, empty ledger where no file exists: built under a temporary name, then linked into place, so a
    crash never leaves a half-made ledger (which the next run would refuse as damaged)."""
    from .files import fsync_dir

    temporary = path.with_name(f".{path.name}.{os.getpid()}.new")
    remove(temporary)
    try:
        connection = sqlite3.connect(temporary, isolation_level=None)
        try:
            connection.execute("PRAGMA journal_mode = WAL")
            connection.execute("PRAGMA synchronous = FULL")
            connection.executescript(f"BEGIN IMMEDIATE; {_SCHEMA_1} {MIGRATIONS[1]} "
                                     f"PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;")
        finally:
            connection.close()
        try:
            os.link(temporary, path)  # claims the name only if it is still free
        except FileExistsError:
            pass
        except OSError:
            if not path.exists():
                os.replace(temporary, path)
        fsync_dir(path.parent)
    except (OSError, sqlite3.Error) as exc:
        raise LedgerError(f"{path}: cannot create the ledger ({exc}); make {path.parent} writable for this "
                          f"user, or choose another place with --ledger.", path=path) from None
    finally:
        remove(temporary)


def fingerprint(path: Path) -> str | None:
    """This exact state of a ledger file (device, inode, size, modification and change times), or None while
    its write-ahead log holds part of it (a run is writing, or one died)."""
    try:
        wal = wal_of(path)
        if wal.exists() and wal.stat().st_size:
            return None
        stat = path.stat()
    except OSError:
        return None
    return f"{stat.st_dev} {stat.st_ino} {stat.st_size} {stat.st_mtime_ns} {stat.st_ctime_ns}"


def healthy_mark(path: Path) -> Path:
    return path.with_name(path.name + ".checked")


def _marked(path: Path) -> str | None:
    try:
        return healthy_mark(path).read_text(encoding="ascii")
    except (OSError, ValueError):
        return None


def mark_healthy(path: Path, *, unless_changed_from: str | None = None) -> None:
    """Note that the ledger, as it is now, is healthy (after SQLite's check found it so, or after a run closed
    it cleanly), so the next command skips the check, which reads the whole file: seconds for a ledger of a
    year's calls read cold. Any change to the file (a copy over it, a restore, a write by another program, a
    truncation) changes its fingerprint, and it is checked again. Best effort: without the mark, the next
    command simply checks. `unless_changed_from`: only if the file still has that fingerprint."""
    from .files import NEW_FILE

    now = fingerprint(path)
    if now is None or (unless_changed_from is not None and now != unless_changed_from):
        return
    mark = healthy_mark(path)
    temporary = mark.with_name(f".{mark.name}.{os.getpid()}.tmp")
    try:
        temporary.unlink(missing_ok=True)
        handle = os.open(temporary, NEW_FILE, 0o600)
        try:
            os.write(handle, now.encode("ascii"))
        finally:
            os.close(handle)
        os.replace(temporary, mark)
    except OSError:
        temporary.unlink(missing_ok=True)


def remove(path: Path) -> None:
    for leftover in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        leftover.unlink(missing_ok=True)


def connect(path: Path, *, recheck: bool = False) -> sqlite3.Connection:
    """An open, checked, migrated connection; `recheck` runs SQLite's whole-file check even on a file unchanged
    since it was last found healthy (see `mark_healthy`)."""
    check_file(path)
    try:
        connection = sqlite3.connect(f"{path.resolve().as_uri()}?mode=rw", uri=True, isolation_level=None,
                                     timeout=5.0, check_same_thread=False)
    except sqlite3.Error as exc:
        raise LedgerError(f"{path}: cannot open the ledger ({exc}); check that it and its folder are writable "
                          f"for this user.", path=path) from None
    try:
        prepare(connection, path, recheck=recheck)
    except BaseException:
        connection.close()
        raise
    return connection


def prepare(connection: sqlite3.Connection, path: Path, *, recheck: bool = False) -> None:
    try:
        before = fingerprint(path)
        if recheck or before is None or before != _marked(path):
            check = [row[0] for row in connection.execute("PRAGMA quick_check(3)").fetchall()]
            if check != ["ok"]:
                raise damaged(path, "SQLite's check: " + " ".join(" ".join(map(str, check)).split())[:200])
            if before is not None:
                mark_healthy(path, unless_changed_from=before)
        version = connection.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise LedgerError(f"{path}: the ledger was written by a newer batch-dispose (schema {version}); "
                              f"upgrade batch-dispose.", path=path)
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if version == 0 or not {"runs", "calls", "events"} <= tables:
            raise damaged(path, "it is an SQLite file but not a batch-dispose ledger; if it belongs to another "
                           "program, give batch-dispose its own file with --ledger")
        connection.execute("PRAGMA journal_mode = WAL")  # only now: another program's file is left as it was
        connection.execute("PRAGMA synchronous = FULL")
        connection.execute("PRAGMA foreign_keys = ON")
        while version < SCHEMA_VERSION:
            connection.executescript(f"BEGIN IMMEDIATE; {MIGRATIONS[version]} "
                                     f"PRAGMA user_version = {version + 1}; COMMIT;")
            version += 1
    except sqlite3.DatabaseError as exc:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        code = getattr(exc, "sqlite_errorcode", None)
        if code in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB) or type(exc) is sqlite3.DatabaseError:
            raise damaged(path, f"SQLite: {exc}") from None
        raise LedgerError(f"{path}: cannot open the ledger ({exc}); check that it and its folder are writable "
                          f"for this user.", path=path) from None


_CALL_COLUMNS = ("host, call_id, status, run_id, row, http_status, message, attempts, sent_at, finished_at, "
                 "disposed_at, log_id, disposition, notes, resolved_by")
_SETTLED = ("CASE {0} WHEN 'disposed' THEN 5 WHEN 'unknown' THEN 4 WHEN 'sending' THEN 4 WHEN 'failed' THEN 3 "
            "WHEN 'unauthorized' THEN 2 ELSE 1 END")


def merge(db: sqlite3.Connection, other: Path, sha256: str) -> tuple[int, int] | None:
    """Merge the ledger file `other` (healthy, current schema, recovered, its WAL folded in) into the ledger
    open on `db`, in one transaction: its runs, its calls (keeping the earliest disposed_at and the most
    settled status of the two) and its events. Returns (runs, calls) merged, or None if a file with this
    content was merged before (a crash between merging and renaming it aside)."""
    db.execute("ATTACH DATABASE ? AS other", (f"{other.resolve().as_uri()}?mode=ro",))
    try:
        db.execute("BEGIN IMMEDIATE")
        try:
            if db.execute("SELECT 1 FROM takeovers WHERE sha256 = ?", (sha256,)).fetchone():
                db.execute("ROLLBACK")
                return None
            db.execute("CREATE TEMP TABLE run_map (old INTEGER PRIMARY KEY, new INTEGER NOT NULL)")
            for old_id, *run in db.execute("SELECT id, host, file, sha256, pid, started_at, finished_at, counts "
                                           "FROM other.runs ORDER BY id").fetchall():
                cursor = db.execute("INSERT INTO runs (host, file, sha256, pid, started_at, finished_at, counts) "
                                    "VALUES (?, ?, ?, ?, ?, ?, ?)", run)
                db.execute("INSERT INTO temp.run_map VALUES (?, ?)", (old_id, cursor.lastrowid))
            db.execute("DROP TRIGGER outcome_event")  # merged states are not new outcomes; their events come below
            keep = ", ".join(f"{column} = CASE WHEN {_SETTLED.format('excluded.status')} > "
                             f"{_SETTLED.format('calls.status')} THEN excluded.{column} ELSE calls.{column} END"
                             for column in ("status", "run_id", "row", "http_status", "message", "attempts",
                                            "sent_at", "finished_at", "log_id", "disposition", "notes", "resolved_by"))
            calls = db.execute(
                f"INSERT INTO calls ({_CALL_COLUMNS}) SELECT {_CALL_COLUMNS.replace('run_id', 'm.new')} "
                f"FROM other.calls o JOIN temp.run_map m ON m.old = o.run_id WHERE true "
                f"ON CONFLICT (host, call_id) DO UPDATE SET disposed_at = CASE "
                f"WHEN calls.disposed_at IS NULL THEN excluded.disposed_at "
                f"WHEN excluded.disposed_at IS NULL THEN calls.disposed_at "
                f"ELSE min(calls.disposed_at, excluded.disposed_at) END, {keep}").rowcount
            db.execute(_TRIGGER)
            events = ("run_id, host, call_id, row, status, http_status, message, attempts, at, log_id, disposition, "
                      "notes, who, why")
            db.execute(f"INSERT INTO events ({events}) SELECT {events.replace('run_id', 'm.new', 1)} "
                       f"FROM other.events e JOIN temp.run_map m ON m.old = e.run_id ORDER BY e.id")
            runs = db.execute("SELECT count(*) FROM temp.run_map").fetchone()[0]
            db.execute("DROP TABLE temp.run_map")
            db.execute("INSERT INTO takeovers (sha256, path, at) VALUES (?, ?, ?)",
                       (sha256, str(other.resolve()), iso(utc_now())))
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        return runs, calls
    finally:
        db.execute("DETACH DATABASE other")
