"""The ops page's JSON API and pages, in-process (Starlette's TestClient) over real files and the simulator."""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from batch_dispose.credentials import Secret
from batch_dispose.ledger import Ledger
from batch_dispose.settings import Settings
from batch_dispose.web import uploads
from batch_dispose.web.app import create_app
from tests.conftest import HEADER, TOKEN, free_port, read_results, rows_of, write_csv, write_xlsx

FIXTURES = Path(__file__).parent / "fixtures"
ORIGIN = "http://127.0.0.1:8080"
XSS = ["<script>alert(1)</script>", "<img src=x onerror=alert(1)>"]


class Page:
    """A TestClient on the page's app that sends the page's own Origin, and remembers every response."""

    def __init__(self, client: Any, settings: Settings) -> None:
        self.client, self.settings, self.texts = client, settings, []

    def request(self, method: str, url: str, **kwargs: Any) -> Any:
        headers = {"origin": ORIGIN, **kwargs.pop("headers", {})}
        response = self.client.request(method, url, headers=headers, **kwargs)
        self.texts.append(response.text + json.dumps(dict(response.headers)))
        return response

    def upload(self, path: Path, name: str | None = None) -> Any:
        with open(path, "rb") as handle:
            return self.request("POST", "/api/files", files={"file": (name or path.name, handle)})

    def wait(self, run: str, timeout: float = 20) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            view = self.request("GET", f"/api/runs/{run}").json()
            if view["state"] != "running":
                return view  # type: ignore[no-any-return]
            time.sleep(0.05)
        raise AssertionError("the run did not end")


@pytest.fixture
def make_page(tmp_path: Path) -> Iterator[Callable[..., Page]]:
    """Start the page's app (lifespan included) for a simulator; stopped after the test."""
    opened: list[Any] = []

    def make(sim: Any, *, passcode: str | None = None, **settings: Any) -> Page:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # starlette 1.x warns that its TestClient prefers httpx2
            from starlette.testclient import TestClient
        config = Settings(base_url=sim.base_url, reports_dir=tmp_path / "reports", ledger=tmp_path / "ledger.sqlite",
                          **settings)
        app = create_app(config, Secret(TOKEN), passcode=passcode, loopback_only=passcode is None)
        client = TestClient(app, base_url=ORIGIN, follow_redirects=False)
        client.__enter__()
        opened.append(client)
        return Page(client, config)

    yield make
    for client in opened:
        client.__exit__(None, None, None)


def test_upload_shows_what_was_understood_and_the_invalid_rows(make_page, sim) -> None:  # type: ignore[no-untyped-def]
    """A LibreOffice workbook uploaded is checked as `validate` checks it: columns, counts, the invalid rows."""
    page = make_page(sim)
    response = page.upload(FIXTURES / "libreoffice_calls.xlsx")
    assert response.status_code == 201
    body = response.json()
    assert body["rows"] == 9 and body["counts"]["ready"] == 5 and body["counts"]["invalid"] == 4
    assert body["columns"]["fields"] == {"callID": "Call ID", "logID": "log_id", "disposition": "Disposition Name",
                                         "notes": "NOTE"}
    assert body["columns"]["carried"] == ["Agent"] and body["columns"]["sheet"] == "Calls"
    assert [p["row"] for p in body["problems"]] == [8, 9, 11, 12]
    assert all(p["status"] == "invalid" and p["message"] for p in body["problems"])
    assert "********" in body["previews"][0] and TOKEN not in json.dumps(body)
    assert page.request("GET", f"/api/files/{body['id']}").json() == body
    assert sim.stats.requests == 0


@pytest.mark.parametrize(("name", "content", "words"), [
    ("header_only.csv", b"callID,logID,disposition,notes\n", "no calls under it"),
    ("no_logid.csv", b"callID,disposition,notes\nC1,Interested,x\n", "'logID' is missing"),
    ("photo.pdf", b"%PDF-1.4", "not a supported file type"),
    ("fake.xlsx", b"this is not a workbook", "not a .xlsx workbook"),
])
def test_unusable_file_gets_the_cli_sentence(make_page, sim, tmp_path: Path, name: str, content: bytes,  # type: ignore[no-untyped-def]
                                             words: str) -> None:
    """An unusable upload is refused with 422 and the CLI's sentence, naming the file as uploaded (no server path)."""
    page = make_page(sim)
    source = tmp_path / name
    source.write_bytes(content)
    response = page.upload(source)
    assert response.status_code == 422
    error = response.json()["error"]
    assert words in error and error.startswith(name) and str(tmp_path) not in error


