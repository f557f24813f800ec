"""Shared vocabulary: statuses, exit codes, one row's request and outcome, a file's result.

Frozen dataclasses, enums, compact columns and a file's result columns; this module imports nothing of ours.
"""

from __future__ import annotations

import enum
import functools
import itertools
import time
from array import array
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar, overload

_T = TypeVar("_T")


EXCLUDED_MESSAGE = "excluded in the page; not sent"  # a row a person excluded: pending, in every generation


class Status(enum.StrEnum):
    """What happened to one input row (the `status` column of the results workbook)."""

    DISPOSED = "disposed"  # the server answered 200: call ended, disposition recorded
    SKIPPED = "skipped"  # already disposed earlier (ledger or a previous results workbook)
    UNAUTHORIZED = "unauthorized"  # the server answered 403
    FAILED = "failed"  # the server said no (500, other 4xx) or stayed unavailable
    INVALID = "invalid"  # the row breaks a rule; never sent
    PENDING = "pending"  # not attempted (or provably not processed): the run stopped first
    UNKNOWN = "unknown"  # sent, but no reply was recorded; never re-sent automatically
    READY = "ready"  # `validate` only: the row would be sent

    @property
    def settled(self) -> bool:
        """True when a later run must not send the row again (without --force)."""
        return self in (Status.DISPOSED, Status.SKIPPED)


#: Order of statuses in summaries and the Summary sheet.
STATUS_ORDER: tuple[Status, ...] = tuple(Status)


class ExitCode(enum.IntEnum):
    """Process exit codes; documented in --help and the README."""

    OK = 0  # every row disposed or skipped
    ROWS_LEFT = 1  # some rows failed, invalid, pending or unknown (or a sweep file was rejected)
    USAGE = 2  # usage error or unusable input: nothing was sent
    UNAUTHORIZED = 3  # the server rejected the token
    LOCKED = 75  # another run holds the ledger's lock (EX_TEMPFAIL)
    ABORTED = 130  # a second Ctrl-C: stopped at once, no workbook written


class StopReason(enum.StrEnum):
    """Why a run stopped sending before every row was attempted."""

    UNAUTHORIZED = "unauthorized"  # 3 consecutive 403s
    UNAVAILABLE = "unavailable"  # the server answered only "busy, retry later" (budget ran out, or no success for long)
    UNREACHABLE = "unreachable"  # the same, but the requests could not even connect (refused, DNS, TLS)
    UNRESPONSIVE = "unresponsive"  # many requests in a row got no usable reply (unknown)
    INTERRUPTED = "interrupted"  # Ctrl-C or SIGTERM
    STRICT = "strict"  # --strict and the file has invalid rows


def utc_now() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    """ISO 8601 in UTC with a Z, to the millisecond: 2026-11-27T16:07:00.123Z."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")[:-6] + "Z"  # isoformat: 5x faster than strftime


@functools.lru_cache(maxsize=256)
def _utc_second(second: int) -> str:
    """A whole epoch second as iso_now writes it, without the fraction: 2026-11-27T16:07:00."""
    return datetime.fromtimestamp(second, UTC).isoformat(timespec="seconds")[:-6]


def iso_now() -> str:
    """`iso(utc_now())` for every outcome of a run: the date and time are formatted once a second."""
    now = time.time()
    second = int(now)
    return f"{_utc_second(second)}.{int((now - second) * 1000):03d}Z"


@dataclass(frozen=True, slots=True)
class CallRequest:
    """One validated row, ready to become one End Preview Call request."""

    index: int  # position of the row in the loaded table (0-based); ties outcomes back
    row: int  # the row number a spreadsheet program shows (header = 1)
    call_id: str
    log_id: int
    disposition: str
    notes: str

    def body(self) -> dict[str, object]:
        """The JSON body, all three keys always present, logID a number."""
        return {"logID": self.log_id, "dispositionName": self.disposition, "notes": self.notes}


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one row ended as; becomes the result columns of its workbook row."""

    status: Status
    message: str
    http_status: int | None = None
    attempts: int = 0
    finished_at: str = ""  # ISO 8601 UTC, empty when nothing happened


