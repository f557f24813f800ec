"""The command line: parse, call the library, print, map to an exit code. No behaviour lives here."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

from . import __version__
from .errors import BatchDisposeError, InputFileError, LedgerWriteError, LockHeldError, RunLogError, UsageError
from .models import ExitCode, FileResult

EXIT_CODES_HELP = """exit codes:
  0   every row disposed or skipped
  1   some rows failed, invalid, pending or unknown (sweep: or a file was rejected)
  2   usage error or unusable input: nothing was sent
  3   the server rejected the access token
  75  another run holds the ledger's lock
  130 a second Ctrl-C: stopped at once, no workbook written

The access token comes from the environment variable RYNG_ACCESS_TOKEN or from --token-file,
never from the command line."""


class _Parser(argparse.ArgumentParser):
    """argparse with exit code 2 for usage errors (as documented) and no abbreviations."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        kwargs.setdefault("epilog", EXIT_CODES_HELP)  # every command's --help ends with the exit codes
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="batch-dispose", description="Apply call dispositions to the Ryng dialer from a "
                     "spreadsheet (CSV, XLSX, XLS, ODS).")
    parser.add_argument("--version", action="version", version=f"batch-dispose {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)

    run = commands.add_parser("run", help="send the rows of one or more files",
                              description="Validate each FILE, send its valid rows to Ryng, and write a results "
                              "workbook per file. A results workbook given back sends only what is left.")
    run.add_argument("files", nargs="+", type=Path, metavar="FILE")
    _add_run_options(run)

    validate = commands.add_parser("validate", help="check files and show the requests, send nothing",
                                   description="A dry run: write the results workbook (invalid / ready) and "
                                   "show a few of the exact requests, token masked.")
    validate.add_argument("files", nargs="+", type=Path, metavar="FILE")
    _add_target_options(validate)
    validate.add_argument("--reports-dir", type=Path, metavar="DIR", help="where workbooks go (default: reports/)")
    validate.add_argument("--dispositions", type=Path, metavar="FILE", help="allowed disposition names, one a line")
    _add_common(validate)

    sweep = commands.add_parser("sweep", help="run every spreadsheet in a folder, then file it (for cron)",
                                description="Each .csv/.xlsx/.xls/.ods in INBOX (not hidden, not changed in "
                                "the last 10 s) is run in name order, then moved to "
                                "INBOX/done/, or to INBOX/rejected/ with NAME.reason.txt if it cannot be used. "
                                "A file whose run stopped early (token rejected, server unavailable, "
                                "interrupted) stays in the inbox for the next sweep.")
    sweep.add_argument("inbox", type=Path, metavar="INBOX")
    _add_run_options(sweep)

    config = commands.add_parser("config", help="show the settings in effect and where each came from",
                                 description="Prints every setting after flags, batch-dispose.toml and defaults "
                                 "are combined, with its source. The token is shown only as set or not set.")
    _add_run_options(config)

    simulate = commands.add_parser("simulate", help="run the built-in fake Ryng server on loopback",
                                   description="A fake Ryng End Preview Call API on 127.0.0.1, for trying the "
                                   "tool and for tests. Runs until Ctrl-C.")
    simulate.add_argument("--port", type=int, default=8765, help="port (default: 8765; 0 picks a free one)")
    simulate.add_argument("--latency-ms", type=float, default=0.0, help="delay before each answer (default: 0)")
    simulate.add_argument("--jitter-ms", type=float, default=0.0, help="latency varies by +/- this (default: 0)")
    simulate.add_argument("--fail-rate", type=float, default=0.0, help="fraction answered 500 (default: 0)")
    simulate.add_argument("--fail-ids", default="", metavar="IDS", help="comma-separated callIDs answered 500")
    simulate.add_argument("--status-mix", default="", metavar="MIX", help="e.g. 429:0.05,503:0.02,502:0.01")
    simulate.add_argument("--rate-limit", type=int, default=None, metavar="N", help="answer 429 above N requests/s")
    simulate.add_argument("--hang-rate", type=float, default=0.0, help="fraction never answered (default: 0)")
    simulate.add_argument("--reset-rate", type=float, default=0.0, help="fraction reset after reading (default: 0)")
    simulate.add_argument("--html-rate", type=float, default=0.0, help="fraction answered 502 with HTML (default: 0)")
    simulate.add_argument("--repeat-fails", action="store_true", help="a second end-call for a callID answers 500")
    simulate.add_argument("--seed", type=int, default=None, help="seed for the random faults")
    simulate.add_argument("--token", default="simulator-token", help="the token it accepts (default: simulator-token)")

    history = commands.add_parser("history", help="what the ledger knows about call IDs or a run",
                                  description="Answers 'did call X go through?': each call ID's state on each "
                                  "Ryng host and every recorded outcome (when, which run, which file and row). "
                                  "With no call ID, lists the recent runs.")
    history.add_argument("call_ids", nargs="*", metavar="CALLID")
    history.add_argument("--run", type=int, metavar="N", help="every outcome recorded by run N")
    history.add_argument("--ledger", type=Path, metavar="PATH", help="the ledger (default: reports/ledger.sqlite)")
    history.add_argument("--reports-dir", type=Path, metavar="DIR", help=argparse.SUPPRESS)
    history.add_argument("--config", type=Path, metavar="FILE", help="settings file (default: ./batch-dispose.toml)")
    history.add_argument("--json", action="store_true", help="print JSON instead of text")
    history.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)

    demo = commands.add_parser("demo", help="the simulator and sample_data/ through `run`, end to end",
                               description="Starts the simulator on a free loopback port (two calls set to "
                               "fail), runs sample_data/end_of_day.xlsx through `run` and checks the outcome.")
    demo.add_argument("--reports-dir", type=Path, default=Path("reports"), metavar="DIR",
                      help="where the workbook goes (default: reports/)")
    demo.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)
    return parser


