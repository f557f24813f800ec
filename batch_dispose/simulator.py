"""A fake Ryng "End Preview Call" server on loopback, for end-to-end tests, `demo` and benchmarks.

It answers ``PATCH /rest-api/v1/preview/call/{callID}`` like the vendor's API, can misbehave on
purpose (latency, 5xx/429 mixes, rate limiting, hangs, TCP resets, HTML pages, per-callID scripts),
repeatably when seeded, and counts what it received in :class:`SimStats` so tests can assert on the
server side. ``GET /_simulator/stats`` and ``POST /_simulator/reset`` are its control API.
Run it with :func:`start_in_thread` (tests) or :func:`serve` (the CLI's ``simulate``).

Choices worth knowing: only a JSON 200 disposes a call ("html200", "empty200", "hang", "reset" and
"close" do not); a "slow:S" call whose client gave up is still disposed; params come from the JSON
body when there is one, else from the query string; resetting the stats leaves server state alone
(script positions, the rate-limit window, the calls already ended for ``repeat_fails``).
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import socket
import struct
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from contextlib import suppress
from dataclasses import dataclass, field, fields
from http import HTTPStatus
from types import TracebackType
from urllib.parse import parse_qsl, quote, unquote

from aiohttp import web

ROUTE_PREFIX = "/rest-api/v1/preview/call/"
CONTROL_PREFIX = "/_simulator/"
_WINDOW_S = 1.0  # the sliding window of rate_limit and max_per_second
_SHUTDOWN_GRACE_S = 0.25  # how long stopping lets sleeping handlers finish before cancelling them
_HANG_POLL_S = 0.25  # how often a hung request checks whether its client went away
_PARAMS = ("logID", "dispositionName", "notes")
_SIMPLE_ACTIONS = frozenset({"hang", "reset", "close", "html", "html200", "empty200"})
_JSON = {"Content-Type": "application/json; charset=utf-8"}
_HTML = {"Content-Type": "text/html; charset=utf-8"}
_GATEWAY_PAGE = (  # what nginx sends when the upstream fails
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)
_LOGIN_PAGE = b"<!DOCTYPE html>\n<html><head><title>Ryng</title></head><body><p>Please sign in.</p></body></html>\n"
_OK_BODY = b'{"error": false, "message": "Call disposed and ended.", "data": {}}'
_API_BODIES = {
    403: b'{"error": true, "message": "Unauthorized Token"}',
    500: b'{"error": true, "message": "Failed to dispose of call."}',
}
_ALREADY_ENDED_BODY = b'{"error": true, "message": "Call already ended."}'
_NOT_FOUND_BODY = b'{"error": true, "message": "Not found"}'

Action = int | str  # an HTTP status, one of _SIMPLE_ACTIONS, "slow:SECONDS" or "echo:STATUS"


def _check_fraction(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:  # also rejects NaN
        raise ValueError(f"{name} must be a fraction between 0 and 1, got {value!r}")


def _check_status(code: object, where: str) -> None:
    if isinstance(code, bool) or not isinstance(code, int) or not 100 <= code <= 599:
        raise ValueError(f"{where}: an HTTP status must be an integer from 100 to 599, got {code!r}")


def _check_action(action: object, where: str) -> None:
    if not isinstance(action, str):
        return _check_status(action, where)
    if action.startswith("slow:"):
        with suppress(ValueError):
            if 0 <= float(action[5:]) < math.inf:
                return None
    elif action.startswith("echo:") and action[5:].isdigit() and action[5:].isascii():
        return _check_status(int(action[5:]), where)
    elif action in _SIMPLE_ACTIONS:
        return None
    raise ValueError(f"{where}: unknown action {action!r} (a status, {', '.join(sorted(_SIMPLE_ACTIONS))}, "
                     f"slow:S or echo:STATUS)")


def _check_mix(mix: Mapping[int, float]) -> None:
    for code, fraction in mix.items():
        _check_status(code, "status mix")
        _check_fraction(f"status mix fraction for {code}", fraction)
    if sum(mix.values()) > 1.0 + 1e-9:
        raise ValueError(f"status mix fractions add up to {sum(mix.values()):g}, more than 1")


@dataclass(frozen=True)
class SimConfig:
    """How the simulator behaves; every fault is off by default. Invalid settings raise ValueError."""

    token: str = "simulator-token"
    latency_ms: float = 0.0  # added before answering each route request
    jitter_ms: float = 0.0  # latency varies uniformly by +/- this (never below 0)
    fail_rate: float = 0.0  # fraction of route requests answered 500 (the API's failure body)
    fail_ids: frozenset[str] = frozenset()  # these callIDs always get 500
    status_mix: Mapping[int, float] = field(default_factory=dict)  # e.g. {429: .05, 503: .02}
    retry_after: str | None = "1"  # Retry-After sent with every 429 and 503 (None: no header)
    rate_limit: int | None = None  # 429 once this many requests were accepted within the last 1.0 s
    rate_limit_counts_rejected: bool = False  # the 429s count too (as many gateways do): every excess costs
    hang_rate: float = 0.0  # fraction read and never answered (until the server stops)
    reset_rate: float = 0.0  # fraction whose connection is reset (TCP RST) once read, no response
    html_rate: float = 0.0  # fraction answered 502 with an HTML page, like a gateway
    repeat_fails: bool = False  # ending an already-disposed callID again answers 500 "Call already ended."
    scripts: Mapping[str, Sequence[Action]] = field(default_factory=dict)  # callID -> its answers in turn
    seed: int | None = None  # seeds the random faults so runs repeat

    def __post_init__(self) -> None:
        object.__setattr__(self, "fail_ids", frozenset(self.fail_ids))
        if not (self.latency_ms >= 0 and self.jitter_ms >= 0):
            raise ValueError("latency_ms and jitter_ms must be 0 or more")
        for name in ("fail_rate", "hang_rate", "reset_rate", "html_rate"):
            _check_fraction(name, getattr(self, name))
        _check_mix(self.status_mix)
        faults = self.hang_rate + self.reset_rate + self.html_rate + sum(self.status_mix.values())
        if faults > 1.0 + 1e-9:
            raise ValueError(f"hang, reset and html rates plus the status mix add up to {faults:g}, more than 1")
        if self.rate_limit is not None and self.rate_limit < 1:
            raise ValueError(f"rate_limit must be at least 1, got {self.rate_limit}")
        for call_id, script in self.scripts.items():
            for action in script:
                _check_action(action, f"script for {call_id!r}")


def parse_status_mix(text: str) -> dict[int, float]:
    """Parse ``"429:0.05,503:0.02"`` into ``{429: 0.05, 503: 0.02}``; ValueError on bad input."""
    mix: dict[int, float] = {}
    for entry in filter(None, (part.strip() for part in text.split(","))):
        code_text, _, fraction_text = entry.partition(":")
        try:
            code, fraction = int(code_text), float(fraction_text)
        except ValueError:
            raise ValueError(f"bad status mix entry {entry!r}: expected CODE:FRACTION, like 429:0.05") from None
        if code in mix:
            raise ValueError(f"status mix names {code} twice")
        mix[code] = fraction
    _check_mix(mix)
    return mix


@dataclass(slots=True)
class RecordedRequest:
    """One route request as received; ``answer`` is filled in once the simulator decides."""

    method: str
    raw_path: str  # the raw path, without the query
    query: str  # the raw query string, without "?"
    headers: dict[str, str]  # lower-case names
    body: bytes
    call_id: str
    answer: str = "pending"  # a key of SimStats.answers once decided


@dataclass
class SimStats:
    """Live counters; updated only on the server's loop thread (read them from anywhere)."""

    requests: int = 0  # every HTTP request, control API excluded
    route_requests: int = 0  # PATCH on the route, whatever the answer
    off_route: int = 0  # answered 404
    answers: Counter[str] = field(default_factory=Counter)  # "200", "429", "hang", ... per route answer given
    received: Counter[str] = field(default_factory=Counter)  # callID -> route requests
    disposed: Counter[str] = field(default_factory=Counter)  # callID -> successful end-calls
    max_in_flight: int = 0  # most route requests being handled at the same moment
    max_per_second: int = 0  # most route requests arrived within any 1.0 s window
    arrivals: list[float] = field(default_factory=list)  # time.monotonic() of each route request
    recorded: list[RecordedRequest] = field(default_factory=list)  # in order of arrival

    def snapshot(self) -> dict[str, object]:
        """A JSON-able copy; ``arrivals`` and ``recorded`` become ``arrival_count`` and ``recorded_count``."""
        copy = {k: dict(v) if isinstance(v, Counter) else v for k, v in vars(self).items() if not isinstance(v, list)}
        return copy | {"arrival_count": len(self.arrivals), "recorded_count": len(self.recorded)}


