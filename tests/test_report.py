"""The researchers' report, checked against the truth of a simulated tmpnb run.

``SimulatedRun`` plays a realistic run as the container machines would report it: the pool
refills, boots take about a second and sometimes fail and retry with backoff, visitors work,
go idle, come back or leave, containers die or reach their maximum age, an admin drains the
pool, the service stops.  Its transitions go through the real LifecycleRecorder and JSON-lines
observer; the report must find in the file what the simulation knows happened.

Regenerate the sample fixture with:  python tests/test_report.py tests/data/lifecycle-sample.jsonl
"""

from __future__ import annotations

import heapq
import io
import os
import random
import statistics
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

import pytest
from twisted.internet.task import Clock
from twisted.logger import Logger

from tests.builders import build_pool
from tests.results import succeeded
from tests.fakedocker import FakeDocker, FakeServers
from tmpnb import report
from tmpnb.config import ContainerSpec, PoolConfig
from tmpnb.lifecycle import NAMESPACE, LifecycleRecorder, lifecycle_log_observer, load, read_records

from tmpnb.states import TransitionEvent

SAMPLE = os.path.join(os.path.dirname(__file__), "data", "lifecycle-sample.jsonl")
T0 = 1_700_000_000.0

BOOT_FAILURE_CAUSES = (
    "timeout waiting for api/status",
    "DockerTimeout: create after 30s",
    "container exited (1) before it was ready",
)


@dataclass
class Truth:
    """What happened, as the simulation knows it (not as read back from the log)."""

    boot_times: list[float] = field(default_factory=list)
    pool_waits: list[float] = field(default_factory=list)
    session_lengths: list[float] = field(default_factory=list)
    idle_before_cull: list[float] = field(default_factory=list)
    cull_reasons: Counter[str] = field(default_factory=Counter)
    boot_failures: Counter[str] = field(default_factory=Counter)
    most_pooled: int = 0
    turned_away: int = 0


@dataclass
class _Container:
    state: str
    since: float
    epoch: int = 0  # bumped on every transition: scheduled steps of an older epoch are stale
    first_boot: float | None = None
    failures: int = 0
    assigned_at: float | None = None


