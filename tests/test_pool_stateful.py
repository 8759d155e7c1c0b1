"""The pool under any order of events: hypothesis plays Docker (boots and removals finishing
in any order, boots failing, dockerd down, hung, restarted, coming back), the servers
(answering or not), the proxy (losing every route, as a restarted external proxy does),
visitors (arriving, working, leaving), time (with the heartbeat running), containers dying
from outside, and tmpnb stopping or restarting (a new pool adopting what the old one left
running). The invariants must hold after every step.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from itertools import count

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.logger import formatEvent, globalLogPublisher
from twisted.python.failure import Failure

from tests.builders import build_pool
from tests.fakedocker import FakeDocker, FakeServers
from tmpnb import sockets
from tmpnb.assignments import AssignmentMarks, assigned_dir
from tmpnb.config import ContainerSpec, PoolConfig
from tmpnb.dockerapi import DockerTimeout, DockerUnavailable
from tmpnb.pool import Assignment
from tmpnb.proxy.routes import RouteTable
from tmpnb.states import TransitionEvent

INSTANCE = "test-stateful"
HANDED_OUT = ("assigned", "idle")
# What a Docker outage makes the pool log as a failure (a listing or a removal that gave
# up); anything else logged as a failure is a bug.
DOCKER_FAULTS = (DockerUnavailable, DockerTimeout)


class PoolMachine(RuleBasedStateMachine):
    @initialize(
        pool_size=st.integers(1, 4),
        extra=st.integers(0, 3),
        attempts=st.integers(1, 3),
        leftovers=st.integers(0, 2),
        max_booting=st.integers(1, 4),
        adopt=st.booleans(),
        keep_assigned=st.booleans(),
        docker_at_start=st.sampled_from(["up", "up", "up", "down", "hung"]),
    )
    def start(
        self,
        pool_size: int,
        extra: int,
        attempts: int,
        leftovers: int,
        max_booting: int,
        adopt: bool,
        keep_assigned: bool,
        docker_at_start: str,
    ) -> None:
        # The socket root is real: the pool may keep state on the host under it.
        self.root = tempfile.mkdtemp(prefix="tnb-stateful-")
        self.spec = ContainerSpec(instance=INSTANCE, socket_root=self.root)
        self.max_booting = max_booting
        self.adopt = adopt
        self.keep_assigned = keep_assigned
        self.config = PoolConfig(
            pool_size=pool_size,
            capacity=pool_size + extra,
            boot_attempts=attempts,
            boot_timeout=5.0,
            backoff_initial=0.5,
            backoff_max=2.0,
            cull_period=10.0,
            cull_timeout=30.0,
            cull_max=60.0,
        )
        self.clock = Clock()
        self.docker = FakeDocker(self.clock, self.spec, call_timeout=3.0)
        self.docker.hold("launch")  # Docker finishes them when a rule says
        # Containers of ours no pool has seen yet: an earlier run's, at first.
        self.unseen = {f"leftover{n}" for n in range(leftovers)}
        for container_id in sorted(self.unseen):
            self.docker.plant(container_id)
        self.servers = FakeServers(self.docker)
        self.routes = RouteTable(self.clock)
        self.ids = count()
        self.failures: list[dict] = []  # anything logged as a failure, checked below
        globalLogPublisher.addObserver(self.log_failures)
        self.handed: list[Assignment] = []  # every assignment ever made
        self.assigned_at: dict[str, float] = {}  # when each was handed out, as the visitor saw it
        self.activity: dict[str, float] = {}  # the latest activity of each, as the visitor made it
        self.sent_away: set[str] = set()  # visitors' containers culled on the test's word
        self.unjust: list[str] = []  # visitors' containers culled without a reason
        self.kept: set[str] = set()  # visitors' containers the last stop left running
        # Socket directories without a container wait for the next heartbeat (or start) that
        # Docker answers: their container vanished before any pool saw it, or after removing
        # it gave up (Docker failing).
        self.vanished: set[str] = set()
        self.lost_sight: set[str] = set()  # vanished before any pool saw them
        self.ever_faulted = docker_at_start != "up"
        # Docker failed since the last heartbeat that Docker answered: a removal may have
        # given up, leaving a container no machine owns until the next heartbeat.
        self.docker_faulted = docker_at_start != "up"
        self.stopped = False
        if docker_at_start != "up":
            self.docker.go_down(hang=docker_at_start == "hung")
        self.start_pool(adopt, keep_assigned)
        self.docker.hold("remove")

    def start_pool(self, adopt: bool, keep_assigned: bool) -> None:
        if hasattr(self, "pool"):
            # What the stopped pool kept, and what it never saw (Docker was down throughout).
            self.unseen = self.kept | (set() if self.started_listing() else self.unseen)
        self.pool = build_pool(
            self.config,
            clock=self.clock,
            spec=self.spec,
            docker=self.docker,
            servers=self.servers,
            routes=self.routes,
            on_transition=self.judge_culls,
            # Ids in a known order, so hypothesis can replay what it found.
            new_id=lambda length: f"c{next(self.ids):04d}",
            max_booting=self.max_booting,
            adopt=adopt,
            keep_assigned=keep_assigned,
            # As tmpnb.tap wires it: visitors' containers are marked on the host.
            assignment_marks=AssignmentMarks(assigned_dir(self.spec)),
        ).pool
        self.adopt, self.keep_assigned = adopt, keep_assigned
        self.stopped = False
        # What Docker had answered before this start: the start has listed once more follow.
        self.answered_before_start = len(self.docker.answered)
        self.pool.startService()

    # -- Docker and the servers

    @rule(pick=st.integers(0, 100), ok=st.booleans())
    def a_boot_finishes(self, pick: int, ok: bool) -> None:
        calls = self.docker.held_calls("launch")
        if calls:
            call = calls[pick % len(calls)]
            call.succeed() if ok else call.fail("image broken")

    @rule(pick=st.integers(0, 100))
    def a_removal_finishes(self, pick: int) -> None:
        calls = self.docker.held_calls("remove")
        if calls:
            calls[pick % len(calls)].succeed()

    @rule(pick=st.integers(0, 100))
    def a_server_answers(self, pick: int) -> None:
        waiting = self.servers.waiting()
        if waiting:
            self.servers.answer(waiting[pick % len(waiting)])

    @rule()
    def docker_and_the_servers_catch_up(self) -> None:
        """Every boot in flight succeeds and its server answers: a quiet moment."""
        for call in self.docker.held_calls("launch"):
            call.succeed()
        for container_id in self.servers.waiting():
            self.servers.answer(container_id)

    @rule(pick=st.integers(0, 100))
    def a_container_dies(self, pick: int) -> None:
        running = sorted(self.docker.running())
        if running:
            self.docker.kill(running[pick % len(running)])

    @rule(pick=st.integers(0, 100))
    def a_container_vanishes_without_an_event(self, pick: int) -> None:
        running = sorted(self.docker.running())
        if running:
            container_id = running[pick % len(running)]
            self.vanished.add(container_id)
            if container_id in self.unseen and not self.started_listing():
                self.lost_sight.add(container_id)
            self.docker.vanish(container_id)

    @precondition(lambda self: self.docker.reachable)
    @rule(hang=st.booleans())
    def dockerd_fails(self, hang: bool) -> None:
        """dockerd goes down (every call refused) or hangs (every call times out)."""
        self.docker_faulted = self.ever_faulted = True
        self.docker.go_down(hang=hang)

    @precondition(lambda self: not self.docker.reachable)
    @rule()
    def dockerd_comes_back(self) -> None:
        self.docker.come_back()

    @rule()
    def dockerd_restarts(self) -> None:
        """Without live-restore: every container stops, and no event tells of it."""
        self.docker_faulted = True
        self.docker.restart_daemon()

    @rule()
    def the_proxy_loses_its_routes(self) -> None:
        """An external proxy restarted: its route table is empty."""
        for path in list(self.routes.all()):
            self.routes.remove(path)

    @rule(seconds=st.sampled_from([0.0, 0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0]))
    def time_passes(self, seconds: float) -> None:
        # Time flows rather than jumps, so every timer fires when it is due: the heartbeat
        # every cull_period, hung Docker calls after call_timeout, backoffs.
        while seconds > 0:
            step = min(seconds, 1.0)
            self.clock.advance(step)
            seconds -= step

    # -- the heartbeat, at a moment when Docker answers

    def no_docker_call_hangs(self) -> bool:
        return self.docker.reachable and not self.docker.hung

    @precondition(lambda self: not self.stopped and self.no_docker_call_hangs())
    @rule()
    def a_heartbeat_with_docker_answering(self) -> None:
        """One heartbeat while Docker answers (removals included): afterwards the proxy's
        routes and the running containers agree, and nothing of ours is left unowned."""
        self.finish_removals()  # a heartbeat of the timer, or the start, may wait on them
        done: list[object] = []
        self.pool.sweep().addBoth(done.append)
        self.finish_removals()  # orphans the heartbeat found
        assert done == [None]
        if self.started_listing():  # the start is over: the heartbeat saw everything
            self.docker_faulted = False
            self.routes_and_containers_agree()
            # Socket directories whose container vanished are swept too, unless a machine
            # still owns them (one still booting has not noticed yet).
            machines = {c["container"] for c in self.pool.containers()}
            self.vanished &= machines
            self.lost_sight &= machines
            assert self.docker.socket_dirs <= {sockets.socket_dir(self.spec, cid) for cid in machines}

    def finish_removals(self) -> None:
        for _ in range(10):
            calls = self.docker.held_calls("remove")
            if not calls:
                return
            for call in calls:
                call.succeed()

    def routes_and_containers_agree(self) -> None:
        handed_out = self.handed_out()
        running = self.docker.running()
        routed = {}
        for path, data in self.routes.all().items():
            # No route without a live container: a visitor's URL reaches their notebook
            # or the orchestrator ("gone"), never a dead socket or someone else's.
            assert data.get("container") in handed_out, (path, data)
            assert data["container"] in running, (path, data)
            routed[data["container"]] = (path, data["target"])
        # No live container handed out without its route.
        for container_id in handed_out:
            if container_id in running:
                target = sockets.proxy_target(sockets.socket_path(self.spec, container_id))
                assert routed.get(container_id) == (f"/user/{container_id}", target), container_id

    def handed_out(self) -> set[str]:
        return {c["container"] for c in self.pool.containers() if c["state"] in HANDED_OUT}

    # -- visitors

    @rule()
    def a_visitor_arrives(self) -> None:
        available = self.pool.stats()["available"]
        d = self.pool.acquire()
        if self.stopped or available == 0:
            assert d is None
            return
        assert d is not None
        outcome: list[Assignment | Failure] = []
        d.addBoth(outcome.append)
        # Never waits on Docker: the in-process proxy answers at once, so it has fired.
        [result] = outcome
        assert isinstance(result, Assignment), result
        self.handed.append(result)
        self.assigned_at[result.container_id] = self.activity[result.container_id] = self.clock.seconds()

    @rule(pick=st.integers(0, 100), through_proxy=st.booleans())
    def a_visitor_works(self, pick: int, through_proxy: bool) -> None:
        """Through the proxy (the route's last_activity) or in the server (its own)."""
        if self.handed:
            container_id = self.handed[pick % len(self.handed)].container_id
            if container_id not in self.docker.running():
                return  # a dead notebook sees no work
            if through_proxy:
                if self.routes.get(f"/user/{container_id}") is None:
                    return  # the visitor's requests reach no notebook
                self.routes.touch(f"/user/{container_id}")
            else:
                self.servers.touch(container_id, self.clock.seconds())
            self.activity[container_id] = self.clock.seconds()

    @rule(pick=st.integers(0, 100))
    def a_visitor_leaves(self, pick: int) -> None:
        if self.handed:
            container_id = self.handed[pick % len(self.handed)].container_id
            self.sent_away.add(container_id)
            self.pool.cull(container_id, "left")

    @rule(pick=st.integers(0, 100))
    def an_admin_culls_any_container(self, pick: int) -> None:
        live = sorted(c["container"] for c in self.pool.containers())
        if live:
            self.sent_away.add(live[pick % len(live)])
            self.pool.cull(live[pick % len(live)], "admin")

    @rule()
    def the_pool_is_drained(self) -> None:
        self.pool.drain()

    # -- the end, and restarts

    # The pool stops some time after it started (not at once: there would be little to see),
    # and then things may still happen: they must change nothing.
    @precondition(lambda self: not self.stopped and self.clock.seconds() >= 10)
    @rule(ok=st.booleans(), removals_first=st.booleans())
    def the_pool_stops(self, ok: bool, removals_first: bool) -> None:
        self.stop_and_check(ok, removals_first)

    @precondition(lambda self: not self.stopped)
    @rule(removals_first=st.booleans(), adopt=st.booleans(), keep_assigned=st.booleans())
    def tmpnb_restarts(self, removals_first: bool, adopt: bool, keep_assigned: bool) -> None:
        """Stop (the visitors' containers kept or not), and start a new pool over the same
        Docker, proxy and host directory, adopting what it finds or removing it; Docker may
        be down or hung meanwhile."""
        self.stop_and_check(ok=True, removals_first=removals_first)
        self.start_pool(adopt, keep_assigned)

    def teardown(self) -> None:
        try:
            self.docker.come_back()
            if not self.stopped:
                self.a_heartbeat_with_docker_answering()
                self.stop_and_check(ok=True, removals_first=True)
            # Whatever a stop kept or a Docker outage left, a start that cleans up and its
            # stop remove it all: nothing leaks.
            self.start_pool(adopt=False, keep_assigned=False)
            self.stop_and_check(ok=True, removals_first=True)
            assert self.docker.ours() == []
            assert self.docker.socket_dirs == set()
            assert self.routes.all() == {}
            assert self.files_on_the_host() == []
            self.nothing_was_logged_as_a_failure()
        finally:
            globalLogPublisher.removeObserver(self.log_failures)
            shutil.rmtree(self.root, ignore_errors=True)

    def log_failures(self, event: dict) -> None:
        if "log_failure" in event:
            self.failures.append(event)

    def judge_culls(self, event: TransitionEvent) -> None:
        """A visitor loses their container only for a reason: they left, an admin culled it,
        it was idle or too old, it died, or tmpnb stopped without keeping it."""
        if event.to_state != "culled" or event.from_state not in HANDED_OUT:
            return
        container_id, cause, now = event.container, event.cause or "", event.time
        if container_id in self.sent_away and cause in ("left", "admin"):
            return
        if cause.startswith("too old") and now - self.assigned_at.get(container_id, now) >= self.config.cull_max:
            return
        if cause.startswith("idle") and now - self.activity.get(container_id, now) >= self.config.cull_timeout:
            return
        if event.input == "exited" and container_id not in self.docker.running():
            return
        if cause == "stopping" and not self.keep_assigned:
            return
        self.unjust.append(f"{container_id} at {now:g}: {event.input} {cause}")

    def stop_and_check(self, ok: bool, removals_first: bool) -> None:
        done: list[object] = []
        self.kept = self.handed_out() if self.keep_assigned else set()
        d: Deferred[None] = self.pool.stopService()
        d.addBoth(done.append)
        self.stopped = True
        # Docker finishes whatever is in flight, launches ok or not, and time passes; a
        # Docker that is down or hung makes every call fail, which must not hold up the stop.
        for _ in range(100):
            if done:
                break
            calls = list(self.docker.held)
            if removals_first:
                calls.sort(key=lambda call: call.operation != "remove")
            for call in calls:
                call.succeed() if (ok or call.operation == "remove") else call.fail("late")
            self.clock.advance(1.0)
        assert done == [None]
        assert self.pool.stats()["states"] == {}
        self.after_stop_nothing_runs()
        self.only_kept_containers_keep_routes()

    def only_kept_containers_keep_routes(self) -> None:
        """After a stop, routes lead only to the visitors' containers it kept: none to a
        container culled, nor to an earlier run's that a start removed instead of adopting
        (only to one it never saw, Docker not answering its listing before the stop)."""
        allowed = self.kept | (set() if self.started_listing() else self.unseen)
        assert set(self.routes.all()) <= {f"/user/{cid}" for cid in allowed}, self.routes.all()

    def files_on_the_host(self) -> list[str]:
        return [os.path.join(path, name) for path, _, names in os.walk(self.root) for name in names]

    def unowned_allowed(self) -> set[str]:
        """Containers of ours Docker may have that no live machine owns, right now."""
        allowed = {call.args[1] for call in self.docker.held_calls("remove")}  # being removed
        if not self.started_listing():
            allowed |= self.unseen  # the pool cannot know of them yet
        if self.stopped:
            allowed |= self.kept  # left running by the stop for the next start
        if self.docker_faulted:
            # A removal that gave up during the outage: the next heartbeat removes it.
            allowed |= {c.container_id for c in self.docker.ours()}
        return allowed

    def socket_dirs_let_go(self) -> set[str]:
        """Containers whose socket directory may be left until the next heartbeat (above)."""
        return self.lost_sight | (self.vanished if self.ever_faulted else set())

    def started_listing(self) -> bool:
        """Docker has answered a listing since the current pool started."""
        return any(op == "list" for op, _ in self.docker.answered[self.answered_before_start :])

    # -- what must always hold

    @invariant()
    def nothing_was_logged_as_a_failure(self) -> None:
        bugs = [e for e in self.failures if not e["log_failure"].check(*DOCKER_FAULTS)]
        assert [formatEvent(e) + ": " + repr(e["log_failure"].value) for e in bugs] == []

    @invariant()
    def no_visitor_loses_their_container_without_a_reason(self) -> None:
        assert self.unjust == [], self.unjust

    @invariant()
    def no_container_is_handed_to_two_visitors(self) -> None:
        ids = [a.container_id for a in self.handed]
        assert len(ids) == len(set(ids))

    @invariant()
    def pooled_is_at_most_the_pool_size(self) -> None:
        assert self.pool.stats()["available"] <= self.config.pool_size

    @invariant()
    def total_is_at_most_the_capacity(self) -> None:
        assert self.pool.stats()["total"] <= self.config.capacity
        owned = {c["container"] for c in self.pool.containers()}
        assert len([c for c in self.docker.ours() if c.container_id in owned]) <= self.config.capacity
        # Even after an outage: a container whose removal gave up counts until it is gone.
        # Excused: an earlier run's the pool cannot know of yet, and those being removed.
        excused = {call.args[1] for call in self.docker.held_calls("remove")}
        if not self.started_listing():
            excused |= self.unseen
        assert len([c for c in self.docker.ours() if c.container_id not in excused]) <= self.config.capacity

    @invariant()
    def at_most_max_booting_boot_at_once(self) -> None:
        states = self.pool.stats()["states"]
        assert states.get("booting", 0) <= self.max_booting
        # A culled machine's launch cannot be called back: it may still be in flight.
        launches = self.docker.held_calls("launch") + [c for c in self.docker.hung if c.operation == "launch"]
        assert len(launches) <= self.max_booting + states.get("culled", 0)

    @invariant()
    def every_container_docker_has_belongs_to_a_live_machine(self) -> None:
        live = {c["container"] for c in self.pool.containers()} | self.unowned_allowed()
        assert {c.container_id for c in self.docker.ours()} <= live
        live |= self.socket_dirs_let_go()
        assert self.docker.socket_dirs <= {sockets.socket_dir(self.spec, cid) for cid in live}

    @invariant()
    def visitors_keep_their_containers_across_restarts(self) -> None:
        # Once the new pool has seen Docker's containers, each one a stop kept that still runs
        # is handed out again: the visitor still holds it.
        if self.stopped or not self.adopt or not self.started_listing():
            return
        handed_out = self.handed_out()
        being_removed = {call.args[1] for call in self.docker.held_calls("remove")}
        for container_id in self.kept & set(self.docker.running()):
            assert container_id in handed_out or container_id in being_removed, container_id

    def heartbeat_lag(self) -> float:
        """How late a cull may come: the next heartbeat, which, with dockerd hung, judges
        only once its listing of Docker's containers timed out."""
        return self.config.cull_period + self.docker.call_timeout

    @invariant()
    def no_visitor_keeps_a_container_past_the_maximum_age(self) -> None:
        # The heartbeat culls it at the first sweep after cull_max.
        now = self.clock.seconds()
        for container_id in self.handed_out():
            assert container_id in self.assigned_at, f"{container_id} is handed out, to no visitor"
            assert now - self.assigned_at[container_id] < self.config.cull_max + self.heartbeat_lag()

    @invariant()
    def no_container_stays_idle_past_the_cull_timeout(self) -> None:
        now = self.clock.seconds()
        for container_id in self.handed_out():
            assert container_id in self.activity, f"{container_id} is handed out, to no visitor"
            idle_for = now - self.activity[container_id]
            assert idle_for < self.config.cull_timeout + self.heartbeat_lag()

    @invariant()
    def after_stop_nothing_runs(self) -> None:
        # Nothing but the visitors' containers, when the pool keeps them for the next start.
        if self.stopped:
            assert {c.container_id for c in self.docker.ours()} <= self.unowned_allowed()
            assert self.docker.held == []
            assert self.pool.stats()["states"] == {}


PoolMachine.TestCase.settings = settings(
    max_examples=100,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_pool_stateful = PoolMachine.TestCase