def _error_body(message: str) -> bytes:
    return json.dumps({"error": True, "message": message}).encode()


def _json_response(status: int, body: bytes, retry_after: str | None = None) -> web.Response:
    headers = _JSON if retry_after is None or status not in (429, 503) else {**_JSON, "Retry-After": retry_after}
    return web.Response(status=status, body=body, headers=headers)


def _status_response(code: int, retry_after: str | None) -> web.Response:
    """A non-200 answer: the API's bodies for 403 and 500, the reason phrase for any other status."""
    body = _API_BODIES.get(code)
    if body is None:
        body = _error_body(next((s.phrase for s in HTTPStatus if s.value == code), "Error"))
    return _json_response(code, body, retry_after)


def _echo_response(code: int, token: str) -> web.Response:
    """A hostile answer echoing the token it was sent, in every encoding servers use, with terminal escapes:
    in the reason phrase, in a PHP-style JSON message (`\\/` and `\\u` escapes), percent-encoded in a URL
    (also the Location header) and HTML-escaped."""
    php = token.replace("/", "\\/")
    escaped = "".join(f"\\u{ord(ch):04x}" for ch in token)
    url = "https://login.example/?t=" + quote(token, safe="")
    entities = "".join(f"&#{ord(ch)};" for ch in token)
    message = (f"token {php} or {escaped} at {url} ({entities}) "
               f"\\u001b[31mred\\u001b[0m \\u001b]0;pwned\\u0007 \\u001b[2J\\r")
    body = ('{"error": ' + ("false" if code == 200 else "true") + ', "message": "' + message + '"}').encode()
    headers = {**_JSON, "Location": url} if 300 <= code < 400 else _JSON
    return web.Response(status=code, reason=f"Echo {token}", body=body, headers=headers)