def _add_target_options(parser: argparse.ArgumentParser) -> None:
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--subdomain", metavar="NAME", help="your Ryng account: NAME.ryng.in")
    target.add_argument("--base-url", metavar="URL", help="another address (the simulator, a proxy)")


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, metavar="FILE", help="settings file (default: ./batch-dispose.toml)")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout, nothing else")
    parser.add_argument("--quiet", action="store_true", help="no progress output; the summary only")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for expected errors too")


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    _add_target_options(parser)
    parser.add_argument("--concurrency", type=int, metavar="N", help="requests in flight (default: 8)")
    parser.add_argument("--rate", type=float, metavar="PER_SEC", help="at most this many requests a second "
                        "(default: no limit)")
    parser.add_argument("--timeout", type=float, metavar="SEC", help="read timeout per request (default: 30)")
    parser.add_argument("--retries", type=int, metavar="N", help="extra attempts when the server is busy "
                        "(default: 3)")
    parser.add_argument("--reports-dir", type=Path, metavar="DIR", help="where workbooks go (default: reports/)")
    parser.add_argument("--ledger", type=Path, metavar="PATH", help="the ledger (default: REPORTS_DIR/ledger.sqlite)")
    parser.add_argument("--dispositions", type=Path, metavar="FILE", help="allowed disposition names, one a line")
    parser.add_argument("--token-file", type=Path, metavar="FILE", help="read the token from FILE "
                        "(default: the RYNG_ACCESS_TOKEN environment variable)")
    parser.add_argument("--strict", action="store_true", help="send nothing if any row is invalid")
    parser.add_argument("--force", action="store_true", help="send rows even if already disposed")
    parser.add_argument("--retry-unknown", action="store_true", help="re-send rows left unknown by earlier runs")
    _add_common(parser)


