"""The pool: fills to --pool-size, hands out without waiting on Docker, refills within
--capacity, removes an earlier run's leftovers on start and everything it made on stop.

In memory: FakeDocker, FakeServers, the real in-process route table, a Clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import pytest
from twisted.internet.defer import fail
from twisted.internet.task import Clock
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import globalLogPublisher

from tests.builders import build_pool
from tests.fakedocker import FakeDocker, FakeServers
from tests.results import failed, pending, succeeded
from tmpnb import sockets
from tmpnb.config import PoolConfig
from tmpnb.dockerapi import DockerUnavailable
from tmpnb.pool import Assignment, Pool
from tmpnb.statusround import TIMEOUT as ROUND_TIMEOUT
from tmpnb.states import TransitionEvent



@dataclass
class World:
    config: PoolConfig = PoolConfig(pool_size=2, capacity=4, boot_timeout=10.0, boot_attempts=2, refill_delay=0.0)
    clock: Clock = field(default_factory=Clock)
    events: list[TransitionEvent] = field(default_factory=list)

    def __post_init__(self) -> None:
        rig = build_pool(self.config, clock=self.clock, on_transition=self.events.append)
        self.spec, self.docker, self.servers, self.routes = rig.spec, rig.docker, rig.servers, rig.routes
        self.pool = rig.pool

    def rebuild(self, config: PoolConfig | None = None, **overrides: Any) -> Pool:
        """A new pool over this world's fakes (Pool's keywords in `overrides`)."""
        overrides.setdefault("on_transition", self.events.append)
        self.pool = build_pool(
            config or self.config, clock=self.clock, spec=self.spec, docker=self.docker, servers=self.servers,
            routes=self.routes, **overrides,
        ).pool
        return self.pool

    def answer_all(self) -> None:
        """Every server waited for answers, and those that boot after them too."""
        while self.servers.waiting():
            for container_id in self.servers.waiting():
                self.servers.answer(container_id)

    def started(self) -> "World":
        self.pool.startService()
        self.answer_all()
        return self


@pytest.fixture
def world() -> World:
    return World()


HEARTBEAT = PoolConfig(
    pool_size=1, capacity=3, cull_period=10.0, cull_timeout=60.0, cull_max=300.0, boot_timeout=5.0,
    refill_delay=0.0,
)


def culls(world: World) -> list[tuple[str, str, str | None]]:
    return [(e.container, e.input, e.cause) for e in world.events if e.to_state == "culled"]


def handed_out(world: World) -> str:
    d = world.pool.acquire()
    assert d is not None
    container_id = succeeded(d).container_id
    world.answer_all()  # the replacement
    return container_id


def test_start_removes_this_instances_leftovers_and_no_one_elses(world: World) -> None:
    world.docker.plant("leftover1")
    world.docker.plant("leftover2", running=False)
    theirs = world.docker.plant("theirs", instance="someone-else")
    world.docker.hold("list")
    world.pool.startService()
    assert world.docker.held_calls("launch") == [] and world.servers.waiting() == []
    [listing] = world.docker.held_calls("list")
    listing.succeed()
    running = world.docker.running()
    assert "leftover1" not in running and "leftover2" not in running
    assert theirs in world.docker.containers
    assert len(running) == world.config.pool_size  # then it fills


def test_start_fills_the_pool_and_stats_count_it(world: World) -> None:
    world.pool.startService()
    assert world.pool.stats() == {
        "available": 0,
        "capacity": 4,
        "pool_size": 2,
        "total": 2,
        "left_behind": 0,
        "states": {"booting": 2},
        "draining": False,
    }
    world.answer_all()
    assert world.pool.stats()["available"] == 2
    assert world.pool.stats()["states"] == {"pooled": 2}
    assert sorted(c["state"] for c in world.pool.containers()) == ["pooled", "pooled"]


def test_at_most_max_booting_boot_at_once_and_the_rest_wait_their_turn() -> None:
    world = World(config=PoolConfig(pool_size=5, capacity=5))
    world.rebuild(max_booting=2)
    world.docker.hold("launch")
    world.pool.startService()
    assert world.pool.stats()["states"] == {"booting": 2, "requested": 3}
    first, second = world.docker.held_calls("launch")
    first.succeed()
    assert len(world.docker.held_calls("launch")) == 1  # launched is not ready yet
    [waiting] = world.servers.waiting()
    world.servers.answer(waiting)
    assert len(world.docker.held_calls("launch")) == 2  # a slot freed: the next one boots
    second.fail("no")  # a failed attempt still holds its slot while it retries
    assert world.pool.stats()["states"] == {"pooled": 1, "booting": 2, "requested": 2}


def test_nothing_pooled_means_acquire_answers_none(world: World) -> None:
    world.pool.startService()
    assert world.pool.acquire() is None


def test_acquire_hands_out_a_pooled_container_and_starts_a_replacement_at_once(world: World) -> None:
    world.started()
    world.docker.hold("launch")  # Docker is slow now: the visitor must not wait for it
    d = world.pool.acquire()
    assert d is not None
    assignment = succeeded(d)
    assert isinstance(assignment, Assignment)
    assert assignment.path == f"/user/{assignment.container_id}/"
    assert world.routes.get(f"/user/{assignment.container_id}") is not None
    assert len(world.docker.held_calls("launch")) == 1  # the replacement
    assert world.pool.stats()["states"] == {"assigned": 1, "pooled": 1, "booting": 1}


def test_two_visitors_never_get_the_same_container(world: World) -> None:
    world.started()
    first, second = world.pool.acquire(), world.pool.acquire()
    assert first is not None and second is not None
    a, b = succeeded(first), succeeded(second)
    assert a.container_id != b.container_id
    assert a.token != b.token


def test_capacity_bounds_every_container_booting_ones_included(world: World) -> None:
    world.started()
    handed = [world.pool.acquire() for _ in range(3)]
    # pool 2 + capacity 4: two handed out leave room for two replacements, no more.
    assert [d is None for d in handed] == [False, False, True]
    assert world.pool.stats()["total"] == 4
    world.answer_all()
    assert [world.pool.acquire() is None for _ in range(3)] == [False, False, True]
    assert world.pool.stats()["total"] == 4
    assert world.pool.stats()["states"] == {"assigned": 4}


def test_a_culled_assigned_container_frees_room_once_it_is_removed(world: World) -> None:
    world.docker.hold("remove")
    world.started()
    taken = [succeeded(world.pool.acquire()) for _ in range(2)]  # type: ignore[arg-type]
    world.answer_all()
    taken += [succeeded(world.pool.acquire()) for _ in range(2)]  # type: ignore[arg-type]
    assert world.pool.stats()["total"] == 4
    assert world.pool.cull(taken[0].container_id, "too old")
    assert world.pool.stats()["total"] == 4  # still being removed: it still exists
    [remove] = world.docker.held_calls("remove")
    remove.succeed()
    assert world.pool.stats()["total"] == 4  # the freed room went to a new boot
    assert world.pool.stats()["states"] == {"assigned": 3, "booting": 1}


def test_cull_of_an_unknown_container_is_false(world: World) -> None:
    world.started()
    assert world.pool.cull("nope", "test") is False


def test_a_container_killed_from_outside_is_noticed_and_replaced(world: World) -> None:
    world.started()
    victim = next(iter(world.docker.running()))
    world.docker.kill(victim)
    world.clock.advance(0)  # Docker's "die" event
    assert victim not in world.docker.running()
    assert victim not in world.docker.socket_dirs
    assert ("pooled", "culled", "exited") in [
        (e.from_state, e.to_state, e.input) for e in world.events if e.container == victim
    ]
    world.answer_all()
    assert world.pool.stats()["available"] == 2
    assert victim not in [c["container"] for c in world.pool.containers()]


def test_drain_culls_the_pooled_ones_and_the_pool_refills(world: World) -> None:
    world.started()
    taken = succeeded(world.pool.acquire())  # type: ignore[arg-type]
    world.answer_all()
    before = set(world.docker.running())
    assert world.pool.drain() == 2
    world.answer_all()
    after = set(world.docker.running())
    assert taken.container_id in after
    assert len(before & after) == 1  # only the assigned one survived
    assert world.pool.stats()["available"] == 2


def test_a_draining_node_hands_out_nothing_boots_nothing_and_keeps_its_visitors(world: World) -> None:
    world.started()
    visitor = handed_out(world)
    world.pool.set_draining(True)
    assert world.pool.stats()["draining"] is True
    assert world.pool.acquire() is None
    world.pool.cull(visitor, "idle")  # a visitor leaves: no container replaces theirs
    world.answer_all()
    assert world.pool.stats()["states"] == {"pooled": 2}
    world.pool.drain()  # emptying the pool while draining: nothing refills it
    world.answer_all()
    assert world.pool.stats()["total"] == 0


def test_a_draining_node_has_no_room_for_its_waiting_line(world: World) -> None:
    world.started()
    assert world.pool.room() > 0
    world.pool.set_draining(True)
    assert world.pool.room() == 0  # the line turns new visitors away: No vacancy


def test_a_drained_node_keeps_assigned_containers_until_culled(world: World) -> None:
    world.started()
    visitor = handed_out(world)
    world.pool.set_draining(True)
    world.clock.advance(world.config.cull_period)
    assert visitor in world.docker.running()
    assert {c["container"]: c["state"] for c in world.pool.containers()}[visitor] in ("assigned", "idle")


def test_the_end_of_a_drain_hands_out_and_refills_again(world: World) -> None:
    world.started()
    world.pool.set_draining(True)
    world.pool.drain()
    world.answer_all()
    world.pool.set_draining(False)
    world.answer_all()
    assert world.pool.stats()["available"] == 2 and world.pool.stats()["draining"] is False
    assert world.pool.acquire() is not None


def test_stop_removes_everything_it_made_and_fires_when_done(world: World) -> None:
    world.started()
    succeeded(world.pool.acquire())  # type: ignore[arg-type]
    world.docker.hold("remove", "launch")
    stopped = world.pool.stopService()
    pending(stopped)
    for call in list(world.docker.held):
        call.succeed()
    succeeded(stopped)
    assert world.docker.ours() == []
    assert world.docker.socket_dirs == set()
    assert world.routes.all() == {}
    assert world.pool.stats()["total"] == 0
    world.clock.advance(0)  # Docker's events about the removals change nothing
    assert world.clock.getDelayedCalls() == []
    assert world.pool.acquire() is None


def test_stop_waits_for_launches_still_in_flight(world: World) -> None:
    world.docker.hold("launch")
    world.pool.startService()
    stopped = world.pool.stopService()
    pending(stopped)
    for call in list(world.docker.held):
        call.succeed()  # the containers appear after the stop began...
    succeeded(stopped)
    assert world.docker.ours() == []  # ...and are removed all the same


def test_machines_that_give_up_pause_refilling_with_backoff() -> None:
    world = World(config=PoolConfig(pool_size=1, capacity=2, boot_attempts=1, backoff_initial=1.0, backoff_max=4.0))
    world.docker.hold("launch")
    world.pool.startService()
    world.docker.held_calls("launch")[0].fail("no such image")
    assert world.pool.stats()["total"] == 0
    assert world.docker.held_calls("launch") == []  # not at once
    world.clock.advance(1.0)
    world.docker.held_calls("launch")[0].fail("no such image")
    world.clock.advance(1.999)
    assert world.docker.held_calls("launch") == []  # the second pause is twice as long
    world.clock.advance(0.001)
    [call] = world.docker.held_calls("launch")
    call.succeed()
    world.answer_all()
    assert world.pool.stats()["available"] == 1


def test_every_transition_reaches_the_hook(world: World) -> None:
    world.started()
    moves = {(e.from_state, e.to_state, e.input) for e in world.events}
    assert moves == {("requested", "booting", "boot"), ("booting", "pooled", "ready")}
    assert len(world.events) == 4


# -- the heartbeat ----------------------------------------------------------------------------


def test_a_container_nobody_uses_is_culled_after_the_cull_timeout_and_replaced() -> None:
    world = World(config=HEARTBEAT).started()
    visitor = handed_out(world)
    world.clock.advance(50)
    assert culls(world) == []
    world.clock.advance(10)  # the sweep at t=60: no activity since assignment at t=0
    assert culls(world) == [(visitor, "cull", "idle: no activity for 60s")]
    assert visitor not in world.docker.running()
    assert world.routes.get(f"/user/{visitor}") is None
    world.answer_all()
    assert world.pool.stats()["available"] == 1


def test_activity_through_the_proxy_keeps_a_container() -> None:
    world = World(config=HEARTBEAT).started()
    visitor = handed_out(world)
    for _ in range(10):
        world.clock.advance(10)
        world.routes.touch(f"/user/{visitor}")
    assert culls(world) == []
    world.clock.advance(60)
    assert [c[0] for c in culls(world)] == [visitor]


def test_activity_the_server_reports_keeps_a_container() -> None:
    # A kernel running a long computation: no requests through the proxy, but the server
    # itself reports activity.
    world = World(config=HEARTBEAT).started()
    visitor = handed_out(world)
    for _ in range(10):
        world.clock.advance(10)
        world.servers.touch(visitor, world.clock.seconds())
    assert culls(world) == []


def test_a_container_is_culled_when_older_than_cull_max_however_active() -> None:
    world = World(config=HEARTBEAT).started()
    visitor = handed_out(world)
    for _ in range(29):
        world.clock.advance(10)
        world.routes.touch(f"/user/{visitor}")
    assert culls(world) == []
    world.clock.advance(10)
    assert culls(world) == [(visitor, "cull", "too old: assigned 300s ago")]


def test_assigned_and_idle_follow_what_the_heartbeat_sees() -> None:
    world = World(config=HEARTBEAT).started()
    visitor = handed_out(world)

    def state() -> str:
        return next(c["state"] for c in world.pool.containers() if c["container"] == visitor)

    world.clock.advance(10)  # assigned at t=0, nothing since: a whole period without activity
    assert state() == "idle"
    world.clock.advance(5)
    world.routes.touch(f"/user/{visitor}")
    world.clock.advance(5)
    assert state() == "assigned"
    assert [(e.from_state, e.to_state) for e in world.events if e.container == visitor][-2:] == [
        ("assigned", "idle"),
        ("idle", "assigned"),
    ]


def test_a_server_that_does_not_answer_its_status_counts_as_inactive() -> None:
    world = World(config=HEARTBEAT).started()
    visitor = handed_out(world)
    world.servers.silent.add(visitor)
    world.clock.advance(60)  # the sweep waits for the silent server...
    assert culls(world) == []
    world.clock.advance(5)  # ...until its status times out
    assert [c[0] for c in culls(world)] == [visitor]


def test_a_container_that_vanished_without_an_event_is_culled_at_the_next_sweep() -> None:
    world = World(config=HEARTBEAT).started()
    visitor = handed_out(world)
    [pooled] = [c for c in world.docker.running() if c != visitor]
    world.docker.vanish(visitor)
    world.docker.vanish(pooled)
    world.clock.advance(10)
    assert sorted(culls(world)) == sorted([(visitor, "exited", "vanished"), (pooled, "exited", "vanished")])


def test_socket_directories_of_no_container_are_removed_at_the_next_sweep() -> None:
    world = World(config=HEARTBEAT).started()
    [pooled] = world.docker.running()
    stray = sockets.socket_dir(world.spec, "crashed")  # a directory nothing owns any more
    world.docker.socket_dirs.add(stray)
    world.clock.advance(10)
    assert world.docker.socket_dirs == {sockets.socket_dir(world.spec, pooled)}


def test_a_crashed_runs_socket_directories_are_removed_at_start() -> None:
    world = World(config=HEARTBEAT)
    world.docker.socket_dirs.add(sockets.socket_dir(world.spec, "crashed"))
    world.started()
    assert world.docker.socket_dirs == {sockets.socket_dir(world.spec, c) for c in world.docker.running()}


def test_a_container_that_exited_without_an_event_is_culled_at_the_next_sweep() -> None:
    world = World(config=HEARTBEAT).started()
    [pooled] = world.docker.running()
    world.docker.running()[pooled].running = False  # stopped; the "die" event was lost
    world.clock.advance(10)
    assert culls(world) == [(pooled, "exited", "exited")]


def test_a_container_of_ours_that_no_machine_owns_is_removed() -> None:
    world = World(config=HEARTBEAT).started()
    world.docker.plant("orphan")
    world.clock.advance(10)
    assert "orphan" not in world.docker.running()
    assert len(world.docker.running()) == 1


def test_sweeps_never_overlap() -> None:
    world = World(config=HEARTBEAT).started()
    world.docker.hold("list")
    world.clock.advance(10)
    world.clock.advance(10)
    world.clock.advance(10)
    assert len(world.docker.held_calls("list")) == 1  # the first sweep is still waiting
    world.docker.held_calls("list")[0].succeed()
    world.clock.advance(10)
    assert len(world.docker.held_calls("list")) == 1  # the next one, a period later


def test_a_failing_sweep_is_logged_and_the_next_one_comes() -> None:
    world = World(config=HEARTBEAT).started()
    visitor = handed_out(world)
    world.docker.hold("list")
    world.clock.advance(10)
    world.docker.held_calls("list")[0].fail("dockerd hung")
    world.docker.release("list")
    world.clock.advance(60)
    assert [c[0] for c in culls(world)] == [visitor]


def many_handed_out(count: int) -> World:
    """A started pool with `count` containers handed out and one pooled."""
    world = World(
        config=PoolConfig(pool_size=1, capacity=count + 1, cull_period=10.0, cull_timeout=60.0, cull_max=300.0, refill_delay=0.0)
    ).started()
    for _ in range(count):
        handed_out(world)
    return world


def test_the_heartbeat_asks_every_handed_out_server_once_in_one_round() -> None:
    world = many_handed_out(5)
    handed = {c["container"] for c in world.pool.containers() if c["state"] == "assigned"}
    world.servers.hold_status()
    world.clock.advance(10)  # a heartbeat
    assert sorted(world.servers.status_asked) == sorted(handed)  # all at once, each once
    while world.servers.status_requests:
        world.servers.answer_status()
    assert culls(world) == []


def test_a_server_silent_for_the_whole_round_is_judged_on_the_rest() -> None:
    world = many_handed_out(2)
    quiet, talking = sorted(c["container"] for c in world.pool.containers() if c["state"] == "assigned")
    world.servers.hold_status()
    world.clock.advance(10)  # a heartbeat: one server answers, the other never does
    world.servers.touch(talking, world.clock.seconds())  # its kernel is working
    world.servers.answer_status(talking)
    world.clock.advance(ROUND_TIMEOUT)
    states = {c["container"]: c["state"] for c in world.pool.containers()}
    assert states[talking] == "assigned"
    assert states[quiet] == "idle"  # nothing seen for a period, but no reason to cull it
    assert culls(world) == []


def test_every_heartbeat_logs_how_many_containers_it_judged_and_what_it_cost() -> None:
    world = many_handed_out(3)
    world.servers.hold_status()
    events = EventLoggingObserver()
    globalLogPublisher.addObserver(events)
    try:
        world.clock.advance(10)  # a heartbeat, waiting for the servers' answers...
        world.clock.advance(1.5)
        while world.servers.status_requests:
            world.servers.answer_status()  # ...which come 1.5 s after it began
    finally:
        globalLogPublisher.removeObserver(events)
    [event] = [e for e in events if e["log_format"].startswith("heartbeat over")]
    assert event["count"] == 3
    assert event["wall"] == 1.5
    assert event["cpu_ms"] >= event["judge_ms"] >= 0


def test_ids_and_tokens_are_random_alphanumerics_of_user_length_and_long_hex() -> None:
    world = World(config=PoolConfig(pool_size=20, capacity=20, user_length=9))
    world.pool.startService()
    world.answer_all()
    assignments = [succeeded(world.pool.acquire()) for _ in range(20)]  # type: ignore[arg-type]
    ids = [a.container_id for a in assignments]
    assert all(len(i) == 9 and i.isascii() and i.isalnum() for i in ids)
    assert len(set(ids)) == 20
    tokens = [a.token for a in assignments]
    assert all(len(t) >= 32 and int(t, 16) >= 0 for t in tokens)
    assert len(set(tokens)) == 20


# -- adopting an earlier run's containers -------------------------------------------------------


def adopting(config: PoolConfig = PoolConfig(pool_size=1, capacity=4, cull_max=300.0)) -> World:
    world = World(config=config)
    world.rebuild(adopt=True)
    world.clock.advance(1000)
    return world


def route_for(world: World, container_id: str, assigned_at: float) -> None:
    """The route an earlier run added, still in the proxy."""
    world.routes.add(
        f"/user/{container_id}",
        {"target": "http+unix://old", "container": container_id, "instance": world.spec.instance, "assigned_at": assigned_at},
    )


def states(world: World) -> dict[str, str]:
    return {c["container"]: c["state"] for c in world.pool.containers()}


def test_a_container_with_a_route_is_a_visitors_and_is_adopted_as_assigned() -> None:
    world = adopting()
    world.docker.plant("visitor1")
    route_for(world, "visitor1", assigned_at=900.0)
    world.started()
    assert states(world)["visitor1"] == "assigned"
    assert ("requested", "assigned", "adopt") in [(e.from_state, e.to_state, e.input) for e in world.events]
    assert world.routes.get("/user/visitor1")["target"].startswith("http+unix://")  # type: ignore[index]
    assert "visitor1" in world.docker.running()
    d = world.pool.acquire()  # a new visitor gets another container
    assert d is not None and succeeded(d).container_id != "visitor1"
    world.clock.advance(200)  # cull_max counts from the earlier run's assignment, at 900
    assert "visitor1" not in world.docker.running()


def test_an_unused_container_is_pooled_again_after_its_readiness_check() -> None:
    world = adopting()
    world.docker.plant("unused1")
    world.pool.startService()
    assert states(world) == {"unused1": "booting"}  # no new boot: it fills the pool
    assert world.servers.answer("unused1")
    assert states(world) == {"unused1": "pooled"}
    assert world.docker.calls.count(("remove", ("unused1", "unused1"))) == 0


def test_a_used_container_whose_route_was_lost_is_a_visitors_and_gets_its_route_back() -> None:
    world = adopting()
    world.docker.plant("visitor2")
    world.clock.advance(30)
    world.servers.touch("visitor2", world.clock.seconds())  # someone worked in it
    world.started()
    assert states(world)["visitor2"] == "assigned"
    route = world.routes.get("/user/visitor2")
    assert route is not None and route["container"] == "visitor2"


def test_stopped_and_silent_containers_are_removed_not_adopted() -> None:
    world = adopting()
    world.docker.plant("stopped", running=False)
    world.docker.plant("silent")
    world.servers.silent.add("silent")
    world.pool.startService()
    world.clock.advance(5)  # the status request times out
    world.answer_all()
    assert "stopped" not in [c.container_id for c in world.docker.ours()]
    assert "silent" not in world.docker.running()
    assert set(states(world)) & {"stopped", "silent"} == set()
    assert world.pool.stats()["available"] == 1


def test_unused_containers_beyond_the_pool_size_are_removed() -> None:
    world = adopting()
    world.docker.plant("unusedA")
    world.docker.plant("unusedB")
    world.started()
    assert world.pool.stats()["states"] == {"pooled": 1}
    assert len(world.docker.running()) == 1


def test_without_adopt_every_leftover_is_removed() -> None:
    world = World()
    world.docker.plant("visitor3")
    route_for(world, "visitor3", assigned_at=0.0)
    world.started()
    assert "visitor3" not in world.docker.running()


def test_a_restart_keeps_the_visitors_containers_and_removes_the_rest() -> None:
    before = adopting()
    before.rebuild(PoolConfig(pool_size=2, capacity=4), keep_assigned=True)
    before.started()
    visitor = handed_out(before)
    pooled = [c for c in before.docker.running() if c != visitor]
    succeeded(before.pool.stopService())
    assert list(before.docker.running()) == [visitor]  # the pooled ones are gone
    assert before.routes.get(f"/user/{visitor}") is not None

    after = before.rebuild(PoolConfig(pool_size=2, capacity=4), adopt=True)
    after.startService()
    assert {c["container"]: c["state"] for c in after.containers()}[visitor] == "assigned"
    assert not set(pooled) & {c["container"] for c in after.containers()}
    succeeded(after.stopService())
    assert before.docker.ours() == []


# -- Docker away ---------------------------------------------------------------------------------


class AwayDocker(FakeDocker):
    """FakeDocker whose daemon can be down: every call then fails as DockerAPI's do."""

    down = False

    def _call(self, operation, args, perform):  # type: ignore[no-untyped-def]
        if self.down:
            self.calls.append((operation, args))
            return fail(DockerUnavailable("Error while fetching server API version"))
        return super()._call(operation, args, perform)