class SimulatedRun:
    def __init__(
        self,
        emit: Callable[[TransitionEvent], None],
        seed: int = 1,
        pool_size: int = 3,
        duration: float = 2 * 3600,
        mean_visitor_gap: float = 240.0,
        boot_attempts: int = 3,
        boot_failure_rate: float = 0.12,
        cull_period: float = 60.0,
        cull_timeout: float = 600.0,
        cull_max: float = 1800.0,
    ) -> None:
        self.emit = emit
        self.rng = random.Random(seed)
        self.pool_size = pool_size
        self.duration = duration
        self.mean_visitor_gap = mean_visitor_gap
        self.boot_attempts = boot_attempts
        self.boot_failure_rate = boot_failure_rate
        self.cull_period = cull_period
        self.cull_timeout = cull_timeout
        self.cull_max = cull_max
        self.truth = Truth()
        self.containers: dict[str, _Container] = {}
        self.pooled: list[str] = []
        self._queue: list[tuple[float, int, Callable[[float], None]]] = []
        self._seq = 0

    # -- the run ---------------------------------------------------------------------------

    def run(self) -> Truth:
        for _ in range(self.pool_size):
            self._at(0.0, self._request)
        t = self.rng.expovariate(1 / self.mean_visitor_gap)
        while t < self.duration:
            self._at(t, self._visitor)
            t += self.rng.expovariate(1 / self.mean_visitor_gap)
        self._at(self.duration / 2, self._drain)
        while self._queue and self._queue[0][0] < self.duration:
            when, _, step = heapq.heappop(self._queue)
            step(when)
        for cid, c in list(self.containers.items()):
            if c.state != "culled":
                self._cull(cid, self.duration, "stopping")
        return self.truth

    def _at(self, when: float, step: Callable[[float], None]) -> None:
        self._seq += 1
        heapq.heappush(self._queue, (when, self._seq, step))

    def _later(self, cid: str, when: float, step: Callable[[str, float], None]) -> None:
        epoch = self.containers[cid].epoch
        self._at(when, lambda t: step(cid, t) if self.containers[cid].epoch == epoch else None)

    def _move(self, cid: str, to: str, input: str, t: float, cause: str | None = None) -> None:
        # As tmpnb.states reports: a loop (a failed attempt) does not restart the state's clock.
        c = self.containers[cid]
        self.emit(TransitionEvent(cid, c.state, to, input, T0 + t, t - c.since, cause))
        if to != c.state:
            c.state, c.since = to, t
        c.epoch += 1

    # -- booting ---------------------------------------------------------------------------

    def _request(self, t: float) -> None:
        cid = f"c{len(self.containers):03d}{self.rng.randrange(16**8):08x}"
        self.containers[cid] = _Container("requested", t)
        self._boot(cid, t)

    def _boot(self, cid: str, t: float) -> None:
        c = self.containers[cid]
        if c.first_boot is None:
            c.first_boot = t
            self._move(cid, "booting", "boot", t)
        # later attempts start inside booting, unreported
        if self.rng.random() < self.boot_failure_rate:
            cause = self.rng.choice(BOOT_FAILURE_CAUSES)
            timed_out = cause.startswith(("timeout", "DockerTimeout"))
            took = 30.0 if timed_out else self.rng.uniform(1, 3)
            self._later(cid, t + took, lambda cid, t: self._boot_failed(cid, t, cause))
        else:
            self._later(cid, t + self.rng.lognormvariate(0.1, 0.3), self._ready)

    def _boot_failed(self, cid: str, t: float, cause: str) -> None:
        c = self.containers[cid]
        c.failures += 1
        self.truth.boot_failures[cause] += 1
        self._move(cid, "booting", "bootFailed", t, cause)
        if c.failures >= self.boot_attempts:
            reason = f"gave up after {c.failures} boot attempts: {cause}"
            self._move(cid, "culled", "cull", t, reason)
            self.truth.cull_reasons[reason] += 1
            self._request(t)  # the pool refills
        else:
            self._later(cid, t + 2.0 ** (c.failures - 1), self._boot)

    def _ready(self, cid: str, t: float) -> None:
        self.truth.boot_times.append(t - self.containers[cid].first_boot)
        self._move(cid, "pooled", "ready", t)
        self.pooled.append(cid)
        self.truth.most_pooled = max(self.truth.most_pooled, len(self.pooled))

    # -- visitors --------------------------------------------------------------------------

    def _visitor(self, t: float) -> None:
        if not self.pooled:
            self.truth.turned_away += 1
            return
        cid = self.pooled.pop(0)
        c = self.containers[cid]
        self.truth.pool_waits.append(t - c.since)
        self._move(cid, "assigned", "assign", t)
        c.assigned_at = t
        self._request(t)  # a replacement starts at once
        # Containers die now and then (OOM, a crash), and none lives past the maximum age.
        if self.rng.random() < 0.08:
            death = self.rng.choice(("die", "oom"))
            self._at(t + self.rng.uniform(10, 1500), lambda t: self._ends(cid, t, death))
        self._at(t + self.cull_max, lambda t: self._ends(cid, t, "max age"))
        self._work(cid, t)

    def _work(self, cid: str, t: float) -> None:
        self._later(cid, t + self.rng.expovariate(1 / 300), self._goes_idle)

    def _goes_idle(self, cid: str, t: float) -> None:
        self._move(cid, "idle", "idle", t)
        if self.rng.random() < 0.35:
            self._later(cid, t + self.rng.uniform(30, self.cull_timeout - 60), self._comes_back)
        else:
            # the heartbeat culls on its next sweep after the timeout
            idle_cull = t + self.cull_timeout + self.rng.uniform(0, self.cull_period)
            self._later(cid, idle_cull, lambda cid, t: self._cull(cid, t, "idle"))

    def _comes_back(self, cid: str, t: float) -> None:
        self._move(cid, "assigned", "activity", t)
        self._work(cid, t)

    def _ends(self, cid: str, t: float, reason: str) -> None:
        if self.containers[cid].state in ("assigned", "idle"):
            self._cull(cid, t, reason, "exited" if reason in ("die", "oom") else "cull")

    # -- culls -----------------------------------------------------------------------------

    def _drain(self, t: float) -> None:
        drained, self.pooled = self.pooled, []
        for cid in drained:
            self._cull(cid, t, "drained")
            self._request(t)

    def _cull(self, cid: str, t: float, reason: str, input: str = "cull") -> None:
        c = self.containers[cid]
        if c.state == "idle":
            self.truth.idle_before_cull.append(t - c.since)
        if c.assigned_at is not None:
            self.truth.session_lengths.append(t - c.assigned_at)
        self.truth.cull_reasons[reason] += 1
        self._move(cid, "culled", input, t, reason)


