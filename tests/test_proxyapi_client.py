"""The proxy API client (``tmpnb.proxyapi``), specified once and run against every server.

Each ``case_*`` below is one behaviour of the ``ProxyAPI`` interface. This file runs them on
no reactor against ``CHPClient`` over StubTreq and tmpnb's ``ProxyAPIResource``, and against
``InProcessProxyAPI``; ``tests/integration/test_proxyapi_live.py`` runs the very same cases
against a real ``twistd tmpnb-proxy`` and a real configurable-http-proxy 5.3, which keeps
the in-memory servers honest.

A case gets a ``Harness``: the API under test, a way to let time pass (a ``Clock`` here, real
time there) and, for HTTP clients, a way to build a client with another token. Every case
starts from an empty route table.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import pytest
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.error import ConnectingCancelledError
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure
from treq.testing import StubTreq

from tmpnb.proxy.api import ProxyAPIResource
from tmpnb.proxy.routes import RouteTable
from tmpnb.proxyapi import CHPClient, InProcessProxyAPI, ProxyAPI, ProxyAPIError, format_iso8601, make_chp_client

JS_ISO_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
TARGET = "http+unix://%2Frun%2Ftmpnb%2Ft%2Fabc%2Fjupyter.sock"


@dataclass
class Harness:
    api: ProxyAPI
    pass_time: Callable[[float], Awaitable[None]]
    with_token: Callable[[str], ProxyAPI] | None = None  # HTTP clients only


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text)


# --- the cases


async def case_an_added_route_reads_back_with_its_data_and_last_activity(h: Harness) -> None:
    await h.api.add_route("/user/abc", TARGET, user="abc", container="c0ffee")
    route = await h.api.get_route("/user/abc")
    assert route is not None
    assert {k: v for k, v in route.items() if k != "last_activity"} == {
        "target": TARGET,
        "user": "abc",
        "container": "c0ffee",
    }
    assert JS_ISO_TIME.match(route["last_activity"])


async def case_a_missing_route_reads_as_none(h: Harness) -> None:
    assert await h.api.get_route("/user/nobody") is None


async def case_paths_are_normalised_as_chp_does(h: Harness) -> None:
    await h.api.add_route("/user/abc/", TARGET)
    assert list(await h.api.list_routes()) == ["/user/abc"]
    assert (await h.api.get_route("/user/abc/"))["target"] == TARGET


async def case_a_path_with_reserved_and_non_ascii_characters_round_trips(h: Harness) -> None:
    path = "/user/a b?c#d%25e/ü"
    await h.api.add_route(path, TARGET)
    assert list(await h.api.list_routes()) == [path]
    assert (await h.api.get_route(path))["target"] == TARGET
    await h.api.delete_route(path)
    assert await h.api.list_routes() == {}


async def case_adding_a_route_again_replaces_its_data(h: Harness) -> None:
    await h.api.add_route("/user/abc", "http://127.0.0.1:9001", extra="old")
    await h.api.add_route("/user/abc", TARGET)
    route = await h.api.get_route("/user/abc")
    assert route["target"] == TARGET
    assert "extra" not in route


async def case_a_deleted_route_is_gone(h: Harness) -> None:
    await h.api.add_route("/user/abc", TARGET)
    await h.api.add_route("/user/xyz", TARGET)
    await h.api.delete_route("/user/abc")
    assert await h.api.get_route("/user/abc") is None
    assert list(await h.api.list_routes()) == ["/user/xyz"]


async def case_deleting_a_missing_route_succeeds(h: Harness) -> None:
    # a second cull, or a proxy that restarted empty: the route is gone either way
    assert await h.api.delete_route("/user/nobody") is None


async def case_list_routes_returns_every_route_with_its_data(h: Harness) -> None:
    await h.api.add_route("/user/a", "http://127.0.0.1:9001")
    await h.api.add_route("/user/b", "http://127.0.0.1:9002", user="b")
    routes = await h.api.list_routes()
    assert sorted(routes) == ["/user/a", "/user/b"]
    assert routes["/user/b"]["target"] == "http://127.0.0.1:9002"
    assert routes["/user/b"]["user"] == "b"
    assert all(JS_ISO_TIME.match(route["last_activity"]) for route in routes.values())


async def case_inactive_since_lists_only_routes_idle_since_before_then(h: Harness) -> None:
    await h.api.add_route("/user/old", TARGET)
    await h.pass_time(0.05)
    await h.api.add_route("/user/new", TARGET)
    old_seen = parse_time((await h.api.get_route("/user/old"))["last_activity"])
    new_seen = parse_time((await h.api.get_route("/user/new"))["last_activity"])
    assert old_seen < new_seen

    assert list(await h.api.list_routes(inactive_since=new_seen)) == ["/user/old"]
    # strictly before: a route active at the very cutoff is not idle
    assert list(await h.api.list_routes(inactive_since=old_seen)) == []
    assert sorted(await h.api.list_routes(inactive_since=new_seen + timedelta(seconds=1))) == [
        "/user/new",
        "/user/old",
    ]
    # the same instant in another zone, or naive (taken as UTC), selects the same routes
    elsewhere = new_seen.astimezone(timezone(timedelta(hours=-5)))
    assert list(await h.api.list_routes(inactive_since=elsewhere)) == ["/user/old"]
    naive = new_seen.astimezone(timezone.utc).replace(tzinfo=None)
    assert list(await h.api.list_routes(inactive_since=naive)) == ["/user/old"]


async def case_the_root_route_can_be_set_read_and_removed(h: Harness) -> None:
    await h.api.add_route("/", "http://127.0.0.1:9000")
    await h.api.add_route("/user/abc", TARGET)
    assert (await h.api.get_route("/"))["target"] == "http://127.0.0.1:9000"
    await h.api.delete_route("/")
    assert await h.api.get_route("/") is None
    assert list(await h.api.list_routes()) == ["/user/abc"]


async def case_a_wrong_token_fails_with_403_and_changes_nothing(h: Harness) -> None:
    intruder = h.with_token("not-the-token")
    for attempt in (intruder.list_routes(), intruder.add_route("/user/x", TARGET), intruder.delete_route("/user/x")):
        try:
            await attempt
        except ProxyAPIError as error:
            assert error.status == 403
        else:
            raise AssertionError("a wrong token was accepted")
    assert await h.api.list_routes() == {}


CASES = [
    case_an_added_route_reads_back_with_its_data_and_last_activity,
    case_a_missing_route_reads_as_none,
    case_paths_are_normalised_as_chp_does,
    case_a_path_with_reserved_and_non_ascii_characters_round_trips,
    case_adding_a_route_again_replaces_its_data,
    case_a_deleted_route_is_gone,
    case_deleting_a_missing_route_succeeds,
    case_list_routes_returns_every_route_with_its_data,
    case_inactive_since_lists_only_routes_idle_since_before_then,
    case_the_root_route_can_be_set_read_and_removed,
]
HTTP_CASES = [case_a_wrong_token_fails_with_403_and_changes_nothing]


def case_id(case: Callable) -> str:
    return case.__name__.removeprefix("case_")


# --- running the cases without a reactor

TOKEN = "s3cret"
API_URL = "http://127.0.0.1:8001"


def run_synchronously(coroutine: Awaitable[None]) -> None:
    """Run a case whose every Deferred fires at once (StubTreq, in-process); re-raise its failure."""
    outcome: list[object] = []
    Deferred.fromCoroutine(coroutine).addBoth(outcome.append)
    assert outcome, "the case waited for something that never happened"
    if isinstance(outcome[0], Failure):
        outcome[0].raiseException()


def stub_treq_harness() -> Harness:
    clock = Clock()
    clock.advance(1795309013.123)
    http = StubTreq(ProxyAPIResource(RouteTable(clock), TOKEN, unix_root="/run/tmpnb"))

    async def pass_time(seconds: float) -> None:
        clock.advance(seconds)

    return Harness(
        api=CHPClient(http, API_URL, TOKEN),
        pass_time=pass_time,
        with_token=lambda token: CHPClient(http, API_URL, token),
    )


def in_process_harness() -> Harness:
    clock = Clock()
    clock.advance(1795309013.123)

    async def pass_time(seconds: float) -> None:
        clock.advance(seconds)

    return Harness(api=InProcessProxyAPI(RouteTable(clock)), pass_time=pass_time)


@pytest.mark.parametrize("case", CASES + HTTP_CASES, ids=case_id)
def test_chp_client_over_stubtreq_and_tmpnbs_api(case):
    run_synchronously(case(stub_treq_harness()))


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_in_process_api(case):
    run_synchronously(case(in_process_harness()))


# --- what only the HTTP client has


def test_an_unexpected_answer_fails_with_its_status_and_body():
    clock = Clock()
    routes = RouteTable(clock)
    client = CHPClient(StubTreq(ProxyAPIResource(routes, TOKEN, unix_root="/run/tmpnb")), API_URL + "/nothing-here", TOKEN)
    outcome: list[object] = []
    client.list_routes().addBoth(outcome.append)
    [failure] = outcome
    assert isinstance(failure, Failure)
    error = failure.value
    assert isinstance(error, ProxyAPIError)
    assert (error.method, error.status, error.body) == ("GET", 404, b"Not Found")
    assert error.url == "http://127.0.0.1:8001/nothing-here/api/routes"


def test_inactive_since_is_sent_as_utc_iso8601_with_milliseconds():
    moment = datetime(2026, 11, 22, 3, 4, 5, 678901, tzinfo=timezone(timedelta(hours=2)))
    assert format_iso8601(moment) == "2026-11-22T01:04:05.678Z"
    assert format_iso8601(datetime(2026, 11, 22, 3, 4, 5)) == "2026-11-22T03:04:05.000Z"


def test_the_production_client_connects_to_the_api_address_and_gives_up_after_its_timeout():
    reactor = MemoryReactorClock()
    client = make_chp_client(reactor, "http://127.0.0.1:8001/", TOKEN, timeout=5.0)
    outcome: list[object] = []
    client.add_route("/user/abc", TARGET).addBoth(outcome.append)
    [(host, port, *_)] = reactor.tcpClients
    assert (host, port) == ("127.0.0.1", 8001)
    reactor.advance(4.9)
    assert outcome == []
    reactor.advance(0.2)
    [failure] = outcome
    assert failure.check(CancelledError, ConnectingCancelledError)
