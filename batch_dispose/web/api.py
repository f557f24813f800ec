"""The JSON API (the page's script uses it; so can a script or a CRM). Documented in the README."""

from __future__ import annotations

import asyncio
import json
import secrets
import shutil
import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from ..errors import BatchDisposeError, LockHeldError, NotInLedgerError
from ..models import Status
from ..prior import os_user, resolve_calls
from . import service, uploads
from .state import Conflict, PageState
from .wording import for_page

EVENT_EVERY_S = 0.25  # progress is looked at this often; an event goes out on change, or every 0.5 s
HEARTBEAT_S = 0.5
MULTIPART_SLACK = 64 * 1024  # room for the multipart framing around a file at the size limit


def error(status: int, sentence: str) -> JSONResponse:
    return JSONResponse({"error": sentence}, status_code=status)


def state_of(request: Request) -> PageState:
    return request.app.state.page  # type: ignore[no-any-return]


def upload_json(state: PageState, upload: uploads.Upload, *, limit: int = 1000) -> dict[str, Any]:
    checked = upload.checked
    assert checked is not None
    problems = checked.problems()
    run = state.run_of(upload.id)
    return {
        "id": upload.id, "file": upload.name, "rows": len(checked.rows), "counts": checked.counts,
        "columns": checked.columns, "problems": problems[:limit], "problems_total": len(problems),
        "duplicates": checked.duplicates, "ignored": checked.ignored, "to_send": checked.to_send,
        "target": state.host,
        "previews": checked.previews, "warnings": checked.warnings,
        "edited": sorted(upload.edits), "excluded": sorted(upload.excluded),
        "run": run.id if run is not None else None,
    }


async def post_file(request: Request) -> Response:
    """POST /api/files: multipart field `file`, streamed to disk, then checked as `validate` does."""
    state = state_of(request)
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > service.MAX_BYTES + MULTIPART_SLACK:
        return error(413, f"The file is {int(length) / 2**20:.2f} MB, over the {service.MAX_BYTES / 2**20:.2f} MB "
                     f"limit; split it into smaller files.")
    await state.sweep()
    try:
        upload = await uploads.receive(request.stream(), request.headers.get("content-type", ""), state.folder)
    except uploads.UploadError as exc:
        return error(exc.status, str(exc))
    try:
        await run_in_threadpool(state.check, upload)
    except service.InputFileError as exc:
        sentence = for_page(str(exc).replace(str(upload.path), upload.name))
        if "column" in sentence:  # no header found, a column missing or doubled: the person can pick them
            upload.preview = await run_in_threadpool(service.preview_grid, upload.path)
        if not upload.preview:
            uploads.remove(upload)
            return error(422, sentence)
        upload.error = sentence
        state.uploads[upload.id] = upload
        return JSONResponse(columns_json(upload), status_code=422)
    except BatchDisposeError:  # the ledger cannot be read: said by the app's handler; nothing kept
        uploads.remove(upload)
        raise
    state.uploads[upload.id] = upload
    return JSONResponse(upload_json(state, upload), status_code=201)


def columns_json(upload: uploads.Upload) -> dict[str, Any]:
    """An upload whose header or columns were not found: the sentence, and the first rows to pick from."""
    return {"error": upload.error, "id": upload.id, "file": upload.name, "needs_columns": True,
            "preview": [{"row": row, "cells": cells} for row, cells in upload.preview]}


async def get_file(request: Request) -> Response:
    state = state_of(request)
    upload = state.uploads.get(request.path_params["id"])
    if upload is not None and upload.checked is None and upload.error:
        return JSONResponse(columns_json(upload), status_code=422)
    if upload is None or upload.checked is None:
        return error(404, "No such upload (uploads not sent are removed after a day); upload the file again.")
    return JSONResponse(upload_json(state, upload))


