"""The command line: parse, call the library, print, map to an exit code. No behaviour lives here."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from . import __version__
from .errors import BatchDisposeError, InputFileError, LedgerWriteError, LockHeldError, RunLogError, UsageError
from .helptext import DESCRIPTIONS, HelpFormatter, epilog
from .models import ExitCode, FileResult
from .streams import PipeGuard

FILE_HELP = "a spreadsheet (.csv .xlsx .xls .ods), or a results workbook from an earlier run"


class _Parser(argparse.ArgumentParser):
    """argparse with exit code 2 for usage errors (as documented), no abbreviations, and --help that ends
    with the command's own notes and exit codes (helptext.py), wrapped to the terminal's width."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        command = str(kwargs.get("prog") or "").partition(" ")[2] or None  # "batch-dispose run" -> "run"
        kwargs.setdefault("allow_abbrev", False)
        kwargs.setdefault("description", DESCRIPTIONS.get(command or ""))
        kwargs.setdefault("epilog", epilog(command))
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="batch-dispose")
    parser.add_argument("--version", action="version", version=f"batch-dispose {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)

    run = commands.add_parser("run", help="send the rows of one or more files")
    run.add_argument("files", nargs="+", type=Path, metavar="FILE", help=FILE_HELP)
    _add_run_options(run)

    validate = commands.add_parser("validate", help="check files and show the requests, send nothing")
    validate.add_argument("files", nargs="+", type=Path, metavar="FILE", help=FILE_HELP)
    _add_target_options(validate)
    validate.add_argument("--reports-dir", type=Path, metavar="DIR", help="where workbooks go (default: reports/)")
    validate.add_argument("--dispositions", type=Path, metavar="FILE", help="allowed disposition names, one a line")
    validate.add_argument("--ledger", type=Path, metavar="PATH", help="the ledger to consult with a target "
                          "(default: the user's own)")
    _add_input_options(validate)
    _add_common(validate)

    sweep = commands.add_parser("sweep", help="run every spreadsheet in a folder, then file it (for cron)")
    sweep.add_argument("inbox", type=Path, metavar="INBOX", help="the folder the day's exports are dropped into")
    _add_run_options(sweep)

    config = commands.add_parser("config", help="show the settings in effect and check them (for cron)")
    _add_run_options(config)

    simulate = commands.add_parser("simulate", help="run the built-in fake Ryng server on loopback")
    simulate.add_argument("--port", type=int, default=8765, metavar="P", help="port (default: 8765; 0: a free one)")
    for flag, text in (("--latency-ms", "delay before each answer"), ("--jitter-ms", "latency varies by +/- this")):
        simulate.add_argument(flag, type=float, default=0.0, metavar="MS", help=f"{text} (default: 0)")
    for flag, text in (("--fail-rate", "answered 500"), ("--hang-rate", "never answered"),
                       ("--reset-rate", "reset after reading"), ("--html-rate", "answered 502 with HTML")):
        simulate.add_argument(flag, type=float, default=0.0, metavar="F", help=f"fraction {text} (default: 0)")
    simulate.add_argument("--fail-ids", default="", metavar="IDS", help="comma-separated callIDs answered 500")
    simulate.add_argument("--status-mix", default="", metavar="MIX", help="e.g. 429:0.05,503:0.02,502:0.01")
    simulate.add_argument("--rate-limit", type=int, default=None, metavar="N", help="answer 429 above N requests/s")
    simulate.add_argument("--repeat-fails", action="store_true", help="a second end-call for a callID answers 500")
    simulate.add_argument("--seed", type=int, default=None, metavar="N", help="seed for the random faults")
    simulate.add_argument("--token", default="simulator-token", metavar="T",
                          help="the token it accepts (default: simulator-token)")

    history = commands.add_parser("history", help="what the ledger knows about call IDs or a run")
    history.add_argument("call_ids", nargs="*", metavar="CALLID", help="call IDs to look up (none: the recent runs)")
    history.add_argument("--run", type=int, metavar="N", help="the outcomes recorded by run N")
    history.add_argument("--limit", type=_positive, default=20, metavar="N",
                         help="runs listed, or outcomes shown per call or run (default: 20)")
    history.add_argument("--ledger", type=Path, metavar="PATH",
                         help="the ledger (default: the per-user ledger; see `batch-dispose config`)")
    history.add_argument("--reports-dir", type=Path, metavar="DIR", help=argparse.SUPPRESS)
    history.add_argument("--config", type=Path, metavar="FILE", help="settings file (default: ./batch-dispose.toml)")
    history.add_argument("--json", action="store_true", help="print one JSON object on stdout, nothing else")
    history.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)

    resolve = commands.add_parser("resolve", help="record what you checked in Ryng about calls (disposed or not)")
    resolve.add_argument("call_ids", nargs="+", metavar="CALLID", help="the call IDs you checked")
    resolve.add_argument("--as", dest="as_", required=True, choices=("disposed", "failed"),
                         help="disposed: Ryng shows it ended; failed: it was not, send it again")
    resolve.add_argument("--note", default="", metavar="TEXT", help="why (kept in the history)")
    _add_target_options(resolve)
    resolve.add_argument("--ledger", type=Path, metavar="PATH", help="the ledger (default: the user's own)")
    resolve.add_argument("--config", type=Path, metavar="FILE", help="settings file (default: ./batch-dispose.toml)")
    resolve.add_argument("--json", action="store_true", help="print one JSON object on stdout, nothing else")
    resolve.add_argument("--debug", action="store_true", help=argparse.SUPPRESS)

    serve = commands.add_parser("serve", help="the ops page: upload, check, fix, send and watch in a browser")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8080, help="port (default: 8080; 0 picks a free one)")
    serve.add_argument("--passcode-file", type=Path, metavar="FILE", help="the passcode people log in with "
                       "(default: the BATCH_DISPOSE_PASSCODE environment variable)")
    _add_run_options(serve)

    demo = commands.add_parser("demo", help="the simulator and sample_data/ through `run`, end to end")
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
    parser.add_argument("--ledger", type=Path, metavar="PATH",
                        help="the ledger (default: the per-user ledger; see `batch-dispose config`)")
    parser.add_argument("--dispositions", type=Path, metavar="FILE", help="allowed disposition names, one a line")
    parser.add_argument("--token-file", type=Path, metavar="FILE", help="read the token from FILE "
                        "(default: the RYNG_ACCESS_TOKEN environment variable)")
    parser.add_argument("--strict", action="store_true", help="send nothing if any row is invalid")
    parser.add_argument("--force", action="store_true", help="send rows even if already disposed")
    parser.add_argument("--retry-unknown", action="store_true", help="re-send rows left unknown by earlier runs")
    _add_input_options(parser)
    _add_common(parser)


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1 (got {text!r})")
    return int(text)


