"""Each client address's account: what it holds against its share of the capacity, and how fast
it may spawn.

An address holds the tickets it took that are not done (waiting in line, being served, ready
but not yet claimed) and the containers it claimed, until they are culled (the lifecycle
record's transition to "culled", `record`). It may hold at most `SharePolicy.limit(capacity)`
and start at most `burst` spawns at once, then `spawns_per_minute`. A reload that sends a
visitor back to the server they hold spawns nothing and is not counted.

Tickets are asked about their state when the address is counted, so one that ended without a
container (the visitor left, a failed hand-out) stops counting without anyone telling us.
An address with nothing held and a full bucket is forgotten: the accounts stay as small as the
number of addresses holding something or spawning lately.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Protocol

from twisted.internet.interfaces import IReactorTime

from tmpnb.clients.bucket import TokenBucket
from tmpnb.states import Assignment

SHARE = "share"  # refusal reasons, in /api/stats and /metrics
RATE = "rate"
SWEEP_MIN = 64


@dataclass(frozen=True)
class SharePolicy:
    """--client-share, --client-spawn-rate, --client-spawn-burst."""

    share: float = 0.25  # of --capacity one address may hold (at least 1 container); 1: no share
    spawns_per_minute: float = 12.0
    burst: int = 20

    def limit(self, capacity: int) -> int:
        return max(1, math.floor(capacity * self.share + 1e-9))

    def check(self) -> None:
        """Raises ValueError for values no service can run with."""
        if not 0 < self.share <= 1:
            raise ValueError("--client-share must be above 0 and at most 1")
        if self.spawns_per_minute <= 0 or self.burst < 1:
            raise ValueError("--client-spawn-rate must be above 0 and --client-spawn-burst at least 1")


class HeldTicket(Protocol):
    """The part of tmpnb.tickets.Ticket the accounts read."""

    @property
    def id(self) -> str: ...

    @property
    def state(self) -> str: ...

    @property
    def assignment(self) -> Assignment | None: ...


@dataclass(frozen=True)
class Verdict:
    """Why an address may not spawn now, and when to ask again."""

    reason: str  # SHARE or RATE
    retry_after: float  # seconds
    held: int
    limit: int


@dataclass
class Account:
    bucket: TokenBucket
    tickets: dict[str, HeldTicket] = field(default_factory=dict)
    containers: set[str] = field(default_factory=set)


class ClientShares:
    """The accounts of every address, on `clock`, within `capacity` containers."""

    def __init__(self, clock: IReactorTime, capacity: int, policy: SharePolicy, retry_after: float = 5.0) -> None:
        self._clock = clock
        self.capacity = capacity
        self.policy = policy
        self.limit = policy.limit(capacity)
        self._retry_after = retry_after  # for an address at its share: when a container may end
        self._accounts: dict[str, Account] = {}
        self._owners: dict[str, str] = {}  # container id: the address that claimed it
        self._takers: dict[str, str] = {}  # ticket id: the address that took it, until settled
        self._assignments: dict[str, Assignment] = {}  # container id: what it was handed out as
        # Accounts are settled when counted; those nobody asks about again are swept when the
        # number of accounts has doubled since the last sweep (amortised: memory stays bounded).
        self._sweep_at = SWEEP_MIN

    # -- asking and taking

    def admit(self, address: str) -> Verdict | None:
        """None if `address` may spawn one more now; else why not. Takes nothing."""
        account = self._accounts.get(address)
        if account is None:
            return None
        held = self.held(address)
        # A share of 1 is no share: the capacity is the limit, and the line says No vacancy.
        if held >= self.limit and self.policy.share < 1:
            return Verdict(SHARE, self._retry_after, held, self.limit)
        wait = account.bucket.wait(self._clock.seconds())
        if wait > 0:
            return Verdict(RATE, wait, held, self.limit)
        return None

    def took(self, address: str, ticket: HeldTicket) -> None:
        """`address` was given `ticket` (admit said yes): one spawn, one thing held."""
        account = self._account(address)
        account.bucket.take(self._clock.seconds())
        account.tickets[ticket.id] = ticket
        self._takers[ticket.id] = address

    def claimed(self, ticket: HeldTicket, assignment: Assignment) -> None:
        """The ticket's container is its visitor's now (tmpnb/web/handout.py's `url`)."""
        address = self._takers.pop(ticket.id, None)
        account = None if address is None else self._accounts.get(address)
        if address is not None and account is not None and account.tickets.pop(ticket.id, None) is not None:
            self._hold_container(address, account, assignment)

    def ended(self, container_id: str) -> None:
        """The container is culled: nobody holds it any more."""
        self._assignments.pop(container_id, None)
        address = self._owners.pop(container_id, None)
        if address is None:
            return
        account = self._accounts.get(address)
        if account is not None:
            account.containers.discard(container_id)
            self._forget_if_idle(address, account)

    def record(self, record: dict[str, Any]) -> None:
        """A lifecycle record (tmpnb/lifecycle/): a container culled has ended."""
        if record.get("to") == "culled" and record.get("from") != "culled":
            self.ended(str(record.get("container")))

    # -- reading

    def held(self, address: str) -> int:
        """Tickets not done and containers alive that `address` holds."""
        account = self._accounts.get(address)
        if account is None:
            return 0
        self._settle(address, account)
        return len(account.tickets) + len(account.containers)

    def holding(self, container_id: str) -> Assignment | None:
        """The assignment of a container some address claimed and that lives on; None else."""
        return self._assignments.get(container_id)

    def addresses(self) -> list[str]:
        return list(self._accounts)

    def stats(self) -> dict[str, Any]:
        held = [self.held(a) for a in list(self._accounts)]
        return {
            "limit": self.limit,
            "spawns_per_minute": self.policy.spawns_per_minute,
            "burst": self.policy.burst,
            "addresses": sum(1 for h in held if h),
            "most_held": max(held, default=0),
        }

    # -- keeping the accounts

    def _account(self, address: str) -> Account:
        account = self._accounts.get(address)
        if account is None:
            if len(self._accounts) >= self._sweep_at:
                self.sweep()
                self._sweep_at = max(SWEEP_MIN, 2 * len(self._accounts))
            bucket = TokenBucket(self.policy.spawns_per_minute / 60.0, self.policy.burst, self._clock.seconds())
            account = self._accounts[address] = Account(bucket)
        return account

    def _hold_container(self, address: str, account: Account, assignment: Assignment) -> None:
        account.containers.add(assignment.container_id)
        self._owners[assignment.container_id] = address
        self._assignments[assignment.container_id] = assignment

    def _settle(self, address: str, account: Account) -> None:
        """Tickets that ended stop counting; one claimed behind our back becomes its container."""
        for ticket_id, ticket in list(account.tickets.items()):
            state = ticket.state
            if state == "claimed":
                del account.tickets[ticket_id]
                self._takers.pop(ticket_id, None)
                if ticket.assignment is not None:
                    self._hold_container(address, account, ticket.assignment)
            elif state in ("left", "failed"):
                del account.tickets[ticket_id]
                self._takers.pop(ticket_id, None)
        self._forget_if_idle(address, account)

    def _forget_if_idle(self, address: str, account: Account) -> None:
        if not account.tickets and not account.containers and account.bucket.full(self._clock.seconds()):
            del self._accounts[address]

    def sweep(self) -> None:
        """Settle every account, forgetting the idle ones."""
        for address, account in list(self._accounts.items()):
            self._settle(address, account)