async def post_columns(request: Request) -> Response:
    """POST /api/files/{id}/columns {columns: {field: header}, no_notes}: check again with this mapping
    (what --column FIELD=HEADER and --no-notes do for the CLI)."""
    state = state_of(request)
    upload = state.uploads.get(request.path_params["id"])
    if upload is None:
        return error(404, "No such upload; upload the file again.")
    if upload.sent:
        return error(409, f"{upload.name} has been sent already.")
    try:
        body = await request.json()
    except ValueError:
        body = None
    mapping = body.get("columns") if isinstance(body, dict) else None
    if not isinstance(mapping, dict) or not all(isinstance(v, str) for v in mapping.values()):
        return error(422, 'Send {"columns": {"callID": "HEADER", "logID": "HEADER", ...}, "no_notes": false}.')
    unknown = sorted(set(mapping) - set(service.FIELDS))
    if unknown:
        return error(422, f"{unknown[0]!r} is not a field; use callID, logID, disposition or notes.")
    chosen = {name: header.strip() for name, header in mapping.items() if header.strip()}
    taken: dict[str, str] = {}
    for name, header in chosen.items():
        if header.casefold() in taken:
            return error(422, f"The column “{header}” cannot be both {taken[header.casefold()]} and {name}; choose "
                              f"another column for one of them (or add the missing column to the file and upload "
                              f"it again).")
        taken[header.casefold()] = name
    upload.settings = service.with_columns(state.settings, chosen, bool(body.get("no_notes")))
    upload.table, upload.edits, upload.excluded = None, {}, set()
    try:
        await run_in_threadpool(state.check, upload)
    except (service.InputFileError, service.UsageError) as exc:
        upload.checked = None
        upload.error = for_page(str(exc).replace(str(upload.path), upload.name))
        return JSONResponse(columns_json(upload), status_code=422)
    upload.error = None
    return JSONResponse(upload_json(state, upload))


async def patch_row(request: Request) -> Response:
    """PATCH /api/files/{id}/rows/{row}: edit cells or exclude a row; the row is checked again."""
    state = state_of(request)
    upload = state.uploads.get(request.path_params["id"])
    if upload is None or upload.checked is None:
        return error(404, "No such upload; upload the file again.")
    row = request.path_params["row"]
    if row not in upload.checked.index:
        return error(404, f"{upload.name} has no row {row} with a call in it.")
    if upload.sent:
        return error(409, f"{upload.name} has been sent; to change a row, fix the results workbook and send it again.")
    try:
        changes = await request.json()
    except ValueError:
        return error(422, "Send a JSON object such as {\"logID\": \"87278\"}.")
    if not isinstance(changes, dict) or not changes:
        return error(422, "Send a JSON object with any of callID, logID, disposition, notes, excluded.")
    unknown = sorted(set(changes) - {*service.FIELDS, "excluded"})
    if unknown:
        return error(422, f"Unknown field {unknown[0]!r}: a row has callID, logID, disposition, notes and excluded.")
    if "excluded" in changes and not isinstance(changes["excluded"], bool):
        return error(422, "excluded is true or false.")
    edits = {name: _text(value) for name, value in changes.items() if name != "excluded"}
    if any(value is None for value in edits.values()):
        return error(422, "Cell values are text or numbers, e.g. \"87278\".")
    if "notes" in edits and "notes" not in upload.table.fields:
        return error(422, f"{upload.name} has no notes column, so notes cannot be edited; add the column and upload "
                     f"the file again.")
    if edits:
        upload.edits.setdefault(row, {}).update(edits)
    if "excluded" in changes:
        (upload.excluded.add if changes["excluded"] else upload.excluded.discard)(row)
    checked = await run_in_threadpool(state.check, upload)
    position = checked.index[row]
    return JSONResponse({"row": row, "status": checked.status[position], "message": checked.message[position],
                         "counts": checked.counts, "to_send": checked.to_send, "warnings": checked.warnings,
                         "duplicates": checked.duplicates, "previews": checked.previews})