def _add_input_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--column", action="append", metavar="FIELD=HEADER", dest="columns",
                        help="use the column headed HEADER for FIELD (callID, logID, disposition, notes); repeatable")
    parser.add_argument("--no-notes", action="store_true", help="send a file without a notes column, notes empty")
    parser.add_argument("--call-id-pattern", metavar="REGEX", help="what this account's call IDs look like, "
                        "matched in full (e.g. '\\d+': digits only)")


def main(argv: Sequence[str] | None = None, *, stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    """Run one command; returns the exit code. A reader that goes away (`| head`) ends output quietly."""
    out, err = PipeGuard(stdout or sys.stdout), PipeGuard(stderr or sys.stderr)
    try:
        return _main(list(sys.argv[1:] if argv is None else argv), out, err)  # type: ignore[arg-type]
    except BrokenPipeError:  # not through a guard (a library printing directly): still no traceback
        out.drop()
        return ExitCode.ROWS_LEFT
    finally:
        out.flush()
        err.flush()


def _main(argv: list[str], out: TextIO, err: TextIO) -> int:
    command_at = next((n for n, arg in enumerate(argv) if not arg.startswith("-")), len(argv))
    if any((arg == "--token" or arg.startswith("--token=")) and (n < command_at or argv[command_at] != "simulate")
           for n, arg in enumerate(argv)):  # simulate's --token is the fake server's own
        print("batch-dispose: the token is never taken from the command line (it would show in shell history "
              "and process lists); set RYNG_ACCESS_TOKEN or use --token-file FILE.", file=err)
        return ExitCode.USAGE
    parser = build_parser()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):  # argparse prints to sys.std*
            args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help, --version, or a usage error
        return int(exc.code or 0)
    command: Callable[[argparse.Namespace, TextIO, TextIO], int] = COMMANDS[args.command]
    begun = datetime.now(UTC)
    try:
        return command(args, out, err)
    except BatchDisposeError as exc:
        if getattr(args, "debug", False):
            raise
        if getattr(args, "json", False):
            several = args.command == "sweep" or len(getattr(args, "files", ())) > 1  # the sweep shape
            shape: dict[str, object] = {"files": []} if several else {}
            if args.command == "sweep":  # each night's line says which night it was, a refused one too
                from .workbook import local_time

                shape = {"started_at": local_time(begun), "finished_at": local_time(datetime.now(UTC)), **shape}
            print(json.dumps({**shape, "error": str(exc), "exit_code": _code_for(exc)}), file=out)
        print(f"batch-dispose: {exc}", file=err)
        return _code_for(exc)


