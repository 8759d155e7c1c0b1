"""A restart: an earlier run's containers of this instance, adopted or removed.

At start the pool (tmpnb/pool.py) runs `Takeover.run()` once, before it boots anything:
the containers are listed (asked until Docker answers), sorted (tmpnb/judging.py), and each
is adopted (with `adopt`: a visitor's as assigned, an unused one as pooled after its
readiness check) or removed with its route and socket directory. At stop,
`keep_activity_of` records the kept visitors' latest activity for the next start.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Protocol

from twisted.internet.defer import CancelledError, Deferred, gatherResults, maybeDeferred
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.python.failure import Failure

from tmpnb.assignments import AssignmentMarks
from tmpnb.config import ContainerSpec, PoolConfig
from tmpnb.dockerapi import container_name
from tmpnb.dockerrecipe import FLAVOR_LABEL
from tmpnb.faults import log_fault
from tmpnb.heartbeat import AskStatuses, Flock, HeartbeatDocker, HeartbeatRoutes, remove_stray_socket_dirs, server_statuses
from tmpnb.judging import latest_activity, routes_by_container, sort_leftovers
from tmpnb.states import ContainerInputs, backoff_delay

__all__ = ["Adopting", "Takeover", "keep_activity_of"]

log = Logger()


class Adopting(Flock, Protocol):
    """What a takeover needs of the pool (tmpnb.pool.Pool)."""

    def room_for(self, pooled: bool, flavor: str | None = None) -> bool:
        """One more container fits in the capacity (and, `pooled`, in its flavor's pool size)."""

    def new_machine(self, container_id: str, token: str, docker_id: str | None = None,
                    flavor: str | None = None) -> ContainerInputs: ...

    def flavor_named(self, name: str) -> str | None:
        """`name` if the node serves that flavor (a container's label); None if not."""

    def token_for(self, container_id: str) -> str:
        """The token derived for a container id (tmpnb/servertokens.py)."""

    def queue_unused(self, container_id: str, docker_id: str) -> None:
        """Pool an earlier run's unused container once a boot slot is free (readiness only)."""

    def boot_waiting(self) -> None: ...

    def leave_behind(self, container_id: str) -> None:
        """A container whose removal failed: it counts against the capacity."""


class Takeover:
    def __init__(
        self,
        reactor: Any,
        pool: Adopting,
        docker: HeartbeatDocker,
        proxy: HeartbeatRoutes,
        ask_statuses: AskStatuses,
        spec: ContainerSpec,
        config: PoolConfig,
        marks: AssignmentMarks | None,
        adopt: bool,
    ) -> None:
        self._reactor = reactor
        self._pool = pool
        self._docker = docker
        self._proxy = proxy
        self._ask_statuses = ask_statuses
        self.spec = spec
        self.config = config
        self._marks = marks
        self._adopt = adopt  # take over an earlier run's containers instead of removing them
        self._listing: Deferred[Any] | None = None  # the listing, or its retry wait

    def cancel(self) -> None:
        """The pool stops: Docker never answered the listing, stop asking."""
        if self._listing is not None:
            self._listing.cancel()

    async def run(self) -> bool:
        """Adopt or remove the earlier run's containers; False if the pool stopped before
        Docker ever answered."""
        leftovers = await self._list_leftovers()
        if leftovers is None:
            return False
        listed = {r.container_id for r in leftovers}
        if self._marks is not None:
            self._marks.forget_all_but(r.container_id for r in leftovers)
        leftovers = [r for r in leftovers if self._pool.machine(r.container_id) is None]
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
            Deferred.fromCoroutine(remove_stray_socket_dirs(self._docker, self._pool, listed)),
            *(
                self._docker.remove(r.docker_id, r.container_id).addErrback(self._left_behind, r.container_id)
                for r in leftovers
            ),
        ]
        await gatherResults(cleanups, consumeErrors=True).addErrback(
            lambda f: log_fault(log, f, "removing leftover containers")
        )
        return True

    def _left_behind(self, failure: Failure, container_id: str) -> None:
        """A leftover that could not be removed still counts against the capacity."""
        self._pool.leave_behind(container_id)
        log_fault(log, failure, "removing leftover container {container}", container=container_id)

    async def _list_leftovers(self) -> list[Any] | None:
        """This instance's containers, asked until Docker answers (it may be down or hung at
        start): filling before would boot beside containers we have not seen, and the heartbeat
        would take a visitor's container for an orphan. None if the pool stops first."""
        attempt = 0
        while self._pool.running:
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
        """Await `d`, which cancel() cancels (a stop must not wait for a hung dockerd)."""
        self._listing = d
        try:
            return await d
        finally:
            self._listing = None

    async def _adopt_leftovers(self, leftovers: list[Any]) -> tuple[list[Any], Deferred[None]]:
        """Adopt what can be; return the records to remove, and the removal of stale routes
        (under way).

        A container with a route of ours in the proxy is a visitor's: assigned again, its
        assigned_at from the route. Without a route, the server's api/status decides: never
        used (last_activity is its start) → pooled after the usual readiness check; used →
        a visitor's whose route was lost: assigned again, route restored. Stopped, silent or
        beyond capacity and pool size → removed.
        """
        pool = self._pool
        routed = await self._our_routes()
        marked = {} if self._marks is None else self._marks.recorded()
        # The token is derived from the id; an earlier version's container carries its own
        # in a label, which is believed for that container only (its server checks it).
        usable = [replace(r, token=r.token or pool.token_for(r.container_id))
                  for r in leftovers if r.running and r.container_id]
        statuses = await server_statuses(self._ask_statuses, self.spec, {r.container_id: r.token for r in usable})
        assigned, unused = sort_leftovers(usable, routed, marked, statuses)
        adopted = set()
        # No label: the flavor "default", a node's without --flavor.
        flavors = {r.container_id: pool.flavor_named(r.labels.get(FLAVOR_LABEL, "default")) for r in usable}
        for record in usable:
            if flavors[record.container_id] is None:
                log.warn("removing {container}: its flavor {flavor} is not served any more",
                         container=record.container_id, flavor=record.labels.get(FLAVOR_LABEL, "default"))
        for record, assigned_at in assigned:  # visitors first: they are using theirs
            flavor = flavors[record.container_id]
            if flavor is not None and pool.room_for(pooled=False):
                machine = pool.new_machine(record.container_id, record.token, record.docker_id, flavor)
                seen = None if self._marks is None else self._marks.last_activity(record.container_id)
                if self._marks is not None:  # a route-only or used one is recorded from now on
                    self._marks.mark(record.container_id, assigned_at)
                machine.adopt(record.docker_id, assigned_at)
                if seen is not None and seen > assigned_at:
                    # Restart grace: the activity the last run saw, which the proxy may have lost.
                    machine.activity(seen)
                    pool.saw_activity(record.container_id, seen)
                adopted.add(record.docker_id)
        for record in unused:
            flavor = flavors[record.container_id]
            if flavor is not None and pool.room_for(pooled=True, flavor=flavor):
                pool.new_machine(record.container_id, record.token, record.docker_id, flavor)
                pool.queue_unused(record.container_id, record.docker_id)
                adopted.add(record.docker_id)
        pool.boot_waiting()
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


async def keep_activity_of(
    marks: AssignmentMarks | None, proxy: HeartbeatRoutes, kept: dict[str, dict[str, Any]]
) -> None:
    """Record, for the next start, the visitors' activity that only the proxy saw since the
    last heartbeat (`kept`: the described machines left running at stop): the embedded proxy
    forgets it with this process."""
    if marks is None or not kept:
        return
    try:
        routes_of = routes_by_container(await proxy.list_routes())
    except Exception:
        log_fault(log, Failure(), "listing the proxy's routes at stop")
        return
    for container_id, seen in kept.items():
        marks.saw_activity(container_id, latest_activity(seen, routes_of.get(container_id), None))
