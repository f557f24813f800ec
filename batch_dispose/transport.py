"""An httpx transport that sends through aiohttp, with failures mapped by *when* they happened.

httpx's own async transport costs several times more CPU per request than aiohttp's client, so
requests go out through aiohttp while the rest of the code keeps httpx's `Request`/`Response` and
transport interface (tests swap in `httpx.MockTransport`). The mapping of aiohttp's errors is the
part that matters for never sending a call twice:

=============================================  ========================  ==========================
aiohttp raises                                 httpx error we raise      what it tells the caller
=============================================  ========================  ==========================
ClientConnectorCertificateError                UntrustedCertificate      never left; not retried
ClientConnectorError (refused, DNS, TLS)       ConnectError              request never left
a write refused on a pooled connection the     StaleConnection           never left; sent again at once
server had closed ("closing transport")
ConnectionTimeoutError (pool or connect)       ConnectTimeout            request never left
SocketTimeoutError / other ServerTimeoutError  ReadTimeout               sent, no reply in time
the `total` deadline (TimeoutError)
ServerDisconnectedError, ClientPayloadError,   RemoteProtocolError       sent, the reply broke off
ClientResponseError (bad HTTP)
any other ClientError / OSError                ReadError                 sent, effect unknown
=============================================  ========================  ==========================
"""

from __future__ import annotations

import ipaddress
import re
import socket
import ssl
from collections.abc import Mapping
from dataclasses import dataclass

import aiohttp
import httpx
import yarl

MAX_BODY = 1 << 20  # bytes of a reply kept; the API's replies are a few dozen bytes
# Connections idle longer than this are not reused: a server closing an idle connection just as we
# reuse it would turn a safe request into one whose effect is unknown.
KEEPALIVE_S = 4.0
_SKIP_USER_AGENT = ("User-Agent",)


class UntrustedCertificate(httpx.ConnectError):
    """The server's TLS certificate is not trusted: the request never left, and retrying cannot help."""


class StaleConnection(httpx.ConnectError):
    """A reused connection the server had already closed: the request never left; sent again at once, on a new
    connection, it goes through (the server is up: it has just answered on that connection)."""


@dataclass(frozen=True, slots=True)
class Reply:
    """An HTTP answer, as much of it as classification needs (from aiohttp or from httpx)."""

    status: int
    reason: str
    headers: Mapping[str, str]  # case-insensitive
    content: bytes

    @classmethod
    def from_httpx(cls, response: httpx.Response) -> Reply:
        return cls(response.status_code, response.reason_phrase, response.headers, response.content)


class AiohttpTransport(httpx.AsyncBaseTransport):
    """Sends through one pooled aiohttp session; `connections` caps open connections.

    `send` is the fast path `client.py` uses: no httpx Request/Response objects are built, which
    roughly halves the CPU cost per call. `handle_async_request` wraps it for httpx callers.
    """

    def __init__(self, *, connections: int, trust_env: bool = False) -> None:
        self._connections = connections
        self._trust_env = trust_env
        self._session: aiohttp.ClientSession | None = None
        self._timeouts: dict[tuple[float | None, float | None, float | None], aiohttp.ClientTimeout] = {}

    def _open(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(
            limit=self._connections,
            keepalive_timeout=KEEPALIVE_S,
            ssl=True,  # verified: aiohttp's default context (the system's CAs), built once when it is imported
        )
        return aiohttp.ClientSession(
            connector=connector,
            trust_env=self._trust_env,
            auto_decompress=True,
            # No cookies: a server's Set-Cookie must not add a header to later requests (each request is
            # exactly what `validate` previews), and the jar's bookkeeping costs CPU on every request.
            cookie_jar=aiohttp.DummyCookieJar(),
        )

    def _timeout(self, connect: float | None, read: float | None, total: float | None) -> aiohttp.ClientTimeout:
        timeout = self._timeouts.get((connect, read, total))
        if timeout is None:
            # `connect` covers waiting for a pooled connection plus connecting (TCP and TLS); `total`
            # bounds the whole exchange, reply body included.
            timeout = aiohttp.ClientTimeout(total=total, connect=connect, sock_connect=connect, sock_read=read)
            self._timeouts[(connect, read, total)] = timeout
        return timeout

    async def send(self, method: str, url: str, headers: Mapping[str, str], body: bytes, *,
                   connect: float | None, read: float | None, total: float | None = None) -> Reply:
        """One request, the URL used exactly as given; failures raised as httpx errors (table above)."""
        if self._session is None:
            self._session = self._open()
        # aiohttp adds its own User-Agent unless told not to; asking per session costs a header copy per
        # request, so only a request without one of ours (an httpx caller) asks.
        skip = None if "user-agent" in headers or "User-Agent" in headers else _SKIP_USER_AGENT
        try:
            async with self._session.request(
                method,
                yarl.URL(url, encoded=True),
                headers=headers,
                skip_auto_headers=skip,
                data=body or None,
                allow_redirects=False,
                timeout=self._timeout(connect, read, total),
            ) as reply:
                content = await _read_capped(reply)
                return Reply(reply.status, reply.reason or "", reply.headers, content)
        except aiohttp.ClientConnectorCertificateError as exc:
            raise UntrustedCertificate(_text(exc)) from exc
        except aiohttp.ClientConnectorError as exc:  # aiohttp's own text adds "ssl:default [Connect call failed …]"
            raise httpx.ConnectError(_connect_cause(exc.os_error, exc.host, exc.port)) from exc
        except aiohttp.ConnectionTimeoutError as exc:
            raise httpx.ConnectTimeout(_text(exc)) from exc
        except aiohttp.ServerTimeoutError as exc:
            raise httpx.ReadTimeout(_text(exc)) from exc
        except TimeoutError as exc:  # the `total` deadline: sent (connecting has its own, shorter timeout)
            raise httpx.ReadTimeout(f"no complete reply within {total:g} s") from exc
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError, aiohttp.ClientResponseError) as exc:
            raise httpx.RemoteProtocolError(_broken_reply(exc)) from exc
        except (aiohttp.ClientError, OSError) as exc:
            if _never_written(exc):
                raise StaleConnection("the server had closed the connection before the request was written") from exc
            raise httpx.ReadError(_text(exc)) from exc

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        limits = request.extensions.get("timeout", {})
        headers = {name: value for name, value in request.headers.items() if name != "content-length"}
        try:
            reply = await self.send(request.method, str(request.url), headers, request.content,
                                    connect=limits.get("connect"), read=limits.get("read"))
        except httpx.TransportError as exc:
            exc.request = request
            raise
        # aiohttp has already decoded the body: httpx must not decode it again.
        kept = [(name, value) for name, value in reply.headers.items()
                if name.lower() not in ("content-encoding", "content-length", "transfer-encoding")]
        return httpx.Response(reply.status, headers=kept, content=reply.content, request=request)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


