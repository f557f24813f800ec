"""The End Preview Call request: building it safely, sending it once, and classifying the reply.

`classify` / `classify_error` are the one place that decides what an answer means:

================================================  ============  =====================================
answer                                            status        next
================================================  ============  =====================================
connect refused/failed, DNS, TLS, connect or      failed        retried: the request never arrived
pool timeout, 429, 503
200 with the API's JSON                           disposed
403                                               unauthorized  3 in a row stop the run
500 or 200 with the API's `"error": true`         failed        the server's message is kept
other 4xx, 3xx                                    failed        status and an excerpt of the body
read timeout, reset or protocol error after       unknown       never re-sent automatically;
sending, 502, 504, other 5xx (a 500 too, when                   `--retry-unknown` re-sends
its body is not the API's JSON: a gateway's
page), a 2xx that is not the API's JSON
================================================  ============  =====================================
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import re
from urllib.parse import quote

import httpx

from . import __version__
from .credentials import MASK, Secret
from .errors import UsageError
from .models import CallRequest, Status, Verdict
from .pacing import parse_retry_after
from .servertext import server_text
from .transport import AiohttpTransport, Reply, StaleConnection, UntrustedCertificate, is_loopback

ROUTE = "/rest-api/v1/preview/call/"
CONNECT_TIMEOUT_S = 5.0
SUBDOMAIN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
RETRY_STATUSES = {429: "busy", 503: "unavailable"}
_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")  # one DNS label (IDNA as xn--)
_SEGMENT = re.compile(r"[A-Za-z0-9_.~%-]+")  # what quote(safe="") can produce: never / ? # or a backslash
UNKNOWN_HINT = ("its effect is unknown, so it is not re-sent automatically: check the call in Ryng, "
                "or re-run with --retry-unknown")


def base_url_for(*, subdomain: str | None = None, base_url: str | None = None) -> str:
    """`https://acme.ryng.in` for --subdomain acme; --base-url checked (http only on loopback)."""
    if subdomain is not None and base_url is not None:
        raise UsageError("Give either --subdomain or --base-url, not both.")
    if subdomain is not None:
        if not SUBDOMAIN.fullmatch(subdomain):
            raise UsageError(f"--subdomain {subdomain!r} is not a valid subdomain (letters, digits and -; "
                             f"for https://acme.ryng.in give acme).")
        return f"https://{subdomain.lower()}.ryng.in"
    if base_url is None:
        raise UsageError("Say which Ryng account to use: --subdomain NAME (or --base-url URL).")
    try:
        url = httpx.URL(base_url)
        url.host  # noqa: B018 (decoding the host is what checks an xn-- label)
    except (httpx.InvalidURL, ValueError):  # ValueError: idna's errors, e.g. an xn-- label that is not IDNA
        raise UsageError(f"--base-url {base_url!r} is not a URL (check the host name).") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise UsageError(f"--base-url {base_url!r} must start with https:// and name a host.")
    if url.port is not None and not 0 < url.port < 65536:
        raise UsageError(f"--base-url {base_url!r}: port {url.port} is not a port (1 to 65535).")
    host = url.raw_host.decode("ascii", errors="replace")
    if not _is_ip(host) and not all(_LABEL.fullmatch(label) for label in host.removesuffix(".").split(".")):
        raise UsageError(f"--base-url {base_url!r}: {host!r} is not a valid host name.")
    if url.scheme == "http" and not is_loopback(url.host):
        raise UsageError(f"--base-url {base_url!r} uses plain http://, allowed only for a loopback host; use https://.")
    if url.userinfo or url.query or url.fragment:
        raise UsageError(f"--base-url {base_url!r} must not hold a user name, query or fragment.")
    return str(url.copy_with(raw_path=url.raw_path.rstrip(b"/") or b"")).rstrip("/")


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


class RyngClient:
    """Sends one End Preview Call attempt at a time.

    Through the production `AiohttpTransport` it uses the transport's fast `send`; through any
    other httpx transport (tests pass `httpx.MockTransport`) it builds an httpx Request. Either way
    the URL comes from `url_for`, the one place that puts a callID into a path.
    """

    def __init__(self, base_url: str, token: Secret, *, transport: httpx.AsyncBaseTransport | None,
                 timeout: float, connect_timeout: float = CONNECT_TIMEOUT_S) -> None:
        base = httpx.URL(base_url)
        self._origin = f"{base.scheme}://{base.netloc.decode('ascii')}"
        self._route = base.raw_path.decode("ascii").rstrip("/") + ROUTE
        self._token = token
        self._headers = {
            "x-access-token": token.reveal(),
            "content-type": "application/json",
            "accept": "application/json",
            "user-agent": f"batch-dispose/{__version__}",
        }
        self._connect_timeout = connect_timeout
        self._timeouts = {"connect": connect_timeout, "read": timeout, "write": timeout, "pool": connect_timeout}
        self._deadline = connect_timeout + timeout + 2.0  # no attempt outlives this, whatever the server does
        self.deadline_s = self._deadline  # the runner says how long a stop can wait at most
        self._transport = transport
        self._fast = transport if isinstance(transport, AiohttpTransport) else None
        self.timeout = timeout
        self._disposed: dict[tuple[str, bytes], Verdict] = {}  # the API's 200 replies seen: classified once

    def url_for(self, call: CallRequest) -> str:
        """The end-call URL of a row: the callID percent-encoded as exactly one path segment.

        Validation already allows only A-Z a-z 0-9 _ -; this refuses, as a bug, anything that could
        still name another path.
        """
        segment = quote(call.call_id, safe="")
        if not _SEGMENT.fullmatch(segment) or segment in (".", ".."):
            raise RuntimeError(f"refusing to send call ID {call.call_id!r}: not one end-call path segment")
        return self._origin + self._route + segment

    def request_for(self, call: CallRequest) -> httpx.Request:
        """The row's request as an httpx Request (for httpx transports and `validate`'s preview)."""
        url = self.url_for(call)
        request = httpx.Request("PATCH", url, headers=self._headers, content=_body(call),
                                extensions={"timeout": self._timeouts})
        if request.url.raw_path != url[len(self._origin):].encode("ascii"):
            raise RuntimeError(f"refusing to send to {request.url.raw_path!r}: not one end-call path segment")
        return request

    async def attempt(self, call: CallRequest) -> Verdict:
        """Send the row's request once and say what the answer means."""
        assert self._transport is not None, "a client made for previews cannot send"
        try:
            if self._fast is not None:  # aiohttp enforces the same deadline itself (its `total` timeout)
                reply = await self._fast.send("PATCH", self.url_for(call), self._headers, _body(call),
                                              connect=self._connect_timeout, read=self.timeout,
                                              total=self._deadline)
            else:
                async with asyncio.timeout(self._deadline):
                    response = await self._transport.handle_async_request(self.request_for(call))
                    try:
                        await response.aread()
                    finally:
                        await response.aclose()
                reply = Reply.from_httpx(response)
        except httpx.TransportError as exc:
            return classify_error(exc, self.timeout, secret=self._token.reveal())
        except httpx.DecodingError as exc:  # the reply arrived but cannot be decoded
            return Verdict(Status.UNKNOWN, f"the server's reply could not be decoded "
                           f"({server_text(str(exc), self._token.reveal())[:120]}); {UNKNOWN_HINT}")
        except TimeoutError:
            return Verdict(Status.UNKNOWN, f"sent, but no complete reply within {self._deadline:.0f} s; {UNKNOWN_HINT}")
        if reply.status == 200 and len(reply.content) <= 512:  # the common answer: every row gets the same bytes
            key = (reply.reason, reply.content)
            verdict = self._disposed.get(key)
            if verdict is None:
                verdict = classify(reply, secret=self._token.reveal())
                if verdict.status is Status.DISPOSED and len(self._disposed) < 16:
                    self._disposed[key] = verdict
            return verdict
        return classify(reply, secret=self._token.reveal())

    async def aclose(self) -> None:
        if self._transport is not None:
            await self._transport.aclose()


