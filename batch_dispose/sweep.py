"""`batch-dispose sweep INBOX`: run every spreadsheet waiting in a folder, for cron.

Each file in INBOX (not hidden, not an office lock file, not changed in the last 10 seconds) is run
in name order, holding the ledger's lock throughout. A file that was run moves to `INBOX/done/`; one
that cannot be used moves to `INBOX/rejected/` with `NAME.reason.txt` beside it. Moving is the last
step: a crash leaves the file in the inbox for the next sweep, and the ledger keeps its rows from
being sent twice. A run that stopped early (token rejected, server unavailable, interrupted) also
leaves its file in the inbox, so the next sweep finishes it; the sweep then stops. A file whose every
attempted row failed without taking effect (could not connect, busy to the last attempt), too small to
spend the run's retry budget, stays in the inbox too; the sweep goes on to the next file (a blip of a few
seconds costs that file a night, not every file), and stops at the second such file in a row. A file with
only some such rows stays in the inbox (the next sweep sends them; the ledger skips the rest), and the
sweep goes on. A file whose
content changed while it was run (size, modification time or SHA-256 differ from when the sweep
took it) also stays, for the next sweep: the new content was not all sent. A file that vanished
during the sweep is said so, never a traceback.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import UsageError
from .files import move_unique, sha256_of
from .loading import FORMATS
from .models import ExitCode, FileResult, Status, StopReason

if TYPE_CHECKING:
    import httpx

    from .credentials import Secret
    from .job import Reporter
    from .settings import Settings

SETTLE_S = 10.0  # a file changed more recently than this may still be being written
STOPPING = (StopReason.UNAUTHORIZED, StopReason.UNAVAILABLE, StopReason.UNREACHABLE, StopReason.UNRESPONSIVE,
            StopReason.INTERRUPTED)


@dataclass
class SweptFile:
    result: FileResult
    moved_to: Path | None
    note: str | None = None  # why it was left where it is (changed or vanished during the sweep)
    stopped: StopReason | None = None  # it stopped the sweep though its own run did not stop (a small file)


@dataclass(frozen=True)
class Fingerprint:
    """What a file was when the sweep took it: changed size, mtime or content means it was replaced."""

    size: int
    mtime_ns: int
    sha256: str

    @classmethod
    def of(cls, path: Path) -> Fingerprint | None:
        try:
            before = path.stat()
            sha256 = sha256_of(path)
        except OSError:
            return None
        return cls(before.st_size, before.st_mtime_ns, sha256)


@dataclass
class SweepResult:
    files: list[SweptFile] = field(default_factory=list)
    waiting: list[Path] = field(default_factory=list)  # too fresh: left for the next sweep
    others: list[Path] = field(default_factory=list)  # not spreadsheets (`notes.txt`, `x.tsv`): left alone, named

    @property
    def exit_code(self) -> ExitCode:
        """0 when every file ended 0 (an empty inbox too); a rejected file (exit 2) counts as 1, and so does a
        file left in the inbox because it changed or vanished during the sweep."""
        from .job import combined_exit_code

        code = combined_exit_code([swept.result for swept in self.files])
        return ExitCode.ROWS_LEFT if code is ExitCode.OK and any(swept.note for swept in self.files) else code


def waiting_files(inbox: Path, *, now: float | None = None) -> tuple[list[Path], list[Path], list[Path]]:
    """(files to run now in name order, files too recently changed to touch yet, other files: not spreadsheets,
    left alone but named, so an export that changed its format does not go unnoticed)."""
    if inbox.is_file():
        raise UsageError(f"{inbox}: is a file, not a folder; `sweep` runs every spreadsheet in a folder (to send "
                         f"one file, use `run {inbox}`).")
    if not inbox.is_dir():
        raise UsageError(f"{inbox}: the inbox folder does not exist.")
    now = time.time() if now is None else now
    ready: list[Path] = []
    fresh: list[Path] = []
    others: list[Path] = []
    for path in sorted(inbox.iterdir(), key=lambda p: p.name):
        name = path.name
        if name.startswith((".", "~$")) or not path.is_file():
            continue
        if path.suffix.lower() not in FORMATS:
            others.append(path)
            continue
        # changed in the last SETTLE_S: maybe still being written. A time further ahead than that is a clock
        # skew or a stamp from the future, not a write in progress: waiting for it would wait forever (the
        # fingerprint taken before the run still keeps a file that changes during it in the inbox)
        (fresh if abs(now - path.stat().st_mtime) < SETTLE_S else ready).append(path)
    return ready, fresh, others


async def sweep(inbox: Path, settings: Settings, token: Secret, *, reporter: Reporter | None = None,
                stop: asyncio.Event | None = None, transport: httpx.AsyncBaseTransport | None = None,
                clock: Callable[[], float] = time.time) -> SweepResult:
    """Run each waiting file and move it to done/ or rejected/ (see the module docstring)."""
    from .job import run_files

    result = SweepResult()
    ready, result.waiting, result.others = waiting_files(inbox, now=clock())
    if not ready:
        return result
    stop = stop or asyncio.Event()
    taken = {path: Fingerprint.of(path) for path in ready}
    outage = _Outage()

    def moved(file_result: FileResult) -> None:
        path = file_result.input_path
        now = Fingerprint.of(path)
        if not path.exists():
            result.files.append(SweptFile(file_result, None, f"{path}: the file disappeared from the inbox during "
                                          f"the sweep; nothing to file (what was sent is in the ledger)."))
        elif now != taken.get(path):
            result.files.append(SweptFile(file_result, None, f"{path}: the file changed while the sweep was running "
                                          f"it (size, time or content); left in the inbox for the next sweep, which "
                                          f"sends what the new content adds."))
        elif (reason := _left_for_next_sweep(file_result)) is not None:
            if file_result.stop_reason is None and file_result.results_path is not None:  # said here, not by its run
                said = SMALL_FILE_STOPS[reason] if outage.stopped or reason is not StopReason.UNREACHABLE else \
                    "no row could be sent (the server could not be reached); left in the inbox for the next sweep"
                result.files.append(SweptFile(file_result, None, f"{path}: {said}", reason))
            else:
                result.files.append(SweptFile(file_result, None))
        elif file_result.unavailable:
            rows = f"{file_result.unavailable} row{'s' if file_result.unavailable != 1 else ''}"
            result.files.append(SweptFile(file_result, None, f"{path}: {rows} could not be sent (the server was "
                                          f"unavailable); left in the inbox for the next sweep, which sends them."))
        else:
            try:
                result.files.append(SweptFile(file_result, _file(file_result, inbox)))
            except OSError as exc:
                result.files.append(SweptFile(file_result, None, f"{path}: could not be moved out of the inbox "
                                              f"({exc.strerror or exc}); the next sweep runs it again and the "
                                              f"ledger skips what was sent."))

    await run_files(ready, settings, token, reporter=reporter, stop=stop, transport=transport, after_file=moved,
                    stop_when=outage.stop_when)
    return result


@dataclass
class _Outage:
    """When a small file's every row failed to connect (`_left_for_next_sweep`), the sweep goes on to the next
    file: a server back after a blip of a few seconds still gets tonight's other files. A second such file in a
    row means the server is down: the sweep stops there. (A file large enough for its run to stop on its own
    stops the sweep at once, as before.)"""

    in_a_row: int = 0
    stopped: bool = False

    def stop_when(self, result: FileResult) -> StopReason | None:
        reason = _left_for_next_sweep(result)
        if reason is StopReason.UNREACHABLE and result.stop_reason is None and result.results_path is not None:
            self.in_a_row += 1
            self.stopped = self.in_a_row >= OUTAGE_FILES
            return reason if self.stopped else None
        self.in_a_row = 0
        return reason


OUTAGE_FILES = 2  # small files in a row that no request reached: the server is down, the sweep stops


SMALL_FILE_STOPS = {  # a file too small for its run to stop on its own, that stopped the sweep all the same
    StopReason.UNREACHABLE: "no row could be sent (the server could not be reached); left in the inbox, and the "
                            "sweep stopped: the next sweep sends it",
    StopReason.UNAUTHORIZED: "the server rejected the access token; left in the inbox, and the sweep stopped: fix "
                             "the token and the next sweep sends it",
}


def _left_for_next_sweep(result: FileResult) -> StopReason | None:
    """A file whose run stopped early (the token rejected 3 times in a row, the server unavailable, an
    interruption) stays in the inbox (its leftovers go out on the next sweep; the ledger skips what went
    through) and ends the sweep. A lone 403 is that row's status: the file is filed, the sweep goes on."""
    if result.stop_reason in STOPPING:
        return result.stop_reason
    if result.exit_code is ExitCode.UNAUTHORIZED:
        return StopReason.UNAUTHORIZED
    answered = sum(result.counts.values()) - result.counts.get(Status.INVALID, 0) - result.counts.get(
        Status.SKIPPED, 0) - result.counts.get(Status.PENDING, 0) - result.unavailable
    if result.unavailable and not answered:  # a file too small to spend the retry budget: the server is down
        return StopReason.UNREACHABLE
    return None


def _file(result: FileResult, inbox: Path) -> Path:
    """Move a finished file to done/, or an unusable one to rejected/ with its reason beside it."""
    if result.error is None:
        return _move(result.input_path, inbox / "done")
    destination = _move(result.input_path, inbox / "rejected")
    reason = destination.with_name(destination.name + ".reason.txt")
    reason.write_text(result.error + "\n", encoding="utf-8")
    return destination


def _move(path: Path, folder: Path) -> Path:
    return move_unique(path, folder, path.stem, path.suffix)
