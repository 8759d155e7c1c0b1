"""The lifecycle record: transitions become structured log events and researchers' JSON lines."""

from __future__ import annotations

import io
import json

from twisted.logger import Logger, LogLevel, LogPublisher, formatEvent, globalLogPublisher

import pytest

from tmpnb.lifecycle import (
    NAMESPACE,
    LifecycleRecorder,
    categorize,
    lifecycle_log_observer,
    load,
    load_frame,
    read_records,
)
from tmpnb import judging
from tmpnb.config import PoolConfig

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
        "category": None,
        "detail": None,
    }
    assert json.loads(lines[1])["cause"] == "timeout waiting for api/status"
    assert json.loads(lines[1])["category"] == "not-ready"


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


def transition(input: str, to_state: str = "culled", cause: str | None = None, **more) -> TransitionEvent:
    fields = dict(container="a1b2c3d4e5f6", from_state="assigned", to_state=to_state, input=input,
                  time=1_700_000_200.0, seconds_in_previous=3.0, cause=cause)
    return TransitionEvent(**{**fields, **more})


def idle_and_too_old_reasons() -> list[str]:
    """The reasons tmpnb.judging gives today, for an idle and a too old container."""
    config = PoolConfig(cull_timeout=600, cull_max=3600, cull_period=60)
    return [judging.verdict(0.0, 0.0, 700.0, config).reason, judging.verdict(0.0, 3500.0, 3600.0, config).reason]


@pytest.mark.parametrize("input, cause, category, detail", [
    ("cull", idle_and_too_old_reasons()[0], "idle", "no activity for 700s"),
    ("cull", idle_and_too_old_reasons()[1], "max-age", "assigned 3600s ago"),
    ("cull", "max-age: assigned 3600s ago", "max-age", "assigned 3600s ago"),
    ("cull", "gave up after 3 boot attempts: DockerTimeout: create after 30s", "boot-failed",
     "gave up after 3 boot attempts: DockerTimeout: create after 30s"),
    ("cull", "route not added: ConnectionRefusedError: refused", "unroutable", "ConnectionRefusedError: refused"),
    ("cull", "route not restored: ConnectionRefusedError: refused", "unroutable", "ConnectionRefusedError: refused"),
    ("cull", "stopping", "stopping", None),
    ("cull", "drained", "drained", None),
    ("cull", "admin", "admin", None),
    ("cull", "visitor left", "visitor-left", None),
    ("cull", "node-drain: the redirector asked", "node-drain", "the redirector asked"),  # a newer part's own
    ("cull", "Something Else entirely, with no category", "other", "Something Else entirely, with no category"),
    ("exited", "oom", "died", "oom"),
    ("exited", "vanished", "died", "vanished"),
    ("bootFailed", "not ready within 30s", "not-ready", "not ready within 30s"),
    ("bootFailed", "container exited while booting (die)", "exited", "container exited while booting (die)"),
    ("bootFailed", "DockerTimeout: create after 30s", "docker-timeout", "DockerTimeout: create after 30s"),
    ("bootFailed", "DockerUnavailable: no socket", "docker-unavailable", "DockerUnavailable: no socket"),
    ("bootFailed", "ImageNotFound: no such image", "launch-failed", "ImageNotFound: no such image"),
    ("ready", None, None, None),
    ("assign", None, None, None),
])
def test_every_cull_and_boot_failure_has_a_category_and_its_detail_apart(input, cause, category, detail):
    assert categorize(input, cause) == (category, detail)


def test_idle_culls_of_different_lengths_share_their_category():
    [eight, nine] = recorded(transition("cull", cause="idle: no activity for 8s"),
                             transition("cull", cause="idle: no activity for 9s"))
    assert (eight["category"], nine["category"]) == ("idle", "idle")
    assert (eight["detail"], nine["detail"]) == ("no activity for 8s", "no activity for 9s")


def test_routine_transitions_are_recorded_but_not_logged():
    records: list[dict] = []
    events: list[dict] = []
    recorder = LifecycleRecorder(Logger(namespace=NAMESPACE, observer=events.append), records=[records.append])
    recorder(transition("boot", from_state="requested", to_state="booting"))
    recorder(transition("idle", from_state="assigned", to_state="idle"))
    recorder(transition("activity", from_state="idle", to_state="assigned"))
    recorder(BOOTED)
    recorder(transition("assign", from_state="pooled", to_state="assigned"))
    recorder(transition("cull", cause="idle: no activity for 600s"))
    assert [(r["input"], r["to"]) for r in records] == [
        ("boot", "booting"), ("idle", "idle"), ("activity", "assigned"),
        ("ready", "pooled"), ("assign", "assigned"), ("cull", "culled"),
    ]
    assert [e["input"] for e in events] == ["ready", "cull"]
    assert events[-1]["category"] == "idle"


def test_a_record_taker_that_raises_does_not_stop_the_others():
    taken: list[dict] = []
    events: list[dict] = []

    def broken(record: dict) -> None:
        raise RuntimeError("disk full")

    LifecycleRecorder(Logger(namespace=NAMESPACE, observer=events.append), records=[broken, taken.append])(BOOTED)
    assert len(taken) == 1
    assert any(e.get("log_failure") is not None for e in events)


OLD_LINES = [  # written before categories existed
    '{"container":"c1","from":"idle","to":"culled","input":"cull","time":2.0,"iso":"","seconds_in_previous":8.0,"cause":"idle: no activity for 8s"}',
    '{"container":"c2","from":"assigned","to":"culled","input":"exited","time":1.0,"iso":"","seconds_in_previous":4.0,"cause":"oom"}',
]


def test_old_logs_get_their_categories_when_read():
    records = list(read_records(OLD_LINES))
    assert [(r["category"], r["detail"]) for r in records] == [("idle", "no activity for 8s"), ("died", "oom")]


def test_several_logs_load_together_in_time_order(tmp_path):
    first, second = tmp_path / "node1.jsonl", tmp_path / "node2.jsonl"
    first.write_text(OLD_LINES[0] + "\n")
    observer = lifecycle_log_observer(str(second))
    LifecycleRecorder(Logger(namespace=NAMESPACE, observer=lambda e: None), records=[observer.write])(BOOTED)
    observer.close()
    second.write_text(second.read_text() + OLD_LINES[1] + "\n")
    assert [r["container"] for r in load(str(first), str(second))] == ["c2", "c1", "a1b2c3d4e5f6"]


def test_logs_load_into_a_pandas_data_frame(tmp_path):
    pandas = pytest.importorskip("pandas", reason="load_frame needs the report extra: pip install 'tmpnb[report]'")
    first, second = tmp_path / "node1.jsonl", tmp_path / "node2.jsonl"
    first.write_text(OLD_LINES[0] + "\n")
    second.write_text(OLD_LINES[1] + "\n")
    frame = load_frame(str(first), str(second))
    assert list(frame.columns) == ["time", "container", "from", "to", "input", "seconds_in_previous",
                                   "category", "detail", "cause", "source"]
    assert list(frame["container"]) == ["c2", "c1"]
    assert frame["time"].iloc[0] == pandas.Timestamp(1.0, unit="s", tz="UTC")
    assert frame.groupby("category", observed=True).size().to_dict() == {"died": 1, "idle": 1}
    assert list(frame["source"]) == [str(second), str(first)]


def test_without_pandas_the_loader_says_what_to_install(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_pandas(name, *args, **kwargs):
        if name == "pandas":
            raise ImportError("No module named 'pandas'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pandas)
    with pytest.raises(ImportError, match=r"pip install 'tmpnb\[report\]'"):
        load_frame(str(tmp_path / "any.jsonl"))
