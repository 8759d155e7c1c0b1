"""The lifecycle of one container, as an automat machine (docs/lifecycle.md, with its drawing).

requested → booting → pooled → assigned ⇄ idle, and from anywhere → culled.

The machine does its own Docker, readiness and proxy calls through the handles in its
`ContainerCore`, and turns every result into an input: behaviours never raise, failures
arrive as `bootFailed(cause)`. It tells its owner what happened only through two hooks:
`on_transition(TransitionEvent)` for every transition and `on_removed(container_id,
left_behind)` once everything it made is gone (or, `left_behind`, once removing the
container gave up: Docker still has it, and the owner must count it until it is gone). Nobody reads its state; `describe()` answers in every state.

Late and duplicate events (a launch or readiness answer that arrives after a cull, a second
cull, Docker reporting the death of a container we are removing) have explicit transitions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from automat import TypeMachineBuilder
from twisted.internet.defer import CancelledError, Deferred, maybeDeferred
from twisted.internet.task import deferLater
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from tmpnb import sockets
from tmpnb.config import ContainerSpec, PoolConfig
from tmpnb.dockerapi import DockerTimeout, DockerUnavailable, LaunchRequest, container_name
from tmpnb.faults import log_fault
from tmpnb.transitions import index_transitions

log = Logger()


@dataclass(frozen=True)
class Assignment:
    """A container handed to one visitor: where to send them and the server's token."""

    container_id: str
    path: str  # "/user/<id>/"
    token: str
    flavor: str = "default"  # the container's flavor (tmpnb/flavors.py)


@dataclass(frozen=True)
class TransitionEvent:
    """One transition of one container, for the lifecycle record (tmpnb/lifecycle/)."""

    container: str
    from_state: str
    to_state: str
    input: str
    time: float
    seconds_in_previous: float
    cause: str | None = None
    flavor: str = "default"  # the container's flavor (tmpnb/flavors.py)


@dataclass(frozen=True)
class BootFailure:
    """Why one boot attempt failed."""

    cause: str
    # Docker itself did not answer (DockerUnavailable, DockerTimeout): neither the image nor
    # the container is to blame, and Docker's next answer may end the wait.
    docker_away: bool = False

    @classmethod
    def of(cls, failure: Failure) -> BootFailure:
        return cls(failure_cause(failure), failure.check(DockerUnavailable, DockerTimeout) is not None)


@dataclass(frozen=True)
class GaveUp:
    """A machine stopped booting after its last attempt (it is culled next)."""

    container_id: str
    attempts: int
    last_error: BootFailure


class DockerOps(Protocol):
    """The part of tmpnb.dockerapi.DockerAPI a machine uses."""

    def launch(self, request: LaunchRequest) -> Deferred[str]: ...

    def remove(self, docker_id: str, container_id: str | None = None) -> Deferred[None]: ...


class RouteOps(Protocol):
    """The part of tmpnb.proxyapi.ProxyAPI a machine uses."""

    def add_route(self, path: str, target: str, **data: Any) -> Deferred[None]: ...

    def delete_route(self, path: str) -> Deferred[None]: ...


# (socket_path, base_path, token) → fires with api/status's JSON once the server answers.
ReadyCheck = Callable[[str, str, str], "Deferred[dict]"]


class ContainerInputs(Protocol):
    def boot(self) -> None:
        """Start booting; in booting, start the next attempt (after the backoff)."""

    def launched(self, docker_id: str) -> None:
        """Docker created and started the container; in requested: adopt a running container
        of an earlier run, which then only needs its readiness check to be pooled."""

    def ready(self) -> None:
        """The server answered api/status over its socket."""

    def bootFailed(self, cause: str) -> None:
        """The launch failed, or the server did not become ready in time."""

    def assign(self) -> Deferred[Assignment] | None:
        """Hand the container to a visitor: None unless it is pooled."""

    def adopt(self, docker_id: str, assigned_at: float) -> None:
        """Take back a container an earlier run handed out: it is assigned, route restored."""

    def routeLost(self) -> None:
        """The proxy has no route to this container (it restarted): add it again if handed out."""

    def activity(self, when: float) -> None:
        """The visitor was last active at `when` (heartbeat)."""

    def idle(self, since: float) -> None:
        """No activity has been seen since `since` (heartbeat)."""

    def exited(self, cause: str) -> None:
        """Docker says the container stopped or vanished ("die", "oom", "destroy")."""

    def cull(self, reason: str) -> None:
        """Remove the container: its route, the container and its socket directory."""

    def removed(self, left_behind: bool) -> None:
        """The end of a cull: everything the machine made is gone, or (`left_behind`)
        removing the container gave up and it may still exist."""

    def describe(self) -> dict[str, Any]:
        """What the machine is doing, for stats and the admin listing."""


