"""Expected faults are one warning line; anything else is a bug, logged with its traceback."""

from __future__ import annotations

import docker.errors
import pytest
from twisted.internet.defer import FirstError
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import LogLevel, Logger, globalLogPublisher
from twisted.python.failure import Failure

from tmpnb.dockerapi import DockerTimeout, DockerUnavailable
from tmpnb.faults import cause_of, is_expected, log_fault
from tmpnb.proxyapi import ProxyAPIError

log = Logger(namespace="tmpnb.test_faults")


def failure_of(error: BaseException) -> Failure:
    try:
        raise error
    except BaseException:
        return Failure()


@pytest.fixture
def events():
    observer = EventLoggingObserver()
    globalLogPublisher.addObserver(observer)
    yield observer
    globalLogPublisher.removeObserver(observer)


@pytest.mark.parametrize(
    "error",
    [
        ConnectionRefusedError("127.0.0.1:8001"),  # a proxy restarting
        ProxyAPIError("GET", "http://127.0.0.1:8001/api/routes", 502, b"bad gateway"),
        DockerUnavailable("dockerd is down"),
        DockerTimeout("dockerd did not answer in 30s"),
        docker.errors.NotFound("no such container"),  # a container already gone
        FileNotFoundError("/run/tmpnb/x/jupyter.sock"),
        TimeoutError("no status within 5s"),
    ],
)
def test_operational_faults_are_expected(error):
    assert is_expected(failure_of(error))


@pytest.mark.parametrize("error", [KeyError("container"), AttributeError("x"), TypeError("f() takes 1")])
def test_programming_errors_are_not(error):
    assert not is_expected(failure_of(error))


def test_a_gathered_failure_is_judged_by_the_failure_inside_it():
    gathered = failure_of(FirstError(failure_of(ConnectionRefusedError("proxy")), 0))
    assert is_expected(gathered)
    assert cause_of(gathered).startswith("ConnectionRefusedError")
    assert not is_expected(failure_of(FirstError(failure_of(KeyError("x")), 1)))


def test_an_expected_fault_is_one_warning_naming_what_failed_and_why(events):
    log_fault(log, failure_of(ConnectionRefusedError("127.0.0.1:8001")), "listing the routes of {instance}",
              instance="it")
    [event] = events
    assert event["log_level"] == LogLevel.warn
    assert "log_failure" not in event
    assert event["instance"] == "it"
    assert event["cause"].startswith("ConnectionRefusedError")
    assert event["log_format"] == "listing the routes of {instance} failed: {cause}"


def test_a_bug_is_a_failure_with_its_traceback(events):
    log_fault(log, failure_of(KeyError("container")), "judging {container}", container="abc")
    [event] = events
    assert event["log_level"] == LogLevel.critical
    assert event["log_failure"].check(KeyError)
    assert event["container"] == "abc"
