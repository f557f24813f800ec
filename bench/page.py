"""The ops page (issue 12): its check and its sending beside the CLI's, in the same run; and its stack.

    python bench/page.py            # 100,000-row XLSX checked; 10,000 rows sent at 20 ms latency (about 1 min)
    python bench/page.py --quick    # 10,000 rows checked, 2,000 sent: a smoke run

Target A: a 100k-row XLSX uploaded through `POST /api/files` (upload + load + check, wall time at
the client) vs `batch-dispose validate` on the same file (the run's own duration_s, imports left out,
and the process wall time): at most 1.5x.
Target B: 10,000 rows sent through the page (`POST /api/files/{id}/run`) vs `batch-dispose run` on the
same rows and the same light server (latency 20 ms, concurrency 16): rows/s from each run's own
duration_s, page at least 95% of the CLI.
Target C: the gaps between progress events (`GET /api/runs/{id}/events`) while sending: at most 0.5 s.
Also: the stack, measured: import time of starlette+uvicorn+jinja2+python_multipart vs aiohttp.web
(already a dependency), and per-request time of a JSON hello on each (2,000 keep-alive requests).
Servers run on core 1, measured clients on core 0 where the machine has them.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import itertools

from _common import (
    CLIENT_CORE,
    PYTHON,
    SERVER_CORE,
    LightServer,
    machine,
    measure,
    pin_self,
    pinning_note,
    popen,
    scratch,
    table,
    tool_command,
    tool_env,
    verdict,
    write_csv,
    write_xlsx,
)

HELLO_STARLETTE = """
import sys, uvicorn
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route
async def hello(request): return JSONResponse({"hello": "world"})
config = uvicorn.Config(Starlette(routes=[Route("/", hello)]), port=0, log_level="warning", access_log=False)
class Server(uvicorn.Server):
    async def startup(self, sockets=None):
        await super().startup(sockets)
        print(self.servers[0].sockets[0].getsockname()[1], flush=True)
Server(config).run()
"""
HELLO_AIOHTTP = """
from aiohttp import web
async def hello(request): return web.json_response({"hello": "world"})
app = web.Application(); app.router.add_get("/", hello)
import asyncio, socket
async def main():
    runner = web.AppRunner(app, access_log=None); await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0); await site.start()
    print(site._server.sockets[0].getsockname()[1], flush=True)
    await asyncio.Event().wait()
