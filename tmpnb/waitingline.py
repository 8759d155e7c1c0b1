"""The waiting line: a visitor who arrives while no container is pooled waits, first come
first served, for the next one the pool readies, instead of being turned away.

Data flows one way: the line takes from the pool (`acquire`, `room`, `cull`) and tells it
how many visitors wait (`demand`: booted for beyond the pool size); the pool knows nothing of
the line and only publishes: each container pooled (`when_pooled` → `offer`) and a part of
its stats (`add_stats("waiting", stats)`); `follow` subscribes the line to both, in the
one place that wires them (tmpnb/tap.py).

A visitor holds a `Ticket` (its own machine, tmpnb/tickets.py); the web (tmpnb/web/handout.py)
keeps a request open on it (`wait`), answers the notebook's URL once it has an assignment
(`claim`), and says when the visitor is away between two requests (`away`: the place is
kept for `grace` seconds) or gone (`leave`). Until its URL has been claimed, a container
belongs to nobody in particular: one readied for a visitor who left goes to the next in
line, or is culled if nobody waits (the pool refills).

"No vacancy" (`take` answers None) only when the line is full (`max_waiting`) or when every
container the capacity allows is already promised to someone ahead.

Flavors (tmpnb/flavors.py): each flavor has a line of its own, served in its own first-come
order by containers of its flavor only; `max_waiting` bounds all lines together. The pool is
told each line's length and join times (`demand`), and gives capacity to the oldest waiter
across flavors (tmpnb/pool.py). With one flavor, every call to the pool is as it always was.
"""

from __future__ import annotations

import statistics
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from tmpnb import ids
from tmpnb.flavors import Flavors
from tmpnb.lifecycle import line_record
from tmpnb.states import Assignment
from tmpnb.tickets import Ticket, TicketCore

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
    """The part of tmpnb.pool.Pool the line uses. The line calls down into the pool; the
    pool only publishes (when_pooled, add_stats) and never knows the line."""

    def acquire(self, *flavor: str) -> Deferred[Assignment] | None: ...

    def room(self, *flavor: str) -> int: ...

    def pooled(self, *flavor: str) -> int: ...

    def demand(self, waiting: int, *flavor_and_joined: Any) -> None: ...

    def cull(self, container_id: str, reason: str) -> bool: ...

    def when_pooled(self, listener: Callable[[], None]) -> None: ...

    def add_stats(self, key: str, part: Callable[[], Any]) -> None: ...


