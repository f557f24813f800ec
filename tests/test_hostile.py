"""Hostile and broken input: every file ends in a complete workbook or one clear sentence.

Never a traceback, never a request off the end-call route, never a formula cell, never the token.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import logging
import random
import traceback
import unicodedata
import zipfile
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openpyxl import Workbook, load_workbook

from batch_dispose.client import ROUTE, RyngClient
from batch_dispose.credentials import Secret
from batch_dispose.errors import InputFileError
from batch_dispose.loading import Table, load
from batch_dispose.schema import validate
from tests.conftest import HEADER, default_ledger, read_results, write_csv, write_xlsx

FIXTURES = Path(__file__).parent / "fixtures"
STATUSES = {"disposed", "skipped", "unauthorized", "failed", "invalid", "pending", "unknown"}
INJECTIONS = ["=cmd|'/c calc'!A1", "+1+1", "-2+3", "@SUM(A1)", "\t=1+1", "\r=1+1", "=HYPERLINK(\"x\")"]
PATH_TRICKS = ["../../admin", "a/b", "%2e%2e", "x?y=1", "#frag", "a b", "\u2215etc", "..%2f", "C1/../C2", "\\x",
               "C1;rm", "C1\x00", ".", "~root"]


# -- the hostile corpus -------------------------------------------------------------------------------

def _formulas(tmp: Path) -> tuple[Path, list[str]]:
    notes = INJECTIONS
    rows = [[f"F{n}", n + 1, "Interested", note] for n, note in enumerate(notes)]
    return write_csv(tmp / "formulas.csv", rows, newline="\r\n"), [note.strip() for note in notes]


def _control(tmp: Path) -> tuple[Path, list[str] | None]:
    rows = [[f"K{n}", n + 1, "Callback", f"ctl{chr(n)}here", f"extra{chr(n)}"]
            for n in range(1, 32) if n not in (10, 13)]
    return write_csv(tmp / "control.csv", rows, header=[*HEADER, "Extra"]), None


def _huge_text(tmp: Path) -> tuple[Path, list[str] | None]:
    rows = [["H1", 1, "Interested", "n" * 40_000, "ok"], ["H2", 2, "Interested", "short", "e" * 40_000]]
    return write_csv(tmp / "huge.csv", rows, header=[*HEADER, "Extra"]), None


def _merged(tmp: Path) -> tuple[Path, list[str] | None]:
    workbook = Workbook()
    sheet = workbook.active
    sheet.append(HEADER)
    sheet.append(["M1", 1, "Interested", "first"])
    sheet.append(["M2", 2, None, "disposition merged from above"])
    sheet.merge_cells("C2:C3")
    path = tmp / "merged.xlsx"
    workbook.save(path)
    return path, None


def _hidden_sheet(tmp: Path) -> tuple[Path, list[str] | None]:
    workbook = Workbook()
    workbook.active.title = "Cover"
    workbook.active.append(["Nothing to see here"])
    data = workbook.create_sheet("Data")
    data.append(HEADER)
    data.append(["S1", 1, "Interested", "from a hidden sheet"])
    data.sheet_state = "hidden"
    path = tmp / "hidden.xlsx"
    workbook.save(path)
    return path, ["from a hidden sheet"]


def _header_low(tmp: Path) -> tuple[Path, list[str] | None]:
    workbook = Workbook()
    sheet = workbook.active
    for line in (["Daily export"], [], ["Generated 27 Nov"], []):
        sheet.append(line)
    sheet.append(HEADER)
    sheet.append(["L1", 1, "Interested", "row six"])
    path = tmp / "header_low.xlsx"
    workbook.save(path)
    return path, ["row six"]


def _odd_cells(tmp: Path) -> tuple[Path, list[str] | None]:
    from datetime import date

    rows = [["\u00a0O1\u00a0", " 1 ", " Interested ", "  nbsp  "], ["２", "３", "DNC", "full-width"],
            [date(2024, 1, 5), 4, "DNC", "a date"], [True, 5, "DNC", "a boolean"], [12345678901234567, 6, "X", ""],
            [7.0, 7.0, 8, 9.5]]
    return write_xlsx(tmp / "odd.xlsx", rows), ["nbsp", "full-width", "a date", "a boolean", "", "9.5"]


def _path_tricks(tmp: Path) -> tuple[Path, list[str] | None]:
    rows = [[trick, n + 1, "Interested", "trick"] for n, trick in enumerate(PATH_TRICKS)]
    return write_csv(tmp / "tricks.csv", rows), None


def _utf16(tmp: Path) -> tuple[Path, list[str] | None]:
    return write_csv(tmp / "utf16.csv", [["U1", 1, "Interested", "यूनिकोड"]], delimiter="\t",
                     encoding="utf-16"), ["यूनिकोड"]


def _many_columns(tmp: Path) -> tuple[Path, list[str] | None]:
    header = [*HEADER, *(f"c{n}" for n in range(500)), "c1"]
    return write_csv(tmp / "wide.csv", [["W1", 1, "Interested", "wide", *range(501)]], header=header), ["wide"]


def _zip_bomb(tmp: Path) -> tuple[Path, None]:
    path = tmp / "bomb.xlsx"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive, archive.open("xl/worksheets/sheet1.xml", "w",
                                                                                   force_zip64=True) as entry:
        block = b"<row>" + b"0" * (1 << 20) + b"</row>"
        for _ in range(200):
            entry.write(block)
    return path, None


def _laughs(tmp: Path) -> tuple[Path, None]:
    source = write_xlsx(tmp / "plain.xlsx", [["B1", 1, "Interested", "&lol9;"]])
    entities = '<!DOCTYPE l [<!ENTITY lol "lol">' + "".join(
        f'<!ENTITY lol{i} "{(f"&lol{i - 1};" if i > 1 else "&lol;") * 10}">' for i in range(1, 10)) + "]>"
    path = tmp / "laughs.xlsx"
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as new:
        for item in old.infolist():
            data = old.read(item.filename)
            if item.filename == "xl/worksheets/sheet1.xml":
                data = (entities + data.decode().replace("&amp;lol9;", "&lol9;")).encode()
            new.writestr(item.filename, data)
    return path, None


def _truncated(tmp: Path) -> tuple[Path, None]:
    whole = write_xlsx(tmp / "whole.xlsx", [["T1", 1, "Interested", "x"]] * 50).read_bytes()
    path = tmp / "truncated.xlsx"
    path.write_bytes(whole[: len(whole) // 2])
    return path, None


def _bytes(name: str, content: bytes) -> Callable[[Path], tuple[Path, None]]:
    def build(tmp: Path) -> tuple[Path, None]:
        (tmp / name).write_bytes(content)
        return tmp / name, None
    return build


def _fixture(name: str) -> Callable[[Path], tuple[Path, None]]:
    return lambda tmp: (FIXTURES / name, None)


CORPUS: dict[str, Callable[[Path], tuple[Path, list[str] | None]]] = {
    "formulas": _formulas, "control": _control, "huge-text": _huge_text, "merged-cells": _merged,
    "hidden-sheet": _hidden_sheet, "header-on-row-5": _header_low, "odd-cells": _odd_cells,
    "path-tricks": _path_tricks, "utf16-tab": _utf16, "500-columns": _many_columns,
    "libreoffice-xlsx": _fixture("libreoffice_calls.xlsx"), "libreoffice-xls": _fixture("libreoffice_calls.xls"),
    "libreoffice-ods": _fixture("libreoffice_calls.ods"),
    # unusable: exit 2
    "password": _fixture("password_protected.xlsx"), "zip-bomb": _zip_bomb, "billion-laughs": _laughs,
    "truncated": _truncated, "random.xls": _bytes("random.xls", random.Random(1).randbytes(3000)),
    "random.ods": _bytes("random.ods", b"PK\x03\x04" + random.Random(2).randbytes(3000)),
    "html.xls": _bytes("html.xls", b"<html><body><table><tr><td>callID</td></tr></table></body></html>"),
    "nul.csv": _bytes("nul.csv", b"\x00" * 500), "empty.ods": _bytes("empty.ods", b""),
}
UNUSABLE = {"password", "zip-bomb", "billion-laughs", "truncated", "random.xls", "random.ods", "html.xls",
            "nul.csv", "empty.ods"}


@pytest.mark.parametrize("name", list(CORPUS))
def test_hostile_file_ends_in_a_workbook_or_one_sentence(cli, sim, tmp_path: Path, name: str) -> None:
    """Any file: exit 0/1/2 without a traceback; readable ones give every row a status, no formula
    cell, notes as written, and no request off the end-call route."""
    source, notes = CORPUS[name](tmp_path)
    result = cli("run", source, "--base-url", sim.base_url, "--json")
    assert result.code in (0, 1, 2) and "Traceback" not in result.err
    assert sim.stats.off_route == 0
    if name in UNUSABLE:
        assert result.code == 2 and source.name in result.err
        assert len(result.err.strip().splitlines()) == 1 and sim.stats.requests == 0
        return
    assert result.code in (0, 1), result.err
    table = load(source)
    workbook = load_workbook(result.json()["results"])
    rows = list(workbook["Results"].iter_rows(min_row=1))
    assert not [cell.coordinate for line in rows for cell in line if cell.data_type == "f"]
    header = [cell.value for cell in rows[table.header_row - 1]]  # the header keeps its line
    records = [dict(zip(header, (cell.value for cell in line), strict=True)) for line in rows[table.header_row:]]
    records = [record for record in records if record["status"]]  # call rows (blank lines stay blank)
    assert [record["row"] for record in records] == table.rows  # each row at its own line
    workbook.close()
    assert len(records) == len(table) == result.json()["rows"]
    assert all(r["status"] in STATUSES for r in records)
    assert all(r["message"] for r in records if r["status"] == "invalid")
    if notes is not None:
        notes_header = table.headers[table.fields["notes"]]
        assert [(r[notes_header] or "").strip() for r in records] == notes
    sent = {r.call_id for r in sim.stats.recorded}
    shown = {unicodedata.normalize("NFKC", r[table.headers[table.fields["callID"]]]).strip()
             for r in records if r["status"] == "disposed"}
    assert sent == shown


def test_a_decompression_bomb_is_refused_fast_with_little_memory(tmp_path: Path) -> None:
    """A workbook that would unpack to 200 MB is refused before any XML is parsed."""
    import resource
    import time

    path, _ = _zip_bomb(tmp_path)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    with pytest.raises(InputFileError, match="decompression bomb"):
        load(path)
    assert time.perf_counter() - started < 0.5
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 50 * 1024  # KiB


def test_over_long_cells_are_cut_visibly_and_the_row_says_so(cli, sim, tmp_path: Path) -> None:
    """A cell longer than a workbook cell holds is cut with …, and its row's message says so."""
    source, _ = _huge_text(tmp_path)
    result = cli("run", source, "--base-url", sim.base_url, "--json")
    _, records, _ = read_results(Path(result.json()["results"]))
    assert records[0]["status"] == "invalid" and "notes are 40,000 characters" in records[0]["message"]
    assert records[1]["status"] == "disposed" and len(records[1]["Extra"]) == 32_767
    assert records[1]["Extra"].endswith("…") and "visible symbols" in records[1]["message"]