def test_upload_over_the_limit_is_cut_off_without_reading_it(make_page, sim) -> None:  # type: ignore[no-untyped-def]
    """An upload announcing more than 50 MB is refused with 413 at once, and nothing is kept."""
    page = make_page(sim)
    headers = {"content-type": "multipart/form-data; boundary=b", "content-length": str(60 * 2**20)}
    response = page.request("POST", "/api/files", content=b"x" * 1024, headers=headers)
    assert response.status_code == 413 and "over the 50.00 MB limit" in response.json()["error"]


@pytest.mark.parametrize("field", ['name="file"; filename="big.csv"', 'name="other"'])
def test_streamed_upload_stops_reading_at_the_limit(tmp_path: Path, field: str) -> None:
    """A chunked upload with no length (in the file or any other field) is read only until it passes the limit,
    then refused, and nothing is kept."""
    read = 0

    async def body():  # type: ignore[no-untyped-def]
        nonlocal read
        yield f'--b\r\nContent-Disposition: form-data; {field}\r\n\r\n'.encode()
        for _ in range(1000):
            read += 1
            yield b"x" * 1024

    with pytest.raises(uploads.UploadError) as caught:
        asyncio.run(uploads.receive(body(), "multipart/form-data; boundary=b", tmp_path, max_bytes=10 * 1024))
    assert caught.value.status == 413
    assert read <= 12 + uploads.FRAMING_SLACK // 1024 and list(tmp_path.iterdir()) == []


