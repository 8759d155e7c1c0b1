"""Choosing a flavor over HTTP (tmpnb/web/flavorchoice.py): `?flavor=` on / and /spawn/, the
API's {"flavor"}, the 404 listing the flavors for one the node lacks (never a default server),
each flavor's landing page, the reload cookie only for the flavor asked for, a hostile visitor's
choices; and what the node reports per flavor: /api/stats, /metrics, the lifecycle records.
The real Pool and WaitingLine over FakeDocker on a Clock (tests/flavorrig.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from treq.testing import StubTreq

from tests.builders import WHOLE_CAPACITY, cookieless
from tests.flavorrig import FlavorNode
from tests.results import succeeded
from tmpnb.clients import SharePolicy, make_gate
from tmpnb.flavors import Flavor, Flavors
from tmpnb.lifecycle import LifecycleRecorder, flavor_of, transitions
from tmpnb.metrics import Metrics
from tmpnb.report import format_report
from tmpnb.web import WebSettings, make_resource

BASE = "http://tmpnb.test"
NAVIGATE = {"Sec-Fetch-Dest": ["document"], "Sec-Fetch-Mode": ["navigate"], "Accept": ["text/html"]}
ALPHA, BETA = "img/alpha:1", "img/beta:1"
FLAVORS = Flavors((Flavor("alpha", ALPHA, 2), Flavor("beta", BETA, 1, landing="notebooks/Lesson1.ipynb")), "alpha")


class Web:
    def __init__(self, root: Path, keep_cookies: bool = False, policy: SharePolicy = WHOLE_CAPACITY,
                 capacity: int = 6) -> None:
        self.records: list[dict] = []
        self.node = FlavorNode(root, FLAVORS, capacity, on_transition=LifecycleRecorder(records=[self.record]))
        self.metrics = Metrics(self.node.clock)
        self.metrics.watch_pool(self.node.pool)
        self.gate = make_gate(self.node.clock, capacity, policy)
        self.node.settle()
        settings = WebSettings(flavors=FLAVORS, container_image=ALPHA)
        stub = StubTreq(make_resource(self.node.pool, settings, self.node.line, gate=self.gate))
        self.treq = stub if keep_cookies else cookieless(stub)

    def record(self, record: dict) -> None:
        self.records.append(record)
        self.metrics.record(record)
        self.gate.record(record)

    def send(self, method: str, path: str, headers: dict | None = None, **kw):
        d = self.treq.request(method, BASE + path, allow_redirects=False, headers=headers or NAVIGATE, **kw)
        for _ in range(3):
            self.treq.flush()
            self.node.settle()
        response = succeeded(d)
        body = response.content()
        self.treq.flush()
        return response, succeeded(body)

    def image_behind(self, location: str) -> str:
        container_id = location.split("/")[2]
        return self.node.container(container_id).image


@pytest.fixture
def web(tmp_path: Path):
    w = Web(tmp_path)
    yield w
    w.node.stop()


def location(response) -> str:
    return response.headers.getRawHeaders("Location")[0]


def test_the_front_page_gives_the_default_flavor_and_flavor_chooses_another(web):
    response, _ = web.send("GET", "/")
    assert response.code == 302 and web.image_behind(location(response)) == ALPHA
    assert location(response).split("?")[0].endswith("/tree")  # the node's --redirect-uri
    response, _ = web.send("GET", "/?flavor=beta")
    assert response.code == 302 and web.image_behind(location(response)) == BETA
    # beta's landing page instead of the node's
    assert location(response).split("?")[0].endswith("/notebooks/Lesson1.ipynb")


def test_a_path_in_a_spawn_link_wins_over_the_flavors_landing_page(web):
    response, _ = web.send("GET", "/spawn/notebooks/index.ipynb?flavor=beta")
    assert response.code == 302 and web.image_behind(location(response)) == BETA
    assert location(response).split("?")[0].endswith("/notebooks/index.ipynb")
    response, _ = web.send("GET", "/spawn/?flavor=beta")  # no path: the landing page
    assert location(response).split("?")[0].endswith("/notebooks/Lesson1.ipynb")


@pytest.mark.parametrize("query", [
    "flavor=gamma", "flavor=", "flavor=ALPHA", "flavor=alpha&flavor=beta", "flavor=%00", "flavor=../alpha",
    "flavor=" + "a" * 5000, "flavor=%3Cscript%3Ealert(1)%3C/script%3E",
])
def test_an_unknown_flavor_is_a_404_page_listing_the_flavors_and_takes_nothing(web, query):
    before = web.node.pool.stats()["states"]
    for path in ("/", "/spawn/notebooks/index.ipynb"):
        response, body = web.send("GET", f"{path}?{query}")
        assert response.code == 404
        assert response.headers.getRawHeaders("Content-Type")[0].startswith("text/html")
        assert b"alpha, beta" in body
        assert b"<script>" not in body  # escaped
        assert len(body) < 4000  # a stranger's 5000 characters are not echoed back whole
    assert web.node.pool.stats()["states"] == before  # no server handed out, of any flavor


def test_the_api_spawns_the_flavor_of_its_body_and_the_default_without_one(web):
    response, body = web.send("POST", "/api/spawn", headers={}, data=json.dumps({"flavor": "beta"}).encode())
    assert response.code == 200
    url = json.loads(body)["url"]
    assert web.image_behind(url) == BETA and url.split("?")[0].endswith("/notebooks/Lesson1.ipynb")
    response, body = web.send("POST", "/api/spawn", headers={}, data=b"")
    assert web.image_behind(json.loads(body)["url"]) == ALPHA
    response, body = web.send("POST", "/api/spawn", headers={},
                              data=json.dumps({"flavor": "beta", "path": "notebooks/x.ipynb"}).encode())
    assert json.loads(body)["url"].split("?")[0].endswith("/notebooks/x.ipynb")


@pytest.mark.parametrize("body", [{"flavor": "gamma"}, {"flavor": ""}, {"flavor": "Beta"}])
def test_the_api_answers_an_unknown_flavor_404_with_the_list(web, body):
    response, answer = web.send("POST", "/api/spawn", headers={}, data=json.dumps(body).encode())
    assert response.code == 404
    document = json.loads(answer)
    assert document["flavors"] == ["alpha", "beta"] and "error" in document


@pytest.mark.parametrize("flavor", [1, ["beta"], {"name": "beta"}, True, ["x" * 3000]])
def test_the_api_answers_a_flavor_that_is_not_a_string_404_with_the_list_as_the_redirector_does(web, flavor):
    # 404, not 400: the redirector answers the same body 404 with its list (tmpnb/redirector/web.py),
    # so an API client gets one answer whether it asks a node or the redirector.
    response, answer = web.send("POST", "/api/spawn", headers={}, data=json.dumps({"flavor": flavor}).encode())
    document = json.loads(answer)
    assert response.code == 404 and document["flavors"] == ["alpha", "beta"]
    assert "beta" not in document["error"] and "xxx" not in document["error"]  # the value is not repeated


def test_the_api_judges_the_flavor_first_so_an_unknown_one_is_a_404_whatever_else_is_wrong(web):
    # As the redirector does: one answer whether a client asks a node or the redirector.
    response, answer = web.send("POST", "/api/spawn", headers={},
                                data=json.dumps({"flavor": "gamma", "path": "../..", "wait": "long"}).encode())
    assert response.code == 404 and json.loads(answer)["flavors"] == ["alpha", "beta"]
    response, _ = web.send("POST", "/api/spawn", headers={},
                           data=json.dumps({"flavor": "beta", "wait": "long"}).encode())
    assert response.code == 400


def test_the_reload_cookie_never_hands_back_a_server_of_another_flavor(tmp_path):
    web = Web(tmp_path, keep_cookies=True)
    first, _ = web.send("GET", "/?flavor=beta")
    beta_server = location(first).split("/")[2]
    again, _ = web.send("GET", "/?flavor=beta")
    assert location(again).split("/")[2] == beta_server and "token=" not in location(again)  # the same server
    other, _ = web.send("GET", "/")  # the default flavor: a new server of it
    assert other.code == 302 and web.image_behind(location(other)) == ALPHA
    assert location(other).split("/")[2] != beta_server
    web.node.stop()


def test_the_client_share_counts_every_flavors_containers(tmp_path):
    web = Web(tmp_path, policy=SharePolicy(share=0.5, spawns_per_minute=1e9, burst=10**9), capacity=4)
    codes = [web.send("GET", f"/?flavor={f}")[0].code for f in ("alpha", "beta", "alpha", "beta")]
    assert codes == [302, 302, 429, 429]  # half of 4, whichever flavors
    web.node.stop()


def test_stats_report_each_flavor_as_the_redirector_reads_them(web):
    web.send("GET", "/?flavor=beta")
    response, body = web.send("GET", "/api/stats", headers={})
    stats = json.loads(body)
    assert stats["default_flavor"] == "alpha"
    assert set(stats["flavors"]) == {"alpha", "beta"}
    for name, figures in stats["flavors"].items():
        assert {"image", "pool_size", "available", "waiting", "room"} <= set(figures)
    assert stats["flavors"]["beta"]["image"] == BETA and stats["flavors"]["beta"]["pool_size"] == 1
    assert stats["available"] == sum(f["available"] for f in stats["flavors"].values())
    assert stats["container_image"] == ALPHA  # the default flavor's
    assert stats["room"] <= sum(f["room"] for f in stats["flavors"].values())  # shared, not counted twice


def test_metrics_carry_a_flavor_label_beside_the_totals(web):
    web.send("GET", "/?flavor=beta")
    text = generate_latest(web.metrics.registry).decode()
    assert 'tmpnb_flavor_handouts_total{flavor="beta"} 1.0' in text
    assert 'tmpnb_flavor_containers_available{flavor="alpha"} 2.0' in text
    assert 'tmpnb_flavor_pool_size_containers{flavor="beta"} 1.0' in text
    assert 'tmpnb_flavor_waiting{flavor="alpha"} 0.0' in text
    assert 'tmpnb_flavor_containers{flavor="beta",state="assigned"} 1.0' in text
    assert "tmpnb_containers_available 3.0" in text  # the node's total, as before


def test_every_lifecycle_record_says_its_containers_flavor_and_the_report_breaks_down_by_it(web):
    web.send("GET", "/?flavor=beta")
    records = transitions(web.records)
    assert {r["flavor"] for r in records} == {"alpha", "beta"}
    handed = [r for r in records if r["to"] == "assigned"]
    assert [flavor_of(r) for r in handed] == ["beta"]
    report = format_report(records)
    assert "by flavor" in report and "beta" in report