# -- properties -------------------------------------------------------------------------------------

def _table(call_ids: list[str]) -> Table:
    count = len(call_ids)
    return Table(path=Path("p.csv"), format="csv", sha256="", headers=tuple(HEADER), positions=(0, 1, 2, 3),
                 header_row=1, cells={"callID": list(call_ids), "logID": ["7"] * count,
                                      "disposition": ["Interested"] * count, "notes": [""] * count},
                 rows=list(range(2, count + 2)), fields={"callID": 0, "logID": 1, "disposition": 2, "notes": 3},
                 kinds={"callID": [""] * count, "logID": [""] * count})


@settings(max_examples=150, deadline=None)
@given(st.text(min_size=0, max_size=80))
def test_any_call_id_is_invalid_or_becomes_exactly_one_path_segment(call_id: str) -> None:
    """For any text, the row is invalid or its request path is exactly the route plus that callID."""
    validation = validate(_table([call_id]))
    if not validation.requests:
        assert 0 in validation.messages
        return
    call = validation.requests[0]
    request = RyngClient("https://acme.ryng.in", Secret("t"), transport=None, timeout=1).request_for(call)
    assert request.url.raw_path == (ROUTE + call.call_id).encode()
    assert call.call_id == call_id.strip() or call.call_id.isdigit() or call.call_id.isascii()