def with_away_docker(config: PoolConfig) -> World:
    world = World(config=config)
    world.docker = AwayDocker(world.clock, world.spec)
    world.servers = FakeServers(world.docker)
    world.rebuild()
    return world


AWAY = PoolConfig(pool_size=2, capacity=4, boot_attempts=2, backoff_initial=1.0, backoff_max=8.0, cull_period=5.0)


def test_docker_down_at_start_the_pool_asks_again_with_backoff_and_fills_once_it_answers() -> None:
    world = with_away_docker(AWAY)
    world.docker.down = True
    world.pool.startService()
    world.clock.pump([1.0, 2.0, 4.0, 8.0, 8.0])
    lists = [call for call in world.docker.calls if call[0] == "list"]
    assert len(lists) == 6  # at 0, 1, 3, 7, 15, 23: doubling, capped at backoff_max
    assert [call for call in world.docker.calls if call[0] == "launch"] == []  # nothing booted blind
    world.docker.down = False
    world.clock.advance(8.0)
    world.answer_all()
    assert world.pool.stats()["available"] == 2


def test_a_pool_stopped_before_docker_ever_answered_stops_at_once() -> None:
    world = with_away_docker(AWAY)
    world.docker.down = True
    world.pool.startService()
    world.clock.advance(1.0)
    succeeded(world.pool.stopService())
    assert world.clock.getDelayedCalls() == []


