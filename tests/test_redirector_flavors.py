"""Flavors through the redirector: nodes report what they serve (the seam in docs/many-hosts.md,
"Flavors across nodes"), visitors ask with ?flavor= or {"flavor": …}; fake nodes behind treq's
StubTreq, a Clock for the health period, the real resource tree in front (tests/test_redirector.py)."""

from __future__ import annotations

import json
import random
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from tests.test_redirector import ADMIN_AUTH, World, host_of
from tmpnb.redirector.choosing import choose, flavors_served
from tmpnb.redirector.flavors import MAX_FLAVORS, read_flavors
from tmpnb.redirector.metrics import MAX_FLAVOR_LABELS, OTHER_FLAVORS, Metrics
from tmpnb.redirector.nodes import NodeTable, Thresholds, flavor_room, room

N2, N3, N4 = "127.0.0.2:8000", "127.0.0.3:8000", "127.0.0.4:8000"


def flavor(room: int, available: int | None = None, image: str = "tmpnb/notebook:x") -> dict:
    """One flavor as a node reports it."""
    return {"image": image, "pool_size": 2, "available": room if available is None else available,
            "waiting": 0, "room": room}


def federation(**flavors_of) -> World:
    """n2 serves python (3) and r (1), n3 serves r (5), n4 is an older node (no flavors)."""
    world = World().start()
    world.node(N2).flavors = {"python": flavor(3), "r": flavor(1)}
    world.node(N2).default_flavor = "python"
    world.node(N3).flavors = {"r": flavor(5)}
    world.node(N3).default_flavor = "r"
    world.node(N4).available = 3
    for host, flavors in flavors_of.items():
        world.node(host).flavors = flavors
    world.period()
    return world


@pytest.fixture
def fed() -> World:
    return federation()


def spawn(world: World, document: dict | None = None, raw: bytes | None = None):
    body = raw if raw is not None else (b"" if document is None else json.dumps(document).encode())
    response, answer = world.call("POST", "/api/spawn", data=body, headers={"Content-Type": "application/json"})
    return response.code, json.loads(answer)


# -- choosing by a flavor's room, the choice passed through


def test_visitors_of_a_flavor_go_only_to_its_nodes_by_its_room_until_it_is_full(fed):
    sent = Counter(host_of(fed.visit("/?flavor=r")) for _ in range(6))
    assert sent == {N2: 1, N3: 5}  # counted locally: a burst never overfills a flavor
    assert fed.visit("/?flavor=r") is None  # the same No vacancy as a full federation
    response, body = fed.call("GET", "/?flavor=r")
    assert response.code == 503 and b"No vacancy" in body
    assert response.headers.getRawHeaders("retry-after") == ["5"]
    # python is still there on n2: its room (3) is its own, within the node's (4 − 1 sent)
    assert Counter(host_of(fed.visit("/?flavor=python")) for _ in range(3)) == {N2: 3}
    assert fed.visit("/?flavor=python") is None


def test_the_flavor_and_the_spawn_path_are_kept_in_the_redirect(fed):
    location = fed.visit("/spawn/notebooks/Lesson1.ipynb?flavor=python")
    assert location == f"http://{N2}/spawn/notebooks/Lesson1.ipynb?flavor=python"
    location = fed.visit("/?flavor=r&x=1")
    assert location.split("/", 3)[3] == "?flavor=r&x=1" and host_of(location) in (N2, N3)


def test_an_api_spawn_with_a_flavor_is_forwarded_with_its_body_to_a_node_that_serves_it(fed):
    document = {"flavor": "python", "path": "notebooks/Lesson1.ipynb"}
    code, answer = spawn(fed, document)
    assert code == 200 and answer["url"] == f"http://{N2}/user/u1/tree?token=t" and answer["flavor"] == "python"
    assert fed.node(N2).spawn_bodies == [json.dumps(document).encode()]  # byte for byte
    assert fed.node(N3).spawn_bodies == fed.node(N4).spawn_bodies == []


