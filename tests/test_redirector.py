"""The redirector as visitors and operators see it: fake nodes behind treq's StubTreq, a Clock
for the health period, the real resource tree in front."""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import dataclass, field

import pytest
from twisted.internet.task import Clock
from twisted.logger import globalLogPublisher
from treq.testing import StubTreq

from tests.results import succeeded
from tests.redirector_fakes import FakeNodes
from tmpnb.redirector.admin import RedirectorAdmin
from tmpnb.redirector.metrics import Metrics
from tmpnb.redirector.nodes import NodeTable, Thresholds
from tmpnb.redirector.nodesfile import load_nodes_file
from tmpnb.redirector.polling import Poller
from tmpnb.redirector.publicurls import PublicURLPolicy
from tmpnb.redirector.web import Redirector, make_resource
from tmpnb.http.headers import CorsPolicy, ResponseHeaders


PERIOD = 5.0
FRONT = "http://127.0.0.1:8000"
TOKEN = "admin-s3cret"
ADMIN_AUTH = {"Authorization": f"token {TOKEN}"}


@dataclass
class World:
    hosts: tuple[str, ...] = ("127.0.0.2:8000", "127.0.0.3:8000", "127.0.0.4:8000")
    headroom: int = 0
    public_hosts: tuple[str, ...] = ()  # --public-host
    clock: Clock = field(default_factory=Clock)

    def __post_init__(self) -> None:
        self.fakes = FakeNodes()
        for host in self.hosts:
            self.fakes.add(host, name=host.split(":")[0])
        self.nodes_http = StubTreq(self.fakes)
        self.table = NodeTable(Thresholds(down_after=2, up_after=2), PublicURLPolicy(self.public_hosts))
        for host in self.hosts:
            self.table.add(f"http://{host}")
        self.metrics = Metrics(self.table, self.headroom)
        rng = random.Random(1234)
        self.poller = Poller(self.clock, self.nodes_http, self.table, PERIOD, rng=rng, on_poll=self.metrics.poll)
        self.redirector = Redirector(self.table, self.headroom, rng, self.metrics)
        headers = ResponseHeaders(CorsPolicy(allow_origin="https://journal.example"), "'self'")
        self.front = StubTreq(make_resource(self.redirector, self.nodes_http, self.clock, headers, spawn_timeout=10))
        self.admin = StubTreq(RedirectorAdmin(self.redirector, TOKEN, reload=None))

    def node(self, host: str):
        return self.fakes.nodes[host]

    def start(self) -> "World":
        self.poller.startService()
        self.nodes_http.flush()
        return self

    def period(self, periods: int = 1) -> None:
        """Time passes: `periods` health rounds (jitter is at most 10 %)."""
        for _ in range(periods):
            self.clock.advance(PERIOD * 1.1)
            self.nodes_http.flush()

    def call(self, method: str, path: str, client=None, **kwargs):
        client = client or self.front
        d = client.request(method, FRONT + path, allow_redirects=False, **kwargs)
        client.flush()
        self.nodes_http.flush()
        client.flush()
        response = succeeded(d)
        body = succeeded(response.content())
        return response, body

    def visit(self, path: str = "/") -> str | None:
        """A visitor opens `path`: the host they are sent to, or None (No vacancy)."""
        response, _ = self.call("GET", path)
        if response.code == 503:
            return None
        assert response.code == 302
        [location] = response.headers.getRawHeaders("location")
        return location


@pytest.fixture
def world() -> World:
    return World().start()


@pytest.fixture
def logged():
    events: list[dict] = []
    globalLogPublisher.addObserver(events.append)
    yield events
    globalLogPublisher.removeObserver(events.append)


def host_of(location: str) -> str:
    return location.split("/")[2]


def test_visitors_are_redirected_to_a_node_with_path_and_query_kept(world):
    location = world.visit("/spawn/notebooks/Welcome.ipynb?x=1")
    assert host_of(location) in world.hosts
    assert location.endswith("/spawn/notebooks/Welcome.ipynb?x=1")
    response, _ = world.call("GET", "/")
    assert response.headers.getRawHeaders("cache-control") == ["no-store"]


