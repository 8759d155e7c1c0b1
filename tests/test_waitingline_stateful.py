"""The waiting line under any order of events: visitors arrive, wait, step away between two
requests (their place kept for a grace period), come back, hang up; Docker finishes boots
(or fails them), servers get ready, routes are added late, containers die, time passes. The
real Pool over tests/fakedocker.py, on a Clock. After every step:

- first come, first served: nobody still waiting joined before someone who got a container;
- no visitor is served twice, and no container goes to two visitors;
- no container goes to a visitor who left, and none handed out is left owned by nobody;
- the line is never longer than --max-waiting.
"""

from __future__ import annotations

import shutil
import tempfile
from itertools import count
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from tests.builders import build_line, build_pool
from tests.fakedocker import FakeDocker, FakeServers
from tmpnb.config import ContainerSpec, PoolConfig
from tmpnb.pool import Assignment
from tmpnb.proxy.routes import RouteTable
from tmpnb.proxyapi import InProcessProxyAPI
from tmpnb.waitingline import Ticket

HOLD = 2.0  # how long a visitor's request waits, as the web holds it
GRACE = 5.0  # how long a place is kept between two requests


class LateRoutes:
    """The in-process proxy's API, whose route additions finish when the test says, as an
    external proxy's do: a visitor may leave while their container's route is being added."""

    def __init__(self, routes: RouteTable) -> None:
        self._api = InProcessProxyAPI(routes)
        self.held: list[tuple[Deferred[None], str, str, dict[str, Any]]] = []

    def add_route(self, path: str, target: str, **data: Any) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        self.held.append((d, path, target, data))
        return d

    def finish(self, index: int) -> None:
        d, path, target, data = self.held.pop(index)
        self._api.add_route(path, target, **data).chainDeferred(d)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._api, name)


class Visitor:
    def __init__(self, seq: int, ticket: Ticket) -> None:
        self.seq = seq  # arrival order
        self.ticket = ticket
        self.present = True  # a request of theirs is held open
        self.left = False
        self.got: list[Assignment] = []