@dataclass(frozen=True, slots=True)
class Verdict:
    """How one attempt ended, as the client classified it.

    `retry` is True only when the request provably did not take effect (it can be sent again);
    `status` and `message` are then what the row ends as if no further attempt is made.
    """

    status: Status
    message: str
    http_status: int | None = None
    retry: bool = False
    retry_after: float | None = None  # seconds the server asked us to wait (Retry-After)
    cause: str = ""  # a connection that failed: what happened, in a few words (for the run's stop line)
    stale: bool = False  # a reused connection the server had closed: never left, sent again at once


@dataclass(frozen=True, slots=True)
class Activity:
    """What a run is doing at one moment (the progress bar, the cron line and the stop line show it)."""

    in_flight: int = 0  # requests sent and not yet answered
    oldest_s: float = 0.0  # how long the oldest of them has been waiting for its reply
    longest_left_s: float | None = None  # at most this long until every one of them has ended (None: unknown)
    waiting: int = 0  # rows sleeping before a retry (they hold no request)
    server_wait_s: float = 0.0  # the longest wait a server asked for (Retry-After, capped) still running
    server_asked_s: float = 0.0  # what the server asked for, before the cap (86400 when it said a day)


class Column(Sequence[_T]):
    """A compact sequence (one array or a few where a list would take a Python object a row): subclasses
    say how long it is and make the value at a position (`_at`); indexing, slicing, iterating and equality
    with a list of the same values are the same for all."""

    def __len__(self) -> int:
        raise NotImplementedError

    def _at(self, position: int) -> _T:
        raise NotImplementedError

    @overload
    def __getitem__(self, position: int) -> _T: ...

    @overload
    def __getitem__(self, position: slice) -> list[_T]: ...

    def __getitem__(self, position: int | slice) -> _T | list[_T]:
        if isinstance(position, slice):
            return [self._at(n) for n in range(*position.indices(len(self)))]
        if position < 0:  # past the end, each subclass's own array says IndexError
            position += len(self)
            if position < 0:
                raise IndexError(position - len(self))
        return self._at(position)

    def __iter__(self) -> Iterator[_T]:
        return (self._at(n) for n in range(len(self)))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Sequence) and not isinstance(other, str):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]


class _Compact(Column[_T]):
    """A result column in one array (a byte or two a row, where a list takes eight): values go in as their
    codes and come out as themselves."""

    def __init__(self, codes: array[int], encode: Callable[[_T], int], decode: Callable[[int], _T]) -> None:
        self._codes, self._encode, self._decode = codes, encode, decode

    def __len__(self) -> int:
        return len(self._codes)

    def _at(self, position: int) -> _T:
        return self._decode(self._codes[position])

    def __setitem__(self, position: int, value: _T) -> None:
        self._codes[position] = self._encode(value)

    def __iter__(self) -> Iterator[_T]:
        return map(self._decode, self._codes)


_STATUSES = tuple(Status)
_STATUS_CODES = {status: code for code, status in enumerate(_STATUSES)}
_NO_NUMBER = 0xFFFF  # an http_status that is None
PROBLEMS_KEPT = 200  # rows to look at a result carries (the page lists them; the CLI prints the first 10)


def _number_code(value: int | None) -> int:
    return _NO_NUMBER if value is None else min(value, _NO_NUMBER - 1)


def _number(code: int) -> int | None:
    return None if code == _NO_NUMBER else code


class _Times(Column[str]):
    """The finished_at column: `iso_now()`'s texts (2026-11-30T05:35:02.123Z) as milliseconds in 8 bytes
    (a string takes about 80), "" as -1, any other text kept as itself. Reads back exactly as set."""

    _BLANK, _OTHER = -1, -2

    def __init__(self, rows: int) -> None:
        self._codes = array("q", [self._BLANK]) * rows
        self._texts: dict[int, str] = {}  # position -> a text of another shape
        self._second: tuple[str, int] = ("", 0)  # the last second parsed: its text, its epoch second

    def __len__(self) -> int:
        return len(self._codes)

    def __setitem__(self, position: int, text: str) -> None:
        self._texts.pop(position, None)
        code = self._millis(text) if text else self._BLANK
        if code == self._OTHER:
            self._texts[position] = text
        self._codes[position] = code

    def _millis(self, text: str) -> int:
        if not (len(text) == 24 and text[19] == "." and text[23] == "Z" and text[10] == "T"
                and text[20:23].isdigit() and text[20:23].isascii()):
            return self._OTHER
        prefix = text[:19]
        if prefix != self._second[0]:
            try:
                second = int(datetime.fromisoformat(prefix + "+00:00").timestamp())
            except ValueError:
                return self._OTHER
            if second < 0 or _utc_second(second) != prefix:  # not as iso_now writes it: kept as text
                return self._OTHER
            self._second = (prefix, second)
        return self._second[1] * 1000 + int(text[20:23])

    def _at(self, position: int) -> str:
        code = self._codes[position]
        if code < 0:
            return "" if code == self._BLANK else self._texts[position]
        second, millis = divmod(code, 1000)
        return f"{_utc_second(second)}.{millis:03d}Z"


