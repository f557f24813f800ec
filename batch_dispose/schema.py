"""The row rules: one pandera schema, and the sentences a person reads when a row breaks one.

`validate(table)` normalises the four fields (trimming, full-width digits, `87278.0`), checks the
rows against `row_schema()` in lazy passes of CHUNK rows (a repeated callID is found through one dict of
first rows across chunks), and turns pandera's failure cases into one plain message per invalid row
("logID '87278.5' is not a whole number"). Valid rows become `CallRequest`s. `RowChecker` judges one
row again after a person edits it, by the same schema and against the rest of the file.
"""

from __future__ import annotations

import difflib
import functools
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pandas as pd
import pandera.pandas as pa

from .calls import Calls
from .loading import KIND_BOOL, KIND_DATE, Table
from .models import Status

CHUNK = 25_000  # rows validated in one pandera pass (its frames are the transient memory of validation)

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
    "callID.pattern": "callID {value} does not look like this account's call IDs (call_id_pattern {pattern}); "
    "check the callID column, or the call_id_pattern setting",
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
    requests: Calls  # the valid rows, in input order (a compact sequence of CallRequests)
    warnings: list[str] = field(default_factory=list)  # about the file as a whole (look-alike dispositions)
    duplicates: set[int] = field(default_factory=set)  # table row indexes whose callID repeats an earlier row's


