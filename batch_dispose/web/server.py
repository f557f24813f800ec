"""`batch-dispose serve`: the page on uvicorn, stopping a run as the CLI does on Ctrl-C / SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import uvicorn

from ..errors import UsageError
from ..models import ExitCode
from .app import create_app, page_state
from .security import PASSCODE_ENV, is_loopback

if TYPE_CHECKING:
    from ..credentials import Secret
    from ..settings import Settings


class _Server(uvicorn.Server):
    """uvicorn, with the CLI's signals: the first stops the run gracefully and then the server; the
    second exits at once (the ledger still holds every recorded outcome)."""

    def __init__(self, config: uvicorn.Config, on_ready: Callable[[str], None], on_stop: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_ready, self._on_stop, self._signals = on_ready, on_stop, 0

    async def startup(self, sockets: Any = None) -> None:
        await super().startup(sockets)
        if self.started and self.servers:
            host, port = self.servers[0].sockets[0].getsockname()[:2]
            shown = f"[{host}]" if ":" in host else host
            self._on_ready(f"http://{shown}:{port}/")

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {number: signal.signal(number, self.handle_exit) for number in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for number, handler in previous.items():
                signal.signal(number, handler)

    def handle_exit(self, sig: int, frame: Any) -> None:
        self._signals += 1
        if self._signals > 1:
            os._exit(ExitCode.ABORTED)
        self._on_stop()
        self.should_exit = True


def require_passcode(host: str, passcode: str | None) -> None:
    """Refuse a non-loopback --host without a passcode (UsageError: exit 2, one sentence)."""
    if not is_loopback(host) and passcode is None:
        raise UsageError(f"--host {host} lets other machines reach the page, so it needs a passcode: "
                         f"--passcode-file FILE or {PASSCODE_ENV}.")


def serve(settings: Settings, token: Secret, *, host: str = "127.0.0.1", port: int = 8080,
          passcode: str | None = None, on_ready: Callable[[str], None] = lambda url: None,
          forwarded_allow_ips: str | None = None) -> int:
    """Serve the page until Ctrl-C / SIGTERM; returns the exit code (0). Raises UsageError for a
    non-loopback host without a passcode, or a port that cannot be listened on."""
    require_passcode(host, passcode)
    app = create_app(settings, token, passcode=passcode, loopback_only=is_loopback(host))
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False, lifespan="on",
                            proxy_headers=True, forwarded_allow_ips=forwarded_allow_ips, server_header=False)
    server = _Server(config, on_ready, page_state(app).stop_all)
    try:
        asyncio.run(server.serve())
    except OSError as exc:
        raise UsageError(f"The page cannot listen on {host}:{port} ({exc.strerror}); try another --port.") from None
    except SystemExit as exc:  # uvicorn: the port is taken, or startup failed
        raise UsageError(f"The page cannot listen on {host}:{port}; is another program using that port? "
                         f"Try another --port.") from exc
    return ExitCode.OK
