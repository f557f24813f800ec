"""The ops page end to end in a real browser: `serve` as a process, Debian's chromium driven by Playwright.

Without chromium these tests skip with one line saying how to install it; with CI set they fail instead.
BATCH_DISPOSE_SCREENSHOTS=1 saves a screenshot of each step into docs/ (page-1-upload.png, …).
"""

from __future__ import annotations

import os
import re
import selectors
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from openpyxl import load_workbook

from batch_dispose.ledger import Ledger
from batch_dispose.simulator import SimConfig, start_in_thread
from tests.conftest import TOKEN, rows_of, write_csv, write_xlsx

ROOT = Path(__file__).parent.parent
FIXTURES = Path(__file__).parent / "fixtures"
DOCS = ROOT / "docs"
SCREENSHOTS = os.environ.get("BATCH_DISPOSE_SCREENSHOTS") == "1"
XSS = ["<script>alert(1)</script>", "<img src=x onerror=alert(1)>"]


def chromium_path() -> str | None:
    for candidate in (os.environ.get("BATCH_DISPOSE_CHROMIUM"), shutil.which("chromium"), "/usr/bin/chromium",
                      shutil.which("chromium-browser")):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


def start_serve(base_url: str, folder: Path, *extra: str) -> tuple[subprocess.Popen[str], str]:
    """`batch-dispose serve --port 0` as a process; returns it and the URL from its `serving on` line."""
    env = {**os.environ, "RYNG_ACCESS_TOKEN": TOKEN, "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}  # this checkout
    env.pop("BATCH_DISPOSE_PASSCODE", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "batch_dispose", "serve", "--port", "0", "--base-url", base_url,
         "--reports-dir", str(folder / "reports"), "--ledger", str(folder / "ledger.sqlite"), *extra],
        cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stdout is not None
    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ)
    if not selector.select(timeout=30):
        process.kill()
        raise AssertionError("serve printed nothing within 30 s")
    line = process.stdout.readline()
    match = re.fullmatch(r"serving on (http://127\.0\.0\.1:\d+/)\n", line)
    assert match, f"unexpected first line: {line!r} {process.stderr.read() if process.poll() is not None else ''}"
    return process, match.group(1)


