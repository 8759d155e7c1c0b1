"""What exists when the service starts, and what lives on after, is left out of the garbage
collector's later passes (tmpnb/collector.py); frozen garbage cycles are collected once the
frozen objects double; a culled container needs no cycle collection at all."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock

from tests.scalerig import build_scale
from tmpnb.collector import FREEZE_EVERY, Freezer, freeze_startup_objects, freezer_service
from tmpnb.tap import Options, makeService


@pytest.fixture
def unfrozen() -> Iterator[None]:
    yield
    gc.unfreeze()  # the other tests' objects are theirs to collect


class Startup:
    """An object of the kind a service builds at start (tracked by the collector)."""


def test_objects_made_before_are_out_of_later_collections(unfrozen: None) -> None:
    before = Startup()
    assert gc.is_tracked(before) and any(o is before for o in gc.get_objects())
    frozen = freeze_startup_objects()
    assert frozen > 0 and gc.get_freeze_count() > 0
    assert not any(o is before for o in gc.get_objects())  # no pass walks it any more
    after = Startup()
    assert any(o is after for o in gc.get_objects())  # what the service makes later is walked


def test_twistd_tmpnb_freezes_once_the_reactor_runs(tmp_path) -> None:
    reactor = MemoryReactorClock()
    options = Options()
    options.parseOptions(["--socket-root", str(tmp_path), "--admin-port", "0"])
    makeService(options, reactor=reactor, environ={})
    hooks = [hook for hook, _, _ in reactor.whenRunningHooks]
    assert freeze_startup_objects in hooks


class Cycle:
    """Garbage only the cycle collector can free: it refers to itself."""

    def __init__(self) -> None:
        self.me = self


def test_culled_containers_are_freed_without_the_cycle_collector() -> None:
    # Freezing is safe for the containers' state only because a culled container's objects
    # make no cycle: reference counting frees them, frozen or not.
    rig = build_scale(capacity=210, pool_size=10)
    rig.grow(200)
    machines = [weakref.ref(rig.pool.machine(cid)) for cid in rig.handed]
    cores = [weakref.ref(rig.pool.machine(cid).__automat_core__) for cid in rig.handed]
    gc.collect()
    gc.freeze()
    try:
        gc.disable()
        rig.clock.advance(rig.config.cull_timeout + rig.config.cull_period)
        rig.clock.run_until_idle()
        rig.clock.advance(rig.config.boot_timeout)  # the boots' deadlines, long cancelled, leave the clock
        assert rig.handed_out_now() == 0
        assert all(ref() is None for ref in machines)  # no collection ran: refcounts alone
        assert all(ref() is None for ref in cores)
        assert len(rig.routes) == 0
    finally:
        gc.enable()
        gc.unfreeze()


def test_the_freezer_leaves_survivors_out_of_later_collections(unfrozen: None) -> None:
    freezer = Freezer()
    freezer.tick()  # the first: one full collection, then everything frozen
    assert freezer.thaws == 1
    older = Startup()
    freezer.tick()
    assert freezer.thaws == 1  # not doubled: only a freeze
    assert not any(o is older for o in gc.get_objects())
    younger = Startup()
    assert any(o is younger for o in gc.get_objects())


def test_frozen_cycles_are_collected_once_the_frozen_objects_double(unfrozen: None) -> None:
    freezer = Freezer(growth=1.1)
    freezer.tick()
    baseline = gc.get_freeze_count()
    cycle = Cycle()
    garbage = weakref.ref(cycle)
    freezer.tick()  # frozen with it...
    del cycle
    gc.collect()
    assert garbage() is not None  # ...a frozen cycle is left by every collection: the cost
    freezer.tick()
    assert freezer.thaws == 1 and garbage() is not None  # little new: only a freeze
    growth = [[] for _ in range(baseline // 10 + 1000)]  # the service grows (lists: tracked)
    freezer.tick()  # frozen, these would be more than 1.1 times those after the last thaw
    assert freezer.thaws == 2
    assert garbage() is None  # the thaw collected the frozen cycle
    assert len(growth) > 0


def test_the_freezer_counts_the_frozen_only_when_they_may_have_grown(unfrozen: None) -> None:
    # Counting the frozen objects walks them all: a tick that froze little does not count.
    freezer = Freezer(growth=1.5)
    freezer.tick()
    gone = [[] for _ in range(gc.get_freeze_count() // 4)]
    freezer.tick()  # frozen: the bound grows by them
    del gone  # freed by reference counting: the frozen ones are fewer than the bound says
    more = [[] for _ in range(gc.get_freeze_count() // 3)]
    freezer.tick()  # the bound passes 1.5 times: counted, and found below: no thaw
    assert freezer.thaws == 1
    assert len(more) > 0


def test_the_freezer_ticks_on_the_injected_clock() -> None:
    clock = Clock()
    freezer = Freezer()
    service = freezer_service(clock, every=60.0, freezer=freezer)
    try:
        service.startService()
        assert freezer.thaws == 1  # at once
        clock.advance(60.0)
        assert clock.getDelayedCalls()  # and once a period after
    finally:
        service.stopService()
        gc.unfreeze()


def test_twistd_tmpnb_runs_the_freezer(tmp_path) -> None:
    reactor = MemoryReactorClock()
    options = Options()
    options.parseOptions(["--socket-root", str(tmp_path), "--admin-port", "0"])
    top = makeService(options, reactor=reactor, environ={})
    freezer = top.getServiceNamed("gc-freezer")
    assert freezer.clock is reactor and freezer.step == FREEZE_EVERY