class LineMachine(RuleBasedStateMachine):
    @initialize(
        pool_size=st.integers(0, 3),
        extra=st.integers(1, 4),
        max_waiting=st.integers(0, 5),
        max_booting=st.integers(1, 3),
        refill_delay=st.sampled_from([0.0, 1.0]),
    )
    def start(self, pool_size: int, extra: int, max_waiting: int, max_booting: int, refill_delay: float) -> None:
        self.root = tempfile.mkdtemp(prefix="tnb-line-")
        self.spec = ContainerSpec(instance="test-line", socket_root=self.root)
        self.config = PoolConfig(
            pool_size=pool_size,
            capacity=pool_size + extra,
            boot_attempts=2,
            boot_timeout=5.0,
            backoff_initial=0.5,
            cull_period=1000.0,  # the heartbeat is the pool's stateful test's subject
            refill_delay=refill_delay,
        )
        self.clock = Clock()
        self.docker = FakeDocker(self.clock, self.spec)
        self.docker.hold("launch")
        self.servers = FakeServers(self.docker)
        self.routes = LateRoutes(RouteTable(self.clock))
        ids = count()
        rig = build_pool(
            self.config, clock=self.clock, spec=self.spec, docker=self.docker, servers=self.servers,
            proxy=self.routes, new_id=lambda length: f"c{next(ids):04d}", max_booting=max_booting,
        )
        self.pool = rig.pool
        self.line = build_line(rig, max_waiting, new_id=lambda: f"t{next(ids):04d}")
        self.pool.startService()
        self.visitors: list[Visitor] = []
        self.served_seqs: set[int] = set()  # visitors who got a container (from the line or at once)
        self.turned_away = 0
        self.problems: list[str] = []

    def teardown(self) -> None:
        if hasattr(self, "pool"):
            self.pool.stopService()
            shutil.rmtree(self.root, ignore_errors=True)

    # -- visitors

    def hold(self, visitor: Visitor) -> None:
        """A request of the visitor's waits on their ticket, as tmpnb/web/waiting.py does."""
        visitor.present = True

        def answered(assignment: Assignment | None) -> None:
            if visitor.left:
                if assignment is not None:
                    self.problems.append(f"visitor {visitor.seq} left, yet was given {assignment}")
                return
            if assignment is not None and visitor.ticket.state == "ready":
                visitor.got.append(visitor.ticket.claim())
            elif not visitor.ticket.done:
                visitor.present = False
                visitor.ticket.away(GRACE)

        visitor.ticket.wait(HOLD).addCallbacks(answered, lambda f: None)

    @rule()
    def a_visitor_arrives(self) -> None:
        waiting, room = self.line.waiting(), self.pool.room()
        available = self.pool.stats()["available"]
        ticket = self.line.take("tree")
        if ticket is None:
            # No vacancy only when nothing is pooled for them and the line is full or every
            # container the capacity allows is promised to someone ahead.
            assert waiting > 0 or available == 0
            assert waiting >= self.line.max_waiting or waiting >= room, (waiting, room)
            self.turned_away += 1
            return
        visitor = Visitor(len(self.visitors), ticket)
        self.visitors.append(visitor)
        self.hold(visitor)

    @rule(visitors=st.integers(2, 6))
    def a_crowd_arrives(self, visitors: int) -> None:
        for _ in range(visitors):
            self.a_visitor_arrives()

    def pick(self, index: int, predicate) -> Visitor | None:
        chosen = [v for v in self.visitors if predicate(v)]
        return chosen[index % len(chosen)] if chosen else None

    @rule(index=st.integers(0, 100))
    def a_visitor_hangs_up(self, index: int) -> None:
        visitor = self.pick(index, lambda v: not v.left and not v.got)
        if visitor is not None:
            visitor.left = True
            visitor.ticket.leave()

    @rule(index=st.integers(0, 100))
    def a_visitor_comes_back(self, index: int) -> None:
        """The waiting page's refresh: the place is theirs again, if they came back in time."""
        visitor = self.pick(index, lambda v: not v.left and not v.present and not v.got)
        if visitor is None:
            return
        if visitor.ticket.done:  # their place expired meanwhile
            visitor.left = True
            return
        self.hold(visitor)

    # -- Docker, the servers, the proxy, time

    @rule(index=st.integers(0, 100), ok=st.booleans())
    def a_boot_finishes(self, index: int, ok: bool) -> None:
        calls = self.docker.held_calls("launch")
        if calls:
            call = calls[index % len(calls)]
            call.succeed() if ok else call.fail("image broken")

    @rule(index=st.integers(0, 100))
    def a_server_gets_ready(self, index: int) -> None:
        waiting = self.servers.waiting()
        if waiting:
            self.servers.answer(waiting[index % len(waiting)])

    @rule(index=st.integers(0, 100))
    def a_route_is_added(self, index: int) -> None:
        if self.routes.held:
            self.routes.finish(index % len(self.routes.held))

    @rule(index=st.integers(0, 100))
    def a_container_dies(self, index: int) -> None:
        running = sorted(self.docker.running())
        if running:
            self.docker.kill(running[index % len(running)])

    @rule(seconds=st.sampled_from([0.0, 0.5, 1.0, 3.0, 10.0]))
    def time_passes(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @rule()
    def everything_catches_up(self) -> None:
        """Boots succeed, servers answer, routes are added, time passes: afterwards nobody
        waits while a container is pooled."""
        for _ in range(5):
            for call in self.docker.held_calls("launch"):
                call.succeed()
            for container_id in self.servers.waiting():
                self.servers.answer(container_id)
            while self.routes.held:
                self.routes.finish(0)
            self.clock.advance(0)
            self.clock.advance(self.config.refill_delay)
        assert not (self.line.waiting() and self.pool.stats()["available"]), self.pool.stats()

    # -- what must always hold

    @invariant()
    def first_come_first_served(self) -> None:
        for v in self.visitors:
            if v.ticket.state in ("serving", "ready", "claimed", "failed"):
                self.served_seqs.add(v.seq)
        waiting = [v.seq for v in self.visitors if v.ticket.state == "waiting"]
        if waiting and self.served_seqs:
            assert min(waiting) > max(self.served_seqs), (waiting, sorted(self.served_seqs))
        # And the line is in arrival order.
        in_line = sorted((self.line.position(v.ticket), v.seq) for v in self.visitors if self.line.position(v.ticket))
        assert [seq for _, seq in in_line] == sorted(seq for _, seq in in_line)

    @invariant()
    def no_visitor_is_served_twice_and_no_container_goes_to_two(self) -> None:
        assert all(len(v.got) <= 1 for v in self.visitors)
        handed = [a.container_id for v in self.visitors for a in v.got]
        assert len(handed) == len(set(handed)), handed

    @invariant()
    def no_container_goes_to_a_visitor_who_left(self) -> None:
        assert self.problems == []
        assert all(not v.got for v in self.visitors if v.left)

    @invariant()
    def every_container_handed_out_has_its_visitor(self) -> None:
        """Assigned containers are a visitor's, or kept for one (ready, their visitor away for
        less than the grace), or their route is still being added."""
        owners = {a.container_id for v in self.visitors for a in v.got}
        owners |= {v.ticket.assignment.container_id for v in self.visitors
                   if not v.left and v.ticket.state == "ready" and v.ticket.assignment is not None}
        owners |= {path.rsplit("/", 1)[-1] for _, path, _, _ in self.routes.held}
        handed_out = {c["container"] for c in self.pool.containers() if c["state"] in ("assigned", "idle")}
        assert handed_out <= owners, (handed_out, owners)

    @invariant()
    def the_line_is_never_longer_than_max_waiting(self) -> None:
        assert self.line.waiting() <= self.line.max_waiting
        assert self.line.stats()["length"] == self.line.waiting()

    @invariant()
    def capacity_holds(self) -> None:
        assert self.pool.stats()["total"] <= self.config.capacity


LineMachine.TestCase.settings = settings(
    max_examples=150,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_waiting_line = LineMachine.TestCase