def test_a_flavor_node_that_answers_full_or_no_longer_serves_it_is_skipped_for_another(fed):
    fed.node(N2).flavors["r"]["room"] = 0  # the redirector still thinks n2 has one r
    fed.node(N3).flavors = {"python": flavor(2)}  # n3 restarted without r since its poll
    fed.node(N3).default_flavor = "python"
    code, answer = spawn(fed, {"flavor": "r"})
    # n2 answered 429, n3 404: both tried once; r is still known (n2 serves it, full)
    assert (code, answer) == (429, {"status": "full"})
    assert len(fed.node(N2).spawn_bodies) == len(fed.node(N3).spawn_bodies) == 1
    assert spawn(fed, {"flavor": "r"}) == (429, {"status": "full"})
    assert len(fed.node(N2).spawn_bodies) == len(fed.node(N3).spawn_bodies) == 1  # no node asked again
    fed.node(N3).flavors["r"] = flavor(1)  # n3 serves r again: its next report says so
    fed.period()
    code, answer = spawn(fed, {"flavor": "r"})
    assert code == 200 and host_of(answer["url"]) == N3


def test_a_flavor_every_node_stopped_serving_since_its_poll_is_404(fed):
    for host in (N2, N3):
        fed.node(host).flavors = {"python": flavor(2)}
    code, answer = spawn(fed, {"flavor": "r"})
    assert (code, answer["flavors"]) == (404, ["python"])
    assert fed.call("GET", "/?flavor=r")[0].code == 404


# -- a flavor no node serves


@pytest.mark.parametrize("query", ["?flavor=julia", "?flavor=Python", "?flavor=", "?flavor=a%20b",
                                   "?flavor=python&flavor=r", "?flavor=" + "x" * 33,
                                   "?flavor=%3Cscript%3Ealert(1)%3C/script%3E", "?flavor=%22onload%3D"])
def test_an_unknown_or_ill_formed_flavor_is_404_with_the_flavors_served(fed, query):
    response, body = fed.call("GET", "/spawn/notebooks/a.ipynb" + query)
    page = body.decode()
    assert response.code == 404 and response.headers.getRawHeaders("content-type")[0].startswith("text/html")
    assert '<a href="/?flavor=python">python</a>' in page and '<a href="/?flavor=r">r</a>' in page
    assert "<script" not in page and "onload" not in page and "%3C" not in page
    assert all(fed.node(h).spawned == 0 for h in (N2, N3, N4))
    if query == "?flavor=julia":
        assert "<code>julia</code>" in page


@pytest.mark.parametrize("document", [{"flavor": "julia"}, {"flavor": 3}, {"flavor": ["r"]}, {"flavor": "R"},
                                      {"flavor": "<b>"}, {"flavor": ""}, {"flavor": True}])
def test_an_api_spawn_for_an_unknown_flavor_is_404_json_with_the_flavors(fed, document):
    code, answer = spawn(fed, document)
    assert code == 404 and answer["flavors"] == ["python", "r"]
    assert isinstance(answer["error"], str) and "<b>" not in answer["error"]
    assert all(fed.node(h).spawn_bodies == [] for h in (N2, N3, N4))


def test_a_known_flavor_whose_nodes_are_all_down_or_draining_is_no_vacancy_not_404():
    world = federation()
    world.node(N3).draining = True
    world.node(N2).mode = "error"
    world.period(2)  # n2 down
    assert world.table.get(f"http://{N2}").up is False
    response, _ = world.call("GET", "/?flavor=r")  # n3 drains: r is known, only not free
    assert response.code == 503
    response, _ = world.call("GET", "/?flavor=python")  # only the node that is down served it
    assert response.code == 404
    for host in (N3, N4):
        world.node(host).mode = "error"
    world.period(2)  # nobody up: whether julia exists is not known, so No vacancy
    assert world.call("GET", "/?flavor=julia")[0].code == 503
    assert spawn(world, {"flavor": "julia"})[0] == 429


# -- older nodes, and visitors who ask for no flavor


def test_an_older_node_gets_only_visitors_who_ask_for_no_flavor(fed):
    sent = Counter(host_of(fed.visit("/?flavor=r")) for _ in range(6))
    assert N4 not in sent
    only_old = World().start()  # three nodes without flavors
    response, body = only_old.call("GET", "/?flavor=python")
    assert response.code == 404 and "No flavor is served right now" in body.decode()
    code, answer = spawn(only_old, {"flavor": "python"})
    assert (code, answer["flavors"]) == (404, [])
    assert only_old.visit("/") is not None  # no flavor: as always


