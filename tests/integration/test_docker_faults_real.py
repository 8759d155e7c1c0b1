"""Docker faults with the real engine, seen from outside `twistd -n tmpnb`.

A visitor whose container is killed behind tmpnb's back gets the friendly page and the
place is freed for the next one. dockerd stopped for a few seconds mid-run (its containers
die with it) leaves tmpnb serving; once it is back the lost machines are culled and the pool
refilled, and a tmpnb that was started while dockerd was down says so in /health and fills
its pool once Docker answers.

The dockerd tests stop the shared daemon: they are marked `dockerd_restart` and run only
with TMPNB_ALLOW_DOCKERD_RESTART=1 (CI runs tests one at a time and alone). dockerd is
always started again, as tools/setup does, whatever happens in between.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from tmpnb_process import (
    ALLOW_DOCKERD_RESTART,
    DockerdStopped,
    ID_LABEL,
    Launcher,
    Reply,
    Tmpnb,
    call,
    container_id_of,
    dockerd_restart_allowed,
    is_friendly_gone_page,
    visit,
    wait_until,
)

pytestmark = pytest.mark.integration

# Every visitor here is 127.0.0.1: one address may hold the whole capacity (tmpnb/clients/).
ARGS = ("--pool-size=2", "--capacity=4", "--cull-period=1", "--cull-timeout=120", "--client-share=1")
OUTAGE = 4.0  # seconds dockerd stays down once it has stopped
RECOVERY = 75.0  # refilling waits out the boot backoff the outage caused


@pytest.fixture(scope="module")
def launch(docker_client, notebook_image) -> Iterator[Launcher]:
    # dockerd is stopped on purpose: failed Docker calls are logged, and expected.
    launcher = Launcher(docker_client, "fault", expected_failures=("DockerUnavailable", "DockerTimeout"))
    yield launcher
    assert launcher.close(leftovers_allowed=True) == []


def container_ids(launch: Launcher, server: Tmpnb) -> set[str]:
    return {c.labels[ID_LABEL] for c in launch.instance_containers(server)}


def test_a_killed_container_gives_its_visitor_the_friendly_page_and_frees_its_place(launch, docker_client):
    server = launch("--pool-size=1", "--capacity=2", "--cull-period=1", "--cull-timeout=120", "--client-share=1")
    server.wait_available(1)
    prefix, token, _ = visit(server.base, "/spawn/notebooks/Welcome.ipynb")
    server.wait_available(1)
    assert server.stats()["total"] == 2  # one assigned, one pooled: capacity used up

    docker_client.containers.get(f"tmpnb-{server.instance}-{container_id_of(prefix)}").kill()

    page = wait_until(
        lambda: (lambda reply: reply if is_friendly_gone_page(reply) else None)(
            call(server.base, "GET", prefix + "notebooks/Welcome.ipynb")),
        10, "the friendly page for the killed container")
    assert b'href="/spawn/notebooks/Welcome.ipynb"' in page.body
    wait_until(lambda: container_id_of(prefix) not in container_ids(launch, server), 10, "the dead container removed")
    # Its place is free: the next visitor takes the pooled one and the pool refills beside it.
    visit(server.base)
    stats = server.wait_available(1)
    assert stats["total"] == 2


@dataclass
class Outage:
    """What was seen while dockerd was down, and the servers to look at afterwards."""

    running: Tmpnb  # started before the outage, with a visitor
    started_during: Tmpnb  # started while dockerd was down
    visitor: str  # the visitor's /user/<id>/
    lost: set[str]  # every container `running` had when dockerd stopped
    seen: dict[str, Reply] = field(default_factory=dict)
    stopping: float = 0.0
    starting: float = 0.0


def docker_state(reply: Reply) -> str:
    return reply.json()["docker"]["state"]


@pytest.fixture(scope="module")
def outage(launch) -> Outage:
    if not dockerd_restart_allowed():
        pytest.skip(f"stops the shared dockerd: set {ALLOW_DOCKERD_RESTART}=1 to run")
    running = launch(*ARGS)
    running.wait_available(2)
    visitor, _, _ = visit(running.base)
    running.wait_available(2)
    lost = container_ids(launch, running)
    assert len(lost) == 3
    with DockerdStopped() as dockerd:
        started_during = launch(*ARGS)
        outage = Outage(running, started_during, visitor, lost)
        outage.seen["running health"] = wait_until(
            lambda: (lambda r: r if docker_state(r) == "unreachable" else None)(running.health()),
            OUTAGE + 5, "running tmpnb noticing dockerd is down")
        outage.seen["started health"] = wait_until(
            lambda: (lambda r: r if docker_state(r) == "unreachable" else None)(started_during.health()),
            OUTAGE + 5, "tmpnb started without dockerd noticing it")
        time.sleep(max(0.0, OUTAGE - dockerd.stopping))
        outage.seen["running stats"] = call(running.base, "GET", "/api/stats")
        outage.seen["started stats"] = call(started_during.base, "GET", "/api/stats")
        outage.seen["started spawn"] = call(started_during.base, "POST", "/api/spawn")
    outage.stopping, outage.starting = dockerd.stopping, dockerd.starting
    return outage


@pytest.mark.dockerd_restart
def test_while_dockerd_is_down_tmpnb_keeps_serving_and_health_says_so(outage):
    for server in ("running", "started"):
        health = outage.seen[f"{server} health"]
        assert health.status == 503
        assert health.json()["status"] == "degraded"
        assert outage.seen[f"{server} stats"].status == 200
    # Started without Docker: it answers, with nothing to hand out yet.
    assert outage.seen["started stats"].json()["available"] == 0
    assert outage.seen["started spawn"].status == 429
    assert outage.stopping + OUTAGE + outage.starting < 20


@pytest.mark.dockerd_restart
def test_after_dockerd_returns_lost_machines_are_culled_and_the_pool_refilled(outage, launch):
    server = outage.running
    server.wait_available(2, timeout=RECOVERY)
    assert server.running()
    # Every container died with dockerd: the visitor gets the friendly page, not an error.
    assert is_friendly_gone_page(call(server.base, "GET", outage.visitor + "tree"))
    assert not outage.lost & set(server.containers())
    # Nothing leaks: Docker holds exactly the containers the pool has.
    wait_until(lambda: container_ids(launch, server) == set(server.containers()), 20,
               "Docker's containers matching the pool's")
    wait_until(lambda: server.health().status == 200, 20, "/health ok again")


@pytest.mark.dockerd_restart
def test_a_tmpnb_started_while_dockerd_was_down_fills_its_pool_once_it_is_back(outage, launch):
    server = outage.started_during
    server.wait_available(2, timeout=RECOVERY)
    assert server.running()
    wait_until(lambda: server.health().status == 200, 20, "/health ok")
    visit(server.base)
