"""Tests of the End Preview Call client: the request it builds, what each answer means, and the aiohttp transport.

Unit tests drive `RyngClient` through `httpx.MockTransport`; the transport tests send over real loopback
sockets to the simulator (and, for one reply the simulator cannot make, to a tiny raw HTTP server).
"""

from __future__ import annotations

import asyncio
import gzip
import json
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from urllib.parse import unquote

import httpx
import pytest
from conftest import TOKEN, free_port

from batch_dispose.client import ROUTE, RyngClient, base_url_for, classify, preview
from batch_dispose.credentials import MASK, Secret
from batch_dispose.errors import UsageError
from batch_dispose.models import CallRequest, Status, Verdict
from batch_dispose.simulator import RunningSimulator
from batch_dispose.transport import AiohttpTransport

BASE = "http://127.0.0.1:9"
API_OK = b'{"error": false, "message": "Call disposed and ended.", "data": {}}'
API_403 = b'{"error": true, "message": "Unauthorized Token"}'
API_500 = b'{"error": true, "message": "Failed to dispose of call."}'
GATEWAY_HTML = (b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
                b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n")
ERROR_HTML = (b"<!DOCTYPE html><html><head><title>Oops</title><style>p { color: red }</style>"
              b"<script>var secret = 1;</script></head><body><p>Internal <b>server</b> error</p></body></html>")
IN_30_S = "<an HTTP date 30 s from now>"  # a header value `answer` fills in when it answers


def call(call_id: str = "C-1001", *, log_id: int = 87278, disposition: str = "Interested",
         notes: str = "asked for a follow-up") -> CallRequest:
    return CallRequest(index=0, row=2, call_id=call_id, log_id=log_id, disposition=disposition, notes=notes)


Handler = Callable[[httpx.Request], httpx.Response]


def send(handler: Handler, request: CallRequest | None = None, *, base_url: str = BASE,
         token: str = TOKEN, timeout: float = 0.5) -> tuple[Verdict, list[httpx.Request]]:
    """One attempt through a MockTransport; the verdict and every request the transport saw."""
    seen: list[httpx.Request] = []

    def recording(req: httpx.Request) -> httpx.Response:
        seen.append(req)
        return handler(req)

    async def main() -> Verdict:
        client = RyngClient(base_url, Secret(token), transport=httpx.MockTransport(recording), timeout=timeout)
        try:
            return await client.attempt(request or call())
        finally:
            await client.aclose()

    return asyncio.run(main()), seen


def answer(status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        in_30_s = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
        filled = {name: in_30_s if value == IN_30_S else value for name, value in (headers or {}).items()}
        return httpx.Response(status, content=body, headers=filled)
    return handler


def fail_with(exc_type: type[httpx.TransportError], text: str = "boom") -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc_type(text, request=request)
    return handler


# --- the request -----------------------------------------------------------------------------


@pytest.mark.parametrize(("base_url", "prefix"), [
    ("http://127.0.0.1:9", ""),
    ("http://127.0.0.1:9/proxy/ryng", "/proxy/ryng"),
    ("http://127.0.0.1:9/proxy/ryng/", "/proxy/ryng"),
    ("https://acme.ryng.in", ""),
])
def test_request_is_one_patch_to_the_end_call_route(base_url: str, prefix: str) -> None:
    """The row becomes exactly one PATCH to <base path>/rest-api/v1/preview/call/<callID>, token in x-access-token."""
    verdict, seen = send(answer(200, API_OK), call("C-1001"), base_url=base_url)
    assert verdict.status is Status.DISPOSED
    assert len(seen) == 1
    request = seen[0]
    assert request.method == "PATCH"
    assert request.url.raw_path == f"{prefix}/rest-api/v1/preview/call/C-1001".encode()
    assert request.url.host == httpx.URL(base_url).host
    assert request.headers["x-access-token"] == TOKEN
    assert request.headers["content-type"] == "application/json"


@pytest.mark.parametrize("notes", [
    "",
    "ग्राहक ने कल फिर से कॉल करने को कहा",
    "happy 😀👍🏽 customer",
    'line one\nline two\r\n\ttabbed "quoted" \\ back\\slash',
    "=cmd|' /C calc'!A0",
    "x" * 32_767,
])
def test_body_has_exactly_the_three_keys_and_notes_round_trip(notes: str) -> None:
    """The JSON body holds logID (an integer), dispositionName and notes, and any notes text decodes back unchanged."""
    _, seen = send(answer(200, API_OK), call(log_id=87278, disposition="Call Back – Hindi", notes=notes))
    body = json.loads(seen[0].content)
    assert body == {"logID": 87278, "dispositionName": "Call Back – Hindi", "notes": notes}
    assert type(body["logID"]) is int
    assert int(seen[0].headers["content-length"]) == len(seen[0].content)


@pytest.mark.parametrize("call_id", ["a/b", "x?y=1", "%2e%2e", "%2F", "a b", "#frag", "a;b", "\\x", "ü", "C&D=1"])
def test_call_id_is_always_one_path_segment(call_id: str) -> None:
    """Whatever a callID holds, the request goes to one percent-encoded segment under the route that decodes back."""
    client = RyngClient("http://127.0.0.1:9/proxy/ryng", Secret(TOKEN), transport=None, timeout=1)
    raw_path = client.request_for(call(call_id)).url.raw_path.decode("ascii")
    prefix = "/proxy/ryng" + ROUTE
    assert raw_path.startswith(prefix)
    segment = raw_path[len(prefix):]
    assert segment and not set(segment) & set("/?#\\ ")
    assert unquote(segment) == call_id


@pytest.mark.parametrize("call_id", ["..", ".", ""])
def test_call_id_that_would_leave_the_route_is_refused(call_id: str) -> None:
    """A callID that would resolve to another path (dot segments, empty) is refused as a bug, never sent."""
    client = RyngClient(BASE, Secret(TOKEN), transport=None, timeout=1)
    with pytest.raises(RuntimeError, match="refusing to send"):
        client.request_for(call(call_id))
    reached: list[object] = []

    def handler(request: httpx.Request) -> httpx.Response:
        reached.append(request)
        return httpx.Response(200, content=API_OK)

    client = RyngClient(BASE, Secret(TOKEN), transport=httpx.MockTransport(handler), timeout=1)
    with pytest.raises(RuntimeError):
        asyncio.run(client.attempt(call(call_id)))
    assert reached == [], "nothing reached the transport"


def test_preview_shows_the_exact_request_with_the_token_masked() -> None:
    """`validate` previews the method, URL, headers and body, with ******** for the token."""
    text = preview("http://127.0.0.1:9/proxy", call("C 1", notes="hi"))
    assert text.splitlines()[0] == "PATCH http://127.0.0.1:9/proxy/rest-api/v1/preview/call/C%201"
    assert f"x-access-token: {MASK}" in text
    assert json.loads(text.split("\n\n", 1)[1]) == {"logID": 87278, "dispositionName": "Interested", "notes": "hi"}
    assert preview(None, call()).startswith("PATCH https://your-subdomain.ryng.in/rest-api/v1/preview/call/C-1001\n")
    accented = preview(None, call(disposition="Intéressé", notes="नमस्ते"))
    assert '"dispositionName": "Int\\u00e9ress\\u00e9"' in accented  # the bytes that are sent, exactly
    assert accented.endswith("Ryng reads them as written: disposition “Intéressé”, notes “नमस्ते”)")


# --- what each answer means ------------------------------------------------------------------


# (status, body, headers) -> (status, retry, fragment of the message, retry_after)
ANSWERS = [
    pytest.param(200, API_OK, {}, Status.DISPOSED, False, "Call disposed and ended.", None, id="200-api"),
    pytest.param(200, b"\xef\xbb\xbf" + API_OK, {}, Status.DISPOSED, False, "Call disposed and ended.", None,
                 id="200-api-after-a-bom"),  # a server that writes its JSON with a UTF-8 BOM
    pytest.param(200, b'{"error": true, "message": "Invalid logID"}', {}, Status.FAILED, False,
                 "reported an error: Invalid logID", None, id="200-error-true"),
    pytest.param(200, b"<html><body><p>Please sign in.</p></body></html>", {}, Status.UNKNOWN, False,
                 "(Please sign in.)", None, id="200-html"),
    pytest.param(200, b"", {}, Status.UNKNOWN, False, "empty body", None, id="200-empty"),
    pytest.param(200, b"OK", {}, Status.UNKNOWN, False, "not with the API's reply (OK)", None, id="200-not-json"),
    pytest.param(200, b"[1, 2]", {}, Status.UNKNOWN, False, "not with the API's reply", None, id="200-json-list"),
    pytest.param(200, b'{"message": "done"}', {}, Status.UNKNOWN, False, "not with the API's reply", None,
                 id="200-no-error-key"),
    pytest.param(200, b'{"error": "false"}', {}, Status.UNKNOWN, False, "not with the API's reply", None,
                 id="200-error-not-bool"),
    pytest.param(201, API_OK, {}, Status.UNKNOWN, False, "201 Created", None, id="201"),
    pytest.param(204, b"", {}, Status.UNKNOWN, False, "204 No Content", None, id="204"),
    pytest.param(403, API_403, {}, Status.UNAUTHORIZED, False, "Unauthorized Token", None, id="403-api"),
    pytest.param(403, b"<h1>Forbidden</h1>", {}, Status.UNAUTHORIZED, False,  # a firewall's page: said so
                 "refused the request (403) with a page that is not Ryng's answer (Forbidden): usually the access "
                 "token, sometimes a firewall", None, id="403-html"),
    pytest.param(500, API_500, {}, Status.FAILED, False, "(500: Failed to dispose of call.)", None, id="500-api"),
    pytest.param(500, ERROR_HTML, {}, Status.UNKNOWN, False,  # a gateway's page: whether Ryng had it is unknown
                 "answered 500 Internal Server Error (Oops Internal server error); its effect is unknown", None,
                 id="500-html"),
    pytest.param(400, b'{"error": true, "message": "logID must be an integer."}', {}, Status.FAILED, False,
                 "400 Bad Request: logID must be an integer.", None, id="400"),
    pytest.param(404, b"Not here", {}, Status.FAILED, False, "404 Not Found: Not here", None, id="404"),
    pytest.param(409, b"", {}, Status.FAILED, False, "409 Conflict: empty body", None, id="409"),
    pytest.param(301, b"", {"location": "https://login.ryng.in/"}, Status.FAILED, False,
                 "to https://login.ryng.in/; check --subdomain", None, id="301"),
    pytest.param(429, b"", {"retry-after": "7"}, Status.FAILED, True, "busy (429 Too Many Requests)", 7.0,
                 id="429-seconds"),
    pytest.param(429, b"", {}, Status.FAILED, True, "safe to re-run", None, id="429-no-header"),
    pytest.param(503, GATEWAY_HTML, {"retry-after": IN_30_S}, Status.FAILED, True,
                 "unavailable (503 Service Unavailable)", pytest.approx(30, abs=2), id="503-http-date"),
    pytest.param(503, b"", {"retry-after": "in a while"}, Status.FAILED, True, "unavailable", None,
                 id="503-malformed"),
    pytest.param(502, GATEWAY_HTML, {}, Status.UNKNOWN, False,
                 "502 Bad Gateway (nginx)", None, id="502-html"),
    pytest.param(504, b"", {}, Status.UNKNOWN, False, "504 Gateway Timeout", None, id="504"),
    pytest.param(520, b"<p>Web server is returning an unknown error</p>", {}, Status.UNKNOWN, False,
                 "unknown error", None, id="520"),
]


@pytest.mark.parametrize(("code", "body", "headers", "status", "retry", "fragment", "retry_after"), ANSWERS)
def test_answer_classification(code: int, body: bytes, headers: dict[str, str], status: Status, retry: bool,
                               fragment: str, retry_after: float | None) -> None:
    """Each kind of answer becomes the row status, retry decision and message the contract promises."""
    verdict, seen = send(answer(code, body, headers))
    assert len(seen) == 1
    assert (verdict.status, verdict.retry, verdict.http_status) == (status, retry, code)
    assert fragment in verdict.message
    assert verdict.retry_after == retry_after
    assert "<" not in verdict.message and "color" not in verdict.message and "secret" not in verdict.message
    if status is Status.UNKNOWN:
        assert "--retry-unknown" in verdict.message


@pytest.mark.parametrize(("exc_type", "status", "retry", "fragment"), [
    (httpx.ConnectError, Status.FAILED, True, "could not connect to the server (boom)"),
    (httpx.ConnectTimeout, Status.FAILED, True, "the call was not sent, so it is safe to re-run"),
    (httpx.PoolTimeout, Status.FAILED, True, "could not connect"),
    (httpx.ReadTimeout, Status.UNKNOWN, False, "sent, but no reply within 0.5 s"),
    (httpx.WriteTimeout, Status.UNKNOWN, False, "sent, but"),
    (httpx.RemoteProtocolError, Status.UNKNOWN, False, "connection broke before a reply (boom)"),
    (httpx.ReadError, Status.UNKNOWN, False, "connection broke"),
    (httpx.WriteError, Status.UNKNOWN, False, "connection broke"),
])
def test_transport_error_classification(exc_type: type[httpx.TransportError], status: Status, retry: bool,
                                        fragment: str) -> None:
    """Failures before sending are retried; failures after sending are unknown (never re-sent automatically)."""
    verdict, _ = send(fail_with(exc_type))
    assert (verdict.status, verdict.retry, verdict.http_status) == (status, retry, None)
    assert fragment in verdict.message
    assert ("--retry-unknown" in verdict.message) is (status is Status.UNKNOWN)


def test_long_server_message_is_cut_to_one_line() -> None:
    """A long multi-line server message or page is kept short and on one line."""
    verdict, _ = send(answer(500, json.dumps({"error": True, "message": "bad\n\n" + "x" * 1000}).encode()))
    assert "\n" not in verdict.message and len(verdict.message) < 400
    verdict, _ = send(answer(502, b"<p>" + b"word " * 1000 + b"</p>"))
    assert "\n" not in verdict.message and len(verdict.message) < 400


def test_classify_works_on_a_bare_response() -> None:
    """`classify` needs only a response: a 200 API reply is disposed with the server's message."""
    verdict = classify(httpx.Response(200, content=b'{"error": false, "message": "Done."}'))
    assert verdict == Verdict(Status.DISPOSED, "Done.", 200)


# --- the token never leaks -------------------------------------------------------------------

ECHOES = [
    pytest.param(answer(403, json.dumps({"error": True, "message": f"Unauthorized Token {TOKEN}"}).encode()),
                 id="403-json"),
    pytest.param(answer(500, f"<p>bad header x-access-token: {TOKEN}</p>".encode()), id="500-html"),
    pytest.param(answer(400, json.dumps({"error": True, "message": f"token={TOKEN} invalid"}).encode()), id="400"),
    pytest.param(answer(200, f"welcome {TOKEN}".encode()), id="200-unknown"),
    pytest.param(answer(200, json.dumps({"error": False, "message": f"ok {TOKEN}"}).encode()), id="200-ok"),
    pytest.param(answer(302, b"", {"location": f"https://login.ryng.in/?t={TOKEN}"}), id="302-location"),
    pytest.param(fail_with(httpx.ConnectError, f"proxy said {TOKEN}"), id="connect-error"),
    pytest.param(fail_with(httpx.ReadError, f"peer sent {TOKEN}"), id="read-error"),
]


@pytest.mark.parametrize("handler", ECHOES)
def test_token_echoed_by_the_server_is_masked(handler: Handler) -> None:
    """A server (or proxy) echoing the token back gets ******** in the row's message, never the token."""
    verdict, _ = send(handler)
    assert TOKEN not in repr(verdict)
    assert MASK in verdict.message


@pytest.mark.parametrize("handler", [
    pytest.param(answer(500, json.dumps({"error": True, "message": "x" * 288 + TOKEN}).encode()), id="api-300"),
    pytest.param(answer(502, ("y" * 147 + TOKEN).encode()), id="excerpt-160"),
    pytest.param(answer(302, b"", {"location": "https://login.ryng.in/?" + "z" * 85 + TOKEN}), id="location-120"),
])
def test_token_cut_by_truncation_does_not_leak(handler: Handler) -> None:
    """A token the server echoes right where the message is cut must not leave most of itself behind."""
    verdict, _ = send(handler)
    assert TOKEN not in verdict.message
    assert TOKEN[:12] not in verdict.message


def test_token_is_never_in_reprs() -> None:
    """repr/str of the Secret and of the client never show the token."""
    secret = Secret(TOKEN)
    client = RyngClient(BASE, secret, transport=httpx.MockTransport(answer(200, API_OK)), timeout=1)
    for text in (repr(secret), str(secret), f"{secret}", repr(client), str(client), repr([secret])):
        assert TOKEN not in text
    assert MASK in repr(secret)
    asyncio.run(client.aclose())


# --- base_url_for ----------------------------------------------------------------------------


@pytest.mark.parametrize(("kwargs", "url"), [
    ({"subdomain": "acme"}, "https://acme.ryng.in"),
    ({"subdomain": "Acme-2"}, "https://acme-2.ryng.in"),
    ({"base_url": "https://ryng.example.com/"}, "https://ryng.example.com"),
    ({"base_url": "http://127.0.0.1:8080"}, "http://127.0.0.1:8080"),
    ({"base_url": "http://localhost:8080/"}, "http://localhost:8080"),
    ({"base_url": "http://[::1]:8080"}, "http://[::1]:8080"),
    ({"base_url": "http://127.0.0.1:9/proxy/ryng/"}, "http://127.0.0.1:9/proxy/ryng"),
    ({"base_url": "https://xn--bcher-kva.example"}, "https://xn--bcher-kva.example"),
    ({"base_url": "https://acme.ryng.in:8443"}, "https://acme.ryng.in:8443"),
])
def test_base_url_for_accepts(kwargs: dict[str, str], url: str) -> None:
    """--subdomain NAME means https://NAME.ryng.in; a --base-url is kept (plain http only on loopback)."""
    assert base_url_for(**kwargs) == url


@pytest.mark.parametrize(("kwargs", "fragment"), [
    ({"subdomain": "acme.ryng.in"}, "not a valid subdomain"),
    ({"subdomain": "-acme"}, "not a valid subdomain"),
    ({"subdomain": "ac_me"}, "not a valid subdomain"),
    ({"subdomain": ""}, "not a valid subdomain"),
    ({"subdomain": "acme/evil"}, "not a valid subdomain"),
    ({"base_url": "http://ryng.example.com"}, "allowed only for a loopback host"),
    ({"base_url": "http://10.0.0.5:8080"}, "allowed only for a loopback host"),
    ({"base_url": "http://127.0.0.1.nip.io"}, "allowed only for a loopback host"),
    ({"base_url": "ftp://127.0.0.1"}, "must start with https://"),
    ({"base_url": "acme.ryng.in"}, "must start with https://"),
    ({"base_url": "https://user:pw@acme.ryng.in"}, "must not hold a user name"),
    ({"base_url": "https://acme.ryng.in/?x=1"}, "must not hold a user name, query"),
    ({"subdomain": "acme", "base_url": "https://acme.ryng.in"}, "not both"),
    ({"base_url": "https://xn--zz.example"}, "is not a URL"),
    ({"base_url": "https://xn--a.ryng.in"}, "is not a URL"),
    ({"base_url": "https://acme.ryng.in:99999"}, "is not a port"),
    ({"base_url": "https://acme.ryng.in:0"}, "is not a port"),
    ({"base_url": "https://exa mple.com"}, "not a valid host name"),
    ({"base_url": "https://-acme.ryng.in"}, "not a valid host name"),
    ({"base_url": "https://acme..ryng.in"}, "not a valid host name"),
    ({}, "Say which Ryng account"),
])
def test_base_url_for_refuses(kwargs: dict[str, str], fragment: str) -> None:
    """Bad subdomains, plain http to a non-loopback host, both options or neither: a usage error saying what to do."""
    with pytest.raises(UsageError, match=fragment.replace("?", r"\?")):
        base_url_for(**kwargs)


# --- the aiohttp transport over real loopback sockets ----------------------------------------


def attempt_real(base_url: str, calls: list[CallRequest], *, timeout: float = 0.5) -> list[Verdict]:
    """Send each call once, in turn, through the production transport; close it afterwards."""
    async def main() -> list[Verdict]:
        client = RyngClient(base_url, Secret(TOKEN), transport=AiohttpTransport(connections=4), timeout=timeout)
        try:
            return [await client.attempt(c) for c in calls]
        finally:
            await client.aclose()

    return asyncio.run(main())


REAL_FAULTS = [
    pytest.param(200, Status.DISPOSED, False, "Call disposed and ended.", id="200"),
    pytest.param(500, Status.FAILED, False, "(500: Failed to dispose of call.)", id="500"),
    pytest.param(403, Status.UNAUTHORIZED, False, "Unauthorized Token", id="403"),
    pytest.param(429, Status.FAILED, True, "busy", id="429"),
    pytest.param(503, Status.FAILED, True, "unavailable", id="503"),
    pytest.param(502, Status.UNKNOWN, False, "502 Bad Gateway", id="502"),
    pytest.param("html", Status.UNKNOWN, False, "502 Bad Gateway (nginx)", id="html"),
    pytest.param("empty200", Status.UNKNOWN, False, "empty body", id="empty200"),
    pytest.param("html200", Status.UNKNOWN, False, "Please sign in.", id="html200"),
    pytest.param("reset", Status.UNKNOWN, False, "connection broke before a reply", id="reset"),
    pytest.param("close", Status.UNKNOWN, False, "connection broke before a reply", id="close"),
]


@pytest.mark.parametrize(("action", "status", "retry", "fragment"), REAL_FAULTS)
def test_real_socket_fault_gives_the_right_verdict(simulator: Callable[..., RunningSimulator], action: int | str,
                                                   status: Status, retry: bool, fragment: str) -> None:
    """Over a real socket each server behaviour becomes the right verdict, with exactly one request per attempt."""
    sim = simulator(scripts={"C1": [action]})
    verdict, after = attempt_real(sim.base_url, [call("C1"), call("C2")])
    assert (verdict.status, verdict.retry) == (status, retry)
    assert fragment in verdict.message
    if action in (429, 503):
        assert verdict.retry_after == 1.0  # the simulator's Retry-After: 1
    assert after.status is Status.DISPOSED, "the pool recovers for the next request"
    assert sim.stats.received == {"C1": 1, "C2": 1}
    assert TOKEN not in verdict.message


def test_real_socket_request_carries_token_body_and_one_segment(simulator: Callable[..., RunningSimulator]) -> None:
    """What arrives at the server is the PATCH, the token header and the exact JSON body, the callID one segment."""
    sim = simulator()
    odd = "a/b?c=1#d ü;e"
    notes = 'नमस्ते 😀\n"quoted"'
    verdicts = attempt_real(sim.base_url + "/", [call("C-1", notes=notes), call(odd)])
    assert [v.status for v in verdicts] == [Status.DISPOSED, Status.DISPOSED]
    first, second = sim.stats.recorded
    assert (first.method, first.raw_path) == ("PATCH", "/rest-api/v1/preview/call/C-1")
    assert first.headers["x-access-token"] == TOKEN
    assert json.loads(first.body) == {"logID": 87278, "dispositionName": "Interested", "notes": notes}
    assert second.raw_path.count("/") == ROUTE.count("/") and second.call_id == odd
    assert sim.stats.received == {"C-1": 1, odd: 1} and sim.stats.off_route == 0


def test_real_socket_retry_statuses_count_one_request_each(simulator: Callable[..., RunningSimulator]) -> None:
    """Three attempts at a callID scripted 503, 429, 200 reach the server exactly three times."""
    sim = simulator(scripts={"C1": [503, 429, 200]})
    verdicts = attempt_real(sim.base_url, [call("C1")] * 3)
    assert [(v.http_status, v.retry) for v in verdicts] == [(503, True), (429, True), (200, False)]
    assert sim.stats.received["C1"] == 3
    assert sim.stats.disposed["C1"] == 1


def test_connection_refused_is_retried_and_nothing_is_sent(sim: RunningSimulator) -> None:
    """Nothing listening on the port: the verdict is 'could not connect', safe to retry, and no request went out."""
    (verdict,) = attempt_real(f"http://127.0.0.1:{free_port()}", [call("C1")])
    assert (verdict.status, verdict.retry, verdict.http_status) == (Status.FAILED, True, None)
    assert "could not connect" in verdict.message
    assert sim.stats.requests == 0


def test_hung_server_is_unknown_within_the_read_timeout(simulator: Callable[..., RunningSimulator]) -> None:
    """A server that reads the request and never answers gives 'unknown' after about the read timeout."""
    sim = simulator(scripts={"C1": ["hang"]})
    began = time.monotonic()
    (verdict,) = attempt_real(sim.base_url, [call("C1")], timeout=0.3)
    elapsed = time.monotonic() - began
    assert (verdict.status, verdict.retry) == (Status.UNKNOWN, False)
    assert "no reply within 0.3 s" in verdict.message
    assert 0.25 < elapsed < 1.5
    assert sim.stats.received["C1"] == 1


def _loopback_listener() -> socket.socket:
    """A listening socket on a free loopback port, for a raw HTTP server in a thread (accept waits 5 s at most)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.settimeout(5)
    return listener


@contextmanager
def answering_once(reply: bytes) -> Iterator[str]:
    """A raw HTTP server on loopback for one connection: it reads the request's head, sends `reply` as it is
    (whatever it holds), and closes."""
    listener = _loopback_listener()

    def serve() -> None:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                data += chunk
            conn.sendall(reply)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        listener.close()
        thread.join(timeout=5)


@pytest.fixture
def gzip_server() -> Iterator[str]:
    """A raw HTTP server on loopback answering every request with the API's 200 JSON, gzip-compressed."""
    body = gzip.compress(API_OK)
    with answering_once(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\n"
                        b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(body) + body) as url:
        yield url


def test_a_request_on_a_connection_the_server_had_closed_is_known_never_sent() -> None:
    """A server that answers, then closes the kept-alive connection without `Connection: close`: a request
    refused on that connection before a byte went out is "not sent, safe to re-run" (sent again at once), never
    "sent, effect unknown", which would hold the call back until a person checks it in Ryng."""
    reply = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(API_OK)
    listener = _loopback_listener()
    listener.settimeout(0.1)
    received: list[str] = []
    done = threading.Event()

    def serve() -> None:
        while not done.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(5)
                data = b""
                while b"\r\n\r\n" not in data or len(data.partition(b"\r\n\r\n")[2]) < 40:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                if data:
                    received.append(data.split(b" ", 2)[1].rsplit(b"/", 1)[1].decode())
                    conn.sendall(reply + API_OK)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        verdicts = attempt_real(f"http://127.0.0.1:{listener.getsockname()[1]}", [call(f"C{n}") for n in range(8)],
                                timeout=2)
    finally:
        done.set()
        thread.join(timeout=5)
        listener.close()
    assert not [v.message for v in verdicts if "Can not write request body" in v.message]
    for n, verdict in enumerate(verdicts):
        if verdict.stale:  # refused before a byte went out: the server never had it
            assert (verdict.status, verdict.retry) == (Status.FAILED, True) and f"C{n}" not in received
            assert verdict.message == ("the server had closed the connection before the request was written; the "
                                       "call was not sent, so it is safe to re-run")
        elif verdict.status is Status.DISPOSED:
            assert f"C{n}" in received


@pytest.mark.parametrize(("answer", "said"), [
    (b"SSH-2.0-OpenSSH_9.6\r\n", "the reply was not HTTP (another kind of server listens at that address)"),
    (b"\x15\x03\x01\x00\x02\x02\x46", "the server answered in TLS, not plain HTTP: its address should start with "
                                      "https://"),
    (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 60\r\n\r\n{\"error\": false",
     "the reply was cut off after 15 of its 60 bytes"),
    (b"", "the server closed the connection without a reply"),
], ids=["ssh", "tls", "cut", "closed"])
def test_a_broken_reply_is_said_in_plain_words(answer: bytes, said: str) -> None:
    """A reply that is not HTTP, or breaks off: unknown, and the message says what happened in words, not the
    HTTP library's class names and a status 400 the server never sent."""
    with answering_once(answer) as url:
        (verdict,) = attempt_real(url, [call("C1")], timeout=2)
    assert verdict.status is Status.UNKNOWN
    assert verdict.message.startswith(f"sent, but the connection broke before a reply ({said}); ")
    assert "Error" not in verdict.message and "400" not in verdict.message


def test_gzip_compressed_reply_is_understood(gzip_server: str) -> None:
    """A server that gzips its 200 JSON (as gateways do when asked) still disposes the row."""
    (verdict,) = attempt_real(gzip_server, [call("C1")])
    assert verdict.status is Status.DISPOSED


def test_a_cookie_set_by_the_server_is_never_sent_back() -> None:
    """A gateway that sets a cookie gets no Cookie header on later requests: each request stays exactly what
    `validate` previews, and nothing a server says rides along with the token to the next call."""
    reply = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nSet-Cookie: gw=sticky-1; Path=/\r\n"
             b"Content-Length: %d\r\n\r\n" % len(API_OK)) + API_OK
    listener = _loopback_listener()
    heads: list[bytes] = []

    def serve() -> None:
        pending = b""
        while len(heads) < 2:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                while len(heads) < 2:
                    while b"\r\n\r\n" not in pending:
                        chunk = conn.recv(65536)
                        if not chunk:
                            break
                        pending += chunk
                    if b"\r\n\r\n" not in pending:
                        pending = b""
                        break  # the client closed this connection; take the next one
                    head, pending = pending.split(b"\r\n\r\n", 1)
                    length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))  # type: ignore[union-attr]
                    while len(pending) < length:
                        pending += conn.recv(65536)
                    pending = pending[length:]
                    heads.append(head.lower())
                    conn.sendall(reply)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        # a host name, not an address: aiohttp's default jar keeps no cookie from a bare IP
        verdicts = attempt_real(f"http://localhost:{listener.getsockname()[1]}", [call("C1"), call("C2")])
    finally:
        listener.close()
        thread.join(timeout=5)
    assert [v.status for v in verdicts] == [Status.DISPOSED, Status.DISPOSED]
    assert len(heads) == 2
    assert not any(b"\r\ncookie:" in head for head in heads), heads[1]
