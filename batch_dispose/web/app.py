"""The ASGI app: routes, static files, the guard, and the lifespan (cleanup; stop a run on shutdown)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from ..errors import BatchDisposeError
from . import api, pages
from .security import Guard, Sessions
from .state import PageState

if TYPE_CHECKING:
    from ..credentials import Secret
    from ..settings import Settings

SWEEP_EVERY_S = 3600


def create_app(settings: Settings, token: Secret, *, passcode: str | None = None,
               loopback_only: bool = True) -> Starlette:
    """The page and its API for one set of settings (as `run` would use them) and one token."""
    state = PageState(settings, token, Sessions(passcode))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async def sweep_hourly() -> None:
            while True:
                await state.sweep()
                await asyncio.sleep(SWEEP_EVERY_S)

        sweeper = asyncio.create_task(sweep_hourly())
        try:
            yield
        finally:
            sweeper.cancel()
            state.stop_all()
            for run in list(state.runs.values()):
                await asyncio.to_thread(run.join)

    async def sentence(request: Request, exc: Exception) -> Response:
        """An expected error of the library (a ledger that cannot be read, say): its sentence, not a traceback."""
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": str(exc)}, status_code=503)
        return PlainTextResponse(str(exc), status_code=503)

    app = Starlette(
        exception_handlers={BatchDisposeError: sentence},
        routes=[*api.ROUTES, *pages.ROUTES,
                Mount("/static", StaticFiles(directory=Path(__file__).parent / "static"), name="static")],
        middleware=[Middleware(Guard, sessions=state.sessions, loopback_only=loopback_only and passcode is None)],
        lifespan=lifespan,
    )
    app.state.page = state
    return app


def page_state(app: Any) -> PageState:
    return app.state.page  # type: ignore[no-any-return]