def test_a_node_public_url_is_where_visitors_go():
    # A host other than the node's own needs --public-host (tmpnb/redirector/publicurls.py).
    world = World(public_hosts=("n1.example.org",)).start()
    world.node("127.0.0.2:8000").public_url = "https://n1.example.org"
    world.node("127.0.0.3:8000").available = 0
    world.node("127.0.0.4:8000").available = 0
    world.period()
    assert world.visit("/") == "https://n1.example.org/"


def test_a_burst_between_polls_is_counted_locally_and_never_overfills_a_node(world):
    for host, available in zip(world.hosts, (3, 1, 0)):
        world.node(host).available = available
    world.period()
    sent = Counter(host_of(world.visit()) for _ in range(4))
    assert sent == {"127.0.0.2:8000": 3, "127.0.0.3:8000": 1}
    assert world.visit() is None  # everyone full until a node says otherwise


def test_visitors_waiting_in_a_nodes_line_take_its_room_first(world):
    world.fakes.nodes["127.0.0.2:8000"].waiting = 3
    world.node("127.0.0.3:8000").available = 0
    world.node("127.0.0.4:8000").available = 0
    world.period()
    assert world.visit() is None  # 3 pooled, 3 already waiting for them


def test_every_node_full_means_the_no_vacancy_page_and_429_json(world):
    for host in world.hosts:
        world.node(host).available = 0
    world.period()
    response, body = world.call("GET", "/")
    assert response.code == 503 and b"No vacancy" in body
    assert response.headers.getRawHeaders("retry-after") == ["5"]
    response, body = world.call("POST", "/api/spawn")
    assert (response.code, json.loads(body)) == (429, {"status": "full"})
    assert all(world.node(h).spawned == 0 for h in world.hosts)


def test_a_draining_node_gets_no_new_visitor(world):
    world.node("127.0.0.2:8000").draining = True
    world.period()
    sent = {host_of(world.visit()) for _ in range(6)}
    assert "127.0.0.2:8000" not in sent
    stats = json.loads(world.call("GET", "/api/stats", client=world.admin, headers=ADMIN_AUTH)[1])
    assert {n["url"]: n["draining"] for n in stats["nodes"]}["http://127.0.0.2:8000"] is True


def test_a_node_that_stops_answering_leaves_rotation_after_n_failed_polls_and_returns_after_m(world):
    dead = world.node("127.0.0.2:8000")
    dead.mode = "error"
    world.period()
    assert world.table.get("http://127.0.0.2:8000").up  # one failure is not enough
    world.period()
    assert not world.table.get("http://127.0.0.2:8000").up
    for host in world.hosts[1:]:
        world.node(host).available = 100
    world.period()
    assert all(host_of(world.visit()) != "127.0.0.2:8000" for _ in range(30))
    dead.mode = "ok"
    world.period()
    assert not world.table.get("http://127.0.0.2:8000").up  # M=2 answers in a row needed
    world.period()
    assert world.table.get("http://127.0.0.2:8000").up


def test_a_poll_that_hangs_times_out_and_the_rounds_go_on(world):
    silent = world.node("127.0.0.3:8000")
    silent.mode = "silent"
    world.period(3)
    node = world.table.get("http://127.0.0.3:8000")
    assert not node.up and node.failures >= 2
    assert world.node("127.0.0.2:8000").stats_asked >= 4  # the others are still polled each round


def test_no_node_ever_answered_means_no_vacancy_and_health_503():
    world = World()
    for host in world.hosts:
        world.node(host).mode = "error"
    world.start()
    assert world.visit() is None
    response, body = world.call("GET", "/health")
    assert response.code == 503 and json.loads(body)["up"] == 0