def test_a_visitor_who_asks_for_no_flavor_takes_the_room_of_each_nodes_default(fed):
    # n2's default python (3), n3's default r (5, node room 5), n4 older (3): 11 places
    sent = Counter(host_of(fed.visit("/")) for _ in range(11))
    assert sent == {N2: 3, N3: 5, N4: 3}
    assert fed.visit("/") is None
    # n2 still has its r (1): a visitor asking for it gets it, its default full or not
    assert host_of(fed.visit("/?flavor=r")) == N2


def test_no_flavor_api_spawns_go_as_always_and_their_bodies_too(fed):
    code, answer = spawn(fed)
    assert code == 200
    code, answer = spawn(fed, {"path": "a.ipynb", "flavor": None})  # null: the node's default
    assert code == 200
    bodies = [b for h in (N2, N3, N4) for b in fed.node(h).spawn_bodies]
    assert sorted(bodies) == sorted([b"", b'{"path": "a.ipynb", "flavor": null}'])


# -- what a node reports is checked


@pytest.mark.parametrize("flavors, default, kept, problem", [
    ("python", None, {}, "flavors is a str"),
    ([{"room": 3}], None, {}, "flavors is a list"),
    ({"Python": flavor(3), "ok": flavor(2)}, None, {"ok": 2}, "flavor names not"),
    ({"a b": flavor(3)}, None, {}, "flavor names not"),
    ({"x" * 33: flavor(1)}, None, {}, "flavor names not"),
    ({"ok": "lots"}, None, {}, "flavor ok has no room"),
    ({"ok": {"room": -1}}, None, {}, "flavor ok has no room"),
    ({"ok": {"room": True}}, None, {}, "flavor ok has no room"),
    ({"ok": {"room": "3"}}, None, {}, "flavor ok has no room"),
    ({"ok": {"available": 3}}, None, {}, "flavor ok has no room"),
    ({"ok": flavor(10**400)}, None, {"ok": 1_000_000}, None),  # capped: a weight stays a float
    ({"ok": flavor(2)}, "nope", {"ok": 2}, "default_flavor 'nope' is not one"),
    ({"ok": flavor(2)}, 7, {"ok": 2}, "default_flavor 7 is not one"),
    ({"ok": flavor(2), "r": {"room": 1, "image": "x\n" * 300, "available": "2"}}, "ok", {"ok": 2, "r": 1}, None),
])
def test_a_malformed_flavor_report_is_left_out_with_one_warning_never_a_crash(flavors, default, kept, problem, logged):
    world = World().start()
    node = world.node(N2)
    node.flavors, node.default_flavor = flavors, default
    world.period()
    world.period()
    seen = world.table.get(f"http://{N2}")
    assert seen.up and {name: f.room for name, f in (seen.flavors or {}).items()} == kept
    warnings = [e for e in logged if "leaves out" in e.get("log_format", "")]
    if problem is None:
        assert warnings == [] and seen.flavor_problems == ()
    else:
        assert len(warnings) == 1 and problem in warnings[0]["problems"]  # once per change, not per poll
    # Every public answer still works: stats, a visitor of a flavor it kept, of none, of another.
    assert world.call("GET", "/api/stats")[0].code == 200
    details = json.loads(world.call("GET", "/api/nodes", client=world.admin, headers=ADMIN_AUTH)[1])["nodes"]
    assert json.dumps(details)
    for name in kept:
        assert host_of(world.visit(f"/?flavor={name}")) == N2
    assert world.visit("/") is not None
    assert world.call("GET", "/?flavor=julia")[0].code == 404


def test_a_report_with_too_many_flavors_keeps_the_first_by_name():
    reported = read_flavors({"flavors": {f"f{i:03d}": flavor(1) for i in range(MAX_FLAVORS + 10)}})
    assert list(reported.flavors) == [f"f{i:03d}" for i in range(MAX_FLAVORS)]
    assert reported.problems and "only the first" in reported.problems[0]
    assert read_flavors({"available": 3}).flavors is None  # no key: an older node


def test_a_node_that_drops_flavors_from_its_report_is_an_older_node_again(fed):
    fed.node(N2).flavors = None
    fed.period()
    assert fed.table.get(f"http://{N2}").flavors is None
    response, body = fed.call("GET", "/?flavor=python")
    assert response.code == 404 and "?flavor=python" not in body.decode()  # n2 was its only node
    assert host_of(fed.visit("/?flavor=r")) == N3


