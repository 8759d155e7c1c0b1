"""The heartbeat looks only at containers whose verdict could change (tmpnb/due.py): every
cull comes at the very heartbeat it came when every container was judged and every idle
server asked at every heartbeat, nothing due is skipped, and quiet servers are not asked
again until the cull check."""

from __future__ import annotations

import random
from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.test_pool import HEARTBEAT, World, culls, handed_out
from tmpnb.config import PoolConfig
from tmpnb.due import SLACK, Lookouts, route_mark
from tmpnb.judging import ROUTE_ADDED_SLACK, Active, Cull, Idle

CONFIG = PoolConfig(pool_size=1, capacity=4, cull_period=10.0, cull_timeout=60.0, cull_max=300.0, refill_delay=0.0)
VISITORS = 3


def seen(assigned_at: float = 0.0, last_activity: float | None = None, state: str = "assigned") -> dict:
    return {"assigned_at": assigned_at, "last_activity": last_activity, "state": state, "route_added_at": assigned_at}


def route(last_activity: str) -> dict:
    return {"last_activity": last_activity}


# -- the index alone ----------------------------------------------------------------------


@given(st.lists(st.tuples(st.integers(0, 30), st.floats(0, 500), st.sampled_from(["active", "idle", "cull"])), max_size=60),
       st.lists(st.floats(0, 1000), min_size=1, max_size=10))
def test_exactly_the_containers_whose_time_came_are_due(looks: list, nows: list) -> None:
    lookouts = Lookouts(CONFIG)
    planned: dict[str, float] = {}  # what a scan of every container would find
    now = 0.0
    for number, activity, kind in looks:
        cid = f"c{number}"
        verdict = {"active": Active(activity), "idle": Idle(activity), "cull": Cull("idle")}[kind]
        lookouts.answered(cid, seen(), route("r"), activity, activity)  # a quiet server
        lookouts.judged(cid, seen(), route("r"), verdict, now)
        if kind == "cull":
            planned.pop(cid, None)
        else:
            period = CONFIG.cull_period if kind == "active" else CONFIG.cull_timeout
            planned[cid] = min(activity + period, CONFIG.cull_max)
    for now in sorted(nows):
        due = lookouts.due_by(now)
        assert due == {cid for cid, when in planned.items() if when <= now}
        assert not any(lookouts.moved(cid, route("r")) for cid in planned)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 8), st.floats(0, 100), st.sampled_from(["active", "idle", "cull"]),
                          st.floats(0, 20)), max_size=80))
def test_looks_and_checks_interleaved_find_exactly_what_a_scan_finds(steps: list) -> None:
    # Containers judged again and again (their next look moving earlier and later) between
    # heartbeats: each check finds exactly those a scan of every container would.
    config = PoolConfig(pool_size=1, capacity=4, cull_period=10.0, cull_timeout=60.0, cull_max=1e9)
    lookouts = Lookouts(config)
    planned: dict[str, float] = {}
    overdue: set[str] = set()
    now = 0.0
    for check, number, activity, kind, step in steps:
        now += step
        cid = f"c{number}"
        if check:
            overdue |= {c for c, when in planned.items() if when <= now}
            assert lookouts.due_by(now) == overdue
            continue
        verdict = {"active": Active(now - activity / 10), "idle": Idle(now - activity), "cull": Cull("idle")}[kind]
        lookouts.answered(cid, seen(), None, now - activity, now - activity)  # quiet
        lookouts.judged(cid, seen(), None, verdict, now)
        overdue.discard(cid)
        planned.pop(cid, None)
        if isinstance(verdict, Active):
            planned[cid] = verdict.when + config.cull_period
        elif isinstance(verdict, Idle):
            planned[cid] = verdict.since + config.cull_timeout
        if cid in planned and planned[cid] <= now:
            del planned[cid]
            overdue.add(cid)
    overdue |= {c for c, when in planned.items() if when <= now + 1000}
    assert lookouts.due_by(now + 1000) == overdue


def test_a_due_container_stays_due_until_it_is_judged() -> None:
    lookouts = Lookouts(CONFIG)
    lookouts.judged("a", seen(), None, Active(0.0), 0.0)
    assert lookouts.due_by(10.0) == {"a"}
    assert lookouts.due_by(11.0) == {"a"}  # a sweep stopped before judging it: still due
    lookouts.judged("a", seen(), None, Active(11.0), 11.0)
    assert lookouts.due_by(20.0) == set()
    assert lookouts.due_by(21.0) == {"a"}
    lookouts.forget("a")
    assert lookouts.due_by(1000.0) == set() and len(lookouts) == 0


def test_too_old_comes_due_whatever_the_activity() -> None:
    lookouts = Lookouts(CONFIG)
    lookouts.answered("a", seen(), None, 280.0, 280.0)
    lookouts.judged("a", seen(assigned_at=0.0), None, Idle(280.0), 295.0)  # idle till 340, but
    assert lookouts.due_by(299.0) == set()
    assert lookouts.due_by(300.0) == {"a"}  # cull_max after it was assigned