class RowResults:
    """The result columns of a whole file, one entry per table row, filled as outcomes arrive.

    Status, HTTP status, attempts and the time are kept in arrays (13 bytes a row instead of 32, and no
    string per time: a million rows are a million entries); the same message text is kept once (most rows
    share a handful)."""

    def __init__(self, rows: int) -> None:
        self.status: _Compact[Status] = _Compact(array("B", [_STATUS_CODES[Status.PENDING]]) * rows,
                                                 _STATUS_CODES.__getitem__, _STATUSES.__getitem__)
        self.message: list[str] = [""] * rows
        self.http_status: _Compact[int | None] = _Compact(array("H", [_NO_NUMBER]) * rows, _number_code, _number)
        self.attempts: _Compact[int] = _Compact(array("H", [0]) * rows, _number_code, _number)  # type: ignore[arg-type]
        self.finished_at = _Times(rows)
        self._texts: dict[str, str] = {}  # one object per message text (up to 10,000 different ones)

    def __len__(self) -> int:
        return len(self.status)

    def set(self, index: int, outcome: Outcome) -> None:
        message = outcome.message
        if len(self._texts) < 10_000:
            message = self._texts.setdefault(message, message)
        self.status[index] = outcome.status
        self.message[index] = message
        self.http_status[index] = outcome.http_status
        self.attempts[index] = outcome.attempts
        self.finished_at[index] = outcome.finished_at

    def problems(self, rows: Sequence[int], call_ids: Sequence[str],
                 limit: int = PROBLEMS_KEPT) -> tuple[tuple[int, str, str, str], ...]:
        """The first rows to look at (failed, invalid, unknown, unauthorized: pending rows are explained by
        why the run stopped), as (spreadsheet row, callID as read, status, message)."""
        fine = (Status.DISPOSED, Status.SKIPPED, Status.READY, Status.PENDING)
        found = (index for index, status in enumerate(self.status) if status not in fine)
        return tuple((rows[index], call_ids[index], self.status[index].value, self.message[index])
                     for index in itertools.islice(found, limit))

    def counts(self) -> dict[Status, int]:
        """Rows per status, every status present (zero included), in STATUS_ORDER."""
        found = {status: 0 for status in STATUS_ORDER}
        for status in self.status:
            found[status] += 1
        return found


@dataclass(frozen=True)
class FileResult:
    """The result of one input file: where its workbook went, counts, and its exit code."""

    input_path: Path
    results_path: Path | None
    rows: int
    counts: Mapping[Status, int]
    started_at: datetime
    finished_at: datetime
    exit_code: ExitCode
    stop_reason: StopReason | None = None
    warnings: tuple[str, ...] = field(default=())
    error: str | None = None  # the sentence for a file that could not be used at all
    problems: tuple[tuple[int, str, str, str], ...] = field(default=())  # first rows to look at: (row, callID,
    # status, message)
    ignored: int = 0  # rows that were not calls (footers, other columns only): never sent, never a problem
    stop_cause: str = ""  # stopped as unreachable: what the connections ran into, in a few words
    noticed: tuple[str, ...] = field(default=())  # of the warnings, those already shown before sending
    unavailable: int = 0  # failed rows whose requests never took effect: could not connect, 429/503 to the last

    @property
    def duration_s(self) -> float:
        return (self.finished_at - self.started_at).total_seconds()

    @classmethod
    def unusable(cls, path: Path, error: str) -> FileResult:
        """The result of a file that could not be used at all (nothing sent)."""
        now = utc_now()
        return cls(path, None, 0, {}, now, now, ExitCode.USAGE, error=error)

    @classmethod
    def not_run(cls, path: Path, reason: StopReason) -> FileResult:
        """A file left alone because the run stopped before reaching it."""
        now = utc_now()
        return cls(path, None, 0, {}, now, now, ExitCode.ROWS_LEFT, reason,
                   error=f"{path}: not run, the run stopped before this file ({reason.value}).")
