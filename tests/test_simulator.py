"""Tests of the fake Ryng server, over real loopback sockets with httpx."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import httpx
import pytest

from batch_dispose.simulator import (
    ROUTE_PREFIX,
    RunningSimulator,
    SimConfig,
    parse_status_mix,
    serve,
    start_in_thread,
)

TOKEN = "simulator-token"
BODY = {"logID": 42, "dispositionName": "Sale", "notes": "called back"}
OK = {"error": False, "message": "Call disposed and ended.", "data": {}}
UNAUTHORIZED_BYTES = b'{"error": true, "message": "Unauthorized Token"}'
FAILED = {"error": True, "message": "Failed to dispose of call."}

Factory = Callable[..., tuple[RunningSimulator, httpx.Client]]


@pytest.fixture
def started() -> Iterator[Factory]:
    """Start simulators with a token-carrying client each; stop and close them all afterwards."""
    with ExitStack() as stack:

        def start(timeout: float = 5.0, **config: Any) -> tuple[RunningSimulator, httpx.Client]:
            sim = stack.enter_context(start_in_thread(SimConfig(**config)))
            client = stack.enter_context(
                httpx.Client(base_url=sim.base_url, headers={"x-access-token": TOKEN}, timeout=timeout)
            )
            return sim, client

        yield start


def end_call(client: httpx.Client, call_id: str, **kwargs: Any) -> httpx.Response:
    kwargs.setdefault("json", BODY)
    return client.patch(ROUTE_PREFIX + call_id, **kwargs)


def wait_for(condition: Callable[[], bool], timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.005)


# --- the vendor's API -------------------------------------------------------------------------


def test_success_answers_vendor_body_and_counts(started: Factory) -> None:
    """A valid end-call gets the vendor's exact 200 JSON body and is counted as received and disposed."""
    sim, client = started()
    response = end_call(client, "abc-1", json={**BODY, "notes": ""})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == OK
    assert sim.stats.received == {"abc-1": 1}
    assert sim.stats.disposed == {"abc-1": 1}
    assert sim.stats.answers == {"200": 1}
    assert (sim.stats.requests, sim.stats.route_requests, sim.stats.off_route) == (1, 1, 0)


@pytest.mark.parametrize("headers", [{"x-access-token": "wrong"}, {}], ids=["wrong", "missing"])
def test_bad_token_gets_exact_403(started: Factory, headers: dict[str, str]) -> None:
    """A wrong or missing token gets 403 with exactly the vendor's body and disposes nothing."""
    sim, _ = started()
    with httpx.Client(base_url=sim.base_url, headers=headers) as bare:
        response = end_call(bare, "abc-1")
    assert response.status_code == 403
    assert response.content == UNAUTHORIZED_BYTES
    assert sim.stats.answers == {"403": 1}
    assert not sim.stats.disposed


