"""What tmpnb knows about the health of what it depends on: dockerd and the proxy's API.

Other parts report what they observe; ``Health`` keeps the latest word and derives a state:

- Docker is "unreachable" when a ping or a call cannot connect (dockerd down, not started
  yet); "hung" when a call times out: dockerd 20.10 can deadlock so that ``/_ping`` still
  answers while every other call hangs (docs/design.md), so a ping does not clear "hung", only a
  call that answers does; "ok" when a call answers, or a ping while not hung.
- The proxy's API is "unreachable" after a failed call and "ok" after a good one.

Nothing is known at start ("unknown"): tmpnb starts whether or not dockerd is up.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, TypeVar

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from tmpnb.dockerapi import DockerTimeout, DockerUnavailable

log = Logger()

OK = "ok"
UNKNOWN = "unknown"
UNREACHABLE = "unreachable"
HUNG = "hung"

T = TypeVar("T")


@dataclass
class _Component:
    state: str = UNKNOWN
    since: float = 0.0
    cause: str | None = None

    def describe(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "since": datetime.fromtimestamp(self.since, timezone.utc).isoformat(),
            "cause": self.cause,
        }


class Health:
    def __init__(self, clock: IReactorTime) -> None:
        self.clock = clock  # the "since" times are this clock's
        now = clock.seconds()
        self._docker = _Component(since=now)
        self._proxy = _Component(since=now)

    # -- Docker ------------------------------------------------------------------------------

    def docker_ping(self, answered: bool, cause: str | None = None) -> None:
        """Report the outcome of a ``/_ping``."""
        if not answered:
            self.docker_unreachable(cause or "ping failed")
        elif self._docker.state != HUNG:
            self._set("docker", self._docker, OK, None)
        # else: a hung dockerd still answers /_ping; only a real call that answers clears it

    def docker_answered(self) -> None:
        """Report that a Docker call answered (an error answer like 404 counts)."""
        self._set("docker", self._docker, OK, None)

    def docker_timed_out(self, cause: str) -> None:
        """Report that a Docker call got no answer in time: dockerd is hung."""
        self._set("docker", self._docker, HUNG, cause)

    def docker_unreachable(self, cause: str) -> None:
        """Report that dockerd could not be reached at all (down, socket missing)."""
        self._set("docker", self._docker, UNREACHABLE, cause)

    def observe_docker_call(self, d: Deferred[T]) -> Deferred[T]:
        """Report how ``d``, a Docker call, ends; its result or failure passes through."""

        def answered(result: T) -> T:
            self.docker_answered()
            return result

        def failed(failure: Failure) -> Failure:
            cause = f"{failure.type.__name__}: {failure.getErrorMessage()}"
            if failure.check(DockerTimeout):
                self.docker_timed_out(cause)
            elif failure.check(DockerUnavailable):
                self.docker_unreachable(cause)
            else:
                self.docker_answered()  # dockerd answered, if with an error
            return failure

        return d.addCallbacks(answered, failed)

    # -- proxy API ---------------------------------------------------------------------------

    def proxy_ok(self) -> None:
        self._set("proxy", self._proxy, OK, None)

    def proxy_failed(self, cause: str) -> None:
        self._set("proxy", self._proxy, UNREACHABLE, cause)

    # -- reading -----------------------------------------------------------------------------

    def healthy(self) -> bool:
        return self._docker.state == OK and self._proxy.state == OK

    def snapshot(self) -> dict[str, Any]:
        """{"status": "ok"|"starting"|"degraded", "docker": {...}, "proxy": {...}}.

        Each component: {"state", "since" (ISO 8601), "cause"}.
        """
        states = {self._docker.state, self._proxy.state}
        if states == {OK}:
            status = "ok"
        elif states <= {OK, UNKNOWN}:
            status = "starting"
        else:
            status = "degraded"
        return {
            "status": status,
            "docker": self._docker.describe(),
            "proxy": self._proxy.describe(),
        }

    def _set(self, name: str, component: _Component, state: str, cause: str | None) -> None:
        if component.state == state:
            component.cause = cause if cause is not None else component.cause
            return
        previous = component.state
        component.state, component.since, component.cause = state, self.clock.seconds(), cause
        if state == OK:
            log.info("{component} is {state} (was {previous})", component=name, state=state,
                     previous=previous)
        else:
            log.warn("{component} is {state} (was {previous}): {cause}", component=name,
                     state=state, previous=previous, cause=cause)
