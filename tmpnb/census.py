"""Which of the pool's machines is in which state, as their transitions report it.

One index, kept by a single hook (`moved`, fed every TransitionEvent) and `forget`, so the
pool never keeps counts of its own. Every question it answers costs O(1) or O(answer), never
a scan of all machines: a node may hold thousands of containers.
"""

from __future__ import annotations

from collections.abc import Iterable


class Census:
    def __init__(self) -> None:
        self._state: dict[str, str] = {}
        # Per state, its machines in the order they entered it (dicts keep insertion order).
        self._by_state: dict[str, dict[str, None]] = {}

    def moved(self, container_id: str, to_state: str) -> None:
        """A machine reported entering `to_state` (a loop keeps its place)."""
        previous = self._state.get(container_id)
        if previous == to_state:
            return
        if previous is not None:
            del self._by_state[previous][container_id]
        self._state[container_id] = to_state
        self._by_state.setdefault(to_state, {})[container_id] = None

    def forget(self, container_id: str) -> None:
        previous = self._state.pop(container_id, None)
        if previous is not None:
            del self._by_state[previous][container_id]

    def is_in(self, container_id: str, states: Iterable[str]) -> bool:
        return self._state.get(container_id) in states

    def count(self, *states: str) -> int:
        return sum(len(self._by_state.get(state, ())) for state in states)

    def ids_in(self, states: Iterable[str]) -> list[str]:
        return [cid for state in states for cid in self._by_state.get(state, ())]

    def oldest(self, state: str) -> str | None:
        """The machine longest in `state`, or None."""
        return next(iter(self._by_state.get(state, ())), None)

    def counts(self) -> dict[str, int]:
        """Machines per state, states with none left out."""
        return {state: len(ids) for state, ids in self._by_state.items() if ids}