def test_params_from_query_string_are_accepted(started: Factory) -> None:
    """The three params may come as query-string params instead of a JSON body (notes may be empty)."""
    sim, client = started()
    params = {"logID": "7", "dispositionName": "No Answer", "notes": ""}
    response = end_call(client, "q-1", json=None, params=params)
    assert response.status_code == 200
    assert sim.stats.disposed == {"q-1": 1}
    assert sim.stats.recorded[0].query == "logID=7&dispositionName=No+Answer&notes="


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"json": {"logID": 1, "dispositionName": "Sale"}}, "notes"),
        ({"json": {"logID": "1", "dispositionName": "Sale", "notes": ""}}, "logID"),
        ({"json": {"logID": 1.0, "dispositionName": "Sale", "notes": ""}}, "logID"),
        ({"json": {"logID": True, "dispositionName": "Sale", "notes": ""}}, "logID"),
        ({"json": {"logID": 1, "dispositionName": 5, "notes": ""}}, "dispositionName"),
        ({"json": None, "params": {"logID": "12a", "dispositionName": "Sale", "notes": ""}}, "logID"),
        ({"json": None}, "logID, dispositionName, notes"),
        ({"json": None, "content": b"{not json"}, "JSON"),
    ],
    ids=[
        "missing-notes",
        "logid-string",
        "logid-float",
        "logid-bool",
        "disposition-int",
        "query-logid",
        "none",
        "bad-json",
    ],
)
def test_bad_params_get_400_naming_the_problem(started: Factory, kwargs: dict[str, Any], named: str) -> None:
    """Missing or ill-typed params get 400 with an error message naming what is wrong, and no disposal."""
    sim, client = started()
    response = end_call(client, "p-1", **kwargs)
    assert response.status_code == 400
    body = response.json()
    assert body["error"] is True and named in body["message"]
    assert sim.stats.answers == {"400": 1} and not sim.stats.disposed


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("PATCH", "/rest-api/v1/preview/calls/abc"),
        ("POST", ROUTE_PREFIX + "abc"),
        ("GET", ROUTE_PREFIX + "abc"),
        ("PATCH", ROUTE_PREFIX + "abc/extra"),
        ("PATCH", ROUTE_PREFIX + "a/b"),
        ("PATCH", ROUTE_PREFIX),
        ("PATCH", ROUTE_PREFIX + "abc/"),
    ],
)
def test_off_route_requests_get_404_and_are_counted(started: Factory, method: str, path: str) -> None:
    """Any other method or raw path gets 404 "Not found" and counts as off route, not as a route request."""
    sim, client = started()
    response = client.request(method, path, json=BODY)
    assert response.status_code == 404
    assert response.json() == {"error": True, "message": "Not found"}
    assert (sim.stats.requests, sim.stats.off_route, sim.stats.route_requests) == (1, 1, 0)
    assert not sim.stats.received


def test_percent_encoded_slash_is_one_segment(started: Factory) -> None:
    """`a%2Fb` is one path segment: on the route, with the callID percent-decoded to `a/b`."""
    sim, client = started()
    response = end_call(client, "a%2Fb")
    assert response.status_code == 200
    assert sim.stats.disposed == {"a/b": 1}
    assert sim.stats.recorded[0].raw_path == ROUTE_PREFIX + "a%2Fb"


def test_recorded_request_keeps_what_was_sent(started: Factory) -> None:
    """Each route request is recorded with method, lower-case headers, body, callID and answer."""
    sim, client = started()
    end_call(client, "rec-1", headers={"X-Extra": "yes"})
    (record,) = sim.stats.recorded
    assert (record.method, record.call_id, record.answer) == ("PATCH", "rec-1", "200")
    assert record.headers["x-access-token"] == TOKEN and record.headers["x-extra"] == "yes"
    assert httpx.Response(200, content=record.body).json() == BODY
    assert len(sim.stats.arrivals) == 1


# --- scripts ----------------------------------------------------------------------------------


def test_script_hang_never_answers(started: Factory) -> None:
    """A "hang" request is read but never answered, so the client's read times out."""
    sim, client = started(timeout=0.3, scripts={"h": ["hang"]})
    with pytest.raises(httpx.ReadTimeout):
        end_call(client, "h")
    assert sim.stats.answers == {"hang": 1} and not sim.stats.disposed


def test_script_reset_sends_tcp_reset(started: Factory) -> None:
    """A "reset" request is read, then the connection is reset, which the client sees as a read error."""
    sim, client = started(scripts={"r": ["reset"]})
    with pytest.raises(httpx.ReadError):
        end_call(client, "r")
    assert sim.stats.answers == {"reset": 1} and sim.stats.received == {"r": 1}


def test_script_close_closes_without_response(started: Factory) -> None:
    """A "close" request is read, then the connection is closed cleanly with no response."""
    sim, client = started(scripts={"c": ["close"]})
    with pytest.raises(httpx.RemoteProtocolError):
        end_call(client, "c")
    assert sim.stats.answers == {"close": 1}


