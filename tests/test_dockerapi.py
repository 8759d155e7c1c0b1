"""The Docker layer without Docker: a fake docker-py client and thread pools that run
(or hold) their work on the test's own thread, with a Clock for reactor time.

What these tests pin down: how a container is made (sandbox, limits, labels, mounts),
that one instance never sees or touches another's containers, that removing is idempotent,
and that a hung dockerd costs the caller `call_timeout` seconds and nothing more.
"""

from __future__ import annotations

import ast
import itertools
import os
import shlex
import stat
from collections.abc import Callable
from typing import Any

import docker.errors
import pytest
import requests
import requests.exceptions
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactor
from twisted.python.failure import Failure

from tests.results import failed, pending, succeeded
from tmpnb import config, sockets
from tmpnb.dockerapi import (
    CREATED_LABEL,
    ID_LABEL,
    INSTANCE_LABEL,
    TOKEN_LABEL,
    DockerAPI,
    DockerTimeout,
    DockerUnavailable,
    EventWatcher,
    LaunchRequest,
    NotOurs,
    create_kwargs,
    event_of,
    make_docker_threadpool,
    record_of,
    server_command,
    tornado_settings,
)


# -- stand-ins ----------------------------------------------------------------------------


class ThreadlessClock(Clock):
    """Reactor time plus the hand-back from threads, which here is a plain call."""

    def __init__(self) -> None:
        super().__init__()
        self.triggers: list[tuple[str, str, Callable[..., Any]]] = []

    def callFromThread(self, f: Callable[..., Any], *args: Any, **kw: Any) -> None:
        f(*args, **kw)

    def addSystemEventTrigger(self, phase: str, event: str, f: Callable[..., Any]) -> None:
        self.triggers.append((phase, event, f))


class SynchronousThreadPool:
    """Runs each call at once on the caller's thread (as buildbot's NonThreadPool does)."""

    def callInThreadWithCallback(self, onResult, func, *args, **kw) -> None:  # noqa: N802
        try:
            result = func(*args, **kw)
        except BaseException:
            onResult(False, Failure())
        else:
            onResult(True, result)


class HeldThreadPool(SynchronousThreadPool):
    """Every worker is stuck: calls wait in the queue until the test lets one run."""

    def __init__(self) -> None:
        self.queue: list[tuple[Any, ...]] = []

    def callInThreadWithCallback(self, onResult, func, *args, **kw) -> None:  # noqa: N802
        self.queue.append((onResult, func, args, kw))

    def run_next(self) -> None:
        onResult, func, args, kw = self.queue.pop(0)
        SynchronousThreadPool.callInThreadWithCallback(self, onResult, func, *args, **kw)


def api_error(cls: type[docker.errors.APIError], code: int, message: str) -> Exception:
    response = requests.Response()
    response.status_code = code
    return cls(message, response=response, explanation=message)


class FakeContainer:
    def __init__(self, engine: FakeEngine, docker_id: str, kwargs: dict[str, Any]) -> None:
        self.engine = engine
        self.id = docker_id
        self.kwargs = kwargs
        self.status = "created"

    @property
    def labels(self) -> dict[str, str]:
        return self.kwargs.get("labels", {})

    @property
    def attrs(self) -> dict[str, Any]:  # as `docker inspect` answers
        return {
            "Id": self.id,
            "Name": "/" + self.kwargs["name"],
            "Created": "2026-01-01T00:00:00Z",
            "Config": {"Labels": dict(self.labels)},
            "State": {"Status": self.status, "Running": self.status == "running"},
        }

    def start(self) -> None:
        self.engine.calls.append(("start", self.id))
        if self.engine.fail_start:
            raise api_error(docker.errors.APIError, 500, "OCI runtime create failed")
        self.status = "running"

    def remove(self, force: bool = False) -> None:
        self.engine.calls.append(("remove", self.id))
        if self.status == "running" and not force:
            raise api_error(docker.errors.APIError, 409, "container is running")
        if self.id not in self.engine.containers:
            raise api_error(docker.errors.NotFound, 404, "No such container")
        del self.engine.containers[self.id]