def simulate(out: io.TextIOBase, **kwargs) -> Truth:
    """Run a simulation through the real recorder and observer, writing JSON lines to ``out``."""
    observer = lifecycle_log_observer(out)
    recorder = LifecycleRecorder(Logger(namespace=NAMESPACE, observer=lambda e: None), records=[observer.write])
    return SimulatedRun(recorder, **kwargs).run()


@pytest.fixture(scope="module")
def run() -> tuple[Truth, list[dict]]:
    out = io.StringIO()
    truth = simulate(out, seed=7, duration=6 * 3600, mean_visitor_gap=120.0, boot_failure_rate=0.3)
    records = sorted(read_records(out.getvalue().splitlines()), key=lambda r: r["time"])
    return truth, records


def test_the_simulation_is_a_busy_one(run):
    truth, records = run
    assert len(truth.session_lengths) > 100
    assert sum(truth.boot_failures.values()) > 10
    assert {"idle", "max age", "die", "oom", "drained", "stopping"} <= set(truth.cull_reasons)
    assert any(reason.startswith("gave up after 3 boot attempts") for reason in truth.cull_reasons)


@pytest.mark.parametrize(
    "name", ["boot_times", "pool_waits", "session_lengths", "idle_before_cull"]
)
def test_distributions_match_what_happened(run, name):
    truth, records = run
    found = getattr(report, name)(records)
    assert sorted(found) == pytest.approx(sorted(getattr(truth, name)))


def test_cull_reasons_and_boot_failures_match_what_happened(run):
    truth, records = run
    assert report.cull_reasons(records) == truth.cull_reasons
    assert report.boot_failures(records) == truth.boot_failures


# What the simulation's reasons and causes are, by category.
CULL_CATEGORY_OF = {"idle": "idle", "max age": "max-age", "die": "died", "oom": "died",
                    "drained": "drained", "stopping": "stopping"}
BOOT_FAILURE_CATEGORY_OF = {"timeout waiting for api/status": "not-ready",
                            "DockerTimeout: create after 30s": "docker-timeout",
                            "container exited (1) before it was ready": "launch-failed"}


def test_culls_and_boot_failures_are_grouped_by_category(run):
    truth, records = run
    expected = Counter()
    for reason, n in truth.cull_reasons.items():
        expected["boot-failed" if reason.startswith("gave up after") else CULL_CATEGORY_OF[reason]] += n
    assert report.cull_categories(records) == expected
    failures = Counter()
    for cause, n in truth.boot_failures.items():
        failures[BOOT_FAILURE_CATEGORY_OF[cause]] += n
    assert report.boot_failure_categories(records) == failures


def test_timeline_never_holds_more_pooled_than_the_pool_and_ends_empty(run):
    truth, records = run
    times, counts = report.state_timeline(records)
    assert times == sorted(times)
    assert max(counts["pooled"]) == truth.most_pooled
    assert all(counts[state][-1] == 0 for state in report.LIVE_STATES)
    # after the first instant, every moment has containers booting, pooled or in use
    assert all(sum(counts[s][i] for s in report.LIVE_STATES) > 0 for i in range(len(times) - 1))


def test_report_reads_what_the_real_pool_and_machines_record(tmp_path):
    """The real Pool and container machines (over FakeDocker, on a Clock) write the log."""
    clock = Clock()
    clock.advance(T0)
    spec = ContainerSpec(instance="test-report", socket_root="/tmp/tnb-report")
    docker = FakeDocker(clock, spec)
    servers = FakeServers(docker)
    path = str(tmp_path / "lifecycle.jsonl")
    observer = lifecycle_log_observer(path)
    pool = build_pool(
        PoolConfig(pool_size=2, capacity=4, boot_attempts=3, backoff_initial=1.0, cull_period=10_000, refill_delay=0.0),
        clock=clock, spec=spec, docker=docker, servers=servers,
        on_transition=LifecycleRecorder(Logger(namespace=NAMESPACE, observer=lambda e: None), records=[observer.write]),
    ).pool
    docker.hold("launch")
    pool.startService()
    first, second = docker.held_calls("launch")
    first.succeed()
    second.fail("no such image")  # removed at once, retried after 1 s of backoff
    clock.advance(1.0)
    [retry] = docker.held_calls("launch")
    retry.succeed()
    clock.advance(0.5)
    for container_id in servers.waiting():  # both answer 1.5 s after the pool started
        servers.answer(container_id)
    clock.advance(60)
    visitor = succeeded(pool.acquire()).container_id
    [replacement] = docker.held_calls("launch")
    replacement.succeed()
    clock.advance(2.0)
    [waiting] = servers.waiting()
    servers.answer(waiting)
    clock.advance(300)
    assert pool.cull(visitor, "idle")
    clock.advance(10)
    assert pool.drain() == 2
    clock.advance(5)
    for refill in docker.held_calls("launch"):
        refill.succeed()
    servers.answer(servers.waiting()[0])  # one refill is ready, the other still booting
    pool.stopService()
    observer.close()

    records = load(path)
    assert sorted(report.boot_times(records)) == pytest.approx([1.5, 1.5, 2.0, 5.0])
    assert report.pool_waits(records) == pytest.approx([60.0])
    assert report.session_lengths(records) == pytest.approx([302.0])  # 2 s + 300 s
    assert report.idle_before_cull(records) == []
    assert report.boot_failures(records) == Counter({"FakeDockerError: no such image": 1})
    assert report.cull_reasons(records) == Counter({"idle": 1, "drained": 2, "stopping": 2})
    times, counts = report.state_timeline(records)
    assert all(counts[state][-1] == 0 for state in report.LIVE_STATES)


