"""ObservedDocker, ObservedProxy and the health check (tmpnb/observed.py): every call's outcome
reaches Health (and Docker's latency the metrics) while its result or failure reaches the caller
unchanged."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.logger import LogLevel, capturedLogs

from tests.results import failed, pending, succeeded
from tmpnb.dockerapi import DockerTimeout, DockerUnavailable
from tmpnb.health import Health
from tmpnb.observed import HEALTH_CHECK_PERIOD, ObservedDocker, ObservedProxy, health_check, health_checks
from tmpnb.proxyapi import ProxyAPIError


class Answers:
    """A client whose every call appends ("method", args) to `events` and answers from `answers`
    (a value, or an exception to fail with); what is not in `answers` stays pending."""

    def __init__(self) -> None:
        self.events: list[tuple[str, tuple]] = []
        self.answers: dict[str, Any] = {}
        self.pending: dict[str, Deferred[Any]] = {}

    def _call(self, method: str, *args: Any) -> Deferred[Any]:
        self.events.append((method, args))
        if method not in self.answers:
            d: Deferred[Any] = Deferred()
            self.pending[method] = d
            return d
        answer = self.answers[method]
        return fail(answer) if isinstance(answer, Exception) else succeed(answer)


class FakeDocker(Answers):
    def launch(self, request: Any) -> Deferred[str]:
        return self._call("launch", request)

    def remove(self, docker_id: str, container_id: str | None = None) -> Deferred[None]:
        return self._call("remove", docker_id, container_id)

    def inspect(self, docker_id: str) -> Deferred[Any]:
        return self._call("inspect", docker_id)

    def list_ours(self) -> Deferred[list[Any]]:
        return self._call("list_ours")

    def ping(self) -> Deferred[bool]:
        return self._call("ping")

    def socket_dir_ids(self) -> Deferred[list[str]]:
        return self._call("socket_dir_ids")

    def remove_socket_dirs(self, container_ids: list[str]) -> Deferred[None]:
        return self._call("remove_socket_dirs", container_ids)

    def watch(self, on_event: Any) -> None:
        self.events.append(("watch", (on_event,)))


class FakeProxy(Answers):
    def add_route(self, path: str, target: str, **data: Any) -> Deferred[None]:
        return self._call("add_route", path, target, data)

    def delete_route(self, path: str) -> Deferred[None]:
        return self._call("delete_route", path)

    def get_route(self, path: str) -> Deferred[dict | None]:
        return self._call("get_route", path)

    def list_routes(self, inactive_since: Any = None) -> Deferred[dict[str, dict]]:
        return self._call("list_routes", inactive_since)


class FakeMetrics:
    def __init__(self) -> None:
        self.timed: list[str] = []

    def observe_docker_call(self, operation: str, d: Deferred[Any]) -> Deferred[Any]:
        self.timed.append(operation)
        return d


@pytest.fixture
def health() -> Health:
    return Health(Clock())


def state(health: Health, part: str) -> dict[str, Any]:
    return health.snapshot()[part]


CALLS = [
    ("launch", lambda docker: docker.launch("request"), ("request",), "launch"),
    ("remove", lambda docker: docker.remove("d1", "c1"), ("d1", "c1"), "remove"),
    ("inspect", lambda docker: docker.inspect("d1"), ("d1",), "inspect"),
    ("list_ours", lambda docker: docker.list_ours(), (), "list"),
]


@pytest.mark.parametrize("method, call, args, operation", CALLS)
def test_a_docker_call_that_answers_is_timed_and_tells_health_docker_is_ok(health, method, call, args, operation):
    docker, metrics = FakeDocker(), FakeMetrics()
    docker.answers[method] = "answer"
    health.docker_timed_out("DockerTimeout: earlier")
    assert succeeded(call(ObservedDocker(docker, health, metrics))) == "answer"
    assert docker.events == [(method, args)]
    assert metrics.timed == [operation]
    assert state(health, "docker")["state"] == "ok"


@pytest.mark.parametrize("method, call, args, operation", CALLS)
def test_a_docker_call_that_times_out_marks_dockerd_hung_and_still_fails_for_the_caller(
        health, method, call, args, operation):
    docker = FakeDocker()
    docker.answers[method] = DockerTimeout("no answer in 30s")
    failed(call(ObservedDocker(docker, health)), DockerTimeout)
    assert state(health, "docker") | {"since": None} == {
        "state": "hung", "cause": "DockerTimeout: no answer in 30s", "since": None}


def test_an_unreachable_dockerd_is_reported_as_such(health):
    docker = FakeDocker()
    docker.answers["launch"] = DockerUnavailable("no socket")
    failed(ObservedDocker(docker, health).launch("request"), DockerUnavailable)
    assert state(health, "docker")["state"] == "unreachable"


def test_health_hears_of_a_call_only_when_it_ends(health):
    docker = FakeDocker()
    d = ObservedDocker(docker, health).inspect("d1")
    pending(d)
    assert state(health, "docker")["state"] == "unknown"
    docker.pending["inspect"].callback({"State": "running"})
    assert succeeded(d) == {"State": "running"}
    assert state(health, "docker")["state"] == "ok"


def test_the_ping_is_timed_but_only_the_health_check_reports_it(health):
    docker, metrics = FakeDocker(), FakeMetrics()
    docker.answers["ping"] = True
    assert succeeded(ObservedDocker(docker, health, metrics).ping()) is True
    assert metrics.timed == ["ping"]
    assert state(health, "docker")["state"] == "unknown"


def test_socket_directories_and_the_event_watch_pass_straight_through(health):
    """The socket directories are the host's filesystem: their outcome says nothing of dockerd."""
    docker, metrics = FakeDocker(), FakeMetrics()
    docker.answers.update(socket_dir_ids=["c1"], remove_socket_dirs=OSError("busy"))
    observed = ObservedDocker(docker, health, metrics)
    assert succeeded(observed.socket_dir_ids()) == ["c1"]
    failed(observed.remove_socket_dirs(["c1"]), OSError)
    observed.watch(print)
    assert docker.events == [("socket_dir_ids", ()), ("remove_socket_dirs", (["c1"],)), ("watch", (print,))]
    assert metrics.timed == []
    assert state(health, "docker")["state"] == "unknown"


