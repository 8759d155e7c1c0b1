"""When each handed-out container next needs the heartbeat's look, and what its server last said.

At 20,000 handed-out containers, judging every one at every heartbeat, and asking every idle
one's server for its status, cost ≈3.6 s of the reactor's CPU (benchmarks/RESULTS.md,
"scale"), although almost none of those looks could change anything. A verdict
(tmpnb/judging.py) is a function of the container's known activity K, when it was assigned,
and the time; without news it changes only when the time reaches

- K + cull_period, for an active one (it goes idle),
- K + cull_timeout, for an idle one (it is culled),
- assigned_at + cull_max, for any (too old).

News comes from two places: the proxy (the route's last_activity moved: `moved`) and the
server's own api/status. The server is asked only when the proxy has seen nothing for a
period (judging.settled_without_status). An answer that ran no further than what was known
already (its last_activity no newer than the proxy's, the heartbeat's and its own previous
answer's, within SLACK) shows a server that does nothing on its own: everything a visitor
does there passes through the proxy. While the proxy then sees nothing new, asking it again
would give the same answer, so it is kept (`cached_activity`) until the container would be
culled on it: then it is asked once more, so a cull is never decided on a kept answer. A
server whose answer ran ahead (a kernel computing with its tab closed, a terminal), or that
did not answer, is asked at every heartbeat, as before.

Hence every cull comes at the very heartbeat it came before: at any earlier heartbeat the
activity known here is at most the true one, so `now - activity < cull_timeout` held there
too. What may differ is the idle label of a server that starts doing something on its own
after a quiet answer without a request (a kernel's computation printing after a long
silence): it reads "idle" until the cull check asks it again (and then it is active, not
culled).

Due times sit in a heap (lazy: an entry whose time moved later is queued anew when it comes
up, one an earlier entry superseded is skipped), so a heartbeat finds the due ones in
O(due · log N), and a container active at every look is pushed about once a period. The records are dicts of plain floats
and strings and tuples of them, which the garbage collector does not track.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from typing import Any

from tmpnb.config import PoolConfig
from tmpnb.judging import Active, Cull, Idle, Verdict

# A server's last_activity this much ahead of what the proxy saw is still "nothing new": the
# server stamps a request a little after the proxy passed it on, and the embedded proxy
# stamps a route at most every few seconds while a connection streams (tmpnb/proxy/server.py).
SLACK = 2.0
# The heap is rebuilt from the due times when stale entries outnumber live ones by this.
COMPACT_RATIO = 3


def route_mark(route: dict | None) -> object:
    """What says the proxy saw something new: the route's last_activity as listed (None
    without a route). Compared, never parsed: parsing 20,000 times a heartbeat is its cost."""
    return None if route is None else route.get("last_activity")


class Lookouts:
    """The handed-out containers' next looks (a heap of due times) and kept server answers."""

    def __init__(self, config: PoolConfig) -> None:
        self._config = config
        self._due: dict[str, float] = {}  # container → when to judge it without news
        self._heap: list[tuple[float, str]] = []
        self._queued: dict[str, float] = {}  # container → its earliest entry in the heap
        self._overdue: set[str] = set()  # their time came; judged at the next chance
        self._marks: dict[str, object] = {}  # container → route mark when last judged
        # container → (assigned_at, route mark, last_activity) of a quiet server's answer
        self._answers: dict[str, tuple[float | None, object, float]] = {}
        # container → (assigned_at, last_activity) of the server's latest answer, quiet or not
        self._last_said: dict[str, tuple[float | None, float]] = {}

    def __len__(self) -> int:
        return len(self._due)

    def due_by(self, now: float) -> set[str]:
        """The containers whose look is due at `now` (they stay due until `judged`)."""
        for _ in self.come_due(now):
            pass
        return self._overdue

    def come_due(self, now: float) -> Iterator[str]:
        """Moves the containers whose time came by `now` among the due (`overdue`), one heap
        entry at a time: the heartbeat runs it in stretches (at 20,000 due at once, ≈50 ms)."""
        heap, due, queued = self._heap, self._due, self._queued
        while heap and heap[0][0] <= now:
            when, container_id = heapq.heappop(heap)
            if queued.get(container_id) != when:
                continue  # an entry an earlier one superseded
            del queued[container_id]
            later = due.get(container_id)
            if later is None:
                continue  # forgotten
            if later <= now:
                self._overdue.add(container_id)
                yield container_id
            else:  # its time moved on since this entry was queued: queue it anew
                heapq.heappush(heap, (later, container_id))
                queued[container_id] = later

    @property
    def overdue(self) -> set[str]:
        """Those due and not yet judged (the set itself: it changes as they are judged)."""
        return self._overdue

    def moved(self, container_id: str, route: dict | None) -> bool:
        """Whether the container needs a look for news: never judged, or its route changed
        (new activity, or re-added, or gone) since its last look."""
        marks = self._marks
        return container_id not in marks or marks[container_id] != route_mark(route)

    def cached_activity(self, container_id: str, seen: dict[str, Any], route: dict | None, known: float, now: float) -> float | None:
        """The last_activity a quiet server gave, if asking it again now would give the same
        and cannot lead to a cull; None when it is to be asked. `known`: the activity known
        without the server (judging.latest_activity(seen, route, None))."""
        kept = self._answers.get(container_id)
        if kept is None:
            return None
        assigned_at, mark, activity = kept
        if assigned_at != seen["assigned_at"] or mark != route_mark(route):
            return None  # another container of that id, or the proxy saw something since
        if now - max(known, activity) >= self._config.cull_timeout:
            return None  # it would be culled on this answer: ask again
        return activity

    def answered(self, container_id: str, seen: dict[str, Any], route: dict | None, known: float, activity: float | None) -> None:
        """The server answered `activity` (None: it did not answer) with `known` known besides."""
        assigned_at = seen["assigned_at"]
        before = self._last_said.get(container_id)
        said_before = before[1] if before is not None and before[0] == assigned_at else None
        if activity is None:
            self._answers.pop(container_id, None)
            return
        self._last_said[container_id] = (assigned_at, activity)
        ahead_of = known if said_before is None else max(known, said_before)
        if activity <= ahead_of + SLACK:
            self._answers[container_id] = (assigned_at, route_mark(route), activity)
        else:  # something in it is active on its own: ask it each time, as before
            self._answers.pop(container_id, None)

    def judged(self, container_id: str, seen: dict[str, Any], route: dict | None, verdict: Verdict, now: float) -> None:
        """The container was given (or found to need no) `verdict` at `now`: its next look."""
        self._overdue.discard(container_id)
        if isinstance(verdict, Cull):
            self.forget(container_id)
            return
        config = self._config
        if isinstance(verdict, Active):
            when = verdict.when + config.cull_period
        elif isinstance(verdict, Idle) and container_id in self._answers:  # on a quiet server's answer
            when = verdict.since + config.cull_timeout
        else:  # idle, and its server is to be asked at every heartbeat
            when = now
        assigned_at = seen["assigned_at"]
        if assigned_at is not None:
            when = min(when, assigned_at + config.cull_max)
        self._marks[container_id] = route_mark(route)
        if when <= now:
            self._overdue.add(container_id)
            self._due.pop(container_id, None)
            return
        self._due[container_id] = when
        # An entry already queued for no later is enough: when it comes up it is queued anew
        # for its time then (come_due). A container active at every heartbeat is pushed once
        # a period, not at every look.
        queued = self._queued.get(container_id)
        if queued is None or queued > when:
            heapq.heappush(self._heap, (when, container_id))
            self._queued[container_id] = when
            if len(self._heap) > COMPACT_RATIO * (len(self._queued) + 64):
                self._compact()

    def forget(self, container_id: str) -> None:
        """The container is no longer handed out (culled, gone)."""
        self._due.pop(container_id, None)
        self._queued.pop(container_id, None)
        self._overdue.discard(container_id)
        self._marks.pop(container_id, None)
        self._answers.pop(container_id, None)
        self._last_said.pop(container_id, None)

    def _compact(self) -> None:
        self._heap = [(when, cid) for cid, when in self._due.items()]
        heapq.heapify(self._heap)
        self._queued = dict(self._due)
