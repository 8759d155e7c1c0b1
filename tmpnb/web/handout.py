"""Handing one pooled container to one request, shared by the pages and the JSON API."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.web.server import Request

from tmpnb.web.paths import with_token

if TYPE_CHECKING:
    from tmpnb.pool import Assignment

log = Logger()


class Spawner(Protocol):
    """The part of tmpnb.pool.Pool the orchestrator uses."""

    def acquire(self) -> Deferred[Assignment] | None: ...

    def stats(self) -> dict: ...

    def cull(self, container_id: str, reason: str) -> bool: ...


def departure(request: Request) -> list[bool]:
    """A flag that turns true if the visitor hangs up before we answer.

    Writing to a request whose connection is gone raises, and a container handed
    to nobody would sit assigned until culled as idle.
    """
    left: list[bool] = []
    request.notifyFinish().addErrback(lambda _: left.append(True))
    return left


class HandOut:
    def __init__(self, pool: Spawner, use_tokens: bool) -> None:
        self._pool = pool
        self._use_tokens = use_tokens

    def take(
        self, left: list[bool], below: str, prepare: Callable[[Assignment], Deferred[Any]] | None = None
    ) -> Deferred[str | None] | None:
        """Take a container for this visitor; fires with the URL that logs them in.

        None at once when the pool has nothing to give ("full"). Fires with None
        when the visitor left meanwhile (`left`, from `departure`): the container
        goes back (culled), since nobody else will ever learn its URL. `prepare` (a remix
        writing its notebook) runs on the container before the URL is given; if it fails,
        the container is culled and the failure passed on.
        """
        pending = self._pool.acquire()
        if pending is None:
            return None

        def arrived(assignment: Assignment) -> str | None:
            if left:
                log.info("visitor left before {container} was ready; culling it",
                         container=assignment.container_id)
                self._pool.cull(assignment.container_id, "visitor left")
                return None
            log.info("handed {container} to a visitor", container=assignment.container_id)
            token = assignment.token if self._use_tokens else None
            return with_token(assignment.path + below, token)

        if prepare is None:
            return pending.addCallback(arrived)

        def prepared(assignment: Assignment) -> Deferred[str | None]:
            def unusable(reason: Any) -> Any:
                self._pool.cull(assignment.container_id, "preparing it failed")
                return reason

            d = prepare(assignment)
            return d.addCallbacks(lambda _: arrived(assignment), unusable)

        return pending.addCallback(prepared)