# -- stats, node details and metrics


def test_stats_and_node_details_show_flavors_and_room_per_flavor(fed):
    fed.visit("/?flavor=r")
    public = json.loads(fed.call("GET", "/api/stats")[1])
    assert public["flavors"] == {"python": {"room": 3, "available": 3}, "r": {"room": 5, "available": 6}}
    assert "127.0.0" not in json.dumps(public)
    nodes = {n["url"]: n for n in json.loads(fed.call("GET", "/api/nodes", client=fed.admin, headers=ADMIN_AUTH)[1])["nodes"]}
    n2, n4 = nodes[f"http://{N2}"], nodes[f"http://{N4}"]
    assert n2["default_flavor"] == "python" and n2["flavors"]["python"]["room"] == 3
    assert n2["flavors"]["python"]["image"] == "tmpnb/notebook:x" and n2["flavors"]["python"]["reported_room"] == 3
    assert n4["flavors"] is None and n4["default_flavor"] is None
    sent_r = {url: n["flavors"]["r"]["pending"] for url, n in nodes.items() if n["flavors"] and "r" in n["flavors"]}
    assert sum(sent_r.values()) == 1


def test_metrics_show_room_per_flavor_and_visitors_by_flavor(fed):
    fed.visit("/?flavor=python")
    fed.call("GET", "/?flavor=julia")
    fed.call("GET", "/?flavor=%3Cx%3E")
    text = fed.call("GET", "/metrics", client=fed.admin)[1].decode()
    assert f'tmpnb_redirector_node_flavor_room{{flavor="python",node="http://{N2}"}} 2.0' in text
    assert f'tmpnb_redirector_node_flavor_room{{flavor="r",node="http://{N3}"}} 5.0' in text
    assert f'tmpnb_redirector_flavor_visitors_total{{flavor="python",how="redirect",node="http://{N2}"}} 1.0' in text
    assert 'tmpnb_redirector_unknown_flavor_total{how="redirect"} 2.0' in text
    assert "julia" not in text and "<x>" not in text  # a visitor's name is never a label


def test_flavor_labels_are_bounded_over_the_process_life():
    metrics = Metrics(NodeTable(), 0)
    labels = [metrics.flavor_label(f"f{i}") for i in range(MAX_FLAVOR_LABELS + 50)]
    assert len(set(labels)) == MAX_FLAVOR_LABELS + 1 and labels[-1] == OTHER_FLAVORS
    assert metrics.flavor_label("f0") == "f0"


# -- properties


NAMES = ["a", "b", "c"]
flavor_reports = st.dictionaries(st.sampled_from(NAMES), st.integers(0, 6), max_size=3)
nodes_st = st.lists(
    st.tuples(st.booleans(), st.booleans(), st.one_of(st.none(), flavor_reports), st.integers(0, 8),
              st.integers(0, 4), st.one_of(st.none(), st.sampled_from(NAMES))),
    max_size=5,
)


def build_table(specs) -> NodeTable:
    table = NodeTable()
    for i, (up, draining, flavors, available, sent, default) in enumerate(specs):
        node = table.add(f"http://10.0.0.{i + 1}:8000")
        stats = {"available": available, "draining": draining}
        if flavors is not None:
            stats["flavors"] = {name: flavor(r) for name, r in flavors.items()}
            stats["default_flavor"] = default
        table.answered(node, stats, table.polling(node))
        node.up = up
        for _ in range(sent):  # visitors sent since: pending, each for a flavor it serves
            asked = random.Random(i).choice([None, *(node.flavors or {})])
            table.sent_visitor(node, asked)
    return table


@settings(deadline=None)
@given(nodes_st, st.one_of(st.none(), st.sampled_from(NAMES)), st.integers(0, 2), st.integers(0, 2**32))
def test_the_chosen_node_serves_the_flavor_and_has_room_or_the_answer_says_why(specs, asked, headroom, seed):
    table = build_table(specs)
    nodes = list(table)
    chosen = choose(table, headroom, random.Random(seed), flavor=asked)
    if chosen is not None:
        assert chosen.up and not chosen.draining
        if asked is not None:
            assert chosen.flavors is not None and asked in chosen.flavors
            assert chosen.flavors[asked].room - headroom - chosen.pending_flavor(asked) >= 1
        assert room(chosen, headroom) >= 1
        return
    # No node: either nobody serves it (404 when some node is up) or whoever does has no room.
    serving = [n for n in nodes if n.up and not n.draining and (asked is None or asked in (n.flavors or {}))]
    assert all(flavor_room(n, asked, headroom) == 0 for n in serving)
    if asked is not None and asked not in flavors_served(nodes):
        assert not any(n.up and asked in (n.flavors or {}) for n in nodes)


