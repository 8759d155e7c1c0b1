"""One visitor's place in the waiting line (tmpnb/waitingline.py), as an automat machine.

waiting → serving (the route being added) → ready → claimed; left from any of the first three
(a visitor gone, a place expired), failed when the hand-out failed. Late events have explicit
transitions: a container handed to a ticket whose visitor left is passed on.

The machine's core holds the visitor's held requests (`waiters`) and the timer that ends a
place kept for someone away (`expiry`). Behaviours never fire a waiter themselves: they put it
in the core's outbox, which `Ticket` delivers once the input has returned, so a visitor's
answer can ask the ticket again (automat queues inputs made from inside a behaviour).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from automat import TypeMachineBuilder
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.python.failure import Failure

from tmpnb.states import Assignment
from tmpnb.transitions import index_transitions

__all__ = ["Ticket", "TicketCore", "TicketInputs", "TicketLine"]

Outcome = Assignment | Failure | None


class TicketLine(Protocol):
    """What a ticket tells the waiting line that holds it."""

    def left_line(self, core: TicketCore, why: str) -> None:
        """A visitor still in line left (`why`: "left", "expired")."""

    def served(self, core: TicketCore, assignment: Assignment) -> None:
        """The ticket's container is ready for its visitor."""

    def pass_on(self, assignment: Assignment) -> None:
        """A container whose visitor left before seeing its URL: the next visitor's."""

    def finished(self, core: TicketCore) -> None:
        """The ticket is done (claimed, left or failed): forget it."""


class TicketInputs(Protocol):
    def serving(self) -> None:
        """A container is being handed to the ticket (its route is being added)."""

    def handedOut(self, assignment: Assignment) -> None:
        """The container's route is in place."""

    def handOutFailed(self, failure: Failure) -> None:
        """The container could not be handed out (its route was refused)."""

    def wait(self, timeout: float) -> Deferred[Assignment | None]:
        """The visitor is here and waits at most `timeout` seconds (None after it)."""

    def timeUp(self, waiter: Deferred[Assignment | None]) -> None:
        """A held request waited its `timeout`."""

    def away(self, grace: float) -> None:
        """The visitor was answered without their notebook: their place is kept `grace` seconds."""

    def leave(self, why: str) -> None:
        """The visitor is gone."""

    def claim(self) -> Assignment:
        """The visitor is sent to the ticket's container: theirs from now on (ready only)."""

    def status(self) -> str:
        """The ticket's state, for the pages."""


@dataclass
class TicketCore:
    id: str
    below: str  # where in their server the visitor is going
    joined_at: float
    clock: IReactorTime
    line: TicketLine
    position_at_join: int = 0  # 0: served at once, never in line
    flavor: str = "default"  # the flavor the visitor asked for (tmpnb/flavors.py)
    assignment: Assignment | None = None
    failure: Failure | None = None
    waiters: list[Deferred[Assignment | None]] = field(default_factory=list)
    expiry: IDelayedCall | None = None
    # (waiter, outcome) to fire once the current input has returned
    outbox: list[tuple[Deferred[Assignment | None], Outcome]] = field(default_factory=list)
    # Runs an input from a timer, delivering what it put in the outbox (set by Ticket).
    later: Callable[..., Any] = field(default=lambda *a: None)

    def answer_all(self, outcome: Outcome) -> None:
        waiters, self.waiters = self.waiters, []
        self.outbox.extend((d, outcome) for d in waiters)

    def cancel_expiry(self) -> None:
        if self.expiry is not None and self.expiry.active():
            self.expiry.cancel()
        self.expiry = None


builder = TypeMachineBuilder(TicketInputs, TicketCore)
waiting = builder.state("waiting")
serving = builder.state("serving")
ready = builder.state("ready")
claimed = builder.state("claimed")
left = builder.state("left")
failed = builder.state("failed")
STATES = (waiting, serving, ready, claimed, left, failed)


@waiting.upon(TicketInputs.serving).to(serving)
def being_served(inputs: TicketInputs, core: TicketCore) -> None:
    pass


@serving.upon(TicketInputs.handedOut).to(ready)
def handed_out(inputs: TicketInputs, core: TicketCore, assignment: Assignment) -> None:
    core.line.served(core, assignment)
    core.assignment = assignment
    core.answer_all(assignment)


@left.upon(TicketInputs.handedOut).loop()
def handed_out_too_late(inputs: TicketInputs, core: TicketCore, assignment: Assignment) -> None:
    # The visitor left while the route was added: nobody has seen the URL.
    core.line.pass_on(assignment)


@serving.upon(TicketInputs.handOutFailed).to(failed)
def hand_out_failed(inputs: TicketInputs, core: TicketCore, failure: Failure) -> None:
    core.failure = failure
    core.cancel_expiry()  # done: nothing is left to expire
    core.line.finished(core)
    core.answer_all(failure)


@left.upon(TicketInputs.handOutFailed).loop()
def failed_after_leaving(inputs: TicketInputs, core: TicketCore, failure: Failure) -> None:
    # Nobody to tell: the machine culls the container whose route was refused.
    pass


def hold(inputs: TicketInputs, core: TicketCore, timeout: float) -> Deferred[Assignment | None]:
    core.cancel_expiry()  # the visitor is here: a place kept for them is theirs again
    d: Deferred[Assignment | None] = Deferred()
    core.waiters.append(d)
    timer = core.later(timeout, inputs.timeUp, d)
    d.addBoth(lambda result: (timer.cancel() if timer.active() else None, result)[1])
    return d


