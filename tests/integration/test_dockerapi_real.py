"""The Docker layer against the real engine and the real notebook image, on the real
reactor; and docker-py against a dockerd that is missing or hung (a fake one on a unix
socket that answers /_ping and nothing else, as dockerd 20.10 did when it deadlocked).
"""

from __future__ import annotations

import json
import os
import socket
from typing import Any

import docker
import docker.errors
import pytest
import pytest_twisted
from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThread
from twisted.python.threadpool import ThreadPool
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

from tmpnb import config, sockets
from tmpnb.dockerapi import (
    INSTANCE_LABEL,
    DockerAPI,
    DockerTimeout,
    DockerUnavailable,
    LaunchRequest,
    docker_client_factory,
)
from tmpnb.readiness import server_status, unix_http_client, wait_ready

pytestmark = pytest.mark.integration

MiB = 1024 * 1024


def started_pool(max_workers: int = 4) -> ThreadPool:
    pool = ThreadPool(minthreads=0, maxthreads=max_workers, name="tmpnb-docker-test")
    pool.start()
    return pool


def processes_of(docker_id: str) -> dict[int, bytes]:
    """/proc/<pid>/cmdline of every host process in the container's cgroup, by pid: what `ps`
    shows any user of the host."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cgroup", "rb") as cgroup:
                if docker_id.encode() not in cgroup.read():
                    continue
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                found[int(entry)] = cmdline.read()
        except OSError:  # the process ended meanwhile
            continue
    return found


def request_for(spec: config.ContainerSpec, container_id: str) -> LaunchRequest:
    return LaunchRequest(
        container_id=container_id,
        token="tok" + container_id,
        base_path=f"/user/{container_id}/",
        socket_dir=sockets.socket_dir(spec, container_id),
        spec=spec,
    )


@pytest_twisted.ensureDeferred
async def test_launch_ready_list_and_remove_a_real_container(
    docker_client, container_spec, instance
):
    from twisted.internet import reactor

    pool = started_pool()
    api = DockerAPI(reactor, pool, docker_client_factory(timeout=60), container_spec, 90.0)
    request = request_for(container_spec, "it1")
    foreign = None
    try:
        docker_id = await api.launch(request)

        attrs = await deferToThread(lambda: docker_client.api.inspect_container(docker_id))
        host = attrs["HostConfig"]
        assert attrs["State"]["Running"]
        assert attrs["Config"]["User"] == "1000:1000"
        assert host["NetworkMode"] == "none"
        assert (host["Memory"], host["MemorySwap"]) == (512 * MiB, 512 * MiB)
        assert (host["CpuQuota"], host["CpuPeriod"]) == (100_000, 100_000)
        assert host["PidsLimit"] == 256
        assert host["CapDrop"] == ["ALL"]
        assert host["SecurityOpt"] == ["no-new-privileges"]
        assert attrs["Config"]["Labels"][INSTANCE_LABEL] == instance
        assert os.stat(request.socket_dir).st_uid == 1000

        path = sockets.socket_path(container_spec, "it1")
        status = await wait_ready(reactor, path, request.base_path, request.token, 60, 0.1)
        assert {"started", "last_activity", "connections", "kernels"} <= status.keys()
        again = await server_status(reactor, path, request.base_path, request.token)
        assert again["started"] == status["started"]

        # The token guards the server, and neither a process list nor `docker inspect` shows it:
        # the server read it from a 0600 file of its socket directory.
        assert request.token not in json.dumps(attrs)
        refused = await unix_http_client(reactor, path).get(
            f"http://localhost{request.base_path}api/status", headers={"Authorization": "token wrong"}
        )
        await refused.content()
        assert refused.code == 403
        command_lines = processes_of(docker_id)
        assert any(b"jupyter" in line for line in command_lines.values()), command_lines
        assert not [pid for pid, line in command_lines.items() if request.token.encode() in line]

        # The notebook may only be framed where the spec allows.
        response = await unix_http_client(reactor, path).get(
            f"http://localhost{request.base_path}tree",
            headers={"Authorization": f"token {request.token}"},
        )
        await response.content()
        csp = response.headers.getRawHeaders("content-security-policy")
        assert csp and "frame-ancestors 'self'" in csp[0]

        # Another tmpnb instance's container on the same dockerd stays invisible to us.
        foreign = await deferToThread(
            docker_client.containers.create,
            container_spec.image,
            ["sleep", "60"],
            labels={INSTANCE_LABEL: instance + "-other"},
            network_mode="none",
        )
        records = await api.list_ours()
        assert [(r.docker_id, r.container_id, r.token) for r in records] == [
            (docker_id, "it1", "")  # derived, never read back from Docker
        ]
        assert records[0].running

        await api.remove(docker_id)
        assert await api.inspect(docker_id) is None
        with pytest.raises(docker.errors.NotFound):
            await deferToThread(docker_client.containers.get, docker_id)
        assert not os.path.exists(request.socket_dir)
        await api.remove(docker_id)  # gone already is success
    finally:
        if foreign is not None:
            await deferToThread(foreign.remove, force=True)
        pool.stop()


@pytest_twisted.ensureDeferred
async def test_watch_reports_die_when_the_container_is_killed_from_outside(
    docker_client, container_spec
):
    from twisted.internet import reactor

    pool = started_pool()
    api = DockerAPI(reactor, pool, docker_client_factory(timeout=60), container_spec, 90.0)
    died: Deferred[str] = Deferred()
    events: list[tuple[str, str]] = []

    def on_event(container_id: str, action: str) -> None:
        events.append((container_id, action))
        if action == "die" and not died.called:
            died.callback(container_id)

    try:
        api.watch(on_event)
        docker_id = await api.launch(request_for(container_spec, "it2"))
        await deferToThread(lambda: docker_client.containers.get(docker_id).kill())

        assert await died.addTimeout(30, reactor) == "it2"
        assert ("it2", "start") in events
    finally:
        api.stop_watching()
        pool.stop()


# -- dockerd missing or hung: real docker-py, no engine needed -----------------------------


@pytest_twisted.ensureDeferred
async def test_a_missing_dockerd_is_docker_unavailable(socket_root):
    from twisted.internet import reactor

    pool = started_pool(1)
    factory = docker_client_factory(base_url=f"unix://{socket_root}/no-dockerd.sock", timeout=5)
    api = DockerAPI(reactor, pool, factory, config.ContainerSpec(socket_root=socket_root), 10.0)
    try:
        with pytest.raises(DockerUnavailable):
            await api.list_ours()
        assert await api.ping() is False
    finally:
        pool.stop()


class HungDockerd(Resource):
    """Answers /_ping, as a deadlocked dockerd 20.10 still did; everything else hangs."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.hanging: list[Any] = []

    def render_GET(self, request: Any) -> bytes | int:  # noqa: N802
        if request.path.endswith(b"/_ping"):
            return b"OK"
        self.hanging.append(request)
        return NOT_DONE_YET


