"""The page's words for the sentences it shares with the command line.

The library's sentences name the CLI's flags (`--column notes=HEADER`, `--retry-unknown`, `--force`). The
page offers the same choices as controls, or not at all, so where it shows such a sentence it names the
control instead, or leaves the flag out. The results workbook keeps the library's words: it is the same
file `run` writes. A sentence this table does not know is shown as it is.
"""

from __future__ import annotations

import re

_PAGE = [
    (re.compile(r",? or name (?:it|them) with --column \w+=HEADER"), ", or choose the column below"),
    (re.compile(r",? or choose one with --column \w+=HEADER"), ", or choose one below"),
    (re.compile(r" \(choose another with --column \w+=HEADER\)"), ""),
    (re.compile(r"name the notes column with --column notes=HEADER, or pass --no-notes if the calls are meant to be "
                r"sent with empty notes"),
     "choose the notes column on the columns screen, or tick “There is no notes column” there if the calls are "
     "meant to be sent with empty notes"),
    (re.compile(r" \(--no-notes\)"), ""),
    (re.compile(r" \(a --dispositions list makes the names binding\)"), ""),
    (re.compile(r",? or re-run with --retry-unknown"), ", then record what you saw under History"),
    (re.compile(r": --force would send it again"), " (it is not sent again)"),
    (re.compile(r"; --force would send them"), ""),
    (re.compile(r"then record it: batch-dispose resolve \S+ --as disposed \(or --as failed to send it again\)"),
     "then record what you saw under History"),
    (re.compile(r"^the ledger .+? has no record of (\S+) yet: every row not disposed is sent$"),
     r"No earlier run to \1 is recorded, so no row was skipped as sent before."),
]


def for_page(text: str) -> str:
    """`text` in the page's words (see the module docstring)."""
    for pattern, words in _PAGE:
        text = pattern.sub(words, text)
    return text
