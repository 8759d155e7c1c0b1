"""In-memory twins of the Docker engine (tmpnb.dockerapi.DockerAPI) and of the notebook
servers' readiness (tmpnb.readiness.wait_ready), for tests without threads or a reactor.

`FakeDocker` keeps what would run in `containers`. Its calls either finish at once or, for
the operations a test holds, wait in `held` until the test finishes them (`succeed()` /
`fail(cause)`), in any order: that is how a test plays a slow or failing Docker. Like
dockerd, a launch whose name is taken fails, remove of a missing container succeeds, the
socket directory comes and goes with the container, events ("die", "destroy") reach
`watch` callbacks asynchronously (on the clock), and another instance's containers are
never touched. `kill(container_id)` stops a container from outside.

dockerd can also fail as a whole: `go_down()` makes every call fail with the real
`DockerUnavailable`, `go_down(hang=True)` makes every call wait and fail with `DockerTimeout`
after `call_timeout` (as DockerAPI's own timeout does), and `come_back()` ends either (calls
still hanging are then answered). While down or hung, events are lost, as the events
stream is; `restart_daemon()` stops every container without an event, as a dockerd restart
without live-restore does. `answered` lists the calls that succeeded, in order (a test can
tell whether Docker answered a listing since some moment).

`FakeServers` answers readiness waits: each wait is held until the test calls
`answer(container_id)` (only a running container's server can answer) or the wait times out;
and status requests at once, with the server's last_activity as the test set it (`touch`).
After `hold_status()` status requests wait in `status_requests` until the test calls
`answer_status()`, so a test can see what is asked and answer late.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from itertools import count
from typing import Any

from twisted.internet.defer import Deferred, fail, gatherResults, succeed
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.task import Clock

from tmpnb import sockets
from tmpnb.config import ContainerSpec
from tmpnb.statusround import TIMEOUT, StatusAnswers, StatusAsk
from tmpnb.dockerrecipe import FLAVOR_LABEL
from tmpnb.dockerapi import (
    CREATED_LABEL,
    ID_LABEL,
    INSTANCE_LABEL,
    TOKEN_LABEL,
    ContainerRecord,
    DockerTimeout,
    DockerUnavailable,
    LaunchRequest,
    container_name,
)


class FakeDockerError(Exception):
    """What dockerd would answer with an error (a name conflict, a failure the test asked for)."""


@dataclass
class FakeContainer:
    docker_id: str
    name: str
    labels: dict[str, str]
    socket_dir: str
    running: bool = True
    server_token: str = ""
    image: str = ""  # what its server checks (the real one reads its socket dir's token file)

    @property
    def container_id(self) -> str:
        return self.labels[ID_LABEL]

    def record(self) -> ContainerRecord:
        return ContainerRecord(
            docker_id=self.docker_id,
            container_id=self.container_id,
            token=self.labels.get(TOKEN_LABEL, ""),
            created=float(self.labels.get(CREATED_LABEL, "0")),
            running=self.running,
            status="running" if self.running else "exited",
            labels=dict(self.labels),
        )


@dataclass
class HeldCall:
    """A Docker call the test finishes: `succeed()` does what Docker would, `fail()` not."""

    operation: str
    args: tuple[Any, ...]
    deferred: Deferred[Any]
    _perform: Callable[[], Any] = field(repr=False)
    _finished: Callable[[HeldCall], None] = field(repr=False)

    def succeed(self) -> None:
        self._finished(self)
        try:
            result = self._perform()
        except Exception as e:
            self.deferred.errback(e)
        else:
            self.deferred.callback(result)

    def fail(self, cause: str = "docker failed") -> None:
        self._finished(self)
        self.deferred.errback(FakeDockerError(cause))


class FakeDocker:
    """The DockerAPI of one tmpnb instance, over an in-memory engine."""

    def __init__(self, clock: Clock, spec: ContainerSpec, call_timeout: float = 30.0) -> None:
        self.clock = clock
        self.spec = spec
        self.call_timeout = call_timeout  # how long a call waits on a hung dockerd
        self.reachable = True  # False: down (unreachable) or hung
        self.hanging = False  # hung: calls wait and time out; down: they fail at once
        self.hung: list[HeldCall] = []  # calls waiting on a hung dockerd
        self.containers: dict[str, FakeContainer] = {}  # by docker id, every instance's
        self.socket_dirs: set[str] = set()
        self.holding: set[str] = set()
        self.held: list[HeldCall] = []
        self.calls: list[tuple[str, Any]] = []
        self.answered: list[tuple[str, Any]] = []  # the calls that succeeded, in order
        self._watchers: list[Callable[[str, str], None]] = []
        self._timers: dict[int, IDelayedCall] = {}  # a hung call's timeout, by id(call)
        self._ids = count(1)

    # -- what a test sees and does

    def hold(self, *operations: str) -> None:
        """Keep calls of these operations ("launch", "remove", "list") until finished."""
        self.holding.update(operations)

    def release(self, *operations: str) -> None:
        self.holding.difference_update(operations)

    def held_calls(self, operation: str) -> list[HeldCall]:
        return [call for call in self.held if call.operation == operation]

    def running(self) -> dict[str, FakeContainer]:
        """This instance's running containers, by tmpnb id."""
        return {c.container_id: c for c in self.ours() if c.running}

    def ours(self) -> list[FakeContainer]:
        return [c for c in self.containers.values() if c.labels.get(INSTANCE_LABEL) == self.spec.instance]

    def kill(self, container_id: str) -> None:
        """The container stops from outside (OOM, a crash, `docker kill`)."""
        for c in self.ours():
            if c.container_id == container_id and c.running:
                c.running = False
                self._emit(container_id, "die")

    def vanish(self, container_id: str) -> None:
        """The container disappears and Docker's events say nothing (a lost event stream)."""
        for c in self.ours():
            if c.container_id == container_id:
                del self.containers[c.docker_id]

    def go_down(self, hang: bool = False) -> None:
        """dockerd stops answering: down (every call fails at once with DockerUnavailable) or,
        with `hang`, hung (every call waits `call_timeout`, then fails with DockerTimeout;
        /_ping still answers, as the deadlocked dockerd seen on this machine did)."""
        self.reachable = False
        self.hanging = hang

    def come_back(self) -> None:
        """dockerd answers again; calls hanging on it are answered now."""
        self.reachable = True
        self.hanging = False
        for call in list(self.hung):
            call.succeed()

    def restart_daemon(self) -> None:
        """dockerd restarts without live-restore: every container stops, and the events
        stream, broken meanwhile, says nothing about it."""
        for c in self.containers.values():
            c.running = False

    def plant(
        self, container_id: str, instance: str | None = None, running: bool = True, token: str = "planted",
        labelled: bool = True,
    ) -> str:
        """A container already there when the test starts (a previous run's leftover); by
        default an earlier version's, with its token in a label; `labelled=False`: this
        version's, whose server was given `token` in its socket directory only."""
        spec = self.spec if instance is None else ContainerSpec(instance=instance)
        request = LaunchRequest(
            container_id=container_id,
            token=token,
            base_path=f"/user/{container_id}/",
            socket_dir=sockets.socket_dir(spec, container_id),
            spec=spec,
        )
        docker_id = self._create(request)
        self.containers[docker_id].running = running
        if labelled:
            self.containers[docker_id].labels[TOKEN_LABEL] = token
        return docker_id

    # -- the DockerAPI methods

    def launch(self, request: LaunchRequest) -> Deferred[str]:
        return self._call("launch", (request,), lambda: self._create(request))

    def remove(self, docker_id: str, container_id: str | None = None) -> Deferred[None]:
        return self._call("remove", (docker_id, container_id), lambda: self._remove(docker_id, container_id))

    def inspect(self, docker_id: str) -> Deferred[ContainerRecord | None]:
        def perform() -> ContainerRecord | None:
            found = self._find(docker_id)
            ours = found is not None and found.labels.get(INSTANCE_LABEL) == self.spec.instance
            return found.record() if ours else None

        return self._call("inspect", (docker_id,), perform)

    def list_ours(self) -> Deferred[list[ContainerRecord]]:
        return self._call("list", (), lambda: [c.record() for c in self.ours()])

    def socket_dir_ids(self) -> Deferred[list[str]]:
        root = sockets.socket_dir(self.spec, "")
        return self._call(
            "socket_dirs", (), lambda: sorted(p[len(root):] for p in self.socket_dirs if p.startswith(root))
        )

    def remove_socket_dirs(self, container_ids: list[str]) -> Deferred[None]:
        def remove() -> None:
            for container_id in container_ids:
                self.socket_dirs.discard(sockets.socket_dir(self.spec, container_id))

        return self._call("remove_socket_dirs", (list(container_ids),), remove)

    def ping(self) -> Deferred[bool]:
        # A hung dockerd still answers /_ping; a down one does not.
        return succeed(self.reachable or self.hanging)

    def watch(self, on_event: Callable[[str, str], None]) -> None:
        self._watchers.append(on_event)

    # -- the engine

    def _call(self, operation: str, args: tuple[Any, ...], perform: Callable[[], Any]) -> Deferred[Any]:
        self.calls.append((operation, args))

        def answer() -> Any:
            result = perform()
            self.answered.append((operation, args))
            return result

        if not self.reachable:
            return self._unanswered(operation, args, answer)
        if operation not in self.holding:
            try:
                return succeed(answer())
            except Exception as e:
                return fail(e)
        call = HeldCall(operation, args, Deferred(), answer, self.held.remove)
        self.held.append(call)
        return call.deferred

    def _unanswered(self, operation: str, args: tuple[Any, ...], perform: Callable[[], Any]) -> Deferred[Any]:
        if not self.hanging:
            return fail(DockerUnavailable(f"{operation}: dockerd is down"))
        call = HeldCall(operation, args, Deferred(), perform, self._stop_hanging)
        timer = self.clock.callLater(self.call_timeout, self._time_out, call)
        self._timers[id(call)] = timer
        self.hung.append(call)
        return call.deferred

    def _stop_hanging(self, call: HeldCall) -> None:
        self.hung.remove(call)
        timer = self._timers.pop(id(call))
        if timer.active():
            timer.cancel()

    def _time_out(self, call: HeldCall) -> None:
        self._stop_hanging(call)
        call.deferred.errback(DockerTimeout(f"{call.operation}: no answer in {self.call_timeout:g}s"))

    def _create(self, request: LaunchRequest) -> str:
        name = container_name(request.spec.instance, request.container_id)
        if any(c.name == name for c in self.containers.values()):
            raise FakeDockerError(f"Conflict: the container name {name!r} is already in use")
        docker_id = f"{next(self._ids):064x}"
        labels = {
            INSTANCE_LABEL: request.spec.instance,
            ID_LABEL: request.container_id,
            CREATED_LABEL: repr(self.clock.seconds()),
            **({FLAVOR_LABEL: request.spec.flavor} if request.spec.flavor != "default" else {}),
        }
        self.containers[docker_id] = FakeContainer(docker_id, name, labels, request.socket_dir,
                                                   server_token=request.token, image=request.spec.image)
        self.socket_dirs.add(request.socket_dir)
        self._emit(request.container_id, "start", request.spec.instance)
        return docker_id

    def _find(self, ref: str) -> FakeContainer | None:
        # Docker accepts a name where it takes an id.
        return next((c for c in self.containers.values() if ref in (c.docker_id, c.name)), None)

    def _remove(self, ref: str, container_id: str | None) -> None:
        found = self._find(ref)
        if found is not None:
            if found.labels.get(INSTANCE_LABEL) != self.spec.instance:
                raise FakeDockerError(f"{ref} is not ours")
            del self.containers[found.docker_id]
            container_id = container_id or found.container_id
            if found.running:
                self._emit(found.container_id, "die")
            self._emit(found.container_id, "destroy")
        if container_id:
            self.socket_dirs.discard(sockets.socket_dir(self.spec, container_id))

    def _emit(self, container_id: str, action: str, instance: str | None = None) -> None:
        if (instance or self.spec.instance) != self.spec.instance:
            return
        if not self.reachable:  # the events stream is broken too: the event is lost
            return
        for watcher in list(self._watchers):
            # dockerd's events arrive later, from the events thread.
            self.clock.callLater(0, watcher, container_id, action)