def answered_at_once(outcome: Callable[[TicketCore], Outcome]) -> Callable[..., Deferred[Assignment | None]]:
    def answer(inputs: TicketInputs, core: TicketCore, timeout: float) -> Deferred[Assignment | None]:
        core.cancel_expiry()
        d: Deferred[Assignment | None] = Deferred()
        core.outbox.append((d, outcome(core)))
        return d

    return answer


waiting.upon(TicketInputs.wait).loop()(hold)
serving.upon(TicketInputs.wait).loop()(hold)
ready.upon(TicketInputs.wait).loop()(answered_at_once(lambda core: core.assignment))
failed.upon(TicketInputs.wait).loop()(answered_at_once(lambda core: core.failure))
for _done in (claimed, left):
    _done.upon(TicketInputs.wait).loop()(answered_at_once(lambda core: None))


def time_up(inputs: TicketInputs, core: TicketCore, waiter: Deferred[Assignment | None]) -> None:
    if waiter in core.waiters:  # not answered meanwhile
        core.waiters.remove(waiter)
        core.outbox.append((waiter, None))


for _state in STATES:
    _state.upon(TicketInputs.timeUp).loop()(time_up)


def keep_place(inputs: TicketInputs, core: TicketCore, grace: float) -> None:
    core.cancel_expiry()
    core.expiry = core.later(grace, inputs.leave, "expired")


def nothing(inputs: TicketInputs, core: TicketCore, *args: object) -> None:
    """Done: nothing more happens to this ticket."""


for _state in (waiting, serving, ready):
    _state.upon(TicketInputs.away).loop()(keep_place)
for _state in (claimed, left, failed):
    _state.upon(TicketInputs.away).loop()(nothing)
    # A second request on the same ticket, or a held one dropped after the answer.
    _state.upon(TicketInputs.leave).loop()(nothing)


@waiting.upon(TicketInputs.leave).to(left)
def left_the_line(inputs: TicketInputs, core: TicketCore, why: str) -> None:
    core.cancel_expiry()
    core.line.left_line(core, why)
    core.line.finished(core)
    core.answer_all(None)


@serving.upon(TicketInputs.leave).to(left)
def left_while_served(inputs: TicketInputs, core: TicketCore, why: str) -> None:
    # The route is being added: handed_out_too_late passes the container on.
    core.cancel_expiry()
    core.line.finished(core)
    core.answer_all(None)


@ready.upon(TicketInputs.leave).to(left)
def left_before_claiming(inputs: TicketInputs, core: TicketCore, why: str) -> None:
    core.cancel_expiry()
    core.line.finished(core)
    core.answer_all(None)
    assignment, core.assignment = core.assignment, None
    if assignment is not None:
        core.line.pass_on(assignment)


@ready.upon(TicketInputs.claim).to(claimed)
def claim(inputs: TicketInputs, core: TicketCore) -> Assignment:
    core.cancel_expiry()  # done: nothing is left to expire
    core.line.finished(core)
    assert core.assignment is not None  # ready always has one
    return core.assignment


def answers_status(state: Any) -> None:
    def status(inputs: TicketInputs, core: TicketCore) -> str:
        return str(state.name)

    state.upon(TicketInputs.status).loop()(status)


for _state in STATES:
    answers_status(_state)

TicketMachine = builder.build()
index_transitions(TicketMachine)  # a dict probe per input (tmpnb/transitions.py)

DONE = frozenset({"claimed", "left", "failed"})


class Ticket:
    """A visitor's ticket: its machine, with the waiters it answered delivered after each input."""

    def __init__(self, core: TicketCore) -> None:
        self.core = core
        self._machine = TicketMachine(core)
        core.later = self._later

    # what the web reads
    @property
    def id(self) -> str:
        return self.core.id

    @property
    def below(self) -> str:
        return self.core.below

    @property
    def joined_at(self) -> float:
        return self.core.joined_at

    @property
    def position_at_join(self) -> int:
        return self.core.position_at_join

    @property
    def assignment(self) -> Assignment | None:
        return self.core.assignment

    @property
    def state(self) -> str:
        return self._machine.status()

    @property
    def done(self) -> bool:
        return self.state in DONE

    # the inputs, each followed by delivering what it answered
    def serving(self) -> None:
        self._run(self._machine.serving)

    def handed_out(self, assignment: Assignment) -> None:
        self._run(self._machine.handedOut, assignment)

    def hand_out_failed(self, failure: Failure) -> None:
        self._run(self._machine.handOutFailed, failure)

    def wait(self, timeout: float) -> Deferred[Assignment | None]:
        return self._run(self._machine.wait, timeout)

    def away(self, grace: float) -> None:
        self._run(self._machine.away, grace)

    def leave(self, why: str = "left") -> None:
        self._run(self._machine.leave, why)

    def claim(self) -> Assignment:
        return self._run(self._machine.claim)

    def _run(self, input: Callable[..., Any], *args: Any) -> Any:
        try:
            return input(*args)
        finally:
            self._deliver()

    def _later(self, delay: float, input: Callable[..., Any], *args: Any) -> IDelayedCall:
        return self.core.clock.callLater(delay, self._run, input, *args)

    def _deliver(self) -> None:
        outbox, self.core.outbox = self.core.outbox, []
        for d, outcome in outbox:
            if isinstance(outcome, Failure):
                d.errback(outcome)
            else:
                d.callback(outcome)
