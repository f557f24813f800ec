"""The measured clients of bench/send.py, each run in its own process (pinned to a core by send.py).

    python bench/_workers.py KIND --url URL --csv FILE [--concurrency 16] [--limit N] [--reports DIR] [--profile]
                             [--journal ledger|log|handoff|none]

KIND is one of:
  sequential     a plain loop with httpx.Client, one PATCH per row (what an ops engineer writes)
  httpx-async    httpx.AsyncClient (default transport), a semaphore of --concurrency
  httpx-threads  httpx.Client shared by --concurrency threads
  aiohttp        raw aiohttp, TCPConnector(limit=--concurrency) and a semaphore
  bare-socket    no HTTP library: --concurrency keep-alive sockets under one `selectors` loop, each sending the
                 next PATCH as soon as its reply (parsed by Content-Length only) is in. Not a peer anyone would
                 ship (no TLS, timeouts or error handling): the floor of what a client costs, so its rate is
                 what this machine and server allow any client at this latency.
  tool           batch_dispose.job.run_files in-process: the sending phase is timed from the reporter's
                 file_started to the last outcome (the ledger, run log and runner all included); with
                 --journal log, handoff or none, the ledger's commits are replaced to price them (bench/journal.py)

The bare clients do no validation, keep no ledger and write nothing; each sends the API's PATCH with a
JSON body and reads and parses the reply. Rows are read from the CSV before the clock starts. Prints one
JSON line: rows, seconds, cpu_s (this process, all threads, during the timed part), errors, and for
`tool` its phases. With --profile the timed part runs under pyinstrument and (for `tool`) the report of
where the time went is printed before the JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import resource
import sys
import time
from pathlib import Path

ROUTE = "/rest-api/v1/preview/call/"
TOKEN = "bench-token"


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def read_rows(path: Path, limit: int | None) -> list[tuple[str, dict[str, object]]]:
    with open(path, newline="", encoding="utf-8") as handle:
        rows = [(record["callID"], {"logID": int(record["logID"]), "dispositionName": record["disposition"],
                                    "notes": record["notes"]}) for record in csv.DictReader(handle)]
    return rows[:limit] if limit else rows


HEADERS = {"x-access-token": TOKEN}


def sequential(url: str, rows: list[tuple[str, dict[str, object]]], concurrency: int) -> int:
    import httpx

    errors = 0
    with httpx.Client() as client:
        for call_id, body in rows:
            response = client.patch(f"{url}{ROUTE}{call_id}", json=body, headers=HEADERS)
            errors += response.status_code != 200 or response.json()["error"]
    return errors


def httpx_threads(url: str, rows: list[tuple[str, dict[str, object]]], concurrency: int) -> int:
    from concurrent.futures import ThreadPoolExecutor

    import httpx

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    with httpx.Client(limits=limits) as client, ThreadPoolExecutor(concurrency) as pool:
        def send(row: tuple[str, dict[str, object]]) -> int:
            response = client.patch(f"{url}{ROUTE}{row[0]}", json=row[1], headers=HEADERS)
            return int(response.status_code != 200 or response.json()["error"])
        return sum(pool.map(send, rows))


async def httpx_async(url: str, rows: list[tuple[str, dict[str, object]]], concurrency: int) -> int:
    import httpx

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    slots = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(limits=limits) as client:
        async def send(call_id: str, body: dict[str, object]) -> int:
            async with slots:
                response = await client.patch(f"{url}{ROUTE}{call_id}", json=body, headers=HEADERS)
                return int(response.status_code != 200 or response.json()["error"])
        return sum(await asyncio.gather(*(send(call_id, body) for call_id, body in rows)))


async def raw_aiohttp(url: str, rows: list[tuple[str, dict[str, object]]], concurrency: int) -> int:
    import aiohttp

    slots = asyncio.Semaphore(concurrency)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
        async def send(call_id: str, body: dict[str, object]) -> int:
            async with slots, session.patch(f"{url}{ROUTE}{call_id}", json=body, headers=HEADERS) as response:
                data = await response.json()
                return int(response.status != 200 or data["error"])
        return sum(await asyncio.gather(*(send(call_id, body) for call_id, body in rows)))


def bare_socket(url: str, rows: list[tuple[str, dict[str, object]]], concurrency: int) -> int:
    import selectors
    import socket
    from urllib.parse import urlsplit

    where = urlsplit(url)
    selector = selectors.DefaultSelector()
    pending = iter(rows)
    errors = done = 0

    def send(sock: socket.socket) -> None:
        row = next(pending, None)
        if row is None:
            return
        body = json.dumps(row[1]).encode()
        sock.sendall(f"PATCH {ROUTE}{row[0]} HTTP/1.1\r\nHost: {where.netloc}\r\nx-access-token: {TOKEN}\r\n"
                     f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)

    for _ in range(min(concurrency, len(rows))):
        sock = socket.create_connection((where.hostname, where.port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        selector.register(sock, selectors.EVENT_READ, bytearray())
        send(sock)
    while done < len(rows):
        for key, _ in selector.select():
            conn: socket.socket = key.fileobj  # type: ignore[assignment]
            buffer = key.data
            buffer += conn.recv(65536)
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                continue
            head = bytes(buffer[:end]).lower()
            length = int(head.split(b"content-length:", 1)[1].split(b"\r\n", 1)[0])
            if len(buffer) < end + 4 + length:
                continue
            errors += not head.startswith(b"http/1.1 200") or json.loads(buffer[end + 4:end + 4 + length])["error"]
            del buffer[:end + 4 + length]
            done += 1
            send(conn)
    for key in list(selector.get_map().values()):
        key.fileobj.close()  # type: ignore[union-attr]
    return errors


class TimingReporter:
    """A job.Reporter that notes when sending starts (file_started) and ends (the last outcome)."""

    def __init__(self, profiler=None) -> None:  # type: ignore[no-untyped-def]
        self.to_send = 0
        self.done = 0
        self.statuses: dict[str, int] = {}
        self.marks: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        self.profiler = profiler

    def file_started(self, path: Path, rows: int, to_send: int) -> None:
        self.to_send = to_send
        self.marks["send_start"], self.cpu["send_start"] = time.perf_counter(), cpu()
        if self.profiler is not None:
            self.profiler.start()

    def outcome(self, status) -> None:  # type: ignore[no-untyped-def]
        self.done += 1
        self.statuses[str(status)] = self.statuses.get(str(status), 0) + 1
        if self.done == self.to_send:
            self.marks["send_end"], self.cpu["send_end"] = time.perf_counter(), cpu()
            if self.profiler is not None:
                self.profiler.stop()

    def file_finished(self, result) -> None:  # type: ignore[no-untyped-def]
        self.marks["finished"] = time.perf_counter()


def tool(url: str, csv_path: Path, concurrency: int, reports: Path, profile: bool,
         journal: str = "ledger") -> dict[str, object]:
    sys.modules.setdefault("hypothesis", None)  # type: ignore[arg-type]  # as the program does (__main__.console)
    # What the send phase imports lazily, imported up front so the clock does not see it.
    from batch_dispose.client import base_url_for
    from batch_dispose.credentials import Secret
    from batch_dispose.job import run_files
    from batch_dispose.settings import Settings

    profiler = None
    timers: dict[str, float] = {}
    if profile:
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.0005, async_mode="disabled")
        timers = _instrument_ledger()
    if journal != "ledger":
        _replace_journal(journal, reports)
    reporter = TimingReporter(profiler)
    # Its own ledger beside its reports: a fresh one, whichever runs used this server before.
    settings = Settings(base_url=base_url_for(base_url=url), concurrency=concurrency, reports_dir=reports,
                        ledger=reports / "ledger.sqlite")
    started = time.perf_counter()
    results = asyncio.run(run_files([csv_path], settings, Secret(TOKEN), reporter=reporter))
    ended = time.perf_counter()
    marks = reporter.marks
    seconds = marks["send_end"] - marks["send_start"]
    report: dict[str, object] = {
        "rows": reporter.to_send, "seconds": seconds, "cpu_s": reporter.cpu["send_end"] - reporter.cpu["send_start"],
        "errors": reporter.to_send - reporter.statuses.get("disposed", 0), "statuses": reporter.statuses,
        "before_send_s": marks["send_start"] - started, "after_send_s": ended - marks["send_end"],
        "total_s": ended - started, "exit_code": int(results[0].exit_code),
    }
    if profiler is not None:
        print(_profile_report(profiler, seconds, timers, concurrency), flush=True)
    return report


def _replace_journal(journal: str, reports: Path) -> None:
    """For bench/journal.py only, to price the ledger's part of a run: `log` appends each commit's records as
    text lines to a plain file and fdatasyncs it (the cheapest durable record: what another ledger format, an
    append-only log folded into SQLite later, would cost at best); `handoff` keeps the hand-off of every
    commit to the ledger's thread and back but writes nothing; `none` awaits nothing at all. Never a
    product setting: `log` keeps nothing a later run reads, and the others nothing at all."""
    import os

    from batch_dispose import ledger

    if journal == "log":
        reports.mkdir(parents=True, exist_ok=True)
        log = os.open(reports / "journal.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

        def append(finished, starting) -> None:  # type: ignore[no-untyped-def]
            lines = [f"outcome\t{call.call_id}\t{o.status.value}\t{o.http_status}\t{o.message}\n"
                     for call, o in finished]
            lines += [f"intent\t{call.call_id}\t{call.row}\t{call.log_id}\t{call.disposition}\t{call.notes!r}\n"
                      for call in starting]
            os.write(log, "".join(lines).encode())
            os.fdatasync(log)

        async def appended(self, finished, starting) -> None:  # type: ignore[no-untyped-def]
            await asyncio.get_running_loop().run_in_executor(self._ledger.writer, append, finished, starting)

        ledger.RunJournal.commit = appended  # type: ignore[method-assign]
        return

    async def handoff(self, finished, starting) -> None:  # type: ignore[no-untyped-def]
        await asyncio.get_running_loop().run_in_executor(self._ledger.writer, _nothing)

    async def nothing(self, finished, starting) -> None:  # type: ignore[no-untyped-def]
        return None

    ledger.RunJournal.commit = handoff if journal == "handoff" else nothing  # type: ignore[method-assign]


def _nothing() -> None:
    return None


def _instrument_ledger() -> dict[str, float]:
    """Time the ledger's commits from both sides: CPU in the writer thread, and how long the runner's
    loop awaited them (pyinstrument samples only the main thread, so this is the part it cannot see)."""
    from batch_dispose import ledger

    timers = {"commits": 0, "commit_thread_cpu_s": 0.0, "commit_thread_wall_s": 0.0, "awaited_s": 0.0,
              "rows_finished": 0, "rows_started": 0, "commits_starting_none": 0}
    inner_commit = ledger.Ledger.commit
    inner_journal = ledger.RunJournal.commit

    def commit(self, host, run_id, finished, starting):  # type: ignore[no-untyped-def]
        cpu0, wall0 = time.thread_time(), time.perf_counter()
        try:
            return inner_commit(self, host, run_id, finished, starting)
        finally:
            timers["commit_thread_cpu_s"] += time.thread_time() - cpu0
            timers["commit_thread_wall_s"] += time.perf_counter() - wall0
            timers["commits"] += 1
            timers["rows_finished"] += len(finished)
            timers["rows_started"] += len(starting)
            timers["commits_starting_none"] += not starting

    async def journal_commit(self, finished, starting):  # type: ignore[no-untyped-def]
        wall0 = time.perf_counter()
        try:
            return await inner_journal(self, finished, starting)
        finally:
            timers["awaited_s"] += time.perf_counter() - wall0

    ledger.Ledger.commit = commit  # type: ignore[method-assign]
    ledger.RunJournal.commit = journal_commit  # type: ignore[method-assign]

    from batch_dispose import transport

    inner_send = transport.AiohttpTransport.send
    timers.update(requests=0, in_flight_s=0.0)

    async def send(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        wall0 = time.perf_counter()
        try:
            return await inner_send(self, *args, **kwargs)
        finally:
            timers["in_flight_s"] += time.perf_counter() - wall0
            timers["requests"] += 1

    transport.AiohttpTransport.send = send  # type: ignore[method-assign]
    return timers


# Where a sample's time is charged: the innermost frame of ours on its stack, named by module and
# function; library frames below it count for it (transport.send includes aiohttp's work for it).
def _bucket(stack: list[tuple[str, str]]) -> str:
    for path, function in reversed(stack):
        if "/batch_dispose/" in path:
            return f"batch_dispose/{path.rsplit('/batch_dispose/', 1)[1]}:{function}"
    for path, function in reversed(stack):  # the event loop's own work: the innermost module with a file
        if path.endswith(".py"):
            module = path.rsplit("/site-packages/", 1)[-1].rsplit("/python3.11/", 1)[-1]
            return f"(event loop, no frame of ours) {module}:{function}"
    return f"(no frame of ours) {stack[-1][1] if stack else '?'}"


CONCERNS = (  # (prefix of a bucket, concern); the first match wins
    ("batch_dispose/transport.py", "transport: aiohttp request/response (transport.py + aiohttp below it)"),
    ("(event loop, no frame of ours) aiohttp", "transport: aiohttp protocol callbacks (socket reads/writes)"),
    ("(event loop, no frame of ours) asyncio/selector_events", "transport: asyncio socket I/O"),
    ("(event loop", "event loop: scheduling, timers, callbacks"),
    ("batch_dispose/client.py:classify", "classification of replies (client.classify)"),
    ("batch_dispose/client.py:_api_reply", "classification of replies (client.classify)"),
    ("batch_dispose/client.py:_excerpt", "classification of replies (client.classify)"),
    ("batch_dispose/client.py", "request building + timeout (client.attempt, _body, url_for)"),
    ("batch_dispose/ledger.py", "ledger: hand-off to the writer thread (main-thread side)"),
    ("batch_dispose/runner.py", "runner (runner.py, pacing.py)"),
    ("batch_dispose/pacing.py", "runner (runner.py, pacing.py)"),
    ("batch_dispose/runlog.py", "run log (runlog.py)"),
    ("batch_dispose/job.py", "per-outcome bookkeeping (job.on_outcome, RowResults, reporter)"),
    ("batch_dispose/models.py", "per-outcome bookkeeping (job.on_outcome, RowResults, reporter)"),
)


def _concern(bucket: str) -> str:
    for prefix, concern in CONCERNS:
        if bucket.startswith(prefix):
            return concern
    return "other: " + bucket


def _profile_report(profiler, seconds: float, timers: dict[str, float], concurrency: int) -> str:  # type: ignore[no-untyped-def]
    session = profiler.last_session
    root = session.root_frame()
    totals: dict[str, float] = {}
    idle = 0.0

    def walk(frame, stack: list[tuple[str, str]]) -> None:  # type: ignore[no-untyped-def]
        nonlocal idle
        stack = [*stack, (frame.file_path or "", frame.function or "")]
        own = frame.total_self_time  # includes its synthetic [self] children
        if own:
            if any(function == "select" and path.endswith("selectors.py") for path, function in stack[-2:]):
                idle += own
            else:
                key = _bucket(stack)
                totals[key] = totals.get(key, 0.0) + own
        for child in frame.children:
            if not child.is_synthetic:
                walk(child, stack)

    walk(root, [])
    wall = root.time
    lines = ["", "== pyinstrument: the tool's sending phase (main thread, wall clock) ==",
             profiler.output_text(unicode=False, color=False, show_all=False, short_mode=False,
                                  processor_options={"filter_threshold": 0.02}).rstrip(), "",
             f"== by concern: the main thread's {wall:.2f} s ==", f"{'share':>6}  {'s':>6}  concern"]
    concerns: dict[str, float] = {"idle: waiting in select (server replies, ledger commits)": idle}
    for key, value in totals.items():
        concerns[_concern(key)] = concerns.get(_concern(key), 0.0) + value
    for key, value in sorted(concerns.items(), key=lambda item: -item[1]):
        lines.append(f"{100 * value / wall:5.1f}%  {value:6.2f}  {key}")
    lines += ["", "== in detail (innermost frame of batch_dispose on the stack) ==", f"{'share':>6}  {'s':>6}  where"]
    lines.append(f"{100 * idle / wall:5.1f}%  {idle:6.2f}  waiting in the event loop's select "
                 "(for the server, or for a ledger commit in the writer thread)")
    for key, value in sorted(totals.items(), key=lambda item: -item[1])[:18]:
        lines.append(f"{100 * value / wall:5.1f}%  {value:6.2f}  {key}")
    if timers.get("commits"):
        n = timers["commits"]
        lines += ["", "== ledger commits (writer thread; not in the samples above) ==",
                  f"commits: {n:.0f}  rows per commit: {timers['rows_finished'] / n:.1f} finished, "
                  f"{timers['rows_started'] / n:.1f} started; {timers['commits_starting_none']:.0f} commits "
                  f"started no row (outcomes only)",
                  f"writer thread: {timers['commit_thread_wall_s']:.2f} s wall "
                  f"({1000 * timers['commit_thread_wall_s'] / n:.2f} ms"
                  f"/commit, fsync included), {timers['commit_thread_cpu_s']:.2f} s CPU",
                  f"runner loop awaiting commits: {timers['awaited_s']:.2f} s of the {seconds:.2f} s sending phase "
                  f"({100 * timers['awaited_s'] / seconds:.0f}%)"]
    if timers.get("requests"):
        n, slots = timers["requests"], concurrency * seconds
        idle = max(slots - timers["in_flight_s"], 0.0)
        lines += ["", f"== the {concurrency} request slots ==",
                  f"requests: {n:.0f}, mean time in transport.send {1000 * timers['in_flight_s'] / n:.2f} ms",
                  f"slots holding a request in flight: {100 * timers['in_flight_s'] / slots:.1f}% of "
                  f"{concurrency} x {seconds:.2f} s; idle between requests {1000 * idle / n:.2f} ms per request "
                  f"(runner, ledger commit, callbacks)"]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("kind", choices=("sequential", "httpx-async", "httpx-threads", "aiohttp", "bare-socket",
                                         "tool"))
    parser.add_argument("--url", required=True)
    parser.add_argument("--csv", type=Path, required=True)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--reports", type=Path, default=None)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--journal", choices=("ledger", "log", "handoff", "none"), default="ledger",
                        help="tool only: the ledger's commits as they are, a plain fdatasync'd log instead, "
                             "the thread hand-off alone, or none")
    options = parser.parse_args()
    if options.kind == "tool":
        assert options.reports is not None, "tool needs --reports"
        report = tool(options.url, options.csv, options.concurrency, options.reports, options.profile,
                      options.journal)
    else:
        rows = read_rows(options.csv, options.limit)
        import aiohttp  # noqa: F401  (imports outside the clock)

        profiler = None
        if options.profile:
            from pyinstrument import Profiler

            profiler = Profiler(interval=0.0005, async_mode="disabled")
            profiler.start()
        cpu0, started = cpu(), time.perf_counter()
        if options.kind == "sequential":
            errors = sequential(options.url, rows, options.concurrency)
        elif options.kind == "httpx-threads":
            errors = httpx_threads(options.url, rows, options.concurrency)
        elif options.kind == "bare-socket":
            errors = bare_socket(options.url, rows, options.concurrency)
        elif options.kind == "httpx-async":
            errors = asyncio.run(httpx_async(options.url, rows, options.concurrency))
        else:
            errors = asyncio.run(raw_aiohttp(options.url, rows, options.concurrency))
        report = {"rows": len(rows), "seconds": time.perf_counter() - started, "cpu_s": cpu() - cpu0,
                  "errors": errors}
        if profiler is not None:
            profiler.stop()
            print(f"\n== pyinstrument: {options.kind}, for reference (main thread, wall clock) ==\n"
                  + profiler.output_text(unicode=False, color=False, processor_options={"filter_threshold": 0.02}))
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    sys.exit(main())
