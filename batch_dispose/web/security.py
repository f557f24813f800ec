"""What keeps the page safe to leave running: same-origin writes, headers, the passcode and sessions.

- Every POST/PATCH/PUT/DELETE must come from the page's own origin (the Origin header, or the
  Referer when a browser sends no Origin); anything else is 403. No cross-site form or script can
  start a run.
- On loopback the Host header must name loopback too, so a DNS-rebinding page cannot pose as us.
- Every response carries a Content-Security-Policy without inline scripts, nosniff and no framing.
- With a passcode, every page and API call needs a session from the login form: a random id kept
  in memory, in an HttpOnly, SameSite=Strict cookie. Wrong passcodes wait longer each time.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import os
import secrets
import time
from collections.abc import Mapping
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..errors import UsageError

PASSCODE_ENV = "BATCH_DISPOSE_PASSCODE"
COOKIE = "batch_dispose_session"
SESSION_S = 12 * 3600
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; object-src 'none'; "
       "base-uri 'none'; frame-ancestors 'none'; form-action 'self'")
HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
]
UNSAFE = {"POST", "PATCH", "PUT", "DELETE"}
OPEN_PATHS = ("/login", "/static/")


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def load_passcode(passcode_file: Path | None, environ: Any = None) -> str | None:
    """The passcode from --passcode-file, else BATCH_DISPOSE_PASSCODE, else None."""
    environ = os.environ if environ is None else environ
    if passcode_file is not None:
        try:
            value = passcode_file.read_text(encoding="utf-8-sig").strip()
        except OSError as exc:
            raise UsageError(f"{passcode_file}: cannot read the passcode file ({exc.strerror}).") from None
        if not value:
            raise UsageError(f"{passcode_file}: the passcode file is empty; put the passcode in it.")
        return value
    value = environ.get(PASSCODE_ENV, "").strip()
    return value or None


class Sessions:
    """Logged-in sessions (in memory: a restart logs everyone out) and the slowdown for wrong passcodes."""

    def __init__(self, passcode: str | None) -> None:
        self.passcode = passcode
        self._sessions: dict[str, float] = {}
        self._failures: dict[str, int] = {}

    @property
    def required(self) -> bool:
        return self.passcode is not None

    def valid(self, session: str | None) -> bool:
        if not self.required:
            return True
        expires = self._sessions.get(session or "")
        return expires is not None and expires > time.time()

    async def login(self, client: str, passcode: str) -> str | None:
        """A new session id, or None after a delay that doubles with each wrong try from this client."""
        assert self.passcode is not None
        if hmac.compare_digest(passcode.encode(), self.passcode.encode()):
            self._failures.pop(client, None)
            session = secrets.token_urlsafe(32)
            self._sessions[session] = time.time() + SESSION_S
            return session
        failures = self._failures.get(client, 0) + 1
        self._failures[client] = failures
        await asyncio.sleep(min(0.5 * 2 ** (failures - 1), 30.0))
        return None

    def logout(self, session: str | None) -> None:
        self._sessions.pop(session or "", None)


def hostname(host_header: str) -> str:
    """`127.0.0.1:8080` -> `127.0.0.1`, `[::1]:8080` -> `::1`."""
    if host_header.startswith("["):
        return host_header[1:].split("]", 1)[0]
    return host_header.rsplit(":", 1)[0]


def _header(scope: Mapping[str, Any], name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return value.decode("latin-1")
    return None


def own_origin(scope: dict[str, Any]) -> str:
    scheme = "https" if scope.get("scheme") in ("https", "wss") else "http"
    return f"{scheme}://{(_header(scope, b'host') or '').lower()}"


def same_origin(scope: dict[str, Any]) -> bool:
    """The request's Origin (or, without one, its Referer's origin) is the page's own."""
    origin = _header(scope, b"origin")
    if origin is None or origin == "null":
        referer = _header(scope, b"referer")
        if not referer:
            return False
        parts = urlsplit(referer)
        origin = f"{parts.scheme}://{parts.netloc}"
    return origin.lower() == own_origin(scope)


def session_of(scope: Mapping[str, Any]) -> str | None:
    raw = _header(scope, b"cookie")
    if not raw:
        return None
    cookie: SimpleCookie = SimpleCookie()
    try:
        cookie.load(raw)
    except Exception:  # a malformed cookie header: no session
        return None
    morsel = cookie.get(COOKIE)
    return morsel.value if morsel is not None else None


class Guard:
    """ASGI middleware: host check, same-origin writes, the session, and the security headers."""

    def __init__(self, app: Any, *, sessions: Sessions, loopback_only: bool) -> None:
        self.app, self.sessions, self.loopback_only = app, sessions, loopback_only

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *HEADERS]
            await send(message)

        path = scope.get("path", "")
        if self.loopback_only and not is_loopback(hostname(_header(scope, b"host") or "")):
            await _answer(send_with_headers, 421, "This page answers only at its loopback address "
                          "(127.0.0.1 or localhost).")
            return
        if scope["method"] in UNSAFE and not same_origin(scope):
            await _answer(send_with_headers, 403, "Refused: this request did not come from the page itself "
                          "(its Origin is not this server's). A script sends the header Origin: "
                          f"{own_origin(scope)}")
            return
        if self.sessions.required and not path.startswith(OPEN_PATHS) and not self.sessions.valid(session_of(scope)):
            if path.startswith("/api/"):
                await _answer(send_with_headers, 401, "Log in first: this page needs its passcode.")
            else:
                await send_with_headers({"type": "http.response.start", "status": 303,
                                         "headers": [(b"location", b"/login"), (b"content-length", b"0")]})
                await send_with_headers({"type": "http.response.body", "body": b""})
            return
        await self.app(scope, receive, send_with_headers)


async def _answer(send: Any, status: int, error: str) -> None:
    body = json.dumps({"error": error}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