def test_a_route_that_moved_needs_a_look() -> None:
    lookouts = Lookouts(CONFIG)
    assert lookouts.moved("a", route("t1"))  # never looked at
    lookouts.judged("a", seen(), route("t1"), Active(5.0), 5.0)
    assert not lookouts.moved("a", route("t1"))
    assert lookouts.moved("a", route("t2"))  # the proxy saw activity
    assert lookouts.moved("a", None)  # the route is gone (a proxy restart): restore, judge


def test_a_quiet_servers_answer_is_kept_until_the_cull_check() -> None:
    lookouts = Lookouts(CONFIG)
    at = seen(assigned_at=0.0)
    lookouts.answered("a", at, route("t1"), known=20.0, activity=21.0)  # within SLACK of the proxy's
    assert lookouts.cached_activity("a", at, route("t1"), 20.0, 40.0) == 21.0
    assert lookouts.cached_activity("a", at, route("t1"), 20.0, 21.0 + 59.9) == 21.0
    assert lookouts.cached_activity("a", at, route("t1"), 20.0, 21.0 + 60.0) is None  # would cull: ask
    assert lookouts.cached_activity("a", at, route("t2"), 20.0, 40.0) is None  # the proxy saw something
    assert lookouts.cached_activity("a", seen(assigned_at=5.0), route("t1"), 20.0, 40.0) is None  # not the same


def test_a_server_ahead_of_the_proxy_is_asked_each_time_until_it_stops() -> None:
    lookouts = Lookouts(CONFIG)
    at = seen()
    lookouts.answered("a", at, route("t1"), known=20.0, activity=20.0 + SLACK + 1)  # a kernel at work
    assert lookouts.cached_activity("a", at, route("t1"), 20.0, 40.0) is None
    lookouts.answered("a", at, route("t1"), known=20.0, activity=20.0 + SLACK + 1)  # nothing since
    assert lookouts.cached_activity("a", at, route("t1"), 20.0, 40.0) == 20.0 + SLACK + 1
    lookouts.answered("a", at, route("t1"), known=20.0, activity=None)  # no answer
    assert lookouts.cached_activity("a", at, route("t1"), 20.0, 40.0) is None


def test_an_idle_container_on_a_busy_or_silent_server_is_due_at_every_heartbeat() -> None:
    lookouts = Lookouts(CONFIG)
    lookouts.answered("a", seen(), None, known=0.0, activity=None)  # silent
    lookouts.judged("a", seen(), None, Idle(0.0), 20.0)
    assert lookouts.due_by(20.0) == {"a"}


def test_the_route_mark_is_compared_not_parsed() -> None:
    assert route_mark(None) is None
    assert route_mark({"last_activity": "2027-01-01T00:00:00.000Z"}) == "2027-01-01T00:00:00.000Z"


# -- the pool's heartbeat: culls at the same heartbeats as judging everyone every time -----


@dataclass(frozen=True)
class Touch:
    at: float  # seconds after the hand-out, never on a heartbeat
    visitor: int
    through_proxy: bool


touches = st.lists(
    st.builds(
        Touch,
        st.integers(0, 420).map(lambda s: s + 0.5 + ROUTE_ADDED_SLACK),
        st.integers(0, VISITORS - 1),
        st.booleans(),
    ),
    max_size=25,
)


def expected_culls(touched: list[Touch], assigned: float, end: float) -> dict[int, float]:
    """When the heartbeat that judged every container and asked every idle server at every
    heartbeat culled each visitor: the first heartbeat too long after its latest activity."""
    config = CONFIG
    culled: dict[int, float] = {}
    heartbeat = assigned + config.cull_period  # the pool's first sweep (its clock starts with it)
    while heartbeat <= end:
        for visitor in range(VISITORS):
            if visitor in culled:
                continue
            activity = max([assigned] + [t.at + assigned for t in touched if t.visitor == visitor and t.at + assigned < heartbeat])
            if heartbeat - assigned >= config.cull_max or heartbeat - activity >= config.cull_timeout:
                culled[visitor] = heartbeat
        heartbeat += config.cull_period
    return culled


def run(touched: list[Touch], end: float) -> tuple[World, list[str], float]:
    world = World(config=CONFIG).started()
    assigned = world.clock.seconds()
    visitors = [handed_out(world) for _ in range(VISITORS)]

    def until(when: float) -> None:  # in whole seconds, so each heartbeat runs at its time
        while world.clock.seconds() < when:
            world.clock.advance(min(float(int(world.clock.seconds()) + 1), when) - world.clock.seconds())

    for touch in sorted(touched, key=lambda t: t.at):
        until(assigned + touch.at)
        if touch.through_proxy:
            world.routes.touch(f"/user/{visitors[touch.visitor]}")
        else:  # in the server only: a kernel's output with its tab closed
            world.servers.touch(visitors[touch.visitor], world.clock.seconds())
    until(assigned + end)
    return world, visitors, assigned


