"""Restarts keep visitors, and never hand one visitor's container to another.

Every assignment leaves a marker on the host (tmpnb/assignments.py) that lives as long as
the container. On start, a container with a marker is a visitor's, opened or not, even
when the embedded proxy lost every route with the process that restarted; one without a
marker, route or use is pooled again after its readiness check.

In memory: FakeDocker, FakeServers, the real route table and marker files in tmp_path.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from twisted.internet.task import Clock

from tests.builders import build_pool
from tests.fakedocker import FakeDocker, FakeServers
from tests.results import succeeded
from tmpnb.assignments import AssignmentMarks, assigned_dir
from tmpnb.config import ContainerSpec, PoolConfig
from tmpnb.pool import Pool
from tmpnb.proxy.routes import RouteTable
from tmpnb.servertokens import ServerTokens, secret_path
from tmpnb.states import TransitionEvent



@dataclass
class Host:
    """What outlives a tmpnb process: dockerd, the servers, the marker files and the clock."""

    root: Path
    clock: Clock = field(default_factory=Clock)

    def __post_init__(self) -> None:
        self.spec = ContainerSpec(instance="test-adopt", socket_root=str(self.root))
        self.docker = FakeDocker(self.clock, self.spec)
        self.servers = FakeServers(self.docker)
        self.marks = AssignmentMarks(assigned_dir(self.spec))
        # The instance secret outlives the process too: each run reads it from its file.
        self.secret_file = secret_path(self.spec.socket_root, self.spec.instance)
        self.clock.advance(1000)

    def tmpnb(self, adopt: bool = True, keep_assigned: bool = True, routes: RouteTable | None = None,
              config: PoolConfig = PoolConfig(pool_size=1, capacity=4, cull_max=300.0)) -> "Run":
        """One tmpnb process; a fresh route table unless given: the embedded proxy's routes
        die with the process."""
        return Run(self, routes or RouteTable(self.clock), adopt, keep_assigned, config)

    def answer_all(self) -> None:
        while self.servers.waiting():
            for container_id in self.servers.waiting():
                self.servers.answer(container_id)


@dataclass
class Run:
    host: Host
    routes: RouteTable
    adopt: bool
    keep_assigned: bool
    config: PoolConfig
    events: list[TransitionEvent] = field(default_factory=list)

    def __post_init__(self) -> None:
        host = self.host
        self.pool = build_pool(
            self.config, clock=host.clock, spec=host.spec, docker=host.docker, servers=host.servers,
            routes=self.routes, on_transition=self.events.append, adopt=self.adopt,
            keep_assigned=self.keep_assigned, assignment_marks=host.marks,
            token_for=ServerTokens.from_file(host.secret_file).token_for,
        ).pool

    def start(self) -> "Run":
        self.pool.startService()
        self.host.answer_all()
        return self

    def hand_out(self) -> str:
        d = self.pool.acquire()
        assert d is not None
        container_id = succeeded(d).container_id
        self.host.answer_all()  # the replacement
        return container_id

    def stop(self) -> None:
        succeeded(self.pool.stopService())

    def states(self) -> dict[str, str]:
        return {c["container"]: c["state"] for c in self.pool.containers()}


@pytest.fixture
def host(tmp_path: Path) -> Host:
    return Host(tmp_path)


# -- the markers themselves -------------------------------------------------------------------


def test_a_marker_records_when_and_goes_away(tmp_path: Path) -> None:
    marks = AssignmentMarks(str(tmp_path / "i.assigned"))
    marks.mark("abc123", 1234.5)
    assert marks.recorded() == {"abc123": 1234.5}
    assert stat.S_IMODE(os.stat(tmp_path / "i.assigned").st_mode) == 0o700  # tmpnb's own
    marks.unmark("abc123")
    marks.unmark("abc123")  # already gone is fine
    assert marks.recorded() == {}


def test_names_that_are_not_container_ids_are_neither_written_nor_read(tmp_path: Path) -> None:
    marks = AssignmentMarks(str(tmp_path / "i.assigned"))
    marks.mark("../escape", 1.0)
    assert not (tmp_path / "escape").exists()
    marks.mark("ok1", 2.0)
    (tmp_path / "i.assigned" / "x.y").write_text("1")
    (tmp_path / "i.assigned" / "garbled").write_text("not a time")
    assert marks.recorded() == {"ok1": 2.0, "garbled": None}


def test_the_markers_live_beside_not_inside_the_containers_socket_directories(host: Host) -> None:
    inside = os.path.join(host.spec.socket_root, host.spec.instance) + os.sep
    assert not assigned_dir(host.spec).startswith(inside)


def test_no_directory_means_no_markers(tmp_path: Path) -> None:
    assert AssignmentMarks(str(tmp_path / "missing")).recorded() == {}


# -- the pool keeps them ----------------------------------------------------------------------


def test_handing_out_records_the_assignment_before_the_visitor_gets_the_url(host: Host) -> None:
    run = host.tmpnb().start()
    d = run.pool.acquire()
    assert d is not None
    container_id = succeeded(d).container_id
    assert host.marks.recorded() == {container_id: 1000.0}
    assert run.pool.stats()["available"] == 0  # and it left the pool as usual
    assert run.pool.acquire() is None


def test_the_marker_goes_only_once_the_container_is_removed(host: Host) -> None:
    run = host.tmpnb().start()
    visitor = run.hand_out()
    host.docker.hold("remove")
    run.pool.cull(visitor, "admin")
    [removal] = host.docker.held_calls("remove")
    removal.fail("dockerd hung")
    assert visitor in host.marks.recorded()  # the container may still be there: so is the marker
    host.clock.advance(1)  # the retry
    host.docker.held_calls("remove")[0].succeed()
    assert host.marks.recorded() == {}


def test_a_stop_that_keeps_the_visitors_keeps_their_markers_and_cleanup_removes_them(host: Host) -> None:
    run = host.tmpnb(keep_assigned=True).start()
    visitor = run.hand_out()
    run.stop()
    assert set(host.docker.running()) == {visitor}
    assert set(host.marks.recorded()) == {visitor}

    cleaning = host.tmpnb(adopt=False).start()  # --cleanup-on-start
    assert visitor not in host.docker.running()
    assert visitor not in host.marks.recorded()
    cleaning.stop()


def test_markers_of_containers_that_no_longer_exist_are_forgotten_at_start(host: Host) -> None:
    host.marks.mark("gone1", 900.0)
    host.tmpnb().start()
    assert "gone1" not in host.marks.recorded()


# -- adoption -----------------------------------------------------------------------------------


def test_a_container_handed_out_but_never_opened_is_not_pooled_again_after_a_restart(host: Host) -> None:
    # The embedded proxy: its routes die with tmpnb. The visitor got a URL and has not opened
    # it yet: their server saw no activity (FakeServers reports last_activity == started
    # until touched), exactly like a pooled one.
    first = host.tmpnb().start()
    visitor = first.hand_out()
    first.stop()

    second = host.tmpnb().start()  # a new route table: no routes
    assert second.states()[visitor] == "assigned"
    assert second.routes.get(f"/user/{visitor}") is not None  # their URL works again
    d = second.pool.acquire()  # and the next visitor gets another container
    assert d is not None and succeeded(d).container_id != visitor
    second.stop()


def test_an_unmarked_unused_container_is_pooled_again(host: Host) -> None:
    first = host.tmpnb().start()
    [pooled] = first.states()
    host.clock.advance(10)
    # A hard kill: nothing is removed, nothing runs the stop.
    second = host.tmpnb()
    second.pool.startService()
    assert second.states() == {pooled: "booting"}  # only its readiness check is left
    host.answer_all()
    assert second.states() == {pooled: "pooled"}


def test_a_visitors_container_is_adopted_with_its_derived_token_none_being_in_docker(host: Host) -> None:
    first = host.tmpnb().start()
    visitor = first.hand_out()
    token = first.pool.token(visitor)
    first.stop()
    [container] = [c for c in host.docker.ours() if c.container_id == visitor]
    assert token not in repr(container.labels)  # nothing secret in Docker

    second = host.tmpnb().start()  # a new process: it derives the same token from the file
    assert second.states()[visitor] == "assigned"
    assert second.pool.token(visitor) == token
    second.stop()


def test_an_earlier_versions_container_is_adopted_by_its_token_label(host: Host) -> None:
    host.docker.plant("oldvisitor", token="from-the-label")  # labelled, as tmpnb used to
    host.marks.mark("oldvisitor", 990.0)
    run = host.tmpnb().start()
    assert run.states()["oldvisitor"] == "assigned"
    assert run.pool.token("oldvisitor") == "from-the-label"
    run.stop()


def test_a_container_whose_server_refuses_the_derived_token_is_removed(host: Host) -> None:
    """Another secret (the file was replaced): its server answers 403, so it is not adopted."""
    host.docker.plant("strange", token="not-derived", labelled=False)
    run = host.tmpnb().start()
    assert "strange" not in run.states()
    assert "strange" not in host.docker.running()
    run.stop()


def test_cull_max_counts_from_the_first_assignment_recorded_in_the_marker(host: Host) -> None:
    first = host.tmpnb().start()
    visitor = first.hand_out()  # at t=1000
    first.stop()
    host.clock.advance(200)
    second = host.tmpnb().start()
    culled = [e for e in second.events if e.container == visitor and e.to_state == "culled"]
    assert culled == []
    host.clock.advance(100)  # the heartbeat at t=1360 finds it assigned 360 s ago > cull_max 300
    [cull] = [e for e in second.events if e.container == visitor and e.to_state == "culled"]
    assert cull.cause is not None and cull.cause.startswith("too old")


def test_a_restart_is_not_the_visitors_activity(tmp_path):
    """Adding the route again stamps its last_activity; that must not keep an idle
    container alive past --cull-timeout (a crash loop would otherwise keep it to cull_max)."""
    clock = Clock()
    spec = ContainerSpec(instance="restart", socket_root=str(tmp_path))
    docker = FakeDocker(clock, spec)
    servers = FakeServers(docker)
    routes = RouteTable(clock)
    config = PoolConfig(pool_size=1, capacity=2, cull_period=10, cull_timeout=30, cull_max=600)

    def pool() -> Pool:
        return build_pool(config, clock=clock, spec=spec, docker=docker, servers=servers, routes=routes,
                          adopt=True, keep_assigned=True, assignment_marks=AssignmentMarks(assigned_dir(spec))).pool

    first = pool()
    first.startService()
    servers.answer(servers.waiting()[0])
    visitor = succeeded(first.acquire())  # assigned at 0, never active again
    clock.advance(25)
    first.stopService()
    clock.advance(1)
    second = pool()
    second.startService()  # adopts it and adds its route again at 26
    assert routes.get(f"/user/{visitor.container_id}") is not None
    for _ in range(25):
        clock.advance(1)
    assert visitor.container_id not in docker.running()  # idle since 0: culled by 40
    second.stopService()


# -- restart grace: the visitor's activity outlives the process that saw it ----------------------

GRACE = PoolConfig(pool_size=1, capacity=4, cull_period=10, cull_timeout=30, cull_max=600)


def culls_of(run: Run, container_id: str) -> list[TransitionEvent]:
    return [e for e in run.events if e.container == container_id and e.to_state == "culled"]


def test_activity_only_the_proxy_saw_is_kept_by_a_stop_for_the_next_start(host: Host) -> None:
    first = host.tmpnb(config=GRACE).start()
    visitor = first.hand_out()  # at 1000; the heartbeats at 1010 and 1020 find it idle
    host.clock.advance(25)
    first.routes.touch(f"/user/{visitor}")  # the visitor works at 1025: only the proxy sees it
    host.clock.advance(1)
    first.stop()  # the embedded proxy's record dies with the process

    second = host.tmpnb(config=GRACE).start()
    host.clock.advance(25)  # heartbeats at 1036, 1046: 21 s since the visitor's work < 30
    assert culls_of(second, visitor) == []
    assert second.states()[visitor] in ("assigned", "idle")
    host.clock.advance(10)  # 1056: 31 s without activity, counted from the real last one
    [cull] = culls_of(second, visitor)
    assert cull.cause is not None and cull.cause.startswith("idle")


def test_activity_a_heartbeat_saw_survives_a_hard_kill(host: Host) -> None:
    first = host.tmpnb(config=GRACE).start()
    visitor = first.hand_out()  # at 1000
    host.clock.advance(8)
    first.routes.touch(f"/user/{visitor}")  # at 1008
    host.clock.advance(2)  # the heartbeat at 1010 records it
    assert host.marks.last_activity(visitor) == 1008
    # A hard kill right after: nothing runs the stop (its heartbeats end with it).
    first.pool._heartbeats.stop()

    host.clock.advance(10)
    second = host.tmpnb(config=GRACE).start()  # at 1020
    host.clock.advance(10)  # its first heartbeat, at 1030: 22 s since the visitor's work < 30
    assert culls_of(second, visitor) == []
    host.clock.advance(10)  # 1040: 32 s
    assert [e.cause.split(":")[0] for e in culls_of(second, visitor)] == ["idle"]
