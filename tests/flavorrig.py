"""A node of several flavors in memory: the real Pool, WaitingLine and machines over FakeDocker
and FakeServers on a Clock, wired as tmpnb/tap.py wires them (tests/builders.py's pieces).

    node = FlavorNode(tmp_path, Flavors((Flavor("alpha", "img/alpha", 1), Flavor("beta", "img/beta", 1)), "alpha"), capacity=3)
    ticket = node.line.take(flavor="beta"); node.settle(); node.image_of(node.claim(ticket))
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.builders import build_line, build_pool
from tmpnb.config import ContainerSpec, PoolConfig
from tmpnb.dockerapi import ID_LABEL
from tmpnb.dockerrecipe import FLAVOR_LABEL
from tmpnb.flavors import Flavors
from tmpnb.states import Assignment
from tmpnb.tickets import Ticket


class FlavorNode:
    def __init__(self, root: Path | str, flavors: Flavors, capacity: int, max_waiting: int = 50,
                 refill_delay: float = 0.0, start: bool = True, boot_attempts: int = 3,
                 **pool_options: Any) -> None:
        self.spec = ContainerSpec(instance="test-flavors", socket_root=str(root))
        self.flavors = flavors
        config = PoolConfig(pool_size=0, capacity=capacity, refill_delay=refill_delay, max_booting=100,
                            boot_attempts=boot_attempts)
        rig = build_pool(config, spec=self.spec, flavors=flavors, **pool_options)
        self.rig, self.pool, self.clock = rig, rig.pool, rig.clock
        self.docker, self.servers = rig.docker, rig.servers
        self.line = build_line(rig, max_waiting, flavors=flavors)
        if start:
            self.pool.startService()

    def settle(self) -> None:
        """Every booting server answers, and what follows (hand-outs, refills) happens."""
        for _ in range(20):
            self.clock.advance(0)
            if not self.servers.waiting():
                break
            for container_id in self.servers.waiting():
                self.servers.answer(container_id)
        self.clock.advance(0)

    def claim(self, ticket: Ticket) -> Assignment:
        assert ticket.state == "ready", ticket.state
        return ticket.claim()

    def container(self, container_id: str) -> Any:
        return next(c for c in self.docker.containers.values() if c.labels[ID_LABEL] == container_id)

    def image_of(self, assignment: Assignment) -> str:
        return self.container(assignment.container_id).image

    def label_of(self, assignment: Assignment) -> str:
        return self.container(assignment.container_id).labels.get(FLAVOR_LABEL, "default")

    def states(self, flavor: str) -> dict[str, int]:
        return self.pool.flavor_stats(flavor)["states"]

    def count(self, flavor: str, *states: str) -> int:
        counts = self.states(flavor)
        return sum(counts.get(s, 0) for s in states)

    def stop(self) -> None:
        self.pool.stopService()