@pytest.mark.parametrize(
    ("action", "status", "content_type"),
    [("html", 502, "text/html"), ("html200", 200, "text/html"), ("empty200", 200, "application/json")],
)
def test_script_malformed_answers(started: Factory, action: str, status: int, content_type: str) -> None:
    """Script "html" is a 502 HTML page, "html200" a 200 HTML page, "empty200" a 200 with no body; none disposes."""
    sim, client = started(scripts={"m": [action]})
    response = end_call(client, "m")
    assert response.status_code == status
    assert response.headers["content-type"].startswith(content_type)
    if action == "empty200":
        assert response.content == b""
    else:
        assert response.text.lstrip().lower().startswith(("<html", "<!doctype html"))
    assert sim.stats.answers == {action: 1} and not sim.stats.disposed


def test_script_slow_answers_200_late(started: Factory) -> None:
    """Script action "slow:S" answers 200 and disposes, but only after S seconds."""
    sim, client = started(scripts={"s": ["slow:0.3"]})
    began = time.monotonic()
    response = end_call(client, "s")
    assert response.status_code == 200 and response.json() == OK
    assert time.monotonic() - began >= 0.3
    assert sim.stats.disposed == {"s": 1}


def test_slow_call_is_disposed_even_if_client_gave_up(started: Factory) -> None:
    """When the client times out on a slow request, the server still ends the call (outcome unknown to the client)."""
    sim, client = started(timeout=0.05, scripts={"s": ["slow:0.2"]})
    with pytest.raises(httpx.ReadTimeout):
        end_call(client, "s")
    wait_for(lambda: sim.stats.disposed["s"] == 1)


def test_script_steps_then_normal_behaviour(started: Factory) -> None:
    """A script answers a callID's requests in turn (429/503 with Retry-After, other codes), then normally."""
    sim, client = started(scripts={"x": [503, 429, 418, 500, 403]})
    answers = [end_call(client, "x") for _ in range(6)]
    assert [r.status_code for r in answers] == [503, 429, 418, 500, 403, 200]
    assert answers[0].headers["retry-after"] == "1" and answers[1].headers["retry-after"] == "1"
    assert answers[2].json() == {"error": True, "message": "I'm a Teapot"}
    assert answers[3].json() == FAILED
    assert answers[4].content == UNAUTHORIZED_BYTES
    assert end_call(client, "other").status_code == 200
    assert sim.stats.disposed == {"x": 1, "other": 1}


# --- random faults, rate limit, repeats -------------------------------------------------------


def statuses(client: httpx.Client, count: int) -> list[int]:
    return [end_call(client, f"c{i}").status_code for i in range(count)]


def test_status_mix_repeats_with_the_same_seed(started: Factory) -> None:
    """The status mix is drawn from the seed: the same seed gives the same sequence, another seed another."""
    mix = {429: 0.2, 503: 0.2, 500: 0.2}
    first = statuses(started(status_mix=mix, seed=7)[1], 40)
    again = statuses(started(status_mix=mix, seed=7)[1], 40)
    other = statuses(started(status_mix=mix, seed=8)[1], 40)
    assert first == again
    assert first != other
    assert {200, 429, 503, 500} <= set(first)


@pytest.mark.parametrize("retry_after", ["1", "7", None])
def test_retry_after_on_429_and_503(started: Factory, retry_after: str | None) -> None:
    """Every 429 and 503 carries the configured Retry-After header, or none when it is None."""
    _, client = started(status_mix={429: 0.5, 503: 0.5}, retry_after=retry_after, seed=1)
    responses = [end_call(client, f"c{i}") for i in range(10)]
    assert {r.status_code for r in responses} == {429, 503}
    assert {r.headers.get("retry-after") for r in responses} == {retry_after}


@pytest.mark.parametrize(
    ("fault", "error"),
    [("hang_rate", httpx.ReadTimeout), ("reset_rate", httpx.ReadError)],
)
def test_random_connection_faults(started: Factory, fault: str, error: type[Exception]) -> None:
    """hang_rate and reset_rate make that fraction of requests hang or be reset."""
    sim, client = started(timeout=0.2, **{fault: 1.0})
    with pytest.raises(error):
        end_call(client, "f")
    assert sim.stats.answers == {fault.removesuffix("_rate"): 1}


