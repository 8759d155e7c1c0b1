"""The waiting line: a visitor who arrives while no container is pooled waits, first come
first served, for the next one the pool readies, instead of being turned away.

The pool (tmpnb/pool.py) calls `offer()` each time a container becomes pooled and counts
`waiting()` visitors into what it boots. A visitor holds a `Ticket`; the web (tmpnb/web/)
keeps a request open on it (`wait`), answers the notebook's URL once it has an assignment
(`claim`), and says when the visitor is away between two requests (`away`: the place is
kept for `grace` seconds) or gone (`leave`). Until its URL has been claimed, a container
belongs to nobody in particular: one readied for a visitor who left goes to the next in
line, or is culled if nobody waits (the pool refills).

"No vacancy" (`take` answers None) only when the line is full (`max_waiting`) or when every
container the capacity allows is already promised to someone ahead.
"""

from __future__ import annotations

import statistics
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from tmpnb import ids
from tmpnb.lifecycle import line_record
from tmpnb.states import Assignment

__all__ = ["LinePool", "Ticket", "WaitingLine"]

log = Logger()

# Until the pool has readied a few containers, the estimate assumes this many a second
# (a single boot takes 0.7-1.3 s on the reference machine, docs in benchmarks/RESULTS.md).
DEFAULT_BOOT_RATE = 1.0
RATE_WINDOW = 20  # the latest readies the boot rate is measured over
# Readies further apart than this were not one run of boots: the pool was full meanwhile.
RATE_GAP = 10.0
WAITS_KEPT = 200  # the latest waits /api/stats summarises


class LinePool(Protocol):
    """The part of tmpnb.pool.Pool the line uses."""

    def acquire(self) -> Deferred[Assignment] | None: ...

    def room(self) -> int: ...

    def fill(self) -> None: ...

    def cull(self, container_id: str, reason: str) -> bool: ...


class Ticket:
    """One visitor's place: waiting → serving (the route being added) → ready → claimed;
    or left at any point before claimed."""

    def __init__(self, ticket_id: str, below: str, joined_at: float) -> None:
        self.id = ticket_id
        self.below = below  # where in their server the visitor is going
        self.joined_at = joined_at
        self.state = "waiting"
        self.position_at_join = 0
        self.assignment: Assignment | None = None
        self.failure: Failure | None = None
        self._waiters: list[Deferred[Assignment | None]] = []
        self._expiry: IDelayedCall | None = None

    @property
    def done(self) -> bool:
        return self.state in ("claimed", "left", "failed")


