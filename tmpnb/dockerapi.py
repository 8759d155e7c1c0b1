"""Deferred-returning Docker operations for one tmpnb instance.

Every docker-py call runs in one dedicated, bounded thread pool; the reactor thread never
waits on Docker. Functions named `_thd_*` run in that pool: they take plain data (a docker
client is handed to them by `DockerAPI._thd_call`) and return plain data.

dockerd can hang (docs/design.md: `/_ping` answers while every other call blocks), so each call
has two timeouts: docker-py's own socket timeout, which eventually frees the thread, and a
reactor-side one, which frees the caller at once even while the thread is still stuck. A
call still queued behind stuck workers when its caller gave up is dropped unrun; a launch
that succeeds after its caller gave up is removed, so nothing leaks.

Only containers labelled with this instance are ever inspected, listed or removed.
"""

from __future__ import annotations

import ast
import shlex
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol, TypeVar

import docker
import docker.errors
import requests.exceptions
from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from tmpnb import config, sockets

log = Logger()

T = TypeVar("T")

INSTANCE_LABEL = "org.tmpnb.instance"
ID_LABEL = "org.tmpnb.id"
TOKEN_LABEL = "org.tmpnb.token"
CREATED_LABEL = "org.tmpnb.created"

CPU_PERIOD = 100_000  # microseconds; spec.cpu_quota is per this period

# Reconnecting the events stream after dockerd went away.
WATCH_BACKOFF_INITIAL = 1.0
WATCH_BACKOFF_MAX = 30.0


class DockerTimeout(Exception):
    """A Docker call got no answer in time (dockerd slow or hung)."""


class DockerUnavailable(Exception):
    """dockerd could not be reached (not running, socket missing, connection refused)."""


class NotOurs(Exception):
    """The container exists but belongs to another tmpnb instance (or none): hands off."""


@dataclass(frozen=True)
class LaunchRequest:
    """Everything the thread needs to create and start one container."""

    container_id: str
    token: str
    base_path: str  # "/user/<id>/"
    socket_dir: str  # host path
    spec: config.ContainerSpec


@dataclass(frozen=True)
class ContainerRecord:
    """What tmpnb knows about one of its containers, as Docker reports it."""

    docker_id: str
    container_id: str  # org.tmpnb.id
    token: str
    created: float
    running: bool
    status: str  # docker's State.Status
    labels: dict[str, str]


class ReactorForDocker(Protocol):
    """What DockerAPI needs of the reactor: time, thread hand-back and shutdown triggers."""

    def seconds(self) -> float: ...
    def callLater(self, delay: float, f: Callable[..., Any], *args: Any, **kw: Any) -> Any: ...
    def callFromThread(self, f: Callable[..., Any], *args: Any, **kw: Any) -> None: ...
    def addSystemEventTrigger(self, phase: str, event: str, f: Callable[..., Any]) -> Any: ...


# -- thread pool and client ---------------------------------------------------------------


def make_docker_threadpool(reactor: Any, max_workers: int = 4) -> ThreadPool:
    """The one bounded pool every Docker call runs in (--max-dock-workers)."""
    pool = ThreadPool(minthreads=0, maxthreads=max_workers, name="tmpnb-docker")
    reactor.callWhenRunning(pool.start)
    reactor.addSystemEventTrigger("after", "shutdown", pool.stop)
    return pool


def docker_client_factory(
    base_url: str = "unix:///var/run/docker.sock", timeout: float = 25.0, version: str = "auto"
) -> Callable[[], docker.DockerClient]:
    """A client_factory for DockerAPI; called inside a pool thread (it may talk to dockerd).

    `timeout` is docker-py's per-call socket timeout: keep it a little under DockerAPI's
    call_timeout so the thread is usually free again soon after its caller gave up.
    With version "auto", the API version is negotiated once: DockerAPI makes a client per
    call, and a /version request before each would double the calls.
    """
    negotiated: list[str] = []

    def make() -> docker.DockerClient:
        if version == "auto" and not negotiated:
            # On a client of its own, closed at once: docker-py keeps the /version connection
            # open in the client that asked, and the first client may be the events watcher's,
            # which lives until dockerd goes away.
            probe = docker.DockerClient(base_url=base_url, timeout=timeout, version="auto")
            try:
                negotiated.append(probe.api.api_version)
            finally:
                _close_quietly(probe)
        wanted = negotiated[0] if negotiated else version
        return docker.DockerClient(base_url=base_url, timeout=timeout, version=wanted)

    return make


# -- what a container is made of ----------------------------------------------------------