@dataclass
class ContainerCore:
    """One container's identity, the handles its machine acts through, and its history."""

    container_id: str
    token: str
    spec: ContainerSpec
    config: PoolConfig
    clock: IReactorTime
    docker: DockerOps
    wait_ready: ReadyCheck
    proxy: RouteOps
    on_transition: Callable[[TransitionEvent], None]
    on_removed: Callable[[str, bool], None]
    # Told when the machine gives up booting, before it culls itself.
    on_gave_up: Callable[[GaveUp], None] = field(default=lambda gave_up: None)
    created_at: float = field(init=False)
    entered_at: float = field(init=False)
    docker_id: str | None = None
    # The launch or remove in flight: a Docker thread cannot be called back, so a cull waits
    # for it to finish before removing, or a container created late would leak.
    docker_call: Deferred[Any] | None = None
    # Whether a container (or its socket directory) may exist and needs removing.
    may_exist: bool = False
    routed: bool = False
    assigned_at: float | None = None
    last_activity: float | None = None
    # When we last (re)added the route: a proxy stamps a new route's last_activity, which is
    # not the visitor's doing (see tmpnb.judging.route_activity).
    route_added_at: float | None = None

    def __post_init__(self) -> None:
        self.created_at = self.entered_at = self.clock.seconds()

    @property
    def base_path(self) -> str:
        return f"/user/{self.container_id}/"

    @property
    def route_path(self) -> str:
        return f"/user/{self.container_id}"

    @property
    def socket_path(self) -> str:
        return sockets.socket_path(self.spec, self.container_id)

    def docker_ref(self) -> str:
        """The docker id when known; the container's name (which Docker accepts) otherwise."""
        return self.docker_id or container_name(self.spec.instance, self.container_id)

    def moved(self, from_state: str, to_state: str, input: str, cause: str | None = None) -> None:
        """Report one transition; a hook that raises must not break the machine."""
        now = self.clock.seconds()
        event = TransitionEvent(
            container=self.container_id,
            from_state=from_state,
            to_state=to_state,
            input=input,
            time=now,
            seconds_in_previous=now - self.entered_at,
            cause=cause,
            flavor=self.spec.flavor,
        )
        if from_state != to_state:
            self.entered_at = now
        # No log event here: the owner's hook (tmpnb.lifecycle.LifecycleRecorder in the
        # service) makes the one structured event per transition.
        try:
            self.on_transition(event)
        except Exception:
            log.failure("on_transition hook failed for {container}", container=self.container_id)

    def describe(self, state: str, **more: Any) -> dict[str, Any]:
        return {
            "container": self.container_id,
            "state": state,
            "path": self.base_path,
            "docker_id": self.docker_id,
            "created": self.created_at,
            "in_state_since": self.entered_at,
            "assigned_at": self.assigned_at,
            "last_activity": self.last_activity,
            "route_added_at": self.route_added_at,
            "flavor": self.spec.flavor,
            **more,
        }


def backoff_delay(config: PoolConfig, attempt: int) -> float:
    """The wait after failed attempt `attempt` (1-based): doubling, capped."""
    return min(config.backoff_initial * 2 ** (attempt - 1), config.backoff_max)


def failure_cause(failure: Failure) -> str:
    return f"{failure.type.__name__}: {failure.getErrorMessage()}"


class StateData:
    """What every data state's data (Boot, Idle, Culled) adds to describe(). A plain base
    class, not a runtime-checkable Protocol: automat asserts the data's type at each input
    of a data state, and isinstance against such a Protocol costs ≈20 µs, a fifth of a
    heartbeat's work per idle container (benchmarks/scale.py)."""

    def details(self) -> dict[str, Any]:
        raise NotImplementedError


