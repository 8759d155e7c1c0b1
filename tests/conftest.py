"""Fixtures shared by the clock-driven tests: time, Docker, and what was logged.

    def test_something(clock, fake_docker, logged): ...

`clock` is a Clock (time passes only when the test says), `fake_docker` the in-memory
Docker of one tmpnb instance (`container_spec`) on that clock (tests/fakedocker.py),
`fake_servers` the notebook servers' readiness over it, and `logged` every twisted.logger
event emitted during the test (an EventLoggingObserver: a sequence of the events, oldest
first). Pool builders: tests/builders.py.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import settings
from twisted.internet.task import Clock
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import globalLogPublisher

from tests.fakedocker import FakeDocker, FakeServers
from tmpnb.config import ContainerSpec

# `--hypothesis-profile=thorough`: the property and state-machine tests that take their
# example count from the profile run many more examples (once in a while, not in CI).
settings.register_profile("thorough", max_examples=2000, deadline=None)


# -- time, Docker and the log: for the clock-driven cases ------------------------------------

@pytest.fixture
def clock() -> Clock:
    """Time that passes only with clock.advance(seconds)."""
    return Clock()


@pytest.fixture
def container_spec() -> ContainerSpec:
    """The container settings of one tmpnb instance of its own (no real socket root)."""
    return ContainerSpec(instance="test", socket_root="/tmp/tnb-test")


@pytest.fixture
def fake_docker(clock: Clock, container_spec: ContainerSpec) -> FakeDocker:
    """Docker in memory, on `clock`: calls answer at once unless held (fake_docker.hold)."""
    return FakeDocker(clock, container_spec)


@pytest.fixture
def fake_servers(fake_docker: FakeDocker) -> FakeServers:
    """The notebook servers of fake_docker's containers: readiness waits until answer(id)."""
    return FakeServers(fake_docker)


@pytest.fixture
def logged() -> Iterator[EventLoggingObserver]:
    """Every log event emitted during the test, oldest first."""
    observer = EventLoggingObserver()
    globalLogPublisher.addObserver(observer)
    yield observer
    globalLogPublisher.removeObserver(observer)