_cells = st.one_of(st.text(max_size=12), st.sampled_from(["", " ", "1", "87278.0", "=1+1", "Interested", "a,b",
                                                          'q"q', "x\ny", "１２", "\u00a0"]))


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(header=st.lists(st.sampled_from(["callID", "Call ID", "logID", "log_id", "disposition", "notes", "x", ""]),
                       min_size=1, max_size=6),
       rows=st.lists(st.lists(_cells, max_size=7), max_size=12),
       delimiter=st.sampled_from(DELIMS := [",", ";", "\t", "|"]),
       encoding=st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "cp1252"]),
       cut=st.one_of(st.none(), st.integers(min_value=0, max_value=400)))
def test_any_csv_loads_into_every_row_or_one_sentence(tmp_path: Path, header: list[str], rows: list[list[str]],
                                                      delimiter: str, encoding: str, cut: int | None) -> None:
    """Random CSV content, delimiters, encodings and truncations: a clear InputFileError, or a table
    with exactly the non-blank rows under the header, each valid or invalid with a message."""
    buffer = io.StringIO(newline="")
    csv.writer(buffer, delimiter=delimiter, lineterminator="\r\n").writerows([header, *rows])
    try:
        data = buffer.getvalue().encode(encoding)
    except UnicodeEncodeError:
        data = buffer.getvalue().encode("utf-8")
    if cut is not None:
        data = data[:cut]
    path = tmp_path / "fuzz.csv"
    path.write_bytes(data)
    try:
        table = load(path)
    except InputFileError as exc:
        assert str(exc).startswith(str(path))
        return
    validation = validate(table)
    assert len(validation.messages) + len(validation.requests) == len(table)
    assert all(message.strip() for message in validation.messages.values())
    if cut is None and encoding != "cp1252" and table.delimiter == delimiter and table.rows[0] - 1 == 1:
        fields = [position for position, name in enumerate(header) if name in ("callID", "Call ID", "logID",
                                                                               "log_id", "disposition", "notes")]
        calls = [row for row in rows if any(row[n].strip() for n in fields if n < len(row))]  # other rows: not calls
        assert len(table) == len(calls)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.lists(st.one_of(st.text(alphabet=st.characters(blacklist_categories=["Cs", "Cc"]),
                                                     max_size=10),
                                             st.integers(-10**18, 10**18), st.floats(allow_nan=False),
                                             st.booleans(), st.dates()), max_size=5), max_size=8))
