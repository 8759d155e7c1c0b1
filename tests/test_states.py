"""The container machine, alone: every transition, the backoff timing, and the late events.

Docker is tests.fakedocker.FakeDocker (its calls held and finished by the test), readiness is
FakeServers, the proxy is the real in-process route table. No reactor: time is a Clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from twisted.internet.defer import fail
from twisted.internet.task import Clock
from twisted.logger import LogLevel, globalLogPublisher

from tests.results import failed, succeeded
from tests.fakedocker import FakeDocker, FakeDockerError, FakeServers
from tmpnb import sockets
from tmpnb.config import ContainerSpec, PoolConfig
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

CONFIG = PoolConfig(boot_attempts=3, boot_timeout=10.0, backoff_initial=1.0, backoff_max=3.0)
ID = "abcDEF123456"
TOKEN = "f" * 48



@dataclass
class World:
    """One machine and everything it talks to, all in memory."""

    config: PoolConfig = CONFIG
    clock: Clock = field(default_factory=Clock)
    events: list[TransitionEvent] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.spec = ContainerSpec(instance="test-states", socket_root="/tmp/tnb-states")
        self.docker = FakeDocker(self.clock, self.spec)
        self.docker.hold("launch", "remove")
        self.servers = FakeServers(self.docker)
        self.routes = RouteTable(self.clock)
        self.proxy = InProcessProxyAPI(self.routes)
        self.core = ContainerCore(
            container_id=ID,
            token=TOKEN,
            spec=self.spec,
            config=self.config,
            clock=self.clock,
            docker=self.docker,
            # A wait that never gives up by itself: the machine's own deadline must.
            wait_ready=lambda path, base, token: self.servers.wait_ready(
                self.clock, path, base, token, timeout=1e9, interval=0.05
            ),
            proxy=self.proxy,
            on_transition=self.events.append,
            on_removed=lambda container_id, left_behind: self.removed.append(container_id),
        )
        self.machine: ContainerInputs = new_machine(self.core)

    def moves(self) -> list[tuple[str, str, str]]:
        return [(e.from_state, e.to_state, e.input) for e in self.events]

    def finish(self, operation: str, ok: bool = True, cause: str = "docker failed") -> None:
        [call] = self.docker.held_calls(operation)
        call.succeed() if ok else call.fail(cause)

    def boot_to_pooled(self) -> None:
        self.machine.boot()
        self.finish("launch")
        assert self.servers.answer(ID)

    def assign(self) -> Assignment:
        self.boot_to_pooled()
        d = self.machine.assign()
        assert d is not None
        return succeeded(d)

    def state(self) -> str:
        return self.machine.describe()["state"]


@pytest.fixture
def world() -> World:
    return World()


# -- booting ------------------------------------------------------------------------------


def test_a_new_machine_is_requested_and_does_nothing(world: World) -> None:
    assert world.state() == "requested"
    assert world.docker.calls == []
    assert world.events == []


def test_boot_launches_the_container_with_its_id_token_path_and_socket_dir(world: World) -> None:
    world.machine.boot()
    assert world.moves() == [("requested", "booting", "boot")]
    [call] = world.docker.held_calls("launch")
    [request] = call.args
    assert request.container_id == ID
    assert request.token == TOKEN
    assert request.base_path == f"/user/{ID}/"
    assert request.socket_dir == sockets.socket_dir(world.spec, ID)
    assert world.machine.describe()["attempt"] == 1


def test_after_launch_it_waits_for_the_server_and_becomes_pooled_when_it_answers(world: World) -> None:
    world.machine.boot()
    world.clock.advance(0.3)
    world.finish("launch")
    assert world.servers.waiting() == [ID]
    assert world.state() == "booting"
    world.clock.advance(0.7)
    assert world.servers.answer(ID)
    assert world.state() == "pooled"
    assert world.moves()[-1] == ("booting", "pooled", "ready")
    assert world.events[-1].seconds_in_previous == pytest.approx(1.0)
    assert world.machine.describe()["docker_id"] in world.docker.containers


def test_a_failed_launch_is_retried_after_the_initial_backoff(world: World) -> None:
    world.machine.boot()
    world.finish("launch", ok=False, cause="no such image")
    assert world.moves()[-1] == ("booting", "booting", "bootFailed")
    assert world.events[-1].cause == "FakeDockerError: no such image"
    # What the failed attempt may have made is removed first (by name: no docker id yet).
    world.finish("remove")
    world.clock.advance(CONFIG.backoff_initial - 0.01)
    assert world.docker.held_calls("launch") == []
    world.clock.advance(0.01)
    assert len(world.docker.held_calls("launch")) == 1
    assert world.machine.describe()["attempt"] == 2


def test_backoff_doubles_and_is_capped() -> None:
    config = PoolConfig(backoff_initial=0.5, backoff_max=3.0)
    assert [backoff_delay(config, n) for n in (1, 2, 3, 4, 5)] == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_each_retry_waits_its_backoff_after_the_failed_attempt_is_removed() -> None:
    world = World(config=PoolConfig(boot_attempts=4, backoff_initial=1.0, backoff_max=3.0))
    world.machine.boot()
    launched_at = [world.clock.seconds()]
    for expected_wait in (1.0, 2.0, 3.0):
        world.finish("launch", ok=False)
        world.clock.advance(5.0)  # a slow remove: the backoff starts when it is done
        world.finish("remove")
        world.clock.advance(expected_wait - 0.001)
        assert world.docker.held_calls("launch") == []
        world.clock.advance(0.001)
        assert len(world.docker.held_calls("launch")) == 1
        launched_at.append(world.clock.seconds())
    assert [b - a for a, b in zip(launched_at, launched_at[1:])] == pytest.approx([6.0, 7.0, 8.0])


def test_a_server_that_is_not_ready_in_time_is_removed_and_retried(world: World) -> None:
    world.machine.boot()
    world.finish("launch")
    docker_id = world.machine.describe()["docker_id"]
    world.clock.advance(CONFIG.boot_timeout)
    assert world.moves()[-1] == ("booting", "booting", "bootFailed")
    assert world.events[-1].cause == "not ready within 10s"
    assert world.servers.waiting() == []  # the wait was cancelled
    [remove] = world.docker.held_calls("remove")
    assert remove.args == (docker_id, ID)
    remove.succeed()
    assert world.docker.running() == {}
    world.clock.advance(CONFIG.backoff_initial)
    world.finish("launch")
    assert world.servers.answer(ID)
    assert world.state() == "pooled"


def test_after_the_last_attempt_it_gives_up_and_is_culled_with_the_cause(world: World) -> None:
    world.machine.boot()
    for attempt in range(1, CONFIG.boot_attempts):
        world.finish("launch")
        world.clock.advance(CONFIG.boot_timeout)
        world.finish("remove")
        world.clock.advance(backoff_delay(CONFIG, attempt))
    world.finish("launch")
    world.clock.advance(CONFIG.boot_timeout)
    assert world.moves()[-2:] == [("booting", "booting", "bootFailed"), ("booting", "culled", "cull")]
    assert world.events[-1].cause == "gave up after 3 boot attempts: not ready within 10s"
    assert world.removed == []
    world.finish("remove")  # culled removes the last attempt's container
    assert world.removed == [ID]
    assert world.docker.ours() == []
    assert world.docker.socket_dirs == set()
    assert world.clock.getDelayedCalls() == []
    assert world.machine.describe()["reason"].startswith("gave up after 3")


def test_a_container_that_dies_while_booting_fails_the_attempt_at_once(world: World) -> None:
    world.machine.boot()
    world.finish("launch")
    world.docker.kill(ID)
    world.clock.advance(0)
    world.machine.exited("die")
    assert world.moves()[-1] == ("booting", "booting", "bootFailed")
    assert world.events[-1].cause == "container exited while booting (die)"


def test_a_death_between_attempts_is_the_previous_attempts_and_is_ignored(world: World) -> None:
    world.machine.boot()
    world.finish("launch", ok=False)
    world.machine.exited("destroy")
    world.finish("remove")
    world.clock.advance(CONFIG.backoff_initial)
    assert world.moves() == [("requested", "booting", "boot"), ("booting", "booting", "bootFailed")]
    assert len(world.docker.held_calls("launch")) == 1


def test_adopting_a_running_container_only_checks_its_readiness(world: World) -> None:
    docker_id = world.docker.plant(ID, token=TOKEN)
    world.machine.launched(docker_id)
    assert world.moves() == [("requested", "booting", "launched")]
    assert world.docker.calls == []  # nothing launched
    assert world.machine.describe()["attempt"] == 1
    assert world.servers.answer(ID)
    assert world.state() == "pooled"


def test_an_adopted_container_that_is_not_ready_is_removed_and_booted_afresh(world: World) -> None:
    docker_id = world.docker.plant(ID)
    world.machine.launched(docker_id)
    world.clock.advance(CONFIG.boot_timeout)
    [remove] = world.docker.held_calls("remove")
    assert remove.args == (docker_id, ID)
    remove.succeed()
    world.clock.advance(CONFIG.backoff_initial)
    assert world.machine.describe()["attempt"] == 2
    assert len(world.docker.held_calls("launch")) == 1


def test_adopting_an_assigned_container_restores_its_route(world: World) -> None:
    docker_id = world.docker.plant(ID)
    world.machine.adopt(docker_id, 123.0)
    assert world.moves() == [("requested", "assigned", "adopt")]
    route = world.routes.get(f"/user/{ID}")
    assert route is not None and route["assigned_at"] == 123.0
    assert world.machine.describe()["assigned_at"] == 123.0
    world.machine.cull("too old")
    world.finish("remove")
    assert world.docker.ours() == [] and world.routes.get(f"/user/{ID}") is None


# -- handing out ----------------------------------------------------------------------------


def test_assign_adds_the_route_to_the_socket_then_fires_with_the_assignment(world: World) -> None:
    world.boot_to_pooled()
    world.clock.advance(2)
    d = world.machine.assign()
    assert d is not None
    assert succeeded(d) == Assignment(ID, f"/user/{ID}/", TOKEN)
    route = world.routes.get(f"/user/{ID}")
    assert route is not None
    assert route["target"] == sockets.proxy_target(sockets.socket_path(world.spec, ID))
    assert route["container"] == ID
    assert route["instance"] == "test-states"
    assert world.moves()[-1] == ("pooled", "assigned", "assign")
    assert world.machine.describe()["assigned_at"] == 2


@pytest.mark.parametrize("where", ["requested", "booting", "assigned", "idle", "culled"])
def test_only_a_pooled_machine_can_be_assigned(world: World, where: str) -> None:
    world.docker.release("launch", "remove")
    if where != "requested":
        world.machine.boot()
    if where in ("assigned", "idle"):
        assert world.servers.answer(ID)
        world.machine.assign()
    if where == "idle":
        world.machine.idle(1.0)
    if where == "culled":
        world.machine.cull("test")
    assert world.state() == where
    before = list(world.events)
    assert world.machine.assign() is None
    assert world.events == before


def test_a_route_that_cannot_be_added_fails_the_assignment_and_culls(world: World) -> None:
    world.boot_to_pooled()
    world.proxy.add_route = lambda path, target, **data: fail(ConnectionRefusedError("proxy down"))  # type: ignore[method-assign]
    d = world.machine.assign()
    assert d is not None
    failed(d, ConnectionRefusedError)
    assert world.moves()[-2:] == [("pooled", "assigned", "assign"), ("assigned", "culled", "cull")]
    assert world.events[-1].cause is not None and world.events[-1].cause.startswith("route not added")


def test_assigned_and_idle_follow_what_the_heartbeat_sees(world: World) -> None:
    world.assign()
    world.machine.activity(5.0)
    assert world.state() == "assigned"
    assert world.machine.describe()["last_activity"] == 5.0
    world.machine.idle(5.0)
    assert world.state() == "idle"
    assert world.machine.describe()["idle_since"] == 5.0
    world.machine.idle(5.0)  # still idle: nothing happens
    world.machine.activity(9.0)
    assert world.state() == "assigned"
    assert world.machine.describe()["last_activity"] == 9.0
    assert world.moves()[-2:] == [("assigned", "idle", "idle"), ("idle", "assigned", "activity")]


# -- culling --------------------------------------------------------------------------------


def test_culling_an_assigned_container_removes_route_container_and_socket_dir(world: World) -> None:
    world.assign()
    world.machine.cull("too old")
    assert world.moves()[-1] == ("assigned", "culled", "cull")
    assert world.events[-1].cause == "too old"
    assert world.routes.get(f"/user/{ID}") is None
    assert world.removed == []
    world.finish("remove")
    assert world.docker.ours() == []
    assert world.docker.socket_dirs == set()
    assert world.removed == [ID]
    assert world.machine.describe()["removed"] is True


@pytest.mark.parametrize("where", ["pooled", "assigned", "idle"])
def test_a_container_that_dies_is_culled(world: World, where: str) -> None:
    world.boot_to_pooled()
    if where != "pooled":
        world.machine.assign()
    if where == "idle":
        world.machine.idle(0.0)
    world.machine.exited("oom")
    assert world.moves()[-1] == (where, "culled", "exited")
    assert world.events[-1].cause == "oom"
    world.finish("remove")
    assert world.removed == [ID]


def test_culling_a_requested_machine_removes_nothing(world: World) -> None:
    world.machine.cull("stopping")
    assert world.moves() == [("requested", "culled", "cull")]
    assert world.docker.calls == []
    assert world.removed == [ID]


def test_culling_during_the_backoff_cancels_the_next_attempt(world: World) -> None:
    world.machine.boot()
    world.finish("launch", ok=False)
    world.finish("remove")
    world.machine.cull("stopping")
    # The failed attempt's container is already gone: nothing left to remove.
    assert world.docker.held_calls("remove") == []
    world.clock.advance(100)
    assert world.docker.held_calls("launch") == []
    assert world.clock.getDelayedCalls() == []
    assert world.removed == [ID]


def test_culling_during_a_readiness_wait_cancels_it(world: World) -> None:
    world.machine.boot()
    world.finish("launch")
    world.machine.cull("drained")
    assert world.servers.waiting() == []
    world.finish("remove")
    assert world.clock.getDelayedCalls() == []
    assert world.moves()[-1] == ("booting", "culled", "cull")
    assert world.removed == [ID]


# -- late and duplicate events ----------------------------------------------------------------


def test_a_launch_that_completes_after_the_cull_is_removed(world: World) -> None:
    world.machine.boot()
    world.machine.cull("stopping")
    # The launch cannot be called back: the machine waits for it before removing anything.
    assert world.docker.held_calls("remove") == []
    world.finish("launch")
    assert len(world.docker.running()) == 1
    [remove] = world.docker.held_calls("remove")
    assert remove.args[0] in world.docker.containers  # exactly the late container
    remove.succeed()
    assert world.docker.ours() == []
    assert world.removed == [ID]
    assert world.moves()[-1] == ("booting", "culled", "cull")


def test_a_launch_that_fails_after_the_cull_still_gets_its_name_removed(world: World) -> None:
    world.machine.boot()
    world.machine.cull("stopping")
    world.finish("launch", ok=False)
    world.finish("remove")
    assert world.removed == [ID]
    assert world.moves()[-1] == ("booting", "culled", "cull")


def test_a_readiness_answer_after_the_cull_changes_nothing(world: World) -> None:
    world.machine.boot()
    world.finish("launch")
    world.machine.cull("stopping")
    world.machine.ready()  # as if the answer had been on its way
    world.machine.bootFailed("late")
    world.machine.boot()  # a backoff timer that fired anyway
    assert world.moves()[-1] == ("booting", "culled", "cull")
    assert world.state() == "culled"


def test_a_second_cull_and_the_death_we_cause_do_nothing(world: World) -> None:
    world.boot_to_pooled()
    world.machine.cull("drained")
    world.machine.cull("stopping")
    world.finish("remove")
    world.clock.advance(0)  # Docker's die/destroy events
    world.machine.exited("die")
    world.machine.cull("again")
    world.machine.activity(3.0)
    world.machine.idle(3.0)
    assert [m for m in world.moves() if m[1] == "culled"] == [("pooled", "culled", "cull")]
    assert world.removed == [ID]
    assert world.machine.describe()["reason"] == "drained"


def test_a_removal_that_fails_is_retried_with_backoff(world: World) -> None:
    world.boot_to_pooled()
    world.machine.cull("drained")
    world.finish("remove", ok=False, cause="dockerd hung")
    world.clock.advance(CONFIG.backoff_initial - 0.01)
    assert world.docker.held_calls("remove") == []
    world.clock.advance(0.01)
    world.finish("remove")
    assert world.docker.ours() == []
    assert world.removed == [ID]


def test_a_removal_that_keeps_failing_is_logged_and_the_machine_still_ends(world: World) -> None:
    logged: list[dict] = []
    globalLogPublisher.addObserver(logged.append)
    try:
        world.boot_to_pooled()
        world.machine.cull("drained")
        for attempt in range(1, CONFIG.boot_attempts + 1):
            assert world.removed == []
            world.finish("remove", ok=False, cause="dockerd hung")
            world.clock.advance(backoff_delay(CONFIG, attempt))
    finally:
        globalLogPublisher.removeObserver(logged.append)
    assert world.removed == [ID]
    assert len(world.docker.running()) == 1  # left for the next start's cleanup
    failures = [e for e in logged if e.get("log_level") == LogLevel.critical and "log_failure" in e]
    assert any(e["log_failure"].check(FakeDockerError) for e in failures)


def test_a_hook_that_raises_does_not_stop_the_machine(world: World) -> None:
    def broken(event: TransitionEvent) -> None:
        raise RuntimeError("broken hook")

    world.core.on_transition = broken
    world.docker.release("launch", "remove")
    world.machine.boot()
    assert world.servers.answer(ID)
    assert world.state() == "pooled"


def test_a_handle_that_raises_instead_of_failing_becomes_a_failed_boot(world: World) -> None:
    def broken(request: object) -> None:
        raise OSError("socket root not writable")

    world.docker.launch = broken  # type: ignore[method-assign,assignment]
    world.machine.boot()
    assert world.moves()[-1] == ("booting", "booting", "bootFailed")
    assert world.events[-1].cause == "OSError: socket root not writable"


def test_describe_answers_in_every_state(world: World) -> None:
    seen = [world.state()]
    world.machine.boot()
    seen.append(world.state())
    world.finish("launch")
    world.servers.answer(ID)
    seen.append(world.state())
    world.machine.assign()
    seen.append(world.state())
    world.machine.idle(0.0)
    seen.append(world.state())
    world.machine.cull("done")
    seen.append(world.state())
    assert seen == ["requested", "booting", "pooled", "assigned", "idle", "culled"]
    assert world.machine.describe()["container"] == ID
