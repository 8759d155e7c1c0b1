"""Several flavors on one node (tmpnb/flavors.py): a pool and a waiting line per flavor, inside
the node's one capacity. The real Pool and WaitingLine over tests/fakedocker.py on a Clock
(tests/flavorrig.py); the same on the real engine: tests/integration/test_flavors_real.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from twisted.internet.task import Clock
from twisted.logger import LogLevel, globalLogPublisher

from tests.flavorrig import FlavorNode
from tests.builders import build_pool
from tests.fakedocker import FakeDocker, FakeServers
from tmpnb.config import ContainerSpec, PoolConfig
from tmpnb.dockerrecipe import FLAVOR_LABEL
from tmpnb.flavors import Flavor, Flavors

ALPHA = "img/alpha:1"
BETA = "img/beta:1"


def two(alpha: int = 1, beta: int = 1, default: str = "alpha") -> Flavors:
    return Flavors((Flavor("alpha", ALPHA, alpha), Flavor("beta", BETA, beta)), default)


@pytest.fixture
def node(tmp_path: Path):
    made: list[FlavorNode] = []

    def make(flavors: Flavors | None = None, capacity: int = 4, **kw) -> FlavorNode:
        n = FlavorNode(tmp_path / f"n{len(made)}", flavors or two(), capacity, **kw)
        made.append(n)
        return n

    yield make
    for n in made:
        n.stop()


def test_each_flavor_fills_its_own_pool_with_its_own_image(node):
    n = node(two(alpha=2, beta=1), capacity=5)
    n.settle()
    assert n.count("alpha", "pooled") == 2 and n.count("beta", "pooled") == 1
    images = sorted(c.image for c in n.docker.containers.values())
    assert images == [ALPHA, ALPHA, BETA]
    labels = sorted(c.labels[FLAVOR_LABEL] for c in n.docker.containers.values())
    assert labels == ["alpha", "alpha", "beta"]


def test_a_visitor_gets_a_container_of_the_flavor_they_chose_and_none_named_gets_the_default(node):
    n = node()
    n.settle()
    beta, default = n.line.take(flavor="beta"), n.line.take()
    n.settle()
    a, b = n.claim(beta), n.claim(default)
    assert (n.image_of(a), a.flavor, n.label_of(a)) == (BETA, "beta", "beta")
    assert (n.image_of(b), b.flavor) == (ALPHA, "alpha")


def test_pools_refill_independently(node):
    n = node(two(alpha=2, beta=2), capacity=8)
    n.settle()
    for _ in range(2):
        n.claim(n.line.take(flavor="beta"))
    assert n.count("beta", "pooled") == 0
    assert n.count("beta", "booting", "requested") == 2  # beta's replacements
    assert n.count("alpha", "pooled") == 2 and n.count("alpha", "booting", "requested") == 0  # alpha untouched
    n.settle()
    assert n.count("beta", "pooled") == 2 and n.count("beta", "assigned") == 2


def test_a_broken_image_pauses_its_own_flavor_only(node):
    n = node(two(alpha=1, beta=1), capacity=4, start=False, boot_attempts=1)
    n.docker.hold("launch")
    n.pool.startService()
    for call in n.docker.held_calls("launch"):
        if call.args[0].spec.flavor == "beta":
            call.fail("no such image: img/beta:1")
        else:
            call.succeed()
    n.docker.release("launch")
    n.settle()
    assert n.count("alpha", "pooled") == 1
    assert n.count("beta", "requested", "booting", "pooled") == 0  # beta waits out its pause
    n.claim(n.line.take(flavor="alpha"))
    n.settle()
    assert n.count("alpha", "pooled") == 1  # alpha refills all the same
    assert n.count("beta", "requested", "booting", "pooled") == 0
    n.clock.advance(PoolConfig().backoff_initial)  # beta's pause is over: it tries again
    n.settle()
    assert n.count("beta", "pooled") == 1


def test_the_capacity_is_shared_and_never_exceeded(node):
    n = node(two(alpha=2, beta=2), capacity=4)
    n.settle()
    served = [n.claim(n.line.take(flavor="alpha")) for _ in range(2)]
    n.settle()
    assert n.pool.stats()["total"] == 4  # alpha's two visitors and beta's pool: no alpha refill
    assert n.count("alpha", "booting", "requested", "pooled") == 0
    # A third alpha visitor waits, and one of beta's spares is culled to make room for them.
    third = n.line.take(flavor="alpha")
    assert third is not None and third.state == "waiting"
    n.settle()
    assert n.pool.stats()["total"] <= 4
    assert n.image_of(n.claim(third)) == ALPHA
    assert n.count("beta", "pooled") == 1 and n.count("alpha", "assigned") == 3
    assert len({a.container_id for a in served}) == 2


def test_a_burst_of_one_flavor_uses_the_free_capacity_then_the_line_says_no_vacancy(node):
    n = node(two(alpha=1, beta=1), capacity=3, max_waiting=10)
    n.settle()
    tickets = [n.line.take(flavor="alpha") for _ in range(5)]
    # one pooled alpha at once, one booted on the free place, one on beta's culled spare; then no room
    assert [t is not None for t in tickets] == [True, True, True, False, False]
    n.settle()
    assert [n.image_of(n.claim(t)) for t in tickets[:3]] == [ALPHA] * 3
    assert n.pool.stats()["total"] == 3
    assert n.line.take(flavor="beta") is None  # beta's visitor: the capacity is all alpha's visitors'


def test_each_flavors_line_is_served_in_its_own_first_come_order(node):
    n = node(two(alpha=0, beta=0), capacity=6, max_booting=100)
    order = []
    tickets = {}
    for i, flavor in enumerate(["alpha", "beta", "alpha", "beta", "alpha"]):
        n.clock.advance(1)
        tickets[i] = (flavor, n.line.take(flavor=flavor))
    assert [n.line.position(t) for f, t in tickets.values()] == [1, 1, 2, 2, 3]
    for i, (flavor, ticket) in tickets.items():
        ticket.wait(60).addCallback(lambda a, i=i: order.append((i, a.flavor)))
    n.settle()
    alpha = [i for i, f in order if f == "alpha"]
    beta = [i for i, f in order if f == "beta"]
    assert alpha == [0, 2, 4] and beta == [1, 3]
    assert all(n.image_of(t.claim()) == (ALPHA if f == "alpha" else BETA) for f, t in tickets.values())


def test_a_container_readied_for_a_visitor_who_left_goes_to_the_next_of_its_own_flavor(node):
    n = node(two(alpha=0, beta=0), capacity=4)
    first, other, second = n.line.take(flavor="beta"), n.line.take(flavor="alpha"), n.line.take(flavor="beta")
    first.leave("left")
    n.settle()
    assert n.image_of(n.claim(second)) == BETA
    assert n.image_of(n.claim(other)) == ALPHA


def test_room_per_flavor_counts_the_shared_capacity_and_the_other_flavors_spares(node):
    n = node(two(alpha=1, beta=1), capacity=4)
    n.settle()
    stats = n.line.flavors_stats()
    # alpha: its pooled one, beta's spare (culled for alpha's visitors if need be) and 2 free places
    assert stats["alpha"]["room"] == 4 and stats["beta"]["room"] == 4
    assert n.line.room() == 4  # the node's: the capacity is shared, not counted twice
    for _ in range(2):
        n.line.take(flavor="alpha")
    stats = n.line.flavors_stats()
    assert stats["alpha"]["room"] == 2 and stats["beta"]["room"] == 2


def test_adoption_puts_each_container_back_in_its_flavors_pool_and_removes_unknown_flavors(tmp_path):
    spec = ContainerSpec(instance="test-flavors-adopt", socket_root=str(tmp_path))
    clock = Clock()
    docker = FakeDocker(clock, spec)
    servers = FakeServers(docker)
    three = Flavors((Flavor("alpha", ALPHA, 1), Flavor("beta", BETA, 1), Flavor("gamma", "img/gamma", 1)), "alpha")
    first = build_pool(PoolConfig(pool_size=0, capacity=6), clock=clock, spec=spec, docker=docker, servers=servers,
                       flavors=three, keep_assigned=True, token_for=lambda cid: "tok-" + cid).pool
    first.startService()
    while servers.waiting():
        for cid in servers.waiting():
            servers.answer(cid)
    kept = {c.container_id: c.labels[FLAVOR_LABEL] for c in docker.containers.values()}
    assert sorted(kept.values()) == ["alpha", "beta", "gamma"]
    # The process dies (its containers stay), and comes back without gamma.
    observed: list[dict] = []
    globalLogPublisher.addObserver(observed.append)
    try:
        second = build_pool(PoolConfig(pool_size=0, capacity=6), clock=clock, spec=spec, docker=docker,
                            servers=servers, flavors=two(), adopt=True, token_for=lambda cid: "tok-" + cid).pool
        second.startService()
        while servers.waiting():
            for cid in servers.waiting():
                servers.answer(cid)
        clock.advance(0)
    finally:
        globalLogPublisher.removeObserver(observed.append)
    gamma = next(cid for cid, f in kept.items() if f == "gamma")
    assert gamma not in {c.container_id for c in docker.containers.values()}  # removed
    for flavor in ("alpha", "beta"):
        cid = next(c for c, f in kept.items() if f == flavor)
        assert second.flavor_stats(flavor)["states"] == {"pooled": 1}
        assert second._flavor_of[cid] == flavor
    warned = [e for e in observed if e.get("log_level") == LogLevel.warn and e.get("container") == gamma]
    assert warned and warned[0]["flavor"] == "gamma"
    second.stopService()


def test_a_node_without_flavors_labels_nothing_and_has_one_flavor_default(tmp_path):
    rig = build_pool(PoolConfig(pool_size=1, capacity=2), spec=ContainerSpec(instance="t-noflavor", socket_root=str(tmp_path)))
    rig.pool.startService()
    rig.answer_all()
    (container,) = rig.docker.containers.values()
    assert FLAVOR_LABEL not in container.labels  # as before flavors
    assert rig.pool.flavors.names() == ["default"]
    assert rig.pool.flavor_stats("default")["available"] == 1
    rig.pool.stopService()


def test_a_flavor_may_have_its_own_readiness_check_the_one_that_warms_its_landing_page(tmp_path):
    checked: list[tuple[str, str]] = []
    clock = Clock()
    spec = ContainerSpec(instance="t-flavor-ready", socket_root=str(tmp_path))
    servers = FakeServers(FakeDocker(clock, spec))

    def beta_ready(reactor, socket_path, base_path, token, timeout, interval):
        checked.append(("beta", base_path))
        return servers.wait_ready(reactor, socket_path, base_path, token, timeout, interval)

    rig = build_pool(PoolConfig(pool_size=0, capacity=4), clock=clock, spec=spec, docker=servers.docker,
                     servers=servers, flavors=two(), flavor_wait_ready={"beta": beta_ready})
    rig.pool.startService()
    rig.answer_all()
    beta = [cid for cid, f in rig.pool._flavor_of.items() if f == "beta"]
    assert checked == [("beta", f"/user/{beta[0]}/")]  # alpha's went through the node's own check
    assert rig.pool.pooled("alpha") == 1 and rig.pool.pooled("beta") == 1
    rig.pool.stopService()