asyncio.run(main())
"""


def start_serve(base_url: str, folder: Path, concurrency: int) -> tuple[subprocess.Popen, str]:  # type: ignore[type-arg]
    process = popen([*tool_command(), "serve", "--port", "0", "--base-url", base_url, "--reports-dir",
                     str(folder / "page-reports"), "--ledger", str(folder / "page.sqlite"), "--concurrency",
                     str(concurrency)], SERVER_CORE, stdout=subprocess.PIPE, text=True, env=tool_env(), cwd=folder)
    assert process.stdout is not None
    line = process.stdout.readline().strip()
    if not line.startswith("serving on "):
        process.kill()
        raise RuntimeError(f"serve did not start (said {line!r})")
    return process, line.removeprefix("serving on ")


def upload(client, url: str, path: Path) -> tuple[dict, float]:  # type: ignore[no-untyped-def, type-arg]
    started = time.perf_counter()
    with open(path, "rb") as handle:
        response = client.post(url + "api/files", files={"file": (path.name, handle)})
    elapsed = time.perf_counter() - started
    response.raise_for_status()
    return response.json(), elapsed


def page_send(client, url: str, upload_id: str) -> tuple[dict, list[float], float]:  # type: ignore[no-untyped-def, type-arg]
    """Start the run, read its events to the end; the final view, the gaps between events, the wall time."""
    started = time.perf_counter()
    run = client.post(f"{url}api/files/{upload_id}/run").json()["run"]
    arrivals, final = [], {}
    with client.stream("GET", f"{url}api/runs/{run}/events", timeout=None) as events:
        for line in events.iter_lines():
            if line.startswith("data: "):
                arrivals.append(time.perf_counter())
                final = json.loads(line[6:])
    wall = time.perf_counter() - started
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    return final, gaps, wall


def hello_bench(code: str, requests: int) -> float:
    """µs per keep-alive GET of a JSON hello, at the client, sequentially."""
    import httpx

    process = popen([PYTHON, "-c", code], SERVER_CORE, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        port = int(process.stdout.readline())
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
            for _ in range(100):
                client.get("/")
            started = time.perf_counter()
            for _ in range(requests):
                client.get("/")
            return 1e6 * (time.perf_counter() - started) / requests
    finally:
        process.terminate()
        process.wait()


def import_ms(modules: str, runs: int = 5) -> float:
    times = []
    for _ in range(runs):
        result = measure([PYTHON, "-c", f"import {modules}"], core=CLIENT_CORE)
        times.append(result.wall_s * 1000)
    bare = statistics.median(measure([PYTHON, "-c", "pass"], core=CLIENT_CORE).wall_s * 1000 for _ in range(runs))
    return statistics.median(times) - bare


def main() -> int:
    import httpx

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000, help="rows of the XLSX checked (default 100,000)")
    parser.add_argument("--send-rows", type=int, default=10_000, help="rows sent (default 10,000)")
    parser.add_argument("--latency-ms", type=float, default=20.0, help="light server latency (default 20)")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--quick", action="store_true", help="10,000 rows checked, 2,000 sent")
    args = parser.parse_args()
    if args.quick:
        args.rows, args.send_rows = 10_000, 2_000
    pin_self(CLIENT_CORE)
    print(machine())
    print(pinning_note())
    summary = []
    with scratch("bench-page-") as folder, LightServer(args.latency_ms) as light:
        xlsx = write_xlsx(folder / "check.xlsx", args.rows)
        cli = measure([*tool_command(), "validate", str(xlsx), "--json", "--reports-dir", str(folder / "cli-reports")],
                      env=tool_env(), cwd=folder)
        cli_duration = json.loads(cli.stdout)["duration_s"]
        process, url = start_serve(light.url, folder, args.concurrency)
        try:
            with httpx.Client(timeout=600, headers={"origin": url.rstrip("/")}) as client:
                client.get(url)  # warm: the first page render
                checked, page_check = upload(client, url, xlsx)
                assert checked["rows"] == args.rows, checked
                ratio = page_check / cli_duration
                table(["what", "seconds"], [
                    [f"batch-dispose validate ({args.rows:,} rows): its duration_s", cli_duration],
                    ["batch-dispose validate: process start to exit", cli.wall_s],
                    ["POST /api/files: upload + load + check, at the client", page_check],
                ], title="A. Checking a file")
                summary.append((f"A. page check / CLI validate = {ratio:.2f} (target <= 1.5)", ratio <= 1.5))

                source = write_csv(folder / "send.csv", args.send_rows)
                page_copy = folder / "send-page.csv"
                shutil.copyfile(source, page_copy)
                run = measure([*tool_command(), "run", str(source), "--base-url", light.url, "--json", "--ledger",
                               str(folder / "cli.sqlite"), "--reports-dir", str(folder / "cli-reports"),
                               "--concurrency", str(args.concurrency)], env=tool_env(), cwd=folder)
                cli_run = json.loads(run.stdout)
                cli_rate = cli_run["rows"] / cli_run["duration_s"]
                sent, _ = upload(client, url, page_copy)
                final, gaps, wall = page_send(client, url, sent["id"])
                assert final["counts"]["disposed"] == args.send_rows, final["counts"]
                page_rate = final["rows"] / final["duration_s"]
                table(["what", "rows/s", "seconds"], [
                    [f"batch-dispose run ({args.send_rows:,} rows): rows / duration_s", cli_rate,
                     cli_run["duration_s"]],
                    ["the page's run: rows / duration_s", page_rate, final["duration_s"]],
                    ["the page's run: POST run to the final event, at the client", args.send_rows / wall, wall],
                ], title=f"B. Sending (light server, latency {args.latency_ms:g} ms, concurrency {args.concurrency})")
                share = page_rate / cli_rate
                summary.append((f"B. page rows/s / CLI rows/s = {share:.1%} (target >= 95%)", share >= 0.95))
                biggest = max(gaps) if gaps else float("inf")
                table(["events", "median gap s", "largest gap s"],
                      [[len(gaps) + 1, statistics.median(gaps) if gaps else 0, biggest]], title="C. Progress events")
                summary.append((f"C. largest gap between events = {biggest:.2f} s (target <= 0.5)", biggest <= 0.5))
        finally:
            process.terminate()
            process.wait(timeout=60)
    stack = [
        ["starlette + uvicorn + jinja2 + python_multipart", import_ms(
            "starlette.applications, starlette.routing, uvicorn, jinja2, python_multipart"),
         hello_bench(HELLO_STARLETTE, 2000)],
        ["aiohttp.web (already a dependency)", import_ms("aiohttp.web"), hello_bench(HELLO_AIOHTTP, 2000)],
    ]
    table(["stack", "import ms", "µs per request"], stack, title="The stack (median of 5 imports; 2,000 requests)")
    print("\nSummary")
    for text, ok in summary:
        print(f"  {verdict(ok)}  {text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