def test_upload_name_never_becomes_a_path(make_page, sim, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A file named '../../evil.csv' is stored inside the page's own upload folder under a plain name."""
    page = make_page(sim)
    source = write_csv(tmp_path / "calls.csv", rows_of(2))
    response = page.upload(source, name="../../evil.csv")
    assert response.status_code == 201
    stored = list((page.settings.reports_dir / "uploads").rglob("*.csv"))
    assert len(stored) == 1 and stored[0].name == "evil.csv"
    assert stored[0].parent.parent == page.settings.reports_dir / "uploads"
    assert not (tmp_path.parent / "evil.csv").exists()


def test_duplicates_count_the_rows_that_repeat_a_call_even_with_another_problem(make_page, sim, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The page's "duplicates" figure counts the rows invalid as repeats of an earlier callID (whatever else is
    wrong with them), and follows a fix made in the page."""
    page = make_page(sim)
    rows = [["1000", 1, "Interested", ""], ["1001", 2, "Interested", ""], ["1000", 3, "Interested", "again"],
            ["1001", "x", "Interested", "again, bad logID"], ["C5", "y", "Interested", "bad logID only"]]
    upload = page.upload(write_csv(tmp_path / "calls.csv", rows)).json()
    assert upload["counts"]["invalid"] == 3 and upload["duplicates"] == 2
    fixed = page.request("PATCH", f"/api/files/{upload['id']}/rows/4", json={"callID": "1002"}).json()
    assert fixed["duplicates"] == 1  # the answer to the fix carries it, so the figure changes at once
    assert page.request("GET", f"/api/files/{upload['id']}").json()["duplicates"] == 1


def test_fixed_row_is_sent_with_the_fixed_values_and_excluded_row_is_not_sent(  # type: ignore[no-untyped-def]
        make_page, sim, tmp_path) -> None:
    """A row fixed by PATCH turns ready at once and is sent with the new values; an excluded row ends pending."""
    page = make_page(sim)
    rows = [*rows_of(3), ["C9", "87.5", "Interested", "bad logID"]]
    upload = page.upload(write_csv(tmp_path / "calls.csv", rows)).json()
    assert upload["counts"]["invalid"] == 1 and upload["to_send"] == 3
    fixed = page.request("PATCH", f"/api/files/{upload['id']}/rows/5", json={"logID": 87, "notes": "fixed"})
    assert fixed.status_code == 200
    assert fixed.json()["status"] == "ready" and fixed.json()["row"] == 5 and fixed.json()["to_send"] == 4
    excluded = page.request("PATCH", f"/api/files/{upload['id']}/rows/2", json={"excluded": True}).json()
    assert excluded["status"] == "pending" and "excluded" in excluded["message"]
    started = page.request("POST", f"/api/files/{upload['id']}/run")
    assert started.status_code == 202
    view = page.wait(started.json()["run"])
    assert view["state"] == "finished"
    assert view["counts"]["disposed"] == 3 and view["counts"]["pending"] == 1
    assert view["texts"]["summary"].endswith("The 1 pending row was excluded on the check page.")
    sent = {r.call_id: json.loads(r.body) for r in sim.stats.recorded}
    assert set(sent) == {"1001", "1002", "C9"}
    assert sent["C9"] == {"logID": 87, "dispositionName": "Interested", "notes": "fixed"}
    workbook = page.request("GET", f"/api/runs/{view['run']}/workbook")
    assert workbook.status_code == 200
    saved = tmp_path / "downloaded.xlsx"
    saved.write_bytes(workbook.content)
    _, records, _ = read_results(saved)
    assert {r["row"]: r["status"] for r in records} == {2: "pending", 3: "disposed", 4: "disposed", 5: "disposed"}
    assert all(TOKEN not in text for text in page.texts)


def test_a_fix_in_the_page_gets_the_files_warnings_anew_and_the_run_shows_its_own(  # type: ignore[no-untyped-def]
        make_page, sim, tmp_path) -> None:
    """A blank disposition fixed in the page as "Intrested", beside "Interested" rows: the answer to the edit
    carries the look-alike warning (shown at once), and the finished run's view carries the run's warnings
    (here that the ledger knew nothing of this host yet), as the CLI prints them."""
    page = make_page(sim)
    rows = [["1000", "1", "Interested", ""], ["1001", "2", "Interested", ""], ["1002", "3", "", ""]]
    upload = page.upload(write_csv(tmp_path / "calls.csv", rows)).json()
    assert not any("look alike" in w for w in upload["warnings"])
    fixed = page.request("PATCH", f"/api/files/{upload['id']}/rows/4", json={"disposition": "Intrested"}).json()
    assert fixed["status"] == "ready"
    assert any("Dispositions that look alike: 'Intrested' (1 row: row 4) beside 'Interested' (2 rows)" in w
               for w in fixed["warnings"]), fixed["warnings"]
    view = page.wait(page.request("POST", f"/api/files/{upload['id']}/run").json()["run"])
    assert any(w.startswith("No earlier run to http://127.0.0.1:") for w in view["warnings"]), view["warnings"]
    assert "so no row was skipped as sent before" in page.request("GET", f"/runs/{view['run']}").text
    assert not any("ledger.sqlite" in w for w in view["warnings"])  # no server path on the page


def test_run_refused_with_409_while_another_run_holds_the_lock(  # type: ignore[no-untyped-def]
        make_page, sim, tmp_path) -> None:
    """While a CLI run holds the ledger's lock, a run from the page gets 409 and a sentence; nothing is sent."""
    page = make_page(sim)
    upload = page.upload(write_csv(tmp_path / "calls.csv", rows_of(2))).json()
    with Ledger.open(page.settings.ledger_path):
        response = page.request("POST", f"/api/files/{upload['id']}/run")
    assert response.status_code == 409
    assert "another batch-dispose run is using the ledger" in response.json()["error"]
    assert sim.stats.requests == 0
    assert page.request("POST", f"/api/files/{upload['id']}/run").status_code == 202  # free again: it can go


def test_second_run_while_the_page_is_sending_gets_409_and_stop_leaves_rows_pending(make_page, simulator,  # type: ignore[no-untyped-def]
                                                                                     tmp_path) -> None:
    """One run at a time: a second send gets 409; Stop ends the run gracefully with the rest pending and a workbook."""
    slow = simulator(latency_ms=100)
    page = make_page(slow, concurrency=1)
    first = page.upload(write_csv(tmp_path / "a.csv", rows_of(40))).json()
    second = page.upload(write_csv(tmp_path / "b.csv", rows_of(2, start=5000))).json()  # checked while it runs
    run = page.request("POST", f"/api/files/{first['id']}/run").json()["run"]
    refused = page.request("POST", f"/api/files/{second['id']}/run")
    assert refused.status_code == 409 and "already sending" in refused.json()["error"]
    assert page.request("POST", f"/api/runs/{run}/stop").status_code == 202
    view = page.wait(run)
    assert view["state"] == "stopped" and view["counts"]["pending"] > 0
    assert view["counts"]["disposed"] + view["counts"]["pending"] == 40
    assert Path(view["results"]).is_file()
    events = page.request("GET", f"/api/runs/{run}/events")
    assert events.headers["content-type"].startswith("text/event-stream")
    assert "event: end" in events.text and '"state": "stopped"' in events.text


def test_events_stream_the_run_until_its_end(make_page, simulator, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Server-sent events carry the run's counts as they change and a final event with the finished state."""
    page = make_page(simulator(latency_ms=20), concurrency=2)
    upload = page.upload(write_csv(tmp_path / "calls.csv", rows_of(30))).json()
    run = page.request("POST", f"/api/files/{upload['id']}/run").json()["run"]
    text = page.request("GET", f"/api/runs/{run}/events").text
    events = [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: ")]
    assert len(events) >= 2 and events[0]["state"] == "running"
    assert events[-1]["state"] == "finished" and events[-1]["counts"]["disposed"] == 30
    assert set(events[-1]["counts"]) == {"disposed", "skipped", "unauthorized", "failed", "invalid", "pending",
                                         "unknown"}


@pytest.mark.parametrize("headers", [
    {"origin": "http://evil.example"},
    {"origin": "null"},
    {"origin": "", "referer": "http://evil.example/page"},
    {"origin": ""},
])
def test_cross_origin_writes_are_refused(make_page, sim, tmp_path, headers: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    """A POST or PATCH from another origin (or with no Origin or Referer at all) is refused with 403; nothing starts."""
    page = make_page(sim)
    upload = page.upload(write_csv(tmp_path / "calls.csv", rows_of(2))).json()
    sent = {key: value for key, value in headers.items() if value}
    client = page.client
    client.headers.pop("origin", None)
    response = client.post(f"/api/files/{upload['id']}/run", headers=sent)
    assert response.status_code == 403 and "did not come from the page" in response.json()["error"]
    assert client.patch(f"/api/files/{upload['id']}/rows/2", json={"excluded": True}, headers=sent).status_code == 403
    assert sim.stats.requests == 0


def test_same_origin_referer_is_accepted_when_origin_is_absent(make_page, sim, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A browser that sends only a Referer from the page itself may write."""
    page = make_page(sim)
    source = write_csv(tmp_path / "calls.csv", rows_of(1))
    with open(source, "rb") as handle:
        response = page.client.post("/api/files", files={"file": ("calls.csv", handle)},
                                    headers={"referer": f"{ORIGIN}/"})
    assert response.status_code == 201


def test_every_response_has_the_security_headers_and_spreadsheet_text_is_escaped(make_page, sim, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Pages forbid inline scripts (CSP) and show <script> notes and carried cells as text, never as markup."""
    page = make_page(sim)
    rows = [["C1", "1", "Interested", XSS[0], XSS[1]], ["C2", "x", "Interested", XSS[1], XSS[0]]]
    upload = page.upload(write_csv(tmp_path / "x.csv", rows, header=["callID", "logID", "disposition", "notes",
                                                                     "<b>Agent</b>"])).json()
    html = page.request("GET", f"/files/{upload['id']}")
    assert html.status_code == 200
    csp = html.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
    assert html.headers["x-content-type-options"] == "nosniff"
    assert "<script>alert" not in html.text and "<img src=x" not in html.text and "<b>Agent" not in html.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html.text and "&lt;img src=x onerror=alert(1)&gt;" in html.text
    assert html.text.count("<script") == 1 and 'src="/static/page.js"' in html.text
    assert "onerror" not in html.text.replace("onerror=alert(1)&gt;", "")


def test_history_and_call_lookup_show_cli_runs_too(make_page, sim, cli, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Runs of the CLI appear in GET /api/runs, and GET /api/calls/{id} says when a call was disposed."""
    page = make_page(sim)
    source = write_xlsx(tmp_path / "cli.xlsx", rows_of(2))
    assert cli("run", source, "--base-url", sim.base_url, "--ledger", page.settings.ledger_path).code == 0
    runs = page.request("GET", "/api/runs").json()["runs"]
    assert len(runs) == 1 and runs[0]["name"] == "cli.xlsx" and runs[0]["counts"]["disposed"] == 2
    call = page.request("GET", "/api/calls/1000").json()
    assert call["known"] and call["hosts"][0]["status"] == "disposed" and call["hosts"][0]["disposed_at"]
    assert call["events"][0]["file"].endswith("cli.xlsx") and call["events"][0]["status"] == "disposed"
    assert page.request("GET", "/api/calls/nope").json()["known"] is False
    again = page.upload(source).json()  # the check consults the ledger, as validate with a target does
    assert again["counts"]["skipped"] == 2 and again["to_send"] == 0
    history = page.request("GET", "/history?call=1000")
    assert history.status_code == 200 and "disposed at" in history.text


def test_send_the_failed_rows_again_reruns_the_results_workbook(make_page, simulator, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """After a run with failures, "send again" checks its results workbook: disposed rows skipped, failed ones ready."""
    page = make_page(simulator(fail_ids={"1001"}))
    upload = page.upload(write_csv(tmp_path / "calls.csv", rows_of(3))).json()
    view = page.wait(page.request("POST", f"/api/files/{upload['id']}/run").json()["run"])
    assert view["counts"]["failed"] == 1
    again = page.request("POST", f"/api/runs/{view['run']}/again")
    assert again.status_code == 201
    body = again.json()
    assert body["counts"]["skipped"] == 2 and body["counts"]["ready"] == 1 and body["file"].startswith("calls-results")


def test_send_the_rest_again_keeps_a_row_the_person_excluded_out(make_page, simulator, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A row excluded on the check page stays excluded when the rest is sent again (it is pending in the
    results workbook, which "again" checks): the person decided that call must not be ended."""
    sim = simulator(fail_ids={"1003"})
    page = make_page(sim)
    upload = page.upload(write_csv(tmp_path / "calls.csv", rows_of(4))).json()
    assert page.request("PATCH", f"/api/files/{upload['id']}/rows/3", json={"excluded": True}).status_code == 200
    view = page.wait(page.request("POST", f"/api/files/{upload['id']}/run").json()["run"])
    assert view["counts"]["failed"] == 1 and "1001" not in sim.stats.received
    again = page.request("POST", f"/api/runs/{view['run']}/again").json()
    assert again["counts"]["pending"] == 1 and again["to_send"] == 1 and again["excluded"] == [3], again["counts"]
    page.wait(page.request("POST", f"/api/files/{again['id']}/run").json()["run"])
    assert "1001" not in sim.stats.received and sim.stats.received["1003"] == 2


def test_a_row_excluded_in_the_page_stays_out_when_its_workbook_goes_through_the_cli(make_page, simulator, cli,  # type: ignore[no-untyped-def]
                                                                                     tmp_path) -> None:
    """The page's results workbook run again by `run` (or dropped into a sweep's inbox) does not end the call a
    person excluded; upload it to the page and the row is excluded there too, its box ticked; clear its status
    cell in the file, and the next run sends it."""
    from openpyxl import load_workbook

    sim = simulator()
    page = make_page(sim)
    upload = page.upload(write_csv(tmp_path / "calls.csv", rows_of(3))).json()
    page.request("PATCH", f"/api/files/{upload['id']}/rows/3", json={"excluded": True})
    view = page.wait(page.request("POST", f"/api/files/{upload['id']}/run").json()["run"])
    results = Path(view["results"])
    ledger = ["--ledger", page.settings.ledger_path, "--base-url", sim.base_url]
    again = cli("run", results, *ledger, "--json")
    assert again.json()["counts"]["pending"] == 1 and "1001" not in sim.stats.received, again.err
    in_page = page.upload(Path(again.json()["results"])).json()
    assert in_page["excluded"] == [3] and in_page["to_send"] == 0
    workbook = load_workbook(again.json()["results"])
    sheet = workbook["Results"]
    sheet.cell(3, 2).value = "Checked by Bob, leave it: " + sheet.cell(3, 2).value  # a note beside the tool's words
    workbook.save(tmp_path / "noted.xlsx")
    noted = cli("run", tmp_path / "noted.xlsx", *ledger, "--json")
    assert noted.json()["counts"]["pending"] == 1 and "1001" not in sim.stats.received, noted.err
    sheet.cell(3, 1).value = None  # the person clears the status of row 3: send it after all
    workbook.save(tmp_path / "include.xlsx")
    included = cli("run", tmp_path / "include.xlsx", *ledger, "--json")
    assert included.json()["counts"]["disposed"] == 1 and sim.stats.received["1001"] == 1, included.err


def test_a_run_that_stops_by_itself_says_why_in_plain_words(make_page, simulator, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A server that refuses every connection, and one that rejects the token: the run's state says why it
    stopped (not just "Stopped."), the progress line counts calls disposed (not rows attempted), and "Send the
    rest again" is offered only where sending again can change something."""
    from types import SimpleNamespace

    port = free_port()
    page = make_page(SimpleNamespace(base_url=f"http://127.0.0.1:{port}"))
    upload = page.upload(write_csv(tmp_path / "calls.csv", rows_of(300))).json()
    view = page.wait(page.request("POST", f"/api/files/{upload['id']}/run").json()["run"])
    assert view["stop_reason"] == "unreachable", view["counts"]
    assert view["texts"]["state"] == (f"Stopped: could not connect to the server (connection refused by 127.0.0.1:"
                                      f"{port}), so nothing more was sent. Check the network (or ask whoever runs "
                                      f"the page), then send the rest again.")
    assert view["texts"]["progress"] == "0 of 300 calls disposed"
    assert view["again"] is True
    html = page.request("GET", f"/runs/{view['run']}").text
    assert "connection refused by 127.0.0.1" in html and "0 of 300 calls disposed" in html

    rejecting = make_page(simulator(token="someone-elses-token"))
    upload = rejecting.upload(write_csv(tmp_path / "more.csv", rows_of(40, start=5000))).json()
    view = rejecting.wait(rejecting.request("POST", f"/api/files/{upload['id']}/run").json()["run"])
    assert view["stop_reason"] == "unauthorized"
    assert view["texts"]["state"].startswith("Stopped: the server rejected the access token 3 times in a row")
    assert view["again"] is False  # the same token would only be rejected again


def test_a_call_left_unknown_is_settled_from_the_page_with_what_was_seen_in_ryng(  # type: ignore[no-untyped-def]
        make_page, simulator, tmp_path) -> None:
    """A call whose reply was lost: its lookup offers to record what the person saw in Ryng; recorded as
    disposed (with who and the note), the same file sent again skips it; a call the ledger does not know, or a
    body that says nothing, gets a sentence."""
    sim = simulator(scripts={"1001": [502]})
    page = make_page(sim)
    upload = page.upload(write_csv(tmp_path / "calls.csv", rows_of(3))).json()
    view = page.wait(page.request("POST", f"/api/files/{upload['id']}/run").json()["run"])
    assert view["counts"]["unknown"] == 1
    run_html = page.request("GET", f"/runs/{view['run']}").text
    assert "look each call up under <a href=\"/history\">History</a>" in run_html
    assert [(p["call"], p["status"]) for p in view["problems"]] == [("1001", "unknown")]
    assert '<a href="/history?call=1001">1001</a>' in run_html  # each unknown call links to its lookup
    lookup = page.request("GET", "/history?call=1001").text
    assert "It was disposed in Ryng" in lookup and "Look the call up in Ryng" in lookup
    assert page.request("POST", "/api/calls/1001/resolve", json={"as": "maybe"}).status_code == 422
    confirmed = page.request("POST", "/api/calls/1000/resolve", json={"as": "failed"})  # the server said 200
    assert confirmed.status_code == 409 and "is disposed, not unknown" in confirmed.json()["error"]
    missing = page.request("POST", "/api/calls/NOPE-1/resolve", json={"as": "disposed"})
    assert missing.status_code == 404 and "has no record of call NOPE-1" in missing.json()["error"]
    settled = page.request("POST", "/api/calls/1001/resolve", json={"as": "disposed", "note": "seen ended at 18:02"})
    assert settled.status_code == 200, settled.text
    (state,) = settled.json()["hosts"]
    assert state["status"] == "disposed"
    assert "(on the ops page) after checking in Ryng: seen ended at 18:02" in settled.json()["events"][0]["message"]
    assert "It was disposed in Ryng" not in page.request("GET", "/history?call=1001").text
    again = page.upload(write_csv(tmp_path / "calls.csv", rows_of(3))).json()
    assert again["counts"]["skipped"] == 3 and again["to_send"] == 0
    assert sim.stats.received["1001"] == 1


FLAG = re.compile(r"(?<![\w-])--[a-z][a-z-]+|batch-dispose resolve")


def test_the_page_names_its_own_controls_never_the_command_lines_flags(  # type: ignore[no-untyped-def]
        make_page, simulator, tmp_path) -> None:
    """Sentences the page shares with the CLI (a missing notes or logID column, look-alike dispositions, a row
    left unknown, a row already disposed whose content changed) name the page's controls, never `--column`,
    `--no-notes`, `--retry-unknown`, `--force` or `batch-dispose resolve`."""
    page = make_page(simulator(scripts={"1001": [502]}))
    no_notes = page.upload(write_csv(tmp_path / "a.csv", [["1", "2", "Interested"]], header=HEADER[:3]))
    assert no_notes.status_code == 422 and "tick “There is no notes column” there" in no_notes.json()["error"]
    no_log = page.upload(write_csv(tmp_path / "b.csv", [["1", "Interested", ""]],
                                   header=["callID", "disposition", "notes"]))
    assert no_log.status_code == 422 and "or choose the column below" in no_log.json()["error"]
    rows = [["1000", "1", "Interested", ""], ["1001", "2", "Interested", ""], ["1002", "3", "Intrested", ""]]
    first = page.upload(write_csv(tmp_path / "calls.csv", rows)).json()
    assert any("look alike" in warning for warning in first["warnings"])
    view = page.wait(page.request("POST", f"/api/files/{first['id']}/run").json()["run"])
    assert view["counts"]["unknown"] == 1
    rows[0][2] = "Callback"  # disposed as Interested, now says Callback: skipped, both named
    again = page.upload(write_csv(tmp_path / "calls.csv", rows)).json()
    unknown = next(p["message"] for p in again["problems"] if p["status"] == "unknown")
    assert "record what you saw under History" in unknown
    skipped = next(p["message"] for p in again["problems"] if p["status"] == "skipped" and "differs" in p["message"])
    assert skipped.endswith("(it is not sent again)")
    lookup = page.request("GET", "/api/calls/1001")  # the ledger keeps the CLI's words: History shows the page's
    assert "record what you saw under History" in lookup.json()["events"][0]["message"]
    shown = [no_notes.text, no_log.text, json.dumps(first), json.dumps(view), json.dumps(again), lookup.text,
             page.request("GET", "/history?call=1001").text]
    assert not any(FLAG.search(text) for text in shown), [FLAG.findall(text) for text in shown]


def test_after_a_restart_history_still_offers_each_runs_workbook(make_page, sim, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The page restarted (a new app on the same ledger and reports folder): History still links the results
    workbook of the run sent before, from the ledger, and serves it; a workbook the ledger records outside the
    reports folder is never served."""
    before = make_page(sim)
    upload = before.upload(write_csv(tmp_path / "calls.csv", rows_of(2))).json()
    view = before.wait(before.request("POST", f"/api/files/{upload['id']}/run").json()["run"])
    assert view["state"] == "finished"
    after = make_page(sim)  # the same settings: what `serve` finds after a restart
    (entry,) = after.request("GET", "/api/runs").json()["runs"]
    assert entry["page_run"] is None and entry["workbook"] == f"/api/history/{entry['id']}/workbook"
    download = after.request("GET", entry["workbook"])
    assert download.status_code == 200 and download.content[:2] == b"PK"
    assert "download" in after.request("GET", "/history").text
    with Ledger.open(after.settings.ledger_path) as ledger:  # a ledger that names a file elsewhere
        ledger.note_results(entry["id"], tmp_path / "elsewhere.xlsx")
    (tmp_path / "elsewhere.xlsx").write_bytes(download.content)
    assert after.request("GET", f"/api/history/{entry['id']}/workbook").status_code == 404
    assert after.request("GET", "/api/runs").json()["runs"][0]["workbook"] is None


def test_the_check_page_says_how_many_fine_rows_it_lists_and_one_column_serves_one_field(  # type: ignore[no-untyped-def]
        make_page, sim, tmp_path) -> None:
    """Past 500 rows without problems the page says it lists the first 500 (not a silent cut); choosing one
    column for two fields on the columns screen gets its own sentence, not the first error again."""
    page = make_page(sim)
    upload = page.upload(write_csv(tmp_path / "big.csv", rows_of(510))).json()
    assert "the first 500 of the 510 rows without problems are listed" in page.request(
        "GET", f"/files/{upload['id']}").text
    no_log = page.upload(write_csv(tmp_path / "b.csv", [["1", "Interested", ""]],
                                   header=["callID", "disposition", "notes"])).json()
    twice = page.request("POST", f"/api/files/{no_log['id']}/columns",
                         json={"columns": {"callID": "callID", "logID": "callID", "disposition": "disposition"}})
    assert twice.status_code == 422
    assert twice.json()["error"].startswith("The column “callID” cannot be both callID and logID")


def test_passcode_needs_a_session_from_the_login_form(make_page, sim) -> None:  # type: ignore[no-untyped-def]
    """With a passcode, pages redirect to the login form and the API answers 401 until the right passcode is given."""
    page = make_page(sim, passcode="open sesame")
    assert page.request("GET", "/").status_code == 303
    assert page.request("GET", "/api/runs").status_code == 401
    assert page.request("GET", "/login").status_code == 200
    started = time.monotonic()
    wrong = page.request("POST", "/login", data={"passcode": "guess"})
    assert wrong.status_code == 401 and time.monotonic() - started >= 0.4  # slowed down
    right = page.request("POST", "/login", data={"passcode": "open sesame"})
    assert right.status_code == 303
    cookie = right.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    assert page.request("GET", "/api/runs").status_code == 200
    assert page.request("GET", "/").status_code == 200


def test_loopback_page_refuses_other_host_names(make_page, sim) -> None:  # type: ignore[no-untyped-def]
    """On loopback, a request whose Host is not loopback (DNS rebinding) is refused."""
    page = make_page(sim)
    assert page.request("GET", "/", headers={"host": "evil.example"}).status_code == 421
    assert page.request("GET", "/", headers={"host": "localhost:8080"}).status_code == 200


def test_uploads_not_sent_are_removed_after_a_day(tmp_path: Path) -> None:
    """An upload folder older than a day is removed unless a run used it."""
    old, sent, fresh = (tmp_path / name for name in ("old", "sent", "fresh"))
    for folder in (old, sent, fresh):
        folder.mkdir()
        (folder / "calls.csv").write_text("x")
    (sent / ".sent").touch()
    day_ago = time.time() - 2 * 24 * 3600
    for folder in (old, sent):
        os.utime(folder, (day_ago, day_ago))
    assert uploads.sweep_stale(tmp_path, keep=set()) == 1
    assert not old.exists() and sent.exists() and fresh.exists()


def test_serve_refuses_a_public_host_without_a_passcode(cli, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """`serve --host 0.0.0.0` without a passcode exits 2 with one sentence naming how to set one."""
    monkeypatch.delenv("BATCH_DISPOSE_PASSCODE", raising=False)
    result = cli("serve", "--host", "0.0.0.0", "--base-url", "http://127.0.0.1:9")
    assert result.code == 2
    assert "needs a passcode" in result.err and len(result.err.strip().splitlines()) == 1


def test_safe_name_keeps_only_a_plain_file_name() -> None:
    """Upload names lose folders and odd characters but keep their extension."""
    assert uploads.safe_name("../../etc/passwd.csv") == "passwd.csv"
    assert uploads.safe_name("C:\\Users\\x\\Day 27 (final).XLSX") == "Day 27 final.xlsx"
    assert uploads.safe_name("..csv") == "upload.csv"


def test_file_without_the_header_shows_its_first_rows_to_pick_from(make_page, sim, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A file whose columns are not recognised gets the CLI's sentence, its first rows and a page to pick columns."""
    page = make_page(sim)
    source = write_csv(tmp_path / "crm.csv", [["A1", "11", "Interested", "x"]],
                       header=["Reference", "Log number", "Outcome", "Free text"])
    response = page.upload(source)
    assert response.status_code == 422
    body = response.json()
    assert "missing" in body["error"] and body["error"].startswith("crm.csv") and body["needs_columns"] is True
    assert body["preview"][0] == {"row": 1, "cells": ["Reference", "Log number", "Outcome", "Free text"]}
    html = page.request("GET", f"/files/{body['id']}")
    assert html.status_code == 200 and "Reference" in html.text and "missing" in html.text
    assert page.request("GET", f"/api/files/{body['id']}").json()["needs_columns"] is True


def test_columns_picked_in_the_page_are_used_to_check_and_send(make_page, sim, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Mapping the columns in the page (as --column does) makes the file usable, and its rows are sent."""
    page = make_page(sim)
    source = write_csv(tmp_path / "crm.csv", [["A1", "11", "Interested", "x"], ["A2", "12", "Callback", "y"]],
                       header=["Reference", "Log number", "Outcome", "Free text"])
    upload = page.upload(source).json()
    mapping = {"callID": "Reference", "logID": "Log number", "disposition": "Outcome", "notes": "Free text"}
    checked = page.request("POST", f"/api/files/{upload['id']}/columns", json={"columns": mapping})
    assert checked.status_code == 200, checked.text
    assert checked.json()["counts"]["ready"] == 2
    view = page.wait(page.request("POST", f"/api/files/{upload['id']}/run").json()["run"])
    assert view["counts"]["disposed"] == 2
    assert json.loads(next(r.body for r in sim.stats.recorded if r.call_id == "A2"))["notes"] == "y"


def test_a_damaged_ledger_is_a_sentence_not_a_traceback(make_page, sim, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """When the ledger cannot be read, the page's API answers with the ledger's sentence (503), not a crash."""
    page = make_page(sim)
    page.settings.ledger_path.write_bytes(b"this is not a SQLite database at all" * 100)
    response = page.upload(write_csv(tmp_path / "calls.csv", rows_of(1)))
    assert response.status_code == 503 and str(page.settings.ledger_path) in response.json()["error"]
    assert page.request("GET", "/api/runs").status_code == 503
    assert list((page.settings.reports_dir / "uploads").iterdir()) == []
