"""Deferred-returning Docker operations for one tmpnb instance: the facade the machines use.

Three rooms behind it: `dockerrecipe` (what a container is made of, and how one is read
back), `dockercalls` (the bounded thread pool, each call with its timeouts) and
`dockerevents` (the events stream). The operations themselves, `_thd_*`, run in the pool.
Only containers labelled with this instance are ever inspected, listed or removed.
Their public names stay importable from here.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import docker.errors
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from tmpnb import config, sockets
from tmpnb.dockercalls import (
    DockerCalls,
    DockerTimeout,
    DockerUnavailable,
    ReactorForDocker,
    docker_client_factory,
    make_docker_threadpool,
)
from tmpnb.dockerevents import WATCH_BACKOFF_INITIAL, WATCH_BACKOFF_MAX, EventWatcher, event_of
from tmpnb.dockerrecipe import (
    CPU_PERIOD,
    CREATED_LABEL,
    ID_LABEL,
    INSTANCE_LABEL,
    TOKEN_LABEL,
    ContainerRecord,
    LaunchRequest,
    container_labels,
    container_name,
    create_kwargs,
    host_directory_binds,
    is_ours,
    record_of,
    server_command,
    tornado_settings,
)

__all__ = [
    "CPU_PERIOD",
    "CREATED_LABEL",
    "ID_LABEL",
    "INSTANCE_LABEL",
    "TOKEN_LABEL",
    "WATCH_BACKOFF_INITIAL",
    "WATCH_BACKOFF_MAX",
    "ContainerRecord",
    "DockerAPI",
    "DockerTimeout",
    "DockerUnavailable",
    "EventWatcher",
    "LaunchRequest",
    "NotOurs",
    "ReactorForDocker",
    "container_labels",
    "container_name",
    "create_kwargs",
    "docker_client_factory",
    "event_of",
    "host_directory_binds",
    "make_docker_threadpool",
    "record_of",
    "server_command",
    "tornado_settings",
]

log = Logger()


class NotOurs(Exception):
    """The container exists but belongs to another tmpnb instance (or none): hands off."""


# -- what runs in the pool threads --------------------------------------------------------


def _thd_launch(client: Any, request: LaunchRequest, created: float) -> str:
    """Socket directory, create, start; on any failure undo what was made. → docker id."""
    uid, gid = sockets.parse_user(request.spec.user)
    sockets.make_socket_dir(request.socket_dir, uid, gid)
    try:
        sockets.write_token_file(request.socket_dir, request.token, uid, gid)
        container = client.containers.create(**create_kwargs(request, created))
    except BaseException:
        sockets.remove_socket_dir(request.socket_dir)
        raise
    try:
        container.start()
    except BaseException:
        try:
            container.remove(force=True)
        finally:
            sockets.remove_socket_dir(request.socket_dir)
        raise
    return container.id


def _thd_remove(
    client: Any, docker_id: str, spec: config.ContainerSpec, container_id: str | None
) -> None:
    """Force-remove one of our containers and its socket directory; gone already is fine."""
    try:
        container = client.containers.get(docker_id)
    except docker.errors.NotFound:
        container = None
    if container is not None:
        if not is_ours(container.attrs, spec.instance):
            raise NotOurs(docker_id)
        container_id = container_id or record_of(container.attrs).container_id
        try:
            container.remove(force=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as e:
            # Another remove of the same container is under way: it will be gone.
            if not (e.status_code == 409 and "in progress" in str(e)):
                raise
    if container_id:
        sockets.remove_socket_dir(sockets.socket_dir(spec, container_id))


def _thd_inspect(client: Any, docker_id: str, instance: str) -> ContainerRecord | None:
    try:
        attrs = client.containers.get(docker_id).attrs
    except docker.errors.NotFound:
        return None
    return record_of(attrs) if is_ours(attrs, instance) else None


def _thd_list(client: Any, instance: str) -> list[ContainerRecord]:
    # sparse: one list call, not an inspect per container.
    containers = client.containers.list(
        all=True, sparse=True, filters={"label": f"{INSTANCE_LABEL}={instance}"}
    )
    # Filter again: the label filter is dockerd's, the promise not to touch others is ours.
    return [record_of(c.attrs) for c in containers if is_ours(c.attrs, instance)]


def _thd_socket_dir_ids(client: Any, spec: config.ContainerSpec) -> list[str]:
    return sockets.socket_dir_ids(spec)  # the host's filesystem, not dockerd: no client needed


def _thd_remove_socket_dirs(client: Any, spec: config.ContainerSpec, container_ids: list[str]) -> None:
    for container_id in container_ids:
        sockets.remove_socket_dir(sockets.socket_dir(spec, container_id))


def _thd_ping(client: Any) -> bool:
    return bool(client.ping())


# -- the API the machines use -------------------------------------------------------------


class DockerAPI:
    """Docker operations for one tmpnb instance, as Deferreds that fire on the reactor thread.

    Every call fails with DockerTimeout after `call_timeout` seconds of reactor time, with
    DockerUnavailable when dockerd cannot be reached, and with docker-py's APIError when
    dockerd answers with an error.
    """

    def __init__(
        self,
        reactor: ReactorForDocker,
        threadpool: ThreadPool,
        client_factory: Callable[[], Any],
        spec: config.ContainerSpec,
        call_timeout: float = 30.0,
    ) -> None:
        self._reactor = reactor
        self._client_factory = client_factory
        self._spec = spec
        self._calls = DockerCalls(reactor, threadpool, client_factory, call_timeout)
        self._watcher: EventWatcher | None = None

    # -- operations

    def launch(self, request: LaunchRequest) -> Deferred[str]:
        """Create and start a container (and its socket directory); fires with its docker id."""
        created = self._reactor.seconds()
        return self._calls.defer(
            "launch", _thd_launch, request, created, late=partial(self._remove_late, request)
        )

    def remove(self, docker_id: str, container_id: str | None = None) -> Deferred[None]:
        """Force-remove a container of ours and its socket directory; already gone is success.

        Give `container_id` (the tmpnb id) when known, so the socket directory goes even when
        the container itself vanished first.
        """
        return self._calls.defer("remove", _thd_remove, docker_id, self._spec, container_id)

    def inspect(self, docker_id: str) -> Deferred[ContainerRecord | None]:
        """The container's record; None when it is gone or is not ours."""
        return self._calls.defer("inspect", _thd_inspect, docker_id, self._spec.instance)

    def list_ours(self) -> Deferred[list[ContainerRecord]]:
        """Every container labelled with our instance, in any state."""
        return self._calls.defer("list", _thd_list, self._spec.instance)

    def socket_dir_ids(self) -> Deferred[list[str]]:
        """The container ids that have a socket directory of this instance on the host
        (filesystem work, done in the Docker threads like the directories' making)."""
        return self._calls.defer("socket_dirs", _thd_socket_dir_ids, self._spec)

    def remove_socket_dirs(self, container_ids: list[str]) -> Deferred[None]:
        """Remove these containers' socket directories (for ones whose container is gone)."""
        return self._calls.defer("remove_socket_dirs", _thd_remove_socket_dirs, self._spec, list(container_ids))

    def ping(self) -> Deferred[bool]:
        """Whether dockerd answers /_ping (a hung dockerd may still do so)."""

        def unanswered(failure: Failure) -> bool:
            failure.trap(DockerTimeout, DockerUnavailable)
            log.debug("docker ping failed: {cause}", cause=failure.getErrorMessage())
            return False

        return self._calls.defer("ping", _thd_ping).addErrback(unanswered)

    def watch(self, on_event: Callable[[str, str], None]) -> None:
        """Call on_event(container_id, action) on the reactor thread for each Docker event
        about our containers ("start", "die", "oom", "destroy", …), until shutdown."""
        if self._watcher is not None:
            raise RuntimeError("already watching")
        self._watcher = EventWatcher(
            self._client_factory, self._spec.instance, self._reactor.callFromThread, on_event
        )
        self._reactor.addSystemEventTrigger("before", "shutdown", self.stop_watching)
        self._watcher.start()

    def stop_watching(self) -> None:
        if self._watcher is not None:
            self._watcher.stop()

    def _remove_late(self, request: LaunchRequest, docker_id: str) -> None:
        """A launch finished after its caller gave up: nobody will use it, so remove it."""
        log.info(
            "removing {container} ({docker_id}): it started after its launch was abandoned",
            container=request.container_id,
            docker_id=docker_id,
        )
        self.remove(docker_id, request.container_id).addErrback(
            lambda failure: log.failure(
                "removing abandoned container {container}", failure, container=request.container_id
            )
        )
