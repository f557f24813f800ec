"""The words of `--help`: each command's exit codes and notes, wrapped to the terminal's width.

`cli.py` builds the parsers; this module holds the longer texts they end with, so that a command
added to `cli.py` gets its exit codes by adding one entry to `EXIT_CODES`.
"""

from __future__ import annotations

import argparse
import re
import textwrap

#: What each command does, the paragraph under its usage line ("" is `batch-dispose --help`'s).
DESCRIPTIONS = {
    "": "Apply call dispositions to the Ryng dialer from a spreadsheet (CSV, XLSX, XLS, ODS): every row "
        "checked, sent concurrently, never twice, and reported back row by row in a results workbook.",
    "run": "Checks each FILE, sends its valid rows to Ryng and writes a results workbook per file. A call the "
           "ledger has as disposed on that Ryng host is not sent again (unless --force). Several files run one "
           "after another.",
    "validate": "A dry run: checks each FILE as `run` would and writes its workbook (ready / invalid; with a "
                "target, --subdomain, --base-url or base_url in the config, rows the ledger has as disposed show "
                "as skipped), then shows the first requests exactly as they would be sent, token masked. Sends "
                "nothing.",
    "sweep": "Each .csv/.xlsx/.xls/.ods in INBOX (not hidden, not changed in the last 10 s) is run in name order, "
             "then moved to INBOX/done/, or to INBOX/rejected/ with NAME.reason.txt if it cannot be used. A file "
             "whose run stopped early (token rejected, server unavailable, interrupted) stays in the inbox for the "
             "next sweep. For cron.",
    "resolve": "For calls left unknown: after checking them in Ryng, record whether each was disposed. --as "
               "disposed: later runs skip it; --as failed: later runs send it again. The ledger's history keeps who "
               "(your user name), when and why (--note).",
    "config": "Prints every setting after flags, batch-dispose.toml and defaults are combined, with where it came "
              "from, then checks what a run will need: the token (a file that is readable and private, or "
              "RYNG_ACCESS_TOKEN), the dispositions file, the ledger's folder (and the ledger, if it exists), the "
              "reports folder and the Ryng account. Each check says ok, or what is wrong and how to fix it. Give "
              "it the options and --config of the cron line, as the user cron runs as. The token is never shown.",
    "simulate": "A fake Ryng End Preview Call API on 127.0.0.1, for trying the tool and for tests. Runs until "
                "Ctrl-C.",
    "history": "Answers 'did call X go through?': each call ID's state on each Ryng host, what was sent, and "
               "every recorded outcome (when, which run, which file and row). With no call ID, lists the recent "
               "runs with their counts. Reads the ledger without waiting for a run that is using it.",
    "serve": "The ops page: a web page for the same work as `run`. Upload a file, see what was understood and "
             "what is wrong, fix cells, send with live progress, stop, download the results workbook, see the "
             "history. Prints 'serving on http://HOST:PORT/' once listening. Any --host other than loopback needs "
             "a passcode (--passcode-file or BATCH_DISPOSE_PASSCODE). The token stays on the server.",
    "demo": "Starts the simulator on a free loopback port (two calls set to fail), runs "
            "sample_data/end_of_day.xlsx through `run` and checks the outcome.",
}

#: Each command's own exit codes, in the order `--help` lists them. A command not named here (and the
#: top-level `batch-dispose --help`) shows the full table, `ALL`.
ALL = "*"
EXIT_CODES: dict[str, tuple[tuple[int, str], ...]] = {
    ALL: (
        (0, "every row disposed or skipped"),
        (1, "some rows failed, invalid, pending or unknown (sweep: or a file was moved to rejected/)"),
        (2, "usage error or unusable input: nothing was sent"),
        (3, "the server rejected the access token"),
        (75, "another run holds the ledger's lock; try again later"),
        (130, "a second Ctrl-C: stopped at once, no workbook written"),
    ),
    "run": (
        (0, "every row disposed or skipped"),
        (1, "some rows failed, invalid, pending or unknown (several files: or a file could not be used)"),
        (2, "usage error or unusable input: nothing was sent"),
        (3, "the server rejected the access token"),
        (75, "another run holds the ledger's lock; nothing was sent, try again later"),
        (130, "a second Ctrl-C: stopped at once, no workbook written"),
    ),
    "sweep": (
        (0, "every file ended 0, or the inbox had nothing to run"),
        (1, "a file had rows left (failed, invalid, pending, unknown) or was moved to rejected/"),
        (2, "usage error of sweep itself (a bad option, config or token setup): nothing was sent"),
        (3, "the server rejected the access token; the file stays in the inbox"),
        (75, "another run holds the ledger's lock; this sweep did nothing"),
        (130, "a second Ctrl-C: stopped at once, no workbook written"),
    ),
    "validate": (
        (0, "every row is ready (or already disposed)"),
        (1, "some rows are invalid (with several files: or a file cannot be used)"),
        (2, "usage error, or the file cannot be used at all"),
    ),
    "history": (
        (0, "answered (a call ID the ledger does not know is answered too, in one line)"),
        (2, "usage error, no ledger yet, or a ledger that cannot be read"),
    ),
    "config": (
        (0, "every check passed"),
        (1, "a check failed: its line says what is wrong and how to fix it"),
        (2, "usage error, or a config file that cannot be read"),
    ),
    "simulate": (
        (0, "stopped with Ctrl-C"),
        (2, "usage error, or the port cannot be used"),
    ),
    "demo": (
        (0, "the demo behaved as expected"),
        (1, "it did not behave as expected"),
        (2, "usage error, or sample_data/ not found"),
    ),
    "resolve": (
        (0, "recorded"),
        (2, "usage error, or a call ID the ledger does not know"),
        (75, "a run holds the ledger's lock; try again when it has finished"),
    ),
    "serve": (
        (0, "stopped (Ctrl-C or SIGTERM)"),
        (2, "usage error, e.g. a --host other than loopback without a passcode"),
    ),
}

