"""The pool's heartbeat: every --cull-period seconds (never overlapping), one sweep.

1. Reconcile with Docker: machines whose container exited or vanished without an event are
   told; containers of ours that no machine owns (a removal that gave up) are removed, and
   so are socket directories that nothing owns.
2. Reconcile with the proxy: a handed-out container whose route is missing gets it back;
   routes of ours that lead nowhere are deleted.
3. Judge every handed-out container (tmpnb/judging.py) on its activity: the proxy route's
   and the server's own last_activity, every server asked in one status round
   (tmpnb/statusround.py). Culled, idle or assigned.

docs/lifecycle.md, "The heartbeat", says the same with the reasons. The heartbeat acts on
the pool's machines through `Flock`, the narrow view of the pool it needs.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterable, Sequence
from datetime import datetime
from typing import Any, Protocol

from twisted.internet.defer import Deferred, gatherResults, maybeDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from tmpnb import sockets
from tmpnb.config import ContainerSpec, PoolConfig
from tmpnb.due import Lookouts
from tmpnb.faults import log_fault
from tmpnb.judging import (
    Active,
    Verdict,
    changes_anything,
    is_stray,
    latest_activity,
    route_container,
    settled_on,
    timestamp,
    verdict,
)
from tmpnb.slices import Slicer
from tmpnb.states import ContainerInputs, DockerOps, RouteOps
from tmpnb.statusround import StatusAnswers, StatusAsk

log = Logger()

# States in which a machine has a running container Docker must know about.
RUNNING = frozenset({"pooled", "assigned", "idle"})
HANDED_OUT = frozenset({"assigned", "idle"})


class HeartbeatDocker(DockerOps, Protocol):
    """The part of tmpnb.dockerapi.DockerAPI the heartbeat uses."""

    def list_ours(self) -> Deferred[list[Any]]: ...

    def socket_dir_ids(self) -> Deferred[list[str]]: ...

    def remove_socket_dirs(self, container_ids: list[str]) -> Deferred[None]: ...


class HeartbeatRoutes(RouteOps, Protocol):
    def list_routes(self, inactive_since: datetime | None = None) -> Deferred[dict[str, dict]]: ...


# tmpnb.statusround.StatusRounds.ask: every server's status, in one round
AskStatuses = Callable[[Sequence[StatusAsk]], Deferred[StatusAnswers]]


class Flock(Protocol):
    """What the heartbeat needs of the pool (tmpnb.pool.Pool)."""

    running: bool  # the pool is started; a sweep that finds it stopped after an await ends

    def ids_in(self, states: frozenset[str]) -> list[str]:
        """The containers whose machines reported one of `states`."""

    def machine(self, container_id: str) -> ContainerInputs | None: ...

    def token(self, container_id: str) -> str: ...

    def owns(self, container_id: str) -> bool:
        """A machine owns it, or it was left behind by a removal that gave up."""

    def left_behind(self) -> set[str]: ...

    def gone(self, container_ids: Iterable[str]) -> None:
        """These containers left behind are gone: they no longer count against capacity."""

    def docker_answered(self) -> None: ...

    def saw_activity(self, container_id: str, when: float) -> None:
        """A handed-out container's latest activity, newer than what its machine had: kept
        where a restart finds it."""


class Heartbeat:
    def __init__(
        self,
        clock: IReactorTime,
        flock: Flock,
        docker: HeartbeatDocker,
        proxy: HeartbeatRoutes,
        ask_statuses: AskStatuses,
        spec: ContainerSpec,
        config: PoolConfig,
        slicer: Slicer | None = None,
    ) -> None:
        self._clock = clock
        # Every loop over the containers runs in short stretches (tmpnb/slices.py): at
        # thousands of containers a sweep in one go would hold every visitor up.
        self._slicer = Slicer(clock) if slicer is None else slicer
        self._flock = flock
        self._docker = docker
        self._proxy = proxy
        self._ask_statuses = ask_statuses
        self._spec = spec
        self._config = config
        # When each handed-out container next needs a look, and its server's kept answer.
        self._lookouts = Lookouts(config)

    def sweep(self) -> Deferred[None]:
        """One heartbeat: reconcile with Docker and the proxy, then judge every handed-out
        container. It never fails: a failed sweep is logged, and the next one comes."""
        d = Deferred.fromCoroutine(self._sweep())
        return d.addErrback(lambda f: log_fault(log, f, "heartbeat"))

    async def _sweep(self) -> None:
        # What a heartbeat costs the reactor: this thread's CPU time from the sweep's start to
        # its end. The reactor runs on this thread, so it is all reactor time, but it also
        # counts whatever else the reactor did meanwhile (visitors, boots): an upper bound.
        # Judging is done in stretches (tmpnb/slices.py); `yields` counts the turns given back.
        began, cpu_began, yields = self._clock.seconds(), time.thread_time(), self._slicer.yields
        count, looked, judging = await self._judge_handed_out()
        log.info(
            "heartbeat over {count} handed-out containers ({looked} due for a look) took {wall:.3f}s,"
            " {cpu_ms:.1f} ms of reactor CPU ({judge_ms:.1f} ms judging them), yielding to the reactor"
            " {yields} times",
            count=count,
            looked=looked,
            wall=self._clock.seconds() - began,
            cpu_ms=(time.thread_time() - cpu_began) * 1000,
            judge_ms=judging * 1000,
            yields=self._slicer.yields - yields,
        )

    async def _judge_handed_out(self) -> tuple[int, int, float]:
        """Reconcile, then judge the handed-out containers whose verdict could change: how
        many are handed out, how many were looked at, and the thread CPU seconds that took."""
        flock = self._flock
        # Judged only if handed out before we asked: one handed out meanwhile may be missing
        # from the answers without anything being wrong.
        handed = flock.ids_in(HANDED_OUT)
        await self._reconcile()
        try:
            routes = await self._proxy.list_routes()
        except Exception:
            log_fault(log, Failure(), "listing the proxy's routes")
            routes = None
        if not flock.running:  # a stop meanwhile: the routes it kept are not strays
            return 0, 0, 0.0
        # Each pass over every container below starts a stretch of its own (tmpnb/slices.py).
        await self._slicer.between(len(handed))
        # Sliced too: at 20,000 routes each of these dict-building passes is ≈10 ms. Over the
        # paths, not the items: 20,000 (path, route) tuples alive across the stretches are
        # as many more objects for a full collection to walk.
        listed = routes or {}
        routes_of: dict[str, dict] = {}

        def file_routes(paths: Sequence[str]) -> None:
            routes_of.update({route_container(path, listed[path]): listed[path] for path in paths})

        await self._slicer.in_chunks(list(listed), file_routes)
        if routes is not None:
            await self._reconcile_routes(routes, routes_of, handed)
        if not flock.running:
            return 0, 0, 0.0
        await self._slicer.between(len(handed))
        still = set(flock.ids_in(HANDED_OUT))
        still_handed: list[str] = []

        def keep(container_ids: Sequence[str]) -> None:
            still_handed.extend(cid for cid in container_ids if cid in still)

        await self._slicer.in_chunks(handed, keep)
        handed = still_handed
        judging = time.thread_time()
        now = self._clock.seconds()
        config, lookouts = self._config, self._lookouts
        # Only those whose verdict could change are judged (tmpnb/due.py): those whose time
        # came and those whose route moved. The rest would be given the verdict they have.
        await self._slicer.each(lookouts.come_due(now), lambda container_id: None)
        due = lookouts.overdue
        for container_id in [cid for cid in due if cid not in still]:
            lookouts.forget(container_id)  # culled, or gone, since its look was planned
        if not handed:
            return 0, 0, 0.0
        looks: list[str] = []

        def needs_look(container_ids: Sequence[str]) -> None:
            moved = lookouts.moved
            looks.extend(cid for cid in container_ids if cid in due or moved(cid, routes_of.get(cid)))

        if not await self._slicer.in_chunks(handed, needs_look, go_on=lambda: flock.running):
            return len(handed), 0, time.thread_time() - judging
        unsure: list[str] = []  # those whose server's own activity could change the verdict

        def conclude(container_id: str, machine: ContainerInputs, seen: dict[str, Any], judged: Verdict,
                     activity: float | None) -> None:
            if activity is not None and activity > (seen["last_activity"] or 0):
                flock.saw_activity(container_id, activity)
            if changes_anything(seen, judged):
                judged.apply(machine)
            lookouts.judged(container_id, seen, routes_of.get(container_id), judged, now)

        def judge_on_what_is_known(container_id: str) -> None:
            machine = flock.machine(container_id)
            if machine is None:  # removed meanwhile
                lookouts.forget(container_id)
                return
            seen = machine.describe()
            route = routes_of.get(container_id)
            without_server = latest_activity(seen, route, None)
            known = settled_on(seen, without_server, now, config)
            if known is not None:
                conclude(container_id, machine, seen, known, known.when if isinstance(known, Active) else None)
                return
            kept = lookouts.cached_activity(container_id, seen, route, without_server, now)
            if kept is None:
                unsure.append(container_id)
                return
            activity = max(without_server, kept)
            conclude(container_id, machine, seen, verdict(seen["assigned_at"], activity, now, config), activity)

        # A stop meanwhile culls every machine itself: the rest need no verdict.
        if not await self._slicer.each(looks, judge_on_what_is_known, go_on=lambda: flock.running):
            return len(handed), len(looks), time.thread_time() - judging
        judged_cpu = time.thread_time() - judging
        if not unsure:
            return len(handed), len(looks), judged_cpu
        tokens: dict[str, str] = {}

        def token_of(container_id: str) -> None:
            tokens[container_id] = flock.token(container_id)

        await self._slicer.each(unsure, token_of)
        statuses = await server_statuses(self._ask_statuses, self._spec, tokens, self._slicer)
        judging = time.thread_time()
        now = self._clock.seconds()

        def judge(container_id: str) -> None:
            machine = flock.machine(container_id)
            if machine is None:  # removed while we asked (or while judging yielded)
                lookouts.forget(container_id)
                return
            seen = machine.describe()
            route = routes_of.get(container_id)
            without_server = latest_activity(seen, route, None)
            status = statuses.get(container_id)
            from_server = None if status is None else timestamp(status.get("last_activity"))
            lookouts.answered(container_id, seen, route, without_server, from_server)
            activity = without_server if from_server is None else max(without_server, from_server)
            conclude(container_id, machine, seen, verdict(seen["assigned_at"], activity, now, config), activity)

        await self._slicer.each(unsure, judge, go_on=lambda: flock.running)
        return len(handed), len(looks), judged_cpu + time.thread_time() - judging

    async def _reconcile_routes(
        self, routes: dict[str, dict], routes_of: dict[str, dict], handed: list[str]
    ) -> None:
        """The proxy's routes against the machines: a handed-out container without its route
        (an external proxy restarted) gets it back; a route under /user/ that no machine owns
        (ours, or carrying no instance at all: it points nowhere) is deleted. Routes another
        tmpnb instance labelled are never touched."""
        def restore(container_id: str) -> None:
            machine = self._flock.machine(container_id)
            if machine is not None and f"/user/{container_id}" not in routes:
                log.info("the proxy lost the route of {container}; adding it again", container=container_id)
                machine.routeLost()

        await self._slicer.each(handed, restore)
        await self._slicer.between(len(routes))
        owned: set[str] = set()
        stray: list[str] = []

        def own(container_ids: Sequence[str]) -> None:
            machine = self._flock.machine
            owned.update(cid for cid in container_ids if machine(cid) is not None)

        await self._slicer.in_chunks(list(routes_of), own)

        def sort_stray(paths: Sequence[str]) -> None:
            instance = self._spec.instance
            stray.extend(path for path in paths if is_stray(path, routes[path], owned, instance))

        await self._slicer.in_chunks(list(routes), sort_stray)
        for path in stray:
            log.info("deleting route {path}: it leads to no container of ours", path=path)
        if stray:
            await gatherResults(
                [maybeDeferred(self._proxy.delete_route, path) for path in stray], consumeErrors=True
            ).addErrback(lambda f: log_fault(log, f, "deleting stray routes"))

    async def _reconcile(self) -> None:
        """Tell machines whose containers exited or vanished without an event, and remove
        containers of ours that no machine owns (a removal that gave up, say)."""
        flock = self._flock
        # Judged only if running before we asked: a container that appears meanwhile
        # would be missing from the answer without being gone.
        running = flock.ids_in(RUNNING)
        # Likewise, only a container left behind before we asked is gone if it is missing.
        left_behind = flock.left_behind()
        try:
            records = await self._docker.list_ours()
        except Exception:
            log_fault(log, Failure(), "listing containers for the heartbeat")
            return
        if not flock.running:  # stopped while Docker took its time: the stop has its own say
            return
        flock.docker_answered()
        present: dict[str, Any] = {}
        await self._slicer.in_chunks(list(records), lambda chunk: present.update({r.container_id: r for r in chunk}))
        flock.gone(left_behind - present.keys())

        def check(container_id: str) -> None:
            machine = flock.machine(container_id)
            record = present.get(container_id)
            if machine is None:
                return
            if record is None:
                machine.exited("vanished")
            elif not record.running:
                machine.exited(record.status or "exited")

        if not await self._slicer.each(running, check, go_on=lambda: flock.running):
            return
        orphans: list[Any] = []

        def unowned(record: Any) -> None:
            if flock.machine(record.container_id) is None:
                orphans.append(record)

        await self._slicer.each(records, unowned)
        for record in orphans:
            log.warn(
                "removing container {container} ({docker_id}): no machine owns it",
                container=record.container_id,
                docker_id=record.docker_id,
            )
        if orphans:
            await gatherResults(
                [
                    self._docker.remove(r.docker_id, r.container_id).addCallback(
                        lambda _, cid: flock.gone([cid]), r.container_id
                    )
                    for r in orphans
                ],
                consumeErrors=True,
            ).addErrback(lambda f: log_fault(log, f, "removing orphan containers"))
        await remove_stray_socket_dirs(self._docker, flock, present.keys(), self._slicer)


async def remove_stray_socket_dirs(
    docker: HeartbeatDocker, flock: Flock, listed: Collection[str], slicer: Slicer | None = None
) -> None:
    """Remove socket directories that no machine, no container Docker listed and no
    container left behind owns: their container vanished before any pool saw it, or after
    its removal gave up. A directory made after the listing is a new machine's: owned."""
    try:
        stray: list[str] = []

        def sort(cid: str) -> None:
            if not flock.owns(cid) and cid not in listed:
                stray.append(cid)

        ids = await docker.socket_dir_ids()
        if slicer is None:
            for cid in ids:
                sort(cid)
        else:
            await slicer.each(ids, sort)
        if stray:
            log.info("removing {count} socket directories of no container: {ids}", count=len(stray), ids=stray)
            await docker.remove_socket_dirs(stray)
    except Exception:
        log.failure("removing socket directories of no container")


