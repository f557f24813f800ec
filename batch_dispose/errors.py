"""The exceptions batch-dispose raises on purpose, one tree::

    BatchDisposeError               anything we expect and explain in one sentence
    ├── UsageError                  a flag, config or token problem (exit 2)
    │   └── ConfigError             batch-dispose.toml is unreadable or has an unknown key
    ├── InputFileError              a file that cannot be used at all (exit 2, nothing sent)
    ├── LockHeldError               another run holds the ledger's lock (exit 75)
    ├── LedgerError                 the ledger cannot be opened or is not ours (exit 2)
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


class LedgerError(BatchDisposeError):
    """The ledger file cannot be opened, or was written by a newer version."""

    def __init__(self, message: str, *, path: Path) -> None:
        super().__init__(message)
        self.path = path


class LedgerWriteError(LedgerError):
    """The ledger could not record while a run was sending; the run stops (nothing unrecorded is sent)."""


class RunLogError(BatchDisposeError):
    """The run log could not be written while a run was sending (disk full?); the run stops, like LedgerWriteError."""

    def __init__(self, message: str, *, path: Path) -> None:
        super().__init__(message)
        self.path = path