@dataclass
class Boot(StateData):
    """booting's data: the current attempt and what it waits on."""

    attempt: int = 0
    readiness: Deferred[Any] | None = None
    deadline: IDelayedCall | None = None
    backoff: IDelayedCall | None = None
    # Why readiness was cancelled (deadline or container death), for the bootFailed cause.
    cancel_cause: str | None = None
    left: bool = False  # the machine left booting: a finishing cleanup must not retry
    # The failure behind the bootFailed input on its way (None when one came from outside).
    last_error: BootFailure | None = None

    def details(self) -> dict[str, Any]:
        return {"attempt": self.attempt}

    def stop(self) -> None:
        self.left = True
        for call in (self.deadline, self.backoff):
            if call is not None and call.active():
                call.cancel()
        if self.readiness is not None:
            self.readiness.cancel()


@dataclass
class Idle(StateData):
    """idle's data: since when nothing has happened."""

    since: float

    def details(self) -> dict[str, Any]:
        return {"idle_since": self.since}


@dataclass
class Culled(StateData):
    """culled's data: why, and whether removal has finished."""

    reason: str
    removed: bool = False

    def details(self) -> dict[str, Any]:
        return {"reason": self.reason, "removed": self.removed}


def first_attempt(
    inputs: ContainerInputs, core: ContainerCore, docker_id: str | None = None
) -> Boot:
    # Entered by boot() (attempt 1 is yet to start) or, adopting, by launched(docker_id):
    # the container of attempt 1 already runs.
    return Boot(attempt=0 if docker_id is None else 1)


def idle_since(inputs: ContainerInputs, core: ContainerCore, since: float) -> Idle:
    return Idle(since)


def culled_because(inputs: ContainerInputs, core: ContainerCore, reason: str) -> Culled:
    return Culled(reason)


builder = TypeMachineBuilder(ContainerInputs, ContainerCore)
requested = builder.state("requested")
booting = builder.state("booting", first_attempt)
pooled = builder.state("pooled")
assigned = builder.state("assigned")
idle = builder.state("idle", idle_since)
culled = builder.state("culled", culled_because)

# Inputs whose last argument says why; it goes into the transition's record as its cause.
CAUSED = frozenset({"bootFailed", "cull", "exited"})


