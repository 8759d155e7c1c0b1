"""Keep the garbage collector's full passes short: what has lived a while is not walked again
until there is twice as much of it.

CPython's full (generation 2) collection walks every tracked object, and the reactor
thread stops for it: a visitor's request waits behind it. tmpnb's imports alone (Twisted,
docker-py, treq, prometheus_client, …) are ≈66,000 objects, a full pass over them ≈57 ms
on this machine; on top come ≈14 objects per tracked container (its machine, core, route,
…): at 20,000 containers a full pass took ≈200 ms, and CPython started one every few
heartbeats (benchmarks/RESULTS.md, "scale").

`gc.freeze()` moves every object alive now out of all later collections. Objects made
before the reactor starts (modules, classes, the services) live as long as the process:
`freeze_startup_objects` freezes them once. `Freezer` then freezes, once a period, whatever
has survived since: full collections walk only what the last period made.

A frozen object is still freed the moment nothing refers to it (reference counting); what a
frozen object can no longer be is collected as part of a garbage *cycle*. tmpnb's own
per-container state makes no cycle (a culled container's machine, core and route are freed
by reference counting alone: tests/test_collector.py), but other frozen cycles (a
connection open at a freeze and closed later, say) would stay. So the freezer counts: when
the frozen objects have doubled since its last full collection, it thaws them and collects
everything once (the one long pause, at a moment of its choosing), then freezes the
survivors. Frozen garbage is never more than what was alive at that collection, and the
long pauses come only as often as the tracked population doubles (log2 of its growth at
the start, then only if frozen garbage piles up), like a growing array's copies.
"""

from __future__ import annotations

import gc
import time
from typing import Any

from twisted.application.internet import TimerService
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

log = Logger()

# Between two freezes: full collections walk at most what this many seconds made.
FREEZE_EVERY = 60.0
# Thaw and collect everything once the frozen objects are this many times those frozen
# after the last full collection.
GROWTH = 2.0


def freeze_startup_objects() -> int:
    """Collect once, then leave everything that survived out of every later collection;
    returns how many objects were frozen. Call it once the service is built (e.g.
    `reactor.callWhenRunning`)."""
    gc.collect()
    gc.freeze()
    frozen = gc.get_freeze_count()
    log.info("{frozen} objects made at start are out of the garbage collector's passes", frozen=frozen)
    return frozen


class Freezer:
    """Once a period, freezes what survived since the last one; when the frozen objects
    have grown `growth` times since the last full collection, thaws, collects, refreezes."""

    def __init__(self, growth: float = GROWTH) -> None:
        self._growth = growth
        self._baseline: int | None = None  # frozen right after the last full collection
        # At most the objects frozen now: those frozen at the last count, plus those frozen
        # since (some of which are gone). Counting the frozen ones walks them all (≈30 ms at
        # 20,000 containers): they are counted only when this bound says they may have grown.
        self._at_most = 0
        self.thaws = 0  # full collections it made (tests and benchmarks read it)
        self.last_thaw: float = 0.0  # the thread CPU seconds the last one took

    def tick(self) -> None:
        if self._baseline is None:
            self._thaw()
            return
        # What this freeze adds: the objects made (and still alive) since the last one.
        young = sum(len(gc.get_objects(generation)) for generation in range(3))
        self._at_most += young
        limit = self._growth * max(self._baseline, 1)
        if self._at_most > limit:
            # What survived the earlier freezes (live, or garbage cycles), counted.
            self._at_most = gc.get_freeze_count() + young
            if self._at_most > limit:
                self._thaw()
                return
        gc.freeze()

    def _thaw(self) -> None:
        began = time.thread_time()
        before = gc.get_freeze_count()
        gc.unfreeze()
        found = gc.collect()
        gc.freeze()
        self._baseline = self._at_most = gc.get_freeze_count()
        self.thaws += 1
        self.last_thaw = time.thread_time() - began
        log.info(
            "full garbage collection over {before} frozen objects and the rest: {found} unreachable,"
            " {frozen} frozen again, {pause_ms:.1f} ms",
            before=before,
            found=found,
            frozen=self._baseline,
            pause_ms=self.last_thaw * 1000,
        )


def freezer_service(clock: IReactorTime, every: float = FREEZE_EVERY, freezer: Freezer | None = None) -> Any:
    """A TimerService ticking `freezer` (a new one by default) every `every` seconds on `clock`;
    its first tick collects everything once and freezes the survivors."""
    ticking = freezer or Freezer()
    service = TimerService(every, ticking.tick)
    service.clock = clock
    return service
