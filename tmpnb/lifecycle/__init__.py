"""The lifecycle record: one record per container transition, with why (category, detail).

The container machine (tmpnb/states.py) calls its ``on_transition`` hook with a
``TransitionEvent``; ``LifecycleRecorder`` turns each into a plain record for its takers
(the JSON-lines file of ``--lifecycle-log``, written by ``lifecycle_log_observer``; the
metrics) and, unless routine, into a twisted.logger event for the operator.
``categorize`` names the kind of every cull and failed boot. ``load`` reads one or several
files back, ``load_frame`` into a pandas DataFrame; ``python -m tmpnb.lifecycle report
FILE…`` summarises them (tmpnb/report.py, through tmpnb/lifecycle/__main__.py: the report reads
records with this module, so this module never imports the report).
"""

from __future__ import annotations

import io
import json
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import IO, TYPE_CHECKING, Any, Callable, Iterable, Iterator

from twisted.logger import ILogObserver, Logger, LogLevel
from zope.interface import implementer

from tmpnb.flavors import DEFAULT_FLAVOR

if TYPE_CHECKING:
    from tmpnb.states import TransitionEvent

RecordTaker = Callable[[dict[str, Any]], None]  # a taker of records, e.g. LifecycleLogObserver.write


@dataclass(frozen=True)
class RecordTakers:
    """Who takes which records, said once (tmpnb/tap.py builds it): the containers' transitions
    go to every one of `transitions` (the metrics, the --lifecycle-log file), the waiting line's
    and the shares' events to `events` (the file only: the metrics count transitions)."""

    transitions: tuple[RecordTaker, ...] = ()
    events: tuple[RecordTaker, ...] = ()


NAMESPACE = "tmpnb.lifecycle"
# Every event LifecycleRecorder emits carries this key, so observers can pick them out
# whatever namespace the injected Logger has.
MARKER = "tmpnb_lifecycle"

# Inputs after which the transition is a failure worth a warning in the operator's log.
FAILURE_INPUTS = frozenset({"bootFailed"})
# Routine transitions: in the lifecycle record, but no line in the operator's log, which
# keeps one line per thing that matters (a container ready, handed out, culled and why, a
# failure). Starting a boot is followed by "ready" or a failure; a visitor going idle and
# coming back happens every heartbeat period; the orchestrator logs each hand-out itself
# ("handed … to a visitor", tmpnb/web/handout.py).
QUIET_INPUTS = frozenset({"boot", "idle", "activity", "assign"})

# Why a container was culled, and why a boot attempt failed, as a category (few values:
# the report groups by it, Prometheus uses it as a label) and the detail apart.
# A cull reason is "<category>: <detail>" or a known phrase; older logs' phrases included.
CULL_CATEGORIES = (
    ("idle", "idle"),
    ("max-age", "max-age"),
    ("too old", "max-age"),
    ("gave up after", "boot-failed"),
    ("route not added", "unroutable"),
    ("route not restored", "unroutable"),
    ("stopping", "stopping"),
    ("drained", "drained"),
    ("admin", "admin"),
    ("visitor left", "visitor-left"),
)
BOOT_FAILURE_CATEGORIES = (
    ("not ready within", "not-ready"),
    ("timeout waiting", "not-ready"),
    ("container exited while booting", "exited"),
    ("DockerTimeout", "docker-timeout"),
    ("DockerUnavailable", "docker-unavailable"),
)
OTHER = "other"
_CATEGORY_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz-")


def categorize(input: str, cause: str | None) -> tuple[str | None, str | None]:
    """(category, detail) of a transition: for culls (input cull or exited) and failed
    boot attempts; (None, None) for the others."""
    text = cause or ""
    if input == "exited":
        return "died", text or None  # Docker's word: die, oom, destroy; or vanished
    if input == "bootFailed":
        for prefix, category in BOOT_FAILURE_CATEGORIES:
            if text.startswith(prefix):
                return category, text
        return "launch-failed", text or None
    if input != "cull":
        return None, None
    for phrase, category in CULL_CATEGORIES:
        if text == phrase or text.startswith(phrase + ":") or text.startswith(phrase + " "):
            detail = text[len(phrase):].lstrip(":").strip()
            if category == "boot-failed":
                detail = text
            return category, detail or None
    # "<category>: <detail>" from a part of tmpnb this table does not know yet.
    head, colon, rest = text.partition(":")
    slug = head.strip().lower().replace(" ", "-")
    if slug and len(slug) <= 24 and set(slug) <= _CATEGORY_CHARS:
        return slug, rest.strip() or None
    return OTHER, text or None