def test_any_xlsx_loads_every_row(tmp_path: Path, rows: list[list[object]]) -> None:
    """Random typed cells in an XLSX: every non-blank row is read, and each is valid or invalid."""
    path = write_xlsx(tmp_path / "fuzz.xlsx", rows)
    try:
        table = load(path)
    except InputFileError as exc:
        assert "no calls under it" in str(exc)
        return
    validation = validate(table)
    assert len(validation.messages) + len(validation.requests) == len(table)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=2000), suffix=st.sampled_from([".xlsx", ".xls", ".ods"]),
       zipped=st.booleans())
def test_random_bytes_named_as_a_workbook_are_one_sentence(tmp_path: Path, data: bytes, suffix: str,
                                                          zipped: bool) -> None:
    """Random bytes (zip-looking or not) under a workbook name are refused with InputFileError."""
    path = tmp_path / f"junk{suffix}"
    path.write_bytes((b"PK\x03\x04" if zipped else b"") + data)
    with pytest.raises(InputFileError):
        load(path)


# -- the token --------------------------------------------------------------------------------------

class _Exploding(httpx.AsyncBaseTransport):
    """A transport that works, then fails with a bug after a few requests (a forced mid-run crash)."""

    def __init__(self, inner: httpx.AsyncBaseTransport, after: int) -> None:
        self.inner, self.left = inner, after

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.left -= 1
        if self.left < 0:
            raise RuntimeError(f"forced failure while sending {request!r} {request.url}")
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


def test_canary_token_appears_in_no_stream_file_log_or_traceback(cli, simulator, tmp_path: Path) -> None:
    """With DEBUG logging, failures, a forced crash and --debug tracebacks, the token is nowhere but
    in the request header."""
    from batch_dispose.job import run_files
    from batch_dispose.settings import Settings
    from batch_dispose.transport import AiohttpTransport

    canary = "CANARY-e3b0c442-token"
    sim = simulator(token=canary, scripts={"1001": [500], "1002": [403], "1003": ["reset"], "1004": [429, 200]})
    log_file = tmp_path / "debug.log"
    handler = logging.FileHandler(log_file)
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    texts = []
    try:
        source = write_csv(tmp_path / "calls.csv", [[str(1000 + n), n + 1, "Interested", "n"] for n in range(8)])
        result = cli("run", source, "--base-url", sim.base_url, "--json", token=canary)
        texts += [result.out, result.err]
        from batch_dispose.errors import LockHeldError
        from batch_dispose.ledger import Ledger

        with Ledger.open(default_ledger()), pytest.raises(LockHeldError) as crashed:
            cli("run", source, "--base-url", sim.base_url, "--debug", token=canary)  # --debug: the traceback
        texts.append("".join(traceback.format_exception(crashed.value)))
        settings_ = Settings(base_url=sim.base_url, reports_dir=tmp_path / "reports2",
                             ledger=tmp_path / "reports2" / "ledger.sqlite")
        with pytest.raises(RuntimeError) as bug:
            asyncio.run(run_files([write_csv(tmp_path / "more.csv", [[str(2000 + n), 1, "X", ""] for n in range(30)])],
                                  settings_, Secret(canary),
                                  transport=_Exploding(AiohttpTransport(connections=8), after=5)))
        texts.append("".join(traceback.format_exception(bug.value)))
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
        handler.close()
    assert any("forced failure" in text for text in texts)
    assert all(r.headers["x-access-token"] == canary for r in sim.stats.recorded)
    for text in texts:
        assert canary not in text
    written = [path for path in tmp_path.rglob("*") if path.is_file() and path.suffix != ".csv"]
    assert any(path.suffix == ".xlsx" for path in written) and log_file in written
    for path in written:
        data = path.read_bytes()
        assert canary.encode() not in data and canary.encode("utf-16-le") not in data, path
    assert json.loads(texts[0])["counts"]["unauthorized"] == 1