class SparseContainer:
    """What `containers.list(sparse=True)` gives: attrs from the list API, not inspect."""

    def __init__(self, container: FakeContainer) -> None:
        self.id = container.id
        self.attrs = {
            "Id": container.id,
            "Names": ["/" + container.kwargs["name"]],
            "Created": 1767225600,
            "Labels": dict(container.labels),
            "State": container.status,
            "Status": "Up 2 seconds",
        }


class FakeContainers:
    def __init__(self, engine: FakeEngine) -> None:
        self.engine = engine

    def create(self, **kwargs: Any) -> FakeContainer:
        self.engine.calls.append(("create", kwargs["name"]))
        if kwargs["image"] not in self.engine.images:
            raise api_error(docker.errors.ImageNotFound, 404, "No such image")
        container = FakeContainer(self.engine, f"d{next(self.engine.ids):063x}", kwargs)
        self.engine.containers[container.id] = container
        return container

    def get(self, id_or_name: str) -> FakeContainer:
        self.engine.calls.append(("get", id_or_name))
        for container in self.engine.containers.values():
            if id_or_name in (container.id, container.kwargs["name"]):
                return container
        raise api_error(docker.errors.NotFound, 404, f"No such container: {id_or_name}")

    def list(self, all: bool = False, sparse: bool = False, filters: dict | None = None):
        self.engine.calls.append(("list", filters))
        found = [c for c in self.engine.containers.values() if all or c.status == "running"]
        if self.engine.honours_filters and filters and "label" in filters:
            key, _, value = filters["label"].partition("=")
            found = [c for c in found if c.labels.get(key) == value]
        return [SparseContainer(c) if sparse else c for c in found]


class FakeEngine:
    """Just enough of dockerd, as seen through docker-py's DockerClient."""

    def __init__(self, images: tuple[str, ...] = (config.DEFAULT_IMAGE,)) -> None:
        self.images = set(images)
        self.containers: dict[str, FakeContainer] = {}
        self.calls: list[tuple[str, Any]] = []
        self.ids = itertools.count(1)
        self.fail_start = False
        self.honours_filters = True
        self.clients_made = 0
        self.clients_closed = 0

    def client(self) -> FakeClient:
        self.clients_made += 1
        return FakeClient(self)

    @property
    def clients_open(self) -> int:
        return self.clients_made - self.clients_closed

    def add_foreign(self, instance: str, container_id: str = "foreign") -> FakeContainer:
        """A running container of another tmpnb instance sharing this dockerd."""
        return self.add_running(
            {"labels": {INSTANCE_LABEL: instance, ID_LABEL: container_id}},
            name=f"tmpnb-{instance}-{container_id}",
        )

    def add_running(self, kwargs: dict[str, Any], name: str) -> FakeContainer:
        container = FakeContainer(self, f"d{next(self.ids):063x}", {"name": name, **kwargs})
        container.status = "running"
        self.containers[container.id] = container
        return container


class FakeClient:
    def __init__(self, engine: FakeEngine) -> None:
        self.engine = engine
        self.containers = FakeContainers(engine)
        self.closed = False

    def ping(self) -> bool:
        self.engine.calls.append(("ping", None))
        return True

    def close(self) -> None:
        self.closed = True
        self.engine.clients_closed += 1


# -- fixtures -----------------------------------------------------------------------------


@pytest.fixture
def spec(tmp_path) -> config.ContainerSpec:
    # The socket directory is chowned to the container user: use our own ids so this
    # runs unprivileged too.
    return config.ContainerSpec(
        instance="unit", socket_root=str(tmp_path), user=f"{os.getuid()}:{os.getgid()}"
    )


@pytest.fixture
def clock() -> ThreadlessClock:
    return ThreadlessClock()


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine()


@pytest.fixture
def api(clock, engine, spec) -> DockerAPI:
    return DockerAPI(clock, SynchronousThreadPool(), engine.client, spec, call_timeout=30.0)


def launch_request(spec: config.ContainerSpec, container_id: str = "abc123") -> LaunchRequest:
    return LaunchRequest(
        container_id=container_id,
        token="t0ken",
        base_path=f"/user/{container_id}/",
        socket_dir=sockets.socket_dir(spec, container_id),
        spec=spec,
    )


# -- how a container is made --------------------------------------------------------------


