"""Work over every container, cut into short stretches that give the reactor back.

The heartbeat and the route listing touch every tracked container. At 20,000 containers
one pass is hundreds of milliseconds of Python; done in one go, every visitor's request
arriving meanwhile waits behind all of it (benchmarks/scale.py measured 2.3 s behind a
heartbeat that culled 5,000). `Slicer.each` runs the per-item work and, once a stretch has
taken `budget` seconds (or `most` items), waits for the next reactor turn
(`callLater(0)` on the injected clock) before going on, so other work gets in between.
A small pass (the usual case) never yields at all.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater

T = TypeVar("T")

# One stretch's length: well under the 50 ms a visitor may wait behind the heartbeat, long
# against the cost of a reactor turn (a few µs), so a pass over 20,000 takes tens of turns.
BUDGET = 0.01
# The stretch's time is the reactor thread's CPU time (a preempted thread has not kept anyone
# waiting on this machine's account, and tests stay deterministic); reading it is a system
# call (≈1-4 µs), so it is read every this many items.
CHECK_EVERY = 32
# Items a chunk of `in_chunks` holds: CHECK_EVERY chunks (the time is read once per that
# many) are ≈2,000 items of cheap work, a millisecond or two.
CHUNK = 64
# A pass over fewer items than this is short (well under a millisecond a pass): no turn
# given back between passes.
LARGE = 512


class Slicer:
    """Runs per-item work in stretches of about `budget` seconds of `timer` (read every
    CHECK_EVERY items) or at most `most` items, yielding to the reactor between them."""

    def __init__(
        self,
        clock: IReactorTime,
        budget: float = BUDGET,
        most: int | None = None,
        timer: Callable[[], float] = time.thread_time,
    ) -> None:
        self._clock = clock
        self._budget = budget
        self._most = most
        self._timer = timer
        self.yields = 0  # reactor turns given back, ever (tests and benchmarks read it)
        # The stretch the last pass was in, and when that pass ended (timer readings): a pass
        # that starts less than `budget` after the last one ended goes on with its stretch,
        # so passes one after the other in the same reactor call do not each take a budget
        # (at 20,000 containers a heartbeat runs a dozen of them back to back). Taken for
        # the same call when it was another, it only yields a little sooner.
        self._stretch_began: float | None = None
        self._last_ended = 0.0

    async def each(
        self, items: Iterable[T], act: Callable[[T], object], go_on: Callable[[], bool] | None = None
    ) -> bool:
        """`act(item)` for every item, in order, yielding between stretches; after each yield
        `go_on()` (if given) says whether to carry on. True if every item was done.
        `items` is iterated across yields: give a list, not a view of something that changes."""
        began, done = self._timer(), 0
        if self._stretch_began is not None and began - self._last_ended < self._budget:
            began = self._stretch_began
        try:
            return await self._each(items, act, go_on, began)
        finally:
            self._last_ended = self._timer()

    async def _each(
        self, items: Iterable[T], act: Callable[[T], object], go_on: Callable[[], bool] | None, began: float
    ) -> bool:
        done = 0
        self._stretch_began = began
        for item in items:
            act(item)
            done += 1
            if (self._most is not None and done >= self._most) or (
                done % CHECK_EVERY == 0 and self._timer() - began >= self._budget
            ):
                await self.breathe()
                if go_on is not None and not go_on():
                    return False
                began, done = self._timer(), 0
                self._stretch_began = began
        return True

    async def in_chunks(
        self, items: Sequence[T], act: Callable[[Sequence[T]], object], go_on: Callable[[], bool] | None = None
    ) -> bool:
        """`act(chunk)` for consecutive chunks of CHUNK items, as `each` does for items: for
        passes whose per-item work is a comprehension's (a dict probe, a comparison), where
        a function call per item would be most of the cost."""
        chunks = [items[start:start + CHUNK] for start in range(0, len(items), CHUNK)]
        return await self.each(chunks, act, go_on)

    async def between(self, count: int) -> None:
        """Between two passes over `count` items: yield first if there are many (more than
        `most`, or LARGE), so the next pass starts a stretch of its own."""
        if count > (self._most if self._most is not None else LARGE):
            await self.breathe()

    async def breathe(self) -> None:
        """Let the reactor run whatever else is due, then carry on."""
        self.yields += 1
        await deferLater(self._clock, 0)
        self._stretch_began = None  # a new reactor call: the next pass starts a stretch of its own