def iso(when: float) -> str:
    """A time as jupyter_server writes it in api/status."""
    return datetime.fromtimestamp(when, timezone.utc).isoformat().replace("+00:00", "Z")


@dataclass
class ReadinessWait:
    container_id: str
    token: str
    deferred: Deferred[dict]
    timer: IDelayedCall | None = None


@dataclass
class HeldStatus:
    """A status request the test answers later (`FakeServers.answer_status`)."""

    container_id: str
    token: str
    socket_path: str
    deferred: Deferred[dict]


class FakeServers:
    """wait_ready over FakeDocker: a server answers only when the test says, and only if its
    container runs with that token; a wait nobody answers times out, like the real one."""

    def __init__(self, docker: FakeDocker) -> None:
        self.docker = docker
        self.waits: list[ReadinessWait] = []
        self.last_activity: dict[str, float] = {}  # by container id, as the servers report it
        self.silent: set[str] = set()  # servers that accept but never answer
        self.holding_status = False
        self.status_requests: list[HeldStatus] = []  # held ones, oldest first
        self.status_asked: list[str] = []  # every status request, by container id, in order

    def hold_status(self) -> None:
        """Status requests wait in `status_requests` until `answer_status()`."""
        self.holding_status = True

    def answer_status(self, container_id: str | None = None) -> str:
        """The oldest held status request (or the one asking `container_id`) is answered, as
        its server would answer it now; the container it asked."""
        held = next(h for h in self.status_requests if container_id in (None, h.container_id))
        self.status_requests.remove(held)
        self._answer(held.container_id, held.token, held.socket_path).chainDeferred(held.deferred)
        return held.container_id

    def touch(self, container_id: str, when: float) -> None:
        """The visitor did something the server saw (a kernel ran, a file was saved)."""
        self.last_activity[container_id] = when

    def ask_statuses(self, asks: Sequence[StatusAsk]) -> Deferred[StatusAnswers]:
        """tmpnb.statusround.StatusRounds.ask over FakeDocker: every server asked at once; one
        that has not answered after TIMEOUT (silent, or held) answers a TimeoutError."""
        clock = self.docker.clock

        def one(ask: StatusAsk) -> Deferred[tuple[str, Any]]:
            d = self.server_status(clock, ask.socket_path, ask.base_path, ask.token)
            d.addTimeout(TIMEOUT, clock)
            return d.addCallbacks(lambda status: (ask.key, status), lambda failure: (ask.key, failure.value))

        return gatherResults([one(ask) for ask in asks]).addCallback(dict)

    def server_status(self, reactor: Any, socket_path: str, base_path: str, token: str) -> Deferred[dict]:
        """One server's answer (tmpnb.readiness.server_status) over FakeDocker: only a
        running server answers."""
        container_id = base_path.strip("/").split("/")[-1]
        self.status_asked.append(container_id)
        if self.holding_status:
            held = HeldStatus(container_id, token, socket_path, Deferred(lambda d: self._drop_status(d)))
            self.status_requests.append(held)
            return held.deferred
        return self._answer(container_id, token, socket_path)

    def _drop_status(self, cancelled: Deferred[dict]) -> None:
        """A cancelled (timed out) request is no longer in flight."""
        self.status_requests = [h for h in self.status_requests if h.deferred is not cancelled]

    def _answer(self, container_id: str, token: str, socket_path: str) -> Deferred[dict]:
        running = self.docker.running().get(container_id)
        if running is None:
            return fail(ConnectionRefusedError(socket_path))
        if running.server_token != token:
            return fail(PermissionError("HTTP 403"))
        if container_id in self.silent:
            return Deferred()
        started = float(running.labels[CREATED_LABEL])
        when = self.last_activity.get(container_id, started)
        return succeed(
            {"started": iso(started), "last_activity": iso(when), "connections": 0, "kernels": 0}
        )


    def wait_ready(
        self, reactor: Any, socket_path: str, base_path: str, token: str, timeout: float, interval: float
    ) -> Deferred[dict]:
        container_id = base_path.strip("/").split("/")[-1]
        wait = ReadinessWait(container_id, token, Deferred(lambda d: self._forget(wait)))
        wait.timer = reactor.callLater(timeout, self._time_out, wait)
        self.waits.append(wait)
        return wait.deferred

    def waiting(self) -> list[str]:
        return [w.container_id for w in self.waits]

    def answer(self, container_id: str) -> bool:
        """The server of `container_id` answers api/status: True if a wait was satisfied."""
        for wait in list(self.waits):
            running = self.docker.running().get(wait.container_id)
            if wait.container_id == container_id and running and running.server_token == wait.token:
                self._forget(wait)
                wait.deferred.callback({"started": "now"})
                return True
        return False

    def _time_out(self, wait: ReadinessWait) -> None:
        wait.timer = None
        self._forget(wait)
        wait.deferred.errback(TimeoutError(f"{wait.container_id} not ready"))

    def _forget(self, wait: ReadinessWait) -> None:
        if wait in self.waits:
            self.waits.remove(wait)
        if wait.timer is not None and wait.timer.active():
            wait.timer.cancel()
