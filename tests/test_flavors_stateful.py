"""Several flavors on one node under any sequence of events: visitors choosing flavors arrive and
leave, servers get ready (or their boots fail), visitors' containers are culled, time passes;
with any capacity, pool sizes and line bound. The real Pool and WaitingLine over
tests/fakedocker.py on a Clock (tests/flavorrig.py). After every step:

- never more containers than the capacity, in Docker or in the pool's count;
- each visitor gets a container of the flavor they chose (its image, its label) and no
  container goes to two visitors;
- each flavor's line is served in its own first-come order;
- nobody waits while a container of their flavor is pooled;
- no flavor's room (in /api/stats) is more than the node's, nor the node's more than theirs summed;
and once everything settles, each flavor's pool is full unless the capacity is all used:
the pools refill independently.
"""

from __future__ import annotations

import shutil
import tempfile

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from tests.flavorrig import FlavorNode
from tmpnb.flavors import Flavor, Flavors
from tmpnb.tickets import Ticket

NAMES = ("alpha", "beta", "gamma")


class Visitor:
    def __init__(self, seq: int, flavor: str, ticket: Ticket) -> None:
        self.seq, self.flavor, self.ticket = seq, flavor, ticket
        self.joined_line = ticket.state == "waiting"
        self.served_at: int | None = None  # when (in steps of the test) its container was ready
        self.container: str | None = None