def test_api_spawn_is_forwarded_and_answers_an_absolute_url(world):
    response, body = world.call("POST", "/api/spawn", data=b'{"path": "notebooks/a.ipynb"}',
                                headers={"Content-Type": "application/json"})
    assert response.code == 200
    url = json.loads(body)["url"]
    assert url.startswith("http://127.0.0.") and "/user/u1/tree?token=t" in url
    assert response.headers.getRawHeaders("access-control-allow-origin") == ["https://journal.example"]


def test_api_spawn_refused_by_a_full_node_goes_to_another(world):
    full = world.node("127.0.0.2:8000")
    world.period()
    full.available = 0  # the redirector still thinks it has 3
    codes = [world.call("POST", "/api/spawn")[0].code for _ in range(6)]
    assert codes == [200] * 6
    assert full.spawned == 0
    assert world.table.get("http://127.0.0.2:8000").available == 0  # until its next answer says otherwise


def test_errors_are_json_under_api(world):
    for method, path, code in [("GET", "/api/nothing", 404), ("GET", "/api/spawn", 405), ("PUT", "/api/stats", 405)]:
        response, body = world.call(method, path)
        assert response.code == code and isinstance(json.loads(body), dict)
    response, body = world.call("POST", "/api/spawn", data=b"x" * 5000)
    assert response.code == 413 and json.loads(body)["status"] == "body too large"


def test_stats_sum_the_nodes_and_list_each(world):
    world.node("127.0.0.4:8000").draining = True
    world.period()
    public = json.loads(world.call("GET", "/api/stats")[1])
    stats = json.loads(world.call("GET", "/api/stats", client=world.admin, headers=ADMIN_AUTH)[1])
    for seen in (public, stats):
        assert seen["available"] == 6 and seen["capacity"] == 20 and seen["up"] == 3
    assert [n["node"] for n in stats["nodes"]] == ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
    assert "nodes" not in public and "127.0.0.2" not in json.dumps(public)  # node details: admin only


def test_metrics_count_visitors_and_show_each_node(world):
    world.visit()
    assert world.call("GET", "/metrics")[0].code == 404  # not on the public port
    response, body = world.call("GET", "/metrics", client=world.admin)
    text = body.decode()
    assert response.code == 200 and response.headers.getRawHeaders("content-type")[0].startswith("text/plain")
    assert 'tmpnb_redirector_node_up{node="http://127.0.0.2:8000"} 1.0' in text
    assert sum(float(line.split()[-1]) for line in text.splitlines()
               if line.startswith("tmpnb_redirector_visitors_total{")) == 1.0


def test_admin_adds_lists_and_removes_nodes_and_refuses_without_the_token(world):
    auth = {"Authorization": f"token {TOKEN}"}
    assert world.call("GET", "/api/nodes", client=world.admin)[0].code == 403
    response, body = world.call("POST", "/api/nodes", client=world.admin, headers=auth,
                                data=b'{"url": "http://127.0.0.5:8000/"}')
    assert (response.code, json.loads(body)) == (201, {"added": "http://127.0.0.5:8000"})
    nodes = json.loads(world.call("GET", "/api/nodes", client=world.admin, headers=auth)[1])["nodes"]
    assert len(nodes) == 4
    response, body = world.call("DELETE", "/api/nodes?url=http://127.0.0.5:8000", client=world.admin, headers=auth)
    assert (response.code, json.loads(body)) == (200, {"removed": "http://127.0.0.5:8000"})
    response, body = world.call("DELETE", "/api/nodes?url=http://127.0.0.5:8000", client=world.admin, headers=auth)
    assert response.code == 404 and json.loads(body)["error"] == "no such node"
    response, body = world.call("POST", "/api/nodes", client=world.admin, headers=auth, data=b'{"url": "ftp://x"}')
    assert response.code == 400