def _code_for(exc: BatchDisposeError) -> int:
    if isinstance(exc, LockHeldError):
        return ExitCode.LOCKED
    if isinstance(exc, LedgerWriteError | RunLogError):  # some rows may have been sent: not "nothing was sent"
        return ExitCode.ROWS_LEFT
    return ExitCode.USAGE


def _column_flags(values: list[str]) -> tuple[tuple[str, str], ...]:
    from .config import column_mapping

    pairs = []
    for value in values:
        name, equals, header = value.partition("=")
        if not equals or not name.strip() or not header.strip():
            raise UsageError(f"--column {value}: write FIELD=HEADER, e.g. --column notes=Remarks.")
        pairs.append((name, header))
    return column_mapping(pairs, "--column")


def _settings(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from .config import check_limit, check_pattern, resolve

    flags = {key: getattr(args, key, None) for key in (
        "subdomain", "base_url", "token_file", "reports_dir", "ledger", "dispositions", "concurrency", "rate",
        "timeout", "retries", "strict", "force", "retry_unknown", "no_notes", "call_id_pattern")}
    for key in ("concurrency", "rate", "timeout", "retries"):
        value = flags[key]
        if value is not None:
            check_limit(key, value, f"--{key}")
    flags["columns"] = _column_flags(getattr(args, "columns", None) or [])
    if flags["call_id_pattern"] is not None:
        check_pattern(flags["call_id_pattern"], "--call-id-pattern")
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
    from .models import utc_now
    from .progress import Watch, print_lines, reporter_for, summary_lines
    from .sweep import sweep
    from .workbook import local_time

    settings, token = _run_setup(args, err)
    reporter = Watch(reporter_for(err, quiet=args.quiet))
    started = local_time(utc_now())
    swept = _with_signals(err, lambda stop: sweep(args.inbox, settings, token, reporter=reporter, stop=stop),
                          describe=reporter.stopping_line)
    for item in swept.files:
        print_lines(summary_lines(item.result, swept=True), err)
        if item.moved_to is not None:
            print(f"moved to: {item.moved_to}", file=err)
        elif item.note:
            print(item.note, file=err)
    if swept.waiting:
        print(f"left for the next sweep (changed in the last 10 s): {', '.join(p.name for p in swept.waiting)}",
              file=err)
    if swept.others:
        print(f"not spreadsheets, left alone: {', '.join(p.name for p in swept.others)} (a sweep runs .csv, "
              f".xlsx, .xls and .ods files)", file=err)
    if not swept.files and not args.quiet:
        print(f"{args.inbox}: no files to run", file=err)
    code = swept.exit_code
    if args.json:  # started_at, finished_at: one JSON line a night says which night it was
        print(json.dumps({"started_at": started, "finished_at": local_time(utc_now()),
                          "files": [file_json(item.result, item.moved_to, swept=True)
                                    | ({"note": item.note} if item.note else {})
                                    | ({"stop_reason": item.stopped.value} if item.stopped else {})
                                    for item in swept.files],
                          "waiting": [str(path) for path in swept.waiting],
                          "not_spreadsheets": [str(path) for path in swept.others], "exit_code": int(code)}), file=out)
    return int(code)


def _config(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from .config import find_config
    from .doctor import examine

    setup = examine(_settings(args), config_file=find_config(args.config, Path.cwd()))
    code = ExitCode.OK if setup.ok else ExitCode.ROWS_LEFT  # 1: a check failed
    if args.json:
        print(json.dumps(setup.to_json() | {"exit_code": int(code)}), file=out)
        return code
    print("\n".join(setup.lines()), file=out)
    return code


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
                         {key: files[0][key] for key in ("results", "rows", "counts", "duration_s", "stop_reason",
                                                         "stopped") if key in files[0]}
                         | {"exit_code": int(code)}), file=out)
    return int(code)


