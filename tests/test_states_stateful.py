"""One container's machine (tmpnb/states.py) alone, under any order of events.

Hypothesis plays Docker (a launch or a removal finishing, failing, or hanging until
DockerAPI's timeout), the notebook server (answering its readiness check, failing it, or
never answering until the machine's deadline), the proxy (refusing a route, losing it),
the pool (boot, assign, activity, idle, cull, Docker's exit events) and time. After every
step the machine must keep its promises:

- it is handed out only once its server answered (pooled), and never twice;
- every failed boot attempt is retried (a new launch, after its backoff) or given up with a
  reason that names the failure;
- culled is final: nothing that arrives afterwards moves it, or makes a Docker call other
  than the removal;
- no behaviour raises and nothing is logged as a bug;
- once culled, everything it launched is removed (or reported left behind).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from twisted.internet.defer import Deferred, fail
from twisted.internet.task import Clock
from twisted.logger import formatEvent, globalLogPublisher
from twisted.python.failure import Failure

from tests.fakedocker import FakeDocker, FakeDockerError
from tmpnb.config import ContainerSpec, PoolConfig
from tmpnb.dockerapi import DockerTimeout, DockerUnavailable, LaunchRequest
from tmpnb.proxy.routes import RouteTable
from tmpnb.proxyapi import InProcessProxyAPI
from tmpnb.states import (
    Assignment,
    ContainerCore,
    ContainerInputs,
    TransitionEvent,
    backoff_delay,
    new_machine,
)

ID = "c0ffee000001"
TOKEN = "t" * 48
ROUTE = f"/user/{ID}"
# What the fakes fail with: faults the machine lives with, never bugs.
PLAYED_FAULTS = (FakeDockerError, DockerTimeout, DockerUnavailable, ConnectionRefusedError)
# Inputs that may still arrive once the machine is culled: the pool's (a heartbeat that
# predates the cull, a second cull, Docker's events) and the machine's own callbacks
# arriving late (a readiness answer, a backoff timer). A late `launched` is played for real
# (docker_answers finishing a launch in flight): it carries the id of the container to remove.
LATE_INPUTS = ("boot", "ready", "bootFailed", "assign", "activity", "idle", "exited", "cull", "routeLost")
# The heartbeat judges only the containers it saw handed out (tmpnb.heartbeat), which are
# never again requested or booting; the verdict may arrive after a cull or, for one the
# pool has just taken back, in pooled.
JUDGED = ("pooled", "assigned", "idle", "culled")


@dataclass
class Call:
    """One Docker call the machine made: when, and when Docker answered (ok or not)."""

    time: float
    operation: str
    args: tuple[Any, ...]
    answered: float | None = None


@dataclass
class RecordingDocker:
    """The machine's Docker handle: FakeDocker, with every call noted with its time."""

    docker: FakeDocker
    clock: Clock
    calls: list[Call] = field(default_factory=list)

    def launch(self, request: LaunchRequest) -> Deferred[str]:
        return self.noted(Call(self.clock.seconds(), "launch", (request,)), self.docker.launch(request))

    def remove(self, docker_id: str, container_id: str | None = None) -> Deferred[None]:
        call = Call(self.clock.seconds(), "remove", (docker_id, container_id))
        return self.noted(call, self.docker.remove(docker_id, container_id))

    def noted(self, call: Call, d: Deferred[Any]) -> Deferred[Any]:
        self.calls.append(call)

        def answered(result: object) -> object:
            call.answered = self.clock.seconds()
            return result

        return d.addBoth(answered)


class Servers:
    """The notebook server's readiness: each wait is held until a rule answers it (only a
    running container's server can), fails it, or the machine's own deadline cancels it."""

    def __init__(self, docker: FakeDocker) -> None:
        self.docker = docker
        self.waits: list[Deferred[dict]] = []
        self.answered = 0  # readiness checks answered ok

    def wait_ready(self, socket_path: str, base_path: str, token: str) -> Deferred[dict]:
        d: Deferred[dict] = Deferred(lambda d: self.waits.remove(d))
        self.waits.append(d)
        return d

    def can_answer(self) -> bool:
        return bool(self.waits) and ID in self.docker.running()

    def answer(self) -> None:
        d = self.waits.pop(0)
        self.answered += 1
        d.callback({"started": "now"})

    def refuse(self) -> None:
        self.waits.pop(0).errback(ConnectionRefusedError("server not listening"))