def _text(value: object) -> str | None:
    """A cell value from JSON as the text a spreadsheet would show (87278.0 -> "87278"); None if not a cell."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    return None


async def post_run(request: Request) -> Response:
    """POST /api/files/{id}/run: 202 {run}, or 409 when a run (the page's, the CLI's, cron's) holds the lock."""
    state = state_of(request)
    upload = state.uploads.get(request.path_params["id"])
    if upload is None or upload.checked is None:
        return error(404, "No such upload; upload the file again.")
    if upload.sent:
        return error(409, f"{upload.name} has been sent already; to send what is left, use \"Send the rest "
                     f"again\" on its run.")
    try:
        run = await state.start_run(upload)
    except Conflict as exc:
        return error(409, str(exc))
    except service.InputFileError as exc:
        return error(422, str(exc).replace(str(upload.path), upload.name))
    return JSONResponse({"run": run.id}, status_code=202, headers={"location": f"/api/runs/{run.id}"})


def _run(request: Request) -> Any:
    return state_of(request).runs.get(request.path_params["id"])


async def get_run(request: Request) -> Response:
    run = _run(request)
    if run is None:
        return error(404, "No such run on this page (runs from the CLI are in GET /api/runs).")
    return JSONResponse(run.view())


async def run_events(request: Request) -> Response:
    """Server-sent events: the run's view whenever it changes (at least every 0.5 s), then a final one."""
    run = _run(request)
    if run is None:
        return error(404, "No such run on this page.")

    async def stream() -> AsyncIterator[str]:
        last, sent_at = "", 0.0
        while True:
            view = run.view()
            text = json.dumps(view)
            now = time.monotonic()
            if view["state"] != "running":
                yield f"event: end\ndata: {text}\n\n"
                return
            if text != last or now - sent_at >= HEARTBEAT_S:
                yield f"data: {text}\n\n"
                last, sent_at = text, now
            await asyncio.sleep(EVENT_EVERY_S)

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"cache-control": "no-store", "x-accel-buffering": "no"})


async def stop_run(request: Request) -> Response:
    run = _run(request)
    if run is None:
        return error(404, "No such run on this page.")
    run.stop()
    return JSONResponse(run.view(), status_code=202)