def test_container_is_sandboxed_and_limited(spec):
    kwargs = create_kwargs(launch_request(spec), created=1000.5)

    assert kwargs["network_mode"] == "none"
    assert kwargs["user"] == spec.user
    assert kwargs["cap_drop"] == ["ALL"]
    assert kwargs["security_opt"] == ["no-new-privileges"]
    assert kwargs["mem_limit"] == "512m"
    assert kwargs["memswap_limit"] == "512m"
    assert (kwargs["cpu_quota"], kwargs["cpu_period"]) == (100_000, 100_000)
    assert kwargs["pids_limit"] == 256
    assert "cpu_shares" not in kwargs
    assert kwargs["auto_remove"] is False
    assert kwargs["image"] == config.DEFAULT_IMAGE


def test_container_is_named_and_labelled_for_its_instance(spec):
    request = launch_request(spec, "abc123")

    kwargs = create_kwargs(request, created=1000.5)

    assert kwargs["name"] == "tmpnb-unit-abc123"
    assert kwargs["labels"] == {  # no token: labels show in every inspect and Docker event
        INSTANCE_LABEL: "unit",
        ID_LABEL: "abc123",
        CREATED_LABEL: "1000.5",
    }


def test_extra_labels_cannot_claim_another_instance(tmp_path):
    spec = config.ContainerSpec(
        instance="mine",
        socket_root=str(tmp_path),
        extra_labels={"team": "physics", INSTANCE_LABEL: "theirs"},
    )

    labels = create_kwargs(launch_request(spec), created=0.0)["labels"]

    assert labels["team"] == "physics"
    assert labels[INSTANCE_LABEL] == "mine"


def test_only_the_socket_dir_is_writable_host_directories_are_read_only(tmp_path):
    spec = config.ContainerSpec(
        socket_root=str(tmp_path), host_directories=("/srv/data:/home/jovyan/data", "/srv/x")
    )
    request = launch_request(spec)

    volumes = create_kwargs(request, created=0.0)["volumes"]

    assert volumes == {
        request.socket_dir: {"bind": config.SOCKET_MOUNT, "mode": "rw"},
        "/srv/data": {"bind": "/home/jovyan/data", "mode": "ro"},
        "/srv/x": {"bind": "/srv/x", "mode": "ro"},
    }


def test_host_network_and_cpu_shares_when_asked(tmp_path):
    spec = config.ContainerSpec(socket_root=str(tmp_path), host_network=True, cpu_shares=512)

    kwargs = create_kwargs(launch_request(spec), created=0.0)

    assert kwargs["network_mode"] == "host"
    assert kwargs["cpu_shares"] == 512


def test_command_is_an_argv_with_each_value_whole(tmp_path):
    spec = config.ContainerSpec(
        socket_root=str(tmp_path),
        allow_origin="https://a.org",
        frame_ancestors="'self' https://journal.example",
    )

    argv = server_command(launch_request(spec, "abc123"))

    assert argv[:2] == ["jupyter", "notebook"]
    assert "--ServerApp.base_url=/user/abc123/" in argv
    assert f"--ServerApp.sock={config.SOCKET_MOUNT}/{config.SOCKET_NAME}" in argv
    assert not [a for a in argv if "t0ken" in a]  # the token is in the environment
    assert "--ServerApp.allow_origin=https://a.org" in argv
    [settings] = [a for a in argv if a.startswith("--ServerApp.tornado_settings=")]
    literal = settings.partition("=")[2]
    assert ast.literal_eval(literal)["headers"] == {
        "Content-Security-Policy": "frame-ancestors 'self' https://journal.example"
    }


def test_command_survives_values_with_quotes_and_spaces(tmp_path):
    spec = config.ContainerSpec(
        socket_root=str(tmp_path), command="run {allow_origin} {token}", allow_origin="a b'\"c"
    )

    argv = server_command(launch_request(spec))

    assert argv == ["run", "a b'\"c", "t0ken"]


def test_tornado_settings_is_a_python_literal_of_the_csp_header():
    literal = tornado_settings("'none'")

    assert ast.literal_eval(literal)["headers"] == {"Content-Security-Policy": "frame-ancestors 'none'"}
    assert len(shlex.split(shlex.quote(literal))) == 1


