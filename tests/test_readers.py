"""The Nature-day simulator's readers (benchmarks/readers.py): when they arrive, and what each
one does, against an in-memory front door and kernel that speak as tmpnb and Jupyter do."""

from __future__ import annotations

import json
import random
from urllib.parse import parse_qs, urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st
from treq.testing import StubTreq
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.web.resource import Resource

from benchmarks.readers import (
    SLIDER_PRINTS,
    ArticleDay,
    KernelChannels,
    Outcome,
    ReaderPlan,
    ReaderWorld,
    arrivals,
    landing_of,
    read_article,
    refresh_target,
)
from tests.results import succeeded

# -- arrivals --------------------------------------------------------------------------------


def test_the_rate_climbs_to_the_peak_holds_it_and_tails_off():
    day = ArticleDay(minutes=60, peak_rate=2.0)
    assert day.rate(0) == 0.0
    assert day.rate(0.075 * 3600) == pytest.approx(1.0)  # halfway up the climb
    assert day.rate(0.2 * 3600) == day.rate(0.39 * 3600) == 2.0
    assert 0.1 < day.rate(0.7 * 3600) < 2.0
    assert day.rate(3599.9) == pytest.approx(0.1, rel=0.01)  # the tail's floor
    assert day.rate(-1) == day.rate(3600) == 0.0


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_readers_arrive_as_often_as_the_rate_says(seed):
    day = ArticleDay(minutes=60, peak_rate=2.0)
    times = arrivals(day, random.Random(seed))
    expected = day.expected()
    assert abs(len(times) - expected) < 4 * expected**0.5  # a Poisson count: 4 standard deviations
    assert times == sorted(times) and 0 <= times[0] and times[-1] < day.seconds
    at_peak = sum(0.15 * 3600 <= t < 0.4 * 3600 for t in times) / (0.25 * 3600)
    in_tail = sum(t >= 0.8 * 3600 for t in times) / (0.2 * 3600)
    assert at_peak == pytest.approx(2.0, rel=0.15) and in_tail < at_peak / 3


@given(seed=st.integers(0, 2**32), cap=st.integers(0, 50))
def test_never_more_readers_than_the_cap(seed, cap):
    assert len(arrivals(ArticleDay(minutes=5, peak_rate=1.0), random.Random(seed), cap)) <= cap


@given(seed=st.integers(0, 2**32))
def test_a_plan_thinks_a_while_and_runs_at_most_three_more_cells(seed):
    plan = ReaderPlan.draw(random.Random(seed))
    assert plan.think >= 0 and plan.linger >= 0 and 0 <= plan.more_runs <= 3


# -- pages -------------------------------------------------------------------------------------


def test_the_waiting_page_refresh_and_the_notebook_url_are_read_as_a_browser_reads_them():
    assert refresh_target('<head><meta http-equiv="refresh" content="0; url=/wait/abc?x=1&amp;y=2"></head>') == (
        0.0, "/wait/abc?x=1&y=2")
    assert refresh_target("<p>no refresh</p>") is None
    assert landing_of("http://h:1/user/AbC123/notebooks/Welcome.ipynb?token=f00") == ("AbC123", "f00")
    assert landing_of("http://h:1/wait/abc") is None


# -- one reader against an in-memory tmpnb and kernel ------------------------------------------


class FrontDoor(Resource):
    """tmpnb's front door: `/` joins the line (a 202 page that refreshes to /wait/t), the wait
    answers the redirect to the notebook; the notebook's page and kernels API."""

    isLeaf = True

    def __init__(self, full: bool = False, waits: int = 1) -> None:
        super().__init__()
        self.full, self.waits, self.kernels = full, waits, 0

    def render_GET(self, request):
        path = request.path.decode()
        if path == "/" and self.full:
            request.setResponseCode(503)
            return b"<p>No vacancy</p>"
        if path in ("/", "/wait/t") and self.waits > 0:
            self.waits -= 1
            request.setResponseCode(202)
            return b'<meta http-equiv="refresh" content="0; url=/wait/t"><p>You are 1st in line</p>'
        if path in ("/", "/wait/t"):
            request.redirect(b"/user/AbC123/notebooks/Welcome.ipynb?token=f00")
            return b""
        if path == "/user/AbC123/notebooks/Welcome.ipynb":
            return b"<html>notebook</html>"
        request.setResponseCode(404)
        return b""

    def render_POST(self, request):
        assert request.path == b"/user/AbC123/api/kernels" and request.args[b"token"] == [b"f00"]
        self.kernels += 1
        request.setResponseCode(201)
        return json.dumps({"id": "k1"}).encode()