def _body(call: CallRequest) -> bytes:
    """The JSON body; ASCII with escapes, so any notes (even lone surrogates) encode."""
    return json.dumps(call.body()).encode("ascii")


def preview(base_url: str | None, call: CallRequest) -> str:
    """The exact request a row becomes, as text, with the token masked (for `validate`)."""
    client = RyngClient(base_url or "https://your-subdomain.ryng.in", Secret(MASK), transport=None, timeout=0)
    request = client.request_for(call)
    headers = "\n".join(f"{name}: {value}" for name, value in request.headers.items()
                        if name in ("x-access-token", "content-type"))
    body = request.content.decode("ascii")
    text = f"{request.method} {request.url}\n{headers}\n\n{body}"
    if "\\u" in body:  # é travels as \u00e9: say that Ryng reads the text as written
        notes = call.notes[:80] + ("…" if len(call.notes) > 80 else "")
        text += (f"\n(\\u escapes are how JSON carries letters beyond ASCII; Ryng reads them as written: "
                 f"disposition “{call.disposition[:60]}”, notes “{notes}”)")
    return text


def classify(response: Reply | httpx.Response, *, secret: str = "") -> Verdict:
    """What one HTTP answer means for the row (see the table in the module docstring).

    Every piece of server text (the body, the JSON message inside it, the reason phrase, Location) is
    decoded and masked for `secret`, with control characters made inert, before any of it is cut into
    a message (`servertext.server_text`): a server echoing our header back, even escaped, cannot put
    the token, or a piece of it, into a message, the log, the ledger or the workbook.
    """
    if isinstance(response, httpx.Response):
        response = Reply.from_httpx(response)
    code = response.status
    reason = f"{code} {server_text(response.reason, secret)[:80]}".strip()
    raw = response.content[:65536].decode("utf-8-sig", errors="replace")  # a BOM before the JSON is no matter
    if code in RETRY_STATUSES:
        return Verdict(Status.FAILED, f"the server stayed {RETRY_STATUSES[code]} ({reason}); "
                       f"the call was not ended, so it is safe to re-run", code, retry=True,
                       retry_after=parse_retry_after(response.headers.get("retry-after")))
    api = _api_reply(raw, secret)
    if code == 200 and api is not None:
        error, message = api
        if not error:
            return Verdict(Status.DISPOSED, message or "Call disposed and ended.", code)
        return Verdict(Status.FAILED, f"the server answered 200 but reported an error: {message}", code)
    if 200 <= code < 300:
        return Verdict(Status.UNKNOWN, f"the server answered {reason} but not with the API's reply "
                       f"({_excerpt(raw, secret, said=reason)}); {UNKNOWN_HINT}", code)
    if code == 403:
        if api is None:  # a firewall's or proxy's page, not the API's {"error": true, "message": "Unauthorized Token"}
            return Verdict(Status.UNAUTHORIZED, f"the server refused the request (403) with a page that is not Ryng's "
                           f"answer ({_excerpt(raw, secret, said=reason)}): usually the access token, sometimes a "
                           f"firewall or proxy in between", code)
        return Verdict(Status.UNAUTHORIZED, f"the server rejected the access token ({code}: {api[1]})", code)
    if code == 500 and api is not None:
        return Verdict(Status.FAILED, f"the server did not dispose of the call ({code}: {api[1]})", code)
    if 300 <= code < 400:
        where = server_text(response.headers.get("location", "elsewhere"), secret)
        return Verdict(Status.FAILED, f"the server redirected the request ({reason}) to {where[:120]}; "
                       f"check --subdomain / --base-url", code)
    if 400 <= code < 500:
        return Verdict(Status.FAILED, f"the server refused the request ({reason}: "
                       f"{api[1] if api else _excerpt(raw, secret)})", code)
    return Verdict(Status.UNKNOWN, f"the server answered {reason} ({_excerpt(raw, secret, said=reason)}); "
                   f"{UNKNOWN_HINT}", code)