class WaitingLine:
    def __init__(
        self,
        clock: IReactorTime,
        pool: LinePool,
        max_waiting: int,
        new_id: Callable[[], str] = ids.new_token,
        records: Iterable[Callable[[dict[str, Any]], None]] = (),
        on_turned_away: Callable[[], None] | None = None,
    ) -> None:
        self._clock = clock
        self._records = list(records)  # takers of the lifecycle record (tmpnb/lifecycle.py)
        self._on_turned_away = on_turned_away
        self._pool = pool
        self.max_waiting = max_waiting
        self._new_id = new_id
        self._line: deque[Ticket] = deque()
        self._tickets: dict[str, Ticket] = {}  # every ticket not yet done
        self._readies: deque[float] = deque(maxlen=RATE_WINDOW)
        self._waits: deque[float] = deque(maxlen=WAITS_KEPT)  # of visitors served from the line
        self._counts = {"joined": 0, "served": 0, "left": 0}

    # -- what the pool uses

    def waiting(self) -> int:
        """Visitors in line: the pool boots for them beyond its pool size."""
        return len(self._line)

    def offer(self) -> None:
        """A container was pooled: the first in line gets it."""
        self._readies.append(self._clock.seconds())
        self._serve()

    def stats(self) -> dict[str, Any]:
        waits = sorted(self._waits)
        return {
            "length": len(self._line),
            "max": self.max_waiting,
            **self._counts,
            "wait_p50": round(statistics.median(waits), 3) if waits else None,
            "wait_max": round(waits[-1], 3) if waits else None,
            "boots_per_second": round(self.boot_rate(), 3),
        }

    # -- what the web uses

    def take(self, below: str = "", join: bool = True) -> Ticket | None:
        """A ticket for a new visitor, served at once if a container is pooled and nobody is
        ahead; None ("no vacancy") when the line is full or the capacity is all promised, or
        (`join` false) when the visitor would have to wait."""
        ticket = Ticket(self._new_id(), below, self._clock.seconds())
        if not self._line:
            pending = self._pool.acquire()
            if pending is not None:
                self._tickets[ticket.id] = ticket
                self._being_served(ticket, pending)
                return ticket
        if not join or len(self._line) >= self.max_waiting or len(self._line) >= self._pool.room():
            if self._on_turned_away is not None:
                self._on_turned_away()
            return None
        self._tickets[ticket.id] = ticket
        self._line.append(ticket)
        self._counts["joined"] += 1
        ticket.position_at_join = len(self._line)
        self._record(ticket, "joined", 0.0)
        self._pool.fill()  # boots for the line start now, whatever the refill does
        self._serve()
        return ticket

    def find(self, ticket_id: str) -> Ticket | None:
        return self._tickets.get(ticket_id)

    def wait(self, ticket: Ticket, timeout: float) -> Deferred[Assignment | None]:
        """Fires with the ticket's assignment once it has one, or None after `timeout`
        seconds; fails if handing the container out failed. The visitor is here: a place
        kept for someone away (`away`) is theirs again."""
        self._cancel_expiry(ticket)
        d: Deferred[Assignment | None] = Deferred()
        if ticket.state == "ready":
            d.callback(ticket.assignment)
            return d
        if ticket.state == "failed":
            d.errback(ticket.failure)
            return d
        if ticket.done:
            d.callback(None)
            return d
        ticket._waiters.append(d)
        timer = self._clock.callLater(timeout, self._time_up, ticket, d)
        d.addBoth(lambda result: (timer.cancel() if timer.active() else None, result)[1])
        return d

    def claim(self, ticket: Ticket) -> Assignment:
        """The visitor is being sent to the ticket's container: from now on it is theirs."""
        assert ticket.state == "ready" and ticket.assignment is not None, ticket.state
        ticket.state = "claimed"
        self._tickets.pop(ticket.id, None)
        return ticket.assignment

    def away(self, ticket: Ticket, grace: float) -> None:
        """The visitor was answered without their notebook (a page saying where they are in
        line): their place is kept for `grace` seconds for them to ask again."""
        if ticket.done:
            return
        self._cancel_expiry(ticket)
        ticket._expiry = self._clock.callLater(grace, self.leave, ticket, "expired")

    def leave(self, ticket: Ticket, why: str = "left") -> None:
        """The visitor is gone: their place is free; a container readied for them goes on."""
        if ticket.done:
            return
        self._cancel_expiry(ticket)
        previous, ticket.state = ticket.state, "left"
        self._tickets.pop(ticket.id, None)
        self._fire(ticket, None)
        if previous == "waiting":
            self._line.remove(ticket)
            self._counts["left"] += 1
            self._record(ticket, why, self._clock.seconds() - ticket.joined_at)
        elif previous == "ready":
            assignment, ticket.assignment = ticket.assignment, None
            assert assignment is not None
            self._pass_on(assignment)
        # "serving": the route is being added; _handed_out passes the container on.

    def position(self, ticket: Ticket) -> int:
        """1 for the first in line; 0 once out of the line."""
        try:
            return self._line.index(ticket) + 1
        except ValueError:
            return 0

    def estimate(self, ticket: Ticket) -> float:
        """Seconds until the ticket is likely served, from the measured boot rate."""
        return self.position(ticket) / self.boot_rate()

    def boot_rate(self) -> float:
        """Containers readied per second in the latest run of boots (a default before any)."""
        times = list(self._readies)
        start = len(times) - 1
        while start > 0 and times[start] - times[start - 1] <= RATE_GAP:
            start -= 1
        run = times[start:]
        if len(run) < 3 or run[-1] <= run[0]:
            return DEFAULT_BOOT_RATE
        return (len(run) - 1) / (run[-1] - run[0])

    # -- serving

    def _serve(self) -> None:
        while self._line:
            pending = self._pool.acquire()
            if pending is None:
                return
            self._being_served(self._line.popleft(), pending)

    def _being_served(self, ticket: Ticket, pending: Deferred[Assignment]) -> None:
        ticket.state = "serving"
        pending.addCallbacks(
            lambda assignment: self._handed_out(ticket, assignment),
            lambda failure: self._failed(ticket, failure),
        ).addErrback(lambda failure: log.failure("serving the waiting line", failure))

    def _handed_out(self, ticket: Ticket, assignment: Assignment) -> None:
        if ticket.state != "serving":  # the visitor left while the route was added
            self._pass_on(assignment)
            return
        if ticket.position_at_join:
            waited = self._clock.seconds() - ticket.joined_at
            self._waits.append(waited)
            self._counts["served"] += 1
            self._record(ticket, "served", waited, assignment.container_id)
        ticket.state = "ready"
        ticket.assignment = assignment
        self._fire(ticket, assignment)

    def _failed(self, ticket: Ticket, failure: Failure) -> None:
        """The container could not be handed out (its route was refused; the machine culls it)."""
        if ticket.state != "serving":
            return
        ticket.state, ticket.failure = "failed", failure
        self._tickets.pop(ticket.id, None)
        for d in self._take_waiters(ticket):
            d.errback(failure)

    def _pass_on(self, assignment: Assignment) -> None:
        """A container nobody has seen the URL of: the next in line's, or culled."""
        if self._line:
            ticket = self._line.popleft()
            ticket.state = "serving"
            self._handed_out(ticket, assignment)
            return
        log.info("visitor left before {container} was theirs; culling it", container=assignment.container_id)
        self._pool.cull(assignment.container_id, "visitor left")

    def _time_up(self, ticket: Ticket, d: Deferred[Assignment | None]) -> None:
        if d in ticket._waiters:
            ticket._waiters.remove(d)
            d.callback(None)

    def _fire(self, ticket: Ticket, result: Assignment | None) -> None:
        for d in self._take_waiters(ticket):
            d.callback(result)

    def _take_waiters(self, ticket: Ticket) -> list[Deferred[Assignment | None]]:
        waiters, ticket._waiters = ticket._waiters, []
        return waiters

    def _cancel_expiry(self, ticket: Ticket) -> None:
        if ticket._expiry is not None and ticket._expiry.active():
            ticket._expiry.cancel()
        ticket._expiry = None

    def _record(self, ticket: Ticket, step: str, waited: float, container: str | None = None) -> None:
        record = line_record(ticket.id[:8], step, self._clock.seconds(), waited, ticket.position_at_join,
                             len(self._line), container)
        for write in self._records:
            try:
                write(record)
            except Exception:
                log.failure("recording the waiting line")
