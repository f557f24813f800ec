"""The row rules: one pandera schema, and the sentences a person reads when a row breaks one.

`validate(table)` normalises the four fields (trimming, full-width digits, `87278.0`), checks every
row against `row_schema()` in one lazy pass, and turns pandera's failure cases into one plain message
per invalid row ("logID '87278.5' is not a whole number"). Valid rows become `CallRequest`s.
"""

from __future__ import annotations

import difflib
import functools
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd
import pandera.pandas as pa

from .loading import KIND_BOOL, KIND_DATE, Table
from .models import CallRequest

CALL_ID_MAX = 64
NOTES_MAX = 32_767  # the most text one Excel cell holds
LOG_ID_MAX = 2**63 - 1
CALL_ID_CHARS = re.compile(r"[A-Za-z0-9_-]*")
ROUNDED = r"[+-]?\d+(?:[.,]\d+)?[eE][+-]\d+"  # how a spreadsheet shows a number it rounded: 1.23457E+16
WHOLE = r"[+-]?\d+(?:\.0+)?"
NOT_POSITIVE = r"-\d+(?:\.0+)?|\+?0+(?:\.0+)?"
THOUSANDS = re.compile(r"\d{1,3}(?:,\d{3})+(?:\.0+)?")


#: Check name -> the sentence for a row that fails it. `{value}` is the cell, trimmed and shortened.
MESSAGES = {
    "callID.blank": "callID is blank (or the cell holds an error such as #N/A); fill in the call's ID",
    "callID.date": "callID {value} is a date, not a call ID; format the callID column as Text and type the IDs again",
    "callID.bool": "callID {value} is TRUE/FALSE, not a call ID; type the call's ID",
    "callID.rounded": "callID {value} was rounded by the spreadsheet (more than 15 digits); "
    "format the callID column as Text and type the IDs again",
    "callID.long": "callID is {length} characters long; a call ID has at most 64",
    "callID.chars": "callID {value} has {char}, which a call ID cannot hold; use only letters, digits, _ and -",
    "callID.duplicate": "callID {value} is a duplicate of row {first}; each call is sent once, from its first row",
    "logID.blank": "logID is blank (or the cell holds an error such as #N/A); fill in the log ID",
    "logID.date": "logID {value} is a date, not a log ID; format the logID column as Number and type the IDs again",
    "logID.bool": "logID {value} is TRUE/FALSE, not a log ID; type the log ID",
    "logID.rounded": "logID {value} was rounded by the spreadsheet (more than 15 digits); "
    "format the logID column as Text and type the IDs again",
    "logID.whole": "logID {value} is not a whole number{hint}",
    "logID.positive": "logID {value} is not a positive whole number",
    "logID.large": "logID {value} is too large for a log ID",
    "disposition.blank": "disposition is blank (or the cell holds an error such as #N/A); fill in a disposition "
    "such as Interested",
    "disposition.allowed": "disposition {value} is not in the dispositions list{suggestion}",
    "notes.long": "notes are {length:,} characters long (as Excel counts them); at most 32,767 fit in a cell, "
    "so shorten them",
}
# When one field breaks several rules, the first in this order is the one reported.
PRIORITY = {name: position for position, name in enumerate(MESSAGES)}


@dataclass(frozen=True)
class Validation:
    """The verdict on every row of a table: a message for each invalid row, requests for the rest."""

    messages: dict[int, str]  # table row index -> why the row is invalid
    requests: list[CallRequest]  # the valid rows, in input order


def row_schema(allowed: Sequence[str] | None = None) -> pa.DataFrameSchema:
    """The row rules for a normalised frame (see `normalize`), as one pandera schema."""

    def check(name: str, rule) -> pa.Check:  # type: ignore[no-untyped-def]
        return pa.Check(rule, error=name)

    disposition_checks = [check("disposition.blank", lambda s: s != "")]
    if allowed is not None:
        folded = {name.casefold() for name in allowed}
        disposition_checks.append(
            check("disposition.allowed", lambda s: (s == "") | s.str.casefold().isin(folded))
        )
    return pa.DataFrameSchema(
        {
            "callID": pa.Column(checks=[
                check("callID.blank", lambda s: s != ""),
                check("callID.rounded", lambda s: ~s.str.fullmatch(ROUNDED)),
                check("callID.long", lambda s: s.str.len() <= CALL_ID_MAX),
                check("callID.chars", lambda s: s.str.fullmatch(CALL_ID_CHARS.pattern)),
                check("callID.duplicate", lambda s: (s == "") | ~s.duplicated(keep="first")),
            ]),
            "callID_kind": pa.Column(checks=[
                check("callID.date", lambda s: s != KIND_DATE),
                check("callID.bool", lambda s: s != KIND_BOOL),
            ]),
            "logID": pa.Column(checks=[
                check("logID.blank", lambda s: s != ""),
                check("logID.rounded", lambda s: ~s.str.fullmatch(ROUNDED)),
                check("logID.whole", lambda s: (s == "") | s.str.fullmatch(WHOLE)),
                check("logID.positive", lambda s: ~s.str.fullmatch(NOT_POSITIVE)),
                check("logID.large", _fits_int64),
            ]),
            "logID_kind": pa.Column(checks=[
                check("logID.date", lambda s: s != KIND_DATE),
                check("logID.bool", lambda s: s != KIND_BOOL),
            ]),
            "disposition": pa.Column(checks=disposition_checks),
            "notes": pa.Column(checks=[check("notes.long", lambda s: _excel_length(s) <= NOTES_MAX)]),
        },
        strict=True,
        name="rows",
    )