@dataclass
class Proxy:
    """The in-process route table, which a rule can make refuse routes."""

    routes: RouteTable
    refusing: bool = False

    def __post_init__(self) -> None:
        self.api = InProcessProxyAPI(self.routes)

    def add_route(self, path: str, target: str, **data: Any) -> Deferred[None]:
        if self.refusing:
            return fail(ConnectionRefusedError("proxy down"))
        return self.api.add_route(path, target, **data)

    def delete_route(self, path: str) -> Deferred[None]:
        return self.api.delete_route(path)


def build_core(
    config: PoolConfig,
    clock: Clock,
    docker: RecordingDocker,
    servers: Servers,
    proxy: Proxy,
    on_transition: Callable[[TransitionEvent], None],
    removed: list[bool],
) -> ContainerCore:
    """The one place this test builds a machine's core (adapt here if ContainerCore changes)."""
    return ContainerCore(
        container_id=ID,
        token=TOKEN,
        spec=docker.docker.spec,
        config=config,
        clock=clock,
        docker=docker,
        wait_ready=servers.wait_ready,
        proxy=proxy,
        on_transition=on_transition,
        on_removed=lambda container_id, left_behind: removed.append(left_behind),
    )


class ContainerMachine(RuleBasedStateMachine):
    @initialize(attempts=st.integers(1, 4), adopted=st.sampled_from([None, "running", "assigned"]))
    def start(self, attempts: int, adopted: str | None) -> None:
        self.config = PoolConfig(
            boot_attempts=attempts, boot_timeout=5.0, backoff_initial=0.5, backoff_max=2.0
        )
        self.clock = Clock()
        spec = ContainerSpec(instance="test-states-stateful", socket_root="/tmp/tnb-states-stateful")
        self.fake = FakeDocker(self.clock, spec, call_timeout=3.0)
        self.fake.hold("launch", "remove")  # Docker answers when a rule says
        self.docker = RecordingDocker(self.fake, self.clock)
        self.servers = Servers(self.fake)
        self.routes = RouteTable(self.clock)
        self.proxy = Proxy(self.routes)
        self.events: list[TransitionEvent] = []
        self.removed: list[bool] = []  # on_removed's left_behind, once per call
        self.handed: list[tuple[float, Assignment | Failure]] = []  # assign()s that answered
        self.bugs: list[dict] = []
        globalLogPublisher.addObserver(self.note_bugs)
        self.calls_at_cull = 0  # how many Docker calls the machine had made when culled
        self.calls_before: list[int] = []  # the same, at each event
        self.core = build_core(
            self.config, self.clock, self.docker, self.servers, self.proxy, self.moved, self.removed
        )
        self.machine: ContainerInputs = new_machine(self.core)
        # The pool's first word: boot a new container, or take back an earlier run's.
        if adopted is None:
            self.machine.boot()
        else:
            docker_id = self.fake.plant(ID, token=TOKEN)
            if adopted == "running":
                self.machine.launched(docker_id)
            else:
                self.machine.adopt(docker_id, 0.0)
        self.adopted = adopted

    def moved(self, event: TransitionEvent) -> None:
        self.events.append(event)
        self.calls_before.append(len(self.docker.calls))
        if event.to_state == "culled":
            self.calls_at_cull = len(self.docker.calls)

    def note_bugs(self, event: dict) -> None:
        failure = event.get("log_failure")
        if failure is not None and not failure.check(*PLAYED_FAULTS):
            self.bugs.append(event)

    # -- what the machine says about itself

    def state(self) -> str:
        return self.events[-1].to_state if self.events else "requested"

    def culled_at(self) -> int | None:
        """The index, in events, of the move to culled."""
        return next((i for i, e in enumerate(self.events) if e.to_state == "culled"), None)

    def launches(self) -> list[Call]:
        return [c for c in self.docker.calls if c.operation == "launch"]

    # -- Docker

    @rule(pick=st.integers(0, 9), ok=st.booleans())
    def docker_answers(self, pick: int, ok: bool) -> None:
        """A launch or a removal in flight finishes, ok or failed, in any order."""
        if self.fake.held:
            call = self.fake.held[pick % len(self.fake.held)]
            call.succeed() if ok else call.fail("docker said no")

    @precondition(lambda self: self.fake.reachable)
    @rule(hang=st.booleans())
    def dockerd_fails(self, hang: bool) -> None:
        """dockerd goes down (new calls refused) or hangs (new calls time out after 3 s)."""
        self.fake.go_down(hang=hang)

    @precondition(lambda self: not self.fake.reachable)
    @rule()
    def dockerd_comes_back(self) -> None:
        self.fake.come_back()

    @precondition(lambda self: ID in self.fake.running())
    @rule(cause=st.sampled_from(["die", "oom"]))
    def the_container_exits(self, cause: str) -> None:
        """It stops from outside; Docker's event reaches the pool, which tells the machine."""
        self.fake.kill(ID)
        self.machine.exited(cause)

    # -- the server and the proxy

    @precondition(lambda self: self.servers.can_answer())
    @rule()
    def the_server_answers(self) -> None:
        self.servers.answer()

    @precondition(lambda self: bool(self.servers.waits))
    @rule()
    def the_server_refuses(self) -> None:
        self.servers.refuse()

    @rule(refusing=st.booleans())
    def the_proxy_changes(self, refusing: bool) -> None:
        self.proxy.refusing = refusing

    @rule()
    def the_proxy_loses_the_route(self) -> None:
        """An external proxy restarted; the heartbeat notices and tells the machine."""
        if self.routes.get(ROUTE) is not None:
            self.routes.remove(ROUTE)
        self.machine.routeLost()

    # -- the pool

    @rule()
    def a_visitor_is_given_it(self) -> None:
        was = self.state()
        d = self.machine.assign()
        if was != "pooled":
            assert d is None, f"handed out in {was}"
            return
        assert d is not None, "a pooled machine refused a visitor"
        outcome: list[Assignment | Failure] = []
        d.addBoth(outcome.append)
        [result] = outcome  # the in-process proxy answers at once
        self.handed.append((self.clock.seconds(), result))
        if isinstance(result, Assignment):
            assert result == Assignment(ID, f"/user/{ID}/", TOKEN)
            assert self.routes.get(ROUTE) is not None
        else:
            assert self.proxy.refusing and result.check(ConnectionRefusedError)

    @precondition(lambda self: self.state() in JUDGED)
    @rule(late=st.floats(0, 5))
    def the_heartbeat_sees_activity(self, late: float) -> None:
        self.machine.activity(self.clock.seconds() - late)

    @precondition(lambda self: self.state() in JUDGED)
    @rule(late=st.floats(0, 5))
    def the_heartbeat_sees_it_idle(self, late: float) -> None:
        self.machine.idle(self.clock.seconds() - late)

    @rule(reason=st.sampled_from(["idle", "too old", "drained", "admin"]))
    def it_is_culled(self, reason: str) -> None:
        self.machine.cull(reason)

    @precondition(lambda self: self.state() == "culled")
    @rule(name=st.sampled_from(LATE_INPUTS))
    def something_arrives_after_the_cull(self, name: str) -> None:
        args = {"bootFailed": ("late",), "activity": (1.0,),
                "idle": (1.0,), "exited": ("die",), "cull": ("again",)}.get(name, ())
        answer = getattr(self.machine, name)(*args)
        if name == "assign":
            assert answer is None

    # -- time

    @rule(seconds=st.sampled_from([0.0, 0.1, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0]))
    def time_passes(self, seconds: float) -> None:
        # In steps, so every timer fires when it is due.
        while seconds > 0:
            step = min(seconds, 0.25)
            self.clock.advance(step)
            seconds -= step

    # -- what must always hold

    @invariant()
    def handed_out_only_once_and_only_when_ready(self) -> None:
        assert len(self.handed) <= 1, self.handed
        if self.handed and self.adopted != "assigned":
            # pooled only once the server answered the container it runs in
            assert self.servers.answered >= 1
            moves = [(e.from_state, e.to_state, e.input) for e in self.events]
            assert ("booting", "pooled", "ready") in moves
            assert moves.index(("booting", "pooled", "ready")) < moves.index(("pooled", "assigned", "assign"))
        if self.adopted == "assigned":
            assert self.handed == []  # already a visitor's: never handed to another

    def retry_of(self, attempt: int) -> Call | None:
        """The launch that starts attempt `attempt` + 1 (an adopted running container was
        attempt 1 without a launch)."""
        index = attempt - (1 if self.adopted == "running" else 0)
        launches = self.launches()
        return launches[index] if index < len(launches) else None

    @invariant()
    def every_failure_is_retried_after_its_backoff_or_given_up_with_a_reason(self) -> None:
        failures = [(e, self.calls_before[i]) for i, e in enumerate(self.events) if e.input == "bootFailed"]
        assert len(failures) <= self.config.boot_attempts
        for attempt, (failed, calls_before) in enumerate(failures, start=1):
            assert failed.cause, "a failure without a cause"
            retry = self.retry_of(attempt)
            if retry is None:
                continue
            # What the failed attempt made is removed first; the backoff starts once Docker
            # has answered that removal.
            cleanup = next(c for c in self.docker.calls[calls_before:] if c.operation == "remove")
            assert cleanup.answered is not None and cleanup.answered <= retry.time, (cleanup, retry)
            assert retry.time >= cleanup.answered + backoff_delay(self.config, attempt), (attempt, cleanup, retry)
        failures = [e for e, _ in failures]
        given_up = [e for e in self.events if (e.cause or "").startswith("gave up")]
        if given_up:
            [gave_up] = given_up
            assert (gave_up.from_state, gave_up.to_state) == ("booting", "culled")
            assert len(failures) == self.config.boot_attempts
            assert gave_up.cause == f"gave up after {len(failures)} boot attempts: {failures[-1].cause}"

    def every_failure_was_followed_up(self) -> None:
        """Eventually (checked once Docker and the server have answered for a while): each
        failed attempt was retried, or the machine was culled (given up, or for a reason)."""
        failures = [e for e in self.events if e.input == "bootFailed"]
        for attempt, _ in enumerate(failures, start=1):
            assert self.retry_of(attempt) is not None or self.culled_at() is not None, attempt

    @invariant()
    def culled_is_final(self) -> None:
        at = self.culled_at()
        if at is None:
            return
        assert self.events[at + 1 :] == [], self.events[at + 1 :]
        # No Docker call since but the removal (a launch already in flight may still finish).
        since = self.docker.calls[self.calls_at_cull :]
        assert [c.operation for c in since if c.operation != "remove"] == [], since
        assert len(since) <= self.config.boot_attempts  # the removal and its retries

    @invariant()
    def nothing_raised_or_was_logged_as_a_bug(self) -> None:
        assert [formatEvent(e) + ": " + repr(e["log_failure"].value) for e in self.bugs] == []

    @invariant()
    def removed_is_reported_once_and_only_once_culled(self) -> None:
        assert len(self.removed) <= 1
        if self.removed:
            assert self.state() == "culled"

    def teardown(self) -> None:
        try:
            # Docker comes back and answers everything, the server too, and time passes.
            self.fake.come_back()
            for _ in range(30):
                for call in list(self.fake.held):
                    call.succeed()
                while self.servers.can_answer():
                    self.servers.answer()
                self.clock.advance(1.0)
            self.every_failure_is_retried_after_its_backoff_or_given_up_with_a_reason()
            self.every_failure_was_followed_up()
            if self.culled_at() is None:
                self.machine.cull("stopping")  # as the pool's stop does
            # Docker answers everything; time passes: the cull completes.
            self.fake.release("launch", "remove")
            for _ in range(60):
                for call in list(self.fake.held):
                    call.succeed()
                self.clock.advance(1.0)
            self.culled_is_final()
            self.nothing_raised_or_was_logged_as_a_bug()
            assert len(self.removed) == 1, "removal never finished"
            [left_behind] = self.removed
            if not left_behind:
                # Everything it launched is gone: the container, its socket directory, its route.
                assert self.fake.ours() == []
                assert self.fake.socket_dirs == set()
            assert self.routes.get(ROUTE) is None
            assert self.clock.getDelayedCalls() == []
        finally:
            globalLogPublisher.removeObserver(self.note_bugs)


TestContainerMachine = ContainerMachine.TestCase
# 200 examples find a pooled machine handing out twice and a retry that ignores its
# backoff (both tried); a profile with more (`--hypothesis-profile=thorough`, tests/conftest.py) raises it.
TestContainerMachine.settings = settings(
    max_examples=max(200, settings.default.max_examples), stateful_step_count=30, deadline=None
)
