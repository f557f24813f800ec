"""The HTML pages: server-rendered from the same views the JSON API returns (autoescaped Jinja2)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from ..history import when
from . import service
from .api import columns_json, history_entries, state_of, upload_json
from .security import COOKIE, SESSION_S, session_of

ROWS_SHOWN = 500  # fine rows shown when "only rows with problems" is switched off
PROBLEMS_SHOWN = 2000

_env = jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
                          autoescape=True, undefined=jinja2.StrictUndefined)
_env.filters["basename"] = lambda path: str(path or "").replace("\\", "/").rsplit("/", 1)[-1]
_env.filters["when"] = when  # ledger times as people read them: local, to the second, with the offset


def render(request: Request, name: str, *, status: int = 200, **context: Any) -> HTMLResponse:
    state = state_of(request)
    context.setdefault("run", None)
    html = _env.get_template(name).render(host=state.host, active=state.active_run(),
                                          logged_in=state.sessions.required, **context)
    return HTMLResponse(html, status_code=status, headers={"cache-control": "no-store"})


async def index(request: Request) -> Response:
    runs = list(state_of(request).runs.values())[-10:]
    return render(request, "index.html", recent=[run.view() for run in reversed(runs)])


async def file_page(request: Request) -> Response:
    state = state_of(request)
    upload = state.uploads.get(request.path_params["id"])
    if upload is not None and upload.checked is None and upload.error:
        return render(request, "columns.html", upload=columns_json(upload), fields=service.FIELDS,
                      guess=_header_guess(upload.preview))
    if upload is None or upload.checked is None:
        return render(request, "gone.html", status=404, what="upload")
    view = upload_json(state, upload, limit=PROBLEMS_SHOWN)
    return render(request, "file.html", upload=view, rows=_rows(upload), shown_problems=PROBLEMS_SHOWN,
                  shown_fine=ROWS_SHOWN, allowed=state.allowed(), has_notes="notes" in upload.table.fields)


def _header_guess(preview: list[tuple[int, list[str]]]) -> dict[str, Any]:
    """The likeliest header row (the first with the most filled cells, mostly not numbers), and for each
    field the header whose name looks like it."""
    def score(cells: list[str]) -> int:
        return sum(1 for cell in cells if cell and not cell.replace(".", "").isdigit())

    row, cells = max(preview, key=lambda item: score(item[1]), default=(None, []))
    hints = {"callID": ("callid", "call", "ref"), "logID": ("logid", "log"), "disposition": ("dispos", "outcome"),
             "notes": ("note", "remark", "comment")}
    columns = {}
    for name, words in hints.items():
        folded = [(cell, cell.casefold().replace(" ", "").replace("_", "")) for cell in cells]
        columns[name] = next((cell for word in words for cell, key in folded if word in key), "")
    return {"row": row, "columns": columns}


FINE = ("ready", "skipped")  # rows that need nothing from the person: hidden under "Only rows with problems"


def _rows(upload: Any) -> list[dict[str, Any]]:
    """The rows the check page lists: every row with a problem (up to a limit), then the first fine ones."""
    checked, table = upload.checked, upload.table
    rows, problems, fine = [], 0, 0
    carried = service.carried_columns(table)
    for index, (row, status, message) in enumerate(zip(checked.rows, checked.status, checked.message, strict=True)):
        if status in FINE:
            fine += 1
            if fine > ROWS_SHOWN and row not in upload.edits:
                continue
        else:
            problems += 1
            if problems > PROBLEMS_SHOWN:
                continue
        rows.append({"row": row, "status": status, "message": message,
                     "cells": service.cells(table, index, upload.edits),
                     "carried": [column[index] for column in carried],
                     "editable": status == "invalid" or row in upload.edits, "excluded": row in upload.excluded})
    return rows


async def run_page(request: Request) -> Response:
    run = state_of(request).runs.get(request.path_params["id"])
    if run is None:
        return render(request, "gone.html", status=404, what="run")
    view = run.view()
    return render(request, "run.html", run=view)


async def history(request: Request) -> Response:
    state = state_of(request)
    call_id = request.query_params.get("call", "").strip()[:64]
    call = await run_in_threadpool(service.call_history, state.settings, call_id) if call_id else None
    runs = await run_in_threadpool(history_entries, state)
    return render(request, "history.html", runs=runs, call=call, call_id=call_id, target=state.settings.base_url)


async def login(request: Request) -> Response:
    state = state_of(request)
    if request.method == "GET":
        return render(request, "login.html", failed=False)
    form = await request.form(max_files=0, max_fields=4)
    passcode = str(form.get("passcode", ""))
    client = request.client.host if request.client else "?"
    session = await state.sessions.login(client, passcode) if state.sessions.required else None
    if session is None:
        return render(request, "login.html", status=401, failed=True)
    response = RedirectResponse("/", status_code=303)
    response.set_cookie(COOKIE, session, max_age=SESSION_S, httponly=True, samesite="strict",
                        secure=request.url.scheme == "https", path="/")
    return response


async def logout(request: Request) -> Response:
    state_of(request).sessions.logout(session_of(request.scope))
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response


ROUTES = [
    Route("/", index, methods=["GET"]),
    Route("/files/{id}", file_page, methods=["GET"]),
    Route("/runs/{id}", run_page, methods=["GET"]),
    Route("/history", history, methods=["GET"]),
    Route("/login", login, methods=["GET", "POST"]),
    Route("/logout", logout, methods=["POST"]),
]