def test_a_long_docker_outage_pauses_refilling_with_bounded_backoff_and_it_resumes_when_docker_answers() -> None:
    world = with_away_docker(replace(AWAY, backoff_max=60.0))
    world.started()
    world.docker.down = True
    before = len(world.docker.calls)
    for victim in list(world.docker.running()):
        world.pool.cull(victim, "admin")  # their removal fails too, and gives up
    world.clock.pump([1.0] * 60)  # a minute of outage
    launches = [call for call in world.docker.calls[before:] if call[0] == "launch"]
    # Each round: pool_size machines × boot_attempts, then a pause that doubles: four rounds
    # in a minute (at 1, 4, 13 and 46 s), not a tight loop.
    assert len(launches) <= 4 * AWAY.pool_size * AWAY.boot_attempts
    assert world.pool.stats()["states"].get("pooled", 0) == 0
    assert world.pool.stats()["states"] == {}  # paused for longer than a heartbeat
    # The culled containers Docker may still have count against the capacity until removed.
    assert world.pool.stats()["left_behind"] >= len(world.docker.ours()) > 0
    world.docker.down = False
    world.clock.advance(AWAY.cull_period)  # the heartbeat's listing answers: refill now
    world.answer_all()
    assert world.pool.stats()["available"] == 2
    assert world.docker.ours() and set(world.docker.running()) == {c["container"] for c in world.pool.containers()}


