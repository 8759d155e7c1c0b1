"""The container and ticket machines' transitions found by a dict probe answer exactly what automat's own
scan answers, for every state and input (tmpnb/transitions.py)."""

from __future__ import annotations

import pytest
from automat import NoTransition
from automat._core import Automaton

from tmpnb.states import ContainerMachine
from tmpnb.tickets import TicketMachine
from tmpnb.transitions import index_transitions


@pytest.mark.parametrize("machine", [ContainerMachine, TicketMachine], ids=["container", "ticket"])
def test_every_transition_is_found_as_automat_finds_it(machine) -> None:
    a = machine.__automat_automaton__
    assert "outputForInput" in vars(a)  # the index is in front of automat's scan
    states = {t[0] for t in a._transitions} | {t[2] for t in a._transitions}
    symbols = {t[1] for t in a._transitions}
    found = 0
    for state in states:
        for symbol in symbols:
            try:
                expected = Automaton.outputForInput(a, state, symbol)
            except NoTransition:
                with pytest.raises(NoTransition):
                    a.outputForInput(state, symbol)
                continue
            assert a.outputForInput(state, symbol) == expected
            found += 1
    assert found == len(a._transitions)


def test_an_unexpected_machine_is_left_as_it_is() -> None:
    class NotAMachine:
        pass

    assert index_transitions(NotAMachine()) is False
