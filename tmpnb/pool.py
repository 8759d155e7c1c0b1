"""The pool: owns one container machine (tmpnb/states.py) per container, keeps --pool-size of
them booted, hands them out without waiting on Docker, and refills within --capacity.

The pool never reads a machine's state: it keeps its own counts from the transitions each
machine reports, and learns from `on_removed` when a machine's container is gone. Capacity
counts every machine until then, booting and culled-but-still-removing ones included, and
containers whose removal gave up until the heartbeat sees them gone.

Every --cull-period seconds the heartbeat (tmpnb/heartbeat.py; `sweep`, never overlapping)
reconciles with Docker and the proxy and culls idle, too-old and dead containers. At start,
an earlier run's containers are adopted or removed (tmpnb/judging.py sorts them).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from twisted.application.service import Service
from twisted.internet.defer import (
    CancelledError,
    Deferred,
    gatherResults,
    maybeDeferred,
    succeed,
)
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.task import LoopingCall, deferLater
from twisted.logger import Logger
from twisted.python.failure import Failure

from tmpnb import ids
from tmpnb.assignments import AssignmentMarks, MarkedRemovals
from tmpnb.config import ContainerSpec, PoolConfig
from tmpnb.dockerapi import DockerTimeout, DockerUnavailable, container_name
from tmpnb.faults import log_fault
from tmpnb.heartbeat import (
    HANDED_OUT,
    AskStatuses,
    Heartbeat,
    HeartbeatDocker,
    HeartbeatRoutes,
    remove_stray_socket_dirs,
    server_statuses,
)
from tmpnb.judging import latest_activity, routes_by_container, sort_leftovers
from tmpnb.statusround import StatusRounds
from tmpnb.states import (
    Assignment,
    ContainerCore,
    ContainerInputs,
    TransitionEvent,
    backoff_delay,
    new_machine,
)

__all__ = ["Assignment", "Pool"]

log = Logger()

# Docker event actions that mean the container is no longer serving.
DEATHS = frozenset({"die", "oom", "destroy"})
# States in which a machine counts towards the pool size: booted or on its way.
STOCK = frozenset({"requested", "booting", "pooled"})
# Boot failures that say Docker itself is away, not that the image or the container is bad
# (tmpnb.states.failure_cause names the exception type first).
DOCKER_AWAY = tuple(f"{error.__name__}:" for error in (DockerUnavailable, DockerTimeout))


class PoolDocker(HeartbeatDocker, Protocol):
    """The part of tmpnb.dockerapi.DockerAPI the pool uses: the machines' and the heartbeat's."""

    def watch(self, on_event: Callable[[str, str], None]) -> None: ...


# tmpnb.readiness.wait_ready(reactor, socket_path, base_path, token, timeout, interval)
WaitReady = Callable[[Any, str, str, str, float, float], "Deferred[dict]"]

# A burst of hand-outs postpones its replacements by --refill-delay after each hand-out, but
# a steady stream of visitors no longer than this many delays.
REFILL_POSTPONE_MAX = 4


class Line(Protocol):
    """What the pool asks of the waiting line (tmpnb/waitingline.py)."""

    def waiting(self) -> int: ...

    def offer(self) -> None: ...

    def stats(self) -> dict[str, Any]: ...


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
        new_token: Callable[[], str] = ids.new_token,
        ask_statuses: AskStatuses | None = None,
        max_booting: int | None = None,
        adopt: bool = False,
        keep_assigned: bool = False,
        assignment_marks: AssignmentMarks | None = None,
    ) -> None:
        self._reactor = reactor  # a Clock in tests: readiness is the only user of more
        # With marks, every assignment is recorded on the host and the record goes with the
        # container (tmpnb/assignments.py): adoption then never pools a visitor's container.
        self._marks = assignment_marks
        self._docker: PoolDocker = docker if assignment_marks is None else MarkedRemovals(docker, assignment_marks)
        self._wait_ready = wait_ready
        self._proxy = proxy
        self.spec = spec
        self.config = config
        self._on_transition = on_transition
        self._new_id = new_id
        self._new_token = new_token
        self._ask_statuses = StatusRounds(reactor).ask if ask_statuses is None else ask_statuses
        self._max_booting = config.max_booting if max_booting is None else max_booting
        self._adopt = adopt  # take over an earlier run's containers instead of removing them
        self._keep_assigned = keep_assigned  # on stop, leave the visitors' containers running
        self._booting = 0
        self._waiting: list[str] = []  # requested machines, in the order they were made
        self._adoptable: dict[str, str] = {}  # waiting ones that have a container: docker id
        self._machines: dict[str, ContainerInputs] = {}
        self._tokens: dict[str, str] = {}
        self._states: dict[str, str] = {}  # as the machines reported them
        self._pooled: list[str] = []  # oldest first
        self._removals: dict[str, Deferred[None]] = {}
        self._cleaned = False  # leftovers of an earlier run removed: filling may begin
        self._starting: Deferred[None] | None = None
        self._listing: Deferred[Any] | None = None  # the start's listing, or its retry wait
        self._watching = False
        # After machines give up booting (a broken image, Docker failing), refilling waits,
        # so a broken setup does not boot in a tight loop.
        self._give_ups = 0
        self._pause: IDelayedCall | None = None
        self._paused_for_docker = False  # the give-ups were Docker being away: lift on its answer
        self._last_failed: dict[str, str] = {}  # machines whose latest report was a failed boot: cause
        self._in_stock = 0  # machines in a STOCK state: fill() runs on every transition
        # Containers whose removal gave up (Docker away): they may still exist, so they count
        # against the capacity until a heartbeat sees them gone or removes them.
        self._left_behind: set[str] = set()
        # A node drain (admin POST /api/drain): no hand-outs, no refill; visitors keep theirs.
        self._draining = False
        self._heartbeat = Heartbeat(
            reactor, self, self._docker, proxy, self._ask_statuses, spec, config
        )
        self._heartbeats = LoopingCall(self.sweep)
        self._heartbeats.clock = reactor
        self._line: Line | None = None
        # Refill yields to a burst of hand-outs: while this call is pending, only the
        # waiting line's visitors are booted for (see acquire).
        self._refill_later: IDelayedCall | None = None
        self._postponed_since = 0.0

    # -- the service

    def startService(self) -> None:
        super().startService()
        if not self._watching:
            self._watching = True
            self._docker.watch(self._docker_event)
        self._starting = Deferred.fromCoroutine(self._take_over_leftovers())
        self._starting.addErrback(lambda f: log.failure("starting the pool", f))
        # LoopingCall waits for each sweep's Deferred: sweeps never overlap.
        self._heartbeats.start(self.config.cull_period, now=False).addErrback(
            lambda f: log.failure("the heartbeat stopped", f)
        )

    async def _take_over_leftovers(self) -> None:
        """An earlier run's containers: adopted (with `adopt`) or removed; then fill."""
        leftovers = await self._list_leftovers()
        if leftovers is None:  # stopped before Docker ever answered
            return
        listed = {r.container_id for r in leftovers}
        if self._marks is not None:
            self._marks.forget_all_but(r.container_id for r in leftovers)
        leftovers = [r for r in leftovers if r.container_id not in self._machines]
        if self._adopt:
            leftovers, forgetting = await self._adopt_leftovers(leftovers)
        else:  # the routes of the containers about to be removed go too
            forgetting = self._forget_stale_routes(await self._our_routes(), leftovers, set())
        if leftovers:
            log.info(
                "removing {count} leftover containers of instance {instance}",
                count=len(leftovers),
                instance=self.spec.instance,
            )
        # All at once, not one after the other: a slow or hung Docker call in one must not
        # leave leftovers or directories that nobody owns and nobody is removing meanwhile.
        # A crashed run's stray directories are not among the listed containers' (listed).
        cleanups = [
            forgetting,
            Deferred.fromCoroutine(remove_stray_socket_dirs(self._docker, self, listed)),
            *(
                self._docker.remove(r.docker_id, r.container_id).addErrback(self._leftover_left_behind, r.container_id)
                for r in leftovers
            ),
        ]
        await gatherResults(cleanups, consumeErrors=True).addErrback(
            lambda f: log_fault(log, f, "removing leftover containers")
        )
        self._cleaned = True
        self.fill()

    def _leftover_left_behind(self, failure: Failure, container_id: str) -> None:
        """A leftover that could not be removed still counts against the capacity."""
        self._left_behind.add(container_id)
        log_fault(log, failure, "removing leftover container {container}", container=container_id)

    async def _list_leftovers(self) -> list[Any] | None:
        """This instance's containers, asked until Docker answers (it may be down or hung at
        start): filling before would boot beside containers we have not seen, and the heartbeat
        would take a visitor's container for an orphan. None if the pool stops first."""
        attempt = 0
        while self.running:
            try:
                return await self._cancellable(maybeDeferred(self._docker.list_ours))
            except CancelledError:
                return None
            except Exception as e:
                attempt += 1
                delay = backoff_delay(self.config, attempt)
                log.warn(
                    "cannot list the containers of instance {instance} ({cause}); retrying in {delay:g}s",
                    instance=self.spec.instance,
                    cause=repr(e),
                    delay=delay,
                )
            try:
                await self._cancellable(deferLater(self._reactor, delay))
            except CancelledError:
                return None
        return None

    async def _cancellable(self, d: Deferred[Any]) -> Any:
        """Await `d`, which stopService cancels (a stop must not wait for a hung dockerd)."""
        self._listing = d
        try:
            return await d
        finally:
            self._listing = None

    def stopService(self) -> Deferred[None]:
        """Cull every container (with `keep_assigned`: all but the visitors'); fires when all
        of them are removed."""
        super().stopService()
        if self._heartbeats.running:
            self._heartbeats.stop()
        if self._pause is not None and self._pause.active():
            self._pause.cancel()
        if self._refill_later is not None and self._refill_later.active():
            self._refill_later.cancel()
        if self._listing is not None:  # Docker never answered the start's listing: stop asking
            self._listing.cancel()
        waits: list[Deferred[Any]] = [] if self._starting is None else [self._starting]
        kept: dict[str, dict[str, Any]] = {}
        for container_id, machine in list(self._machines.items()):
            if container_id not in self._machines:  # a cull before this one removed it at once
                continue
            if self._keep_assigned and self._states[container_id] in HANDED_OUT:
                # Left running, route and all, for the next start to adopt; this pool lets
                # go of it, so nothing it hears from now on can cull it.
                kept[container_id] = machine.describe()
                self._forget(container_id)
                continue
            waits.append(self._removals[container_id])
            machine.cull("stopping")
        waits.append(Deferred.fromCoroutine(self._keep_activity_of(kept)))
        done: Deferred[Any] = gatherResults(waits, consumeErrors=True)
        done.addErrback(lambda f: log.failure("stopping the pool", f))
        return done.addCallback(lambda _: None)

    async def _keep_activity_of(self, kept: dict[str, dict[str, Any]]) -> None:
        """Record, for the next start, the visitors' activity that only the proxy saw since
        the last heartbeat: the embedded proxy forgets it with this process."""
        if self._marks is None or not kept:
            return
        try:
            routes_of = routes_by_container(await self._proxy.list_routes())
        except Exception:
            log_fault(log, Failure(), "listing the proxy's routes at stop")
            return
        for container_id, seen in kept.items():
            self._marks.saw_activity(container_id, latest_activity(seen, routes_of.get(container_id), None))

    # -- what the orchestrator uses

    def acquire(self) -> Deferred[Assignment] | None:
        """A pooled container for one visitor, or None when none is ready ("full")."""
        if not self.running or self._draining or not self._pooled:
            return None
        # The machine's transition takes it out of self._pooled.
        assignment = self._machines[self._pooled[0]].assign()
        self._postpone_refill()
        self.fill()
        return assignment

    def attach_line(self, line: Line) -> None:
        """Visitors waiting in `line` are booted for beyond the pool size, and each container
        pooled is offered to it (on the next turn: not from inside the machine's transition)."""
        self._line = line

    def room(self) -> int:
        """How many more visitors can get a container without a cull: those booted or on
        their way, and the room left within the capacity. None while the node drains."""
        if self._draining:
            return 0
        return self._in_stock + max(0, self.config.capacity - self._total())

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

    def stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = {
            "available": len(self._pooled),
            "capacity": self.config.capacity,
            "pool_size": self.config.pool_size,
            "total": self._total(),
            "left_behind": len(self._left_behind),
            "states": dict(Counter(self._states.values())),
            "draining": self._draining,
        }
        if self._line is not None:
            stats["waiting"] = self._line.stats()
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
        drained = list(self._pooled)
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
        """Start machines until pool_size, and one for each visitor in the waiting line, are
        booted or booting, within capacity. While refill yields to a burst of hand-outs
        (_postpone_refill), only the line is booted for."""
        if not (self.running and self._cleaned) or self._draining:
            return
        if self._pause is not None and self._pause.active():
            return
        stock = self._stock()
        wanted = 0 if self._line is None else self._line.waiting()
        if self._refill_later is None or not self._refill_later.active():
            wanted += self.config.pool_size
        while stock < wanted and self._total() < self.config.capacity:
            self._start_machine()
            stock += 1

    def _start_machine(self) -> None:
        container_id = self._new_id(self.config.user_length)
        while container_id in self._machines:
            container_id = self._new_id(self.config.user_length)
        self._new_machine(container_id, self._new_token())
        self._waiting.append(container_id)
        self._boot_waiting()

    def _new_machine(self, container_id: str, token: str, docker_id: str | None = None) -> ContainerInputs:
        core = ContainerCore(
            container_id=container_id,
            token=token,
            # An adopted container exists already: culled before it is checked, it is removed.
            docker_id=docker_id,
            may_exist=docker_id is not None,
            spec=self.spec,
            config=self.config,
            clock=self._reactor,
            docker=self._docker,
            wait_ready=self._ready_check,
            proxy=self._proxy,
            on_transition=self._transition,
            on_removed=self._removed,
        )
        machine = new_machine(core)
        self._machines[container_id] = machine
        self._tokens[container_id] = core.token
        self._states[container_id] = "requested"
        self._in_stock += 1
        self._removals[container_id] = Deferred()
        return machine

    # -- an earlier run's containers

    async def _adopt_leftovers(self, leftovers: list[Any]) -> tuple[list[Any], Deferred[None]]:
        """Adopt what can be; return the records to remove, and the removal of stale routes
        (under way).

        A container with a route of ours in the proxy is a visitor's: assigned again, its
        assigned_at from the route. Without a route, the server's api/status decides: never
        used (last_activity is its start) → pooled after the usual readiness check; used →
        a visitor's whose route was lost: assigned again, route restored. Stopped, silent or
        beyond capacity and pool size → removed.
        """
        routed = await self._our_routes()
        marked = {} if self._marks is None else self._marks.recorded()
        usable = [r for r in leftovers if r.running and r.container_id and r.token]
        statuses = await server_statuses(self._ask_statuses, self.spec, {r.container_id: r.token for r in usable})
        assigned, unused = sort_leftovers(usable, routed, marked, statuses)
        adopted = set()
        for record, assigned_at in assigned:  # visitors first: they are using theirs
            if self._total() < self.config.capacity:
                machine = self._new_machine(record.container_id, record.token, record.docker_id)
                seen = None if self._marks is None else self._marks.last_activity(record.container_id)
                if self._marks is not None:  # a route-only or used one is recorded from now on
                    self._marks.mark(record.container_id, assigned_at)
                machine.adopt(record.docker_id, assigned_at)
                if seen is not None and seen > assigned_at:
                    # Restart grace: the activity the last run saw, which the proxy may have lost.
                    machine.activity(seen)
                    self.saw_activity(record.container_id, seen)
                adopted.add(record.docker_id)
        for record in unused:
            if self._total() < self.config.capacity and self._stock() < self.config.pool_size:
                self._new_machine(record.container_id, record.token, record.docker_id)
                self._adoptable[record.container_id] = record.docker_id
                self._waiting.append(record.container_id)
                adopted.add(record.docker_id)
        self._boot_waiting()
        forgetting = self._forget_stale_routes(routed, leftovers, adopted)
        log.info(
            "adopted {assigned} assigned and {pooled} unused containers of instance {instance}",
            assigned=sum(1 for r, _ in assigned if r.docker_id in adopted),
            pooled=sum(1 for r in unused if r.docker_id in adopted),
            instance=self.spec.instance,
        )
        return [r for r in leftovers if r.docker_id not in adopted], forgetting

    async def _our_routes(self) -> dict[Any, dict]:
        """The proxy's routes this instance added, by container id (none if it cannot tell)."""
        try:
            routes = await self._proxy.list_routes()
        except Exception:
            log_fault(log, Failure(), "listing the proxy's routes at start")
            return {}
        return {
            data.get("container"): data
            for data in routes.values()
            if data.get("instance") == self.spec.instance and data.get("container")
        }

    def _forget_stale_routes(
        self, routed: dict[Any, dict], leftovers: list[Any], adopted: set[str]
    ) -> Deferred[None]:
        """Routes of ours to containers not adopted go; so does the socket directory of a
        container that vanished (the removal of those still there is the caller's); fires when
        all of it is done, never with a failure."""
        present = {r.container_id for r in leftovers}
        kept = {r.container_id for r in leftovers if r.docker_id in adopted}
        calls = []
        for container_id in routed:
            if container_id in kept:
                continue
            calls.append(maybeDeferred(self._proxy.delete_route, f"/user/{container_id}"))
            if container_id not in present:
                name = container_name(self.spec.instance, container_id)
                calls.append(maybeDeferred(self._docker.remove, name, container_id))
        done: Deferred[Any] = gatherResults(calls, consumeErrors=True)
        return done.addCallbacks(lambda _: None, lambda f: log_fault(log, f, "removing stale routes"))

    def _stock(self) -> int:
        return self._in_stock

    def _total(self) -> int:
        """Containers that exist or may: every machine's, and those left behind."""
        return len(self._machines) + len(self._left_behind)

    def _boot_waiting(self) -> None:
        """Boot requested machines, oldest first, while fewer than max_booting are booting."""
        # A stopping pool boots nothing more: a slot freed by a cull stays free.
        while self.running and self._waiting and self._booting < self._max_booting:
            container_id = self._waiting.pop(0)
            docker_id = self._adoptable.pop(container_id, None)
            if self._states.get(container_id) != "requested":
                continue
            if docker_id is None:
                self._machines[container_id].boot()
            else:  # an earlier run's unused container: only its readiness check is left
                self._machines[container_id].launched(docker_id)

    def _ready_check(self, socket_path: str, base_path: str, token: str) -> Deferred[dict]:
        return self._wait_ready(
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
        self._in_stock += (event.to_state in STOCK) - (self._states.get(container_id) in STOCK)
        self._states[container_id] = event.to_state
        if event.to_state == "booting" and event.from_state != "booting":
            self._booting += 1
        elif event.from_state == "booting" and event.to_state != "booting":
            self._booting -= 1
        if event.to_state == "pooled":
            self._pooled.append(container_id)
            self._give_ups = 0
            self._paused_for_docker = False
            if self._line is not None:
                self._reactor.callLater(0, self._line.offer)
        elif event.from_state == "pooled":
            self._pooled.remove(container_id)
        if event.input == "assign" and self._marks is not None:
            # Before the visitor gets the URL (the route is added after this report).
            self._marks.mark(container_id, event.time)
        if self._on_transition is not None:
            try:
                self._on_transition(event)
            except Exception:
                log.failure("on_transition hook failed for {container}", container=container_id)
        if event.input == "bootFailed":
            self._last_failed[container_id] = event.cause or ""
        elif container_id in self._last_failed:
            cause = self._last_failed.pop(container_id)
            if event.to_state == "culled":  # the machine gave up after its last attempt
                self._gave_up(docker_away=cause.startswith(DOCKER_AWAY))
        if event.from_state == "booting" and event.to_state != "booting":
            self._boot_waiting()
        if event.to_state == "culled":
            self.fill()

    def _gave_up(self, docker_away: bool) -> None:
        if not self.running:
            return
        self._give_ups += 1
        # Lifted early only if every give-up of this pause was Docker being away.
        self._paused_for_docker = docker_away and (self._paused_for_docker or self._give_ups == 1)
        delay = backoff_delay(self.config, self._give_ups)
        log.warn(
            "{count} containers in a row failed to boot; refilling in {delay:g}s",
            count=self._give_ups,
            delay=delay,
        )
        if self._pause is not None and self._pause.active():
            self._pause.cancel()
        self._pause = self._reactor.callLater(delay, self.fill)

    def docker_answered(self) -> None:
        """Docker answered a listing: a pause caused only by Docker being away ends now, so
        the pool refills as soon as Docker is back rather than after the longest backoff."""
        if self._paused_for_docker and self._pause is not None and self._pause.active():
            log.info("Docker answers again; refilling")
            self._pause.cancel()
            self._give_ups = 0
            self._paused_for_docker = False
            self.fill()

    def _removed(self, container_id: str, left_behind: bool) -> None:
        if left_behind:
            self._left_behind.add(container_id)
        self._forget(container_id).callback(None)
        self.fill()

    def _forget(self, container_id: str) -> Deferred[None]:
        """Drop a machine from every record; returns its removal Deferred (not fired)."""
        del self._machines[container_id]
        self._in_stock -= self._states.pop(container_id) in STOCK
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
        return [cid for cid, state in self._states.items() if state in states]

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