def tornado_settings(frame_ancestors: str) -> str:
    """The Python literal for --ServerApp.tornado_settings: lets the notebook sit in iframes
    of `frame_ancestors` (e.g. a journal's page) and nowhere else, and work there.

    In another site's iframe the browser does not send the server's cookies (SameSite, and
    third-party cookies blocked or partitioned), so the front end must authenticate with the
    token every page already holds in its page config: its HTTP calls send `Authorization:
    token …` (which also exempts them from the XSRF check), and `appendToken` makes it add
    `?token=` to its websockets too, which it otherwise does only for a server on another
    host. The token stays inside the iframe's own origin: the embedding page cannot read it.
    """
    settings = {
        "headers": {"Content-Security-Policy": f"frame-ancestors {frame_ancestors}"},
        "page_config_data": {"appendToken": "true"},
    }
    literal = repr(settings)
    assert ast.literal_eval(literal) == settings  # traitlets parses it back this way
    return literal


def server_command(request: LaunchRequest) -> list[str]:
    """spec.command with its placeholders filled in, as an argv list.

    Every value is shell-quoted before it is put in the template, so that shlex.split gives
    each value back whole, whatever quotes or spaces it holds.
    """
    spec = request.spec
    values = {
        "base_path": request.base_path,
        "sock": f"{config.SOCKET_MOUNT}/{config.SOCKET_NAME}",
        "token": request.token,
        "port": spec.container_port,
        "ip": spec.container_ip,
        "allow_origin": spec.allow_origin,
        "tornado_settings": tornado_settings(spec.frame_ancestors),
    }
    quoted = {name: shlex.quote(str(value)) for name, value in values.items()}
    return shlex.split(spec.command.format(**quoted))


def host_directory_binds(entries: Iterable[str]) -> dict[str, dict[str, str]]:
    """--host-directories entries ("host[:container[:mode]]") as docker-py volume binds.

    Read-only unless an entry says "rw" explicitly.
    """
    binds: dict[str, dict[str, str]] = {}
    for entry in entries:
        parts = entry.split(":")
        host = parts[0]
        bind = parts[1] if len(parts) > 1 and parts[1] else host
        mode = parts[2] if len(parts) > 2 and parts[2] in ("ro", "rw") else "ro"
        binds[host] = {"bind": bind, "mode": mode}
    return binds


def container_labels(request: LaunchRequest, created: float) -> dict[str, str]:
    labels = dict(request.spec.extra_labels)
    # Ours last, so extra labels can never claim another instance or id.
    labels.update(
        {
            INSTANCE_LABEL: request.spec.instance,
            ID_LABEL: request.container_id,
            TOKEN_LABEL: request.token,
            CREATED_LABEL: repr(created),
        }
    )
    return labels


def container_name(instance: str, container_id: str) -> str:
    return f"tmpnb-{instance}-{container_id}"


def create_kwargs(request: LaunchRequest, created: float) -> dict[str, Any]:
    """The keyword arguments for docker-py's `containers.create`: sandboxed and limited."""
    spec = request.spec
    volumes = {request.socket_dir: {"bind": config.SOCKET_MOUNT, "mode": "rw"}}
    volumes.update(host_directory_binds(spec.host_directories))
    kwargs: dict[str, Any] = {
        "image": spec.image,
        "command": server_command(request),
        # In the environment, not argv: /proc/<pid>/environ is readable by the server's own
        # user alone, /proc/<pid>/cmdline by everyone on the host.
        "environment": {config.TOKEN_VARIABLE: request.token},
        "name": container_name(spec.instance, request.container_id),
        "labels": container_labels(request, created),
        "network_mode": "host" if spec.host_network else "none",
        "volumes": volumes,
        "user": spec.user,
        "mem_limit": spec.mem_limit,
        "memswap_limit": spec.mem_limit,  # equal: no swap on top of the memory limit
        "cpu_period": CPU_PERIOD,
        "cpu_quota": spec.cpu_quota,
        "pids_limit": spec.pids_limit,
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges"],
        "detach": True,
        "auto_remove": False,  # tmpnb removes it, after reading why it died
    }
    if spec.cpu_shares is not None:
        kwargs["cpu_shares"] = spec.cpu_shares
    return kwargs


def record_of(attrs: dict[str, Any]) -> ContainerRecord:
    """A ContainerRecord from either an inspect answer or a (sparse) list entry."""
    if isinstance(attrs.get("State"), dict):  # inspect
        labels = (attrs.get("Config") or {}).get("Labels") or {}
        status = attrs["State"].get("Status", "")
        running = bool(attrs["State"].get("Running"))
    else:  # list: State is the status string
        labels = attrs.get("Labels") or {}
        status = attrs.get("State") or ""
        running = status == "running"
    try:
        created = float(labels.get(CREATED_LABEL, ""))
    except ValueError:
        created = float(attrs["Created"]) if isinstance(attrs.get("Created"), int) else 0.0
    return ContainerRecord(
        docker_id=attrs["Id"],
        container_id=labels.get(ID_LABEL, ""),
        token=labels.get(TOKEN_LABEL, ""),
        created=created,
        running=running,
        status=status,
        labels=dict(labels),
    )