async def run_workbook(request: Request) -> Response:
    """The results workbook the run wrote, found by run id only (no path ever comes from a request)."""
    run = _run(request)
    path = run.result.results_path if run is not None and run.result is not None else None
    if path is None or not path.is_file():
        return error(404, "This run has no results workbook (yet).")
    return FileResponse(path, filename=path.name,
                        media_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")


async def run_again(request: Request) -> Response:
    """POST /api/runs/{id}/again: the run's results workbook as a new upload (the CLI's re-run), checked."""
    state = state_of(request)
    run = _run(request)
    path = run.result.results_path if run is not None and run.result is not None else None
    if path is None or not path.is_file():
        return error(404, "This run has no results workbook to send again.")
    upload_id = secrets.token_urlsafe(9)
    upload = uploads.Upload(upload_id, path.name, state.folder / upload_id / uploads.safe_name(path.name))
    upload.excluded = set(run.excluded)  # a row the person excluded stays out (rows keep their numbers)
    upload.path.parent.mkdir(parents=True)
    await run_in_threadpool(shutil.copyfile, path, upload.path)
    try:
        await run_in_threadpool(state.check, upload)
    except service.InputFileError as exc:
        uploads.remove(upload)
        return error(422, str(exc))
    state.uploads[upload.id] = upload
    return JSONResponse(upload_json(state, upload), status_code=201)


def history_entries(state: PageState) -> list[dict[str, Any]]:
    """The ledger's runs (page, CLI, cron), with the page's workbook where it has one. Blocking."""
    history = service.run_history(state.settings)
    by_file = {str(run.path.resolve()): run for run in state.runs.values()}
    for entry in history:
        page_run = by_file.get(str(entry["file"]))
        path = page_run.result.results_path if page_run is not None and page_run.result is not None else None
        entry["page_run"] = page_run.id if page_run is not None else None
        entry["workbook"] = f"/api/runs/{page_run.id}/workbook" if page_run is not None and path else (
            f"/api/history/{entry['id']}/workbook" if entry.get("results")
            and service.recorded_workbook(state.settings, entry["id"], entry["results"]) else None)
        entry["results"] = str(path) if path else entry.get("results")
        entry["name"] = page_run.file if page_run is not None else str(entry["file"]).replace("\\", "/").split("/")[-1]
    return history


async def history_workbook(request: Request) -> Response:
    """GET /api/history/{run_id}/workbook: the results workbook the ledger recorded for any run (the page's
    before a restart, the CLI's, cron's), served only from the reports folder."""
    state = state_of(request)
    path = await run_in_threadpool(service.recorded_workbook, state.settings, request.path_params["run_id"])
    if path is None:
        return error(404, "The ledger records no results workbook for this run in this page's reports folder.")
    return FileResponse(path, filename=path.name,
                        media_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")


async def list_runs(request: Request) -> Response:
    """GET /api/runs: the history."""
    return JSONResponse({"runs": await run_in_threadpool(history_entries, state_of(request))})


async def get_call(request: Request) -> Response:
    state = state_of(request)
    call_id = request.path_params["call_id"].strip()
    return JSONResponse(await run_in_threadpool(service.call_history, state.settings, call_id))


async def resolve_call(request: Request) -> Response:
    """POST /api/calls/{call_id}/resolve {as: "disposed"|"failed", note}: record what a person saw in Ryng about
    a call left unknown (the CLI's `resolve`): disposed, later runs skip it; not disposed, the next run sends it."""
    state = state_of(request)
    call_id = request.path_params["call_id"].strip()
    try:
        body = await request.json()
    except ValueError:
        body = None
    if not isinstance(body, dict) or body.get("as") not in ("disposed", "failed"):
        return error(422, "Say what you saw in Ryng: {\"as\": \"disposed\"} or {\"as\": \"failed\"}.")
    note = str(body.get("note") or "").strip()[:500]
    known = await run_in_threadpool(service.call_history, state.settings, call_id)
    here = [host for host in known["hosts"] if host["host"] == state.settings.base_url]
    if here and here[0]["status"] != Status.UNKNOWN:  # what the page offers: settling what no reply settled
        return error(409, f"Call {call_id} is {here[0]['status']}, not unknown: the page records what you saw in "
                          f"Ryng only for a call whose reply was lost.")
    try:
        await run_in_threadpool(resolve_calls, state.settings, [call_id], disposed=body["as"] == "disposed",
                                note=note, who=f"{os_user()} (on the ops page)")
    except NotInLedgerError:
        return error(404, f"The ledger has no record of call {call_id} on {service.host_of(state.settings)}, so "
                          f"there is nothing to record; check the call ID.")
    except LockHeldError:
        return error(409, "A run is using the ledger right now; record this when it has finished.")
    except BatchDisposeError as exc:
        return error(422, str(exc))
    return JSONResponse(await run_in_threadpool(service.call_history, state.settings, call_id))


ROUTES = [
    Route("/api/files", post_file, methods=["POST"]),
    Route("/api/files/{id}", get_file, methods=["GET"]),
    Route("/api/files/{id}/rows/{row:int}", patch_row, methods=["PATCH"]),
    Route("/api/files/{id}/columns", post_columns, methods=["POST"]),
    Route("/api/files/{id}/run", post_run, methods=["POST"]),
    Route("/api/runs", list_runs, methods=["GET"]),
    Route("/api/history/{run_id:int}/workbook", history_workbook, methods=["GET"]),
    Route("/api/runs/{id}", get_run, methods=["GET"]),
    Route("/api/runs/{id}/events", run_events, methods=["GET"]),
    Route("/api/runs/{id}/stop", stop_run, methods=["POST"]),
    Route("/api/runs/{id}/workbook", run_workbook, methods=["GET"]),
    Route("/api/runs/{id}/again", run_again, methods=["POST"]),
    Route("/api/calls/{call_id}", get_call, methods=["GET"]),
    Route("/api/calls/{call_id}/resolve", resolve_call, methods=["POST"]),
]