def r(container, frm, to, input, time, seconds_in_previous, cause=None) -> dict:
    return {"container": container, "from": frm, "to": to, "input": input, "time": time,
            "seconds_in_previous": seconds_in_previous, "cause": cause}


def test_timeline_of_two_containers():
    records = [
        r("a", "requested", "booting", "boot", 10.0, 0.0),
        r("b", "requested", "booting", "boot", 10.0, 0.0),
        r("a", "booting", "pooled", "ready", 11.0, 1.0),
        r("a", "pooled", "assigned", "assign", 15.0, 4.0),
        r("b", "booting", "booting", "bootFailed", 40.0, 30.0, "not ready within 30s"),
        r("b", "booting", "culled", "cull", 40.0, 30.0, "gave up after 1 boot attempts: ..."),
        r("a", "assigned", "culled", "cull", 50.0, 35.0, "shutdown"),
    ]
    times, counts = report.state_timeline(records)
    assert times == [10.0, 11.0, 15.0, 40.0, 50.0]
    assert counts["booting"] == [2, 1, 1, 0, 0]
    assert counts["pooled"] == [0, 1, 0, 0, 0]
    assert counts["assigned"] == [0, 0, 1, 1, 0]


def test_summary_percentiles_interpolate_like_statistics_inclusive(run):
    s = report.summarize([4.0, 1.0, 3.0, 2.0, 10.0])
    assert (s.count, s.min, s.p50, s.max, s.mean) == (5, 1.0, 3.0, 10.0, 4.0)
    assert s.p90 == pytest.approx(7.6)  # 90% of the way from rank 4 to 5: 4 + 0.6 * 6
    _, records = run
    waits = report.pool_waits(records)
    deciles = statistics.quantiles(waits, n=10, method="inclusive")
    s = report.summarize(waits)
    assert (s.p50, s.p90) == pytest.approx((statistics.median(waits), deciles[8]))
    assert report.summarize([]) is None


def test_text_histogram_counts_every_value_once():
    values = [0.5, 1.0, 1.1, 1.2, 2.0, 9.5]
    lines = report.text_histogram(values, bins=3, width=10)
    assert [int(line.split()[3]) for line in lines] == [5, 0, 1]
    assert lines[0].endswith("#" * 10)


def test_report_on_the_sample_log_from_the_command_line():
    result = subprocess.run(
        [sys.executable, "-m", "tmpnb.lifecycle", "report", SAMPLE],
        capture_output=True, text=True, check=True, timeout=60,
    )
    records = load(SAMPLE)
    containers = len({rec["container"] for rec in records})
    out = result.stdout
    assert out.startswith(f"{containers} containers, {len(records)} transitions,")
    for heading in ("boot time", "pool wait", "session length", "idle before cull",
                    "culls by category", "boot failures by category"):
        assert heading in out
    sessions = report.summarize(report.session_lengths(records))
    assert f"session length{sessions.count:>11}" in out


def test_plots_are_pngs(tmp_path):
    pytest.importorskip("matplotlib", reason="the plots need the report extra: pip install 'tmpnb[report]'")
    written = report.plot(load(SAMPLE), str(tmp_path / "plots"))
    assert [os.path.basename(p) for p in written] == ["timeline.png", "histograms.png"]
    for path in written:
        with open(path, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_an_empty_log_says_so():
    assert report.format_report([]) == "no lifecycle events\n"


if __name__ == "__main__":
    with open(sys.argv[1], "w", encoding="utf-8") as f:
        simulate(f, seed=3, duration=2 * 3600, mean_visitor_gap=200.0, boot_failure_rate=0.2)