class Kernel:
    """A kernel's channels as Jupyter answers them: status busy, output, status idle; the slider
    cell opens an IntSlider model, and moving it prints the squares up to its value."""

    def __init__(self, channels: KernelChannels, broken: bool = False) -> None:
        self.channels, self.broken, self.closed, self.sent = channels, broken, False, []

    def sendTextMessage(self, text: str) -> None:
        message = json.loads(text)
        self.sent.append(message)
        parent, content = message["header"], message["content"]
        self._say(parent, "status", {"execution_state": "busy"})
        if message["header"]["msg_type"] == "comm_msg":
            value = content["data"]["state"]["value"]
            self._say(parent, "stream", {"name": "stdout", "text": str([k * k for k in range(1, value + 1)]) + "\n"})
        elif "interact" in content["code"]:
            self._say(parent, "comm_open", {"comm_id": "w1", "target_name": "jupyter.widget",
                                            "data": {"state": {"_model_name": "IntSliderModel", "value": 5}}})
        elif self.broken:
            self._say(parent, "error", {"ename": "ModuleNotFoundError", "evalue": "no sys"})
        elif "Hello" in content["code"]:
            self._say(parent, "stream", {"name": "stdout", "text": "Hello from Python 3.11.2!\n"})
            self._say(parent, "execute_result", {"data": {"text/plain": "285"}})
        else:
            self._say(parent, "execute_result", {"data": {"text/plain": str(eval(content["code"]))}})
        self._say(parent, "status", {"execution_state": "idle"})

    def _say(self, parent: dict, kind: str, content: dict) -> None:
        self.channels.textMessageReceived(json.dumps(
            {"msg_type": kind, "parent_header": parent, "content": content, "header": {"msg_type": kind}}))

    def loseConnection(self, code: int = 1000) -> None:
        self.closed = True


def world_of(door: FrontDoor, clock: Clock, kernels: list[Kernel], broken: bool = False) -> ReaderWorld:
    def open_channels(url: str) -> Deferred:
        query = parse_qs(urlsplit(url).query)
        assert url.startswith("ws://example.org/user/AbC123/api/kernels/k1/channels") and query["token"] == ["f00"]
        channels = KernelChannels()
        kernels.append(Kernel(channels, broken))
        channels.negotiationStarted(kernels[-1])
        return succeed(channels)

    return ReaderWorld(clock=clock, http=None, new_http=lambda: StubTreq(door), open_channels=open_channels,
                       front_door="http://example.org/", timeout=30)


def test_a_reader_waits_in_line_then_runs_the_welcome_cells_moves_the_slider_and_leaves():
    clock, door, kernels = Clock(), FrontDoor(waits=2), []
    plan = ReaderPlan(think=5, more_runs=2, linger=10)
    d = Deferred.fromCoroutine(read_article(world_of(door, clock, kernels), plan, Outcome()))
    clock.advance(0)  # the two waiting pages refresh at once
    clock.advance(0)
    clock.advance(5)  # thinks, runs one more
    clock.advance(5)  # thinks, runs another
    assert not kernels[0].closed  # still reading
    clock.advance(10)  # lingers, then closes the tab
    outcome = succeeded(d)
    assert outcome.error is None and outcome.served and not outcome.lost and outcome.waited
    assert outcome.host == "http://example.org" and outcome.container == "AbC123"
    assert outcome.slider and outcome.cells == 5 and kernels[0].closed
    move = kernels[0].sent[2]
    assert move["header"]["msg_type"] == "comm_msg" and move["content"]["comm_id"] == "w1"
    assert outcome.left == 20 and outcome.to_output == 0


def test_a_reader_told_there_is_no_vacancy_is_bounced_not_lost():
    clock, kernels = Clock(), []
    outcome = succeeded(Deferred.fromCoroutine(
        read_article(world_of(FrontDoor(full=True), clock, kernels), ReaderPlan(0, 0, 0), Outcome())))
    assert outcome.bounced and not outcome.served and not outcome.lost and kernels == []


def test_a_reader_whose_kernel_fails_is_lost_and_says_why():
    clock, kernels = Clock(), []
    outcome = succeeded(Deferred.fromCoroutine(
        read_article(world_of(FrontDoor(waits=0), clock, kernels, broken=True), ReaderPlan(0, 0, 0), Outcome())))
    assert outcome.lost and "ModuleNotFoundError" in outcome.error and kernels[0].closed


def test_a_kernel_that_never_answers_loses_the_reader_after_the_step_timeout():
    clock, door = Clock(), FrontDoor(waits=0)

    def silent(url: str) -> Deferred:
        return Deferred()  # the websocket never opens

    world = ReaderWorld(clock=clock, http=None, new_http=lambda: StubTreq(door), open_channels=silent,
                        front_door="http://example.org/", timeout=30)
    d = Deferred.fromCoroutine(read_article(world, ReaderPlan(0, 0, 0), Outcome()))
    for delay in (1, 2, 4, 8, 16):  # each attempt times out, then the next after a back-off
        clock.advance(30)
        clock.advance(delay)
    clock.advance(29)
    assert not d.called
    clock.advance(1)
    outcome = succeeded(d)
    assert outcome.lost and outcome.reconnects == 5 and "kernel channels: no answer within 30 s" in outcome.error


def test_a_refused_kernel_websocket_is_tried_again_as_jupyterlab_does():
    clock, door, kernels = Clock(), FrontDoor(waits=0), []
    healthy = world_of(door, clock, kernels)
    refusals = [ConnectionRefusedError("busy"), ConnectionRefusedError("busy")]

    def refusing_twice(url: str) -> Deferred:
        return fail(refusals.pop()) if refusals else healthy.open_channels(url)

    world = ReaderWorld(clock=clock, http=None, new_http=healthy.new_http, open_channels=refusing_twice,
                        front_door=healthy.front_door, timeout=30)
    d = Deferred.fromCoroutine(read_article(world, ReaderPlan(0, 0, 0), Outcome()))
    clock.advance(1)
    clock.advance(2)
    outcome = succeeded(d)
    assert outcome.served and outcome.slider and outcome.reconnects == 2


def test_the_slider_prints_what_the_welcome_notebook_prints():
    assert SLIDER_PRINTS == "[1, 4, 9, 16, 25, 36, 49]"