def test_the_front_end_sends_its_token_on_websockets_too():
    """In a cross-site iframe no cookie reaches the server: the notebook UI must put the token
    (which it already sends as a header on every HTTP call) on its websockets as well."""
    settings = ast.literal_eval(tornado_settings("'self'"))

    assert settings["page_config_data"] == {"appendToken": "true"}


# -- launch -------------------------------------------------------------------------------


def test_launch_creates_starts_and_fires_with_the_docker_id(api, engine, spec, clock):
    clock.advance(1234)
    request = launch_request(spec)

    docker_id = succeeded(api.launch(request))

    container = engine.containers[docker_id]
    assert container.status == "running"
    assert container.labels[CREATED_LABEL] == "1234.0"  # reactor time at launch
    mode = os.stat(request.socket_dir)
    assert stat.S_IMODE(mode.st_mode) == 0o770
    assert (mode.st_uid, mode.st_gid) == (os.getuid(), os.getgid())


def test_launch_replaces_a_stale_socket_dir(api, spec):
    request = launch_request(spec)
    os.makedirs(request.socket_dir)
    stale = os.path.join(request.socket_dir, config.SOCKET_NAME)
    open(stale, "w").close()

    succeeded(api.launch(request))

    assert os.path.isdir(request.socket_dir)
    assert not os.path.exists(stale)


def test_launch_that_fails_to_start_leaves_nothing_behind(api, engine, spec):
    engine.fail_start = True
    request = launch_request(spec)

    failure = failed(api.launch(request), docker.errors.APIError)

    assert "OCI runtime" in failure.getErrorMessage()
    assert engine.containers == {}
    assert not os.path.exists(request.socket_dir)


def test_launch_of_a_missing_image_fails_and_removes_the_socket_dir(clock, engine, tmp_path):
    spec = config.ContainerSpec(
        instance="unit", image="nope:latest", socket_root=str(tmp_path),
        user=f"{os.getuid()}:{os.getgid()}",
    )
    api = DockerAPI(clock, SynchronousThreadPool(), engine.client, spec)
    request = launch_request(spec)

    failed(api.launch(request), docker.errors.ImageNotFound)

    assert not os.path.exists(request.socket_dir)


# -- remove, inspect, list: only ever our own ---------------------------------------------


def test_remove_takes_the_container_and_its_socket_dir(api, engine, spec):
    request = launch_request(spec)
    docker_id = succeeded(api.launch(request))

    assert succeeded(api.remove(docker_id)) is None

    assert docker_id not in engine.containers
    assert not os.path.exists(request.socket_dir)


def test_remove_of_a_missing_container_succeeds_and_still_clears_its_socket_dir(api, spec):
    request = launch_request(spec)
    os.makedirs(request.socket_dir)

    assert succeeded(api.remove("f" * 64, request.container_id)) is None

    assert not os.path.exists(request.socket_dir)


def test_remove_twice_succeeds_twice(api, spec):
    docker_id = succeeded(api.launch(launch_request(spec)))

    succeeded(api.remove(docker_id))
    succeeded(api.remove(docker_id))


def test_remove_refuses_another_instances_container(api, engine):
    theirs = engine.add_foreign("other")

    failed(api.remove(theirs.id), NotOurs)

    assert theirs.id in engine.containers


def test_inspect_reports_ours_and_nothing_of_others(api, engine, spec):
    docker_id = succeeded(api.launch(launch_request(spec, "abc123")))
    theirs = engine.add_foreign("other")

    record = succeeded(api.inspect(docker_id))
    # The token is derived (tmpnb/servertokens.py): Docker does not know it.
    assert (record.docker_id, record.container_id, record.token) == (docker_id, "abc123", "")
    assert (record.running, record.status) == (True, "running")
    assert succeeded(api.inspect(theirs.id)) is None
    assert succeeded(api.inspect("gone")) is None