class LifecycleRecorder:
    """The machine's ``on_transition`` hook: every transition becomes a record for each of
    ``records`` (the JSON-lines file, the metrics), and a structured log event for the
    operator unless it is routine (QUIET_INPUTS)."""

    def __init__(
        self, log: Logger | None = None, records: Iterable[Callable[[dict[str, Any]], None]] = ()
    ) -> None:
        self._log = log if log is not None else Logger(namespace=NAMESPACE)
        self._records = list(records)

    def __call__(self, event: TransitionEvent) -> None:
        category, detail = categorize(event.input, event.cause)
        fields = dict(
            container=event.container,
            from_state=event.from_state,
            to_state=event.to_state,
            input=event.input,
            time=event.time,
            seconds_in_previous=event.seconds_in_previous,
            cause=event.cause,
            category=category,
            detail=detail,
            flavor=event.flavor,
        )
        record = record_from_log_event(fields)
        for write in self._records:
            try:
                write(record)
            except Exception:
                self._log.failure("recording the transition of {container}", container=event.container)
        if event.input in QUIET_INPUTS:
            return
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
        self._log.emit(level, fmt, **fields, **{MARKER: True})


def record_from_log_event(event: dict[str, Any]) -> dict[str, Any]:
    """The researchers' JSON object for one logged transition: plain keys, plain values."""
    when = float(event["time"])
    category, detail = event.get("category"), event.get("detail")
    if category is None and "category" not in event:  # an event from before categories
        category, detail = categorize(event["input"], event["cause"])
    record = {
        "container": event["container"],
        "from": event["from_state"],
        "to": event["to_state"],
        "input": event["input"],
        "time": when,
        "iso": datetime.fromtimestamp(when, timezone.utc).isoformat(),
        "seconds_in_previous": float(event["seconds_in_previous"]),
        "cause": event["cause"],
        "category": category,
        "detail": detail,
    }
    return with_flavor(record, event.get("flavor"))


def with_flavor(record: dict[str, Any], flavor: str | None) -> dict[str, Any]:
    """The record with its container's flavor (tmpnb/flavors.py), written unless it is
    `default`: a node without --flavor writes the records it always wrote, and a record
    without "flavor" (`flavor_of`) is of the flavor `default`."""
    if flavor is not None and flavor != DEFAULT_FLAVOR:
        record["flavor"] = flavor
    return record


def flavor_of(record: dict[str, Any]) -> str:
    """The flavor a lifecycle record is of."""
    return record.get("flavor", DEFAULT_FLAVOR)


def line_record(
    visitor: str, step: str, when: float, waited: float, position: int, waiting: int, container: str | None,
    flavor: str = "default",
) -> dict[str, Any]:
    """A visitor's step in the waiting line (tmpnb/waitingline.py): joined, served, left or
    expired; `waited` seconds since joining, `waiting` the line's length afterwards. Written
    beside the transitions; `transitions()` and the report leave them out."""
    return with_flavor({
        "visitor": visitor,
        "line": step,
        "time": when,
        "iso": datetime.fromtimestamp(when, timezone.utc).isoformat(),
        "waited": waited,
        "position": position,
        "waiting": waiting,
        "container": container,
    }, flavor)


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
        if event.get(MARKER):
            self.write(record_from_log_event(event))

    def write(self, record: dict[str, Any]) -> None:
        """Append one record (LifecycleRecorder's ``records`` take this)."""
        self._out.write(json.dumps(record, separators=(",", ":")) + "\n")
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
    """Parse a lifecycle log; blank lines are skipped, a torn last line (crash) too.
    Records written before categories existed get theirs from their cause."""
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line:
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            print(f"skipping unreadable line {number}", file=sys.stderr)
            continue
        if "category" not in record and "input" in record:
            record["category"], record["detail"] = categorize(record["input"], record.get("cause"))
        yield record


def load(*paths: str) -> list[dict[str, Any]]:
    """All records of one or several lifecycle log files, in time order, but share events
    (`"kind": "share"`, tmpnb/share/service.py)."""
    records: list[dict[str, Any]] = []
    for path in paths:
        with io.open(path, encoding="utf-8") as f:
            records.extend(r for r in read_records(f) if r.get("kind") != "share")
    return sorted(records, key=lambda r: r["time"])


# Columns of load_frame's DataFrame, in this order.
COLUMNS = ("time", "container", "from", "to", "input", "seconds_in_previous", "category", "detail",
           "cause", "source")


def load_frame(*paths: str) -> Any:
    """One or several lifecycle logs as a pandas DataFrame, one row per transition in time
    order: ``time`` as a UTC Timestamp, ``source`` the file each came from (several runs, or
    several nodes of a federation, in one frame). Needs pandas: ``pip install tmpnb[report]``."""
    try:
        import pandas
    except ImportError:
        raise ImportError(
            "tmpnb.lifecycle.load_frame needs pandas: pip install 'tmpnb[report]' (or pip install pandas)"
        ) from None
    rows = []
    for path in paths:
        with io.open(path, encoding="utf-8") as f:
            rows.extend({**record, "source": path} for record in transitions(read_records(f)))
    frame = pandas.DataFrame(rows, columns=list(COLUMNS))
    frame["time"] = pandas.to_datetime(frame["time"], unit="s", utc=True)
    for column in ("from", "to", "input", "category"):
        frame[column] = frame[column].astype("category")
    return frame.sort_values("time", kind="stable").reset_index(drop=True)


def transitions(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The containers' transitions of a lifecycle log, without the waiting line's records and
    the share events (`"kind": "share"`, tmpnb/share/service.py)."""
    return [r for r in records if "line" not in r and r.get("kind", "transition") == "transition"]
