"""The page's runs: `run FILE` on a thread of its own, watched through the reporter seam.

Each run is `job.run_files` on one file, on its own event loop in a worker thread, so loading,
checking and writing a big workbook never stall the page (or its progress events). The reporter
counts outcomes as the CLI's bar does; the page reads snapshots of it. Stopping sets the run's stop
event, exactly what SIGTERM does in the CLI: no new requests, those in flight finish, the workbook
is written with the rest pending.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import threading
import time
import traceback
from collections import Counter
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import BatchDisposeError
from ..models import FileResult, Status
from . import service

if TYPE_CHECKING:
    from ..credentials import Secret
    from ..settings import Settings


class PageReporter(service.QuietReporter):
    """Counts what the run reports, for the page's progress (thread-safe snapshots)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self.rows = 0
        self.to_send = 0
        self.done = 0
        self.started_at: float | None = None
        self.started = threading.Event()  # the lock is held and the file checked: sending begins

    def file_started(self, path: Path, rows: int, to_send: int) -> None:
        with self._lock:
            self.rows, self.to_send, self.started_at = rows, to_send, time.monotonic()
        self.started.set()

    def outcome(self, status: Status) -> None:
        with self._lock:
            self.counts[str(status)] += 1
            self.done += 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            counts, done, to_send, started = dict(self.counts), self.done, self.to_send, self.started_at
        elapsed = time.monotonic() - started if started is not None else 0.0
        rate = done / elapsed if elapsed > 0 and done else 0.0
        left = to_send - done
        return {"counts": counts, "done": done, "to_send": to_send, "rate": round(rate, 1),
                "eta_s": round(left / rate, 1) if rate and left > 0 else None, "elapsed_s": round(elapsed, 1)}


@dataclass
class PageRun:
    """One run started from the page."""

    id: str
    upload_id: str
    file: str  # the name the person uploaded
    path: Path
    base: Mapping[str, int]  # counts from the check just before sending (invalid, skipped, excluded…)
    reporter: PageReporter = field(default_factory=PageReporter)
    result: FileResult | None = None
    error: str | None = None
    locked: bool = False  # it ended at once: another run holds the ledger's lock
    excluded: frozenset[int] = frozenset()  # rows the person excluded: "send the rest again" keeps them out
    finished: threading.Event = field(default_factory=threading.Event)
    _loop: asyncio.AbstractEventLoop | None = None
    _stop: asyncio.Event | None = None
    _thread: threading.Thread | None = None
    _stop_asked: bool = False

    @property
    def state(self) -> str:
        if not self.finished.is_set():
            return "running"
        if self.error is not None or self.result is None or self.result.stop_reason is not None:
            return "stopped"
        return "finished"

    def stop(self) -> None:
        """Graceful, like SIGTERM in the CLI."""
        self._stop_asked = True
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None:
            with contextlib.suppress(RuntimeError):  # the run's loop has closed: it is over anyway
                loop.call_soon_threadsafe(stop.set)

    def join(self, timeout: float | None = None) -> bool:
        return self.finished.wait(timeout)

    def view(self) -> dict[str, Any]:
        """What GET /api/runs/{id} answers: state, counts (the CLI's keys), rows, results, progress."""
        live = self.reporter.snapshot()
        if self.result is not None:
            done = service.summary(self.result)
            counts = done["counts"]
        else:
            done = {}
            counts = {name: 0 for name in service.RUN_STATUSES}
            for name, value in self.base.items():
                if name in counts:
                    counts[name] += value
            for name, value in live["counts"].items():
                counts[name] = counts.get(name, 0) + value
            counts["pending"] += max(live["to_send"] - live["done"], 0)
        rows = self.result.rows if self.result is not None else (self.reporter.rows or sum(self.base.values()))
        view: dict[str, Any] = {
            "run": self.id, "file": self.file, "state": self.state, "rows": rows, "counts": counts,
            "results": done.get("results"),
            "workbook": f"/api/runs/{self.id}/workbook" if done.get("results") else None,
            "duration_s": done.get("duration_s"), "progress": live, "problems": done.get("problems", []),
            "stop_reason": done.get("stop_reason"), "warnings": done.get("warnings", []),
            "error": self.error, "stopping": self._stop_asked and self.state == "running",
            "upload": self.upload_id,
        }
        view["again"] = bool(view["workbook"]) and view["stop_reason"] != "unauthorized" and any(
            view["counts"].get(name) for name in ("failed", "pending", "invalid"))  # what sending again can change
        view["texts"] = texts(view, stop_cause=str(done.get("stop_cause") or ""), asked=self._stop_asked)
        return view

    def start(self, settings: Settings, token: Secret, edits: Mapping[int, Mapping[str, str]],
              excluded: Collection[int]) -> None:
        self.excluded = frozenset(excluded)

        def main() -> None:
            loop = asyncio.new_event_loop()
            self._loop, self._stop = loop, asyncio.Event()
            if self._stop_asked:
                self._stop.set()
            try:
                self.result = loop.run_until_complete(service.run_file(
                    self.path, settings, token, reporter=self.reporter, stop=self._stop, edits=edits,
                    excluded=excluded))
                if self.result.error:
                    self.error = self.result.error
            except BatchDisposeError as exc:  # the lock is held, the ledger cannot record…
                self.error = str(exc)
                self.locked = isinstance(exc, service.LockHeldError)
            except Exception as exc:  # a bug: said on the page, the traceback on the server's stderr
                traceback.print_exc()
                self.error = (f"The run stopped on an unexpected error ({type(exc).__name__}); the ledger keeps every "
                              f"recorded outcome. See the server's output, and run the file again.")
            finally:
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()
                self.finished.set()
                self.reporter.started.set()

        self._thread = threading.Thread(target=main, name=f"page-run-{self.id}", daemon=True)
        self._thread.start()


