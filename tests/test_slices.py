"""Long passes over every container give the reactor back between stretches (tmpnb/slices.py),
and the heartbeat and the route listing use them: at thousands of containers a visitor's
request gets in between, and a small pool's sweep still runs in one go."""

from __future__ import annotations

from datetime import datetime, timezone

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from tests.builders import build_line, build_pool
from tests.results import pending, succeeded
from tmpnb.config import PoolConfig
from tmpnb.judging import Active, Cull, Idle, changes_anything, settled_without_status
from tmpnb.proxy.routes import RouteTable
from tmpnb.proxyapi import InProcessProxyAPI
from tmpnb.slices import LARGE, Slicer


def run(clock: Clock, d: Deferred) -> int:
    """Turns of the clock (advance(0)) until `d` fires; how many it took."""
    turns = 0
    while not d.called:
        clock.advance(0)
        turns += 1
        assert turns < 10_000, "never finished"
    return turns


def test_a_pass_yields_every_most_items_and_others_get_the_turns_between() -> None:
    clock = Clock()
    done: list[object] = []
    slicer = Slicer(clock, most=10, timer=lambda: 0.0)
    d = Deferred.fromCoroutine(slicer.each(range(35), done.append))
    assert done == list(range(10))  # the first stretch, at once
    clock.callLater(0, done.append, "visitor")  # due after the second stretch, already queued
    clock.advance(0)
    assert done.index("visitor") == 20  # got in between two stretches
    assert [x for x in done if x != "visitor"] == list(range(35)) and slicer.yields == 3
    assert succeeded(d) is True


def test_a_stretch_ends_when_its_time_is_spent() -> None:
    clock = Clock()
    now = [0.0]
    acted: list[int] = []

    def act(item: int) -> None:
        acted.append(item)
        now[0] += 0.001  # each item takes a millisecond of the timer

    slicer = Slicer(clock, budget=0.01, timer=lambda: now[0])
    d = Deferred.fromCoroutine(slicer.each(range(100), act))
    # The time is read every CHECK_EVERY (32) items: 32 ms spent, then the first yield.
    pending(d)
    assert len(acted) == 32
    run(clock, d)
    assert slicer.yields == 3


def test_a_short_pass_never_yields() -> None:
    clock = Clock()
    slicer = Slicer(clock)
    seen: list[int] = []
    assert succeeded(Deferred.fromCoroutine(slicer.each(range(LARGE), seen.append))) is True
    assert succeeded(Deferred.fromCoroutine(slicer.between(LARGE))) is None
    assert slicer.yields == 0 and len(seen) == LARGE


def test_go_on_stops_a_pass_after_a_yield() -> None:
    clock = Clock()
    seen: list[int] = []
    running = [True]
    slicer = Slicer(clock, most=5, timer=lambda: 0.0)
    d = Deferred.fromCoroutine(slicer.each(range(20), seen.append, go_on=lambda: running[0]))
    running[0] = False  # e.g. the pool stopped meanwhile
    clock.advance(0)
    assert succeeded(d) is False and seen == list(range(5))


def test_between_yields_before_a_long_pass() -> None:
    clock = Clock()
    slicer = Slicer(clock, most=10, timer=lambda: 0.0)
    d = Deferred.fromCoroutine(slicer.between(11))
    pending(d)
    clock.advance(0)
    assert succeeded(d) is None and slicer.yields == 1


# -- the heartbeat in stretches ---------------------------------------------------------------


def test_a_big_heartbeat_lets_a_visitor_in_between_its_stretches_and_still_judges_everyone() -> None:
    config = PoolConfig(pool_size=2, capacity=60, refill_delay=0.0, max_booting=10)
    clock = Clock()
    slicer = Slicer(clock, most=8, timer=lambda: 0.0)
    rig = build_pool(config, clock=clock, slicer=slicer)
    line = build_line(rig, max_waiting=10)
    rig.pool.startService()
    rig.answer_all()
    visitors = []
    for _ in range(40):
        ticket = line.take("")
        rig.clock.advance(0)
        rig.answer_all()
        visitors.append(ticket.claim().container_id)
    rig.clock.advance(config.cull_timeout - 1)  # everyone idle, nobody culled yet
    rig.answer_all()
    before = slicer.yields
    sweep = rig.pool.sweep()
    pending(sweep)  # 40 handed out, 8 a stretch: not in one go
    late = line.take("")  # a visitor arriving mid-sweep is served at once
    assert late is not None and late.state in ("serving", "ready")
    run(rig.clock, sweep)
    assert slicer.yields - before >= 40 // 8
    states = rig.pool.stats()["states"]
    assert states.get("idle", 0) == 40, states  # every one judged


def test_a_small_heartbeat_runs_in_one_go() -> None:
    rig = build_pool(PoolConfig(pool_size=2, capacity=4, refill_delay=0.0))
    line = build_line(rig, max_waiting=2)
    rig.pool.startService()
    rig.answer_all()
    line.take("").claim()
    assert succeeded(rig.pool.sweep()) is None