def test_without_metrics_docker_calls_still_reach_health(health):
    docker = FakeDocker()
    docker.answers["list_ours"] = []
    assert succeeded(ObservedDocker(docker, health).list_ours()) == []
    assert state(health, "docker")["state"] == "ok"


PROXY_CALLS = [
    ("add_route", lambda proxy: proxy.add_route("/user/a", "http+unix://s", user="a"), ("/user/a", "http+unix://s", {"user": "a"})),
    ("delete_route", lambda proxy: proxy.delete_route("/user/a"), ("/user/a",)),
    ("get_route", lambda proxy: proxy.get_route("/user/a"), ("/user/a",)),
    ("list_routes", lambda proxy: proxy.list_routes("2026-01-01T00:00:00Z"), ("2026-01-01T00:00:00Z",)),
]


@pytest.mark.parametrize("method, call, args", PROXY_CALLS)
def test_a_proxy_call_that_succeeds_tells_health_the_proxy_is_ok(health, method, call, args):
    proxy = FakeProxy()
    proxy.answers[method] = {"answer": method}
    health.proxy_failed("earlier")
    assert succeeded(call(ObservedProxy(proxy, health))) == {"answer": method}
    assert proxy.events == [(method, args)]
    assert state(health, "proxy")["state"] == "ok"


@pytest.mark.parametrize("method, call, args", PROXY_CALLS)
def test_a_proxy_call_that_fails_is_reported_with_its_cause_and_still_fails(health, method, call, args):
    proxy = FakeProxy()
    proxy.answers[method] = ProxyAPIError("POST", "http://proxy/api/routes", 500, b"oops")
    failed(call(ObservedProxy(proxy, health)), ProxyAPIError)
    assert state(health, "proxy")["state"] == "unreachable"
    assert state(health, "proxy")["cause"] == "ProxyAPIError: POST http://proxy/api/routes: 500 b'oops'"


def observed_pair(health: Health) -> tuple[FakeDocker, FakeProxy, ObservedDocker, ObservedProxy]:
    docker, proxy = FakeDocker(), FakeProxy()
    return docker, proxy, ObservedDocker(docker, health), ObservedProxy(proxy, health)


def test_a_round_pings_dockerd_and_lists_the_routes(health):
    docker, proxy, observed_docker, observed_proxy = observed_pair(health)
    docker.answers["ping"] = True
    proxy.answers["list_routes"] = {}
    succeeded(health_check(observed_docker, observed_proxy, health)())
    assert [method for method, _ in docker.events + proxy.events] == ["ping", "list_routes"]
    assert health.healthy()


def test_a_round_ends_when_both_answered(health):
    docker, proxy, observed_docker, observed_proxy = observed_pair(health)
    docker.answers["ping"] = True
    d = health_check(observed_docker, observed_proxy, health)()
    pending(d)
    proxy.pending["list_routes"].callback({})
    succeeded(d)


def test_an_unanswered_ping_marks_dockerd_unreachable(health):
    docker, proxy, observed_docker, observed_proxy = observed_pair(health)
    docker.answers["ping"] = False
    proxy.answers["list_routes"] = {}
    succeeded(health_check(observed_docker, observed_proxy, health)())
    assert state(health, "docker")["state"] == "unreachable"


def test_failures_in_a_round_are_logged_and_recorded_never_raised(health):
    """The round runs under a TimerService: a failure out of it would stop the checks."""
    docker, proxy, observed_docker, observed_proxy = observed_pair(health)
    docker.answers["ping"] = DockerUnavailable("no socket")
    proxy.answers["list_routes"] = ProxyAPIError("GET", "http://proxy/api/routes", 503, b"")
    with capturedLogs() as events:
        assert succeeded(health_check(observed_docker, observed_proxy, health)()) is None
    ours = [e for e in events if e["log_namespace"] == "tmpnb.observed"]
    assert [(e["log_level"], e["log_format"]) for e in ours] == [(LogLevel.warn, "docker health check failed: {cause}")]
    assert state(health, "proxy")["state"] == "unreachable"


def test_the_checks_run_every_period_on_the_given_clock(health):
    clock = Clock()
    docker, proxy, observed_docker, observed_proxy = observed_pair(health)
    docker.answers["ping"] = True
    proxy.answers["list_routes"] = {}
    service = health_checks(clock, observed_docker, observed_proxy, health)
    service.startService()
    clock.advance(HEALTH_CHECK_PERIOD)
    clock.advance(HEALTH_CHECK_PERIOD)
    service.stopService()
    assert [method for method, _ in docker.events] == ["ping"] * 3  # at start, then each period
