"""The client gate: what the web's hand-out (tmpnb/web/handout.py) asks before and after it hands a
visitor a container.

    address, refusal = gate.check(request, PAGE)    # Sec-Fetch, then the address's share and rate
    ... ticket = line.take(...); gate.took(address, ticket)
    gate.claimed(ticket, assignment, request)   # held until culled; the reload cookie
    gate.returning(request)                          # the live server a reload goes back to

Refusals are counted by reason (`counts`, in /api/stats; `on_refused`, wired to /metrics).
"""

from __future__ import annotations

import ipaddress
import math
import secrets
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.web.iweb import IRequest

from tmpnb.clients.address import TrustedProxies, client_address, over_https
from tmpnb.clients.fetchmeta import AUTHORIZED, may_hand_out
from tmpnb.clients.returning import ServerCookies
from tmpnb.clients.shares import SHARE, ClientShares, HeldTicket, SharePolicy
from tmpnb.states import Assignment

log = Logger()

NOT_NAVIGATION = "not-navigation"  # the third refusal reason, besides shares.SHARE and RATE


@dataclass(frozen=True)
class Refusal:
    """No container for this request: `reason` (SHARE, RATE, NOT_NAVIGATION) and when to retry."""

    reason: str
    retry_after: int  # whole seconds, for Retry-After
    held: int = 0
    limit: int = 0


class ClientGate:
    def __init__(self, shares: ClientShares, trusted: TrustedProxies, cookies: ServerCookies,
                 on_refused: Callable[[str], None] | None = None, host_locked: bool = False) -> None:
        self.shares = shares
        # Subdomain mode: sibling hosts could toss a plain cookie, so it is `__Host-` even
        # over http on *.localhost (browsers take the prefix there).
        self._host_locked = host_locked
        self.trusted = trusted
        self._cookies = cookies
        self._on_refused = on_refused
        self.counts: Counter[str] = Counter()
        self._hinted = False  # the --trusted-proxy hint is logged once

    def _secure(self, request: IRequest) -> bool:
        return self._host_locked or over_https(request, self.trusted)

    def address(self, request: IRequest) -> str:
        return client_address(request, self.trusted)

    def check(self, request: IRequest, kind: str) -> tuple[str | None, Refusal | None]:
        """The request's client address, and a refusal if it may not have a container now.
        An `AUTHORIZED` call (API_AUTH_TOKEN) is neither judged nor counted: address None."""
        if kind == AUTHORIZED:
            return None, None
        address = self.address(request)
        if not may_hand_out(request, kind):
            return address, self._refused(Refusal(NOT_NAVIGATION, 0), address)
        verdict = self.shares.admit(address)
        if verdict is None:
            return address, None
        refusal = Refusal(verdict.reason, max(1, math.ceil(verdict.retry_after)), verdict.held, verdict.limit)
        return address, self._refused(refusal, address)

    def took(self, address: str, ticket: HeldTicket) -> None:
        self.shares.took(address, ticket)

    def claimed(self, ticket: HeldTicket, assignment: Assignment, request: IRequest | None = None) -> None:
        """The ticket's container is its visitor's: counted until culled; with `request` (a
        page), the visitor gets the cookie that brings them back to it on a reload."""
        self.shares.claimed(ticket, assignment)
        if request is not None:
            self._cookies.set(request, assignment.container_id, self._secure(request))

    def returning(self, request: IRequest) -> Assignment | None:
        """The live container this request's cookie names, handed out earlier by this process."""
        container_id = self._cookies.read(request, self._secure(request))
        return None if container_id is None else self.shares.holding(container_id)

    def record(self, record: dict[str, Any]) -> None:
        """A lifecycle record (tmpnb/lifecycle/): takes containers culled off their accounts."""
        self.shares.record(record)

    def stats(self) -> dict[str, Any]:
        return {**self.shares.stats(), "refused": dict(self.counts)}

    def _refused(self, refusal: Refusal, address: str) -> Refusal:
        self.counts[refusal.reason] += 1
        log.info("no container for {address}: {reason}", address=address, reason=refusal.reason)
        if refusal.reason == SHARE and not self._hinted and _looks_like_a_proxy(address):
            self._hinted = True
            log.warn("{address} holds its share of the containers: if it is a reverse proxy in front of"
                     " tmpnb, list it with --trusted-proxy, or every visitor counts as it", address=address)
        if self._on_refused is not None:
            try:
                self._on_refused(refusal.reason)
            except Exception:
                log.failure("counting a refusal")
        return refusal


def _looks_like_a_proxy(address: str) -> bool:
    """A loopback or private address at its share is more often a proxy nobody listed than a
    greedy visitor."""
    try:
        network = ipaddress.ip_network(address, strict=False)
    except ValueError:
        return True  # LOCAL: a unix-socket peer with no X-Forwarded-For at all
    return network.is_loopback or network.is_private


def make_gate(clock: IReactorTime, capacity: int, policy: SharePolicy = SharePolicy(),
              trusted: TrustedProxies = TrustedProxies(), secret: bytes | None = None,
              on_refused: Callable[[str], None] | None = None, retry_after: float = 5.0,
              host_locked: bool = False) -> ClientGate:
    """A gate for a node of `capacity` containers. Without `secret` the reload cookies are signed
    with a fresh one: they stop working when the process restarts (a reload then spawns).
    `host_locked`: the reload cookie is `__Host-` whatever the scheme (subdomain mode)."""
    shares = ClientShares(clock, capacity, policy, retry_after)
    return ClientGate(shares, trusted, ServerCookies(secret or secrets.token_bytes(32)), on_refused, host_locked)