class FlavorsMachine(RuleBasedStateMachine):
    @initialize(
        flavors=st.integers(min_value=2, max_value=3),
        pool_sizes=st.lists(st.integers(min_value=0, max_value=3), min_size=3, max_size=3),
        capacity=st.integers(min_value=1, max_value=7),
        max_waiting=st.integers(min_value=0, max_value=6),
    )
    def start(self, flavors: int, pool_sizes: list[int], capacity: int, max_waiting: int) -> None:
        self.root = tempfile.mkdtemp(prefix="tnb-flavors-prop-")
        chosen = [Flavor(NAMES[i], f"img/{NAMES[i]}:1", min(pool_sizes[i], capacity)) for i in range(flavors)]
        self.flavors = Flavors(tuple(chosen), chosen[0].name)
        self.capacity = capacity
        self.node = FlavorNode(self.root, self.flavors, capacity, max_waiting=max_waiting, boot_attempts=1)
        self.visitors: list[Visitor] = []
        self.steps = 0
        self.handed: dict[str, int] = {}  # container → the visitor it went to

    def teardown(self) -> None:
        if hasattr(self, "node"):
            self.node.stop()
            shutil.rmtree(self.root, ignore_errors=True)

    # -- rules

    @rule(which=st.integers(min_value=0, max_value=2))
    def a_visitor_arrives(self, which: int) -> None:
        flavor = self.flavors.names()[which % len(self.flavors)]
        self.node.clock.advance(0.25)  # visitors come one after another
        ticket = self.node.line.take(flavor=flavor)
        if ticket is not None:
            visitor = Visitor(len(self.visitors), flavor, ticket)
            self.visitors.append(visitor)
            ticket.wait(10**9).addCallback(self._ready, visitor)

    def _ready(self, assignment, visitor: Visitor) -> None:
        if assignment is not None and visitor.served_at is None:
            visitor.served_at = self.steps
            visitor.container = assignment.container_id

    @precondition(lambda self: self.node.servers.waiting())
    @rule(index=st.integers(min_value=0, max_value=20))
    def a_server_gets_ready(self, index: int) -> None:
        waiting = self.node.servers.waiting()
        self.node.servers.answer(waiting[index % len(waiting)])
        self.node.clock.advance(0)

    @precondition(lambda self: self.node.servers.waiting())
    @rule(index=st.integers(min_value=0, max_value=20))
    def a_boot_fails(self, index: int) -> None:
        waiting = self.node.servers.waiting()
        container_id = waiting[index % len(waiting)]
        self.node.docker.kill(container_id)  # its server never answers: the boot gives up
        self.node.clock.advance(self.node.pool.config.boot_timeout)

    @rule(index=st.integers(min_value=0, max_value=20))
    def a_waiting_visitor_leaves(self, index: int) -> None:
        waiting = [v for v in self.visitors if v.ticket.state == "waiting"]
        if waiting:
            waiting[index % len(waiting)].ticket.leave("left")

    @rule(index=st.integers(min_value=0, max_value=20))
    def a_served_visitors_container_is_culled(self, index: int) -> None:
        served = [v for v in self.visitors if v.container is not None and self.node.pool.machine(v.container)]
        if served:
            self.node.pool.cull(served[index % len(served)].container, "idle")
            self.node.clock.advance(0)

    @rule(seconds=st.sampled_from([0.5, 5.0, 40.0]))
    def time_passes(self, seconds: float) -> None:
        self.node.clock.advance(seconds)

    @rule()
    def everything_settles(self) -> None:
        """Every boot answers, the backoffs pass: each flavor's pool is full, unless the
        capacity is all used."""
        for _ in range(3):
            self.node.settle()
            self.node.clock.advance(self.node.pool.config.backoff_max)
        self.node.settle()
        total = self.node.pool.stats()["total"]
        for flavor in self.flavors:
            stock = self.node.count(flavor.name, "requested", "booting", "pooled")
            assert stock >= flavor.pool_size or total >= self.capacity, (flavor.name, stock, total)

    # -- invariants

    @invariant()
    def never_more_than_the_capacity(self) -> None:
        self.steps += 1
        assert self.node.pool.stats()["total"] <= self.capacity
        assert len(self.node.docker.ours()) <= self.capacity

    @invariant()
    def each_visitor_gets_their_flavor_and_no_container_goes_twice(self) -> None:
        for visitor in self.visitors:
            if visitor.container is None:
                continue
            owner = self.handed.setdefault(visitor.container, visitor.seq)
            assert owner == visitor.seq, "a container went to two visitors"
            machine = self.node.pool.machine(visitor.container)
            if machine is not None and machine.describe().get("flavor") is not None:
                assert machine.describe()["flavor"] == visitor.flavor
            found = [c for c in self.node.docker.containers.values() if c.container_id == visitor.container]
            for container in found:
                assert container.image == f"img/{visitor.flavor}:1"

    @invariant()
    def each_flavors_line_is_served_first_come_first_served(self) -> None:
        for flavor in self.flavors.names():
            in_line = [v for v in self.visitors if v.flavor == flavor and v.joined_line]
            served = [v for v in in_line if v.served_at is not None]
            still = [v for v in in_line if v.ticket.state == "waiting"]
            for waiting in still:
                # still waiting: nobody of its flavor who came later has been served from the line
                assert all(s.seq < waiting.seq for s in served), f"{flavor}: someone who came later was served first"

    @invariant()
    def nobody_waits_while_a_container_of_their_flavor_is_pooled(self) -> None:
        for flavor in self.flavors.names():
            if self.node.line.waiting(flavor) and self.node.pool.running and not self.node.pool.stats()["draining"]:
                # a container pooled this very turn is offered on the next (when_pooled)
                self.node.clock.advance(0)
                assert not (self.node.line.waiting(flavor) and self.node.pool.pooled(flavor))

    @invariant()
    def each_flavors_room_is_at_most_the_nodes_room(self) -> None:
        # The seam a redirector reads (tmpnb/redirector/nodes.py flavor_room): the top-level
        # room is the node's (its one capacity), not the flavors' sum, which it never exceeds;
        # no flavor's exceeds it.
        stats = self.node.pool.stats()
        assert 0 <= stats["room"] <= self.capacity + self.node.line.max_waiting
        for name, flavor in stats["flavors"].items():
            assert 0 <= flavor["room"] <= stats["room"], (name, flavor, stats["room"])
        assert stats["room"] <= sum(f["room"] for f in stats["flavors"].values())  # they overlap


FlavorsMachine.TestCase.settings = settings(
    max_examples=80, stateful_step_count=30, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
test_flavors_stateful = FlavorsMachine.TestCase
