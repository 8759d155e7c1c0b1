"""The lifecycle record: transitions become structured log events and researchers' JSON lines."""

from __future__ import annotations

import io
import json

from twisted.logger import Logger, LogLevel, LogPublisher, formatEvent, globalLogPublisher

from tmpnb.lifecycle import (
    NAMESPACE,
    LifecycleRecorder,
    lifecycle_log_observer,
    load,
    read_records,
)

from tmpnb.states import TransitionEvent

BOOTED = TransitionEvent(
    container="a1b2c3d4e5f6",
    from_state="booting",
    to_state="pooled",
    input="ready",
    time=1_700_000_100.25,
    seconds_in_previous=1.5,
    cause=None,
)
BOOT_FAILED = TransitionEvent(
    container="a1b2c3d4e5f6",
    from_state="booting",
    to_state="culled",
    input="bootFailed",
    time=1_700_000_130.0,
    seconds_in_previous=30.0,
    cause="timeout waiting for api/status",
)


def recorded(*transitions) -> list[dict]:
    """The log events a recorder emits for ``transitions`` (no global log publisher)."""
    events: list[dict] = []
    recorder = LifecycleRecorder(Logger(namespace=NAMESPACE, observer=events.append))
    for t in transitions:
        recorder(t)
    return events


def test_one_structured_event_per_transition():
    [event] = recorded(BOOTED)
    assert event["log_namespace"] == "tmpnb.lifecycle"
    assert event["log_level"] == LogLevel.info
    assert {k: event[k] for k in ("container", "from_state", "to_state", "input")} == {
        "container": "a1b2c3d4e5f6",
        "from_state": "booting",
        "to_state": "pooled",
        "input": "ready",
    }
    assert event["time"] == 1_700_000_100.25
    assert event["seconds_in_previous"] == 1.5
    assert event["cause"] is None
    assert formatEvent(event) == "container a1b2c3d4e5f6 booting -> pooled on ready after 1.500s"


def test_failures_are_warnings_with_their_cause():
    [event] = recorded(BOOT_FAILED)
    assert event["log_level"] == LogLevel.warn
    assert formatEvent(event) == (
        "container a1b2c3d4e5f6 booting -> culled on bootFailed after 30.000s:"
        " timeout waiting for api/status"
    )


def test_by_default_events_go_to_the_global_log_in_the_lifecycle_namespace():
    events: list[dict] = []
    globalLogPublisher.addObserver(events.append)
    try:
        LifecycleRecorder()(BOOTED)
    finally:
        globalLogPublisher.removeObserver(events.append)
    assert [e["log_namespace"] for e in events if "from_state" in e] == ["tmpnb.lifecycle"]


def test_json_lines_hold_only_lifecycle_events_with_plain_keys():
    out = io.StringIO()
    observer = lifecycle_log_observer(out)
    publisher = LogPublisher(observer)
    recorder = LifecycleRecorder(Logger(namespace=NAMESPACE, observer=publisher))
    other = Logger(namespace="tmpnb.pool", observer=publisher)

    recorder(BOOTED)
    other.info("refilling {n}", n=2)  # not a transition: not written
    recorder(BOOT_FAILED)

    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    assert json.loads(lines[0]) == {
        "container": "a1b2c3d4e5f6",
        "from": "booting",
        "to": "pooled",
        "input": "ready",
        "time": 1_700_000_100.25,
        "iso": "2023-11-14T22:15:00.250000+00:00",
        "seconds_in_previous": 1.5,
        "cause": None,
    }
    assert json.loads(lines[1])["cause"] == "timeout waiting for api/status"


def test_log_file_is_appended_and_read_back_in_time_order(tmp_path):
    path = str(tmp_path / "lifecycle.jsonl")
    for transition in (BOOT_FAILED, BOOTED):  # written out of order, across two runs
        observer = lifecycle_log_observer(path)
        LifecycleRecorder(Logger(namespace=NAMESPACE, observer=observer))(transition)
        observer.close()
    records = load(path)
    assert [(r["from"], r["to"]) for r in records] == [("booting", "pooled"), ("booting", "culled")]


def test_torn_last_line_is_skipped():
    good = json.dumps({"container": "x", "time": 1.0})
    assert list(read_records([good + "\n", "\n", '{"container": "y", "ti'])) == [json.loads(good)]
