"""The waiting line as visitors and API clients see it: the real resource tree (StubTreq)
over the real Pool and WaitingLine, Docker and the servers played by tests/fakedocker.py,
time by a Clock.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from collections.abc import Iterator

import pytest
from treq.testing import StubTreq
from twisted.internet.task import Clock

from tests.fakedocker import FakeDocker, FakeServers
from tests.builders import build_line, build_pool, cookieless, one_address_gate
from tests.results import pending, succeeded
from tmpnb.config import ContainerSpec, PoolConfig
from tmpnb.web import Holds, WebSettings, make_resource

BASE = "http://127.0.0.1:8000"
BROWSER = {"Accept": ["text/html,*/*;q=0.8"]}
HOLDS = Holds(first=2.0, poll=10.0, grace=15.0)


class World:
    def __init__(self, pool_size: int = 1, capacity: int = 4, max_waiting: int = 10) -> None:
        self.root = tempfile.mkdtemp(prefix="tnb-waitweb-")
        spec = ContainerSpec(instance="test-waitweb", socket_root=self.root)
        self.clock = Clock()
        self.docker = FakeDocker(self.clock, spec)
        self.servers = FakeServers(self.docker)
        rig = build_pool(
            PoolConfig(pool_size=pool_size, capacity=capacity, refill_delay=1.0), clock=self.clock, spec=spec,
            docker=self.docker, servers=self.servers,
        )
        self.pool = rig.pool
        self.line = build_line(rig, max_waiting)
        self.pool.startService()
        self.boot_all()
        self.treq = cookieless(StubTreq(make_resource(self.pool, WebSettings(holds=HOLDS), self.line,
                                                     gate=one_address_gate(self.clock))))

    def boot_all(self) -> None:
        """Every server booting gets ready; the line is offered what was pooled."""
        for _ in range(3):
            for container_id in self.servers.waiting():
                self.servers.answer(container_id)
            self.clock.advance(0)

    def request(self, method: str, path: str, **kw):
        """A request; its Deferred (fires with the response once it is answered)."""
        d = self.treq.request(method, BASE + path, allow_redirects=False, **kw)
        self.treq.flush()
        return d

    def answer(self, held):
        self.treq.flush()
        response = succeeded(held)
        body = response.content()
        self.treq.flush()
        return response, succeeded(body)


@pytest.fixture
def world() -> Iterator[World]:
    w = World()
    yield w
    w.pool.stopService()
    shutil.rmtree(w.root, ignore_errors=True)


def location(response) -> str:
    return response.headers.getRawHeaders("Location")[0]


def test_a_visitor_who_finds_the_pool_empty_waits_and_is_sent_on_when_a_container_is_ready(world):
    first, _ = world.answer(world.request("GET", "/", headers=BROWSER))
    assert first.code == 302  # the pooled one

    held = world.request("GET", "/", headers=BROWSER)
    pending(held)  # held: a container boots for them
    assert world.pool.stats()["waiting"]["length"] == 1
    world.boot_all()

    second, _ = world.answer(held)
    assert second.code == 302
    assert re.fullmatch(r"/user/\w+/tree\?token=\w+", location(second))
    assert location(second) != location(first)
    assert world.pool.stats()["waiting"]["served"] == 1


def test_a_browser_still_waiting_after_the_hold_gets_its_place_and_an_estimate_and_polls(world):
    world.answer(world.request("GET", "/", headers=BROWSER))
    ahead = world.request("GET", "/", headers=BROWSER)
    asked = world.request("GET", "/", headers=BROWSER)
    world.clock.advance(HOLDS.first)

    page, body = world.answer(asked)
    assert page.code == 202
    assert b"number <strong>2</strong> in line" in body
    assert b"about <strong>2 seconds</strong>" in body  # 2nd at the default 1 boot/s
    poll = re.search(rb'http-equiv="refresh" content="0; url=(/wait/[0-9a-f]+)"', body).group(1).decode()

    held = world.request("GET", poll, headers=BROWSER)  # the long poll
    pending(held)
    world.boot_all()
    assert world.answer(held)[0].code == 302
    world.answer(ahead)


def test_a_client_that_takes_no_html_is_sent_on_with_303_as_curl_L_follows(world):
    world.answer(world.request("GET", "/"))
    asked = world.request("GET", "/spawn/notebooks/Welcome.ipynb")
    world.clock.advance(HOLDS.first)
    response, _ = world.answer(asked)
    assert response.code == 303
    held = world.request("GET", location(response))
    world.boot_all()
    response, _ = world.answer(held)
    assert response.code == 302
    assert "/notebooks/Welcome.ipynb?token=" in location(response)


def test_a_place_kept_for_the_grace_period_is_lost_after_it(world):
    world.answer(world.request("GET", "/", headers=BROWSER))
    asked = world.request("GET", "/", headers=BROWSER)
    world.clock.advance(HOLDS.first)
    _, body = world.answer(asked)
    poll = re.search(rb"url=(/wait/[0-9a-f]+)", body).group(1).decode()

    world.clock.advance(HOLDS.grace)
    assert world.pool.stats()["waiting"] == {**world.pool.stats()["waiting"], "length": 0, "left": 1}
    response, body = world.answer(world.request("GET", poll, headers=BROWSER))
    assert response.code == 410
    assert b"Get in line again" in body


def test_a_visitor_who_hangs_up_frees_their_place(world):
    world.answer(world.request("GET", "/", headers=BROWSER))
    leaving = world.request("GET", "/", headers=BROWSER)
    staying = world.request("GET", "/", headers=BROWSER)
    leaving.cancel()  # hangs up
    leaving.addErrback(lambda _: None)
    world.treq.flush()
    assert world.pool.stats()["waiting"]["length"] == 1
    world.boot_all()
    assert world.answer(staying)[0].code == 302
    assert world.pool.stats()["waiting"]["left"] == 1


def test_a_container_readied_for_a_visitor_who_never_came_back_goes_to_the_next_in_line(world):
    world.answer(world.request("GET", "/", headers=BROWSER))
    first = world.request("GET", "/", headers=BROWSER)
    second = world.request("GET", "/", headers=BROWSER)
    world.clock.advance(HOLDS.first)  # both see their place in line; only the second polls
    _, first_page = world.answer(first)
    _, second_page = world.answer(second)
    polls = re.search(rb"url=(/wait/[0-9a-f]+)", second_page).group(1).decode()
    held = world.request("GET", polls, headers=BROWSER)

    world.servers.answer(world.servers.waiting()[0])  # one server is ready: the first's
    world.clock.advance(0)
    pending(held)
    world.clock.advance(HOLDS.poll)
    assert world.answer(held)[0].code == 202  # still second
    held = world.request("GET", polls, headers=BROWSER)
    world.clock.advance(HOLDS.grace - HOLDS.poll)  # the first's place, and container, go on

    response, _ = world.answer(held)
    assert response.code == 302
    stats = world.pool.stats()
    assert stats["waiting"]["left"] == 0  # the first was served, then went away
    assert stats["states"].get("culled", 0) == 0  # nothing was wasted


def test_no_vacancy_when_the_capacity_is_promised_to_those_in_line(world):
    # Capacity 4: the pooled one, and three more that can boot.
    visits = [world.request("GET", "/", headers=BROWSER) for _ in range(4)]
    response, body = world.answer(world.request("GET", "/", headers=BROWSER))
    assert response.code == 503
    assert b"No vacancy" in body
    world.boot_all()
    assert [world.answer(v)[0].code for v in visits] == [302] * 4


def test_the_api_waits_only_when_asked_to(world):
    body = json.dumps({"wait": 5}).encode()
    assert world.answer(world.request("POST", "/api/spawn"))[0].code == 200
    response, _ = world.answer(world.request("POST", "/api/spawn"))
    assert response.code == 429  # as tmpnb always answered

    held = world.request("POST", "/api/spawn", data=body)
    pending(held)
    world.boot_all()
    response, content = world.answer(held)
    assert response.code == 200
    assert json.loads(content)["url"].startswith("/user/")


def test_an_api_client_whose_wait_runs_out_gets_full_and_leaves_the_line(world):
    world.answer(world.request("POST", "/api/spawn"))
    asked = world.request("POST", "/api/spawn", data=json.dumps({"wait": 3}).encode())
    world.clock.advance(3)
    response, content = world.answer(asked)
    assert response.code == 429
    assert json.loads(content) == {"status": "full"}
    assert world.pool.stats()["waiting"]["length"] == 0


@pytest.mark.parametrize("wait", ['"soon"', "-1", "true", "1e999"])
def test_a_wait_that_is_not_a_number_of_seconds_is_a_bad_request(world, wait):
    response, _ = world.answer(world.request("POST", "/api/spawn", data=f'{{"wait": {wait}}}'.encode()))
    assert response.code == 400


def test_stats_show_the_line(world):
    world.answer(world.request("GET", "/", headers=BROWSER))
    world.request("GET", "/", headers=BROWSER)
    response, content = world.answer(world.request("GET", "/api/stats"))
    waiting = json.loads(content)["waiting"]
    assert waiting["length"] == 1
    assert waiting["max"] == 10
    assert waiting["joined"] == 1