@settings(max_examples=150, deadline=None)
@given(touches)
def test_every_cull_comes_at_the_heartbeat_it_came_before(touched: list[Touch]) -> None:
    end = 480.0
    world, visitors, assigned = run(touched, end)
    expected = {visitors[v]: when for v, when in expected_culls(touched, assigned, end).items()}
    got = {e.container: e.time for e in world.events if e.to_state == "culled" and e.container in visitors}
    assert got == expected


@settings(max_examples=100, deadline=None)
@given(touches.map(lambda ts: [Touch(t.at, t.visitor, True) for t in ts]))
def test_with_activity_only_through_the_proxy_every_idle_and_active_comes_when_it_came(touched: list[Touch]) -> None:
    end = 480.0
    world, visitors, assigned = run(touched, end)
    config = CONFIG
    for v, container in enumerate(visitors):
        # The reference: at each heartbeat, idle after a period without activity, assigned again after.
        labels: list[tuple[float, str]] = []
        state, heartbeat = "assigned", assigned + config.cull_period
        while heartbeat <= end + assigned:
            activity = max([assigned] + [t.at + assigned for t in touched if t.visitor == v and t.at + assigned < heartbeat])
            if heartbeat - assigned >= config.cull_max or heartbeat - activity >= config.cull_timeout:
                labels.append((heartbeat, "culled"))
                break
            new = "idle" if heartbeat - activity >= config.cull_period else "assigned"
            if new != state:
                labels.append((heartbeat, new))
                state = new
            heartbeat += config.cull_period
        got = [(e.time, e.to_state) for e in world.events
               if e.container == container and e.to_state in ("assigned", "idle", "culled") and e.from_state != "pooled"
               and e.from_state != e.to_state]
        assert got == labels


# -- what is asked -------------------------------------------------------------------------


def test_servers_that_said_nothing_new_are_not_asked_again_until_the_cull_check() -> None:
    world = World(config=HEARTBEAT).started()
    visitors = [handed_out(world) for _ in range(2)]
    asked: list[list[str]] = []

    def heartbeat() -> list[str]:
        before = len(world.servers.status_asked)
        world.clock.advance(HEARTBEAT.cull_period)
        asked.append(sorted(world.servers.status_asked[before:]))
        return asked[-1]

    assert heartbeat() == sorted(visitors)  # a period without activity: both asked, both quiet
    for _ in range(4):
        assert heartbeat() == []  # t=20..50: nothing new, nobody asked, both idle
    assert {c["container"]: c["state"] for c in world.pool.containers()}[visitors[0]] == "idle"
    assert heartbeat() == sorted(visitors)  # t=60: would be culled on their answer: asked again
    assert sorted(c[0] for c in culls(world)) == sorted(visitors)


def test_activity_the_proxy_saw_since_the_answer_gets_the_server_asked_again() -> None:
    world = World(config=HEARTBEAT).started()
    visitor = handed_out(world)
    world.clock.advance(10)  # asked: quiet
    world.clock.advance(5)
    world.routes.touch(f"/user/{visitor}")  # the visitor came back, and may have started a kernel
    asked = len(world.servers.status_asked)
    world.clock.advance(5)  # t=20: active on the proxy's word, nobody asked
    assert len(world.servers.status_asked) == asked
    world.clock.advance(4)
    world.servers.touch(visitor, 24.0)  # the kernel works on with the tab closed
    world.clock.advance(6)  # t=30: a period since the proxy saw it: asked, and active
    assert world.servers.status_asked[asked:] == [visitor]
    assert {c["container"]: c["state"] for c in world.pool.containers()}[visitor] == "assigned"
    world.clock.advance(10)  # t=40: its answer ran ahead of the proxy: asked again
    assert world.servers.status_asked[asked:] == [visitor, visitor]
    assert culls(world) == []


def test_a_busy_server_is_never_culled_however_long_the_proxy_sees_nothing() -> None:
    world = World(config=HEARTBEAT).started()
    visitor = handed_out(world)
    for _ in range(25):  # 250 s, long past the cull timeout, within cull_max
        world.clock.advance(5)
        world.servers.touch(visitor, world.clock.seconds())  # between two heartbeats
        world.clock.advance(5)
    assert culls(world) == []
    assert {c["container"]: c["state"] for c in world.pool.containers()}[visitor] == "assigned"


def test_quiet_servers_cost_no_ask_at_a_steady_heartbeat() -> None:
    rng = random.Random(5)
    config = PoolConfig(pool_size=1, capacity=41, cull_period=10.0, cull_timeout=600.0, cull_max=6000.0, refill_delay=0.0)
    world = World(config=config).started()
    visitors = [handed_out(world) for _ in range(40)]
    world.clock.advance(10)  # everyone asked once
    world.clock.advance(10)
    touched = rng.sample(visitors, 5)
    for visitor in touched:
        world.routes.touch(f"/user/{visitor}")
    before = len(world.servers.status_asked)
    world.clock.advance(10)  # the five are active on the proxy's word
    world.clock.advance(10)  # a period since: only those five are asked again
    assert sorted(world.servers.status_asked[before:]) == sorted(touched)