def test_a_nodes_file_reload_keeps_the_state_of_nodes_that_stay_and_a_bad_file_changes_nothing(world, tmp_path):
    path = tmp_path / "nodes"
    path.write_text("# the federation\nhttp://127.0.0.3:8000\nhttp://127.0.0.9:8000/  # new\n")
    kept = world.table.get("http://127.0.0.3:8000")
    world.table.remove("http://127.0.0.3:8000")
    world.table._nodes[kept.url] = kept
    kept.source = "file"
    assert load_nodes_file(str(path), world.table)
    assert world.table.get("http://127.0.0.3:8000") is kept and kept.up
    assert world.table.get("http://127.0.0.9:8000").source == "file"
    before = [n.url for n in world.table]
    for bad in ["http://127.0.0.3:8000\nnot a url\n", "# nothing\n", b"\xff\xfe"]:
        path.write_bytes(bad if isinstance(bad, bytes) else bad.encode())
        assert not load_nodes_file(str(path), world.table)
        assert [n.url for n in world.table] == before
    path.unlink()
    assert not load_nodes_file(str(path), world.table)
    path.write_text("http://127.0.0.3:8000\n")
    assert load_nodes_file(str(path), world.table)
    assert world.table.get("http://127.0.0.9:8000") is None
    assert world.table.get("http://127.0.0.2:8000") is not None  # an --node is not the file's to remove


# -- a node's self-reported public_url goes into Location only when it is sound


@pytest.mark.parametrize("reported", [
    "javascript:alert(1)", "https://user:pw@127.0.0.2/", "https://evil.example/", "ftp://127.0.0.2/",
    "https://127.0.0.2/?next=https://evil.example", "https://127.0.0.2/#x", "https://127.0.0.2\\@evil.example/",
    "https://127.0.0.2:99999/", "https://127.0.0.2/\r\nSet-Cookie: x=1", "https://éxample.org/", "//evil.example/",
    "https://n1.example.org.evil.example/", 42,
])
def test_a_node_reporting_a_bad_public_url_gets_no_visitors_and_a_warning(reported, logged):
    world = World(public_hosts=("n1.example.org", "*.nodes.example.org")).start()
    world.node("127.0.0.2:8000").public_url = reported
    world.node("127.0.0.3:8000").available = 1
    world.node("127.0.0.4:8000").available = 1
    events = logged
    world.period()
    sent = {host_of(world.visit()) for _ in range(2)}  # the room of the two others
    assert sent == {"127.0.0.3:8000", "127.0.0.4:8000"}
    assert world.visit() is None  # the third node's room is not offered
    warnings = [e for e in events if "will not send visitors" in e.get("log_format", "")]
    assert len(warnings) == 1  # once per change, not once per poll
    world.period()
    assert len([e for e in events if "will not send visitors" in e.get("log_format", "")]) == 1
    nodes = json.loads(world.call("GET", "/api/nodes", client=world.admin, headers=ADMIN_AUTH)[1])["nodes"]
    assert [n["bad_public_url"] is not None for n in nodes] == [True, False, False]


@pytest.mark.parametrize("reported, location", [
    ("http://127.0.0.2:9000/", "http://127.0.0.2:9000/"),  # the node's own host, another port
    ("https://n1.example.org", "https://n1.example.org/"),
    ("https://a.nodes.example.org/prefix/", "https://a.nodes.example.org/prefix/"),
])
def test_a_sound_public_url_is_used(reported, location):
    world = World(public_hosts=("n1.example.org", "*.nodes.example.org")).start()
    world.node("127.0.0.2:8000").public_url = reported
    world.node("127.0.0.3:8000").available = 0
    world.node("127.0.0.4:8000").available = 0
    world.period()
    assert world.visit("/") == location


def test_a_node_that_fixes_its_public_url_is_back_in_rotation():
    world = World().start()
    node = world.node("127.0.0.2:8000")
    node.public_url = "https://evil.example/"
    world.node("127.0.0.3:8000").available = 0
    world.node("127.0.0.4:8000").available = 0
    world.period()
    assert world.visit() is None
    node.public_url = None  # it reports none: the URL the redirector polls is used
    world.period()
    assert world.visit() == "http://127.0.0.2:8000/"


def test_admin_metrics_need_no_token_and_admin_stats_need_it(world):
    assert world.call("GET", "/metrics", client=world.admin)[0].code == 200
    assert world.call("GET", "/api/stats", client=world.admin)[0].code == 403