def test_html_rate_answers_gateway_page(started: Factory) -> None:
    """html_rate makes that fraction of requests get a 502 HTML page."""
    _, client = started(html_rate=1.0)
    response = end_call(client, "g")
    assert response.status_code == 502 and "text/html" in response.headers["content-type"]


def test_rate_limit_rejects_exactly_the_overflow(started: Factory) -> None:
    """With rate_limit N, a quick burst of N+5 requests gets N 200s then exactly 5 429s with Retry-After."""
    sim, client = started(rate_limit=10)
    responses = [end_call(client, f"c{i}") for i in range(15)]
    assert [r.status_code for r in responses] == [200] * 10 + [429] * 5
    assert all(r.headers["retry-after"] == "1" for r in responses[10:])
    assert sim.stats.answers == {"200": 10, "429": 5}
    assert sim.stats.max_per_second == 15


def test_repeat_fails_rejects_second_end_call(started: Factory) -> None:
    """With repeat_fails, ending an already-disposed call answers 500 "Call already ended."."""
    sim, client = started(repeat_fails=True)
    assert end_call(client, "r").status_code == 200
    again = end_call(client, "r")
    assert again.status_code == 500
    assert again.json() == {"error": True, "message": "Call already ended."}
    assert sim.stats.disposed == {"r": 1} and sim.stats.received == {"r": 2}


def test_without_repeat_fails_a_call_can_be_ended_twice(started: Factory) -> None:
    """By default a second end-call for the same callID succeeds again and is counted twice."""
    sim, client = started()
    assert [end_call(client, "r").status_code for _ in range(2)] == [200, 200]
    assert sim.stats.disposed == {"r": 2}


def test_fail_ids_and_fail_rate_answer_500(started: Factory) -> None:
    """callIDs in fail_ids always get the API's 500 body; fail_rate 1.0 fails every call."""
    sim, client = started(fail_ids=frozenset({"bad"}))
    assert [end_call(client, "bad").json() for _ in range(2)] == [FAILED, FAILED]
    assert end_call(client, "good").status_code == 200
    assert sim.stats.disposed == {"good": 1}
    _, failing = started(fail_rate=1.0)
    assert end_call(failing, "any").json() == FAILED


def test_latency_delays_answers(started: Factory) -> None:
    """latency_ms (with jitter never below 0) delays every route answer."""
    _, client = started(latency_ms=150, jitter_ms=50, seed=3)
    began = time.monotonic()
    assert end_call(client, "l").status_code == 200
    assert time.monotonic() - began >= 0.1


# --- concurrency, shutdown, control API -------------------------------------------------------


def test_64_concurrent_requests_are_served_in_parallel(started: Factory) -> None:
    """64 concurrent requests with 200 ms latency are all in flight at once and finish in well under 64 x 0.2 s."""
    sim, _ = started(latency_ms=200)

    async def burst() -> list[int]:
        limits = httpx.Limits(max_connections=64)
        async with httpx.AsyncClient(base_url=sim.base_url, headers={"x-access-token": TOKEN}, limits=limits) as client:
            calls = (client.patch(f"{ROUTE_PREFIX}c{i}", json=BODY) for i in range(64))
            return [r.status_code for r in await asyncio.gather(*calls)]

    began = time.monotonic()
    assert asyncio.run(burst()) == [200] * 64
    assert time.monotonic() - began < 3.0
    assert sim.stats.max_in_flight == 64
    assert sum(sim.stats.disposed.values()) == 64