def test_a_container_whose_removal_gave_up_counts_against_the_capacity_until_a_heartbeat_removes_it() -> None:
    world = with_away_docker(replace(AWAY, pool_size=1, capacity=1, cull_period=60.0)).started()
    [victim] = world.docker.running()
    world.docker.down = True
    world.pool.cull(victim, "admin")
    world.clock.pump([1.0] * 5)  # its removal fails twice and gives up
    assert world.pool.stats()["states"] == {}
    assert world.pool.stats()["left_behind"] == world.pool.stats()["total"] == 1
    world.docker.down = False
    world.clock.pump([1.0] * 10)
    assert [c.container_id for c in world.docker.ours()] == [victim]  # no refill beside it
    world.clock.advance(60)  # the heartbeat finds it owned by no machine and removes it
    world.answer_all()
    assert world.pool.stats()["left_behind"] == 0
    assert world.pool.stats()["available"] == 1
    assert victim not in {c.container_id for c in world.docker.ours()}


def test_a_leftover_that_cannot_be_removed_at_start_counts_against_the_capacity() -> None:
    world = World(config=PoolConfig(pool_size=1, capacity=1, cull_period=60.0))
    world.docker.plant("leftover")  # an earlier run's
    world.docker.hold("remove")
    world.pool.startService()
    world.docker.held_calls("remove")[0].fail("dockerd went away")
    assert world.pool.stats()["left_behind"] == 1
    assert world.servers.waiting() == []  # nothing boots beside it
    world.docker.release("remove")
    world.clock.advance(60)  # the heartbeat removes it
    world.answer_all()
    assert world.pool.stats()["left_behind"] == 0
    assert world.pool.stats()["available"] == 1


