"""The exceptions batch-dispose raises on purpose, one tree::

    BatchDisposeError               anything we expect and explain in one sentence
    ├── UsageError                  a flag, config or token problem (exit 2)
    │   ├── ConfigError             batch-dispose.toml is unreadable or has an unknown key
    │   └── NotInLedgerError        `resolve` named a call ID the ledger has no record of
    ├── InputFileError              a file that cannot be used at all (exit 2, nothing sent)
    ├── LockHeldError               another run holds the ledger's lock (exit 75)
    ├── NotWritableError            the reports folder or the ledger's folder cannot be written (exit 2)
    ├── LedgerError                 the ledger cannot be opened or is not ours (exit 2)
    │   ├── DamagedLedgerError      an existing file that is not a healthy ledger: nothing sent (exit 2)
    │   └── LedgerWriteError        the ledger could not record mid-run (disk full?): sending stopped (exit 1)
    └── RunLogError                 the run log could not be written mid-run (disk full?): sending stopped (exit 1)

Each carries its context as keyword-only attributes; ``str(exc)`` is the sentence a person reads.
Only ``cli.py`` turns them into output. Nothing here ever holds the access token.
"""

from __future__ import annotations

from pathlib import Path


class BatchDisposeError(Exception):
    """Base of every error we expect; its text is a complete sentence for a person."""


class UsageError(BatchDisposeError):
    """The command line, the config file or the token setup is wrong."""


class ConfigError(UsageError):
    """The config file cannot be read, or names a key we do not know."""

    def __init__(self, message: str, *, path: Path | None = None, key: str | None = None) -> None:
        super().__init__(message)
        self.path = path
        self.key = key


class NotInLedgerError(UsageError):
    """`resolve` named call IDs that the ledger has no record of on that host."""

    def __init__(self, message: str, *, path: Path, host: str, call_ids: tuple[str, ...]) -> None:
        super().__init__(message)
        self.path = path
        self.host = host
        self.call_ids = call_ids


class InputFileError(BatchDisposeError):
    """A file that cannot be used at all; the message names the file and what to do."""

    def __init__(self, message: str, *, path: Path) -> None:
        super().__init__(message)
        self.path = path


class LockHeldError(BatchDisposeError):
    """Another batch-dispose run holds the lock beside the ledger."""

    def __init__(self, message: str, *, path: Path) -> None:
        super().__init__(message)
        self.path = path


class NotWritableError(BatchDisposeError):
    """A folder a run must write to (reports, the ledger's) cannot be written; checked before anything is sent."""

    def __init__(self, message: str, *, path: Path, role: str) -> None:
        super().__init__(message)
        self.path = path
        self.role = role  # "reports folder" or "ledger folder"


class LedgerError(BatchDisposeError):
    """The ledger file cannot be opened, or was written by a newer version."""

    def __init__(self, message: str, *, path: Path) -> None:
        super().__init__(message)
        self.path = path


class LedgerWriteError(LedgerError):
    """The ledger could not record while a run was sending; the run stops (nothing unrecorded is sent)."""


class DamagedLedgerError(LedgerError):
    """An existing file where the ledger should be is not a healthy ledger (empty, not SQLite, damaged,
    another program's database). Never replaced by a new one: the calls it knows would be sent again."""

    def __init__(self, message: str, *, path: Path, reason: str) -> None:
        super().__init__(message, path=path)
        self.reason = reason
class RunLogError(BatchDisposeError):
    """The run log could not be written while a run was sending (disk full?); the run stops, like LedgerWriteError."""

    def __init__(self, message: str, *, path: Path) -> None:
        super().__init__(message)
        self.path = path
