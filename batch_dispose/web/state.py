"""The server's state: settings, the token, the uploads and the runs. Created when the app is."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import service
from .runs import PageRun, new_id
from .uploads import Upload, sweep_stale, uploads_dir

if TYPE_CHECKING:
    from ..credentials import Secret
    from ..settings import Settings
    from .security import Sessions


KEEP_SENT = 20  # sent uploads whose check page stays available (the file stays on disk: the ledger names it)


class Conflict(Exception):
    """A run cannot start now (409); the text is the sentence the page shows."""


@dataclass
class PageState:
    settings: Settings
    token: Secret
    sessions: Sessions
    uploads: dict[str, Upload] = field(default_factory=dict)
    runs: dict[str, PageRun] = field(default_factory=dict)
    closing: bool = False
    _allowed: Any = None

    @property
    def host(self) -> str:
        return service.host_of(self.settings)

    @property
    def folder(self) -> Path:
        return uploads_dir(self.settings.reports_dir)

    def allowed(self) -> tuple[str, ...] | None:
        if self._allowed is None:
            self._allowed = (service.allowed_dispositions(self.settings),)
        return self._allowed[0]  # type: ignore[no-any-return]

    def active_run(self) -> PageRun | None:
        return next((run for run in self.runs.values() if run.state == "running"), None)

    def run_of(self, upload_id: str) -> PageRun | None:
        return next((run for run in reversed(self.runs.values()) if run.upload_id == upload_id), None)

    def check(self, upload: Upload) -> service.Check:
        """Load (once) and check an upload with its edits and exclusions; blocking: call in a thread."""
        settings = self.settings_for(upload)
        with upload.lock:
            if upload.table is None:
                upload.table = service.load(upload.path, settings)
                if upload.checked is None and not upload.excluded:  # a results workbook with rows excluded in
                    upload.excluded = set(upload.table.prior_excluded)  # the page: they stay out (boxes ticked)
            upload.checked = service.check(upload.table, settings, self.allowed(), edits=dict(upload.edits),
                                           excluded=set(upload.excluded))
            return upload.checked

    def settings_for(self, upload: Upload) -> Settings:
        return upload.settings if upload.settings is not None else self.settings

    async def start_run(self, upload: Upload) -> PageRun:
        """Send an upload's rows: `run FILE` with its edits. Conflict when a run holds the lock."""
        active = self.active_run()
        if active is not None:
            raise Conflict(f"A run from this page is already sending ({active.file}); one run at a time. "
                           f"Wait for it to finish, or stop it.")
        if self.closing:
            raise Conflict("The page is shutting down; start it again to send.")
        checked = upload.checked
        base = {name: count for name, count in (checked.counts.items() if checked else ()) if name != "ready"}
        run = PageRun(new_id(), upload.id, upload.name, upload.path, base)
        self.runs[run.id] = run
        upload.sent = True
        run.start(self.settings_for(upload), self.token, dict(upload.edits), set(upload.excluded))
        await asyncio.to_thread(run.reporter.started.wait)
        if run.finished.is_set() and run.reporter.started_at is None:  # never began sending
            del self.runs[run.id]
            upload.sent = False
            if run.locked:
                raise Conflict(run.error)
            raise service.InputFileError(run.error or "The file could not be sent.", path=upload.path)
        (upload.path.parent / ".sent").touch()
        return run

    def stop_all(self) -> None:
        self.closing = True
        for run in self.runs.values():
            if run.state == "running":
                run.stop()

    async def sweep(self) -> int:
        """Forget and remove uploads older than a day that were never sent (the disk work on a thread; the
        dictionaries are touched on the event loop only)."""
        keep = {upload.path.parent for upload in self.uploads.values() if upload.sent}
        removed = await asyncio.to_thread(sweep_stale, self.folder, keep)
        gone = await asyncio.to_thread(lambda: [key for key, upload in list(self.uploads.items())
                                                if not upload.path.exists()])
        for key in gone:
            self.uploads.pop(key, None)
        sent = [key for key, upload in self.uploads.items() if upload.sent]
        for key in sent[:-KEEP_SENT]:  # their runs stay; the checked tables of old sends need not stay in memory
            del self.uploads[key]
        return removed
