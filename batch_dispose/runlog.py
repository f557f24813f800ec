"""The run log: one timestamped line per row outcome, beside the results workbook, token-free.

Written as the run goes (so a crash leaves what happened so far), then renamed to match the
workbook's final name (`…-results-YYYYmmdd-HHMMSS[-N].log`). While the run lasts it is
`…-results-YYYYmmdd-HHMMSS.PID.log`; one whose process is gone (a `kill -9`, a power cut) is
folded by the next run in that folder: renamed to `…-results-YYYYmmdd-HHMMSS-interrupted.log`.

The file is created with O_CREAT | O_EXCL | O_NOFOLLOW: a planted symlink (or any file already
there) is never followed or overwritten. A write that fails (disk full) raises RunLogError, the
same one-sentence stop as a ledger that cannot record.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import TextIO

from .errors import RunLogError, UsageError
from .files import NEW_FILE
from .models import Outcome, iso, utc_now

_LIVE = re.compile(r"(?P<stem>.+-results-\d{8}-\d{6})\.(?P<pid>\d+)\.log")
FLUSH_S = 1.0  # the log's lines reach the file at least this often (the ledger is the durable record)
Opener = Callable[[str, int, int], int]  # os.open's shape: a seam for tests (a full disk is /dev/full)


class RunLog:
    """Lines of `TIME  row N  callID X  STATUS [HTTP]  attempts=N  message`."""

    def __init__(self, folder: Path, stem: str, started: datetime, *, opener: Opener = os.open) -> None:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"{folder}: cannot create the reports folder ({exc.strerror}); "
                             f"check --reports-dir.") from None
        self.folded = fold_orphans(folder)  # logs of runs that died, renamed: (old, new)
        base = f"{stem}-results-{started.strftime('%Y%m%d-%H%M%S')}.{os.getpid()}"
        for attempt in range(100):
            self.path = folder / (f"{base}.log" if not attempt else f"{base}-{attempt}.log")
            try:
                descriptor = opener(str(self.path), NEW_FILE | os.O_APPEND, 0o644)
                break
            except FileExistsError:  # a file (or a planted symlink) is there: never follow or reuse it
                continue
            except OSError as exc:
                raise UsageError(f"{folder}: cannot write the run log there ({exc.strerror}); nothing was sent. "
                                 f"Check --reports-dir.") from None
        else:
            raise UsageError(f"{folder}: cannot create a run log there (every name is taken); nothing was sent.")
        self._handle: TextIO = os.fdopen(descriptor, "a", encoding="utf-8", errors="replace")
        self._flushed = time.monotonic()

    def note(self, text: str) -> None:
        self._write(f"{iso(utc_now())}  {text}\n")

    def outcome(self, row: int, call_id: str, outcome: Outcome) -> None:
        http = f" {outcome.http_status}" if outcome.http_status else ""
        message = " ".join(outcome.message.split())
        self._write(f"{outcome.finished_at or iso(utc_now())}  row {row}  callID {call_id or '-'}  "
                    f"{outcome.status.value}{http}  attempts={outcome.attempts}  {message}\n")

    def _write(self, line: str) -> None:
        try:
            self._handle.write(line)
            now = time.monotonic()
            if now - self._flushed >= FLUSH_S:  # a run killed mid-way leaves its lines up to a second ago
                self._handle.flush()
                self._flushed = now
        except OSError as exc:
            raise self._failed(exc) from None

    def _failed(self, exc: OSError) -> RunLogError:
        self.close()
        return RunLogError(f"{self.path}: the run log could not be written ({exc.strerror}); sending stopped. "
                           f"Free some disk space, then run the file again: the ledger keeps what was sent.",
                           path=self.path)

    def finish(self, workbook: Path | None, summary: Sequence[str]) -> Path:
        """Write the closing lines and take the workbook's name (with .log)."""
        for line in summary:
            self.note(line)
        try:
            self._handle.close()
        except OSError as exc:
            raise self._failed(exc) from None
        if workbook is None:
            return self.path
        final = workbook.with_suffix(".log")
        os.replace(self.path, final)  # rename never follows a symlink at `final`: it replaces the link
        return final

    def close(self) -> None:
        """Close quietly (the cleanup path: a write that failed has already been reported)."""
        if not self._handle.closed:
            with contextlib.suppress(OSError):
                self._handle.close()


def fold_orphans(folder: Path) -> list[tuple[Path, Path]]:
    """Rename the `*.PID.log` of runs whose process is gone to `*-interrupted.log`; returns (old, new) pairs."""
    folded: list[tuple[Path, Path]] = []
    try:
        names = [entry.name for entry in os.scandir(folder) if entry.name.endswith(".log")]
    except OSError:
        return folded
    for name in names:
        match = _LIVE.fullmatch(name)
        if match is None or _alive(int(match["pid"])):
            continue
        old = folder / name
        if old.is_symlink():
            continue
        for attempt in range(100):
            new = folder / f"{match['stem']}-interrupted{f'-{attempt}' if attempt else ''}.log"
            if not os.path.lexists(new):
                break
        try:
            os.rename(old, new)
        except OSError:
            continue
        folded.append((old, new))
    return folded


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):  # someone else's process: alive; an absurd number: not ours to judge
        return True
    return True