# -- what runs in the pool threads --------------------------------------------------------


def _thd_launch(client: Any, request: LaunchRequest, created: float) -> str:
    """Socket directory, create, start; on any failure undo what was made. → docker id."""
    uid, gid = sockets.parse_user(request.spec.user)
    sockets.make_socket_dir(request.socket_dir, uid, gid)
    try:
        container = client.containers.create(**create_kwargs(request, created))
    except BaseException:
        sockets.remove_socket_dir(request.socket_dir)
        raise
    try:
        container.start()
    except BaseException:
        try:
            container.remove(force=True)
        finally:
            sockets.remove_socket_dir(request.socket_dir)
        raise
    return container.id


def _is_ours(attrs: dict[str, Any], instance: str) -> bool:
    return record_of(attrs).labels.get(INSTANCE_LABEL) == instance


def _thd_remove(
    client: Any, docker_id: str, spec: config.ContainerSpec, container_id: str | None
) -> None:
    """Force-remove one of our containers and its socket directory; gone already is fine."""
    try:
        container = client.containers.get(docker_id)
    except docker.errors.NotFound:
        container = None
    if container is not None:
        if not _is_ours(container.attrs, spec.instance):
            raise NotOurs(docker_id)
        container_id = container_id or record_of(container.attrs).container_id
        try:
            container.remove(force=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as e:
            # Another remove of the same container is under way: it will be gone.
            if not (e.status_code == 409 and "in progress" in str(e)):
                raise
    if container_id:
        sockets.remove_socket_dir(sockets.socket_dir(spec, container_id))


def _thd_inspect(client: Any, docker_id: str, instance: str) -> ContainerRecord | None:
    try:
        attrs = client.containers.get(docker_id).attrs
    except docker.errors.NotFound:
        return None
    return record_of(attrs) if _is_ours(attrs, instance) else None


def _thd_list(client: Any, instance: str) -> list[ContainerRecord]:
    # sparse: one list call, not an inspect per container.
    containers = client.containers.list(
        all=True, sparse=True, filters={"label": f"{INSTANCE_LABEL}={instance}"}
    )
    # Filter again: the label filter is dockerd's, the promise not to touch others is ours.
    return [record_of(c.attrs) for c in containers if _is_ours(c.attrs, instance)]


def _thd_socket_dir_ids(client: Any, spec: config.ContainerSpec) -> list[str]:
    return sockets.socket_dir_ids(spec)  # the host's filesystem, not dockerd: no client needed


def _thd_remove_socket_dirs(client: Any, spec: config.ContainerSpec, container_ids: list[str]) -> None:
    for container_id in container_ids:
        sockets.remove_socket_dir(sockets.socket_dir(spec, container_id))


def _thd_ping(client: Any) -> bool:
    return bool(client.ping())


def _close_quietly(client: Any) -> None:
    try:
        client.close()
    except Exception:
        pass  # closing is tidying up: the call's own outcome is what counts


def _translate(e: BaseException) -> BaseException:
    """docker-py's transport errors as DockerTimeout / DockerUnavailable; others unchanged."""
    if isinstance(e, docker.errors.APIError):
        return e  # dockerd answered, with an error
    cause = e.__cause__ if isinstance(e, docker.errors.DockerException) else e
    if isinstance(cause, requests.exceptions.Timeout):
        return DockerTimeout(str(e))
    if isinstance(cause, (requests.exceptions.ConnectionError, ConnectionError, FileNotFoundError)):
        return DockerUnavailable(str(e))
    return e


class _Abandoned(Exception):
    """The caller gave up before a worker picked the call up; it was not run."""


class _Call:
    """One Docker call: the flag its caller sets on giving up, read by the worker."""

    def __init__(self) -> None:
        self.abandoned = threading.Event()


# -- the events stream --------------------------------------------------------------------


def event_of(event: dict[str, Any], instance: str) -> tuple[str, str] | None:
    """(tmpnb id, action) from one decoded Docker event, if it is about one of ours."""
    attributes = (event.get("Actor") or {}).get("Attributes") or {}
    if event.get("Type", "container") != "container":
        return None
    if attributes.get(INSTANCE_LABEL) != instance or not attributes.get(ID_LABEL):
        return None
    action = event.get("Action") or event.get("status") or ""
    # "exec_start: sh -c …", "health_status: healthy": the verb is enough.
    return attributes[ID_LABEL], action.split(":", 1)[0].strip()


class EventWatcher:
    """Follows dockerd's events for one instance in its own thread, forever, reconnecting.

    The stream blocks for as long as dockerd lives, so it must not hold a worker of the
    bounded pool. Everything the thread learns is handed to the reactor by `deliver`.
    """

    def __init__(
        self,
        client_factory: Callable[[], Any],
        instance: str,
        deliver: Callable[..., None],
        on_event: Callable[[str, str], None],
        backoff_initial: float = WATCH_BACKOFF_INITIAL,
        backoff_max: float = WATCH_BACKOFF_MAX,
    ) -> None:
        self._client_factory = client_factory
        self._instance = instance
        self._deliver = deliver  # reactor.callFromThread in production
        self._on_event = on_event
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._stopping = threading.Event()
        self._stream: Any = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        # daemon: a stream dockerd never closes must not keep the process alive on exit.
        self._thread = threading.Thread(
            target=self._thd_run, name="tmpnb-docker-events", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Ask the thread to end and unblock its read (safe from any thread)."""
        self._stopping.set()
        stream = self._stream
        if stream is not None:
            try:
                stream.close()
            except Exception:
                pass  # the connection may already be gone; stopping is all that matters

    def _thd_run(self) -> None:
        delay = self._backoff_initial
        since: float | None = None  # after a reconnect, replay what was missed
        while not self._stopping.is_set():
            client = None
            try:
                client = self._client_factory()
                # Reconnecting with `since` replays what was missed, and the last event seen
                # once more: receivers treat a repeated "die" as the late event it is.
                self._stream = client.events(
                    decode=True,
                    since=since,
                    filters={"label": f"{INSTANCE_LABEL}={self._instance}", "type": "container"},
                )
                if self._stopping.is_set():  # stop() came before there was a stream to close
                    self._stream.close()
                    break
                self._deliver(self._log_connected)
                delay = self._backoff_initial
                for event in self._stream:
                    if self._stopping.is_set():
                        break
                    since = event.get("time", since)
                    ours = event_of(event, self._instance)
                    if ours is not None:
                        self._deliver(self._on_event, *ours)
                if not self._stopping.is_set():
                    self._deliver(self._log_lost, "stream ended", delay)
            except Exception as e:
                if not self._stopping.is_set():
                    self._deliver(self._log_lost, f"{type(e).__name__}: {e}", delay)
            finally:
                self._stream = None
                if client is not None:
                    try:
                        client.close()
                    except Exception:
                        pass
            if self._stopping.wait(delay):
                break
            delay = min(delay * 2, self._backoff_max)

    def _log_connected(self) -> None:
        log.info("following docker events of instance {instance}", instance=self._instance)

    def _log_lost(self, cause: str, retry_in: float) -> None:
        log.warn(
            "docker events stream lost ({cause}); reconnecting in {retry_in:.0f}s",
            cause=cause,
            retry_in=retry_in,
        )

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)


# -- the API the machines use -------------------------------------------------------------


class DockerAPI:
    """Docker operations for one tmpnb instance, as Deferreds that fire on the reactor thread.

    Every call fails with DockerTimeout after `call_timeout` seconds of reactor time, with
    DockerUnavailable when dockerd cannot be reached, and with docker-py's APIError when
    dockerd answers with an error.
    """

    def __init__(
        self,
        reactor: ReactorForDocker,
        threadpool: ThreadPool,
        client_factory: Callable[[], Any],
        spec: config.ContainerSpec,
        call_timeout: float = 30.0,
    ) -> None:
        self._reactor = reactor
        self._threadpool = threadpool
        self._client_factory = client_factory
        self._spec = spec
        self._call_timeout = call_timeout
        self._watcher: EventWatcher | None = None

    # -- operations

    def launch(self, request: LaunchRequest) -> Deferred[str]:
        """Create and start a container (and its socket directory); fires with its docker id."""
        created = self._reactor.seconds()
        return self._defer(
            "launch", _thd_launch, request, created, late=partial(self._remove_late, request)
        )

    def remove(self, docker_id: str, container_id: str | None = None) -> Deferred[None]:
        """Force-remove a container of ours and its socket directory; already gone is success.

        Give `container_id` (the tmpnb id) when known, so the socket directory goes even when
        the container itself vanished first.
        """
        return self._defer("remove", _thd_remove, docker_id, self._spec, container_id)

    def inspect(self, docker_id: str) -> Deferred[ContainerRecord | None]:
        """The container's record; None when it is gone or is not ours."""
        return self._defer("inspect", _thd_inspect, docker_id, self._spec.instance)

    def list_ours(self) -> Deferred[list[ContainerRecord]]:
        """Every container labelled with our instance, in any state."""
        return self._defer("list", _thd_list, self._spec.instance)

    def socket_dir_ids(self) -> Deferred[list[str]]:
        """The container ids that have a socket directory of this instance on the host
        (filesystem work, done in the Docker threads like the directories' making)."""
        return self._defer("socket_dirs", _thd_socket_dir_ids, self._spec)

    def remove_socket_dirs(self, container_ids: list[str]) -> Deferred[None]:
        """Remove these containers' socket directories (for ones whose container is gone)."""
        return self._defer("remove_socket_dirs", _thd_remove_socket_dirs, self._spec, list(container_ids))

    def ping(self) -> Deferred[bool]:
        """Whether dockerd answers /_ping (a hung dockerd may still do so)."""

        def unanswered(failure: Failure) -> bool:
            failure.trap(DockerTimeout, DockerUnavailable)
            log.debug("docker ping failed: {cause}", cause=failure.getErrorMessage())
            return False

        return self._defer("ping", _thd_ping).addErrback(unanswered)

    def watch(self, on_event: Callable[[str, str], None]) -> None:
        """Call on_event(container_id, action) on the reactor thread for each Docker event
        about our containers ("start", "die", "oom", "destroy", …), until shutdown."""
        if self._watcher is not None:
            raise RuntimeError("already watching")
        self._watcher = EventWatcher(
            self._client_factory, self._spec.instance, self._reactor.callFromThread, on_event
        )
        self._reactor.addSystemEventTrigger("before", "shutdown", self.stop_watching)
        self._watcher.start()

    def stop_watching(self) -> None:
        if self._watcher is not None:
            self._watcher.stop()

    # -- machinery

    def _defer(
        self,
        operation: str,
        f: Callable[..., T],
        *args: Any,
        late: Callable[[T], None] | None = None,
    ) -> Deferred[T]:
        """Run f(client, *args) in the pool; fail with DockerTimeout after call_timeout.

        `late` gets a result that arrives after the caller gave up (timeout or cancel).
        """
        call = _Call()
        timer: Any = None

        def give_up(_: Deferred[T]) -> None:  # the caller cancelled
            call.abandoned.set()
            if timer.active():
                timer.cancel()

        outer: Deferred[T] = Deferred(give_up)

        def time_out() -> None:
            call.abandoned.set()
            log.warn(
                "docker {operation} got no answer in {timeout}s",
                operation=operation,
                timeout=self._call_timeout,
            )
            outer.errback(DockerTimeout(f"docker {operation}: no answer in {self._call_timeout}s"))

        timer = self._reactor.callLater(self._call_timeout, time_out)

        def finished(result: T | Failure) -> None:
            if not outer.called:
                timer.cancel()
                if isinstance(result, Failure):
                    outer.errback(result)
                else:
                    outer.callback(result)
            elif isinstance(result, Failure):
                if not result.check(_Abandoned):
                    log.info(
                        "docker {operation} failed after its caller gave up: {cause}",
                        operation=operation,
                        cause=result.getErrorMessage(),
                    )
            elif late is not None:
                late(result)

        inner = deferToThreadPool(self._reactor, self._threadpool, self._thd_call, call, f, *args)
        inner.addBoth(finished)
        inner.addErrback(lambda failure: log.failure("handing back docker {o}", failure, o=operation))
        return outer

    def _thd_call(self, call: _Call, f: Callable[..., T], *args: Any) -> T:
        if call.abandoned.is_set():
            raise _Abandoned()  # queued behind stuck workers; its caller has moved on
        try:
            # A client per call, closed after it: docker-py opens a connection pool per URL
            # (per container id), so a long-lived client keeps dozens of sockets to dockerd.
            client = self._client_factory()
            try:
                return f(client, *args)
            finally:
                _close_quietly(client)
        except BaseException as e:
            translated = _translate(e)
            if translated is e:
                raise
            raise translated from e

    def _remove_late(self, request: LaunchRequest, docker_id: str) -> None:
        """A launch finished after its caller gave up: nobody will use it, so remove it."""
        log.info(
            "removing {container} ({docker_id}): it started after its launch was abandoned",
            container=request.container_id,
            docker_id=docker_id,
        )
        self.remove(docker_id, request.container_id).addErrback(
            lambda failure: log.failure(
                "removing abandoned container {container}", failure, container=request.container_id
            )
        )