async def server_statuses(
    ask_statuses: AskStatuses, spec: ContainerSpec, tokens: dict[str, str], slicer: Slicer | None = None
) -> dict[str, dict[str, Any]]:
    """The servers' api/status answers, by container id, all asked in one round (see
    tmpnb/statusround.py); a server that does not answer in time is missing. With a
    `slicer`, the asks are made and the answers sorted in stretches."""
    asks: list[StatusAsk] = []
    statuses: dict[str, dict[str, Any]] = {}

    def ask(cid: str) -> None:
        asks.append(StatusAsk(cid, sockets.socket_path(spec, cid), f"/user/{cid}/", tokens[cid]))

    def sort(container_id: str) -> None:
        answer = answers[container_id]
        if isinstance(answer, Exception):
            log.info("no status from {container}: {cause}", container=container_id, cause=repr(answer))
        else:
            statuses[container_id] = answer

    async def each(items: list[Any], act: Callable[[Any], None]) -> None:
        if slicer is None:
            for item in items:
                act(item)
        else:
            await slicer.each(items, act)

    await each(list(tokens), ask)  # keys: (key, value) tuples would be objects to walk
    try:
        answers = await ask_statuses(asks)
    except Exception:
        log_fault(log, Failure(), "asking the servers for their status")
        return {}
    await each(list(answers), sort)
    return statuses