@pytest.mark.parametrize("honours_filters", [True, False], ids=["dockerd-filters", "no-filter"])
def test_list_ours_sees_only_our_instance(api, engine, spec, clock, honours_filters):
    engine.honours_filters = honours_filters
    clock.advance(50)
    ours = succeeded(api.launch(launch_request(spec, "mine1")))
    engine.add_foreign("other", "theirs1")
    engine.add_running({"labels": {}}, name="not-tmpnb-at-all")

    records = succeeded(api.list_ours())

    assert [(r.docker_id, r.container_id, r.created) for r in records] == [(ours, "mine1", 50.0)]
    assert ("list", {"label": f"{INSTANCE_LABEL}=unit"}) in engine.calls


def test_list_ours_includes_stopped_containers(api, engine, spec):
    docker_id = succeeded(api.launch(launch_request(spec)))
    engine.containers[docker_id].status = "exited"

    [record] = succeeded(api.list_ours())

    assert (record.running, record.status) == (False, "exited")


# -- a hung or absent dockerd -------------------------------------------------------------


def test_a_call_that_never_returns_fails_with_docker_timeout_after_call_timeout(clock, engine, spec):
    api = DockerAPI(clock, HeldThreadPool(), engine.client, spec, call_timeout=30.0)

    d = api.list_ours()
    clock.advance(29.9)
    pending(d)
    clock.advance(0.1)

    failed(d, DockerTimeout)


def test_calls_queued_behind_stuck_workers_time_out_and_never_run(clock, engine, spec):
    pool = HeldThreadPool()
    api = DockerAPI(clock, pool, engine.client, spec, call_timeout=5.0)

    d = api.launch(launch_request(spec))
    clock.advance(5)
    failed(d, DockerTimeout)
    pool.run_next()  # a worker frees up and reaches the abandoned call

    assert engine.calls == []
    assert not os.path.exists(sockets.socket_dir(spec, "abc123"))


def test_a_launch_that_finishes_after_its_timeout_is_removed(clock, engine, spec):
    pool = HeldThreadPool()
    api = DockerAPI(clock, pool, engine.client, spec, call_timeout=5.0)
    request = launch_request(spec)

    d = api.launch(request)
    (onResult, func, args, kw) = pool.queue.pop(0)
    # The worker had picked the call up before the caller gave up, then dockerd answered late.
    result = func(*args, **kw)
    clock.advance(5)
    failed(d, DockerTimeout)
    onResult(True, result)
    pool.run_next()  # the clean-up remove

    assert engine.containers == {}
    assert not os.path.exists(request.socket_dir)


def test_a_cancelled_launch_that_finishes_later_is_removed(clock, engine, spec):
    pool = HeldThreadPool()
    api = DockerAPI(clock, pool, engine.client, spec)

    d = api.launch(launch_request(spec))
    (onResult, func, args, kw) = pool.queue.pop(0)
    result = func(*args, **kw)
    d.cancel()
    failed(d)
    onResult(True, result)
    pool.run_next()

    assert engine.containers == {}
    assert clock.getDelayedCalls() == []  # no timer left behind


def test_a_call_that_answers_in_time_leaves_no_timer(api, clock):
    succeeded(api.list_ours())

    assert clock.getDelayedCalls() == []


def test_dockerd_down_is_docker_unavailable_and_ping_says_false(clock, spec):
    def unreachable_client() -> Any:
        # What docker.DockerClient() raises when the socket is missing.
        try:
            raise requests.exceptions.ConnectionError("Connection aborted: No such file")
        except requests.exceptions.ConnectionError as e:
            raise docker.errors.DockerException("Error while fetching server API version") from e

    api = DockerAPI(clock, SynchronousThreadPool(), unreachable_client, spec)

    failed(api.list_ours(), DockerUnavailable)
    assert succeeded(api.ping()) is False


def test_docker_py_socket_timeout_is_docker_timeout_and_its_client_is_closed(clock, engine, spec):
    clients: list[FakeClient] = []

    def hung_list(**kwargs: Any) -> None:
        raise requests.exceptions.ReadTimeout("UnixHTTPConnectionPool: Read timed out.")

    def client_factory() -> FakeClient:
        client = engine.client()
        if not clients:
            client.containers.list = hung_list
        clients.append(client)
        return client

    api = DockerAPI(clock, SynchronousThreadPool(), client_factory, spec)
    failed(api.list_ours(), DockerTimeout)
    succeeded(api.list_ours())

    assert [client.closed for client in clients] == [True, True]


