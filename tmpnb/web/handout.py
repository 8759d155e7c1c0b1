"""Handing containers to requests, shared by the pages and the JSON API: through the
waiting line (tmpnb/waitingline.py), which serves at once when a container is pooled."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from tmpnb.web.paths import with_token

if TYPE_CHECKING:
    from tmpnb.pool import Assignment
    from tmpnb.waitingline import Ticket, WaitingLine

log = Logger()


class Spawner(Protocol):
    """The part of tmpnb.pool.Pool the orchestrator uses."""

    def acquire(self) -> Deferred[Assignment] | None: ...

    def stats(self) -> dict: ...

    def cull(self, container_id: str, reason: str) -> bool: ...


class HandOut:
    def __init__(self, line: WaitingLine, use_tokens: bool) -> None:
        self.line = line
        self._use_tokens = use_tokens

    def url(self, ticket: Ticket) -> str:
        """The URL that logs the ticket's visitor in to their container, which is theirs now."""
        assignment = self.line.claim(ticket)
        log.info("handed {container} to a visitor", container=assignment.container_id)
        token = assignment.token if self._use_tokens else None
        return with_token(assignment.path + ticket.below, token)