@settings(deadline=None)
@given(nodes_st, st.lists(st.one_of(st.none(), st.sampled_from(NAMES)), max_size=40), st.integers(0, 2**32))
def test_a_burst_never_sends_a_node_more_of_a_flavor_than_its_room(specs, visitors, seed):
    table = build_table([(up, draining, flavors, available, 0, default)
                         for up, draining, flavors, available, _, default in specs])
    rooms = {(n.url, name): f.room for n in table for name, f in (n.flavors or {}).items()}
    whole = {n.url: room(n, 0) for n in table}
    sent: Counter = Counter()
    per_node: Counter = Counter()
    rng = random.Random(seed)
    for asked in visitors:
        node = choose(table, 0, rng, flavor=asked)
        if node is None:
            continue
        table.sent_visitor(node, asked)
        taken = node.flavor_taken(asked)
        if taken is not None:
            sent[(node.url, taken)] += 1
        per_node[node.url] += 1
    assert all(sent[key] <= rooms[key] for key in sent)
    assert all(per_node[url] <= whole[url] for url in per_node)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.one_of(st.none(), flavor_reports), st.sampled_from(["ok", "error"]), st.booleans()),
                min_size=3, max_size=3),
       st.one_of(st.sampled_from(NAMES), st.just("x y"), st.just("")), st.booleans())
def test_through_the_front_door_a_visitor_gets_a_node_of_the_flavor_or_404_or_no_vacancy(nodes, asked, api):
    """The whole path: polls over HTTP, then one visitor (redirect or API) asking for `asked`."""
    world = World()
    for host, (flavors, mode, draining) in zip(world.hosts, nodes):
        fake = world.node(host)
        fake.flavors = None if flavors is None else {name: flavor(r) for name, r in flavors.items()}
        fake.mode, fake.draining, fake.available = mode, draining, 6
    world.start()
    up = {h: world.table.get(f"http://{h}").up for h in world.hosts}
    serving = [h for h, (flavors, mode, draining) in zip(world.hosts, nodes)
               if up[h] and flavors is not None and asked in flavors]
    with_room = [h for h in serving if not nodes[world.hosts.index(h)][2] and nodes[world.hosts.index(h)][0][asked] > 0]
    if api:
        code, answer = spawn(world, {"flavor": asked})
        where = host_of(answer["url"]) if code == 200 else None
    else:
        response, _ = world.call("GET", f"/?flavor={asked}")
        code = {302: 200, 503: 429}.get(response.code, response.code)
        where = host_of(response.headers.getRawHeaders("location")[0]) if response.code == 302 else None
    if asked not in NAMES:  # ill-formed: no node could ever serve it
        assert code == 404
    elif with_room:
        assert code == 200 and where in with_room
    elif serving or not any(up.values()):
        assert code == 429  # known (or nobody up to say): No vacancy
    else:
        assert code == 404


def test_a_node_404_that_lists_no_flavors_is_its_own_verdict_passed_on(fed):
    """Only an unknown-flavor answer (it lists the node's flavors) means "no longer serves it"."""
    def spawn_disabled(request, body):
        request.setResponseCode(404)
        return b'{"status": "not found"}'

    fed.node(N2)._spawn_flavor = spawn_disabled
    assert spawn(fed, {"flavor": "python"}) == (404, {"status": "not found"})
    assert "python" in fed.table.get(f"http://{N2}").flavors


def test_a_node_reporting_an_enormous_count_is_capped_not_a_crash(fed):
    fed.node(N4).available = 10**400  # an older node: its available is its room
    fed.period()
    assert room(fed.table.get(f"http://{N4}"), 0) == 1_000_000
    assert host_of(fed.visit("/")) in (N2, N3, N4)


