"""The pool: owns one container machine (tmpnb/states.py) per container, keeps --pool-size of
them booted, hands them out without waiting on Docker, and refills within --capacity.

The pool never reads a machine's state: one index (tmpnb/census.py), fed by the transitions
each machine reports, answers how many are in which state; `on_gave_up` says when a machine
gave up booting and why (typed: was Docker away?); `on_removed` when its container is gone. Capacity
counts every machine until then, booting and culled-but-still-removing ones included, and
containers whose removal gave up until the heartbeat sees them gone.

Every --cull-period seconds the heartbeat (tmpnb/heartbeat.py; `sweep`, never overlapping)
reconciles with Docker and the proxy and culls idle, too-old and dead containers. At start,
an earlier run's containers are adopted or removed (tmpnb/adoption.py).

The pool calls nobody above it: the waiting line takes from it (`acquire`, `room`, `demand`)
and subscribes to what it publishes (`when_pooled`, `add_stats`).

Flavors (tmpnb/flavors.py): each machine is of one flavor (its image, its label), and each
flavor has its own pool size, refill and give-up pause, all inside the one capacity. Capacity
a line needs goes to the oldest waiter across flavors (see `fill`); a flavor's spare containers
(booted or booting for nobody) are culled when another flavor's visitor waits and the capacity
is full: a visitor waiting counts for more than a spare. A node without --flavor has the one
flavor `default` and works as it always did.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any, Protocol

from twisted.application.service import Service
from twisted.internet.defer import Deferred, gatherResults, succeed
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from tmpnb import ids
from tmpnb.servertokens import ServerTokens
from tmpnb.adoption import Takeover, keep_activity_of
from tmpnb.assignments import AssignmentMarks, MarkedRemovals
from tmpnb.census import Census
from tmpnb.config import ContainerSpec, PoolConfig
from tmpnb.flavors import Flavors
from tmpnb.heartbeat import HANDED_OUT, AskStatuses, Heartbeat, HeartbeatDocker, HeartbeatRoutes
from tmpnb.slices import Slicer
from tmpnb.statusround import StatusRounds
from tmpnb.states import (
    Assignment,
    ContainerCore,
    ContainerInputs,
    GaveUp,
    TransitionEvent,
    backoff_delay,
    new_machine,
)

__all__ = ["Assignment", "Pool"]

log = Logger()

# Docker event actions that mean the container is no longer serving.
DEATHS = frozenset({"die", "oom", "destroy"})
# States in which a machine counts towards the pool size: booted or on its way.
STOCK = ("requested", "booting", "pooled")


class PoolDocker(HeartbeatDocker, Protocol):
    """The part of tmpnb.dockerapi.DockerAPI the pool uses: the machines' and the heartbeat's."""

    def watch(self, on_event: Callable[[str, str], None]) -> None: ...


# tmpnb.readiness.wait_ready(reactor, socket_path, base_path, token, timeout, interval)
WaitReady = Callable[[Any, str, str, str, float, float], "Deferred[dict]"]

# A burst of hand-outs postpones its replacements by --refill-delay after each hand-out, but
# a steady stream of visitors no longer than this many delays.
REFILL_POSTPONE_MAX = 4


class Pool(Service):
    """Keeps `config.pool_size` containers ready, at most `config.capacity` in all."""

    def __init__(
        self,
        reactor: Any,
        docker: PoolDocker,
        wait_ready: WaitReady,
        proxy: HeartbeatRoutes,
        spec: ContainerSpec,
        config: PoolConfig,
        on_transition: Callable[[TransitionEvent], None] | None = None,
        new_id: Callable[[int], str] = ids.new_container_id,
        token_for: Callable[[str], str] | None = None,
        ask_statuses: AskStatuses | None = None,
        max_booting: int | None = None,
        adopt: bool = False,
        keep_assigned: bool = False,
        assignment_marks: AssignmentMarks | None = None,
        slicer: Slicer | None = None,
        flavors: Flavors | None = None,
        flavor_wait_ready: Mapping[str, WaitReady] | None = None,
    ) -> None:
        self._reactor = reactor  # a Clock in tests: readiness is the only user of more
        # Without flavors: the one flavor `default`, of spec.image and config.pool_size.
        self.flavors = Flavors.single(spec.image, config.pool_size) if flavors is None else flavors
        self._specs = {f.name: replace(spec, image=f.image, flavor=f.name) for f in self.flavors}
        spec = self._specs[self.flavors.default]
        # With marks, every assignment is recorded on the host and the record goes with the
        # container (tmpnb/assignments.py): adoption then never pools a visitor's container.
        self._marks = assignment_marks
        self._docker: PoolDocker = docker if assignment_marks is None else MarkedRemovals(docker, assignment_marks)
        self._wait_ready = wait_ready
        # A flavor's own readiness check (tap.py: one that warms its landing page), else wait_ready.
        self._flavor_wait_ready = dict(flavor_wait_ready or {})
        self._proxy = proxy
        self.spec = spec
        self.config = config
        self._on_transition = on_transition
        self._new_id = new_id
        # A server's token is derived from its id (tmpnb/servertokens.py), never stored in
        # Docker: after a restart the same secret gives the same tokens.
        self.token_for = ServerTokens.ephemeral().token_for if token_for is None else token_for
        self._ask_statuses = StatusRounds(reactor).ask if ask_statuses is None else ask_statuses
        self._max_booting = config.max_booting if max_booting is None else max_booting
        self._keep_assigned = keep_assigned  # on stop, leave the visitors' containers running
        self._waiting: list[str] = []  # requested machines, in the order they were made
        self._adoptable: dict[str, str] = {}  # waiting ones that have a container: docker id
        self._machines: dict[str, ContainerInputs] = {}
        self._tokens: dict[str, str] = {}
        self._census = Census()  # which machine is in which state, as they reported it
        self._flavor_census = {name: Census() for name in self._specs}  # the same, per flavor
        self._flavor_of: dict[str, str] = {}
        self._flavor_demand = {name: 0 for name in self._specs}  # visitors waiting, per flavor
        self._flavor_joined: dict[str, Sequence[float]] = {name: () for name in self._specs}
        self._reclaiming: set[str] = set()  # spares culled to make room for another flavor's visitor
        self._removals: dict[str, Deferred[None]] = {}
        self._cleaned = False  # leftovers of an earlier run removed: filling may begin
        self._starting: Deferred[None] | None = None
        self._takeover = Takeover(
            reactor, self, self._docker, proxy, self._ask_statuses, spec, config, assignment_marks, adopt
        )
        self._watching = False
        # After machines give up booting (a broken image, Docker failing), refilling waits,
        # so a broken setup does not boot in a tight loop.
        # Per flavor: a broken image pauses its own flavor only.
        self._give_ups = {name: 0 for name in self._specs}
        self._pauses: dict[str, IDelayedCall] = {}
        self._paused_for_docker = {name: False for name in self._specs}  # the give-ups were Docker being away: lift on its answer
        # Containers whose removal gave up (Docker away): they may still exist, so they count
        # against the capacity until a heartbeat sees them gone or removes them.
        self._left_behind: set[str] = set()
        # A node drain (admin POST /api/drain): no hand-outs, no refill; visitors keep theirs.
        self._draining = False
        self._heartbeat = Heartbeat(
            reactor, self, self._docker, proxy, self._ask_statuses, spec, config, slicer
        )
        self._heartbeats = LoopingCall(self.sweep)
        self._heartbeats.clock = reactor
        # Published to whoever subscribed (the waiting line): nothing here knows who they are.
        self._pooled_listeners: list[Callable[[], None]] = []
        self._stats_parts: dict[str, Callable[[], Any]] = {}
        self._demand = 0  # visitors waiting, booted for beyond the pool size
        # Refill yields to a burst of hand-outs: while this call is pending, only the
        # waiting line's visitors are booted for (see acquire).
        self._refill_later: IDelayedCall | None = None
        self._postponed_since = 0.0
        # The hooks every machine's core holds, bound once: `self._transition` makes a new
        # bound-method object at each use, four per container that the garbage collector
        # then walks at every full collection (benchmarks/scale.py).
        self._hooks = (self._ready_check, self._transition, self._removed, self._gave_up)

    # -- the service

    def startService(self) -> None:
        super().startService()
        if not self._watching:
            self._watching = True
            self._docker.watch(self._docker_event)
        self._starting = Deferred.fromCoroutine(self._take_over())
        self._starting.addErrback(lambda f: log.failure("starting the pool", f))
        # LoopingCall waits for each sweep's Deferred: sweeps never overlap.
        self._heartbeats.start(self.config.cull_period, now=False).addErrback(
            lambda f: log.failure("the heartbeat stopped", f)
        )

    async def _take_over(self) -> None:
        """An earlier run's containers: adopted or removed (tmpnb/adoption.py); then fill."""
        if await self._takeover.run():
            self._cleaned = True
            self.fill()

    def stopService(self) -> Deferred[None]:
        """Cull every container (with `keep_assigned`: all but the visitors'); fires when all
        of them are removed."""
        super().stopService()
        if self._heartbeats.running:
            self._heartbeats.stop()
        for pause in self._pauses.values():
            if pause.active():
                pause.cancel()
        if self._refill_later is not None and self._refill_later.active():
            self._refill_later.cancel()
        self._takeover.cancel()
        waits: list[Deferred[Any]] = [] if self._starting is None else [self._starting]
        kept: dict[str, dict[str, Any]] = {}
        for container_id, machine in list(self._machines.items()):
            if container_id not in self._machines:  # a cull before this one removed it at once
                continue
            if self._keep_assigned and self._census.is_in(container_id, HANDED_OUT):
                # Left running, route and all, for the next start to adopt; this pool lets
                # go of it, so nothing it hears from now on can cull it.
                kept[container_id] = machine.describe()
                self._forget(container_id)
                continue
            waits.append(self._removals[container_id])
            machine.cull("stopping")
        waits.append(Deferred.fromCoroutine(keep_activity_of(self._marks, self._proxy, kept)))
        done: Deferred[Any] = gatherResults(waits, consumeErrors=True)
        done.addErrback(lambda f: log.failure("stopping the pool", f))
        return done.addCallback(lambda _: None)

    # -- what the orchestrator uses

    def acquire(self, flavor: str | None = None) -> Deferred[Assignment] | None:
        """A pooled container of `flavor` (None: the default one) for one visitor, or None when
        none is ready ("full")."""
        name = self.flavors.default if flavor is None else flavor
        oldest = self._flavor_census[name].oldest("pooled")
        if not self.running or self._draining or oldest is None:
            return None
        if self._flavor_demand[name]:
            # It goes to the first of the flavor's line, who needs no boot of their own any
            # more: the fill below must not boot (or cull another flavor's spare) for them.
            self._flavor_demand[name] -= 1
            self._flavor_joined[name] = self._flavor_joined[name][1:]
            self._demand -= 1
        assignment = self._machines[oldest].assign()
        self._postpone_refill()
        self.fill()
        return assignment

    def when_pooled(self, listener: Callable[[], None]) -> None:
        """Call `listener` each time a container is pooled (on the next turn: not from inside
        the machine's transition)."""
        self._pooled_listeners.append(listener)

    def add_stats(self, key: str, part: Callable[[], Any]) -> None:
        """stats()[key] is `part()` from now on (the waiting line's "waiting")."""
        self._stats_parts[key] = part

    def demand(self, waiting: int, flavor: str | None = None, joined: Sequence[float] = ()) -> None:
        """`waiting` visitors wait for a container of `flavor` (None: the default one): boot
        for them beyond the pool size, now, whatever the refill does. `joined`: when each of
        them joined, first first (capacity goes to the oldest waiter across flavors)."""
        name = self.flavors.default if flavor is None else flavor
        self._flavor_demand[name] = waiting
        self._flavor_joined[name] = joined
        self._demand = sum(self._flavor_demand.values())
        self.fill()

    def pooled(self, flavor: str | None = None) -> int:
        """Containers (of `flavor`; None: of any) booted and waiting for a visitor now."""
        census = self._census if flavor is None else self._flavor_census[flavor]
        return census.count("pooled")

    def room(self, flavor: str | None = None) -> int:
        """How many more visitors can get a container without a cull of a visitor's: those
        booted or on their way, and the room left within the capacity. 0 while the node
        drains. With `flavor`: for that flavor's visitors, whom the other flavors' spares
        make room for too (culled for them), less the other flavors' waiting visitors."""
        if self._draining:
            return 0
        room = self._stock() + max(0, self.config.capacity - self._total())
        if flavor is None:
            return room
        return max(0, room - sum(n for name, n in self._flavor_demand.items() if name != flavor))

    def _postpone_refill(self) -> None:
        """Replacements for a burst of hand-outs start --refill-delay after its last one (at
        most REFILL_POSTPONE_MAX delays after its first): boots would take the CPU the
        visitors' first pages need."""
        delay = self.config.refill_delay
        if delay <= 0:
            return
        now = self._reactor.seconds()
        if self._refill_later is None or not self._refill_later.active():
            self._postponed_since = now
            self._refill_later = self._reactor.callLater(delay, self._refill_now)
            return
        until = min(now + delay, self._postponed_since + REFILL_POSTPONE_MAX * delay)
        self._refill_later.reset(max(0.0, until - now))

    def _refill_now(self) -> None:
        self._refill_later = None
        self.fill()

    def flavor_stats(self, name: str) -> dict[str, Any]:
        """One flavor's figures (its "waiting" and "room" are the waiting line's: add_stats)."""
        census = self._flavor_census[name]
        return {
            "image": self._specs[name].image,
            "pool_size": self.flavors.get(name).pool_size,  # type: ignore[union-attr]
            "available": census.count("pooled"),
            "total": sum(census.counts().values()),
            "states": census.counts(),
        }

    def stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = {
            "available": self._census.count("pooled"),
            "capacity": self.config.capacity,
            "pool_size": self.flavors.pool_size(),
            "total": self._total(),
            "left_behind": len(self._left_behind),
            "states": self._census.counts(),
            "draining": self._draining,
        }
        for key, part in self._stats_parts.items():
            stats[key] = part()
        return stats

    def containers(self) -> list[dict[str, Any]]:
        return [machine.describe() for machine in self._machines.values()]

    def cull(self, container_id: str, reason: str) -> bool:
        machine = self._machines.get(container_id)
        if machine is None:
            return False
        machine.cull(reason)
        return True

    def drain(self) -> int:
        """Cull every pooled container (e.g. after a new image); refilling follows."""
        drained = self._census.ids_in(["pooled"])
        for container_id in drained:
            self._machines[container_id].cull("drained")
        return len(drained)

    def set_draining(self, draining: bool) -> None:
        """Drain the node (not to be confused with drain(), which empties the pool): while
        draining it hands out nothing and boots nothing; assigned containers live on until
        culled, pooled ones wait for the drain to end."""
        if draining != self._draining:
            log.info("node draining: {draining}", draining=draining)
        self._draining = draining
        self.fill()

    # -- keeping the pool full

    def fill(self) -> None:
        """Start machines until each flavor's pool_size, and one for each visitor in the
        waiting line, are booted or booting, within capacity. While refill yields to a burst
        of hand-outs (_postpone_refill), only the line is booted for.

        The line first: its visitors not yet covered by a container of their flavor booted
        or on its way get the free capacity oldest first, across flavors; when none is free,
        other flavors' spares are culled for them (their removal frees it). Then each
        flavor's pool size, one container per flavor in turn, so no flavor's refill takes
        all the free capacity before another's."""
        if not (self.running and self._cleaned) or self._draining:
            return
        self._boot_for_lines()
        if self._refill_later is not None and self._refill_later.active():
            return
        wanted = {f.name: f.pool_size + self._flavor_demand[f.name] for f in self.flavors}
        progressed = True
        while progressed and self._total() < self.config.capacity:
            progressed = False
            for name, want in wanted.items():
                if self._paused(name) or self._flavor_stock(name) >= want:
                    continue
                if self._total() >= self.config.capacity:
                    break
                self._start_machine(name)
                progressed = True

    def _boot_for_lines(self) -> None:
        uncovered = self._uncovered()
        if not uncovered:
            return
        started = 0
        for name in uncovered:
            if self._total() >= self.config.capacity:
                break
            self._start_machine(name)
            started += 1
        # Still waiting for capacity: make it of other flavors' spares, once per visitor.
        for name in uncovered[started + len(self._reclaiming):]:
            if not self._reclaim_for(name):
                break

    def _uncovered(self) -> list[str]:
        """The flavor of each waiting visitor no container is booted or booting for, oldest
        waiter first (one flavor's in its own line's order); paused flavors left out."""
        runs = []
        for order, f in enumerate(self.flavors):
            waiting = self._flavor_demand[f.name]
            stock = self._flavor_stock(f.name)
            if waiting <= stock or self._paused(f.name):
                continue
            joined = self._flavor_joined[f.name]
            times = [joined[i] if i < len(joined) else 0.0 for i in range(stock, waiting)]
            runs.append([(t, order, f.name) for t in times])
        return [name for _, _, name in heapq.merge(*runs)]

    def _reclaim_for(self, flavor: str) -> bool:
        """Cull one spare of another flavor (pooled first, then one not yet booted, then one
        booting), for a visitor of `flavor`; False if there is none."""
        spares = [(self._flavor_stock(g) - self._flavor_demand[g], g) for g in self._specs if g != flavor]
        spare, donor = max(spares, default=(0, ""))
        if spare <= 0:
            return False
        census = self._flavor_census[donor]
        for state in ("pooled", "requested", "booting"):
            for container_id in census.ids_in([state]):
                if container_id not in self._reclaiming:
                    log.info("culling spare {container} of flavor {donor}: a visitor of {flavor} waits",
                             container=container_id, donor=donor, flavor=flavor)
                    self._reclaiming.add(container_id)
                    self._machines[container_id].cull("room for another flavor")
                    return True
        return False

    def _paused(self, flavor: str) -> bool:
        pause = self._pauses.get(flavor)
        return pause is not None and pause.active()

    def _flavor_stock(self, flavor: str) -> int:
        return self._flavor_census[flavor].count(*STOCK)

    def _start_machine(self, flavor: str | None = None) -> None:
        container_id = self._new_id(self.config.user_length)
        while container_id in self._machines:
            container_id = self._new_id(self.config.user_length)
        self.new_machine(container_id, self.token_for(container_id), flavor=flavor)
        self._waiting.append(container_id)
        self._boot_waiting()

    def new_machine(self, container_id: str, token: str, docker_id: str | None = None,
                    flavor: str | None = None) -> ContainerInputs:
        """A machine of `flavor` (None: the default one)."""
        flavor = self.flavors.default if flavor is None else flavor
        core = ContainerCore(
            container_id=container_id,
            token=token,
            # An adopted container exists already: culled before it is checked, it is removed.
            docker_id=docker_id,
            may_exist=docker_id is not None,
            spec=self._specs[flavor],
            config=self.config,
            clock=self._reactor,
            docker=self._docker,
            wait_ready=self._hooks[0],
            proxy=self._proxy,
            on_transition=self._hooks[1],
            on_removed=self._hooks[2],
            on_gave_up=self._hooks[3],
        )
        machine = new_machine(core)
        self._machines[container_id] = machine
        self._tokens[container_id] = core.token
        self._census.moved(container_id, "requested")
        self._flavor_of[container_id] = flavor
        self._flavor_census[flavor].moved(container_id, "requested")
        self._removals[container_id] = Deferred()
        return machine

    # -- what a takeover (tmpnb/adoption.py) needs of the pool

    def room_for(self, pooled: bool, flavor: str | None = None) -> bool:
        fits = self._total() < self.config.capacity
        if not pooled or not fits:
            return fits
        name = self.flavors.default if flavor is None else flavor
        return self._flavor_stock(name) < self.flavors.get(name).pool_size  # type: ignore[union-attr]

    def flavor_named(self, name: str) -> str | None:
        """`name` if the node serves that flavor; None if it has no such flavor (any more)."""
        return name if name in self._specs else None

    def queue_unused(self, container_id: str, docker_id: str) -> None:
        self._adoptable[container_id] = docker_id
        self._waiting.append(container_id)

    def boot_waiting(self) -> None:
        self._boot_waiting()

    def leave_behind(self, container_id: str) -> None:
        self._left_behind.add(container_id)

    def _stock(self) -> int:
        return self._census.count(*STOCK)

    def _total(self) -> int:
        """Containers that exist or may: every machine's, and those left behind."""
        return len(self._machines) + len(self._left_behind)

    def _boot_waiting(self) -> None:
        """Boot requested machines, oldest first, while fewer than max_booting are booting."""
        # A stopping pool boots nothing more: a slot freed by a cull stays free.
        while self.running and self._waiting and self._census.count("booting") < self._max_booting:
            container_id = self._waiting.pop(0)
            docker_id = self._adoptable.pop(container_id, None)
            if not self._census.is_in(container_id, ("requested",)):
                continue
            if docker_id is None:
                self._machines[container_id].boot()
            else:  # an earlier run's unused container: only its readiness check is left
                self._machines[container_id].launched(docker_id)

    def _ready_check(self, socket_path: str, base_path: str, token: str) -> Deferred[dict]:
        wait_ready = self._wait_ready
        if self._flavor_wait_ready:  # base_path is "/user/<id>/"
            flavor = self._flavor_of.get(base_path.rstrip("/").rsplit("/", 1)[-1], "")
            wait_ready = self._flavor_wait_ready.get(flavor, wait_ready)
        return wait_ready(
            self._reactor,
            socket_path,
            base_path,
            token,
            self.config.boot_timeout,
            self.config.ready_poll_interval,
        )

    # -- what the machines report

    def _transition(self, event: TransitionEvent) -> None:
        container_id = event.container
        self._census.moved(container_id, event.to_state)
        flavor = self._flavor_of.get(container_id, self.flavors.default)
        self._flavor_census[flavor].moved(container_id, event.to_state)
        if event.to_state == "pooled":
            self._give_ups[flavor] = 0
            self._paused_for_docker[flavor] = False
            for listener in self._pooled_listeners:
                self._reactor.callLater(0, listener)
        if event.input == "assign" and self._marks is not None:
            # Before the visitor gets the URL (the route is added after this report).
            self._marks.mark(container_id, event.time)
        if self._on_transition is not None:
            try:
                self._on_transition(event)
            except Exception:
                log.failure("on_transition hook failed for {container}", container=container_id)
        if event.from_state == "booting" and event.to_state != "booting":
            self._boot_waiting()
        if event.to_state == "culled":
            self.fill()

    def _gave_up(self, gave_up: GaveUp) -> None:
        """A machine gave up booting (it culls itself next): refilling its flavor pauses."""
        if not self.running:
            return
        flavor = self._flavor_of.get(gave_up.container_id, self.flavors.default)
        docker_away = gave_up.last_error.docker_away
        self._give_ups[flavor] += 1
        count = self._give_ups[flavor]
        # Lifted early only if every give-up of this pause was Docker being away.
        self._paused_for_docker[flavor] = docker_away and (self._paused_for_docker[flavor] or count == 1)
        delay = backoff_delay(self.config, count)
        log.warn(
            "{count} containers of flavor {flavor} in a row failed to boot; refilling in {delay:g}s",
            count=count,
            flavor=flavor,
            delay=delay,
        )
        pause = self._pauses.get(flavor)
        if pause is not None and pause.active():
            pause.cancel()
        self._pauses[flavor] = self._reactor.callLater(delay, self.fill)

    def docker_answered(self) -> None:
        """Docker answered a listing: a pause caused only by Docker being away ends now, so
        the pool refills as soon as Docker is back rather than after the longest backoff."""
        lifted = False
        for flavor, pause in list(self._pauses.items()):
            if self._paused_for_docker[flavor] and pause.active():
                pause.cancel()
                self._give_ups[flavor] = 0
                self._paused_for_docker[flavor] = False
                lifted = True
        if lifted:
            log.info("Docker answers again; refilling")
            self.fill()

    def _removed(self, container_id: str, left_behind: bool) -> None:
        if left_behind:
            self._left_behind.add(container_id)
        self._forget(container_id).callback(None)
        self.fill()

    def _forget(self, container_id: str) -> Deferred[None]:
        """Drop a machine from every record; returns its removal Deferred (not fired)."""
        del self._machines[container_id]
        self._census.forget(container_id)
        self._flavor_census[self._flavor_of.pop(container_id)].forget(container_id)
        self._reclaiming.discard(container_id)
        del self._tokens[container_id]
        self._adoptable.pop(container_id, None)
        if container_id in self._waiting:  # culled before it could boot
            self._waiting.remove(container_id)
        return self._removals.pop(container_id)

    def _docker_event(self, container_id: str, action: str) -> None:
        machine = self._machines.get(container_id)
        if machine is not None and action in DEATHS:
            machine.exited(action)

    # -- the heartbeat (tmpnb/heartbeat.py), and what it needs of the pool (its Flock)

    def sweep(self) -> Deferred[None]:
        """One heartbeat: reconcile with Docker and the proxy, judge every handed-out container."""
        if not self._cleaned:
            # The start has not seen this instance's containers yet: an unseen one is not
            # an orphan, and its route is not stray.
            return succeed(None)
        return self._heartbeat.sweep()

    def saw_activity(self, container_id: str, when: float) -> None:
        if self._marks is not None:
            self._marks.saw_activity(container_id, when)

    def ids_in(self, states: frozenset[str]) -> list[str]:
        return self._census.ids_in(states)

    def machine(self, container_id: str) -> ContainerInputs | None:
        return self._machines.get(container_id)

    def token(self, container_id: str) -> str:
        return self._tokens.get(container_id, "")

    def owns(self, container_id: str) -> bool:
        return container_id in self._machines or container_id in self._left_behind

    def left_behind(self) -> set[str]:
        return set(self._left_behind)

    def gone(self, container_ids: Iterable[str]) -> None:
        gone = self._left_behind.intersection(container_ids)
        if gone:
            self._left_behind -= gone
            self.fill()