def row_schema(allowed: Sequence[str] | None = None, call_id_pattern: str | None = None) -> pa.DataFrameSchema:
    """The row rules for a normalised frame (see `normalize`), as one pandera schema.

    `callID_first` is the table index of the first row holding the same callID (-1 when blank)."""

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
                *([check("callID.pattern", lambda s: (s == "") | s.str.fullmatch(call_id_pattern))]
                  if call_id_pattern else []),
            ]),
            "callID_first": pa.Column(int, checks=[
                check("callID.duplicate", lambda s: (s < 0) | (s == s.index)),
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


def normalize(table: Table, start: int = 0, stop: int | None = None,
              first: Mapping[str, int] | None = None, call_ids: pd.Series | None = None) -> pd.DataFrame:
    """Rows start:stop as the rules see them: trimmed, full-width forms folded, `12345.0` -> `12345`.

    `first` maps each repeated callID to the index of its first row (`first_rows`); without it, within the slice."""
    stop = len(table) if stop is None else stop
    index = pd.RangeIndex(start, stop)

    def text(name: str) -> pd.Series:
        return pd.Series(table.field_cells(name)[start:stop], dtype=object, index=index).str.strip()

    def ids(name: str) -> pd.Series:
        return normalize_ids(table.field_cells(name)[start:stop], start)

    if call_ids is None:
        call_ids = ids("callID")
    if first is None:
        first = first_rows(call_ids)
    return pd.DataFrame({
        "callID": call_ids,
        "callID_first": pd.Series([first.get(value, at) if value else -1 for at, value in call_ids.items()],
                                  dtype=int, index=index),
        "callID_kind": pd.Series(table.kinds["callID"][start:stop], dtype=object, index=index),
        "logID": ids("logID"),
        "logID_kind": pd.Series(table.kinds["logID"][start:stop], dtype=object, index=index),
        "disposition": text("disposition"),
        "notes": text("notes"),
    })


def first_rows(call_ids: pd.Series) -> dict[str, int]:
    """Each callID held by more than one row -> the index of its first row (blank callIDs left out).

    pandas finds the repeats in C; only repeated values get a Python dict entry."""
    repeated = call_ids.duplicated(keep="first") & (call_ids != "")
    if not repeated.any():
        return {}
    values = set(call_ids[repeated])
    found: dict[str, int] = {}
    for index, value in call_ids[call_ids.isin(values)].items():
        found.setdefault(value, int(index))  # type: ignore[arg-type]
    return found


def validate(table: Table, allowed: Sequence[str] | None = None, call_id_pattern: str | None = None) -> Validation:
    """Check every row; invalid rows get one message, valid rows become requests."""
    schema = row_schema(allowed, call_id_pattern)
    canonical = {name.casefold(): name for name in allowed} if allowed is not None else None
    messages: dict[int, str] = {}
    duplicates: set[int] = set()
    requests = Calls(table.rows)
    all_ids = normalize_ids(table.field_cells("callID"))  # the same string objects where nothing changed
    first = first_rows(all_ids)
    dispositions: dict[str, int] = {}
    spelled_at: dict[str, list[int]] = {}  # the first rows of each spelling, for the look-alike warning
    dated: list[int] = []  # valid call IDs that read as dates (2026-11-30): a CSV of IDs a spreadsheet dated
    for start in range(0, len(table), CHUNK):
        stop = min(start + CHUNK, len(table))
        frame = normalize(table, start, stop, first, all_ids.iloc[start:stop])
        chunk = _messages(schema, frame, table, first, allowed, call_id_pattern, duplicates)
        messages.update(chunk)
        for index, (call_id, log_id, disposition, notes) in enumerate(
            zip(frame["callID"], frame["logID"], frame["disposition"], frame["notes"], strict=True), start=start
        ):
            if index in chunk:
                continue
            seen = dispositions.get(disposition, 0)
            dispositions[disposition] = seen + 1
            if seen < SHOWN_ROWS:
                spelled_at.setdefault(disposition, []).append(table.rows[index])
            if len(call_id) == 10 and _DATE_ID.fullmatch(call_id):
                dated.append(index)
            if canonical is not None:
                disposition = canonical[disposition.casefold()]
            requests.add(index, call_id, int(log_id.split(".")[0]), disposition, notes)
    warnings = look_alike_dispositions(dispositions, spelled_at) if allowed is None else []
    if dated and call_id_pattern is None:
        warnings.append(_dated_warning(table, all_ids, dated))
    return Validation(messages=messages, requests=requests, warnings=warnings, duplicates=duplicates)


def normalize_ids(cells: Sequence[str], start: int = 0) -> pd.Series:
    """callID cells as the rules compare them (see `normalize`)."""
    series = pd.Series(cells, dtype=object, index=pd.RangeIndex(start, start + len(cells))).str.strip()
    if not series.map(str.isascii).all():
        series = series.str.normalize("NFKC").str.translate(_digits()).str.strip()
    return series.str.replace(r"^(\d{1,15})\.0+$", r"\1", regex=True)


def _messages(schema: pa.DataFrameSchema, frame: pd.DataFrame, table: Table, first: Mapping[str, int],
              allowed: Sequence[str] | None, call_id_pattern: str | None,
              duplicates: set[int] | None = None) -> dict[int, str]:
    """Why each invalid row of `frame` is invalid (one sentence a row); the rows whose callID repeats an
    earlier row's are added to `duplicates`."""
    failures: dict[int, dict[str, str]] = {}  # row index -> field -> check name (highest priority)
    try:
        schema.validate(frame, lazy=True)
    except pa.errors.SchemaErrors as exc:
        cases = exc.failure_cases
        unexpected = cases[~cases["check"].isin(MESSAGES.keys())]
        if not unexpected.empty:  # a schema-level problem is a bug of ours, not the user's
            raise RuntimeError(f"row schema failed unexpectedly:\n{unexpected}") from exc
        for index, name in zip(cases["index"], cases["check"], strict=True):
            field_name = name.split(".")[0]
            held = failures.setdefault(int(index), {})
            if field_name not in held or PRIORITY[name] < PRIORITY[held[field_name]]:
                held[field_name] = name
    rows = {value: table.rows[index] for value, index in first.items()} if failures else {}
    if duplicates is not None:
        duplicates.update(index for index, fields in failures.items() if fields.get("callID") == "callID.duplicate")
    return {index: _sentence(frame.loc[index], fields, rows, allowed, call_id_pattern)
            for index, fields in sorted(failures.items())}


_DATE_ID = re.compile(r"(?:19|20)\d\d-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])"
                      r"|(?:0[1-9]|[12]\d|3[01])-(?:0[1-9]|1[0-2])-(?:19|20)\d\d")


def _dated_warning(table: Table, ids: pd.Series, dated: Sequence[int]) -> str:
    """One warning for valid call IDs that read as dates (only text can get here: a date cell is invalid)."""
    index = dated[0]
    more = f" and {len(dated) - 1:,} more read as dates" if len(dated) > 1 else " reads as a date"
    return (f"callID '{ids.iloc[index]}' (row {table.rows[index]}){more}: a spreadsheet may have "
            f"turned the call IDs into dates, so check them before sending (a call_id_pattern such as \\d+ makes "
            f"such IDs invalid).")


SHOWN_ROWS = 3  # rows named for the rarer of two look-alike spellings


def look_alike_dispositions(counts: Mapping[str, int], rows: Mapping[str, Sequence[int]] | None = None,
                            limit: int = 200) -> list[str]:
    """Warnings for dispositions of one file that look like misspellings of each other
    (`Intrested` beside `Interested`, `Call back` beside `Callback`), each naming both, how many rows each,
    and where the rarer one is (its first rows), so that it can be found and fixed."""
    common = sorted((name for name in counts if name), key=lambda name: -counts[name])[:limit]
    keys = {name: "".join(ch for ch in name.casefold() if ch.isalnum()) for name in common}
    warnings = []
    for n, name in enumerate(common):
        for other in common[n + 1:]:
            a, b = keys[name], keys[other]
            shortest = min(len(a), len(b))
            alike = a == b or (shortest >= 4 and _within(a, b, 1 if shortest < 8 else 2))
            if alike:
                where = (rows or {}).get(other, ())
                at = (f": row{'s' if len(where) > 1 else ''} {', '.join(map(str, where))}"
                      f"{', …' if counts[other] > len(where) else ''}") if where else ""
                warnings.append(f"Dispositions that look alike: '{other}' ({_rows(counts[other])}{at}) beside "
                                f"'{name}' ({_rows(counts[name])}); each is sent as spelled, so check the "
                                f"spelling (a --dispositions list makes the names binding).")
    return warnings


def _within(a: str, b: str, limit: int) -> bool:
    """True when a and b are at most `limit` edits apart (Levenshtein, stopping early)."""
    if abs(len(a) - len(b)) > limit:
        return False
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        current = [i]
        for j, cb in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        if min(current) > limit:
            return False
        previous = current
    return previous[-1] <= limit


def _rows(count: int) -> str:
    return f"{count:,} row{'s' if count != 1 else ''}"


class RowChecker:
    """Judges single rows again after a person edits them: the same schema, the duplicate rule against
    the rest of the file (the current cells of every other row)."""

    def __init__(self, table: Table, allowed: Sequence[str] | None = None, call_id_pattern: str | None = None):
        self.table, self.allowed, self.pattern = table, allowed, call_id_pattern
        self.schema = row_schema(allowed, call_id_pattern)
        self.call_ids = list(normalize_ids(table.field_cells("callID")))

    def check(self, index: int, values: Mapping[str, str] | None = None) -> tuple[Status, str]:
        """(READY, "ready to send") or (INVALID, why) for row `index` with its cells replaced by `values`."""
        cells = {name: self.table.field_cells(name)[index] for name in ("callID", "logID", "disposition", "notes")}
        cells.update(values or {})
        call_id = normalize_ids([cells["callID"]], index).iloc[0]
        self.call_ids[index] = call_id
        first = next((n for n, other in enumerate(self.call_ids[:index]) if other == call_id), index) \
            if call_id else -1
        frame = pd.DataFrame({
            "callID": [call_id], "callID_first": [first], "callID_kind": [self.table.kinds["callID"][index]],
            "logID": normalize_ids([cells["logID"]], index).to_list(),
            "logID_kind": [self.table.kinds["logID"][index]],
            "disposition": [cells["disposition"].strip()], "notes": [cells["notes"].strip()],
        }, index=pd.RangeIndex(index, index + 1))
        if values and "callID" in values:  # a typed-in ID is text, whatever the cell was
            frame["callID_kind"] = [""]
        if values and "logID" in values:
            frame["logID_kind"] = [""]
        first_map = {call_id: first} if first >= 0 else {}
        messages = _messages(self.schema, frame, self.table, first_map, self.allowed, self.pattern)
        if index in messages:
            return Status.INVALID, messages[index]
        return Status.READY, "ready to send"


def check_row(table: Table, index: int, values: Mapping[str, str] | None = None, *,
              allowed: Sequence[str] | None = None, call_id_pattern: str | None = None) -> tuple[Status, str]:
    """One row judged again (see `RowChecker`; keep one of those for many checks on a big file)."""
    return RowChecker(table, allowed, call_id_pattern).check(index, values)


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


def _sentence(row: pd.Series, fields: dict[str, str], first_rows: Mapping[str, int],
              allowed: Sequence[str] | None, call_id_pattern: str | None = None) -> str:
    parts = []
    for field_name in ("callID", "logID", "disposition", "notes"):
        name = fields.get(field_name)
        if name is None:
            continue
        value = row[field_name]
        details = {"value": _quote(value), "length": len(value), "char": "", "first": "", "suggestion": "",
                   "pattern": call_id_pattern or "",
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