def test_every_call_has_its_own_client_closed_after_it(api, engine):
    """docker-py keeps a connection pool per URL (per container id): a long-lived client
    would hold dozens of sockets to dockerd."""
    succeeded(api.ping())
    succeeded(api.list_ours())

    assert engine.clients_made == 2
    assert engine.clients_open == 0


# -- the thread pool ----------------------------------------------------------------------


def test_threadpool_is_bounded_starts_with_the_reactor_and_stops_after_shutdown():
    reactor = MemoryReactor()

    pool = make_docker_threadpool(reactor, max_workers=4)

    assert pool.max == 4
    assert not pool.started
    assert [f for f, args, kw in reactor.whenRunningHooks] == [pool.start]
    assert [f for f, args, kw in reactor.triggers["after"]["shutdown"]] == [pool.stop]


# -- the events stream --------------------------------------------------------------------


def die_event(instance: str, container_id: str, when: int = 100) -> dict[str, Any]:
    return {
        "Type": "container",
        "Action": "die",
        "status": "die",
        "id": "d" * 64,
        "time": when,
        "Actor": {
            "ID": "d" * 64,
            "Attributes": {INSTANCE_LABEL: instance, ID_LABEL: container_id, "exitCode": "137"},
        },
    }


def test_event_of_names_our_container_and_the_verb():
    assert event_of(die_event("unit", "abc"), "unit") == ("abc", "die")
    assert event_of(die_event("other", "abc"), "unit") is None
    exec_event = {**die_event("unit", "abc"), "Action": "exec_start: sh -c ls"}
    assert event_of(exec_event, "unit") == ("abc", "exec_start")


class EventStream:
    """A docker events stream: yields what it was given, then breaks like a lost dockerd."""

    def __init__(self, events: list[dict[str, Any]], on_end: Callable[[], None]) -> None:
        self._events = iter(events)
        self._on_end = on_end
        self.closed = False

    def __iter__(self) -> EventStream:
        return self

    def __next__(self) -> dict[str, Any]:
        try:
            return next(self._events)
        except StopIteration:
            self._on_end()
            raise requests.exceptions.ConnectionError("Connection reset by peer") from None

    def close(self) -> None:
        self.closed = True


def test_watcher_delivers_our_events_and_reconnects_where_it_left_off():
    seen: list[tuple[str, str]] = []
    asked: list[dict[str, Any]] = []
    connections = iter(
        [
            [die_event("unit", "a", when=100), die_event("other", "x", when=101)],
            [die_event("unit", "b", when=102)],
        ]
    )
    watcher: EventWatcher

    class Client:
        def events(self, **kwargs: Any) -> EventStream:
            asked.append(kwargs)
            batch = next(connections, None)
            if batch is None:  # third connection: dockerd is gone
                watcher.stop()
                raise requests.exceptions.ConnectionError("refused")
            return EventStream(batch, on_end=lambda: None)

        def close(self) -> None:
            pass

    watcher = EventWatcher(
        Client, "unit", deliver=lambda f, *a: f(*a), on_event=lambda *e: seen.append(e),
        backoff_initial=0.0, backoff_max=0.0,
    )
    watcher._thd_run()  # on this thread: the loop returns once stop() was called

    assert seen == [("a", "die"), ("b", "die")]
    assert asked[0]["filters"] == {"label": f"{INSTANCE_LABEL}=unit", "type": "container"}
    assert [a["since"] for a in asked] == [None, 101, 102]


def test_watch_runs_in_its_own_thread_and_stops_on_shutdown(clock, spec):
    import threading

    streaming = threading.Event()
    stream = EventStream([], on_end=lambda: None)

    class BlockingStream(EventStream):
        def __next__(self) -> dict[str, Any]:
            streaming.set()
            while not self.closed:  # dockerd is quiet; close() from another thread ends it
                threading.Event().wait(0.01)
            raise StopIteration

    class Client:
        def events(self, **kwargs: Any) -> EventStream:
            nonlocal stream
            stream = BlockingStream([], on_end=lambda: None)
            return stream

        def close(self) -> None:
            pass

    api = DockerAPI(clock, HeldThreadPool(), Client, spec)
    api.watch(lambda *e: None)
    assert streaming.wait(5)
    [(phase, event, stop)] = clock.triggers
    assert (phase, event) == ("before", "shutdown")

    stop()
    api._watcher.join(5)

    assert stream.closed
    assert not api._watcher._thread.is_alive()