# -- what the heartbeat skips ------------------------------------------------------------------


def seen(state: str, last_activity: float | None) -> dict:
    return {"state": state, "last_activity": last_activity}


def test_only_verdicts_that_change_a_machine_are_given() -> None:
    assert not changes_anything(seen("assigned", 100.0), Active(100.0))
    assert changes_anything(seen("assigned", 100.0), Active(101.0))  # newer activity: recorded
    assert changes_anything(seen("assigned", None), Active(1.0))
    assert changes_anything(seen("idle", 100.0), Active(100.0))  # back from idle
    assert not changes_anything(seen("idle", 100.0), Idle(90.0))
    assert changes_anything(seen("assigned", 100.0), Idle(100.0))
    assert changes_anything(seen("assigned", 100.0), Cull("idle"))
    assert changes_anything(seen("idle", 100.0), Cull("idle"))


# -- the route listing in stretches ------------------------------------------------------------


def test_a_sliced_listing_answers_what_the_table_answers() -> None:
    clock = Clock()
    clock.advance(1_800_000_000)
    routes = RouteTable(clock)
    for i in range(30):
        routes.add(f"/user/c{i}", {"target": f"http://127.0.0.1:{9000 + i}", "container": f"c{i}"})
        clock.advance(1)
    slicer = Slicer(clock, most=7, timer=lambda: 0.0)
    api = InProcessProxyAPI(routes, slicer)
    d = api.list_routes()
    run(clock, d)
    assert succeeded(d) == routes.all()
    since = datetime.fromtimestamp(1_800_000_010.5, timezone.utc)
    d = api.list_routes(since)
    run(clock, d)
    listed = succeeded(d)
    assert listed == routes.all(since.timestamp()) and len(listed) == 11


def test_a_route_removed_while_listing_is_left_out() -> None:
    clock = Clock()
    routes = RouteTable(clock)
    for i in range(20):
        routes.add(f"/user/c{i}", {"target": "http://127.0.0.1:9000"})
    api = InProcessProxyAPI(routes, Slicer(clock, most=5, timer=lambda: 0.0))
    d = api.list_routes()
    routes.remove("/user/c19")  # before its stretch
    run(clock, d)
    listed = succeeded(d)
    assert "/user/c19" not in listed and len(listed) == 19


def test_a_server_is_asked_only_when_its_answer_could_change_the_verdict() -> None:
    config = PoolConfig(pool_size=1, capacity=5, refill_delay=0.0, cull_period=10.0, cull_timeout=60.0,
                        cull_max=300.0)
    known = {"assigned_at": 100.0, "last_activity": 100.0, "route_added_at": 100.0}
    assert settled_without_status(known, None, 105.0, config) == Active(100.0)  # active: nothing to ask
    assert settled_without_status(known, None, 110.0, config) is None  # a period without: ask
    assert settled_without_status(known, None, 400.0, config) == Cull("too old: assigned 300s ago")
    route = {"last_activity": "1970-01-01T00:01:48.000Z"}  # the visitor, at 108 (after the route's slack)
    assert settled_without_status(known, route, 115.0, config) == Active(108.0)

    rig = build_pool(config)
    line = build_line(rig, max_waiting=2)
    rig.pool.startService()
    rig.answer_all()
    busy = line.take("").claim().container_id
    rig.answer_all()
    quiet = line.take("").claim().container_id
    rig.answer_all()
    rig.clock.advance(9)
    rig.routes.touch(f"/user/{busy}")  # the busy visitor did something just now
    rig.clock.advance(1)  # the heartbeat
    assert rig.servers.status_asked == [quiet]
    states = {c["container"]: c["state"] for c in rig.pool.containers()}
    assert states[busy] == "assigned" and states[quiet] == "idle"


def test_passes_one_after_the_other_share_one_stretch() -> None:
    # A heartbeat runs a dozen passes back to back in one reactor call: each must not get a
    # budget of its own, or the call holds the reactor for all of them.
    clock = Clock()
    now = [0.0]

    def act(item: int) -> None:
        now[0] += 0.0002  # 32 items: 6.4 ms

    slicer = Slicer(clock, budget=0.01, timer=lambda: now[0])

    async def passes() -> None:
        await slicer.each(range(32), act)  # 6.4 ms: no yield
        await slicer.each(range(32), act)  # 12.8 ms since the stretch began: a yield

    d = Deferred.fromCoroutine(passes())
    assert slicer.yields == 1
    run(clock, d)
    assert slicer.yields == 1


def test_a_pass_after_a_yield_starts_a_stretch_of_its_own() -> None:
    clock = Clock()
    now = [0.0]

    def act(item: int) -> None:
        now[0] += 0.0002

    slicer = Slicer(clock, budget=0.01, timer=lambda: now[0])

    async def passes() -> None:
        await slicer.each(range(32), act)
        await slicer.breathe()
        await slicer.each(range(32), act)  # 6.4 ms of its own: no yield

    d = Deferred.fromCoroutine(passes())
    run(clock, d)
    assert slicer.yields == 1