def classify_error(exc: httpx.TransportError, read_timeout: float, *, secret: str = "") -> Verdict:
    """What a transport failure means: before sending -> retry; after -> unknown."""
    detail = server_text(str(exc), secret)[:160] or type(exc).__name__
    if isinstance(exc, UntrustedCertificate):
        return Verdict(Status.FAILED, f"the server's TLS certificate is not trusted ({detail}); nothing was sent. "
                       f"Check --subdomain / --base-url, or the system's certificate store")
    if isinstance(exc, StaleConnection):
        return Verdict(Status.FAILED, f"{detail}; the call was not sent, so it is safe to re-run", retry=True,
                       cause=detail, stale=True)
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout):
        return Verdict(Status.FAILED, f"could not connect to the server ({detail}); the call was not sent, "
                       f"so it is safe to re-run", retry=True, cause=detail)
    if isinstance(exc, httpx.ReadTimeout):
        return Verdict(Status.UNKNOWN, f"sent, but no reply within {read_timeout:g} s; {UNKNOWN_HINT}")
    return Verdict(Status.UNKNOWN, f"sent, but the connection broke before a reply ({detail}); {UNKNOWN_HINT}")


def _api_reply(text: str, secret: str = "") -> tuple[bool, str] | None:
    """(error, message) when the body is the API's JSON (the message decoded, masked, inert); None otherwise."""
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("error"), bool):
        return None
    message = data.get("message")
    return data["error"], server_text(message, secret)[:300] if isinstance(message, str) else ""


def _excerpt(text: str, secret: str = "", limit: int = 160, *, said: str = "") -> str:
    """The start of a body that is not the API's JSON, as words: tags dropped, decoded, masked, inert.

    `said` is what the message already says (the status line): an error page that only repeats it
    (nginx's "502 Bad Gateway 502 Bad Gateway nginx") is not quoted twice."""
    text = text[:4096]
    if "<" in text:  # an HTML error page: its words, not its tags
        text = re.sub(r"(?is)<(script|style)\b.*?</\1>|<[^>]*>", " ", text)
    text = server_text(text, secret)
    if not text:
        return "empty body"
    while said and text.startswith(said):
        text = text[len(said):].strip()
    if not text:
        return "nothing more than the status line"
    return text if len(text) <= limit else text[: limit - 1] + "…"
