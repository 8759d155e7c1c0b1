"""Builders for the pool and the waiting line in memory: the real Pool and machines over
FakeDocker, FakeServers and the real in-process route table, on a Clock.

    rig = build_pool(PoolConfig(pool_size=2, capacity=4))
    rig.pool.startService(); rig.answer_all()
    line = build_line(rig, max_waiting=10)   # wired as tmpnb/tap.py wires it

Anything `Pool(...)` takes can be given as a keyword (`max_booting=2`, `adopt=True`,
`on_transition=...`); the fakes can be given too, to share them between two runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from http.cookiejar import DefaultCookiePolicy
from typing import Any

from twisted.internet.task import Clock

from tests.fakedocker import FakeDocker, FakeServers
from tmpnb.clients import ClientGate, SharePolicy, make_gate
from tmpnb.config import ContainerSpec, PoolConfig
from tmpnb.pool import Pool
from tmpnb.proxy.routes import RouteTable
from tmpnb.proxyapi import InProcessProxyAPI
from tmpnb.states import TransitionEvent
from tmpnb.waitingline import WaitingLine


@dataclass
class PoolRig:
    """A pool and the fakes it runs on."""

    pool: Pool
    clock: Clock
    spec: ContainerSpec
    docker: FakeDocker
    servers: FakeServers
    routes: RouteTable
    events: list[TransitionEvent] = field(default_factory=list)  # with the default on_transition

    def answer_all(self) -> None:
        """Every server waited for answers, and those that boot after them too."""
        while self.servers.waiting():
            for container_id in self.servers.waiting():
                self.servers.answer(container_id)


def build_pool(
    config: PoolConfig | None = None,
    *,
    clock: Clock | None = None,
    spec: ContainerSpec | None = None,
    docker: FakeDocker | None = None,
    servers: FakeServers | None = None,
    routes: RouteTable | None = None,
    proxy: Any = None,
    **overrides: Any,
) -> PoolRig:
    """A Pool (not started) over fakes; `overrides` go to Pool(...). By default its
    transitions are appended to `rig.events` and it asks the fake servers' statuses."""
    clock = Clock() if clock is None else clock
    spec = ContainerSpec(instance="test-pool", socket_root="/tmp/tnb-pool") if spec is None else spec
    docker = FakeDocker(clock, spec) if docker is None else docker
    servers = FakeServers(docker) if servers is None else servers
    routes = RouteTable(clock) if routes is None else routes
    events: list[TransitionEvent] = []
    settings: dict[str, Any] = {"on_transition": events.append, "ask_statuses": servers.ask_statuses}
    settings.update(overrides)
    pool = Pool(
        clock,
        docker,
        servers.wait_ready,
        InProcessProxyAPI(routes) if proxy is None else proxy,
        spec,
        PoolConfig() if config is None else config,
        **settings,
    )
    return PoolRig(pool, clock, spec, docker, servers, routes, events)


def build_line(rig: PoolRig, max_waiting: int, **options: Any) -> WaitingLine:
    """A waiting line taking from `rig.pool`, subscribed to it as tmpnb/tap.py wires it."""
    line = WaitingLine(rig.clock, rig.pool, max_waiting, **options)
    line.follow(rig.pool)
    return line


# One client address may hold the whole capacity and spawn without limit: for the tests that
# stand for many visitors from one address (StubTreq's 127.0.0.1), which the default share
# (tmpnb/clients/: a quarter of the capacity) would refuse.
WHOLE_CAPACITY = SharePolicy(share=1.0, spawns_per_minute=1e9, burst=10**9)


def one_address_gate(clock: Any = None, capacity: int = 1000) -> ClientGate:
    """A client gate that lets one address have everything (WHOLE_CAPACITY); the Sec-Fetch rules
    and the reload cookie still apply."""
    return make_gate(Clock() if clock is None else clock, capacity, WHOLE_CAPACITY)


def cookieless(stub: Any) -> Any:
    """`stub` (a treq.testing.StubTreq) keeps no cookie between requests: each request is a new
    visitor with no browser memory (curl), as the tests of many visitors on one client mean it.
    treq's client keeps a cookie jar, and the reload cookie (tmpnb/clients/returning.py) would
    send the "second visitor" back to the first one's server; the jar's policy now refuses all."""
    client = stub.request.__wrapped__.__self__  # the HTTPClient behind StubTreq's functions
    client._cookiejar.set_policy(DefaultCookiePolicy(allowed_domains=[]))
    return stub