def _route_call_id(method: str, path: str) -> str | None:
    """The percent-decoded callID when this is an End Preview Call request, else None."""
    segment = path[len(ROUTE_PREFIX) :]
    if method != "PATCH" or not path.startswith(ROUTE_PREFIX) or not segment or "/" in segment:
        return None
    return unquote(segment)


def _param_error(body: bytes, query: str) -> str | None:
    """Why the params (the JSON body if there is one, else the query string) are unusable, or None."""
    params: dict[str, object] = {}
    if body.strip():
        try:
            params = json.loads(body)
        except (ValueError, RecursionError):
            return "Request body is not valid JSON."
        if not isinstance(params, dict):
            return "Request body must be a JSON object."
        log_id_ok = type(params.get("logID")) is int
    else:
        for key, value in parse_qsl(query, keep_blank_values=True):
            if key in params and key in _PARAMS:
                return f"Parameter {key} is given more than once."
            params[key] = value
        log_id = params.get("logID")
        log_id_ok = isinstance(log_id, str) and log_id.isascii() and log_id.isdigit()
    missing = [name for name in _PARAMS if name not in params]
    if missing:
        return f"Missing required parameter{'s' if len(missing) > 1 else ''}: {', '.join(missing)}."
    if not log_id_ok:
        return "logID must be an integer."
    if not isinstance(params["dispositionName"], str) or not params["dispositionName"]:
        return "dispositionName must be a non-empty string."
    return None if isinstance(params["notes"], str) else "notes must be a string."


def _drop_connection(request: web.BaseRequest, *, rst: bool) -> web.Response:
    """Close the connection unanswered (RST via SO_LINGER 0, or a FIN); aiohttp then quietly fails to write."""
    transport = request.transport
    if transport is not None and rst:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
    elif transport is not None:
        transport.close()
    return web.Response(status=204)


