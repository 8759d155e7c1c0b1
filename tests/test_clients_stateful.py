"""The client gate under any order of events, over the real Pool and waiting line (FakeDocker, on
a Clock) and the web's real hand-out: visitors from several addresses ask for containers (some
willing to wait in line), take or leave what they were given, servers boot, containers are
culled, time passes. After every step:

- no address holds more than its share (places in line and live containers it claimed);
- the gate's count of each address is exactly what it holds;
- the capacity is never exceeded;
- a refusal never comes with a container, and "share" comes only to an address at its share.
"""

from __future__ import annotations

import shutil
import tempfile

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.web.test.requesthelper import DummyRequest

from tests.builders import build_line, build_pool
from tests.fakedocker import FakeDocker, FakeServers
from tmpnb.clients import Refusal, SharePolicy, make_gate
from tmpnb.clients.address import TrustedProxies
from tmpnb.config import ContainerSpec, PoolConfig
from tmpnb.heartbeat import HANDED_OUT
from tmpnb.web.handout import HandOut

ADDRESSES = ["192.0.2.1", "192.0.2.2", "198.51.100.7"]


def visit(address: str) -> DummyRequest:
    request = DummyRequest([b""])
    request.client = IPv4Address("TCP", address, 40000)
    return request


class GateMachine(RuleBasedStateMachine):
    @initialize(pool_size=st.integers(0, 4), extra=st.integers(0, 6), share=st.sampled_from([0.25, 0.34, 0.5, 1.0]),
                burst=st.integers(1, 4))
    def start(self, pool_size: int, extra: int, share: float, burst: int) -> None:
        self.root = tempfile.mkdtemp(prefix="tnb-gate-")
        spec = ContainerSpec(instance="test-gate", socket_root=self.root)
        self.capacity = max(1, pool_size + extra)
        self.clock = Clock()
        self.docker = FakeDocker(self.clock, spec)
        self.servers = FakeServers(self.docker)
        policy = SharePolicy(share=share, spawns_per_minute=6, burst=burst)
        # Untrusted peers: each request's own address is its client.
        self.gate = make_gate(self.clock, self.capacity, policy, TrustedProxies(local_peer=False))
        record = self.gate.record
        rig = build_pool(PoolConfig(pool_size=pool_size, capacity=self.capacity), clock=self.clock, spec=spec,
                         docker=self.docker, servers=self.servers,
                         on_transition=lambda e: record({"container": e.container, "from": e.from_state,
                                                         "to": e.to_state}))
        self.pool = rig.pool
        self.line = build_line(rig, max_waiting=6)
        self.handout = HandOut(self.line, True, self.gate)
        self.pool.startService()
        self.tickets: dict[str, list] = {a: [] for a in ADDRESSES}  # every ticket each address took
        self.claimed: dict[str, list[str]] = {a: [] for a in ADDRESSES}  # containers each claimed
        self.limit = policy.limit(self.capacity)

    def teardown(self) -> None:
        if hasattr(self, "pool"):
            self.pool.stopService()
            shutil.rmtree(self.root, ignore_errors=True)

    def holds(self, address: str) -> int:
        live = set(self.pool.ids_in(HANDED_OUT))
        waiting = sum(1 for t in self.tickets[address] if t.state in ("waiting", "serving", "ready"))
        return waiting + sum(1 for c in self.claimed[address] if c in live)

    @rule(address=st.sampled_from(ADDRESSES), join=st.booleans())
    def ask(self, address: str, join: bool) -> None:
        before = self.holds(address)
        result = self.handout.take(visit(address), "", join)
        if isinstance(result, Refusal):
            assert self.holds(address) == before  # nothing given
            if result.reason == "share":
                assert before >= self.limit
            else:
                assert result.reason == "rate" and result.retry_after >= 1
        elif result is not None:
            self.tickets[address].append(result)

    @rule(data=st.data())
    def servers_answer(self, data: st.DataObject) -> None:
        waiting = self.servers.waiting()
        if waiting:
            self.servers.answer(data.draw(st.sampled_from(waiting)))
            self.clock.advance(0)

    @rule(data=st.data())
    def someone_claims(self, data: st.DataObject) -> None:
        ready = [(a, t) for a in ADDRESSES for t in self.tickets[a] if t.state == "ready"]
        if ready:
            address, ticket = data.draw(st.sampled_from(ready))
            self.handout.url(ticket)
            self.claimed[address].append(ticket.assignment.container_id)

    @rule(data=st.data())
    def someone_leaves(self, data: st.DataObject) -> None:
        open_ = [t for a in ADDRESSES for t in self.tickets[a] if not t.done]
        if open_:
            data.draw(st.sampled_from(open_)).leave()
            self.clock.advance(0)

    @precondition(lambda self: any(self.claimed.values()))
    @rule(data=st.data())
    def a_container_is_culled(self, data: st.DataObject) -> None:
        live = [c for a in ADDRESSES for c in self.claimed[a] if c in set(self.pool.ids_in(HANDED_OUT))]
        if live:
            self.pool.cull(data.draw(st.sampled_from(live)), "idle")
            self.clock.advance(0)

    @rule(seconds=st.sampled_from([0.5, 3.0, 10.0, 30.0]))
    def time_passes(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @invariant()
    def nobody_holds_more_than_their_share(self) -> None:
        if not hasattr(self, "pool"):
            return
        for address in ADDRESSES:
            held = self.holds(address)
            assert held <= self.limit, (address, held, self.limit)
            assert self.gate.shares.held(address) == held, address

    @invariant()
    def the_capacity_is_never_exceeded(self) -> None:
        if hasattr(self, "pool"):
            assert self.pool.stats()["total"] <= self.capacity


GateMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None,
                                         suppress_health_check=[HealthCheck.too_slow])
test_the_gate_under_any_order_of_events = GateMachine.TestCase
