"""The control plane at thousands of containers over a simulated engine, for
benchmarks/scale.py and tests/test_scale.py.

Real: the Pool and its machines, the waiting line and the web's HandOut, the heartbeat, the
route table (in-process proxy API), the lifecycle recorder feeding Metrics, /api/stats and
/metrics. Simulated: Docker (`ScaleDocker`: FakeDocker with its lookups indexed, every call
answered at once, on the next reactor turn, as one done in the Docker thread pool) and the notebook servers (`ScaleServers`: a readiness wait is answered
on the next reactor turn, a status round on the next turn with every server's answer).

`SliceClock` is the reactor's time: a Clock whose pending calls sit in a heap (Twisted's
Clock sorts its whole list at every callLater, which at 20,000 containers would be the
simulation's own cost) and which measures the thread CPU time of every call it runs: one
call is one uninterrupted stretch of the reactor, what a visitor's request waits behind.

    rig = build_scale(capacity=1010)  # 10 pooled besides
    rig.grow(1000)          # 1000 visitors handed a container each, through the line
    rig.clock.advance(...)  # time passes; rig.clock.longest, .long_slices: the calls it ran
"""

from __future__ import annotations

import heapq
import itertools
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.base import DelayedCall
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.task import Clock
from twisted.web.test.requesthelper import DummyRequest

from tests.builders import one_address_gate
from tests.fakedocker import FakeContainer, FakeDocker, FakeDockerError, FakeServers, iso
from tmpnb.clients.gate import Refusal
from tmpnb.config import ContainerSpec, PoolConfig
from tmpnb.dockerapi import CREATED_LABEL, ID_LABEL, INSTANCE_LABEL, TOKEN_LABEL, LaunchRequest, container_name
from tmpnb.lifecycle import LifecycleRecorder
from tmpnb.metrics import Metrics
from tmpnb.pool import Pool
from tmpnb.proxy.routes import RouteTable
from tmpnb.proxyapi import InProcessProxyAPI
from tmpnb.slices import Slicer
from tmpnb.statusround import StatusAnswers, StatusAsk
from tmpnb.waitingline import WaitingLine
from tmpnb.web.handout import HandOut


@dataclass
class Slice:
    """One call the clock ran: its thread CPU seconds and what it was."""

    cpu: float
    what: str


class SliceClock(Clock):
    """A Clock with a heap of pending calls, timing each call it runs (`slices`, `longest`)."""

    def __init__(self, start: float = 0.0) -> None:
        super().__init__()
        self.rightNow = start
        self._heap: list[tuple[float, int, DelayedCall]] = []
        self._order = itertools.count()
        self._pending = 0
        self._cancelled_entries = 0
        self.slices_run = 0
        self.cpu_run = 0.0
        self.longest = Slice(0.0, "")
        self.simulated = 0.0  # thread CPU the simulated engine spent inside the calls run
        self.noted = 0.001  # calls that took at least this long are kept in long_slices
        self.long_slices: list[Slice] = []

    @contextmanager
    def simulating(self) -> Iterator[None]:
        """Time spent inside is the simulated engine's (Docker, the servers): not counted in
        the slices, since the real ones spend it in a thread or another process."""
        began = time.thread_time()
        try:
            yield
        finally:
            self.simulated += time.thread_time() - began

    def callLater(self, delay: float, callable: Callable[..., object], *args: object, **kw: object) -> IDelayedCall:
        call = DelayedCall(self.rightNow + delay, callable, args, kw, self._cancelled, self._reset, self.seconds)
        heapq.heappush(self._heap, (call.getTime(), next(self._order), call))
        self._pending += 1
        return call

    def _cancelled(self, call: DelayedCall) -> None:
        self._pending -= 1  # its heap entry is skipped when it comes up, or dropped (advance)
        self._cancelled_entries += 1

    def _drop_cancelled(self) -> None:
        """Drop cancelled entries once they are most of the heap, between calls, as the reactor
        does (ReactorBase.runUntilCurrent): a boot's spent deadline is not kept for 30 s."""
        if self._cancelled_entries > 50 and self._cancelled_entries > len(self._heap) / 2:
            self._heap = [e for e in self._heap if not (e[2].called or e[2].cancelled) and e[2].getTime() == e[0]]
            heapq.heapify(self._heap)
            self._cancelled_entries = 0

    def _reset(self, call: DelayedCall) -> None:
        heapq.heappush(self._heap, (call.getTime(), next(self._order), call))

    def getDelayedCalls(self) -> Sequence[IDelayedCall]:
        return [c for _, _, c in self._heap if not (c.called or c.cancelled)]

    def pending(self) -> int:
        return self._pending

    def reset_slices(self) -> None:
        self.slices_run, self.cpu_run, self.longest, self.simulated = 0, 0.0, Slice(0.0, ""), 0.0
        self.long_slices = []

    def advance(self, amount: float) -> None:
        self.rightNow += amount
        self._drop_cancelled()
        heap = self._heap
        while heap and heap[0][0] <= self.rightNow:
            when, _, call = heapq.heappop(heap)
            if call.called or call.cancelled or call.getTime() != when:
                continue  # cancelled, or reset to another time (its new entry is in the heap)
            call.called = 1
            self._pending -= 1
            began, simulated = time.thread_time(), self.simulated
            call.func(*call.args, **call.kw)
            spent = time.thread_time() - began - (self.simulated - simulated)
            self.slices_run += 1
            self.cpu_run += spent
            if spent >= self.noted:
                self.long_slices.append(Slice(spent, _name(call.func)))
            if spent > self.longest.cpu:
                self.longest = Slice(spent, _name(call.func))

    def run_until_idle(self, horizon: float = 0.0) -> None:
        """Run every call due within `horizon` seconds from now, and those they schedule
        for now (e.g. callLater(0) chains)."""
        self.advance(horizon)
        while self._heap and self._heap[0][0] <= self.rightNow:
            self.advance(0)


