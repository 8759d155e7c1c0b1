"""The lifecycle record: one structured log event per container transition.

The container machine (tmpnb/states.py) calls its ``on_transition`` hook with a
``TransitionEvent``; ``LifecycleRecorder`` turns each into a twisted.logger event, and
``lifecycle_log_observer`` writes only those events to a JSON-lines file for researchers
(``--lifecycle-log FILE``).  ``python -m tmpnb.lifecycle report FILE`` summarises such a file
(see tmpnb/report.py).
"""

from __future__ import annotations

import io
import json
import sys
from datetime import datetime, timezone
from typing import IO, Any, Iterable, Iterator, Protocol

from twisted.logger import ILogObserver, Logger, LogLevel
from zope.interface import implementer

NAMESPACE = "tmpnb.lifecycle"
# Every event LifecycleRecorder emits carries this key, so observers can pick them out
# whatever namespace the injected Logger has.
MARKER = "tmpnb_lifecycle"

# Inputs after which the transition is a failure worth a warning in the operator's log.
FAILURE_INPUTS = frozenset({"bootFailed"})


class Transition(Protocol):
    """What the machine reports; tmpnb.states.TransitionEvent has these attributes."""

    container: str
    from_state: str
    to_state: str
    input: str
    time: float
    seconds_in_previous: float
    cause: str | None


class LifecycleRecorder:
    """The machine's ``on_transition`` hook: logs every transition as a structured event."""

    def __init__(self, log: Logger | None = None) -> None:
        self._log = log if log is not None else Logger(namespace=NAMESPACE)

    def __call__(self, event: Transition) -> None:
        if event.cause is None:
            fmt = (
                "container {container} {from_state} -> {to_state} on {input}"
                " after {seconds_in_previous:.3f}s"
            )
        else:
            fmt = (
                "container {container} {from_state} -> {to_state} on {input}"
                " after {seconds_in_previous:.3f}s: {cause}"
            )
        level = LogLevel.warn if event.input in FAILURE_INPUTS else LogLevel.info
        self._log.emit(
            level,
            fmt,
            container=event.container,
            from_state=event.from_state,
            to_state=event.to_state,
            input=event.input,
            time=event.time,
            seconds_in_previous=event.seconds_in_previous,
            cause=event.cause,
            **{MARKER: True},
        )


def record_from_log_event(event: dict[str, Any]) -> dict[str, Any]:
    """The researchers' JSON object for one logged transition: plain keys, plain values."""
    if "line_event" in event:
        return line_record_from_log_event(event)
    when = float(event["time"])
    return {
        "container": event["container"],
        "from": event["from_state"],
        "to": event["to_state"],
        "input": event["input"],
        "time": when,
        "iso": datetime.fromtimestamp(when, timezone.utc).isoformat(),
        "seconds_in_previous": float(event["seconds_in_previous"]),
        "cause": event["cause"],
    }


def line_record_from_log_event(event: dict[str, Any]) -> dict[str, Any]:
    """A visitor's step in the waiting line (tmpnb/waitingline.py): joined, served, left or
    expired; `waited` seconds since joining, `waiting` the line's length afterwards."""
    when = float(event["time"])
    return {
        "visitor": event["visitor"],
        "line": event["line_event"],
        "time": when,
        "iso": datetime.fromtimestamp(when, timezone.utc).isoformat(),
        "waited": float(event["waited"]),
        "position": event["position"],
        "waiting": event["length"],
        "container": event["container"],
    }


@implementer(ILogObserver)
class LifecycleLogObserver:
    """Writes lifecycle events, and nothing else, to a file as JSON lines.

    Each line is flushed at once: a researcher may tail the file, and a crash must not
    lose the transitions that led to it.
    """

    def __init__(self, out: IO[str], owns_file: bool = False) -> None:
        self._out = out
        self._owns_file = owns_file

    def __call__(self, event: dict[str, Any]) -> None:
        if not event.get(MARKER):
            return
        self._out.write(json.dumps(record_from_log_event(event), separators=(",", ":")) + "\n")
        self._out.flush()

    def close(self) -> None:
        if self._owns_file:
            self._out.close()


def lifecycle_log_observer(path_or_file: str | IO[str]) -> LifecycleLogObserver:
    """An observer appending lifecycle events to ``path_or_file`` (a path or an open text file)."""
    if isinstance(path_or_file, str):
        return LifecycleLogObserver(open(path_or_file, "a", encoding="utf-8"), owns_file=True)
    return LifecycleLogObserver(path_or_file)


def read_records(lines: Iterable[str]) -> Iterator[dict[str, Any]]:
    """Parse a lifecycle log; blank lines are skipped, a torn last line (crash) too."""
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line:
            continue
        try:
            yield json.loads(line)
        except json.JSONDecodeError:
            print(f"skipping unreadable line {number}", file=sys.stderr)


def load(path: str) -> list[dict[str, Any]]:
    """All records of a lifecycle log file, in time order."""
    with io.open(path, encoding="utf-8") as f:
        return sorted(read_records(f), key=lambda r: r["time"])


def transitions(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The containers' transitions of a lifecycle log, without the waiting line's records."""
    return [r for r in records if "line" not in r]


def main(argv: list[str] | None = None) -> int:
    from tmpnb import report

    return report.main(argv)


if __name__ == "__main__":
    sys.exit(main())