def test_boot_failures_that_are_not_docker_being_away_keep_their_pause() -> None:
    world = World(config=PoolConfig(pool_size=1, capacity=2, boot_attempts=1, backoff_initial=8.0,
                                    backoff_max=8.0, cull_period=1.0))
    world.docker.hold("launch")
    world.pool.startService()
    world.docker.held_calls("launch")[0].fail("No such image")
    world.clock.advance(7.9)  # heartbeats come and go, Docker answers them
    assert world.docker.held_calls("launch") == []
    world.clock.advance(0.1)
    assert len(world.docker.held_calls("launch")) == 1


def test_max_booting_comes_from_the_config() -> None:
    world = World(config=PoolConfig(pool_size=4, capacity=4, max_booting=1))
    world.docker.hold("launch")
    world.pool.startService()
    assert world.pool.stats()["states"] == {"booting": 1, "requested": 3}


# -- the proxy's routes ------------------------------------------------------------------------


def test_a_proxy_that_lost_its_routes_gets_them_back_at_the_next_heartbeat() -> None:
    world = World(config=HEARTBEAT).started()
    visitor = handed_out(world)
    route = world.routes.get(f"/user/{visitor}")
    assert route is not None
    world.routes.remove(f"/user/{visitor}")  # an external proxy restarted
    world.clock.advance(10)
    again = world.routes.get(f"/user/{visitor}")
    assert again is not None
    assert (again["target"], again["container"], again["assigned_at"]) == (
        route["target"], visitor, route["assigned_at"])