def file_json(result: FileResult, moved_to: Path | None = None, *, swept: bool = False) -> dict[str, Any]:
    from .progress import not_run_line, stop_line

    not_run = result.stop_reason is not None and result.results_path is None  # an earlier file stopped the batch
    stopped = (not_run_line(result) if swept else result.error) if not_run else None
    return {
        "file": str(result.input_path),
        "moved_to": str(moved_to) if moved_to else None,
        "results": str(result.results_path) if result.results_path else None,
        "rows": result.rows,
        "counts": {str(status): count for status, count in result.counts.items()},
        "duration_s": round(result.duration_s, 3),
        "exit_code": int(result.exit_code),
        **({"error": result.error} if result.error and not not_run else {}),  # `error`: an unusable file only
        **({"stop_reason": result.stop_reason.value, "stopped": stopped or stop_line(result, swept=swept)}
           if result.stop_reason else {}),
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
    from .history import ask

    settings = _settings(args)
    answer = ask(settings.ledger_path, call_ids=args.call_ids, run_id=args.run, limit=args.limit,
                 old=settings.old_ledger_path)
    print(json.dumps(answer.data) if args.json else "\n".join(answer.lines), file=out)
    return ExitCode.OK


def _resolve(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from .prior import resolve_calls

    done = resolve_calls(_settings(args), args.call_ids, disposed=args.as_ == "disposed", note=args.note)
    if args.json:
        print(json.dumps({"resolved": [{"call_id": r.call_id, "host": r.host, "was": r.before,
                                        "now": "disposed" if r.disposed else "failed", "by": r.who, "note": r.why}
                                       for r in done], "exit_code": 0}), file=out)
    for r in done:
        now = "disposed: later runs skip it" if r.disposed else "not disposed: the next run sends it"
        print(f"{r.call_id} on {r.host}: was {r.before}, recorded as {now} (by {r.who})", file=err)
        if r.confirmed and not r.disposed:  # a mistyped call ID here means a second disposal
            print(f"warning: the server itself had confirmed {r.call_id} disposed; if that call ID was a slip, "
                  f"undo it now: batch-dispose resolve {r.call_id} --as disposed", file=err)
    return ExitCode.OK


def _serve(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from .web import serve
    from .web.security import load_passcode
    from .web.server import require_passcode

    passcode = load_passcode(args.passcode_file)
    require_passcode(args.host, passcode)
    settings, token = _run_setup(args, err)
    return serve(settings, token, host=args.host, port=args.port, passcode=passcode,
                 on_ready=lambda url: print(f"serving on {url}", file=out, flush=True))


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
    "resolve": _resolve,
    "serve": _serve,
    "demo": _demo,
}