# -- socket paths -------------------------------------------------------------------------


def test_socket_paths_and_proxy_target(tmp_path):
    spec = config.ContainerSpec(instance="prod", socket_root="/run/tmpnb")

    assert sockets.socket_dir(spec, "abc") == "/run/tmpnb/prod/abc"
    assert sockets.socket_path(spec, "abc") == f"/run/tmpnb/prod/abc/{config.SOCKET_NAME}"
    assert (
        sockets.proxy_target("/run/tmpnb/prod/abc/jupyter.sock")
        == "http+unix://%2Frun%2Ftmpnb%2Fprod%2Fabc%2Fjupyter.sock"
    )


def test_socket_dir_too_long_for_a_unix_socket_is_refused(tmp_path):
    too_long = str(tmp_path / ("x" * 100))

    with pytest.raises(ValueError):
        sockets.make_socket_dir(too_long, os.getuid(), os.getgid())
    assert not os.path.exists(too_long)


def test_remove_socket_dir_of_nothing_is_fine(tmp_path):
    sockets.remove_socket_dir(str(tmp_path / "never-made"))


def test_parse_user():
    assert sockets.parse_user("1000:100") == (1000, 100)
    assert sockets.parse_user("1000") == (1000, 1000)


# -- socket directories without a container ------------------------------------------------


def test_socket_dir_ids_lists_this_instances_directories_and_removal_takes_them(api, spec):
    for container_id in ("a1", "b2"):
        os.makedirs(sockets.socket_dir(spec, container_id))
    other = config.ContainerSpec(instance="other", socket_root=spec.socket_root)
    os.makedirs(sockets.socket_dir(other, "c3"))  # another instance's: never ours to list

    assert sorted(succeeded(api.socket_dir_ids())) == ["a1", "b2"]
    succeeded(api.remove_socket_dirs(["a1"]))
    assert succeeded(api.socket_dir_ids()) == ["b2"]
    assert os.path.isdir(sockets.socket_dir(other, "c3"))


def test_socket_dir_ids_of_an_instance_without_a_directory_yet_is_empty(api):
    assert succeeded(api.socket_dir_ids()) == []


def test_the_token_reaches_the_server_in_a_file_neither_in_its_environment_nor_its_argv(tmp_path):
    kwargs = create_kwargs(launch_request(config.ContainerSpec(socket_root=str(tmp_path))), created=0.0)

    # `docker inspect` shows the environment: only the file's name is there.
    assert kwargs["environment"] == {"JUPYTER_TOKEN_FILE": "/run/tmpnb/token"}
    assert "t0ken" not in repr(kwargs)


def test_a_token_label_given_as_an_extra_label_is_dropped(tmp_path):
    spec = config.ContainerSpec(socket_root=str(tmp_path), extra_labels={TOKEN_LABEL: "leak", "team": "x"})
    labels = create_kwargs(launch_request(spec), created=0.0)["labels"]
    assert TOKEN_LABEL not in labels and labels["team"] == "x"


def test_a_launch_leaves_the_token_in_a_0600_file_of_the_container_user(api, engine, spec):
    request = launch_request(spec, "abc123")
    succeeded(api.launch(request))

    path = os.path.join(request.socket_dir, "token")
    info = os.stat(path)
    assert stat.S_IMODE(info.st_mode) == 0o600
    assert (info.st_uid, info.st_gid) == sockets.parse_user(spec.user)
    with open(path) as f:
        assert f.read() == "t0ken"


def test_an_earlier_versions_token_label_is_still_read(api, engine, spec):
    """Containers of a run before derived tokens are adopted by their label."""
    attrs = {"Id": "d1", "State": {"Status": "running", "Running": True},
             "Config": {"Labels": {INSTANCE_LABEL: spec.instance, ID_LABEL: "old1", TOKEN_LABEL: "old-token"}}}
    assert record_of(attrs).token == "old-token"
