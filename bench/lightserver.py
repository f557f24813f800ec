"""A deliberately tiny Ryng stand-in for benchmarks: asyncio protocol, keep-alive, fixed 200 reply.

The simulator (aiohttp) serves about 10k requests/s on one core, which is close to what a bare
aiohttp client can send, so it would be the bottleneck of the latency-0 benchmarks. This server
parses only what it must (request line, Content-Length) and answers the API's 200 body, optionally
after a fixed latency. It prints its port, then (on SIGTERM/SIGINT) its request count and CPU seconds.

    python bench/lightserver.py [--latency-ms 50] [--port 0]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import signal
import sys

BODY = b'{"error": false, "message": "Call disposed and ended.", "data": {}}'
REPLY = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
         + str(len(BODY)).encode() + b"\r\n\r\n" + BODY)
ROUTE = b"/rest-api/v1/preview/call/"
NOT_FOUND = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"


class Counter:
    requests = 0
    off_route = 0


class Ryng(asyncio.Protocol):
    def __init__(self, latency: float) -> None:
        self.latency = latency
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end]
            length = 0
            for line in head.split(b"\r\n")[1:]:
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            if len(self.buffer) < end + 4 + length:
                return
            self.buffer = self.buffer[end + 4 + length:]
            target = head.split(b" ", 2)[1]
            on_route = head.startswith(b"PATCH ") and target.startswith(ROUTE) and b"/" not in target[len(ROUTE):]
            Counter.requests += 1
            Counter.off_route += not on_route
            reply = REPLY if on_route else NOT_FOUND
            if self.latency:
                asyncio.get_running_loop().call_later(self.latency, self._write, reply)
            else:
                self._write(reply)

    def _write(self, reply: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(reply)


async def main(port: int, latency: float) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Ryng(latency), "127.0.0.1", port, backlog=1024)
    print(server.sockets[0].getsockname()[1], flush=True)
    done = asyncio.Event()
    for number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(number, done.set)
    await done.wait()
    server.close()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(f"{Counter.requests} {Counter.off_route} {usage.ru_utime + usage.ru_stime:.3f}", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    options = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[attr-defined]
    os.environ.setdefault("PYTHONASYNCIODEBUG", "0")
    asyncio.run(main(options.port, options.latency_ms / 1000))