async def _read_capped(reply: aiohttp.ClientResponse) -> bytes:
    """The reply's body, at most MAX_BODY bytes of it (a hostile server cannot fill memory)."""
    length = reply.content_length
    if length is not None and length <= MAX_BODY and "content-encoding" not in reply.headers:
        return await reply.read()  # the common reply: its length said, nothing to decompress (a bomb cannot hide)
    chunks: list[bytes] = []
    size = 0
    async for chunk in reply.content.iter_chunked(65536):
        chunks.append(chunk)
        size += len(chunk)
        if size >= MAX_BODY:
            break
    return b"".join(chunks)[:MAX_BODY]


_CUT_SHORT = re.compile(r"received (\d+) of (\d+) bytes")


def _broken_reply(exc: aiohttp.ClientError) -> str:
    """What went wrong with a reply, in words (aiohttp's own text names its classes and a status 400 that the
    server never sent)."""
    text = _text(exc)
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "the server closed the connection without a reply"
    if isinstance(exc, aiohttp.ClientPayloadError):
        cut = _CUT_SHORT.search(text)
        return (f"the reply was cut off after {cut[1]} of its {cut[2]} bytes" if cut
                else "the reply was cut off before its end")
    said = getattr(exc, "message", "") or text
    if "\\x16\\x03" in said or "\\x15\\x03" in said:  # a TLS record: https spoken to an http:// address
        return "the server answered in TLS, not plain HTTP: its address should start with https://"
    if "status line" in said.lower() or "invalid http" in said.lower() or "expected http" in said.lower():
        return "the reply was not HTTP (another kind of server listens at that address)"
    return f"the reply was not valid HTTP ({said[:120]})"


def _never_written(exc: BaseException) -> bool:
    """aiohttp took a pooled connection the server had just closed (without saying `Connection: close`): its
    write of the request, headers and body in one piece, was refused before a byte went out ("Cannot write to
    closing transport"), so the server never had the request and it is safe to send it again."""
    return (isinstance(exc, aiohttp.ClientOSError) and "Can not write request body" in str(exc)
            and isinstance(exc.__cause__, ConnectionResetError) and "closing transport" in str(exc.__cause__))


def _connect_cause(error: OSError, host: str, port: int | None) -> str:
    """Why a connection could not be made, and to where, in words (refused, DNS, TLS, timeout)."""
    where = f"{host}:{port}" if port else host
    if isinstance(error, ConnectionRefusedError):
        return f"connection refused by {where}"
    if isinstance(error, socket.gaierror):
        return f"the host name {host} could not be found (DNS)"
    if isinstance(error, ssl.SSLError):
        return f"the TLS handshake with {where} failed"
    if isinstance(error, TimeoutError):
        return f"connecting to {where} timed out"
    return f"{error.strerror or type(error).__name__} ({where})"


def _text(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def is_loopback(host: str) -> bool:
    """True for localhost and literal loopback addresses (where plain http:// is allowed)."""
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def default_transport(connections: int, base_url: str) -> AiohttpTransport:
    """The production transport: proxies from the environment apply except on loopback."""
    return AiohttpTransport(connections=connections, trust_env=not is_loopback(httpx.URL(base_url).host))