def stop_serve(process: subprocess.Popen[str]) -> tuple[int, str]:
    """SIGTERM, as a service manager stops it; returns the exit code and what it printed on stderr."""
    process.send_signal(signal.SIGTERM)
    try:
        _, err = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        _, err = process.communicate()
    return process.returncode, err


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One chromium for the module (Debian's, never a downloaded one)."""
    path = chromium_path()
    if path is None:
        message = "chromium not found: install it with `apt-get install chromium` to run the browser tests"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=path, args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A slow-ish simulator (progress is visible) and `serve` in front of it, shared by this module's tests."""
    folder = tmp_path_factory.mktemp("served")
    sim = start_in_thread(SimConfig(token=TOKEN, latency_ms=120))
    process, url = start_serve(sim.base_url, folder, "--concurrency", "1")
    yield {"url": url, "sim": sim, "folder": folder, "ledger": folder / "ledger.sqlite"}
    stop_serve(process)
    sim.stop()


@pytest.fixture
def page(browser: Any, served: dict[str, Any]) -> Iterator[Any]:
    """A fresh tab that fails the test if any dialog (an alert from injected script) opens."""
    context = browser.new_context(accept_downloads=True, viewport={"width": 1280, "height": 900})
    tab = context.new_page()
    dialogs: list[str] = []
    tab.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    yield tab
    context.close()
    assert dialogs == [], f"a dialog opened: spreadsheet text ran as script: {dialogs}"


def statuses_by_row(path: Path) -> dict[int, str]:
    """Input row number -> status, read with openpyxl from a results workbook (its `row` column, or the
    sheet's own row numbers when rows stay at their lines)."""
    sheet = load_workbook(path)["Results"]
    header: list[Any] = []
    found = {}
    for number, values in enumerate(sheet.iter_rows(values_only=True), start=1):
        if not header:
            header = list(values) if "status" in values else []
            continue
        status = values[header.index("status")]
        if status:
            found[values[header.index("row")] if "row" in header else number] = status
    return found


def shot(tab: Any, name: str) -> None:
    if SCREENSHOTS:
        DOCS.mkdir(exist_ok=True)
        tab.screenshot(path=str(DOCS / f"page-{name}.png"), full_page=True)


def upload(tab: Any, url: str, path: Path) -> None:
    tab.goto(url)
    tab.get_by_label("Choose a file").set_input_files(str(path))
    tab.wait_for_url(re.compile(r"/files/"))


def test_upload_fix_send_watch_and_download(page: Any, served: dict[str, Any], tmp_path: Path) -> None:
    """A person uploads a LibreOffice file, fixes a row, sends, watches it end and downloads the workbook."""
    from playwright.sync_api import expect

    sim, url = served["sim"], served["url"]
    sim.reset_stats()
    bodies: list[str] = []
    page.goto(url)
    expect(page.get_by_role("heading", name="1. Upload the file")).to_be_visible()
    shot(page, "1-upload")
    page.get_by_label("Choose a file").set_input_files(str(FIXTURES / "libreoffice_calls.xlsx"))
    page.wait_for_url(re.compile(r"/files/"))
    rows = page.get_by_role("table", name=re.compile("Rows of"))
    for row in (8, 9, 11, 12):
        expect(rows.get_by_role("row").filter(has=page.get_by_label(f"logID of row {row}"))).to_contain_text("invalid")
    expect(page.get_by_text("logID '87284.5' is not a whole number")).to_be_visible()
    expect(page.get_by_role("button", name=re.compile(r"^Send 5 calls to 127\.0\.0\.1:\d+$"))).to_be_visible()
    shot(page, "2-check")
    bodies.append(page.content())

    page.get_by_role("button", name=re.compile(r"^Send 5 calls to")).click()  # changed their mind: Cancel
    page.get_by_role("button", name="Cancel").click()
    expect(page.get_by_role("button", name=re.compile(r"^Send 5 calls to"))).to_be_focused()
    page.get_by_label("logID of row 12").fill("87284")
    page.get_by_label("logID of row 12").press("Tab")
    fixed = rows.get_by_role("row").filter(has=page.get_by_label("logID of row 12"))
    expect(fixed).to_contain_text("ready")
    expect(page.get_by_role("button", name=re.compile(r"^Send 6 calls to"))).to_be_visible()
    shot(page, "3-fixed")

    page.get_by_role("button", name=re.compile(r"^Send 6 calls to")).click()
    expect(page.get_by_text(re.compile(r"Send 6 calls to .*\? Ending a call cannot be undone"))).to_be_visible()
    shot(page, "4-confirm")
    page.get_by_role("button", name="Yes, send them").click()
    page.wait_for_url(re.compile(r"/runs/"))
    expect(page.get_by_role("progressbar", name="Calls sent")).to_be_visible()
    expect(page.locator("#state")).to_have_text("Finished.", timeout=20_000)
    expect(page.get_by_role("progressbar", name="Calls sent")).to_have_attribute("value", "6")
    expect(page.get_by_text("9 rows: 6 disposed, 3 invalid.")).to_be_visible()
    expect(page.get_by_role("heading", level=1)).to_contain_text("4. Run of libreoffice_calls.xlsx")
    shot(page, "6-done")
    bodies.append(page.content())

    with page.expect_download() as info:
        page.get_by_role("link", name="Download the results workbook").click()
    saved = tmp_path / info.value.suggested_filename
    info.value.save_as(saved)
    assert saved.name.startswith("libreoffice_calls-results-")
    statuses = statuses_by_row(saved)
    disposed = {row for row, status in statuses.items() if status == "disposed"}
    assert disposed == {4, 5, 7, 10, 12, 13}
    assert {row for row, status in statuses.items() if status == "invalid"} == {8, 9, 11}
    assert sorted(sim.stats.received.values()) == [1] * 6  # each valid row once, nothing else
    fixed_body = next(r.body for r in sim.stats.recorded if r.call_id == "4471011")
    assert b'"logID": 87284' in fixed_body
    assert not any(TOKEN in body for body in bodies)

    page.get_by_role("link", name="History").click()
    expect(page.get_by_role("table", name="Runs")).to_contain_text("libreoffice_calls.xlsx")
    page.get_by_label("Call ID").fill("4471011")
    page.get_by_role("button", name="Look it up").click()
    expect(page.get_by_role("region", name=re.compile("What the ledger knows"))).to_contain_text("disposed")
    shot(page, "7-history")

    upload(page, url, FIXTURES / "libreoffice_calls.xlsx")  # the same file again: its calls are all known now
    expect(page.get_by_role("button", name="Nothing to send")).to_be_disabled()
    expect(page.get_by_text("Every row is already disposed or skipped, invalid, or excluded.")).to_be_visible()
    skipped = page.locator('tr[data-status="skipped"]')  # already disposed: nothing to look at, under the switch
    expect(skipped).to_have_count(5)  # row 12 was fixed in the page, not in the file: still invalid there
    for row in skipped.all():
        expect(row).to_be_hidden()
    expect(page.locator('tr[data-status="invalid"]').first).to_be_visible()


def test_spreadsheet_text_never_runs_as_script(page: Any, served: dict[str, Any], tmp_path: Path) -> None:
    """Notes and carried cells holding <script> and onerror markup show as text on every page; no dialog opens."""
    from playwright.sync_api import expect

    rows = [["X1", "101", "Interested", XSS[0], XSS[1]], ["X2", "bad", "Interested", XSS[1], XSS[0]],
            ["X3", "103", "Interested", "fine", XSS[0]]]
    source = write_xlsx(tmp_path / "xss.xlsx", rows, header=["callID", "logID", "disposition", "notes", XSS[1]])
    upload(page, served["url"], source)
    page.get_by_role("switch", name="Only rows with problems").uncheck()
    expect(page.get_by_role("cell", name=XSS[0]).first).to_be_visible()
    expect(page.get_by_role("columnheader", name=XSS[1])).to_be_visible()
    assert page.get_by_label("notes of row 3").input_value() == XSS[1]
    page.get_by_role("button", name=re.compile(r"^Send 2 calls")).click()
    page.get_by_role("button", name="Yes, send them").click()
    expect(page.locator("#state")).to_have_text("Finished.", timeout=20_000)
    expect(page.get_by_role("table", name="Rows to look at")).to_contain_text("logID 'bad' is not a whole number")
    page.reload()
    expect(page.locator("#state")).to_have_text("Finished.")


def test_a_clean_crm_export_says_nothing_is_wrong_and_exclude_is_in_reach(page: Any, served: dict[str, Any],
                                                                           tmp_path: Path) -> None:
    """A file with no problem says so under the switch (not an empty table), and with the switch off each row's
    Exclude box is in view at 1280 px however many columns the CRM export carries along; excluding a row takes
    it out of the first requests shown."""
    from playwright.sync_api import expect

    carried = ["Agent", "Team", "Campaign", "Call Date", "Duration (s)", "Queue", "Customer Name", "City"]
    rows = [[f"C{n}", 100 + n, "Interested", "ok", *(f"{name} value {n}" for name in carried)] for n in range(3)]
    upload(page, served["url"], write_xlsx(tmp_path / "crm.xlsx", rows, header=["Call ID", "Log ID", "Disposition",
                                                                                 "Remarks", *carried]))
    expect(page.get_by_text("No row has a problem.")).to_be_visible()
    page.get_by_role("switch", name="Only rows with problems").uncheck()
    expect(page.get_by_text("No row has a problem.")).to_be_hidden()
    box = page.get_by_label("Exclude row 2").bounding_box()
    assert box is not None and box["x"] + box["width"] <= 1280, box
    previews = page.get_by_role("region", name="The first requests (token masked)")
    expect(previews).to_contain_text("/preview/call/C0")
    page.get_by_label("Exclude row 2").check()  # the first requests follow: an excluded row is not among them
    expect(previews).not_to_contain_text("/preview/call/C0")
    expect(previews).to_contain_text("/preview/call/C1")


def test_cross_origin_post_is_refused(page: Any, served: dict[str, Any]) -> None:
    """A POST from another origin is refused with 403, whatever it asks."""
    response = page.request.post(served["url"] + "api/files", headers={"Origin": "http://evil.example"},
                                 multipart={"file": {"name": "a.csv", "mimeType": "text/csv", "buffer": b"x"}})
    assert response.status == 403


def test_reload_during_a_run_and_a_second_send_gets_the_sentence(page: Any, served: dict[str, Any],
                                                                 tmp_path: Path) -> None:
    """A reload shows the run still going; a second send gets the 409 sentence; Stop leaves the rest pending."""
    from playwright.sync_api import expect

    url = served["url"]
    upload(page, url, write_csv(tmp_path / "long.csv", rows_of(60, start=70_000)))
    page.get_by_role("button", name=re.compile(r"^Send 60 calls")).click()
    page.get_by_role("button", name="Yes, send them").click()
    page.wait_for_url(re.compile(r"/runs/"))
    run_url = page.url
    page.reload()
    expect(page.locator("#state")).to_have_text("Sending…")
    expect(page.get_by_role("button", name="Stop")).to_be_visible()
    expect(page.locator("#progress-text")).to_have_text(re.compile(r"^[1-5]\d of 60 rows done"))
    shot(page, "5-progress")

    other = page.context.new_page()
    upload(other, url, write_csv(tmp_path / "second.csv", rows_of(2, start=80_000)))
    other.get_by_role("button", name=re.compile(r"^Send 2 calls")).click()
    other.get_by_role("button", name="Yes, send them").click()
    expect(other.get_by_role("alert")).to_contain_text("already sending")

    page.goto(run_url)
    page.get_by_role("button", name="Stop").click()
    expect(page.locator("#state")).to_have_text(
        re.compile(r"^Stopped, as you asked: the rows not yet sent are pending"), timeout=20_000)
    expect(page.get_by_role("link", name="Download the results workbook")).to_be_visible()
    expect(page.locator('[data-count="pending"]')).not_to_have_text("0")
    page.goto(url)  # the start page lists the page's runs as they stand
    expect(page.get_by_role("region", name="Sent from this page").get_by_role("link", name="long.csv")).to_be_visible()

    with Ledger.open(served["ledger"]):  # a CLI (or cron) run holds the ledger's lock
        other.reload()
        other.get_by_role("button", name=re.compile(r"^Send 2 calls")).click()
        other.get_by_role("button", name="Yes, send them").click()
        expect(other.get_by_role("alert")).to_contain_text("another batch-dispose run is using the ledger")


def test_sigterm_stops_the_run_writes_the_workbook_and_exits_0(tmp_path: Path) -> None:
    """SIGTERM to `serve` during a run stops it as in the CLI (workbook written, rest pending), then exits 0."""
    import httpx

    with start_in_thread(SimConfig(token=TOKEN, latency_ms=100)) as sim:
        process, url = start_serve(sim.base_url, tmp_path, "--concurrency", "1")
        try:
            source = write_csv(tmp_path / "calls.csv", rows_of(50))
            headers = {"origin": url.rstrip("/")}
            with open(source, "rb") as handle:
                upload_id = httpx.post(url + "api/files", files={"file": ("calls.csv", handle)},
                                       headers=headers).json()["id"]
            assert httpx.post(f"{url}api/files/{upload_id}/run", headers=headers).status_code == 202
            time.sleep(0.5)
        finally:
            code, err = stop_serve(process)
        assert code == 0, err
        workbooks = list((tmp_path / "reports").glob("calls-results-*.xlsx"))
        assert len(workbooks) == 1
        statuses = list(statuses_by_row(workbooks[0]).values())
        assert statuses.count("pending") > 0 and statuses.count("disposed") > 0
        assert sum(sim.stats.received.values()) == statuses.count("disposed")


def test_a_file_without_the_expected_header_lets_the_person_pick_the_columns(page: Any, served: dict[str, Any],
                                                                             tmp_path: Path) -> None:
    """Unknown column names show the CLI's sentence and the first rows (in their own scrolling box on a phone);
    the person picks the header row and the columns and the file is checked again; a check that still lacks a
    column answers with one sentence, the first check's sentence no longer shown beside it."""
    from playwright.sync_api import expect


    source = write_xlsx(tmp_path / "crm export.xlsx", [["Z1", 501, "Interested", "ok"], ["Z2", 502, "Callback", ""]],
                        header=["Reference", "Log number", "Outcome", "Free text"])
    page.goto(served["url"])
    page.get_by_label("Choose a file").set_input_files(str(source))
    expect(page.get_by_role("heading", name=re.compile("Which columns"))).to_be_visible()
    expect(page.get_by_role("alert").first).to_contain_text("missing")
    expect(page.get_by_role("table", name=re.compile("The first rows"))).to_contain_text("Reference")
    page.set_viewport_size({"width": 390, "height": 800})
    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # the rows scroll in their box
    page.set_viewport_size({"width": 1280, "height": 900})
    page.get_by_label("Row 1 is the header").check()
    page.get_by_label("callID column", exact=True).select_option("Reference")
    page.get_by_role("button", name="Check again").click()
    expect(page.locator("#columns-error")).to_contain_text("there is no notes column")  # Log number, Outcome: found
    expect(page.locator("#columns-sentence")).to_have_text("")
    for field, header in (("logID", "Log number"), ("disposition", "Outcome"), ("notes", "Free text")):
        page.get_by_label(f"{field} column", exact=True).select_option(header)
    shot(page, "2b-columns")
    page.get_by_role("button", name="Check again").click()
    expect(page.get_by_role("button", name=re.compile(r"^Send 2 calls to"))).to_be_visible()


def test_a_call_left_unknown_is_recorded_from_its_lookup(page: Any, served: dict[str, Any]) -> None:
    """A call a killed run left unknown: its lookup explains, the person records "It was disposed in Ryng"
    with a note, and the lookup then shows it disposed (later runs skip it)."""
    from playwright.sync_api import expect

    from batch_dispose.client import base_url_for
    from batch_dispose.models import CallRequest, Outcome, Status

    host = base_url_for(base_url=served["sim"].base_url)
    call = CallRequest(index=0, row=2, call_id="UNK-77", log_id=77, disposition="Interested", notes="")
    with Ledger.open(served["ledger"]) as ledger:  # what a run that lost the reply leaves behind
        run = ledger.begin_run(host, "crm.csv", "")
        ledger.commit(host, run, [], [call])
        ledger.commit(host, run, [(call, Outcome(Status.UNKNOWN, "sent, but no reply within 30 s", None, 1,
                                                 "2026-11-30T10:00:00.000Z"))], [])
        ledger.end_run(run, {Status.UNKNOWN: 1})
    page.goto(served["url"] + "history?call=unk-77")  # typed as people type it: call IDs are case-sensitive
    expect(page.get_by_text("The ledger has no record of call unk-77")).to_be_visible()
    page.get_by_role("link", name="UNK-77").click()
    answer = page.get_by_role("region", name=re.compile("What the ledger knows of UNK-77"))
    expect(answer).to_contain_text("it is not known whether Ryng ended the call")
    page.get_by_label("Note (optional)").fill("ended at 18:02 in Ryng")
    page.get_by_role("button", name="It was disposed in Ryng").click()
    expect(answer.locator(".status").first).to_have_text("disposed")
    expect(answer).to_contain_text("after checking in Ryng: ended at 18:02 in Ryng")
    expect(page.get_by_role("button", name="It was disposed in Ryng")).to_have_count(0)


def test_history_fits_a_phone_and_shows_times_as_people_read_them(page: Any, served: dict[str, Any],
                                                                   tmp_path: Path) -> None:
    """At 390 px the History page is no wider than the screen (its tables scroll inside it), and its times
    read like the rest of the tool's (local, to the second, with the offset), not as raw ISO strings."""
    from playwright.sync_api import expect

    upload(page, served["url"], write_csv(tmp_path / "phone.csv", rows_of(1, start=91_000)))
    page.get_by_role("button", name=re.compile(r"^Send 1 call")).click()
    page.get_by_role("button", name="Yes, send them").click()
    expect(page.locator("#state")).to_have_text("Finished.", timeout=20_000)
    page.set_viewport_size({"width": 390, "height": 800})
    page.goto(served["url"] + "history")
    runs = page.get_by_role("table", name="Runs")
    expect(runs).to_contain_text("phone.csv")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4}", runs.inner_text())
    assert not re.search(r"T\d\d:\d\d:\d\d\.\d+Z", runs.inner_text())
