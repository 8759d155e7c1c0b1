"""Prometheus metrics (tmpnb/metrics.py), fed by the real pool, machines, recorder, health
and proxy, on a Clock; read back as Prometheus' text format parsed by prometheus_client."""

from __future__ import annotations

import os

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.defer import Deferred, fail
from twisted.internet.task import Clock
from twisted.logger import Logger, globalLogPublisher

from tests.builders import build_pool
from tests.results import failed, succeeded
from tests.fakedocker import FakeDocker, FakeServers
from tmpnb.config import ContainerSpec, PoolConfig
from tmpnb.dockerapi import DockerTimeout
from tmpnb.health import Health
from tmpnb.lifecycle import NAMESPACE, LifecycleRecorder
from tmpnb.metrics import Metrics
from tmpnb.proxy.testing import ProxyHarness
from tmpnb.waitingline import WaitingLine

T0 = 1_700_000_000.0


def samples(metrics: Metrics) -> dict[tuple[str, tuple], float]:
    """Every sample of the registry's text exposition: (name, sorted labels) → value."""
    text = generate_latest(metrics.registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(metrics: Metrics, name: str, **labels: str) -> float:
    return samples(metrics)[(name, tuple(sorted(labels.items())))]


class Service:
    """The real Pool and machines over FakeDocker, on a Clock, wired to metrics as tap.py does."""

    def __init__(self, **config) -> None:
        self.clock = Clock()
        self.clock.advance(T0)
        spec = ContainerSpec(instance="test-metrics", socket_root="/tmp/tnb-metrics")
        self.docker = FakeDocker(self.clock, spec)
        self.servers = FakeServers(self.docker)
        self.metrics = Metrics(self.clock)
        recorder = LifecycleRecorder(Logger(namespace=NAMESPACE, observer=lambda e: None),
                                     records=[self.metrics.record])
        self.pool = build_pool(
            PoolConfig(**{"pool_size": 2, "capacity": 3, "boot_attempts": 2, "backoff_initial": 1.0,
                          "cull_period": 10_000, **config}),
            clock=self.clock, spec=spec, docker=self.docker, servers=self.servers, on_transition=recorder,
        ).pool
        self.metrics.watch_pool(self.pool)
        # Visitors come through the waiting line, which counts those it turns away (as
        # tap.py wires it); no line here: a visitor who would have to wait is turned away.
        self.line = WaitingLine(self.clock, self.pool, max_waiting=0, on_turned_away=self.metrics.no_vacancy.inc)


def test_boots_hand_outs_no_vacancy_and_culls_are_counted():
    service = Service()
    clock, docker, servers, metrics = service.clock, service.docker, service.servers, service.metrics
    docker.hold("launch")
    service.pool.startService()
    first, second = docker.held_calls("launch")
    first.succeed()
    second.fail("no such image")  # a failed attempt; retried after 1 s of backoff
    clock.advance(1.0)
    [retry] = docker.held_calls("launch")
    retry.succeed()
    clock.advance(1.5)
    for container_id in servers.waiting():
        servers.answer(container_id)

    assert value(metrics, "tmpnb_containers", state="pooled") == 2
    assert value(metrics, "tmpnb_boot_duration_seconds_count") == 2
    assert value(metrics, "tmpnb_boot_duration_seconds_sum") == 2.5 + 2.5  # both booting since the start
    assert value(metrics, "tmpnb_boot_failures_total", cause="launch-failed") == 1

    visitor = succeeded(service.pool.acquire()).container_id
    assert value(metrics, "tmpnb_handouts_total") == 1
    assert value(metrics, "tmpnb_containers", state="assigned") == 1

    succeeded(service.pool.acquire())  # the second pooled one
    assert service.line.take() is None  # the refills are still booting
    assert value(metrics, "tmpnb_no_vacancy_total") == 1
    assert value(metrics, "tmpnb_handouts_total") == 2

    assert service.pool.cull(visitor, "idle: no activity for 600s")
    assert value(metrics, "tmpnb_culls_total", reason="idle") == 1
    assert service.pool.stats()["states"] == {
        state: int(value(metrics, "tmpnb_containers", state=state))
        for state in ("booting", "assigned", "culled")
        if value(metrics, "tmpnb_containers", state=state)
    }
    service.pool.stopService()
    assert value(metrics, "tmpnb_culls_total", reason="stopping") >= 1


def test_a_boot_that_gives_up_counts_its_failures_and_one_boot_failed_cull():
    service = Service(pool_size=1, capacity=1)
    docker, metrics = service.docker, service.metrics
    docker.hold("launch")
    service.pool.startService()
    docker.held_calls("launch")[0].fail("no such image")
    service.clock.advance(1.0)
    docker.held_calls("launch")[0].fail("no such image")
    assert value(metrics, "tmpnb_boot_failures_total", cause="launch-failed") == 2
    assert value(metrics, "tmpnb_culls_total", reason="boot-failed") == 1
    service.pool.stopService()


def test_docker_calls_are_timed_by_operation_and_timeouts_counted():
    clock = Clock()
    metrics = Metrics(clock)
    answered: Deferred[str] = Deferred()
    passed = metrics.observe_docker_call("launch", answered)
    clock.advance(0.25)
    answered.callback("docker-id")
    assert succeeded(passed) == "docker-id"

    hung = metrics.observe_docker_call("remove", fail(DockerTimeout("remove after 30s")))
    failed(hung, DockerTimeout)

    assert value(metrics, "tmpnb_docker_call_duration_seconds_count", operation="launch") == 1
    assert value(metrics, "tmpnb_docker_call_duration_seconds_sum", operation="launch") == 0.25
    assert value(metrics, "tmpnb_docker_call_duration_seconds_bucket", operation="launch", le="0.25") == 1
    assert value(metrics, "tmpnb_docker_call_duration_seconds_bucket", operation="launch", le="0.1") == 0
    assert value(metrics, "tmpnb_docker_call_timeouts_total", operation="remove") == 1
    assert ("tmpnb_docker_call_timeouts_total", (("operation", "launch"),)) not in samples(metrics)


def test_health_of_docker_and_the_proxy_is_zero_or_one():
    clock = Clock()
    health = Health(clock)
    metrics = Metrics(clock)
    metrics.watch_health(health)
    assert value(metrics, "tmpnb_dependency_up", dependency="docker") == 0  # unknown yet
    health.docker_answered()
    health.proxy_failed("ConnectionRefusedError: refused")
    assert value(metrics, "tmpnb_dependency_up", dependency="docker") == 1
    assert value(metrics, "tmpnb_dependency_up", dependency="proxy") == 0
    health.docker_timed_out("DockerTimeout: list after 30s")
    assert value(metrics, "tmpnb_dependency_up", dependency="docker") == 0


def test_the_heartbeat_is_timed_from_its_own_log_event():
    service = Service(cull_period=60)
    observer = service.metrics.heartbeat_observer()
    globalLogPublisher.addObserver(observer)
    try:
        service.pool.startService()
        for container_id in service.servers.waiting():
            service.servers.answer(container_id)
        service.clock.advance(60)  # one heartbeat
    finally:
        globalLogPublisher.removeObserver(observer)
        service.pool.stopService()
    assert value(service.metrics, "tmpnb_heartbeat_duration_seconds_count") == 1


def test_the_embedded_proxy_counts_requests_bytes_and_open_websockets():
    harness = ProxyHarness()
    harness.routes.add("/user/a", {"target": harness.unix_target("a")})
    metrics = Metrics(harness.reactor)
    metrics.watch_proxy(harness.factory)

    request = b"GET /user/a/api/status HTTP/1.1\r\nHost: h\r\n\r\n"
    visitor = harness.visit()
    visitor.send(request)
    backend = harness.accept()
    backend.received()
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"
    backend.send(answer)
    assert visitor.received().endswith(b"{}")
    assert value(metrics, "tmpnb_proxy_requests_total") == 1
    assert value(metrics, "tmpnb_proxy_bytes_total", direction="in") == len(request)
    assert value(metrics, "tmpnb_proxy_bytes_total", direction="out") == len(answer)

    upgrade = (b"GET /user/a/api/kernels/k/channels HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\n"
               b"Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
    socket = harness.visit()
    socket.send(upgrade)
    ws_backend = harness.accept()
    ws_backend.received()
    ws_backend.send(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n")
    socket.received()
    assert value(metrics, "tmpnb_proxy_websockets_open") == 1
    assert value(metrics, "tmpnb_proxy_requests_total") == 2
    socket.close()
    assert value(metrics, "tmpnb_proxy_websockets_open") == 0
    assert value(metrics, "tmpnb_proxy_routes") == 1
    harness.routes.add("/user/b", {"target": harness.unix_target("b")})
    assert value(metrics, "tmpnb_proxy_routes") == 2


def test_the_process_open_fds_and_memory_are_measured():
    """A long day's creep (fds, memory) shows on /metrics, per node."""
    metrics = Metrics(Clock())
    # Counted by listing /proc/self/fd, as this does: give or take the listings' own fds.
    assert abs(value(metrics, "process_open_fds") - len(os.listdir("/proc/self/fd"))) <= 2
    assert value(metrics, "process_resident_memory_bytes") > 10 * 2**20


def test_each_service_has_its_own_registry():
    one, other = Metrics(Clock()), Metrics(Clock())
    one.handouts.inc()
    assert value(one, "tmpnb_handouts_total") == 1
    assert value(other, "tmpnb_handouts_total") == 0