# -- the table as a state machine, with flavors: polls answer (with any flavors) or fail, nodes
# drain, visitors of any flavor arrive in bursts; whatever happens, no visitor goes to a node that
# is down, draining or not serving their flavor, and no flavor of a node gets more visitors
# between two answers than the room it reported for it.

URLS = [f"http://10.0.0.{i}:8000" for i in range(1, 5)]
HEADROOM = 1


class FlavoredFederation(RuleBasedStateMachine):
    @initialize(seed=st.integers(0, 2**32))
    def start(self, seed: int) -> None:
        self.table = NodeTable(Thresholds(down_after=2, up_after=2))
        for url in URLS:
            self.table.add(url)
        self.rng = random.Random(seed)
        self.reported: dict[tuple[str, str], int] = {}  # (node, flavor): the room it last reported
        self.since_answer: Counter = Counter()  # (node, flavor): visitors sent since that answer
        self.wrong: list[str] = []

    @rule(url=st.sampled_from(URLS), flavors=st.one_of(st.none(), flavor_reports), draining=st.booleans(),
          default=st.one_of(st.none(), st.sampled_from(NAMES)))
    def poll_answers(self, url: str, flavors: dict | None, draining: bool, default: str | None) -> None:
        node = self.table.get(url)
        stats = {"available": 6, "draining": draining, "default_flavor": default}
        if flavors is not None:
            stats["flavors"] = {name: flavor(r) for name, r in flavors.items()}
        self.table.answered(node, stats, self.table.polling(node))
        for key in [k for k in self.reported if k[0] == url]:
            del self.reported[key]
            self.since_answer.pop(key, None)
        for name, r in (flavors or {}).items():
            self.reported[(url, name)] = r

    @rule(url=st.sampled_from(URLS))
    def poll_fails(self, url: str) -> None:
        self.table.failed(self.table.get(url), "refused")

    @rule(asked=st.one_of(st.none(), st.sampled_from(NAMES)), visitors=st.integers(1, 6))
    def burst(self, asked: str | None, visitors: int) -> None:
        for _ in range(visitors):
            node = choose(self.table, HEADROOM, self.rng, flavor=asked)
            if node is None:
                return
            if not node.up or node.draining or (asked is not None and asked not in (node.flavors or {})):
                self.wrong.append(f"{asked} sent to {node.url}: up={node.up}, draining={node.draining}, "
                                  f"flavors={node.flavors}")
            self.table.sent_visitor(node, asked)
            taken = node.flavor_taken(asked)
            if taken is not None:
                self.since_answer[(node.url, taken)] += 1

    @invariant()
    def never_a_down_draining_or_other_flavor_node(self) -> None:
        assert self.wrong == []

    @invariant()
    def never_more_of_a_flavor_than_its_reported_room_between_answers(self) -> None:
        for key, sent in self.since_answer.items():
            assert sent <= max(0, self.reported.get(key, 0) - HEADROOM), key


TestFlavoredFederation = FlavoredFederation.TestCase
TestFlavoredFederation.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)


def test_visitors_of_a_flavor_sent_while_a_poll_was_out_are_still_pending_after_its_answer():
    table = NodeTable()
    node = table.add("http://10.0.0.1:8000")
    table.answered(node, {"available": 9, "room": 9, "flavors": {"a": flavor(5), "b": flavor(4)},
                          "default_flavor": "b"}, table.polling(node))
    table.sent_visitor(node, "a")
    sent_then = table.polling(node)  # the poll leaves after the first visitor ...
    table.sent_visitor(node, "a")  # ... and two more are sent before it answers
    table.sent_visitor(node, None)  # (no flavor: the default, b)
    table.answered(node, {"available": 8, "room": 8, "flavors": {"a": flavor(4), "b": flavor(4)},
                          "default_flavor": "b"}, sent_then)
    assert (node.pending_flavor("a"), node.pending_flavor("b")) == (1, 1)
    assert (flavor_room(node, "a", 0), flavor_room(node, "b", 0), flavor_room(node, None, 0)) == (3, 3, 3)
    assert flavor_room(node, "c", 0) == 0 and room(node, 0) == 6
    table.found_full(node, "a")  # a forwarded spawn of a answered 429: a is full, b is not
    assert (flavor_room(node, "a", 0), flavor_room(node, "b", 0)) == (0, 3)