class WaitingLine:
    def __init__(
        self,
        clock: IReactorTime,
        pool: LinePool,
        max_waiting: int,
        new_id: Callable[[], str] = ids.new_token,
        records: Iterable[Callable[[dict[str, Any]], None]] = (),
        on_turned_away: Callable[[], None] | None = None,
        flavors: Flavors | None = None,
    ) -> None:
        self._clock = clock
        self._records = list(records)  # takers of the lifecycle record (tmpnb/lifecycle/)
        self._on_turned_away = on_turned_away
        self._pool = pool
        self.max_waiting = max_waiting
        self._new_id = new_id
        self._flavors = flavors
        self._default = "default" if flavors is None else flavors.default
        # With one flavor, the pool is asked without one (as ever); with several, by name.
        self._named = flavors is not None and len(flavors) > 1
        self._lines: dict[str, deque[Ticket]] = {
            name: deque() for name in ([self._default] if flavors is None else flavors.names())
        }
        self._length = 0  # in all lines
        self._tickets: dict[str, Ticket] = {}  # every ticket not yet done
        self._readies: deque[float] = deque(maxlen=RATE_WINDOW)
        self._waits: deque[float] = deque(maxlen=WAITS_KEPT)  # of visitors served from the line
        self._counts = {"joined": 0, "served": 0, "left": 0}

    # -- what the pool publishes

    def follow(self, pool: LinePool) -> None:
        """Subscribe to what `pool` publishes: its pooled containers, and its stats."""
        pool.when_pooled(self.offer)
        pool.add_stats("waiting", self.stats)
        pool.add_stats("room", self.room)
        if self._flavors is not None:  # the seam a redirector reads (docs/api.md)
            default = self._default
            pool.add_stats("default_flavor", lambda: default)
            pool.add_stats("flavors", self.flavors_stats)

    def room(self) -> int:
        """How many more visitors this node would serve now rather than turn away: those a
        pooled container takes at once (only while nobody is in line: they go to the line
        first) and those the line still has places for, within what the capacity can still
        boot. A redirector spreads visitors by it (tmpnb/redirector/nodes.py). Over every
        flavor, but not the sum of their flavor_room: the capacity is shared, so it is at most
        that sum and never less than any one flavor's (tests/test_flavors_stateful.py)."""
        if not self._named:
            line = self._lines[self._default]
            at_once = self._pool.pooled() if not line else 0
            places = max(0, self.max_waiting - len(line))
            return max(0, min(self._pool.room() - len(line), at_once + places))
        at_once = sum(self._pool.pooled(name) for name, line in self._lines.items() if not line)
        places = max(0, self.max_waiting - self._length)
        return max(0, min(self._pool.room() - self._length, at_once + places))

    def flavor_room(self, flavor: str) -> int:
        """room() for one flavor's visitors: its pooled containers (while its line is empty)
        and the places the shared capacity can still boot for."""
        line = self._lines[flavor]
        at_once = self._pool.pooled(*self._args(flavor)) if not line else 0
        places = max(0, self.max_waiting - self._length)
        return max(0, min(self._pool.room(*self._args(flavor)) - len(line), at_once + places))

    def flavors_stats(self) -> dict[str, dict[str, Any]]:
        """Each flavor's figures for /api/stats: the pool's (image, pool_size, available…) and
        its line's "waiting" and "room"."""
        return {
            name: {**self._pool.flavor_stats(name), "waiting": len(line), "room": self.flavor_room(name)}  # type: ignore[attr-defined]
            for name, line in self._lines.items()
        }

    def waiting(self, flavor: str | None = None) -> int:
        """Visitors in line (for `flavor`; None: in all lines): the pool boots for them beyond
        its pool size."""
        return self._length if flavor is None else len(self._lines[flavor])

    def flavor_names(self) -> list[str]:
        return list(self._lines)

    def _args(self, flavor: str) -> tuple[str, ...]:
        return (flavor,) if self._named else ()

    def _demand(self, flavor: str) -> None:
        line = self._lines[flavor]
        if self._named:
            self._pool.demand(len(line), flavor, [t.core.joined_at for t in line])
        else:
            self._pool.demand(len(line))

    def offer(self) -> None:
        """A container was pooled: the first in line gets it."""
        self._readies.append(self._clock.seconds())
        self._serve()

    def stats(self) -> dict[str, Any]:
        waits = sorted(self._waits)
        return {
            "length": self._length,
            "max": self.max_waiting,
            **self._counts,
            "wait_p50": round(statistics.median(waits), 3) if waits else None,
            "wait_max": round(waits[-1], 3) if waits else None,
            "boots_per_second": round(self.boot_rate(), 3),
        }

    # -- what the web uses

    def take(self, below: str = "", join: bool = True, flavor: str | None = None) -> Ticket | None:
        """A ticket for a new visitor of `flavor` (None: the default one; the caller checked
        it is one), served at once if a container of it is pooled and nobody is ahead in its
        line; None ("no vacancy") when the lines are full or the capacity is all promised, or
        (`join` false) when the visitor would have to wait."""
        name = self._default if flavor is None else flavor
        line = self._lines[name]
        ticket_id, now = self._new_id(), self._clock.seconds()
        if not line:
            pending = self._pool.acquire(*self._args(name))
            if pending is not None:
                ticket = self._new_ticket(ticket_id, below, now, position=0, flavor=name)
                self._being_served(ticket, pending)
                return ticket
        if not join or self._length >= self.max_waiting or len(line) >= self._pool.room(*self._args(name)):
            if self._on_turned_away is not None:
                self._on_turned_away()
            return None
        ticket = self._new_ticket(ticket_id, below, now, position=len(line) + 1, flavor=name)
        line.append(ticket)
        self._length += 1
        self._counts["joined"] += 1
        self._record(ticket.core, "joined", 0.0)
        self._demand(name)  # boots for the line start now, whatever the refill does
        self._serve()
        return ticket

    def _new_ticket(self, ticket_id: str, below: str, now: float, position: int, flavor: str) -> Ticket:
        """`position`: its place on joining the line (0: served at once)."""
        ticket = Ticket(TicketCore(ticket_id, below, now, self._clock, self, position_at_join=position,
                                   flavor=flavor))
        self._tickets[ticket.id] = ticket
        return ticket

    def find(self, ticket_id: str) -> Ticket | None:
        return self._tickets.get(ticket_id)

    def position(self, ticket: Ticket) -> int:
        """1 for the first in its flavor's line; 0 once out of the line."""
        try:
            return self._lines[ticket.core.flavor].index(ticket) + 1
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
        """Each line's first visitors get the pooled containers of their flavor."""
        for name, line in self._lines.items():
            while line:
                pending = self._pool.acquire(*self._args(name))
                if pending is None:
                    break
                ticket = line.popleft()
                self._length -= 1
                self._demand(name)
                self._being_served(ticket, pending)

    def _being_served(self, ticket: Ticket, pending: Deferred[Assignment]) -> None:
        ticket.serving()
        pending.addCallbacks(ticket.handed_out, ticket.hand_out_failed).addErrback(
            lambda failure: log.failure("serving the waiting line", failure)
        )

    # -- what a ticket tells the line (tmpnb.tickets.TicketLine)

    def left_line(self, core: TicketCore, why: str) -> None:
        self._lines[core.flavor].remove(self._tickets[core.id])
        self._length -= 1
        self._demand(core.flavor)
        self._counts["left"] += 1
        self._record(core, why, self._clock.seconds() - core.joined_at)

    def served(self, core: TicketCore, assignment: Assignment) -> None:
        if core.position_at_join:
            waited = self._clock.seconds() - core.joined_at
            self._waits.append(waited)
            self._counts["served"] += 1
            self._record(core, "served", waited, assignment.container_id)

    def finished(self, core: TicketCore) -> None:
        self._tickets.pop(core.id, None)

    def pass_on(self, assignment: Assignment) -> None:
        """A container nobody has seen the URL of: the next in its flavor's line's, or culled."""
        name = assignment.flavor if assignment.flavor in self._lines else self._default
        line = self._lines[name]
        if line:
            ticket = line.popleft()
            self._length -= 1
            self._demand(name)
            ticket.serving()
            ticket.handed_out(assignment)
            return
        log.info("visitor left before {container} was theirs; culling it", container=assignment.container_id)
        self._pool.cull(assignment.container_id, "visitor left")

    def _record(self, core: TicketCore, step: str, waited: float, container: str | None = None) -> None:
        record = line_record(core.id[:8], step, self._clock.seconds(), waited, core.position_at_join,
                             self._length, container, core.flavor)
        for write in self._records:
            try:
                write(record)
            except Exception:
                log.failure("recording the waiting line")
