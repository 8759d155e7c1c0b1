"""Health: what /health says about dockerd and the proxy API, given what the parts report."""

from __future__ import annotations

import secrets

import docker.errors
import pytest
import pytest_twisted
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.internet.threads import deferToThread
from twisted.logger import LogLevel
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

from tests.results import failed, succeeded
from tmpnb.config import ContainerSpec
from tmpnb.dockerapi import (
    DockerAPI,
    DockerTimeout,
    DockerUnavailable,
    NotOurs,
    docker_client_factory,
)
from tmpnb.health import Health


@pytest.fixture
def clock() -> Clock:
    clock = Clock()
    clock.advance(1_700_000_000)
    return clock


@pytest.fixture
def health(clock: Clock) -> Health:
    return Health(clock)


def docker_state(health: Health) -> str:
    return health.snapshot()["docker"]["state"]


def test_nothing_is_known_at_start(health):
    snap = health.snapshot()
    assert snap["status"] == "starting"
    assert snap["docker"]["state"] == snap["proxy"]["state"] == "unknown"
    assert not health.healthy()


def test_ok_when_docker_and_proxy_answer(health):
    health.docker_ping(answered=True)
    health.proxy_ok()
    assert health.snapshot()["status"] == "ok"
    assert health.healthy()


def test_dockerd_down_at_start_then_coming_up(health, clock):
    health.docker_ping(answered=False, cause="ConnectionRefusedError")
    health.proxy_ok()
    snap = health.snapshot()
    assert snap["status"] == "degraded"
    assert snap["docker"] == {
        "state": "unreachable",
        "since": "2023-11-14T22:13:20+00:00",
        "cause": "ConnectionRefusedError",
    }
    clock.advance(30)
    health.docker_ping(answered=True)
    snap = health.snapshot()
    assert snap["status"] == "ok"
    assert snap["docker"] == {"state": "ok", "since": "2023-11-14T22:13:50+00:00", "cause": None}


def test_hung_dockerd_answers_ping_but_ping_does_not_clear_hung(health):
    health.docker_ping(answered=True)
    health.docker_timed_out("DockerTimeout: list_ours after 30s")
    health.docker_ping(answered=True)
    assert docker_state(health) == "hung"
    assert health.snapshot()["docker"]["cause"] == "DockerTimeout: list_ours after 30s"
    # only a real call that answers shows dockerd is back
    health.docker_answered()
    assert docker_state(health) == "ok"


def test_a_failed_ping_while_hung_means_unreachable(health):
    health.docker_timed_out("DockerTimeout")
    health.docker_ping(answered=False, cause="ConnectionRefusedError")
    assert docker_state(health) == "unreachable"


def test_since_only_moves_when_the_state_changes(health, clock):
    health.docker_timed_out("first")
    since = health.snapshot()["docker"]["since"]
    clock.advance(60)
    health.docker_timed_out("second")
    assert health.snapshot()["docker"]["since"] == since
    assert health.snapshot()["docker"]["cause"] == "second"


def test_proxy_api_failure_degrades(health):
    health.docker_answered()
    health.proxy_failed("ConnectionRefusedError: 127.0.0.1:8001")
    snap = health.snapshot()
    assert snap["status"] == "degraded"
    assert snap["proxy"]["state"] == "unreachable"


@pytest.mark.parametrize(
    "failure, expected",
    [
        (DockerTimeout("inspect after 30s"), "hung"),
        (DockerUnavailable("connection refused"), "unreachable"),
        # dockerd answered these, if with an error
        (docker.errors.NotFound("No such container"), "ok"),
        (NotOurs("abc"), "ok"),
    ],
)
def test_observe_docker_call_failures(health, failure, expected):
    d: Deferred[str] = Deferred()
    observed = health.observe_docker_call(d)
    d.errback(failure)
    assert docker_state(health) == expected
    # the caller still gets the failure
    assert failed(observed).value is failure


def test_observe_docker_call_passes_results_through(health):
    health.docker_timed_out("DockerTimeout")
    d: Deferred[str] = Deferred()
    observed = health.observe_docker_call(d)
    d.callback("abc123")
    assert succeeded(observed) == "abc123"
    assert docker_state(health) == "ok"


def test_state_changes_are_logged_once(health, logged):
    health.docker_timed_out("DockerTimeout: a")
    health.docker_timed_out("DockerTimeout: b")
    health.docker_answered()
    changes = [
        (e["component"], e["state"], e["log_level"])
        for e in logged
        if e["log_namespace"] == "tmpnb.health"
    ]
    assert changes == [("docker", "hung", LogLevel.warn), ("docker", "ok", LogLevel.info)]


# -- fault drills: the real DockerAPI and docker-py, on the real reactor -------------------
# No Docker engine is involved: "dockerd" is a unix socket that answers /_ping and leaves
# every other request hanging (how dockerd 20.10 deadlocks), or no socket at all (down).


class HungDockerd(Resource):
    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.hanging: list = []

    def render(self, request):
        if request.path.endswith(b"/_ping"):
            return b"OK"
        self.hanging.append(request)
        return NOT_DONE_YET


async def collect(d: Deferred) -> Failure | object:
    try:
        return await d
    except Exception:
        return Failure()


@pytest_twisted.ensureDeferred
async def test_drill_hung_dockerd_shows_as_hung_and_ping_does_not_hide_it(tmp_path):
    from twisted.internet import reactor
    from twisted.internet.endpoints import UNIXServerEndpoint

    dockerd = HungDockerd()
    sock = str(tmp_path / "docker.sock")
    port = await UNIXServerEndpoint(reactor, sock).listen(Site(dockerd))
    threadpool = ThreadPool(0, 2, name="test-health-docker")
    threadpool.start()
    health = Health(reactor)
    docker = DockerAPI(
        reactor, threadpool, docker_client_factory(f"unix://{sock}", timeout=5, version="1.41"),
        ContainerSpec(instance=f"test-health-{secrets.token_hex(4)}"), call_timeout=0.5,
    )
    try:
        health.docker_ping(await docker.ping())
        assert docker_state(health) == "ok"
        listed = await collect(health.observe_docker_call(docker.list_ours()))
        assert listed.check(DockerTimeout)
        health.docker_ping(await docker.ping())
        snap = health.snapshot()
        assert snap["docker"]["state"] == "hung"
        assert snap["docker"]["cause"].startswith("DockerTimeout: docker list")
    finally:
        for request in dockerd.hanging:  # frees the stuck worker thread
            request.channel.transport.loseConnection()
        await port.stopListening()
        await deferToThread(threadpool.stop)


@pytest_twisted.ensureDeferred
async def test_drill_dockerd_down_shows_as_unreachable(tmp_path):
    from twisted.internet import reactor

    threadpool = ThreadPool(0, 2, name="test-health-docker")
    threadpool.start()
    health = Health(reactor)
    missing = str(tmp_path / "no-docker.sock")
    docker = DockerAPI(
        reactor, threadpool, docker_client_factory(f"unix://{missing}", timeout=5, version="1.41"),
        ContainerSpec(instance=f"test-health-{secrets.token_hex(4)}"), call_timeout=5,
    )
    try:
        listed = await collect(health.observe_docker_call(docker.list_ours()))
        assert listed.check(DockerUnavailable)
        assert docker_state(health) == "unreachable"
        health.docker_ping(await docker.ping())
        assert docker_state(health) == "unreachable"
    finally:
        await deferToThread(threadpool.stop)
