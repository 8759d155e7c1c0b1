"""The pool under any order of events: hypothesis plays Docker (boots and removals finishing
in any order, boots failing), the servers (answering or not), visitors, time, containers dying
from outside, and the pool stopping; the invariants must hold after every step.
"""

from __future__ import annotations

from itertools import count

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.logger import formatEvent, globalLogPublisher
from twisted.python.failure import Failure

from tests.fakedocker import FakeDocker, FakeServers
from tmpnb import sockets
from tmpnb.config import ContainerSpec, PoolConfig
from tmpnb.pool import Assignment, Pool
from tmpnb.proxy.routes import RouteTable
from tmpnb.proxyapi import InProcessProxyAPI

SPEC = ContainerSpec(instance="test-stateful", socket_root="/tmp/tnb-stateful")


class PoolMachine(RuleBasedStateMachine):
    @initialize(
        pool_size=st.integers(1, 4),
        extra=st.integers(0, 3),
        attempts=st.integers(1, 3),
        leftovers=st.integers(0, 2),
        max_booting=st.integers(1, 4),
        adopt=st.booleans(),
        keep_assigned=st.booleans(),
    )
    def start(
        self,
        pool_size: int,
        extra: int,
        attempts: int,
        leftovers: int,
        max_booting: int,
        adopt: bool,
        keep_assigned: bool,
    ) -> None:
        self.max_booting = max_booting
        self.adopt = adopt
        self.keep_assigned = keep_assigned
        self.kept: set[str] = set()  # visitors' containers a stop left running
        self.config = PoolConfig(
            pool_size=pool_size,
            capacity=pool_size + extra,
            boot_attempts=attempts,
            boot_timeout=5.0,
            backoff_initial=0.5,
            backoff_max=2.0,
            cull_period=10.0,
            cull_timeout=30.0,
            cull_max=60.0,
        )
        self.clock = Clock()
        self.docker = FakeDocker(self.clock, SPEC)
        self.docker.hold("launch")  # Docker finishes them when a rule says
        for n in range(leftovers):  # an earlier run's
            self.docker.plant(f"leftover{n}")
        self.servers = FakeServers(self.docker)
        self.routes = RouteTable(self.clock)
        self.ids = count()
        self.pool = self.new_pool()
        self.failures: list[dict] = []  # anything logged as a failure is a bug here
        globalLogPublisher.addObserver(self.log_failures)
        self.handed: list[Assignment] = []  # every assignment ever made
        self.activity: dict[str, float] = {}  # the latest activity of each, as the visitor made it
        self.stopped = False
        self.pool.startService()  # the leftovers are removed before it fills
        self.docker.hold("remove")

    def new_pool(self) -> Pool:
        return Pool(
            self.clock,
            self.docker,
            self.servers.wait_ready,
            InProcessProxyAPI(self.routes),
            SPEC,
            self.config,
            # Ids in a known order, so hypothesis can replay what it found.
            new_id=lambda length: f"c{next(self.ids):04d}",
            server_status=self.servers.server_status,
            max_booting=self.max_booting,
            adopt=self.adopt,
            keep_assigned=self.keep_assigned,
        )

    # -- Docker and the servers

    @rule(pick=st.integers(0, 100), ok=st.booleans())
    def a_boot_finishes(self, pick: int, ok: bool) -> None:
        calls = self.docker.held_calls("launch")
        if calls:
            call = calls[pick % len(calls)]
            call.succeed() if ok else call.fail("image broken")

    @rule(pick=st.integers(0, 100))
    def a_removal_finishes(self, pick: int) -> None:
        calls = self.docker.held_calls("remove")
        if calls:
            calls[pick % len(calls)].succeed()

    @rule(pick=st.integers(0, 100))
    def a_server_answers(self, pick: int) -> None:
        waiting = self.servers.waiting()
        if waiting:
            self.servers.answer(waiting[pick % len(waiting)])

    @rule()
    def docker_and_the_servers_catch_up(self) -> None:
        """Every boot in flight succeeds and its server answers: a quiet moment."""
        for call in self.docker.held_calls("launch"):
            call.succeed()
        for container_id in self.servers.waiting():
            self.servers.answer(container_id)

    @rule(pick=st.integers(0, 100))
    def a_container_dies(self, pick: int) -> None:
        running = sorted(self.docker.running())
        if running:
            self.docker.kill(running[pick % len(running)])

    @rule(pick=st.integers(0, 100))
    def a_container_vanishes_without_an_event(self, pick: int) -> None:
        running = sorted(self.docker.running())
        if running:
            self.docker.vanish(running[pick % len(running)])

    @rule(seconds=st.sampled_from([0.0, 0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0]))
    def time_passes(self, seconds: float) -> None:
        self.clock.advance(seconds)

    # -- visitors

    @rule()
    def a_visitor_arrives(self) -> None:
        available = self.pool.stats()["available"]
        d = self.pool.acquire()
        if self.stopped or available == 0:
            assert d is None
            return
        assert d is not None
        outcome: list[Assignment | Failure] = []
        d.addBoth(outcome.append)
        # Never waits on Docker: the in-process proxy answers at once, so it has fired.
        [result] = outcome
        assert isinstance(result, Assignment), result
        self.handed.append(result)
        self.activity[result.container_id] = self.clock.seconds()

    @rule(pick=st.integers(0, 100), through_proxy=st.booleans())
    def a_visitor_works(self, pick: int, through_proxy: bool) -> None:
        if self.handed:
            container_id = self.handed[pick % len(self.handed)].container_id
            self.activity[container_id] = self.clock.seconds()
            if through_proxy:
                self.routes.touch(f"/user/{container_id}")
            else:
                self.servers.touch(container_id, self.clock.seconds())

    @rule(pick=st.integers(0, 100))
    def a_visitor_leaves(self, pick: int) -> None:
        if self.handed:
            self.pool.cull(self.handed[pick % len(self.handed)].container_id, "left")

    @rule(pick=st.integers(0, 100))
    def an_admin_culls_any_container(self, pick: int) -> None:
        live = sorted(c["container"] for c in self.pool.containers())
        if live:
            self.pool.cull(live[pick % len(live)], "admin")

    @rule()
    def the_pool_is_drained(self) -> None:
        self.pool.drain()

    # -- the end

    # The pool stops some time after it started (not at once: there would be little to see),
    # and then things may still happen: they must change nothing.
    @precondition(lambda self: not self.stopped and self.clock.seconds() >= 10)
    @rule(ok=st.booleans(), removals_first=st.booleans())
    def the_pool_stops(self, ok: bool, removals_first: bool) -> None:
        self.stop_and_check(ok, removals_first)

    @precondition(lambda self: not self.stopped and self.adopt and self.keep_assigned)
    @rule(removals_first=st.booleans())
    def tmpnb_restarts(self, removals_first: bool) -> None:
        """Stop, keeping the visitors' containers; a new pool adopts them."""
        self.stop_and_check(ok=True, removals_first=removals_first)
        self.pool = self.new_pool()
        self.stopped = False
        self.pool.startService()
        adopted = {c["container"]: c["state"] for c in self.pool.containers()}
        alive = set(self.docker.running())
        assert all(adopted.get(cid) == "assigned" for cid in self.kept & alive)

    def teardown(self) -> None:
        try:
            if not self.stopped:
                self.stop_and_check(ok=True, removals_first=True)
            self.nothing_was_logged_as_a_failure()
        finally:
            globalLogPublisher.removeObserver(self.log_failures)

    def log_failures(self, event: dict) -> None:
        if "log_failure" in event:
            self.failures.append(event)

    def stop_and_check(self, ok: bool, removals_first: bool) -> None:
        done: list[object] = []
        handed_out = {c["container"] for c in self.pool.containers() if c["state"] in ("assigned", "idle")}
        self.kept = handed_out if self.keep_assigned else set()
        d: Deferred[None] = self.pool.stopService()
        d.addBoth(done.append)
        self.stopped = True
        # Docker finishes whatever is in flight, launches ok or not, and time passes.
        for _ in range(100):
            if done:
                break
            calls = list(self.docker.held)
            if removals_first:
                calls.sort(key=lambda call: call.operation != "remove")
            for call in calls:
                call.succeed() if (ok or call.operation == "remove") else call.fail("late")
            self.clock.advance(1.0)
        assert done == [None]
        # Only visitors' containers may be left, and only when the pool keeps them.
        assert {c.container_id for c in self.docker.ours()} <= self.kept
        assert self.docker.socket_dirs <= {sockets.socket_dir(SPEC, cid) for cid in self.kept}
        assert set(self.routes.all()) <= {f"/user/{cid}" for cid in self.kept}
        assert self.pool.stats()["total"] == 0

    # -- what must always hold

    @invariant()
    def nothing_was_logged_as_a_failure(self) -> None:
        assert [formatEvent(e) + ": " + repr(e["log_failure"].value) for e in self.failures] == []

    @invariant()
    def no_container_is_handed_to_two_visitors(self) -> None:
        ids = [a.container_id for a in self.handed]
        assert len(ids) == len(set(ids))

    @invariant()
    def pooled_is_at_most_the_pool_size(self) -> None:
        assert self.pool.stats()["available"] <= self.config.pool_size

    @invariant()
    def total_is_at_most_the_capacity(self) -> None:
        assert self.pool.stats()["total"] <= self.config.capacity
        assert len(self.docker.ours()) <= self.config.capacity

    @invariant()
    def at_most_max_booting_boot_at_once(self) -> None:
        states = self.pool.stats()["states"]
        assert states.get("booting", 0) <= self.max_booting
        # A culled machine's launch cannot be called back: it may still be in flight.
        assert len(self.docker.held_calls("launch")) <= self.max_booting + states.get("culled", 0)

    @invariant()
    def every_container_docker_has_belongs_to_a_live_machine(self) -> None:
        # Kept: left running by a stop for the next start, which has not come (yet).
        live = {c["container"] for c in self.pool.containers()} | (self.kept if self.stopped else set())
        # Or being removed: an earlier run's container that a start did not adopt.
        live |= {call.args[1] for call in self.docker.held_calls("remove")}
        assert {c.container_id for c in self.docker.ours()} <= live
        assert self.docker.socket_dirs <= {sockets.socket_dir(SPEC, cid) for cid in live}

    @invariant()
    def no_visitor_keeps_a_container_past_the_maximum_age(self) -> None:
        # The heartbeat culls it at the first sweep after cull_max.
        now = self.clock.seconds()
        for seen in self.pool.containers():
            if seen["state"] in ("assigned", "idle"):
                assert now - seen["assigned_at"] < self.config.cull_max + self.config.cull_period

    @invariant()
    def no_container_stays_idle_past_the_cull_timeout(self) -> None:
        now = self.clock.seconds()
        for seen in self.pool.containers():
            if seen["state"] in ("assigned", "idle"):
                idle_for = now - self.activity[seen["container"]]
                assert idle_for < self.config.cull_timeout + self.config.cull_period

    @invariant()
    def after_stop_nothing_runs(self) -> None:
        # Nothing but the visitors' containers, when the pool keeps them for the next start.
        if self.stopped:
            assert {c.container_id for c in self.docker.ours()} <= self.kept
            assert self.docker.held == []
            assert self.pool.stats()["total"] == 0


PoolMachine.TestCase.settings = settings(
    max_examples=100,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_pool_stateful = PoolMachine.TestCase