class _Simulator:
    """The server's state and request handling; lives on one event loop."""

    def __init__(self, config: SimConfig) -> None:
        self.config, self.stats, self.base_url = config, SimStats(), ""
        self._rng = random.Random(config.seed)  # every random fault is drawn from this one
        self._jitter_rng = random.Random(None if config.seed is None else f"jitter:{config.seed}")
        self._faults: list[tuple[float, Action]] = []  # (cumulative fraction, action)
        rates: list[tuple[Action, float]] = [("hang", config.hang_rate), ("reset", config.reset_rate)]
        for action, rate in [*rates, ("html", config.html_rate), *config.status_mix.items()]:
            if rate > 0:
                self._faults.append(((self._faults[-1][0] if self._faults else 0.0) + rate, action))
        self._script_pos: dict[str, int] = {}
        self._ended: set[str] = set()  # callIDs disposed so far, for repeat_fails
        self._accepted: deque[float] = deque()  # arrivals that passed the rate limit within the window
        self._window: deque[float] = deque()  # arrivals within the window, for max_per_second
        self._in_flight = 0
        self._release: asyncio.Future[None] | None = None  # done when the server stops
        self._runner: web.AppRunner | None = None

    async def start(self, host: str, port: int) -> None:
        self._release = asyncio.get_running_loop().create_future()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=_SHUTDOWN_GRACE_S)
        await self._runner.setup()
        try:
            await web.TCPSite(self._runner, host, port).start()
        except BaseException:
            await self.close()
            raise
        bound_host, bound_port = self._runner.addresses[0][:2]
        self.base_url = f"http://{f'[{bound_host}]' if ':' in bound_host else bound_host}:{bound_port}"

    async def close(self) -> None:
        """Release hung requests, then stop listening and close every connection."""
        if self._release is not None and not self._release.done():
            self._release.set_result(None)
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    def reset_stats(self) -> None:
        """Zero the counters in place (server state such as script positions goes on)."""
        fresh = SimStats()
        for f in fields(SimStats):
            setattr(self.stats, f.name, getattr(fresh, f.name))
        self._window.clear()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path, _, query = request.raw_path.partition("?")
        if path.startswith(CONTROL_PREFIX):
            return self._control(request.method, path)
        self.stats.requests += 1
        call_id = _route_call_id(request.method, path)
        if call_id is None:
            self.stats.off_route += 1
            return _json_response(404, _NOT_FOUND_BODY)
        headers = {k.lower(): v for k, v in request.headers.items()}
        record = RecordedRequest(request.method, path, query, headers, b"", call_id)
        self._arrive(record)
        try:
            record.body = await request.read()
            return await self._decide(request, record)
        finally:
            self._in_flight -= 1

    def _control(self, method: str, path: str) -> web.Response:
        if method == "GET" and path == CONTROL_PREFIX + "stats":
            return _json_response(200, json.dumps(self.stats.snapshot()).encode())
        if method == "POST" and path == CONTROL_PREFIX + "reset":
            self.reset_stats()
            return _json_response(200, json.dumps({"error": False, "message": "Stats reset."}).encode())
        return _json_response(404, _NOT_FOUND_BODY)

    def _arrive(self, record: RecordedRequest) -> None:
        stats, now, window = self.stats, time.monotonic(), self._window
        stats.route_requests += 1
        stats.received[record.call_id] += 1
        stats.arrivals.append(now)
        stats.recorded.append(record)
        window.append(now)
        while window[0] <= now - _WINDOW_S:
            window.popleft()
        stats.max_per_second = max(stats.max_per_second, len(window))
        self._in_flight += 1
        stats.max_in_flight = max(stats.max_in_flight, self._in_flight)

    async def _decide(self, request: web.Request, record: RecordedRequest) -> web.StreamResponse:
        config = self.config
        delay_ms = config.latency_ms
        if config.jitter_ms:
            delay_ms = max(0.0, delay_ms + self._jitter_rng.uniform(-config.jitter_ms, config.jitter_ms))
        if delay_ms > 0:
            await asyncio.sleep(delay_ms / 1000)
        if record.headers.get("x-access-token") != config.token:
            return self._finish(record, "403", _status_response(403, None))
        error = _param_error(record.body, record.query)
        if error is not None:
            return self._finish(record, "400", _json_response(400, _error_body(error)))
        action = self._scripted(record.call_id)
        if action is None and self._faults:
            draw = self._rng.random()
            action = next((act for bound, act in self._faults if draw < bound), None)
        if action is not None:
            return await self._perform(request, record, action)
        if config.rate_limit is not None and self._rate_limited(config.rate_limit):
            return await self._perform(request, record, 429)
        if config.repeat_fails and record.call_id in self._ended:
            return self._finish(record, "500", _json_response(500, _ALREADY_ENDED_BODY))
        if record.call_id in config.fail_ids or (config.fail_rate and self._rng.random() < config.fail_rate):
            return await self._perform(request, record, 500)
        return self._dispose(record)

    def _scripted(self, call_id: str) -> Action | None:
        script = self.config.scripts.get(call_id, ())
        position = self._script_pos.get(call_id, 0)
        if position >= len(script):
            return None
        self._script_pos[call_id] = position + 1
        return script[position]

    def _rate_limited(self, limit: int) -> bool:
        accepted, now = self._accepted, time.monotonic()
        while accepted and accepted[0] <= now - _WINDOW_S:
            accepted.popleft()
        if len(accepted) >= limit:
            if self.config.rate_limit_counts_rejected:
                accepted.append(now)
            return True
        accepted.append(now)
        return False

    async def _perform(self, request: web.Request, record: RecordedRequest, action: Action) -> web.StreamResponse:
        if action == 200:
            return self._dispose(record)
        if isinstance(action, int):
            return self._finish(record, str(action), _status_response(action, self.config.retry_after))
        if action.startswith("slow:"):
            await asyncio.sleep(float(action[5:]))
            return self._dispose(record)
        if action.startswith("echo:"):
            code = int(action[5:])
            if code == 200:
                self.stats.disposed[record.call_id] += 1
            return self._finish(record, action, _echo_response(code, record.headers.get("x-access-token", "")))
        if action == "html":
            return self._finish(record, action, web.Response(status=502, body=_GATEWAY_PAGE, headers=_HTML))
        if action == "html200":
            return self._finish(record, action, web.Response(status=200, body=_LOGIN_PAGE, headers=_HTML))
        if action == "empty200":
            return self._finish(record, action, web.Response(status=200, body=b"", headers=_JSON))
        record.answer = action  # hang, reset or close: counted now, never answered
        self.stats.answers[action] += 1
        if action == "hang":
            assert self._release is not None
            while not self._release.done() and request.transport is not None:  # until stop or the client leaves
                await asyncio.wait((self._release,), timeout=_HANG_POLL_S)
        return _drop_connection(request, rst=action == "reset")

    def _finish(self, record: RecordedRequest, answer: str, response: web.Response) -> web.Response:
        record.answer = answer
        self.stats.answers[answer] += 1
        return response

    def _dispose(self, record: RecordedRequest) -> web.Response:
        self.stats.disposed[record.call_id] += 1
        self._ended.add(record.call_id)
        return self._finish(record, "200", _json_response(200, _OK_BODY))