def main(argv: Sequence[str] | None = None, *, stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    """Run one command; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    out, err = stdout or sys.stdout, stderr or sys.stderr
    if argv[:1] != ["simulate"] and any(arg == "--token" or arg.startswith("--token=") for arg in argv):
        print("batch-dispose: the token is never taken from the command line (it would show in shell history "
              "and process lists); set RYNG_ACCESS_TOKEN or use --token-file FILE.", file=err)
        return ExitCode.USAGE
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help, --version, or a usage error
        return int(exc.code or 0)
    command: Callable[[argparse.Namespace, TextIO, TextIO], int] = COMMANDS[args.command]
    try:
        return command(args, out, err)
    except BatchDisposeError as exc:
        if getattr(args, "debug", False):
            raise
        if getattr(args, "json", False):
            several = args.command == "sweep" or len(getattr(args, "files", ())) > 1  # the sweep shape
            shape: dict[str, object] = {"files": []} if several else {}
            print(json.dumps({**shape, "error": str(exc), "exit_code": _code_for(exc)}), file=out)
        print(f"batch-dispose: {exc}", file=err)
        return _code_for(exc)


def _code_for(exc: BatchDisposeError) -> int:
    if isinstance(exc, LockHeldError):
        return ExitCode.LOCKED
    if isinstance(exc, LedgerWriteError | RunLogError):  # some rows may have been sent: not "nothing was sent"
        return ExitCode.ROWS_LEFT
    return ExitCode.USAGE


def _settings(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from .config import check_limit, resolve

    flags = {key: getattr(args, key, None) for key in (
        "subdomain", "base_url", "token_file", "reports_dir", "ledger", "dispositions", "concurrency", "rate",
        "timeout", "retries", "strict", "force", "retry_unknown")}
    for key in ("concurrency", "rate", "timeout", "retries"):
        value = flags[key]
        if value is not None:
            check_limit(key, value, f"--{key}")
    return resolve(flags, config=args.config, cwd=Path.cwd())


def _run_setup(args: argparse.Namespace, err: TextIO):  # type: ignore[no-untyped-def]
    """Settings with a target, and the token (warnings about it printed)."""
    from .credentials import load_token

    settings = _settings(args)
    if settings.base_url is None:
        raise UsageError("Say which Ryng account to use: --subdomain NAME (or --base-url URL, or base_url in "
                         "batch-dispose.toml).")
    token, warnings = load_token(token_file=settings.token_file)
    for warning in warnings:
        print(f"warning: {warning}", file=err)
    return settings, token


def _run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from .job import run_files
    from .progress import Watch, print_lines, reporter_for, summary_lines

    settings, token = _run_setup(args, err)
    reporter = Watch(reporter_for(err, quiet=args.quiet))
    results = _with_signals(err, lambda stop: run_files(  # each file's summary as soon as that file ends
        args.files, settings, token, reporter=reporter, stop=stop,
        after_file=lambda result: print_lines(summary_lines(result), err)), describe=reporter.stopping_line)
    return _report(results, args, out, several=len(args.files) > 1)


def _sweep(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from .progress import Watch, print_lines, reporter_for, summary_lines
    from .sweep import sweep

    settings, token = _run_setup(args, err)
    reporter = Watch(reporter_for(err, quiet=args.quiet))
    swept = _with_signals(err, lambda stop: sweep(args.inbox, settings, token, reporter=reporter, stop=stop),
                          describe=reporter.stopping_line)
    for item in swept.files:
        print_lines(summary_lines(item.result), err)
        if item.moved_to is not None:
            print(f"moved to: {item.moved_to}", file=err)
    if swept.waiting:
        print(f"left for the next sweep (changed in the last 10 s): {', '.join(p.name for p in swept.waiting)}",
              file=err)
    if not swept.files and not args.quiet:
        print(f"{args.inbox}: no files to run", file=err)
    code = swept.exit_code
    if args.json:
        print(json.dumps({"files": [file_json(item.result, item.moved_to) for item in swept.files],
                          "waiting": [str(path) for path in swept.waiting], "exit_code": int(code)}), file=out)
    return int(code)


def _config(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from .credentials import ENV_VAR

    settings = _settings(args)
    if settings.token_file is not None:
        token = f"from the file {settings.token_file} ({'present' if settings.token_file.is_file() else 'MISSING'})"
    else:
        token = f"set in {ENV_VAR}" if os.environ.get(ENV_VAR, "").strip() else f"NOT SET ({ENV_VAR} is empty)"
    rows = [(name, value, settings.sources.get(name, "default")) for name, value in settings.described()]
    if args.json:
        print(json.dumps({"settings": {name: {"value": value, "source": source} for name, value, source in rows},
                          "token": token}), file=out)
        return ExitCode.OK
    width = max(len(name) for name, _, _ in rows)
    for name, value, source in rows:
        print(f"{name:<{width}}  {value}   ({source})", file=out)
    print(f"{'token':<{width}}  {token}", file=out)
    return ExitCode.OK


def _validate(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from .job import validate_file
    from .progress import print_lines, summary_lines

    settings = _settings(args)
    results: list[FileResult] = []
    for path in args.files:
        try:
            result, previews = validate_file(path, settings)
        except InputFileError as exc:
            if len(args.files) == 1:
                raise
            result, previews = FileResult.unusable(path, str(exc)), []
        results.append(result)
        print_lines(summary_lines(result), err)
        if previews and not args.quiet:
            print_lines([f"The first {len(previews)} request{'s' if len(previews) > 1 else ''} "
                         f"(token masked; nothing was sent):", *("\n" + text for text in previews), ""], err)
    return _report(results, args, out, several=len(args.files) > 1)


def _report(results: list[FileResult], args: argparse.Namespace, out: TextIO, *, several: bool) -> int:
    """Print --json if asked, and return the exit code (one file: its own; several: sweep's rule)."""
    if not several and results[0].error is not None:
        if args.json:
            print(json.dumps({"error": results[0].error, "exit_code": ExitCode.USAGE}), file=out)
        return ExitCode.USAGE
    from .job import combined_exit_code

    code = results[0].exit_code if not several else combined_exit_code(results)
    if args.json:
        files = [file_json(result) for result in results]
        print(json.dumps({"files": files, "exit_code": int(code)} if several else
                         {key: files[0][key] for key in ("results", "rows", "counts", "duration_s")}
                         | {"exit_code": int(code)}), file=out)
    return int(code)


def file_json(result: FileResult, moved_to: Path | None = None) -> dict[str, Any]:
    return {
        "file": str(result.input_path),
        "moved_to": str(moved_to) if moved_to else None,
        "results": str(result.results_path) if result.results_path else None,
        "rows": result.rows,
        "counts": {str(status): count for status, count in result.counts.items()},
        "duration_s": round(result.duration_s, 3),
        "exit_code": int(result.exit_code),
        **({"error": result.error} if result.error else {}),
    }


def _with_signals(err: TextIO, start: Callable[[asyncio.Event], Any],
                  describe: Callable[[], str] | None = None) -> Any:
    """Run a coroutine with Ctrl-C / SIGTERM handled: first stops gracefully (saying what it waits for,
    from `describe`), second exits at once."""
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    received = 0

    def on_signal(number: int, frame: object) -> None:
        nonlocal received
        received += 1
        if received == 1:
            line = describe() if describe is not None else ("stopping: no new requests; waiting for those in "
                                                            "flight (Ctrl-C again to quit at once)")
            print(f"\nbatch-dispose: {line}", file=err, flush=True)
            loop.call_soon_threadsafe(stop.set)
        else:
            print("batch-dispose: quit at once; the ledger keeps every recorded outcome", file=err, flush=True)
            os._exit(ExitCode.ABORTED)

    in_main_thread = threading.current_thread() is threading.main_thread()
    numbers = (signal.SIGINT, signal.SIGTERM) if in_main_thread else ()
    previous = {number: signal.signal(number, on_signal) for number in numbers}
    try:
        return loop.run_until_complete(start(stop))
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


def _simulate(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from .simulator import SimConfig, parse_status_mix, serve

    try:
        mix = parse_status_mix(args.status_mix) if args.status_mix else {}
    except ValueError as exc:
        raise UsageError(f"--status-mix: {exc}") from None
    config = SimConfig(token=args.token, latency_ms=args.latency_ms, jitter_ms=args.jitter_ms,
                       fail_rate=args.fail_rate, fail_ids=frozenset(filter(None, args.fail_ids.split(","))),
                       status_mix=mix, rate_limit=args.rate_limit, hang_rate=args.hang_rate,
                       reset_rate=args.reset_rate, html_rate=args.html_rate, repeat_fails=args.repeat_fails,
                       seed=args.seed)

    def ready(base_url: str) -> None:
        print(f"Ryng simulator listening on {base_url}\n"
              f"  token: {args.token}\n"
              f"  try:   RYNG_ACCESS_TOKEN={args.token} batch-dispose run sample_data/end_of_day.csv "
              f"--base-url {base_url}\n"
              f"Ctrl-C to stop.", file=out, flush=True)

    try:
        asyncio.run(serve(config, port=args.port, on_ready=ready))
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        raise UsageError(f"the simulator cannot listen on port {args.port} ({exc.strerror}); "
                         f"try another --port") from None
    return ExitCode.OK


def _history(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from dataclasses import asdict

    from .ledger import Ledger

    path = _settings(args).ledger_path
    if not path.is_file():
        raise UsageError(f"There is no ledger at {path} yet: nothing has been sent with it.")
    with Ledger.open(path, lock=False) as ledger:
        if args.run is not None or args.call_ids:
            events = ([*ledger.events(run_id=args.run)] if args.run is not None else [])
            states = {call_id: ledger.state(call_id) for call_id in args.call_ids}
            for call_id in args.call_ids:
                events += ledger.events(call_id=call_id)
            if args.json:
                print(json.dumps({"calls": {c: [dict(zip(("host", "status", "disposed_at"), s, strict=True))
                                                for s in rows] for c, rows in states.items()},
                                  "events": [asdict(event) for event in events]}), file=out)
                return ExitCode.OK
            for call_id, rows in states.items():
                if not rows:
                    print(f"{call_id}: the ledger has no record of this call ID", file=out)
                for host, status, disposed_at in rows:
                    when = f" (disposed at {disposed_at})" if disposed_at else ""
                    print(f"{call_id} on {host}: {status}{when}", file=out)
            for e in events:
                code = f" ({e.http_status})" if e.http_status else ""
                print(f"  {e.at}  run {e.run_id}  {Path(e.file).name} row {e.row}  {e.call_id}: "
                      f"{e.status}{code}  {e.message}", file=out)
            return ExitCode.OK
        runs = ledger.runs()
        if args.json:
            print(json.dumps({"runs": [dict(zip(("id", "host", "file", "started_at", "finished_at", "counts"), run,
                                                strict=True)) for run in runs]}), file=out)
            return ExitCode.OK
        for run_id, host, file, started_at, finished_at, counts in runs:
            print(f"run {run_id}  {started_at}  {Path(file).name} -> {host}  "
                  f"{counts or 'did not finish: ' + str(finished_at)}", file=out)
    return ExitCode.OK


def _demo(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from .demo import run_demo

    return run_demo(reports_dir=args.reports_dir, out=out, err=err)


COMMANDS: dict[str, Callable[[argparse.Namespace, TextIO, TextIO], int]] = {
    "run": _run,
    "validate": _validate,
    "sweep": _sweep,
    "config": _config,
    "simulate": _simulate,
    "history": _history,
    "demo": _demo,
}
