"""The waiting line's estimates and records: the boot rate it measures, the estimate it
gives each place, and what it writes to the lifecycle log. The real Pool over
tests/fakedocker.py, on a Clock (the line's serving itself: test_waitingline_stateful.py).
"""

from __future__ import annotations

import io
import json
import shutil
import tempfile
from collections.abc import Iterator

import pytest
from twisted.internet.task import Clock
from twisted.logger import Logger

from tests.fakedocker import FakeDocker, FakeServers
from tests.builders import build_line, build_pool
from tmpnb.config import ContainerSpec, PoolConfig
from tmpnb.lifecycle import LifecycleRecorder, lifecycle_log_observer, transitions
from tmpnb.waitingline import DEFAULT_BOOT_RATE, RATE_GAP, WaitingLine


class Setting:
    def __init__(self, pool_size: int = 0, capacity: int = 10, records: list | None = None) -> None:
        self.root = tempfile.mkdtemp(prefix="tnb-line-unit-")
        spec = ContainerSpec(instance="test-line-unit", socket_root=self.root)
        self.clock = Clock()
        self.docker = FakeDocker(self.clock, spec)
        self.servers = FakeServers(self.docker)
        rig = build_pool(
            PoolConfig(pool_size=pool_size, capacity=capacity), clock=self.clock, spec=spec, docker=self.docker,
            servers=self.servers, on_transition=LifecycleRecorder(Logger(observer=lambda e: None), records=records or []),
        )
        self.pool = rig.pool
        self.line = build_line(rig, max_waiting=10, records=records or [])
        self.pool.startService()

    def ready_one(self) -> None:
        self.servers.answer(self.servers.waiting()[0])
        self.clock.advance(0)


@pytest.fixture
def setting() -> Iterator[Setting]:
    s = Setting()
    yield s
    s.pool.stopService()
    shutil.rmtree(s.root, ignore_errors=True)


def test_before_any_boot_the_estimate_assumes_the_default_rate(setting):
    tickets = [setting.line.take() for _ in range(3)]
    assert [setting.line.position(t) for t in tickets] == [1, 2, 3]
    assert setting.line.estimate(tickets[2]) == 3 / DEFAULT_BOOT_RATE


def test_the_estimate_follows_the_measured_boot_rate(setting):
    tickets = [setting.line.take() for _ in range(6)]
    for _ in range(3):  # three readies half a second apart: two boots in a second
        setting.clock.advance(0.5)
        setting.ready_one()
    assert setting.line.boot_rate() == pytest.approx(2.0)
    assert setting.line.position(tickets[5]) == 3
    assert setting.line.estimate(tickets[5]) == pytest.approx(1.5)


def test_readies_far_apart_are_not_one_run_of_boots(setting):
    for _ in range(3):
        setting.line.take()
    setting.clock.advance(1)
    setting.ready_one()
    setting.clock.advance(RATE_GAP + 1)  # the pool was full meanwhile
    setting.ready_one()
    assert setting.line.boot_rate() == DEFAULT_BOOT_RATE  # too few in the latest run


def test_the_lifecycle_log_records_the_line_beside_the_transitions():
    out = io.StringIO()
    observer = lifecycle_log_observer(out)
    setting = Setting(records=[observer.write])
    try:
        first, second = setting.line.take(), setting.line.take()
        setting.clock.advance(2)
        second.leave()
        setting.ready_one()
    finally:
        setting.pool.stopService()
        shutil.rmtree(setting.root, ignore_errors=True)
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    line = [(r["line"], r["position"], r["waited"]) for r in records if "line" in r]
    assert line == [("joined", 1, 0.0), ("joined", 2, 0.0), ("left", 2, 2.0), ("served", 1, 2.0)]
    served = next(r for r in records if r.get("line") == "served")
    assert served["container"] == first.assignment.container_id
    # What the report reads: the containers' transitions alone.
    assert {r["to"] for r in transitions(records)} >= {"booting", "pooled", "assigned"}


def test_stats_count_who_joined_was_served_and_left(setting):
    setting.line.take()
    second = setting.line.take()
    second.leave()
    setting.clock.advance(3)
    setting.ready_one()
    stats = setting.pool.stats()["waiting"]
    assert stats == {"length": 0, "max": 10, "joined": 2, "served": 1, "left": 1, "wait_p50": 3.0,
                     "wait_max": 3.0, "boots_per_second": DEFAULT_BOOT_RATE}


def test_every_visitor_turned_away_is_told_to_the_hook():
    turned_away: list[None] = []
    setting = Setting()
    line = WaitingLine(setting.clock, setting.pool, max_waiting=1, on_turned_away=lambda: turned_away.append(None))
    try:
        assert line.take() is not None  # waits: one boots for them
        assert line.take() is None  # the line is full
        assert line.take(join=False) is None  # would have to wait, and will not
        assert len(turned_away) == 2
    finally:
        setting.pool.stopService()
        shutil.rmtree(setting.root, ignore_errors=True)
