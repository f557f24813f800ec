"""The run log: one timestamped line per row outcome, beside the results workbook, token-free.

Written as the run goes (so a crash leaves what happened so far), then renamed to match the
workbook's final name (`…-results-YYYYmmdd-HHMMSS[-N].log`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import TextIO

from .models import Outcome, iso, utc_now


class RunLog:
    """Lines of `TIME  row N  callID X  STATUS [HTTP]  attempts=N  message`."""

    def __init__(self, folder: Path, stem: str, started: datetime) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / f"{stem}-results-{started.strftime('%Y%m%d-%H%M%S')}.{os.getpid()}.log"
        self._handle: TextIO = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 (closed in finish)

    def note(self, text: str) -> None:
        self._handle.write(f"{iso(utc_now())}  {text}\n")

    def outcome(self, row: int, call_id: str, outcome: Outcome) -> None:
        http = f" {outcome.http_status}" if outcome.http_status else ""
        message = " ".join(outcome.message.split())
        self._handle.write(f"{outcome.finished_at or iso(utc_now())}  row {row}  callID {call_id or '-'}  "
                           f"{outcome.status.value}{http}  attempts={outcome.attempts}  {message}\n")

    def finish(self, workbook: Path | None, summary: Sequence[str]) -> Path:
        """Write the closing lines and take the workbook's name (with .log)."""
        for line in summary:
            self.note(line)
        self._handle.close()
        if workbook is None:
            return self.path
        final = workbook.with_suffix(".log")
        os.replace(self.path, final)
        return final

    def close(self) -> None:
        if not self._handle.closed:
            self._handle.close()