def moves(
    source: Any, input: Callable[..., Any], target: Any, name: str | None = None
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """`source.upon(input).to(target)` (`.loop()` if they are one state) for a behaviour that
    is a transition worth recording: the machine reports it (`ContainerCore.moved`, the one
    place transitions are reported) before the behaviour runs. `name`: the behaviour's name
    in the drawing, if not its own."""
    input_name = input.__name__

    def register(behaviour: Callable[..., Any]) -> Callable[..., Any]:
        def reported(inputs: ContainerInputs, core: ContainerCore, *args: object) -> Any:
            cause = str(args[-1]) if input_name in CAUSED else None
            core.moved(source.name, target.name, input_name, cause)
            return behaviour(inputs, core, *args)

        reported.__name__ = name or behaviour.__name__
        upon = source.upon(input)
        (upon.loop() if source is target else upon.to(target))(reported)
        return behaviour

    return register


# -- booting ------------------------------------------------------------------------------


@moves(requested, ContainerInputs.boot, booting)
def start_booting(inputs: ContainerInputs, core: ContainerCore) -> None:
    # Every attempt, the first included, starts with boot() in booting, which has the data.
    inputs.boot()


@moves(requested, ContainerInputs.launched, booting)
def adopt_running(inputs: ContainerInputs, core: ContainerCore, docker_id: str) -> None:
    core.docker_id = docker_id
    core.may_exist = True
    inputs.launched(docker_id)  # in booting, with its data: wait for readiness


@booting.upon(ContainerInputs.boot).loop()
def launch(inputs: ContainerInputs, core: ContainerCore, boot: Boot) -> None:
    boot.attempt += 1
    boot.backoff = None
    core.may_exist = True
    request = LaunchRequest(
        container_id=core.container_id,
        token=core.token,
        base_path=core.base_path,
        socket_dir=sockets.socket_dir(core.spec, core.container_id),
        spec=core.spec,
    )
    # maybeDeferred: a handle that raises instead of failing its Deferred must not make
    # this behaviour raise.
    d = core.docker_call = maybeDeferred(core.docker.launch, request)

    def finished(result: str | Failure) -> None:
        core.docker_call = None
        if isinstance(result, Failure):
            boot.last_error = BootFailure.of(result)
            inputs.bootFailed(boot.last_error.cause)
        else:
            inputs.launched(result)

    d.addBoth(finished)


@booting.upon(ContainerInputs.launched).loop()
def wait_until_ready(
    inputs: ContainerInputs, core: ContainerCore, boot: Boot, docker_id: str
) -> None:
    core.docker_id = docker_id
    timeout = core.config.boot_timeout
    boot.cancel_cause = None
    d = boot.readiness = maybeDeferred(core.wait_ready, core.socket_path, core.base_path, core.token)

    def too_late() -> None:
        boot.cancel_cause = f"not ready within {timeout:g}s"
        d.cancel()

    boot.deadline = core.clock.callLater(timeout, too_late)

    def answered(result: object) -> None:
        boot.readiness = None
        if boot.deadline is not None and boot.deadline.active():
            boot.deadline.cancel()
        # automat keeps a state's data after the machine left it: a pooled or assigned
        # machine would keep its boot's spent timer (and the 3 bound methods it holds) for
        # the garbage collector to walk at every full collection (benchmarks/scale.py).
        boot.deadline = None
        if isinstance(result, Failure):
            if result.check(CancelledError) and boot.cancel_cause is not None:
                boot.last_error = BootFailure(boot.cancel_cause)
            else:
                boot.last_error = BootFailure.of(result)
            inputs.bootFailed(boot.last_error.cause)
        else:
            inputs.ready()

    d.addBoth(answered)


@moves(booting, ContainerInputs.ready, pooled)
def became_ready(inputs: ContainerInputs, core: ContainerCore, boot: Boot) -> None:
    pass


@moves(booting, ContainerInputs.bootFailed, booting)
def retry_or_give_up(
    inputs: ContainerInputs, core: ContainerCore, boot: Boot, cause: str
) -> None:
    log.warn(
        "container {container} failed to boot (attempt {attempt} of {attempts}): {cause}",
        container=core.container_id,
        attempt=boot.attempt,
        attempts=core.config.boot_attempts,
        cause=cause,
    )
    error, boot.last_error = boot.last_error or BootFailure(cause), None
    if boot.attempt >= core.config.boot_attempts:
        try:
            core.on_gave_up(GaveUp(core.container_id, boot.attempt, error))
        except Exception:
            log.failure("on_gave_up hook failed for {container}", container=core.container_id)
        # culled removes what this attempt made.
        inputs.cull(f"gave up after {boot.attempt} boot attempts: {cause}")
        return
    delay = backoff_delay(core.config, boot.attempt)
    d = core.docker_call = maybeDeferred(core.docker.remove, core.docker_ref(), core.container_id)
    core.docker_id = None

    def cleaned(result: object) -> None:
        core.docker_call = None
        if isinstance(result, Failure):
            # The next attempt reuses the name; if this is still there, that launch fails.
            log.warn(
                "could not remove failed boot of {container}: {cause}",
                container=core.container_id,
                cause=failure_cause(result),
            )
        else:
            core.may_exist = False
        if not boot.left:
            boot.backoff = core.clock.callLater(delay, inputs.boot)

    d.addBoth(cleaned)


@booting.upon(ContainerInputs.exited).loop()
def died_while_booting(
    inputs: ContainerInputs, core: ContainerCore, boot: Boot, cause: str
) -> None:
    # Only a death while waiting for readiness is this attempt's; between attempts, it is the
    # previous attempt's container being removed. The readiness wait fails with the cause.
    if boot.readiness is not None:
        boot.cancel_cause = f"container exited while booting ({cause})"
        boot.readiness.cancel()


# -- handing out --------------------------------------------------------------------------


def add_route(core: ContainerCore) -> Deferred[None]:
    # assigned_at travels with the route, so a restarted tmpnb can still enforce cull_max.
    core.route_added_at = core.clock.seconds()
    return maybeDeferred(
        core.proxy.add_route,
        core.route_path,
        sockets.proxy_target(core.socket_path),
        container=core.container_id,
        instance=core.spec.instance,
        assigned_at=core.assigned_at,
        flavor=core.spec.flavor,  # the proxy serves the static files of the flavor's image
    )


@moves(pooled, ContainerInputs.assign, assigned)
def hand_out(inputs: ContainerInputs, core: ContainerCore) -> Deferred[Assignment]:
    core.assigned_at = core.last_activity = core.clock.seconds()
    core.routed = True
    result: Deferred[Assignment] = Deferred()
    d = add_route(core)

    def routed(_: object) -> None:
        result.callback(Assignment(core.container_id, core.base_path, core.token, core.spec.flavor))

    def unroutable(failure: Failure) -> None:
        # A container nobody can reach is of no use: cull it (queued, it runs after this),
        # and let the caller ask the pool for another one.
        inputs.cull(f"route not added: {failure_cause(failure)}")
        result.errback(failure)

    d.addCallbacks(routed, unroutable)
    return result


@moves(requested, ContainerInputs.adopt, assigned)
def adopt_assigned(
    inputs: ContainerInputs, core: ContainerCore, docker_id: str, assigned_at: float
) -> None:
    core.docker_id = docker_id
    core.may_exist = True
    core.routed = True
    core.assigned_at = core.last_activity = assigned_at

    def unroutable(failure: Failure) -> None:
        inputs.cull(f"route not restored: {failure_cause(failure)}")

    # The proxy may have kept the route (CHP, tmpnb-proxy) or not: adding it again is safe.
    add_route(core).addErrback(unroutable)


def restore_route(inputs: ContainerInputs, core: ContainerCore, *data: object) -> None:
    # An external proxy that restarted lost the route; the visitor's URL must work again.
    # A failure is only logged: the next heartbeat notices the route missing and tries again.
    add_route(core).addErrback(
        lambda failure: log_fault(log, failure, "restoring the route of {container}", container=core.container_id)
    )


assigned.upon(ContainerInputs.routeLost).loop()(restore_route)
idle.upon(ContainerInputs.routeLost).loop()(restore_route)


@assigned.upon(ContainerInputs.activity).loop()
def active(inputs: ContainerInputs, core: ContainerCore, when: float) -> None:
    core.last_activity = max(core.last_activity or when, when)


@moves(assigned, ContainerInputs.idle, idle)
def went_idle(inputs: ContainerInputs, core: ContainerCore, since: float) -> None:
    pass


@moves(idle, ContainerInputs.activity, assigned)
def came_back(inputs: ContainerInputs, core: ContainerCore, data: Idle, when: float) -> None:
    core.last_activity = max(core.last_activity or when, when)


# -- culling ------------------------------------------------------------------------------


def tear_down(inputs: ContainerInputs, core: ContainerCore) -> None:
    """Remove the route, the container and its socket directory; then removed()."""

    async def remove_everything() -> None:
        if core.docker_call is not None:
            await core.docker_call  # its result was handled by its own callbacks
        if core.routed:
            try:
                await core.proxy.delete_route(core.route_path)
            except Exception:
                log_fault(log, Failure(), "removing the route of {container}", container=core.container_id)
        gone = await remove_container(core) if core.may_exist else True
        inputs.removed(not gone)

    Deferred.fromCoroutine(remove_everything()).addErrback(
        lambda failure: log.failure("culling {container}", failure, container=core.container_id)
    )


async def remove_container(core: ContainerCore) -> bool:
    """Remove the container and its socket directory, retrying with backoff (dockerd may be
    slow or hung); after boot_attempts tries, give up (False): the owner's heartbeat removes
    what Docker still has once Docker answers again."""
    attempts = core.config.boot_attempts
    for attempt in range(1, attempts + 1):
        try:
            await core.docker.remove(core.docker_ref(), core.container_id)
            return True
        except Exception:
            if attempt == attempts:
                log_fault(
                    log,
                    Failure(),
                    "giving up removing container {container} after {attempts} tries",
                    container=core.container_id,
                    attempts=attempts,
                )
                return False
            delay = backoff_delay(core.config, attempt)
            log.warn(
                "removing container {container} failed; retrying in {delay:g}s",
                container=core.container_id,
                delay=delay,
            )
            await deferLater(core.clock, delay)
    return False


def enter_culled(inputs: ContainerInputs, core: ContainerCore, *data_and_reason: object) -> None:
    # (idle's data, if any, and the reason: recorded as the transition's cause)
    tear_down(inputs, core)


@moves(booting, ContainerInputs.cull, culled)  # exited while booting is a failed attempt
def cull_booting(inputs: ContainerInputs, core: ContainerCore, boot: Boot, reason: str) -> None:
    boot.stop()
    tear_down(inputs, core)


moves(requested, ContainerInputs.cull, culled, name="cull_requested")(enter_culled)
for _state in (pooled, assigned, idle):
    moves(_state, ContainerInputs.cull, culled, name=f"cull_{_state.name}")(enter_culled)
    moves(_state, ContainerInputs.exited, culled, name=f"cull_{_state.name}")(enter_culled)


@culled.upon(ContainerInputs.removed).loop()
def gone(inputs: ContainerInputs, core: ContainerCore, data: Culled, left_behind: bool) -> None:
    data.removed = True
    core.on_removed(core.container_id, left_behind)


@culled.upon(ContainerInputs.launched).loop()
def launched_after_cull(
    inputs: ContainerInputs, core: ContainerCore, data: Culled, docker_id: str
) -> None:
    # A boot that completes after a cull: the teardown waits for this launch and then
    # removes exactly this container.
    core.docker_id = docker_id


# -- everything else: nothing happens, for the reason given -------------------------------


def ignore(inputs: ContainerInputs, core: ContainerCore, *args: object) -> None:
    """Nothing to do."""


ignored = [
    # The pool only assigns pooled containers; anyone else gets None: "not available".
    (requested, ContainerInputs.assign),
    (booting, ContainerInputs.assign),
    (assigned, ContainerInputs.assign),
    (idle, ContainerInputs.assign),
    (culled, ContainerInputs.assign),
    # A heartbeat may still ask about a container the pool has just culled or handed out.
    (pooled, ContainerInputs.activity),
    (pooled, ContainerInputs.idle),
    (idle, ContainerInputs.idle),
    (culled, ContainerInputs.activity),
    (culled, ContainerInputs.idle),
    # Only a handed-out container has a route to lose; the heartbeat's listing may predate a
    # cull or come before the assignment.
    (requested, ContainerInputs.routeLost),
    (booting, ContainerInputs.routeLost),
    (pooled, ContainerInputs.routeLost),
    (culled, ContainerInputs.routeLost),
    # Before a launch there is nothing to die.
    (requested, ContainerInputs.exited),
    # Late: the backoff timer and the readiness wait are cancelled on cull, but a readiness
    # answer already on its way, or a cancelled wait's errback, still arrives.
    (culled, ContainerInputs.boot),
    (culled, ContainerInputs.ready),
    (culled, ContainerInputs.bootFailed),
    # Duplicate: a second cull, or Docker reporting the death we are causing.
    (culled, ContainerInputs.cull),
    (culled, ContainerInputs.exited),
]
for _state, _input in ignored:
    _state.upon(_input).loop()(ignore)


def answers_describe(state: Any) -> None:
    def describe(inputs: ContainerInputs, core: ContainerCore) -> dict[str, Any]:
        return core.describe(state.name)

    state.upon(ContainerInputs.describe).loop()(describe)


def answers_describe_with(state: Any) -> None:
    def describe(inputs: ContainerInputs, core: ContainerCore, data: StateData) -> dict[str, Any]:
        return core.describe(state.name, **data.details())

    state.upon(ContainerInputs.describe).loop()(describe)


for _state in (requested, pooled, assigned):
    answers_describe(_state)
for _state in (booting, idle, culled):  # the data states
    answers_describe_with(_state)

ContainerMachine = builder.build()
index_transitions(ContainerMachine)  # a dict probe per input, not a scan of ≈80 (tmpnb/transitions.py)


def new_machine(core: ContainerCore) -> ContainerInputs:
    """A machine in requested for `core`; give it boot() to start."""
    return ContainerMachine(core)