@pytest_twisted.ensureDeferred
async def test_a_hung_dockerd_costs_each_call_its_timeout_and_ping_still_answers(socket_root):
    from twisted.internet import reactor

    path = f"{socket_root}/dockerd.sock"
    dockerd = HungDockerd()
    port = reactor.listenUNIX(path, Site(dockerd))
    pool = started_pool(1)
    # docker-py's own timeout frees the one worker after 2 s; the caller is freed after 1 s.
    factory = docker_client_factory(base_url=f"unix://{path}", timeout=2, version="1.41")
    api = DockerAPI(reactor, pool, factory, config.ContainerSpec(socket_root=socket_root), 1.0)
    try:
        assert await api.ping() is True
        started = reactor.seconds()
        first, second = api.list_ours(), api.inspect("x")  # the second queues behind the first
        for call in (first, second):
            with pytest.raises(DockerTimeout):
                await call
        assert reactor.seconds() - started < 1.9
        assert len(dockerd.hanging) == 1  # the queued call was dropped, never sent
    finally:
        pool.stop()  # waits for the stuck worker: docker-py's timeout ends it
        await port.stopListening()


def test_socket_root_fixture_keeps_socket_paths_short(socket_root):
    spec = config.ContainerSpec(instance="test-0123abcd", socket_root=socket_root)
    path = sockets.socket_path(spec, "x" * 12)

    assert len(path.encode()) < 100
    with socket.socket(socket.AF_UNIX) as s:  # the kernel agrees
        os.makedirs(os.path.dirname(path))
        s.bind(path)