#: Why a run stopped by itself, in the page's words (the CLI's lines name flags a page user never sees).
STOPPED = {
    "unauthorized": "Stopped: the server rejected the access token 3 times in a row, so nothing more was sent. "
                    "The token this page uses is wrong or has expired: ask whoever runs the page to change it, then "
                    "upload the same file again (nothing already disposed is sent twice).",
    "unavailable": "Stopped: the server kept answering 'busy, try again later' and served nothing, so nothing more "
                   "was sent. Send the rest again later.",
    "unreachable": "Stopped: could not connect to the server{cause}, so nothing more was sent. Check the network "
                   "(or ask whoever runs the page), then send the rest again.",
    "unresponsive": "Stopped: the server stopped answering usably (many requests in a row got no reply, or a "
                    "reply that is not Ryng's). "
                    "Check the unknown rows in Ryng before sending anything again.",
    "interrupted": "Stopped: the page's server was shut down during the run; the rows not sent are pending.",
    "strict": "Stopped: the file has invalid rows and the page is set to send nothing then.",
}


def texts(view: Mapping[str, Any], *, stop_cause: str = "", asked: bool = False) -> dict[str, str]:
    """The run page's sentences: the state (why it stopped, when it did), the progress line and the summary.
    The page renders them and its script shows them as events arrive, so they are written only here."""
    progress, state, counts = view["progress"], view["state"], view["counts"]
    done, total = progress["done"], progress["to_send"]
    if state == "running":
        state_text = "Stopping: waiting for the requests in flight…" if view["stopping"] else "Sending…"
        rate = f" · {progress['rate']:g} calls/s" if progress["rate"] else ""
        left = f" · about {round(progress['eta_s'])} s left" if progress["eta_s"] is not None else ""
        progress_text = f"{done} of {total} rows done{rate}{left}"
    else:
        reason = view.get("stop_reason")
        if state == "finished":
            state_text = "Finished."
        elif reason == "interrupted" and asked:
            state_text = "Stopped, as you asked: the rows not yet sent are pending, and nothing was lost."
        elif reason in STOPPED:
            state_text = STOPPED[reason].format(cause=f" ({stop_cause})" if stop_cause else "")
        else:
            state_text = "Stopped."  # the error line under it says why
        progress_text = f"{counts.get('disposed', 0)} of {total} calls disposed" if total else ""
    shown = ", ".join(f"{n} {name}" for name, n in counts.items() if n) or "nothing"
    summary = f"{view['rows']} rows: {shown}." if state != "running" else ""
    pending = counts.get("pending", 0)
    if state == "finished" and pending:  # a run that ends by itself leaves pending only the rows excluded
        summary += f" The {pending} pending {'row was' if pending == 1 else 'rows were'} excluded on the check page."
    elif state != "running" and not view["problems"] and not pending:
        summary += " No row needs a look."
    return {"state": state_text, "progress": progress_text, "summary": summary}


def new_id() -> str:
    return secrets.token_urlsafe(9)