def test_stop_is_prompt_while_a_request_hangs() -> None:
    """stop() returns within a second while a request hangs, closing its connection, and can be repeated."""
    sim = start_in_thread(SimConfig(hang_rate=1.0))
    errors: list[BaseException] = []

    def call() -> None:
        with httpx.Client(base_url=sim.base_url, headers={"x-access-token": TOKEN}, timeout=10) as client:
            try:
                end_call(client, "h")
            except httpx.HTTPError as exc:
                errors.append(exc)

    thread = threading.Thread(target=call)
    thread.start()
    wait_for(lambda: sim.stats.answers["hang"] == 1)
    began = time.monotonic()
    sim.stop()
    assert time.monotonic() - began < 1.0
    thread.join(timeout=2)
    assert not thread.is_alive() and isinstance(errors[0], httpx.RemoteProtocolError)
    sim.stop()


def test_control_api_stats_and_reset(started: Factory) -> None:
    """GET /_simulator/stats returns the snapshot as JSON and POST /_simulator/reset zeroes it; neither is counted."""
    sim, client = started()
    end_call(client, "s1")
    client.get("/nowhere")
    stats = client.get("/_simulator/stats").json()
    assert stats == sim.stats.snapshot()
    assert stats["requests"] == 2 and stats["off_route"] == 1 and stats["disposed"] == {"s1": 1}
    assert stats["answers"] == {"200": 1} and stats["recorded_count"] == 1
    assert client.post("/_simulator/reset").status_code == 200
    assert client.get("/_simulator/stats").json()["requests"] == 0
    assert sim.stats.requests == 0 and not sim.stats.recorded


def test_reset_stats_zeroes_counters_in_place(started: Factory) -> None:
    """reset_stats() zeroes the live counters that `sim.stats` refers to, and counting goes on afterwards."""
    sim, client = started()
    stats = sim.stats
    end_call(client, "a")
    sim.reset_stats()
    assert stats.snapshot()["route_requests"] == 0 and not stats.arrivals
    end_call(client, "b")
    assert stats.disposed == {"b": 1}


def test_serve_runs_until_cancelled() -> None:
    """serve() calls on_ready with its URL, answers requests, and stops when cancelled."""

    async def scenario() -> int:
        ready: asyncio.Queue[str] = asyncio.Queue()
        task = asyncio.create_task(serve(SimConfig(), on_ready=ready.put_nowait))
        base_url = await asyncio.wait_for(ready.get(), 5)
        async with httpx.AsyncClient(base_url=base_url, headers={"x-access-token": TOKEN}) as client:
            status = (await client.patch(ROUTE_PREFIX + "s", json=BODY)).status_code
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        with pytest.raises(httpx.ConnectError):
            async with httpx.AsyncClient() as client:
                await client.get(base_url)
        return status

    assert asyncio.run(scenario()) == 200


# --- configuration ----------------------------------------------------------------------------


def test_parse_status_mix_reads_code_fraction_pairs() -> None:
    """parse_status_mix turns "429:0.05, 503:0.02" into a {code: fraction} dict."""
    assert parse_status_mix("429:0.05, 503:0.02") == {429: 0.05, 503: 0.02}
    assert parse_status_mix("") == {}


@pytest.mark.parametrize(
    "text", ["429", "abc:0.1", "429:x", "99:0.1", "600:0.1", "429:1.5", "429:-0.1", "429:0.6,503:0.6", "429:nan"]
)
def test_parse_status_mix_rejects_bad_input(text: str) -> None:
    """Bad codes, fractions outside [0, 1] or a total above 1 raise ValueError."""
    with pytest.raises(ValueError):
        parse_status_mix(text)


@pytest.mark.parametrize(
    "config",
    [
        {"scripts": {"a": ["explode"]}},
        {"scripts": {"a": ["slow:x"]}},
        {"scripts": {"a": [700]}},
        {"fail_rate": 2.0},
        {"hang_rate": 0.6, "status_mix": {500: 0.6}},
        {"rate_limit": 0},
    ],
)
def test_sim_config_rejects_bad_settings(config: dict[str, Any]) -> None:
    """SimConfig raises ValueError for unknown script actions, bad rates and an impossible rate limit."""
    with pytest.raises(ValueError):
        SimConfig(**config)
