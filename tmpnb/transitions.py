"""A built automat machine's transitions found by one dict probe instead of a scan.

automat (25.4) finds the transition for each input by scanning every transition of the
machine and comparing (state, input) pairs: the container machine has ≈80, so each input
costs ≈8 µs, and a heartbeat gives every handed-out container one or two inputs (at 20,000
containers, a third of the sweep: benchmarks/scale.py). `index_transitions` puts a dict in
front of that scan, built from the same transitions once the machine is built. Anything the
dict does not know (a missing transition) still goes to automat's own lookup, which raises
as before. If automat's insides change shape, nothing is replaced and the machine works as
automat built it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from twisted.logger import Logger

log = Logger()


def index_transitions(machine: Any) -> bool:
    """Give the automaton behind `machine` (a TypeMachineBuilder's build()) a dict lookup;
    False (and the machine untouched) if its automaton is not as expected."""
    automaton = getattr(machine, "__automat_automaton__", None)
    transitions = getattr(automaton, "_transitions", None)
    scan = getattr(automaton, "outputForInput", None)
    if not isinstance(transitions, set) or scan is None:
        log.warn("automat's machine is not as expected; its transitions stay unindexed")
        return False
    table: dict[tuple[Any, Any], tuple[Any, Sequence[Any]]] = {
        (in_state, symbol): (out_state, outputs) for in_state, symbol, out_state, outputs in transitions
    }

    def output_for_input(in_state: Any, symbol: Any) -> tuple[Any, list[Any]]:
        found = table.get((in_state, symbol))
        if found is None:
            return scan(in_state, symbol)  # automat's own answer: NoTransition, or its default
        return found[0], list(found[1])

    automaton.outputForInput = output_for_input
    return True
