"""Handing containers to requests, shared by the pages, the JSON API and remix: the web's one
seam to the waiting line (tmpnb/waitingline.py), which serves at once when a container is
pooled. A page takes a ticket here once per visitor, then acts on the ticket itself
(`wait`, `away`, `leave`) and comes back for its URL.

Every take asks the client gate first (tmpnb/clients/): only a navigation or an API call, from
an address within its share and its spawn rate, gets a ticket; a visitor who already holds a
live server is sent back to it (`returning`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.web.iweb import IRequest

from tmpnb.clients import ClientGate, Refusal
from tmpnb.clients.fetchmeta import PAGE
from tmpnb.config import DEFAULT_IMAGE
from tmpnb.flavors import Flavor, Flavors
from tmpnb.origins import Origins
from tmpnb.web.paths import with_token

if TYPE_CHECKING:
    from tmpnb.pool import Assignment
    from tmpnb.tickets import Ticket
    from tmpnb.waitingline import WaitingLine

log = Logger()


class Spawner(Protocol):
    """The part of tmpnb.pool.Pool the orchestrator uses."""

    def acquire(self) -> Deferred[Assignment] | None: ...

    def stats(self) -> dict: ...

    def cull(self, container_id: str, reason: str) -> bool: ...


@dataclass(frozen=True)
class Place:
    """Where a visitor stands in line, for the waiting page."""

    position: int  # 1 for the first; 0 once out of the line
    estimate: float  # seconds until likely served
    rate: float  # containers readied per second lately


def server_url(origins: Origins, assignment: Assignment, below: str, token: str | None) -> str:
    """The URL that logs a visitor in to their server at `below`: `/user/<id>/<below>?token=…`,
    on the visitor's own subdomain in subdomain mode (tmpnb/origins)."""
    return with_token(origins.server_url(assignment.container_id, assignment.path + below), token)


class HandOut:
    def __init__(self, line: WaitingLine, use_tokens: bool, gate: ClientGate, origins: Origins = Origins(),
                 flavors: Flavors | None = None) -> None:
        self._line = line
        self._use_tokens = use_tokens
        self.gate = gate
        self._origins = origins
        # The node's flavors (tmpnb/flavors.py): the pages and the API check a visitor's choice.
        self.flavors = Flavors.single(DEFAULT_IMAGE, 0) if flavors is None else flavors

    def take(self, request: IRequest, below: str, join: bool = True, kind: str = PAGE,
             flavor: Flavor | None = None) -> Ticket | Refusal | None:
        """A ticket for the visitor of `request` (a `PAGE`, an `API` call, or an `AUTHORIZED` one:
        API_AUTH_TOKEN's holder, not counted; tmpnb.clients.fetchmeta)
        going to `below` in their server of `flavor` (one of `flavors`; None: the default);
        a Refusal if the gate says no (its share counts every flavor's containers); None: no
        vacancy (or, `join` false, they would have to wait)."""
        address, refusal = self.gate.check(request, kind)
        if refusal is not None:
            return refusal
        if flavor is None or flavor.name == self.flavors.default:
            ticket = self._line.take(below, join)
        else:
            ticket = self._line.take(below, join, flavor.name)
        if ticket is not None and address is not None:
            self.gate.took(address, ticket)
        return ticket

    def landing(self, flavor: Flavor | None, default_below: str) -> str:
        """Where a visitor of `flavor` lands when the link names no path: the flavor's landing
        page, or the node's (--redirect-uri)."""
        if flavor is not None and flavor.landing is not None:
            return flavor.landing
        return default_below

    def returning(self, request: IRequest, below: str, flavor: Flavor | None = None) -> str | None:
        """The URL of the live server this visitor was handed before (the reload cookie), at
        `below`; without the token: their browser is logged in there already. Only a server
        of the flavor asked for (None: the default): a visitor who asks for another flavor
        gets a new server of it."""
        assignment = self.gate.returning(request)
        if assignment is None:
            return None
        wanted = self.flavors.default if flavor is None else flavor.name
        if assignment.flavor != wanted:
            return None
        log.info("sent a visitor back to {container}", container=assignment.container_id)
        return server_url(self._origins, assignment, below, None)

    def find(self, ticket_id: str) -> Ticket | None:
        return self._line.find(ticket_id)

    def place(self, ticket: Ticket) -> Place:
        return Place(self._line.position(ticket), self._line.estimate(ticket), self._line.boot_rate())

    def url(self, ticket: Ticket, request: IRequest | None = None) -> str:
        """The URL that logs the ticket's visitor in to their container, which is theirs now.
        With `request` (a page's), the visitor also gets the cookie a reload comes back with."""
        assignment = ticket.claim()
        self.gate.claimed(ticket, assignment, request)
        log.info("handed {container} to a visitor", container=assignment.container_id)
        token = assignment.token if self._use_tokens else None
        return server_url(self._origins, assignment, ticket.below, token)
