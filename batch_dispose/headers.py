"""Which column is which field: the names CRM exports give the four fields, explicit mappings, and the
sentence for a header row that lacks a required column.

A header is compared as `normalize_header` gives it (ignoring case, spaces, `_`, `-`, full width).
A field's own names (tier 0) beat the names exports use (tier 1); two columns of one tier for one
field are refused; an explicit mapping (`--column notes=Remarks`, tier -1) beats both.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping, Sequence
from pathlib import Path

from .grids import error

FIELDS = ("callID", "logID", "disposition", "notes")
REQUIRED_FIELDS = ("callID", "logID", "disposition")
#: Field -> the header names it is known by, best first (compared as `normalize_header` gives them).
FIELD_NAMES = {
    "callID": ("callid", "callno", "callnumber", "callnum", "callreference", "callref", "callrefno", "calluuid"),
    "logID": ("logid", "logno", "lognumber", "lognum", "calllogid", "logreference"),
    "disposition": ("disposition", "dispositionname", "calldisposition", "dispo", "outcome", "calloutcome",
                    "callresult", "dispositionstatus"),
    "notes": ("notes", "note", "remarks", "remark", "callnotes", "callnote", "comments", "comment",
              "agentremarks", "agentremark", "agentnotes", "agentnote", "agentcomments", "callremarks",
              "callcomments", "dispositionnotes", "dispositionremarks", "description"),
}
OWN_NAMES = frozenset({"callid", "logid", "disposition", "dispositionname", "notes", "note"})
#: Normalised header text -> (field name, tier): 0 for a field's own names, 1 for the names exports use.
#: Two columns of one tier for one field are refused; a column of tier 0 beats one of tier 1.
HEADER_ALIASES = {name: (field_name, 0 if name in OWN_NAMES else 1) for field_name, names in FIELD_NAMES.items()
                  for name in names}
#: The columns a results workbook adds; found again (by name) when one is fed back in.
RESULT_COLUMNS = ("row", "status", "http_status", "message", "attempts", "finished_at")

def normalize_header(text: str) -> str:
    """`Call ID`, `call_id`, `CALL-ID` and full-width `ｃａｌｌＩＤ` all become `callid`."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    return "".join(ch for ch in folded if not (ch.isspace() or ch in "_-"))


def is_header(header: str, wanted: str) -> bool:
    return header.strip() == wanted or normalize_header(header) == normalize_header(wanted)


def field_of(header: str, mapping: Mapping[str, str]) -> tuple[str, int] | None:
    """The field a header names (and its tier); an explicit mapping beats every known name."""
    for name, wanted in mapping.items():
        if is_header(header, wanted):
            return name, -1
    found = HEADER_ALIASES.get(normalize_header(header))
    if found is not None and found[0] in mapping:  # the mapping chose another column for this field
        return None
    return found


def matched_fields(headers: Sequence[str], mapping: Mapping[str, str]) -> set[str]:
    found = {matched[0] for matched in (field_of(header, mapping) for header in headers) if matched}
    return found & set(REQUIRED_FIELDS)


def map_columns(path: Path, headers: list[str], mapping: Mapping[str, str]
                 ) -> tuple[dict[str, int], dict[str, int], list[str]]:
    """Field -> position, result column -> position (a results workbook), and warnings."""
    for name, wanted in mapping.items():
        if not any(is_header(header, wanted) for header in headers):
            found = ", ".join(header for header in headers if header) or "no headers"
            raise error(path, f"has no column '{wanted}' (asked for by the column mapping {name}={wanted}; "
                        f"found: {found}); give the header exactly as the file has it")
    best: dict[str, tuple[int, int]] = {}  # field -> (rank, position)
    also: dict[str, list[str]] = {}
    for position, header in enumerate(headers):
        matched = field_of(header, mapping)
        if matched is None:
            continue
        name, rank = matched
        if name in best and best[name][0] == rank:
            first = headers[best[name][1]]
            raise error(path, f"has two columns for {name} ('{first}' and '{header}'); rename or remove one, "
                        f"or choose one with --column {name}=HEADER")
        if name not in best or rank < best[name][0]:
            if name in best:
                also.setdefault(name, []).append(headers[best[name][1]])
            best[name] = (rank, position)
        else:
            also.setdefault(name, []).append(header)
    fields = {name: best[name][1] for name in FIELDS if name in best}
    warnings = [f"The column{'s' if len(others) > 1 else ''} {', '.join(repr(o) for o in others)} "
                f"{'are' if len(others) > 1 else 'is'} carried, not sent: {name} come from '{headers[fields[name]]}' "
                f"(choose another with --column {name}=HEADER)." for name, others in also.items()]
    keys = [normalize_header(header) for header in headers]
    result_keys = [normalize_header(name) for name in RESULT_COLUMNS]
    result_positions: dict[str, int] = {}
    if all(key in keys for key in result_keys):  # a results workbook: status and message first, or at the end
        lead = keys[:2] == ["status", "message"]
        for name, key in zip(RESULT_COLUMNS, result_keys, strict=True):
            if lead and name in ("status", "message"):
                result_positions[name] = keys.index(key)
            else:
                result_positions[name] = len(keys) - 1 - keys[::-1].index(key)
    return fields, result_positions, warnings


def raise_missing(path: Path, rows: Sequence[Sequence[str]], mapping: Mapping[str, str]) -> None:
    """Name the missing required columns, showing the most header-like of the first rows we read."""
    candidates = [[text.strip() for text in texts if text.strip()] for texts in rows]
    candidates = [texts for texts in candidates if texts]
    if not candidates:
        raise error(path, "holds no data (every row is blank); export the calls again")
    best = max(candidates, key=lambda texts: len(matched_fields(texts, mapping)))  # the first, among equals
    for name, wanted in mapping.items():
        if not any(is_header(header, wanted) for header in best):
            found = ", ".join(best[:8]) + ("…" if len(best) > 8 else "")
            raise error(path, f"has no column '{wanted}' (asked for by the column mapping {name}={wanted}; "
                        f"found: {found}); give the header exactly as the file has it")
    missing = [name for name in REQUIRED_FIELDS if name not in matched_fields(best, mapping)]
    found = ", ".join(best[:8]) + ("…" if len(best) > 8 else "")
    plural = "s" if len(missing) > 1 else ""
    listed = " and ".join(f"'{name}'" for name in missing)
    raise error(path, f"column{plural} {listed} {'are' if plural else 'is'} missing (found: {found}); "
                f"rename the column{plural} in the header row to {' and '.join(missing)}, "
                f"or name {'them' if plural else 'it'} with --column {missing[0]}=HEADER")