def _name(func: Callable[..., object]) -> str:
    return getattr(func, "__qualname__", repr(func))


class ScaleDocker(FakeDocker):
    clock: SliceClock

    """FakeDocker whose per-container lookups are dict probes, not scans of every container."""

    def __init__(self, clock: SliceClock, spec: ContainerSpec) -> None:
        super().__init__(clock, spec)
        self._by_name: dict[str, str] = {}  # container name → docker id
        self._by_container: dict[str, FakeContainer] = {}  # tmpnb id → ours

    def _create(self, request: LaunchRequest) -> str:
        # FakeDocker._create's, with the name conflict found by a probe instead of a scan.
        name = container_name(request.spec.instance, request.container_id)
        if self._by_name.get(name) in self.containers:
            raise FakeDockerError(f"Conflict: the container name {name!r} is already in use")
        docker_id = f"{next(self._ids):064x}"
        labels = {
            INSTANCE_LABEL: request.spec.instance,
            ID_LABEL: request.container_id,
            TOKEN_LABEL: request.token,
            CREATED_LABEL: repr(self.clock.seconds()),
        }
        container = self.containers[docker_id] = FakeContainer(docker_id, name, labels, request.socket_dir)
        self.socket_dirs.add(request.socket_dir)
        self._by_name[name] = docker_id
        if request.spec.instance == self.spec.instance:
            self._by_container[request.container_id] = container
        self._emit(request.container_id, "start", request.spec.instance)
        return docker_id

    def _find(self, ref: str) -> FakeContainer | None:
        found = self.containers.get(ref)
        if found is None:
            docker_id = self._by_name.get(ref)
            found = None if docker_id is None else self.containers.get(docker_id)
        return found

    def _remove(self, ref: str, container_id: str | None) -> None:
        found = self._find(ref)
        super()._remove(ref, container_id)
        if found is not None and found.docker_id not in self.containers:
            self._by_name.pop(found.name, None)
            if self._by_container.get(found.container_id) is found:
                del self._by_container[found.container_id]

    def _call(self, operation: str, args: tuple[Any, ...], perform: Callable[[], Any]) -> Deferred[Any]:
        # Every call answers at once, on the next reactor turn, as one finished in the Docker
        # thread pool does; the engine's own work is the simulation's. No call is recorded
        # (FakeDocker's `calls` and `answered` would grow with every container).
        d: Deferred[Any] = Deferred()

        def answer() -> None:
            try:
                with self.clock.simulating():
                    result = perform()
            except Exception as e:
                d.errback(e)
            else:
                d.callback(result)

        self.clock.callLater(0, answer)
        return d

    def running_one(self, container_id: str) -> FakeContainer | None:
        found = self._by_container.get(container_id)
        if found is None or not found.running or found.docker_id not in self.containers:
            return None
        return found


