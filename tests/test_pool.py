"""The pool: fills to --pool-size, hands out without waiting on Docker, refills within
--capacity, removes an earlier run's leftovers on start and everything it made on stop.

In memory: FakeDocker, FakeServers, the real in-process route table, a Clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from tests.fakedocker import FakeDocker, FakeServers
from tmpnb.config import ContainerSpec, PoolConfig
from tmpnb.pool import Assignment, Pool
from tmpnb.proxy.routes import RouteTable
from tmpnb.proxyapi import InProcessProxyAPI
from tmpnb.states import TransitionEvent

results = SynchronousTestCase()


@dataclass
class World:
    config: PoolConfig = PoolConfig(pool_size=2, capacity=4, boot_timeout=10.0, boot_attempts=2)
    clock: Clock = field(default_factory=Clock)
    events: list[TransitionEvent] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.spec = ContainerSpec(instance="test-pool", socket_root="/tmp/tnb-pool")
        self.docker = FakeDocker(self.clock, self.spec)
        self.servers = FakeServers(self.docker)
        self.routes = RouteTable(self.clock)
        self.pool = Pool(
            self.clock,
            self.docker,
            self.servers.wait_ready,
            InProcessProxyAPI(self.routes),
            self.spec,
            self.config,
            on_transition=self.events.append,
        )

    def answer_all(self) -> None:
        for container_id in self.servers.waiting():
            self.servers.answer(container_id)

    def started(self) -> "World":
        self.pool.startService()
        self.answer_all()
        return self


@pytest.fixture
def world() -> World:
    return World()


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
        "states": {"booting": 2},
    }
    world.answer_all()
    assert world.pool.stats()["available"] == 2
    assert world.pool.stats()["states"] == {"pooled": 2}
    assert sorted(c["state"] for c in world.pool.containers()) == ["pooled", "pooled"]


def test_nothing_pooled_means_acquire_answers_none(world: World) -> None:
    world.pool.startService()
    assert world.pool.acquire() is None


def test_acquire_hands_out_a_pooled_container_and_starts_a_replacement_at_once(world: World) -> None:
    world.started()
    world.docker.hold("launch")  # Docker is slow now: the visitor must not wait for it
    d = world.pool.acquire()
    assert d is not None
    assignment = results.successResultOf(d)
    assert isinstance(assignment, Assignment)
    assert assignment.path == f"/user/{assignment.container_id}/"
    assert world.routes.get(f"/user/{assignment.container_id}") is not None
    assert len(world.docker.held_calls("launch")) == 1  # the replacement
    assert world.pool.stats()["states"] == {"assigned": 1, "pooled": 1, "booting": 1}


def test_two_visitors_never_get_the_same_container(world: World) -> None:
    world.started()
    first, second = world.pool.acquire(), world.pool.acquire()
    assert first is not None and second is not None
    a, b = results.successResultOf(first), results.successResultOf(second)
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
    taken = [results.successResultOf(world.pool.acquire()) for _ in range(2)]  # type: ignore[arg-type]
    world.answer_all()
    taken += [results.successResultOf(world.pool.acquire()) for _ in range(2)]  # type: ignore[arg-type]
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
    taken = results.successResultOf(world.pool.acquire())  # type: ignore[arg-type]
    world.answer_all()
    before = set(world.docker.running())
    assert world.pool.drain() == 2
    world.answer_all()
    after = set(world.docker.running())
    assert taken.container_id in after
    assert len(before & after) == 1  # only the assigned one survived
    assert world.pool.stats()["available"] == 2


def test_stop_removes_everything_it_made_and_fires_when_done(world: World) -> None:
    world.started()
    results.successResultOf(world.pool.acquire())  # type: ignore[arg-type]
    world.docker.hold("remove", "launch")
    stopped = world.pool.stopService()
    results.assertNoResult(stopped)
    for call in list(world.docker.held):
        call.succeed()
    results.successResultOf(stopped)
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
    results.assertNoResult(stopped)
    for call in list(world.docker.held):
        call.succeed()  # the containers appear after the stop began...
    results.successResultOf(stopped)
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