def test_routes_that_lead_to_no_container_of_ours_are_deleted_and_another_instances_are_kept() -> None:
    world = World(config=HEARTBEAT).started()
    visitor = handed_out(world)
    world.routes.add("/user/nowhere0000", {"target": "http://127.0.0.1:9"})
    world.routes.add("/user/gone1", {"target": "http+unix://x", "container": "gone1", "instance": world.spec.instance})
    world.routes.add("/user/theirs1", {"target": "http+unix://y", "container": "theirs1", "instance": "other"})
    world.routes.add("/", {"target": "http://127.0.0.1:8000"})
    world.clock.advance(10)
    assert set(world.routes.all()) == {f"/user/{visitor}", "/user/theirs1", "/"}


def test_the_heartbeat_waits_for_the_start_to_have_seen_every_container() -> None:
    world = World(config=HEARTBEAT)
    world.docker.plant("earlier1")
    world.docker.hold("list")
    world.pool.startService()
    world.clock.advance(10)  # a heartbeat while the start's listing is still out
    assert len(world.docker.held_calls("list")) == 1
    assert "earlier1" in world.docker.running()


def test_a_stop_boots_none_of_the_waiting_machines_when_it_culls_the_booting_ones() -> None:
    world = with_away_docker(PoolConfig(pool_size=2, capacity=2, max_booting=1, boot_attempts=1))
    world.docker.hold("launch")
    world.pool.startService()
    assert world.pool.stats()["states"] == {"booting": 1, "requested": 1}
    world.docker.down = True
    stopped = world.pool.stopService()
    world.docker.held_calls("launch")[0].fail("dockerd went away")
    world.clock.advance(0)
    succeeded(stopped)
    assert sum(1 for operation, _ in world.docker.calls if operation == "launch") == 1
    assert world.pool.stats()["states"] == {}