def normalize(table: Table) -> pd.DataFrame:
    """The four fields as the rules see them: trimmed, full-width forms folded, `12345.0` -> `12345`."""
    def ids(name: str) -> pd.Series:
        cells = pd.Series(table.field_cells(name), dtype=object).str.strip()
        if not cells.map(str.isascii).all():
            cells = cells.str.normalize("NFKC").str.translate(_digits()).str.strip()
        return cells.str.replace(r"^(\d{1,15})\.0+$", r"\1", regex=True)

    return pd.DataFrame({
        "callID": ids("callID"),
        "callID_kind": pd.Series(table.kinds["callID"], dtype=object),
        "logID": ids("logID"),
        "logID_kind": pd.Series(table.kinds["logID"], dtype=object),
        "disposition": pd.Series(table.field_cells("disposition"), dtype=object).str.strip(),
        "notes": pd.Series(table.field_cells("notes"), dtype=object).str.strip(),
    })


def validate(table: Table, allowed: Sequence[str] | None = None) -> Validation:
    """Check every row; invalid rows get one message, valid rows become requests."""
    frame = normalize(table)
    failures: dict[int, dict[str, str]] = {}  # row index -> field -> check name (highest priority)
    try:
        row_schema(allowed).validate(frame, lazy=True)
    except pa.errors.SchemaErrors as exc:
        cases = exc.failure_cases
        unexpected = cases[~cases["check"].isin(MESSAGES.keys())]
        if not unexpected.empty:  # a schema-level problem is a bug of ours, not the user's
            raise RuntimeError(f"row schema failed unexpectedly:\n{unexpected}") from exc
        for index, name in zip(cases["index"], cases["check"], strict=True):
            field = name.split(".")[0]
            held = failures.setdefault(int(index), {})
            if field not in held or PRIORITY[name] < PRIORITY[held[field]]:
                held[field] = name
    first_rows: dict[str, int] = {}
    if any(fields.get("callID") == "callID.duplicate" for fields in failures.values()):
        first_rows = {value: table.rows[index] for index, value in frame["callID"].drop_duplicates().items()}
    messages = {
        index: _sentence(frame.loc[index], fields, first_rows, allowed) for index, fields in sorted(failures.items())
    }
    canonical = {name.casefold(): name for name in allowed} if allowed is not None else None
    requests = []
    for index, (call_id, log_id, disposition, notes) in enumerate(
        zip(frame["callID"], frame["logID"], frame["disposition"], frame["notes"], strict=True)
    ):
        if index in messages:
            continue
        if canonical is not None:
            disposition = canonical[disposition.casefold()]
        requests.append(CallRequest(index=index, row=table.rows[index], call_id=call_id,
                                    log_id=int(log_id.split(".")[0]), disposition=disposition, notes=notes))
    return Validation(messages=messages, requests=requests)


@functools.cache
def _digits() -> dict[int, str]:
    """Decimal digits of every script (Devanagari, Arabic-Indic…) -> 0-9, for the ID columns."""
    return {code: str(unicodedata.digit(chr(code))) for code in range(0x80, 0x110000)
            if unicodedata.category(chr(code)) == "Nd"}


def _excel_length(series: pd.Series) -> pd.Series:
    """Length as Excel counts it (UTF-16 units: an emoji counts twice)."""
    return series.str.len() + series.str.count("[\U00010000-\U0010FFFF]")


def _fits_int64(series: pd.Series) -> pd.Series:
    digits = series.str.split(".").str[0].str.lstrip("+0")
    fits = (digits.str.len() < 19) | ((digits.str.len() == 19) & (digits <= str(LOG_ID_MAX)))
    return ~series.str.fullmatch(WHOLE) | fits


def _sentence(row: pd.Series, fields: dict[str, str], first_rows: dict[str, int],
              allowed: Sequence[str] | None) -> str:
    parts = []
    for field in ("callID", "logID", "disposition", "notes"):
        name = fields.get(field)
        if name is None:
            continue
        value = row[field]
        details = {"value": _quote(value), "length": len(value), "char": "", "first": "", "suggestion": "",
                   "hint": " (remove the thousands separators)" if THOUSANDS.fullmatch(value) else ""}
        if name == "notes.long":
            details["length"] = int(_excel_length(pd.Series([value])).iloc[0])
        if name == "callID.chars":
            details["char"] = _describe_char(next(ch for ch in value if not CALL_ID_CHARS.fullmatch(ch)))
        elif name == "callID.duplicate":
            details["first"] = str(first_rows[value])
        elif name == "disposition.allowed" and allowed is not None:
            details["suggestion"] = suggestion(value, allowed)
        parts.append(MESSAGES[name].format(**details))
    return ". ".join(parts)


def _quote(value: str, limit: int = 40) -> str:
    shown = value if len(value) <= limit else value[: limit - 1] + "…"
    return f"'{shown}'"


def _describe_char(ch: str) -> str:
    if ch == " ":
        return "a space"
    if unicodedata.category(ch) in ("Cc", "Cf", "Zs", "Zl", "Zp", "Co", "Cn", "Cs"):
        return f"an invisible character (U+{ord(ch):04X})"
    return f"the character '{ch}'"


def suggestion(value: str, allowed: Sequence[str]) -> str:
    """`; did you mean 'Interested'?` for a near miss, else ""."""
    folded = {name.casefold(): name for name in allowed}
    close = difflib.get_close_matches(value.casefold(), list(folded), n=1, cutoff=0.75)
    return f" (did you mean '{folded[close[0]]}'?)" if close else ""
