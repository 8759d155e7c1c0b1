"""The operator's log (tmpnb/logs.py): no factory start/stop noise, JSON lines on demand."""

from __future__ import annotations

import io
import json

from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactorClock
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.logger import LogPublisher, Logger, eventFromJSON, globalLogPublisher

from tmpnb.logs import connect_quietly, json_observer, quiet_connection_pool, text_observer


def events_of(action) -> list[dict]:
    """The events the global log publisher saw while `action` ran."""
    seen: list[dict] = []
    globalLogPublisher.addObserver(seen.append)
    try:
        action()
    finally:
        globalLogPublisher.removeObserver(seen.append)
    return seen


def test_a_noisy_factory_logs_starting_and_stopping_which_the_observers_drop():
    factory = Factory()  # noisy, as every Twisted factory is by default
    events = events_of(lambda: (factory.doStart(), factory.doStop()))
    assert [e["log_format"] for e in events] == ["Starting factory {factory!r}", "Stopping factory {factory!r}"]

    for make in (text_observer, json_observer):
        out = io.StringIO()
        observer = make(out)
        for event in events:
            observer(event)
        assert out.getvalue() == ""


def test_the_observers_keep_what_matters():
    out = io.StringIO()
    publisher = LogPublisher(text_observer(out))
    Logger(namespace="tmpnb.pool", observer=publisher).info("culled {container}: {reason}", container="abc", reason="idle")
    assert "[tmpnb.pool#info] culled abc: idle" in out.getvalue()


def test_json_lines_are_twisted_events_with_their_text():
    out = io.StringIO()
    publisher = LogPublisher(json_observer(out))
    log = Logger(namespace="tmpnb.pool", observer=publisher)
    log.warn("container {container} failed to boot: {cause}", container="abc", cause="not ready within 30s")
    log.info("handed out {container}", container="def")
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    first = json.loads(lines[0])
    assert first["text"] == "container abc failed to boot: not ready within 30s"
    assert first["container"] == "abc"
    assert first["log_namespace"] == "tmpnb.pool"
    assert first["log_level"]["name"] == "warn"
    assert eventFromJSON(lines[1])["container"] == "def"


def test_a_failure_becomes_one_json_line():
    out = io.StringIO()
    log = Logger(namespace="tmpnb.pool", observer=LogPublisher(json_observer(out)))
    try:
        1 / 0
    except ZeroDivisionError:
        log.failure("a bug")
    (line,) = out.getvalue().splitlines()
    event = json.loads(line)
    assert event["log_failure"]["type"]["__name__"] == "ZeroDivisionError"
    assert event["text"].startswith("a bug\n") and "ZeroDivisionError" in event["text"]


def test_the_connections_tmpnb_makes_log_nothing():
    reactor = MemoryReactorClock()
    pool = quiet_connection_pool(reactor, persistent=False)
    connection_factory = pool._factory(lambda *a: None, "endpoint")
    assert events_of(lambda: (connection_factory.doStart(), connection_factory.doStop())) == []

    def connect():
        connect_quietly(TCP4ClientEndpoint(reactor, "127.0.0.1", 9), Protocol())
        _, _, factory, _, _ = reactor.tcpClients[0]
        factory.doStart()
        factory.doStop()

    assert [e for e in events_of(connect) if "factory" in e.get("log_format", "")] == []



def test_a_quiet_site_writes_no_access_log_and_names_its_listener():
    from twisted.web.resource import Resource
    from twisted.web.test.requesthelper import DummyRequest

    from tmpnb.logs import QuietSite

    site = QuietSite(Resource(), name="admin")
    assert site.logPrefix() == "admin"
    request = DummyRequest([b"metrics"])
    assert events_of(lambda: (site.doStart(), site.log(request), site.doStop())) == []