async def _run(
    sim: _Simulator, host: str, port: int, on_ready: Callable[[str], None] | None, stop: asyncio.Event
) -> None:
    await sim.start(host, port)
    try:
        if on_ready is not None:
            on_ready(sim.base_url)
        await stop.wait()
    finally:
        await sim.close()


async def serve(
    config: SimConfig, *, host: str = "127.0.0.1", port: int = 0, on_ready: Callable[[str], None] | None = None
) -> None:
    """Run the simulator until cancelled; ``on_ready(base_url)`` is called once it is listening."""
    await _run(_Simulator(config), host, port, on_ready, asyncio.Event())


class RunningSimulator:
    """A simulator serving from a daemon thread; stop() it, or use it as a context manager."""

    def __init__(self, sim: _Simulator, loop: asyncio.AbstractEventLoop, stop: asyncio.Event, thread: threading.Thread):
        self._sim, self._loop, self._stop, self._thread = sim, loop, stop, thread
        self._stopped = False
        self.base_url: str = sim.base_url
        self.stats: SimStats = sim.stats
        self.config: SimConfig = sim.config

    def reset_stats(self) -> None:
        """Zero ``stats`` in place, on the server's loop so it never races a request being counted."""
        done = threading.Event()

        def reset() -> None:
            self._sim.reset_stats()
            done.set()

        try:
            self._loop.call_soon_threadsafe(reset)
        except RuntimeError:  # the loop is closed: nothing else touches the stats any more
            self._sim.reset_stats()
            return
        done.wait(timeout=5)

    def stop(self) -> None:
        """Stop serving and close every connection, hung ones included; prompt and idempotent."""
        if self._stopped:
            return
        self._stopped = True
        with suppress(RuntimeError):  # the loop is already closed
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=5)

    def __enter__(self) -> RunningSimulator:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


def start_in_thread(config: SimConfig | None = None, *, host: str = "127.0.0.1", port: int = 0) -> RunningSimulator:
    """Start a simulator on its own event loop in a daemon thread; returns once it is listening."""
    sim = _Simulator(config if config is not None else SimConfig())
    ready: Future[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = Future()

    async def main() -> None:
        stop = asyncio.Event()
        await _run(sim, host, port, lambda _url: ready.set_result((asyncio.get_running_loop(), stop)), stop)

    def thread_main() -> None:
        try:
            asyncio.run(main())
        except BaseException as exc:  # handed to the caller when it happens at start-up
            if not ready.done():
                ready.set_exception(exc)

    thread = threading.Thread(target=thread_main, name="ryng-simulator", daemon=True)
    thread.start()
    loop, stop = ready.result()
    return RunningSimulator(sim, loop, stop, thread)
