"""The pool and its machines against the real Docker engine and the real notebook image, on
the real reactor: ready servers, a death from outside, an image that cannot start, and a stop
that leaves nothing behind.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from typing import Any

import docker
import pytest
import pytest_twisted
from twisted.internet.task import deferLater
from twisted.python.threadpool import ThreadPool

from tmpnb import config, sockets
from tmpnb.dockerapi import INSTANCE_LABEL, DockerAPI, container_name, docker_client_factory
from tmpnb.pool import Assignment, Pool
from tmpnb.proxy.routes import RouteTable
from tmpnb.proxyapi import InProcessProxyAPI
from tmpnb.readiness import server_status, wait_ready
from tmpnb.states import TransitionEvent

pytestmark = pytest.mark.integration


class RealPool:
    """A Pool wired to the real Docker layer, readiness and in-process routes."""

    def __init__(self, reactor: Any, spec: config.ContainerSpec, pool_config: config.PoolConfig) -> None:
        self.reactor = reactor
        self.spec = spec
        self.threadpool = ThreadPool(minthreads=0, maxthreads=4, name="tmpnb-docker-test-pool")
        self.threadpool.start()
        self.docker = DockerAPI(reactor, self.threadpool, docker_client_factory(), spec, call_timeout=60)
        self.routes = RouteTable(reactor)
        self.events: list[TransitionEvent] = []
        self.pool = Pool(
            reactor,
            self.docker,
            wait_ready,
            InProcessProxyAPI(self.routes),
            spec,
            pool_config,
            on_transition=self.events.append,
        )

    async def until(self, condition: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = self.reactor.seconds() + timeout
        while not condition():
            if self.reactor.seconds() > deadline:
                raise AssertionError(f"not within {timeout}s: {what}; events: {self.events}")
            await deferLater(self.reactor, 0.1)

    async def stop(self, docker_client: docker.DockerClient) -> None:
        """Stop the pool and check it left no container and no socket directory."""
        try:
            await self.pool.stopService()
            assert docker_client.containers.list(
                all=True, filters={"label": f"{INSTANCE_LABEL}={self.spec.instance}"}
            ) == []
            instance_dir = os.path.join(self.spec.socket_root, self.spec.instance)
            assert not os.path.exists(instance_dir) or os.listdir(instance_dir) == []
            assert self.routes.all() == {}
        finally:
            self.docker.stop_watching()
            self.threadpool.stop()


def fast(**changes: Any) -> config.PoolConfig:
    return dataclasses.replace(
        config.PoolConfig(boot_timeout=30.0, backoff_initial=0.2, backoff_max=1.0), **changes
    )


@pytest_twisted.ensureDeferred
async def test_a_pool_of_three_becomes_ready_and_each_server_answers_over_its_socket(
    docker_client, container_spec
):
    from twisted.internet import reactor

    real = RealPool(reactor, container_spec, fast(pool_size=3, capacity=3))
    real.pool.startService()
    try:
        await real.until(lambda: real.pool.stats()["available"] == 3, 60, "3 pooled")
        assignments: list[Assignment] = []
        for _ in range(3):
            d = real.pool.acquire()
            assert d is not None
            assignments.append(await d)
        assert real.pool.acquire() is None  # capacity 3: no room for replacements
        assert len({a.container_id for a in assignments}) == 3
        for a in assignments:
            path = sockets.socket_path(container_spec, a.container_id)
            status = await server_status(reactor, path, a.path, a.token)
            assert "started" in status
            route = real.routes.get(a.path.rstrip("/"))
            assert route is not None and route["target"] == sockets.proxy_target(path)
    finally:
        await real.stop(docker_client)


@pytest_twisted.ensureDeferred
async def test_a_container_killed_from_outside_is_noticed_and_replaced(docker_client, container_spec):
    from twisted.internet import reactor

    real = RealPool(reactor, container_spec, fast(pool_size=1, capacity=2))
    real.pool.startService()
    try:
        await real.until(lambda: real.pool.stats()["available"] == 1, 60, "1 pooled")
        [victim] = [c["container"] for c in real.pool.containers()]
        docker_client.containers.get(container_name(container_spec.instance, victim)).kill()
        await real.until(
            lambda: any(e.container == victim and e.to_state == "culled" for e in real.events),
            20,
            "the death noticed",
        )
        await real.until(
            lambda: real.pool.stats()["available"] == 1 and real.pool.stats()["total"] == 1,
            60,
            "a replacement pooled and the dead one removed",
        )
        assert victim not in [c["container"] for c in real.pool.containers()]
        culled = [e for e in real.events if e.container == victim and e.to_state == "culled"]
        assert [(e.from_state, e.input) for e in culled] == [("pooled", "exited")]
        with pytest.raises(docker.errors.NotFound):
            docker_client.containers.get(container_name(container_spec.instance, victim))
        assert not os.path.exists(sockets.socket_dir(container_spec, victim))
    finally:
        await real.stop(docker_client)


@pytest_twisted.ensureDeferred
async def test_an_image_whose_command_exits_at_once_is_retried_then_culled_without_leaks(
    docker_client, container_spec
):
    from twisted.internet import reactor

    spec = dataclasses.replace(container_spec, command="sh -c 'exit 3'")
    real = RealPool(reactor, spec, fast(pool_size=1, capacity=1, boot_attempts=2, boot_timeout=20.0))
    real.pool.startService()
    try:
        await real.until(
            lambda: any(e.to_state == "culled" for e in real.events), 40, "the machine gives up"
        )
        first = real.events[0].container
        mine = [e for e in real.events if e.container == first]
        assert [(e.from_state, e.to_state, e.input) for e in mine] == [
            ("requested", "booting", "boot"),
            ("booting", "booting", "bootFailed"),
            ("booting", "booting", "bootFailed"),
            ("booting", "culled", "cull"),
        ]
        # Noticed from Docker's "die" event, not by waiting out the boot timeout.
        assert all("exited while booting" in (e.cause or "") for e in mine[1:3])
        assert mine[3].cause is not None and mine[3].cause.startswith("gave up after 2 boot attempts")
        assert mine[3].time - mine[0].time < 10
        await real.until(
            lambda: first not in [c["container"] for c in real.pool.containers()],
            20,
            "its container removed",
        )
        with pytest.raises(docker.errors.NotFound):
            docker_client.containers.get(container_name(spec.instance, first))
        assert not os.path.exists(sockets.socket_dir(spec, first))
    finally:
        await real.stop(docker_client)


@pytest_twisted.ensureDeferred
async def test_the_heartbeat_keeps_a_busy_server_and_culls_it_once_idle(docker_client, container_spec):
    from twisted.internet import reactor

    from tmpnb.readiness import unix_http_client

    real = RealPool(reactor, container_spec, fast(pool_size=1, capacity=2, cull_period=1.0, cull_timeout=4.0))
    real.pool.startService()
    try:
        await real.until(lambda: real.pool.stats()["available"] == 1, 60, "1 pooled")
        d = real.pool.acquire()
        assert d is not None
        visitor = await d
        http = unix_http_client(reactor, sockets.socket_path(container_spec, visitor.container_id))
        # The visitor works with the server directly (no proxy): only the server's own
        # last_activity, read from api/status, can keep the container.
        for _ in range(8):
            response = await http.get(
                f"http://localhost{visitor.path}api/contents",
                headers={"Authorization": f"token {visitor.token}"},
            )
            assert response.code == 200
            await response.content()
            await deferLater(reactor, 1.0)
        culled = [e for e in real.events if e.container == visitor.container_id and e.to_state == "culled"]
        assert culled == []
        await real.until(
            lambda: any(e.container == visitor.container_id and e.to_state == "culled" for e in real.events),
            10,
            "culled once idle",
        )
        [cull] = [e for e in real.events if e.container == visitor.container_id and e.to_state == "culled"]
        assert cull.cause is not None and cull.cause.startswith("idle: no activity for")
    finally:
        await real.stop(docker_client)