class ScaleServers(FakeServers):
    """Notebook servers that answer at once (on the next reactor turn), as a running server
    with the right token would."""

    docker: ScaleDocker

    def __init__(self, docker: ScaleDocker) -> None:
        super().__init__(docker)
        self.readiness_waits = 0
        self.status_rounds = 0
        self.asked = 0  # servers asked for their status, every round's

    def _status(self, container_id: str, token: str) -> dict[str, Any] | Exception:
        running = self.docker.running_one(container_id)
        if running is None:
            return ConnectionRefusedError(container_id)
        if running.labels[TOKEN_LABEL] != token:
            return PermissionError("HTTP 403")
        started = float(running.labels[CREATED_LABEL])
        when = self.last_activity.get(container_id, started)
        return {"started": iso(started), "last_activity": iso(when), "connections": 0, "kernels": 0}

    def wait_ready(
        self, reactor: Any, socket_path: str, base_path: str, token: str, timeout: float, interval: float
    ) -> Deferred[dict]:
        self.readiness_waits += 1
        container_id = base_path.strip("/").split("/")[-1]
        d: Deferred[dict] = Deferred()

        def answer() -> None:
            if d.called:
                return  # cancelled meanwhile
            with self.docker.clock.simulating():
                status = self._status(container_id, token)
            if isinstance(status, Exception):
                d.errback(status)
            else:
                d.callback(status)

        reactor.callLater(0, answer)
        return d

    def ask_statuses(self, asks: Sequence[StatusAsk]) -> Deferred[StatusAnswers]:
        self.status_rounds += 1
        self.asked += len(asks)
        d: Deferred[StatusAnswers] = Deferred()
        asks = list(asks)

        def answer() -> None:
            with self.docker.clock.simulating():
                answers = {ask.key: self._status(ask.key, ask.token) for ask in asks}
            d.callback(answers)

        self.docker.clock.callLater(0, answer)
        return d



@dataclass
class ScaleRig:
    clock: SliceClock
    spec: ContainerSpec
    config: PoolConfig
    docker: ScaleDocker
    servers: ScaleServers
    routes: RouteTable
    metrics: Metrics
    pool: Pool
    line: WaitingLine
    handout: HandOut
    handed: list[str] = field(default_factory=list)  # container ids handed out, in order
    urls: dict[str, str] = field(default_factory=dict)  # container id → the visitor's URL

    def turn(self) -> None:
        """Everything due now runs (one reactor turn and the turns it schedules at once)."""
        self.clock.run_until_idle()

    def hand_out(self) -> str:
        """One visitor takes a container through the waiting line and claims its URL (the
        web's path for a pooled container); returns the container id."""
        visitor = DummyRequest([b""])
        visitor.client = IPv4Address("TCP", "127.0.0.2", 40000)
        ticket = self.handout.take(visitor, "", join=True)
        assert ticket is not None and not isinstance(ticket, Refusal), f"no vacancy: {ticket}"
        if ticket.state != "ready":
            self.turn()
        assert ticket.state == "ready", ticket.state
        url = self.handout.url(ticket)
        container_id = url.split("/")[2]
        self.handed.append(container_id)
        self.urls[container_id] = url
        return container_id

    def grow(self, tracked: int) -> None:
        """Hand out containers until `tracked` are handed out (the pool's refill keeps booting
        replacements, each on its own reactor turns)."""
        while len(self.handed) < tracked:
            self.hand_out()
            self.turn()

    def handed_out_now(self) -> int:
        states = self.pool.stats()["states"]
        return states.get("assigned", 0) + states.get("idle", 0)


def build_scale(
    capacity: int,
    pool_size: int = 10,
    cull_period: float = 60.0,
    cull_timeout: float = 600.0,
    start: float = 1_800_000_000.0,
) -> ScaleRig:
    """The real pool, line, heartbeat, routes and metrics over the simulated engine, started
    and filled (pool_size containers pooled)."""
    clock = SliceClock(start)
    spec = ContainerSpec(instance="scale", socket_root="/tmp/tnb-scale")
    config = PoolConfig(
        pool_size=pool_size, capacity=capacity, max_booting=pool_size, refill_delay=0.0,
        cull_period=cull_period, cull_timeout=cull_timeout, cull_max=10 * cull_timeout,
    )
    docker = ScaleDocker(clock, spec)
    servers = ScaleServers(docker)
    routes = RouteTable(clock)
    metrics = Metrics(clock)
    recorder = LifecycleRecorder(records=(metrics.record,))
    pool = Pool(
        clock, docker, servers.wait_ready, InProcessProxyAPI(routes, Slicer(clock)), spec, config,
        on_transition=recorder, ask_statuses=servers.ask_statuses, slicer=Slicer(clock),
    )
    metrics.watch_pool(pool)
    line = WaitingLine(clock, pool, max_waiting=100, records=(), on_turned_away=metrics.no_vacancy.inc)
    line.follow(pool)
    # Every simulated visitor comes from one address: the gate lets it have the whole capacity,
    # and its cost per hand-out is part of the figure.
    handout = HandOut(line, use_tokens=True, gate=one_address_gate(clock, capacity))
    pool.startService()
    clock.run_until_idle()
    return ScaleRig(clock, spec, config, docker, servers, routes, metrics, pool, line, handout)
