"""Docker and the proxy as the pool sees them, each call's outcome reported on the way.

`ObservedDocker` wraps a DockerAPI: every call's outcome goes to Health (a hung dockerd
shows) and its latency to the metrics. `ObservedProxy` wraps a ProxyAPI: its successes and
failures go to Health. `health_check` is one round that asks both even when no visitor
does; `health_checks` the service that runs it every HEALTH_CHECK_PERIOD. tmpnb/tap.py wires
them between the pool and the real clients.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.application.internet import TimerService
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from tmpnb.faults import log_fault

log = Logger()

HEALTH_CHECK_PERIOD = 10.0  # seconds between two rounds of health_check


class ObservedDocker:
    """DockerAPI with the outcome of every call reported to Health (a hung dockerd shows),
    and its latency to the metrics (tmpnb/metrics.py), if any."""

    def __init__(self, docker: Any, health: Any, metrics: Any = None) -> None:
        self._docker = docker
        self._health = health
        self._metrics = metrics

    def _timed(self, operation: str, d: Deferred[Any]) -> Deferred[Any]:
        return d if self._metrics is None else self._metrics.observe_docker_call(operation, d)

    def launch(self, request: Any) -> Deferred[str]:
        return self._health.observe_docker_call(self._timed("launch", self._docker.launch(request)))

    def remove(self, docker_id: str, container_id: str | None = None) -> Deferred[None]:
        return self._health.observe_docker_call(self._timed("remove", self._docker.remove(docker_id, container_id)))

    def inspect(self, docker_id: str) -> Deferred[Any]:
        return self._health.observe_docker_call(self._timed("inspect", self._docker.inspect(docker_id)))

    def list_ours(self) -> Deferred[list[Any]]:
        return self._health.observe_docker_call(self._timed("list", self._docker.list_ours()))

    def ping(self) -> Deferred[bool]:
        return self._timed("ping", self._docker.ping())

    # The socket directories are the host's filesystem: their outcome says nothing of dockerd.
    def socket_dir_ids(self) -> Deferred[list[str]]:
        return self._docker.socket_dir_ids()

    def remove_socket_dirs(self, container_ids: list[str]) -> Deferred[None]:
        return self._docker.remove_socket_dirs(container_ids)

    def watch(self, on_event: Callable[[str, str], None]) -> None:
        self._docker.watch(on_event)


class ObservedProxy:
    """A ProxyAPI whose successes and failures are reported to Health."""

    def __init__(self, proxy: Any, health: Any) -> None:
        self._proxy = proxy
        self._health = health

    def _observe(self, d: Deferred[Any]) -> Deferred[Any]:
        def ok(result: Any) -> Any:
            self._health.proxy_ok()
            return result

        def failed(reason: Failure) -> Failure:
            self._health.proxy_failed(f"{reason.type.__name__}: {reason.getErrorMessage()}")
            return reason

        return d.addCallbacks(ok, failed)

    def add_route(self, path: str, target: str, **data: Any) -> Deferred[None]:
        return self._observe(self._proxy.add_route(path, target, **data))

    def delete_route(self, path: str) -> Deferred[None]:
        return self._observe(self._proxy.delete_route(path))

    def get_route(self, path: str) -> Deferred[dict | None]:
        return self._observe(self._proxy.get_route(path))

    def list_routes(self, inactive_since: Any = None) -> Deferred[dict[str, dict]]:
        return self._observe(self._proxy.list_routes(inactive_since))


def health_check(docker: ObservedDocker, proxy: ObservedProxy, health: Any) -> Callable[[], Deferred[Any]]:
    """One round of the periodic check: ping dockerd, list the proxy's routes."""

    def check() -> Deferred[Any]:
        pinged = docker.ping().addCallback(lambda answered: health.docker_ping(answered))
        pinged.addErrback(lambda f: log_fault(log, f, "docker health check"))
        listed = proxy.list_routes().addErrback(lambda f: None)  # ObservedProxy recorded it
        return pinged.addCallback(lambda _: listed)

    return check


def health_checks(clock: Any, docker: ObservedDocker, proxy: ObservedProxy, health: Any) -> TimerService:
    """`health_check` every HEALTH_CHECK_PERIOD seconds, on `clock`, while the service runs."""
    checks = TimerService(HEALTH_CHECK_PERIOD, health_check(docker, proxy, health))
    checks.clock = clock
    return checks