COLUMNS = (
    "Columns: callID, logID, disposition and notes, matched ignoring case, spaces, _ and - "
    "(disposition also as dispositionName; notes also under the names CRM exports use, such as Remarks, "
    "Comments and Call Notes). --column FIELD=HEADER maps a column explicitly, e.g. --column notes=Remarks. "
    "A file without a notes column is sent only with --no-notes (empty notes meant). "
    "Other columns are carried into the results workbook, never sent."
)
GIVEN_BACK = ("A results workbook can be given back as FILE: rows already disposed are not sent again, the rest "
              "are checked again and sent.")
DROPPED_BACK = ("A results workbook dropped into INBOX is run like any file: rows already disposed are not sent "
                "again, the rest are checked again and sent.")
TOKEN_NOTE = ("The access token comes from the environment variable RYNG_ACCESS_TOKEN or from --token-file "
              "(token_file in the config), never from the command line.")
#: Notes each command's --help shows before its exit codes.
NOTES: dict[str, tuple[str, ...]] = {
    ALL: (TOKEN_NOTE, "batch-dispose COMMAND --help shows each command's options and its own exit codes."),
    "run": (f"{COLUMNS} {GIVEN_BACK}", TOKEN_NOTE),
    "validate": (f"{COLUMNS} {GIVEN_BACK}",),
    "sweep": (f"{COLUMNS} {DROPPED_BACK}", TOKEN_NOTE),
    "config": (TOKEN_NOTE,),
    "serve": (TOKEN_NOTE,),
}


def epilog(command: str | None) -> str:
    """The text `--help` ends with: the command's notes, then its exit codes."""
    key = command if command in EXIT_CODES else ALL
    notes = NOTES.get(command or ALL, ())
    width = max(len(str(code)) for code, _ in EXIT_CODES[key]) + 2
    table = "\n".join(f"  {code:<{width}}{meaning}" for code, meaning in EXIT_CODES[key])
    return "\n\n".join([*notes, "exit codes:\n" + table])


class HelpFormatter(argparse.HelpFormatter):
    """argparse's formatter, wrapping the description and epilog by paragraph (blank-line separated).

    An indented line (a row of the exit code table) is kept on its own line and, when too long,
    wrapped under its own text column.
    """

    def _split_lines(self, text: str, width: int) -> list[str]:
        return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False)  # --token-file stays whole

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        out: list[str] = []
        for paragraph in text.split("\n\n"):
            lines = paragraph.splitlines()
            if any(line[:1].isspace() for line in lines):
                out.append("\n".join(_fill_row(line, width, indent) for line in lines))
            else:
                out.append(textwrap.fill(" ".join(paragraph.split()), width, initial_indent=indent,
                                         subsequent_indent=indent, break_on_hyphens=False))
        return "\n\n".join(out)


_ROW = re.compile(r"^(\s*\S+\s+)")


def _fill_row(line: str, width: int, indent: str) -> str:
    """One line of a table, `  75  meaning…`, continued under `meaning` when it does not fit."""
    lead = _ROW.match(line) if line[:1].isspace() else None
    if lead is None:
        return textwrap.fill(line.strip(), width, initial_indent=indent, subsequent_indent=indent,
                             break_on_hyphens=False)
    head = lead.group(1)
    return textwrap.fill(line[len(head):], width, initial_indent=indent + head,
                         subsequent_indent=indent + " " * len(head), break_on_hyphens=False)
