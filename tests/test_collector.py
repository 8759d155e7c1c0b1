"""What exists when the service starts is left out of the garbage collector's later passes
(tmpnb/collector.py), and `twistd tmpnb` does it once the reactor runs."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest
from twisted.internet.testing import MemoryReactorClock

from tmpnb.collector import freeze_startup_objects
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
